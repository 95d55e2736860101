//! The catalog: what admins send ([`NewVenue`], [`NewPerformer`], [`NewEvent`],
//! [`EventPatch`]), the documents stored in the meta group (JSON, kinds [`KIND_VENUE`],
//! [`KIND_PERFORMER`], [`KIND_EVENT`]), their validation, and the seat layout a venue
//! expands into.
//!
//! Validation is pure and happens here, before anything is proposed, so a bad request is a
//! 400 naming the field and never half a catalog.
//!
//! Near 750 lines: about 600 of request shapes, stored documents and their field-naming
//! validation, then the tests of each refusal.

use boxoffice_raft::types::SeatSpec;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::{parse_rfc3339_ms, rfc3339_from_ms};
use crate::ids::is_valid_id;
use crate::problem::ApiError;

pub const KIND_VENUE: &str = "venue";
pub const KIND_PERFORMER: &str = "performer";
pub const KIND_EVENT: &str = "event";

/// Longest name (venue, performer, event, section), in bytes.
pub const MAX_NAME_BYTES: usize = 200;
/// Longest description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 4_000;
/// Longest city, country, address, category, in bytes.
pub const MAX_SHORT_TEXT_BYTES: usize = 200;
/// Longest row name, in bytes (row names are part of seat ids).
pub const MAX_ROW_NAME_BYTES: usize = 8;
pub const MAX_SECTIONS_PER_VENUE: usize = 100;
pub const MAX_ROWS_PER_SECTION: usize = 200;
pub const MAX_SEATS_PER_ROW: u32 = 500;
/// Most seats a venue may have (the inventory's per-event limit).
pub const MAX_SEATS_PER_VENUE: usize = boxoffice_raft::types::MAX_SEATS_PER_EVENT;
pub const MAX_PERFORMERS_PER_EVENT: usize = 32;
/// Largest seat price, in minor units.
pub const MAX_PRICE_MINOR: u64 = 10_000_000;
/// Hold lifetime bounds and default, per event.
pub const MIN_HOLD_TTL_SECONDS: u64 = 1;
pub const MAX_HOLD_TTL_SECONDS: u64 = 3_600;
pub const DEFAULT_HOLD_TTL_SECONDS: u64 = 600;
/// Waiting-room admission rate bounds and default.
pub const DEFAULT_ADMIT_PER_SECOND: u32 = 50;
pub const MAX_ADMIT_PER_SECOND: u32 = 100_000;
/// Admission lifetime and abandonment bounds and defaults, in seconds.
pub const DEFAULT_ADMISSION_TTL_SECONDS: u64 = 600;
pub const DEFAULT_ABANDON_AFTER_SECONDS: u64 = 120;
pub const MAX_QUEUE_WINDOW_SECONDS: u64 = 86_400;

/// An amount of money: integer minor units of an ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Money {
    /// Minor units (cents for USD).
    #[schema(minimum = 0, example = 12950)]
    pub amount: u64,
    /// ISO 4217, upper case.
    #[schema(example = "USD")]
    pub currency: String,
}

/// `POST /admin/v1/venues`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVenue {
    #[schema(example = "Soldier Field")]
    pub name: String,
    #[schema(example = "Chicago")]
    pub city: String,
    /// ISO 3166-1 alpha-2.
    #[schema(example = "US")]
    pub country: String,
    #[serde(default)]
    pub address: String,
    pub sections: Vec<NewSection>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSection {
    #[schema(example = "Floor A")]
    pub name: String,
    pub price: Money,
    pub rows: Vec<NewRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRow {
    /// 1..=8 ASCII letters or digits, unique within the section.
    #[schema(example = "1")]
    pub name: String,
    #[schema(minimum = 1, maximum = 500, example = 20)]
    pub seats: u32,
}

/// `POST /admin/v1/performers`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPerformer {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// Waiting-room settings of an event. A PATCH replaces all of them (omitted ones take their
/// defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    pub enabled: bool,
    #[serde(default = "default_admit_per_second")]
    #[schema(minimum = 1, maximum = 100000)]
    pub admit_per_second: u32,
    /// RFC 3339: places taken before this time are shuffled once when it passes (drawn from
    /// the log, reproducible); `null`: the room is open at once.
    #[serde(default)]
    #[schema(example = "2027-05-01T10:00:00Z")]
    pub opens_at: Option<String>,
    /// How long an admission (and its token) lasts.
    #[serde(default = "default_admission_ttl")]
    #[schema(minimum = 1, maximum = 86400)]
    pub admission_ttl_seconds: u64,
    /// A waiting place not read or streamed for this long is dropped.
    #[serde(default = "default_abandon_after")]
    #[schema(minimum = 1, maximum = 86400)]
    pub abandon_after_seconds: u64,
}

