//! The state machine's storage: records in sled (or memory), snapshots, and openraft's
//! `RaftStateMachine` over the shared in-memory [`Machine`].
//!
//! The machine lives in memory; applying an entry touches no disk. Its changed records are
//! **checkpointed** with the applied log id in one atomic batch ([`CheckpointPolicy`]): for
//! sled, by a background thread per group every `every_ms` or every `every_entries` applied
//! entries, whichever comes first; for the in-memory store (the simulator), inline and by
//! count alone, so a seed replays the same. The Raft log is the durable truth: a restart
//! loads the last checkpoint (or the snapshot, whichever is newer) and openraft re-applies
//! the log after it. Snapshots are written durably (atomic file replace) before the log is
//! purged, and the purge keeps everything after the snapshot, so the entries after any
//! checkpoint older than the snapshot are never needed: the snapshot replaces it on load.
//! Checkpoints and snapshot installs go to the disk under one lock, so sled sees them in
//! order.

use std::collections::BTreeSet;
use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::time::Duration;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::feed::{Feed, FEED_CAPACITY_CHANGES};
use crate::machine::{is_layout_key, Machine, Record};
use crate::storage::write_file_atomic;
use crate::telemetry::GroupMetrics;
use crate::typ::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::types::Reply;

const APPLIED_KEY: &[u8] = b"\xffapplied";
const MEMBERSHIP_KEY: &[u8] = b"\xffmembership";
const SNAPSHOT_FILE: &str = "snapshot";

/// When the state machine is checkpointed to its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// After this many applied entries.
    pub every_entries: u64,
    /// On a blocking disk, also at least this often while anything is unsaved.
    pub every_ms: u64,
}

/// A record write (`Some`) or delete (`None`).
pub type RecordChange = (Vec<u8>, Option<Vec<u8>>);

/// The state machine's persisted form.
#[derive(Debug, Default, Clone)]
pub struct Persisted {
    pub applied: Option<LogId>,
    pub membership: StoredMembership,
    pub records: Vec<Record>,
}

/// A snapshot file: its meta and the state's records.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// Where a group's state machine records and snapshot live.
pub trait StateDisk: Send + Sync + 'static {
    fn load(&self) -> io::Result<Persisted>;
    /// Writes the changes and the applied position in one atomic batch.
    fn write(
        &self,
        changes: Vec<RecordChange>,
        applied: Option<LogId>,
        membership: &StoredMembership,
    ) -> io::Result<()>;
    /// Replaces the whole state (snapshot install) in one atomic batch.
    fn replace(&self, persisted: &Persisted) -> io::Result<()>;
    /// Durable on return.
    fn save_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> io::Result<()>;
    fn load_snapshot(&self) -> io::Result<Option<(SnapshotMeta, Vec<u8>)>>;
    /// Whether calls block on I/O (and go to a blocking thread) or are instant (run inline).
    fn blocks(&self) -> bool;
}

/// Runs a disk call off the async threads when the disk blocks; `err` says what failed.
async fn off_thread<T: Send + 'static>(
    disk: &Arc<dyn StateDisk>,
    err: fn(io::Error) -> StorageError,
    f: impl FnOnce(&dyn StateDisk) -> io::Result<T> + Send + 'static,
) -> Result<T, StorageError> {
    if !disk.blocks() {
        return f(disk.as_ref()).map_err(err);
    }
    let disk = disk.clone();
    tokio::task::spawn_blocking(move || f(disk.as_ref()))
        .await
        .map_err(|e| err(io::Error::other(e.to_string())))?
        .map_err(err)
}

