//! `boxoffice bench memory`: bytes per seat per replica, from the process's RSS and from the
//! state machine's own accounting ([`Machine::memory_use`]).
//!
//! Starts three storage nodes in this process (as `bench holds` does: real sockets, real
//! logs and sled state in a temporary directory), registers `--seats` seats in events of
//! `--seats-per-event`, waits until every replica has applied everything and checkpointed,
//! measures, then has every replica snapshot and purge its log and measures again (the Raft
//! log keeps every entry since its last purge in memory, registration commands included),
//! then holds `--held-percent` of the seats (a sale in progress) and measures again. RSS is
//! the whole process (three replicas, their logs and sled caches, the client): the figure per
//! replica is the growth divided by three. Figures are printed, never asserted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use boxoffice_raft::machine::MemoryPart;
use boxoffice_raft::transport::{TcpConnector, Transport};
use boxoffice_raft::types::{Command, HoldCmd, Outcome, MAX_SEATS_PER_EVENT};
use boxoffice_raft::{ClusterAuth, ClusterKey, InventoryClient, RaftSettings, SystemClock};

use crate::bench::register_bench_event;
use crate::storage_node::{start_local_cluster, StorageNode};

/// Replicas of every group in the benchmark's cluster.
const N_REPLICAS: u64 = 3;
/// How long to wait for every replica to apply what was proposed.
const CONVERGE_TIMEOUT_MS: u64 = 300_000;

#[derive(clap::Args, Debug)]
pub struct MemoryArgs {
    /// Seats to register in all.
    #[arg(long, default_value_t = 1_000_000)]
    seats: u64,
    /// Seats per event (at most the inventory's per-event limit).
    #[arg(long, default_value_t = 200_000)]
    seats_per_event: u64,
    /// Inventory groups (events are spread over them by a hash of their id).
    #[arg(long, default_value_t = 4)]
    shards: u64,
    /// Share of the seats to hold after registering, in percent (a sale in progress).
    #[arg(long, default_value_t = 10)]
    held_percent: u64,
    /// Seats per hold.
    #[arg(long, default_value_t = 2)]
    seats_per_hold: u64,
    /// Concurrent clients placing the holds.
    #[arg(long, default_value_t = 64)]
    concurrency: u64,
    /// Keep mimalloc's default purge delay, as `boxoffice node` runs (RSS then also counts
    /// freed memory the allocator has not returned yet), instead of returning it at once.
    #[arg(long)]
    allocator_default: bool,
    /// Bytes of written log entries each replica of a group keeps in memory (the node's
    /// `--log-cache-bytes`; the rest is read back from the log file).
    #[arg(long, default_value_t = RaftSettings::default().log_cache_bytes)]
    log_cache_bytes: u64,
}

