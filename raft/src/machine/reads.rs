//! What readers ask of the state: holds, bookings, an event's seats and who owns them,
//! counts, the meta group's tables, and what the leader's sweeper needs to know. Every read
//! that depends on time takes the time it describes.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Machine, Slot};
use crate::types::*;
use crate::wire::{Query, QueryResult, ReadReply};

impl Machine {
    /// Answers `query` at the group's committed time (the time of the state it reads).
    pub fn answer(&self, query: Query) -> ReadReply {
        let at_ms = self.now_ms();
        let result = match query {
            Query::Hold(id) => QueryResult::Hold(self.hold_by_id(&id).cloned()),
            Query::Booking(id) => QueryResult::Booking(self.booking_by_id(&id).cloned()),
            Query::BookingsOf(owner) => QueryResult::Bookings(self.bookings_of(&owner)),
            Query::EventSeats(id) => QueryResult::Seats(self.event_seats(&id, at_ms)),
            Query::SeatOwners(id) => QueryResult::SeatOwners(self.seat_owners(&id, at_ms)),
            Query::EventCounts(id) => QueryResult::Counts(self.seat_counts(&id, at_ms)),
            Query::Placement(id) => QueryResult::Placement(self.placement.get(&id).copied()),
            Query::Groups => {
                QueryResult::Groups(self.groups.iter().map(|(g, ms)| (*g, ms.clone())).collect())
            }
            Query::Nodes => QueryResult::Nodes(self.nodes.values().cloned().collect()),
            Query::EventsPerGroup => QueryResult::EventsPerGroup(self.events_per_group()),
            Query::Catalog { kind, id } => {
                QueryResult::Catalog(self.catalog_doc(&kind, &id).cloned())
            }
            Query::Limits => QueryResult::Limits(self.limits().clone()),
            Query::Room(id) => QueryResult::Room(self.room_figures(&id, at_ms)),
            Query::Places { event_id, places } => {
                QueryResult::Places(self.places(&event_id, &places, at_ms))
            }
        };
        ReadReply { at_ms, result }
    }

    pub fn hold_by_id(&self, hold_id: &str) -> Option<&Hold> {
        self.holds.get(hold_id).map(|h| &**h)
    }

    pub fn booking_by_id(&self, booking_id: &str) -> Option<&Booking> {
        self.bookings.get(booking_id)
    }

    pub fn bookings_of(&self, owner: &str) -> Vec<Booking> {
        self.bookings_by_owner
            .get(owner)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| self.bookings.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn event_ids(&self) -> impl Iterator<Item = &EventId> {
        self.events.keys()
    }

    /// An event's seats with their status at `now_ms`, in registration order.
    pub fn event_seats(&self, event_id: &str, now_ms: u64) -> Option<Vec<(SeatSpec, SeatStatus)>> {
        let event = self.events.get(event_id)?;
        Some(
            event
                .layout()
                .specs()
                .zip(event.all_slots())
                .map(|(spec, slot)| (spec, self.seat_status(slot, now_ms)))
                .collect(),
        )
    }

    /// An event's seats as registered and each seat's status at `now_ms`, in registration
    /// order. A feed reset takes this under the replica's read lock and pairs seats with
    /// statuses after releasing it; the seats are built from the compact layout here (the
    /// layout itself is not shared outside the machine).
    pub fn seat_statuses(
        &self,
        event_id: &str,
        now_ms: u64,
    ) -> Option<(Arc<[SeatSpec]>, Vec<SeatStatus>)> {
        let event = self.events.get(event_id)?;
        let statuses = event
            .all_slots()
            .map(|slot| self.seat_status(slot, now_ms))
            .collect();
        Some((event.layout().specs().collect(), statuses))
    }

    /// An event's seats with the hold or booking each belongs to at `now_ms`, in
    /// registration order.
    pub fn seat_owners(&self, event_id: &str, now_ms: u64) -> Option<Vec<(SeatId, SeatOwner)>> {
        let owner = |slot: Slot| match slot {
            Slot::Free => SeatOwner::Free,
            Slot::Sold(booking_id) => SeatOwner::Sold {
                booking_id: booking_id.to_owned(),
            },
            Slot::Held(hold_id) => match self.holds.get(hold_id) {
                Some(h) if h.is_live(now_ms) => SeatOwner::Held {
                    hold_id: hold_id.to_owned(),
                    until_ms: h.expires_at_ms,
                },
                _ => SeatOwner::Free,
            },
        };
        let event = self.events.get(event_id)?;
        Some(
            event
                .all_slots()
                .enumerate()
                .map(|(idx, slot)| (event.layout().id(idx).to_owned(), owner(slot)))
                .collect(),
        )
    }

    fn seat_status(&self, slot: Slot, now_ms: u64) -> SeatStatus {
        match slot {
            Slot::Free => SeatStatus::Available,
            Slot::Sold(_) => SeatStatus::Sold,
            Slot::Held(hold_id) => match self.holds.get(hold_id) {
                Some(h) if h.is_live(now_ms) => SeatStatus::Held {
                    until_ms: h.expires_at_ms,
                },
                _ => SeatStatus::Available,
            },
        }
    }

    /// Counts of seats per status at `now_ms` for one event: (available, held, sold).
    pub fn seat_counts(&self, event_id: &str, now_ms: u64) -> Option<(u32, u32, u32)> {
        let event = self.events.get(event_id)?;
        let mut counts = (0, 0, 0);
        for slot in event.all_slots() {
            match self.seat_status(slot, now_ms) {
                SeatStatus::Available => counts.0 += 1,
                SeatStatus::Held { .. } => counts.1 += 1,
                SeatStatus::Sold => counts.2 += 1,
            }
        }
        Some(counts)
    }

    pub fn catalog_doc(&self, kind: &str, id: &str) -> Option<&Vec<u8>> {
        self.catalog
            .get(&(kind.to_owned(), id.to_owned()))
            .map(|doc| &**doc)
    }

    /// Every catalog document, ordered by (kind, id); documents are shared, so cloning one
    /// copies no bytes.
    pub fn catalog(&self) -> impl Iterator<Item = (&(String, String), &Arc<Vec<u8>>)> {
        self.catalog.iter()
    }

    pub fn placement(&self) -> &BTreeMap<EventId, GroupId> {
        &self.placement
    }

    pub fn groups(&self) -> &BTreeMap<GroupId, Vec<(NodeId, String)>> {
        &self.groups
    }

    /// When the earliest active hold expires, if any (the leader proposes a sweep after it).
    pub fn next_expiry_ms(&self) -> Option<u64> {
        self.expiring.first().map(|(t, _)| *t)
    }

    /// Whether a sweep at `now_ms` has anything to tidy.
    pub fn sweep_due(&self, now_ms: u64) -> bool {
        let limits = &self.globals.limits;
        self.next_expiry_ms().is_some_and(|t| t <= now_ms)
            || self
                .finished
                .first()
                .is_some_and(|(t, _)| t.saturating_add(limits.finished_hold_kept_ms()) < now_ms)
            || self
                .request_times
                .first()
                .is_some_and(|(t, _)| t.saturating_add(limits.request_retention_ms) < now_ms)
    }

    pub fn n_holds(&self) -> usize {
        self.holds.len()
    }
}
