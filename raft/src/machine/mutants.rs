//! Deliberately broken state machines, for the simulator to prove its checker catches them.
//!
//! Without the `mutants` cargo feature no mutant can be switched on: [`active`] is `false`.
//! (When the whole workspace is built at once, cargo's feature unification compiles the
//! switch into every binary too, where nothing ever sets it.) With it, [`set`] switches one on for the calling thread only (a
//! turmoil simulation runs every node on the thread that steps it), so parallel tests and
//! other simulations stay correct. Nothing here is replicated or stored.

/// A deliberately broken rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutant {
    /// The best-available picker counts seats held by live holds as free.
    PickHeldSeats,
    /// A payment sells a hold still marked active whose `expires_at_ms` has passed (the
    /// sweep has not run yet).
    ConfirmAfterExpiry,
    /// The waiting room's admission step admits from the tail of the line, not its head.
    AdmitOutOfOrder,
    /// A replica's storage drops the records changed by an apply whose first entry's index
    /// is a multiple of [`LOST_CHANGES_EVERY`] before they reach a checkpoint, while the
    /// checkpoint still records that entry as applied: a restart from that checkpoint never
    /// re-applies it.
    CheckpointLosesChanges,
}

/// Which applies [`Mutant::CheckpointLosesChanges`] loses the changes of.
pub const LOST_CHANGES_EVERY: u64 = 5;

#[cfg(feature = "mutants")]
thread_local! {
    static ACTIVE: std::cell::Cell<Option<Mutant>> = const { std::cell::Cell::new(None) };
}

/// Switches `mutant` on (or all off with `None`) for this thread; answers the previous one.
#[cfg(feature = "mutants")]
pub fn set(mutant: Option<Mutant>) -> Option<Mutant> {
    ACTIVE.with(|active| active.replace(mutant))
}

/// Whether `mutant` is switched on for this thread.
pub(crate) fn active(mutant: Mutant) -> bool {
    #[cfg(feature = "mutants")]
    {
        ACTIVE.with(|active| active.get() == Some(mutant))
    }
    #[cfg(not(feature = "mutants"))]
    {
        let _ = mutant;
        false
    }
}
