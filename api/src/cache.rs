//! The catalog cache: every venue, performer and event document of the meta group, in
//! memory on each API node, kept current by following the meta group's change feed.
//!
//! The follower starts from a snapshot, then applies changes in log order; a change names a
//! document, which is read from the meta group (the change does not carry it). A page with
//! more than [`RESYNC_ABOVE_CHANGES`] catalog changes is cheaper to take as a fresh snapshot.
//! Every applied change is passed to the invalidation hook, so cached views never outlive the
//! documents they were rendered from.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use boxoffice_raft::types::{Change, META_GROUP};
use boxoffice_raft::wire::FeedPage;
use boxoffice_raft::InventoryClient;
use serde::de::DeserializeOwned;

use crate::catalog::{Event, Performer, Venue, KIND_EVENT, KIND_PERFORMER, KIND_VENUE};
use crate::seats::{next_page, FEED_RETRY_MIN_MS};

/// Catalog changes in one page above which the follower reloads a snapshot instead of
/// reading each document.
pub const RESYNC_ABOVE_CHANGES: usize = 256;

/// A catalog document changed (or was deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogChange {
    Venue(String),
    Performer(String),
    Event(String),
    /// Everything may have changed (a snapshot was loaded).
    All,
}

/// Catalog documents by id.
#[derive(Default)]
pub struct Maps {
    pub venues: HashMap<String, Arc<Venue>>,
    pub performers: HashMap<String, Arc<Performer>>,
    pub events: HashMap<String, Arc<Event>>,
}

impl Maps {
    /// The documents of a feed snapshot, `(kind, id, json)`; other kinds and documents that
    /// do not parse are skipped.
    pub fn decode(docs: &[(String, String, Vec<u8>)]) -> Maps {
        let mut maps = Maps::default();
        for (kind, id, bytes) in docs {
            match kind.as_str() {
                KIND_VENUE => {
                    if let Some(v) = decode(kind, id, bytes) {
                        maps.venues.insert(id.clone(), Arc::new(v));
                    }
                }
                KIND_PERFORMER => {
                    if let Some(p) = decode(kind, id, bytes) {
                        maps.performers.insert(id.clone(), Arc::new(p));
                    }
                }
                KIND_EVENT => {
                    if let Some(e) = decode(kind, id, bytes) {
                        maps.events.insert(id.clone(), Arc::new(e));
                    }
                }
                _ => {}
            }
        }
        maps
    }
}

/// The in-memory catalog.
#[derive(Default)]
pub struct CatalogCache {
    maps: RwLock<Maps>,
    synced: AtomicBool,
    /// Meta-group log index the cache reflects.
    applied: AtomicU64,
    /// Woken whenever `applied` moves.
    applied_moved: tokio::sync::Notify,
}

fn decode<T: DeserializeOwned>(kind: &str, id: &str, bytes: &[u8]) -> Option<T> {
    match serde_json::from_slice(bytes) {
        Ok(doc) => Some(doc),
        Err(error) => {
            tracing::warn!(kind, id, %error, "skipping a catalog document that does not parse");
            None
        }
    }
}

impl CatalogCache {
    pub fn new() -> CatalogCache {
        CatalogCache::default()
    }

    fn maps(&self) -> std::sync::RwLockReadGuard<'_, Maps> {
        self.maps.read().unwrap_or_else(|p| p.into_inner())
    }

    fn maps_mut(&self) -> std::sync::RwLockWriteGuard<'_, Maps> {
        self.maps.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn event(&self, id: &str) -> Option<Arc<Event>> {
        self.maps().events.get(id).cloned()
    }

    pub fn venue(&self, id: &str) -> Option<Arc<Venue>> {
        self.maps().venues.get(id).cloned()
    }

    pub fn performer(&self, id: &str) -> Option<Arc<Performer>> {
        self.maps().performers.get(id).cloned()
    }

    /// Every event, in no particular order.
    pub fn events(&self) -> Vec<Arc<Event>> {
        self.maps().events.values().cloned().collect()
    }

    /// (venues, performers, events)
    pub fn sizes(&self) -> (usize, usize, usize) {
        let maps = self.maps();
        (maps.venues.len(), maps.performers.len(), maps.events.len())
    }

    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    fn set_applied(&self, applied: u64) {
        self.applied.store(applied, Ordering::Release);
        self.applied_moved.notify_waiters();
    }

    /// Waits until the cache reflects the meta group at least up to log index `position`
    /// (every document changed up to there is in the cache, at that version or newer).
    /// Re-checks every `slice` in case a wake-up was missed.
    pub async fn wait_applied(&self, position: u64, slice: Duration) {
        loop {
            let moved = self.applied_moved.notified();
            if self.applied() >= position {
                return;
            }
            let _ = tokio::time::timeout(slice, moved).await;
        }
    }

    /// Stores (or with `None` removes) one document, as read from the meta group.
    pub fn put(&self, kind: &str, id: &str, doc: Option<&[u8]>) -> Option<CatalogChange> {
        let mut maps = self.maps_mut();
        match kind {
            KIND_VENUE => {
                match doc.and_then(|d| decode::<Venue>(kind, id, d)) {
                    Some(v) => maps.venues.insert(id.to_owned(), Arc::new(v)),
                    None => maps.venues.remove(id),
                };
                Some(CatalogChange::Venue(id.to_owned()))
            }
            KIND_PERFORMER => {
                match doc.and_then(|d| decode::<Performer>(kind, id, d)) {
                    Some(p) => maps.performers.insert(id.to_owned(), Arc::new(p)),
                    None => maps.performers.remove(id),
                };
                Some(CatalogChange::Performer(id.to_owned()))
            }
            KIND_EVENT => {
                match doc.and_then(|d| decode::<Event>(kind, id, d)) {
                    Some(e) => maps.events.insert(id.to_owned(), Arc::new(e)),
                    None => maps.events.remove(id),
                };
                Some(CatalogChange::Event(id.to_owned()))
            }
            _ => None,
        }
    }

    /// Replaces everything with a snapshot's documents.
    pub fn load(&self, docs: &[(String, String, Vec<u8>)], applied: u64) {
        let fresh = Maps::decode(docs);
        *self.maps_mut() = fresh;
        self.set_applied(applied);
    }
}

