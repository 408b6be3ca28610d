//! Product quantization (Jégou, Douze & Schmid, "Product Quantization for Nearest Neighbor
//! Search", TPAMI 2011). The `dim` dimensions are cut into `m` contiguous sub-spaces (sizes differ
//! by at most one when `m` does not divide `dim`); each sub-space has `k = 256` centroids learned
//! by k-means on a sample, and a code is the `m` centroid numbers, one byte each.
//!
//! Search uses asymmetric distance computation (ADC): per query, a lookup table
//! `T[j][c] = score(q_j, centroid_{j,c})` (dot product, or negated squared L2 distance, which is
//! additive over sub-spaces), then `score(q, x̂) = Σ_j T[j][code_j]` — `m` table reads per code.

use crate::bytes::{Reader, Writer};
use crate::scorer::{CodeScorer, QueryScorer};
use crate::QuantError;
use quiver_linalg::kmeans::{kmeans, sample_rows, KMeansParams};
use quiver_linalg::Metric;
use rayon::prelude::*;

/// Centroids per sub-space (one byte per code entry).
const KSUB: usize = 256;
/// Training rows used at most (FAISS's default too: 256 × 256).
const MAX_TRAIN: usize = KSUB * 256;
/// Lloyd iterations per sub-space.
const ITERS: usize = 20;

/// A trained product quantizer.
#[derive(Debug, Clone, PartialEq)]
pub struct PqCodec {
    dim: usize,
    metric: Metric,
    /// Centroids per sub-space (256, or fewer when trained on fewer rows).
    k: usize,
    /// Sub-space `j` covers dimensions `bounds[j]..bounds[j + 1]`.
    bounds: Vec<usize>,
    /// Sub-space `j`'s `k` centroids start at `k * bounds[j]` (row-major, `dsub_j` columns).
    centroids: Vec<f32>,
}

fn split(dim: usize, m: usize) -> Vec<usize> {
    (0..=m).map(|j| j * dim / m).collect()
}

