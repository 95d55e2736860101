//! `boxoffice dev`: the embedded default — three storage replicas on loopback sharing one
//! data directory (bootstrapped on first start, reopened after), one API node (its search
//! index in `<data dir>/search`), the payment sandbox, and the demo catalog, seeded in the
//! background on first start while `/readyz` says so. The cluster key signing the replicas'
//! calls is generated on first start and kept in `<data dir>/cluster.key`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use boxoffice_api::demo::{self, DemoSize, SeedProgress};
use boxoffice_raft::storage::write_file_atomic;
use boxoffice_raft::RaftSettings;
use serde::{Deserialize, Serialize};

use crate::api_node::{shutdown_signal, ApiNode, ApiSetup, LimitArgs};
use crate::cluster_key::dev_key;
use crate::storage_node::{bootstrap_spreading_leaders, start_in_process};

#[derive(clap::Args, Debug, Clone)]
pub struct DevArgs {
    /// Where the replicas keep their data (kept across runs).
    #[arg(long, env = "BOXOFFICE_DATA_DIR", default_value = "data/dev")]
    pub data_dir: PathBuf,
    /// First of three consecutive loopback ports for the storage replicas.
    #[arg(long, env = "BOXOFFICE_DEV_RAFT_PORT", default_value_t = 7101)]
    pub raft_port: u16,
    /// Inventory groups created on first start.
    #[arg(long, default_value_t = 4)]
    pub shards: u64,
    /// Where the API listens.
    #[arg(long, env = "BOXOFFICE_DEV_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Skip the demo catalog (an empty cluster, e.g. for tests).
    #[arg(long, env = "BOXOFFICE_DEV_NO_DEMO")]
    pub no_demo: bool,
    /// Events in the demo catalog (venues and performers scale with it).
    #[arg(long, env = "BOXOFFICE_DEV_DEMO_EVENTS", default_value_t = DemoSize::default().n_events)]
    pub demo_events: usize,
    #[command(flatten)]
    pub limits: LimitArgs,
}

impl Default for DevArgs {
    fn default() -> Self {
        DevArgs {
            data_dir: PathBuf::from("data/dev"),
            raft_port: 7101,
            shards: 4,
            listen: "127.0.0.1:8080".into(),
            no_demo: false,
            demo_events: DemoSize::default().n_events,
            limits: LimitArgs::default(),
        }
    }
}

/// What dev remembers in its data dir: secrets (so tokens survive a restart) and the demo
/// catalog's anchor day and state.
#[derive(Serialize, Deserialize)]
struct DevFile {
    jwt_secret: String,
    webhook_secret: String,
    /// Signs waiting-room admission tokens (added later: a dev.json without it gets one).
    #[serde(default)]
    admission_secret: String,
    /// The UTC midnight demo event dates count from.
    demo_day0_ms: u64,
    #[serde(default)]
    demo_seeded: bool,
}

const DEV_FILE: &str = "dev.json";

fn load_or_create(dir: &Path) -> anyhow::Result<DevFile> {
    let path = dir.join(DEV_FILE);
    if let Ok(bytes) = std::fs::read(&path) {
        let mut file: DevFile = serde_json::from_slice(&bytes)
            .with_context(|| format!("reading {}", path.display()))?;
        if file.admission_secret.is_empty() {
            file.admission_secret = boxoffice_api::ids::random_hex(32);
            save(dir, &file)?;
        }
        return Ok(file);
    }
    let now_ms = boxoffice_api::Clock::now_ms(&boxoffice_api::SystemClock);
    let file = DevFile {
        jwt_secret: boxoffice_api::ids::random_hex(32),
        webhook_secret: boxoffice_api::ids::random_hex(32),
        admission_secret: boxoffice_api::ids::random_hex(32),
        demo_day0_ms: now_ms - now_ms % 86_400_000,
        demo_seeded: false,
    };
    save(dir, &file)?;
    Ok(file)
}

