//! What a caller asks ([`SearchQuery`]) and gets back ([`SearchPage`]): validation, the
//! canonical cache key, and the translation of the words of `q` into a tantivy query with
//! typo tolerance, type-ahead prefixes and field weights.
//!
//! (Over 600 lines on purpose: every matching rule and score is defined here, next to the
//! documentation that explains how they rank against each other.)
//!
//! # Matching
//!
//! Every word of `q` must match somewhere (AND across words, OR across fields and ways of
//! matching), in one of the query's *readings*: the words as typed, or the words with one
//! adjacent pair merged back into one word ("men doza" read as "mendoza", for a name split
//! apart; performers and event names only). A word matches
//! - **exactly**, or as a **prefix** when it is the last word and has [`MIN_PREFIX_CHARS`];
//! - with **typos** within its allowance ([`typo_distance`]: none up to 3 letters, one edit
//!   up to 7, two beyond; a transposition is one edit; not in the description, where typo
//!   matches are mostly noise);
//! - by **sound** in performers: its sound key (`phonetic::sound_key`) equals a performer
//!   word's ("murfie" for "Murphy", "stefen" for "Stephen"), however many edits apart;
//! - **run together** in performers: a word of [`MIN_JOINED_CHARS`]+ letters equal (or within
//!   its typo allowance) to adjacent words of a performer name with the space left out
//!   ("jasonmendoza");
//! - **beyond its allowance**, in performers and event names, under the query's typo budget:
//!   one edit in a word of 2–3 letters; two in a word of 4–7; one in the sound key of a
//!   word of 4–8;
//!   never a term more than one letter shorter; allowed for one word when every other word
//!   of the reading matches exactly or as a prefix.
//!
//! # Scoring
//!
//! A word's score is its best match, `kind bonus + field weight`: bonuses [`EXACT_BONUS`]
//! (10), [`PREFIX_BONUS`] (6), [`SOUND_BONUS`] (4), [`TYPO_BONUS`] (3), 0 beyond the
//! allowance; field weights performers 15, event name 14, category 3, venue 2, city 2,
//! country 1, description 1. Within a field, exact beats prefix beats sound beats typo beats
//! beyond-allowance. Across fields, performer and event-name evidence of any kind beats
//! venue, city, category, country and description evidence of any kind (15 > 10 + 3): a
//! misspelled performer outranks an unrelated event whose venue has the word right. A word
//! run together or a merged pair counts for the two words it stands for (twice its score);
//! two adjacent words found side by side in one performer name (as the name run together)
//! add [`PHRASE_BONUS`] (8), so "javon mnedoza" ranks Jason Mendoza's events above events
//! where each word matches elsewhere.
//! A hit's score is the sum over its words, the best reading's. Scores are sums of small
//! integers: ties are real, and the earlier start time breaks them (see `cursor::SortKey`).
//!
//! Example: "taylor swift" scores 58 on an event by Taylor Swift (two exact performer
//! words side by side, 2 × (10 + 15) + 8), 48 on "Tribute to Taylor Swift" by someone else
//! (name), 22 on an event that only mentions her in its description; "tayler swfit" scores
//! 44 (2 × (3 + 15) + 8) on her events.

