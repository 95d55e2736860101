//! The demo catalog `boxoffice dev` seeds on first start: hundreds of performers and venues
//! with real-looking names in many cities, a few thousand events over the coming year,
//! some sold out, some on a hot sale, some not on sale yet.
//!
//! Generation is deterministic (a splitmix64 stream from a fixed seed; dates relative to
//! the start day), and so is every id and request id, so an interrupted seeding resumes
//! where it stopped and a finished one replays as no-ops. Most venues are clubs and
//! theatres of a few hundred seats, which keeps first start quick.
//!
//! Over 600 lines because of data: the word lists the names are drawn from and the cities
//! with their currencies and prices are a third of it; the generator itself is short.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use boxoffice_raft::types::{ConfirmCmd, CreateBookingCmd, HoldCmd};
use boxoffice_raft::InventoryError;
use futures_util::stream::{self, StreamExt};
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::SplitMix64;

use crate::app::AppState;
use crate::catalog::{
    Event, Money, NewEvent, NewPerformer, NewRow, NewSection, NewVenue, QueueSettings,
    KIND_PERFORMER, KIND_VENUE,
};
use crate::problem::ApiError;
use crate::routes::admin::{create_event_doc, put_doc};

/// The size of the demo catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoSize {
    pub n_venues: usize,
    pub n_performers: usize,
    pub n_events: usize,
}

impl Default for DemoSize {
    fn default() -> Self {
        DemoSize {
            n_venues: 240,
            n_performers: 400,
            n_events: 2_400,
        }
    }
}

/// Catalog writes in flight at once while seeding (the proposer batches them).
pub const SEED_CONCURRENCY: usize = 48;
/// Every this many events one is sold out, and one is on a hot sale.
const SOLD_OUT_EVERY: usize = 40;
const HOT_SALE_EVERY: usize = 53;
/// Every this many events one is announced but not on sale yet.
const NOT_ON_SALE_EVERY: usize = 17;
/// Seats one demo fan holds at once (the inventory's per-hold limit).
const SEATS_PER_DEMO_HOLD: usize = 10;
/// Share of seats sold in a hot sale, in percent.
const HOT_SALE_SOLD_PERCENT: usize = 70;

