//! `quiver bench ingest`: *how fast do documents go in, and does it stay fast as the collection
//! grows?*
//!
//! ```text
//!   --prepare-only: base (random MiniLM-like 384-d clusters, or GloVe-6B-50d), queries, exact
//!                   top-100 ─► <cache>/bench/ingest-{source}-{count}-q{q}-s{seed}/{base,queries,gt}.npy
//!   base ─► Collection::upsert in batches (each timed: the acknowledgement latency) while the
//!          background sealer and merger run ─► wait_for_maintenance (settle) ─► recall@10 at ef
//!   --bulk: base ─► one Collection::bulk_load (segments of --segment-rows built on every core)
//! ```
//!
//! Reported: documents/s overall and per tenth of the batches (the last tenth against the
//! first), p50/p99/max acknowledgement latency, back-pressure, seals, merges and segments, peak
//! RSS (the process's, the base array included: `dataset_mib`), disk bytes, and recall@10
//! against brute force. `bench/compare ingest` runs the peers on the same files.

use crate::data::cache_dir;
use crate::error::{invalid, Context, Result};
use quiver::Metric;
use quiver::{Database, DocId, Query, Schema};
use quiver_eval::npy;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const FIELD: &str = "emb";
/// Ground-truth depth written to `gt.npy`.
const K_GT: usize = 100;

/// Options of `quiver bench ingest`.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestOptions {
    /// `random` (clustered, normalised, MiniLM-like) or `glove50` (GloVe-6B-50d).
    #[arg(long, default_value = "random")]
    pub source: String,
    /// Dimensions of `random` vectors.
    #[arg(long, default_value_t = 384)]
    pub dim: usize,
    /// Base vectors (`glove50` has at most 400,000 less the queries).
    #[arg(long, default_value_t = 1_000_000)]
    pub count: usize,
    /// Queries for recall.
    #[arg(long, default_value_t = 100)]
    pub queries: usize,
    /// Data seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Only prepare the files and print their paths.
    #[arg(long)]
    pub prepare_only: bool,
    /// Documents per upsert.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// HNSW M.
    #[arg(long, default_value_t = 16)]
    pub m: usize,
    /// HNSW ef_construction.
    #[arg(long, default_value_t = 100)]
    pub ef_construction: usize,
    /// Beam width of the recall queries.
    #[arg(long, default_value_t = 64)]
    pub ef: usize,
    /// The collection's `mutable_max_rows` (rows per seal).
    #[arg(long, default_value_t = 20_000)]
    pub mutable_max_rows: usize,
    /// Load everything with one `Collection::bulk_load` (sealed segments built on every core,
    /// no log) instead of streamed upserts: `seconds` is that call.
    #[arg(long)]
    pub bulk: bool,
    /// Rows per segment of `--bulk`.
    #[arg(long, default_value_t = 200_000)]
    pub segment_rows: usize,
}

/// The prepared files.
#[derive(Debug, Clone, Serialize)]
pub struct IngestData {
    /// Base vectors, normalised, float32 `[count, dim]`.
    pub base: PathBuf,
    /// Queries, normalised.
    pub queries: PathBuf,
    /// Exact top-100 base rows per query by cosine, int32.
    pub gt: PathBuf,
    /// Base rows.
    pub count: usize,
    /// Dimensions.
    pub dim: usize,
}

/// Acknowledgement latency percentiles, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct AckMs {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

/// What `quiver bench ingest` measured.
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    /// `quiver`.
    pub engine: &'static str,
    /// `stream` (upserts in batches) or `bulk` (one bulk load).
    pub mode: &'static str,
    /// Data source.
    pub source: String,
    /// Documents ingested.
    pub count: usize,
    /// Dimensions.
    pub dim: usize,
    /// Documents per upsert.
    pub batch_size: usize,
    /// First upsert to last acknowledgement.
    pub seconds: f64,
    /// Background work still due after the last acknowledgement (`wait_for_maintenance`).
    pub settle_seconds: f64,
    /// `count / seconds`.
    pub docs_per_s: f64,
    /// Documents/s within each tenth of the batches.
    pub tenths_docs_per_s: Vec<f64>,
    /// Last tenth over the first (`None` for a bulk load).
    pub last_over_first: Option<f64>,
    /// Acknowledgement latency.
    pub ack_ms: AckMs,
    /// Time writes waited for a seal to make room, in all.
    pub backpressure_seconds: f64,
    /// Seals and merges run.
    pub seals: usize,
    /// Merges run.
    pub merges: usize,
    /// Sealed segments at the end.
    pub segments: usize,
    /// Peak resident memory of the process (the base array included).
    pub rss_peak_mib: f64,
    /// Size of the base array held by the benchmark itself.
    pub dataset_mib: f64,
    /// Bytes of the collection on disk at the end.
    pub disk_bytes: u64,
    /// Recall@10 of `Collection::query` at `ef` against brute force.
    pub recall_at_10: f64,
    /// Beam width of the recall queries.
    pub ef: usize,
    /// HNSW M.
    pub m: usize,
    /// HNSW ef_construction.
    pub ef_construction: usize,
    /// Rows per seal.
    pub mutable_max_rows: usize,
}

