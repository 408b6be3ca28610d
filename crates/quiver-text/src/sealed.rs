//! A sealed segment's text index: one tantivy index directory, written once at seal time.
//!
//! ```text
//!   text.<field>/            a tantivy index with exactly one tantivy segment
//!     meta.json, .managed.json, <uuid>.{idx,term,fieldnorm,fast,store,pos?}
//!   tantivy schema:  text  TEXT, tokenizer "quiver" (the field's Analyzer), freqs, no positions
//!                    row   u64 FAST   (the Quiver row; verified == tantivy doc id on open)
//!                    len   u64 FAST   (exact number of terms, the BM25 document length)
//! ```
//!
//! The writer is tantivy's single-segment writer, so tantivy doc id `d` is Quiver row `d`;
//! [`SealedText::open`] checks that (one segment, `max_doc == rows`, `row[d] == d`) and refuses
//! an index that does not satisfy it. Integrity of the files (length, checksum) is the storage
//! layer's job, as for every other segment file.

use crate::analyzer::Analyzer;
use crate::bm25::TextSource;
use crate::TextError;
use std::path::Path;
use tantivy::directory::MmapDirectory;
use tantivy::postings::Postings;
use tantivy::schema::{Field, IndexRecordOption, NumericOptions, TextFieldIndexing, TextOptions};
use tantivy::tokenizer::{TextAnalyzer, TokenizerManager};
use tantivy::{DocSet, Index, IndexBuilder, ReloadPolicy, Searcher, TantivyDocument, Term};

const TOKENIZER: &str = "quiver";
/// Memory the single-segment writer may use before it spills (it never splits the segment).
const WRITER_BUDGET: usize = 64 << 20;

fn tantivy_err(path: &Path) -> impl Fn(tantivy::TantivyError) -> TextError + '_ {
    move |e| TextError::Tantivy {
        path: path.display().to_string(),
        msg: e.to_string(),
    }
}

struct Fields {
    text: Field,
    row: Field,
    len: Field,
}

fn schema() -> (tantivy::schema::Schema, Fields) {
    let mut b = tantivy::schema::Schema::builder();
    let indexing = TextFieldIndexing::default()
        .set_tokenizer(TOKENIZER)
        .set_index_option(IndexRecordOption::WithFreqs);
    let text = b.add_text_field(
        "text",
        TextOptions::default().set_indexing_options(indexing),
    );
    let row = b.add_u64_field("row", NumericOptions::default().set_fast());
    let len = b.add_u64_field("len", NumericOptions::default().set_fast());
    (b.build(), Fields { text, row, len })
}

fn tokenizers(analyzer: &Analyzer) -> TokenizerManager {
    // tantivy looks up a tokenizer for every field, fast fields included ("default").
    let m = TokenizerManager::default();
    m.register(TOKENIZER, TextAnalyzer::from(analyzer.tantivy()));
    m
}

/// An open sealed text index.
pub struct SealedText {
    searcher: Searcher,
    field: Field,
    lens: Vec<u32>,
    terms: usize,
}

impl std::fmt::Debug for SealedText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedText")
            .field("rows", &self.lens.len())
            .field("terms", &self.terms)
            .finish()
    }
}

impl SealedText {
    /// Writes a text index of `texts` (row `i` = `texts[i]`) into the empty or missing directory
    /// `dir`. The caller fsyncs and checksums the files it leaves there.
    pub fn write<S: AsRef<str>>(
        dir: &Path,
        analyzer: &Analyzer,
        texts: &[S],
    ) -> Result<(), TextError> {
        std::fs::create_dir_all(dir).map_err(|e| TextError::Io {
            path: dir.display().to_string(),
            source: e,
        })?;
        let (schema, f) = schema();
        let mmap = MmapDirectory::open(dir).map_err(|e| TextError::Tantivy {
            path: dir.display().to_string(),
            msg: e.to_string(),
        })?;
        let mut w = IndexBuilder::new()
            .schema(schema)
            .tokenizers(tokenizers(analyzer))
            .single_segment_index_writer::<TantivyDocument>(mmap, WRITER_BUDGET)
            .map_err(tantivy_err(dir))?;
        for (row, t) in texts.iter().enumerate() {
            let t = t.as_ref();
            let mut d = TantivyDocument::default();
            d.add_text(f.text, t);
            d.add_u64(f.row, row as u64);
            d.add_u64(f.len, analyzer.analyze(t).len() as u64);
            w.add_document(d).map_err(tantivy_err(dir))?;
        }
        w.finalize().map_err(tantivy_err(dir))?;
        Ok(())
    }

