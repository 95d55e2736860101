//! The inventory state machine: `apply(state, request, now_ms) -> reply`, pure.
//!
//! No clock, no randomness, no I/O, no hash-map iteration: every replica fed the same log ends
//! in the same state, byte for byte ([`Machine::records`]).
//!
//! # Layout
//!
//! - this file: the [`Machine`], request ids (replays), the group clock, the dispatch of a
//!   command to its handler, and the consistency check debug builds run after every apply;
//! - [`inventory`]: events, holds, releases and the sweep;
//! - [`bookings`]: bookings and their payment (confirm, fail, refund);
//! - [`layout`]: an event's seat layout, compact (seat ids in one arena, rows in the venue's
//!   order, which the picker walks);
//! - [`memory`]: the machine's accounting of its heap, per structure (the memory bench);
//! - [`meta`]: the meta group's catalog, placement and group table, and the limits;
//! - [`picker`]: best-available holds: the per-row index and the choice of seats;
//! - [`mutants`]: deliberately broken rules the simulator must catch (feature `mutants`);
//! - [`queue`]: waiting rooms (join, keep-alive, leave, the leader's admission step);
//! - [`records`]: the persisted form (records and their keys), dirty tracking, rebuild on load;
//! - [`reads`]: what readers and the host ask of the state.
//!
//! Every handler is **check-then-mutate**: `check_*` takes `&self` and returns either a plan or
//! the answer that changes nothing (a [`Rejection`], or an outcome such as
//! [`Outcome::Unavailable`]); the mutating step takes the plan and cannot fail. So a command
//! either changes nothing or does all it says.

mod bookings;
mod column;
mod inventory;
mod layout;
mod memory;
mod meta;
pub mod mutants;
mod picker;
mod queue;
mod reads;
mod records;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use layout::Layout;
pub use memory::MemoryPart;
pub use queue::{presale_order, PlaceAudit, RoomAudit, RATE_WINDOW_MS};
pub use records::{is_layout_key, CorruptRecord, DirtyRecords, Record};
use records::{EventMeta, Globals, Key, RequestRecord};

use crate::codec::stable_hash_of;
use crate::types::*;

/// What a check answers when the command changes nothing: a rejection or a no-change outcome
/// (boxed: the rare answer should not make every check's result as large as an outcome).
type Checked<T> = Result<T, Box<Outcome>>;

/// Who occupies a seat, as last written (a `Held` slot whose hold is no longer live is free):
/// a view of the event's [`Slots`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot<'a> {
    Free,
    Held(&'a str),
    Sold(&'a str),
}

/// A hold or a booking that occupies seats of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Occupant {
    Held(SharedId),
    Sold(SharedId),
}

/// An event's seat slots: per seat a `u32`, 0 when free, else 1 + the place in `occupants`
/// of the hold or booking occupying it. Each occupant is stored once, with the number of
/// seats that name it; its place is reused once none does. Places are never visible outside
/// (reads and records name holds and bookings by id), so two replicas may number them apart.
#[derive(Debug, Clone, Default)]
struct Slots {
    of_seat: Vec<u32>,
    occupants: Vec<Option<(Occupant, u32)>>,
    /// Places of `occupants` that are free to reuse.
    vacant: Vec<u32>,
}

impl Slots {
    fn occupant(&self, handle: u32) -> Option<&Occupant> {
        let place = handle.checked_sub(1)?;
        self.occupants[place as usize].as_ref().map(|(o, _)| o)
    }

