//! An API node: its configuration, its shared state, the background tasks that keep its
//! caches current (catalog feed, seat feeds, live-map flusher, search indexer, metrics
//! upkeep), and the router that serves it all.
//!
//! [`Api::start`] spawns the tasks and owns them: dropping the [`Api`] (or
//! [`Api::shutdown`]) stops every one. Nothing here binds a socket; `node/` serves
//! [`Api::router`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::FromRef;
use boxoffice_raft::InventoryClient;
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;

use crate::admission::AdmissionKey;
use crate::auth::Auth;
use crate::cache::{run_catalog_feed, CatalogCache, CatalogChange};
use crate::catalog::{Event, Performer, Venue, KIND_EVENT, KIND_PERFORMER, KIND_VENUE};
use crate::clock::Clock;
use crate::idempotency::{KeyCheck, KeyMemory};
use crate::ids::is_valid_id;
use crate::payments::PaymentProcessor;
use crate::problem::ApiError;
use crate::queue::{run_queue_pushes, QueueHub};
use crate::ratelimit::{RateLimitConfig, RateLimits};
use crate::search::{run_search_indexer, SearchState};
use crate::seats::{run_seat_feeds, EventSeats, SeatCache};
use crate::views::{ViewCache, VIEW_AVAILABILITY_TTL_MS};

/// Longest a non-streaming request may take before it is answered 503.
pub const REQUEST_TIMEOUT_MS: u64 = 15_000;
/// Live seat-map streams one node serves at once.
pub const MAX_STREAMS: usize = 10_000;
/// Idempotency keys remembered per node for the cross-request body check.
pub const MAX_REMEMBERED_KEYS: usize = 100_000;
/// How long a remembered idempotency key is kept.
pub const KEY_MEMORY_SECS: u64 = 24 * 3600;
/// How often histogram samples are folded into their buckets.
pub const METRICS_UPKEEP_MS: u64 = 5_000;
/// How often a live stream sends a comment to keep proxies from closing it.
pub const STREAM_KEEP_ALIVE_MS: u64 = 15_000;

/// How an API node behaves.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Mounts `POST /v1/auth/token`, which issues tokens to anyone.
    pub dev_mode: bool,
    pub rate_limits: RateLimitConfig,
    pub request_timeout_ms: u64,
    pub max_streams: usize,
    pub view_ttl_ms: u64,
    pub stream_keep_alive_ms: u64,
    /// Where the search index lives across restarts (resumed from its committed catalog
    /// position); `None` keeps it in RAM and rebuilds it on every start.
    pub search_dir: Option<PathBuf>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            dev_mode: false,
            rate_limits: RateLimitConfig::default(),
            request_timeout_ms: REQUEST_TIMEOUT_MS,
            max_streams: MAX_STREAMS,
            view_ttl_ms: VIEW_AVAILABILITY_TTL_MS,
            stream_keep_alive_ms: STREAM_KEEP_ALIVE_MS,
            search_dir: None,
        }
    }
}

/// What an API node is built from.
pub struct ApiDeps {
    pub inventory: InventoryClient,
    pub clock: Arc<dyn Clock>,
    pub auth: Arc<Auth>,
    pub payments: Arc<dyn PaymentProcessor>,
    /// Verifies `Boxoffice-Signature` on payment webhooks.
    pub webhook_secret: Vec<u8>,
    /// Signs and verifies waiting-room admission tokens (the same secret on every API node).
    pub admission: AdmissionKey,
}

/// Named conditions `/readyz` waits for besides the caches (e.g. dev's demo catalog).
#[derive(Default)]
pub struct Readiness {
    gates: Mutex<BTreeMap<String, Arc<AtomicBool>>>,
}

/// One readiness condition; set it when it holds.
#[derive(Clone)]
pub struct ReadyGate(Arc<AtomicBool>);

impl ReadyGate {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }
}

impl Readiness {
    pub fn gate(&self, name: &str) -> ReadyGate {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        ReadyGate(gates.entry(name.to_owned()).or_default().clone())
    }

    /// Names of the gates not set.
    pub fn waiting(&self) -> Vec<String> {
        let gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        gates
            .iter()
            .filter(|(_, g)| !g.load(Ordering::Acquire))
            .map(|(n, _)| n.clone())
            .collect()
    }
}

/// Everything a handler can reach.
pub struct Shared {
    pub config: ApiConfig,
    pub inventory: InventoryClient,
    pub clock: Arc<dyn Clock>,
    pub auth: Arc<Auth>,
    pub catalog: Arc<CatalogCache>,
    pub seats: Arc<SeatCache>,
    pub views: Arc<ViewCache>,
    pub search: Arc<SearchState>,
    pub payments: Arc<dyn PaymentProcessor>,
    pub webhook_secret: Vec<u8>,
    pub admission: AdmissionKey,
    /// Waiting-room streams of this node.
    pub queues: Arc<QueueHub>,
    /// `user/key` → digest of the request first sent with it (this node only; the state
    /// machine's request-id check covers the rest).
    pub keys: KeyMemory,
    pub readiness: Readiness,
    pub limits: Arc<RateLimits>,
    /// Node drains this API node runs (stopped with it).
    pub drains: crate::drain::Drains,
}

