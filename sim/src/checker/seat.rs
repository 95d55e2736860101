//! The sequential specification of one seat (the per-seat [`Model`] the checker searches
//! with): free / held until an expiry / sold, leader-stamped time that never goes back,
//! release by the owner only, idempotent confirm.
//!
//! Ops here are the projections of shard ops onto one seat (see `split`). Time is exact for
//! outcomes that carry `at_ms`; an op whose time is unknown (unknown outcome, or an outcome
//! without `at_ms`) is placed at the earliest time that explains it, and a hold taken at an
//! unknown time keeps the *interval* its taking time may lie in, narrowed by every later
//! observation, so its expiry is judged exactly.
//!
//! Hold records (to answer release/confirm of holds that no longer occupy the seat) are
//! kept only while ops with known outcomes still refer to them: each projected op carries
//! `refs`, how many such ops the seat's history has for its hold, and a record is dropped
//! once that many are linearized. States stay small and equal states meet in the cache.
//!
//! Where the brief leaves the system a choice, the model accepts both answers: a release of
//! an owned hold that expired but was never released may answer `Released` (freeing
//! nothing) or `AlreadyInactive`, and a later confirm of it may then fail as `Expired` or
//! `Released`. Precedence is assumed to be not-found, then not-owner, then inactive.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::history::{BookingId, FailReason, HoldId, SeatView};
use super::wgl::{Model, Operation};

/// A rejection message, built only when one was asked for: the search rejects candidates
/// all the time and never reads why.
macro_rules! why {
    ($explain:expr, $($arg:tt)*) => {
        if $explain { format!($($arg)*) } else { String::new() }
    };
}

/// What a check was about, rendered only for a message.
type What<'a> = &'a dyn Fn() -> String;

/// A shard op as seen by one seat. `refs` and `pending` are derived data that
/// [`SeatModel`]'s [`Model::prepare`] fills in (build ops with 0 and false): how many
/// ops of the history with a known (not relaxed) outcome refer to the same hold, and
/// whether the hold's own request has an unknown outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SeatOp {
    Hold {
        hold: HoldId,
        ttl_ms: u64,
        refs: u32,
    },
    /// `owner_matches`: the releasing owner is the hold's owner (known from its hold op).
    Release {
        hold: HoldId,
        owner_matches: bool,
        refs: u32,
        pending: bool,
    },
    Confirm {
        hold: HoldId,
        booking: BookingId,
        refs: u32,
        pending: bool,
    },
    Read,
}

impl SeatOp {
    /// The hold the op refers to and the seat's count of known-outcome ops referring to it.
    fn hold_ref(&self) -> Option<(HoldId, u32)> {
        match *self {
            SeatOp::Hold { hold, refs, .. }
            | SeatOp::Release { hold, refs, .. }
            | SeatOp::Confirm { hold, refs, .. } => Some((hold, refs)),
            SeatOp::Read => None,
        }
    }
}

/// A shard outcome restricted to one seat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SeatOut {
    /// The hold took this seat.
    Held {
        at_ms: u64,
    },
    /// The hold found this seat not free.
    NotFree {
        at_ms: u64,
    },
    /// The hold found this seat free but another of its seats taken; nothing changed.
    FreeUnchanged {
        at_ms: u64,
    },
    Released {
        at_ms: u64,
    },
    NotFound,
    NotOwner,
    AlreadyInactive,
    Confirmed {
        at_ms: u64,
    },
    Failed {
        reason: FailReason,
        at_ms: u64,
    },
    Saw {
        at_ms: u64,
        view: SeatView,
    },
    /// Refused for a reason outside the seat model; nothing changed.
    Refused {
        at_ms: u64,
    },
    /// Took effect at `at_ms` (unknown when `None`) with an unknown outcome: what
    /// [`Model::relax`] leaves of a held, released or confirmed outcome while shrinking a
    /// counterexample.
    Happened {
        at_ms: Option<u64>,
    },
    /// Took effect at `at_ms` (unknown when `None`) and changed nothing: what
    /// [`Model::relax`] leaves of any other outcome.
    Unchanged {
        at_ms: Option<u64>,
    },
}

impl SeatOut {
    fn at_ms(&self) -> Option<u64> {
        match *self {
            SeatOut::Held { at_ms }
            | SeatOut::NotFree { at_ms }
            | SeatOut::FreeUnchanged { at_ms }
            | SeatOut::Released { at_ms }
            | SeatOut::Confirmed { at_ms }
            | SeatOut::Failed { at_ms, .. }
            | SeatOut::Saw { at_ms, .. }
            | SeatOut::Refused { at_ms } => Some(at_ms),
            SeatOut::NotFound | SeatOut::NotOwner | SeatOut::AlreadyInactive => None,
            SeatOut::Happened { at_ms } | SeatOut::Unchanged { at_ms } => at_ms,
        }
    }
}

