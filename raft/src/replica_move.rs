//! Moving one replica of a group from one node to another, run by the group's leader
//! (ARCHITECTURE.md, "Replica moves"):
//!
//! 1. the target is added as a learner and catches up with the leader's log (openraft sends
//!    a snapshot when the log it needs is purged), within [`LEARNER_CATCH_UP_TIMEOUT_MS`];
//! 2. one `change_membership` swaps the source for the target among the voters: openraft
//!    commits the joint configuration (old and new voters, a majority of each) and then the
//!    new one;
//! 3. the caller records the new members in the meta group's table and retires the source's
//!    replica ([`Host::retire_replica`]), which leaves a tombstone behind.
//!
//! A leader never removes itself (openraft 0.9 would keep a removed leader leading): when the
//! source leads, it first hands leadership to the most caught-up other voter and answers
//! `NotLeader` with the new leader's address, where the caller asks again.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers, ServerState};
use serde::{Deserialize, Serialize};

use crate::host::{serve_error, Group, Host};
use crate::types::{GroupId, NodeId};
use crate::wire::ServeError;

/// Longest the target may take to catch up as a learner (a snapshot of a big group included).
pub const LEARNER_CATCH_UP_TIMEOUT_MS: u64 = 60_000;

/// What the leader is asked to do (`POST /cluster/groups/{g}/move`, bincode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaMove {
    pub from: NodeId,
    pub to: NodeId,
    /// Where the target listens (from the meta group's node table).
    pub to_addr: String,
}

/// The group's membership once the move is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaMoved {
    pub voters: Vec<NodeId>,
    /// Log index of the committed membership (names this change, e.g. in request ids).
    pub membership_index: u64,
}

impl Host {
    /// Moves `group`'s replica on `mv.from` to `mv.to`; this node must lead the group. A
    /// retry of a move already committed answers it again.
    pub async fn move_replica(
        &self,
        group: GroupId,
        mv: ReplicaMove,
    ) -> Result<ReplicaMoved, ServeError> {
        let g = self.group(group).ok_or(ServeError::UnknownGroup(group))?;
        let metrics = g.leader_metrics()?;
        let stored = metrics.membership_config.clone();
        let membership = stored.membership();
        if membership.get_joint_config().len() > 1 {
            return Err(ServeError::Unavailable(format!(
                "group {group} is changing its membership"
            )));
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if voters.contains(&mv.to) && !voters.contains(&mv.from) {
            return Ok(ReplicaMoved {
                voters: voters.into_iter().collect(),
                membership_index: stored.log_id().map(|l| l.index).unwrap_or(0),
            });
        }
        if mv.from == mv.to || !voters.contains(&mv.from) || voters.contains(&mv.to) {
            return Err(ServeError::Invalid(format!(
                "group {group}'s voters are {voters:?}: cannot move a replica from node {} to node {}",
                mv.from, mv.to
            )));
        }
        if mv.from == self.node_id() {
            let next = most_caught_up_other(&g, &voters, mv.from).ok_or_else(|| {
                ServeError::Invalid(format!("group {group} has no other voter to lead it"))
            })?;
            self.move_leader(group, next).await?;
            return Err(ServeError::NotLeader {
                group,
                leader: g.leader_hint(),
            });
        }
        if g.reconfiguring.swap(true, Ordering::SeqCst) {
            return Err(ServeError::Unavailable(format!(
                "group {group} is already moving a replica"
            )));
        }
        let result = self.run_replica_move(&g, &mv, voters).await;
        g.reconfiguring.store(false, Ordering::SeqCst);
        result
    }

    async fn run_replica_move(
        &self,
        g: &Arc<Group>,
        mv: &ReplicaMove,
        mut voters: BTreeSet<NodeId>,
    ) -> Result<ReplicaMoved, ServeError> {
        let group = g.id;
        let node = BasicNode {
            addr: mv.to_addr.clone(),
        };
        let timeout = Duration::from_millis(LEARNER_CATCH_UP_TIMEOUT_MS);
        let failure = match tokio::time::timeout(timeout, g.raft.add_learner(mv.to, node, true))
            .await
        {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(serve_error(group, e)),
            Err(_) => Some(ServeError::Unavailable(format!(
                "node {} did not catch up with group {group} within {LEARNER_CATCH_UP_TIMEOUT_MS} ms",
                mv.to
            ))),
        };
        if let Some(error) = failure {
            // The learner goes again; the voters never changed.
            let undo = ChangeMembers::RemoveNodes(BTreeSet::from([mv.to]));
            if let Err(e) = g.raft.change_membership(undo, false).await {
                tracing::warn!(group, learner = mv.to, error = %e, "could not remove the learner");
            }
            return Err(error);
        }
        voters.remove(&mv.from);
        voters.insert(mv.to);
        let committed = g
            .raft
            .change_membership(ChangeMembers::ReplaceAllVoters(voters.clone()), false)
            .await
            .map_err(|e| serve_error(group, e))?;
        tracing::info!(group, from = mv.from, to = mv.to, ?voters, "replica moved");
        Ok(ReplicaMoved {
            voters: voters.into_iter().collect(),
            membership_index: committed.log_id.index,
        })
    }

    /// On a node whose replica of `group` was moved away (`voters` no longer names it):
    /// tombstone the replica and stop it.
    pub async fn retire_replica(
        &self,
        group: GroupId,
        voters: Vec<NodeId>,
    ) -> Result<(), ServeError> {
        if voters.contains(&self.node_id()) {
            return Err(ServeError::Invalid(format!(
                "node {} is a voter of group {group}",
                self.node_id()
            )));
        }
        if let Some(g) = self.group(group) {
            if g.raft.metrics().borrow().state == ServerState::Leader {
                return Err(ServeError::Invalid(format!(
                    "node {} leads group {group}",
                    self.node_id()
                )));
            }
        }
        self.remove_replica(group)
            .await
            .map_err(|e| ServeError::Unavailable(e.to_string()))
    }

    /// On a move's target, before it becomes a learner: a tombstone of an earlier removal of
    /// `group` goes (with its old data), so the replica starts over empty.
    pub async fn adopt_replica(&self, group: GroupId) -> Result<(), ServeError> {
        self.clear_tombstone(group)
            .await
            .map_err(|e| ServeError::Unavailable(e.to_string()))
    }
}

/// The voter other than `except` whose log matches the leader's furthest.
fn most_caught_up_other(g: &Group, voters: &BTreeSet<NodeId>, except: NodeId) -> Option<NodeId> {
    let metrics = g.raft.metrics().borrow().clone();
    let matched = |v: &NodeId| {
        metrics
            .replication
            .as_ref()
            .and_then(|r| r.get(v).copied().flatten())
            .map(|l| l.index)
    };
    voters
        .iter()
        .filter(|v| **v != except)
        .max_by_key(|v| (matched(v), std::cmp::Reverse(**v)))
        .copied()
}
