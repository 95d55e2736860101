//! [`TextQuery`]: the words of `q` as one tantivy query. Each word has alternatives (exact
//! term, prefix, typo, sound key, joined words — in each text field), each worth a constant
//! score; a document must match every word, and scores the sum over words of its best
//! alternative. A query may have several *readings* (the words as typed, or two adjacent
//! words merged back into one, for a name split apart): a document matches when one reading
//! matches, and scores its best reading.
//!
//! **The typo budget.** An alternative is *inexact* when it is neither the word nor a
//! prefix of it, and *extra* when it spends more than the word's own typo allowance (a slip
//! in a word of three letters or fewer, a second slip in one of five to seven). A document
//! may use one extra alternative only when every other word of the reading matches exactly
//! (see `Budget`). So a word's extra alternatives — its widest automata, whose terms reach
//! many other names — are looked up in a segment only when every other word of a reading
//! has an exact match there: a query with two misspelled words never walks them, and their
//! postings do not swell the candidates. (The budget alone gave the same pages at about
//! 1.4–1.9× the CPU per misspelled query at 1M events.)
//!
//! Per segment the query is evaluated eagerly, rarest word first: the postings of each of
//! its alternatives are written, best alternative first, into one byte per document (which
//! alternative matched), and the documents with a byte set become the candidates. Each
//! further word filters the candidates: read in full the same way when its posting lists are
//! short, or, when it is common ("the"), by seeking its posting lists to each candidate.
//! The cost is about the postings of the rare words plus one byte per document. (A union
//! of twenty lazily merged posting lists per word, intersected across words, cost several
//! times more on a million events.)
//!
//! (Over 600 lines on purpose: readings, the budget, and the sparse and dense candidate
//! paths are one algorithm sharing private types; its unit tests follow it.)

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
    /// Accepted terms shorter than this many bytes are ignored.
    min_term_bytes: usize,
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
            min_term_bytes: 0,
            built: OnceLock::new(),
        }
    }

    /// Ignores accepted terms shorter than `min_term_bytes`: two edits of a 5-letter word
    /// reach every 3-letter word inside it ("anthe" → "the"), which is not a slip.
    pub fn with_min_term_bytes(mut self, min_term_bytes: usize) -> Self {
        self.min_term_bytes = min_term_bytes;
        self
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
    /// Neither the word nor a prefix of it (a typo, a sound-alike, a join or a split).
    pub inexact: bool,
    /// Beyond the word's own typo allowance: allowed once, when all else is exact.
    pub extra: bool,
}

/// The ways one word can match, best first. At most `u8::MAX` alternatives.
pub(crate) struct WordMatch {
    pub alternatives: Vec<Alternative>,
}

impl WordMatch {
    /// Sorts the alternatives best first — within the word's allowance before beyond it,
    /// then by score; ties keep their order — and caps their number.
    pub fn new(mut alternatives: Vec<Alternative>) -> Self {
        alternatives.sort_by(|a, b| a.extra.cmp(&b.extra).then(b.score.total_cmp(&a.score)));
        alternatives.truncate(usize::from(u8::MAX));
        WordMatch { alternatives }
    }
}

/// Most readings of one query: the words as typed plus one per merged pair, for the first
/// four pairs (a name of four words with one split apart makes five words; each reading
/// costs a pass over the candidates, and eight common words made seven readings cost 3.6×
/// the old query).
pub(crate) const MAX_READINGS: usize = 5;

/// Documents matching every word of one of the readings; see the module documentation.
#[derive(Clone)]
pub(crate) struct TextQuery {
    words: Arc<Vec<WordMatch>>,
    /// Each reading lists indexes into `words`; the first is the words as typed.
    readings: Arc<Vec<Vec<usize>>>,
    seek_ratio: u64,
}

impl TextQuery {
    /// One reading: every word of `words`.
    pub fn new(words: Vec<WordMatch>) -> Self {
        let reading = (0..words.len()).collect();
        Self::with_readings(words, vec![reading])
    }

    /// Several readings over `words` (at most [`MAX_READINGS`]; indexes out of range and
    /// empty readings are dropped).
    pub fn with_readings(words: Vec<WordMatch>, mut readings: Vec<Vec<usize>>) -> Self {
        readings.retain(|r| !r.is_empty() && r.iter().all(|&i| i < words.len()));
        readings.truncate(MAX_READINGS);
        TextQuery {
            words: Arc::new(words),
            readings: Arc::new(readings),
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
            .field("n_readings", &self.readings.len())
            .finish_non_exhaustive()
    }
}

impl Query for TextQuery {
    fn weight(&self, _scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(TextWeight {
            words: Arc::clone(&self.words),
            readings: Arc::clone(&self.readings),
            seek_ratio: self.seek_ratio,
        }))
    }
}

