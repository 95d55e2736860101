//! What the client learns about the cluster itself, for operators: the group table from the
//! meta group and every storage node's own status (`/cluster/status`), asked of all nodes
//! at once.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::calls::{refusal, unexpected_read};
use super::InventoryClient;
use crate::codec::{decode, encode};
use crate::host::NodeStatus;
use crate::replica_move::{ReplicaMove, ReplicaMoved};
use crate::transport::TransportError;
use crate::types::{
    Command, GroupId, NodeId, NodeRecord, NodeState, Outcome, PutGroupCmd, PutNodeCmd, META_GROUP,
};
use crate::wire::{Query, QueryResult, ServeError};
use crate::InventoryError;

/// How long one node's status may take before it counts as unreachable.
pub const NODE_STATUS_TIMEOUT_MS: u64 = 2_000;

/// Longest one leader move may take, end to end (catch-up, lease, election).
pub const MOVE_LEADER_TIMEOUT_MS: u64 = 30_000;

/// Longest one replica move may take at the leader: a leader move first when the source
/// leads, the learner's catch-up, two membership entries.
pub const MOVE_REPLICA_TIMEOUT_MS: u64 =
    MOVE_LEADER_TIMEOUT_MS + crate::replica_move::LEARNER_CATCH_UP_TIMEOUT_MS + 10_000;

/// Further attempts to retire a moved replica's source, and the pause before each.
const RETIRE_ATTEMPTS: u32 = 10;
const RETIRE_RETRY_MS: u64 = 300;

/// The group table and each known node's answer.
#[derive(Debug, Clone)]
pub struct ClusterStatus {
    /// Every group's members as the meta group records them.
    pub table: Vec<(GroupId, Vec<(NodeId, String)>)>,
    /// The meta group's node table (nodes added to the cluster, with their state).
    pub node_table: Vec<NodeRecord>,
    /// Each address asked (table members, then seeds) and its status, `None` when it did
    /// not answer in time.
    pub nodes: Vec<(String, Option<NodeStatus>)>,
}

impl InventoryClient {
    /// The group table and the node table, then the status of every node they name (and
    /// every seed).
    pub async fn cluster_status(&self) -> Result<ClusterStatus, InventoryError> {
        let table = self.refresh_groups().await?;
        let node_table = self.nodes().await?;
        let mut addrs: Vec<String> = Vec::new();
        let members = table.iter().flat_map(|(_, members)| members.iter());
        let added = node_table.iter().map(|n| &n.addr);
        for addr in members
            .map(|(_, a)| a)
            .chain(added)
            .chain(self.seeds.iter())
        {
            if !addrs.contains(addr) {
                addrs.push(addr.clone());
            }
        }
        let mut asks = tokio::task::JoinSet::new();
        for (i, addr) in addrs.iter().enumerate() {
            let (client, addr) = (self.clone(), addr.clone());
            crate::spawn::spawn_into(&mut asks, async move {
                let status = match client.node_status(&addr).await {
                    Ok(status) => Some(status),
                    Err(error) => {
                        tracing::debug!(addr, %error, "node status");
                        None
                    }
                };
                (i, status)
            });
        }
        let mut nodes: Vec<(String, Option<NodeStatus>)> =
            addrs.into_iter().map(|a| (a, None)).collect();
        while let Some(answer) = asks.join_next().await {
            if let Ok((i, status)) = answer {
                nodes[i].1 = status;
            }
        }
        Ok(ClusterStatus {
            table,
            node_table,
            nodes,
        })
    }
}

