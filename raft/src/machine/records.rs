//! The machine's persisted form: records (globals, event registrations, holds, bookings,
//! request ids, catalog documents, placement, group table) under ordered byte keys.
//!
//! Seat slots and the other indexes are not stored; they are derived from the records on
//! load. Each apply marks the records it touched dirty so storage writes exactly those,
//! atomically with the applied log id; [`Machine::records`] is the snapshot format and the
//! replica-equality check.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::layout::Layout;
use super::queue::{Place, Room, RoomRecord};
use super::{EventState, Machine, Map, Occupant, Set, SharedId};
use crate::codec::{decode, decode_borrowed, encode};
use crate::types::*;

/// Bytes of a record key and its encoded value.
pub type Record = (Vec<u8>, Vec<u8>);

/// Values that apply itself keeps track of besides the domain records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Globals {
    /// The effective time of the last applied proposal; time never goes back.
    pub(super) last_now_ms: u64,
    pub(super) limits: Limits,
}

/// An event's registration: its settings and its seat layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct EventMeta {
    pub(super) event_id: EventId,
    pub(super) currency: String,
    /// How long a hold of this event lasts: the one home of that rule.
    pub(super) hold_ttl_ms: u64,
    /// Compact and shared (an AddSeats builds a new one); stored one record per
    /// registration chunk ([`Key::Layout`]).
    pub(super) seats: Arc<Layout>,
}

/// An event's record (its settings, and how many layout chunks it has): small, rewritten by
/// every registration chunk and hold TTL change, while each chunk's seats are written once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredEvent {
    event_id: EventId,
    currency: String,
    hold_ttl_ms: u64,
    n_chunks: u32,
}

/// A remembered request: its command fingerprint and its first reply. A hold's first
/// reply is the hold as it was created, which the hold's own record keeps (a hold's id,
/// seats, price and times never change; only its status, finish time and booking do). So the
/// record points at the hold instead of copying it: in memory it shares the hold table's
/// `Arc`, and on disk it is stored by the hold's id ([`BY_HOLD`]), a few dozen bytes instead
/// of a second copy of the hold. A sweep forgets a finished hold no earlier than the request
/// that created it ([`Limits::finished_hold_kept_ms`]), so the hold is there whenever the
/// record is loaded.
/// (Not `PartialEq`: two records answering the same may point at different versions of
/// their hold; compare [`RequestRecord::reply`] or the stored form.)
#[derive(Debug, Clone)]
pub(super) struct RequestRecord {
    pub(super) fingerprint: u64,
    reply: FirstReply,
}

#[derive(Debug, Clone)]
enum FirstReply {
    /// `Held(hold as created)`, read from `hold`: the hold as it was created or a later
    /// version of it (after a load, or shared with the table before a change).
    Held { at_ms: u64, hold: Arc<Hold> },
    /// Boxed: most records are holds, and this variant is as large as a reply.
    Other(Box<Reply>),
}

/// The first byte of a request record stored by its hold's id. A record stored whole (every
/// other reply, and every record an earlier version wrote) begins with its fingerprint, a
/// bincode varint, and no varint begins with 255 (bincode reserves it).
const BY_HOLD: u8 = 0xFF;

/// A request record whose first reply was `Held`, as stored.
#[derive(Serialize, Deserialize)]
struct StoredByHold<'a> {
    /// Always [`BY_HOLD`]: bincode writes a `u8` as that one byte.
    tag: u8,
    fingerprint: u64,
    at_ms: u64,
    hold_id: &'a str,
}

/// A request record stored whole: its first reply copied.
#[derive(Serialize)]
struct StoredWhole<'a> {
    fingerprint: u64,
    reply: &'a Reply,
}

/// [`StoredWhole`] as read back.
#[derive(Deserialize)]
struct StoredRequest {
    fingerprint: u64,
    reply: Reply,
}

