//! One seed, start to verdict: build the simulated cluster and clients, step the simulation
//! while firing the seed's faults, heal, demand progress within a bound, wait for the
//! replicas to converge, and judge the recorded histories and final states.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use boxoffice_raft::codec::stable_hash;
use boxoffice_raft::machine::{mutants, Record};
use boxoffice_raft::types::{GroupId, NodeId, SeatOwner, META_GROUP};
use openraft::ServerState;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::checker::queue::check_room;
use crate::checker::{check_shard, CheckLimits, FinalSeat, ReplicaSeats, ShardReport};
use crate::cluster::{node_addr, node_name, node_software, Control, NodeDurable, Variant};
use crate::faults::{schedule, Fault, FaultSpace, Scheduled, Target};
use crate::operator::{
    group_of, tally, MoveKind, MoveLog, MoveTally, OperatorCommand, OPERATOR_BOUND_MS,
};
use crate::recorder::Recorder;
use crate::workload::{probe_client, setup, workload_client, Catalog, Shared};

/// How long the cluster has, after the heal, to answer a write in every group.
pub const LIVENESS_BOUND_MS: u64 = 20_000;
/// How long the replicas have, after the clients finish, to apply the same log.
pub const CONVERGENCE_BOUND_MS: u64 = 20_000;
/// Longest a run may take in simulated time before it counts as stuck.
pub const MAX_SIM_MS: u64 = 300_000;

/// What a run is made of; [`RunConfig::for_seed`] draws one from the seed.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub seed: u64,
    pub variant: Variant,
    pub n_nodes: u64,
    pub n_voters: u64,
    pub n_shards: u64,
    pub n_clients: usize,
    pub seats_per_event: usize,
    pub workload_ms: u64,
    pub faults: bool,
}

impl RunConfig {
    /// 3 or 5 nodes (3 voters, sometimes with spares to move voters onto), 1–2 shards,
    /// 3–6 clients on 2–4 hot seats per event, 12–20 s of load.
    pub fn for_seed(seed: u64) -> RunConfig {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_c0f1_9000_0001);
        let n_nodes = if rng.gen_bool(0.5) { 3 } else { 5 };
        let n_voters = if n_nodes == 5 && rng.gen_bool(0.5) {
            5
        } else {
            3
        };
        RunConfig {
            seed,
            variant: Variant::Correct,
            n_nodes,
            n_voters,
            n_shards: rng.gen_range(1..=2),
            n_clients: rng.gen_range(3..=6),
            seats_per_event: rng.gen_range(2..=4),
            workload_ms: rng.gen_range(12_000..=20_000),
            faults: true,
        }
    }
}

/// A fault as it fired (targets resolved), or a note from the driver.
#[derive(Debug, Clone)]
pub struct TimelineEntry {
    pub at_ms: u64,
    pub what: String,
}

/// What went wrong in a run, besides a shard report's violations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunFailure {
    /// The simulation itself failed (a host's software returned an error, or time ran out).
    Simulation(String),
    /// Answers no correct cluster gives.
    Anomaly(String),
    /// No write succeeded in a group within the bound after the heal.
    NoProgress { group: GroupId },
    /// Replicas of a group did not reach the same applied index in time.
    NotConverged { group: GroupId, detail: String },
    /// Replicas of a group applied the same log but hold different state.
    Diverged { group: GroupId, detail: String },
    /// The waiting room broke one of its rules (`checker::queue`).
    Queue { event: String, detail: String },
}

impl fmt::Display for RunFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunFailure::Simulation(e) => write!(f, "simulation failed: {e}"),
            RunFailure::Anomaly(e) => write!(f, "anomaly: {e}"),
            RunFailure::NoProgress { group } => {
                write!(f, "liveness: group {group} made no progress within {LIVENESS_BOUND_MS} ms of the heal")
            }
            RunFailure::NotConverged { group, detail } => {
                write!(f, "group {group} did not converge: {detail}")
            }
            RunFailure::Diverged { group, detail } => {
                write!(f, "group {group} replicas diverged: {detail}")
            }
            RunFailure::Queue { event, detail } => {
                write!(f, "waiting room of {event}: {detail}")
            }
        }
    }
}

