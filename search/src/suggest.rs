//! Type-ahead suggestions: performer names and event names that the typed words match
//! (the last word as a prefix, every word with the typo tolerance of a search), best first,
//! without duplicates.
//!
//! The index finds candidate events; each stored performer or event name is then checked
//! word by word here, because a multi-performer event matches the query as a whole while
//! only one of its performers may be the one typed.

use serde::{Deserialize, Serialize};
use tantivy::schema::Value;
use tantivy::{Searcher, TantivyDocument};

use crate::collect::TopEvents;
use crate::error::SearchError;
use crate::query::{
    text_query, typo_distance, validate_text, EXACT_BONUS, MIN_PREFIX_CHARS, PREFIX_BONUS,
};
use crate::schema::{self, Fields, WeightedField};

/// Most suggestions one call returns.
pub const MAX_SUGGEST_LIMIT: usize = 20;
/// Candidate events read per kind for each suggestion asked for.
const SCAN_DOCS_PER_SUGGESTION: usize = 4;
/// Most candidate events read per kind, whatever the limit.
const MAX_SCAN_DOCS: usize = 64;

/// What a suggestion names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuggestionKind {
    Performer,
    Event,
}

/// One type-ahead entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suggestion {
    pub kind: SuggestionKind,
    /// The name as the catalog spells it.
    pub text: String,
    /// For an event: the earliest best-matching event of that name.
    pub event_id: Option<String>,
    /// For a performer: its id, usable as the `performer` search filter.
    pub performer_id: Option<String>,
}

/// Suggestions for `prefix` from `searcher`'s view of the index.
pub(crate) fn suggest(
    searcher: &Searcher,
    fields: &Fields,
    prefix: &str,
    limit: usize,
) -> Result<Vec<Suggestion>, SearchError> {
    if limit == 0 || limit > MAX_SUGGEST_LIMIT {
        return Err(SearchError::InvalidLimit {
            limit,
            max: MAX_SUGGEST_LIMIT,
        });
    }
    let words = validate_text(prefix)?;
    if words.is_empty() {
        return Ok(Vec::new());
    }
    let n_scan = (limit * SCAN_DOCS_PER_SUGGESTION).min(MAX_SCAN_DOCS);
    // (score, kind order, suggestion); kind order puts performers first on equal scores.
    let mut found: Vec<(u32, u8, Suggestion)> = Vec::new();
    let mut seen: Vec<(SuggestionKind, String)> = Vec::new();

    let performer_docs = candidates(searcher, fields.performers, &words, n_scan)?;
    for doc in &performer_docs {
        let ids: Vec<&str> = doc
            .get_all(fields.performer_ids)
            .filter_map(|v| v.as_str())
            .collect();
        for (i, name) in doc
            .get_all(fields.performers)
            .filter_map(|v| v.as_str())
            .enumerate()
        {
            let Some(score) = match_score(&words, name) else {
                continue;
            };
            let dedup = (SuggestionKind::Performer, schema::words(name).join(" "));
            if seen.contains(&dedup) {
                continue;
            }
            seen.push(dedup);
            found.push((
                score,
                0,
                Suggestion {
                    kind: SuggestionKind::Performer,
                    text: name.to_owned(),
                    event_id: None,
                    performer_id: ids.get(i).map(|id| (*id).to_owned()),
                },
            ));
        }
    }

    let event_docs = candidates(searcher, fields.name, &words, n_scan)?;
    for doc in &event_docs {
        let Some(name) = doc.get_first(fields.name).and_then(|v| v.as_str()) else {
            continue;
        };
        let Some(score) = match_score(&words, name) else {
            continue;
        };
        let dedup = (SuggestionKind::Event, schema::words(name).join(" "));
        if seen.contains(&dedup) {
            continue;
        }
        seen.push(dedup);
        found.push((
            score,
            1,
            Suggestion {
                kind: SuggestionKind::Event,
                text: name.to_owned(),
                event_id: doc
                    .get_first(fields.event_id)
                    .and_then(|v| v.as_str())
                    .map(str::to_owned),
                performer_id: None,
            },
        ));
    }

    // Stable: equal scores keep the index's order (earlier events first).
    found.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    Ok(found.into_iter().take(limit).map(|(_, _, s)| s).collect())
}

