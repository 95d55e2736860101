//! [`SearchIndex`]: one tantivy index of the event catalog, in RAM or in a directory, with
//! its single writer, its reader and the catalog position it has indexed up to.
//!
//! Writes (`upsert`, `delete`) are buffered by the writer and become visible to `search`
//! only after `commit`, which also records the catalog position in the commit payload so
//! that a restarted node resumes the change feed from there. Searches never wait for
//! writes: they read the last committed state.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use tantivy::directory::MmapDirectory;
use tantivy::indexer::IndexWriterOptions;
use tantivy::{
    Index, IndexReader, IndexSettings, IndexWriter, ReloadPolicy, TantivyDocument, TantivyError,
    Term,
};

use crate::collect::TopEvents;
use crate::cursor::{self, dequantize, SortKey};
use crate::doc::EventDoc;
use crate::error::SearchError;
use crate::query::{build_query, SearchPage, SearchQuery};
use crate::schema::{self, Fields};
use crate::suggest::{self, Suggestion};

/// tantivy's smallest memory budget for one indexing thread, in bytes.
pub const MIN_WRITER_MEMORY_BYTES_PER_THREAD: usize = 15_000_000;
/// Default memory budget of one indexing thread, in bytes.
pub const DEFAULT_WRITER_MEMORY_BYTES_PER_THREAD: usize = 32_000_000;
/// Largest memory budget accepted for one indexing thread, in bytes.
pub const MAX_WRITER_MEMORY_BYTES_PER_THREAD: usize = 1_000_000_000;
/// Default number of indexing threads; near-real-time batches are small.
pub const DEFAULT_WRITER_THREADS: usize = 1;
/// Most indexing threads accepted (the machines have 2 cores, and searches need one).
pub const MAX_WRITER_THREADS: usize = 2;
/// Background segment-merge threads.
const MERGE_THREADS: usize = 1;

/// Uncompressed size of a doc-store block, in bytes. Every hit decompresses one block, so
/// smaller blocks make result cards cheaper (tantivy's default, 16 KiB, costs ~4x the CPU
/// per hit) at a small loss of compression.
const DOCSTORE_BLOCK_BYTES: usize = 4_096;

/// Prefix of the commit payload; the payload is `{"indexed_upto":<u64>}`.
const PAYLOAD_PREFIX: &str = "{\"indexed_upto\":";

/// How the writer of an index is sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexOptions {
    /// `1..=MAX_WRITER_THREADS`.
    pub writer_threads: usize,
    /// `MIN_WRITER_MEMORY_BYTES_PER_THREAD..=MAX_WRITER_MEMORY_BYTES_PER_THREAD`. A thread
    /// flushes a segment when its buffer reaches this size.
    pub writer_memory_bytes_per_thread: usize,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            writer_threads: DEFAULT_WRITER_THREADS,
            writer_memory_bytes_per_thread: DEFAULT_WRITER_MEMORY_BYTES_PER_THREAD,
        }
    }
}

impl IndexOptions {
    fn validate(&self) -> Result<(), SearchError> {
        if self.writer_threads == 0 || self.writer_threads > MAX_WRITER_THREADS {
            return Err(SearchError::InvalidOptions(format!(
                "writer_threads must be between 1 and {MAX_WRITER_THREADS}, got {}",
                self.writer_threads
            )));
        }
        let memory = self.writer_memory_bytes_per_thread;
        if !(MIN_WRITER_MEMORY_BYTES_PER_THREAD..=MAX_WRITER_MEMORY_BYTES_PER_THREAD)
            .contains(&memory)
        {
            return Err(SearchError::InvalidOptions(format!(
                "writer_memory_bytes_per_thread must be between \
                 {MIN_WRITER_MEMORY_BYTES_PER_THREAD} and {MAX_WRITER_MEMORY_BYTES_PER_THREAD}, \
                 got {memory}"
            )));
        }
        Ok(())
    }
}

/// The search index of the event catalog. `Send + Sync`: share it in an `Arc`, search from
/// any thread, write from one (the [`crate::Indexer`]).
pub struct SearchIndex {
    fields: Fields,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    /// Position recorded by the last commit (or found on disk at open).
    indexed_upto: Mutex<Option<u64>>,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex")
            .field("num_docs", &self.num_docs())
            .field("indexed_upto", &self.indexed_upto())
            .finish_non_exhaustive()
    }
}

impl SearchIndex {
    /// An empty index in memory (tests, the dev role, nodes that rebuild on start).
    pub fn create_in_ram() -> Result<Self, SearchError> {
        Self::create_in_ram_with(IndexOptions::default())
    }

    /// [`SearchIndex::create_in_ram`] with explicit writer sizing.
    pub fn create_in_ram_with(options: IndexOptions) -> Result<Self, SearchError> {
        options.validate()?;
        let (schema, fields) = schema::build_schema();
        let index = Index::builder()
            .schema(schema)
            .settings(index_settings())
            .create_in_ram()?;
        Self::from_index(index, fields, options)
    }

