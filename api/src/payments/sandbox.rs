//! The payment sandbox: a Stripe-shaped card processor kept in memory, so the whole
//! booking flow runs with no outside service. Intents live in a bounded table (the oldest
//! is forgotten when it is full); confirming with `4242424242424242` succeeds, with
//! `4000000000000002` is declined, and either outcome is sent as a signed webhook by the
//! [`WebhookWorker`]. Routes:
//!
//! | method & path | does |
//! |---|---|
//! | `POST /sandbox/v1/payment_intents` | `{"booking_id","amount","currency"}`, optional `Idempotency-Key` → 201 intent |
//! | `GET /sandbox/v1/payment_intents/{id}` | the intent |
//! | `POST /sandbox/v1/payment_intents/{id}/confirm` | `{"card_number"}` → 200 intent, `status` `succeeded` or `failed` (a decline is an outcome, not an error); an unknown card is 400 and changes nothing |
//! | `POST /sandbox/v1/payment_intents/{id}/refund` | optional `{"reason"}` → 200 intent, `status` `refunded`; sends `charge.refunded` |
//! | `GET`/`POST /sandbox/checkout/{id}` | the HTML page a person pays on ([`super::checkout`]) |
//!
//! The routes are in [`super::sandbox_routes`]; this module is the processor they drive.
//!
//! The JSON routes take no credentials: the sandbox is a development stand-in and must
//! not be exposed beyond the developer's machine.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::RngCore;
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::problem::ApiError;

use super::event::{PaymentEvent, PaymentEventData, PaymentEventKind};
use super::webhook::{Outgoing, WebhookRetryConfig, WebhookWorker};
use super::{BoxFuture, IntentStatus, NewIntent, PaymentIntent, PaymentProcessor};
pub use super::{CARD_DECLINED, CARD_SUCCEEDS};

/// Intents kept; creating one more forgets the oldest. Sized for a sold-out flash sale of a
/// stadium (a 50,000-seat event makes over 20,000 bookings in a minute; with 10,000 the
/// first buyers' intents were forgotten before they paid), at a few hundred bytes each.
pub const MAX_SANDBOX_INTENTS: usize = 200_000;
/// Largest amount one intent may charge, in minor units (Stripe's limit for USD).
pub const MAX_AMOUNT_MINOR: u64 = 99_999_999;
/// Longest booking id accepted.
pub const MAX_BOOKING_ID_BYTES: usize = 128;
/// Longest idempotency key accepted (Stripe's limit).
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;
/// Longest refund reason kept.
pub const MAX_REFUND_REASON_BYTES: usize = 500;
/// Longest card number field read.
pub const MAX_CARD_NUMBER_BYTES: usize = 64;
/// Seconds a client should wait when the webhook queue is full.
const QUEUE_FULL_RETRY_AFTER_SECS: u64 = 1;

/// How the sandbox is set up.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Base URL the sandbox routes are served under, for `checkout_url`
    /// (`http://127.0.0.1:8080` gives `http://127.0.0.1:8080/sandbox/checkout/pi_…`).
    pub public_base_url: String,
    /// Where webhooks go (`http://…/v1/webhooks/payments`). Plain HTTP only: the crate
    /// builds reqwest without TLS.
    pub webhook_url: String,
    /// Shared with the receiver, which verifies `Boxoffice-Signature` with it.
    pub webhook_secret: Vec<u8>,
    pub max_intents: usize,
    pub retry: WebhookRetryConfig,
}

impl SandboxConfig {
    /// A config with the named default limits.
    pub fn new(
        public_base_url: impl Into<String>,
        webhook_url: impl Into<String>,
        webhook_secret: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            public_base_url: public_base_url.into(),
            webhook_url: webhook_url.into(),
            webhook_secret: webhook_secret.into(),
            max_intents: MAX_SANDBOX_INTENTS,
            retry: WebhookRetryConfig::default(),
        }
    }
}

