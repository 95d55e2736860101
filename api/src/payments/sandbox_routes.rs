//! The payment sandbox's HTTP routes: the Stripe-shaped JSON API over [`Sandbox`] and the
//! checkout page's two handlers ([`super::checkout`] renders it), as [`sandbox_routes`],
//! ready to merge into any router. The tests drive the sandbox through these routes.

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::{Deserialize, Serialize};

use crate::extract::{parse_json, ApiBytes, ApiJson, ApiPath};
use crate::problem::ApiError;

use super::checkout::{back_link, error_page, page};
use super::sandbox::Sandbox;
use super::PaymentIntent;

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
            get(page_handler).post(pay_handler),
        )
        .with_state(sandbox)
}

/// The checkout page's query: where its back link goes.
#[derive(Debug, Deserialize)]
pub struct ReturnTo {
    return_to: Option<String>,
}

/// The back link a page query asks for, if it is a path on this origin.
fn back_from(query: Result<Query<ReturnTo>, QueryRejection>) -> Option<String> {
    back_link(query.ok()?.0.return_to)
}

/// The form the page posts.
#[derive(Debug, Deserialize)]
pub struct CheckoutForm {
    pub card_number: String,
}

async fn page_handler(
    State(sandbox): State<Sandbox>,
    ApiPath(intent_id): ApiPath<String>,
    query: Result<Query<ReturnTo>, QueryRejection>,
) -> Response {
    let back = back_from(query);
    match sandbox.get_intent(&intent_id) {
        Ok(intent) => page(StatusCode::OK, &intent, None, back.as_deref()),
        Err(error) => error_page(error),
    }
}

async fn pay_handler(
    State(sandbox): State<Sandbox>,
    ApiPath(intent_id): ApiPath<String>,
    query: Result<Query<ReturnTo>, QueryRejection>,
    form: Result<Form<CheckoutForm>, FormRejection>,
) -> Response {
    let back = back_from(query);
    let back = back.as_deref();
    let intent = match sandbox.get_intent(&intent_id) {
        Ok(intent) => intent,
        Err(error) => return error_page(error),
    };
    let Form(form) = match form {
        Ok(form) => form,
        Err(rejection) => {
            return page(
                rejection.status(),
                &intent,
                Some("Please type a card number."),
                back,
            );
        }
    };
    match sandbox.confirm(&intent_id, &form.card_number) {
        Ok(intent) => page(StatusCode::OK, &intent, None, back),
        Err(ApiError::InvalidRequest { .. }) => page(
            StatusCode::BAD_REQUEST,
            &intent,
            Some("That is not a test card. Use one of the cards listed below."),
            back,
        ),
        Err(error) => error_page(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payments::event::{PaymentEvent, PaymentEventData, PaymentEventKind};
    use crate::payments::sandbox::{SandboxConfig, MAX_AMOUNT_MINOR, MAX_SANDBOX_INTENTS};
    use crate::payments::webhook::{Outgoing, WEBHOOK_QUEUE_CAPACITY};
    use crate::payments::{
        IntentStatus, NewIntent, PaymentProcessor, CARD_DECLINED, CARD_SUCCEEDS,
    };
    use axum::body::Body;
    use axum::extract::Request;
    use axum::http::header::CONTENT_TYPE;
    use axum::http::Method;
    use serde_json::{json, Value};
    use std::sync::Arc;
    use tokio::sync::mpsc;
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
        assert_eq!(h.sandbox.table_sizes(), (2, 2));
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
