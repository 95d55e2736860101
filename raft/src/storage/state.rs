//! The state machine's storage: records in sled (or memory), snapshots, and openraft's
//! `RaftStateMachine` over the shared in-memory [`Machine`].
//!
//! The machine lives in memory; applying an entry touches no disk. Its changed records are
//! **checkpointed** with the applied log id in one atomic batch ([`CheckpointPolicy`]): for
//! sled, by a background thread per group every `every_ms` (at a random phase the thread
//! keeps) or every `every_entries` applied entries, whichever comes first; for the
//! in-memory store (the simulator), inline and by count alone, so a seed replays the same. The Raft log is the durable truth: a restart
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
use std::time::{Duration, Instant};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::feed::{Feed, FEED_CAPACITY_CHANGES};
use crate::machine::mutants::{self, Mutant};
use crate::machine::{is_layout_key, DirtyRecords, Machine, Record};
use crate::storage::checkpoint_file::{fold_segment, CheckpointFile, Framed, Position};
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
#[derive(Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    #[serde(with = "crate::codec::byte_string")]
    data: Vec<u8>,
}

/// [`SnapshotFile`] as it is written, borrowing the records instead of copying them.
#[derive(Serialize)]
struct SnapshotFileRef<'a> {
    meta: &'a SnapshotMeta,
    #[serde(with = "crate::codec::byte_string")]
    data: &'a [u8],
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

/// State in sled, the hot records, seat layouts and the snapshot in files of the group's
/// directory.
///
/// Seat layouts (large, written once per registration chunk, never changed in place) are
/// files in `layouts/`, named by their key and a CRC of their bytes, each fsync'd before the
/// sled batch that points at it: the main tree keeps one small index entry per layout naming
/// its file. The hot records (holds, bookings, request ids, the group clock) are not sled
/// values either: every checkpoint appends its changes as one **segment** to the group's
/// [`CheckpointFile`] (fdatasync'd), and the sled batch commits the file's new length with
/// the applied log id. So every checkpoint is still one atomic sled batch: a crash before it
/// leaves only bytes and files nothing names (cut off or removed on the next open), and
/// sled, which keeps every value it was given in memory whatever its cache size, holds
/// neither the layouts (22 B per seat per replica) nor the segments (each written as a new
/// sled blob file of its own; BENCHMARKS.md).
///
/// When the segments have doubled since the live records were last measured (and hold at
/// least [`COMPACT_MIN_BYTES`]), the next checkpoint, after landing its own segment, folds
/// them to measure the live records again, and compacts them into a fresh file holding just
/// those if at least half of the segments is garbage. Records written one per key, and
/// segments written as sled values, by earlier versions still load (as the base the file
/// applies to) and are folded into the first compaction.
pub struct SledState {
    tree: sled::Tree,
    dir: PathBuf,
    segments: Mutex<Segments>,
    /// [`COMPACT_MIN_BYTES`], lower in tests.
    compact_min_bytes: u64,
}

/// Keys of segments earlier versions kept in the main tree: this prefix, then the sequence
/// number (big-endian). Read, never written.
const SEGMENT_PREFIX: &[u8] = b"\xfdseg/";
/// The checkpoint file's committed [`Position`].
const CHECKPOINT_FILE_KEY: &[u8] = b"\xffcheckpoint";
const CHECKPOINT_DIR: &str = "checkpoint";
/// Segments are compacted only once they hold at least this many bytes.
pub const COMPACT_MIN_BYTES: u64 = 32 << 20;

/// The hot records' segments, and what they hold, for deciding when to compact.
#[derive(Debug)]
struct Segments {
    file: CheckpointFile,
    /// Bytes of records and segments an earlier version kept in sled (0 after a compaction).
    legacy_bytes: u64,
    /// Bytes of the live records when last measured: at the last compaction, replace or
    /// look at the garbage (or open).
    live: u64,
}

impl Segments {
    /// Bytes in all segments (and records stored one per key).
    fn bytes(&self) -> u64 {
        self.legacy_bytes + self.file.committed_len()
    }
}

