//! `quiver search --mode bm25|hybrid`: BM25 over a text field, and hybrid search (dense + BM25
//! candidates fused by reciprocal rank or normalised scores). `--mode dense` is `ops.rs`.

use crate::ops::SearchArgs;
use anyhow::{anyhow, bail, Result};
use clap::{Args, ValueEnum};
use quiver::query::plan::{Fusion, Norm};
use quiver::{
    bm25_search, fuse_hits, search, Bm25Request, Collection, Hit, SearchRequest, SearchResult,
    Strategy,
};
use serde_json::{json, Value};
use std::time::Instant;

/// What `quiver search` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// k-NN on a dense field (a query text is embedded with the field's model).
    Dense,
    /// BM25 on a text field.
    Bm25,
    /// Dense and BM25 candidates, fused.
    Hybrid,
}

/// Fusion method for `--mode hybrid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FusionArg {
    /// Reciprocal rank fusion (`--rrf-k`).
    Rrf,
    /// Min-max normalised scores, weighted sum.
    Minmax,
    /// Z-score normalised scores, weighted sum.
    Zscore,
}

/// Flags of text and hybrid search (flattened into `quiver search`).
#[derive(Args, Debug, Clone)]
pub struct TextSearchArgs {
    /// dense | bm25 | hybrid (default: dense if the collection has a dense field with a model,
    /// else bm25 if it has a text field).
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Text field for BM25 (default: the only one).
    #[arg(long)]
    pub text_field: Option<String>,
    /// Fusion for --mode hybrid.
    #[arg(long, value_enum, default_value = "rrf")]
    pub fusion: FusionArg,
    /// k of reciprocal rank fusion.
    #[arg(long, default_value_t = quiver::DEFAULT_RRF_K)]
    pub rrf_k: f32,
    /// Weight of the dense list in fusion.
    #[arg(long, default_value_t = 1.0)]
    pub dense_weight: f32,
    /// Weight of the BM25 list in fusion.
    #[arg(long, default_value_t = 1.0)]
    pub bm25_weight: f32,
    /// Candidates taken from each source before fusion (default: max(k, 100)).
    #[arg(long)]
    pub candidates: Option<usize>,
}

/// The plan fusion for the `--fusion`, `--rrf-k` and weight flags.
pub fn fusion_of(f: FusionArg, rrf_k: f32, weights: Vec<f32>) -> Fusion {
    match f {
        FusionArg::Rrf => Fusion::Rrf { k: rrf_k, weights },
        FusionArg::Minmax => Fusion::Score {
            norm: Norm::Minmax,
            weights,
        },
        FusionArg::Zscore => Fusion::Score {
            norm: Norm::Zscore,
            weights,
        },
    }
}

/// The mode to run: the flag, or the default for this collection and query.
pub fn resolve_mode(c: &Collection, a: &SearchArgs) -> Mode {
    if let Some(m) = a.text.mode {
        return m;
    }
    let schema = c.schema();
    let has_model = schema
        .dense_fields()
        .iter()
        .any(|f| f.embedding.model.is_some());
    let has_vector = a.vector.is_some() || a.vector_file.is_some();
    if a.query.is_some() && !has_model && !has_vector && !schema.text_fields().is_empty() {
        Mode::Bm25
    } else {
        Mode::Dense
    }
}

/// One source's candidates, for --explain.
struct Source {
    name: &'static str,
    result: SearchResult,
    millis: f64,
}

