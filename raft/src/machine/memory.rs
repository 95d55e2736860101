//! The machine's own accounting of its memory: heap bytes per structure, for the memory
//! benchmark (`boxoffice bench memory`) to print beside the process's RSS.
//!
//! Figures are estimates of what the allocator hands out, not what the types ask for: each
//! allocation is rounded as glibc's malloc rounds it ([`alloc_bytes`]), and a B-tree entry
//! costs its key and value plus the slack of half-empty nodes ([`btree_bytes`]), a hash table
//! its buckets at most 7/8 full ([`hash_table_bytes`]). Waiting
//! rooms and the meta group's tables are not counted (the benchmark uses neither).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::mem::size_of;

use super::{EventState, Machine, Occupant, OwnedHolds, SharedId};
use crate::types::*;

/// Heap bytes of one structure of the machine, summed over its events where it is per event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPart {
    pub name: &'static str,
    pub bytes: u64,
}

/// Bytes glibc's malloc takes for a request of `n` bytes: an 8-byte header, 16-byte
/// granules, 32 bytes at least; nothing for an empty request (no allocation).
pub fn alloc_bytes(n: usize) -> u64 {
    if n == 0 {
        return 0;
    }
    ((n + 8).div_ceil(16) * 16).max(32) as u64
}

/// A string's heap block.
fn string_bytes(s: &str) -> u64 {
    alloc_bytes(s.len())
}

/// A vector's block (by capacity).
pub(super) fn vec_bytes<T>(v: &Vec<T>) -> u64 {
    alloc_bytes(v.capacity() * size_of::<T>())
}

/// A shared id's block (two reference counts, then the bytes). Counted once, with the
/// table that owns the hold or request; the other indexes naming it add only their pointer.
fn shared_id_bytes(id: &str) -> u64 {
    alloc_bytes(2 * size_of::<usize>() + id.len())
}

fn strings_bytes(v: &Vec<String>) -> u64 {
    vec_bytes(v) + v.iter().map(|s| string_bytes(s)).sum::<u64>()
}

/// A B-tree's nodes for `len` entries of a `K` and a `V`: a node has room for 11 entries and
/// is allocated whole (a one-entry map takes a full node); nodes are kept about two-thirds
/// full. Internal nodes' child pointers are not counted.
fn btree_bytes<K, V>(len: usize) -> u64 {
    if len == 0 {
        return 0;
    }
    let node = alloc_bytes(16 + 11 * (size_of::<K>() + size_of::<V>()));
    len.div_ceil(7) as u64 * node
}

fn hold_bytes(hold: &Hold) -> u64 {
    string_bytes(&hold.hold_id)
        + string_bytes(&hold.event_id)
        + string_bytes(&hold.owner)
        + strings_bytes(&hold.seat_ids)
        + hold.booking_id.as_deref().map_or(0, string_bytes)
}

fn booking_bytes(booking: &Booking) -> u64 {
    string_bytes(&booking.booking_id)
        + string_bytes(&booking.event_id)
        + string_bytes(&booking.hold_id)
        + string_bytes(&booking.owner)
        + strings_bytes(&booking.seat_ids)
        + string_bytes(&booking.currency)
        + string_bytes(&booking.payment_ref)
        + booking.payment_event_id.as_deref().map_or(0, string_bytes)
}

/// What an outcome keeps on the heap (holds, bookings, seat lists; a rejection's text is not
/// counted).
fn outcome_bytes(outcome: &Outcome) -> u64 {
    match outcome {
        Outcome::Held(hold) => hold_bytes(hold),
        Outcome::BookingCreated(b)
        | Outcome::Confirmed(b)
        | Outcome::BookingFailed(b)
        | Outcome::Refunded(b) => booking_bytes(b),
        Outcome::Unavailable { seat_ids } => strings_bytes(seat_ids),
        _ => 0,
    }
}

