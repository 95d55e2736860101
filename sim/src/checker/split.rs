//! P-compositionality, as Porcupine does it: project every shard op onto each seat it
//! touches, check each seat's history on its own with the [`SeatModel`], and report the
//! seats that fail.
//!
//! A hold of `[a, b]` that answered `Taken { unavailable: [a] }` becomes "was not free" on
//! `a` and "was free, nothing changed" on `b`, both at the same `at_ms`; a release or
//! confirm goes to the seats of the hold it names (known from that hold's request); a read
//! goes to each seat it read. Checking per seat drops the coupling between seats (one
//! shared `at_ms` for a multi-seat hold whose outcome is unknown, group-wide time order):
//! the cross-seat time order is checked separately by `time_never_goes_backwards`.
//!
//! Outcomes that contradict their own command are reported here as
//! [`ViolationKind::MalformedOutcome`] rather than searched for.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::history::{Command, HistoryError, HoldId, Outcome, OwnerId, SeatId, ShardHistory};
use super::report::{SeatFailure, Violation, ViolationKind};
use super::seat::{SeatModel, SeatOp, SeatOut};
use super::wgl::{self, CheckLimits, CheckResult, Exhausted, History, Operation, Return};

/// Failing seats that get a shrunk counterexample; later ones are only listed.
pub const MAX_SEATS_SHRUNK: usize = 4;
/// Requests of a core a report lists (the last ones, nearest the failure).
pub const MAX_CORE_SHOWN: usize = 16;
/// Requests of the longest explainable order a report shows (the last ones).
pub const MAX_ORDER_SHOWN: usize = 8;

/// One seat's projected history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeatHistory {
    pub seat: SeatId,
    pub ops: History<SeatOp, SeatOut>,
    /// For each projected op, the index of its shard op.
    pub origin: Vec<usize>,
}

/// A shard history cut into per-seat histories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    pub seats: BTreeMap<SeatId, SeatHistory>,
    pub violations: Vec<Violation>,
}

struct HoldInfo<'a> {
    owner: OwnerId,
    seats: &'a [SeatId],
}

/// Projects `history` onto its seats.
pub fn split_by_seat(history: &ShardHistory) -> Result<Split, HistoryError> {
    history.validate()?;
    let holds: BTreeMap<HoldId, HoldInfo<'_>> = history
        .ops
        .iter()
        .filter_map(|op| match &op.command {
            Command::Hold {
                hold_id,
                owner,
                seats,
                ..
            } => Some((
                *hold_id,
                HoldInfo {
                    owner: *owner,
                    seats,
                },
            )),
            _ => None,
        })
        .collect();

    let mut split = Split {
        seats: BTreeMap::new(),
        violations: Vec::new(),
    };
    for (index, op) in history.ops.iter().enumerate() {
        let outcome = op.response.as_ref().map(|r| &r.outcome);
        let malformed = |detail: String| Violation {
            kind: ViolationKind::MalformedOutcome,
            seat: None,
            requests: vec![op.request],
            detail,
        };
        let seats = seats_of(&op.command, &holds);
        if seats.is_empty() {
            // A release or confirm of a hold no request asked for: only "not found" fits.
            let fits = matches!(
                outcome,
                None | Some(
                    Outcome::NotFound
                        | Outcome::Failed {
                            reason: super::history::FailReason::NotFound,
                            ..
                        }
                ) | Some(Outcome::Refused { .. })
            );
            if !fits {
                split.violations.push(malformed(format!(
                    "{} of a hold no request created answered {}",
                    op.command.kind(),
                    outcome.expect("unknown outcomes fit")
                )));
            }
            continue;
        }
        match (&op.command, outcome) {
            (
                Command::Hold { ttl_ms, .. },
                Some(Outcome::Held {
                    expires_at_ms,
                    at_ms,
                }),
            ) if at_ms.checked_add(*ttl_ms) != Some(*expires_at_ms) => {
                split.violations.push(malformed(format!(
                    "held at {at_ms} for {ttl_ms} ms must expire at {}, not {expires_at_ms}",
                    at_ms.saturating_add(*ttl_ms)
                )));
            }
            (Command::Hold { .. }, Some(Outcome::Taken { unavailable, .. })) => {
                if unavailable.is_empty() {
                    split
                        .violations
                        .push(malformed("taken, yet no seat is unavailable".to_owned()));
                }
                let stray: BTreeSet<_> =
                    unavailable.iter().filter(|s| !seats.contains(s)).collect();
                if !stray.is_empty() {
                    split.violations.push(malformed(format!(
                        "unavailable seats {stray:?} were not asked for"
                    )));
                }
            }
            (Command::Read { .. }, Some(Outcome::Statuses { seats: seen, .. })) => {
                let missing: Vec<_> = seats.iter().filter(|s| !seen.contains_key(s)).collect();
                let stray: Vec<_> = seen.keys().filter(|s| !seats.contains(s)).collect();
                if !missing.is_empty() || !stray.is_empty() {
                    split.violations.push(malformed(format!(
                        "read misses seats {missing:?} and adds {stray:?}"
                    )));
                }
            }
            _ => {}
        }
        if matches!(op.command, Command::Read { .. }) && outcome.is_none() {
            continue; // a read of unknown outcome constrains nothing
        }
        for &seat in seats {
            let Some(seat_op) = project_op(&op.command, &holds) else {
                continue;
            };
            let ret = match (&op.response, outcome) {
                (Some(r), Some(o)) => match project_outcome(o, seat) {
                    Some(out) => Some(Return {
                        time: r.responded_ns,
                        out,
                    }),
                    None => continue, // reported as malformed above
                },
                _ => None,
            };
            let h = split.seats.entry(seat).or_insert_with(|| SeatHistory {
                seat,
                ops: Vec::new(),
                origin: Vec::new(),
            });
            h.ops.push(Operation {
                call: op.invoked_ns,
                op: seat_op,
                ret,
            });
            h.origin.push(index);
        }
    }
    Ok(split)
}

