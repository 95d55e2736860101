//! Failover without waiting out the lease when a leader's process is gone.
//!
//! openraft 0.9 makes a follower wait out its lease on the leader (`election_timeout_max`)
//! plus a random election timeout before it campaigns, and a voter whose vote is the
//! leader's committed one refuses every vote request inside that lease. With the default
//! 150 ms / 600–1,200 ms timing a SIGKILLed leader cost 1.8–2.4 s of writes, more with a
//! split vote. Waiting is the right answer when a follower merely stops hearing from its
//! leader (a partition, a stalled disk): the leader may be alive. It is not needed when the
//! leader's process is known to be gone, and that is knowable:
//!
//! 1. **Watching.** Every follower holds one long-poll call, `GET /cluster/watch`, open to
//!    its group's leader ([`watch_leader`]). The leader's node answers only after
//!    [`WATCH_HOLD_MS`]. When the leader's process dies, its kernel closes the connection
//!    at once, so the call fails in well under a millisecond instead of hanging.
//! 2. **Confirming.** A failed watch alone proves nothing (a connection can drop for other
//!    reasons), so the follower then opens a fresh connection to the leader's address
//!    ([`crate::transport::Transport::probe`]). Only a refused connection (nothing listens
//!    there) counts as death. A partition or an overloaded peer gives a timeout, never a
//!    refusal, so they keep openraft's timers and leases as they are.
//! 3. **Taking over** ([`take_over`]). Every surviving voter campaigns once at once: its vote
//!    is then its own candidacy, not the dead leader's committed vote, so no lease guards it
//!    any more. Votes split in that first round (each voted for itself). Then, by rank (the
//!    surviving voters in node-id order), each campaigns again, rank 0 first, [`step_ms`]
//!    apart, while no leader is known; the first to ask wins, at one term more, if its log is
//!    as long as the others'. A survivor that a voter refused for a longer log campaigns no
//!    more (the Raft network notes such refusals in [`Campaigns`]), and one that
//!    gave its vote to a later candidate meanwhile does not campaign (that one is winning). After
//!    [`TAKEOVER_ROUNDS`] rounds openraft's own timers are left to it.
//!
//! Safety does not depend on any of this: a campaign is always safe in Raft (a candidate wins
//! only with a majority of votes for its term, and only with a log at least as long as each
//! voter's), and `trigger().elect()` is openraft's own way to start one. What the detector
//! changes is only when campaigns start. A wrong detection (a leader restarted on the same
//! address) costs one election, as a leader move does. Reads never relied on the lease:
//! openraft's `ensure_linearizable` confirms leadership with a quorum round trip.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use openraft::ServerState;

use crate::host::Group;
use crate::transport::{Probe, Transport, TransportError};
use crate::types::NodeId;

/// How long a node holds a watch call open before answering it (the follower then asks
/// again). Only bounds how long an idle connection lives; a death is seen at once.
pub const WATCH_HOLD_MS: u64 = 20_000;
/// How long the confirming connect may take; longer (a partition, a lost SYN) is not death.
pub const PROBE_TIMEOUT_MS: u64 = 300;
/// Campaigns by rank after the first, all-at-once one.
pub const TAKEOVER_ROUNDS: u64 = 8;
/// Pause after a watch failed for a reason other than the leader's death (an older node
/// without the route, a refused credential), so a follower never spins.
pub const WATCH_BACKOFF_MS: u64 = 1_000;

/// The spacing of the ranked campaigns: half a heartbeat, which is longer than a vote round
/// trip on a quiet machine (one fdatasync each way) and short beside the election timeout.
pub fn step_ms(heartbeat_ms: u64) -> u64 {
    (heartbeat_ms / 2).max(10)
}

/// What a replica's vote requests met, kept by the Raft network ([`crate::network`]).
#[derive(Debug, Default)]
pub struct Campaigns {
    /// The highest term in which a voter refused this replica's vote because its own log is
    /// longer: such a voter never votes for this replica until its log grows.
    longer_log_seen: AtomicU64,
    /// Vote requests sent and not yet answered (or failed).
    votes_in_flight: AtomicU64,
}