/// What one record takes in a segment: its key and value and their two lengths.
fn record_bytes(key: &[u8], value: &[u8]) -> u64 {
    (key.len() + value.len() + 8) as u64
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

/// Whether a main-tree key is a hot record stored one per key (as versions before the
/// segments wrote them), not a segment, a layout index entry or the applied position.
fn is_record_key(key: &[u8]) -> bool {
    !key.starts_with(SEGMENT_PREFIX)
        && !key.starts_with(LAYOUT_INDEX_PREFIX)
        && key != APPLIED_KEY
        && key != MEMBERSHIP_KEY
        && key != CHECKPOINT_FILE_KEY
}

impl SledState {
    pub fn open(db: &sled::Db, group: u64, dir: &Path) -> io::Result<SledState> {
        std::fs::create_dir_all(dir.join(LAYOUTS_DIR))?;
        let tree = db
            .open_tree(format!("sm/{group}"))
            .map_err(io::Error::other)?;
        let mut legacy_bytes = 0;
        for item in tree.iter() {
            let (key, value) = item.map_err(io::Error::other)?;
            if key.starts_with(SEGMENT_PREFIX) {
                legacy_bytes += value.len() as u64;
            } else if is_record_key(&key) {
                legacy_bytes += (key.len() + value.len()) as u64;
            }
        }
        let committed: Option<Position> = match tree.get(CHECKPOINT_FILE_KEY) {
            Ok(Some(bytes)) => Some(decode(&bytes).map_err(invalid)?),
            Ok(None) => None,
            Err(e) => return Err(io::Error::other(e)),
        };
        let file = CheckpointFile::open(&dir.join(CHECKPOINT_DIR), committed)?;
        // Unknown until the next compaction; assume the segments hold no garbage yet.
        let live = legacy_bytes + file.committed_len();
        let state = SledState {
            tree,
            dir: dir.to_owned(),
            segments: Mutex::new(Segments {
                file,
                legacy_bytes,
                live,
            }),
            compact_min_bytes: COMPACT_MIN_BYTES,
        };
        state.remove_unreferenced_layouts()?;
        Ok(state)
    }

    fn segments(&self) -> std::sync::MutexGuard<'_, Segments> {
        self.segments.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The hot records: the file's segments folded over what an earlier version kept in
    /// sled (records one per key, then its segments, which sort after them).
    fn hot_records(
        &self,
        segments: &Segments,
    ) -> io::Result<std::collections::BTreeMap<Vec<u8>, Vec<u8>>> {
        let mut records = std::collections::BTreeMap::new();
        if segments.legacy_bytes > 0 {
            for item in self.tree.iter() {
                let (key, value) = item.map_err(io::Error::other)?;
                if key.starts_with(SEGMENT_PREFIX) {
                    fold_segment(&value, &mut records)?;
                } else if is_record_key(&key) {
                    records.insert(key.to_vec(), value.to_vec());
                }
            }
        }
        segments.file.fold_into(&mut records)?;
        Ok(records)
    }

    /// Replaces the segments by a fresh file of `records` (the live ones, in key order),
    /// committed by one batch with `more` (`clear`: after removing every key; otherwise
    /// removing what an earlier version kept in sled), flushed before the old file goes.
    fn rewrite_segments<'a>(
        &self,
        segments: &mut Segments,
        records: impl Iterator<Item = (&'a [u8], &'a [u8])>,
        clear: bool,
        mut more: Vec<RecordChange>,
    ) -> io::Result<()> {
        let (position, next) = segments.file.rewrite(records)?;
        if !clear && segments.legacy_bytes > 0 {
            for key in self.tree.iter().keys() {
                let key = key.map_err(io::Error::other)?;
                if key.starts_with(SEGMENT_PREFIX) || is_record_key(&key) {
                    more.push((key.to_vec(), None));
                }
            }
        }
        more.push((CHECKPOINT_FILE_KEY.to_vec(), Some(encode(&position))));
        self.apply(clear, more)?;
        self.tree.flush().map_err(io::Error::other)?;
        segments.file.switch(next)?;
        segments.legacy_bytes = 0;
        segments.live = position.len;
        Ok(())
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
            }
        }
        persisted
            .records
            .extend(self.hot_records(&self.segments())?);
        persisted.records.sort();
        Ok(persisted)
    }

    fn write(
        &self,
        changes: Vec<RecordChange>,
        applied: Option<LogId>,
        membership: &StoredMembership,
    ) -> io::Result<()> {
        let (layouts, main): (Vec<RecordChange>, Vec<RecordChange>) =
            changes.into_iter().partition(|(k, _)| is_layout_key(k));
        let mut replaced_layouts = false;
        for (key, _) in &layouts {
            replaced_layouts |= self
                .tree
                .contains_key(layout_index_key(key))
                .map_err(io::Error::other)?;
        }
        let mut segments = self.segments();
        let mut batch = Vec::new();
        let mut appended = None;
        if !main.is_empty() {
            let size = main
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len) + 8);
            let segment = Framed::encode(
                main.iter().map(|(k, v)| (k.as_slice(), v.as_deref())),
                size.sum(),
            )?;
            let position = segments.file.append(&segment)?;
            batch.push((CHECKPOINT_FILE_KEY.to_vec(), Some(encode(&position))));
            appended = Some(position);
        }
        batch.extend(self.write_layouts(layouts)?);
        batch.extend(position(applied, membership));
        self.apply(false, batch)?;
        if let Some(position) = appended {
            segments.file.landed(position);
        }
        if segments.bytes() >= self.compact_min_bytes.max(2 * segments.live) {
            // The file, the segment just written included, is folded to see what is live; a
            // compaction writes that to a new file committed by a second atomic batch: the
            // state loads the same before and after.
            if segments.legacy_bytes == 0 {
                // The common case: fold the mapped file into a hash map of records borrowed
                // from it. Copying the file into the heap and every record into a B-tree
                // cost a busy node a fifth of its CPU (BENCHMARKS.md, "Session 22:
                // compaction without copies").
                let mapped = segments.file.map_committed()?;
                let live = match &mapped {
                    Some(mapped) => mapped.live_records()?,
                    None => Default::default(),
                };
                let live_bytes: u64 = live.iter().map(|(k, v)| record_bytes(k, v)).sum();
                if 2 * live_bytes <= segments.bytes() {
                    self.rewrite_segments(
                        &mut segments,
                        live.iter().map(|(k, v)| (*k, *v)),
                        false,
                        Vec::new(),
                    )?;
                } else {
                    // Less than half of the file is garbage (a sale that only adds holds):
                    // a rewrite would copy nearly all of it to free little. Look again once
                    // the file is twice what is live now.
                    segments.live = live_bytes;
                }
            } else {
                // What an earlier version kept in sled is folded in and removed whatever
                // the garbage: the first compaction after an upgrade always rewrites.
                let live = self.hot_records(&segments)?;
                self.rewrite_segments(
                    &mut segments,
                    live.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
                    false,
                    Vec::new(),
                )?;
            }
        }
        drop(segments);
        if replaced_layouts {
            // The batch naming the new files must be on disk before the old ones go.
            self.tree.flush().map_err(io::Error::other)?;
            self.remove_unreferenced_layouts()?;
        }
        Ok(())
    }

    fn replace(&self, persisted: &Persisted) -> io::Result<()> {
        let layouts: Vec<RecordChange> = persisted
            .records
            .iter()
            .filter(|(k, _)| is_layout_key(k))
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        let mut main = self.write_layouts(layouts)?;
        main.extend(position(persisted.applied, &persisted.membership));
        let mut segments = self.segments();
        self.rewrite_segments(
            &mut segments,
            persisted
                .records
                .iter()
                .filter(|(k, _)| !is_layout_key(k))
                .map(|(k, v)| (k.as_slice(), v.as_slice())),
            true,
            main,
        )?;
        drop(segments);
        self.remove_unreferenced_layouts()
    }

    fn save_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> io::Result<()> {
        let file = SnapshotFileRef { meta, data };
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
    /// What the entries applied since the last checkpoint changed, taken by each apply
    /// (under the lock it holds anyway) so that a checkpoint only swaps this list under
    /// the lock and encodes it after.
    changes: DirtyRecords,
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
        self.checkpoint_locked(&mut self.lock())
    }

    /// A snapshot of the state as of a checkpoint taken now: the records are read back from
    /// the disk under the disk lock, so the replica's lock is held only to take the changed
    /// records, and applying goes on while the snapshot is encoded. (Copying the records out
    /// of the machine under its read lock stalled every write for the whole copy: seconds
    /// with a million holds.)
    fn snapshot(&self) -> io::Result<(SnapshotMeta, Vec<u8>)> {
        let persisted = {
            let mut on_disk = self.lock();
            self.checkpoint_locked(&mut on_disk)?;
            self.disk.load()?
        };
        let snapshot_id = match persisted.applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index),
            None => "empty".to_owned(),
        };
        let meta = SnapshotMeta {
            last_log_id: persisted.applied,
            last_membership: persisted.membership,
            snapshot_id,
        };
        let data = encode(&persisted.records);
        self.disk.save_snapshot(&meta, &data)?;
        Ok((meta, data))
    }

    fn checkpoint_locked(&self, on_disk: &mut DiskState) -> io::Result<()> {
        if on_disk.rewrite_all {
            let persisted = {
                let mut replica = self.shared.write();
                replica.machine.take_dirty_keys();
                replica.changes = DirtyRecords::default();
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
            // Applies took their changes already; the machine's own take is for anything
            // changed outside an apply (nothing today) and costs nothing when empty.
            let mut changes = std::mem::take(&mut replica.changes);
            changes.append(replica.machine.take_dirty_values());
            (changes, replica.applied, replica.membership.clone())
        };
        // Encoded with the replica's lock released: applying goes on meanwhile.
        let written = self.disk.write(changes.encode(), applied, &membership);
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

/// How much less a checkpoint thread is scheduled than the threads a hold waits on (the
/// runtime's workers, the log writers): added to the Linux nice value it starts with.
/// Checkpoints are background work (the log is the truth until one lands), and on a busy
/// node a checkpoint's encoding burst would otherwise take a core from the appends and
/// applies in flight; a starved checkpoint only grows the next one. Elsewhere the threads of
/// a process share one nice value, so there it is left alone.
const CHECKPOINT_NICE_INCREMENT: i32 = 10;

/// The nice value `CHECKPOINT_NICE_INCREMENT` above `nice`, within Linux's range.
fn checkpoint_nice(nice: i32) -> i32 {
    (nice + CHECKPOINT_NICE_INCREMENT).min(19)
}

fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        // On Linux the nice value is per thread, and `who` = a thread id names one.
        let tid = unsafe { libc::gettid() } as libc::id_t;
        let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) };
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, checkpoint_nice(nice)) };
        if rc != 0 {
            tracing::debug!(error = %io::Error::last_os_error(), "checkpoint thread keeps its priority");
        }
    }
}

