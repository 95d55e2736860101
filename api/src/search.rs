//! Search on an API node: the tantivy catalog index (`boxoffice-search`) kept current by
//! the meta group's change feed and by the shards' availability, and the result cache in
//! front of it.
//!
//! Two tasks, owned by [`run_search_indexer`]:
//!
//! * the **feed reader** follows the meta group's feed from the index's committed position
//!   (`SearchIndex::indexed_upto`): a `Reset` page (a fresh node, or a position the feed no
//!   longer holds) becomes a full rebuild from the page's catalog snapshot; a `Changes` page
//!   becomes upserts and deletes of the events it touches (a venue or performer change
//!   touches every event that shows it). Documents come from the catalog cache once it has
//!   applied at least as far as the page ([`CatalogCache::wait_applied`]), so they are never
//!   older than the position they are indexed at.
//! * the **indexing loop** owns the [`Indexer`] and does every tantivy call on a blocking
//!   thread (`spawn_blocking`): batches are committed [`boxoffice_search::COMMIT_INTERVAL_MS`] after their
//!   first change; every [`AVAILABILITY_REFRESH_MS`] the events whose seats changed (the seat
//!   cache collects them, so a burst of holds costs one upsert) are re-indexed with their
//!   current counts.
//!
//! **Invariant: the index's position is never ahead of what it has committed.** A change is
//! applied under the position of the *previous* page and the page's own position is recorded
//! only after all its changes (`Indexer::advance`), so a commit forced in the middle of a
//! page, or a crash after it, replays the page rather than skipping part of it. Replaying is
//! harmless: upserts and deletes are idempotent.
//!
//! The result cache is keyed by [`SearchQuery::normalized_key`] and stamped with the index
//! generation (bumped by every commit, catalog or availability): an entry computed at an older
//! generation is a miss, and every commit also empties the cache.
//!
//! Over 600 lines, a third of them tests: the feed reader, the indexing loop and the result
//! cache share the node's search state and its positions, and are read as one story.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use boxoffice_raft::types::META_GROUP;
use boxoffice_raft::wire::FeedPage;
use boxoffice_raft::InventoryClient;
use boxoffice_search::{
    CatalogChange as IndexChange, CommitReport, EventDoc, Indexer, SearchError, SearchIndex,
};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::cache::{catalog_touched, CatalogCache, Maps};
use crate::catalog::{Event, Performer, Venue, KIND_EVENT, KIND_PERFORMER, KIND_VENUE};
use crate::clock::Clock;
use crate::problem::ApiError;
use crate::seats::{SeatCache, FEED_RETRY_MAX_MS, FEED_RETRY_MIN_MS, FEED_WAIT_MS};

/// How often events whose seats changed are re-indexed with their new availability.
pub const AVAILABILITY_REFRESH_MS: u64 = 1_000;
/// Most events re-indexed for availability per refresh (a node that just loaded its seat
/// maps sees every event change at once; the rest wait for the next refresh).
pub const MAX_AVAILABILITY_UPSERTS: usize = 5_000;
/// Rendered result pages kept per node.
pub const MAX_CACHED_RESULTS: u64 = 10_000;
/// Longest a cached page is kept even if the index does not change.
pub const RESULT_CACHE_TTL_MS: u64 = 60_000;
/// Pages of work the feed reader may queue ahead of the indexing loop.
const WORK_QUEUE_PAGES: usize = 4;
/// How long the indexing loop sleeps when nothing is pending (work and ticks wake it).
const IDLE_WAKE_MS: u64 = 3_600_000;
/// Longest the feed reader waits for the catalog cache before checking again.
const CATALOG_WAIT_SLICE_MS: u64 = 1_000;

/// Search state shared by the handlers and the indexing tasks.
pub struct SearchState {
    index: OnceLock<Arc<SearchIndex>>,
    /// Bumped after every commit; cached pages of another generation are stale.
    generation: AtomicU64,
    /// The catalog position the index has committed (`u64::MAX`: nothing committed).
    indexed_upto: AtomicU64,
    /// The meta feed's position when this node started reading it (`u64::MAX`: not known
    /// yet); the index is caught up once it has committed that far.
    startup_position: AtomicU64,
    caught_up: AtomicBool,
    n_rebuilds: AtomicU64,
    results: moka::sync::Cache<String, Arc<CachedPage>>,
}