fn dense_source(c: &Collection, a: &SearchArgs, text: &str, k: usize) -> Result<Source> {
    let t = Instant::now();
    let schema = c.schema();
    let (vector, field) = match (&a.vector, &a.vector_file) {
        (Some(v), _) => (crate::ops::parse_vector(v)?, a.field.clone()),
        (None, Some(p)) => (
            crate::ops::parse_vector(&std::fs::read_to_string(p)?)?,
            a.field.clone(),
        ),
        (None, None) => {
            let field = match &a.field {
                Some(f) => schema
                    .dense(f)
                    .ok_or_else(|| anyhow!("unknown dense field {f:?}"))?,
                None => schema
                    .dense_fields()
                    .into_iter()
                    .find(|f| f.embedding.model.is_some())
                    .ok_or_else(|| {
                        anyhow!(
                            "hybrid search needs a dense field with a model (or --vector); {:?} has none",
                            c.name()
                        )
                    })?,
            };
            let v = crate::text::embed_query(&field, text, &mut crate::text::Models::default())?;
            (v, Some(field.name))
        }
    };
    let mut req = SearchRequest::new(vector, k);
    req.field = field;
    req.ef = a.ef;
    req.filter = a
        .filter
        .as_deref()
        .map(crate::ops::parse_filter)
        .transpose()?;
    req.strategy = if a.exact {
        Strategy::Exact
    } else {
        Strategy::Auto
    };
    let result = search(&c.snapshot(), &req)?;
    Ok(Source {
        name: "dense",
        result,
        millis: t.elapsed().as_secs_f64() * 1e3,
    })
}

fn bm25_source(c: &Collection, a: &SearchArgs, text: &str, k: usize) -> Result<Source> {
    let t = Instant::now();
    let mut req = Bm25Request::new(text, k);
    req.field = a.text.text_field.clone();
    req.filter = a
        .filter
        .as_deref()
        .map(crate::ops::parse_filter)
        .transpose()?;
    let result = bm25_search(&c.snapshot(), &req)?;
    Ok(Source {
        name: "bm25",
        result,
        millis: t.elapsed().as_secs_f64() * 1e3,
    })
}

/// Runs `--mode bm25` or `--mode hybrid`.
pub fn run(c: &Collection, as_json: bool, a: &SearchArgs, mode: Mode) -> Result<()> {
    let Some(text) = a.query.as_deref() else {
        bail!(
            "--mode {} needs a query text",
            format!("{mode:?}").to_lowercase()
        );
    };
    let t = Instant::now();
    let (hits, sources): (Vec<Hit>, Vec<Source>) = match mode {
        Mode::Bm25 => {
            let s = bm25_source(c, a, text, a.k)?;
            (s.result.hits.clone(), vec![s])
        }
        Mode::Hybrid => {
            let n = a.text.candidates.unwrap_or(100).max(a.k);
            let dense = dense_source(c, a, text, n)?;
            let bm25 = bm25_source(c, a, text, n)?;
            let weights = vec![a.text.dense_weight, a.text.bm25_weight];
            let method = fusion_of(a.text.fusion, a.text.rrf_k, weights);
            let fused = fuse_hits(
                &[dense.result.hits.clone(), bm25.result.hits.clone()],
                &method,
                a.k,
            )?;
            (fused, vec![dense, bm25])
        }
        Mode::Dense => bail!("dense search is handled by ops::search_cmd"),
    };
    let took = t.elapsed().as_secs_f64() * 1e3;
    if as_json {
        let mut v =
            json!({"hits": hits, "took_ms": took, "mode": format!("{mode:?}").to_lowercase()});
        if a.explain {
            v["explain"] = Value::Array(
                sources
                    .iter()
                    .map(|s| {
                        json!({"source": s.name, "candidates": s.result.hits.len(), "ms": s.millis,
                               "segments": s.result.explain})
                    })
                    .collect(),
            );
        }
        println!("{v}");
    } else {
        crate::ops::print_hits(&hits);
        if a.explain {
            for s in &sources {
                println!(
                    "  source {:<6} {:>5} candidates in {:.2} ms",
                    s.name,
                    s.result.hits.len(),
                    s.millis
                );
                for p in &s.result.explain {
                    println!(
                        "    {:<24} rows {:>8} allowed {:>8} {:<6} {} us",
                        p.segment, p.rows, p.allowed, p.method, p.micros
                    );
                }
            }
        }
        eprintln!("{} hits in {took:.2} ms", hits.len());
    }
    Ok(())
}
