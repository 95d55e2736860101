//! The multi-group host: every Raft group replica a storage node runs, and the node's
//! write, read and feed entry points.
//!
//! A node hosts replicas of any set of groups. A replica is created when the node bootstraps a
//! group or when a peer first sends it a Raft message for one (as CockroachDB creates replicas
//! on demand), and reopened from storage on restart. Writes go through a per-group proposer on
//! the leader that batches concurrent requests into one log entry stamped with the leader's
//! clock; reads are linearizable (leadership confirmed by a quorum, then the local state).
//!
//! Over 600 lines because a replica's lifecycle (open, propose, read, feed, membership,
//! shutdown) shares one `Group` and its private channels; split it when the write-path rework
//! gives the proposer a module of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openraft::error::{ForwardToLeader, RaftError};
use openraft::{BasicNode, ChangeMembers, Config, ServerState, SnapshotPolicy, TryAsRef};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::auth::{ClusterAuth, ClusterKey};
use crate::batch::batch_and_dispatch;
use crate::clock::Clock;
use crate::feed::{FeedPage, FeedRead, FeedSnapshot, FEED_PAGE_MAX_CHANGES};
use crate::machine::Machine;
use crate::network::NetworkFactory;
use crate::storage::log::LogStore;
use crate::storage::log::{LogWriter, LOAD_TAIL_ENTRIES};
use crate::storage::log_file::{FileLog, LogDisk, MemLog};
use crate::storage::node_log::NodeLog;
use crate::storage::state::{
    CheckpointPolicy, GroupShared, MemState, SledState, StateDisk, StateMachineStore,
};
use crate::telemetry::{self, GroupMetrics};
use crate::transport::{Connector, Transport};
use crate::typ::Raft;
use crate::types::*;
use crate::wire::{Query, ReadReply, ServeError};

/// Most requests folded into one log entry.
pub const MAX_BATCH_REQUESTS: usize = 512;
/// Proposals a group's leader keeps in flight at once.
pub const MAX_INFLIGHT_PROPOSALS: usize = 8;
/// Requests waiting for the proposer, per group.
pub const PROPOSAL_QUEUE_LEN: usize = 16_384;
/// How often a leader checks whether a sweep is due.
pub const SWEEP_INTERVAL_MS: u64 = 1_000;
/// How often a leader steps its waiting rooms (admissions, expiries, abandonment, closing).
pub const ADMIT_INTERVAL_MS: u64 = 200;
/// Longest a feed read waits for new changes.
pub const MAX_FEED_WAIT_MS: u64 = 30_000;

/// How long one snapshot chunk's call may take, the install included (see `ensure_group`).
pub const INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 60_000;

/// Raft timing and log-compaction settings, the same for every group of a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RaftSettings {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Build a snapshot after this many applied entries since the last one.
    pub snapshot_every_entries: u64,
    /// Entries kept in the log behind the last snapshot (for slightly lagging followers).
    pub keep_entries: u64,
    /// Checkpoint the state machine to its store after this many applied entries; a restart
    /// re-applies the log after the last checkpoint.
    #[serde(default = "default_checkpoint_every_entries")]
    pub checkpoint_every_entries: u64,
    /// On disk, also checkpoint at least this often while anything is unsaved.
    #[serde(default = "default_checkpoint_every_ms")]
    pub checkpoint_every_ms: u64,
    /// Followers watch their leader's process and campaign at once when it is gone, instead
    /// of waiting out the lease ([`crate::failover`]). Off: openraft's timers alone.
    #[serde(default = "default_leader_watch")]
    pub leader_watch: bool,
    /// Written log entries kept in memory (their size on disk), newest first; older ones
    /// are read back from the log file when a lagging follower needs them.
    #[serde(default = "default_log_cache_bytes")]
    pub log_cache_bytes: u64,
}

fn default_log_cache_bytes() -> u64 {
    8 * 1024 * 1024
}

fn default_leader_watch() -> bool {
    true
}

fn default_checkpoint_every_entries() -> u64 {
    1_024
}

fn default_checkpoint_every_ms() -> u64 {
    200
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            // A follower elects after the leader's lease (`election_max_ms`) plus a random
            // election timeout, so a dead leader costs about 1.8–2.4 s of writes. openraft 0.9
            // times an AppendEntries out after one heartbeat and a vote after
            // `election_min_ms`; on a loaded 2-core machine 100 ms / 200–400 ms halves the gap
            // but brings split votes and deposed leaders (3–5 elections per kill), while these
            // add none over the old 300 ms / 1.5–3 s. ARCHITECTURE.md: "Raft timing".
            heartbeat_ms: 150,
            election_min_ms: 600,
            election_max_ms: 1_200,
            snapshot_every_entries: 20_000,
            // Entries past the snapshot stay on disk, not in memory (`storage/log.rs`), so a
            // follower down for tens of seconds under load catches up by AppendEntries;
            // with 2,000 it needed a snapshot install of the whole state and fell behind
            // the purge again while installing (BENCHMARKS.md, "Write gap after a leader
            // SIGKILL").
            keep_entries: 100_000,
            checkpoint_every_entries: default_checkpoint_every_entries(),
            checkpoint_every_ms: default_checkpoint_every_ms(),
            leader_watch: default_leader_watch(),
            log_cache_bytes: default_log_cache_bytes(),
        }
    }
}

/// Where replicas keep their data.
#[derive(Clone)]
pub enum Storage {
    /// A data directory: `log/` holds every group's Raft log (one log per node, written by
    /// one writer thread, so one sync makes a batch durable for every group); `groups/{g}/`
    /// holds the group's vote, checkpoint and snapshot (and its own Raft log if an earlier
    /// build wrote one there); `state.sled` holds every group's state machine records.
    Disk {
        dir: PathBuf,
        db: sled::Db,
        log: NodeLog,
        writer: LogWriter,
    },
    /// Memory that outlives the host (simulated crashes keep it; clone to share).
    Memory(MemStorage),
}

