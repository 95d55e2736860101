//! Replica moves and node additions through an API node, against real `boxoffice node`
//! processes: three bootstrapped nodes and two started empty. Bad requests are precise
//! problems and change nothing; the empty nodes join the node table; while holds flow,
//! group 1's replica moves off its leader onto node 4 (a snapshot catch-up: the log is
//! compacted every 200 entries), another off a follower onto node 5, and the meta group's
//! off node 3 onto node 4. Every acknowledged hold is there after, the group table and the
//! nodes' own status agree, the sources keep a tombstone, and a source restarted does not
//! bring its old replica back.

use std::time::{Duration, Instant};

use boxoffice_tests::load::{assert_holds_present, longest_gap, HoldWriter, SEATS_PER_ROW};
use boxoffice_tests::rest::{ApiProc, Rest};
use boxoffice_tests::{
    admin_cli, cluster_get_json, eventually, free_addr, start_cluster_with, NodeProc,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn ids(value: &Value) -> Vec<u64> {
    let mut ids: Vec<u64> = value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_u64().expect("id"))
        .collect();
    ids.sort();
    ids
}

fn group(view: &Value, group_id: u64) -> &Value {
    view["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["group_id"] == group_id)
        .unwrap_or_else(|| panic!("no group {group_id} in {view}"))
}

/// The groups a node's own status says it hosts.
async fn hosted(addr: &str) -> Vec<u64> {
    let status = cluster_get_json(addr, "/cluster/status")
        .await
        .expect("node status");
    ids(&Value::Array(
        status["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .map(|g| g["group"].clone())
            .collect(),
    ))
}

/// A new hold on the event (its last seat, which the writer never reaches) succeeds.
async fn assert_takes_a_hold(api: &Rest, event: &str) {
    let late = api.as_user("late", "user").await;
    let hold = late
        .post_keyed(
            "/v1/holds",
            "late",
            json!({"event_id": event, "seat_ids": ["s1-20-500"]}),
        )
        .await;
    assert_eq!(hold.status, StatusCode::CREATED, "{}", hold.text);
}

/// Moves `group_id`'s replica `from` → `to`, checks the answer, and returns when it ended.
async fn move_replica(admin: &Rest, group_id: u64, from: u64, to: u64) -> (Instant, Instant) {
    let started = Instant::now();
    let moved = admin
        .post_keyed(
            &format!("/admin/v1/groups/{group_id}/move"),
            &format!("move-{group_id}-{from}-{to}"),
            json!({"from": from, "to": to}),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.text);
    let voters = ids(&moved.body["voters"]);
    assert!(
        voters.contains(&to) && !voters.contains(&from),
        "{}",
        moved.text
    );
    assert_eq!(moved.body["source_retired"], true, "{}", moved.text);
    (started, Instant::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_move_onto_added_nodes_under_load_and_bad_requests_change_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let compact = ["--snapshot-every", "200", "--keep-entries", "20"];
    let (mut nodes, cluster) = start_cluster_with(dir.path(), 1, &compact);
    let addr4 = free_addr();
    let addr5 = free_addr();
    let mut empty = vec![
        NodeProc::start(4, &addr4, &dir.path().join("n4"), &compact),
        NodeProc::start(5, &addr5, &dir.path().join("n5"), &compact),
    ];
    let api = ApiProc::start(&cluster, &dir.path().join("api.log")).await;
    let admin = api.client().as_user("ops", "admin").await;
    let venue = admin.venue(20, SEATS_PER_ROW, 2_500).await;
    let event = admin.event(&venue, "Moving replicas", 3_600).await;
    let view = || async { admin.get("/admin/v1/cluster").await.body };

    // Node 4 is not in the cluster yet.
    let move_path = "/admin/v1/groups/1/move";
    admin
        .post_keyed(move_path, "early", json!({"from": 1, "to": 4}))
        .await
        .assert_problem(422, "unprocessable");
    // Bad additions.
    let nodes_path = "/admin/v1/nodes";
    let bad_adds = [
        (json!({"node_id": 5, "addr": addr4}), 422, "unprocessable"),
        (
            json!({"node_id": 4, "addr": "nowhere"}),
            422,
            "unprocessable",
        ),
        (json!({"node_id": 0, "addr": addr4}), 422, "unprocessable"),
        (json!({"node_id": 2, "addr": addr4}), 409, "conflict"),
        (json!({"node": 4}), 400, "invalid-request"),
    ];
    for (i, (body, status, slug)) in bad_adds.into_iter().enumerate() {
        admin
            .post_keyed(nodes_path, &format!("bad-add-{i}"), body)
            .await
            .assert_problem(status, slug);
    }
    api.client()
        .as_user("alice", "user")
        .await
        .post_keyed(nodes_path, "user", json!({"node_id": 4, "addr": addr4}))
        .await
        .assert_problem(403, "forbidden");
    // The empty nodes join, and adding one again changes nothing.
    for (id, addr) in [(4, &addr4), (5, &addr5), (4, &addr4)] {
        let added = admin
            .post_keyed(
                nodes_path,
                &format!("add-{id}"),
                json!({"node_id": id, "addr": addr}),
            )
            .await;
        assert_eq!(added.status, StatusCode::ACCEPTED, "{}", added.text);
        assert_eq!(added.body["state"], "active");
    }
    admin
        .post_keyed(nodes_path, "moved-4", json!({"node_id": 4, "addr": addr5}))
        .await
        .assert_problem(409, "conflict");
    let before = view().await;
    let listed: Vec<(u64, String, bool, u64)> = before["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node_id"].as_u64().unwrap(),
                n["state"].as_str().unwrap().to_owned(),
                n["reachable"].as_bool().unwrap(),
                n["replicas"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            (1, "active".into(), true, 2),
            (2, "active".into(), true, 2),
            (3, "active".into(), true, 2),
            (4, "active".into(), true, 0),
            (5, "active".into(), true, 0),
        ]
    );

    // Bad moves: precise problems, and the voters stay.
    let bad_moves = [
        (
            "/admin/v1/groups/7/move",
            json!({"from": 1, "to": 4}),
            404,
            "not-found",
        ),
        (move_path, json!({"from": 1, "to": 9}), 422, "unprocessable"),
        (move_path, json!({"from": 9, "to": 4}), 422, "unprocessable"),
        (move_path, json!({"from": 4, "to": 5}), 422, "unprocessable"),
        (move_path, json!({"from": 1, "to": 1}), 422, "unprocessable"),
        (move_path, json!({"from": 1, "to": 2}), 409, "conflict"),
        (move_path, json!({"from": 1}), 400, "invalid-request"),
        (
            "/admin/v1/groups/x/move",
            json!({"from": 1, "to": 4}),
            400,
            "invalid-request",
        ),
    ];
    for (i, (path, body, status, slug)) in bad_moves.into_iter().enumerate() {
        admin
            .post_keyed(path, &format!("bad-move-{i}"), body)
            .await
            .assert_problem(status, slug);
    }
    assert_eq!(ids(&group(&view().await, 1)["voters"]), vec![1, 2, 3]);

    // Holds flow while replicas move; the first move waits until group 1's leader has
    // purged the start of its log, so node 4 can only catch up from a snapshot.
    let writer = HoldWriter::start(api.client(), event.clone());
    let leader = group(&view().await, 1)["leader"]
        .as_u64()
        .expect("group 1 has a leader");
    let addr_of = |id: u64| match id {
        4 => addr4.clone(),
        5 => addr5.clone(),
        _ => nodes[id as usize - 1].addr.clone(),
    };
    let purged = eventually(Duration::from_secs(60), || {
        let addr = addr_of(leader);
        async move {
            let status = cluster_get_json(&addr, "/cluster/status").await?;
            let g1 = status["groups"]
                .as_array()?
                .iter()
                .find(|g| g["group"] == 1)?
                .clone();
            (g1["purged_index"].as_u64()? > 0).then_some(())
        }
    })
    .await;
    assert!(purged.is_some(), "group 1's leader never compacted its log");
    let mut windows = Vec::new();
    let first = format!("g1 {leader} (the leader) -> 4");
    windows.push((first, move_replica(&admin, 1, leader, 4).await));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let leader_now = group(&view().await, 1)["leader"].as_u64().expect("leader");
    let follower = (1..=3)
        .find(|n| *n != leader && *n != leader_now)
        .expect("a follower among the first three");
    let second = format!("g1 {follower} (a follower) -> 5");
    windows.push((second, move_replica(&admin, 1, follower, 5).await));
    tokio::time::sleep(Duration::from_secs(1)).await;
    windows.push(("g0 3 -> 4".to_owned(), move_replica(&admin, 0, 3, 4).await));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let acked = writer.stop().await;
    for (what, (from, to)) in &windows {
        println!(
            "replica move {what}: took {} ms; longest write gap {} ms",
            (*to - *from).as_millis(),
            longest_gap(&acked, *from, *to).as_millis()
        );
    }
    println!("{} holds acknowledged", acked.len());
    assert!(acked.len() >= 20, "holds kept flowing: {}", acked.len());
    assert_holds_present(&api.client(), &acked).await;

    // The group table, the leaders' membership and the nodes' own status agree; node 4
    // caught up from a snapshot.
    let after = view().await;
    let mut expected: Vec<u64> = (1..=5).filter(|n| *n != leader && *n != follower).collect();
    expected.sort();
    assert_eq!(ids(&group(&after, 1)["voters"]), expected);
    assert_eq!(ids(&group(&after, 0)["voters"]), vec![1, 2, 4]);
    assert!(!hosted(&addr_of(leader)).await.contains(&1));
    assert!(!hosted(&addr_of(follower)).await.contains(&1));
    assert_eq!(hosted(&addr4).await, vec![0, 1]);
    assert_eq!(hosted(&addr5).await, vec![1]);
    assert!(!hosted(&nodes[2].addr).await.contains(&0));
    let metrics = reqwest::get(format!("http://{addr4}/metrics"))
        .await
        .expect("node 4 metrics")
        .text()
        .await
        .expect("metrics text");
    let installed = metrics
        .lines()
        .find(|l| {
            l.starts_with("boxoffice_raft_snapshots_installed_total") && l.contains("group=\"1\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        installed >= 1.0,
        "node 4 installed no snapshot of group 1:\n{metrics}"
    );

    // The source keeps a tombstone; restarted, it does not reopen the moved replica, and the
    // group still takes writes.
    let source = leader as usize - 1;
    assert!(nodes[source]
        .data_dir
        .join("groups")
        .join("1.removed")
        .exists());
    nodes[source].kill();
    nodes[source].restart();
    let reopened = eventually(Duration::from_secs(20), || {
        let addr = nodes[source].addr.clone();
        async move { cluster_get_json(&addr, "/cluster/status").await }
    })
    .await
    .expect("restarted source answers");
    assert!(
        !reopened["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["group"] == 1),
        "{reopened}"
    );
    assert_takes_a_hold(&api.client(), &event).await;
    empty.clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_drains_under_load_and_is_removed_with_its_replicas_tombstoned() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut nodes, cluster) = start_cluster_with(dir.path(), 2, &[]);
    let addr4 = free_addr();
    let _node4 = NodeProc::start(4, &addr4, &dir.path().join("n4"), &[]);
    let api = ApiProc::start(&cluster, &dir.path().join("api.log")).await;
    let admin = api.client().as_user("ops", "admin").await;
    let venue = admin.venue(20, SEATS_PER_ROW, 2_500).await;
    let event = admin.event(&venue, "Draining", 3_600).await;

    // With three nodes and three replicas per group, no node may go.
    admin
        .call(Method::DELETE, "/admin/v1/nodes/1", None, &[])
        .await
        .assert_problem(409, "conflict");
    admin
        .call(Method::DELETE, "/admin/v1/nodes/9", None, &[])
        .await
        .assert_problem(404, "not-found");
    admin
        .call(Method::DELETE, "/admin/v1/nodes/x", None, &[])
        .await
        .assert_problem(400, "invalid-request");
    // The operator's CLI adds node 4 and drains node 1.
    let cli = |args: Vec<String>| {
        let (base, token) = (
            admin.base.clone(),
            admin.token.clone().expect("admin token"),
        );
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            admin_cli(&base, &token, &args)
        })
    };
    let words = |line: &str| line.split(' ').map(str::to_owned).collect::<Vec<_>>();
    let refused = cli(words("groups move --group 1 --from 9 --to 4"))
        .await
        .expect("cli");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("422") && stderr.contains("field from"),
        "{stderr}"
    );
    let added = cli(words(&format!("nodes add --id 4 --addr {addr4}")))
        .await
        .expect("cli");
    assert!(added.status.success(), "{added:?}");
    assert!(String::from_utf8_lossy(&added.stdout).contains("node 4 at"));

    // Node 1 (bootstrap made it the leader of group 0) drains while holds flow.
    let writer = HoldWriter::start(api.client(), event.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let drain = cli(words("nodes drain --id 1"));
    // Once node 1 is draining, a second drain would leave two active nodes.
    let node1_state = || async {
        let body = admin.get("/admin/v1/cluster").await.body;
        body["nodes"]
            .as_array()
            .and_then(|ns| ns.iter().find(|n| n["node_id"] == 1))
            .and_then(|n| n["state"].as_str())
            .map(str::to_owned)
    };
    let not_active = eventually(Duration::from_secs(30), || async {
        node1_state().await.filter(|s| s != "active")
    })
    .await;
    assert!(not_active.is_some(), "node 1 never left the active state");
    admin
        .call(Method::DELETE, "/admin/v1/nodes/2", None, &[])
        .await
        .assert_problem(409, "conflict");
    let mut seen: Vec<(String, u64, u64)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let removed = loop {
        assert!(
            Instant::now() < deadline,
            "node 1 was never removed; seen {seen:?}"
        );
        let body = admin.get("/admin/v1/cluster").await.body;
        let n1 = body["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["node_id"] == 1)
            .expect("node 1 listed")
            .clone();
        let progress = (
            n1["state"].as_str().expect("state").to_owned(),
            n1["replicas"].as_u64().expect("replicas"),
            n1["leaders"].as_u64().expect("leaders"),
        );
        if seen.last() != Some(&progress) {
            println!("node 1 (state, replicas, leaders): {progress:?}");
            seen.push(progress.clone());
        }
        if progress.0 == "removed" {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let drained_in = started.elapsed();
    let drained = drain.await.expect("cli");
    let progress = String::from_utf8_lossy(&drained.stdout).into_owned();
    println!("boxoffice admin nodes drain --id 1:\n{progress}");
    assert!(drained.status.success(), "{drained:?}");
    assert!(progress.contains("node 1: draining"), "{progress}");
    assert!(progress.contains("node 1 is removed"), "{progress}");
    let table = cli(words("cluster")).await.expect("cli");
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("1 ") && l.contains("removed")),
        "{table}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let acked = writer.stop().await;
    println!(
        "drain of node 1 (3 groups): {} ms; {} holds acknowledged; longest write gap {} ms",
        drained_in.as_millis(),
        acked.len(),
        longest_gap(&acked, started, started + drained_in).as_millis()
    );
    assert!(
        seen.iter().any(|(state, ..)| state == "draining"),
        "the drain showed as draining: {seen:?}"
    );
    for g in removed["groups"].as_array().unwrap() {
        let voters = ids(&g["voters"]);
        assert_eq!(voters, vec![2, 3, 4], "{g}");
    }
    assert!(hosted(&nodes[0].addr).await.is_empty());
    for g in 0..=2 {
        assert!(
            nodes[0]
                .data_dir
                .join("groups")
                .join(format!("{g}.removed"))
                .exists(),
            "group {g}'s replica on node 1 is tombstoned"
        );
    }
    // Removed again: nothing to do.
    let again = admin
        .call(Method::DELETE, "/admin/v1/nodes/1", None, &[])
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.text);
    assert_eq!(again.body["state"], "removed");
    // The removed node is killed; the cluster goes on.
    nodes[0].kill();
    assert_holds_present(&api.client(), &acked).await;
    assert_takes_a_hold(&api.client(), &event).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_groups_are_added_and_new_events_fill_them_first() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_nodes, cluster) = start_cluster_with(dir.path(), 1, &[]);
    let api = ApiProc::start(&cluster, &dir.path().join("api.log")).await;
    let admin = api.client().as_user("ops", "admin").await;
    let venue = admin.venue(2, 10, 2_500).await;
    let first = admin.event(&venue, "Before the new groups", 600).await;

    let path = "/admin/v1/groups";
    for (i, (body, status, slug)) in [
        (json!({"count": 0}), 422, "unprocessable"),
        (json!({"count": 17}), 422, "unprocessable"),
        (json!({"n": 1}), 400, "invalid-request"),
    ]
    .into_iter()
    .enumerate()
    {
        admin
            .post_keyed(path, &format!("bad-{i}"), body)
            .await
            .assert_problem(status, slug);
    }
    let created = admin.post_keyed(path, "add", json!({"count": 2})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let groups: Vec<(u64, Vec<u64>)> = created.body["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| (g["group_id"].as_u64().unwrap(), ids(&g["voters"])))
        .collect();
    assert_eq!(groups, vec![(2, vec![1, 2, 3]), (3, vec![1, 2, 3])]);

    // New events go to the groups with the fewest events: the two new ones.
    let second = admin.event(&venue, "After, one", 600).await;
    let third = admin.event(&venue, "After, two", 600).await;
    let placed = eventually(Duration::from_secs(30), || {
        let admin = admin.clone();
        async move {
            let body = admin.get("/admin/v1/cluster").await.body;
            let groups = body["groups"].as_array()?.clone();
            let events: Vec<(u64, u64)> = groups
                .iter()
                .map(|g| {
                    (
                        g["group_id"].as_u64().unwrap(),
                        g["events"].as_u64().unwrap(),
                    )
                })
                .collect();
            let led = groups.iter().all(|g| g["leader"].is_u64());
            (led && events == vec![(0, 0), (1, 1), (2, 1), (3, 1)]).then_some(())
        }
    })
    .await;
    assert!(placed.is_some(), "one event in each inventory group");
    for event in [&first, &second, &third] {
        let fan = api.client().as_user("fan", "user").await;
        let hold = fan.hold(event, &["s1-1-1"]).await;
        assert_eq!(hold.status, StatusCode::CREATED, "{event}: {}", hold.text);
    }
}
