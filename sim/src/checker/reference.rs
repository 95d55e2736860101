//! A sequential reference implementation of the seat inventory the checker specifies: one
//! shard, commands applied one at a time at leader-stamped times. The tests generate
//! histories from it (always linearizable); a driver may also diff the real state machine
//! against it.
//!
//! Where the specification leaves a choice, it takes the strict one: releasing an expired
//! hold answers `AlreadyInactive`; precedence is not-found, then not-owner, then inactive.

use std::collections::BTreeMap;

use super::history::{
    BookingId, Command, FailReason, FinalSeat, HoldId, Outcome, OwnerId, SeatId, SeatView,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HoldState {
    Active,
    Released,
    Sold(BookingId),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct HoldEntry {
    owner: OwnerId,
    seats: Vec<SeatId>,
    expires_at_ms: u64,
    state: HoldState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Held(HoldId),
    Sold(BookingId),
}

/// The inventory of one shard, applied sequentially.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReferenceShard {
    now_ms: u64,
    slots: BTreeMap<SeatId, Slot>,
    holds: BTreeMap<HoldId, HoldEntry>,
}

impl ReferenceShard {
    pub fn new() -> ReferenceShard {
        ReferenceShard::default()
    }

    /// The effective time of the last command (never decreases).
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    fn live(&self, hold: HoldId) -> bool {
        self.holds
            .get(&hold)
            .is_some_and(|h| h.state == HoldState::Active && self.now_ms < h.expires_at_ms)
    }

    fn view(&self, seat: SeatId) -> SeatView {
        match self.slots.get(&seat) {
            Some(Slot::Held(h)) if self.live(*h) => SeatView::Held { hold_id: *h },
            Some(Slot::Sold(b)) => SeatView::Sold { booking_id: *b },
            _ => SeatView::Free,
        }
    }

    /// Applies `command` stamped `stamped_ms`; the effective time is the max of that and the
    /// last effective time. A reused hold id answers `Taken` with every seat (the checker's
    /// histories never reuse one).
    pub fn apply(&mut self, command: &Command, stamped_ms: u64) -> Outcome {
        self.now_ms = self.now_ms.max(stamped_ms);
        let at_ms = self.now_ms;
        match command {
            Command::Hold {
                hold_id,
                owner,
                seats,
                ttl_ms,
            } => {
                let unavailable: Vec<SeatId> = if self.holds.contains_key(hold_id) {
                    seats.clone()
                } else {
                    seats
                        .iter()
                        .copied()
                        .filter(|s| self.view(*s) != SeatView::Free)
                        .collect()
                };
                if !unavailable.is_empty() {
                    return Outcome::Taken { unavailable, at_ms };
                }
                let expires_at_ms = at_ms.saturating_add(*ttl_ms);
                for seat in seats {
                    self.slots.insert(*seat, Slot::Held(*hold_id));
                }
                let entry = HoldEntry {
                    owner: *owner,
                    seats: seats.clone(),
                    expires_at_ms,
                    state: HoldState::Active,
                };
                self.holds.insert(*hold_id, entry);
                Outcome::Held {
                    expires_at_ms,
                    at_ms,
                }
            }
            Command::Release { hold_id, owner } => {
                let Some(hold) = self.holds.get(hold_id) else {
                    return Outcome::NotFound;
                };
                if hold.owner != *owner {
                    return Outcome::NotOwner;
                }
                if !self.live(*hold_id) {
                    return Outcome::AlreadyInactive;
                }
                for seat in &hold.seats {
                    if self.slots.get(seat) == Some(&Slot::Held(*hold_id)) {
                        self.slots.remove(seat);
                    }
                }
                self.holds.get_mut(hold_id).expect("looked up above").state = HoldState::Released;
                Outcome::Released { at_ms }
            }
            Command::Confirm {
                hold_id,
                booking_id,
            } => {
                let failed = |reason| Outcome::Failed { reason, at_ms };
                let Some(hold) = self.holds.get(hold_id) else {
                    return failed(FailReason::NotFound);
                };
                match hold.state {
                    HoldState::Sold(b) if b == *booking_id => return Outcome::Confirmed { at_ms },
                    HoldState::Sold(_) => return failed(FailReason::AlreadySold),
                    HoldState::Released => return failed(FailReason::Released),
                    HoldState::Active if at_ms >= hold.expires_at_ms => {
                        return failed(FailReason::Expired)
                    }
                    HoldState::Active => {}
                }
                for seat in &hold.seats {
                    self.slots.insert(*seat, Slot::Sold(*booking_id));
                }
                self.holds.get_mut(hold_id).expect("looked up above").state =
                    HoldState::Sold(*booking_id);
                Outcome::Confirmed { at_ms }
            }
            Command::Read { seats } => Outcome::Statuses {
                at_ms,
                seats: seats.iter().map(|s| (*s, self.view(*s))).collect(),
            },
        }
    }

    /// The seats as a replica's final state would list them (free seats left out).
    pub fn final_seats(&self) -> BTreeMap<SeatId, FinalSeat> {
        self.slots
            .iter()
            .filter_map(|(seat, slot)| match slot {
                Slot::Held(h) if self.live(*h) => Some((
                    *seat,
                    FinalSeat::Held {
                        hold_id: *h,
                        expires_at_ms: self.holds[h].expires_at_ms,
                    },
                )),
                Slot::Held(_) => None,
                Slot::Sold(b) => Some((*seat, FinalSeat::Sold { booking_id: *b })),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_follows_the_brief() {
        let mut shard = ReferenceShard::new();
        let (s1, s2) = (SeatId(1), SeatId(2));
        let hold = |h, seats: &[SeatId]| Command::Hold {
            hold_id: HoldId(h),
            owner: OwnerId(h),
            seats: seats.to_vec(),
            ttl_ms: 100,
        };
        assert_eq!(
            shard.apply(&hold(1, &[s1]), 10),
            Outcome::Held {
                expires_at_ms: 110,
                at_ms: 10
            }
        );
        assert_eq!(
            shard.apply(&hold(2, &[s1, s2]), 5),
            Outcome::Taken {
                unavailable: vec![s1],
                at_ms: 10
            }
        );
        assert_eq!(
            shard.apply(
                &Command::Release {
                    hold_id: HoldId(2),
                    owner: OwnerId(2)
                },
                20
            ),
            Outcome::NotFound
        );
        assert_eq!(
            shard.apply(
                &Command::Release {
                    hold_id: HoldId(1),
                    owner: OwnerId(9)
                },
                20
            ),
            Outcome::NotOwner
        );
        assert_eq!(
            shard.apply(&hold(3, &[s1, s2]), 110),
            Outcome::Held {
                expires_at_ms: 210,
                at_ms: 110
            }
        );
        let confirm = |h, b| Command::Confirm {
            hold_id: HoldId(h),
            booking_id: BookingId(b),
        };
        assert_eq!(
            shard.apply(&confirm(1, 1), 120),
            Outcome::Failed {
                reason: FailReason::Expired,
                at_ms: 120
            }
        );
        assert_eq!(
            shard.apply(&confirm(3, 3), 130),
            Outcome::Confirmed { at_ms: 130 }
        );
        assert_eq!(
            shard.apply(&confirm(3, 3), 900),
            Outcome::Confirmed { at_ms: 900 }
        );
        assert_eq!(
            shard.apply(&confirm(3, 4), 900),
            Outcome::Failed {
                reason: FailReason::AlreadySold,
                at_ms: 900
            }
        );
        assert_eq!(
            shard.apply(
                &Command::Release {
                    hold_id: HoldId(1),
                    owner: OwnerId(1)
                },
                900
            ),
            Outcome::AlreadyInactive
        );
        assert_eq!(
            shard.final_seats()[&s2],
            FinalSeat::Sold {
                booking_id: BookingId(3)
            }
        );
    }
}