/// A small deterministic random stream (SplitMix64 from `rand_xoshiro`, the generator
/// the whole workspace uses for seeded data).
#[derive(Debug, Clone)]
pub struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(SplitMix64::seed_from_u64(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// (city, ISO country, currency, typical seat price in minor units)
const CITIES: [(&str, &str, &str, u64); 48] = [
    ("New York", "US", "USD", 8_900),
    ("Los Angeles", "US", "USD", 7_900),
    ("Chicago", "US", "USD", 6_900),
    ("Austin", "US", "USD", 5_500),
    ("Nashville", "US", "USD", 5_900),
    ("Seattle", "US", "USD", 6_500),
    ("Denver", "US", "USD", 5_900),
    ("Atlanta", "US", "USD", 5_900),
    ("New Orleans", "US", "USD", 5_500),
    ("Boston", "US", "USD", 6_900),
    ("San Francisco", "US", "USD", 7_500),
    ("Miami", "US", "USD", 6_900),
    ("Philadelphia", "US", "USD", 5_900),
    ("Minneapolis", "US", "USD", 5_500),
    ("Portland", "US", "USD", 4_900),
    ("Toronto", "CA", "CAD", 7_900),
    ("Montreal", "CA", "CAD", 6_900),
    ("Vancouver", "CA", "CAD", 7_500),
    ("London", "GB", "GBP", 5_500),
    ("Manchester", "GB", "GBP", 4_500),
    ("Glasgow", "GB", "GBP", 3_900),
    ("Dublin", "IE", "EUR", 5_500),
    ("Paris", "FR", "EUR", 6_500),
    ("Lyon", "FR", "EUR", 4_500),
    ("Berlin", "DE", "EUR", 5_500),
    ("Hamburg", "DE", "EUR", 4_900),
    ("Munich", "DE", "EUR", 5_900),
    ("Amsterdam", "NL", "EUR", 5_500),
    ("Brussels", "BE", "EUR", 4_900),
    ("Madrid", "ES", "EUR", 4_900),
    ("Barcelona", "ES", "EUR", 5_500),
    ("Lisbon", "PT", "EUR", 3_900),
    ("Milan", "IT", "EUR", 5_500),
    ("Rome", "IT", "EUR", 4_900),
    ("Vienna", "AT", "EUR", 5_900),
    ("Zurich", "CH", "CHF", 8_900),
    ("Copenhagen", "DK", "DKK", 45_000),
    ("Stockholm", "SE", "SEK", 59_000),
    ("Oslo", "NO", "NOK", 69_000),
    ("Helsinki", "FI", "EUR", 5_500),
    ("Warsaw", "PL", "PLN", 19_900),
    ("Prague", "CZ", "CZK", 99_000),
    ("Sydney", "AU", "AUD", 8_900),
    ("Melbourne", "AU", "AUD", 7_900),
    ("Auckland", "NZ", "NZD", 7_900),
    ("Tokyo", "JP", "JPY", 9_800),
    ("Osaka", "JP", "JPY", 8_800),
    ("Mexico City", "MX", "MXN", 99_000),
];

const FIRST: [&str; 40] = [
    "Ava", "Liam", "Maya", "Noah", "Zoe", "Elijah", "Clara", "Mateo", "Ines", "Oscar", "Hazel",
    "Jonah", "Freya", "Leon", "Nina", "Felix", "Iris", "Marcus", "Lena", "Theo", "Aurora", "Silas",
    "June", "Dante", "Elise", "Rafael", "Greta", "Kofi", "Yuki", "Sofia", "Anders", "Priya",
    "Tomas", "Amara", "Caleb", "Mira", "Jasper", "Lucia", "Idris", "Sunny",
];
const LAST: [&str; 40] = [
    "Hart",
    "Delgado",
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Castillo",
    "Whitaker",
    "Novak",
    "Brennan",
    "Sato",
    "Fischer",
    "Quinn",
    "Romero",
    "Ashby",
    "Kowalski",
    "Vance",
    "Oduya",
    "Marsh",
    "Bellamy",
    "Reyes",
    "Holloway",
    "Strand",
    "Ivers",
    "Calloway",
    "Mendes",
    "Archer",
    "Lowell",
    "Tanaka",
    "Varga",
    "Sinclair",
    "Rhodes",
    "Falk",
    "Greer",
    "Monroe",
    "Petrov",
    "Wilde",
    "Achebe",
    "Duval",
    "Keane",
    "Sterling",
];
const ADJECTIVES: [&str; 32] = [
    "Electric",
    "Velvet",
    "Midnight",
    "Golden",
    "Neon",
    "Silver",
    "Hollow",
    "Wild",
    "Crimson",
    "Paper",
    "Northern",
    "Lunar",
    "Broken",
    "Burning",
    "Quiet",
    "Copper",
    "Glass",
    "Wandering",
    "Restless",
    "Electric",
    "Faded",
    "Savage",
    "Gentle",
    "Cosmic",
    "Rusty",
    "Bright",
    "Distant",
    "Hidden",
    "Frozen",
    "Royal",
    "Secret",
    "Violet",
];
const NOUNS: [&str; 32] = [
    "Foxes",
    "Tides",
    "Engines",
    "Ravens",
    "Lanterns",
    "Satellites",
    "Wolves",
    "Harbors",
    "Pilots",
    "Owls",
    "Rivers",
    "Machines",
    "Sparrows",
    "Giants",
    "Kings",
    "Echoes",
    "Comets",
    "Monarchs",
    "Saints",
    "Drifters",
    "Shadows",
    "Parade",
    "Orchards",
    "Strangers",
    "Canyons",
    "Arrows",
    "Ghosts",
    "Signals",
    "Horses",
    "Embers",
    "Dreamers",
    "Wires",
];
const TOURS: [&str; 16] = [
    "World Tour",
    "Live",
    "Farewell Tour",
    "Summer Tour",
    "Acoustic Nights",
    "Reunion Tour",
    "In Concert",
    "Unplugged",
    "Greatest Hits Tour",
    "Winter Tour",
    "Album Release Show",
    "Arena Tour",
    "Anniversary Tour",
    "Intimate Evening",
    "Festival Warm-Up",
    "Homecoming",
];
const PLAYS: [&str; 16] = [
    "The Glass Menagerie",
    "A Midsummer Night's Dream",
    "Death of a Salesman",
    "The Importance of Being Earnest",
    "Hamlet",
    "Our Town",
    "The Cherry Orchard",
    "Twelfth Night",
    "Waiting for Godot",
    "Macbeth",
    "Pygmalion",
    "The Seagull",
    "Much Ado About Nothing",
    "A Doll's House",
    "The Tempest",
    "Cyrano de Bergerac",
];
const GENRES: [&str; 12] = [
    "indie rock",
    "jazz",
    "electronic",
    "folk",
    "hip-hop",
    "soul",
    "classical",
    "country",
    "metal",
    "pop",
    "blues",
    "afrobeat",
];

/// Seats per row and rows per section for each kind of venue: (kind name, sections, rows
/// per section, seats per row). Clubs and theatres dominate so first start stays quick.
const VENUE_KINDS: [(&str, &[&str], usize, u32); 5] = [
    ("Club", &["General Admission"], 6, 20),
    ("Ballroom", &["Floor", "Balcony"], 6, 18),
    ("Theatre", &["Orchestra", "Mezzanine", "Balcony"], 8, 20),
    ("Music Hall", &["Floor", "Loge", "Balcony"], 10, 24),
    (
        "Arena",
        &["Floor A", "Floor B", "Lower Bowl", "Upper Bowl"],
        20,
        30,
    ),
];

/// Which venue kind the i-th venue is: mostly small rooms.
fn venue_kind(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..=39 => 0,
        40..=64 => 1,
        65..=86 => 2,
        87..=96 => 3,
        _ => 4,
    }
}

pub fn venue_id(i: usize) -> String {
    format!("ve_demo_{i:04}")
}

pub fn performer_id(i: usize) -> String {
    format!("pf_demo_{i:04}")
}

pub fn event_id(i: usize) -> String {
    format!("ev_demo_{i:05}")
}

/// The i-th demo venue.
pub fn venue(i: usize) -> NewVenue {
    let mut rng = Rng::new(0xB0C5_0FF1_CE00_0000 ^ i as u64);
    let (city, country, currency, base_price) = CITIES[i % CITIES.len()];
    let kind = venue_kind(&mut rng);
    let (kind_name, sections, rows, seats_per_row) = VENUE_KINDS[kind];
    let name = match rng.below(4) {
        0 => format!("{city} {kind_name}"),
        1 => format!("The {} {kind_name}", rng.pick(&ADJECTIVES)),
        2 => format!("{} {kind_name}", rng.pick(&LAST)),
        _ => format!("{} {} {kind_name}", rng.pick(&ADJECTIVES), rng.pick(&LAST)),
    };
    let sections = sections
        .iter()
        .enumerate()
        .map(|(s, section)| {
            // Front sections cost more.
            let price = base_price * (10 + 4 * (sections.len() - s) as u64) / 14;
            let n_rows = rows.saturating_sub(rng.below(rows / 3 + 1)).max(1);
            NewSection {
                name: (*section).to_owned(),
                price: Money {
                    amount: price.max(100),
                    currency: currency.to_owned(),
                },
                rows: (0..n_rows)
                    .map(|r| NewRow {
                        name: row_name(r),
                        seats: seats_per_row.saturating_sub(rng.below(5) as u32).max(4),
                    })
                    .collect(),
            }
        })
        .collect();
    NewVenue {
        name,
        city: city.to_owned(),
        country: country.to_owned(),
        address: format!("{} {} Street", 1 + rng.below(900), rng.pick(&LAST)),
        sections,
    }
}

/// Row names A..Z, then AA, AB, …
fn row_name(r: usize) -> String {
    let letters = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    if r < 26 {
        (letters[r] as char).to_string()
    } else {
        format!(
            "{}{}",
            letters[(r / 26 - 1) % 26] as char,
            letters[r % 26] as char
        )
    }
}

/// The demo's headliner: performer 0, the act the README's search examples look for
/// (misspelled, in Chicago, and as a type-ahead prefix).
pub const HEADLINER_NAME: &str = "Taylor Swift";

/// Events that star the headliner, so the README's examples find them in any size of demo:
/// (event index, venue index). Venue `v` is in `CITIES[v % CITIES.len()]`: 2 Chicago,
/// 0 New York, 1 Los Angeles, 4 Nashville. Every one of these events sells normally.
const HEADLINER_EVENTS: [(usize, usize); 4] = [(2, 2), (4, 0), (5, 1), (6, 4)];

/// The i-th demo performer, with its category.
pub fn performer(i: usize) -> (NewPerformer, &'static str) {
    if i == 0 {
        let performer = NewPerformer {
            name: HEADLINER_NAME.to_owned(),
            description: "A pop act on tour.".to_owned(),
        };
        return (performer, "concert");
    }
    let mut rng = Rng::new(0x5EED_0000_0000_0000 ^ i as u64);
    let (name, category, description) = match i % 10 {
        0..=5 => {
            let genre = rng.pick(&GENRES);
            let name = match rng.below(5) {
                0 => format!("The {} {}", rng.pick(&ADJECTIVES), rng.pick(&NOUNS)),
                1 => format!("{} {}", rng.pick(&FIRST), rng.pick(&LAST)),
                2 => format!("{} {} Quartet", rng.pick(&FIRST), rng.pick(&LAST)),
                3 => format!("{} & the {}", rng.pick(&FIRST), rng.pick(&NOUNS)),
                _ => format!("{} {}", rng.pick(&ADJECTIVES), rng.pick(&NOUNS)),
            };
            (name, "concert", format!("A {genre} act on tour."))
        }
        6 | 7 => (
            format!("{} {}", rng.pick(&FIRST), rng.pick(&LAST)),
            "comedy",
            "Stand-up comedy.".to_owned(),
        ),
        8 => {
            let (city, ..) = CITIES[rng.below(CITIES.len())];
            (
                format!("{city} {}", rng.pick(&NOUNS)),
                "sports",
                format!("The professional team of {city}."),
            )
        }
        _ => (
            format!("{} Players", rng.pick(&LAST)),
            "theater",
            "A touring theatre company.".to_owned(),
        ),
    };
    (NewPerformer { name, description }, category)
}

/// How the i-th event sells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaleState {
    Normal,
    NotOnSale,
    SoldOut,
    HotSale,
}