    /// Opens the index in `dir`, or creates an empty one there (creating `dir` too).
    ///
    /// Fails with [`SearchError::IncompatibleIndex`] when `dir` holds an index of another
    /// schema, and with [`SearchError::Index`] when another writer holds its lock.
    pub fn open_or_create_in_dir(dir: impl AsRef<Path>) -> Result<Self, SearchError> {
        Self::open_or_create_in_dir_with(dir, IndexOptions::default())
    }

    /// [`SearchIndex::open_or_create_in_dir`] with explicit writer sizing.
    pub fn open_or_create_in_dir_with(
        dir: impl AsRef<Path>,
        options: IndexOptions,
    ) -> Result<Self, SearchError> {
        options.validate()?;
        std::fs::create_dir_all(dir.as_ref())?;
        let directory = MmapDirectory::open(dir.as_ref()).map_err(TantivyError::from)?;
        let (schema, fields) = schema::build_schema();
        let index = Index::builder()
            .schema(schema)
            .settings(index_settings())
            .open_or_create(directory)
            .map_err(|e| match e {
                TantivyError::SchemaError(message) => SearchError::IncompatibleIndex(message),
                other => SearchError::Index(other),
            })?;
        Self::from_index(index, fields, options)
    }

    fn from_index(
        index: Index,
        fields: Fields,
        options: IndexOptions,
    ) -> Result<Self, SearchError> {
        schema::register_analyzers(&index);
        let indexed_upto = parse_payload(index.load_metas()?.payload.as_deref())?;
        let writer = index.writer_with_options(
            IndexWriterOptions::builder()
                .num_worker_threads(options.writer_threads)
                .memory_budget_per_thread(options.writer_memory_bytes_per_thread)
                .num_merge_threads(MERGE_THREADS)
                .build(),
        )?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(SearchIndex {
            fields,
            reader,
            writer: Mutex::new(writer),
            indexed_upto: Mutex::new(indexed_upto),
        })
    }

