//! The mutable segment: recent writes in memory, made durable by the write-ahead log (`wal.rs`)
//! before they are acknowledged.
//!
//! ```text
//! MutableSegment (frozen; one per published version)
//!   chunks: [Arc<Chunk> 0..1024) [Arc<Chunk> 1024..2048) ... [Arc<Chunk> last, partly filled)
//!            shared with older versions ─────────────────┘     copied when topped up
//! Chunk: ids | seqs | superseded_at (atomic) | payloads | vectors per field | multi sets per
//!        field | text index per text field (built when the rows are appended)
//! ```
//!
//! A reader never waits for a writer: a write builds a *new* `MutableSegment` that shares every
//! full chunk with the old one and copies only the last, partly filled chunk before appending, and
//! the collection publishes it with one pointer swap. Rows are append-only, so row numbers stay
//! valid from one version to the next; a replaced or deleted row gets the sequence number of the
//! write that superseded it (an atomic in the shared chunk), so a reader's snapshot (a sequence
//! number) decides what it sees. Text indexes are updated here, at upsert, never at query time.

use crate::doc::DocId;
use crate::multi::MultiColumn;
use crate::schema::Schema;
use crate::segment::LIVE;
use quiver_index::{MultiVectors, Vectors};
use quiver_text::MemText;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Rows per chunk. A write copies at most one partly filled chunk.
pub const CHUNK_ROWS: usize = 1024;

/// The codecs (and PCA rotation) a sealed segment trained, borrowed by the mutable segment: its
/// rows are encoded with them when they are appended, so a plan that scores sealed rows by codes
/// or rotated prefixes scores mutable rows the same way, and merges both on one scale.
#[derive(Debug)]
pub struct BorrowedCodes {
    fields: BTreeMap<String, BorrowedField>,
}

#[derive(Debug)]
struct BorrowedField {
    rotation: Option<quiver_linalg::pca::Pca>,
    /// Per schema codec of the field: (dims, codec), or `None` when the segment has none.
    codecs: Vec<Option<(usize, quiver_quant::Codec)>>,
}

impl BorrowedCodes {
    /// The codes of `seg` for every dense field that declares codecs or a rotation (`None` when
    /// no field does, or the segment has none).
    pub(crate) fn from_segment(
        schema: &Schema,
        seg: &crate::segment::Segment,
    ) -> Option<Arc<BorrowedCodes>> {
        let mut fields = BTreeMap::new();
        for f in schema.dense_fields() {
            if f.codecs.is_empty() && f.rotation == crate::tiers::Rotation::None {
                continue;
            }
            let have = seg.codes(&f.name);
            let codecs: Vec<_> = (0..f.codecs.len())
                .map(|i| have.get(i).map(|c| (c.dims, c.codec.clone())))
                .collect();
            let rotation = seg.rotation(&f.name).cloned();
            if rotation.is_some() || codecs.iter().any(|c| c.is_some()) {
                fields.insert(f.name.clone(), BorrowedField { rotation, codecs });
            }
        }
        (!fields.is_empty()).then(|| Arc::new(BorrowedCodes { fields }))
    }

    /// The rotation of dense field `field`.
    pub fn rotation(&self, field: &str) -> Option<&quiver_linalg::pca::Pca> {
        self.fields.get(field)?.rotation.as_ref()
    }

    /// Codec `idx` (schema order) of dense field `field` and the dimensions it encodes.
    pub fn codec(&self, field: &str, idx: usize) -> Option<(usize, &quiver_quant::Codec)> {
        self.fields
            .get(field)?
            .codecs
            .get(idx)?
            .as_ref()
            .map(|(d, c)| (*d, c))
    }
}

/// A row about to be appended: a document with its sequence number.
pub(crate) type NewRow = crate::doc::StoredDoc;

/// Up to [`CHUNK_ROWS`] consecutive rows of the mutable segment.
#[derive(Debug)]
pub struct Chunk {
    start: u32,
    ids: Vec<DocId>,
    seqs: Vec<u64>,
    superseded_at: Vec<AtomicU64>,
    payloads: Vec<Map<String, Value>>,
    vectors: BTreeMap<String, (Vec<f32>, usize)>,
    multi: BTreeMap<String, MultiColumn>,
    text: BTreeMap<String, MemText>,
    /// Last local row of each id in this chunk; `prev[r]` links to the id's previous row here.
    index: std::collections::HashMap<DocId, u32>,
    prev: Vec<u32>,
    /// Per dense field with borrowed codes: the codes of each codec (row-major; empty for a codec
    /// the segment lacks), and the rotated vectors when the field is rotated.
    codes: BTreeMap<String, Vec<Vec<u8>>>,
    rotated: BTreeMap<String, Vec<f32>>,
    bytes: usize,
}

