//! The typed client the API tier uses: finds an event's group, sends to its leader, follows
//! leader hints and retries what is safe.
//!
//! Every mutation must carry a request id, so resending it after a timeout or a leader change
//! cannot apply it twice (the state machine answers a replay with the first outcome). When no
//! leader can be reached before the deadline the error says so distinctly
//! ([`InventoryError::NoLeader`] when nothing was delivered, [`InventoryError::OutcomeUnknown`]
//! when an attempt may have been).
//!
//! The API tier calls the typed methods ([`InventoryClient::hold`], [`InventoryClient::release`],
//! [`InventoryClient::get_booking`], …): each answers the one thing it asks for, with a
//! replicated refusal as [`InventoryError::Rejected`] or [`InventoryError::SeatsTaken`], so no
//! caller matches outcomes its command cannot have. The raw [`InventoryClient::execute`] and
//! [`InventoryClient::read`] stay for the simulator and benchmarks, which record every outcome.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

mod calls;
mod cluster;

pub use cluster::{
    ClusterStatus, ReplicaMoveReport, MOVE_LEADER_TIMEOUT_MS, MOVE_REPLICA_TIMEOUT_MS,
    NODE_STATUS_TIMEOUT_MS,
};

use calls::{refusal, unexpected_read};
pub use calls::{Settlement, Timed};

use crate::batch::batch_and_dispatch;
use crate::codec::{decode, encode, stable_hash};
use crate::feed::FeedPage;
use crate::host::Host;
use crate::transport::{Transport, TransportError};
use crate::types::*;
use crate::wire::{Query, QueryResult, ReadReply, ServeError};

/// Time for one call to one node.
pub const CALL_TIMEOUT_MS: u64 = 3_000;
/// Time a request may spend finding a leader before the client gives up.
pub const REQUEST_DEADLINE_MS: u64 = 8_000;
/// Single-request writes to one group a client keeps in flight; more wait and go together
/// in the next write (batching without a timer). One: the holds that arrive during a write's
/// round trip all leave in the next, so entries are fuller and each hold pays less of an
/// entry's fsyncs and messages (9.3 instead of 5.7 holds per entry at 64 clients, 82–91
/// instead of 106–133 µs per hold, p99 7.9–10.4 instead of 9.2–11.0 ms; BENCHMARKS.md).
/// More in flight was worse at every concurrency measured.
pub const CLIENT_INFLIGHT_WRITES_PER_GROUP: usize = 1;
/// Most requests a client sends in one write.
pub const CLIENT_MAX_BATCH_REQUESTS: usize = 256;
/// Single-request writes waiting for a batch, per group.
pub const CLIENT_QUEUE_LEN: usize = 65_536;
/// First pause between attempts when no leader is known (doubles up to the max). The max is
/// well under an election (a leader is elected within a second of the old one dying), so a
/// new leader is found at most this late.
pub const RETRY_BACKOFF_MIN_MS: u64 = 25;
pub const RETRY_BACKOFF_MAX_MS: u64 = 100;
/// Times [`bootstrap`] retries a group-table write while the meta group elects its leader.
pub const BOOTSTRAP_ATTEMPTS: u32 = 10;

#[derive(Debug, Clone, thiserror::Error)]
pub enum InventoryError {
    /// No leader answered before the deadline and no attempt was delivered: nothing changed.
    #[error("group {group} has no reachable leader")]
    NoLeader { group: GroupId },
    /// The deadline passed after an attempt that may have been applied; resend with the same
    /// request id to learn the outcome.
    #[error("outcome unknown for group {group}: {last_error}")]
    OutcomeUnknown { group: GroupId, last_error: String },
    #[error("event {0} is not placed in any group")]
    UnknownEvent(EventId),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// The inventory applied the request and refused it; nothing changed.
    #[error("refused: {0:?}")]
    Rejected(Rejection),
    /// A hold found these seats taken; nothing changed.
    #[error("seats not available: {seat_ids:?}")]
    SeatsTaken { seat_ids: Vec<SeatId> },
    /// A storage node refused this client's cluster credential (a wrong or missing key, or
    /// a clock too far off); nothing changed.
    #[error("storage node refused the cluster credential: {0}")]
    Unauthorized(String),
    /// A best-available hold found too few seats ([`Outcome::NotEnoughSeats`]); nothing
    /// changed.
    #[error("not enough seats: {available} available")]
    NotEnoughSeats { available: u32 },
    /// An operation on the cluster itself (a leader move) could not be done now; it says
    /// why, and what it had started is undone or ends by itself.
    #[error("group {group}: {reason}")]
    Unavailable { group: GroupId, reason: String },
}

