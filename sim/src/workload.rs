//! The simulated API tier: clients using the production [`InventoryClient`] to hold (named
//! seats or the best available), release, confirm (create the booking, then pay after a
//! random delay of up to twice the hold's lifetime, as a payment webhook does) and read a few
//! hot seats with short TTLs, recording every request and answer for the checker.
//! The first event has a waiting room: clients also join it, keep their places alive, leave,
//! and once admitted hold one of its seats and check out (which marks the place bought); the
//! room is judged from its audit after the run (`checker::queue`), and a re-join right after
//! a read that said *waiting* must answer the same place.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use boxoffice_raft::transport::Transport;
use boxoffice_raft::types::{
    self as raft, FailureReason, HoldStatus, Rejection, SeatOwner, SeatSpec,
};
use boxoffice_raft::wire::{Query, QueryResult};
use boxoffice_raft::{ClusterAuth, InventoryClient, InventoryError};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::checker::{Command, FailReason, Outcome, SeatView};
use crate::clock::{sim_ms, SkewedClock};
use crate::cluster::sim_cluster_key;
use crate::net::SimConnector;
use crate::recorder::{OpRef, Recorder};

/// How long a client keeps retrying one request before it calls the outcome unknown.
pub const CLIENT_DEADLINE_MS: u64 = 5_000;
/// Hold lifetimes the workload asks for (the inventory's minimum is 1 s).
pub const TTL_MS: std::ops::RangeInclusive<u64> = 1_000..=4_000;
/// Longest pause between a client's requests.
pub const MAX_THINK_MS: u64 = 300;
/// Share of reads among a seat-map watcher's requests, and among a buyer's.
pub const READER_READ_PERCENT: u32 = 85;
pub const BUYER_READ_PERCENT: u32 = 20;
/// The seat the liveness probe holds (no workload client touches it: it has a section of
/// its own, and best-available holds ask for [`HOT_SECTION`]).
pub const PROBE_SEAT: &str = "P1";
/// The section of the hot seats (one row), and the probe's.
pub const HOT_SECTION: &str = "Floor";
pub const PROBE_SECTION: &str = "Probe";
/// Share of a buyer's holds that ask for the best available seats instead of naming them.
pub const BEST_HOLD_PERCENT: u32 = 35;
/// Share of a client's requests that go to the waiting room.
pub const QUEUE_PERCENT: u32 = 25;
/// The waiting room's settings: slow admission, so the line is long enough to judge.
pub const QUEUE_ADMIT_PER_SECOND: u32 = 1;
pub const QUEUE_ADMISSION_TTL_MS: u64 = 3_000;
pub const QUEUE_ABANDON_AFTER_MS: u64 = 3_000;
/// The room opens this long after setup (places taken before are shuffled).
pub const QUEUE_OPENS_AFTER_MS: u64 = 1_500;

/// The events the run sells and where they live; filled in by the setup client.
#[derive(Debug, Default)]
pub struct Catalog {
    /// (event id, its group, its hot seats)
    pub events: Vec<(String, raft::GroupId, Vec<String>)>,
    /// The event with a waiting room (the first).
    pub queue_event: Option<String>,
}

/// What every simulated client shares with the driver.
pub struct Shared {
    pub recorder: RefCell<Recorder>,
    pub catalog: RefCell<Catalog>,
    /// Simulated ms at which the workload may start (set once the setup client is done).
    pub started_at_ms: Cell<Option<u64>>,
    /// Simulated ms at which clients stop starting requests.
    pub stop_at_ms: Cell<Option<u64>>,
    /// Simulated ms at which the driver healed every fault (the liveness clock starts).
    pub healed_at_ms: Cell<Option<u64>>,
    /// Simulated ms at which the probe saw each group make progress after the heal.
    pub progress_at_ms: RefCell<BTreeMap<raft::GroupId, u64>>,
    pub seeds: Vec<String>,
}