/// The best `n_scan` events whose `field` matches every word, as stored documents.
fn candidates(
    searcher: &Searcher,
    field: tantivy::schema::Field,
    words: &[String],
    n_scan: usize,
) -> Result<Vec<TantivyDocument>, SearchError> {
    let only = [WeightedField {
        field,
        weight: 1.0,
        typos: true,
    }];
    let query = text_query(words, &only);
    let collector = TopEvents {
        limit: n_scan,
        after: None,
        from_ms: None,
        to_ms: None,
        scored: true,
    };
    let collected = searcher.search(&query, &collector)?;
    let mut docs = Vec::with_capacity(collected.hits.len());
    for hit in collected.hits {
        docs.push(searcher.doc::<TantivyDocument>(hit.address)?);
    }
    Ok(docs)
}

/// How well `text` matches all `words` (the last one as a prefix), with the bonuses of a
/// search, or `None` when some word matches none of its words.
pub(crate) fn match_score(words: &[String], text: &str) -> Option<u32> {
    let tokens: Vec<Vec<char>> = schema::words(text)
        .iter()
        .map(|t| t.chars().collect())
        .collect();
    let mut total = 0u32;
    for (i, word) in words.iter().enumerate() {
        let word: Vec<char> = word.chars().collect();
        let is_last = i + 1 == words.len();
        let as_prefix = is_last && word.len() >= MIN_PREFIX_CHARS;
        let distance = usize::from(typo_distance(word.len()));
        let mut best: Option<u32> = None;
        for token in &tokens {
            let bonus = if *token == word {
                EXACT_BONUS as u32
            } else if as_prefix && token.starts_with(&word) {
                PREFIX_BONUS as u32
            } else if distance > 0 && edit_distance(&word, token, as_prefix) <= distance {
                0
            } else {
                continue;
            };
            best = Some(best.map_or(bonus, |b| b.max(bonus)));
        }
        total += best?;
    }
    Some(total)
}

/// Optimal-string-alignment distance (a transposition costs one) between `a` and `b`; with
/// `prefix`, between `a` and the closest prefix of `b`. Same rules as tantivy's automata
/// (public so that the benchmark counts a drawn slip's edits the way the index does).
pub fn edit_distance(a: &[char], b: &[char], prefix: bool) -> usize {
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for (j, cell) in d.iter_mut().take(width).enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        d[i * width] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    let last_row = &d[a.len() * width..];
    if prefix {
        last_row.iter().copied().min().unwrap_or(a.len())
    } else {
        last_row.last().copied().unwrap_or(a.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn edit_distance_counts_transpositions_once() {
        let cases = [
            ("swfit", "swift", false, 1),
            ("tayler", "taylor", false, 1),
            ("beyonse", "beyonce", false, 1),
            ("", "abc", false, 3),
            ("abc", "", false, 3),
            ("kitten", "sitting", false, 3),
            ("weekn", "weeknd", true, 0),
            ("wekn", "weeknd", true, 1),
            ("tay", "taylor", true, 0),
            ("xyz", "taylor", true, 3),
        ];
        for (a, b, prefix, expected) in cases {
            assert_eq!(
                edit_distance(&chars(a), &chars(b), prefix),
                expected,
                "{a} {b}"
            );
        }
    }

    #[test]
    fn match_score_grades_exact_prefix_and_typo() {
        let words = |q: &str| schema::words(q);
        assert_eq!(
            match_score(&words("taylor swift"), "Taylor Swift"),
            Some(20)
        );
        assert_eq!(match_score(&words("taylor sw"), "Taylor Swift"), Some(16));
        assert_eq!(match_score(&words("tayler swfit"), "Taylor Swift"), Some(0));
        assert_eq!(match_score(&words("beyonse"), "Beyoncé"), Some(0));
        assert_eq!(
            match_score(&words("swift taylor"), "Taylor Swift"),
            Some(20)
        );
        assert_eq!(match_score(&words("taylor drake"), "Taylor Swift"), None);
        assert_eq!(match_score(&words("t"), "Taylor Swift"), None);
    }
}
