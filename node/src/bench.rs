//! `boxoffice bench holds`: holds/s and latency percentiles against a 3-node cluster.
//!
//! Without `--cluster` it starts three storage nodes in this process on loopback (real
//! sockets, real fdatasync'd logs in a temporary directory), bootstraps them, registers one
//! event per shard, and drives concurrent single-seat holds through the typed client. With
//! `--http` it also starts an API node in this process and drives the same holds as
//! `POST /v1/holds` over HTTP (one signed-in user per hold), so the REST tier's share shows
//! beside the typed figure. The HTTP load generator runs on a thread of its own, whose CPU
//! is printed apart: on one machine it takes cores the tier would otherwise have. Figures
//! are printed, never asserted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use boxoffice_api::auth::Role;
use boxoffice_api::ids::{derived_event_scoped_id, new_catalog_id, request_id, IdKind};
use boxoffice_api::{Auth, Clock};
use boxoffice_raft::transport::{TcpConnector, Transport};
use boxoffice_raft::types::{Command, HoldCmd, Outcome, RegisterEventCmd, SeatSpec};
use boxoffice_raft::{ClusterAuth, ClusterKey, InventoryClient, SystemClock};
use reqwest::StatusCode;
use serde_json::json;

use crate::api_node::{bench_seat_id, bench_venue, BenchApi};
use crate::bench_fsync::SyncHistogram;
use crate::cluster_key::KeyArgs;
use crate::http1::Http1Conn;
use crate::storage_node::{start_local_cluster, RaftTimingArgs};

#[derive(clap::Subcommand, Debug)]
pub enum BenchCmd {
    /// Concurrent holds on distinct seats through the Raft leaders.
    Holds(HoldsArgs),
    /// A sold-out rush through the waiting room over real HTTP (see `flash_sale`).
    FlashSale(crate::flash_sale::FlashSaleArgs),
    /// Write unavailability when the leader is SIGKILLed (three node processes).
    Failover(crate::bench_failover::FailoverArgs),
    /// Bytes per seat per replica: RSS and the state machine's accounting (1M seats).
    Memory(crate::bench_memory::MemoryArgs),
}

#[derive(clap::Args, Debug)]
pub struct HoldsArgs {
    /// Benchmark an existing cluster (`host:port,…`) instead of starting one.
    #[arg(long)]
    cluster: Option<String>,
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Inventory groups (one event each) when starting a cluster.
    #[arg(long, default_value_t = 4)]
    shards: u64,
    /// Seats per event (the run stops early if every seat is held).
    #[arg(long, default_value_t = 200_000)]
    seats: u32,
    /// Events to spread the holds over (default: one per inventory group). `--events 1`
    /// is the hot event: every client on one event, so one group's leader does all writes.
    #[arg(long)]
    events: Option<usize>,
    /// Hold through an API node's `POST /v1/holds` (started in this process) instead of
    /// the typed client.
    #[arg(long)]
    http: bool,
    /// Start the groups' leaders spread over the three nodes (group g on node g mod 3, as
    /// `node --init` does) instead of all on node 1.
    #[arg(long)]
    spread_leaders: bool,
    /// With `--http`: pin the load generator's thread to this CPU. Run the process under
    /// `taskset -c <another CPU>` and the tier has that CPU, the load generator this one,
    /// as `wrk` on a machine of its own; compare with the typed client under the same
    /// `taskset`.
    #[arg(long, requires = "http")]
    load_generator_cpu: Option<usize>,
    /// The key of the cluster given by `--cluster` (a started cluster gets a fresh one).
    #[command(flatten)]
    key: KeyArgs,
    /// Raft timing of the started cluster (as `boxoffice node` takes it).
    #[command(flatten)]
    timing: RaftTimingArgs,
}

pub async fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Holds(args) => holds(args).await,
        BenchCmd::FlashSale(args) => crate::flash_sale::flash_sale(args).await,
        BenchCmd::Failover(args) => crate::bench_failover::failover(args).await,
        BenchCmd::Memory(args) => crate::bench_memory::memory(args).await,
    }
}

