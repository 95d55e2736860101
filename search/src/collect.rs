//! The collector behind every search: applies the date range, skips everything ranked at
//! or before the cursor, counts matches and keeps the best `limit` hits in rank order
//! (`cursor::SortKey`).
//!
//! Within a segment the event id is compared by its term ordinal in the segment's
//! `event_id` column (ordinals follow byte order). Strings are read only to order hits of
//! different segments that tie on score and start time, which is rare: reading one costs a
//! scan of a dictionary block.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn, TermOrdHit};
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader, TantivyError};

use crate::cursor::{quantize, SortKey};
use crate::schema::{EVENT_ID, STARTS_AT_MS};

/// Collects the `limit` best hits ranked after `after`, within `[from_ms, to_ms)`.
pub(crate) struct TopEvents {
    pub limit: usize,
    pub after: Option<SortKey>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// False when the query has no words: every score is then 0 and scoring is skipped.
    pub scored: bool,
}

/// One collected hit: its rank without the event id (which the stored document has).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit {
    pub score_q: u32,
    pub starts_at_ms: i64,
    pub address: DocAddress,
}

/// What a search collected.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    /// Best first, at most `limit`.
    pub hits: Vec<Hit>,
    /// Matches within the date range, cursor ignored.
    pub n_matching: u64,
    /// Matches ranked after the cursor (all of them when there is no cursor).
    pub n_after: u64,
}

/// The cursor key as one segment can test it cheaply.
#[derive(Debug, Clone, Copy)]
struct SegmentBound {
    score_q: u32,
    starts_at_ms: i64,
    /// On equal score and time, a hit must have an event id ordinal at least this.
    min_ord: u64,
}

/// A segment-local rank: `Ord` is rank order, like `SortKey` (smaller is listed first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct LocalRank {
    neg_score_q: std::cmp::Reverse<u32>,
    starts_at_ms: i64,
    ord: u64,
    doc: DocId,
}

pub(crate) struct TopEventsSegment {
    segment_ord: SegmentOrdinal,
    limit: usize,
    bound: Option<SegmentBound>,
    from_ms: i64,
    to_ms: Option<i64>,
    starts_at: Column<i64>,
    event_ids: Option<StrColumn>,
    /// Max-heap: the worst kept hit on top.
    heap: BinaryHeap<LocalRank>,
    n_matching: u64,
    n_after: u64,
}

impl Collector for TopEvents {
    type Fruit = Collected;
    type Child = TopEventsSegment;

