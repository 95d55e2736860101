//! Operating the cluster (role admin): `GET /admin/v1/cluster`, the nodes and groups as the
//! storage nodes themselves report them.

use axum::extract::State;

use crate::app::AppState;
use crate::auth::Admin;
use crate::cluster_view::{assemble, ClusterView};
use crate::extract::ApiJson;
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
