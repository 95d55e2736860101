//! The Raft log and vote: durable before acknowledged.
//!
//! sled's `flush()` is not an fsync (STACK.md), so the log is our own: one append-only file
//! per group of length- and CRC-framed records, `fdatasync`'d before openraft is told an
//! append is done; the vote lives in one of two fixed slots of a small file, each with a
//! sequence number and a CRC, overwritten in turn and `fdatasync`'d (one flush per vote: a
//! voter answers within an election timeout even on a loaded disk; a torn write leaves the
//! other slot, the previous vote, which was never acknowledged past). A dedicated writer thread per group serializes all log I/O and syncs once
//! for everything queued (group commit). [`MemLog`] keeps the same data in memory for the
//! simulator, shared through an `Arc` so it outlives a simulated crash.
//!
//! A little over 600 lines, most of them the unit tests of torn tails, truncation, purge and
//! reopen, which belong beside the file format they test.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogId, RaftLogReader, StorageIOError};
use serde::{Deserialize, Serialize};

use crate::batch::drain_ready;
use crate::codec::{decode, encode};
use crate::typ::{Entry, LogId, StorageError, TypeConfig, Vote};

const LOG_FILE: &str = "raft.log";
/// The vote as earlier builds wrote it (one file replaced atomically); read when there is
/// no slot file yet.
const VOTE_FILE: &str = "vote";
const VOTE_SLOTS_FILE: &str = "vote.slots";
/// One vote slot: sequence number (u64 LE), payload length (u32 LE), CRC32 of both and the
/// payload (u32 LE), the payload (bincode of the vote), zero padding.
const VOTE_SLOT_BYTES: usize = 64;
const VOTE_SLOT_HEADER_BYTES: usize = 16;
/// Record header: payload length (u32 LE) + CRC32 of the payload (u32 LE).
const RECORD_HEADER_BYTES: usize = 8;
/// Largest record accepted when reading back (a larger length means a torn or corrupt tail).
const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;
/// Most queued log operations folded into one fsync.
const MAX_JOBS_PER_SYNC: usize = 256;

/// What a log file holds: a header naming the purged prefix, then entries.
#[derive(Serialize, Deserialize)]
enum LogRecord {
    Purged(LogId),
    Entry(Entry),
}

/// The durable log as found on open.
#[derive(Default)]
pub struct LoadedLog {
    pub vote: Option<Vote>,
    pub purged: Option<LogId>,
    pub entries: Vec<Entry>,
}

/// Where a group's log and vote live. Writes may be buffered until [`LogDisk::sync`].
pub trait LogDisk: Send + 'static {
    fn load(&mut self) -> io::Result<LoadedLog>;
    fn append(&mut self, entries: &[Entry]) -> io::Result<()>;
    /// Removes entries with index >= `index`.
    fn truncate_from(&mut self, index: u64) -> io::Result<()>;
    /// Removes entries up to `upto` inclusive and remembers it as purged. Durable on return.
    fn purge(&mut self, upto: LogId) -> io::Result<()>;
    /// Durable on return.
    fn save_vote(&mut self, vote: &Vote) -> io::Result<()>;
    /// Makes every earlier append and truncate durable.
    fn sync(&mut self) -> io::Result<()>;
    /// Whether I/O blocks (runs on a writer thread) or is instant (runs inline).
    fn blocks(&self) -> bool;
}

/// The on-disk log of one group.
pub struct FileLog {
    dir: PathBuf,
    file: File,
    /// Byte offset of each entry's record.
    offsets: BTreeMap<u64, u64>,
    len: u64,
    /// The vote slot file, once opened, and the sequence number of the last vote written.
    votes: Option<File>,
    vote_seq: u64,
}

