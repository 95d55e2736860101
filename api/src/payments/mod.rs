//! Payments: the [`PaymentProcessor`] trait the booking flow charges through, the local
//! sandbox processor that implements it, and the receiving side of the processor's signed
//! webhooks (signature check, typed events).
//!
//! * [`signature`]: `Boxoffice-Signature` signing and verification (HMAC-SHA256 over
//!   `"{t}.{body}"`, Stripe style).
//! * [`event`]: the webhook body as a typed [`PaymentEvent`].
//! * [`webhook`]: the owned task that delivers signed events with exponential backoff.
//! * [`sandbox`]: the Stripe-shaped in-memory processor and the [`SandboxProcessor`]
//!   adapter.
//! * [`sandbox_routes`]: its HTTP routes (JSON API and the checkout page's handlers).
//! * [`checkout`]: the sandbox's HTML checkout page for people, rendered from a
//!   [`PaymentIntent`] alone.

pub mod checkout;
pub mod event;
pub mod sandbox;
pub mod sandbox_routes;
pub mod signature;
pub mod webhook;

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::problem::ApiError;

/// The sandbox's test card that always succeeds.
pub const CARD_SUCCEEDS: &str = "4242424242424242";
/// The sandbox's test card that is always declined.
pub const CARD_DECLINED: &str = "4000000000000002";

pub use event::{PaymentEvent, PaymentEventData, PaymentEventKind};
pub use sandbox::{Sandbox, SandboxConfig, SandboxProcessor};
pub use sandbox_routes::sandbox_routes;
pub use signature::{signature_header, verify_signature, SignatureError};
pub use webhook::{WebhookRetryConfig, WebhookWorker};

/// A boxed, sendable future, so [`PaymentProcessor`] can be used as `dyn`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a payment intent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IntentStatus {
    /// Created; waiting for a card.
    RequiresPaymentMethod,
    /// Paid. Final unless refunded.
    Succeeded,
    /// The card was declined. Final: the booking fails, a new booking needs a new intent.
    Failed,
    /// Paid, then refunded. Final.
    Refunded,
}

/// A payment the processor knows about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentIntent {
    pub intent_id: String,
    pub booking_id: String,
    /// Minor units of `currency`.
    pub amount: u64,
    /// ISO 4217, upper case.
    pub currency: String,
    pub status: IntentStatus,
    /// Lets a client confirm this one intent; hand it only to the booking's owner.
    pub client_secret: String,
    /// A page where a person can pay.
    pub checkout_url: String,
}

/// What the booking flow asks a processor to charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIntent {
    pub booking_id: String,
    /// Minor units of `currency`.
    pub amount: u64,
    /// ISO 4217.
    pub currency: String,
    /// The same key with the same request returns the same intent; with another request
    /// it is a conflict.
    pub idempotency_key: String,
}

/// A card processor. Outcomes of payments arrive later as signed webhooks
/// ([`PaymentEvent`]); these calls only start and inspect them.
pub trait PaymentProcessor: Send + Sync {
    /// Opens a payment for a booking.
    fn create_intent<'a>(
        &'a self,
        request: &'a NewIntent,
    ) -> BoxFuture<'a, Result<PaymentIntent, ApiError>>;

    /// The intent as the processor sees it now.
    fn get_intent<'a>(
        &'a self,
        intent_id: &'a str,
    ) -> BoxFuture<'a, Result<PaymentIntent, ApiError>>;

    /// Gives a succeeded payment back (a booking that could not be confirmed). Refunding a
    /// refunded intent changes nothing.
    fn refund<'a>(
        &'a self,
        intent_id: &'a str,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<PaymentIntent, ApiError>>;
}
