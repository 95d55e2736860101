//! Webhook signatures: `Boxoffice-Signature: t=<unix secs>,v1=<hex hmac-sha256>` where the
//! MAC covers `"{t}.{body}"` with the shared webhook secret, as Stripe's `Stripe-Signature`.
//! The sender signs; the receiver verifies in constant time and refuses stale timestamps,
//! which bounds replays to the tolerance window.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::problem::ApiError;

/// Name of the signature header.
pub const SIGNATURE_HEADER: &str = "boxoffice-signature";

/// How far a signature's timestamp may be from the receiver's clock.
pub const SIGNATURE_TOLERANCE_SECS: u64 = 300;

/// Longest signature header read.
pub const MAX_SIGNATURE_HEADER_BYTES: usize = 1024;

/// Most `v1=` entries tried (a sender rotating secrets sends one per secret).
pub const MAX_SIGNATURES: usize = 8;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused. The three cases are kept apart for logs; the HTTP
/// answer is 400 for each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("malformed signature header: {0}")]
    Malformed(&'static str),
    #[error("no signature matches")]
    Mismatch,
    #[error("signature timestamp is {skew_secs} s from now, more than the tolerance")]
    TimestampOutOfTolerance { skew_secs: u64 },
}

impl From<SignatureError> for ApiError {
    fn from(error: SignatureError) -> Self {
        ApiError::invalid_field("Boxoffice-Signature", error.to_string())
    }
}

