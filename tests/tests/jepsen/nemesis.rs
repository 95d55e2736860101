//! The nemesis: a fault schedule drawn from the run's seed (printed before the run, so
//! `JEPSEN_SEED` replays it), fired on its own thread against the cluster — the leader cut
//! off from the majority, the nodes split 2/3, an API node cut off from every storage node,
//! `tc netem` latency and loss on a node's link, SIGSTOP longer than an election, SIGKILL
//! and restart — each followed by a heal. It records when each fault held, with the node
//! it resolved to, for the timeline and the unavailability figures (per fault kind, the
//! longest time no client request was answered).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boxoffice_tests::cluster_get_json_within;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::net::Net;
use super::procs::{Proc, NODE_PORT};

/// The inventory shard's Raft group (group 0 is the catalog/meta group).
pub const SHARD_GROUP: u64 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    PartitionLeader,
    SplitHalves,
    IsolateApi,
    Netem,
    PauseNode,
    KillNode,
    /// SIGKILL of the leader the moment its purged index moves (a snapshot was built and
    /// the log behind it is being purged).
    KillAtPurge,
    /// A follower killed until the leader's log is purged past it, restarted (so it must
    /// install a snapshot) and killed again a drawn moment into that catch-up.
    KillDuringInstall,
}

impl FaultKind {
    const ALL: [FaultKind; 8] = [
        FaultKind::PartitionLeader,
        FaultKind::SplitHalves,
        FaultKind::IsolateApi,
        FaultKind::Netem,
        FaultKind::PauseNode,
        FaultKind::KillNode,
        FaultKind::KillAtPurge,
        FaultKind::KillDuringInstall,
    ];
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            FaultKind::PartitionLeader => "partition-leader",
            FaultKind::SplitHalves => "split-halves",
            FaultKind::IsolateApi => "isolate-api",
            FaultKind::Netem => "netem",
            FaultKind::PauseNode => "sigstop",
            FaultKind::KillNode => "sigkill-restart",
            FaultKind::KillAtPurge => "sigkill-at-purge",
            FaultKind::KillDuringInstall => "sigkill-snapshot-install",
        };
        f.write_str(name)
    }
}

/// One drawn fault: what, for how long, the healthy gap before it, and the draws that pick
/// its target when it is not the leader.
#[derive(Clone, Debug)]
pub struct Step {
    pub kind: FaultKind,
    pub gap_ms: u64,
    pub duration_ms: u64,
    pub pick: u64,
    pub delay_ms: u64,
    pub loss_pct: u64,
    /// The token-bucket rate used where the kernel has no netem.
    pub rate_kbit: u64,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "after {} ms healthy: {} for {} ms (pick {}",
            self.gap_ms, self.kind, self.duration_ms, self.pick
        )?;
        if self.kind == FaultKind::Netem {
            write!(
                f,
                ", delay {} ms, loss {} %, else tbf {} kbit/s",
                self.delay_ms, self.loss_pct, self.rate_kbit
            )?;
        }
        write!(f, ")")
    }
}

/// The schedule a seed draws for `total` of load.
pub fn schedule(seed: u64, total: Duration) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut steps = Vec::new();
    let mut at_ms = 0;
    // Every kind at least once early on, then random ones.
    let mut kinds: Vec<FaultKind> = FaultKind::ALL.to_vec();
    for i in (1..kinds.len()).rev() {
        kinds.swap(i, rng.gen_range(0..=i));
    }
    loop {
        let kind = if steps.len() < kinds.len() {
            kinds[steps.len()]
        } else {
            FaultKind::ALL[rng.gen_range(0..FaultKind::ALL.len())]
        };
        let step = Step {
            kind,
            gap_ms: rng.gen_range(2_000..=4_000),
            // SIGSTOP outlasts the longest election (8 heartbeats of 250 ms) twice over.
            duration_ms: if kind == FaultKind::PauseNode {
                rng.gen_range(4_500..=7_000)
            } else {
                rng.gen_range(3_000..=8_000)
            },
            pick: rng.gen(),
            delay_ms: rng.gen_range(50..=400),
            loss_pct: rng.gen_range(5..=30),
            rate_kbit: rng.gen_range(64..=512),
        };
        // The kinds that wait for a purge first can hold up to twice their duration.
        at_ms += step.gap_ms
            + match kind {
                FaultKind::KillAtPurge => 2 * step.duration_ms,
                FaultKind::KillDuringInstall => 2 * step.duration_ms + 3 * step.delay_ms,
                _ => step.duration_ms,
            };
        if at_ms > total.as_millis() as u64 {
            break;
        }
        steps.push(step);
    }
    steps
}

thread_local! {
    /// The nemesis thread's runtime for its status reads (it polls every 20 ms while it
    /// waits for a purge: one runtime, not one per read).
    static NEMESIS_RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
}