/// Everything a seed produced.
#[derive(Debug)]
pub struct RunReport {
    pub config: RunConfig,
    pub schedule: Vec<Scheduled>,
    pub timeline: Vec<TimelineEntry>,
    /// Per event (one per shard): the checker's report.
    pub shards: BTreeMap<String, ShardReport>,
    pub failures: Vec<RunFailure>,
    /// Ops answered, left unknown, dropped (never reached a leader).
    pub ops: (usize, usize, usize),
    /// A stable hash of every recorded history (ops, times, outcomes): equal for two runs
    /// of one seed.
    pub digest: u64,
    /// Simulated ms from the heal to progress in every group.
    pub recovery_ms: Option<u64>,
    /// The cluster changes the schedule drew, by kind, and how they ended.
    pub moves: BTreeMap<MoveKind, MoveTally>,
    pub sim_ms: u64,
    pub wall: Duration,
}

impl RunReport {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
            && self
                .shards
                .values()
                .all(|r| r.verdict() != crate::checker::Verdict::Violated)
    }

    /// Seats the checker could not decide within its budget (not failures).
    pub fn undecided(&self) -> usize {
        self.shards.values().map(|r| r.undecided.len()).sum()
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "seed {} ({:?}): {} nodes ({} voters), {} shard(s), {} clients, {} hot seats/event, {} ms of load",
            c.seed, c.variant, c.n_nodes, c.n_voters, c.n_shards, c.n_clients, c.seats_per_event, c.workload_ms
        )?;
        writeln!(
            f,
            "  ops: {} answered, {} unknown, {} never delivered; {} ms simulated in {:.2?}; recovery after heal: {}",
            self.ops.0,
            self.ops.1,
            self.ops.2,
            self.sim_ms,
            self.wall,
            self.recovery_ms.map_or("-".to_owned(), |ms| format!("{ms} ms"))
        )?;
        for (kind, tally) in &self.moves {
            writeln!(f, "  {kind}: {tally}")?;
        }
        writeln!(f, "  fault schedule (ms after the workload started):")?;
        for s in &self.schedule {
            writeln!(f, "    {:>6}  {}", s.at_ms, s.fault)?;
        }
        writeln!(f, "  timeline (simulated ms):")?;
        for e in &self.timeline {
            writeln!(f, "    {:>6}  {}", e.at_ms, e.what)?;
        }
        for failure in &self.failures {
            writeln!(f, "  FAILURE {failure}")?;
        }
        for (event, report) in &self.shards {
            write!(f, "  {event}: {report}")?;
        }
        Ok(())
    }
}

/// The simulated workload client `i`'s host name.
fn client_name(i: usize) -> String {
    format!("c{i}")
}

/// Event ids whose stable placement puts one in each of the first `n` shards.
fn event_ids(n_shards: u64) -> Vec<String> {
    let mut chosen: BTreeMap<u64, String> = BTreeMap::new();
    for i in 0.. {
        let id = format!("ev-{i}");
        chosen
            .entry(stable_hash(id.as_bytes()) % n_shards)
            .or_insert(id);
        if chosen.len() as u64 == n_shards {
            break;
        }
    }
    chosen.into_values().collect()
}

/// The driver's side of the simulation.
struct Driver {
    nodes: Vec<NodeDurable>,
    n_clients: usize,
    timeline: Vec<TimelineEntry>,
    /// Nodes down, with the simulated ms at which they restart.
    down: BTreeMap<NodeId, u64>,
    rng: StdRng,
    /// Moves handed to a node, by kind.
    drawn: BTreeMap<MoveKind, usize>,
}

impl Driver {
    fn note(&mut self, now_ms: u64, what: impl Into<String>) {
        self.timeline.push(TimelineEntry {
            at_ms: now_ms,
            what: what.into(),
        });
    }

