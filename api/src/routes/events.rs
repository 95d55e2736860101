//! The read path: the event view (rendered once, cached, `ETag`), the seat map and the live
//! seat map over server-sent events.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::broadcast;

use crate::app::AppState;
use crate::extract::ApiPath;
use crate::metrics::{SSE_STREAMS, VIEW_CACHE};
use crate::problem::ApiError;
use crate::seats::SeatCache;
use crate::views::{event_view, Rendered};

/// Seconds a client waits when the live map of a brand-new event is not loaded yet.
const STREAM_NOT_READY_RETRY_AFTER_SECS: u64 = 1;
const JSON: HeaderValue = HeaderValue::from_static("application/json");
/// Browsers and CDNs may reuse a view for a second; availability moves faster than that.
const VIEW_CACHE_CONTROL: HeaderValue = HeaderValue::from_static("public, max-age=1");

fn json_response(bytes: Bytes, etag: Option<&HeaderValue>) -> Response {
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, JSON);
    if let Some(etag) = etag {
        headers.insert(ETAG, etag.clone());
        headers.insert(CACHE_CONTROL, VIEW_CACHE_CONTROL);
    }
    response
}

async fn render_view(
    state: &AppState,
    event_id: &str,
    now_ms: u64,
) -> Result<Arc<Rendered>, ApiError> {
    let event = state.event(event_id).await?;
    let venue = state.venue(&event.venue_id).await?.ok_or_else(|| {
        ApiError::Internal(format!(
            "event {event_id} names a missing venue {}",
            event.venue_id
        ))
    })?;
    let mut performers = Vec::with_capacity(event.performer_ids.len());
    for id in &event.performer_ids {
        if let Some(p) = state.performer(id).await? {
            performers.push(p);
        }
    }
    let seats = state.event_seats(event_id).await?;
    let view = event_view(&event, &venue, &performers, &seats, now_ms);
    let bytes = serde_json::to_vec(&view)
        .map_err(|e| ApiError::Internal(format!("rendering a view: {e}")))?;
    let rendered = Arc::new(Rendered::new(
        Bytes::from(bytes),
        now_ms + state.views.ttl_ms,
    ));
    state.views.put(event_id, rendered.clone());
    Ok(rendered)
}

/// The view cache's hit and miss counters, registered once (a labelled lookup per request
/// would cost more than the hit it counts).
fn view_cache_counters() -> &'static (metrics::Counter, metrics::Counter) {
    static COUNTERS: OnceLock<(metrics::Counter, metrics::Counter)> = OnceLock::new();
    COUNTERS.get_or_init(|| {
        (
            metrics::counter!(VIEW_CACHE, "result" => "hit"),
            metrics::counter!(VIEW_CACHE, "result" => "miss"),
        )
    })
}

/// The event page: event, venue, performers, sections with prices and live availability.
#[utoipa::path(
    get, operation_id = "getEvent", path = "/v1/events/{event_id}", tag = "events",
    params(("event_id" = String, Path, description = "Event id", example = "ev_demo_00001"), ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer")),
    responses(
        (status = 200, description = "The event view", body = crate::views::EventView,
         headers(("ETag" = String, description = "Changes when the answer changes"))),
        (status = 304, description = "Not modified since the given ETag"),
    )
)]
pub async fn view(
    State(state): State<AppState>,
    ApiPath(event_id): ApiPath<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let now_ms = state.now_ms();
    let (hits, misses) = view_cache_counters();
    let rendered = match state.views.fresh(&event_id, now_ms) {
        Some(rendered) => {
            hits.increment(1);
            rendered
        }
        None => {
            misses.increment(1);
            // The hit path above has no timer; a miss may reach the cluster, so it gets one.
            within_timeout(&state, render_view(&state, &event_id, now_ms)).await?
        }
    };
    if request
        .headers()
        .get(IF_NONE_MATCH)
        .is_some_and(|tag| tag == rendered.etag)
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        response.headers_mut().insert(ETAG, rendered.etag.clone());
        return Ok(response);
    }
    Ok(json_response(rendered.bytes.clone(), Some(&rendered.etag)))
}

