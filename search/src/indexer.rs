//! [`Indexer`]: feeds catalog changes into a [`SearchIndex`] and commits in batches — when
//! the oldest uncommitted change is [`COMMIT_INTERVAL_MS`] old or [`MAX_PENDING_DOCS`]
//! changes wait — so that search is near-real-time without a commit (and a segment) per
//! change.
//!
//! It reads no clock: the caller passes `now_ms` (any monotonic milliseconds), which keeps
//! it deterministic under test and simulation. Every method that may commit blocks (see
//! [`SearchIndex::commit`]); run the indexer on a blocking thread.

use std::sync::Arc;

use crate::doc::EventDoc;
use crate::error::SearchError;
use crate::index::SearchIndex;

/// Longest a change waits before it is committed, in milliseconds.
pub const COMMIT_INTERVAL_MS: u64 = 250;
/// Most uncommitted changes before a commit is forced.
pub const MAX_PENDING_DOCS: usize = 10_000;

/// One change of the catalog that concerns search.
// Changes are handled one at a time, never stored in bulk: boxing the document buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogChange {
    Upsert(EventDoc),
    Delete { event_id: String },
}

/// What a commit made visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitReport {
    /// Changes applied since the previous commit.
    pub n_changes: usize,
    /// The catalog position now recorded in the index.
    pub indexed_upto: u64,
}

/// Batches changes into commits. Owns the write side of one index.
#[derive(Debug)]
pub struct Indexer {
    index: Arc<SearchIndex>,
    commit_interval_ms: u64,
    max_pending_docs: usize,
    n_pending: usize,
    /// When the oldest uncommitted change (or position advance) arrived.
    pending_since_ms: Option<u64>,
    /// Position of the newest change applied, committed or not.
    position: Option<u64>,
}

impl Indexer {
    /// An indexer with the default limits.
    pub fn new(index: Arc<SearchIndex>) -> Self {
        Self::with_limits(index, COMMIT_INTERVAL_MS, MAX_PENDING_DOCS)
    }

    /// An indexer with explicit limits (`max_pending_docs` of 0 is taken as 1).
    pub fn with_limits(
        index: Arc<SearchIndex>,
        commit_interval_ms: u64,
        max_pending_docs: usize,
    ) -> Self {
        let position = index.indexed_upto();
        Indexer {
            index,
            commit_interval_ms,
            max_pending_docs: max_pending_docs.max(1),
            n_pending: 0,
            pending_since_ms: None,
            position,
        }
    }

    /// The index this indexer writes.
    pub fn index(&self) -> &Arc<SearchIndex> {
        &self.index
    }

    /// Applies the change found at catalog `position`; commits (blocking) when the batch is
    /// full. An invalid document is rejected with nothing changed: the caller logs it and
    /// may [`Indexer::advance`] past it.
    pub fn apply(
        &mut self,
        change: &CatalogChange,
        position: u64,
        now_ms: u64,
    ) -> Result<Option<CommitReport>, SearchError> {
        match change {
            CatalogChange::Upsert(doc) => self.index.upsert(doc)?,
            CatalogChange::Delete { event_id } => self.index.delete(event_id)?,
        }
        self.n_pending += 1;
        self.mark_pending(position, now_ms);
        if self.n_pending >= self.max_pending_docs {
            return self.flush();
        }
        Ok(None)
    }

    /// Records that the catalog moved to `position` with nothing for search (a venue
    /// renamed with no events, ...), so that a restart does not replay it.
    pub fn advance(&mut self, position: u64, now_ms: u64) {
        self.mark_pending(position, now_ms);
    }

    fn mark_pending(&mut self, position: u64, now_ms: u64) {
        self.position = Some(position);
        self.pending_since_ms.get_or_insert(now_ms);
    }

    /// Changes applied since the last commit.
    pub fn n_pending(&self) -> usize {
        self.n_pending
    }

    /// When the pending batch is due, `None` when nothing is pending: how long the caller
    /// may sleep before calling [`Indexer::commit_if_due`].
    pub fn due_at_ms(&self) -> Option<u64> {
        self.pending_since_ms
            .map(|since| since.saturating_add(self.commit_interval_ms))
    }

    /// Commits (blocking) if the pending batch is due at `now_ms`.
    pub fn commit_if_due(&mut self, now_ms: u64) -> Result<Option<CommitReport>, SearchError> {
        match self.due_at_ms() {
            Some(due) if now_ms >= due => self.flush(),
            _ => Ok(None),
        }
    }