#[derive(Default)]
struct Routes {
    members: BTreeMap<GroupId, Vec<(NodeId, String)>>,
    leaders: BTreeMap<GroupId, String>,
    placement: BTreeMap<EventId, GroupId>,
}

type Queued = (Request, oneshot::Sender<Result<Reply, InventoryError>>);

/// How a new event's inventory group is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placing {
    /// A stable hash of the event id over the inventory groups (benchmarks, the simulator).
    ByHash,
    /// The group with the fewest events.
    LeastLoaded,
}

/// A client of the storage cluster.
#[derive(Clone)]
pub struct InventoryClient {
    transport: Arc<Transport>,
    seeds: Arc<Vec<String>>,
    routes: Arc<RwLock<Routes>>,
    deadline: Duration,
    /// Per-group queues feeding [`batch_loop`] tasks (which stop when the client is dropped).
    batchers: Arc<Mutex<BTreeMap<GroupId, mpsc::Sender<Queued>>>>,
}

impl InventoryClient {
    /// `seeds`: addresses of any storage nodes; the rest is learned from the meta group.
    pub fn new(transport: Arc<Transport>, seeds: Vec<String>) -> InventoryClient {
        InventoryClient {
            transport,
            seeds: Arc::new(seeds),
            routes: Arc::new(RwLock::new(Routes::default())),
            deadline: Duration::from_millis(REQUEST_DEADLINE_MS),
            batchers: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    pub fn with_deadline(mut self, deadline: Duration) -> InventoryClient {
        self.deadline = deadline;
        self
    }

    fn routes(&self) -> std::sync::RwLockReadGuard<'_, Routes> {
        self.routes.read().unwrap_or_else(|p| p.into_inner())
    }

    fn routes_mut(&self) -> std::sync::RwLockWriteGuard<'_, Routes> {
        self.routes.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Where to try `group`, best guess first: the leader hint, the members, then the seeds.
    fn candidates(&self, group: GroupId) -> Vec<String> {
        let routes = self.routes();
        let mut out: Vec<String> = Vec::new();
        let mut push = |addr: &String| {
            if !out.contains(addr) {
                out.push(addr.clone());
            }
        };
        if let Some(leader) = routes.leaders.get(&group) {
            push(leader);
        }
        for (_, addr) in routes.members.get(&group).into_iter().flatten() {
            push(addr);
        }
        for addr in self.seeds.iter() {
            push(addr);
        }
        out
    }

    /// Sends `body` to `path` on `group`'s leader, following hints and retrying until the
    /// deadline. `R` is what the node answers on success.
    async fn call_leader<B: Serialize, R: DeserializeOwned>(
        &self,
        group: GroupId,
        path: &str,
        body: &B,
    ) -> Result<R, InventoryError> {
        let body = encode(body);
        let started = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(RETRY_BACKOFF_MIN_MS);
        let mut maybe_delivered: Option<String> = None;
        let mut hint: Option<String> = None;
        let mut refreshed_members = group == META_GROUP;
        // Nodes that could not be reached in this round: followers keep naming a dead leader
        // until they elect a new one, and following that hint at once would spin.
        let mut unreachable: Vec<String> = Vec::new();
        loop {
            let mut candidates = self.candidates(group);
            if let Some(h) = hint.take() {
                candidates.retain(|a| *a != h);
                candidates.insert(0, h);
            }
            let mut followed_hint = false;
            for addr in candidates {
                if started.elapsed() >= self.deadline {
                    break;
                }
                let timeout = Duration::from_millis(CALL_TIMEOUT_MS)
                    .min(self.deadline.saturating_sub(started.elapsed()));
                match self
                    .transport
                    .post(&addr, path, body.clone(), timeout)
                    .await
                {
                    Ok(bytes) => {
                        let answer: Result<R, ServeError> =
                            decode(&bytes).map_err(InventoryError::Protocol)?;
                        match answer {
                            Ok(value) => {
                                self.routes_mut().leaders.insert(group, addr);
                                return Ok(value);
                            }
                            Err(ServeError::NotLeader {
                                leader: Some((_, leader_addr)),
                                ..
                            }) if leader_addr != addr && !unreachable.contains(&leader_addr) => {
                                self.routes_mut().leaders.insert(group, leader_addr.clone());
                                hint = Some(leader_addr);
                                followed_hint = true;
                                break;
                            }
                            Err(ServeError::NotLeader { .. })
                            | Err(ServeError::UnknownGroup(_)) => continue,
                            Err(ServeError::Unavailable(reason)) => {
                                // The proposal may have been appended before leadership was lost.
                                maybe_delivered = Some(reason);
                                continue;
                            }
                            Err(ServeError::Invalid(reason)) => {
                                return Err(InventoryError::Invalid(reason))
                            }
                        }
                    }
                    Err(e) if e.not_sent() => {
                        unreachable.push(addr);
                        continue;
                    }
                    Err(TransportError::Status {
                        status: 400, body, ..
                    }) => {
                        return Err(InventoryError::Invalid(body));
                    }
                    Err(TransportError::Status {
                        status: 401, body, ..
                    }) => {
                        return Err(InventoryError::Unauthorized(body));
                    }
                    Err(e) => {
                        maybe_delivered = Some(e.to_string());
                        continue;
                    }
                }
            }
            if started.elapsed() >= self.deadline {
                return Err(match maybe_delivered {
                    Some(last_error) => InventoryError::OutcomeUnknown { group, last_error },
                    None => InventoryError::NoLeader { group },
                });
            }
            if followed_hint {
                continue;
            }
            if !refreshed_members {
                refreshed_members = true;
                self.refresh_groups_once().await;
                continue;
            }
            self.routes_mut().leaders.remove(&group);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(RETRY_BACKOFF_MAX_MS));
            unreachable.clear();
        }
    }

