//! The Raft log as openraft sees it: durable before acknowledged, readable at once.
//!
//! The durable form is [`super::log_file`]'s. A dedicated writer thread per group
//! serializes all log I/O and syncs once for everything queued (group commit). Appended
//! entries are readable at once, as openraft asks, from a memory cache; once written, the
//! newest of them stay there up to a byte budget (what replication to caught-up followers
//! and the apply loop read) and older ones are dropped from memory and read back from the
//! disk when a lagging follower needs them. So a long log kept behind each snapshot, for
//! followers that were down a while, costs disk and not memory, and a large registration
//! entry leaves memory once it is written.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader, StorageIOError};

use super::log_file::{lock, LogDisk, LogRead};
use crate::batch::drain_ready;
use crate::typ::{Entry, LogId, StorageError, TypeConfig, Vote};

/// Most queued log operations folded into one fsync.
const MAX_JOBS_PER_SYNC: usize = 256;
/// Most entries decoded on open for the cache (the byte budget then applies).
pub const LOAD_TAIL_ENTRIES: usize = 4_096;

/// What openraft reads without touching the disk: the vote, the bounds of the log, every
/// entry not yet written and the newest written ones up to `budget_bytes` (sizes as on
/// disk). Entries in `(purged, evicted_upto]` that are not here are on the disk.
struct LogCache {
    vote: Option<Vote>,
    purged: Option<LogId>,
    last: Option<LogId>,
    entries: BTreeMap<u64, Entry>,
    /// Written entries still in `entries`, oldest first, with their sizes.
    written: VecDeque<(u64, u64)>,
    written_bytes: u64,
    evicted_upto: Option<u64>,
    budget_bytes: u64,
}

impl LogCache {
    /// Marks entries as written (those still here under the same id: a truncation may have
    /// replaced them meanwhile) and drops the oldest written ones over the budget.
    fn written(&mut self, written: &[(LogId, u64)]) {
        for &(id, bytes) in written {
            let here = self.entries.get(&id.index).map(|e| e.log_id) == Some(id);
            let newer = self.written.back().is_none_or(|&(i, _)| i < id.index);
            if here && newer {
                self.written.push_back((id.index, bytes));
                self.written_bytes += bytes;
            }
        }
        while self.written_bytes > self.budget_bytes {
            let Some((index, bytes)) = self.written.pop_front() else {
                break;
            };
            self.written_bytes -= bytes;
            self.entries.remove(&index);
            self.evicted_upto = self.evicted_upto.max(Some(index));
        }
    }

    /// Keeps only the written entries `keep` accepts.
    fn retain_written(&mut self, keep: impl Fn(u64) -> bool) {
        self.written.retain(|&(i, _)| keep(i));
        self.written_bytes = self.written.iter().map(|&(_, b)| b).sum();
    }

    fn append(&mut self, entries: &[Entry]) {
        for e in entries {
            self.entries.insert(e.log_id.index, e.clone());
        }
        if let Some(last) = entries.last() {
            self.last = Some(last.log_id);
        }
    }

    /// Drops the entries from `index` on. Returns the index of the entry now last when only
    /// the disk has it (the caller reads its id and sets `last`).
    fn truncate(&mut self, index: u64) -> Option<u64> {
        let previous = index.checked_sub(1);
        self.entries.split_off(&index);
        self.retain_written(|i| i < index);
        if self.evicted_upto >= Some(index) {
            self.evicted_upto = previous;
        }
        let purged = self.purged;
        match previous.filter(|&p| purged.is_none_or(|q| q.index < p)) {
            // Nothing is left after the purge: the log ends at the purge.
            None => {
                self.last = None;
                None
            }
            Some(p) => {
                self.last = self.entries.get(&p).map(|e| e.log_id);
                self.last.is_none().then_some(p)
            }
        }
    }

    fn purge(&mut self, upto: LogId) {
        self.entries = self.entries.split_off(&(upto.index + 1));
        self.retain_written(|i| i > upto.index);
        self.purged = Some(upto);
    }

    /// The last log id, the purge's when no entry is left after it.
    fn last(&self) -> Option<LogId> {
        self.last.max(self.purged)
    }
}

