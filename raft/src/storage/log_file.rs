//! The Raft log's durable form: numbered append-only segment files per group and a
//! two-slot vote file.
//!
//! sled's `flush()` is not an fsync (STACK.md), so the log is our own: length- and
//! CRC-framed records, `fdatasync`'d before openraft is told an append is done (by the
//! writer thread in [`super::log`]). The vote lives in one of two fixed slots of a small
//! file, each with a sequence number and a CRC, overwritten in turn and `fdatasync`'d (one
//! flush per vote: a voter answers within an election timeout even on a loaded disk; a torn
//! write leaves the other slot, the previous vote, which was never acknowledged past).
//!
//! A segment takes entries until it holds `SEGMENT_BYTES`; then it is synced and the next
//! one starts (segment 0 keeps the single file's old name, so older data directories load
//! as they are). A purge appends a `Purged` record, syncs it, and deletes the segments
//! holding only purged entries: nothing is copied, so keeping a long log behind each
//! snapshot (for followers that were down a while) costs disk and nothing per snapshot.
//! Entries are read back through a [`LogRead`] handle, by position, while the writer goes
//! on appending. [`MemLog`] keeps the same data in
//! memory for the simulator, shared through an `Arc` so it outlives a simulated crash.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::storage::{create_durably, sync_dir};
use crate::typ::{Entry, LogId, Vote};

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
pub(super) const RECORD_HEADER_BYTES: usize = 8;
/// Largest record accepted when reading back (a larger length means a torn or corrupt tail).
pub(super) const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;
/// A segment takes entries until it is this large; then the next one starts.
pub(super) const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Zeros written ahead of the log's end ([`LogDisk::prepare`]), so that the `fdatasync` of
/// an append overwrites blocks the file already has instead of growing it: a growing file
/// makes every sync an ext4 journal commit too (110 µs against 170–220 µs per sync on this
/// machine's disk; BENCHMARKS.md). PostgreSQL zero-fills its WAL segments for the same
/// reason.
const ZERO_AHEAD_BYTES: u64 = 2 * 1024 * 1024;
/// [`LogDisk::prepare`] writes more zeros once fewer than this many are left.
const ZERO_LOW_WATER_BYTES: u64 = 512 * 1024;
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// What a segment holds: entries, and `Purged` records naming the prefix dropped (the
/// newest one counts; a log file of an older build starts with one).
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
    /// The id of the last entry, if any is left after the purge.
    pub last: Option<LogId>,
    /// The newest entries (as many as `load` was asked for), oldest first, each with its
    /// size on disk; older ones are read back through [`LogDisk::reader`].
    pub tail: Vec<(Entry, u64)>,
}

/// Where a group's log and vote live. Writes may be buffered until [`LogDisk::sync`].
pub trait LogDisk: Send + 'static {
    /// Reads the vote and the log, keeping the newest `tail` entries decoded.
    fn load(&mut self, tail: usize) -> io::Result<LoadedLog>;
    /// Appends, returning each entry's size on disk.
    fn append(&mut self, entries: &[Entry]) -> io::Result<Vec<u64>>;
    /// Removes entries with index >= `index`.
    fn truncate_from(&mut self, index: u64) -> io::Result<()>;
    /// Removes entries up to `upto` inclusive and remembers it as purged. Durable once a
    /// `sync` after it returns (a disk may make it durable sooner).
    fn purge(&mut self, upto: LogId) -> io::Result<()>;
    /// Durable on return.
    fn save_vote(&mut self, vote: &Vote) -> io::Result<()>;
    /// Makes every earlier append and truncate durable. Whether it synced anything (a disk
    /// shared by several groups syncs once for all of them; the others find nothing to do).
    fn sync(&mut self) -> io::Result<bool>;
    /// Whether I/O blocks (runs on a writer thread) or is instant (runs inline).
    fn blocks(&self) -> bool;
    /// A handle that reads written entries back while this disk goes on writing.
    fn reader(&self) -> Arc<dyn LogRead>;
    /// Readies the disk for the next appends while the writer is idle (for the file log:
    /// zeros written ahead of the end, durable on return). Changes nothing that loads.
    fn prepare(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads written entries back.
pub trait LogRead: Send + Sync + 'static {
    /// The entries with indexes in `from..=to` that the log holds, in order. An entry
    /// truncated or purged meanwhile is left out.
    fn read(&self, from: u64, to: u64) -> io::Result<Vec<Entry>>;
    /// Whether a read blocks on I/O (and belongs off the async threads) or is instant.
    fn blocks(&self) -> bool;
}

/// Where an entry's record is: the segment's number and the byte offset in it.
type Pos = (u64, u64);

/// The position of each entry's record, for consecutive indexes from `first`.
pub(super) struct Offsets<P = Pos> {
    first: u64,
    at: VecDeque<P>,
}