/// In-memory storage for every group of one node, and the groups removed from it.
#[derive(Clone, Default)]
pub struct MemStorage {
    groups: Arc<Mutex<BTreeMap<GroupId, (MemLog, MemState)>>>,
    removed: Arc<Mutex<BTreeSet<GroupId>>>,
}

/// A group's log disk, the writer it shares (`None`: one of its own, or inline), and its
/// state disk.
type OpenedGroup = (Box<dyn LogDisk>, Option<LogWriter>, Arc<dyn StateDisk>);

/// The name of a removed group's tombstone in `groups/` (see [`Storage::mark_removed`]).
fn tombstone_name(group: GroupId) -> String {
    format!("{group}.removed")
}

/// sled's page cache, in bytes.
pub const SLED_CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// How often sled flushes its buffers in the background.
pub const SLED_FLUSH_EVERY_MS: u64 = 500;

impl Storage {
    pub fn open_dir(dir: PathBuf) -> std::io::Result<Storage> {
        std::fs::create_dir_all(dir.join("groups"))?;
        let db = sled::Config::new()
            .path(dir.join("state.sled"))
            .cache_capacity(SLED_CACHE_BYTES)
            .flush_every_ms(Some(SLED_FLUSH_EVERY_MS))
            .open()
            .map_err(std::io::Error::other)?;
        let log = NodeLog::open(&dir.join("log"), LOAD_TAIL_ENTRIES)?;
        let writer = LogWriter::start("node")?;
        let storage = Storage::Disk {
            dir,
            db,
            log: log.clone(),
            writer,
        };
        // A group whose directory is gone (cleared before a crash) or tombstoned leaves no
        // log behind to hold segments.
        let live = storage.groups()?;
        for group in log.groups() {
            if !live.contains(&group) || storage.is_removed(group) {
                log.drop_group(group)?;
            }
        }
        Ok(storage)
    }

    fn groups(&self) -> std::io::Result<Vec<GroupId>> {
        match self {
            Storage::Disk { dir, .. } => {
                let mut groups = Vec::new();
                for entry in std::fs::read_dir(dir.join("groups"))? {
                    if let Some(g) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) {
                        groups.push(g);
                    }
                }
                groups.sort();
                Ok(groups)
            }
            Storage::Memory(mem) => Ok(mem
                .groups
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .copied()
                .collect()),
        }
    }

    /// The group's log disk (and the writer it shares, if any) and state disk.
    fn open_group(&self, group: GroupId) -> std::io::Result<OpenedGroup> {
        match self {
            Storage::Disk {
                dir,
                db,
                log,
                writer,
            } => {
                let gdir = dir.join("groups").join(group.to_string());
                let state: Arc<dyn StateDisk> = Arc::new(SledState::open(db, group, &gdir)?);
                if FileLog::exists_in(&gdir) {
                    // Written by a build before the node log: it goes on in its own file.
                    return Ok((Box::new(FileLog::open(&gdir)?), None, state));
                }
                // The directory is how a restart finds the group again (`groups`): durable
                // before the group's first entry can be.
                crate::storage::sync_dir(&dir.join("groups"))?;
                Ok((
                    Box::new(log.group(group, &gdir)),
                    Some(writer.clone()),
                    state,
                ))
            }
            Storage::Memory(mem) => {
                let mut groups = mem.groups.lock().unwrap_or_else(|p| p.into_inner());
                let (log, state) = groups.entry(group).or_default();
                Ok((Box::new(log.clone()), None, Arc::new(state.clone())))
            }
        }
    }

    /// Forgets a removed group's Raft log (its entries are never read again); the record's
    /// fsync runs on a blocking thread, not the async ones.
    async fn drop_log(&self, group: GroupId) -> std::io::Result<()> {
        match self {
            Storage::Disk { log, .. } => {
                let log = log.clone();
                tokio::task::spawn_blocking(move || log.drop_group(group))
                    .await
                    .map_err(std::io::Error::other)?
            }
            Storage::Memory(_) => Ok(()),
        }
    }

    /// Whether `group`'s replica was removed from this node (a tombstone is kept).
    fn is_removed(&self, group: GroupId) -> bool {
        match self {
            Storage::Disk { dir, .. } => dir.join("groups").join(tombstone_name(group)).exists(),
            Storage::Memory(mem) => mem
                .removed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&group),
        }
    }

    /// Leaves a durable tombstone for `group`: no Raft message recreates its replica, and a
    /// restart does not reopen it. Its data stays until the group is adopted again.
    fn mark_removed(&self, group: GroupId) -> std::io::Result<()> {
        match self {
            Storage::Disk { dir, .. } => {
                crate::storage::write_file_atomic(&dir.join("groups"), &tombstone_name(group), b"")
            }
            Storage::Memory(mem) => {
                mem.removed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(group);
                Ok(())
            }
        }
    }

    /// Deletes a removed group's old data, then its tombstone, so it can start over empty.
    fn clear_removed(&self, group: GroupId) -> std::io::Result<()> {
        match self {
            Storage::Disk { dir, db, log, .. } => {
                log.drop_group(group)?;
                let gdir = dir.join("groups").join(group.to_string());
                if gdir.exists() {
                    std::fs::remove_dir_all(&gdir)?;
                }
                // `layouts/{group}`: where data dirs written before 2026-12-02 kept layouts.
                for tree in [format!("sm/{group}"), format!("layouts/{group}")] {
                    db.drop_tree(tree).map_err(std::io::Error::other)?;
                }
                std::fs::remove_file(dir.join("groups").join(tombstone_name(group)))?;
                std::fs::File::open(dir.join("groups"))?.sync_all()
            }
            Storage::Memory(mem) => {
                mem.groups
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&group);
                mem.removed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&group);
                Ok(())
            }
        }
    }
}