/// A rendered answer and the index generation it was computed at.
pub struct CachedPage {
    pub generation: u64,
    pub bytes: Bytes,
}

impl Default for SearchState {
    fn default() -> Self {
        SearchState::new()
    }
}

impl SearchState {
    pub fn new() -> SearchState {
        SearchState {
            index: OnceLock::new(),
            generation: AtomicU64::new(0),
            indexed_upto: AtomicU64::new(u64::MAX),
            startup_position: AtomicU64::new(u64::MAX),
            caught_up: AtomicBool::new(false),
            n_rebuilds: AtomicU64::new(0),
            results: moka::sync::Cache::builder()
                .max_capacity(MAX_CACHED_RESULTS)
                .time_to_live(Duration::from_millis(RESULT_CACHE_TTL_MS))
                .build(),
        }
    }

    /// The index, once opened and committed at least once (a rebuild or a resumed index).
    pub fn index(&self) -> Option<Arc<SearchIndex>> {
        self.indexed_upto().and(self.index.get().cloned())
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The catalog (meta-group log) position the index has committed.
    pub fn indexed_upto(&self) -> Option<u64> {
        position(&self.indexed_upto)
    }

    /// Whether the index has caught up with the meta feed as of this node's start.
    pub fn is_caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    /// Full rebuilds from a catalog snapshot since start.
    pub fn n_rebuilds(&self) -> u64 {
        self.n_rebuilds.load(Ordering::Acquire)
    }

    /// The cached page for `key` if it was computed at the current generation.
    pub fn cached(&self, key: &str) -> Option<Arc<CachedPage>> {
        let page = self.results.get(key)?;
        (page.generation == self.generation()).then_some(page)
    }

    /// Caches `bytes` for `key`, computed from the index at `generation` (read *before* the
    /// search, so a commit racing with it makes the entry stale, never wrongly fresh).
    pub fn remember(&self, key: String, generation: u64, bytes: Bytes) {
        if generation == self.generation() {
            self.results
                .insert(key, Arc::new(CachedPage { generation, bytes }));
        }
    }

    /// Installs the index this node searches; the first one installed stays (the indexing
    /// task adopts an index installed before it opened its own).
    pub(crate) fn install(&self, index: Arc<SearchIndex>) -> Arc<SearchIndex> {
        self.index.get_or_init(|| index).clone()
    }

    /// Records a commit at `indexed_upto`: cached pages become stale.
    pub(crate) fn committed(&self, indexed_upto: u64) {
        self.indexed_upto.store(indexed_upto, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.results.invalidate_all();
        self.check_caught_up();
    }

    fn set_startup_position(&self, position: u64) {
        let _ = self.startup_position.compare_exchange(
            u64::MAX,
            position,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        self.check_caught_up();
    }

    fn check_caught_up(&self) {
        let target = self.startup_position.load(Ordering::Acquire);
        if target == u64::MAX || self.caught_up.load(Ordering::Acquire) {
            return;
        }
        if self.indexed_upto().is_some_and(|upto| upto >= target) {
            self.caught_up.store(true, Ordering::Release);
            let events = self.index.get().map(|i| i.num_docs()).unwrap_or(0);
            tracing::info!(
                indexed_upto = self.indexed_upto().unwrap_or(0),
                events,
                "search index caught up"
            );
        }
    }
}

/// A position kept in an atomic, `u64::MAX` meaning none.
fn position(slot: &AtomicU64) -> Option<u64> {
    match slot.load(Ordering::Acquire) {
        u64::MAX => None,
        position => Some(position),
    }
}

/// A search error as the API answers it: bad input is a 400 naming the parameter.
pub fn search_error(error: SearchError) -> ApiError {
    let field = match &error {
        SearchError::InvalidLimit { .. } => "limit",
        SearchError::QueryTooLong { .. } | SearchError::TooManyTerms { .. } => "q",
        SearchError::InvalidFilter { filter, .. } => filter,
        SearchError::InvalidDateRange { .. } => "from",
        SearchError::InvalidCursor(_) => "cursor",
        _ => return ApiError::Internal(format!("search: {error}")),
    };
    ApiError::invalid_field(field, error.to_string())
}

/// The index document of `event`, with its venue, its performers (those found) and its
/// availability (`None`: seats not known here yet, taken as all available).
pub fn event_doc(
    event: &Event,
    venue: Option<&Venue>,
    performers: &[Arc<Performer>],
    availability: Option<(u64, u64)>,
) -> EventDoc {
    let prices = venue
        .into_iter()
        .flat_map(|v| v.sections.iter().map(|s| s.price.amount));
    let (min_price_minor, max_price_minor) =
        prices.fold((u64::MAX, 0), |(lo, hi), p| (lo.min(p), hi.max(p)));
    let capacity = u64::from(event.capacity);
    let (available, total) = availability.unwrap_or((capacity, capacity));
    EventDoc {
        event_id: event.event_id.clone(),
        name: event.name.clone(),
        description: event.description.clone(),
        category: event.category.clone(),
        performers: performers.iter().map(|p| p.name.clone()).collect(),
        performer_ids: performers.iter().map(|p| p.performer_id.clone()).collect(),
        venue_name: venue.map(|v| v.name.clone()).unwrap_or_default(),
        city: venue.map(|v| v.city.clone()).unwrap_or_default(),
        country: venue.map(|v| v.country.clone()).unwrap_or_default(),
        starts_at_ms: i64::try_from(event.starts_at_ms).unwrap_or(i64::MAX),
        min_price_minor: if min_price_minor == u64::MAX {
            0
        } else {
            min_price_minor
        },
        max_price_minor,
        currency: event.currency.clone(),
        available,
        total,
        on_sale: event.on_sale,
    }
}

/// Where the catalog documents of a doc come from.
trait Lookup {
    fn venue(&self, id: &str) -> Option<Arc<Venue>>;
    fn performer(&self, id: &str) -> Option<Arc<Performer>>;
}

impl Lookup for CatalogCache {
    fn venue(&self, id: &str) -> Option<Arc<Venue>> {
        CatalogCache::venue(self, id)
    }
    fn performer(&self, id: &str) -> Option<Arc<Performer>> {
        CatalogCache::performer(self, id)
    }
}

impl Lookup for Maps {
    fn venue(&self, id: &str) -> Option<Arc<Venue>> {
        self.venues.get(id).cloned()
    }
    fn performer(&self, id: &str) -> Option<Arc<Performer>> {
        self.performers.get(id).cloned()
    }
}

/// The event's current availability from the seat cache: (available, total).
fn availability(seats: &SeatCache, event_id: &str, now_ms: u64) -> Option<(u64, u64)> {
    let event_seats = seats.get(event_id)?;
    let (_, counts) = event_seats.counts(now_ms);
    Some((u64::from(counts.available), u64::from(counts.total())))
}

fn doc_with(lookup: &dyn Lookup, seats: &SeatCache, event: &Event, now_ms: u64) -> EventDoc {
    let venue = lookup.venue(&event.venue_id);
    let performers: Vec<Arc<Performer>> = event
        .performer_ids
        .iter()
        .filter_map(|id| lookup.performer(id))
        .collect();
    event_doc(
        event,
        venue.as_deref(),
        &performers,
        availability(seats, &event.event_id, now_ms),
    )
}

/// What the feed reader hands the indexing loop.
enum Work {
    /// Replace everything with `docs`, the catalog as of `position`.
    Rebuild { docs: Vec<EventDoc>, position: u64 },
    /// Apply `changes`, then record `position`.
    Changes {
        changes: Vec<IndexChange>,
        position: u64,
    },
}

/// The index changes for the catalog documents `touched` (kind, id), as the catalog cache
/// has them now. Venue and performer changes re-index every event that shows them.
fn changes_for(
    touched: &BTreeSet<(String, String)>,
    catalog: &CatalogCache,
    seats: &SeatCache,
    now_ms: u64,
) -> Vec<IndexChange> {
    let mut event_ids: BTreeSet<String> = BTreeSet::new();
    let mut venues: BTreeSet<&str> = BTreeSet::new();
    let mut performers: BTreeSet<&str> = BTreeSet::new();
    for (kind, id) in touched {
        match kind.as_str() {
            KIND_EVENT => {
                event_ids.insert(id.clone());
            }
            KIND_VENUE => {
                venues.insert(id);
            }
            KIND_PERFORMER => {
                performers.insert(id);
            }
            _ => {}
        }
    }
    if !venues.is_empty() || !performers.is_empty() {
        for event in catalog.events() {
            if venues.contains(event.venue_id.as_str())
                || event
                    .performer_ids
                    .iter()
                    .any(|p| performers.contains(p.as_str()))
            {
                event_ids.insert(event.event_id.clone());
            }
        }
    }
    event_ids
        .into_iter()
        .map(|id| match catalog.event(&id) {
            Some(event) => IndexChange::Upsert(doc_with(catalog, seats, &event, now_ms)),
            None => IndexChange::Delete { event_id: id },
        })
        .collect()
}

/// Opens the on-disk index in `dir` (recreating it when it is of another schema or its
/// payload is unreadable), or an index in RAM. Blocking.
fn open_index(dir: Option<&Path>) -> Result<SearchIndex, SearchError> {
    let Some(dir) = dir else {
        return SearchIndex::create_in_ram();
    };
    match SearchIndex::open_or_create_in_dir(dir) {
        Err(error @ (SearchError::IncompatibleIndex(_) | SearchError::CorruptPayload(_))) => {
            tracing::warn!(%error, dir = %dir.display(), "rebuilding the search index from scratch");
            std::fs::remove_dir_all(dir)?;
            SearchIndex::open_or_create_in_dir(dir)
        }
        other => other,
    }
}

/// Runs `f` on the indexer on a blocking thread and gives the indexer back.
async fn blocking<R: Send + 'static>(
    indexer: &mut Option<Indexer>,
    f: impl FnOnce(&mut Indexer) -> R + Send + 'static,
) -> Option<R> {
    let mut owned = indexer.take()?;
    match tokio::task::spawn_blocking(move || {
        let result = f(&mut owned);
        (owned, result)
    })
    .await
    {
        Ok((owned, result)) => {
            *indexer = Some(owned);
            Some(result)
        }
        Err(error) => {
            // A panic inside tantivy: the indexer is gone with it; the loop stops.
            tracing::error!(%error, "the search indexer panicked");
            None
        }
    }
}

/// Builds (or resumes) the search index and keeps it current until the task is dropped.
pub async fn run_search_indexer(
    search: Arc<SearchState>,
    catalog: Arc<CatalogCache>,
    seats: Arc<SeatCache>,
    inventory: InventoryClient,
    clock: Arc<dyn Clock>,
    dir: Option<PathBuf>,
) {
    let opened = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || open_index(dir.as_deref())).await
    };
    let index = match opened {
        Ok(Ok(index)) => Arc::new(index),
        Ok(Err(error)) => {
            tracing::error!(%error, dir = ?dir, "cannot open the search index on disk; indexing in RAM");
            match tokio::task::spawn_blocking(SearchIndex::create_in_ram).await {
                Ok(Ok(index)) => Arc::new(index),
                _ => {
                    return tracing::error!(
                        "cannot create a search index; search stays unavailable"
                    )
                }
            }
        }
        Err(error) => return tracing::error!(%error, "opening the search index panicked"),
    };
    let index = search.install(index);
    let start = index.indexed_upto();
    if let Some(position) = start {
        tracing::info!(
            position,
            events = index.num_docs(),
            "resuming the search index from disk"
        );
        search.indexed_upto.store(position, Ordering::Release);
    }

