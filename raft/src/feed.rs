//! The change feed: what applied commands changed, ordered by log index, resumable.
//!
//! A bounded in-memory window of recent changes per group. A reader asks for everything after
//! the log index it has seen; when that index is older than the window (evicted, or before
//! this replica started or installed a snapshot) it is told to reset from a snapshot of the
//! current state instead. Search, cache invalidation and live seat maps are built on it.

use std::collections::VecDeque;

use crate::types::Change;
pub use crate::wire::{FeedPage, FeedSnapshot};

/// Most changes kept in memory per group.
pub const FEED_CAPACITY_CHANGES: usize = 100_000;
/// Most changes returned by one read.
pub const FEED_PAGE_MAX_CHANGES: usize = 10_000;

#[derive(Debug)]
pub struct Feed {
    changes: VecDeque<(u64, Change)>,
    /// Readers that have seen every index up to `base` can be served from the window.
    base: u64,
    /// The last applied log index.
    applied: u64,
    capacity: usize,
}

/// What a reader gets for "changes after index `from`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedRead {
    /// Changes with index in `(from, upto]`; `upto` is where the next read starts.
    Changes {
        changes: Vec<(u64, Change)>,
        upto: u64,
    },
    /// `from` is outside the window: start again from a snapshot.
    Reset,
}

impl Feed {
    /// A feed whose history starts at `applied` (nothing before it can be served).
    pub fn new(applied: u64, capacity: usize) -> Feed {
        Feed {
            changes: VecDeque::new(),
            base: applied,
            applied,
            capacity,
        }
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }

    pub fn push(&mut self, index: u64, changes: Vec<Change>) {
        debug_assert!(index >= self.applied, "log indexes only grow");
        self.applied = self.applied.max(index);
        for change in changes {
            self.changes.push_back((index, change));
        }
        while self.changes.len() > self.capacity {
            if let Some((evicted, _)) = self.changes.pop_front() {
                self.base = self.base.max(evicted);
            }
        }
    }

    /// Forgets everything: the state was replaced by a snapshot at `applied`.
    pub fn reset(&mut self, applied: u64) {
        self.changes.clear();
        self.base = applied;
        self.applied = applied;
    }

    pub fn read(&self, from: u64, max_changes: usize) -> FeedRead {
        if from < self.base || from > self.applied {
            return FeedRead::Reset;
        }
        let start = self.changes.partition_point(|(i, _)| *i <= from);
        let mut out: Vec<(u64, Change)> = Vec::new();
        let mut upto = self.applied;
        for (index, change) in self.changes.range(start..) {
            let continues_index = out.last().is_some_and(|(last, _)| last == index);
            // Stop at an index boundary so no index is half delivered, but always deliver at
            // least one whole index so a reader makes progress.
            if out.len() >= max_changes && out.first().is_some_and(|(first, _)| first != index) {
                upto = index - 1;
                out.retain(|(i, _)| i < index);
                break;
            }
            if out.len() >= max_changes && !continues_index {
                upto = index - 1;
                break;
            }
            out.push((*index, change.clone()));
        }
        FeedRead::Changes {
            changes: out,
            upto: upto.max(from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(n: u32) -> Change {
        Change::Catalog {
            kind: "k".into(),
            id: n.to_string(),
            deleted: false,
        }
    }

    #[test]
    fn reads_resume_and_reset_outside_the_window() {
        let mut feed = Feed::new(10, 4);
        assert_eq!(
            feed.read(10, 100),
            FeedRead::Changes {
                changes: vec![],
                upto: 10
            }
        );
        assert_eq!(feed.read(9, 100), FeedRead::Reset);
        feed.push(11, vec![change(1), change(2)]);
        feed.push(12, vec![]);
        feed.push(13, vec![change(3)]);
        assert_eq!(
            feed.read(10, 100),
            FeedRead::Changes {
                changes: vec![(11, change(1)), (11, change(2)), (13, change(3))],
                upto: 13
            }
        );
        assert_eq!(
            feed.read(11, 100),
            FeedRead::Changes {
                changes: vec![(13, change(3))],
                upto: 13
            }
        );
        // A page limit never splits an index.
        assert_eq!(
            feed.read(10, 1),
            FeedRead::Changes {
                changes: vec![(11, change(1)), (11, change(2))],
                upto: 12
            }
        );
        feed.push(14, vec![change(4), change(5)]);
        // Capacity 4: the first change of index 11 is gone, so readers before 11 reset.
        assert_eq!(feed.read(10, 100), FeedRead::Reset);
        assert_eq!(feed.read(11, 100).clone(), feed.read(11, 100));
        assert!(matches!(
            feed.read(11, 100),
            FeedRead::Changes { upto: 14, .. }
        ));
        assert_eq!(feed.read(15, 100), FeedRead::Reset);
        feed.reset(20);
        assert_eq!(feed.read(14, 100), FeedRead::Reset);
        assert_eq!(
            feed.read(20, 100),
            FeedRead::Changes {
                changes: vec![],
                upto: 20
            }
        );
    }
}
