//! PCA rotations: an orthonormal basis sorted by variance, so that the *prefixes* of rotated
//! vectors carry the most variance first (Matryoshka-style prefix search for any model).
//!
//! ```text
//!   x ──► R·x         R: d×d orthonormal, row i = i-th principal axis (largest variance first)
//!         └─ prefix (R·x)[..p] is the best p-dimensional linear summary of x's variation
//! ```
//!
//! **No mean subtraction when applying.** The axes come from the *centred* covariance (so they
//! rank directions by how much vectors differ along them), but [`Pca::apply`] computes `R·x`, not
//! `R·(x − μ)`. Because `R` is orthonormal, `(R·a)·(R·b) = a·b` and `‖R·a − R·b‖ = ‖a − b‖`: dot,
//! cosine and L2 scores are preserved *exactly* (up to float rounding) at full dimension, for stored
//! vectors and queries alike, and a rotated unit vector stays unit-length. Subtracting the mean
//! would change dot products (`(a−μ)·(b−μ) ≠ a·b`) and so the ranking under dot and cosine. On a
//! prefix, the mean's share `(R·μ)[..p]` only adds a term that is the same for every stored
//! vector's dot with a given query, i.e. it does not reorder dot-product results.
//!
//! The eigen-decomposition is nalgebra's `SymmetricEigen` on the `f64` covariance of (a sample of)
//! the rows.
//!
//! ```
//! use quiver_linalg::pca::Pca;
//! // Points spread along (1, 1): the first axis is ±(1, 1)/√2.
//! let data = [1.0_f32, 1.1, 2.0, 1.9, -1.0, -1.05, -2.0, -2.0];
//! let pca = Pca::fit(&data, 2, 0, 7).unwrap();
//! let axis = pca.axis(0);
//! assert!((axis[0].abs() - 0.7071).abs() < 0.01 && (axis[1].abs() - 0.7071).abs() < 0.01);
//! let mut out = [0.0_f32; 2];
//! pca.apply(&[3.0, 4.0], &mut out);
//! assert!(((out[0] * out[0] + out[1] * out[1]).sqrt() - 5.0).abs() < 1e-5);
//! ```

use crate::kmeans::{check_matrix, sample_rows};
use crate::{dot, LinalgError};
use nalgebra::{DMatrix, SymmetricEigen};

const MAGIC: &[u8; 4] = b"QPCA";
const VERSION: u32 = 1;

/// A fitted rotation: `dim` orthonormal axes, sorted by decreasing variance.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    dim: usize,
    /// Row-major `dim × dim`; row `i` is axis `i`.
    rotation: Vec<f32>,
    /// Variance of the data along each axis (eigenvalues), decreasing.
    variances: Vec<f32>,
}

