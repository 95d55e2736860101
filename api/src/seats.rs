//! The seat cache: every event's seat map, kept current by following each shard's change
//! feed, and the live seat-map fan-out behind `GET /v1/events/{id}/seats/stream`.
//!
//! One follower task per shard group reads the group's feed (a snapshot first, then
//! changes) and applies seat changes here; reads of availability never touch Raft. For live
//! maps, changes to an event somebody watches are collected per seat (a later change to the
//! same seat replaces an earlier one) and flushed every [`COALESCE_INTERVAL_MS`] as one
//! pre-rendered SSE payload to a bounded broadcast channel shared by every watcher of that
//! event on this node; a watcher that falls [`STREAM_BUFFER_BATCHES`] behind is dropped.
//!
//! Over 600 lines, a quarter of them tests: the feed followers, the per-event seat state and
//! counts, the rendered map and the live fan-out share the one `EventSeats` type and are
//! easiest to check side by side.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use boxoffice_raft::types::{Change, GroupId, SeatSpec, SeatStatus};
use boxoffice_raft::wire::FeedPage;
use boxoffice_raft::InventoryClient;
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::clock::{rfc3339_from_ms, Clock};

/// How long one feed read waits for news before asking again.
pub const FEED_WAIT_MS: u64 = 10_000;
/// Pause after a failed feed read, doubling up to [`FEED_RETRY_MAX_MS`].
pub const FEED_RETRY_MIN_MS: u64 = 100;
pub const FEED_RETRY_MAX_MS: u64 = 5_000;
/// How often pending changes are flushed to live watchers.
pub const COALESCE_INTERVAL_MS: u64 = 100;
/// Batches a watcher may fall behind before it is dropped.
pub const STREAM_BUFFER_BATCHES: usize = 32;

/// Status of a seat as clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SeatState {
    Available,
    Held,
    Sold,
}

/// What a stored status means at `now_ms` (a hold past its expiry is available).
pub fn seat_state(status: &SeatStatus, now_ms: u64) -> SeatState {
    match status {
        SeatStatus::Available => SeatState::Available,
        SeatStatus::Held { until_ms } if *until_ms > now_ms => SeatState::Held,
        SeatStatus::Held { .. } => SeatState::Available,
        SeatStatus::Sold => SeatState::Sold,
    }
}

/// Seat counts of one section (or of the event).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub available: u32,
    pub held: u32,
    pub sold: u32,
}

impl Counts {
    fn add(&mut self, state: SeatState) {
        match state {
            SeatState::Available => self.available += 1,
            SeatState::Held => self.held += 1,
            SeatState::Sold => self.sold += 1,
        }
    }

    pub fn total(&self) -> u32 {
        self.available + self.held + self.sold
    }
}

struct Statuses {
    status: Vec<SeatStatus>,
    /// Log index of the last change applied (or of the snapshot).
    version: u64,
}

/// A rendered seat map, reusable while nothing changed and no hold expired.
struct RenderedMap {
    version: u64,
    valid_until_ms: u64,
    bytes: Bytes,
}

/// One event's seats.
pub struct EventSeats {
    pub event_id: String,
    pub group: GroupId,
    pub specs: Vec<SeatSpec>,
    index: HashMap<String, u32>,
    /// Section names in layout order and each seat's section.
    pub sections: Vec<String>,
    section_of: Vec<u16>,
    statuses: RwLock<Statuses>,
    stream: broadcast::Sender<Bytes>,
    pending: Mutex<BTreeMap<u32, SeatStatus>>,
    rendered: Mutex<Option<RenderedMap>>,
}

#[derive(Serialize)]
struct SeatOut<'a> {
    id: &'a str,
    section: &'a str,
    row: &'a str,
    number: u32,
    price: PriceOut<'a>,
    status: SeatState,
}

#[derive(Serialize)]
struct PriceOut<'a> {
    amount: u64,
    currency: &'a str,
}

#[derive(Serialize)]
struct SeatMapOut<'a> {
    event_id: &'a str,
    seats: Vec<SeatOut<'a>>,
    as_of: String,
    version: u64,
}

