//! The replicated seat inventory.
//!
//! # Layout
//!
//! - [`types`]: the vocabulary — ids, [`types::Command`]s, [`types::Outcome`]s, changes, limits.
//! - [`machine`]: the pure state machine, `apply(state, request, now_ms) -> reply`.
//! - [`feed`]: the per-group change feed (ordered, resumable, reset from a snapshot).
//! - [`typ`]: openraft's type config and the runtime with an injectable RNG.
//! - [`storage`]: the durable Raft log ([`storage::log`], our own fdatasync'd file) and the
//!   state machine store ([`storage::state`], records in sled plus snapshots).
//! - [`transport`]: HTTP/1 between nodes over a swappable connector (TCP or simulated).
//! - [`network`]: openraft's network: Raft RPCs routed by group id.
//! - [`host`]: a storage node hosting replicas of many groups; batching proposer, reads, feeds.
//! - [`server`]: the node's internal HTTP router (Raft RPCs, inventory, cluster ops).
//! - [`client`]: the typed client the API tier uses.
//!
//! Data flows client → [`server`] → [`host`] (leader batches requests into one stamped
//! proposal) → openraft (log on disk on a majority) → [`storage::state`] applies with
//! [`machine::Machine`] on every replica → replies and [`feed`] changes.

pub mod client;
pub mod feed;
pub mod host;
pub mod machine;
pub mod network;
pub mod server;
pub mod storage;
pub mod transport;
pub mod typ;
pub mod types;

pub use client::{InventoryClient, InventoryError};
pub use host::{Clock, Host, HostConfig, RaftSettings, Storage, SystemClock};
