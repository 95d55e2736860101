//! `GET /admin/v1/cluster`: the cluster as an operator sees it, assembled from the meta
//! group's table, every storage node's own status and this node's seat feeds. Pure: the
//! handler gathers, [`assemble`] decides.
//!
//! A group's voters, learners, leader and applied index come from the replica that leads it
//! (the one reporting itself leader with the highest term), or, while it has none, from the
//! replica with the highest term. Lag is how many entries each replica's log is behind the
//! leader's, for the replicas that answered.

use std::collections::{BTreeMap, BTreeSet};

use boxoffice_raft::client::ClusterStatus;
use boxoffice_raft::host::GroupStatus;
use boxoffice_raft::types::{GroupId, NodeId, NodeState as RaftNodeState};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::problem::ApiError;

/// What a storage node is doing in the cluster, as the meta group's node table records it
/// (a node named only by the group table — bootstrapped before the node table — is active).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Active,
    Draining,
    Removed,
}

impl From<RaftNodeState> for NodeState {
    fn from(state: RaftNodeState) -> NodeState {
        match state {
            RaftNodeState::Active => NodeState::Active,
            RaftNodeState::Draining => NodeState::Draining,
            RaftNodeState::Removed => NodeState::Removed,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct NodeView {
    pub node_id: NodeId,
    pub addr: String,
    pub state: NodeState,
    /// Whether the node answered its status within the timeout.
    pub reachable: bool,
    /// Groups with a replica (voter or learner) on this node.
    pub replicas: usize,
    /// Groups this node leads.
    pub leaders: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct GroupView {
    pub group_id: GroupId,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub leader: Option<NodeId>,
    pub term: u64,
    /// The leader's (or best-informed replica's) applied log index.
    pub applied_index: Option<u64>,
    /// Entries each answering replica's log is behind the leader's (node id → entries).
    #[schema(value_type = BTreeMap<String, u64>)]
    pub lag: BTreeMap<NodeId, u64>,
    /// Events placed in the group (0 for the meta group).
    pub events: usize,
}

/// One decision of the balancer (which runs on the node leading the meta group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BalancerDecision {
    /// When it was decided, Unix milliseconds (the deciding node's clock).
    pub at_ms: u64,
    pub decided_by: NodeId,
    pub decision: String,
    /// `done`, or why it failed.
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ClusterView {
    pub nodes: Vec<NodeView>,
    pub groups: Vec<GroupView>,
    /// The balancer's latest decisions, oldest first (at most 16 per node that led the
    /// meta group).
    pub balancer: Vec<BalancerDecision>,
}

impl ClusterView {
    /// The most voters any group has: the replicas a new group gets, and the active nodes a
    /// drain must leave.
    pub fn replication(&self) -> usize {
        self.groups
            .iter()
            .map(|g| g.voters.len())
            .max()
            .unwrap_or(0)
    }

    /// How many nodes are active, `except` one not counted.
    pub fn active_nodes_except(&self, except: Option<NodeId>) -> usize {
        self.nodes
            .iter()
            .filter(|n| Some(n.node_id) != except && n.state == NodeState::Active)
            .count()
    }
}

/// `POST /admin/v1/groups/{group_id}/leader`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaderMove {
    /// The voter of the group that should lead it.
    pub node_id: NodeId,
}

/// `POST /admin/v1/groups/{group_id}/move`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplicaMoveRequest {
    /// The node whose replica of the group moves (a voter of the group).
    pub from: NodeId,
    /// The node it moves to (active, reachable, holding no replica of the group).
    pub to: NodeId,
}

/// What a replica move did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReplicaMoved {
    pub group_id: GroupId,
    pub from: NodeId,
    pub to: NodeId,
    /// The group's voters after the move.
    pub voters: Vec<NodeId>,
    /// Whether the source's replica was tombstoned and stopped (when `false` it is no
    /// voter all the same; draining the node removes it).
    pub source_retired: bool,
    /// How long the move took, in milliseconds.
    pub took_ms: u64,
}

/// `POST /admin/v1/nodes`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeAdd {
    /// The id the node was started with (`boxoffice node --id`).
    pub node_id: NodeId,
    /// Where it listens (`host:port`, as given to `--listen` or `--advertise`).
    pub addr: String,
}

/// What a leader move did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LeaderMoved {
    pub group_id: GroupId,
    pub leader: NodeId,
    /// The leader before the move (`null` if the group had none).
    pub previous_leader: Option<NodeId>,
    /// How long the move took, in milliseconds (writes to the group wait this long at most).
    pub took_ms: u64,
}

