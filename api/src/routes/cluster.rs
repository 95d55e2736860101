//! Operating the cluster (role admin): `GET /admin/v1/cluster`, the nodes and groups as the
//! storage nodes themselves report them; `POST /admin/v1/groups/{group_id}/leader`, a
//! leader move.

use std::time::Instant;

use axum::extract::State;
use boxoffice_raft::types::GroupId;

use crate::app::AppState;
use crate::auth::Admin;
use crate::cluster_view::{assemble, check_leader_move, ClusterView, LeaderMove, LeaderMoved};
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
    let status = state.inventory.cluster_status().await?;
    Ok(ApiJson(assemble(&status, &state.seats.events_per_group())))
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
    let status = state.inventory.cluster_status().await?;
    let view = assemble(&status, &state.seats.events_per_group());
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
