//! Draining a storage node (`DELETE /admin/v1/nodes/{id}`): the node table marks it
//! `draining`, then one step at a time — leadership off first, then each replica moved to
//! the active node with the fewest replicas — until it holds nothing, and it is marked
//! `removed`. Each step is planned from a fresh view of the cluster by the pure
//! [`next_step`], so a step that failed is simply planned again; after
//! [`MAX_DRAIN_FAILURES`] failures in a row the drain stops (the node stays `draining`) and
//! another `DELETE` resumes it. Every move retires its source replica, which leaves a
//! tombstone, so a removed node keeps none.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use boxoffice_raft::types::{GroupId, NodeId, NodeRecord, NodeState as RaftNodeState};
use boxoffice_raft::InventoryClient;
use tokio::task::JoinHandle;

use crate::cluster_view::{assemble, check_replica_move, ClusterView, NodeState};
use crate::problem::ApiError;
use crate::seats::SeatCache;

/// Failed steps in a row after which a drain stops (and waits for another `DELETE`).
pub const MAX_DRAIN_FAILURES: u32 = 5;
/// Pause after a failed step before planning again.
pub const DRAIN_RETRY_MS: u64 = 2_000;

/// What a drain does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainStep {
    /// Hand `group`'s leadership to `to`.
    MoveLeader { group: GroupId, to: NodeId },
    /// Move the node's replica of `group` to `to` (at `to_addr`).
    MoveReplica {
        group: GroupId,
        to: NodeId,
        to_addr: String,
    },
    /// The node holds nothing any more.
    Done,
}

/// Refuses a drain that would leave fewer active nodes than the widest group has voters
/// (409), so every replica has somewhere to go.
pub fn check_drain(view: &ClusterView, node: NodeId) -> Result<(), ApiError> {
    let replication = view.replication();
    let remaining = view.active_nodes_except(Some(node));
    if remaining < replication {
        return Err(ApiError::Conflict {
            detail: format!(
                "draining node {node} would leave {remaining} active nodes, fewer than the {replication} replicas of a group"
            ),
        });
    }
    Ok(())
}

/// The next step of draining `node`: a leadership it holds goes to the voter leading the
/// fewest groups; then a replica goes to the active, reachable node with the fewest
/// replicas that does not hold the group (ties to the lowest id).
pub fn next_step(view: &ClusterView, node: NodeId) -> Result<DrainStep, ApiError> {
    let load = |id: NodeId, leaders: bool| {
        view.nodes
            .iter()
            .find(|n| n.node_id == id)
            .map(|n| if leaders { n.leaders } else { n.replicas })
            .unwrap_or(usize::MAX)
    };
    let led = view.groups.iter().find(|g| g.leader == Some(node));
    if let Some(group) = led {
        let to = group
            .voters
            .iter()
            .copied()
            .filter(|v| *v != node)
            .min_by_key(|v| (load(*v, true), *v));
        if let Some(to) = to {
            return Ok(DrainStep::MoveLeader {
                group: group.group_id,
                to,
            });
        }
    }
    let held = view
        .groups
        .iter()
        .find(|g| g.voters.contains(&node) || g.learners.contains(&node));
    let Some(group) = held else {
        return Ok(DrainStep::Done);
    };
    let to = view
        .nodes
        .iter()
        .filter(|n| n.state == NodeState::Active && n.reachable && n.node_id != node)
        .filter(|n| !group.voters.contains(&n.node_id) && !group.learners.contains(&n.node_id))
        .min_by_key(|n| (n.replicas, n.node_id))
        .map(|n| n.node_id)
        .ok_or_else(|| ApiError::Conflict {
            detail: format!(
                "no active node can take node {node}'s replica of group {}",
                group.group_id
            ),
        })?;
    let to_addr = check_replica_move(view, group.group_id, node, to)?;
    Ok(DrainStep::MoveReplica {
        group: group.group_id,
        to,
        to_addr,
    })
}

/// The drains this API node runs, one task per node; dropping it stops them (a stopped
/// drain leaves the node `draining`, and another `DELETE` resumes it).
#[derive(Default)]
pub struct Drains {
    tasks: Mutex<BTreeMap<NodeId, JoinHandle<()>>>,
}

impl Drains {
    /// Starts draining `node` unless this API node is draining it already.
    pub fn start(&self, inventory: InventoryClient, seats: Arc<SeatCache>, node: NodeRecord) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if tasks.get(&node.node_id).is_some_and(|t| !t.is_finished()) {
            return;
        }
        let node_id = node.node_id;
        tasks.insert(node_id, tokio::spawn(drain(inventory, seats, node)));
    }
}

