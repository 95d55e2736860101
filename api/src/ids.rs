//! The ids this tier mints and the request ids it derives from `Idempotency-Key`s.
//!
//! Hold and booking ids carry their event (`ho_<hex>.<event_id>`, `bk_<hex>.<event_id>`) so
//! any API node can find the owning shard from the id alone, with no lookup table. Ids made
//! for an idempotent request are a digest of the caller and the key, so a retry names the
//! same hold or booking and the state machine replays its first outcome.

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::problem::ApiError;

/// Longest `Idempotency-Key` accepted (Stripe's limit).
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;
/// Hex characters of the random or derived part of an id (64 bits).
pub const ID_HEX_CHARS: usize = 16;
/// Longest id accepted in a path or body; the inventory refuses longer ones anyway.
pub const MAX_ID_BYTES: usize = boxoffice_raft::types::MAX_ID_BYTES;
/// The header every mutation carries.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// What kind of catalog or inventory object an id names; the prefix of its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Event,
    Venue,
    Performer,
    Hold,
    Booking,
}

impl IdKind {
    pub fn prefix(self) -> &'static str {
        match self {
            IdKind::Event => "ev_",
            IdKind::Venue => "ve_",
            IdKind::Performer => "pf_",
            IdKind::Hold => "ho_",
            IdKind::Booking => "bk_",
        }
    }
}

/// `n_bytes` random bytes as lowercase hex.
pub fn random_hex(n_bytes: usize) -> String {
    let mut bytes = vec![0u8; n_bytes];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// SHA-256 over the parts (each length-prefixed, so `("ab","c")` differs from `("a","bc")`),
/// as hex, cut to `n_chars`.
pub fn digest(parts: &[&[u8]], n_chars: usize) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let mut text = hex::encode(hasher.finalize());
    text.truncate(n_chars);
    text
}

/// A fresh catalog id: `ev_…`, `ve_…`, `pf_…`.
pub fn new_catalog_id(kind: IdKind) -> String {
    format!("{}{}", kind.prefix(), random_hex(ID_HEX_CHARS / 2))
}

/// The catalog id an idempotent create with `key` by `user` gets.
pub fn derived_catalog_id(kind: IdKind, user: &str, key: &str) -> String {
    let hex = digest(
        &[kind.prefix().as_bytes(), user.as_bytes(), key.as_bytes()],
        ID_HEX_CHARS,
    );
    format!("{}{hex}", kind.prefix())
}

/// A hold or booking id for `event_id`, derived from the caller's idempotency key.
pub fn derived_event_scoped_id(kind: IdKind, user: &str, key: &str, event_id: &str) -> String {
    let hex = digest(
        &[
            kind.prefix().as_bytes(),
            user.as_bytes(),
            key.as_bytes(),
            event_id.as_bytes(),
        ],
        ID_HEX_CHARS,
    );
    format!("{}{hex}.{event_id}", kind.prefix())
}

/// The event a hold or booking id belongs to, or 404 when the id is not one of ours.
pub fn event_of(kind: IdKind, id: &str) -> Result<&str, ApiError> {
    let what = match kind {
        IdKind::Hold => "hold",
        IdKind::Booking => "booking",
        _ => "object",
    };
    let not_found = || ApiError::not_found(format!("no {what} {id}"));
    if id.len() > MAX_ID_BYTES {
        return Err(not_found());
    }
    let rest = id.strip_prefix(kind.prefix()).ok_or_else(not_found)?;
    let (hex, event_id) = rest.split_once('.').ok_or_else(not_found)?;
    if hex.len() != ID_HEX_CHARS
        || !hex.bytes().all(|b| b.is_ascii_hexdigit())
        || !is_valid_id(event_id)
    {
        return Err(not_found());
    }
    Ok(event_id)
}