/// Whether `hold` is still as it was created (status, finish time and booking unset).
fn is_as_created(hold: &Hold) -> bool {
    hold.status == HoldStatus::Active && hold.finished_at_ms.is_none() && hold.booking_id.is_none()
}

/// `hold` as it was created.
fn as_created(hold: &Arc<Hold>) -> Arc<Hold> {
    if is_as_created(hold) {
        return hold.clone();
    }
    let mut first = Hold::clone(hold);
    first.status = HoldStatus::Active;
    first.finished_at_ms = None;
    first.booking_id = None;
    Arc::new(first)
}

/// Whether `first` is `current` as it was created: every field that never changes equal, and
/// `first` with nothing a later change sets. Spelt field by field so that a new field of
/// [`Hold`] must be sorted into one kind or the other here.
fn created_as(first: &Hold, current: &Hold) -> bool {
    let Hold {
        hold_id,
        event_id,
        owner,
        seat_ids,
        total_minor,
        created_at_ms,
        expires_at_ms,
        status: _,
        finished_at_ms: _,
        booking_id: _,
    } = current;
    is_as_created(first)
        && first.hold_id == *hold_id
        && first.created_at_ms == *created_at_ms
        && first.expires_at_ms == *expires_at_ms
        && first.total_minor == *total_minor
        && first.event_id == *event_id
        && first.owner == *owner
        && first.seat_ids == *seat_ids
}

impl RequestRecord {
    /// The record of `reply`. A `Held` reply is the hold just created, in `holds`; anything
    /// else that answers `Held` (none does today) is kept whole.
    pub(super) fn new(
        fingerprint: u64,
        reply: &Reply,
        holds: &Map<SharedId, Arc<Hold>>,
    ) -> RequestRecord {
        let shared = match &reply.outcome {
            Outcome::Held(hold) => holds
                .get(hold.hold_id.as_str())
                .filter(|h| Arc::ptr_eq(h, hold) || created_as(hold, h)),
            _ => None,
        };
        let reply = match shared {
            Some(hold) => FirstReply::Held {
                at_ms: reply.at_ms,
                hold: hold.clone(),
            },
            None => FirstReply::Other(Box::new(reply.clone())),
        };
        RequestRecord { fingerprint, reply }
    }

    /// The first reply, as it was answered.
    pub(super) fn reply(&self) -> Reply {
        match &self.reply {
            FirstReply::Held { at_ms, hold } => Reply {
                at_ms: *at_ms,
                outcome: Outcome::Held(as_created(hold)),
            },
            FirstReply::Other(reply) => Reply::clone(reply),
        }
    }

    pub(super) fn at_ms(&self) -> u64 {
        match &self.reply {
            FirstReply::Held { at_ms, .. } => *at_ms,
            FirstReply::Other(reply) => reply.at_ms,
        }
    }

    /// The reply, when the record keeps a copy of its own (not shared with the hold table).
    pub(super) fn own_reply(&self) -> Option<&Reply> {
        match &self.reply {
            FirstReply::Held { .. } => None,
            FirstReply::Other(reply) => Some(reply),
        }
    }

    /// The stored form: by the hold's id, or whole.
    pub(super) fn encode(&self) -> Vec<u8> {
        match &self.reply {
            FirstReply::Held { at_ms, hold } => encode(&StoredByHold {
                tag: BY_HOLD,
                fingerprint: self.fingerprint,
                at_ms: *at_ms,
                hold_id: &hold.hold_id,
            }),
            FirstReply::Other(reply) => encode(&StoredWhole {
                fingerprint: self.fingerprint,
                reply,
            }),
        }
    }

