//! Bookings: a live hold becomes a booking awaiting payment; the payment's outcome confirms
//! it (selling the seats), fails it, or marks a failed one refunded.
//!
//! Payment events are idempotent on the booking: a settled booking answers a replayed or late
//! event with its settled outcome and changes nothing.

use super::mutants::{active, Mutant};
use super::records::Key;
use super::{check_id, Checked, Machine, Occupant, SharedId};
use crate::types::*;

/// What a checked confirm does: sell a live hold's seats, or fail the booking.
pub(super) enum ConfirmPlan {
    Sell { hold: std::sync::Arc<Hold> },
    Fail(FailureReason),
}

impl Machine {
    pub(super) fn check_create_booking(
        &self,
        cmd: &CreateBookingCmd,
        now_ms: u64,
    ) -> Checked<Booking> {
        check_id("booking id", &cmd.booking_id)?;
        if cmd.payment_ref.len() > MAX_ID_BYTES {
            return Err(Rejection::Invalid("payment reference is at most 128 bytes".into()).into());
        }
        if self.bookings.contains_key(&cmd.booking_id) {
            return Err(Rejection::IdInUse.into());
        }
        let hold = self
            .holds
            .get(cmd.hold_id.as_str())
            .ok_or(Rejection::UnknownHold)?;
        if hold.owner != cmd.owner {
            return Err(Rejection::NotOwner.into());
        }
        match hold.status_at(now_ms) {
            HoldStatus::Active => {}
            other => return Err(Rejection::HoldNotActive(other).into()),
        }
        if let Some(existing) = hold
            .booking_id
            .as_ref()
            .and_then(|id| self.bookings.get(id))
        {
            if matches!(
                existing.status,
                BookingStatus::PendingPayment | BookingStatus::Confirmed
            ) {
                return Err(Rejection::HoldAlreadyBooked(existing.booking_id.clone()).into());
            }
        }
        let currency = self
            .events
            .get(&hold.event_id)
            .map(|e| e.meta.currency.clone())
            .unwrap_or_default();
        Ok(Booking {
            booking_id: cmd.booking_id.clone(),
            event_id: hold.event_id.clone(),
            hold_id: cmd.hold_id.clone(),
            owner: cmd.owner.clone(),
            seat_ids: hold.seat_ids.clone(),
            total_minor: hold.total_minor,
            currency,
            status: BookingStatus::PendingPayment,
            failure: None,
            payment_ref: cmd.payment_ref.clone(),
            payment_event_id: None,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        })
    }

    pub(super) fn create_booking(
        &mut self,
        booking: Booking,
        changes: &mut Vec<Change>,
    ) -> Outcome {
        if let Some((hold_id, _)) = self.holds.get_key_value(booking.hold_id.as_str()) {
            self.dirty.insert(Key::Hold(hold_id.clone()));
        }
        if let Some(hold) = self.holds.get_mut(booking.hold_id.as_str()) {
            std::sync::Arc::make_mut(hold).booking_id = Some(booking.booking_id.clone());
        }
        self.bookings
            .insert(booking.booking_id.clone(), booking.clone());
        self.bookings_by_owner
            .entry(booking.owner.clone())
            .or_default()
            .insert(booking.booking_id.clone());
        self.dirty.insert(Key::Booking(booking.booking_id.clone()));
        changes.push(Change::Booking {
            booking_id: booking.booking_id.clone(),
            status: BookingStatus::PendingPayment,
        });
        Outcome::BookingCreated(booking)
    }

    /// A pending booking whose hold is still live, owned and bound to it sells; any other
    /// pending booking fails. A settled one answers as it was settled.
    pub(super) fn check_confirm(&self, cmd: &ConfirmCmd, now_ms: u64) -> Checked<ConfirmPlan> {
        let booking = self
            .bookings
            .get(&cmd.booking_id)
            .ok_or(Rejection::UnknownBooking)?;
        if let Some(outcome) = settled_outcome(booking) {
            return Err(Box::new(outcome));
        }
        let hold = self.holds.get(booking.hold_id.as_str());
        let live_hold = hold.filter(|h| {
            (h.is_live(now_ms)
                || (h.status == HoldStatus::Active && active(Mutant::ConfirmAfterExpiry)))
                && h.owner == booking.owner
                && h.booking_id.as_deref() == Some(cmd.booking_id.as_str())
        });
        match live_hold {
            // A live hold's event is registered (holds are only made on registered events,
            // and events are never removed); checked here so selling cannot fail.
            Some(hold) if self.events.contains_key(&hold.event_id) => {
                Ok(ConfirmPlan::Sell { hold: hold.clone() })
            }
            Some(_) => Err(Rejection::UnknownEvent.into()),
            None => Ok(ConfirmPlan::Fail(match hold.map(|h| h.status_at(now_ms)) {
                Some(HoldStatus::Released) => FailureReason::HoldReleased,
                _ => FailureReason::HoldExpired,
            })),
        }
    }