    fn for_segment(
        &self,
        segment_ord: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<TopEventsSegment> {
        let starts_at = reader.fast_fields().i64(STARTS_AT_MS)?;
        let event_ids = reader.fast_fields().str(EVENT_ID)?;
        let bound = match (&self.after, &event_ids) {
            (None, _) => None,
            (Some(after), Some(ids)) => {
                let min_ord = match ids
                    .dictionary()
                    .term_ord_or_next(after.event_id.as_bytes())?
                {
                    TermOrdHit::Exact(ord) => ord.saturating_add(1),
                    TermOrdHit::Next(ord) => ord,
                };
                Some(SegmentBound {
                    score_q: after.score_q,
                    starts_at_ms: after.starts_at_ms,
                    min_ord,
                })
            }
            // A segment without ids has no documents; nothing ties.
            (Some(after), None) => Some(SegmentBound {
                score_q: after.score_q,
                starts_at_ms: after.starts_at_ms,
                min_ord: u64::MAX,
            }),
        };
        Ok(TopEventsSegment {
            segment_ord,
            limit: self.limit,
            bound,
            from_ms: self.from_ms.unwrap_or(i64::MIN),
            to_ms: self.to_ms,
            starts_at,
            event_ids,
            heap: BinaryHeap::with_capacity(self.limit.saturating_add(1)),
            n_matching: 0,
            n_after: 0,
        })
    }

    fn requires_scoring(&self) -> bool {
        self.scored
    }

    fn merge_fruits(&self, fruits: Vec<SegmentFruit>) -> tantivy::Result<Collected> {
        let mut out = Collected::default();
        let mut candidates: Vec<(usize, LocalRank)> = Vec::new();
        for (fruit_idx, fruit) in fruits.iter().enumerate() {
            out.n_matching += fruit.n_matching;
            out.n_after += fruit.n_after;
            candidates.extend(fruit.hits.iter().map(|rank| (fruit_idx, *rank)));
        }
        // Event ids of (fruit, ordinal), read only when two segments tie.
        let mut ids: HashMap<(usize, u64), String> = HashMap::new();
        let mut error: Option<std::io::Error> = None;
        let mut id_of = |fruit_idx: usize, ord: u64| -> String {
            if let Some(id) = ids.get(&(fruit_idx, ord)) {
                return id.clone();
            }
            let mut id = String::new();
            if let Some(column) = fruits.get(fruit_idx).and_then(|f| f.event_ids.as_ref()) {
                if let Err(e) = column.ord_to_str(ord, &mut id) {
                    error.get_or_insert(e);
                }
            }
            ids.insert((fruit_idx, ord), id.clone());
            id
        };
        candidates.sort_by(|(fa, a), (fb, b)| {
            a.neg_score_q
                .cmp(&b.neg_score_q)
                .then(a.starts_at_ms.cmp(&b.starts_at_ms))
                .then_with(|| {
                    if fa == fb {
                        a.ord.cmp(&b.ord)
                    } else {
                        id_of(*fa, a.ord).cmp(&id_of(*fb, b.ord)).then(fa.cmp(fb))
                    }
                })
        });
        if let Some(e) = error {
            return Err(TantivyError::InternalError(format!(
                "reading an event id: {e}"
            )));
        }
        out.hits = candidates
            .into_iter()
            .take(self.limit)
            .filter_map(|(fruit_idx, rank)| {
                let fruit = fruits.get(fruit_idx)?;
                Some(Hit {
                    score_q: rank.neg_score_q.0,
                    starts_at_ms: rank.starts_at_ms,
                    address: DocAddress::new(fruit.segment_ord, rank.doc),
                })
            })
            .collect();
        Ok(out)
    }
}

/// What one segment hands back: its best hits, unsorted, and how to read their ids.
pub(crate) struct SegmentFruit {
    segment_ord: SegmentOrdinal,
    hits: Vec<LocalRank>,
    event_ids: Option<StrColumn>,
    n_matching: u64,
    n_after: u64,
}

impl SegmentCollector for TopEventsSegment {
    type Fruit = SegmentFruit;

    fn collect(&mut self, doc: DocId, score: Score) {
        // Every document has a start time; a missing one sorts last rather than failing.
        let starts_at_ms = self.starts_at.first(doc).unwrap_or(i64::MAX);
        if starts_at_ms < self.from_ms || self.to_ms.is_some_and(|to| starts_at_ms >= to) {
            return;
        }
        self.n_matching += 1;
        let score_q = if score > 0.0 { quantize(score) } else { 0 };
        let ord = self
            .event_ids
            .as_ref()
            .and_then(|ids| ids.ords().first(doc))
            .unwrap_or(u64::MAX);
        if let Some(bound) = self.bound {
            let after_bound = match bound.score_q.cmp(&score_q) {
                Ordering::Greater => true,
                Ordering::Less => false,
                Ordering::Equal => match starts_at_ms.cmp(&bound.starts_at_ms) {
                    Ordering::Greater => true,
                    Ordering::Less => false,
                    Ordering::Equal => ord >= bound.min_ord,
                },
            };
            if !after_bound {
                return;
            }
        }
        self.n_after += 1;
        let rank = LocalRank {
            neg_score_q: std::cmp::Reverse(score_q),
            starts_at_ms,
            ord,
            doc,
        };
        if self.heap.len() < self.limit {
            self.heap.push(rank);
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if rank < *worst {
                *worst = rank;
            }
        }
    }

    fn harvest(self) -> SegmentFruit {
        SegmentFruit {
            segment_ord: self.segment_ord,
            hits: self.heap.into_vec(),
            event_ids: self.event_ids,
            n_matching: self.n_matching,
            n_after: self.n_after,
        }
    }
}
