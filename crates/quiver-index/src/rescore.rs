//! Searching with approximate scores, then verifying: the per-query [`NodeScorer`] that HNSW
//! traversal and code scans call, and exact rescoring of a shortlist ([`rerank`]) with the full
//! vectors (typically memory-mapped from disk).
//!
//! ```text
//!   codes in RAM ──NodeScorer──► top `oversample(k, factor)` ──rerank(full f32)──► top k
//! ```

use crate::heap::{sort_best_first, TopK};
use crate::{Neighbor, Vectors};
use quiver_linalg::Metric;

/// Scores rows against one query; built once per query, called in the hot loop.
/// Higher is closer. [`crate::Hnsw::search_by`] traverses a graph with it.
pub trait NodeScorer: Sync {
    /// Score of row `row` (every row id the caller passes is in range).
    fn score(&self, row: u32) -> f32;

    /// Hints that `row` is scored next (default: nothing). Implementations issue prefetches.
    #[inline]
    fn prefetch(&self, row: u32) {
        let _ = row;
    }

    /// Scores `rows` into `out` (`out[j]` for `rows[j]`; both the same length). Graph walks score
    /// a node's neighbours through this, so an implementation can score several rows per step.
    /// Default: one [`NodeScorer::score`] per row.
    #[inline]
    fn score_many(&self, rows: &[u32], out: &mut [f32]) {
        for (o, &r) in out.iter_mut().zip(rows) {
            *o = self.score(r);
        }
    }
}

impl<T: NodeScorer + ?Sized> NodeScorer for &T {
    #[inline]
    fn score(&self, row: u32) -> f32 {
        (**self).score(row)
    }

    #[inline]
    fn prefetch(&self, row: u32) {
        (**self).prefetch(row)
    }

    #[inline]
    fn score_many(&self, rows: &[u32], out: &mut [f32]) {
        (**self).score_many(rows, out)
    }
}

/// Prefetch hints for the bytes of `s` (at most 512 bytes are hinted). Never reads memory, so it is
/// safe on any slice; for [`NodeScorer::prefetch`] implementations.
#[inline]
pub fn prefetch_slice<T>(s: &[T]) {
    crate::hnsw::prefetch_bytes(s.as_ptr() as *const u8, std::mem::size_of_val(s));
}

/// The shortlist size for `k` results at oversampling `factor` (at least `k`, rounded up).
pub fn oversample(k: usize, factor: f32) -> usize {
    let f = if factor.is_finite() && factor > 1.0 {
        factor
    } else {
        1.0
    };
    ((k as f32 * f).ceil() as usize).max(k)
}

/// Rescores `candidates` exactly against the full vectors with `metric` and returns the best `k`,
/// best first (ties by lower id). Candidate ids outside `vectors` are dropped; duplicates are
/// scored once.
pub fn rerank(
    vectors: Vectors<'_>,
    metric: Metric,
    query: &[f32],
    candidates: &[Neighbor],
    k: usize,
) -> Vec<Neighbor> {
    if k == 0 {
        return Vec::new();
    }
    let score = metric.scorer();
    let mut ids: Vec<u32> = candidates
        .iter()
        .map(|c| c.id)
        .filter(|&id| (id as usize) < vectors.len())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut top = TopK::new(k);
    for (j, &id) in ids.iter().enumerate() {
        if let Some(&next) = ids.get(j + 1) {
            prefetch_slice(vectors.row(next));
        }
        top.push(Neighbor {
            id,
            score: score(query, vectors.row(id)),
        });
    }
    let mut v = top.into_sorted();
    sort_best_first(&mut v);
    v
}
