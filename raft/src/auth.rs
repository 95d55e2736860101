//! The cluster credential on internal RPC: every call between storage nodes, and from API
//! nodes to storage nodes, carries `Boxoffice-Cluster-Auth: t=<unix ms>,v1=<hex>`, an
//! HMAC-SHA256 under the shared cluster key over the method, the path with its query, the
//! body's SHA-256 and the timestamp. A node refuses (401) a call whose credential is missing,
//! does not match, or is more than [`MAX_CREDENTIAL_SKEW_MS`] from its own clock, before the
//! call reaches any handler — so a refused call changes nothing, and a captured call can be
//! replayed only within that window.
//!
//! [`ClusterAuth::insecure`] (`--insecure`) signs nothing and checks nothing.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::clock::Clock;

/// Name of the credential header.
pub const CREDENTIAL_HEADER: &str = "boxoffice-cluster-auth";
/// How far a credential's timestamp may be from the receiver's clock, either way.
pub const MAX_CREDENTIAL_SKEW_MS: u64 = 60_000;
/// Shortest cluster key accepted, in bytes.
pub const MIN_CLUSTER_KEY_BYTES: usize = 32;
/// Longest credential header read, in bytes.
pub const MAX_CREDENTIAL_HEADER_BYTES: usize = 256;
/// Largest body the check reads (the internal router's own body limit), in bytes.
pub const MAX_SIGNED_BODY_BYTES: usize = crate::server::MAX_INTERNAL_BODY_BYTES;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the cluster key is {0} bytes, fewer than {MIN_CLUSTER_KEY_BYTES}")]
    KeyTooShort(usize),
    #[error("no cluster credential")]
    Missing,
    #[error("malformed cluster credential: {0}")]
    Malformed(&'static str),
    #[error("the cluster credential does not match")]
    Mismatch,
    #[error("the cluster credential is {skew_ms} ms from this node's clock, more than {MAX_CREDENTIAL_SKEW_MS}")]
    Stale { skew_ms: u64 },
    #[error("unreadable body: {0}")]
    Body(String),
}

/// The shared secret of one cluster. Its `Debug` does not show it.
#[derive(Clone)]
pub struct ClusterKey(Arc<[u8]>);

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterKey({} bytes)", self.0.len())
    }
}

impl ClusterKey {
    /// A key from its text form (an environment variable or a file's trimmed contents).
    pub fn new(key: &[u8]) -> Result<ClusterKey, AuthError> {
        if key.len() < MIN_CLUSTER_KEY_BYTES {
            return Err(AuthError::KeyTooShort(key.len()));
        }
        Ok(ClusterKey(key.into()))
    }

    /// A fresh random key in its text form: 32 random bytes as 64 hex digits.
    pub fn generate_text() -> String {
        let bytes: [u8; 32] = rand::random();
        hex::encode(bytes)
    }
}

/// How a node or client signs its calls and checks the calls it serves.
#[derive(Clone)]
pub struct ClusterAuth {
    key: Option<ClusterKey>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ClusterAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(key) => write!(f, "ClusterAuth({key:?})"),
            None => write!(f, "ClusterAuth(insecure)"),
        }
    }
}

fn mac(key: &ClusterKey, timestamp_ms: u64, method: &str, path: &str, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac = HmacSha256::new_from_slice(&key.0).expect("hmac accepts keys of any length");
    let body_digest = hex::encode(Sha256::digest(body));
    mac.update(format!("{timestamp_ms}\n{method}\n{path}\n{body_digest}").as_bytes());
    mac
}

impl ClusterAuth {
    /// Signs with `key`, stamping credentials and judging their age by `clock`.
    pub fn new(key: ClusterKey, clock: Arc<dyn Clock>) -> ClusterAuth {
        ClusterAuth {
            key: Some(key),
            clock,
        }
    }

    /// [`ClusterAuth::new`] with `key`, or [`ClusterAuth::insecure`] without one.
    pub fn from_key(key: Option<ClusterKey>, clock: Arc<dyn Clock>) -> ClusterAuth {
        ClusterAuth { key, clock }
    }

    /// Signs nothing, checks nothing (`--insecure`).
    pub fn insecure() -> ClusterAuth {
        ClusterAuth {
            key: None,
            clock: Arc::new(crate::clock::SystemClock),
        }
    }

    pub fn is_insecure(&self) -> bool {
        self.key.is_none()
    }

    /// The header value for a call of `method` on `path` (with its query) carrying `body`,
    /// or `None` when insecure.
    pub fn credential(&self, method: &str, path: &str, body: &[u8]) -> Option<String> {
        let key = self.key.as_ref()?;
        let t = self.clock.now_ms();
        let tag = mac(key, t, method, path, body).finalize().into_bytes();
        Some(format!("t={t},v1={}", hex::encode(tag)))
    }

