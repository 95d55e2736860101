//! A Jepsen-style run: 5 `boxoffice node` processes and 2 `boxoffice api` processes, each
//! in its own network namespace, clients on the public REST API, a seeded nemesis breaking
//! the network and the processes, then the heal, liveness probes, the final state read
//! back, and the simulator's checker over the real history.
//!
//! Needs root, `ip` and `tc` (iproute2); it fails, never skips, without them.
//! `JEPSEN_SEED` replays a run's fault schedule; `JEPSEN_SECS` sets the load time
//! (default 150 s). Both tests run in `cargo test --workspace` (`.ci/run` installs
//! iproute2): the bounded run must find no violation, `broken_amnesia_is_caught` (the
//! deliberately broken variant) must find some. Runs on one machine take turns (a file
//! lock, see `net.rs`).

#[path = "jepsen/check.rs"]
mod check;
#[path = "jepsen/nemesis.rs"]
mod nemesis;
#[path = "jepsen/net.rs"]
mod net;
#[path = "jepsen/procs.rs"]
mod procs;
#[path = "jepsen/verdict.rs"]
mod verdict;
#[path = "jepsen/workload.rs"]
mod workload;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use boxoffice_tests::eventually;
use boxoffice_tests::rest::Rest;
use reqwest::{Method, StatusCode};
use serde_json::json;

use nemesis::{Cluster, FaultKind, Fired};
use net::Net;
use procs::Proc;
use workload::{attempt, Patience, Shared};

const N_NODES: usize = 5;
const N_CLIENTS: usize = 6;
/// The longest hold lifetime the state machine allows: no hold expires inside a run.
const HOLD_TTL_SECONDS: u64 = 3_600;
/// Rows of the event's venue (one section).
const ROWS: u32 = 30;
/// Seats per row: 25, or more for a longer run, so that the seats last the whole load
/// (about three are sold per second) and the faults never meet an idle cluster.
fn seats_per_row(load: Duration) -> u32 {
    25u32.max((load.as_secs() * 5).div_ceil(u64::from(ROWS)) as u32)
}
/// Seconds of load in the bounded run (the whole test takes about three minutes).
const DEFAULT_LOAD_SECS: u64 = 150;
/// Seconds of load in the broken variant: the wipe comes half way.
const BROKEN_LOAD_SECS: u64 = 60;
/// Under the nemesis a request cut off by a fault soon ends unknown and its client goes on.
const PATIENCE: Patience = Patience {
    attempt: Duration::from_secs(3),
    request: Duration::from_secs(5),
    verdict: Duration::from_secs(15),
};
/// After the heal, every shard must take a write within this.
const LIVENESS_BOUND: Duration = Duration::from_secs(30);

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn unix_ms_now() -> u64 {
    boxoffice_raft::Clock::now_ms(&boxoffice_raft::SystemClock)
}

/// Joins the nemesis thread when dropped, so a panic anywhere still heals and tears down.
struct NemesisThread {
    handle: Option<JoinHandle<(Cluster, Vec<Fired>)>>,
    stop: Arc<AtomicBool>,
}

