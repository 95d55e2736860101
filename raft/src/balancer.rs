//! The balancer: keeps replicas (±1) and leaderships (±1) even across the active nodes, one
//! change at a time cluster-wide. It runs on every storage node and acts only on the one
//! leading the meta group, once per interval: it reads the cluster as operators see it
//! ([`InventoryClient::cluster_status`]), and [`plan`] — pure — picks at most one change: a
//! replica moved from the node holding the most to the one holding the fewest, else a
//! leadership moved off the node leading the most. It changes nothing while the cluster is
//! unsettled (a group without a leader or with a learner, an active node not answering), so
//! it never competes with a failure, a drain's move or an operator's. Every decision is
//! logged, counted in `/metrics` (`boxoffice_balancer_decisions_total{kind, outcome}`) and
//! kept (the last [`BALANCER_LOG_LEN`]) in the node's status, so the cluster view shows it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::{ClusterStatus, InventoryClient};
use crate::host::Host;
use crate::types::{GroupId, NodeId, NodeState, META_GROUP};

/// Decisions a node keeps for its status.
pub const BALANCER_LOG_LEN: usize = 16;

/// One change the balancer decided on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    MoveReplica {
        group: GroupId,
        from: NodeId,
        to: NodeId,
        to_addr: String,
    },
    MoveLeader {
        group: GroupId,
        from: NodeId,
        to: NodeId,
    },
}

impl Decision {
    fn kind(&self) -> &'static str {
        match self {
            Decision::MoveReplica { .. } => "replica",
            Decision::MoveLeader { .. } => "leader",
        }
    }

    /// In words, for logs and the cluster view.
    pub fn describe(&self) -> String {
        match self {
            Decision::MoveReplica {
                group, from, to, ..
            } => {
                format!("move group {group}'s replica from node {from} to node {to}")
            }
            Decision::MoveLeader { group, from, to } => {
                format!("move group {group}'s leadership from node {from} to node {to}")
            }
        }
    }
}

/// A decision and how it went, as a node's status reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalancerEntry {
    /// When it was decided (the deciding node's clock, Unix milliseconds).
    pub at_ms: u64,
    pub decided_by: NodeId,
    pub decision: String,
    /// `done`, or why it failed.
    pub outcome: String,
}

