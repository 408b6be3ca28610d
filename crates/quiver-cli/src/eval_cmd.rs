//! `quiver eval`: quality and cost of each retrieval mode on a BEIR-layout dataset.
//!
//! ```text
//!   DATASET ─► quiver_eval::beir::load (judged queries only)
//!      │
//!      ├─► corpus text (title + " " + text) ─► model ─► vectors   (cached: ~/.cache/quiver/eval)
//!      │        └─► temporary collection (or --collection NAME, reused when it matches)
//!      ├─► queries ─► model ─► query vectors
//!      └─► for each mode: run every judged query (depth = largest cut-off) ─► Run
//!                ─► quiver_eval::metrics::Evaluator (trec_eval semantics) ─► table / --json
//! ```
//!
//! Modes are listed in [`Mode`]; `--sweep` runs all of them into one table of quality against
//! cost (query latency, index memory).

use crate::eval_cache;
use crate::progress::bar;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use quiver::{
    bm25_search, execute, fuse_hits, search, Bm25Request, Collection, Database, DocId, Document,
    Schema, SearchRequest, Strategy,
};
use quiver_embed::{EmbedOptions, Embedder};
use quiver_eval::beir::{self, BeirDataset, TextMode};
use quiver_eval::metrics::{Evaluation, Evaluator, Measure, Run, Scored, DEFAULT_MEASURES};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Arguments of `quiver eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
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
    pub fusion: crate::search_text::FusionArg,
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

    fn parse(s: &str) -> Result<Mode> {
        Mode::ALL
            .iter()
            .copied()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                anyhow!(
                    "unknown --mode {s:?}; available: {}",
                    Mode::ALL
                        .iter()
                        .map(|m| m.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
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
struct Setup {
    load_s: f64,
    embed_corpus_s: f64,
    embed_cached: bool,
    ingest_s: f64,
    reused_collection: bool,
    embed_queries_s: f64,
    skipped_empty: usize,
}

/// One mode's measured quality and cost.
struct ModeReport {
    mode: Mode,
    eval: Evaluation,
    latencies_ms: Vec<f64>,
    query_embed_ms: f64,
    index_bytes: Option<usize>,
}

/// Everything the modes run against.
struct Bench<'a> {
    ds: &'a BeirDataset,
    collection: Arc<Collection>,
    query_vectors: Option<Vec<Vec<f32>>>,
    depth: usize,
    ef: Option<usize>,
    fusion: quiver::query::plan::Fusion,
    candidates: usize,
}

/// The evaluation schema: a BM25 text field over `title` and `text` (joined with a space, the
/// analyzer and k1/b defaults of Pyserini), and with a model a cosine dense field (HNSW, binary and
/// int8 codes for the funnel) whose model and source fields are recorded, so a kept collection
/// answers `quiver search COLLECTION "text"` too.
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

/// `quiver eval`.
pub fn run(db: &Path, as_json: bool, a: EvalArgs) -> Result<()> {
    let modes: Vec<Mode> = if a.sweep {
        Mode::ALL.to_vec()
    } else {
        vec![Mode::parse(&a.mode)?]
    };
    let measures: Vec<Measure> = if a.metrics.is_empty() {
        DEFAULT_MEASURES.to_vec()
    } else {
        a.metrics
            .iter()
            .map(|s| s.parse::<Measure>())
            .collect::<Result<_, _>>()?
    };
    let evaluator = Evaluator::new(measures);
    let depth = a.depth.unwrap_or_else(|| evaluator.depth()).max(1);
    let text_mode = if a.no_title {
        TextMode::TextOnly
    } else {
        TextMode::TitleText
    };

    let mut setup = Setup::default();
    let t = Instant::now();
    let mut ds = beir::load(&a.dataset, &a.split)
        .with_context(|| format!("loading BEIR dataset {}", a.dataset.display()))?;
    if let Some(n) = a.max_queries {
        ds.queries.truncate(n.max(1));
    }
    // A document with no text cannot be found by any text retrieval mode, and static models
    // embed it as the zero vector, which cosine fields refuse: it is left out.
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

    let needs_dense = modes.iter().any(|m| m.needs_dense());
    let mut models = crate::text::Models::default();
    let model: Option<Arc<dyn Embedder>> = if needs_dense {
        Some(models.get(&a.model)?)
    } else {
        None
    };
    let schema = eval_schema(
        model.as_ref().map(|m| (a.model.as_str(), m.info().dim)),
        text_mode,
    )?;

    // The collection: temporary, or named in --db and reused when it matches.
    let tmp;
    let database = match &a.collection {
        Some(_) => crate::ops::open_db(db)?,
        None => {
            tmp = tempfile::Builder::new()
                .prefix("quiver-eval-")
                .tempdir()
                .context("creating a temporary database")?;
            Database::open(tmp.path())?
        }
    };
    let name = a.collection.clone().unwrap_or_else(|| "eval".into());
    let existing = database.list_collections()?.contains(&name);
    let collection = if existing {
        let c = database.collection(&name)?;
        check_reusable(&c, &schema, &ds, &name)?;
        setup.reused_collection = true;
        c
    } else {
        let c = database.create_collection(&name, &schema)?;
        let vectors = match &model {
            Some(m) => Some(corpus_vectors(
                m.as_ref(),
                &ds,
                text_mode,
                !a.no_cache,
                &mut setup,
            )?),
            None => None,
        };
        let t = Instant::now();
        ingest(&c, &ds, vectors)?;
        setup.ingest_s = t.elapsed().as_secs_f64();
        c
    };

    let query_vectors = match &model {
        Some(m) => {
            let t = Instant::now();
            let v = embed_queries(m.as_ref(), &ds)?;
            setup.embed_queries_s = t.elapsed().as_secs_f64();
            Some(v)
        }
        None => None,
    };
    let bench = Bench {
        ds: &ds,
        collection,
        query_vectors,
        depth,
        ef: a.ef,
        fusion: crate::search_text::fusion_of(
            a.fusion,
            a.rrf_k,
            vec![a.dense_weight, a.bm25_weight],
        ),
        candidates: a.candidates.unwrap_or(100).max(depth),
    };

    let mut reports = Vec::new();
    for &mode in &modes {
        let (run, latencies_ms) = run_mode(&bench, mode, a.ignore_identical_ids)?;
        let eval = evaluator.evaluate(&ds.qrels, &run, ds.queries.iter().map(|q| q.id.as_str()));
        if modes.len() == 1 {
            if let Some(p) = &a.run_file {
                write_run(p, &run, mode)?;
            }
            if let Some(p) = &a.per_query {
                write_per_query(p, &eval)?;
            }
        }
        let query_embed_ms = if mode.needs_dense() {
            setup.embed_queries_s * 1e3 / ds.queries.len().max(1) as f64
        } else {
            0.0
        };
        reports.push(ModeReport {
            mode,
            index_bytes: index_bytes(&bench.collection, &database, &name, mode),
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
        model: needs_dense.then_some(a.model.as_str()),
        depth,
        setup: &setup,
        rss_peak_bytes: peak_rss_bytes(),
    };
    if as_json {
        let rows: Vec<Value> = reports.iter().map(|r| report_json(&head, r)).collect();
        if a.sweep {
            let mut o = header_json(&head);
            o.insert("sweep".into(), Value::Array(rows));
            println!("{}", Value::Object(o));
        } else if let Some(row) = rows.into_iter().next() {
            println!("{row}");
        }
    } else {
        print_table(&head, &reports);
    }
    Ok(())
}

/// A named collection is reused only when it was built for the same model and holds exactly the
/// dataset's documents.
fn check_reusable(c: &Collection, schema: &Schema, ds: &BeirDataset, name: &str) -> Result<()> {
    let have = c.schema().to_json();
    if have != schema.to_json() {
        bail!(
            "collection {name:?} exists with a different schema ({have}); drop it \
             (`quiver collection drop {name}`) or choose another --collection"
        );
    }
    let n = c.count(None);
    let missing = ds
        .corpus
        .iter()
        .find(|d| c.get(&DocId::Str(d.id.clone())).is_none());
    if n != ds.corpus.len() || missing.is_some() {
        bail!(
            "collection {name:?} holds {n} documents, not the {} of {} (first missing: {:?}); \
             drop it or choose another --collection",
            ds.corpus.len(),
            ds.name,
            missing.map(|d| d.id.as_str()).unwrap_or("none")
        );
    }
    Ok(())
}

/// Corpus vectors in corpus order, from the cache when it has them.
fn corpus_vectors(
    model: &dyn Embedder,
    ds: &BeirDataset,
    text_mode: TextMode,
    use_cache: bool,
    setup: &mut Setup,
) -> Result<Vec<Vec<f32>>> {
    let texts: Vec<String> = ds.corpus.iter().map(|d| d.joined(text_mode)).collect();
    let key = eval_cache::key(model, &ds.corpus, &texts);
    let t = Instant::now();
    if use_cache {
        if let Some(v) = eval_cache::load(&key, texts.len(), model.info().dim)? {
            setup.embed_cached = true;
            setup.embed_corpus_s = t.elapsed().as_secs_f64();
            return Ok(v);
        }
    }
    let dim = model.info().dim;
    let mut flat = Vec::with_capacity(texts.len() * dim);
    let pb = bar("embedding corpus", texts.len() as u64);
    let opts = EmbedOptions {
        allow_empty: true,
        ..Default::default()
    };
    for chunk in texts.chunks(256) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let out = model.embed(&refs, &opts).context("embedding the corpus")?;
        flat.extend_from_slice(out.as_flat());
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    setup.embed_corpus_s = t.elapsed().as_secs_f64();
    if use_cache {
        if let Err(e) = eval_cache::store(&key, texts.len(), dim, &flat) {
            eprintln!("warning: could not cache corpus embeddings: {e:#}");
        }
    }
    Ok(flat.chunks_exact(dim.max(1)).map(<[f32]>::to_vec).collect())
}

fn embed_queries(model: &dyn Embedder, ds: &BeirDataset) -> Result<Vec<Vec<f32>>> {
    let refs: Vec<&str> = ds.queries.iter().map(|q| q.text.as_str()).collect();
    let opts = EmbedOptions {
        allow_empty: true,
        ..Default::default()
    };
    let pb = bar("embedding queries", refs.len() as u64);
    let mut out = Vec::with_capacity(refs.len());
    for chunk in refs.chunks(256) {
        let e = model.embed(chunk, &opts).context("embedding the queries")?;
        out.extend(e.into_vecs());
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    Ok(out)
}

/// Upserts the corpus (string ids, payload `title` and `text`) in durable batches, then seals it
/// so that the indexes are built.
fn ingest(c: &Collection, ds: &BeirDataset, vectors: Option<Vec<Vec<f32>>>) -> Result<()> {
    let pb = bar("ingesting", ds.corpus.len() as u64);
    let mut vectors = vectors.map(Vec::into_iter);
    for chunk in ds.corpus.chunks(1000) {
        let mut docs = Vec::with_capacity(chunk.len());
        for d in chunk {
            let mut doc = Document {
                id: Some(DocId::Str(d.id.clone())),
                ..Default::default()
            };
            doc.payload.insert("title".into(), d.title.clone().into());
            doc.payload.insert("text".into(), d.text.clone().into());
            if let Some(v) = vectors.as_mut().and_then(Iterator::next) {
                doc.vectors.insert(DENSE_FIELD.into(), v);
            }
            docs.push(doc);
        }
        c.upsert(docs)
            .with_context(|| format!("ingesting {} into the evaluation collection", ds.name))?;
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    c.set_progress(Arc::new(crate::progress::Bars::new()));
    c.flush().context("sealing the evaluation collection")?;
    Ok(())
}

/// Runs every judged query in `mode`: the run and each query's search latency (ms).
fn run_mode(b: &Bench, mode: Mode, ignore_identical: bool) -> Result<(Run, Vec<f64>)> {
    let snap = b.collection.snapshot();
    let mut run = Run::new();
    let mut lat = Vec::with_capacity(b.ds.queries.len());
    let pb = bar(
        &format!("queries ({})", mode.name()),
        b.ds.queries.len() as u64,
    );
    for (qi, q) in b.ds.queries.iter().enumerate() {
        let qv = || {
            b.query_vectors
                .as_ref()
                .and_then(|v| v.get(qi))
                .ok_or_else(|| anyhow!("no query vector for query {:?}", q.id))
        };
        let dense = |k: usize, strategy: Strategy| -> Result<Vec<quiver::Hit>> {
            let mut req = SearchRequest::new(qv()?.clone(), k);
            req.field = Some(DENSE_FIELD.into());
            req.ef = b.ef;
            req.with_payload = false;
            req.strategy = strategy;
            Ok(search(&snap, &req)?.hits)
        };
        let bm25 = |k: usize| -> Result<Vec<quiver::Hit>> {
            let mut req = Bm25Request::new(q.text.as_str(), k);
            req.field = Some(TEXT_FIELD.into());
            req.with_payload = false;
            Ok(bm25_search(&snap, &req)?.hits)
        };
        let t = Instant::now();
        let hits = match mode {
            Mode::Dense => dense(b.depth, Strategy::Auto)?,
            Mode::DenseExact => dense(b.depth, Strategy::Exact)?,
            Mode::Bm25 => bm25(b.depth)?,
            Mode::Hybrid => {
                let lists = [dense(b.candidates, Strategy::Auto)?, bm25(b.candidates)?];
                fuse_hits(&lists, &b.fusion, b.depth)?
            }
            Mode::Funnel => {
                let field = snap
                    .schema
                    .dense(DENSE_FIELD)
                    .ok_or_else(|| anyhow!("the evaluation collection has no dense field"))?;
                let query = quiver::query::plan::DenseQuery {
                    vector: Some(qv()?.clone()),
                    ef: b.ef,
                    ..Default::default()
                };
                let mut plan = quiver::query::presets::funnel(&field, query, b.depth, None)?;
                plan.with_payload = false;
                execute(&snap, &plan, None)?.hits
            }
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

/// Bytes of the structures `mode` searches, from the collection's own figures (`collection
/// info`): f32 vectors, plus HNSW graphs for graph search, codes for the funnel; for BM25 the
/// bytes of the sealed tantivy indexes (memory-mapped), read from the segment folders.
fn index_bytes(c: &Collection, db: &Database, name: &str, mode: Mode) -> Option<usize> {
    let info = c.info();
    let d = info.dense.iter().find(|d| d.field == DENSE_FIELD);
    let text = || text_index_bytes(&db.path().join("collections").join(name));
    Some(match mode {
        Mode::Dense => d?.ram_vectors + d?.ram_graph,
        Mode::DenseExact => d?.ram_vectors,
        Mode::Funnel => d?.ram_vectors + d?.ram_codes,
        Mode::Bm25 => text()?,
        Mode::Hybrid => d?.ram_vectors + d?.ram_graph + text()?,
    })
}