/// The router state: cheap to clone.
#[derive(Clone)]
pub struct AppState(pub Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl FromRef<AppState> for Arc<Auth> {
    fn from_ref(state: &AppState) -> Arc<Auth> {
        state.auth.clone()
    }
}

impl AppState {
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    async fn read_doc<T: DeserializeOwned>(
        &self,
        kind: &str,
        id: &str,
    ) -> Result<Option<T>, ApiError> {
        let doc = self.inventory.catalog_doc(kind, id).await?;
        if let Some(bytes) = &doc {
            self.catalog.put(kind, id, Some(bytes));
        }
        match doc {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ApiError::Internal(format!("catalog {kind} {id}: {e}"))),
            None => Ok(None),
        }
    }

    /// The event, from the cache or (just created, feed not there yet) the meta group.
    pub async fn event(&self, event_id: &str) -> Result<Arc<Event>, ApiError> {
        if let Some(e) = self.catalog.event(event_id) {
            return Ok(e);
        }
        let not_found = || ApiError::not_found(format!("no event {event_id}"));
        if !is_valid_id(event_id) {
            return Err(not_found());
        }
        self.read_doc::<Event>(KIND_EVENT, event_id)
            .await?
            .map(Arc::new)
            .ok_or_else(not_found)
    }

    pub async fn venue(&self, venue_id: &str) -> Result<Option<Arc<Venue>>, ApiError> {
        if let Some(v) = self.catalog.venue(venue_id) {
            return Ok(Some(v));
        }
        if !is_valid_id(venue_id) {
            return Ok(None);
        }
        Ok(self
            .read_doc::<Venue>(KIND_VENUE, venue_id)
            .await?
            .map(Arc::new))
    }

    pub async fn performer(&self, performer_id: &str) -> Result<Option<Arc<Performer>>, ApiError> {
        if let Some(p) = self.catalog.performer(performer_id) {
            return Ok(Some(p));
        }
        if !is_valid_id(performer_id) {
            return Ok(None);
        }
        Ok(self
            .read_doc::<Performer>(KIND_PERFORMER, performer_id)
            .await?
            .map(Arc::new))
    }

    /// The event's seats, from the cache or (feed not there yet) read from its shard.
    pub async fn event_seats(&self, event_id: &str) -> Result<Arc<EventSeats>, ApiError> {
        if let Some(seats) = self.seats.get(event_id) {
            return Ok(seats);
        }
        let group = self.inventory.group_of(event_id).await?;
        match self.inventory.event_seats(group, event_id).await? {
            Some(seats) => Ok(Arc::new(EventSeats::detached(event_id, group, seats, 0))),
            None => Err(ApiError::not_found(format!(
                "no seats registered for event {event_id}"
            ))),
        }
    }

    /// Remembers which request `user` first sent under `key`; 409 when this one differs.
    pub fn check_key(&self, user: &str, key: &str, request_digest: &str) -> Result<(), ApiError> {
        match self
            .keys
            .check(user, key, request_digest, self.clock.now_ms())
        {
            KeyCheck::Fresh | KeyCheck::Repeat => Ok(()),
            KeyCheck::Reused => Err(ApiError::IdempotencyKeyReused),
        }
    }
}

/// A running API node.
pub struct Api {
    state: AppState,
    tasks: JoinSet<()>,
}

impl Api {
    /// Builds the state and spawns the background tasks on the current runtime.
    pub fn start(config: ApiConfig, deps: ApiDeps) -> Api {
        let limits = Arc::new(RateLimits::new(
            config.rate_limits,
            deps.clock.clone(),
            Some(deps.auth.clone()),
        ));
        let shared = Shared {
            views: Arc::new(ViewCache::new(config.view_ttl_ms)),
            config,
            inventory: deps.inventory,
            clock: deps.clock,
            auth: deps.auth,
            catalog: Arc::new(CatalogCache::new()),
            seats: Arc::new(SeatCache::new()),
            search: Arc::new(SearchState::new()),
            payments: deps.payments,
            webhook_secret: deps.webhook_secret,
            admission: deps.admission,
            queues: Arc::new(QueueHub::default()),
            keys: KeyMemory::new(MAX_REMEMBERED_KEYS, KEY_MEMORY_SECS * 1_000),
            readiness: Readiness::default(),
            limits,
            drains: crate::drain::Drains::default(),
        };
        let state = AppState(Arc::new(shared));
        let mut tasks = JoinSet::new();
        let views = state.views.clone();
        let on_change: Arc<dyn Fn(&CatalogChange) + Send + Sync> =
            Arc::new(move |change| match change {
                CatalogChange::Event(id) => views.invalidate(id),
                // A venue or performer shows in many events' views.
                CatalogChange::Venue(_) | CatalogChange::Performer(_) | CatalogChange::All => {
                    views.invalidate_all()
                }
            });
        tasks.spawn(run_catalog_feed(
            state.catalog.clone(),
            state.inventory.clone(),
            on_change,
        ));
        tasks.spawn(run_seat_feeds(
            state.seats.clone(),
            state.inventory.clone(),
            state.clock.clone(),
        ));
        tasks.spawn(run_search_indexer(
            state.search.clone(),
            state.catalog.clone(),
            state.seats.clone(),
            state.inventory.clone(),
            state.clock.clone(),
            state.config.search_dir.clone(),
        ));
        tasks.spawn(run_queue_pushes(state.clone()));
        if let Some(handle) = crate::metrics::prometheus() {
            tasks.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(METRICS_UPKEEP_MS));
                loop {
                    tick.tick().await;
                    handle.run_upkeep();
                }
            });
        }
        Api { state, tasks }
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The public API (see [`crate::routes`]).
    pub fn router(&self) -> axum::Router {
        crate::routes::router(self.state.clone(), None)
    }

    /// The public API plus `extra` routes (the dev payment sandbox).
    pub fn router_with(&self, extra: axum::Router<AppState>) -> axum::Router {
        crate::routes::router(self.state.clone(), Some(extra))
    }

    /// A condition `/readyz` waits for.
    pub fn ready_gate(&self, name: &str) -> ReadyGate {
        self.state.readiness.gate(name)
    }

    /// Stops the background tasks.
    pub async fn shutdown(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}
