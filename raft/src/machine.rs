//! The inventory state machine: `apply(state, request, now_ms) -> reply`, pure.
//!
//! No clock, no randomness, no I/O, no hash-map iteration: every replica fed the same log ends
//! in the same state, byte for byte ([`Machine::records`]). Persisted state is a set of
//! records (globals, events, holds, bookings, request ids, catalog, placement); seat slots and
//! the other indexes are derived from them on load. Each apply marks the records it touched
//! dirty so storage can write exactly those, atomically with the applied log id.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::types::*;

/// Bytes of a record key and its encoded value.
pub type Record = (Vec<u8>, Vec<u8>);

/// Values that apply itself keeps track of besides the domain records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Globals {
    /// The effective time of the last applied proposal; time never goes back.
    last_now_ms: u64,
    limits: Limits,
}

/// An event's registration, stored once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct EventMeta {
    event_id: EventId,
    currency: String,
    hold_ttl_ms: u64,
    seats: Vec<SeatSpec>,
}

/// A remembered request: its command fingerprint and its first reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RequestRecord {
    fingerprint: u64,
    reply: Reply,
}

/// Who occupies a seat, as last written (a `Held` slot whose hold is no longer live is free).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Free,
    Held(HoldId),
    Sold(BookingId),
}

/// An event's inventory: the stored registration plus indexes derived from holds and bookings.
#[derive(Debug, Clone)]
struct EventState {
    meta: EventMeta,
    seat_idx: BTreeMap<SeatId, usize>,
    slots: Vec<Slot>,
    /// Holds per owner that may still be live (pruned when they finish).
    holds_by_owner: BTreeMap<UserId, BTreeSet<HoldId>>,
}

/// Record keys; their byte encoding orders like this enum.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Globals,
    Event(EventId),
    Hold(HoldId),
    Booking(BookingId),
    Request(RequestId),
    Catalog(String, String),
    Placement(EventId),
    Group(GroupId),
}

impl Key {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Key::Globals => out.push(b'g'),
            Key::Event(id) => tagged(&mut out, b'e', id),
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
        }
        out
    }
}

/// Whether a record key is an event's seat layout (large, written once per registration
/// chunk; storage may keep these apart from the hot records).
pub fn is_layout_key(key: &[u8]) -> bool {
    key.first() == Some(&b'e')
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

/// The wire and storage encoding (bincode, standard config) of any serde value.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding plain owned data into a Vec cannot fail; a failure is a bug worth stopping for.
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .expect("bincode encoding of plain data")
}

/// The inverse of [`encode`]; a message, not a panic, on bytes that do not decode.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| e.to_string())
}

/// FNV-1a over the command's encoding: a stable fingerprint for idempotency checks.
fn fingerprint(command: &Command) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in encode(command) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The replicated state of one Raft group.
#[derive(Debug, Clone)]
pub struct Machine {
    globals: Globals,
    events: BTreeMap<EventId, EventState>,
    holds: BTreeMap<HoldId, Hold>,
    bookings: BTreeMap<BookingId, Booking>,
    requests: BTreeMap<RequestId, RequestRecord>,
    catalog: BTreeMap<(String, String), Vec<u8>>,
    placement: BTreeMap<EventId, GroupId>,
    groups: BTreeMap<GroupId, Vec<(NodeId, String)>>,
    // Derived indexes (rebuilt on load, never stored).
    bookings_by_owner: BTreeMap<UserId, BTreeSet<BookingId>>,
    /// Active holds by expiry, for sweeps.
    expiring: BTreeSet<(u64, HoldId)>,
    /// Finished holds by finish time, for retention.
    finished: BTreeSet<(u64, HoldId)>,
    /// Request ids by reply time, for retention.
    request_times: BTreeSet<(u64, RequestId)>,
    /// Records touched since the last [`Machine::take_dirty`].
    dirty: BTreeSet<Key>,
}

impl Default for Machine {
    fn default() -> Self {
        Machine::new()
    }
}

impl PartialEq for Machine {
    fn eq(&self, other: &Self) -> bool {
        self.records() == other.records()
    }
}

impl Machine {
    pub fn new() -> Self {
        Machine {
            globals: Globals {
                last_now_ms: 0,
                limits: Limits::default(),
            },
            events: BTreeMap::new(),
            holds: BTreeMap::new(),
            bookings: BTreeMap::new(),
            requests: BTreeMap::new(),
            catalog: BTreeMap::new(),
            placement: BTreeMap::new(),
            groups: BTreeMap::new(),
            bookings_by_owner: BTreeMap::new(),
            expiring: BTreeSet::new(),
            finished: BTreeSet::new(),
            request_times: BTreeSet::new(),
            dirty: BTreeSet::new(),
        }
    }

    /// Applies a leader-stamped proposal: every request in order, at one effective time.
    pub fn apply_proposal(&mut self, proposal: &Proposal, changes: &mut Vec<Change>) -> Vec<Reply> {
        let now_ms = self.advance_clock(proposal.now_ms);
        proposal
            .requests
            .iter()
            .map(|r| self.apply(r, now_ms, changes))
            .collect()
    }

