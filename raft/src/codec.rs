//! The one binary encoding of the inventory (bincode 2, standard config): log entries, state
//! records, snapshots, inter-node RPC bodies and client answers all go through [`encode`] and
//! [`decode`], so a value written by one part reads back in every other.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The bytes of any serde value.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding plain owned data into a Vec cannot fail; a failure is a bug worth stopping for.
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .expect("bincode encoding of plain data")
}

/// The inverse of [`encode`]; a message, not a panic, on bytes that do not decode.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| e.to_string())
}

/// FNV-1a (64 bits) of `bytes`: a hash that stays the same across processes, platforms and
/// Rust releases (std's `DefaultHasher` promises none of that). Shard placement and request
/// fingerprints depend on it never changing.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(bytes);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_hash_is_fnv1a_64() {
        // Reference values of FNV-1a 64 (offset basis, and "a").
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn values_round_trip() {
        let value = (7u64, String::from("seat"), vec![Some(1u32), None]);
        assert_eq!(
            decode::<(u64, String, Vec<Option<u32>>)>(&encode(&value)),
            Ok(value)
        );
        assert!(decode::<String>(&[0xff]).is_err());
    }
}
