//! The admin catalog API (role admin): create venues (with their seat layout), performers and
//! events (placing the event in a shard and registering its seats there), read and patch.
//!
//! Creates are idempotent under an optional `Idempotency-Key`: the id is derived from the
//! key, and a retry with the same body answers the document already stored.

use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use boxoffice_raft::types::{PutCatalogCmd, RegisterEventCmd, SetHoldTtlCmd, SetQueueCmd};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::app::AppState;
use crate::auth::Admin;
use crate::catalog::{
    Event, EventPatch, NewEvent, NewPerformer, NewVenue, Performer, Venue, KIND_EVENT,
    KIND_PERFORMER, KIND_VENUE,
};
use crate::extract::{ApiJson, ApiPath};
use crate::ids::{derived_catalog_id, digest, new_catalog_id, optional_idempotency_key, IdKind};
use crate::inventory::{refused, Doing};
use crate::problem::ApiError;

/// Stores a catalog document in the meta group.
pub(crate) async fn put_doc<T: Serialize>(
    state: &AppState,
    kind: &str,
    id: &str,
    doc: &T,
) -> Result<(), ApiError> {
    let bytes = serde_json::to_vec(doc)
        .map_err(|e| ApiError::Internal(format!("encoding a {kind}: {e}")))?;
    let request = format!(
        "catalog/{}",
        digest(&[kind.as_bytes(), id.as_bytes(), &bytes], 32)
    );
    let command = PutCatalogCmd {
        kind: kind.to_owned(),
        id: id.to_owned(),
        doc: bytes.clone(),
    };
    state
        .inventory
        .put_catalog(&request, command)
        .await
        .map_err(|e| refused(e, Doing::Catalog))?;
    // Serve our own write at once; the feed brings it to the other nodes.
    state.catalog.put(kind, id, Some(&bytes));
    if kind == KIND_EVENT {
        state.views.invalidate(id);
    } else {
        state.views.invalidate_all();
    }
    Ok(())
}

fn created<T: Serialize>(location: String, doc: T) -> Response {
    let mut response = (StatusCode::CREATED, ApiJson(doc)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// The id to create under, and (for an idempotent retry) the document already there.
async fn id_for<T: DeserializeOwned>(
    state: &AppState,
    admin: &Admin,
    headers: &HeaderMap,
    kind: IdKind,
    kind_name: &str,
    request_digest: &str,
    stored_digest: impl Fn(&T) -> &str,
) -> Result<(String, Option<T>), ApiError> {
    let Some(key) = optional_idempotency_key(headers)? else {
        return Ok((new_catalog_id(kind), None));
    };
    let id = derived_catalog_id(kind, &admin.id, &key);
    let Some(bytes) = state.inventory.catalog_doc(kind_name, &id).await? else {
        return Ok((id, None));
    };
    let existing: T = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::Internal(format!("stored {kind_name} {id}: {e}")))?;
    if stored_digest(&existing) == request_digest {
        Ok((id, Some(existing)))
    } else {
        Err(ApiError::IdempotencyKeyReused)
    }
}

fn body_digest<T: Serialize>(kind: &str, body: &T) -> String {
    digest(
        &[
            kind.as_bytes(),
            &serde_json::to_vec(body).unwrap_or_default(),
        ],
        32,
    )
}

/// Creates a venue with its seat layout.
#[utoipa::path(
    post, operation_id = "createVenue", path = "/admin/v1/venues", tag = "admin", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the create safe to retry")),
    request_body = NewVenue,
    responses((status = 201, description = "Created", body = Venue))
)]
pub async fn create_venue(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewVenue>,
) -> Result<Response, ApiError> {
    let request_digest = body_digest(KIND_VENUE, &body);
    let (venue_id, existing) = id_for(
        &state,
        &admin,
        &headers,
        IdKind::Venue,
        KIND_VENUE,
        &request_digest,
        |v: &Venue| &v.request_digest,
    )
    .await?;
    let mut venue = match existing {
        Some(venue) => venue,
        None => {
            let venue = body.into_venue(venue_id.clone(), state.now_ms(), request_digest)?;
            put_doc(&state, KIND_VENUE, &venue_id, &venue).await?;
            venue
        }
    };
    venue.request_digest.clear();
    Ok(created(format!("/admin/v1/venues/{venue_id}"), venue))
}

