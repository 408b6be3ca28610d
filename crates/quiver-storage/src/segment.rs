//! Sealed segments: immutable, self-describing directories, opened in O(1) and read lazily.
//!
//! ```text
//! segments/seg-000000000000002a/
//!   meta.json        format, rows, and every other file's length and xxh3-64 checksum
//!   ids.bin          per row: seq u64 | key_len u16 | key bytes            (see doc.rs for keys)
//!   ids.off          (rows+1) u64: offset of each row's entry in ids.bin    (format 2)
//!   ids.sorted       rows u32: the rows in key order, for lookups by id     (format 2)
//!   payload.bin      (rows+1) u64 offsets | concatenated JSON payloads
//!   vec.<field>.f32  rows x dim f32, little-endian, mmap-ed
//!   hnsw.<field>.bin HNSW graph (quiver-index format), for fields with an HNSW index
//!   codes.*, rot.*, multi.*, fde.*, text.<field>/   (codes.rs, multi.rs, text.rs)
//! ```
//! A segment is written into `<name>.tmp`, fsynced, and renamed; only then does the manifest name
//! it (`segment_write.rs`).
//!
//! **Opening reads `meta.json` and checks every file's length, nothing more**, so it costs the
//! same for ten rows or a billion. Each section is read on first use — ids, payloads (and their
//! indexes), a field's graph, codes, vector sets, text index — and its files are checksummed
//! then; a section that fails its checks is never served: its accessor answers as if it were
//! absent and the failure is kept, and [`Segment::errors`] (checked by the engine after every
//! request) turns it into an error naming the file. Files that stay memory-mapped and are paged in
//! on demand (`vec.*.f32`, `multi.*.f32`, `fde.*.f32`) are checksummed when written and by
//! [`Segment::verify`] (`quiver collection verify`), never on the read path, which would read
//! them whole.

use crate::dense_index::DenseIndex;
use crate::doc::DocId;
use crate::files::{failed, map_file, Failed, Section, SegmentFiles};
use crate::filter::Filter;
use crate::payload_index::PayloadIndex;
use crate::reader::{Handle, MultiIndex, SegmentReader, VectorIndex};
use crate::schema::Schema;
pub(crate) use crate::segment_write::{corrupt, sync_dir, write_file, FileMeta, SegmentMeta};
pub use crate::segment_write::{NoProgress, Progress, SegmentData};
use crate::{io_err, StorageError};
use memmap2::Mmap;
use quiver_index::{Bitset, Hnsw, Vectors};
use quiver_text::TextSource;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

/// Deleted-at marker for a live row.
pub const LIVE: u64 = u64::MAX;

/// A little-endian integer column: mapped from a file, or built in memory (format-1 segments).
enum Column {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Column {
    fn bytes(&self) -> &[u8] {
        match self {
            Column::Mapped(m) => m,
            Column::Owned(v) => v,
        }
    }
    fn u64_at(&self, i: usize) -> u64 {
        let b = self.bytes();
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[i * 8..i * 8 + 8]);
        u64::from_le_bytes(a)
    }
    fn u32_at(&self, i: usize) -> u32 {
        let b = self.bytes();
        u32::from_le_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]])
    }
}

/// The ids section: `ids.bin` plus per-row offsets and the rows in key order.
struct Ids {
    raw: Column,
    offsets: Column,
    sorted: Column,
}

impl Ids {
    fn key(&self, row: usize) -> &[u8] {
        let at = self.offsets.u64_at(row) as usize;
        let b = self.raw.bytes();
        let len = u16::from_le_bytes([b[at + 8], b[at + 9]]) as usize;
        &b[at + 10..at + 10 + len]
    }
    fn seq(&self, row: usize) -> u64 {
        let at = self.offsets.u64_at(row) as usize;
        let mut a = [0u8; 8];
        a.copy_from_slice(&self.raw.bytes()[at..at + 8]);
        u64::from_le_bytes(a)
    }
}

/// An open sealed segment.
pub struct Segment {
    /// Directory name, e.g. `seg-000000000000002a`.
    pub name: String,
    schema: Schema,
    rows: usize,
    files: Arc<SegmentFiles>,
    /// Per row: the sequence number of the write that deleted or replaced it, or [`LIVE`].
    deleted_at: Vec<AtomicU64>,
    /// One index per dense field: vectors, graph, codes, rotation.
    dense: HashMap<String, DenseIndex>,
    payload: Option<Mmap>,
    ids: Section<Ids>,
    payload_checked: Section<()>,
    payload_index: OnceLock<PayloadIndex>,
    multi: Section<HashMap<String, crate::multi_store::SegmentMulti>>,
    text: Section<BTreeMap<String, quiver_text::SealedText>>,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name)
            .field("rows", &self.rows)
            .finish()
    }
}

