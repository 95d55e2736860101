//! The clients: each a user of the public REST API who holds one or two of the event's hot
//! seats, then releases, checks out (books, pays through the sandbox after a random delay,
//! waits for the webhook's verdict) or tries to release someone else's hold. Every logical
//! request is recorded with its invocation and completion time; retries reuse the
//! `Idempotency-Key`, so they fold into the one request, and a request still unanswered at
//! its deadline (timeouts, 5xx, broken connections) is recorded with an unknown outcome.
//! Every unanswered attempt is counted by why (`Shared::unanswered`), so a run can tell the
//! 503s the API gives while a group has no leader from anything else.
//! Used by `jepsen.rs` under the nemesis and by `admin_balance.rs` under the operator's
//! moves, each with its own [`Patience`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boxoffice_api::ids::{derived_event_scoped_id, IdKind};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sim::checker::FailReason;

/// How long the clients wait before they give up on an answer.
#[derive(Clone, Copy, Debug)]
pub struct Patience {
    /// How long one HTTP attempt may take before it counts as unanswered.
    pub attempt: Duration,
    /// How long a logical request is retried (same key) before its outcome is unknown.
    pub request: Duration,
    /// How long a checkout waits for the payment webhook's verdict after paying.
    pub verdict: Duration,
}

/// Pause between retries of one request.
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// How many of the not-yet-sold seats (lowest ids first) the clients fight over.
pub const N_HOT_SEATS: usize = 8;
/// Longest random delay between a booking and its payment.
const MAX_PAY_DELAY_MS: u64 = 500;

/// What a client asked for, with the system's string ids.
#[derive(Clone, Debug)]
pub enum RawCommand {
    Hold {
        hold_id: String,
        owner: String,
        seats: Vec<String>,
    },
    Release {
        hold_id: String,
        owner: String,
    },
    /// Book the hold and pay: one op from the booking request to the webhook's verdict.
    Confirm {
        hold_id: String,
        booking_id: String,
    },
}

/// What the REST API answered, in the checker's terms. No answer carries the leader's
/// stamped time (see the module doc of `check.rs`).
#[derive(Clone, Debug)]
pub enum RawOutcome {
    Held {
        created_at: String,
        expires_at: String,
    },
    Taken {
        unavailable: Vec<String>,
    },
    /// Refused for a reason outside the seat model (the per-user hold limit).
    Refused,
    Released,
    NotFound,
    NotOwner,
    AlreadyInactive,
    Confirmed,
    Failed(FailReason),
}

#[derive(Clone, Debug)]
pub struct RawOp {
    pub invoked: Instant,
    pub command: RawCommand,
    /// `None`: unknown outcome.
    pub response: Option<(Instant, RawOutcome)>,
}

/// Everything the clients share: the API nodes, the event, the record.
pub struct Shared {
    pub apis: Vec<String>,
    pub event_id: String,
    pub ops: Mutex<Vec<RawOp>>,
    /// Seats not seen sold yet; the hot seats are the first few.
    pub unsold: Mutex<BTreeSet<String>>,
    /// Recent acknowledged holds (id, owner), for releases by someone else.
    pub recent: Mutex<Vec<(String, String)>>,
    pub http: reqwest::Client,
    pub patience: Patience,
    /// Attempts of the clients' requests that got no usable answer, counted by why: the
    /// status of a 5xx (`503 Service Unavailable`), `timeout`, `connect`, or another
    /// transport error.
    pub unanswered: Mutex<BTreeMap<String, usize>>,
    /// Once set, the clients finish the hold in hand (its release or checkout included) and
    /// stop, before their `stop` time.
    pub stopping: AtomicBool,
}

impl Shared {
    pub fn new(
        apis: Vec<String>,
        event_id: String,
        seats: Vec<String>,
        patience: Patience,
    ) -> Shared {
        Shared {
            apis,
            event_id,
            ops: Mutex::new(Vec::new()),
            unsold: Mutex::new(seats.into_iter().collect()),
            recent: Mutex::new(Vec::new()),
            patience,
            unanswered: Mutex::new(BTreeMap::new()),
            stopping: AtomicBool::new(false),
            http: reqwest::Client::builder()
                .timeout(patience.attempt)
                .connect_timeout(Duration::from_secs(2))
                .pool_max_idle_per_host(4)
                .build()
                .expect("http client"),
        }
    }

    fn record(&self, op: RawOp) {
        self.ops.lock().expect("ops lock").push(op);
    }
}

/// One answered HTTP attempt.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