    /// Proposes `requests` to `group`. Every request must carry a request id.
    pub async fn write(
        &self,
        group: GroupId,
        requests: Vec<Request>,
    ) -> Result<Vec<Reply>, InventoryError> {
        if requests.iter().any(|r| r.request_id.is_none()) {
            return Err(InventoryError::Invalid(
                "every mutation needs a request id".into(),
            ));
        }
        let n = requests.len();
        let replies: Vec<Reply> = self
            .call_leader(group, &format!("/inventory/{group}/write"), &requests)
            .await?;
        if replies.len() != n {
            return Err(InventoryError::Protocol(format!(
                "{n} requests, {} replies",
                replies.len()
            )));
        }
        Ok(replies)
    }

    /// Proposes one command with its request id. Concurrent calls for the same group share
    /// writes: while [`CLIENT_INFLIGHT_WRITES_PER_GROUP`] is in flight, the rest queue and
    /// leave together in the next one.
    pub async fn execute(
        &self,
        group: GroupId,
        request_id: &str,
        command: Command,
    ) -> Result<Reply, InventoryError> {
        let request = Request {
            request_id: Some(request_id.to_owned()),
            command,
        };
        let queue = {
            let mut batchers = self.batchers.lock().unwrap_or_else(|p| p.into_inner());
            match batchers.get(&group) {
                Some(tx) if !tx.is_closed() => tx.clone(),
                _ => {
                    let (tx, rx) = mpsc::channel(CLIENT_QUEUE_LEN);
                    // The task's client has its own (empty) batcher table, so it does not keep
                    // this client's queues alive.
                    let writer = InventoryClient {
                        batchers: Arc::new(Mutex::new(BTreeMap::new())),
                        ..self.clone()
                    };
                    crate::spawn::spawn(batch_loop(writer, group, rx));
                    batchers.insert(group, tx.clone());
                    tx
                }
            }
        };
        let (tx, rx) = oneshot::channel();
        queue
            .send((request, tx))
            .await
            .map_err(|_| InventoryError::Protocol("client batcher stopped".into()))?;
        rx.await
            .map_err(|_| InventoryError::Protocol("client batcher dropped the request".into()))?
    }

    /// A linearizable read of `group`.
    pub async fn read(&self, group: GroupId, query: Query) -> Result<ReadReply, InventoryError> {
        self.call_leader(group, &format!("/inventory/{group}/read"), &query)
            .await
    }