pub fn sale_state(i: usize) -> SaleState {
    if i % SOLD_OUT_EVERY == 7 {
        SaleState::SoldOut
    } else if i % HOT_SALE_EVERY == 11 {
        SaleState::HotSale
    } else if i % NOT_ON_SALE_EVERY == 3 {
        SaleState::NotOnSale
    } else {
        SaleState::Normal
    }
}

/// The i-th demo event, starting within a year of `day0_ms` (a UTC midnight).
pub fn event(i: usize, size: DemoSize, day0_ms: u64) -> NewEvent {
    let mut rng = Rng::new(0xE4E4_0000_0000_0000 ^ i as u64);
    let headliner_venue = HEADLINER_EVENTS
        .iter()
        .find(|(event_idx, _)| *event_idx == i)
        .map(|(_, venue_idx)| (*venue_idx).min(size.n_venues.saturating_sub(1)));
    let performer_idx = match headliner_venue {
        Some(_) => 0,
        None => rng.below(size.n_performers),
    };
    let (headliner, category) = performer(performer_idx);
    let mut performer_ids = vec![performer_id(performer_idx)];
    let name = match category {
        "concert" => {
            if rng.below(3) == 0 {
                let support = rng.below(size.n_performers);
                if support != performer_idx && performer(support).1 == "concert" {
                    performer_ids.push(performer_id(support));
                }
            }
            format!("{}: {}", headliner.name, rng.pick(&TOURS))
        }
        "comedy" => format!("{} Live", headliner.name),
        "sports" => {
            let (city, ..) = CITIES[rng.below(CITIES.len())];
            format!("{} vs {city}", headliner.name)
        }
        _ => format!("{} presents {}", headliner.name, rng.pick(&PLAYS)),
    };
    // Sold-out and hot events play small rooms so seeding them stays quick.
    let venue_idx = match (headliner_venue, sale_state(i)) {
        (Some(venue_idx), _) => venue_idx,
        (None, SaleState::SoldOut | SaleState::HotSale) => {
            (rng.below(size.n_venues / 4 + 1) * 4).min(size.n_venues - 1)
        }
        (None, _) => rng.below(size.n_venues),
    };
    let days = 1 + rng.below(364) as u64;
    let hour = [18, 19, 19, 20, 20, 21][rng.below(6)];
    let starts_at_ms =
        day0_ms + days * 86_400_000 + hour * 3_600_000 + [0, 30][rng.below(2)] * 60_000;
    let state = sale_state(i);
    NewEvent {
        name,
        description: format!(
            "{} at {}.",
            headliner.description.trim_end_matches('.'),
            venue(venue_idx).name
        ),
        category: category.to_owned(),
        venue_id: venue_id(venue_idx),
        performer_ids,
        starts_at: crate::clock::rfc3339_from_ms(starts_at_ms),
        on_sale: state != SaleState::NotOnSale,
        hold_ttl_seconds: 600,
        queue: QueueSettings {
            enabled: state == SaleState::HotSale,
            admit_per_second: 50,
            ..QueueSettings::default()
        },
    }
}