    /// Reads a stored record back, its hold (if stored by the hold's id) from `holds`. A
    /// record stored whole with a `Held` reply (as earlier versions stored every one) shares
    /// the hold when `holds` has it as it was created, and otherwise keeps its copy.
    fn decode(value: &[u8], holds: &Map<SharedId, Arc<Hold>>) -> Result<RequestRecord, String> {
        if value.first() == Some(&BY_HOLD) {
            let stored: StoredByHold = decode_borrowed(value)?;
            let hold = holds
                .get(stored.hold_id)
                .filter(|h| h.created_at_ms == stored.at_ms)
                .ok_or_else(|| {
                    format!(
                        "the hold {} created at {} ms, which the record refers to, is not stored",
                        stored.hold_id, stored.at_ms
                    )
                })?;
            return Ok(RequestRecord {
                fingerprint: stored.fingerprint,
                reply: FirstReply::Held {
                    at_ms: stored.at_ms,
                    hold: hold.clone(),
                },
            });
        }
        let StoredRequest { fingerprint, reply } = decode(value)?;
        let shared = match &reply.outcome {
            Outcome::Held(first) => holds
                .get(first.hold_id.as_str())
                .filter(|h| created_as(first, h)),
            _ => None,
        };
        let reply = match shared {
            Some(hold) => FirstReply::Held {
                at_ms: reply.at_ms,
                hold: hold.clone(),
            },
            None => FirstReply::Other(Box::new(reply)),
        };
        Ok(RequestRecord { fingerprint, reply })
    }
}

/// Record keys; their byte encoding orders like this enum.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Key {
    Globals,
    Event(EventId),
    /// The seats of an event's registration chunk (`RegisterEvent` is chunk 0, each
    /// `AddSeats` the next).
    Layout(EventId, u32),
    Hold(SharedId),
    Booking(BookingId),
    Request(SharedId),
    Catalog(String, String),
    Placement(EventId),
    Group(GroupId),
    /// A row of the node table.
    Node(NodeId),
    /// An event's waiting room (settings, counters).
    Room(EventId),
    /// One user's place in an event's waiting room.
    Place(EventId, UserId),
}

impl Key {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Key::Globals => out.push(b'g'),
            Key::Event(id) => tagged(&mut out, b'e', id),
            Key::Layout(id, chunk) => {
                tagged(&mut out, b'l', id);
                out.push(0);
                out.extend_from_slice(&chunk.to_be_bytes());
            }
            Key::Hold(id) => tagged(&mut out, b'h', id),
            Key::Booking(id) => tagged(&mut out, b'b', id),
            Key::Request(id) => tagged(&mut out, b'r', id),
            Key::Catalog(kind, id) => {
                tagged(&mut out, b'c', kind);
                out.push(0);
                out.extend_from_slice(id.as_bytes());
            }
            Key::Placement(id) => tagged(&mut out, b'p', id),
            Key::Group(g) => {
                out.push(b'n');
                out.extend_from_slice(&g.to_be_bytes());
            }
            Key::Node(n) => {
                out.push(b'o');
                out.extend_from_slice(&n.to_be_bytes());
            }
            Key::Room(id) => tagged(&mut out, b'q', id),
            Key::Place(event_id, user) => {
                // Ids have no control characters, so the NUL separates them.
                tagged(&mut out, b'w', event_id);
                out.push(0);
                out.extend_from_slice(user.as_bytes());
            }
        }
        out
    }
}

/// Whether a record key is an event's seat layout (large, written once per registration
/// chunk; storage may keep these apart from the hot records).
pub fn is_layout_key(key: &[u8]) -> bool {
    key.first() == Some(&b'l')
}

fn tagged(out: &mut Vec<u8>, tag: u8, id: &str) {
    out.push(tag);
    out.extend_from_slice(id.as_bytes());
}

/// A record that could not be decoded: the stored state is corrupt.
#[derive(Debug, thiserror::Error)]
#[error("corrupt state record {key:?}: {reason}")]
pub struct CorruptRecord {
    pub key: Vec<u8>,
    pub reason: String,
}