struct IntentRecord {
    intent: PaymentIntent,
    idempotency_key: Option<String>,
}

/// Intents by id, the order they came in (for eviction) and idempotency keys.
struct IntentTable {
    by_id: HashMap<String, IntentRecord>,
    arrival: VecDeque<String>,
    by_key: HashMap<String, String>,
    max_intents: usize,
}

impl IntentTable {
    fn insert(&mut self, record: IntentRecord) {
        while self.by_id.len() >= self.max_intents.max(1) {
            let Some(oldest) = self.arrival.pop_front() else {
                break;
            };
            if let Some(evicted) = self.by_id.remove(&oldest) {
                if let Some(key) = evicted.idempotency_key {
                    self.by_key.remove(&key);
                }
            }
        }
        let intent_id = record.intent.intent_id.clone();
        if let Some(key) = &record.idempotency_key {
            self.by_key.insert(key.clone(), intent_id.clone());
        }
        self.arrival.push_back(intent_id.clone());
        self.by_id.insert(intent_id, record);
    }

    fn get_mut(&mut self, intent_id: &str) -> Result<&mut IntentRecord, ApiError> {
        self.by_id
            .get_mut(intent_id)
            .ok_or_else(|| ApiError::not_found(format!("no payment intent {intent_id}")))
    }
}

struct SandboxInner {
    config: SandboxConfig,
    table: Mutex<IntentTable>,
    webhooks: mpsc::Sender<Outgoing>,
}