/// Progress of a seeding run, for logs.
#[derive(Debug, Default)]
pub struct SeedProgress {
    pub venues: AtomicUsize,
    pub performers: AtomicUsize,
    pub events: AtomicUsize,
}

/// Writes the demo catalog through `state` (the same code paths the admin API uses).
/// Idempotent: ids and request ids are deterministic, so a rerun changes nothing new.
pub async fn seed(
    state: &AppState,
    size: DemoSize,
    day0_ms: u64,
    progress: Arc<SeedProgress>,
) -> Result<(), ApiError> {
    let now_ms = state.now_ms();
    let venues = stream::iter(0..size.n_venues).map(|i| {
        let progress = progress.clone();
        async move {
            let id = venue_id(i);
            if state.catalog.venue(&id).is_none() {
                let doc = venue(i).into_venue(id.clone(), now_ms, String::new())?;
                put_doc(state, KIND_VENUE, &id, &doc).await?;
            }
            progress.venues.fetch_add(1, Ordering::Relaxed);
            Ok::<_, ApiError>(())
        }
    });
    run_all(venues).await?;
    let performers = stream::iter(0..size.n_performers).map(|i| {
        let progress = progress.clone();
        async move {
            let id = performer_id(i);
            if state.catalog.performer(&id).is_none() {
                let doc = performer(i)
                    .0
                    .into_performer(id.clone(), now_ms, String::new())?;
                put_doc(state, KIND_PERFORMER, &id, &doc).await?;
            }
            progress.performers.fetch_add(1, Ordering::Relaxed);
            Ok::<_, ApiError>(())
        }
    });
    run_all(performers).await?;
    let events = stream::iter(0..size.n_events).map(|i| {
        let progress = progress.clone();
        async move {
            let id = event_id(i);
            let event = match state.catalog.event(&id) {
                Some(event) => event,
                None => Arc::new(
                    create_event_doc(state, id.clone(), event(i, size, day0_ms), String::new())
                        .await?,
                ),
            };
            match sale_state(i) {
                SaleState::SoldOut => sell(state, &event, 100).await?,
                SaleState::HotSale => sell(state, &event, HOT_SALE_SOLD_PERCENT).await?,
                _ => {}
            }
            progress.events.fetch_add(1, Ordering::Relaxed);
            Ok::<_, ApiError>(())
        }
    });
    run_all(events).await
}

