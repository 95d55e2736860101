//! End-to-end test support: builds the `boxoffice` binary once and runs real storage-node
//! processes on loopback, killed with SIGKILL and restarted from their data dirs. Every
//! process started here gets [`TEST_CLUSTER_KEY`], and [`cluster_transport`] signs with it;
//! storage nodes run without the balancer unless a test passes `--balance-every-ms`.

pub mod load;
pub mod rest;
pub mod webdriver;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use boxoffice_raft::transport::{TcpConnector, Transport};
use boxoffice_raft::types::{GroupId, RegisterEventCmd, SeatSpec};
use boxoffice_raft::InventoryClient;
use boxoffice_raft::{ClusterAuth, ClusterKey, SystemClock};

/// The cluster key of every node and API process the tests start.
pub const TEST_CLUSTER_KEY: &str = "test-cluster-key-of-at-least-thirty-two-bytes";

/// How the tests sign internal calls: with [`TEST_CLUSTER_KEY`] at the real time.
pub fn test_cluster_auth() -> ClusterAuth {
    let key = ClusterKey::new(TEST_CLUSTER_KEY.as_bytes()).expect("the test key is long enough");
    ClusterAuth::new(key, Arc::new(SystemClock))
}

/// A transport to the test cluster's storage nodes, signing every call.
pub fn cluster_transport() -> Transport {
    Transport::new(TcpConnector, test_cluster_auth())
}

/// `GET addr path` on a storage node's internal port, signed, parsed as JSON; `None` when
/// the node does not answer within `timeout` or answers something else.
pub async fn cluster_get_json_within(
    addr: &str,
    path: &str,
    timeout: Duration,
) -> Option<serde_json::Value> {
    // A transport per call: its pooled connections belong to the caller's runtime.
    let bytes = cluster_transport().get(addr, path, timeout).await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// [`cluster_get_json_within`] two seconds.
pub async fn cluster_get_json(addr: &str, path: &str) -> Option<serde_json::Value> {
    cluster_get_json_within(addr, path, Duration::from_secs(2)).await
}

/// Waits until every node reports a leader for every group it hosts (meta and shard), so
/// that an API node that then fails to become ready is the API node's fault; panics with
/// the nodes' logs otherwise.
pub async fn cluster_serving(nodes: &[NodeProc]) {
    let serving = eventually(Duration::from_secs(60), || async move {
        for node in nodes {
            let status: serde_json::Value = cluster_get_json(&node.addr, "/cluster/status").await?;
            let groups = status["groups"].as_array()?;
            if groups.len() < 2 || groups.iter().any(|g| g["leader"].is_null()) {
                return None;
            }
        }
        Some(())
    })
    .await;
    if serving.is_none() {
        let tail = |log: String| -> String {
            let start = (log.len().saturating_sub(3000)..log.len())
                .find(|&i| log.is_char_boundary(i))
                .unwrap_or(log.len());
            log[start..].to_owned()
        };
        let logs: Vec<String> = nodes
            .iter()
            .map(|n| {
                tail(std::fs::read_to_string(n.data_dir.with_extension("log")).unwrap_or_default())
            })
            .collect();
        panic!(
            "the storage nodes never all had leaders; logs:\n{}",
            logs.join("\n----\n")
        );
    }
}

/// The built binary: `$BOXOFFICE_BIN`, or `target/debug/boxoffice` built on first use.
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(bin) = std::env::var("BOXOFFICE_BIN") {
            return PathBuf::from(bin);
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root")
            .to_owned();
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-p", "boxoffice-node", "--bin", "boxoffice"])
            .current_dir(&workspace)
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building boxoffice failed");
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| workspace.join("target"));
        target.join("debug").join("boxoffice")
    })
    .clone()
}

/// A loopback address with a port nobody listens on right now and no other call in this
/// test process has handed out (see [`free_ports`]).
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_ports(1))
}

/// The first of `n` consecutive loopback ports that nobody listens on right now and that
/// no earlier call in this process handed out (until 12,000 ports have been, when the walk
/// wraps and the bind check alone guards).
///
/// The ports come from below the kernel's ephemeral range (32768 and up here), walking
/// forward from an offset drawn from the process id. Asking the kernel for port 0 instead
/// can hand out a port twice: a process started a moment ago may not have bound its port
/// yet, and outgoing connections take ephemeral ports too. CI once added node 4 at the
/// address node 2 had just been given.
pub fn free_ports(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let next = NEXT.get_or_init(|| AtomicU32::new(std::process::id().wrapping_mul(7_919) % SPAN));
    for _ in 0..SPAN {
        let offset = next.fetch_add(u32::from(n), Ordering::Relaxed) % SPAN;
        if offset + u32::from(n) > SPAN {
            continue;
        }
        let first = (FIRST + offset) as u16;
        if (0..n).all(|i| TcpListener::bind(("127.0.0.1", first + i)).is_ok()) {
            return first;
        }
    }
    panic!(
        "no {n} consecutive free loopback ports in {FIRST}..{}",
        FIRST + SPAN
    );
}

