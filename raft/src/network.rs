//! openraft's network for one group: Raft RPCs as bincode over [`Transport`], routed by group
//! id (`/raft/{group}/{append|vote|snapshot}`), one shared connection pool per node.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
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
use crate::transport::{Transport, TransportError};
use crate::typ::TypeConfig;
use crate::types::{GroupId, NodeId};

/// Builds per-peer clients for one group.
pub struct NetworkFactory {
    pub transport: Arc<Transport>,
    pub group: GroupId,
    pub node_id: NodeId,
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
        let path = format!("/raft/{}/{kind}", self.group);
        let bytes = self
            .transport
            .post(&self.addr, &path, encode(rpc), timeout)
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
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("append", RPCTypes::AppendEntries, &rpc, option.hard_ttl())
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
        self.call("vote", RPCTypes::Vote, &rpc, option.hard_ttl())
            .await
    }
}
