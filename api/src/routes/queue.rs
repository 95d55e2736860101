//! The waiting room of a queue-enabled event: `POST /v1/events/{id}/queue` (join),
//! `GET …/queue/{ticket}` (where the place stands; keeps it alive; the admission token once
//! admitted), `DELETE …/queue/{ticket}` (leave), `GET …/queue/{ticket}/stream` (SSE pushed by
//! [`crate::queue`]) and the admin figures at `GET /admin/v1/events/{id}/queue`.
//!
//! The places live in the event's shard (the state machine's `machine/queue.rs`); this module
//! turns them into JSON and signs the admission tokens ([`crate::admission`]).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use boxoffice_raft::types::{
    JoinQueueCmd, LeaveQueueCmd, PlaceState, PlaceView, Rejection, RoomFigures, TouchQueueCmd,
};
use boxoffice_raft::InventoryError;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::auth::{Admin, User};
use crate::clock::rfc3339_from_ms;
use crate::extract::{ApiJson, ApiPath};
use crate::ids::random_hex;
use crate::inventory::{refused, Doing};
use crate::problem::ApiError;
use crate::queue::{RoomSnapshot, Watch};

/// Ticket names: `tk_` and the room's ticket number.
const TICKET_PREFIX: &str = "tk_";

/// Where a place stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum QueueState {
    Waiting,
    Admitted,
    /// Admitted, then bought.
    Bought,
    /// Admitted, and the admission ended before a purchase.
    Expired,
    Left,
    Abandoned,
    /// The event sold out.
    Closed,
}

/// A place in a waiting room, as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"ticket": "tk_17", "position": 3, "state": "waiting", "admitted": false, "estimated_wait_seconds": 1}))]
pub struct QueuePlace {
    pub ticket: String,
    /// 1 at the head of the line; `null` when not waiting, or before the sale opens (places
    /// taken before then are shuffled at opening).
    pub position: Option<u64>,
    pub state: QueueState,
    /// The place's rank in the line, fixed when it enters the line (at the opening, after
    /// the shuffle, for places taken before it): admission follows it, so comparing two
    /// tickets' ranks audits the order. `null` before the opening.
    pub place: Option<u64>,
    pub admitted: bool,
    /// From the admission rate measured over the last seconds; `null` when unknown.
    pub estimated_wait_seconds: Option<u64>,
    /// For `POST /v1/holds` of this event (header `Admission-Token`), while admitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admission_token: Option<String>,
    /// RFC 3339 UTC: when the admission and its token end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admission_expires_at: Option<String>,
}

/// `GET /admin/v1/events/{event_id}/queue`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueueFigures {
    pub event_id: String,
    pub enabled: bool,
    pub admit_per_second: u32,
    /// The sale opened (places taken before were shuffled into the line).
    pub opened: bool,
    /// The event sold out and the room closed.
    pub closed: bool,
    pub waiting: u64,
    /// Admitted and not yet bought, admission still running.
    pub admitted: u64,
    /// Everyone ever admitted.
    pub admitted_total: u64,
    pub bought: u64,
    pub expired: u64,
    pub left: u64,
    pub abandoned: u64,
    /// Places closed by the sell-out.
    pub closed_places: u64,
    /// Seats not sold: the room never has more admitted-but-not-bought users than this.
    pub unsold: u64,
    /// Admissions per second over the last 10 s.
    pub admit_rate: f64,
    /// The seed of the opening shuffle (hex), reproducible from the log.
    pub shuffle_seed: Option<String>,
}

fn ticket_name(ticket: u64) -> String {
    format!("{TICKET_PREFIX}{ticket}")
}

fn parse_ticket(ticket: &str) -> Result<u64, ApiError> {
    ticket
        .strip_prefix(TICKET_PREFIX)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| ApiError::invalid_field("ticket", "a ticket looks like tk_17"))
}

/// The ticket number in a place's path, once the event is known to exist.
async fn ticket_of(state: &AppState, event_id: &str, ticket: &str) -> Result<u64, ApiError> {
    let ticket = parse_ticket(ticket)?;
    state.event(event_id).await?;
    Ok(ticket)
}

fn queue_state(state: PlaceState) -> QueueState {
    match state {
        PlaceState::Waiting => QueueState::Waiting,
        PlaceState::Admitted { .. } => QueueState::Admitted,
        PlaceState::Bought => QueueState::Bought,
        PlaceState::Expired => QueueState::Expired,
        PlaceState::Left => QueueState::Left,
        PlaceState::Abandoned => QueueState::Abandoned,
        PlaceState::Closed => QueueState::Closed,
    }
}