/// Records changed by one or more [`Machine::take_dirty_values`] calls, as they were then:
/// the values are shared (an `Arc`) or copied, not yet encoded, so that whoever holds the
/// machine's lock only pays for the copies and encodes after releasing it. Later takes
/// appended to earlier ones win for a record changed in both.
#[derive(Default)]
pub struct DirtyRecords {
    records: Vec<(Key, Option<DirtyValue>)>,
    /// The newest layout of each event with a changed chunk. A layout only grows (an
    /// `AddSeats` builds a new one with one more chunk, and events are never removed), so
    /// the newest encodes every earlier chunk as it was; keeping one per registration
    /// instead would keep every intermediate layout of a big event alive until the
    /// checkpoint.
    layouts: Map<EventId, Arc<Layout>>,
}

/// One changed record's value as of the take.
enum DirtyValue {
    Encoded(Vec<u8>),
    Hold(Arc<Hold>),
    Request(RequestRecord),
    /// Boxed, as is `Place`: the list grows by appends, and small elements move cheaply.
    Booking(Box<Booking>),
    /// A chunk of the event's layout in [`DirtyRecords::layouts`].
    Layout(u32),
    Catalog(Arc<Vec<u8>>),
    Place(Box<Place>),
}

impl DirtyRecords {
    /// Adds the changes of a later take.
    pub fn append(&mut self, later: DirtyRecords) {
        if self.records.is_empty() && self.layouts.is_empty() {
            *self = later;
        } else {
            self.records.extend(later.records);
            self.layouts.extend(later.layouts);
        }
    }

    /// `(key, Some(value))` to write, `(key, None)` to delete: each record once, with its
    /// latest value.
    pub fn encode(&self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut seen: Set<&Key> =
            Set::with_capacity_and_hasher(self.records.len(), Default::default());
        let mut latest: Vec<_> = self
            .records
            .iter()
            .rev()
            .filter(|(key, _)| seen.insert(key))
            .map(|(key, value)| (key.encode(), value.as_ref().map(|v| self.value(key, v))))
            .collect();
        latest.reverse();
        latest
    }

    fn value(&self, key: &Key, value: &DirtyValue) -> Vec<u8> {
        match value {
            DirtyValue::Encoded(bytes) => bytes.clone(),
            DirtyValue::Hold(hold) => encode(&**hold),
            DirtyValue::Request(record) => record.encode(),
            DirtyValue::Booking(booking) => encode(&**booking),
            DirtyValue::Layout(chunk) => {
                let Key::Layout(event_id, _) = key else {
                    unreachable!("a layout value belongs to a layout key")
                };
                self.layouts
                    .get(event_id)
                    .and_then(|layout| layout.encode_chunk(*chunk as usize))
                    .expect("the event's newest layout has every chunk taken before it")
            }
            DirtyValue::Catalog(doc) => doc.to_vec(),
            DirtyValue::Place(place) => encode(&**place),
        }
    }
}

impl Machine {
    /// Records changed since the last call: `(key, Some(value))` to write, `(key, None)` to
    /// delete. Storage writes them in one atomic batch with the applied log id.
    pub fn take_dirty(&mut self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        self.take_dirty_values().encode()
    }

    /// [`Machine::take_dirty`] without the encoding: what a caller holding a lock on the
    /// machine takes, encoding ([`DirtyRecords::encode`]) once the lock is released. The
    /// encoding is most of a checkpoint's work; done under the replica's write lock it
    /// stalled every apply behind it.
    pub fn take_dirty_values(&mut self) -> DirtyRecords {
        let dirty = std::mem::take(&mut self.dirty);
        let mut taken = DirtyRecords::default();
        taken.records.reserve(dirty.len());
        for key in dirty {
            let value = match &key {
                Key::Layout(event_id, chunk) => self
                    .events
                    .get(event_id)
                    .filter(|e| (*chunk as usize) < e.meta.seats.n_chunks())
                    .map(|e| {
                        taken.layouts.insert(event_id.clone(), e.meta.seats.clone());
                        DirtyValue::Layout(*chunk)
                    }),
                _ => self.dirty_value(&key),
            };
            taken.records.push((key, value));
        }
        taken
    }

