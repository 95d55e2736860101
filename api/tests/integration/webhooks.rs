//! The sandbox's webhooks over real loopback sockets: delivery, signatures, retries with
//! backoff, giving up, and cancellation on shutdown.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use boxoffice_api::payments::sandbox::{CARD_DECLINED, CARD_SUCCEEDS};
use boxoffice_api::payments::signature::SIGNATURE_TOLERANCE_SECS;
use boxoffice_api::payments::{
    verify_signature, IntentStatus, NewIntent, PaymentEvent, PaymentEventKind, Sandbox,
    SandboxConfig, WebhookRetryConfig, WebhookWorker,
};
use boxoffice_api::{Clock, SystemClock};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const SECRET: &[u8] = b"whsec_integration";
/// Upper bound on any wait in these tests; they finish far sooner.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One request the receiver saw, and what it answered.
#[derive(Debug)]
struct Delivery {
    signature: Option<String>,
    body: Bytes,
    answered: StatusCode,
}

struct Receiver {
    failures_left: AtomicU32,
    seen: mpsc::Sender<Delivery>,
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let failing = receiver
        .failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        })
        .is_ok();
    let answered = if failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    };
    let signature = headers
        .get("boxoffice-signature")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let _ = receiver
        .seen
        .send(Delivery {
            signature,
            body,
            answered,
        })
        .await;
    answered
}

/// A webhook receiver on 127.0.0.1:0 that answers 500 to its first `failures` requests.
async fn spawn_receiver(failures: u32) -> (String, mpsc::Receiver<Delivery>, JoinHandle<()>) {
    let (seen, deliveries) = mpsc::channel(64);
    let state = Arc::new(Receiver {
        failures_left: AtomicU32::new(failures),
        seen,
    });
    let app = Router::new()
        .route("/v1/webhooks/payments", post(receive))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (
        format!("http://{addr}/v1/webhooks/payments"),
        deliveries,
        server,
    )
}

fn fast_retry(max_attempts: u32) -> WebhookRetryConfig {
    WebhookRetryConfig {
        initial_delay_ms: 20,
        max_delay_ms: 80,
        max_attempts,
        request_timeout_ms: 2_000,
        ..WebhookRetryConfig::default()
    }
}

fn start_sandbox(webhook_url: &str, retry: WebhookRetryConfig) -> (Sandbox, WebhookWorker) {
    let mut config = SandboxConfig::new("http://127.0.0.1:8080", webhook_url, SECRET);
    config.retry = retry;
    Sandbox::start(config, Arc::new(SystemClock)).expect("sandbox starts")
}

fn open_intent(sandbox: &Sandbox, booking_id: &str) -> String {
    let request = NewIntent {
        booking_id: booking_id.into(),
        amount: 12_950,
        currency: "USD".into(),
        idempotency_key: format!("key-{booking_id}"),
    };
    sandbox.create_intent(&request).expect("create").intent_id
}

async fn next_delivery(deliveries: &mut mpsc::Receiver<Delivery>) -> Delivery {
    tokio::time::timeout(TEST_TIMEOUT, deliveries.recv())
        .await
        .expect("a delivery within the test timeout")
        .expect("receiver alive")
}

/// Verifies a delivery as the real webhook route will, and returns its event.
fn verified_event(delivery: &Delivery) -> PaymentEvent {
    let header = delivery.signature.as_deref().expect("signature header");
    let now_secs = SystemClock.now_ms() / 1000;
    verify_signature(
        header,
        &delivery.body,
        SECRET,
        now_secs,
        SIGNATURE_TOLERANCE_SECS,
    )
    .expect("signature verifies");
    PaymentEvent::parse(&delivery.body).expect("event parses")
}

