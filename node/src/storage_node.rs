//! `boxoffice node`: start (or restart) a storage node and optionally bootstrap a cluster.
//!
//! The first start writes `node.json` (id, listen and advertised address, Raft settings) into
//! the data directory; a restart needs only `--data-dir`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
pub use boxoffice_raft::client::{bootstrap, bootstrap_spreading_leaders};
use boxoffice_raft::storage::write_file_atomic;
use boxoffice_raft::transport::TcpConnector;
use boxoffice_raft::types::NodeId;
use boxoffice_raft::{ClusterKey, Host, HostConfig, RaftSettings, Storage, SystemClock};
use serde::{Deserialize, Serialize};

use crate::api_node::{shutdown_signal, SHUTDOWN_GRACE_MS};
use crate::cluster_key::KeyArgs;

#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// Node id (unique in the cluster, > 0). Read from the data dir on restart.
    #[arg(long, env = "BOXOFFICE_NODE_ID")]
    id: Option<NodeId>,
    /// Address to listen on, e.g. 127.0.0.1:7001. Read from the data dir on restart.
    #[arg(long, env = "BOXOFFICE_LISTEN")]
    listen: Option<String>,
    /// Address peers reach this node at (defaults to --listen).
    #[arg(long, env = "BOXOFFICE_ADVERTISE")]
    advertise: Option<String>,
    #[arg(long, env = "BOXOFFICE_DATA_DIR")]
    data_dir: PathBuf,
    /// Bootstrap a new cluster with these voters: `1=127.0.0.1:7001,2=…,3=…`.
    #[arg(long, env = "BOXOFFICE_INIT")]
    init: Option<String>,
    /// Inventory groups to create when bootstrapping (the meta group comes on top).
    #[arg(long, env = "BOXOFFICE_SHARDS", default_value_t = 4)]
    shards: u64,
    /// Build a snapshot (and purge the log behind it) every this many entries.
    #[arg(long, env = "BOXOFFICE_SNAPSHOT_EVERY")]
    snapshot_every: Option<u64>,
    /// Entries kept behind a snapshot (on disk), so a follower that was down a while
    /// catches up from the log instead of a snapshot install (default 100,000).
    #[arg(long, env = "BOXOFFICE_KEEP_ENTRIES")]
    keep_entries: Option<u64>,
    /// Bytes of written log entries each group keeps in memory (their size on disk);
    /// older entries are read back from the log file (default 8 MiB).
    #[arg(long, env = "BOXOFFICE_LOG_CACHE_BYTES")]
    log_cache_bytes: Option<u64>,
    #[command(flatten)]
    timing: RaftTimingArgs,
    /// Checkpoint the state machine to sled every this many applied entries (a restart
    /// re-applies the log after the last checkpoint).
    #[arg(long, env = "BOXOFFICE_CHECKPOINT_EVERY")]
    checkpoint_every: Option<u64>,
    /// … and at least this often while anything is unsaved.
    #[arg(long, env = "BOXOFFICE_CHECKPOINT_EVERY_MS")]
    checkpoint_every_ms: Option<u64>,
    /// How often the balancer (on the node leading the meta group) makes at most one change
    /// evening out replicas and leaderships across the active nodes; 0 turns it off.
    #[arg(long, env = "BOXOFFICE_BALANCE_EVERY_MS", default_value_t = DEFAULT_BALANCE_EVERY_MS)]
    balance_every_ms: u64,
    #[command(flatten)]
    key: KeyArgs,
}

/// Raft timing flags, over the node's defaults ([`RaftSettings::default`]).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RaftTimingArgs {
    /// The Raft heartbeat. openraft 0.9 also times an AppendEntries out after one heartbeat,
    /// so it must cover a batch plus a follower's fsync on a loaded machine.
    #[arg(long, env = "BOXOFFICE_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// A follower that hears nothing from its leader for the longest election timeout (the
    /// leader's lease) plus a random one between these two starts an election: the write gap
    /// after a leader dies is about `max + rand(min, max)`. Both must exceed the heartbeat.
    #[arg(long, env = "BOXOFFICE_ELECTION_MIN_MS")]
    pub election_min_ms: Option<u64>,
    #[arg(long, env = "BOXOFFICE_ELECTION_MAX_MS")]
    pub election_max_ms: Option<u64>,
    /// Do not watch the leader's process: a dead leader is then replaced only after the
    /// lease and an election timeout (openraft's timers), not as soon as its connection is
    /// refused. For comparison and as a kill switch; ARCHITECTURE.md "Raft timing".
    #[arg(long, env = "BOXOFFICE_NO_LEADER_WATCH")]
    pub no_leader_watch: bool,
}

