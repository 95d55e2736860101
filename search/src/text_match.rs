//! [`TextQuery`]: the words of `q` as one tantivy query. Each word has alternatives (exact
//! term, prefix, typo — in each text field), each worth a constant score; a document must
//! match every word, and scores the sum over words of its best alternative.
//!
//! Per segment the query is evaluated eagerly, rarest word first: the postings of each of
//! its alternatives are written, best alternative first, into one byte per document (which
//! alternative matched), and the documents with a byte set become the candidates. Each
//! further word filters the candidates: read in full the same way when its posting lists are
//! short, or, when it is common ("the"), by seeking its posting lists to each candidate.
//! The cost is about the postings of the rare words plus one byte per document. (A union
//! of twenty lazily merged posting lists per word, intersected across words, cost several
//! times more on a million events.)

use std::sync::{Arc, OnceLock};

use tantivy::index::InvertedIndexReader;
use tantivy::postings::TermInfo;
use tantivy::query::{
    DfaWrapper, EmptyScorer, EnableScoring, Explanation, FuzzyTermQuery, Query, Scorer, Weight,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocId, DocSet, Score, SegmentReader, TantivyError, Term, TERMINATED};

/// How an alternative recognizes its terms.
pub(crate) enum Matcher {
    /// The word itself.
    Exact(Term),
    /// Every term the automaton accepts (prefix and/or typo matches).
    Automaton(Arc<LazyAutomaton>),
}

/// A Levenshtein automaton built on first use, then shared by every field and segment of
/// one query. Built lazily because a large one (two typos, a long word) costs up to a
/// millisecond and a megabyte, and a query stops at its first word that matches nothing.
pub(crate) struct LazyAutomaton {
    word: String,
    distance: u8,
    prefix: bool,
    built: OnceLock<Result<DfaWrapper, String>>,
}

impl LazyAutomaton {
    /// Terms within `distance` edits of `word` (transpositions cost one); with `prefix`,
    /// terms that start with such a string.
    pub fn new(word: &str, distance: u8, prefix: bool) -> Self {
        LazyAutomaton {
            word: word.to_owned(),
            distance,
            prefix,
            built: OnceLock::new(),
        }
    }

    fn get(&self) -> tantivy::Result<&DfaWrapper> {
        let built = self.built.get_or_init(|| {
            // The field is irrelevant: only the text of the term shapes the automaton.
            let term = Term::from_field_text(Field::from_field_id(0), &self.word);
            let query = if self.prefix {
                FuzzyTermQuery::new_prefix(term, self.distance, true)
            } else {
                FuzzyTermQuery::new(term, self.distance, true)
            };
            query.automaton().map_err(|e| e.to_string())
        });
        built
            .as_ref()
            .map_err(|e| TantivyError::InvalidArgument(e.clone()))
    }
}

/// One way a word can match a document, and what it is worth.
pub(crate) struct Alternative {
    pub field: Field,
    pub matcher: Matcher,
    pub score: Score,
}

/// The ways one word can match, best first. At most `u8::MAX` alternatives.
pub(crate) struct WordMatch {
    pub alternatives: Vec<Alternative>,
}

impl WordMatch {
    /// Sorts the alternatives best first (ties keep their order) and caps their number.
    pub fn new(mut alternatives: Vec<Alternative>) -> Self {
        alternatives.sort_by(|a, b| b.score.total_cmp(&a.score));
        alternatives.truncate(usize::from(u8::MAX));
        WordMatch { alternatives }
    }
}

/// Documents matching every word; see the module documentation.
#[derive(Clone)]
pub(crate) struct TextQuery {
    words: Arc<Vec<WordMatch>>,
    seek_ratio: u64,
}

impl TextQuery {
    pub fn new(words: Vec<WordMatch>) -> Self {
        TextQuery {
            words: Arc::new(words),
            seek_ratio: SEEK_RATIO,
        }
    }

    /// Overrides [`SEEK_RATIO`]: 0 always seeks, `u64::MAX` never does (tests both paths).
    #[cfg(test)]
    pub fn with_seek_ratio(mut self, seek_ratio: u64) -> Self {
        self.seek_ratio = seek_ratio;
        self
    }
}

impl std::fmt::Debug for TextQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextQuery")
            .field("n_words", &self.words.len())
            .finish_non_exhaustive()
    }
}

impl Query for TextQuery {
    fn weight(&self, _scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(TextWeight {
            words: Arc::clone(&self.words),
            seek_ratio: self.seek_ratio,
        }))
    }
}

struct TextWeight {
    words: Arc<Vec<WordMatch>>,
    seek_ratio: u64,
}

/// A common word is checked against the candidates by seeking its posting lists, rather
/// than read in full, when it has more than this many postings per candidate and term.
const SEEK_RATIO: u64 = 16;

/// Bytes of the per-document array tested at once for "any match here".
const SCAN_BLOCK_BYTES: usize = 64;