/// One attempt; when nothing usable came back, why: the status of a 5xx, `timeout`,
/// `connect`, or the transport's error.
pub async fn attempt(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    token: Option<&str>,
    key: Option<&str>,
    body: Option<&Value>,
) -> Result<Answer, String> {
    let mut request = http.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let unusable = |e: reqwest::Error| {
        if e.is_timeout() {
            "timeout".to_owned()
        } else if e.is_connect() {
            "connect".to_owned()
        } else {
            format!("transport: {e}")
        }
    };
    let response = request.send().await.map_err(unusable)?;
    let status = response.status();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned()
    };
    let (content_type, server) = (header("content-type"), header("server"));
    let text = response.text().await.map_err(unusable)?;
    if status.is_server_error() {
        return Err(status.to_string());
    }
    // Every 4xx of the API is problem+json; anything else did not come from our API node
    // (once: the machine's default gateway, when the test network had been torn down).
    assert!(
        !status.is_client_error() || content_type.starts_with("application/problem+json"),
        "{url} answered {status} as {content_type} (server: {server}), not a boxoffice \
         problem: is the test network intact? body: {text}"
    );
    Ok(Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    })
}

/// Retries the attempt until it answers or the patience for a request runs out, counting
/// every unanswered attempt in `shared.unanswered`.
async fn until_answered(
    shared: &Shared,
    method: Method,
    url: &str,
    token: &str,
    key: Option<&str>,
    body: Option<&Value>,
    stop: Instant,
) -> Option<Answer> {
    let patience = shared.patience.request;
    let deadline = Instant::now() + patience;
    loop {
        match attempt(&shared.http, method.clone(), url, Some(token), key, body).await {
            Ok(answer) => return Some(answer),
            Err(why) => {
                *shared
                    .unanswered
                    .lock()
                    .expect("unanswered lock")
                    .entry(why)
                    .or_default() += 1;
            }
        }
        if Instant::now() >= deadline || Instant::now() >= stop + patience {
            return None;
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// A client: `user` with `token`, drawing from `seed`, until `stop`.
pub async fn client(
    shared: Arc<Shared>,
    index: usize,
    user: String,
    token: String,
    seed: u64,
    stop: Instant,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9e37_79b9));
    let mut n = 0u64;
    while Instant::now() < stop && !shared.stopping.load(Ordering::SeqCst) {
        n += 1;
        let api = shared.apis[rng.gen_range(0..shared.apis.len())].clone();
        let seats: Vec<String> = {
            let unsold = shared.unsold.lock().expect("unsold lock");
            let hot: Vec<&String> = unsold.iter().take(N_HOT_SEATS).collect();
            if hot.is_empty() {
                break;
            }
            let n_seats = rng.gen_range(1..=2).min(hot.len());
            let mut picked = BTreeSet::new();
            while picked.len() < n_seats {
                picked.insert(hot[rng.gen_range(0..hot.len())].clone());
            }
            picked.into_iter().collect()
        };
        let key = format!("c{index}-h{n}");
        let hold_id = derived_event_scoped_id(IdKind::Hold, &user, &key, &shared.event_id);
        let body = json!({"event_id": shared.event_id, "seat_ids": seats});
        let invoked = Instant::now();
        let answer = until_answered(
            &shared,
            Method::POST,
            &format!("{api}/v1/holds"),
            &token,
            Some(&key),
            Some(&body),
            stop,
        )
        .await;
        let outcome = answer.map(|a| hold_outcome(&a));
        let held = matches!(outcome, Some(RawOutcome::Held { .. }));
        let answered = matches!(
            outcome,
            Some(RawOutcome::Taken { .. } | RawOutcome::Refused)
        );
        shared.record(RawOp {
            invoked,
            command: RawCommand::Hold {
                hold_id: hold_id.clone(),
                owner: user.clone(),
                seats: seats.clone(),
            },
            response: outcome.map(|o| (Instant::now(), o)),
        });
        if held {
            {
                let mut recent = shared.recent.lock().expect("recent lock");
                recent.push((hold_id.clone(), user.clone()));
                let excess = recent.len().saturating_sub(16);
                recent.drain(..excess);
            }
            let roll: f64 = rng.gen();
            if roll < 0.25 {
                let other = {
                    let recent = shared.recent.lock().expect("recent lock");
                    recent
                        .iter()
                        .rev()
                        .find(|(_, owner)| *owner != user)
                        .map(|(id, _)| id.clone())
                };
                if let Some(other) = other {
                    release(&shared, &api, &user, &token, &other, stop).await;
                }
                release(&shared, &api, &user, &token, &hold_id, stop).await;
            } else if roll < 0.85 {
                release(&shared, &api, &user, &token, &hold_id, stop).await;
            } else {
                let done = checkout(
                    &shared, index, &api, &user, &token, &hold_id, &seats, n, &mut rng, stop,
                )
                .await;
                if !done {
                    release(&shared, &api, &user, &token, &hold_id, stop).await;
                }
            }
        } else if !answered {
            // Unknown: it may hold the seats; give them back if so.
            release(&shared, &api, &user, &token, &hold_id, stop).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..100))).await;
    }
}

fn hold_outcome(answer: &Answer) -> RawOutcome {
    match answer.status.as_u16() {
        201 => RawOutcome::Held {
            created_at: answer.body["created_at"]
                .as_str()
                .unwrap_or_default()
                .into(),
            expires_at: answer.body["expires_at"]
                .as_str()
                .unwrap_or_default()
                .into(),
        },
        409 => match answer.body["unavailable_seats"].as_array() {
            Some(seats) => RawOutcome::Taken {
                unavailable: seats
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect(),
            },
            None => RawOutcome::Refused,
        },
        _ => panic!("a hold answered {}: {}", answer.status, answer.body),
    }
}