/// Checks a leader move against the cluster as it stands: the group exists (404), the node
/// is in the cluster and a voter of the group (422 naming `node_id`). Answers the group's
/// current leader.
pub fn check_leader_move(
    view: &ClusterView,
    group_id: GroupId,
    node_id: NodeId,
) -> Result<Option<NodeId>, ApiError> {
    let group = view
        .groups
        .iter()
        .find(|g| g.group_id == group_id)
        .ok_or_else(|| ApiError::not_found(format!("no group {group_id}")))?;
    if !view.nodes.iter().any(|n| n.node_id == node_id) {
        return Err(ApiError::Unprocessable {
            detail: format!("no node {node_id} in the cluster"),
            field: Some("node_id".into()),
        });
    }
    if !group.voters.contains(&node_id) {
        return Err(ApiError::Unprocessable {
            detail: format!(
                "node {node_id} is not a voter of group {group_id} (voters {:?}, learners {:?})",
                group.voters, group.learners
            ),
            field: Some("node_id".into()),
        });
    }
    Ok(group.leader)
}

/// Checks a replica move against the cluster as it stands: the group exists (404); `from`
/// and `to` are nodes of the cluster (422 naming the field), different, `from` a voter of
/// the group (422), `to` active, reachable and holding no replica of it (409); and both the
/// group's voters now and its voters after the move keep a reachable majority (409).
/// Answers the target's address.
pub fn check_replica_move(
    view: &ClusterView,
    group_id: GroupId,
    from: NodeId,
    to: NodeId,
) -> Result<String, ApiError> {
    let group = view
        .groups
        .iter()
        .find(|g| g.group_id == group_id)
        .ok_or_else(|| ApiError::not_found(format!("no group {group_id}")))?;
    let node = |id: NodeId, field: &str| {
        view.nodes
            .iter()
            .find(|n| n.node_id == id)
            .ok_or_else(|| ApiError::Unprocessable {
                detail: format!("no node {id} in the cluster"),
                field: Some(field.into()),
            })
    };
    node(from, "from")?;
    let target = node(to, "to")?;
    if from == to {
        return Err(ApiError::Unprocessable {
            detail: "from and to are the same node".into(),
            field: Some("to".into()),
        });
    }
    if !group.voters.contains(&from) {
        return Err(ApiError::Unprocessable {
            detail: format!(
                "node {from} holds no replica of group {group_id} (voters {:?})",
                group.voters
            ),
            field: Some("from".into()),
        });
    }
    if group.voters.contains(&to) {
        return Err(ApiError::Conflict {
            detail: format!("node {to} already holds a replica of group {group_id}"),
        });
    }
    if target.state != NodeState::Active || !target.reachable {
        return Err(ApiError::Conflict {
            detail: format!(
                "node {to} cannot take replicas (state {:?}, reachable {})",
                target.state, target.reachable
            ),
        });
    }
    let reachable = |id: &NodeId| view.nodes.iter().any(|n| n.node_id == *id && n.reachable);
    let after: Vec<NodeId> = group
        .voters
        .iter()
        .copied()
        .filter(|v| *v != from)
        .chain([to])
        .collect();
    for voters in [&group.voters, &after] {
        let up = voters.iter().filter(|v| reachable(v)).count();
        if up <= voters.len() / 2 {
            return Err(ApiError::Conflict {
                detail: format!(
                    "group {group_id} would have no reachable majority among voters {voters:?} ({up} reachable)"
                ),
            });
        }
    }
    Ok(target.addr.clone())
}

/// The replica whose view of `group` counts: the leader with the highest term, else the
/// highest term.
fn best_view<'a>(replicas: &[(NodeId, &'a GroupStatus)]) -> Option<&'a GroupStatus> {
    let rank = |s: &GroupStatus| (s.state == "Leader", s.term);
    replicas
        .iter()
        .map(|(_, s)| *s)
        .max_by(|a, b| rank(a).cmp(&rank(b)))
}