#[derive(Serialize)]
struct ChangeOut<'a> {
    id: &'a str,
    status: SeatState,
}

#[derive(Serialize)]
struct BatchOut<'a> {
    changes: Vec<ChangeOut<'a>>,
    as_of: String,
}

impl EventSeats {
    fn new(
        event_id: String,
        group: GroupId,
        seats: Vec<(SeatSpec, SeatStatus)>,
        version: u64,
        stream: Option<broadcast::Sender<Bytes>>,
    ) -> EventSeats {
        let mut specs = Vec::with_capacity(seats.len());
        let mut status = Vec::with_capacity(seats.len());
        let mut index = HashMap::with_capacity(seats.len());
        let mut sections: Vec<String> = Vec::new();
        let mut section_of = Vec::with_capacity(seats.len());
        for (i, (spec, s)) in seats.into_iter().enumerate() {
            index.insert(spec.id.clone(), i as u32);
            let section_idx = match sections.iter().position(|name| *name == spec.section) {
                Some(idx) => idx,
                None => {
                    sections.push(spec.section.clone());
                    sections.len() - 1
                }
            };
            section_of.push(section_idx.min(u16::MAX as usize) as u16);
            specs.push(spec);
            status.push(s);
        }
        EventSeats {
            event_id,
            group,
            specs,
            index,
            sections,
            section_of,
            statuses: RwLock::new(Statuses { status, version }),
            stream: stream.unwrap_or_else(|| broadcast::channel(STREAM_BUFFER_BATCHES).0),
            pending: Mutex::new(BTreeMap::new()),
            rendered: Mutex::new(None),
        }
    }

    /// Seats read straight from the shard, not followed (a view served while the feed is
    /// still catching up with a new event).
    pub fn detached(
        event_id: &str,
        group: GroupId,
        seats: Vec<(SeatSpec, SeatStatus)>,
        version: u64,
    ) -> EventSeats {
        EventSeats::new(event_id.to_owned(), group, seats, version, None)
    }

    fn statuses(&self) -> std::sync::RwLockReadGuard<'_, Statuses> {
        self.statuses.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn version(&self) -> u64 {
        self.statuses().version
    }

    /// Whether the event has a seat with this id.
    pub fn has_seat(&self, seat_id: &str) -> bool {
        self.index.contains_key(seat_id)
    }

    pub fn spec(&self, seat_id: &str) -> Option<&SeatSpec> {
        self.index
            .get(seat_id)
            .and_then(|&i| self.specs.get(i as usize))
    }

    /// Counts per section (in [`Self::sections`] order) and in total, at `now_ms`.
    pub fn counts(&self, now_ms: u64) -> (Vec<Counts>, Counts) {
        let statuses = self.statuses();
        let mut per_section = vec![Counts::default(); self.sections.len()];
        let mut total = Counts::default();
        for (i, status) in statuses.status.iter().enumerate() {
            let state = seat_state(status, now_ms);
            total.add(state);
            if let Some(c) = self
                .section_of
                .get(i)
                .and_then(|&s| per_section.get_mut(s as usize))
            {
                c.add(state);
            }
        }
        (per_section, total)
    }

    /// The seat map as JSON, rendered once per change (or hold expiry) and shared.
    pub fn seat_map(&self, currency: &str, now_ms: u64) -> Bytes {
        let mut rendered = self.rendered.lock().unwrap_or_else(|p| p.into_inner());
        let statuses = self.statuses();
        if let Some(r) = rendered.as_ref() {
            if r.version == statuses.version && now_ms < r.valid_until_ms {
                return r.bytes.clone();
            }
        }
        let mut valid_until_ms = u64::MAX;
        let seats = self
            .specs
            .iter()
            .zip(&statuses.status)
            .map(|(spec, status)| {
                if let SeatStatus::Held { until_ms } = status {
                    if *until_ms > now_ms {
                        valid_until_ms = valid_until_ms.min(*until_ms);
                    }
                }
                SeatOut {
                    id: &spec.id,
                    section: &spec.section,
                    row: &spec.row,
                    number: spec.number,
                    price: PriceOut {
                        amount: spec.price_minor,
                        currency,
                    },
                    status: seat_state(status, now_ms),
                }
            })
            .collect();
        let out = SeatMapOut {
            event_id: &self.event_id,
            seats,
            as_of: rfc3339_from_ms(now_ms),
            version: statuses.version,
        };
        let bytes = Bytes::from(serde_json::to_vec(&out).unwrap_or_default());
        *rendered = Some(RenderedMap {
            version: statuses.version,
            valid_until_ms,
            bytes: bytes.clone(),
        });
        bytes
    }