/// What occupies the seat.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Cell {
    Free,
    /// Taken at some time in `taken_lo..=taken_hi` (one point when the outcome was known);
    /// held until that time plus `ttl_ms`.
    Held {
        hold: HoldId,
        taken_lo: u64,
        taken_hi: u64,
        ttl_ms: u64,
        refs: u32,
    },
    Sold {
        hold: HoldId,
        booking: BookingId,
    },
}

/// What became of a hold that no longer occupies the seat (or has not yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Fate {
    /// Not taken yet, or still occupying the seat (the cell says which).
    Open,
    Released,
    /// Expired without release; `released` if a release answered `Released` afterwards.
    Expired {
        released: bool,
    },
}

/// What the seat knows of a hold: its fate, and how many of the `refs` known-outcome ops
/// referring to it are linearized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Record {
    fate: Fate,
    seen: u32,
    refs: u32,
}

/// The state of one seat, with what the search still needs to know about its holds.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SeatState {
    /// Every op linearized from now on happens at or after this time.
    floor_ms: u64,
    cell: Cell,
    /// Sorted by hold id; only holds that known-outcome ops still refer to.
    records: Vec<(HoldId, Record)>,
}

/// A hold's status as the next op would see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HoldFate {
    Unborn,
    Current {
        taken_lo: u64,
        taken_hi: u64,
        ttl_ms: u64,
    },
    Sold(BookingId),
    Released,
    Expired {
        released: bool,
    },
}

impl fmt::Display for HoldFate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            HoldFate::Unborn => write!(f, "never taken"),
            HoldFate::Current {
                taken_lo,
                taken_hi,
                ttl_ms,
            } if taken_lo == taken_hi => {
                write!(
                    f,
                    "holding the seat until {}",
                    taken_lo.saturating_add(ttl_ms)
                )
            }
            HoldFate::Current { .. } => write!(f, "holding the seat (outcome unknown)"),
            HoldFate::Sold(booking) => write!(f, "sold to {booking}"),
            HoldFate::Released => write!(f, "released"),
            HoldFate::Expired { released: false } => write!(f, "expired"),
            HoldFate::Expired { released: true } => write!(f, "expired, then released"),
        }
    }
}

type Step = Result<SeatState, String>;

impl SeatState {
    fn fate(&self, hold: HoldId) -> HoldFate {
        match self.cell {
            Cell::Held {
                hold: h,
                taken_lo,
                taken_hi,
                ttl_ms,
                ..
            } if h == hold => {
                return HoldFate::Current {
                    taken_lo,
                    taken_hi,
                    ttl_ms,
                }
            }
            Cell::Sold { hold: h, booking } if h == hold => return HoldFate::Sold(booking),
            _ => {}
        }
        match self.record(hold).map(|r| r.fate) {
            None | Some(Fate::Open) => HoldFate::Unborn,
            Some(Fate::Released) => HoldFate::Released,
            Some(Fate::Expired { released }) => HoldFate::Expired { released },
        }
    }

    fn record(&self, hold: HoldId) -> Option<Record> {
        self.records
            .binary_search_by_key(&hold, |(h, _)| *h)
            .ok()
            .map(|i| self.records[i].1)
    }

    fn put_record(&mut self, hold: HoldId, record: Record) {
        match self.records.binary_search_by_key(&hold, |(h, _)| *h) {
            Ok(i) => self.records[i].1 = record,
            Err(i) => self.records.insert(i, (hold, record)),
        }
    }

    /// Counts one more linearized known-outcome op referring to `hold`.
    fn touch(&mut self, hold: HoldId, refs: u32) {
        let record = self.record(hold).unwrap_or(Record {
            fate: Fate::Open,
            seen: 0,
            refs,
        });
        self.put_record(
            hold,
            Record {
                seen: record.seen + 1,
                refs,
                ..record
            },
        );
    }

    fn set_fate(&mut self, hold: HoldId, fate: Fate, refs: u32) {
        let record = self.record(hold).unwrap_or(Record {
            fate: Fate::Open,
            seen: 0,
            refs,
        });
        self.put_record(
            hold,
            Record {
                fate,
                refs,
                ..record
            },
        );
    }

    /// Forgets the holds no op still to come asks about (the current holder's record stays
    /// until it leaves the seat, so its count survives).
    fn tidy(&mut self) {
        let current = match self.cell {
            Cell::Held { hold, .. } => Some(hold),
            _ => None,
        };
        self.records
            .retain(|(hold, r)| r.seen < r.refs || Some(*hold) == current);
    }

    /// The current holder leaves the seat with `fate`.
    fn vacate(&mut self, fate: Fate) {
        if let Cell::Held { hold, refs, .. } = self.cell {
            self.set_fate(hold, fate, refs);
            self.cell = Cell::Free;
        }
    }