fn client(shared: &Shared) -> InventoryClient {
    // Clients' clocks are unskewed simulated time (node clocks carry the skews).
    let auth = ClusterAuth::new(sim_cluster_key(), Arc::new(SkewedClock::default()));
    InventoryClient::new(
        Arc::new(Transport::new(SimConnector, auth)),
        shared.seeds.clone(),
    )
    .with_deadline(Duration::from_millis(CLIENT_DEADLINE_MS))
}

/// Registers the run's events (each in a different group when there are several), then
/// opens the workload.
pub async fn setup(
    shared: Rc<Shared>,
    n_groups: usize,
    events: Vec<(String, Vec<String>)>,
) -> turmoil::Result {
    let inventory = client(&shared).with_deadline(Duration::from_millis(60_000));
    // The bootstrap writes the group table once the meta group has a leader.
    while inventory
        .refresh_groups()
        .await
        .map_or(true, |groups| groups.len() < n_groups)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut catalog = Catalog::default();
    for (event, seats) in events {
        let specs = seats
            .iter()
            .enumerate()
            .map(|(i, id)| SeatSpec {
                id: id.clone(),
                section: HOT_SECTION.into(),
                row: "A".into(),
                number: i as u32 + 1,
                price_minor: 5_000,
            })
            .chain(std::iter::once(SeatSpec {
                id: PROBE_SEAT.into(),
                section: PROBE_SECTION.into(),
                row: "P".into(),
                number: 1,
                price_minor: 5_000,
            }))
            .collect();
        let register = raft::RegisterEventCmd {
            event_id: event.clone(),
            currency: "EUR".into(),
            hold_ttl_ms: 60_000,
            seats: specs,
        };
        let group = inventory
            .register_event(&format!("setup/{event}"), register)
            .await
            .map_err(|e| format!("registering {event}: {e}"))?;
        if catalog.queue_event.is_none() {
            let opens_at_ms = crate::clock::EPOCH_MS + sim_ms() + QUEUE_OPENS_AFTER_MS;
            let set = raft::SetQueueCmd {
                event_id: event.clone(),
                settings: raft::QueueSettings {
                    enabled: true,
                    admit_per_second: QUEUE_ADMIT_PER_SECOND,
                    opens_at_ms: Some(opens_at_ms),
                    admission_ttl_ms: QUEUE_ADMISSION_TTL_MS,
                    abandon_after_ms: QUEUE_ABANDON_AFTER_MS,
                },
            };
            inventory
                .set_queue(&format!("setup/{event}/queue"), set)
                .await
                .map_err(|e| format!("opening the waiting room of {event}: {e}"))?;
            catalog.queue_event = Some(event.clone());
        }
        catalog.events.push((event, group, seats));
    }
    *shared.catalog.borrow_mut() = catalog;
    shared.started_at_ms.set(Some(sim_ms()));
    Ok(())
}

