//! What the public read endpoints answer, and the cache of rendered event views.
//!
//! `GET /v1/events/{id}` is the page a flash crowd reloads: its JSON is rendered once into
//! bytes (with an `ETag`) and served from a bounded cache until the catalog feed invalidates
//! it or its availability counts are older than the view TTL. The seat map's own rendered
//! bytes live with the event's seats ([`crate::seats::EventSeats::seat_map`]).

use std::sync::Arc;

use axum::http::HeaderValue;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::catalog::{Event, Money, Performer, Venue};
use crate::clock::rfc3339_from_ms;
use crate::ids::digest;
use crate::seats::{Counts, EventSeats, SeatState};

/// Events whose rendered view is kept.
pub const MAX_CACHED_VIEWS: u64 = 100_000;
/// Longest a rendered view's availability counts are served before re-rendering.
pub const VIEW_AVAILABILITY_TTL_MS: u64 = 250;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventInfo {
    pub event_id: String,
    pub name: String,
    pub description: String,
    pub category: String,
    /// RFC 3339 UTC.
    pub starts_at: String,
    pub venue_id: String,
    pub performer_ids: Vec<String>,
    pub hold_ttl_seconds: u64,
    pub currency: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VenueInfo {
    pub venue_id: String,
    pub name: String,
    pub city: String,
    pub country: String,
    pub address: String,
    pub capacity: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PerformerInfo {
    pub performer_id: String,
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SectionView {
    /// `s1`, `s2`, … (seat ids start with it).
    pub id: String,
    pub name: String,
    pub price: Money,
    pub available: u32,
    pub held: u32,
    pub sold: u32,
    pub total: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Availability {
    pub available: u32,
    pub held: u32,
    pub sold: u32,
    pub total: u32,
    pub sold_out: bool,
    /// When these counts were taken, RFC 3339 UTC.
    pub as_of: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueView {
    pub enabled: bool,
}

/// `GET /v1/events/{event_id}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventView {
    pub event: EventInfo,
    pub venue: VenueInfo,
    pub performers: Vec<PerformerInfo>,
    pub sections: Vec<SectionView>,
    pub availability: Availability,
    pub on_sale: bool,
    pub queue: QueueView,
}

/// One seat of `GET /v1/events/{event_id}/seats`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Seat {
    pub id: String,
    pub section: String,
    pub row: String,
    pub number: u32,
    pub price: Money,
    pub status: SeatState,
}

/// `GET /v1/events/{event_id}/seats`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeatMap {
    pub event_id: String,
    pub seats: Vec<Seat>,
    /// RFC 3339 UTC.
    pub as_of: String,
    /// The shard log index this map reflects; grows with every change.
    pub version: u64,
}

/// One seat change of the live stream.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeatChange {
    pub id: String,
    pub status: SeatState,
}

/// The `data` of one `event: seats` message of `GET /v1/events/{event_id}/seats/stream`.
/// The first message lists every seat; later ones only what changed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeatBatch {
    pub changes: Vec<SeatChange>,
    pub as_of: String,
}

/// Builds the event view from the catalog documents and the seat cache.
pub fn event_view(
    event: &Event,
    venue: &Venue,
    performers: &[Arc<Performer>],
    seats: &EventSeats,
    now_ms: u64,
) -> EventView {
    let (per_section, total) = seats.counts(now_ms);
    let sections = venue
        .sections
        .iter()
        .map(|section| {
            let counts = seats
                .sections
                .iter()
                .position(|name| *name == section.name)
                .and_then(|i| per_section.get(i))
                .copied()
                .unwrap_or(Counts::default());
            SectionView {
                id: section.id.clone(),
                name: section.name.clone(),
                price: section.price.clone(),
                available: counts.available,
                held: counts.held,
                sold: counts.sold,
                total: counts.total(),
            }
        })
        .collect();
    EventView {
        event: EventInfo {
            event_id: event.event_id.clone(),
            name: event.name.clone(),
            description: event.description.clone(),
            category: event.category.clone(),
            starts_at: event.starts_at.clone(),
            venue_id: event.venue_id.clone(),
            performer_ids: event.performer_ids.clone(),
            hold_ttl_seconds: event.hold_ttl_seconds,
            currency: event.currency.clone(),
        },
        venue: VenueInfo {
            venue_id: venue.venue_id.clone(),
            name: venue.name.clone(),
            city: venue.city.clone(),
            country: venue.country.clone(),
            address: venue.address.clone(),
            capacity: venue.capacity,
        },
        performers: performers
            .iter()
            .map(|p| PerformerInfo {
                performer_id: p.performer_id.clone(),
                name: p.name.clone(),
                description: p.description.clone(),
            })
            .collect(),
        sections,
        availability: Availability {
            available: total.available,
            held: total.held,
            sold: total.sold,
            total: total.total(),
            sold_out: total.available == 0 && total.held == 0,
            as_of: rfc3339_from_ms(now_ms),
        },
        on_sale: event.on_sale && now_ms < event.starts_at_ms(),
        queue: QueueView {
            enabled: event.queue.enabled,
        },
    }
}

