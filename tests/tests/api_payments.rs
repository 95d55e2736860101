//! End-to-end payments through the public REST API and the dev payment sandbox: a paid
//! booking is confirmed and its seats sold; a declined card fails the booking; a forged
//! webhook is refused and changes nothing; a redelivered webhook changes nothing; a payment
//! that lands after the hold expired fails the booking and is refunded.

use std::time::Duration;

use boxoffice_tests::eventually;
use boxoffice_tests::rest::{now_secs, sign, unique, Answer, DevServer, Rest};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const GOOD_CARD: &str = "4242424242424242";
const DECLINED_CARD: &str = "4000000000000002";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookings_and_payments() {
    let server = DevServer::start().await;
    let anon = server.client();
    let admin = anon.as_user("ops", "admin").await;
    let venue = admin.venue(2, 10, 5_000).await;
    let event = admin.event(&venue, "Payments night", 600).await;
    let short_event = admin.event(&venue, "Payments against the clock", 2).await;
    let alice = anon.as_user("alice", "user").await;

    paid_booking_is_confirmed_and_sold(&alice, &event).await;
    declined_card_fails(&alice, &event).await;
    forged_and_redelivered_webhooks_change_nothing(&server, &alice, &event).await;
    payment_after_expiry_is_refunded(&alice, &short_event).await;

    // Everything above shows in the caller's list, newest first.
    let mine = alice.get("/v1/me/bookings").await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text);
    let statuses: Vec<&str> = mine.body["bookings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["status"].as_str())
        .collect();
    assert!(
        statuses.contains(&"confirmed")
            && statuses.contains(&"failed")
            && statuses.contains(&"refunded"),
        "{statuses:?}"
    );
    // And nobody else's.
    let bob = anon.as_user("bob", "user").await;
    assert_eq!(bob.get("/v1/me/bookings").await.body["bookings"], json!([]));
}

/// Holds seats and books them; returns the booking answer.
async fn book(user: &Rest, event: &str, seats: &[&str]) -> Answer {
    let held = user.hold(event, seats).await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.text);
    user.book(&held.str("/hold_id")).await
}

/// Polls the booking until `status`.
async fn wait_for_status(user: &Rest, booking_id: &str, status: &str) -> Value {
    let path = format!("/v1/bookings/{booking_id}");
    let found = eventually(Duration::from_secs(15), || {
        let user = user.clone();
        let path = path.clone();
        async move {
            let answer = user.get(&path).await;
            (answer.body["status"] == status).then_some(answer.body)
        }
    })
    .await;
    match found {
        Some(body) => body,
        None => panic!(
            "booking {booking_id} never became {status}: {}",
            user.get(&path).await.text
        ),
    }
}

async fn paid_booking_is_confirmed_and_sold(alice: &Rest, event: &str) {
    let booking = book(alice, event, &["s1-1-1", "s1-1-2"]).await;
    assert_eq!(
        booking.body["total"],
        json!({"amount": 10000, "currency": "USD"})
    );
    let checkout = booking.str("/payment/checkout_url");
    assert!(checkout.contains("/sandbox/checkout/pi_"), "{checkout}");
    // The checkout page a person would use is really there.
    let page = alice.get(&checkout.replace(&alice.base, "")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("card"), "{}", page.text);
    alice
        .pay(&booking.str("/payment/intent_id"), GOOD_CARD)
        .await;
    let confirmed = wait_for_status(alice, &booking.str("/booking_id"), "confirmed").await;
    assert_eq!(confirmed["payment"]["status"], "succeeded");
    assert!(
        confirmed["payment"]["checkout_url"].is_null(),
        "no checkout link once paid"
    );
    for seat in ["s1-1-1", "s1-1-2"] {
        assert_eq!(alice.seat_status(event, seat).await, "sold");
    }
    let hold = alice
        .get(&format!("/v1/holds/{}", booking.str("/hold_id")))
        .await;
    assert_eq!(hold.body["status"], "confirmed");
}

async fn declined_card_fails(alice: &Rest, event: &str) {
    let booking = book(alice, event, &["s1-1-3"]).await;
    alice
        .pay(&booking.str("/payment/intent_id"), DECLINED_CARD)
        .await;
    let failed = wait_for_status(alice, &booking.str("/booking_id"), "failed").await;
    assert_eq!(failed["failure_reason"], "payment_declined");
    assert_ne!(alice.seat_status(event, "s1-1-3").await, "sold");
}