fn default_admit_per_second() -> u32 {
    DEFAULT_ADMIT_PER_SECOND
}

fn default_admission_ttl() -> u64 {
    DEFAULT_ADMISSION_TTL_SECONDS
}

fn default_abandon_after() -> u64 {
    DEFAULT_ABANDON_AFTER_SECONDS
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            enabled: false,
            admit_per_second: DEFAULT_ADMIT_PER_SECOND,
            opens_at: None,
            admission_ttl_seconds: DEFAULT_ADMISSION_TTL_SECONDS,
            abandon_after_seconds: DEFAULT_ABANDON_AFTER_SECONDS,
        }
    }
}

impl QueueSettings {
    /// The settings as the inventory's state machine applies them (validated first).
    pub fn to_inventory(&self) -> boxoffice_raft::types::QueueSettings {
        boxoffice_raft::types::QueueSettings {
            enabled: self.enabled,
            admit_per_second: self.admit_per_second,
            opens_at_ms: self.opens_at.as_deref().and_then(parse_rfc3339_ms),
            admission_ttl_ms: self.admission_ttl_seconds.saturating_mul(1000),
            abandon_after_ms: self.abandon_after_seconds.saturating_mul(1000),
        }
    }
}

/// `POST /admin/v1/events`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// A lowercase slug such as `concert`, `sports`, `theater`, `comedy`.
    #[schema(example = "concert")]
    pub category: String,
    pub venue_id: String,
    #[serde(default)]
    pub performer_ids: Vec<String>,
    /// RFC 3339.
    #[schema(example = "2027-06-01T19:00:00Z")]
    pub starts_at: String,
    #[serde(default = "default_true")]
    pub on_sale: bool,
    #[serde(default = "default_hold_ttl")]
    #[schema(minimum = 1, maximum = 3600)]
    pub hold_ttl_seconds: u64,
    #[serde(default)]
    pub queue: QueueSettings,
}

fn default_true() -> bool {
    true
}

fn default_hold_ttl() -> u64 {
    DEFAULT_HOLD_TTL_SECONDS
}

/// `PATCH /admin/v1/events/{id}`: every field optional; the venue cannot change (its seats
/// are registered).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub performer_ids: Option<Vec<String>>,
    pub starts_at: Option<String>,
    pub on_sale: Option<bool>,
    #[schema(minimum = 1, maximum = 3600)]
    pub hold_ttl_seconds: Option<u64>,
    pub queue: Option<QueueSettings>,
}

/// A stored venue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Venue {
    pub venue_id: String,
    pub name: String,
    pub city: String,
    pub country: String,
    pub address: String,
    pub sections: Vec<Section>,
    pub capacity: u32,
    pub currency: String,
    pub created_at: String,
    /// Digest of the create request, to answer an idempotent retry.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schema(ignore)]
    pub request_digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Section {
    /// `s1`, `s2`, … in layout order.
    pub id: String,
    pub name: String,
    pub price: Money,
    pub rows: Vec<Row>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Row {
    pub name: String,
    pub seats: u32,
}

/// A stored performer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Performer {
    pub performer_id: String,
    pub name: String,
    pub description: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schema(ignore)]
    pub request_digest: String,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    pub event_id: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub venue_id: String,
    pub performer_ids: Vec<String>,
    /// RFC 3339 UTC.
    pub starts_at: String,
    #[serde(default)]
    #[schema(ignore)]
    pub starts_at_ms: u64,
    pub on_sale: bool,
    pub hold_ttl_seconds: u64,
    pub queue: QueueSettings,
    pub currency: String,
    pub capacity: u32,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schema(ignore)]
    pub request_digest: String,
}