/// The seats `command` touches: its own, or those of the hold it names.
fn seats_of<'a>(command: &'a Command, holds: &BTreeMap<HoldId, HoldInfo<'a>>) -> &'a [SeatId] {
    match command {
        Command::Hold { seats, .. } | Command::Read { seats } => seats,
        Command::Release { hold_id, .. } | Command::Confirm { hold_id, .. } => {
            holds.get(hold_id).map_or(&[], |h| h.seats)
        }
    }
}

/// The seat's view of `command` (`refs` is left for [`SeatModel`]'s `prepare`).
fn project_op(command: &Command, holds: &BTreeMap<HoldId, HoldInfo<'_>>) -> Option<SeatOp> {
    Some(match command {
        Command::Hold {
            hold_id, ttl_ms, ..
        } => SeatOp::Hold {
            hold: *hold_id,
            ttl_ms: *ttl_ms,
            refs: 0,
        },
        Command::Release { hold_id, owner } => SeatOp::Release {
            hold: *hold_id,
            owner_matches: holds.get(hold_id)?.owner == *owner,
            refs: 0,
            pending: false,
        },
        Command::Confirm {
            hold_id,
            booking_id,
        } => SeatOp::Confirm {
            hold: *hold_id,
            booking: *booking_id,
            refs: 0,
            pending: false,
        },
        Command::Read { .. } => SeatOp::Read,
    })
}

fn project_outcome(outcome: &Outcome, seat: SeatId) -> Option<SeatOut> {
    Some(match outcome {
        Outcome::Held { at_ms, .. } => SeatOut::Held { at_ms: *at_ms },
        Outcome::Taken { unavailable, at_ms } if unavailable.contains(&seat) => {
            SeatOut::NotFree { at_ms: *at_ms }
        }
        Outcome::Taken { at_ms, .. } => SeatOut::FreeUnchanged { at_ms: *at_ms },
        Outcome::Released { at_ms } => SeatOut::Released { at_ms: *at_ms },
        Outcome::NotFound => SeatOut::NotFound,
        Outcome::NotOwner => SeatOut::NotOwner,
        Outcome::AlreadyInactive => SeatOut::AlreadyInactive,
        Outcome::Confirmed { at_ms } => SeatOut::Confirmed { at_ms: *at_ms },
        Outcome::Failed { reason, at_ms } => SeatOut::Failed {
            reason: *reason,
            at_ms: *at_ms,
        },
        Outcome::Statuses { at_ms, seats } => SeatOut::Saw {
            at_ms: *at_ms,
            view: *seats.get(&seat)?,
        },
        Outcome::Refused { at_ms } => SeatOut::Refused { at_ms: *at_ms },
    })
}