/// The placeholder id answered for a row whose ids section failed its checks.
static UNREADABLE: DocId = DocId::Int(u64::MAX);

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

impl Segment {
    /// Writes a segment directory `segments_dir/name` (via `name.tmp` + rename) and opens it.
    pub fn write(
        schema: &Schema,
        segments_dir: &Path,
        name: &str,
        data: SegmentData,
        progress: &dyn Progress,
    ) -> Result<Segment, StorageError> {
        crate::segment_write::write_dir(schema, segments_dir, name, data, progress)?;
        Segment::open(schema, segments_dir, name)
    }

    /// Opens a segment directory: reads `meta.json` and checks each file's length (O(1) in the
    /// rows; see the module docs for when contents are checked).
    pub fn open(schema: &Schema, segments_dir: &Path, name: &str) -> Result<Segment, StorageError> {
        let dir = segments_dir.join(name);
        let meta_path = dir.join("meta.json");
        let meta_bytes = std::fs::read(&meta_path).map_err(io_err(&meta_path))?;
        let meta: SegmentMeta = serde_json::from_slice(&meta_bytes)
            .map_err(|e| corrupt(&meta_path, format!("unreadable: {e}")))?;
        if !(1..=crate::segment_write::SEGMENT_FORMAT).contains(&meta.format) {
            return Err(corrupt(
                &meta_path,
                format!("unsupported segment format {}", meta.format),
            ));
        }
        for (fname, fm) in &meta.files {
            let path = dir.join(fname);
            let len = std::fs::metadata(&path).map_err(io_err(&path))?.len();
            if len != fm.bytes {
                return Err(corrupt(
                    &path,
                    format!("truncated or resized: {len} bytes, expected {}", fm.bytes),
                ));
            }
        }
        let rows = meta.rows;
        // meta.json has no checksum of its own: bound `rows` by the ids file (>= 10 bytes per
        // row) before sizing anything by it.
        let ids_len = meta.files.get("ids.bin").map_or(0, |f| f.bytes as usize);
        if rows > ids_len / 10 {
            return Err(corrupt(
                &meta_path,
                format!("{rows} rows cannot fit in ids.bin of {ids_len} bytes"),
            ));
        }
        // Fields still being backfilled that this segment was written without.
        let schema = &schema.for_segment(|f| meta.files.contains_key(f));
        let files = Arc::new(SegmentFiles {
            dir,
            files: meta.files,
        });
        let mut dense = HashMap::new();
        for f in schema.dense_fields() {
            let name = f.name.clone();
            dense.insert(name, DenseIndex::open(f, rows, files.clone())?);
        }
        let payload = files.mapped("payload.bin")?;
        Ok(Segment {
            name: name.to_string(),
            schema: schema.clone(),
            rows,
            files,
            deleted_at: (0..rows).map(|_| AtomicU64::new(LIVE)).collect(),
            dense,
            payload,
            ids: OnceLock::new(),
            payload_checked: OnceLock::new(),
            payload_index: OnceLock::new(),
            multi: OnceLock::new(),
            text: OnceLock::new(),
        })
    }