    /// The op happens at the known time `at_ms`.
    fn at(&mut self, at_ms: u64, explain: bool) -> Result<(), String> {
        if at_ms < self.floor_ms {
            return Err(why!(
                explain,
                "its time {at_ms} is earlier than {}, the time of an op that must come before it (time went backwards)",
                self.floor_ms
            ));
        }
        self.floor_ms = at_ms;
        if let Cell::Held {
            taken_hi, ttl_ms, ..
        } = &mut self.cell
        {
            *taken_hi = (*taken_hi).min(at_ms);
            if taken_hi.saturating_add(*ttl_ms) <= at_ms {
                self.vacate(Fate::Expired { released: false });
            }
        }
        Ok(())
    }

    /// The current holder is live at `at_ms`.
    fn require_live(&mut self, at_ms: u64, what: What<'_>, explain: bool) -> Result<(), String> {
        let Cell::Held {
            hold,
            taken_lo,
            taken_hi,
            ttl_ms,
            ..
        } = &mut self.cell
        else {
            return Err(why!(explain, "{}, but {}", what(), self.describe_cell()));
        };
        let lo = (*taken_lo).max((at_ms + 1).saturating_sub(*ttl_ms));
        if lo > *taken_hi {
            return Err(why!(
                explain,
                "{}, but hold {hold} expired by {at_ms}",
                what()
            ));
        }
        *taken_lo = lo;
        Ok(())
    }

    /// The current holder has expired by `at_ms`; it leaves the seat.
    fn require_expired(&mut self, at_ms: u64, what: What<'_>, explain: bool) -> Result<(), String> {
        let Cell::Held {
            hold,
            taken_lo,
            taken_hi,
            ttl_ms,
            ..
        } = self.cell
        else {
            return Err(why!(explain, "{}, but {}", what(), self.describe_cell()));
        };
        let hi = taken_hi.min(at_ms.saturating_sub(ttl_ms));
        if at_ms < ttl_ms || taken_lo > hi {
            return Err(why!(
                explain,
                "{}, but hold {hold} is still live at {at_ms}: {}",
                what(),
                self.describe_cell()
            ));
        }
        self.vacate(Fate::Expired { released: false });
        Ok(())
    }

    fn require_free(&mut self, at_ms: u64, what: What<'_>, explain: bool) -> Result<(), String> {
        match self.cell {
            Cell::Free => Ok(()),
            Cell::Held { .. } => self.require_expired(at_ms, what, explain),
            Cell::Sold { .. } => Err(why!(explain, "{}, but {}", what(), self.describe_cell())),
        }
    }

    fn require_taken(&mut self, at_ms: u64, what: What<'_>, explain: bool) -> Result<(), String> {
        match self.cell {
            Cell::Free => Err(why!(explain, "{}, but the seat is free at {at_ms}", what())),
            Cell::Held { .. } => self.require_live(at_ms, what, explain),
            Cell::Sold { .. } => Ok(()),
        }
    }

    /// The holder has expired at an unknown time: the earliest time that allows it.
    fn expire_at_earliest(&mut self, released: bool) {
        if let Cell::Held {
            taken_lo, ttl_ms, ..
        } = self.cell
        {
            self.floor_ms = self.floor_ms.max(taken_lo.saturating_add(ttl_ms));
            self.vacate(Fate::Expired { released });
        }
    }

    fn describe_cell(&self) -> String {
        match self.cell {
            Cell::Free => "the seat is free".to_owned(),
            Cell::Held {
                hold,
                taken_lo,
                taken_hi,
                ttl_ms,
                ..
            } => describe_holder(hold, taken_lo, taken_hi, ttl_ms),
            Cell::Sold { hold, booking } => {
                format!("the seat is sold to {booking} (through {hold})")
            }
        }
    }
}

fn describe_holder(hold: HoldId, taken_lo: u64, taken_hi: u64, ttl_ms: u64) -> String {
    if taken_lo == taken_hi {
        format!(
            "the seat is held by {hold} (taken at {taken_lo}, expires at {})",
            taken_lo.saturating_add(ttl_ms)
        )
    } else if taken_hi == u64::MAX {
        format!("the seat is held by {hold} (outcome unknown, taken at {taken_lo} or later, for {ttl_ms} ms)")
    } else {
        format!(
            "the seat is held by {hold} (outcome unknown, taken in {taken_lo}..={taken_hi}, expires in {}..={})",
            taken_lo.saturating_add(ttl_ms),
            taken_hi.saturating_add(ttl_ms)
        )
    }
}

impl fmt::Debug for SeatState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{ time >= {}; {}", self.floor_ms, self.describe_cell())?;
        for (hold, record) in &self.records {
            match record.fate {
                Fate::Open => {}
                Fate::Released => write!(f, "; {hold} released")?,
                Fate::Expired { released: false } => write!(f, "; {hold} expired")?,
                Fate::Expired { released: true } => write!(f, "; {hold} expired, then released")?,
            }
        }
        write!(f, " }}")
    }
}

/// The seat model. Stateless: everything an op needs is in the op.
#[derive(Clone, Copy, Debug, Default)]
pub struct SeatModel;

