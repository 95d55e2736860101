//! How the inventory's answers become API errors: [`InventoryError`]s (no leader, outcome
//! unknown, seats taken) and replicated [`Rejection`]s, which depend on what the request was
//! doing ([`refused`]). The status codes themselves are chosen in one place only,
//! [`crate::problem`]; this module picks the [`ApiError`] variant.

use boxoffice_raft::types::{HoldStatus, Rejection};
use boxoffice_raft::InventoryError;

use crate::problem::ApiError;

/// Seconds a client should wait before retrying after a 503 from the inventory.
pub const NO_LEADER_RETRY_AFTER_SECS: u64 = 1;

impl From<InventoryError> for ApiError {
    fn from(error: InventoryError) -> Self {
        match error {
            InventoryError::NoLeader { group } => ApiError::Unavailable {
                detail: format!("shard {group} has no leader right now; nothing was changed"),
                retry_after_secs: NO_LEADER_RETRY_AFTER_SECS,
            },
            InventoryError::OutcomeUnknown { group, .. } => ApiError::Unavailable {
                detail: format!("shard {group} did not answer in time; retry with the same Idempotency-Key to learn the outcome"),
                retry_after_secs: NO_LEADER_RETRY_AFTER_SECS,
            },
            InventoryError::UnknownEvent(event_id) => ApiError::not_found(format!("no event {event_id}")),
            InventoryError::Invalid(detail) => ApiError::InvalidRequest { detail, field: None },
            InventoryError::Protocol(detail) => ApiError::Internal(format!("inventory protocol: {detail}")),
            InventoryError::SeatsTaken { seat_ids } => ApiError::SeatUnavailable { unavailable_seats: seat_ids },
            InventoryError::NotEnoughSeats { available } => ApiError::NotEnoughSeats { available },
            InventoryError::Rejected(r) => rejection(r, Doing::Other),
            InventoryError::Unavailable { group, reason } => ApiError::Unavailable {
                detail: format!("shard {group}: {reason}"),
                retry_after_secs: NO_LEADER_RETRY_AFTER_SECS,
            },
            InventoryError::Unauthorized(detail) => ApiError::Internal(format!(
                "the storage nodes refused this API node's cluster credential (check BOXOFFICE_CLUSTER_KEY): {detail}"
            )),
        }
    }
}

/// The API error for a failed inventory call made while `doing` something: a replicated
/// rejection is read in that light, every other error as [`From`] reads it.
pub fn refused(error: InventoryError, doing: Doing) -> ApiError {
    match error {
        InventoryError::Rejected(r) => rejection(r, doing),
        other => other.into(),
    }
}

/// What a rejected command was doing, where the answer depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doing {
    Hold,
    Release,
    Book,
    Settle,
    Catalog,
    /// Nothing that changes how a rejection reads.
    Other,
}

fn hold_status_word(status: HoldStatus) -> &'static str {
    match status {
        HoldStatus::Active => "active",
        HoldStatus::Released => "released",
        HoldStatus::Confirmed => "confirmed",
        HoldStatus::Expired => "expired",
    }
}

/// The API error for a replicated rejection.
pub fn rejection(rejection: Rejection, doing: Doing) -> ApiError {
    match rejection {
        Rejection::UnknownEvent => ApiError::not_found("no such event"),
        Rejection::UnknownSeats(ids) => ApiError::InvalidRequest {
            detail: format!("these seats are not seats of the event: {}", ids.join(", ")),
            field: Some("seat_ids".into()),
        },
        Rejection::UnknownHold => ApiError::not_found("no such hold"),
        Rejection::UnknownBooking => ApiError::not_found("no such booking"),
        Rejection::NotOwner => ApiError::Conflict {
            detail: "this hold is not yours".into(),
        },
        Rejection::HoldNotActive(HoldStatus::Expired) if doing == Doing::Book => ApiError::Gone {
            detail: "the hold has expired".into(),
        },
        Rejection::HoldNotActive(status) => ApiError::Conflict {
            detail: format!("the hold is {}", hold_status_word(status)),
        },
        Rejection::TooManySeats { max } => ApiError::InvalidRequest {
            detail: format!("hold at most {max} seats at once"),
            field: Some("seat_ids".into()),
        },
        Rejection::TooManyHolds { max } => ApiError::Conflict {
            detail: format!(
                "you already have {max} active holds for this event; book or release one first"
            ),
        },
        Rejection::TtlOutOfRange { min_ms, max_ms } => ApiError::Unprocessable {
            detail: format!(
                "the event's hold lifetime must be {}..={} seconds",
                min_ms / 1000,
                max_ms / 1000
            ),
            field: Some("hold_ttl_seconds".into()),
        },
        Rejection::DuplicateSeats(ids) => ApiError::InvalidRequest {
            detail: format!("seats listed twice: {}", ids.join(", ")),
            field: Some("seat_ids".into()),
        },
        Rejection::NoSeats => ApiError::InvalidRequest {
            detail: "name at least one seat".into(),
            field: Some("seat_ids".into()),
        },
        Rejection::IdInUse => ApiError::Conflict {
            detail: "the id is already in use".into(),
        },
        Rejection::RequestIdReused => ApiError::IdempotencyKeyReused,
        Rejection::EventConflict => ApiError::Conflict {
            detail: "the event is already registered with different seats".into(),
        },
        Rejection::BookingState(_) => ApiError::Conflict {
            detail: "the booking is not in a state that allows this".into(),
        },
        Rejection::HoldAlreadyBooked(booking_id) => ApiError::Conflict {
            detail: format!("the hold already has booking {booking_id}"),
        },
        Rejection::Invalid(detail) if doing == Doing::Catalog => ApiError::Unprocessable {
            detail,
            field: None,
        },
        Rejection::Invalid(detail) => ApiError::InvalidRequest {
            detail,
            field: None,
        },
        Rejection::UnknownSection(name) => ApiError::InvalidRequest {
            detail: format!("the event's venue has no section named {name:?}"),
            field: Some("section".into()),
        },
        Rejection::NoWaitingRoom => ApiError::Conflict {
            detail: "this event has no waiting room".into(),
        },
        Rejection::RoomFull => ApiError::Conflict {
            detail: "the waiting room is full".into(),
        },
        Rejection::UnknownPlace => {
            ApiError::not_found("no such place of yours in the waiting room")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_holds_are_gone_only_when_booking() {
        assert!(matches!(
            rejection(Rejection::HoldNotActive(HoldStatus::Expired), Doing::Book),
            ApiError::Gone { .. }
        ));
        assert!(matches!(
            rejection(
                Rejection::HoldNotActive(HoldStatus::Expired),
                Doing::Release
            ),
            ApiError::Conflict { .. }
        ));
        assert!(matches!(
            rejection(Rejection::RequestIdReused, Doing::Hold),
            ApiError::IdempotencyKeyReused
        ));
        assert!(matches!(
            ApiError::from(InventoryError::NoLeader { group: 3 }),
            ApiError::Unavailable {
                retry_after_secs: 1,
                ..
            }
        ));
        assert!(matches!(
            rejection(Rejection::UnknownSeats(vec!["x".into()]), Doing::Hold),
            ApiError::InvalidRequest { field: Some(f), .. } if f == "seat_ids"
        ));
    }
}