/// Who a node is and how it behaves.
#[derive(Clone)]
pub struct HostConfig {
    pub node_id: NodeId,
    /// The address peers and clients reach this node at.
    pub addr: String,
    pub raft: RaftSettings,
    pub clock: Arc<dyn Clock>,
    /// Signs this node's calls and checks the calls it serves; `None` is `--insecure`
    /// (nothing signed, nothing checked).
    pub cluster_key: Option<ClusterKey>,
}

/// One group's view for operators.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupStatus {
    pub group: GroupId,
    pub state: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
}

/// One replica's whole state in a number: equal digests at equal applied indexes mean
/// byte-identical replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaDigest {
    pub applied_index: Option<u64>,
    /// FNV-1a of the encoded records ([`crate::machine::Machine::records`]).
    pub digest: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node_id: NodeId,
    pub addr: String,
    pub groups: Vec<GroupStatus>,
    /// The balancer's last decisions taken on this node (while it led the meta group).
    #[serde(default)]
    pub balancer: Vec<crate::balancer::BalancerEntry>,
}

struct Pending {
    requests: Vec<Request>,
    reply: oneshot::Sender<Result<Vec<Reply>, ServeError>>,
}

/// One hosted replica.
pub struct Group {
    pub id: GroupId,
    pub raft: Raft,
    pub shared: Arc<GroupShared>,
    proposals: mpsc::Sender<Pending>,
    tasks: Mutex<JoinSet<()>>,
    /// An entry was committed through this replica since it opened (see [`Host::read`]).
    read_barrier_passed: AtomicBool,
    /// A leader move is under way: this leader proposes nothing (`leader_move.rs`).
    pub(crate) moving: Arc<AtomicBool>,
    /// A replica move is under way (`replica_move.rs`): one membership change at a time.
    pub(crate) reconfiguring: AtomicBool,
    /// What this replica's vote requests met (kept by the Raft network, read by
    /// [`crate::failover`]).
    pub(crate) campaigns: Arc<crate::failover::Campaigns>,
}

impl Group {
    /// Runs `task` until the replica shuts down.
    pub(crate) fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        crate::spawn::spawn_into(
            &mut self.tasks.lock().unwrap_or_else(|p| p.into_inner()),
            task,
        );
    }

    pub(crate) fn leader_hint(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        let node = metrics
            .membership_config
            .membership()
            .get_node(&leader)?
            .clone();
        Some((leader, node.addr))
    }

    /// This replica's metrics when it leads its group, else `NotLeader` with its hint.
    pub(crate) fn leader_metrics(
        &self,
    ) -> Result<openraft::RaftMetrics<NodeId, BasicNode>, ServeError> {
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.state != ServerState::Leader {
            return Err(ServeError::NotLeader {
                group: self.id,
                leader: self.leader_hint(),
            });
        }
        Ok(metrics)
    }

    fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Commits a sweep through the proposer (which stamps it with the leader's clock, moving
    /// the group's time forward); resolves once it is applied here. Holds no `Arc<Group>`.
    fn sweep(&self) -> impl std::future::Future<Output = Result<(), ServeError>> + Send + 'static {
        self.housekeeping(Command::Sweep)
    }

    /// Commits a housekeeping command (a sweep, an admission step) through the proposer.
    fn housekeeping(
        &self,
        command: Command,
    ) -> impl std::future::Future<Output = Result<(), ServeError>> + Send + 'static {
        let proposals = self.proposals.clone();
        async move {
            let (tx, rx) = oneshot::channel();
            let pending = Pending {
                requests: vec![Request {
                    request_id: None,
                    command,
                }],
                reply: tx,
            };
            proposals
                .send(pending)
                .await
                .map_err(|_| ServeError::Unavailable("proposer stopped".into()))?;
            rx.await
                .map_err(|_| ServeError::Unavailable("proposal dropped".into()))?
                .map(|_| ())
        }
    }
}

struct HostInner {
    cfg: HostConfig,
    storage: Storage,
    auth: ClusterAuth,
    transport: Arc<Transport>,
    groups: RwLock<BTreeMap<GroupId, Arc<Group>>>,
    creating: tokio::sync::Mutex<()>,
    /// The balancer's last decisions on this node, oldest first.
    balancer_log: Mutex<std::collections::VecDeque<crate::balancer::BalancerEntry>>,
    /// Set when the node begins to stop: held watch calls answer at once (see
    /// [`crate::failover`]), so a graceful stop neither waits for them nor hides itself.
    stopping: tokio::sync::watch::Sender<bool>,
}

/// A replica's stores, loaded and not yet started ([`Host::open_stores`]).
struct GroupStores {
    log: LogStore,
    sm: StateMachineStore,
    shared: Arc<GroupShared>,
    metrics: GroupMetrics,
}

/// A storage node: the replicas it hosts and the transport they share.
#[derive(Clone)]
pub struct Host {
    inner: Arc<HostInner>,
}

