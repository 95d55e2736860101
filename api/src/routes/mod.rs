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

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
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
        .layer(TimeoutLayer::new(timeout_ms));
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
                        .layer(TimeoutLayer::new(bound_ms + 1_000)),
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
        .layer(TimeoutLayer::new(timeout_ms));
    let mut app = limited.merge(open).merge(crate::web::router());
    if let Some(extra) = extra {
        app = app.merge(extra);
    }
    let app = app.layer(crate::metrics::TrackLayer);
    with_problem_fallbacks(app).with_state(state)
}

/// The request timeout: answers 503 when the handler takes longer than its bound. A plain
/// tower layer rather than `from_fn`, so a hold pays for one timer, not also for a boxed
/// future and a clone of the inner service.
#[derive(Debug, Clone, Copy)]
struct TimeoutLayer {
    timeout: Duration,
}

impl TimeoutLayer {
    fn new(timeout_ms: u64) -> Self {
        TimeoutLayer {
            timeout: Duration::from_millis(timeout_ms),
        }
    }
}

impl<S> tower_layer::Layer<S> for TimeoutLayer {
    type Service = Timed<S>;
    fn layer(&self, inner: S) -> Timed<S> {
        Timed {
            inner,
            timeout: self.timeout,
        }
    }
}

#[derive(Debug, Clone)]
struct Timed<S> {
    inner: S,
    timeout: Duration,
}

impl<S> tower_service::Service<Request> for Timed<S>
where
    S: tower_service::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TimedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        TimedFuture {
            inner: self.inner.call(request),
            deadline: tokio::time::sleep(self.timeout),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Timed`].
    struct TimedFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        deadline: tokio::time::Sleep,
    }
}

impl<F, E> Future for TimedFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result);
        }
        std::task::ready!(this.deadline.poll(cx));
        Poll::Ready(Ok(timed_out()))
    }
}

/// Seconds to wait after a request timed out.
const TIMEOUT_RETRY_AFTER_SECS: u64 = 1;

/// The answer to a request that took longer than its bound.
fn timed_out() -> Response {
    ApiError::Unavailable {
        detail: "the request took too long; a mutation may or may not have happened, retry it with the same Idempotency-Key".into(),
        retry_after_secs: TIMEOUT_RETRY_AFTER_SECS,
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt;

    fn app(timeout_ms: u64) -> Router {
        Router::new()
            .route("/fast", get(|| async { "done" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "too late"
                }),
            )
            .layer(TimeoutLayer::new(timeout_ms))
    }

    async fn get_path(router: Router, path: &str) -> Response {
        let request = Request::builder().uri(path).body(Body::empty()).unwrap();
        router.oneshot(request).await.unwrap()
    }

    #[tokio::test]
    async fn a_handler_within_its_bound_answers_itself() {
        let response = get_path(app(5_000), "/fast").await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], b"done");
    }

    #[tokio::test]
    async fn a_handler_past_its_bound_is_a_503_problem_with_retry_after() {
        let started = std::time::Instant::now();
        let response = get_path(app(50), "/slow").await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the bound was not kept"
        );
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(problem["detail"]
            .as_str()
            .unwrap()
            .contains("retry it with the same Idempotency-Key"));
    }
}