/// A venue.
#[utoipa::path(
    get, operation_id = "getVenue", path = "/admin/v1/venues/{venue_id}", tag = "admin", security(("bearer" = [])),
    params(("venue_id" = String, Path, description = "Venue id")),
    responses((status = 200, description = "The venue", body = Venue))
)]
pub async fn get_venue(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath(venue_id): ApiPath<String>,
) -> Result<ApiJson<Venue>, ApiError> {
    let mut venue = state
        .venue(&venue_id)
        .await?
        .map(|v| (*v).clone())
        .ok_or_else(|| ApiError::not_found(format!("no venue {venue_id}")))?;
    venue.request_digest.clear();
    Ok(ApiJson(venue))
}

/// Creates a performer.
#[utoipa::path(
    post, operation_id = "createPerformer", path = "/admin/v1/performers", tag = "admin", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the create safe to retry")),
    request_body = NewPerformer,
    responses((status = 201, description = "Created", body = Performer))
)]
pub async fn create_performer(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewPerformer>,
) -> Result<Response, ApiError> {
    let request_digest = body_digest(KIND_PERFORMER, &body);
    let (performer_id, existing) = id_for(
        &state,
        &admin,
        &headers,
        IdKind::Performer,
        KIND_PERFORMER,
        &request_digest,
        |p: &Performer| &p.request_digest,
    )
    .await?;
    let mut performer = match existing {
        Some(performer) => performer,
        None => {
            let performer =
                body.into_performer(performer_id.clone(), state.now_ms(), request_digest)?;
            put_doc(&state, KIND_PERFORMER, &performer_id, &performer).await?;
            performer
        }
    };
    performer.request_digest.clear();
    Ok(created(
        format!("/admin/v1/performers/{performer_id}"),
        performer,
    ))
}

