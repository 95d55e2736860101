//! The node's internal HTTP surface: Raft RPCs, inventory writes/reads/feeds and cluster
//! operations, bincode bodies (JSON for operator endpoints). Not the public API: every call
//! must carry the cluster credential ([`crate::auth`]) or it is refused with 401.
//!
//! Library code builds the `axum::Router`; `node/` (or the simulator) binds the listener.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query as UrlQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Deserialize;

use crate::codec::{decode, encode};
use crate::host::{Group, Host};
use crate::replica_move::ReplicaMove;
use crate::typ::TypeConfig;
use crate::types::{GroupId, NodeId, Request};
use crate::wire::{Query, ServeError};

/// Largest internal request body (snapshot chunks are the big ones), in bytes.
pub const MAX_INTERNAL_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Every route checks the cluster credential first ([`crate::auth::require_credential`]).
pub fn router(host: Host) -> Router {
    let auth = host.auth().clone();
    Router::new()
        .route("/raft/{group}/append", post(raft_append))
        .route("/raft/{group}/vote", post(raft_vote))
        .route("/raft/{group}/snapshot", post(raft_snapshot))
        .route("/inventory/{group}/write", post(write))
        .route("/inventory/{group}/read", post(read))
        .route("/inventory/{group}/feed", get(feed))
        .route("/inventory/{group}/digest", get(digest))
        .route("/cluster/status", get(status))
        .route("/cluster/watch", get(watch))
        .route("/cluster/init", post(init))
        .route("/cluster/groups/{group}/members", post(members))
        .route("/cluster/groups/{group}/leader", post(move_leader))
        .route(
            "/cluster/groups/{group}/pause-elections",
            post(pause_elections),
        )
        .route("/cluster/groups/{group}/campaign", post(campaign))
        .route("/cluster/groups/{group}/move", post(move_replica))
        .route("/cluster/groups/{group}/retire", post(retire_replica))
        .route("/cluster/groups/{group}/adopt", post(adopt_replica))
        .route("/cluster/groups/{group}/init", post(init_group))
        .layer(DefaultBodyLimit::max(MAX_INTERNAL_BODY_BYTES))
        .with_state(host)
        .layer(axum::middleware::from_fn_with_state(
            auth,
            crate::auth::require_credential,
        ))
}

fn bad_request(e: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_REQUEST, e.to_string()).into_response()
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
}

fn bincode_ok<T: serde::Serialize>(value: &T) -> Response {
    (StatusCode::OK, encode(value)).into_response()
}

