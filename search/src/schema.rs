//! The tantivy schema of the event catalog, its two analyzers (folded words for text,
//! folded whole values for filters) and the conversions between [`EventDoc`] / [`EventHit`]
//! and tantivy documents, including the two derived performer fields that forgive how
//! people type names: adjacent words run together, and the sound key of every word.

use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RawTokenizer, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
    TokenStream,
};
use tantivy::{Index, TantivyDocument};

use crate::doc::{EventDoc, EventHit};
use crate::phonetic::sound_key;

/// Name of the analyzer of text fields: words, lowercased, accents folded to ASCII.
pub(crate) const TEXT_TOKENIZER: &str = "bo_text";
/// Name of the analyzer of filter fields: the whole value, lowercased and folded.
pub(crate) const KEYWORD_TOKENIZER: &str = "bo_keyword";
/// Longest word indexed, in bytes; longer ones (hashes, garbage) are dropped.
pub(crate) const MAX_TOKEN_BYTES: usize = 40;
/// Longest filter value indexed, in bytes; a longer city or category cannot be filtered on.
pub(crate) const MAX_KEYWORD_BYTES: usize = 256;

/// Column names used by the collector (fast fields are read by name).
pub(crate) const EVENT_ID: &str = "event_id";
pub(crate) const STARTS_AT_MS: &str = "starts_at_ms";

/// Handles of every field of the schema.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields {
    pub event_id: Field,
    pub name: Field,
    pub description: Field,
    pub category: Field,
    pub category_key: Field,
    pub performers: Field,
    /// Every pair of adjacent words of each performer name run together ("jasonmendoza"),
    /// and the whole name run together when it has three or four words.
    pub performer_joins: Field,
    /// The sound key (`phonetic::sound_key`) of every word of each performer name.
    pub performer_sounds: Field,
    pub performer_ids: Field,
    pub venue_name: Field,
    pub city: Field,
    pub city_key: Field,
    pub country: Field,
    pub starts_at_ms: Field,
    pub min_price_minor: Field,
    pub max_price_minor: Field,
    pub currency: Field,
    pub available: Field,
    pub total: Field,
    pub on_sale: Field,
}

/// Field weight of performers: the best evidence of what a query means (see `query.rs`).
pub(crate) const PERFORMER_WEIGHT: f32 = 15.0;
/// Field weight of the event name.
pub(crate) const NAME_WEIGHT: f32 = 14.0;
/// Longest performer name, in words, whose whole run-together form is indexed.
pub(crate) const MAX_JOINED_NAME_WORDS: usize = 4;

/// A searchable text field, how much a match in it is worth (see `query.rs`), and whether
/// misspelled words may match it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WeightedField {
    pub field: Field,
    pub weight: f32,
    pub typos: bool,
}

impl Fields {
    /// Text fields searched by `q`, best first. Weights are small integers so that sums are
    /// exact in `f32` and ties are real ties. Performer and event-name weights are larger
    /// than `query::EXACT_BONUS`, every other weight smaller: a word found in a performer or
    /// the event name, even misspelled, outranks the same word found exactly in a venue,
    /// a city or a description.
    ///
    /// The description matches exact words and prefixes but no typos: in free text typo
    /// matches are mostly noise ("hiks" would find "hits"), and its posting lists are the
    /// longest, so typo expansion there costs the most.
    pub fn text_fields(&self) -> [WeightedField; 7] {
        let field = |field, weight, typos| WeightedField {
            field,
            weight,
            typos,
        };
        [
            field(self.performers, PERFORMER_WEIGHT, true),
            field(self.name, NAME_WEIGHT, true),
            field(self.category, 3.0, true),
            field(self.venue_name, 2.0, true),
            field(self.city, 2.0, true),
            field(self.country, 1.0, true),
            field(self.description, 1.0, false),
        ]
    }
}