/// The owner's view of a place, with a signed admission token while admitted.
fn place_json(state: &AppState, view: &PlaceView) -> QueuePlace {
    let (admission_token, admission_expires_at) = match view.state {
        PlaceState::Admitted { expires_at_ms, .. } => (
            Some(
                state
                    .admission
                    .sign(&view.user, &view.event_id, expires_at_ms),
            ),
            Some(rfc3339_from_ms(expires_at_ms)),
        ),
        _ => (None, None),
    };
    QueuePlace {
        ticket: ticket_name(view.ticket),
        position: view.position,
        state: queue_state(view.state),
        place: view.order,
        admitted: matches!(view.state, PlaceState::Admitted { .. }),
        estimated_wait_seconds: view.estimated_wait_ms.map(|ms| ms.div_ceil(1000)),
        admission_token,
        admission_expires_at,
    }
}

/// The event, which must have its waiting room on.
async fn queued_event(state: &AppState, event_id: &str) -> Result<(), ApiError> {
    let event = state.event(event_id).await?;
    if !event.queue.enabled {
        return Err(ApiError::Conflict {
            detail: "this event has no waiting room".into(),
        });
    }
    Ok(())
}

/// Joins the event's waiting room; joining again answers the same place.
#[utoipa::path(
    post, operation_id = "joinQueue", path = "/v1/events/{event_id}/queue", tag = "queue", security(("bearer" = [])),
    params(("event_id" = String, Path, description = "Event id", example = "ev_demo_00001")),
    responses(
        (status = 201, description = "Your place (the same one on a second join)", body = QueuePlace, headers(("Location" = String, description = "The place's URL"))),
        (status = 409, description = "The event has no waiting room, or the room is full", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn join(
    State(state): State<AppState>,
    user: User,
    ApiPath(event_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    queued_event(&state, &event_id).await?;
    let cmd = JoinQueueCmd {
        event_id: event_id.clone(),
        user: user.id.clone(),
    };
    // Joins are idempotent in the state machine: the request id only names this call.
    let request_id = format!("qjoin/{}", random_hex(12));
    let place = state
        .inventory
        .join_queue(&request_id, cmd)
        .await
        .map_err(|e| refused(e, Doing::Other))?;
    let body = place_json(&state, &place.value);
    let location = format!("/v1/events/{event_id}/queue/{}", body.ticket);
    let mut response = (StatusCode::CREATED, ApiJson(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

/// Where your place stands; reading it keeps it alive.
#[utoipa::path(
    get, operation_id = "getQueuePlace", path = "/v1/events/{event_id}/queue/{ticket}", tag = "queue", security(("bearer" = [])),
    params(
        ("event_id" = String, Path, description = "Event id", example = "ev_demo_00001"),
        ("ticket" = String, Path, description = "Your ticket", example = "tk_1"),
    ),
    responses(
        (status = 200, description = "The place; `admission_token` once admitted", body = QueuePlace),
        (status = 404, description = "No such place of yours", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    user: User,
    ApiPath((event_id, ticket)): ApiPath<(String, String)>,
) -> Result<ApiJson<QueuePlace>, ApiError> {
    let ticket = ticket_of(&state, &event_id, &ticket).await?;
    let cmd = TouchQueueCmd {
        event_id,
        places: vec![(user.id, ticket)],
    };
    let request_id = format!("qtouch/{}", random_hex(12));
    let views = state
        .inventory
        .touch_queue(&request_id, cmd)
        .await
        .map_err(place_refused)?;
    match views.value.first() {
        Some(Some(view)) => Ok(ApiJson(place_json(&state, view))),
        _ => Err(not_yours()),
    }
}

fn not_yours() -> ApiError {
    ApiError::not_found("no such place of yours in the waiting room")
}

/// A place looked up in an event without a waiting room is a place that does not exist.
fn place_refused(error: InventoryError) -> ApiError {
    match error {
        InventoryError::Rejected(Rejection::NoWaitingRoom | Rejection::UnknownPlace) => not_yours(),
        other => refused(other, Doing::Other),
    }
}

/// Leaves the waiting room (a place already over stays as it is).
#[utoipa::path(
    delete, operation_id = "leaveQueue", path = "/v1/events/{event_id}/queue/{ticket}", tag = "queue", security(("bearer" = [])),
    params(
        ("event_id" = String, Path, description = "Event id", example = "ev_demo_00001"),
        ("ticket" = String, Path, description = "Your ticket", example = "tk_1"),
    ),
    responses(
        (status = 204, description = "Left"),
        (status = 404, description = "No such place of yours", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn leave(
    State(state): State<AppState>,
    user: User,
    ApiPath((event_id, ticket)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let ticket = ticket_of(&state, &event_id, &ticket).await?;
    let cmd = LeaveQueueCmd {
        event_id,
        user: user.id,
        ticket,
    };
    let request_id = format!("qleave/{}", random_hex(12));
    state
        .inventory
        .leave_queue(&request_id, cmd)
        .await
        .map_err(place_refused)?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a stream sends next.
enum Next {
    Send(Box<QueuePlace>),
    Live,
    Done,
}

fn place_event(place: &QueuePlace) -> SseEvent {
    let name = match place.state {
        QueueState::Waiting => "position",
        QueueState::Admitted => "admitted",
        QueueState::Closed => "closed",
        _ => "ended",
    };
    let data = serde_json::to_string(place).unwrap_or_default();
    SseEvent::default().event(name).data(data)
}

fn is_over(place: &QueuePlace) -> bool {
    !matches!(place.state, QueueState::Waiting | QueueState::Admitted)
}

/// Your place, pushed: `event: position` when it moves, `event: admitted` with the token,
/// `event: closed` when the event sells out, `event: ended` when the place is otherwise over
/// (left, abandoned, admission expired, bought); the stream ends after the last two.
/// Streaming keeps the place alive.
#[utoipa::path(
    get, operation_id = "streamQueuePlace", path = "/v1/events/{event_id}/queue/{ticket}/stream", tag = "queue", security(("bearer" = [])),
    params(
        ("event_id" = String, Path, description = "Event id", example = "ev_demo_00001"),
        ("ticket" = String, Path, description = "Your ticket", example = "tk_1"),
    ),
    responses(
        (status = 200, description = "`text/event-stream`; each event's data is a QueuePlace", content_type = "text/event-stream", body = String),
        (status = 404, description = "No such place of yours", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn stream(
    State(state): State<AppState>,
    user: User,
    ApiPath((event_id, ticket)): ApiPath<(String, String)>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let ticket = ticket_of(&state, &event_id, &ticket).await?;
    let key = (user.id.clone(), ticket);
    // Watch before the first read, so no push falls between the two.
    let watch = state
        .queues
        .watch(&event_id, key.clone())
        .map_err(|_| ApiError::Unavailable {
            detail: "this node serves as many waiting-room streams as it can".into(),
            retry_after_secs: 5,
        })?;
    let first = state
        .inventory
        .queue_places(&event_id, vec![key.clone()])
        .await?
        .and_then(|timed| timed.value.into_iter().next().flatten())
        .ok_or_else(not_yours)?;
    let first = place_json(&state, &first);
    let events = futures_util::stream::unfold(
        (
            Next::Send(Box::new(first.clone())),
            first,
            watch,
            state,
            key,
        ),
        |(next, mut last, mut watch, state, key)| async move {
            match next {
                Next::Done => None,
                Next::Send(place) => {
                    let event = place_event(&place);
                    let next = if is_over(&place) {
                        Next::Done
                    } else {
                        Next::Live
                    };
                    Some((Ok(event), (next, last, watch, state, key)))
                }
                Next::Live => loop {
                    let snapshot = next_snapshot(&mut watch).await?;
                    let place = match snapshot.places.get(&key) {
                        Some(Some(view)) => place_json(&state, view),
                        Some(None) => QueuePlace {
                            state: QueueState::Left,
                            position: None,
                            admitted: false,
                            estimated_wait_seconds: None,
                            admission_token: None,
                            admission_expires_at: None,
                            ..last.clone()
                        },
                        None => continue,
                    };
                    if place != last {
                        last = place.clone();
                        let event = place_event(&place);
                        let next = if is_over(&place) {
                            Next::Done
                        } else {
                            Next::Live
                        };
                        break Some((Ok(event), (next, last, watch, state, key)));
                    }
                },
            }
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The newest snapshot (a lagging stream skips to it); `None` when the hub stopped.
async fn next_snapshot(watch: &mut Watch) -> Option<std::sync::Arc<RoomSnapshot>> {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match watch.receiver.recv().await {
            Ok(snapshot) => return Some(snapshot),
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return None,
        }
    }
}

/// The waiting room's figures.
#[utoipa::path(
    get, operation_id = "getQueueFigures", path = "/admin/v1/events/{event_id}/queue", tag = "admin", security(("bearer" = [])),
    params(("event_id" = String, Path, description = "Event id", example = "ev_demo_00001")),
    responses(
        (status = 200, description = "The room's figures", body = QueueFigures),
        (status = 404, description = "No such event, or it never had a waiting room", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn figures(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath(event_id): ApiPath<String>,
) -> Result<ApiJson<QueueFigures>, ApiError> {
    state.event(&event_id).await?;
    let figures: RoomFigures = state
        .inventory
        .room_figures(&event_id)
        .await?
        .ok_or_else(|| ApiError::not_found("this event has no waiting room"))?;
    Ok(ApiJson(QueueFigures {
        event_id: figures.event_id,
        enabled: figures.settings.enabled,
        admit_per_second: figures.settings.admit_per_second,
        opened: figures.opened,
        closed: figures.closed,
        waiting: figures.waiting,
        admitted: figures.admitted,
        admitted_total: figures.admitted_total,
        bought: figures.bought,
        expired: figures.expired,
        left: figures.left,
        abandoned: figures.abandoned,
        closed_places: figures.closed_places,
        unsold: figures.unsold,
        admit_rate: figures.admit_rate_milli as f64 / 1000.0,
        shuffle_seed: figures.shuffle_seed.map(|s| format!("{s:016x}")),
    }))
}
