//! The client's typed calls, what the API tier uses: each asks for one thing and answers it,
//! with a replicated refusal as [`InventoryError::Rejected`], taken seats as
//! [`InventoryError::SeatsTaken`], and an outcome its command cannot have as a protocol error
//! named here once, so no caller matches impossible variants.

use std::sync::Arc;

use super::{InventoryClient, InventoryError};
use crate::types::*;
use crate::wire::{Query, QueryResult};

/// An answer and the group time it describes (see [`Reply::at_ms`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timed<T> {
    pub value: T,
    pub at_ms: u64,
}

/// How a payment event left a booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Sold (also the answer to a late or replayed event for a sold booking).
    Confirmed(Booking),
    /// Failed, or already failed or refunded; a paid one should be refunded.
    Failed(Booking),
    /// A failed booking's refund recorded ([`InventoryClient::mark_refunded`]).
    Refunded(Booking),
}

/// A typed call's answer other than the one it asked for: a replicated refusal, taken seats,
/// or (an outcome its command cannot have) a protocol error naming the command.
pub(super) fn refusal(what: &str, outcome: Outcome) -> InventoryError {
    match outcome {
        Outcome::Rejected(rejection) => InventoryError::Rejected(rejection),
        Outcome::Unavailable { seat_ids } => InventoryError::SeatsTaken { seat_ids },
        Outcome::NotEnoughSeats { available } => InventoryError::NotEnoughSeats { available },
        other => InventoryError::Protocol(format!("{what} answered {other:?}")),
    }
}

/// A read answered with another variant than its query's.
pub(super) fn unexpected_read(what: &str, result: QueryResult) -> InventoryError {
    InventoryError::Protocol(format!("{what} read answered {result:?}"))
}

impl InventoryClient {
    /// Holds seats, all or none, for the event's hold lifetime (or `cmd.ttl_ms`).
    pub async fn hold(
        &self,
        request_id: &str,
        cmd: HoldCmd,
    ) -> Result<Timed<Hold>, InventoryError> {
        let event_id = cmd.event_id.clone();
        self.hold_command(&event_id, request_id, "hold", Command::Hold(cmd))
            .await
    }

    /// Holds the best `cmd.quantity` free seats the state machine finds (all or none); the
    /// hold names the seats chosen. Too few answers [`InventoryError::NotEnoughSeats`].
    pub async fn hold_best(
        &self,
        request_id: &str,
        cmd: HoldBestCmd,
    ) -> Result<Timed<Hold>, InventoryError> {
        let event_id = cmd.event_id.clone();
        let command = Command::HoldBest(cmd);
        self.hold_command(&event_id, request_id, "best-available hold", command)
            .await
    }

    /// Proposes a command whose success is [`Outcome::Held`].
    async fn hold_command(
        &self,
        event_id: &str,
        request_id: &str,
        what: &str,
        command: Command,
    ) -> Result<Timed<Hold>, InventoryError> {
        let reply = self
            .execute_for_event(event_id, request_id, command)
            .await?;
        let at_ms = reply.at_ms;
        match reply.outcome {
            // The reply was just decoded, so the hold is not shared: no copy.
            Outcome::Held(hold) => Ok(Timed {
                value: Arc::unwrap_or_clone(hold),
                at_ms,
            }),
            other => Err(refusal(what, other)),
        }
    }

    /// Gives a live hold's seats back; `event_id` is the hold's event.
    pub async fn release(
        &self,
        event_id: &str,
        request_id: &str,
        cmd: ReleaseCmd,
    ) -> Result<(), InventoryError> {
        let reply = self
            .execute_for_event(event_id, request_id, Command::Release(cmd))
            .await?;
        match reply.outcome {
            Outcome::Released => Ok(()),
            other => Err(refusal("release", other)),
        }
    }

    /// Records a booking awaiting payment for a live hold of `event_id`.
    pub async fn create_booking(
        &self,
        event_id: &str,
        request_id: &str,
        cmd: CreateBookingCmd,
    ) -> Result<Booking, InventoryError> {
        let reply = self
            .execute_for_event(event_id, request_id, Command::CreateBooking(cmd))
            .await?;
        match reply.outcome {
            Outcome::BookingCreated(booking) => Ok(booking),
            other => Err(refusal("create booking", other)),
        }
    }

    /// The payment succeeded: sells the hold's seats if it is still live, else fails.
    pub async fn confirm(
        &self,
        group: GroupId,
        request_id: &str,
        cmd: ConfirmCmd,
    ) -> Result<Settlement, InventoryError> {
        self.settle(group, request_id, "confirm", Command::Confirm(cmd))
            .await
    }