/// Every seat of the event with its price and status.
#[utoipa::path(
    get, operation_id = "getSeats", path = "/v1/events/{event_id}/seats", tag = "events",
    params(("event_id" = String, Path, description = "Event id", example = "ev_demo_00001")),
    responses((status = 200, description = "The seat map", body = crate::views::SeatMap))
)]
pub async fn seats(
    State(state): State<AppState>,
    ApiPath(event_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let (event, seats) = match (state.catalog.event(&event_id), state.seats.get(&event_id)) {
        (Some(event), Some(seats)) => (event, seats),
        _ => {
            within_timeout(&state, async {
                Ok((
                    state.event(&event_id).await?,
                    state.event_seats(&event_id).await?,
                ))
            })
            .await?
        }
    };
    Ok(json_response(
        seats.seat_map(&event.currency, state.now_ms()),
        None,
    ))
}

/// Runs `work` within the node's request timeout (503 after it).
async fn within_timeout<T>(
    state: &AppState,
    work: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(Duration::from_millis(state.config.request_timeout_ms), work).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::Unavailable {
            detail: "the cluster did not answer in time".into(),
            retry_after_secs: STREAM_NOT_READY_RETRY_AFTER_SECS,
        }),
    }
}

/// Counts an open stream for as long as it lives.
struct StreamGuard(Arc<SeatCache>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let open = self
            .0
            .n_streams
            .fetch_sub(1, Ordering::AcqRel)
            .saturating_sub(1);
        metrics::gauge!(SSE_STREAMS).set(open as f64);
    }
}

enum Next {
    First(Bytes),
    Live,
    Done,
}

fn seats_event(bytes: &Bytes) -> SseEvent {
    SseEvent::default()
        .event("seats")
        .data(String::from_utf8_lossy(bytes))
}

/// The live seat map as server-sent events: first `event: seats` with every seat, then one
/// `event: seats` per batch of changes (coalesced every 100 ms). A client too slow to keep
/// up gets `event: resync` and the stream ends; it should reconnect.
#[utoipa::path(
    get, operation_id = "streamSeats", path = "/v1/events/{event_id}/seats/stream", tag = "events",
    params(("event_id" = String, Path, description = "Event id", example = "ev_demo_00001")),
    responses((status = 200, description = "`text/event-stream` of `event: seats` messages whose data is a SeatBatch", content_type = "text/event-stream", body = String))
)]
pub async fn stream(
    State(state): State<AppState>,
    ApiPath(event_id): ApiPath<String>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    state.event(&event_id).await?;
    let seats = state
        .seats
        .get(&event_id)
        .ok_or_else(|| ApiError::Unavailable {
            detail: "the live seat map of this event is still loading".into(),
            retry_after_secs: STREAM_NOT_READY_RETRY_AFTER_SECS,
        })?;
    let open = state.seats.n_streams.fetch_add(1, Ordering::AcqRel) + 1;
    let guard = StreamGuard(state.seats.clone());
    if open > state.config.max_streams {
        return Err(ApiError::Unavailable {
            detail: "this node serves as many live seat maps as it can".into(),
            retry_after_secs: 5,
        });
    }
    metrics::gauge!(SSE_STREAMS).set(open as f64);
    // Subscribe before taking the first picture, so no change falls between the two.
    let receiver = seats.subscribe();
    let first = seats.full_batch(state.now_ms());
    let events = futures_util::stream::unfold(
        (Next::First(first), receiver, guard),
        |(next, mut receiver, guard)| async move {
            match next {
                Next::Done => None,
                Next::First(bytes) => {
                    Some((Ok(seats_event(&bytes)), (Next::Live, receiver, guard)))
                }
                Next::Live => match receiver.recv().await {
                    Ok(bytes) => Some((Ok(seats_event(&bytes)), (Next::Live, receiver, guard))),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        let data =
                            format!("{{\"reason\":\"too slow\",\"missed_batches\":{missed}}}");
                        Some((
                            Ok(SseEvent::default().event("resync").data(data)),
                            (Next::Done, receiver, guard),
                        ))
                    }
                    Err(broadcast::error::RecvError::Closed) => None,
                },
            }
        },
    );
    Ok(Sse::new(events).keep_alive(
        KeepAlive::new().interval(Duration::from_millis(state.config.stream_keep_alive_ms)),
    ))
}
