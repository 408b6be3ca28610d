//! The corpus embedding cache of `quiver eval`: `.npy` files under `~/.cache/quiver/eval`
//! (`QUIVER_EVAL_CACHE` overrides the folder; `QUIVER_HOME/eval` and `XDG_CACHE_HOME/quiver/eval`
//! are honoured), so re-runs, sweeps and tests embed a corpus once per model.
//!
//! The file name is a 128-bit xxh3 digest of everything the vectors depend on: the model (name,
//! dimension, family, truncation length, pooling normalisation, and for a model directory the size
//! and modification time of its files) and every document's id and embedded text — the text the
//! engine embeds at upsert ([`quiver::document::document_text`]), so the cached vectors are the
//! ones ingest would compute. Any change gives a new key; stale files are never read. A file that does not have the expected shape is ignored
//! and rewritten. Writes go to a temporary file that is renamed into place.

use crate::error::{data_err, Context, Result};
use quiver_embed::Embedder;
use std::path::PathBuf;
use xxhash_rust::xxh3::Xxh3;

/// The cache folder.
pub(crate) fn dir() -> Result<PathBuf> {
    let nonempty = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = nonempty("QUIVER_EVAL_CACHE") {
        return Ok(p);
    }
    if let Some(p) = nonempty("QUIVER_HOME") {
        return Ok(p.join("eval"));
    }
    if let Some(p) = nonempty("XDG_CACHE_HOME") {
        return Ok(p.join("quiver").join("eval"));
    }
    dirs::cache_dir()
        .map(|p| p.join("quiver").join("eval"))
        .ok_or_else(|| data_err!("no cache directory; set QUIVER_EVAL_CACHE"))
}

/// The cache key of `texts` (the embedded text of each document of `ids`) embedded by `model`.
pub(crate) fn key(model: &dyn Embedder, ids: &[&str], texts: &[String]) -> String {
    let info = model.info();
    let mut h = Xxh3::new();
    let mut put = |s: &[u8]| {
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s);
    };
    put(b"quiver-eval-embeddings-v2");
    put(info.name.as_bytes());
    put(info.precision.as_str().as_bytes());
    put(format!("{:?}", info.family).as_bytes());
    put(&(info.dim as u64).to_le_bytes());
    put(&(info.max_seq_length as u64).to_le_bytes());
    put(&[u8::from(info.normalize)]);
    let mut files: Vec<(String, u64, u128)> = std::fs::read_dir(&info.dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let m = e.metadata().ok()?;
                    let mtime = m
                        .modified()
                        .ok()?
                        .duration_since(std::time::UNIX_EPOCH)
                        .ok()?
                        .as_nanos();
                    Some((e.file_name().to_string_lossy().into_owned(), m.len(), mtime))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    for (name, len, mtime) in files {
        put(name.as_bytes());
        put(&len.to_le_bytes());
        put(&mtime.to_le_bytes());
    }
    for (id, t) in ids.iter().zip(texts) {
        put(id.as_bytes());
        put(t.as_bytes());
    }
    let safe: String = info
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}-{:032x}", h.digest128())
}

fn path(key: &str) -> Result<PathBuf> {
    Ok(dir()?.join(format!("{key}.npy")))
}

/// Cached vectors for `key`, if a file of exactly `rows` × `dim` exists.
pub(crate) fn load(key: &str, rows: usize, dim: usize) -> Result<Option<Vec<Vec<f32>>>> {
    let p = path(key)?;
    if !p.exists() {
        return Ok(None);
    }
    match quiver_eval::npy::read_f32(&p) {
        Ok(a) if a.rows == rows && a.cols == dim && a.data.iter().all(|x| x.is_finite()) => {
            Ok(Some(
                a.data
                    .chunks_exact(dim.max(1))
                    .map(<[f32]>::to_vec)
                    .collect(),
            ))
        }
        Ok(_) | Err(_) => {
            eprintln!("warning: ignoring unusable embedding cache {}", p.display());
            Ok(None)
        }
    }
}

/// Stores `rows` × `dim` vectors (row-major) under `key`.
pub(crate) fn store(key: &str, rows: usize, dim: usize, flat: &[f32]) -> Result<()> {
    let p = path(key)?;
    let d = dir()?;
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    let tmp = d.join(format!("{key}.npy.tmp-{}", std::process::id()));
    quiver_eval::npy::write_f32(&tmp, rows, dim, flat)?;
    std::fs::rename(&tmp, &p).with_context(|| format!("renaming into {}", p.display()))?;
    Ok(())
}

/// The vectors of `texts` (documents `ids`) under `model`, row-major as the model returns them:
/// read from the cache when `use_cache` and present, else embedded (progress bar `label`) and
/// stored (a failed store only warns).
pub(crate) fn vectors_or_embed(
    model: &dyn Embedder,
    ids: &[&str],
    texts: &[String],
    use_cache: bool,
    label: &str,
) -> Result<Vec<f32>> {
    let dim = model.info().dim;
    let key = key(model, ids, texts);
    if use_cache {
        if let Some(rows) = load(&key, texts.len(), dim)? {
            return Ok(rows.concat());
        }
    }
    let v = crate::data::embed_texts(model, texts, label)?;
    if use_cache {
        if let Err(e) = store(&key, texts.len(), dim, &v) {
            eprintln!("warning: could not cache embeddings: {e}");
        }
    }
    Ok(v)
}
