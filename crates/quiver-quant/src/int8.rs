//! Scalar quantization to one byte per dimension with per-dimension trained ranges.
//!
//! Dimension `d` maps `[min_d, max_d]` onto `0..=255`: `c = round((x − min_d) / scale_d)`,
//! `scale_d = (max_d − min_d) / 255`, reconstruction `x̂ = min_d + scale_d · c`.
//!
//! Scoring is asymmetric: the query stays (almost) full precision. With `w_d = q_d · scale_d`,
//! `q · x̂ = Σ q_d min_d + Σ w_d c_d`; the weights `w` are rounded once per query to `i16` at a
//! scale that cannot overflow `i32`, so the inner loop is an integer `u8 × i16` multiply-add
//! (`vpmaddwd`, 16 or 32 products per instruction). For L2 the code also stores `‖x̂‖²` and
//! `−‖q − x̂‖² = −(‖q‖² − 2 q·x̂ + ‖x̂‖²)`.

use crate::bytes::{Reader, Writer};
use crate::kernels::{self, Level};
use crate::scorer::{CodeScorer, QueryScorer};
use crate::QuantError;
use quiver_linalg::Metric;
use rayon::prelude::*;

/// A trained int8 scalar quantizer.
#[derive(Debug, Clone, PartialEq)]
pub struct Int8Codec {
    dim: usize,
    metric: Metric,
    min: Vec<f32>,
    scale: Vec<f32>,
}

impl Int8Codec {
    /// Learns each dimension's range (min, max) from the rows of `data` (already validated).
    pub(crate) fn train(data: &[f32], dim: usize, metric: Metric) -> Int8Codec {
        let (lo, hi) = data
            .par_chunks_exact(dim)
            .fold(
                || (vec![f32::INFINITY; dim], vec![f32::NEG_INFINITY; dim]),
                |(mut lo, mut hi), v| {
                    for d in 0..dim {
                        lo[d] = lo[d].min(v[d]);
                        hi[d] = hi[d].max(v[d]);
                    }
                    (lo, hi)
                },
            )
            .reduce(
                || (vec![f32::INFINITY; dim], vec![f32::NEG_INFINITY; dim]),
                |(mut a, mut b), (c, d)| {
                    a.iter_mut().zip(&c).for_each(|(x, y)| *x = x.min(*y));
                    b.iter_mut().zip(&d).for_each(|(x, y)| *x = x.max(*y));
                    (a, b)
                },
            );
        let scale = lo.iter().zip(&hi).map(|(l, h)| (h - l) / 255.0).collect();
        Int8Codec {
            dim,
            metric,
            min: lo,
            scale,
        }
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Metric the scores approximate.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// `dim` bytes, plus 4 (the reconstruction's squared norm) for L2.
    pub fn code_len(&self) -> usize {
        self.dim + if self.metric == Metric::L2 { 4 } else { 0 }
    }

    pub(crate) fn model_bytes(&self) -> usize {
        8 * self.dim
    }

    /// Per-dimension `(min, scale)` ranges.
    pub fn ranges(&self) -> (&[f32], &[f32]) {
        (&self.min, &self.scale)
    }

    pub(crate) fn encode(&self, v: &[f32], out: &mut [u8]) {
        let mut norm = 0.0f32;
        for d in 0..self.dim {
            let s = self.scale[d];
            let c = if s > 0.0 {
                ((v[d] - self.min[d]) / s).round().clamp(0.0, 255.0) as u8
            } else {
                0
            };
            out[d] = c;
            let x = self.min[d] + s * c as f32;
            norm += x * x;
        }
        if self.metric == Metric::L2 {
            out[self.dim..self.dim + 4].copy_from_slice(&norm.to_le_bytes());
        }
    }

    pub(crate) fn decode(&self, code: &[u8], out: &mut [f32]) {
        for d in 0..self.dim {
            out[d] = self.min[d] + self.scale[d] * code[d] as f32;
        }
    }

    pub(crate) fn query(&self, q: &[f32]) -> QueryScorer {
        let w: Vec<f32> = q.iter().zip(&self.scale).map(|(a, s)| a * s).collect();
        let offset: f32 = q.iter().zip(&self.min).map(|(a, m)| a * m).sum();
        let max_abs = w.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let sum_abs: f64 = w.iter().map(|x| x.abs() as f64).sum();
        // Largest scale with |w_q| <= 32767 and Σ 255·|w_q| < 2^31 (no overflow in i32 sums).
        let s = if max_abs > 0.0 {
            (32_767.0 / max_abs as f64).min(2_147_000_000.0 / (255.0 * sum_abs)) * 0.999
        } else {
            1.0
        };
        let wq: Vec<i16> = w.iter().map(|&x| (x as f64 * s).round() as i16).collect();
        let qnorm = if self.metric == Metric::L2 {
            Some(q.iter().map(|x| x * x).sum())
        } else {
            None
        };
        QueryScorer::from_int8(
            Int8Query {
                w: wq,
                offset,
                inv: (1.0 / s) as f32,
                qnorm,
                dim: self.dim,
                level: kernels::level(),
            },
            self.code_len(),
        )
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.f32s(&self.min);
        w.f32s(&self.scale);
    }

    pub(crate) fn read(r: &mut Reader<'_>, dim: usize, metric: Metric) -> Result<Self, QuantError> {
        let min = r.f32s(dim, "int8 minimums")?;
        let scale = r.f32s(dim, "int8 scales")?;
        if let Some(d) = scale.iter().position(|&s| s < 0.0) {
            return Err(QuantError::Corrupt(format!(
                "int8 scale of dimension {d} is negative"
            )));
        }
        Ok(Int8Codec {
            dim,
            metric,
            min,
            scale,
        })
    }
}

/// An int8 query: `i16` weights, the constant term and the L2 norm.
#[derive(Debug, Clone)]
pub(crate) struct Int8Query {
    w: Vec<i16>,
    offset: f32,
    inv: f32,
    qnorm: Option<f32>,
    dim: usize,
    level: Level,
}

impl CodeScorer for Int8Query {
    #[inline]
    fn score(&self, code: &[u8]) -> f32 {
        let ip = kernels::dot_u8_i16(self.level, &code[..self.dim], &self.w);
        let dot = self.offset + self.inv * ip as f32;
        match self.qnorm {
            None => dot,
            Some(qn) => {
                let t = &code[self.dim..self.dim + 4];
                let xn = f32::from_le_bytes([t[0], t[1], t[2], t[3]]);
                -(qn - 2.0 * dot + xn)
            }
        }
    }
}
