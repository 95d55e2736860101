//! Deterministic simulation of boxoffice clusters, and the checker that judges what the
//! simulated clients saw.
//!
//! # Layout
//!
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
//!
//! Start at [`checker::check_shard`].

pub mod checker;
