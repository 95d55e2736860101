//! The search index of the boxoffice event catalog: a tantivy index each API node embeds,
//! fed from the catalog change feed, answering typo-tolerant, filtered, paginated queries
//! and type-ahead suggestions. It knows tantivy and nothing about Raft or HTTP.
//!
//! # Layout
//!
//! * [`doc`] — [`EventDoc`], what the catalog hands in, and [`EventHit`], what a search
//!   hands out, with the limits a document must respect.
//! * `schema` — the tantivy schema: folded-word text fields (accents and case ignored),
//!   whole-value filter fields, fast fields for sorting and the date range, stored fields
//!   for result cards; the two analyzers; conversions to and from tantivy documents.
//! * [`index`] — [`SearchIndex`]: in RAM or on disk, `upsert` / `delete` / blocking
//!   `commit` (recording the catalog position `indexed_upto` in the commit payload),
//!   `search`, `suggest`.
//! * [`indexer`] — [`Indexer`]: batches [`CatalogChange`]s into near-real-time commits
//!   ([`COMMIT_INTERVAL_MS`], [`MAX_PENDING_DOCS`]); the caller supplies the time.
//! * [`query`] — [`SearchQuery`] / [`SearchPage`]: validation, the cache key
//!   ([`SearchQuery::normalized_key`]), and the translation of words into a tantivy query
//!   (typo distance by word length, last word as prefix, field weights — its module
//!   documentation explains the scores).
//! * `text_match` — the evaluation of the words of `q`: per segment and per reading (the
//!   words as typed, or a split pair merged), the best alternative of each word for each
//!   document, the documents every word matched within the query's typo budget.
//! * `phonetic` — the sound key of a word ("murfie" and "Murphy" share one), indexed for
//!   every performer word.
//! * `collect` — the collector: date range, cursor, top hits in rank order.
//! * `cursor` — the rank order (score, then start time, then event id) and the opaque
//!   cursor that encodes the last hit's rank, so pages neither repeat nor skip.
//! * [`suggest`] — [`Suggestion`]s of performer and event names for type-ahead.
//! * [`error`] — [`SearchError`]; `is_bad_input` separates 400s from 500s.
//!
//! The benchmark (`benches/search_bench.rs`) builds a synthetic catalog of a million events
//! and measures build time, size, memory, latency and typo recall.
//!
//! # Threads
//!
//! `SearchIndex` is `Send + Sync`. Searches read the last committed state and never wait for
//! writers. `commit` blocks (flush + fsync): run writes on a blocking thread, not on an
//! async runtime's worker.

pub mod doc;
pub mod error;
pub mod index;
pub mod indexer;
pub mod query;
pub mod suggest;

mod collect;
mod cursor;
mod phonetic;
mod schema;
#[cfg(test)]
mod testdata;
mod text_match;

pub use cursor::MAX_CURSOR_CHARS;
pub use doc::{
    EventDoc, EventHit, MAX_EVENT_ID_BYTES, MAX_EVENT_TEXT_BYTES, MAX_PERFORMERS_PER_EVENT,
    MAX_PERFORMER_ID_BYTES,
};
pub use error::SearchError;
pub use index::{IndexOptions, SearchIndex};
pub use indexer::{CatalogChange, CommitReport, Indexer, COMMIT_INTERVAL_MS, MAX_PENDING_DOCS};
pub use query::{
    SearchPage, SearchQuery, DEFAULT_LIMIT, MAX_FILTER_CHARS, MAX_LIMIT, MAX_QUERY_CHARS,
    MAX_QUERY_TERMS,
};
pub use suggest::{Suggestion, SuggestionKind, MAX_SUGGEST_LIMIT};
