//! Binary codes: one bit per dimension (32x smaller than `f32`).
//!
//! Bit `d` is `x_d >= t_d`, with the threshold `t_d` the training mean of dimension `d`
//! (centring makes bits balanced; plain sign bits are the special case `t = 0`). Each dimension
//! also learns the mean of its values below (`lo_d`) and above (`hi_d`) the threshold, so a code
//! stands for the vector `x̂_d = bit ? hi_d : lo_d` — the least-squares reconstruction given the bit.
//!
//! Two scorers:
//! - **asymmetric** (default): the full-precision query against `x̂`:
//!   `q·x̂ = Σ q_d lo_d + Σ_{bit d set} q_d (hi_d − lo_d)`. With AVX-512 the inner loop is one
//!   masked add per 16 dimensions (the code bits *are* the lane mask); elsewhere a 256-entry table
//!   per code byte (built once per query) turns it into one lookup per 8 dimensions.
//! - **symmetric**: the query binarised with the same thresholds; score `−Hamming(q, x)`
//!   (XOR + hardware popcount over 64-bit words). Only the ranking is meaningful.
//!
//! Bit layout: dimension `d` is bit `d % 8` of byte `d / 8` (little-endian bit order).

use crate::bytes::{Reader, Writer};
use crate::kernels::{self, Level};
use crate::scorer::{CodeScorer, QueryScorer};
use crate::QuantError;
use quiver_linalg::Metric;
use rayon::prelude::*;

/// A trained binary codec.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryCodec {
    dim: usize,
    metric: Metric,
    thresh: Vec<f32>,
    lo: Vec<f32>,
    hi: Vec<f32>,
}

impl BinaryCodec {
    /// Learns thresholds (means) and the two reconstruction levels of every dimension.
    pub(crate) fn train(data: &[f32], dim: usize, metric: Metric) -> BinaryCodec {
        let n = (data.len() / dim).max(1) as f64;
        let sum = data
            .par_chunks_exact(dim)
            .fold(
                || vec![0.0f64; dim],
                |mut s, v| {
                    s.iter_mut().zip(v).for_each(|(a, &x)| *a += x as f64);
                    s
                },
            )
            .reduce(
                || vec![0.0f64; dim],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                    a
                },
            );
        let thresh: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        // Per dimension: (sum below, count below, sum above, count above).
        let zero = || vec![(0.0f64, 0usize, 0.0f64, 0usize); dim];
        let parts = data
            .par_chunks_exact(dim)
            .fold(zero, |mut acc, v| {
                for d in 0..dim {
                    let a = &mut acc[d];
                    if v[d] >= thresh[d] {
                        a.2 += v[d] as f64;
                        a.3 += 1;
                    } else {
                        a.0 += v[d] as f64;
                        a.1 += 1;
                    }
                }
                acc
            })
            .reduce(zero, |mut a, b| {
                for (x, y) in a.iter_mut().zip(&b) {
                    x.0 += y.0;
                    x.1 += y.1;
                    x.2 += y.2;
                    x.3 += y.3;
                }
                a
            });
        let mean = |s: f64, c: usize, t: f32| if c > 0 { (s / c as f64) as f32 } else { t };
        let lo = parts
            .iter()
            .zip(&thresh)
            .map(|(p, &t)| mean(p.0, p.1, t))
            .collect();
        let hi = parts
            .iter()
            .zip(&thresh)
            .map(|(p, &t)| mean(p.2, p.3, t))
            .collect();
        BinaryCodec {
            dim,
            metric,
            thresh,
            lo,
            hi,
        }
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Metric the asymmetric scores approximate.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    fn bit_bytes(&self) -> usize {
        self.dim.div_ceil(8)
    }

    /// `ceil(dim / 8)` bytes, plus 4 (the reconstruction's squared norm) for L2.
    pub fn code_len(&self) -> usize {
        self.bit_bytes() + if self.metric == Metric::L2 { 4 } else { 0 }
    }

    pub(crate) fn model_bytes(&self) -> usize {
        12 * self.dim
    }

    /// Per-dimension thresholds.
    pub fn thresholds(&self) -> &[f32] {
        &self.thresh
    }

    fn write_bits(&self, v: &[f32], out: &mut [u8]) {
        let nb = self.bit_bytes();
        out[..nb].iter_mut().for_each(|b| *b = 0);
        for d in 0..self.dim {
            if v[d] >= self.thresh[d] {
                out[d / 8] |= 1 << (d % 8);
            }
        }
    }