/// The catalog documents, `(kind, id)`, a page of the meta group's feed changed.
pub fn catalog_touched(changes: &[(u64, Change)]) -> BTreeSet<(String, String)> {
    changes
        .iter()
        .filter_map(|(_, change)| match change {
            Change::Catalog { kind, id, .. } => Some((kind.clone(), id.clone())),
            _ => None,
        })
        .collect()
}

/// Follows the meta group's feed into `cache`, calling `on_change` for every document that
/// changed, until the task is dropped.
pub async fn run_catalog_feed(
    cache: Arc<CatalogCache>,
    inventory: InventoryClient,
    on_change: Arc<dyn Fn(&CatalogChange) + Send + Sync>,
) {
    let mut from = u64::MAX;
    let mut backoff = Duration::from_millis(FEED_RETRY_MIN_MS);
    loop {
        let Some(page) = next_page(&inventory, META_GROUP, from, &mut backoff).await else {
            continue;
        };
        match page {
            FeedPage::Reset {
                applied, snapshot, ..
            } => {
                cache.load(&snapshot.catalog, applied);
                on_change(&CatalogChange::All);
                from = applied;
                if !cache.synced.swap(true, Ordering::AcqRel) {
                    let (venues, performers, events) = cache.sizes();
                    tracing::info!(venues, performers, events, applied, "catalog cache loaded");
                }
            }
            FeedPage::Changes { changes, upto, .. } => {
                let touched = catalog_touched(&changes);
                if touched.len() > RESYNC_ABOVE_CHANGES {
                    from = u64::MAX;
                    continue;
                }
                let mut ok = true;
                for (kind, id) in touched {
                    match inventory.catalog_doc(&kind, &id).await {
                        Ok(doc) => {
                            if let Some(change) = cache.put(&kind, &id, doc.as_deref()) {
                                on_change(&change);
                            }
                        }
                        Err(error) => {
                            tracing::debug!(%kind, %id, %error, "reading a changed catalog document failed");
                            ok = false;
                            break;
                        }
                    }
                }
                if ok {
                    cache.set_applied(upto);
                    from = upto;
                } else {
                    tokio::time::sleep(backoff).await;
                    from = u64::MAX;
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::catalog::{NewVenue, QueueSettings};

    /// A valid stored event at venue `ve_1` with one seat.
    pub(crate) fn event(id: &str, name: &str) -> Event {
        Event {
            event_id: id.into(),
            name: name.into(),
            description: String::new(),
            category: "concert".into(),
            venue_id: "ve_1".into(),
            performer_ids: vec![],
            starts_at: "2027-06-01T19:00:00Z".into(),
            starts_at_ms: 1_811_876_400_000,
            on_sale: true,
            hold_ttl_seconds: 600,
            queue: QueueSettings::default(),
            currency: "USD".into(),
            capacity: 1,
            created_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-01T00:00:00Z".into(),
            request_digest: String::new(),
        }
    }

    #[test]
    fn put_load_and_delete() {
        let cache = CatalogCache::new();
        let doc = serde_json::to_vec(&event("ev_1", "One")).expect("json");
        assert_eq!(
            cache.put(KIND_EVENT, "ev_1", Some(&doc)),
            Some(CatalogChange::Event("ev_1".into()))
        );
        assert_eq!(
            cache.event("ev_1").map(|e| e.name.clone()).as_deref(),
            Some("One")
        );
        assert_eq!(
            cache.put(KIND_EVENT, "ev_1", None),
            Some(CatalogChange::Event("ev_1".into()))
        );
        assert!(cache.event("ev_1").is_none());
        // Unknown kinds and broken documents are skipped, not fatal.
        assert_eq!(cache.put("other", "x", Some(b"{}")), None);
        cache.put(KIND_EVENT, "ev_bad", Some(b"not json"));
        assert!(cache.event("ev_bad").is_none());

        let venue: NewVenue = serde_json::from_value(serde_json::json!({
            "name": "Hall", "city": "Oslo", "country": "NO",
            "sections": [{"name": "Main", "price": {"amount": 100, "currency": "NOK"}, "rows": [{"name": "1", "seats": 2}]}]
        }))
        .expect("venue");
        let venue = venue
            .into_venue("ve_1".into(), 0, String::new())
            .expect("valid");
        let docs = vec![
            (
                KIND_VENUE.to_owned(),
                "ve_1".to_owned(),
                serde_json::to_vec(&venue).expect("json"),
            ),
            (
                KIND_EVENT.to_owned(),
                "ev_2".to_owned(),
                serde_json::to_vec(&event("ev_2", "Two")).expect("json"),
            ),
        ];
        cache.load(&docs, 42);
        assert_eq!(cache.sizes(), (1, 0, 1));
        assert_eq!(cache.applied(), 42);
        assert_eq!(cache.venue("ve_1").map(|v| v.capacity), Some(2));
    }
}
