//! Holds: `POST /v1/holds` (named seats or the best ones, all-or-nothing, idempotent under
//! `Idempotency-Key`),
//! `GET /v1/holds/{id}`, `DELETE /v1/holds/{id}` (release).

use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use boxoffice_raft::types::{
    Hold, HoldBestCmd, HoldCmd, HoldStatus, Rejection, ReleaseCmd, MAX_SEATS_PER_HOLD,
};
use boxoffice_raft::InventoryError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::auth::{Role, User};
use crate::catalog::Money;
use crate::clock::rfc3339_from_ms;
use crate::extract::{ApiJson, ApiPath};
use crate::ids::{
    derived_event_scoped_id, digest, event_of, idempotency_key, optional_idempotency_key,
    request_id, IdKind, MAX_ID_BYTES,
};
use crate::inventory::{refused, Doing};
use crate::metrics::HOLDS;
use crate::problem::ApiError;

/// Most seat ids one request may name: the inventory's replicated ceiling, refused here
/// before anything is proposed (the replicated limit, never higher, applies after).
pub const MAX_SEAT_IDS_PER_REQUEST: usize = MAX_SEATS_PER_HOLD as usize;

/// `POST /v1/holds`: named seats (`seat_ids`) or the best ones (`quantity`, with optional
/// `section` and `adjacent`). Read as one shape so that every mistake (both forms, neither,
/// a best-available option beside seat ids) is a 400 naming the field; documented as the
/// two forms it accepts ([`NamedHoldRequest`], [`BestHoldRequest`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    pub event_id: String,
    #[serde(default)]
    pub seat_ids: Option<Vec<String>>,
    #[serde(default)]
    pub quantity: Option<u32>,
    #[serde(default)]
    pub section: Option<String>,
    #[serde(default)]
    pub adjacent: Option<bool>,
}

/// Hold these seats, all or none.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"event_id": "ev_demo_00001", "seat_ids": ["s1-A-3", "s1-A-4"]}))]
pub struct NamedHoldRequest {
    pub event_id: String,
    /// Seat ids from `GET /v1/events/{event_id}/seats`; all are held or none.
    #[schema(min_items = 1, max_items = 10)]
    pub seat_ids: Vec<String>,
}

/// Hold the best `quantity` seats free: sections in the venue's order, rows in order, seats
/// nearest the row's middle, never leaving a single seat alone in a row when another choice
/// exists. The choice is the inventory's (replicated, deterministic).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"event_id": "ev_demo_00001", "quantity": 2, "section": "Floor A"}))]
pub struct BestHoldRequest {
    pub event_id: String,
    /// How many seats, 1..=the seats-per-hold limit (10 unless lowered).
    #[schema(minimum = 1, maximum = 10)]
    pub quantity: u32,
    /// A section's name, as the event view lists it; any section when absent.
    #[schema(min_length = 1, max_length = 128)]
    pub section: Option<String>,
    /// Same row, consecutive numbers (default `true`); `false` lets the seats be split
    /// when no such block is free.
    pub adjacent: Option<bool>,
}

/// The two forms of a hold request, as the handler uses them.
#[derive(Debug, Clone)]
pub enum HoldForm {
    Named(NamedHoldRequest),
    Best(BestHoldRequest),
}

impl HoldRequest {
    /// Which form the body is, or a 400 naming the field that makes it neither.
    pub fn form(self) -> Result<HoldForm, ApiError> {
        let best_option = if self.section.is_some() {
            Some("section")
        } else if self.adjacent.is_some() {
            Some("adjacent")
        } else {
            None
        };
        match (self.seat_ids, self.quantity) {
            (Some(_), Some(_)) => Err(ApiError::invalid_field(
                "quantity",
                "name seats (seat_ids) or ask for a quantity, not both",
            )),
            (None, None) => Err(ApiError::invalid_field(
                "seat_ids",
                "name seats (seat_ids) or ask for the best ones (quantity)",
            )),
            (Some(_), None) if best_option.is_some() => Err(ApiError::invalid_field(
                best_option.unwrap_or_default(),
                "only a best-available hold (quantity) takes this",
            )),
            (Some(seat_ids), None) => {
                check_seat_ids(&seat_ids)?;
                Ok(HoldForm::Named(NamedHoldRequest {
                    event_id: self.event_id,
                    seat_ids,
                }))
            }
            (None, Some(quantity)) => {
                check_quantity(quantity)?;
                if let Some(section) = &self.section {
                    if section.is_empty() || section.len() > MAX_ID_BYTES {
                        return Err(ApiError::invalid_field(
                            "section",
                            format!("a section name is 1..={MAX_ID_BYTES} bytes"),
                        ));
                    }
                }
                Ok(HoldForm::Best(BestHoldRequest {
                    event_id: self.event_id,
                    quantity,
                    section: self.section,
                    adjacent: self.adjacent,
                }))
            }
        }
    }
}

