//! Writing a sealed segment: the columns of a batch of rows become an immutable directory.
//!
//! Rows are stored in the breadth-first order of the first HNSW graph; every file is written,
//! fsynced and checksummed into `meta.json`; the directory is written as `<name>.tmp` and renamed
//! into place (see `segment.rs` for the layout and the reader).

use crate::doc::DocId;
use crate::schema::{DenseField, Schema};
use crate::{io_err, StorageError};
use quiver_index::{Hnsw, Vectors};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Segment directory format this version writes: 2 adds `ids.off` and `ids.sorted`.
pub(crate) const SEGMENT_FORMAT: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FileMeta {
    pub(crate) bytes: u64,
    pub(crate) xxh3: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SegmentMeta {
    pub(crate) format: u32,
    pub(crate) rows: usize,
    pub(crate) files: BTreeMap<String, FileMeta>,
}

/// What a new segment is made of (row order).
pub struct SegmentData {
    /// Ids.
    pub ids: Vec<DocId>,
    /// Sequence numbers.
    pub seqs: Vec<u64>,
    /// Payloads.
    pub payloads: Vec<Map<String, Value>>,
    /// Row-major vectors per dense field.
    pub vectors: BTreeMap<String, Vec<f32>>,
    /// Vector sets per multi field.
    pub multi: BTreeMap<String, crate::multi::MultiColumn>,
    /// A graph of the first HNSW field over the first rows (a merge's largest input), extended
    /// with the other rows instead of building one from nothing.
    pub base_graph: Option<Hnsw>,
}

impl SegmentData {
    /// The same rows in the order `order` (new row `i` is old row `order[i]`).
    fn permuted(mut self, order: &[u32]) -> Self {
        let pick = |i: &u32| *i as usize;
        SegmentData {
            ids: order.iter().map(|i| self.ids[pick(i)].clone()).collect(),
            seqs: order.iter().map(|i| self.seqs[pick(i)]).collect(),
            payloads: order
                .iter()
                .map(|i| std::mem::take(&mut self.payloads[pick(i)]))
                .collect(),
            vectors: self
                .vectors
                .iter()
                .map(|(name, v)| {
                    let dim = v.len() / self.ids.len().max(1);
                    let mut out = Vec::with_capacity(v.len());
                    for &i in order {
                        out.extend_from_slice(&v[i as usize * dim..(i as usize + 1) * dim]);
                    }
                    (name.clone(), out)
                })
                .collect(),
            multi: self
                .multi
                .iter()
                .map(|(name, c)| (name.clone(), c.permuted(order)))
                .collect(),
            base_graph: None,
        }
    }
}

/// Receives progress of long work (index builds).
pub trait Progress: Send + Sync {
    /// A phase of `total` units starts.
    fn start(&self, label: &str, total: u64);
    /// `n` more units done.
    fn inc(&self, n: u64);
    /// The phase ended.
    fn finish(&self);
}

/// A [`Progress`] that shows nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64) {}
    fn inc(&self, _: u64) {}
    fn finish(&self) {}
}

pub(crate) fn write_file(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    files: &mut BTreeMap<String, FileMeta>,
) -> Result<(), StorageError> {
    let path = dir.join(name);
    let mut f = File::create(&path).map_err(io_err(&path))?;
    f.write_all(bytes).map_err(io_err(&path))?;
    f.sync_all().map_err(io_err(&path))?;
    files.insert(
        name.to_string(),
        FileMeta {
            bytes: bytes.len() as u64,
            xxh3: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes)),
        },
    );
    Ok(())
}

/// fsyncs a directory so that renames and creations in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err(dir))
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(crate) fn corrupt(path: &Path, msg: impl Into<String>) -> StorageError {
    StorageError::Corrupt {
        file: path.display().to_string(),
        msg: msg.into(),
    }
}