    /// Hands `command` to the first running node that does not lead its group (so the
    /// faults aimed at leaders seldom take the move down with them; the leader when it runs
    /// alone): the move runs there and finds the leader itself, as an API node does.
    fn operate(&mut self, now_ms: u64, kind: MoveKind, command: OperatorCommand) {
        let leader = self.leader_of(group_of(&command));
        let running = |n: &&NodeDurable| n.slot.borrow().control.is_some();
        let runner = self
            .nodes
            .iter()
            .filter(running)
            .find(|n| Some(n.id) != leader)
            .or_else(|| self.nodes.iter().find(running))
            .map(|n| n.id);
        let seeds: Vec<String> = self.nodes.iter().map(|n| node_addr(n.id)).collect();
        let sent = runner.is_some_and(|id| {
            let mut slot = self.node(id).slot.borrow_mut();
            let sent = slot.control.as_ref().is_some_and(|tx| {
                tx.send(Control::Operate {
                    command: command.clone(),
                    seeds,
                })
                .is_ok()
            });
            if sent {
                slot.moves_in_flight += 1;
            }
            sent
        });
        if sent {
            *self.drawn.entry(kind).or_default() += 1;
        }
        let on = runner.map_or("no node".to_owned(), |id| format!("n{id}"));
        self.note(
            now_ms,
            format!("operator asked {on}: {command:?} (sent: {sent})"),
        );
    }

    /// Whether any node still runs an admin move.
    fn moves_in_flight(&self) -> bool {
        self.nodes
            .iter()
            .any(|n| n.slot.borrow().moves_in_flight > 0)
    }

    fn node(&self, id: NodeId) -> &NodeDurable {
        &self.nodes[id as usize - 1]
    }

