//! The history a simulation driver records for one shard (one Raft group): every client
//! request with its invocation time, and its response time and outcome when the client
//! learned them. Plain data plus the structural validation that rejects driver bugs.
//!
//! Ids are small integers: the driver interns the system's string ids (seat, hold, owner,
//! booking, request) before recording, which keeps the checker's search states cheap.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Most ops one history may hold. The search keeps a bitset of this many bits per cached
/// state, so the bound keeps memory proportional to what the search budget allows.
pub const MAX_OPS_PER_HISTORY: usize = 1_000_000;
/// Most seats one hold or read may name.
pub const MAX_SEATS_PER_OP: usize = 1_024;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
    };
}

id_type!(
    /// A seat of the shard (interned by the driver).
    SeatId, "s"
);
id_type!(
    /// A hold, chosen by the client; unique per history.
    HoldId, "h"
);
id_type!(
    /// The user a hold belongs to.
    OwnerId, "u"
);
id_type!(
    /// A booking: the idempotency key of a confirm.
    BookingId, "b"
);
id_type!(
    /// One logical client request (all its retries fold into one op).
    RequestId, "r"
);

/// What a client asked the shard to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// All-or-nothing hold of `seats` for `ttl_ms`.
    Hold {
        hold_id: HoldId,
        owner: OwnerId,
        seats: Vec<SeatId>,
        ttl_ms: u64,
    },
    /// The owner gives the hold's still-live seats back.
    Release { hold_id: HoldId, owner: OwnerId },
    /// Sell the hold's seats to `booking_id` if the hold is live; idempotent per booking.
    Confirm {
        hold_id: HoldId,
        booking_id: BookingId,
    },
    /// A linearizable read of some seats.
    Read { seats: Vec<SeatId> },
}

/// Why a confirm failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailReason {
    /// The hold reached `expires_at_ms` before the confirm.
    Expired,
    /// The owner released the hold.
    Released,
    /// No such hold (never held, or the hold attempt found seats taken).
    NotFound,
    /// The hold was already confirmed under a different booking.
    AlreadySold,
}

/// One seat as a read reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SeatView {
    Free,
    Held { hold_id: HoldId },
    Sold { booking_id: BookingId },
}

/// What the shard answered. `at_ms` is the effective (leader-stamped, never decreasing)
/// time the command was applied at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Hold: every seat was free at `at_ms`; all are held until `expires_at_ms`.
    Held { expires_at_ms: u64, at_ms: u64 },
    /// Hold: nothing changed; `unavailable` is exactly the seats not free at `at_ms`.
    Taken {
        unavailable: Vec<SeatId>,
        at_ms: u64,
    },
    /// Release: the hold's still-live seats became free.
    Released { at_ms: u64 },
    /// Release: no such hold.
    NotFound,
    /// Release: the hold belongs to someone else.
    NotOwner,
    /// Release: the hold is expired, released or confirmed already.
    AlreadyInactive,
    /// Confirm: the hold's seats are sold to the booking (also on a repeated confirm).
    Confirmed { at_ms: u64 },
    /// Confirm: nothing changed.
    Failed { reason: FailReason, at_ms: u64 },
    /// Read: the status of every requested seat at `at_ms`.
    Statuses {
        at_ms: u64,
        seats: BTreeMap<SeatId, SeatView>,
    },
    /// Any command: refused for a reason outside the seat model (a per-owner hold limit, a
    /// ttl out of range, a reused id, ...); nothing changed.
    Refused { at_ms: u64 },
}

impl Outcome {
    /// The effective time the outcome carries, if it carries one.
    pub fn at_ms(&self) -> Option<u64> {
        match self {
            Outcome::Held { at_ms, .. }
            | Outcome::Taken { at_ms, .. }
            | Outcome::Released { at_ms }
            | Outcome::Confirmed { at_ms }
            | Outcome::Failed { at_ms, .. }
            | Outcome::Statuses { at_ms, .. }
            | Outcome::Refused { at_ms } => Some(*at_ms),
            Outcome::NotFound | Outcome::NotOwner | Outcome::AlreadyInactive => None,
        }
    }
}