impl utoipa::PartialSchema for HoldRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::OneOfBuilder::new()
            .item(NamedHoldRequest::schema())
            .item(BestHoldRequest::schema())
            .description(Some("Named seats, or the best ones"))
            .into()
    }
}

impl ToSchema for HoldRequest {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HoldState {
    Active,
    Expired,
    Released,
    Confirmed,
}

/// A hold.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HoldView {
    pub hold_id: String,
    pub event_id: String,
    pub seat_ids: Vec<String>,
    pub status: HoldState,
    pub total: Money,
    /// RFC 3339 UTC; the seats are yours until then.
    pub expires_at: String,
    pub created_at: String,
    pub booking_id: Option<String>,
}

pub fn hold_state(status: HoldStatus) -> HoldState {
    match status {
        HoldStatus::Active => HoldState::Active,
        HoldStatus::Expired => HoldState::Expired,
        HoldStatus::Released => HoldState::Released,
        HoldStatus::Confirmed => HoldState::Confirmed,
    }
}

fn hold_view(hold: &Hold, currency: &str, now_ms: u64) -> HoldView {
    HoldView {
        hold_id: hold.hold_id.clone(),
        event_id: hold.event_id.clone(),
        seat_ids: hold.seat_ids.clone(),
        status: hold_state(hold.status_at(now_ms)),
        total: Money {
            amount: hold.total_minor,
            currency: currency.to_owned(),
        },
        expires_at: rfc3339_from_ms(hold.expires_at_ms),
        created_at: rfc3339_from_ms(hold.created_at_ms),
        booking_id: hold.booking_id.clone(),
    }
}

fn check_quantity(quantity: u32) -> Result<(), ApiError> {
    if quantity == 0 || quantity as usize > MAX_SEAT_IDS_PER_REQUEST {
        return Err(ApiError::invalid_field(
            "quantity",
            format!("ask for 1..={MAX_SEAT_IDS_PER_REQUEST} seats"),
        ));
    }
    Ok(())
}

fn check_seat_ids(seat_ids: &[String]) -> Result<(), ApiError> {
    if seat_ids.is_empty() {
        return Err(ApiError::invalid_field(
            "seat_ids",
            "name at least one seat",
        ));
    }
    if seat_ids.len() > MAX_SEAT_IDS_PER_REQUEST {
        return Err(ApiError::invalid_field(
            "seat_ids",
            format!("name at most {MAX_SEAT_IDS_PER_REQUEST} seats"),
        ));
    }
    for (i, id) in seat_ids.iter().enumerate() {
        if id.is_empty() || id.len() > MAX_ID_BYTES || id.chars().any(char::is_control) {
            return Err(ApiError::invalid_field(
                format!("seat_ids[{i}]"),
                "not a seat id",
            ));
        }
    }
    Ok(())
}