    fn load_ids(&self) -> Result<Ids, StorageError> {
        let rows = self.rows;
        let ids_path = self.files.dir.join("ids.bin");
        let raw = self
            .files
            .checked("ids.bin")?
            .map_or(Column::Owned(Vec::new()), Column::Mapped);
        if self.files.files.contains_key("ids.off") {
            let col = |m: Option<Mmap>| m.map_or(Column::Owned(Vec::new()), Column::Mapped);
            let offsets = col(self.files.checked("ids.off")?);
            let sorted = col(self.files.checked("ids.sorted")?);
            let ok = offsets.bytes().len() == (rows + 1) * 8
                && sorted.bytes().len() == rows * 4
                && offsets.u64_at(rows) as usize == raw.bytes().len();
            if !ok {
                return Err(corrupt(
                    &ids_path,
                    "ids.off / ids.sorted do not match ids.bin",
                ));
            }
            return Ok(Ids {
                raw,
                offsets,
                sorted,
            });
        }
        // Format 1: offsets and key order are built here, once.
        let b = raw.bytes();
        let mut off = Vec::with_capacity((rows + 1) * 8);
        let mut pos = 0usize;
        for _ in 0..rows {
            let h = b
                .get(pos..pos + 10)
                .ok_or_else(|| corrupt(&ids_path, "truncated"))?;
            let klen = u16::from_le_bytes([h[8], h[9]]) as usize;
            let key = b
                .get(pos + 10..pos + 10 + klen)
                .ok_or_else(|| corrupt(&ids_path, "truncated key"))?;
            DocId::from_key(key).map_err(|_| corrupt(&ids_path, "bad id key"))?;
            off.extend_from_slice(&(pos as u64).to_le_bytes());
            pos += 10 + klen;
        }
        if pos != b.len() {
            return Err(corrupt(&ids_path, "trailing bytes"));
        }
        off.extend_from_slice(&(pos as u64).to_le_bytes());
        let mut ids = Ids {
            raw,
            offsets: Column::Owned(off),
            sorted: Column::Owned(Vec::new()),
        };
        let mut order: Vec<u32> = (0..rows as u32).collect();
        order.sort_by(|&a, &b| ids.key(a as usize).cmp(ids.key(b as usize)));
        ids.sorted = Column::Owned(order.iter().flat_map(|r| r.to_le_bytes()).collect());
        Ok(ids)
    }

    fn ids(&self) -> Option<&Ids> {
        self.ids
            .get_or_init(|| self.load_ids().map_err(Failed::from))
            .as_ref()
            .ok()
    }

    /// Row count (live or not).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Id of `row`.
    pub fn id(&self, row: u32) -> DocId {
        self.ids()
            .and_then(|ids| DocId::from_key(ids.key(row as usize)).ok())
            .unwrap_or_else(|| UNREADABLE.clone())
    }

    /// Sequence number of `row`.
    pub fn seq(&self, row: u32) -> u64 {
        self.ids().map_or(0, |ids| ids.seq(row as usize))
    }