    pub(super) fn confirm(
        &mut self,
        cmd: &ConfirmCmd,
        plan: ConfirmPlan,
        now_ms: u64,
        changes: &mut Vec<Change>,
    ) -> Outcome {
        let hold = match plan {
            ConfirmPlan::Fail(reason) => {
                let booking = self.settle(
                    &cmd.booking_id,
                    BookingStatus::Failed,
                    Some(reason),
                    &cmd.payment_event_id,
                    now_ms,
                    changes,
                );
                return Outcome::BookingFailed(booking);
            }
            ConfirmPlan::Sell { hold } => hold,
        };
        self.finish_hold(&hold.hold_id, HoldStatus::Confirmed, now_ms, changes);
        if let Some(event) = self.events.get_mut(&hold.event_id) {
            let mut idxs = Vec::with_capacity(hold.seat_ids.len());
            for seat_id in &hold.seat_ids {
                if let Some(idx) = event.layout().index_of(seat_id) {
                    idxs.push(idx);
                    changes.push(Change::Seat {
                        event_id: hold.event_id.clone(),
                        seat_id: seat_id.clone(),
                        status: SeatStatus::Sold,
                    });
                }
            }
            event.occupy(
                &idxs,
                Occupant::Sold(SharedId::from(cmd.booking_id.as_str())),
            );
        }
        let booking = self.settle(
            &cmd.booking_id,
            BookingStatus::Confirmed,
            None,
            &cmd.payment_event_id,
            now_ms,
            changes,
        );
        self.note_purchase(&hold.event_id, &booking.owner, now_ms);
        Outcome::Confirmed(booking)
    }

    /// Records a pending booking's settlement; the caller checked that the booking exists.
    fn settle(
        &mut self,
        booking_id: &str,
        status: BookingStatus,
        failure: Option<FailureReason>,
        payment_event_id: &str,
        now_ms: u64,
        changes: &mut Vec<Change>,
    ) -> Booking {
        let booking = self
            .bookings
            .get_mut(booking_id)
            .expect("settle follows a check that found the booking");
        booking.status = status;
        booking.failure = failure;
        booking.payment_event_id = Some(payment_event_id.to_owned());
        booking.updated_at_ms = now_ms;
        self.dirty.insert(Key::Booking(booking_id.to_owned()));
        changes.push(Change::Booking {
            booking_id: booking_id.to_owned(),
            status,
        });
        booking.clone()
    }

    pub(super) fn check_fail_payment(&self, cmd: &FailPaymentCmd) -> Checked<()> {
        let booking = self
            .bookings
            .get(&cmd.booking_id)
            .ok_or(Rejection::UnknownBooking)?;
        match settled_outcome(booking) {
            Some(outcome) => Err(Box::new(outcome)),
            None => Ok(()),
        }
    }

    pub(super) fn fail_payment(
        &mut self,
        cmd: &FailPaymentCmd,
        now_ms: u64,
        changes: &mut Vec<Change>,
    ) -> Outcome {
        let booking = self.settle(
            &cmd.booking_id,
            BookingStatus::Failed,
            Some(FailureReason::PaymentDeclined),
            &cmd.payment_event_id,
            now_ms,
            changes,
        );
        Outcome::BookingFailed(booking)
    }

    /// Only a failed booking becomes refunded; a refunded one answers as it is.
    pub(super) fn check_mark_refunded(&self, cmd: &MarkRefundedCmd) -> Checked<()> {
        let booking = self
            .bookings
            .get(&cmd.booking_id)
            .ok_or(Rejection::UnknownBooking)?;
        match booking.status {
            BookingStatus::Refunded => Err(Box::new(Outcome::Refunded(booking.clone()))),
            BookingStatus::Failed => Ok(()),
            other => Err(Rejection::BookingState(other).into()),
        }
    }

    pub(super) fn mark_refunded(
        &mut self,
        cmd: &MarkRefundedCmd,
        now_ms: u64,
        changes: &mut Vec<Change>,
    ) -> Outcome {
        let booking = self
            .bookings
            .get_mut(&cmd.booking_id)
            .expect("mark_refunded follows a check that found the booking");
        booking.status = BookingStatus::Refunded;
        booking.updated_at_ms = now_ms;
        let booking = booking.clone();
        self.dirty.insert(Key::Booking(cmd.booking_id.clone()));
        changes.push(Change::Booking {
            booking_id: cmd.booking_id.clone(),
            status: BookingStatus::Refunded,
        });
        Outcome::Refunded(booking)
    }
}

/// What a payment event answers for a booking that is already settled: replays and late
/// events change nothing.
fn settled_outcome(booking: &Booking) -> Option<Outcome> {
    match booking.status {
        BookingStatus::Confirmed => Some(Outcome::Confirmed(booking.clone())),
        BookingStatus::Failed | BookingStatus::Refunded => {
            Some(Outcome::BookingFailed(booking.clone()))
        }
        BookingStatus::PendingPayment => None,
    }
}
