//! The balancer with real processes: three bootstrapped nodes (four inventory groups) and two
//! started empty, the balancer on (one change a second). Two loads run through an API node
//! the whole time: a hold writer (one uncontended seat per hold, every acknowledgement timed
//! for the write gaps) and the Jepsen harness's contended clients (`jepsen/workload.rs`:
//! holds, releases and bookings fighting over a few seats, every request recorded). The
//! operator adds nodes 4 and 5 with `boxoffice admin`; the balancer alone moves replicas onto
//! them and spreads the leaderships until replicas are within one of each other and four
//! nodes lead; its decisions show in the cluster view and in the deciding node's
//! `/metrics`. Then the contended event's leadership is moved on request, and node 1 is
//! drained and killed. At the end every acknowledged hold is still there, the contended
//! history and the final seats pass the simulator's checker (`jepsen/verdict.rs`), no
//! request ended without an answer, and every attempt the clients retried was a 503. The
//! longest write gap of each balancer move, the leader move and the drain is printed.

#[path = "jepsen/check.rs"]
mod check;
#[path = "jepsen/verdict.rs"]
mod verdict;
#[path = "jepsen/workload.rs"]
mod workload;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use boxoffice_tests::load::{assert_holds_present, longest_gap, HoldWriter, SEATS_PER_ROW};
use boxoffice_tests::rest::{ApiProc, Rest};
use boxoffice_tests::{admin_cli, eventually, free_addr, start_cluster_with, NodeProc};
use serde_json::Value;

use workload::{Patience, Shared};

/// Contended clients (each a user of its own).
const N_CLIENTS: usize = 4;
/// Rows of the venue both events use ([`SEATS_PER_ROW`] seats each).
const ROWS: u32 = 20;
/// Every hold lives an hour: none expires inside the run (see `jepsen/check.rs`).
const HOLD_TTL_SECONDS: u64 = 3_600;
/// The contended clients wait for answers far longer than the API node retries a write
/// (`REQUEST_DEADLINE_MS`, 8 s) before it answers 503, so every failed attempt they see is
/// the API node's own answer and no request ends unknown while the cluster is whole.
const PATIENCE: Patience = Patience {
    attempt: Duration::from_secs(20),
    request: Duration::from_secs(120),
    verdict: Duration::from_secs(60),
};
/// What the clients may be told while a group is between leaders, and retry.
const RETRIED: &str = "503 Service Unavailable";

/// (group, events placed in it) from the cluster view, once it counts `n_events` in all (the
/// API node learns placements from the catalog feed).
async fn events_per_group(admin: &Rest, n_events: u64) -> Vec<(u64, u64)> {
    let counted = eventually(Duration::from_secs(20), || async {
        let view = admin.get("/admin/v1/cluster").await.body;
        let counts: Vec<(u64, u64)> = view["groups"]
            .as_array()?
            .iter()
            .map(|g| {
                (
                    g["group_id"].as_u64().unwrap(),
                    g["events"].as_u64().unwrap(),
                )
            })
            .collect();
        (counts.iter().map(|c| c.1).sum::<u64>() == n_events).then_some(counts)
    })
    .await;
    counted.unwrap_or_else(|| panic!("the cluster view never counted {n_events} events"))
}

fn unix_ms_now() -> u64 {
    boxoffice_raft::Clock::now_ms(&boxoffice_raft::SystemClock)
}

/// The longest write gap within `from..=to` of both loads: the hold writer's (its event's
/// group) and the contended clients' (theirs), in ms.
fn gaps(
    writer: &[(Instant, String)],
    contended: &[(Instant, ())],
    from: Instant,
    to: Instant,
) -> String {
    format!(
        "longest write gap {} ms (writer) / {} ms (contended)",
        longest_gap(writer, from, to).as_millis(),
        longest_gap(contended, from, to).as_millis()
    )
}