/// `word` with the high bit of each of its non-zero bytes set, and nothing else. (Adding
/// 0x7f to the low seven bits of a byte carries into its high bit unless they are all zero;
/// no carry crosses bytes.)
fn nonzero_byte_marks(word: u64) -> u64 {
    const LOW_7_BITS: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    (((word & LOW_7_BITS) + LOW_7_BITS) | word) & HIGH_BITS
}

/// The posting lists one word's alternatives select in one segment.
struct ResolvedWord<'a> {
    word: &'a WordMatch,
    /// `(alternative index, inverted index, term)`, best alternative first.
    terms: Vec<(usize, Arc<InvertedIndexReader>, TermInfo)>,
    n_postings: u64,
}

impl ResolvedWord<'_> {
    fn score(&self, tag: u8) -> Score {
        self.word
            .alternatives
            .get(usize::from(tag).wrapping_sub(1))
            .map_or(0.0, |a| a.score)
    }

    /// Writes into `level[doc]` (where still 0) `1 +` the best alternative matching `doc`.
    fn fill(&self, level: &mut [u8]) -> tantivy::Result<()> {
        for (alternative, inverted_index, term_info) in &self.terms {
            let tag = u8::try_from(alternative + 1).unwrap_or(u8::MAX);
            let mut postings = inverted_index
                .read_block_postings_from_terminfo(term_info, IndexRecordOption::Basic)?;
            loop {
                let docs = postings.docs();
                if docs.is_empty() {
                    break;
                }
                for &doc in docs {
                    if let Some(slot) = level.get_mut(doc as usize) {
                        if *slot == 0 {
                            *slot = tag;
                        }
                    }
                }
                postings.advance();
            }
        }
        Ok(())
    }

    /// For each of the sorted `docs`, `1 +` the best alternative matching it, or 0.
    fn seek(&self, docs: &[DocId]) -> tantivy::Result<Vec<u8>> {
        let mut tags = vec![0u8; docs.len()];
        for (alternative, inverted_index, term_info) in &self.terms {
            let tag = u8::try_from(alternative + 1).unwrap_or(u8::MAX);
            let mut postings =
                inverted_index.read_postings_from_terminfo(term_info, IndexRecordOption::Basic)?;
            let mut current = postings.doc();
            for (slot, &doc) in tags.iter_mut().zip(docs) {
                if *slot != 0 {
                    continue;
                }
                if current < doc {
                    current = postings.seek(doc);
                }
                if current == TERMINATED {
                    break;
                }
                if current == doc {
                    *slot = tag;
                }
            }
        }
        Ok(tags)
    }
}

impl TextWeight {
    /// The matching documents of one segment, in doc id order, with their scores.
    fn matches(&self, reader: &SegmentReader) -> tantivy::Result<(Vec<DocId>, Vec<Score>)> {
        let mut resolved = Vec::with_capacity(self.words.len());
        for word in self.words.iter() {
            let mut terms = Vec::new();
            let mut n_postings = 0u64;
            for (i, alternative) in word.alternatives.iter().enumerate() {
                let inverted_index = reader.inverted_index(alternative.field)?;
                let mut found: Vec<TermInfo> = Vec::new();
                match &alternative.matcher {
                    Matcher::Exact(term) => found.extend(inverted_index.get_term_info(term)?),
                    Matcher::Automaton(automaton) => {
                        let mut stream = inverted_index
                            .terms()
                            .search(automaton.get()?)
                            .into_stream()?;
                        while stream.advance() {
                            found.push(stream.value().clone());
                        }
                    }
                }
                for term_info in found {
                    n_postings += u64::from(term_info.doc_freq);
                    terms.push((i, Arc::clone(&inverted_index), term_info));
                }
            }
            if n_postings == 0 {
                return Ok((Vec::new(), Vec::new()));
            }
            resolved.push(ResolvedWord {
                word,
                terms,
                n_postings,
            });
        }
        // Rarest word first: it selects the candidates, the others only filter them.
        resolved.sort_by_key(|w| w.n_postings);
        let Some((first, rest)) = resolved.split_first() else {
            return Ok((Vec::new(), Vec::new()));
        };

        // Padded to whole blocks, so that the scan below reads whole blocks only.
        let n_bytes = (reader.max_doc() as usize).next_multiple_of(SCAN_BLOCK_BYTES);
        let mut level = vec![0u8; n_bytes];
        first.fill(&mut level)?;
        let mut docs: Vec<DocId> = Vec::new();
        let mut scores: Vec<Score> = Vec::new();
        // A block of 64 bytes at a time (their OR is a few vector instructions), then, in
        // the blocks with a byte set, eight bytes at a time, visiting only the set bytes.
        for (block_idx, block) in level.chunks(SCAN_BLOCK_BYTES).enumerate() {
            if block.iter().fold(0u8, |acc, &b| acc | b) == 0 {
                continue;
            }
            let block_base = block_idx * SCAN_BLOCK_BYTES;
            for (chunk_idx, chunk) in block.chunks_exact(8).enumerate() {
                let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
                    continue;
                };
                let mut set = nonzero_byte_marks(u64::from_le_bytes(bytes));
                while set != 0 {
                    let byte = (set.trailing_zeros() / 8) as usize;
                    docs.push((block_base + chunk_idx * 8 + byte) as DocId);
                    scores.push(first.score(bytes[byte]));
                    set &= set - 1;
                }
            }
        }