    /// The row holding `id` (a segment holds each id at most once), live or not: a binary search
    /// of `ids.sorted`.
    pub fn find_row(&self, id: &DocId) -> Option<u32> {
        let ids = self.ids()?;
        let key = id.to_key();
        let (mut lo, mut hi) = (0usize, self.rows);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let row = ids.sorted.u32_at(mid);
            match ids.key(row as usize).cmp(&key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(row),
            }
        }
        None
    }

    fn payload_bytes(&self) -> Option<&[u8]> {
        let ok = self.payload_checked.get_or_init(|| {
            self.files
                .checked("payload.bin")
                .map(|_| ())
                .map_err(Failed::from)
        });
        ok.as_ref().ok()?;
        Some(self.payload.as_deref().unwrap_or(&[]))
    }

    /// Payload of `row` (empty if its section failed its checks; see [`Segment::errors`]).
    pub fn payload(&self, row: u32) -> Map<String, Value> {
        let Some(b) = self.payload_bytes() else {
            return Map::new();
        };
        read_payload(b, self.rows, row, &self.files.dir.join("payload.bin")).unwrap_or_default()
    }

    /// Payload indexes (built on first use from the payloads).
    pub fn payload_index(&self) -> &PayloadIndex {
        self.payload_index.get_or_init(|| {
            let payloads: Vec<Map<String, Value>> =
                (0..self.rows as u32).map(|r| self.payload(r)).collect();
            PayloadIndex::build(&self.schema, &payloads)
        })
    }

    /// The index of dense field `field`: vectors, graph, codes and rotation (`None` for a
    /// field the schema lacks).
    pub fn dense_index(&self, field: &str) -> Option<&DenseIndex> {
        self.dense.get(field)
    }

    /// Vectors of a dense field.
    pub fn vectors(&self, field: &str) -> Option<Vectors<'_>> {
        self.dense.get(field)?.vectors()
    }

    /// HNSW graph of a dense field, if it has one (read and checked on first use).
    pub fn graph(&self, field: &str) -> Option<&Hnsw> {
        self.dense.get(field)?.graph()
    }

    /// Compact codes of a dense field (one entry per declared codec; empty if none).
    pub fn codes(&self, field: &str) -> &[crate::codes::FieldCodes] {
        self.dense.get(field).map_or(&[], |d| d.codes())
    }

    /// The PCA rotation the codes of `field` were computed under (`rotation = "pca"`).
    pub fn rotation(&self, field: &str) -> Option<&quiver_linalg::pca::Pca> {
        self.dense.get(field)?.pca()
    }

    fn multi_all(&self) -> Option<&HashMap<String, crate::multi_store::SegmentMulti>> {
        self.multi
            .get_or_init(|| {
                let load = || -> Result<_, StorageError> {
                    let mut maps = HashMap::new();
                    for (fname, fm) in &self.files.files {
                        let is_multi = fname.starts_with("multi.")
                            || fname.starts_with("fde.")
                            || fname.starts_with("hnsw.fde.");
                        if !is_multi || fm.bytes == 0 {
                            continue;
                        }
                        // Vector data stays mapped and unchecked here (see the module docs).
                        let m = if fname.ends_with(".f32") {
                            map_file(&self.files.dir.join(fname))?
                        } else {
                            self.files
                                .checked(fname)?
                                .ok_or_else(|| corrupt(&self.files.dir.join(fname), "empty"))?
                        };
                        maps.insert(fname.clone(), m);
                    }
                    crate::multi_store::open_segment_files(
                        &self.schema,
                        &self.files.dir,
                        self.rows,
                        &mut maps,
                    )
                };
                load().map_err(Failed::from)
            })
            .as_ref()
            .ok()
    }

    pub(crate) fn multi_store(&self, field: &str) -> Option<&crate::multi_store::SegmentMulti> {
        self.multi_all()?.get(field)
    }

    /// Vector sets of a multi field.
    pub fn multi(&self, field: &str) -> Option<quiver_index::MultiVectors<'_>> {
        self.multi_store(field).and_then(|m| m.vectors())
    }

    /// MUVERA encodings of a multi field and their HNSW graph, if built.
    pub fn fde(&self, field: &str) -> Option<(Vectors<'_>, Option<&Hnsw>)> {
        self.multi_store(field).and_then(|m| m.fde())
    }

    /// The text index of a text field (opened and checked on first use).
    pub fn text(&self, field: &str) -> Option<&quiver_text::SealedText> {
        self.text
            .get_or_init(|| {
                let load = || -> Result<_, StorageError> {
                    for f in self.schema.text_fields() {
                        self.files.checked_all(&format!("text.{}/", f.name))?;
                    }
                    crate::text::open_text_indexes(&self.schema, &self.files.dir, self.rows)
                };
                load().map_err(Failed::from)
            })
            .as_ref()
            .ok()?
            .get(field)
    }

    /// Rows visible in a snapshot taken at sequence number `at`.
    pub fn visible_rows(&self, at: u64) -> usize {
        (0..self.rows as u32)
            .filter(|&r| self.visible(r, at))
            .count()
    }

    /// Whether the segment holds field `name` of the schema it was opened under (`false` for a
    /// field added since it was written, until the backfill installs its files).
    pub fn has_field(&self, name: &str) -> bool {
        self.schema.fields.contains_key(name)
    }

    /// The segment's files as listed in its `meta.json` (lengths and checksums).
    pub(crate) fn file_meta(&self) -> &BTreeMap<String, crate::segment_write::FileMeta> {
        &self.files.files
    }

    /// The segment's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.files.dir
    }

    /// Bytes held in RAM for `field`: codes, graph, and the vectors when their tier is `ram`
    /// (sections not read yet count their files' sizes: what reading them will take; reporting
    /// never reads a section).
    pub fn ram_bytes(&self, field: &str) -> (usize, usize, usize) {
        self.dense.get(field).map_or((0, 0, 0), |d| d.ram_bytes())
    }

    /// Bytes of full vectors of `field` left on disk (memory-mapped, paged in on demand).
    pub fn mapped_bytes(&self, field: &str) -> usize {
        self.dense.get(field).map_or(0, |d| d.mapped_bytes())
    }

    /// Bytes of every file of the segment on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.files.files.values().map(|f| f.bytes).sum()
    }

    /// Whether `row` is visible in a snapshot taken at sequence number `at`.
    #[inline]
    pub fn visible(&self, row: u32, at: u64) -> bool {
        self.deleted_at[row as usize].load(Relaxed) > at
    }

    /// Whether `row` is live now (deleted or replaced by no write).
    pub(crate) fn is_live(&self, row: u32) -> bool {
        self.deleted_at[row as usize].load(Relaxed) == LIVE
    }

    /// The sequence number of the write that deleted or replaced `row` ([`LIVE`] if none has).
    pub(crate) fn deleted_at(&self, row: u32) -> u64 {
        self.deleted_at[row as usize].load(Relaxed)
    }

    /// Rows deleted or replaced so far.
    pub(crate) fn deleted_rows(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.rows as u32).filter(|&r| !self.is_live(r))
    }

    /// Marks `row` deleted (or replaced) by the write with sequence number `seq`; 0 for a delete
    /// older than every snapshot (read from a deletes file).
    pub(crate) fn mark_deleted(&self, row: u32, seq: u64) {
        self.deleted_at[row as usize].fetch_min(seq, Relaxed);
    }

    /// Bytes of index structures in memory (graphs; files' sizes for those not read yet).
    pub fn graph_bytes(&self) -> usize {
        let dense: usize = self.dense.values().map(|d| d.ram_bytes().1).sum();
        let multi = match self.multi.get() {
            Some(Ok(m)) => m.values().map(|m| m.graph_bytes()).sum::<usize>(),
            _ => self
                .files
                .files
                .iter()
                .filter(|(n, _)| n.starts_with("hnsw.fde."))
                .map(|(_, f)| f.bytes as usize)
                .sum(),
        };
        dense + multi
    }

    /// Sections that failed their checks so far, as errors naming their files.
    pub fn errors(&self) -> Vec<StorageError> {
        let mut all: Vec<&Failed> = Vec::new();
        all.extend(failed(&self.ids));
        all.extend(failed(&self.payload_checked));
        all.extend(self.dense.values().flat_map(|d| d.failures()));
        all.extend(failed(&self.multi));
        all.extend(failed(&self.text));
        all.into_iter().map(Failed::error).collect()
    }

    /// Checks every file against `meta.json` (the mapped vector files included) and loads every
    /// section; returns every failure, each naming its file.
    pub fn verify(&self) -> Vec<StorageError> {
        let mut out: Vec<StorageError> = self
            .files
            .files
            .keys()
            .filter_map(|f| self.files.checked(f).err())
            .collect();
        self.ids();
        self.payload_bytes();
        for d in self.dense.values() {
            d.load_all();
        }
        self.multi_all();
        for f in self.schema.text_fields() {
            self.text(&f.name);
        }
        for e in self.errors() {
            if !out.iter().any(|o| o.to_string() == e.to_string()) {
                out.push(e);
            }
        }
        out
    }
}

