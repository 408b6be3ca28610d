//! The mutable segment's text index: an in-memory inverted index fed by the same [`Analyzer`] as
//! the sealed (tantivy) indexes, so a document scores the same before and after it is sealed.

use crate::analyzer::Analyzer;
use crate::bm25::TextSource;
use crate::TextError;
use std::collections::HashMap;

/// An append-only in-memory inverted index: row `i` is the `i`-th text pushed.
#[derive(Debug, Default, Clone)]
pub struct MemText {
    postings: HashMap<String, Vec<(u32, u32)>>,
    lens: Vec<u32>,
}

impl MemText {
    /// An empty index.
    pub fn new() -> MemText {
        MemText::default()
    }

    /// Indexes `text` as the next row and returns its row number.
    pub fn push(&mut self, analyzer: &Analyzer, text: &str) -> u32 {
        let row = self.lens.len() as u32;
        let terms = analyzer.analyze(text);
        self.lens.push(terms.len() as u32);
        let mut counts: HashMap<String, u32> = HashMap::new();
        for t in terms {
            *counts.entry(t).or_default() += 1;
        }
        for (t, tf) in counts {
            self.postings.entry(t).or_default().push((row, tf));
        }
        row
    }

    /// Distinct terms.
    pub fn terms(&self) -> usize {
        self.postings.len()
    }

    /// The distinct terms.
    pub fn term_list(&self) -> impl Iterator<Item = &str> {
        self.postings.keys().map(|k| k.as_str())
    }
}

impl TextSource for MemText {
    fn rows(&self) -> usize {
        self.lens.len()
    }

    fn doc_len(&self, row: u32) -> u32 {
        self.lens.get(row as usize).copied().unwrap_or(0)
    }

    fn postings(&self, term: &str, f: &mut dyn FnMut(u32, u32)) -> Result<(), TextError> {
        if let Some(list) = self.postings.get(term) {
            for &(r, tf) in list {
                f(r, tf);
            }
        }
        Ok(())
    }
}
