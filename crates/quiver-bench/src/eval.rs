//! `quiver eval`: quality and cost of each retrieval mode on a BEIR-layout dataset.
//!
//! ```text
//!   DATASET ─► quiver_eval::beir::load (judged queries only)
//!      │
//!      ├─► documents {id, payload: {title, text}} ─► Collection::embed (the engine's document
//!      │        text rule and models, as at ingest; vectors cached: ~/.cache/quiver/eval)
//!      │        └─► Collection::upsert into a temporary collection (or --collection NAME,
//!      │            reused when it matches), flushed so that the indexes are sealed
//!      ├─► queries ─► PoolEncoder (the field's model and query prefix) ─► query vectors
//!      └─► for each mode: Collection::query per judged query (depth = largest cut-off) ─► Run
//!                ─► quiver_eval::metrics::Evaluator (trec_eval semantics) ─► table / --json
//! ```
//!
//! Modes are listed in [`Mode`]; `--sweep` runs all of them into one table of quality against
//! cost (query latency, index memory).

pub(crate) mod cache;
mod compat;
mod report;

use crate::error::{data_err, invalid, BenchError, Context, Result};
use crate::progress::{bar, Bars};
use clap::{Args, ValueEnum};
use quiver::embedding::PoolEncoder;
use quiver::query::plan::{Fusion, Norm};
use quiver::{Collection, Database, DocId, Document, ModelPool, OpenOptions, Query, Schema};
use quiver_eval::beir::{self, BeirDataset, TextMode};
use quiver_eval::metrics::{Evaluator, Measure, Run, Scored, DEFAULT_MEASURES};
use report::{Header, ModeReport};
use serde_json::{json, Map};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// How hybrid's dense and BM25 lists merge (`--fusion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FusionArg {
    /// Reciprocal rank fusion (`--rrf-k`).
    Rrf,
    /// Min-max normalised scores, weighted sum.
    Minmax,
    /// Z-score normalised scores, weighted sum.
    Zscore,
}

