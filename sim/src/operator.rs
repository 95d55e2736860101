//! The operator: the admin API's moves (`InventoryClient::move_replica` and `move_leader`,
//! what `boxoffice admin groups move|leader` asks an API node to run) as the driver draws
//! them, run on a storage node's runtime (the first running node that does not lead the
//! group when the move is drawn, so that faults aimed at leaders seldom take the move down;
//! the client finds the leader itself, as an API node's does). Like an operator, it changes one group at a
//! time (a move of a group waits for the one before it), reruns a move that failed for a
//! passing reason (no leader, a node unreachable) a few times with growing pauses, and gives
//! up on one the cluster refused; the driver keeps the run going until every move in hand
//! has ended, so a move drawn late in the load is not cut off by the end of the run (a move
//! is lost only with the node running it). Every move is tallied by kind and how it ended.
//!
//! (It ran on a turmoil client host of its own at first, so that no crash could lose a
//! move; a run with that host was not reproducible when another seed ran on a second
//! thread of the same process — seed 6's move ended 2 ms apart — while the same moves on a
//! node's runtime are.)

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use boxoffice_raft::types::{GroupId, NodeId};
use boxoffice_raft::{InventoryClient, InventoryError};

use crate::clock::sim_ms;
use crate::cluster::node_addr;

/// How long the run waits, after the clients are done, for the moves still in hand.
pub const OPERATOR_BOUND_MS: u64 = 60_000;
/// How many times the operator runs one move before it gives up.
pub const OPERATOR_ATTEMPTS: u32 = 5;
/// The operator's pause after a move's first failed attempt; it doubles after each one
/// (1 + 2 + 4 + 8 s: the last attempts come after the heal of a fault that lasted to the
/// end of the load).
pub const OPERATOR_FIRST_PAUSE_MS: u64 = 1_000;

/// A move the operator is asked to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorCommand {
    /// The admin API's replica move: adopt on `to`, the leader's learner → joint consensus
    /// (a leader move first when `from` leads), the table in the meta group, `from`'s
    /// replica tombstoned.
    MoveReplica {
        group: GroupId,
        from: NodeId,
        to: NodeId,
    },
    /// The admin API's leader move: the current leader hands `group` to `to`.
    MoveLeader { group: GroupId, to: NodeId },
}

/// Which kind of cluster change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MoveKind {
    /// The admin API's whole replica move.
    Replica,
    /// A raw membership change on the leader (`Host::change_members`, then the table).
    Members,
    /// A leader move.
    Leader,
}

impl fmt::Display for MoveKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MoveKind::Replica => "replica moves",
            MoveKind::Members => "raw member changes",
            MoveKind::Leader => "leader moves",
        })
    }
}

/// How a move ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveEnd {
    /// It took effect.
    Done,
    /// The cluster refused it as asked (e.g. a leader move to a node that is no voter, or a
    /// raw member change run by a node that no longer leads the group).
    Refused,
    /// It failed every attempt.
    Failed,
}

/// Moves of one kind: drawn (handed to whoever runs them) and how they ended; the rest
/// were lost with the node that ran them (a raw change runs on the leader, which may crash).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MoveTally {
    pub drawn: usize,
    pub done: usize,
    pub refused: usize,
    pub failed: usize,
}

impl MoveTally {
    pub fn record(&mut self, end: MoveEnd) {
        match end {
            MoveEnd::Done => self.done += 1,
            MoveEnd::Refused => self.refused += 1,
            MoveEnd::Failed => self.failed += 1,
        }
    }

    /// Drawn, but never ended.
    pub fn lost(&self) -> usize {
        self.drawn
            .saturating_sub(self.done + self.refused + self.failed)
    }

    pub fn add(&mut self, other: &MoveTally) {
        self.drawn += other.drawn;
        self.done += other.done;
        self.refused += other.refused;
        self.failed += other.failed;
    }
}

impl fmt::Display for MoveTally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} done ({} refused, {} failed, {} lost)",
            self.done,
            self.drawn,
            self.refused,
            self.failed,
            self.lost()
        )
    }
}

