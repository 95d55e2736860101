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
//! The JSON routes take no credentials: the sandbox is a development stand-in and must
//! not be exposed beyond the developer's machine.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::problem::{parse_json, ApiBytes, ApiError, ApiJson, ApiPath};

use super::checkout;
use super::event::{PaymentEvent, PaymentEventData, PaymentEventKind};
use super::webhook::{Outgoing, WebhookRetryConfig, WebhookWorker};
use super::{BoxFuture, IntentStatus, NewIntent, PaymentIntent, PaymentProcessor};

/// Intents kept; creating one more forgets the oldest.
pub const MAX_SANDBOX_INTENTS: usize = 10_000;
/// The card that always succeeds.
pub const CARD_SUCCEEDS: &str = "4242424242424242";
/// The card that is always declined.
pub const CARD_DECLINED: &str = "4000000000000002";
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
    fn with_queue(config: SandboxConfig, webhooks: mpsc::Sender<Outgoing>) -> Sandbox {
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

    fn create(
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

/// Body of `POST /sandbox/v1/payment_intents`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateIntentBody {
    pub booking_id: String,
    pub amount: u64,
    pub currency: String,
}

/// Body of `POST /sandbox/v1/payment_intents/{id}/confirm`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmBody {
    pub card_number: String,
}

/// Body of `POST /sandbox/v1/payment_intents/{id}/refund` (the body may also be empty).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    #[serde(default)]
    pub reason: Option<String>,
}

async fn create_handler(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateIntentBody>,
) -> Result<(StatusCode, ApiJson<PaymentIntent>), ApiError> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| {
            ApiError::invalid_field("Idempotency-Key", "idempotency key must be ascii")
        })?),
    };
    let intent = sandbox.create(&body.booking_id, body.amount, &body.currency, key)?;
    Ok((StatusCode::CREATED, ApiJson(intent)))
}

async fn get_handler(
    State(sandbox): State<Sandbox>,
    ApiPath(intent_id): ApiPath<String>,
) -> Result<ApiJson<PaymentIntent>, ApiError> {
    sandbox.get_intent(&intent_id).map(ApiJson)
}

async fn confirm_handler(
    State(sandbox): State<Sandbox>,
    ApiPath(intent_id): ApiPath<String>,
    ApiJson(body): ApiJson<ConfirmBody>,
) -> Result<ApiJson<PaymentIntent>, ApiError> {
    sandbox.confirm(&intent_id, &body.card_number).map(ApiJson)
}

async fn refund_handler(
    State(sandbox): State<Sandbox>,
    ApiPath(intent_id): ApiPath<String>,
    ApiBytes(body): ApiBytes,
) -> Result<ApiJson<PaymentIntent>, ApiError> {
    let body: RefundBody = if body.iter().all(u8::is_ascii_whitespace) {
        RefundBody::default()
    } else {
        parse_json(&body)?
    };
    let reason = body.reason.as_deref().unwrap_or("requested_by_customer");
    sandbox.refund(&intent_id, reason).map(ApiJson)
}