pub fn assemble(
    status: &ClusterStatus,
    events_per_group: &BTreeMap<GroupId, usize>,
) -> ClusterView {
    // Every replica's report, by group.
    let mut reports: BTreeMap<GroupId, Vec<(NodeId, &GroupStatus)>> = BTreeMap::new();
    let mut addrs: BTreeMap<NodeId, String> = BTreeMap::new();
    let mut reachable: BTreeSet<NodeId> = BTreeSet::new();
    for (_, node) in &status.nodes {
        let Some(node) = node else { continue };
        reachable.insert(node.node_id);
        addrs.insert(node.node_id, node.addr.clone());
        for g in &node.groups {
            reports.entry(g.group).or_default().push((node.node_id, g));
        }
    }
    for (group, members) in &status.table {
        reports.entry(*group).or_default();
        for (id, addr) in members {
            addrs.entry(*id).or_insert_with(|| addr.clone());
        }
    }
    let mut states: BTreeMap<NodeId, NodeState> = BTreeMap::new();
    for node in &status.node_table {
        addrs
            .entry(node.node_id)
            .or_insert_with(|| node.addr.clone());
        states.insert(node.node_id, node.state.into());
    }
    let mut groups = Vec::new();
    for (group, replicas) in &reports {
        let table_members = || -> Vec<NodeId> {
            status
                .table
                .iter()
                .find(|(g, _)| g == group)
                .map(|(_, m)| m.iter().map(|(id, _)| *id).collect())
                .unwrap_or_default()
        };
        let view = best_view(replicas);
        let (voters, learners) = match view {
            Some(v) => (v.voters.clone(), v.learners.clone()),
            None => (table_members(), Vec::new()),
        };
        let leader = view.and_then(|v| v.leader);
        let leader_last = leader.and_then(|l| {
            replicas
                .iter()
                .find(|(id, _)| *id == l)
                .and_then(|(_, s)| s.last_log_index)
        });
        let lag = match leader_last {
            Some(last) => replicas
                .iter()
                .filter(|(id, _)| voters.contains(id) || learners.contains(id))
                .map(|(id, s)| (*id, last.saturating_sub(s.last_log_index.unwrap_or(0))))
                .collect(),
            None => BTreeMap::new(),
        };
        groups.push(GroupView {
            group_id: *group,
            voters,
            learners,
            leader,
            term: view.map(|v| v.term).unwrap_or(0),
            applied_index: view.and_then(|v| v.applied_index),
            lag,
            events: events_per_group.get(group).copied().unwrap_or(0),
        });
    }
    for g in &groups {
        for id in g.voters.iter().chain(&g.learners) {
            addrs.entry(*id).or_default();
        }
    }
    let nodes = addrs
        .into_iter()
        .map(|(node_id, addr)| NodeView {
            node_id,
            addr,
            state: states.get(&node_id).copied().unwrap_or(NodeState::Active),
            reachable: reachable.contains(&node_id),
            replicas: groups
                .iter()
                .filter(|g| g.voters.contains(&node_id) || g.learners.contains(&node_id))
                .count(),
            leaders: groups.iter().filter(|g| g.leader == Some(node_id)).count(),
        })
        .collect();
    let mut balancer: Vec<BalancerDecision> = status
        .nodes
        .iter()
        .filter_map(|(_, s)| s.as_ref())
        .flat_map(|s| s.balancer.iter())
        .map(|e| BalancerDecision {
            at_ms: e.at_ms,
            decided_by: e.decided_by,
            decision: e.decision.clone(),
            outcome: e.outcome.clone(),
        })
        .collect();
    balancer.sort_by_key(|d| (d.at_ms, d.decided_by));
    ClusterView {
        nodes,
        groups,
        balancer,
    }
}

#[cfg(test)]
mod tests {
    use boxoffice_raft::host::NodeStatus;

    use super::*;

    fn replica(
        group: GroupId,
        state: &str,
        term: u64,
        leader: Option<NodeId>,
        last: u64,
    ) -> GroupStatus {
        GroupStatus {
            group,
            state: state.into(),
            term,
            leader,
            last_log_index: Some(last),
            applied_index: Some(last),
            snapshot_index: None,
            purged_index: None,
            voters: vec![1, 2, 3],
            learners: vec![],
        }
    }

    fn node(id: NodeId, groups: Vec<GroupStatus>) -> (String, Option<NodeStatus>) {
        let addr = format!("10.0.0.{id}:7000");
        (
            addr.clone(),
            Some(NodeStatus {
                node_id: id,
                addr,
                groups,
                balancer: vec![],
            }),
        )
    }

    #[test]
    fn the_leaders_view_counts_and_lag_is_measured_against_its_log() {
        let members: Vec<(NodeId, String)> = (1..=3)
            .map(|id| (id, format!("10.0.0.{id}:7000")))
            .collect();
        let status = ClusterStatus {
            node_table: vec![],
            table: vec![(0, members.clone()), (1, members)],
            nodes: vec![
                node(
                    1,
                    vec![
                        replica(0, "Leader", 2, Some(1), 40),
                        replica(1, "Follower", 3, Some(2), 90),
                    ],
                ),
                node(
                    2,
                    vec![
                        replica(0, "Follower", 2, Some(1), 40),
                        replica(1, "Leader", 3, Some(2), 100),
                    ],
                ),
                // Node 3 is down: it is listed, unreachable, and has no lag entry.
                ("10.0.0.3:7000".into(), None),
            ],
        };
        let view = assemble(&status, &BTreeMap::from([(1, 7)]));
        assert_eq!(view.groups.len(), 2);
        let g1 = &view.groups[1];
        assert_eq!(
            (g1.leader, g1.term, g1.applied_index),
            (Some(2), 3, Some(100))
        );
        assert_eq!(g1.lag, BTreeMap::from([(1, 10), (2, 0)]));
        assert_eq!(g1.events, 7);
        assert_eq!(view.groups[0].events, 0);
        let nodes: Vec<(NodeId, bool, usize, usize)> = view
            .nodes
            .iter()
            .map(|n| (n.node_id, n.reachable, n.replicas, n.leaders))
            .collect();
        assert_eq!(
            nodes,
            vec![(1, true, 2, 1), (2, true, 2, 1), (3, false, 2, 0)]
        );
        assert_eq!(
            view.nodes[2].addr, "10.0.0.3:7000",
            "an unreachable node's address comes from the table"
        );
    }