    let (tx, rx) = mpsc::channel(WORK_QUEUE_PAGES);
    let mut tasks = JoinSet::new();
    tasks.spawn(read_catalog_feed(
        tx,
        inventory,
        catalog.clone(),
        seats.clone(),
        clock.clone(),
        search.clone(),
        start,
    ));
    index_loop(rx, Indexer::new(index), search, catalog, seats, clock).await;
    // The indexer is gone (a panic): keep the reader from queueing forever.
    tasks.abort_all();
}

/// Follows the meta group's feed from `start` and turns pages into [`Work`].
async fn read_catalog_feed(
    tx: mpsc::Sender<Work>,
    inventory: InventoryClient,
    catalog: Arc<CatalogCache>,
    seats: Arc<SeatCache>,
    clock: Arc<dyn Clock>,
    search: Arc<SearchState>,
    start: Option<u64>,
) {
    // `u64::MAX` asks for a snapshot at once.
    let mut from = start.unwrap_or(u64::MAX);
    let mut first = true;
    let mut backoff = Duration::from_millis(FEED_RETRY_MIN_MS);
    loop {
        // The first read does not wait for news: readiness needs the current position.
        let wait_ms = if first || from == u64::MAX {
            0
        } else {
            FEED_WAIT_MS
        };
        let page = match inventory.feed(META_GROUP, from, wait_ms).await {
            Ok(page) => {
                backoff = Duration::from_millis(FEED_RETRY_MIN_MS);
                page
            }
            Err(error) => {
                tracing::debug!(%error, "search: reading the meta feed failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(FEED_RETRY_MAX_MS));
                continue;
            }
        };
        let (work, position) = match page {
            FeedPage::Reset { applied, .. } if from != u64::MAX && applied < from => {
                // A replica behind this index answered: its snapshot is older than what is
                // indexed. Ask again rather than rebuild backwards.
                tracing::debug!(
                    applied,
                    from,
                    "search: the feed answered from a replica behind the index"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(FEED_RETRY_MAX_MS));
                continue;
            }
            FeedPage::Reset {
                applied, snapshot, ..
            } => {
                // Availability comes from the seat cache; wait for the catalog cache too, so
                // that later pages find documents at least this new.
                catalog
                    .wait_applied(applied, Duration::from_millis(CATALOG_WAIT_SLICE_MS))
                    .await;
                // Decoding and building a whole catalog is CPU work: not on an async worker.
                let (now_ms, seats) = (clock.now_ms(), seats.clone());
                let built = tokio::task::spawn_blocking(move || {
                    let snapshot = Maps::decode(&snapshot.catalog);
                    snapshot
                        .events
                        .values()
                        .map(|event| doc_with(&snapshot, &seats, event, now_ms))
                        .collect::<Vec<_>>()
                })
                .await;
                let Ok(docs) = built else {
                    return tracing::error!("building search documents from a snapshot panicked");
                };
                tracing::info!(
                    position = applied,
                    events = docs.len(),
                    "rebuilding the search index from a catalog snapshot"
                );
                (
                    Work::Rebuild {
                        docs,
                        position: applied,
                    },
                    applied,
                )
            }
            FeedPage::Changes { changes, upto, .. } => {
                let touched = catalog_touched(&changes);
                if !touched.is_empty() {
                    catalog
                        .wait_applied(upto, Duration::from_millis(CATALOG_WAIT_SLICE_MS))
                        .await;
                }
                let changes = changes_for(&touched, &catalog, &seats, clock.now_ms());
                (
                    Work::Changes {
                        changes,
                        position: upto,
                    },
                    upto,
                )
            }
        };
        if first {
            search.set_startup_position(position);
            first = false;
        }
        if tx.send(work).await.is_err() {
            return;
        }
        from = position;
    }
}

/// Owns the indexer: applies work, commits batches when due, refreshes availability.
async fn index_loop(
    mut rx: mpsc::Receiver<Work>,
    indexer: Indexer,
    search: Arc<SearchState>,
    catalog: Arc<CatalogCache>,
    seats: Arc<SeatCache>,
    clock: Arc<dyn Clock>,
) {
    let epoch = Instant::now();
    let since_start_ms = move || epoch.elapsed().as_millis() as u64;
    // The position recorded last (committed or pending): what availability upserts go under.
    let mut position = indexer.index().indexed_upto();
    let mut due_at_ms: Option<u64> = None;
    let mut indexer = Some(indexer);
    let mut refresh = tokio::time::interval(Duration::from_millis(AVAILABILITY_REFRESH_MS));
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let sleep_ms = due_at_ms
            .map(|due| due.saturating_sub(since_start_ms()))
            .unwrap_or(IDLE_WAKE_MS);
        let report = tokio::select! {
            work = rx.recv() => {
                let Some(work) = work else { return };
                match work {
                    Work::Rebuild { docs, position: at } => {
                        let n_docs = docs.len();
                        let started = Instant::now();
                        let rebuilt = blocking(&mut indexer, move |indexer| rebuild(indexer, &docs, at)).await;
                        match rebuilt {
                            Some(Ok(())) => {
                                position = Some(at);
                                due_at_ms = None;
                                search.n_rebuilds.fetch_add(1, Ordering::AcqRel);
                                search.committed(at);
                                tracing::info!(position = at, events = n_docs, elapsed_ms = started.elapsed().as_millis() as u64, "search index rebuilt");
                            }
                            Some(Err(error)) => {
                                // The writer may hold part of a rebuild: committing later pages
                                // on top of it would record positions it does not reflect. Stop
                                // here; searches keep the last commit, a restart rebuilds.
                                return tracing::error!(%error, "rebuilding the search index failed; search stops following the catalog");
                            }
                            None => return,
                        }
                        None
                    }
                    Work::Changes { changes, position: at } => {
                        if position == Some(at) && changes.is_empty() {
                            // Nothing new (a resumed index that is current): only readiness.
                            search.check_caught_up();
                            None
                        } else {
                            let under = position.unwrap_or(at);
                            let now_ms = since_start_ms();
                            let applied = blocking(&mut indexer, move |indexer| {
                                let report = apply_all(indexer, &changes, under, now_ms);
                                indexer.advance(at, now_ms);
                                (report, indexer.due_at_ms())
                            })
                            .await;
                            let Some((report, due)) = applied else { return };
                            position = Some(at);
                            due_at_ms = due;
                            report
                        }
                    }
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(sleep_ms)) => {
                let now_ms = since_start_ms();
                let committed = blocking(&mut indexer, move |indexer| (indexer.commit_if_due(now_ms), indexer.due_at_ms())).await;
                let Some((result, due)) = committed else { return };
                due_at_ms = due;
                match result {
                    Ok(report) => report,
                    Err(error) => {
                        tracing::error!(%error, "committing the search index failed");
                        None
                    }
                }
            }
            _ = refresh.tick() => {
                let Some(under) = position else { continue };
                let dirty = seats.take_search_dirty(MAX_AVAILABILITY_UPSERTS);
                if dirty.is_empty() {
                    continue;
                }
                let now_ms = clock.now_ms();
                let changes: Vec<IndexChange> = dirty
                    .iter()
                    .filter_map(|id| catalog.event(id))
                    .map(|event| IndexChange::Upsert(doc_with(catalog.as_ref(), &seats, &event, now_ms)))
                    .collect();
                let at_ms = since_start_ms();
                let applied = blocking(&mut indexer, move |indexer| {
                    let report = apply_all(indexer, &changes, under, at_ms);
                    (report, indexer.due_at_ms())
                })
                .await;
                let Some((report, due)) = applied else { return };
                due_at_ms = due;
                report
            }
        };
        if let Some(report) = report {
            search.committed(report.indexed_upto);
        }
    }
}

/// Applies `changes` under catalog position `under` (blocking when a full batch commits);
/// the last commit this caused, if any. A change the index refuses is logged and skipped.
fn apply_all(
    indexer: &mut Indexer,
    changes: &[IndexChange],
    under: u64,
    now_ms: u64,
) -> Option<CommitReport> {
    let mut report = None;
    for change in changes {
        match indexer.apply(change, under, now_ms) {
            Ok(Some(r)) => report = Some(r),
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "search skips a change it cannot index"),
        }
    }
    report
}

