//! `POST /v1/webhooks/payments`: the processor's signed events. The signature is checked
//! before anything else (a bad one is a 400 and changes nothing); then the event is applied
//! through the booking's shard under a request id derived from the event id, so a
//! redelivered event replays its first outcome and changes nothing.
//!
//! A payment that succeeds for a booking that can no longer be confirmed (its hold expired
//! or was released) is refunded at the processor and the booking marked `refunded`. Any
//! failure to reach the shard or the processor answers 503, so the processor redelivers and
//! the remaining steps run then.

use axum::extract::State;
use axum::http::HeaderMap;
use boxoffice_raft::client::Settlement;
use boxoffice_raft::types::{
    Booking, BookingStatus, ConfirmCmd, FailPaymentCmd, FailureReason, GroupId, MarkRefundedCmd,
    Rejection,
};
use boxoffice_raft::InventoryError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::extract::{ApiBytes, ApiJson};
use crate::ids::{event_of, request_id, IdKind};
use crate::metrics::CONFIRMS;
use crate::payments::signature::SIGNATURE_HEADER;
use crate::payments::{PaymentEvent, PaymentEventKind};
use crate::problem::ApiError;

/// What the webhook did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookResult {
    Confirmed,
    Failed,
    Refunded,
    Ignored,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookAck {
    pub received: bool,
    pub event_id: String,
    pub result: WebhookResult,
}

/// Seconds the processor should wait before redelivering after a 503.
const REDELIVER_AFTER_SECS: u64 = 1;

fn ack(event: &PaymentEvent, result: WebhookResult) -> ApiJson<WebhookAck> {
    let outcome = match result {
        WebhookResult::Confirmed => "confirmed",
        WebhookResult::Failed => "failed",
        WebhookResult::Refunded => "refunded",
        WebhookResult::Ignored => "ignored",
    };
    metrics::counter!(CONFIRMS, "outcome" => outcome).increment(1);
    ApiJson(WebhookAck {
        received: true,
        event_id: event.id.clone(),
        result,
    })
}

/// Receives a payment processor event (signed with `Boxoffice-Signature`).
#[utoipa::path(
    post, operation_id = "receivePaymentEvent", path = "/v1/webhooks/payments", tag = "payments",
    params(("Boxoffice-Signature" = String, Header, description = "`t=<unix seconds>,v1=<hex HMAC-SHA256 of \"t.body\">`")),
    request_body(content = crate::payments::event::PaymentEvent, description = "The processor's event"),
    responses(
        (status = 200, description = "Applied (or ignored: unknown type, not our booking)", body = WebhookAck),
        (status = 400, description = "Bad signature or body; nothing changed", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> Result<ApiJson<WebhookAck>, ApiError> {
    let signature = headers
        .get(SIGNATURE_HEADER)
        .map(|v| v.to_str().unwrap_or(""));
    let event = PaymentEvent::verify_and_parse(
        signature,
        &body,
        &state.webhook_secret,
        state.now_ms() / 1000,
    )?;
    if event.kind == PaymentEventKind::Unknown {
        return Ok(ack(&event, WebhookResult::Ignored));
    }
    let booking_id = event.data.booking_id.clone();
    let Ok(event_id) = event_of(IdKind::Booking, &booking_id) else {
        tracing::warn!(booking_id, event_id = %event.id, "payment event for a booking that is not ours");
        return Ok(ack(&event, WebhookResult::Ignored));
    };
    let group = match state.inventory.group_of(event_id).await {
        Ok(group) => group,
        Err(InventoryError::UnknownEvent(_)) => return Ok(ack(&event, WebhookResult::Ignored)),
        Err(error) => return Err(unavailable(error.into())),
    };
    let request = request_id("payment-event", "", &event.id);
    let inventory = &state.inventory;
    let settled = match event.kind {
        PaymentEventKind::Succeeded => {
            let cmd = ConfirmCmd {
                booking_id: booking_id.clone(),
                payment_event_id: event.id.clone(),
            };
            inventory.confirm(group, &request, cmd).await
        }
        PaymentEventKind::PaymentFailed => {
            let cmd = FailPaymentCmd {
                booking_id: booking_id.clone(),
                payment_event_id: event.id.clone(),
            };
            inventory.fail_payment(group, &request, cmd).await
        }
        PaymentEventKind::Refunded => {
            let cmd = MarkRefundedCmd {
                booking_id: booking_id.clone(),
            };
            inventory
                .mark_refunded(group, &request, cmd)
                .await
                .map(Settlement::Refunded)
        }
        PaymentEventKind::Unknown => return Ok(ack(&event, WebhookResult::Ignored)),
    };
    let result = match settled {
        Ok(Settlement::Confirmed(booking)) => {
            if booking.total_minor != event.data.amount {
                tracing::error!(
                    booking_id,
                    paid = event.data.amount,
                    total = booking.total_minor,
                    "payment amount differs from the booking total"
                );
            }
            if event.kind == PaymentEventKind::Succeeded {
                WebhookResult::Confirmed
            } else {
                WebhookResult::Ignored
            }
        }
        Ok(Settlement::Failed(booking)) if event.kind == PaymentEventKind::Succeeded => {
            refund(&state, group, &booking).await?;
            WebhookResult::Refunded
        }
        Ok(Settlement::Failed(_)) => WebhookResult::Failed,
        Ok(Settlement::Refunded(_)) => WebhookResult::Refunded,
        Err(InventoryError::Rejected(Rejection::UnknownBooking)) => {
            tracing::warn!(booking_id, event_id = %event.id, "payment event for an unknown booking");
            WebhookResult::Ignored
        }
        // A refund notice for a booking that is not failed (e.g. confirmed) changes nothing.
        Err(InventoryError::Rejected(Rejection::BookingState(_))) => WebhookResult::Ignored,
        Err(InventoryError::Rejected(other)) => {
            return Err(ApiError::Internal(format!(
                "payment event {} rejected: {other:?}",
                event.id
            )))
        }
        Err(error) => return Err(unavailable(error.into())),
    };
    Ok(ack(&event, result))
}

/// Gives a payment back for a booking that failed after it was paid, then records it.
async fn refund(state: &AppState, group: GroupId, booking: &Booking) -> Result<(), ApiError> {
    if booking.status == BookingStatus::Refunded {
        return Ok(());
    }
    let reason = match booking.failure {
        Some(FailureReason::HoldReleased) => "hold released before payment",
        _ => "hold expired before payment",
    };
    state
        .payments
        .refund(&booking.payment_ref, reason)
        .await
        .map_err(unavailable)?;
    let command = MarkRefundedCmd {
        booking_id: booking.booking_id.clone(),
    };
    let request = request_id("refund", "", &booking.booking_id);
    match state
        .inventory
        .mark_refunded(group, &request, command)
        .await
    {
        Ok(_) => {
            tracing::info!(booking_id = %booking.booking_id, reason, "payment refunded");
            Ok(())
        }
        Err(InventoryError::Rejected(r)) => Err(ApiError::Internal(format!(
            "marking {} refunded was refused: {r:?}",
            booking.booking_id
        ))),
        Err(error) => Err(unavailable(error.into())),
    }
}

/// Anything that went wrong after the signature checked out is worth a redelivery.
fn unavailable(error: ApiError) -> ApiError {
    match error {
        ApiError::Unavailable { .. } => error,
        other => ApiError::Unavailable {
            detail: format!("could not apply the event now ({other}); redeliver it"),
            retry_after_secs: REDELIVER_AFTER_SECS,
        },
    }
}