    pub(crate) fn encode(&self, v: &[f32], out: &mut [u8]) {
        self.write_bits(v, out);
        if self.metric == Metric::L2 {
            let norm: f32 = (0..self.dim)
                .map(|d| {
                    let x = if v[d] >= self.thresh[d] {
                        self.hi[d]
                    } else {
                        self.lo[d]
                    };
                    x * x
                })
                .sum();
            let nb = self.bit_bytes();
            out[nb..nb + 4].copy_from_slice(&norm.to_le_bytes());
        }
    }

    pub(crate) fn decode(&self, code: &[u8], out: &mut [f32]) {
        for d in 0..self.dim {
            out[d] = if code[d / 8] >> (d % 8) & 1 == 1 {
                self.hi[d]
            } else {
                self.lo[d]
            };
        }
    }

    /// The asymmetric scorer.
    pub(crate) fn query(&self, q: &[f32]) -> QueryScorer {
        let nb = self.bit_bytes();
        let padded = (8 * nb).div_ceil(16) * 16;
        let mut w = vec![0.0f32; padded];
        for d in 0..self.dim {
            w[d] = q[d] * (self.hi[d] - self.lo[d]);
        }
        let offset: f32 = q.iter().zip(&self.lo).map(|(a, b)| a * b).sum();
        let level = kernels::level();
        // Below AVX-512: one 256-entry table per code byte, entry b = Σ of w over the set bits of b.
        let lut = if level == Level::Avx512 {
            Vec::new()
        } else {
            let mut lut = vec![0.0f32; nb * 256];
            for j in 0..nb {
                let t = &mut lut[j * 256..(j + 1) * 256];
                for b in 1..256usize {
                    let low = b.trailing_zeros() as usize;
                    t[b] = t[b & (b - 1)] + w[j * 8 + low];
                }
            }
            lut
        };
        let qnorm = (self.metric == Metric::L2).then(|| q.iter().map(|x| x * x).sum());
        QueryScorer::from_binary(
            BinaryQuery {
                w,
                lut,
                offset,
                qnorm,
                bytes: nb,
                level,
            },
            self.code_len(),
        )
    }

    /// The symmetric (Hamming) scorer.
    pub(crate) fn query_hamming(&self, q: &[f32]) -> QueryScorer {
        let mut bits = vec![0u8; self.bit_bytes()];
        self.write_bits(q, &mut bits);
        QueryScorer::from_hamming(
            HammingQuery {
                bits,
                level: kernels::level(),
            },
            self.code_len(),
        )
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.f32s(&self.thresh);
        w.f32s(&self.lo);
        w.f32s(&self.hi);
    }

    pub(crate) fn read(r: &mut Reader<'_>, dim: usize, metric: Metric) -> Result<Self, QuantError> {
        Ok(BinaryCodec {
            dim,
            metric,
            thresh: r.f32s(dim, "binary thresholds")?,
            lo: r.f32s(dim, "binary low levels")?,
            hi: r.f32s(dim, "binary high levels")?,
        })
    }
}

/// Asymmetric binary query: per-dimension weights (and per-byte tables below AVX-512).
#[derive(Debug, Clone)]
pub(crate) struct BinaryQuery {
    w: Vec<f32>,
    lut: Vec<f32>,
    offset: f32,
    qnorm: Option<f32>,
    bytes: usize,
    level: Level,
}

impl BinaryQuery {
    #[inline]
    fn dot(&self, bits: &[u8]) -> f32 {
        if let Some(s) = kernels::masked_sum(self.level, bits, &self.w) {
            return self.offset + s;
        }
        let mut s = 0.0;
        for (j, &b) in bits.iter().enumerate() {
            s += self.lut[j * 256 + b as usize];
        }
        self.offset + s
    }
}

impl CodeScorer for BinaryQuery {
    #[inline]
    fn score(&self, code: &[u8]) -> f32 {
        let dot = self.dot(&code[..self.bytes]);
        match self.qnorm {
            None => dot,
            Some(qn) => {
                let t = &code[self.bytes..self.bytes + 4];
                -(qn - 2.0 * dot + f32::from_le_bytes([t[0], t[1], t[2], t[3]]))
            }
        }
    }
}

/// Symmetric binary query: the query's own bits.
#[derive(Debug, Clone)]
pub(crate) struct HammingQuery {
    bits: Vec<u8>,
    level: Level,
}

impl CodeScorer for HammingQuery {
    #[inline]
    fn score(&self, code: &[u8]) -> f32 {
        -(kernels::hamming(self.level, &self.bits, &code[..self.bits.len()]) as f32)
    }
}
