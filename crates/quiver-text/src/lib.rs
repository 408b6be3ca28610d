//! # quiver-text: BM25 over tantivy
//!
//! *Here is a query text: which documents contain its terms, and how well do they match?*
//!
//! - [`Analyzer`] (configured by [`AnalyzerSpec`]): text to terms — tokenizer, lowercase, Lucene's
//!   English stop words, Porter or Snowball-English stemming. Defaults follow Pyserini.
//! - [`SealedText`]: a sealed segment's tantivy index (doc id == row), [`MemText`]: the mutable
//!   segment's in-memory inverted index. Both are [`TextSource`]s: postings and document lengths.
//! - [`search`]: BM25 ([`Bm25Params`], `k1`/`b` configurable) over many segments with statistics
//!   (N, df, average length) summed over the rows visible in the snapshot, so scores do not depend
//!   on segmentation or on deletes not yet compacted; a filter limits what is returned.
//!
//! ```
//! use quiver_text::{search, Analyzer, AnalyzerSpec, Bm25Params, MemText, SegmentView};
//! let analyzer = Analyzer::new(AnalyzerSpec::default());
//! let mut idx = MemText::new();
//! for t in ["Quokkas like leaves", "The cat likes fish", "A quokka smiles"] {
//!     idx.push(&analyzer, t);
//! }
//! let all = |_: u32| true;
//! let view = SegmentView { source: &idx, visible: &all, allowed: &all };
//! let (hits, stats) = search(&[view], &analyzer.query_terms("quokka"), Bm25Params::default(), 10, None).unwrap();
//! assert_eq!(stats.docs, 3);
//! assert_eq!(hits[0].hits.len(), 2); // rows 0 and 2 (Porter: "quokkas" -> "quokka")
//! ```

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod analyzer;
mod bm25;
mod memory;
mod sealed;

pub use analyzer::{
    AnalyzedTokens, Analyzer, AnalyzerSpec, AnalyzerTokenizer, StemmerKind, StopwordsKind,
    TokenizerKind, LUCENE_ENGLISH_STOP_WORDS, MAX_TOKEN_BYTES,
};
pub use bm25::{
    idf, search, stats, term_score, Bm25Params, Bm25Stats, CorpusStats, SegmentHits, SegmentView,
    TextSource,
};
pub use memory::MemText;
pub use sealed::SealedText;

/// Errors of text indexing and BM25 search.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// An OS-level I/O error.
    #[error("{path}: {source}")]
    Io {
        /// Path or object.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// tantivy failed.
    #[error("{path}: tantivy: {msg}")]
    Tantivy {
        /// Index directory.
        path: String,
        /// tantivy's message.
        msg: String,
    },
    /// A text index does not have the expected shape.
    #[error("corrupt text index {path}: {msg}")]
    Corrupt {
        /// Index directory.
        path: String,
        /// What is wrong.
        msg: String,
    },
    /// BM25 parameters out of range.
    #[error("{0}")]
    InvalidParams(String),
}