/// Replaces the whole index with `docs` at `position` in one commit, then merges it into
/// one segment. Blocking.
fn rebuild(indexer: &mut Indexer, docs: &[EventDoc], position: u64) -> Result<(), SearchError> {
    // Whatever is pending is committed first under its own (older) position.
    indexer.flush()?;
    let index = indexer.index().clone();
    index.delete_all()?;
    for doc in docs {
        if let Err(error) = index.upsert(doc) {
            tracing::warn!(%error, "search skips an event of the snapshot");
        }
    }
    index.commit(position)?;
    if let Err(error) = index.compact() {
        // A background merge holds a segment: tantivy's merge policy will get there.
        tracing::debug!(%error, "compacting the search index after a rebuild");
    }
    *indexer = Indexer::new(index);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Money, Row, Section};
    use boxoffice_search::SearchQuery;

    fn venue(id: &str, name: &str, city: &str) -> Venue {
        let section = |n: u32, amount: u64| Section {
            id: format!("s{n}"),
            name: format!("S{n}"),
            price: Money {
                amount,
                currency: "USD".into(),
            },
            rows: vec![Row {
                name: "1".into(),
                seats: 2,
            }],
        };
        Venue {
            venue_id: id.into(),
            name: name.into(),
            city: city.into(),
            country: "US".into(),
            address: String::new(),
            sections: vec![section(1, 4_500), section(2, 12_950)],
            capacity: 4,
            currency: "USD".into(),
            created_at: String::new(),
            request_digest: String::new(),
        }
    }

    fn performer(id: &str, name: &str) -> Performer {
        Performer {
            performer_id: id.into(),
            name: name.into(),
            description: String::new(),
            created_at: String::new(),
            request_digest: String::new(),
        }
    }

    fn event(id: &str, name: &str, venue_id: &str, performer_ids: &[&str]) -> Event {
        Event {
            venue_id: venue_id.into(),
            performer_ids: performer_ids.iter().map(|p| p.to_string()).collect(),
            capacity: 4,
            ..crate::cache::tests::event(id, name)
        }
    }

    fn put<T: serde::Serialize>(cache: &CatalogCache, kind: &str, id: &str, doc: &T) {
        cache.put(kind, id, Some(&serde_json::to_vec(doc).expect("json")));
    }

    #[test]
    fn a_doc_carries_venue_performers_prices_and_availability() {
        let v = venue("ve_1", "Soldier Field", "Chicago");
        let p = Arc::new(performer("pe_1", "Taylor Swift"));
        let e = event("ev_1", "The Eras Tour", "ve_1", &["pe_1", "pe_missing"]);
        let doc = event_doc(&e, Some(&v), &[p], Some((3, 4)));
        assert_eq!(doc.performers, ["Taylor Swift"]);
        assert_eq!(doc.performer_ids, ["pe_1"]);
        assert_eq!(
            (
                doc.venue_name.as_str(),
                doc.city.as_str(),
                doc.country.as_str()
            ),
            ("Soldier Field", "Chicago", "US")
        );
        assert_eq!((doc.min_price_minor, doc.max_price_minor), (4_500, 12_950));
        assert_eq!((doc.available, doc.total), (3, 4));
        assert_eq!(doc.starts_at_ms, 1_811_876_400_000);
        // Seats not known yet: the whole capacity is available.
        let unknown = event_doc(&e, None, &[], None);
        assert_eq!(
            (unknown.available, unknown.total, unknown.min_price_minor),
            (4, 4, 0)
        );
    }

    #[test]
    fn venue_and_performer_changes_touch_every_event_showing_them() {
        let catalog = CatalogCache::new();
        let seats = SeatCache::new();
        put(&catalog, KIND_VENUE, "ve_1", &venue("ve_1", "Hall", "Oslo"));
        put(
            &catalog,
            KIND_VENUE,
            "ve_2",
            &venue("ve_2", "Arena", "Bergen"),
        );
        put(
            &catalog,
            KIND_PERFORMER,
            "pe_1",
            &performer("pe_1", "Aurora"),
        );
        put(
            &catalog,
            KIND_EVENT,
            "ev_1",
            &event("ev_1", "One", "ve_1", &[]),
        );
        put(
            &catalog,
            KIND_EVENT,
            "ev_2",
            &event("ev_2", "Two", "ve_2", &["pe_1"]),
        );
        put(
            &catalog,
            KIND_EVENT,
            "ev_3",
            &event("ev_3", "Three", "ve_2", &[]),
        );
        let ids = |changes: Vec<IndexChange>| -> Vec<String> {
            changes
                .into_iter()
                .map(|c| match c {
                    IndexChange::Upsert(doc) => format!("+{}", doc.event_id),
                    IndexChange::Delete { event_id } => format!("-{event_id}"),
                })
                .collect()
        };
        let touched = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, i)| (k.to_string(), i.to_string()))
                .collect::<BTreeSet<_>>()
        };
        assert_eq!(
            ids(changes_for(
                &touched(&[(KIND_PERFORMER, "pe_1")]),
                &catalog,
                &seats,
                0
            )),
            ["+ev_2"]
        );
        assert_eq!(
            ids(changes_for(
                &touched(&[(KIND_VENUE, "ve_2")]),
                &catalog,
                &seats,
                0
            )),
            ["+ev_2", "+ev_3"]
        );
        // A deleted event becomes a delete; other kinds touch nothing.
        assert_eq!(
            ids(changes_for(
                &touched(&[(KIND_EVENT, "ev_gone"), ("placement", "x")]),
                &catalog,
                &seats,
                0
            )),
            ["-ev_gone"]
        );
    }

    #[test]
    fn bad_search_input_names_the_parameter() {
        let field = |error: SearchError| match search_error(error) {
            ApiError::InvalidRequest { field, .. } => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(SearchError::InvalidLimit { limit: 0, max: 100 }).as_deref(),
            Some("limit")
        );
        assert_eq!(
            field(SearchError::QueryTooLong {
                n_chars: 300,
                max: 256
            })
            .as_deref(),
            Some("q")
        );
        assert_eq!(
            field(SearchError::InvalidFilter {
                filter: "city",
                reason: "too long"
            })
            .as_deref(),
            Some("city")
        );
        assert_eq!(
            field(SearchError::InvalidDateRange {
                from_ms: 2,
                to_ms: 1
            })
            .as_deref(),
            Some("from")
        );
        assert_eq!(
            field(SearchError::InvalidCursor("malformed")).as_deref(),
            Some("cursor")
        );
        assert!(matches!(
            search_error(SearchError::WriterPoisoned),
            ApiError::Internal(_)
        ));
    }

    #[test]
    fn cached_pages_go_stale_when_the_index_commits() {
        let search = SearchState::new();
        let key = SearchQuery::default().normalized_key();
        search.remember(
            key.clone(),
            search.generation(),
            Bytes::from_static(b"page at 0"),
        );
        assert_eq!(
            search.cached(&key).map(|p| p.bytes.clone()),
            Some(Bytes::from_static(b"page at 0"))
        );
        search.committed(7);
        assert!(search.cached(&key).is_none(), "a commit invalidates");
        assert_eq!(search.indexed_upto(), Some(7));
        // A page computed before a commit but stored after it is never served.
        let before = search.generation();
        search.committed(8);
        search.remember(key.clone(), before, Bytes::from_static(b"stale"));
        assert!(search.cached(&key).is_none());
    }

    #[test]
    fn caught_up_once_the_startup_position_is_committed() {
        let search = SearchState::new();
        search.committed(5);
        assert!(
            !search.is_caught_up(),
            "the startup position is not known yet"
        );
        search.set_startup_position(9);
        assert!(!search.is_caught_up());
        search.committed(8);
        assert!(!search.is_caught_up());
        search.committed(9);
        assert!(search.is_caught_up());
        // The target is the first position seen, not a moving one.
        search.set_startup_position(100);
        assert!(search.is_caught_up());
    }

    #[test]
    fn a_commit_forced_mid_page_records_the_previous_position() {
        let index = Arc::new(SearchIndex::create_in_ram().expect("index"));
        // Two changes fill a batch: the third change of the page forces nothing more, but the
        // second forces a commit while the page is half applied.
        let mut indexer = Indexer::with_limits(index.clone(), 250, 2);
        let v = venue("ve_1", "Hall", "Oslo");
        let page: Vec<IndexChange> = (0..3)
            .map(|i| {
                IndexChange::Upsert(event_doc(
                    &event(&format!("ev_{i}"), "Show", "ve_1", &[]),
                    Some(&v),
                    &[],
                    None,
                ))
            })
            .collect();
        let report = apply_all(&mut indexer, &page, 5, 0).expect("a full batch commits");
        assert_eq!(
            report.indexed_upto, 5,
            "the page's own position is not recorded before all of it is in"
        );
        assert_eq!(index.indexed_upto(), Some(5));
        indexer.advance(9, 0);
        assert_eq!(
            index.indexed_upto(),
            Some(5),
            "nothing is recorded until the next commit"
        );
        indexer.flush().expect("flush");
        assert_eq!((index.indexed_upto(), index.num_docs()), (Some(9), 3));
    }

    #[test]
    fn a_rebuild_replaces_everything_in_one_commit() {
        let index = Arc::new(SearchIndex::create_in_ram().expect("index"));
        let mut indexer = Indexer::new(index.clone());
        let v = venue("ve_1", "Hall", "Oslo");
        let old = event_doc(
            &event("ev_old", "Old Show", "ve_1", &[]),
            Some(&v),
            &[],
            None,
        );
        indexer
            .apply(&IndexChange::Upsert(old), 3, 0)
            .expect("apply");
        let fresh: Vec<EventDoc> = ["Aurora Live", "Sigrid Live"]
            .iter()
            .enumerate()
            .map(|(i, name)| {
                event_doc(
                    &event(&format!("ev_{i}"), name, "ve_1", &[]),
                    Some(&v),
                    &[],
                    None,
                )
            })
            .collect();
        rebuild(&mut indexer, &fresh, 10).expect("rebuild");
        assert_eq!(index.indexed_upto(), Some(10));
        assert_eq!(index.num_docs(), 2);
        let hits = |q: &str| {
            let query = SearchQuery {
                q: Some(q.into()),
                ..SearchQuery::default()
            };
            index
                .search(&query)
                .expect("search")
                .hits
                .into_iter()
                .map(|h| h.event_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(hits("old show"), Vec::<String>::new());
        assert_eq!(hits("sigrd"), ["ev_1"]);
        assert_eq!(indexer.due_at_ms(), None, "nothing pending after a rebuild");
    }
}
