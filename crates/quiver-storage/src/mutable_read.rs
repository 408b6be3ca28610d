//! The frozen mutable segment as a [`SegmentReader`]: its chunks behind one view, numbered by the
//! segment's rows. Its dense fields are scanned exactly (no graph), scored on the codes and
//! rotation it borrowed from the newest sealed segment, so their scores merge with sealed rows'
//! on one scale.

use crate::doc::DocId;
use crate::filter::Filter;
use crate::mutable::MutableSegment;
use crate::reader::{prefix_score, Handle, Knn, MultiIndex, Offset, SegmentReader, VectorIndex};
use crate::schema::{DenseField, Schema};
use quiver_index::{flat, Bitset, Neighbor, RowFilter, TopK, Vectors};
use quiver_linalg::pca::Pca;
use quiver_quant::{Codec, QueryScorer};
use quiver_text::TextSource;
use serde_json::{Map, Value};
use std::sync::Arc;

/// One published mutable segment and the schema it was written under.
#[derive(Clone)]
pub(crate) struct MutableReader {
    /// `mutable`, or `sealing` for a full one being sealed in the background.
    pub(crate) name: &'static str,
    pub(crate) segment: Arc<MutableSegment>,
    pub(crate) schema: Arc<Schema>,
}

impl SegmentReader for MutableReader {
    fn name(&self) -> &str {
        self.name
    }

    fn rows(&self) -> usize {
        self.segment.rows()
    }

    fn id(&self, row: u32) -> DocId {
        self.segment.id(row).clone()
    }

    fn seq(&self, row: u32) -> u64 {
        self.segment.seq(row)
    }

    #[inline]
    fn visible(&self, row: u32, at: u64) -> bool {
        self.segment.visible(row, at)
    }

    /// Newest chunk first: the id's newest row visible at `at`.
    fn find(&self, id: &DocId, at: u64) -> Option<u32> {
        self.segment
            .chunks()
            .iter()
            .rev()
            .find_map(|c| c.find(id, at).map(|r| c.start() + r))
    }

    fn payload(&self, row: u32) -> Map<String, Value> {
        self.segment.payload(row).clone()
    }

    fn dense(&self, field: &str) -> Option<Handle<'_, dyn VectorIndex + '_>> {
        let field = self.schema.dense(field)?;
        Some(Handle::Boxed(Box::new(MutableDense {
            m: &self.segment,
            field,
        })))
    }

    fn multi(&self, field: &str) -> Option<Handle<'_, dyn MultiIndex + '_>> {
        let f = self.schema.multi(field)?;
        Some(Handle::Boxed(Box::new(MutableMulti {
            m: &self.segment,
            name: f.name,
            dim: f.dim,
        })))
    }

    fn text(&self, field: &str) -> Vec<(u32, &dyn TextSource)> {
        self.segment
            .chunks()
            .iter()
            .filter_map(|c| c.text(field).map(|t| (c.start(), t as &dyn TextSource)))
            .collect()
    }

    /// Visibility and the filter checked on each row's payload (no payload index here).
    fn allowed(&self, filter: Option<&Filter>, at: u64) -> Bitset {
        let mut b = Bitset::new(self.segment.rows());
        for c in self.segment.chunks() {
            for r in 0..c.rows() as u32 {
                if c.visible(r, at) && filter.is_none_or(|f| f.matches(c.payload(r))) {
                    b.insert(c.start() + r);
                }
            }
        }
        b
    }
}

/// A dense field over the mutable segment's chunks.
struct MutableDense<'a> {
    m: &'a MutableSegment,
    field: DenseField,
}

impl MutableDense<'_> {
    /// Every chunk's top list, rows renumbered to the segment's, best first. Not cut to `k`:
    /// rows tied at a chunk's cut stay, so the caller's tie-break (by document id) decides, as
    /// it would if the rows sat in one chunk.
    fn merge(
        &self,
        mut per_chunk: impl FnMut(&crate::mutable::Chunk, &Offset<'_>) -> Vec<Neighbor>,
        allowed: &dyn RowFilter,
    ) -> Vec<Neighbor> {
        let mut all = Vec::new();
        for c in self.m.chunks() {
            let part = Offset {
                inner: allowed,
                start: c.start(),
            };
            all.extend(per_chunk(c, &part).into_iter().map(|n| Neighbor {
                id: c.start() + n.id,
                score: n.score,
            }));
        }
        all.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
        all
    }
}