/// The response a client received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Simulated real time the client received the answer (same clock as `invoked_ns`).
    pub responded_ns: u64,
    pub outcome: Outcome,
}

/// One logical request: first invocation to final answer, retries under the same request
/// id folded in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub request: RequestId,
    /// Simulated real time the client first sent the request.
    pub invoked_ns: u64,
    pub command: Command,
    /// `None` when the outcome is unknown (timeout, lost connection, client crash): the
    /// command may have taken effect at any time after `invoked_ns`, or never.
    pub response: Option<Response>,
}

/// Everything the clients of one shard saw, in any order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardHistory {
    pub ops: Vec<Op>,
}

/// A seat as a replica's final state holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalSeat {
    Free,
    Held { hold_id: HoldId, expires_at_ms: u64 },
    Sold { booking_id: BookingId },
}

/// The seats of one replica after the run (a seat left out counts as free).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaSeats {
    pub replica: String,
    pub seats: BTreeMap<SeatId, FinalSeat>,
}

/// A history the checker cannot judge because the driver recorded it wrongly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    #[error("history has {n_ops} ops, more than the limit of {max}")]
    TooManyOps { n_ops: usize, max: usize },
    #[error("op {index} returns at {ret} before it is called at {call}")]
    ReturnBeforeCall { index: usize, call: u64, ret: u64 },
    #[error("request {request} appears in more than one op")]
    DuplicateRequest { request: RequestId },
    #[error("hold {hold_id} is requested by more than one op ({first} and {second})")]
    DuplicateHoldId {
        hold_id: HoldId,
        first: RequestId,
        second: RequestId,
    },
    #[error("request {request} names no seats")]
    NoSeats { request: RequestId },
    #[error("request {request} names {n_seats} seats, more than the limit of {max}")]
    TooManySeats {
        request: RequestId,
        n_seats: usize,
        max: usize,
    },
    #[error("request {request} names seat {seat} twice")]
    DuplicateSeat { request: RequestId, seat: SeatId },
    #[error("request {request} holds for a ttl of 0 ms")]
    ZeroTtl { request: RequestId },
    #[error("request {request} is a {command} but its outcome is {outcome}")]
    OutcomeMismatch {
        request: RequestId,
        command: &'static str,
        outcome: &'static str,
    },
}

impl Command {
    /// The command's name, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Hold { .. } => "hold",
            Command::Release { .. } => "release",
            Command::Confirm { .. } => "confirm",
            Command::Read { .. } => "read",
        }
    }
}

impl Outcome {
    fn kind(&self) -> &'static str {
        match self {
            Outcome::Held { .. } => "held",
            Outcome::Taken { .. } => "taken",
            Outcome::Released { .. } => "released",
            Outcome::NotFound => "not-found",
            Outcome::NotOwner => "not-owner",
            Outcome::AlreadyInactive => "already-inactive",
            Outcome::Confirmed { .. } => "confirmed",
            Outcome::Failed { .. } => "failed",
            Outcome::Statuses { .. } => "statuses",
            Outcome::Refused { .. } => "refused",
        }
    }

    fn fits(&self, command: &Command) -> bool {
        matches!(
            (command, self),
            (_, Outcome::Refused { .. })
                | (
                    Command::Hold { .. },
                    Outcome::Held { .. } | Outcome::Taken { .. }
                )
                | (
                    Command::Release { .. },
                    Outcome::Released { .. }
                        | Outcome::NotFound
                        | Outcome::NotOwner
                        | Outcome::AlreadyInactive
                )
                | (
                    Command::Confirm { .. },
                    Outcome::Confirmed { .. } | Outcome::Failed { .. }
                )
                | (Command::Read { .. }, Outcome::Statuses { .. })
        )
    }
}