/// Counts one vote request in flight until dropped.
pub(crate) struct InFlight<'a>(&'a Campaigns);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.votes_in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Campaigns {
    pub(crate) fn vote_sent(&self) -> InFlight<'_> {
        self.votes_in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    pub(crate) fn vote_answered(
        &self,
        req: &openraft::raft::VoteRequest<NodeId>,
        resp: &openraft::raft::VoteResponse<NodeId>,
    ) {
        if !resp.vote_granted && resp.last_log_id > req.last_log_id {
            self.longer_log_seen
                .fetch_max(req.vote.leader_id().term, Ordering::Relaxed);
        }
    }
}

type Metrics = openraft::RaftMetrics<NodeId, openraft::BasicNode>;
type MetricsRx = tokio::sync::watch::Receiver<Metrics>;

/// The node this replica follows: another node it knows leads the group while this replica
/// is a voter that does not lead. `None`: nothing to watch. No allocation: it runs on every
/// metrics change.
fn followed(m: &Metrics) -> Option<NodeId> {
    let membership = m.membership_config.membership();
    if m.state == ServerState::Leader || !membership.voter_ids().any(|v| v == m.id) {
        return None;
    }
    m.current_leader.filter(|l| *l != m.id)
}

fn addr_of(m: &Metrics, node: NodeId) -> Option<String> {
    let membership = m.membership_config.membership();
    membership.get_node(&node).map(|n| n.addr.clone())
}

/// Whether this replica should campaign (again) for the group whose leader `dead` died,
/// `last_campaign` being the term its own last campaign ran at and `first_campaign` the
/// term the takeover's first one ran at: it does not lead and knows no live leader; no vote
/// request of its own is still out (a new campaign would void the answers on their way: a
/// voter still catching up on its disk answers late, and campaigning again then only
/// raises terms); it has
/// not since given its vote to a later candidate (who is winning; a campaign now would only
/// depose it; a vote at the same term is one a refusal carried back, not one it gave); and
/// no voter refused it for a longer log during this takeover (it cannot win; the voters with
/// longer logs campaign).
fn should_campaign(g: &Group, dead: NodeId, last_campaign: u64, first_campaign: u64) -> bool {
    let metrics = g.raft.metrics();
    let m = metrics.borrow();
    let vote = m.vote.leader_id();
    let gave_vote = vote
        .voted_for()
        .is_some_and(|v| v != m.id && v != dead && vote.term > last_campaign);
    without_live_leader(&m, dead)
        && !gave_vote
        && g.campaigns.votes_in_flight.load(Ordering::Relaxed) == 0
        && g.campaigns.longer_log_seen.load(Ordering::Relaxed) < first_campaign
}

/// Still without a live leader: this node does not lead and knows of none but `dead`.
fn leaderless(g: &Group, dead: NodeId) -> bool {
    without_live_leader(&g.raft.metrics().borrow(), dead)
}

fn without_live_leader(m: &Metrics, dead: NodeId) -> bool {
    m.state != ServerState::Leader && m.current_leader.is_none_or(|l| l == dead)
}

