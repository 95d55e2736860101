//! One Raft log per node: the entries of every group a node holds, in one sequence of
//! segment files, so that one `fdatasync` makes a batch durable for all of them.
//!
//! With a log per group, a node holding four groups syncs four files where one would do:
//! on this machine's disk that is 4 × 70–90 µs of CPU and ~3× the wall time of one sync
//! of the same bytes (BENCHMARKS.md, `node/bench/sync_cost.py`). The groups' writers are
//! one thread here ([`super::log::LogWriter`]), and the first group's sync in a batch finds
//! every group's records written; the others find nothing left to do.
//!
//! Records are framed as in [`super::log_file`] (length, CRC, bincode payload) and name
//! their group. Nothing is cut or overwritten: a truncation and a purge are records, and
//! a segment is deleted whole once every entry in it is purged (or its group dropped).
//! Every segment begins with a [`Record::Start`] that states each live group's purge and
//! last index at that point, so a segment is read correctly whichever older segments were
//! deleted: replaying the segments that are left, in order, gives back the log. On open
//! the whole log is replayed once and each group's part waits there for its replica.
//!
//! A group's vote stays in its own two-slot file ([`VoteSlots`]), in its group directory.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::log_file::{
    corrupt, end_segment, lock, read_span, records, zero_ahead, LoadedLog, LogDisk, LogRead,
    Offsets, VoteSlots, MAX_RECORD_BYTES, RECORD_HEADER_BYTES, SEGMENT_BYTES,
};
use super::{create_durably, sync_dir};
use crate::codec::decode;
use crate::typ::{Entry, LogId};
use crate::types::GroupId;

const SEGMENT_PREFIX: &str = "node.log.";
/// A read of several entries of one segment is one `pread` unless other groups' records
/// between two of them span more than this; then it is split.
const MAX_READ_GAP_BYTES: u64 = 64 * 1024;

/// What a segment holds. `E` is an [`Entry`] when read and a reference to one when written
/// (the same bytes).
#[derive(Serialize, Deserialize)]
enum Record<E> {
    /// The first record of every segment: each live group's state when it began.
    Start(Vec<Mark>),
    /// An entry; it replaces any entry of the group at its index or after.
    Entry(GroupId, E),
    /// The group's entries from this index on are gone.
    Truncated(GroupId, u64),
    /// The group's entries up to this one are gone, and it is remembered.
    Purged(GroupId, LogId),
    /// The group has no log on this node any more.
    Dropped(GroupId),
}

/// A group's log at the start of a segment: its purge and the index of its last entry
/// (entries after it, in older segments, are not the log's).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
struct Mark {
    group: GroupId,
    purged: Option<LogId>,
    last: Option<u64>,
}

/// Where an entry's record is: segment, byte offset, length with its header.
#[derive(Clone, Copy, Debug)]
struct Loc {
    at: u64,
    seg: u32,
    len: u32,
}

struct Segment {
    file: Arc<File>,
    /// Bytes written to the file (what readers may read).
    written: u64,
    /// The newest entry index each group has in this segment: the segment goes once every
    /// group's purge has passed its own (or the group is dropped).
    newest: BTreeMap<GroupId, u64>,
}

struct GroupLog {
    /// Which opening of the group this is: a handle of an earlier one (before a drop) is
    /// refused.
    epoch: u64,
    offsets: Offsets<Loc>,
    purged: Option<LogId>,
}

impl GroupLog {
    fn mark(&self, group: GroupId) -> Mark {
        Mark {
            group,
            purged: self.purged,
            last: self.offsets.last_index().or(self.purged.map(|p| p.index)),
        }
    }
}

/// A group's log as the open found it, until its replica loads it.
struct Found {
    purged: Option<LogId>,
    last: Option<LogId>,
    tail: Vec<(Entry, u64)>,
}

struct Inner {
    dir: PathBuf,
    /// The segment appended to.
    seq: u64,
    file: Arc<File>,
    /// Its length, records framed but not yet written included.
    len: u64,
    /// Records framed since the last write, to be written at `pending_at` in one call.
    pending: Vec<u8>,
    pending_at: u64,
    /// The segment's length on disk: written bytes, then zeros written ahead.
    zeroed: u64,
    /// Whether anything was framed since the last sync.
    dirty: bool,
    segments: BTreeMap<u64, Segment>,
    groups: BTreeMap<GroupId, GroupLog>,
    found: BTreeMap<GroupId, Found>,
    next_epoch: u64,
    segment_bytes: u64,
    /// The most bytes of entries copied forward at a roll ([`Inner::relocate_quiet_groups`]).
    relocate_bytes: u64,
    /// A purge or drop was framed since the last sync / is durable: segments may be free.
    freed: bool,
    collect: bool,
}

/// The log of every group on a node (see the module doc). Clones share it.
#[derive(Clone)]
pub struct NodeLog(Arc<Mutex<Inner>>);

fn segment_name(seq: u64) -> String {
    format!("{SEGMENT_PREFIX}{seq}")
}

fn segment_seq(name: &str) -> Option<u64> {
    let seq = name.strip_prefix(SEGMENT_PREFIX)?;
    (!seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()))
        .then(|| seq.parse().ok())
        .flatten()
        .filter(|&s| s > 0)
}

/// A group's log while the open replays the segments.
#[derive(Default)]
struct Replay {
    purged: Option<LogId>,
    entries: BTreeMap<u64, (Loc, LogId)>,
    tail: VecDeque<(Entry, u64)>,
}

impl Replay {
    fn truncate_from(&mut self, index: u64) {
        self.entries.split_off(&index);
        while self
            .tail
            .back()
            .is_some_and(|(e, _)| e.log_id.index >= index)
        {
            self.tail.pop_back();
        }
    }

    fn purge(&mut self, upto: LogId) {
        if self.purged.is_some_and(|p| p >= upto) {
            return;
        }
        self.purged = Some(upto);
        self.entries = self.entries.split_off(&(upto.index + 1));
        self.tail.retain(|(e, _)| e.log_id.index > upto.index);
    }
}