fn release_outcome(answer: &Answer) -> RawOutcome {
    let detail = answer.body["detail"].as_str().unwrap_or_default();
    match answer.status.as_u16() {
        204 => RawOutcome::Released,
        404 => RawOutcome::NotFound,
        409 if detail.contains("not yours") => RawOutcome::NotOwner,
        409 => RawOutcome::AlreadyInactive,
        _ => panic!("a release answered {}: {}", answer.status, answer.body),
    }
}

#[allow(clippy::too_many_arguments)]
async fn release(
    shared: &Shared,
    api: &str,
    user: &str,
    token: &str,
    hold_id: &str,
    stop: Instant,
) {
    let invoked = Instant::now();
    let answer = until_answered(
        shared,
        Method::DELETE,
        &format!("{api}/v1/holds/{hold_id}"),
        token,
        None,
        None,
        stop,
    )
    .await;
    shared.record(RawOp {
        invoked,
        command: RawCommand::Release {
            hold_id: hold_id.to_owned(),
            owner: user.to_owned(),
        },
        response: answer.map(|a| (Instant::now(), release_outcome(&a))),
    });
}

/// Books the hold, pays after a random delay, waits for the verdict. `true` when the
/// outcome is known (confirmed or failed).
#[allow(clippy::too_many_arguments)]
async fn checkout(
    shared: &Shared,
    index: usize,
    api: &str,
    user: &str,
    token: &str,
    hold_id: &str,
    seats: &[String],
    n: u64,
    rng: &mut StdRng,
    stop: Instant,
) -> bool {
    let key = format!("c{index}-b{n}");
    let booking_id = derived_event_scoped_id(IdKind::Booking, user, &key, &shared.event_id);
    let invoked = Instant::now();
    let outcome = checkout_outcome(shared, api, token, &key, hold_id, &booking_id, rng, stop).await;
    if matches!(outcome, Some(RawOutcome::Confirmed)) {
        let mut unsold = shared.unsold.lock().expect("unsold lock");
        for seat in seats {
            unsold.remove(seat);
        }
    }
    let known = outcome.is_some();
    shared.record(RawOp {
        invoked,
        command: RawCommand::Confirm {
            hold_id: hold_id.to_owned(),
            booking_id,
        },
        response: outcome.map(|o| (Instant::now(), o)),
    });
    known
}

#[allow(clippy::too_many_arguments)]
async fn checkout_outcome(
    shared: &Shared,
    api: &str,
    token: &str,
    key: &str,
    hold_id: &str,
    booking_id: &str,
    rng: &mut StdRng,
    stop: Instant,
) -> Option<RawOutcome> {
    let booked = until_answered(
        shared,
        Method::POST,
        &format!("{api}/v1/bookings"),
        token,
        Some(key),
        Some(&json!({"hold_id": hold_id})),
        stop,
    )
    .await?;
    if booked.status != StatusCode::CREATED {
        // Kept in the output: a refused booking of an acknowledged hold is what a violation
        // report starts from, and the problem's detail says which check refused it.
        println!(
            "booking of hold {hold_id} via {api} answered {}: {}",
            booked.status, booked.body
        );
    }
    match booked.status.as_u16() {
        201 => {}
        404 => return Some(RawOutcome::Failed(FailReason::NotFound)),
        410 => return Some(RawOutcome::Failed(FailReason::Expired)),
        409 => return Some(RawOutcome::Failed(FailReason::Released)),
        _ => panic!("a booking answered {}: {}", booked.status, booked.body),
    }
    let intent = booked.body["payment"]["intent_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(rng.gen_range(0..=MAX_PAY_DELAY_MS))).await;
    // The sandbox that created the intent is the one in this API node.
    let paid = until_answered(
        shared,
        Method::POST,
        &format!("{api}/sandbox/v1/payment_intents/{intent}/confirm"),
        token,
        None,
        Some(&json!({"card_number": "4242424242424242"})),
        stop,
    )
    .await?;
    assert_eq!(paid.status, StatusCode::OK, "paying answered {}", paid.body);
    let deadline = Instant::now() + shared.patience.verdict;
    while Instant::now() < deadline {
        for api in &shared.apis {
            let url = format!("{api}/v1/bookings/{booking_id}");
            if let Some(answer) = attempt(&shared.http, Method::GET, &url, Some(token), None, None)
                .await
                .ok()
                .filter(|a| a.status == StatusCode::OK)
            {
                match answer.body["status"].as_str() {
                    Some("confirmed") => return Some(RawOutcome::Confirmed),
                    Some("failed") | Some("refunded") => {
                        return Some(RawOutcome::Failed(
                            match answer.body["failure_reason"].as_str() {
                                Some("hold_released") => FailReason::Released,
                                Some("hold_expired") => FailReason::Expired,
                                other => panic!("a booking failed for {other:?}"),
                            },
                        ))
                    }
                    _ => {}
                }
            }
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    None
}
