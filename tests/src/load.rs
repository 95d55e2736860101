//! A steady stream of holds through an API node while an operator changes the cluster: one
//! seat per hold, each retried on 503 with its idempotency key until acknowledged, every
//! acknowledgement timed so a test can print the longest write gap of an operation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::rest::Rest;

/// Seats per row of the venue a [`HoldWriter`] holds in (the most a row may have).
pub const SEATS_PER_ROW: u32 = 500;

/// Holds the `n`th seat (from 1) for user `fan{n}` until it is acknowledged, retrying 503s
/// with the same key (as a client must); returns the hold id.
pub async fn hold_until_acknowledged(api: &Rest, event: &str, n: u32) -> String {
    let fan = api.as_user(&format!("fan{n}"), "user").await;
    let seat = format!(
        "s1-{}-{}",
        (n - 1) / SEATS_PER_ROW + 1,
        (n - 1) % SEATS_PER_ROW + 1
    );
    let body = json!({"event_id": event, "seat_ids": [seat]});
    loop {
        let answer = fan
            .post_keyed("/v1/holds", &format!("move-{n}"), body.clone())
            .await;
        match answer.status {
            StatusCode::CREATED => return answer.str("/hold_id"),
            StatusCode::SERVICE_UNAVAILABLE => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("hold {n}: {other} {}", answer.text),
        }
    }
}

/// Holds seat after seat of `event` (a venue of [`SEATS_PER_ROW`]-seat rows) until stopped.
pub struct HoldWriter {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(Instant, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HoldWriter {
    pub fn start(client: Rest, event: String) -> HoldWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (flag, record) = (stop.clone(), acked.clone());
        let task = tokio::spawn(async move {
            let mut n = 1;
            while !flag.load(Ordering::SeqCst) {
                let hold_id = hold_until_acknowledged(&client, &event, n).await;
                record
                    .lock()
                    .expect("acknowledgements lock")
                    .push((Instant::now(), hold_id));
                n += 1;
            }
        });
        HoldWriter { stop, acked, task }
    }

    /// The holds acknowledged so far, as [`HoldWriter::stop`] returns them.
    pub fn acknowledged(&self) -> Vec<(Instant, String)> {
        self.acked.lock().expect("acknowledgements lock").clone()
    }

    /// Stops after the hold in flight; every acknowledged hold (the `n`th is `fan{n}`'s) and
    /// when it was acknowledged.
    pub async fn stop(self) -> Vec<(Instant, String)> {
        self.stop.store(true, Ordering::SeqCst);
        let acked = self.acked.clone();
        self.task.await.expect("hold writer");
        let acked = acked.lock().expect("acknowledgements lock").clone();
        acked
    }
}

/// The longest time between two acknowledgements (in time order, each with what was
/// acknowledged) that ends within `from..=to` (the gap an operation running over that
/// interval opened), or zero.
pub fn longest_gap<T>(acked: &[(Instant, T)], from: Instant, to: Instant) -> Duration {
    acked
        .windows(2)
        .filter(|w| w[1].0 >= from && w[0].0 <= to)
        .map(|w| w[1].0 - w[0].0)
        .max()
        .unwrap_or_default()
}

/// Checks through `api` that every acknowledged hold is there and active.
pub async fn assert_holds_present(api: &Rest, acked: &[(Instant, String)]) {
    for (n, (_, hold_id)) in acked.iter().enumerate() {
        let fan = api.as_user(&format!("fan{}", n + 1), "user").await;
        let hold = fan.get(&format!("/v1/holds/{hold_id}")).await;
        assert_eq!(hold.status, StatusCode::OK, "hold {hold_id}: {}", hold.text);
        assert_eq!(hold.body["status"], "active", "{}", hold.text);
    }
}