    fn get(&self, idx: usize) -> Slot<'_> {
        match self.occupant(self.of_seat[idx]) {
            None => Slot::Free,
            Some(Occupant::Held(id)) => Slot::Held(id),
            Some(Occupant::Sold(id)) => Slot::Sold(id),
        }
    }

    /// A place for a new occupant (named by no seat yet), as a slot value.
    fn add_occupant(&mut self, occupant: Occupant) -> u32 {
        match self.vacant.pop() {
            Some(place) => {
                self.occupants[place as usize] = Some((occupant, 0));
                place + 1
            }
            None => {
                self.occupants.push(Some((occupant, 0)));
                self.occupants.len() as u32
            }
        }
    }

    /// Points seat `idx` at `handle` (0: free), counting the seats each occupant has.
    fn set(&mut self, idx: usize, handle: u32) {
        let old = std::mem::replace(&mut self.of_seat[idx], handle);
        if old == handle {
            return;
        }
        if let Some(place) = old.checked_sub(1) {
            let entry = &mut self.occupants[place as usize];
            if let Some((_, n)) = entry {
                *n -= 1;
                if *n == 0 {
                    *entry = None;
                    self.vacant.push(place);
                }
            }
        }
        if let Some(place) = handle.checked_sub(1) {
            if let Some((_, n)) = &mut self.occupants[place as usize] {
                *n += 1;
            }
        }
    }
}

/// An event's inventory: the stored registration plus indexes derived from holds and bookings.
#[derive(Debug, Clone)]
struct EventState {
    meta: EventMeta,
    slots: Slots,
    /// Per row of the layout: how many of its slots are not [`Slot::Free`] (kept by
    /// [`EventState::set_slot`], the one writer of slots).
    row_taken: Vec<u32>,
    /// How many slots are `Sold` (the waiting room admits no more buyers than seats unsold;
    /// kept by [`EventState::set_slot`] too).
    n_sold: usize,
    /// Holds per owner that may still be live (pruned when they finish), sorted: a few per
    /// owner (the per-user hold limit), almost always one.
    holds_by_owner: Map<UserId, OwnedHolds>,
}

/// One owner's holds in an event, sorted by id. The per-user limit keeps them few and most
/// owners have one, so one is kept inline: no allocation beside the table's entry (the
/// vector this replaced allocated 64 bytes per owner, 5 % of the CPU of a 256-client hold
/// run; BENCHMARKS.md, "Session 15"). As large as a `Vec`, so the entry does not grow.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OwnedHolds {
    One(SharedId),
    Many(Vec<SharedId>),
}

impl OwnedHolds {
    fn as_slice(&self) -> &[SharedId] {
        match self {
            OwnedHolds::One(id) => std::slice::from_ref(id),
            OwnedHolds::Many(ids) => ids,
        }
    }

    fn insert(&mut self, hold_id: &SharedId) {
        match self {
            OwnedHolds::One(id) if id == hold_id => {}
            OwnedHolds::One(id) => {
                let mut ids = vec![id.clone(), hold_id.clone()];
                ids.sort();
                *self = OwnedHolds::Many(ids);
            }
            OwnedHolds::Many(ids) => {
                if let Err(p) = ids.binary_search(hold_id) {
                    ids.insert(p, hold_id.clone());
                }
            }
        }
    }

    /// Takes `hold_id` out; whether none are left. A lone `One(hold_id)` is left as it is:
    /// the caller drops the whole entry.
    fn remove(&mut self, hold_id: &str) -> bool {
        match self {
            OwnedHolds::One(id) => &**id == hold_id,
            OwnedHolds::Many(ids) => {
                ids.retain(|id| &**id != hold_id);
                match ids.as_slice() {
                    [] => true,
                    [one] => {
                        *self = OwnedHolds::One(one.clone());
                        false
                    }
                    _ => false,
                }
            }
        }
    }

    /// What it keeps on the heap beside the table's entry (the ids are the hold table's).
    fn heap_bytes(&self) -> u64 {
        match self {
            OwnedHolds::One(_) => 0,
            OwnedHolds::Many(ids) => memory::vec_bytes(ids),
        }
    }
}

/// The machine's hash tables, keyed by ids of 40–60 bytes (derived hold and request ids):
/// foldhash, seeded per process as std's SipHash is (so no replica depends on an iteration
/// order), at a fraction of its cost. SipHash was 7.6 % of all CPU at 256 clients
/// (BENCHMARKS.md, "Session 13").
pub(crate) type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) type Set<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// A hold's or a request's id as the machine's indexes keep it: allocated once per hold or
/// request and shared by the hold table, the seat slots, the expiry, retention and owner
/// indexes and the dirty keys (one allocation where there were six copies of a 40-byte id).
pub(crate) type SharedId = Arc<str>;

