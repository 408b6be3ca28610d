//! Exact MaxSim (Chamfer similarity) between vector sets:
//!
//! ```text
//! MaxSim(Q, D) = Σ_{q ∈ Q} max_{d ∈ D} ⟨q, d⟩
//! ```
//!
//! The brute-force oracle for multi-vector search and the rescore stage after MUVERA candidates.
//! The blocked kernel takes four query vectors against four document vectors per step
//! ([`quiver_linalg::dot_4x4_block`]: sixteen accumulators in registers, each 16-float chunk
//! of the eight vectors loaded once and used in four FMAs, the sixteen sums reduced together), so
//! it is bound by FMAs rather than loads; leftover query vectors go one against four documents
//! ([`quiver_linalg::dot4`]), leftover documents one pair at a time. `quiver bench multivector`
//! times it against [`maxsim_naive`].

use super::MultiVectors;
use crate::heap::TopK;
use crate::{Neighbor, RowFilter, Vectors};

/// MaxSim of `query` against `doc`. A query vector facing an empty document contributes 0.
pub fn maxsim(query: Vectors<'_>, doc: Vectors<'_>) -> f32 {
    if doc.is_empty() {
        return 0.0;
    }
    let (dim, q) = (query.dim(), query.as_slice());
    let mut total = 0.0f32;
    let mut blocks = q.chunks_exact(4 * dim);
    for block in &mut blocks {
        let rows: [&[f32]; 4] = std::array::from_fn(|a| &block[a * dim..(a + 1) * dim]);
        total += max_dot_4(rows, doc).iter().sum::<f32>();
    }
    for row in blocks.remainder().chunks_exact(dim.max(1)) {
        total += max_dot(row, doc);
    }
    total
}

/// `max_d ⟨q_a, d⟩` for four query vectors over the rows of `doc` (non-empty).
#[inline]
fn max_dot_4(q: [&[f32]; 4], doc: Vectors<'_>) -> [f32; 4] {
    let dim = doc.dim();
    let mut best = [f32::NEG_INFINITY; 4];
    let mut blocks = doc.as_slice().chunks_exact(4 * dim);
    for block in &mut blocks {
        let s = quiver_linalg::dot_4x4_block(q, block);
        for (a, b) in best.iter_mut().enumerate() {
            *b = b.max(
                s[4 * a]
                    .max(s[4 * a + 1])
                    .max(s[4 * a + 2].max(s[4 * a + 3])),
            );
        }
    }
    for r in blocks.remainder().chunks_exact(dim) {
        for (b, qa) in best.iter_mut().zip(q) {
            *b = b.max(quiver_linalg::dot(qa, r));
        }
    }
    best
}

/// The same as [`maxsim`], one inner product at a time (the naive baseline the blocked kernel is
/// measured against, and its oracle in tests).
pub fn maxsim_naive(query: Vectors<'_>, doc: Vectors<'_>) -> f32 {
    if doc.is_empty() {
        return 0.0;
    }
    let mut total = 0.0f32;
    for qi in 0..query.len() as u32 {
        let q = query.row(qi);
        let mut best = f32::NEG_INFINITY;
        for di in 0..doc.len() as u32 {
            best = best.max(quiver_linalg::dot(q, doc.row(di)));
        }
        total += best;
    }
    total
}

/// `max_d ⟨q, d⟩` over the rows of `doc` (non-empty).
#[inline]
fn max_dot(q: &[f32], doc: Vectors<'_>) -> f32 {
    let dim = doc.dim();
    let data = doc.as_slice();
    let mut best = f32::NEG_INFINITY;
    let mut blocks = data.chunks_exact(4 * dim);
    for b in &mut blocks {
        let (a, rest) = b.split_at(dim);
        let (c, rest) = rest.split_at(dim);
        let (e, g) = rest.split_at(dim);
        let [s0, s1, s2, s3] = quiver_linalg::dot4(q, [a, c, e, g]);
        best = best.max(s0.max(s1).max(s2.max(s3)));
    }
    for r in blocks.remainder().chunks_exact(dim) {
        best = best.max(quiver_linalg::dot(q, r));
    }
    best
}

/// Exact top-`k` documents of `docs` by MaxSim against `query`, over the documents `filter` allows.
pub fn search<F: RowFilter + ?Sized>(
    docs: MultiVectors<'_>,
    query: Vectors<'_>,
    k: usize,
    filter: &F,
) -> Vec<Neighbor> {
    search_rows(
        docs,
        query,
        k,
        (0..docs.len() as u32).filter(|&i| filter.allows(i)),
    )
}

/// Exact top-`k` by MaxSim over an explicit list of documents (a rescore stage: `rows` are the
/// candidates of a cheaper search). Ids out of range are skipped.
pub fn search_rows(
    docs: MultiVectors<'_>,
    query: Vectors<'_>,
    k: usize,
    rows: impl IntoIterator<Item = u32>,
) -> Vec<Neighbor> {
    if k == 0 {
        return Vec::new();
    }
    let mut top = TopK::new(k);
    for id in rows {
        if (id as usize) < docs.len() {
            let s = maxsim(query, docs.doc(id));
            if s > top.threshold() {
                top.push(Neighbor { id, score: s });
            }
        }
    }
    top.into_sorted()
}
