//! A storage node's Prometheus metrics, through the `metrics` facade (the binary installs
//! the recorder and serves `/metrics`; without one, as in the simulator, they cost nothing).
//!
//! Every series carries `node` and `group` labels, so the three replicas `boxoffice dev`
//! runs in one process stay apart. Counters and histograms are recorded where things happen
//! (proposer, log writer, state machine); gauges are read from openraft's metrics when the
//! endpoint is scraped ([`record_gauges`]).

use metrics::{Counter, Histogram};
use openraft::ServerState;

use crate::types::{GroupId, NodeId};

/// 1 for the replica's current role (`role` label: leader, follower, candidate, learner,
/// shutdown), 0 for the others.
pub const ROLE: &str = "boxoffice_raft_role";
pub const TERM: &str = "boxoffice_raft_term";
/// The leader this replica knows of (0: none).
pub const LEADER_ID: &str = "boxoffice_raft_leader_id";
/// Times the leader this replica knows of changed (a leader seen, lost or replaced).
pub const LEADER_CHANGES: &str = "boxoffice_raft_leader_changes_total";
pub const LAST_LOG_INDEX: &str = "boxoffice_raft_last_log_index";
pub const APPLIED_INDEX: &str = "boxoffice_raft_applied_index";
/// On the leader only: the highest index a majority of voters has (openraft 0.9 exposes
/// no commit index, so this is computed from the leader's replication progress).
pub const COMMIT_INDEX: &str = "boxoffice_raft_commit_index";
pub const SNAPSHOT_INDEX: &str = "boxoffice_raft_snapshot_index";
/// Log entries this node proposed as leader (each a batch of requests).
pub const PROPOSALS: &str = "boxoffice_raft_proposals_total";
/// Requests those entries carried.
pub const PROPOSED_REQUESTS: &str = "boxoffice_raft_proposed_requests_total";
/// Requests per proposed entry.
pub const BATCH_REQUESTS: &str = "boxoffice_raft_batch_requests";
/// Log entries applied to the state machine.
pub const ENTRIES_APPLIED: &str = "boxoffice_raft_entries_applied_total";
/// Seconds one fsync of the Raft log took (one per drained batch of writes).
pub const LOG_FSYNC_SECONDS: &str = "boxoffice_raft_log_fsync_seconds";
pub const SNAPSHOTS_BUILT: &str = "boxoffice_raft_snapshots_built_total";
pub const SNAPSHOTS_INSTALLED: &str = "boxoffice_raft_snapshots_installed_total";

/// Bucket bounds of [`LOG_FSYNC_SECONDS`], in seconds.
pub const LOG_FSYNC_BUCKETS_SECONDS: [f64; 12] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
];
/// Bucket bounds of [`BATCH_REQUESTS`], in requests.
pub const BATCH_REQUESTS_BUCKETS: [f64; 10] =
    [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// One replica's counters and histograms, registered once with its labels.
#[derive(Clone)]
pub struct GroupMetrics {
    pub proposals: Counter,
    pub proposed_requests: Counter,
    pub batch_requests: Histogram,
    pub entries_applied: Counter,
    pub log_fsync_seconds: Histogram,
    pub snapshots_built: Counter,
    pub snapshots_installed: Counter,
    pub leader_changes: Counter,
}

impl GroupMetrics {
    pub fn new(node: NodeId, group: GroupId) -> GroupMetrics {
        let labels = [("node", node.to_string()), ("group", group.to_string())];
        GroupMetrics {
            proposals: metrics::counter!(PROPOSALS, &labels),
            proposed_requests: metrics::counter!(PROPOSED_REQUESTS, &labels),
            batch_requests: metrics::histogram!(BATCH_REQUESTS, &labels),
            entries_applied: metrics::counter!(ENTRIES_APPLIED, &labels),
            log_fsync_seconds: metrics::histogram!(LOG_FSYNC_SECONDS, &labels),
            snapshots_built: metrics::counter!(SNAPSHOTS_BUILT, &labels),
            snapshots_installed: metrics::counter!(SNAPSHOTS_INSTALLED, &labels),
            leader_changes: metrics::counter!(LEADER_CHANGES, &labels),
        }
    }
}

const ROLES: [(ServerState, &str); 5] = [
    (ServerState::Leader, "leader"),
    (ServerState::Follower, "follower"),
    (ServerState::Candidate, "candidate"),
    (ServerState::Learner, "learner"),
    (ServerState::Shutdown, "shutdown"),
];

/// Sets one replica's gauges from openraft's view of it.
pub fn record_gauges(node: NodeId, group: GroupId, m: &crate::typ::RaftMetrics) {
    let labels = [("node", node.to_string()), ("group", group.to_string())];
    for (state, name) in ROLES {
        let value = if m.state == state { 1.0 } else { 0.0 };
        metrics::gauge!(ROLE, "node" => node.to_string(), "group" => group.to_string(), "role" => name)
            .set(value);
    }
    metrics::gauge!(TERM, &labels).set(m.current_term as f64);
    metrics::gauge!(LEADER_ID, &labels).set(m.current_leader.unwrap_or(0) as f64);
    metrics::gauge!(LAST_LOG_INDEX, &labels).set(m.last_log_index.unwrap_or(0) as f64);
    let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
    metrics::gauge!(APPLIED_INDEX, &labels).set(applied as f64);
    metrics::gauge!(SNAPSHOT_INDEX, &labels).set(m.snapshot.map(|l| l.index).unwrap_or(0) as f64);
    if let Some(commit) = leader_commit_index(m) {
        metrics::gauge!(COMMIT_INDEX, &labels).set(commit as f64);
    }
}

/// On a leader, the highest log index a majority of the voters has matched.
pub fn leader_commit_index(m: &crate::typ::RaftMetrics) -> Option<u64> {
    let replication = m.replication.as_ref()?;
    let mut matched: Vec<u64> = m
        .membership_config
        .membership()
        .voter_ids()
        .map(|id| {
            if id == m.id {
                m.last_log_index.unwrap_or(0)
            } else {
                replication
                    .get(&id)
                    .and_then(|l| l.map(|l| l.index))
                    .unwrap_or(0)
            }
        })
        .collect();
    if matched.is_empty() {
        return None;
    }
    matched.sort_unstable_by(|a, b| b.cmp(a));
    // With n voters, the (n/2 + 1)-th highest is on a majority.
    matched.get(matched.len() / 2).copied()
}