    /// Learns every group's members from the meta group.
    pub async fn refresh_groups(
        &self,
    ) -> Result<Vec<(GroupId, Vec<(NodeId, String)>)>, InventoryError> {
        let reply = self.read(META_GROUP, Query::Groups).await?;
        let groups = match reply.result {
            QueryResult::Groups(groups) => Ok(groups),
            other => Err(unexpected_read("groups", other)),
        }?;
        let mut routes = self.routes_mut();
        for (g, members) in &groups {
            routes.members.insert(*g, members.clone());
        }
        Ok(groups)
    }

    /// One pass over the meta group's candidates for the group table (no retries, so it can
    /// run inside [`Self::call_leader`]'s loop).
    async fn refresh_groups_once(&self) {
        let body = encode(&Query::Groups);
        let path = format!("/inventory/{META_GROUP}/read");
        let mut candidates = self.candidates(META_GROUP);
        let mut i = 0;
        while i < candidates.len() && i < 2 * self.seeds.len() + 8 {
            let addr = candidates[i].clone();
            i += 1;
            let Ok(bytes) = self
                .transport
                .post(
                    &addr,
                    &path,
                    body.clone(),
                    Duration::from_millis(CALL_TIMEOUT_MS),
                )
                .await
            else {
                continue;
            };
            match decode::<Result<ReadReply, ServeError>>(&bytes) {
                Ok(Ok(ReadReply {
                    result: QueryResult::Groups(groups),
                    ..
                })) => {
                    let mut routes = self.routes_mut();
                    routes.leaders.insert(META_GROUP, addr);
                    for (g, members) in groups {
                        routes.members.insert(g, members);
                    }
                    return;
                }
                Ok(Err(ServeError::NotLeader {
                    leader: Some((_, leader)),
                    ..
                })) if !candidates[i..].contains(&leader) => {
                    candidates.insert(i, leader);
                }
                _ => {}
            }
        }
    }

    /// The group holding `event_id`'s inventory (cached: events never change group).
    pub async fn group_of(&self, event_id: &str) -> Result<GroupId, InventoryError> {
        if let Some(&g) = self.routes().placement.get(event_id) {
            return Ok(g);
        }
        let reply = self
            .read(META_GROUP, Query::Placement(event_id.to_owned()))
            .await?;
        let placed = match reply.result {
            QueryResult::Placement(placed) => Ok(placed),
            other => Err(unexpected_read("placement", other)),
        }?;
        let group = placed.ok_or_else(|| InventoryError::UnknownEvent(event_id.to_owned()))?;
        self.routes_mut()
            .placement
            .insert(event_id.to_owned(), group);
        Ok(group)
    }

    /// Places the event in a shard (chosen by a stable hash of its id over the inventory
    /// groups) and registers its seats there (in chunks of [`MAX_SEATS_PER_COMMAND`]).
    /// Idempotent under the same `request_id`; answers the event's group.
    pub async fn register_event(
        &self,
        request_id: &str,
        event: RegisterEventCmd,
    ) -> Result<GroupId, InventoryError> {
        let (group, reply) = self.register_event_raw(request_id, event).await?;
        match reply.outcome {
            Outcome::Registered { .. } => Ok(group),
            other => Err(refusal("register event", other)),
        }
    }

    /// [`Self::register_event`] with the last registration command's raw reply.
    pub async fn register_event_raw(
        &self,
        request_id: &str,
        event: RegisterEventCmd,
    ) -> Result<(GroupId, Reply), InventoryError> {
        self.register_placed(request_id, event, Placing::ByHash)
            .await
    }

    /// [`Self::register_event`], placing a new event in the inventory group with the fewest
    /// events (as the meta group counts them; ties to the lowest id), so groups added later
    /// fill up first. What the admin API does.
    pub async fn register_event_least_loaded(
        &self,
        request_id: &str,
        event: RegisterEventCmd,
    ) -> Result<GroupId, InventoryError> {
        let (group, reply) = self
            .register_placed(request_id, event, Placing::LeastLoaded)
            .await?;
        match reply.outcome {
            Outcome::Registered { .. } => Ok(group),
            other => Err(refusal("register event", other)),
        }
    }

