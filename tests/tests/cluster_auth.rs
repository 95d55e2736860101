//! The storage nodes' internal port is locked with the cluster credential: real `boxoffice
//! node` processes refuse (401) a forged `Confirm` sent without a credential, under the wrong
//! key, or with a stale timestamp, and a membership change sent without one — and nothing
//! changes; the same `Confirm` correctly signed sells the seats. A node or API node given no
//! key refuses to start.

use std::process::Command as Process;
use std::sync::Arc;
use std::time::Duration;

use boxoffice_raft::codec::encode;
use boxoffice_raft::transport::{TcpConnector, Transport, TransportError};
use boxoffice_raft::types::{
    BookingStatus, Command, ConfirmCmd, CreateBookingCmd, GroupId, HoldCmd, Request,
};
use boxoffice_raft::{ClusterAuth, ClusterKey, InventoryClient, ManualClock, SystemClock};
use boxoffice_tests::{
    binary, cluster_get_json, cluster_transport, free_addr, register_event, start_cluster,
    TEST_CLUSTER_KEY,
};
use reqwest::StatusCode;
use serde_json::Value;

const EVENT: &str = "locked";

fn confirm() -> Vec<Request> {
    vec![Request {
        request_id: Some("forged-confirm".into()),
        command: Command::Confirm(ConfirmCmd {
            booking_id: "b1".into(),
            payment_event_id: "evt_forged".into(),
        }),
    }]
}

/// A booking waiting for its payment: event, hold, booking through a signed client.
async fn pending_booking(client: &InventoryClient) -> GroupId {
    let group = register_event(client, EVENT, 4).await;
    let hold = HoldCmd {
        event_id: EVENT.into(),
        hold_id: "h1".into(),
        owner: "alice".into(),
        seat_ids: vec!["s1".into()],
        ttl_ms: None,
    };
    client.hold("hold-1", hold).await.expect("hold");
    let booking = CreateBookingCmd {
        booking_id: "b1".into(),
        hold_id: "h1".into(),
        owner: "alice".into(),
        payment_ref: "pi_1".into(),
    };
    client
        .create_booking(EVENT, "book-1", booking)
        .await
        .expect("booking");
    group
}

async fn booking_status(client: &InventoryClient) -> BookingStatus {
    client
        .get_booking(EVENT, "b1")
        .await
        .expect("read booking")
        .expect("booking exists")
        .status
}