    /// A record's value for [`DirtyRecords`] (layouts aside): the large and frequent ones
    /// shared or copied, the small and rare ones encoded at once.
    fn dirty_value(&self, key: &Key) -> Option<DirtyValue> {
        match key {
            Key::Hold(id) => self.holds.get(id).cloned().map(DirtyValue::Hold),
            Key::Request(id) => self.requests.get(id).cloned().map(DirtyValue::Request),
            Key::Booking(id) => self
                .bookings
                .get(id)
                .map(|b| DirtyValue::Booking(Box::new(b.clone()))),
            Key::Catalog(kind, id) => self
                .catalog
                .get(&(kind.clone(), id.clone()))
                .cloned()
                .map(DirtyValue::Catalog),
            Key::Place(event_id, user) => self
                .rooms
                .get(event_id)
                .and_then(|r| r.places.get(user))
                .map(|p| DirtyValue::Place(Box::new(p.clone()))),
            _ => self.value_of(key).map(DirtyValue::Encoded),
        }
    }

    /// Forgets what changed (the caller writes the whole state instead).
    pub fn take_dirty_keys(&mut self) {
        self.dirty.clear();
    }

    fn value_of(&self, key: &Key) -> Option<Vec<u8>> {
        match key {
            Key::Globals => Some(encode(&self.globals)),
            Key::Event(id) => self.events.get(id).map(|e| {
                encode(&StoredEvent {
                    event_id: e.meta.event_id.clone(),
                    currency: e.meta.currency.clone(),
                    hold_ttl_ms: e.meta.hold_ttl_ms,
                    n_chunks: e.meta.seats.n_chunks() as u32,
                })
            }),
            Key::Layout(id, chunk) => self
                .events
                .get(id)
                .and_then(|e| e.meta.seats.encode_chunk(*chunk as usize)),
            Key::Hold(id) => self.holds.get(id).map(encode),
            Key::Booking(id) => self.bookings.get(id).map(encode),
            Key::Request(id) => self.requests.get(id).map(RequestRecord::encode),
            Key::Catalog(kind, id) => self
                .catalog
                .get(&(kind.clone(), id.clone()))
                .map(|doc| doc.to_vec()),
            Key::Placement(id) => self.placement.get(id).map(encode),
            Key::Group(g) => self.groups.get(g).map(encode),
            Key::Node(n) => self.nodes.get(n).map(encode),
            Key::Room(id) => self.rooms.get(id).map(|r| encode(&r.record)),
            Key::Place(event_id, user) => self
                .rooms
                .get(event_id)
                .and_then(|r| r.places.get(user))
                .map(encode),
        }
    }

    /// The whole state as sorted records: the snapshot format and the replica-equality check.
    pub fn records(&self) -> Vec<Record> {
        let mut keys = vec![Key::Globals];
        for (id, event) in &self.events {
            keys.push(Key::Event(id.clone()));
            let n_chunks = event.meta.seats.n_chunks() as u32;
            keys.extend((0..n_chunks).map(|c| Key::Layout(id.clone(), c)));
        }
        keys.extend(self.holds.keys().map(|k| Key::Hold(k.clone())));
        keys.extend(self.bookings.keys().map(|k| Key::Booking(k.clone())));
        keys.extend(self.requests.keys().map(|k| Key::Request(k.clone())));
        keys.extend(
            self.catalog
                .keys()
                .map(|(kind, id)| Key::Catalog(kind.clone(), id.clone())),
        );
        keys.extend(self.placement.keys().map(|k| Key::Placement(k.clone())));
        keys.extend(self.groups.keys().map(|g| Key::Group(*g)));
        keys.extend(self.nodes.keys().map(|n| Key::Node(*n)));
        for (event_id, room) in &self.rooms {
            keys.push(Key::Room(event_id.clone()));
            keys.extend(
                room.places
                    .keys()
                    .map(|u| Key::Place(event_id.clone(), u.clone())),
            );
        }
        let mut records: Vec<Record> = keys
            .iter()
            .filter_map(|k| self.value_of(k).map(|v| (k.encode(), v)))
            .collect();
        records.sort();
        records
    }

