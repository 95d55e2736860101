//! The README's example requests, run against `boxoffice dev` with its demo catalog, as a
//! new user would run them after the quick start: each must answer what the README says it
//! does. The test also reads README.md and fails when it shows a request this file does
//! not check, so a new example cannot go untested.

use std::collections::BTreeSet;
use std::time::Duration;

use boxoffice_tests::eventually;
use boxoffice_tests::rest::{DevServer, Rest};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// Every request the README shows, as written there after `$B`.
const EXAMPLES: [&str; 14] = [
    "/v1/auth/token",
    "/v1/events/ev_demo_00001",
    "/v1/events/ev_demo_00001/seats",
    "/v1/events/ev_demo_00001/seats/stream",
    "/v1/holds",
    "/v1/bookings",
    "/v1/events?q=tayler%20swfit&city=Chicago&limit=5",
    "/v1/events?category=concert&from=2027-01-01T00:00:00Z",
    "/v1/suggest?q=tayl",
    "/admin/v1/cluster",
    "/v1/events/ev_demo_00011/queue",
    "/v1/events/ev_demo_00011/queue/$TICKET",
    "/v1/events/ev_demo_00011/seats",
    "/v1/events/ev_demo_00011/queue/$TICKET/stream",
];

/// The paths the README's shell examples request (`$B/…` up to the end of the word).
fn readme_requests() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md next to the workspace manifest");
    readme
        .match_indices("$B/")
        .map(|(at, _)| {
            let rest = &readme[at + 2..];
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
                .unwrap_or(rest.len());
            rest[..end].to_owned()
        })
        .collect()
}

