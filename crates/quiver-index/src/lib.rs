//! # quiver-index: flat and HNSW search, filter-aware
//!
//! *Here are my vectors and a predicate over rows: which rows are closest to this query?*
//!
//! - [`Vectors`]: a borrowed row-major `f32` matrix (heap or mmap) — indexes never own vectors.
//! - [`flat`]: exact scans, over all rows or over an explicit allowed set.
//! - [`Hnsw`]: a Hierarchical Navigable Small World graph (Malkov & Yashunin, 2018) with concurrent
//!   incremental inserts, per-query `ef`, and a row predicate ([`RowFilter`]) checked *during*
//!   traversal: rejected rows are still walked through, never returned.
//! - [`multi`]: vector *sets* per document — exact MaxSim ([`multi::maxsim`]), MUVERA
//!   fixed-dimensional encodings ([`multi::muvera`]) and token pruning ([`multi::prune`]).
//!
//! Scores are "higher is closer" everywhere ([`quiver_linalg::Metric::score`]).
//!
//! ```
//! use quiver_index::{Hnsw, HnswParams, Vectors, AllRows};
//! use quiver_linalg::Metric;
//! let data: Vec<f32> = (0..200).map(|i| ((i * 37) % 101) as f32).collect();
//! let vectors = Vectors::new(&data, 2);
//! let hnsw = Hnsw::build(vectors, Metric::L2, HnswParams::default(), 7);
//! let hits = hnsw.search(vectors, &[3.0, 40.0], 5, 32, &AllRows);
//! assert_eq!(hits.len(), 5);
//! ```

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod flat;
mod heap;
mod hnsw;
pub mod multi;
mod persist;

pub use heap::{Neighbor, TopK};
pub use hnsw::{Hnsw, HnswParams, HnswStats};
pub use multi::{MultiVectors, MultiVectorsBuf};
pub use rescore::{oversample, prefetch_slice, rerank, NodeScorer};

mod rescore;

/// Errors of index persistence.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A serialized graph is malformed (truncated or inconsistent).
    #[error("corrupt HNSW graph: {0}")]
    Corrupt(String),
    /// Build parameters are out of range.
    #[error("invalid index parameters: {0}")]
    InvalidParams(String),
}

/// A borrowed row-major matrix of `f32` rows, each `dim` long.
#[derive(Debug, Clone, Copy)]
pub struct Vectors<'a> {
    data: &'a [f32],
    dim: usize,
}

impl<'a> Vectors<'a> {
    /// Wraps `data` (its length must be a multiple of `dim`; a trailing partial row is ignored).
    pub fn new(data: &'a [f32], dim: usize) -> Self {
        let dim = dim.max(1);
        let rows = data.len() / dim;
        Vectors {
            data: &data[..rows * dim],
            dim,
        }
    }

    /// Number of rows.
    #[inline]
    pub fn len(&self) -> usize {
        self.data.len() / self.dim
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Row dimension.
    #[inline]
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Row `i`. Panics if out of range (callers only pass row ids they were given by this matrix).
    #[inline]
    pub fn row(&self, i: u32) -> &'a [f32] {
        let s = i as usize * self.dim;
        &self.data[s..s + self.dim]
    }

    /// The whole matrix.
    pub fn as_slice(&self) -> &'a [f32] {
        self.data
    }
}

/// A predicate over row ids, evaluated during search.
pub trait RowFilter: Sync {
    /// Whether row `row` may be returned.
    fn allows(&self, row: u32) -> bool;

    /// Whether every row is allowed, so scans may skip asking row by row (default `false`).
    #[inline]
    fn allows_all(&self) -> bool {
        false
    }
}

/// Allows every row.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllRows;

impl RowFilter for AllRows {
    #[inline]
    fn allows(&self, _row: u32) -> bool {
        true
    }

    #[inline]
    fn allows_all(&self) -> bool {
        true
    }
}

impl<F: Fn(u32) -> bool + Sync> RowFilter for F {
    #[inline]
    fn allows(&self, row: u32) -> bool {
        self(row)
    }
}

/// A fixed-size bit set over row ids: the usual materialised filter.
#[derive(Debug, Clone, Default)]
pub struct Bitset {
    words: Vec<u64>,
    len: usize,
}

impl Bitset {
    /// All bits clear.
    pub fn new(len: usize) -> Self {
        Bitset {
            words: vec![0; len.div_ceil(64)],
            len,
        }
    }

    /// All bits set.
    pub fn full(len: usize) -> Self {
        let mut b = Bitset {
            words: vec![u64::MAX; len.div_ceil(64)],
            len,
        };
        b.clear_tail();
        b
    }

    fn clear_tail(&mut self) {
        let r = self.len % 64;
        if r != 0 {
            if let Some(w) = self.words.last_mut() {
                *w &= (1u64 << r) - 1;
            }
        }
    }

    /// Number of bits.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set has no bits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets bit `i` (ignored when out of range).
    #[inline]
    pub fn insert(&mut self, i: u32) {
        if (i as usize) < self.len {
            self.words[i as usize / 64] |= 1 << (i % 64);
        }
    }

    /// Clears bit `i`.
    #[inline]
    pub fn remove(&mut self, i: u32) {
        if (i as usize) < self.len {
            self.words[i as usize / 64] &= !(1 << (i % 64));
        }
    }

    /// Tests bit `i` (false when out of range).
    #[inline]
    pub fn contains(&self, i: u32) -> bool {
        self.words
            .get(i as usize / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Number of set bits.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// In-place intersection.
    pub fn and_with(&mut self, other: &Bitset) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= b;
        }
    }

    /// In-place union.
    pub fn or_with(&mut self, other: &Bitset) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    /// In-place complement.
    pub fn negate(&mut self) {
        for w in &mut self.words {
            *w = !*w;
        }
        self.clear_tail();
    }

    /// Iterates set bits in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let t = w.trailing_zeros();
                w &= w - 1;
                Some(wi as u32 * 64 + t)
            })
        })
    }
}

impl RowFilter for Bitset {
    #[inline]
    fn allows(&self, row: u32) -> bool {
        self.contains(row)
    }
}