impl NodeLog {
    /// Opens (creating if need be) the log in `dir` and replays it, keeping each group's
    /// newest `tail` entries decoded for its replica's [`LogDisk::load`].
    pub fn open(dir: &Path, tail: usize) -> io::Result<NodeLog> {
        Self::open_with(dir, tail, SEGMENT_BYTES)
    }

    fn open_with(dir: &Path, tail: usize, segment_bytes: u64) -> io::Result<NodeLog> {
        fs::create_dir_all(dir)?;
        let mut seqs: Vec<u64> = Vec::new();
        for dirent in fs::read_dir(dir)? {
            if let Some(seq) = dirent?.file_name().to_str().and_then(segment_seq) {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        let mut segments = BTreeMap::new();
        for &seq in &seqs {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(dir.join(segment_name(seq)))?;
            segments.insert(
                seq,
                Segment {
                    file: Arc::new(file),
                    written: 0,
                    newest: BTreeMap::new(),
                },
            );
        }
        let Some(&last_seq) = seqs.last() else {
            // The log directory's own entry, new or not, before anything in it counts.
            let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
            sync_dir(parent.unwrap_or(Path::new(".")))?;
            let file = create_durably(dir, &segment_name(1))?;
            let mut inner = Inner::new(dir, 1, Arc::new(file), segment_bytes);
            inner.segments.insert(
                1,
                Segment {
                    file: inner.file.clone(),
                    written: 0,
                    newest: BTreeMap::new(),
                },
            );
            inner.frame_start()?;
            return Ok(NodeLog(Arc::new(Mutex::new(inner))));
        };
        let current = segments[&last_seq].file.clone();
        let mut inner = Inner::new(dir, last_seq, current, segment_bytes);
        inner.segments = segments;
        inner.replay(tail)?;
        Ok(NodeLog(Arc::new(Mutex::new(inner))))
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        lock(&self.0)
    }

    /// The groups with a log here.
    pub fn groups(&self) -> Vec<GroupId> {
        self.inner().groups.keys().copied().collect()
    }

    /// `group`'s log, its vote kept in `vote_dir` (created on the first vote).
    pub fn group(&self, group: GroupId, vote_dir: &Path) -> NodeLogGroup {
        let mut inner = self.inner();
        let epoch = match inner.groups.get(&group) {
            Some(g) => g.epoch,
            None => {
                let epoch = inner.take_epoch();
                inner.groups.insert(
                    group,
                    GroupLog {
                        epoch,
                        offsets: Offsets::default(),
                        purged: None,
                    },
                );
                epoch
            }
        };
        NodeLogGroup {
            log: self.0.clone(),
            group,
            epoch,
            votes: VoteSlots::new(vote_dir),
        }
    }

    /// Forgets `group`'s log, durably: its entries stop holding segments, a restart does
    /// not bring them back, and a handle on it fails from now on. A no-op for a group
    /// without a log here.
    pub fn drop_group(&self, group: GroupId) -> io::Result<()> {
        let mut inner = self.inner();
        inner.found.remove(&group);
        if inner.groups.remove(&group).is_none() {
            return Ok(());
        }
        for segment in inner.segments.values_mut() {
            segment.newest.remove(&group);
        }
        inner.frame(&Record::<&Entry>::Dropped(group))?;
        inner.freed = true;
        inner.sync()?;
        inner.prepare()
    }
}

impl Inner {
    fn new(dir: &Path, seq: u64, file: Arc<File>, segment_bytes: u64) -> Inner {
        Inner {
            dir: dir.to_owned(),
            seq,
            file,
            len: 0,
            pending: Vec::new(),
            pending_at: 0,
            zeroed: 0,
            dirty: false,
            segments: BTreeMap::new(),
            groups: BTreeMap::new(),
            found: BTreeMap::new(),
            next_epoch: 1,
            segment_bytes,
            relocate_bytes: segment_bytes / 2,
            freed: false,
            collect: false,
        }
    }

    fn take_epoch(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }

    /// Frames `record` at the end (written out by the next sync); returns where it is. A
    /// record that cannot be framed leaves nothing behind.
    fn frame(&mut self, record: &Record<&Entry>) -> io::Result<Loc> {
        let start = self.pending.len();
        let framed = self.frame_at(start, record);
        if framed.is_err() {
            self.pending.truncate(start);
        }
        framed
    }

    fn frame_at(&mut self, start: usize, record: &Record<&Entry>) -> io::Result<Loc> {
        self.pending.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
        bincode::serde::encode_into_std_write(
            record,
            &mut self.pending,
            bincode::config::standard(),
        )
        .map_err(io::Error::other)?;
        let payload = &self.pending[start + RECORD_HEADER_BYTES..];
        if payload.len() > MAX_RECORD_BYTES {
            // It would read back as a damaged log.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a log record of {} bytes is over the limit", payload.len()),
            ));
        }
        let (len, crc) = (payload.len() as u32, crc32fast::hash(payload));
        self.pending[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.pending[start + 4..start + RECORD_HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
        let bytes = (self.pending.len() - start) as u64;
        let loc = Loc {
            at: self.len,
            seg: u32::try_from(self.seq).map_err(io::Error::other)?,
            len: u32::try_from(bytes).map_err(io::Error::other)?,
        };
        self.len += bytes;
        self.dirty = true;
        Ok(loc)
    }

    /// Frames the segment's start record: every live group's state now.
    fn frame_start(&mut self) -> io::Result<()> {
        let marks: Vec<Mark> = self.groups.iter().map(|(&g, log)| log.mark(g)).collect();
        self.frame(&Record::Start(marks)).map(|_| ())
    }

    /// Writes the framed records out (not yet durable).
    fn write_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file.write_all_at(&self.pending, self.pending_at)?;
        self.pending.clear();
        self.pending_at = self.len;
        self.zeroed = self.zeroed.max(self.len);
        if let Some(segment) = self.segments.get_mut(&self.seq) {
            segment.written = self.len;
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<bool> {
        if !self.dirty {
            return Ok(false);
        }
        self.write_pending()?;
        self.file.sync_data()?;
        self.dirty = false;
        if std::mem::take(&mut self.freed) {
            self.collect = true;
        }
        Ok(true)
    }

    /// Finishes the current segment (durable, ending with its last record) and starts the
    /// next with its start record.
    fn start_segment(&mut self) -> io::Result<()> {
        self.write_pending()?;
        if self.zeroed > self.len {
            self.file.set_len(self.len)?;
        }
        self.file.sync_data()?;
        let seq = self.seq + 1;
        let file = Arc::new(create_durably(&self.dir, &segment_name(seq))?);
        self.segments.insert(
            seq,
            Segment {
                file: file.clone(),
                written: 0,
                newest: BTreeMap::new(),
            },
        );
        self.seq = seq;
        self.file = file;
        self.len = 0;
        self.pending_at = 0;
        self.zeroed = 0;
        self.frame_start()?;
        self.relocate_quiet_groups()
    }

    /// Copies forward, to the end of the log, the whole log of every group that holds the
    /// oldest segment, when together they have at most `relocate_bytes` of entries: a quiet
    /// group (the meta group, an event on sale slowly) purges rarely (a purge keeps 100,000
    /// entries behind each snapshot), and its few entries would otherwise hold every segment
    /// they are spread over. When a busy group holds the segment the copy would cost more
    /// than it frees, and nothing is copied: its purges free the segment in time. The
    /// copies are the same records (an entry record does not depend on where it is), so a
    /// reopen moves the entries and keeps the log; the old copies stop holding their
    /// segments, which go once this is synced. At most `relocate_bytes` per roll: half a
    /// segment copied per segment written, and only while quiet groups hold the oldest.
    fn relocate_quiet_groups(&mut self) -> io::Result<()> {
        let Some((&oldest, segment)) = self.segments.iter().next() else {
            return Ok(());
        };
        if oldest == self.seq {
            return Ok(());
        }
        let holding: Vec<GroupId> = segment
            .newest
            .iter()
            .filter(|&(g, &newest)| {
                self.groups
                    .get(g)
                    .is_some_and(|log| log.purged.is_none_or(|p| p.index < newest))
            })
            .map(|(&g, _)| g)
            .collect();
        let mut bytes = 0u64;
        let mut logs: Vec<(GroupId, u64, u64, Vec<Loc>)> = Vec::new();
        for group in holding {
            let log = &self.groups[&group];
            let (Some(first), Some(last)) = (log.offsets.first_index(), log.offsets.last_index())
            else {
                continue;
            };
            let locs: Vec<Loc> = (first..=last)
                .map(|i| log.offsets.get(i).expect("in range"))
                .collect();
            bytes += locs.iter().map(|l| u64::from(l.len)).sum::<u64>();
            if bytes > self.relocate_bytes {
                return Ok(());
            }
            logs.push((group, first, last, locs));
        }
        for (group, first, last, locs) in logs {
            let mut moved = Offsets::default();
            for (index, loc) in (first..=last).zip(locs) {
                let file = &self.segments[&u64::from(loc.seg)].file;
                let record = read_span(file, loc.at, loc.at + u64::from(loc.len))?;
                if record.len() != loc.len as usize {
                    return Err(corrupt(format!("log record at byte {} cut short", loc.at)));
                }
                moved.push(
                    index,
                    Loc {
                        at: self.len,
                        seg: u32::try_from(self.seq).map_err(io::Error::other)?,
                        len: loc.len,
                    },
                );
                self.pending.extend_from_slice(&record);
                self.len += u64::from(loc.len);
                self.dirty = true;
            }
            self.groups.get_mut(&group).expect("above").offsets = moved;
            for (&seq, segment) in self.segments.iter_mut() {
                if seq == self.seq {
                    segment.newest.insert(group, last);
                } else {
                    segment.newest.remove(&group);
                }
            }
            self.freed = true;
        }
        Ok(())
    }

    /// Zeros ahead of the end (as [`super::log_file::FileLog`] writes them), and the
    /// segments a durable purge or drop freed deleted.
    fn prepare(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.collect) {
            self.delete_free_segments()?;
        }
        if !self.pending.is_empty() {
            return Ok(());
        }
        zero_ahead(&self.file, self.len, &mut self.zeroed)
    }

    fn delete_free_segments(&mut self) -> io::Result<()> {
        let groups = &self.groups;
        let doomed: Vec<u64> = self
            .segments
            .iter()
            .filter(|&(&seq, segment)| {
                seq != self.seq
                    && segment.newest.iter().all(|(g, &newest)| {
                        groups
                            .get(g)
                            .is_none_or(|log| log.purged.is_some_and(|p| p.index >= newest))
                    })
            })
            .map(|(&seq, _)| seq)
            .collect();
        if doomed.is_empty() {
            return Ok(());
        }
        for seq in doomed {
            self.segments.remove(&seq);
            fs::remove_file(self.dir.join(segment_name(seq)))?;
        }
        sync_dir(&self.dir)
    }

    /// The group's log, if `epoch` is its current opening.
    fn group(&mut self, group: GroupId, epoch: u64) -> io::Result<&mut GroupLog> {
        match self.groups.get_mut(&group) {
            Some(log) if log.epoch == epoch => Ok(log),
            _ => Err(io::Error::other(format!(
                "the log of group {group} was dropped from this node"
            ))),
        }
    }

    /// Reads every segment in order and rebuilds each group's log (see the module doc).
    fn replay(&mut self, tail: usize) -> io::Result<()> {
        let mut replays: BTreeMap<GroupId, Replay> = BTreeMap::new();
        let seqs: Vec<u64> = self.segments.keys().copied().collect();
        for seq in seqs {
            let file = self.segments[&seq].file.clone();
            let size = file.metadata()?.len();
            let bytes = read_span(&file, 0, size)?;
            let mut pos = 0u64;
            for payload in records(&bytes) {
                let len = (RECORD_HEADER_BYTES + payload.len()) as u64;
                let record: Record<Entry> = decode(payload).map_err(corrupt)?;
                if pos == 0 && !matches!(record, Record::Start(_)) {
                    return Err(corrupt(format!(
                        "log segment {} does not begin with its start record",
                        self.dir.join(segment_name(seq)).display()
                    )));
                }
                match record {
                    Record::Start(marks) => {
                        let gone: Vec<GroupId> = replays
                            .keys()
                            .filter(|g| !marks.iter().any(|m| m.group == **g))
                            .copied()
                            .collect();
                        for group in gone {
                            // Dropped in a segment deleted since.
                            replays.remove(&group);
                        }
                        for mark in marks {
                            // The mark is the group's state here: before it, the replay
                            // may have seen less (records in segments deleted since), or
                            // an earlier opening of the group (its drop deleted since).
                            let replay = replays.entry(mark.group).or_default();
                            replay.purged = None;
                            if let Some(purged) = mark.purged {
                                replay.purge(purged);
                            }
                            replay.truncate_from(mark.last.map_or(0, |l| l + 1));
                        }
                    }
                    Record::Entry(group, entry) => {
                        let replay = replays.entry(group).or_default();
                        let id = entry.log_id;
                        if replay.purged.is_some_and(|p| p.index >= id.index) {
                            pos += len;
                            continue;
                        }
                        let loc = Loc {
                            at: pos,
                            seg: u32::try_from(seq).map_err(io::Error::other)?,
                            len: len as u32,
                        };
                        if let Some(here) = replay.entries.get_mut(&id.index).filter(|e| e.1 == id)
                        {
                            // The same entry (same index and term: Raft's log matching), copied
                            // forward by a relocation: it moves, and nothing after it goes.
                            here.0 = loc;
                            pos += len;
                            continue;
                        }
                        replay.truncate_from(id.index);
                        replay.entries.insert(id.index, (loc, id));
                        if tail > 0 {
                            replay.tail.push_back((entry, len));
                            if replay.tail.len() > tail {
                                replay.tail.pop_front();
                            }
                        }
                    }
                    Record::Truncated(group, from) => {
                        replays.entry(group).or_default().truncate_from(from);
                    }
                    Record::Purged(group, upto) => replays.entry(group).or_default().purge(upto),
                    Record::Dropped(group) => {
                        replays.remove(&group);
                    }
                }
                pos += len;
            }
            let path = self.dir.join(segment_name(seq));
            end_segment(&path, &bytes, pos, (seq == self.seq).then_some(&*file))?;
            if pos == 0 && seq != self.seq {
                return Err(corrupt(format!(
                    "log segment {} is empty but not the last",
                    path.display()
                )));
            }
            self.segments.get_mut(&seq).expect("listed above").written = pos;
        }
        self.len = self.segments[&self.seq].written;
        self.pending_at = self.len;
        self.zeroed = self.len;
        for (group, replay) in replays {
            let Replay {
                purged,
                entries,
                tail,
            } = replay;
            let mut offsets = Offsets::default();
            let mut expected = purged.map(|p| p.index + 1);
            let mut last = None;
            for (index, (loc, id)) in entries {
                if expected.is_some_and(|e| e != index) {
                    return Err(corrupt(format!(
                        "the node log in {} misses entries of group {group} before {index}",
                        self.dir.display()
                    )));
                }
                expected = Some(index + 1);
                offsets.push(index, loc);
                // Only live entries hold a segment: a copy truncated, replaced, moved by a
                // relocation or of a dropped group does not.
                let segment = self
                    .segments
                    .get_mut(&u64::from(loc.seg))
                    .expect("read above");
                let newest = segment.newest.entry(group).or_default();
                *newest = (*newest).max(index);
                last = Some(id);
            }
            let epoch = self.take_epoch();
            self.groups.insert(
                group,
                GroupLog {
                    epoch,
                    offsets,
                    purged,
                },
            );
            self.found.insert(
                group,
                Found {
                    purged,
                    last,
                    tail: tail.into(),
                },
            );
        }
        if self.len == 0 {
            // A segment created just before a crash: it starts here.
            self.frame_start()?;
        }
        Ok(())
    }
}

/// One group's part of a [`NodeLog`].
pub struct NodeLogGroup {
    log: Arc<Mutex<Inner>>,
    group: GroupId,
    epoch: u64,
    votes: VoteSlots,
}

impl NodeLogGroup {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        lock(&self.log)
    }

    /// The group's entries `from..=to` from the disk, each with its size there.
    fn read_back(&self, from: u64, to: u64) -> io::Result<Vec<(Entry, u64)>> {
        self.inner().write_pending()?;
        NodeLogReader {
            log: self.log.clone(),
            group: self.group,
        }
        .read_sized(from, to)
    }
}

impl LogDisk for NodeLogGroup {
    fn load(&mut self, tail: usize) -> io::Result<LoadedLog> {
        let vote = self.votes.load()?;
        let found = {
            let mut inner = self.inner();
            let log = inner.group(self.group, self.epoch)?;
            let (purged, first, last) = (
                log.purged,
                log.offsets.first_index(),
                log.offsets.last_index(),
            );
            match inner.found.remove(&self.group) {
                Some(found) => found,
                // Loaded before by a replica of this group that has gone since: read back.
                None => {
                    drop(inner);
                    let tail = match (first, last) {
                        (Some(first), Some(last)) => self.read_back(
                            first.max((last + 1).saturating_sub(tail.max(1) as u64)),
                            last,
                        )?,
                        _ => Vec::new(),
                    };
                    Found {
                        purged,
                        last: tail.last().map(|(e, _)| e.log_id),
                        tail,
                    }
                }
            }
        };
        let skip = found.tail.len().saturating_sub(tail);
        Ok(LoadedLog {
            vote,
            purged: found.purged,
            last: found.last,
            tail: found.tail.into_iter().skip(skip).collect(),
        })
    }