async fn forged_and_redelivered_webhooks_change_nothing(
    server: &DevServer,
    alice: &Rest,
    event: &str,
) {
    let booking = book(alice, event, &["s1-1-4"]).await;
    let booking_id = booking.str("/booking_id");
    let body = json!({"id": format!("evt_test_{}", unique()), "type": "payment_intent.succeeded",
                      "data": {"intent_id": booking.str("/payment/intent_id"), "booking_id": booking_id, "amount": 5000, "currency": "USD"}})
    .to_string();
    let hook = |signature: String| {
        let alice = alice.clone();
        let body = body.clone();
        async move {
            alice
                .raw(
                    Method::POST,
                    "/v1/webhooks/payments",
                    "application/json",
                    body.into_bytes(),
                    &[("boxoffice-signature", &signature)],
                )
                .await
        }
    };

    // Forged: wrong secret, stale timestamp, garbage, missing header. Each 400, nothing moves.
    hook(sign(b"not the secret", now_secs(), body.as_bytes()))
        .await
        .assert_problem(400, "invalid-request");
    hook(sign(
        &server.webhook_secret(),
        now_secs() - 3_600,
        body.as_bytes(),
    ))
    .await
    .assert_problem(400, "invalid-request");
    hook("t=1,v1=00".into())
        .await
        .assert_problem(400, "invalid-request");
    alice
        .raw(
            Method::POST,
            "/v1/webhooks/payments",
            "application/json",
            body.clone().into_bytes(),
            &[],
        )
        .await
        .assert_problem(400, "invalid-request");
    let after_forgery = alice.get(&format!("/v1/bookings/{booking_id}")).await;
    assert_eq!(after_forgery.body["status"], "pending_payment");
    assert_eq!(alice.seat_status(event, "s1-1-4").await, "held");

    // Genuine, delivered three times: confirmed once, then nothing changes.
    let first = hook(sign(&server.webhook_secret(), now_secs(), body.as_bytes())).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(first.body["result"], "confirmed");
    let confirmed = alice.get(&format!("/v1/bookings/{booking_id}")).await;
    assert_eq!(confirmed.body["status"], "confirmed");
    for _ in 0..2 {
        let again = hook(sign(&server.webhook_secret(), now_secs(), body.as_bytes())).await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    }
    let after = alice.get(&format!("/v1/bookings/{booking_id}")).await;
    assert_eq!(
        after.body, confirmed.body,
        "a redelivered event changes nothing"
    );
    // A contrary late event (payment failed) cannot undo a confirmed booking either.
    let failed_body = json!({"id": format!("evt_test_{}", unique()), "type": "payment_intent.payment_failed",
                             "data": {"intent_id": booking.str("/payment/intent_id"), "booking_id": booking_id, "amount": 5000}})
    .to_string();
    let late = alice
        .raw(
            Method::POST,
            "/v1/webhooks/payments",
            "application/json",
            failed_body.clone().into_bytes(),
            &[(
                "boxoffice-signature",
                &sign(&server.webhook_secret(), now_secs(), failed_body.as_bytes()),
            )],
        )
        .await;
    assert_eq!(late.status, StatusCode::OK, "{}", late.text);
    assert_eq!(
        alice.get(&format!("/v1/bookings/{booking_id}")).await.body["status"],
        "confirmed"
    );
    assert_eq!(alice.seat_status(event, "s1-1-4").await, "sold");
}

async fn payment_after_expiry_is_refunded(alice: &Rest, short_event: &str) {
    let booking = book(alice, short_event, &["s1-2-1"]).await;
    let intent_id = booking.str("/payment/intent_id");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    alice.pay(&intent_id, GOOD_CARD).await;
    let refunded = wait_for_status(alice, &booking.str("/booking_id"), "refunded").await;
    assert_eq!(refunded["failure_reason"], "hold_expired");
    let intent = alice
        .get(&format!("/sandbox/v1/payment_intents/{intent_id}"))
        .await;
    assert_eq!(
        intent.body["status"], "refunded",
        "the money went back: {}",
        intent.text
    );
    assert_ne!(alice.seat_status(short_event, "s1-2-1").await, "sold");
}
