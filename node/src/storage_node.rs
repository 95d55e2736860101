//! `boxoffice node`: start (or restart) a storage node and optionally bootstrap a cluster.
//!
//! The first start writes `node.json` (id, listen and advertised address, Raft settings) into
//! the data directory; a restart needs only `--data-dir`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
pub use boxoffice_raft::client::bootstrap;
use boxoffice_raft::transport::TcpConnector;
use boxoffice_raft::types::NodeId;
use boxoffice_raft::{Host, HostConfig, RaftSettings, Storage, SystemClock};
use serde::{Deserialize, Serialize};

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
    /// Entries kept behind a snapshot.
    #[arg(long, env = "BOXOFFICE_KEEP_ENTRIES")]
    keep_entries: Option<u64>,
    #[arg(long, env = "BOXOFFICE_HEARTBEAT_MS")]
    heartbeat_ms: Option<u64>,
}

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
        return Ok(file);
    }
    let (Some(id), Some(listen)) = (args.id, args.listen.clone()) else {
        bail!("a new data dir needs --id and --listen");
    };
    if id == 0 {
        bail!("node ids start at 1");
    }
    let mut raft = RaftSettings::default();
    if let Some(n) = args.snapshot_every {
        raft.snapshot_every_entries = n;
    }
    if let Some(n) = args.keep_entries {
        raft.keep_entries = n;
    }
    if let Some(ms) = args.heartbeat_ms {
        raft.heartbeat_ms = ms;
        raft.election_min_ms = raft.election_min_ms.max(ms * 4);
        raft.election_max_ms = raft.election_max_ms.max(ms * 8);
    }
    let file = NodeFile {
        id,
        advertise: args.advertise.clone().unwrap_or_else(|| listen.clone()),
        listen,
        raft,
    };
    std::fs::create_dir_all(&args.data_dir)?;
    write_atomic(&path, &serde_json::to_vec_pretty(&file)?)?;
    Ok(file)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
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

pub async fn start_host(
    id: NodeId,
    advertise: String,
    raft: RaftSettings,
    data_dir: PathBuf,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<Host> {
    let storage = Storage::open_dir(data_dir)?;
    let cfg = HostConfig {
        node_id: id,
        addr: advertise,
        raft,
        clock: Arc::new(SystemClock),
    };
    let host = Host::open(cfg, storage, TcpConnector).await?;
    let router = boxoffice_raft::server::router(host.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "node server stopped");
        }
    });
    Ok(host)
}

pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let file = load_or_create(&args)?;
    let listener = tokio::net::TcpListener::bind(&file.listen)
        .await
        .with_context(|| format!("binding {}", file.listen))?;
    tracing::info!(node = file.id, listen = %file.listen, data_dir = %args.data_dir.display(), "storage node starting");
    let host = start_host(
        file.id,
        file.advertise.clone(),
        file.raft.clone(),
        args.data_dir.clone(),
        listener,
    )
    .await?;
    if let Some(spec) = &args.init {
        let members = parse_members(spec)?;
        if !members.iter().any(|(id, _)| *id == file.id) {
            bail!("--init must include this node ({})", file.id);
        }
        bootstrap(&host, &members, args.shards).await?;
    }
    println!("ready node={} addr={}", file.id, file.advertise);
    tokio::signal::ctrl_c().await?;
    tracing::info!("shutting down");
    host.shutdown().await;
    Ok(())
}