/// Whether `id` could be a catalog id: 1..=64 bytes of ASCII letters, digits, `_` and `-`.
/// (No `.`: hold and booking ids use it to separate the event.)
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The `Idempotency-Key` header: required, 1..=255 printable ASCII characters.
pub fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<String, ApiError> {
    let field = "Idempotency-Key";
    let value = headers
        .get(IDEMPOTENCY_HEADER)
        .ok_or_else(|| ApiError::invalid_field(field, "this request needs an Idempotency-Key header (any unique string, reused only to retry)"))?;
    let text = value
        .to_str()
        .map_err(|_| ApiError::invalid_field(field, "idempotency key must be printable ascii"))?;
    if text.is_empty()
        || text.len() > MAX_IDEMPOTENCY_KEY_BYTES
        || !text.bytes().all(|b| (0x20..0x7f).contains(&b))
    {
        return Err(ApiError::invalid_field(
            field,
            format!("idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} printable ascii characters"),
        ));
    }
    Ok(text.to_owned())
}

/// The optional `Idempotency-Key` of requests that do not require one.
pub fn optional_idempotency_key(
    headers: &axum::http::HeaderMap,
) -> Result<Option<String>, ApiError> {
    if headers.contains_key(IDEMPOTENCY_HEADER) {
        idempotency_key(headers).map(Some)
    } else {
        Ok(None)
    }
}

/// The inventory request id of operation `op` by `user` under `key` (at most 64 bytes).
pub fn request_id(op: &str, user: &str, key: &str) -> String {
    format!(
        "{op}/{}",
        digest(&[op.as_bytes(), user.as_bytes(), key.as_bytes()], 32)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_scoped() {
        let a = derived_event_scoped_id(IdKind::Hold, "alice", "k1", "ev_1");
        assert_eq!(
            a,
            derived_event_scoped_id(IdKind::Hold, "alice", "k1", "ev_1")
        );
        assert_ne!(
            a,
            derived_event_scoped_id(IdKind::Hold, "bob", "k1", "ev_1")
        );
        assert_ne!(
            a,
            derived_event_scoped_id(IdKind::Hold, "alice", "k2", "ev_1")
        );
        assert_ne!(
            a,
            derived_event_scoped_id(IdKind::Booking, "alice", "k1", "ev_1")
        );
        assert_eq!(event_of(IdKind::Hold, &a).ok(), Some("ev_1"));
        assert!(event_of(IdKind::Booking, &a).is_err());
        // Length-prefixing keeps part boundaries apart.
        assert_ne!(digest(&[b"ab", b"c"], 64), digest(&[b"a", b"bc"], 64));
        assert_ne!(
            request_id("hold", "alice", "k"),
            request_id("booking", "alice", "k")
        );
        assert!(request_id("hold", &"u".repeat(200), &"k".repeat(255)).len() <= 64);
    }

    #[test]
    fn foreign_ids_are_not_found() {
        for id in [
            "",
            "ho_",
            "ho_zz.ev_1",
            "ho_0123456789abcdef",
            "ho_0123456789abcdef.",
            "ho_0123456789abcdef.a b",
            "bk_0123456789abcdef.ev_1",
            &"x".repeat(500),
        ] {
            assert!(
                matches!(event_of(IdKind::Hold, id), Err(ApiError::NotFound { .. })),
                "{id}"
            );
        }
        assert_eq!(
            event_of(IdKind::Hold, "ho_0123456789abcdef.ev_9").ok(),
            Some("ev_9")
        );
    }

    #[test]
    fn idempotency_key_rules() {
        let mut headers = axum::http::HeaderMap::new();
        assert!(idempotency_key(&headers).is_err());
        assert_eq!(optional_idempotency_key(&headers).ok(), Some(None));
        headers.insert(IDEMPOTENCY_HEADER, "order-42".parse().expect("value"));
        assert_eq!(idempotency_key(&headers).ok().as_deref(), Some("order-42"));
        headers.insert(IDEMPOTENCY_HEADER, "x".repeat(256).parse().expect("value"));
        assert!(idempotency_key(&headers).is_err());
        headers.insert(IDEMPOTENCY_HEADER, "".parse().expect("value"));
        assert!(idempotency_key(&headers).is_err());
    }

    #[test]
    fn catalog_ids() {
        let id = new_catalog_id(IdKind::Event);
        assert!(id.starts_with("ev_") && is_valid_id(&id) && id.len() == 3 + ID_HEX_CHARS);
        assert_eq!(
            derived_catalog_id(IdKind::Venue, "ops", "k"),
            derived_catalog_id(IdKind::Venue, "ops", "k")
        );
        assert!(!is_valid_id("a.b") && !is_valid_id("") && !is_valid_id(&"a".repeat(65)));
    }
}
