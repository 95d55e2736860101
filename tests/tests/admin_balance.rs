//! The balancer with real processes: three bootstrapped nodes (four inventory groups) and two
//! started empty, the balancer on (one change a second). While holds flow through an API
//! node, the operator adds nodes 4 and 5 with `boxoffice admin`; the balancer alone moves
//! replicas onto them and spreads the leaderships until replicas are within one of each
//! other and every node leads a group; its decisions show in the cluster view and in the
//! deciding node's `/metrics`. Then node 1 is drained and killed, and every acknowledged hold
//! is still there.

use std::time::{Duration, Instant};

use boxoffice_tests::load::{assert_holds_present, longest_gap, HoldWriter, SEATS_PER_ROW};
use boxoffice_tests::rest::ApiProc;
use boxoffice_tests::{admin_cli, free_addr, start_cluster_with, NodeProc};
use serde_json::Value;

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
    let venue = admin.venue(20, SEATS_PER_ROW, 2_500).await;
    let event = admin.event(&venue, "Balanced", 3_600).await;
    let view = || async { admin.get("/admin/v1/cluster").await.body };
    let start = view().await;
    println!("before: {:?}", loads(&start));
    assert!(
        balanced(&start, 3),
        "bootstrap already spreads leaders: {:?}",
        loads(&start)
    );

    let writer = HoldWriter::start(api.client(), event.clone());
    let token = admin.token.clone().expect("admin token");
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
    let decisions = after["balancer"]
        .as_array()
        .expect("balancer decisions")
        .clone();
    for d in &decisions {
        println!("balancer: {} -> {}", d["decision"], d["outcome"]);
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
    tokio::time::sleep(Duration::from_secs(1)).await;
    let acked = writer.stop().await;
    println!(
        "balanced in {} ms (longest write gap {} ms); drain of node 1 {} ms (longest write gap {} ms); {} holds acknowledged",
        balanced_in.as_millis(),
        longest_gap(&acked, started, started + balanced_in).as_millis(),
        drained_in.as_millis(),
        longest_gap(&acked, drain_started, drain_started + drained_in).as_millis(),
        acked.len()
    );
    assert!(acked.len() >= 50, "holds kept flowing: {}", acked.len());
    assert_holds_present(&api.client(), &acked).await;
    let end = view().await;
    for g in end["groups"].as_array().unwrap() {
        assert!(
            !g["voters"].as_array().unwrap().contains(&Value::from(1)),
            "{g}"
        );
    }
}