impl Pca {
    /// Fits the rotation to the rows of `data` (row-major, `dim` columns), using at most
    /// `max_samples` rows (a seeded uniform sample; 0 = all rows).
    ///
    /// Errors: `dim == 0`, a length that is not a multiple of `dim`, no rows, or non-finite values.
    pub fn fit(
        data: &[f32],
        dim: usize,
        max_samples: usize,
        seed: u64,
    ) -> Result<Pca, LinalgError> {
        let n_all = check_matrix(data, dim)?;
        if n_all == 0 {
            return Err(LinalgError::InvalidInput(
                "PCA needs at least one row".into(),
            ));
        }
        let rows = sample_rows(n_all, max_samples, seed);
        let n = rows.len();
        let mut mean = vec![0.0f64; dim];
        for &r in &rows {
            for (m, &x) in mean.iter_mut().zip(&data[r * dim..(r + 1) * dim]) {
                *m += x as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        // Centred sample matrix, n × d, then C = Xᵀ X / n (nalgebra's gemm).
        let x = DMatrix::<f64>::from_fn(n, dim, |i, j| data[rows[i] * dim + j] as f64 - mean[j]);
        let cov = (x.transpose() * &x) / (n as f64);
        let eig = SymmetricEigen::new(cov);
        let mut order: Vec<usize> = (0..dim).collect();
        order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
        let mut rotation = Vec::with_capacity(dim * dim);
        let mut variances = Vec::with_capacity(dim);
        for &c in &order {
            let col = eig.eigenvectors.column(c);
            // Deterministic sign: the largest-magnitude component is positive.
            let sign = col
                .iter()
                .copied()
                .max_by(|a, b| a.abs().total_cmp(&b.abs()))
                .map_or(1.0, |m| if m < 0.0 { -1.0 } else { 1.0 });
            rotation.extend(col.iter().map(|&v| (v * sign) as f32));
            variances.push(eig.eigenvalues[c].max(0.0) as f32);
        }
        Ok(Pca {
            dim,
            rotation,
            variances,
        })
    }

    /// Input and output dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Axis `i` (unit length), `i < dim`.
    pub fn axis(&self, i: usize) -> &[f32] {
        &self.rotation[i * self.dim..(i + 1) * self.dim]
    }

    /// Variance along each axis, decreasing.
    pub fn variances(&self) -> &[f32] {
        &self.variances
    }

    /// Fraction of the total variance carried by the first `p` axes.
    pub fn explained(&self, p: usize) -> f32 {
        let total: f32 = self.variances.iter().sum();
        if total <= 0.0 {
            return 1.0;
        }
        self.variances[..p.min(self.dim)].iter().sum::<f32>() / total
    }

    /// Writes the first `out.len()` (at most `dim`) coordinates of `R·v` to `out`. `v` must have
    /// `dim` values. No mean is subtracted (see the module docs): at full dimension, dot products
    /// and distances are preserved exactly.
    pub fn apply(&self, v: &[f32], out: &mut [f32]) {
        let p = out.len().min(self.dim);
        for (i, o) in out[..p].iter_mut().enumerate() {
            *o = dot(self.axis(i), v);
        }
    }

    /// [`Pca::apply`] at full dimension for every row of `data`, returning the rotated matrix.
    pub fn apply_all(&self, data: &[f32]) -> Vec<f32> {
        use rayon::prelude::*;
        let mut out = vec![0.0f32; data.len() / self.dim * self.dim];
        out.par_chunks_exact_mut(self.dim)
            .zip(data.par_chunks_exact(self.dim))
            .for_each(|(o, v)| self.apply(v, o));
        out
    }

    /// Serialises as `QPCA`, version, dim, variances, rotation (little-endian).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(12 + 4 * (self.dim + self.rotation.len()));
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&(self.dim as u32).to_le_bytes());
        for x in self.variances.iter().chain(&self.rotation) {
            b.extend_from_slice(&x.to_le_bytes());
        }
        b
    }

    /// Reads [`Pca::to_bytes`] output; errors name what is wrong (magic, version, length, values).
    pub fn from_bytes(b: &[u8]) -> Result<Pca, LinalgError> {
        let corrupt = |m: String| LinalgError::Corrupt(format!("PCA rotation: {m}"));
        if b.len() < 12 || &b[..4] != MAGIC {
            return Err(corrupt("bad magic (not a QPCA block)".into()));
        }
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let version = word(4);
        if version != VERSION {
            return Err(corrupt(format!("unsupported version {version}")));
        }
        let dim = word(8) as usize;
        if dim == 0 || dim > 65_536 {
            return Err(corrupt(format!("dimension {dim} out of range")));
        }
        let want = 12 + 4 * (dim + dim * dim);
        if b.len() != want {
            return Err(corrupt(format!(
                "length {} bytes, expected {want} for dimension {dim}",
                b.len()
            )));
        }
        let vals: Vec<f32> = b[12..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if vals.iter().any(|x| !x.is_finite()) {
            return Err(corrupt("non-finite value".into()));
        }
        let (variances, rotation) = vals.split_at(dim);
        Ok(Pca {
            dim,
            rotation: rotation.to_vec(),
            variances: variances.to_vec(),
        })
    }
}
