//! A group's checkpoint file: the hot records' changes, one CRC'd **segment** per checkpoint,
//! appended and fdatasync'd, named by the position sled commits.
//!
//! A segment lists changed records and deletions; the file is the segments in checkpoint
//! order, so folding them from the start gives the checkpointed records. The file alone is
//! not the commit point: every append returns the [`Position`] (generation and length) it
//! reached, and [`super::state::SledState`] stores that position in the same sled batch as
//! the applied log id. Bytes past the committed length (an append whose batch never landed)
//! are cut off when the file is opened, and files of other generations (a rewrite whose
//! batch never landed, or the file a landed rewrite replaced) are deleted, so what loads is
//! always what a landed batch named.
//!
//! Compaction writes the live records to a fresh file of the next generation; the old file
//! is deleted only after sled has flushed the batch naming the new one ([`Self::switch`]).
//!
//! Before this file, each segment was a sled value: larger than sled keeps inline, so sled
//! wrote every one as a new blob file of its own: sled's part, with the file creation and
//! ext4's inode allocation, was 9.2 % of a replicated hold's CPU, and is 1 % with this file
//! (BENCHMARKS.md).

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{create_durably, sync_dir};

/// A rewrite splits the live records into segments of about this size.
const SEGMENT_TARGET_BYTES: usize = 8 << 20;
/// A frame: the segment's length (u32 LE), its CRC-32 (u32 LE), then its bytes.
const FRAME_HEADER: usize = 8;
const SUFFIX: &str = ".seg";

/// How far a landed batch says the checkpoint file goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub generation: u64,
    pub len: u64,
}

/// The file the committed position names, open for appends.
#[derive(Debug)]
pub struct Current {
    generation: u64,
    file: File,
    /// The committed length: appends go here.
    len: u64,
}

/// A group's checkpoint file (none before the first checkpoint).
#[derive(Debug)]
pub struct CheckpointFile {
    dir: PathBuf,
    current: Option<Current>,
}

fn invalid(e: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

fn file_name(generation: u64) -> String {
    format!("{generation:020}{SUFFIX}")
}

/// A segment's bytes, unframed (as earlier versions stored segments in sled): per change,
/// the key's length (u32 LE) and bytes, then the value's length and bytes, or `u32::MAX`
/// for a deletion.
#[cfg(test)]
pub(crate) fn encode_segment<'a>(
    changes: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    size_hint: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_hint);
    encode_segment_into(&mut out, changes);
    out
}

/// One segment's changes in the format [`fold_segment`] reads, appended to `out`.
fn encode_segment_into<'a>(
    out: &mut Vec<u8>,
    changes: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
) {
    for (key, value) in changes {
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
        match value {
            Some(v) => {
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                out.extend_from_slice(v);
            }
            None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
        }
    }
}

/// One segment framed for the file (its length and CRC, then its bytes), encoded straight
/// into the buffer the append writes, with no copy between.
pub struct Framed(Vec<u8>);

impl Framed {
    /// `changes` as one framed segment; `size_hint` is the segment's size.
    pub fn encode<'a>(
        changes: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
        size_hint: usize,
    ) -> io::Result<Framed> {
        let mut out = Vec::new();
        encode_frame_into(&mut out, changes, size_hint)?;
        Ok(Framed(out))
    }
}

/// `changes` as one framed segment in `out`, which is cleared first (a rewrite reuses one
/// buffer for all its frames instead of faulting in a fresh one per frame); `size_hint` is
/// the segment's size.
fn encode_frame_into<'a>(
    out: &mut Vec<u8>,
    changes: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    size_hint: usize,
) -> io::Result<()> {
    out.clear();
    out.reserve(FRAME_HEADER + size_hint);
    out.extend_from_slice(&[0; FRAME_HEADER]);
    encode_segment_into(out, changes);
    let len = u32::try_from(out.len() - FRAME_HEADER)
        .map_err(|_| invalid("a checkpoint segment over 4 GiB"))?;
    let crc = crc32fast::hash(&out[FRAME_HEADER..]);
    out[..4].copy_from_slice(&len.to_le_bytes());
    out[4..FRAME_HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Applies the changes in `segment` to `records`.
pub fn fold_segment(segment: &[u8], records: &mut BTreeMap<Vec<u8>, Vec<u8>>) -> io::Result<()> {
    for_each_change(segment, |key, value| match value {
        Some(value) => {
            records.insert(key.to_vec(), value.to_vec());
        }
        None => {
            records.remove(key);
        }
    })
}

/// Live records borrowed from a mapped checkpoint file, in no particular order: a rewrite
/// needs each once, not sorted (a B-tree's key comparisons were most of a compaction).
/// The hasher's seed is fixed, so the same file compacts to the same bytes.
pub type BorrowedRecords<'a> = HashMap<&'a [u8], &'a [u8], foldhash::fast::FixedState>;

/// [`fold_segment`] without a copy: the records borrow the segment's bytes.
fn fold_segment_borrowed<'a>(
    segment: &'a [u8],
    records: &mut BorrowedRecords<'a>,
) -> io::Result<()> {
    for_each_change(segment, |key, value| match value {
        Some(value) => {
            records.insert(key, value);
        }
        None => {
            records.remove(key);
        }
    })
}

/// Calls `change` with each change in `segment`, in order: a key and its new value, or
/// `None` for a deletion.
fn for_each_change<'a>(
    segment: &'a [u8],
    mut change: impl FnMut(&'a [u8], Option<&'a [u8]>),
) -> io::Result<()> {
    const CUT: &str = "a state segment ends inside a record";
    let mut rest = segment;
    while !rest.is_empty() {
        let key_len = take_u32(&mut rest, CUT)? as usize;
        let key = take(&mut rest, key_len, CUT)?;
        match take_u32(&mut rest, CUT)? {
            u32::MAX => change(key, None),
            n => change(key, Some(take(&mut rest, n as usize, CUT)?)),
        }
    }
    Ok(())
}

