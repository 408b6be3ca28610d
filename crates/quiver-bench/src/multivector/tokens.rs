//! Token vectors of `quiver bench multivector`, computed once per dataset and model and cached
//! under `<cache>/bench/multi-<data>-<model>/` (all tokens with their ids and special flags, so
//! every variant — special tokens dropped, punctuation dropped, k-means pruned — derives from
//! one cache).

use crate::error::{data_err, invalid, Context, Result};
use crate::progress::bar;
use quiver::MultiVectorsBuf;
use quiver_embed::{EmbedOptions, Embedder, Pooling};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Token vectors of a list of texts, all tokens kept, with ids and special flags.
pub(crate) struct Tokens {
    pub(crate) dim: usize,
    data: Vec<f32>,
    offsets: Vec<u64>,
    ids: Vec<u32>,
    special: Vec<u8>,
}

impl Tokens {
    pub(crate) fn n(&self) -> usize {
        self.offsets.len() - 1
    }

    fn range(&self, i: usize) -> std::ops::Range<usize> {
        self.offsets[i] as usize..self.offsets[i + 1] as usize
    }

    /// Unit-normalised token vectors of every text, keeping tokens for which `keep(id, special)`
    /// (all of them when none would remain).
    pub(crate) fn sets(&self, keep: &dyn Fn(u32, bool) -> bool) -> MultiVectorsBuf {
        let mut buf = MultiVectorsBuf::new(self.dim);
        for i in 0..self.n() {
            let r = self.range(i);
            let mut rows: Vec<f32> = Vec::with_capacity(r.len() * self.dim);
            for t in r.clone() {
                if keep(self.ids[t], self.special[t] != 0) {
                    rows.extend_from_slice(&self.data[t * self.dim..(t + 1) * self.dim]);
                }
            }
            if rows.is_empty() {
                rows.extend_from_slice(&self.data[r.start * self.dim..r.end * self.dim]);
            }
            for v in rows.chunks_exact_mut(self.dim) {
                quiver::linalg::normalize(v);
            }
            buf.push_flat(&rows);
        }
        buf
    }

    /// The model's sentence vector: mean of all token vectors, normalised.
    pub(crate) fn pooled(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.n() * self.dim];
        for i in 0..self.n() {
            let r = self.range(i);
            let o = &mut out[i * self.dim..(i + 1) * self.dim];
            for t in r.clone() {
                for (a, b) in o
                    .iter_mut()
                    .zip(&self.data[t * self.dim..(t + 1) * self.dim])
                {
                    *a += b;
                }
            }
            quiver::linalg::normalize(o);
        }
        out
    }
}

fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn read_vec<T: Copy, const N: usize>(path: &Path, f: fn([u8; N]) -> T) -> Result<Vec<T>> {
    let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if b.len() % N != 0 {
        return Err(data_err!("{}: truncated cache file", path.display()));
    }
    Ok(b.chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            f(a)
        })
        .collect())
}