    /// The inventory group for a new event, by `placing`.
    async fn place(&self, event_id: &str, placing: Placing) -> Result<GroupId, InventoryError> {
        let none = || InventoryError::Invalid("the cluster has no inventory groups".into());
        match placing {
            Placing::ByHash => {
                let groups = self.refresh_groups().await?;
                let shards: Vec<GroupId> = groups
                    .iter()
                    .map(|(g, _)| *g)
                    .filter(|g| *g != META_GROUP)
                    .collect();
                if shards.is_empty() {
                    return Err(none());
                }
                Ok(shards[(stable_hash(event_id.as_bytes()) % shards.len() as u64) as usize])
            }
            Placing::LeastLoaded => {
                let loads = match self.read(META_GROUP, Query::EventsPerGroup).await?.result {
                    QueryResult::EventsPerGroup(loads) => loads,
                    other => return Err(unexpected_read("events per group", other)),
                };
                loads
                    .into_iter()
                    .min_by_key(|(group, n_events)| (*n_events, *group))
                    .map(|(group, _)| group)
                    .ok_or_else(none)
            }
        }
    }

    async fn register_placed(
        &self,
        request_id: &str,
        event: RegisterEventCmd,
        placing: Placing,
    ) -> Result<(GroupId, Reply), InventoryError> {
        let RegisterEventCmd {
            event_id,
            currency,
            hold_ttl_ms,
            seats,
        } = event;
        let event_id = event_id.as_str();
        // An event placed already keeps its group (the meta group answers the first
        // assignment), so a retry lands where the first attempt did.
        let chosen = self.place(event_id, placing).await?;
        let assign = Command::AssignEvent(AssignEventCmd {
            event_id: event_id.to_owned(),
            group: chosen,
        });
        let reply = self
            .execute(META_GROUP, &format!("{request_id}/assign"), assign)
            .await?;
        let group = match reply.outcome {
            Outcome::Assigned { group } => Ok(group),
            other => Err(refusal("assign event", other)),
        }?;
        self.routes_mut()
            .placement
            .insert(event_id.to_owned(), group);
        let mut chunks = seats.chunks(MAX_SEATS_PER_COMMAND);
        let register = Command::RegisterEvent(RegisterEventCmd {
            event_id: event_id.to_owned(),
            currency,
            hold_ttl_ms,
            seats: chunks.next().unwrap_or_default().to_vec(),
        });
        let mut reply = self
            .execute(group, &format!("{request_id}/register"), register)
            .await?;
        for (i, chunk) in chunks.enumerate() {
            if !matches!(reply.outcome, Outcome::Registered { .. }) {
                break;
            }
            let more = Command::AddSeats(AddSeatsCmd {
                event_id: event_id.to_owned(),
                seats: chunk.to_vec(),
            });
            reply = self
                .execute(group, &format!("{request_id}/seats/{i}"), more)
                .await?;
        }
        Ok((group, reply))
    }

    /// Proposes a command concerning `event_id` to the group that holds it.
    pub async fn execute_for_event(
        &self,
        event_id: &str,
        request_id: &str,
        command: Command,
    ) -> Result<Reply, InventoryError> {
        let group = self.group_of(event_id).await?;
        self.execute(group, request_id, command).await
    }

    /// Reads `group`'s change feed after `from`, waiting up to `wait_ms` for news. Any
    /// replica may answer; the client prefers the leader it knows.
    pub async fn feed(
        &self,
        group: GroupId,
        from: u64,
        wait_ms: u64,
    ) -> Result<FeedPage, InventoryError> {
        let path = format!("/inventory/{group}/feed?from={from}&wait_ms={wait_ms}");
        let timeout = Duration::from_millis(wait_ms + CALL_TIMEOUT_MS);
        let mut last = None;
        for addr in self.candidates(group) {
            match self.transport.get(&addr, &path, timeout).await {
                Ok(bytes) => {
                    let answer: Result<FeedPage, ServeError> =
                        decode(&bytes).map_err(InventoryError::Protocol)?;
                    match answer {
                        Ok(page) => return Ok(page),
                        Err(e) => last = Some(e.to_string()),
                    }
                }
                Err(e) => last = Some(e.to_string()),
            }
        }
        if let Some(last_error) = last {
            tracing::debug!(group, %last_error, "feed read failed on every candidate");
            if !self.routes().members.contains_key(&group) {
                let _ = self.refresh_groups().await;
            }
        }
        Err(InventoryError::NoLeader { group })
    }
}