impl NemesisThread {
    /// Stops the schedule where it is (the load is over), heals, and hands the cluster back.
    fn finish(mut self) -> (Cluster, Vec<Fired>) {
        self.stop.store(true, Ordering::Relaxed);
        let handle = self.handle.take().expect("joined once");
        match handle.join() {
            Ok(done) => done,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for NemesisThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// One run at a time: runs share the namespace names.
static ONE_RUN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// About three minutes of load under the seeded nemesis; no violation. (`JEPSEN_SEED=162796`
/// once reported an acknowledged hold whose booking answered NotFound right after its leader
/// was SIGKILLed and restarted: a restarted leader read from before its own acknowledged
/// writes; fixed by the first-read barrier in `raft/src/host.rs`. Another run of it saw
/// every `POST /v1/holds` answer a bare 404: a second run started beside it had deleted its
/// bridge, so its requests went to the default gateway; runs now take turns, and a guard
/// route keeps the subnet off the default route.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jepsen_bounded_run() {
    let _one = ONE_RUN.lock().await;
    let broken = std::env::var("JEPSEN_BROKEN").ok();
    let violations = run(broken.as_deref(), DEFAULT_LOAD_SECS).await;
    assert_eq!(violations, 0, "the history has violations (see above)");
}

/// The harness can fail: against storage that loses acknowledged writes (a majority of
/// nodes wiped after a partition, see [`amnesia`]) it reports violations. It takes about
/// a minute and a half; run it alone with
/// `cargo test -p boxoffice-tests --test jepsen -- broken_amnesia --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_amnesia_is_caught() {
    let _one = ONE_RUN.lock().await;
    let violations = run(Some("amnesia"), BROKEN_LOAD_SECS).await;
    assert!(violations > 0, "the amnesia variant went unnoticed");
}

/// One run, start to verdict; returns how many violations it found (printing them).
async fn run(broken: Option<&str>, default_load_secs: u64) -> usize {
    if let Err(missing) = Net::available() {
        panic!("the Jepsen run needs root and iproute2 (ip, tc): {missing}");
    }
    let broken = broken.map(str::to_owned);
    let seed = env_u64("JEPSEN_SEED").unwrap_or_else(|| unix_ms_now() % 1_000_000);
    let load = Duration::from_secs(env_u64("JEPSEN_SECS").unwrap_or(default_load_secs));
    println!(
        "jepsen: JEPSEN_SEED={seed} JEPSEN_SECS={} broken={broken:?}",
        load.as_secs()
    );
    let steps = nemesis::schedule(seed, load);
    println!("nemesis schedule ({} faults):", steps.len());
    for (i, step) in steps.iter().enumerate() {
        println!("  {i:>2}. {step}");
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let mut names: Vec<String> = (1..=N_NODES).map(|i| format!("n{i}")).collect();
    names.extend(["a1".to_owned(), "a2".to_owned()]);
    let net = Net::create(&names.iter().map(String::as_str).collect::<Vec<_>>());
    let node_addrs: Vec<String> = (1..=N_NODES)
        .map(|i| nemesis::node_addr(&net.host(&format!("n{i}")).addr))
        .collect();
    let init = node_addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let nodes: Vec<Proc> = (1..=N_NODES as u64)
        .map(|id| {
            let host = net.host(&format!("n{id}"));
            Proc::node(
                id,
                &host.ns,
                &host.addr,
                dir.path(),
                1,
                (id == 1).then_some(init.as_str()),
            )
        })
        .collect();
    let cluster_arg = node_addrs.join(",");
    let apis: Vec<Proc> = ["a1", "a2"]
        .iter()
        .map(|name| {
            let host = net.host(name);
            Proc::api(name, &host.ns, &host.addr, dir.path(), &cluster_arg)
        })
        .collect();
    let cluster = Cluster { nodes, apis, net };
    let bases: Vec<String> = cluster
        .apis
        .iter()
        .map(|a| format!("http://{}", a.addr))
        .collect();
    println!(
        "harness at {}; API nodes {bases:?}; storage nodes {cluster_arg}",
        Net::host_addr()
    );

    for base in &bases {
        let http = reqwest::Client::new();
        let url = format!("{base}/readyz");
        let ready = eventually(Duration::from_secs(120), || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let r = http.get(&url).send().await.ok()?;
                (r.status() == StatusCode::OK).then_some(())
            }
        })
        .await;
        if ready.is_none() {
            for p in cluster.nodes.iter().chain(&cluster.apis) {
                eprintln!("--- {} ---\n{}", p.name, p.log_tail(3000));
            }
            panic!("{base} never became ready");
        }
    }