    /// Rebuilds a machine (and every derived index) from records.
    pub fn from_records<I: IntoIterator<Item = Record>>(
        records: I,
    ) -> Result<Machine, CorruptRecord> {
        let mut m = Machine::new();
        // Places load after their room (their key sorts after it, but a caller may not sort).
        let mut places: Vec<Place> = Vec::new();
        let mut requests: Vec<(String, Vec<u8>)> = Vec::new();
        // Events with their layout chunks, built once all are read.
        type Chunks = BTreeMap<u32, Vec<SeatSpec>>;
        let mut layouts: BTreeMap<EventId, (Option<StoredEvent>, Chunks)> = BTreeMap::new();
        for (key, value) in records {
            let corrupt = |reason: String| CorruptRecord {
                key: key.clone(),
                reason,
            };
            let Some((&tag, rest)) = key.split_first() else {
                return Err(corrupt("empty key".into()));
            };
            let text = || String::from_utf8(rest.to_vec()).map_err(|e| corrupt(e.to_string()));
            match tag {
                b'g' => m.globals = decode(&value).map_err(corrupt)?,
                b'e' => {
                    let event: StoredEvent = decode(&value).map_err(corrupt)?;
                    layouts.entry(text()?).or_default().0 = Some(event);
                }
                b'l' => {
                    let split = rest.len().checked_sub(5).filter(|&p| rest[p] == 0);
                    let Some(p) = split else {
                        return Err(corrupt("layout key without chunk".into()));
                    };
                    let event_id = String::from_utf8(rest[..p].to_vec())
                        .map_err(|e| corrupt(e.to_string()))?;
                    let chunk = u32::from_be_bytes(rest[p + 1..].try_into().expect("4 bytes"));
                    let seats: Vec<SeatSpec> = decode(&value).map_err(corrupt)?;
                    layouts.entry(event_id).or_default().1.insert(chunk, seats);
                }
                b'h' => {
                    let hold: Hold = decode(&value).map_err(corrupt)?;
                    m.holds.insert(text()?.into(), Arc::new(hold));
                }
                b'b' => {
                    let booking: Booking = decode(&value).map_err(corrupt)?;
                    m.bookings.insert(text()?, booking);
                }
                // Read once every hold is (a record may refer to its hold).
                b'r' => requests.push((text()?, value)),
                b'c' => {
                    let text = text()?;
                    let (kind, id) = text
                        .split_once('\0')
                        .ok_or_else(|| corrupt("catalog key without id".into()))?;
                    m.catalog
                        .insert((kind.to_owned(), id.to_owned()), Arc::new(value));
                }
                b'p' => {
                    let group: GroupId = decode(&value).map_err(corrupt)?;
                    m.placement.insert(text()?, group);
                }
                b'n' => {
                    let bytes: [u8; 8] = rest
                        .try_into()
                        .map_err(|_| corrupt("group key length".into()))?;
                    m.groups
                        .insert(u64::from_be_bytes(bytes), decode(&value).map_err(corrupt)?);
                }
                b'o' => {
                    let node: NodeRecord = decode(&value).map_err(corrupt)?;
                    m.nodes.insert(node.node_id, node);
                }
                b'q' => {
                    let record: RoomRecord = decode(&value).map_err(corrupt)?;
                    m.rooms.insert(text()?, Room::new(record));
                }
                b'w' => places.push(decode(&value).map_err(corrupt)?),
                other => return Err(corrupt(format!("unknown record tag {other}"))),
            }
        }
        for (event_id, (event, chunks)) in layouts {
            let corrupt = |reason: String| CorruptRecord {
                key: event_id.as_bytes().to_vec(),
                reason,
            };
            let event = event.ok_or_else(|| corrupt("layout of no event".into()))?;
            if !chunks.keys().copied().eq(0..event.n_chunks) {
                return Err(corrupt(format!(
                    "layout chunks {:?}, expected {}",
                    chunks.keys().collect::<Vec<_>>(),
                    event.n_chunks
                )));
            }
            let chunks: Vec<Vec<SeatSpec>> = chunks.into_values().collect();
            let layout = Layout::from_chunks(&chunks)
                .map_err(|duplicates| corrupt(format!("seats registered twice: {duplicates:?}")))?;
            let meta = EventMeta {
                event_id: event.event_id,
                currency: event.currency,
                hold_ttl_ms: event.hold_ttl_ms,
                seats: Arc::new(layout),
            };
            m.events.insert(event_id, EventState::new(meta));
        }
        let mut request_times = Vec::with_capacity(requests.len());
        m.requests.reserve(requests.len());
        for (request_id, value) in requests {
            let record =
                RequestRecord::decode(&value, &m.holds).map_err(|reason| CorruptRecord {
                    key: Key::Request(request_id.as_str().into()).encode(),
                    reason,
                })?;
            let request_id = SharedId::from(request_id);
            request_times.push((record.at_ms(), request_id.clone()));
            m.requests.insert(request_id, record);
        }
        // A fresh machine's index, built from the list in one pass (as the hold indexes are
        // in `rebuild_indexes`).
        m.request_times = request_times.into_iter().collect();
        for place in places {
            let room = m
                .rooms
                .get_mut(&place.event_id)
                .ok_or_else(|| CorruptRecord {
                    key: place.event_id.as_bytes().to_vec(),
                    reason: format!("place of {} in no room", place.user),
                })?;
            room.load(place);
        }
        m.rebuild_indexes();
        Ok(m)
    }