/// The sandbox processor's state; cheap to clone, shared by its routes and by
/// [`SandboxProcessor`].
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<SandboxInner>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("public_base_url", &self.inner.config.public_base_url)
            .field("webhook_url", &self.inner.config.webhook_url)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Creates the sandbox and spawns its webhook worker on the current Tokio runtime.
    /// Keep the worker for as long as the sandbox serves; dropping it stops deliveries.
    /// Fails on a webhook URL that does not parse or outside a Tokio runtime.
    pub fn start(
        config: SandboxConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<(Sandbox, WebhookWorker), ApiError> {
        let secret: Arc<[u8]> = Arc::from(config.webhook_secret.as_slice());
        let (webhooks, worker) =
            WebhookWorker::spawn(&config.webhook_url, secret, clock, config.retry)?;
        Ok((Sandbox::with_queue(config, webhooks), worker))
    }

    /// The sandbox feeding `webhooks`, whoever reads them.
    pub(crate) fn with_queue(config: SandboxConfig, webhooks: mpsc::Sender<Outgoing>) -> Sandbox {
        let table = IntentTable {
            by_id: HashMap::new(),
            arrival: VecDeque::new(),
            by_key: HashMap::new(),
            max_intents: config.max_intents,
        };
        let inner = SandboxInner {
            config,
            table: Mutex::new(table),
            webhooks,
        };
        Sandbox {
            inner: Arc::new(inner),
        }
    }

    /// This sandbox as a [`PaymentProcessor`].
    pub fn processor(&self) -> SandboxProcessor {
        SandboxProcessor {
            sandbox: self.clone(),
        }
    }

    /// (intents kept, entries in the eviction order): the two must agree.
    #[cfg(test)]
    pub(crate) fn table_sizes(&self) -> (usize, usize) {
        let table = self.table();
        (table.by_id.len(), table.arrival.len())
    }

    fn table(&self) -> MutexGuard<'_, IntentTable> {
        // Nothing panics while holding the lock; if something did, the table is still whole.
        self.inner
            .table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens an intent, or returns the one already opened with the same idempotency key.
    pub fn create_intent(&self, request: &NewIntent) -> Result<PaymentIntent, ApiError> {
        let key = (!request.idempotency_key.is_empty()).then_some(request.idempotency_key.as_str());
        self.create(&request.booking_id, request.amount, &request.currency, key)
    }

    pub(crate) fn create(
        &self,
        booking_id: &str,
        amount: u64,
        currency: &str,
        idempotency_key: Option<&str>,
    ) -> Result<PaymentIntent, ApiError> {
        validate_booking_id(booking_id)?;
        if amount == 0 || amount > MAX_AMOUNT_MINOR {
            return Err(ApiError::invalid_field(
                "amount",
                format!("amount must be 1 to {MAX_AMOUNT_MINOR} minor units"),
            ));
        }
        let currency = normalize_currency(currency)?;
        if let Some(key) = idempotency_key {
            if key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
                return Err(ApiError::invalid_field(
                    "Idempotency-Key",
                    format!("idempotency key longer than {MAX_IDEMPOTENCY_KEY_BYTES} bytes"),
                ));
            }
        }

        let mut table = self.table();
        if let Some(key) = idempotency_key {
            if let Some(existing) = table.by_key.get(key).and_then(|id| table.by_id.get(id)) {
                let same = existing.intent.booking_id == booking_id
                    && existing.intent.amount == amount
                    && existing.intent.currency == currency;
                return if same {
                    Ok(existing.intent.clone())
                } else {
                    Err(ApiError::IdempotencyKeyReused)
                };
            }
        }
        let intent_id = format!("pi_{}", random_hex(12));
        let intent = PaymentIntent {
            client_secret: format!("{intent_id}_secret_{}", random_hex(12)),
            checkout_url: format!(
                "{}/sandbox/checkout/{intent_id}",
                self.inner.config.public_base_url.trim_end_matches('/')
            ),
            intent_id,
            booking_id: booking_id.to_owned(),
            amount,
            currency,
            status: IntentStatus::RequiresPaymentMethod,
        };
        table.insert(IntentRecord {
            intent: intent.clone(),
            idempotency_key: idempotency_key.map(str::to_owned),
        });
        Ok(intent)
    }

    pub fn get_intent(&self, intent_id: &str) -> Result<PaymentIntent, ApiError> {
        Ok(self.table().get_mut(intent_id)?.intent.clone())
    }

    /// Charges `card_number` (spaces and dashes ignored). A succeeded intent is returned
    /// unchanged whatever the card (confirm is idempotent); a failed or refunded one is a
    /// conflict; an unknown card is 400 and changes nothing.
    pub fn confirm(&self, intent_id: &str, card_number: &str) -> Result<PaymentIntent, ApiError> {
        let mut table = self.table();
        let record = table.get_mut(intent_id)?;
        match record.intent.status {
            IntentStatus::Succeeded => return Ok(record.intent.clone()),
            IntentStatus::Failed => {
                return Err(ApiError::Conflict {
                    detail: "this payment intent was declined".into(),
                })
            }
            IntentStatus::Refunded => {
                return Err(ApiError::Conflict {
                    detail: "this payment intent was refunded".into(),
                })
            }
            IntentStatus::RequiresPaymentMethod => {}
        }
        let (status, kind) = match normalize_card(card_number).as_deref() {
            Some(CARD_SUCCEEDS) => (IntentStatus::Succeeded, PaymentEventKind::Succeeded),
            Some(CARD_DECLINED) => (IntentStatus::Failed, PaymentEventKind::PaymentFailed),
            _ => {
                return Err(ApiError::invalid_field(
                    "card_number",
                    format!("unknown test card; use {CARD_SUCCEEDS} (succeeds) or {CARD_DECLINED} (declined)"),
                ))
            }
        };
        self.transition(record, status, kind)
    }

    /// Gives a succeeded payment back and sends `charge.refunded`. Refunding a refunded
    /// intent changes nothing; refunding one that never succeeded is a conflict.
    pub fn refund(&self, intent_id: &str, reason: &str) -> Result<PaymentIntent, ApiError> {
        if reason.len() > MAX_REFUND_REASON_BYTES {
            return Err(ApiError::invalid_field(
                "reason",
                format!("reason longer than {MAX_REFUND_REASON_BYTES} bytes"),
            ));
        }
        let mut table = self.table();
        let record = table.get_mut(intent_id)?;
        match record.intent.status {
            IntentStatus::Refunded => Ok(record.intent.clone()),
            IntentStatus::Succeeded => {
                tracing::info!(intent_id, reason, "sandbox refund");
                self.transition(record, IntentStatus::Refunded, PaymentEventKind::Refunded)
            }
            IntentStatus::RequiresPaymentMethod | IntentStatus::Failed => Err(ApiError::Conflict {
                detail: "only a succeeded payment intent can be refunded".into(),
            }),
        }
    }

    /// Moves `record` to `status` and queues the event, or changes nothing and answers
    /// 503 when the webhook queue is full.
    fn transition(
        &self,
        record: &mut IntentRecord,
        status: IntentStatus,
        kind: PaymentEventKind,
    ) -> Result<PaymentIntent, ApiError> {
        let permit = self
            .inner
            .webhooks
            .try_reserve()
            .map_err(|_| ApiError::Unavailable {
                detail: "the sandbox's webhook queue is full or stopped".into(),
                retry_after_secs: QUEUE_FULL_RETRY_AFTER_SECS,
            })?;
        let event = PaymentEvent {
            id: format!("evt_{}", random_hex(12)),
            kind,
            data: PaymentEventData {
                intent_id: record.intent.intent_id.clone(),
                booking_id: record.intent.booking_id.clone(),
                amount: record.intent.amount,
                currency: record.intent.currency.clone(),
            },
        };
        let body = serde_json::to_vec(&event)
            .map_err(|error| ApiError::Internal(format!("serializing an event failed: {error}")))?;
        record.intent.status = status;
        permit.send(Outgoing {
            event_id: event.id,
            body: body.into(),
        });
        Ok(record.intent.clone())
    }
}