/// `quiver bench ingest`.
pub fn run(as_json: bool, a: IngestOptions) -> Result<()> {
    let data = prepare(&a)?;
    if a.prepare_only {
        println!("{}", serde_json::to_string(&data)?);
        return Ok(());
    }
    let r = measure(&a, &data)?;
    if as_json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    let how = match a.bulk {
        true => format!("one bulk load in segments of {}", a.segment_rows),
        false => format!("batches of {}", r.batch_size),
    };
    println!(
        "ingest {} x {}-d ({}), {how}: {:.1}s, {:.0} docs/s; settle {:.1}s",
        r.count, r.dim, r.source, r.seconds, r.docs_per_s, r.settle_seconds
    );
    if let Some(ratio) = r.last_over_first {
        let tenths: Vec<String> = r
            .tenths_docs_per_s
            .iter()
            .map(|x| format!("{x:.0}"))
            .collect();
        println!(
            "docs/s per tenth: {} (last/first {ratio:.2})",
            tenths.join(" ")
        );
    }
    println!(
        "ack p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; back-pressure {:.1}s; {} seals, {} merges, {} segments",
        r.ack_ms.p50, r.ack_ms.p99, r.ack_ms.max, r.backpressure_seconds, r.seals, r.merges, r.segments
    );
    println!(
        "RSS peak {:.0} MiB (base array {:.0} MiB); disk {:.1} MiB; recall@10 {:.4} at ef {}",
        r.rss_peak_mib,
        r.dataset_mib,
        r.disk_bytes as f64 / (1 << 20) as f64,
        r.recall_at_10,
        r.ef
    );
    Ok(())
}

/// Writes (once) the base, queries and ground truth of `a`'s source.
pub fn prepare(a: &IngestOptions) -> Result<IngestData> {
    if a.source == "glove50" {
        let p = crate::data::prepare_glove(None, a.queries, a.seed)?;
        if a.count < p.n_base {
            return invalid!(
                "--count {}: glove50 is used whole ({} base vectors); leave --count at least that",
                a.count,
                p.n_base
            );
        }
        return Ok(IngestData {
            base: p.base,
            queries: p.queries,
            gt: p.gt,
            count: p.n_base,
            dim: p.dim,
        });
    }
    if a.source != "random" {
        return invalid!("--source {:?}: expected random or glove50", a.source);
    }
    if a.count == 0 || a.dim == 0 || a.queries == 0 {
        return invalid!("--count, --dim and --queries must be positive");
    }
    let dir = cache_dir().join(format!(
        "bench/ingest-random{}-{}-q{}-s{}",
        a.dim, a.count, a.queries, a.seed
    ));
    let data = IngestData {
        base: dir.join("base.npy"),
        queries: dir.join("queries.npy"),
        gt: dir.join("gt.npy"),
        count: a.count,
        dim: a.dim,
    };
    if data.base.exists() && data.queries.exists() && data.gt.exists() {
        return Ok(data);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!(
        "generating {} + {} clustered {}-d vectors (seed {}) ...",
        a.count, a.queries, a.dim, a.seed
    );
    let base = clustered(a.seed, a.count, a.dim);
    let queries = clustered(a.seed ^ 0x5155_4552, a.queries, a.dim);
    let t = Instant::now();
    let truth = quiver_eval::brute_force_topk_flat(&base, a.dim, &queries, Metric::Cosine, K_GT);
    eprintln!("ground truth in {:.1}s", t.elapsed().as_secs_f64());
    let gt: Vec<i32> = truth
        .iter()
        .flat_map(|r| r.iter().map(|&x| x as i32))
        .collect();
    npy::write_f32(&data.base, a.count, a.dim, &base)?;
    npy::write_f32(&data.queries, a.queries, a.dim, &queries)?;
    npy::write_i32(&data.gt, a.queries, K_GT, &gt)?;
    Ok(data)
}

/// `n` normalised vectors around 1,000 random centres with a decaying spectrum (sentence
/// embeddings are clustered and anisotropic, not uniform on the sphere).
fn clustered(seed: u64, n: usize, dim: usize) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut gauss = move || {
        // Box-Muller.
        let u: f32 = rng.random_range(f32::EPSILON..1.0);
        let v: f32 = rng.random_range(0.0..std::f32::consts::TAU);
        (-2.0 * u.ln()).sqrt() * v.cos()
    };
    let scale: Vec<f32> = (0..dim).map(|j| 1.0 / (1.0 + j as f32 / 16.0)).collect();
    let centres: Vec<Vec<f32>> = (0..1000)
        .map(|_| (0..dim).map(|j| gauss() * scale[j]).collect())
        .collect();
    let mut out = Vec::with_capacity(n * dim);
    for i in 0..n {
        let c = &centres[(i * 7919) % centres.len()];
        let mut v: Vec<f32> = (0..dim).map(|j| c[j] + 0.5 * gauss() * scale[j]).collect();
        quiver::linalg::normalize(&mut v);
        out.extend_from_slice(&v);
    }
    out
}

