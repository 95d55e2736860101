//! Operating the cluster (role admin): `GET /admin/v1/cluster`, the nodes and groups as the
//! storage nodes themselves report them; `POST /admin/v1/groups/{group_id}/leader`, a
//! leader move; `POST /admin/v1/groups/{group_id}/move`, a replica move;
//! `POST /admin/v1/nodes`, a new node in the node table; `DELETE /admin/v1/nodes/{id}`, a
//! drain; `POST /admin/v1/groups`, more inventory groups.

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use boxoffice_raft::types::{GroupId, NodeId, NodeRecord, NodeState as RaftNodeState};

use crate::app::AppState;
use crate::auth::Admin;
use crate::cluster_view::{
    assemble, check_leader_move, check_replica_move, ClusterView, LeaderMove, LeaderMoved, NodeAdd,
    NodeState, ReplicaMoveRequest, ReplicaMoved,
};
use crate::drain::check_drain;
use crate::extract::{ApiJson, ApiPath};
use crate::problem::ApiError;

/// The cluster: every storage node (state, reachability, replicas and leaderships) and every
/// group (voters, learners, leader, applied index, lag per replica, events placed in it).
#[utoipa::path(
    get, operation_id = "getCluster", path = "/admin/v1/cluster", tag = "cluster", security(("bearer" = [])),
    responses((status = 200, description = "Nodes and groups", body = ClusterView))
)]
pub async fn view(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<ApiJson<ClusterView>, ApiError> {
    Ok(ApiJson(current_view(&state).await?))
}

/// The cluster as the storage nodes report it now, with the events placed in each group.
async fn current_view(state: &AppState) -> Result<ClusterView, ApiError> {
    let status = state.inventory.cluster_status().await?;
    Ok(assemble(&status, &state.seats.events_per_group()))
}

/// Moves a group's leadership to one of its voters: the leader stops proposing, waits for
/// the target to have its whole log, and the target is elected (writes to the group wait
/// a few seconds, answering 503 only past the client's deadline).
#[utoipa::path(
    post, operation_id = "moveLeader", path = "/admin/v1/groups/{group_id}/leader", tag = "cluster", security(("bearer" = [])),
    params(("group_id" = u64, Path, description = "Group id")),
    request_body = LeaderMove,
    responses((status = 200, description = "The group's new leader", body = LeaderMoved))
)]
pub async fn move_leader(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath(group_id): ApiPath<GroupId>,
    ApiJson(body): ApiJson<LeaderMove>,
) -> Result<ApiJson<LeaderMoved>, ApiError> {
    let view = current_view(&state).await?;
    let previous_leader = check_leader_move(&view, group_id, body.node_id)?;
    let started = Instant::now();
    let leader = state.inventory.move_leader(group_id, body.node_id).await?;
    Ok(ApiJson(LeaderMoved {
        group_id,
        leader,
        previous_leader,
        took_ms: started.elapsed().as_millis() as u64,
    }))
}

/// Moves one replica of a group from a node to another: the target is added as a learner
/// and catches up, then joint consensus swaps it for the source, the meta group records the
/// new members and the source's replica is retired. A source that leads hands leadership to
/// another voter first. Writes keep flowing, except for a leader move's pause.
#[utoipa::path(
    post, operation_id = "moveReplica", path = "/admin/v1/groups/{group_id}/move", tag = "cluster", security(("bearer" = [])),
    params(("group_id" = u64, Path, description = "Group id")),
    request_body = ReplicaMoveRequest,
    responses((status = 200, description = "The group's members after the move", body = ReplicaMoved))
)]
pub async fn move_replica(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath(group_id): ApiPath<GroupId>,
    ApiJson(body): ApiJson<ReplicaMoveRequest>,
) -> Result<ApiJson<ReplicaMoved>, ApiError> {
    let view = current_view(&state).await?;
    let to_addr = check_replica_move(&view, group_id, body.from, body.to)?;
    let started = Instant::now();
    let report = state
        .inventory
        .move_replica(group_id, body.from, (body.to, to_addr))
        .await?;
    Ok(ApiJson(ReplicaMoved {
        group_id,
        from: body.from,
        to: body.to,
        voters: report.voters,
        source_retired: report.source_retired,
        took_ms: started.elapsed().as_millis() as u64,
    }))
}