async fn run_all<F: std::future::Future<Output = Result<(), ApiError>>>(
    tasks: impl futures_util::Stream<Item = F>,
) -> Result<(), ApiError> {
    let results = tasks.buffer_unordered(SEED_CONCURRENCY);
    let mut results = std::pin::pin!(results);
    while let Some(result) = results.next().await {
        result?;
    }
    Ok(())
}

/// Sells `percent` of the event's seats to demo fans: hold, book, confirm, ten seats at a
/// time (the same commands a real sale goes through, settled without a processor).
async fn sell(state: &AppState, event: &Event, percent: usize) -> Result<(), ApiError> {
    let seats = state.event_seats(&event.event_id).await?;
    let n_to_sell = seats.specs.len() * percent / 100;
    let chunks: Vec<Vec<String>> = seats.specs[..n_to_sell]
        .chunks(SEATS_PER_DEMO_HOLD)
        .map(|c| c.iter().map(|s| s.id.clone()).collect())
        .collect();
    let group = state.inventory.group_of(&event.event_id).await?;
    for (n, seat_ids) in chunks.into_iter().enumerate() {
        let fan = format!("demo-fan-{n}");
        let hold_id = format!("ho_{n:016x}.{}", event.event_id);
        let booking_id = format!("bk_{n:016x}.{}", event.event_id);
        let request = |step: usize| format!("demo/{booking_id}/{step}");
        let hold = HoldCmd {
            event_id: event.event_id.clone(),
            hold_id: hold_id.clone(),
            owner: fan.clone(),
            seat_ids,
            ttl_ms: Some(600_000),
        };
        if !went_through(state.inventory.hold(&request(0), hold).await)? {
            continue;
        }
        let booking = CreateBookingCmd {
            booking_id: booking_id.clone(),
            hold_id,
            owner: fan,
            payment_ref: "demo-seed".into(),
        };
        let created = state
            .inventory
            .create_booking(&event.event_id, &request(1), booking)
            .await;
        if !went_through(created)? {
            continue;
        }
        let confirm = ConfirmCmd {
            booking_id: booking_id.clone(),
            payment_event_id: "demo-seed".into(),
        };
        went_through(state.inventory.confirm(group, &request(2), confirm).await)?;
    }
    Ok(())
}

