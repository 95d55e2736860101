//! `boxoffice dev`: the embedded default — three storage replicas in one process on
//! loopback, sharing one data directory, bootstrapped on first start and reopened after.

use std::path::PathBuf;

use anyhow::Context;
use boxoffice_raft::RaftSettings;

use crate::storage_node::{bootstrap, start_host};

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
}

impl Default for DevArgs {
    fn default() -> Self {
        DevArgs { data_dir: PathBuf::from("data/dev"), raft_port: 7101, shards: 4 }
    }
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let first_start = !args.data_dir.join("n1").exists();
    let members: Vec<(u64, String)> = (0..3u16).map(|i| (u64::from(i) + 1, format!("127.0.0.1:{}", args.raft_port + i))).collect();
    let mut hosts = Vec::new();
    for (id, addr) in &members {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        let dir = args.data_dir.join(format!("n{id}"));
        hosts.push(start_host(*id, addr.clone(), RaftSettings::default(), dir, listener).await?);
    }
    if first_start {
        bootstrap(&hosts[0], &members, args.shards).await?;
    }
    let addrs: Vec<&str> = members.iter().map(|(_, a)| a.as_str()).collect();
    println!("boxoffice dev: storage replicas on {} (data in {})", addrs.join(", "), args.data_dir.display());
    println!("cluster status: curl http://{}/cluster/status", addrs[0]);
    tokio::signal::ctrl_c().await?;
    for host in &hosts {
        host.shutdown().await;
    }
    Ok(())
}
