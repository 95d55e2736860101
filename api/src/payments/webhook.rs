//! Webhook delivery for the sandbox: one owned task takes signed-to-be events from a
//! bounded queue and posts each to the webhook URL, retrying with exponential backoff
//! until a 2xx or the attempt limit. Each attempt is signed afresh (a new `t=`), so a
//! receiver's tolerance window applies to the attempt, not to the first try. Attempts
//! are concurrent (up to a limit), so events of one intent may arrive out of order.
//! An event waiting for its next attempt holds no attempt slot (as a real processor's
//! retry schedule does not): a receiver that refuses for a while delays those events,
//! never the new ones behind them. Only when [`WEBHOOK_MAX_WAITING`] events wait does the
//! task stop taking new ones, so the queue fills and the sandbox answers 503.
//! Dropping or shutting down the [`WebhookWorker`] cancels every pending delivery: the
//! sandbox is a stand-in processor and keeps nothing durable.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use reqwest::header::CONTENT_TYPE;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::clock::Clock;
use crate::problem::ApiError;

use super::signature::{signature_header, SIGNATURE_HEADER};

/// Delay before the second attempt; it doubles after each failure.
pub const WEBHOOK_INITIAL_DELAY_MS: u64 = 500;
/// Longest delay between two attempts.
pub const WEBHOOK_MAX_DELAY_MS: u64 = 5 * 60 * 1000;
/// Attempts per event before it is given up (about half an hour with the delays above).
pub const WEBHOOK_MAX_ATTEMPTS: u32 = 16;
/// Time one attempt may take, connect to last byte.
pub const WEBHOOK_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Attempts under way at once.
pub const WEBHOOK_MAX_IN_FLIGHT: usize = 128;
/// Events waiting for their next attempt; beyond it no new event is taken from the queue.
pub const WEBHOOK_MAX_WAITING: usize = 100_000;
/// Events queued for delivery; a full queue makes the sandbox answer 503. A processor takes
/// payments while its deliveries lag (a flash sale's first minute sends tens of thousands),
/// so this bounds memory (about half a KiB an event), not the rate of payments.
pub const WEBHOOK_QUEUE_CAPACITY: usize = 65_536;

/// How deliveries are retried; [`Default`] gives the named constants above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookRetryConfig {
    pub initial_delay_ms: u64,
    pub max_delay_ms: u64,
    pub max_attempts: u32,
    pub request_timeout_ms: u64,
    pub max_in_flight: usize,
}

impl Default for WebhookRetryConfig {
    fn default() -> Self {
        Self {
            initial_delay_ms: WEBHOOK_INITIAL_DELAY_MS,
            max_delay_ms: WEBHOOK_MAX_DELAY_MS,
            max_attempts: WEBHOOK_MAX_ATTEMPTS,
            request_timeout_ms: WEBHOOK_REQUEST_TIMEOUT_MS,
            max_in_flight: WEBHOOK_MAX_IN_FLIGHT,
        }
    }
}

impl WebhookRetryConfig {
    /// The wait after failed attempt number `attempt` (1-based).
    pub fn delay_after_ms(&self, attempt: u32) -> u64 {
        let doublings = attempt.saturating_sub(1).min(63);
        self.initial_delay_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_delay_ms)
    }
}

/// An event body ready to sign and send.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub event_id: String,
    pub body: Bytes,
}

/// Where and how to deliver.
struct Delivery {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: Arc<[u8]>,
    clock: Arc<dyn Clock>,
    retry: WebhookRetryConfig,
}

/// The delivery task. Dropping it aborts the task and every delivery under way;
/// [`WebhookWorker::shutdown`] does the same and waits until they are gone.
#[derive(Debug)]
pub struct WebhookWorker {
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl WebhookWorker {
    /// Spawns the task on the current Tokio runtime (an error outside one); returns it
    /// with the queue's sender.
    pub(crate) fn spawn(
        url: &str,
        secret: Arc<[u8]>,
        clock: Arc<dyn Clock>,
        retry: WebhookRetryConfig,
    ) -> Result<(mpsc::Sender<Outgoing>, WebhookWorker), ApiError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| ApiError::Internal("the webhook worker needs a tokio runtime".into()))?;
        let url = reqwest::Url::parse(url)
            .map_err(|error| ApiError::Internal(format!("bad webhook url {url}: {error}")))?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(retry.request_timeout_ms))
            .build()
            .map_err(|error| {
                ApiError::Internal(format!("building the webhook client failed: {error}"))
            })?;
        let (sender, receiver) = mpsc::channel(WEBHOOK_QUEUE_CAPACITY);
        let (shutdown, shutdown_rx) = oneshot::channel();
        let delivery = Arc::new(Delivery {
            client,
            url,
            secret,
            clock,
            retry,
        });
        let task = runtime.spawn(run(delivery, receiver, shutdown_rx));
        Ok((
            sender,
            WebhookWorker {
                shutdown: Some(shutdown),
                task: Some(task),
            },
        ))
    }

    /// Stops the task, cancelling pending deliveries, and waits for it to end.
    pub async fn shutdown(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            if let Err(error) = task.await {
                if error.is_panic() {
                    tracing::error!(%error, "webhook worker panicked");
                }
            }
        }
    }
}