    /// Moves the group's clock to `max(stamped, last)`, so a slow new leader cannot turn time
    /// back and resurrect an expired hold. Returns the effective time.
    pub fn advance_clock(&mut self, stamped_ms: u64) -> u64 {
        if stamped_ms > self.globals.last_now_ms {
            self.globals.last_now_ms = stamped_ms;
            self.dirty.insert(Key::Globals);
        }
        self.globals.last_now_ms
    }

    /// The group's effective time: the latest stamped time applied.
    pub fn now_ms(&self) -> u64 {
        self.globals.last_now_ms
    }

    pub fn limits(&self) -> &Limits {
        &self.globals.limits
    }

    /// Applies one request at `now_ms` (callers pass a time no lower than [`Machine::now_ms`]).
    pub fn apply(&mut self, request: &Request, now_ms: u64, changes: &mut Vec<Change>) -> Reply {
        let now_ms = now_ms.max(self.globals.last_now_ms);
        let Some(request_id) = &request.request_id else {
            return Reply {
                at_ms: now_ms,
                outcome: self.execute(&request.command, now_ms, changes),
            };
        };
        if request_id.is_empty() || request_id.len() > MAX_ID_BYTES {
            let outcome = Outcome::Rejected(Rejection::Invalid(
                "request id must be 1..=128 bytes".into(),
            ));
            return Reply {
                at_ms: now_ms,
                outcome,
            };
        }
        let fp = fingerprint(&request.command);
        if let Some(record) = self.requests.get(request_id) {
            if record.fingerprint == fp {
                return record.reply.clone();
            }
            return Reply {
                at_ms: now_ms,
                outcome: Outcome::Rejected(Rejection::RequestIdReused),
            };
        }
        let reply = Reply {
            at_ms: now_ms,
            outcome: self.execute(&request.command, now_ms, changes),
        };
        self.requests.insert(
            request_id.clone(),
            RequestRecord {
                fingerprint: fp,
                reply: reply.clone(),
            },
        );
        self.request_times.insert((now_ms, request_id.clone()));
        self.dirty.insert(Key::Request(request_id.clone()));
        reply
    }

    fn execute(&mut self, command: &Command, now_ms: u64, changes: &mut Vec<Change>) -> Outcome {
        let result = match command {
            Command::RegisterEvent {
                event_id,
                currency,
                hold_ttl_ms,
                seats,
            } => self.register_event(event_id, currency, *hold_ttl_ms, seats, changes),
            Command::AddSeats { event_id, seats } => self.add_seats(event_id, seats, changes),
            Command::Hold {
                event_id,
                hold_id,
                owner,
                seat_ids,
                ttl_ms,
            } => self.hold(event_id, hold_id, owner, seat_ids, *ttl_ms, now_ms, changes),
            Command::Release { hold_id, owner } => self.release(hold_id, owner, now_ms, changes),
            Command::CreateBooking {
                booking_id,
                hold_id,
                owner,
                payment_ref,
            } => self.create_booking(booking_id, hold_id, owner, payment_ref, now_ms, changes),
            Command::Confirm {
                booking_id,
                payment_event_id,
            } => self.confirm(booking_id, payment_event_id, now_ms, changes),
            Command::FailPayment {
                booking_id,
                payment_event_id,
            } => self.fail_payment(booking_id, payment_event_id, now_ms, changes),
            Command::MarkRefunded { booking_id } => self.mark_refunded(booking_id, now_ms, changes),
            Command::Sweep => Ok(self.sweep(now_ms, changes)),
            Command::SetLimits(limits) => self.set_limits(limits),
            Command::PutCatalog { kind, id, doc } => self.put_catalog(kind, id, Some(doc), changes),
            Command::DeleteCatalog { kind, id } => self.put_catalog(kind, id, None, changes),
            Command::AssignEvent { event_id, group } => {
                self.assign_event(event_id, *group, changes)
            }
            Command::PutGroup { group, members } => self.put_group(*group, members, changes),
        };
        result.unwrap_or_else(Outcome::Rejected)
    }