    #[test]
    fn a_leader_move_needs_a_known_group_and_a_voter_of_it() {
        let members: Vec<(NodeId, String)> = (1..=4)
            .map(|id| (id, format!("10.0.0.{id}:7000")))
            .collect();
        let status = ClusterStatus {
            node_table: vec![],
            table: vec![(1, members[..3].to_vec()), (2, members[1..].to_vec())],
            nodes: vec![node(1, vec![replica(1, "Leader", 2, Some(1), 5)])],
        };
        let view = assemble(&status, &BTreeMap::new());
        assert_eq!(check_leader_move(&view, 1, 2).unwrap(), Some(1));
        let status_of = |e: ApiError| e.to_problem().0.as_u16();
        assert_eq!(status_of(check_leader_move(&view, 9, 2).unwrap_err()), 404);
        assert_eq!(
            status_of(check_leader_move(&view, 1, 7).unwrap_err()),
            422,
            "unknown node"
        );
        assert_eq!(
            status_of(check_leader_move(&view, 1, 4).unwrap_err()),
            422,
            "not a voter of 1"
        );
    }

    #[test]
    fn a_replica_move_needs_a_voter_source_a_free_active_target_and_majorities() {
        let members: Vec<(NodeId, String)> = (1..=3)
            .map(|id| (id, format!("10.0.0.{id}:7000")))
            .collect();
        let added = |id: NodeId, state: RaftNodeState| boxoffice_raft::types::NodeRecord {
            node_id: id,
            addr: format!("10.0.0.{id}:7000"),
            state,
        };
        let mut status = ClusterStatus {
            table: vec![(1, members)],
            node_table: vec![
                added(4, RaftNodeState::Active),
                added(5, RaftNodeState::Draining),
            ],
            nodes: vec![
                node(1, vec![replica(1, "Leader", 2, Some(1), 5)]),
                node(2, vec![replica(1, "Follower", 2, Some(1), 5)]),
                node(3, vec![replica(1, "Follower", 2, Some(1), 5)]),
                node(4, vec![]),
                node(5, vec![]),
                ("10.0.0.6:7000".into(), None),
            ],
        };
        status.node_table.push(added(6, RaftNodeState::Active));
        let view = assemble(&status, &BTreeMap::new());
        assert_eq!(view.nodes[4].state, NodeState::Draining);
        assert_eq!(check_replica_move(&view, 1, 3, 4).unwrap(), "10.0.0.4:7000");
        let status_of = |e: ApiError| e.to_problem().0.as_u16();
        let refused = |from, to| status_of(check_replica_move(&view, 1, from, to).unwrap_err());
        assert_eq!(
            status_of(check_replica_move(&view, 9, 3, 4).unwrap_err()),
            404
        );
        assert_eq!(refused(3, 9), 422, "unknown target");
        assert_eq!(refused(9, 4), 422, "unknown source");
        assert_eq!(refused(4, 3), 422, "the source holds no replica");
        assert_eq!(refused(3, 3), 422, "the same node");
        assert_eq!(refused(3, 2), 409, "the target holds one already");
        assert_eq!(refused(3, 5), 409, "a draining target");
        assert_eq!(refused(3, 6), 409, "an unreachable target");
        // Two of three voters down: no majority before the move, whatever moves.
        status.nodes[1].1 = None;
        status.nodes[2].1 = None;
        let view = assemble(&status, &BTreeMap::new());
        assert_eq!(
            status_of(check_replica_move(&view, 1, 3, 4).unwrap_err()),
            409,
            "no reachable majority"
        );
    }

    #[test]
    fn without_a_leader_the_highest_term_speaks_and_there_is_no_lag() {
        let status = ClusterStatus {
            node_table: vec![],
            table: vec![],
            nodes: vec![
                node(1, vec![replica(1, "Candidate", 5, None, 10)]),
                node(2, vec![replica(1, "Follower", 4, Some(1), 12)]),
            ],
        };
        let view = assemble(&status, &BTreeMap::new());
        assert_eq!((view.groups[0].leader, view.groups[0].term), (None, 5));
        assert!(view.groups[0].lag.is_empty());
        assert!(view.nodes.iter().all(|n| n.leaders == 0));
    }
}