fn text(field: &str, value: &str, max_bytes: usize, required: bool) -> Result<(), ApiError> {
    if required && value.trim().is_empty() {
        return Err(ApiError::invalid_field(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if value.len() > max_bytes {
        return Err(ApiError::invalid_field(
            field,
            format!("{field} is at most {max_bytes} bytes"),
        ));
    }
    if value.chars().any(char::is_control) && field != "description" {
        return Err(ApiError::invalid_field(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(())
}

fn currency(field: &str, value: &str) -> Result<(), ApiError> {
    if value.len() == 3 && value.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            field,
            "currency must be an ISO 4217 code in upper case, such as USD",
        ))
    }
}

fn category(field: &str, value: &str) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= 32
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            field,
            "category must be a lowercase slug (a-z, 0-9, -) of at most 32 bytes",
        ))
    }
}

fn hold_ttl(field: &str, seconds: u64) -> Result<(), ApiError> {
    if (MIN_HOLD_TTL_SECONDS..=MAX_HOLD_TTL_SECONDS).contains(&seconds) {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            field,
            format!("hold_ttl_seconds must be {MIN_HOLD_TTL_SECONDS}..={MAX_HOLD_TTL_SECONDS}"),
        ))
    }
}

fn queue(field: &str, settings: &QueueSettings) -> Result<(), ApiError> {
    if settings.admit_per_second == 0 || settings.admit_per_second > MAX_ADMIT_PER_SECOND {
        return Err(ApiError::invalid_field(
            format!("{field}.admit_per_second"),
            format!("admit_per_second must be 1..={MAX_ADMIT_PER_SECOND}"),
        ));
    }
    for (name, seconds) in [
        ("admission_ttl_seconds", settings.admission_ttl_seconds),
        ("abandon_after_seconds", settings.abandon_after_seconds),
    ] {
        if !(1..=MAX_QUEUE_WINDOW_SECONDS).contains(&seconds) {
            return Err(ApiError::invalid_field(
                format!("{field}.{name}"),
                format!("{name} must be 1..={MAX_QUEUE_WINDOW_SECONDS}"),
            ));
        }
    }
    if let Some(opens_at) = &settings.opens_at {
        if parse_rfc3339_ms(opens_at).is_none() {
            return Err(ApiError::invalid_field(
                format!("{field}.opens_at"),
                "opens_at must be an RFC 3339 time such as 2027-05-01T10:00:00Z",
            ));
        }
    }
    Ok(())
}

fn starts_at(field: &str, value: &str) -> Result<u64, ApiError> {
    parse_rfc3339_ms(value).ok_or_else(|| {
        ApiError::invalid_field(
            field,
            "starts_at must be an RFC 3339 time such as 2027-06-01T19:00:00Z",
        )
    })
}

fn performer_ids(field: &str, ids: &[String]) -> Result<(), ApiError> {
    if ids.len() > MAX_PERFORMERS_PER_EVENT {
        return Err(ApiError::invalid_field(
            field,
            format!("an event lists at most {MAX_PERFORMERS_PER_EVENT} performers"),
        ));
    }
    for (i, id) in ids.iter().enumerate() {
        if !is_valid_id(id) {
            return Err(ApiError::invalid_field(
                format!("{field}[{i}]"),
                "not a performer id",
            ));
        }
        if ids[..i].contains(id) {
            return Err(ApiError::invalid_field(
                format!("{field}[{i}]"),
                "performer listed twice",
            ));
        }
    }
    Ok(())
}