/// Resident memory now and at its peak, MiB (Linux `/proc/self/status`; 0 elsewhere).
fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// What streaming the base measured.
struct Streamed {
    /// Acknowledgement latency of each batch.
    acks: Vec<Duration>,
    /// Back-pressure, in all.
    waited: Duration,
    /// Documents/s within each tenth of the batches.
    tenths: Vec<f64>,
    /// First upsert to last acknowledgement.
    seconds: f64,
    /// Peak resident memory seen after a batch, MiB.
    rss_peak: f64,
}

/// Upserts `base` in batches of `a.batch_size`, timing each acknowledgement.
fn stream(c: &quiver::Collection, a: &IngestOptions, base: &npy::Array2<f32>) -> Result<Streamed> {
    let n = base.rows;
    let batches = n.div_ceil(a.batch_size);
    let mut acks = Vec::with_capacity(batches);
    let mut waited = Duration::ZERO;
    let mut tenth_start: [Option<Instant>; 11] = [None; 11];
    let mut tenth_docs = [0usize; 10];
    let mut rss_peak = 0.0f64;
    let pb = crate::progress::bar("ingest", n as u64);
    let t0 = Instant::now();
    for b in 0..batches {
        let tenth = b * 10 / batches;
        tenth_start[tenth].get_or_insert_with(Instant::now);
        let (start, end) = (b * a.batch_size, ((b + 1) * a.batch_size).min(n));
        let docs = crate::data::vector_docs(base, start..end, FIELD);
        let t = Instant::now();
        let rep = c.upsert(docs).context("upserting a batch")?;
        acks.push(t.elapsed());
        waited += rep.waited;
        if let Some(e) = rep.maintenance_error {
            eprintln!("warning: background maintenance: {e}");
        }
        tenth_docs[tenth] += end - start;
        rss_peak = rss_peak.max(rss_mib().0);
        pb.inc((end - start) as u64);
    }
    let seconds = t0.elapsed().as_secs_f64();
    tenth_start[10] = Some(Instant::now());
    pb.finish_and_clear();
    let tenths = (0..10)
        .map(|i| {
            let (Some(s), Some(e)) = (
                tenth_start[i],
                tenth_start[i + 1..].iter().flatten().next().copied(),
            ) else {
                return 0.0;
            };
            tenth_docs[i] as f64 / (e - s).as_secs_f64().max(1e-9)
        })
        .collect();
    Ok(Streamed {
        acks,
        waited,
        tenths,
        seconds,
        rss_peak,
    })
}

