//! The one shape of the inventory's queues: take the first waiting item, add whatever else
//! is already queued up to a budget, hand the batch on. The client's batcher and the leader's
//! proposer also bound how many batches are in flight ([`batch_and_dispatch`]); the log
//! writer thread uses [`drain_ready`] alone.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

/// `first` plus the items `next` yields without waiting, while the batch's total `weight` is
/// below `budget` (so a batch holds at least one item and may end one item over budget).
pub fn drain_ready<T>(
    first: T,
    budget: usize,
    weight: impl Fn(&T) -> usize,
    mut next: impl FnMut() -> Option<T>,
) -> Vec<T> {
    let mut total = weight(&first);
    let mut batch = vec![first];
    while total < budget {
        match next() {
            Some(item) => {
                total += weight(&item);
                batch.push(item);
            }
            None => break,
        }
    }
    batch
}

/// Receives items until every sender is gone, batching what is ready ([`drain_ready`]) and
/// running up to `max_inflight` `dispatch`ed batches at once; waits for those in flight
/// before returning.
pub async fn batch_and_dispatch<T, Fut>(
    mut rx: mpsc::Receiver<T>,
    max_inflight: usize,
    budget: usize,
    weight: impl Fn(&T) -> usize,
    mut dispatch: impl FnMut(Vec<T>) -> Fut,
) where
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(max_inflight));
    let mut inflight = JoinSet::new();
    loop {
        let first = tokio::select! {
            // In a fixed order, so that a simulated run does not depend on tokio's draw.
            biased;
            item = rx.recv() => match item { Some(item) => item, None => break },
            Some(_) = inflight.join_next(), if !inflight.is_empty() => continue,
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let batch = drain_ready(first, budget, &weight, || rx.try_recv().ok());
        let sending = dispatch(batch);
        crate::spawn::spawn_into(&mut inflight, async move {
            let _permit = permit;
            sending.await
        });
    }
    while inflight.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_takes_what_is_ready_up_to_its_budget() {
        let mut queued = vec![3, 2, 1].into_iter();
        let batch = drain_ready(4, 6, |n| *n, || queued.next());
        assert_eq!(batch, vec![4, 3], "stops once the budget is reached");
        let batch = drain_ready(9, 6, |n| *n, || panic!("over budget: nothing more taken"));
        assert_eq!(batch, vec![9]);
        let mut empty = std::iter::empty();
        assert_eq!(drain_ready(1, 6, |_| 1, || empty.next()), vec![1]);
    }

    #[tokio::test]
    async fn every_item_is_dispatched_once_in_order() {
        let (tx, rx) = mpsc::channel(16);
        for n in 0..10 {
            tx.send(n).await.unwrap();
        }
        drop(tx);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        batch_and_dispatch(
            rx,
            2,
            4,
            |_| 1,
            move |batch| {
                sink.lock().unwrap().extend(batch);
                async {}
            },
        )
        .await;
        assert_eq!(*seen.lock().unwrap(), (0..10).collect::<Vec<_>>());
    }
}