/// Decodes a Raft RPC, hands it to the group's replica (created if this node has none yet)
/// and encodes openraft's answer.
async fn to_replica<Req, Resp, Fut>(
    host: Host,
    group: GroupId,
    body: &[u8],
    call: impl FnOnce(Arc<Group>, Req) -> Fut,
) -> Response
where
    Req: serde::de::DeserializeOwned,
    Resp: serde::Serialize,
    Fut: std::future::Future<Output = Resp>,
{
    let rpc: Req = match decode(body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    match host.ensure_group(group).await {
        Ok(g) => bincode_ok(&call(g, rpc).await),
        Err(e) => unavailable(e),
    }
}

async fn raft_append(
    State(host): State<Host>,
    Path(group): Path<GroupId>,
    body: Bytes,
) -> Response {
    to_replica(
        host,
        group,
        &body,
        |g, rpc: AppendEntriesRequest<TypeConfig>| async move { g.raft.append_entries(rpc).await },
    )
    .await
}

async fn raft_vote(State(host): State<Host>, Path(group): Path<GroupId>, body: Bytes) -> Response {
    to_replica(
        host,
        group,
        &body,
        |g, rpc: VoteRequest<NodeId>| async move { g.raft.vote(rpc).await },
    )
    .await
}

async fn raft_snapshot(
    State(host): State<Host>,
    Path(group): Path<GroupId>,
    body: Bytes,
) -> Response {
    to_replica(host, group, &body, |g, rpc: InstallSnapshotRequest<TypeConfig>| async move { g.raft.install_snapshot(rpc).await }).await
}

async fn write(State(host): State<Host>, Path(group): Path<GroupId>, body: Bytes) -> Response {
    let requests: Vec<Request> = match decode(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    if requests.iter().any(|r| r.command.is_housekeeping()) {
        return bincode_ok(&Err::<(), _>(ServeError::Invalid(
            "housekeeping commands are proposed by the leader".into(),
        )));
    }
    bincode_ok(&host.write(group, requests).await)
}

async fn read(State(host): State<Host>, Path(group): Path<GroupId>, body: Bytes) -> Response {
    let query: Query = match decode(&body) {
        Ok(q) => q,
        Err(e) => return bad_request(e),
    };
    bincode_ok(&host.read(group, query).await)
}

#[derive(Deserialize)]
struct FeedParams {
    from: u64,
    #[serde(default)]
    wait_ms: u64,
}

async fn feed(
    State(host): State<Host>,
    Path(group): Path<GroupId>,
    UrlQuery(p): UrlQuery<FeedParams>,
) -> Response {
    bincode_ok(&host.feed(group, p.from, p.wait_ms).await)
}

async fn digest(State(host): State<Host>, Path(group): Path<GroupId>) -> Response {
    bincode_ok(&host.digest(group))
}

async fn status(State(host): State<Host>) -> Response {
    Json(host.status()).into_response()
}

/// A follower's watch on this node ([`crate::failover`]): answered only after
/// [`crate::failover::WATCH_HOLD_MS`], so the connection stays open while this process
/// lives and closes the moment it dies; answered 503 at once when the node begins to stop.
async fn watch(State(host): State<Host>) -> Response {
    let hold = std::time::Duration::from_millis(crate::failover::WATCH_HOLD_MS);
    tokio::select! {
        _ = tokio::time::sleep(hold) => StatusCode::OK.into_response(),
        _ = host.stopping() => unavailable("node stopping"),
    }
}

#[derive(Deserialize)]
struct InitBody {
    members: Vec<(NodeId, String)>,
    shards: u64,
}

async fn init(State(host): State<Host>, Json(body): Json<InitBody>) -> Response {
    match host.initialize(&body.members, body.shards).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
struct MembersBody {
    /// The node to add as a learner first (id, address).
    add: (NodeId, String),
    voters: BTreeSet<NodeId>,
}

async fn members(
    State(host): State<Host>,
    Path(group): Path<GroupId>,
    Json(body): Json<MembersBody>,
) -> Response {
    match host.change_members(group, body.add, body.voters).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => unavailable(e),
    }
}

/// Moves the group's leadership (this node must lead it) to the voter in the body (bincode
/// `NodeId`); answers bincode `Result<NodeId, ServeError>` with the new leader.
async fn move_leader(
    State(host): State<Host>,
    Path(group): Path<GroupId>,
    body: Bytes,
) -> Response {
    let target: NodeId = match decode(&body) {
        Ok(t) => t,
        Err(e) => return bad_request(e),
    };
    bincode_ok(&host.move_leader(group, target).await)
}

/// A leader moving its leadership asks this voter not to campaign for a while (bincode
/// milliseconds).
async fn pause_elections(
    State(host): State<Host>,
    Path(group): Path<GroupId>,
    body: Bytes,
) -> Response {
    let pause_ms: u64 = match decode(&body) {
        Ok(ms) => ms,
        Err(e) => return bad_request(e),
    };
    bincode_ok(&host.pause_elections(group, pause_ms))
}

/// A leader moving its leadership here asks this voter to campaign now.
async fn campaign(State(host): State<Host>, Path(group): Path<GroupId>) -> Response {
    bincode_ok(&host.campaign(group).await)
}

/// Moves one replica of the group (this node must lead it): bincode [`ReplicaMove`] in,
/// bincode `Result<ReplicaMoved, ServeError>` out.
async fn move_replica(
    State(host): State<Host>,
    Path(group): Path<GroupId>,
    body: Bytes,
) -> Response {
    let mv: ReplicaMove = match decode(&body) {
        Ok(m) => m,
        Err(e) => return bad_request(e),
    };
    bincode_ok(&host.move_replica(group, mv).await)
}

/// The group's replica here was moved away: the body (bincode) is the group's voters now.
async fn retire_replica(
    State(host): State<Host>,
    Path(group): Path<GroupId>,
    body: Bytes,
) -> Response {
    let voters: Vec<NodeId> = match decode(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(e),
    };
    bincode_ok(&host.retire_replica(group, voters).await)
}

/// A replica of the group is about to be moved here.
async fn adopt_replica(State(host): State<Host>, Path(group): Path<GroupId>) -> Response {
    bincode_ok(&host.adopt_replica(group).await)
}

/// Initializes a new group with the members in the body (bincode `Vec<(NodeId, String)>`,
/// this node among them); answers bincode `Result<(), ServeError>`.
async fn init_group(State(host): State<Host>, Path(group): Path<GroupId>, body: Bytes) -> Response {
    let members: Vec<(NodeId, String)> = match decode(&body) {
        Ok(m) => m,
        Err(e) => return bad_request(e),
    };
    if !members.iter().any(|(id, _)| *id == host.node_id()) {
        return bincode_ok(&Err::<(), _>(ServeError::Invalid(format!(
            "node {} is not among group {group}'s members",
            host.node_id()
        ))));
    }
    bincode_ok(&host.initialize_group(group, &members).await)
}
