//! Wall clocks under the seed: each storage node reads simulated time plus an offset the
//! fault schedule sets, so skews and jumps (forward and backward) hit exactly the code that
//! stamps proposals, judges expiry on reads and decides sweeps.

use std::sync::atomic::{AtomicI64, Ordering};

use boxoffice_raft::Clock;

/// The simulated wall clock starts at 2026-01-01T00:00:00Z.
pub const EPOCH_MS: u64 = 1_767_225_600_000;

/// Simulated milliseconds since the simulation started (0 outside a simulated host).
pub fn sim_ms() -> u64 {
    turmoil::sim_elapsed()
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Simulated nanoseconds since the simulation started: the one real-time axis histories use.
pub fn sim_ns() -> u64 {
    turmoil::sim_elapsed()
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// One node's wall clock: simulated time plus a settable offset.
#[derive(Debug, Default)]
pub struct SkewedClock {
    offset_ms: AtomicI64,
}

impl SkewedClock {
    pub fn set_offset_ms(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, Ordering::Relaxed);
    }

    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }
}

impl Clock for SkewedClock {
    fn now_ms(&self) -> u64 {
        (EPOCH_MS + sim_ms()).saturating_add_signed(self.offset_ms())
    }
}
