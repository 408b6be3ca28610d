//! `quiver bench backfill`: *how fast does a field added to a populated collection fill in, and
//! what does that cost the searches running beside it?*
//!
//! ```text
//!   SciFact docs ─► collection with field `old` (--search-model, HNSW), several segments
//!   paced searches on `old` (--qps, text queries)            ─► baseline latency
//!   for each --duty: add field `new` (--model) ─► Collection::backfill(duty)
//!                    beside the same paced searches         ─► rows/s, latency during
//!                    drop `new` (the next duty starts from the same state)
//! ```
//!
//! Reported per duty: rows, wall seconds, rows/s (wall and busy), and the searches' p50/p99/max
//! latency during the backfill against the baseline's. Searches are paced (one every 1/qps
//! seconds, on their own thread), not a closed loop, so the figure is what a served workload
//! at that rate would see.

use crate::error::{invalid, BenchError, Context, Result};
use quiver::{BackfillOptions, Database, DocId, Document, FieldSpec, Query, Schema};
use serde::Serialize;
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `quiver bench backfill`.
#[derive(Debug, Clone, clap::Args)]
pub struct BackfillBenchOptions {
    /// BEIR directory (corpus.jsonl, queries.jsonl).
    #[arg(long, default_value = "../shared/data/scifact")]
    pub data: PathBuf,
    /// Corpus documents loaded (title and text in the payload).
    #[arg(long, default_value_t = 1000)]
    pub docs: usize,
    /// Model of the field that is there from the start and searched throughout.
    #[arg(long, default_value = "potion-base-8M")]
    pub search_model: String,
    /// Model of the field added and backfilled.
    #[arg(long, default_value = "all-MiniLM-L6-v2")]
    pub model: String,
    /// Duty cycles to measure, comma-separated (fraction of the time the backfill may be busy).
    #[arg(long, value_delimiter = ',', default_value = "1,0.5")]
    pub duty: Vec<f64>,
    /// Rows per durable batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Searches per second on the `old` field.
    #[arg(long, default_value_t = 20.0)]
    pub qps: f64,
    /// Seconds of searches with no backfill (the baseline).
    #[arg(long, default_value_t = 10.0)]
    pub baseline_s: f64,
    /// Threads per model.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Rows per sealed segment (the collection's `mutable_max_rows`).
    #[arg(long, default_value_t = 250)]
    pub segment_rows: usize,
}

/// Latency of the paced searches, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Searches run.
    pub searches: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// One backfill run.
#[derive(Debug, Clone, Serialize)]
pub struct BackfillRun {
    /// The duty cycle.
    pub duty: f64,
    /// Rows computed.
    pub rows: usize,
    /// Segments installed.
    pub segments: usize,
    /// Wall seconds of `Collection::backfill`.
    pub seconds: f64,
    /// Rows per wall second.
    pub rows_per_s: f64,
    /// Rows per second of the time spent computing.
    pub busy_rows_per_s: f64,
    /// The searches during the backfill.
    pub search: Latency,
    /// `search.p99_ms / baseline.p99_ms`.
    pub p99_vs_baseline: f64,
}

/// What `quiver bench backfill --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct BackfillBenchReport {
    /// `quiver`.
    pub engine: &'static str,
    /// Documents in the collection.
    pub docs: usize,
    /// Sealed segments before the first backfill.
    pub segments: usize,
    /// The searched field's model.
    pub search_model: String,
    /// The backfilled field's model.
    pub model: String,
    /// Rows per batch.
    pub batch: usize,
    /// Search pacing.
    pub qps: f64,
    /// Searches with no backfill running.
    pub baseline: Latency,
    /// One per duty.
    pub runs: Vec<BackfillRun>,
}

fn latency(mut ms: Vec<f64>) -> Latency {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if ms.is_empty() {
            0.0
        } else {
            ms[((ms.len() - 1) as f64 * q).round() as usize]
        }
    };
    Latency {
        searches: ms.len(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: ms.last().copied().unwrap_or(0.0),
    }
}

