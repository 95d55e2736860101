//! End-to-end tests of the replicated inventory with real `boxoffice node` processes on
//! loopback: SIGKILL mid-load, leader failover, a restarted replica catching up by snapshot
//! after the log it missed was purged, and every node SIGKILLed with no checkpoint taken or
//! during one (the state comes back from the log; the replicas end identical).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boxoffice_raft::codec::decode;
use boxoffice_raft::feed::FeedPage;
use boxoffice_raft::host::{NodeStatus, ReplicaDigest};
use boxoffice_raft::transport::Transport;
use boxoffice_raft::types::{
    Command, GroupId, HoldCmd, HoldStatus, Outcome, RegisterEventCmd, SeatSpec, SeatStatus,
};
use boxoffice_raft::wire::{Query, QueryResult, ServeError};
use boxoffice_raft::InventoryClient;
use boxoffice_tests::{cluster_transport, eventually, free_addr, NodeProc};

fn seats(n: u32) -> Vec<SeatSpec> {
    (0..n)
        .map(|i| SeatSpec {
            id: format!("s{i}"),
            section: "Floor".into(),
            row: (i / 20).to_string(),
            number: i % 20,
            price_minor: 9_900,
        })
        .collect()
}

fn hold(event: &str, n: u64) -> Command {
    Command::Hold(HoldCmd {
        event_id: event.into(),
        hold_id: format!("h{n}"),
        owner: format!("user{n}"),
        seat_ids: vec![format!("s{n}")],
        ttl_ms: Some(3_600_000),
    })
}

