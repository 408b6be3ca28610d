//! Adapters between embedding spaces: map a new model's vectors into an old model's space, so
//! queries embedded by the new model can search vectors the old one computed (no re-embedding).
//!
//! Every adapter is fitted on a paired sample: the same texts embedded by both models, `x` (new,
//! `d_in` columns) and `y` (old, `d_out` columns), one text per row.
//!
//! - [`AdapterKind::Procrustes`]: the orthogonal map minimising `||x W - y||` (Schönemann's
//!   solution, `W = U Vᵀ` from the SVD `xᵀy = U Σ Vᵀ`). When the dimensions differ, `W` is
//!   semi-orthogonal (orthonormal rows or columns): the best isometry into, or projection out of,
//!   the larger space.
//! - [`AdapterKind::Ridge`]: the least-squares linear map with an L2 penalty,
//!   `W = (xᵀx + λI)⁻¹ xᵀy`; `λ` is chosen on a held-out tenth of the sample (mean cosine of
//!   mapped to true vectors) from a grid scaled by `tr(xᵀx) / d_in`, then the map is refitted on
//!   the whole sample.
//! - [`AdapterKind::Relative`]: relative representations (Moschella et al., ICLR 2023). A vector
//!   is described by its cosines to `k` anchor texts embedded in its own space; a new-model query
//!   and an old-model document are compared through those descriptions. Model-agnostic (no map is
//!   learned), but the stored side must be described too: [`Adapter::map_stored`]. Each space is
//!   centred on its anchors' mean before the cosines are taken, and the features on the anchors'
//!   mean description after (see `centred_anchors`).
//!
//! Inputs and outputs are unit-normalised (cosine spaces).

use crate::{dot, normalize, LinalgError};
use nalgebra::DMatrix;

/// Which adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdapterKind {
    /// Orthogonal (or semi-orthogonal) Procrustes.
    Procrustes,
    /// Ridge-regularised least squares.
    Ridge,
    /// Relative representations over anchor texts.
    Relative,
}

impl AdapterKind {
    /// Every kind, in report order.
    pub const ALL: [AdapterKind; 3] = [
        AdapterKind::Procrustes,
        AdapterKind::Ridge,
        AdapterKind::Relative,
    ];