struct TextWeight {
    words: Arc<Vec<WordMatch>>,
    readings: Arc<Vec<Vec<usize>>>,
    seek_ratio: u64,
}

/// The typo budget of one candidate document: how many of its words matched inexactly, and
/// how many beyond their own allowance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Budget {
    n_inexact: u8,
    n_extra: u8,
}

impl Budget {
    /// The budget after one more word matched by `alternative`.
    fn spend(self, alternative: Option<&Alternative>) -> Budget {
        let (inexact, extra) = alternative.map_or((false, false), |a| (a.inexact, a.extra));
        Budget {
            n_inexact: self.n_inexact.saturating_add(u8::from(inexact)),
            n_extra: self.n_extra.saturating_add(u8::from(extra)),
        }
    }

    /// At most one word beyond its allowance, and only when it is the one inexact word.
    fn allows(self) -> bool {
        self.n_extra == 0 || (self.n_extra == 1 && self.n_inexact == 1)
    }
}

/// A common word is checked against the candidates by seeking its posting lists, rather
/// than read in full, when it has more than this many postings per candidate and term.
const SEEK_RATIO: u64 = 16;

/// The rarest word's postings are sorted rather than spread over a byte per document when
/// there are at most one per this many documents.
const SPARSE_RATIO: u64 = 256;

/// One byte per document (plus padding), allocated when first needed and cleared only
/// when dirty.
struct Scratch {
    level: Vec<u8>,
    n_bytes: usize,
    dirty: bool,
}

impl Scratch {
    /// The array, all zero, marked dirty for the next caller.
    fn clean(&mut self) -> &mut [u8] {
        if self.level.len() != self.n_bytes {
            self.level = vec![0u8; self.n_bytes];
        } else if self.dirty {
            self.level.fill(0);
        }
        self.dirty = true;
        &mut self.level
    }
}

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
    /// Postings of the exact and prefix alternatives.
    n_exact_postings: u64,
    /// Whether the alternatives beyond the allowance are among `terms` yet.
    with_extra: bool,
}