    /// The node that currently leads `group`, by the highest term among nodes claiming it.
    fn leader_of(&self, group: GroupId) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|n| {
                let slot = n.slot.borrow();
                let g = slot.host.as_ref()?.group(group)?;
                let m = g.raft.metrics().borrow().clone();
                (m.state == ServerState::Leader).then_some((m.current_term, n.id))
            })
            .max()
            .map(|(_, id)| id)
    }

    fn resolve(&self, target: Target) -> Option<NodeId> {
        match target {
            Target::Node(id) => Some(id),
            Target::LeaderOf(g) => self.leader_of(g),
        }
    }

    /// Partitions the nodes of `side` (with the workload clients `clients`) from the other
    /// nodes (with the other clients).
    fn split(&self, sim: &mut turmoil::Sim, side: &[NodeId], clients: &[usize]) {
        let (mut a, mut b): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
        for n in &self.nodes {
            if side.contains(&n.id) {
                a.push(node_name(n.id))
            } else {
                b.push(node_name(n.id))
            }
        }
        for c in 0..self.n_clients {
            if clients.contains(&c) {
                a.push(client_name(c))
            } else {
                b.push(client_name(c))
            }
        }
        for x in &a {
            for y in &b {
                // Clients never talk to each other; only links that touch a node matter.
                if x.starts_with('n') || y.starts_with('n') {
                    sim.partition(x.clone(), y.clone());
                }
            }
        }
    }

    fn fire(&mut self, sim: &mut turmoil::Sim, now_ms: u64, fault: &Fault) {
        match fault {
            Fault::Isolate { target, clients } => {
                let Some(id) = self.resolve(*target) else {
                    return self.note(now_ms, format!("{fault}: no such node now"));
                };
                self.split(sim, &[id], clients);
                self.note(now_ms, format!("isolated n{id} ({fault})"));
            }
            Fault::Split { side, clients } => {
                self.split(sim, side, clients);
                self.note(now_ms, fault.to_string());
            }
            Fault::OneWay { from, to } => match self.resolve(*from) {
                Some(id) if id != *to => {
                    sim.partition_oneway(node_name(id), node_name(*to));
                    self.note(now_ms, format!("dropping n{id} -> n{to}"));
                }
                _ => self.note(now_ms, format!("{fault}: skipped")),
            },
            Fault::HoldLink { a, b } => match self.resolve(*a) {
                Some(id) if id != *b => {
                    sim.hold(node_name(id), node_name(*b));
                    self.note(now_ms, format!("stalling n{id} <-> n{b}"));
                }
                _ => self.note(now_ms, format!("{fault}: skipped")),
            },
            Fault::Lossy { a, b, fail_rate } => {
                sim.set_link_fail_rate(node_name(*a), node_name(*b), *fail_rate);
                self.note(now_ms, fault.to_string());
            }
            Fault::Slow { a, b, max_ms } => {
                sim.set_link_max_message_latency(
                    node_name(*a),
                    node_name(*b),
                    Duration::from_millis(*max_ms),
                );
                self.note(now_ms, fault.to_string());
            }
            Fault::Crash { target, down_ms } => {
                let Some(id) = self.resolve(*target) else {
                    return self.note(now_ms, format!("{fault}: no such node now"));
                };
                if self.down.contains_key(&id) {
                    return self.note(now_ms, format!("{fault}: n{id} is already down"));
                }
                sim.crash(node_name(id));
                let mut slot = self.node(id).slot.borrow_mut();
                slot.host = None;
                slot.control = None;
                // Its admin moves are gone with it (tallied as lost).
                slot.moves_in_flight = 0;
                drop(slot);
                self.down.insert(id, now_ms + down_ms);
                self.note(now_ms, format!("crashed n{id} ({fault})"));
            }
            Fault::Clock { node, offset_ms } => {
                self.node(*node).clock.set_offset_ms(*offset_ms);
                self.note(now_ms, fault.to_string());
            }
            Fault::ChangeMembers { group } => self.change_members(now_ms, *group),
            Fault::MoveLeader { group, to } => self.operate(
                now_ms,
                MoveKind::Leader,
                OperatorCommand::MoveLeader {
                    group: *group,
                    to: *to,
                },
            ),
            Fault::HealNetwork => {
                self.heal_network(sim);
                self.note(now_ms, "healed the network");
            }
        }
    }

    /// Asks the group's leader to swap one of its voters for a node outside the voters.
    fn change_members(&mut self, now_ms: u64, group: GroupId) {
        let Some(leader) = self.leader_of(group) else {
            return self.note(now_ms, format!("g{group}: no leader to change members"));
        };
        let voters: BTreeSet<NodeId> = {
            let slot = self.node(leader).slot.borrow();
            let Some(g) = slot.host.as_ref().and_then(|h| h.group(group)) else {
                return;
            };
            let m = g.raft.metrics().borrow().clone();
            m.membership_config.membership().voter_ids().collect()
        };
        let outside: Vec<NodeId> = self
            .nodes
            .iter()
            .map(|n| n.id)
            .filter(|id| !voters.contains(id))
            .collect();
        if outside.is_empty() {
            return self.note(now_ms, format!("g{group}: no spare node"));
        }
        let add = outside[self.rng.gen_range(0..outside.len())];
        let removable: Vec<NodeId> = voters.iter().copied().collect();
        let remove = removable[self.rng.gen_range(0..removable.len())];
        let mut new_voters = voters.clone();
        new_voters.remove(&remove);
        new_voters.insert(add);
        // Half the changes (chosen from what was drawn already, so a seed's schedule stays
        // as it was) go through the admin API's replica move instead of the raw change:
        // its leader hand-off, meta-table write and tombstone of the removed replica.
        if (group + add + remove).is_multiple_of(2) {
            let command = OperatorCommand::MoveReplica {
                group,
                from: remove,
                to: add,
            };
            return self.operate(now_ms, MoveKind::Replica, command);
        }
        let control = Control::ChangeMembers {
            group,
            add,
            voters: new_voters.clone(),
        };
        let sent = self
            .node(leader)
            .slot
            .borrow()
            .control
            .as_ref()
            .is_some_and(|tx| tx.send(control).is_ok());
        if sent {
            *self.drawn.entry(MoveKind::Members).or_default() += 1;
        }
        self.note(
            now_ms,
            format!("g{group}: asked n{leader} to replace n{remove} by n{add}, raw change (sent: {sent})"),
        );
    }

    fn heal_network(&mut self, sim: &mut turmoil::Sim) {
        let clients: Vec<String> = (0..self.n_clients).map(client_name).collect();
        for a in &self.nodes {
            let na = node_name(a.id);
            let peers = self
                .nodes
                .iter()
                .filter(|b| b.id > a.id)
                .map(|b| node_name(b.id));
            for nb in peers.chain(clients.iter().cloned()) {
                sim.repair(na.clone(), nb.clone());
                sim.release(na.clone(), nb.clone());
                sim.set_link_fail_rate(na.clone(), nb.clone(), 0.0);
                sim.set_link_max_message_latency(
                    na.clone(),
                    nb,
                    Duration::from_millis(BASE_MAX_LATENCY_MS),
                );
            }
        }
    }

    fn restart_due(&mut self, sim: &mut turmoil::Sim, now_ms: u64, all: bool) {
        let due: Vec<NodeId> = self
            .down
            .iter()
            .filter(|(_, &at)| all || at <= now_ms)
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            self.down.remove(&id);
            sim.bounce(node_name(id));
            self.note(now_ms, format!("restarted n{id}"));
        }
    }

    /// Per group: whether every current voter runs and has applied its leader's last log
    /// index, and a description when not.
    fn converged(&self, group: GroupId) -> Result<Vec<NodeId>, String> {
        let leader = self.leader_of(group).ok_or("no leader")?;
        let (last, voters) = {
            let slot = self.node(leader).slot.borrow();
            let g = slot
                .host
                .as_ref()
                .and_then(|h| h.group(group))
                .ok_or("leader vanished")?;
            let m = g.raft.metrics().borrow().clone();
            (
                m.last_log_index,
                m.membership_config
                    .membership()
                    .voter_ids()
                    .collect::<Vec<_>>(),
            )
        };
        for &id in &voters {
            let slot = self.node(id).slot.borrow();
            let Some(g) = slot.host.as_ref().and_then(|h| h.group(group)) else {
                return Err(format!("voter n{id} is not running the group"));
            };
            let applied = g.raft.metrics().borrow().last_applied.map(|l| l.index);
            if applied != last {
                return Err(format!(
                    "n{id} applied {applied:?}, leader n{leader} has {last:?}"
                ));
            }
        }
        Ok(voters)
    }
}

