//! The replicated seat inventory.
//!
//! # Layout
//!
//! - [`types`]: the vocabulary — ids, [`types::Command`]s, [`types::Outcome`]s, changes, limits.
//! - [`wire`]: reads and serve errors, what the client and a node's server exchange.
//! - [`codec`]: the one binary encoding (bincode) and the stable hash.
//! - [`clock`]: the injected wall clock (the workspace's one `Clock`).
//! - [`machine`]: the pure state machine, `apply(state, request, now_ms) -> reply`.
//! - [`feed`]: the per-group change feed (ordered, resumable, reset from a snapshot).
//! - [`typ`]: openraft's type config and the runtime with an injectable RNG.
//! - [`storage`]: the durable Raft log ([`storage::log`], our own fdatasync'd file) and the
//!   state machine store ([`storage::state`], records in sled plus snapshots).
//! - [`auth`]: the cluster credential every internal call carries (HMAC under the cluster key).
//! - [`transport`]: HTTP/1 between nodes over a swappable connector (TCP or simulated).
//! - [`network`]: openraft's network: Raft RPCs routed by group id.
//! - [`host`]: a storage node hosting replicas of many groups; batching proposer, reads, feeds.
//! - [`failover`]: followers that see their leader's process gone campaign at once instead
//!   of waiting out openraft's lease.
//! - [`leader_move`]: moving a group's leadership to a chosen voter (openraft 0.9 has no
//!   leader transfer).
//! - [`server`]: the node's internal HTTP router (Raft RPCs, inventory, cluster ops).
//! - [`telemetry`]: a storage node's Prometheus metrics (per node and group).
//! - [`client`]: the typed client the API tier uses (typed calls in `client/calls.rs`).
//! - [`batch`]: the queue shape the client batcher, the proposer and the log writer share.
//!
//! Data flows client → [`server`] → [`host`] (leader batches requests into one stamped
//! proposal) → openraft (log on disk on a majority) → [`storage::state`] applies with
//! [`machine::Machine`] on every replica → replies and [`feed`] changes.

pub mod auth;
pub mod balancer;
pub mod batch;
pub mod client;
pub mod clock;
pub mod codec;
pub mod failover;
pub mod feed;
pub mod host;
pub mod leader_move;
pub mod machine;
pub mod network;
pub mod replica_move;
pub mod server;
pub mod spawn;
pub mod storage;
pub mod telemetry;
pub mod transport;
pub mod typ;
pub mod types;
pub mod wire;

pub use auth::{ClusterAuth, ClusterKey};
pub use client::{InventoryClient, InventoryError};
pub use clock::{Clock, ManualClock, SystemClock};
pub use host::{Host, HostConfig, RaftSettings, Storage};
