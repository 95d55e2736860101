//! The simulated storage nodes: the production [`Host`] (real openraft, real state machine,
//! in-memory storage that outlives crashes) behind the production router, served on a
//! turmoil socket. The driver keeps a [`NodeSlot`] per node to look inside between steps
//! and to hand the node operator commands.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use boxoffice_raft::codec::{decode, encode};
use boxoffice_raft::host::MemStorage;
use boxoffice_raft::machine::mutants::Mutant;
use boxoffice_raft::types::{Command, GroupId, NodeId, PutGroupCmd, META_GROUP};
use boxoffice_raft::wire::{Query, QueryResult, ReadReply, ServeError};
use boxoffice_raft::{Clock, ClusterKey, Host, HostConfig, InventoryClient, RaftSettings, Storage};
use tokio::sync::mpsc;

use crate::clock::SkewedClock;
use crate::net::{serve, SimConnector};
use crate::operator::{group_of, operate, MoveEnd, MoveLog, OperatorCommand};

/// The port every simulated storage node listens on.
pub const NODE_PORT: u16 = 7000;

/// The cluster key every simulated node and client signs internal calls with, so the
/// simulation runs production's credential check on every call.
pub const SIM_CLUSTER_KEY: &[u8] = b"simulated-cluster-key-0123456789";

pub fn sim_cluster_key() -> ClusterKey {
    // The constant is longer than the minimum, so this cannot fail.
    #[allow(clippy::expect_used)]
    ClusterKey::new(SIM_CLUSTER_KEY).expect("the simulation's key is long enough")
}

/// The simulated node `id`'s host name (ids start at 1).
pub fn node_name(id: NodeId) -> String {
    format!("n{id}")
}

pub fn node_addr(id: NodeId) -> String {
    format!("{}:{NODE_PORT}", node_name(id))
}

/// Which cluster the simulation runs: the real one, or one broken on purpose to show the
/// simulation catches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Correct,
    /// A node that believes it leads answers reads from its local state without confirming
    /// its leadership with a quorum (the read path minus `ensure_linearizable`).
    StaleLeaderReads,
    /// Reads skip the first-read barrier, so a node restarted as the leader of its old term
    /// answers from a state machine that has not re-applied what it committed before.
    RestartedLeaderReads,
    /// The state machine's best-available picker counts seats of live holds as free
    /// ([`Mutant::PickHeldSeats`]).
    PickHeldSeats,
    /// The state machine's confirm sells a hold still marked active after its expiry, before
    /// a sweep ([`Mutant::ConfirmAfterExpiry`]).
    ConfirmAfterExpiry,
    /// Every replica's admission step admits from the tail of the waiting room's line
    /// instead of its head ([`Mutant::AdmitOutOfOrder`]).
    AdmitOutOfOrder,
    /// Every replica's storage loses the changes of some applies before they reach a
    /// checkpoint that counts them as applied ([`Mutant::CheckpointLosesChanges`]).
    CheckpointLosesChanges,
}

impl Variant {
    /// The state machine mutant this variant switches on, if any.
    pub fn mutant(self) -> Option<Mutant> {
        match self {
            Variant::Correct | Variant::StaleLeaderReads | Variant::RestartedLeaderReads => None,
            Variant::PickHeldSeats => Some(Mutant::PickHeldSeats),
            Variant::ConfirmAfterExpiry => Some(Mutant::ConfirmAfterExpiry),
            Variant::AdmitOutOfOrder => Some(Mutant::AdmitOutOfOrder),
            Variant::CheckpointLosesChanges => Some(Mutant::CheckpointLosesChanges),
        }
    }
}

/// An operator command for one node (run inside that node's simulated runtime).
#[derive(Debug, Clone)]
pub enum Control {
    /// A raw membership change (this node must lead the group): add `add` as a learner of
    /// `group`, then make the voters exactly `voters`, then record the new member list in
    /// the meta group's table.
    ChangeMembers {
        group: GroupId,
        add: NodeId,
        voters: BTreeSet<NodeId>,
    },
    /// An admin API move, run from this node with a client over its transport that knows
    /// every node in `seeds` (`operator.rs`).
    Operate {
        command: OperatorCommand,
        seeds: Vec<String>,
    },
}

