//! What goes into the index ([`EventDoc`], one per event) and what comes out of a search
//! ([`EventHit`], a summary of one event), with the limits a document must respect.

use serde::{Deserialize, Serialize};

use crate::error::SearchError;

/// Longest accepted `event_id`, in bytes. Ids travel inside cursors, so they are bounded.
pub const MAX_EVENT_ID_BYTES: usize = 128;
/// Most performers one event may list.
pub const MAX_PERFORMERS_PER_EVENT: usize = 64;
/// Longest accepted performer id, in bytes.
pub const MAX_PERFORMER_ID_BYTES: usize = 128;
/// Most text one event may carry, all fields together, in bytes.
pub const MAX_EVENT_TEXT_BYTES: usize = 64 * 1024;

/// One event of the catalog as the search index sees it.
///
/// `performers[i]` is the display name of the performer whose id is `performer_ids[i]`.
/// Prices are in minor units of `currency` (cents for EUR); `starts_at_ms` is unix time in
/// milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EventDoc {
    pub event_id: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub performers: Vec<String>,
    pub performer_ids: Vec<String>,
    pub venue_name: String,
    pub city: String,
    pub country: String,
    pub starts_at_ms: i64,
    pub min_price_minor: u64,
    pub max_price_minor: u64,
    pub currency: String,
    pub available: u64,
    pub total: u64,
    pub on_sale: bool,
}

impl EventDoc {
    /// Checks the limits above. Everything else (empty names, odd prices, performer lists
    /// of different lengths) is indexed as is.
    pub fn validate(&self) -> Result<(), SearchError> {
        if self.event_id.is_empty() {
            return Err(SearchError::InvalidDocument("event_id is empty".into()));
        }
        if self.event_id.len() > MAX_EVENT_ID_BYTES {
            return Err(SearchError::InvalidDocument(format!(
                "event_id is {} bytes long, at most {MAX_EVENT_ID_BYTES} allowed",
                self.event_id.len()
            )));
        }
        let n_performers = self.performers.len().max(self.performer_ids.len());
        if n_performers > MAX_PERFORMERS_PER_EVENT {
            return Err(SearchError::InvalidDocument(format!(
                "event {} lists {n_performers} performers, at most {MAX_PERFORMERS_PER_EVENT} allowed",
                self.event_id
            )));
        }
        if let Some(id) = self
            .performer_ids
            .iter()
            .find(|id| id.len() > MAX_PERFORMER_ID_BYTES)
        {
            return Err(SearchError::InvalidDocument(format!(
                "event {} has a performer id of {} bytes, at most {MAX_PERFORMER_ID_BYTES} allowed",
                self.event_id,
                id.len()
            )));
        }
        let n_text_bytes = [
            &self.name,
            &self.description,
            &self.category,
            &self.venue_name,
            &self.city,
            &self.country,
            &self.currency,
        ]
        .iter()
        .map(|s| s.len())
        .chain(self.performers.iter().map(String::len))
        .chain(self.performer_ids.iter().map(String::len))
        .sum::<usize>();
        if n_text_bytes > MAX_EVENT_TEXT_BYTES {
            return Err(SearchError::InvalidDocument(format!(
                "event {} carries {n_text_bytes} bytes of text, at most {MAX_EVENT_TEXT_BYTES} allowed",
                self.event_id
            )));
        }
        Ok(())
    }
}

/// One search result: enough to render a result card without another lookup.
/// The description is not stored in the index; the event view has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventHit {
    pub event_id: String,
    pub name: String,
    pub category: String,
    pub performers: Vec<String>,
    pub performer_ids: Vec<String>,
    pub venue_name: String,
    pub city: String,
    pub country: String,
    pub starts_at_ms: i64,
    pub min_price_minor: u64,
    pub max_price_minor: u64,
    pub currency: String,
    pub available: u64,
    pub total: u64,
    pub on_sale: bool,
    /// Relevance; 0 when the query had no text. Only comparable within one query.
    pub score: f32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_non_empty_and_bounded() {
        let mut doc = EventDoc {
            event_id: "evt-1".into(),
            ..EventDoc::default()
        };
        assert!(doc.validate().is_ok());
        doc.event_id.clear();
        assert!(matches!(
            doc.validate(),
            Err(SearchError::InvalidDocument(_))
        ));
        doc.event_id = "x".repeat(MAX_EVENT_ID_BYTES + 1);
        assert!(matches!(
            doc.validate(),
            Err(SearchError::InvalidDocument(_))
        ));
    }

    #[test]
    fn text_is_bounded() {
        let long_id = EventDoc {
            event_id: "evt-1".into(),
            performer_ids: vec!["p".repeat(MAX_PERFORMER_ID_BYTES + 1)],
            ..EventDoc::default()
        };
        assert!(matches!(
            long_id.validate(),
            Err(SearchError::InvalidDocument(_))
        ));
        let wordy = EventDoc {
            event_id: "evt-1".into(),
            description: "x".repeat(MAX_EVENT_TEXT_BYTES + 1),
            ..EventDoc::default()
        };
        assert!(matches!(
            wordy.validate(),
            Err(SearchError::InvalidDocument(_))
        ));
    }

    #[test]
    fn performer_lists_are_bounded() {
        let doc = EventDoc {
            event_id: "evt-1".into(),
            performer_ids: vec!["p".into(); MAX_PERFORMERS_PER_EVENT + 1],
            ..EventDoc::default()
        };
        assert!(matches!(
            doc.validate(),
            Err(SearchError::InvalidDocument(_))
        ));
    }
}