impl ResolvedWord<'_> {
    /// Adds the terms of the alternatives beyond the allowance if `extra`, of the others if
    /// not. (Extra alternatives sort last, so `terms` stays best first.)
    fn add_terms(&mut self, reader: &SegmentReader, extra: bool) -> tantivy::Result<()> {
        for (i, alternative) in self.word.alternatives.iter().enumerate() {
            if alternative.extra != extra {
                continue;
            }
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
                        if stream.key().len() >= automaton.min_term_bytes {
                            found.push(stream.value().clone());
                        }
                    }
                }
            }
            for term_info in found {
                let n = u64::from(term_info.doc_freq);
                self.n_postings += n;
                if !alternative.inexact {
                    self.n_exact_postings += n;
                }
                self.terms.push((i, Arc::clone(&inverted_index), term_info));
            }
        }
        self.with_extra |= extra;
        Ok(())
    }

    fn alternative(&self, tag: u8) -> Option<&Alternative> {
        self.word.alternatives.get(usize::from(tag).wrapping_sub(1))
    }

    fn score(&self, tag: u8) -> Score {
        self.alternative(tag).map_or(0.0, |a| a.score)
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

    /// Every document matching one of the alternatives, in order, with `1 +` the best.
    fn sorted_tags(&self) -> tantivy::Result<Vec<(DocId, u8)>> {
        let mut keys: Vec<u64> = Vec::with_capacity(self.n_postings as usize);
        for (alternative, inverted_index, term_info) in &self.terms {
            let tag = u8::try_from(alternative + 1).unwrap_or(u8::MAX);
            let mut postings = inverted_index
                .read_block_postings_from_terminfo(term_info, IndexRecordOption::Basic)?;
            loop {
                let docs = postings.docs();
                if docs.is_empty() {
                    break;
                }
                keys.extend(
                    docs.iter()
                        .map(|&doc| (u64::from(doc) << 8) | u64::from(tag)),
                );
                postings.advance();
            }
        }
        // By document, then best tag first; keep each document's first.
        keys.sort_unstable();
        keys.dedup_by_key(|key| *key >> 8);
        Ok(keys
            .into_iter()
            .map(|key| ((key >> 8) as DocId, (key & 0xff) as u8))
            .collect())
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
    /// The posting lists of `word`'s alternatives within its allowance in one segment.
    fn resolve<'a>(
        word: &'a WordMatch,
        reader: &SegmentReader,
    ) -> tantivy::Result<ResolvedWord<'a>> {
        let mut resolved = ResolvedWord {
            word,
            terms: Vec::new(),
            n_postings: 0,
            n_exact_postings: 0,
            with_extra: false,
        };
        resolved.add_terms(reader, false)?;
        Ok(resolved)
    }

    /// The matching documents of one segment, in doc id order, with their scores: the
    /// union of the readings', each document with its best reading's score.
    fn matches(&self, reader: &SegmentReader) -> tantivy::Result<(Vec<DocId>, Vec<Score>)> {
        // Each word is resolved once, when a reading first needs it.
        let mut resolved: Vec<Option<ResolvedWord>> = self.words.iter().map(|_| None).collect();
        // Padded to whole blocks, so that the scan reads whole blocks only.
        let n_bytes = (reader.max_doc() as usize).next_multiple_of(SCAN_BLOCK_BYTES);
        let mut scratch = Scratch {
            level: Vec::new(),
            n_bytes,
            dirty: false,
        };
        let mut best: Option<(Vec<DocId>, Vec<Score>)> = None;
        'readings: for reading in self.readings.iter() {
            // Within the allowance first. A word matching nothing there can still match
            // beyond it, when it is the reading's only such word and has extra alternatives.
            let mut n_unmatched = 0;
            for &idx in reading {
                if resolved[idx].is_none() {
                    resolved[idx] = Some(Self::resolve(&self.words[idx], reader)?);
                }
                if resolved[idx].as_ref().is_none_or(|w| w.n_postings == 0) {
                    n_unmatched += 1;
                    let has_extra = self.words[idx].alternatives.iter().any(|a| a.extra);
                    if n_unmatched > 1 || !has_extra {
                        continue 'readings;
                    }
                }
            }
            // A word may go beyond its allowance only where every other word matches
            // exactly: its widest automata are walked only when each of them has an exact
            // match in this segment.
            let n_inexact = reading
                .iter()
                .filter(|&&idx| {
                    resolved[idx]
                        .as_ref()
                        .is_none_or(|w| w.n_exact_postings == 0)
                })
                .count();
            for &idx in reading {
                let Some(word) = resolved[idx].as_mut() else {
                    continue;
                };
                let others_inexact = n_inexact - usize::from(word.n_exact_postings == 0);
                if others_inexact == 0 && !word.with_extra {
                    word.add_terms(reader, true)?;
                }
            }
            if reading
                .iter()
                .any(|&idx| resolved[idx].as_ref().is_none_or(|w| w.n_postings == 0))
            {
                continue;
            }
            let words: Vec<&ResolvedWord> = reading
                .iter()
                .filter_map(|&idx| resolved[idx].as_ref())
                .collect();
            let found = self.reading_matches(words, &mut scratch)?;
            best = Some(match best {
                None => found,
                Some(previous) => union_best(previous, found),
            });
        }
        Ok(best.unwrap_or_default())
    }

    /// The documents matching every word of one reading within the typo budget.
    fn reading_matches(
        &self,
        mut words: Vec<&ResolvedWord>,
        scratch: &mut Scratch,
    ) -> tantivy::Result<(Vec<DocId>, Vec<Score>)> {
        // Rarest word first: it selects the candidates, the others only filter them.
        words.sort_by_key(|w| w.n_postings);
        let Some((first, rest)) = words.split_first() else {
            return Ok((Vec::new(), Vec::new()));
        };
        let mut docs: Vec<DocId> = Vec::new();
        let mut scores: Vec<Score> = Vec::new();
        let mut budgets: Vec<Budget> = Vec::new();
        if first.n_postings.saturating_mul(SPARSE_RATIO) <= scratch.n_bytes as u64 {
            // Few postings (a rare name, a merged pair): sorting them beats clearing and
            // scanning a byte per document.
            for (doc, tag) in first.sorted_tags()? {
                docs.push(doc);
                scores.push(first.score(tag));
                budgets.push(Budget::default().spend(first.alternative(tag)));
            }
        } else {
            let level = scratch.clean();
            first.fill(level)?;
            Self::scan(first, level, &mut docs, &mut scores, &mut budgets);
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
                let level = scratch.clean();
                word.fill(level)?;
                docs.iter()
                    .map(|&doc| level.get(doc as usize).copied().unwrap_or(0))
                    .collect()
            };
            let mut kept = 0;
            for i in 0..docs.len() {
                let tag = tags.get(i).copied().unwrap_or(0);
                if tag == 0 {
                    continue;
                }
                let budget = budgets[i].spend(word.alternative(tag));
                if !budget.allows() {
                    continue;
                }
                docs[kept] = docs[i];
                scores[kept] = scores[i] + word.score(tag);
                budgets[kept] = budget;
                kept += 1;
            }
            docs.truncate(kept);
            scores.truncate(kept);
            budgets.truncate(kept);
        }
        Ok((docs, scores))
    }

    /// The documents with a tag in `level`, in order, with the score and budget of `first`.
    fn scan(
        first: &ResolvedWord,
        level: &[u8],
        docs: &mut Vec<DocId>,
        scores: &mut Vec<Score>,
        budgets: &mut Vec<Budget>,
    ) {
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
                    budgets.push(Budget::default().spend(first.alternative(bytes[byte])));
                    set &= set - 1;
                }
            }
        }
    }
}