        for word in rest {
            if docs.is_empty() {
                break;
            }
            let n_terms = word.terms.len() as u64;
            let seek_cost = self
                .seek_ratio
                .saturating_mul(docs.len() as u64)
                .saturating_mul(n_terms);
            let tags = if word.n_postings > seek_cost {
                word.seek(&docs)?
            } else {
                level.fill(0);
                word.fill(&mut level)?;
                docs.iter()
                    .map(|&doc| level.get(doc as usize).copied().unwrap_or(0))
                    .collect()
            };
            let mut kept = 0;
            for i in 0..docs.len() {
                let tag = tags.get(i).copied().unwrap_or(0);
                if tag != 0 {
                    docs[kept] = docs[i];
                    scores[kept] = scores[i] + word.score(tag);
                    kept += 1;
                }
            }
            docs.truncate(kept);
            scores.truncate(kept);
        }
        Ok((docs, scores))
    }
}

impl Weight for TextWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let (docs, scores) = self.matches(reader)?;
        if docs.is_empty() {
            return Ok(Box::new(EmptyScorer));
        }
        Ok(Box::new(MatchScorer {
            docs,
            scores,
            pos: 0,
            boost,
        }))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.seek(doc) != doc {
            return Err(TantivyError::InvalidArgument(format!(
                "document #{doc} does not match"
            )));
        }
        Ok(Explanation::new("TextQuery", scorer.score()))
    }
}

/// A precomputed list of documents and scores.
struct MatchScorer {
    docs: Vec<DocId>,
    scores: Vec<Score>,
    pos: usize,
    boost: Score,
}

impl DocSet for MatchScorer {
    fn advance(&mut self) -> DocId {
        if self.pos < self.docs.len() {
            self.pos += 1;
        }
        self.doc()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if self.doc() < target {
            let rest = &self.docs[self.pos..];
            self.pos += rest.partition_point(|&d| d < target);
        }
        self.doc()
    }

    fn doc(&self) -> DocId {
        self.docs.get(self.pos).copied().unwrap_or(TERMINATED)
    }

    fn size_hint(&self) -> u32 {
        u32::try_from(self.docs.len()).unwrap_or(u32::MAX)
    }
}

impl Scorer for MatchScorer {
    fn score(&mut self) -> Score {
        self.scores.get(self.pos).map_or(0.0, |s| s * self.boost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_scorer_advances_and_seeks() {
        let mut scorer = MatchScorer {
            docs: vec![2, 5, 9, 14],
            scores: vec![1.0, 2.0, 3.0, 4.0],
            pos: 0,
            boost: 2.0,
        };
        assert_eq!((scorer.doc(), scorer.score()), (2, 2.0));
        assert_eq!(scorer.seek(5), 5);
        assert_eq!(scorer.seek(6), 9);
        assert_eq!(scorer.score(), 6.0);
        assert_eq!(scorer.seek(3), 9, "seeking backwards stays put");
        assert_eq!(scorer.advance(), 14);
        assert_eq!(scorer.advance(), TERMINATED);
        assert_eq!(scorer.advance(), TERMINATED);
        assert_eq!(scorer.seek(100), TERMINATED);
        assert_eq!(scorer.score(), 0.0);
    }

    #[test]
    fn nonzero_bytes_are_marked() {
        let word = u64::from_le_bytes([0, 0x80, 1, 0, 0xff, 0, 0x7f, 0]);
        let marks = nonzero_byte_marks(word);
        let marked: Vec<usize> = (0..8).filter(|i| marks & (0x80 << (8 * i)) != 0).collect();
        assert_eq!(marked, [1, 2, 4, 6]);
        assert_eq!(marks & !0x8080_8080_8080_8080, 0);
        assert_eq!(nonzero_byte_marks(0), 0);
        assert_eq!(nonzero_byte_marks(u64::MAX), 0x8080_8080_8080_8080);
    }

    #[test]
    fn alternatives_are_sorted_best_first() {
        let field = Field::from_field_id(0);
        let alternative = |score| Alternative {
            field,
            matcher: Matcher::Exact(Term::from_field_text(field, "x")),
            score,
        };
        let word = WordMatch::new(vec![alternative(1.0), alternative(25.0), alternative(15.0)]);
        let scores: Vec<Score> = word.alternatives.iter().map(|a| a.score).collect();
        assert_eq!(scores, [25.0, 15.0, 1.0]);
    }
}