    /// Checks a call's credential header. The MAC is checked before the age, so
    /// [`AuthError::Stale`] means an authentic call replayed or badly delayed.
    pub fn verify(
        &self,
        header: Option<&str>,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(), AuthError> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        let header = header.ok_or(AuthError::Missing)?;
        if header.len() > MAX_CREDENTIAL_HEADER_BYTES {
            return Err(AuthError::Malformed("header too long"));
        }
        let (t, tag) = header
            .split_once(',')
            .ok_or(AuthError::Malformed("expected t=…,v1=…"))?;
        let t: u64 = t
            .strip_prefix("t=")
            .and_then(|t| t.parse().ok())
            .ok_or(AuthError::Malformed("t is not a millisecond timestamp"))?;
        let tag = tag
            .strip_prefix("v1=")
            .and_then(|tag| hex::decode(tag).ok())
            .ok_or(AuthError::Malformed("v1 is not hex"))?;
        mac(key, t, method, path, body)
            .verify_slice(&tag)
            .map_err(|_| AuthError::Mismatch)?;
        let skew_ms = self.clock.now_ms().abs_diff(t);
        if skew_ms > MAX_CREDENTIAL_SKEW_MS {
            return Err(AuthError::Stale { skew_ms });
        }
        Ok(())
    }
}

/// Router middleware: a call whose credential [`ClusterAuth::verify`] refuses gets 401 and
/// never reaches a handler.
pub async fn require_credential(
    State(auth): State<ClusterAuth>,
    request: Request,
    next: Next,
) -> Response {
    if auth.is_insecure() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_SIGNED_BODY_BYTES).await {
        Ok(body) => body,
        // Over the internal body limit (or cut off): the router would refuse it anyway.
        Err(e) => {
            let error = AuthError::Body(e.to_string());
            tracing::warn!(method = %parts.method, uri = %parts.uri, %error, "internal call refused");
            return (StatusCode::PAYLOAD_TOO_LARGE, error.to_string()).into_response();
        }
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let header = parts
        .headers
        .get(CREDENTIAL_HEADER)
        .and_then(|v| v.to_str().ok());
    if let Err(e) = auth.verify(header, parts.method.as_str(), path, &body) {
        return refuse(&parts, e);
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

fn refuse(parts: &axum::http::request::Parts, error: AuthError) -> Response {
    tracing::warn!(method = %parts.method, uri = %parts.uri, %error, "internal call refused");
    (StatusCode::UNAUTHORIZED, error.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn auth(clock: &Arc<ManualClock>) -> ClusterAuth {
        ClusterAuth::new(ClusterKey::new(KEY).unwrap(), clock.clone())
    }

    #[test]
    fn a_signed_call_verifies_and_any_change_to_it_does_not() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let auth = auth(&clock);
        let header = auth
            .credential("POST", "/inventory/1/write", b"body")
            .unwrap();
        assert_eq!(
            auth.verify(Some(&header), "POST", "/inventory/1/write", b"body"),
            Ok(())
        );
        for (method, path, body) in [
            ("GET", "/inventory/1/write", &b"body"[..]),
            ("POST", "/inventory/2/write", b"body"),
            ("POST", "/inventory/1/write", b"bodY"),
        ] {
            assert_eq!(
                auth.verify(Some(&header), method, path, body),
                Err(AuthError::Mismatch),
                "{method} {path}"
            );
        }
        let other = ClusterAuth::new(ClusterKey::new(&[b'x'; 32]).unwrap(), clock.clone());
        assert_eq!(
            other.verify(Some(&header), "POST", "/inventory/1/write", b"body"),
            Err(AuthError::Mismatch)
        );
    }

    #[test]
    fn a_credential_older_or_newer_than_the_window_is_stale() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let auth = auth(&clock);
        let header = auth.credential("GET", "/cluster/status", b"").unwrap();
        clock.advance_ms(MAX_CREDENTIAL_SKEW_MS);
        assert_eq!(
            auth.verify(Some(&header), "GET", "/cluster/status", b""),
            Ok(())
        );
        clock.advance_ms(1);
        assert_eq!(
            auth.verify(Some(&header), "GET", "/cluster/status", b""),
            Err(AuthError::Stale {
                skew_ms: MAX_CREDENTIAL_SKEW_MS + 1
            })
        );
        clock.set_ms(1_000_000 - MAX_CREDENTIAL_SKEW_MS - 5);
        assert!(matches!(
            auth.verify(Some(&header), "GET", "/cluster/status", b""),
            Err(AuthError::Stale { .. })
        ));
    }

    #[test]
    fn missing_or_malformed_credentials_are_refused_and_insecure_checks_nothing() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let auth = auth(&clock);
        assert_eq!(auth.verify(None, "GET", "/", b""), Err(AuthError::Missing));
        for header in ["", "t=1", "t=x,v1=00", "t=1,v1=zz", "v1=00,t=1"] {
            assert!(
                matches!(
                    auth.verify(Some(header), "GET", "/", b""),
                    Err(AuthError::Malformed(_))
                ),
                "{header:?}"
            );
        }
        assert_eq!(ClusterAuth::insecure().credential("GET", "/", b""), None);
        assert_eq!(
            ClusterAuth::insecure().verify(None, "GET", "/", b""),
            Ok(())
        );
        assert_eq!(
            ClusterKey::new(b"short").unwrap_err(),
            AuthError::KeyTooShort(5)
        );
    }
}