/// Per-seat verdicts of a split history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeatVerdicts {
    pub failures: Vec<SeatFailure>,
    pub undecided: Vec<(SeatId, Exhausted)>,
}

/// Checks every seat of `split` (in seat order) against the [`SeatModel`].
pub fn check_seats(
    history: &ShardHistory,
    split: &Split,
    limits: &CheckLimits,
) -> Result<SeatVerdicts, HistoryError> {
    let mut verdicts = SeatVerdicts::default();
    for (seat, seat_history) in &split.seats {
        let shrink = verdicts.failures.len() < MAX_SEATS_SHRUNK;
        let result = if shrink {
            wgl::check(&SeatModel, &seat_history.ops, limits)?
        } else {
            match wgl::check_quick(&SeatModel, &seat_history.ops, limits)? {
                Some(true) => CheckResult::Linearizable,
                Some(false) => {
                    verdicts.failures.push(SeatFailure {
                        seat: *seat,
                        core: Vec::new(),
                        core_is_minimal: false,
                        prefix_end_ns: u64::MAX,
                        prefix_len: seat_history.ops.len(),
                        explanation: format!(
                            "seat {seat}: not linearizable (not shrunk: more than {MAX_SEATS_SHRUNK} seats fail)\n"
                        ),
                    });
                    continue;
                }
                None => CheckResult::Unknown(Exhausted::Steps {
                    max_steps: limits.max_steps,
                }),
            }
        };
        match result {
            CheckResult::Linearizable => {}
            CheckResult::Unknown(e) => verdicts.undecided.push((*seat, e)),
            CheckResult::NotLinearizable(cx) => {
                let shard_op = |i: usize| &history.ops[seat_history.origin[i]];
                let mut text = format!(
                    "seat {seat}: not linearizable; the shortest failing prefix ends at {} ns ({} ops on this seat)\n",
                    cx.prefix_end, cx.prefix_len
                );
                if cx.times_alone {
                    let _ = writeln!(
                        text,
                        "  the recorded times alone cannot be ordered: it fails whatever every request answered; see what cannot come next"
                    );
                } else {
                    let _ = writeln!(
                        text,
                        "  outcomes that cannot all hold{}, whatever the other requests answered (at their recorded times):",
                        if cx.core_is_minimal { "" } else { " (shrinking ran out of budget)" }
                    );
                    let hidden = cx.core.len().saturating_sub(MAX_CORE_SHOWN);
                    if hidden > 0 {
                        let _ = writeln!(text, "    ... {hidden} earlier ones");
                    }
                    for &i in &cx.core[hidden..] {
                        let _ = writeln!(text, "    {}", shard_op(i));
                    }
                }
                let shown = cx.longest.len().saturating_sub(MAX_ORDER_SHOWN);
                let order: Vec<String> = cx.longest[shown..]
                    .iter()
                    .map(|&i| shard_op(i).request.to_string())
                    .collect();
                let _ = writeln!(
                    text,
                    "  longest explainable order ({} requests): [{}{}]",
                    cx.longest.len(),
                    if shown > 0 { "..., " } else { "" },
                    order.join(", ")
                );
                let _ = writeln!(text, "  seat state after it: {}", cx.state_after_longest);
                let _ = writeln!(text, "  none of these can come next:");
                for b in &cx.blocked {
                    let _ = writeln!(text, "    {}: {}", shard_op(b.op).request, b.reason);
                }
                verdicts.failures.push(SeatFailure {
                    seat: *seat,
                    core: cx.core.iter().map(|&i| shard_op(i).request).collect(),
                    core_is_minimal: cx.core_is_minimal,
                    prefix_end_ns: cx.prefix_end,
                    prefix_len: cx.prefix_len,
                    explanation: text,
                });
            }
        }
    }
    Ok(verdicts)
}

