//! Bookings: `POST /v1/bookings` turns a live hold into a booking awaiting payment (opening a
//! payment intent at the processor), `GET /v1/bookings/{id}`, `GET /v1/me/bookings`.

use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use boxoffice_raft::types::{
    Booking, BookingStatus, CreateBookingCmd, FailureReason, HoldStatus, Rejection,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::auth::{Role, User};
use crate::catalog::Money;
use crate::clock::rfc3339_from_ms;
use crate::extract::{ApiJson, ApiPath};
use crate::ids::{derived_event_scoped_id, digest, event_of, idempotency_key, request_id, IdKind};
use crate::inventory::{refused, rejection, Doing};
use crate::metrics::BOOKINGS;
use crate::payments::{IntentStatus, NewIntent, PaymentIntent};
use crate::problem::ApiError;

use super::holds::{may_see, read_hold};

/// Most bookings `GET /v1/me/bookings` lists (newest first).
pub const MAX_BOOKINGS_LISTED: usize = 200;

/// `POST /v1/bookings`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BookingRequest {
    pub hold_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BookingState {
    PendingPayment,
    Confirmed,
    Failed,
    Refunded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureWord {
    HoldExpired,
    HoldReleased,
    PaymentDeclined,
}

/// A booked seat.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BookedSeat {
    pub id: String,
    pub section: String,
    pub row: String,
    pub number: u32,
    pub price: Money,
}

/// How to pay (while pending) and how the payment stands.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PaymentView {
    pub intent_id: String,
    /// `requires_payment_method`, `succeeded`, `failed`, `refunded`; absent when the
    /// processor could not be asked.
    pub status: Option<IntentStatus>,
    /// Only while the booking awaits payment.
    pub client_secret: Option<String>,
    /// A page where a person can pay; only while the booking awaits payment.
    pub checkout_url: Option<String>,
}

/// A booking.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BookingView {
    pub booking_id: String,
    pub status: BookingState,
    /// Why a failed (or refunded) booking failed.
    pub failure_reason: Option<FailureWord>,
    pub event_id: String,
    pub hold_id: String,
    pub seats: Vec<BookedSeat>,
    pub total: Money,
    pub payment: PaymentView,
    pub created_at: String,
    pub updated_at: String,
}

/// `GET /v1/me/bookings`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BookingList {
    pub bookings: Vec<BookingView>,
}

pub fn booking_state(status: BookingStatus) -> BookingState {
    match status {
        BookingStatus::PendingPayment => BookingState::PendingPayment,
        BookingStatus::Confirmed => BookingState::Confirmed,
        BookingStatus::Failed => BookingState::Failed,
        BookingStatus::Refunded => BookingState::Refunded,
    }
}

fn failure_word(reason: FailureReason) -> FailureWord {
    match reason {
        FailureReason::HoldExpired => FailureWord::HoldExpired,
        FailureReason::HoldReleased => FailureWord::HoldReleased,
        FailureReason::PaymentDeclined => FailureWord::PaymentDeclined,
    }
}

/// Renders a booking; `intent` is the processor's view of its payment, if known.
fn booking_view(
    state: &AppState,
    booking: &Booking,
    intent: Option<&PaymentIntent>,
) -> BookingView {
    let seat_cache = state.seats.get(&booking.event_id);
    let seats = booking
        .seat_ids
        .iter()
        .map(|id| {
            let spec = seat_cache.as_ref().and_then(|s| s.spec(id));
            BookedSeat {
                id: id.clone(),
                section: spec.map(|s| s.section.clone()).unwrap_or_default(),
                row: spec.map(|s| s.row.clone()).unwrap_or_default(),
                number: spec.map(|s| s.number).unwrap_or(0),
                price: Money {
                    amount: spec.map(|s| s.price_minor).unwrap_or(0),
                    currency: booking.currency.clone(),
                },
            }
        })
        .collect();
    let pending = booking.status == BookingStatus::PendingPayment;
    BookingView {
        booking_id: booking.booking_id.clone(),
        status: booking_state(booking.status),
        failure_reason: booking.failure.map(failure_word),
        event_id: booking.event_id.clone(),
        hold_id: booking.hold_id.clone(),
        seats,
        total: Money {
            amount: booking.total_minor,
            currency: booking.currency.clone(),
        },
        payment: PaymentView {
            intent_id: booking.payment_ref.clone(),
            status: intent.map(|i| i.status),
            client_secret: intent.filter(|_| pending).map(|i| i.client_secret.clone()),
            checkout_url: intent.filter(|_| pending).map(|i| i.checkout_url.clone()),
        },
        created_at: rfc3339_from_ms(booking.created_at_ms),
        updated_at: rfc3339_from_ms(booking.updated_at_ms),
    }
}

