//! The processes of a run, each started inside its namespace with `ip netns exec` (which
//! execs, so the child's pid is the `boxoffice` process itself): 5 storage nodes and 2 API
//! nodes, SIGSTOP/SIGCONT, SIGKILL and restart from the data dir. Every process is killed
//! when its handle drops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use boxoffice_tests::rest::{
    NO_RATE_LIMITS, TEST_ADMISSION_SECRET, TEST_JWT_SECRET, TEST_WEBHOOK_SECRET,
};
use boxoffice_tests::{binary, TEST_CLUSTER_KEY};

/// The port every storage node listens on (inside its own namespace).
pub const NODE_PORT: u16 = 7000;
/// The port every API node listens on.
pub const API_PORT: u16 = 8080;
/// The storage nodes' Raft heartbeat; elections time out after 4–8 heartbeats.
pub const HEARTBEAT_MS: u64 = 250;
/// Snapshots every this many entries, the log purged to [`KEEP_ENTRIES`] behind them: a
/// run builds dozens, and a follower down for a few seconds comes back to a snapshot.
const SNAPSHOT_EVERY: u64 = 64;
const KEEP_ENTRIES: u64 = 16;

/// One `boxoffice` process in a namespace.
pub struct Proc {
    pub name: String,
    pub ns: String,
    pub addr: String,
    log: PathBuf,
    args: Vec<String>,
    restart_args: Vec<String>,
    child: Option<Child>,
    pub stopped: bool,
}

impl Proc {
    /// A storage node; `init` is the `--init` member list for the one that bootstraps.
    pub fn node(id: u64, ns: &str, ip: &str, dir: &Path, shards: u32, init: Option<&str>) -> Proc {
        let addr = format!("{ip}:{NODE_PORT}");
        let data_dir = dir.join(format!("n{id}"));
        let mut args: Vec<String> = [
            "node",
            "--id",
            &id.to_string(),
            "--listen",
            &addr,
            "--shards",
            &shards.to_string(),
            "--heartbeat-ms",
            &HEARTBEAT_MS.to_string(),
            "--snapshot-every",
            &SNAPSHOT_EVERY.to_string(),
            "--keep-entries",
            &KEEP_ENTRIES.to_string(),
            "--data-dir",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(data_dir.display().to_string());
        if let Some(init) = init {
            args.extend(["--init".to_owned(), init.to_owned()]);
        }
        let restart_args = vec![
            "node".to_owned(),
            "--data-dir".to_owned(),
            data_dir.display().to_string(),
        ];
        let mut proc = Proc {
            name: format!("n{id}"),
            ns: ns.to_owned(),
            addr,
            log: dir.join(format!("n{id}.log")),
            args,
            restart_args,
            child: None,
            stopped: false,
        };
        proc.spawn(false);
        proc
    }

    /// An API node in front of `cluster` (`host:port,…`).
    pub fn api(name: &str, ns: &str, ip: &str, dir: &Path, cluster: &str) -> Proc {
        let addr = format!("{ip}:{API_PORT}");
        let args: Vec<String> = [
            "api",
            "--cluster",
            cluster,
            "--listen",
            &addr,
            "--public-url",
            &format!("http://{addr}"),
            "--dev-tokens",
            "--jwt-secret",
            TEST_JWT_SECRET,
            "--webhook-secret",
            TEST_WEBHOOK_SECRET,
            "--admission-secret",
            TEST_ADMISSION_SECRET,
        ]
        .iter()
        .chain(NO_RATE_LIMITS.iter())
        .map(|s| s.to_string())
        .collect();
        let mut proc = Proc {
            name: name.to_owned(),
            ns: ns.to_owned(),
            addr,
            log: dir.join(format!("{name}.log")),
            restart_args: args.clone(),
            args,
            child: None,
            stopped: false,
        };
        proc.spawn(false);
        proc
    }

    fn spawn(&mut self, restart: bool) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let args = if restart {
            &self.restart_args
        } else {
            &self.args
        };
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(binary())
            .args(args)
            .env("BOXOFFICE_LOG", "info,openraft=warn")
            .env("BOXOFFICE_CLUSTER_KEY", TEST_CLUSTER_KEY)
            // The nemesis's schedule is the only disturbance: no balancer moves in between
            // (as in the other end-to-end tests).
            .env("BOXOFFICE_BALANCE_EVERY_MS", "0")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning boxoffice in its namespace");
        self.child = Some(child);
        self.stopped = false;
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.stopped {
                signal(child.id(), "-CONT");
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stopped = false;
    }

    /// Starts it again from its data dir alone, as an operator would after a crash.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "{} still running", self.name);
        self.spawn(true);
    }

    /// Deletes the data dir (of a killed node): the broken variant's lost disk.
    pub fn wipe(&mut self) {
        assert!(self.child.is_none(), "{} still running", self.name);
        let dir = &self.restart_args[self.restart_args.len() - 1];
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Starts it with its first flags but never `--init`: a node that joins empty.
    pub fn start_fresh(&mut self) {
        assert!(self.child.is_none(), "{} still running", self.name);
        if let Some(i) = self.args.iter().position(|a| a == "--init") {
            self.args.drain(i..i + 2);
        }
        self.spawn(false);
    }

    /// SIGSTOP: the process freezes with its sockets open.
    pub fn pause(&mut self) {
        if let Some(pid) = self.pid() {
            signal(pid, "-STOP");
            self.stopped = true;
        }
    }

    pub fn resume(&mut self) {
        if let Some(pid) = self.pid() {
            if self.stopped {
                signal(pid, "-CONT");
            }
        }
        self.stopped = false;
    }

    /// The last `n_bytes` of its log, for failure messages.
    pub fn log_tail(&self, n_bytes: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log[log.len().saturating_sub(n_bytes)..].to_owned()
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}
