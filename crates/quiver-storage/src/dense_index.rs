//! A sealed segment's index of one dense field: *which rows are nearest to this vector?* It owns
//! the field's f32 vectors (mapped, or copied into RAM for `vectors = "ram"`), its HNSW graph,
//! its compact codes and the PCA rotation they were taken under; the graph and codes are read and
//! checked on first use (see `segment.rs`).

use crate::codes::{FieldCodes, SegmentCodes};
use crate::files::{failed, Failed, Section, SegmentFiles};
use crate::reader::{prefix_score, Knn, VectorIndex};
use crate::schema::DenseField;
use crate::segment_write::corrupt;
use crate::tiers::VectorTier;
use crate::StorageError;
use memmap2::Mmap;
use quiver_index::{flat, Hnsw, Neighbor, Vectors};
use quiver_linalg::pca::Pca;
use quiver_quant::{Codec, QueryScorer};
use std::sync::{Arc, OnceLock};

enum VecStore {
    /// `vectors = "disk"`: the mapped file.
    Mapped(Mmap),
    /// `vectors = "ram"`: copied into process memory on first use.
    Ram(Mmap, OnceLock<Vec<f32>>),
}

/// One dense field of one sealed segment.
pub struct DenseIndex {
    field: DenseField,
    rows: usize,
    files: Arc<SegmentFiles>,
    /// `None` for a segment of no rows (an empty file).
    store: Option<VecStore>,
    /// `None` when the field has no HNSW index.
    graph: Option<Section<Hnsw>>,
    codes: Section<SegmentCodes>,
}

fn mapped_f32(m: &Mmap) -> &[f32] {
    // SAFETY: the mapping is page-aligned (so 4-byte aligned), its length was checked to be
    // rows*dim*4 at open, f32 has no invalid bit patterns, and files are little-endian which is
    // asserted at compile time for this crate (see lib.rs).
    unsafe { std::slice::from_raw_parts(m.as_ptr() as *const f32, m.len() / 4) }
}

impl DenseIndex {
    /// Maps `vec.<field>.f32` after checking its length against `rows` (O(1): nothing is read).
    pub(crate) fn open(
        field: DenseField,
        rows: usize,
        files: Arc<SegmentFiles>,
    ) -> Result<DenseIndex, StorageError> {
        let fname = format!("vec.{}.f32", field.stored);
        let len = files.bytes(&fname);
        if len != rows * field.dim * 4 {
            return Err(corrupt(
                &files.dir.join(&fname),
                format!("{len} bytes for {rows} rows of dim {}", field.dim),
            ));
        }
        let store = files.mapped(&fname)?.map(|m| match field.vectors {
            VectorTier::Disk => VecStore::Mapped(m),
            VectorTier::Ram => VecStore::Ram(m, OnceLock::new()),
        });
        Ok(DenseIndex {
            graph: field.index.hnsw_params().map(|_| OnceLock::new()),
            field,
            rows,
            files,
            store,
            codes: OnceLock::new(),
        })
    }

    /// Whether the segment holds vectors of the field (it has rows).
    pub(crate) fn has_vectors(&self) -> bool {
        self.store.is_some()
    }