/// What the operator did, for the timeline and the tallies.
#[derive(Debug, Clone)]
pub struct MoveRecord {
    pub at_ms: u64,
    pub line: String,
    /// How the move ended; `None` for an attempt that is tried again.
    pub ended: Option<(MoveKind, MoveEnd)>,
}

/// Where the operator records its moves.
pub type MoveLog = Rc<RefCell<Vec<MoveRecord>>>;

/// The group a command changes.
pub fn group_of(command: &OperatorCommand) -> GroupId {
    match command {
        OperatorCommand::MoveReplica { group, .. } | OperatorCommand::MoveLeader { group, .. } => {
            *group
        }
    }
}

/// Runs `command` with `client` once the move of the same group before it has ended (`turn`
/// is that group's lock), recording what happened in `log`.
pub async fn operate(
    client: InventoryClient,
    command: OperatorCommand,
    turn: Rc<tokio::sync::Mutex<()>>,
    log: MoveLog,
) {
    let _turn = turn.lock().await;
    run_move(client, command, log).await;
}

async fn run_move(client: InventoryClient, command: OperatorCommand, log: MoveLog) {
    let (kind, what) = match &command {
        OperatorCommand::MoveReplica { group, from, to } => (
            MoveKind::Replica,
            format!("group {group}: replica move n{from} -> n{to}"),
        ),
        OperatorCommand::MoveLeader { group, to } => (
            MoveKind::Leader,
            format!("group {group}: leader move to n{to}"),
        ),
    };
    let mut attempt = 0;
    let mut pause = Duration::from_millis(OPERATOR_FIRST_PAUSE_MS);
    let (end, line) = loop {
        attempt += 1;
        // Every call in an attempt has a timeout of its own; a stalled link holds one
        // only until the heal.
        let error = match run_once(&client, &command).await {
            Ok(done) => break (MoveEnd::Done, format!("{what}: {done}")),
            Err(InventoryError::Invalid(reason)) => {
                break (MoveEnd::Refused, format!("{what} refused: {reason}"))
            }
            Err(e) => e.to_string(),
        };
        if attempt >= OPERATOR_ATTEMPTS {
            break (
                MoveEnd::Failed,
                format!("{what} failed {attempt} times, last: {error}"),
            );
        }
        log.borrow_mut().push(MoveRecord {
            at_ms: sim_ms(),
            line: format!("{what} attempt {attempt} failed ({error}); trying again"),
            ended: None,
        });
        tokio::time::sleep(pause).await;
        pause *= 2;
    };
    let line = if attempt > 1 && end == MoveEnd::Done {
        format!("{line} (attempt {attempt})")
    } else {
        line
    };
    log.borrow_mut().push(MoveRecord {
        at_ms: sim_ms(),
        line,
        ended: Some((kind, end)),
    });
}

/// One attempt of `command`; what it did, in words.
async fn run_once(
    client: &InventoryClient,
    command: &OperatorCommand,
) -> Result<String, InventoryError> {
    match command {
        OperatorCommand::MoveReplica { group, from, to } => {
            let report = client
                .move_replica(*group, *from, (*to, node_addr(*to)))
                .await?;
            Ok(format!(
                "voters {:?}, source retired {}",
                report.voters, report.source_retired
            ))
        }
        OperatorCommand::MoveLeader { group, to } => {
            let leader = client.move_leader(*group, *to).await?;
            Ok(format!("leadership moved to n{leader}"))
        }
    }
}

/// The tallies of the moves `drawn` (how many of each kind) and how those that `ended` did.
pub fn tally(
    drawn: &BTreeMap<MoveKind, usize>,
    ended: impl Iterator<Item = (MoveKind, MoveEnd)>,
) -> BTreeMap<MoveKind, MoveTally> {
    let mut out: BTreeMap<MoveKind, MoveTally> = drawn
        .iter()
        .map(|(kind, n)| {
            (
                *kind,
                MoveTally {
                    drawn: *n,
                    ..MoveTally::default()
                },
            )
        })
        .collect();
    for (kind, end) in ended {
        out.entry(kind).or_default().record(end);
    }
    out
}
