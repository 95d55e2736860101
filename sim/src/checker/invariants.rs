//! The invariants of DESIGN.md as plain functions over a shard history (and the replicas'
//! final seats): time never goes backwards, no double sale, no acknowledged sale lost, no
//! acknowledged hold lost before its expiry, no confirm honoured after expiry.
//!
//! They overlap with the linearizability check on purpose: each names the broken rule in
//! words and looks across seats, where the per-seat search cannot. Each is lenient where
//! an unknown outcome could explain what it sees; the search is the exact judge.

use std::collections::{BTreeMap, BTreeSet};

use super::history::{
    BookingId, Command, FinalSeat, HoldId, Op, Outcome, ReplicaSeats, RequestId, SeatId, SeatView,
    ShardHistory,
};
use super::report::{tidy, Violation, ViolationKind};

/// Every invariant below, sorted and capped per kind.
pub fn check_invariants(history: &ShardHistory, finals: &[ReplicaSeats]) -> Vec<Violation> {
    let mut all = time_never_goes_backwards(history);
    all.extend(no_double_sale(history, finals));
    all.extend(no_lost_holds(history));
    all.extend(no_confirm_after_expiry(history));
    tidy(all)
}

fn known(history: &ShardHistory) -> impl Iterator<Item = (&Op, u64, &Outcome)> {
    history.ops.iter().filter_map(|op| {
        op.response
            .as_ref()
            .map(|r| (op, r.responded_ns, &r.outcome))
    })
}

fn hold_seats(history: &ShardHistory) -> BTreeMap<HoldId, &[SeatId]> {
    history
        .ops
        .iter()
        .filter_map(|op| match &op.command {
            Command::Hold { hold_id, seats, .. } => Some((*hold_id, &seats[..])),
            _ => None,
        })
        .collect()
}

/// If op A answered before op B was sent, B's `at_ms` is not below A's: the group's clock
/// is monotonic and linearization respects real time. Checked across all seats.
pub fn time_never_goes_backwards(history: &ShardHistory) -> Vec<Violation> {
    let mut by_return: Vec<(u64, u64, RequestId)> = known(history)
        .filter_map(|(op, ret, out)| Some((ret, out.at_ms()?, op.request)))
        .collect();
    by_return.sort();
    let mut by_call: Vec<(u64, u64, RequestId)> = known(history)
        .filter_map(|(op, _, out)| Some((op.invoked_ns, out.at_ms()?, op.request)))
        .collect();
    by_call.sort();
    let mut violations = Vec::new();
    let mut next = 0;
    let mut latest: Option<(u64, RequestId)> = None; // highest at_ms among ops answered so far
    for (call, at_ms, request) in by_call {
        while next < by_return.len() && by_return[next].0 < call {
            let (_, a_at, a_req) = by_return[next];
            if latest.is_none_or(|(at, _)| a_at > at) {
                latest = Some((a_at, a_req));
            }
            next += 1;
        }
        if let Some((a_at, a_req)) = latest {
            if a_at > at_ms {
                violations.push(Violation {
                    kind: ViolationKind::TimeWentBackwards,
                    seat: None,
                    requests: vec![a_req, request],
                    detail: format!(
                        "{a_req} answered at_ms {a_at} before {request} was sent, which answered at_ms {at_ms}"
                    ),
                });
            }
        }
    }
    violations
}

/// Who says a seat was sold to a booking: requests, and replicas' final states.
type Evidence<'a> = (BTreeSet<RequestId>, BTreeSet<&'a str>);