/// Loads `base` with one bulk load (documents built first, outside the timing).
fn bulk(c: &quiver::Collection, a: &IngestOptions, base: &npy::Array2<f32>) -> Result<Streamed> {
    let docs = crate::data::vector_docs(base, 0..base.rows, FIELD);
    let t = Instant::now();
    let rep = c
        .bulk_load(docs, a.segment_rows)
        .context("bulk loading the base")?;
    let took = t.elapsed();
    Ok(Streamed {
        acks: vec![took],
        waited: rep.waited,
        tenths: Vec::new(),
        seconds: took.as_secs_f64(),
        rss_peak: rss_mib().0,
    })
}

/// Recall@10 of `Collection::query` at `ef` against the ground truth.
fn recall(
    c: &quiver::Collection,
    ef: usize,
    queries: &npy::Array2<f32>,
    gt: &npy::Array2<i32>,
) -> Result<f64> {
    let dim = queries.cols;
    let mut hit = 0usize;
    for qi in 0..queries.rows {
        let q = queries.data[qi * dim..(qi + 1) * dim].to_vec();
        let mut query = Query::vector(q).with_limit(10);
        query.ef = Some(ef);
        query.with_payload = false;
        let r = c.query(&query)?;
        let truth = &gt.data[qi * gt.cols..qi * gt.cols + 10.min(gt.cols)];
        hit += r
            .hits
            .iter()
            .filter(|h| matches!(h.id, DocId::Int(i) if truth.contains(&(i as i32))))
            .count();
    }
    Ok(hit as f64 / (10 * queries.rows.max(1)) as f64)
}

/// Streams the base into a fresh collection and measures it.
pub fn measure(a: &IngestOptions, data: &IngestData) -> Result<IngestReport> {
    if a.batch_size == 0 {
        return invalid!("--batch-size must be positive");
    }
    let base = npy::read_f32(&data.base)?;
    let queries = npy::read_f32(&data.queries)?;
    let gt = npy::read_i32(&data.gt)?;
    let (n, dim) = (base.rows, base.cols);
    let tmp = tempfile::Builder::new()
        .prefix("quiver-bench-ingest-")
        .tempdir()
        .context("creating a temporary database")?;
    let db = Database::open(tmp.path())?;
    let schema = Schema::parse(
        &json!({"mutable_max_rows": a.mutable_max_rows,
                "fields": {FIELD: {"type": "dense", "dim": dim, "metric": "cosine",
                 "index": {"type": "hnsw", "m": a.m, "ef_construction": a.ef_construction}}}})
        .to_string(),
    )?;
    let c = db.create_collection("ingest", &schema)?;
    let Streamed {
        mut acks,
        waited,
        tenths,
        seconds,
        rss_peak,
    } = if a.bulk {
        bulk(&c, a, &base)?
    } else {
        stream(&c, a, &base)?
    };
    let t = Instant::now();
    c.wait_for_maintenance()
        .context("finishing background seals and merges")?;
    let settle_seconds = t.elapsed().as_secs_f64();
    let history = c.maintenance_history();
    let info = c.info();
    let recall_at_10 = recall(&c, a.ef, &queries, &gt)?;
    acks.sort();
    Ok(IngestReport {
        engine: "quiver",
        mode: if a.bulk { "bulk" } else { "stream" },
        source: a.source.clone(),
        count: n,
        dim,
        batch_size: a.batch_size,
        seconds,
        settle_seconds,
        docs_per_s: n as f64 / seconds.max(1e-9),
        last_over_first: (tenths.len() == 10).then(|| tenths[9] / tenths[0].max(1e-9)),
        tenths_docs_per_s: tenths,
        ack_ms: AckMs {
            p50: percentile(&acks, 0.5),
            p99: percentile(&acks, 0.99),
            max: percentile(&acks, 1.0),
        },
        backpressure_seconds: waited.as_secs_f64(),
        seals: history.iter().filter(|h| h.kind == "seal").count(),
        merges: history.iter().filter(|h| h.kind == "merge").count(),
        segments: info.segments.len(),
        rss_peak_mib: rss_peak.max(rss_mib().1),
        dataset_mib: (base.data.len() * 4) as f64 / (1 << 20) as f64,
        disk_bytes: info.disk_bytes,
        recall_at_10,
        ef: a.ef,
        m: a.m,
        ef_construction: a.ef_construction,
        mutable_max_rows: a.mutable_max_rows,
    })
}
