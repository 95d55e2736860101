//! The operator's view of the cluster through an API node, `GET /admin/v1/cluster`, against
//! real `boxoffice node` processes: every node with its replicas and leaderships, every
//! group with its voters, leader, applied index, lag and events; a killed node shows as
//! unreachable. Admin role only. A leader moves on request while holds flow, and a bad
//! request moves nothing.

use std::time::{Duration, Instant};

use boxoffice_tests::load::{assert_holds_present, longest_gap, HoldWriter, SEATS_PER_ROW};
use boxoffice_tests::rest::ApiProc;
use boxoffice_tests::{cluster_serving, eventually, start_cluster};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn ids(value: &Value) -> Vec<u64> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_u64().expect("id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_view_shows_nodes_groups_leaders_lag_and_events() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut nodes, cluster) = start_cluster(dir.path(), 2);
    cluster_serving(&nodes).await;
    let api = ApiProc::start(&cluster, &dir.path().join("api.log")).await;
    let admin = api.client().as_user("ops", "admin").await;
    let venue = admin.venue(2, 10, 2_500).await;
    let event = admin.event(&venue, "Watched", 600).await;

    // The event shows in its group once this node's seat feed has it.
    let view = eventually(Duration::from_secs(20), || {
        let admin = admin.clone();
        async move {
            let answer = admin.get("/admin/v1/cluster").await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
            let groups = answer.body["groups"].as_array()?.clone();
            let placed: u64 = groups
                .iter()
                .map(|g| g["events"].as_u64().unwrap_or(0))
                .sum();
            let led = groups.iter().all(|g| g["leader"].is_u64());
            (placed == 1 && led).then_some(answer.body)
        }
    })
    .await
    .unwrap_or_else(|| panic!("event {event} never showed in the cluster view"));

    let groups = view["groups"].as_array().expect("groups");
    assert_eq!(
        groups
            .iter()
            .map(|g| g["group_id"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![0, 1, 2],
        "the meta group and two inventory groups"
    );
    for g in groups {
        assert_eq!(ids(&g["voters"]), vec![1, 2, 3], "{g}");
        assert!(ids(&g["learners"]).is_empty());
        assert!(g["applied_index"].as_u64().unwrap() >= 1, "{g}");
        assert!(g["term"].as_u64().unwrap() >= 1, "{g}");
        let lag = g["lag"].as_object().expect("lag");
        assert_eq!(lag.len(), 3, "every replica answered: {g}");
        let leader = g["leader"].as_u64().unwrap().to_string();
        assert_eq!(lag[&leader], 0, "the leader is not behind itself: {g}");
    }
    assert_eq!(groups[0]["events"], 0, "events live in inventory groups");
    let nodes_view = view["nodes"].as_array().expect("nodes");
    assert_eq!(nodes_view.len(), 3);
    let mut n_leaders = 0;
    for (i, n) in nodes_view.iter().enumerate() {
        assert_eq!(n["node_id"], i as u64 + 1);
        assert_eq!(n["addr"], nodes[i].addr.as_str());
        assert_eq!(n["state"], "active");
        assert_eq!(n["reachable"], true);
        assert_eq!(n["replicas"], 3, "{n}");
        n_leaders += n["leaders"].as_u64().unwrap();
        assert_eq!(
            n["leaders"], 1,
            "bootstrap spread the three groups' leaders: {n}"
        );
    }
    assert_eq!(n_leaders, 3, "one leader per group");

    // A killed node is still a member, now unreachable, and drops out of the lag figures.
    nodes[2].kill();
    let after = eventually(Duration::from_secs(30), || {
        let admin = admin.clone();
        async move {
            let body = admin.get("/admin/v1/cluster").await.body;
            let groups = body["groups"].as_array()?;
            let settled = groups
                .iter()
                .all(|g| g["leader"].as_u64().is_some_and(|l| l != 3));
            settled.then_some(body)
        }
    })
    .await
    .expect("every group led by a live node");
    let third = &after["nodes"][2];
    assert_eq!(
        (third["node_id"].as_u64(), third["reachable"].as_bool()),
        (Some(3), Some(false))
    );
    assert_eq!(third["replicas"], 3, "still a voter of every group");
    assert_eq!(third["leaders"], 0);
    for g in after["groups"].as_array().unwrap() {
        assert!(
            g["lag"].get("3").is_none(),
            "no figure for a node that did not answer: {g}"
        );
    }

    // Admins only.
    api.client()
        .get("/admin/v1/cluster")
        .await
        .assert_problem(401, "unauthorized");
    let user = api.client().as_user("alice", "user").await;
    user.get("/admin/v1/cluster")
        .await
        .assert_problem(403, "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_moves_on_request_under_load_and_bad_requests_change_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (nodes, cluster) = start_cluster(dir.path(), 1);
    cluster_serving(&nodes).await;
    let api = ApiProc::start(&cluster, &dir.path().join("api.log")).await;
    let admin = api.client().as_user("ops", "admin").await;
    let venue = admin.venue(20, SEATS_PER_ROW, 2_500).await;
    let event = admin.event(&venue, "Moving", 3_600).await;
    let leader_of_1 = |body: &Value| body["groups"][1]["leader"].as_u64();
    let before = admin.get("/admin/v1/cluster").await.body;
    let old = leader_of_1(&before).expect("group 1 has a leader");
    let target = if old == 3 { 1 } else { old + 1 };

    // Bad requests: precise problems, and the leader stays where it is.
    let path = "/admin/v1/groups/1/leader";
    admin
        .post_keyed(path, "k1", json!({"node_id": 9}))
        .await
        .assert_problem(422, "unprocessable");
    admin
        .post_keyed("/admin/v1/groups/7/leader", "k2", json!({"node_id": 1}))
        .await
        .assert_problem(404, "not-found");
    admin
        .post_keyed(path, "k3", json!({"node": 1}))
        .await
        .assert_problem(400, "invalid-request");
    admin
        .post_keyed("/admin/v1/groups/one/leader", "k4", json!({"node_id": 1}))
        .await
        .assert_problem(400, "invalid-request");
    api.client()
        .as_user("alice", "user")
        .await
        .post_keyed(path, "k5", json!({"node_id": target}))
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(
        leader_of_1(&admin.get("/admin/v1/cluster").await.body),
        Some(old)
    );

    // Holds flow while the leader moves; every acknowledgement is timed.
    let writer = HoldWriter::start(api.client(), event.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let moved = admin
        .post_keyed(path, "move", json!({"node_id": target}))
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.text);
    assert_eq!(moved.body["leader"], target);
    assert_eq!(moved.body["previous_leader"], old);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let acked = writer.stop().await;
    let gap = longest_gap(&acked, started, Instant::now());
    println!(
        "leader move {old} -> {target}: took {} ms; {} holds acknowledged; longest write gap {} ms",
        moved.body["took_ms"],
        acked.len(),
        gap.as_millis()
    );
    assert!(acked.len() >= 10, "holds kept flowing: {}", acked.len());
    let after = admin.get("/admin/v1/cluster").await.body;
    assert_eq!(leader_of_1(&after), Some(target), "{after}");

    // Every acknowledged hold is there.
    assert_holds_present(&api.client(), &acked).await;

    // Moving to the node that already leads is a no-op that says so.
    let again = admin
        .post_keyed(path, "again", json!({"node_id": target}))
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(
        (
            again.body["leader"].as_u64(),
            again.body["previous_leader"].as_u64()
        ),
        (Some(target), Some(target))
    );
}