impl Chunk {
    fn empty(schema: &Schema, start: u32) -> Chunk {
        Chunk {
            start,
            ids: Vec::new(),
            seqs: Vec::new(),
            superseded_at: Vec::new(),
            payloads: Vec::new(),
            vectors: schema
                .dense_fields()
                .into_iter()
                .map(|f| (f.name, (Vec::new(), f.dim)))
                .collect(),
            multi: crate::multi::columns(schema),
            text: schema
                .text_fields()
                .into_iter()
                .map(|f| (f.name, MemText::new()))
                .collect(),
            index: Default::default(),
            prev: Vec::new(),
            codes: BTreeMap::new(),
            rotated: BTreeMap::new(),
            bytes: 0,
        }
    }

    fn copy(&self) -> Chunk {
        Chunk {
            start: self.start,
            ids: self.ids.clone(),
            seqs: self.seqs.clone(),
            superseded_at: self
                .superseded_at
                .iter()
                .map(|a| AtomicU64::new(a.load(Relaxed)))
                .collect(),
            payloads: self.payloads.clone(),
            vectors: self.vectors.clone(),
            multi: self.multi.clone(),
            text: self.text.clone(),
            index: self.index.clone(),
            prev: self.prev.clone(),
            codes: self.codes.clone(),
            rotated: self.rotated.clone(),
            bytes: self.bytes,
        }
    }

    /// First row (of the mutable segment) in this chunk.
    pub fn start(&self) -> u32 {
        self.start
    }

    /// Rows in this chunk.
    pub fn rows(&self) -> usize {
        self.ids.len()
    }

    /// Whether local row `r` is visible at snapshot `at`.
    #[inline]
    pub fn visible(&self, r: u32, at: u64) -> bool {
        let r = r as usize;
        self.seqs[r] <= at && self.superseded_at[r].load(Relaxed) > at
    }

    /// Id of local row `r`.
    pub fn id(&self, r: u32) -> &DocId {
        &self.ids[r as usize]
    }

    /// Sequence number of local row `r`.
    pub fn seq(&self, r: u32) -> u64 {
        self.seqs[r as usize]
    }

    /// Payload of local row `r`.
    pub fn payload(&self, r: u32) -> &Map<String, Value> {
        &self.payloads[r as usize]
    }

    /// Vectors of dense field `field` (row-major, local rows).
    pub fn vectors(&self, field: &str) -> Option<Vectors<'_>> {
        self.vectors.get(field).map(|(v, d)| Vectors::new(v, *d))
    }

    /// Vector sets of multi field `field` (local rows).
    pub fn multi(&self, field: &str) -> Option<MultiVectors<'_>> {
        self.multi.get(field).map(|c| c.vectors.view())
    }

    /// Raw (pre-pruning) vector counts of multi field `field`.
    pub fn multi_raw(&self, field: &str) -> Option<&[u32]> {
        self.multi.get(field).map(|c| c.raw.as_slice())
    }

    /// The local row of `id` visible at snapshot `at`, if any.
    pub fn find(&self, id: &DocId, at: u64) -> Option<u32> {
        let mut r = *self.index.get(id)?;
        loop {
            if self.visible(r, at) {
                return Some(r);
            }
            r = self.prev[r as usize];
            if r == u32::MAX {
                return None;
            }
        }
    }

    /// The codes of codec `idx` of dense field `field` (borrowed codecs, local rows), if any.
    pub fn codes(&self, field: &str, idx: usize) -> Option<&[u8]> {
        self.codes
            .get(field)?
            .get(idx)
            .filter(|c| !c.is_empty())
            .map(|c| c.as_slice())
    }

    /// The rotated vectors of dense field `field` (borrowed rotation, local rows), if any.
    pub fn rotated(&self, field: &str) -> Option<Vectors<'_>> {
        let dim = self.vectors.get(field)?.1;
        self.rotated.get(field).map(|v| Vectors::new(v, dim))
    }

    /// Text index of text field `field` (local rows).
    pub fn text(&self, field: &str) -> Option<&MemText> {
        self.text.get(field)
    }

    /// Encodes a new row's vectors with the borrowed codecs (and rotation).
    fn encode(&mut self, schema: &Schema, borrowed: &BorrowedCodes, row: &NewRow) {
        for f in schema.dense_fields() {
            let (Some(b), Some(v)) = (borrowed.fields.get(&f.name), row.vectors.get(&f.name))
            else {
                continue;
            };
            let rotated = b.rotation.as_ref().map(|r| {
                let mut out = vec![0.0f32; f.dim];
                r.apply(v, &mut out);
                out
            });
            let base = rotated.as_deref().unwrap_or(v);
            let per = self.codes.entry(f.name.clone()).or_default();
            per.resize(b.codecs.len(), Vec::new());
            for (i, c) in b.codecs.iter().enumerate() {
                let Some((dims, codec)) = c else { continue };
                // Cannot fail for a validated row; zeros keep the rows aligned if it ever did.
                let code = quiver_quant::prefix::prefix_all(base, f.dim, *dims, f.metric)
                    .and_then(|p| codec.encode_all(&p))
                    .unwrap_or_else(|_| vec![0; codec.code_len()]);
                self.bytes += code.len();
                per[i].extend_from_slice(&code);
            }
            if let Some(r) = rotated {
                self.bytes += r.len() * 4;
                self.rotated
                    .entry(f.name.clone())
                    .or_default()
                    .extend_from_slice(&r);
            }
        }
    }

    fn push(
        &mut self,
        schema: &Schema,
        analyzers: &[(String, quiver_text::Analyzer)],
        row: NewRow,
    ) {
        let payload_bytes = serde_json::to_string(&row.payload).map_or(0, |s| s.len());
        self.bytes += payload_bytes + 64;
        for (name, (store, _)) in self.vectors.iter_mut() {
            if let Some(v) = row.vectors.get(name) {
                store.extend_from_slice(v);
                self.bytes += v.len() * 4;
            }
        }
        self.bytes += row
            .multi
            .values()
            .map(|s| s.iter().map(|v| v.len() * 4).sum::<usize>())
            .sum::<usize>();
        crate::multi::push_row(&mut self.multi, &row.multi, &row.multi_raw);
        for (name, analyzer) in analyzers {
            if let (Some(idx), Some(f)) = (self.text.get_mut(name), schema.text(name)) {
                idx.push(analyzer, &f.text_of(&row.payload));
            }
        }
        let local = self.ids.len() as u32;
        self.prev
            .push(self.index.insert(row.id.clone(), local).unwrap_or(u32::MAX));
        self.ids.push(row.id);
        self.seqs.push(row.seq);
        self.superseded_at.push(AtomicU64::new(LIVE));
        self.payloads.push(row.payload);
    }
}