/// A map by string id, a B-tree or a hash table.
trait IdMap<V> {
    /// The map's own blocks (nodes or table), not what its keys and values point at.
    fn table_bytes(&self) -> u64;
    /// Each key with what it keeps on the heap, and its value.
    fn entries(&self) -> Box<dyn Iterator<Item = (u64, &V)> + '_>;
}

impl<V> IdMap<V> for BTreeMap<String, V> {
    fn table_bytes(&self) -> u64 {
        btree_bytes::<String, V>(self.len())
    }
    fn entries(&self) -> Box<dyn Iterator<Item = (u64, &V)> + '_> {
        Box::new(self.iter().map(|(k, v)| (string_bytes(k), v)))
    }
}

impl<V, S> IdMap<V> for HashMap<String, V, S> {
    fn table_bytes(&self) -> u64 {
        hash_table_bytes::<String, V>(self.capacity())
    }
    fn entries(&self) -> Box<dyn Iterator<Item = (u64, &V)> + '_> {
        Box::new(self.iter().map(|(k, v)| (string_bytes(k), v)))
    }
}

impl<V, S> IdMap<V> for HashMap<SharedId, V, S> {
    fn table_bytes(&self) -> u64 {
        hash_table_bytes::<SharedId, V>(self.capacity())
    }
    fn entries(&self) -> Box<dyn Iterator<Item = (u64, &V)> + '_> {
        Box::new(self.iter().map(|(k, v)| (shared_id_bytes(k), v)))
    }
}

/// A hash table (std's, hashbrown) with room for `capacity` entries: buckets a power of two
/// at most 7/8 full (at least 4), one entry and one control byte each, plus a group's worth
/// of trailing control bytes, in one block.
fn hash_table_bytes<K, V>(capacity: usize) -> u64 {
    if capacity == 0 {
        return 0;
    }
    let buckets = match capacity {
        0..4 => 4,
        4..8 => 8,
        _ => (capacity * 8 / 7).next_power_of_two(),
    };
    alloc_bytes(buckets * (size_of::<(K, V)>() + 1) + 16)
}

/// A map by string id: its blocks, its keys, and what `value_bytes` says each value keeps.
fn keyed_bytes<V>(map: &impl IdMap<V>, value_bytes: impl Fn(&V) -> u64) -> u64 {
    map.table_bytes()
        + map
            .entries()
            .map(|(key_bytes, v)| key_bytes + value_bytes(v))
            .sum::<u64>()
}

/// A set of `(time, id)` pairs: its nodes (the ids are counted with their tables).
fn timed_ids_bytes(set: &BTreeSet<(u64, SharedId)>) -> u64 {
    btree_bytes::<(u64, SharedId), ()>(set.len())
}

fn hash_set_bytes<K, S>(set: &HashSet<K, S>) -> u64 {
    hash_table_bytes::<K, ()>(set.capacity())
}

fn id_set_bytes(ids: &BTreeSet<String>) -> u64 {
    btree_bytes::<String, ()>(ids.len()) + ids.iter().map(|id| string_bytes(id)).sum::<u64>()
}