impl RaftTimingArgs {
    /// These flags as `boxoffice node` arguments (for a node started as a child process).
    pub fn to_flags(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (flag, value) in [
            ("--heartbeat-ms", self.heartbeat_ms),
            ("--election-min-ms", self.election_min_ms),
            ("--election-max-ms", self.election_max_ms),
        ] {
            if let Some(ms) = value {
                out.extend([flag.to_owned(), ms.to_string()]);
            }
        }
        if self.no_leader_watch {
            out.push("--no-leader-watch".to_owned());
        }
        out
    }

    /// `raft` with these timings over it; an error when the result could not work.
    pub fn apply(&self, raft: &mut RaftSettings) -> anyhow::Result<()> {
        if let Some(ms) = self.heartbeat_ms {
            raft.heartbeat_ms = ms;
            // Elections not given keep clear of the new heartbeat.
            if self.election_min_ms.is_none() {
                raft.election_min_ms = raft.election_min_ms.max(ms * 4);
            }
            if self.election_max_ms.is_none() {
                raft.election_max_ms = raft.election_max_ms.max(ms * 8);
            }
        }
        if let Some(ms) = self.election_min_ms {
            raft.election_min_ms = ms;
        }
        if let Some(ms) = self.election_max_ms {
            raft.election_max_ms = ms;
        }
        if self.no_leader_watch {
            raft.leader_watch = false;
        }
        if raft.heartbeat_ms == 0 || raft.election_min_ms <= raft.heartbeat_ms {
            bail!(
                "the election timeout ({} ms) must exceed a non-zero heartbeat ({} ms)",
                raft.election_min_ms,
                raft.heartbeat_ms
            );
        }
        if raft.election_max_ms <= raft.election_min_ms {
            bail!(
                "--election-max-ms ({}) must exceed --election-min-ms ({})",
                raft.election_max_ms,
                raft.election_min_ms
            );
        }
        Ok(())
    }

    /// The default settings with these timings over them.
    pub fn settings(&self) -> anyhow::Result<RaftSettings> {
        let mut raft = RaftSettings::default();
        self.apply(&mut raft)?;
        Ok(raft)
    }
}

/// The balancer's default interval: one change at most every ten seconds.
pub const DEFAULT_BALANCE_EVERY_MS: u64 = 10_000;

/// What a node remembers about itself across restarts.
#[derive(Serialize, Deserialize)]
struct NodeFile {
    id: NodeId,
    listen: String,
    advertise: String,
    raft: RaftSettings,
}

const NODE_FILE: &str = "node.json";

fn load_or_create(args: &NodeArgs) -> anyhow::Result<NodeFile> {
    let path = args.data_dir.join(NODE_FILE);
    if path.exists() {
        let mut file: NodeFile = serde_json::from_slice(&std::fs::read(&path)?)
            .with_context(|| format!("reading {}", path.display()))?;
        if let Some(id) = args.id {
            if id != file.id {
                bail!(
                    "{} belongs to node {}, not {id}",
                    args.data_dir.display(),
                    file.id
                );
            }
        }
        if let Some(listen) = &args.listen {
            file.listen = listen.clone();
        }
        if let Some(advertise) = &args.advertise {
            file.advertise = advertise.clone();
        }
        // Flags given at a restart override what the data dir remembers (for this run).
        override_raft_settings(&mut file.raft, args)?;
        return Ok(file);
    }
    let (Some(id), Some(listen)) = (args.id, args.listen.clone()) else {
        bail!("a new data dir needs --id and --listen");
    };
    if id == 0 {
        bail!("node ids start at 1");
    }
    let mut raft = RaftSettings::default();
    override_raft_settings(&mut raft, args)?;
    let file = NodeFile {
        id,
        advertise: args.advertise.clone().unwrap_or_else(|| listen.clone()),
        listen,
        raft,
    };
    std::fs::create_dir_all(&args.data_dir)?;
    write_file_atomic(
        &args.data_dir,
        NODE_FILE,
        &serde_json::to_vec_pretty(&file)?,
    )?;
    Ok(file)
}