/// Adds a running storage node (started without `--init`) to the node table, so replicas
/// can move onto it. The node must answer at `addr` as `node_id`. Adding it again as it is
/// changes nothing.
#[utoipa::path(
    post, operation_id = "addNode", path = "/admin/v1/nodes", tag = "cluster", security(("bearer" = [])),
    request_body = NodeAdd,
    responses((status = 202, description = "The node, recorded as active", body = NodeRecordView))
)]
pub async fn add_node(
    State(state): State<AppState>,
    _admin: Admin,
    ApiJson(body): ApiJson<NodeAdd>,
) -> Result<(StatusCode, ApiJson<NodeRecordView>), ApiError> {
    let unprocessable = |field: &str, detail: String| ApiError::Unprocessable {
        detail,
        field: Some(field.into()),
    };
    if body.node_id == 0 {
        return Err(unprocessable("node_id", "node ids start at 1".into()));
    }
    let port_ok = body
        .addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok || body.addr.len() > MAX_NODE_ADDR_BYTES || body.addr.contains('/') {
        return Err(unprocessable(
            "addr",
            format!("addr must be host:port (at most {MAX_NODE_ADDR_BYTES} bytes)"),
        ));
    }
    let status = state.inventory.cluster_status().await?;
    let wanted = NodeRecord {
        node_id: body.node_id,
        addr: body.addr.clone(),
        state: RaftNodeState::Active,
    };
    if let Some(known) = status.node_table.iter().find(|n| n.node_id == body.node_id) {
        if *known == wanted {
            return Ok((StatusCode::ACCEPTED, ApiJson(NodeRecordView::from(wanted))));
        }
        return Err(ApiError::Conflict {
            detail: format!(
                "node {} is already in the cluster as {} ({})",
                known.node_id,
                known.addr,
                known.state.as_str()
            ),
        });
    }
    let member = status
        .table
        .iter()
        .flat_map(|(_, members)| members.iter())
        .find(|(id, _)| *id == body.node_id);
    if let Some((id, addr)) = member {
        return Err(ApiError::Conflict {
            detail: format!("node {id} is already a member of the cluster, at {addr}"),
        });
    }
    let answer = state.inventory.node_status(&body.addr).await.map_err(|e| {
        unprocessable(
            "addr",
            format!("no storage node answers at {}: {e}", body.addr),
        )
    })?;
    if answer.node_id != body.node_id {
        return Err(unprocessable(
            "node_id",
            format!("the node at {} is node {}", body.addr, answer.node_id),
        ));
    }
    state.inventory.put_node(wanted.clone()).await?;
    Ok((StatusCode::ACCEPTED, ApiJson(NodeRecordView::from(wanted))))
}

/// Drains a node: it is marked `draining`, its leaderships move off, then its replicas, one
/// at a time, to the active nodes with the fewest replicas; then it is marked `removed`
/// (watch it in `GET /admin/v1/cluster`). Refused (409) when fewer active nodes than a
/// group's replicas would remain. A removed node answers 202 with nothing to do; a
/// drain that stopped resumes.
#[utoipa::path(
    delete, operation_id = "drainNode", path = "/admin/v1/nodes/{node_id}", tag = "cluster", security(("bearer" = [])),
    params(("node_id" = u64, Path, description = "Node id")),
    responses((status = 202, description = "The node, draining (or removed already)", body = NodeRecordView))
)]
pub async fn drain_node(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath(node_id): ApiPath<NodeId>,
) -> Result<(StatusCode, ApiJson<NodeRecordView>), ApiError> {
    let view = current_view(&state).await?;
    let node = view
        .nodes
        .iter()
        .find(|n| n.node_id == node_id)
        .ok_or_else(|| ApiError::not_found(format!("no node {node_id} in the cluster")))?;
    let record = |state: RaftNodeState| NodeRecord {
        node_id,
        addr: node.addr.clone(),
        state,
    };
    if node.state == NodeState::Removed {
        let removed = record(RaftNodeState::Removed);
        return Ok((StatusCode::ACCEPTED, ApiJson(removed.into())));
    }
    check_drain(&view, node_id)?;
    let draining = record(RaftNodeState::Draining);
    state.inventory.put_node(draining.clone()).await?;
    state.drains.start(
        state.inventory.clone(),
        state.seats.clone(),
        draining.clone(),
    );
    Ok((StatusCode::ACCEPTED, ApiJson(draining.into())))
}

/// Most inventory groups one `POST /admin/v1/groups` creates.
pub const MAX_NEW_GROUPS: u64 = 16;

/// `POST /admin/v1/groups`.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupsAdd {
    /// How many inventory groups to create (1..=16).
    pub count: u64,
}

/// One group a `POST /admin/v1/groups` created.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct GroupCreated {
    pub group_id: GroupId,
    pub voters: Vec<NodeId>,
}

/// What `POST /admin/v1/groups` created.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct GroupsCreated {
    pub groups: Vec<GroupCreated>,
}

/// Creates more inventory groups, each with as many replicas as the widest group has,
/// on the active nodes holding the fewest replicas. New events are placed in the group
/// with the fewest events, so new groups fill up first; events never move.
#[utoipa::path(
    post, operation_id = "addGroups", path = "/admin/v1/groups", tag = "cluster", security(("bearer" = [])),
    request_body = GroupsAdd,
    responses((status = 201, description = "The groups created", body = GroupsCreated))
)]
pub async fn add_groups(
    State(state): State<AppState>,
    _admin: Admin,
    ApiJson(body): ApiJson<GroupsAdd>,
) -> Result<(StatusCode, ApiJson<GroupsCreated>), ApiError> {
    if !(1..=MAX_NEW_GROUPS).contains(&body.count) {
        return Err(ApiError::Unprocessable {
            detail: format!("count must be 1..={MAX_NEW_GROUPS}"),
            field: Some("count".into()),
        });
    }
    let view = current_view(&state).await?;
    let replication = view.replication();
    let active = view.active_nodes_except(None);
    if replication == 0 || active < replication {
        return Err(ApiError::Conflict {
            detail: format!("{active} active nodes cannot hold groups of {replication} replicas"),
        });
    }
    let created = state.inventory.add_groups(body.count, replication).await?;
    let groups = created
        .into_iter()
        .map(|(group_id, voters)| GroupCreated { group_id, voters })
        .collect();
    Ok((StatusCode::CREATED, ApiJson(GroupsCreated { groups })))
}

/// Longest node address accepted, in bytes.
pub const MAX_NODE_ADDR_BYTES: usize = 255;

/// A row of the node table as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct NodeRecordView {
    pub node_id: u64,
    pub addr: String,
    pub state: NodeState,
}

impl From<NodeRecord> for NodeRecordView {
    fn from(node: NodeRecord) -> NodeRecordView {
        NodeRecordView {
            node_id: node.node_id,
            addr: node.addr,
            state: node.state.into(),
        }
    }
}