impl InventoryClient {
    /// One storage node's own status (`/cluster/status`), within [`NODE_STATUS_TIMEOUT_MS`].
    pub async fn node_status(&self, addr: &str) -> Result<NodeStatus, InventoryError> {
        let timeout = Duration::from_millis(NODE_STATUS_TIMEOUT_MS);
        let bytes = self
            .transport
            .get(addr, "/cluster/status", timeout)
            .await
            .map_err(|e| InventoryError::Protocol(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| InventoryError::Protocol(e.to_string()))
    }

    /// Moves `group`'s leadership to `target` (a voter), asking the current leader to hand
    /// it over (`Host::move_leader`); answers the new leader. Not retried: a move that
    /// failed says why, and the operator decides.
    pub async fn move_leader(
        &self,
        group: GroupId,
        target: NodeId,
    ) -> Result<NodeId, InventoryError> {
        self.refresh_groups().await?;
        let path = format!("/cluster/groups/{group}/leader");
        let leader = self
            .ask_leader(group, &path, encode(&target), MOVE_LEADER_TIMEOUT_MS)
            .await?;
        self.routes_mut().leaders.remove(&group);
        Ok(leader)
    }

    /// Asks `group`'s leader to run an operation on the cluster (a leader or replica move),
    /// following leader hints; one pass, not retried past a failure the leader reports.
    async fn ask_leader<R: DeserializeOwned>(
        &self,
        group: GroupId,
        path: &str,
        body: Vec<u8>,
        timeout_ms: u64,
    ) -> Result<R, InventoryError> {
        let timeout = Duration::from_millis(timeout_ms);
        let mut candidates = self.candidates(group);
        let max_tries = 2 * candidates.len() + 4;
        let mut i = 0;
        while i < candidates.len() && i < max_tries {
            let addr = candidates[i].clone();
            i += 1;
            let answer = match self
                .transport
                .post(&addr, path, body.clone(), timeout)
                .await
            {
                Ok(bytes) => {
                    decode::<Result<R, ServeError>>(&bytes).map_err(InventoryError::Protocol)?
                }
                Err(e) if e.not_sent() => continue,
                Err(TransportError::Status {
                    status: 401, body, ..
                }) => return Err(InventoryError::Unauthorized(body)),
                Err(e) => {
                    return Err(InventoryError::OutcomeUnknown {
                        group,
                        last_error: e.to_string(),
                    })
                }
            };
            match answer {
                Ok(value) => return Ok(value),
                Err(ServeError::NotLeader {
                    leader: Some((_, hint)),
                    ..
                }) if hint != addr => {
                    candidates.insert(i, hint);
                }
                Err(ServeError::NotLeader { .. }) | Err(ServeError::UnknownGroup(_)) => {}
                Err(ServeError::Invalid(reason)) => return Err(InventoryError::Invalid(reason)),
                Err(ServeError::Unavailable(reason)) => {
                    return Err(InventoryError::Unavailable { group, reason })
                }
            }
        }
        Err(InventoryError::NoLeader { group })
    }

    /// The meta group's node table: every node added to the cluster and its state.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, InventoryError> {
        match self.read(META_GROUP, Query::Nodes).await?.result {
            QueryResult::Nodes(nodes) => Ok(nodes),
            other => Err(unexpected_read("nodes", other)),
        }
    }

    /// Records `node` (its address and state) in the node table; recording it as it already
    /// is changes nothing.
    pub async fn put_node(&self, node: NodeRecord) -> Result<(), InventoryError> {
        let request_id = format!(
            "node/{}/{}/{}",
            node.node_id,
            node.state.as_str(),
            node.addr
        );
        let reply = self
            .execute(
                META_GROUP,
                &request_id,
                Command::PutNode(PutNodeCmd { node }),
            )
            .await?;
        match reply.outcome {
            Outcome::Done => Ok(()),
            other => Err(refusal("record node", other)),
        }
    }

    /// Moves `group`'s replica from node `from` to node `to` (whose address is `to_addr`):
    /// the target drops any tombstone of the group, the leader adds it as a learner, waits
    /// for it to catch up and swaps it for the source by joint consensus; then the meta
    /// group's table records the new members and the source's replica is retired.
    pub async fn move_replica(
        &self,
        group: GroupId,
        from: NodeId,
        to: (NodeId, String),
    ) -> Result<ReplicaMoveReport, InventoryError> {
        let table = self.refresh_groups().await?;
        let mut addrs: BTreeMap<NodeId, String> = table
            .iter()
            .flat_map(|(_, members)| members.iter().cloned())
            .collect();
        addrs.insert(to.0, to.1.clone());
        let call = Duration::from_millis(super::CALL_TIMEOUT_MS);
        let unavailable = |reason: String| InventoryError::Unavailable { group, reason };
        self.transport
            .post(
                &to.1,
                &format!("/cluster/groups/{group}/adopt"),
                Vec::new(),
                call,
            )
            .await
            .map_err(|e| unavailable(format!("node {} did not answer: {e}", to.0)))
            .and_then(|bytes| {
                decode::<Result<(), ServeError>>(&bytes).map_err(InventoryError::Protocol)
            })?
            .map_err(|e| unavailable(format!("node {} cannot take the replica: {e}", to.0)))?;
        let mv = ReplicaMove {
            from,
            to: to.0,
            to_addr: to.1.clone(),
        };
        let path = format!("/cluster/groups/{group}/move");
        let moved: ReplicaMoved = self
            .ask_leader(group, &path, encode(&mv), MOVE_REPLICA_TIMEOUT_MS)
            .await?;
        let members: Vec<(NodeId, String)> = moved
            .voters
            .iter()
            .map(|v| (*v, addrs.get(v).cloned().unwrap_or_default()))
            .collect();
        let request_id = format!("group-table/{group}/{}", moved.membership_index);
        let command = Command::PutGroup(PutGroupCmd { group, members });
        self.execute(META_GROUP, &request_id, command).await?;
        self.routes_mut().leaders.remove(&group);
        self.refresh_groups().await?;
        let source_retired = match addrs.get(&from) {
            Some(addr) => {
                let retire = || async {
                    self.transport
                        .post(
                            addr,
                            &format!("/cluster/groups/{group}/retire"),
                            encode(&moved.voters),
                            call,
                        )
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|b| decode::<Result<(), ServeError>>(&b))
                        .and_then(|answer| answer.map_err(|e| e.to_string()))
                };
                // A source that led the group may not have stepped down yet when the new
                // membership commits (it refuses to retire while it thinks it leads): give it
                // a few elections' time.
                let mut retired = retire().await;
                for _ in 0..RETIRE_ATTEMPTS {
                    if retired.is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(RETIRE_RETRY_MS)).await;
                    retired = retire().await;
                }
                if let Err(error) = &retired {
                    // Not a voter any more whatever it thinks; its data stays until a drain or
                    // a later retire call removes it.
                    tracing::warn!(group, node = from, %error, "could not retire the source replica");
                }
                retired.is_ok()
            }
            None => false,
        };
        Ok(ReplicaMoveReport {
            voters: moved.voters,
            source_retired,
        })
    }
}

