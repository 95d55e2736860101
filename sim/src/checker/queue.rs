//! The waiting room's invariants, judged from a room's audit ([`RoomAudit`]: every place
//! with when it left the line, was admitted and its admission ended, and the event's sales)
//! taken from a converged replica after the run:
//!
//! - **one place per user**: no two places share a user or a ticket;
//! - **admission order = place order**: when a place was admitted, every place ahead of it
//!   in line had already left the line (admitted, left, abandoned or closed);
//! - **admitted-not-bought ≤ unsold**: at each admission, the places surely admitted and not
//!   done never outnumber the seats that were surely unsold (sound bounds: a purchase or an
//!   end in the same millisecond may fall on either side of the admission step);
//! - **sold out closes the room**: a closed room has no waiting place.
//!
//! The workload checks "joining again answers the same place" as it goes (a re-join right
//! after a read that said *waiting*). Pure: no I/O, no clock.

use std::collections::BTreeSet;

use boxoffice_raft::machine::{PlaceAudit, RoomAudit};
use boxoffice_raft::types::PlaceState;

/// What broke, in words, or `Ok`.
pub fn check_room(audit: &RoomAudit) -> Result<(), String> {
    one_place_per_user(audit)?;
    admission_follows_line_order(audit)?;
    admissions_within_inventory(audit)?;
    sold_out_closes(audit)
}

fn one_place_per_user(audit: &RoomAudit) -> Result<(), String> {
    let mut users = BTreeSet::new();
    let mut tickets = BTreeSet::new();
    for place in &audit.places {
        if !users.insert(&place.user) {
            return Err(format!("one place per user: {} has two", place.user));
        }
        if !tickets.insert(place.ticket) {
            return Err(format!(
                "one place per user: ticket {} given twice",
                place.ticket
            ));
        }
    }
    Ok(())
}

fn admission_follows_line_order(audit: &RoomAudit) -> Result<(), String> {
    let mut in_line: Vec<&PlaceAudit> = audit.places.iter().filter(|p| p.order.is_some()).collect();
    in_line.sort_by_key(|p| p.order);
    // Latest time a place ahead left the line (`u64::MAX`: one ahead never left).
    let mut ahead_left_by: Option<(u64, &PlaceAudit)> = None;
    for place in in_line {
        if let (Some(admitted_at), Some((left_at, ahead))) = (place.admitted_at_ms, ahead_left_by) {
            if left_at > admitted_at {
                return Err(format!(
                    "admission order = place order: {} (line order {:?}) admitted at {admitted_at} ms while {} (line order {:?}) still waited ahead of it",
                    place.user, place.order, ahead.user, ahead.order
                ));
            }
        }
        let left_at = place.left_line_at_ms.unwrap_or(u64::MAX);
        if ahead_left_by.is_none_or(|(t, _)| left_at > t) {
            ahead_left_by = Some((left_at, place));
        }
    }
    Ok(())
}

/// When an admission surely ended (`u64::MAX` while it runs or for a place never admitted).
fn admission_end(place: &PlaceAudit) -> u64 {
    match (place.admission_ended_at_ms, place.state) {
        (Some(t), _) => t,
        (None, PlaceState::Admitted { expires_at_ms, .. }) => expires_at_ms,
        (None, _) => u64::MAX,
    }
}

fn admissions_within_inventory(audit: &RoomAudit) -> Result<(), String> {
    let admissions: BTreeSet<u64> = audit
        .places
        .iter()
        .filter_map(|p| p.admitted_at_ms)
        .collect();
    for t in admissions {
        let admitted = audit
            .places
            .iter()
            .filter(|p| p.admitted_at_ms.is_some_and(|a| a <= t) && admission_end(p) > t)
            .count() as u64;
        let sold_before: u64 = audit
            .sales
            .iter()
            .filter(|(at, _)| *at < t)
            .map(|(_, n)| n)
            .sum();
        let unsold = audit.n_seats.saturating_sub(sold_before);
        if admitted > unsold {
            return Err(format!(
                "admitted-not-bought <= unsold: {admitted} admitted and not done at {t} ms, {unsold} seats unsold"
            ));
        }
    }
    Ok(())
}

fn sold_out_closes(audit: &RoomAudit) -> Result<(), String> {
    let waiting = audit
        .places
        .iter()
        .filter(|p| p.state == PlaceState::Waiting)
        .count();
    if audit.closed && waiting > 0 {
        return Err(format!(
            "sold out closes the room: closed, yet {waiting} places wait"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(user: &str, order: u64, left: Option<u64>, admitted: Option<u64>) -> PlaceAudit {
        PlaceAudit {
            user: user.into(),
            ticket: order + 1,
            order: Some(order),
            state: match (left, admitted) {
                (None, _) => PlaceState::Waiting,
                (Some(_), Some(at)) => PlaceState::Admitted {
                    at_ms: at,
                    expires_at_ms: at + 3_000,
                },
                (Some(_), None) => PlaceState::Abandoned,
            },
            joined_at_ms: 0,
            left_line_at_ms: left,
            admitted_at_ms: admitted,
            admission_ended_at_ms: None,
        }
    }

    fn audit(places: Vec<PlaceAudit>) -> RoomAudit {
        RoomAudit {
            n_seats: 2,
            sales: Vec::new(),
            closed: false,
            places,
            now_ms: 10_000,
        }
    }

    #[test]
    fn a_room_run_by_the_rules_passes() {
        let room = audit(vec![
            place("a", 0, Some(1_000), Some(1_000)),
            place("b", 1, Some(1_500), None),
            place("c", 2, Some(2_000), Some(2_000)),
            place("d", 3, None, None),
        ]);
        assert_eq!(check_room(&room), Ok(()));
    }

    #[test]
    fn admitting_past_someone_waiting_ahead_is_caught() {
        let room = audit(vec![
            place("a", 0, None, None),
            place("b", 1, Some(1_000), Some(1_000)),
        ]);
        let broken = check_room(&room).unwrap_err();
        assert!(
            broken.starts_with("admission order = place order"),
            "{broken}"
        );
    }

    #[test]
    fn admitting_more_than_the_seats_left_is_caught() {
        let mut room = audit(vec![
            place("a", 0, Some(1_000), Some(1_000)),
            place("b", 1, Some(1_000), Some(1_000)),
        ]);
        assert_eq!(check_room(&room), Ok(()));
        room.sales.push((500, 1));
        let broken = check_room(&room).unwrap_err();
        assert!(
            broken.starts_with("admitted-not-bought <= unsold"),
            "{broken}"
        );
    }

    #[test]
    fn a_closed_room_with_places_waiting_is_caught_and_so_is_a_second_place() {
        let mut room = audit(vec![place("a", 0, None, None)]);
        room.closed = true;
        assert!(check_room(&room)
            .unwrap_err()
            .starts_with("sold out closes"));
        let twice = audit(vec![place("a", 0, None, None), place("a", 1, None, None)]);
        assert!(check_room(&twice)
            .unwrap_err()
            .starts_with("one place per user"));
    }
}
