//! Deterministic simulation of boxoffice clusters, and the checker that judges what the
//! simulated clients saw.
//!
//! # Layout
//!
//! * [`run`] — one seed start to verdict: [`run::RunConfig::for_seed`] draws the cluster
//!   and workload, [`run::run_seed`] steps turmoil, fires the fault schedule, heals, demands
//!   progress, waits for convergence and checks everything; [`run::RunReport`] prints the
//!   seed, the schedule, the timeline and the shortest failing history.
//! * [`cluster`] — a simulated storage node: the production `Host` (real openraft, real
//!   state machine, in-memory storage that survives crashes) behind the production router;
//!   [`cluster::Variant::StaleLeaderReads`] is the deliberately broken variant.
//! * [`workload`] — simulated API-tier clients (the production `InventoryClient`) on hot
//!   seats with short TTLs, recording every request.
//! * [`faults`] — the seed's fault schedule.
//! * [`operator`] — the admin host that runs the drawn replica and leader moves through
//!   the admin API's client calls, retrying passing failures, and tallies how they ended.
//! * [`net`] — turmoil behind production's `Connector`, and the node's router served on a
//!   turmoil socket with every connection on the host's `LocalSet`.
//! * [`clock`] — skewable per-node wall clocks over simulated time.
//! * [`recorder`] — histories in the checker's format.
//! * [`checker`] — the history checker, pure and synchronous:
//!   * [`checker::history`] — what a driver records per shard: ops with invocation and
//!     response times (simulated real time) and outcomes, unknown outcomes included.
//!   * [`checker::wgl`] — a generic linearizability checker: the [`checker::Model`] trait
//!     and the Wing–Gong search with Lowe's memoization, budgeted, with counterexample
//!     shrinking.
//!   * [`checker::seat`] — the sequential model of one seat (holds with expiry, release,
//!     idempotent confirm, leader-stamped monotonic time).
//!   * [`checker::split`] — per-seat projection of a shard history (P-compositionality)
//!     and the per-seat verdicts.
//!   * [`checker::invariants`] — the design invariants as plain functions (no double sale,
//!     no lost hold, no confirm after expiry, time never goes backwards).
//!   * [`checker::reference`] — a sequential reference inventory; tests generate histories
//!     from it.
//!   * [`checker::report`] — violations, seat failures and the shard report.

// turmoil seeds each simulated host's Tokio runtime (the branch order of an unbiased
// `select!`, such as openraft's replication backoff) only under `tokio_unstable`, which
// `.cargo/config.toml` sets for the workspace; without it a seed does not replay.
#[cfg(not(tokio_unstable))]
compile_error!(
    "the simulator needs `--cfg tokio_unstable` (set in .cargo/config.toml; a RUSTFLAGS in the environment replaces it)"
);

pub mod checker;
pub mod clock;
pub mod cluster;
pub mod faults;
pub mod net;
pub mod operator;
pub mod recorder;
pub mod run;
pub mod workload;