    let anon = Rest {
        base: bases[0].clone(),
        http: reqwest::Client::new(),
        token: None,
    };
    let admin = anon.as_user("ops", "admin").await;
    let per_row = seats_per_row(load);
    let venue = admin.venue(ROWS, per_row, 2_500).await;
    let event_id = admin.event(&venue, "Jepsen night", HOLD_TTL_SECONDS).await;
    // The liveness probes hold seats of their own event (same shard: there is one), so the
    // workload's sales can never leave them nothing to hold.
    let probe_event = admin.event(&venue, "Jepsen probes", HOLD_TTL_SECONDS).await;
    let on_b = eventually(Duration::from_secs(20), || {
        let http = reqwest::Client::new();
        let url = format!("{}/v1/events/{event_id}", bases[1]);
        async move { (http.get(&url).send().await.ok()?.status() == StatusCode::OK).then_some(()) }
    })
    .await;
    assert!(on_b.is_some(), "the second API node serves the event");
    let seats: Vec<String> = (1..=ROWS)
        .flat_map(|r| (1..=per_row).map(move |n| format!("s1-{r}-{n}")))
        .collect();
    let mut users = Vec::new();
    for i in 0..N_CLIENTS {
        let user = format!("c{i}");
        let token = anon.as_user(&user, "user").await.token.expect("token");
        users.push((user, token));
    }

    // Load and faults.
    let shared = Arc::new(Shared::new(
        bases.clone(),
        event_id.clone(),
        seats,
        PATIENCE,
    ));
    let t0 = Instant::now();
    let stop_at = t0 + load;
    let clients: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, (user, token))| {
            tokio::spawn(workload::client(
                shared.clone(),
                i,
                user.clone(),
                token.clone(),
                seed,
                stop_at,
            ))
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let steps = if broken.as_deref() == Some("amnesia") {
        Vec::new()
    } else {
        steps
    };
    let nemesis_thread = NemesisThread {
        handle: Some({
            let stop = stop.clone();
            std::thread::spawn(move || {
                if broken.as_deref() == Some("amnesia") {
                    amnesia(cluster, t0, load)
                } else {
                    nemesis::run(cluster, steps, t0, stop)
                }
            })
        }),
        stop,
    };
    let mut client_panics = Vec::new();
    for client in clients {
        if let Err(e) = client.await {
            client_panics.push(e.to_string());
        }
    }
    let (cluster, fired) = nemesis_thread.finish();
    assert!(
        client_panics.is_empty(),
        "clients failed: {client_panics:?}"
    );
    let run_end_unix_ms = unix_ms_now();
    println!("load done after {} ms; healed", t0.elapsed().as_millis());

    // Liveness: after the heal, the shard (through each API node) and the meta group take
    // writes within the bound.
    let probe = anon.as_user("probe", "user").await;
    let mut liveness = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    for (i, base) in bases.iter().enumerate() {
        let body = json!({"event_id": probe_event, "seat_ids": [format!("s1-1-{}", i + 1)]});
        let url = format!("{base}/v1/holds");
        let began = Instant::now();
        let key = format!("probe-{i}");
        let Some(held) =
            first_created(&shared.http, &url, probe.token.as_deref(), &key, &body).await
        else {
            problems.push(format!(
                "liveness: the shard took no write through {base} within {LIVENESS_BOUND:?} of the heal"
            ));
            continue;
        };
        liveness.push((format!("shard via {base}"), began.elapsed()));
        let hold_id = held.body["hold_id"].as_str().unwrap_or_default();
        let release = format!("{url}/{hold_id}");
        let token = probe.token.as_deref();
        let _ = attempt(&shared.http, Method::DELETE, &release, token, None, None).await;
    }
    let began = Instant::now();
    let venue_body = json!({"name": "Probe Hall", "city": "Chicago", "country": "US", "address": "2 Main St",
        "sections": [{"name": "Floor", "price": {"amount": 100, "currency": "USD"}, "rows": [{"name": "1", "seats": 1}]}]});
    let url = format!("{}/admin/v1/venues", bases[0]);
    let token = admin.token.as_deref();
    if first_created(&shared.http, &url, token, "probe-venue", &venue_body)
        .await
        .is_some()
    {
        liveness.push(("meta group".to_owned(), began.elapsed()));
    } else {
        problems.push(format!(
            "liveness: the meta group took no write within {LIVENESS_BOUND:?} of the heal"
        ));
    }

    // The final state: every hold of the history read back through each API node, each
    // node's seat map, and the checker over the history.
    let raw = shared.ops.lock().expect("ops lock").clone();
    let ttl_ms = HOLD_TTL_SECONDS * 1_000;
    let admin_token = admin.token.as_deref().unwrap_or("");
    let mut judgement =
        verdict::judge(&shared, &raw, admin_token, t0, ttl_ms, run_end_unix_ms).await;
    judgement.problems.extend(problems);

    // Figures.
    println!("\n=== jepsen run, JEPSEN_SEED={seed} ===");
    judgement.print_ops();
    println!(
        "unanswered attempts, by why: {:?}",
        shared.unanswered.lock().expect("unanswered lock")
    );
    let mut fault_counts: BTreeMap<FaultKind, usize> = BTreeMap::new();
    for f in &fired {
        *fault_counts.entry(f.kind).or_default() += 1;
    }
    let answers: Vec<Instant> = raw
        .iter()
        .filter_map(|op| op.response.as_ref().map(|r| r.0))
        .collect();
    let worst = nemesis::unavailability(&answers, &fired);
    println!("faults: {}", fired.len());
    for f in &fired {
        println!(
            "  t={:>6}..{:>6} ms  {} {}",
            f.start.duration_since(t0).as_millis(),
            f.end.duration_since(t0).as_millis(),
            f.kind,
            f.target
        );
    }
    for (kind, n) in &fault_counts {
        println!(
            "  {:<16} x{n}, longest unavailability {} ms",
            kind.to_string(),
            worst.get(kind).map(|d| d.as_millis()).unwrap_or(0)
        );
    }
    for (what, took) in &liveness {
        println!("after heal: {what} took a write in {} ms", took.as_millis());
    }
    judgement.print_verdict();
    let violations = judgement.violations();
    println!("violations: {violations} (replay: JEPSEN_SEED={seed})");
    drop(cluster);
    violations
}