impl FusionArg {
    /// The plan's fusion with RRF's `k` and per-list `weights` (dense, then BM25).
    pub fn fusion(self, rrf_k: f32, weights: Vec<f32>) -> Fusion {
        match self {
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
}

/// Options of `quiver eval`.
#[derive(Args, Debug, Clone)]
pub struct EvalOptions {
    /// BEIR-layout dataset folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv).
    pub dataset: PathBuf,
    /// Retrieval mode: dense (HNSW, the planner's choice), dense-exact (exact scan), bm25,
    /// hybrid (dense + BM25 fused), funnel (binary codes -> int8 codes -> f32).
    #[arg(long, default_value = "dense")]
    pub mode: String,
    /// Run every mode into one table of quality against cost.
    #[arg(long, conflicts_with = "mode")]
    pub sweep: bool,
    /// Embedding model (registry name or model directory) for dense modes.
    #[arg(long, default_value = "all-MiniLM-L6-v2")]
    pub model: String,
    /// Precision of the model's linear layers: f32 (exact, the default), bf16 or int8 (the
    /// field's model becomes `MODEL:PRECISION`).
    #[arg(long)]
    pub precision: Option<quiver_embed::Precision>,
    /// Qrels split (`qrels/<split>.tsv`).
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Keep the ingested collection under this name in --db (reused on later runs when its
    /// schema and documents match); default: a temporary collection, removed afterwards.
    #[arg(long)]
    pub collection: Option<String>,
    /// Documents retrieved per query (default: the largest metric cut-off).
    #[arg(short = 'k', long)]
    pub depth: Option<usize>,
    /// Measures, comma separated: ndcg@K, recall@K, p@K, map@K, mrr@K.
    #[arg(long, value_delimiter = ',')]
    pub metrics: Vec<String>,
    /// HNSW beam width for dense search (default: the field's ef, 128).
    #[arg(long)]
    pub ef: Option<usize>,
    /// Embed and index the document text only (default: title + " " + text).
    #[arg(long)]
    pub no_title: bool,
    /// Drop retrieved documents whose id equals the query id (BEIR's `ignore_identical_ids`,
    /// meant for datasets whose queries are corpus documents; off by default).
    #[arg(long)]
    pub ignore_identical_ids: bool,
    /// Evaluate only the first N judged queries (quick looks; the mean is over those N).
    #[arg(long)]
    pub max_queries: Option<usize>,
    /// Write the run (every query's retrieved documents and scores): `.json` as
    /// {"query": {"doc": score}} (pytrec_eval's input), anything else as a TREC run file.
    #[arg(long)]
    pub run_file: Option<PathBuf>,
    /// Write per-query values as JSON {"query": {"ndcg@10": ..}} to this file.
    #[arg(long)]
    pub per_query: Option<PathBuf>,
    /// Do not read or write the corpus embedding cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Hybrid: candidates taken from each source before fusion (default: max(depth, 100), as
    /// `quiver search --mode hybrid`).
    #[arg(long)]
    pub candidates: Option<usize>,
    /// Hybrid: k of reciprocal rank fusion.
    #[arg(long, default_value_t = quiver::DEFAULT_RRF_K)]
    pub rrf_k: f32,
    /// Hybrid: weight of the dense list.
    #[arg(long, default_value_t = 1.0)]
    pub dense_weight: f32,
    /// Hybrid: weight of the BM25 list.
    #[arg(long, default_value_t = 1.0)]
    pub bm25_weight: f32,
    /// Hybrid: how the dense and BM25 lists merge.
    #[arg(long, value_enum, default_value = "rrf")]
    pub fusion: FusionArg,
    /// Model migration: fit adapters from this new model's space to --model's (the old one) on
    /// samples of the corpus, and report new-model queries searching old-model vectors through
    /// each (Procrustes, ridge, relative representations) beside the old model and the corpus
    /// re-embedded by the new one. Exact search; the retrieval mode options do not apply.
    #[arg(long, value_name = "NEW_MODEL", conflicts_with_all = ["sweep", "collection"])]
    pub adapter: Option<String>,
    /// With --adapter: sample sizes (corpus texts embedded by both models) to fit on.
    #[arg(long, value_delimiter = ',', default_value = "250,1000,4000")]
    pub samples: Vec<usize>,
    /// With --adapter: seed of the sample draw.
    #[arg(long, default_value_t = 42)]
    pub sample_seed: u64,
}

/// A retrieval mode that `quiver eval` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Dense vectors, the planner's choice (HNSW graph on sealed segments).
    Dense,
    /// Dense vectors, exact scan of every document.
    DenseExact,
    /// BM25 on the `title text` field (Pyserini's defaults).
    Bm25,
    /// Dense (planner) and BM25 candidates fused by reciprocal rank fusion.
    Hybrid,
    /// The funnel preset: binary-code shortlist, int8 re-score, f32 re-score.
    Funnel,
}

impl Mode {
    /// Every mode, in sweep order.
    pub const ALL: &'static [Mode] = &[
        Mode::Dense,
        Mode::DenseExact,
        Mode::Bm25,
        Mode::Hybrid,
        Mode::Funnel,
    ];

    /// The name used by `--mode` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Dense => "dense",
            Mode::DenseExact => "dense-exact",
            Mode::Bm25 => "bm25",
            Mode::Hybrid => "hybrid",
            Mode::Funnel => "funnel",
        }
    }

    /// The mode called `s`.
    pub fn parse(s: &str) -> Result<Mode> {
        Mode::ALL
            .iter()
            .copied()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                BenchError::Invalid(format!(
                    "unknown --mode {s:?}; available: {}",
                    Mode::ALL
                        .iter()
                        .map(|m| m.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    fn needs_dense(self) -> bool {
        !matches!(self, Mode::Bm25)
    }
}

/// The dense field of evaluation collections.
const DENSE_FIELD: &str = "emb";
/// The BM25 field of evaluation collections.
const TEXT_FIELD: &str = "body";

/// Timings of the shared setup, in seconds.
#[derive(Debug, Default, Clone)]
pub(crate) struct Setup {
    load_s: f64,
    embed_corpus_s: f64,
    embed_cached: bool,
    ingest_s: f64,
    reused_collection: bool,
    embed_queries_s: f64,
    skipped_empty: usize,
}

/// Everything the modes run against.
struct Bench<'a> {
    ds: &'a BeirDataset,
    collection: Collection,
    /// Per judged query (`None`: the text could not be embedded; dense lists stay empty).
    query_vectors: Option<Vec<Option<Vec<f32>>>>,
    depth: usize,
    ef: Option<usize>,
    fusion: Fusion,
    candidates: usize,
}

/// The evaluation schema: a BM25 text field over `title` and `text` (joined with a space, the
/// analyzer and k1/b defaults of Pyserini), and with a model a cosine dense field (HNSW, binary and
/// int8 codes for the funnel) whose model and source fields are recorded, so the engine embeds
/// the documents and a kept collection answers `quiver search COLLECTION "text"` too.
fn eval_schema(model: Option<(&str, usize)>, text_mode: TextMode) -> Result<Schema> {
    let source = match text_mode {
        TextMode::TitleText => json!(["title", "text"]),
        TextMode::TextOnly => json!(["text"]),
    };
    let mut fields = Map::new();
    fields.insert(TEXT_FIELD.into(), json!({"type": "text", "source": source}));
    if let Some((model, dim)) = model {
        fields.insert(
            DENSE_FIELD.into(),
            json!({"type": "dense", "dim": dim, "metric": "cosine", "model": model, "embed": source,
                   "index": {"type": "hnsw", "m": 16, "ef_construction": 200},
                   "codecs": [{"type": "binary"}, {"type": "int8"}]}),
        );
    }
    Ok(Schema::parse(&json!({ "fields": fields }).to_string())?)
}

fn id_text(id: &DocId) -> String {
    match id {
        DocId::Str(s) => s.clone(),
        DocId::Int(i) => i.to_string(),
    }
}

fn parse_modes(a: &EvalOptions) -> Result<Vec<Mode>> {
    Ok(if a.sweep {
        Mode::ALL.to_vec()
    } else {
        vec![Mode::parse(&a.mode)?]
    })
}

fn parse_measures(a: &EvalOptions) -> Result<Vec<Measure>> {
    if a.metrics.is_empty() {
        return Ok(DEFAULT_MEASURES.to_vec());
    }
    Ok(a.metrics
        .iter()
        .map(|s| s.parse::<Measure>())
        .collect::<Result<_, _>>()?)
}

/// The dataset, judged queries only (`--max-queries` of them), documents without text left out.
fn load_dataset(a: &EvalOptions, text_mode: TextMode, setup: &mut Setup) -> Result<BeirDataset> {
    let t = Instant::now();
    let mut ds = beir::load(&a.dataset, &a.split)
        .with_context(|| format!("loading BEIR dataset {}", a.dataset.display()))?;
    if let Some(n) = a.max_queries {
        ds.queries.truncate(n.max(1));
    }
    // A document with no text cannot be found by any text retrieval mode, and the engine
    // refuses to embed it: it is left out.
    let before = ds.corpus.len();
    ds.corpus.retain(|d| !d.joined(text_mode).is_empty());
    setup.skipped_empty = before - ds.corpus.len();
    if setup.skipped_empty > 0 {
        ds.warnings.push(format!(
            "{} documents have no text and are left out",
            setup.skipped_empty
        ));
    }
    setup.load_s = t.elapsed().as_secs_f64();
    for w in &ds.warnings {
        eprintln!("warning: {}: {w}", ds.name);
    }
    Ok(ds)
}

/// `quiver eval`: every judged query of the dataset through `Collection::query` in each mode.
pub fn run(db: &Path, as_json: bool, a: EvalOptions) -> Result<()> {
    if let Some(new_model) = &a.adapter {
        return compat::run(as_json, &a, new_model);
    }
    let modes = parse_modes(&a)?;
    let evaluator = Evaluator::new(parse_measures(&a)?);
    let depth = a.depth.unwrap_or_else(|| evaluator.depth()).max(1);
    let text_mode = if a.no_title {
        TextMode::TextOnly
    } else {
        TextMode::TitleText
    };
    let mut setup = Setup::default();
    let ds = load_dataset(&a, text_mode, &mut setup)?;

    let needs_dense = modes.iter().any(|m| m.needs_dense());
    let pool = crate::data::model_pool(None);
    let model = crate::data::model_reference(&a.model, a.precision)?;
    let dim = match needs_dense {
        true => Some(pool.get(&model)?.info().dim),
        false => None,
    };
    let schema = eval_schema(dim.map(|d| (model.as_str(), d)), text_mode)?;

    // The collection: temporary, or named in --db and reused when it matches.
    let tmp;
    let open = |p: &Path| {
        let options = OpenOptions {
            pool: Some(pool.clone()),
            ..Default::default()
        };
        Database::open_with(p, options).with_context(|| format!("opening database {}", p.display()))
    };
    let database = match &a.collection {
        Some(_) => open(db)?,
        None => {
            tmp = tempfile::Builder::new()
                .prefix("quiver-eval-")
                .tempdir()
                .context("creating a temporary database")?;
            open(tmp.path())?
        }
    };
    let name = a.collection.clone().unwrap_or_else(|| "eval".into());
    let collection = if database.list_collections()?.contains(&name) {
        let c = database.collection(&name)?;
        check_reusable(&c, &schema, &ds, &name)?;
        setup.reused_collection = true;
        c
    } else {
        let c = database.create_collection(&name, &schema)?;
        ingest(&c, &ds, !a.no_cache, &mut setup)?;
        c
    };
    let query_vectors = match needs_dense {
        true => Some(embed_queries(&collection, &pool, &ds, &mut setup)?),
        false => None,
    };
    let bench = Bench {
        ds: &ds,
        collection,
        query_vectors,
        depth,
        ef: a.ef,
        fusion: a
            .fusion
            .fusion(a.rrf_k, vec![a.dense_weight, a.bm25_weight]),
        candidates: a.candidates.unwrap_or(100).max(depth),
    };

    let mut reports = Vec::new();
    for &mode in &modes {
        let (run, latencies_ms) = run_mode(&bench, mode, a.ignore_identical_ids)?;
        let eval = evaluator.evaluate(&ds.qrels, &run, ds.queries.iter().map(|q| q.id.as_str()));
        if modes.len() == 1 {
            if let Some(p) = &a.run_file {
                report::write_run(p, &run, mode)?;
            }
            if let Some(p) = &a.per_query {
                report::write_per_query(p, &eval)?;
            }
        }
        let query_embed_ms = match mode.needs_dense() {
            true => setup.embed_queries_s * 1e3 / ds.queries.len().max(1) as f64,
            false => 0.0,
        };
        reports.push(ModeReport {
            mode,
            index_bytes: report::index_bytes(&bench.collection, &database, &name, mode),
            eval,
            latencies_ms,
            query_embed_ms,
        });
    }
    if a.sweep && (a.run_file.is_some() || a.per_query.is_some()) {
        eprintln!("note: --run-file and --per-query are written for a single --mode only");
    }
    let head = Header {
        ds: &ds,
        model: needs_dense.then_some(model.as_str()),
        depth,
        setup: &setup,
        rss_peak_bytes: report::peak_rss_bytes(),
    };
    report::print(&head, &reports, as_json, a.sweep);
    Ok(())
}

/// A named collection is reused only when it was built for the same model and holds exactly the
/// dataset's documents.
fn check_reusable(c: &Collection, schema: &Schema, ds: &BeirDataset, name: &str) -> Result<()> {
    let have = c.schema().to_json();
    if have != schema.to_json() {
        return invalid!(
            "collection {name:?} exists with a different schema ({have}); drop it \
             (`quiver collection drop {name}`) or choose another --collection"
        );
    }
    let n = c.count(None)?;
    let mut missing = None;
    for d in &ds.corpus {
        if c.get(&DocId::Str(d.id.clone()))?.is_none() {
            missing = Some(d);
            break;
        }
    }
    if n != ds.corpus.len() || missing.is_some() {
        return invalid!(
            "collection {name:?} holds {n} documents, not the {} of {} (first missing: {:?}); \
             drop it or choose another --collection",
            ds.corpus.len(),
            ds.name,
            missing.map(|d| d.id.as_str()).unwrap_or("none")
        );
    }
    Ok(())
}

/// The corpus as engine documents: string ids, payload `title` and `text`.
fn documents(ds: &BeirDataset) -> Vec<Document> {
    ds.corpus
        .iter()
        .map(|d| {
            let mut doc = Document {
                id: Some(DocId::Str(d.id.clone())),
                ..Default::default()
            };
            doc.payload.insert("title".into(), d.title.clone().into());
            doc.payload.insert("text".into(), d.text.clone().into());
            doc
        })
        .collect()
}

/// Fills the dense vectors of `docs`: from the cache when it has them, else computed by the
/// engine ([`Collection::embed`], as `upsert` would) and cached. Without a dense field, nothing.
fn corpus_vectors(
    c: &Collection,
    docs: &mut [Document],
    use_cache: bool,
    setup: &mut Setup,
) -> Result<()> {
    let Some(field) = c.schema().dense(DENSE_FIELD) else {
        return Ok(());
    };
    let Some(model_name) = field.embedding.model.as_deref() else {
        return Ok(());
    };
    let model = c.pool().get(model_name)?;
    let texts = docs
        .iter()
        .map(|d| quiver::document::document_text(&field.embedding, &d.payload))
        .collect::<std::result::Result<Vec<String>, String>>()
        .map_err(BenchError::Data)?;
    let ids: Vec<String> = docs
        .iter()
        .filter_map(|d| d.id.as_ref())
        .map(id_text)
        .collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let key = cache::key(model.as_ref(), &id_refs, &texts);
    let dim = field.dim;
    let t = Instant::now();
    if use_cache {
        if let Some(v) = cache::load(&key, docs.len(), dim)? {
            for (d, v) in docs.iter_mut().zip(v) {
                d.vectors.insert(DENSE_FIELD.into(), v);
            }
            setup.embed_cached = true;
            setup.embed_corpus_s = t.elapsed().as_secs_f64();
            return Ok(());
        }
    }
    c.embed(docs).context("embedding the corpus")?;
    setup.embed_corpus_s = t.elapsed().as_secs_f64();
    if use_cache {
        let mut flat = Vec::with_capacity(docs.len() * dim);
        for d in docs.iter() {
            let v = d
                .vectors
                .get(DENSE_FIELD)
                .ok_or_else(|| data_err!("the engine left a document without a vector"))?;
            flat.extend_from_slice(v);
        }
        if let Err(e) = cache::store(&key, docs.len(), dim, &flat) {
            eprintln!("warning: could not cache corpus embeddings: {e}");
        }
    }
    Ok(())
}

/// Embeds (or reads the cached vectors of) the corpus, upserts it in durable batches, then seals
/// it so that the indexes are built.
fn ingest(c: &Collection, ds: &BeirDataset, use_cache: bool, setup: &mut Setup) -> Result<()> {
    c.set_progress(Arc::new(Bars::new()));
    let mut docs = documents(ds);
    corpus_vectors(c, &mut docs, use_cache, setup)?;
    let t = Instant::now();
    let pb = bar("ingesting", docs.len() as u64);
    while !docs.is_empty() {
        let rest = docs.split_off(docs.len().min(1000));
        let n = docs.len();
        c.upsert(std::mem::replace(&mut docs, rest))
            .with_context(|| format!("ingesting {} into the evaluation collection", ds.name))?;
        pb.inc(n as u64);
    }
    pb.finish_and_clear();
    // Seal on a one-thread pool: HNSW inserts run in parallel on the current rayon pool, and a
    // parallel build's graph depends on thread timing (SciFact dense nDCG@10 measured 0.6430 to
    // 0.6461 across runs on one machine). One thread makes the graph, and so every figure of an
    // evaluation, a function of the data and the seed alone.
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| data_err!("starting the sealing thread: {e}"))?;
    one.install(|| c.flush())
        .context("sealing the evaluation collection")?;
    setup.ingest_s = t.elapsed().as_secs_f64();
    Ok(())
}

/// Query vectors of every judged query, one text at a time as a search embeds it
/// ([`PoolEncoder`]: the field's model and query prefix).
fn embed_queries(
    c: &Collection,
    pool: &Arc<ModelPool>,
    ds: &BeirDataset,
    setup: &mut Setup,
) -> Result<Vec<Option<Vec<f32>>>> {
    let field = c
        .schema()
        .dense(DENSE_FIELD)
        .ok_or_else(|| data_err!("the evaluation collection has no dense field"))?;
    let encoder = PoolEncoder::new(pool.clone());
    let t = Instant::now();
    let pb = bar("embedding queries", ds.queries.len() as u64);
    let mut out = Vec::with_capacity(ds.queries.len());
    for q in &ds.queries {
        out.push(match encoder.dense(&field, &q.text) {
            Ok(v) => Some(v),
            Err(e) if q.text.trim().is_empty() => {
                eprintln!(
                    "warning: query {:?} has no text ({e}); its dense lists are empty",
                    q.id
                );
                None
            }
            Err(e) => return Err(e).with_context(|| format!("embedding query {:?}", q.id)),
        });
        pb.inc(1);
    }
    pb.finish_and_clear();
    setup.embed_queries_s = t.elapsed().as_secs_f64();
    Ok(out)
}

/// The engine query of judged query `qi` in `mode` (`None`: a dense mode without a vector).
fn query_of(b: &Bench, mode: Mode, qi: usize, text: &str) -> Option<Query> {
    let mut q = Query {
        limit: b.depth,
        with_payload: false,
        ..Default::default()
    };
    let vector = || {
        b.query_vectors
            .as_ref()
            .and_then(|v| v.get(qi).cloned().flatten())
    };
    match mode {
        Mode::Bm25 => {
            q.mode = Some(quiver::Mode::Bm25);
            q.text = Some(text.to_string());
            q.text_field = Some(TEXT_FIELD.into());
            return Some(q);
        }
        Mode::Dense | Mode::DenseExact => q.mode = Some(quiver::Mode::Dense),
        Mode::Hybrid => {
            q.mode = Some(quiver::Mode::Hybrid);
            q.text = Some(text.to_string());
            q.text_field = Some(TEXT_FIELD.into());
            q.candidates = Some(b.candidates);
            q.fusion = Some(b.fusion.clone());
        }
        Mode::Funnel => q.mode = Some(quiver::Mode::Funnel),
    }
    q.vector = Some(vector()?);
    q.field = Some(DENSE_FIELD.into());
    q.exact = mode == Mode::DenseExact;
    q.ef = b.ef;
    Some(q)
}

/// Runs every judged query in `mode` through `Collection::query`: the run and each query's
/// latency (ms).
fn run_mode(b: &Bench, mode: Mode, ignore_identical: bool) -> Result<(Run, Vec<f64>)> {
    let mut run = Run::new();
    let mut lat = Vec::with_capacity(b.ds.queries.len());
    let pb = bar(
        &format!("queries ({})", mode.name()),
        b.ds.queries.len() as u64,
    );
    for (qi, q) in b.ds.queries.iter().enumerate() {
        let t = Instant::now();
        let hits = match query_of(b, mode, qi, &q.text) {
            Some(query) => {
                b.collection
                    .query(&query)
                    .with_context(|| format!("query {:?} ({})", q.id, mode.name()))?
                    .hits
            }
            None => Vec::new(),
        };
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        let list = hits
            .iter()
            .map(|h| Scored::new(id_text(&h.id), h.score))
            .filter(|s| !(ignore_identical && s.doc == q.id))
            .collect();
        run.insert(q.id.clone(), list);
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok((run, lat))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_by_name() {
        for m in Mode::ALL {
            assert_eq!(Mode::parse(m.name()).ok(), Some(*m));
        }
        let e = Mode::parse("nope").expect_err("unknown").to_string();
        assert!(e.contains("dense"), "{e}");
    }

    #[test]
    fn hybrid_queries_carry_text_vector_and_fusion() {
        let schema = eval_schema(Some(("m", 2)), TextMode::TitleText).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path()).unwrap();
        let ds = BeirDataset {
            name: "t".into(),
            corpus: Vec::new(),
            queries: Vec::new(),
            qrels: Default::default(),
            unjudged_queries: 0,
            warnings: Vec::new(),
        };
        let b = Bench {
            ds: &ds,
            collection: db.create_collection("c", &schema).unwrap(),
            query_vectors: Some(vec![Some(vec![1.0, 0.0]), None]),
            depth: 10,
            ef: Some(64),
            fusion: FusionArg::Rrf.fusion(60.0, vec![1.0, 2.0]),
            candidates: 100,
        };
        let q = query_of(&b, Mode::Hybrid, 0, "quokkas").unwrap();
        let (_, plan) = q.to_plan(&schema).unwrap();
        assert_eq!(plan.prefetch.len(), 2);
        assert_eq!(plan.prefetch[0].limit, 100);
        assert!(query_of(&b, Mode::Dense, 1, "x").is_none());
        assert!(query_of(&b, Mode::Bm25, 1, "x").is_some());
        let q = query_of(&b, Mode::DenseExact, 0, "x").unwrap();
        assert!(q.exact && q.vector.is_some());
    }
}