    fn register_event(
        &mut self,
        event_id: &str,
        currency: &str,
        hold_ttl_ms: u64,
        seats: &[SeatSpec],
        changes: &mut Vec<Change>,
    ) -> Result<Outcome, Rejection> {
        check_id("event id", event_id)?;
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Rejection::Invalid(
                "currency must be an ISO 4217 code such as USD".into(),
            ));
        }
        self.check_ttl(hold_ttl_ms)?;
        check_seats(seats)?;
        let meta = EventMeta {
            event_id: event_id.to_owned(),
            currency: currency.to_owned(),
            hold_ttl_ms,
            seats: seats.to_vec(),
        };
        if let Some(existing) = self.events.get(event_id) {
            // A replay after later AddSeats still matches: the registered seats start with these.
            let same = existing.meta.currency == meta.currency
                && existing.meta.hold_ttl_ms == meta.hold_ttl_ms
                && existing.meta.seats.starts_with(&meta.seats);
            return if same {
                Ok(Outcome::Registered {
                    n_seats: seats.len() as u32,
                })
            } else {
                Err(Rejection::EventConflict)
            };
        }
        let state = EventState::new(meta)?;
        self.events.insert(event_id.to_owned(), state);
        self.dirty.insert(Key::Event(event_id.to_owned()));
        changes.push(Change::EventRegistered {
            event_id: event_id.to_owned(),
        });
        Ok(Outcome::Registered {
            n_seats: seats.len() as u32,
        })
    }

    fn add_seats(
        &mut self,
        event_id: &str,
        seats: &[SeatSpec],
        changes: &mut Vec<Change>,
    ) -> Result<Outcome, Rejection> {
        check_seats(seats)?;
        let event = self.events.get(event_id).ok_or(Rejection::UnknownEvent)?;
        if event.meta.seats.len() + seats.len() > MAX_SEATS_PER_EVENT {
            return Err(Rejection::Invalid(format!(
                "an event has at most {MAX_SEATS_PER_EVENT} seats"
            )));
        }
        let mut meta = event.meta.clone();
        meta.seats.extend_from_slice(seats);
        let state = EventState::new(meta)?;
        let n_seats = state.meta.seats.len() as u32;
        // Keep the derived slots of the seats already there (they may be held or sold).
        let old = self
            .events
            .insert(event_id.to_owned(), state)
            .expect("event looked up above");
        let event = self.events.get_mut(event_id).expect("just inserted");
        event.slots[..old.slots.len()].clone_from_slice(&old.slots);
        event.holds_by_owner = old.holds_by_owner;
        self.dirty.insert(Key::Event(event_id.to_owned()));
        changes.push(Change::EventRegistered {
            event_id: event_id.to_owned(),
        });
        Ok(Outcome::Registered { n_seats })
    }

    fn check_ttl(&self, ttl_ms: u64) -> Result<(), Rejection> {
        let limits = &self.globals.limits;
        if ttl_ms < limits.min_hold_ttl_ms || ttl_ms > limits.max_hold_ttl_ms {
            return Err(Rejection::TtlOutOfRange {
                min_ms: limits.min_hold_ttl_ms,
                max_ms: limits.max_hold_ttl_ms,
            });
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn hold(
        &mut self,
        event_id: &str,
        hold_id: &str,
        owner: &str,
        seat_ids: &[SeatId],
        ttl_ms: Option<u64>,
        now_ms: u64,
        changes: &mut Vec<Change>,
    ) -> Result<Outcome, Rejection> {
        check_id("hold id", hold_id)?;
        check_id("owner", owner)?;
        let limits = self.globals.limits.clone();
        if seat_ids.is_empty() {
            return Err(Rejection::NoSeats);
        }
        if seat_ids.len() > limits.max_seats_per_hold as usize {
            return Err(Rejection::TooManySeats {
                max: limits.max_seats_per_hold,
            });
        }
        let mut seen = BTreeSet::new();
        let duplicates: BTreeSet<SeatId> = seat_ids
            .iter()
            .filter(|s| !seen.insert(s.as_str()))
            .cloned()
            .collect();
        if !duplicates.is_empty() {
            return Err(Rejection::DuplicateSeats(duplicates.into_iter().collect()));
        }
        let Some(event) = self.events.get(event_id) else {
            return Err(Rejection::UnknownEvent);
        };
        if self.holds.contains_key(hold_id) {
            return Err(Rejection::IdInUse);
        }
        let ttl_ms = ttl_ms.unwrap_or(event.meta.hold_ttl_ms);
        self.check_ttl(ttl_ms)?;
        let n_live = event
            .holds_by_owner
            .get(owner)
            .map(|ids| {
                ids.iter()
                    .filter(|id| self.holds.get(*id).is_some_and(|h| h.is_live(now_ms)))
                    .count()
            })
            .unwrap_or(0);
        if n_live >= limits.max_holds_per_user_per_event as usize {
            return Err(Rejection::TooManyHolds {
                max: limits.max_holds_per_user_per_event,
            });
        }
        let mut idxs = Vec::with_capacity(seat_ids.len());
        let mut unknown = Vec::new();
        for seat_id in seat_ids {
            match event.seat_idx.get(seat_id) {
                Some(&idx) => idxs.push(idx),
                None => unknown.push(seat_id.clone()),
            }
        }
        if !unknown.is_empty() {
            return Err(Rejection::UnknownSeats(unknown));
        }
        let taken: Vec<SeatId> = idxs
            .iter()
            .zip(seat_ids)
            .filter(|(idx, _)| !self.slot_is_free(&event.slots[**idx], now_ms))
            .map(|(_, id)| id.clone())
            .collect();
        if !taken.is_empty() {
            return Ok(Outcome::Unavailable { seat_ids: taken });
        }
        let expires_at_ms = now_ms.saturating_add(ttl_ms);
        let total_minor = idxs.iter().map(|&i| event.meta.seats[i].price_minor).sum();
        let hold = Hold {
            hold_id: hold_id.to_owned(),
            event_id: event_id.to_owned(),
            owner: owner.to_owned(),
            seat_ids: seat_ids.to_vec(),
            total_minor,
            created_at_ms: now_ms,
            expires_at_ms,
            status: HoldStatus::Active,
            finished_at_ms: None,
            booking_id: None,
        };
        let event = self
            .events
            .get_mut(event_id)
            .expect("event looked up above");
        for (&idx, seat_id) in idxs.iter().zip(seat_ids) {
            event.slots[idx] = Slot::Held(hold_id.to_owned());
            changes.push(Change::Seat {
                event_id: event_id.to_owned(),
                seat_id: seat_id.clone(),
                status: SeatStatus::Held {
                    until_ms: expires_at_ms,
                },
            });
        }
        event
            .holds_by_owner
            .entry(owner.to_owned())
            .or_default()
            .insert(hold_id.to_owned());
        self.expiring.insert((expires_at_ms, hold_id.to_owned()));
        self.holds.insert(hold_id.to_owned(), hold.clone());
        self.dirty.insert(Key::Hold(hold_id.to_owned()));
        changes.push(Change::Hold {
            hold_id: hold_id.to_owned(),
            status: HoldStatus::Active,
        });
        Ok(Outcome::Held(hold))
    }

    fn slot_is_free(&self, slot: &Slot, now_ms: u64) -> bool {
        match slot {
            Slot::Free => true,
            Slot::Held(hold_id) => !self.holds.get(hold_id).is_some_and(|h| h.is_live(now_ms)),
            Slot::Sold(_) => false,
        }
    }

    /// Ends an active hold with `status` (released, expired or confirmed-elsewhere) and frees
    /// the seats it still occupies.
    fn finish_hold(
        &mut self,
        hold_id: &str,
        status: HoldStatus,
        at_ms: u64,
        changes: &mut Vec<Change>,
    ) {
        let Some(hold) = self.holds.get_mut(hold_id) else {
            return;
        };
        let previous_expiry = hold.expires_at_ms;
        hold.status = status;
        hold.finished_at_ms = Some(at_ms);
        let hold = hold.clone();
        self.expiring.remove(&(previous_expiry, hold_id.to_owned()));
        self.finished.insert((at_ms, hold_id.to_owned()));
        self.dirty.insert(Key::Hold(hold_id.to_owned()));
        if let Some(event) = self.events.get_mut(&hold.event_id) {
            if let Some(ids) = event.holds_by_owner.get_mut(&hold.owner) {
                ids.remove(hold_id);
                if ids.is_empty() {
                    event.holds_by_owner.remove(&hold.owner);
                }
            }
            if status != HoldStatus::Confirmed {
                for seat_id in &hold.seat_ids {
                    let Some(&idx) = event.seat_idx.get(seat_id) else {
                        continue;
                    };
                    if event.slots[idx] == Slot::Held(hold_id.to_owned()) {
                        event.slots[idx] = Slot::Free;
                        changes.push(Change::Seat {
                            event_id: hold.event_id.clone(),
                            seat_id: seat_id.clone(),
                            status: SeatStatus::Available,
                        });
                    }
                }
            }
        }
        changes.push(Change::Hold {
            hold_id: hold_id.to_owned(),
            status,
        });
    }

    fn release(
        &mut self,
        hold_id: &str,
        owner: &str,
        now_ms: u64,
        changes: &mut Vec<Change>,
    ) -> Result<Outcome, Rejection> {
        let hold = self.holds.get(hold_id).ok_or(Rejection::UnknownHold)?;
        if hold.owner != owner {
            return Err(Rejection::NotOwner);
        }
        match hold.status_at(now_ms) {
            HoldStatus::Active => {}
            other => return Err(Rejection::HoldNotActive(other)),
        }
        self.finish_hold(hold_id, HoldStatus::Released, now_ms, changes);
        Ok(Outcome::Released)
    }

    fn create_booking(
        &mut self,
        booking_id: &str,
        hold_id: &str,
        owner: &str,
        payment_ref: &str,
        now_ms: u64,
        changes: &mut Vec<Change>,
    ) -> Result<Outcome, Rejection> {
        check_id("booking id", booking_id)?;
        if payment_ref.len() > MAX_ID_BYTES {
            return Err(Rejection::Invalid(
                "payment reference is at most 128 bytes".into(),
            ));
        }
        if self.bookings.contains_key(booking_id) {
            return Err(Rejection::IdInUse);
        }
        let hold = self.holds.get(hold_id).ok_or(Rejection::UnknownHold)?;
        if hold.owner != owner {
            return Err(Rejection::NotOwner);
        }
        match hold.status_at(now_ms) {
            HoldStatus::Active => {}
            other => return Err(Rejection::HoldNotActive(other)),
        }
        if let Some(existing) = hold
            .booking_id
            .as_ref()
            .and_then(|id| self.bookings.get(id))
        {
            if matches!(
                existing.status,
                BookingStatus::PendingPayment | BookingStatus::Confirmed
            ) {
                return Err(Rejection::HoldAlreadyBooked(existing.booking_id.clone()));
            }
        }
        let currency = self
            .events
            .get(&hold.event_id)
            .map(|e| e.meta.currency.clone())
            .unwrap_or_default();
        let booking = Booking {
            booking_id: booking_id.to_owned(),
            event_id: hold.event_id.clone(),
            hold_id: hold_id.to_owned(),
            owner: owner.to_owned(),
            seat_ids: hold.seat_ids.clone(),
            total_minor: hold.total_minor,
            currency,
            status: BookingStatus::PendingPayment,
            failure: None,
            payment_ref: payment_ref.to_owned(),
            payment_event_id: None,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        };
        if let Some(hold) = self.holds.get_mut(hold_id) {
            hold.booking_id = Some(booking_id.to_owned());
        }
        self.dirty.insert(Key::Hold(hold_id.to_owned()));
        self.bookings.insert(booking_id.to_owned(), booking.clone());
        self.bookings_by_owner
            .entry(owner.to_owned())
            .or_default()
            .insert(booking_id.to_owned());
        self.dirty.insert(Key::Booking(booking_id.to_owned()));
        changes.push(Change::Booking {
            booking_id: booking_id.to_owned(),
            status: BookingStatus::PendingPayment,
        });
        Ok(Outcome::BookingCreated(booking))
    }

    fn confirm(
        &mut self,
        booking_id: &str,
        payment_event_id: &str,
        now_ms: u64,
        changes: &mut Vec<Change>,
    ) -> Result<Outcome, Rejection> {
        let booking = self
            .bookings
            .get(booking_id)
            .ok_or(Rejection::UnknownBooking)?;
        if let Some(outcome) = settled_outcome(booking) {
            return Ok(outcome);
        }
        let hold_id = booking.hold_id.clone();
        let live_hold = self.holds.get(&hold_id).filter(|h| {
            h.is_live(now_ms)
                && h.owner == booking.owner
                && h.booking_id.as_deref() == Some(booking_id)
        });
        let Some(hold) = live_hold.cloned() else {
            let reason = match self.holds.get(&hold_id).map(|h| h.status_at(now_ms)) {
                Some(HoldStatus::Released) => FailureReason::HoldReleased,
                _ => FailureReason::HoldExpired,
            };
            let booking = self.settle(
                booking_id,
                BookingStatus::Failed,
                Some(reason),
                payment_event_id,
                now_ms,
                changes,
            );
            return Ok(Outcome::BookingFailed(booking));
        };
        self.finish_hold(&hold_id, HoldStatus::Confirmed, now_ms, changes);
        let event = self
            .events
            .get_mut(&hold.event_id)
            .ok_or(Rejection::UnknownEvent)?;
        for seat_id in &hold.seat_ids {
            if let Some(&idx) = event.seat_idx.get(seat_id) {
                event.slots[idx] = Slot::Sold(booking_id.to_owned());
                changes.push(Change::Seat {
                    event_id: hold.event_id.clone(),
                    seat_id: seat_id.clone(),
                    status: SeatStatus::Sold,
                });
            }
        }
        let booking = self.settle(
            booking_id,
            BookingStatus::Confirmed,
            None,
            payment_event_id,
            now_ms,
            changes,
        );
        Ok(Outcome::Confirmed(booking))
    }

    fn settle(
        &mut self,
        booking_id: &str,
        status: BookingStatus,
        failure: Option<FailureReason>,
        payment_event_id: &str,
        now_ms: u64,
        changes: &mut Vec<Change>,
    ) -> Booking {
        let booking = self
            .bookings
            .get_mut(booking_id)
            .expect("settle is called on an existing booking");
        booking.status = status;
        booking.failure = failure;
        booking.payment_event_id = Some(payment_event_id.to_owned());
        booking.updated_at_ms = now_ms;
        self.dirty.insert(Key::Booking(booking_id.to_owned()));
        changes.push(Change::Booking {
            booking_id: booking_id.to_owned(),
            status,
        });
        booking.clone()
    }

    fn fail_payment(
        &mut self,
        booking_id: &str,
        payment_event_id: &str,
        now_ms: u64,
        changes: &mut Vec<Change>,
    ) -> Result<Outcome, Rejection> {
        let booking = self
            .bookings
            .get(booking_id)
            .ok_or(Rejection::UnknownBooking)?;
        if let Some(outcome) = settled_outcome(booking) {
            return Ok(outcome);
        }
        let reason = Some(FailureReason::PaymentDeclined);
        let booking = self.settle(
            booking_id,
            BookingStatus::Failed,
            reason,
            payment_event_id,
            now_ms,
            changes,
        );
        Ok(Outcome::BookingFailed(booking))
    }

    fn mark_refunded(
        &mut self,
        booking_id: &str,
        now_ms: u64,
        changes: &mut Vec<Change>,
    ) -> Result<Outcome, Rejection> {
        let booking = self
            .bookings
            .get_mut(booking_id)
            .ok_or(Rejection::UnknownBooking)?;
        match booking.status {
            BookingStatus::Refunded => Ok(Outcome::Refunded(booking.clone())),
            BookingStatus::Failed => {
                booking.status = BookingStatus::Refunded;
                booking.updated_at_ms = now_ms;
                let booking = booking.clone();
                self.dirty.insert(Key::Booking(booking_id.to_owned()));
                changes.push(Change::Booking {
                    booking_id: booking_id.to_owned(),
                    status: BookingStatus::Refunded,
                });
                Ok(Outcome::Refunded(booking))
            }
            other => Err(Rejection::BookingState(other)),
        }
    }

    fn sweep(&mut self, now_ms: u64, changes: &mut Vec<Change>) -> Outcome {
        let expired: Vec<(u64, HoldId)> = self
            .expiring
            .range(..(now_ms.saturating_add(1), String::new()))
            .cloned()
            .collect();
        for (expires_at_ms, hold_id) in &expired {
            self.finish_hold(hold_id, HoldStatus::Expired, *expires_at_ms, changes);
        }
        let limits = self.globals.limits.clone();
        let hold_cutoff = now_ms.saturating_sub(limits.hold_retention_ms);
        let old: Vec<(u64, HoldId)> = self
            .finished
            .range(..(hold_cutoff, String::new()))
            .cloned()
            .collect();
        let mut n_holds_forgotten = 0u32;
        for (at_ms, hold_id) in old {
            // A hold whose booking still waits for its payment stays, so the confirm can explain.
            let pending = self
                .holds
                .get(&hold_id)
                .and_then(|h| h.booking_id.as_ref())
                .and_then(|b| self.bookings.get(b))
                .is_some_and(|b| b.status == BookingStatus::PendingPayment);
            if pending {
                continue;
            }
            self.finished.remove(&(at_ms, hold_id.clone()));
            self.holds.remove(&hold_id);
            self.dirty.insert(Key::Hold(hold_id));
            n_holds_forgotten += 1;
        }
        let request_cutoff = now_ms.saturating_sub(limits.request_retention_ms);
        let old: Vec<(u64, RequestId)> = self
            .request_times
            .range(..(request_cutoff, String::new()))
            .cloned()
            .collect();
        for (at_ms, request_id) in &old {
            self.request_times.remove(&(*at_ms, request_id.clone()));
            self.requests.remove(request_id);
            self.dirty.insert(Key::Request(request_id.clone()));
        }
        Outcome::Swept {
            n_holds_expired: expired.len() as u32,
            n_holds_forgotten,
            n_requests_forgotten: old.len() as u32,
        }
    }

    fn set_limits(&mut self, limits: &Limits) -> Result<Outcome, Rejection> {
        if limits.max_seats_per_hold == 0
            || limits.max_holds_per_user_per_event == 0
            || limits.min_hold_ttl_ms == 0
            || limits.min_hold_ttl_ms > limits.max_hold_ttl_ms
        {
            return Err(Rejection::Invalid(
                "limits must be positive and min ttl <= max ttl".into(),
            ));
        }
        self.globals.limits = limits.clone();
        self.dirty.insert(Key::Globals);
        Ok(Outcome::Done)
    }

    fn put_catalog(
        &mut self,
        kind: &str,
        id: &str,
        doc: Option<&Vec<u8>>,
        changes: &mut Vec<Change>,
    ) -> Result<Outcome, Rejection> {
        check_id("catalog kind", kind)?;
        check_id("catalog id", id)?;
        if kind.contains('\0') {
            return Err(Rejection::Invalid(
                "catalog kind must not contain NUL".into(),
            ));
        }
        let key = (kind.to_owned(), id.to_owned());
        match doc {
            Some(doc) if doc.len() > MAX_CATALOG_DOC_BYTES => {
                return Err(Rejection::Invalid(format!(
                    "catalog documents are at most {MAX_CATALOG_DOC_BYTES} bytes"
                )))
            }
            Some(doc) => {
                self.catalog.insert(key, doc.clone());
            }
            None => {
                if self.catalog.remove(&key).is_none() {
                    return Ok(Outcome::Done);
                }
            }
        }
        self.dirty
            .insert(Key::Catalog(kind.to_owned(), id.to_owned()));
        changes.push(Change::Catalog {
            kind: kind.to_owned(),
            id: id.to_owned(),
            deleted: doc.is_none(),
        });
        Ok(Outcome::Done)
    }

    fn assign_event(
        &mut self,
        event_id: &str,
        group: GroupId,
        changes: &mut Vec<Change>,
    ) -> Result<Outcome, Rejection> {
        check_id("event id", event_id)?;
        if group == META_GROUP {
            return Err(Rejection::Invalid(
                "events live in inventory groups (1..)".into(),
            ));
        }
        if let Some(&existing) = self.placement.get(event_id) {
            return Ok(Outcome::Assigned { group: existing });
        }
        self.placement.insert(event_id.to_owned(), group);
        self.dirty.insert(Key::Placement(event_id.to_owned()));
        changes.push(Change::Placement {
            event_id: event_id.to_owned(),
            group,
        });
        Ok(Outcome::Assigned { group })
    }

    fn put_group(
        &mut self,
        group: GroupId,
        members: &[(NodeId, String)],
        changes: &mut Vec<Change>,
    ) -> Result<Outcome, Rejection> {
        if members.is_empty()
            || members
                .iter()
                .any(|(_, addr)| addr.is_empty() || addr.len() > MAX_ID_BYTES)
        {
            return Err(Rejection::Invalid(
                "a group needs members with addresses".into(),
            ));
        }
        let mut members = members.to_vec();
        members.sort();
        members.dedup_by_key(|(id, _)| *id);
        self.groups.insert(group, members);
        self.dirty.insert(Key::Group(group));
        changes.push(Change::Group { group });
        Ok(Outcome::Done)
    }

    // ----- reads -------------------------------------------------------------------------

    pub fn hold_by_id(&self, hold_id: &str) -> Option<&Hold> {
        self.holds.get(hold_id)
    }

    pub fn booking_by_id(&self, booking_id: &str) -> Option<&Booking> {
        self.bookings.get(booking_id)
    }

    pub fn bookings_of(&self, owner: &str) -> Vec<Booking> {
        self.bookings_by_owner
            .get(owner)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| self.bookings.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn event_ids(&self) -> impl Iterator<Item = &EventId> {
        self.events.keys()
    }

    /// An event's seats with their status at `now_ms`, in registration order.
    pub fn event_seats(&self, event_id: &str, now_ms: u64) -> Option<Vec<(SeatSpec, SeatStatus)>> {
        Some(
            self.slots(event_id)?
                .map(|(spec, slot)| (spec.clone(), self.seat_status(slot, now_ms)))
                .collect(),
        )
    }

    /// An event's seats with the hold or booking each belongs to at `now_ms`, in
    /// registration order.
    pub fn seat_owners(&self, event_id: &str, now_ms: u64) -> Option<Vec<(SeatId, SeatOwner)>> {
        let owner = |slot: &Slot| match slot {
            Slot::Free => SeatOwner::Free,
            Slot::Sold(booking_id) => SeatOwner::Sold {
                booking_id: booking_id.clone(),
            },
            Slot::Held(hold_id) => match self.holds.get(hold_id) {
                Some(h) if h.is_live(now_ms) => SeatOwner::Held {
                    hold_id: hold_id.clone(),
                    until_ms: h.expires_at_ms,
                },
                _ => SeatOwner::Free,
            },
        };
        Some(
            self.slots(event_id)?
                .map(|(spec, slot)| (spec.id.clone(), owner(slot)))
                .collect(),
        )
    }

    /// An event's seats and their slots, in registration order.
    fn slots(&self, event_id: &str) -> Option<impl Iterator<Item = (&SeatSpec, &Slot)>> {
        let event = self.events.get(event_id)?;
        Some(event.meta.seats.iter().zip(&event.slots))
    }

    fn seat_status(&self, slot: &Slot, now_ms: u64) -> SeatStatus {
        match slot {
            Slot::Free => SeatStatus::Available,
            Slot::Sold(_) => SeatStatus::Sold,
            Slot::Held(hold_id) => match self.holds.get(hold_id) {
                Some(h) if h.is_live(now_ms) => SeatStatus::Held {
                    until_ms: h.expires_at_ms,
                },
                _ => SeatStatus::Available,
            },
        }
    }

    pub fn catalog_doc(&self, kind: &str, id: &str) -> Option<&Vec<u8>> {
        self.catalog.get(&(kind.to_owned(), id.to_owned()))
    }

    /// Every catalog document, ordered by (kind, id).
    pub fn catalog(&self) -> impl Iterator<Item = (&(String, String), &Vec<u8>)> {
        self.catalog.iter()
    }

    pub fn placement(&self) -> &BTreeMap<EventId, GroupId> {
        &self.placement
    }

    pub fn groups(&self) -> &BTreeMap<GroupId, Vec<(NodeId, String)>> {
        &self.groups
    }

    /// When the earliest active hold expires, if any (the leader proposes a sweep after it).
    pub fn next_expiry_ms(&self) -> Option<u64> {
        self.expiring.first().map(|(t, _)| *t)
    }

    /// Whether a sweep at `now_ms` has anything to tidy.
    pub fn sweep_due(&self, now_ms: u64) -> bool {
        let limits = &self.globals.limits;
        self.next_expiry_ms().is_some_and(|t| t <= now_ms)
            || self
                .finished
                .first()
                .is_some_and(|(t, _)| t.saturating_add(limits.hold_retention_ms) < now_ms)
            || self
                .request_times
                .first()
                .is_some_and(|(t, _)| t.saturating_add(limits.request_retention_ms) < now_ms)
    }

    pub fn n_holds(&self) -> usize {
        self.holds.len()
    }

    // ----- persistence -------------------------------------------------------------------

    /// Records changed since the last call: `(key, Some(value))` to write, `(key, None)` to
    /// delete. Storage writes them in one atomic batch with the applied log id.
    pub fn take_dirty(&mut self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|key| (key.encode(), self.value_of(&key)))
            .collect()
    }

    fn value_of(&self, key: &Key) -> Option<Vec<u8>> {
        match key {
            Key::Globals => Some(encode(&self.globals)),
            Key::Event(id) => self.events.get(id).map(|e| encode(&e.meta)),
            Key::Hold(id) => self.holds.get(id).map(encode),
            Key::Booking(id) => self.bookings.get(id).map(encode),
            Key::Request(id) => self.requests.get(id).map(encode),
            Key::Catalog(kind, id) => self.catalog.get(&(kind.clone(), id.clone())).cloned(),
            Key::Placement(id) => self.placement.get(id).map(encode),
            Key::Group(g) => self.groups.get(g).map(encode),
        }
    }

    /// The whole state as sorted records: the snapshot format and the replica-equality check.
    pub fn records(&self) -> Vec<Record> {
        let mut keys = vec![Key::Globals];
        keys.extend(self.events.keys().map(|k| Key::Event(k.clone())));
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
                    let meta: EventMeta = decode(&value).map_err(corrupt)?;
                    let state = EventState::new(meta).map_err(|r| corrupt(format!("{r:?}")))?;
                    m.events.insert(text()?, state);
                }
                b'h' => {
                    let hold: Hold = decode(&value).map_err(corrupt)?;
                    m.holds.insert(text()?, hold);
                }
                b'b' => {
                    let booking: Booking = decode(&value).map_err(corrupt)?;
                    m.bookings.insert(text()?, booking);
                }
                b'r' => {
                    let record: RequestRecord = decode(&value).map_err(corrupt)?;
                    m.request_times.insert((record.reply.at_ms, text()?));
                    m.requests.insert(text()?, record);
                }
                b'c' => {
                    let text = text()?;
                    let (kind, id) = text
                        .split_once('\0')
                        .ok_or_else(|| corrupt("catalog key without id".into()))?;
                    m.catalog.insert((kind.to_owned(), id.to_owned()), value);
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
                other => return Err(corrupt(format!("unknown record tag {other}"))),
            }
        }
        m.rebuild_indexes();
        Ok(m)
    }

    fn rebuild_indexes(&mut self) {
        for hold in self.holds.values() {
            match (hold.status, hold.finished_at_ms) {
                (HoldStatus::Active, _) => {
                    self.expiring
                        .insert((hold.expires_at_ms, hold.hold_id.clone()));
                    if let Some(event) = self.events.get_mut(&hold.event_id) {
                        event
                            .holds_by_owner
                            .entry(hold.owner.clone())
                            .or_default()
                            .insert(hold.hold_id.clone());
                    }
                }
                (_, Some(at_ms)) => {
                    self.finished.insert((at_ms, hold.hold_id.clone()));
                }
                (_, None) => {}
            }
        }
        // Slots: a hold written later always supersedes an earlier one on the same seat, and
        // only the latest hold of a seat can be active; sold seats override holds.
        let mut by_creation: Vec<&Hold> = self
            .holds
            .values()
            .filter(|h| h.status == HoldStatus::Active)
            .collect();
        by_creation
            .sort_by(|a, b| (a.created_at_ms, &a.hold_id).cmp(&(b.created_at_ms, &b.hold_id)));
        for hold in by_creation {
            if let Some(event) = self.events.get_mut(&hold.event_id) {
                for seat_id in &hold.seat_ids {
                    if let Some(&idx) = event.seat_idx.get(seat_id) {
                        event.slots[idx] = Slot::Held(hold.hold_id.clone());
                    }
                }
            }
        }
        for booking in self.bookings.values() {
            self.bookings_by_owner
                .entry(booking.owner.clone())
                .or_default()
                .insert(booking.booking_id.clone());
            if booking.status == BookingStatus::Confirmed {
                if let Some(event) = self.events.get_mut(&booking.event_id) {
                    for seat_id in &booking.seat_ids {
                        if let Some(&idx) = event.seat_idx.get(seat_id) {
                            event.slots[idx] = Slot::Sold(booking.booking_id.clone());
                        }
                    }
                }
            }
        }
    }

    /// Counts of seats per status at `now_ms` for one event: (available, held, sold).
    pub fn seat_counts(&self, event_id: &str, now_ms: u64) -> Option<(u32, u32, u32)> {
        let event = self.events.get(event_id)?;
        let mut counts = (0, 0, 0);
        for slot in &event.slots {
            match self.seat_status(slot, now_ms) {
                SeatStatus::Available => counts.0 += 1,
                SeatStatus::Held { .. } => counts.1 += 1,
                SeatStatus::Sold => counts.2 += 1,
            }
        }
        Some(counts)
    }
}