#[tokio::test]
async fn success_is_retried_until_the_receiver_answers_2xx() {
    let (url, mut deliveries, server) = spawn_receiver(2).await;
    let (sandbox, worker) = start_sandbox(&url, fast_retry(5));
    let intent_id = open_intent(&sandbox, "b_1");
    let intent = sandbox.confirm(&intent_id, CARD_SUCCEEDS).expect("confirm");
    assert_eq!(intent.status, IntentStatus::Succeeded);

    let attempts = [
        next_delivery(&mut deliveries).await,
        next_delivery(&mut deliveries).await,
        next_delivery(&mut deliveries).await,
    ];
    let answers: Vec<StatusCode> = attempts.iter().map(|attempt| attempt.answered).collect();
    assert_eq!(
        answers,
        [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::NO_CONTENT
        ]
    );
    let events: Vec<PaymentEvent> = attempts.iter().map(verified_event).collect();
    assert!(
        events.iter().all(|event| *event == events[0]),
        "retries resend the same event"
    );
    assert_eq!(events[0].kind, PaymentEventKind::Succeeded);
    assert_eq!(events[0].data.intent_id, intent_id);
    assert_eq!(events[0].data.booking_id, "b_1");
    assert_eq!(events[0].data.amount, 12_950);

    // Delivered: nothing more comes, and a repeated confirm sends nothing.
    sandbox
        .confirm(&intent_id, CARD_SUCCEEDS)
        .expect("idempotent confirm");
    let more = tokio::time::timeout(Duration::from_millis(300), deliveries.recv()).await;
    assert!(more.is_err(), "unexpected delivery: {more:?}");

    worker.shutdown().await;
    server.abort();
}

#[tokio::test]
async fn declined_card_sends_payment_failed() {
    let (url, mut deliveries, server) = spawn_receiver(0).await;
    let (sandbox, worker) = start_sandbox(&url, fast_retry(3));
    let intent_id = open_intent(&sandbox, "b_2");
    let intent = sandbox.confirm(&intent_id, CARD_DECLINED).expect("confirm");
    assert_eq!(intent.status, IntentStatus::Failed);

    let delivery = next_delivery(&mut deliveries).await;
    assert_eq!(delivery.answered, StatusCode::NO_CONTENT);
    let event = verified_event(&delivery);
    assert_eq!(event.kind, PaymentEventKind::PaymentFailed);
    assert_eq!(event.data.intent_id, intent_id);

    // The receiver's side of a bad signature: a different secret does not verify.
    let header = delivery.signature.as_deref().unwrap_or_default();
    let now_secs = SystemClock.now_ms() / 1000;
    assert!(verify_signature(header, &delivery.body, b"other", now_secs, 300).is_err());

    worker.shutdown().await;
    server.abort();
}