type Done = tokio::sync::oneshot::Sender<io::Result<()>>;

enum Job {
    Append(Vec<Entry>, LogFlushed<TypeConfig>),
    Truncate(u64, Done),
    Purge(LogId, Done),
    Vote(Vote, Done),
}

/// One group's log as a writer thread sees it.
struct GroupIo {
    disk: Mutex<Box<dyn LogDisk>>,
    cache: Arc<Mutex<LogCache>>,
    fsync_seconds: metrics::Histogram,
}

/// A writer thread: it runs the log jobs of the groups sent to it in order and syncs once
/// per drained batch before acknowledging any (group commit). Groups whose disks share a
/// file (one log per node, [`super::node_log`]) share one writer, so a batch holding
/// several groups' appends costs one sync. The thread exits when every clone is dropped.
#[derive(Clone)]
pub struct LogWriter(mpsc::Sender<(Arc<GroupIo>, Job)>);

impl LogWriter {
    pub fn start(name: &str) -> io::Result<LogWriter> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("log-{name}"))
            .spawn(move || writer_loop(rx))?;
        Ok(LogWriter(tx))
    }
}

enum LogIo {
    Inline(Box<dyn LogDisk>, metrics::Histogram),
    Thread(LogWriter, Arc<GroupIo>),
}

/// openraft's log storage for one group.
pub struct LogStore {
    reader: LogReader,
    io: Mutex<LogIo>,
}

fn io_err(e: io::Error) -> StorageError {
    StorageIOError::write_logs(&e).into()
}

fn read_err(e: io::Error) -> StorageError {
    StorageIOError::read_logs(&e).into()
}

fn copy_err(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

impl LogStore {
    /// Loads the log from `disk` and has `writer` write it when the disk blocks (a writer of
    /// its own when `None`). Written entries stay in memory up to `cache_bytes`; each
    /// fsync's duration goes to `fsync_seconds`.
    pub fn open(
        mut disk: Box<dyn LogDisk>,
        name: &str,
        cache_bytes: u64,
        fsync_seconds: metrics::Histogram,
        writer: Option<LogWriter>,
    ) -> io::Result<LogStore> {
        let loaded = disk.load(LOAD_TAIL_ENTRIES)?;
        let evicted_upto = match loaded.tail.first() {
            Some((first, _)) => first.log_id.index.checked_sub(1),
            None => loaded.last.map(|l| l.index),
        };
        let mut cache = LogCache {
            vote: loaded.vote,
            purged: loaded.purged,
            last: loaded.last,
            entries: BTreeMap::new(),
            written: VecDeque::new(),
            written_bytes: 0,
            evicted_upto,
            budget_bytes: cache_bytes,
        };
        let written: Vec<(LogId, u64)> = loaded
            .tail
            .iter()
            .map(|(e, bytes)| (e.log_id, *bytes))
            .collect();
        cache.entries = loaded
            .tail
            .into_iter()
            .map(|(e, _)| (e.log_id.index, e))
            .collect();
        cache.written(&written);
        let cache = Arc::new(Mutex::new(cache));
        let reader = disk.reader();
        let io = if disk.blocks() {
            let writer = match writer {
                Some(writer) => writer,
                None => LogWriter::start(name)?,
            };
            let group = Arc::new(GroupIo {
                disk: Mutex::new(disk),
                cache: cache.clone(),
                fsync_seconds,
            });
            LogIo::Thread(writer, group)
        } else {
            LogIo::Inline(disk, fsync_seconds)
        };
        Ok(LogStore {
            reader: LogReader {
                cache,
                disk: reader,
            },
            io: Mutex::new(io),
        })
    }

    fn cache(&self) -> MutexGuard<'_, LogCache> {
        lock(&self.reader.cache)
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
        let mut io = lock(&self.io);
        match &mut *io {
            LogIo::Inline(disk, fsync_seconds) => {
                let mut written = Vec::new();
                let result = run_job(disk.as_mut(), &job, &mut written)
                    .and_then(|()| timed_sync(disk.as_mut(), fsync_seconds));
                if result.is_ok() {
                    self.cache().written(&written);
                }
                complete(job, &result);
            }
            LogIo::Thread(writer, group) => {
                if let Err(mpsc::SendError((_, job))) = writer.0.send((group.clone(), job)) {
                    complete(job, &Err(io::Error::other("log writer stopped")));
                }
            }
        }
    }
}