impl Drop for WebhookWorker {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// An event waiting for attempt number `attempt`, due at `due`; ordered by due time, then
/// by arrival (`seq`).
struct Waiting {
    due: Instant,
    seq: u64,
    attempt: u32,
    outgoing: Outgoing,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}

impl Eq for Waiting {}

impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

async fn run(
    delivery: Arc<Delivery>,
    mut queue: mpsc::Receiver<Outgoing>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let retry = delivery.retry;
    // Dropping the set at the end aborts whatever attempt is still under way.
    let mut in_flight: JoinSet<Option<(u32, Outgoing)>> = JoinSet::new();
    let mut waiting: BinaryHeap<Reverse<Waiting>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut queue_open = true;
    // Once every sender is gone, finish what is under way or waiting, then stop.
    while queue_open || !in_flight.is_empty() || !waiting.is_empty() {
        // Due retries go first: they are older than anything in the queue.
        let now = Instant::now();
        while in_flight.len() < retry.max_in_flight
            && waiting.peek().is_some_and(|Reverse(w)| w.due <= now)
        {
            let Some(Reverse(w)) = waiting.pop() else {
                break;
            };
            in_flight.spawn(attempt(delivery.clone(), w.outgoing, w.attempt));
        }
        let next_due = waiting.peek().map(|Reverse(w)| w.due);
        let can_start = in_flight.len() < retry.max_in_flight;
        tokio::select! {
            _ = &mut shutdown => break,
            outgoing = queue.recv(), if queue_open && can_start && waiting.len() < WEBHOOK_MAX_WAITING => {
                match outgoing {
                    Some(outgoing) => {
                        in_flight.spawn(attempt(delivery.clone(), outgoing, 1));
                    }
                    None => queue_open = false,
                }
            }
            Some(finished) = in_flight.join_next(), if !in_flight.is_empty() => {
                match finished {
                    Ok(Some((done, outgoing))) if done < retry.max_attempts => {
                        seq += 1;
                        waiting.push(Reverse(Waiting {
                            due: Instant::now() + Duration::from_millis(retry.delay_after_ms(done)),
                            seq,
                            attempt: done + 1,
                            outgoing,
                        }));
                    }
                    Ok(Some((done, outgoing))) => {
                        tracing::error!(event_id = %outgoing.event_id, attempts = done, "webhook given up");
                    }
                    Ok(None) => {}
                    Err(error) => {
                        if error.is_panic() {
                            tracing::error!(%error, "webhook delivery panicked");
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)), if can_start && next_due.is_some() => {}
        }
    }
}

/// Posts one event once; `None` when it was delivered, else the event back with the number
/// of the attempt that failed.
async fn attempt(
    delivery: Arc<Delivery>,
    outgoing: Outgoing,
    attempt: u32,
) -> Option<(u32, Outgoing)> {
    let timestamp_secs = delivery.clock.now_ms() / 1000;
    let signature = signature_header(&delivery.secret, timestamp_secs, &outgoing.body);
    let result = delivery
        .client
        .post(delivery.url.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .body(outgoing.body.clone())
        .send()
        .await;
    match result {
        Ok(response) if response.status().is_success() => {
            tracing::debug!(event_id = %outgoing.event_id, attempt, "webhook delivered");
            return None;
        }
        Ok(response) => {
            tracing::warn!(event_id = %outgoing.event_id, attempt, status = %response.status(), "webhook refused");
        }
        Err(error) => {
            tracing::warn!(event_id = %outgoing.event_id, attempt, %error, "webhook not delivered");
        }
    }
    Some((attempt, outgoing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let retry = WebhookRetryConfig {
            initial_delay_ms: 500,
            max_delay_ms: 3_000,
            ..WebhookRetryConfig::default()
        };
        let delays: Vec<u64> = (1..=6)
            .map(|attempt| retry.delay_after_ms(attempt))
            .collect();
        assert_eq!(delays, [500, 1_000, 2_000, 3_000, 3_000, 3_000]);
        assert_eq!(retry.delay_after_ms(u32::MAX), 3_000);
    }

    #[test]
    fn default_schedule_gives_up_after_about_forty_minutes() {
        let retry = WebhookRetryConfig::default();
        let total_ms: u64 = (1..retry.max_attempts)
            .map(|attempt| retry.delay_after_ms(attempt))
            .sum();
        assert!((30 * 60_000..60 * 60_000).contains(&total_ms), "{total_ms}");
    }
}
