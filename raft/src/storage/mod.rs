//! Durable storage behind traits with two implementations each: on disk (our fdatasync'd
//! log file; sled for state records) and in memory (for the simulator).

pub mod log;
pub mod state;