use std::fmt::Write as _;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tantivy::query::{AllQuery, BooleanQuery, ConstScoreQuery, Occur, Query, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::Term;

use crate::cursor::{self, SortKey};
use crate::doc::EventHit;
use crate::error::SearchError;
use crate::phonetic::sound_key;
use crate::schema::{self, Fields, WeightedField, MAX_TOKEN_BYTES};
use crate::text_match::{Alternative, LazyAutomaton, Matcher, TextQuery, WordMatch, MAX_READINGS};

/// Longest accepted `q`, in characters.
pub const MAX_QUERY_CHARS: usize = 256;
/// Most words accepted in `q` (after punctuation is dropped).
pub const MAX_QUERY_TERMS: usize = 8;
/// Largest page.
pub const MAX_LIMIT: usize = 100;
/// Page size a caller may use when the client names none.
pub const DEFAULT_LIMIT: usize = 20;
/// Longest accepted city, category or performer id filter, in characters.
pub const MAX_FILTER_CHARS: usize = 128;
/// Words up to this many characters must match exactly.
pub const EXACT_MAX_CHARS: usize = 3;
/// Words up to this many characters tolerate one edit; longer words tolerate two.
pub const ONE_TYPO_MAX_CHARS: usize = 7;
/// The last word is also matched as a prefix once it has this many characters.
pub const MIN_PREFIX_CHARS: usize = 2;

/// Score bonus of an exact word match.
pub const EXACT_BONUS: f32 = 10.0;
/// Score bonus of the last word matching as an exact prefix.
pub const PREFIX_BONUS: f32 = 6.0;
/// Score bonus of a word whose sound key matches a performer word's.
pub const SOUND_BONUS: f32 = 4.0;
/// Score bonus of a match within the word's typo allowance.
pub const TYPO_BONUS: f32 = 3.0;
/// Score bonus of two query words found side by side in one performer name.
pub const PHRASE_BONUS: f32 = 8.0;
/// Shortest word looked up among performer names run together.
pub const MIN_JOINED_CHARS: usize = 6;
/// Shortest sound key looked up with one edit, and shortest key it may find (shorter keys
/// are one edit from too many).
pub const MIN_FUZZY_KEY_BYTES: usize = 3;
/// Words of this many characters may match a performer word's sound key with one edit,
/// beyond their allowance: a name of 5–7 letters typed with a letter more or less.
pub const FUZZY_KEY_CHARS: std::ops::RangeInclusive<usize> = 4..=8;
/// Shortest word that may take one edit beyond its allowance (a word of 1 letter would
/// match every short word).
pub const MIN_EXTRA_TYPO_CHARS: usize = 2;
/// Words of this many characters (a name of 5–7 letters typed with one letter less) may
/// take a second edit beyond their allowance.
pub const TWO_SLIPS_CHARS: std::ops::RangeInclusive<usize> = 4..=7;

/// A search request. `from_ms` is inclusive, `to_ms` exclusive. A `q` with no searchable
/// word (blank, punctuation only) is treated as absent: the filters list events by date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchQuery {
    pub q: Option<String>,
    /// Case- and accent-insensitive exact city.
    pub city: Option<String>,
    /// Case- and accent-insensitive exact category.
    pub category: Option<String>,
    /// A performer id (exact).
    pub performer: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// `1..=MAX_LIMIT`.
    pub limit: usize,
    /// `next_cursor` of the previous page of the same query.
    pub cursor: Option<String>,
}