impl SegmentReader for Segment {
    fn name(&self) -> &str {
        &self.name
    }

    fn rows(&self) -> usize {
        self.rows
    }

    fn id(&self, row: u32) -> DocId {
        Segment::id(self, row)
    }

    fn seq(&self, row: u32) -> u64 {
        Segment::seq(self, row)
    }

    #[inline]
    fn visible(&self, row: u32, at: u64) -> bool {
        Segment::visible(self, row, at)
    }

    fn find(&self, id: &DocId, at: u64) -> Option<u32> {
        self.find_row(id).filter(|&r| self.visible(r, at))
    }

    fn payload(&self, row: u32) -> Map<String, Value> {
        Segment::payload(self, row)
    }

    fn dense(&self, field: &str) -> Option<Handle<'_, dyn VectorIndex + '_>> {
        let d = self.dense.get(field).filter(|d| d.has_vectors())?;
        Some(Handle::Ref(d))
    }

    fn multi(&self, field: &str) -> Option<Handle<'_, dyn MultiIndex + '_>> {
        let m = self.multi_store(field).filter(|m| m.vectors().is_some())?;
        Some(Handle::Ref(m))
    }

    fn text(&self, field: &str) -> Vec<(u32, &dyn TextSource)> {
        Segment::text(self, field)
            .map(|t| (0, t as &dyn TextSource))
            .into_iter()
            .collect()
    }

    /// From the payload indexes, then visibility.
    fn allowed(&self, filter: Option<&Filter>, at: u64) -> Bitset {
        let mut b = match filter {
            Some(f) => self
                .payload_index()
                .evaluate(f, &|r| Some(Segment::payload(self, r))),
            None => Bitset::full(self.rows),
        };
        for r in 0..self.rows as u32 {
            if !self.visible(r, at) {
                b.remove(r);
            }
        }
        b
    }
}