fn random_hex(n_bytes: usize) -> String {
    let mut bytes = vec![0u8; n_bytes];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn validate_booking_id(booking_id: &str) -> Result<(), ApiError> {
    let printable = booking_id.bytes().all(|b| b.is_ascii_graphic());
    if booking_id.is_empty() || booking_id.len() > MAX_BOOKING_ID_BYTES || !printable {
        return Err(ApiError::invalid_field(
            "booking_id",
            format!("booking_id must be 1 to {MAX_BOOKING_ID_BYTES} printable ascii characters"),
        ));
    }
    Ok(())
}

/// Three ASCII letters, returned upper case.
fn normalize_currency(currency: &str) -> Result<String, ApiError> {
    if currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(currency.to_ascii_uppercase())
    } else {
        Err(ApiError::invalid_field(
            "currency",
            "currency must be an iso 4217 code such as USD",
        ))
    }
}

/// The digits of a card number as a person may type it, or None if it is not one.
pub(crate) fn normalize_card(card_number: &str) -> Option<String> {
    if card_number.len() > MAX_CARD_NUMBER_BYTES {
        return None;
    }
    let digits: String = card_number
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .collect();
    digits.bytes().all(|b| b.is_ascii_digit()).then_some(digits)
}

/// The sandbox as a [`PaymentProcessor`]: calls it in-process, no HTTP.
#[derive(Debug, Clone)]
pub struct SandboxProcessor {
    sandbox: Sandbox,
}

impl PaymentProcessor for SandboxProcessor {
    fn create_intent<'a>(
        &'a self,
        request: &'a NewIntent,
    ) -> BoxFuture<'a, Result<PaymentIntent, ApiError>> {
        Box::pin(async move { self.sandbox.create_intent(request) })
    }

    fn get_intent<'a>(
        &'a self,
        intent_id: &'a str,
    ) -> BoxFuture<'a, Result<PaymentIntent, ApiError>> {
        Box::pin(async move { self.sandbox.get_intent(intent_id) })
    }

    fn refund<'a>(
        &'a self,
        intent_id: &'a str,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<PaymentIntent, ApiError>> {
        Box::pin(async move { self.sandbox.refund(intent_id, reason) })
    }
}