impl Default for SearchQuery {
    fn default() -> Self {
        SearchQuery {
            q: None,
            city: None,
            category: None,
            performer: None,
            from_ms: None,
            to_ms: None,
            limit: DEFAULT_LIMIT,
            cursor: None,
        }
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchPage {
    pub hits: Vec<EventHit>,
    /// Present when more results follow; pass it back as `SearchQuery::cursor`.
    pub next_cursor: Option<String>,
    /// How many events match the query and filters (all pages). Exact for the index state
    /// the page was read from; an estimate of what the next page will see.
    pub total_estimate: u64,
}

/// A validated query, every part normalized the way the index stores it.
#[derive(Debug, Clone)]
pub(crate) struct ValidQuery {
    pub words: Vec<String>,
    pub city: Option<String>,
    pub category: Option<String>,
    pub performer: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub limit: usize,
    pub after: Option<SortKey>,
    /// Ties cursors to the query (everything but limit and cursor).
    pub query_hash: u64,
}

impl SearchQuery {
    /// A canonical string for result caches: the words of `q` lowercased, accent-folded and
    /// single-spaced, filters normalized as they are matched, in a fixed order, plus limit
    /// and cursor. Two queries with the same key return the same page from the same index.
    pub fn normalized_key(&self) -> String {
        let mut key = self.identity_key();
        let _ = write!(key, "&limit={}", self.limit);
        if let Some(cursor) = &self.cursor {
            key.push_str("&cursor=");
            escape_into(&mut key, cursor);
        }
        key
    }

    /// The key without limit and cursor: what a cursor must belong to.
    fn identity_key(&self) -> String {
        let mut key = String::from("q=");
        if let Some(q) = &self.q {
            escape_into(&mut key, &distinct_words(schema::words(q)).join(" "));
        }
        let filters = [
            (
                "category",
                self.category.as_deref().and_then(schema::keyword),
            ),
            ("city", self.city.as_deref().and_then(schema::keyword)),
            ("performer", self.performer.as_deref().and_then(trimmed)),
        ];
        for (name, value) in filters {
            if let Some(value) = value {
                let _ = write!(key, "&{name}=");
                escape_into(&mut key, &value);
            }
        }
        if let Some(from_ms) = self.from_ms {
            let _ = write!(key, "&from_ms={from_ms}");
        }
        if let Some(to_ms) = self.to_ms {
            let _ = write!(key, "&to_ms={to_ms}");
        }
        key
    }

    /// Checks every limit and normalizes every part; the only entry to searching.
    pub(crate) fn validate(&self) -> Result<ValidQuery, SearchError> {
        if self.limit == 0 || self.limit > MAX_LIMIT {
            return Err(SearchError::InvalidLimit {
                limit: self.limit,
                max: MAX_LIMIT,
            });
        }
        let words = match &self.q {
            Some(q) => validate_text(q)?,
            None => Vec::new(),
        };
        let city = validate_filter("city", self.city.as_deref())?.and_then(schema::keyword);
        let category =
            validate_filter("category", self.category.as_deref())?.and_then(schema::keyword);
        let performer = validate_filter("performer", self.performer.as_deref())?.map(str::to_owned);
        if let (Some(from_ms), Some(to_ms)) = (self.from_ms, self.to_ms) {
            if from_ms > to_ms {
                return Err(SearchError::InvalidDateRange { from_ms, to_ms });
            }
        }
        let query_hash = cursor::fnv1a(&self.identity_key());
        let after = match &self.cursor {
            Some(c) => Some(cursor::decode(c, query_hash)?),
            None => None,
        };
        Ok(ValidQuery {
            words,
            city,
            category,
            performer,
            from_ms: self.from_ms,
            to_ms: self.to_ms,
            limit: self.limit,
            after,
            query_hash,
        })
    }
}

/// Checks `q` against the limits and returns its words.
pub(crate) fn validate_text(q: &str) -> Result<Vec<String>, SearchError> {
    let n_chars = q.chars().count();
    if n_chars > MAX_QUERY_CHARS {
        return Err(SearchError::QueryTooLong {
            n_chars,
            max: MAX_QUERY_CHARS,
        });
    }
    let words = schema::words(q);
    if words.len() > MAX_QUERY_TERMS {
        return Err(SearchError::TooManyTerms {
            n_terms: words.len(),
            max: MAX_QUERY_TERMS,
        });
    }
    Ok(distinct_words(words))
}

/// `words` without repeats, the last word kept last (it is the one matched as a prefix):
/// a repeated word would only cost time and inflate scores.
pub(crate) fn distinct_words(mut words: Vec<String>) -> Vec<String> {
    let Some(last) = words.pop() else {
        return words;
    };
    let mut out: Vec<String> = Vec::with_capacity(words.len() + 1);
    for word in words {
        if word != last && !out.contains(&word) {
            out.push(word);
        }
    }
    out.push(last);
    out
}

/// A filter value trimmed, `None` when absent or blank, an error when unusable.
fn validate_filter<'a>(
    filter: &'static str,
    value: Option<&'a str>,
) -> Result<Option<&'a str>, SearchError> {
    let Some(value) = value.and_then(|v| {
        let t = v.trim();
        (!t.is_empty()).then_some(t)
    }) else {
        return Ok(None);
    };
    if value.chars().count() > MAX_FILTER_CHARS {
        return Err(SearchError::InvalidFilter {
            filter,
            reason: "too long",
        });
    }
    if value.chars().any(char::is_control) {
        return Err(SearchError::InvalidFilter {
            filter,
            reason: "contains control characters",
        });
    }
    Ok(Some(value))
}

fn trimmed(value: &str) -> Option<String> {
    let t = value.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// Percent-escapes the characters that structure a key, so values cannot forge fields.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '%' | '&' | '=' => {
                let _ = write!(out, "%{:02X}", c as u32);
            }
            _ => out.push(c),
        }
    }
}

