//! From the clients' raw REST history to the simulator checker's `ShardHistory`, and the
//! replicas' final seats as the API reports them after the heal (or after the operator's
//! moves, in `admin_balance.rs`).
//!
//! **What the REST API does not expose.** The checker's outcomes carry `at_ms`, the
//! leader-stamped time a command was applied at. The public API gives none of it: a hold's
//! `created_at`/`expires_at` are RFC 3339 at one-second resolution, and 409, 204 and booking
//! answers carry no time at all. So the run gives every hold the longest lifetime the
//! state machine allows (an hour, far past the run), checks from what *is* exposed that no
//! acknowledged hold's `expires_at` falls inside the run and that `expires_at - created_at`
//! is that lifetime, and hands the checker every outcome at one logical time (0): with no
//! expiry inside the run, time cannot change any outcome, so the per-seat linearizability
//! search and the invariants judge exactly the order of holds, releases and sales. What
//! this cannot judge — expiry and the group's clock — the simulator covers.

use std::collections::BTreeMap;
use std::time::Instant;

use sim::checker::{
    BookingId, Command, FinalSeat, HoldId, Op, Outcome, OwnerId, ReplicaSeats, RequestId, Response,
    SeatId, ShardHistory,
};

use super::workload::{RawCommand, RawOp, RawOutcome};

/// The logical time every outcome is given (see the module doc).
pub const LOGICAL_AT_MS: u64 = 0;

/// String ids to the checker's small integers, and back for reports.
#[derive(Default)]
pub struct Interner {
    ids: BTreeMap<(u8, String), u64>,
}

impl Interner {
    fn id(&mut self, space: u8, name: &str) -> u64 {
        let next = self.ids.len() as u64 + 1;
        *self.ids.entry((space, name.to_owned())).or_insert(next)
    }
    pub fn seat(&mut self, name: &str) -> SeatId {
        SeatId(self.id(0, name))
    }
    pub fn hold(&mut self, name: &str) -> HoldId {
        HoldId(self.id(1, name))
    }
    pub fn owner(&mut self, name: &str) -> OwnerId {
        OwnerId(self.id(2, name))
    }
    pub fn booking(&mut self, name: &str) -> BookingId {
        BookingId(self.id(3, name))
    }
}

/// What the conversion found wrong in what the API exposed (before the checker runs).
pub fn convert(
    raw: &[RawOp],
    t0: Instant,
    ttl_ms: u64,
    run_end_unix_ms: u64,
    ids: &mut Interner,
) -> (ShardHistory, Vec<String>) {
    let ns = |t: Instant| t.saturating_duration_since(t0).as_nanos() as u64;
    let mut problems = Vec::new();
    let mut ops = Vec::with_capacity(raw.len());
    for (i, op) in raw.iter().enumerate() {
        let command = match &op.command {
            RawCommand::Hold {
                hold_id,
                owner,
                seats,
            } => Command::Hold {
                hold_id: ids.hold(hold_id),
                owner: ids.owner(owner),
                seats: seats.iter().map(|s| ids.seat(s)).collect(),
                ttl_ms,
            },
            RawCommand::Release { hold_id, owner } => Command::Release {
                hold_id: ids.hold(hold_id),
                owner: ids.owner(owner),
            },
            RawCommand::Confirm {
                hold_id,
                booking_id,
            } => Command::Confirm {
                hold_id: ids.hold(hold_id),
                booking_id: ids.booking(booking_id),
            },
        };
        let at_ms = LOGICAL_AT_MS;
        let response = op.response.as_ref().map(|(t, outcome)| {
            let outcome = match outcome {
                RawOutcome::Held {
                    created_at,
                    expires_at,
                } => {
                    match (unix_ms(created_at), unix_ms(expires_at)) {
                        (Some(c), Some(e)) => {
                            if e.saturating_sub(c) != ttl_ms {
                                problems.push(format!(
                                    "op {i}: hold lifetime {} ms, the event's is {ttl_ms} ms",
                                    e.saturating_sub(c)
                                ));
                            }
                            if e <= run_end_unix_ms {
                                problems.push(format!(
                                    "op {i}: a hold expires at {expires_at}, inside the run"
                                ));
                            }
                        }
                        _ => problems.push(format!(
                            "op {i}: unreadable hold times {created_at:?} {expires_at:?}"
                        )),
                    }
                    Outcome::Held {
                        expires_at_ms: at_ms + ttl_ms,
                        at_ms,
                    }
                }
                RawOutcome::Taken { unavailable } => Outcome::Taken {
                    unavailable: unavailable.iter().map(|s| ids.seat(s)).collect(),
                    at_ms,
                },
                RawOutcome::Refused => Outcome::Refused { at_ms },
                RawOutcome::Released => Outcome::Released { at_ms },
                RawOutcome::NotFound => Outcome::NotFound,
                RawOutcome::NotOwner => Outcome::NotOwner,
                RawOutcome::AlreadyInactive => Outcome::AlreadyInactive,
                RawOutcome::Confirmed => Outcome::Confirmed { at_ms },
                RawOutcome::Failed(reason) => Outcome::Failed {
                    reason: *reason,
                    at_ms,
                },
            };
            Response {
                responded_ns: ns(*t),
                outcome,
            }
        });
        ops.push(Op {
            request: RequestId(i as u64 + 1),
            invoked_ns: ns(op.invoked),
            command,
            response,
        });
    }
    (ShardHistory { ops }, problems)
}

/// Milliseconds since the epoch of an RFC 3339 time.
pub fn unix_ms(text: &str) -> Option<u64> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// One hold as an admin's linearizable `GET /v1/holds/{id}` reports it after the heal.
pub struct HoldRead {
    pub hold_id: String,
    pub status: String,
    pub seats: Vec<String>,
    pub booking_id: Option<String>,
}

/// The final seats one API node's hold reads describe; conflicting claims on a seat are
/// returned as problems (the checker's final-state map holds one claim per seat).
pub fn finals(
    replica: &str,
    reads: &[HoldRead],
    ttl_ms: u64,
    ids: &mut Interner,
) -> (ReplicaSeats, Vec<String>) {
    let mut seats = BTreeMap::new();
    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    let mut problems = Vec::new();
    for read in reads {
        let seat_state = match (read.status.as_str(), &read.booking_id) {
            ("active", _) => FinalSeat::Held {
                hold_id: ids.hold(&read.hold_id),
                expires_at_ms: LOGICAL_AT_MS + ttl_ms,
            },
            ("confirmed", Some(booking)) => FinalSeat::Sold {
                booking_id: ids.booking(booking),
            },
            _ => continue,
        };
        for seat in &read.seats {
            if let Some(other) = claimed.insert(seat.clone(), read.hold_id.clone()) {
                problems.push(format!(
                    "{replica}: seat {seat} is {} by {} and by {other}",
                    read.status, read.hold_id
                ));
            }
            seats.insert(ids.seat(seat), seat_state);
        }
    }
    (
        ReplicaSeats {
            replica: replica.to_owned(),
            seats,
        },
        problems,
    )
}
