//! What the simulated clients saw, as the checker's per-shard histories: every logical
//! request with its invocation time, and its answer when the client learned it. The
//! system's string ids are interned into the checker's small integer ids here.

use std::collections::BTreeMap;

use crate::checker::{
    BookingId, Command, HoldId, Op, Outcome, OwnerId, RequestId, Response, SeatId, ShardHistory,
};
use crate::clock::sim_ns;

/// A recorded op: its shard and its index in that shard's history.
#[derive(Debug, Clone)]
pub struct OpRef {
    event: String,
    index: usize,
}

/// Interns one kind of string id.
#[derive(Debug, Default)]
struct Names(BTreeMap<String, u64>);

impl Names {
    fn id(&mut self, name: &str) -> u64 {
        let next = self.0.len() as u64;
        *self.0.entry(name.to_owned()).or_insert(next)
    }
}

/// Every shard's history, plus what the clients met that no correct system answers.
#[derive(Debug, Default)]
pub struct Recorder {
    shards: BTreeMap<String, ShardHistory>,
    /// Ops that certainly never reached a leader (`NoLeader`): left out of the histories.
    dropped: BTreeMap<String, Vec<usize>>,
    seats: Names,
    holds: Names,
    owners: Names,
    bookings: Names,
    requests: Names,
    /// Best-available holds not answered yet, per event: (op index, hold id). Recorded as
    /// holds of no seats until the seats they chose are known.
    pending_best: BTreeMap<String, BTreeMap<usize, String>>,
    /// Answers no correct cluster gives (a protocol error, an unknown event...).
    pub anomalies: Vec<String>,
}

impl Recorder {
    pub fn seat(&mut self, event: &str, seat: &str) -> SeatId {
        SeatId(self.seats.id(&format!("{event}/{seat}")))
    }

    pub fn hold(&mut self, hold: &str) -> HoldId {
        HoldId(self.holds.id(hold))
    }

    pub fn owner(&mut self, owner: &str) -> OwnerId {
        OwnerId(self.owners.id(owner))
    }

    pub fn booking(&mut self, booking: &str) -> BookingId {
        BookingId(self.bookings.id(booking))
    }

    /// Records the invocation of `command` on `event`'s shard, now.
    pub fn invoke(&mut self, event: &str, request: &str, command: Command) -> OpRef {
        let request = RequestId(self.requests.id(request));
        let history = self.shards.entry(event.to_owned()).or_default();
        history.ops.push(Op {
            request,
            invoked_ns: sim_ns(),
            command,
            response: None,
        });
        OpRef {
            event: event.to_owned(),
            index: history.ops.len() - 1,
        }
    }

    /// Records the answer to `op`, now.
    pub fn complete(&mut self, op: &OpRef, outcome: Outcome) {
        let history = self.shards.get_mut(&op.event).expect("recorded shard");
        history.ops[op.index].response = Some(Response {
            responded_ns: sim_ns(),
            outcome,
        });
    }

    /// Records a best-available hold: for the checker, a hold of the seats it will be known
    /// to have chosen ([`Recorder::held_best`], [`Recorder::resolve_best`]).
    pub fn invoke_best(
        &mut self,
        event: &str,
        request: &str,
        hold_id: &str,
        owner: &str,
        ttl_ms: u64,
    ) -> OpRef {
        let command = Command::Hold {
            hold_id: self.hold(hold_id),
            owner: self.owner(owner),
            seats: Vec::new(),
            ttl_ms,
        };
        let op = self.invoke(event, request, command);
        self.pending_best
            .entry(event.to_owned())
            .or_default()
            .insert(op.index, hold_id.to_owned());
        op
    }

    /// A best-available hold was answered `outcome`, holding `seats`.
    pub fn held_best(&mut self, op: &OpRef, seats: &[String], outcome: Outcome) {
        self.choose_seats(&op.event, op.index, seats);
        self.complete(op, outcome);
    }

    /// A best-available hold certainly changed nothing (too few seats, or refused): it is
    /// left out of the history, as it touched no seat.
    pub fn unchanged_best(&mut self, op: &OpRef) {
        if let Some(pending) = self.pending_best.get_mut(&op.event) {
            pending.remove(&op.index);
        }
        self.drop_op(op);
    }

    /// Settles the best-available holds of `event` whose answer was lost: `chosen` tells
    /// the seats a hold id holds in the final state, or `None` when no such hold exists (it
    /// never took effect).
    pub fn resolve_best(&mut self, event: &str, chosen: impl Fn(&str) -> Option<Vec<String>>) {
        let pending = self.pending_best.remove(event).unwrap_or_default();
        for (index, hold_id) in pending {
            match chosen(&hold_id) {
                Some(seats) => self.choose_seats(event, index, &seats),
                None => self.drop_op(&OpRef {
                    event: event.to_owned(),
                    index,
                }),
            }
        }
    }

    fn choose_seats(&mut self, event: &str, index: usize, seats: &[String]) {
        if let Some(pending) = self.pending_best.get_mut(event) {
            pending.remove(&index);
        }
        let ids: Vec<SeatId> = seats.iter().map(|s| self.seat(event, s)).collect();
        let history = self.shards.get_mut(event).expect("recorded shard");
        if let Command::Hold { seats, .. } = &mut history.ops[index].command {
            *seats = ids;
        }
    }

    /// `op` certainly had no effect (nothing was delivered to a leader).
    pub fn drop_op(&mut self, op: &OpRef) {
        self.dropped
            .entry(op.event.clone())
            .or_default()
            .push(op.index);
    }

    /// The histories, without the dropped ops. Unanswered ops stay, with unknown outcomes.
    pub fn histories(&self) -> BTreeMap<String, ShardHistory> {
        self.shards
            .iter()
            .map(|(event, history)| {
                let dropped = self.dropped.get(event);
                let ops = history
                    .ops
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !dropped.is_some_and(|d| d.contains(i)))
                    .map(|(_, op)| op.clone())
                    .collect();
                (event.clone(), ShardHistory { ops })
            })
            .collect()
    }

    /// How many ops were answered, left unknown, and dropped.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut answered = 0;
        let mut unknown = 0;
        for history in self.histories().values() {
            for op in &history.ops {
                if op.response.is_some() {
                    answered += 1;
                } else {
                    unknown += 1;
                }
            }
        }
        (answered, unknown, self.dropped.values().map(Vec::len).sum())
    }
}