fn save_tokens(dir: &Path, name: &str, t: &Tokens) -> Result<()> {
    write_bytes(
        &dir.join(format!("{name}.f32")),
        &t.data
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect::<Vec<u8>>(),
    )?;
    write_bytes(
        &dir.join(format!("{name}.ids")),
        &t.ids
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect::<Vec<u8>>(),
    )?;
    write_bytes(&dir.join(format!("{name}.special")), &t.special)?;
    write_bytes(
        &dir.join(format!("{name}.off")),
        &t.offsets
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
}

fn load_tokens(dir: &Path, name: &str, dim: usize) -> Result<Tokens> {
    let t = Tokens {
        dim,
        data: read_vec(&dir.join(format!("{name}.f32")), f32::from_le_bytes)?,
        offsets: read_vec(&dir.join(format!("{name}.off")), u64::from_le_bytes)?,
        ids: read_vec(&dir.join(format!("{name}.ids")), u32::from_le_bytes)?,
        special: std::fs::read(dir.join(format!("{name}.special")))
            .with_context(|| format!("reading {}", dir.display()))?,
    };
    let total = t.offsets.last().copied().unwrap_or(0) as usize;
    if t.ids.len() != total || t.special.len() != total || t.data.len() != total * dim {
        return Err(data_err!(
            "{}: inconsistent token cache {name}; delete the folder to rebuild it",
            dir.display()
        ));
    }
    Ok(t)
}

fn embed_all(model: &dyn Embedder, texts: &[String], label: &str) -> Result<Tokens> {
    let dim = model.info().dim;
    let mut t = Tokens {
        dim,
        data: Vec::new(),
        offsets: vec![0],
        ids: Vec::new(),
        special: Vec::new(),
    };
    let pb = bar(label, texts.len() as u64);
    for chunk in texts.chunks(64) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let opts = EmbedOptions {
            allow_empty: true,
            ..Default::default()
        };
        for e in model.embed_tokens(&refs, &opts)? {
            t.data.extend_from_slice(&e.data);
            t.ids.extend_from_slice(&e.ids);
            t.special.extend(e.special.iter().map(|&s| s as u8));
            let last = *t.offsets.last().unwrap_or(&0);
            t.offsets.push(last + e.ids.len() as u64);
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    Ok(t)
}

/// Cached (or computed now) token vectors of `docs` and `queries` (texts of dataset `tag`);
/// `model` is loaded on first need.
pub(crate) fn tokens_for(
    docs: &[String],
    queries: &[String],
    tag: &str,
    model_name: &str,
    model: &mut Option<Arc<dyn Embedder>>,
    load: &dyn Fn() -> Result<Arc<dyn Embedder>>,
) -> Result<(Tokens, Tokens)> {
    let base = crate::data::cache_dir()
        .join("bench")
        .join(format!("multi-{tag}-{}", model_name.replace('/', "_")));
    let meta_path = base.join("meta.json");
    if let Ok(m) = std::fs::read(&meta_path) {
        let m: Value = serde_json::from_slice(&m)?;
        let dim = m["dim"].as_u64().unwrap_or(0) as usize;
        if m["docs"].as_u64() == Some(docs.len() as u64)
            && m["queries"].as_u64() == Some(queries.len() as u64)
        {
            eprintln!("using cached token vectors in {}", base.display());
            return Ok((
                load_tokens(&base, "docs", dim)?,
                load_tokens(&base, "queries", dim)?,
            ));
        }
    }
    if model.is_none() {
        *model = Some(load()?);
    }
    let m = model
        .as_deref()
        .ok_or_else(|| data_err!("model not loaded"))?;
    if m.info().pooling != Pooling::Mean {
        return invalid!(
            "the single-vector baseline assumes mean pooling; {} pools with {:?}",
            m.info().name,
            m.info().pooling
        );
    }
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let t0 = Instant::now();
    let dt = embed_all(m, docs, &format!("{tag}: document tokens"))?;
    let qt = embed_all(m, queries, &format!("{tag}: query tokens"))?;
    eprintln!(
        "{tag}: embedded {} documents and {} queries in {:.1}s",
        docs.len(),
        queries.len(),
        t0.elapsed().as_secs_f64()
    );
    save_tokens(&base, "docs", &dt)?;
    save_tokens(&base, "queries", &qt)?;
    write_bytes(
        &meta_path,
        json!({"dim": dt.dim, "docs": dt.n(), "queries": qt.n(), "model": model_name})
            .to_string()
            .as_bytes(),
    )?;
    Ok((dt, qt))
}

/// Token ids whose text is only punctuation (the engine's rule for multi fields'
/// `drop_punctuation`).
pub(crate) fn punctuation_ids(model_dir: &Path) -> Result<HashSet<u32>> {
    quiver::embedding::punctuation_ids_in(model_dir).map_err(|e| data_err!("{e}"))
}