    /// The field's vectors.
    pub fn vectors(&self) -> Option<Vectors<'_>> {
        let floats = match self.store.as_ref()? {
            VecStore::Mapped(m) => mapped_f32(m),
            VecStore::Ram(m, v) => v.get_or_init(|| mapped_f32(m).to_vec()).as_slice(),
        };
        Some(Vectors::new(floats, self.field.dim))
    }

    /// The HNSW graph, if the field has one (read and checked on first use).
    pub fn graph(&self) -> Option<&Hnsw> {
        let cell = self.graph.as_ref()?;
        cell.get_or_init(|| {
            let gname = format!("hnsw.{}.bin", self.field.stored);
            let gpath = self.files.dir.join(&gname);
            let load = || -> Result<Hnsw, StorageError> {
                let raw = self
                    .files
                    .checked(&gname)?
                    .ok_or_else(|| corrupt(&gpath, "empty"))?;
                let g = Hnsw::from_bytes(&raw).map_err(|e| corrupt(&gpath, e.to_string()))?;
                if g.capacity() != self.rows {
                    return Err(corrupt(
                        &gpath,
                        format!("graph of {} nodes for {} rows", g.capacity(), self.rows),
                    ));
                }
                Ok(g)
            };
            load().map_err(Failed::from)
        })
        .as_ref()
        .ok()
    }

    fn segment_codes(&self) -> Option<&SegmentCodes> {
        self.codes
            .get_or_init(|| {
                let name = &self.field.stored;
                let load = || -> Result<SegmentCodes, StorageError> {
                    let mut maps = self.files.checked_all(&format!("codes.{name}."))?;
                    maps.extend(self.files.checked_all(&format!("rot.{name}."))?);
                    crate::codes::open(&self.files.dir, &self.field, &maps, self.rows)
                };
                load().map_err(Failed::from)
            })
            .as_ref()
            .ok()
    }

    /// Compact codes (one entry per declared codec; empty if none).
    pub fn codes(&self) -> &[FieldCodes] {
        self.segment_codes().map_or(&[], |c| c.codecs.as_slice())
    }

    /// The PCA rotation the codes were computed under (`rotation = "pca"`).
    pub fn pca(&self) -> Option<&Pca> {
        self.segment_codes().and_then(|c| c.rotation.as_ref())
    }

    /// Bytes held in RAM: codes, graph, and the vectors when their tier is `ram` (sections not
    /// read yet count their files' sizes: what reading them will take; reporting never reads).
    pub(crate) fn ram_bytes(&self) -> (usize, usize, usize) {
        let name = &self.field.stored;
        let codes = match self.codes.get() {
            Some(Ok(c)) => {
                c.codecs.iter().map(|c| c.ram_bytes()).sum::<usize>()
                    + c.rotation.as_ref().map_or(0, |p| p.dim() * p.dim() * 4)
            }
            _ => self
                .files
                .files
                .iter()
                .filter(|(n, _)| {
                    n.starts_with(&format!("codes.{name}."))
                        || n.starts_with(&format!("rot.{name}."))
                })
                .map(|(_, f)| f.bytes as usize)
                .sum(),
        };
        let graph = match self.graph.as_ref().and_then(|c| c.get()) {
            Some(Ok(g)) => g.stats().bytes,
            _ if self.graph.is_some() => self.files.bytes(&format!("hnsw.{name}.bin")),
            _ => 0,
        };
        let vecs = match &self.store {
            Some(VecStore::Ram(m, _)) => m.len(),
            _ => 0,
        };
        (codes, graph, vecs)
    }

    /// Bytes of full vectors left on disk (memory-mapped, paged in on demand).
    pub(crate) fn mapped_bytes(&self) -> usize {
        match &self.store {
            Some(VecStore::Mapped(m)) => m.len(),
            _ => 0,
        }
    }

    /// Reads every section (for `verify`).
    pub(crate) fn load_all(&self) {
        self.graph();
        self.segment_codes();
    }

    /// Sections that failed their checks so far.
    pub(crate) fn failures(&self) -> impl Iterator<Item = &Failed> {
        self.graph
            .as_ref()
            .and_then(failed)
            .into_iter()
            .chain(failed(&self.codes))
    }
}

impl VectorIndex for DenseIndex {
    fn field(&self) -> &DenseField {
        &self.field
    }

    fn vector(&self, row: u32) -> Option<&[f32]> {
        self.vectors()
            .filter(|v| (row as usize) < v.len())
            .map(|v| v.row(row))
    }

    fn rotation(&self) -> Option<&Pca> {
        self.pca()
    }

    fn has_graph(&self) -> bool {
        self.graph().is_some()
    }

    fn search(&self, q: &[f32], req: Knn<'_>) -> Vec<Neighbor> {
        let Some(vectors) = self.vectors() else {
            return Vec::new();
        };
        let metric = self.field.metric;
        match (self.graph().filter(|_| req.graph), req.rows) {
            (Some(g), _) => g.search(vectors, q, req.k, req.ef, req.allowed),
            (None, Some(rows)) => flat::search_rows(vectors, metric, q, req.k, rows.iter()),
            (None, None) => flat::search(vectors, metric, q, req.k, req.allowed),
        }
    }

    fn prefix_score(&self, qp: &[f32], row: u32, buf: &mut [f32]) -> f32 {
        let Some(v) = self.vector(row) else {
            return f32::NEG_INFINITY;
        };
        let n = qp.len();
        // A full-length "prefix" is the vector itself: the rotation would preserve its score.
        match self.pca().filter(|_| n < self.field.dim) {
            Some(rot) => {
                rot.apply(v, &mut buf[..n]);
                prefix_score(self.field.metric, qp, &buf[..n])
            }
            None => prefix_score(self.field.metric, qp, &v[..n]),
        }
    }

    fn codec(&self, idx: usize) -> Option<&Codec> {
        self.codes().get(idx).map(|c| &c.codec)
    }

    fn code(&self, idx: usize, row: u32) -> Option<&[u8]> {
        let fc = self.codes().get(idx)?;
        let len = fc.codec.code_len();
        let at = row as usize * len;
        fc.codes.get(at..at + len)
    }

    fn search_codes(&self, idx: usize, scorer: &QueryScorer, req: Knn<'_>) -> Vec<Neighbor> {
        let Some(fc) = self.codes().get(idx) else {
            return Vec::new();
        };
        match self.graph().filter(|_| req.graph) {
            Some(g) => g.search_by(&scorer.over(&fc.codes), req.k, req.ef, req.allowed),
            None => scorer.scan_topk(&fc.codes, req.allowed, req.k),
        }
    }
}
