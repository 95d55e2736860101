//! Admission tokens: what a waiting room gives the users it admits, and what `POST /v1/holds`
//! of a queue-enabled event requires in the `Admission-Token` header.
//!
//! A token is `adm1.<expires unix secs>.<hex event id>.<hex user id>.<hex HMAC-SHA256>`, the
//! MAC covering everything before it under the node's admission secret (the same secret on
//! every API node), so any node verifies it without asking the cluster. It is bound to the
//! user and the event and ends when the admission ends.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::problem::ApiError;

/// The request header that carries the token.
pub const ADMISSION_HEADER: &str = "admission-token";
/// Shortest admission secret accepted, in bytes.
pub const MIN_ADMISSION_SECRET_BYTES: usize = 32;
/// Longest token read, in bytes (two hex-encoded ids of at most 128 bytes, a MAC, a time).
pub const MAX_ADMISSION_TOKEN_BYTES: usize = 700;

const VERSION: &str = "adm1";

type HmacSha256 = Hmac<Sha256>;

/// Why a token was refused; every case answers 403 (kept apart for the problem's detail).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("this event has a waiting room: send the Admission-Token it gave you")]
    Missing,
    #[error("the admission token is malformed")]
    Malformed,
    #[error("the admission token's signature does not match")]
    BadSignature,
    #[error("the admission token is for another user")]
    OtherUser,
    #[error("the admission token is for another event")]
    OtherEvent,
    #[error("the admission token expired")]
    Expired,
}

impl From<AdmissionError> for ApiError {
    fn from(error: AdmissionError) -> Self {
        ApiError::Forbidden {
            detail: error.to_string(),
        }
    }
}

/// Why an admission secret was refused at start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the admission secret must be at least {MIN_ADMISSION_SECRET_BYTES} bytes")]
pub struct WeakSecret;

/// Signs and verifies admission tokens with one secret.
#[derive(Clone)]
pub struct AdmissionKey {
    secret: Vec<u8>,
}

impl std::fmt::Debug for AdmissionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdmissionKey(..)")
    }
}

impl AdmissionKey {
    pub fn new(secret: &[u8]) -> Result<AdmissionKey, WeakSecret> {
        if secret.len() < MIN_ADMISSION_SECRET_BYTES {
            return Err(WeakSecret);
        }
        Ok(AdmissionKey {
            secret: secret.to_vec(),
        })
    }

    fn mac(&self, signed: &str) -> HmacSha256 {
        // HMAC takes keys of any length, so this cannot fail.
        #[allow(clippy::expect_used)]
        let mut mac =
            HmacSha256::new_from_slice(&self.secret).expect("hmac accepts keys of any length");
        mac.update(signed.as_bytes());
        mac
    }

    /// The token admitting `user` to buy for `event_id` until `expires_at_ms` (whole seconds,
    /// rounded down, so it never outlives the admission).
    pub fn sign(&self, user: &str, event_id: &str, expires_at_ms: u64) -> String {
        let signed = format!(
            "{VERSION}.{}.{}.{}",
            expires_at_ms / 1000,
            hex::encode(event_id),
            hex::encode(user)
        );
        let tag = self.mac(&signed).finalize().into_bytes();
        format!("{signed}.{}", hex::encode(tag))
    }

    /// Checks that `token` admits `user` to `event_id` at `now_ms`.
    pub fn verify(
        &self,
        token: &str,
        user: &str,
        event_id: &str,
        now_ms: u64,
    ) -> Result<(), AdmissionError> {
        if token.len() > MAX_ADMISSION_TOKEN_BYTES {
            return Err(AdmissionError::Malformed);
        }
        let (signed, tag) = token.rsplit_once('.').ok_or(AdmissionError::Malformed)?;
        let parts: Vec<&str> = signed.split('.').collect();
        let [version, expires, event_hex, user_hex] = parts[..] else {
            return Err(AdmissionError::Malformed);
        };
        let expires_secs: u64 = expires.parse().map_err(|_| AdmissionError::Malformed)?;
        let tag = hex::decode(tag).map_err(|_| AdmissionError::Malformed)?;
        if version != VERSION {
            return Err(AdmissionError::Malformed);
        }
        self.mac(signed)
            .verify_slice(&tag)
            .map_err(|_| AdmissionError::BadSignature)?;
        if hex::decode(user_hex).ok().as_deref() != Some(user.as_bytes()) {
            return Err(AdmissionError::OtherUser);
        }
        if hex::decode(event_hex).ok().as_deref() != Some(event_id.as_bytes()) {
            return Err(AdmissionError::OtherEvent);
        }
        if now_ms >= expires_secs.saturating_mul(1000) {
            return Err(AdmissionError::Expired);
        }
        Ok(())
    }

    /// The `Admission-Token` header of a request checked for `user` and `event_id`.
    pub fn require(
        &self,
        headers: &axum::http::HeaderMap,
        user: &str,
        event_id: &str,
        now_ms: u64,
    ) -> Result<(), AdmissionError> {
        let token = headers
            .get(ADMISSION_HEADER)
            .ok_or(AdmissionError::Missing)?
            .to_str()
            .map_err(|_| AdmissionError::Malformed)?;
        self.verify(token.trim(), user, event_id, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AdmissionKey {
        AdmissionKey::new(&[7u8; 32]).unwrap()
    }

    #[test]
    fn a_token_admits_its_user_to_its_event_until_it_ends() {
        let token = key().sign("alice", "ev_1", 10_999);
        assert_eq!(key().verify(&token, "alice", "ev_1", 9_999), Ok(()));
        assert_eq!(
            key().verify(&token, "alice", "ev_1", 10_000),
            Err(AdmissionError::Expired)
        );
        assert_eq!(
            key().verify(&token, "bob", "ev_1", 0),
            Err(AdmissionError::OtherUser)
        );
        assert_eq!(
            key().verify(&token, "alice", "ev_2", 0),
            Err(AdmissionError::OtherEvent)
        );
    }

    #[test]
    fn a_tampered_or_foreign_token_is_refused() {
        let token = key().sign("alice", "ev_1", 10_000_000);
        // A later expiry written in by hand.
        let longer = token.replacen(".10000.", ".99999.", 1);
        assert_ne!(longer, token);
        assert_eq!(
            key().verify(&longer, "alice", "ev_1", 0),
            Err(AdmissionError::BadSignature)
        );
        let other_key = AdmissionKey::new(&[8u8; 32]).unwrap();
        assert_eq!(
            other_key.verify(&token, "alice", "ev_1", 0),
            Err(AdmissionError::BadSignature)
        );
        for bad in ["", "adm1", "adm1.x.y.z.w", &"a".repeat(800)] {
            assert_eq!(
                key().verify(bad, "alice", "ev_1", 0),
                Err(AdmissionError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(AdmissionKey::new(b"short").unwrap_err(), WeakSecret);
    }
}