async fn holds(args: HoldsArgs) -> anyhow::Result<()> {
    let mut nodes = Vec::new();
    let cluster_key = match &args.cluster {
        Some(_) => args.key.resolve()?,
        None => Some(ClusterKey::new(ClusterKey::generate_text().as_bytes())?),
    };
    let tmp = std::env::temp_dir().join(format!("boxoffice-bench-{}", std::process::id()));
    let seeds = match &args.cluster {
        Some(spec) => spec.split(',').map(str::to_owned).collect::<Vec<_>>(),
        None => {
            let (started, seeds) = start_local_cluster(
                &tmp,
                cluster_key.clone(),
                args.shards,
                args.spread_leaders,
                &args.timing.settings()?,
            )
            .await?;
            nodes = started;
            seeds
        }
    };
    let auth = ClusterAuth::from_key(cluster_key.clone(), Arc::new(SystemClock));
    let client = InventoryClient::new(Arc::new(Transport::new(TcpConnector, auth)), seeds.clone());
    let groups = client.refresh_groups().await?;
    let n_groups = groups.iter().filter(|(g, _)| *g != 0).count().max(1);
    let n_events = args.events.unwrap_or(n_groups);
    if n_events == 0 {
        bail!("--events must be at least 1");
    }
    let run_id = std::process::id();
    let (driver, events) = if args.http {
        let api = BenchApi::start(seeds, cluster_key).await?;
        let events = http_events(&api, &args, n_events).await?;
        (Driver::http(api, args.concurrency)?, events)
    } else {
        let events = typed_events(&client, &args, n_events).await?;
        (Driver::Typed(client), events)
    };
    let driver = Arc::new(driver);
    println!(
        "bench holds: {} storage nodes, {n_groups} inventory groups, {} events x {} seats, {} clients, {} s, {}",
        if args.cluster.is_some() {
            "external".to_owned()
        } else {
            "3 in-process".to_owned()
        },
        events.len(),
        args.seats,
        args.concurrency,
        args.duration_secs,
        if args.http {
            "POST /v1/holds through an in-process API node"
        } else {
            "typed client"
        }
    );
    if !nodes.is_empty() {
        // Which node leads each group, as the nodes themselves report it.
        let mut led: Vec<String> = Vec::new();
        for node in &nodes {
            for g in node.host().status().groups {
                if g.state == "Leader" {
                    led.push(format!("g{}@n{}", g.group, node.host().node_id()));
                }
            }
        }
        led.sort();
        println!("leaders: {}", led.join(" "));
    }
    if !nodes.is_empty() {
        let settle = Instant::now();
        if !replicas_caught_up(&nodes, Duration::from_secs(120)).await {
            bail!("the replicas did not apply the registration within 120 s");
        }
        // Followers apply a registration after the leader acknowledged it; the clock starts
        // once every replica has, so the figures are the holds' alone.
        println!(
            "every replica applied the registration {:.1} s after it was acknowledged",
            settle.elapsed().as_secs_f64()
        );
    }
    let load = Load {
        driver: driver.clone(),
        events: Arc::new(events),
        next_seat: Arc::new(AtomicU64::new(0)),
        seats: u64::from(args.seats),
        concurrency: args.concurrency,
        run_id,
    };
    let duration = Duration::from_secs(args.duration_secs);
    // The HTTP load generator gets a thread of its own; the typed client is part of what
    // is measured (the API node runs the same), so its callers stay on the nodes' runtime.
    let run = match driver.as_ref() {
        Driver::Http(_) => {
            load.on_own_thread(duration, args.load_generator_cpu)
                .await?
        }
        Driver::Typed(_) => load.on_runtime(duration).await?,
    };
    let LoadRun {
        started,
        cpu_before,
        syncs_before,
        samples,
        failures,
        load_cpu_secs,
    } = run;
    let by_second = p99_by_second(&samples);
    let mut latencies: Vec<u64> = samples.into_iter().map(|(_, us)| us).collect();
    let elapsed = started.elapsed().as_secs_f64();
    let syncs = SyncHistogram::now()
        .zip(syncs_before)
        .map(|(after, before)| after.since(&before));
    let cpu_secs = process_cpu_secs()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "holds acknowledged: {}  failed: {}  elapsed: {:.2} s\nholds/s: {:.0}\nlatency p50: {:.2} ms  p99: {:.2} ms  p99.9: {:.2} ms  max: {:.2} ms",
        latencies.len(),
        failures,
        elapsed,
        latencies.len() as f64 / elapsed,
        pct(0.50) as f64 / 1000.0,
        pct(0.99) as f64 / 1000.0,
        pct(0.999) as f64 / 1000.0,
        latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
    );
    // Whether the tail is spread over the run or comes in bursts (a stall of the disk, a
    // snapshot, a sweep): the p99 of the holds started in each second.
    println!(
        "latency p99 by second of the run (ms): {}",
        by_second
            .iter()
            .map(|us| format!("{:.1}", *us as f64 / 1000.0))
            .collect::<Vec<_>>()
            .join(" ")
    );
    if let Some(cpu) = cpu_secs {
        // Less sensitive to other load on the machine than holds/s: what one hold costs this
        // process (3 replicas + client), all threads together.
        println!(
            "process CPU: {:.2} s over {:.2} s wall ({:.2} cores); {:.0} µs CPU per hold; {:.0} holds per CPU-second",
            cpu,
            elapsed,
            cpu / elapsed,
            cpu * 1e6 / latencies.len().max(1) as f64,
            latencies.len() as f64 / cpu.max(1e-9)
        );
        if let Some(load) = load_cpu_secs {
            // The load generator's thread: the HTTP client and its side of loopback TCP (on
            // loopback a sender also runs its receiver's TCP input), what the fans' own
            // machines pay in a deployment. The rest is the API node's and the replicas'.
            let held = latencies.len().max(1) as f64;
            let place = args
                .load_generator_cpu
                .map_or(String::new(), |cpu| format!(", on CPU {cpu}"));
            println!(
                "load generator thread{place}: {:.2} s CPU, {:.0} µs per hold; API node and replicas: {:.0} µs per hold",
                load,
                load * 1e6 / held,
                (cpu - load).max(0.0) * 1e6 / held,
            );
        }
    }
    if let Some(syncs) = syncs.filter(|s| s.count() > 0) {
        // The disk under the run: the tail at low concurrency follows its sync latency.
        let ms = |secs: Option<f64>| secs.map_or(f64::NAN, |s| s * 1000.0);
        println!(
            "log fsyncs: {} ({:.0}/s, every replica), mean {:.2} ms, p50 {:.2} ms, p99 {:.2} ms (within the recorder's buckets)",
            syncs.count(),
            syncs.count() as f64 / elapsed,
            ms(syncs.mean_secs()),
            ms(syncs.quantile(0.50)),
            ms(syncs.quantile(0.99)),
        );
    }
    if let Some(node) = nodes.first() {
        let entries: u64 = node
            .host()
            .status()
            .groups
            .iter()
            .filter(|g| g.group != 0)
            .filter_map(|g| g.last_log_index)
            .sum();
        println!(
            "log entries in inventory groups: {entries} ({:.1} holds per entry)",
            latencies.len() as f64 / entries.max(1) as f64
        );
    }
    if let Ok(Driver::Http(driver)) = Arc::try_unwrap(driver) {
        driver.api.stop().await;
    }
    for node in nodes {
        node.shutdown().await;
    }
    if args.cluster.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(())
}

