//! Waiting rooms: per event, places in a line that the leader's periodic step
//! ([`Command::AdmitQueues`]) admits from the head at the configured rate, never letting more
//! admitted-but-not-bought users in than there are seats still for sale, and closes when the
//! event sells out. Places taken before the sale opens are shuffled once at opening with a
//! seed computed from what the log holds ([`presale_order`]), so anyone can audit the order.
//!
//! A position is a prefix count in a Fenwick tree over the places' line order, so reading
//! where one place stands is O(log n) however long the line. Every handler is
//! check-then-mutate like the rest of the machine; the indexes of a place change only through
//! [`Room::unindex`] / [`Room::index`], which keep them in step with its state.

use super::mutants::{active, Mutant};
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::records::Key;
use super::{check_id, Checked, Machine};
use crate::codec::{encode, stable_hash};
use crate::types::*;

/// The window over which the admission rate is measured (for waiting-time estimates), in ms.
pub const RATE_WINDOW_MS: u64 = 10_000;
/// Shortest admission and abandonment windows, in ms.
pub const MIN_QUEUE_WINDOW_MS: u64 = 1_000;

/// One place as an auditor sees it (see [`Machine::room_audit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceAudit {
    pub user: UserId,
    pub ticket: u64,
    /// Rank in the line: admission must follow it.
    pub order: Option<u64>,
    pub state: PlaceState,
    pub joined_at_ms: u64,
    pub left_line_at_ms: Option<u64>,
    pub admitted_at_ms: Option<u64>,
    pub admission_ended_at_ms: Option<u64>,
}

/// A room's places with the facts its rules are judged by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomAudit {
    pub n_seats: u64,
    /// `(confirmed at, seats)` of each sale of the event.
    pub sales: Vec<(u64, u64)>,
    pub closed: bool,
    pub places: Vec<PlaceAudit>,
    /// The group's time when the audit was taken.
    pub now_ms: u64,
}

/// The stored part of a room (its places are records of their own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct RoomRecord {
    pub(super) event_id: EventId,
    pub(super) settings: QueueSettings,
    /// The sale opened: places taken before were shuffled into the line.
    pub(super) opened: bool,
    /// The event sold out; every place that waited was closed.
    pub(super) closed: bool,
    pub(super) next_ticket: u64,
    pub(super) next_order: u64,
    /// Admissions earned and not yet used, in thousandths (at most one second's worth).
    pub(super) credit_milli: u64,
    pub(super) last_step_ms: u64,
    pub(super) counts: RoomCounts,
    pub(super) shuffle_seed: Option<u64>,
    /// `(step time, admissions)` of the steps of the last [`RATE_WINDOW_MS`] that admitted.
    pub(super) recent: Vec<(u64, u32)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct RoomCounts {
    pub(super) admitted: u64,
    pub(super) bought: u64,
    pub(super) expired: u64,
    pub(super) left: u64,
    pub(super) abandoned: u64,
    pub(super) closed: u64,
}

/// One user's place in one room, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Place {
    pub(super) event_id: EventId,
    pub(super) user: UserId,
    pub(super) ticket: u64,
    /// Rank in the line (admission order); `None` for a place taken before the sale opened,
    /// until the opening shuffle gives it one.
    pub(super) order: Option<u64>,
    pub(super) joined_at_ms: u64,
    pub(super) last_seen_ms: u64,
    pub(super) state: PlaceState,
    /// The audit trail the simulator's checker reads: when the place stopped waiting (for
    /// any reason), was admitted, and when its admission ended (bought, left, expired).
    pub(super) left_line_at_ms: Option<u64>,
    pub(super) admitted_at_ms: Option<u64>,
    pub(super) admission_ended_at_ms: Option<u64>,
}

/// A room: its record, its places, and the indexes derived from them (rebuilt on load).
#[derive(Debug, Clone)]
pub(super) struct Room {
    pub(super) record: RoomRecord,
    pub(super) places: BTreeMap<UserId, Place>,
    by_ticket: BTreeMap<u64, UserId>,
    /// Waiting places taken before opening, by ticket (= join order).
    early: BTreeMap<u64, UserId>,
    /// Waiting places in the line, by order: the first is the head.
    line: BTreeMap<u64, UserId>,
    /// 1 at the order of each waiting place in the line.
    ahead: Fenwick,
    /// Waiting places by when they were last read, for abandonment.
    last_seen: BTreeSet<(u64, UserId)>,
    /// Admitted places by when their admission ends.
    admitted: BTreeSet<(u64, UserId)>,
}

/// Counts per position: `prefix(i)` is the sum of the values at `0..i`, in O(log n). The size
/// is a power of two so it can double without a rebuild.
#[derive(Debug, Clone, Default)]
pub(super) struct Fenwick {
    tree: Vec<i64>,
}

impl Fenwick {
    fn add(&mut self, idx: u64, delta: i64) {
        let i = idx as usize + 1;
        if i >= self.tree.len() {
            self.grow(i);
        }
        let mut i = i;
        while i < self.tree.len() {
            self.tree[i] += delta;
            i += i & i.wrapping_neg();
        }
    }

    /// Doubles until index `i` fits: the new top cell covers everything, the others cover
    /// only new (zero) positions.
    fn grow(&mut self, i: usize) {
        let mut size = self.tree.len().saturating_sub(1).max(1);
        while i > size {
            let total = self.prefix(size as u64);
            size *= 2;
            self.tree.resize(size + 1, 0);
            self.tree[size] = total;
        }
        if self.tree.len() < size + 1 {
            self.tree.resize(size + 1, 0);
        }
    }

    fn prefix(&self, idx: u64) -> i64 {
        let mut i = (idx as usize).min(self.tree.len().saturating_sub(1));
        let mut sum = 0;
        while i > 0 {
            sum += self.tree[i];
            i &= i - 1;
        }
        sum
    }
}