impl<P> Default for Offsets<P> {
    fn default() -> Self {
        Offsets {
            first: 0,
            at: VecDeque::new(),
        }
    }
}

impl<P: Copy> Offsets<P> {
    pub(super) fn get(&self, index: u64) -> Option<P> {
        let i = index.checked_sub(self.first)?;
        self.at.get(usize::try_from(i).ok()?).copied()
    }

    /// The position of the first entry at or after `index`.
    pub(super) fn at_or_after(&self, index: u64) -> Option<P> {
        self.get(index.max(self.first))
    }

    pub(super) fn first_index(&self) -> Option<u64> {
        (!self.at.is_empty()).then_some(self.first)
    }

    pub(super) fn last_index(&self) -> Option<u64> {
        (!self.at.is_empty()).then(|| self.first + self.at.len() as u64 - 1)
    }

    pub(super) fn push(&mut self, index: u64, pos: P) {
        if self.at.is_empty() || index < self.first {
            self.first = index;
            self.at.clear();
        } else {
            self.truncate_from(index);
            // A gap cannot arise from openraft's appends; start over from here if it did.
            if index != self.first + self.at.len() as u64 {
                self.first = index;
                self.at.clear();
            }
        }
        self.at.push_back(pos);
    }

    pub(super) fn truncate_from(&mut self, index: u64) {
        let keep = index.saturating_sub(self.first).min(self.at.len() as u64);
        self.at.truncate(keep as usize);
    }

    pub(super) fn drop_upto(&mut self, index: u64) {
        while !self.at.is_empty() && self.first <= index {
            self.at.pop_front();
            self.first += 1;
        }
        if self.at.is_empty() {
            self.first = self.first.max(index + 1);
        }
    }
}

/// What readers share with the writer: a handle on each segment, how many bytes of each
/// are written, and where each entry starts. Updated under its lock after each write.
#[derive(Default)]
struct ReadIndex {
    segments: BTreeMap<u64, (Arc<File>, u64)>,
    offsets: Offsets,
}

/// Reads a [`FileLog`]'s entries by position (`pread`, so the writer's position is
/// untouched).
struct FileReader(Arc<Mutex<ReadIndex>>);

/// A lock whose holder panicked is still the data: every writer leaves it consistent.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads `file[start..end]`, or less if the file is shorter now.
pub(super) fn read_span(file: &File, start: u64, end: u64) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; end.saturating_sub(start) as usize];
    let mut filled = 0;
    while filled < bytes.len() {
        match file.read_at(&mut bytes[filled..], start + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    bytes.truncate(filled);
    Ok(bytes)
}

impl LogRead for FileReader {
    fn read(&self, from: u64, to: u64) -> io::Result<Vec<Entry>> {
        // The byte spans to read, one per segment the range touches.
        let mut spans: Vec<(Arc<File>, u64, u64)> = Vec::new();
        {
            let index = lock(&self.0);
            let offsets = &index.offsets;
            let Some(last) = offsets.last_index() else {
                return Ok(Vec::new());
            };
            let (from, to) = (from.max(offsets.first), to.min(last));
            let mut i = from;
            while i <= to {
                let (seg, start) = offsets.get(i).expect("in range");
                let Some((file, written)) = index.segments.get(&seg) else {
                    break;
                };
                // The entries of this segment in the range; the span ends where the next
                // one starts, or at the segment's end.
                while i <= to && offsets.get(i).is_some_and(|(s, _)| s == seg) {
                    i += 1;
                }
                let end = match offsets.get(i) {
                    Some((s, at)) if s == seg => at,
                    _ => *written,
                };
                spans.push((file.clone(), start, end));
            }
        }
        // Read outside the lock: a handle keeps its segment readable even if the writer
        // deletes it meanwhile; a truncation meanwhile shortens what is read.
        let mut entries = Vec::new();
        for (file, start, end) in spans {
            let bytes = read_span(&file, start, end)?;
            for record in records(&bytes) {
                if let LogRecord::Entry(entry) = decode::<LogRecord>(record).map_err(corrupt)? {
                    if (from..=to).contains(&entry.log_id.index) {
                        entries.push(entry);
                    }
                }
            }
        }
        Ok(entries)
    }

    fn blocks(&self) -> bool {
        true
    }
}

/// The payloads of the intact records at the start of `bytes`, in order; iteration stops
/// at the first torn, oversized or damaged record, or at the zeros written ahead of the end
/// (a record is never empty, so a zero length is no record).
pub(super) fn records(bytes: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let header = bytes.get(pos..pos + RECORD_HEADER_BYTES)?;
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        let start = pos + RECORD_HEADER_BYTES;
        if len == 0 || len > MAX_RECORD_BYTES {
            return None;
        }
        let payload = bytes.get(start..start + len)?;
        if crc32fast::hash(payload) != crc {
            return None;
        }
        pos = start + len;
        Some(payload)
    })
}