impl SeatModel {
    /// The successors of `state`, or why there are none.
    pub fn try_step(
        &self,
        state: &SeatState,
        op: &SeatOp,
        out: Option<&SeatOut>,
    ) -> Result<Vec<SeatState>, String> {
        step_with(state, op, out, true)
    }
}

/// The successors of `state`; an `Err` carries why there are none when `explain`.
fn step_with(
    state: &SeatState,
    op: &SeatOp,
    out: Option<&SeatOut>,
    explain: bool,
) -> Result<Vec<SeatState>, String> {
    let mut next = match out {
        None | Some(SeatOut::Happened { .. } | SeatOut::Unchanged { .. }) => {
            let mut next = match out {
                Some(SeatOut::Happened { at_ms }) => happened(state, op, *at_ms)?,
                Some(SeatOut::Unchanged { at_ms: Some(at_ms) }) => {
                    let mut n = state.clone();
                    n.at(*at_ms, explain)?;
                    vec![n]
                }
                Some(SeatOut::Unchanged { at_ms: None }) => vec![state.clone()],
                _ => unknown_effects(state, op, explain)?,
            };
            next.iter_mut().for_each(SeatState::tidy);
            return Ok(next);
        }
        Some(out) => vec![known_outcome(state, op, out, explain)?],
    };
    for n in &mut next {
        if let Some((hold, refs)) = op.hold_ref() {
            n.touch(hold, refs);
        }
        n.tidy();
    }
    Ok(next)
}

impl Model for SeatModel {
    type State = SeatState;
    type Op = SeatOp;
    type Out = SeatOut;

    /// Counts known references per hold, marks holds whose request has an unknown outcome,
    /// and orders every hold's creation after the answers that say it does not exist yet.
    fn prepare(&self, history: &mut [Operation<SeatOp, SeatOut>]) -> Vec<(usize, usize)> {
        let mut refs: BTreeMap<HoldId, u32> = BTreeMap::new();
        let mut pending: BTreeSet<HoldId> = BTreeSet::new();
        let mut hold_op: BTreeMap<HoldId, usize> = BTreeMap::new();
        let mut not_found: Vec<(usize, HoldId)> = Vec::new();
        for (i, o) in history.iter().enumerate() {
            if let SeatOp::Hold { hold, .. } = o.op {
                // Linearized, this op surely created the hold: an unknown outcome is only
                // linearized for its effect.
                if matches!(
                    o.ret.as_ref().map(|r| r.out),
                    None | Some(SeatOut::Held { .. })
                ) {
                    hold_op.insert(hold, i);
                }
                if o.ret.is_none() {
                    pending.insert(hold);
                }
            }
            // Relaxed outcomes accept any fate, so they keep no record alive.
            if o.ret.as_ref().is_some_and(|r| {
                !matches!(r.out, SeatOut::Happened { .. } | SeatOut::Unchanged { .. })
            }) {
                if let Some((hold, _)) = o.op.hold_ref() {
                    *refs.entry(hold).or_default() += 1;
                }
            }
            match (o.op, o.ret.as_ref().map(|r| r.out)) {
                (SeatOp::Release { hold, .. }, Some(SeatOut::NotFound))
                | (
                    SeatOp::Confirm { hold, .. },
                    Some(SeatOut::Failed {
                        reason: FailReason::NotFound,
                        ..
                    }),
                ) => not_found.push((i, hold)),
                _ => {}
            }
        }
        for o in history.iter_mut() {
            match &mut o.op {
                SeatOp::Hold { hold, refs: r, .. } => *r = refs.get(hold).copied().unwrap_or(0),
                SeatOp::Release {
                    hold,
                    refs: r,
                    pending: p,
                    ..
                }
                | SeatOp::Confirm {
                    hold,
                    refs: r,
                    pending: p,
                    ..
                } => {
                    *r = refs.get(hold).copied().unwrap_or(0);
                    *p = pending.contains(hold);
                }
                SeatOp::Read => {}
            }
        }
        not_found
            .into_iter()
            .filter_map(|(i, hold)| Some((i, *hold_op.get(&hold)?)))
            .collect()
    }

    fn init(&self) -> SeatState {
        SeatState {
            floor_ms: 0,
            cell: Cell::Free,
            records: Vec::new(),
        }
    }

    fn step(&self, state: &SeatState, op: &SeatOp, out: Option<&SeatOut>) -> Vec<SeatState> {
        step_with(state, op, out, false).unwrap_or_default()
    }

    fn subsumes(&self, a: &SeatState, b: &SeatState) -> bool {
        let cells = match (a.cell, b.cell) {
            (
                Cell::Held {
                    hold: ha,
                    taken_lo: la,
                    taken_hi: ua,
                    ttl_ms: ta,
                    refs: ra,
                },
                Cell::Held {
                    hold: hb,
                    taken_lo: lb,
                    taken_hi: ub,
                    ttl_ms: tb,
                    refs: rb,
                },
            ) => ha == hb && ta == tb && ra == rb && la <= lb && ua >= ub,
            (x, y) => x == y,
        };
        cells && a.floor_ms <= b.floor_ms && a.records == b.records
    }

