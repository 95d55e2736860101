//! End-to-end through the public REST API of a real `boxoffice dev` process: best-available
//! holds (`POST /v1/holds` with `quantity`). The seats chosen are adjacent and nearest the
//! row's middle, a row whose only choices would leave a seat alone is passed over, a split
//! is taken only when allowed, too few seats answer 409 with `available`, malformed requests
//! answer 400 naming the field, and a retried request gets the same seats back.

use boxoffice_tests::rest::{unique, DevServer, Rest};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// `POST /v1/holds` of `body` under `key`.
async fn hold(user: &Rest, key: &str, body: Value) -> boxoffice_tests::rest::Answer {
    user.post_keyed("/v1/holds", key, body).await
}

fn seat_ids(answer: &boxoffice_tests::rest::Answer) -> Vec<String> {
    answer.body["seat_ids"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|id| id.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn best_available_holds_are_adjacent_orphan_free_and_idempotent() {
    let server = DevServer::start().await;
    let anon = server.client();
    let admin = anon.as_user("ops", "admin").await;
    // Floor: rows 1 and 2 of seats 1..=7 (ids s1-1-n, s1-2-n); Balcony: row A of 4 (s2-A-n).
    let venue = admin
        .call(
            Method::POST,
            "/admin/v1/venues",
            Some(json!({"name": "Best Hall", "city": "Chicago", "country": "US", "address": "2 Main St",
                "sections": [
                    {"name": "Floor", "price": {"amount": 9000, "currency": "USD"}, "rows": [{"name": "1", "seats": 7}, {"name": "2", "seats": 7}]},
                    {"name": "Balcony", "price": {"amount": 4000, "currency": "USD"}, "rows": [{"name": "A", "seats": 4}]}
                ]})),
            &[],
        )
        .await;
    assert_eq!(venue.status, StatusCode::CREATED, "{}", venue.text);
    let event_id = admin
        .event(&venue.str("/venue_id"), "Best Night", 600)
        .await;

    // The first row, the block nearest its middle: 3, 4, 5 of 1..=7.
    let alice = anon.as_user("alice", "user").await;
    let first = hold(
        &alice,
        "alice-best",
        json!({"event_id": event_id, "quantity": 3}),
    )
    .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(seat_ids(&first), ["s1-1-3", "s1-1-4", "s1-1-5"]);
    assert_eq!(first.body["total"]["amount"], 27000, "{}", first.text);

    // A retry under the same key is the same hold with the same seats; the key reused for
    // another request is refused.
    let again = hold(
        &alice,
        "alice-best",
        json!({"event_id": event_id, "quantity": 3}),
    )
    .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
    assert_eq!(again.str("/hold_id"), first.str("/hold_id"));
    assert_eq!(seat_ids(&again), seat_ids(&first));
    hold(
        &alice,
        "alice-best",
        json!({"event_id": event_id, "quantity": 2}),
    )
    .await
    .assert_problem(409, "idempotency-key-reused");

    // The orphan rule: row 1 has 1-2 and 6-7 free; one seat there would leave its
    // neighbour alone, so the pick moves to row 2 (its middle).
    let bob = anon.as_user("bob", "user").await;
    let single = hold(
        &bob,
        &unique(),
        json!({"event_id": event_id, "quantity": 1, "section": "Floor"}),
    )
    .await;
    assert_eq!(single.status, StatusCode::CREATED, "{}", single.text);
    assert_eq!(seat_ids(&single), ["s1-2-4"]);

    // Four together in Floor: the longest free block is three (row 2: 1-3 and 5-7).
    let carol = anon.as_user("carol", "user").await;
    let too_many = hold(
        &carol,
        &unique(),
        json!({"event_id": event_id, "quantity": 4, "section": "Floor"}),
    )
    .await;
    too_many.assert_problem(409, "not-enough-seats");
    assert_eq!(too_many.body["available"], 3, "{}", too_many.text);

    // Allowed to split, four seats leave nobody alone: both pairs of row 1.
    let split = hold(
        &carol,
        &unique(),
        json!({"event_id": event_id, "quantity": 4, "section": "Floor", "adjacent": false}),
    )
    .await;
    assert_eq!(split.status, StatusCode::CREATED, "{}", split.text);
    assert_eq!(seat_ids(&split), ["s1-1-1", "s1-1-2", "s1-1-6", "s1-1-7"]);

    // The Balcony has four seats: five are not there, together or not.
    let dave = anon.as_user("dave", "user").await;
    for adjacent in [true, false] {
        let answer = hold(
            &dave,
            &unique(),
            json!({"event_id": event_id, "quantity": 5, "section": "Balcony", "adjacent": adjacent}),
        )
        .await;
        answer.assert_problem(409, "not-enough-seats");
        assert_eq!(answer.body["available"], 4, "{}", answer.text);
    }
    let balcony = hold(
        &dave,
        &unique(),
        json!({"event_id": event_id, "quantity": 4, "section": "Balcony"}),
    )
    .await;
    assert_eq!(balcony.status, StatusCode::CREATED, "{}", balcony.text);
    assert_eq!(seat_ids(&balcony), ["s2-A-1", "s2-A-2", "s2-A-3", "s2-A-4"]);

    // The seat map agrees with the holds.
    for seat in ["s1-1-4", "s1-2-4", "s1-1-7", "s2-A-1"] {
        assert_eq!(anon.seat_status(&event_id, seat).await, "held", "{seat}");
    }
    assert_eq!(anon.seat_status(&event_id, "s1-2-1").await, "available");

    // Malformed requests: 400 naming the field, nothing held.
    let erin = anon.as_user("erin", "user").await;
    let cases = [
        (json!({"event_id": event_id, "quantity": 0}), "quantity"),
        (json!({"event_id": event_id, "quantity": 11}), "quantity"),
        (
            json!({"event_id": event_id, "quantity": 1, "seat_ids": ["s1-2-1"]}),
            "quantity",
        ),
        (json!({"event_id": event_id}), "seat_ids"),
        (
            json!({"event_id": event_id, "seat_ids": ["s1-2-1"], "section": "Floor"}),
            "section",
        ),
        (
            json!({"event_id": event_id, "seat_ids": ["s1-2-1"], "adjacent": true}),
            "adjacent",
        ),
        (
            json!({"event_id": event_id, "quantity": 1, "section": "Mezzanine"}),
            "section",
        ),
        (
            json!({"event_id": event_id, "quantity": 1, "adjacent": "yes"}),
            "adjacent",
        ),
        (json!({"event_id": event_id, "quantity": -1}), "quantity"),
    ];
    for (body, field) in cases {
        let answer = hold(&erin, &unique(), body.clone()).await;
        answer.assert_problem(400, "invalid-request");
        assert_eq!(answer.body["field"], field, "{body}: {}", answer.text);
    }
    assert_eq!(anon.seat_status(&event_id, "s1-2-1").await, "available");
}