/// A record as written: header and payload.
fn frame(record: &LogRecord) -> Vec<u8> {
    let payload = encode(record);
    let mut buf = Vec::with_capacity(RECORD_HEADER_BYTES + payload.len());
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    buf.extend_from_slice(&payload);
    buf
}

/// The on-disk log of one group: numbered segment files, each appended to until it holds
/// `segment_bytes`, then the next one is started.
pub struct FileLog {
    dir: PathBuf,
    /// The segment being appended to, and its length.
    seq: u64,
    file: File,
    len: u64,
    /// The segment's length on disk: `len`, then zeros written ahead (never less than `len`).
    zeroed: u64,
    shared: Arc<Mutex<ReadIndex>>,
    /// The newest purge and where its record is: a truncation that cuts it off writes it
    /// again.
    purged: Option<LogId>,
    purged_record_at: Option<Pos>,
    segment_bytes: u64,
    votes: VoteSlots,
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

/// A group's vote in its two-slot file (see the module doc).
pub(super) struct VoteSlots {
    dir: PathBuf,
    /// The slot file, once opened, and the sequence number of the last vote written.
    file: Option<File>,
    seq: u64,
}

impl VoteSlots {
    pub(super) fn new(dir: &Path) -> VoteSlots {
        VoteSlots {
            dir: dir.to_owned(),
            file: None,
            seq: 0,
        }
    }