/// A seat is sold to at most one booking, ever: across acknowledged confirms, reads that
/// saw it sold, and every replica's final state. Also: every acknowledged sale is in every
/// final state given.
pub fn no_double_sale(history: &ShardHistory, finals: &[ReplicaSeats]) -> Vec<Violation> {
    let seats_of = hold_seats(history);
    let mut sold: BTreeMap<SeatId, BTreeMap<BookingId, Evidence<'_>>> = BTreeMap::new();
    let mut acknowledged: BTreeMap<SeatId, BTreeMap<BookingId, RequestId>> = BTreeMap::new();
    for (op, _, out) in known(history) {
        match (&op.command, out) {
            (
                Command::Confirm {
                    hold_id,
                    booking_id,
                },
                Outcome::Confirmed { .. },
            ) => {
                for seat in seats_of.get(hold_id).copied().unwrap_or(&[]) {
                    sold.entry(*seat)
                        .or_default()
                        .entry(*booking_id)
                        .or_default()
                        .0
                        .insert(op.request);
                    acknowledged
                        .entry(*seat)
                        .or_default()
                        .entry(*booking_id)
                        .or_insert(op.request);
                }
            }
            (Command::Read { .. }, Outcome::Statuses { seats, .. }) => {
                for (seat, view) in seats {
                    if let SeatView::Sold { booking_id } = view {
                        sold.entry(*seat)
                            .or_default()
                            .entry(*booking_id)
                            .or_default()
                            .0
                            .insert(op.request);
                    }
                }
            }
            _ => {}
        }
    }
    for replica in finals {
        for (seat, state) in &replica.seats {
            if let FinalSeat::Sold { booking_id } = state {
                sold.entry(*seat)
                    .or_default()
                    .entry(*booking_id)
                    .or_default()
                    .1
                    .insert(&replica.replica);
            }
        }
    }
    let mut violations = Vec::new();
    for (seat, bookings) in &sold {
        if bookings.len() > 1 {
            let mut requests = BTreeSet::new();
            let mut detail = format!("{seat} sold to {} bookings:", bookings.len());
            for (booking, (reqs, replicas)) in bookings {
                requests.extend(reqs.iter().copied());
                detail.push_str(&format!(
                    " {booking} (requests {reqs:?}, replicas {replicas:?});"
                ));
            }
            violations.push(Violation {
                kind: ViolationKind::DoubleSale,
                seat: Some(*seat),
                requests: requests.into_iter().collect(),
                detail,
            });
        }
    }
    for (seat, bookings) in &acknowledged {
        for (booking, request) in bookings {
            for replica in finals {
                let state = replica.seats.get(seat).copied().unwrap_or(FinalSeat::Free);
                if state
                    != (FinalSeat::Sold {
                        booking_id: *booking,
                    })
                {
                    violations.push(Violation {
                        kind: ViolationKind::LostSale,
                        seat: Some(*seat),
                        requests: vec![*request],
                        detail: format!(
                            "{booking} was confirmed but replica {} ends with {seat} {state:?}",
                            replica.replica
                        ),
                    });
                }
            }
        }
    }
    violations
}

/// What a known outcome says about one seat at its `at_ms`.
#[derive(Clone, Copy, Debug)]
enum Sight {
    /// Taken by this hold (held) or sold through it (confirmed).
    TakenBy(HoldId),
    SoldTo(BookingId),
    Free,
    HeldBy(HoldId),
}