/// A frozen view of the mutable segment's rows (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct MutableSegment {
    chunks: Vec<Arc<Chunk>>,
    rows: usize,
    bytes: usize,
    borrowed: Option<Arc<BorrowedCodes>>,
}

impl MutableSegment {
    /// An empty segment.
    pub fn new() -> Self {
        MutableSegment::default()
    }

    /// An empty segment whose rows will be encoded with `borrowed` codes.
    pub(crate) fn with_codes(borrowed: Option<Arc<BorrowedCodes>>) -> Self {
        MutableSegment {
            borrowed,
            ..Default::default()
        }
    }

    /// The codes its rows are encoded with (from the newest sealed segment when it started).
    pub fn borrowed(&self) -> Option<&BorrowedCodes> {
        self.borrowed.as_deref()
    }

    /// A new version with `rows` appended (this one is unchanged). Returns it and the row number
    /// of the first appended row.
    pub(crate) fn append(&self, schema: &Schema, rows: Vec<NewRow>) -> (MutableSegment, u32) {
        let first = self.rows as u32;
        let analyzers: Vec<(String, quiver_text::Analyzer)> = schema
            .text_fields()
            .into_iter()
            .map(|f| {
                let a = f.build_analyzer();
                (f.name, a)
            })
            .collect();
        let mut chunks = self.chunks.clone();
        let mut open: Option<Chunk> = match chunks.last() {
            Some(c) if c.rows() < CHUNK_ROWS => {
                let c = c.copy();
                chunks.pop();
                Some(c)
            }
            _ => None,
        };
        let mut total = self.rows;
        let mut bytes = self.bytes;
        for row in rows {
            let mut c = match open.take() {
                Some(c) if c.rows() < CHUNK_ROWS => c,
                Some(full) => {
                    chunks.push(Arc::new(full));
                    Chunk::empty(schema, total as u32)
                }
                None => Chunk::empty(schema, total as u32),
            };
            let before = c.bytes;
            if let Some(b) = &self.borrowed {
                c.encode(schema, b, &row);
            }
            c.push(schema, &analyzers, row);
            bytes += c.bytes - before;
            total += 1;
            open = Some(c);
        }
        if let Some(c) = open {
            chunks.push(Arc::new(c));
        }
        (
            MutableSegment {
                chunks,
                rows: total,
                bytes,
                borrowed: self.borrowed.clone(),
            },
            first,
        )
    }

    /// The chunks, in row order.
    pub fn chunks(&self) -> &[Arc<Chunk>] {
        &self.chunks
    }

    #[inline]
    fn at(&self, row: u32) -> (&Chunk, u32) {
        // Every chunk but the last holds exactly CHUNK_ROWS rows.
        let c = &self.chunks[row as usize / CHUNK_ROWS];
        (c, row - c.start)
    }

