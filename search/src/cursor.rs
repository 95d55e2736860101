//! The total order of search results ([`SortKey`]: score, then start time, then event id)
//! and the opaque pagination cursor that encodes the last hit's key.
//!
//! A cursor says "continue after this key", never "skip n results": a page after it holds
//! exactly the results ranked after that key, so for a fixed index pages neither repeat nor
//! skip, and an insertion or deletion elsewhere moves nothing across the boundary.
//!
//! Format (ASCII, URL-safe): `1.<query hash, 16 hex>.<score, hex>.<starts_at_ms>.<event id, hex>`.

use std::cmp::Ordering;

use crate::doc::MAX_EVENT_ID_BYTES;
use crate::error::SearchError;

/// Cursor format version, first field of every cursor.
const CURSOR_VERSION: &str = "1";
/// Longest accepted cursor, in characters.
pub const MAX_CURSOR_CHARS: usize = 2 * MAX_EVENT_ID_BYTES + 64;
/// Scores are compared as integers: `round(score * SCORE_SCALE)`. Two scores closer than
/// `1 / SCORE_SCALE` are a tie, which the start time then breaks.
pub(crate) const SCORE_SCALE: f32 = 100.0;

/// The rank of a hit. `Ord` is rank order: `a < b` means `a` is listed before `b`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SortKey {
    /// `round(score * SCORE_SCALE)`; higher ranks first.
    pub score_q: u32,
    /// Earlier ranks first.
    pub starts_at_ms: i64,
    /// Last resort, so that the order is total: byte order, smaller first.
    pub event_id: String,
}

impl Ord for SortKey {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score_q
            .cmp(&self.score_q)
            .then(self.starts_at_ms.cmp(&other.starts_at_ms))
            .then_with(|| self.event_id.as_bytes().cmp(other.event_id.as_bytes()))
    }
}

impl PartialOrd for SortKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The integer form of a score used for ranking and in cursors.
pub(crate) fn quantize(score: f32) -> u32 {
    let scaled = (score * SCORE_SCALE).round();
    if scaled.is_nan() || scaled <= 0.0 {
        0
    } else if scaled >= u32::MAX as f32 {
        u32::MAX
    } else {
        scaled as u32
    }
}

/// The score shown to clients: the quantized score back as a float.
pub(crate) fn dequantize(score_q: u32) -> f32 {
    score_q as f32 / SCORE_SCALE
}

/// Encodes the key of the last hit of a page, bound to the query that produced it.
pub(crate) fn encode(query_hash: u64, key: &SortKey) -> String {
    let mut out = format!(
        "{CURSOR_VERSION}.{query_hash:016x}.{:x}.{}.",
        key.score_q, key.starts_at_ms
    );
    for byte in key.event_id.as_bytes() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Decodes a cursor; fails on anything [`encode`] did not produce for `query_hash`.
pub(crate) fn decode(cursor: &str, query_hash: u64) -> Result<SortKey, SearchError> {
    if cursor.len() > MAX_CURSOR_CHARS {
        return Err(SearchError::InvalidCursor("too long"));
    }
    let mut parts = cursor.split('.');
    let (Some(version), Some(hash), Some(score), Some(starts), Some(id), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(SearchError::InvalidCursor("malformed"));
    };
    if version != CURSOR_VERSION {
        return Err(SearchError::InvalidCursor("unknown version"));
    }
    let hash = parse_hex_u64(hash).ok_or(SearchError::InvalidCursor("malformed"))?;
    if hash != query_hash {
        return Err(SearchError::InvalidCursor("it belongs to another query"));
    }
    let score_q = parse_hex_u64(score)
        .and_then(|s| u32::try_from(s).ok())
        .ok_or(SearchError::InvalidCursor("malformed score"))?;
    let starts_at_ms = parse_i64(starts).ok_or(SearchError::InvalidCursor("malformed time"))?;
    let event_id = decode_hex_string(id).ok_or(SearchError::InvalidCursor("malformed event id"))?;
    if event_id.is_empty() || event_id.len() > MAX_EVENT_ID_BYTES {
        return Err(SearchError::InvalidCursor("malformed event id"));
    }
    Ok(SortKey {
        score_q,
        starts_at_ms,
        event_id,
    })
}

fn parse_hex_u64(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

fn parse_i64(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn decode_hex_string(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 2);
    for pair in bytes.chunks_exact(2) {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out.push((hi * 16 + lo) as u8);
    }
    String::from_utf8(out).ok()
}

/// FNV-1a, 64 bits: a stable hash (unlike `DefaultHasher`, fixed across Rust releases) that
/// ties a cursor to its query.
pub(crate) fn fnv1a(text: &str) -> u64 {
    use std::hash::Hasher;
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(text.as_bytes());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(score_q: u32, starts_at_ms: i64, event_id: &str) -> SortKey {
        SortKey {
            score_q,
            starts_at_ms,
            event_id: event_id.into(),
        }
    }

    #[test]
    fn rank_order_is_score_then_time_then_id() {
        let mut keys = vec![
            key(100, 5, "b"),
            key(100, 5, "a"),
            key(200, 9, "z"),
            key(100, 1, "z"),
            key(0, -3, "a"),
        ];
        keys.sort();
        assert_eq!(
            keys,
            [
                key(200, 9, "z"),
                key(100, 1, "z"),
                key(100, 5, "a"),
                key(100, 5, "b"),
                key(0, -3, "a"),
            ]
        );
    }

    #[test]
    fn quantize_rounds_and_clamps() {
        assert_eq!(quantize(24.0), 2400);
        assert_eq!(quantize(0.004), 0);
        assert_eq!(quantize(-1.0), 0);
        assert_eq!(quantize(f32::NAN), 0);
        assert_eq!(quantize(f32::INFINITY), u32::MAX);
        assert_eq!(dequantize(2400), 24.0);
    }

    #[test]
    fn cursors_round_trip() {
        let k = key(2450, -1_700_000_000_000, "evt-é/1");
        let cursor = encode(42, &k);
        assert!(cursor
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
        assert_eq!(decode(&cursor, 42).unwrap(), k);
    }

    #[test]
    fn foreign_or_damaged_cursors_are_rejected() {
        let cursor = encode(42, &key(1, 2, "evt"));
        let bad = [
            "".to_string(),
            "garbage".to_string(),
            cursor.replacen('1', "2", 1),
            format!("{cursor}.extra"),
            format!("{cursor}0"),
            cursor.replace("657674", "zz7674"),
            "1.000000000000002a.1.2.".to_string(),
            "1.000000000000002a.1ffffffff.2.41".to_string(),
            "1.000000000000002a.1.+2.41".to_string(),
            "1.000000000000002a.1.2.ff".to_string(),
            "x".repeat(MAX_CURSOR_CHARS + 1),
        ];
        for cursor in bad {
            assert!(
                matches!(decode(&cursor, 42), Err(SearchError::InvalidCursor(_))),
                "{cursor:?} was accepted"
            );
        }
        assert!(matches!(
            decode(&cursor, 43),
            Err(SearchError::InvalidCursor("it belongs to another query"))
        ));
    }

    #[test]
    fn fnv1a_is_stable() {
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
