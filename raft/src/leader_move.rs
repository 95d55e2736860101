//! Moving a group's leadership to a chosen voter. openraft 0.9 has no leader transfer, so
//! the leader runs one from the parts 0.9 does have (the decision and its safety argument
//! are in ARCHITECTURE.md, "Leader moves"):
//!
//! 1. it stops proposing (new writes answer `NotLeader` with no hint; clients retry);
//! 2. it waits until the target's log matches its own ([`CATCH_UP_TIMEOUT_MS`]);
//! 3. it pauses elections on every other voter, itself included, and its own heartbeats,
//!    each pause ending by itself after [`Host::move_pause_ms`] whatever happens to the
//!    caller;
//! 4. once the followers' leader lease (openraft's `election_timeout_max`) has run out
//!    without heartbeats, it asks the target to campaign (`trigger().elect()`); the target's
//!    log is as long as anyone's, so it wins, and the old leader steps down on its higher
//!    term;
//! 5. it answers when it sees the target lead, or gives up, lifting its own pauses.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::codec::encode;
use crate::host::{Group, Host};
use crate::types::{GroupId, NodeId};
use crate::wire::ServeError;

/// Longest the target may take to catch up with the leader's log.
pub const CATCH_UP_TIMEOUT_MS: u64 = 10_000;
/// Waited beyond the followers' leader lease before the target campaigns.
pub const LEASE_MARGIN_MS: u64 = 100;
/// How often the leader looks at replication progress and at who leads.
pub const POLL_MS: u64 = 20;
/// Timeout of the calls to the other voters.
pub const MOVE_CALL_TIMEOUT_MS: u64 = 2_000;

impl Host {
    /// How long a leader move pauses elections and heartbeats: the lease, then room for
    /// the target's election.
    pub fn move_pause_ms(&self) -> u64 {
        3 * self.raft_settings().election_max_ms
    }

    /// Moves `group`'s leadership from this node (its leader) to `target`, a voter.
    /// Answers the new leader.
    pub async fn move_leader(&self, group: GroupId, target: NodeId) -> Result<NodeId, ServeError> {
        let g = self.group(group).ok_or(ServeError::UnknownGroup(group))?;
        let metrics = g.leader_metrics()?;
        let membership = metrics.membership_config.membership().clone();
        if !membership.voter_ids().any(|v| v == target) {
            return Err(ServeError::Invalid(format!(
                "node {target} is not a voter of group {group}"
            )));
        }
        if target == self.node_id() {
            return Ok(target);
        }
        if g.moving.swap(true, Ordering::SeqCst) {
            return Err(ServeError::Unavailable(format!(
                "group {group} is already moving its leader"
            )));
        }
        let result = self.run_move(&g, target).await;
        if result.is_err() {
            // Lift our own pauses at once; the other voters lift theirs when theirs end.
            g.raft.runtime_config().elect(true);
            g.raft.runtime_config().heartbeat(true);
        }
        g.moving.store(false, Ordering::SeqCst);
        result
    }

    async fn run_move(&self, g: &Arc<Group>, target: NodeId) -> Result<NodeId, ServeError> {
        let group = g.id;
        // 2. The target catches up with everything this leader has appended.
        let caught_up = poll_until(CATCH_UP_TIMEOUT_MS, || {
            let m = g.raft.metrics().borrow().clone();
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&target).copied().flatten())
                .map(|l| l.index);
            matched.is_some() && matched >= m.last_log_index
        })
        .await;
        if !caught_up {
            return Err(ServeError::Unavailable(format!(
                "node {target} did not catch up with group {group}'s log within {CATCH_UP_TIMEOUT_MS} ms"
            )));
        }
        // 3. Nobody but the target may campaign, and this leader goes quiet.
        let pause_ms = self.move_pause_ms();
        let membership = g
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone();
        for voter in membership.voter_ids().filter(|v| *v != target) {
            if voter == self.node_id() {
                pause_elections(g, pause_ms, true);
                continue;
            }
            let Some(node) = membership.get_node(&voter) else {
                continue;
            };
            let paused = self
                .transport()
                .post(
                    &node.addr,
                    &format!("/cluster/groups/{group}/pause-elections"),
                    encode(&pause_ms),
                    Duration::from_millis(MOVE_CALL_TIMEOUT_MS),
                )
                .await;
            if let Err(error) = paused {
                // It may campaign too; any winner is safe, the move is then only undirected.
                tracing::warn!(group, voter, %error, "could not pause a voter's elections");
            }
        }
        // 4. The followers' lease on this leader runs out; then the target campaigns.
        let lease_ms = self.raft_settings().election_max_ms;
        tokio::time::sleep(Duration::from_millis(lease_ms + LEASE_MARGIN_MS)).await;
        let target_addr = membership
            .get_node(&target)
            .map(|n| n.addr.clone())
            .ok_or_else(|| ServeError::Invalid(format!("node {target} has no address")))?;
        self.transport()
            .post(
                &target_addr,
                &format!("/cluster/groups/{group}/campaign"),
                Vec::new(),
                Duration::from_millis(MOVE_CALL_TIMEOUT_MS),
            )
            .await
            .map_err(|e| {
                ServeError::Unavailable(format!("asking node {target} to campaign: {e}"))
            })?;
        // 5. Done when this replica follows the target.
        let led = poll_until(pause_ms, || {
            g.raft.metrics().borrow().current_leader == Some(target)
        })
        .await;
        if led {
            tracing::info!(
                group,
                from = self.node_id(),
                to = target,
                "leadership moved"
            );
            Ok(target)
        } else {
            let now = g.raft.metrics().borrow().current_leader;
            Err(ServeError::Unavailable(format!(
                "group {group}'s leadership did not reach node {target} (leader now {now:?})"
            )))
        }
    }

    /// Step 3 on a voter other than the leader: no campaigning for `pause_ms`.
    pub fn pause_elections(&self, group: GroupId, pause_ms: u64) -> Result<(), ServeError> {
        let g = self.group(group).ok_or(ServeError::UnknownGroup(group))?;
        pause_elections(&g, pause_ms.min(self.move_pause_ms()), false);
        Ok(())
    }

    /// Step 4 on the target: campaign now.
    pub async fn campaign(&self, group: GroupId) -> Result<(), ServeError> {
        let g = self.group(group).ok_or(ServeError::UnknownGroup(group))?;
        g.raft
            .trigger()
            .elect()
            .await
            .map_err(|e| ServeError::Unavailable(e.to_string()))
    }
}

/// Turns off `g`'s elections (and its heartbeats with `quiet`) and turns them back on after
/// `pause_ms`, by a task of the group's own, so the pause ends whatever the mover does.
fn pause_elections(g: &Arc<Group>, pause_ms: u64, quiet: bool) {
    let config = g.raft.runtime_config();
    config.elect(false);
    if quiet {
        config.heartbeat(false);
    }
    let raft = g.raft.clone();
    g.spawn(async move {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        raft.runtime_config().elect(true);
        raft.runtime_config().heartbeat(true);
    });
}

/// Polls `done` every [`POLL_MS`] for up to `timeout_ms`; whether it came true.
async fn poll_until(timeout_ms: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        if done() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
}
