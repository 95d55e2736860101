//! End-to-end through the public REST API of a real `boxoffice dev` process: the waiting room
//! of a queue-enabled event (issue 12). Join and join again, positions in join order,
//! admission in that order, the admission token `POST /v1/holds` requires (and the 403s
//! without it, with another user's, another event's, a tampered or an expired one, nothing
//! held), the inventory gate, sold out closing the room, leaving, abandoning, the pre-sale
//! shuffle reproduced from what the log holds, the SSE push, and the admin figures.

use std::time::Duration;

use boxoffice_api::admission::AdmissionKey;
use boxoffice_tests::eventually;
use boxoffice_tests::rest::{now_secs, rfc3339, unique, Answer, DevServer, Rest};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const GOOD_CARD: &str = "4242424242424242";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_room_end_to_end() {
    let server = DevServer::start().await;
    let anon = server.client();
    let admin = anon.as_user("ops", "admin").await;

    admission_in_join_order_and_the_token_gate(&server, &anon, &admin).await;
    inventory_gate_and_sold_out(&anon, &admin).await;
    leave_and_abandon(&anon, &admin).await;
    presale_shuffle_is_reproducible(&anon, &admin).await;
    queue_settings_through_patch_and_errors(&anon, &admin).await;
}

/// A queue-enabled event of `n_seats` seats with `queue` settings merged over defaults.
async fn queued_event(admin: &Rest, n_seats: u32, queue: Value) -> String {
    let venue = admin.venue(1, n_seats, 5000).await;
    let mut settings = json!({"enabled": true, "admit_per_second": 1});
    if let (Some(base), Some(extra)) = (settings.as_object_mut(), queue.as_object()) {
        base.extend(extra.clone());
    }
    let body = json!({"name": format!("Rush {}", unique()), "category": "concert", "venue_id": venue,
                      "performer_ids": [], "starts_at": rfc3339(now_secs() + 30 * 86_400),
                      "queue": settings});
    let created = admin
        .call(Method::POST, "/admin/v1/events", Some(body), &[])
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    created.str("/event_id")
}

async fn join(user: &Rest, event_id: &str) -> Answer {
    user.call(
        Method::POST,
        &format!("/v1/events/{event_id}/queue"),
        None,
        &[],
    )
    .await
}

async fn place(user: &Rest, event_id: &str, ticket: &str) -> Answer {
    user.get(&format!("/v1/events/{event_id}/queue/{ticket}"))
        .await
}

async fn figures(admin: &Rest, event_id: &str) -> Value {
    let answer = admin
        .get(&format!("/admin/v1/events/{event_id}/queue"))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.body
}

/// Every place read at one moment: the reads are retried until no admission happened
/// while they were taken (the admin figures' `admitted_total` did not move).
async fn read_all(admin: &Rest, event_id: &str, users: &[(Rest, String)]) -> Vec<Value> {
    for _ in 0..20 {
        let before = figures(admin, event_id).await["admitted_total"].clone();
        let mut places = Vec::new();
        for (user, ticket) in users {
            let answer = place(user, event_id, ticket).await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
            places.push(answer.body);
        }
        if figures(admin, event_id).await["admitted_total"] == before {
            return places;
        }
    }
    panic!("no quiet moment to read the room in");
}

/// Admitted places are a prefix of `places` (in line order) and the waiting ones behind them
/// stand at 1, 2, 3…
fn assert_line_order(places: &[Value]) {
    let n_admitted = places.iter().take_while(|p| p["admitted"] == true).count();
    for (i, p) in places.iter().enumerate().skip(n_admitted) {
        assert_eq!(p["state"], "waiting", "{places:?}");
        assert_eq!(
            p["position"],
            json!(i - n_admitted + 1),
            "positions in line order: {places:?}"
        );
    }
}