    /// The chunk holding `row` and the row's number within it.
    pub fn locate(&self, row: u32) -> (&Chunk, u32) {
        self.at(row)
    }

    /// Row count including superseded rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Approximate bytes held (vectors, payload JSON, vector sets).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Rows that are live now.
    pub fn live_rows(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| {
                c.superseded_at
                    .iter()
                    .filter(|s| s.load(Relaxed) == LIVE)
                    .count()
            })
            .sum()
    }

    /// Whether `row` is live now (not superseded by any write).
    pub(crate) fn is_live(&self, row: u32) -> bool {
        let (c, r) = self.at(row);
        c.superseded_at[r as usize].load(Relaxed) == LIVE
    }

    /// Whether `row` is visible at snapshot `at`.
    #[inline]
    pub fn visible(&self, row: u32, at: u64) -> bool {
        let (c, r) = self.at(row);
        c.visible(r, at)
    }

    /// Id of `row`.
    pub fn id(&self, row: u32) -> &DocId {
        let (c, r) = self.at(row);
        c.id(r)
    }

    /// Sequence number of `row`.
    pub fn seq(&self, row: u32) -> u64 {
        let (c, r) = self.at(row);
        c.seq(r)
    }

    /// Payload of `row`.
    pub fn payload(&self, row: u32) -> &Map<String, Value> {
        let (c, r) = self.at(row);
        c.payload(r)
    }

    /// The vector of `row` in dense field `field`.
    pub fn vector(&self, field: &str, row: u32) -> Option<&[f32]> {
        let (c, r) = self.at(row);
        c.vectors(field).map(|v| v.row(r))
    }

    /// The sequence number of the write that superseded `row` ([`LIVE`] if none has).
    pub(crate) fn superseded_at(&self, row: u32) -> u64 {
        let (c, r) = self.at(row);
        c.superseded_at[r as usize].load(Relaxed)
    }

    /// Marks `row` superseded by the write with sequence number `seq` (visible to every version
    /// sharing the row's chunk; older snapshots are unaffected since `seq` is newer than them).
    pub(crate) fn mark_superseded(&self, row: u32, seq: u64) {
        let (c, r) = self.at(row);
        c.superseded_at[r as usize].fetch_min(seq, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::parse(
            "[fields.v]\ntype = \"dense\"\ndim = 2\nmetric = \"dot\"\n[fields.t]\ntype = \"keyword\"\n[fields.body]\ntype = \"text\"\nsource = [\"t\"]\n",
        )
        .expect("schema")
    }

    fn row(i: u64) -> NewRow {
        let mut payload = Map::new();
        payload.insert("t".into(), Value::String(format!("word{} common", i % 3)));
        NewRow {
            id: DocId::Int(i),
            seq: i + 1,
            payload,
            vectors: [("v".to_string(), vec![i as f32, 1.0])].into(),
            multi: BTreeMap::new(),
            multi_raw: BTreeMap::new(),
        }
    }

    #[test]
    fn appends_share_full_chunks_and_leave_old_versions_unchanged() {
        let s = schema();
        let mut m = MutableSegment::new();
        let mut versions = Vec::new();
        let mut next = 0u64;
        for batch in [1usize, 700, 400, 1, 2000, 3] {
            let rows: Vec<NewRow> = (next..next + batch as u64).map(row).collect();
            let (n, first) = m.append(&s, rows);
            assert_eq!(first as u64, next);
            next += batch as u64;
            versions.push((m.clone(), m.rows()));
            m = n;
        }
        assert_eq!(m.rows() as u64, next);
        for r in 0..m.rows() as u32 {
            assert_eq!(m.id(r), &DocId::Int(r as u64));
            assert_eq!(m.vector("v", r), Some(&[r as f32, 1.0][..]));
        }
        for (v, rows) in &versions {
            assert_eq!(v.rows(), *rows, "an old version never grows");
        }
        // Full chunks are shared, not copied.
        assert!(Arc::ptr_eq(
            &m.chunks()[0],
            &versions.last().expect("v").0.chunks()[0]
        ));
        // Text indexes cover every row when the rows are appended.
        use quiver_text::TextSource;
        let indexed: usize = m
            .chunks()
            .iter()
            .map(|c| c.text("body").expect("text").rows())
            .sum();
        assert_eq!(indexed, m.rows());
        for c in m.chunks() {
            assert!(c.rows() <= CHUNK_ROWS);
        }
        m.mark_superseded(5, 10_000);
        assert!(m.visible(5, 9_999) && !m.visible(5, 10_000));
        assert_eq!(m.live_rows(), m.rows() - 1);
    }
}
