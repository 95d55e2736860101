//! Which request each `Idempotency-Key` first named, per user, on this API node: a retry
//! with the same key and a different body is answered 409 before it reaches the inventory
//! (the inventory's own request record catches the rest, across nodes).
//!
//! Insert-only with a time to live, so the oldest key is always the next to go: each shard
//! keeps its keys in insertion order beside the map and drops from the front, whether the
//! key expired or the shard is full. A general cache (frequency-based admission, per-read
//! bookkeeping) did more work per request than the holds' own path and could refuse to
//! remember a new key while full, which is the one a retry will need.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

/// Independent locks; a request locks one.
const SHARDS: usize = 16;

/// The first request seen under a key, as a digest.
pub struct KeyMemory {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
    per_shard: usize,
    ttl_ms: u64,
}

#[derive(Default)]
struct Shard {
    digests: HashMap<Arc<str>, (String, u64)>,
    /// Keys oldest first, with the time they were remembered.
    order: VecDeque<(Arc<str>, u64)>,
}

/// What [`KeyMemory::check`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyCheck {
    /// First use of the key (now remembered).
    Fresh,
    /// A retry of the request the key first named.
    Repeat,
    /// The key was first used for a different request.
    Reused,
}

impl KeyMemory {
    /// Remembers up to `capacity` keys (at least one per shard), each for `ttl_ms`.
    pub fn new(capacity: usize, ttl_ms: u64) -> KeyMemory {
        KeyMemory {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            ttl_ms,
        }
    }

    /// Whether `key` of `user` was first used for the request with `digest`, remembering
    /// it if it is new.
    pub fn check(&self, user: &str, key: &str, digest: &str, now_ms: u64) -> KeyCheck {
        let slot = format!("{user}\u{0}{key}");
        let shard = self.hasher.hash_one(&slot) as usize % SHARDS;
        let mut shard = self.shards[shard].lock().unwrap_or_else(|p| p.into_inner());
        shard.expire(now_ms.saturating_sub(self.ttl_ms));
        if let Some((first, _)) = shard.digests.get(slot.as_str()) {
            return match first == digest {
                true => KeyCheck::Repeat,
                false => KeyCheck::Reused,
            };
        }
        while shard.order.len() >= self.per_shard {
            shard.drop_oldest();
        }
        let slot: Arc<str> = slot.into();
        shard
            .digests
            .insert(slot.clone(), (digest.to_owned(), now_ms));
        shard.order.push_back((slot, now_ms));
        KeyCheck::Fresh
    }

    /// Keys remembered now (expired ones count until a request touches their shard).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).order.len())
            .sum()
    }
}

impl Shard {
    /// Forgets keys remembered before `cutoff_ms`.
    fn expire(&mut self, cutoff_ms: u64) {
        while self.order.front().is_some_and(|(_, at)| *at < cutoff_ms) {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some((slot, _)) = self.order.pop_front() {
            self.digests.remove(&slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_its_first_request_per_user() {
        let keys = KeyMemory::new(100, 1_000);
        assert_eq!(keys.check("u1", "k", "d1", 0), KeyCheck::Fresh);
        assert_eq!(keys.check("u1", "k", "d1", 1), KeyCheck::Repeat);
        assert_eq!(keys.check("u1", "k", "d2", 2), KeyCheck::Reused);
        // Another user's key of the same name is another key.
        assert_eq!(keys.check("u2", "k", "d2", 3), KeyCheck::Fresh);
        // A user and key that concatenate alike stay apart.
        assert_eq!(keys.check("u", "1\u{0}k", "d3", 4), KeyCheck::Fresh);
        assert_eq!(keys.len(), 3);
    }

    #[test]
    fn a_key_is_forgotten_after_its_time_to_live() {
        let keys = KeyMemory::new(100, 1_000);
        assert_eq!(keys.check("u", "k", "d1", 5_000), KeyCheck::Fresh);
        assert_eq!(keys.check("u", "k", "d2", 5_999), KeyCheck::Reused);
        assert_eq!(keys.check("u", "k", "d2", 6_001), KeyCheck::Fresh);
        assert_eq!(keys.check("u", "k", "d1", 6_002), KeyCheck::Reused);
    }

    #[test]
    fn when_full_the_oldest_key_goes_and_the_newest_is_remembered() {
        // One key per shard: every new key in a shard pushes the previous one out.
        let keys = KeyMemory::new(1, u64::MAX);
        let n = 200;
        for i in 0..n {
            assert_eq!(keys.check("u", &i.to_string(), "d", i), KeyCheck::Fresh);
            assert_eq!(
                keys.check("u", &i.to_string(), "other", i),
                KeyCheck::Reused
            );
        }
        assert!(keys.len() <= SHARDS);
        // The newest key is always still there; the oldest long gone.
        assert_eq!(
            keys.check("u", &(n - 1).to_string(), "x", n),
            KeyCheck::Reused
        );
        assert_eq!(keys.check("u", "0", "x", n), KeyCheck::Fresh);
    }
}