fn save(dir: &Path, file: &DevFile) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_file_atomic(dir, DEV_FILE, &serde_json::to_vec_pretty(file)?)?;
    Ok(())
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let first_start = !args.data_dir.join("n1").exists();
    let members: Vec<(u64, String)> = (0..3u16)
        .map(|i| {
            (
                u64::from(i) + 1,
                format!("127.0.0.1:{}", args.raft_port + i),
            )
        })
        .collect();
    let cluster_key = dev_key(&args.data_dir)?;
    let mut nodes = Vec::new();
    for (id, addr) in &members {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        nodes.push(
            start_in_process(
                *id,
                listener,
                &args.data_dir,
                Some(cluster_key.clone()),
                RaftSettings::default(),
            )
            .await?,
        );
    }
    if first_start {
        bootstrap_spreading_leaders(nodes[0].host(), &members, args.shards).await?;
    }
    let dev_file = load_or_create(&args.data_dir)?;
    let node = ApiNode::start(ApiSetup {
        listen: args.listen.clone(),
        public_url: String::new(),
        jwt_secret: dev_file.jwt_secret.clone().into_bytes(),
        webhook_secret: dev_file.webhook_secret.clone().into_bytes(),
        admission_secret: dev_file.admission_secret.clone().into_bytes(),
        dev_mode: true,
        limits: args.limits.config()?,
        seeds: members.iter().map(|(_, a)| a.clone()).collect(),
        // Beside the replicas, so a restart resumes the index rather than rebuilding it.
        search_dir: Some(args.data_dir.join("search")),
        cluster_key: Some(cluster_key),
    })
    .await;
    let node = match node {
        Ok(node) => node,
        Err(error) => {
            for node in nodes {
                node.shutdown().await;
            }
            return Err(error);
        }
    };
    let base = format!("http://{}", node.addr);
    let addrs: Vec<&str> = members.iter().map(|(_, a)| a.as_str()).collect();
    println!(
        "boxoffice dev: API on {base}, storage replicas on {} (data in {})",
        addrs.join(", "),
        args.data_dir.display()
    );
    println!("  docs:    curl {base}/openapi.json");
    println!("  token:   curl -s -X POST {base}/v1/auth/token -H 'content-type: application/json' -d '{{\"user\":\"alice\"}}'");
    println!("  events:  curl {base}/v1/events/{}", demo::event_id(0));
    println!("  payment sandbox: {base}/sandbox/…");

    let seeding = if args.no_demo || dev_file.demo_seeded {
        None
    } else {
        let gate = node.api.ready_gate("demo catalog");
        let state = node.api.state().clone();
        let size = scaled(args.demo_events);
        let day0 = dev_file.demo_day0_ms;
        let data_dir = args.data_dir.clone();
        Some(tokio::spawn(async move {
            let started = Instant::now();
            let progress = Arc::new(SeedProgress::default());
            let reporter = {
                let progress = progress.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        tracing::info!(
                            venues = progress.venues.load(std::sync::atomic::Ordering::Relaxed),
                            performers = progress
                                .performers
                                .load(std::sync::atomic::Ordering::Relaxed),
                            events = progress.events.load(std::sync::atomic::Ordering::Relaxed),
                            "seeding the demo catalog"
                        );
                    }
                })
            };
            // The cluster may still be electing leaders: retry until it takes writes.
            let mut result = Err(boxoffice_api::ApiError::Internal("not started".into()));
            for _ in 0..20 {
                result = demo::seed(&state, size, day0, progress.clone()).await;
                match &result {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::warn!(%error, "seeding the demo catalog failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            reporter.abort();
            match result {
                Ok(()) => {
                    tracing::info!(
                        events = size.n_events,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "demo catalog seeded"
                    );
                    println!(
                        "demo catalog ready: {} events in {:.1} s",
                        size.n_events,
                        started.elapsed().as_secs_f64()
                    );
                    match load_or_create(&data_dir) {
                        Ok(mut file) => {
                            file.demo_seeded = true;
                            if let Err(error) = save(&data_dir, &file) {
                                tracing::warn!(%error, "recording that the demo catalog is seeded");
                            }
                        }
                        Err(error) => tracing::warn!(%error, "reading dev.json"),
                    }
                    gate.set(true);
                }
                Err(error) => tracing::error!(%error, "giving up seeding the demo catalog"),
            }
        }))
    };
    node.serve(shutdown_signal()).await?;
    if let Some(task) = seeding {
        task.abort();
    }
    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}

/// The demo size for `n_events` events, venues and performers in proportion.
fn scaled(n_events: usize) -> DemoSize {
    let default = DemoSize::default();
    let n_events = n_events.max(1);
    DemoSize {
        n_events,
        n_venues: (default.n_venues * n_events / default.n_events).clamp(1, default.n_venues),
        n_performers: (default.n_performers * n_events / default.n_events)
            .clamp(1, default.n_performers),
    }
}