/// What the nemesis works on: the network and every process.
pub struct Cluster {
    /// Declared first so processes die before their namespaces go.
    pub nodes: Vec<Proc>,
    pub apis: Vec<Proc>,
    pub net: Net,
}

impl Cluster {
    /// Removes every fault: routes and qdiscs, paused processes resumed, dead ones restarted.
    pub fn heal(&mut self) {
        self.net.heal();
        for proc in self.nodes.iter_mut().chain(self.apis.iter_mut()) {
            proc.resume();
            if !proc.is_running() {
                proc.restart();
            }
        }
    }

    /// The node that reports itself leader of `group` with the highest term, if any answers.
    pub fn leader(&self, group: u64) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for i in 0..self.nodes.len() {
            let Some(g) = self.group_status(i, group) else {
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

    /// Node `i`'s own status of `group` (`/cluster/status`), if it is up and answers.
    fn group_status(&self, i: usize, group: u64) -> Option<serde_json::Value> {
        let node = &self.nodes[i];
        if node.stopped || !node.is_running() {
            return None;
        }
        let status = NEMESIS_RUNTIME.with(|runtime| {
            runtime.block_on(cluster_get_json_within(
                &node.addr,
                "/cluster/status",
                Duration::from_millis(800),
            ))
        })?;
        status["groups"]
            .as_array()?
            .iter()
            .find(|g| g["group"].as_u64() == Some(group))
            .cloned()
    }

    /// One index (`purged_index`, `snapshot_index`, …) of node `i`'s replica of the shard.
    fn shard_index(&self, i: usize, field: &str) -> Option<u64> {
        self.group_status(i, SHARD_GROUP)?[field].as_u64()
    }

    /// Polls `done` every 20 ms until it holds or `within` passes; whether it held.
    fn wait_for(&self, within: Duration, mut done: impl FnMut(&Cluster) -> bool) -> bool {
        let until = Instant::now() + within;
        loop {
            if done(self) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// [`FaultKind::KillAtPurge`] on node `l`: SIGKILL as soon as its purged index moves
    /// (or at the end of `within` if it never does, said in the target).
    fn kill_at_purge(&mut self, l: usize, within: Duration) -> String {
        let name = self.nodes[l].name.clone();
        let before = self.shard_index(l, "purged_index");
        let mut after = before;
        let moved = self.wait_for(within, |c| {
            after = c.shard_index(l, "purged_index").or(after);
            after != before
        });
        self.nodes[l].kill();
        let show = |i: Option<u64>| i.map_or("none".to_owned(), |i| i.to_string());
        if moved {
            format!("{name}, purged {} → {}", show(before), show(after))
        } else {
            format!("{name}, no purge seen (purged {})", show(before))
        }
    }

    /// [`FaultKind::KillDuringInstall`] on follower `f` with leader `l`: down until the
    /// leader purged past what `f` had (at most `within`), up, then down again after
    /// `second_kill_ms`.
    fn kill_during_install(
        &mut self,
        f: usize,
        l: usize,
        within: Duration,
        second_kill_ms: u64,
    ) -> String {
        let name = self.nodes[f].name.clone();
        let had = self.shard_index(f, "last_log_index").unwrap_or(0);
        self.nodes[f].kill();
        let purged_past = self.wait_for(within, |c| {
            c.shard_index(l, "purged_index").unwrap_or(0) > had
        });
        self.nodes[f].restart();
        std::thread::sleep(Duration::from_millis(second_kill_ms));
        let snapshot = self.shard_index(f, "snapshot_index");
        self.nodes[f].kill();
        format!(
            "{name} (had log to {had}; leader {} purged past it: {purged_past}; killed again \
             {second_kill_ms} ms after restart, its snapshot index then {})",
            self.nodes[l].name,
            snapshot.map_or("unknown".to_owned(), |i| i.to_string())
        )
    }
}

/// A fault as it fired: kind, the target it resolved to, and when it held.
#[derive(Clone, Debug)]
pub struct Fired {
    pub kind: FaultKind,
    pub target: String,
    pub start: Instant,
    pub end: Instant,
}

/// Fires `steps` against `cluster` from `t0` until done or `stop` is set; heals at the
/// end and hands the cluster back with the timeline.
pub fn run(
    mut cluster: Cluster,
    steps: Vec<Step>,
    t0: Instant,
    stop: Arc<AtomicBool>,
) -> (Cluster, Vec<Fired>) {
    let mut fired = Vec::new();
    let sleep = |ms: u64| {
        let until = Instant::now() + Duration::from_millis(ms);
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    for step in steps {
        sleep(step.gap_ms);
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let n_nodes = cluster.nodes.len();
        let leader = cluster.leader(SHARD_GROUP);
        // Faults aimed at "a node" hit the shard's leader half the time.
        let node = match leader {
            Some(l) if step.pick % 2 == 0 => l,
            _ => (step.pick / 2) as usize % n_nodes,
        };
        let start = Instant::now();
        let target = match step.kind {
            FaultKind::PartitionLeader => {
                let l = leader.unwrap_or(node);
                let name = cluster.nodes[l].name.clone();
                let others: Vec<String> = cluster
                    .nodes
                    .iter()
                    .filter(|n| n.name != name)
                    .map(|n| n.name.clone())
                    .collect();
                let others: Vec<&str> = others.iter().map(String::as_str).collect();
                cluster.net.cut(&[&name], &others);
                let how = if leader.is_some() {
                    "leader"
                } else {
                    "no leader found; node"
                };
                format!("{how} {name} | rest")
            }
            FaultKind::SplitHalves => {
                let mut names: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
                let mut rng = StdRng::seed_from_u64(step.pick);
                for i in (1..names.len()).rev() {
                    names.swap(i, rng.gen_range(0..=i));
                }
                let (minority, majority) = names.split_at(n_nodes / 2);
                let minority: Vec<&str> = minority.iter().map(String::as_str).collect();
                let majority: Vec<&str> = majority.iter().map(String::as_str).collect();
                cluster.net.cut(&minority, &majority);
                format!("{} | {}", minority.join(","), majority.join(","))
            }
            FaultKind::IsolateApi => {
                let api = cluster.apis[step.pick as usize % cluster.apis.len()]
                    .name
                    .clone();
                let nodes: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
                let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
                cluster.net.cut(&[&api], &nodes);
                format!("{api} | storage nodes")
            }
            FaultKind::Netem => {
                let name = cluster.nodes[node].name.clone();
                let how = cluster.net.degrade(
                    &name,
                    step.delay_ms,
                    step.delay_ms / 4,
                    step.loss_pct,
                    step.rate_kbit,
                );
                format!("{name} {how}")
            }
            FaultKind::PauseNode => {
                cluster.nodes[node].pause();
                leader_tag(&cluster.nodes[node], leader == Some(node))
            }
            FaultKind::KillNode => {
                cluster.nodes[node].kill();
                leader_tag(&cluster.nodes[node], leader == Some(node))
            }
            FaultKind::KillAtPurge => {
                let l = leader.unwrap_or(node);
                let within = Duration::from_millis(step.duration_ms);
                let how = if leader.is_some() { "leader" } else { "node" };
                format!("{how} {}", cluster.kill_at_purge(l, within))
            }
            FaultKind::KillDuringInstall => match leader {
                Some(l) => {
                    let f = (l + 1 + (step.pick / 2) as usize % (n_nodes - 1)) % n_nodes;
                    let within = Duration::from_millis(step.duration_ms);
                    let second_kill_ms = step.delay_ms * 3;
                    cluster.kill_during_install(f, l, within, second_kill_ms)
                }
                None => {
                    cluster.nodes[node].kill();
                    format!(
                        "no leader found; plain kill of {}",
                        cluster.nodes[node].name
                    )
                }
            },
        };
        println!(
            "nemesis t={:>6} ms  {} {}",
            start.duration_since(t0).as_millis(),
            step.kind,
            target
        );
        sleep(step.duration_ms);
        cluster.heal();
        let end = Instant::now();
        println!(
            "nemesis t={:>6} ms  heal",
            end.duration_since(t0).as_millis()
        );
        fired.push(Fired {
            kind: step.kind,
            target,
            start,
            end,
        });
    }
    cluster.heal();
    (cluster, fired)
}

fn leader_tag(node: &Proc, is_leader: bool) -> String {
    if is_leader {
        format!("leader {}", node.name)
    } else {
        format!("node {}", node.name)
    }
}

/// Storage node addresses as `--cluster` and `--init` take them.
pub fn node_addr(ip: &str) -> String {
    format!("{ip}:{NODE_PORT}")
}

/// Per fault kind, the longest time no client request got an answer while a fault of that
/// kind held (a gap counts from the fault's start at the earliest).
pub fn unavailability(answers: &[Instant], fired: &[Fired]) -> BTreeMap<FaultKind, Duration> {
    let mut sorted = answers.to_vec();
    sorted.sort();
    let mut worst: BTreeMap<FaultKind, Duration> = BTreeMap::new();
    for fault in fired {
        let mut longest = Duration::ZERO;
        let mut last = fault.start;
        for t in sorted.iter().copied().filter(|t| *t > fault.start) {
            longest = longest.max(t - last);
            last = t;
            if t > fault.end {
                break;
            }
        }
        let entry = worst.entry(fault.kind).or_default();
        *entry = (*entry).max(longest);
    }
    worst
}
