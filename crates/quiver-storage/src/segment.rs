//! Sealed segments: immutable, self-describing directories.
//!
//! ```text
//! segments/seg-000000000000002a/
//!   meta.json        format, rows, and every other file's length and xxh3-64 checksum
//!   ids.bin          per row: seq u64 | key_len u16 | key bytes            (see doc.rs for keys)
//!   payload.bin      (rows+1) u64 offsets | concatenated JSON payloads
//!   vec.<field>.f32  rows x dim f32, little-endian, mmap-ed
//!   hnsw.<field>.bin HNSW graph (quiver-index format), for fields with an HNSW index
//! ```
//! A segment is written into `<name>.tmp`, fsynced, and renamed; only then does the manifest name
//! it. On open every file is checked against `meta.json`; a mismatch is reported with the file's
//! path and the segment is never served.

use crate::doc::DocId;
use crate::payload_index::PayloadIndex;
use crate::schema::Schema;
use crate::{io_err, StorageError};
use memmap2::Mmap;
use quiver_index::{Hnsw, Vectors};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Deleted-at marker for a live row.
pub const LIVE: u64 = u64::MAX;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct FileMeta {
    bytes: u64,
    xxh3: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct SegmentMeta {
    format: u32,
    rows: usize,
    files: BTreeMap<String, FileMeta>,
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

enum VecStore {
    /// `vectors = "disk"`: the mapped file.
    Mapped(Mmap),
    /// `vectors = "ram"`: copied into process memory at open.
    Owned(Vec<f32>),
}

/// An open sealed segment.
pub struct Segment {
    /// Directory name, e.g. `seg-000000000000002a`.
    pub name: String,
    dir: PathBuf,
    ids: Vec<DocId>,
    /// Row of each id, built on the first lookup by id.
    id_index: std::sync::OnceLock<HashMap<DocId, u32>>,
    seqs: Vec<u64>,
    /// Per row: the sequence number of the write that deleted or replaced it, or [`LIVE`].
    deleted_at: Vec<AtomicU64>,
    vectors: HashMap<String, (VecStore, usize)>,
    graphs: HashMap<String, Hnsw>,
    multi: HashMap<String, crate::multi::SegmentMulti>,
    codes: HashMap<String, crate::codes::SegmentCodes>,
    payload: Mmap,
    payload_index: PayloadIndex,
    /// Text indexes by text field (see `text.rs`).
    pub(crate) text: BTreeMap<String, quiver_text::SealedText>,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name)
            .field("rows", &self.ids.len())
            .finish()
    }
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

/// Payload of `row` from a `payload.bin` image of `rows` rows: `(rows+1)` u64 offsets, then JSON.
fn read_payload(
    payload: &[u8],
    rows: usize,
    row: u32,
    path: &Path,
) -> Result<Map<String, Value>, StorageError> {
    let off = |i: usize| -> Result<usize, StorageError> {
        let b = payload
            .get(i * 8..i * 8 + 8)
            .ok_or_else(|| corrupt(path, "offsets truncated"))?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a) as usize)
    };
    let base = (rows + 1) * 8;
    let (s, e) = (off(row as usize)?, off(row as usize + 1)?);
    let bytes = payload
        .get(base + s..base + e)
        .filter(|_| s <= e)
        .ok_or_else(|| corrupt(path, format!("row {row}: payload offsets out of range")))?;
    serde_json::from_slice(bytes).map_err(|e| corrupt(path, format!("row {row}: {e}")))
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

fn map_file(path: &Path) -> Result<Mmap, StorageError> {
    let f = File::open(path).map_err(io_err(path))?;
    // SAFETY: sealed segment files are never modified after they are renamed into place (they are
    // only ever deleted, which keeps existing mappings valid on POSIX systems).
    unsafe { Mmap::map(&f) }.map_err(io_err(path))
}