impl EventState {
    /// This event's parts, in the order [`Machine::memory_use`] names them.
    fn memory_parts(&self) -> [(&'static str, u64); 7] {
        let [ids, index, numbers, rows] = self.layout().heap_bytes();
        let slots = &self.slots;
        let occupant_bytes = |o: &Option<(Occupant, u32)>| match o {
            // A hold's id is counted with the hold table; a booking's is the slot's own.
            Some((Occupant::Held(_), _)) => 0,
            Some((Occupant::Sold(id), _)) => shared_id_bytes(id),
            None => 0,
        };
        let slot_bytes = vec_bytes(&slots.of_seat)
            + vec_bytes(&slots.occupants)
            + slots.occupants.iter().map(occupant_bytes).sum::<u64>()
            + vec_bytes(&slots.vacant);
        [
            ids,
            index,
            numbers,
            ("rows", rows.1 + vec_bytes(&self.row_taken)),
            ("seat slots", slot_bytes),
            (
                "holds by owner",
                keyed_bytes(&self.holds_by_owner, OwnedHolds::heap_bytes),
            ),
            (
                "event record",
                string_bytes(&self.meta.event_id) + string_bytes(&self.meta.currency),
            ),
        ]
    }
}

impl Machine {
    /// Heap bytes per structure (see the module comment for what is estimated and how).
    pub fn memory_use(&self) -> Vec<MemoryPart> {
        let mut parts: Vec<MemoryPart> = Vec::new();
        let mut add =
            |name: &'static str, bytes: u64| match parts.iter_mut().find(|p| p.name == name) {
                Some(part) => part.bytes += bytes,
                None => parts.push(MemoryPart { name, bytes }),
            };
        add(
            "events",
            btree_bytes::<EventId, EventState>(self.events.len())
                + self.events.keys().map(|id| string_bytes(id)).sum::<u64>(),
        );
        for event in self.events.values() {
            for (name, bytes) in event.memory_parts() {
                add(name, bytes);
            }
        }
        add(
            "holds",
            keyed_bytes(&self.holds, |h| {
                alloc_bytes(2 * size_of::<usize>() + size_of::<Hold>()) + hold_bytes(h)
            }),
        );
        add("hold expiry index", timed_ids_bytes(&self.expiring));
        add("finished holds index", timed_ids_bytes(&self.finished));
        add("bookings", keyed_bytes(&self.bookings, booking_bytes));
        add(
            "bookings by owner",
            keyed_bytes(&self.bookings_by_owner, id_set_bytes),
        );
        add(
            "request records",
            keyed_bytes(&self.requests, |r| {
                r.own_reply().map_or(0, |reply| {
                    alloc_bytes(size_of::<Reply>()) + outcome_bytes(&reply.outcome)
                })
            }),
        );
        add("request times", timed_ids_bytes(&self.request_times));
        add(
            "catalog",
            btree_bytes::<(String, String), std::sync::Arc<Vec<u8>>>(self.catalog.len())
                + self
                    .catalog
                    .iter()
                    .map(|((kind, id), doc)| {
                        string_bytes(kind) + string_bytes(id) + alloc_bytes(doc.len() + 16)
                    })
                    .sum::<u64>(),
        );
        add("dirty keys", hash_set_bytes(&self.dirty));
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_round_as_glibc_does() {
        assert_eq!(alloc_bytes(0), 0);
        assert_eq!(alloc_bytes(1), 32);
        assert_eq!(alloc_bytes(24), 32);
        assert_eq!(alloc_bytes(25), 48);
        assert_eq!(alloc_bytes(4000), 4016);
    }

    #[test]
    fn a_registered_event_is_accounted_per_structure() {
        let mut m = Machine::new();
        let seats: Vec<SeatSpec> = (0..100)
            .map(|i| SeatSpec {
                id: format!("s{i}"),
                section: "Floor".into(),
                row: (i / 10).to_string(),
                number: i % 10,
                price_minor: 100,
            })
            .collect();
        let cmd = Command::RegisterEvent(RegisterEventCmd {
            event_id: "e".into(),
            currency: "USD".into(),
            hold_ttl_ms: 60_000,
            seats,
        });
        let before: u64 = m.memory_use().iter().map(|p| p.bytes).sum();
        m.apply(
            &Request {
                request_id: Some("r".into()),
                command: cmd,
            },
            1,
            &mut Vec::new(),
        );
        let parts = m.memory_use();
        let part = |name| parts.iter().find(|p| p.name == name).map(|p| p.bytes);
        // The ids "s0".."s99" in one arena (290 bytes), their ends within their block of
        // 256 seats (2 bytes each: they pass 255), the block's start; the id index: 4
        // bytes each.
        assert_eq!(
            part("seat ids"),
            Some(alloc_bytes(290) + alloc_bytes(200) + alloc_bytes(4))
        );
        assert_eq!(part("seat index"), Some(alloc_bytes(400)));
        assert_eq!(part("seat slots"), Some(alloc_bytes(400)), "{parts:?}");
        let after: u64 = parts.iter().map(|p| p.bytes).sum();
        assert!(after > before);
    }
}
