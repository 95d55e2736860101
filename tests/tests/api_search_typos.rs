//! Search that forgives what people really type (issue 14), end to end through
//! `GET /v1/events` on `boxoffice dev`: one query of each class — a name run together, a
//! name split apart, a sound-alike spelling, two slips in a mid-length name, a slip in a
//! short word, a misspelled performer beside a word that also names a venue — each finds
//! the event of the performer meant, first. (The limits of the typo budget are unit tests:
//! `search/src/index/typo_tests.rs`.)

use std::time::Duration;

use boxoffice_tests::eventually;
use boxoffice_tests::rest::{now_secs, rfc3339, DevServer, Rest};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// How long a new event may take to become searchable (the indexer commits about every
/// second; the margin is for a loaded machine).
const SEARCHABLE_WITHIN: Duration = Duration::from_secs(10);

/// Posts `body` to the admin API and returns the new resource's id at `pointer`.
async fn create(admin: &Rest, path: &str, body: Value, pointer: &str) -> String {
    let answer = admin.call(Method::POST, path, Some(body), &[]).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    answer.str(pointer)
}

/// An event by `performer` (created with it) at a new venue `venue` in `city`.
async fn event_by(admin: &Rest, performer: &str, venue: &str, city: &str) -> String {
    let performer_id = create(
        admin,
        "/admin/v1/performers",
        json!({ "name": performer }),
        "/performer_id",
    )
    .await;
    let seats = json!([{"name": "Floor", "price": {"amount": 4000, "currency": "EUR"},
                        "rows": [{"name": "A", "seats": 4}]}]);
    let venue_body = json!({"name": venue, "city": city, "country": "IE", "sections": seats});
    let venue_id = create(admin, "/admin/v1/venues", venue_body, "/venue_id").await;
    let event_body = json!({"name": "Late Session", "category": "concert", "venue_id": venue_id,
                            "performer_ids": [performer_id],
                            "starts_at": rfc3339(now_secs() + 20 * 86_400)});
    create(admin, "/admin/v1/events", event_body, "/event_id").await
}

/// The event ids of the first page for `q`, once `expected` is among them (or the last
/// page seen when it never is).
async fn search(client: &Rest, q: &str, expected: &str) -> Vec<String> {
    let path = format!("/v1/events?q={}", q.replace(' ', "%20"));
    let page_ids = |body: &Value| -> Vec<String> {
        body["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
            .collect()
    };
    let found = eventually(SEARCHABLE_WITHIN, || {
        let client = client.clone();
        let path = path.clone();
        async move {
            let answer = client.get(&path).await;
            let ids = page_ids(&answer.body);
            (answer.status == StatusCode::OK && ids.iter().any(|id| id == expected)).then_some(ids)
        }
    })
    .await;
    match found {
        Some(ids) => ids,
        None => page_ids(&client.get(&path).await.body),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_class_of_real_typing_finds_the_performer_meant() {
    let server = DevServer::start().await;
    let anon = server.client();
    let admin = anon.as_user("ops", "admin").await;

    let joined = event_by(&admin, "Ossian Vantablack", "Quay Rooms", "Cork").await;
    let split = event_by(&admin, "Marisol Fenwickhurst", "Quay Rooms", "Cork").await;
    let sound = event_by(&admin, "Philippa Murphy", "Quay Rooms", "Cork").await;
    let slips = event_by(&admin, "Bellamy Ortega", "Quay Rooms", "Cork").await;
    let short = event_by(&admin, "Zed Kowalczyk", "Quay Rooms", "Cork").await;
    let meant = event_by(&admin, "Sarah Brightwater", "Quay Rooms", "Cork").await;
    // The trap: "Sara" is exactly this performer's name, "Brightwater" exactly its venue's.
    let trap = event_by(&admin, "Sara Quill", "Brightwater Hall", "Galway").await;

    let cases = [
        ("run together", "ossianvantablack", &joined),
        ("split apart", "marisol fenwick hurst", &split),
        ("sounds alike (ph/f, -y/-ie)", "filippa murfie", &sound),
        ("two slips in a 6-letter name", "bellamy otrgea", &slips),
        ("a slip in a 3-letter name", "zad kowalczyk", &short),
        (
            "a venue word beside a misspelled performer",
            "sara brightwater",
            &meant,
        ),
    ];
    for (class, q, expected) in cases {
        let ids = search(&anon, q, expected).await;
        assert_eq!(
            ids.first(),
            Some(expected),
            "{class}: {q:?} should list {expected} first, got {ids:?}"
        );
    }
    // The trap event still matches the same words, below the performer meant.
    let both = search(&anon, "sara brightwater", &trap).await;
    assert_eq!(
        both,
        [meant.clone(), trap.clone()],
        "performer evidence first"
    );
}
