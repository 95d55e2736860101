//! `boxoffice bench failover`: write unavailability when the leader dies.
//!
//! Starts three `boxoffice node` processes (this binary) on loopback with one inventory
//! group, keeps `--concurrency` clients holding seats through the typed client, and
//! `--kills` times SIGKILLs the group's leader, leaves it down for `--down-secs`, restarts it
//! from its data dir and lets the cluster settle; a leader is killed only once every
//! follower is caught up (within [`CAUGHT_UP_ENTRIES`], waiting up to
//! [`CATCH_UP_WAIT_SECS`]; the lag at each kill is printed). For each kill it prints the
//! longest time between two acknowledged holds from the kill until the killed node's restart
//! (the write gap of the failover), when the first hold after the kill was acknowledged, who
//! leads afterwards, and apart from these the longest gap while the restarted node catches
//! up; then the medians and the worst, and how far the group's term moved beside the number of kills
//! (and the meta group's beside how many kills took its leader too).
//! A takeover after the survivors see the leader's process gone (`raft/src/failover.rs`)
//! moves the term by two (every survivor's first campaign only releases its lease on the dead
//! leader; the next one wins); one left to openraft's timers moves it by one. Every term
//! beyond two per kill is an election nobody asked for. Figures are printed, never asserted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use boxoffice_raft::transport::{TcpConnector, Transport};
use boxoffice_raft::types::{Command as RaftCommand, HoldCmd, Outcome};
use boxoffice_raft::{ClusterAuth, ClusterKey, InventoryClient, SystemClock};

use crate::bench::register_bench_event;
use crate::cluster_key::CLUSTER_KEY_ENV;
use crate::storage_node::RaftTimingArgs;

#[derive(clap::Args, Debug)]
pub struct FailoverArgs {
    /// Leaders to SIGKILL, one after another.
    #[arg(long, default_value_t = 10)]
    kills: u32,
    /// Clients holding seats throughout.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds a killed leader stays down before it is restarted: longer than an election,
    /// or the restarted node takes its old term back (openraft 0.9 restores a leader whose
    /// vote was committed) and the gap measures the restart instead of the failover.
    #[arg(long, default_value_t = 10)]
    down_secs: u64,
    /// Seconds between a restart and the next kill (the restarted node catches up).
    #[arg(long, default_value_t = 5)]
    settle_secs: u64,
    /// Keep the nodes' data dirs and logs (the path is printed) instead of deleting them.
    #[arg(long)]
    keep: bool,
    /// The nodes' Raft timing (as `boxoffice node` takes it); default: the node's own.
    #[command(flatten)]
    timing: RaftTimingArgs,
}

/// The inventory group the benchmark's event lives in (the only one).
const GROUP: u64 = 1;
/// The meta group (placement and the node table): no leader of its own is killed on
/// purpose, but the inventory group's leader often leads it too.
const META_GROUP: u64 = 0;
const SEATS: u32 = 200_000;
/// A follower at most this many entries behind the leader counts as caught up.
const CAUGHT_UP_ENTRIES: u64 = 64;
/// Longest wait for the followers to catch up before a kill (then it goes ahead, and the
/// printed lag says so).
const CATCH_UP_WAIT_SECS: u64 = 60;
/// Events registered before the clients start (enough for the default ten kills here).
const PRE_REGISTERED: u64 = 3;

/// One `boxoffice node` child process.
struct NodeProc {
    id: u64,
    addr: String,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl NodeProc {
    fn spawn(&mut self, key: &str) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(std::env::current_exe()?)
            .args(&self.args)
            .env(CLUSTER_KEY_ENV, key)
            // The nodes log what the bench is run with (`warn` unless BOXOFFICE_LOG says).
            .env(
                "BOXOFFICE_LOG",
                std::env::var("BOXOFFICE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting boxoffice node")?;
        self.child = Some(child);
        // A restart never bootstraps again.
        if let Some(i) = self.args.iter().position(|a| a == "--init") {
            self.args.drain(i..i + 2);
        }
        Ok(())
    }

    /// SIGKILL: no shutdown, no flush.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback address nobody listens on right now.
fn free_addr() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.to_string())
}