/// Total size of the `text.*` folders of every sealed segment under `collection_dir`.
fn text_index_bytes(collection_dir: &Path) -> Option<usize> {
    fn size(p: &Path) -> usize {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => std::fs::read_dir(p)
                .map(|rd| rd.filter_map(|e| e.ok()).map(|e| size(&e.path())).sum())
                .unwrap_or(0),
            Ok(m) => m.len() as usize,
            Err(_) => 0,
        }
    }
    let mut total = 0;
    for seg in std::fs::read_dir(collection_dir.join("segments")).ok()? {
        let seg = seg.ok()?.path();
        for e in std::fs::read_dir(&seg).ok()?.filter_map(|e| e.ok()) {
            if e.file_name().to_string_lossy().starts_with("text.") {
                total += size(&e.path());
            }
        }
    }
    Some(total)
}

/// Peak resident memory of this process (Linux `VmHWM`), model weights included.
fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn write_run(path: &Path, run: &Run, mode: Mode) -> Result<()> {
    let is_json = path.extension().is_some_and(|e| e == "json");
    let mut buf = Vec::new();
    if is_json {
        let mut o = Map::new();
        let mut qs: Vec<&String> = run.keys().collect();
        qs.sort();
        for q in qs {
            let docs: Map<String, Value> = run[q]
                .iter()
                .map(|s| (s.doc.clone(), json!(s.score)))
                .collect();
            o.insert(q.clone(), Value::Object(docs));
        }
        serde_json::to_writer(&mut buf, &Value::Object(o))?;
    } else {
        quiver_eval::metrics::write_trec_run(&mut buf, run, &format!("quiver-{}", mode.name()))
            .with_context(|| format!("writing run file {}", path.display()))?;
    }
    std::fs::write(path, buf).with_context(|| format!("writing {}", path.display()))
}