    /// Keeps the time and, for outcomes that changed nothing, that they changed nothing.
    fn relax(&self, _op: &SeatOp, out: &SeatOut) -> Option<SeatOut> {
        let at_ms = out.at_ms();
        Some(match out {
            SeatOut::Held { .. } | SeatOut::Released { .. } | SeatOut::Confirmed { .. } => {
                SeatOut::Happened { at_ms }
            }
            _ => SeatOut::Unchanged { at_ms },
        })
    }

    fn explain_rejection(&self, state: &SeatState, op: &SeatOp, out: Option<&SeatOut>) -> String {
        match self.try_step(state, op, out) {
            Err(reason) => reason,
            Ok(_) => "accepted".to_owned(),
        }
    }
}

fn known_outcome(state: &SeatState, op: &SeatOp, out: &SeatOut, explain: bool) -> Step {
    let mut n = state.clone();
    match (*op, *out) {
        (_, SeatOut::Refused { at_ms }) => n.at(at_ms, explain)?,
        (SeatOp::Hold { hold, ttl_ms, refs }, SeatOut::Held { at_ms }) => {
            if n.fate(hold) != HoldFate::Unborn {
                return Err(why!(explain, "hold {hold} already counts as taken earlier"));
            }
            n.at(at_ms, explain)?;
            n.require_free(
                at_ms,
                &|| format!("{hold} took the seat at {at_ms}"),
                explain,
            )?;
            n.cell = Cell::Held {
                hold,
                taken_lo: at_ms,
                taken_hi: at_ms,
                ttl_ms,
                refs,
            };
        }
        (SeatOp::Hold { hold, .. }, SeatOut::NotFree { at_ms }) => {
            n.at(at_ms, explain)?;
            n.require_taken(
                at_ms,
                &|| format!("{hold} found the seat taken at {at_ms}"),
                explain,
            )?;
        }
        (SeatOp::Hold { hold, .. }, SeatOut::FreeUnchanged { at_ms }) => {
            n.at(at_ms, explain)?;
            n.require_free(
                at_ms,
                &|| format!("{hold} found the seat free at {at_ms}"),
                explain,
            )?;
        }
        (SeatOp::Release { hold, .. }, SeatOut::NotFound) => match n.fate(hold) {
            HoldFate::Unborn => {}
            fate => {
                return Err(why!(
                    explain,
                    "release of {hold} answered not-found, but the hold exists ({fate})"
                ))
            }
        },
        (
            SeatOp::Release {
                hold,
                owner_matches,
                pending,
                ..
            },
            SeatOut::NotOwner,
        ) => {
            if n.fate(hold) == HoldFate::Unborn && !pending {
                return Err(why!(
                    explain,
                    "release of {hold} answered not-owner, but the hold does not exist yet"
                ));
            }
            if owner_matches {
                return Err(why!(
                    explain,
                    "release of {hold} answered not-owner, but the hold's owner asked"
                ));
            }
        }
        (
            SeatOp::Release {
                hold,
                owner_matches,
                refs,
                pending,
            },
            SeatOut::AlreadyInactive,
        ) => match n.fate(hold) {
            HoldFate::Unborn if pending && owner_matches => assume_expired(&mut n, hold, refs),
            HoldFate::Current { .. } => {
                check_owned(&n, hold, owner_matches, "already-inactive", explain)?;
                n.expire_at_earliest(false);
            }
            _ => check_owned(&n, hold, owner_matches, "already-inactive", explain)?,
        },
        (
            SeatOp::Release {
                hold,
                owner_matches,
                refs,
                ..
            },
            SeatOut::Released { at_ms },
        ) => {
            n.at(at_ms, explain)?;
            check_owned(&n, hold, owner_matches, "released", explain)?;
            match n.fate(hold) {
                HoldFate::Current { taken_lo, taken_hi, ttl_ms } => {
                    let may_have_expired = at_ms >= ttl_ms && taken_lo <= taken_hi.min(at_ms - ttl_ms);
                    if may_have_expired {
                        n.vacate(Fate::Expired { released: true });
                    } else {
                        n.require_live(at_ms, &|| "released".to_owned(), explain)?;
                        n.vacate(Fate::Released);
                    }
                }
                HoldFate::Expired { released: false } => n.set_fate(hold, Fate::Expired { released: true }, refs),
                fate => {
                    return Err(why!(
                        explain,
                        "release of {hold} answered released at {at_ms}, but the hold is inactive ({fate})"
                    ))
                }
            }
        }
        (SeatOp::Confirm { hold, booking, .. }, SeatOut::Confirmed { at_ms }) => {
            n.at(at_ms, explain)?;
            match n.fate(hold) {
                HoldFate::Sold(b) if b == booking => {}
                HoldFate::Current { .. } => {
                    n.require_live(at_ms, &|| format!("confirm of {hold} as {booking} succeeded at {at_ms}"), explain)?;
                    n.cell = Cell::Sold { hold, booking };
                }
                fate => {
                    return Err(why!(
                        explain,
                        "confirm of {hold} as {booking} succeeded at {at_ms}, but the hold is not live ({fate})"
                    ))
                }
            }
        }
        (
            SeatOp::Confirm {
                hold,
                booking,
                refs,
                pending,
            },
            SeatOut::Failed { reason, at_ms },
        ) => {
            n.at(at_ms, explain)?;
            let fate = n.fate(hold);
            let fits = match (fate, reason) {
                (HoldFate::Unborn, FailReason::Expired) if pending => {
                    assume_expired(&mut n, hold, refs);
                    true
                }
                (HoldFate::Current { .. }, FailReason::Expired) => {
                    n.require_expired(
                        at_ms,
                        &|| format!("confirm of {hold} failed as expired at {at_ms}"),
                        explain,
                    )?;
                    true
                }
                (HoldFate::Expired { .. }, FailReason::Expired)
                | (
                    HoldFate::Released | HoldFate::Expired { released: true },
                    FailReason::Released,
                )
                | (HoldFate::Unborn, FailReason::NotFound) => true,
                (HoldFate::Sold(b), FailReason::AlreadySold) => b != booking,
                _ => false,
            };
            if !fits {
                return Err(why!(
                    explain,
                    "confirm of {hold} as {booking} failed ({reason:?}) at {at_ms}, but the hold is {fate}"
                ));
            }
        }
        (SeatOp::Read, SeatOut::Saw { at_ms, view }) => {
            n.at(at_ms, explain)?;
            let what = || format!("a read at {at_ms} saw the seat {view}");
            match view {
                SeatView::Free => n.require_free(at_ms, &what, explain)?,
                SeatView::Held { hold_id } => match n.cell {
                    Cell::Held { hold, .. } if hold == hold_id => {
                        n.require_live(at_ms, &what, explain)?
                    }
                    _ => return Err(why!(explain, "{}, but {}", what(), n.describe_cell())),
                },
                SeatView::Sold { booking_id } => match n.cell {
                    Cell::Sold { booking, .. } if booking == booking_id => {}
                    _ => return Err(why!(explain, "{}, but {}", what(), n.describe_cell())),
                },
            }
        }
        (op, out) => return Err(why!(explain, "outcome {out:?} does not fit {op:?}")),
    }
    Ok(n)
}