/// A vote in its slot form.
fn encode_vote_slot(seq: u64, vote: &Vote) -> io::Result<[u8; VOTE_SLOT_BYTES]> {
    let payload = encode(vote);
    if payload.len() > VOTE_SLOT_BYTES - VOTE_SLOT_HEADER_BYTES {
        return Err(corrupt(format!(
            "a vote encodes to {} bytes, more than a slot holds",
            payload.len()
        )));
    }
    let mut slot = [0u8; VOTE_SLOT_BYTES];
    slot[..8].copy_from_slice(&seq.to_le_bytes());
    slot[8..12].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    slot[VOTE_SLOT_HEADER_BYTES..VOTE_SLOT_HEADER_BYTES + payload.len()].copy_from_slice(&payload);
    let crc = vote_slot_crc(&slot, payload.len());
    slot[12..16].copy_from_slice(&crc.to_le_bytes());
    Ok(slot)
}

fn vote_slot_crc(slot: &[u8], len: usize) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&slot[..12]);
    hasher.update(&slot[VOTE_SLOT_HEADER_BYTES..VOTE_SLOT_HEADER_BYTES + len]);
    hasher.finalize()
}

/// A slot's sequence number and vote, or `None` for a slot never written or torn.
fn decode_vote_slot(slot: &[u8]) -> Option<(u64, Vote)> {
    let seq = u64::from_le_bytes(slot.get(..8)?.try_into().ok()?);
    let len = u32::from_le_bytes(slot.get(8..12)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(slot.get(12..16)?.try_into().ok()?);
    if seq == 0 || len > VOTE_SLOT_BYTES - VOTE_SLOT_HEADER_BYTES || slot.len() < VOTE_SLOT_BYTES {
        return None;
    }
    if vote_slot_crc(slot, len) != crc {
        return None;
    }
    let vote = decode(&slot[VOTE_SLOT_HEADER_BYTES..VOTE_SLOT_HEADER_BYTES + len]).ok()?;
    Some((seq, vote))
}

impl FileLog {
    /// The newest intact vote in the slot file (and its sequence number), if any.
    fn load_vote_slots(&mut self) -> io::Result<Option<(u64, Vote)>> {
        let bytes = match fs::read(self.dir.join(VOTE_SLOTS_FILE)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(bytes
            .chunks(VOTE_SLOT_BYTES)
            .filter_map(decode_vote_slot)
            .max_by_key(|(seq, _)| *seq))
    }

    /// The slot file, created (both slots empty, durable with its directory entry) on first use.
    fn vote_slots(&mut self) -> io::Result<&mut File> {
        if self.votes.is_none() {
            let path = self.dir.join(VOTE_SLOTS_FILE);
            let existed = path.exists();
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            if !existed || file.metadata()?.len() < 2 * VOTE_SLOT_BYTES as u64 {
                file.set_len(2 * VOTE_SLOT_BYTES as u64)?;
                file.sync_all()?;
                File::open(&self.dir)?.sync_all()?;
            }
            self.votes = Some(file);
        }
        Ok(self.votes.as_mut().expect("opened above"))
    }

    pub fn open(dir: &Path) -> io::Result<FileLog> {
        fs::create_dir_all(dir)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOG_FILE))?;
        Ok(FileLog {
            dir: dir.to_owned(),
            file,
            offsets: BTreeMap::new(),
            len: 0,
            votes: None,
            vote_seq: 0,
        })
    }

    fn write_record(&mut self, record: &LogRecord) -> io::Result<()> {
        let payload = encode(record);
        let mut buf = Vec::with_capacity(RECORD_HEADER_BYTES + payload.len());
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        buf.extend_from_slice(&payload);
        self.file.seek(SeekFrom::Start(self.len))?;
        self.file.write_all(&buf)?;
        if let LogRecord::Entry(entry) = record {
            self.offsets.insert(entry.log_id.index, self.len);
        }
        self.len += buf.len() as u64;
        Ok(())
    }
}