/// Builds the schema and returns it with the field handles.
pub(crate) fn build_schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    // Only doc ids are needed in postings: scores come from the kind of match, not BM25.
    let words = TextFieldIndexing::default()
        .set_tokenizer(TEXT_TOKENIZER)
        .set_index_option(IndexRecordOption::Basic)
        .set_fieldnorms(false);
    let keyword = TextFieldIndexing::default()
        .set_tokenizer(KEYWORD_TOKENIZER)
        .set_index_option(IndexRecordOption::Basic)
        .set_fieldnorms(false);
    let raw = TextFieldIndexing::default()
        .set_tokenizer("raw")
        .set_index_option(IndexRecordOption::Basic)
        .set_fieldnorms(false);
    let text = TextOptions::default().set_indexing_options(words);
    let stored_text = text.clone().set_stored();
    let fast_stored = NumericOptions::default().set_fast().set_stored();

    let fields = Fields {
        event_id: builder.add_text_field(
            EVENT_ID,
            TextOptions::default()
                .set_indexing_options(raw.clone())
                .set_fast("raw")
                .set_stored(),
        ),
        name: builder.add_text_field("name", stored_text.clone()),
        description: builder.add_text_field("description", text.clone()),
        category: builder.add_text_field("category", stored_text.clone()),
        category_key: builder.add_text_field(
            "category_key",
            TextOptions::default().set_indexing_options(keyword.clone()),
        ),
        performers: builder.add_text_field("performers", stored_text.clone()),
        performer_joins: builder.add_text_field("performer_joins", text.clone()),
        performer_sounds: builder.add_text_field("performer_sounds", text),
        performer_ids: builder.add_text_field(
            "performer_ids",
            TextOptions::default()
                .set_indexing_options(raw)
                .set_stored(),
        ),
        venue_name: builder.add_text_field("venue_name", stored_text.clone()),
        city: builder.add_text_field("city", stored_text.clone()),
        city_key: builder.add_text_field(
            "city_key",
            TextOptions::default().set_indexing_options(keyword),
        ),
        country: builder.add_text_field("country", stored_text),
        starts_at_ms: builder.add_i64_field(STARTS_AT_MS, fast_stored.clone()),
        min_price_minor: builder.add_u64_field("min_price_minor", fast_stored.clone()),
        max_price_minor: builder.add_u64_field("max_price_minor", fast_stored.clone()),
        currency: builder.add_text_field("currency", TextOptions::default().set_stored()),
        available: builder.add_u64_field("available", fast_stored.clone()),
        total: builder.add_u64_field("total", NumericOptions::default().set_stored()),
        on_sale: builder.add_bool_field("on_sale", fast_stored),
    };
    (builder.build(), fields)
}

/// The analyzer of text fields and of query words.
pub(crate) fn text_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// The analyzer of filter fields (city, category): one token, the whole trimmed value.
pub(crate) fn keyword_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(RawTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_KEYWORD_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// Registers both analyzers; needed on every `Index` value, new or reopened.
pub(crate) fn register_analyzers(index: &Index) {
    index.tokenizers().register(TEXT_TOKENIZER, text_analyzer());
    index
        .tokenizers()
        .register(KEYWORD_TOKENIZER, keyword_analyzer());
}

/// The words of `text` as the index stores them: lowercased, ASCII-folded, punctuation gone.
pub(crate) fn words(text: &str) -> Vec<String> {
    let mut analyzer = text_analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

/// A filter value as the index stores it, or `None` when nothing is left after trimming.
pub(crate) fn keyword(value: &str) -> Option<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return None;
    }
    let mut analyzer = keyword_analyzer();
    let mut stream = analyzer.token_stream(trimmed);
    if stream.advance() {
        Some(stream.token().text.clone())
    } else {
        None
    }
}

/// The run-together forms of a name's words: each adjacent pair, and all of them when there
/// are three to [`MAX_JOINED_NAME_WORDS`]. (Forms longer than [`MAX_TOKEN_BYTES`] are
/// dropped by the analyzer.)
pub(crate) fn joined_forms(words: &[String]) -> Vec<String> {
    let mut out: Vec<String> = words.windows(2).map(|pair| pair.concat()).collect();
    if (3..=MAX_JOINED_NAME_WORDS).contains(&words.len()) {
        out.push(words.concat());
    }
    out
}

/// Turns a catalog event into a tantivy document.
pub(crate) fn to_document(fields: &Fields, doc: &EventDoc) -> TantivyDocument {
    let mut out = TantivyDocument::default();
    out.add_text(fields.event_id, &doc.event_id);
    out.add_text(fields.name, &doc.name);
    out.add_text(fields.description, &doc.description);
    out.add_text(fields.category, &doc.category);
    out.add_text(fields.category_key, doc.category.trim());
    for performer in &doc.performers {
        out.add_text(fields.performers, performer);
        let words = words(performer);
        out.add_text(fields.performer_joins, joined_forms(&words).join(" "));
        let sounds: Vec<String> = words.iter().map(|w| sound_key(w)).collect();
        out.add_text(fields.performer_sounds, sounds.join(" "));
    }
    for performer_id in &doc.performer_ids {
        out.add_text(fields.performer_ids, performer_id);
    }
    out.add_text(fields.venue_name, &doc.venue_name);
    out.add_text(fields.city, &doc.city);
    out.add_text(fields.city_key, doc.city.trim());
    out.add_text(fields.country, &doc.country);
    out.add_i64(fields.starts_at_ms, doc.starts_at_ms);
    out.add_u64(fields.min_price_minor, doc.min_price_minor);
    out.add_u64(fields.max_price_minor, doc.max_price_minor);
    out.add_text(fields.currency, &doc.currency);
    out.add_u64(fields.available, doc.available);
    out.add_u64(fields.total, doc.total);
    out.add_bool(fields.on_sale, doc.on_sale);
    out
}

