//! `boxoffice bench flash-sale`: a sold-out rush through the waiting room, over real HTTP.
//!
//! Starts three storage replicas and one API node (with the payment sandbox) in this process
//! on loopback, creates one event of `--seats` seats with the waiting room on, and lets
//! `--buyers` simulated fans join in the second before the sale opens. Each fan then reads
//! its place until admitted, holds the best 1–4 seats available with its admission token,
//! books, pays through the sandbox and waits for the confirmation; some leave the line, some
//! stop reading (abandon), some let their admission or their hold lapse. A few browsers read
//! the event view throughout.
//!
//! At the end the run reads the seat map and every confirmed booking and prints: time to sold
//! out, seats sold, oversold seats (a seat in two confirmed bookings, or confirmed seats beyond
//! the capacity), admission-order violations (a fan still told `waiting` after someone behind
//! them had been admitted), 5xx answers, p50/p99 of each request kind, peak RSS. Figures are
//! printed, never asserted.
//!
//! The fans share `--connections` HTTP connections (what a front proxy would multiplex them
//! onto): one 2-core box cannot open 100,000 sockets to itself and still measure anything.
//! Half of them carry the waiting room's traffic (joins, place reads, event views), half the
//! shop's (holds, bookings, payments, confirmation reads), as a waiting room in front of a
//! shop routes them: otherwise 100,000 waiting fans' reads queue an admitted fan's hold for
//! longer than the admission lasts (measured: 30–42 s waits for a connection, every
//! admission expired, on a loaded box).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use boxoffice_api::auth::Role;
use boxoffice_api::{Auth, Clock, SystemClock};
use boxoffice_raft::{ClusterKey, RaftSettings};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::api_node::{bench_venue, BenchApi};
use crate::storage_node::start_local_cluster;

#[derive(clap::Args, Debug)]
pub struct FlashSaleArgs {
    /// Fans who join the waiting room.
    #[arg(long, default_value_t = 100_000)]
    buyers: u32,
    /// Seats in the event (sections of 50 rows of 100 seats).
    #[arg(long, default_value_t = 50_000)]
    seats: u32,
    /// The waiting room's admission rate.
    #[arg(long, default_value_t = 2_000)]
    admit_per_second: u32,
    /// HTTP connections the fans share (half for the waiting room, half for the shop).
    #[arg(long, default_value_t = 256)]
    connections: usize,
    /// Seconds between creating the event and the sale opening (the fans join in the last
    /// one).
    #[arg(long, default_value_t = 10)]
    lead_secs: u64,
    /// Give up this many seconds after the opening.
    #[arg(long, default_value_t = 600)]
    max_secs: u64,
    /// Hold and admission lifetimes (short, so lapsed ones come back within the run).
    #[arg(long, default_value_t = 60)]
    ttl_secs: u64,
    /// Seed of the fans' choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Browsers reading the event view during the sale.
const N_BROWSERS: usize = 8;
/// Bounds of a waiting fan's pause between reads of its place.
const MIN_READ_PAUSE_MS: u64 = 500;
const MAX_READ_PAUSE_MS: u64 = 20_000;
/// How long a fan waits for its payment's confirmation before giving up on it.
const CONFIRM_WAIT_MS: u64 = 30_000;
/// Pause between a paying fan's reads of its booking (a checkout page's poll).
const CONFIRM_POLL_MS: u64 = 1_000;
const CARD_OK: &str = "4242424242424242";
/// Tries at paying when the processor answers 503, and the first and longest pause between
/// them (doubling, plus jitter).
const PAY_ATTEMPTS: u32 = 8;
const PAY_RETRY_PAUSE_MS: u64 = 1_000;
const PAY_RETRY_MAX_PAUSE_MS: u64 = 16_000;
/// Percent of fans who leave the line, stop reading, let the admission lapse, and let the
/// hold lapse (cumulative thresholds of one roll).
const LEAVE_PCT: u32 = 3;
const ABANDON_PCT: u32 = 6;
const SKIP_ADMISSION_PCT: u32 = 9;
const SKIP_PAYMENT_PCT: u32 = 14;

/// What one fan does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    Leave,
    Abandon,
    LetAdmissionLapse,
    LetHoldLapse,
    Buy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Join,
    Position,
    Hold,
    Book,
    Pay,
    View,
}