fn corrupt(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl LogDisk for FileLog {
    fn load(&mut self) -> io::Result<LoadedLog> {
        let mut loaded = LoadedLog::default();
        match self.load_vote_slots()? {
            Some((seq, vote)) => {
                self.vote_seq = seq;
                loaded.vote = Some(vote);
            }
            None => match fs::read(self.dir.join(VOTE_FILE)) {
                Ok(bytes) => loaded.vote = Some(decode(&bytes).map_err(corrupt)?),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            },
        }
        let mut bytes = Vec::new();
        self.file.seek(SeekFrom::Start(0))?;
        self.file.read_to_end(&mut bytes)?;
        let mut pos = 0usize;
        self.offsets.clear();
        while pos + RECORD_HEADER_BYTES <= bytes.len() {
            let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().expect("4 bytes"));
            let start = pos + RECORD_HEADER_BYTES;
            if len > MAX_RECORD_BYTES
                || start + len > bytes.len()
                || crc32fast::hash(&bytes[start..start + len]) != crc
            {
                break;
            }
            match decode::<LogRecord>(&bytes[start..start + len]).map_err(corrupt)? {
                LogRecord::Purged(id) => loaded.purged = Some(id),
                LogRecord::Entry(entry) => {
                    self.offsets.insert(entry.log_id.index, pos as u64);
                    loaded.entries.push(entry);
                }
            }
            pos = start + len;
        }
        if pos < bytes.len() {
            // A torn tail: the write was cut by a crash before its fsync, so it was never
            // acknowledged. Drop it so later appends start on a record boundary.
            tracing::warn!(dir = %self.dir.display(), dropped_bytes = bytes.len() - pos, "dropping torn log tail");
            self.file.set_len(pos as u64)?;
            self.file.sync_data()?;
        }
        self.len = pos as u64;
        Ok(loaded)
    }

    fn append(&mut self, entries: &[Entry]) -> io::Result<()> {
        for entry in entries {
            self.write_record(&LogRecord::Entry(entry.clone()))?;
        }
        Ok(())
    }

    fn truncate_from(&mut self, index: u64) -> io::Result<()> {
        let Some((&_, &offset)) = self.offsets.range(index..).next() else {
            return Ok(());
        };
        self.file.set_len(offset)?;
        self.len = offset;
        self.offsets.retain(|&i, _| i < index);
        Ok(())
    }

    fn purge(&mut self, upto: LogId) -> io::Result<()> {
        let keep_from = self
            .offsets
            .range(upto.index + 1..)
            .next()
            .map(|(_, &o)| o)
            .unwrap_or(self.len);
        let mut tail = Vec::new();
        self.file.seek(SeekFrom::Start(keep_from))?;
        (&self.file)
            .take(self.len - keep_from)
            .read_to_end(&mut tail)?;
        let tmp_path = self.dir.join(format!("{LOG_FILE}.tmp"));
        let mut rewritten = FileLog {
            dir: self.dir.clone(),
            file: OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp_path)?,
            offsets: BTreeMap::new(),
            len: 0,
            votes: None,
            vote_seq: 0,
        };
        rewritten.write_record(&LogRecord::Purged(upto))?;
        let header_len = rewritten.len;
        rewritten.file.write_all(&tail)?;
        rewritten.file.sync_all()?;
        fs::rename(&tmp_path, self.dir.join(LOG_FILE))?;
        File::open(&self.dir)?.sync_all()?;
        self.offsets = self
            .offsets
            .range(upto.index + 1..)
            .map(|(&i, &o)| (i, o - keep_from + header_len))
            .collect();
        self.len = header_len + tail.len() as u64;
        self.file = rewritten.file;
        Ok(())
    }

    fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        let seq = self.vote_seq + 1;
        let slot = encode_vote_slot(seq, vote)?;
        let file = self.vote_slots()?;
        // Slots alternate, so the previous vote stays intact until this one is durable.
        file.seek(SeekFrom::Start((seq % 2) * VOTE_SLOT_BYTES as u64))?;
        file.write_all(&slot)?;
        file.sync_data()?;
        self.vote_seq = seq;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn blocks(&self) -> bool {
        true
    }
}

/// An in-memory log whose contents survive the `Host` that used it (simulated crashes).
#[derive(Clone, Default)]
pub struct MemLog(Arc<Mutex<MemLogData>>);