/// Holds seats for the caller, all or none, until the event's hold lifetime passes: the
/// seats named, or the best ones the inventory finds.
#[utoipa::path(
    post, operation_id = "createHold", path = "/v1/holds", tag = "holds", security(("bearer" = [])),
    params(
        ("Idempotency-Key" = String, Header, description = "Unique per hold attempt; resend it to retry safely"),
        ("Admission-Token" = Option<String>, Header, description = "Required for a queue-enabled event: the token its waiting room gave you when it admitted you"),
    ),
    request_body = HoldRequest,
    responses(
        (status = 201, description = "Held", body = HoldView, headers(("Location" = String, description = "The hold's URL"))),
        (status = 403, description = "A queue-enabled event, and no admission token, another user's, another event's, a tampered or an expired one; nothing held", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Some named seats are not available (`unavailable_seats`), not enough seats match a best-available request (`available`), or the key was used for another request", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    ApiJson(body): ApiJson<HoldRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let form = body.form()?;
    let best = matches!(form, HoldForm::Best(_));
    let event_id = match &form {
        HoldForm::Named(named) => &named.event_id,
        HoldForm::Best(best) => &best.event_id,
    };
    let event = state.event(event_id).await?;
    let now_ms = state.now_ms();
    if !event.on_sale {
        return Err(ApiError::Conflict {
            detail: "this event is not on sale".into(),
        });
    }
    if now_ms >= event.starts_at_ms() {
        return Err(ApiError::Conflict {
            detail: "this event has already started".into(),
        });
    }
    if event.queue.enabled {
        // Verified here, with no round trip: the token is signed by the API tier's key.
        (state.admission).require(&headers, &user.id, &event.event_id, now_ms)?;
    }
    let hold_id = derived_event_scoped_id(IdKind::Hold, &user.id, &key, &event.event_id);
    let request = request_id("hold", &user.id, &key);
    // No TTL: the inventory holds for the event's registered hold lifetime, the one home of
    // that rule (an event PATCH changes it through the log).
    let held = match form {
        HoldForm::Named(named) => {
            let mut parts: Vec<&[u8]> = vec![b"hold", named.event_id.as_bytes()];
            parts.extend(named.seat_ids.iter().map(|s| s.as_bytes()));
            state.check_key(&user.id, &key, &digest(&parts, 32))?;
            let command = HoldCmd {
                event_id: event.event_id.clone(),
                hold_id,
                owner: user.id.clone(),
                seat_ids: named.seat_ids,
                ttl_ms: None,
            };
            state.inventory.hold(&request, command).await
        }
        HoldForm::Best(best) => {
            let adjacent = best.adjacent.unwrap_or(true);
            let quantity = best.quantity.to_string();
            let mut parts: Vec<&[u8]> = vec![
                b"hold-best",
                best.event_id.as_bytes(),
                quantity.as_bytes(),
                if adjacent { b"adjacent" } else { b"split" },
            ];
            if let Some(section) = &best.section {
                parts.extend([b"section".as_slice(), section.as_bytes()]);
            }
            state.check_key(&user.id, &key, &digest(&parts, 32))?;
            let command = HoldBestCmd {
                event_id: event.event_id.clone(),
                hold_id,
                owner: user.id.clone(),
                quantity: best.quantity,
                section: best.section,
                adjacent,
                ttl_ms: None,
            };
            state.inventory.hold_best(&request, command).await
        }
    };
    let counters = hold_counters();
    let counter = match &held {
        Ok(_) => &counters.held,
        Err(InventoryError::SeatsTaken { .. } | InventoryError::NotEnoughSeats { .. }) => {
            &counters.unavailable
        }
        Err(InventoryError::Rejected(_)) => &counters.rejected,
        Err(_) => &counters.error,
    };
    counter.increment(1);
    let hold = held.map_err(|e| match e {
        // The replicated limit may be below the API's ceiling; for a best-available hold the
        // field at fault is the quantity.
        InventoryError::Rejected(Rejection::TooManySeats { max }) if best => {
            ApiError::invalid_field("quantity", format!("ask for 1..={max} seats"))
        }
        other => refused(other, Doing::Hold),
    })?;
    let view = hold_view(&hold.value, &event.currency, hold.at_ms);
    let mut response = (StatusCode::CREATED, ApiJson(view)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/holds/{}", hold.value.hold_id)) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

/// The hold attempts counter per outcome, registered once: a labelled lookup in the
/// registry on every hold costs more than the increment it makes.
struct HoldCounters {
    held: metrics::Counter,
    unavailable: metrics::Counter,
    rejected: metrics::Counter,
    error: metrics::Counter,
}

fn hold_counters() -> &'static HoldCounters {
    static COUNTERS: std::sync::OnceLock<HoldCounters> = std::sync::OnceLock::new();
    COUNTERS.get_or_init(|| HoldCounters {
        held: metrics::counter!(HOLDS, "outcome" => "held"),
        unavailable: metrics::counter!(HOLDS, "outcome" => "unavailable"),
        rejected: metrics::counter!(HOLDS, "outcome" => "rejected"),
        error: metrics::counter!(HOLDS, "outcome" => "error"),
    })
}

/// Whether `user` may see what `owner` holds or booked: its owner or an admin.
pub(crate) fn may_see(user: &User, owner: &str) -> bool {
    owner == user.id || user.role == Role::Admin
}

/// Reads a hold the caller may see (its owner or an admin); 404 otherwise.
pub(crate) async fn read_hold(
    state: &AppState,
    user: &User,
    hold_id: &str,
) -> Result<(Hold, u64), ApiError> {
    let event_id = event_of(IdKind::Hold, hold_id)?;
    match state.inventory.get_hold(event_id, hold_id).await? {
        Some(hold) if may_see(user, &hold.value.owner) => Ok((hold.value, hold.at_ms)),
        _ => Err(ApiError::not_found(format!("no hold {hold_id}"))),
    }
}

/// The hold, with its status now.
#[utoipa::path(
    get, operation_id = "getHold", path = "/v1/holds/{hold_id}", tag = "holds", security(("bearer" = [])),
    params(("hold_id" = String, Path, description = "Hold id")),
    responses((status = 200, description = "The hold", body = HoldView))
)]
pub async fn get(
    State(state): State<AppState>,
    user: User,
    ApiPath(hold_id): ApiPath<String>,
) -> Result<ApiJson<HoldView>, ApiError> {
    let (hold, at_ms) = read_hold(&state, &user, &hold_id).await?;
    let currency = state
        .event(&hold.event_id)
        .await
        .map(|e| e.currency.clone())
        .unwrap_or_default();
    Ok(ApiJson(hold_view(&hold, &currency, at_ms)))
}

