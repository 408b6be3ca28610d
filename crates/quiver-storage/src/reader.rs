//! What a query reads: *here is a segment of my snapshot — what does it hold, and how do I search
//! it?* One reader trait for every segment, sealed or the frozen mutable segment, and one index
//! trait per kind of field, so a query has one path per segment, not a sealed path and a mutable
//! path.
//!
//! ```text
//!   Snapshot ── segment(s) ──► &dyn SegmentReader        (sealed segments, then the mutable one)
//!                                ├ rows · id · seq · visible · find · payload · allowed(filter)
//!                                ├ dense(field) ─► VectorIndex   f32 vectors + graph + codes +
//!                                │                               rotation of one dense field
//!                                ├ multi(field) ─► MultiIndex    vector sets + MUVERA encodings
//!                                └ text(field)  ─► [(first row, &dyn TextSource)]
//!   Segment         (segment.rs)  dense: DenseIndex (dense_index.rs)   multi: SegmentMulti
//!   MutableSegment  (mutable.rs)  dense: MutableDense (mutable_read.rs) multi: MutableMulti
//!                                 (its chunks behind one view; codes and rotation borrowed from
//!                                 the newest sealed segment, so scores share one scale)
//! ```
//!
//! Row numbers are the segment's own (`0..rows`); a [`crate::Loc`] names a segment and a row.

use crate::doc::DocId;
use crate::filter::Filter;
use crate::schema::DenseField;
use quiver_index::{Bitset, Neighbor, RowFilter, Vectors};
use quiver_linalg::pca::Pca;
use quiver_linalg::Metric;
use quiver_quant::{Codec, QueryScorer};
use quiver_text::TextSource;
use serde_json::{Map, Value};

/// Read access to one segment of a snapshot.
pub trait SegmentReader: Send + Sync {
    /// Directory name of a sealed segment; `mutable` for the mutable segment.
    fn name(&self) -> &str;
    /// Rows, visible or not.
    fn rows(&self) -> usize;
    /// Id of `row`.
    fn id(&self, row: u32) -> DocId;
    /// Sequence number of the write that stored `row`.
    fn seq(&self, row: u32) -> u64;
    /// Whether `row` is visible in a snapshot taken at sequence number `at`.
    fn visible(&self, row: u32, at: u64) -> bool;
    /// The row of `id` visible at `at`, if any.
    fn find(&self, id: &DocId, at: u64) -> Option<u32>;
    /// Payload of `row`.
    fn payload(&self, row: u32) -> Map<String, Value>;
    /// The index of dense field `field` (`None`: the segment holds no vectors of it).
    fn dense(&self, field: &str) -> Option<Handle<'_, dyn VectorIndex + '_>>;
    /// The index of multi field `field` (`None`: the segment holds no vector sets of it).
    fn multi(&self, field: &str) -> Option<Handle<'_, dyn MultiIndex + '_>>;
    /// The text index of text field `field`, in parts: (first row of the part, its source).
    fn text(&self, field: &str) -> Vec<(u32, &dyn TextSource)>;

    /// Rows visible at `at` that match `filter` (all visible rows without one). The default
    /// checks every row's payload; sealed segments answer from their payload indexes.
    fn allowed(&self, filter: Option<&Filter>, at: u64) -> Bitset {
        let mut b = Bitset::new(self.rows());
        for r in 0..self.rows() as u32 {
            if self.visible(r, at) && filter.is_none_or(|f| f.matches(&self.payload(r))) {
                b.insert(r);
            }
        }
        b
    }
}

/// One dense field of one segment: its f32 vectors, and the graph, codes and PCA rotation built
/// over them. Scores are "higher is closer" on the field's metric.
pub trait VectorIndex {
    /// The field.
    fn field(&self) -> &DenseField;
    /// The stored vector of `row` (full dimension, normalised for cosine).
    fn vector(&self, row: u32) -> Option<&[f32]>;
    /// The rotation prefixes and codes of this index are taken in (`rotation = "pca"`): a sealed
    /// segment's own; the mutable segment's, borrowed from the newest sealed segment.
    fn rotation(&self) -> Option<&Pca>;
    /// Whether a graph walk is possible.
    fn has_graph(&self) -> bool;
    /// The rows nearest to the query `q` (full dimension, prepared by the caller) among
    /// `req.allowed`: a graph walk (with `allowed` checked during traversal) when `req.graph`
    /// and the index has a graph, else an exact scan. Best first; at least the best `req.k`
    /// (an index made of parts returns each part's best, so ties are cut by the caller).
    fn search(&self, q: &[f32], req: Knn<'_>) -> Vec<Neighbor>;
    /// Score of `row` on a prefix query `qp` (from [`VectorIndex::prepare_prefix`]; its length is the
    /// prefix): the first `qp.len()` dimensions of the row's vector, rotated when the index has
    /// a rotation and the prefix is shorter than the vector. `buf` is scratch of at least
    /// `qp.len()` floats.
    fn prefix_score(&self, qp: &[f32], row: u32, buf: &mut [f32]) -> f32;
    /// Codec `idx` (schema order) of the field, trained on a sealed segment's rows.
    fn codec(&self, idx: usize) -> Option<&Codec>;
    /// The code of `row` under codec `idx`.
    fn code(&self, idx: usize, row: u32) -> Option<&[u8]>;
    /// The best rows among `req.allowed` scored by codec `idx`'s codes: a graph walk scored by
    /// the codes when `req.graph` and the index has a graph, else a scan of the codes. Best
    /// first; at least the best `req.k`, as for [`VectorIndex::search`].
    fn search_codes(&self, idx: usize, scorer: &QueryScorer, req: Knn<'_>) -> Vec<Neighbor>;

    /// The query as this index's codes compare it on the first `n` dimensions: rotated when the
    /// index has a rotation (its codes encode rotated vectors), cut to `n`, renormalised for
    /// cosine.
    fn prepare(&self, q: &[f32], n: usize) -> Vec<f32> {
        let metric = self.field().metric;
        match self.rotation() {
            Some(rot) => {
                let mut r = vec![0.0f32; q.len()];
                rot.apply(q, &mut r);
                prefix_query(metric, &r, n)
            }
            None => prefix_query(metric, q, n),
        }
    }

    /// The query as [`VectorIndex::prefix_score`] compares it on the first `n` dimensions: as
    /// [`VectorIndex::prepare`] for a true prefix; at full length the plain query, since a
    /// rotation preserves full-length scores.
    fn prepare_prefix(&self, q: &[f32], n: usize) -> Vec<f32> {
        if n < q.len() {
            self.prepare(q, n)
        } else {
            prefix_query(self.field().metric, q, n)
        }
    }

    /// Exact scan of the rows of `allowed` on prefix query `qp`; the best `k`, best first.
    fn scan_prefix(&self, qp: &[f32], allowed: &Bitset, k: usize) -> Vec<Neighbor> {
        if k == 0 {
            return Vec::new();
        }
        let mut heap = quiver_index::TopK::new(k);
        let mut buf = vec![0.0f32; qp.len()];
        for r in allowed.iter() {
            heap.push(Neighbor {
                id: r,
                score: self.prefix_score(qp, r, &mut buf),
            });
        }
        heap.into_sorted()
    }
}

/// An index a segment hands out: one it owns (sealed segments), or a view built for the call
/// (the mutable segment's chunks).
pub enum Handle<'a, T: ?Sized + 'a> {
    /// Owned by the segment.
    Ref(&'a T),
    /// A view over the segment's parts.
    Boxed(Box<T>),
}

impl<T: ?Sized> std::ops::Deref for Handle<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            Handle::Ref(r) => r,
            Handle::Boxed(b) => b,
        }
    }
}

