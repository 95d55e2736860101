//! The fault schedule a seed chooses: partitions (symmetric, one-way, an isolated leader, a
//! split majority), held links, lossy and slow links, crashes and restarts (the leader
//! among them, often mid-append under load), clock skews and jumps, membership changes and
//! leader moves.
//! Generated up front from the seed, so a failing seed prints the schedule it ran.

use std::fmt;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use boxoffice_raft::types::{GroupId, NodeId};

/// Who a fault targets: a fixed node, or whoever leads a group when the fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Node(NodeId),
    LeaderOf(GroupId),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Node(id) => write!(f, "n{id}"),
            Target::LeaderOf(g) => write!(f, "leader(g{g})"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Cut the target off from every other storage node; `clients` (by index) can reach
    /// only it, the other clients everything.
    Isolate { target: Target, clients: Vec<usize> },
    /// Cut the storage nodes into two sides; `clients` are on `side`'s, the rest on the other.
    Split {
        side: Vec<NodeId>,
        clients: Vec<usize>,
    },
    /// Drop everything `from` sends to `to` (the other direction still works).
    OneWay { from: Target, to: NodeId },
    /// Stall every message between two nodes until the heal.
    HoldLink { a: Target, b: NodeId },
    /// The link between two nodes breaks at random with this probability per message.
    Lossy {
        a: NodeId,
        b: NodeId,
        fail_rate: f64,
    },
    /// Messages between two nodes take up to this long.
    Slow { a: NodeId, b: NodeId, max_ms: u64 },
    /// Crash (volatile state lost, durable kept); restarted `down_ms` later.
    Crash { target: Target, down_ms: u64 },
    /// Set a node's clock offset (a skew when small, a jump when large; either sign).
    Clock { node: NodeId, offset_ms: i64 },
    /// Replace one voter of a group with a node that is not one of its voters.
    ChangeMembers { group: GroupId },
    /// Ask the group's leader to hand its leadership to `to` (`Host::move_leader`; refused
    /// when `to` is not a voter, a no-op when it already leads).
    MoveLeader { group: GroupId, to: NodeId },
    /// Repair every link and stall, and reset latency and loss.
    HealNetwork,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Isolate { target, clients } => {
                write!(f, "isolate {target} with clients {clients:?}")
            }
            Fault::Split { side, clients } => {
                write!(f, "split {side:?} with clients {clients:?} from the rest")
            }
            Fault::OneWay { from, to } => write!(f, "drop {from} -> n{to}"),
            Fault::HoldLink { a, b } => write!(f, "stall {a} <-> n{b}"),
            Fault::Lossy { a, b, fail_rate } => write!(f, "lossy n{a} <-> n{b} ({fail_rate})"),
            Fault::Slow { a, b, max_ms } => write!(f, "slow n{a} <-> n{b} (up to {max_ms} ms)"),
            Fault::Crash { target, down_ms } => write!(f, "crash {target} for {down_ms} ms"),
            Fault::Clock { node, offset_ms } => {
                write!(f, "clock of n{node} set to {offset_ms:+} ms")
            }
            Fault::ChangeMembers { group } => write!(f, "change the voters of g{group}"),
            Fault::MoveLeader { group, to } => write!(f, "move g{group}'s leadership to n{to}"),
            Fault::HealNetwork => write!(f, "heal the network"),
        }
    }
}

/// A fault and when it fires, in ms after the workload starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduled {
    pub at_ms: u64,
    pub fault: Fault,
}

/// What the schedule may use.
#[derive(Debug, Clone)]
pub struct FaultSpace {
    pub nodes: Vec<NodeId>,
    pub groups: Vec<GroupId>,
    /// How many workload clients there are (partitions put some on the minority side).
    pub clients: usize,
    /// Whether spare nodes exist to move voters onto.
    pub membership_changes: bool,
    /// Faults fire in `[first_ms, last_ms)` after the workload starts.
    pub first_ms: u64,
    pub last_ms: u64,
}

/// Draws a schedule: a fault every 0.3–2.5 s, weighted towards the leader-targeted ones
/// that exercise failover under load.
pub fn schedule(rng: &mut StdRng, space: &FaultSpace) -> Vec<Scheduled> {
    let mut out = Vec::new();
    let mut t = space.first_ms + rng.gen_range(0..1_000);
    while t < space.last_ms {
        out.push(Scheduled {
            at_ms: t,
            fault: draw(rng, space),
        });
        t += rng.gen_range(300..2_500);
    }
    out
}

fn draw(rng: &mut StdRng, space: &FaultSpace) -> Fault {
    let node = |rng: &mut StdRng| *space.nodes.choose(rng).expect("nodes");
    let group = |rng: &mut StdRng| *space.groups.choose(rng).expect("groups");
    let target = |rng: &mut StdRng| {
        if rng.gen_bool(0.6) {
            Target::LeaderOf(group(rng))
        } else {
            Target::Node(node(rng))
        }
    };
    let some_clients = |rng: &mut StdRng| {
        let k = rng.gen_range(0..=space.clients / 2);
        let mut chosen: Vec<usize> = (0..space.clients)
            .collect::<Vec<_>>()
            .choose_multiple(rng, k)
            .copied()
            .collect();
        chosen.sort();
        chosen
    };
    let pair = |rng: &mut StdRng| {
        let two: Vec<NodeId> = space.nodes.choose_multiple(rng, 2).copied().collect();
        (two[0], two[1])
    };
    loop {
        let fault = match rng.gen_range(0..100) {
            0..=17 => Fault::Isolate {
                target: target(rng),
                clients: some_clients(rng),
            },
            18..=25 => {
                let k = rng.gen_range(1..=(space.nodes.len() - 1) / 2);
                let mut side: Vec<NodeId> = space.nodes.choose_multiple(rng, k).copied().collect();
                side.sort();
                Fault::Split {
                    side,
                    clients: some_clients(rng),
                }
            }
            26..=33 => Fault::OneWay {
                from: target(rng),
                to: node(rng),
            },
            34..=39 => Fault::HoldLink {
                a: target(rng),
                b: node(rng),
            },
            40..=45 => {
                let (a, b) = pair(rng);
                Fault::Lossy {
                    a,
                    b,
                    fail_rate: rng.gen_range(0.01..0.2),
                }
            }
            46..=51 => {
                let (a, b) = pair(rng);
                Fault::Slow {
                    a,
                    b,
                    max_ms: rng.gen_range(50..600),
                }
            }
            52..=67 => Fault::Crash {
                target: target(rng),
                down_ms: rng.gen_range(200..5_000),
            },
            68..=75 => Fault::Clock {
                node: node(rng),
                offset_ms: rng.gen_range(-1_500..=1_500),
            },
            76..=79 => Fault::Clock {
                node: node(rng),
                offset_ms: rng.gen_range(-20_000..=20_000),
            },
            80..=85 if space.membership_changes => Fault::ChangeMembers { group: group(rng) },
            80..=85 => continue,
            86..=90 => Fault::MoveLeader {
                group: group(rng),
                to: node(rng),
            },
            _ => Fault::HealNetwork,
        };
        return fault;
    }
}