impl Segment {
    /// Writes a segment directory `segments_dir/name` (via `name.tmp` + rename) and opens it.
    pub fn write(
        schema: &Schema,
        segments_dir: &Path,
        name: &str,
        data: SegmentData,
        progress: &dyn Progress,
    ) -> Result<Segment, StorageError> {
        let rows = data.ids.len();
        let tmp = segments_dir.join(format!("{name}.tmp"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let mut files = BTreeMap::new();
        let seed = 0x5157_4552 ^ rows as u64;
        let build = |f: &crate::schema::DenseField, v: &[f32], params| {
            progress.start(&format!("HNSW {} ({rows} vectors)", f.name), rows as u64);
            let g =
                Hnsw::build_with_progress(Vectors::new(v, f.dim), f.metric, params, seed, &|n| {
                    progress.inc(n)
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
                let g = build(&f, v, params);
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
            if v.len() != rows * f.dim {
                return Err(StorageError::Corrupt {
                    file: tmp.display().to_string(),
                    msg: format!("field {}: {} floats for {rows} rows", f.name, v.len()),
                });
            }
            write_file(
                &tmp,
                &format!("vec.{}.f32", f.name),
                &f32_bytes(v),
                &mut files,
            )?;
            if let Some(params) = f.index.hnsw_params() {
                let g = match graphs.remove(&f.name) {
                    Some(g) => g,
                    None => build(&f, v, params),
                };
                write_file(
                    &tmp,
                    &format!("hnsw.{}.bin", f.name),
                    &g.to_bytes(),
                    &mut files,
                )?;
            }
            crate::codes::write(&tmp, &f, v, rows, seed, &mut files)?;
        }
        crate::multi::write_segment_files(schema, &tmp, rows, &data.multi, &mut files, progress)?;
        for (fname, bytes, xxh3) in crate::text::write_text_indexes(schema, &tmp, &data.payloads)? {
            files.insert(fname, FileMeta { bytes, xxh3 });
        }
        let meta = SegmentMeta {
            format: 1,
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
        Segment::open(schema, segments_dir, name)
    }

    /// Opens and verifies a segment directory.
    pub fn open(schema: &Schema, segments_dir: &Path, name: &str) -> Result<Segment, StorageError> {
        let dir = segments_dir.join(name);
        let meta_path = dir.join("meta.json");
        let meta_bytes = std::fs::read(&meta_path).map_err(io_err(&meta_path))?;
        let meta: SegmentMeta = serde_json::from_slice(&meta_bytes)
            .map_err(|e| corrupt(&meta_path, format!("unreadable: {e}")))?;
        if meta.format != 1 {
            return Err(corrupt(
                &meta_path,
                format!("unsupported segment format {}", meta.format),
            ));
        }
        let mut maps: HashMap<String, Mmap> = HashMap::new();
        for (fname, fm) in &meta.files {
            let path = dir.join(fname);
            let len = std::fs::metadata(&path).map_err(io_err(&path))?.len();
            if len != fm.bytes {
                return Err(corrupt(
                    &path,
                    format!("truncated or resized: {len} bytes, expected {}", fm.bytes),
                ));
            }
            let m = if len == 0 {
                None
            } else {
                Some(map_file(&path)?)
            };
            let sum = format!(
                "{:016x}",
                xxhash_rust::xxh3::xxh3_64(m.as_deref().unwrap_or(&[]))
            );
            if sum != fm.xxh3 {
                return Err(corrupt(
                    &path,
                    format!("checksum mismatch: {sum}, expected {}", fm.xxh3),
                ));
            }
            if let Some(m) = m {
                maps.insert(fname.clone(), m);
            }
        }
        let rows = meta.rows;
        // meta.json has no checksum of its own: bound `rows` by the checked ids file (>= 10 bytes
        // per row) before sizing anything by it.
        let ids_len = maps.get("ids.bin").map_or(0, |m| m.len());
        if rows > ids_len / 10 {
            return Err(corrupt(
                &meta_path,
                format!("{rows} rows cannot fit in ids.bin of {ids_len} bytes"),
            ));
        }
        let ids_path = dir.join("ids.bin");
        let ids_raw = maps
            .get("ids.bin")
            .ok_or_else(|| corrupt(&ids_path, "missing from segment"))?;
        let (mut ids, mut seqs) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
        let mut pos = 0usize;
        for _ in 0..rows {
            let h = ids_raw
                .get(pos..pos + 10)
                .ok_or_else(|| corrupt(&ids_path, "truncated"))?;
            let mut a = [0u8; 8];
            a.copy_from_slice(&h[..8]);
            let klen = u16::from_le_bytes([h[8], h[9]]) as usize;
            let key = ids_raw
                .get(pos + 10..pos + 10 + klen)
                .ok_or_else(|| corrupt(&ids_path, "truncated key"))?;
            seqs.push(u64::from_le_bytes(a));
            ids.push(DocId::from_key(key).map_err(|_| corrupt(&ids_path, "bad id key"))?);
            pos += 10 + klen;
        }
        if pos != ids_raw.len() {
            return Err(corrupt(&ids_path, "trailing bytes"));
        }

        let mut vectors = HashMap::new();
        let mut graphs = HashMap::new();
        let mut codes = HashMap::new();
        for f in schema.dense_fields() {
            codes.insert(f.name.clone(), crate::codes::open(&dir, &f, &maps, rows)?);
            let fname = format!("vec.{}.f32", f.name);
            let path = dir.join(&fname);
            let m = maps
                .remove(&fname)
                .ok_or_else(|| corrupt(&path, "missing from segment"))?;
            if m.len() != rows * f.dim * 4 {
                return Err(corrupt(
                    &path,
                    format!("{} bytes for {rows} rows of dim {}", m.len(), f.dim),
                ));
            }
            if f.index.hnsw_params().is_some() {
                let gname = format!("hnsw.{}.bin", f.name);
                let gpath = dir.join(&gname);
                let raw = maps
                    .get(&gname)
                    .ok_or_else(|| corrupt(&gpath, "missing from segment"))?;
                let g = Hnsw::from_bytes(raw).map_err(|e| corrupt(&gpath, e.to_string()))?;
                if g.capacity() != rows {
                    return Err(corrupt(
                        &gpath,
                        format!("graph of {} nodes for {rows} rows", g.capacity()),
                    ));
                }
                graphs.insert(f.name.clone(), g);
            }
            let store = match f.vectors {
                crate::tiers::VectorTier::Disk => VecStore::Mapped(m),
                crate::tiers::VectorTier::Ram => VecStore::Owned(
                    m.chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                ),
            };
            vectors.insert(f.name.clone(), (store, f.dim));
        }

        let multi = crate::multi::open_segment_files(schema, &dir, rows, &mut maps)?;
        let payload = maps
            .remove("payload.bin")
            .ok_or_else(|| corrupt(&dir.join("payload.bin"), "missing from segment"))?;
        let payload_path = dir.join("payload.bin");
        let payloads: Vec<Map<String, Value>> = (0..rows as u32)
            .map(|r| read_payload(&payload, rows, r, &payload_path))
            .collect::<Result<_, _>>()?;
        let payload_index = PayloadIndex::build(schema, &payloads);
        let text = crate::text::open_text_indexes(schema, &dir, rows)?;
        Ok(Segment {
            name: name.to_string(),
            dir: dir.clone(),
            ids,
            id_index: std::sync::OnceLock::new(),
            seqs,
            deleted_at: (0..rows).map(|_| AtomicU64::new(LIVE)).collect(),
            vectors,
            graphs,
            multi,
            codes,
            payload,
            payload_index,
            text,
        })
    }

    fn payload_checked(&self, row: u32) -> Result<Map<String, Value>, StorageError> {
        read_payload(
            &self.payload,
            self.ids.len(),
            row,
            &self.dir.join("payload.bin"),
        )
    }

    /// Row count (live or not).
    pub fn rows(&self) -> usize {
        self.ids.len()
    }

    /// Id of `row`.
    pub fn id(&self, row: u32) -> &DocId {
        &self.ids[row as usize]
    }

    /// Sequence number of `row`.
    pub fn seq(&self, row: u32) -> u64 {
        self.seqs[row as usize]
    }

    /// The row holding `id` (a segment holds each id at most once), live or not.
    pub fn find_row(&self, id: &DocId) -> Option<u32> {
        self.id_index
            .get_or_init(|| {
                self.ids
                    .iter()
                    .enumerate()
                    .map(|(r, id)| (id.clone(), r as u32))
                    .collect()
            })
            .get(id)
            .copied()
    }

    /// Payload of `row` (empty if unreadable; integrity was checked at open).
    pub fn payload(&self, row: u32) -> Map<String, Value> {
        self.payload_checked(row).unwrap_or_default()
    }

    /// Vectors of a dense field.
    pub fn vectors(&self, field: &str) -> Option<Vectors<'_>> {
        self.vectors.get(field).map(|(store, dim)| match store {
            VecStore::Mapped(m) => {
                // SAFETY: the mapping is page-aligned (so 4-byte aligned), its length was checked
                // to be rows*dim*4 at open, f32 has no invalid bit patterns, and files are
                // little-endian which is asserted at compile time for this crate (see lib.rs).
                let floats =
                    unsafe { std::slice::from_raw_parts(m.as_ptr() as *const f32, m.len() / 4) };
                Vectors::new(floats, *dim)
            }
            VecStore::Owned(v) => Vectors::new(v, *dim),
        })
    }

    /// HNSW graph of a dense field, if it has one.
    pub fn graph(&self, field: &str) -> Option<&Hnsw> {
        self.graphs.get(field)
    }

    /// Vector sets of a multi field.
    pub fn multi(&self, field: &str) -> Option<quiver_index::MultiVectors<'_>> {
        self.multi.get(field).and_then(|m| m.vectors())
    }

    /// MUVERA encodings of a multi field and their HNSW graph, if built.
    pub fn fde(&self, field: &str) -> Option<(Vectors<'_>, Option<&Hnsw>)> {
        self.multi.get(field).and_then(|m| m.fde())
    }

    pub(crate) fn multi_store(&self, field: &str) -> Option<&crate::multi::SegmentMulti> {
        self.multi.get(field)
    }

    pub(crate) fn multi_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.multi.keys().cloned().collect();
        v.sort();
        v
    }

    /// Compact codes of a dense field (one entry per declared codec; empty if none).
    pub fn codes(&self, field: &str) -> &[crate::codes::FieldCodes] {
        self.codes.get(field).map_or(&[], |c| c.codecs.as_slice())
    }

    /// The PCA rotation the codes of `field` were computed under (`rotation = "pca"`).
    pub fn rotation(&self, field: &str) -> Option<&quiver_linalg::pca::Pca> {
        self.codes.get(field).and_then(|c| c.rotation.as_ref())
    }

    /// Bytes held in RAM for `field`: codes, graph, and the vectors when their tier is `ram`.
    pub fn ram_bytes(&self, field: &str) -> (usize, usize, usize) {
        let codes = self
            .codes(field)
            .iter()
            .map(|c| c.ram_bytes())
            .sum::<usize>()
            + self.rotation(field).map_or(0, |p| p.dim() * p.dim() * 4);
        let graph = self.graphs.get(field).map_or(0, |g| g.stats().bytes);
        let vecs = match self.vectors.get(field) {
            Some((VecStore::Owned(v), _)) => v.len() * 4,
            _ => 0,
        };
        (codes, graph, vecs)
    }

    /// Bytes of full vectors of `field` left on disk (memory-mapped, paged in on demand).
    pub fn mapped_bytes(&self, field: &str) -> usize {
        match self.vectors.get(field) {
            Some((VecStore::Mapped(m), _)) => m.len(),
            _ => 0,
        }
    }

    /// Payload indexes.
    pub fn payload_index(&self) -> &PayloadIndex {
        &self.payload_index
    }

    /// Whether `row` is visible in a snapshot taken at sequence number `at`.
    #[inline]
    pub fn visible(&self, row: u32, at: u64) -> bool {
        self.deleted_at[row as usize].load(Relaxed) > at
    }

    /// Marks `row` deleted (or replaced) by the write with sequence number `seq`.
    pub(crate) fn mark_deleted(&self, row: u32, seq: u64) {
        self.deleted_at[row as usize].fetch_min(seq, Relaxed);
    }

    /// Bytes of index structures held in memory (graphs), for reporting.
    pub fn graph_bytes(&self) -> usize {
        self.graphs.values().map(|g| g.stats().bytes).sum::<usize>()
            + self.multi.values().map(|m| m.graph_bytes()).sum::<usize>()
    }
}