impl NewVenue {
    /// Checks the request and builds the stored venue.
    pub fn into_venue(
        self,
        venue_id: String,
        now_ms: u64,
        request_digest: String,
    ) -> Result<Venue, ApiError> {
        text("name", &self.name, MAX_NAME_BYTES, true)?;
        text("city", &self.city, MAX_SHORT_TEXT_BYTES, true)?;
        text("address", &self.address, MAX_SHORT_TEXT_BYTES, false)?;
        if self.country.len() != 2 || !self.country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ApiError::invalid_field(
                "country",
                "country must be an ISO 3166-1 alpha-2 code such as US",
            ));
        }
        if self.sections.is_empty() || self.sections.len() > MAX_SECTIONS_PER_VENUE {
            return Err(ApiError::invalid_field(
                "sections",
                format!("a venue has 1..={MAX_SECTIONS_PER_VENUE} sections"),
            ));
        }
        let venue_currency = self.sections[0].price.currency.clone();
        let mut capacity: usize = 0;
        let mut sections = Vec::with_capacity(self.sections.len());
        for (si, section) in self.sections.into_iter().enumerate() {
            let f = |name: &str| format!("sections[{si}].{name}");
            text(&f("name"), &section.name, MAX_NAME_BYTES, true)?;
            currency(&f("price.currency"), &section.price.currency)?;
            if section.price.currency != venue_currency {
                return Err(ApiError::invalid_field(
                    f("price.currency"),
                    "every section of a venue is priced in one currency",
                ));
            }
            if section.price.amount == 0 || section.price.amount > MAX_PRICE_MINOR {
                return Err(ApiError::invalid_field(
                    f("price.amount"),
                    format!("price must be 1..={MAX_PRICE_MINOR} minor units"),
                ));
            }
            if sections.iter().any(|s: &Section| s.name == section.name) {
                return Err(ApiError::invalid_field(
                    f("name"),
                    "section names must be unique",
                ));
            }
            if section.rows.is_empty() || section.rows.len() > MAX_ROWS_PER_SECTION {
                return Err(ApiError::invalid_field(
                    f("rows"),
                    format!("a section has 1..={MAX_ROWS_PER_SECTION} rows"),
                ));
            }
            let mut rows: Vec<Row> = Vec::with_capacity(section.rows.len());
            for (ri, row) in section.rows.into_iter().enumerate() {
                let rf = |name: &str| format!("sections[{si}].rows[{ri}].{name}");
                let name_ok = !row.name.is_empty()
                    && row.name.len() <= MAX_ROW_NAME_BYTES
                    && row.name.bytes().all(|b| b.is_ascii_alphanumeric());
                if !name_ok {
                    return Err(ApiError::invalid_field(
                        rf("name"),
                        format!("row names are 1..={MAX_ROW_NAME_BYTES} ascii letters or digits"),
                    ));
                }
                if rows.iter().any(|r| r.name == row.name) {
                    return Err(ApiError::invalid_field(
                        rf("name"),
                        "row names must be unique within a section",
                    ));
                }
                if row.seats == 0 || row.seats > MAX_SEATS_PER_ROW {
                    return Err(ApiError::invalid_field(
                        rf("seats"),
                        format!("a row has 1..={MAX_SEATS_PER_ROW} seats"),
                    ));
                }
                capacity += row.seats as usize;
                rows.push(Row {
                    name: row.name,
                    seats: row.seats,
                });
            }
            sections.push(Section {
                id: format!("s{}", si + 1),
                name: section.name,
                price: section.price,
                rows,
            });
        }
        if capacity > MAX_SEATS_PER_VENUE {
            return Err(ApiError::invalid_field(
                "sections",
                format!("a venue has at most {MAX_SEATS_PER_VENUE} seats"),
            ));
        }
        Ok(Venue {
            venue_id,
            name: self.name,
            city: self.city,
            country: self.country,
            address: self.address,
            sections,
            capacity: capacity as u32,
            currency: venue_currency,
            created_at: rfc3339_from_ms(now_ms),
            request_digest,
        })
    }
}

impl Venue {
    /// Every seat of the layout, in order: id `{section}-{row}-{number}` (e.g. `s1-A-12`).
    pub fn seats(&self) -> Vec<SeatSpec> {
        let mut seats = Vec::with_capacity(self.capacity as usize);
        for section in &self.sections {
            for row in &section.rows {
                for number in 1..=row.seats {
                    seats.push(SeatSpec {
                        id: format!("{}-{}-{number}", section.id, row.name),
                        section: section.name.clone(),
                        row: row.name.clone(),
                        number,
                        price_minor: section.price.amount,
                    });
                }
            }
        }
        seats
    }
}