/// Connection attempts a listener queues (turmoil panics beyond it; Linux's default
/// `somaxconn` is 4096).
pub const TCP_BACKLOG: usize = 4_096;

/// Default upper bound on message latency between hosts.
pub const BASE_MAX_LATENCY_MS: u64 = 5;

/// Runs one seed's configuration to a report. A variant's state machine mutant is switched
/// on for this thread (every simulated node runs on it) for the run only, and so is
/// spawning the raft crate's tasks on the hosts' `LocalSet`s (`boxoffice_raft::spawn`).
pub fn run_seed(config: RunConfig) -> RunReport {
    let previous = mutants::set(config.variant.mutant());
    boxoffice_raft::spawn::spawn_on_local_set(true);
    let report = run_with_mutant_set(config);
    boxoffice_raft::spawn::spawn_on_local_set(false);
    mutants::set(previous);
    report
}

fn run_with_mutant_set(config: RunConfig) -> RunReport {
    let started = Instant::now();
    boxoffice_raft::typ::seed_thread_rng(config.seed);
    let mut sim = turmoil::Builder::new()
        .rng_seed(config.seed)
        .simulation_duration(Duration::from_millis(MAX_SIM_MS))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(BASE_MAX_LATENCY_MS))
        // A listen backlog like a real kernel's: a healed link delivers every connection
        // attempt that piled up while it was stalled at once.
        .tcp_capacity(TCP_BACKLOG)
        .build();

    let move_log: MoveLog = Rc::default();
    let nodes: Vec<NodeDurable> = (1..=config.n_nodes)
        .map(|id| NodeDurable::new(id, move_log.clone()))
        .collect();
    let voters: Vec<(NodeId, String)> = (1..=config.n_voters)
        .map(|id| (id, node_addr(id)))
        .collect();
    let bootstrapped = Rc::new(Cell::new(false));
    for durable in &nodes {
        let durable = durable.clone();
        let variant = config.variant;
        let bootstrap =
            (durable.id == 1).then(|| (voters.clone(), config.n_shards, bootstrapped.clone()));
        sim.host(node_name(durable.id), move || {
            let durable = durable.clone();
            let bootstrap = bootstrap.clone();
            async move {
                if let Some((members, shards, done)) = bootstrap.filter(|(_, _, done)| !done.get())
                {
                    done.set(true);
                    let slot = durable.slot.clone();
                    tokio::task::spawn_local(async move {
                        while slot.borrow().host.is_none() {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        let host = slot.borrow().host.clone().expect("host");
                        if let Err(e) =
                            boxoffice_raft::client::bootstrap(&host, &members, shards).await
                        {
                            // In the report's timeline: the setup client then waits until the run times out.
                            slot.borrow_mut()
                                .control_log
                                .push((crate::clock::sim_ms(), format!("bootstrap failed: {e}")));
                        }
                    });
                }
                node_software(durable, variant).await
            }
        });
    }

    let shared = Rc::new(Shared {
        recorder: RefCell::new(Recorder::default()),
        catalog: RefCell::new(Catalog::default()),
        started_at_ms: Cell::new(None),
        stop_at_ms: Cell::new(None),
        healed_at_ms: Cell::new(None),
        progress_at_ms: RefCell::new(BTreeMap::new()),
        seeds: voters.iter().map(|(_, a)| a.clone()).collect(),
    });
    let events: Vec<(String, Vec<String>)> = event_ids(config.n_shards)
        .into_iter()
        .map(|e| {
            (
                e,
                (1..=config.seats_per_event)
                    .map(|i| format!("S{i}"))
                    .collect(),
            )
        })
        .collect();
    sim.client(
        "setup",
        setup(shared.clone(), config.n_shards as usize + 1, events),
    );
    for i in 0..config.n_clients {
        sim.client(
            client_name(i),
            workload_client(
                shared.clone(),
                i,
                config.seed.wrapping_mul(1_000).wrapping_add(i as u64),
            ),
        );
    }
    sim.client("probe", probe_client(shared.clone()));

    let mut rng = StdRng::seed_from_u64(config.seed ^ 0xfa17_5eed);
    let groups: Vec<GroupId> = (0..=config.n_shards).collect();
    let space = FaultSpace {
        nodes: (1..=config.n_nodes).collect(),
        groups,
        clients: config.n_clients,
        membership_changes: config.n_nodes > config.n_voters,
        first_ms: 500,
        last_ms: config.workload_ms.saturating_sub(1_000),
    };
    let faults = if config.faults {
        schedule(&mut rng, &space)
    } else {
        Vec::new()
    };
    let mut driver = Driver {
        nodes,
        n_clients: config.n_clients,
        timeline: Vec::new(),
        down: BTreeMap::new(),
        rng,
        drawn: BTreeMap::new(),
    };
    let mut failures = Vec::new();
    let mut next_fault = 0;
    let mut origin: Option<u64> = None;
    let mut healed_at: Option<u64> = None;

    // Setup, load with faults, heal, liveness: until every client is done.
    loop {
        let now_ms = sim.elapsed().as_millis() as u64;
        if origin.is_none() {
            if let Some(at) = shared.started_at_ms.get() {
                origin = Some(at);
                shared.stop_at_ms.set(Some(at + config.workload_ms));
                driver.note(
                    now_ms,
                    format!(
                        "events registered; load starts for {} ms",
                        config.workload_ms
                    ),
                );
            }
        }
        if let Some(origin) = origin {
            while next_fault < faults.len() && origin + faults[next_fault].at_ms <= now_ms {
                let fault = faults[next_fault].fault.clone();
                driver.fire(&mut sim, now_ms, &fault);
                next_fault += 1;
            }
            driver.restart_due(&mut sim, now_ms, false);
            if healed_at.is_none() && now_ms >= origin + config.workload_ms {
                driver.heal_network(&mut sim);
                driver.restart_due(&mut sim, now_ms, true);
                for n in &driver.nodes {
                    n.clock.set_offset_ms(0);
                }
                driver.note(now_ms, "load stopped; healed everything, clocks reset");
                healed_at = Some(now_ms);
                shared.healed_at_ms.set(Some(now_ms));
            }
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                failures.push(RunFailure::Simulation(e.to_string()));
                break;
            }
        }
    }
    // Admin moves still in hand get their time (no more are drawn after the heal).
    let clients_done_ms = sim.elapsed().as_millis() as u64;
    while failures.is_empty()
        && driver.moves_in_flight()
        && (sim.elapsed().as_millis() as u64) < clients_done_ms + OPERATOR_BOUND_MS
    {
        if let Err(e) = sim.step() {
            failures.push(RunFailure::Simulation(e.to_string()));
        }
    }
    let mut ended = Vec::new();
    for n in &driver.nodes {
        let mut slot = n.slot.borrow_mut();
        let log = std::mem::take(&mut slot.control_log);
        ended.extend(
            slot.changes_ended
                .iter()
                .map(|end| (MoveKind::Members, *end)),
        );
        for (at_ms, line) in log {
            driver.timeline.push(TimelineEntry {
                at_ms,
                what: format!("n{}: {line}", n.id),
            });
        }
    }
    for record in move_log.borrow().iter() {
        ended.extend(record.ended);
        driver.timeline.push(TimelineEntry {
            at_ms: record.at_ms,
            what: format!("operator: {}", record.line),
        });
    }
    let moves = tally(&driver.drawn, ended.into_iter());
    driver.timeline.sort_by_key(|e| e.at_ms);

    let mut recovery_ms = None;
    if let Some(healed) = healed_at {
        let progress = shared.progress_at_ms.borrow().clone();
        let shard_groups: BTreeSet<GroupId> = shared
            .catalog
            .borrow()
            .events
            .iter()
            .map(|(_, g, _)| *g)
            .collect();
        for g in &shard_groups {
            match progress.get(g) {
                Some(&at) if at <= healed + LIVENESS_BOUND_MS => {
                    recovery_ms = Some(recovery_ms.unwrap_or(0).max(at - healed));
                }
                _ => failures.push(RunFailure::NoProgress { group: *g }),
            }
        }
    }

    // Convergence: every voter applies the leader's whole log, then all hold the same state.
    let all_groups: Vec<GroupId> = (META_GROUP..=config.n_shards).collect();
    let converge_started = sim.elapsed().as_millis() as u64;
    let mut converged: BTreeMap<GroupId, Vec<NodeId>> = BTreeMap::new();
    if failures
        .iter()
        .all(|f| !matches!(f, RunFailure::Simulation(_)))
    {
        loop {
            for &g in &all_groups {
                if let std::collections::btree_map::Entry::Vacant(slot) = converged.entry(g) {
                    if let Ok(voters) = driver.converged(g) {
                        slot.insert(voters);
                    }
                }
            }
            let now_ms = sim.elapsed().as_millis() as u64;
            if converged.len() == all_groups.len()
                || now_ms > converge_started + CONVERGENCE_BOUND_MS
            {
                break;
            }
            if let Err(e) = sim.step() {
                failures.push(RunFailure::Simulation(e.to_string()));
                break;
            }
        }
        for &g in &all_groups {
            if !converged.contains_key(&g) {
                let detail = driver.converged(g).err().unwrap_or_default();
                failures.push(RunFailure::NotConverged { group: g, detail });
            }
        }
    }

    let catalog = shared.catalog.borrow().events.clone();
    // Best-available holds whose answer was lost: the seats they chose, from a replica's
    // final state (holds are kept far longer than a run), or no effect when it has no such
    // hold.
    for (event, group, _) in &catalog {
        let voter = converged.get(group).and_then(|v| v.first().copied());
        shared.recorder.borrow_mut().resolve_best(event, |hold_id| {
            let slot = driver.node(voter?).slot.borrow();
            let g = slot.host.as_ref()?.group(*group)?;
            let replica = g.shared.read();
            replica
                .machine
                .hold_by_id(hold_id)
                .map(|h| h.seat_ids.clone())
        });
    }
    let histories = shared.recorder.borrow().histories();
    let mut shards = BTreeMap::new();
    for (event, group, _) in &catalog {
        let finals = match converged.get(group) {
            Some(voters) => match final_states(&driver, &shared, *group, event, voters) {
                Ok(finals) => finals,
                Err(detail) => {
                    failures.push(RunFailure::Diverged {
                        group: *group,
                        detail,
                    });
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        let history = histories.get(event).cloned().unwrap_or_default();
        match check_shard(&history, &finals, &CheckLimits::default()) {
            Ok(report) => {
                shards.insert(event.clone(), report);
            }
            Err(e) => failures.push(RunFailure::Anomaly(format!(
                "{event}: the recorded history is malformed: {e}"
            ))),
        }
    }
    for &g in &all_groups {
        if let (Some(voters), false) =
            (converged.get(&g), catalog.iter().any(|(_, eg, _)| *eg == g))
        {
            if let Err(detail) = identical(&driver, g, voters) {
                failures.push(RunFailure::Diverged { group: g, detail });
            }
        }
    }
    if let Some(event) = catalog_queue_event(&shared) {
        let group = catalog
            .iter()
            .find(|(e, _, _)| *e == event)
            .map(|(_, g, _)| *g);
        if let Some(voter) = group
            .and_then(|g| converged.get(&g))
            .and_then(|v| v.first())
        {
            let slot = driver.node(*voter).slot.borrow();
            let audit = group
                .and_then(|g| slot.host.as_ref().and_then(|h| h.group(g)))
                .and_then(|g| g.shared.read().machine.room_audit(&event));
            match audit {
                Some(audit) => {
                    if let Err(detail) = check_room(&audit) {
                        failures.push(RunFailure::Queue { event, detail });
                    }
                }
                None => failures.push(RunFailure::Queue {
                    event,
                    detail: "the waiting room is missing".into(),
                }),
            }
        }
    }
    failures.extend(
        shared
            .recorder
            .borrow()
            .anomalies
            .iter()
            .cloned()
            .map(RunFailure::Anomaly),
    );

    let ops = shared.recorder.borrow().counts();
    let digest = stable_hash(format!("{histories:?}").as_bytes());
    RunReport {
        digest,
        timeline: std::mem::take(&mut driver.timeline),
        config,
        schedule: faults,
        shards,
        failures,
        ops,
        recovery_ms,
        moves,
        sim_ms: sim.elapsed().as_millis() as u64,
        wall: started.elapsed(),
    }
}

fn catalog_queue_event(shared: &Shared) -> Option<String> {
    shared.catalog.borrow().queue_event.clone()
}

/// Every voter's state records must be byte-identical.
fn identical(driver: &Driver, group: GroupId, voters: &[NodeId]) -> Result<(), String> {
    let mut first: Option<(NodeId, Vec<Record>)> = None;
    for &id in voters {
        let slot = driver.node(id).slot.borrow();
        let g = slot
            .host
            .as_ref()
            .and_then(|h| h.group(group))
            .ok_or(format!("n{id} lost the group"))?;
        let records = g.shared.read().machine.records();
        match &first {
            None => first = Some((id, records)),
            Some((first_id, expected)) if *expected != records => {
                let at = expected
                    .iter()
                    .zip(&records)
                    .position(|(a, b)| a != b)
                    .unwrap_or(expected.len().min(records.len()));
                let key = |r: &Vec<Record>| {
                    r.get(at)
                        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
                };
                return Err(format!(
                    "n{first_id} and n{id} differ at record {at} ({:?} vs {:?}); {} vs {} records",
                    key(expected),
                    key(&records),
                    expected.len(),
                    records.len()
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The seats of `event` on every voter of its group, after checking the voters' states are
/// identical.
fn final_states(
    driver: &Driver,
    shared: &Shared,
    group: GroupId,
    event: &str,
    voters: &[NodeId],
) -> Result<Vec<ReplicaSeats>, String> {
    identical(driver, group, voters)?;
    let mut out = Vec::new();
    let mut rec = shared.recorder.borrow_mut();
    for &id in voters {
        let slot = driver.node(id).slot.borrow();
        let g = slot
            .host
            .as_ref()
            .and_then(|h| h.group(group))
            .ok_or(format!("n{id} lost the group"))?;
        let replica = g.shared.read();
        let m = &replica.machine;
        let owners = m
            .seat_owners(event, m.now_ms())
            .ok_or(format!("n{id} does not know {event}"))?;
        let mut seats = BTreeMap::new();
        for (seat, owner) in owners {
            let state = match owner {
                SeatOwner::Free => FinalSeat::Free,
                SeatOwner::Held { hold_id, until_ms } => FinalSeat::Held {
                    hold_id: rec.hold(&hold_id),
                    expires_at_ms: until_ms,
                },
                SeatOwner::Sold { booking_id } => FinalSeat::Sold {
                    booking_id: rec.booking(&booking_id),
                },
            };
            seats.insert(rec.seat(event, &seat), state);
        }
        out.push(ReplicaSeats {
            replica: node_name(id),
            seats,
        });
    }
    Ok(out)
}
