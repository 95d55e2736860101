//! The payment webhook body, `{"id": "evt_…", "type": "…", "data": {"intent_id",
//! "booking_id", "amount", "currency"}}`, as a typed [`PaymentEvent`], and the one call the
//! receiving route needs: verify the signature, then parse.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::extract::parse_json;
use crate::problem::ApiError;

use super::signature::{verify_signature, SIGNATURE_TOLERANCE_SECS};

/// One webhook delivery. The same `id` may arrive more than once (retries) and events of
/// one intent may arrive out of order: receivers must be idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentEvent {
    /// `evt_…`, unique per event and stable across its retries.
    pub id: String,
    /// `payment_intent.succeeded`, `payment_intent.payment_failed`, `charge.refunded`;
    /// others are acknowledged and ignored.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "payment_intent.succeeded")]
    pub kind: PaymentEventKind,
    pub data: PaymentEventData,
}

/// The event `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PaymentEventKind {
    /// The card was charged: confirm the booking.
    #[serde(rename = "payment_intent.succeeded")]
    Succeeded,
    /// The card was declined: the booking fails.
    #[serde(rename = "payment_intent.payment_failed")]
    PaymentFailed,
    /// A succeeded payment was given back.
    #[serde(rename = "charge.refunded")]
    Refunded,
    /// A type this version does not know; answer 2xx and ignore it, as Stripe advises.
    #[serde(other, rename = "unknown")]
    Unknown,
}

/// What the event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentEventData {
    pub intent_id: String,
    pub booking_id: String,
    /// Minor units of `currency`.
    #[schema(minimum = 0)]
    pub amount: u64,
    /// ISO 4217; an addition to the contract's `data`, empty if a sender leaves it out.
    #[serde(default)]
    pub currency: String,
}

impl PaymentEvent {
    /// Parses a webhook body; 400 naming the field when it is not an event.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        parse_json(body)
    }

    /// What `POST /v1/webhooks/payments` does before anything else: checks
    /// `signature_header` over the exact `body` bytes (5-minute tolerance around
    /// `now_secs`), then parses. Any failure is a 400 and must change nothing.
    pub fn verify_and_parse(
        signature_header: Option<&str>,
        body: &[u8],
        secret: &[u8],
        now_secs: u64,
    ) -> Result<Self, ApiError> {
        let header = signature_header.ok_or_else(|| {
            ApiError::invalid_field("Boxoffice-Signature", "missing signature header")
        })?;
        verify_signature(header, body, secret, now_secs, SIGNATURE_TOLERANCE_SECS)?;
        Self::parse(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payments::signature::signature_header;
    use serde_json::json;

    #[test]
    fn parses_the_contract_shape() {
        let body = json!({
            "id": "evt_1",
            "type": "payment_intent.succeeded",
            "data": {"intent_id": "pi_1", "booking_id": "b_1", "amount": 12950}
        });
        let event = PaymentEvent::parse(body.to_string().as_bytes()).expect("event");
        assert_eq!(
            event,
            PaymentEvent {
                id: "evt_1".into(),
                kind: PaymentEventKind::Succeeded,
                data: PaymentEventData {
                    intent_id: "pi_1".into(),
                    booking_id: "b_1".into(),
                    amount: 12950,
                    currency: String::new(),
                },
            }
        );
    }

    #[test]
    fn round_trips_every_known_kind() {
        for kind in [
            PaymentEventKind::Succeeded,
            PaymentEventKind::PaymentFailed,
            PaymentEventKind::Refunded,
        ] {
            let event = PaymentEvent {
                id: "evt_2".into(),
                kind,
                data: PaymentEventData {
                    intent_id: "pi_2".into(),
                    booking_id: "b_2".into(),
                    amount: 1,
                    currency: "EUR".into(),
                },
            };
            let bytes = serde_json::to_vec(&event).expect("serialize");
            assert_eq!(PaymentEvent::parse(&bytes).expect("parse"), event);
        }
    }

    #[test]
    fn unknown_types_and_extra_fields_are_tolerated() {
        let body = json!({
            "id": "evt_3", "type": "charge.dispute.created", "livemode": false,
            "data": {"intent_id": "pi_3", "booking_id": "b_3", "amount": 5, "reason": "x"}
        });
        let event = PaymentEvent::parse(body.to_string().as_bytes()).expect("event");
        assert_eq!(event.kind, PaymentEventKind::Unknown);
    }

    #[test]
    fn non_events_are_400() {
        let cases = [
            json!({"id": "evt_4", "type": "payment_intent.succeeded"}),
            json!({"id": "evt_4", "type": "payment_intent.succeeded", "data": {"intent_id": "pi", "booking_id": "b", "amount": -1}}),
            json!([1, 2]),
        ];
        for body in cases {
            let result = PaymentEvent::parse(body.to_string().as_bytes());
            assert!(
                matches!(result, Err(ApiError::InvalidRequest { .. })),
                "{body}: {result:?}"
            );
        }
        assert!(matches!(
            PaymentEvent::parse(b"{"),
            Err(ApiError::MalformedJson { .. })
        ));
    }

    #[test]
    fn verify_and_parse_checks_the_signature_first() {
        let body = json!({
            "id": "evt_5", "type": "payment_intent.payment_failed",
            "data": {"intent_id": "pi_5", "booking_id": "b_5", "amount": 700, "currency": "USD"}
        })
        .to_string();
        let now = 1_800_000_000;
        let header = signature_header(b"secret", now, body.as_bytes());
        let event =
            PaymentEvent::verify_and_parse(Some(&header), body.as_bytes(), b"secret", now + 10)
                .expect("event");
        assert_eq!(event.kind, PaymentEventKind::PaymentFailed);

        for (header, secret, at) in [
            (None, &b"secret"[..], now),
            (Some(header.as_str()), &b"wrong"[..], now),
            (Some(header.as_str()), &b"secret"[..], now + 301),
        ] {
            let result = PaymentEvent::verify_and_parse(header, body.as_bytes(), secret, at);
            assert!(
                matches!(result, Err(ApiError::InvalidRequest { .. })),
                "{result:?}"
            );
        }
    }
}