impl NewPerformer {
    pub fn into_performer(
        self,
        performer_id: String,
        now_ms: u64,
        request_digest: String,
    ) -> Result<Performer, ApiError> {
        text("name", &self.name, MAX_NAME_BYTES, true)?;
        text(
            "description",
            &self.description,
            MAX_DESCRIPTION_BYTES,
            false,
        )?;
        Ok(Performer {
            performer_id,
            name: self.name,
            description: self.description,
            created_at: rfc3339_from_ms(now_ms),
            request_digest,
        })
    }
}

impl NewEvent {
    /// Checks the request's own fields (the venue and performers are looked up by the
    /// caller) and builds the stored event.
    pub fn into_event(
        self,
        event_id: String,
        venue: &Venue,
        now_ms: u64,
        request_digest: String,
    ) -> Result<Event, ApiError> {
        text("name", &self.name, MAX_NAME_BYTES, true)?;
        text(
            "description",
            &self.description,
            MAX_DESCRIPTION_BYTES,
            false,
        )?;
        category("category", &self.category)?;
        performer_ids("performer_ids", &self.performer_ids)?;
        hold_ttl("hold_ttl_seconds", self.hold_ttl_seconds)?;
        queue("queue", &self.queue)?;
        let starts_at_ms = starts_at("starts_at", &self.starts_at)?;
        let now = rfc3339_from_ms(now_ms);
        Ok(Event {
            event_id,
            name: self.name,
            description: self.description,
            category: self.category,
            venue_id: venue.venue_id.clone(),
            performer_ids: self.performer_ids,
            starts_at: rfc3339_from_ms(starts_at_ms),
            starts_at_ms,
            on_sale: self.on_sale,
            hold_ttl_seconds: self.hold_ttl_seconds,
            queue: self.queue,
            currency: venue.currency.clone(),
            capacity: venue.capacity,
            created_at: now.clone(),
            updated_at: now,
            request_digest,
        })
    }
}

impl EventPatch {
    /// The event with this patch applied, checked.
    pub fn apply(self, mut event: Event, now_ms: u64) -> Result<Event, ApiError> {
        if let Some(name) = self.name {
            text("name", &name, MAX_NAME_BYTES, true)?;
            event.name = name;
        }
        if let Some(description) = self.description {
            text("description", &description, MAX_DESCRIPTION_BYTES, false)?;
            event.description = description;
        }
        if let Some(value) = self.category {
            category("category", &value)?;
            event.category = value;
        }
        if let Some(ids) = self.performer_ids {
            performer_ids("performer_ids", &ids)?;
            event.performer_ids = ids;
        }
        if let Some(value) = self.starts_at {
            let ms = starts_at("starts_at", &value)?;
            event.starts_at_ms = ms;
            event.starts_at = rfc3339_from_ms(ms);
        }
        if let Some(on_sale) = self.on_sale {
            event.on_sale = on_sale;
        }
        if let Some(seconds) = self.hold_ttl_seconds {
            hold_ttl("hold_ttl_seconds", seconds)?;
            event.hold_ttl_seconds = seconds;
        }
        if let Some(settings) = self.queue {
            queue("queue", &settings)?;
            event.queue = settings;
        }
        event.updated_at = rfc3339_from_ms(now_ms);
        Ok(event)
    }
}