    /// Lower-case name (`procrustes`, `ridge`, `relative`).
    pub fn name(self) -> &'static str {
        match self {
            AdapterKind::Procrustes => "procrustes",
            AdapterKind::Ridge => "ridge",
            AdapterKind::Relative => "relative",
        }
    }

    /// Parses a name given by [`AdapterKind::name`].
    pub fn parse(s: &str) -> Option<AdapterKind> {
        AdapterKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// A fitted adapter from a new model's space (`d_in`) to an old model's (`d_out`).
#[derive(Debug, Clone, PartialEq)]
pub struct Adapter {
    kind: AdapterKind,
    d_in: usize,
    d_out: usize,
    /// Linear kinds: `d_in x d_out`, row-major (`y = x W`). Relative: the anchors in the new space
    /// (`k x d_in`).
    w: Vec<f32>,
    /// Relative: the anchors in the old space (`k x d_out`); empty otherwise.
    anchors_out: Vec<f32>,
    /// Relative: per space (new, old), the anchors' mean (subtracted from a vector before its
    /// cosines are taken) and the anchors' mean relative representation (subtracted after).
    centers: [(Vec<f32>, Vec<f32>); 2],
    /// Ridge: the chosen penalty; 0 otherwise.
    lambda: f64,
}

/// Checks a paired sample's shapes and finiteness; returns the row count.
fn check_pairs(x: &[f32], y: &[f32], d_in: usize, d_out: usize) -> Result<usize, LinalgError> {
    if d_in == 0 || d_out == 0 {
        return Err(LinalgError::InvalidInput(
            "dimensions must be at least 1".into(),
        ));
    }
    if !x.len().is_multiple_of(d_in) || !y.len().is_multiple_of(d_out) {
        return Err(LinalgError::InvalidInput(format!(
            "sample lengths {} and {} are not multiples of the dimensions {d_in} and {d_out}",
            x.len(),
            y.len()
        )));
    }
    let n = x.len() / d_in;
    if y.len() / d_out != n {
        return Err(LinalgError::InvalidInput(format!(
            "the samples differ in length: {n} new-model rows, {} old-model rows",
            y.len() / d_out
        )));
    }
    if n < 2 {
        return Err(LinalgError::InvalidInput(format!(
            "an adapter needs at least 2 paired texts, got {n}"
        )));
    }
    for (m, d) in [(x, d_in), (y, d_out)] {
        if let Some(i) = m.iter().position(|v| !v.is_finite()) {
            return Err(LinalgError::NonFinite {
                row: i / d,
                col: i % d,
            });
        }
    }
    Ok(n)
}

fn matrix(data: &[f32], rows: usize, cols: usize) -> DMatrix<f64> {
    DMatrix::from_fn(rows, cols, |r, c| data[r * cols + c] as f64)
}

fn row_major(m: &DMatrix<f64>) -> Vec<f32> {
    let mut out = Vec::with_capacity(m.nrows() * m.ncols());
    for r in 0..m.nrows() {
        for c in 0..m.ncols() {
            out.push(m[(r, c)] as f32);
        }
    }
    out
}

/// `W = (xᵀx + λI)⁻¹ xᵀy` from the Gram matrices.
fn ridge_solve(
    xtx: &DMatrix<f64>,
    xty: &DMatrix<f64>,
    lambda: f64,
) -> Result<DMatrix<f64>, LinalgError> {
    let mut a = xtx.clone();
    for i in 0..a.nrows() {
        a[(i, i)] += lambda;
    }
    let chol = a.cholesky().ok_or_else(|| {
        LinalgError::InvalidInput(format!(
            "the ridge system is singular at lambda {lambda:e} (a sample with no variance?)"
        ))
    })?;
    Ok(chol.solve(xty))
}

/// Mean cosine of `x W` (normalised) to `y` over the rows.
fn mean_cosine(x: &DMatrix<f64>, y: &DMatrix<f64>, w: &DMatrix<f64>) -> f64 {
    let p = x * w;
    let mut total = 0.0;
    for r in 0..p.nrows() {
        let (a, b) = (p.row(r), y.row(r));
        let (na, nb) = (a.norm(), b.norm());
        if na > 0.0 && nb > 0.0 {
            total += a.dot(&b) / (na * nb);
        }
    }
    total / p.nrows().max(1) as f64
}

impl Adapter {
    /// Fits an orthogonal Procrustes map on `n` paired rows (`x`: `n x d_in`, `y`: `n x d_out`).
    pub fn procrustes(
        x: &[f32],
        y: &[f32],
        d_in: usize,
        d_out: usize,
    ) -> Result<Adapter, LinalgError> {
        let n = check_pairs(x, y, d_in, d_out)?;
        let m = matrix(x, n, d_in).transpose() * matrix(y, n, d_out);
        let svd = m.svd(true, true);
        let (Some(u), Some(v_t)) = (svd.u, svd.v_t) else {
            return Err(LinalgError::InvalidInput("the SVD did not converge".into()));
        };
        let w = u * v_t;
        Ok(Adapter {
            kind: AdapterKind::Procrustes,
            d_in,
            d_out,
            w: row_major(&w),
            anchors_out: Vec::new(),
            centers: Default::default(),
            lambda: 0.0,
        })
    }

    /// Fits a ridge map. `lambda: None` picks it on a held-out tenth of the sample (every tenth
    /// row; needs at least 10 rows) from `{1e-4, 1e-3, 1e-2, 1e-1, 1} * tr(xᵀx) / d_in`.
    pub fn ridge(
        x: &[f32],
        y: &[f32],
        d_in: usize,
        d_out: usize,
        lambda: Option<f64>,
    ) -> Result<Adapter, LinalgError> {
        let n = check_pairs(x, y, d_in, d_out)?;
        let (xm, ym) = (matrix(x, n, d_in), matrix(y, n, d_out));
        let scale = |xtx: &DMatrix<f64>| (xtx.trace() / d_in as f64).max(f64::MIN_POSITIVE);
        let lambda = match lambda {
            Some(l) if l.is_finite() && l >= 0.0 => l,
            Some(l) => {
                return Err(LinalgError::InvalidInput(format!(
                    "lambda must be finite and >= 0, got {l}"
                )))
            }
            None if n < 10 => {
                return Err(LinalgError::InvalidInput(format!(
                    "choosing lambda needs at least 10 paired texts, got {n}"
                )))
            }
            None => {
                let held: Vec<usize> = (0..n).filter(|i| i % 10 == 9).collect();
                let kept: Vec<usize> = (0..n).filter(|i| i % 10 != 9).collect();
                let (xk, yk) = (xm.select_rows(&kept), ym.select_rows(&kept));
                let (xh, yh) = (xm.select_rows(&held), ym.select_rows(&held));
                let xtx = xk.transpose() * &xk;
                let xty = xk.transpose() * &yk;
                let s = scale(&xtx);
                let mut best = (f64::NEG_INFINITY, s);
                for f in [1e-4, 1e-3, 1e-2, 1e-1, 1.0] {
                    if let Ok(w) = ridge_solve(&xtx, &xty, f * s) {
                        let c = mean_cosine(&xh, &yh, &w);
                        if c > best.0 {
                            best = (c, f * s);
                        }
                    }
                }
                best.1
            }
        };
        let w = ridge_solve(&(xm.transpose() * &xm), &(xm.transpose() * &ym), lambda)?;
        Ok(Adapter {
            kind: AdapterKind::Ridge,
            d_in,
            d_out,
            w: row_major(&w),
            anchors_out: Vec::new(),
            centers: Default::default(),
            lambda,
        })
    }

    /// A relative-representation adapter over `k` anchor texts: `anchors_in` (`k x d_in`, the
    /// new model's vectors of the anchors) and `anchors_out` (`k x d_out`, the old model's).
    pub fn relative(
        anchors_in: &[f32],
        anchors_out: &[f32],
        d_in: usize,
        d_out: usize,
    ) -> Result<Adapter, LinalgError> {
        check_pairs(anchors_in, anchors_out, d_in, d_out)?;
        let (a_in, c_in) = centred_anchors(anchors_in, d_in);
        let (a_out, c_out) = centred_anchors(anchors_out, d_out);
        Ok(Adapter {
            kind: AdapterKind::Relative,
            d_in,
            d_out,
            w: a_in,
            anchors_out: a_out,
            centers: [c_in, c_out],
            lambda: 0.0,
        })
    }

    /// Fits `kind` on the paired sample (the relative kind uses every sample row as an anchor).
    pub fn fit(
        kind: AdapterKind,
        x: &[f32],
        y: &[f32],
        d_in: usize,
        d_out: usize,
    ) -> Result<Adapter, LinalgError> {
        match kind {
            AdapterKind::Procrustes => Adapter::procrustes(x, y, d_in, d_out),
            AdapterKind::Ridge => Adapter::ridge(x, y, d_in, d_out, None),
            AdapterKind::Relative => Adapter::relative(x, y, d_in, d_out),
        }
    }

    /// A linear adapter (`Procrustes` or `Ridge`) from its `d_in x d_out` row-major map, as
    /// [`Adapter::matrix`] returned it (an adapter stored and read back).
    pub fn linear(
        kind: AdapterKind,
        d_in: usize,
        d_out: usize,
        w: Vec<f32>,
        lambda: f64,
    ) -> Result<Adapter, LinalgError> {
        if kind == AdapterKind::Relative {
            return Err(LinalgError::InvalidInput(
                "a relative adapter is not a linear map".into(),
            ));
        }
        if d_in == 0 || d_out == 0 || w.len() != d_in * d_out || w.iter().any(|x| !x.is_finite()) {
            return Err(LinalgError::InvalidInput(format!(
                "a {d_in} x {d_out} map needs {} finite values, got {}",
                d_in * d_out,
                w.len()
            )));
        }
        Ok(Adapter {
            kind,
            d_in,
            d_out,
            w,
            anchors_out: Vec::new(),
            centers: Default::default(),
            lambda,
        })
    }

    /// The kind.
    pub fn kind(&self) -> AdapterKind {
        self.kind
    }

    /// Dimension of the new model's vectors (the input of [`Adapter::map_query`]).
    pub fn d_in(&self) -> usize {
        self.d_in
    }

    /// Dimension of the old model's vectors (the input of [`Adapter::map_stored`]).
    pub fn d_out(&self) -> usize {
        self.d_out
    }

    /// Ridge: the penalty used; 0 for the other kinds.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// Linear kinds: the `d_in x d_out` map, row-major. Relative: `None`.
    pub fn matrix(&self) -> Option<&[f32]> {
        (self.kind != AdapterKind::Relative).then_some(&self.w[..])
    }

    /// Dimension of the space searched: `d_out` for linear maps, the anchor count for relative.
    pub fn search_dim(&self) -> usize {
        match self.kind {
            AdapterKind::Relative => self.w.len() / self.d_in,
            _ => self.d_out,
        }
    }

    /// A new-model vector (`d_in`) in the searched space, unit length.
    pub fn map_query(&self, v: &[f32]) -> Result<Vec<f32>, LinalgError> {
        self.check_len(v, self.d_in, "query")?;
        let mut out = match self.kind {
            AdapterKind::Relative => relative_rep(v, &self.w, &self.centers[0]),
            _ => {
                let mut out = vec![0.0f32; self.d_out];
                for (i, &x) in v.iter().enumerate() {
                    let row = &self.w[i * self.d_out..(i + 1) * self.d_out];
                    out.iter_mut().zip(row).for_each(|(o, w)| *o += x * w);
                }
                out
            }
        };
        normalize(&mut out);
        Ok(out)
    }

    /// An old-model (stored) vector (`d_out`) in the searched space, unit length: itself for
    /// linear maps, its relative representation for the relative kind.
    pub fn map_stored(&self, v: &[f32]) -> Result<Vec<f32>, LinalgError> {
        self.check_len(v, self.d_out, "stored vector")?;
        let mut out = match self.kind {
            AdapterKind::Relative => relative_rep(v, &self.anchors_out, &self.centers[1]),
            _ => v.to_vec(),
        };
        normalize(&mut out);
        Ok(out)
    }

    fn check_len(&self, v: &[f32], want: usize, what: &str) -> Result<(), LinalgError> {
        if v.len() != want {
            return Err(LinalgError::InvalidInput(format!(
                "{what} has {} dimensions, the {} adapter expects {want}",
                v.len(),
                self.kind.name()
            )));
        }
        Ok(())
    }
}

/// The anchors of one space centred on their mean and normalised, with the centring of that space:
/// the mean, and the anchors' mean relative representation.
///
/// Sentence-embedding spaces are anisotropic (every pair of texts has a clearly positive cosine),
/// so raw cosines to the anchors share a large common part that says nothing about the text;
/// centring the vectors first, and the relative features after, removes it.
fn centred_anchors(anchors: &[f32], d: usize) -> (Vec<f32>, (Vec<f32>, Vec<f32>)) {
    let k = anchors.len() / d;
    let mut mean = vec![0.0f32; d];
    for a in anchors.chunks_exact(d) {
        mean.iter_mut().zip(a).for_each(|(m, x)| *m += x / k as f32);
    }
    let mut unit = anchors.to_vec();
    for a in unit.chunks_mut(d) {
        a.iter_mut().zip(&mean).for_each(|(x, m)| *x -= m);
        normalize(a);
    }
    let mut feature_mean = vec![0.0f32; k];
    for a in anchors.chunks_exact(d) {
        let r = raw_relative(a, &unit, &mean);
        feature_mean
            .iter_mut()
            .zip(&r)
            .for_each(|(m, x)| *m += x / k as f32);
    }
    (unit, (mean, feature_mean))
}

/// Cosines of `v - mean` to each unit (centred) anchor row.
fn raw_relative(v: &[f32], anchors: &[f32], mean: &[f32]) -> Vec<f32> {
    let mut u: Vec<f32> = v.iter().zip(mean).map(|(x, m)| x - m).collect();
    normalize(&mut u);
    anchors
        .chunks_exact(mean.len())
        .map(|a| dot(&u, a))
        .collect()
}

/// The relative representation of `v`: its centred cosines to the anchors, minus the anchors' own
/// mean representation.
fn relative_rep(
    v: &[f32],
    anchors: &[f32],
    (mean, feature_mean): &(Vec<f32>, Vec<f32>),
) -> Vec<f32> {
    let mut r = raw_relative(v, anchors, mean);
    r.iter_mut().zip(feature_mean).for_each(|(x, m)| *x -= m);
    r
}
