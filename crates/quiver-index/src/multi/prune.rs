//! Fewer vectors per set.
//!
//! - [`ball_carve`]: query-side, before a MaxSim rerank (MUVERA §4): greedily take the first
//!   unclustered query vector as a centre, put every unclustered vector with inner product
//!   `>= tau` to it in its ball, and replace the ball by the SUM of its vectors. The rerank then
//!   scores `max_d ⟨Σ_{q∈C} q, d⟩` per ball instead of `Σ_{q∈C} max_d ⟨q, d⟩` (a lower bound that
//!   is tight when the ball's vectors share their best match), at a cost proportional to the
//!   number of balls.

use crate::Vectors;

/// Ball carving of `query` at threshold `tau`: returns the ball sums, row-major (`balls × dim`).
/// Deterministic: centres are taken in input order.
pub fn ball_carve(query: Vectors<'_>, tau: f32) -> Vec<f32> {
    let n = query.len();
    let dim = query.dim();
    let mut taken = vec![false; n];
    let mut out = Vec::new();
    for c in 0..n {
        if taken[c] {
            continue;
        }
        taken[c] = true;
        let centre = query.row(c as u32);
        let mut sum = centre.to_vec();
        for (j, t) in taken.iter_mut().enumerate().skip(c + 1) {
            if !*t && quiver_linalg::dot(centre, query.row(j as u32)) >= tau {
                *t = true;
                for (s, v) in sum.iter_mut().zip(query.row(j as u32)) {
                    *s += v;
                }
            }
        }
        debug_assert_eq!(sum.len(), dim);
        out.extend_from_slice(&sum);
    }
    out
}

/// Index-time pruning (CRISP's post-hoc baseline): clusters one document's vectors into `k`
/// centroids with k-means (`quiver_linalg::kmeans`: k-means++ seeding, Lloyd iterations) and
/// returns them row-major (`min(k, n) × dim`). Deterministic for a given `seed`.
pub fn kmeans_prune(
    doc: Vectors<'_>,
    k: usize,
    iters: usize,
    seed: u64,
) -> Result<Vec<f32>, crate::IndexError> {
    if k == 0 {
        return Err(crate::IndexError::InvalidParams(
            "pruning needs k >= 1".into(),
        ));
    }
    if k >= doc.len() {
        return Ok(doc.as_slice().to_vec());
    }
    let params = quiver_linalg::kmeans::KMeansParams {
        k,
        iters,
        seed,
        max_samples: 0,
    };
    quiver_linalg::kmeans::kmeans(doc.as_slice(), doc.dim(), &params)
        .map(|km| km.centroids)
        .map_err(|e| crate::IndexError::InvalidParams(format!("k-means: {e}")))
}