#[derive(Default)]
struct MemLogData {
    vote: Option<Vote>,
    purged: Option<LogId>,
    entries: BTreeMap<u64, Entry>,
}

impl MemLog {
    fn data(&self) -> std::sync::MutexGuard<'_, MemLogData> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl LogDisk for MemLog {
    fn load(&mut self) -> io::Result<LoadedLog> {
        let d = self.data();
        Ok(LoadedLog {
            vote: d.vote,
            purged: d.purged,
            entries: d.entries.values().cloned().collect(),
        })
    }
    fn append(&mut self, entries: &[Entry]) -> io::Result<()> {
        let mut d = self.data();
        for e in entries {
            d.entries.insert(e.log_id.index, e.clone());
        }
        Ok(())
    }
    fn truncate_from(&mut self, index: u64) -> io::Result<()> {
        self.data().entries.split_off(&index);
        Ok(())
    }
    fn purge(&mut self, upto: LogId) -> io::Result<()> {
        let mut d = self.data();
        d.entries = d.entries.split_off(&(upto.index + 1));
        d.purged = Some(upto);
        Ok(())
    }
    fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        self.data().vote = Some(*vote);
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn blocks(&self) -> bool {
        false
    }
}

/// Entries readable right after `append` returns (before they are durable), as openraft asks.
#[derive(Default)]
struct LogCache {
    vote: Option<Vote>,
    purged: Option<LogId>,
    entries: BTreeMap<u64, Entry>,
}

type Done = tokio::sync::oneshot::Sender<io::Result<()>>;

enum Job {
    Append(Vec<Entry>, LogFlushed<TypeConfig>),
    Truncate(u64, Done),
    Purge(LogId, Done),
    Vote(Vote, Done),
}

enum LogIo {
    Inline(Box<dyn LogDisk>, metrics::Histogram),
    /// The writer thread's queue; the thread exits when this sender drops.
    Thread(mpsc::Sender<Job>),
}

/// openraft's log storage for one group.
pub struct LogStore {
    cache: Arc<Mutex<LogCache>>,
    io: Mutex<LogIo>,
}

fn io_err(e: io::Error) -> StorageError {
    StorageIOError::write_logs(&e).into()
}