/// Calls `segment` with each frame's segment in `bytes` (a checkpoint file's committed
/// bytes, of `generation`), in order; a frame whose bytes fail their CRC is an error.
fn for_each_segment<'a>(
    bytes: &'a [u8],
    generation: u64,
    mut segment: impl FnMut(&'a [u8]) -> io::Result<()>,
) -> io::Result<()> {
    const CUT: &str = "a checkpoint file ends inside a frame";
    let mut rest = bytes;
    while !rest.is_empty() {
        let len = take_u32(&mut rest, CUT)? as usize;
        let crc = take_u32(&mut rest, CUT)?;
        let bytes = take(&mut rest, len, CUT)?;
        if crc32fast::hash(bytes) != crc {
            return Err(invalid(format!(
                "a segment of checkpoint file {} fails its CRC",
                file_name(generation)
            )));
        }
        segment(bytes)?;
    }
    Ok(())
}

/// A checkpoint file's committed bytes mapped into memory, for a compaction to fold the
/// live records out of without copying them ([`Self::live_records`]).
pub struct MappedSegments {
    /// `None` for an empty file (a mapping cannot be empty).
    map: Option<memmap2::Mmap>,
    generation: u64,
}

impl MappedSegments {
    /// The live records (every segment folded, in order), borrowing the mapped bytes: no
    /// allocation per record, and no buffer the size of the file to fault in and fill.
    pub fn live_records(&self) -> io::Result<BorrowedRecords<'_>> {
        let bytes = self.map.as_deref().unwrap_or_default();
        // A guess at the record count (a record is some hundreds of bytes, and a file due for
        // compaction holds about half garbage); a wrong guess costs a rehash, no more.
        let mut records = BorrowedRecords::with_capacity_and_hasher(
            bytes.len() / 200,
            foldhash::fast::FixedState::default(),
        );
        for_each_segment(bytes, self.generation, |segment| {
            fold_segment_borrowed(segment, &mut records)
        })?;
        Ok(records)
    }
}