/// What the driver sees of one node between steps.
#[derive(Default)]
pub struct NodeSlot {
    /// The running host (`None` while crashed or before its first start).
    pub host: Option<Host>,
    pub control: Option<mpsc::UnboundedSender<Control>>,
    /// What operator commands answered, and when (simulated ms), for the run's timeline.
    pub control_log: Vec<(u64, String)>,
    /// How each raw membership change this node ran ended.
    pub changes_ended: Vec<MoveEnd>,
    /// Admin moves handed to this node that have not ended (lost if it crashes).
    pub moves_in_flight: usize,
}

/// Everything one node keeps across crashes: its storage and its clock.
#[derive(Clone)]
pub struct NodeDurable {
    pub id: NodeId,
    pub storage: MemStorage,
    pub clock: Arc<SkewedClock>,
    pub slot: Rc<RefCell<NodeSlot>>,
    /// Where the admin moves run on any node record what they did (one log per run).
    pub moves: MoveLog,
}

impl NodeDurable {
    pub fn new(id: NodeId, moves: MoveLog) -> NodeDurable {
        NodeDurable {
            id,
            storage: MemStorage::default(),
            clock: Arc::new(SkewedClock::default()),
            slot: Rc::new(RefCell::new(NodeSlot::default())),
            moves,
        }
    }
}

/// Raft timing for the simulation: snapshots frequent enough that lagging and restarted
/// replicas catch up by snapshot install within a run, and checkpoints rare enough that a
/// crash loses state a restart must re-apply from the log, and a log cache small enough that
/// entries are read back from the log store. The heartbeat and elections are
/// production's ([`RaftSettings::default`]), so the seeds test the timing nodes run with.
pub fn sim_raft_settings() -> RaftSettings {
    RaftSettings {
        snapshot_every_entries: 200,
        keep_entries: 50,
        checkpoint_every_entries: 16,
        // A few entries' worth: replication and apply read most entries back from the
        // log, not from memory, so the simulator drives that path too.
        log_cache_bytes: 2 * 1024,
        ..RaftSettings::default()
    }
}

/// One start of a storage node: open the host from durable storage, serve the router.
pub async fn node_software(durable: NodeDurable, variant: Variant) -> turmoil::Result {
    let cfg = HostConfig {
        node_id: durable.id,
        addr: node_addr(durable.id),
        raft: sim_raft_settings(),
        clock: durable.clock.clone() as Arc<dyn Clock>,
        cluster_key: Some(sim_cluster_key()),
    };
    let host = Host::open(cfg, Storage::Memory(durable.storage.clone()), SimConnector).await?;
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", NODE_PORT)).await?;
    let mut router = boxoffice_raft::server::router(host.clone());
    if variant == Variant::StaleLeaderReads {
        router = router.layer(axum::middleware::from_fn_with_state(
            host.clone(),
            stale_leader_read,
        ));
    }
    if variant == Variant::RestartedLeaderReads {
        router = router.layer(axum::middleware::from_fn_with_state(
            host.clone(),
            read_without_barrier,
        ));
    }
    let (tx, rx) = mpsc::unbounded_channel();
    {
        let mut slot = durable.slot.borrow_mut();
        slot.host = Some(host.clone());
        slot.control = Some(tx);
    }
    tokio::task::spawn_local(control_loop(
        host,
        durable.slot.clone(),
        durable.moves.clone(),
        rx,
    ));
    serve(listener, router).await;
    Ok(())
}

