//! API nodes are stateless: two `boxoffice api` processes in front of three `boxoffice node`
//! processes. What one node writes the other serves (through the change feeds); killing an
//! API node loses nothing; with no leader a hold answers 503 with `Retry-After` and changes
//! nothing, and the same `Idempotency-Key` succeeds once the shard is back.

use std::time::Duration;

use boxoffice_tests::eventually;
use boxoffice_tests::rest::{ApiProc, Rest};
use boxoffice_tests::{free_addr, NodeProc};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn seat_becomes(client: &Rest, event: &str, seat: &str, status: &str) -> bool {
    eventually(Duration::from_secs(10), || {
        let client = client.clone();
        let (event, seat, status) = (event.to_owned(), seat.to_owned(), status.to_owned());
        async move { (client.seat_status(&event, &seat).await == status).then_some(()) }
    })
    .await
    .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_nodes_are_stateless_and_no_leader_is_503() {
    let dir = tempfile::tempdir().expect("temp dir");
    let addrs: Vec<String> = (0..3).map(|_| free_addr()).collect();
    let init = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes: Vec<NodeProc> = (0..3)
        .map(|i| {
            let mut extra = vec!["--shards", "1"];
            if i == 0 {
                extra.extend(["--init", init.as_str()]);
            }
            NodeProc::start(
                i as u64 + 1,
                &addrs[i],
                &dir.path().join(format!("n{}", i + 1)),
                &extra,
            )
        })
        .collect();
    let cluster = addrs.join(",");
    let mut api_a = ApiProc::start(&cluster, &dir.path().join("api-a.log")).await;
    let api_b = ApiProc::start(&cluster, &dir.path().join("api-b.log")).await;

    // Written through A, served by B.
    let admin_a = api_a.client().as_user("ops", "admin").await;
    let venue = admin_a.venue(2, 10, 2_500).await;
    let event = admin_a.event(&venue, "Two nodes", 600).await;
    let anon_b = api_b.client();
    let seen = eventually(Duration::from_secs(10), || {
        let anon_b = anon_b.clone();
        let path = format!("/v1/events/{event}");
        async move { (anon_b.get(&path).await.status == StatusCode::OK).then_some(()) }
    })
    .await;
    assert!(seen.is_some(), "node B serves the event node A created");
    let alice_a = api_a.client().as_user("alice", "user").await;
    let held = alice_a.hold(&event, &["s1-1-1"]).await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.text);
    assert!(
        seat_becomes(&anon_b, &event, "s1-1-1", "held").await,
        "B's seat map follows the shard's feed"
    );
    // The same user (a token either node accepts) reads the hold through B.
    let alice_b = Rest {
        token: alice_a.token.clone(),
        ..api_b.client()
    };
    assert_eq!(
        alice_b
            .get(&format!("/v1/holds/{}", held.str("/hold_id")))
            .await
            .body["status"],
        "active"
    );

    // Kill A: nothing is lost, B goes on (booking and paying through B's sandbox).
    api_a.kill();
    let booking = alice_b
        .post_keyed(
            "/v1/bookings",
            "after-a-died",
            json!({"hold_id": held.str("/hold_id")}),
        )
        .await;
    assert_eq!(booking.status, StatusCode::CREATED, "{}", booking.text);
    let paid = alice_b
        .call(
            Method::POST,
            &format!(
                "/sandbox/v1/payment_intents/{}/confirm",
                booking.str("/payment/intent_id")
            ),
            Some(json!({"card_number": "4242424242424242"})),
            &[],
        )
        .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.text);
    assert!(
        seat_becomes(&anon_b, &event, "s1-1-1", "sold").await,
        "paid through B, sold"
    );

    // Two of three storage nodes down: no leader. A hold is 503 + Retry-After, nothing held.
    nodes[1].kill();
    nodes[2].kill();
    let bob = api_b.client().as_user("bob", "user").await;
    let body = json!({"event_id": event, "seat_ids": ["s1-2-1"]});
    let refused = bob
        .post_keyed("/v1/holds", "during-outage", body.clone())
        .await;
    refused.assert_problem(503, "unavailable");
    assert!(
        refused.headers.contains_key("retry-after"),
        "{:?}",
        refused.headers
    );
    // Reads keep being served from the caches.
    assert_eq!(
        anon_b.get(&format!("/v1/events/{event}")).await.status,
        StatusCode::OK
    );
    assert_eq!(anon_b.seat_status(&event, "s1-2-1").await, "available");

    nodes[1].restart();
    nodes[2].restart();
    let retried = eventually(Duration::from_secs(40), || {
        let bob = bob.clone();
        let body = body.clone();
        async move {
            let answer = bob.post_keyed("/v1/holds", "during-outage", body).await;
            (answer.status == StatusCode::CREATED).then_some(answer)
        }
    })
    .await;
    assert!(
        retried.is_some(),
        "the same key succeeds once the shard has a leader again"
    );
    assert!(seat_becomes(&anon_b, &event, "s1-2-1", "held").await);
}
