//! Durable storage behind traits with two implementations each: on disk (our fdatasync'd
//! log file; sled and a checkpoint file for state records) and in memory (for the simulator).

pub mod checkpoint_file;
pub mod log;
pub mod log_file;
pub mod node_log;
pub mod state;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` to `dir/name` atomically and durably: a temporary file written and
/// fsync'd, renamed over the name, then the directory fsync'd so the rename survives a power
/// loss. The one such function in the workspace (votes, snapshots, `node.json`, `dev.json`).
pub fn write_file_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// Makes the creations, renames and removals of entries in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir/name` empty (emptying it if it exists), open to read and write, with its
/// directory entry durable before anything written to it can count.
pub fn create_durably(dir: &Path, name: &str) -> io::Result<File> {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join(name))?;
    sync_dir(dir)?;
    Ok(file)
}