    /// Every seat as one SSE batch: what a new watcher gets first.
    pub fn full_batch(&self, now_ms: u64) -> Bytes {
        let statuses = self.statuses();
        let changes = self
            .specs
            .iter()
            .zip(&statuses.status)
            .map(|(spec, s)| ChangeOut {
                id: &spec.id,
                status: seat_state(s, now_ms),
            })
            .collect();
        Bytes::from(
            serde_json::to_vec(&BatchOut {
                changes,
                as_of: rfc3339_from_ms(now_ms),
            })
            .unwrap_or_default(),
        )
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Bytes> {
        self.stream.subscribe()
    }

    pub fn n_watchers(&self) -> usize {
        self.stream.receiver_count()
    }

    /// Applies one seat change; true if the event has watchers and the change is pending.
    fn apply(&self, seat_id: &str, status: SeatStatus, version: u64) -> bool {
        let Some(&i) = self.index.get(seat_id) else {
            return false;
        };
        {
            let mut statuses = self.statuses.write().unwrap_or_else(|p| p.into_inner());
            if let Some(slot) = statuses.status.get_mut(i as usize) {
                *slot = status.clone();
            }
            statuses.version = statuses.version.max(version);
        }
        if self.stream.receiver_count() == 0 {
            return false;
        }
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(i, status);
        true
    }

    /// Replaces every status (after a feed reset); pends the differences for watchers.
    fn replace_all(&self, fresh: &[(SeatSpec, SeatStatus)], version: u64) -> bool {
        let watched = self.stream.receiver_count() > 0;
        let mut diffs = Vec::new();
        {
            let mut statuses = self.statuses.write().unwrap_or_else(|p| p.into_inner());
            for (i, (_, status)) in fresh.iter().enumerate() {
                if let Some(slot) = statuses.status.get_mut(i) {
                    if *slot != *status {
                        *slot = status.clone();
                        diffs.push((i as u32, status.clone()));
                    }
                }
            }
            statuses.version = version;
        }
        if watched && !diffs.is_empty() {
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(diffs);
            return true;
        }
        false
    }

    /// Sends what is pending to the watchers as one batch.
    fn flush(&self, now_ms: u64) {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if pending.is_empty() || self.stream.receiver_count() == 0 {
            return;
        }
        let changes = pending
            .iter()
            .filter_map(|(i, status)| {
                self.specs.get(*i as usize).map(|spec| ChangeOut {
                    id: &spec.id,
                    status: seat_state(status, now_ms),
                })
            })
            .collect();
        let bytes = serde_json::to_vec(&BatchOut {
            changes,
            as_of: rfc3339_from_ms(now_ms),
        })
        .unwrap_or_default();
        // No receivers left is fine: nobody watches any more.
        let _ = self.stream.send(Bytes::from(bytes));
    }
}

/// Every event's seats on this node, by event id.
pub struct SeatCache {
    events: RwLock<HashMap<String, Arc<EventSeats>>>,
    /// Groups followed, and whether each has loaded its first snapshot.
    groups: Mutex<BTreeMap<GroupId, Arc<AtomicBool>>>,
    /// Events with changes pending for watchers.
    dirty: Mutex<HashSet<String>>,
    /// Events whose seats changed since search last re-indexed their availability.
    search_dirty: Mutex<HashSet<String>>,
    /// Open live streams on this node.
    pub n_streams: AtomicUsize,
}

impl Default for SeatCache {
    fn default() -> Self {
        SeatCache::new()
    }
}

impl SeatCache {
    pub fn new() -> SeatCache {
        SeatCache {
            events: RwLock::new(HashMap::new()),
            groups: Mutex::new(BTreeMap::new()),
            dirty: Mutex::new(HashSet::new()),
            search_dirty: Mutex::new(HashSet::new()),
            n_streams: AtomicUsize::new(0),
        }
    }

