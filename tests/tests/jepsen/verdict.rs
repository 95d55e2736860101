//! The verdict on a recorded REST history (`workload.rs`): every hold of the history read
//! back, linearizably and as an admin, through each API node; each node's seat map checked
//! against the sales those reads show; the history and the final states handed to the
//! simulator's checker (`sim::checker::check_shard`); the figures printed. Shared by
//! `jepsen.rs` (after the nemesis heals) and `admin_balance.rs` (after the operator's moves).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use boxoffice_tests::eventually;
use reqwest::{Method, StatusCode};
use sim::checker::{check_shard, CheckLimits, FinalSeat, ReplicaSeats, ShardHistory, ShardReport};

use super::check::{self, HoldRead, Interner};
use super::workload::{attempt, RawCommand, RawOp, Shared};

/// How long the final reads and the seat maps may take to settle.
pub const SETTLE: Duration = Duration::from_secs(30);

/// What the checker and the read-back found.
pub struct Judgement {
    pub history: ShardHistory,
    pub finals: Vec<ReplicaSeats>,
    pub report: ShardReport,
    /// What the conversion, the read-back and the seat maps found wrong (a caller adds its
    /// own, e.g. liveness after the heal).
    pub problems: Vec<String>,
    /// Per kind of op (`hold`, `release`, `book+pay`): how many, how many unknown.
    pub by_kind: BTreeMap<&'static str, (usize, usize)>,
}

impl Judgement {
    /// Ops whose outcome the client never learned.
    pub fn n_unknown(&self) -> usize {
        self.history
            .ops
            .iter()
            .filter(|op| op.response.is_none())
            .count()
    }

    /// Everything that counts against the run: the checker's violations, failing and
    /// undecided seats, and the problems.
    pub fn violations(&self) -> usize {
        self.report.violations.len()
            + self.report.seat_failures.len()
            + self.report.undecided.len()
            + self.problems.len()
    }

    /// The ops per kind.
    pub fn print_ops(&self) {
        println!(
            "ops: {} ({} unknown outcomes)",
            self.history.ops.len(),
            self.n_unknown()
        );
        for (kind, (n, unknown)) in &self.by_kind {
            println!("  {kind:<9} {n:>5} ops, {unknown:>4} unknown");
        }
    }

    /// The checker's report, the problems, the seats sold and the count of violations.
    pub fn print_verdict(&self) {
        println!("checker: {}", self.report);
        for p in &self.problems {
            println!("problem: {p}");
        }
        let sold: usize = self
            .finals
            .first()
            .map(|f| {
                f.seats
                    .values()
                    .filter(|s| matches!(s, FinalSeat::Sold { .. }))
                    .count()
            })
            .unwrap_or(0);
        println!("seats sold at the end: {sold}");
    }
}

/// Judges `raw` (the clients' record, `t0` its origin): converts it for the checker, reads
/// every hold it names back through each of `shared.apis` with `admin_token`, compares each
/// API node's seat map with the sales read back, and runs the checker. `ttl_ms` is every
/// hold's lifetime; no hold may expire before `run_end_unix_ms` (see `check.rs`).
pub async fn judge(
    shared: &Shared,
    raw: &[RawOp],
    admin_token: &str,
    t0: Instant,
    ttl_ms: u64,
    run_end_unix_ms: u64,
) -> Judgement {
    let hold_ids: BTreeSet<String> = raw
        .iter()
        .filter_map(|op| match &op.command {
            RawCommand::Hold { hold_id, .. } => Some(hold_id.clone()),
            _ => None,
        })
        .collect();
    let mut ids = Interner::default();
    let (history, mut problems) = check::convert(raw, t0, ttl_ms, run_end_unix_ms, &mut ids);
    let mut finals = Vec::new();
    for base in &shared.apis {
        let (reads, unanswered) = read_holds(&shared.http, base, admin_token, &hold_ids).await;
        problems.extend(unanswered);
        let (replica, found) =
            check::finals(&format!("holds read via {base}"), &reads, ttl_ms, &mut ids);
        problems.extend(found);
        let sold: BTreeSet<String> = reads
            .iter()
            .filter(|r| r.status == "confirmed")
            .flat_map(|r| r.seats.clone())
            .collect();
        if let Some(problem) = seat_map_disagrees(&shared.http, base, &shared.event_id, &sold).await
        {
            problems.push(problem);
        }
        finals.push(replica);
    }
    let report = check_shard(&history, &finals, &CheckLimits::default())
        .expect("the harness recorded a well-formed history");
    let mut by_kind: BTreeMap<&'static str, (usize, usize)> = BTreeMap::new();
    for op in raw {
        let kind = match op.command {
            RawCommand::Hold { .. } => "hold",
            RawCommand::Release { .. } => "release",
            RawCommand::Confirm { .. } => "book+pay",
        };
        let entry = by_kind.entry(kind).or_default();
        entry.0 += 1;
        entry.1 += usize::from(op.response.is_none());
    }
    Judgement {
        history,
        finals,
        report,
        problems,
        by_kind,
    }
}