/// The order in which places taken before the sale opened enter the line, and the seed that
/// drew it: a hash of the event, its opening time and the users in join order, so the order
/// is reproducible from the log by anyone. Returns indexes into `users`, head first.
pub fn presale_order(event_id: &str, opens_at_ms: u64, users: &[UserId]) -> (u64, Vec<usize>) {
    let seed = stable_hash(&encode(&(event_id, opens_at_ms, users)));
    let mut order: Vec<usize> = (0..users.len()).collect();
    let mut state = seed;
    // Fisher–Yates driven by SplitMix64.
    for i in (1..order.len()).rev() {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let j = (z % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    (seed, order)
}

impl Room {
    pub(super) fn new(record: RoomRecord) -> Room {
        Room {
            record,
            places: BTreeMap::new(),
            by_ticket: BTreeMap::new(),
            early: BTreeMap::new(),
            line: BTreeMap::new(),
            ahead: Fenwick::default(),
            last_seen: BTreeSet::new(),
            admitted: BTreeSet::new(),
        }
    }

    /// Adds a loaded place and its indexes.
    pub(super) fn load(&mut self, place: Place) {
        self.index(&place);
        self.places.insert(place.user.clone(), place);
    }

    fn index(&mut self, place: &Place) {
        self.by_ticket.insert(place.ticket, place.user.clone());
        match place.state {
            PlaceState::Waiting => {
                self.last_seen
                    .insert((place.last_seen_ms, place.user.clone()));
                match place.order {
                    Some(order) => {
                        self.line.insert(order, place.user.clone());
                        self.ahead.add(order, 1);
                    }
                    None => {
                        self.early.insert(place.ticket, place.user.clone());
                    }
                }
            }
            PlaceState::Admitted { expires_at_ms, .. } => {
                self.admitted.insert((expires_at_ms, place.user.clone()));
            }
            _ => {}
        }
    }

    fn unindex(&mut self, place: &Place) {
        self.by_ticket.remove(&place.ticket);
        match place.state {
            PlaceState::Waiting => {
                self.last_seen
                    .remove(&(place.last_seen_ms, place.user.clone()));
                match place.order {
                    Some(order) => {
                        self.line.remove(&order);
                        self.ahead.add(order, -1);
                    }
                    None => {
                        self.early.remove(&place.ticket);
                    }
                }
            }
            PlaceState::Admitted { expires_at_ms, .. } => {
                self.admitted.remove(&(expires_at_ms, place.user.clone()));
            }
            _ => {}
        }
    }

    /// Moves the user's place to `state` at `now_ms`, recording when it left the line, was
    /// admitted, or its admission ended.
    fn set_state(&mut self, user: &str, state: PlaceState, now_ms: u64) {
        self.update(user, |p| {
            if p.state == PlaceState::Waiting && state != PlaceState::Waiting {
                p.left_line_at_ms = Some(now_ms);
            }
            if let PlaceState::Admitted { expires_at_ms, .. } = p.state {
                // An expired admission ended when it expired, whenever the step noticed.
                p.admission_ended_at_ms = Some(match state {
                    PlaceState::Expired => expires_at_ms.min(now_ms),
                    _ => now_ms,
                });
            }
            if let PlaceState::Admitted { at_ms, .. } = state {
                p.admitted_at_ms = Some(at_ms);
            }
            p.state = state;
        });
    }

    /// Changes the user's place (which exists) with `f`, keeping the indexes in step.
    fn update(&mut self, user: &str, f: impl FnOnce(&mut Place)) {
        let Some(mut place) = self.places.remove(user) else {
            return;
        };
        self.unindex(&place);
        f(&mut place);
        self.index(&place);
        self.places.insert(place.user.clone(), place);
    }

    pub(super) fn n_waiting(&self) -> u64 {
        (self.line.len() + self.early.len()) as u64
    }

    pub(super) fn n_admitted(&self) -> u64 {
        self.admitted.len() as u64
    }

    /// The place of `user` if its ticket is `ticket`.
    pub(super) fn place_with_ticket(&self, user: &str, ticket: u64) -> Option<&Place> {
        self.places.get(user).filter(|p| p.ticket == ticket)
    }

    /// Admissions per second measured over the last [`RATE_WINDOW_MS`], in thousandths; the
    /// configured rate before anyone was admitted.
    pub(super) fn admit_rate_milli(&self, now_ms: u64) -> u64 {
        let Some(&(first_ms, _)) = self.record.recent.first() else {
            return match self.record.counts.admitted {
                0 => u64::from(self.record.settings.admit_per_second) * 1000,
                _ => 0,
            };
        };
        let n: u64 = self.record.recent.iter().map(|(_, n)| u64::from(*n)).sum();
        let span_ms = now_ms
            .saturating_sub(first_ms)
            .clamp(MIN_QUEUE_WINDOW_MS, RATE_WINDOW_MS);
        n * 1_000_000 / span_ms
    }

    /// How a place reads at `now_ms` (an admission past its end reads as expired).
    pub(super) fn view(&self, place: &Place, now_ms: u64) -> PlaceView {
        let state = match place.state {
            PlaceState::Admitted { expires_at_ms, .. } if expires_at_ms <= now_ms => {
                PlaceState::Expired
            }
            state => state,
        };
        let position = match (state, place.order) {
            (PlaceState::Waiting, Some(order)) => Some(self.ahead.prefix(order) as u64 + 1),
            _ => None,
        };
        let rate_milli = self.admit_rate_milli(now_ms);
        let estimated_wait_ms = match (state, position) {
            (PlaceState::Waiting, Some(p)) if rate_milli > 0 => {
                Some(p.saturating_mul(1_000_000) / rate_milli)
            }
            (PlaceState::Admitted { .. }, _) => Some(0),
            _ => None,
        };
        PlaceView {
            event_id: place.event_id.clone(),
            user: place.user.clone(),
            ticket: place.ticket,
            state,
            order: place.order,
            position,
            estimated_wait_ms,
        }
    }

    /// The room's indexes agree with its places. For tests and the consistency check.
    pub(super) fn check(&self) -> Result<(), String> {
        let mut rebuilt = Room::new(self.record.clone());
        for place in self.places.values() {
            if place.event_id != self.record.event_id {
                return Err(format!("place of {} in another room", place.user));
            }
            rebuilt.load(place.clone());
        }
        let same = rebuilt.by_ticket == self.by_ticket
            && rebuilt.early == self.early
            && rebuilt.line == self.line
            && rebuilt.last_seen == self.last_seen
            && rebuilt.admitted == self.admitted;
        if !same {
            return Err(format!("room {}: indexes disagree", self.record.event_id));
        }
        for &order in self.line.keys() {
            let expected = self.line.range(..order).count() as i64;
            if self.ahead.prefix(order) != expected {
                return Err(format!(
                    "room {}: position counts disagree",
                    self.record.event_id
                ));
            }
        }
        Ok(())
    }
}

/// What a join does.
pub(super) enum JoinPlan {
    /// The user keeps the place they have (read again, so kept alive).
    Existing,
    /// A new place at the back (or a closed one if the event sold out).
    New,
}

/// What a leave does.
pub(super) struct LeavePlan;

fn check_settings(settings: &QueueSettings) -> Result<(), Rejection> {
    if settings.admit_per_second == 0 || settings.admit_per_second > MAX_ADMIT_PER_SECOND {
        return Err(Rejection::Invalid(format!(
            "admit_per_second must be 1..={MAX_ADMIT_PER_SECOND}"
        )));
    }
    for (name, ms) in [
        ("admission ttl", settings.admission_ttl_ms),
        ("abandon after", settings.abandon_after_ms),
    ] {
        if !(MIN_QUEUE_WINDOW_MS..=MAX_QUEUE_WINDOW_MS).contains(&ms) {
            return Err(Rejection::Invalid(format!(
                "{name} must be {MIN_QUEUE_WINDOW_MS}..={MAX_QUEUE_WINDOW_MS} ms"
            )));
        }
    }
    Ok(())
}

impl Machine {
    pub(super) fn check_set_queue(&self, cmd: &SetQueueCmd) -> Checked<()> {
        if !self.events.contains_key(&cmd.event_id) {
            return Err(Rejection::UnknownEvent.into());
        }
        check_settings(&cmd.settings)?;
        Ok(())
    }

    pub(super) fn set_queue(&mut self, cmd: &SetQueueCmd, now_ms: u64) -> Outcome {
        let room = self.rooms.entry(cmd.event_id.clone()).or_insert_with(|| {
            Room::new(RoomRecord {
                event_id: cmd.event_id.clone(),
                settings: cmd.settings.clone(),
                opened: false,
                closed: false,
                next_ticket: 1,
                next_order: 0,
                credit_milli: 0,
                last_step_ms: now_ms,
                counts: RoomCounts::default(),
                shuffle_seed: None,
                recent: Vec::new(),
            })
        });
        if !room.record.settings.enabled && cmd.settings.enabled {
            // Turned on again: no admissions were earned while it was off.
            room.record.credit_milli = 0;
            room.record.last_step_ms = now_ms;
        }
        room.record.settings = cmd.settings.clone();
        self.dirty.insert(Key::Room(cmd.event_id.clone()));
        self.open_if_due(&cmd.event_id, now_ms);
        Outcome::Done
    }

    /// Opens the room once its sale opened: the places taken before enter the line in the
    /// order [`presale_order`] draws; later places follow in arrival order.
    fn open_if_due(&mut self, event_id: &str, now_ms: u64) {
        let Some(room) = self.rooms.get_mut(event_id) else {
            return;
        };
        let due = room
            .record
            .settings
            .opens_at_ms
            .is_none_or(|at| at <= now_ms);
        if room.record.opened || !due {
            return;
        }
        room.record.opened = true;
        let early: Vec<UserId> = room.early.values().cloned().collect();
        if !early.is_empty() {
            let opens_at_ms = room.record.settings.opens_at_ms.unwrap_or(now_ms);
            let (seed, order) = presale_order(event_id, opens_at_ms, &early);
            room.record.shuffle_seed = Some(seed);
            for idx in order {
                let rank = room.record.next_order;
                room.record.next_order += 1;
                room.update(&early[idx], |p| p.order = Some(rank));
                self.dirty
                    .insert(Key::Place(event_id.to_owned(), early[idx].clone()));
            }
        }
        self.dirty.insert(Key::Room(event_id.to_owned()));
    }

    pub(super) fn check_join(&self, cmd: &JoinQueueCmd) -> Checked<JoinPlan> {
        check_id("user", &cmd.user)?;
        let room = self
            .rooms
            .get(&cmd.event_id)
            .filter(|r| r.record.settings.enabled)
            .ok_or(Rejection::NoWaitingRoom)?;
        match room.places.get(&cmd.user).map(|p| p.state) {
            Some(
                PlaceState::Waiting
                | PlaceState::Admitted { .. }
                | PlaceState::Bought
                | PlaceState::Closed,
            ) => Ok(JoinPlan::Existing),
            Some(_) => Ok(JoinPlan::New),
            None if room.places.len() >= MAX_PLACES_PER_ROOM => Err(Rejection::RoomFull.into()),
            None => Ok(JoinPlan::New),
        }
    }

    pub(super) fn join(&mut self, cmd: &JoinQueueCmd, plan: JoinPlan, now_ms: u64) -> Outcome {
        self.open_if_due(&cmd.event_id, now_ms);
        let Some(room) = self.rooms.get_mut(&cmd.event_id) else {
            return Rejection::NoWaitingRoom.into();
        };
        match plan {
            JoinPlan::Existing => touch_place(room, &cmd.user, now_ms),
            JoinPlan::New => {
                if let Some(old) = room.places.remove(&cmd.user) {
                    room.unindex(&old);
                }
                let ticket = room.record.next_ticket;
                room.record.next_ticket += 1;
                let state = match room.record.closed {
                    true => PlaceState::Closed,
                    false => PlaceState::Waiting,
                };
                if state == PlaceState::Closed {
                    room.record.counts.closed += 1;
                }
                let order = (room.record.opened && state == PlaceState::Waiting).then(|| {
                    room.record.next_order += 1;
                    room.record.next_order - 1
                });
                room.load(Place {
                    event_id: cmd.event_id.clone(),
                    user: cmd.user.clone(),
                    ticket,
                    order,
                    joined_at_ms: now_ms,
                    last_seen_ms: now_ms,
                    state,
                    left_line_at_ms: (state == PlaceState::Closed).then_some(now_ms),
                    admitted_at_ms: None,
                    admission_ended_at_ms: None,
                });
                self.dirty.insert(Key::Room(cmd.event_id.clone()));
            }
        }
        self.dirty
            .insert(Key::Place(cmd.event_id.clone(), cmd.user.clone()));
        let room = &self.rooms[&cmd.event_id];
        Outcome::Place(room.view(&room.places[&cmd.user], now_ms))
    }

    pub(super) fn check_touch(&self, cmd: &TouchQueueCmd) -> Checked<()> {
        if !self.rooms.contains_key(&cmd.event_id) {
            return Err(Rejection::NoWaitingRoom.into());
        }
        if cmd.places.len() > MAX_PLACES_PER_TOUCH {
            return Err(Rejection::Invalid(format!(
                "at most {MAX_PLACES_PER_TOUCH} places per keep-alive"
            ))
            .into());
        }
        Ok(())
    }

    pub(super) fn touch(&mut self, cmd: &TouchQueueCmd, now_ms: u64) -> Outcome {
        let Some(room) = self.rooms.get_mut(&cmd.event_id) else {
            return Rejection::NoWaitingRoom.into();
        };
        let mut views = Vec::with_capacity(cmd.places.len());
        for (user, ticket) in &cmd.places {
            if room.place_with_ticket(user, *ticket).is_none() {
                views.push(None);
                continue;
            }
            touch_place(room, user, now_ms);
            self.dirty
                .insert(Key::Place(cmd.event_id.clone(), user.clone()));
            views.push(Some(room.view(&room.places[user], now_ms)));
        }
        Outcome::Places(views)
    }

    pub(super) fn check_leave(&self, cmd: &LeaveQueueCmd, now_ms: u64) -> Checked<LeavePlan> {
        let room = self
            .rooms
            .get(&cmd.event_id)
            .ok_or(Rejection::NoWaitingRoom)?;
        let place = room
            .place_with_ticket(&cmd.user, cmd.ticket)
            .ok_or(Rejection::UnknownPlace)?;
        match room.view(place, now_ms).state {
            PlaceState::Waiting | PlaceState::Admitted { .. } => Ok(LeavePlan),
            // Already over: leaving again changes nothing.
            _ => Err(Box::new(Outcome::Done)),
        }
    }

    pub(super) fn leave(&mut self, cmd: &LeaveQueueCmd, _plan: LeavePlan, now_ms: u64) -> Outcome {
        if let Some(room) = self.rooms.get_mut(&cmd.event_id) {
            room.set_state(&cmd.user, PlaceState::Left, now_ms);
            room.record.counts.left += 1;
            self.dirty.insert(Key::Room(cmd.event_id.clone()));
            self.dirty
                .insert(Key::Place(cmd.event_id.clone(), cmd.user.clone()));
        }
        Outcome::Done
    }

    /// A booking of `event_id` by `owner` was confirmed: an admitted place of theirs is bought,
    /// which frees its admission slot.
    pub(super) fn note_purchase(&mut self, event_id: &str, owner: &str, now_ms: u64) {
        let Some(room) = self.rooms.get_mut(event_id) else {
            return;
        };
        let admitted = room.places.get(owner).is_some_and(|p| {
            matches!(p.state, PlaceState::Admitted { expires_at_ms, .. } if now_ms < expires_at_ms)
        });
        if admitted {
            room.set_state(owner, PlaceState::Bought, now_ms);
            room.record.counts.bought += 1;
            self.dirty.insert(Key::Room(event_id.to_owned()));
            self.dirty
                .insert(Key::Place(event_id.to_owned(), owner.to_owned()));
        }
    }

    /// The leader's step of every room: nothing to check, it always applies.
    pub(super) fn step_queues(&mut self, now_ms: u64) -> Outcome {
        let event_ids: Vec<EventId> = self.rooms.keys().cloned().collect();
        let (mut n_admitted, mut n_closed) = (0u32, 0u32);
        for event_id in event_ids {
            let (a, c) = self.step_room(&event_id, now_ms);
            n_admitted += a;
            n_closed += c;
        }
        Outcome::QueuesStepped {
            n_admitted,
            n_closed,
        }
    }

    /// Seats of the event not sold (held ones included: they may come back).
    pub(super) fn unsold(&self, event_id: &str) -> u64 {
        self.events
            .get(event_id)
            .map(|e| (e.n_seats() - e.n_sold) as u64)
            .unwrap_or(0)
    }

    fn step_room(&mut self, event_id: &str, now_ms: u64) -> (u32, u32) {
        self.open_if_due(event_id, now_ms);
        let unsold = self.unsold(event_id);
        let Some(room) = self.rooms.get_mut(event_id) else {
            return (0, 0);
        };
        let mut touched: Vec<UserId> = Vec::new();
        // Admissions that ran out.
        let expired: Vec<UserId> = room
            .admitted
            .range(..(now_ms.saturating_add(1), String::new()))
            .map(|(_, u)| u.clone())
            .collect();
        for user in expired {
            room.set_state(&user, PlaceState::Expired, now_ms);
            room.record.counts.expired += 1;
            touched.push(user);
        }
        // Places nobody read for too long.
        let abandoned: Vec<UserId> = match now_ms.checked_sub(room.record.settings.abandon_after_ms)
        {
            Some(cutoff) => room
                .last_seen
                .range(..(cutoff.saturating_add(1), String::new()))
                .map(|(_, u)| u.clone())
                .collect(),
            None => Vec::new(),
        };
        for user in abandoned {
            room.set_state(&user, PlaceState::Abandoned, now_ms);
            room.record.counts.abandoned += 1;
            touched.push(user);
        }
        let (mut n_admitted, mut n_closed) = (0u32, 0u32);
        if unsold == 0 {
            // Sold out: every waiting place closes, and so does the room.
            let waiting: Vec<UserId> = room
                .line
                .values()
                .chain(room.early.values())
                .cloned()
                .collect();
            for user in waiting {
                room.set_state(&user, PlaceState::Closed, now_ms);
                room.record.counts.closed += 1;
                n_closed += 1;
                touched.push(user);
            }
            room.record.closed = true;
            room.record.credit_milli = 0;
        } else if room.record.settings.enabled && room.record.opened {
            let rate = u64::from(room.record.settings.admit_per_second);
            let elapsed_ms = now_ms.saturating_sub(room.record.last_step_ms);
            room.record.credit_milli = room
                .record
                .credit_milli
                .saturating_add(elapsed_ms.saturating_mul(rate))
                .min(rate * 1000);
            let slots = unsold.saturating_sub(room.n_admitted());
            let n = (room.record.credit_milli / 1000)
                .min(slots)
                .min(room.line.len() as u64);
            let expires_at_ms = now_ms.saturating_add(room.record.settings.admission_ttl_ms);
            for _ in 0..n {
                let next = match active(Mutant::AdmitOutOfOrder) {
                    true => room.line.last_key_value(),
                    false => room.line.first_key_value(),
                };
                let Some((_, user)) = next else {
                    break;
                };
                let user = user.clone();
                room.set_state(
                    &user,
                    PlaceState::Admitted {
                        at_ms: now_ms,
                        expires_at_ms,
                    },
                    now_ms,
                );
                touched.push(user);
                n_admitted += 1;
            }
            room.record.credit_milli -= u64::from(n_admitted) * 1000;
            room.record.counts.admitted += u64::from(n_admitted);
            if n_admitted > 0 {
                room.record.recent.push((now_ms, n_admitted));
            }
        }
        room.record.last_step_ms = now_ms;
        let window_start = now_ms.saturating_sub(RATE_WINDOW_MS);
        room.record.recent.retain(|(at, _)| *at > window_start);
        self.dirty.insert(Key::Room(event_id.to_owned()));
        for user in touched {
            self.dirty.insert(Key::Place(event_id.to_owned(), user));
        }
        (n_admitted, n_closed)
    }

    /// Whether the leader should propose an admission step at `now_ms`: some room has a sale
    /// to open, an admission that ran out, a place unread for too long, someone to admit
    /// (a place in line and a seat for them), or places to close. A room whose gate is full
    /// or whose sale has not opened costs no log entries until one of those comes due.
    pub fn queue_step_due(&self, now_ms: u64) -> bool {
        self.rooms.iter().any(|(event_id, room)| {
            let record = &room.record;
            let opening =
                !record.opened && record.settings.opens_at_ms.is_some_and(|at| at <= now_ms);
            let expiring = room.admitted.first().is_some_and(|(t, _)| *t <= now_ms);
            let abandoning = room
                .last_seen
                .first()
                .is_some_and(|(t, _)| t.saturating_add(record.settings.abandon_after_ms) <= now_ms);
            let unsold = self.unsold(event_id);
            let earned_milli = record.credit_milli.saturating_add(
                now_ms
                    .saturating_sub(record.last_step_ms)
                    .saturating_mul(u64::from(record.settings.admit_per_second)),
            );
            let admitting = record.settings.enabled
                && record.opened
                && !room.line.is_empty()
                && unsold > room.n_admitted()
                && earned_milli >= 1000;
            let closing = unsold == 0 && room.n_waiting() > 0;
            opening || expiring || abandoning || admitting || closing
        })
    }

    /// A room's figures at `now_ms`.
    pub fn room_figures(&self, event_id: &str, now_ms: u64) -> Option<RoomFigures> {
        let room = self.rooms.get(event_id)?;
        let record = &room.record;
        Some(RoomFigures {
            event_id: event_id.to_owned(),
            settings: record.settings.clone(),
            opened: record.opened,
            closed: record.closed,
            waiting: room.n_waiting(),
            admitted: room.n_admitted(),
            admitted_total: record.counts.admitted,
            bought: record.counts.bought,
            expired: record.counts.expired,
            left: record.counts.left,
            abandoned: record.counts.abandoned,
            closed_places: record.counts.closed,
            unsold: self.unsold(event_id),
            admit_rate_milli: room.admit_rate_milli(now_ms),
            shuffle_seed: record.shuffle_seed,
        })
    }

    /// Where the named places stand at `now_ms` (`None` for a pair naming no place).
    pub fn places(
        &self,
        event_id: &str,
        places: &[(UserId, u64)],
        now_ms: u64,
    ) -> Option<Vec<Option<PlaceView>>> {
        let room = self.rooms.get(event_id)?;
        Some(
            places
                .iter()
                .map(|(user, ticket)| {
                    room.place_with_ticket(user, *ticket)
                        .map(|p| room.view(p, now_ms))
                })
                .collect(),
        )
    }

    /// Every place of the room and the sales of its event, for an auditor (the simulator's
    /// checker): enough to judge admission order and the inventory gate afterwards.
    pub fn room_audit(&self, event_id: &str) -> Option<RoomAudit> {
        let room = self.rooms.get(event_id)?;
        let event = self.events.get(event_id)?;
        let sales = self
            .bookings
            .values()
            .filter(|b| b.event_id == event_id && b.status == BookingStatus::Confirmed)
            .map(|b| (b.updated_at_ms, b.seat_ids.len() as u64))
            .collect();
        let places = room
            .places
            .values()
            .map(|p| PlaceAudit {
                user: p.user.clone(),
                ticket: p.ticket,
                order: p.order,
                state: p.state,
                joined_at_ms: p.joined_at_ms,
                left_line_at_ms: p.left_line_at_ms,
                admitted_at_ms: p.admitted_at_ms,
                admission_ended_at_ms: p.admission_ended_at_ms,
            })
            .collect();
        Some(RoomAudit {
            n_seats: event.n_seats() as u64,
            sales,
            closed: room.record.closed,
            places,
            now_ms: self.now_ms(),
        })
    }

    /// Every place of the room in line order (waiting ones; for tests and the simulator's
    /// checker): `(user, ticket)` head first.
    pub fn queue_line(&self, event_id: &str) -> Vec<(UserId, u64)> {
        let Some(room) = self.rooms.get(event_id) else {
            return Vec::new();
        };
        room.line
            .values()
            .map(|u| (u.clone(), room.places[u].ticket))
            .collect()
    }
}

/// A read of the place: a waiting place is kept alive.
fn touch_place(room: &mut Room, user: &str, now_ms: u64) {
    let waiting = room
        .places
        .get(user)
        .is_some_and(|p| p.state == PlaceState::Waiting);
    if waiting {
        room.update(user, |p| p.last_seen_ms = p.last_seen_ms.max(now_ms));
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const EVENT: &str = "ev";

    fn settings(rate: u32, opens_at_ms: Option<u64>) -> QueueSettings {
        QueueSettings {
            enabled: true,
            admit_per_second: rate,
            opens_at_ms,
            admission_ttl_ms: 5_000,
            abandon_after_ms: 3_000,
        }
    }

    /// A machine with one event of `n_seats` seats and its waiting room, and a request log.
    struct Room1 {
        m: Machine,
        log: Vec<Proposal>,
        n: u64,
        /// Who was admitted, in the order the steps admitted them.
        admitted: Vec<UserId>,
        /// The line order of each admitted place when it was admitted.
        admitted_orders: Vec<u64>,
    }

    impl Room1 {
        fn new(n_seats: u32, settings: QueueSettings) -> Room1 {
            let mut r = Room1 {
                m: Machine::new(),
                log: Vec::new(),
                n: 0,
                admitted: Vec::new(),
                admitted_orders: Vec::new(),
            };
            let seats = (0..n_seats)
                .map(|i| SeatSpec {
                    id: format!("s{i}"),
                    section: "A".into(),
                    row: "1".into(),
                    number: i,
                    price_minor: 100,
                })
                .collect();
            r.apply(
                0,
                Command::RegisterEvent(RegisterEventCmd {
                    event_id: EVENT.into(),
                    currency: "USD".into(),
                    hold_ttl_ms: 60_000,
                    seats,
                }),
            );
            r.apply(
                0,
                Command::SetQueue(SetQueueCmd {
                    event_id: EVENT.into(),
                    settings,
                }),
            );
            r
        }

        fn apply(&mut self, now_ms: u64, command: Command) -> Outcome {
            self.n += 1;
            let proposal = Proposal {
                now_ms,
                requests: std::sync::Arc::new(vec![Request {
                    request_id: Some(format!("r{}", self.n)),
                    command,
                }]),
            };
            self.log.push(proposal.clone());
            let mut reply = self.m.apply_proposal(&proposal, &mut Vec::new());
            reply.remove(0).outcome
        }

        fn join(&mut self, now_ms: u64, user: &str) -> PlaceView {
            let cmd = JoinQueueCmd {
                event_id: EVENT.into(),
                user: user.into(),
            };
            match self.apply(now_ms, Command::JoinQueue(cmd)) {
                Outcome::Place(view) => view,
                other => panic!("join answered {other:?}"),
            }
        }

        /// An admission step; checks that it admitted the head of the line, in line order,
        /// and never more than the unsold seats.
        fn step(&mut self, now_ms: u64) -> Result<(), String> {
            let line_before: Vec<UserId> = self
                .m
                .queue_line(EVENT)
                .into_iter()
                .map(|(u, _)| u)
                .collect();
            let opened_before = self.m.rooms[EVENT].record.opened;
            let admitted_before: BTreeSet<UserId> = self.admitted_now();
            self.apply(now_ms, Command::AdmitQueues);
            // Places the step dropped (abandoned) or closed were not in line to be admitted.
            let places = &self.m.rooms[EVENT].places;
            let line_before: Vec<UserId> = line_before
                .into_iter()
                .filter(|u| !matches!(places[u].state, PlaceState::Abandoned | PlaceState::Closed))
                .collect();
            let admitted_after = self.admitted_now();
            let new: BTreeSet<&UserId> = admitted_after.difference(&admitted_before).collect();
            if opened_before {
                let head: BTreeSet<&UserId> = line_before.iter().take(new.len()).collect();
                if head != new {
                    return Err(format!("admitted {new:?}, not the head {head:?}"));
                }
                for user in line_before.iter().take(new.len()) {
                    self.admitted_orders
                        .push(self.m.rooms[EVENT].places[user].order.unwrap_or(u64::MAX));
                    self.admitted.push(user.clone());
                }
            }
            let figures = self.m.room_figures(EVENT, now_ms).unwrap();
            if !new.is_empty() && figures.admitted > figures.unsold {
                return Err(format!(
                    "{} admitted but {} seats unsold",
                    figures.admitted, figures.unsold
                ));
            }
            if figures.unsold == 0 && figures.waiting > 0 {
                return Err("sold out, yet places wait".into());
            }
            self.m.check_consistency()
        }

        fn admitted_now(&self) -> BTreeSet<UserId> {
            self.m.rooms[EVENT]
                .admitted
                .iter()
                .map(|(_, u)| u.clone())
                .collect()
        }

        /// The user holds and buys `n` free seats.
        fn buy(&mut self, now_ms: u64, user: &str, n: usize) -> bool {
            let free: Vec<SeatId> = self
                .m
                .event_seats(EVENT, now_ms)
                .unwrap()
                .into_iter()
                .filter(|(_, s)| *s == SeatStatus::Available)
                .map(|(spec, _)| spec.id)
                .take(n)
                .collect();
            if free.is_empty() {
                return false;
            }
            let id = format!("{user}-{}", self.n);
            let hold = Command::Hold(HoldCmd {
                event_id: EVENT.into(),
                hold_id: format!("h{id}"),
                owner: user.into(),
                seat_ids: free,
                ttl_ms: None,
            });
            if !matches!(self.apply(now_ms, hold), Outcome::Held(_)) {
                return false;
            }
            let book = Command::CreateBooking(CreateBookingCmd {
                booking_id: format!("b{id}"),
                hold_id: format!("h{id}"),
                owner: user.into(),
                payment_ref: "p".into(),
            });
            self.apply(now_ms, book);
            let confirm = Command::Confirm(ConfirmCmd {
                booking_id: format!("b{id}"),
                payment_event_id: format!("e{id}"),
            });
            matches!(self.apply(now_ms, confirm), Outcome::Confirmed(_))
        }
    }

    #[test]
    fn joining_again_answers_the_same_place_and_positions_follow_join_order() {
        let mut r = Room1::new(10, settings(1, None));
        let a = r.join(10, "a");
        let b = r.join(20, "b");
        let c = r.join(30, "c");
        assert_eq!(
            [a.position, b.position, c.position],
            [Some(1), Some(2), Some(3)]
        );
        let b_again = r.join(40, "b");
        assert_eq!((b_again.ticket, b_again.position), (b.ticket, Some(2)));
        // Leaving moves those behind forward.
        let out = r.apply(
            50,
            Command::LeaveQueue(LeaveQueueCmd {
                event_id: EVENT.into(),
                user: "a".into(),
                ticket: a.ticket,
            }),
        );
        assert_eq!(out, Outcome::Done);
        assert_eq!(r.join(60, "c").position, Some(2));
        // A place left is gone: joining again is a new place at the back.
        let a2 = r.join(70, "a");
        assert_ne!(a2.ticket, a.ticket);
        assert_eq!(a2.position, Some(3));
        r.m.check_consistency().unwrap();
    }

    #[test]
    fn admits_at_the_rate_from_the_head_and_only_as_many_as_seats_unsold() {
        let mut r = Room1::new(3, settings(2, None));
        for u in ["a", "b", "c", "d", "e"] {
            r.join(0, u);
        }
        r.step(1_000).unwrap();
        assert_eq!(r.admitted, ["a", "b"]);
        r.step(2_000).unwrap();
        // Three seats: the third admission fills the gate.
        assert_eq!(r.admitted, ["a", "b", "c"]);
        r.step(3_000).unwrap();
        assert_eq!(r.admitted.len(), 3);
        // "a" buys one seat: one slot frees, but only two seats are left for two admitted.
        assert!(r.buy(3_100, "a", 1));
        r.step(4_000).unwrap();
        assert_eq!(r.admitted.len(), 3, "two unsold seats, two admitted");
        // "d" and "e" were not read for 3 s: abandoned. They join again, at the back.
        assert_eq!(r.m.room_figures(EVENT, 4_000).unwrap().abandoned, 2);
        r.join(4_500, "d");
        r.join(4_500, "e");
        // "b" lets the admission expire (5 s): one slot for "c" and one seat left, so "d"
        // gets in and "e" waits.
        r.step(6_100).unwrap();
        assert_eq!(r.admitted, ["a", "b", "c", "d"]);
        let figures = r.m.room_figures(EVENT, 6_100).unwrap();
        assert_eq!(
            (figures.bought, figures.expired, figures.waiting),
            (1, 1, 1)
        );
    }

    #[test]
    fn sold_out_closes_every_waiting_place_and_later_joins() {
        let mut r = Room1::new(1, settings(5, None));
        for u in ["a", "b", "c"] {
            r.join(0, u);
        }
        r.step(1_000).unwrap();
        assert!(r.buy(1_100, "a", 1));
        r.step(1_200).unwrap();
        let b = r.join(1_300, "b");
        assert_eq!(b.state, PlaceState::Closed);
        assert_eq!(r.join(1_300, "z").state, PlaceState::Closed);
        assert!(r.m.room_figures(EVENT, 1_300).unwrap().closed);
    }

    #[test]
    fn a_step_is_due_only_when_it_has_something_to_do() {
        let mut r = Room1::new(1, settings(1, Some(10_000)));
        assert!(!r.m.queue_step_due(0), "an empty room");
        r.join(0, "a");
        r.join(0, "b");
        assert!(
            !r.m.queue_step_due(2_000),
            "before opening, nothing read too long ago"
        );
        assert!(
            r.m.queue_step_due(3_000),
            "the places were not read for 3 s"
        );
        r.join(9_000, "a");
        r.join(9_000, "b");
        assert!(r.m.queue_step_due(10_000), "the sale opens");
        r.step(10_000).unwrap();
        let admitted = r.m.room_figures(EVENT, 10_000).unwrap().admitted;
        assert_eq!(admitted, 1, "a second's credit at opening, one seat");
        assert!(
            !r.m.queue_step_due(11_000),
            "one seat, one admitted: the gate is full"
        );
        assert!(r.m.queue_step_due(15_000), "the admission runs out at 15 s");
    }

    #[test]
    fn a_place_nobody_reads_is_abandoned() {
        let mut r = Room1::new(5, settings(1, Some(100_000)));
        let a = r.join(0, "a");
        r.join(0, "b");
        let touch = Command::TouchQueue(TouchQueueCmd {
            event_id: EVENT.into(),
            places: vec![("a".into(), a.ticket), ("b".into(), 999)],
        });
        match r.apply(2_000, touch) {
            Outcome::Places(views) => assert!(views[0].is_some() && views[1].is_none()),
            other => panic!("{other:?}"),
        }
        r.step(3_500).unwrap();
        let figures = r.m.room_figures(EVENT, 3_500).unwrap();
        assert_eq!((figures.waiting, figures.abandoned), (1, 1));
    }

    #[test]
    fn places_taken_before_opening_are_shuffled_as_presale_order_says() {
        let mut r = Room1::new(100, settings(1, Some(10_000)));
        let users: Vec<UserId> = (0..20).map(|i| format!("u{i:02}")).collect();
        for u in &users {
            assert_eq!(r.join(5_000, u).position, None);
        }
        let late = r.join(10_500, "late");
        let (seed, order) = presale_order(EVENT, 10_000, &users);
        let line: Vec<UserId> = r.m.queue_line(EVENT).into_iter().map(|(u, _)| u).collect();
        let mut expected: Vec<UserId> = order.iter().map(|&i| users[i].clone()).collect();
        expected.push("late".into());
        assert_eq!(line, expected);
        assert_eq!(late.position, Some(21));
        assert_eq!(
            r.m.room_figures(EVENT, 10_500).unwrap().shuffle_seed,
            Some(seed)
        );
    }

    #[test]
    fn a_hundred_thousand_places_read_their_position_cheaply() {
        let mut r = Room1::new(10, settings(10, None));
        let started = std::time::Instant::now();
        for i in 0..100_000u32 {
            r.join(1, &format!("u{i}"));
        }
        let joins = started.elapsed();
        let started = std::time::Instant::now();
        let view = r.join(2, "u99999");
        let one_read = started.elapsed();
        assert_eq!(view.position, Some(100_000));
        // O(log n): far below what a scan of 100,000 places costs in a debug build.
        assert!(
            one_read.as_millis() < 20,
            "a position read took {one_read:?}"
        );
        let started = std::time::Instant::now();
        r.apply(2_000, Command::AdmitQueues);
        let step = started.elapsed();
        assert_eq!(r.m.room_figures(EVENT, 2_000).unwrap().admitted, 10);
        let started = std::time::Instant::now();
        let restored = Machine::from_records(r.m.records()).unwrap();
        let reload = started.elapsed();
        let after = restored.places(EVENT, &[("u99999".into(), view.ticket)], 2_000);
        let position = after.unwrap()[0].as_ref().and_then(|v| v.position);
        assert_eq!(position, Some(99_990));
        eprintln!(
            "100,000 places: {:.1} us per join, {one_read:?} per position read, {step:?} per admission step, {reload:?} to rebuild from records",
            joins.as_secs_f64() * 1e6 / 100_000.0
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Join(u8),
        Touch(u8),
        Leave(u8),
        Step,
        Buy(u8, u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..12).prop_map(Op::Join),
            2 => (0u8..12).prop_map(Op::Touch),
            1 => (0u8..12).prop_map(Op::Leave),
            3 => Just(Op::Step),
            2 => (0u8..12, 1u8..4).prop_map(|(u, n)| Op::Buy(u, n)),
        ]
    }

    fn run(ops: &[(Op, u64)], opens_at_ms: Option<u64>) -> Result<Room1, TestCaseError> {
        let mut r = Room1::new(8, settings(3, opens_at_ms));
        let mut now = 0;
        for (op, dt) in ops {
            now += dt;
            let user = |u: &u8| format!("u{u}");
            let ticket = |r: &Room1, u: &u8| {
                r.m.rooms[EVENT]
                    .places
                    .get(&user(u))
                    .map_or(0, |p| p.ticket)
            };
            match op {
                Op::Join(u) => {
                    let view = r.join(now, &user(u));
                    let again = r.join(now, &user(u));
                    prop_assert_eq!(view.ticket, again.ticket, "one place per user");
                }
                Op::Touch(u) => {
                    let cmd = TouchQueueCmd {
                        event_id: EVENT.into(),
                        places: vec![(user(u), ticket(&r, u))],
                    };
                    r.apply(now, Command::TouchQueue(cmd));
                }
                Op::Leave(u) => {
                    let cmd = LeaveQueueCmd {
                        event_id: EVENT.into(),
                        user: user(u),
                        ticket: ticket(&r, u),
                    };
                    r.apply(now, Command::LeaveQueue(cmd));
                }
                Op::Step => r.step(now).map_err(TestCaseError::fail)?,
                Op::Buy(u, n) => {
                    let admitted = r.m.rooms[EVENT].places.get(&user(u)).is_some_and(|p| {
                        matches!(p.state, PlaceState::Admitted { expires_at_ms, .. } if now < expires_at_ms)
                    });
                    if admitted {
                        r.buy(now, &user(u), *n as usize);
                    }
                }
            }
            let tickets: BTreeSet<u64> =
                r.m.rooms[EVENT].places.values().map(|p| p.ticket).collect();
            prop_assert_eq!(
                tickets.len(),
                r.m.rooms[EVENT].places.len(),
                "tickets are unique"
            );
        }
        Ok(r)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn queue_invariants_hold_for_any_sequence(
            ops in proptest::collection::vec((op(), 0u64..1_500), 1..120),
            opens_at in prop_oneof![Just(None), (0u64..20_000).prop_map(Some)],
        ) {
            let r = run(&ops, opens_at)?;
            prop_assert!(
                r.admitted_orders.windows(2).all(|w| w[0] < w[1]),
                "admission order = place order: {:?}", r.admitted_orders
            );
        }

        #[test]
        fn replicas_fed_the_same_log_agree(
            ops in proptest::collection::vec((op(), 0u64..1_500), 1..80),
        ) {
            let r = run(&ops, Some(3_000))?;
            let mut replica = Machine::new();
            for proposal in &r.log {
                replica.apply_proposal(proposal, &mut Vec::new());
            }
            prop_assert!(replica.records() == r.m.records());
            let restored = Machine::from_records(r.m.records()).unwrap();
            prop_assert!(restored.records() == r.m.records());
            restored.check_consistency().map_err(TestCaseError::fail)?;
            prop_assert_eq!(restored.queue_line(EVENT), r.m.queue_line(EVENT));
        }
    }

    #[test]
    fn fenwick_counts_prefixes_across_growth() {
        let mut f = Fenwick::default();
        let mut plain = vec![0i64; 300];
        for (i, idx) in [0u64, 5, 1, 64, 65, 129, 7, 299, 3].iter().enumerate() {
            let d = if i % 3 == 2 { -1 } else { 1 };
            f.add(*idx, d);
            plain[*idx as usize] += d;
            for q in 0..300u64 {
                let want: i64 = plain[..q as usize].iter().sum();
                assert_eq!(f.prefix(q), want, "prefix({q}) after adding at {idx}");
            }
        }
    }

    #[test]
    fn presale_order_is_a_permutation_fixed_by_its_inputs() {
        let users: Vec<UserId> = (0..50).map(|i| format!("u{i}")).collect();
        let (seed, order) = presale_order("ev", 1_000, &users);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(
            order, sorted,
            "fifty places stay in join order: not shuffled"
        );
        assert_eq!(presale_order("ev", 1_000, &users), (seed, order.clone()));
        assert_ne!(presale_order("ev", 1_001, &users).1, order);
    }
}