    fn append(&mut self, entries: &[Entry]) -> io::Result<Vec<u64>> {
        let (group, epoch) = (self.group, self.epoch);
        let mut inner = self.inner();
        inner.group(group, epoch)?;
        let mut sizes = Vec::with_capacity(entries.len());
        for entry in entries {
            if inner.len >= inner.segment_bytes {
                inner.start_segment()?;
            }
            let loc = inner.frame(&Record::Entry(group, entry))?;
            let index = entry.log_id.index;
            inner.group(group, epoch)?.offsets.push(index, loc);
            let seq = inner.seq;
            let segment = inner.segments.get_mut(&seq).expect("the current segment");
            let newest = segment.newest.entry(group).or_default();
            *newest = (*newest).max(index);
            sizes.push(u64::from(loc.len));
        }
        Ok(sizes)
    }

    fn truncate_from(&mut self, index: u64) -> io::Result<()> {
        let (group, epoch) = (self.group, self.epoch);
        let mut inner = self.inner();
        let log = inner.group(group, epoch)?;
        if log.offsets.last_index().is_none_or(|last| last < index) {
            return Ok(());
        }
        log.offsets.truncate_from(index);
        inner.frame(&Record::Truncated(group, index))?;
        Ok(())
    }

    /// Durable with the writer's next sync, which comes before the purge is acknowledged.
    fn purge(&mut self, upto: LogId) -> io::Result<()> {
        let (group, epoch) = (self.group, self.epoch);
        let mut inner = self.inner();
        let log = inner.group(group, epoch)?;
        if log.purged.is_some_and(|p| p >= upto) {
            return Ok(());
        }
        log.purged = Some(upto);
        log.offsets.drop_upto(upto.index);
        inner.frame(&Record::Purged(group, upto))?;
        inner.freed = true;
        Ok(())
    }

