//! Seat inventory: registering an event's seats, its hold lifetime, all-or-nothing holds,
//! releases, and the sweep that tidies expired holds and old request ids.
//!
//! Each command is a `check_*` (reads only; answers what changes nothing) followed by a step
//! that applies the checked plan and cannot fail.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::records::{EventMeta, Key};
use super::{check_id, Checked, EventState, Layout, Machine, Occupant, SharedId, Slot};
use crate::types::*;

/// A hold that passed its checks: where its seats are, what it costs and when it ends.
pub(super) struct HoldPlan {
    idxs: Vec<usize>,
    total_minor: u64,
    expires_at_ms: u64,
}

impl HoldPlan {
    /// The plan to hold the seats at `idxs` of `event` from `now_ms` for `ttl_ms`.
    pub(super) fn new(event: &EventState, idxs: Vec<usize>, now_ms: u64, ttl_ms: u64) -> HoldPlan {
        HoldPlan {
            total_minor: idxs.iter().map(|&i| event.layout().price_minor(i)).sum(),
            idxs,
            expires_at_ms: now_ms.saturating_add(ttl_ms),
        }
    }
}

impl Machine {
    pub(super) fn check_register_event(&self, cmd: &RegisterEventCmd) -> Checked<EventState> {
        check_id("event id", &cmd.event_id)?;
        let currency = &cmd.currency;
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(
                Rejection::Invalid("currency must be an ISO 4217 code such as USD".into()).into(),
            );
        }
        self.check_ttl(cmd.hold_ttl_ms)?;
        check_seats(&cmd.seats)?;
        let registered = Outcome::Registered {
            n_seats: cmd.seats.len() as u32,
        };
        if let Some(existing) = self.events.get(&cmd.event_id) {
            // A replay after later AddSeats still matches: the registered seats start with
            // these. The hold lifetime is a setting of the event (SetHoldTtl changes it), not
            // part of what makes it the same event.
            let same = existing.meta.currency == cmd.currency
                && existing.meta.seats.starts_with(&cmd.seats);
            return Err(match same {
                true => Box::new(registered),
                false => Rejection::EventConflict.into(),
            });
        }
        let layout = Layout::new(&cmd.seats).map_err(Rejection::DuplicateSeats)?;
        Ok(EventState::new(EventMeta {
            event_id: cmd.event_id.clone(),
            currency: cmd.currency.clone(),
            hold_ttl_ms: cmd.hold_ttl_ms,
            seats: layout.into(),
        }))
    }

    /// Stores a checked event: a new registration, or a registered one with more seats.
    pub(super) fn put_event(&mut self, state: EventState, changes: &mut Vec<Change>) -> Outcome {
        let event_id = state.meta.event_id.clone();
        let n_seats = state.n_seats() as u32;
        // The event's record, and the one chunk of seats this registration added.
        let last_chunk = state.meta.seats.n_chunks() as u32 - 1;
        self.events.insert(event_id.clone(), state);
        self.dirty.insert(Key::Event(event_id.clone()));
        self.dirty.insert(Key::Layout(event_id.clone(), last_chunk));
        changes.push(Change::EventRegistered { event_id });
        Outcome::Registered { n_seats }
    }

    /// The event with the new seats appended (slots of the new seats free).
    pub(super) fn check_add_seats(&self, cmd: &AddSeatsCmd) -> Checked<EventState> {
        check_seats(&cmd.seats)?;
        let event = self
            .events
            .get(&cmd.event_id)
            .ok_or(Rejection::UnknownEvent)?;
        if event.n_seats() + cmd.seats.len() > MAX_SEATS_PER_EVENT {
            return Err(Rejection::Invalid(format!(
                "an event has at most {MAX_SEATS_PER_EVENT} seats"
            ))
            .into());
        }
        let layout = event
            .layout()
            .extended(&cmd.seats)
            .map_err(Rejection::DuplicateSeats)?;
        let mut state = EventState::new(EventMeta {
            seats: layout.into(),
            ..event.meta.clone()
        });
        // Keep the derived slots of the seats already there (they may be held or sold).
        state.slots.occupants = event.slots.occupants.clone();
        state.slots.vacant = event.slots.vacant.clone();
        for (idx, &handle) in event.slots.of_seat.iter().enumerate() {
            state.slots.of_seat[idx] = handle;
            if handle != 0 {
                let row = state.layout().row_of(idx);
                state.row_taken[row] += 1;
            }
        }
        state.n_sold = event.n_sold;
        state.holds_by_owner = event.holds_by_owner.clone();
        Ok(state)
    }

    pub(super) fn check_set_hold_ttl(&self, cmd: &SetHoldTtlCmd) -> Checked<()> {
        if !self.events.contains_key(&cmd.event_id) {
            return Err(Rejection::UnknownEvent.into());
        }
        self.check_ttl(cmd.hold_ttl_ms)?;
        Ok(())
    }

    pub(super) fn set_hold_ttl(&mut self, cmd: &SetHoldTtlCmd) -> Outcome {
        if let Some(event) = self.events.get_mut(&cmd.event_id) {
            if event.meta.hold_ttl_ms != cmd.hold_ttl_ms {
                event.meta.hold_ttl_ms = cmd.hold_ttl_ms;
                self.dirty.insert(Key::Event(cmd.event_id.clone()));
            }
        }
        Outcome::Done
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

    /// Everything a hold needs to be true, in the order the answers are given; seats not
    /// free answer [`Outcome::Unavailable`] and change nothing.
    pub(super) fn check_hold(&self, cmd: &HoldCmd, now_ms: u64) -> Checked<HoldPlan> {
        let seat_ids = &cmd.seat_ids;
        self.check_hold_size(&cmd.hold_id, &cmd.owner, seat_ids.len())?;
        let mut seen = BTreeSet::new();
        let duplicates: BTreeSet<SeatId> = seat_ids
            .iter()
            .filter(|s| !seen.insert(s.as_str()))
            .cloned()
            .collect();
        if !duplicates.is_empty() {
            return Err(Rejection::DuplicateSeats(duplicates.into_iter().collect()).into());
        }
        let (event, ttl_ms) =
            self.check_hold_event(&cmd.event_id, &cmd.hold_id, &cmd.owner, cmd.ttl_ms, now_ms)?;
        let mut idxs = Vec::with_capacity(seat_ids.len());
        let mut unknown = Vec::new();
        for seat_id in seat_ids {
            match event.layout().index_of(seat_id) {
                Some(idx) => idxs.push(idx),
                None => unknown.push(seat_id.clone()),
            }
        }
        if !unknown.is_empty() {
            return Err(Rejection::UnknownSeats(unknown).into());
        }
        let taken: Vec<SeatId> = idxs
            .iter()
            .zip(seat_ids)
            .filter(|(idx, _)| !self.slot_is_free(event.slot(**idx), now_ms))
            .map(|(_, id)| id.clone())
            .collect();
        if !taken.is_empty() {
            return Err(Box::new(Outcome::Unavailable { seat_ids: taken }));
        }
        Ok(HoldPlan::new(event, idxs, now_ms, ttl_ms))
    }

    /// The checks of a hold's ids and size, named seats or best available.
    pub(super) fn check_hold_size(
        &self,
        hold_id: &str,
        owner: &str,
        n_seats: usize,
    ) -> Checked<()> {
        check_id("hold id", hold_id)?;
        check_id("owner", owner)?;
        let limits = &self.globals.limits;
        if n_seats == 0 {
            return Err(Rejection::NoSeats.into());
        }
        if n_seats > limits.max_seats_per_hold as usize {
            return Err(Rejection::TooManySeats {
                max: limits.max_seats_per_hold,
            }
            .into());
        }
        Ok(())
    }

    /// The checks of a hold against its event: registered, the hold id unused, the lifetime
    /// in range, the owner under the per-event hold limit. Answers the event and the ttl.
    pub(super) fn check_hold_event(
        &self,
        event_id: &str,
        hold_id: &str,
        owner: &str,
        ttl_ms: Option<u64>,
        now_ms: u64,
    ) -> Checked<(&EventState, u64)> {
        let limits = &self.globals.limits;
        let event = self.events.get(event_id).ok_or(Rejection::UnknownEvent)?;
        if self.holds.contains_key(hold_id) {
            return Err(Rejection::IdInUse.into());
        }
        let ttl_ms = ttl_ms.unwrap_or(event.meta.hold_ttl_ms);
        self.check_ttl(ttl_ms)?;
        let n_live = event
            .owned_holds(owner)
            .iter()
            .filter(|id| self.holds.get(*id).is_some_and(|h| h.is_live(now_ms)))
            .count();
        if n_live >= limits.max_holds_per_user_per_event as usize {
            return Err(Rejection::TooManyHolds {
                max: limits.max_holds_per_user_per_event,
            }
            .into());
        }
        Ok((event, ttl_ms))
    }

    pub(super) fn hold(
        &mut self,
        cmd: &HoldCmd,
        plan: HoldPlan,
        now_ms: u64,
        changes: &mut Vec<Change>,
    ) -> Outcome {
        let HoldPlan {
            idxs,
            total_minor,
            expires_at_ms,
        } = plan;
        let hold = Hold {
            hold_id: cmd.hold_id.clone(),
            event_id: cmd.event_id.clone(),
            owner: cmd.owner.clone(),
            seat_ids: cmd.seat_ids.clone(),
            total_minor,
            created_at_ms: now_ms,
            expires_at_ms,
            status: HoldStatus::Active,
            finished_at_ms: None,
            booking_id: None,
        };
        let hold_id = SharedId::from(cmd.hold_id.as_str());
        if let Some(event) = self.events.get_mut(&cmd.event_id) {
            event.occupy(&idxs, Occupant::Held(hold_id.clone()));
            for seat_id in &cmd.seat_ids {
                changes.push(Change::Seat {
                    event_id: cmd.event_id.clone(),
                    seat_id: seat_id.clone(),
                    status: SeatStatus::Held {
                        until_ms: expires_at_ms,
                    },
                });
            }
            event.add_owned_hold(&cmd.owner, &hold_id);
        }
        self.expiring.insert((expires_at_ms, hold_id.clone()));
        let hold = Arc::new(hold);
        self.holds.insert(hold_id.clone(), hold.clone());
        self.dirty.insert(Key::Hold(hold_id));
        changes.push(Change::Hold {
            hold_id: cmd.hold_id.clone(),
            status: HoldStatus::Active,
        });
        Outcome::Held(hold)
    }

    pub(super) fn slot_is_free(&self, slot: Slot<'_>, now_ms: u64) -> bool {
        match slot {
            Slot::Free => true,
            Slot::Held(hold_id) => !self.holds.get(hold_id).is_some_and(|h| h.is_live(now_ms)),
            Slot::Sold(_) => false,
        }
    }

    /// Ends a hold with `status` (released, expired or confirmed) and frees the seats it
    /// still occupies (a confirmed hold's seats are sold by the caller instead).
    pub(super) fn finish_hold(
        &mut self,
        hold_id: &str,
        status: HoldStatus,
        at_ms: u64,
        changes: &mut Vec<Change>,
    ) {
        let Some((key, _)) = self.holds.get_key_value(hold_id) else {
            return;
        };
        let key = key.clone();
        let hold = Arc::make_mut(self.holds.get_mut(hold_id).expect("found above"));
        let previous_expiry = hold.expires_at_ms;
        hold.status = status;
        hold.finished_at_ms = Some(at_ms);
        let hold = hold.clone();
        self.expiring.remove(&(previous_expiry, key.clone()));
        self.finished.insert((at_ms, key.clone()));
        self.dirty.insert(Key::Hold(key));
        if let Some(event) = self.events.get_mut(&hold.event_id) {
            event.remove_owned_hold(&hold.owner, hold_id);
            if status != HoldStatus::Confirmed {
                for seat_id in &hold.seat_ids {
                    let Some(idx) = event.layout().index_of(seat_id) else {
                        continue;
                    };
                    if event.slot(idx) == Slot::Held(hold_id) {
                        event.vacate(idx);
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

    pub(super) fn check_release(&self, cmd: &ReleaseCmd, now_ms: u64) -> Checked<()> {
        let hold = self
            .holds
            .get(cmd.hold_id.as_str())
            .ok_or(Rejection::UnknownHold)?;
        if hold.owner != cmd.owner {
            return Err(Rejection::NotOwner.into());
        }
        match hold.status_at(now_ms) {
            HoldStatus::Active => Ok(()),
            other => Err(Rejection::HoldNotActive(other).into()),
        }
    }

    pub(super) fn release(
        &mut self,
        cmd: &ReleaseCmd,
        now_ms: u64,
        changes: &mut Vec<Change>,
    ) -> Outcome {
        self.finish_hold(&cmd.hold_id, HoldStatus::Released, now_ms, changes);
        Outcome::Released
    }

    /// Expires the holds whose time has passed and forgets finished holds and request ids
    /// older than their retention. Nothing to check: a sweep always applies.
    pub(super) fn sweep(&mut self, now_ms: u64, changes: &mut Vec<Change>) -> Outcome {
        let expired: Vec<(u64, SharedId)> = self
            .expiring
            .range(..(now_ms.saturating_add(1), SharedId::from("")))
            .cloned()
            .collect();
        for (expires_at_ms, hold_id) in &expired {
            self.finish_hold(hold_id, HoldStatus::Expired, *expires_at_ms, changes);
        }
        let limits = self.globals.limits.clone();
        let hold_cutoff = now_ms.saturating_sub(limits.finished_hold_kept_ms());
        let old: Vec<(u64, SharedId)> = self
            .finished
            .range(..(hold_cutoff, SharedId::from("")))
            .cloned()
            .collect();
        let mut n_holds_forgotten = 0u32;
        for (at_ms, hold_id) in old {
            // A hold whose booking still waits for its payment stays, so the confirm can explain.
            let pending = self
                .holds
                .get(&*hold_id)
                .and_then(|h| h.booking_id.as_ref())
                .and_then(|b| self.bookings.get(b))
                .is_some_and(|b| b.status == BookingStatus::PendingPayment);
            if pending {
                continue;
            }
            self.finished.remove(&(at_ms, hold_id.clone()));
            self.holds.remove(&*hold_id);
            self.dirty.insert(Key::Hold(hold_id));
            n_holds_forgotten += 1;
        }
        let request_cutoff = now_ms.saturating_sub(limits.request_retention_ms);
        let old: Vec<(u64, SharedId)> = self
            .request_times
            .range(..(request_cutoff, SharedId::from("")))
            .cloned()
            .collect();
        for (at_ms, request_id) in &old {
            self.request_times.remove(&(*at_ms, request_id.clone()));
            self.requests.remove(&**request_id);
            self.dirty.insert(Key::Request(request_id.clone()));
        }
        Outcome::Swept {
            n_holds_expired: expired.len() as u32,
            n_holds_forgotten,
            n_requests_forgotten: old.len() as u32,
        }
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