async fn wait_for(mut ready: impl FnMut() -> bool) {
    while !ready() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One of this client's holds the workload may still act on.
struct MyHold {
    event: String,
    hold_id: String,
    ttl_ms: u64,
}

/// A workload client: random requests on the hot seats until the stop time. Buyers hold,
/// release and check out; watchers mostly read.
pub async fn workload_client(shared: Rc<Shared>, id: usize, seed: u64) -> turmoil::Result {
    let mut rng = StdRng::seed_from_u64(seed);
    wait_for(|| shared.started_at_ms.get().is_some() && shared.stop_at_ms.get().is_some()).await;
    let stop_at = shared.stop_at_ms.get().unwrap_or(0);
    let inventory = client(&shared);
    let owner = format!("u{id}");
    let mut held: Vec<MyHold> = Vec::new();
    let mut place: Option<raft::PlaceView> = None;
    let mut n = 0u64;
    // Every third client mostly watches the seat map, as most visitors do.
    let read_percent = if id.is_multiple_of(3) {
        READER_READ_PERCENT
    } else {
        BUYER_READ_PERCENT
    };
    while sim_ms() < stop_at {
        n += 1;
        let tag = format!("c{id}-{n}");
        let (event, _group, seats) = shared
            .catalog
            .borrow()
            .events
            .choose(&mut rng)
            .cloned()
            .expect("events registered");
        let queue_event = shared.catalog.borrow().queue_event.clone();
        if let (Some(queue_event), true) = (queue_event, rng.gen_range(0..100) < QUEUE_PERCENT) {
            let leave = rng.gen_range(0..100) < 10;
            place = queue_step(
                &shared,
                &inventory,
                &queue_event,
                &owner,
                place,
                leave,
                &tag,
            )
            .await;
            // Admitted: hold one of the room's seats and check out, as a buyer let in would.
            if let Some(raft::PlaceState::Admitted { .. }) = place.as_ref().map(|p| p.state) {
                let seats = shared
                    .catalog
                    .borrow()
                    .events
                    .iter()
                    .find(|(e, _, _)| *e == queue_event)
                    .map(|(_, _, s)| s.clone())
                    .unwrap_or_default();
                if let Some(seat) = seats.choose(&mut rng).cloned() {
                    let hold_id = format!("h-{tag}-admitted");
                    let request = format!("r-{tag}-admitted-hold");
                    let ttl_ms = rng.gen_range(TTL_MS);
                    let held = hold(
                        &shared,
                        &inventory,
                        &queue_event,
                        &request,
                        &hold_id,
                        &owner,
                        vec![seat],
                        ttl_ms,
                    )
                    .await;
                    if held {
                        let tag = format!("{tag}-admitted");
                        // Paid like any checkout: 0–2 × the hold's lifetime later.
                        let pay_after = Duration::from_millis(rng.gen_range(0..=2 * ttl_ms));
                        confirm(
                            &shared,
                            &inventory,
                            &queue_event,
                            &tag,
                            &hold_id,
                            &owner,
                            pay_after,
                        )
                        .await;
                    }
                }
            }
        } else if rng.gen_range(0..100) < read_percent {
            read(&shared, &inventory, &event, &format!("r-{tag}")).await;
        } else {
            let roll = rng.gen_range(0..100);
            if roll < 50 || held.is_empty() {
                let k = rng.gen_range(1..=2.min(seats.len()));
                let ttl_ms = rng.gen_range(TTL_MS);
                let hold_id = format!("h-{tag}");
                let request = format!("r-{tag}");
                let ok = if rng.gen_range(0..100) < BEST_HOLD_PERCENT {
                    let best = BestHold {
                        quantity: k as u32,
                        adjacent: rng.gen_bool(0.5),
                        ttl_ms,
                    };
                    let me = Holder {
                        event: &event,
                        request: &request,
                        hold_id: &hold_id,
                        owner: &owner,
                    };
                    hold_best(&shared, &inventory, me, best, &seats).await
                } else {
                    let chosen: Vec<String> = seats.choose_multiple(&mut rng, k).cloned().collect();
                    hold(
                        &shared, &inventory, &event, &request, &hold_id, &owner, chosen, ttl_ms,
                    )
                    .await
                };
                if ok {
                    held.push(MyHold {
                        event,
                        hold_id,
                        ttl_ms,
                    });
                }
            } else if roll < 70 {
                let mine = held.swap_remove(rng.gen_range(0..held.len()));
                release(
                    &shared,
                    &inventory,
                    &mine.event,
                    &format!("r-{tag}"),
                    &mine.hold_id,
                    &owner,
                )
                .await;
            } else if roll < 95 {
                let mine = held.swap_remove(rng.gen_range(0..held.len()));
                // The payment arrives 0–2 × the hold's lifetime after the booking, as a
                // payment webhook does: some after the hold expired, often before a sweep.
                let pay_after = Duration::from_millis(rng.gen_range(0..=2 * mine.ttl_ms));
                confirm(
                    &shared,
                    &inventory,
                    &mine.event,
                    &tag,
                    &mine.hold_id,
                    &owner,
                    pay_after,
                )
                .await;
            } else {
                // Someone else's hold (or a made-up one): not-owner and not-found answers.
                let other = format!("h-c{}-{}", rng.gen_range(0..8), rng.gen_range(1..=n));
                release(
                    &shared,
                    &inventory,
                    &event,
                    &format!("r-{tag}"),
                    &other,
                    &owner,
                )
                .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..=MAX_THINK_MS))).await;
    }
    Ok(())
}