/// Runs for the replica's life (a task of the group): watches whichever node leads the group
/// while this replica follows, and takes over when that node's process is gone.
pub(crate) async fn watch_leader(group: Weak<Group>, transport: Arc<Transport>, step_ms: u64) {
    let Some(mut metrics) = group.upgrade().map(|g| g.raft.metrics()) else {
        return;
    };
    loop {
        let (now, addr) = {
            let m = metrics.borrow_and_update();
            let now = followed(&m);
            (now, now.and_then(|l| addr_of(&m, l)))
        };
        let (Some(leader), Some(addr)) = (now, addr) else {
            if metrics.changed().await.is_err() {
                return;
            }
            continue;
        };
        let call = transport.get(
            &addr,
            "/cluster/watch",
            Duration::from_millis(WATCH_HOLD_MS + 5_000),
        );
        // The leader may change while the call is out (an election, a move): then watch the
        // new one instead.
        let result = tokio::select! {
            biased;
            changed = leader_changes(&mut metrics, now) => Err(changed),
            result = call => Ok(result),
        };
        let result = match result {
            Ok(result) => result,
            Err(true) => continue,
            Err(false) => return,
        };
        match result {
            Ok(_) | Err(TransportError::Timeout { .. }) => continue,
            // The leader's node is stopping: soon nothing listens there. Ask again shortly;
            // that call is refused once it has stopped.
            Err(TransportError::Status { status: 503, .. }) => {
                tokio::time::sleep(Duration::from_millis(step_ms)).await;
                continue;
            }
            Err(TransportError::Status { status, body, .. }) => {
                tracing::debug!(leader, status, body, "leader watch refused");
                tokio::time::sleep(Duration::from_millis(WATCH_BACKOFF_MS)).await;
                continue;
            }
            Err(TransportError::Connect { .. } | TransportError::Broken { .. }) => {}
        }
        match transport
            .probe(&addr, Duration::from_millis(PROBE_TIMEOUT_MS))
            .await
        {
            Probe::Refused => {}
            Probe::Listening | Probe::Unknown => {
                // Alive, or not provably dead: openraft's timers decide. Pause briefly so a
                // peer that keeps dropping connections is not hammered.
                tokio::time::sleep(Duration::from_millis(step_ms)).await;
                continue;
            }
        }
        let Some(g) = group.upgrade() else { return };
        if followed(&metrics.borrow_and_update()) != now {
            continue;
        }
        tracing::info!(
            group = g.id,
            leader,
            addr,
            "leader's process is gone (connection refused): taking over"
        );
        metrics::counter!(
            "boxoffice_leader_deaths_seen_total",
            "node" => g.raft.metrics().borrow().id.to_string(),
            "group" => g.id.to_string()
        )
        .increment(1);
        take_over(&g, leader, step_ms).await;
    }
}

/// Resolves when the replica's leader (or role) is no longer `now`: `true`, or `false`
/// when the replica is gone. Metrics change with every append; each change costs a compare.
async fn leader_changes(metrics: &mut MetricsRx, now: Option<NodeId>) -> bool {
    loop {
        if metrics.changed().await.is_err() {
            return false;
        }
        if followed(&metrics.borrow_and_update()) != now {
            return true;
        }
    }
}

/// Step 3 of the module's scheme: campaign at once, then by rank while no leader is known.
async fn take_over(g: &Arc<Group>, dead: NodeId, step_ms: u64) {
    let m = g.raft.metrics().borrow().clone();
    let mut survivors: Vec<NodeId> = m
        .membership_config
        .membership()
        .voter_ids()
        .filter(|v| *v != dead)
        .collect();
    survivors.sort_unstable();
    let Some(rank) = survivors.iter().position(|v| *v == m.id) else {
        return;
    };
    let ranks = survivors.len() as u64;
    // The term a campaign started now runs at (openraft campaigns at its vote's term + 1).
    let next_term = || g.raft.metrics().borrow().vote.leader_id().term + 1;
    let first_campaign = next_term();
    let mut last_campaign = first_campaign;
    let elect = || async {
        if let Err(error) = g.raft.trigger().elect().await {
            tracing::debug!(group = g.id, %error, "campaign not started");
        }
    };
    // Every survivor's vote becomes its own candidacy, which no lease guards.
    if should_campaign(g, dead, last_campaign, first_campaign) {
        elect().await;
    }
    for round in 0..TAKEOVER_ROUNDS {
        let wait = if round == 0 {
            step_ms * (rank as u64 + 1)
        } else {
            step_ms * ranks
        };
        tokio::time::sleep(Duration::from_millis(wait)).await;
        if should_campaign(g, dead, last_campaign, first_campaign) {
            last_campaign = next_term();
            elect().await;
        } else if !leaderless(g, dead) {
            return;
        }
    }
}
