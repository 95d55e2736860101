//! The waiting room's live fan-out behind `GET /v1/events/{id}/queue/{ticket}/stream`, built
//! like the seat map's: not one polling task per waiting user, but one task per API node
//! that, every [`QUEUE_PUSH_INTERVAL_MS`], asks each event's shard once where all the places
//! streamed from this node stand, and sends that one answer to a bounded broadcast channel
//! shared by every stream of the event; each stream picks its own place out of it.
//!
//! Streaming keeps a place alive: for each event the read is a keep-alive
//! ([`boxoffice_raft::types::TouchQueueCmd`]) at least every quarter of the room's
//! `abandon_after_seconds` (at most every [`QUEUE_TOUCH_INTERVAL_MAX_MS`]), a plain
//! linearizable read otherwise, so a line of 100,000 streams writes one log entry per event
//! every few seconds rather than one per user.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use boxoffice_raft::types::{PlaceView, TouchQueueCmd, UserId, MAX_PLACES_PER_TOUCH};
use tokio::sync::broadcast;

use crate::app::AppState;
use crate::ids::random_hex;

/// How often streamed places are read and pushed.
pub const QUEUE_PUSH_INTERVAL_MS: u64 = 1_000;
/// Longest time between two keep-alives of streamed places.
pub const QUEUE_TOUCH_INTERVAL_MAX_MS: u64 = 30_000;
/// Most waiting-room streams one API node serves.
pub const MAX_QUEUE_STREAMS: usize = 100_000;
/// Snapshots a stream may fall behind; each is complete, so a lagging stream skips to the
/// newest instead of being dropped.
pub const QUEUE_STREAM_BUFFER: usize = 4;

/// A place: its owner and ticket number.
pub type PlaceKey = (UserId, u64);

/// Where every place streamed from this node for one event stood at `at_ms`.
#[derive(Debug)]
pub struct RoomSnapshot {
    pub at_ms: u64,
    /// `None`: the place no longer exists (a new place replaced it after a leave).
    pub places: BTreeMap<PlaceKey, Option<PlaceView>>,
}

struct RoomWatch {
    /// Streams per place (a user may open several).
    watchers: BTreeMap<PlaceKey, usize>,
    sender: broadcast::Sender<Arc<RoomSnapshot>>,
    last_touch_ms: u64,
}

/// The streamed places of this node, per event.
#[derive(Default)]
pub struct QueueHub {
    rooms: Mutex<BTreeMap<String, RoomWatch>>,
    n_streams: AtomicUsize,
}

/// The hub is full.
#[derive(Debug)]
pub struct TooManyStreams;

/// One open stream; dropping it stops watching the place.
pub struct Watch {
    hub: Arc<QueueHub>,
    event_id: String,
    key: PlaceKey,
    pub receiver: broadcast::Receiver<Arc<RoomSnapshot>>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.hub.n_streams.fetch_sub(1, Ordering::AcqRel);
        let mut rooms = self.hub.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let Some(room) = rooms.get_mut(&self.event_id) else {
            return;
        };
        if let Some(n) = room.watchers.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                room.watchers.remove(&self.key);
            }
        }
        if room.watchers.is_empty() {
            rooms.remove(&self.event_id);
        }
    }
}

impl QueueHub {
    /// Starts watching a place (its owner was checked by the caller).
    pub fn watch(self: &Arc<Self>, event_id: &str, key: PlaceKey) -> Result<Watch, TooManyStreams> {
        if self.n_streams.fetch_add(1, Ordering::AcqRel) >= MAX_QUEUE_STREAMS {
            self.n_streams.fetch_sub(1, Ordering::AcqRel);
            return Err(TooManyStreams);
        }
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let room = rooms
            .entry(event_id.to_owned())
            .or_insert_with(|| RoomWatch {
                watchers: BTreeMap::new(),
                sender: broadcast::channel(QUEUE_STREAM_BUFFER).0,
                last_touch_ms: 0,
            });
        *room.watchers.entry(key.clone()).or_default() += 1;
        let receiver = room.sender.subscribe();
        Ok(Watch {
            hub: self.clone(),
            event_id: event_id.to_owned(),
            key,
            receiver,
        })
    }

    pub fn n_streams(&self) -> usize {
        self.n_streams.load(Ordering::Acquire)
    }

    /// The events with streams, their places, and whether this round keeps them alive
    /// (`touch_every_ms` gives an event's keep-alive interval); marks those touched.
    fn due(
        &self,
        now_ms: u64,
        touch_every_ms: impl Fn(&str) -> u64,
    ) -> Vec<(String, Vec<PlaceKey>, bool)> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        rooms
            .iter_mut()
            .map(|(event_id, room)| {
                let touch = now_ms.saturating_sub(room.last_touch_ms) >= touch_every_ms(event_id);
                if touch {
                    room.last_touch_ms = now_ms;
                }
                (
                    event_id.clone(),
                    room.watchers.keys().cloned().collect(),
                    touch,
                )
            })
            .collect()
    }

    fn publish(&self, event_id: &str, snapshot: RoomSnapshot) {
        let rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(room) = rooms.get(event_id) {
            // No receiver left is fine: the last stream just closed.
            let _ = room.sender.send(Arc::new(snapshot));
        }
    }
}

/// The keep-alive interval of an event's streamed places: a quarter of its abandonment
/// window, within 1 s..=[`QUEUE_TOUCH_INTERVAL_MAX_MS`].
fn touch_every_ms(state: &AppState, event_id: &str) -> u64 {
    state
        .catalog
        .event(event_id)
        .map(|e| e.queue.abandon_after_seconds.saturating_mul(250))
        .unwrap_or(QUEUE_TOUCH_INTERVAL_MAX_MS)
        .clamp(QUEUE_PUSH_INTERVAL_MS, QUEUE_TOUCH_INTERVAL_MAX_MS)
}

/// Every [`QUEUE_PUSH_INTERVAL_MS`]: one read (or keep-alive) per event with streams, one
/// broadcast of its answer. Runs until the API node stops.
pub async fn run_queue_pushes(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_millis(QUEUE_PUSH_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now_ms = state.now_ms();
        let due = state.queues.due(now_ms, |e| touch_every_ms(&state, e));
        for (event_id, keys, touch) in due {
            match read_places(&state, &event_id, keys, touch).await {
                Ok(snapshot) => state.queues.publish(&event_id, snapshot),
                Err(error) => tracing::debug!(%event_id, %error, "queue push skipped"),
            }
        }
    }
}

async fn read_places(
    state: &AppState,
    event_id: &str,
    keys: Vec<PlaceKey>,
    touch: bool,
) -> Result<RoomSnapshot, boxoffice_raft::InventoryError> {
    let mut places = BTreeMap::new();
    let mut at_ms = 0;
    for chunk in keys.chunks(MAX_PLACES_PER_TOUCH) {
        let (views, chunk_at_ms) = if touch {
            let cmd = TouchQueueCmd {
                event_id: event_id.to_owned(),
                places: chunk.to_vec(),
            };
            let request_id = format!("qtouch/{}", random_hex(12));
            let timed = state.inventory.touch_queue(&request_id, cmd).await?;
            (timed.value, timed.at_ms)
        } else {
            match state
                .inventory
                .queue_places(event_id, chunk.to_vec())
                .await?
            {
                Some(timed) => (timed.value, timed.at_ms),
                None => (vec![None; chunk.len()], 0),
            }
        };
        at_ms = at_ms.max(chunk_at_ms);
        places.extend(chunk.iter().cloned().zip(views));
    }
    Ok(RoomSnapshot { at_ms, places })
}