/// Gives the hold's seats back. Releasing a released hold is a no-op.
#[utoipa::path(
    delete, operation_id = "releaseHold", path = "/v1/holds/{hold_id}", tag = "holds", security(("bearer" = [])),
    params(
        ("hold_id" = String, Path, description = "Hold id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Optional: releases are idempotent anyway"),
    ),
    responses(
        (status = 204, description = "Released"),
        (status = 409, description = "The hold expired, was confirmed, or is not yours", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn release(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    ApiPath(hold_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let key = optional_idempotency_key(&headers)?;
    let event_id = event_of(IdKind::Hold, &hold_id)?;
    let request = match &key {
        Some(key) => request_id("release", &user.id, key),
        None => request_id("release", &user.id, &hold_id),
    };
    let command = ReleaseCmd {
        hold_id: hold_id.clone(),
        owner: user.id.clone(),
    };
    match state.inventory.release(event_id, &request, command).await {
        Ok(()) | Err(InventoryError::Rejected(Rejection::HoldNotActive(HoldStatus::Released))) => {
            Ok(StatusCode::NO_CONTENT)
        }
        Err(InventoryError::UnknownEvent(_) | InventoryError::Rejected(Rejection::UnknownHold)) => {
            Err(ApiError::not_found(format!("no hold {hold_id}")))
        }
        Err(error) => Err(refused(error, Doing::Release)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seat_ids_are_checked_before_anything_is_proposed() {
        assert!(check_seat_ids(&[]).is_err());
        assert!(check_seat_ids(&vec!["s1-1-1".to_owned(); MAX_SEAT_IDS_PER_REQUEST + 1]).is_err());
        assert!(
            matches!(check_seat_ids(&["ok".into(), "".into()]), Err(ApiError::InvalidRequest { field: Some(f), .. }) if f == "seat_ids[1]")
        );
        assert!(check_seat_ids(&["s1-1-1".into()]).is_ok());
    }

    #[test]
    fn a_hold_reads_as_expired_after_its_time() {
        let hold = Hold {
            hold_id: "ho_1.ev_1".into(),
            event_id: "ev_1".into(),
            owner: "alice".into(),
            seat_ids: vec!["s1-1-1".into()],
            total_minor: 500,
            created_at_ms: 0,
            expires_at_ms: 1_000,
            status: HoldStatus::Active,
            finished_at_ms: None,
            booking_id: None,
        };
        assert_eq!(hold_view(&hold, "USD", 999).status, HoldState::Active);
        let view = hold_view(&hold, "USD", 1_000);
        assert_eq!(view.status, HoldState::Expired);
        assert_eq!(view.expires_at, "1970-01-01T00:00:01Z");
        assert_eq!(
            view.total,
            Money {
                amount: 500,
                currency: "USD".into()
            }
        );
    }
}
