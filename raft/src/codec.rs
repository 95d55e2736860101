//! The one binary encoding of the inventory (bincode 2, standard config): log entries, state
//! records, snapshots, inter-node RPC bodies and client answers all go through [`encode`] and
//! [`decode`], so a value written by one part reads back in every other.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

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

/// [`decode`] into a value that borrows from `bytes` (its `&str` fields point into them).
pub fn decode_borrowed<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    bincode::serde::borrow_decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| e.to_string())
}

/// A byte string field (`#[serde(with = "crate::codec::byte_string")]`) written and read as
/// one length and the bytes. bincode writes a plain `Vec<u8>` the same way (a length, then
/// one byte per `u8`), so the encoding does not change; but serde reads a plain `Vec<u8>`
/// one element at a time, which for a snapshot of a few hundred megabytes is a second or
/// more of a restart. This reads it as one slice.
pub mod byte_string {
    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_byte_buf(Bytes)
    }

    struct Bytes;

    impl<'de> Visitor<'de> for Bytes {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
            Ok(bytes.to_vec())
        }

        fn visit_byte_buf<E>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(bytes)
        }

        // Formats that write bytes as a sequence (JSON's array of numbers) read back too.
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
            while let Some(byte) = seq.next_element()? {
                bytes.push(byte);
            }
            Ok(bytes)
        }
    }
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

/// [`stable_hash`] of `value`'s [`encode`]d bytes, hashed as the encoder writes them: the
/// same value, without a buffer for the bytes. FNV-1a takes bytes one at a time, so the
/// pieces the encoder writes hash as the whole would.
pub fn stable_hash_of<T: Serialize>(value: &T) -> u64 {
    use std::hash::Hasher;
    struct Fnv(fnv::FnvHasher);
    impl bincode::enc::write::Writer for Fnv {
        fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
            self.0.write(bytes);
            Ok(())
        }
    }
    let mut fnv = Fnv(fnv::FnvHasher::default());
    // As in `encode`: plain data cannot fail to encode, and this writer never fails.
    bincode::serde::encode_into_writer(value, &mut fnv, bincode::config::standard())
        .expect("bincode encoding of plain data");
    fnv.0.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Plain {
        tag: u32,
        data: Vec<u8>,
    }

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct AsBytes {
        tag: u32,
        #[serde(with = "byte_string")]
        data: Vec<u8>,
    }

    #[test]
    fn a_byte_string_encodes_as_a_plain_vec_and_reads_back_either_way() {
        for len in [0usize, 1, 127, 128, 300, 70_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let plain = Plain {
                tag: 9,
                data: data.clone(),
            };
            let as_bytes = AsBytes { tag: 9, data };
            // The same bytes on disk, so files written before read with the new field.
            assert_eq!(encode(&plain), encode(&as_bytes), "{len} bytes");
            assert_eq!(decode::<AsBytes>(&encode(&plain)).unwrap(), as_bytes);
            assert_eq!(decode::<Plain>(&encode(&as_bytes)).unwrap(), plain);
        }
        // Cut short: an error, not a shorter byte string.
        let bytes = encode(&AsBytes {
            tag: 1,
            data: vec![5; 40],
        });
        assert!(decode::<AsBytes>(&bytes[..bytes.len() - 1]).is_err());
        // A sequence format (JSON) reads back through the same field.
        let json = serde_json::to_string(&Plain {
            tag: 2,
            data: vec![1, 2, 3],
        })
        .unwrap();
        let read: AsBytes = serde_json::from_str(&json).unwrap();
        assert_eq!(read.data, vec![1, 2, 3]);
    }

    #[test]
    fn stable_hash_is_fnv1a_64() {
        // Reference values of FNV-1a 64 (offset basis, and "a").
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn hashing_while_encoding_equals_hashing_the_encoding() {
        use crate::types::{Command, HoldCmd};
        let hold = Command::Hold(HoldCmd {
            event_id: "ev_0123456789abcdef".into(),
            hold_id: "ho_0123456789abcdef.ev_0123456789abcdef".into(),
            owner: "alice".into(),
            seat_ids: vec!["A-1-1".into(), "A-1-2".into()],
            ttl_ms: Some(600_000),
        });
        assert_eq!(stable_hash_of(&hold), stable_hash(&encode(&hold)));
        let plain = (
            u64::MAX,
            String::from("s\u{e9}at"),
            vec![Some(1u32), None],
            vec![7u8; 300],
        );
        assert_eq!(stable_hash_of(&plain), stable_hash(&encode(&plain)));
        assert_eq!(stable_hash_of(&()), stable_hash(b""));
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
