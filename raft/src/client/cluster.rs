//! What the client learns about the cluster itself, for operators: the group table from the
//! meta group and every storage node's own status (`/cluster/status`), asked of all nodes
//! at once.

use std::time::Duration;

use super::InventoryClient;
use crate::host::NodeStatus;
use crate::types::{GroupId, NodeId};
use crate::InventoryError;

/// How long one node's status may take before it counts as unreachable.
pub const NODE_STATUS_TIMEOUT_MS: u64 = 2_000;

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