    /// The newest vote: the slot file's newest intact slot, else the vote file an earlier
    /// build wrote, else none.
    pub(super) fn load(&mut self) -> io::Result<Option<Vote>> {
        let bytes = match fs::read(self.dir.join(VOTE_SLOTS_FILE)) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let newest = bytes.as_deref().and_then(|bytes| {
            bytes
                .chunks(VOTE_SLOT_BYTES)
                .filter_map(decode_vote_slot)
                .max_by_key(|(seq, _)| *seq)
        });
        if let Some((seq, vote)) = newest {
            self.seq = seq;
            return Ok(Some(vote));
        }
        match fs::read(self.dir.join(VOTE_FILE)) {
            Ok(bytes) => Ok(Some(decode(&bytes).map_err(corrupt)?)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `vote` over the older slot; durable on return.
    pub(super) fn save(&mut self, vote: &Vote) -> io::Result<()> {
        let seq = self.seq + 1;
        let slot = encode_vote_slot(seq, vote)?;
        let file = self.file()?;
        // Slots alternate, so the previous vote stays intact until this one is durable.
        file.write_all_at(&slot, (seq % 2) * VOTE_SLOT_BYTES as u64)?;
        file.sync_data()?;
        self.seq = seq;
        Ok(())
    }

    /// The slot file, created (both slots empty, durable with its directory entry) on first use.
    fn file(&mut self) -> io::Result<&File> {
        if self.file.is_none() {
            fs::create_dir_all(&self.dir)?;
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
                sync_dir(&self.dir)?;
            }
            self.file = Some(file);
        }
        Ok(self.file.as_ref().expect("opened above"))
    }
}

impl FileLog {
    /// Whether `dir` holds a group's own log (as builds before the node log wrote one).
    pub fn exists_in(dir: &Path) -> bool {
        dir.join(LOG_FILE).exists()
    }

    /// Opens the segments in `dir` (creating the first if there is none); [`LogDisk::load`]
    /// reads them.
    pub fn open(dir: &Path) -> io::Result<FileLog> {
        fs::create_dir_all(dir)?;
        let mut seqs: Vec<u64> = Vec::new();
        for dirent in fs::read_dir(dir)? {
            let name = dirent?.file_name();
            if let Some(seq) = name.to_str().and_then(segment_seq) {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        let mut shared = ReadIndex::default();
        for &seq in &seqs {
            let file = File::open(dir.join(segment_name(seq)))?;
            let len = file.metadata()?.len();
            shared.segments.insert(seq, (Arc::new(file), len));
        }
        let seq = seqs.last().copied().unwrap_or(0);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(segment_name(seq)))?;
        if seqs.is_empty() {
            shared
                .segments
                .insert(seq, (Arc::new(file.try_clone()?), 0));
        }
        let len = file.metadata()?.len();
        Ok(FileLog {
            dir: dir.to_owned(),
            seq,
            file,
            len,
            zeroed: len,
            shared: Arc::new(Mutex::new(shared)),
            purged: None,
            purged_record_at: None,
            segment_bytes: SEGMENT_BYTES,
            votes: VoteSlots::new(dir),
        })
    }

    fn shared(&self) -> MutexGuard<'_, ReadIndex> {
        lock(&self.shared)
    }

    /// Writes one record at the end, starting a new segment first if this one is full and
    /// the record is an entry; returns its size.
    fn write_record(&mut self, record: &LogRecord) -> io::Result<u64> {
        let is_entry = matches!(record, LogRecord::Entry(_));
        if is_entry && self.len >= self.segment_bytes {
            self.start_segment()?;
        }
        let buf = frame(record);
        let at = self.len;
        self.file.seek(SeekFrom::Start(at))?;
        self.file.write_all(&buf)?;
        self.len += buf.len() as u64;
        self.zeroed = self.zeroed.max(self.len);
        let (seq, len) = (self.seq, self.len);
        let mut shared = self.shared();
        if let LogRecord::Entry(entry) = record {
            shared.offsets.push(entry.log_id.index, (seq, at));
        }
        if let Some((_, written)) = shared.segments.get_mut(&seq) {
            *written = len;
        }
        Ok(buf.len() as u64)
    }

    /// Finishes the current segment (durable: only the last segment may have a torn tail)
    /// and starts the next, its directory entry durable before anything in it counts.
    fn start_segment(&mut self) -> io::Result<()> {
        if self.zeroed > self.len {
            // A finished segment ends with its last record.
            self.file.set_len(self.len)?;
        }
        self.file.sync_data()?;
        let seq = self.seq + 1;
        let file = create_durably(&self.dir, &segment_name(seq))?;
        self.shared()
            .segments
            .insert(seq, (Arc::new(file.try_clone()?), 0));
        self.seq = seq;
        self.file = file;
        self.len = 0;
        self.zeroed = 0;
        Ok(())
    }

    /// Deletes the segments `which` selects (never the current one), the deletion durable.
    fn delete_segments(&mut self, which: impl Fn(u64) -> bool) -> io::Result<()> {
        let doomed: Vec<u64> = self
            .shared()
            .segments
            .keys()
            .copied()
            .filter(|&s| s != self.seq && which(s))
            .collect();
        if doomed.is_empty() {
            return Ok(());
        }
        for &seq in &doomed {
            self.shared().segments.remove(&seq);
            fs::remove_file(self.dir.join(segment_name(seq)))?;
        }
        sync_dir(&self.dir)
    }
}

/// What follows the last intact record of a segment (at `end` of its `bytes`): in the last
/// segment (`last`, its handle open for writing), torn bytes or zeros written ahead, cut
/// off durably so later appends start on a record boundary with nothing but zeros after
/// them; in an earlier segment anything but zeros is damage, an error, never a shorter log.
pub(super) fn end_segment(
    path: &Path,
    bytes: &[u8],
    end: u64,
    last: Option<&File>,
) -> io::Result<()> {
    let size = bytes.len() as u64;
    if end >= size {
        return Ok(());
    }
    let zeros_only = bytes[end as usize..].iter().all(|&b| b == 0);
    if last.is_none() && !zeros_only {
        return Err(corrupt(format!(
            "log segment {} is damaged at byte {end} of {size}",
            path.display()
        )));
    }
    if !zeros_only {
        // A torn tail: the write was cut by a crash before its fsync, so it was never
        // acknowledged.
        tracing::warn!(segment = %path.display(), dropped_bytes = size - end, "dropping torn log tail");
    }
    if let Some(file) = last {
        file.set_len(end)?;
        file.sync_data()?;
    }
    Ok(())
}

/// Keeps zeros written (and durable) ahead of a log file's last record at `len`:
/// `ZERO_AHEAD_BYTES` of them once fewer than `ZERO_LOW_WATER_BYTES` are left. `zeroed` is
/// the file's length on disk (never less than `len`), updated as far as the zeros got.
pub(super) fn zero_ahead(file: &File, len: u64, zeroed: &mut u64) -> io::Result<()> {
    if *zeroed >= len + ZERO_LOW_WATER_BYTES {
        return Ok(());
    }
    // Everything after `len` is zeros or nothing, so writing zeros from the larger of the
    // two changes no record.
    let from = (*zeroed).max(len);
    let to = len + ZERO_AHEAD_BYTES;
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZEROS.len() as u64) as usize;
        if let Err(e) = file.write_all_at(&ZEROS[..n], at) {
            *zeroed = (*zeroed).max(at);
            return Err(e);
        }
        at += n as u64;
    }
    file.sync_data()?;
    *zeroed = to;
    Ok(())
}

/// Segment 0 keeps the name a single-file log had, so older data directories load as is.
fn segment_name(seq: u64) -> String {
    if seq == 0 {
        LOG_FILE.to_owned()
    } else {
        format!("{LOG_FILE}.{seq}")
    }
}

fn segment_seq(name: &str) -> Option<u64> {
    if name == LOG_FILE {
        return Some(0);
    }
    let seq = name.strip_prefix(LOG_FILE)?.strip_prefix('.')?;
    seq.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| seq.parse().ok())
        .flatten()
        .filter(|&s| s > 0)
}