impl Host {
    /// Opens every replica found in `storage` and starts it.
    pub async fn open(
        cfg: HostConfig,
        storage: Storage,
        connector: impl Connector,
    ) -> std::io::Result<Host> {
        let auth = ClusterAuth::from_key(cfg.cluster_key.clone(), cfg.clock.clone());
        let host = Host {
            inner: Arc::new(HostInner {
                cfg,
                storage,
                transport: Arc::new(Transport::new(connector, auth.clone())),
                auth,
                groups: RwLock::new(BTreeMap::new()),
                creating: tokio::sync::Mutex::new(()),
                balancer_log: Mutex::default(),
                stopping: tokio::sync::watch::Sender::new(false),
            }),
        };
        // Every replica's stores load before any replica's Raft starts. Loading an inventory
        // group after a long run takes seconds (its snapshot and log tail are replayed);
        // a meta group started before it would hear nobody meanwhile (the node does not
        // serve until this returns) and campaign with a stale log every election timeout,
        // and its raised term would then depose the group's leader: an election nobody
        // asked for (BENCHMARKS.md, session 19: 17 such terms in 10 kills before, none after).
        let storage = &host.inner.storage;
        let mut groups = storage.groups()?;
        groups.retain(|&g| !storage.is_removed(g));
        let opened = match storage {
            // Seconds of decoding for a big group: off the async threads, which the node's
            // other tasks (and, in one process, other nodes) go on using meanwhile.
            Storage::Disk { .. } => {
                let opener = host.clone();
                tokio::task::spawn_blocking(move || opener.open_all_stores(&groups))
                    .await
                    .map_err(std::io::Error::other)??
            }
            Storage::Memory(_) => host.open_all_stores(&groups)?,
        };
        for (group, stores) in opened {
            host.start_group(group, stores).await?;
        }
        Ok(host)
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.cfg.node_id
    }

    pub fn addr(&self) -> &str {
        &self.inner.cfg.addr
    }

    pub fn raft_settings(&self) -> &RaftSettings {
        &self.inner.cfg.raft
    }

    /// Sets every hosted replica's Prometheus gauges (role, term, indexes) from openraft's
    /// metrics; `/metrics` calls it before rendering.
    pub fn record_gauges(&self) {
        let groups: Vec<Arc<Group>> = self
            .inner
            .groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for g in groups {
            let metrics = g.raft.metrics().borrow().clone();
            telemetry::record_gauges(self.node_id(), g.id, &metrics);
        }
    }

    /// How this node signs its calls and checks the ones it serves.
    pub fn auth(&self) -> &ClusterAuth {
        &self.inner.auth
    }

    pub fn transport(&self) -> Arc<Transport> {
        self.inner.transport.clone()
    }