async fn control_loop(
    host: Host,
    slot: Rc<RefCell<NodeSlot>>,
    moves: MoveLog,
    mut rx: mpsc::UnboundedReceiver<Control>,
) {
    let mut turns: BTreeMap<GroupId, Rc<tokio::sync::Mutex<()>>> = BTreeMap::new();
    while let Some(control) = rx.recv().await {
        let (group, add, voters) = match control {
            Control::ChangeMembers { group, add, voters } => (group, add, voters),
            Control::Operate { command, seeds } => {
                let client = InventoryClient::new(host.transport(), seeds);
                let turn = turns.entry(group_of(&command)).or_default().clone();
                let (moves, slot) = (moves.clone(), slot.clone());
                tokio::task::spawn_local(async move {
                    operate(client, command, turn, moves).await;
                    let mut slot = slot.borrow_mut();
                    slot.moves_in_flight = slot.moves_in_flight.saturating_sub(1);
                });
                continue;
            }
        };
        let (end, answer) = match host
            .change_members(group, (add, node_addr(add)), voters.clone())
            .await
        {
            Ok(()) => {
                let members: Vec<(NodeId, String)> =
                    voters.iter().map(|&id| (id, node_addr(id))).collect();
                let client = InventoryClient::new(
                    host.transport(),
                    members.iter().map(|(_, a)| a.clone()).collect(),
                );
                let request_id = format!("sim/members/{group}/{add}/{voters:?}");
                match client
                    .execute(
                        META_GROUP,
                        &request_id,
                        Command::PutGroup(PutGroupCmd { group, members }),
                    )
                    .await
                {
                    Ok(_) => (
                        MoveEnd::Done,
                        format!("group {group}: voters now {voters:?} (table updated)"),
                    ),
                    Err(e) => (
                        MoveEnd::Done,
                        format!("group {group}: voters now {voters:?}; table update failed: {e}"),
                    ),
                }
            }
            // Drawn on the leader of the moment, it may run after an election: the node no
            // longer leads and refuses, as the change asks of it. The next draw goes to the
            // new leader.
            Err(e @ ServeError::NotLeader { .. }) => (
                MoveEnd::Refused,
                format!("group {group}: change to {voters:?} refused: {e}"),
            ),
            Err(e) => (
                MoveEnd::Failed,
                format!("group {group}: change to {voters:?} failed: {e}"),
            ),
        };
        let mut slot = slot.borrow_mut();
        slot.control_log.push((crate::clock::sim_ms(), answer));
        slot.changes_ended.push(end);
    }
}

/// The group of an `/inventory/{group}/read` request.
fn read_group(request: &Request) -> Option<GroupId> {
    request
        .uri()
        .path()
        .strip_prefix("/inventory/")
        .and_then(|rest| rest.strip_suffix("/read"))
        .and_then(|g| g.parse().ok())
}

/// The broken variant's read path: a node that thinks it is the leader answers from local
/// state at once. Everything else passes through to the production router.
async fn stale_leader_read(State(host): State<Host>, request: Request, next: Next) -> Response {
    let Some(group) = read_group(&request) else {
        return next.run(request).await;
    };
    let Ok(body) = axum::body::to_bytes(request.into_body(), usize::MAX).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let answer: Result<ReadReply, ServeError> = match (decode::<Query>(&body), host.group(group)) {
        (Err(e), _) => return (StatusCode::BAD_REQUEST, e).into_response(),
        (_, None) => Err(ServeError::UnknownGroup(group)),
        (Ok(query), Some(g)) => {
            let metrics = g.raft.metrics().borrow().clone();
            if metrics.state != openraft::ServerState::Leader {
                Err(ServeError::NotLeader {
                    group,
                    leader: None,
                })
            } else {
                let replica = g.shared.read();
                let m = &replica.machine;
                let at_ms = m.now_ms();
                match query {
                    Query::SeatOwners(event) => Ok(ReadReply {
                        at_ms,
                        result: QueryResult::SeatOwners(m.seat_owners(&event, at_ms)),
                    }),
                    Query::Placement(event) => Ok(ReadReply {
                        at_ms,
                        result: QueryResult::Placement(m.placement().get(&event).copied()),
                    }),
                    Query::Groups => Ok(ReadReply {
                        at_ms,
                        result: QueryResult::Groups(
                            m.groups().iter().map(|(g, ms)| (*g, ms.clone())).collect(),
                        ),
                    }),
                    other => Err(ServeError::Invalid(format!(
                        "the broken variant does not serve {other:?}"
                    ))),
                }
            }
        }
    };
    (StatusCode::OK, Body::from(encode(&answer))).into_response()
}

/// The restarted-leader variant's read path: the production read minus its first-read
/// barrier. Everything else passes through to the production router.
async fn read_without_barrier(State(host): State<Host>, request: Request, next: Next) -> Response {
    let Some(group) = read_group(&request) else {
        return next.run(request).await;
    };
    let Ok(body) = axum::body::to_bytes(request.into_body(), usize::MAX).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let answer = match decode::<Query>(&body) {
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
        Ok(query) => host.read_past_barrier(group, query).await,
    };
    (StatusCode::OK, Body::from(encode(&answer))).into_response()
}
