//! What the checker tells a simulation run: violations of named invariants, seats whose
//! history is not linearizable (with a shrunk counterexample), seats it could not decide,
//! and a plain-text rendering for test output. Everything is sorted, so a seed's report is
//! byte-for-byte reproducible.

use std::fmt;

use super::history::{RequestId, SeatId};
use super::wgl::Exhausted;

/// Most violations of one kind a report lists; the rest are counted in one last entry.
pub const MAX_VIOLATIONS_PER_KIND: usize = 50;

/// Which rule a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViolationKind {
    /// An outcome that contradicts its own command (a wrong expiry, an `unavailable` list
    /// naming seats the hold did not ask for, a read missing a seat, an answer about a hold
    /// no request ever created).
    MalformedOutcome,
    /// An op that started after another finished answered an earlier `at_ms`.
    TimeWentBackwards,
    /// A seat sold to two different bookings.
    DoubleSale,
    /// An acknowledged sale missing from a replica's final state.
    LostSale,
    /// An acknowledged, unreleased hold whose seat was taken, sold or seen otherwise before
    /// it expired.
    LostHold,
    /// A hold first confirmed at or after its expiry.
    ConfirmAfterExpiry,
}

/// One broken rule, with the requests that show it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    pub kind: ViolationKind,
    pub seat: Option<SeatId>,
    pub requests: Vec<RequestId>,
    pub detail: String,
}

/// Sorts violations and keeps at most [`MAX_VIOLATIONS_PER_KIND`] of each kind.
pub(crate) fn tidy(mut violations: Vec<Violation>) -> Vec<Violation> {
    violations.sort();
    violations.dedup();
    let mut out: Vec<Violation> = Vec::with_capacity(violations.len());
    let mut i = 0;
    while i < violations.len() {
        let kind = violations[i].kind;
        let n_kind = violations[i..]
            .iter()
            .take_while(|v| v.kind == kind)
            .count();
        out.extend(
            violations[i..i + n_kind.min(MAX_VIOLATIONS_PER_KIND)]
                .iter()
                .cloned(),
        );
        if n_kind > MAX_VIOLATIONS_PER_KIND {
            out.push(Violation {
                kind,
                seat: None,
                requests: Vec::new(),
                detail: format!(
                    "{} more violations of this kind left out",
                    n_kind - MAX_VIOLATIONS_PER_KIND
                ),
            });
        }
        i += n_kind;
    }
    out
}

/// A seat whose history has no linearization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeatFailure {
    pub seat: SeatId,
    /// Requests whose outcomes on this seat cannot all hold, whatever the other requests
    /// of the failing prefix answered (they still happened, at their recorded times);
    /// sorted by invocation. Empty when not shrunk.
    pub core: Vec<RequestId>,
    pub core_is_minimal: bool,
    /// The shortest failing prefix of the seat's history ends at this real time.
    pub prefix_end_ns: u64,
    /// Ops of the seat's history invoked by then.
    pub prefix_len: usize,
    /// The counterexample in words: the core ops, the longest order found, why nothing
    /// can follow it.
    pub explanation: String,
}

/// The overall verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Linearizable per seat and no invariant broken.
    Ok,
    /// Something is broken; see the report.
    Violated,
    /// Nothing broken found, but some seat exceeded the search budget.
    Undecided,
}

/// The result of checking one shard's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardReport {
    pub n_ops: usize,
    pub n_seats: usize,
    pub violations: Vec<Violation>,
    pub seat_failures: Vec<SeatFailure>,
    pub undecided: Vec<(SeatId, Exhausted)>,
}

impl ShardReport {
    pub fn verdict(&self) -> Verdict {
        if !self.violations.is_empty() || !self.seat_failures.is_empty() {
            Verdict::Violated
        } else if !self.undecided.is_empty() {
            Verdict::Undecided
        } else {
            Verdict::Ok
        }
    }

    pub fn is_ok(&self) -> bool {
        self.verdict() == Verdict::Ok
    }

    /// The failing seats, in order.
    pub fn failing_seats(&self) -> Vec<SeatId> {
        self.seat_failures.iter().map(|f| f.seat).collect()
    }

    /// Whether some violation of `kind` was found.
    pub fn has(&self, kind: ViolationKind) -> bool {
        self.violations.iter().any(|v| v.kind == kind)
    }
}

impl fmt::Display for ShardReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:?}: {} ops over {} seats",
            self.verdict(),
            self.n_ops,
            self.n_seats
        )?;
        for v in &self.violations {
            write!(f, "violation {:?}", v.kind)?;
            if let Some(seat) = v.seat {
                write!(f, " on {seat}")?;
            }
            if !v.requests.is_empty() {
                write!(f, " by")?;
                for r in &v.requests {
                    write!(f, " {r}")?;
                }
            }
            writeln!(f, ": {}", v.detail)?;
        }
        for failure in &self.seat_failures {
            write!(f, "{}", failure.explanation)?;
        }
        for (seat, exhausted) in &self.undecided {
            writeln!(f, "seat {seat}: undecided ({exhausted:?})")?;
        }
        Ok(())
    }
}