/// The union of two doc-sorted match lists, each document with the higher of its scores.
fn union_best(
    (a_docs, a_scores): (Vec<DocId>, Vec<Score>),
    (b_docs, b_scores): (Vec<DocId>, Vec<Score>),
) -> (Vec<DocId>, Vec<Score>) {
    if b_docs.is_empty() {
        return (a_docs, a_scores);
    }
    if a_docs.is_empty() {
        return (b_docs, b_scores);
    }
    let mut docs = Vec::with_capacity(a_docs.len() + b_docs.len());
    let mut scores = Vec::with_capacity(docs.capacity());
    let (mut i, mut j) = (0, 0);
    while i < a_docs.len() || j < b_docs.len() {
        let a = a_docs.get(i).copied().unwrap_or(TERMINATED);
        let b = b_docs.get(j).copied().unwrap_or(TERMINATED);
        if a < b {
            docs.push(a);
            scores.push(a_scores[i]);
            i += 1;
        } else if b < a {
            docs.push(b);
            scores.push(b_scores[j]);
            j += 1;
        } else {
            docs.push(a);
            scores.push(a_scores[i].max(b_scores[j]));
            i += 1;
            j += 1;
        }
    }
    (docs, scores)
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
    fn the_budget_allows_one_extra_slip_only_when_all_else_is_exact() {
        let field = Field::from_field_id(0);
        let alternative = |inexact, extra| Alternative {
            field,
            matcher: Matcher::Exact(Term::from_field_text(field, "x")),
            score: 1.0,
            inexact,
            extra,
        };
        let (exact, typo, beyond) = (
            alternative(false, false),
            alternative(true, false),
            alternative(true, true),
        );
        let spend = |alternatives: &[&Alternative]| {
            alternatives
                .iter()
                .fold(Budget::default(), |b, a| b.spend(Some(a)))
        };
        assert!(spend(&[&typo, &typo, &typo]).allows());
        assert!(spend(&[&beyond]).allows());
        assert!(spend(&[&exact, &beyond, &exact]).allows());
        assert!(!spend(&[&typo, &beyond]).allows());
        assert!(!spend(&[&beyond, &beyond]).allows());
    }

    #[test]
    fn readings_are_united_with_each_document_s_best_score() {
        let united = union_best(
            (vec![1, 4, 9], vec![10.0, 20.0, 30.0]),
            (vec![2, 4, 12], vec![5.0, 25.0, 1.0]),
        );
        assert_eq!(united.0, [1, 2, 4, 9, 12]);
        assert_eq!(united.1, [10.0, 5.0, 25.0, 30.0, 1.0]);
        let one = (vec![3], vec![1.0]);
        assert_eq!(union_best(one.clone(), (vec![], vec![])), one);
        assert_eq!(union_best((vec![], vec![]), one.clone()), one);
    }

    #[test]
    fn alternatives_are_sorted_best_first() {
        let field = Field::from_field_id(0);
        let alternative = |score| Alternative {
            field,
            matcher: Matcher::Exact(Term::from_field_text(field, "x")),
            score,
            inexact: false,
            extra: false,
        };
        let word = WordMatch::new(vec![alternative(1.0), alternative(25.0), alternative(15.0)]);
        let scores: Vec<Score> = word.alternatives.iter().map(|a| a.score).collect();
        assert_eq!(scores, [25.0, 15.0, 1.0]);
        // Beyond the allowance comes last, whatever its score.
        let beyond = Alternative {
            extra: true,
            inexact: true,
            ..alternative(40.0)
        };
        let word = WordMatch::new(vec![beyond, alternative(1.0)]);
        let scores: Vec<Score> = word.alternatives.iter().map(|a| a.score).collect();
        assert_eq!(scores, [1.0, 40.0]);
    }
}
