//! BM25 over many segments with collection-wide statistics.
//!
//! ```text
//!   query terms ─► pass 1, every segment: visible rows ─► N (docs with ≥ 1 term), Σ lengths
//!                                          postings ∧ visible ─► df per term (kept decoded)
//!               ─► idf(t) = ln(1 + (N − df + 0.5) / (df + 0.5)),  avgdl = Σ lengths / N
//!               ─► pass 2, every segment: Σ_t qtf·idf(t)·tf / (tf + k1·(1 − b + b·dl/avgdl))
//!                                          over allowed rows (visible ∧ filter) ─► top k
//! ```
//!
//! This is Lucene's `BM25Similarity` (Lucene ≥ 8 drops the constant `(k1 + 1)` factor; the order
//! is the same) with two deliberate differences: the document length `dl` is the exact number of
//! terms (Lucene rounds it to a one-byte norm), and every statistic — N, df, average length — is
//! taken over the documents *visible in the snapshot*, summed over all segments. So a document's
//! score depends neither on how the collection is split into segments nor on deleted rows that
//! compaction has not dropped yet. A query term occurring `qtf` times weighs `qtf` times.
//!
//! A corpus split over several collections (the shards of a sharded collection) scores as one:
//! [`stats`] gives each part's N, total length and df, their sum ([`CorpusStats`]) goes back into
//! [`search`] on every part, and the parts' top lists merge by score.

use crate::TextError;
use quiver_index::RowFilter;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// BM25 parameters. The defaults are Pyserini's (`k1 = 0.9`, `b = 0.4`, tuned on MS MARCO), which
/// are also what its BEIR "flat" baselines use; Lucene's and Elasticsearch's own defaults are
/// `k1 = 1.2`, `b = 0.75`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bm25Params {
    /// Term-frequency saturation (≥ 0; 0 means binary term presence).
    #[serde(default = "default_k1")]
    pub k1: f32,
    /// Length normalisation (0 = none, 1 = full).
    #[serde(default = "default_b")]
    pub b: f32,
}

fn default_k1() -> f32 {
    0.9
}
fn default_b() -> f32 {
    0.4
}

impl Default for Bm25Params {
    fn default() -> Self {
        Bm25Params {
            k1: default_k1(),
            b: default_b(),
        }
    }
}

impl Bm25Params {
    /// Checks the ranges; the error names the parameter and value.
    pub fn validate(&self) -> Result<(), TextError> {
        if !(self.k1.is_finite() && self.k1 >= 0.0) {
            return Err(TextError::InvalidParams(format!(
                "bm25 k1 must be a finite number >= 0, got {}",
                self.k1
            )));
        }
        if !(0.0..=1.0).contains(&self.b) {
            return Err(TextError::InvalidParams(format!(
                "bm25 b must be in [0, 1], got {}",
                self.b
            )));
        }
        Ok(())
    }
}

/// The read side of one segment's text index.
pub trait TextSource: Sync {
    /// Rows in the segment (live or not).
    fn rows(&self) -> usize;
    /// Number of terms of `row` (0 for a row without text).
    fn doc_len(&self, row: u32) -> u32;
    /// Calls `f(row, term_frequency)` for every row containing `term`, in any order.
    fn postings(&self, term: &str, f: &mut dyn FnMut(u32, u32)) -> Result<(), TextError>;
}

/// One segment as a BM25 search sees it.
pub struct SegmentView<'a> {
    /// Its text index.
    pub source: &'a dyn TextSource,
    /// Rows visible in the snapshot: they make the statistics.
    pub visible: &'a dyn RowFilter,
    /// Rows that may be returned (visible and matching the filter).
    pub allowed: &'a dyn RowFilter,
}

/// Collection-wide statistics of one query.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Bm25Stats {
    /// Visible documents with at least one term in the field.
    pub docs: u64,
    /// Sum of their lengths.
    pub total_len: u64,
    /// Average length (`total_len / docs`).
    pub avg_len: f64,
    /// Per query term: (term, query count, document frequency over visible documents).
    pub terms: Vec<(String, u32, u64)>,
}

