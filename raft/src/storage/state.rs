//! The state machine's storage: records in sled (or memory), snapshots, and openraft's
//! `RaftStateMachine` over the shared in-memory [`Machine`].
//!
//! After applying a batch of entries the touched records and the applied log id go to sled in
//! one atomic batch (sled's own crash recovery keeps batches whole). sled is not fsync'd per
//! batch: the Raft log is, and on restart openraft re-applies whatever sled lost. Snapshots are
//! written durably (atomic file replace) before the log is purged, and a restart takes
//! whichever of sled and the snapshot is newer, so a purged prefix is never needed again.

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};

use crate::feed::{Feed, FEED_CAPACITY_CHANGES};
use crate::machine::{decode, encode, Machine, Record};
use crate::storage::log::write_file_atomic;
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
    fn write(&self, changes: Vec<RecordChange>, applied: Option<LogId>, membership: &StoredMembership) -> io::Result<()>;
    /// Replaces the whole state (snapshot install) in one atomic batch.
    fn replace(&self, persisted: &Persisted) -> io::Result<()>;
    /// Durable on return.
    fn save_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> io::Result<()>;
    fn load_snapshot(&self) -> io::Result<Option<(SnapshotMeta, Vec<u8>)>>;
    /// Whether calls block on I/O (and go to a blocking thread) or are instant (run inline).
    fn blocks(&self) -> bool;
}

/// Runs a disk call off the async threads when the disk blocks.
async fn off_thread<T: Send + 'static>(
    disk: &Arc<dyn StateDisk>,
    f: impl FnOnce(&dyn StateDisk) -> io::Result<T> + Send + 'static,
) -> Result<T, StorageError> {
    if !disk.blocks() {
        return f(disk.as_ref()).map_err(snapshot_err);
    }
    let disk = disk.clone();
    tokio::task::spawn_blocking(move || f(disk.as_ref()))
        .await
        .map_err(|e| snapshot_err(io::Error::other(e.to_string())))?
        .map_err(snapshot_err)
}

fn invalid(e: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// State in one sled tree per group, snapshot in the group's directory.
pub struct SledState {
    tree: sled::Tree,
    dir: PathBuf,
}

impl SledState {
    pub fn open(db: &sled::Db, group: u64, dir: &Path) -> io::Result<SledState> {
        std::fs::create_dir_all(dir)?;
        let tree = db.open_tree(format!("sm/{group}")).map_err(io::Error::other)?;
        Ok(SledState { tree, dir: dir.to_owned() })
    }
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
        Ok(persisted)
    }

    fn write(&self, changes: Vec<RecordChange>, applied: Option<LogId>, membership: &StoredMembership) -> io::Result<()> {
        let mut batch = sled::Batch::default();
        for (key, value) in changes {
            match value {
                Some(v) => batch.insert(key, v),
                None => batch.remove(key),
            }
        }
        batch.insert(APPLIED_KEY, encode(&applied));
        batch.insert(MEMBERSHIP_KEY, encode(membership));
        self.tree.apply_batch(batch).map_err(io::Error::other)
    }

    fn replace(&self, persisted: &Persisted) -> io::Result<()> {
        let mut batch = sled::Batch::default();
        for key in self.tree.iter().keys() {
            batch.remove(key.map_err(io::Error::other)?);
        }
        for (key, value) in &persisted.records {
            batch.insert(key.as_slice(), value.as_slice());
        }
        batch.insert(APPLIED_KEY, encode(&persisted.applied));
        batch.insert(MEMBERSHIP_KEY, encode(&persisted.membership));
        self.tree.apply_batch(batch).map_err(io::Error::other)
    }

    fn save_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> io::Result<()> {
        let file = SnapshotFile { meta: meta.clone(), data: data.to_vec() };
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
    fn write(&self, changes: Vec<RecordChange>, applied: Option<LogId>, membership: &StoredMembership) -> io::Result<()> {
        let mut d = self.data();
        let mut records: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = std::mem::take(&mut d.persisted.records).into_iter().collect();
        for (key, value) in changes {
            match value {
                Some(v) => records.insert(key, v),
                None => records.remove(&key),
            };
        }
        d.persisted = Persisted { applied, membership: membership.clone(), records: records.into_iter().collect() };
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

fn sm_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(&e).into()
}

fn snapshot_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_snapshot(None, &e).into()
}

/// openraft's state machine for one group.
pub struct StateMachineStore {
    shared: Arc<GroupShared>,
    disk: Arc<dyn StateDisk>,
}

impl StateMachineStore {
    /// Loads the newest of the persisted state and the snapshot.
    pub fn open(disk: Arc<dyn StateDisk>) -> io::Result<(StateMachineStore, Arc<GroupShared>)> {
        let mut persisted = disk.load()?;
        if let Some((meta, data)) = disk.load_snapshot()? {
            if meta.last_log_id > persisted.applied {
                let records: Vec<Record> = decode(&data).map_err(invalid)?;
                persisted = Persisted { applied: meta.last_log_id, membership: meta.last_membership.clone(), records };
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
        let shared = Arc::new(GroupShared { replica: RwLock::new(replica), applied_tx });
        Ok((StateMachineStore { shared: shared.clone(), disk }, shared))
    }
}

/// Builds a snapshot from a copy of the records taken under the read lock.
pub struct SnapshotBuilder {
    shared: Arc<GroupShared>,
    disk: Arc<dyn StateDisk>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (records, applied, membership) = {
            let replica = self.shared.read();
            (replica.machine.records(), replica.applied, replica.membership.clone())
        };
        let data = encode(&records);
        let snapshot_id = match applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index),
            None => "empty".to_owned(),
        };
        let meta = SnapshotMeta { last_log_id: applied, last_membership: membership, snapshot_id };
        let (meta_w, data_w) = (meta.clone(), data.clone());
        off_thread(&self.disk, move |disk| disk.save_snapshot(&meta_w, &data_w)).await?;
        tracing::info!(snapshot = %meta.snapshot_id, bytes = data.len(), "snapshot built");
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
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
        let applied_index = {
            let mut replica = self.shared.write();
            for entry in entries {
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
            let dirty = replica.machine.take_dirty();
            self.disk.write(dirty, replica.applied, &replica.membership).map_err(sm_err)?;
            replica.applied.map(|l| l.index).unwrap_or(0)
        };
        self.shared.applied_tx.send_replace(applied_index);
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { shared: self.shared.clone(), disk: self.disk.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Box<Cursor<Vec<u8>>>) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let records: Vec<Record> = decode(&data).map_err(|e| snapshot_err(invalid(e)))?;
        let machine = Machine::from_records(records.clone()).map_err(snapshot_err)?;
        let persisted = Persisted { applied: meta.last_log_id, membership: meta.last_membership.clone(), records };
        let meta_w = meta.clone();
        off_thread(&self.disk, move |disk| disk.save_snapshot(&meta_w, &data).and_then(|_| disk.replace(&persisted)))
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
        tracing::info!(snapshot = %meta.snapshot_id, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let loaded = off_thread(&self.disk, |disk| disk.load_snapshot()).await?;
        Ok(loaded.map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}
