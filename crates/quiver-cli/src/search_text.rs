//! `quiver search`: flags -> one engine [`Query`] -> `Collection::query` -> printed hits.
//!
//! Every mode (dense, bm25, hybrid, multi with `--multi FIELD`, funnel with `--funnel`) is a
//! preset of the engine's plan model; this file only maps flags and prints. Flags that do not
//! apply to the mode that runs are rejected, never silently dropped.

use crate::ops::{open_db_read, print_hits, SearchArgs};
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use quiver::query::plan::Fusion;
use quiver::{Collection, Mode, Query, QueryResult};
use quiver_bench::eval::FusionArg;
use serde_json::{json, Value};
use std::path::Path;

/// What `quiver search` runs (`--multi FIELD` and `--funnel` pick the other two modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// k-NN on a dense field (a query text is embedded with the field's model).
    Dense,
    /// BM25 on a text field.
    Bm25,
    /// Dense and BM25 candidates, fused.
    Hybrid,
}

/// Flags of text and hybrid search (flattened into `quiver search`).
#[derive(Args, Debug, Clone)]
pub struct TextSearchArgs {
    /// dense | bm25 | hybrid (default: dense if the collection has a dense field with a model,
    /// else bm25 if it has a text field).
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// Text field for BM25 (default: the only one).
    #[arg(long)]
    pub text_field: Option<String>,
    /// Fusion for --mode hybrid [default: rrf].
    #[arg(long, value_enum)]
    pub fusion: Option<FusionArg>,
    /// k of reciprocal rank fusion [default: 60].
    #[arg(long)]
    pub rrf_k: Option<f32>,
    /// Weight of the dense list in fusion [default: 1].
    #[arg(long)]
    pub dense_weight: Option<f32>,
    /// Weight of the BM25 list in fusion [default: 1].
    #[arg(long)]
    pub bm25_weight: Option<f32>,
    /// Candidates taken from each source before fusion (default: max(k, 100)); with --multi,
    /// MUVERA candidates reranked per segment.
    #[arg(long)]
    pub candidates: Option<usize>,
}

impl TextSearchArgs {
    /// The fusion these flags ask for, if any flag of fusion is given.
    fn fusion(&self) -> Option<Fusion> {
        if self.fusion.is_none()
            && self.rrf_k.is_none()
            && self.dense_weight.is_none()
            && self.bm25_weight.is_none()
        {
            return None;
        }
        let weights = vec![
            self.dense_weight.unwrap_or(1.0),
            self.bm25_weight.unwrap_or(1.0),
        ];
        // `--rrf-k` with a score fusion is rejected by `build_query` before this runs.
        let k = self.rrf_k.unwrap_or(quiver::DEFAULT_RRF_K);
        Some(self.fusion.unwrap_or(FusionArg::Rrf).fusion(k, weights))
    }
}