    pub fn get(&self, event_id: &str) -> Option<Arc<EventSeats>> {
        self.events
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(event_id)
            .cloned()
    }

    pub fn n_events(&self) -> usize {
        self.events.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// How many events each group holds, as far as this node's feeds have brought them.
    pub fn events_per_group(&self) -> BTreeMap<GroupId, usize> {
        let mut counts = BTreeMap::new();
        for event in self
            .events
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            *counts.entry(event.group).or_insert(0) += 1;
        }
        counts
    }

    /// The groups followed so far.
    pub fn groups(&self) -> Vec<GroupId> {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect()
    }

    /// Groups whose first snapshot has not loaded yet.
    pub fn unsynced_groups(&self) -> Vec<GroupId> {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, s)| !s.load(Ordering::Acquire))
            .map(|(g, _)| *g)
            .collect()
    }

    /// Registers `group` to be followed; returns its sync flag if it is new.
    fn track(&self, group: GroupId) -> Option<Arc<AtomicBool>> {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        if groups.contains_key(&group) {
            return None;
        }
        let flag = Arc::new(AtomicBool::new(false));
        groups.insert(group, flag.clone());
        Some(flag)
    }

    /// Up to `max` events whose seats changed since they were last taken (each once, however
    /// many changes): what search re-indexes with fresh availability. The rest wait.
    pub fn take_search_dirty(&self, max: usize) -> Vec<String> {
        let mut dirty = self.search_dirty.lock().unwrap_or_else(|p| p.into_inner());
        if dirty.len() <= max {
            return dirty.drain().collect();
        }
        let taken: Vec<String> = dirty.iter().take(max).cloned().collect();
        for id in &taken {
            dirty.remove(id);
        }
        taken
    }

    fn mark_search_dirty(&self, event_id: &str) {
        let mut dirty = self.search_dirty.lock().unwrap_or_else(|p| p.into_inner());
        if !dirty.contains(event_id) {
            dirty.insert(event_id.to_owned());
        }
    }

    /// Inserts or replaces an event's seats, keeping its watchers.
    fn put(
        &self,
        event_id: &str,
        group: GroupId,
        seats: Vec<(SeatSpec, SeatStatus)>,
        version: u64,
    ) {
        self.mark_search_dirty(event_id);
        let existing = self.get(event_id);
        if let Some(existing) = &existing {
            let same_layout = existing.specs.len() == seats.len()
                && existing.specs.iter().zip(&seats).all(|(a, (b, _))| a == b);
            if same_layout {
                if existing.replace_all(&seats, version) {
                    self.mark_dirty(event_id);
                }
                return;
            }
        }
        let stream = existing.as_ref().map(|e| e.stream.clone());
        let fresh = Arc::new(EventSeats::new(
            event_id.to_owned(),
            group,
            seats,
            version,
            stream,
        ));
        self.events
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(event_id.to_owned(), fresh);
    }

    fn mark_dirty(&self, event_id: &str) {
        self.dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(event_id.to_owned());
    }

    /// Applies one feed reset of `group`.
    fn reset_group(
        &self,
        group: GroupId,
        applied: u64,
        events: Vec<(String, Vec<(SeatSpec, SeatStatus)>)>,
    ) {
        let present: BTreeSet<String> = events.iter().map(|(id, _)| id.clone()).collect();
        for (event_id, seats) in events {
            self.put(&event_id, group, seats, applied);
        }
        self.events
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, e| e.group != group || present.contains(id));
    }

    /// Applies a page of changes; returns the events that were (re)registered and need a
    /// fresh read of their seats.
    fn apply_changes(&self, changes: &[(u64, Change)]) -> BTreeSet<String> {
        let mut registered = BTreeSet::new();
        let mut current: Option<Arc<EventSeats>> = None;
        for (index, change) in changes {
            match change {
                Change::Seat {
                    event_id,
                    seat_id,
                    status,
                } => {
                    if current.as_ref().is_none_or(|e| e.event_id != *event_id) {
                        current = self.get(event_id);
                    }
                    if let Some(event) = &current {
                        if event.apply(seat_id, status.clone(), *index) {
                            self.mark_dirty(event_id);
                        }
                        self.mark_search_dirty(event_id);
                    }
                }
                Change::EventRegistered { event_id } => {
                    registered.insert(event_id.clone());
                }
                _ => {}
            }
        }
        registered
    }

    /// Flushes pending changes of every dirty event to its watchers.
    pub fn flush(&self, now_ms: u64) {
        let dirty = std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()));
        for event_id in dirty {
            if let Some(event) = self.get(&event_id) {
                event.flush(now_ms);
            }
        }
    }
}