/// Edits a word of `n_chars` characters may differ by and still match.
pub fn typo_distance(n_chars: usize) -> u8 {
    if n_chars <= EXACT_MAX_CHARS {
        0
    } else if n_chars <= ONE_TYPO_MAX_CHARS {
        1
    } else {
        2
    }
}

/// The ways one word can match over `fields`: exact, prefix (if `is_last`) and typo
/// matches in each field, scored as the module documentation says. Each automaton is built
/// once, when first needed, and shared by every field. Fields with `typos: false` get no
/// typo match.
pub(crate) fn word_match(word: &str, is_last: bool, fields: &[WeightedField]) -> WordMatch {
    let n_chars = word.chars().count();
    let distance = typo_distance(n_chars);
    let as_prefix = is_last && n_chars >= MIN_PREFIX_CHARS;
    let prefix = as_prefix.then(|| Arc::new(LazyAutomaton::new(word, 0, true)));
    let typo = (distance > 0 && fields.iter().any(|f| f.typos))
        .then(|| Arc::new(LazyAutomaton::new(word, distance, as_prefix)));
    let mut alternatives = Vec::with_capacity(fields.len() * 3);
    for wf in fields {
        alternatives.push(Alternative {
            field: wf.field,
            matcher: Matcher::Exact(Term::from_field_text(wf.field, word)),
            score: EXACT_BONUS + wf.weight,
            inexact: false,
            extra: false,
        });
        if let Some(prefix) = &prefix {
            alternatives.push(Alternative {
                field: wf.field,
                matcher: Matcher::Automaton(Arc::clone(prefix)),
                score: PREFIX_BONUS + wf.weight,
                inexact: false,
                extra: false,
            });
        }
        if let (Some(typo), true) = (&typo, wf.typos) {
            alternatives.push(Alternative {
                field: wf.field,
                matcher: Matcher::Automaton(Arc::clone(typo)),
                score: TYPO_BONUS + wf.weight,
                inexact: true,
                extra: false,
            });
        }
    }
    WordMatch::new(alternatives)
}

/// [`word_match`] over every text field of `fields`, plus the matches that forgive how
/// people type names (see the module documentation): by sound and run together in
/// performers, and beyond the word's allowance in performers and event names.
pub(crate) fn forgiving_word_match(word: &str, is_last: bool, fields: &Fields) -> WordMatch {
    let mut word_match = word_match(word, is_last, &fields.text_fields());
    let alternatives = &mut word_match.alternatives;
    let n_chars = word.chars().count();
    let distance = typo_distance(n_chars);
    let performers = schema::PERFORMER_WEIGHT;
    let key = sound_key(word);
    alternatives.push(Alternative {
        field: fields.performer_sounds,
        matcher: Matcher::Exact(Term::from_field_text(fields.performer_sounds, &key)),
        score: SOUND_BONUS + performers,
        inexact: true,
        extra: distance == 0,
    });
    if n_chars >= MIN_JOINED_CHARS {
        // One edit fewer than the word's own allowance: two edits of "danielle" reach
        // "danielthe" (Daniel & the …), which is not this word run together.
        let distance = distance.saturating_sub(1);
        alternatives.extend(joined_alternatives(word, distance, fields));
    }
    let extra_distance = if (MIN_EXTRA_TYPO_CHARS..=EXACT_MAX_CHARS).contains(&n_chars) {
        1
    } else if TWO_SLIPS_CHARS.contains(&n_chars) {
        2
    } else {
        0
    };
    if extra_distance > 0 {
        // At most one letter shorter than the word: an edit beyond the allowance is a
        // slip, not a shorter word inside this one.
        let min_term_bytes = word.len().saturating_sub(1).max(MIN_EXTRA_TYPO_CHARS);
        let extra = Arc::new(
            LazyAutomaton::new(word, extra_distance, false).with_min_term_bytes(min_term_bytes),
        );
        for (field, weight) in [
            (fields.performers, performers),
            (fields.name, schema::NAME_WEIGHT),
        ] {
            alternatives.push(Alternative {
                field,
                matcher: Matcher::Automaton(Arc::clone(&extra)),
                score: weight,
                inexact: true,
                extra: true,
            });
        }
    }
    if FUZZY_KEY_CHARS.contains(&n_chars) && key.len() >= MIN_FUZZY_KEY_BYTES {
        // A sound-alike spelling with one more slip ("mruphie": "murphie" for "Murphy",
        // with two letters swapped; "brrie" for "Berry") is one edit from the name's key.
        let fuzzy_key = LazyAutomaton::new(&key, 1, false)
            .with_min_term_bytes(key.len().saturating_sub(1).max(MIN_FUZZY_KEY_BYTES));
        alternatives.push(Alternative {
            field: fields.performer_sounds,
            matcher: Matcher::Automaton(Arc::new(fuzzy_key)),
            score: performers,
            inexact: true,
            extra: true,
        });
    }
    WordMatch::new(std::mem::take(alternatives))
}