    pub fn group(&self, group: GroupId) -> Option<Arc<Group>> {
        self.inner
            .groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&group)
            .cloned()
    }

    pub fn group_ids(&self) -> Vec<GroupId> {
        self.inner
            .groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect()
    }

    /// The replica of `group`, created (empty, uninitialized) if this node has none yet and
    /// it was not removed from this node (a removed group's tombstone refuses it: a late Raft
    /// message from its old peers must not bring it back; [`Host::adopt`] clears it).
    pub async fn ensure_group(&self, group: GroupId) -> std::io::Result<Arc<Group>> {
        if let Some(g) = self.group(group) {
            return Ok(g);
        }
        let _creating = self.inner.creating.lock().await;
        if let Some(g) = self.group(group) {
            return Ok(g);
        }
        if self.inner.storage.is_removed(group) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("group {group} was removed from node {}", self.node_id()),
            ));
        }
        let stores = self.open_stores(group)?;
        self.start_group(group, stores).await
    }

    /// The stores of `groups`, in their order. On disk they load on up to one thread per
    /// core: a group's load touches only its own sled tree, checkpoint file and log
    /// offsets, and is CPU-bound (decoding the checkpoint, rebuilding the machine's
    /// indexes), so a node hosting several big groups restarts in about the time of its
    /// biggest instead of their sum (BENCHMARKS.md, session 20). In memory (the simulator)
    /// they load in order on this thread: instant, and deterministic.
    fn open_all_stores(&self, groups: &[GroupId]) -> std::io::Result<Vec<(GroupId, GroupStores)>> {
        let threads = match &self.inner.storage {
            Storage::Disk { .. } => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(groups.len()),
            Storage::Memory(_) => 1,
        };
        if threads <= 1 {
            return groups
                .iter()
                .map(|&g| Ok((g, self.open_stores(g)?)))
                .collect();
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut loaded: Vec<(usize, std::io::Result<GroupStores>)> = std::thread::scope(|scope| {
            let mut workers = Vec::with_capacity(threads);
            for _ in 0..threads {
                let worker = std::thread::Builder::new()
                    .name("open-group".into())
                    .spawn_scoped(scope, || {
                        let mut mine = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(&group) = groups.get(i) else {
                                return mine;
                            };
                            mine.push((i, self.open_stores(group)));
                        }
                    })?;
                workers.push(worker);
            }
            let mut loaded = Vec::with_capacity(groups.len());
            for worker in workers {
                match worker.join() {
                    Ok(mine) => loaded.extend(mine),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            Ok::<_, std::io::Error>(loaded)
        })?;
        loaded.sort_by_key(|(i, _)| *i);
        loaded
            .into_iter()
            .map(|(i, stores)| Ok((groups[i], stores?)))
            .collect()
    }

    /// A replica's log and state machine, loaded from storage (the slow part of a restart:
    /// the state's checkpoint is decoded and the machine's indexes rebuilt).
    fn open_stores(&self, group: GroupId) -> std::io::Result<GroupStores> {
        let cfg = &self.inner.cfg;
        let (log_disk, log_writer, state_disk) = self.inner.storage.open_group(group)?;
        let metrics = GroupMetrics::new(cfg.node_id, group);
        let log = LogStore::open(
            log_disk,
            &format!("{}-{group}", cfg.node_id),
            cfg.raft.log_cache_bytes,
            metrics.log_fsync_seconds.clone(),
            log_writer,
        )?;
        let policy = CheckpointPolicy {
            every_entries: cfg.raft.checkpoint_every_entries,
            every_ms: cfg.raft.checkpoint_every_ms,
        };
        let (sm, shared) = StateMachineStore::open(state_disk, policy, metrics.clone())?;
        Ok(GroupStores {
            log,
            sm,
            shared,
            metrics,
        })
    }

    /// Starts a replica's Raft on its loaded stores, with the tasks that serve it, and adds
    /// it to the node's groups.
    async fn start_group(
        &self,
        group: GroupId,
        stores: GroupStores,
    ) -> std::io::Result<Arc<Group>> {
        let GroupStores {
            log,
            sm,
            shared,
            metrics,
        } = stores;
        let cfg = &self.inner.cfg;
        let settings = &cfg.raft;
        let config = Config {
            cluster_name: format!("boxoffice-g{group}"),
            heartbeat_interval: settings.heartbeat_ms,
            election_timeout_min: settings.election_min_ms,
            election_timeout_max: settings.election_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_every_entries),
            max_in_snapshot_log_to_keep: settings.keep_entries,
            purge_batch_size: 256,
            max_payload_entries: 32,
            // Each snapshot chunk's call, and the last one carries the whole install (decode,
            // rebuild the machine, write the checkpoint). With a million holds on a loaded
            // box that took over 10 s, and a timed-out install starts again from scratch,
            // so a restarted node never caught up (BENCHMARKS.md, "Write gap after a leader
            // SIGKILL", session 8).
            install_snapshot_timeout: INSTALL_SNAPSHOT_TIMEOUT_MS,
            ..Default::default()
        }
        .validate()
        .map_err(std::io::Error::other)?;
        let campaigns = Arc::new(crate::failover::Campaigns::default());
        let network = NetworkFactory {
            transport: self.inner.transport.clone(),
            group,
            node_id: cfg.node_id,
            retry_unreachable: Duration::from_millis(settings.heartbeat_ms),
            campaigns: campaigns.clone(),
        };
        let raft = Raft::new(cfg.node_id, Arc::new(config), network, log, sm)
            .await
            .map_err(std::io::Error::other)?;
        let (tx, rx) = mpsc::channel(PROPOSAL_QUEUE_LEN);
        let moving = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        crate::spawn::spawn_into(
            &mut tasks,
            proposer_loop(
                group,
                raft.clone(),
                cfg.clock.clone(),
                rx,
                metrics.clone(),
                moving.clone(),
            ),
        );
        crate::spawn::spawn_into(
            &mut tasks,
            count_leader_changes(raft.clone(), metrics.leader_changes),
        );
        let g = Arc::new(Group {
            id: group,
            raft,
            shared,
            proposals: tx,
            tasks: Mutex::new(tasks),
            read_barrier_passed: AtomicBool::new(false),
            moving,
            reconfiguring: AtomicBool::new(false),
            campaigns,
        });
        let housekeeping: [(u64, WorkDue, Command); 2] = [
            (SWEEP_INTERVAL_MS, Machine::sweep_due, Command::Sweep),
            (
                ADMIT_INTERVAL_MS,
                Machine::queue_step_due,
                Command::AdmitQueues,
            ),
        ];
        for (interval_ms, due, command) in housekeeping {
            let task = housekeeping_loop(
                Arc::downgrade(&g),
                cfg.clock.clone(),
                interval_ms,
                due,
                command,
            );
            g.spawn(task);
        }
        if settings.leader_watch {
            g.spawn(crate::failover::watch_leader(
                Arc::downgrade(&g),
                self.inner.transport.clone(),
                crate::failover::step_ms(settings.heartbeat_ms),
            ));
        }
        self.inner
            .groups
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(group, g.clone());
        tracing::info!(node = cfg.node_id, group, "replica opened");
        Ok(g)
    }

    /// Initializes `groups` (0 is meta, 1..=n_shards inventory) with `members` as voters.
    /// A group already initialized is left as it is.
    pub async fn initialize(
        &self,
        members: &[(NodeId, String)],
        n_shards: u64,
    ) -> Result<(), ServeError> {
        for group in 0..=n_shards {
            self.initialize_group(group, members).await?;
        }
        Ok(())
    }

    /// Initializes one group with `members` as its voters, through this node (a member).
    /// A group already initialized here is left as it is.
    pub async fn initialize_group(
        &self,
        group: GroupId,
        members: &[(NodeId, String)],
    ) -> Result<(), ServeError> {
        let nodes: BTreeMap<NodeId, BasicNode> = members
            .iter()
            .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
            .collect();
        let g = self
            .ensure_group(group)
            .await
            .map_err(|e| ServeError::Unavailable(e.to_string()))?;
        match g.raft.initialize(nodes).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(ServeError::Unavailable(e.to_string())),
        }
    }

    /// Takes `group`'s replica off this node for good: a tombstone first (so nothing
    /// recreates it), then the replica out of the table and shut down.
    pub(crate) async fn remove_replica(&self, group: GroupId) -> std::io::Result<()> {
        let _creating = self.inner.creating.lock().await;
        self.inner.storage.mark_removed(group)?;
        let removed = self
            .inner
            .groups
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&group);
        if let Some(g) = removed {
            g.tasks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .abort_all();
            if let Err(e) = g.raft.shutdown().await {
                tracing::warn!(group, error = %e, "raft shutdown of a removed replica");
            }
        }
        self.inner.storage.drop_log(group).await?;
        tracing::info!(node = self.node_id(), group, "replica removed");
        Ok(())
    }

    /// Lets `group` have a replica here again: a tombstone left by an earlier removal goes,
    /// with the old data under it, so the replica starts empty and learns from its leader.
    pub(crate) async fn clear_tombstone(&self, group: GroupId) -> std::io::Result<()> {
        let _creating = self.inner.creating.lock().await;
        if self.group(group).is_none() && self.inner.storage.is_removed(group) {
            self.inner.storage.clear_removed(group)?;
        }
        Ok(())
    }

    /// Proposes `requests` to `group` through this node, which must be its leader.
    pub async fn write(
        &self,
        group: GroupId,
        requests: Vec<Request>,
    ) -> Result<Vec<Reply>, ServeError> {
        let g = self.group(group).ok_or(ServeError::UnknownGroup(group))?;
        if requests.is_empty() || requests.len() > MAX_BATCH_REQUESTS {
            return Err(ServeError::Invalid(format!(
                "send 1..={MAX_BATCH_REQUESTS} requests"
            )));
        }
        if !g.is_leader() || g.moving.load(Ordering::SeqCst) {
            // A leader handing over names no leader: the next one is not elected yet.
            let moving = g.moving.load(Ordering::SeqCst);
            return Err(ServeError::NotLeader {
                group,
                leader: if moving { None } else { g.leader_hint() },
            });
        }
        let (tx, rx) = oneshot::channel();
        g.proposals
            .send(Pending {
                requests,
                reply: tx,
            })
            .await
            .map_err(|_| ServeError::Unavailable("proposer stopped".into()))?;
        rx.await
            .map_err(|_| ServeError::Unavailable("proposal dropped".into()))?
    }

    /// This replica's digest of `group` (its own state, leader or not: for comparing replicas).
    pub fn digest(&self, group: GroupId) -> Result<ReplicaDigest, ServeError> {
        let g = self.group(group).ok_or(ServeError::UnknownGroup(group))?;
        let replica = g.shared.read();
        Ok(ReplicaDigest {
            applied_index: replica.applied.map(|l| l.index),
            digest: crate::codec::stable_hash(&crate::codec::encode(&replica.machine.records())),
        })
    }

    /// A linearizable read of `group`'s state through this node, which must be its leader.
    pub async fn read(&self, group: GroupId, query: Query) -> Result<ReadReply, ServeError> {
        let g = self.group(group).ok_or(ServeError::UnknownGroup(group))?;
        // A node restarted while it led its group resumes as leader of the same term, with no
        // new no-op entry, and openraft starts it with `committed` = what its state machine
        // had applied, which trails what it committed (and answered clients for) before the
        // crash: its read index would then serve a state without acknowledged writes. So the
        // first read through a replica since it opened waits for one entry committed through
        // it (a sweep): every earlier entry is then committed and applied here. A leader
        // elected later has a new term and openraft's own no-op does the same.
        if !g.read_barrier_passed.load(Ordering::Acquire) {
            g.sweep().await?;
            g.read_barrier_passed.store(true, Ordering::Release);
        }
        self.read_past_barrier(group, query).await
    }

    /// [`Host::read`] without the first-read barrier. Only the simulator's deliberately
    /// broken variant calls it directly, to show the barrier is needed.
    #[doc(hidden)]
    pub async fn read_past_barrier(
        &self,
        group: GroupId,
        query: Query,
    ) -> Result<ReadReply, ServeError> {
        let g = self.group(group).ok_or(ServeError::UnknownGroup(group))?;
        g.raft
            .ensure_linearizable()
            .await
            .map_err(|e| serve_error(group, e))?;
        // A read answers at the group's committed time, the time of the state it reads: a
        // time taken from this node's clock would not be ordered with writes still in flight
        // or with the clock of the next leader. When holds expired (or records aged out)
        // between the committed time and this node's clock, a sweep is committed first so
        // the answer sees the expiry.
        let due = g
            .shared
            .read()
            .machine
            .sweep_due(self.inner.cfg.clock.now_ms());
        if due {
            g.sweep().await?;
        }
        let reply = g.shared.read().machine.answer(query);
        Ok(reply)
    }

    /// Changes of `group` after log index `from`, waiting up to `wait_ms` for some to appear.
    /// Served by any replica (the feed is a read path; it trails the leader by replication lag).
    pub async fn feed(
        &self,
        group: GroupId,
        from: u64,
        wait_ms: u64,
    ) -> Result<FeedPage, ServeError> {
        let g = self.group(group).ok_or(ServeError::UnknownGroup(group))?;
        let mut applied = g.shared.applied_tx.subscribe();
        let wait = Duration::from_millis(wait_ms.min(MAX_FEED_WAIT_MS));
        if *applied.borrow() <= from {
            let _ = tokio::time::timeout(wait, applied.wait_for(|&a| a > from)).await;
        }
        let reset = {
            let replica = g.shared.read();
            match replica.feed.read(from, FEED_PAGE_MAX_CHANGES) {
                FeedRead::Changes { changes, upto } => {
                    return Ok(FeedPage::Changes {
                        group,
                        changes,
                        upto,
                    })
                }
                FeedRead::Reset => ResetCapture::take(&replica, self.inner.cfg.clock.now_ms()),
            }
        };
        // The copy of seats and documents happens here, with the replica lock released, so
        // an API node resetting never stalls apply.
        Ok(reset.into_page(group))
    }

    /// Adds `node` as a learner of `group`, waits for it to catch up, then makes the voters
    /// exactly `voters`.
    pub async fn change_members(
        &self,
        group: GroupId,
        node: (NodeId, String),
        voters: BTreeSet<NodeId>,
    ) -> Result<(), ServeError> {
        let g = self.group(group).ok_or(ServeError::UnknownGroup(group))?;
        g.raft
            .add_learner(node.0, BasicNode { addr: node.1 }, true)
            .await
            .map_err(|e| serve_error(group, e))?;
        g.raft
            .change_membership(ChangeMembers::ReplaceAllVoters(voters), false)
            .await
            .map_err(|e| serve_error(group, e))?;
        Ok(())
    }

    /// Whether this node's replica of `group` is its leader.
    pub fn leads(&self, group: GroupId) -> bool {
        self.group(group).is_some_and(|g| g.is_leader())
    }

    /// Keeps a balancer decision and its outcome for [`Host::status`] (the last
    /// [`crate::balancer::BALANCER_LOG_LEN`]).
    pub fn note_balancer(&self, decision: String, outcome: String) {
        let mut log = self
            .inner
            .balancer_log
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if log.len() == crate::balancer::BALANCER_LOG_LEN {
            log.pop_front();
        }
        log.push_back(crate::balancer::BalancerEntry {
            at_ms: self.inner.cfg.clock.now_ms(),
            decided_by: self.node_id(),
            decision,
            outcome,
        });
    }

    pub fn status(&self) -> NodeStatus {
        let groups = self
            .group_ids()
            .into_iter()
            .filter_map(|id| self.group(id))
            .map(|g| {
                let m = g.raft.metrics().borrow().clone();
                let membership = m.membership_config.membership();
                GroupStatus {
                    group: g.id,
                    state: format!("{:?}", m.state),
                    term: m.current_term,
                    leader: m.current_leader,
                    last_log_index: m.last_log_index,
                    applied_index: m.last_applied.map(|l| l.index),
                    snapshot_index: m.snapshot.map(|l| l.index),
                    purged_index: m.purged.map(|l| l.index),
                    voters: membership.voter_ids().collect(),
                    learners: membership.learner_ids().collect(),
                }
            })
            .collect();
        NodeStatus {
            node_id: self.node_id(),
            addr: self.addr().to_owned(),
            groups,
            balancer: self
                .inner
                .balancer_log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned()
                .collect(),
        }
    }

    /// The node begins to stop: calls held open by followers' leader watches are answered
    /// now, and so are those that arrive later.
    pub fn begin_stopping(&self) {
        self.inner.stopping.send_replace(true);
    }

    /// Resolves once [`Host::begin_stopping`] (or [`Host::shutdown`]) was called.
    pub async fn stopping(&self) {
        let mut rx = self.inner.stopping.subscribe();
        let _ = rx.wait_for(|stopping| *stopping).await;
    }

    /// Stops every replica and flushes the state store (their storage stays as it is).
    pub async fn shutdown(&self) {
        self.begin_stopping();
        let groups: Vec<Arc<Group>> =
            std::mem::take(&mut *self.inner.groups.write().unwrap_or_else(|p| p.into_inner()))
                .into_values()
                .collect();
        for g in groups {
            g.tasks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .abort_all();
            if let Err(e) = g.raft.shutdown().await {
                tracing::warn!(group = g.id, error = %e, "raft shutdown");
            }
        }
        if let Storage::Disk { db, .. } = &self.inner.storage {
            let db = db.clone();
            // Not needed for durability (the Raft log is), but it makes the next open quick
            // and leaves nothing for sled's drop to write.
            match tokio::task::spawn_blocking(move || db.flush()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "flushing the state store"),
                Err(e) => tracing::warn!(error = %e, "flushing the state store"),
            }
        }
    }
}