/// Starts paying for a live hold: opens a payment intent and records the booking as
/// `pending_payment`. Pay at `payment.checkout_url` (or the processor's confirm API); the
/// processor's webhook then confirms the booking.
#[utoipa::path(
    post, operation_id = "createBooking", path = "/v1/bookings", tag = "bookings", security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "Unique per booking attempt; resend it to retry safely")),
    request_body = BookingRequest,
    responses(
        (status = 201, description = "Booked, awaiting payment", body = BookingView),
        (status = 409, description = "The hold is not yours, was released or confirmed, or already has a booking", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 410, description = "The hold has expired", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    ApiJson(body): ApiJson<BookingRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let event_id = event_of(IdKind::Hold, &body.hold_id)?.to_owned();
    state.check_key(
        &user.id,
        &key,
        &digest(&[b"booking", body.hold_id.as_bytes()], 32),
    )?;
    // Only the owner books; an admin reading someone's hold does not make it theirs.
    let owner = User {
        id: user.id.clone(),
        role: Role::User,
    };
    let (hold, at_ms) = read_hold(&state, &owner, &body.hold_id).await?;
    let booking_id = derived_event_scoped_id(IdKind::Booking, &user.id, &key, &event_id);
    let replay = hold.booking_id.as_deref() == Some(booking_id.as_str());
    if !replay {
        match hold.status_at(at_ms) {
            HoldStatus::Active => {}
            HoldStatus::Expired => {
                return Err(ApiError::Gone {
                    detail: "the hold has expired".into(),
                })
            }
            other => return Err(rejection(Rejection::HoldNotActive(other), Doing::Book)),
        }
    }
    let event = state.event(&event_id).await?;
    let intent = state
        .payments
        .create_intent(&NewIntent {
            booking_id: booking_id.clone(),
            amount: hold.total_minor,
            currency: event.currency.clone(),
            idempotency_key: booking_id.clone(),
        })
        .await?;
    let command = CreateBookingCmd {
        booking_id,
        hold_id: hold.hold_id.clone(),
        owner: user.id.clone(),
        payment_ref: intent.intent_id.clone(),
    };
    let booking = state
        .inventory
        .create_booking(&event_id, &request_id("booking", &user.id, &key), command)
        .await
        .map_err(|e| {
            if matches!(e, boxoffice_raft::InventoryError::Rejected(_)) {
                metrics::counter!(BOOKINGS, "outcome" => "rejected").increment(1);
            }
            refused(e, Doing::Book)
        })?;
    metrics::counter!(BOOKINGS, "outcome" => "created").increment(1);
    let view = booking_view(&state, &booking, Some(&intent));
    let mut response = (StatusCode::CREATED, ApiJson(view)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/bookings/{}", booking.booking_id)) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

/// Reads a booking the caller may see (its owner or an admin); 404 otherwise.
pub(crate) async fn read_booking(
    state: &AppState,
    user: &User,
    booking_id: &str,
) -> Result<Booking, ApiError> {
    let event_id = event_of(IdKind::Booking, booking_id)?;
    match state.inventory.get_booking(event_id, booking_id).await? {
        Some(booking) if may_see(user, &booking.owner) => Ok(booking),
        _ => Err(ApiError::not_found(format!("no booking {booking_id}"))),
    }
}

/// The booking and its payment.
#[utoipa::path(
    get, operation_id = "getBooking", path = "/v1/bookings/{booking_id}", tag = "bookings", security(("bearer" = [])),
    params(("booking_id" = String, Path, description = "Booking id")),
    responses((status = 200, description = "The booking", body = BookingView))
)]
pub async fn get(
    State(state): State<AppState>,
    user: User,
    ApiPath(booking_id): ApiPath<String>,
) -> Result<ApiJson<BookingView>, ApiError> {
    let booking = read_booking(&state, &user, &booking_id).await?;
    let intent = state.payments.get_intent(&booking.payment_ref).await.ok();
    Ok(ApiJson(booking_view(&state, &booking, intent.as_ref())))
}

/// The caller's bookings, newest first (at most 200).
#[utoipa::path(
    get, operation_id = "listMyBookings", path = "/v1/me/bookings", tag = "bookings", security(("bearer" = [])),
    responses((status = 200, description = "The caller's bookings", body = BookingList))
)]
pub async fn mine(
    State(state): State<AppState>,
    user: User,
) -> Result<ApiJson<BookingList>, ApiError> {
    let mut groups = state.seats.groups();
    if groups.is_empty() {
        groups = state
            .inventory
            .refresh_groups()
            .await?
            .into_iter()
            .map(|(g, _)| g)
            .filter(|g| *g != boxoffice_raft::types::META_GROUP)
            .collect();
    }
    let reads = groups.into_iter().map(|group| {
        let inventory = state.inventory.clone();
        let owner = user.id.clone();
        async move { inventory.bookings_of(group, &owner).await }
    });
    let mut bookings = Vec::new();
    for found in futures_util::future::join_all(reads).await {
        bookings.extend(found?);
    }
    bookings
        .sort_by(|a, b| (b.created_at_ms, &b.booking_id).cmp(&(a.created_at_ms, &a.booking_id)));
    bookings.truncate(MAX_BOOKINGS_LISTED);
    let mut views = Vec::with_capacity(bookings.len());
    for booking in &bookings {
        // Only a pending booking needs its payment link; the rest skip the processor call.
        let intent = if booking.status == BookingStatus::PendingPayment {
            state.payments.get_intent(&booking.payment_ref).await.ok()
        } else {
            None
        };
        views.push(booking_view(&state, booking, intent.as_ref()));
    }
    Ok(ApiJson(BookingList { bookings: views }))
}