/// `word` as adjacent words of a performer name run together: exactly, or within
/// `distance` edits. Worth the two performer words it stands for — both exact, one exact
/// and one misspelled (one edit), both misspelled (two) — plus [`PHRASE_BONUS`] for
/// finding them side by side in one name.
fn joined_alternatives(word: &str, distance: u8, fields: &Fields) -> Vec<Alternative> {
    let joins = fields.performer_joins;
    let performers = schema::PERFORMER_WEIGHT;
    let alternative = |matcher, bonuses: f32| Alternative {
        field: joins,
        matcher,
        score: bonuses + 2.0 * performers + PHRASE_BONUS,
        inexact: true,
        extra: false,
    };
    let mut out = vec![alternative(
        Matcher::Exact(Term::from_field_text(joins, word)),
        2.0 * EXACT_BONUS,
    )];
    for (d, bonuses) in [(1, EXACT_BONUS + TYPO_BONUS), (2, 2.0 * TYPO_BONUS)] {
        if d <= distance {
            let automaton = LazyAutomaton::new(word, d, false);
            out.push(alternative(
                Matcher::Automaton(Arc::new(automaton)),
                bonuses,
            ));
        }
    }
    out
}

/// Two adjacent query words merged back into the one word they may have been split from:
/// matched in performers and event names (exactly, as a prefix when last, within the typo
/// allowance of the merged word, by sound in performers), worth the two words it replaces;
/// and the two words as typed, side by side in a performer name (the merged word among the
/// names run together, see [`joined_alternatives`]), which outranks the same two words
/// found apart.
pub(crate) fn merged_word_match(
    first: &str,
    second: &str,
    is_last: bool,
    fields: &Fields,
) -> WordMatch {
    let merged = format!("{first}{second}");
    let merged = merged.as_str();
    let performers = WeightedField {
        field: fields.performers,
        weight: schema::PERFORMER_WEIGHT,
        typos: true,
    };
    let name = WeightedField {
        field: fields.name,
        weight: schema::NAME_WEIGHT,
        typos: true,
    };
    let mut word_match = word_match(merged, is_last, &[performers, name]);
    word_match.alternatives.push(Alternative {
        field: fields.performer_sounds,
        matcher: Matcher::Exact(Term::from_field_text(
            fields.performer_sounds,
            &sound_key(merged),
        )),
        score: SOUND_BONUS + schema::PERFORMER_WEIGHT,
        inexact: true,
        extra: false,
    });
    for alternative in &mut word_match.alternatives {
        alternative.score *= 2.0;
        alternative.inexact = true;
    }
    // Side by side, each word keeps its own allowance: "jordan trn" is not "Jordan the".
    let allowance = |w: &str| typo_distance(w.chars().count());
    let join_distance =
        typo_distance(merged.chars().count()).min(allowance(first) + allowance(second));
    word_match
        .alternatives
        .extend(joined_alternatives(merged, join_distance, fields));
    if is_last {
        // Type-ahead: "larry ric" is Larry Rice or Larry Richardson side by side, the
        // second word still being typed.
        let joins = fields.performer_joins;
        word_match.alternatives.push(Alternative {
            field: joins,
            matcher: Matcher::Automaton(Arc::new(LazyAutomaton::new(merged, 0, true))),
            score: EXACT_BONUS + PREFIX_BONUS + 2.0 * schema::PERFORMER_WEIGHT + PHRASE_BONUS,
            inexact: true,
            extra: false,
        });
    }
    WordMatch::new(std::mem::take(&mut word_match.alternatives))
}

