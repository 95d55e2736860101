//! The one error type of this crate: bad input (the caller answers 400) apart from
//! internal failures of the index (the caller answers 500 and logs).

/// Everything that can go wrong in `boxoffice-search`.
///
/// [`SearchError::is_bad_input`] tells the two families apart; the API maps errors to HTTP
/// status in one place and should use it rather than matching variants.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// `limit` outside `1..=max`.
    #[error("limit must be between 1 and {max}, got {limit}")]
    InvalidLimit { limit: usize, max: usize },

    /// The text query is longer than [`crate::MAX_QUERY_CHARS`].
    #[error("query is {n_chars} characters long, at most {max} allowed")]
    QueryTooLong { n_chars: usize, max: usize },

    /// The text query has more words than [`crate::MAX_QUERY_TERMS`].
    #[error("query has {n_terms} words, at most {max} allowed")]
    TooManyTerms { n_terms: usize, max: usize },

    /// A filter value is unusable (too long, control characters, ...).
    #[error("invalid {filter} filter: {reason}")]
    InvalidFilter {
        filter: &'static str,
        reason: &'static str,
    },

    /// `from_ms` is after `to_ms`.
    #[error("invalid date range: from_ms {from_ms} is after to_ms {to_ms}")]
    InvalidDateRange { from_ms: i64, to_ms: i64 },

    /// The cursor was not produced by this crate for this query.
    #[error("invalid cursor: {0}")]
    InvalidCursor(&'static str),

    /// A document handed to the index breaks a limit (empty or oversized id, ...).
    #[error("invalid document: {0}")]
    InvalidDocument(String),

    /// Writer sizing outside the accepted range (a configuration error).
    #[error("invalid index options: {0}")]
    InvalidOptions(String),

    /// The directory holds an index with another schema (an older version of this crate):
    /// the node should delete the directory and rebuild from the catalog.
    #[error("incompatible index on disk: {0}")]
    IncompatibleIndex(String),

    /// The commit payload on disk is not one this crate wrote.
    #[error("unreadable commit payload: {0:?}")]
    CorruptPayload(String),

    /// The index writer lock was poisoned by a panic on another thread.
    #[error("index writer is unusable after a panic on another thread")]
    WriterPoisoned,

    /// tantivy failed (I/O, corrupted segment, lock held by another writer, ...).
    #[error("index error: {0}")]
    Index(#[from] tantivy::TantivyError),

    /// Creating the index directory failed.
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
}

impl SearchError {
    /// True when the caller sent something invalid (HTTP 400); false for internal errors.
    pub fn is_bad_input(&self) -> bool {
        match self {
            SearchError::InvalidLimit { .. }
            | SearchError::QueryTooLong { .. }
            | SearchError::TooManyTerms { .. }
            | SearchError::InvalidFilter { .. }
            | SearchError::InvalidDateRange { .. }
            | SearchError::InvalidCursor(_)
            | SearchError::InvalidDocument(_) => true,
            SearchError::InvalidOptions(_)
            | SearchError::IncompatibleIndex(_)
            | SearchError::CorruptPayload(_)
            | SearchError::WriterPoisoned
            | SearchError::Index(_)
            | SearchError::Io(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_and_internal_errors_are_told_apart() {
        assert!(SearchError::InvalidLimit { limit: 0, max: 100 }.is_bad_input());
        assert!(SearchError::InvalidCursor("not hex").is_bad_input());
        assert!(!SearchError::WriterPoisoned.is_bad_input());
        assert!(!SearchError::CorruptPayload("x".into()).is_bad_input());
    }

    #[test]
    fn messages_are_lowercase_without_trailing_punctuation() {
        let errors = [
            SearchError::InvalidLimit { limit: 0, max: 100 }.to_string(),
            SearchError::QueryTooLong {
                n_chars: 300,
                max: 256,
            }
            .to_string(),
            SearchError::InvalidCursor("malformed").to_string(),
            SearchError::WriterPoisoned.to_string(),
        ];
        for message in errors {
            assert!(message.starts_with(|c: char| c.is_lowercase()), "{message}");
            assert!(!message.ends_with('.'), "{message}");
        }
        assert_eq!(
            SearchError::InvalidLimit { limit: 0, max: 100 }.to_string(),
            "limit must be between 1 and 100, got 0"
        );
    }
}