/// A rendered view and its entity tag.
pub struct Rendered {
    pub bytes: Bytes,
    pub etag: HeaderValue,
    pub fresh_until_ms: u64,
}

impl Rendered {
    pub fn new(bytes: Bytes, fresh_until_ms: u64) -> Rendered {
        let tag = format!("\"{}\"", digest(&[&bytes], 20));
        let etag =
            HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
        Rendered {
            bytes,
            etag,
            fresh_until_ms,
        }
    }
}

/// Rendered event views by event id.
pub struct ViewCache {
    views: moka::sync::Cache<String, Arc<Rendered>>,
    pub ttl_ms: u64,
}

impl ViewCache {
    pub fn new(ttl_ms: u64) -> ViewCache {
        ViewCache {
            views: moka::sync::Cache::new(MAX_CACHED_VIEWS),
            ttl_ms,
        }
    }

    /// The cached view of `event_id` if it is still fresh at `now_ms`.
    pub fn fresh(&self, event_id: &str, now_ms: u64) -> Option<Arc<Rendered>> {
        self.views
            .get(event_id)
            .filter(|r| now_ms < r.fresh_until_ms)
    }

    pub fn put(&self, event_id: &str, rendered: Arc<Rendered>) {
        self.views.insert(event_id.to_owned(), rendered);
    }

    pub fn invalidate(&self, event_id: &str) {
        self.views.invalidate(event_id);
    }

    pub fn invalidate_all(&self) {
        self.views.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use boxoffice_raft::types::{SeatSpec, SeatStatus};

    #[test]
    fn rendered_seat_maps_and_batches_match_their_documented_shapes() {
        let seats = vec![
            (
                SeatSpec {
                    id: "s1-1-1".into(),
                    section: "Floor".into(),
                    row: "1".into(),
                    number: 1,
                    price_minor: 500,
                },
                SeatStatus::Held { until_ms: 10 },
            ),
            (
                SeatSpec {
                    id: "s1-1-2".into(),
                    section: "Floor".into(),
                    row: "1".into(),
                    number: 2,
                    price_minor: 500,
                },
                SeatStatus::Sold,
            ),
        ];
        let event = crate::seats::EventSeats::detached("ev_1", 1, seats, 1);
        let map: SeatMap = serde_json::from_slice(&event.seat_map("EUR", 5))
            .expect("seat map parses as documented");
        assert_eq!(map.seats.len(), 2);
        assert_eq!(map.seats[0].status, SeatState::Held);
        assert_eq!(
            map.seats[1].price,
            Money {
                amount: 500,
                currency: "EUR".into()
            }
        );
        let batch: SeatBatch =
            serde_json::from_slice(&event.full_batch(20)).expect("batch parses as documented");
        assert_eq!(batch.changes[0].status, SeatState::Available);
    }

    #[test]
    fn etags_follow_the_bytes() {
        let a = Rendered::new(Bytes::from_static(b"{\"a\":1}"), 0);
        let b = Rendered::new(Bytes::from_static(b"{\"a\":2}"), 0);
        assert_ne!(a.etag, b.etag);
        assert_eq!(
            a.etag,
            Rendered::new(Bytes::from_static(b"{\"a\":1}"), 5).etag
        );
    }
}