#[test]
fn every_readme_request_is_checked_here() {
    let shown = readme_requests();
    let checked: BTreeSet<String> = EXAMPLES.iter().map(|e| (*e).to_owned()).collect();
    assert_eq!(
        shown, checked,
        "README.md and this test disagree on the example requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_examples_answer_what_the_readme_promises() {
    let server = DevServer::start_with_demo().await;
    let anon = server.client();
    let get = |path: &'static str| {
        let anon = anon.clone();
        async move {
            let answer = anon.call(Method::GET, path, None, &[]).await;
            assert_eq!(answer.status, StatusCode::OK, "GET {path}: {}", answer.text);
            answer.body
        }
    };

    // TOKEN=$(curl … /v1/auth/token -d '{"user":"alice"}' | jq -r .token)
    let token = anon
        .call(
            Method::POST,
            EXAMPLES[0],
            Some(json!({"user": "alice"})),
            &[],
        )
        .await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.text);
    assert!(!token.str("/token").is_empty(), "{}", token.text);
    let alice = anon.as_user("alice", "user").await;

    // The cached view, with live counts.
    let view = get(EXAMPLES[1]).await;
    let available = view["availability"]["available"].as_u64().unwrap_or(0);
    assert!(available > 0, "ev_demo_00001 has seats to sell: {view}");

    // The seat map.
    let seats = get(EXAMPLES[2]).await;
    assert!(seats["seats"][0].is_object(), "a first seat: {seats}");

    // The live seat map opens with an event-stream.
    let stream = alice
        .http
        .get(format!("{}{}", server.base, EXAMPLES[3]))
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), StatusCode::OK);
    let content_type = stream
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    drop(stream);

    // HOLD=$(… /v1/holds … '{"event_id":"ev_demo_00001","seat_ids":["s1-A-1","s1-A-2"]}' | jq -r .hold_id)
    let hold = alice
        .call(
            Method::POST,
            EXAMPLES[4],
            Some(json!({"event_id": "ev_demo_00001", "seat_ids": ["s1-A-1", "s1-A-2"]})),
            &[("idempotency-key", "my-first-hold")],
        )
        .await;
    assert_eq!(hold.status, StatusCode::CREATED, "{}", hold.text);
    let hold_id = hold.str("/hold_id");
    assert!(!hold_id.is_empty(), "{}", hold.text);

    // … /v1/holds … '{"event_id":"ev_demo_00001","quantity":2}' | jq .seat_ids
    let best = alice
        .call(
            Method::POST,
            EXAMPLES[4],
            Some(json!({"event_id": "ev_demo_00001", "quantity": 2})),
            &[("idempotency-key", "my-best-hold")],
        )
        .await;
    assert_eq!(best.status, StatusCode::CREATED, "{}", best.text);
    let chosen: Vec<&str> = best.body["seat_ids"]
        .as_array()
        .map(|ids| ids.iter().filter_map(|id| id.as_str()).collect())
        .unwrap_or_default();
    // Two seats side by side: one row (`s{section}-{row}-`), consecutive numbers.
    let split = |id: &str| {
        id.rsplit_once('-')
            .map(|(row, n)| (row.to_owned(), n.parse::<u32>().unwrap_or(0)))
    };
    let seats: Vec<(String, u32)> = chosen.iter().filter_map(|id| split(id)).collect();
    assert!(
        seats.len() == 2 && seats[0].0 == seats[1].0 && seats[1].1 == seats[0].1 + 1,
        "the best two together: {}",
        best.text
    );
    assert!(
        !chosen.contains(&"s1-A-1") && !chosen.contains(&"s1-A-2"),
        "{}",
        best.text
    );

    // … /v1/bookings … "{\"hold_id\":\"$HOLD\"}" | jq .payment
    let booking = alice
        .call(
            Method::POST,
            EXAMPLES[5],
            Some(json!({"hold_id": hold_id})),
            &[("idempotency-key", "my-first-booking")],
        )
        .await;
    assert_eq!(booking.status, StatusCode::CREATED, "{}", booking.text);
    assert!(
        booking.body["payment"]["checkout_url"].is_string(),
        "{}",
        booking.text
    );

    // A misspelled performer in Chicago. The index may still be taking in the demo's
    // availability, never its events: /readyz waited for the catalog.
    let found = get(EXAMPLES[6]).await;
    let events = found["events"].as_array().cloned().unwrap_or_default();
    assert!(
        !events.is_empty() && events.len() <= 5,
        "tayler swfit in Chicago: {found}"
    );
    for event in &events {
        assert_eq!(event["venue"]["city"], "Chicago", "{found}");
    }
    assert!(
        events[0]["name"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Taylor Swift"),
        "the performer ranks first: {found}"
    );

    // A listing by date that has more than one page.
    let listing = get(EXAMPLES[7]).await;
    assert!(listing["next_cursor"].is_string(), "{listing}");
    assert!(
        listing["events"]
            .as_array()
            .is_some_and(|e| e.iter().all(|e| e["category"] == "concert")),
        "{listing}"
    );

    // Type-ahead.
    let suggest = get(EXAMPLES[8]).await;
    let texts: Vec<&str> = suggest["suggestions"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["text"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        texts.iter().any(|t| t.starts_with("Taylor Swift")),
        "tayl completes to the performer: {suggest}"
    );

    // ADMIN=…; … /admin/v1/cluster … | jq '.nodes[] | {node_id, replicas, leaders}'
    let admin = anon.as_user("ops", "admin").await;
    let cluster = admin.get(EXAMPLES[9]).await;
    assert_eq!(cluster.status, StatusCode::OK, "{}", cluster.text);
    let nodes = cluster.body["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(nodes.len(), 3, "dev's three replicas: {}", cluster.text);
    for node in &nodes {
        assert_eq!(node["replicas"], 5, "meta + four inventory groups: {node}");
        assert_eq!(node["reachable"], true, "{node}");
    }
    let leaders: u64 = nodes.iter().filter_map(|n| n["leaders"].as_u64()).sum();
    assert_eq!(leaders, 5, "one leader per group: {}", cluster.text);
    waiting_room(&server, &alice).await;
}

/// The waiting-room examples: join the hot sale's room, read the place until admitted, hold
/// a free seat with the admission token (and not without it), open the place's stream.
async fn waiting_room(server: &DevServer, alice: &Rest) {
    let joined = alice.call(Method::POST, EXAMPLES[10], None, &[]).await;
    assert_eq!(joined.status, StatusCode::CREATED, "{}", joined.text);
    let ticket = joined.str("/ticket");
    assert!(!ticket.is_empty(), "{}", joined.text);
    let place_path = EXAMPLES[11].replace("$TICKET", &ticket);
    let admitted = eventually(Duration::from_secs(10), || {
        let alice = alice.clone();
        let path = place_path.clone();
        async move {
            let place = alice.get(&path).await;
            Some(place.str("/admission_token")).filter(|t| !t.is_empty())
        }
    })
    .await;
    let token = admitted.expect("admitted within seconds at 50 a second");

    let seats = alice.get(EXAMPLES[12]).await;
    let seat = seats.body["seats"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["status"] == "available"))
        .and_then(|s| s["id"].as_str())
        .expect("the hot sale has seats left")
        .to_owned();
    let body = json!({"event_id": "ev_demo_00011", "seat_ids": [seat]});
    let refused = alice
        .call(
            Method::POST,
            EXAMPLES[4],
            Some(body.clone()),
            &[("idempotency-key", "my-queued-hold")],
        )
        .await;
    refused.assert_problem(403, "forbidden");
    let held = alice
        .call(
            Method::POST,
            EXAMPLES[4],
            Some(body),
            &[
                ("idempotency-key", "my-queued-hold"),
                ("admission-token", &token),
            ],
        )
        .await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.text);
    assert_eq!(held.body["status"], "active");

    let stream = alice
        .http
        .get(format!(
            "{}{}",
            server.base,
            EXAMPLES[13].replace("$TICKET", &ticket)
        ))
        .bearer_auth(alice.token.clone().unwrap_or_default())
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), StatusCode::OK);
}