/// Paced searches of `queries` on field `old` until `stop` is set; their latencies.
fn search_paced(
    c: quiver::Collection,
    queries: Arc<Vec<String>>,
    qps: f64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<Vec<f64>>> {
    std::thread::spawn(move || {
        let period = Duration::from_secs_f64(1.0 / qps);
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut i = 0usize;
        while !stop.load(Ordering::SeqCst) {
            let due = t0 + period * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let q = Query {
                field: Some("old".into()),
                ..Query::text(queries[i % queries.len()].clone()).with_limit(10)
            };
            let t = Instant::now();
            let res = c.query(&q)?;
            out.push(t.elapsed().as_secs_f64() * 1e3);
            if res.hits.is_empty() {
                return invalid!("a search during the benchmark found nothing");
            }
            i += 1;
        }
        Ok(out)
    })
}

fn joined(h: std::thread::JoinHandle<Result<Vec<f64>>>) -> Result<Vec<f64>> {
    h.join()
        .map_err(|_| BenchError::Invalid("the search thread panicked".into()))?
}

fn dense_spec(model: &str, dim: usize) -> Result<FieldSpec> {
    Ok(serde_json::from_value(json!({
        "type": "dense", "dim": dim, "metric": "cosine", "model": model,
        "embed": ["title", "text"], "index": {"type": "hnsw", "m": 16, "ef_construction": 100}
    }))?)
}

/// Runs the benchmark.
pub fn measure(a: &BackfillBenchOptions) -> Result<BackfillBenchReport> {
    if a.duty.iter().any(|d| !(*d > 0.0 && *d <= 1.0)) || a.qps <= 0.0 || a.docs == 0 {
        return invalid!("--duty values must be in (0, 1], --qps and --docs above 0");
    }
    let corpus = quiver_eval::beir::read_corpus(&a.data.join("corpus.jsonl"))
        .with_context(|| format!("reading {} (set --data)", a.data.display()))?;
    let queries: Vec<String> = quiver_eval::beir::read_queries(&a.data.join("queries.jsonl"))?
        .into_iter()
        .map(|q| q.text)
        .collect();
    if queries.is_empty() {
        return invalid!("the dataset has no queries");
    }
    let pool = crate::data::model_pool(Some(a.threads));
    let dim_of = |m: &str| -> Result<usize> {
        Ok(pool
            .get(m)
            .with_context(|| format!("getting model {m:?}"))?
            .info()
            .dim)
    };
    let (old_dim, new_dim) = (dim_of(&a.search_model)?, dim_of(&a.model)?);
    let dir = tempfile::tempdir()?;
    let db = Database::open_with(
        dir.path(),
        quiver::OpenOptions {
            pool: Some(pool.clone()),
            ..Default::default()
        },
    )?;
    let mut schema = Schema::single("old", dense_spec(&a.search_model, old_dim)?);
    schema.mutable_max_rows = a.segment_rows;
    let c = db.create_collection("bench", &schema)?;
    let docs: Vec<Document> = corpus
        .iter()
        .take(a.docs)
        .map(|d| {
            let mut doc = Document {
                id: Some(DocId::Str(d.id.clone())),
                ..Default::default()
            };
            doc.payload.insert("title".into(), json!(d.title));
            doc.payload.insert("text".into(), json!(d.text));
            doc
        })
        .collect();
    let pb = crate::progress::bar("loading", docs.len() as u64);
    for chunk in docs.chunks(a.segment_rows.max(1)) {
        c.upsert(chunk.to_vec())?;
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    c.wait_for_maintenance()?;
    let segments = c.info().segments.len();
    let queries = Arc::new(queries);

    let stop = Arc::new(AtomicBool::new(false));
    let h = search_paced(c.clone(), queries.clone(), a.qps, stop.clone());
    std::thread::sleep(Duration::from_secs_f64(a.baseline_s));
    stop.store(true, Ordering::SeqCst);
    let baseline = latency(joined(h)?);

    let mut runs = Vec::new();
    for &duty in &a.duty {
        c.add_field("new", dense_spec(&a.model, new_dim)?)?;
        let stop = Arc::new(AtomicBool::new(false));
        let h = search_paced(c.clone(), queries.clone(), a.qps, stop.clone());
        let r = c.backfill(&BackfillOptions {
            batch: a.batch,
            duty,
            stop: None,
        });
        stop.store(true, Ordering::SeqCst);
        let search = latency(joined(h)?);
        let r = r?;
        if r.completed != ["new"] {
            return invalid!("the backfill did not complete: {r:?}");
        }
        c.drop_field("new")?;
        runs.push(BackfillRun {
            duty,
            rows: r.rows,
            segments: r.segments,
            seconds: r.seconds,
            rows_per_s: r.rows as f64 / r.seconds.max(1e-9),
            busy_rows_per_s: r.rows as f64 / r.busy_seconds.max(1e-9),
            p99_vs_baseline: search.p99_ms / baseline.p99_ms.max(1e-9),
            search,
        });
    }
    Ok(BackfillBenchReport {
        engine: "quiver",
        docs: docs.len(),
        segments,
        search_model: a.search_model.clone(),
        model: a.model.clone(),
        batch: a.batch,
        qps: a.qps,
        baseline,
        runs,
    })
}

/// `quiver bench backfill`.
pub fn run(as_json: bool, a: BackfillBenchOptions) -> Result<()> {
    let r = measure(&a)?;
    if as_json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    println!(
        "{} docs in {} segments; searches on {} at {} qps, backfilling {} (batch {})",
        r.docs, r.segments, r.search_model, r.qps, r.model, r.batch
    );
    let b = &r.baseline;
    println!(
        "baseline         {:>5} searches  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        b.searches, b.p50_ms, b.p99_ms, b.max_ms
    );
    for x in &r.runs {
        let s = &x.search;
        println!(
            "duty {:<4} {:>6.1} rows/s ({:>6.1} busy)  {:>5} searches  p50 {:>7.2} ms  p99 {:>7.2} ms ({:.2}x)  max {:>7.2} ms",
            x.duty, x.rows_per_s, x.busy_rows_per_s, s.searches, s.p50_ms, s.p99_ms,
            x.p99_vs_baseline, s.max_ms
        );
    }
    Ok(())
}