fn invalid(e: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// State in sled, seat layouts and the snapshot in files of the group's directory.
///
/// Seat layouts (large, written once per registration chunk, never changed in place) are
/// files in `layouts/`, named by their key and a CRC of their bytes, each fsync'd before the
/// sled batch that points at it: the main tree keeps, beside the hot records (holds,
/// bookings, request ids, the group clock) and the applied log id, one small index entry per
/// layout naming its file. So every checkpoint is still one atomic sled batch, a crash
/// before it leaves only unreferenced files (removed on the next open), and sled, which
/// keeps every value it was given in memory whatever its cache size, no longer holds the
/// layouts (22 B per seat per replica, BENCHMARKS.md).
pub struct SledState {
    tree: sled::Tree,
    dir: PathBuf,
}

/// Index entries of layout files in the main tree: this prefix, then the layout's key.
const LAYOUT_INDEX_PREFIX: &[u8] = b"\xfelayout/";
const LAYOUTS_DIR: &str = "layouts";

fn layout_index_key(key: &[u8]) -> Vec<u8> {
    [LAYOUT_INDEX_PREFIX, key].concat()
}

/// A layout's file name: its key in hex and the CRC-32 of its bytes, so a rewritten layout
/// goes to a new file and the old one stays valid until the batch naming the new one lands.
fn layout_file_name(key: &[u8], value: &[u8]) -> String {
    format!("{}-{:08x}", hex::encode(key), crc32fast::hash(value))
}

impl SledState {
    pub fn open(db: &sled::Db, group: u64, dir: &Path) -> io::Result<SledState> {
        std::fs::create_dir_all(dir.join(LAYOUTS_DIR))?;
        let tree = db
            .open_tree(format!("sm/{group}"))
            .map_err(io::Error::other)?;
        let state = SledState {
            tree,
            dir: dir.to_owned(),
        };
        state.remove_unreferenced_layouts()?;
        Ok(state)
    }

    fn layouts_dir(&self) -> PathBuf {
        self.dir.join(LAYOUTS_DIR)
    }

    /// The layout files the index names.
    fn referenced_layouts(&self) -> io::Result<BTreeSet<String>> {
        let mut names = BTreeSet::new();
        for item in self.tree.scan_prefix(LAYOUT_INDEX_PREFIX) {
            let (_, name) = item.map_err(io::Error::other)?;
            names.insert(String::from_utf8(name.to_vec()).map_err(invalid)?);
        }
        Ok(names)
    }

    /// Deletes layout files no index entry names: written before a batch that never landed,
    /// or replaced or removed by one that did.
    fn remove_unreferenced_layouts(&self) -> io::Result<()> {
        let keep = self.referenced_layouts()?;
        for entry in std::fs::read_dir(self.layouts_dir())? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    /// Writes each layout of `layouts` to its file (fsync'd) and returns the index entries
    /// that name them (or remove them), for the batch that follows.
    fn write_layouts(&self, layouts: Vec<RecordChange>) -> io::Result<Vec<RecordChange>> {
        let dir = self.layouts_dir();
        let mut index = Vec::with_capacity(layouts.len());
        for (key, value) in layouts {
            let entry = match value {
                Some(bytes) => {
                    let name = layout_file_name(&key, &bytes);
                    if !dir.join(&name).exists() {
                        write_file_atomic(&dir, &name, &bytes)?;
                    }
                    Some(name.into_bytes())
                }
                None => None,
            };
            index.push((layout_index_key(&key), entry));
        }
        Ok(index)
    }

    /// Applies `changes` to the main tree as one batch; `clear` first removes every key.
    fn apply(&self, clear: bool, changes: Vec<RecordChange>) -> io::Result<()> {
        let mut batch = sled::Batch::default();
        if clear {
            for key in self.tree.iter().keys() {
                batch.remove(key.map_err(io::Error::other)?);
            }
        }
        for (key, value) in changes {
            match value {
                Some(v) => batch.insert(key, v),
                None => batch.remove(key),
            }
        }
        self.tree.apply_batch(batch).map_err(io::Error::other)
    }
}

fn position(
    applied: Option<LogId>,
    membership: &StoredMembership,
) -> [(Vec<u8>, Option<Vec<u8>>); 2] {
    [
        (APPLIED_KEY.to_vec(), Some(encode(&applied))),
        (MEMBERSHIP_KEY.to_vec(), Some(encode(membership))),
    ]
}

impl StateDisk for SledState {
    fn load(&self) -> io::Result<Persisted> {
        let mut persisted = Persisted::default();
        let layouts = self.layouts_dir();
        for item in self.tree.iter() {
            let (key, value) = item.map_err(io::Error::other)?;
            if &*key == APPLIED_KEY {
                persisted.applied = decode(&value).map_err(invalid)?;
            } else if &*key == MEMBERSHIP_KEY {
                persisted.membership = decode(&value).map_err(invalid)?;
            } else if let Some(layout_key) = key.strip_prefix(LAYOUT_INDEX_PREFIX) {
                let name = String::from_utf8(value.to_vec()).map_err(invalid)?;
                let bytes = std::fs::read(layouts.join(&name))?;
                if name != layout_file_name(layout_key, &bytes) {
                    return Err(invalid(format!(
                        "layout file {name} does not match its CRC"
                    )));
                }
                persisted.records.push((layout_key.to_vec(), bytes));
            } else {
                persisted.records.push((key.to_vec(), value.to_vec()));
            }
        }
        persisted.records.sort();
        Ok(persisted)
    }

    fn write(
        &self,
        changes: Vec<RecordChange>,
        applied: Option<LogId>,
        membership: &StoredMembership,
    ) -> io::Result<()> {
        let (layouts, mut main): (Vec<RecordChange>, Vec<RecordChange>) =
            changes.into_iter().partition(|(k, _)| is_layout_key(k));
        let mut replaced_layouts = false;
        for (key, _) in &layouts {
            replaced_layouts |= self
                .tree
                .contains_key(layout_index_key(key))
                .map_err(io::Error::other)?;
        }
        main.extend(self.write_layouts(layouts)?);
        main.extend(position(applied, membership));
        self.apply(false, main)?;
        if replaced_layouts {
            self.remove_unreferenced_layouts()?;
        }
        Ok(())
    }

    fn replace(&self, persisted: &Persisted) -> io::Result<()> {
        let (layouts, mut main): (Vec<RecordChange>, Vec<RecordChange>) = persisted
            .records
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .partition(|(k, _)| is_layout_key(k));
        main.extend(self.write_layouts(layouts)?);
        main.extend(position(persisted.applied, &persisted.membership));
        self.apply(true, main)?;
        self.remove_unreferenced_layouts()
    }

    fn save_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> io::Result<()> {
        let file = SnapshotFile {
            meta: meta.clone(),
            data: data.to_vec(),
        };
        write_file_atomic(&self.dir, SNAPSHOT_FILE, &encode(&file))
    }

    fn load_snapshot(&self) -> io::Result<Option<(SnapshotMeta, Vec<u8>)>> {
        match std::fs::read(self.dir.join(SNAPSHOT_FILE)) {
            Ok(bytes) => {
                let file: SnapshotFile = decode(&bytes).map_err(invalid)?;
                Ok(Some((file.meta, file.data)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn blocks(&self) -> bool {
        true
    }
}

/// In-memory state that outlives the `Host` using it (for the simulator).
#[derive(Clone, Default)]
pub struct MemState(Arc<Mutex<MemStateData>>);

#[derive(Default)]
struct MemStateData {
    persisted: Persisted,
    snapshot: Option<(SnapshotMeta, Vec<u8>)>,
}

impl MemState {
    fn data(&self) -> std::sync::MutexGuard<'_, MemStateData> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl StateDisk for MemState {
    fn load(&self) -> io::Result<Persisted> {
        Ok(self.data().persisted.clone())
    }
    fn write(
        &self,
        changes: Vec<RecordChange>,
        applied: Option<LogId>,
        membership: &StoredMembership,
    ) -> io::Result<()> {
        let mut d = self.data();
        let mut records: std::collections::BTreeMap<Vec<u8>, Vec<u8>> =
            std::mem::take(&mut d.persisted.records)
                .into_iter()
                .collect();
        for (key, value) in changes {
            match value {
                Some(v) => records.insert(key, v),
                None => records.remove(&key),
            };
        }
        d.persisted = Persisted {
            applied,
            membership: membership.clone(),
            records: records.into_iter().collect(),
        };
        Ok(())
    }
    fn replace(&self, persisted: &Persisted) -> io::Result<()> {
        self.data().persisted = persisted.clone();
        Ok(())
    }
    fn save_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> io::Result<()> {
        self.data().snapshot = Some((meta.clone(), data.to_vec()));
        Ok(())
    }
    fn load_snapshot(&self) -> io::Result<Option<(SnapshotMeta, Vec<u8>)>> {
        Ok(self.data().snapshot.clone())
    }
    fn blocks(&self) -> bool {
        false
    }
}

/// A replica's live state: the machine, where it is in the log, and its change feed.
pub struct Replica {
    pub machine: Machine,
    pub applied: Option<LogId>,
    pub membership: StoredMembership,
    pub feed: Feed,
    /// Entries were applied since the last checkpoint.
    unsaved: bool,
}

/// State shared between openraft's state machine task and readers on the same node.
pub struct GroupShared {
    pub replica: RwLock<Replica>,
    /// The last applied log index, for readers waiting on the feed.
    pub applied_tx: tokio::sync::watch::Sender<u64>,
}

impl GroupShared {
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Replica> {
        self.replica.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Replica> {
        self.replica.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn sm_err(e: io::Error) -> StorageError {
    StorageIOError::write_state_machine(&e).into()
}

fn snapshot_err(e: io::Error) -> StorageError {
    StorageIOError::write_snapshot(None, &e).into()
}

/// openraft's state machine for one group.
pub struct StateMachineStore {
    shared: Arc<GroupShared>,
    disk: Arc<dyn StateDisk>,
    checkpoints: Checkpoints,
    metrics: GroupMetrics,
}

/// What the disk has seen of the machine, guarded by the one lock every disk write takes.
#[derive(Default)]
struct DiskState {
    /// A checkpoint failed: its changes are lost to the disk, so the next one rewrites all.
    rewrite_all: bool,
}

/// Writes the machine's changed records to the disk, in log order.
#[derive(Clone)]
struct Writer {
    shared: Arc<GroupShared>,
    disk: Arc<dyn StateDisk>,
    lock: Arc<Mutex<DiskState>>,
}

impl Writer {
    fn lock(&self) -> std::sync::MutexGuard<'_, DiskState> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes what changed since the last checkpoint, with the applied log id, in one batch.
    fn checkpoint(&self) -> io::Result<()> {
        let mut on_disk = self.lock();
        if on_disk.rewrite_all {
            let persisted = {
                let mut replica = self.shared.write();
                replica.machine.take_dirty_keys();
                replica.unsaved = false;
                Persisted {
                    applied: replica.applied,
                    membership: replica.membership.clone(),
                    records: replica.machine.records(),
                }
            };
            self.disk.replace(&persisted)?;
            on_disk.rewrite_all = false;
            return Ok(());
        }
        let (changes, applied, membership) = {
            if !self.shared.read().unsaved {
                return Ok(());
            }
            let mut replica = self.shared.write();
            replica.unsaved = false;
            (
                replica.machine.take_dirty(),
                replica.applied,
                replica.membership.clone(),
            )
        };
        let written = self.disk.write(changes, applied, &membership);
        if written.is_err() {
            on_disk.rewrite_all = true;
        }
        written
    }
}

/// When checkpoints happen: a background thread for a blocking disk, inline for memory.
struct Checkpoints {
    writer: Writer,
    every_entries: u64,
    unsaved_entries: u64,
    /// Wakes the background thread (`None`: checkpoints run inline). The thread writes a last
    /// checkpoint and exits when this is dropped.
    wake: Option<mpsc::SyncSender<()>>,
}

impl Checkpoints {
    fn new(writer: Writer, policy: CheckpointPolicy) -> io::Result<Checkpoints> {
        let wake = if writer.disk.blocks() {
            let (tx, rx) = mpsc::sync_channel::<()>(1);
            let background = writer.clone();
            let every = Duration::from_millis(policy.every_ms.max(1));
            std::thread::Builder::new()
                .name("sm-checkpoint".into())
                .spawn(move || checkpoint_loop(background, rx, every))?;
            Some(tx)
        } else {
            None
        };
        Ok(Checkpoints {
            writer,
            every_entries: policy.every_entries.max(1),
            unsaved_entries: 0,
            wake,
        })
    }

    /// Counts applied entries; a checkpoint is due every `every_entries`.
    fn applied(&mut self, n_entries: u64) -> io::Result<()> {
        self.unsaved_entries += n_entries;
        if self.unsaved_entries < self.every_entries {
            return Ok(());
        }
        self.unsaved_entries = 0;
        match &self.wake {
            // Full means a wake-up is already pending: that checkpoint will take these too.
            Some(wake) => {
                let _ = wake.try_send(());
                Ok(())
            }
            None => self.writer.checkpoint(),
        }
    }
}

fn checkpoint_loop(writer: Writer, wake: mpsc::Receiver<()>, every: Duration) {
    loop {
        let last = match wake.recv_timeout(every) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => false,
            Err(mpsc::RecvTimeoutError::Disconnected) => true,
        };
        if let Err(e) = writer.checkpoint() {
            // Not fatal: the log still has every entry since the last good checkpoint, and
            // the next checkpoint rewrites the whole state.
            tracing::error!(error = %e, "state machine checkpoint failed");
        }
        if last {
            return;
        }
    }
}

impl StateMachineStore {
    /// Loads the newest of the persisted state and the snapshot, checkpoints by `policy`, and
    /// counts applied entries and snapshots in `metrics`.
    pub fn open(
        disk: Arc<dyn StateDisk>,
        policy: CheckpointPolicy,
        metrics: GroupMetrics,
    ) -> io::Result<(StateMachineStore, Arc<GroupShared>)> {
        let mut persisted = disk.load()?;
        if let Some((meta, data)) = disk.load_snapshot()? {
            if meta.last_log_id > persisted.applied {
                let records: Vec<Record> = decode(&data).map_err(invalid)?;
                persisted = Persisted {
                    applied: meta.last_log_id,
                    membership: meta.last_membership.clone(),
                    records,
                };
                disk.replace(&persisted)?;
            }
        }
        let machine = Machine::from_records(persisted.records).map_err(invalid)?;
        let applied_index = persisted.applied.map(|l| l.index).unwrap_or(0);
        let replica = Replica {
            machine,
            applied: persisted.applied,
            membership: persisted.membership,
            feed: Feed::new(applied_index, FEED_CAPACITY_CHANGES),
            unsaved: false,
        };
        let (applied_tx, _) = tokio::sync::watch::channel(applied_index);
        let shared = Arc::new(GroupShared {
            replica: RwLock::new(replica),
            applied_tx,
        });
        let writer = Writer {
            shared: shared.clone(),
            disk: disk.clone(),
            lock: Arc::default(),
        };
        Ok((
            StateMachineStore {
                shared: shared.clone(),
                disk,
                checkpoints: Checkpoints::new(writer, policy)?,
                metrics,
            },
            shared,
        ))
    }
}

/// Builds a snapshot from a copy of the records taken under the read lock.
pub struct SnapshotBuilder {
    shared: Arc<GroupShared>,
    disk: Arc<dyn StateDisk>,
    built: metrics::Counter,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (records, applied, membership) = {
            let replica = self.shared.read();
            (
                replica.machine.records(),
                replica.applied,
                replica.membership.clone(),
            )
        };
        let data = encode(&records);
        let snapshot_id = match applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index),
            None => "empty".to_owned(),
        };
        let meta = SnapshotMeta {
            last_log_id: applied,
            last_membership: membership,
            snapshot_id,
        };
        let (meta_w, data_w) = (meta.clone(), data.clone());
        off_thread(&self.disk, snapshot_err, move |disk| {
            disk.save_snapshot(&meta_w, &data_w)
        })
        .await?;
        self.built.increment(1);
        tracing::info!(snapshot = %meta.snapshot_id, bytes = data.len(), "snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let replica = self.shared.read();
        Ok((replica.applied, replica.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Reply>>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut replies = Vec::new();
        let mut n_entries = 0;
        let applied = {
            let mut replica = self.shared.write();
            for entry in entries {
                n_entries += 1;
                self.metrics.entries_applied.increment(1);
                replica.applied = Some(entry.log_id);
                let mut changes = Vec::new();
                match &entry.payload {
                    EntryPayload::Blank => replies.push(Vec::new()),
                    EntryPayload::Normal(proposal) => {
                        replies.push(replica.machine.apply_proposal(proposal, &mut changes));
                    }
                    EntryPayload::Membership(m) => {
                        replica.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                        replies.push(Vec::new());
                    }
                }
                replica.feed.push(entry.log_id.index, changes);
            }
            replica.unsaved = true;
            replica.applied
        };
        self.checkpoints.applied(n_entries).map_err(sm_err)?;
        self.shared
            .applied_tx
            .send_replace(applied.map(|l| l.index).unwrap_or(0));
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
            disk: self.disk.clone(),
            built: self.metrics.snapshots_built.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let records: Vec<Record> = decode(&data).map_err(|e| snapshot_err(invalid(e)))?;
        let machine =
            Machine::from_records(records.clone()).map_err(|e| snapshot_err(invalid(e)))?;
        let persisted = Persisted {
            applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            records,
        };
        let meta_w = meta.clone();
        let writer = self.checkpoints.writer.clone();
        let applied_index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        // Disk and memory change under the writer's lock, so no checkpoint of the old
        // machine can land on the disk after the new state.
        off_thread(&self.disk, snapshot_err, move |disk| {
            let mut on_disk = writer.lock();
            disk.save_snapshot(&meta_w, &data)?;
            disk.replace(&persisted)?;
            on_disk.rewrite_all = false;
            let mut replica = writer.shared.write();
            replica.machine = machine;
            replica.applied = meta_w.last_log_id;
            replica.membership = meta_w.last_membership.clone();
            replica.unsaved = false;
            replica.feed.reset(applied_index);
            Ok(())
        })
        .await?;
        self.shared.applied_tx.send_replace(applied_index);
        self.metrics.snapshots_installed.increment(1);
        tracing::info!(snapshot = %meta.snapshot_id, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let loaded = off_thread(&self.disk, snapshot_err, |disk| disk.load_snapshot()).await?;
        Ok(loaded.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(k: &[u8], v: &[u8]) -> RecordChange {
        (k.to_vec(), Some(v.to_vec()))
    }

    #[test]
    fn sled_state_keeps_layouts_apart_but_loads_and_replaces_as_one() {
        let (dir, db) = temp_db();
        let state = SledState::open(&db, 1, &dir.path().join("g1")).unwrap();
        let membership = StoredMembership::default();
        let applied = Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), 7));
        state
            .write(
                vec![
                    rec(b"lEV", b"layout"),
                    rec(b"hH1", b"hold"),
                    rec(b"g", b"clock"),
                ],
                applied,
                &membership,
            )
            .unwrap();
        state
            .write(
                vec![rec(b"hH2", b"hold2"), (b"hH1".to_vec(), None)],
                applied,
                &membership,
            )
            .unwrap();
        assert_eq!(
            layout_files(&state),
            1,
            "the layout is a file, not a sled value"
        );
        let loaded = state.load().unwrap();
        assert_eq!(loaded.applied, applied);
        let keys: Vec<&[u8]> = loaded.records.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, vec![b"g".as_slice(), b"hH2", b"lEV"]);
        let replacement = Persisted {
            applied: None,
            membership,
            records: vec![(b"lOTHER".to_vec(), b"x".to_vec())],
        };
        state.replace(&replacement).unwrap();
        let loaded = state.load().unwrap();
        assert_eq!(loaded.records, replacement.records);
        assert_eq!(loaded.applied, None);
        assert_eq!(
            layout_files(&state),
            1,
            "the replaced layout's file is gone"
        );
    }

    fn temp_db() -> (tempfile::TempDir, sled::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(dir.path().join("db"))
            .temporary(true)
            .open()
            .unwrap();
        (dir, db)
    }

    fn layout_files(state: &SledState) -> usize {
        std::fs::read_dir(state.layouts_dir()).unwrap().count()
    }

    /// A crash after a layout file is written but before the batch naming it lands leaves a
    /// file nothing names: the next open deletes it and the state loads without it; a
    /// rewritten layout keeps only its new file, and a damaged one refuses to load.
    #[test]
    fn layout_files_outside_a_landed_batch_are_not_loaded() {
        let (dir, db) = temp_db();
        let group_dir = dir.path().join("g1");
        let state = SledState::open(&db, 1, &group_dir).unwrap();
        let membership = StoredMembership::default();
        let applied = Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), 3));
        state
            .write(vec![rec(b"lA", b"one")], applied, &membership)
            .unwrap();
        // The checkpoint after it wrote its file, then the process died.
        state.write_layouts(vec![rec(b"lB", b"two")]).unwrap();
        assert_eq!(layout_files(&state), 2);
        drop(state);
        let state = SledState::open(&db, 1, &group_dir).unwrap();
        assert_eq!(layout_files(&state), 1, "the orphan is removed on open");
        let loaded = state.load().unwrap();
        assert_eq!(loaded.records, vec![(b"lA".to_vec(), b"one".to_vec())]);
        assert_eq!(loaded.applied, applied);

        state
            .write(vec![rec(b"lA", b"uno")], applied, &membership)
            .unwrap();
        assert_eq!(layout_files(&state), 1, "the old version's file is gone");
        let loaded = state.load().unwrap();
        assert_eq!(loaded.records, vec![(b"lA".to_vec(), b"uno".to_vec())]);

        let file = std::fs::read_dir(state.layouts_dir())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        std::fs::write(&file, b"unX").unwrap();
        assert!(
            state.load().is_err(),
            "a damaged layout file is an error, not a state"
        );
    }
}