    /// The payment failed: the booking fails (a settled one answers as it stands).
    pub async fn fail_payment(
        &self,
        group: GroupId,
        request_id: &str,
        cmd: FailPaymentCmd,
    ) -> Result<Settlement, InventoryError> {
        self.settle(group, request_id, "fail payment", Command::FailPayment(cmd))
            .await
    }

    /// A failed booking's payment was refunded: answers the refunded booking.
    pub async fn mark_refunded(
        &self,
        group: GroupId,
        request_id: &str,
        cmd: MarkRefundedCmd,
    ) -> Result<Booking, InventoryError> {
        let reply = self
            .execute(group, request_id, Command::MarkRefunded(cmd))
            .await?;
        match reply.outcome {
            Outcome::Refunded(booking) => Ok(booking),
            other => Err(refusal("mark refunded", other)),
        }
    }

    async fn settle(
        &self,
        group: GroupId,
        request_id: &str,
        what: &str,
        command: Command,
    ) -> Result<Settlement, InventoryError> {
        let reply = self.execute(group, request_id, command).await?;
        match reply.outcome {
            Outcome::Confirmed(booking) => Ok(Settlement::Confirmed(booking)),
            Outcome::BookingFailed(booking) => Ok(Settlement::Failed(booking)),
            other => Err(refusal(what, other)),
        }
    }

    /// Changes how long new holds of the event last (the inventory's per-event value is the
    /// one the holds use).
    pub async fn set_hold_ttl(
        &self,
        request_id: &str,
        cmd: SetHoldTtlCmd,
    ) -> Result<(), InventoryError> {
        let event_id = cmd.event_id.clone();
        let reply = self
            .execute_for_event(&event_id, request_id, Command::SetHoldTtl(cmd))
            .await?;
        match reply.outcome {
            Outcome::Done => Ok(()),
            other => Err(refusal("set hold ttl", other)),
        }
    }

    /// Sets the event's waiting room (on, off, rate, opening, windows).
    pub async fn set_queue(
        &self,
        request_id: &str,
        cmd: SetQueueCmd,
    ) -> Result<(), InventoryError> {
        let event_id = cmd.event_id.clone();
        let reply = self
            .execute_for_event(&event_id, request_id, Command::SetQueue(cmd))
            .await?;
        match reply.outcome {
            Outcome::Done => Ok(()),
            other => Err(refusal("set queue", other)),
        }
    }

    /// Takes (or answers again) the user's place in the event's waiting room. Joins are
    /// idempotent in the machine, so `request_id` only names this call.
    pub async fn join_queue(
        &self,
        request_id: &str,
        cmd: JoinQueueCmd,
    ) -> Result<Timed<PlaceView>, InventoryError> {
        let event_id = cmd.event_id.clone();
        let reply = self
            .execute_for_event(&event_id, request_id, Command::JoinQueue(cmd))
            .await?;
        let at_ms = reply.at_ms;
        match reply.outcome {
            Outcome::Place(value) => Ok(Timed { value, at_ms }),
            other => Err(refusal("join queue", other)),
        }
    }

    /// Keeps places alive and answers where they stand, one answer per pair (`None`: no such
    /// place of that user).
    pub async fn touch_queue(
        &self,
        request_id: &str,
        cmd: TouchQueueCmd,
    ) -> Result<Timed<Vec<Option<PlaceView>>>, InventoryError> {
        let event_id = cmd.event_id.clone();
        let reply = self
            .execute_for_event(&event_id, request_id, Command::TouchQueue(cmd))
            .await?;
        let at_ms = reply.at_ms;
        match reply.outcome {
            Outcome::Places(value) => Ok(Timed { value, at_ms }),
            other => Err(refusal("touch queue", other)),
        }
    }

    /// Gives a place up (leaving a place that is already over changes nothing).
    pub async fn leave_queue(
        &self,
        request_id: &str,
        cmd: LeaveQueueCmd,
    ) -> Result<(), InventoryError> {
        let event_id = cmd.event_id.clone();
        let reply = self
            .execute_for_event(&event_id, request_id, Command::LeaveQueue(cmd))
            .await?;
        match reply.outcome {
            Outcome::Done => Ok(()),
            other => Err(refusal("leave queue", other)),
        }
    }