/// An acknowledged hold owns its seats from its `at_ms` until it expires or is released:
/// in that window no other hold takes them, no other hold's confirm sells them, no hold
/// finds them free and no read sees them free, held by another or sold to another booking.
///
/// An op stamped with the same `at_ms` as the hold counts only if it was sent after the
/// hold's answer (otherwise it may be ordered first). Lenient: a hold with an owner's
/// release of unknown outcome is skipped (the release may have happened at any time).
pub fn no_lost_holds(history: &ShardHistory) -> Vec<Violation> {
    let seats_of = hold_seats(history);
    // Per seat, every sighting: (at_ms, request, sent at, what).
    let mut sights: BTreeMap<SeatId, Vec<(u64, RequestId, u64, Sight)>> = BTreeMap::new();
    // (hold, request, answered at, at_ms, expires_at_ms)
    let mut holds: Vec<(HoldId, RequestId, u64, u64, u64)> = Vec::new();
    let mut released_at: BTreeMap<HoldId, u64> = BTreeMap::new();
    let mut maybe_released: BTreeSet<HoldId> = BTreeSet::new();
    let mut bookings_of: BTreeMap<HoldId, BTreeSet<BookingId>> = BTreeMap::new();
    let owners: BTreeMap<HoldId, _> = history
        .ops
        .iter()
        .filter_map(|op| match &op.command {
            Command::Hold { hold_id, owner, .. } => Some((*hold_id, *owner)),
            _ => None,
        })
        .collect();
    for op in &history.ops {
        let outcome = op.response.as_ref().map(|r| &r.outcome);
        let mut see = |seat: SeatId, at: u64, sight: Sight| {
            sights
                .entry(seat)
                .or_default()
                .push((at, op.request, op.invoked_ns, sight))
        };
        if let Command::Confirm {
            hold_id,
            booking_id,
        } = &op.command
        {
            bookings_of.entry(*hold_id).or_default().insert(*booking_id);
        }
        match (&op.command, outcome) {
            (
                Command::Hold { hold_id, seats, .. },
                Some(Outcome::Held {
                    expires_at_ms,
                    at_ms,
                }),
            ) => {
                let answered = op.response.as_ref().map_or(0, |r| r.responded_ns);
                holds.push((*hold_id, op.request, answered, *at_ms, *expires_at_ms));
                seats
                    .iter()
                    .for_each(|s| see(*s, *at_ms, Sight::TakenBy(*hold_id)));
            }
            (Command::Hold { seats, .. }, Some(Outcome::Taken { unavailable, at_ms })) => {
                seats
                    .iter()
                    .filter(|s| !unavailable.contains(s))
                    .for_each(|s| see(*s, *at_ms, Sight::Free));
            }
            (Command::Release { hold_id, owner }, None) if owners.get(hold_id) == Some(owner) => {
                maybe_released.insert(*hold_id);
            }
            (Command::Release { hold_id, .. }, Some(Outcome::Released { at_ms })) => {
                let at = released_at.entry(*hold_id).or_insert(*at_ms);
                *at = (*at).min(*at_ms);
            }
            (Command::Confirm { hold_id, .. }, Some(Outcome::Confirmed { at_ms })) => {
                for seat in seats_of.get(hold_id).copied().unwrap_or(&[]) {
                    see(*seat, *at_ms, Sight::TakenBy(*hold_id));
                }
            }
            (Command::Read { .. }, Some(Outcome::Statuses { at_ms, seats })) => {
                for (seat, view) in seats {
                    let sight = match view {
                        SeatView::Free => Sight::Free,
                        SeatView::Held { hold_id } => Sight::HeldBy(*hold_id),
                        SeatView::Sold { booking_id } => Sight::SoldTo(*booking_id),
                    };
                    see(*seat, *at_ms, sight);
                }
            }
            _ => {}
        }
    }
    sights
        .values_mut()
        .for_each(|v| v.sort_by_key(|(at, request, _, _)| (*at, *request)));

    let mut violations = Vec::new();
    for (hold, request, answered, at, expires) in holds {
        if maybe_released.contains(&hold) {
            continue;
        }
        let until = released_at
            .get(&hold)
            .map_or(expires, |r| (*r).min(expires));
        let own_bookings = bookings_of.get(&hold);
        for seat in seats_of.get(&hold).copied().unwrap_or(&[]) {
            let Some(seen) = sights.get(seat) else {
                continue;
            };
            let start = seen.partition_point(|(t, _, _, _)| *t < at);
            for &(t, other, sent, sight) in
                seen[start..].iter().take_while(|(t, _, _, _)| *t < until)
            {
                if t == at && sent <= answered {
                    continue; // same stamp, overlapping in real time: may come first
                }
                let honoured = match sight {
                    Sight::TakenBy(h) | Sight::HeldBy(h) => h == hold,
                    Sight::SoldTo(b) => own_bookings.is_some_and(|bs| bs.contains(&b)),
                    Sight::Free => false,
                };
                if !honoured {
                    violations.push(Violation {
                        kind: ViolationKind::LostHold,
                        seat: Some(*seat),
                        requests: vec![request, other],
                        detail: format!(
                            "{hold} held {seat} from {at} until {until}, but {other} at {t} found it {}",
                            match sight {
                                Sight::TakenBy(h) => format!("taken by {h}"),
                                Sight::HeldBy(h) => format!("held by {h}"),
                                Sight::SoldTo(b) => format!("sold to {b}"),
                                Sight::Free => "free".to_owned(),
                            }
                        ),
                    });
                }
            }
        }
    }
    violations
}