/// A nearest-neighbour request to one index: how many, the beam width, which rows, and whether
/// to walk the graph.
#[derive(Clone, Copy)]
pub struct Knn<'a> {
    /// Rows wanted.
    pub k: usize,
    /// Beam width of a graph walk.
    pub ef: usize,
    /// Rows that may be returned.
    pub allowed: &'a dyn RowFilter,
    /// The same rows as a set, when the caller has one (a filter's): an exact scan then visits
    /// only them instead of testing every row.
    pub rows: Option<&'a Bitset>,
    /// Walk the graph when there is one.
    pub graph: bool,
}

/// One multi-vector field of one segment: every row's vector set, and (sealed, MUVERA on) the
/// fixed-dimensional encodings and their graph.
pub trait MultiIndex {
    /// Rows with a vector set.
    fn rows(&self) -> usize;
    /// The vector set of `row` (empty when it has none).
    fn set(&self, row: u32) -> Vectors<'_>;
    /// Vectors of `row` before token pruning.
    fn raw(&self, row: u32) -> u32;

    /// MUVERA candidates: the `n` rows among `allowed` whose encodings score best against the
    /// query encoding `qf` (graph walk with beam `ef`, or an exact scan without a graph);
    /// `None` (the default) when the index has no encodings.
    fn fde_candidates(
        &self,
        qf: &[f32],
        n: usize,
        ef: usize,
        allowed: &dyn RowFilter,
    ) -> Option<Vec<Neighbor>> {
        let _ = (qf, n, ef, allowed);
        None
    }

    /// Exact MaxSim of `q` against `rows`; the best `k`, best first.
    fn maxsim_rows(
        &self,
        q: Vectors<'_>,
        k: usize,
        rows: &mut dyn Iterator<Item = u32>,
    ) -> Vec<Neighbor> {
        if k == 0 {
            return Vec::new();
        }
        let mut heap = quiver_index::TopK::new(k);
        for r in rows {
            if (r as usize) < self.rows() {
                heap.push(Neighbor {
                    id: r,
                    score: quiver_index::multi::maxsim::maxsim(q, self.set(r)),
                });
            }
        }
        heap.into_sorted()
    }
}

/// The rows of a part that starts at row `start` of its segment, seen through a filter on the
/// segment's rows (chunks of the mutable segment number their rows from 0).
pub struct Offset<'a> {
    /// Filter on segment rows.
    pub inner: &'a dyn RowFilter,
    /// First segment row of the part.
    pub start: u32,
}

impl RowFilter for Offset<'_> {
    #[inline]
    fn allows(&self, row: u32) -> bool {
        self.inner.allows(self.start + row)
    }

    #[inline]
    fn allows_all(&self) -> bool {
        self.inner.allows_all()
    }
}

/// The query's first `n` dimensions, renormalised for cosine.
pub fn prefix_query(metric: Metric, q: &[f32], n: usize) -> Vec<f32> {
    let mut p = q[..n.min(q.len())].to_vec();
    if metric.normalizes() {
        quiver_linalg::normalize(&mut p);
    }
    p
}

/// Score of a stored prefix `v` against a prepared prefix query `qp`; cosine divides by the
/// prefix's norm.
pub fn prefix_score(metric: Metric, qp: &[f32], v: &[f32]) -> f32 {
    match metric {
        Metric::Cosine => {
            let nv = quiver_linalg::dot(v, v).sqrt();
            if nv > 0.0 {
                quiver_linalg::dot(qp, v) / nv
            } else {
                0.0
            }
        }
        m => m.score(qp, v),
    }
}
