//! The REST front tier of boxoffice.
//!
//! # Layout
//!
//! * [`app`]: an API node — [`ApiConfig`], the shared state handlers reach, and [`Api`],
//!   which owns the background tasks that keep the caches current and builds the router.
//! * [`routes`]: every public route (events, holds, bookings, webhooks, admin catalog,
//!   operations) and the middleware in front of them.
//! * [`catalog`]: venue, performer and event documents as admins send them and as the meta
//!   group stores them; validation; a venue's seat layout.
//! * [`cluster_view`]: `GET /admin/v1/cluster` assembled from the group table, the storage
//!   nodes' own statuses and the seat feeds; the checks of leader and replica moves.
//! * [`drain`]: draining a storage node, one planned step at a time.
//! * [`cache`]: the in-memory catalog, fed by the meta group's change feed.
//! * [`seats`]: every event's seat map, fed by the shards' change feeds, and the coalesced
//!   fan-out of live seat changes (SSE).
//! * [`search`]: the tantivy catalog index of this node (`boxoffice-search`), fed by the
//!   meta group's change feed and the shards' availability, and its result cache.
//! * [`queue`]: the waiting rooms' live fan-out (one read per event per second, one
//!   broadcast shared by every stream of the event); [`admission`]: the signed admission
//!   tokens `POST /v1/holds` of a queue-enabled event requires.
//! * [`views`]: the read models the public endpoints answer and the rendered-view cache.
//! * [`ids`]: hold/booking ids that carry their event; ids and request ids derived from
//!   `Idempotency-Key`s.
//! * [`inventory`]: inventory errors and rejections as [`ApiError`]s.
//! * [`problem`]: the crate's one error type, [`ApiError`], and the one function that
//!   turns it into an RFC 9457 `application/problem+json` [`Problem`] (the same type the
//!   OpenAPI document describes); the 404/405 fallbacks ([`with_problem_fallbacks`]).
//! * [`extract`]: the request extractors ([`ApiJson`], [`ApiBytes`], [`ApiQuery`],
//!   [`ApiPath`]) that turn bad input into those problems, and the one body limit (an
//!   oversized body is drained before its 413, like nginx's lingering close).
//! * [`clock`]: wall-clock time as an injected [`Clock`], so tests and the simulator
//!   control token expiry, rate limits and webhook timestamps.
//! * [`auth`]: HS256 bearer tokens, the [`User`] and [`Admin`] extractors, and the dev-mode
//!   issuer behind [`auth_routes`].
//! * [`ratelimit`]: per-IP and per-user limits (governor) as a middleware answering 429.
//! * [`payments`]: the [`PaymentProcessor`] trait; the local sandbox processor (HTTP
//!   routes, checkout page, signed webhooks with retries); webhook signature verification
//!   and event parsing for the receiving side.
//! * [`demo`]: the deterministic demo catalog `boxoffice dev` seeds.
//! * [`metrics`]: the Prometheus recorder and the request-metrics middleware.
//! * [`openapi`]: the OpenAPI document, generated from the handlers (utoipa).
//! * [`web`]: the fan's web pages at `/` (embedded HTML, CSS and a script over this API).
//!
//! Data flows: reads are answered from [`cache`] and [`seats`] (never a Raft round trip
//! per request); writes go through [`boxoffice_raft::InventoryClient`] to the owning
//! shard's leader. Routers are built here and served by `node/`: nothing in this crate
//! binds a socket outside tests.

pub mod admission;
pub mod app;
pub mod auth;
pub mod cache;
pub mod catalog;
pub mod clock;
pub mod cluster_view;
pub mod demo;
pub mod drain;
pub mod extract;
pub mod idempotency;
pub mod ids;
pub mod inventory;
pub mod metrics;
pub mod openapi;
pub mod payments;
pub mod problem;
pub mod queue;
pub mod ratelimit;
pub mod routes;
pub mod search;
pub mod seats;
pub mod views;
pub mod web;

pub use app::{Api, ApiConfig, ApiDeps, AppState, ReadyGate};
pub use auth::{auth_routes, Admin, Auth, Claims, Role, User};
pub use clock::{Clock, ManualClock, SystemClock};
pub use extract::{ApiBytes, ApiJson, ApiPath, ApiQuery};
pub use payments::{PaymentProcessor, Sandbox, SandboxProcessor};
pub use problem::{with_problem_fallbacks, ApiError, Problem};
pub use ratelimit::{with_rate_limits, RateLimitConfig, RateLimits};