    fn save_vote(&mut self, vote: &openraft::Vote<crate::types::NodeId>) -> io::Result<()> {
        self.inner().group(self.group, self.epoch)?;
        self.votes.save(vote)
    }

    fn sync(&mut self) -> io::Result<bool> {
        self.inner().sync()
    }

    fn prepare(&mut self) -> io::Result<()> {
        self.inner().prepare()
    }

    fn blocks(&self) -> bool {
        true
    }

    fn reader(&self) -> Arc<dyn LogRead> {
        Arc::new(NodeLogReader {
            log: self.log.clone(),
            group: self.group,
        })
    }
}

/// Reads one group's entries back by position (`pread`; the writer is not disturbed).
struct NodeLogReader {
    log: Arc<Mutex<Inner>>,
    group: GroupId,
}

impl NodeLogReader {
    fn read_sized(&self, from: u64, to: u64) -> io::Result<Vec<(Entry, u64)>> {
        // Byte spans to read, each with the records wanted in it.
        let mut spans: Vec<(Arc<File>, u64, Vec<Loc>)> = Vec::new();
        {
            let mut inner = lock(&self.log);
            // Readers see what is framed (the writer's sync writes it out anyway).
            inner.write_pending()?;
            let Some(log) = inner.groups.get(&self.group) else {
                return Ok(Vec::new());
            };
            let (Some(first), Some(last)) = (log.offsets.first_index(), log.offsets.last_index())
            else {
                return Ok(Vec::new());
            };
            for index in from.max(first)..=to.min(last) {
                let loc = log.offsets.get(index).expect("in range");
                let Some(segment) = inner.segments.get(&u64::from(loc.seg)) else {
                    break;
                };
                if loc.at + u64::from(loc.len) > segment.written {
                    break;
                }
                match spans.last_mut() {
                    Some((file, _, locs))
                        if Arc::ptr_eq(file, &segment.file)
                            && locs.last().is_some_and(|l| {
                                loc.at >= l.at + u64::from(l.len)
                                    && loc.at - (l.at + u64::from(l.len)) <= MAX_READ_GAP_BYTES
                            }) =>
                    {
                        locs.push(loc)
                    }
                    _ => spans.push((segment.file.clone(), loc.at, vec![loc])),
                }
            }
        }
        // Outside the lock: a handle keeps its segment readable even if it is deleted
        // meanwhile, and records are never overwritten.
        let mut entries = Vec::new();
        for (file, start, locs) in spans {
            let end = locs.last().map_or(start, |l| l.at + u64::from(l.len));
            let bytes = read_span(&file, start, end)?;
            for loc in locs {
                let at = (loc.at - start) as usize;
                let record = bytes
                    .get(at..at + loc.len as usize)
                    .and_then(|r| records(r).next())
                    .ok_or_else(|| corrupt(format!("no log record at byte {}", loc.at)))?;
                match decode::<Record<Entry>>(record).map_err(corrupt)? {
                    Record::Entry(group, entry) if group == self.group => {
                        entries.push((entry, u64::from(loc.len)))
                    }
                    _ => {
                        return Err(corrupt(format!(
                            "the record at byte {} is not an entry of group {}",
                            loc.at, self.group
                        )))
                    }
                }
            }
        }
        Ok(entries)
    }
}

impl LogRead for NodeLogReader {
    fn read(&self, from: u64, to: u64) -> io::Result<Vec<Entry>> {
        Ok(self
            .read_sized(from, to)?
            .into_iter()
            .map(|(e, _)| e)
            .collect())
    }