/// The one change that evens the cluster out most urgently, or `None` when it is even
/// (replicas and leaderships within one of each other on the active nodes) or unsettled.
pub fn plan(status: &ClusterStatus) -> Option<Decision> {
    let mut addrs: BTreeMap<NodeId, String> = BTreeMap::new();
    let mut active: BTreeSet<NodeId> = BTreeSet::new();
    for (_, members) in &status.table {
        for (id, addr) in members {
            addrs.insert(*id, addr.clone());
            active.insert(*id);
        }
    }
    for node in &status.node_table {
        addrs.insert(node.node_id, node.addr.clone());
        if node.state == NodeState::Active {
            active.insert(node.node_id);
        } else {
            active.remove(&node.node_id);
        }
    }
    let answered: BTreeMap<NodeId, &crate::host::NodeStatus> = status
        .nodes
        .iter()
        .filter_map(|(_, s)| s.as_ref().map(|s| (s.node_id, s)))
        .collect();
    if active.iter().any(|id| !answered.contains_key(id)) || active.len() < 2 {
        return None;
    }
    // Each group as its leader (the highest term claiming it) reports it.
    let mut groups: BTreeMap<GroupId, Led> = BTreeMap::new();
    for s in answered.values() {
        for g in s.groups.iter().filter(|g| g.state == "Leader") {
            if !g.learners.is_empty() {
                return None;
            }
            if groups.get(&g.group).is_none_or(|led| g.term > led.term) {
                let led = Led {
                    term: g.term,
                    voters: g.voters.clone(),
                    leader: s.node_id,
                };
                groups.insert(g.group, led);
            }
        }
    }
    if status.table.iter().any(|(g, _)| !groups.contains_key(g)) {
        return None;
    }
    let count = |of: &dyn Fn(&Led, NodeId) -> bool| {
        active
            .iter()
            .map(|n| (groups.values().filter(|g| of(g, *n)).count(), *n))
            .collect::<Vec<_>>()
    };
    let replicas = count(&|g, n| g.voters.contains(&n));
    let most = replicas.iter().max_by_key(|(c, n)| (*c, *n))?;
    let fewest = replicas.iter().min_by_key(|(c, n)| (*c, *n))?;
    if most.0 > fewest.0 + 1 {
        let (from, to) = (most.1, fewest.1);
        // A group `from` does not lead moves without a leader move.
        let group = groups
            .iter()
            .filter(|(_, g)| g.voters.contains(&from) && !g.voters.contains(&to))
            .min_by_key(|(id, g)| (g.leader == from, **id))?
            .0;
        return Some(Decision::MoveReplica {
            group: *group,
            from,
            to,
            to_addr: addrs.get(&to)?.clone(),
        });
    }
    let leaders = count(&|g, n| g.leader == n);
    let leads = |n: NodeId| leaders.iter().find(|(_, id)| *id == n).map(|(c, _)| *c);
    let busiest = leaders
        .iter()
        .max_by_key(|(c, n)| (*c, std::cmp::Reverse(*n)))?;
    let idlest = leaders.iter().min_by_key(|(c, n)| (*c, *n))?;
    if busiest.0 <= idlest.0 + 1 {
        return None;
    }
    let from = busiest.1;
    // Inventory groups first: moving the meta group's leadership moves the balancer too.
    let mut led_by_from: Vec<(&GroupId, &Led)> =
        groups.iter().filter(|(_, g)| g.leader == from).collect();
    led_by_from.sort_by_key(|(id, _)| (**id == META_GROUP, **id));
    led_by_from.into_iter().find_map(|(group, led)| {
        let to = led
            .voters
            .iter()
            .filter(|v| active.contains(v))
            .filter_map(|v| Some((leads(*v)?, *v)))
            .filter(|(c, _)| c + 1 < busiest.0)
            .min()?
            .1;
        Some(Decision::MoveLeader {
            group: *group,
            from,
            to,
        })
    })
}

/// A group as its leader reports it.
struct Led {
    term: u64,
    voters: Vec<NodeId>,
    leader: NodeId,
}