#[tokio::test]
async fn delivery_gives_up_after_max_attempts() {
    let (url, mut deliveries, server) = spawn_receiver(u32::MAX).await;
    let (sandbox, worker) = start_sandbox(&url, fast_retry(3));
    let intent_id = open_intent(&sandbox, "b_3");
    sandbox.confirm(&intent_id, CARD_SUCCEEDS).expect("confirm");

    for _ in 0..3 {
        assert_eq!(
            next_delivery(&mut deliveries).await.answered,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    // Longer than the whole backoff schedule: no fourth attempt.
    let more = tokio::time::timeout(Duration::from_millis(500), deliveries.recv()).await;
    assert!(more.is_err(), "unexpected delivery: {more:?}");

    worker.shutdown().await;
    server.abort();
}

#[tokio::test]
async fn unreachable_receiver_is_retried_like_a_5xx() {
    // Bind then drop a listener: its port refuses connections.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let (sandbox, worker) = start_sandbox(&format!("http://{addr}/hook"), fast_retry(2));
    let intent_id = open_intent(&sandbox, "b_4");
    sandbox
        .confirm(&intent_id, CARD_SUCCEEDS)
        .expect("confirm succeeds whatever the webhook does");
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::time::timeout(TEST_TIMEOUT, worker.shutdown())
        .await
        .expect("shutdown is prompt");
}

#[tokio::test]
async fn shutdown_cancels_pending_retries() {
    let (url, mut deliveries, server) = spawn_receiver(u32::MAX).await;
    let slow = WebhookRetryConfig {
        initial_delay_ms: 60_000,
        max_delay_ms: 60_000,
        ..fast_retry(5)
    };
    let (sandbox, worker) = start_sandbox(&url, slow);
    let intent_id = open_intent(&sandbox, "b_5");
    sandbox.confirm(&intent_id, CARD_SUCCEEDS).expect("confirm");
    assert_eq!(
        next_delivery(&mut deliveries).await.answered,
        StatusCode::INTERNAL_SERVER_ERROR
    );

    // The delivery now sleeps a minute before its retry; shutdown must not wait for it.
    tokio::time::timeout(Duration::from_secs(2), worker.shutdown())
        .await
        .expect("shutdown is prompt");

    // With the worker gone the sandbox refuses state changes it could not report.
    let other = open_intent(&sandbox, "b_6");
    let refused = sandbox.confirm(&other, CARD_SUCCEEDS);
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(
        sandbox.get_intent(&other).expect("get").status,
        IntentStatus::RequiresPaymentMethod
    );
    server.abort();
}

#[tokio::test]
async fn sandbox_routes_serve_over_a_socket() {
    let (url, mut deliveries, server) = spawn_receiver(0).await;
    let (sandbox, worker) = start_sandbox(&url, fast_retry(3));
    let app =
        boxoffice_api::with_problem_fallbacks(boxoffice_api::payments::sandbox_routes(sandbox));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let sandbox_server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let client = reqwest::Client::new();
    let created: serde_json::Value = client
        .post(format!("{base}/sandbox/v1/payment_intents"))
        .json(&serde_json::json!({"booking_id": "b_7", "amount": 500, "currency": "JPY"}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let intent_id = created["intent_id"].as_str().unwrap_or_default();
    let confirmed = client
        .post(format!(
            "{base}/sandbox/v1/payment_intents/{intent_id}/confirm"
        ))
        .json(&serde_json::json!({"card_number": CARD_SUCCEEDS}))
        .send()
        .await
        .expect("confirm");
    assert_eq!(confirmed.status(), reqwest::StatusCode::OK);
    let event = verified_event(&next_delivery(&mut deliveries).await);
    assert_eq!(
        (event.kind, event.data.amount),
        (PaymentEventKind::Succeeded, 500)
    );

    worker.shutdown().await;
    sandbox_server.abort();
    server.abort();
}

#[tokio::test]
async fn an_event_waiting_to_retry_does_not_hold_up_the_next_one() {
    let (url, mut deliveries, server) = spawn_receiver(1).await;
    // One attempt at a time, and a refused event waits a minute for its retry.
    let one_slot = WebhookRetryConfig {
        initial_delay_ms: 60_000,
        max_delay_ms: 60_000,
        max_in_flight: 1,
        ..fast_retry(5)
    };
    let (sandbox, worker) = start_sandbox(&url, one_slot);
    let first = open_intent(&sandbox, "b_first");
    sandbox.confirm(&first, CARD_SUCCEEDS).expect("confirm");
    let refused = next_delivery(&mut deliveries).await;
    assert_eq!(refused.answered, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(verified_event(&refused).data.booking_id, "b_first");

    // The first event's minute of back-off must not keep the only slot.
    let second = open_intent(&sandbox, "b_second");
    sandbox.confirm(&second, CARD_SUCCEEDS).expect("confirm");
    let delivered = next_delivery(&mut deliveries).await;
    assert_eq!(delivered.answered, StatusCode::NO_CONTENT);
    assert_eq!(verified_event(&delivered).data.booking_id, "b_second");

    tokio::time::timeout(Duration::from_secs(2), worker.shutdown())
        .await
        .expect("shutdown is prompt");
    server.abort();
}