/// Reads a result card back from the stored fields; a missing field reads as empty / zero.
pub(crate) fn to_hit(fields: &Fields, doc: &TantivyDocument, score: f32) -> EventHit {
    let text = |field: Field| {
        doc.get_first(field)
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let texts = |field: Field| {
        doc.get_all(field)
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let number = |field: Field| doc.get_first(field).and_then(|v| v.as_u64()).unwrap_or(0);
    EventHit {
        event_id: text(fields.event_id),
        name: text(fields.name),
        category: text(fields.category),
        performers: texts(fields.performers),
        performer_ids: texts(fields.performer_ids),
        venue_name: text(fields.venue_name),
        city: text(fields.city),
        country: text(fields.country),
        starts_at_ms: doc
            .get_first(fields.starts_at_ms)
            .and_then(|v| v.as_i64())
            .unwrap_or(0),
        min_price_minor: number(fields.min_price_minor),
        max_price_minor: number(fields.max_price_minor),
        currency: text(fields.currency),
        available: number(fields.available),
        total: number(fields.total),
        on_sale: doc
            .get_first(fields.on_sale)
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        score,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lowercased_and_folded() {
        assert_eq!(words("Beyoncé — RENAISSANCE"), ["beyonce", "renaissance"]);
        assert_eq!(words("Zürich, Straße"), ["zurich", "strasse"]);
        assert_eq!(words("AC/DC"), ["ac", "dc"]);
        assert_eq!(words("  !!  "), Vec::<String>::new());
    }

    #[test]
    fn names_are_run_together_by_pairs_and_whole() {
        let forms = |name: &str| joined_forms(&words(name));
        assert_eq!(forms("Jason Mendoza"), ["jasonmendoza"]);
        assert_eq!(
            forms("Kayla & the Arrows"),
            ["kaylathe", "thearrows", "kaylathearrows"]
        );
        assert_eq!(forms("Adele"), Vec::<String>::new());
        assert_eq!(
            forms("A B C D E"),
            ["ab", "bc", "cd", "de"],
            "too long to run whole"
        );
    }

    #[test]
    fn overlong_words_are_dropped() {
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(words(&format!("short {long}")), ["short"]);
    }

    #[test]
    fn keywords_are_whole_trimmed_folded_values() {
        assert_eq!(keyword("  São Paulo ").as_deref(), Some("sao paulo"));
        assert_eq!(keyword("CONCERT").as_deref(), Some("concert"));
        assert_eq!(keyword("   "), None);
    }

    #[test]
    fn a_document_round_trips_through_stored_fields() {
        let (_schema, fields) = build_schema();
        let event = EventDoc {
            event_id: "evt-1".into(),
            name: "Renaissance World Tour".into(),
            description: "not stored".into(),
            category: "Concert".into(),
            performers: vec!["Beyoncé".into(), "Opening Act".into()],
            performer_ids: vec!["p-1".into(), "p-2".into()],
            venue_name: "Stade de France".into(),
            city: "Paris".into(),
            country: "France".into(),
            starts_at_ms: -5,
            min_price_minor: 4_500,
            max_price_minor: 29_900,
            currency: "EUR".into(),
            available: 10,
            total: 80_000,
            on_sale: true,
        };
        let hit = to_hit(&fields, &to_document(&fields, &event), 1.5);
        assert_eq!(hit.event_id, "evt-1");
        assert_eq!(hit.performers, ["Beyoncé", "Opening Act"]);
        assert_eq!(hit.performer_ids, ["p-1", "p-2"]);
        assert_eq!(hit.starts_at_ms, -5);
        assert_eq!((hit.min_price_minor, hit.max_price_minor), (4_500, 29_900));
        assert_eq!((hit.available, hit.total, hit.on_sale), (10, 80_000, true));
        assert_eq!(hit.currency, "EUR");
        assert_eq!(hit.score, 1.5);
    }
}