/// Every `every_ms`, on the node leading the meta group: one decision of [`plan`], carried
/// out before the next is planned.
pub async fn run(host: Host, every_ms: u64) {
    let client = InventoryClient::new(host.transport(), vec![host.addr().to_owned()]);
    let mut tick = tokio::time::interval(Duration::from_millis(every_ms.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if !host.leads(META_GROUP) {
            continue;
        }
        let status = match client.cluster_status().await {
            Ok(status) => status,
            Err(error) => {
                tracing::debug!(%error, "balancer: no cluster status");
                continue;
            }
        };
        let Some(decision) = plan(&status) else {
            continue;
        };
        tracing::info!(decision = decision.describe(), "balancer");
        let result = match &decision {
            Decision::MoveReplica {
                group,
                from,
                to,
                to_addr,
            } => client
                .move_replica(*group, *from, (*to, to_addr.clone()))
                .await
                .map(drop),
            Decision::MoveLeader { group, to, .. } => {
                client.move_leader(*group, *to).await.map(drop)
            }
        };
        let outcome = match &result {
            Ok(()) => "done".to_owned(),
            Err(error) => error.to_string(),
        };
        if let Err(error) = &result {
            tracing::warn!(decision = decision.describe(), %error, "balancer move failed");
        }
        metrics::counter!(
            "boxoffice_balancer_decisions_total",
            "node" => host.node_id().to_string(),
            "kind" => decision.kind(),
            "outcome" => if result.is_ok() { "done" } else { "failed" }
        )
        .increment(1);
        host.note_balancer(decision.describe(), outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{GroupStatus, NodeStatus};
    use crate::types::NodeRecord;

    /// A cluster: `groups` as (group, voters, leader), nodes 1..=n_nodes answering.
    fn cluster(n_nodes: u64, groups: &[(GroupId, &[NodeId], NodeId)]) -> ClusterStatus {
        let addr = |id: NodeId| format!("10.0.0.{id}:7000");
        let nodes = (1..=n_nodes)
            .map(|id| {
                let reports = groups
                    .iter()
                    .filter(|(_, voters, _)| voters.contains(&id))
                    .map(|(g, voters, leader)| GroupStatus {
                        group: *g,
                        state: if *leader == id { "Leader" } else { "Follower" }.into(),
                        term: 2,
                        leader: Some(*leader),
                        last_log_index: Some(9),
                        applied_index: Some(9),
                        snapshot_index: None,
                        purged_index: None,
                        voters: voters.to_vec(),
                        learners: vec![],
                    })
                    .collect();
                let status = NodeStatus {
                    node_id: id,
                    addr: addr(id),
                    groups: reports,
                    balancer: vec![],
                };
                (addr(id), Some(status))
            })
            .collect();
        ClusterStatus {
            table: groups
                .iter()
                .map(|(g, voters, _)| (*g, voters.iter().map(|v| (*v, addr(*v))).collect()))
                .collect(),
            node_table: (4..=n_nodes)
                .map(|id| NodeRecord {
                    node_id: id,
                    addr: addr(id),
                    state: NodeState::Active,
                })
                .collect(),
            nodes,
        }
    }

    #[test]
    fn replicas_move_to_an_empty_node_first_from_a_group_the_source_does_not_lead() {
        let status = cluster(
            4,
            &[(0, &[1, 2, 3], 3), (1, &[1, 2, 3], 1), (2, &[1, 2, 3], 2)],
        );
        assert_eq!(
            plan(&status),
            Some(Decision::MoveReplica {
                group: 1,
                from: 3,
                to: 4,
                to_addr: "10.0.0.4:7000".into()
            })
        );
    }

    #[test]
    fn with_replicas_even_a_leadership_moves_off_the_busiest_node() {
        let status = cluster(
            3,
            &[(0, &[1, 2, 3], 1), (1, &[1, 2, 3], 1), (2, &[1, 2, 3], 1)],
        );
        assert_eq!(
            plan(&status),
            Some(Decision::MoveLeader {
                group: 1,
                from: 1,
                to: 2
            }),
            "an inventory group's leadership before the meta group's"
        );
        let within_one = cluster(
            3,
            &[
                (0, &[1, 2, 3], 1),
                (1, &[1, 2, 3], 2),
                (2, &[1, 2, 3], 1),
                (3, &[1, 2, 3], 3),
            ],
        );
        assert_eq!(
            plan(&within_one),
            None,
            "leaderships 2, 1, 1 are even enough"
        );
    }

    #[test]
    fn nothing_moves_while_the_cluster_is_unsettled() {
        let mut down = cluster(4, &[(0, &[1, 2, 3], 1), (1, &[1, 2, 3], 2)]);
        down.nodes[3].1 = None;
        assert_eq!(plan(&down), None, "an active node does not answer");
        let mut leaderless = cluster(4, &[(0, &[1, 2, 3], 1), (1, &[1, 2, 3], 2)]);
        for (_, s) in &mut leaderless.nodes {
            if let Some(s) = s {
                for g in &mut s.groups {
                    if g.group == 1 {
                        g.state = "Candidate".into();
                    }
                }
            }
        }
        assert_eq!(plan(&leaderless), None, "group 1 has no leader");
        let mut draining = cluster(4, &[(0, &[1, 2, 3], 1), (1, &[1, 2, 3], 2)]);
        draining.node_table[0].state = NodeState::Draining;
        assert_eq!(
            plan(&draining),
            None,
            "a draining node takes no replica (and its own move is the drain's)"
        );
    }
}