/// Whether a step of a demo sale went through: `Ok(false)` when somebody took the seats
/// first (a rerun after real sales), so the chunk is skipped.
fn went_through<T>(result: Result<T, InventoryError>) -> Result<bool, ApiError> {
    match result {
        Ok(_) => Ok(true),
        Err(InventoryError::SeatsTaken { .. } | InventoryError::Rejected(_)) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_catalog_is_deterministic_and_valid() {
        let size = DemoSize::default();
        let day0 = 1_800_000_000_000 - 1_800_000_000_000 % 86_400_000;
        assert_eq!(format!("{:?}", venue(3)), format!("{:?}", venue(3)));
        assert_eq!(
            format!("{:?}", event(42, size, day0)),
            format!("{:?}", event(42, size, day0))
        );
        let mut total_seats = 0usize;
        let mut cities = std::collections::BTreeSet::new();
        for i in 0..size.n_venues {
            let v = venue(i)
                .into_venue(venue_id(i), 0, String::new())
                .expect("demo venues are valid");
            cities.insert(v.city.clone());
            total_seats += v.capacity as usize;
        }
        assert!(cities.len() >= 40, "many cities");
        assert!(
            total_seats / size.n_venues < 700,
            "mostly small rooms: {} seats on average",
            total_seats / size.n_venues
        );
        for i in 0..size.n_performers {
            performer(i)
                .0
                .into_performer(performer_id(i), 0, String::new())
                .expect("demo performers are valid");
        }
        let mut states = [0usize; 4];
        for i in 0..size.n_events {
            let e = event(i, size, day0);
            let v = venue(i % size.n_venues)
                .into_venue(e.venue_id.clone(), 0, String::new())
                .expect("venue");
            let parsed = e
                .clone()
                .into_event(event_id(i), &v, 0, String::new())
                .expect("demo events are valid");
            assert!(parsed.starts_at_ms > day0 && parsed.starts_at_ms < day0 + 366 * 86_400_000);
            states[sale_state(i) as usize] += 1;
        }
        assert!(
            states.iter().all(|n| *n > 0),
            "every kind of sale appears: {states:?}"
        );
        assert_eq!(row_name(0), "A");
        assert_eq!(row_name(27), "AB");
    }

    #[test]
    fn the_headliner_plays_chicago_in_every_size_of_demo() {
        let day0 = 1_800_000_000_000 - 1_800_000_000_000 % 86_400_000;
        for n_events in [10, 200, DemoSize::default().n_events] {
            let size = DemoSize {
                n_events,
                n_venues: (n_events / 10).max(5),
                n_performers: (n_events / 6).max(2),
            };
            let in_chicago = HEADLINER_EVENTS.iter().any(|(i, _)| {
                let e = event(*i, size, day0);
                let venue_idx: usize = e.venue_id["ve_demo_".len()..].parse().expect("index");
                e.performer_ids[0] == performer_id(0)
                    && e.on_sale
                    && !e.queue.enabled
                    && venue(venue_idx).city == "Chicago"
            });
            assert!(
                in_chicago,
                "{HEADLINER_NAME} in Chicago with {n_events} events"
            );
        }
        assert_eq!(performer(0).0.name, HEADLINER_NAME);
    }

    #[test]
    fn rng_is_a_fixed_stream() {
        let mut rng = Rng::new(7);
        let first: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        let mut again = Rng::new(7);
        assert_eq!(first, (0..3).map(|_| again.next_u64()).collect::<Vec<_>>());
        // The published SplitMix64 stream: the demo catalog is the same on every platform.
        assert_eq!(Rng::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
        assert!(rng.below(10) < 10);
    }
}