    fn rebuild_indexes(&mut self) {
        // The time indexes are built each from one sorted list (`BTreeSet::from_iter` sorts,
        // then fills the tree's nodes in order) rather than by a million inserts at random
        // places, a tenth of opening a big group (BENCHMARKS.md, session 19).
        let (mut expiring, mut finished) = (Vec::new(), Vec::new());
        for (hold_id, hold) in &self.holds {
            match (hold.status, hold.finished_at_ms) {
                (HoldStatus::Active, _) => {
                    expiring.push((hold.expires_at_ms, hold_id.clone()));
                    if let Some(event) = self.events.get_mut(&hold.event_id) {
                        event.add_owned_hold(&hold.owner, hold_id);
                    }
                }
                (_, Some(at_ms)) => finished.push((at_ms, hold_id.clone())),
                (_, None) => {}
            }
        }
        // Only ever called on a machine `from_records` just made: the indexes are empty.
        self.expiring = expiring.into_iter().collect();
        self.finished = finished.into_iter().collect();
        // Slots: a hold written later always supersedes an earlier one on the same seat, and
        // only the latest hold of a seat can be active; sold seats override holds.
        let mut by_creation: Vec<(&SharedId, &Hold)> = self
            .holds
            .iter()
            .map(|(id, h)| (id, &**h))
            .filter(|(_, h)| h.status == HoldStatus::Active)
            .collect();
        // Hold ids are unique, so no two keys are equal and the unstable sort is exact.
        by_creation.sort_unstable_by(|(a_id, a), (b_id, b)| {
            (a.created_at_ms, a_id).cmp(&(b.created_at_ms, b_id))
        });
        for (hold_id, hold) in by_creation {
            if let Some(event) = self.events.get_mut(&hold.event_id) {
                let idxs = event.seat_idxs(&hold.seat_ids);
                event.occupy(&idxs, Occupant::Held(hold_id.clone()));
            }
        }
        for booking in self.bookings.values() {
            self.bookings_by_owner
                .entry(booking.owner.clone())
                .or_default()
                .insert(booking.booking_id.clone());
            if booking.status == BookingStatus::Confirmed {
                if let Some(event) = self.events.get_mut(&booking.event_id) {
                    let idxs = event.seat_idxs(&booking.seat_ids);
                    event.occupy(&idxs, Occupant::Sold(booking.booking_id.as_str().into()));
                }
            }
        }
    }
}