impl EventState {
    fn new(meta: EventMeta) -> Result<EventState, Rejection> {
        let mut seat_idx = BTreeMap::new();
        let mut duplicates = BTreeSet::new();
        for (idx, seat) in meta.seats.iter().enumerate() {
            if seat_idx.insert(seat.id.clone(), idx).is_some() {
                duplicates.insert(seat.id.clone());
            }
        }
        if !duplicates.is_empty() {
            return Err(Rejection::DuplicateSeats(duplicates.into_iter().collect()));
        }
        let slots = vec![Slot::Free; meta.seats.len()];
        Ok(EventState {
            meta,
            seat_idx,
            slots,
            holds_by_owner: BTreeMap::new(),
        })
    }
}

/// What a payment event answers for a booking that is already settled: replays and late
/// events change nothing.
fn settled_outcome(booking: &Booking) -> Option<Outcome> {
    match booking.status {
        BookingStatus::Confirmed => Some(Outcome::Confirmed(booking.clone())),
        BookingStatus::Failed | BookingStatus::Refunded => {
            Some(Outcome::BookingFailed(booking.clone()))
        }
        BookingStatus::PendingPayment => None,
    }
}

fn check_seats(seats: &[SeatSpec]) -> Result<(), Rejection> {
    if seats.is_empty() {
        return Err(Rejection::NoSeats);
    }
    if seats.len() > MAX_SEATS_PER_COMMAND {
        return Err(Rejection::Invalid(format!(
            "at most {MAX_SEATS_PER_COMMAND} seats per command; send the rest with AddSeats"
        )));
    }
    for seat in seats {
        check_id("seat id", &seat.id)?;
        if seat.section.len() > MAX_ID_BYTES || seat.row.len() > MAX_ID_BYTES {
            return Err(Rejection::Invalid(
                "section and row names are at most 128 bytes".into(),
            ));
        }
    }
    Ok(())
}

fn check_id(what: &str, id: &str) -> Result<(), Rejection> {
    if id.is_empty() || id.len() > MAX_ID_BYTES || id.chars().any(char::is_control) {
        return Err(Rejection::Invalid(format!(
            "{what} must be 1..={MAX_ID_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}