async fn hold_with(user: &Rest, event_id: &str, seat: &str, token: Option<&str>) -> Answer {
    let key = format!("hold-{}", unique());
    let mut headers = vec![("idempotency-key", key.as_str())];
    if let Some(token) = token {
        headers.push(("admission-token", token));
    }
    user.call(
        Method::POST,
        "/v1/holds",
        Some(json!({"event_id": event_id, "seat_ids": [seat]})),
        &headers,
    )
    .await
}

/// Holds `seat` with the token, books it and pays; waits until the booking is confirmed.
async fn buy(user: &Rest, event_id: &str, seat: &str, token: &str) {
    let held = hold_with(user, event_id, seat, Some(token)).await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.text);
    let booking = user.book(&held.str("/hold_id")).await;
    user.pay(&booking.str("/payment/intent_id"), GOOD_CARD)
        .await;
    let path = format!("/v1/bookings/{}", booking.str("/booking_id"));
    let confirmed = eventually(Duration::from_secs(15), || {
        let user = user.clone();
        let path = path.clone();
        async move { (user.get(&path).await.body["status"] == "confirmed").then_some(()) }
    })
    .await;
    assert!(confirmed.is_some(), "the booking of {seat} is confirmed");
}

/// Waits until the place's state is `state`; returns the place.
async fn wait_state(user: &Rest, event_id: &str, ticket: &str, state: &str) -> Value {
    let found = eventually(Duration::from_secs(15), || {
        let user = user.clone();
        async move {
            let answer = place(&user, event_id, ticket).await;
            (answer.body["state"] == state).then_some(answer.body)
        }
    })
    .await;
    match found {
        Some(body) => body,
        None => panic!(
            "{ticket} never became {state}: {}",
            place(user, event_id, ticket).await.text
        ),
    }
}

async fn admission_in_join_order_and_the_token_gate(server: &DevServer, anon: &Rest, admin: &Rest) {
    let event_id = queued_event(admin, 10, json!({})).await;
    let mut users: Vec<(Rest, String)> = Vec::new();
    for name in ["qa1", "qa2", "qa3", "qa4", "qa5"] {
        let user = anon.as_user(name, "user").await;
        let joined = join(&user, &event_id).await;
        assert_eq!(joined.status, StatusCode::CREATED, "{}", joined.text);
        assert!(joined.str("/ticket").starts_with("tk_"), "{}", joined.text);
        let location = joined
            .headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert_eq!(
            location,
            format!("/v1/events/{event_id}/queue/{}", joined.str("/ticket"))
        );
        users.push((user, joined.str("/ticket")));
    }
    // Joining again answers the same place.
    let again = join(&users[2].0, &event_id).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
    assert_eq!(again.str("/ticket"), users[2].1);

    // Positions follow join order, and admission (1 per second) takes the head first.
    assert_line_order(&read_all(admin, &event_id, &users).await);
    wait_state(&users[2].0, &event_id, &users[2].1, "admitted").await;
    let places = read_all(admin, &event_id, &users).await;
    assert_line_order(&places);
    assert!(places[0]["admitted"] == true && places[1]["admitted"] == true);

    // The SSE stream of the last place pushes its position as it moves, then its admission.
    stream_until_admitted(server, &users[4].0, &event_id, &users[4].1).await;

    // The token gate: nothing held without a valid token of one's own.
    let (qa1, _) = &users[0];
    let token = places[0].str_at("/admission_token");
    assert!(!token.is_empty(), "an admitted place carries its token");
    assert!(places[0]["admission_expires_at"].is_string());
    let (qa5, _) = &users[4];
    hold_with(qa5, &event_id, "s1-1-1", None)
        .await
        .assert_problem(403, "forbidden");
    hold_with(qa5, &event_id, "s1-1-1", Some(&token))
        .await
        .assert_problem(403, "forbidden");
    // The last hex digit of the MAC changed.
    let flipped = if token.ends_with('0') { '1' } else { '0' };
    let tampered = format!("{}{flipped}", &token[..token.len() - 1]);
    hold_with(qa1, &event_id, "s1-1-1", Some(&tampered))
        .await
        .assert_problem(403, "forbidden");
    // Signed with the node's own key, but for another event, or expired.
    let key = AdmissionKey::new(&server.admission_secret()).expect("dev's admission secret");
    let far = (now_secs() + 600) * 1000;
    let other_event = key.sign("qa1", "ev_other", far);
    hold_with(qa1, &event_id, "s1-1-1", Some(&other_event))
        .await
        .assert_problem(403, "forbidden");
    let expired = key.sign("qa1", &event_id, (now_secs() - 1) * 1000);
    hold_with(qa1, &event_id, "s1-1-1", Some(&expired))
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(anon.seat_status(&event_id, "s1-1-1").await, "available");
    // The genuine token holds.
    let held = hold_with(qa1, &event_id, "s1-1-1", Some(&token)).await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.text);
    assert_eq!(anon.seat_status(&event_id, "s1-1-1").await, "held");
}