    fn writer(&self) -> Result<MutexGuard<'_, IndexWriter>, SearchError> {
        self.writer.lock().map_err(|_| SearchError::WriterPoisoned)
    }

    /// Adds `doc`, replacing any document with the same `event_id`. Visible after `commit`.
    pub fn upsert(&self, doc: &EventDoc) -> Result<(), SearchError> {
        doc.validate()?;
        let document = schema::to_document(&self.fields, doc);
        let writer = self.writer()?;
        writer.delete_term(Term::from_field_text(self.fields.event_id, &doc.event_id));
        writer.add_document(document)?;
        Ok(())
    }

    /// Removes the event `event_id` (nothing if absent). Visible after `commit`.
    pub fn delete(&self, event_id: &str) -> Result<(), SearchError> {
        let writer = self.writer()?;
        writer.delete_term(Term::from_field_text(self.fields.event_id, event_id));
        Ok(())
    }

    /// Removes every event, e.g. before reindexing from a catalog snapshot. Visible after
    /// `commit`.
    pub fn delete_all(&self) -> Result<(), SearchError> {
        self.writer()?.delete_all_documents()?;
        Ok(())
    }

    /// Makes every write so far durable and visible, recording that the index reflects the
    /// catalog up to position `indexed_upto`.
    ///
    /// **Blocking**: it waits for the indexing threads to flush and, on disk, for fsync
    /// (several milliseconds). Call it from a blocking thread (`spawn_blocking` or the
    /// indexer's own thread), and batch writes: each commit adds a segment.
    pub fn commit(&self, indexed_upto: u64) -> Result<(), SearchError> {
        let mut writer = self.writer()?;
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(&format!("{PAYLOAD_PREFIX}{indexed_upto}}}"));
        prepared.commit()?;
        drop(writer);
        self.reader.reload()?;
        *self
            .indexed_upto
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(indexed_upto);
        Ok(())
    }

    /// The catalog position recorded by the last commit, `None` for an index never
    /// committed. A node resumes the catalog change feed after it.
    pub fn indexed_upto(&self) -> Option<u64> {
        *self
            .indexed_upto
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Events visible to searches (committed, not deleted).
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// One page of events matching `query`; see [`SearchQuery`] and the `query` module for
    /// matching and ranking. Bad input yields an error for which
    /// [`SearchError::is_bad_input`] is true.
    pub fn search(&self, query: &SearchQuery) -> Result<SearchPage, SearchError> {
        let valid = query.validate()?;
        let tantivy_query = build_query(&self.fields, &valid);
        let collector = TopEvents {
            limit: valid.limit,
            after: valid.after.clone(),
            from_ms: valid.from_ms,
            to_ms: valid.to_ms,
            scored: !valid.words.is_empty(),
        };
        let searcher = self.reader.searcher();
        let collected = searcher.search(tantivy_query.as_ref(), &collector)?;
        let mut hits = Vec::with_capacity(collected.hits.len());
        for hit in &collected.hits {
            let document: TantivyDocument = searcher.doc(hit.address)?;
            hits.push(schema::to_hit(
                &self.fields,
                &document,
                dequantize(hit.score_q),
            ));
        }
        let next_cursor = match (collected.hits.last(), hits.last()) {
            (Some(last), Some(card)) if collected.n_after > collected.hits.len() as u64 => {
                let key = SortKey {
                    score_q: last.score_q,
                    starts_at_ms: last.starts_at_ms,
                    event_id: card.event_id.clone(),
                };
                Some(cursor::encode(valid.query_hash, &key))
            }
            _ => None,
        };
        Ok(SearchPage {
            hits,
            next_cursor,
            total_estimate: collected.n_matching,
        })
    }

    /// Up to `limit` (`1..=MAX_SUGGEST_LIMIT`) performer and event names for type-ahead.
    pub fn suggest(&self, prefix: &str, limit: usize) -> Result<Vec<Suggestion>, SearchError> {
        suggest::suggest(&self.reader.searcher(), &self.fields, prefix, limit)
    }

    /// Segments searched by each query (a diagnostic: each commit adds one, merges remove).
    pub fn segment_count(&self) -> usize {
        self.reader.searcher().segment_readers().len()
    }

    /// Merges every segment into one, for the fastest searches (each segment costs every
    /// query a term-dictionary walk per word and field). Meant for after a bulk load from a
    /// catalog snapshot; near-real-time commits leave merging to tantivy's background policy.
    ///
    /// **Blocking** for as long as the merge takes (seconds for a million events). Fails
    /// (an internal error, nothing lost) when a background merge holds one of the segments:
    /// call it after [`SearchIndex::wait_for_merges`] and reopening, or try again later.
    pub fn compact(&self) -> Result<(), SearchError> {
        let mut writer = self.writer()?;
        let segment_ids = self.reader.searcher().index().searchable_segment_ids()?;
        if segment_ids.len() > 1 {
            writer.merge(&segment_ids).wait()?;
        }
        drop(writer);
        self.reader.reload()?;
        Ok(())
    }

    /// Turns background merges off, so that tests control the number of segments.
    #[cfg(test)]
    pub(crate) fn stop_merging(&self) {
        if let Ok(writer) = self.writer() {
            writer.set_merge_policy(Box::new(tantivy::merge_policy::NoMergePolicy));
        }
    }

    /// Blocks until background merges finish; for benchmarks and orderly shutdown.
    pub fn wait_for_merges(self) -> Result<(), SearchError> {
        let writer = self
            .writer
            .into_inner()
            .map_err(|_| SearchError::WriterPoisoned)?;
        writer.wait_merging_threads()?;
        Ok(())
    }
}

/// Settings of a new index (an existing index keeps the settings it was created with).
fn index_settings() -> IndexSettings {
    IndexSettings {
        docstore_blocksize: DOCSTORE_BLOCK_BYTES,
        ..IndexSettings::default()
    }
}

fn parse_payload(payload: Option<&str>) -> Result<Option<u64>, SearchError> {
    let Some(payload) = payload else {
        return Ok(None);
    };
    payload
        .strip_prefix(PAYLOAD_PREFIX)
        .and_then(|rest| rest.strip_suffix('}'))
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse().ok())
        .map(Some)
        .ok_or_else(|| SearchError::CorruptPayload(payload.to_owned()))
}

#[cfg(test)]
mod search_tests;
#[cfg(test)]
mod typo_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_rejects_strangers() {
        assert_eq!(parse_payload(None).unwrap(), None);
        assert_eq!(
            parse_payload(Some("{\"indexed_upto\":42}")).unwrap(),
            Some(42)
        );
        for bad in [
            "",
            "42",
            "{\"indexed_upto\":}",
            "{\"indexed_upto\":-1}",
            "{\"indexed_upto\":99999999999999999999}",
        ] {
            assert!(
                matches!(
                    parse_payload(Some(bad)),
                    Err(SearchError::CorruptPayload(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn writer_options_are_bounded() {
        let bad = [
            IndexOptions {
                writer_threads: 0,
                ..IndexOptions::default()
            },
            IndexOptions {
                writer_threads: 3,
                ..IndexOptions::default()
            },
            IndexOptions {
                writer_memory_bytes_per_thread: 1_000_000,
                ..IndexOptions::default()
            },
        ];
        for options in bad {
            assert!(matches!(
                SearchIndex::create_in_ram_with(options),
                Err(SearchError::InvalidOptions(_))
            ));
        }
    }
}