fn take<'a>(rest: &mut &'a [u8], n: usize, what: &str) -> io::Result<&'a [u8]> {
    if rest.len() < n {
        return Err(invalid(what));
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn take_u32(rest: &mut &[u8], what: &str) -> io::Result<u32> {
    Ok(u32::from_le_bytes(
        take(rest, 4, what)?.try_into().expect("4 bytes"),
    ))
}

impl CheckpointFile {
    /// Opens `dir`'s file at `committed` (cutting off what follows it) and deletes every other
    /// generation's file.
    pub fn open(dir: &Path, committed: Option<Position>) -> io::Result<CheckpointFile> {
        std::fs::create_dir_all(dir)?;
        let keep = committed.map(|p| file_name(p.generation));
        let mut removed = false;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if Some(entry.file_name().to_string_lossy().as_ref()) != keep.as_deref() {
                std::fs::remove_file(entry.path())?;
                removed = true;
            }
        }
        if removed {
            sync_dir(dir)?;
        }
        let current = match committed {
            None => None,
            Some(p) => {
                let path = dir.join(file_name(p.generation));
                let file = OpenOptions::new().read(true).write(true).open(&path)?;
                let on_disk = file.metadata()?.len();
                if on_disk < p.len {
                    return Err(invalid(format!(
                        "checkpoint file {} holds {on_disk} bytes, {} were committed",
                        path.display(),
                        p.len
                    )));
                }
                if on_disk > p.len {
                    // An append whose batch never landed.
                    file.set_len(p.len)?;
                    file.sync_data()?;
                }
                Some(Current {
                    generation: p.generation,
                    file,
                    len: p.len,
                })
            }
        };
        Ok(CheckpointFile {
            dir: dir.to_owned(),
            current,
        })
    }

    /// The committed bytes in the file.
    pub fn committed_len(&self) -> u64 {
        self.current.as_ref().map_or(0, |c| c.len)
    }

    /// The file's generation (0 before the first checkpoint), one more per rewrite.
    pub fn generation(&self) -> u64 {
        self.current.as_ref().map_or(0, |c| c.generation)
    }

    /// Creates (or empties) the file of `generation`, its directory entry durable.
    fn create(&self, generation: u64) -> io::Result<File> {
        create_durably(&self.dir, &file_name(generation))
    }

    /// Appends `framed` durably at the committed end and returns the position for the
    /// batch to commit; [`Self::landed`] once it has. A failed append leaves bytes past the
    /// committed end, which the next append overwrites and an open cuts off.
    pub fn append(&mut self, framed: &Framed) -> io::Result<Position> {
        if self.current.is_none() {
            let file = self.create(1)?;
            self.current = Some(Current {
                generation: 1,
                file,
                len: 0,
            });
        }
        let current = self.current.as_ref().expect("created above");
        current.file.write_all_at(&framed.0, current.len)?;
        current.file.sync_data()?;
        Ok(Position {
            generation: current.generation,
            len: current.len + framed.0.len() as u64,
        })
    }

    /// A batch committed `position` (from [`Self::append`]).
    pub fn landed(&mut self, position: Position) {
        if let Some(current) = &mut self.current {
            if current.generation == position.generation {
                current.len = position.len;
            }
        }
    }

    /// Writes `records` (the live ones, each key once, in any order) to a new file of the
    /// next generation, durably, and returns its position for the batch to commit and the
    /// file for [`Self::switch`].
    pub fn rewrite<'a>(
        &self,
        records: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    ) -> io::Result<(Position, Current)> {
        let generation = self.generation() + 1;
        let file = self.create(generation)?;
        let mut out = BufWriter::with_capacity(1 << 20, &file);
        let mut len = 0u64;
        let mut chunk: Vec<(&[u8], Option<&[u8]>)> = Vec::new();
        let mut chunk_bytes = 0;
        let mut frame = Vec::new();
        let mut flush = |chunk: &mut Vec<(&[u8], Option<&[u8]>)>,
                         bytes: &mut usize,
                         out: &mut BufWriter<&File>|
         -> io::Result<()> {
            if chunk.is_empty() {
                return Ok(());
            }
            encode_frame_into(&mut frame, chunk.drain(..), *bytes)?;
            out.write_all(&frame)?;
            len += frame.len() as u64;
            *bytes = 0;
            Ok(())
        };
        for (key, value) in records {
            chunk_bytes += key.len() + value.len() + 8;
            chunk.push((key, Some(value)));
            if chunk_bytes >= SEGMENT_TARGET_BYTES {
                flush(&mut chunk, &mut chunk_bytes, &mut out)?;
            }
        }
        flush(&mut chunk, &mut chunk_bytes, &mut out)?;
        out.flush()?;
        drop(out);
        file.sync_data()?;
        Ok((
            Position { generation, len },
            Current {
                generation,
                file,
                len,
            },
        ))
    }

    /// Makes `next` (from [`Self::rewrite`]) the current file and deletes the one it
    /// replaces. Only once the batch naming `next` is durable: until then a restart loads the
    /// old one.
    pub fn switch(&mut self, next: Current) -> io::Result<()> {
        let old = self.current.replace(next).map(|c| c.generation);
        if let Some(old) = old {
            std::fs::remove_file(self.dir.join(file_name(old)))?;
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Folds the committed segments, in order, into `records`; a frame whose bytes fail
    /// their CRC is an error, not a state.
    pub fn fold_into(&self, records: &mut BTreeMap<Vec<u8>, Vec<u8>>) -> io::Result<()> {
        let Some(current) = &self.current else {
            return Ok(());
        };
        let mut bytes = vec![0; current.len as usize];
        current.file.read_exact_at(&mut bytes, 0).map_err(|e| {
            invalid(format!(
                "checkpoint file {}: {e}",
                file_name(current.generation)
            ))
        })?;
        for_each_segment(&bytes, current.generation, |segment| {
            fold_segment(segment, records)
        })
    }

    /// The committed bytes, mapped (see [`MappedSegments`]); `None` before the first
    /// checkpoint.
    pub fn map_committed(&self) -> io::Result<Option<MappedSegments>> {
        let Some(current) = &self.current else {
            return Ok(None);
        };
        let map = match current.len {
            0 => None,
            len => {
                let len = usize::try_from(len)
                    .map_err(|_| invalid("a checkpoint file larger than memory"))?;
                // SAFETY: the mapping is read-only and covers only the committed bytes. This
                // process alone writes the file (it lives in the node's own data directory),
                // appends only past the committed length and never truncates it while it is
                // open; a rewrite writes a new file, and removing this one while mapped keeps
                // its pages until the mapping is dropped.
                let map = unsafe {
                    memmap2::MmapOptions::new()
                        .len(len)
                        .populate()
                        .map(&current.file)?
                };
                Some(map)
            }
        };
        Ok(Some(MappedSegments {
            map,
            generation: current.generation,
        }))
    }
}