fn is_401<T>(result: Result<T, TransportError>) -> bool {
    matches!(result, Err(TransportError::Status { status: 401, .. }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_internal_calls_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (nodes, cluster) = start_cluster(dir.path(), 1);
    let seeds: Vec<String> = cluster.split(',').map(str::to_owned).collect();
    let client = InventoryClient::new(Arc::new(cluster_transport()), seeds.clone())
        .with_deadline(Duration::from_secs(20));
    let group = pending_booking(&client).await;
    let write = format!("/inventory/{group}/write");
    let body = encode(&confirm());
    let members_before = cluster_get_json(&nodes[0].addr, "/cluster/status")
        .await
        .expect("signed status");

    let http = reqwest::Client::new();
    let wrong_key = Transport::new(
        TcpConnector,
        ClusterAuth::new(
            ClusterKey::new(b"not-the-cluster-key-but-just-as-long").expect("key"),
            Arc::new(SystemClock),
        ),
    );
    // A credential made with the right key two minutes ago: a replayed capture.
    let stale = Transport::new(
        TcpConnector,
        ClusterAuth::new(
            ClusterKey::new(TEST_CLUSTER_KEY.as_bytes()).expect("key"),
            Arc::new(ManualClock::new(
                boxoffice_raft::Clock::now_ms(&SystemClock) - 120_000,
            )),
        ),
    );
    let timeout = Duration::from_secs(5);
    for node in &nodes {
        let unsigned = http
            .post(format!("http://{}{write}", node.addr))
            .body(body.clone())
            .send()
            .await
            .expect("node answers");
        assert_eq!(
            unsigned.status(),
            StatusCode::UNAUTHORIZED,
            "unsigned write to n{}",
            node.id
        );
        let forged = http
            .post(format!("http://{}{write}", node.addr))
            .header("boxoffice-cluster-auth", "t=1,v1=00")
            .body(body.clone())
            .send()
            .await
            .expect("node answers");
        assert_eq!(
            forged.status(),
            StatusCode::UNAUTHORIZED,
            "made-up credential to n{}",
            node.id
        );
        assert!(
            is_401(
                wrong_key
                    .post(&node.addr, &write, body.clone(), timeout)
                    .await
            ),
            "wrong key to n{}",
            node.id
        );
        assert!(
            is_401(stale.post(&node.addr, &write, body.clone(), timeout).await),
            "stale credential to n{}",
            node.id
        );
        let members = http
            .post(format!(
                "http://{}/cluster/groups/{group}/members",
                node.addr
            ))
            .json(&serde_json::json!({"add": [9, "127.0.0.1:9"], "voters": [9]}))
            .send()
            .await
            .expect("node answers");
        assert_eq!(
            members.status(),
            StatusCode::UNAUTHORIZED,
            "unsigned membership change"
        );
        let status = http
            .get(format!("http://{}/cluster/status", node.addr))
            .send()
            .await
            .expect("node answers");
        assert_eq!(
            status.status(),
            StatusCode::UNAUTHORIZED,
            "unsigned status read"
        );
    }

    assert_eq!(
        booking_status(&client).await,
        BookingStatus::PendingPayment,
        "no seat was sold"
    );
    let members_after = cluster_get_json(&nodes[0].addr, "/cluster/status")
        .await
        .expect("signed status");
    let voters = |status: &Value| -> Vec<Value> {
        status["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .map(|g| g["voters"].clone())
            .collect()
    };
    assert_eq!(
        voters(&members_before),
        voters(&members_after),
        "no membership changed"
    );

    // The same Confirm, signed with the cluster key, does sell: the refusals above were the
    // credential's doing.
    let settled = client
        .confirm(
            group,
            "signed-confirm",
            ConfirmCmd {
                booking_id: "b1".into(),
                payment_event_id: "evt_real".into(),
            },
        )
        .await;
    assert!(settled.is_ok(), "{settled:?}");
    assert_eq!(booking_status(&client).await, BookingStatus::Confirmed);
}

#[test]
fn node_and_api_refuse_to_start_without_a_cluster_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let addr = free_addr();
    let data_dir = dir.path().join("n1").display().to_string();
    let runs: [(&str, Vec<&str>); 2] = [
        (
            "node",
            vec![
                "node",
                "--id",
                "1",
                "--listen",
                &addr,
                "--data-dir",
                &data_dir,
            ],
        ),
        (
            "api",
            vec!["api", "--cluster", &addr, "--listen", &addr, "--dev-tokens"],
        ),
    ];
    for (what, args) in runs {
        let output = Process::new(binary())
            .args(&args)
            .env_remove("BOXOFFICE_CLUSTER_KEY")
            .env_remove("BOXOFFICE_CLUSTER_KEY_FILE")
            .env_remove("BOXOFFICE_INSECURE")
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{what} started without a key");
        assert!(
            stderr.contains("no cluster key") && stderr.contains("BOXOFFICE_CLUSTER_KEY"),
            "{what} says why: {stderr}"
        );
        let short = Process::new(binary())
            .args(&args)
            .env("BOXOFFICE_CLUSTER_KEY", "too-short")
            .output()
            .expect("runs");
        assert!(!short.status.success(), "{what} started with a 9-byte key");
    }
    assert!(
        !dir.path().join("n1").join("node.json").exists(),
        "a refused node wrote nothing"
    );
}
