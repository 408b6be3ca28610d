//! Analyzers: text in, index terms out.
//!
//! ```text
//!   text ─► tokenizer (standard: UAX#29 words | simple: alphanumeric runs)
//!        ─► English possessive "'s" removed (standard tokenizer only, as Lucene)
//!        ─► lowercase (optional) ─► drop tokens over 255 bytes
//!        ─► stop words (none | english: Lucene's 33-word list) ─► stemmer (none | porter | english)
//! ```
//!
//! One [`Analyzer`] serves every place a text is turned into terms: sealed segments (registered in
//! the tantivy index as its tokenizer, [`Analyzer::tantivy`]), the in-memory index of the mutable
//! segment, and queries. The defaults reproduce Pyserini's `DefaultEnglishAnalyzer` (Lucene's
//! `StandardTokenizer`, `EnglishPossessiveFilter`, `LowerCaseFilter`, `StopFilter` with
//! `EnglishAnalyzer.ENGLISH_STOP_WORDS_SET`, `PorterStemFilter`).

use serde::{Deserialize, Serialize};
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};
use unicode_segmentation::UnicodeSegmentation;

/// Lucene's English stop words (`EnglishAnalyzer.ENGLISH_STOP_WORDS_SET`, 33 words), the list
/// Pyserini and Elasticsearch's `english` analyzer use.
pub const LUCENE_ENGLISH_STOP_WORDS: [&str; 33] = [
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with",
];

/// Tokens longer than this (in bytes) are dropped (Lucene's `StandardTokenizer` default limit).
pub const MAX_TOKEN_BYTES: usize = 255;

/// How text is split into tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenizerKind {
    /// Unicode word boundaries (UAX #29), as Lucene's `StandardTokenizer`: `3.5`, `don't` and
    /// `e.g` stay one token; an English possessive `'s` is then removed.
    #[default]
    Standard,
    /// Maximal runs of alphanumeric characters (tantivy's `SimpleTokenizer`).
    Simple,
}

/// Stemming algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StemmerKind {
    /// No stemming.
    None,
    /// Martin Porter's original algorithm (1980), as Lucene's `PorterStemFilter` (Pyserini's
    /// default). Snowball's `porter` implementation.
    #[default]
    Porter,
    /// Snowball English ("Porter2", tantivy's `Stemmer(English)`): fixes some of Porter's
    /// over-stemming (e.g. `generously` → `generous`, not `gener`); a different vocabulary, so
    /// BM25 numbers move by about ±0.005 nDCG on BEIR sets.
    English,
}

/// Stop-word list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopwordsKind {
    /// Keep every token.
    None,
    /// Lucene's 33 English stop words ([`LUCENE_ENGLISH_STOP_WORDS`]).
    #[default]
    English,
}

/// A text field's analyzer, as written in schemas (every key optional):
/// `{ tokenizer = "standard", lowercase = true, stopwords = "english", stemmer = "porter" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyzerSpec {
    /// Tokenizer.
    #[serde(default)]
    pub tokenizer: TokenizerKind,
    /// Lowercase tokens (before stop words and stemming).
    #[serde(default = "yes")]
    pub lowercase: bool,
    /// Stop words removed.
    #[serde(default)]
    pub stopwords: StopwordsKind,
    /// Stemmer.
    #[serde(default)]
    pub stemmer: StemmerKind,
}

fn yes() -> bool {
    true
}

impl Default for AnalyzerSpec {
    fn default() -> Self {
        AnalyzerSpec {
            tokenizer: TokenizerKind::default(),
            lowercase: true,
            stopwords: StopwordsKind::default(),
            stemmer: StemmerKind::default(),
        }
    }
}

/// A built analyzer (cheap to clone and to share between threads).
#[derive(Clone)]
pub struct Analyzer {
    spec: AnalyzerSpec,
    stemmer: Option<frostem::Stemmer>,
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyzer")
            .field("spec", &self.spec)
            .finish()
    }
}

fn strip_possessive(word: &str) -> &str {
    for suffix in [
        "'s",
        "'S",
        "\u{2019}s",
        "\u{2019}S",
        "\u{FF07}s",
        "\u{FF07}S",
    ] {
        if let Some(stem) = word.strip_suffix(suffix) {
            return stem;
        }
    }
    word
}

impl Analyzer {
    /// Builds the analyzer `spec` describes.
    pub fn new(spec: AnalyzerSpec) -> Analyzer {
        let stemmer = match spec.stemmer {
            StemmerKind::None => None,
            StemmerKind::Porter => Some(frostem::Stemmer::new(frostem::Algorithm::Porter)),
            StemmerKind::English => Some(frostem::Stemmer::new(frostem::Algorithm::English)),
        };
        Analyzer { spec, stemmer }
    }

    /// Its description.
    pub fn spec(&self) -> AnalyzerSpec {
        self.spec
    }

