//! Best-available holds: the per-row index of an event's layout and the choice of seats.
//!
//! The choice is the state machine's, so every replica makes the same one: sections in the
//! venue's order (the order their first seat was registered in), rows in order (likewise
//! within a section), in a row the block nearest its middle; adjacent (one row, consecutive
//! numbers) unless the request allows a split. **The orphan rule** (seats.io's): a choice
//! that leaves a single free seat alone between taken seats or a row's end is made only when
//! no choice in scope leaves none.
//!
//! Cost: rows are skipped by their free count (`row_taken`, kept by every slot write, plus
//! the seats of holds that expired but were not swept yet, found through the expiry index),
//! so an adjacent pick reads one count per row and scans only rows with enough free seats;
//! it stops at the first row with a clean block. Only a request that fails, or a split, scans
//! every row with free seats.

use std::collections::BTreeMap;
use std::ops::Range;

use super::inventory::HoldPlan;
use super::mutants::{active, Mutant};
use super::SharedId;
use super::{Checked, EventState, Layout, Machine, Slot};
use crate::types::*;

/// A run of consecutive free seats in a row: positions `start..start + len` of its seats.
#[derive(Debug, Clone, Copy)]
struct Run {
    row: usize,
    start: usize,
    len: usize,
}

/// What the picker sees of an event at one time: which seats are free, and how many per row.
struct FreeView<'a> {
    machine: &'a Machine,
    event: &'a EventState,
    now_ms: u64,
    /// Per row: seats still marked held by holds that expired but were not swept yet.
    expired: BTreeMap<usize, u32>,
    /// The broken picker the simulator must catch: held seats count as free.
    mutant: bool,
}