/// An op that took effect at `at_ms` (or an unknown time) with an unknown outcome: either
/// it changed nothing, or it had one of the effects its command can have then.
fn happened(state: &SeatState, op: &SeatOp, at_ms: Option<u64>) -> Result<Vec<SeatState>, String> {
    let Some(at_ms) = at_ms else {
        let mut next = unknown_effects(state, op, false).unwrap_or_default();
        next.push(state.clone());
        return Ok(next);
    };
    let mut unchanged = state.clone();
    unchanged.at(at_ms, false)?;
    let mut next = Vec::new();
    match *op {
        SeatOp::Hold { hold, ttl_ms, refs } => {
            let mut took = unchanged.clone();
            if took.fate(hold) == HoldFate::Unborn
                && took.require_free(at_ms, &String::new, false).is_ok()
            {
                took.cell = Cell::Held {
                    hold,
                    taken_lo: at_ms,
                    taken_hi: at_ms,
                    ttl_ms,
                    refs,
                };
                next.push(took);
            }
        }
        SeatOp::Release {
            hold,
            owner_matches: true,
            refs,
            ..
        } => match unchanged.fate(hold) {
            HoldFate::Current { .. } => {
                let mut released = unchanged.clone();
                if released.require_live(at_ms, &String::new, false).is_ok() {
                    released.vacate(Fate::Released);
                    next.push(released);
                }
                let mut late = unchanged.clone();
                if late.require_expired(at_ms, &String::new, false).is_ok() {
                    late.set_fate(hold, Fate::Expired { released: true }, refs);
                    next.push(late);
                }
            }
            HoldFate::Expired { released: false } => {
                let mut late = unchanged.clone();
                late.set_fate(hold, Fate::Expired { released: true }, refs);
                next.push(late);
            }
            _ => {}
        },
        SeatOp::Confirm { hold, booking, .. } => {
            let mut sold = unchanged.clone();
            if matches!(sold.fate(hold), HoldFate::Current { .. })
                && sold.require_live(at_ms, &String::new, false).is_ok()
            {
                sold.cell = Cell::Sold { hold, booking };
                next.push(sold);
            }
        }
        SeatOp::Release { .. } | SeatOp::Read => {}
    }
    next.push(unchanged);
    Ok(next)
}

/// An answer says a hold whose own request has an unknown outcome existed and expired.
/// The search does not place that hold in the seat's past (that would tie the answer to
/// every gap the seat ever had, and blow the search up); it only records that the hold has
/// taken effect and ended, so it cannot take effect later. Approximation: a system that
/// invents such a hold is not caught.
fn assume_expired(state: &mut SeatState, hold: HoldId, refs: u32) {
    state.set_fate(hold, Fate::Expired { released: false }, refs);
}