/// The engine query for `quiver search`'s flags.
pub fn build_query(a: &SearchArgs) -> Result<Query> {
    let t = &a.text;
    if a.text.rrf_k.is_some() && matches!(t.fusion, Some(FusionArg::Minmax | FusionArg::Zscore)) {
        bail!("--rrf-k applies to --fusion rrf only");
    }
    let mode = match (&a.multi, a.funnel, t.mode) {
        (Some(_), true, _) => bail!("--multi and --funnel cannot be combined"),
        (Some(_), false, Some(m)) => bail!(
            "--multi runs a multi-vector search; it cannot be combined with --mode {}",
            mode_name(m)
        ),
        (None, true, Some(m)) if m != ModeArg::Dense => bail!(
            "--funnel runs the dense field's funnel; it cannot be combined with --mode {}",
            mode_name(m)
        ),
        (Some(_), false, None) => Some(Mode::Multi),
        (None, true, _) => Some(Mode::Funnel),
        (None, false, m) => m.map(|m| match m {
            ModeArg::Dense => Mode::Dense,
            ModeArg::Bm25 => Mode::Bm25,
            ModeArg::Hybrid => Mode::Hybrid,
        }),
    };
    let raw_vector = match (&a.vector, &a.vector_file) {
        (Some(v), _) => Some(v.clone()),
        (None, Some(p)) => {
            Some(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
        }
        (None, None) => None,
    };
    let (vector, vectors) = match (&raw_vector, mode) {
        (None, _) => (None, None),
        (Some(v), Some(Mode::Multi)) => (None, Some(parse_sets(v)?)),
        (Some(v), _) => (Some(parse_vector(v)?), None),
    };
    if a.query.is_none() && vector.is_none() && vectors.is_none() {
        bail!("give a query text, or the query vector as --vector '[...]' or --vector-file FILE");
    }
    if a.query.is_some() && raw_vector.is_some() && mode != Some(Mode::Hybrid) {
        bail!("give exactly one of: query text, --vector, --vector-file (both only with --mode hybrid, where the text serves BM25)");
    }
    let filter = match &a.filter {
        Some(s) => {
            let v: Value =
                serde_json::from_str(s).map_err(|e| anyhow!("--filter is not valid JSON: {e}"))?;
            quiver::Filter::from_json(&v).context("--filter")?;
            Some(v)
        }
        None => None,
    };
    Ok(Query {
        text: a.query.clone(),
        vector,
        vectors,
        mode,
        field: a.field.clone(),
        text_field: t.text_field.clone(),
        multi_field: a.multi.clone(),
        filter,
        limit: a.k,
        offset: 0,
        ef: a.ef,
        exact: a.exact,
        candidates: t.candidates,
        fusion: t.fusion(),
        shortlist: a.shortlist,
        ball_carving: a.ball_carving,
        with_payload: true,
        plan: None,
    })
}

fn mode_name(m: ModeArg) -> &'static str {
    match m {
        ModeArg::Dense => "dense",
        ModeArg::Bm25 => "bm25",
        ModeArg::Hybrid => "hybrid",
    }
}

/// `quiver search`.
pub fn run(db: &Path, as_json: bool, a: SearchArgs) -> Result<()> {
    let q = build_query(&a)?;
    let d = open_db_read(db)?;
    let c: Collection = d.collection(&a.collection)?;
    let res = c.query(&q)?;
    print_result(&res, as_json, a.explain)
}

/// Prints a query's hits as a table (or JSON), with the per-stage report when asked.
pub fn print_result(res: &QueryResult, as_json: bool, explain: bool) -> Result<()> {
    if as_json {
        let mut v = json!({"hits": res.hits, "took_ms": res.took_ms, "mode": res.mode.name()});
        if explain {
            v["explain"] = serde_json::to_value(&res.explain)?;
        }
        if !res.pending.is_empty() {
            v["pending"] = json!(res.pending);
        }
        println!("{v}");
        return Ok(());
    }
    print_hits(&res.hits);
    if explain {
        print_explain(&res.explain);
    }
    for (field, n) in &res.pending {
        eprintln!("field {field}: {n} documents not backfilled yet (not searchable through it)");
    }
    eprintln!(
        "{} hits in {:.2} ms ({})",
        res.hits.len(),
        res.took_ms,
        res.mode
    );
    Ok(())
}

/// One line per plan stage, and one per segment under each source.
pub fn print_explain(stages: &[quiver::query::plan::StageReport]) {
    for s in stages {
        let top = s.top_score.map_or("-".to_string(), |x| format!("{x:.5}"));
        println!(
            "  {:<48} in {:>7} out {:>7} top {:>9} {:>8} us",
            s.stage, s.candidates_in, s.candidates_out, top, s.micros
        );
        for p in &s.segments {
            println!(
                "      {:<24} rows {:>8} allowed {:>8} {:<12} {} us",
                p.segment, p.rows, p.allowed, p.method, p.micros
            );
        }
    }
}

fn parse_vector(text: &str) -> Result<Vec<f32>> {
    Ok(serde_json::from_str::<Vec<f64>>(text.trim())
        .map_err(|e| anyhow!("query vector must be a JSON array of numbers: {e}"))?
        .into_iter()
        .map(|x| x as f32)
        .collect())
}

fn parse_sets(text: &str) -> Result<Vec<Vec<f32>>> {
    let v: Value = serde_json::from_str(text.trim()).map_err(|e| {
        anyhow!("multi-vector query must be a JSON array of arrays of numbers: {e}")
    })?;
    quiver::document::parse_vector_sets(&v)
        .map_err(|e| anyhow!("multi-vector query must be a JSON array of arrays of numbers: {e}"))
}