trait StrAt {
    fn str_at(&self, pointer: &str) -> String;
}

impl StrAt for Value {
    fn str_at(&self, pointer: &str) -> String {
        self.pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }
}

type SseLines = tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>;

/// The next `(event, data)` of the stream, within ten seconds.
async fn next_event(lines: &mut SseLines) -> Option<(String, Value)> {
    let read = async {
        let mut name = String::new();
        loop {
            let line = lines.next_line().await.ok().flatten()?;
            if let Some(event) = line.strip_prefix("event: ") {
                name = event.to_owned();
            } else if let Some(data) = line.strip_prefix("data: ") {
                return Some((name.clone(), serde_json::from_str(data).ok()?));
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .ok()
        .flatten()
}

async fn stream_until_admitted(server: &DevServer, user: &Rest, event_id: &str, ticket: &str) {
    let addr = server.base.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let (read, mut write) = stream.into_split();
    let token = user.token.clone().unwrap_or_default();
    let request = format!("GET /v1/events/{event_id}/queue/{ticket}/stream HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nAuthorization: Bearer {token}\r\n\r\n");
    write.write_all(request.as_bytes()).await.expect("send");
    let mut lines = BufReader::new(read).lines();
    let status = lines.next_line().await.expect("read").unwrap_or_default();
    assert!(status.contains("200"), "{status}");
    let (name, first) = next_event(&mut lines).await.expect("a first event");
    assert_eq!(name, "position", "{first}");
    assert_eq!(first["ticket"], ticket);
    assert!(
        first["position"].as_u64().is_some_and(|p| p >= 1),
        "{first}"
    );
    let mut last_position = first["position"].as_u64().unwrap_or(u64::MAX);
    for _ in 0..20 {
        let Some((name, data)) = next_event(&mut lines).await else {
            break;
        };
        match name.as_str() {
            "position" => {
                let position = data["position"].as_u64().expect("a position");
                assert!(position <= last_position, "the place only moves forward");
                last_position = position;
            }
            "admitted" => {
                assert!(data["admission_token"].is_string(), "{data}");
                return;
            }
            other => panic!("unexpected {other}: {data}"),
        }
    }
    panic!("the stream never said admitted");
}

async fn inventory_gate_and_sold_out(anon: &Rest, admin: &Rest) {
    // Two seats, a fast rate: only two are let in however many wait.
    let event_id = queued_event(admin, 2, json!({"admit_per_second": 50})).await;
    let mut users: Vec<(Rest, String)> = Vec::new();
    for name in ["qb1", "qb2", "qb3", "qb4"] {
        let user = anon.as_user(name, "user").await;
        let joined = join(&user, &event_id).await;
        assert_eq!(joined.status, StatusCode::CREATED, "{}", joined.text);
        users.push((user, joined.str("/ticket")));
    }
    let b1 = wait_state(&users[0].0, &event_id, &users[0].1, "admitted").await;
    let b2 = wait_state(&users[1].0, &event_id, &users[1].1, "admitted").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let stats = figures(admin, &event_id).await;
    assert_eq!(
        (
            stats["admitted"].clone(),
            stats["waiting"].clone(),
            stats["unsold"].clone()
        ),
        (json!(2), json!(2), json!(2)),
        "never more admitted than seats unsold: {stats}"
    );
    assert_eq!(
        place(&users[2].0, &event_id, &users[2].1).await.body["position"],
        1
    );

    // One buys: one seat left for one admitted user still shopping: nobody else gets in.
    buy(
        &users[0].0,
        &event_id,
        "s1-1-1",
        &b1.str_at("/admission_token"),
    )
    .await;
    assert_eq!(
        wait_state(&users[0].0, &event_id, &users[0].1, "bought").await["admitted"],
        false
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        place(&users[2].0, &event_id, &users[2].1).await.body["state"],
        "waiting"
    );

    // The other buys the last seat: sold out, every waiting place closes.
    buy(
        &users[1].0,
        &event_id,
        "s1-1-2",
        &b2.str_at("/admission_token"),
    )
    .await;
    wait_state(&users[2].0, &event_id, &users[2].1, "closed").await;
    wait_state(&users[3].0, &event_id, &users[3].1, "closed").await;
    let late = anon.as_user("qb5", "user").await;
    let joined = join(&late, &event_id).await;
    assert_eq!(joined.status, StatusCode::CREATED, "{}", joined.text);
    assert_eq!(joined.body["state"], "closed");
    let stats = figures(admin, &event_id).await;
    assert_eq!(stats["closed"], true, "{stats}");
    assert_eq!(
        (
            stats["bought"].clone(),
            stats["unsold"].clone(),
            stats["closed_places"].clone()
        ),
        (json!(2), json!(0), json!(3)),
        "{stats}"
    );
}

async fn leave_and_abandon(anon: &Rest, admin: &Rest) {
    // Not open for an hour: nobody is admitted, places only wait (and must be read).
    let opens_at = rfc3339(now_secs() + 3600);
    let event_id = queued_event(
        admin,
        5,
        json!({"opens_at": opens_at, "abandon_after_seconds": 2}),
    )
    .await;
    let stayer = anon.as_user("qc1", "user").await;
    let leaver = anon.as_user("qc2", "user").await;
    let sleeper = anon.as_user("qc3", "user").await;
    let stay = join(&stayer, &event_id).await.str("/ticket");
    let gone = join(&leaver, &event_id).await;
    assert_eq!(
        gone.body["position"],
        Value::Null,
        "no position before the sale opens"
    );
    let gone = gone.str("/ticket");
    let sleep = join(&sleeper, &event_id).await.str("/ticket");

    // Only the owner reads (or leaves) a place.
    place(&leaver, &event_id, &stay)
        .await
        .assert_problem(404, "not-found");
    let path = format!("/v1/events/{event_id}/queue/{gone}");
    let left = leaver.call(Method::DELETE, &path, None, &[]).await;
    assert_eq!(left.status, StatusCode::NO_CONTENT, "{}", left.text);
    assert_eq!(place(&leaver, &event_id, &gone).await.body["state"], "left");
    // Leaving again changes nothing.
    let again = leaver.call(Method::DELETE, &path, None, &[]).await;
    assert_eq!(again.status, StatusCode::NO_CONTENT, "{}", again.text);

    // The stayer reads every half second; the sleeper never does.
    for _ in 0..8 {
        assert_eq!(
            place(&stayer, &event_id, &stay).await.body["state"],
            "waiting"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        place(&sleeper, &event_id, &sleep).await.body["state"],
        "abandoned"
    );
    let stats = figures(admin, &event_id).await;
    assert_eq!(
        (
            stats["waiting"].clone(),
            stats["left"].clone(),
            stats["abandoned"].clone()
        ),
        (json!(1), json!(1), json!(1)),
        "{stats}"
    );
}

async fn presale_shuffle_is_reproducible(anon: &Rest, admin: &Rest) {
    let opens_secs = now_secs() + 5;
    let event_id = queued_event(admin, 20, json!({"opens_at": rfc3339(opens_secs)})).await;
    let names: Vec<String> = (0..8).map(|i| format!("qd{i}")).collect();
    let mut users: Vec<(Rest, String)> = Vec::new();
    for name in &names {
        let user = anon.as_user(name, "user").await;
        let joined = join(&user, &event_id).await;
        assert_eq!(joined.body["position"], Value::Null, "{}", joined.text);
        users.push((user, joined.str("/ticket")));
    }
    assert!(
        now_secs() < opens_secs,
        "the joins took too long to come before the opening"
    );
    let opened = eventually(Duration::from_secs(15), || {
        let admin = admin.clone();
        let event_id = event_id.clone();
        async move { (figures(&admin, &event_id).await["opened"] == true).then_some(()) }
    })
    .await;
    assert!(opened.is_some(), "the room opens");

    // The order anyone can compute from the log: the event, the opening time, the users in
    // join order.
    let (seed, order) =
        boxoffice_raft::machine::presale_order(&event_id, opens_secs * 1000, &names);
    assert_eq!(
        figures(admin, &event_id).await["shuffle_seed"],
        format!("{seed:016x}")
    );
    let places = read_all(admin, &event_id, &users).await;
    let in_line: Vec<Value> = order.iter().map(|&i| places[i].clone()).collect();
    assert_line_order(&in_line);
    assert_ne!(
        order,
        (0..names.len()).collect::<Vec<_>>(),
        "eight places kept their join order"
    );
}

async fn queue_settings_through_patch_and_errors(anon: &Rest, admin: &Rest) {
    let venue = admin.venue(1, 4, 5000).await;
    let event_id = admin.event(&venue, "Quiet night", 600).await;
    let user = anon.as_user("qe1", "user").await;
    // No waiting room: joining is a conflict, holds need no token.
    join(&user, &event_id).await.assert_problem(409, "conflict");
    assert_eq!(
        user.hold(&event_id, &["s1-1-1"]).await.status,
        StatusCode::CREATED
    );
    admin
        .get(&format!("/admin/v1/events/{event_id}/queue"))
        .await
        .assert_problem(404, "not-found");

    // A PATCH turns it on in the state machine.
    let patched = admin
        .call(
            Method::PATCH,
            &format!("/admin/v1/events/{event_id}"),
            Some(json!({"queue": {"enabled": true, "admit_per_second": 7}})),
            &[],
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    let stats = figures(admin, &event_id).await;
    assert_eq!(
        (stats["enabled"].clone(), stats["admit_per_second"].clone()),
        (json!(true), json!(7))
    );
    let on = eventually(Duration::from_secs(5), || {
        let user = user.clone();
        let event_id = event_id.clone();
        async move { (join(&user, &event_id).await.status == StatusCode::CREATED).then_some(()) }
    })
    .await;
    assert!(on.is_some(), "joins once the catalog shows the room");
    user.hold(&event_id, &["s1-1-2"])
        .await
        .assert_problem(403, "forbidden");

    // Malformed and foreign tickets, a bad setting.
    place(&user, &event_id, "17")
        .await
        .assert_problem(400, "invalid-request");
    place(&user, &event_id, "tk_999")
        .await
        .assert_problem(404, "not-found");
    admin
        .call(
            Method::PATCH,
            &format!("/admin/v1/events/{event_id}"),
            Some(json!({"queue": {"enabled": true, "opens_at": "tomorrow"}})),
            &[],
        )
        .await
        .assert_problem(400, "invalid-request");
}