    fn finish(&self, raw: &str, out: &mut Vec<String>) {
        let token = if self.spec.lowercase {
            raw.to_lowercase()
        } else {
            raw.to_string()
        };
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return;
        }
        if self.spec.stopwords == StopwordsKind::English
            && LUCENE_ENGLISH_STOP_WORDS.contains(&token.as_str())
        {
            return;
        }
        match &self.stemmer {
            Some(s) => out.push(s.stem(&token).into_owned()),
            None => out.push(token),
        }
    }

    /// The terms of `text`, in order (a term occurring twice appears twice).
    pub fn analyze(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        match self.spec.tokenizer {
            TokenizerKind::Standard => {
                for w in text.unicode_words() {
                    self.finish(strip_possessive(w), &mut out);
                }
            }
            TokenizerKind::Simple => {
                for w in text
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty())
                {
                    self.finish(w, &mut out);
                }
            }
        }
        out
    }

    /// Distinct terms of a query with their counts, in order of first occurrence. A term that
    /// occurs twice in a query counts twice in the score (as Pyserini's bag-of-words queries).
    pub fn query_terms(&self, text: &str) -> Vec<(String, u32)> {
        let mut terms: Vec<(String, u32)> = Vec::new();
        for t in self.analyze(text) {
            match terms.iter_mut().find(|(x, _)| *x == t) {
                Some((_, n)) => *n += 1,
                None => terms.push((t, 1)),
            }
        }
        terms
    }

    /// This analyzer as a tantivy tokenizer, to register in a tantivy index.
    pub fn tantivy(&self) -> AnalyzerTokenizer {
        AnalyzerTokenizer {
            analyzer: self.clone(),
        }
    }
}

/// An [`Analyzer`] wrapped as a tantivy [`Tokenizer`].
#[derive(Clone, Debug)]
pub struct AnalyzerTokenizer {
    analyzer: Analyzer,
}

/// The token stream of [`AnalyzerTokenizer`]: the analyzed terms, positions counted from 0.
pub struct AnalyzedTokens {
    tokens: std::vec::IntoIter<String>,
    token: Token,
}

impl Tokenizer for AnalyzerTokenizer {
    type TokenStream<'a> = AnalyzedTokens;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> AnalyzedTokens {
        AnalyzedTokens {
            tokens: self.analyzer.analyze(text).into_iter(),
            token: Token::default(),
        }
    }
}

impl TokenStream for AnalyzedTokens {
    fn advance(&mut self) -> bool {
        match self.tokens.next() {
            Some(t) => {
                self.token.position = self.token.position.wrapping_add(1);
                self.token.text = t;
                true
            }
            None => false,
        }
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn an(spec: AnalyzerSpec) -> Analyzer {
        Analyzer::new(spec)
    }

    #[test]
    fn default_is_pyserini_like() {
        let a = an(AnalyzerSpec::default());
        assert_eq!(
            a.analyze("The patient's Running speeds, e.g. 3.5 km/h; don't generalize!"),
            vec!["patient", "run", "speed", "e.g", "3.5", "km", "h", "don't", "gener"]
        );
    }

    #[test]
    fn options_change_terms() {
        let none = AnalyzerSpec {
            tokenizer: TokenizerKind::Simple,
            lowercase: false,
            stopwords: StopwordsKind::None,
            stemmer: StemmerKind::None,
        };
        assert_eq!(
            an(none).analyze("The Cats' running"),
            vec!["The", "Cats", "running"]
        );
        let lower = AnalyzerSpec {
            lowercase: true,
            ..none
        };
        assert_eq!(an(lower).analyze("The Cats"), vec!["the", "cats"]);
        let stop = AnalyzerSpec {
            stopwords: StopwordsKind::English,
            ..lower
        };
        assert_eq!(an(stop).analyze("The Cats"), vec!["cats"]);
        let porter = AnalyzerSpec {
            stemmer: StemmerKind::Porter,
            ..stop
        };
        let english = AnalyzerSpec {
            stemmer: StemmerKind::English,
            ..stop
        };
        // Porter over-stems where Porter2 does not.
        assert_eq!(an(porter).analyze("generously"), vec!["gener"]);
        assert_eq!(an(english).analyze("generously"), vec!["generous"]);
        assert_eq!(an(porter).analyze("cats running"), vec!["cat", "run"]);
    }

    #[test]
    fn query_terms_count_repeats() {
        let a = an(AnalyzerSpec::default());
        assert_eq!(
            a.query_terms("cat cats dog the cat"),
            vec![("cat".to_string(), 3), ("dog".to_string(), 1)]
        );
    }

    #[test]
    fn stop_list_is_lucenes() {
        assert_eq!(LUCENE_ENGLISH_STOP_WORDS.len(), 33);
        let mut s = LUCENE_ENGLISH_STOP_WORDS.to_vec();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), 33);
    }

    #[test]
    fn spec_parses_with_defaults_and_rejects_unknown_keys() {
        let s: AnalyzerSpec = serde_json::from_str(r#"{"stemmer": "english"}"#).unwrap();
        assert_eq!(s.stemmer, StemmerKind::English);
        assert!(s.lowercase);
        assert!(serde_json::from_str::<AnalyzerSpec>(r#"{"stemer": "english"}"#).is_err());
        assert!(serde_json::from_str::<AnalyzerSpec>(r#"{"stemmer": "klingon"}"#).is_err());
    }
}