/// The replicated state of one Raft group.
#[derive(Debug, Clone)]
pub struct Machine {
    globals: Globals,
    events: BTreeMap<EventId, EventState>,
    /// Shared with the request record that created the hold while the two are equal.
    holds: Map<SharedId, Arc<Hold>>,
    bookings: BTreeMap<BookingId, Booking>,
    requests: Map<SharedId, RequestRecord>,
    /// Documents are shared so a feed reset copies none of them under the replica lock.
    catalog: BTreeMap<(String, String), Arc<Vec<u8>>>,
    placement: BTreeMap<EventId, GroupId>,
    groups: BTreeMap<GroupId, Vec<(NodeId, String)>>,
    /// The node table (meta group): every storage node ever added, and its state.
    nodes: BTreeMap<NodeId, NodeRecord>,
    /// Waiting rooms of this group's events.
    rooms: BTreeMap<EventId, queue::Room>,
    // Derived indexes (rebuilt on load, never stored).
    bookings_by_owner: BTreeMap<UserId, BTreeSet<BookingId>>,
    /// Active holds by expiry, for sweeps.
    expiring: BTreeSet<(u64, SharedId)>,
    /// Finished holds by finish time, for retention.
    finished: BTreeSet<(u64, SharedId)>,
    /// Request ids by reply time, for retention.
    request_times: BTreeSet<(u64, SharedId)>,
    /// Records touched since the last [`Machine::take_dirty_values`] (or `take_dirty`).
    dirty: Set<Key>,
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

/// The request's command fingerprint for idempotency checks (FNV-1a of its encoding,
/// hashed as it is encoded: every replica does this for every request).
fn fingerprint(command: &Command) -> u64 {
    stable_hash_of(command)
}

impl Machine {
    pub fn new() -> Self {
        Machine {
            globals: Globals {
                last_now_ms: 0,
                limits: Limits::default(),
            },
            events: BTreeMap::new(),
            holds: Map::default(),
            bookings: BTreeMap::new(),
            requests: Map::default(),
            catalog: BTreeMap::new(),
            placement: BTreeMap::new(),
            groups: BTreeMap::new(),
            nodes: BTreeMap::new(),
            rooms: BTreeMap::new(),
            bookings_by_owner: BTreeMap::new(),
            expiring: BTreeSet::new(),
            finished: BTreeSet::new(),
            request_times: BTreeSet::new(),
            dirty: Set::default(),
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
        #[cfg(debug_assertions)]
        let first_change = changes.len();
        let reply = self.apply_request(request, now_ms, changes);
        #[cfg(debug_assertions)]
        self.assert_consistent(&request.command, &changes[first_change..], now_ms);
        reply
    }

    fn apply_request(
        &mut self,
        request: &Request,
        now_ms: u64,
        changes: &mut Vec<Change>,
    ) -> Reply {
        let at = |outcome| Reply {
            at_ms: now_ms,
            outcome,
        };
        let Some(request_id) = &request.request_id else {
            return at(self.execute(&request.command, now_ms, changes));
        };
        if request.command.is_idempotent() {
            // Doing it again is the same as replaying it: nothing to remember per request.
            return at(self.execute(&request.command, now_ms, changes));
        }
        if request_id.is_empty() || request_id.len() > MAX_ID_BYTES {
            return at(Rejection::Invalid("request id must be 1..=128 bytes".into()).into());
        }
        let fp = fingerprint(&request.command);
        if let Some(record) = self.requests.get(request_id.as_str()) {
            if record.fingerprint == fp {
                return record.reply();
            }
            return at(Rejection::RequestIdReused.into());
        }
        let reply = at(self.execute(&request.command, now_ms, changes));
        let record = RequestRecord::new(fp, &reply, &self.holds);
        let request_id = SharedId::from(request_id.as_str());
        self.requests.insert(request_id.clone(), record);
        self.request_times.insert((now_ms, request_id.clone()));
        self.dirty.insert(Key::Request(request_id));
        reply
    }

    /// Checks the command, then (when the check passes) applies it in a step that cannot fail.
    fn execute(&mut self, command: &Command, now_ms: u64, changes: &mut Vec<Change>) -> Outcome {
        let result = match command {
            Command::RegisterEvent(cmd) => self
                .check_register_event(cmd)
                .map(|state| self.put_event(state, changes)),
            Command::AddSeats(cmd) => self
                .check_add_seats(cmd)
                .map(|state| self.put_event(state, changes)),
            Command::SetHoldTtl(cmd) => self
                .check_set_hold_ttl(cmd)
                .map(|()| self.set_hold_ttl(cmd)),
            Command::Hold(cmd) => self
                .check_hold(cmd, now_ms)
                .map(|plan| self.hold(cmd, plan, now_ms, changes)),
            Command::HoldBest(cmd) => self
                .check_hold_best(cmd, now_ms)
                .map(|(hold, plan)| self.hold(&hold, plan, now_ms, changes)),
            Command::Release(cmd) => self
                .check_release(cmd, now_ms)
                .map(|()| self.release(cmd, now_ms, changes)),
            Command::CreateBooking(cmd) => self
                .check_create_booking(cmd, now_ms)
                .map(|booking| self.create_booking(booking, changes)),
            Command::Confirm(cmd) => self
                .check_confirm(cmd, now_ms)
                .map(|plan| self.confirm(cmd, plan, now_ms, changes)),
            Command::FailPayment(cmd) => self
                .check_fail_payment(cmd)
                .map(|()| self.fail_payment(cmd, now_ms, changes)),
            Command::MarkRefunded(cmd) => self
                .check_mark_refunded(cmd)
                .map(|()| self.mark_refunded(cmd, now_ms, changes)),
            Command::Sweep => Ok(self.sweep(now_ms, changes)),
            Command::SetLimits(limits) => {
                self.check_limits(limits).map(|()| self.set_limits(limits))
            }
            Command::PutCatalog(cmd) => self
                .check_put_catalog(cmd)
                .map(|()| self.put_catalog(cmd, changes)),
            Command::DeleteCatalog(cmd) => self
                .check_delete_catalog(cmd)
                .map(|()| self.delete_catalog(cmd, changes)),
            Command::AssignEvent(cmd) => self
                .check_assign_event(cmd)
                .map(|()| self.assign_event(cmd, changes)),
            Command::PutGroup(cmd) => self
                .check_put_group(cmd)
                .map(|members| self.put_group(cmd.group, members, changes)),
            Command::SetQueue(cmd) => self
                .check_set_queue(cmd)
                .map(|()| self.set_queue(cmd, now_ms)),
            Command::JoinQueue(cmd) => self
                .check_join(cmd)
                .map(|plan| self.join(cmd, plan, now_ms)),
            Command::TouchQueue(cmd) => self.check_touch(cmd).map(|()| self.touch(cmd, now_ms)),
            Command::LeaveQueue(cmd) => self
                .check_leave(cmd, now_ms)
                .map(|plan| self.leave(cmd, plan, now_ms)),
            Command::AdmitQueues => Ok(self.step_queues(now_ms)),
            Command::PutNode(cmd) => self
                .check_put_node(cmd)
                .map(|()| self.put_node(cmd, changes)),
        };
        result.unwrap_or_else(|unchanged| *unchanged)
    }

    /// Debug builds: after each apply, the records the command touched agree with each other
    /// and with the seat slots (checked incrementally, so a stadium event stays cheap).
    #[cfg(debug_assertions)]
    fn assert_consistent(&self, command: &Command, changes: &[Change], now_ms: u64) {
        if let Err(broken) = self.check_touched(command, changes, now_ms) {
            panic!("state machine inconsistent after {command:?}: {broken}");
        }
    }

    /// Whether every hold, booking and seat the command touched agrees with the rest of the
    /// state: `Err` names the first disagreement.
    #[cfg(debug_assertions)]
    fn check_touched(
        &self,
        command: &Command,
        changes: &[Change],
        now_ms: u64,
    ) -> Result<(), String> {
        let mut holds: BTreeSet<&str> = BTreeSet::new();
        let mut bookings: BTreeSet<&str> = BTreeSet::new();
        for change in changes {
            match change {
                Change::Hold { hold_id, .. } => {
                    holds.insert(hold_id);
                }
                Change::Booking { booking_id, .. } => {
                    bookings.insert(booking_id);
                }
                Change::Seat {
                    event_id, seat_id, ..
                } => self.check_seat(event_id, seat_id)?,
                _ => {}
            }
        }
        match command {
            Command::Hold(cmd) => {
                holds.insert(&cmd.hold_id);
            }
            Command::HoldBest(cmd) => {
                holds.insert(&cmd.hold_id);
            }
            _ => {}
        }
        for hold_id in holds {
            self.check_hold_record(hold_id, now_ms)?;
        }
        for booking_id in bookings {
            self.check_booking_record(booking_id)?;
        }
        Ok(())
    }

    /// A seat's slot names a hold that is active and holds it, or a confirmed booking of it.
    fn check_seat(&self, event_id: &str, seat_id: &str) -> Result<(), String> {
        let event = self
            .events
            .get(event_id)
            .ok_or("seat of an unknown event")?;
        let idx = event.layout().index_of(seat_id).ok_or("unknown seat")?;
        match event.slot(idx) {
            Slot::Free => Ok(()),
            Slot::Held(hold_id) => match self.holds.get(hold_id) {
                Some(h)
                    if h.status == HoldStatus::Active
                        && h.event_id == event_id
                        && h.seat_ids.iter().any(|s| s == seat_id) =>
                {
                    Ok(())
                }
                _ => Err(format!(
                    "seat {seat_id} held by {hold_id}, which does not hold it"
                )),
            },
            Slot::Sold(booking_id) => match self.bookings.get(booking_id) {
                Some(b)
                    if b.status == BookingStatus::Confirmed
                        && b.event_id == event_id
                        && b.seat_ids.iter().any(|s| s == seat_id) =>
                {
                    Ok(())
                }
                _ => Err(format!(
                    "seat {seat_id} sold to {booking_id}, which did not buy it"
                )),
            },
        }
    }

    /// A live hold occupies all its seats; a finished one none (a confirmed one sold them);
    /// the expiry, retention and per-owner indexes list it exactly when they should.
    fn check_hold_record(&self, hold_id: &str, now_ms: u64) -> Result<(), String> {
        let Some(hold) = self.holds.get(hold_id) else {
            // Forgotten by a sweep after it finished: its seats were freed or sold then.
            return Ok(());
        };
        let active = hold.status == HoldStatus::Active;
        if self
            .expiring
            .contains(&(hold.expires_at_ms, SharedId::from(hold_id)))
            != active
        {
            return Err(format!("hold {hold_id}: expiry index disagrees"));
        }
        if let Some(at_ms) = hold.finished_at_ms {
            if active || !self.finished.contains(&(at_ms, SharedId::from(hold_id))) {
                return Err(format!("hold {hold_id}: retention index disagrees"));
            }
        }
        let event = self
            .events
            .get(&hold.event_id)
            .ok_or_else(|| format!("hold {hold_id} of an unknown event"))?;
        let owned = event
            .owned_holds(&hold.owner)
            .binary_search_by(|id| (**id).cmp(hold_id))
            .is_ok();
        if owned != active {
            return Err(format!("hold {hold_id}: owner index disagrees"));
        }
        for seat_id in &hold.seat_ids {
            let slot = event
                .layout()
                .index_of(seat_id)
                .map(|idx| event.slot(idx))
                .ok_or_else(|| format!("hold {hold_id} names unknown seat {seat_id}"))?;
            let held_here = slot == Slot::Held(hold_id);
            let fine = match hold.status {
                HoldStatus::Active if hold.is_live(now_ms) => held_here,
                HoldStatus::Active => true,
                HoldStatus::Confirmed => {
                    matches!(slot, Slot::Sold(b) if hold.booking_id.as_deref() == Some(b))
                }
                HoldStatus::Released | HoldStatus::Expired => !held_here,
            };
            if !fine {
                return Err(format!(
                    "hold {hold_id} ({:?}) and seat {seat_id} ({slot:?}) disagree",
                    hold.status
                ));
            }
        }
        Ok(())
    }

    /// A confirmed booking's seats are sold to it; every booking is listed for its owner.
    fn check_booking_record(&self, booking_id: &str) -> Result<(), String> {
        let Some(booking) = self.bookings.get(booking_id) else {
            return Err(format!("booking {booking_id} changed but missing"));
        };
        let listed = self
            .bookings_by_owner
            .get(&booking.owner)
            .is_some_and(|ids| ids.contains(booking_id));
        if !listed {
            return Err(format!("booking {booking_id}: owner index disagrees"));
        }
        if booking.status == BookingStatus::Confirmed {
            let event = self
                .events
                .get(&booking.event_id)
                .ok_or_else(|| format!("booking {booking_id} of an unknown event"))?;
            for seat_id in &booking.seat_ids {
                let sold = event
                    .layout()
                    .index_of(seat_id)
                    .is_some_and(|idx| event.slot(idx) == Slot::Sold(booking_id));
                if !sold {
                    return Err(format!(
                        "confirmed booking {booking_id}: {seat_id} not sold"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks the whole state as [`Machine::apply`] checks what one command touched: every
    /// hold, booking and seat. For tests; `Err` names the first disagreement.
    pub fn check_consistency(&self) -> Result<(), String> {
        let now_ms = self.now_ms();
        for hold_id in self.holds.keys() {
            self.check_hold_record(hold_id, now_ms)?;
        }
        for booking_id in self.bookings.keys() {
            self.check_booking_record(booking_id)?;
        }
        for (event_id, event) in &self.events {
            let layout = event.layout();
            for idx in 0..layout.n_seats() {
                self.check_seat(event_id, layout.id(idx))?;
            }
            let mut taken = vec![0u32; layout.n_rows()];
            for (idx, slot) in event.all_slots().enumerate() {
                if slot != Slot::Free {
                    taken[layout.row_of(idx)] += 1;
                }
            }
            if taken != event.row_taken {
                return Err(format!("event {event_id}: per-row taken counts disagree"));
            }
            let n_sold = event
                .all_slots()
                .filter(|s| matches!(s, Slot::Sold(_)))
                .count();
            if n_sold != event.n_sold {
                return Err(format!("event {event_id}: sold count disagrees"));
            }
            let mut named = vec![0u32; event.slots.occupants.len()];
            for &handle in &event.slots.of_seat {
                if let Some(place) = handle.checked_sub(1) {
                    named[place as usize] += 1;
                }
            }
            let counted = event
                .slots
                .occupants
                .iter()
                .map(|o| o.as_ref().map_or(0, |o| o.1));
            if !named.iter().copied().eq(counted) {
                return Err(format!("event {event_id}: occupants' seat counts disagree"));
            }
        }
        for room in self.rooms.values() {
            room.check()?;
        }
        Ok(())
    }
}

impl EventState {
    /// A registered event with every seat free.
    fn new(meta: EventMeta) -> EventState {
        let n_seats = meta.seats.n_seats();
        let row_taken = vec![0; meta.seats.n_rows()];
        EventState {
            meta,
            slots: Slots {
                of_seat: vec![0; n_seats],
                ..Slots::default()
            },
            row_taken,
            n_sold: 0,
            holds_by_owner: Map::default(),
        }
    }

    fn layout(&self) -> &Layout {
        &self.meta.seats
    }

    fn n_seats(&self) -> usize {
        self.slots.of_seat.len()
    }

    fn slot(&self, idx: usize) -> Slot<'_> {
        self.slots.get(idx)
    }

    /// Every seat's slot, in registration order.
    fn all_slots(&self) -> impl Iterator<Item = Slot<'_>> {
        (0..self.n_seats()).map(|idx| self.slot(idx))
    }

    /// The indexes of the seats called `seat_ids` (unknown ids left out).
    fn seat_idxs(&self, seat_ids: &[SeatId]) -> Vec<usize> {
        seat_ids
            .iter()
            .filter_map(|id| self.layout().index_of(id))
            .collect()
    }

    /// The holds of `owner` that may still be live, sorted.
    fn owned_holds(&self, owner: &str) -> &[SharedId] {
        self.holds_by_owner
            .get(owner)
            .map_or(&[], OwnedHolds::as_slice)
    }

    fn add_owned_hold(&mut self, owner: &str, hold_id: &SharedId) {
        match self.holds_by_owner.get_mut(owner) {
            Some(ids) => ids.insert(hold_id),
            None => {
                self.holds_by_owner
                    .insert(owner.to_owned(), OwnedHolds::One(hold_id.clone()));
            }
        }
    }

    fn remove_owned_hold(&mut self, owner: &str, hold_id: &str) {
        if let Some(ids) = self.holds_by_owner.get_mut(owner) {
            if ids.remove(hold_id) {
                self.holds_by_owner.remove(owner);
            }
        }
    }

    /// Seats `idxs` now belong to `occupant` (a new hold, or the booking that bought them).
    fn occupy(&mut self, idxs: &[usize], occupant: Occupant) {
        if idxs.is_empty() {
            return;
        }
        let handle = self.slots.add_occupant(occupant);
        for &idx in idxs {
            self.set_slot(idx, handle);
        }
    }

    fn vacate(&mut self, idx: usize) {
        self.set_slot(idx, 0);
    }

    /// Writes a seat's slot, keeping the per-row count of taken slots and the sold count:
    /// every slot write goes through here.
    fn set_slot(&mut self, idx: usize, handle: u32) {
        let was = self.slot(idx);
        let (was_taken, was_sold) = (was != Slot::Free, matches!(was, Slot::Sold(_)));
        self.slots.set(idx, handle);
        let now = self.slot(idx);
        let (is_taken, is_sold) = (now != Slot::Free, matches!(now, Slot::Sold(_)));
        let row = self.meta.seats.row_of(idx);
        match (was_taken, is_taken) {
            (false, true) => self.row_taken[row] += 1,
            (true, false) => self.row_taken[row] -= 1,
            _ => {}
        }
        match (was_sold, is_sold) {
            (false, true) => self.n_sold += 1,
            (true, false) => self.n_sold -= 1,
            _ => {}
        }
    }
}

/// An id the inventory accepts: 1..=[`MAX_ID_BYTES`] bytes, no control characters.
fn check_id(what: &str, id: &str) -> Result<(), Rejection> {
    if id.is_empty() || id.len() > MAX_ID_BYTES || id.chars().any(char::is_control) {
        return Err(Rejection::Invalid(format!(
            "{what} must be 1..={MAX_ID_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(owned: &OwnedHolds) -> Vec<&str> {
        owned.as_slice().iter().map(|id| &**id).collect()
    }

    #[test]
    fn owned_holds_stay_sorted_and_go_back_inline_at_one() {
        let (a, b, c): (SharedId, SharedId, SharedId) = ("a".into(), "b".into(), "c".into());
        let mut owned = OwnedHolds::One(b.clone());
        owned.insert(&b);
        assert_eq!(owned, OwnedHolds::One(b.clone()), "an id already there");
        owned.insert(&c);
        owned.insert(&a);
        owned.insert(&c);
        assert_eq!(ids(&owned), ["a", "b", "c"]);
        assert!(!owned.remove("b"));
        assert!(!owned.remove("x"), "an id not there changes nothing");
        assert_eq!(ids(&owned), ["a", "c"]);
        assert!(!owned.remove("a"));
        assert_eq!(owned, OwnedHolds::One(c.clone()));
        assert_eq!(owned.heap_bytes(), 0);
        assert!(!owned.remove("x"));
        assert!(owned.remove("c"), "the last one gone");
    }

    #[test]
    fn owned_holds_are_no_larger_than_a_vector() {
        assert_eq!(size_of::<OwnedHolds>(), size_of::<Vec<SharedId>>());
    }
}