/// openraft's "forward to leader" (in any API error that can carry one) as
/// [`ServeError::NotLeader`] with the leader's address; any other Raft error as
/// [`ServeError::Unavailable`]. The one place this mapping is written.
pub(crate) fn serve_error<E>(group: GroupId, error: RaftError<NodeId, E>) -> ServeError
where
    E: TryAsRef<ForwardToLeader<NodeId, BasicNode>> + std::error::Error,
{
    match error.forward_to_leader() {
        Some(f) => ServeError::NotLeader {
            group,
            leader: f
                .leader_id
                .zip(f.leader_node.as_ref())
                .map(|(id, node)| (id, node.addr.clone())),
        },
        None => ServeError::Unavailable(error.to_string()),
    }
}

/// A catalog document's (kind, id).
type CatalogKey = (String, String);

/// What a feed reset takes under the replica's read lock: shared seat layouts with compact
/// statuses, shared catalog documents, the placement table. Cheap to take; rendered into a
/// [`FeedPage::Reset`] after the lock is released.
struct ResetCapture {
    applied: u64,
    at_ms: u64,
    events: Vec<(EventId, Arc<[SeatSpec]>, Vec<SeatStatus>)>,
    catalog: Vec<(CatalogKey, Arc<Vec<u8>>)>,
    placement: Vec<(EventId, GroupId)>,
}