/// A hold is never honoured after its expiry: the first acknowledged confirm of a hold
/// acknowledged as held has `at_ms < expires_at_ms`. (A repeated confirm of the same
/// booking may answer confirmed later; only the first one sells.) Lenient: a hold with a
/// confirm of unknown outcome is skipped, as that confirm may have sold it in time.
pub fn no_confirm_after_expiry(history: &ShardHistory) -> Vec<Violation> {
    let mut expiry: BTreeMap<HoldId, (u64, RequestId)> = BTreeMap::new();
    let mut first_confirm: BTreeMap<HoldId, (u64, RequestId)> = BTreeMap::new();
    let mut unknown_confirm: BTreeSet<HoldId> = BTreeSet::new();
    for op in &history.ops {
        match (&op.command, op.response.as_ref().map(|r| &r.outcome)) {
            (Command::Hold { hold_id, .. }, Some(Outcome::Held { expires_at_ms, .. })) => {
                expiry.insert(*hold_id, (*expires_at_ms, op.request));
            }
            (Command::Confirm { hold_id, .. }, Some(Outcome::Confirmed { at_ms })) => {
                let first = first_confirm
                    .entry(*hold_id)
                    .or_insert((*at_ms, op.request));
                *first = (*first).min((*at_ms, op.request));
            }
            (Command::Confirm { hold_id, .. }, None) => {
                unknown_confirm.insert(*hold_id);
            }
            _ => {}
        }
    }
    let mut violations = Vec::new();
    for (hold, (at, confirm)) in first_confirm {
        let Some(&(expires, held)) = expiry.get(&hold) else {
            continue;
        };
        if at >= expires && !unknown_confirm.contains(&hold) {
            violations.push(Violation {
                kind: ViolationKind::ConfirmAfterExpiry,
                seat: None,
                requests: vec![held, confirm],
                detail: format!("{hold} expired at {expires} but was first confirmed at {at}"),
            });
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::super::history::op;
    use super::super::history::OwnerId;
    use super::*;

    fn hold(h: u64, seat: u64) -> Command {
        Command::Hold {
            hold_id: HoldId(h),
            owner: OwnerId(h),
            seats: vec![SeatId(seat)],
            ttl_ms: 100,
        }
    }
    fn held(at_ms: u64) -> Outcome {
        Outcome::Held {
            expires_at_ms: at_ms + 100,
            at_ms,
        }
    }
    fn kinds(v: &[Violation]) -> Vec<ViolationKind> {
        v.iter().map(|v| v.kind).collect()
    }

    #[test]
    fn time_backwards_across_seats() {
        let h = ShardHistory {
            ops: vec![
                op(1, 0, hold(1, 1), Some((10, held(500)))),
                op(2, 20, hold(2, 2), Some((30, held(400)))),
            ],
        };
        let v = time_never_goes_backwards(&h);
        assert_eq!(kinds(&v), vec![ViolationKind::TimeWentBackwards]);
        assert_eq!(v[0].requests, vec![RequestId(1), RequestId(2)]);
        // Overlapping in real time: either order is fine.
        let h = ShardHistory {
            ops: vec![
                op(1, 0, hold(1, 1), Some((25, held(500)))),
                op(2, 20, hold(2, 2), Some((30, held(400)))),
            ],
        };
        assert!(time_never_goes_backwards(&h).is_empty());
    }

    #[test]
    fn lost_hold_and_late_confirm() {
        let confirm = |h: u64, b: u64| Command::Confirm {
            hold_id: HoldId(h),
            booking_id: BookingId(b),
        };
        let h = ShardHistory {
            ops: vec![
                op(1, 0, hold(1, 1), Some((10, held(100)))),
                op(2, 20, hold(2, 1), Some((30, held(150)))),
                op(
                    3,
                    40,
                    confirm(1, 1),
                    Some((50, Outcome::Confirmed { at_ms: 200 })),
                ),
                op(
                    4,
                    60,
                    confirm(1, 1),
                    Some((70, Outcome::Confirmed { at_ms: 300 })),
                ),
            ],
        };
        // h2 took the seat inside h1's lifetime, and h1's confirm sold it inside h2's.
        let lost = no_lost_holds(&h);
        assert_eq!(kinds(&lost), vec![ViolationKind::LostHold; 2]);
        assert_eq!(lost[0].requests, vec![RequestId(1), RequestId(2)]);
        let late = no_confirm_after_expiry(&h);
        assert_eq!(kinds(&late), vec![ViolationKind::ConfirmAfterExpiry]);
        assert_eq!(late[0].requests, vec![RequestId(1), RequestId(3)]);
        assert!(
            no_double_sale(&h, &[]).is_empty(),
            "one booking, confirmed twice"
        );
    }

    #[test]
    fn double_sale_in_history_and_final_states() {
        let confirm = |h: u64, b: u64| Command::Confirm {
            hold_id: HoldId(h),
            booking_id: BookingId(b),
        };
        let h = ShardHistory {
            ops: vec![
                op(1, 0, hold(1, 1), Some((10, held(100)))),
                op(
                    2,
                    20,
                    confirm(1, 1),
                    Some((30, Outcome::Confirmed { at_ms: 120 })),
                ),
            ],
        };
        let agree = ReplicaSeats {
            replica: "n1".into(),
            seats: [(
                SeatId(1),
                FinalSeat::Sold {
                    booking_id: BookingId(1),
                },
            )]
            .into(),
        };
        let other = ReplicaSeats {
            replica: "n2".into(),
            seats: [(
                SeatId(1),
                FinalSeat::Sold {
                    booking_id: BookingId(2),
                },
            )]
            .into(),
        };
        assert!(no_double_sale(&h, std::slice::from_ref(&agree)).is_empty());
        let v = no_double_sale(&h, &[agree, other]);
        assert_eq!(
            kinds(&v),
            vec![ViolationKind::DoubleSale, ViolationKind::LostSale],
            "{v:#?}"
        );
        assert!(v[0].detail.contains("n2"));
    }
}
