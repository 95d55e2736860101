//! Search end to end, through the public REST API of real `boxoffice` processes: an event
//! created through the admin API is found by a misspelled name within a couple of seconds;
//! after a rename the old name no longer matches and the new one does; filters, cursor
//! pages, type-ahead, availability and bad parameters; and an API node restarted over its
//! on-disk index resumes it from the committed catalog position instead of rebuilding it.

use std::time::{Duration, Instant};

use boxoffice_tests::rest::{now_secs, rfc3339, ApiProc, DevServer, Rest};
use boxoffice_tests::{cluster_serving, eventually, start_cluster};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// How long a catalog change may take to become searchable here (the target is ~1 s; the
/// margin is for a loaded CI machine).
const SEARCHABLE_WITHIN: Duration = Duration::from_secs(5);

/// Event ids of one search page.
fn ids(answer: &Value) -> Vec<String> {
    answer["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
        .collect()
}

/// Polls `path` until `done` holds for the answer; the answer and how long it took.
async fn until(
    client: &Rest,
    path: &str,
    done: impl Fn(&Value) -> bool,
) -> Option<(Value, Duration)> {
    let started = Instant::now();
    eventually(SEARCHABLE_WITHIN, || {
        let client = client.clone();
        let path = path.to_owned();
        let done = &done;
        async move {
            let answer = client.get(&path).await;
            (answer.status == StatusCode::OK && done(&answer.body)).then_some(answer.body)
        }
    })
    .await
    .map(|body| (body, started.elapsed()))
}

async fn created(admin: &Rest, path: &str, body: Value, id: &str) -> String {
    let answer = admin.call(Method::POST, path, Some(body), &[]).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    answer.str(id)
}

/// A venue in `city` with one section of 2 rows × 5 seats.
async fn venue(admin: &Rest, name: &str, city: &str) -> String {
    let body = json!({"name": name, "city": city, "country": "US",
                      "sections": [{"name": "Floor", "price": {"amount": 5000, "currency": "USD"},
                                    "rows": [{"name": "1", "seats": 5}, {"name": "2", "seats": 5}]}]});
    created(admin, "/admin/v1/venues", body, "/venue_id").await
}

async fn event(
    admin: &Rest,
    name: &str,
    venue_id: &str,
    performer_ids: &[&str],
    days_ahead: u64,
) -> String {
    let body = json!({"name": name, "category": "concert", "venue_id": venue_id, "performer_ids": performer_ids,
                      "starts_at": rfc3339(now_secs() + days_ahead * 86_400)});
    created(admin, "/admin/v1/events", body, "/event_id").await
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_finds_misspelled_names_and_follows_the_catalog() {
    let server = DevServer::start().await;
    let anon = server.client();
    let admin = anon.as_user("ops", "admin").await;

    let chicago = venue(&admin, "Soldier Field", "Chicago").await;
    let paris = venue(&admin, "Stade de France", "Paris").await;
    let taylor = created(
        &admin,
        "/admin/v1/performers",
        json!({"name": "Taylor Swift"}),
        "/performer_id",
    )
    .await;

    // --- created, then found by a misspelled name within a couple of seconds.
    let created_at = Instant::now();
    let midnights = event(&admin, "Midnights Spectacular", &chicago, &[&taylor], 30).await;
    let (found, waited) = until(&anon, "/v1/events?q=midnigts%20spectaculr", |b| {
        ids(b).contains(&midnights)
    })
    .await
    .expect("the new event becomes searchable by a misspelled name");
    let since_create = created_at.elapsed();
    println!(
        "searchable {} ms after the admin create returned ({} ms including the create)",
        waited.as_millis(),
        since_create.as_millis()
    );
    let card = &found["events"][0];
    assert_eq!(card["event_id"], midnights.as_str());
    assert_eq!(
        card["venue"],
        json!({"name": "Soldier Field", "city": "Chicago", "country": "US"})
    );
    assert_eq!(
        card["performers"],
        json!([{"performer_id": taylor, "name": "Taylor Swift"}])
    );
    assert_eq!(
        card["price_range"],
        json!({"min": {"amount": 5000, "currency": "USD"}, "max": {"amount": 5000, "currency": "USD"}})
    );
    assert_eq!(
        (
            card["available"].as_u64(),
            card["total"].as_u64(),
            card["sold_out"].as_bool()
        ),
        (Some(10), Some(10), Some(false))
    );

    // The performer, misspelled, finds it too; filters combine with the words.
    let by_performer = anon.get("/v1/events?q=tayler%20swfit").await;
    assert!(
        ids(&by_performer.body).contains(&midnights),
        "{}",
        by_performer.text
    );
    assert_eq!(
        ids(&anon
            .get("/v1/events?q=tayler%20swfit&city=chicago")
            .await
            .body),
        std::slice::from_ref(&midnights)
    );
    assert!(ids(&anon
        .get("/v1/events?q=tayler%20swfit&city=Paris")
        .await
        .body)
    .is_empty());
    assert_eq!(
        ids(&anon
            .get(&format!("/v1/events?performer={taylor}"))
            .await
            .body),
        std::slice::from_ref(&midnights)
    );

    // --- type-ahead.
    let suggest = anon.get("/v1/suggest?q=tayl").await;
    assert_eq!(suggest.status, StatusCode::OK, "{}", suggest.text);
    assert_eq!(
        suggest.body["suggestions"][0],
        json!({"kind": "performer", "text": "Taylor Swift", "event_id": null, "performer_id": taylor})
    );

    // --- renamed: the old name stops matching, the new one matches.
    let patched = admin
        .call(
            Method::PATCH,
            &format!("/admin/v1/events/{midnights}"),
            Some(json!({"name": "Evermore Nights"})),
            &[],
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    let (_, renamed_after) = until(&anon, "/v1/events?q=evermore%20nihgts", |b| {
        ids(b).contains(&midnights)
    })
    .await
    .expect("the new name matches");
    println!("rename searchable after {} ms", renamed_after.as_millis());
    let old = anon.get("/v1/events?q=midnights%20spectacular").await;
    assert_eq!(old.status, StatusCode::OK, "{}", old.text);
    assert!(
        !ids(&old.body).contains(&midnights),
        "the old name still matches: {}",
        old.text
    );

    // --- listing by date with cursor pages: no repeats, nothing skipped, earliest first.
    let mut paris_events = Vec::new();
    for (i, days) in [12u64, 3, 45, 7, 20].iter().enumerate() {
        paris_events.push((
            days,
            event(&admin, &format!("Paris Night {i}"), &paris, &[], *days).await,
        ));
    }
    paris_events.sort();
    let expected: Vec<String> = paris_events.into_iter().map(|(_, id)| id).collect();
    until(&anon, "/v1/events?city=paris&limit=100", |b| {
        ids(b).len() == expected.len()
    })
    .await
    .expect("every Paris event listed");
    let mut listed = Vec::new();
    let mut path = "/v1/events?city=paris&limit=2".to_owned();
    loop {
        let page = anon.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert!(ids(&page.body).len() <= 2);
        listed.extend(ids(&page.body));
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/events?city=paris&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(listed, expected, "pages in date order, no repeats, no gaps");
    // Past events are hidden unless `from` reaches back; a `to` bounds the range.
    let soon = anon
        .get(&format!(
            "/v1/events?city=paris&to={}",
            rfc3339(now_secs() + 10 * 86_400)
        ))
        .await;
    assert_eq!(ids(&soon.body), expected[..2].to_vec(), "{}", soon.text);

    // --- availability follows the seats (coalesced, about once a second).
    let alice = anon.as_user("alice", "user").await;
    let held = alice.hold(&midnights, &["s1-1-1", "s1-1-2"]).await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.text);
    until(&anon, "/v1/events?q=evermore", |b| {
        b["events"][0]["available"] == 8
    })
    .await
    .expect("the index sees two seats held");

    // --- bad parameters: 400 problem+json naming the parameter.
    for (query, field) in [
        ("limit=-1", "limit"),
        ("limit=101", "limit"),
        ("from=not-a-date", "from"),
        ("from=2027-02-01T00:00:00Z&to=2027-01-01T00:00:00Z", "from"),
        ("cursor=bogus", "cursor"),
        ("sort=price", "sort"),
    ] {
        let answer = anon.get(&format!("/v1/events?{query}")).await;
        answer.assert_problem(400, "invalid-request");
        assert_eq!(answer.body["field"], field, "{query}: {}", answer.text);
    }
    let long = anon.get(&format!("/v1/events?q={}", "a".repeat(300))).await;
    long.assert_problem(400, "invalid-request");
    assert_eq!(long.body["field"], "q");
    let cross = anon
        .get(&format!(
            "/v1/events?q=paris&cursor={}",
            listed_cursor(&anon).await
        ))
        .await;
    cross.assert_problem(400, "invalid-request");
    anon.get("/v1/suggest")
        .await
        .assert_problem(400, "invalid-request");
    anon.get("/v1/suggest?q=tay&limit=0")
        .await
        .assert_problem(400, "invalid-request");

    // --- latency through the API (debug build, client on the same machine): a repeated
    // query comes from the result cache; 100 distinct ones (limits 1..=100) search the index.
    let mut cached = Vec::new();
    let mut distinct = Vec::new();
    for i in 1..=100u32 {
        let t = Instant::now();
        let answer = anon.get("/v1/events?q=tayler%20swfit").await;
        cached.push(t.elapsed());
        assert_eq!(answer.status, StatusCode::OK);
        let t = Instant::now();
        let answer = anon
            .get(&format!("/v1/events?q=tayler%20swfit&limit={i}"))
            .await;
        distinct.push(t.elapsed());
        assert_eq!(answer.status, StatusCode::OK);
    }
    cached.sort();
    distinct.sort();
    println!(
        "GET /v1/events latency: cached p50 {:?} p99 {:?}; distinct p50 {:?} p99 {:?}",
        percentile(&cached, 0.5),
        percentile(&cached, 0.99),
        percentile(&distinct, 0.5),
        percentile(&distinct, 0.99)
    );
}

/// A cursor of the Paris listing (valid for that query only).
async fn listed_cursor(anon: &Rest) -> String {
    let page = anon.get("/v1/events?city=paris&limit=1").await;
    page.str("/next_cursor")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_api_node_resumes_its_index_from_disk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (nodes, cluster) = start_cluster(dir.path(), 1);
    cluster_serving(&nodes).await;
    let search_dir = dir.path().join("api-search");
    let search_dir_arg = search_dir.display().to_string();
    let log = dir.path().join("api.log");
    let mut api = ApiProc::start_with(&cluster, &log, &["--search-dir", &search_dir_arg]).await;
    let ready = api.client().get("/readyz").await;
    assert_eq!(
        ready.body["search_rebuilds"], 1,
        "a fresh node builds its index from a snapshot: {}",
        ready.text
    );

    let admin = api.client().as_user("ops", "admin").await;
    let hall = venue(&admin, "Spektrum", "Oslo").await;
    let first = event(&admin, "Aurora Borealis Live", &hall, &[], 20).await;
    until(&api.client(), "/v1/events?q=aurora%20borealsi", |b| {
        ids(b).contains(&first)
    })
    .await
    .expect("searchable before the restart");
    let committed = api.client().get("/readyz").await.body["search_index"]
        .as_u64()
        .expect("search_index");
    assert!(committed > 0);

    // SIGKILL, then a new process over the same directory.
    api.kill();
    let api = ApiProc::start_with(&cluster, &log, &["--search-dir", &search_dir_arg]).await;
    let ready = api.client().get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    assert_eq!(
        ready.body["search_rebuilds"], 0,
        "resumed from disk, not rebuilt: {}",
        ready.text
    );
    assert!(
        ready.body["search_index"].as_u64() >= Some(committed),
        "{}",
        ready.text
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("resuming the search index from disk"),
        "{text}"
    );
    // What was indexed before is there at once; the feed carries on from where it was.
    assert!(ids(&api.client().get("/v1/events?q=aurora").await.body).contains(&first));
    let admin = api.client().as_user("ops", "admin").await;
    let second = event(&admin, "Sigrid Unplugged", &hall, &[], 21).await;
    until(&api.client(), "/v1/events?q=sigird", |b| {
        ids(b).contains(&second)
    })
    .await
    .expect("a change after the restart is indexed");
    let listing = api.client().get("/v1/events?city=oslo").await;
    assert_eq!(ids(&listing.body), [first, second], "{}", listing.text);
}