/// The next timed checkpoint after `now` on the grid `due + k * every`: a checkpoint that
/// ran late, or early on a count, keeps its thread's phase. `None` when that lies beyond
/// what an `Instant` can hold (an interval of ages): then only counts wake the thread.
fn next_due(due: Instant, every: Duration, now: Instant) -> Option<Instant> {
    if due > now {
        return Some(due);
    }
    let behind = now.duration_since(due).as_nanos() / every.as_nanos().max(1);
    let steps = u32::try_from(behind + 1).ok()?;
    due.checked_add(every.checked_mul(steps)?)
}

fn checkpoint_loop(writer: Writer, wake: mpsc::Receiver<()>, every: Duration) {
    lower_this_threads_priority();
    // Each thread starts at a random phase of the interval and keeps it. Started together
    // (a node's groups open at once), the threads would otherwise checkpoint in step: every
    // group's encoding and fdatasync in the same few milliseconds, a CPU and disk burst
    // the holds in flight wait behind (BENCHMARKS.md, "checkpoints in step").
    let mut due = Instant::now().checked_add(every.mul_f64(rand::random::<f64>()));
    loop {
        let woken = match due {
            Some(due) => wake.recv_timeout(due.saturating_duration_since(Instant::now())),
            None => wake
                .recv()
                .map_err(|mpsc::RecvError| mpsc::RecvTimeoutError::Disconnected),
        };
        let last = match woken {
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
        due = due.and_then(|due| next_due(due, every, Instant::now()));
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
            changes: DirtyRecords::default(),
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

/// Builds a snapshot from the records of a checkpoint taken for it ([`Writer::snapshot`]).
pub struct SnapshotBuilder {
    writer: Writer,
    built: metrics::Counter,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let writer = self.writer.clone();
        let (meta, data) =
            off_thread(&self.writer.disk, snapshot_err, move |_| writer.snapshot()).await?;
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
        let mut first_index = None;
        let applied = {
            let mut replica = self.shared.write();
            for entry in entries {
                n_entries += 1;
                first_index.get_or_insert(entry.log_id.index);
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
            let taken = replica.machine.take_dirty_values();
            let lose = mutants::active(Mutant::CheckpointLosesChanges)
                && first_index.is_some_and(|i| i % mutants::LOST_CHANGES_EVERY == 0);
            if !lose {
                replica.changes.append(taken);
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
            writer: self.checkpoints.writer.clone(),
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
            replica.changes = DirtyRecords::default();
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

    fn generation(state: &SledState) -> u64 {
        state.segments().file.generation()
    }

    /// Checkpoints land as segments that load in order (later writes and deletions win);
    /// a reopened store goes on after its last segment; once the segments hold more than
    /// twice the live records they are compacted into a new file, records and segments an
    /// earlier version kept in sled included, and the state loads the same before and after.
    #[test]
    fn segments_load_in_order_and_compact_to_the_live_records() {
        let (dir, db) = temp_db();
        let group_dir = dir.path().join("g1");
        let membership = StoredMembership::default();
        let applied = Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), 9));
        let mut state = SledState::open(&db, 1, &group_dir).unwrap();
        // A record and a segment as earlier versions stored them in sled.
        state.tree.insert(b"hOLD", b"old-style".as_slice()).unwrap();
        let legacy = crate::storage::checkpoint_file::encode_segment(
            [
                (b"hSEG".as_slice(), Some(b"in-sled".as_slice())),
                (b"hGONE".as_slice(), None),
            ]
            .into_iter(),
            0,
        );
        state.tree.insert(segment_key(0), legacy).unwrap();
        drop(state);
        state = SledState::open(&db, 1, &group_dir).unwrap();
        state.compact_min_bytes = 1 << 12;
        let mut expected: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = [
            (b"hOLD".to_vec(), b"old-style".to_vec()),
            (b"hSEG".to_vec(), b"in-sled".to_vec()),
        ]
        .into();
        let mut compactions = 0;
        for round in 0..40u32 {
            if round == 20 {
                drop(state);
                state = SledState::open(&db, 1, &group_dir).unwrap();
                state.compact_min_bytes = 1 << 12;
            }
            let mut changes = Vec::new();
            for i in 0..10u32 {
                // Keys come back every round: most writes overwrite, some delete.
                let key = format!("h{:03}", (round * 7 + i) % 50).into_bytes();
                if (round + i) % 4 == 0 {
                    expected.remove(&key);
                    changes.push((key, None));
                } else {
                    let value = vec![round as u8; 40 + i as usize];
                    expected.insert(key.clone(), value.clone());
                    changes.push((key, Some(value)));
                }
            }
            if round == 30 {
                expected.remove(b"hOLD".as_slice());
                changes.push((b"hOLD".to_vec(), None));
            }
            let before = generation(&state);
            state.write(changes, applied, &membership).unwrap();
            if generation(&state) > before + u64::from(before == 0) {
                compactions += 1;
            }
            let loaded = state.load().unwrap();
            assert_eq!(loaded.applied, applied);
            let loaded: std::collections::BTreeMap<_, _> = loaded.records.into_iter().collect();
            assert_eq!(loaded, expected, "round {round}");
        }
        assert!(compactions >= 2, "{compactions} compactions");
        assert!(
            !state.tree.contains_key(b"hOLD").unwrap()
                && state.tree.scan_prefix(SEGMENT_PREFIX).next().is_none(),
            "folded into the file"
        );
        assert_eq!(
            checkpoint_files(&state),
            1,
            "compaction deletes the file it replaces"
        );
        let live: u64 = expected.iter().map(|(k, v)| record_bytes(k, v)).sum();
        assert!(state.segments().bytes() <= 4 * live + (1 << 13));
    }

    /// A file that is mostly live records is not rewritten when it grows (a rewrite would
    /// copy nearly all of it); once deletions make most of it garbage, it is, and the state
    /// loads the same throughout.
    #[test]
    fn segments_are_compacted_only_when_half_is_garbage() {
        let (dir, db) = temp_db();
        let mut state = SledState::open(&db, 1, &dir.path().join("g1")).unwrap();
        state.compact_min_bytes = 1 << 12;
        let membership = StoredMembership::default();
        let applied = Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), 9));
        let mut expected = std::collections::BTreeMap::new();
        type Records = std::collections::BTreeMap<Vec<u8>, Vec<u8>>;
        let check = |state: &SledState, expected: &Records| {
            let loaded: Records = state.load().unwrap().records.into_iter().collect();
            assert_eq!(&loaded, expected);
        };
        let mut round = 0u32;
        let mut write_new = |state: &SledState, expected: &mut Records| {
            let changes: Vec<RecordChange> = (0..20u32)
                .map(|i| {
                    let key = format!("h{round:03}-{i:03}").into_bytes();
                    let value = vec![round as u8; 60];
                    expected.insert(key.clone(), value.clone());
                    (key, Some(value))
                })
                .collect();
            state.write(changes, applied, &membership).unwrap();
            round += 1;
        };
        // Only new keys: the file grows far past the threshold and stays one generation.
        for _ in 0..50 {
            write_new(&state, &mut expected);
        }
        check(&state, &expected);
        let grown = state.segments().bytes();
        assert!(grown > 16 * state.compact_min_bytes, "{grown} bytes");
        assert_eq!(generation(&state), 1, "no garbage, no rewrite");
        // Delete nine records in ten, then go on adding: the first look once the file has
        // doubled again finds most of it garbage and rewrites it.
        let doomed: Vec<Vec<u8>> = expected
            .keys()
            .filter(|k| !k.ends_with(b"0"))
            .cloned()
            .collect();
        for chunk in doomed.chunks(100) {
            let changes = chunk.iter().map(|k| (k.clone(), None)).collect();
            for k in chunk {
                expected.remove(k);
            }
            state.write(changes, applied, &membership).unwrap();
        }
        check(&state, &expected);
        while generation(&state) == 1 {
            assert!(state.segments().bytes() < 3 * grown, "never rewritten");
            write_new(&state, &mut expected);
        }
        check(&state, &expected);
        let live: u64 = expected.iter().map(|(k, v)| record_bytes(k, v)).sum();
        assert!(
            state.segments().bytes() < live + (1 << 10),
            "{} bytes after the rewrite, {live} live",
            state.segments().bytes()
        );
        drop(state);
        check(
            &SledState::open(&db, 1, &dir.path().join("g1")).unwrap(),
            &expected,
        );
    }

    fn segment_key(seq: u64) -> Vec<u8> {
        [SEGMENT_PREFIX, &seq.to_be_bytes()].concat()
    }

    fn checkpoint_files(state: &SledState) -> usize {
        std::fs::read_dir(state.dir.join(CHECKPOINT_DIR))
            .unwrap()
            .count()
    }

    fn checkpoint_file(state: &SledState) -> PathBuf {
        std::fs::read_dir(state.dir.join(CHECKPOINT_DIR))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
    }

    #[test]
    fn a_damaged_segment_is_an_error_not_a_state() {
        let (dir, db) = temp_db();
        let state = SledState::open(&db, 1, &dir.path().join("g1")).unwrap();
        let membership = StoredMembership::default();
        state
            .write(vec![rec(b"hH1", b"hold")], None, &membership)
            .unwrap();
        let path = checkpoint_file(&state);
        let mut bytes = std::fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let err = state.load().unwrap_err();
        assert!(err.to_string().contains("CRC"), "{err}");
    }

    /// A crash after a segment is appended but before the batch committing it lands leaves
    /// bytes past the committed length: the next open cuts them off, nothing of them loads,
    /// and the next checkpoint appends where the committed ones end. A rewrite whose batch
    /// never landed leaves a file of the next generation, which the next open deletes. A
    /// file shorter than its committed length refuses to open.
    #[test]
    fn checkpoint_bytes_outside_a_landed_batch_are_not_loaded() {
        let (dir, db) = temp_db();
        let group_dir = dir.path().join("g1");
        let membership = StoredMembership::default();
        let applied = Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), 3));
        let state = SledState::open(&db, 1, &group_dir).unwrap();
        state
            .write(vec![rec(b"hA", b"one")], applied, &membership)
            .unwrap();
        let committed = std::fs::metadata(checkpoint_file(&state)).unwrap().len();
        // The next checkpoint appended its segment, then the process died.
        let lost =
            Framed::encode([(b"hB".as_slice(), Some(b"two".as_slice()))].into_iter(), 0).unwrap();
        state.segments().file.append(&lost).unwrap();
        // And a compaction wrote its file, then the process died.
        let (_, orphan) = state
            .segments()
            .file
            .rewrite([(b"hC".as_slice(), b"three".as_slice())].into_iter())
            .unwrap();
        drop(orphan);
        assert_eq!(checkpoint_files(&state), 2);
        drop(state);

        let state = SledState::open(&db, 1, &group_dir).unwrap();
        assert_eq!(checkpoint_files(&state), 1, "the orphan is removed on open");
        let path = checkpoint_file(&state);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), committed);
        let loaded = state.load().unwrap();
        assert_eq!(loaded.records, vec![(b"hA".to_vec(), b"one".to_vec())]);
        state
            .write(vec![rec(b"hD", b"four")], applied, &membership)
            .unwrap();
        let loaded = state.load().unwrap();
        assert_eq!(
            loaded.records,
            vec![
                (b"hA".to_vec(), b"one".to_vec()),
                (b"hD".to_vec(), b"four".to_vec())
            ]
        );
        drop(state);

        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(committed).unwrap();
        let err = SledState::open(&db, 1, &group_dir).err().unwrap();
        assert!(err.to_string().contains("were committed"), "{err}");
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

    /// The nice value of this process's threads named `name` (Linux: field 19 of
    /// `/proc/self/task/<tid>/stat`).
    #[cfg(target_os = "linux")]
    fn nice_of_threads(name: &str) -> Vec<i64> {
        let mut nice = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let path = task.unwrap().path();
            let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
                continue;
            };
            if comm.trim() != name {
                continue;
            }
            let stat = std::fs::read_to_string(path.join("stat")).unwrap();
            // Fields after the command name, which is in parentheses: state is field 3.
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            nice.push(rest.split(' ').nth(16).unwrap().parse().unwrap());
        }
        nice
    }

    /// A sled-backed store (group 1) that checkpoints after every entry and every `every_ms`.
    fn sled_store_checkpointing_every(
        every_ms: u64,
    ) -> (tempfile::TempDir, Arc<SledState>, StateMachineStore) {
        let (dir, db) = temp_db();
        let disk = Arc::new(SledState::open(&db, 1, &dir.path().join("g1")).unwrap());
        let policy = CheckpointPolicy {
            every_entries: 1,
            every_ms,
        };
        let (store, _) =
            StateMachineStore::open(disk.clone(), policy, GroupMetrics::new(1, 1)).unwrap();
        (dir, disk, store)
    }

    /// A checkpoint thread runs below the threads a hold waits on.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_checkpoint_thread_runs_at_a_lower_priority() {
        let (_dir, _disk, store) = sled_store_checkpointing_every(10);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let own = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        let lowered = i64::from(checkpoint_nice(own));
        assert!(lowered > i64::from(own) || own == 19);
        let nice = loop {
            let nice = nice_of_threads("sm-checkpoint");
            if nice.contains(&lowered) || std::time::Instant::now() > deadline {
                break nice;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(
            nice.contains(&lowered),
            "checkpoint threads' nice values: {nice:?}, this thread's {own}"
        );
        drop(store);
    }

    #[test]
    fn a_checkpoint_thread_keeps_its_phase() {
        let every = Duration::from_millis(200);
        let start = Instant::now();
        let due = start + Duration::from_millis(70);
        let next = |now: Duration| next_due(due, every, start + now);
        // Woken early by a count: the timed checkpoint stays where it was.
        assert_eq!(next(Duration::from_millis(10)), Some(due));
        // On time, or a little late: the next slot of the grid.
        assert_eq!(next(Duration::from_millis(70)), Some(due + every));
        assert_eq!(next(Duration::from_millis(75)), Some(due + every));
        // A checkpoint that took longer than the interval skips the slots it missed.
        assert_eq!(next(Duration::from_millis(520)), Some(due + every * 3));
        assert_eq!(next(Duration::from_millis(270)), Some(due + every * 2));
        // An interval past what an `Instant` holds (on macOS, where an `Instant` counts
        // nanoseconds in a u64, `--checkpoint-every-ms` of 600 years): no timed one.
        assert_eq!(next_due(due, Duration::MAX, due), None);
    }

    /// With the longest interval the setting takes, the thread still checkpoints on counts.
    #[test]
    fn an_interval_of_ages_leaves_checkpoints_to_counts() {
        let (_dir, disk, mut store) = sled_store_checkpointing_every(u64::MAX);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let entry = Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), 1),
            payload: EntryPayload::Blank,
        };
        rt.block_on(store.apply([entry])).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while disk.load().unwrap().applied.map(|l| l.index) != Some(1) {
            assert!(
                Instant::now() < deadline,
                "the count's checkpoint never landed"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(store);
    }
}