/// An op invoked at `call` (ns) by request `request`, answered `(responded_ns, outcome)`
/// when given: how the checker's tests write histories.
#[cfg(test)]
pub(crate) fn op(
    request: u64,
    call: u64,
    command: Command,
    response: Option<(u64, Outcome)>,
) -> Op {
    Op {
        request: RequestId(request),
        invoked_ns: call,
        command,
        response: response.map(|(responded_ns, outcome)| Response {
            responded_ns,
            outcome,
        }),
    }
}

impl ShardHistory {
    /// Rejects histories the driver recorded wrongly. What the *system* answered wrongly
    /// (a malformed `unavailable` list, a wrong expiry) is a violation, reported elsewhere.
    pub fn validate(&self) -> Result<(), HistoryError> {
        if self.ops.len() > MAX_OPS_PER_HISTORY {
            return Err(HistoryError::TooManyOps {
                n_ops: self.ops.len(),
                max: MAX_OPS_PER_HISTORY,
            });
        }
        let mut requests = BTreeSet::new();
        let mut hold_ids: BTreeMap<HoldId, RequestId> = BTreeMap::new();
        for (index, op) in self.ops.iter().enumerate() {
            if !requests.insert(op.request) {
                return Err(HistoryError::DuplicateRequest {
                    request: op.request,
                });
            }
            if let Some(response) = &op.response {
                if response.responded_ns < op.invoked_ns {
                    return Err(HistoryError::ReturnBeforeCall {
                        index,
                        call: op.invoked_ns,
                        ret: response.responded_ns,
                    });
                }
                if !response.outcome.fits(&op.command) {
                    return Err(HistoryError::OutcomeMismatch {
                        request: op.request,
                        command: op.command.kind(),
                        outcome: response.outcome.kind(),
                    });
                }
            }
            match &op.command {
                Command::Hold {
                    hold_id,
                    seats,
                    ttl_ms,
                    ..
                } => {
                    if let Some(first) = hold_ids.insert(*hold_id, op.request) {
                        return Err(HistoryError::DuplicateHoldId {
                            hold_id: *hold_id,
                            first,
                            second: op.request,
                        });
                    }
                    if *ttl_ms == 0 {
                        return Err(HistoryError::ZeroTtl {
                            request: op.request,
                        });
                    }
                    check_seats(op.request, seats)?;
                }
                Command::Read { seats } => check_seats(op.request, seats)?,
                Command::Release { .. } | Command::Confirm { .. } => {}
            }
        }
        Ok(())
    }
}

fn check_seats(request: RequestId, seats: &[SeatId]) -> Result<(), HistoryError> {
    if seats.is_empty() {
        return Err(HistoryError::NoSeats { request });
    }
    if seats.len() > MAX_SEATS_PER_OP {
        return Err(HistoryError::TooManySeats {
            request,
            n_seats: seats.len(),
            max: MAX_SEATS_PER_OP,
        });
    }
    let mut seen = BTreeSet::new();
    for seat in seats {
        if !seen.insert(*seat) {
            return Err(HistoryError::DuplicateSeat {
                request,
                seat: *seat,
            });
        }
    }
    Ok(())
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Hold {
                hold_id,
                owner,
                seats,
                ttl_ms,
            } => {
                write!(
                    f,
                    "hold {hold_id} by {owner} of {} for {ttl_ms} ms",
                    SeatList(seats)
                )
            }
            Command::Release { hold_id, owner } => write!(f, "release {hold_id} by {owner}"),
            Command::Confirm {
                hold_id,
                booking_id,
            } => write!(f, "confirm {hold_id} as {booking_id}"),
            Command::Read { seats } => write!(f, "read {}", SeatList(seats)),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Held {
                expires_at_ms,
                at_ms,
            } => write!(f, "held at {at_ms} until {expires_at_ms}"),
            Outcome::Taken { unavailable, at_ms } => {
                write!(
                    f,
                    "taken at {at_ms} ({} unavailable)",
                    SeatList(unavailable)
                )
            }
            Outcome::Released { at_ms } => write!(f, "released at {at_ms}"),
            Outcome::NotFound => write!(f, "not found"),
            Outcome::NotOwner => write!(f, "not owner"),
            Outcome::AlreadyInactive => write!(f, "already inactive"),
            Outcome::Confirmed { at_ms } => write!(f, "confirmed at {at_ms}"),
            Outcome::Failed { reason, at_ms } => write!(f, "failed ({reason:?}) at {at_ms}"),
            Outcome::Statuses { at_ms, seats } => {
                write!(f, "at {at_ms} saw")?;
                for (seat, view) in seats {
                    write!(f, " {seat}={view}")?;
                }
                Ok(())
            }
            Outcome::Refused { at_ms } => write!(f, "refused at {at_ms}"),
        }
    }
}