    /// The event's waiting-room figures (linearizable), `None` without a room.
    pub async fn room_figures(
        &self,
        event_id: &str,
    ) -> Result<Option<RoomFigures>, InventoryError> {
        let Some(group) = self.group_of_known(event_id).await? else {
            return Ok(None);
        };
        match self
            .read(group, Query::Room(event_id.to_owned()))
            .await?
            .result
        {
            QueryResult::Room(figures) => Ok(figures),
            other => Err(unexpected_read("room", other)),
        }
    }

    /// Where the named places stand (linearizable, no keep-alive); `None` without a room.
    pub async fn queue_places(
        &self,
        event_id: &str,
        places: Vec<(UserId, u64)>,
    ) -> Result<Option<Timed<Vec<Option<PlaceView>>>>, InventoryError> {
        let Some(group) = self.group_of_known(event_id).await? else {
            return Ok(None);
        };
        let query = Query::Places {
            event_id: event_id.to_owned(),
            places,
        };
        let reply = self.read(group, query).await?;
        let at_ms = reply.at_ms;
        match reply.result {
            QueryResult::Places(places) => Ok(places.map(|value| Timed { value, at_ms })),
            other => Err(unexpected_read("places", other)),
        }
    }

    /// Stores a catalog document in the meta group.
    pub async fn put_catalog(
        &self,
        request_id: &str,
        cmd: PutCatalogCmd,
    ) -> Result<(), InventoryError> {
        let reply = self
            .execute(META_GROUP, request_id, Command::PutCatalog(cmd))
            .await?;
        match reply.outcome {
            Outcome::Done => Ok(()),
            other => Err(refusal("put catalog", other)),
        }
    }

    /// A hold of `event_id` (linearizable), or `None` when the event or the hold is unknown.
    pub async fn get_hold(
        &self,
        event_id: &str,
        hold_id: &str,
    ) -> Result<Option<Timed<Hold>>, InventoryError> {
        let Some(group) = self.group_of_known(event_id).await? else {
            return Ok(None);
        };
        let reply = self.read(group, Query::Hold(hold_id.to_owned())).await?;
        let at_ms = reply.at_ms;
        match reply.result {
            QueryResult::Hold(hold) => Ok(hold.map(|value| Timed { value, at_ms })),
            other => Err(unexpected_read("hold", other)),
        }
    }

    /// A booking of `event_id` (linearizable), or `None` when the event or the booking is
    /// unknown.
    pub async fn get_booking(
        &self,
        event_id: &str,
        booking_id: &str,
    ) -> Result<Option<Booking>, InventoryError> {
        let Some(group) = self.group_of_known(event_id).await? else {
            return Ok(None);
        };
        let reply = self
            .read(group, Query::Booking(booking_id.to_owned()))
            .await?;
        match reply.result {
            QueryResult::Booking(booking) => Ok(booking),
            other => Err(unexpected_read("booking", other)),
        }
    }

    /// Every booking of `owner` in `group`.
    pub async fn bookings_of(
        &self,
        group: GroupId,
        owner: &str,
    ) -> Result<Vec<Booking>, InventoryError> {
        let reply = self
            .read(group, Query::BookingsOf(owner.to_owned()))
            .await?;
        match reply.result {
            QueryResult::Bookings(bookings) => Ok(bookings),
            other => Err(unexpected_read("bookings", other)),
        }
    }

    /// An event's seats with their status, from `group`; `None` when it has no such event.
    pub async fn event_seats(
        &self,
        group: GroupId,
        event_id: &str,
    ) -> Result<Option<Vec<(SeatSpec, SeatStatus)>>, InventoryError> {
        let reply = self
            .read(group, Query::EventSeats(event_id.to_owned()))
            .await?;
        match reply.result {
            QueryResult::Seats(seats) => Ok(seats),
            other => Err(unexpected_read("event seats", other)),
        }
    }

    /// A catalog document from the meta group.
    pub async fn catalog_doc(
        &self,
        kind: &str,
        id: &str,
    ) -> Result<Option<Vec<u8>>, InventoryError> {
        let query = Query::Catalog {
            kind: kind.to_owned(),
            id: id.to_owned(),
        };
        let reply = self.read(META_GROUP, query).await?;
        match reply.result {
            QueryResult::Catalog(doc) => Ok(doc),
            other => Err(unexpected_read("catalog", other)),
        }
    }

    /// The event's group, or `None` when the event is placed nowhere.
    async fn group_of_known(&self, event_id: &str) -> Result<Option<GroupId>, InventoryError> {
        match self.group_of(event_id).await {
            Ok(group) => Ok(Some(group)),
            Err(InventoryError::UnknownEvent(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