    fn blocks(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use openraft::{CommittedLeaderId, EntryPayload, Vote};
    use proptest::prelude::*;

    use super::*;
    use crate::types::Proposal;

    /// An entry of `group` whose payload names the group, so a mix-up shows.
    fn entry(group: GroupId, term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(Proposal {
                now_ms: group * 1_000_000 + index,
                requests: Default::default(),
            }),
        }
    }

    fn entries(group: GroupId, term: u64, indexes: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
        indexes.map(|i| entry(group, term, i)).collect()
    }

    fn id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn segment_files(dir: &Path) -> BTreeSet<u64> {
        fs::read_dir(dir)
            .unwrap()
            .filter_map(|d| d.unwrap().file_name().to_str().and_then(segment_seq))
            .collect()
    }

    fn open(dir: &Path, segment_bytes: u64) -> NodeLog {
        NodeLog::open_with(dir, usize::MAX, segment_bytes).unwrap()
    }

    /// Each group's loaded log after a reopen: purge, last, tail.
    fn reloaded(dir: &Path, groups: &[GroupId]) -> Vec<(Option<LogId>, Option<LogId>, Vec<Entry>)> {
        let log = open(dir, SEGMENT_BYTES);
        groups
            .iter()
            .map(|&g| {
                let loaded = log
                    .group(g, &dir.join(g.to_string()))
                    .load(usize::MAX)
                    .unwrap();
                let tail = loaded.tail.into_iter().map(|(e, _)| e).collect();
                (loaded.purged, loaded.last, tail)
            })
            .collect()
    }

