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