/// Everything the fans and browsers report into.
struct Run {
    http: reqwest::Client,
    base: String,
    /// Connections for the waiting room's requests and for the shop's.
    room_gate: Semaphore,
    shop_gate: Semaphore,
    t0: Instant,
    latencies_us: Mutex<BTreeMap<Kind, Vec<u64>>>,
    statuses: Mutex<BTreeMap<(Kind, u16), u64>>,
    server_errors: AtomicU64,
    transport_errors: AtomicU64,
    seats_confirmed: AtomicU64,
    /// ms after t0 at which the confirmed seats reached the capacity.
    sold_out_at_ms: AtomicU64,
    capacity: u64,
    /// Per fan: the place, the last read that said `waiting` (sent — after its wait for a
    /// connection — ms after t0), the read that first said `admitted` (completed, ms after t0).
    places: Mutex<Vec<FanTrace>>,
    confirmed: Mutex<Vec<(String, Vec<String>)>>,
    outcomes: Mutex<BTreeMap<&'static str, u64>>,
    /// Per request: µs spent waiting for one of the shared connections (not in the latencies).
    gate_wait_us: Mutex<Vec<u64>>,
    /// Per admitted fan: ms of admission left (by its token's expiry, wall clock) when the
    /// fan first read `admitted`; negative when it was over already.
    admission_left_ms: Mutex<Vec<i64>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct FanTrace {
    place: Option<u64>,
    last_waiting_invoked_ms: Option<u64>,
    admitted_seen_ms: Option<u64>,
}

impl Run {
    fn ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    /// Forgets what setting the sale up (readiness polls, the catalog) measured.
    fn forget_setup(&self) {
        self.latencies_us.lock().unwrap().clear();
        self.statuses.lock().unwrap().clear();
        self.server_errors.store(0, Ordering::Relaxed);
        self.transport_errors.store(0, Ordering::Relaxed);
    }

    fn outcome(&self, what: &'static str) {
        *self.outcomes.lock().unwrap().entry(what).or_default() += 1;
    }