impl fmt::Display for SeatView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeatView::Free => write!(f, "free"),
            SeatView::Held { hold_id } => write!(f, "held({hold_id})"),
            SeatView::Sold { booking_id } => write!(f, "sold({booking_id})"),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}..", self.request, self.invoked_ns)?;
        match &self.response {
            Some(r) => write!(f, "{}] {} -> {}", r.responded_ns, self.command, r.outcome),
            None => write!(f, "?] {} -> outcome unknown", self.command),
        }
    }
}

struct SeatList<'a>(&'a [SeatId]);

impl fmt::Display for SeatList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, seat) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            write!(f, "{seat}")?;
        }
        write!(f, "]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(request: u64, command: Command, response: Option<(u64, Outcome)>) -> Op {
        super::op(request, 10, command, response)
    }

    fn hold(hold_id: u64, seats: &[u64]) -> Command {
        Command::Hold {
            hold_id: HoldId(hold_id),
            owner: OwnerId(1),
            seats: seats.iter().map(|s| SeatId(*s)).collect(),
            ttl_ms: 100,
        }
    }

    #[test]
    fn driver_mistakes_are_errors() {
        let dup_request = ShardHistory {
            ops: vec![op(1, hold(1, &[1]), None), op(1, hold(2, &[1]), None)],
        };
        assert_eq!(
            dup_request.validate(),
            Err(HistoryError::DuplicateRequest {
                request: RequestId(1)
            })
        );

        let dup_hold = ShardHistory {
            ops: vec![op(1, hold(1, &[1]), None), op(2, hold(1, &[2]), None)],
        };
        assert!(matches!(
            dup_hold.validate(),
            Err(HistoryError::DuplicateHoldId { .. })
        ));

        let early = ShardHistory {
            ops: vec![op(
                1,
                hold(1, &[1]),
                Some((5, Outcome::Refused { at_ms: 1 })),
            )],
        };
        assert!(matches!(
            early.validate(),
            Err(HistoryError::ReturnBeforeCall { index: 0, .. })
        ));

        let mismatch = ShardHistory {
            ops: vec![op(1, hold(1, &[1]), Some((20, Outcome::NotOwner)))],
        };
        assert!(matches!(
            mismatch.validate(),
            Err(HistoryError::OutcomeMismatch { .. })
        ));

        let twice = ShardHistory {
            ops: vec![op(1, hold(1, &[1, 1]), None)],
        };
        assert!(matches!(
            twice.validate(),
            Err(HistoryError::DuplicateSeat { .. })
        ));

        let empty = ShardHistory {
            ops: vec![op(1, Command::Read { seats: vec![] }, None)],
        };
        assert!(matches!(
            empty.validate(),
            Err(HistoryError::NoSeats { .. })
        ));
    }

    #[test]
    fn ops_render_for_reports() {
        let o = op(
            7,
            hold(3, &[1, 2]),
            Some((
                40,
                Outcome::Held {
                    expires_at_ms: 130,
                    at_ms: 30,
                },
            )),
        );
        assert_eq!(
            o.to_string(),
            "r7 [10..40] hold h3 by u1 of [s1,s2] for 100 ms -> held at 30 until 130"
        );
    }
}