impl Event {
    /// The event's start, from the stored millis or (older documents) its text.
    pub fn starts_at_ms(&self) -> u64 {
        if self.starts_at_ms > 0 {
            self.starts_at_ms
        } else {
            parse_rfc3339_ms(&self.starts_at).unwrap_or(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn venue_request() -> NewVenue {
        serde_json::from_value(json!({
            "name": "Soldier Field", "city": "Chicago", "country": "US", "address": "1410 Special Olympics Dr",
            "sections": [
                {"name": "Floor A", "price": {"amount": 12950, "currency": "USD"},
                 "rows": [{"name": "1", "seats": 20}, {"name": "2", "seats": 22}]},
                {"name": "Balcony", "price": {"amount": 4500, "currency": "USD"}, "rows": [{"name": "A", "seats": 3}]}
            ]
        }))
        .expect("venue request")
    }

    #[test]
    fn a_venue_expands_into_its_seats() {
        let venue = venue_request()
            .into_venue("ve_1".into(), 0, String::new())
            .expect("valid");
        assert_eq!(venue.capacity, 45);
        assert_eq!(venue.currency, "USD");
        let seats = venue.seats();
        assert_eq!(seats.len(), 45);
        assert_eq!(
            seats[0],
            SeatSpec {
                id: "s1-1-1".into(),
                section: "Floor A".into(),
                row: "1".into(),
                number: 1,
                price_minor: 12950
            }
        );
        assert_eq!(seats[44].id, "s2-A-3");
        let mut ids: Vec<&str> = seats.iter().map(|s| s.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 45, "seat ids are unique");
    }

    /// A change that breaks a valid venue.
    type Breakage = Box<dyn Fn(&mut NewVenue)>;

    #[test]
    fn bad_venues_name_the_field() {
        let cases: Vec<(Breakage, &str)> = vec![
            (Box::new(|v| v.name = " ".into()), "name"),
            (Box::new(|v| v.country = "USA".into()), "country"),
            (Box::new(|v| v.sections.clear()), "sections"),
            (
                Box::new(|v| v.sections[1].price.currency = "EUR".into()),
                "sections[1].price.currency",
            ),
            (
                Box::new(|v| v.sections[0].price.amount = 0),
                "sections[0].price.amount",
            ),
            (
                Box::new(|v| v.sections[0].rows[1].name = "1".into()),
                "sections[0].rows[1].name",
            ),
            (
                Box::new(|v| v.sections[0].rows[0].name = "a-b".into()),
                "sections[0].rows[0].name",
            ),
            (
                Box::new(|v| v.sections[0].rows[0].seats = 0),
                "sections[0].rows[0].seats",
            ),
            (
                Box::new(|v| v.sections[1].name = "Floor A".into()),
                "sections[1].name",
            ),
        ];
        for (mutate, field) in cases {
            let mut request = venue_request();
            mutate(&mut request);
            match request.into_venue("ve_1".into(), 0, String::new()) {
                Err(ApiError::InvalidRequest {
                    field: Some(got), ..
                }) => assert_eq!(got, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn events_validate_and_patch() {
        let venue = venue_request()
            .into_venue("ve_1".into(), 0, String::new())
            .expect("valid");
        let request: NewEvent = serde_json::from_value(json!({
            "name": "Summer Night", "category": "concert", "venue_id": "ve_1",
            "performer_ids": ["pf_1"], "starts_at": "2027-06-01T21:00:00+02:00"
        }))
        .expect("event request");
        let event = request
            .clone()
            .into_event("ev_1".into(), &venue, 1_000, String::new())
            .expect("valid");
        assert_eq!(event.starts_at, "2027-06-01T19:00:00Z");
        assert_eq!(
            (event.hold_ttl_seconds, event.on_sale, event.queue.enabled),
            (600, true, false)
        );
        assert_eq!((event.capacity, event.currency.as_str()), (45, "USD"));

        for (field, value) in [
            ("category", json!("Rock & Roll")),
            ("starts_at", json!("tomorrow")),
            ("hold_ttl_seconds", json!(0)),
            ("performer_ids", json!(["pf_1", "pf_1"])),
        ] {
            let mut body = serde_json::to_value(&request).expect("json");
            body[field] = value;
            let bad: NewEvent = serde_json::from_value(body).expect("shape");
            assert!(
                matches!(
                    bad.into_event("ev_1".into(), &venue, 0, String::new()),
                    Err(ApiError::InvalidRequest { .. })
                ),
                "{field}"
            );
        }

        let patch: EventPatch = serde_json::from_value(
            json!({"on_sale": false, "hold_ttl_seconds": 30, "queue": {"enabled": true}}),
        )
        .expect("patch");
        let patched = patch.apply(event.clone(), 2_000).expect("valid patch");
        assert!(!patched.on_sale && patched.queue.enabled);
        assert_eq!(
            (patched.hold_ttl_seconds, patched.queue.admit_per_second),
            (30, DEFAULT_ADMIT_PER_SECOND)
        );
        assert_eq!(patched.created_at, event.created_at);
        assert_ne!(patched.updated_at, event.updated_at);
        let bad: EventPatch =
            serde_json::from_value(json!({"hold_ttl_seconds": 3601})).expect("patch");
        assert!(bad.apply(event, 0).is_err());
    }
}