pub(super) fn corrupt(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl LogDisk for FileLog {
    fn load(&mut self, tail: usize) -> io::Result<LoadedLog> {
        let mut loaded = LoadedLog {
            vote: self.votes.load()?,
            ..LoadedLog::default()
        };
        let segments: Vec<(u64, Arc<File>)> = self
            .shared()
            .segments
            .iter()
            .map(|(&s, (f, _))| (s, f.clone()))
            .collect();
        let mut offsets = Offsets::default();
        let mut kept: VecDeque<(Entry, u64)> = VecDeque::new();
        let mut last: Option<LogId> = None;
        let mut ends = BTreeMap::new();
        for (seq, file) in segments {
            let size = file.metadata()?.len();
            let bytes = read_span(&file, 0, size)?;
            let mut pos = 0u64;
            for record in records(&bytes) {
                let bytes_here = (RECORD_HEADER_BYTES + record.len()) as u64;
                match decode::<LogRecord>(record).map_err(corrupt)? {
                    LogRecord::Purged(id) => {
                        if loaded.purged.is_none_or(|p| p < id) {
                            loaded.purged = Some(id);
                            offsets.drop_upto(id.index);
                            kept.retain(|(e, _)| e.log_id.index > id.index);
                            self.purged_record_at = Some((seq, pos));
                        }
                    }
                    LogRecord::Entry(entry) => {
                        let index = entry.log_id.index;
                        offsets.push(index, (seq, pos));
                        while kept.back().is_some_and(|(e, _)| e.log_id.index >= index) {
                            kept.pop_back();
                        }
                        last = Some(entry.log_id);
                        if tail > 0 {
                            kept.push_back((entry, bytes_here));
                            if kept.len() > tail {
                                kept.pop_front();
                            }
                        }
                    }
                }
                pos += bytes_here;
            }
            let path = self.dir.join(segment_name(seq));
            let last = (seq == self.seq).then_some(&self.file);
            end_segment(&path, &bytes, pos, last)?;
            ends.insert(seq, pos);
        }
        self.len = ends.get(&self.seq).copied().unwrap_or(0);
        self.zeroed = self.len;
        self.purged = loaded.purged;
        // The last entry, unless the purge passed it.
        loaded.last = last.filter(|l| loaded.purged.is_none_or(|p| p < *l));
        loaded.tail = kept.into();
        let mut shared = self.shared();
        shared.offsets = offsets;
        for (seq, (_, written)) in shared.segments.iter_mut() {
            *written = ends.get(seq).copied().unwrap_or(0);
        }
        Ok(loaded)
    }

    fn append(&mut self, entries: &[Entry]) -> io::Result<Vec<u64>> {
        entries
            .iter()
            .map(|entry| self.write_record(&LogRecord::Entry(entry.clone())))
            .collect()
    }

    fn truncate_from(&mut self, index: u64) -> io::Result<()> {
        let Some((seq, at)) = self.shared().offsets.at_or_after(index) else {
            return Ok(());
        };
        if seq != self.seq {
            // The cut is in an earlier segment: it becomes the one appended to, and the
            // later ones go (durably, or a restart would bring their entries back).
            self.file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.dir.join(segment_name(seq)))?;
            self.seq = seq;
            self.delete_segments(|s| s > seq)?;
        }
        self.file.set_len(at)?;
        self.len = at;
        self.zeroed = at;
        {
            let mut shared = self.shared();
            shared.offsets.truncate_from(index);
            if let Some((_, written)) = shared.segments.get_mut(&seq) {
                *written = at;
            }
        }
        if let (Some(record_at), Some(upto)) = (self.purged_record_at, self.purged) {
            if record_at >= (seq, at) {
                // The cut took the newest purge record with it: write it again.
                self.purged_record_at = Some((self.seq, self.len));
                self.write_record(&LogRecord::Purged(upto))?;
            }
        }
        Ok(())
    }

    fn purge(&mut self, upto: LogId) -> io::Result<()> {
        if self.purged.is_some_and(|p| p >= upto) {
            return Ok(());
        }
        self.purged = Some(upto);
        self.purged_record_at = Some((self.seq, self.len));
        self.write_record(&LogRecord::Purged(upto))?;
        self.file.sync_data()?;
        // With the purge durable, segments holding only purged entries go.
        let first_live = {
            let mut shared = self.shared();
            shared.offsets.drop_upto(upto.index);
            shared.offsets.at_or_after(0).map_or(self.seq, |(s, _)| s)
        };
        self.delete_segments(|s| s < first_live)
    }

    fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        self.votes.save(vote)
    }

    fn sync(&mut self) -> io::Result<bool> {
        self.file.sync_data()?;
        Ok(true)
    }

    fn prepare(&mut self) -> io::Result<()> {
        zero_ahead(&self.file, self.len, &mut self.zeroed)
    }

    fn blocks(&self) -> bool {
        true
    }

    fn reader(&self) -> Arc<dyn LogRead> {
        Arc::new(FileReader(self.shared.clone()))
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
    fn data(&self) -> MutexGuard<'_, MemLogData> {
        lock(&self.0)
    }
}

