//! What the client learns about the cluster itself, for operators: the group table from the
//! meta group and every storage node's own status (`/cluster/status`), asked of all nodes
//! at once.

use std::time::Duration;

use super::InventoryClient;
use crate::codec::{decode, encode};
use crate::host::NodeStatus;
use crate::transport::TransportError;
use crate::types::{GroupId, NodeId};
use crate::wire::ServeError;
use crate::InventoryError;

/// How long one node's status may take before it counts as unreachable.
pub const NODE_STATUS_TIMEOUT_MS: u64 = 2_000;

/// Longest one leader move may take, end to end (catch-up, lease, election).
pub const MOVE_LEADER_TIMEOUT_MS: u64 = 30_000;

/// The group table and each known node's answer.
#[derive(Debug, Clone)]
pub struct ClusterStatus {
    /// Every group's members as the meta group records them.
    pub table: Vec<(GroupId, Vec<(NodeId, String)>)>,
    /// Each address asked (table members, then seeds) and its status, `None` when it did
    /// not answer in time.
    pub nodes: Vec<(String, Option<NodeStatus>)>,
}

impl InventoryClient {
    /// The group table, then the status of every node it names (and every seed).
    pub async fn cluster_status(&self) -> Result<ClusterStatus, InventoryError> {
        let table = self.refresh_groups().await?;
        let mut addrs: Vec<String> = Vec::new();
        let members = table.iter().flat_map(|(_, members)| members.iter());
        for addr in members.map(|(_, a)| a).chain(self.seeds.iter()) {
            if !addrs.contains(addr) {
                addrs.push(addr.clone());
            }
        }
        let timeout = Duration::from_millis(NODE_STATUS_TIMEOUT_MS);
        let mut asks = tokio::task::JoinSet::new();
        for (i, addr) in addrs.iter().enumerate() {
            let (transport, addr) = (self.transport.clone(), addr.clone());
            asks.spawn(async move {
                let status = match transport.get(&addr, "/cluster/status", timeout).await {
                    Ok(bytes) => serde_json::from_slice::<NodeStatus>(&bytes).ok(),
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
        Ok(ClusterStatus { table, nodes })
    }
}

impl InventoryClient {
    /// Moves `group`'s leadership to `target` (a voter), asking the current leader to hand
    /// it over (`Host::move_leader`); answers the new leader. Not retried: a move that
    /// failed says why, and the operator decides.
    pub async fn move_leader(
        &self,
        group: GroupId,
        target: NodeId,
    ) -> Result<NodeId, InventoryError> {
        self.refresh_groups().await?;
        let body = encode(&target);
        let path = format!("/cluster/groups/{group}/leader");
        let timeout = Duration::from_millis(MOVE_LEADER_TIMEOUT_MS);
        let mut candidates = self.candidates(group);
        let max_tries = 2 * candidates.len() + 4;
        let mut i = 0;
        while i < candidates.len() && i < max_tries {
            let addr = candidates[i].clone();
            i += 1;
            let answer = match self
                .transport
                .post(&addr, &path, body.clone(), timeout)
                .await
            {
                Ok(bytes) => decode::<Result<NodeId, ServeError>>(&bytes)
                    .map_err(InventoryError::Protocol)?,
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
                Ok(leader) => {
                    self.routes_mut().leaders.remove(&group);
                    return Ok(leader);
                }
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
}