impl PqCodec {
    pub(crate) fn train(
        data: &[f32],
        dim: usize,
        metric: Metric,
        m: usize,
        seed: u64,
    ) -> Result<PqCodec, QuantError> {
        if m == 0 || m > dim {
            return Err(QuantError::InvalidInput(format!(
                "pq needs 1 <= m <= dim ({dim}), got m = {m}"
            )));
        }
        let n = data.len() / dim;
        let rows = sample_rows(n, MAX_TRAIN, seed);
        let bounds = split(dim, m);
        let books: Vec<Result<Vec<f32>, QuantError>> = (0..m)
            .into_par_iter()
            .map(|j| {
                let (a, b) = (bounds[j], bounds[j + 1]);
                let sub: Vec<f32> = rows
                    .iter()
                    .flat_map(|&r| data[r * dim + a..r * dim + b].iter().copied())
                    .collect();
                let km = kmeans(
                    &sub,
                    b - a,
                    &KMeansParams {
                        k: KSUB,
                        iters: ITERS,
                        seed: seed.wrapping_add(j as u64),
                        max_samples: 0,
                    },
                )?;
                Ok(km.centroids)
            })
            .collect();
        let mut centroids = Vec::with_capacity(KSUB.min(rows.len()) * dim);
        for book in books {
            centroids.extend(book?);
        }
        Ok(PqCodec {
            dim,
            metric,
            k: KSUB.min(rows.len()),
            bounds,
            centroids,
        })
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Metric the scores approximate.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Number of sub-spaces.
    pub fn m(&self) -> usize {
        self.bounds.len() - 1
    }

    /// `m` bytes.
    pub fn code_len(&self) -> usize {
        self.m()
    }

    pub(crate) fn model_bytes(&self) -> usize {
        4 * self.centroids.len()
    }

    #[inline]
    fn book(&self, j: usize) -> (&[f32], usize) {
        let (a, b) = (self.bounds[j], self.bounds[j + 1]);
        (&self.centroids[self.k * a..self.k * b], b - a)
    }

    pub(crate) fn encode(&self, v: &[f32], out: &mut [u8]) {
        for (j, o) in out.iter_mut().enumerate().take(self.m()) {
            let (book, dsub) = self.book(j);
            let x = &v[self.bounds[j]..self.bounds[j + 1]];
            let mut best = (0usize, f32::INFINITY);
            for (c, cv) in book.chunks_exact(dsub).enumerate() {
                let d: f32 = cv.iter().zip(x).map(|(a, b)| (a - b) * (a - b)).sum();
                if d < best.1 {
                    best = (c, d);
                }
            }
            *o = best.0 as u8;
        }
    }

    pub(crate) fn decode(&self, code: &[u8], out: &mut [f32]) {
        for j in 0..self.m() {
            let (book, dsub) = self.book(j);
            let c = (code[j] as usize).min(self.k - 1);
            out[self.bounds[j]..self.bounds[j + 1]]
                .copy_from_slice(&book[c * dsub..(c + 1) * dsub]);
        }
    }

    pub(crate) fn query(&self, q: &[f32]) -> QueryScorer {
        let m = self.m();
        // Table rows are 256 wide even when k < 256, so a code byte always indexes in bounds.
        let mut lut = vec![f32::NEG_INFINITY; m * KSUB];
        for j in 0..m {
            let (book, dsub) = self.book(j);
            let x = &q[self.bounds[j]..self.bounds[j + 1]];
            for (c, cv) in book.chunks_exact(dsub).enumerate() {
                lut[j * KSUB + c] = match self.metric {
                    Metric::L2 => -cv
                        .iter()
                        .zip(x)
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum::<f32>(),
                    Metric::Dot | Metric::Cosine => cv.iter().zip(x).map(|(a, b)| a * b).sum(),
                };
            }
        }
        QueryScorer::from_pq(PqQuery { lut, m }, m)
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.u32(self.m());
        w.u32(self.k);
        w.f32s(&self.centroids);
    }

    pub(crate) fn read(r: &mut Reader<'_>, dim: usize, metric: Metric) -> Result<Self, QuantError> {
        let m = r.u32("pq m")? as usize;
        if m == 0 || m > dim {
            return Err(QuantError::Corrupt(format!(
                "pq m = {m} out of range 1..={dim}"
            )));
        }
        let k = r.u32("pq k")? as usize;
        if k == 0 || k > KSUB {
            return Err(QuantError::Corrupt(format!(
                "pq k = {k} out of range 1..={KSUB}"
            )));
        }
        let centroids = r.f32s(k * dim, "pq centroids")?;
        Ok(PqCodec {
            dim,
            metric,
            k,
            bounds: split(dim, m),
            centroids,
        })
    }
}

/// A PQ query: the `m × 256` ADC lookup table.
#[derive(Debug, Clone)]
pub(crate) struct PqQuery {
    lut: Vec<f32>,
    m: usize,
}

impl CodeScorer for PqQuery {
    #[inline]
    fn score(&self, code: &[u8]) -> f32 {
        let code = &code[..self.m];
        let lut = &self.lut[..self.m * KSUB];
        // Four independent sums so the table reads overlap.
        let mut acc = [0.0f32; 4];
        let mut chunks = code.chunks_exact(4);
        let mut j = 0;
        for c in &mut chunks {
            acc[0] += lut[j * KSUB + c[0] as usize];
            acc[1] += lut[(j + 1) * KSUB + c[1] as usize];
            acc[2] += lut[(j + 2) * KSUB + c[2] as usize];
            acc[3] += lut[(j + 3) * KSUB + c[3] as usize];
            j += 4;
        }
        for &c in chunks.remainder() {
            acc[0] += lut[j * KSUB + c as usize];
            j += 1;
        }
        (acc[0] + acc[1]) + (acc[2] + acc[3])
    }
}
