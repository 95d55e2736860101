//! `GET /metrics` on real `boxoffice node` processes: Prometheus text with each replica's
//! role, term, leader changes, log/commit/apply indexes, proposals and requests, applied
//! entries, batch sizes, log fsync latency and snapshots — with the values the cluster's
//! work implies. Served without the cluster credential (a scraper holds no key).

use std::sync::Arc;
use std::time::Duration;

use boxoffice_raft::types::{Command, HoldCmd};
use boxoffice_raft::InventoryClient;
use boxoffice_tests::{cluster_transport, register_event, start_cluster_with};

/// The value of the sample `name{…}` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix('{')?;
        let (label_text, value) = rest.split_once("} ")?;
        labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().ok())?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_nodes_serve_their_raft_metrics() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Snapshots every 50 entries, so the snapshot counter has something to count.
    let (nodes, cluster) = start_cluster_with(
        dir.path(),
        1,
        &["--snapshot-every", "50", "--keep-entries", "10"],
    );
    let seeds: Vec<String> = cluster.split(',').map(str::to_owned).collect();
    let client = InventoryClient::new(Arc::new(cluster_transport()), seeds)
        .with_deadline(Duration::from_secs(20));
    register_event(&client, "metered", 200).await;
    let n_holds = 120u32;
    for n in 0..n_holds {
        let hold = Command::Hold(HoldCmd {
            event_id: "metered".into(),
            hold_id: format!("h{n}"),
            owner: "u".into(),
            seat_ids: vec![format!("s{n}")],
            ttl_ms: None,
        });
        client
            .execute_for_event("metered", &format!("hold-{n}"), hold)
            .await
            .expect("hold");
    }

    let http = reqwest::Client::new();
    let mut texts = Vec::new();
    for node in &nodes {
        let response = http
            .get(format!("http://{}/metrics", node.addr))
            .send()
            .await
            .expect("metrics answers");
        assert_eq!(response.status(), 200, "no credential needed for /metrics");
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        texts.push(response.text().await.expect("text"));
    }
    let group = ("group", "1");
    let leaders: Vec<usize> = (0..3)
        .filter(|&i| {
            sample(
                &texts[i],
                "boxoffice_raft_role",
                &[("node", &(i + 1).to_string()), group, ("role", "leader")],
            ) == Some(1.0)
        })
        .collect();
    assert_eq!(leaders.len(), 1, "one leader of group 1: {leaders:?}");
    let leader = leaders[0];
    let leader_node = (leader + 1).to_string();
    let on_leader = |name: &str| {
        sample(&texts[leader], name, &[("node", &leader_node), group])
            .unwrap_or_else(|| panic!("{name} on the leader:\n{}", texts[leader]))
    };
    // Every hold was one request of a proposal the leader made.
    assert!(on_leader("boxoffice_raft_proposed_requests_total") >= f64::from(n_holds) + 1.0);
    assert!(on_leader("boxoffice_raft_proposals_total") >= 1.0);
    assert!(on_leader("boxoffice_raft_batch_requests_count") >= 1.0);
    let commit = on_leader("boxoffice_raft_commit_index");
    assert!(commit >= f64::from(n_holds), "commit index {commit}");
    for (i, text) in texts.iter().enumerate() {
        let node = (i + 1).to_string();
        let labels = [("node", node.as_str()), group];
        let value = |name: &str| {
            sample(text, name, &labels).unwrap_or_else(|| panic!("{name} on node {node}:\n{text}"))
        };
        assert!(value("boxoffice_raft_term") >= 1.0, "term on node {node}");
        assert_eq!(value("boxoffice_raft_leader_id"), (leader + 1) as f64);
        assert!(value("boxoffice_raft_leader_changes_total") >= 1.0);
        assert!(value("boxoffice_raft_last_log_index") >= f64::from(n_holds));
        // Followers may trail by a heartbeat, never by the whole run.
        assert!(value("boxoffice_raft_applied_index") >= f64::from(n_holds) / 2.0);
        assert!(value("boxoffice_raft_entries_applied_total") >= 1.0);
        assert!(value("boxoffice_raft_log_fsync_seconds_count") >= 1.0);
        assert!(value("boxoffice_raft_log_fsync_seconds_sum") > 0.0);
        assert!(
            sample(
                text,
                "boxoffice_raft_log_fsync_seconds_bucket",
                &[("node", &node), group, ("le", "+Inf")]
            )
            .is_some(),
            "fsync latency is a histogram"
        );
        assert!(
            value("boxoffice_raft_snapshots_built_total") >= 1.0,
            "snapshots on node {node}"
        );
        assert!(sample(text, "boxoffice_raft_snapshots_installed_total", &labels).is_some());
    }
}