/// The Raft settings given as flags, over `raft`.
fn override_raft_settings(raft: &mut RaftSettings, args: &NodeArgs) -> anyhow::Result<()> {
    if let Some(n) = args.snapshot_every {
        raft.snapshot_every_entries = n;
    }
    if let Some(n) = args.keep_entries {
        raft.keep_entries = n;
    }
    if let Some(n) = args.log_cache_bytes {
        raft.log_cache_bytes = n;
    }
    if let Some(n) = args.checkpoint_every {
        raft.checkpoint_every_entries = n;
    }
    if let Some(ms) = args.checkpoint_every_ms {
        raft.checkpoint_every_ms = ms;
    }
    args.timing.apply(raft)
}

/// Parses `1=addr,2=addr`.
pub fn parse_members(spec: &str) -> anyhow::Result<Vec<(NodeId, String)>> {
    spec.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|part| {
            let (id, addr) = part
                .split_once('=')
                .with_context(|| format!("expected id=addr, got {part:?}"))?;
            Ok((
                id.trim()
                    .parse()
                    .with_context(|| format!("bad node id {id:?}"))?,
                addr.trim().to_owned(),
            ))
        })
        .collect()
}

/// A running storage node: its replicas and the task serving its internal router, which it
/// owns. [`StorageNode::shutdown`] stops serving, drains, then stops the replicas.
pub struct StorageNode {
    host: Host,
    stop: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

/// Opens the replicas in `data_dir` and serves them on `listener` until shut down; calls are
/// signed and checked with `cluster_key` (`None`: `--insecure`).
pub async fn start_host(
    id: NodeId,
    advertise: String,
    raft: RaftSettings,
    data_dir: PathBuf,
    listener: tokio::net::TcpListener,
    cluster_key: Option<ClusterKey>,
) -> anyhow::Result<StorageNode> {
    // Install the Prometheus recorder before any replica registers its metrics.
    let _ = boxoffice_api::metrics::prometheus();
    let storage = Storage::open_dir(data_dir)?;
    let cfg = HostConfig {
        node_id: id,
        addr: advertise,
        raft,
        clock: Arc::new(SystemClock),
        cluster_key,
    };
    let host = Host::open(cfg, storage, TcpConnector).await?;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let server = tokio::spawn(serve(host.clone(), listener, shutdown));
    Ok(StorageNode { host, stop, server })
}

/// A node of a cluster run inside this process (`dev`, `bench`): default Raft settings, its
/// data in `base_dir/n{id}`.
pub async fn start_in_process(
    id: NodeId,
    listener: tokio::net::TcpListener,
    base_dir: &std::path::Path,
    cluster_key: Option<ClusterKey>,
    raft: RaftSettings,
) -> anyhow::Result<StorageNode> {
    let addr = listener.local_addr()?.to_string();
    let dir = base_dir.join(format!("n{id}"));
    start_host(id, addr, raft, dir, listener, cluster_key).await
}

/// Three storage nodes in this process on loopback ports, bootstrapped with `shards`
/// inventory groups (the benches' cluster), every leader on node 1 or, with
/// `spread_leaders`, spread over the three: the nodes and their addresses.
pub async fn start_local_cluster(
    base_dir: &std::path::Path,
    cluster_key: Option<ClusterKey>,
    shards: u64,
    spread_leaders: bool,
    raft: &RaftSettings,
) -> anyhow::Result<(Vec<StorageNode>, Vec<String>)> {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
    }
    let members: Vec<(NodeId, String)> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| Ok((i as u64 + 1, l.local_addr()?.to_string())))
        .collect::<std::io::Result<_>>()?;
    let mut nodes = Vec::new();
    for ((id, _), listener) in members.iter().zip(listeners) {
        nodes.push(
            start_in_process(*id, listener, base_dir, cluster_key.clone(), raft.clone()).await?,
        );
    }
    if spread_leaders {
        // Group g is initialized by member g mod n, so leaders start on every node.
        bootstrap_spreading_leaders(nodes[0].host(), &members, shards).await?;
    } else {
        bootstrap(nodes[0].host(), &members, shards).await?;
    }
    Ok((nodes, members.into_iter().map(|(_, a)| a).collect()))
}