fn write_per_query(path: &Path, eval: &Evaluation) -> Result<()> {
    let o: Map<String, Value> = eval
        .per_query
        .iter()
        .map(|(q, vals)| {
            let m: Map<String, Value> = eval
                .measures
                .iter()
                .zip(vals)
                .map(|(m, v)| (m.to_string(), json!(v)))
                .collect();
            (q.clone(), Value::Object(m))
        })
        .collect();
    std::fs::write(path, Value::Object(o).to_string())
        .with_context(|| format!("writing {}", path.display()))
}

struct Header<'a> {
    ds: &'a BeirDataset,
    model: Option<&'a str>,
    depth: usize,
    setup: &'a Setup,
    rss_peak_bytes: Option<u64>,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Latency {
    mean: f64,
    p50: f64,
    p99: f64,
}

fn latency(ms: &[f64]) -> Latency {
    let mut s = ms.to_vec();
    s.sort_by(f64::total_cmp);
    Latency {
        mean: s.iter().sum::<f64>() / s.len().max(1) as f64,
        p50: percentile(&s, 50.0),
        p99: percentile(&s, 99.0),
    }
}

fn header_json(h: &Header) -> Map<String, Value> {
    let s = h.setup;
    let mut o = Map::new();
    o.insert("dataset".into(), json!(h.ds.name));
    o.insert("model".into(), json!(h.model));
    o.insert("queries".into(), json!(h.ds.queries.len()));
    o.insert("documents".into(), json!(h.ds.corpus.len()));
    o.insert(
        "skipped_empty_documents".into(),
        json!(h.setup.skipped_empty),
    );
    o.insert("depth".into(), json!(h.depth));
    o.insert(
        "setup".into(),
        json!({"load_s": s.load_s, "embed_corpus_s": s.embed_corpus_s, "embed_cached": s.embed_cached,
               "ingest_s": s.ingest_s, "reused_collection": s.reused_collection,
               "embed_queries_s": s.embed_queries_s}),
    );
    o.insert("rss_peak_bytes".into(), json!(h.rss_peak_bytes));
    o
}

