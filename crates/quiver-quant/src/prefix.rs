//! Matryoshka prefixes of one stored vector.
//!
//! A Matryoshka-trained model (Kusupati et al., "Matryoshka Representation Learning", NeurIPS
//! 2022) packs the most information into the first coordinates, so the first `p` dimensions of
//! the one stored vector are themselves a usable embedding — searched without storing a second
//! vector. For cosine the prefix is renormalised to unit length (queries and stored vectors
//! alike). For models not trained that way, a PCA rotation ([`quiver_linalg::Pca`], applied
//! without mean subtraction so full-dimension scores are unchanged) puts the most variance first.
//!
//! A *funnel* searches a short prefix first and re-scores a shrinking shortlist with longer
//! prefixes, ending with the full vector (e.g. 64 → 128 → full, the shortlist halving as the
//! dimension doubles).

use crate::QuantError;
use quiver_linalg::{normalize, Metric};
use rayon::prelude::*;

/// The first `p` coordinates of `v` into `out` (length `p`), renormalised when `metric` is cosine.
/// A zero prefix stays zero.
pub fn prefix_into(v: &[f32], metric: Metric, out: &mut [f32]) {
    let p = out.len().min(v.len());
    out[..p].copy_from_slice(&v[..p]);
    if metric.normalizes() {
        normalize(&mut out[..p]);
    }
}

/// The `p`-dimensional prefix of every row of `data` (`dim` columns), renormalised for cosine.
///
/// Errors: `p == 0`, `p > dim`, or `data` not whole rows.
pub fn prefix_all(
    data: &[f32],
    dim: usize,
    p: usize,
    metric: Metric,
) -> Result<Vec<f32>, QuantError> {
    if p == 0 || p > dim {
        return Err(QuantError::InvalidInput(format!(
            "prefix of {p} dimensions is out of range 1..={dim}"
        )));
    }
    if dim == 0 || !data.len().is_multiple_of(dim) {
        return Err(QuantError::InvalidInput(format!(
            "{} values are not whole rows of dimension {dim}",
            data.len()
        )));
    }
    let mut out = vec![0.0f32; data.len() / dim * p];
    out.par_chunks_exact_mut(p)
        .zip(data.par_chunks_exact(dim))
        .for_each(|(o, v)| prefix_into(v, metric, o));
    Ok(out)
}