/// POSTs `body` under `key` until it answers 201 Created, for at most [`LIVENESS_BOUND`].
async fn first_created(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    key: &str,
    body: &serde_json::Value,
) -> Option<workload::Answer> {
    eventually(LIVENESS_BOUND, || async move {
        attempt(http, Method::POST, url, token, Some(key), Some(body))
            .await
            .ok()
            .filter(|a| a.status == StatusCode::CREATED)
    })
    .await
}

/// The deliberately broken variant: storage that loses acknowledged writes. Nodes n4, n5
/// are cut off from n1–n3 for the first half of the load (the majority n1–n3 goes on
/// selling); then n1–n3 are SIGKILLed, their data dirs wiped — a majority of disks
/// forgetting what they acknowledged, which fsync is there to prevent — and restarted
/// empty with the partition healed, so n4/n5's stale logs win the next election.
fn amnesia(mut cluster: Cluster, t0: Instant, load: Duration) -> (Cluster, Vec<Fired>) {
    let half = load / 2;
    let start = Instant::now();
    cluster.net.cut(&["n4", "n5"], &["n1", "n2", "n3"]);
    println!(
        "amnesia t={} ms: n4,n5 | n1,n2,n3",
        start.duration_since(t0).as_millis()
    );
    std::thread::sleep(half.saturating_sub(t0.elapsed()));
    for node in &mut cluster.nodes[..3] {
        node.kill();
        node.wipe();
    }
    cluster.net.heal();
    for node in &mut cluster.nodes[..3] {
        node.start_fresh();
    }
    let end = Instant::now();
    println!(
        "amnesia t={} ms: n1-n3 killed, wiped, restarted empty",
        end.duration_since(t0).as_millis()
    );
    let fired = vec![Fired {
        kind: FaultKind::KillNode,
        target: "n1,n2,n3 wiped".into(),
        start,
        end,
    }];
    (cluster, fired)
}