fn report_json(h: &Header, r: &ModeReport) -> Value {
    let mut o = header_json(h);
    o.insert("mode".into(), json!(r.mode.name()));
    for (m, v) in r.eval.measures.iter().zip(&r.eval.mean) {
        o.insert(m.to_string(), json!(v));
    }
    let l = latency(&r.latencies_ms);
    o.insert(
        "timings".into(),
        json!({"latency_ms": {"mean": l.mean, "p50": l.p50, "p99": l.p99},
               "query_embed_ms": r.query_embed_ms,
               "queries_s": r.latencies_ms.iter().sum::<f64>() / 1e3}),
    );
    o.insert("index_bytes".into(), json!(r.index_bytes));
    Value::Object(o)
}

fn print_table(h: &Header, reports: &[ModeReport]) {
    let s = h.setup;
    println!(
        "{}: {} judged queries ({} unjudged not evaluated), {} documents{}, depth {}{}",
        h.ds.name,
        h.ds.queries.len(),
        h.ds.unjudged_queries,
        h.ds.corpus.len(),
        if s.skipped_empty > 0 {
            format!(" ({} without text left out)", s.skipped_empty)
        } else {
            String::new()
        },
        h.depth,
        h.model.map(|m| format!(", model {m}")).unwrap_or_default()
    );
    let collection = if s.reused_collection {
        "collection reused".to_string()
    } else {
        format!("ingest {:.1}s", s.ingest_s)
    };
    println!(
        "setup: load {:.1}s, embed corpus {:.1}s{}, {collection}, embed queries {:.1}s{}",
        s.load_s,
        s.embed_corpus_s,
        if s.embed_cached { " (cached)" } else { "" },
        s.embed_queries_s,
        h.rss_peak_bytes
            .map(|b| format!(", peak RSS {:.0} MB", b as f64 / 1e6))
            .unwrap_or_default()
    );
    let Some(first) = reports.first() else {
        return;
    };
    let mut line = format!("{:<14}", "mode");
    for m in &first.eval.measures {
        line.push_str(&format!(" {:>10}", m.to_string()));
    }
    line.push_str(&format!(
        " | {:>8} {:>8} {:>8} {:>9} {:>9}",
        "mean ms", "p50 ms", "p99 ms", "+embed ms", "index MB"
    ));
    println!("{line}");
    for r in reports {
        let mut line = format!("{:<14}", r.mode.name());
        for v in &r.eval.mean {
            line.push_str(&format!(" {v:>10.4}"));
        }
        let l = latency(&r.latencies_ms);
        line.push_str(&format!(
            " | {:>8.3} {:>8.3} {:>8.3} {:>9.2} {:>9}",
            l.mean,
            l.p50,
            l.p99,
            r.query_embed_ms,
            r.index_bytes
                .map(|b| format!("{:.1}", b as f64 / 1e6))
                .unwrap_or_else(|| "-".into())
        ));
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
    }

    #[test]
    fn modes_parse_by_name() {
        for m in Mode::ALL {
            assert_eq!(Mode::parse(m.name()).ok(), Some(*m));
        }
        let e = Mode::parse("nope").expect_err("unknown").to_string();
        assert!(e.contains("dense"), "{e}");
    }
}
