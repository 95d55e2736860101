//! Where the crate's background tasks run: on the Tokio runtime, or, in a simulation, on the
//! thread's `LocalSet`.
//!
//! A Tokio runtime keeps its tasks in lists sharded by task id, and task ids come from one
//! counter for the whole process. When turmoil crashes a simulated host it drops the host's
//! runtime, which drops the tasks shard by shard, and each dropped socket sends its FIN in that
//! order. So two simulations sharing a process (CI's test threads) drew each other's ids,
//! crashed hosts closed their connections in a different order, and one seed ran two
//! histories. A `LocalSet` keeps its tasks in one list in spawn order, so with
//! [`spawn_on_local_set`] switched on, a crash closes them in an order the seed alone decides.

use std::cell::Cell;
use std::future::Future;

use tokio::task::{AbortHandle, JoinHandle, JoinSet};

thread_local! {
    static LOCAL: Cell<bool> = const { Cell::new(false) };
}

/// From now on, tasks this crate spawns on this thread go to the current `LocalSet` (a
/// simulation, whose every host runs one), or back to the runtime with `false`.
pub fn spawn_on_local_set(on: bool) {
    LOCAL.with(|local| local.set(on));
}

fn local() -> bool {
    LOCAL.with(Cell::get)
}

/// `tokio::spawn`, or `spawn_local` under [`spawn_on_local_set`].
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if local() {
        tokio::task::spawn_local(future)
    } else {
        tokio::spawn(future)
    }
}

/// `set.spawn`, or `set.spawn_local` under [`spawn_on_local_set`].
pub fn spawn_into<T, F>(set: &mut JoinSet<T>, future: F) -> AbortHandle
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    if local() {
        set.spawn_local(future)
    } else {
        set.spawn(future)
    }
}
