//! # quiver-eval: oracles and measurement
//!
//! What every index and codec in Quiver is checked against.
//!
//! - [`brute_force_topk`]: exact top-k by scanning every vector (parallel over queries), the oracle.
//! - [`recall_at_k`]: fraction of the oracle's top-k that a result list found.
//! - [`gen`]: seeded generators of clustered vectors and payloads for tests.
//! - [`npy`]: reading and writing `.npy` arrays (float32 / int32), the exchange format with peer
//!   benchmarks in `bench/compare`.
//! - [`beir`]: BEIR-layout datasets (corpus, queries, qrels) with errors that name file and line.
//! - [`metrics`]: nDCG@k, recall@k, P@k, MAP@k and MRR@k exactly as `trec_eval` / `pytrec_eval`
//!   compute them (graded gains, their tie-breaking), and TREC run files. `quiver eval` is built
//!   on these two.
//!
//! ```
//! use quiver_eval::{brute_force_topk, recall_at_k};
//! use quiver_linalg::Metric;
//! let base = vec![vec![1.0_f32, 0.0], vec![0.0, 1.0], vec![0.7, 0.7]];
//! let truth = brute_force_topk(&base, &[vec![1.0, 0.1]], Metric::Dot, 2, |_| true);
//! assert_eq!(truth[0], vec![0, 2]);
//! assert_eq!(recall_at_k(&[0, 1], &truth[0], 2), 0.5);
//! ```

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod beir;
pub mod gen;
pub mod metrics;
pub mod npy;

use quiver_linalg::Metric;
use rayon::prelude::*;

/// Exact top-k row indices (best first; ties broken by lower index) for each query, over the rows of
/// `base` for which `allowed(row)` is true.
pub fn brute_force_topk<F>(
    base: &[Vec<f32>],
    queries: &[Vec<f32>],
    metric: Metric,
    k: usize,
    allowed: F,
) -> Vec<Vec<u32>>
where
    F: Fn(usize) -> bool + Sync,
{
    let score = metric.scorer();
    queries
        .par_iter()
        .map(|q| {
            let mut scored: Vec<(f32, u32)> = base
                .iter()
                .enumerate()
                .filter(|(i, _)| allowed(*i))
                .map(|(i, v)| (score(q, v), i as u32))
                .collect();
            let k = k.min(scored.len());
            if k == 0 {
                return Vec::new();
            }
            scored.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            scored.truncate(k);
            scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            scored.into_iter().map(|(_, i)| i).collect()
        })
        .collect()
}

/// Same as [`brute_force_topk`] over a flat row-major matrix of `dim` columns.
pub fn brute_force_topk_flat(
    base: &[f32],
    dim: usize,
    queries: &[f32],
    metric: Metric,
    k: usize,
) -> Vec<Vec<u32>> {
    let score = metric.scorer();
    queries
        .par_chunks(dim)
        .map(|q| {
            let mut heap: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
            let mut worst = f32::NEG_INFINITY;
            for (i, v) in base.chunks_exact(dim).enumerate() {
                let s = score(q, v);
                if heap.len() < k || s > worst {
                    heap.push((s, i as u32));
                    if heap.len() > k {
                        heap.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                        heap.truncate(k);
                    }
                    if heap.len() == k {
                        worst = heap.iter().map(|x| x.0).fold(f32::INFINITY, f32::min);
                    }
                }
            }
            heap.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            heap.into_iter().map(|(_, i)| i).collect()
        })
        .collect()
}

/// A seeded xorshift generator of floats uniform in [-1, 1) (for tests and synthetic data;
/// print the seed).
pub fn uniform(seed: u64) -> impl FnMut() -> f32 {
    let mut s = seed | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
    }
}

/// recall@k: |found[..k] ∩ truth[..k]| / min(k, |truth|). 1.0 when the truth is empty.
pub fn recall_at_k<T: PartialEq>(found: &[T], truth: &[T], k: usize) -> f64 {
    let truth = &truth[..k.min(truth.len())];
    if truth.is_empty() {
        return 1.0;
    }
    let found = &found[..k.min(found.len())];
    let hits = truth.iter().filter(|t| found.contains(t)).count();
    hits as f64 / truth.len() as f64
}

/// Mean of [`recall_at_k`] over paired result lists.
pub fn mean_recall<T: PartialEq>(found: &[Vec<T>], truth: &[Vec<T>], k: usize) -> f64 {
    if found.is_empty() {
        return 1.0;
    }
    found
        .iter()
        .zip(truth)
        .map(|(f, t)| recall_at_k(f, t, k))
        .sum::<f64>()
        / found.len() as f64
}
