//! Multi-vector retrieval: documents and queries are *sets* of vectors (per-token embeddings,
//! ColBERT-style).
//!
//! - [`MultiVectors`]: a borrowed ragged matrix — many documents, each a run of `dim`-wide rows
//!   (one flat `f32` array plus per-document row offsets, heap or mmap).
//! - [`maxsim`]: exact Chamfer / MaxSim scoring, `Σ_q max_d ⟨q, d⟩`, as a brute-force search and as
//!   a rescore stage over candidates.
//! - [`muvera`]: MUVERA fixed-dimensional encodings (Dhulipala et al., NeurIPS 2024): one vector per
//!   set whose inner product approximates Chamfer, so that any single-vector index (HNSW) finds
//!   candidates for an exact MaxSim rerank.
//! - [`prune`]: index-time token pruning by per-document k-means (CRISP's post-hoc baseline) and
//!   query ball carving.
//!
//! ```text
//!   data:    [ d0 t0 | d0 t1 | d0 t2 | d1 t0 | d1 t1 | d2 t0 ... ]   (rows of `dim` f32)
//!   offsets: [ 0,              3,              5,      6 ... ]      (rows + 1 entries)
//! ```

pub mod maxsim;
pub mod muvera;
pub mod prune;

use crate::Vectors;

/// A borrowed ragged matrix: document `i` owns rows `offsets[i]..offsets[i+1]` of `data`.
#[derive(Debug, Clone, Copy)]
pub struct MultiVectors<'a> {
    data: &'a [f32],
    offsets: &'a [u64],
    dim: usize,
}

impl<'a> MultiVectors<'a> {
    /// Wraps a flat row-major array and `docs + 1` monotone row offsets. Returns `None` when the
    /// offsets are not monotone, do not start at 0, or point past the data.
    pub fn new(data: &'a [f32], offsets: &'a [u64], dim: usize) -> Option<Self> {
        if dim == 0 || offsets.first().is_some_and(|&o| o != 0) {
            return None;
        }
        if offsets.windows(2).any(|w| w[0] > w[1]) {
            return None;
        }
        let rows = offsets.last().copied().unwrap_or(0) as usize;
        if rows.checked_mul(dim)? > data.len() {
            return None;
        }
        Some(MultiVectors { data, offsets, dim })
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether there are no documents.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Vector width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Total vectors over all documents.
    pub fn total_vectors(&self) -> usize {
        self.offsets.last().copied().unwrap_or(0) as usize
    }

    /// The vectors of document `i`. Panics if out of range (callers pass ids from this set).
    #[inline]
    pub fn doc(&self, i: u32) -> Vectors<'a> {
        let s = self.offsets[i as usize] as usize * self.dim;
        let e = self.offsets[i as usize + 1] as usize * self.dim;
        Vectors::new(&self.data[s..e], self.dim)
    }

    /// The flat data and offsets.
    pub fn parts(&self) -> (&'a [f32], &'a [u64]) {
        (self.data, self.offsets)
    }
}

/// An owned ragged matrix, built document by document (the writer side of [`MultiVectors`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MultiVectorsBuf {
    /// Flat row-major vectors.
    pub data: Vec<f32>,
    /// Row offsets, `docs + 1` entries starting at 0.
    pub offsets: Vec<u64>,
    /// Vector width.
    pub dim: usize,
}

impl MultiVectorsBuf {
    /// Empty, for vectors of width `dim`.
    pub fn new(dim: usize) -> Self {
        MultiVectorsBuf {
            data: Vec::new(),
            offsets: vec![0],
            dim,
        }
    }

    /// Appends one document given as a flat row-major slice (its length a multiple of `dim`).
    pub fn push_flat(&mut self, rows: &[f32]) {
        self.data.extend_from_slice(rows);
        let n = (rows.len() / self.dim.max(1)) as u64;
        let last = self.offsets.last().copied().unwrap_or(0);
        self.offsets.push(last + n);
    }

    /// Appends one document given as a list of vectors.
    pub fn push(&mut self, vectors: &[Vec<f32>]) {
        for v in vectors {
            self.data.extend_from_slice(v);
        }
        let last = self.offsets.last().copied().unwrap_or(0);
        self.offsets.push(last + vectors.len() as u64);
    }

    /// Borrowed view.
    pub fn view(&self) -> MultiVectors<'_> {
        MultiVectors {
            data: &self.data,
            offsets: &self.offsets,
            dim: self.dim.max(1),
        }
    }
}
