//! End-to-end through the public REST API of a real `boxoffice dev` process: create a
//! catalog and view it, race holds on the same seats (exactly one wins), let a short hold
//! expire, release a hold, and watch a change arrive on the live seat map (SSE).

use std::time::Duration;

use boxoffice_tests::eventually;
use boxoffice_tests::rest::{DevServer, Rest};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_view_holds_expiry_release_and_live_seat_map() {
    let server = DevServer::start().await;
    let anon = server.client();
    let admin = anon.as_user("ops", "admin").await;

    // --- catalog: venue with a layout, performer, event; then the public view.
    let venue = admin
        .call(
            Method::POST,
            "/admin/v1/venues",
            Some(json!({"name": "Soldier Field", "city": "Chicago", "country": "US", "address": "1410 Special Olympics Dr",
                "sections": [
                    {"name": "Floor A", "price": {"amount": 12950, "currency": "USD"}, "rows": [{"name": "1", "seats": 20}, {"name": "2", "seats": 22}]},
                    {"name": "Balcony", "price": {"amount": 4500, "currency": "USD"}, "rows": [{"name": "A", "seats": 10}]}
                ]})),
            &[],
        )
        .await;
    assert_eq!(venue.status, StatusCode::CREATED, "{}", venue.text);
    assert_eq!(venue.body["capacity"], 52);
    let venue_id = venue.str("/venue_id");
    let performer = admin
        .call(
            Method::POST,
            "/admin/v1/performers",
            Some(json!({"name": "Taylor Swift", "description": "Pop"})),
            &[],
        )
        .await;
    assert_eq!(performer.status, StatusCode::CREATED, "{}", performer.text);
    let performer_id = performer.str("/performer_id");
    let created = admin
        .call(
            Method::POST,
            "/admin/v1/events",
            Some(json!({"name": "The Eras Tour", "description": "Night one", "category": "concert", "venue_id": venue_id,
                        "performer_ids": [performer_id], "starts_at": boxoffice_tests::rest::rfc3339(boxoffice_tests::rest::now_secs() + 86_400 * 40),
                        "on_sale": true, "hold_ttl_seconds": 600})),
            &[],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let event_id = created.str("/event_id");

    let view = anon.get(&format!("/v1/events/{event_id}")).await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.text);
    assert_eq!(view.body["event"]["name"], "The Eras Tour");
    assert_eq!(view.body["venue"]["city"], "Chicago");
    assert_eq!(view.body["performers"][0]["name"], "Taylor Swift");
    assert_eq!(
        view.body["sections"][0],
        json!({"id": "s1", "name": "Floor A", "price": {"amount": 12950, "currency": "USD"}, "available": 42, "held": 0, "sold": 0, "total": 42})
    );
    assert_eq!(view.body["availability"]["available"], 52);
    assert_eq!(view.body["on_sale"], true);
    assert_eq!(view.body["queue"]["enabled"], false);
    // The cached view carries an ETag and answers 304 to it.
    let etag = view
        .headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("etag")
        .to_owned();
    let again = anon
        .call(
            Method::GET,
            &format!("/v1/events/{event_id}"),
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert!(
        again.status == StatusCode::NOT_MODIFIED || again.status == StatusCode::OK,
        "{}",
        again.status
    );

    let seats = anon.get(&format!("/v1/events/{event_id}/seats")).await;
    assert_eq!(seats.body["seats"].as_array().map(Vec::len), Some(52));
    assert_eq!(
        seats.body["seats"][0],
        json!({"id": "s1-1-1", "section": "Floor A", "row": "1", "number": 1, "price": {"amount": 12950, "currency": "USD"}, "status": "available"})
    );

    // A patch shows in the view (the catalog feed invalidates the cached view).
    let patched = admin
        .call(
            Method::PATCH,
            &format!("/admin/v1/events/{event_id}"),
            Some(json!({"name": "The Eras Tour (Night 1)"})),
            &[],
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    let renamed = eventually(Duration::from_secs(5), || {
        let anon = anon.clone();
        let path = format!("/v1/events/{event_id}");
        async move {
            (anon.get(&path).await.body["event"]["name"] == "The Eras Tour (Night 1)").then_some(())
        }
    })
    .await;
    assert!(renamed.is_some(), "the view follows the catalog");

    live_seat_map(&server, &anon, &event_id).await;
    concurrent_holds(&anon, &event_id).await;
    release(&anon, &event_id).await;
    let short = admin.event(&venue_id, "Short holds", 1).await;
    expiry(&anon, &short).await;
}

/// Twenty users race for the same two seats: exactly one hold wins, the rest get 409 with
/// the seats named.
async fn concurrent_holds(anon: &Rest, event_id: &str) {
    let mut users = Vec::new();
    for n in 0..20 {
        users.push(anon.as_user(&format!("racer{n}"), "user").await);
    }
    let attempts = users.iter().map(|user| {
        let user = user.clone();
        let event_id = event_id.to_owned();
        tokio::spawn(async move { user.hold(&event_id, &["s1-2-5", "s1-2-6"]).await })
    });
    let mut wins = 0;
    for attempt in attempts {
        let answer = attempt.await.expect("task");
        match answer.status.as_u16() {
            201 => wins += 1,
            409 => {
                answer.assert_problem(409, "seat-unavailable");
                let taken = answer.body["unavailable_seats"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                assert!(!taken.is_empty(), "{}", answer.text);
            }
            other => panic!("unexpected {other}: {}", answer.text),
        }
    }
    assert_eq!(wins, 1, "exactly one of the racing holds wins");
    assert_eq!(anon.seat_status(event_id, "s1-2-5").await, "held");
}

async fn release(anon: &Rest, event_id: &str) {
    let alice = anon.as_user("alice", "user").await;
    let bob = anon.as_user("bob", "user").await;
    let held = alice.hold(event_id, &["s1-1-1", "s1-1-2"]).await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.text);
    assert_eq!(held.body["status"], "active");
    assert_eq!(
        held.body["total"],
        json!({"amount": 25900, "currency": "USD"})
    );
    let hold_id = held.str("/hold_id");
    // Someone else can neither see nor release it.
    bob.get(&format!("/v1/holds/{hold_id}"))
        .await
        .assert_problem(404, "not-found");
    bob.call(Method::DELETE, &format!("/v1/holds/{hold_id}"), None, &[])
        .await
        .assert_problem(409, "conflict");
    assert_eq!(
        bob.hold(event_id, &["s1-1-2"]).await.status,
        StatusCode::CONFLICT
    );
    // The owner releases; twice is fine.
    for _ in 0..2 {
        let released = alice
            .call(Method::DELETE, &format!("/v1/holds/{hold_id}"), None, &[])
            .await;
        assert_eq!(released.status, StatusCode::NO_CONTENT, "{}", released.text);
    }
    assert_eq!(
        alice.get(&format!("/v1/holds/{hold_id}")).await.body["status"],
        "released"
    );
    let taken = bob.hold(event_id, &["s1-1-2"]).await;
    assert_eq!(
        taken.status,
        StatusCode::CREATED,
        "released seats are free at once: {}",
        taken.text
    );
}

async fn expiry(anon: &Rest, event_id: &str) {
    let carol = anon.as_user("carol", "user").await;
    let dave = anon.as_user("dave", "user").await;
    let held = carol.hold(event_id, &["s2-A-1"]).await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.text);
    let hold_id = held.str("/hold_id");
    assert_eq!(
        dave.hold(event_id, &["s2-A-1"]).await.status,
        StatusCode::CONFLICT,
        "held until it expires"
    );
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_eq!(
        carol.get(&format!("/v1/holds/{hold_id}")).await.body["status"],
        "expired"
    );
    // Booking an expired hold is 410.
    carol
        .post_keyed("/v1/bookings", "late-booking", json!({"hold_id": hold_id}))
        .await
        .assert_problem(410, "gone");
    let retaken = dave.hold(event_id, &["s2-A-1"]).await;
    assert_eq!(
        retaken.status,
        StatusCode::CREATED,
        "an expired hold frees its seats: {}",
        retaken.text
    );
    let map_shows_it = eventually(Duration::from_secs(5), || {
        let anon = anon.clone();
        let event_id = event_id.to_owned();
        async move { (anon.seat_status(&event_id, "s2-A-1").await == "held").then_some(()) }
    })
    .await;
    assert!(map_shows_it.is_some());
}

/// Opens the live seat map over a raw socket, reads the first (full) batch, holds a seat
/// and waits for the change to arrive.
async fn live_seat_map(server: &DevServer, anon: &Rest, event_id: &str) {
    let addr = server.base.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let (read, mut write) = stream.into_split();
    let request = format!("GET /v1/events/{event_id}/seats/stream HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    write.write_all(request.as_bytes()).await.expect("send");
    let mut lines = BufReader::new(read).lines();
    let status = lines.next_line().await.expect("read").unwrap_or_default();
    assert!(status.contains("200"), "{status}");
    let first = next_data(&mut lines).await.expect("a first batch");
    assert_eq!(
        first["changes"].as_array().map(Vec::len),
        Some(52),
        "the first batch lists every seat"
    );
    let erin = anon.as_user("erin", "user").await;
    assert_eq!(
        erin.hold(event_id, &["s2-A-7"]).await.status,
        StatusCode::CREATED
    );
    let mut seen = false;
    for _ in 0..20 {
        let Some(batch) = next_data(&mut lines).await else {
            break;
        };
        if batch["changes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["id"] == "s2-A-7" && c["status"] == "held")
        {
            seen = true;
            break;
        }
    }
    assert!(seen, "the live map shows the new hold");
}

type SseLines = tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>;

/// The next `data:` payload of the stream, parsed, within ten seconds.
async fn next_data(lines: &mut SseLines) -> Option<serde_json::Value> {
    let read = async {
        loop {
            let line = lines.next_line().await.ok().flatten()?;
            if let Some(data) = line.strip_prefix("data: ") {
                return serde_json::from_str::<serde_json::Value>(data).ok();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .ok()
        .flatten()
}