fn copy_err(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

impl LogStore {
    /// Loads the log from `disk` and starts its writer (a thread when the disk blocks).
    /// Each fsync's duration goes to `fsync_seconds`.
    pub fn open(
        mut disk: Box<dyn LogDisk>,
        name: &str,
        fsync_seconds: metrics::Histogram,
    ) -> io::Result<LogStore> {
        let loaded = disk.load()?;
        let cache = LogCache {
            vote: loaded.vote,
            purged: loaded.purged,
            entries: loaded
                .entries
                .into_iter()
                .map(|e| (e.log_id.index, e))
                .collect(),
        };
        let io = if disk.blocks() {
            let (tx, rx) = mpsc::channel();
            std::thread::Builder::new()
                .name(format!("log-{name}"))
                .spawn(move || writer_loop(disk, rx, fsync_seconds))?;
            LogIo::Thread(tx)
        } else {
            LogIo::Inline(disk, fsync_seconds)
        };
        Ok(LogStore {
            cache: Arc::new(Mutex::new(cache)),
            io: Mutex::new(io),
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, LogCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs a job on the writer and waits until it is durable.
    async fn run(&self, make: impl FnOnce(Done) -> Job) -> Result<(), StorageError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = make(tx);
        self.submit(job);
        match rx.await {
            Ok(result) => result.map_err(io_err),
            Err(_) => Err(io_err(io::Error::other("log writer stopped"))),
        }
    }

    fn submit(&self, job: Job) {
        let mut io = self.io.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *io {
            LogIo::Inline(disk, fsync_seconds) => {
                let result = run_job(disk.as_mut(), &job)
                    .and_then(|_| timed_sync(disk.as_mut(), fsync_seconds));
                complete(job, &result);
            }
            LogIo::Thread(tx) => {
                if let Err(mpsc::SendError(job)) = tx.send(job) {
                    complete(job, &Err(io::Error::other("log writer stopped")));
                }
            }
        }
    }
}

fn run_job(disk: &mut dyn LogDisk, job: &Job) -> io::Result<()> {
    match job {
        Job::Append(entries, _) => disk.append(entries),
        Job::Truncate(index, _) => disk.truncate_from(*index),
        Job::Purge(upto, _) => disk.purge(*upto),
        Job::Vote(vote, _) => disk.save_vote(vote),
    }
}

fn complete(job: Job, result: &io::Result<()>) {
    let result = result.as_ref().map(|_| ()).map_err(copy_err);
    match job {
        Job::Append(_, callback) => callback.log_io_completed(result),
        Job::Truncate(_, done) | Job::Purge(_, done) | Job::Vote(_, done) => {
            let _ = done.send(result);
        }
    }
}

fn timed_sync(disk: &mut dyn LogDisk, fsync_seconds: &metrics::Histogram) -> io::Result<()> {
    let started = std::time::Instant::now();
    let result = disk.sync();
    fsync_seconds.record(started.elapsed().as_secs_f64());
    result
}

/// Applies queued jobs in order and syncs once per drained batch before acknowledging any.
fn writer_loop(
    mut disk: Box<dyn LogDisk>,
    rx: mpsc::Receiver<Job>,
    fsync_seconds: metrics::Histogram,
) {
    while let Ok(first) = rx.recv() {
        let jobs = drain_ready(first, MAX_JOBS_PER_SYNC, |_| 1, || rx.try_recv().ok());
        let mut result = Ok(());
        for job in &jobs {
            result = run_job(disk.as_mut(), job);
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            result = timed_sync(disk.as_mut(), &fsync_seconds);
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, "raft log write failed");
        }
        for job in jobs {
            complete(job, &result);
        }
    }
}

/// Reads entries from the shared cache (used by replication tasks).
#[derive(Clone)]
pub struct LogReader {
    cache: Arc<Mutex<LogCache>>,
}

fn read_range<RB: RangeBounds<u64>>(cache: &Mutex<LogCache>, range: RB) -> Vec<Entry> {
    let cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    let start = match range.start_bound() {
        Bound::Included(&s) => Bound::Included(s),
        Bound::Excluded(&s) => Bound::Excluded(s),
        Bound::Unbounded => Bound::Unbounded,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => Bound::Included(e),
        Bound::Excluded(&e) => Bound::Excluded(e),
        Bound::Unbounded => Bound::Unbounded,
    };
    cache
        .entries
        .range((start, end))
        .map(|(_, e)| e.clone())
        .collect()
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(read_range(&self.cache, range))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(read_range(&self.cache, range))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let cache = self.cache();
        let last = cache
            .entries
            .values()
            .next_back()
            .map(|e| *e.get_log_id())
            .or(cache.purged);
        Ok(LogState {
            last_purged_log_id: cache.purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            cache: self.cache.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.run(|done| Job::Vote(vote, done)).await?;
        self.cache().vote = Some(vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.cache().vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        {
            let mut cache = self.cache();
            for e in &entries {
                cache.entries.insert(e.log_id.index, e.clone());
            }
        }
        self.submit(Job::Append(entries, callback));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.cache().entries.split_off(&log_id.index);
        self.run(|done| Job::Truncate(log_id.index, done)).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        {
            let mut cache = self.cache();
            cache.entries = cache.entries.split_off(&(log_id.index + 1));
            cache.purged = Some(log_id);
        }
        self.run(|done| Job::Purge(log_id, done)).await
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::storage::write_file_atomic;

    #[test]
    fn the_newest_vote_comes_back_and_a_torn_slot_falls_back_to_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = FileLog::open(dir.path()).unwrap();
        assert_eq!(log.load().unwrap().vote, None);
        for term in 1..=5 {
            log.save_vote(&Vote::new(term, 2)).unwrap();
        }
        drop(log);
        let mut log = FileLog::open(dir.path()).unwrap();
        assert_eq!(log.load().unwrap().vote, Some(Vote::new(5, 2)));
        // Votes after a reopen keep alternating slots from where the file left off.
        log.save_vote(&Vote::new(6, 3)).unwrap();
        drop(log);
        assert_eq!(
            FileLog::open(dir.path()).unwrap().load().unwrap().vote,
            Some(Vote::new(6, 3))
        );
        // A crash in the middle of writing vote 6's slot: its bytes are garbage.
        let path = dir.path().join(VOTE_SLOTS_FILE);
        let mut bytes = fs::read(&path).unwrap();
        let seq_of_vote_6: usize = 6;
        let newest = (seq_of_vote_6 % 2) * VOTE_SLOT_BYTES;
        bytes[newest + VOTE_SLOT_HEADER_BYTES] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        assert_eq!(
            FileLog::open(dir.path()).unwrap().load().unwrap().vote,
            Some(Vote::new(5, 2))
        );
    }

    #[test]
    fn a_vote_written_by_an_earlier_build_is_read_until_the_first_new_one() {
        let dir = tempfile::tempdir().unwrap();
        write_file_atomic(dir.path(), VOTE_FILE, &encode(&Vote::new(4, 1))).unwrap();
        let mut log = FileLog::open(dir.path()).unwrap();
        assert_eq!(log.load().unwrap().vote, Some(Vote::new(4, 1)));
        log.save_vote(&Vote::new(5, 1)).unwrap();
        drop(log);
        assert_eq!(
            FileLog::open(dir.path()).unwrap().load().unwrap().vote,
            Some(Vote::new(5, 1))
        );
    }
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

    #[test]
    fn file_log_survives_reopen_truncate_and_purge() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = FileLog::open(dir.path()).unwrap();
        assert!(log.load().unwrap().entries.is_empty());
        log.append(&(1..=10).map(entry).collect::<Vec<_>>())
            .unwrap();
        log.truncate_from(8).unwrap();
        log.append(&[entry(8)]).unwrap();
        log.sync().unwrap();
        log.purge(LogId::new(CommittedLeaderId::new(1, 1), 3))
            .unwrap();
        log.append(&[entry(9)]).unwrap();
        log.sync().unwrap();
        log.save_vote(&Vote::new(3, 2)).unwrap();
        drop(log);

        let mut log = FileLog::open(dir.path()).unwrap();
        let loaded = log.load().unwrap();
        let indexes: Vec<u64> = loaded.entries.iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, vec![4, 5, 6, 7, 8, 9]);
        assert_eq!(loaded.purged.map(|p| p.index), Some(3));
        assert_eq!(loaded.vote, Some(Vote::new(3, 2)));
        // Offsets after the rewrite still let truncation cut at the right place.
        log.truncate_from(6).unwrap();
        log.sync().unwrap();
        let loaded = FileLog::open(dir.path()).unwrap().load().unwrap();
        assert_eq!(
            loaded
                .entries
                .iter()
                .map(|e| e.log_id.index)
                .collect::<Vec<_>>(),
            vec![4, 5]
        );
    }

    #[test]
    fn torn_tail_is_dropped_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = FileLog::open(dir.path()).unwrap();
        log.append(&[entry(1), entry(2)]).unwrap();
        log.sync().unwrap();
        drop(log);
        // Simulate a crash mid-write: half a record at the end.
        let path = dir.path().join(LOG_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 5]).unwrap();
        drop(f);
        let mut log = FileLog::open(dir.path()).unwrap();
        assert_eq!(log.load().unwrap().entries.len(), 2);
        log.append(&[entry(3)]).unwrap();
        log.sync().unwrap();
        let loaded = FileLog::open(dir.path()).unwrap().load().unwrap();
        assert_eq!(
            loaded
                .entries
                .iter()
                .map(|e| e.log_id.index)
                .collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
    }
}