/// Reads the page of `group`'s feed after `from` (`u64::MAX`: a snapshot, at once). On
/// failure waits `backoff` (doubling it) and answers `None`; on success resets it.
pub(crate) async fn next_page(
    inventory: &InventoryClient,
    group: GroupId,
    from: u64,
    backoff: &mut Duration,
) -> Option<FeedPage> {
    // `from` past the end makes the replica answer with a snapshot at once.
    let wait_ms = if from == u64::MAX { 0 } else { FEED_WAIT_MS };
    match inventory.feed(group, from, wait_ms).await {
        Ok(page) => {
            *backoff = Duration::from_millis(FEED_RETRY_MIN_MS);
            Some(page)
        }
        Err(error) => {
            tracing::debug!(group, %error, "feed read failed");
            tokio::time::sleep(*backoff).await;
            *backoff = (*backoff * 2).min(Duration::from_millis(FEED_RETRY_MAX_MS));
            None
        }
    }
}

/// Follows `group`'s feed into `cache` until the task is dropped.
async fn follow_group(
    cache: Arc<SeatCache>,
    inventory: InventoryClient,
    group: GroupId,
    synced: Arc<AtomicBool>,
) {
    let mut from = u64::MAX;
    let mut backoff = Duration::from_millis(FEED_RETRY_MIN_MS);
    loop {
        let Some(page) = next_page(&inventory, group, from, &mut backoff).await else {
            continue;
        };
        match page {
            FeedPage::Reset {
                applied, snapshot, ..
            } => {
                let n_events = snapshot.events.len();
                cache.reset_group(group, applied, snapshot.events);
                from = applied;
                if !synced.swap(true, Ordering::AcqRel) {
                    tracing::info!(group, n_events, applied, "seat cache loaded");
                }
            }
            FeedPage::Changes { changes, upto, .. } => {
                let registered = cache.apply_changes(&changes);
                let mut ok = true;
                for event_id in registered {
                    match inventory.event_seats(group, &event_id).await {
                        Ok(seats) => {
                            if let Some(seats) = seats {
                                cache.put(&event_id, group, seats, upto);
                            }
                        }
                        Err(error) => {
                            tracing::debug!(group, %event_id, %error, "reading a new event's seats failed");
                            ok = false;
                            break;
                        }
                    }
                }
                // A failed read is repaired by starting again from a snapshot.
                from = if ok { upto } else { u64::MAX };
            }
        }
    }
}