impl InventoryClient {
    /// Creates `count` inventory groups after the highest group id of the table, each with
    /// `replication` voters: the active nodes (node table, or bootstrapped members) holding
    /// the fewest replicas, ties to the lowest id. Each group is first claimed in the meta
    /// group's table (request id `add-group/{g}`: a concurrent creator of the same id with
    /// other members is refused `RequestIdReused`, so two creators never initialize one id
    /// twice), then initialized through one of its members. Answers the new groups and
    /// their members.
    pub async fn add_groups(
        &self,
        count: u64,
        replication: usize,
    ) -> Result<Vec<(GroupId, Vec<NodeId>)>, InventoryError> {
        let table = self.refresh_groups().await?;
        let node_table = self.nodes().await?;
        let mut loads: BTreeMap<NodeId, (usize, String)> = BTreeMap::new();
        for (_, members) in &table {
            for (id, addr) in members {
                loads.entry(*id).or_insert((0, addr.clone())).0 += 1;
            }
        }
        for node in &node_table {
            if node.state == NodeState::Active {
                loads.entry(node.node_id).or_insert((0, node.addr.clone()));
            } else {
                loads.remove(&node.node_id);
            }
        }
        if loads.len() < replication || replication == 0 {
            return Err(InventoryError::Invalid(format!(
                "{} active nodes cannot hold groups of {replication} replicas",
                loads.len()
            )));
        }
        let first = table.iter().map(|(g, _)| *g).max().unwrap_or(META_GROUP) + 1;
        let mut created = Vec::new();
        for group in first..first + count {
            let mut by_load: Vec<(usize, NodeId)> =
                loads.iter().map(|(id, (n, _))| (*n, *id)).collect();
            by_load.sort();
            let mut members: Vec<(NodeId, String)> = by_load[..replication]
                .iter()
                .map(|(_, id)| (*id, loads[id].1.clone()))
                .collect();
            members.sort();
            for (id, _) in &members {
                if let Some(load) = loads.get_mut(id) {
                    load.0 += 1;
                }
            }
            let claim = Command::PutGroup(PutGroupCmd {
                group,
                members: members.clone(),
            });
            let reply = self
                .execute(META_GROUP, &format!("add-group/{group}"), claim)
                .await?;
            if reply.outcome != Outcome::Done {
                return Err(refusal("claim a group id", reply.outcome));
            }
            self.initialize_group(group, &members).await?;
            created.push((group, members.iter().map(|(id, _)| *id).collect()));
        }
        self.refresh_groups().await?;
        Ok(created)
    }

    /// Initializes `group` with `members` through the first member that answers.
    async fn initialize_group(
        &self,
        group: GroupId,
        members: &[(NodeId, String)],
    ) -> Result<(), InventoryError> {
        let call = Duration::from_millis(super::CALL_TIMEOUT_MS);
        let mut last = String::new();
        for (id, addr) in members {
            let path = format!("/cluster/groups/{group}/init");
            let answer = self
                .transport
                .post(addr, &path, encode(&members.to_vec()), call)
                .await
                .map_err(|e| e.to_string())
                .and_then(|b| decode::<Result<(), ServeError>>(&b))
                .and_then(|answer| answer.map_err(|e| e.to_string()));
            match answer {
                Ok(()) => return Ok(()),
                Err(error) => last = format!("node {id}: {error}"),
            }
        }
        Err(InventoryError::Unavailable {
            group,
            reason: format!("no member could initialize the group ({last})"),
        })
    }
}

/// What a replica move did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaMoveReport {
    /// The group's voters after the move.
    pub voters: Vec<NodeId>,
    /// Whether the source's replica was tombstoned and stopped (it is no voter either way).
    pub source_retired: bool,
}