/// An entry's size as the file log would store it.
fn record_bytes(entry: &Entry) -> u64 {
    (RECORD_HEADER_BYTES + encode(entry).len()) as u64
}

impl LogDisk for MemLog {
    fn load(&mut self, tail: usize) -> io::Result<LoadedLog> {
        let d = self.data();
        let skip = d.entries.len().saturating_sub(tail);
        Ok(LoadedLog {
            vote: d.vote,
            purged: d.purged,
            last: d.entries.values().next_back().map(|e| e.log_id),
            tail: d
                .entries
                .values()
                .skip(skip)
                .map(|e| (e.clone(), record_bytes(e)))
                .collect(),
        })
    }
    fn append(&mut self, entries: &[Entry]) -> io::Result<Vec<u64>> {
        let mut d = self.data();
        Ok(entries
            .iter()
            .map(|e| {
                d.entries.insert(e.log_id.index, e.clone());
                record_bytes(e)
            })
            .collect())
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
    fn sync(&mut self) -> io::Result<bool> {
        Ok(false)
    }
    fn blocks(&self) -> bool {
        false
    }
    fn reader(&self) -> Arc<dyn LogRead> {
        Arc::new(self.clone())
    }
}

impl LogRead for MemLog {
    fn read(&self, from: u64, to: u64) -> io::Result<Vec<Entry>> {
        if from > to {
            return Ok(Vec::new());
        }
        Ok(self
            .data()
            .entries
            .range(from..=to)
            .map(|(_, e)| e.clone())
            .collect())
    }

    fn blocks(&self) -> bool {
        false
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
        assert_eq!(log.load(0).unwrap().vote, None);
        for term in 1..=5 {
            log.save_vote(&Vote::new(term, 2)).unwrap();
        }
        drop(log);
        let mut log = FileLog::open(dir.path()).unwrap();
        assert_eq!(log.load(0).unwrap().vote, Some(Vote::new(5, 2)));
        // Votes after a reopen keep alternating slots from where the file left off.
        log.save_vote(&Vote::new(6, 3)).unwrap();
        drop(log);
        assert_eq!(
            FileLog::open(dir.path()).unwrap().load(0).unwrap().vote,
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
            FileLog::open(dir.path()).unwrap().load(0).unwrap().vote,
            Some(Vote::new(5, 2))
        );
    }

    #[test]
    fn a_vote_written_by_an_earlier_build_is_read_until_the_first_new_one() {
        let dir = tempfile::tempdir().unwrap();
        write_file_atomic(dir.path(), VOTE_FILE, &encode(&Vote::new(4, 1))).unwrap();
        let mut log = FileLog::open(dir.path()).unwrap();
        assert_eq!(log.load(0).unwrap().vote, Some(Vote::new(4, 1)));
        log.save_vote(&Vote::new(5, 1)).unwrap();
        drop(log);
        assert_eq!(
            FileLog::open(dir.path()).unwrap().load(0).unwrap().vote,
            Some(Vote::new(5, 1))
        );
    }
    use crate::types::Proposal;

    fn entry(index: u64) -> Entry {
        entry_in(1, index)
    }

    fn entry_in(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(Proposal {
                now_ms: index,
                requests: Default::default(),
            }),
        }
    }

