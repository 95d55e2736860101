//! The history checker: decides whether what the simulated clients saw of one shard is
//! explainable by the replicated seat inventory, and names what broke when it is not.
//!
//! [`check_shard`] is the entry point: it validates the driver's [`ShardHistory`], splits
//! it per seat ([`split`]), runs the generic Wing–Gong/Lowe search ([`wgl`]) with the seat
//! model ([`seat`]) on each seat, checks cross-seat time order and the named invariants
//! ([`invariants`]), and returns a sorted [`ShardReport`]. [`queue::check_room`] judges a
//! waiting room from its audit. Pure: no I/O, no clock, no
//! randomness, no hash-map iteration in anything it returns.

pub mod history;
pub mod invariants;
pub mod queue;
pub mod reference;
pub mod report;
pub mod seat;
pub mod split;
pub mod wgl;

#[cfg(test)]
mod random_tests;
#[cfg(test)]
mod scenario_tests;

pub use history::{
    BookingId, Command, FailReason, FinalSeat, HistoryError, HoldId, Op, Outcome, OwnerId,
    ReplicaSeats, RequestId, Response, SeatId, SeatView, ShardHistory,
};
pub use invariants::check_invariants;
pub use reference::ReferenceShard;
pub use report::{SeatFailure, ShardReport, Verdict, Violation, ViolationKind};
pub use wgl::{
    check, CheckLimits, CheckResult, Counterexample, Exhausted, Model, Operation, Return,
};

/// Checks one shard's history: per-seat linearizability, cross-seat time order, the named
/// invariants, and the replicas' `finals` (pass `&[]` when there are none).
pub fn check_shard(
    history: &ShardHistory,
    finals: &[ReplicaSeats],
    limits: &CheckLimits,
) -> Result<ShardReport, HistoryError> {
    let split = split::split_by_seat(history)?;
    let verdicts = split::check_seats(history, &split, limits)?;
    let mut violations = split.violations.clone();
    violations.extend(check_invariants(history, finals));
    Ok(ShardReport {
        n_ops: history.ops.len(),
        n_seats: split.seats.len(),
        violations: report::tidy(violations),
        seat_failures: verdicts.failures,
        undecided: verdicts.undecided,
    })
}