/// Every hold in `hold_ids` as an admin reads it through `base` (404: never existed).
async fn read_holds(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    hold_ids: &BTreeSet<String>,
) -> (Vec<HoldRead>, Vec<String>) {
    const N_READERS: usize = 8;
    let ids: Vec<String> = hold_ids.iter().cloned().collect();
    // One budget for all reads, so a shard that never comes back costs SETTLE, not SETTLE
    // per hold.
    let deadline = Instant::now() + SETTLE * 2;
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in ids.chunks(ids.len().div_ceil(N_READERS).max(1)) {
        let (http, base, token, chunk) = (
            http.clone(),
            base.to_owned(),
            token.to_owned(),
            chunk.to_vec(),
        );
        tasks.spawn(async move {
            let mut reads = Vec::new();
            let mut unanswered = Vec::new();
            for hold_id in chunk {
                let url = format!("{base}/v1/holds/{hold_id}");
                let patience = deadline.saturating_duration_since(Instant::now());
                let answer = eventually(patience, || {
                    let (http, url, token) = (http.clone(), url.clone(), token.clone());
                    async move {
                        attempt(&http, Method::GET, &url, Some(&token), None, None)
                            .await
                            .ok()
                            .filter(|a| {
                                a.status == StatusCode::OK || a.status == StatusCode::NOT_FOUND
                            })
                    }
                })
                .await;
                let Some(answer) = answer else {
                    unanswered.push(format!("liveness: {url} never answered after the run"));
                    continue;
                };
                if answer.status == StatusCode::OK {
                    reads.push(HoldRead {
                        hold_id,
                        status: answer.body["status"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        seats: answer.body["seat_ids"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|s| s.as_str().map(str::to_owned))
                            .collect(),
                        booking_id: answer.body["booking_id"].as_str().map(str::to_owned),
                    });
                }
            }
            (reads, unanswered)
        });
    }
    let (mut all, mut unanswered) = (Vec::new(), Vec::new());
    while let Some(done) = tasks.join_next().await {
        let (reads, missing) = done.expect("a hold reader panicked");
        all.extend(reads);
        unanswered.extend(missing);
    }
    all.sort_by(|a, b| a.hold_id.cmp(&b.hold_id));
    unanswered.sort();
    (all, unanswered)
}

/// `None` once `base`'s seat map shows exactly `sold` as sold (it follows the shard's feed,
/// so it is given time to catch up); otherwise what differs.
async fn seat_map_disagrees(
    http: &reqwest::Client,
    base: &str,
    event_id: &str,
    sold: &BTreeSet<String>,
) -> Option<String> {
    let url = format!("{base}/v1/events/{event_id}/seats");
    let mut last = BTreeSet::new();
    let deadline = Instant::now() + SETTLE;
    while Instant::now() < deadline {
        if let Ok(a) = attempt(http, Method::GET, &url, None, None, None).await {
            last = a.body["seats"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| s["status"] == "sold")
                .filter_map(|s| s["id"].as_str().map(str::to_owned))
                .collect();
            if &last == sold {
                return None;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Some(format!(
        "{base}'s seat map shows sold {:?}, the holds read back say {:?}",
        last, sold
    ))
}