/// Statistics of a corpus larger than one collection: the documents of every shard of a sharded
/// collection, summed. Given to [`search`], they replace the collection's own N, total length and
/// document frequencies, so each shard scores as one collection holding every document would.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusStats {
    /// Documents with at least one term in the field.
    pub docs: u64,
    /// Sum of their lengths.
    pub total_len: u64,
    /// Documents containing each query term (terms as the field's analyzer produces them).
    #[serde(default)]
    pub df: std::collections::BTreeMap<String, u64>,
}

impl CorpusStats {
    /// Adds another part's statistics (another shard's [`Bm25Stats`]).
    pub fn add(&mut self, part: &Bm25Stats) {
        self.docs += part.docs;
        self.total_len += part.total_len;
        for (t, _, df) in &part.terms {
            *self.df.entry(t.clone()).or_default() += df;
        }
    }
}

/// Inverse document frequency, Lucene's (always positive).
pub fn idf(docs: u64, df: u64) -> f64 {
    (1.0 + (docs as f64 - df as f64 + 0.5) / (df as f64 + 0.5)).ln()
}

/// One term's contribution for a document (`tf` ≥ 1 occurrences, length `dl`).
#[inline]
pub fn term_score(idf: f64, tf: u32, dl: u32, avg_len: f64, p: Bm25Params) -> f64 {
    let (k1, b) = (p.k1 as f64, p.b as f64);
    let tf = tf as f64;
    let norm = if avg_len > 0.0 {
        1.0 - b + b * dl as f64 / avg_len
    } else {
        1.0
    };
    idf * tf / (tf + k1 * norm)
}

/// Replaces the segments' own statistics by `corpus`'s, after checking that it covers them.
fn use_corpus(
    stats: &mut Bm25Stats,
    df: &mut [u64],
    terms: &[(String, u32)],
    corpus: &CorpusStats,
) -> Result<(), TextError> {
    let short = |what: String| {
        TextError::InvalidParams(format!(
            "bm25 corpus statistics: {what}; they must be summed over every part of the corpus, \
             this collection included"
        ))
    };
    if corpus.docs < stats.docs || corpus.total_len < stats.total_len {
        return Err(short(format!(
            "docs {} and total_len {} are below this collection's own {} and {}",
            corpus.docs, corpus.total_len, stats.docs, stats.total_len
        )));
    }
    for ((t, _), d) in terms.iter().zip(df.iter_mut()) {
        match corpus.df.get(t) {
            Some(&g) if g >= *d && g <= corpus.docs => *d = g,
            Some(&g) => {
                return Err(short(format!(
                    "df of term {t:?} is {g}, outside [{d}, {}] (this collection's own df, \
                     the corpus's docs)",
                    corpus.docs
                )))
            }
            None => return Err(short(format!("no df for query term {t:?}"))),
        }
    }
    stats.docs = corpus.docs;
    stats.total_len = corpus.total_len;
    stats.avg_len = if corpus.docs > 0 {
        corpus.total_len as f64 / corpus.docs as f64
    } else {
        0.0
    };
    Ok(())
}

/// One segment's result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SegmentHits {
    /// Top rows and scores, best first (ties: lower row first).
    pub hits: Vec<(u32, f32)>,
    /// Rows that matched at least one term and were allowed.
    pub matched: usize,
    /// Microseconds spent on this segment (both passes).
    pub micros: u128,
}

/// Pass 1 over every segment: N and total length over visible rows, and each query term's
/// postings restricted to visible rows (kept for scoring) and document frequency.
struct Collected {
    stats: Bm25Stats,
    /// Per segment, per term: (row, tf).
    postings: Vec<Vec<Vec<(u32, u32)>>>,
    df: Vec<u64>,
    micros: Vec<u128>,
}