    #[test]
    fn groups_share_one_sync_and_each_reads_back_only_its_own_entries() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), SEGMENT_BYTES);
        let mut a = log.group(1, &dir.path().join("1"));
        let mut b = log.group(2, &dir.path().join("2"));
        a.load(0).unwrap();
        b.load(0).unwrap();
        a.append(&entries(1, 1, 1..=3)).unwrap();
        b.append(&entries(2, 1, 1..=2)).unwrap();
        a.append(&entries(1, 1, 4..=4)).unwrap();
        assert!(a.sync().unwrap(), "the first sync of a batch syncs");
        assert!(!b.sync().unwrap(), "the second finds it done");
        assert!(!a.sync().unwrap(), "nothing new, nothing to sync");
        assert_eq!(a.reader().read(0, 9).unwrap(), entries(1, 1, 1..=4));
        assert_eq!(b.reader().read(2, 9).unwrap(), entries(2, 1, 2..=2));
        a.save_vote(&Vote::new(3, 1)).unwrap();
        drop((a, b, log));
        let got = reloaded(dir.path(), &[1, 2, 3]);
        assert_eq!(got[0], (None, Some(id(1, 4)), entries(1, 1, 1..=4)));
        assert_eq!(got[1], (None, Some(id(1, 2)), entries(2, 1, 1..=2)));
        assert_eq!(got[2], (None, None, Vec::new()), "a group never written to");
        let log = open(dir.path(), SEGMENT_BYTES);
        let vote = log.group(1, &dir.path().join("1")).load(0).unwrap().vote;
        assert_eq!(vote, Some(Vote::new(3, 1)));
    }

    #[test]
    fn a_second_load_reads_the_log_back() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), SEGMENT_BYTES);
        let mut a = log.group(1, dir.path());
        a.append(&entries(1, 1, 1..=5)).unwrap();
        a.purge(id(1, 2)).unwrap();
        a.sync().unwrap();
        drop((a, log));
        let log = open(dir.path(), SEGMENT_BYTES);
        let mut a = log.group(1, dir.path());
        let first = a.load(usize::MAX).unwrap();
        let second = a.load(usize::MAX).unwrap();
        let third = a.load(2).unwrap();
        for loaded in [&first, &second, &third] {
            assert_eq!(
                (loaded.purged, loaded.last),
                (Some(id(1, 2)), Some(id(1, 5)))
            );
        }
        assert_eq!(first.tail, second.tail);
        assert_eq!(third.tail, first.tail[1..]);
    }

    #[test]
    fn truncation_and_purge_are_records_that_a_reopen_replays() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), SEGMENT_BYTES);
        let mut a = log.group(1, dir.path());
        let mut b = log.group(2, dir.path());
        a.append(&entries(1, 1, 1..=10)).unwrap();
        b.append(&entries(2, 1, 1..=5)).unwrap();
        a.truncate_from(8).unwrap();
        a.append(&entries(1, 2, 8..=9)).unwrap();
        a.purge(id(1, 3)).unwrap();
        b.truncate_from(1).unwrap();
        a.sync().unwrap();
        let mut want_a = entries(1, 1, 4..=7);
        want_a.extend(entries(1, 2, 8..=9));
        assert_eq!(a.reader().read(0, 99).unwrap(), want_a);
        assert!(b.reader().read(0, 99).unwrap().is_empty());
        drop((a, b, log));
        let got = reloaded(dir.path(), &[1, 2]);
        assert_eq!(got[0], (Some(id(1, 3)), Some(id(2, 9)), want_a));
        assert_eq!(got[1], (None, None, Vec::new()));
        // A load asked for fewer entries gets the newest and still the last id.
        let log = open(dir.path(), SEGMENT_BYTES);
        let loaded = log.group(1, dir.path()).load(1).unwrap();
        assert_eq!(loaded.tail.len(), 1);
        assert_eq!(loaded.last, Some(id(2, 9)));
    }

    #[test]
    fn segments_go_once_every_group_purged_past_them_and_the_rest_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        // A new segment before nearly every entry.
        let log = open(dir.path(), 1);
        let mut a = log.group(1, dir.path());
        let mut b = log.group(2, dir.path());
        for i in 1..=6 {
            a.append(&[entry(1, 1, i)]).unwrap();
            b.append(&[entry(2, 1, i)]).unwrap();
        }
        a.sync().unwrap();
        // Segment 1 holds its start record only, then segment 2k holds a's entry k and
        // segment 2k + 1 b's.
        assert_eq!(segment_files(dir.path()), (1..=13).collect());
        // a's purge of everything frees the segments holding a's entries only; the one
        // appended to stays whatever it holds.
        a.purge(id(1, 6)).unwrap();
        a.sync().unwrap();
        a.prepare().unwrap();
        assert_eq!(segment_files(dir.path()), [3, 5, 7, 9, 11, 13].into());
        // b's purge up to 3 frees the segments of b's entries up to 3.
        b.purge(id(1, 3)).unwrap();
        b.sync().unwrap();
        b.prepare().unwrap();
        assert_eq!(segment_files(dir.path()), [9, 11, 13].into());
        assert_eq!(b.reader().read(0, 9).unwrap(), entries(2, 1, 4..=6));
        assert!(a.reader().read(0, 9).unwrap().is_empty());
        drop((a, b, log));
        let got = reloaded(dir.path(), &[1, 2]);
        assert_eq!(got[0], (Some(id(1, 6)), None, Vec::new()));
        assert_eq!(
            got[1],
            (Some(id(1, 3)), Some(id(1, 6)), entries(2, 1, 4..=6))
        );
    }

    /// A quiet group's few entries, spread over the segments while a busy group writes and
    /// purges, are copied forward as segments roll, so they hold no old segment; without
    /// the copying every segment holding one of them would stay.
    #[test]
    fn a_quiet_group_does_not_hold_old_segments() {
        for relocate in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let log = open(dir.path(), 2_000);
            log.inner().relocate_bytes = if relocate { 10_000 } else { 0 };
            let mut busy = log.group(1, dir.path());
            let mut quiet = log.group(2, dir.path());
            for i in 1..=2_000 {
                busy.append(&[entry(1, 1, i)]).unwrap();
                if i % 100 == 0 {
                    quiet.append(&[entry(2, 1, i / 100)]).unwrap();
                }
                if i % 20 == 0 {
                    busy.purge(id(1, i - 10)).unwrap();
                }
                busy.sync().unwrap();
                busy.prepare().unwrap();
            }
            let segments = segment_files(dir.path()).len();
            if relocate {
                assert!(segments <= 3, "{segments} segments kept");
            } else {
                assert!(
                    segments >= 15,
                    "{segments} segments: the quiet group holds them"
                );
            }
            drop((busy, quiet, log));
            let got = reloaded(dir.path(), &[1, 2]);
            assert_eq!(got[0].2, entries(1, 1, 1_991..=2_000));
            assert_eq!(got[1], (None, Some(id(1, 20)), entries(2, 1, 1..=20)));
        }
    }

    #[test]
    fn a_dropped_group_stays_gone_holds_no_segment_and_its_old_handle_fails() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 1);
        let mut a = log.group(1, dir.path());
        let mut b = log.group(2, dir.path());
        a.append(&entries(1, 1, 1..=3)).unwrap();
        b.append(&entries(2, 1, 1..=3)).unwrap();
        b.purge(id(1, 3)).unwrap();
        a.sync().unwrap();
        a.prepare().unwrap();
        log.drop_group(1).unwrap();
        // Only the segment appended to is left: nothing holds the others.
        assert_eq!(segment_files(dir.path()).len(), 1);
        assert!(a.append(&entries(1, 1, 4..=4)).is_err());
        assert!(a.reader().read(0, 9).unwrap().is_empty());
        // Opened again, the group starts empty, and the old handle still fails.
        let mut a2 = log.group(1, dir.path());
        assert_eq!(a2.load(9).unwrap().last, None);
        a2.append(&entries(1, 5, 1..=1)).unwrap();
        a2.sync().unwrap();
        assert!(a.truncate_from(1).is_err());
        drop((a, a2, b, log));
        let got = reloaded(dir.path(), &[1, 2]);
        assert_eq!(got[0], (None, Some(id(5, 1)), entries(1, 5, 1..=1)));
        assert_eq!(got[1], (Some(id(1, 3)), None, Vec::new()));
    }

    #[test]
    fn a_torn_tail_is_dropped_and_a_damaged_earlier_segment_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), SEGMENT_BYTES);
        let mut a = log.group(1, dir.path());
        a.append(&entries(1, 1, 1..=2)).unwrap();
        a.sync().unwrap();
        a.prepare().unwrap();
        drop((a, log));
        // A crash mid-write: half a record, then the zeros written ahead.
        let last = *segment_files(dir.path()).last().unwrap();
        let path = dir.path().join(segment_name(last));
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        let end: usize = records(&fs::read(&path).unwrap())
            .map(|r| RECORD_HEADER_BYTES + r.len())
            .sum();
        f.write_all_at(&[200, 0, 0, 0, 1, 2, 3, 4, 5], end as u64)
            .unwrap();
        drop(f);
        let log = open(dir.path(), 1);
        let mut a = log.group(1, dir.path());
        assert_eq!(a.load(9).unwrap().tail.len(), 2);
        a.append(&entries(1, 1, 3..=4)).unwrap();
        a.sync().unwrap();
        drop((a, log));
        assert_eq!(reloaded(dir.path(), &[1])[0].2, entries(1, 1, 1..=4));
        // Damage inside the first segment, which is not the last any more.
        let first = *segment_files(dir.path()).first().unwrap();
        let path = dir.path().join(segment_name(first));
        let mut bytes = fs::read(&path).unwrap();
        let at = bytes.len() - 3;
        bytes[at] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let err = NodeLog::open_with(dir.path(), 9, SEGMENT_BYTES)
            .err()
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append(GroupId, u64),
        /// Truncate this many entries off the group's end (a new leader's conflict).
        Truncate(GroupId, u64),
        /// Purge up to this fraction (in 1/4) of the group's log.
        Purge(GroupId, u64),
        /// The writer's sync and the idle work after it (zeros, segment deletion).
        Sync,
        Drop(GroupId),
        /// Sync, close everything and open the directory again.
        Reopen,
    }

    const GROUPS: u64 = 3;

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..GROUPS, 1u64..6).prop_map(|(g, n)| Op::Append(g, n)),
            1 => (0..GROUPS, 1u64..4).prop_map(|(g, n)| Op::Truncate(g, n)),
            2 => (0..GROUPS, 0u64..5).prop_map(|(g, f)| Op::Purge(g, f)),
            2 => Just(Op::Sync),
            1 => (0..GROUPS).prop_map(Op::Drop),
            1 => Just(Op::Reopen),
        ]
    }

    /// What a group's log holds, as a plain map.
    #[derive(Default, Clone)]
    struct Model {
        purged: Option<LogId>,
        entries: BTreeMap<u64, Entry>,
        term: u64,
    }

    impl Model {
        fn next_index(&self) -> u64 {
            self.entries
                .keys()
                .next_back()
                .map(|i| i + 1)
                .or(self.purged.map(|p| p.index + 1))
                .unwrap_or(1)
        }

        fn last(&self) -> Option<LogId> {
            self.entries.values().next_back().map(|e| e.log_id)
        }
    }

    struct Harness {
        dir: tempfile::TempDir,
        segment_bytes: u64,
        relocate_bytes: u64,
        log: NodeLog,
        handles: BTreeMap<GroupId, NodeLogGroup>,
        models: BTreeMap<GroupId, Model>,
    }

    impl Harness {
        fn handle(&mut self, group: GroupId) -> &mut NodeLogGroup {
            let (log, dir) = (&self.log, self.dir.path());
            self.handles.entry(group).or_insert_with(|| {
                let mut handle = log.group(group, &dir.join(group.to_string()));
                handle.load(usize::MAX).unwrap();
                handle
            })
        }

        fn run(&mut self, op: Op) {
            match op {
                Op::Append(g, n) => {
                    let model = self.models.entry(g).or_default();
                    model.term = model.term.max(1);
                    let from = model.next_index();
                    let new = entries(g, model.term, from..=from + n - 1);
                    for e in &new {
                        model.entries.insert(e.log_id.index, e.clone());
                    }
                    self.handle(g).append(&new).unwrap();
                }
                Op::Truncate(g, n) => {
                    let model = self.models.entry(g).or_default();
                    let floor = model.purged.map_or(1, |p| p.index + 1);
                    let index = model.next_index().saturating_sub(n).max(floor);
                    model.entries.split_off(&index);
                    model.term += 1;
                    self.handle(g).truncate_from(index).unwrap();
                }
                Op::Purge(g, quarters) => {
                    let model = self.models.entry(g).or_default();
                    let (Some(&first), Some(&last)) = (
                        model.entries.keys().next(),
                        model.entries.keys().next_back(),
                    ) else {
                        return;
                    };
                    let upto = first + (last - first) * quarters / 4;
                    let upto = model.entries[&upto].log_id;
                    model.entries = model.entries.split_off(&(upto.index + 1));
                    model.purged = Some(upto);
                    self.handle(g).purge(upto).unwrap();
                }
                Op::Sync => {
                    // As the writer does after a batch: the sync, then the idle work.
                    let mut inner = self.log.inner();
                    inner.sync().unwrap();
                    inner.prepare().unwrap();
                }
                Op::Drop(g) => {
                    self.handles.remove(&g);
                    self.models.remove(&g);
                    self.log.drop_group(g).unwrap();
                }
                Op::Reopen => {
                    self.run(Op::Sync);
                    self.handles.clear();
                    self.log = NodeLog::open_with(self.dir.path(), usize::MAX, self.segment_bytes)
                        .unwrap();
                    self.log.inner().relocate_bytes = self.relocate_bytes;
                    let known: Vec<GroupId> = self.models.keys().copied().collect();
                    for g in known {
                        let loaded = self.handle(g).load(usize::MAX);
                        // The handle loaded once already; load again reads back the same.
                        let loaded = loaded.unwrap();
                        let model = &self.models[&g];
                        let tail: Vec<Entry> = loaded.tail.into_iter().map(|(e, _)| e).collect();
                        let want: Vec<Entry> = model.entries.values().cloned().collect();
                        assert_eq!(tail, want, "group {g} reloaded");
                        assert_eq!(loaded.purged, model.purged, "group {g}'s purge");
                        assert_eq!(loaded.last, model.last(), "group {g}'s last");
                    }
                    let mut found = self.log.groups();
                    found.retain(|g| !self.models.contains_key(g));
                    assert!(
                        found.iter().all(|g| self.handles.contains_key(g)),
                        "groups back that were dropped: {found:?}"
                    );
                }
            }
        }

        fn check(&mut self) {
            let groups: Vec<GroupId> = self.models.keys().copied().collect();
            for g in groups {
                let model = self.models[&g].clone();
                let end = model.next_index() + 1;
                let reader = self.handle(g).reader();
                for from in 0..end {
                    let got = reader.read(from, end).unwrap();
                    let want: Vec<Entry> = model
                        .entries
                        .range(from..=end)
                        .map(|(_, e)| e.clone())
                        .collect();
                    assert_eq!(got, want, "group {g} read {from}..={end}");
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
        /// Several groups appending, truncating, purging and dropped in any interleaving, with
        /// segments small enough to roll every few records and be deleted as purges free them:
        /// every read returns what a plain per-group map holds, and so does every reopen.
        #[test]
        fn the_node_log_is_each_groups_log_through_rolls_deletions_and_reopens(
            segment_bytes in prop_oneof![Just(1u64), 200u64..2_000, Just(SEGMENT_BYTES)],
            relocate_bytes in prop_oneof![Just(0u64), 100u64..1_000, Just(u64::MAX / 4)],
            ops in proptest::collection::vec(op(), 1..60),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let log = NodeLog::open_with(dir.path(), usize::MAX, segment_bytes).unwrap();
            log.inner().relocate_bytes = relocate_bytes;
            let mut h = Harness {
                dir,
                segment_bytes,
                relocate_bytes,
                log,
                handles: BTreeMap::new(),
                models: BTreeMap::new(),
            };
            for op in ops {
                h.run(op);
                h.check();
            }
            h.run(Op::Reopen);
            h.check();
        }
    }
}