/// The p99 latency (µs) of the samples started in each second of the run, in order.
fn p99_by_second(samples: &[Sample]) -> Vec<u64> {
    let n_seconds = samples
        .iter()
        .map(|(s, _)| *s as usize + 1)
        .max()
        .unwrap_or(0);
    let mut seconds = vec![Vec::new(); n_seconds];
    for (second, us) in samples {
        seconds[*second as usize].push(*us);
    }
    seconds
        .into_iter()
        .map(|mut us| {
            us.sort_unstable();
            us.get((us.len() as f64 * 0.99) as usize)
                .or(us.last())
                .copied()
                .unwrap_or(0)
        })
        .collect()
}

/// Waits until every in-process replica of every group has applied its group's last log
/// entry (as its leader reports it); false after `limit`.
async fn replicas_caught_up(nodes: &[crate::storage_node::StorageNode], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let statuses: Vec<_> = nodes.iter().map(|n| n.host().status().groups).collect();
        let last = |group| {
            statuses
                .iter()
                .flatten()
                .filter(|g| g.group == group && g.state == "Leader")
                .filter_map(|g| g.last_log_index)
                .max()
        };
        let caught_up = statuses.iter().flatten().all(|g| {
            let target = last(g.group);
            target.is_some() && g.applied_index >= target
        });
        if caught_up {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The holds a run drives: `concurrency` workers taking seat numbers in turn.
struct Load {
    driver: Arc<Driver>,
    events: Arc<Vec<String>>,
    next_seat: Arc<AtomicU64>,
    seats: u64,
    concurrency: usize,
    run_id: u32,
}

/// An acknowledged hold: the second of the run it started in, and its latency (µs).
type Sample = (u32, u64);

/// What a run measured, from the moment the clock started.
struct LoadRun {
    started: Instant,
    cpu_before: Option<f64>,
    syncs_before: Option<SyncHistogram>,
    samples: Vec<Sample>,
    failures: u64,
    /// CPU seconds of the load generator's own thread, when it had one.
    load_cpu_secs: Option<f64>,
}

impl LoadRun {
    /// The clock starts: the readings a run's figures are taken against.
    fn start() -> LoadRun {
        LoadRun {
            started: Instant::now(),
            cpu_before: process_cpu_secs(),
            syncs_before: SyncHistogram::now(),
            samples: Vec::new(),
            failures: 0,
            load_cpu_secs: None,
        }
    }
}

impl Load {
    /// Every worker until `deadline`: each acknowledged hold's sample (the second it started
    /// in, its latency in µs) and the failures.
    async fn run(&self, deadline: Instant) -> anyhow::Result<(Vec<Sample>, u64)> {
        let t0 = Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        for w in 0..self.concurrency {
            let (driver, events, next_seat) = (
                self.driver.clone(),
                self.events.clone(),
                self.next_seat.clone(),
            );
            let (seats, run_id) = (self.seats, self.run_id);
            workers.spawn(async move {
                let mut samples = Vec::new();
                let mut failures = 0u64;
                while Instant::now() < deadline {
                    let n = next_seat.fetch_add(1, Ordering::Relaxed);
                    let (event_idx, seat) =
                        ((n % events.len() as u64) as usize, n / events.len() as u64);
                    if seat >= seats {
                        break;
                    }
                    let started = Instant::now();
                    if driver.hold(&events[event_idx], seat, n, w, run_id).await {
                        let second = started.duration_since(t0).as_secs() as u32;
                        samples.push((second, started.elapsed().as_micros() as u64));
                    } else {
                        failures += 1;
                    }
                }
                (samples, failures)
            });
        }
        let mut latencies = Vec::new();
        let mut failures = 0;
        let limit = tokio::time::Instant::from_std(deadline + LATE_ANSWER_LIMIT);
        loop {
            match tokio::time::timeout_at(limit, workers.join_next()).await {
                Ok(Some(result)) => {
                    let (l, f) = result.context("bench worker")?;
                    latencies.extend(l);
                    failures += f;
                }
                Ok(None) => return Ok((latencies, failures)),
                Err(_) => bail!(
                    "{} clients still had no answer {} s after the run ended",
                    workers.len(),
                    LATE_ANSWER_LIMIT.as_secs()
                ),
            }
        }
    }

    /// Runs the load as tasks of this runtime, beside the nodes.
    async fn on_runtime(self, duration: Duration) -> anyhow::Result<LoadRun> {
        let mut run = LoadRun::start();
        (run.samples, run.failures) = self.run(run.started + duration).await?;
        Ok(run)
    }

    /// Runs the load on a thread of its own with a one-thread runtime (pinned to `cpu` if
    /// given), as `wrk` runs beside a server, and measures that thread's CPU: the HTTP
    /// client's work (and its side of loopback TCP) is then told apart from the API node's
    /// and the replicas'.
    async fn on_own_thread(
        self,
        duration: Duration,
        cpu: Option<usize>,
    ) -> anyhow::Result<LoadRun> {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<anyhow::Result<()>>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<Instant>();
        let thread = std::thread::Builder::new()
            .name("bench-load".into())
            .spawn(move || -> anyhow::Result<(Vec<Sample>, u64, Option<f64>)> {
                // Connections belong to the runtime that opened them: opened here. Any
                // failure up to the start goes back through `ready_tx`.
                let ready = (|| {
                    if let Some(cpu) = cpu {
                        pin_this_thread(cpu)?;
                    }
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    if let Driver::Http(http) = self.driver.as_ref() {
                        runtime.block_on(http.open_all())?;
                    }
                    anyhow::Ok(runtime)
                })();
                let runtime = match ready {
                    Ok(runtime) => {
                        let _ = ready_tx.send(Ok(()));
                        runtime
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return Ok((Vec::new(), 0, None));
                    }
                };
                let deadline = go_rx.recv().context("the bench stopped")?;
                let cpu_before = thread_cpu_secs();
                let (latencies, failures) = runtime.block_on(self.run(deadline))?;
                let cpu_used = thread_cpu_secs()
                    .zip(cpu_before)
                    .map(|(after, before)| after - before);
                Ok((latencies, failures, cpu_used))
            })?;
        ready_rx.await.context("the load generator's thread")??;
        let mut run = LoadRun::start();
        go_tx
            .send(run.started + duration)
            .map_err(|_| anyhow::anyhow!("the load generator's thread stopped"))?;
        let (latencies, failures, load_cpu) = tokio::task::spawn_blocking(move || thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the load generator's thread panicked"))??;
        (run.samples, run.failures) = (latencies, failures);
        run.load_cpu_secs = load_cpu;
        Ok(run)
    }
}

/// Pins the calling thread to `cpu` (Linux `sched_setaffinity`).
fn pin_this_thread(cpu: usize) -> anyhow::Result<()> {
    if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
        bail!("--load-generator-cpu {cpu}: no such CPU");
    }
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes inside it (bound checked).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; 0 is the calling thread.
    let done = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if done != 0 {
        bail!(
            "--load-generator-cpu {cpu}: {} (this machine has {} CPUs)",
            std::io::Error::last_os_error(),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
    }
    Ok(())
}

/// CPU seconds the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`); `None` if the
/// clock cannot be read.
fn thread_cpu_secs() -> Option<f64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let read = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (read == 0).then(|| ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9)
}

/// How long after its end a run waits for the answers still due before it fails: a hold
/// unanswered this long means a stuck system, not a slow one.
const LATE_ANSWER_LIMIT: Duration = Duration::from_secs(30);

/// How the holds are sent: the typed client straight to the leaders, or HTTP through an
/// API node.
enum Driver {
    Typed(InventoryClient),
    Http(Box<HttpDriver>),
}

struct HttpDriver {
    api: BenchApi,
    /// One keep-alive connection per worker, as one client each.
    conns: Vec<tokio::sync::Mutex<Http1Conn>>,
    auth: Auth,
}

impl HttpDriver {
    /// Opens every client's connection. Before the clock starts: 256 connects at once
    /// overflow the listener's backlog, and the SYNs sent again a second later are not what
    /// a hold costs.
    async fn open_all(&self) -> anyhow::Result<()> {
        for conn in &self.conns {
            conn.lock()
                .await
                .open()
                .await
                .context("connecting to the API node")?;
        }
        Ok(())
    }
}

impl Driver {
    fn http(api: BenchApi, connections: usize) -> anyhow::Result<Driver> {
        let auth = Auth::new(&api.jwt_secret, Arc::new(SystemClock))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let addr = api.base.trim_start_matches("http://").to_owned();
        let conns = (0..connections)
            .map(|_| tokio::sync::Mutex::new(Http1Conn::new(&addr)))
            .collect();
        Ok(Driver::Http(Box::new(HttpDriver { api, conns, auth })))
    }

    /// Holds seat number `seat` of `event` for a user of its own (a per-user hold limit
    /// applies); whether it was held.
    async fn hold(&self, event: &str, seat: u64, n: u64, w: usize, run_id: u32) -> bool {
        match self {
            Driver::Typed(client) => {
                // The ids the API node derives for the same hold, so the two figures differ
                // only by the REST tier, not by the bytes the cluster stores per hold.
                let owner = format!("u{w}-{n}");
                let key = format!("r{run_id}-{n}");
                let request = request_id("hold", &owner, &key);
                let command = Command::Hold(HoldCmd {
                    event_id: event.to_owned(),
                    hold_id: derived_event_scoped_id(IdKind::Hold, &owner, &key, event),
                    seat_ids: vec![format!("s{seat}")],
                    owner,
                    ttl_ms: None,
                });
                let reply = client.execute_for_event(event, &request, command).await;
                matches!(reply, Ok(reply) if matches!(reply.outcome, Outcome::Held(_)))
            }
            Driver::Http(driver) => {
                let HttpDriver { conns, auth, .. } = driver.as_ref();
                let Ok(token) = auth.issue(&format!("u{w}-{n}"), Role::User) else {
                    return false;
                };
                let seat_id = bench_seat_id(seat);
                let body = HoldBody {
                    event_id: event,
                    seat_ids: [&seat_id],
                };
                let Ok(body) = serde_json::to_vec(&body) else {
                    return false;
                };
                let headers = [
                    ("Authorization", format!("Bearer {}", token.token)),
                    ("Idempotency-Key", format!("r{run_id}-{n}")),
                    ("Content-Type", "application/json".to_owned()),
                ];
                let headers = headers.each_ref().map(|(k, v)| (*k, v.as_str()));
                // No timer per request (it costs the load generator as much as a token):
                // the run as a whole has one (`LATE_ANSWER_LIMIT`).
                let answer = conns[w]
                    .lock()
                    .await
                    .request("POST", "/v1/holds", &headers, &body)
                    .await;
                matches!(answer, Ok(status) if status == StatusCode::CREATED.as_u16())
            }
        }
    }
}

/// A `POST /v1/holds` body of named seats, encoded without building a JSON tree.
#[derive(serde::Serialize)]
struct HoldBody<'a> {
    event_id: &'a str,
    seat_ids: [&'a str; 1],
}

/// `n_events` events registered straight in the inventory (seat ids `s0`, `s1`, …).
async fn typed_events(
    client: &InventoryClient,
    args: &HoldsArgs,
    n_events: usize,
) -> anyhow::Result<Vec<String>> {
    let mut events = Vec::new();
    for _ in 0..n_events {
        // Named like the API names events, and placed as it places them: in the group with
        // the fewest events, so each group has one.
        let event_id = new_catalog_id(IdKind::Event);
        client
            .register_event_least_loaded(
                &format!("bench-reg-{event_id}"),
                bench_event(&event_id, args.seats),
            )
            .await
            .map_err(|e| anyhow::anyhow!("registering {event_id}: {e}"))?;
        events.push(event_id);
    }
    Ok(events)
}

/// Registers `event_id` straight in the inventory with seats `s0` … `s{seats-1}` (the client
/// sends big events in chunks of MAX_SEATS_PER_COMMAND per log entry).
pub(crate) async fn register_bench_event(
    client: &InventoryClient,
    event_id: &str,
    seats: u32,
) -> anyhow::Result<()> {
    client
        .register_event(
            &format!("bench-reg-{event_id}"),
            bench_event(event_id, seats),
        )
        .await
        .map_err(|e| anyhow::anyhow!("registering {event_id}: {e}"))?;
    Ok(())
}

/// The registration of `event_id` with seats `s0` … `s{seats-1}`, fifty to a row.
fn bench_event(event_id: &str, seats: u32) -> RegisterEventCmd {
    let seats = (0..seats)
        .map(|i| SeatSpec {
            id: format!("s{i}"),
            section: "Floor".into(),
            row: (i / 50).to_string(),
            number: i % 50,
            price_minor: 5000,
        })
        .collect();
    RegisterEventCmd {
        event_id: event_id.to_owned(),
        currency: "USD".into(),
        hold_ttl_ms: 600_000,
        seats,
    }
}

/// A venue of `--seats` seats and `n_events` events on sale in it, created through the API
/// node's admin endpoints as an organizer would; answers once every event's view is served.
async fn http_events(
    api: &BenchApi,
    args: &HoldsArgs,
    n_events: usize,
) -> anyhow::Result<Vec<String>> {
    let auth =
        Auth::new(&api.jwt_secret, Arc::new(SystemClock)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let admin = auth
        .issue("bench-admin", Role::Admin)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .token;
    let http = reqwest::Client::new();
    let ready = format!("{}/readyz", api.base);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(http.get(&ready).send().await, Ok(r) if r.status() == StatusCode::OK) {
        if Instant::now() > deadline {
            bail!("the API node never became ready");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let post = |path: &'static str, body: serde_json::Value| {
        let (http, admin, url) = (http.clone(), admin.clone(), format!("{}{path}", api.base));
        async move {
            let answer = http
                .post(&url)
                .bearer_auth(admin)
                .json(&body)
                .send()
                .await?;
            let status = answer.status();
            let body: serde_json::Value = answer.json().await.unwrap_or_default();
            if status != StatusCode::CREATED {
                bail!("POST {path} answered {status}: {body}");
            }
            Ok::<_, anyhow::Error>(body)
        }
    };
    let venue = post(
        "/admin/v1/venues",
        bench_venue("Bench Hall", u64::from(args.seats)),
    )
    .await?;
    let performer = post(
        "/admin/v1/performers",
        json!({"name": "The Benchmarks", "description": "holds per second"}),
    )
    .await?;
    let starts_at = boxoffice_api::clock::rfc3339_from_ms(SystemClock.now_ms() + 30 * 86_400_000);
    let mut events = Vec::new();
    for e in 0..n_events {
        let event = post(
            "/admin/v1/events",
            json!({"name": format!("Bench night {e}"), "description": "holds per second",
                   "category": "concert", "venue_id": venue["venue_id"],
                   "performer_ids": [performer["performer_id"]], "starts_at": starts_at,
                   "on_sale": true, "hold_ttl_seconds": 600}),
        )
        .await?;
        let id = event["event_id"]
            .as_str()
            .context("the event has no id")?
            .to_owned();
        let view = format!("{}/v1/events/{id}", api.base);
        while !matches!(http.get(&view).send().await, Ok(r) if r.status() == StatusCode::OK) {
            if Instant::now() > deadline + Duration::from_secs(60) {
                bail!("event {id} never served");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        events.push(id);
    }
    Ok(events)
}

/// User + system CPU seconds of this process so far (Linux `/proc/self/stat`).
fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_is_taken_per_second_of_the_run() {
        // Second 0: latencies 1..=200 µs; second 1: none; second 2: one slow hold.
        let mut samples: Vec<Sample> = (1..=200).map(|us| (0, us)).collect();
        samples.push((2, 50_000));
        samples.reverse();
        assert_eq!(p99_by_second(&samples), vec![199, 0, 50_000]);
        assert!(p99_by_second(&[]).is_empty());
    }

    #[test]
    fn a_thread_pins_to_a_cpu_it_may_run_on_and_refuses_one_that_does_not_exist() {
        // Run on a thread of its own: pinning the test harness's thread would move it.
        std::thread::spawn(|| {
            let before = thread_cpu_secs();
            // The first CPU this process may run on (a container may not have CPU 0).
            // SAFETY: a zeroed cpu_set_t is the empty set, filled by sched_getaffinity.
            let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            let got = unsafe {
                libc::sched_getaffinity(0, std::mem::size_of_val(&allowed), &mut allowed)
            };
            assert_eq!(got, 0);
            let cpu = (0..1024)
                .find(|&c| unsafe { libc::CPU_ISSET(c, &allowed) })
                .expect("some CPU is allowed");
            pin_this_thread(cpu).expect("an allowed CPU");
            // SAFETY: sched_getcpu takes no arguments and only reads the calling thread.
            assert_eq!(unsafe { libc::sched_getcpu() }, cpu as i32);
            let error = pin_this_thread(100_000).unwrap_err().to_string();
            assert!(error.contains("no such CPU"), "{error}");
            let error = pin_this_thread(1000).unwrap_err().to_string();
            assert!(error.contains("--load-generator-cpu 1000"), "{error}");
            // The thread's CPU clock moves with the work it does, and only forward.
            let mut x = 0u64;
            for i in 0..2_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(i));
            }
            std::hint::black_box(x);
            assert!(thread_cpu_secs().unwrap() > before.unwrap());
        })
        .join()
        .unwrap();
    }
}