/// One waiting-room request: join when the client has no live place, else leave (when
/// `leave`) or read it (a keep-alive); a read that says *waiting* is followed by a re-join,
/// which must answer the same place when it lands within the abandonment window of the
/// read. Returns the place as last seen.
async fn queue_step(
    shared: &Shared,
    inventory: &InventoryClient,
    event: &str,
    owner: &str,
    place: Option<raft::PlaceView>,
    leave: bool,
    tag: &str,
) -> Option<raft::PlaceView> {
    let join = |request: String| async move {
        let cmd = raft::JoinQueueCmd {
            event_id: event.to_owned(),
            user: owner.to_owned(),
        };
        inventory.join_queue(&request, cmd).await.ok()
    };
    let live = place.filter(|p| {
        matches!(
            p.state,
            raft::PlaceState::Waiting | raft::PlaceState::Admitted { .. }
        )
    });
    let Some(live) = live else {
        return join(format!("q-{tag}")).await.map(|t| t.value);
    };
    if leave {
        let cmd = raft::LeaveQueueCmd {
            event_id: event.to_owned(),
            user: owner.to_owned(),
            ticket: live.ticket,
        };
        return match inventory.leave_queue(&format!("q-{tag}"), cmd).await {
            Ok(()) => None,
            Err(_) => Some(live),
        };
    }
    let cmd = raft::TouchQueueCmd {
        event_id: event.to_owned(),
        places: vec![(owner.to_owned(), live.ticket)],
    };
    let (seen, seen_at_ms) = match inventory.touch_queue(&format!("q-{tag}"), cmd).await {
        Ok(views) => (views.value.into_iter().next().flatten(), views.at_ms),
        Err(_) => return Some(live),
    };
    if seen.as_ref().map(|p| p.state) != Some(raft::PlaceState::Waiting) {
        return seen;
    }
    let Some(again) = join(format!("q-{tag}-again")).await else {
        return seen;
    };
    // Within this window (group time) of the read, the place can have been neither dropped
    // nor admitted and expired: joining must answer it. A join the faults delayed longer may
    // rightly answer a new place.
    let window_ms = QUEUE_ABANDON_AFTER_MS.min(QUEUE_ADMISSION_TTL_MS);
    if again.value.ticket != live.ticket && again.at_ms < seen_at_ms + window_ms {
        shared.recorder.borrow_mut().anomalies.push(format!(
            "one place per user: {owner} read ticket {} waiting at {seen_at_ms} ms, joined again at {} ms and got ticket {}",
            live.ticket, again.at_ms, again.value.ticket
        ));
    }
    Some(again.value)
}