/// Runs one job; an append adds its entries' ids and sizes to `written`.
fn run_job(disk: &mut dyn LogDisk, job: &Job, written: &mut Vec<(LogId, u64)>) -> io::Result<()> {
    match job {
        Job::Append(entries, _) => {
            let sizes = disk.append(entries)?;
            written.extend(entries.iter().map(|e| e.log_id).zip(sizes));
            Ok(())
        }
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

/// Syncs `disk`, timing the syncs that did something.
fn timed_sync(disk: &mut dyn LogDisk, fsync_seconds: &metrics::Histogram) -> io::Result<()> {
    let started = std::time::Instant::now();
    if disk.sync()? {
        fsync_seconds.record(started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// Entries written, with their sizes on disk.
type Written = Vec<(LogId, u64)>;

/// Applies queued jobs in order and syncs each group's disk once per drained batch (a
/// disk shared by several groups once for all) before acknowledging any; then the batch's
/// entries count as written in their groups' caches.
fn writer_loop(rx: mpsc::Receiver<(Arc<GroupIo>, Job)>) {
    // The groups of the batch, each with the entries written for it.
    let mut groups: Vec<(Arc<GroupIo>, Written)> = Vec::new();
    while let Ok(first) = rx.recv() {
        let jobs = drain_ready(first, MAX_JOBS_PER_SYNC, |_| 1, || rx.try_recv().ok());
        let mut result = Ok(());
        groups.clear();
        for (group, job) in &jobs {
            let slot = match groups.iter().position(|(g, _)| Arc::ptr_eq(g, group)) {
                Some(slot) => slot,
                None => {
                    groups.push((group.clone(), Vec::new()));
                    groups.len() - 1
                }
            };
            result = run_job(lock(&group.disk).as_mut(), job, &mut groups[slot].1);
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            for (group, _) in &groups {
                result = timed_sync(lock(&group.disk).as_mut(), &group.fsync_seconds);
                if result.is_err() {
                    break;
                }
            }
        }
        match &result {
            Ok(()) => {
                for (group, written) in &groups {
                    lock(&group.cache).written(written);
                }
            }
            Err(e) => tracing::error!(error = %e, "raft log write failed"),
        }
        for (_, job) in jobs {
            complete(job, &result);
        }
        // After the batch's jobs are answered, so an append never waits on it in the batch
        // it belongs to (a no-op until the zeros ahead run low or a purge frees a segment).
        for (group, _) in &groups {
            if let Err(e) = lock(&group.disk).prepare() {
                // Only an optimization: appends grow the file as they would without it.
                tracing::warn!(error = %e, "readying the raft log for appends");
            }
        }
    }
}

/// Reads entries from the cache and, for older ones, the disk (used by replication tasks).
#[derive(Clone)]
pub struct LogReader {
    cache: Arc<Mutex<LogCache>>,
    disk: Arc<dyn LogRead>,
}

/// `range` as inclusive bounds, or `None` when it is empty.
fn inclusive<RB: RangeBounds<u64>>(range: &RB) -> Option<(u64, u64)> {
    let from = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let to = match range.end_bound() {
        Bound::Included(&e) => e,
        Bound::Excluded(&e) => e.checked_sub(1)?,
        Bound::Unbounded => u64::MAX,
    };
    (from <= to).then_some((from, to))
}

impl LogReader {
    /// The entries of `range` the log holds: the newest from memory, older ones from the
    /// disk (off the async threads when reading it blocks).
    async fn read<RB: RangeBounds<u64>>(&self, range: RB) -> io::Result<Vec<Entry>> {
        let Some((from, to)) = inclusive(&range) else {
            return Ok(Vec::new());
        };
        let (on_disk, in_memory) = {
            let cache = lock(&self.cache);
            let from = from.max(cache.purged.map_or(0, |p| p.index + 1));
            if from > to {
                return Ok(Vec::new());
            }
            let on_disk = cache
                .evicted_upto
                .filter(|&upto| upto >= from)
                .map(|upto| (from, upto.min(to)));
            let memory_from = on_disk.map_or(from, |(_, upto)| upto + 1);
            let in_memory: Vec<Entry> = if memory_from <= to {
                cache
                    .entries
                    .range(memory_from..=to)
                    .map(|(_, e)| e.clone())
                    .collect()
            } else {
                Vec::new()
            };
            (on_disk, in_memory)
        };
        match on_disk {
            Some((from, to)) => {
                let mut entries = self.read_disk(from, to).await?;
                entries.extend(in_memory);
                Ok(entries)
            }
            None => Ok(in_memory),
        }
    }

    async fn read_disk(&self, from: u64, to: u64) -> io::Result<Vec<Entry>> {
        if !self.disk.blocks() {
            return self.disk.read(from, to);
        }
        let disk = self.disk.clone();
        tokio::task::spawn_blocking(move || disk.read(from, to))
            .await
            .map_err(|e| io::Error::other(e.to_string()))?
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.read(range).await.map_err(read_err)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.reader.read(range).await.map_err(read_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let cache = self.cache();
        Ok(LogState {
            last_purged_log_id: cache.purged,
            last_log_id: cache.last(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.reader.clone()
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
        self.cache().append(&entries);
        self.submit(Job::Append(entries, callback));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let index = log_id.index;
        let previous_on_disk = self.cache().truncate(index);
        if let Some(p) = previous_on_disk {
            // The entry before the cut was dropped from memory; the disk still has it (the
            // truncation queued below cuts after it).
            let entry = self.reader.read_disk(p, p).await.map_err(read_err)?;
            self.cache().last = entry.last().map(|e| e.log_id);
        }
        self.run(|done| Job::Truncate(index, done)).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.cache().purge(log_id);
        self.run(|done| Job::Purge(log_id, done)).await
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};
    use proptest::prelude::*;

    use super::*;
    use crate::storage::log_file::MemLog;
    use crate::types::Proposal;

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(Proposal {
                now_ms: index,
                requests: Default::default(),
            }),
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Append this many entries in the next term.
        Append(u64),
        /// The writer catches up: pending appends are written and marked.
        Write,
        /// Truncate this many entries off the end (a conflicting leader).
        Truncate(u64),
        /// Purge up to this fraction (in 1/8) of the written log.
        Purge(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u64..12).prop_map(Op::Append),
            Just(Op::Write),
            (1u64..8).prop_map(Op::Truncate),
            (0u64..8).prop_map(Op::Purge),
        ]
    }

    /// A cache over a MemLog driven the way `LogStore` and its writer drive them, beside a
    /// plain map of what the log holds.
    struct Harness {
        cache: LogCache,
        disk: MemLog,
        pending: Vec<Entry>,
        model: BTreeMap<u64, Entry>,
        purged: Option<LogId>,
        term: u64,
    }

    impl Harness {
        fn new(budget_bytes: u64) -> Harness {
            Harness {
                cache: LogCache {
                    vote: None,
                    purged: None,
                    last: None,
                    entries: BTreeMap::new(),
                    written: VecDeque::new(),
                    written_bytes: 0,
                    evicted_upto: None,
                    budget_bytes,
                },
                disk: MemLog::default(),
                pending: Vec::new(),
                model: BTreeMap::new(),
                purged: None,
                term: 1,
            }
        }

        fn write_pending(&mut self) -> Vec<(LogId, u64)> {
            let pending = std::mem::take(&mut self.pending);
            let sizes = self.disk.append(&pending).unwrap();
            pending.iter().map(|e| e.log_id).zip(sizes).collect()
        }

        fn next_index(&self) -> u64 {
            self.model
                .keys()
                .next_back()
                .map(|i| i + 1)
                .or(self.purged.map(|p| p.index + 1))
                .unwrap_or(1)
        }

        fn run(&mut self, op: Op) {
            match op {
                Op::Append(n) => {
                    let from = self.next_index();
                    let entries: Vec<Entry> =
                        (from..from + n).map(|i| entry(self.term, i)).collect();
                    self.cache.append(&entries);
                    for e in &entries {
                        self.model.insert(e.log_id.index, e.clone());
                    }
                    self.pending.extend(entries);
                }
                Op::Write => {
                    let written = self.write_pending();
                    self.cache.written(&written);
                }
                Op::Truncate(n) => {
                    let floor = self.purged.map_or(1, |p| p.index + 1);
                    let index = self.next_index().saturating_sub(n).max(floor);
                    if let Some(p) = self.cache.truncate(index) {
                        let found = self.disk.reader().read(p, p).unwrap();
                        self.cache.last = found.last().map(|e| e.log_id);
                    }
                    // The writer runs the appends queued before the truncation, then it;
                    // their marks arrive after, for entries the cache no longer has.
                    let written = self.write_pending();
                    self.disk.truncate_from(index).unwrap();
                    self.cache.written(&written);
                    self.model.split_off(&index);
                    self.term += 1;
                }
                Op::Purge(eighths) => {
                    let written: Vec<u64> = self.cache.written.iter().map(|&(i, _)| i).collect();
                    let last_written = written
                        .last()
                        .copied()
                        .or(self.cache.evicted_upto)
                        .filter(|&i| self.model.contains_key(&i));
                    let Some(last_written) = last_written else {
                        return;
                    };
                    let floor = self.purged.map_or(0, |p| p.index);
                    let upto = floor + (last_written - floor) * eighths / 8;
                    let Some(e) = self.model.get(&upto) else {
                        return;
                    };
                    let upto = e.log_id;
                    self.cache.purge(upto);
                    let written = self.write_pending();
                    self.disk.purge(upto).unwrap();
                    self.cache.written(&written);
                    self.model = self.model.split_off(&(upto.index + 1));
                    self.purged = Some(upto);
                }
            }
        }

        fn check(&self) {
            let reader = LogReader {
                cache: Arc::new(Mutex::new(self.clone_cache())),
                disk: self.disk.reader(),
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let end = self.next_index() + 2;
            for from in 0..end {
                for to in from..end {
                    let got = runtime.block_on(reader.read(from..=to)).unwrap();
                    let want: Vec<Entry> = self
                        .model
                        .range(from..=to)
                        .map(|(_, e)| e.clone())
                        .collect();
                    assert_eq!(got, want, "read {from}..={to}");
                }
            }
            let last = self.model.values().next_back().map(|e| e.log_id);
            assert_eq!(self.cache.last(), last.max(self.purged));
            assert!(self.cache.written_bytes <= self.cache.budget_bytes);
        }

        fn clone_cache(&self) -> LogCache {
            LogCache {
                vote: self.cache.vote,
                purged: self.cache.purged,
                last: self.cache.last,
                entries: self.cache.entries.clone(),
                written: self.cache.written.clone(),
                written_bytes: self.cache.written_bytes,
                evicted_upto: self.cache.evicted_upto,
                budget_bytes: self.cache.budget_bytes,
            }
        }
    }

    proptest! {
        /// Whatever the budget drops from memory, a read of any range returns exactly the
        /// entries the log holds (from memory, the disk, or both), after appends, writes,
        /// truncations by a new leader and purges, in any order.
        #[test]
        fn reads_return_the_log_whatever_the_cache_dropped(
            budget_entries in 0u64..6,
            ops in proptest::collection::vec(op(), 1..40),
        ) {
            let size = record_size_of_one();
            let mut h = Harness::new(budget_entries * size);
            for op in ops {
                h.run(op);
                h.check();
            }
        }
    }

    fn record_size_of_one() -> u64 {
        MemLog::default().append(&[entry(1, 1)]).unwrap()[0]
    }

    #[test]
    fn a_budget_of_nothing_keeps_only_unwritten_entries_in_memory() {
        let mut h = Harness::new(0);
        h.run(Op::Append(5));
        assert_eq!(h.cache.entries.len(), 5);
        h.run(Op::Write);
        assert!(h.cache.entries.is_empty());
        assert_eq!(h.cache.evicted_upto, Some(5));
        h.run(Op::Append(2));
        assert_eq!(h.cache.entries.len(), 2);
        h.check();
    }
}
