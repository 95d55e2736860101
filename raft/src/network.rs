//! openraft's network for one group: Raft RPCs as bincode over [`Transport`], routed by group
//! id (`/raft/{group}/{append|vote|snapshot}`), one shared connection pool per node.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RPCTypes};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{decode, encode};
use crate::failover::Campaigns;
use crate::transport::{Transport, TransportError};
use crate::typ::TypeConfig;
use crate::types::{GroupId, NodeId};

/// Largest AppendEntries body sent when it carries more than one entry. openraft 0.9 times an
/// AppendEntries out after one heartbeat, so a catch-up of 32 batched entries (megabytes)
/// could never finish on a loaded machine, and a follower that never hears its leader
/// campaigns. Over this size the request is refused before sending with a hint of how many
/// entries fit, and openraft resends fewer (one entry always goes, whatever its size).
pub const MAX_APPEND_BYTES: usize = 256 * 1024;

/// How many of `entries` entries to send instead when they encode to `bytes` bytes, or
/// `None` when they may go as they are.
fn entries_that_fit(entries: usize, bytes: usize) -> Option<u64> {
    if entries <= 1 || bytes <= MAX_APPEND_BYTES {
        return None;
    }
    // Entries are of similar size within one request (batches of writes, or seat chunks).
    let fit = (entries * MAX_APPEND_BYTES / bytes).clamp(1, entries - 1);
    Some(fit as u64)
}

/// Builds per-peer clients for one group.
pub struct NetworkFactory {
    pub transport: Arc<Transport>,
    pub group: GroupId,
    pub node_id: NodeId,
    /// How often a leader retries a peer it could not reach (one heartbeat).
    pub retry_unreachable: Duration,
    /// What this replica's campaigns met, shared with the group ([`crate::failover`]).
    pub campaigns: Arc<Campaigns>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            transport: self.transport.clone(),
            group: self.group,
            source: self.node_id,
            target,
            addr: node.addr.clone(),
            retry_unreachable: self.retry_unreachable,
            campaigns: self.campaigns.clone(),
        }
    }
}

/// Sends one group's Raft RPCs to one peer.
pub struct PeerClient {
    transport: Arc<Transport>,
    group: GroupId,
    source: NodeId,
    target: NodeId,
    addr: String,
    retry_unreachable: Duration,
    campaigns: Arc<Campaigns>,
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &self,
        kind: &str,
        action: RPCTypes,
        rpc: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        self.send(kind, action, encode(rpc), timeout).await
    }

    async fn send<Resp, E>(
        &self,
        kind: &str,
        action: RPCTypes,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let path = format!("/raft/{}/{kind}", self.group);
        let bytes = self
            .transport
            .post(&self.addr, &path, body, timeout)
            .await
            .map_err(|e| match e {
                TransportError::Connect { .. } => RPCError::Unreachable(Unreachable::new(&e)),
                TransportError::Timeout { .. } => RPCError::Timeout(Timeout {
                    action,
                    id: self.source,
                    target: self.target,
                    timeout,
                }),
                other => RPCError::Network(NetworkError::new(&other)),
            })?;
        let result: Result<Resp, E> = decode(&bytes).map_err(|e| {
            RPCError::Network(NetworkError::new(&std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                e,
            )))
        })?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    /// openraft waits 500 ms between attempts to reach a peer it could not connect to. A
    /// restarted node that hears nothing for a lease plus an election timeout (0.6–0.8 s by
    /// default) campaigns, and its higher term then deposes the leader; retrying every
    /// heartbeat reaches it first.
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(self.retry_unreachable))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let body = encode(&rpc);
        if let Some(fit) = entries_that_fit(rpc.entries.len(), body.len()) {
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(fit),
            ));
        }
        self.send("append", RPCTypes::AppendEntries, body, option.hard_ttl())
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(
            "snapshot",
            RPCTypes::InstallSnapshot,
            &rpc,
            option.hard_ttl(),
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let _in_flight = self.campaigns.vote_sent();
        let resp: VoteResponse<NodeId> = self
            .call("vote", RPCTypes::Vote, &rpc, option.hard_ttl())
            .await?;
        self.campaigns.vote_answered(&rpc, &resp);
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_append_is_cut_to_what_fits_and_one_entry_always_goes() {
        assert_eq!(entries_that_fit(32, MAX_APPEND_BYTES), None);
        assert_eq!(entries_that_fit(1, 10 * MAX_APPEND_BYTES), None);
        assert_eq!(entries_that_fit(32, 4 * MAX_APPEND_BYTES), Some(8));
        assert_eq!(entries_that_fit(4, 100 * MAX_APPEND_BYTES), Some(1));
        assert_eq!(entries_that_fit(2, MAX_APPEND_BYTES + 1), Some(1));
    }
}