impl ResetCapture {
    fn take(replica: &crate::storage::state::Replica, clock_ms: u64) -> ResetCapture {
        let m = &replica.machine;
        let at_ms = clock_ms.max(m.now_ms());
        ResetCapture {
            applied: replica.feed.applied(),
            at_ms,
            events: m
                .event_ids()
                .filter_map(|id| {
                    let (layout, statuses) = m.seat_statuses(id, at_ms)?;
                    Some((id.clone(), layout, statuses))
                })
                .collect(),
            catalog: m.catalog().map(|(k, d)| (k.clone(), d.clone())).collect(),
            placement: m.placement().iter().map(|(e, g)| (e.clone(), *g)).collect(),
        }
    }

    fn into_page(self, group: GroupId) -> FeedPage {
        let snapshot = FeedSnapshot {
            events: self
                .events
                .into_iter()
                .map(|(id, layout, statuses)| (id, layout.iter().cloned().zip(statuses).collect()))
                .collect(),
            catalog: self
                .catalog
                .into_iter()
                .map(|((kind, id), doc)| (kind, id, doc.to_vec()))
                .collect(),
            placement: self.placement,
            at_ms: self.at_ms,
        };
        FeedPage::Reset {
            group,
            applied: self.applied,
            snapshot,
        }
    }
}