#[cfg(test)]
mod tests {
    use super::super::history::op;
    use super::super::history::SeatView;
    use super::*;

    #[test]
    fn a_taken_multi_seat_hold_splits_into_not_free_and_free() {
        let history = ShardHistory {
            ops: vec![
                op(
                    1,
                    0,
                    Command::Hold {
                        hold_id: HoldId(1),
                        owner: OwnerId(1),
                        seats: vec![SeatId(1), SeatId(2)],
                        ttl_ms: 50,
                    },
                    Some((
                        10,
                        Outcome::Taken {
                            unavailable: vec![SeatId(1)],
                            at_ms: 7,
                        },
                    )),
                ),
                op(
                    2,
                    20,
                    Command::Release {
                        hold_id: HoldId(1),
                        owner: OwnerId(1),
                    },
                    Some((30, Outcome::NotFound)),
                ),
                op(
                    3,
                    40,
                    Command::Read {
                        seats: vec![SeatId(2)],
                    },
                    None,
                ),
            ],
        };
        let split = split_by_seat(&history).expect("valid");
        assert!(split.violations.is_empty());
        let s1 = &split.seats[&SeatId(1)];
        let s2 = &split.seats[&SeatId(2)];
        assert_eq!(
            s1.ops[0].ret.as_ref().map(|r| r.out),
            Some(SeatOut::NotFree { at_ms: 7 })
        );
        assert_eq!(
            s2.ops[0].ret.as_ref().map(|r| r.out),
            Some(SeatOut::FreeUnchanged { at_ms: 7 })
        );
        assert_eq!(
            s1.ops[1].op,
            SeatOp::Release {
                hold: HoldId(1),
                owner_matches: true,
                refs: 0,
                pending: false
            }
        );
        assert_eq!(
            s2.origin,
            vec![0, 1],
            "the read of unknown outcome is dropped"
        );
    }

    #[test]
    fn outcomes_contradicting_their_command_are_malformed() {
        let hold = |seats: Vec<u64>| Command::Hold {
            hold_id: HoldId(seats[0]),
            owner: OwnerId(1),
            seats: seats.into_iter().map(SeatId).collect(),
            ttl_ms: 50,
        };
        let history = ShardHistory {
            ops: vec![
                op(
                    1,
                    0,
                    hold(vec![1]),
                    Some((
                        10,
                        Outcome::Held {
                            expires_at_ms: 99,
                            at_ms: 7,
                        },
                    )),
                ),
                op(
                    2,
                    0,
                    hold(vec![2]),
                    Some((
                        10,
                        Outcome::Taken {
                            unavailable: vec![],
                            at_ms: 7,
                        },
                    )),
                ),
                op(
                    3,
                    0,
                    hold(vec![3]),
                    Some((
                        10,
                        Outcome::Taken {
                            unavailable: vec![SeatId(9)],
                            at_ms: 7,
                        },
                    )),
                ),
                op(
                    4,
                    0,
                    Command::Read {
                        seats: vec![SeatId(1), SeatId(2)],
                    },
                    Some((
                        10,
                        Outcome::Statuses {
                            at_ms: 8,
                            seats: [(SeatId(1), SeatView::Free)].into(),
                        },
                    )),
                ),
                op(
                    5,
                    0,
                    Command::Confirm {
                        hold_id: HoldId(77),
                        booking_id: super::super::history::BookingId(1),
                    },
                    Some((10, Outcome::Confirmed { at_ms: 9 })),
                ),
            ],
        };
        let split = split_by_seat(&history).expect("valid");
        let flagged: Vec<u64> = split.violations.iter().map(|v| v.requests[0].0).collect();
        assert_eq!(flagged, vec![1, 2, 3, 4, 5], "{:#?}", split.violations);
    }
}