pub async fn failover(args: FailoverArgs) -> anyhow::Result<()> {
    if args.kills == 0 || args.concurrency == 0 {
        bail!("--kills and --concurrency must be at least 1");
    }
    let tmp = std::env::temp_dir().join(format!("boxoffice-failover-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let result = run(&args, &tmp).await;
    if args.keep {
        println!("nodes' data dirs and logs kept in {}", tmp.display());
    } else {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

async fn run(args: &FailoverArgs, tmp: &Path) -> anyhow::Result<()> {
    let key_text = ClusterKey::generate_text();
    let key = ClusterKey::new(key_text.as_bytes())?;
    let addrs: Vec<String> = (0..3).map(|_| free_addr()).collect::<anyhow::Result<_>>()?;
    let init = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let id = i as u64 + 1;
        let mut node_args: Vec<String> = vec![
            "node".into(),
            "--id".into(),
            id.to_string(),
            "--listen".into(),
            addr.clone(),
            "--shards".into(),
            "1".into(),
            "--data-dir".into(),
            tmp.join(format!("n{id}")).display().to_string(),
            // Only the kills move leadership here.
            "--balance-every-ms".into(),
            "0".into(),
        ];
        node_args.extend(args.timing.to_flags());
        if id == 1 {
            node_args.extend(["--init".into(), init.clone()]);
        }
        let mut node = NodeProc {
            id,
            addr: addr.clone(),
            args: node_args,
            log: tmp.join(format!("n{id}.log")),
            child: None,
        };
        node.spawn(&key_text)?;
        nodes.push(node);
    }
    let transport = Arc::new(Transport::new(
        TcpConnector,
        ClusterAuth::from_key(Some(key), Arc::new(SystemClock)),
    ));
    let client = InventoryClient::new(transport.clone(), addrs.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.refresh_groups().await.is_err() {
        if Instant::now() > deadline {
            bail!("the cluster never formed (logs in {})", tmp.display());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Seat n is seat n mod SEATS of event n / SEATS. PRE_REGISTERED events are on sale from
    // the start (registering one mid-run appends 200,000 seats in 10,000-seat entries, which
    // is load of its own), and a worker that takes the middle seat of one registers the one
    // after the next, so holds never run out of seats.
    for e in 0..PRE_REGISTERED {
        register_bench_event(&client, &event_name(e), SEATS).await?;
    }
    println!(
        "bench failover: 3 node processes, heartbeat {}, elections {}–{}, leader watch {}, {} clients, {} kills of the leader ({} s down, {} s to settle)",
        shown_ms(args.timing.heartbeat_ms),
        shown_ms(args.timing.election_min_ms),
        shown_ms(args.timing.election_max_ms),
        if args.timing.no_leader_watch { "off" } else { "on" },
        args.concurrency,
        args.kills,
        args.down_secs,
        args.settle_secs
    );

    // Clients: every acknowledged hold's completion time, ms after t0.
    let t0 = Instant::now();
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..args.concurrency {
        let (client, acked, stop, next) =
            (client.clone(), acked.clone(), stop.clone(), next.clone());
        workers.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let (event, seat) = (n / u64::from(SEATS), n % u64::from(SEATS));
                let event_id = event_name(event);
                if seat == u64::from(SEATS / 2) {
                    let client = client.clone();
                    tokio::spawn(async move {
                        if let Err(e) = register_bench_event(
                            &client,
                            &event_name(event + PRE_REGISTERED),
                            SEATS,
                        )
                        .await
                        {
                            eprintln!("{e}");
                        }
                    });
                }
                let command = RaftCommand::Hold(HoldCmd {
                    event_id: event_id.clone(),
                    hold_id: format!("h{n}"),
                    owner: format!("u{w}-{n}"),
                    seat_ids: vec![format!("s{seat}")],
                    ttl_ms: None,
                });
                match client
                    .execute_for_event(&event_id, &format!("f{n}"), command)
                    .await
                {
                    Ok(reply) if matches!(reply.outcome, Outcome::Held(_)) => {
                        acked.lock().unwrap().push(t0.elapsed().as_millis() as u64);
                    }
                    _ => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        });
    }

    let first_term = group_term(&transport, &addrs, GROUP).await;
    let first_meta_term = group_term(&transport, &addrs, META_GROUP).await;
    // Kills that took the meta group's leader too (both groups' leaders are often one node).
    let mut meta_leaders_killed = 0;
    let mut kills = Vec::new();
    for k in 0..args.kills {
        tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
        // A leader is killed in a healthy group: every follower caught up (the one restarted
        // last catches up under the full load). Killing it while a follower is thousands of
        // entries behind would measure that follower's catch-up (the new leader needs its
        // vote and its acks), not the failover.
        let waited = Instant::now();
        let lags = loop {
            let lags = follower_lags(&transport, &nodes).await;
            if lags
                .as_ref()
                .is_some_and(|l| l.iter().all(|lag| *lag <= CAUGHT_UP_ENTRIES))
                || waited.elapsed() > Duration::from_secs(CATCH_UP_WAIT_SECS)
            {
                break lags;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let Some(leader) = leader_of(&transport, &nodes, GROUP).await else {
            println!("kill {k}: no leader found; skipped");
            continue;
        };
        println!(
            "kill {k}: followers' lag {} entries after waiting {:.1} s for them",
            lags.map_or("unknown".into(), |l| format!("{l:?}")),
            waited.elapsed().as_secs_f64()
        );
        if leader_of(&transport, &nodes, META_GROUP).await == Some(leader) {
            meta_leaders_killed += 1;
        }
        let at_ms = t0.elapsed().as_millis() as u64;
        nodes[leader].kill();
        tokio::time::sleep(Duration::from_secs(args.down_secs)).await;
        let after = leader_of(&transport, &nodes, GROUP).await;
        let restart_ms = t0.elapsed().as_millis() as u64;
        nodes[leader].spawn(&key_text)?;
        kills.push((
            at_ms,
            restart_ms,
            nodes[leader].id,
            after.map(|i| nodes[i].id),
        ));
    }
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    stop.store(true, Ordering::Relaxed);
    while workers.join_next().await.is_some() {}
    let last_term = group_term(&transport, &addrs, GROUP).await;
    let last_meta_term = group_term(&transport, &addrs, META_GROUP).await;

    let mut acked = std::mem::take(&mut *acked.lock().unwrap());
    acked.sort_unstable();
    let settle_ms = args.settle_secs * 1000;
    let (mut gaps, mut restart_gaps) = (Vec::new(), Vec::new());
    if args.keep {
        // Kill times in the nodes' logs are this plus each kill's offset.
        let t0_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
            .saturating_sub(t0.elapsed().as_millis() as u64);
        println!("t0 = Unix {t0_unix_ms} ms (for reading the kept logs)");
    }
    for (k, (at_ms, restart_ms, killed, next_leader)) in kills.iter().enumerate() {
        // The failover: from the kill until the killed node is restarted. The restart's own
        // disturbance (the node catching up, by snapshot if it must) is reported apart.
        let gap = longest_gap(&acked, *at_ms, *restart_ms);
        let restart_gap = longest_gap(&acked, *restart_ms, restart_ms + settle_ms);
        let first_after = acked
            .iter()
            .find(|t| **t > *at_ms)
            .map_or("none".into(), |t| format!("{} ms", t - at_ms));
        println!(
            "kill {k}: leader n{killed} at {:.1} s; longest write gap {gap} ms (first hold acknowledged after {first_after}); then led by {}; after its restart: longest gap {restart_gap} ms",
            *at_ms as f64 / 1000.0,
            next_leader.map_or("nobody yet".to_owned(), |id| format!("n{id}"))
        );
        gaps.push(gap);
        restart_gaps.push(restart_gap);
    }
    for (what, gaps) in [
        ("after a leader SIGKILL", &mut gaps),
        ("after the killed node's restart", &mut restart_gaps),
    ] {
        gaps.sort_unstable();
        if let (Some(median), Some(worst)) = (gaps.get(gaps.len() / 2), gaps.last()) {
            println!(
                "write gap {what}: median {median} ms, worst {worst} ms, over {} kills",
                gaps.len()
            );
        }
    }
    println!("{} holds acknowledged", acked.len());
    if let (Some(first), Some(last)) = (first_term, last_term) {
        println!(
            "group term {first} → {last}: {} terms for {} kills (a takeover takes 2; more is an election nobody asked for)",
            last - first,
            kills.len()
        );
    }
    if let (Some(first), Some(last)) = (first_meta_term, last_meta_term) {
        println!(
            "meta group term {first} → {last}: {} terms; {meta_leaders_killed} of the kills took its leader (2 each; any other term is an election nobody asked for)",
            last - first,
        );
    }
    Ok(())
}

/// The `e`th event the benchmark holds seats of.
fn event_name(e: u64) -> String {
    format!("failover-bench-{e}")
}

/// A timing flag as printed: its value, or the node's default.
fn shown_ms(value: Option<u64>) -> String {
    value.map_or("default".to_owned(), |ms| format!("{ms} ms"))
}

/// The longest time without an acknowledgement in `[from_ms, to_ms]`: between two
/// consecutive ones with the later inside, and from the last one to `to_ms` (so holds still
/// acknowledged at the kill's millisecond, then nothing, count as the whole wait).
fn longest_gap(sorted_ms: &[u64], from_ms: u64, to_ms: u64) -> u64 {
    let start = sorted_ms.partition_point(|&t| t < from_ms);
    let mut previous = if start > 0 {
        sorted_ms[start - 1]
    } else {
        from_ms
    };
    let mut longest = None;
    for &t in &sorted_ms[start..] {
        if t > to_ms {
            break;
        }
        longest = longest.max(Some(t - previous));
        previous = t;
    }
    longest.unwrap_or(0).max(to_ms.saturating_sub(previous))
}

/// Node `addr`'s own view of the group (`/cluster/status`).
async fn group_status(transport: &Transport, addr: &str, group: u64) -> Option<serde_json::Value> {
    let bytes = transport
        .get(addr, "/cluster/status", Duration::from_millis(500))
        .await
        .ok()?;
    let status: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    status["groups"]
        .as_array()?
        .iter()
        .find(|g| g["group"].as_u64() == Some(group))
        .cloned()
}

/// How far each running follower's log is behind the leader's (entries), once a leader
/// answers.
async fn follower_lags(transport: &Transport, nodes: &[NodeProc]) -> Option<Vec<u64>> {
    let leader = leader_of(transport, nodes, GROUP).await?;
    let last = |g: &serde_json::Value| g["last_log_index"].as_u64().unwrap_or(0);
    let head = last(&group_status(transport, &nodes[leader].addr, GROUP).await?);
    let mut lags = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        if i == leader || node.child.is_none() {
            continue;
        }
        let g = group_status(transport, &node.addr, GROUP).await?;
        lags.push(head.saturating_sub(last(&g)));
    }
    Some(lags)
}

/// The running node that says it leads `group` (highest term), if any.
async fn leader_of(transport: &Transport, nodes: &[NodeProc], group: u64) -> Option<usize> {
    let mut best: Option<(u64, usize)> = None;
    for (i, node) in nodes.iter().enumerate() {
        if node.child.is_none() {
            continue;
        }
        let Some(g) = group_status(transport, &node.addr, group).await else {
            continue;
        };
        if g["state"].as_str() == Some("Leader") {
            let term = g["term"].as_u64().unwrap_or(0);
            if best.is_none_or(|(t, _)| term > t) {
                best = Some((term, i));
            }
        }
    }
    best.map(|(_, i)| i)
}

/// The highest term any node reports for `group`.
async fn group_term(transport: &Transport, addrs: &[String], group: u64) -> Option<u64> {
    let mut best = None;
    for addr in addrs {
        if let Some(term) = group_status(transport, addr, group)
            .await
            .and_then(|g| g["term"].as_u64())
        {
            best = best.max(Some(term));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::longest_gap;

    #[test]
    fn the_gap_spans_the_kill() {
        // Acks every 10 ms, none from 100 to 700: the gap is 600 ms, measured from the last
        // ack before the kill at 150.
        let acks: Vec<u64> = (0..=10)
            .map(|i| i * 10)
            .chain((70..=200).map(|i| i * 10))
            .collect();
        assert_eq!(longest_gap(&acks, 150, 2_000), 600);
        // No ack after the kill: the whole wait from the last one.
        assert_eq!(longest_gap(&acks[..11], 150, 2_000), 1_900);
        // Acks in flight land at the kill's millisecond, then none until the window ends.
        let stalled: Vec<u64> = acks[..11].iter().copied().chain([150, 150]).collect();
        assert_eq!(longest_gap(&stalled, 150, 2_000), 1_850);
        // Writes stop again before the window ends: that tail is a gap too.
        assert_eq!(longest_gap(&acks, 150, 2_900), 900);
    }
}