/// Writes a segment directory `segments_dir/name` (via `name.tmp` + rename).
pub(crate) fn write_dir(
    schema: &Schema,
    segments_dir: &Path,
    name: &str,
    data: SegmentData,
    progress: &dyn Progress,
) -> Result<(), StorageError> {
    let rows = data.ids.len();
    let tmp = segments_dir.join(format!("{name}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    let mut files = BTreeMap::new();
    let seed = segment_seed(rows);
    let build = |f: &DenseField, v: &[f32], params| build_graph(f, v, params, seed, progress);
    // The base graph's rows keep their links; the rest are inserted into it, in parallel.
    let extend = |mut g: Hnsw, f: &crate::schema::DenseField, v: &[f32]| {
        let have = g.capacity();
        progress.start(
            &format!("HNSW {} (+{} vectors into {have})", f.name, rows - have),
            (rows - have) as u64,
        );
        g.reserve(rows);
        let vectors = Vectors::new(v, f.dim);
        (have as u32..rows as u32)
            .into_par_iter()
            .chunks(256)
            .for_each(|ids| {
                for &id in &ids {
                    g.insert(vectors, id);
                }
                progress.inc(ids.len() as u64);
            });
        progress.finish();
        g
    };
    // Rows are stored in the breadth-first order of the first HNSW graph, so that rows searched
    // together sit together in memory (fewer cache misses); that graph is renumbered to match
    // and the other fields' graphs are built on the reordered rows.
    let mut graphs: BTreeMap<String, Hnsw> = BTreeMap::new();
    let mut data = data;
    if let Some((f, params)) = schema
        .dense_fields()
        .into_iter()
        .find_map(|f| f.index.hnsw_params().map(|p| (f, p)))
    {
        let v = data
            .vectors
            .get(&f.name)
            .map(|v| v.as_slice())
            .unwrap_or(&[]);
        if v.len() == rows * f.dim && rows > 0 {
            let g = match data.base_graph.take() {
                Some(base) if base.capacity() <= rows && base.params() == params => {
                    extend(base, &f, v)
                }
                _ => build(&f, v, params),
            };
            let order = g.bfs_order();
            if let Some(pg) = g.permuted(&order) {
                data = data.permuted(&order);
                graphs.insert(f.name.clone(), pg);
            }
        }
    }

    let mut ids = Vec::new();
    for (id, seq) in data.ids.iter().zip(&data.seqs) {
        let k = id.to_key();
        ids.extend_from_slice(&seq.to_le_bytes());
        ids.extend_from_slice(&(k.len() as u16).to_le_bytes());
        ids.extend_from_slice(&k);
    }
    write_file(&tmp, "ids.bin", &ids, &mut files)?;
    write_file(&tmp, "ids.off", &id_offsets(&data.ids), &mut files)?;
    write_file(&tmp, "ids.sorted", &sorted_rows(&data.ids), &mut files)?;

    let mut offsets = Vec::with_capacity((rows + 1) * 8);
    let mut body = Vec::new();
    for p in &data.payloads {
        offsets.extend_from_slice(&(body.len() as u64).to_le_bytes());
        serde_json::to_writer(&mut body, p).map_err(|e| StorageError::Io {
            path: tmp.display().to_string(),
            source: std::io::Error::other(e),
        })?;
    }
    offsets.extend_from_slice(&(body.len() as u64).to_le_bytes());
    offsets.extend_from_slice(&body);
    write_file(&tmp, "payload.bin", &offsets, &mut files)?;

    for f in schema.dense_fields() {
        let v = data
            .vectors
            .get(&f.name)
            .map(|v| v.as_slice())
            .unwrap_or(&[]);
        let graph = graphs.remove(&f.name);
        write_dense_field(&tmp, &f, v, rows, graph, progress, &mut files)?;
    }
    crate::multi_store::write_segment_files(schema, &tmp, rows, &data.multi, &mut files, progress)?;
    for (fname, bytes, xxh3) in crate::text::write_text_indexes(schema, &tmp, &data.payloads)? {
        files.insert(fname, FileMeta { bytes, xxh3 });
    }
    finish_dir(segments_dir, name, rows, files)
}

/// The seed of a segment's graphs and codecs (a function of its row count, so a rewrite of the
/// same rows builds the same structures).
fn segment_seed(rows: usize) -> u64 {
    0x5157_4552 ^ rows as u64
}

fn build_graph(
    f: &DenseField,
    v: &[f32],
    params: quiver_index::HnswParams,
    seed: u64,
    progress: &dyn Progress,
) -> Hnsw {
    let rows = v.len() / f.dim.max(1);
    progress.start(&format!("HNSW {} ({rows} vectors)", f.name), rows as u64);
    let g = Hnsw::build_with_progress(Vectors::new(v, f.dim), f.metric, params, seed, &|n| {
        progress.inc(n)
    });
    progress.finish();
    g
}

/// Writes dense field `f`'s files into segment directory `dir`: the vectors of `rows` rows,
/// the HNSW graph (`graph` if one was built over them already) and the codes.
pub(crate) fn write_dense_field(
    dir: &Path,
    f: &DenseField,
    v: &[f32],
    rows: usize,
    graph: Option<Hnsw>,
    progress: &dyn Progress,
    files: &mut BTreeMap<String, FileMeta>,
) -> Result<(), StorageError> {
    if v.len() != rows * f.dim {
        return Err(StorageError::Corrupt {
            file: dir.display().to_string(),
            msg: format!("field {}: {} floats for {rows} rows", f.name, v.len()),
        });
    }
    let seed = segment_seed(rows);
    write_file(dir, &format!("vec.{}.f32", f.stored), &f32_bytes(v), files)?;
    if let Some(params) = f.index.hnsw_params() {
        let g = match graph {
            Some(g) => g,
            None => build_graph(f, v, params, seed, progress),
        };
        write_file(dir, &format!("hnsw.{}.bin", f.stored), &g.to_bytes(), files)?;
    }
    crate::codes::write(dir, f, v, rows, seed, files)
}

/// Completes segment `name` written in `segments_dir/name.tmp`: writes `meta.json` listing
/// `files`, fsyncs, and renames the directory into place.
pub(crate) fn finish_dir(
    segments_dir: &Path,
    name: &str,
    rows: usize,
    files: BTreeMap<String, FileMeta>,
) -> Result<(), StorageError> {
    let tmp = segments_dir.join(format!("{name}.tmp"));
    let meta = SegmentMeta {
        format: SEGMENT_FORMAT,
        rows,
        files,
    };
    let meta_json = serde_json::to_vec_pretty(&meta).map_err(|e| StorageError::Io {
        path: tmp.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    let mut unused = BTreeMap::new();
    write_file(&tmp, "meta.json", &meta_json, &mut unused)?;
    sync_dir(&tmp)?;
    let dest = segments_dir.join(name);
    if dest.exists() {
        // Left by an earlier failed attempt and never named by a manifest.
        std::fs::remove_dir_all(&dest).map_err(io_err(&dest))?;
    }
    std::fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
    sync_dir(segments_dir)?;
    Ok(())
}

/// `ids.off`: the byte offset in `ids.bin` of each row's entry, then the file's length.
fn id_offsets(ids: &[DocId]) -> Vec<u8> {
    let mut out = Vec::with_capacity((ids.len() + 1) * 8);
    let mut pos = 0u64;
    for id in ids {
        out.extend_from_slice(&pos.to_le_bytes());
        pos += 10 + id.to_key().len() as u64;
    }
    out.extend_from_slice(&pos.to_le_bytes());
    out
}

/// `ids.sorted`: the rows in the order of their keys (u32 each), for lookups by id.
fn sorted_rows(ids: &[DocId]) -> Vec<u8> {
    let keys: Vec<Vec<u8>> = ids.iter().map(|id| id.to_key()).collect();
    let mut rows: Vec<u32> = (0..ids.len() as u32).collect();
    rows.sort_by(|&a, &b| keys[a as usize].cmp(&keys[b as usize]));
    rows.iter().flat_map(|r| r.to_le_bytes()).collect()
}