    /// One request through the shared connections; `None` when it never got an answer.
    async fn call(
        &self,
        kind: Kind,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Option<(StatusCode, Value)> {
        self.call_sent(kind, method, path, token, headers, body)
            .await
            .map(|(status, body, _)| (status, body))
    }

    /// [`Run::call`], also answering when the request left (ms after t0): after the wait for
    /// a connection, so an order check does not date a read earlier than it happened.
    async fn call_sent(
        &self,
        kind: Kind,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Option<(StatusCode, Value, u64)> {
        let waiting = Instant::now();
        let gate = match kind {
            Kind::Join | Kind::Position | Kind::View => &self.room_gate,
            Kind::Hold | Kind::Book | Kind::Pay => &self.shop_gate,
        };
        let _permit = gate.acquire().await.ok()?;
        self.gate_wait_us
            .lock()
            .unwrap()
            .push(waiting.elapsed().as_micros() as u64);
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let started = Instant::now();
        let sent_ms = self.ms();
        let answer = request.send().await;
        let (status, body) = match answer {
            Ok(response) => {
                let status = response.status();
                let body = response.json::<Value>().await.unwrap_or(Value::Null);
                (status, body)
            }
            Err(_) => {
                self.transport_errors.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        let took_us = started.elapsed().as_micros() as u64;
        self.latencies_us
            .lock()
            .unwrap()
            .entry(kind)
            .or_default()
            .push(took_us);
        *self
            .statuses
            .lock()
            .unwrap()
            .entry((kind, status.as_u16()))
            .or_default() += 1;
        if status.is_server_error() {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
        }
        Some((status, body, sent_ms))
    }
}

pub async fn flash_sale(args: FlashSaleArgs) -> anyhow::Result<()> {
    if args.seats == 0 || args.buyers == 0 || args.connections < 2 {
        bail!("--seats and --buyers must be at least 1, --connections at least 2");
    }
    let tmp = std::env::temp_dir().join(format!("boxoffice-flash-{}", std::process::id()));
    // A fresh key signs the internal calls, as in production.
    let cluster_key = Some(ClusterKey::new(ClusterKey::generate_text().as_bytes())?);
    let (nodes, seeds) = start_local_cluster(
        &tmp,
        cluster_key.clone(),
        1,
        false,
        &RaftSettings::default(),
    )
    .await?;
    let api = BenchApi::start(seeds, cluster_key).await?;
    let result = drive(&args, &api.base, &api.jwt_secret).await;
    api.stop().await;
    for node in nodes {
        node.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

async fn drive(args: &FlashSaleArgs, base: &str, jwt_secret: &[u8]) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let auth = Auth::new(jwt_secret, clock.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let run = Arc::new(Run {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(args.connections)
            .timeout(Duration::from_secs(30))
            .build()?,
        base: base.to_owned(),
        room_gate: Semaphore::new(args.connections / 2),
        shop_gate: Semaphore::new(args.connections - args.connections / 2),
        t0: Instant::now(),
        latencies_us: Mutex::default(),
        statuses: Mutex::default(),
        server_errors: AtomicU64::new(0),
        transport_errors: AtomicU64::new(0),
        seats_confirmed: AtomicU64::new(0),
        sold_out_at_ms: AtomicU64::new(0),
        capacity: u64::from(args.seats),
        places: Mutex::new(vec![FanTrace::default(); args.buyers as usize]),
        confirmed: Mutex::default(),
        outcomes: Mutex::default(),
        gate_wait_us: Mutex::default(),
        admission_left_ms: Mutex::default(),
    });
    let admin = auth
        .issue("flash-admin", Role::Admin)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .token;
    wait_ready(&run).await?;
    let opens_at_ms = clock.now_ms() + args.lead_secs * 1000;
    // RFC 3339 carries whole seconds: open on a second boundary, so the fans' clock agrees.
    let opens_at_ms = opens_at_ms - opens_at_ms % 1000 + 1000;
    let event_id = create_event(&run, &admin, args, opens_at_ms).await?;
    println!(
        "bench flash-sale: {} seats, {} fans joining in the second before the opening, admit {}/s, {} shared connections, 3 in-process replicas + 1 API node",
        args.seats, args.buyers, args.admit_per_second, args.connections
    );
    let opening =
        Instant::now() + Duration::from_millis(opens_at_ms.saturating_sub(clock.now_ms()));
    // Tokens are signed here (as an identity provider would), not fetched over HTTP.
    let mut fans = tokio::task::JoinSet::new();
    let mut rng = StdRng::seed_from_u64(args.seed);
    for i in 0..args.buyers {
        let token = auth
            .issue(&format!("fan{i}"), Role::User)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
            .token;
        let roll = rng.gen_range(0..100u32);
        let plan = match roll {
            r if r < LEAVE_PCT => Plan::Leave,
            r if r < ABANDON_PCT => Plan::Abandon,
            r if r < SKIP_ADMISSION_PCT => Plan::LetAdmissionLapse,
            r if r < SKIP_PAYMENT_PCT => Plan::LetHoldLapse,
            _ => Plan::Buy,
        };
        let join_at = opening - Duration::from_millis(rng.gen_range(50..1000));
        let quantity = rng.gen_range(1..=4u32);
        let fan_seed = rng.gen::<u64>();
        let run = run.clone();
        let event_id = event_id.clone();
        fans.spawn(async move {
            tokio::time::sleep_until(join_at.into()).await;
            fan(
                &run, i as usize, &event_id, &token, plan, quantity, fan_seed,
            )
            .await;
        });
    }
    let browsers_stop = Arc::new(tokio::sync::Notify::new());
    let mut browsers = tokio::task::JoinSet::new();
    for _ in 0..N_BROWSERS {
        let (run, event_id, stop) = (run.clone(), event_id.clone(), browsers_stop.clone());
        browsers.spawn(async move {
            tokio::time::sleep_until(opening.into()).await;
            loop {
                let path = format!("/v1/events/{event_id}");
                run.call(Kind::View, Method::GET, &path, None, &[], None)
                    .await;
                tokio::select! {
                    _ = stop.notified() => break,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        });
    }
    let deadline = opening + Duration::from_secs(args.max_secs);
    let mut timed_out = false;
    loop {
        tokio::select! {
            done = fans.join_next() => if done.is_none() { break },
            _ = tokio::time::sleep_until(deadline.into()) => { timed_out = true; break }
        }
    }
    fans.abort_all();
    browsers_stop.notify_waiters();
    browsers.abort_all();
    let opening_ms = opening.duration_since(run.t0).as_millis() as u64;
    report(&run, &event_id, args, opening_ms, timed_out).await
}

async fn wait_ready(run: &Run) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some((status, _)) = run
            .call(Kind::View, Method::GET, "/readyz", None, &[], None)
            .await
        {
            if status == StatusCode::OK {
                run.forget_setup();
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("the API node never became ready")
}

/// A venue of `seats` seats, a performer and the event, queue on; answers the event id once
/// its view is served.
async fn create_event(
    run: &Run,
    admin: &str,
    args: &FlashSaleArgs,
    opens_at_ms: u64,
) -> anyhow::Result<String> {
    let admin_post = |path: &'static str, body: Value| async move {
        match run
            .call(
                Kind::View,
                Method::POST,
                path,
                Some(admin),
                &[],
                Some(&body),
            )
            .await
        {
            Some((StatusCode::CREATED, body)) => Ok(body),
            other => Err(anyhow::anyhow!("POST {path} answered {other:?}")),
        }
    };
    let venue = admin_post(
        "/admin/v1/venues",
        bench_venue("Flash Arena", u64::from(args.seats)),
    )
    .await?;
    let performer = admin_post(
        "/admin/v1/performers",
        json!({"name": "The Flash Crowd", "description": "benchmark headliner"}),
    )
    .await?;
    let opens_at = boxoffice_api::clock::rfc3339_from_ms(opens_at_ms);
    let event = admin_post(
        "/admin/v1/events",
        json!({
            "name": "Flash sale night", "description": "sold out in seconds",
            "category": "concert", "venue_id": venue["venue_id"],
            "performer_ids": [performer["performer_id"]],
            "starts_at": boxoffice_api::clock::rfc3339_from_ms(opens_at_ms + 30 * 86_400_000),
            "on_sale": true, "hold_ttl_seconds": args.ttl_secs,
            "queue": {"enabled": true, "admit_per_second": args.admit_per_second,
                      "opens_at": opens_at, "admission_ttl_seconds": args.ttl_secs},
        }),
    )
    .await?;
    let event_id = event["event_id"]
        .as_str()
        .context("the event has no id")?
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let path = format!("/v1/events/{event_id}");
        if let Some((StatusCode::OK, _)) = run
            .call(Kind::View, Method::GET, &path, None, &[], None)
            .await
        {
            run.forget_setup();
            return Ok(event_id);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("the event's view never appeared")
}

/// One fan, from joining the line to a confirmed booking (or not).
async fn fan(
    run: &Run,
    index: usize,
    event_id: &str,
    token: &str,
    plan: Plan,
    quantity: u32,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let queue = format!("/v1/events/{event_id}/queue");
    let Some((StatusCode::CREATED, joined)) = run
        .call(Kind::Join, Method::POST, &queue, Some(token), &[], None)
        .await
    else {
        return run.outcome("join failed");
    };
    let Some(ticket) = joined["ticket"].as_str().map(str::to_owned) else {
        return run.outcome("join without a ticket");
    };
    if plan == Plan::Abandon {
        return run.outcome("abandoned (stopped reading)");
    }
    let place = format!("{queue}/{ticket}");
    // Nobody moves before the opening: the first read is spread over the first seconds.
    let mut pause = Duration::from_millis(1_000 + rng.gen_range(0..3_000));
    let admission = loop {
        tokio::time::sleep(pause).await;
        let Some((status, view, invoked_ms)) = run
            .call_sent(Kind::Position, Method::GET, &place, Some(token), &[], None)
            .await
        else {
            pause = Duration::from_millis(MIN_READ_PAUSE_MS);
            continue;
        };
        if status != StatusCode::OK {
            return run.outcome("place read refused");
        }
        if let Some(p) = view["place"].as_u64() {
            run.places.lock().unwrap()[index].place = Some(p);
        }
        match view["state"].as_str() {
            Some("waiting") => {
                run.places.lock().unwrap()[index].last_waiting_invoked_ms = Some(invoked_ms);
                if plan == Plan::Leave {
                    run.call(
                        Kind::Position,
                        Method::DELETE,
                        &place,
                        Some(token),
                        &[],
                        None,
                    )
                    .await;
                    return run.outcome("left the line");
                }
                let wait_ms = view["estimated_wait_seconds"].as_u64().unwrap_or(5) * 1000;
                let base = (wait_ms / 4).clamp(MIN_READ_PAUSE_MS, MAX_READ_PAUSE_MS);
                pause = Duration::from_millis(base + rng.gen_range(0..base / 2 + 1));
            }
            Some("admitted") => {
                run.places.lock().unwrap()[index].admitted_seen_ms = Some(run.ms());
                match view["admission_token"].as_str() {
                    Some(t) => {
                        // `adm1.<expiry, unix seconds>.…`
                        if let Some(secs) = t.split('.').nth(1).and_then(|s| s.parse::<i64>().ok())
                        {
                            let now_ms = SystemClock.now_ms() as i64;
                            run.admission_left_ms
                                .lock()
                                .unwrap()
                                .push(secs * 1000 - now_ms);
                        }
                        break t.to_owned();
                    }
                    None => return run.outcome("admitted without a token"),
                }
            }
            Some("closed") => return run.outcome("closed (sold out)"),
            Some("expired") => return run.outcome("admission over before the fan read it"),
            Some("abandoned") => return run.outcome("dropped as abandoned"),
            _ => return run.outcome("unreadable place"),
        }
    };
    if plan == Plan::LetAdmissionLapse {
        return run.outcome("let the admission lapse");
    }
    let Some((hold_id, seats)) = hold(run, event_id, token, &admission, quantity, index).await
    else {
        return;
    };
    if plan == Plan::LetHoldLapse {
        return run.outcome("let the hold lapse");
    }
    buy(run, token, &hold_id, seats, index).await;
}

/// Best-available seats, adjacent first, then any `available` ones.
async fn hold(
    run: &Run,
    event_id: &str,
    token: &str,
    admission: &str,
    quantity: u32,
    index: usize,
) -> Option<(String, Vec<String>)> {
    let mut body = json!({"event_id": event_id, "quantity": quantity});
    for attempt in 0..3 {
        let key = format!("flash-hold-{index}-{attempt}");
        let headers = [
            ("Idempotency-Key", key.as_str()),
            ("Admission-Token", admission),
        ];
        let answer = run
            .call(
                Kind::Hold,
                Method::POST,
                "/v1/holds",
                Some(token),
                &headers,
                Some(&body),
            )
            .await;
        match answer {
            Some((StatusCode::CREATED, held)) => {
                let seats = held["seat_ids"]
                    .as_array()
                    .map(|s| {
                        s.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                return Some((held["hold_id"].as_str()?.to_owned(), seats));
            }
            Some((StatusCode::CONFLICT, refused)) => {
                let available = refused["available"].as_u64().unwrap_or(0);
                if available == 0 {
                    run.outcome("no seats left at hold time");
                    return None;
                }
                // Fewer, or apart: what a fan would take rather than nothing.
                body = json!({"event_id": event_id,
                              "quantity": available.min(u64::from(quantity)),
                              "adjacent": false});
            }
            Some((StatusCode::FORBIDDEN, refused)) => {
                let detail = refused["detail"].as_str().unwrap_or_default();
                run.outcome(if detail.contains("expired") {
                    "hold refused (admission expired)"
                } else {
                    "hold refused (admission)"
                });
                return None;
            }
            _ => {}
        }
    }
    run.outcome("hold failed");
    None
}

async fn buy(run: &Run, token: &str, hold_id: &str, seats: Vec<String>, index: usize) {
    let key = format!("flash-book-{index}");
    let Some((StatusCode::CREATED, booked)) = run
        .call(
            Kind::Book,
            Method::POST,
            "/v1/bookings",
            Some(token),
            &[("Idempotency-Key", &key)],
            Some(&json!({"hold_id": hold_id})),
        )
        .await
    else {
        return run.outcome("booking refused");
    };
    let (Some(booking_id), Some(intent)) = (
        booked["booking_id"].as_str(),
        booked["payment"]["intent_id"].as_str(),
    ) else {
        return run.outcome("booking without ids");
    };
    let pay = format!("/sandbox/v1/payment_intents/{intent}/confirm");
    let card = json!({"card_number": CARD_OK});
    let mut paid = false;
    let mut pause_ms = PAY_RETRY_PAUSE_MS;
    for _ in 0..PAY_ATTEMPTS {
        match run
            .call(Kind::Pay, Method::POST, &pay, Some(token), &[], Some(&card))
            .await
        {
            Some((StatusCode::OK, _)) => {
                paid = true;
                break;
            }
            // The processor's backpressure (its webhook queue is full): try again later, as
            // its Retry-After says.
            Some((StatusCode::SERVICE_UNAVAILABLE, _)) | None => {
                // Backing off, with jitter: fans retrying every second all together kept
                // the sandbox's queue full (BENCHMARKS.md, run 2).
                let jitter = rand::random::<u64>() % pause_ms;
                tokio::time::sleep(Duration::from_millis(pause_ms + jitter)).await;
                pause_ms = (pause_ms * 2).min(PAY_RETRY_MAX_PAUSE_MS);
            }
            Some(_) => break,
        }
    }
    if !paid {
        return run.outcome("payment refused");
    }
    let deadline = Instant::now() + Duration::from_millis(CONFIRM_WAIT_MS);
    let path = format!("/v1/bookings/{booking_id}");
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(CONFIRM_POLL_MS)).await;
        let Some((StatusCode::OK, view)) = run
            .call(Kind::Book, Method::GET, &path, Some(token), &[], None)
            .await
        else {
            continue;
        };
        match view["status"].as_str() {
            Some("confirmed") => {
                let n = seats.len() as u64;
                let total = run.seats_confirmed.fetch_add(n, Ordering::Relaxed) + n;
                if total >= run.capacity {
                    let _ = run.sold_out_at_ms.compare_exchange(
                        0,
                        run.ms(),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                run.confirmed
                    .lock()
                    .unwrap()
                    .push((booking_id.to_owned(), seats));
                return run.outcome("bought");
            }
            Some("pending_payment") => {}
            _ => return run.outcome("payment failed"),
        }
    }
    run.outcome("confirmation never came")
}

/// Fans told `waiting` after a fan with a later place had been seen admitted: for each place,
/// the earliest admission seen among the places behind it must come after its last `waiting`.
fn order_violations(traces: &[FanTrace]) -> Option<u64> {
    let mut by_place: Vec<&FanTrace> = traces.iter().filter(|t| t.place.is_some()).collect();
    if by_place.is_empty() {
        return None;
    }
    by_place.sort_by_key(|t| t.place);
    let mut earliest_behind = u64::MAX;
    let mut violations = 0;
    for trace in by_place.iter().rev() {
        if let Some(waiting) = trace.last_waiting_invoked_ms {
            if earliest_behind < waiting {
                violations += 1;
            }
        }
        if let Some(admitted) = trace.admitted_seen_ms {
            earliest_behind = earliest_behind.min(admitted);
        }
    }
    Some(violations)
}

fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() as f64 * p) as usize).min(sorted_us.len() - 1);
    sorted_us[i] as f64 / 1000.0
}

/// Peak resident memory of this process (every replica, the API node and the fans), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

async fn report(
    run: &Run,
    event_id: &str,
    args: &FlashSaleArgs,
    opening_ms: u64,
    timed_out: bool,
) -> anyhow::Result<()> {
    // The seat map, once the run is over: what the cluster says was sold.
    let path = format!("/v1/events/{event_id}/seats");
    let (sold_in_map, n_seats) = match run
        .call(Kind::View, Method::GET, &path, None, &[], None)
        .await
    {
        Some((StatusCode::OK, map)) => {
            let seats = map["seats"].as_array().cloned().unwrap_or_default();
            let sold = seats
                .iter()
                .filter(|s| s["status"].as_str() == Some("sold"))
                .count();
            (sold as u64, seats.len() as u64)
        }
        other => bail!("reading the seat map answered {other:?}"),
    };
    let confirmed = run.confirmed.lock().unwrap().clone();
    let mut seen = BTreeSet::new();
    let mut in_two = 0u64;
    let mut confirmed_seats = 0u64;
    for (_, seats) in &confirmed {
        for seat in seats {
            confirmed_seats += 1;
            if !seen.insert(seat.clone()) {
                in_two += 1;
            }
        }
    }
    let oversold = in_two + confirmed_seats.saturating_sub(n_seats);
    let sold_out_at = run.sold_out_at_ms.load(Ordering::Relaxed);
    println!();
    if sold_out_at > 0 {
        println!(
            "time to sold out: {:.2} s after the opening",
            sold_out_at.saturating_sub(opening_ms) as f64 / 1000.0
        );
    } else {
        println!(
            "not sold out{} ({} of {} seats confirmed)",
            if timed_out {
                format!(" within --max-secs {}", args.max_secs)
            } else {
                String::new()
            },
            confirmed_seats,
            n_seats
        );
    }
    println!(
        "seats sold: {sold_in_map} of {n_seats} (seat map); {confirmed_seats} in {} confirmed bookings",
        confirmed.len()
    );
    println!("oversold: {oversold}");
    match order_violations(&run.places.lock().unwrap()) {
        Some(v) => println!("admission-order violations: {v}"),
        None => {
            println!("admission-order violations: not measurable (no place in the ticket view)")
        }
    }
    println!(
        "5xx: {}   requests without an answer: {}   (see the statuses below: the payment sandbox answers 503 as backpressure)",
        run.server_errors.load(Ordering::Relaxed),
        run.transport_errors.load(Ordering::Relaxed)
    );
    println!("fans:");
    for (what, n) in run.outcomes.lock().unwrap().iter() {
        println!("  {what:<30} {n:>7}");
    }
    println!("latency (ms)        n      p50      p99      max");
    let mut latencies = run.latencies_us.lock().unwrap().clone();
    for (kind, values) in latencies.iter_mut() {
        values.sort_unstable();
        println!(
            "  {:<12} {:>8} {:>8.2} {:>8.2} {:>8.2}",
            format!("{kind:?}").to_lowercase(),
            values.len(),
            percentile_ms(values, 0.50),
            percentile_ms(values, 0.99),
            values.last().copied().unwrap_or(0) as f64 / 1000.0
        );
    }
    println!("answers by kind and status:");
    for ((kind, status), n) in run.statuses.lock().unwrap().iter() {
        println!(
            "  {:<12} {status} {n:>8}",
            format!("{kind:?}").to_lowercase()
        );
    }
    let mut waits = run.gate_wait_us.lock().unwrap().clone();
    waits.sort_unstable();
    println!(
        "waits for a shared connection (not in the latencies): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile_ms(&waits, 0.50),
        percentile_ms(&waits, 0.99),
        waits.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    let mut left = run.admission_left_ms.lock().unwrap().clone();
    left.sort_unstable();
    if !left.is_empty() {
        let at = |p: f64| left[((left.len() as f64 * p) as usize).min(left.len() - 1)];
        println!(
            "admission left when a fan first read `admitted`: p1 {} ms, p50 {} ms; {} of {} already over",
            at(0.01),
            at(0.50),
            left.iter().filter(|&&ms| ms <= 0).count(),
            left.len()
        );
    }
    if let Some(mib) = peak_rss_mib() {
        println!("peak RSS (whole process: 3 replicas, API node, fans): {mib:.0} MiB");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(place: u64, waiting: Option<u64>, admitted: Option<u64>) -> FanTrace {
        FanTrace {
            place: Some(place),
            last_waiting_invoked_ms: waiting,
            admitted_seen_ms: admitted,
        }
    }

    #[test]
    fn a_fan_passed_over_is_an_order_violation() {
        // Place 2 was seen admitted at 100 ms; place 1 was still told `waiting` at 150 ms.
        let passed_over = [trace(1, Some(150), None), trace(2, Some(50), Some(100))];
        assert_eq!(order_violations(&passed_over), Some(1));
        // In order: place 1 admitted first, place 2 waiting until after.
        let in_order = [
            trace(1, Some(50), Some(100)),
            trace(2, Some(150), Some(300)),
        ];
        assert_eq!(order_violations(&in_order), Some(0));
        // A read of place 1 that started before place 2's admission was seen is no evidence.
        let overlapping = [trace(1, Some(90), Some(400)), trace(2, Some(10), Some(100))];
        assert_eq!(order_violations(&overlapping), Some(0));
        assert_eq!(order_violations(&[FanTrace::default()]), None);
    }
}