/// After the heal, holds and releases the probe seat of every event until each group has
/// answered once; the driver judges how long that took.
pub async fn probe_client(shared: Rc<Shared>) -> turmoil::Result {
    wait_for(|| shared.healed_at_ms.get().is_some()).await;
    let inventory = client(&shared);
    let events = shared.catalog.borrow().events.clone();
    let mut attempt = 0u64;
    for (event, group, _) in events {
        loop {
            attempt += 1;
            let tag = format!("probe-{attempt}");
            let hold_id = format!("h-{tag}");
            let held = hold(
                &shared,
                &inventory,
                &event,
                &format!("r-{tag}"),
                &hold_id,
                "probe",
                vec![PROBE_SEAT.into()],
                1_000,
            )
            .await;
            if held {
                shared
                    .progress_at_ms
                    .borrow_mut()
                    .entry(group)
                    .or_insert_with(sim_ms);
                release(
                    &shared,
                    &inventory,
                    &event,
                    &format!("r-{tag}-release"),
                    &hold_id,
                    "probe",
                )
                .await;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// What a request's error means for the history.
fn record_error(shared: &Shared, op: &OpRef, e: &InventoryError) {
    match e {
        InventoryError::NoLeader { .. } => shared.recorder.borrow_mut().drop_op(op),
        InventoryError::OutcomeUnknown { .. } => {}
        other => shared
            .recorder
            .borrow_mut()
            .anomalies
            .push(format!("{op:?}: {other}")),
    }
}

#[allow(clippy::too_many_arguments)]
async fn hold(
    shared: &Shared,
    inventory: &InventoryClient,
    event: &str,
    request: &str,
    hold_id: &str,
    owner: &str,
    seats: Vec<String>,
    ttl_ms: u64,
) -> bool {
    let op = {
        let mut rec = shared.recorder.borrow_mut();
        let command = Command::Hold {
            hold_id: rec.hold(hold_id),
            owner: rec.owner(owner),
            seats: seats.iter().map(|s| rec.seat(event, s)).collect(),
            ttl_ms,
        };
        rec.invoke(event, request, command)
    };
    let command = raft::Command::Hold(raft::HoldCmd {
        event_id: event.to_owned(),
        hold_id: hold_id.to_owned(),
        owner: owner.to_owned(),
        seat_ids: seats,
        ttl_ms: Some(ttl_ms),
    });
    match inventory.execute_for_event(event, request, command).await {
        Ok(reply) => {
            let mut rec = shared.recorder.borrow_mut();
            let (outcome, held) = match reply.outcome {
                raft::Outcome::Held(h) => (
                    Outcome::Held {
                        expires_at_ms: h.expires_at_ms,
                        at_ms: reply.at_ms,
                    },
                    true,
                ),
                raft::Outcome::Unavailable { seat_ids } => (
                    Outcome::Taken {
                        unavailable: seat_ids.iter().map(|s| rec.seat(event, s)).collect(),
                        at_ms: reply.at_ms,
                    },
                    false,
                ),
                raft::Outcome::Rejected(_) => (Outcome::Refused { at_ms: reply.at_ms }, false),
                other => {
                    rec.anomalies
                        .push(format!("{request}: a hold answered {other:?}"));
                    return false;
                }
            };
            rec.complete(&op, outcome);
            held
        }
        Err(e) => {
            record_error(shared, &op, &e);
            false
        }
    }
}

/// Who asks for a hold: the event, the request id, the hold id and its owner.
#[derive(Clone, Copy)]
struct Holder<'a> {
    event: &'a str,
    request: &'a str,
    hold_id: &'a str,
    owner: &'a str,
}

/// What a best-available hold asks for.
struct BestHold {
    quantity: u32,
    adjacent: bool,
    ttl_ms: u64,
}

/// A best-available hold in the hot section. For the checker it is a hold of the seats it
/// chose; the choice must be `quantity` distinct hot seats (the seat model checks they were
/// free). Answers whether it held.
async fn hold_best(
    shared: &Shared,
    inventory: &InventoryClient,
    me: Holder<'_>,
    best: BestHold,
    hot: &[String],
) -> bool {
    let op = shared.recorder.borrow_mut().invoke_best(
        me.event,
        me.request,
        me.hold_id,
        me.owner,
        best.ttl_ms,
    );
    let command = raft::Command::HoldBest(raft::HoldBestCmd {
        event_id: me.event.to_owned(),
        hold_id: me.hold_id.to_owned(),
        owner: me.owner.to_owned(),
        quantity: best.quantity,
        section: Some(HOT_SECTION.into()),
        adjacent: best.adjacent,
        ttl_ms: Some(best.ttl_ms),
    });
    let reply = match inventory
        .execute_for_event(me.event, me.request, command)
        .await
    {
        Ok(reply) => reply,
        Err(e) => {
            record_error(shared, &op, &e);
            return false;
        }
    };
    let mut rec = shared.recorder.borrow_mut();
    match reply.outcome {
        raft::Outcome::Held(h) => {
            let mut distinct = h.seat_ids.clone();
            distinct.sort();
            distinct.dedup();
            let legal = distinct.len() == best.quantity as usize
                && h.seat_ids.len() == distinct.len()
                && h.seat_ids.iter().all(|s| hot.contains(s));
            if !legal {
                rec.anomalies.push(format!(
                    "{}: a best-available hold of {} chose {:?}",
                    me.request, best.quantity, h.seat_ids
                ));
            }
            let outcome = Outcome::Held {
                expires_at_ms: h.expires_at_ms,
                at_ms: reply.at_ms,
            };
            rec.held_best(&op, &h.seat_ids, outcome);
            true
        }
        raft::Outcome::NotEnoughSeats { .. } | raft::Outcome::Rejected(_) => {
            rec.unchanged_best(&op);
            false
        }
        other => {
            rec.anomalies.push(format!(
                "{}: a best-available hold answered {other:?}",
                me.request
            ));
            false
        }
    }
}

async fn release(
    shared: &Shared,
    inventory: &InventoryClient,
    event: &str,
    request: &str,
    hold_id: &str,
    owner: &str,
) {
    let op = {
        let mut rec = shared.recorder.borrow_mut();
        let command = Command::Release {
            hold_id: rec.hold(hold_id),
            owner: rec.owner(owner),
        };
        rec.invoke(event, request, command)
    };
    let command = raft::Command::Release(raft::ReleaseCmd {
        hold_id: hold_id.to_owned(),
        owner: owner.to_owned(),
    });
    match inventory.execute_for_event(event, request, command).await {
        Ok(reply) => {
            let outcome = match reply.outcome {
                raft::Outcome::Released => Outcome::Released { at_ms: reply.at_ms },
                raft::Outcome::Rejected(Rejection::UnknownHold) => Outcome::NotFound,
                raft::Outcome::Rejected(Rejection::NotOwner) => Outcome::NotOwner,
                raft::Outcome::Rejected(Rejection::HoldNotActive(_)) => Outcome::AlreadyInactive,
                raft::Outcome::Rejected(_) => Outcome::Refused { at_ms: reply.at_ms },
                other => {
                    shared
                        .recorder
                        .borrow_mut()
                        .anomalies
                        .push(format!("{request}: a release answered {other:?}"));
                    return;
                }
            };
            shared.recorder.borrow_mut().complete(&op, outcome);
        }
        Err(e) => record_error(shared, &op, &e),
    }
}

fn fail_reason(status: HoldStatus) -> Option<FailReason> {
    match status {
        HoldStatus::Expired => Some(FailReason::Expired),
        HoldStatus::Released => Some(FailReason::Released),
        HoldStatus::Confirmed => Some(FailReason::AlreadySold),
        HoldStatus::Active => None,
    }
}

/// A checkout: create the booking (hold must be live), then, `pay_after` later, the payment
/// succeeds (sells the seats if the hold is still live). One op for the checker, spanning
/// both requests: only the second changes seats.
async fn confirm(
    shared: &Shared,
    inventory: &InventoryClient,
    event: &str,
    tag: &str,
    hold_id: &str,
    owner: &str,
    pay_after: Duration,
) {
    let booking_id = format!("b-{tag}");
    let op = {
        let mut rec = shared.recorder.borrow_mut();
        let command = Command::Confirm {
            hold_id: rec.hold(hold_id),
            booking_id: rec.booking(&booking_id),
        };
        rec.invoke(event, &format!("r-{tag}"), command)
    };
    let create = raft::Command::CreateBooking(raft::CreateBookingCmd {
        booking_id: booking_id.clone(),
        hold_id: hold_id.to_owned(),
        owner: owner.to_owned(),
        payment_ref: format!("pay-{tag}"),
    });
    let reply = match inventory
        .execute_for_event(event, &format!("r-{tag}-book"), create)
        .await
    {
        Ok(reply) => reply,
        Err(e) => return record_error(shared, &op, &e),
    };
    let refused = |at_ms| Outcome::Refused { at_ms };
    let early = match reply.outcome {
        raft::Outcome::BookingCreated(_) => None,
        raft::Outcome::Rejected(Rejection::UnknownHold) => Some(Outcome::Failed {
            reason: FailReason::NotFound,
            at_ms: reply.at_ms,
        }),
        raft::Outcome::Rejected(Rejection::HoldNotActive(status)) => {
            Some(match fail_reason(status) {
                Some(reason) => Outcome::Failed {
                    reason,
                    at_ms: reply.at_ms,
                },
                None => refused(reply.at_ms),
            })
        }
        raft::Outcome::Rejected(_) => Some(refused(reply.at_ms)),
        other => {
            shared
                .recorder
                .borrow_mut()
                .anomalies
                .push(format!("r-{tag}: create booking answered {other:?}"));
            return;
        }
    };
    if let Some(outcome) = early {
        return shared.recorder.borrow_mut().complete(&op, outcome);
    }
    tokio::time::sleep(pay_after).await;
    let pay = raft::Command::Confirm(raft::ConfirmCmd {
        booking_id,
        payment_event_id: format!("evt-{tag}"),
    });
    match inventory
        .execute_for_event(event, &format!("r-{tag}-pay"), pay)
        .await
    {
        Ok(reply) => {
            let outcome = match reply.outcome {
                raft::Outcome::Confirmed(_) => Outcome::Confirmed { at_ms: reply.at_ms },
                raft::Outcome::BookingFailed(b) => match b.failure {
                    Some(FailureReason::HoldExpired) => Outcome::Failed {
                        reason: FailReason::Expired,
                        at_ms: reply.at_ms,
                    },
                    Some(FailureReason::HoldReleased) => Outcome::Failed {
                        reason: FailReason::Released,
                        at_ms: reply.at_ms,
                    },
                    _ => refused(reply.at_ms),
                },
                raft::Outcome::Rejected(_) => refused(reply.at_ms),
                other => {
                    shared
                        .recorder
                        .borrow_mut()
                        .anomalies
                        .push(format!("r-{tag}: payment answered {other:?}"));
                    return;
                }
            };
            shared.recorder.borrow_mut().complete(&op, outcome);
        }
        // The booking exists; whether the payment step was applied is unknown either way.
        Err(InventoryError::NoLeader { .. }) => {}
        Err(e) => record_error(shared, &op, &e),
    }
}

async fn read(shared: &Shared, inventory: &InventoryClient, event: &str, request: &str) {
    let seats: Vec<String> = {
        let catalog = shared.catalog.borrow();
        catalog
            .events
            .iter()
            .find(|(e, _, _)| e == event)
            .map(|(_, _, s)| s.clone())
            .unwrap_or_default()
    };
    let op = {
        let mut rec = shared.recorder.borrow_mut();
        let command = Command::Read {
            seats: seats.iter().map(|s| rec.seat(event, s)).collect(),
        };
        rec.invoke(event, request, command)
    };
    let group = match inventory.group_of(event).await {
        Ok(g) => g,
        Err(e) => return record_error(shared, &op, &e),
    };
    match inventory
        .read(group, Query::SeatOwners(event.to_owned()))
        .await
    {
        Ok(reply) => {
            let mut rec = shared.recorder.borrow_mut();
            let QueryResult::SeatOwners(Some(owners)) = reply.result else {
                rec.anomalies.push(format!(
                    "{request}: a seat read answered {:?}",
                    reply.result
                ));
                return;
            };
            let mut views = BTreeMap::new();
            for (seat, owner) in owners.iter().filter(|(s, _)| seats.contains(s)) {
                let view = match owner {
                    SeatOwner::Free => SeatView::Free,
                    SeatOwner::Held { hold_id, .. } => SeatView::Held {
                        hold_id: rec.hold(hold_id),
                    },
                    SeatOwner::Sold { booking_id } => SeatView::Sold {
                        booking_id: rec.booking(booking_id),
                    },
                };
                views.insert(rec.seat(event, seat), view);
            }
            rec.complete(
                &op,
                Outcome::Statuses {
                    at_ms: reply.at_ms,
                    seats: views,
                },
            );
        }
        Err(e) => record_error(shared, &op, &e),
    }
}
