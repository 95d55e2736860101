//! Prometheus metrics: the process-wide recorder, the request middleware (rate, latency and
//! status per route template), and the names of the domain counters.
//!
//! Labels are route templates (`/v1/holds/{hold_id}`), never raw paths, so the number of
//! series stays bounded whatever clients send.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
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

/// Latency buckets, in seconds.
const DURATION_BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The process's Prometheus recorder, installed on first use. `None` if another recorder
/// was installed first (metrics then go there and `/metrics` says so).
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new().set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), &DURATION_BUCKETS).ok()?;
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

/// Middleware: counts the request and records its latency under its route template.
pub async fn track(request: Request, next: Next) -> Response {
    let route = match request.extensions().get::<MatchedPath>() {
        Some(path) => intern(path.as_str()),
        None => "unmatched",
    };
    let method = intern(request.method().as_str());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = intern(response.status().as_str());
    metrics::counter!(HTTP_REQUESTS, "method" => method, "route" => route, "status" => status).increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route).record(started.elapsed().as_secs_f64());
    response
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