/// Keeps one follower per inventory group (found in the meta group's table, checked every
/// `GROUP_REFRESH_MS`) and the coalescing flusher, all owned by `tasks`.
pub async fn run_seat_feeds(
    cache: Arc<SeatCache>,
    inventory: InventoryClient,
    clock: Arc<dyn Clock>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    {
        let cache = cache.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(COALESCE_INTERVAL_MS));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                cache.flush(clock.now_ms());
            }
        });
    }
    let mut refresh = tokio::time::interval(Duration::from_millis(GROUP_REFRESH_MS));
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        refresh.tick().await;
        match inventory.refresh_groups().await {
            Ok(groups) => {
                for (group, _) in groups {
                    if group == boxoffice_raft::types::META_GROUP {
                        continue;
                    }
                    if let Some(flag) = cache.track(group) {
                        tasks.spawn(follow_group(cache.clone(), inventory.clone(), group, flag));
                    }
                }
            }
            Err(error) => tracing::debug!(%error, "reading the group table failed"),
        }
        // Reap finished tasks (none should finish; a panic is logged).
        while let Some(result) = tasks.try_join_next() {
            if let Err(error) = result {
                tracing::error!(%error, "a seat feed task ended");
            }
        }
    }
}

/// How often the group table is re-read for new groups.
pub const GROUP_REFRESH_MS: u64 = 5_000;

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, section: &str) -> SeatSpec {
        SeatSpec {
            id: id.into(),
            section: section.into(),
            row: "1".into(),
            number: 1,
            price_minor: 100,
        }
    }

    fn seat(id: &str, section: &str, status: SeatStatus) -> (SeatSpec, SeatStatus) {
        (spec(id, section), status)
    }

    #[test]
    fn counts_treat_expired_holds_as_available() {
        let cache = SeatCache::new();
        cache.put(
            "ev",
            1,
            vec![
                seat("a", "Floor", SeatStatus::Available),
                seat("b", "Floor", SeatStatus::Held { until_ms: 1_000 }),
                seat("c", "Balcony", SeatStatus::Sold),
            ],
            5,
        );
        let event = cache.get("ev").expect("event");
        let (sections, total) = event.counts(999);
        assert_eq!(
            event.sections,
            vec!["Floor".to_owned(), "Balcony".to_owned()]
        );
        assert_eq!(
            sections[0],
            Counts {
                available: 1,
                held: 1,
                sold: 0
            }
        );
        assert_eq!(
            total,
            Counts {
                available: 1,
                held: 1,
                sold: 1
            }
        );
        assert_eq!(
            event.counts(1_000).1,
            Counts {
                available: 2,
                held: 0,
                sold: 1
            }
        );
    }

    #[test]
    fn seat_map_is_rerendered_on_change_and_on_expiry() {
        let cache = SeatCache::new();
        cache.put(
            "ev",
            1,
            vec![
                seat("a", "F", SeatStatus::Held { until_ms: 1_000 }),
                seat("b", "F", SeatStatus::Available),
            ],
            5,
        );
        let event = cache.get("ev").expect("event");
        let first = event.seat_map("USD", 500);
        let text = String::from_utf8_lossy(&first).to_string();
        assert!(text.contains(r#"{"id":"a","section":"F","row":"1","number":1,"price":{"amount":100,"currency":"USD"},"status":"held"}"#), "{text}");
        // Same version, before expiry: the very same bytes.
        assert_eq!(event.seat_map("USD", 600).as_ptr(), first.as_ptr());
        // Expiry re-renders.
        assert!(String::from_utf8_lossy(&event.seat_map("USD", 1_000)).contains(r#""id":"a","section":"F","row":"1","number":1,"price":{"amount":100,"currency":"USD"},"status":"available""#));
        // A change re-renders.
        cache.apply_changes(&[(
            6,
            Change::Seat {
                event_id: "ev".into(),
                seat_id: "b".into(),
                status: SeatStatus::Sold,
            },
        )]);
        assert_eq!(event.version(), 6);
        assert!(String::from_utf8_lossy(&event.seat_map("USD", 1_000)).contains(r#""id":"b","section":"F","row":"1","number":1,"price":{"amount":100,"currency":"USD"},"status":"sold""#));
    }

    #[tokio::test]
    async fn watchers_get_coalesced_batches_and_laggards_are_dropped() {
        let cache = SeatCache::new();
        cache.put(
            "ev",
            1,
            vec![
                seat("a", "F", SeatStatus::Available),
                seat("b", "F", SeatStatus::Available),
            ],
            1,
        );
        let event = cache.get("ev").expect("event");
        // Without watchers nothing is pending.
        cache.apply_changes(&[(
            2,
            Change::Seat {
                event_id: "ev".into(),
                seat_id: "a".into(),
                status: SeatStatus::Sold,
            },
        )]);
        cache.flush(0);
        let mut rx = event.subscribe();
        assert!(rx.try_recv().is_err());
        // Three changes to one seat and one to another: one batch, latest status wins.
        for (index, status) in [
            (3, SeatStatus::Held { until_ms: 9 }),
            (4, SeatStatus::Available),
            (5, SeatStatus::Held { until_ms: 99 }),
        ] {
            cache.apply_changes(&[(
                index,
                Change::Seat {
                    event_id: "ev".into(),
                    seat_id: "b".into(),
                    status,
                },
            )]);
        }
        cache.apply_changes(&[(
            6,
            Change::Seat {
                event_id: "ev".into(),
                seat_id: "a".into(),
                status: SeatStatus::Available,
            },
        )]);
        cache.flush(50);
        let batch = rx.try_recv().expect("one batch");
        assert_eq!(
            String::from_utf8_lossy(&batch),
            r#"{"changes":[{"id":"a","status":"available"},{"id":"b","status":"held"}],"as_of":"1970-01-01T00:00:00Z"}"#
        );
        assert!(rx.try_recv().is_err(), "coalesced into one batch");
        // A watcher that never reads lags and learns it.
        for n in 0..(STREAM_BUFFER_BATCHES as u64 + 2) {
            let status = if n % 2 == 0 {
                SeatStatus::Sold
            } else {
                SeatStatus::Available
            };
            cache.apply_changes(&[(
                10 + n,
                Change::Seat {
                    event_id: "ev".into(),
                    seat_id: "a".into(),
                    status,
                },
            )]);
            cache.flush(60);
        }
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
    }

    #[test]
    fn search_takes_each_changed_event_once_and_at_most_max() {
        let cache = SeatCache::new();
        for id in ["a", "b", "c"] {
            cache.put(id, 1, vec![seat("s", "F", SeatStatus::Available)], 1);
        }
        for index in 2..5 {
            cache.apply_changes(&[(
                index,
                Change::Seat {
                    event_id: "a".into(),
                    seat_id: "s".into(),
                    status: SeatStatus::Sold,
                },
            )]);
        }
        let mut first = cache.take_search_dirty(2);
        assert_eq!(first.len(), 2);
        first.extend(cache.take_search_dirty(2));
        first.sort();
        assert_eq!(
            first,
            ["a", "b", "c"],
            "three events, each once, whatever the changes"
        );
        assert!(cache.take_search_dirty(2).is_empty());
    }

    #[test]
    fn a_reset_keeps_watchers_and_pends_differences() {
        let cache = SeatCache::new();
        cache.put("ev", 1, vec![seat("a", "F", SeatStatus::Available)], 1);
        cache.put("gone", 1, vec![seat("x", "F", SeatStatus::Available)], 1);
        cache.put("other", 2, vec![seat("y", "F", SeatStatus::Available)], 1);
        let mut rx = cache.get("ev").expect("event").subscribe();
        cache.reset_group(
            1,
            10,
            vec![("ev".into(), vec![seat("a", "F", SeatStatus::Sold)])],
        );
        assert!(
            cache.get("gone").is_none(),
            "events missing from the snapshot are dropped"
        );
        assert!(cache.get("other").is_some(), "other groups are untouched");
        cache.flush(0);
        assert!(String::from_utf8_lossy(&rx.try_recv().expect("batch"))
            .contains(r#"{"id":"a","status":"sold"}"#));
        // A layout change (seats added) keeps the watchers too.
        cache.put(
            "ev",
            1,
            vec![
                seat("a", "F", SeatStatus::Sold),
                seat("b", "F", SeatStatus::Available),
            ],
            11,
        );
        assert_eq!(cache.get("ev").expect("event").n_watchers(), 1);
    }
}