/// (node id, state, replicas, leaders) of every node in a cluster view.
fn loads(view: &Value) -> Vec<(u64, String, u64, u64)> {
    view["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["node_id"].as_u64().unwrap(),
                n["state"].as_str().unwrap().to_owned(),
                n["replicas"].as_u64().unwrap(),
                n["leaders"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Replicas within one of each other and at least `min_leading` nodes leading, over the
/// active nodes; no group changing its members.
fn balanced(view: &Value, min_leading: usize) -> bool {
    let active: Vec<(u64, String, u64, u64)> = loads(view)
        .into_iter()
        .filter(|(_, state, ..)| state == "active")
        .collect();
    let most = active.iter().map(|l| l.2).max().unwrap_or(0);
    let fewest = active.iter().map(|l| l.2).min().unwrap_or(0);
    let leading = active.iter().filter(|l| l.3 > 0).count();
    let settled = view["groups"].as_array().is_some_and(|gs| {
        gs.iter()
            .all(|g| g["leader"].is_u64() && g["learners"].as_array().is_some_and(Vec::is_empty))
    });
    settled && most <= fewest + 1 && leading >= min_leading
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balancer_spreads_replicas_and_leaders_onto_added_nodes_under_load() {
    let dir = tempfile::tempdir().expect("temp dir");
    let balance = ["--balance-every-ms", "1000"];
    let (mut nodes, cluster) = start_cluster_with(dir.path(), 4, &balance);
    let (addr4, addr5) = (free_addr(), free_addr());
    let _empty = [
        NodeProc::start(4, &addr4, &dir.path().join("n4"), &balance),
        NodeProc::start(5, &addr5, &dir.path().join("n5"), &balance),
    ];
    let api = ApiProc::start(&cluster, &dir.path().join("api.log")).await;
    let admin = api.client().as_user("ops", "admin").await;
    let token = admin.token.clone().expect("admin token");
    let venue = admin.venue(ROWS, SEATS_PER_ROW, 2_500).await;
    let event = admin.event(&venue, "Balanced", HOLD_TTL_SECONDS).await;
    let view = || async { admin.get("/admin/v1/cluster").await.body };
    let before_contended = events_per_group(&admin, 1).await;
    let contended_event = admin.event(&venue, "Contended", HOLD_TTL_SECONDS).await;
    let contended_group = events_per_group(&admin, 2)
        .await
        .into_iter()
        .zip(before_contended)
        .find(|(now, then)| now.1 > then.1)
        .map(|(now, _)| now.0)
        .expect("the contended event's group");
    let start = view().await;
    println!("before: {:?}", loads(&start));
    println!("the contended event is in group {contended_group}");
    assert!(
        balanced(&start, 3),
        "bootstrap already spreads leaders: {:?}",
        loads(&start)
    );

    // Both loads start.
    let seats: Vec<String> = (1..=ROWS)
        .flat_map(|r| (1..=SEATS_PER_ROW).map(move |n| format!("s1-{r}-{n}")))
        .collect();
    let shared = Arc::new(Shared::new(
        vec![api.base.clone()],
        contended_event.clone(),
        seats,
        PATIENCE,
    ));
    let t0 = Instant::now();
    let (t0_unix_ms, seed) = (unix_ms_now(), unix_ms_now() % 1_000_000);
    println!("contended clients' seed {seed}");
    let mut clients = Vec::new();
    for i in 0..N_CLIENTS {
        let user = format!("c{i}");
        let user_token = api
            .client()
            .as_user(&user, "user")
            .await
            .token
            .expect("token");
        clients.push(tokio::spawn(workload::client(
            shared.clone(),
            i,
            user,
            user_token,
            seed,
            t0 + Duration::from_secs(600),
        )));
    }
    let writer = HoldWriter::start(api.client(), event.clone());
    // When the contended clients got their answers, in time order.
    let answered = || -> Vec<(Instant, ())> {
        let mut at: Vec<(Instant, ())> = shared
            .ops
            .lock()
            .expect("ops lock")
            .iter()
            .filter_map(|op| op.response.as_ref().map(|r| (r.0, ())))
            .collect();
        at.sort_by_key(|a| a.0);
        at
    };

    for (id, addr) in [(4, &addr4), (5, &addr5)] {
        let (base, token, addr) = (admin.base.clone(), token.clone(), addr.clone());
        let added = tokio::task::spawn_blocking(move || {
            admin_cli(
                &base,
                &token,
                &["nodes", "add", "--id", &id.to_string(), "--addr", &addr],
            )
        })
        .await
        .expect("cli");
        assert!(added.status.success(), "{added:?}");
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(180);
    let mut last = Vec::new();
    let after = loop {
        let now = view().await;
        if loads(&now) != last {
            last = loads(&now);
            println!("[{:>5.1} s] {last:?}", started.elapsed().as_secs_f64());
        }
        let everyone_holds = loads(&now).iter().all(|l| l.2 > 0);
        if everyone_holds && balanced(&now, 4) {
            break now;
        }
        assert!(Instant::now() < deadline, "never balanced: {now}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let balanced_in = started.elapsed();
    let balanced_at = Instant::now();
    let decisions = after["balancer"]
        .as_array()
        .expect("balancer decisions")
        .clone();
    // Each decision's write gap: from when it was decided (the deciding node's clock, on
    // this machine) to the next decision, the last one's to when the view showed balance.
    let acked_so_far = writer.acknowledged();
    let contended_so_far = answered();
    let instant_of = |unix_ms: u64| t0 + Duration::from_millis(unix_ms.saturating_sub(t0_unix_ms));
    for (i, d) in decisions.iter().enumerate() {
        let from = instant_of(d["at_ms"].as_u64().expect("at_ms"));
        let to = decisions
            .get(i + 1)
            .map(|next| instant_of(next["at_ms"].as_u64().expect("at_ms")))
            .unwrap_or(balanced_at);
        println!(
            "balancer: {} -> {}; {}",
            d["decision"],
            d["outcome"],
            gaps(&acked_so_far, &contended_so_far, from, to)
        );
    }
    assert!(
        decisions.iter().any(|d| d["decision"]
            .as_str()
            .is_some_and(|t| t.contains("replica") && t.contains("to node 4"))),
        "decisions show in the cluster view: {decisions:?}"
    );
    let decider = decisions[0]["decided_by"].as_u64().expect("decided_by");
    let decider_addr = match decider {
        4 => addr4.clone(),
        5 => addr5.clone(),
        n => nodes[n as usize - 1].addr.clone(),
    };
    let metrics = reqwest::get(format!("http://{decider_addr}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("boxoffice_balancer_decisions_total")
                && l.contains("kind=\"replica\"")
                && l.contains("outcome=\"done\"")),
        "{metrics}"
    );

    // The operator moves the contended event's leadership to another of its voters.
    let group = after["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["group_id"] == contended_group)
        .expect("the contended group")
        .clone();
    let old_leader = group["leader"].as_u64().expect("a leader");
    let new_leader = group["voters"]
        .as_array()
        .expect("voters")
        .iter()
        .filter_map(Value::as_u64)
        .find(|v| *v != old_leader)
        .expect("another voter");
    let leader_move_started = Instant::now();
    let (base, token2) = (admin.base.clone(), token.clone());
    let moved = tokio::task::spawn_blocking(move || {
        admin_cli(
            &base,
            &token2,
            &[
                "groups",
                "leader",
                "--group",
                &contended_group.to_string(),
                "--node",
                &new_leader.to_string(),
            ],
        )
    })
    .await
    .expect("cli");
    let leader_moved_in = leader_move_started.elapsed();
    let said = String::from_utf8_lossy(&moved.stdout).into_owned();
    assert!(moved.status.success(), "{moved:?}");
    assert!(
        said.contains(&format!("leader {new_leader} (was {old_leader})")),
        "{said}"
    );
    // Writes reach the new leader (the moment after the move, before the balancer may
    // move it back).
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Node 1 drains (with the balancer still on) and is killed.
    let drain_started = Instant::now();
    let (base, token2) = (admin.base.clone(), token.clone());
    let drained = tokio::task::spawn_blocking(move || {
        admin_cli(&base, &token2, &["nodes", "drain", "--id", "1"])
    })
    .await
    .expect("cli");
    assert!(drained.status.success(), "{drained:?}");
    let drained_in = drain_started.elapsed();
    nodes[0].kill();
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Both loads stop; the contended clients finish the request in hand.
    shared.stopping.store(true, Ordering::SeqCst);
    let acked = writer.stop().await;
    for client in clients {
        client.await.expect("a contended client panicked");
    }
    let run_end_unix_ms = unix_ms_now();
    let contended_at = answered();
    println!(
        "balanced in {} ms ({}); leader move of group {contended_group} {old_leader} -> {new_leader} {} ms ({}); drain of node 1 {} ms ({}); after the kill: {}; {} uncontended holds acknowledged",
        balanced_in.as_millis(),
        gaps(&acked, &contended_at, started, balanced_at),
        leader_moved_in.as_millis(),
        gaps(&acked, &contended_at, leader_move_started, leader_move_started + leader_moved_in),
        drained_in.as_millis(),
        gaps(&acked, &contended_at, drain_started, drain_started + drained_in),
        gaps(&acked, &contended_at, killed_at, Instant::now()),
        acked.len()
    );
    assert!(acked.len() >= 50, "holds kept flowing: {}", acked.len());
    assert_holds_present(&api.client(), &acked).await;
    let end = view().await;
    let seen = decisions
        .last()
        .and_then(|d| d["at_ms"].as_u64())
        .unwrap_or(0);
    for d in end["balancer"].as_array().expect("balancer decisions") {
        if d["at_ms"].as_u64().is_some_and(|at| at > seen) {
            println!(
                "balancer, after the balance: {} -> {}",
                d["decision"], d["outcome"]
            );
        }
    }
    for g in end["groups"].as_array().unwrap() {
        assert!(
            !g["voters"].as_array().unwrap().contains(&Value::from(1)),
            "{g}"
        );
    }

    // The contended history, judged.
    let raw = shared.ops.lock().expect("ops lock").clone();
    let judgement = verdict::judge(
        &shared,
        &raw,
        &token,
        t0,
        HOLD_TTL_SECONDS * 1_000,
        run_end_unix_ms,
    )
    .await;
    judgement.print_ops();
    let unanswered = shared.unanswered.lock().expect("unanswered lock").clone();
    println!("unanswered attempts, retried, by why: {unanswered:?}");
    judgement.print_verdict();
    assert!(
        judgement.by_kind.get("hold").is_some_and(|(n, _)| *n >= 50),
        "contended holds kept flowing: {:?}",
        judgement.by_kind
    );
    assert_eq!(
        judgement.n_unknown(),
        0,
        "every request got an answer ({:?})",
        judgement.by_kind
    );
    assert!(
        unanswered.keys().all(|why| why == RETRIED),
        "the clients retried only 503s: {unanswered:?}"
    );
    assert_eq!(
        judgement.violations(),
        0,
        "the contended history has violations (see above)"
    );
}