/// The query of a search: every word with [`forgiving_word_match`], read as typed and with
/// each adjacent pair merged (at most [`MAX_READINGS`] readings in all).
pub(crate) fn forgiving_text_query(words: &[String], fields: &Fields) -> TextQuery {
    let n = words.len();
    let mut matches: Vec<WordMatch> = words
        .iter()
        .enumerate()
        .map(|(i, word)| forgiving_word_match(word, i + 1 == n, fields))
        .collect();
    let mut readings = vec![(0..n).collect::<Vec<usize>>()];
    for i in 0..n.saturating_sub(1) {
        if readings.len() >= MAX_READINGS {
            break;
        }
        if words[i].len() + words[i + 1].len() > MAX_TOKEN_BYTES {
            continue;
        }
        matches.push(merged_word_match(
            &words[i],
            &words[i + 1],
            i + 2 == n,
            fields,
        ));
        let mut reading: Vec<usize> = (0..i).chain(i + 2..n).collect();
        reading.push(matches.len() - 1);
        readings.push(reading);
    }
    TextQuery::with_readings(matches, readings)
}

/// All `words` over `fields` (the last one as a prefix) as one query.
pub(crate) fn text_query(words: &[String], fields: &[WeightedField]) -> TextQuery {
    let matches = words
        .iter()
        .enumerate()
        .map(|(i, word)| word_match(word, i + 1 == words.len(), fields))
        .collect();
    TextQuery::new(matches)
}