/// The sandbox's routes (JSON API and checkout page) with their state applied, ready to
/// merge into any router.
pub fn sandbox_routes<S>(sandbox: Sandbox) -> Router<S> {
    Router::new()
        .route("/sandbox/v1/payment_intents", post(create_handler))
        .route("/sandbox/v1/payment_intents/{intent_id}", get(get_handler))
        .route(
            "/sandbox/v1/payment_intents/{intent_id}/confirm",
            post(confirm_handler),
        )
        .route(
            "/sandbox/v1/payment_intents/{intent_id}/refund",
            post(refund_handler),
        )
        .route(
            "/sandbox/checkout/{intent_id}",
            get(checkout::page_handler).post(checkout::pay_handler),
        )
        .with_state(sandbox)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payments::webhook::WEBHOOK_QUEUE_CAPACITY;
    use axum::body::Body;
    use axum::extract::Request;
    use axum::http::header::CONTENT_TYPE;
    use axum::http::Method;
    use serde_json::{json, Value};
    use tower::ServiceExt;

    struct Harness {
        sandbox: Sandbox,
        queue: mpsc::Receiver<Outgoing>,
        router: Router,
    }

    fn harness_with(max_intents: usize, queue_capacity: usize) -> Harness {
        let mut config = SandboxConfig::new("http://pay.test/", "http://127.0.0.1:1/hook", "whsec");
        config.max_intents = max_intents;
        let (sender, queue) = mpsc::channel(queue_capacity);
        let sandbox = Sandbox::with_queue(config, sender);
        let router = crate::problem::with_problem_fallbacks(sandbox_routes(sandbox.clone()));
        Harness {
            sandbox,
            queue,
            router,
        }
    }

    fn harness() -> Harness {
        harness_with(MAX_SANDBOX_INTENTS, WEBHOOK_QUEUE_CAPACITY)
    }

    impl Harness {
        async fn call(
            &self,
            method: Method,
            uri: &str,
            body: Option<Value>,
        ) -> (StatusCode, Value) {
            self.call_with(method, uri, body, &[]).await
        }

        async fn call_with(
            &self,
            method: Method,
            uri: &str,
            body: Option<Value>,
            headers: &[(&str, &str)],
        ) -> (StatusCode, Value) {
            let mut request = Request::builder().method(method).uri(uri);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let request = match body {
                Some(body) => request
                    .header(CONTENT_TYPE, "application/json")
                    .body(Body::from(body.to_string())),
                None => request.body(Body::empty()),
            }
            .expect("request");
            let response = self
                .router
                .clone()
                .oneshot(request)
                .await
                .expect("infallible");
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body");
            let value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            (status, value)
        }

        async fn create(&self, booking_id: &str) -> String {
            let body = json!({"booking_id": booking_id, "amount": 12950, "currency": "USD"});
            let (status, intent) = self
                .call(Method::POST, "/sandbox/v1/payment_intents", Some(body))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{intent}");
            intent["intent_id"].as_str().unwrap_or_default().to_owned()
        }

        async fn confirm(&self, intent_id: &str, card: &str) -> (StatusCode, Value) {
            let uri = format!("/sandbox/v1/payment_intents/{intent_id}/confirm");
            self.call(Method::POST, &uri, Some(json!({"card_number": card})))
                .await
        }

        fn next_event(&mut self) -> Option<PaymentEvent> {
            let outgoing = self.queue.try_recv().ok()?;
            let event = PaymentEvent::parse(&outgoing.body).expect("queued bodies are events");
            assert_eq!(event.id, outgoing.event_id);
            Some(event)
        }
    }

    #[tokio::test]
    async fn create_and_get() {
        let h = harness();
        let body = json!({"booking_id": "b_1", "amount": 12950, "currency": "usd"});
        let (status, intent) = h
            .call(Method::POST, "/sandbox/v1/payment_intents", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let intent_id = intent["intent_id"].as_str().unwrap_or_default();
        assert!(intent_id.starts_with("pi_"));
        assert_eq!(intent["status"], "requires_payment_method");
        assert_eq!(intent["currency"], "USD");
        assert_eq!(
            intent["checkout_url"],
            format!("http://pay.test/sandbox/checkout/{intent_id}")
        );
        assert!(intent["client_secret"]
            .as_str()
            .unwrap_or_default()
            .starts_with(intent_id));

        let (status, got) = h
            .call(
                Method::GET,
                &format!("/sandbox/v1/payment_intents/{intent_id}"),
                None,
            )
            .await;
        assert_eq!((status, &got), (StatusCode::OK, &intent));

        let (status, problem) = h
            .call(Method::GET, "/sandbox/v1/payment_intents/pi_nope", None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(problem["type"], "https://boxoffice.dev/problems/not-found");
    }

    #[tokio::test]
    async fn create_validates_its_body() {
        let h = harness();
        for body in [
            json!({"booking_id": "b", "amount": 0, "currency": "USD"}),
            json!({"booking_id": "b", "amount": MAX_AMOUNT_MINOR + 1, "currency": "USD"}),
            json!({"booking_id": "b", "amount": -5, "currency": "USD"}),
            json!({"booking_id": "b", "amount": 5, "currency": "US"}),
            json!({"booking_id": "", "amount": 5, "currency": "USD"}),
            json!({"booking_id": "a b", "amount": 5, "currency": "USD"}),
            json!({"booking_id": "b", "amount": 5, "currency": "USD", "tip": 1}),
        ] {
            let (status, problem) = h
                .call(
                    Method::POST,
                    "/sandbox/v1/payment_intents",
                    Some(body.clone()),
                )
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {problem}");
        }
    }

    #[tokio::test]
    async fn idempotency_key_returns_the_first_intent() {
        let h = harness();
        let body = json!({"booking_id": "b_1", "amount": 100, "currency": "EUR"});
        let key = [("idempotency-key", "k-1")];
        let uri = "/sandbox/v1/payment_intents";
        let (_, first) = h
            .call_with(Method::POST, uri, Some(body.clone()), &key)
            .await;
        let (status, again) = h.call_with(Method::POST, uri, Some(body), &key).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(first["intent_id"], again["intent_id"]);

        let other = json!({"booking_id": "b_1", "amount": 101, "currency": "EUR"});
        let (status, problem) = h.call_with(Method::POST, uri, Some(other), &key).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(
            problem["type"],
            "https://boxoffice.dev/problems/idempotency-key-reused"
        );

        // Without a key every create is new.
        let body = json!({"booking_id": "b_1", "amount": 100, "currency": "EUR"});
        let (_, third) = h.call(Method::POST, uri, Some(body)).await;
        assert_ne!(first["intent_id"], third["intent_id"]);
    }

    #[tokio::test]
    async fn good_card_succeeds_once_and_confirm_is_idempotent() {
        let mut h = harness();
        let intent_id = h.create("b_1").await;
        let (status, intent) = h.confirm(&intent_id, "4242 4242 4242 4242").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(intent["status"], "succeeded");

        let event = h.next_event().expect("one event");
        assert_eq!(event.kind, PaymentEventKind::Succeeded);
        assert!(event.id.starts_with("evt_"));
        assert_eq!(
            event.data,
            PaymentEventData {
                intent_id: intent_id.clone(),
                booking_id: "b_1".into(),
                amount: 12950,
                currency: "USD".into(),
            }
        );

        // Again, with either card: same answer, no second event.
        for card in [CARD_SUCCEEDS, CARD_DECLINED, "1234"] {
            let (status, again) = h.confirm(&intent_id, card).await;
            assert_eq!((status, &again), (StatusCode::OK, &intent));
        }
        assert!(h.next_event().is_none());
    }

    #[tokio::test]
    async fn declined_card_fails_and_stays_failed() {
        let mut h = harness();
        let intent_id = h.create("b_2").await;
        let (status, intent) = h.confirm(&intent_id, CARD_DECLINED).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(intent["status"], "failed");
        assert_eq!(
            h.next_event().map(|event| event.kind),
            Some(PaymentEventKind::PaymentFailed)
        );

        let (status, _) = h.confirm(&intent_id, CARD_SUCCEEDS).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(h.next_event().is_none());
    }

    #[tokio::test]
    async fn unknown_card_changes_nothing() {
        let mut h = harness();
        let intent_id = h.create("b_3").await;
        for card in ["4111111111111111", "", "abc", &"4".repeat(1000)] {
            let (status, problem) = h.confirm(&intent_id, card).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(problem["field"], "card_number");
        }
        assert_eq!(
            h.sandbox.get_intent(&intent_id).map(|i| i.status).ok(),
            Some(IntentStatus::RequiresPaymentMethod)
        );
        assert!(h.next_event().is_none());
        let (status, _) = h.confirm("pi_unknown", CARD_SUCCEEDS).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn refund_needs_a_success_and_is_idempotent() {
        let mut h = harness();
        let intent_id = h.create("b_4").await;
        let uri = format!("/sandbox/v1/payment_intents/{intent_id}/refund");
        let (status, _) = h.call(Method::POST, &uri, None).await;
        assert_eq!(status, StatusCode::CONFLICT);

        h.confirm(&intent_id, CARD_SUCCEEDS).await;
        assert_eq!(
            h.next_event().map(|event| event.kind),
            Some(PaymentEventKind::Succeeded)
        );

        let (status, intent) = h
            .call(Method::POST, &uri, Some(json!({"reason": "hold expired"})))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(intent["status"], "refunded");
        assert_eq!(
            h.next_event().map(|event| event.kind),
            Some(PaymentEventKind::Refunded)
        );

        let (status, again) = h.call(Method::POST, &uri, None).await;
        assert_eq!((status, &again), (StatusCode::OK, &intent));
        assert!(h.next_event().is_none());

        let (status, _) = h.call(Method::POST, &uri, Some(json!({"why": "x"}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn full_queue_is_503_and_changes_nothing() {
        let mut h = harness_with(MAX_SANDBOX_INTENTS, 1);
        let first = h.create("b_5").await;
        let second = h.create("b_6").await;
        assert_eq!(h.confirm(&first, CARD_SUCCEEDS).await.0, StatusCode::OK);
        let (status, problem) = h.confirm(&second, CARD_SUCCEEDS).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(problem["retry_after_seconds"], 1);
        assert_eq!(
            h.sandbox.get_intent(&second).map(|i| i.status).ok(),
            Some(IntentStatus::RequiresPaymentMethod)
        );
        // Once the queue drains the same confirm goes through.
        assert!(h.next_event().is_some());
        assert_eq!(h.confirm(&second, CARD_SUCCEEDS).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn table_forgets_the_oldest_intent_when_full() {
        let h = harness_with(2, WEBHOOK_QUEUE_CAPACITY);
        let first = h.create("b_1").await;
        let second = h.create("b_2").await;
        let third = h.create("b_3").await;
        assert!(matches!(
            h.sandbox.get_intent(&first),
            Err(ApiError::NotFound { .. })
        ));
        assert!(h.sandbox.get_intent(&second).is_ok());
        assert!(h.sandbox.get_intent(&third).is_ok());
        let table = h.sandbox.table();
        assert_eq!((table.by_id.len(), table.arrival.len()), (2, 2));
    }

    #[tokio::test]
    async fn processor_trait_drives_the_same_sandbox() {
        let mut h = harness();
        let processor: Arc<dyn PaymentProcessor> = Arc::new(h.sandbox.processor());
        let request = NewIntent {
            booking_id: "b_7".into(),
            amount: 4_200,
            currency: "GBP".into(),
            idempotency_key: "booking-b_7".into(),
        };
        let intent = processor.create_intent(&request).await.expect("create");
        assert_eq!(
            processor.create_intent(&request).await.expect("replay"),
            intent
        );
        assert_eq!(
            processor.get_intent(&intent.intent_id).await.expect("get"),
            intent
        );

        h.sandbox
            .confirm(&intent.intent_id, CARD_SUCCEEDS)
            .expect("confirm");
        let refunded = processor
            .refund(&intent.intent_id, "seat sold twice")
            .await
            .expect("refund");
        assert_eq!(refunded.status, IntentStatus::Refunded);
        let kinds: Vec<_> = std::iter::from_fn(|| h.next_event())
            .map(|event| event.kind)
            .collect();
        assert_eq!(
            kinds,
            [PaymentEventKind::Succeeded, PaymentEventKind::Refunded]
        );
        assert!(matches!(
            processor.get_intent("pi_x").await,
            Err(ApiError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn checkout_page_takes_a_card() {
        let mut h = harness();
        let intent_id = h.create("b_8").await;
        let uri = format!("/sandbox/checkout/{intent_id}");

        let (status, page) = h.call(Method::GET, &uri, None).await;
        assert_eq!(status, StatusCode::OK);
        let page = page.as_str().unwrap_or_default().to_owned();
        assert!(page.contains("Pay 129.50 USD"), "{page}");
        assert!(page.contains("<form method=\"post\">"));
        assert!(page.contains("name=\"card_number\""));

        let form = |card: &str| {
            Request::builder()
                .method(Method::POST)
                .uri(&uri)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!("card_number={card}")))
                .expect("request")
        };
        let response = h
            .router
            .clone()
            .oneshot(form("1111"))
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(h.next_event().is_none());

        let response = h
            .router
            .clone()
            .oneshot(form("4242+4242+4242+4242"))
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/html"));
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        assert!(String::from_utf8_lossy(&bytes).contains("Payment succeeded"));
        assert_eq!(
            h.next_event().map(|event| event.kind),
            Some(PaymentEventKind::Succeeded)
        );

        let (status, page) = h
            .call(Method::GET, "/sandbox/checkout/pi_%3Cscript%3E", None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(!page.as_str().unwrap_or_default().contains("<script>"));
    }
}