    /// Commits (blocking) whatever is pending now, e.g. on shutdown; `None` when nothing
    /// was pending.
    pub fn flush(&mut self) -> Result<Option<CommitReport>, SearchError> {
        let (Some(_), Some(position)) = (self.pending_since_ms, self.position) else {
            return Ok(None);
        };
        self.index.commit(position)?;
        let report = CommitReport {
            n_changes: self.n_pending,
            indexed_upto: position,
        };
        self.n_pending = 0;
        self.pending_since_ms = None;
        Ok(Some(report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    fn indexer(max_pending_docs: usize) -> Indexer {
        let index = Arc::new(SearchIndex::create_in_ram().unwrap());
        Indexer::with_limits(index, COMMIT_INTERVAL_MS, max_pending_docs)
    }

    #[test]
    fn changes_become_visible_when_the_interval_elapses() {
        let mut indexer = indexer(MAX_PENDING_DOCS);
        let doc = testdata::catalog().remove(0);
        assert_eq!(indexer.due_at_ms(), None);
        assert_eq!(
            indexer
                .apply(&CatalogChange::Upsert(doc), 7, 1_000)
                .unwrap(),
            None
        );
        assert_eq!(indexer.due_at_ms(), Some(1_000 + COMMIT_INTERVAL_MS));
        assert_eq!(indexer.commit_if_due(1_249).unwrap(), None);
        assert_eq!(indexer.index().num_docs(), 0);
        assert_eq!(
            indexer.commit_if_due(1_250).unwrap(),
            Some(CommitReport {
                n_changes: 1,
                indexed_upto: 7
            })
        );
        assert_eq!(indexer.index().num_docs(), 1);
        assert_eq!(indexer.index().indexed_upto(), Some(7));
        assert_eq!(indexer.due_at_ms(), None);
        assert_eq!(indexer.commit_if_due(9_999).unwrap(), None);
    }

    #[test]
    fn a_full_batch_commits_at_once() {
        let mut indexer = indexer(3);
        let docs = testdata::catalog();
        let mut reports = Vec::new();
        for (i, doc) in docs.into_iter().take(7).enumerate() {
            reports.push(
                indexer
                    .apply(&CatalogChange::Upsert(doc), i as u64 + 1, 0)
                    .unwrap(),
            );
        }
        let committed: Vec<_> = reports.into_iter().flatten().collect();
        assert_eq!(
            committed,
            [
                CommitReport {
                    n_changes: 3,
                    indexed_upto: 3
                },
                CommitReport {
                    n_changes: 3,
                    indexed_upto: 6
                },
            ]
        );
        assert_eq!(indexer.index().num_docs(), 6);
        assert_eq!(indexer.n_pending(), 1);
        assert_eq!(
            indexer.flush().unwrap(),
            Some(CommitReport {
                n_changes: 1,
                indexed_upto: 7
            })
        );
        assert_eq!(indexer.index().num_docs(), 7);
    }

    #[test]
    fn deletes_and_position_advances_are_batched_too() {
        let mut indexer = indexer(MAX_PENDING_DOCS);
        let doc = testdata::catalog().remove(0);
        let event_id = doc.event_id.clone();
        indexer.apply(&CatalogChange::Upsert(doc), 1, 0).unwrap();
        indexer.flush().unwrap();
        indexer
            .apply(&CatalogChange::Delete { event_id }, 2, 10)
            .unwrap();
        indexer.advance(5, 20);
        assert_eq!(indexer.due_at_ms(), Some(10 + COMMIT_INTERVAL_MS));
        assert_eq!(
            indexer.flush().unwrap(),
            Some(CommitReport {
                n_changes: 1,
                indexed_upto: 5
            })
        );
        assert_eq!(indexer.index().num_docs(), 0);
        assert_eq!(indexer.index().indexed_upto(), Some(5));
    }

    #[test]
    fn an_invalid_document_changes_nothing() {
        let mut indexer = indexer(MAX_PENDING_DOCS);
        let bad = EventDoc::default();
        assert!(matches!(
            indexer.apply(&CatalogChange::Upsert(bad), 1, 0),
            Err(SearchError::InvalidDocument(_))
        ));
        assert_eq!(indexer.n_pending(), 0);
        assert_eq!(indexer.due_at_ms(), None);
        assert_eq!(indexer.flush().unwrap(), None);
    }
}
