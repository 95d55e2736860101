//! The state machine's storage: records in sled (or memory), snapshots, and openraft's
//! `RaftStateMachine` over the shared in-memory [`Machine`].
//!
//! After applying a batch of entries the touched records and the applied log id go to sled in
//! one atomic batch (sled's own crash recovery keeps batches whole). The batch is taken under
//! the replica's write lock and written after releasing it, on a blocking thread; apply
//! returns (and openraft answers clients, and starts the next apply) only once it is written,
//! so batches reach sled in log order. sled is not fsync'd per batch: the Raft log is, and on
//! restart openraft re-applies whatever sled lost. Snapshots are
//! written durably (atomic file replace) before the log is purged, and a restart takes
//! whichever of sled and the snapshot is newer, so a purged prefix is never needed again.

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

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

/// State in sled, snapshot in the group's directory. Two trees per group: event seat layouts
/// (large, written once per registration chunk) apart from the hot records (holds, bookings,
/// request ids, the group clock), so that a write of a small hot record never makes sled
/// rewrite a node holding megabytes of layout. A write touching both uses a sled transaction
/// over the two trees, so every apply is still one atomic change with its applied log id.
pub struct SledState {
    tree: sled::Tree,
    layouts: sled::Tree,
    dir: PathBuf,
}

impl SledState {
    pub fn open(db: &sled::Db, group: u64, dir: &Path) -> io::Result<SledState> {
        std::fs::create_dir_all(dir)?;
        let tree = db
            .open_tree(format!("sm/{group}"))
            .map_err(io::Error::other)?;
        let layouts = db
            .open_tree(format!("layouts/{group}"))
            .map_err(io::Error::other)?;
        Ok(SledState {
            tree,
            layouts,
            dir: dir.to_owned(),
        })
    }

    /// Writes `main` (records + applied position) and `layouts` atomically; `clear` first
    /// empties both trees.
    fn transact(
        &self,
        clear: bool,
        main: &[(Vec<u8>, Option<Vec<u8>>)],
        layouts: &[(Vec<u8>, Option<Vec<u8>>)],
    ) -> io::Result<()> {
        use sled::Transactional;
        let old_keys = |tree: &sled::Tree| -> io::Result<Vec<sled::IVec>> {
            if !clear {
                return Ok(Vec::new());
            }
            tree.iter()
                .keys()
                .collect::<Result<_, _>>()
                .map_err(io::Error::other)
        };
        let (old_main, old_layouts) = (old_keys(&self.tree)?, old_keys(&self.layouts)?);
        (&self.tree, &self.layouts)
            .transaction(|(t, l)| {
                for (tree, old, changes) in [(t, &old_main, main), (l, &old_layouts, layouts)] {
                    for key in old {
                        tree.remove(key)?;
                    }
                    for (key, value) in changes {
                        match value {
                            Some(v) => tree.insert(key.as_slice(), v.as_slice())?,
                            None => tree.remove(key.as_slice())?,
                        };
                    }
                }
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| io::Error::other(format!("{e:?}")))
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
        for item in self.tree.iter() {
            let (key, value) = item.map_err(io::Error::other)?;
            if &*key == APPLIED_KEY {
                persisted.applied = decode(&value).map_err(invalid)?;
            } else if &*key == MEMBERSHIP_KEY {
                persisted.membership = decode(&value).map_err(invalid)?;
            } else {
                persisted.records.push((key.to_vec(), value.to_vec()));
            }
        }
        for item in self.layouts.iter() {
            let (key, value) = item.map_err(io::Error::other)?;
            persisted.records.push((key.to_vec(), value.to_vec()));
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
        main.extend(position(applied, membership));
        if !layouts.is_empty() {
            return self.transact(false, &main, &layouts);
        }
        let mut batch = sled::Batch::default();
        for (key, value) in main {
            match value {
                Some(v) => batch.insert(key, v),
                None => batch.remove(key),
            }
        }
        self.tree.apply_batch(batch).map_err(io::Error::other)
    }

    fn replace(&self, persisted: &Persisted) -> io::Result<()> {
        let (layouts, mut main): (Vec<RecordChange>, Vec<RecordChange>) = persisted
            .records
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .partition(|(k, _)| is_layout_key(k));
        main.extend(position(persisted.applied, &persisted.membership));
        self.transact(true, &main, &layouts)
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
    metrics: GroupMetrics,
}

impl StateMachineStore {
    /// Loads the newest of the persisted state and the snapshot; counts applied entries and
    /// snapshots in `metrics`.
    pub fn open(
        disk: Arc<dyn StateDisk>,
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
        };
        let (applied_tx, _) = tokio::sync::watch::channel(applied_index);
        let shared = Arc::new(GroupShared {
            replica: RwLock::new(replica),
            applied_tx,
        });
        Ok((
            StateMachineStore {
                shared: shared.clone(),
                disk,
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
        // Apply under the write lock; take what changed; write it after releasing the lock.
        let (dirty, applied, membership) = {
            let mut replica = self.shared.write();
            for entry in entries {
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
            (
                replica.machine.take_dirty(),
                replica.applied,
                replica.membership.clone(),
            )
        };
        off_thread(&self.disk, sm_err, move |disk| {
            disk.write(dirty, applied, &membership)
        })
        .await?;
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
        off_thread(&self.disk, snapshot_err, move |disk| {
            disk.save_snapshot(&meta_w, &data)
                .and_then(|_| disk.replace(&persisted))
        })
        .await?;
        let applied_index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        {
            let mut replica = self.shared.write();
            replica.machine = machine;
            replica.applied = meta.last_log_id;
            replica.membership = meta.last_membership.clone();
            replica.feed.reset(applied_index);
        }
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
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(dir.path().join("db"))
            .temporary(true)
            .open()
            .unwrap();
        let state = SledState::open(&db, 1, &dir.path().join("g1")).unwrap();
        let membership = StoredMembership::default();
        let applied = Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), 7));
        state
            .write(
                vec![
                    rec(b"eEV", b"layout"),
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
        assert_eq!(state.layouts.len(), 1);
        let loaded = state.load().unwrap();
        assert_eq!(loaded.applied, applied);
        let keys: Vec<&[u8]> = loaded.records.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, vec![b"eEV".as_slice(), b"g", b"hH2"]);
        let replacement = Persisted {
            applied: None,
            membership,
            records: vec![(b"eOTHER".to_vec(), b"x".to_vec())],
        };
        state.replace(&replacement).unwrap();
        let loaded = state.load().unwrap();
        assert_eq!(loaded.records, replacement.records);
        assert_eq!(loaded.applied, None);
    }
}