/// Sends queued single requests for one group, batched, with a bounded number in flight.
async fn batch_loop(client: InventoryClient, group: GroupId, rx: mpsc::Receiver<Queued>) {
    let max_inflight = CLIENT_INFLIGHT_WRITES_PER_GROUP;
    batch_and_dispatch(
        rx,
        max_inflight,
        CLIENT_MAX_BATCH_REQUESTS,
        |_| 1,
        |batch| {
            let client = client.clone();
            async move {
                let (requests, senders): (Vec<Request>, Vec<_>) = batch.into_iter().unzip();
                match client.write(group, requests).await {
                    Ok(replies) => {
                        for (sender, reply) in senders.into_iter().zip(replies) {
                            let _ = sender.send(Ok(reply));
                        }
                    }
                    Err(e) => {
                        for sender in senders {
                            let _ = sender.send(Err(e.clone()));
                        }
                    }
                }
            }
        },
    )
    .await;
}

/// Initializes every group (0 = meta, 1..=`shards` inventory) with `members` as voters
/// through `host`, then records the group table in the meta group. Safe to repeat: groups
/// already initialized stay as they are and the table writes are idempotent. `host`
/// initializes (and so first leads) every group: what the simulator and the benchmarks
/// start from; [`bootstrap_spreading_leaders`] spreads them.
pub async fn bootstrap(
    host: &Host,
    members: &[(NodeId, String)],
    shards: u64,
) -> Result<(), InventoryError> {
    host.initialize(members, shards)
        .await
        .map_err(|e| InventoryError::Protocol(e.to_string()))?;
    record_group_table(host, members, shards).await
}

/// [`bootstrap`], with group `g` initialized by member `g mod n` (in `members`' order), so
/// that member campaigns first and the groups start with their leaders spread over the
/// members instead of all on `host`. A member that cannot be reached after
/// [`BOOTSTRAP_ATTEMPTS`] tries has its groups initialized by `host` instead: openraft
/// allows several members to initialize a group with the same configuration, so a late
/// success of the remote call changes nothing but who wins the first election.
pub async fn bootstrap_spreading_leaders(
    host: &Host,
    members: &[(NodeId, String)],
    shards: u64,
) -> Result<(), InventoryError> {
    if members.is_empty() {
        return Err(InventoryError::Invalid("no members to bootstrap".into()));
    }
    let protocol = |e: ServeError| InventoryError::Protocol(e.to_string());
    let call = Duration::from_millis(CALL_TIMEOUT_MS);
    for group in 0..=shards as GroupId {
        let (first, addr) = &members[group as usize % members.len()];
        if *first == host.node_id() {
            host.initialize_group(group, members)
                .await
                .map_err(protocol)?;
            continue;
        }
        let path = format!("/cluster/groups/{group}/init");
        let mut initialized = false;
        for _ in 0..BOOTSTRAP_ATTEMPTS {
            let answer = host
                .transport()
                .post(addr, &path, encode(&members.to_vec()), call)
                .await;
            if let Ok(Ok(Ok(()))) = answer.map(|b| decode::<Result<(), ServeError>>(&b)) {
                initialized = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if !initialized {
            tracing::warn!(
                group,
                node = first,
                "member unreachable; initializing the group here"
            );
            host.initialize_group(group, members)
                .await
                .map_err(protocol)?;
        }
    }
    record_group_table(host, members, shards).await
}

/// Writes every group's members to the meta group's table (retrying while it elects).
async fn record_group_table(
    host: &Host,
    members: &[(NodeId, String)],
    shards: u64,
) -> Result<(), InventoryError> {
    let client = InventoryClient::new(
        host.transport(),
        members.iter().map(|(_, a)| a.clone()).collect(),
    );
    for group in 0..=shards as GroupId {
        let command = Command::PutGroup(PutGroupCmd {
            group,
            members: members.to_vec(),
        });
        let mut attempts = 0;
        loop {
            match client
                .execute(
                    META_GROUP,
                    &format!("bootstrap/group/{group}"),
                    command.clone(),
                )
                .await
            {
                Ok(_) => break,
                Err(e) if attempts < BOOTSTRAP_ATTEMPTS => {
                    attempts += 1;
                    tracing::info!(error = %e, "waiting for the meta group");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
    tracing::info!(shards, "cluster bootstrapped");
    Ok(())
}