impl<'a> FreeView<'a> {
    fn new(machine: &'a Machine, event: &'a EventState, now_ms: u64) -> FreeView<'a> {
        let mut expired = BTreeMap::new();
        for (_, hold_id) in machine
            .expiring
            .range(..(now_ms.saturating_add(1), SharedId::from("")))
        {
            let Some(hold) = machine.holds.get(hold_id) else {
                continue;
            };
            if hold.event_id != event.meta.event_id {
                continue;
            }
            for seat_id in &hold.seat_ids {
                if let Some(idx) = event.layout().index_of(seat_id) {
                    if event.slot(idx) == Slot::Held(hold_id) {
                        *expired.entry(event.layout().row_of(idx)).or_insert(0) += 1;
                    }
                }
            }
        }
        FreeView {
            machine,
            event,
            now_ms,
            expired,
            mutant: active(Mutant::PickHeldSeats),
        }
    }

    fn layout(&self) -> &Layout {
        self.event.layout()
    }

    /// Free seats in `row`, from the counts alone.
    fn free_in_row(&self, row: usize) -> usize {
        let n_seats = self.layout().row_seats(row).len();
        if self.mutant {
            return n_seats;
        }
        let expired = self.expired.get(&row).copied().unwrap_or(0);
        n_seats - self.event.row_taken[row] as usize + expired as usize
    }

    fn is_free(&self, idx: usize) -> bool {
        let slot = self.event.slot(idx);
        if self.mutant {
            return !matches!(slot, Slot::Sold(_));
        }
        self.machine.slot_is_free(slot, self.now_ms)
    }

    fn number(&self, row: usize, position: usize) -> u32 {
        self.layout().number(self.idx(row, position))
    }

    fn idx(&self, row: usize, position: usize) -> usize {
        self.layout().row_seats(row)[position] as usize
    }

    /// The row's maximal runs of free seats with consecutive numbers, in seat order.
    fn runs(&self, row: usize) -> Vec<Run> {
        let n = self.layout().row_seats(row).len();
        let mut runs = Vec::new();
        let mut current: Option<Run> = None;
        for position in 0..n {
            if !self.is_free(self.idx(row, position)) {
                runs.extend(current.take());
                continue;
            }
            match &mut current {
                Some(run)
                    if self.number(row, position)
                        == self.number(row, position - 1).saturating_add(1) =>
                {
                    run.len += 1
                }
                _ => {
                    runs.extend(current.take());
                    current = Some(Run {
                        row,
                        start: position,
                        len: 1,
                    });
                }
            }
        }
        runs.extend(current);
        runs
    }

    /// How far a block of the row's positions `first..=last` is from the row's middle
    /// (doubled, so it stays an integer), then its first number: smaller is better.
    fn distance(&self, row: usize, first: usize, last: usize) -> (u64, u32) {
        let sum = u64::from(self.number(row, first)) + u64::from(self.number(row, last));
        (
            sum.abs_diff(self.layout().row_middle2(row)),
            self.number(row, first),
        )
    }

    /// The best block of `n` seats inside `run`: nearest the row's middle among those that
    /// leave no single seat alone at either side (or among all when `clean` is false).
    fn block_in(&self, run: Run, n: usize, clean: bool) -> Option<((u64, u32), usize)> {
        if n == 0 || run.len < n {
            return None;
        }
        (0..=run.len - n)
            .filter(|&left| !clean || (left != 1 && run.len - n - left != 1))
            .map(|left| {
                let first = run.start + left;
                (self.distance(run.row, first, first + n - 1), first)
            })
            .min()
    }

    /// The first row (in order) with a clean block of `n`, and the first with any block.
    fn adjacent(&self, rows: Range<usize>, n: usize) -> (Option<Vec<usize>>, Option<Vec<usize>>) {
        let mut any: Option<Vec<usize>> = None;
        for row in rows {
            if self.free_in_row(row) < n {
                continue;
            }
            let runs = self.runs(row);
            let best = |clean| {
                runs.iter()
                    .filter_map(|&run| self.block_in(run, n, clean))
                    .min()
                    .map(|(_, first)| (first..first + n).map(|p| self.idx(row, p)).collect())
            };
            if let Some(block) = best(true) {
                return (Some(block), any);
            }
            if any.is_none() {
                any = best(false);
            }
        }
        (None, any)
    }

    /// Every free run of `rows`, rows in order and runs in a row nearest its middle first.
    fn runs_by_preference(&self, rows: Range<usize>) -> Vec<Run> {
        let mut all = Vec::new();
        for row in rows {
            if self.free_in_row(row) == 0 {
                continue;
            }
            let mut runs = self.runs(row);
            runs.sort_by_key(|run| self.distance(row, run.start, run.start + run.len - 1));
            all.extend(runs);
        }
        all
    }

    /// `n` seats from several runs, none left alone: each run gives all its seats, none, or
    /// a block leaving at least two (a run of one is already alone and may be left). The
    /// earliest runs give as much as they can while the later ones can still make up `n`.
    fn clean_split(&self, runs: &[Run], n: usize) -> Option<Vec<usize>> {
        let allowed =
            |run: &Run, take: usize| take <= run.len && (run.len == 1 || run.len - take != 1);
        // reach[i][r]: runs i.. can give exactly r seats cleanly.
        let mut reach = vec![vec![false; n + 1]; runs.len() + 1];
        reach[runs.len()][0] = true;
        for i in (0..runs.len()).rev() {
            for r in 0..=n {
                reach[i][r] = (0..=r).any(|t| allowed(&runs[i], t) && reach[i + 1][r - t]);
            }
        }
        if !reach[0][n] {
            return None;
        }
        let mut need = n;
        let mut seats = Vec::with_capacity(n);
        for (i, run) in runs.iter().enumerate() {
            let take = (0..=need)
                .rev()
                .find(|&t| allowed(run, t) && reach[i + 1][need - t])?;
            if take > 0 {
                let (_, first) = self.block_in(*run, take, run.len > 1)?;
                seats.extend((first..first + take).map(|p| self.idx(run.row, p)));
            }
            need -= take;
        }
        Some(seats)
    }

    /// `n` free seats, rows in order and in a row nearest its middle first, orphans or not.
    fn greedy(&self, rows: Range<usize>, n: usize) -> Vec<usize> {
        let mut seats = Vec::with_capacity(n);
        for row in rows {
            if seats.len() == n {
                break;
            }
            if self.free_in_row(row) == 0 {
                continue;
            }
            let mut positions: Vec<usize> = (0..self.layout().row_seats(row).len())
                .filter(|&p| self.is_free(self.idx(row, p)))
                .collect();
            positions.sort_by_key(|&p| self.distance(row, p, p));
            seats.extend(
                positions
                    .into_iter()
                    .take(n - seats.len())
                    .map(|p| self.idx(row, p)),
            );
        }
        seats
    }

    /// The most seats a request over `rows` could get now: free seats, or with `adjacent`
    /// the longest run.
    fn available(&self, rows: Range<usize>, adjacent: bool) -> u32 {
        let mut best = 0usize;
        for row in rows {
            let free = self.free_in_row(row);
            if !adjacent {
                best += free;
            } else if free > best {
                best = best.max(self.runs(row).iter().map(|r| r.len).max().unwrap_or(0));
            }
        }
        best as u32
    }

    /// The seats to hold, or how many such seats are available (fewer than `n`).
    fn pick(&self, rows: Range<usize>, n: usize, adjacent: bool) -> Result<Vec<usize>, u32> {
        let (clean, any) = self.adjacent(rows.clone(), n);
        if let Some(block) = clean {
            return Ok(block);
        }
        if adjacent {
            return any.ok_or_else(|| self.available(rows, true));
        }
        let available = self.available(rows.clone(), false);
        if (available as usize) < n {
            return Err(available);
        }
        if let Some(seats) = self.clean_split(&self.runs_by_preference(rows.clone()), n) {
            return Ok(seats);
        }
        Ok(any.unwrap_or_else(|| self.greedy(rows, n)))
    }
}

impl Machine {
    /// A best-available hold's checks and its choice: the named hold it amounts to and its
    /// plan, or what changes nothing ([`Outcome::NotEnoughSeats`], a rejection).
    pub(super) fn check_hold_best(
        &self,
        cmd: &HoldBestCmd,
        now_ms: u64,
    ) -> Checked<(HoldCmd, HoldPlan)> {
        self.check_hold_size(&cmd.hold_id, &cmd.owner, cmd.quantity as usize)?;
        let (event, ttl_ms) =
            self.check_hold_event(&cmd.event_id, &cmd.hold_id, &cmd.owner, cmd.ttl_ms, now_ms)?;
        let layout = event.layout();
        let rows = match &cmd.section {
            Some(name) => layout
                .section_rows(name)
                .ok_or_else(|| Rejection::UnknownSection(name.clone()))?,
            None => 0..layout.n_rows(),
        };
        let view = FreeView::new(self, event, now_ms);
        let mut idxs = view
            .pick(rows, cmd.quantity as usize, cmd.adjacent)
            .map_err(|available| Box::new(Outcome::NotEnoughSeats { available }))?;
        idxs.sort_by_key(|&i| (layout.row_of(i), layout.number(i), i));
        let hold = HoldCmd {
            event_id: cmd.event_id.clone(),
            hold_id: cmd.hold_id.clone(),
            owner: cmd.owner.clone(),
            seat_ids: idxs.iter().map(|&i| layout.id(i).to_owned()).collect(),
            ttl_ms: Some(ttl_ms),
        };
        Ok((hold, HoldPlan::new(event, idxs, now_ms, ttl_ms)))
    }
}