/// The whole tantivy query for a validated search: words AND filters. The date range is
/// applied by the collector, which reads start times anyway.
pub(crate) fn build_query(fields: &Fields, query: &ValidQuery) -> Box<dyn Query> {
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    if !query.words.is_empty() {
        let text = forgiving_text_query(&query.words, fields);
        clauses.push((Occur::Must, Box::new(text)));
    }
    let filters = [
        query
            .city
            .as_ref()
            .map(|c| Term::from_field_text(fields.city_key, c)),
        query
            .category
            .as_ref()
            .map(|c| Term::from_field_text(fields.category_key, c)),
        query
            .performer
            .as_ref()
            .map(|p| Term::from_field_text(fields.performer_ids, p)),
    ];
    for term in filters.into_iter().flatten() {
        clauses.push((
            Occur::Must,
            Box::new(ConstScoreQuery::new(
                Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
                0.0,
            )),
        ));
    }
    if clauses.is_empty() {
        return Box::new(AllQuery);
    }
    Box::new(BooleanQuery::new(clauses))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(q: &str) -> SearchQuery {
        SearchQuery {
            q: Some(q.into()),
            ..SearchQuery::default()
        }
    }

    #[test]
    fn typo_distance_grows_with_word_length() {
        let distances: Vec<u8> = (1..=10).map(typo_distance).collect();
        assert_eq!(distances, [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]);
    }

    #[test]
    fn normalized_key_is_canonical() {
        let a = SearchQuery {
            q: Some("  Beyoncé   RENAISSANCE ".into()),
            city: Some(" PARIS".into()),
            category: Some("Concert".into()),
            from_ms: Some(5),
            ..SearchQuery::default()
        };
        let b = SearchQuery {
            q: Some("beyonce renaissance".into()),
            city: Some("paris".into()),
            category: Some("concert ".into()),
            from_ms: Some(5),
            ..SearchQuery::default()
        };
        assert_eq!(a.normalized_key(), b.normalized_key());
        assert_eq!(
            a.normalized_key(),
            "q=beyonce renaissance&category=concert&city=paris&from_ms=5&limit=20"
        );
        let other_limit = SearchQuery {
            limit: 5,
            ..b.clone()
        };
        assert_ne!(a.normalized_key(), other_limit.normalized_key());
    }

    #[test]
    fn normalized_key_cannot_be_forged_by_values() {
        let sneaky = SearchQuery {
            city: Some("paris&category=concert".into()),
            ..SearchQuery::default()
        };
        let honest = SearchQuery {
            city: Some("paris".into()),
            category: Some("concert".into()),
            ..SearchQuery::default()
        };
        assert_ne!(sneaky.normalized_key(), honest.normalized_key());
        assert_eq!(
            sneaky.normalized_key(),
            "q=&city=paris%26category%3Dconcert&limit=20"
        );
    }

    #[test]
    fn blank_filters_are_absent() {
        let q = SearchQuery {
            city: Some("  ".into()),
            performer: Some("".into()),
            ..SearchQuery::default()
        };
        let valid = q.validate().unwrap();
        assert_eq!((valid.city, valid.performer), (None, None));
        assert_eq!(q.normalized_key(), SearchQuery::default().normalized_key());
    }

    #[test]
    fn limits_are_enforced() {
        let bad_limits = [0, MAX_LIMIT + 1];
        for limit in bad_limits {
            let q = SearchQuery {
                limit,
                ..SearchQuery::default()
            };
            assert!(matches!(
                q.validate(),
                Err(SearchError::InvalidLimit { .. })
            ));
        }
        let long = query(&"a".repeat(MAX_QUERY_CHARS + 1));
        assert!(matches!(
            long.validate(),
            Err(SearchError::QueryTooLong { .. })
        ));
        let wordy = query(&"word ".repeat(MAX_QUERY_TERMS + 1));
        assert!(matches!(
            wordy.validate(),
            Err(SearchError::TooManyTerms { n_terms: 9, max: 8 })
        ));
        let distinct: Vec<String> = (0..MAX_QUERY_TERMS).map(|i| format!("word{i}")).collect();
        let ok = query(&distinct.join(" "));
        assert_eq!(ok.validate().unwrap().words, distinct);
    }

    #[test]
    fn filters_are_checked() {
        let long_city = SearchQuery {
            city: Some("x".repeat(MAX_FILTER_CHARS + 1)),
            ..SearchQuery::default()
        };
        assert!(matches!(
            long_city.validate(),
            Err(SearchError::InvalidFilter { filter: "city", .. })
        ));
        let control = SearchQuery {
            performer: Some("p\u{0}1".into()),
            ..SearchQuery::default()
        };
        assert!(matches!(
            control.validate(),
            Err(SearchError::InvalidFilter {
                filter: "performer",
                ..
            })
        ));
        let backwards = SearchQuery {
            from_ms: Some(10),
            to_ms: Some(9),
            ..SearchQuery::default()
        };
        assert!(matches!(
            backwards.validate(),
            Err(SearchError::InvalidDateRange {
                from_ms: 10,
                to_ms: 9
            })
        ));
    }

    #[test]
    fn repeated_words_count_once_and_the_last_stays_last() {
        let words = |q: &str| query(q).validate().unwrap().words;
        assert_eq!(words("the the weeknd the"), ["weeknd", "the"]);
        assert_eq!(words("swift taylor swift"), ["taylor", "swift"]);
        assert_eq!(words("Taylor taylor TAYLOR"), ["taylor"]);
        assert_eq!(
            query("taylor taylor").normalized_key(),
            query("taylor").normalized_key()
        );
    }

    #[test]
    fn punctuation_only_text_means_no_text() {
        assert!(query(" ?! ").validate().unwrap().words.is_empty());
        assert_eq!(
            query(" ?! ").normalized_key(),
            SearchQuery::default().normalized_key()
        );
    }

    #[test]
    fn a_cursor_is_bound_to_its_query() {
        let first = query("taylor swift");
        let valid = first.validate().unwrap();
        let key = SortKey {
            score_q: 1,
            starts_at_ms: 2,
            event_id: "e".into(),
        };
        let cursor = cursor::encode(valid.query_hash, &key);
        let same_query_other_limit = SearchQuery {
            q: Some("Taylor  Swift".into()),
            limit: 3,
            cursor: Some(cursor.clone()),
            ..SearchQuery::default()
        };
        assert_eq!(same_query_other_limit.validate().unwrap().after, Some(key));
        let other_query = SearchQuery {
            cursor: Some(cursor),
            ..query("taylor")
        };
        assert!(matches!(
            other_query.validate(),
            Err(SearchError::InvalidCursor(_))
        ));
    }
}