    fn id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.log_id.index).collect()
    }

    fn loaded_indexes(dir: &Path) -> (Option<u64>, Vec<u64>) {
        let loaded = FileLog::open(dir).unwrap().load(usize::MAX).unwrap();
        let tail: Vec<Entry> = loaded.tail.into_iter().map(|(e, _)| e).collect();
        (loaded.purged.map(|p| p.index), indexes(&tail))
    }

    /// The log in `dir`, loaded, starting a new segment before every entry.
    fn one_entry_per_segment(dir: &Path) -> FileLog {
        let mut log = FileLog::open(dir).unwrap();
        log.load(usize::MAX).unwrap();
        log.segment_bytes = 1;
        log
    }

    fn segment_files(dir: &Path) -> usize {
        fs::read_dir(dir)
            .unwrap()
            .filter(|d| {
                let name = d.as_ref().unwrap().file_name();
                name.to_str().and_then(segment_seq).is_some()
            })
            .count()
    }

    #[test]
    fn file_log_survives_reopen_truncate_and_purge() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = FileLog::open(dir.path()).unwrap();
        assert!(log.load(usize::MAX).unwrap().tail.is_empty());
        log.append(&(1..=10).map(entry).collect::<Vec<_>>())
            .unwrap();
        log.truncate_from(8).unwrap();
        log.append(&[entry(8)]).unwrap();
        log.sync().unwrap();
        log.purge(id(3)).unwrap();
        log.append(&[entry(9)]).unwrap();
        log.sync().unwrap();
        log.save_vote(&Vote::new(3, 2)).unwrap();
        drop(log);

        let mut log = FileLog::open(dir.path()).unwrap();
        let loaded = log.load(usize::MAX).unwrap();
        assert_eq!(loaded.purged.map(|p| p.index), Some(3));
        assert_eq!(loaded.last, Some(id(9)));
        assert_eq!(loaded.vote, Some(Vote::new(3, 2)));
        assert_eq!(
            loaded_indexes(dir.path()),
            (Some(3), vec![4, 5, 6, 7, 8, 9])
        );
        // Offsets found on load let truncation cut at the right place.
        log.truncate_from(6).unwrap();
        log.sync().unwrap();
        assert_eq!(loaded_indexes(dir.path()), (Some(3), vec![4, 5]));
        // Asked for fewer, load decodes only the newest and still knows the last id.
        let loaded = FileLog::open(dir.path()).unwrap().load(1).unwrap();
        assert_eq!(loaded.tail.len(), 1);
        assert_eq!(loaded.last, Some(id(5)));
        let loaded = FileLog::open(dir.path()).unwrap().load(0).unwrap();
        assert!(loaded.tail.is_empty());
        assert_eq!(loaded.last, Some(id(5)));
    }

    #[test]
    fn segments_roll_go_whole_on_purge_and_truncation_crosses_them() {
        let dir = tempfile::tempdir().unwrap();
        // Entry k lands in segment k - 1.
        let mut log = one_entry_per_segment(dir.path());
        log.append(&(1..=6).map(entry).collect::<Vec<_>>()).unwrap();
        log.sync().unwrap();
        assert_eq!(segment_files(dir.path()), 6);
        let reader = log.reader();
        assert_eq!(
            reader.read(2, 5).unwrap(),
            (2..=5).map(entry).collect::<Vec<_>>()
        );
        // A purge deletes the segments that hold only purged entries.
        log.purge(id(3)).unwrap();
        assert_eq!(segment_files(dir.path()), 3);
        assert_eq!(loaded_indexes(dir.path()), (Some(3), vec![4, 5, 6]));
        assert_eq!(indexes(&reader.read(0, 9).unwrap()), vec![4, 5, 6]);
        // A truncation into an earlier segment deletes the later ones, the newest purge
        // record (in the last segment) with them, and writes that record again.
        log.truncate_from(5).unwrap();
        log.append(&[entry_in(2, 5)]).unwrap();
        log.sync().unwrap();
        let loaded = FileLog::open(dir.path()).unwrap().load(usize::MAX).unwrap();
        assert_eq!(loaded.purged, Some(id(3)));
        assert_eq!(
            loaded.last.map(|l| (l.leader_id.term, l.index)),
            Some((2, 5))
        );
        assert_eq!(indexes(&reader.read(0, 9).unwrap()), vec![4, 5]);
        drop(log);
        // Reopened, appends go on in the last segment and roll from there.
        let mut log = one_entry_per_segment(dir.path());
        log.append(&[entry_in(2, 6), entry_in(2, 7)]).unwrap();
        log.sync().unwrap();
        assert_eq!(loaded_indexes(dir.path()), (Some(3), vec![4, 5, 6, 7]));
        let reader = log.reader();
        assert_eq!(indexes(&reader.read(5, 7).unwrap()), vec![5, 6, 7]);
        // The purge of everything leaves the current segment only.
        log.purge(LogId::new(CommittedLeaderId::new(2, 1), 7))
            .unwrap();
        assert_eq!(segment_files(dir.path()), 1);
        let loaded = FileLog::open(dir.path()).unwrap().load(usize::MAX).unwrap();
        assert_eq!(
            (loaded.purged.map(|p| p.index), loaded.last),
            (Some(7), None)
        );
    }

    #[test]
    fn a_damaged_segment_before_the_last_is_an_error_not_a_shorter_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = one_entry_per_segment(dir.path());
        log.append(&(1..=3).map(entry).collect::<Vec<_>>()).unwrap();
        log.sync().unwrap();
        drop(log);
        let path = dir.path().join(LOG_FILE);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let err = FileLog::open(dir.path())
            .unwrap()
            .load(usize::MAX)
            .err()
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_reader_sees_written_entries_by_index_while_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = FileLog::open(dir.path()).unwrap();
        log.load(usize::MAX).unwrap();
        let reader = log.reader();
        assert!(reader.read(1, 5).unwrap().is_empty());
        log.append(&(1..=5).map(entry).collect::<Vec<_>>()).unwrap();
        assert_eq!(
            reader.read(2, 4).unwrap(),
            (2..=4).map(entry).collect::<Vec<_>>()
        );
        assert_eq!(indexes(&reader.read(4, 99).unwrap()), vec![4, 5]);
        log.purge(id(2)).unwrap();
        log.append(&[entry(6)]).unwrap();
        // The purge record between 5 and 6 is skipped; purged entries are gone.
        assert_eq!(indexes(&reader.read(0, 6).unwrap()), vec![3, 4, 5, 6]);
        log.truncate_from(5).unwrap();
        assert_eq!(indexes(&reader.read(3, 6).unwrap()), vec![3, 4]);
        assert!(reader.read(5, 6).unwrap().is_empty());
        // An empty range is no entries, on either kind of log.
        assert!(reader.read(4, 3).unwrap().is_empty());
        assert!(MemLog::default().reader().read(4, 3).unwrap().is_empty());
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
        assert_eq!(log.load(usize::MAX).unwrap().tail.len(), 2);
        log.append(&[entry(3)]).unwrap();
        log.sync().unwrap();
        assert_eq!(loaded_indexes(dir.path()), (None, vec![1, 2, 3]));
    }

    fn file_len(dir: &Path) -> u64 {
        fs::metadata(dir.join(LOG_FILE)).unwrap().len()
    }

    /// Zeros written ahead of the end are no records: appends overwrite them, a reopen
    /// loads the same entries and cuts the zeros off, a record torn inside them is dropped
    /// like any torn tail, and a truncation inside zeroed space brings nothing back.
    #[test]
    fn zeros_written_ahead_load_as_nothing_and_appends_overwrite_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = FileLog::open(dir.path()).unwrap();
        log.load(0).unwrap();
        log.append(&[entry(1), entry(2)]).unwrap();
        log.sync().unwrap();
        let written = file_len(dir.path());
        log.prepare().unwrap();
        assert_eq!(file_len(dir.path()), written + ZERO_AHEAD_BYTES);
        log.prepare().unwrap();
        assert_eq!(
            file_len(dir.path()),
            written + ZERO_AHEAD_BYTES,
            "nothing to do while enough zeros are left"
        );
        log.append(&[entry(3)]).unwrap();
        log.sync().unwrap();
        assert_eq!(
            file_len(dir.path()),
            written + ZERO_AHEAD_BYTES,
            "the append overwrote zeros"
        );
        drop(log);
        assert_eq!(loaded_indexes(dir.path()), (None, vec![1, 2, 3]));
        let data_end = file_len(dir.path());
        assert!(
            data_end < written + ZERO_AHEAD_BYTES,
            "the open cut the zeros off"
        );

        // A crash while writing a record into zeroed space: half a record, then zeros.
        let mut log = FileLog::open(dir.path()).unwrap();
        log.load(0).unwrap();
        log.prepare().unwrap();
        drop(log);
        let f = OpenOptions::new()
            .write(true)
            .open(dir.path().join(LOG_FILE))
            .unwrap();
        f.write_all_at(&[200, 0, 0, 0, 1, 2, 3, 4, 5], data_end)
            .unwrap();
        drop(f);
        let mut log = FileLog::open(dir.path()).unwrap();
        log.load(0).unwrap();
        assert_eq!(loaded_indexes(dir.path()), (None, vec![1, 2, 3]));
        assert_eq!(file_len(dir.path()), data_end, "the torn record is cut off");

        // Truncate inside zeroed space, then write a record of the same size in its place:
        // the entry after the cut must not come back.
        log.prepare().unwrap();
        log.append(&[entry(4), entry(5)]).unwrap();
        log.sync().unwrap();
        log.truncate_from(4).unwrap();
        log.append(&[entry_in(2, 4)]).unwrap();
        log.sync().unwrap();
        drop(log);
        let tail = FileLog::open(dir.path())
            .unwrap()
            .load(usize::MAX)
            .unwrap()
            .tail;
        let tail: Vec<Entry> = tail.into_iter().map(|(e, _)| e).collect();
        assert_eq!(indexes(&tail), vec![1, 2, 3, 4]);
        assert_eq!(tail.last().unwrap().log_id.leader_id.term, 2);
    }

    /// A finished segment ends with its last record, whatever was zeroed ahead of it.
    #[test]
    fn a_finished_segment_keeps_no_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = one_entry_per_segment(dir.path());
        log.append(&[entry(1)]).unwrap();
        log.sync().unwrap();
        log.prepare().unwrap();
        log.append(&[entry(2)]).unwrap();
        log.sync().unwrap();
        drop(log);
        let first = fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
        assert!(first < ZERO_AHEAD_BYTES, "{first} bytes");
        assert_eq!(loaded_indexes(dir.path()), (None, vec![1, 2]));
    }
}