/// Batches queued requests into proposals stamped with the leader's clock (never lower than
/// the last stamp it gave) and keeps up to [`MAX_INFLIGHT_PROPOSALS`] of them in flight.
async fn proposer_loop(
    group: GroupId,
    raft: Raft,
    clock: Arc<dyn Clock>,
    rx: mpsc::Receiver<Pending>,
    metrics: GroupMetrics,
    moving: Arc<AtomicBool>,
) {
    let mut last_stamp_ms = 0u64;
    let weight = |p: &Pending| p.requests.len();
    batch_and_dispatch(
        rx,
        MAX_INFLIGHT_PROPOSALS,
        MAX_BATCH_REQUESTS,
        weight,
        |batch| {
            last_stamp_ms = clock.now_ms().max(last_stamp_ms);
            let n_requests: usize = batch.iter().map(|p| p.requests.len()).sum();
            metrics.proposals.increment(1);
            metrics.proposed_requests.increment(n_requests as u64);
            metrics.batch_requests.record(n_requests as f64);
            propose(group, raft.clone(), last_stamp_ms, batch, moving.clone())
        },
    )
    .await;
}

/// Proposes one batch as one log entry and hands each caller its share of the replies.
/// While a leader move is under way nothing is proposed: every caller hears `NotLeader`
/// with no hint and retries.
async fn propose(
    group: GroupId,
    raft: Raft,
    now_ms: u64,
    batch: Vec<Pending>,
    moving: Arc<AtomicBool>,
) {
    if moving.load(Ordering::SeqCst) {
        for p in batch {
            let _ = p.reply.send(Err(ServeError::NotLeader {
                group,
                leader: None,
            }));
        }
        return;
    }
    let mut counts = Vec::with_capacity(batch.len());
    let mut requests = Vec::new();
    let mut senders = Vec::with_capacity(batch.len());
    for p in batch {
        counts.push(p.requests.len());
        requests.extend(p.requests);
        senders.push(p.reply);
    }
    let requests = Arc::new(requests);
    match raft.client_write(Proposal { now_ms, requests }).await {
        Ok(response) => {
            let mut replies = response.data.into_iter();
            for (sender, n) in senders.into_iter().zip(counts) {
                let _ = sender.send(Ok(replies.by_ref().take(n).collect()));
            }
        }
        Err(e) => {
            let err = serve_error(group, e);
            for sender in senders {
                let _ = sender.send(Err(err.clone()));
            }
        }
    }
}

/// Counts every change of the leader this replica knows of.
async fn count_leader_changes(raft: Raft, leader_changes: metrics::Counter) {
    let mut rx = raft.metrics();
    let mut leader = rx.borrow().current_leader;
    while rx.changed().await.is_ok() {
        let now = rx.borrow().current_leader;
        if now != leader {
            leader = now;
            leader_changes.increment(1);
        }
    }
}

/// Whether a housekeeping command has work at the given time.
type WorkDue = fn(&Machine, u64) -> bool;

/// On the leader, every `interval_ms`, proposes `command` when `due(machine, now)` says it
/// has work: the sweep (expired holds, old request ids) and the waiting rooms' admission step
/// (places waiting or admitted, a sale to open). Each carries the leader's stamped time, so
/// every replica does the same.
async fn housekeeping_loop(
    group: std::sync::Weak<Group>,
    clock: Arc<dyn Clock>,
    interval_ms: u64,
    due: WorkDue,
    command: Command,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(g) = group.upgrade() else { return };
        if !g.is_leader() || !due(&g.shared.read().machine, clock.now_ms()) {
            continue;
        }
        let proposal = g.housekeeping(command.clone());
        drop(g);
        if let Err(ServeError::Unavailable(reason)) = proposal.await {
            tracing::debug!(reason, ?command, "housekeeping not committed");
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::typ::{Entry, LogId};
    use crate::types::Proposal;

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Proposal {
                now_ms: index,
                requests: Default::default(),
            }),
        }
    }

    fn node_log_groups(storage: &Storage) -> Vec<GroupId> {
        match storage {
            Storage::Disk { log, .. } => log.groups(),
            Storage::Memory(_) => unreachable!("a data directory"),
        }
    }

    /// A data directory written before the node log keeps each group's own log; groups new
    /// to it go into the node log; a removed group's part of the node log is gone on the
    /// next open.
    #[test]
    fn an_older_groups_own_log_is_kept_and_new_groups_share_the_node_log() {
        let dir = tempfile::tempdir().unwrap();
        let old_group_dir = dir.path().join("groups").join("1");
        {
            let mut old = FileLog::open(&old_group_dir).unwrap();
            old.load(0).unwrap();
            old.append(&[entry(1), entry(2)]).unwrap();
            old.sync().unwrap();
        }
        {
            let storage = Storage::open_dir(dir.path().to_owned()).unwrap();
            let (mut log1, writer1, _) = storage.open_group(1).unwrap();
            assert!(
                writer1.is_none(),
                "an older group's log keeps its own writer"
            );
            assert_eq!(log1.load(9).unwrap().last, Some(entry(2).log_id));
            let (mut log2, writer2, _) = storage.open_group(2).unwrap();
            assert!(writer2.is_some(), "a new group shares the node's writer");
            log2.load(9).unwrap();
            log2.append(&[entry(1)]).unwrap();
            assert!(log2.sync().unwrap());
            assert!(!FileLog::exists_in(&dir.path().join("groups").join("2")));
            assert_eq!(node_log_groups(&storage), vec![2]);
        }
        {
            let storage = Storage::open_dir(dir.path().to_owned()).unwrap();
            let (mut log2, _, _) = storage.open_group(2).unwrap();
            assert_eq!(log2.load(9).unwrap().last, Some(entry(1).log_id));
            drop(log2);
            storage.mark_removed(2).unwrap();
        }
        let storage = Storage::open_dir(dir.path().to_owned()).unwrap();
        assert!(
            node_log_groups(&storage).is_empty(),
            "a removed group's log is dropped"
        );
        let (mut log1, _, _) = storage.open_group(1).unwrap();
        assert_eq!(log1.load(9).unwrap().tail.len(), 2);
    }
}