pub async fn memory(args: MemoryArgs) -> anyhow::Result<()> {
    if args.seats_per_event == 0 || args.seats_per_event > MAX_SEATS_PER_EVENT as u64 {
        bail!("--seats-per-event must be 1..={MAX_SEATS_PER_EVENT}");
    }
    if args.seats_per_hold == 0 || args.held_percent > 100 {
        bail!("--seats-per-hold must be at least 1 and --held-percent at most 100");
    }
    if !args.allocator_default {
        // What stays resident once free memory goes back at once: mimalloc otherwise returns
        // it only when the thread that freed it next allocates, which idle replicas never do.
        // SAFETY: mi_option_set stores an integer option; no pointer is involved.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
    println!(
        "allocator: mimalloc, freed memory returned {}",
        match args.allocator_default {
            true => "after its default delay, when the freeing thread next allocates",
            false => "at once (purge delay 0; --allocator-default keeps the node's setting)",
        }
    );
    let cluster_key = Some(ClusterKey::new(ClusterKey::generate_text().as_bytes())?);
    let tmp = std::env::temp_dir().join(format!("boxoffice-bench-mem-{}", std::process::id()));
    let (nodes, seeds) = start_local_cluster(
        &tmp,
        cluster_key.clone(),
        args.shards,
        false,
        &RaftSettings {
            log_cache_bytes: args.log_cache_bytes,
            ..RaftSettings::default()
        },
    )
    .await?;
    let auth = ClusterAuth::from_key(cluster_key, Arc::new(SystemClock));
    let client = InventoryClient::new(Arc::new(Transport::new(TcpConnector, auth)), seeds);
    client.refresh_groups().await?;
    converge(&nodes).await?;
    let rss_start = settled_rss()?;

    let n_events = args.seats.div_ceil(args.seats_per_event);
    let mut events = Vec::new();
    let started = Instant::now();
    for e in 0..n_events {
        let n = args
            .seats_per_event
            .min(args.seats - e * args.seats_per_event);
        let event_id = format!("mem-{e}");
        register_bench_event(&client, &event_id, n as u32).await?;
        events.push((event_id, n));
    }
    converge(&nodes).await?;
    println!(
        "bench memory: 3 in-process replicas, {} inventory groups, {} seats in {} events (registered in {:.1} s)",
        args.shards,
        args.seats,
        events.len(),
        started.elapsed().as_secs_f64()
    );
    let rss_registered = settled_rss()?;
    report("registered", args.seats, rss_start, rss_registered, &nodes);
    snapshot_and_purge(&nodes).await?;
    let rss_purged = settled_rss()?;
    report(
        "registered, logs purged",
        args.seats,
        rss_start,
        rss_purged,
        &nodes,
    );

    let n_holds = args.seats * args.held_percent / 100 / args.seats_per_hold;
    let started = Instant::now();
    let n_held = hold_share(&client, &events, n_holds, &args).await?;
    converge(&nodes).await?;
    println!(
        "held: {n_held} holds of {} seats ({} seats, {:.1} % of all) in {:.1} s",
        args.seats_per_hold,
        n_held * args.seats_per_hold,
        (n_held * args.seats_per_hold) as f64 * 100.0 / args.seats as f64,
        started.elapsed().as_secs_f64()
    );
    let rss_held = settled_rss()?;
    report("with holds", args.seats, rss_start, rss_held, &nodes);

    for node in nodes {
        node.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// Holds `n_holds` holds of `--seats-per-hold` consecutive seats, spread over the events,
/// each for a user of its own; answers how many were acknowledged.
async fn hold_share(
    client: &InventoryClient,
    events: &[(String, u64)],
    n_holds: u64,
    args: &MemoryArgs,
) -> anyhow::Result<u64> {
    let next = Arc::new(AtomicU64::new(0));
    let held = Arc::new(AtomicU64::new(0));
    let events: Arc<Vec<(String, u64)>> = Arc::new(events.to_vec());
    let per_hold = args.seats_per_hold;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (client, next, held, events) =
            (client.clone(), next.clone(), held.clone(), events.clone());
        workers.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= n_holds {
                    break;
                }
                let (event_id, n_seats) = &events[(n % events.len() as u64) as usize];
                let first = (n / events.len() as u64) * per_hold;
                if first + per_hold > *n_seats {
                    continue;
                }
                let command = Command::Hold(HoldCmd {
                    event_id: event_id.clone(),
                    hold_id: format!("mem-h{n}"),
                    owner: format!("mem-u{n}"),
                    seat_ids: (first..first + per_hold).map(|s| format!("s{s}")).collect(),
                    ttl_ms: None,
                });
                let reply = client
                    .execute_for_event(event_id, &format!("mem-r{n}"), command)
                    .await;
                if matches!(reply, Ok(r) if matches!(r.outcome, Outcome::Held(_))) {
                    held.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while let Some(result) = workers.join_next().await {
        result.context("hold worker")?;
    }
    Ok(held.load(Ordering::Relaxed))
}

/// Waits until every replica of every group has applied its leader's last log entry, then
/// for a checkpoint (the state's sled records are part of what a replica holds).
async fn converge(nodes: &[StorageNode]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_millis(CONVERGE_TIMEOUT_MS);
    loop {
        let statuses: Vec<_> = nodes.iter().map(|n| n.host().status()).collect();
        let done = statuses[0].groups.iter().all(|g| {
            statuses.iter().all(|s| {
                s.groups.iter().any(|o| {
                    o.group == g.group
                        && o.applied_index.is_some()
                        && o.applied_index == o.last_log_index
                        && o.applied_index == g.last_log_index
                })
            })
        });
        if done {
            break;
        }
        if Instant::now() > deadline {
            bail!("replicas did not converge in {CONVERGE_TIMEOUT_MS} ms");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Checkpoints run every 200 ms while anything is unsaved.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    Ok(())
}

/// Has every replica build a snapshot of what it applied and purge its log up to it, and
/// waits until each has.
async fn snapshot_and_purge(nodes: &[StorageNode]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_millis(CONVERGE_TIMEOUT_MS);
    for node in nodes {
        for g in node.host().group_ids() {
            let group = node.host().group(g).context("group vanished")?;
            group.raft.trigger().snapshot().await?;
            loop {
                let status = node.host().status();
                let s = status.groups.iter().find(|s| s.group == g);
                let Some(s) = s else { break };
                if let Some(snapshot) = s.snapshot_index.filter(|&i| Some(i) >= s.applied_index) {
                    group.raft.trigger().purge_log(snapshot).await?;
                    if s.purged_index == Some(snapshot) {
                        break;
                    }
                }
                if Instant::now() > deadline {
                    bail!("group {g} did not snapshot and purge in {CONVERGE_TIMEOUT_MS} ms");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    Ok(())
}

/// The process's memory at one stage, in bytes.
#[derive(Clone, Copy)]
struct Usage {
    /// RSS as found.
    raw: u64,
    /// RSS once the allocator was asked to return its free memory. Without that, RSS also counts
    /// blocks freed by registration (commands, encodings) that the allocator keeps for
    /// reuse; both figures are printed.
    trimmed: u64,
    /// [`heap_in_use`].
    heap: Option<u64>,
}

fn settled_rss() -> anyhow::Result<Usage> {
    let raw = rss_bytes()?;
    release_free_heap();
    Ok(Usage {
        raw,
        trimmed: rss_bytes()?,
        heap: heap_in_use(),
    })
}

/// VmRSS from /proc/self/status, in bytes.
fn rss_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/self/status")?;
    Ok(kb * 1024)
}

/// `mi_option_purge_delay` in the bundled mimalloc 3's `mi_option_t` (its header's enum; the
/// Rust bindings name only some options). Its default there is 1,000 ms.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Asks the allocator (mimalloc, the binary's global allocator) to return the free memory it
/// holds to the system now, rather than when its threads next allocate.
fn release_free_heap() {
    // SAFETY: mi_collect takes a flag and touches only mimalloc's own heaps.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Memory the allocator has committed (mimalloc's `current_commit`): blocks in use plus the
/// free pages it has not yet returned.
fn heap_in_use() -> Option<u64> {
    let mut counters = [0usize; 8];
    let [elapsed, user, system, rss, peak_rss, commit, peak_commit, faults] = &mut counters;
    // SAFETY: mi_process_info writes one usize through each pointer, all valid locals.
    unsafe {
        libmimalloc_sys::mi_process_info(
            elapsed,
            user,
            system,
            rss,
            peak_rss,
            commit,
            peak_commit,
            faults,
        )
    };
    Some(counters[5] as u64)
}

/// Prints RSS growth per seat per replica and each replica's own accounting.
fn report(stage: &str, n_seats: u64, start: Usage, now: Usage, nodes: &[StorageNode]) {
    let per_seat = |before: u64, after: u64| {
        after.saturating_sub(before) as f64 / (n_seats * N_REPLICAS) as f64
    };
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "[{stage}] RSS {:.1} MiB -> {:.1} MiB ({:.1} B per seat per replica); after the allocator's collect {:.1} MiB -> {:.1} MiB ({:.1} B per seat per replica)",
        mib(start.raw),
        mib(now.raw),
        per_seat(start.raw, now.raw),
        mib(start.trimmed),
        mib(now.trimmed),
        per_seat(start.trimmed, now.trimmed),
    );
    match now.heap {
        // RSS above this is pages the allocator holds but cannot return (fragmentation);
        // this above the machine's accounting is live memory outside the state machine.
        Some(in_use) => println!(
            "[{stage}] committed by the allocator {:.1} MiB ({:.1} B per seat per replica over the start)",
            mib(in_use),
            per_seat(start.heap.unwrap_or(0), in_use),
        ),
        None => println!("[{stage}] committed by the allocator: not known"),
    }
    let mut totals: Vec<u64> = Vec::new();
    let mut first: Vec<MemoryPart> = Vec::new();
    for node in nodes {
        let mut parts: Vec<MemoryPart> = Vec::new();
        for g in node.host().group_ids() {
            let Some(group) = node.host().group(g) else {
                continue;
            };
            for part in group.shared.read().machine.memory_use() {
                match parts.iter_mut().find(|p| p.name == part.name) {
                    Some(p) => p.bytes += part.bytes,
                    None => parts.push(part),
                }
            }
        }
        totals.push(parts.iter().map(|p| p.bytes).sum());
        if first.is_empty() {
            first = parts;
        }
    }
    println!(
        "[{stage}] state machine accounting, node 1 (all groups), per seat: {:.1} B in all; replicas' totals {}",
        totals[0] as f64 / n_seats as f64,
        totals
            .iter()
            .map(|t| format!("{:.1} MiB", mib(*t)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for part in first.iter().filter(|p| p.bytes > 0) {
        println!(
            "    {:<22} {:>10.1} MiB  {:>6.1} B/seat",
            part.name,
            mib(part.bytes),
            part.bytes as f64 / n_seats as f64
        );
    }
}