/// Creates an event at a venue: assigns it a shard, registers the venue's seats there, then
/// publishes the event in the catalog.
#[utoipa::path(
    post, operation_id = "createEvent", path = "/admin/v1/events", tag = "admin", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the create safe to retry")),
    request_body = NewEvent,
    responses(
        (status = 201, description = "Created", body = Event),
        (status = 422, description = "The venue or a performer does not exist", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_event(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewEvent>,
) -> Result<Response, ApiError> {
    let request_digest = body_digest(KIND_EVENT, &body);
    let (event_id, existing) = id_for(
        &state,
        &admin,
        &headers,
        IdKind::Event,
        KIND_EVENT,
        &request_digest,
        |e: &Event| &e.request_digest,
    )
    .await?;
    let mut event = match existing {
        Some(event) => event,
        None => create_event_doc(&state, event_id.clone(), body, request_digest).await?,
    };
    event.request_digest.clear();
    Ok(created(format!("/v1/events/{event_id}"), event))
}

/// Checks references, registers the seats and stores the event document.
pub async fn create_event_doc(
    state: &AppState,
    event_id: String,
    body: NewEvent,
    request_digest: String,
) -> Result<Event, ApiError> {
    let venue = state
        .venue(&body.venue_id)
        .await?
        .ok_or_else(|| ApiError::Unprocessable {
            detail: format!("no venue {}", body.venue_id),
            field: Some("venue_id".into()),
        })?;
    let event = body.into_event(event_id.clone(), &venue, state.now_ms(), request_digest)?;
    check_performers(state, &event.performer_ids).await?;
    let register = RegisterEventCmd {
        event_id: event_id.clone(),
        currency: event.currency.clone(),
        hold_ttl_ms: event.hold_ttl_seconds.saturating_mul(1000),
        seats: venue.seats(),
    };
    state
        .inventory
        .register_event_least_loaded(&format!("register/{event_id}"), register)
        .await
        .map_err(|e| refused(e, Doing::Catalog))?;
    if event.queue.enabled {
        set_queue(state, &event).await?;
    }
    put_doc(state, KIND_EVENT, &event_id, &event).await?;
    Ok(event)
}

/// Gives the event's waiting-room settings to its shard (the state machine runs the room),
/// under a request id unique to this version of the document.
async fn set_queue(state: &AppState, event: &Event) -> Result<(), ApiError> {
    let doc = serde_json::to_vec(event).unwrap_or_default();
    let request = format!("queue/{}", digest(&[event.event_id.as_bytes(), &doc], 32));
    let command = SetQueueCmd {
        event_id: event.event_id.clone(),
        settings: event.queue.to_inventory(),
    };
    state
        .inventory
        .set_queue(&request, command)
        .await
        .map_err(|e| refused(e, Doing::Catalog))
}

async fn check_performers(state: &AppState, ids: &[String]) -> Result<(), ApiError> {
    for (i, id) in ids.iter().enumerate() {
        if state.performer(id).await?.is_none() {
            return Err(ApiError::Unprocessable {
                detail: format!("no performer {id}"),
                field: Some(format!("performer_ids[{i}]")),
            });
        }
    }
    Ok(())
}

/// An event's stored document.
#[utoipa::path(
    get, operation_id = "getAdminEvent", path = "/admin/v1/events/{event_id}", tag = "admin", security(("bearer" = [])),
    params(("event_id" = String, Path, description = "Event id", example = "ev_demo_00001")),
    responses((status = 200, description = "The event", body = Event))
)]
pub async fn get_event(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath(event_id): ApiPath<String>,
) -> Result<ApiJson<Event>, ApiError> {
    let mut event = (*state.event(&event_id).await?).clone();
    event.request_digest.clear();
    Ok(ApiJson(event))
}

/// Changes an event's details, sale state, hold lifetime or queue settings.
#[utoipa::path(
    patch, operation_id = "patchEvent", path = "/admin/v1/events/{event_id}", tag = "admin", security(("bearer" = [])),
    params(("event_id" = String, Path, description = "Event id", example = "ev_demo_00001")),
    request_body = EventPatch,
    responses((status = 200, description = "The updated event", body = Event))
)]
pub async fn patch_event(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath(event_id): ApiPath<String>,
    ApiJson(patch): ApiJson<EventPatch>,
) -> Result<ApiJson<Event>, ApiError> {
    // Read the stored document, not the cache, so a patch never undoes a newer one.
    let current = state.event(&event_id).await?;
    let current: Event = match state.inventory.catalog_doc(KIND_EVENT, &event_id).await? {
        Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|_| (*current).clone()),
        None => return Err(ApiError::not_found(format!("no event {event_id}"))),
    };
    if let Some(ids) = &patch.performer_ids {
        check_performers(&state, ids).await?;
    }
    let new_ttl = patch.hold_ttl_seconds;
    let queue_patched = patch.queue.is_some();
    let mut event = patch.apply(current, state.now_ms())?;
    if let Some(seconds) = new_ttl {
        // Holds take their lifetime from the inventory's copy, so that is changed first,
        // under a request id unique to this version of the document.
        let doc = serde_json::to_vec(&event).unwrap_or_default();
        let request = format!("hold-ttl/{}", digest(&[event_id.as_bytes(), &doc], 32));
        let command = SetHoldTtlCmd {
            event_id: event_id.clone(),
            hold_ttl_ms: seconds.saturating_mul(1000),
        };
        state
            .inventory
            .set_hold_ttl(&request, command)
            .await
            .map_err(|e| refused(e, Doing::Catalog))?;
    }
    if queue_patched {
        set_queue(&state, &event).await?;
    }
    put_doc(&state, KIND_EVENT, &event_id, &event).await?;
    event.request_digest.clear();
    Ok(ApiJson(event))
}