fn mac(secret: &[u8], timestamp_secs: u64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (long ones are hashed), so this cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac = HmacSha256::new_from_slice(secret).expect("hmac accepts keys of any length");
    mac.update(timestamp_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value signing `body` at `timestamp_secs`.
pub fn signature_header(secret: &[u8], timestamp_secs: u64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp_secs, body).finalize().into_bytes();
    format!("t={timestamp_secs},v1={}", hex::encode(tag))
}

/// Checks that `header` carries a `v1` signature of `body` under `secret`, made within
/// `tolerance_secs` of `now_secs`. Any one matching `v1` suffices; other schemes are
/// ignored. The signature is checked before the timestamp, so
/// [`SignatureError::TimestampOutOfTolerance`] means an authentic but stale (replayed or
/// badly delayed) delivery.
pub fn verify_signature(
    header: &str,
    body: &[u8],
    secret: &[u8],
    now_secs: u64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    if header.len() > MAX_SIGNATURE_HEADER_BYTES {
        return Err(SignatureError::Malformed("header too long"));
    }
    let mut timestamp_secs = None;
    let mut candidates: Vec<Option<Vec<u8>>> = Vec::new();
    for item in header.split(',') {
        let Some((key, value)) = item.trim().split_once('=') else {
            return Err(SignatureError::Malformed("expected key=value pairs"));
        };
        match key {
            "t" => {
                if timestamp_secs.is_some() {
                    return Err(SignatureError::Malformed("more than one timestamp"));
                }
                let parsed = value
                    .parse::<u64>()
                    .map_err(|_| SignatureError::Malformed("bad timestamp"))?;
                timestamp_secs = Some(parsed);
            }
            "v1" => {
                if candidates.len() == MAX_SIGNATURES {
                    return Err(SignatureError::Malformed("too many signatures"));
                }
                // A value that is not hex can match nothing; keep looking at the others.
                candidates.push(hex::decode(value).ok());
            }
            _ => {}
        }
    }
    let timestamp_secs = timestamp_secs.ok_or(SignatureError::Malformed("missing timestamp"))?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed("missing v1 signature"));
    }

    let expected = mac(secret, timestamp_secs, body);
    // `verify_slice` compares in constant time; every candidate is checked.
    let mut matched = false;
    for candidate in candidates.iter().flatten() {
        matched |= expected.clone().verify_slice(candidate).is_ok();
    }
    if !matched {
        return Err(SignatureError::Mismatch);
    }

    let skew_secs = now_secs.abs_diff(timestamp_secs);
    if skew_secs > tolerance_secs {
        return Err(SignatureError::TimestampOutOfTolerance { skew_secs });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
    const NOW: u64 = 1_800_000_000;

    #[test]
    fn signed_body_verifies() {
        let header = signature_header(SECRET, NOW, BODY);
        assert!(header.starts_with("t=1800000000,v1="));
        assert_eq!(
            verify_signature(&header, BODY, SECRET, NOW, SIGNATURE_TOLERANCE_SECS),
            Ok(())
        );
    }

    #[test]
    fn known_vector() {
        // printf '1700000000.{}' | openssl dgst -sha256 -hmac key
        assert_eq!(
            signature_header(b"key", 1_700_000_000, b"{}"),
            "t=1700000000,v1=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
    }

    #[test]
    fn tampered_body_is_a_mismatch() {
        let header = signature_header(SECRET, NOW, BODY);
        let tampered = br#"{"id":"evt_1","type":"payment_intent.payment_failed"}"#;
        assert_eq!(
            verify_signature(&header, tampered, SECRET, NOW, SIGNATURE_TOLERANCE_SECS),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn wrong_secret_is_a_mismatch() {
        let header = signature_header(b"another secret", NOW, BODY);
        assert_eq!(
            verify_signature(&header, BODY, SECRET, NOW, SIGNATURE_TOLERANCE_SECS),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn moved_timestamp_is_a_mismatch() {
        let header = signature_header(SECRET, NOW, BODY).replace("t=1800000000", "t=1800000001");
        assert_eq!(
            verify_signature(&header, BODY, SECRET, NOW, SIGNATURE_TOLERANCE_SECS),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let header = signature_header(SECRET, NOW, BODY);
        let tolerance = SIGNATURE_TOLERANCE_SECS;
        assert_eq!(
            verify_signature(&header, BODY, SECRET, NOW + tolerance, tolerance),
            Ok(())
        );
        assert_eq!(
            verify_signature(&header, BODY, SECRET, NOW + tolerance + 1, tolerance),
            Err(SignatureError::TimestampOutOfTolerance {
                skew_secs: tolerance + 1
            })
        );
        assert_eq!(
            verify_signature(&header, BODY, SECRET, NOW - tolerance - 1, tolerance),
            Err(SignatureError::TimestampOutOfTolerance {
                skew_secs: tolerance + 1
            })
        );
    }

    #[test]
    fn any_matching_v1_suffices() {
        let good = signature_header(SECRET, NOW, BODY);
        let good_tag = good.split("v1=").nth(1).unwrap_or_default();
        let bad_tag = "00".repeat(32);
        let header = format!("t={NOW},v1={bad_tag},v0=legacy,v1=zz,v1={good_tag}");
        assert_eq!(
            verify_signature(&header, BODY, SECRET, NOW, SIGNATURE_TOLERANCE_SECS),
            Ok(())
        );
        // A rotated-out secret's signature alone does not.
        let header = format!("t={NOW},v1={bad_tag}");
        assert_eq!(
            verify_signature(&header, BODY, SECRET, NOW, SIGNATURE_TOLERANCE_SECS),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn malformed_headers_are_told_apart() {
        let tag = "ab".repeat(32);
        let too_many = format!("t={NOW}{}", format!(",v1={tag}").repeat(MAX_SIGNATURES + 1));
        let cases = [
            String::new(),
            "garbage".to_owned(),
            format!("v1={tag}"),
            format!("t={NOW}"),
            format!("t=soon,v1={tag}"),
            format!("t=-5,v1={tag}"),
            format!("t={NOW},t={NOW},v1={tag}"),
            too_many,
            format!("t={NOW},v1={}", "a".repeat(MAX_SIGNATURE_HEADER_BYTES)),
        ];
        for header in cases {
            let result = verify_signature(&header, BODY, SECRET, NOW, SIGNATURE_TOLERANCE_SECS);
            assert!(
                matches!(result, Err(SignatureError::Malformed(_))),
                "{header}: {result:?}"
            );
        }
    }

    #[test]
    fn errors_become_400_problems() {
        let error: ApiError = SignatureError::Mismatch.into();
        assert!(matches!(
            error,
            ApiError::InvalidRequest { field: Some(_), .. }
        ));
    }
}
