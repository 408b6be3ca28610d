//! Linear layers of the transformer: `y = x · Wᵀ + b` written into a caller's buffer.
//!
//! At f32 the matrix multiply goes straight to the `gemm` crate (AVX-512 / AVX2 micro-kernels
//! picked at run time) with the bias pre-filled into the output, so no tensor is allocated per
//! call and no separate bias pass runs. At bf16 and int8 the weights are packed once at load and
//! multiplied by the kernels of [`crate::lowp`]. Work is split over the current rayon pool (the
//! model's pool), which is the only pool the forward pass uses: no second pool competes with it.

use crate::embedder::Precision;
use crate::error::{EmbedError, Result};
use crate::lowp::{Activations, LowKind, Packed};

/// A dense layer.
pub(crate) struct Linear {
    weights: Weights,
    bias: Vec<f32>,
    inputs: usize,
}

enum Weights {
    /// `[out, in]` row-major, as PyTorch stores it.
    F32(Vec<f32>),
    /// Packed bf16 or int8 (bias inside).
    Low(Packed),
}

impl Linear {
    /// A layer from its `[out, in]` weight and `[out]` bias, kept at `precision`.
    pub(crate) fn new(
        weight: Vec<f32>,
        bias: Vec<f32>,
        inputs: usize,
        precision: Precision,
    ) -> Result<Self> {
        if inputs == 0 || weight.len() != bias.len() * inputs {
            return Err(EmbedError::InvalidOption(format!(
                "linear layer: weight of {} values does not match {} outputs x {inputs} inputs",
                weight.len(),
                bias.len()
            )));
        }
        let weights = match precision {
            Precision::F32 => Weights::F32(weight),
            Precision::Bf16 => Weights::Low(Packed::new(LowKind::Bf16, &weight, &bias, inputs)),
            Precision::Int8 => Weights::Low(Packed::new(LowKind::Int8, &weight, &bias, inputs)),
        };
        Ok(Linear {
            weights,
            bias,
            inputs,
        })
    }

    /// Output width.
    pub(crate) fn outputs(&self) -> usize {
        self.bias.len()
    }

    /// `out[rows, outputs] = x[rows, inputs] · Wᵀ + b`; `act` is scratch for reduced precisions'
    /// converted inputs, reused across calls.
    ///
    /// `x` must hold `rows * inputs` values and `out` at least `rows * outputs`; anything else
    /// is an internal error, reported rather than risked.
    pub(crate) fn apply(
        &self,
        x: &[f32],
        rows: usize,
        out: &mut [f32],
        act: &mut Activations,
    ) -> Result<()> {
        let (k, n) = (self.inputs, self.outputs());
        if x.len() < rows * k || out.len() < rows * n {
            return Err(EmbedError::InvalidOption(format!(
                "linear layer: {rows} rows need {} inputs and {} outputs, got {} and {}",
                rows * k,
                rows * n,
                x.len(),
                out.len()
            )));
        }
        if rows == 0 {
            return Ok(());
        }
        let weight = match &self.weights {
            Weights::F32(w) => w,
            Weights::Low(packed) => {
                packed.apply(x, rows, out, act);
                return Ok(());
            }
        };
        let out = &mut out[..rows * n];
        for row in out.chunks_exact_mut(n) {
            row.copy_from_slice(&self.bias);
        }
        let threads = rayon::current_num_threads();
        let parallelism = if threads > 1 && rows * n * k >= 1 << 16 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: dst is `rows x n` row-major (row stride n, column stride 1) inside `out`;
        // lhs is `rows x k` row-major inside `x` (checked above); rhs(p, j) = W[j][p] at
        // `j * k + p` for p < k, j < n, inside `weight` (its length is n * k, checked in `new`).
        // `out` is borrowed mutably, so it aliases neither input. read_dst = true reads the
        // bias just written: dst = 1·dst + 1·(x · Wᵀ).
        unsafe {
            gemm::gemm(
                rows,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                true,
                x.as_ptr(),
                1,
                k as isize,
                weight.as_ptr(),
                k as isize,
                1,
                1.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the naive triple loop, on shapes with ragged tails, on 1 and 2 threads.
    #[test]
    fn apply_matches_naive() {
        let seed = 5u64;
        println!("seed {seed}");
        let mut rng = crate::testutil::Lcg::new(seed);
        let mut rnd = || rng.uniform();
        for (rows, k, n) in [(1, 3, 2), (7, 33, 17), (130, 384, 96), (3, 1536, 384)] {
            let w: Vec<f32> = (0..n * k).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..n).map(|_| rnd()).collect();
            let x: Vec<f32> = (0..rows * k).map(|_| rnd()).collect();
            let lin = Linear::new(w.clone(), b.clone(), k, Precision::F32).unwrap();
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut out = vec![f32::NAN; rows * n];
                let mut act = Activations::default();
                pool.install(|| lin.apply(&x, rows, &mut out, &mut act))
                    .unwrap();
                for i in 0..rows {
                    for j in 0..n {
                        let want: f64 = f64::from(b[j])
                            + (0..k)
                                .map(|p| f64::from(x[i * k + p]) * f64::from(w[j * k + p]))
                                .sum::<f64>();
                        let got = f64::from(out[i * n + j]);
                        assert!((got - want).abs() < 1e-4, "{rows}x{k}x{n} ({i},{j})");
                    }
                }
            }
        }
        let mut act = Activations::default();
        for precision in [Precision::F32, Precision::Bf16, Precision::Int8] {
            let lin = Linear::new(vec![0.0; 6], vec![0.0; 2], 3, precision).unwrap();
            assert!(lin.apply(&[0.0; 5], 2, &mut [0.0; 4], &mut act).is_err());
            assert!(lin.apply(&[0.0; 6], 2, &mut [0.0; 3], &mut act).is_err());
            assert!(Linear::new(vec![0.0; 5], vec![0.0; 2], 3, precision).is_err());
        }
    }
}