/// Serves `host`'s internal router on `listener` until `shutdown` resolves, then lets calls
/// in flight finish for up to [`SHUTDOWN_GRACE_MS`] (peers keep pooled connections open, so
/// the wait is bounded) — the mini-redis `run(listener, shutdown)` shape.
pub async fn serve(
    host: Host,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let stopping_host = host.clone();
    let signal = async move {
        shutdown.await;
        // Followers' held leader watches are answered now, not after the grace period.
        stopping_host.begin_stopping();
        let _ = stopping_tx.send(());
    };
    // `/metrics` sits outside the credential check: a Prometheus scraper holds no cluster
    // key, and the figures change nothing.
    let router = boxoffice_raft::server::router(host.clone()).merge(
        axum::Router::new()
            .route("/metrics", axum::routing::get(node_metrics))
            .with_state(host),
    );
    let server = axum::serve(listener, router).with_graceful_shutdown(signal);
    let grace_over = async move {
        match stopping_rx.await {
            Ok(()) => tokio::time::sleep(Duration::from_millis(SHUTDOWN_GRACE_MS)).await,
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        served = server => if let Err(e) = served {
            tracing::error!(error = %e, "node server stopped");
        },
        _ = grace_over => tracing::info!("closing the peer connections still open"),
    }
}

/// `GET /metrics`: the node's replicas' gauges set from openraft, then the process's
/// Prometheus text (in `dev`, which runs three replicas and the API in one process, every
/// node's series, told apart by their `node` label, and the API's).
async fn node_metrics(
    axum::extract::State(host): axum::extract::State<Host>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    host.record_gauges();
    let text = match boxoffice_api::metrics::prometheus() {
        Some(handle) => handle.render(),
        None => "# another metrics recorder was installed first\n".to_owned(),
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
        .into_response()
}

impl StorageNode {
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Stops accepting calls, waits for those in flight (bounded), then stops every replica
    /// and flushes the state store.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.server.await {
            tracing::warn!(error = %e, "node server task");
        }
        self.host.shutdown().await;
    }
}

pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let cluster_key = args.key.resolve()?;
    if cluster_key.is_none() {
        tracing::warn!("--insecure: internal calls are neither signed nor checked");
    }
    let file = load_or_create(&args)?;
    let listener = tokio::net::TcpListener::bind(&file.listen)
        .await
        .with_context(|| format!("binding {}", file.listen))?;
    tracing::info!(node = file.id, listen = %file.listen, data_dir = %args.data_dir.display(), "storage node starting");
    let node = start_host(
        file.id,
        file.advertise.clone(),
        file.raft.clone(),
        args.data_dir.clone(),
        listener,
        cluster_key,
    )
    .await?;
    if let Some(spec) = &args.init {
        let members = parse_members(spec)?;
        if !members.iter().any(|(id, _)| *id == file.id) {
            bail!("--init must include this node ({})", file.id);
        }
        if let Err(e) = bootstrap_spreading_leaders(node.host(), &members, args.shards).await {
            node.shutdown().await;
            return Err(e.into());
        }
    }
    let balancer = (args.balance_every_ms > 0).then(|| {
        tokio::spawn(boxoffice_raft::balancer::run(
            node.host().clone(),
            args.balance_every_ms,
        ))
    });
    println!("ready node={} addr={}", file.id, file.advertise);
    shutdown_signal().await;
    tracing::info!("shutting down");
    if let Some(balancer) = balancer {
        balancer.abort();
    }
    node.shutdown().await;
    Ok(())
}