    /// Opens the index in `dir`, which must hold exactly `rows` documents in row order.
    pub fn open(dir: &Path, analyzer: &Analyzer, rows: usize) -> Result<SealedText, TextError> {
        let corrupt = |msg: String| TextError::Corrupt {
            path: dir.display().to_string(),
            msg,
        };
        let mmap = MmapDirectory::open(dir).map_err(|e| TextError::Tantivy {
            path: dir.display().to_string(),
            msg: e.to_string(),
        })?;
        let index = Index::open(mmap).map_err(tantivy_err(dir))?;
        index
            .tokenizers()
            .register(TOKENIZER, TextAnalyzer::from(analyzer.tantivy()));
        let (_, f) = schema();
        let s = index.schema();
        for (name, want) in [("text", f.text), ("row", f.row), ("len", f.len)] {
            if s.get_field(name).ok() != Some(want) {
                return Err(corrupt(format!("tantivy schema lacks field {name:?}")));
            }
        }
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(tantivy_err(dir))?;
        let searcher = reader.searcher();
        let segs = searcher.segment_readers();
        let (lens, terms) = match segs {
            [] if rows == 0 => (Vec::new(), 0),
            [seg] => {
                if seg.max_doc() as usize != rows || seg.num_docs() as usize != rows {
                    return Err(corrupt(format!(
                        "{} documents for {rows} rows",
                        seg.max_doc()
                    )));
                }
                let ff = seg.fast_fields();
                let row_col = ff.u64("row").map_err(tantivy_err(dir))?;
                let len_col = ff.u64("len").map_err(tantivy_err(dir))?;
                let mut lens = Vec::with_capacity(rows);
                for d in 0..rows as u32 {
                    if row_col.first(d) != Some(d as u64) {
                        return Err(corrupt(format!(
                            "tantivy doc {d} holds row {:?}",
                            row_col.first(d)
                        )));
                    }
                    let len = len_col
                        .first(d)
                        .ok_or_else(|| corrupt(format!("doc {d} has no length")))?;
                    lens.push(
                        u32::try_from(len).map_err(|_| corrupt(format!("doc {d} length {len}")))?,
                    );
                }
                let terms = seg
                    .inverted_index(f.text)
                    .map_err(tantivy_err(dir))?
                    .terms()
                    .num_terms();
                (lens, terms)
            }
            many => {
                return Err(corrupt(format!(
                    "{} tantivy segments, expected exactly one",
                    many.len()
                )))
            }
        };
        Ok(SealedText {
            searcher,
            field: f.text,
            lens,
            terms,
        })
    }

    /// Distinct terms in the index.
    pub fn terms(&self) -> usize {
        self.terms
    }

    /// Sum of all rows' lengths (deleted rows included).
    pub fn total_len(&self) -> u64 {
        self.lens.iter().map(|&l| l as u64).sum()
    }
}

impl TextSource for SealedText {
    fn rows(&self) -> usize {
        self.lens.len()
    }

    fn doc_len(&self, row: u32) -> u32 {
        self.lens.get(row as usize).copied().unwrap_or(0)
    }

    fn postings(&self, term: &str, f: &mut dyn FnMut(u32, u32)) -> Result<(), TextError> {
        let io = |e: std::io::Error| TextError::Io {
            path: "tantivy postings".into(),
            source: e,
        };
        let t = Term::from_field_text(self.field, term);
        for seg in self.searcher.segment_readers() {
            let inv = seg
                .inverted_index(self.field)
                .map_err(|e| TextError::Tantivy {
                    path: "tantivy inverted index".into(),
                    msg: e.to_string(),
                })?;
            if let Some(mut p) = inv
                .read_postings(&t, IndexRecordOption::WithFreqs)
                .map_err(io)?
            {
                let mut d = p.doc();
                while d != tantivy::TERMINATED {
                    f(d, p.term_freq());
                    d = p.advance();
                }
            }
        }
        Ok(())
    }
}
