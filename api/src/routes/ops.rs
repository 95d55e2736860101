//! Operations endpoints: `/healthz` (the process is up), `/readyz` (caches loaded, every
//! readiness gate set) and `/metrics` (Prometheus text). `/openapi.json` is served by
//! [`crate::openapi`].

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::extract::ApiJson;
use crate::problem::ApiError;

/// Seconds a load balancer should wait before asking `/readyz` again.
const NOT_READY_RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Ready {
    pub status: String,
    pub venues: usize,
    pub performers: usize,
    pub events: usize,
    /// Events whose seat maps this node follows.
    pub seat_maps: usize,
    /// Meta-group log index the catalog reflects.
    pub catalog_index: u64,
    /// Meta-group log index the search index has committed.
    pub search_index: u64,
    /// Events in the search index.
    pub search_events: u64,
    /// Full rebuilds of the search index from a catalog snapshot since this node started
    /// (0 when an on-disk index was resumed from its committed position).
    pub search_rebuilds: u64,
}

/// The process is up.
#[utoipa::path(get, operation_id = "healthz", path = "/healthz", tag = "operations", responses((status = 200, description = "Up", body = Health)))]
pub async fn healthz() -> ApiJson<Health> {
    ApiJson(Health {
        status: "ok".into(),
    })
}

/// The node can serve: it knows the placement, its catalog and seat caches have loaded, its
/// search index has caught up with the catalog as of the node's start, and every readiness
/// gate (e.g. dev's demo catalog) is set.
#[utoipa::path(get, operation_id = "readyz", path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Ready", body = Ready),
    (status = 503, description = "Not ready; `detail` says what it waits for", body = crate::problem::Problem, content_type = "application/problem+json"),
))]
pub async fn readyz(State(state): State<AppState>) -> Result<ApiJson<Ready>, ApiError> {
    let mut waiting = Vec::new();
    if !state.catalog.is_synced() {
        waiting.push("catalog".to_owned());
    }
    if state.seats.groups().is_empty() {
        waiting.push("placement".to_owned());
    }
    waiting.extend(
        state
            .seats
            .unsynced_groups()
            .into_iter()
            .map(|g| format!("shard {g}")),
    );
    if !state.search.is_caught_up() {
        waiting.push("search index".to_owned());
    }
    waiting.extend(state.readiness.waiting());
    if !waiting.is_empty() {
        return Err(ApiError::Unavailable {
            detail: format!("waiting for: {}", waiting.join(", ")),
            retry_after_secs: NOT_READY_RETRY_AFTER_SECS,
        });
    }
    let (venues, performers, events) = state.catalog.sizes();
    Ok(ApiJson(Ready {
        status: "ready".into(),
        venues,
        performers,
        events,
        seat_maps: state.seats.n_events(),
        catalog_index: state.catalog.applied(),
        search_index: state.search.indexed_upto().unwrap_or(0),
        search_events: state.search.index().map(|i| i.num_docs()).unwrap_or(0),
        search_rebuilds: state.search.n_rebuilds(),
    }))
}

/// Prometheus metrics.
#[utoipa::path(get, operation_id = "metrics", path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let (venues, performers, events) = state.catalog.sizes();
    metrics::gauge!("boxoffice_catalog_documents", "kind" => "venue").set(venues as f64);
    metrics::gauge!("boxoffice_catalog_documents", "kind" => "performer").set(performers as f64);
    metrics::gauge!("boxoffice_catalog_documents", "kind" => "event").set(events as f64);
    metrics::gauge!("boxoffice_seat_maps").set(state.seats.n_events() as f64);
    metrics::gauge!(crate::metrics::SEARCH_INDEXED_UPTO)
        .set(state.search.indexed_upto().unwrap_or(0) as f64);
    metrics::gauge!(crate::metrics::SEARCH_EVENTS)
        .set(state.search.index().map(|i| i.num_docs()).unwrap_or(0) as f64);
    let text = match crate::metrics::prometheus() {
        Some(handle) => handle.render(),
        None => "# another metrics recorder was installed first; boxoffice metrics go there\n"
            .to_owned(),
    };
    let mut response = text.into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}
