//! The public router: every route, the middleware in front of them (request timeout, rate
//! limits, metrics) and the problem+json fallbacks.
//!
//! | area | module |
//! |---|---|
//! | event view, seat map, live seat map | [`events`] |
//! | search and type-ahead (`/v1/events?q=`, `/v1/suggest`) | [`search`] |
//! | holds | [`holds`] |
//! | bookings, `GET /v1/me/bookings` | [`bookings`] |
//! | waiting rooms (join, place, leave, stream; admin figures) | [`queue`] |
//! | payment webhooks | [`webhooks`] |
//! | admin catalog | [`admin`] |
//! | operating the cluster (`/admin/v1/cluster`, leader moves) | [`cluster`] |
//! | `/healthz`, `/readyz`, `/metrics` | [`ops`] |
//! | `/openapi.json` | [`crate::openapi::serve`] |

pub mod admin;
pub mod bookings;
pub mod cluster;
pub mod events;
pub mod holds;
pub mod ops;
pub mod queue;
pub mod search;
pub mod webhooks;

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;

use crate::app::AppState;
use crate::auth::auth_routes;
use crate::problem::{with_problem_fallbacks, ApiError};
use crate::ratelimit::with_rate_limits;

/// The API node's router; `extra` routes (the dev sandbox) are merged in before the
/// fallbacks so they answer problem+json too.
pub fn router(state: AppState, extra: Option<Router<AppState>>) -> Router {
    let timeout_ms = state.config.request_timeout_ms;
    // The read path answers from memory (searches from the local index); a cache miss
    // reaches the cluster only through the inventory client, whose own deadline bounds it,
    // so it skips the timeout layer.
    let reads = Router::new()
        .route("/v1/events", get(search::search))
        .route("/v1/suggest", get(search::suggest))
        .route("/v1/events/{event_id}", get(events::view))
        .route("/v1/events/{event_id}/seats", get(events::seats))
        .route("/v1/events/{event_id}/seats/stream", get(events::stream))
        .route(
            "/v1/events/{event_id}/queue/{ticket}/stream",
            get(queue::stream),
        );
    let timed = Router::new()
        .route("/v1/holds", post(holds::create))
        .route(
            "/v1/holds/{hold_id}",
            get(holds::get).delete(holds::release),
        )
        .route("/v1/events/{event_id}/queue", post(queue::join))
        .route(
            "/v1/events/{event_id}/queue/{ticket}",
            get(queue::get).delete(queue::leave),
        )
        .route("/admin/v1/events/{event_id}/queue", get(queue::figures))
        .route("/v1/bookings", post(bookings::create))
        .route("/v1/bookings/{booking_id}", get(bookings::get))
        .route("/v1/me/bookings", get(bookings::mine))
        .route("/admin/v1/venues", post(admin::create_venue))
        .route("/admin/v1/venues/{venue_id}", get(admin::get_venue))
        .route("/admin/v1/performers", post(admin::create_performer))
        .route("/admin/v1/events", post(admin::create_event))
        .route("/admin/v1/cluster", get(cluster::view))
        .route("/admin/v1/nodes", post(cluster::add_node))
        .route("/admin/v1/groups", post(cluster::add_groups))
        .route("/admin/v1/nodes/{node_id}", delete(cluster::drain_node))
        .route(
            "/admin/v1/events/{event_id}",
            get(admin::get_event).patch(admin::patch_event),
        )
        .merge(auth_routes(state.config.dev_mode))
        .layer(from_fn_with_state(timeout_ms, timeout));
    // A leader move waits for a catch-up, a lease and an election, a replica move for a
    // learner's catch-up and two membership entries: the client's own bound (with a second
    // to answer) replaces the request timeout.
    use boxoffice_raft::client::{MOVE_LEADER_TIMEOUT_MS, MOVE_REPLICA_TIMEOUT_MS};
    let operations = [
        (
            "/admin/v1/groups/{group_id}/leader",
            post(cluster::move_leader),
            MOVE_LEADER_TIMEOUT_MS,
        ),
        (
            "/admin/v1/groups/{group_id}/move",
            post(cluster::move_replica),
            MOVE_REPLICA_TIMEOUT_MS,
        ),
    ];
    let operating =
        operations
            .into_iter()
            .fold(Router::new(), |router, (path, handler, bound_ms)| {
                router.merge(
                    Router::new()
                        .route(path, handler)
                        .layer(from_fn_with_state(bound_ms + 1_000, timeout)),
                )
            });
    let limited = with_rate_limits(timed.merge(reads).merge(operating), state.limits.clone());
    // The processor and monitoring are not rate limited per IP: one processor sends every
    // webhook, one Prometheus scrapes every node.
    let open = Router::new()
        .route("/v1/webhooks/payments", post(webhooks::receive))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(crate::openapi::serve))
        .layer(from_fn_with_state(timeout_ms, timeout));
    let mut app = limited.merge(open).merge(crate::web::router());
    if let Some(extra) = extra {
        app = app.merge(extra);
    }
    let app = app.layer(crate::metrics::TrackLayer);
    with_problem_fallbacks(app).with_state(state)
}

/// Seconds to wait after a request timed out.
const TIMEOUT_RETRY_AFTER_SECS: u64 = 1;

/// Middleware: answers 503 when the handler takes longer than `timeout_ms`.
async fn timeout(State(timeout_ms): State<u64>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(Duration::from_millis(timeout_ms), next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable {
            detail: "the request took too long; a mutation may or may not have happened, retry it with the same Idempotency-Key".into(),
            retry_after_secs: TIMEOUT_RETRY_AFTER_SECS,
        }
        .into_response(),
    }
}