async fn status(transport: &Transport, addr: &str) -> Option<NodeStatus> {
    let bytes = transport
        .get(addr, "/cluster/status", Duration::from_secs(2))
        .await
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

async fn register(client: &InventoryClient, event: &str, n_seats: u32) -> GroupId {
    let registered = eventually(Duration::from_secs(30), || async {
        let register = RegisterEventCmd {
            event_id: event.into(),
            currency: "USD".into(),
            hold_ttl_ms: 600_000,
            seats: seats(n_seats),
        };
        client
            .register_event_raw(&format!("reg-{event}"), register)
            .await
            .ok()
    })
    .await
    .expect("event registered");
    assert!(
        matches!(registered.1.outcome, Outcome::Registered { .. }),
        "{registered:?}"
    );
    registered.0
}

/// Holds `ids` one by one; returns the ids acknowledged as held.
async fn hold_all(client: &InventoryClient, event: &str, ids: std::ops::Range<u64>) -> Vec<u64> {
    let mut acked = Vec::new();
    for n in ids {
        if let Ok(reply) = client
            .execute_for_event(event, &format!("req-{n}"), hold(event, n))
            .await
        {
            assert!(
                matches!(reply.outcome, Outcome::Held(_)),
                "hold {n}: {:?}",
                reply.outcome
            );
            acked.push(n);
        }
    }
    acked
}

async fn assert_holds_present(client: &InventoryClient, group: GroupId, acked: &[u64]) {
    for n in acked {
        let reply = client
            .read(group, Query::Hold(format!("h{n}")))
            .await
            .expect("read hold");
        match reply.result {
            QueryResult::Hold(Some(h)) => {
                assert_eq!(h.status, HoldStatus::Active, "hold h{n}");
                assert_eq!(h.seat_ids, vec![format!("s{n}")]);
            }
            other => panic!("acknowledged hold h{n} lost: {other:?}"),
        }
    }
}

/// `n_writers` tasks holding seats `s0..s{n_seats}` of `event` one after another as fast as
/// they can, each acknowledged seat number pushed to `acked`; a writer stops at its first
/// error (the node was killed under it) or when the seats run out.
fn spawn_writers(
    client: &InventoryClient,
    group: GroupId,
    event: &'static str,
    n_writers: usize,
    n_seats: u64,
    acked: &Arc<Mutex<Vec<u64>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    (0..n_writers)
        .map(|_| {
            let (client, acked, next) = (client.clone(), acked.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= n_seats {
                        return;
                    }
                    match client
                        .execute(group, &format!("req-{n}"), hold(event, n))
                        .await
                    {
                        Ok(reply) => {
                            assert!(matches!(reply.outcome, Outcome::Held(_)), "{reply:?}");
                            acked.lock().unwrap().push(n);
                        }
                        Err(_) => return,
                    }
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_holds_survive_sigkill_mid_load() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let init = format!("1={addr}");
    let mut node = NodeProc::start(
        1,
        &addr,
        &dir.path().join("n1"),
        &["--init", &init, "--shards", "1"],
    );
    let transport = Arc::new(cluster_transport());
    let client = InventoryClient::new(transport.clone(), vec![addr.clone()])
        .with_deadline(Duration::from_secs(2));
    let group = register(&client, "crash", 20_000).await;

    // 32 writers hold distinct seats as fast as they can; the node is killed under them.
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writers = spawn_writers(&client, group, "crash", 32, 20_000, &acked);
    let load_started = Instant::now();
    eventually(Duration::from_secs(30), || async {
        (acked.lock().unwrap().len() >= 300).then_some(())
    })
    .await
    .expect("holds flowing");
    node.kill();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    println!(
        "acknowledged {} holds in {:?} before SIGKILL",
        acked.len(),
        load_started.elapsed()
    );

    node.restart();
    let client = InventoryClient::new(transport, vec![addr]).with_deadline(Duration::from_secs(20));
    assert_holds_present(&client, group, &acked).await;
    // The seat map agrees: every acknowledged seat is held.
    let reply = client
        .read(group, Query::EventSeats("crash".into()))
        .await
        .unwrap();
    let QueryResult::Seats(Some(seats)) = reply.result else {
        panic!("no seats")
    };
    let status: BTreeMap<String, SeatStatus> =
        seats.into_iter().map(|(s, st)| (s.id, st)).collect();
    for n in &acked {
        assert!(
            matches!(status[&format!("s{n}")], SeatStatus::Held { .. }),
            "seat s{n}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_failover_keeps_every_hold_and_the_old_leader_catches_up_by_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let addrs: Vec<String> = (0..3).map(|_| free_addr()).collect();
    let compaction = [
        "--snapshot-every",
        "50",
        "--keep-entries",
        "5",
        "--shards",
        "2",
    ];
    let mut nodes = start_three(dir.path(), &addrs, &compaction);
    let transport = Arc::new(cluster_transport());
    let client = InventoryClient::new(transport.clone(), addrs.clone())
        .with_deadline(Duration::from_secs(20));
    let group = register(&client, "tour", 2_000).await;
    let mut acked = hold_all(&client, "tour", 0..100).await;
    assert_eq!(acked.len(), 100);

    // Find and SIGKILL the shard's leader.
    let leader = eventually(Duration::from_secs(10), || async {
        for a in &addrs {
            if let Some(s) = status(&transport, a).await {
                if let Some(g) = s
                    .groups
                    .iter()
                    .find(|g| g.group == group && g.state == "Leader")
                {
                    return Some((s.node_id, g.last_log_index.unwrap_or(0)));
                }
            }
        }
        None
    })
    .await
    .expect("a leader");
    let (leader_id, old_leader_last_index) = leader;
    let killed_at = Instant::now();
    nodes[leader_id as usize - 1].kill();

    // A new leader takes writes within a few seconds.
    let first = eventually(Duration::from_secs(20), || async {
        client
            .execute_for_event("tour", "req-100", hold("tour", 100))
            .await
            .ok()
    })
    .await
    .expect("writes resume after the leader is killed");
    assert!(matches!(first.outcome, Outcome::Held(_)));
    acked.push(100);
    println!(
        "new leader accepted a hold {:?} after SIGKILL of node {leader_id}",
        killed_at.elapsed()
    );
    // The survivors did not wait out their lease: they saw the leader's process gone (its
    // connection refused) and took over (raft/src/failover.rs).
    let death_seen = eventually(Duration::from_secs(10), || async {
        for (i, a) in addrs.iter().enumerate() {
            if i as u64 + 1 == leader_id {
                continue;
            }
            let text = reqwest::get(format!("http://{a}/metrics"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let group_label = format!("group=\"{group}\"");
            if text.lines().any(|l| {
                l.starts_with("boxoffice_leader_deaths_seen_total") && l.contains(&group_label)
            }) {
                return Some(a.clone());
            }
        }
        None
    })
    .await;
    assert!(
        death_seen.is_some(),
        "no survivor counted the leader's death in boxoffice_leader_deaths_seen_total"
    );

    // Enough writes that the survivors snapshot and purge past what the old leader has.
    acked.extend(hold_all(&client, "tour", 101..400).await);
    assert_eq!(acked.len(), 400);
    assert_holds_present(&client, group, &acked).await;
    let survivor = addrs
        .iter()
        .enumerate()
        .find(|(i, _)| *i as u64 + 1 != leader_id)
        .map(|(_, a)| a.clone())
        .unwrap();
    let purged = eventually(Duration::from_secs(20), || async {
        let s = status(&transport, &survivor).await?;
        let g = s.groups.into_iter().find(|g| g.group == group)?;
        g.purged_index.filter(|&p| p > old_leader_last_index)
    })
    .await;
    assert!(
        purged.is_some(),
        "survivors purged their log past the old leader's last entry"
    );

    // The old leader restarts from its data dir and catches up (by snapshot: the entries it
    // missed are gone from every log).
    let old = &mut nodes[leader_id as usize - 1];
    old.restart();
    let old_addr = old.addr.clone();
    let caught_up = eventually(Duration::from_secs(30), || async {
        let target = status(&transport, &survivor)
            .await?
            .groups
            .into_iter()
            .find(|g| g.group == group)?
            .applied_index?;
        let mine = status(&transport, &old_addr)
            .await?
            .groups
            .into_iter()
            .find(|g| g.group == group)?;
        (mine.applied_index? >= target && mine.snapshot_index.is_some()).then_some(mine)
    })
    .await;
    let mine = caught_up.expect("old leader caught up");
    assert!(
        mine.snapshot_index.unwrap() > old_leader_last_index,
        "caught up through a snapshot: {mine:?}"
    );

    // Its own state (read through its change feed's reset) has every acknowledged hold.
    let old_client = InventoryClient::new(transport.clone(), vec![old_addr.clone()]);
    let page = old_client
        .feed(group, 0, 0)
        .await
        .expect("feed from the rejoined node");
    let FeedPage::Reset { snapshot, .. } = page else {
        panic!("expected a reset from index 0")
    };
    let (_, seats) = snapshot
        .events
        .into_iter()
        .find(|(e, _)| e == "tour")
        .expect("event on rejoined node");
    let status_of: BTreeMap<String, SeatStatus> =
        seats.into_iter().map(|(s, st)| (s.id, st)).collect();
    for n in &acked {
        assert!(
            matches!(status_of[&format!("s{n}")], SeatStatus::Held { .. }),
            "seat s{n} on the rejoined node"
        );
    }
}

/// Every replica's digest of `group`, once all of them answer the same one.
async fn replicas_agree(transport: &Transport, addrs: &[String], group: GroupId) -> ReplicaDigest {
    let last = Mutex::new(Vec::new());
    let agreed = eventually(Duration::from_secs(30), || async {
        let mut digests = Vec::new();
        for addr in addrs {
            let bytes = transport
                .get(
                    addr,
                    &format!("/inventory/{group}/digest"),
                    Duration::from_secs(2),
                )
                .await
                .ok()?;
            let digest: Result<ReplicaDigest, ServeError> = decode(&bytes).ok()?;
            digests.push(digest.ok()?);
        }
        last.lock().unwrap().clone_from(&digests);
        digests.windows(2).all(|w| w[0] == w[1]).then(|| digests[0])
    })
    .await;
    agreed.unwrap_or_else(|| panic!("replicas never agreed: {:?}", last.lock().unwrap()))
}

/// Nodes 1–3 at `addrs` with data dirs under `dir` and `flags`, node 1 bootstrapping all three.
fn start_three(dir: &std::path::Path, addrs: &[String], flags: &[&str]) -> Vec<NodeProc> {
    let init = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    (0..3)
        .map(|i| {
            let mut extra = flags.to_vec();
            if i == 0 {
                extra.extend(["--init", init.as_str()]);
            }
            NodeProc::start(
                i as u64 + 1,
                &addrs[i],
                &dir.join(format!("n{}", i + 1)),
                &extra,
            )
        })
        .collect()
}

/// Three nodes with `flags`, holds flowing from 16 writers, every node SIGKILLed at once,
/// every node restarted: every acknowledged hold is back and the replicas are identical.
async fn crash_everyone_mid_load(flags: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let addrs: Vec<String> = (0..3).map(|_| free_addr()).collect();
    let mut flags = flags.to_vec();
    flags.extend(["--shards", "1"]);
    let mut nodes = start_three(dir.path(), &addrs, &flags);
    let transport = Arc::new(cluster_transport());
    let client = InventoryClient::new(transport.clone(), addrs.clone())
        .with_deadline(Duration::from_secs(2));
    let group = register(&client, "checkpoints", 5_000).await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writers = spawn_writers(&client, group, "checkpoints", 16, 5_000, &acked);
    eventually(Duration::from_secs(30), || async {
        (acked.lock().unwrap().len() >= 500).then_some(())
    })
    .await
    .expect("holds flowing");
    for node in &mut nodes {
        node.kill();
    }
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    for node in &mut nodes {
        node.restart();
    }
    let client = InventoryClient::new(transport.clone(), addrs.clone())
        .with_deadline(Duration::from_secs(20));
    assert_holds_present(&client, group, &acked).await;
    let digest = replicas_agree(&transport, &addrs, group).await;
    println!(
        "{} acknowledged holds back after SIGKILL of every node; replicas identical at {digest:?}",
        acked.len()
    );
}

/// No checkpoint is ever taken (the count and the timer are out of reach): the whole state
/// after the restart is re-applied from the Raft log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_come_back_from_the_log_when_no_checkpoint_was_taken() {
    crash_everyone_mid_load(&[
        "--checkpoint-every",
        "1000000000",
        "--checkpoint-every-ms",
        "3600000",
    ])
    .await;
}

/// A checkpoint after every entry and every millisecond: the SIGKILL lands during one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_come_back_when_killed_during_a_checkpoint() {
    crash_everyone_mid_load(&["--checkpoint-every", "1", "--checkpoint-every-ms", "1"]).await;
}