/// One `boxoffice node` process.
pub struct NodeProc {
    pub id: u64,
    pub addr: String,
    pub data_dir: PathBuf,
    child: Option<Child>,
}

impl NodeProc {
    /// Starts a node with a fresh data dir; `extra` are more flags (e.g. `--init …`).
    pub fn start(id: u64, addr: &str, data_dir: &Path, extra: &[&str]) -> NodeProc {
        let mut args = vec![
            "node".to_owned(),
            "--id".into(),
            id.to_string(),
            "--listen".into(),
            addr.to_owned(),
            "--data-dir".into(),
        ];
        args.push(data_dir.display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = spawn(&args, data_dir);
        NodeProc {
            id,
            addr: addr.to_owned(),
            data_dir: data_dir.to_owned(),
            child: Some(child),
        }
    }

    /// Restarts from the data dir alone, as an operator would after a crash.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "node {} still running", self.id);
        let args = vec![
            "node".to_owned(),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
        ];
        self.child = Some(spawn(&args, &self.data_dir));
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(args: &[String], data_dir: &Path) -> Child {
    std::fs::create_dir_all(data_dir).expect("data dir");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.with_extension("log"))
        .expect("log file");
    Command::new(binary())
        .args(args)
        .env("BOXOFFICE_LOG", "info,openraft=warn")
        .env("BOXOFFICE_CLUSTER_KEY", TEST_CLUSTER_KEY)
        // The balancer stays off unless a test turns it on (`--balance-every-ms`), so the
        // only moves in a test are its own.
        .env("BOXOFFICE_BALANCE_EVERY_MS", "0")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawning boxoffice")
}

/// Three `boxoffice node` processes on free loopback ports with data dirs `dir/n1..n3`, the
/// first bootstrapping the cluster with `shards` inventory groups; and their addresses as
/// `--cluster` takes them.
pub fn start_cluster(dir: &Path, shards: u32) -> (Vec<NodeProc>, String) {
    start_cluster_with(dir, shards, &[])
}

/// [`start_cluster`] with `extra` flags for every node (e.g. `--snapshot-every`).
pub fn start_cluster_with(dir: &Path, shards: u32, extra: &[&str]) -> (Vec<NodeProc>, String) {
    let addrs: Vec<String> = (0..3).map(|_| free_addr()).collect();
    let init = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let shards = shards.to_string();
    let nodes = (0..3)
        .map(|i| {
            let mut flags = vec!["--shards", shards.as_str()];
            flags.extend(extra);
            if i == 0 {
                flags.extend(["--init", init.as_str()]);
            }
            NodeProc::start(
                i as u64 + 1,
                &addrs[i],
                &dir.join(format!("n{}", i + 1)),
                &flags,
            )
        })
        .collect();
    (nodes, addrs.join(","))
}

/// Registers `event_id` with seats `s0..s{n_seats}` (one row, 100 minor units each)
/// through `client`, retrying while the cluster elects leaders; returns its group.
pub async fn register_event(client: &InventoryClient, event_id: &str, n_seats: u32) -> GroupId {
    let register = RegisterEventCmd {
        event_id: event_id.into(),
        currency: "USD".into(),
        hold_ttl_ms: 600_000,
        seats: (0..n_seats)
            .map(|i| SeatSpec {
                id: format!("s{i}"),
                section: "Floor".into(),
                row: "1".into(),
                number: i,
                price_minor: 100,
            })
            .collect(),
    };
    let request_id = format!("register-{event_id}");
    let (group, _) = eventually(Duration::from_secs(30), || async {
        client
            .register_event_raw(&request_id, register.clone())
            .await
            .ok()
    })
    .await
    .expect("event registered");
    group
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(v) = f().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Runs `boxoffice admin ARGS` against the API node at `api` with the admin `token` (both
/// from the environment, as an operator sets them) and waits for it; its output.
pub fn admin_cli(api: &str, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .arg("admin")
        .args(args)
        .env("BOXOFFICE_API", api)
        .env("BOXOFFICE_ADMIN_TOKEN", token)
        .env("BOXOFFICE_LOG", "warn")
        .output()
        .expect("running boxoffice admin")
}