/// Release answers other than not-found and not-owner need an existing hold of the asker.
fn check_owned(
    state: &SeatState,
    hold: HoldId,
    owner_matches: bool,
    answer: &str,
    explain: bool,
) -> Result<(), String> {
    if state.fate(hold) == HoldFate::Unborn {
        return Err(why!(
            explain,
            "release of {hold} answered {answer}, but the hold does not exist"
        ));
    }
    if !owner_matches {
        return Err(why!(
            explain,
            "release of {hold} answered {answer}, but the asker does not own the hold (not-owner expected)"
        ));
    }
    Ok(())
}

/// The states an op with unknown outcome can lead to *by changing something*; leaving the
/// op out covers every outcome that changed nothing.
fn unknown_effects(
    state: &SeatState,
    op: &SeatOp,
    explain: bool,
) -> Result<Vec<SeatState>, String> {
    let mut n = state.clone();
    match *op {
        SeatOp::Hold { hold, ttl_ms, refs } => {
            if n.fate(hold) != HoldFate::Unborn {
                return Err(why!(explain, "hold {hold} already counts as taken earlier"));
            }
            match n.cell {
                Cell::Sold { .. } => {
                    return Err(why!(
                        explain,
                        "hold {hold} cannot have taken the seat: {}",
                        n.describe_cell()
                    ))
                }
                Cell::Free => {}
                Cell::Held { .. } => n.expire_at_earliest(false),
            }
            n.cell = Cell::Held {
                hold,
                taken_lo: n.floor_ms,
                taken_hi: u64::MAX,
                ttl_ms,
                refs,
            };
            Ok(vec![n])
        }
        SeatOp::Release {
            hold,
            owner_matches,
            refs,
            ..
        } => {
            if !owner_matches {
                return Err(why!(
                    explain,
                    "a release of {hold} by someone else changes nothing"
                ));
            }
            match n.fate(hold) {
                HoldFate::Current {
                    taken_hi, ttl_ms, ..
                } => {
                    let mut expired = n.clone();
                    expired.expire_at_earliest(true);
                    if taken_hi.saturating_add(ttl_ms) > n.floor_ms {
                        n.vacate(Fate::Released);
                        Ok(vec![expired, n])
                    } else {
                        Ok(vec![expired])
                    }
                }
                HoldFate::Expired { released: false } => {
                    n.set_fate(hold, Fate::Expired { released: true }, refs);
                    Ok(vec![n])
                }
                fate => Err(why!(
                    explain,
                    "a release of {hold} changes nothing: the hold is {fate}"
                )),
            }
        }
        SeatOp::Confirm { hold, booking, .. } => match n.fate(hold) {
            HoldFate::Current {
                taken_hi, ttl_ms, ..
            } if taken_hi.saturating_add(ttl_ms) > n.floor_ms => {
                n.cell = Cell::Sold { hold, booking };
                Ok(vec![n])
            }
            fate => Err(why!(
                explain,
                "a confirm of {hold} changes nothing: the hold is {fate} at {}",
                n.floor_ms
            )),
        },
        SeatOp::Read => Err("a read changes nothing".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: HoldId = HoldId(1);
    const H2: HoldId = HoldId(2);
    const B1: BookingId = BookingId(1);

    fn run(ops: &[(SeatOp, Option<SeatOut>)]) -> Result<SeatState, String> {
        let mut state = SeatModel.init();
        for (op, out) in ops {
            let mut next = SeatModel.try_step(&state, op, out.as_ref())?;
            state = next.pop().expect("a successor");
        }
        Ok(state)
    }

    fn hold(hold: HoldId, refs: u32) -> SeatOp {
        SeatOp::Hold {
            hold,
            ttl_ms: 100,
            refs,
        }
    }

    fn read(at_ms: u64, view: SeatView) -> Option<SeatOut> {
        Some(SeatOut::Saw { at_ms, view })
    }

    #[test]
    fn a_hold_is_honoured_until_expiry_and_not_after() {
        let held = (hold(H1, 1), Some(SeatOut::Held { at_ms: 1_000 }));
        let h1 = SeatView::Held { hold_id: H1 };
        assert!(run(&[held, (SeatOp::Read, read(1_099, h1))]).is_ok());
        assert!(run(&[held, (SeatOp::Read, read(1_100, h1))]).is_err());
        assert!(run(&[held, (SeatOp::Read, read(1_100, SeatView::Free))]).is_ok());
        let err = run(&[held, (SeatOp::Read, read(1_099, SeatView::Free))]).unwrap_err();
        assert!(
            err.contains("held by h1 (taken at 1000, expires at 1100)"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_hold_keeps_an_interval_of_taking_times() {
        let unknown = (hold(H1, 0), None);
        let h1 = SeatView::Held { hold_id: H1 };
        // Held at 1000 and free at 1050: taken in 901..=950.
        let s = run(&[
            unknown,
            (SeatOp::Read, read(1_000, h1)),
            (SeatOp::Read, read(1_050, SeatView::Free)),
        ]);
        assert!(s.is_ok(), "{s:?}");
        // Held at 1000 and at 1040, then free at 1050: taken in 941..=950.
        assert!(run(&[
            unknown,
            (SeatOp::Read, read(1_000, h1)),
            (SeatOp::Read, read(1_040, h1)),
            (SeatOp::Read, read(1_050, SeatView::Free)),
        ])
        .is_ok());
        // Held at 1000, free at 1010, held again at 1020: impossible.
        let err = run(&[
            unknown,
            (SeatOp::Read, read(1_000, h1)),
            (SeatOp::Read, read(1_010, SeatView::Free)),
            (SeatOp::Read, read(1_020, h1)),
        ])
        .unwrap_err();
        assert!(err.contains("the seat is free"), "{err}");
    }

    #[test]
    fn confirm_is_idempotent_and_final() {
        let confirm = SeatOp::Confirm {
            hold: H1,
            booking: B1,
            refs: 3,
            pending: false,
        };
        let s = run(&[
            (hold(H1, 3), Some(SeatOut::Held { at_ms: 10 })),
            (confirm, Some(SeatOut::Confirmed { at_ms: 50 })),
            (confirm, Some(SeatOut::Confirmed { at_ms: 500 })),
            (SeatOp::Read, read(600, SeatView::Sold { booking_id: B1 })),
        ])
        .expect("linearizable");
        assert!(
            s.records.is_empty(),
            "records of finished holds are dropped: {s:?}"
        );
        let resell = run(&[
            (hold(H1, 2), Some(SeatOut::Held { at_ms: 10 })),
            (
                SeatOp::Confirm {
                    hold: H1,
                    booking: B1,
                    refs: 2,
                    pending: false,
                },
                Some(SeatOut::Confirmed { at_ms: 50 }),
            ),
            (hold(H2, 1), Some(SeatOut::Held { at_ms: 500 })),
        ]);
        assert!(resell.unwrap_err().contains("sold to b1"));
    }

    #[test]
    fn release_answers_follow_the_hold() {
        let mine = |refs| SeatOp::Release {
            hold: H1,
            owner_matches: true,
            refs,
            pending: false,
        };
        let theirs = |refs| SeatOp::Release {
            hold: H1,
            owner_matches: false,
            refs,
            pending: false,
        };
        assert!(run(&[
            (mine(2), Some(SeatOut::NotFound)),
            (hold(H1, 2), Some(SeatOut::Held { at_ms: 1 }))
        ])
        .is_ok());
        assert!(run(&[
            (hold(H1, 2), Some(SeatOut::Held { at_ms: 1 })),
            (mine(2), Some(SeatOut::NotFound))
        ])
        .is_err());
        assert!(run(&[
            (hold(H1, 2), Some(SeatOut::Held { at_ms: 1 })),
            (theirs(2), Some(SeatOut::NotOwner))
        ])
        .is_ok());
        assert!(run(&[
            (hold(H1, 2), Some(SeatOut::Held { at_ms: 1 })),
            (mine(2), Some(SeatOut::NotOwner))
        ])
        .is_err());
        // Released while live frees the seat; a second release is inactive.
        let s = run(&[
            (hold(H1, 3), Some(SeatOut::Held { at_ms: 1 })),
            (mine(3), Some(SeatOut::Released { at_ms: 5 })),
            (mine(3), Some(SeatOut::AlreadyInactive)),
            (hold(H2, 1), Some(SeatOut::Held { at_ms: 6 })),
        ]);
        assert!(s.is_ok(), "{s:?}");
        // Already-inactive on a live hold moves time to its expiry.
        let err = run(&[
            (hold(H1, 2), Some(SeatOut::Held { at_ms: 1 })),
            (mine(2), Some(SeatOut::AlreadyInactive)),
            (SeatOp::Read, read(50, SeatView::Free)),
        ])
        .unwrap_err();
        assert!(err.contains("time went backwards"), "{err}");
    }

    #[test]
    fn unknown_ops_only_offer_their_effects() {
        let s = run(&[(hold(H1, 1), Some(SeatOut::Held { at_ms: 1 }))]).expect("held");
        let confirm = SeatOp::Confirm {
            hold: H2,
            booking: B1,
            refs: 0,
            pending: false,
        };
        assert!(
            SeatModel.try_step(&s, &confirm, None).is_err(),
            "confirm of another hold changes nothing"
        );
        let release = SeatOp::Release {
            hold: H1,
            owner_matches: true,
            refs: 0,
            pending: false,
        };
        assert_eq!(
            SeatModel.try_step(&s, &release, None).map(|v| v.len()),
            Ok(2),
            "released live, or after expiry"
        );
        assert_eq!(
            SeatModel.try_step(&s, &hold(H2, 0), None).map(|v| v.len()),
            Ok(1),
            "after h1 expires"
        );
    }
}
