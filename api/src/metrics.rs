//! Prometheus metrics: the process-wide recorder, the request middleware (rate, latency and
//! status per route template), and the names of the domain counters.
//!
//! Labels are route templates (`/v1/holds/{hold_id}`), never raw paths, so the number of
//! series stays bounded whatever clients send.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use boxoffice_raft::telemetry;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "boxoffice_http_requests_total";
pub const HTTP_DURATION: &str = "boxoffice_http_request_duration_seconds";
/// Hold attempts by `outcome` (`held`, `unavailable`, `rejected`, `error`).
pub const HOLDS: &str = "boxoffice_holds_total";
/// Payment outcomes applied by `outcome` (`confirmed`, `failed`, `refunded`, …).
pub const CONFIRMS: &str = "boxoffice_payments_total";
pub const BOOKINGS: &str = "boxoffice_bookings_total";
/// Event-view cache lookups by `result` (`hit`, `miss`).
pub const VIEW_CACHE: &str = "boxoffice_view_cache_total";
pub const SSE_STREAMS: &str = "boxoffice_sse_streams";
/// Search and suggest result-cache lookups by `result` (`hit`, `miss`).
pub const SEARCH_CACHE: &str = "boxoffice_search_cache_total";
/// Catalog position the search index has committed, and events in it.
pub const SEARCH_INDEXED_UPTO: &str = "boxoffice_search_indexed_upto";
pub const SEARCH_EVENTS: &str = "boxoffice_search_events";

/// Latency buckets, in seconds.
const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's Prometheus recorder (API and storage-node metrics alike), installed on
/// first use. `None` if another recorder
/// was installed first (metrics then go there and `/metrics` says so).
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Storage nodes record through the same recorder (`boxoffice_raft::telemetry`).
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), &DURATION_BUCKETS)
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full(telemetry::LOG_FSYNC_SECONDS.to_owned()),
                    &telemetry::LOG_FSYNC_BUCKETS_SECONDS,
                )
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full(telemetry::BATCH_REQUESTS.to_owned()),
                    &telemetry::BATCH_REQUESTS_BUCKETS,
                )
                .ok()?;
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .as_ref()
}

/// Route templates and status codes as `&'static str`, so labels never allocate per request.
/// Bounded by the number of routes and status codes the router has.
fn intern(text: &str) -> &'static str {
    static TABLE: OnceLock<RwLock<HashMap<String, &'static str>>> = OnceLock::new();
    let table = TABLE.get_or_init(|| RwLock::new(HashMap::new()));
    if let Some(s) = table.read().unwrap_or_else(|p| p.into_inner()).get(text) {
        return s;
    }
    let mut table = table.write().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = table.get(text) {
        return s;
    }
    let leaked: &'static str = Box::leak(text.to_owned().into_boxed_str());
    table.insert(text.to_owned(), leaked);
    leaked
}

/// The request-metrics layer: counts each request and records its latency under its route
/// template. A plain tower layer rather than `from_fn`, so the hot read path pays no boxed
/// future and no clone of the inner service per request.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrackLayer;

impl<S> tower_layer::Layer<S> for TrackLayer {
    type Service = Track<S>;
    fn layer(&self, inner: S) -> Track<S> {
        Track { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Track<S> {
    inner: S,
}

impl<S> tower_service::Service<Request> for Track<S>
where
    S: tower_service::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // MatchedPath is an Arc: cloning it does not copy the text.
        let route = request.extensions().get::<MatchedPath>().cloned();
        let method = request.method().clone();
        TrackFuture {
            inner: self.inner.call(request),
            route,
            method,
            started: Instant::now(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Track`].
    pub struct TrackFuture<F> {
        #[pin]
        inner: F,
        route: Option<MatchedPath>,
        method: Method,
        started: Instant,
    }
}

impl<F, E> Future for TrackFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            let route = this.route.as_ref().map_or("unmatched", MatchedPath::as_str);
            let (requests, duration) = handles(this.method, route, response.status().as_u16());
            requests.increment(1);
            duration.record(this.started.elapsed().as_secs_f64());
        }
        Poll::Ready(result)
    }
}

type Handles = (Method, u16, Counter, Histogram);

/// The request counter and latency histogram of one (method, route, status), registered
/// once: looking a labelled metric up in the registry on every request costs more than the
/// cached view it measures. One hash of the route, then a scan of its few (method, status)s.
fn handles(method: &Method, route: &str, status: u16) -> (Counter, Histogram) {
    static TABLE: OnceLock<RwLock<HashMap<Box<str>, Vec<Handles>>>> = OnceLock::new();
    let table = TABLE.get_or_init(|| RwLock::new(HashMap::new()));
    let find = |entries: &Vec<Handles>| {
        entries
            .iter()
            .find(|(m, s, ..)| m == method && *s == status)
            .map(|(.., c, h)| (c.clone(), h.clone()))
    };
    if let Some(found) = table
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(route)
        .and_then(find)
    {
        return found;
    }
    let mut table = table.write().unwrap_or_else(|p| p.into_inner());
    let entries = table.entry(route.into()).or_default();
    if let Some(found) = find(entries) {
        return found;
    }
    let (route, method_label, status_label) = (
        intern(route),
        intern(method.as_str()),
        intern(&status.to_string()),
    );
    let counter = metrics::counter!(HTTP_REQUESTS, "method" => method_label, "route" => route, "status" => status_label);
    let histogram = metrics::histogram!(HTTP_DURATION, "route" => route);
    entries.push((method.clone(), status, counter.clone(), histogram.clone()));
    (counter, histogram)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_returns_one_copy() {
        let a = intern("/v1/holds/{hold_id}");
        let b = intern(&String::from("/v1/holds/{hold_id}"));
        assert!(std::ptr::eq(a, b));
    }
}