impl VectorIndex for MutableDense<'_> {
    fn field(&self) -> &DenseField {
        &self.field
    }

    fn vector(&self, row: u32) -> Option<&[f32]> {
        if row as usize >= self.m.rows() {
            return None;
        }
        self.m.vector(&self.field.name, row)
    }

    fn rotation(&self) -> Option<&Pca> {
        self.m.borrowed()?.rotation(&self.field.name)
    }

    fn has_graph(&self) -> bool {
        false
    }

    fn search(&self, q: &[f32], req: Knn<'_>) -> Vec<Neighbor> {
        if req.k == 0 {
            return Vec::new();
        }
        let (name, metric) = (&self.field.name, self.field.metric);
        self.merge(
            |c, part| match c.vectors(name) {
                Some(v) => flat::search(v, metric, q, req.k, part),
                None => Vec::new(),
            },
            req.allowed,
        )
    }

    /// On a rotated field, the rows rotated when they were appended.
    fn prefix_score(&self, qp: &[f32], row: u32, buf: &mut [f32]) -> f32 {
        let n = qp.len();
        let Some(v) = self.vector(row) else {
            return f32::NEG_INFINITY;
        };
        let metric = self.field.metric;
        // A full-length "prefix" is the vector itself: the rotation would preserve its score.
        let Some(rot) = self.rotation().filter(|_| n < self.field.dim) else {
            return prefix_score(metric, qp, &v[..n]);
        };
        let (c, r) = self.m.locate(row);
        match c.rotated(&self.field.name) {
            Some(rv) => prefix_score(metric, qp, &rv.row(r)[..n]),
            None => {
                rot.apply(v, &mut buf[..n]);
                prefix_score(metric, qp, &buf[..n])
            }
        }
    }

    /// Chunk by chunk, so each chunk's vectors (rotated ones on a rotated field) are looked up
    /// once, not per row; one top list over every chunk.
    fn scan_prefix(&self, qp: &[f32], allowed: &Bitset, k: usize) -> Vec<Neighbor> {
        if k == 0 {
            return Vec::new();
        }
        let n = qp.len();
        let metric = self.field.metric;
        let name = &self.field.name;
        let rotated = self.rotation().is_some() && n < self.field.dim;
        let mut buf = vec![0.0f32; n];
        let mut top = TopK::new(k);
        for c in self.m.chunks() {
            let rows = match rotated {
                true => c.rotated(name),
                false => c.vectors(name),
            };
            for r in 0..c.rows() as u32 {
                let row = c.start() + r;
                if !allowed.contains(row) {
                    continue;
                }
                let score = match rows {
                    Some(v) => prefix_score(metric, qp, &v.row(r)[..n]),
                    None => self.prefix_score(qp, row, &mut buf),
                };
                top.push(Neighbor { id: row, score });
            }
        }
        top.into_sorted()
    }

    fn codec(&self, idx: usize) -> Option<&Codec> {
        let want = self.field.codecs.get(idx)?.dims_of(self.field.dim);
        let (dims, codec) = self.m.borrowed()?.codec(&self.field.name, idx)?;
        (dims == want).then_some(codec)
    }

    fn code(&self, idx: usize, row: u32) -> Option<&[u8]> {
        if row as usize >= self.m.rows() {
            return None;
        }
        let len = self.codec(idx)?.code_len();
        let (c, r) = self.m.locate(row);
        let at = r as usize * len;
        c.codes(&self.field.name, idx)?.get(at..at + len)
    }

    fn search_codes(&self, idx: usize, scorer: &QueryScorer, req: Knn<'_>) -> Vec<Neighbor> {
        if req.k == 0 {
            return Vec::new();
        }
        let name = &self.field.name;
        self.merge(
            |c, part| match c.codes(name, idx) {
                Some(codes) => scorer.scan_topk(codes, part, req.k),
                None => Vec::new(),
            },
            req.allowed,
        )
    }
}

/// A multi field over the mutable segment's chunks (no MUVERA encodings: scored exactly).
struct MutableMulti<'a> {
    m: &'a MutableSegment,
    name: String,
    dim: usize,
}

impl MultiIndex for MutableMulti<'_> {
    fn rows(&self) -> usize {
        self.m.rows()
    }

    fn set(&self, row: u32) -> Vectors<'_> {
        if (row as usize) < self.m.rows() {
            let (c, r) = self.m.locate(row);
            if let Some(sets) = c.multi(&self.name).filter(|s| (r as usize) < s.len()) {
                return sets.doc(r);
            }
        }
        Vectors::new(&[], self.dim)
    }

    fn raw(&self, row: u32) -> u32 {
        if row as usize >= self.m.rows() {
            return 0;
        }
        let (c, r) = self.m.locate(row);
        c.multi_raw(&self.name)
            .and_then(|raw| raw.get(r as usize).copied())
            .unwrap_or(0)
    }
}