impl Drop for Drains {
    fn drop(&mut self) {
        let tasks = self.tasks.get_mut().unwrap_or_else(|p| p.into_inner());
        for task in tasks.values() {
            task.abort();
        }
    }
}

async fn drain(inventory: InventoryClient, seats: Arc<SeatCache>, node: NodeRecord) {
    let node_id = node.node_id;
    let mut failures = 0;
    loop {
        let step = async {
            let status = inventory.cluster_status().await?;
            next_step(&assemble(&status, &seats.events_per_group()), node_id)
        }
        .await;
        tracing::info!(node = node_id, ?step, "drain step");
        let done = matches!(step, Ok(DrainStep::Done));
        let result = match step {
            Ok(DrainStep::Done) => inventory
                .put_node(NodeRecord {
                    state: RaftNodeState::Removed,
                    ..node.clone()
                })
                .await
                .map_err(ApiError::from),
            Ok(DrainStep::MoveLeader { group, to }) => inventory
                .move_leader(group, to)
                .await
                .map(drop)
                .map_err(ApiError::from),
            Ok(DrainStep::MoveReplica { group, to, to_addr }) => inventory
                .move_replica(group, node_id, (to, to_addr))
                .await
                .map(drop)
                .map_err(ApiError::from),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) if done => {
                tracing::info!(node = node_id, "node drained and removed");
                ::metrics::counter!("boxoffice_admin_drains_completed_total").increment(1);
                return;
            }
            Ok(()) => {
                ::metrics::counter!("boxoffice_admin_drain_steps_total").increment(1);
                failures = 0;
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(node = node_id, ?error, failures, "drain step failed");
                if failures >= MAX_DRAIN_FAILURES {
                    tracing::error!(
                        node = node_id,
                        "drain stopped; the node stays draining, DELETE it again to resume"
                    );
                    return;
                }
                tokio::time::sleep(Duration::from_millis(DRAIN_RETRY_MS)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cluster_view::{GroupView, NodeView};

    fn node(node_id: NodeId, state: NodeState, replicas: usize, leaders: usize) -> NodeView {
        NodeView {
            node_id,
            addr: format!("10.0.0.{node_id}:7000"),
            state,
            reachable: true,
            replicas,
            leaders,
        }
    }

    fn group(group_id: GroupId, voters: &[NodeId], leader: NodeId) -> GroupView {
        GroupView {
            group_id,
            voters: voters.to_vec(),
            learners: vec![],
            leader: Some(leader),
            term: 1,
            applied_index: Some(1),
            lag: BTreeMap::new(),
            events: 0,
        }
    }

    #[test]
    fn leaderships_go_first_then_replicas_to_the_least_loaded_node_then_done() {
        let mut view = ClusterView {
            nodes: vec![
                node(1, NodeState::Draining, 2, 1),
                node(2, NodeState::Active, 2, 1),
                node(3, NodeState::Active, 2, 0),
                node(4, NodeState::Active, 1, 0),
                node(5, NodeState::Active, 0, 0),
            ],
            groups: vec![group(0, &[1, 2, 3], 2), group(1, &[1, 3, 4], 1)],
            balancer: vec![],
        };
        assert_eq!(
            next_step(&view, 1).unwrap(),
            DrainStep::MoveLeader { group: 1, to: 3 },
            "the voter leading the fewest groups"
        );
        view.groups[1].leader = Some(3);
        assert_eq!(
            next_step(&view, 1).unwrap(),
            DrainStep::MoveReplica {
                group: 0,
                to: 5,
                to_addr: "10.0.0.5:7000".into()
            }
        );
        view.nodes[4].state = NodeState::Draining;
        assert_eq!(
            next_step(&view, 1).unwrap(),
            DrainStep::MoveReplica {
                group: 0,
                to: 4,
                to_addr: "10.0.0.4:7000".into()
            },
            "never onto a draining node"
        );
        view.groups[0].voters = vec![2, 3, 4];
        view.groups[1].voters = vec![3, 4, 5];
        assert_eq!(next_step(&view, 1).unwrap(), DrainStep::Done);
    }

    #[test]
    fn a_drain_needs_as_many_other_active_nodes_as_a_group_has_replicas() {
        let mut view = ClusterView {
            nodes: vec![
                node(1, NodeState::Active, 1, 1),
                node(2, NodeState::Active, 1, 0),
                node(3, NodeState::Active, 1, 0),
                node(4, NodeState::Active, 0, 0),
            ],
            groups: vec![group(0, &[1, 2, 3], 1)],
            balancer: vec![],
        };
        assert!(check_drain(&view, 1).is_ok());
        view.nodes[3].state = NodeState::Draining;
        let refused = check_drain(&view, 1).unwrap_err();
        assert_eq!(refused.to_problem().0.as_u16(), 409);
    }
}