fn collect(views: &[SegmentView<'_>], terms: &[(String, u32)]) -> Result<Collected, TextError> {
    let mut stats = Bm25Stats::default();
    let mut micros = vec![0u128; views.len()];
    for (v, us) in views.iter().zip(micros.iter_mut()) {
        let t = Instant::now();
        for r in 0..v.source.rows() as u32 {
            if v.visible.allows(r) {
                let dl = v.source.doc_len(r);
                if dl > 0 {
                    stats.docs += 1;
                    stats.total_len += dl as u64;
                }
            }
        }
        *us += t.elapsed().as_micros();
    }
    stats.avg_len = if stats.docs > 0 {
        stats.total_len as f64 / stats.docs as f64
    } else {
        0.0
    };
    let mut postings: Vec<Vec<Vec<(u32, u32)>>> = Vec::with_capacity(views.len());
    let mut df = vec![0u64; terms.len()];
    for (v, us) in views.iter().zip(micros.iter_mut()) {
        let t0 = Instant::now();
        let mut per_term = Vec::with_capacity(terms.len());
        for (i, (t, _)) in terms.iter().enumerate() {
            let mut list = Vec::new();
            v.source.postings(t, &mut |r, tf| {
                if v.visible.allows(r) {
                    list.push((r, tf));
                }
            })?;
            df[i] += list.len() as u64;
            per_term.push(list);
        }
        postings.push(per_term);
        *us += t0.elapsed().as_micros();
    }
    Ok(Collected {
        stats,
        postings,
        df,
        micros,
    })
}

fn with_terms(mut stats: Bm25Stats, terms: &[(String, u32)], df: &[u64]) -> Bm25Stats {
    stats.terms = terms
        .iter()
        .zip(df)
        .map(|((t, q), &d)| (t.clone(), *q, d))
        .collect();
    stats
}

/// The statistics a search of `terms` over these segments would use (N, total length, df per
/// term over visible rows), without scoring: what one shard contributes to a [`CorpusStats`].
pub fn stats(views: &[SegmentView<'_>], terms: &[(String, u32)]) -> Result<Bm25Stats, TextError> {
    let c = collect(views, terms)?;
    Ok(with_terms(c.stats, terms, &c.df))
}

/// Top `k` rows of every segment for the query `terms` (from [`crate::Analyzer::query_terms`]),
/// best first, plus the statistics used. Rows that score 0 (match no term) are never returned.
///
/// With `corpus`, N, the average length and the document frequencies are the corpus's, not
/// these segments' (see [`CorpusStats`]); it must cover every query term and at least these
/// segments' own counts, or the error says which figure falls short.
pub fn search(
    views: &[SegmentView<'_>],
    terms: &[(String, u32)],
    params: Bm25Params,
    k: usize,
    corpus: Option<&CorpusStats>,
) -> Result<(Vec<SegmentHits>, Bm25Stats), TextError> {
    params.validate()?;
    let Collected {
        mut stats,
        postings,
        mut df,
        micros,
    } = collect(views, terms)?;
    if let Some(c) = corpus {
        use_corpus(&mut stats, &mut df, terms, c)?;
    }
    let idfs: Vec<f64> = df.iter().map(|&d| idf(stats.docs, d)).collect();
    let stats = with_terms(stats, terms, &df);
    let mut out = Vec::with_capacity(views.len());
    for ((v, per_term), us) in views.iter().zip(postings).zip(micros) {
        let t = Instant::now();
        // Dense accumulator; terms are added in query order, the same for every segmentation,
        // so equal documents get bit-identical scores.
        let mut acc = vec![0f64; v.source.rows()];
        let mut touched: Vec<u32> = Vec::new();
        for ((list, (_, qtf)), &w) in per_term.iter().zip(terms).zip(&idfs) {
            for &(r, tf) in list {
                if !v.allowed.allows(r) {
                    continue;
                }
                let s = &mut acc[r as usize];
                if *s == 0.0 {
                    touched.push(r);
                }
                *s += *qtf as f64 * term_score(w, tf, v.source.doc_len(r), stats.avg_len, params);
            }
        }
        let mut hits: Vec<(u32, f32)> = touched
            .into_iter()
            .map(|r| (r, acc[r as usize] as f32))
            .filter(|&(_, s)| s > 0.0)
            .collect();
        let by_score = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if hits.len() > k && k > 0 {
            hits.select_nth_unstable_by(k - 1, by_score);
        }
        let matched = hits.len();
        hits.truncate(k);
        hits.sort_by(by_score);
        out.push(SegmentHits {
            hits,
            matched,
            micros: us + t.elapsed().as_micros(),
        });
    }
    Ok((out, stats))
}
