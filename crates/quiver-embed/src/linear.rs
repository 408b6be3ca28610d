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
    inputs: usize,
    outputs: usize,
}

enum Weights {
    /// `weight` `[out, in]` row-major, as PyTorch stores it, and `bias` `[out]`.
    F32 { weight: Vec<f32>, bias: Vec<f32> },
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
        let outputs = bias.len();
        if inputs == 0 || weight.len() != outputs * inputs {
            return Err(EmbedError::InvalidOption(format!(
                "linear layer: weight of {} values does not match {outputs} outputs x {inputs} inputs",
                weight.len(),
            )));
        }
        let weights = match precision {
            Precision::F32 => Weights::F32 { weight, bias },
            Precision::Bf16 => Weights::Low(Packed::new(LowKind::Bf16, &weight, &bias, inputs)),
            Precision::Int8 => Weights::Low(Packed::new(LowKind::Int8, &weight, &bias, inputs)),
        };
        Ok(Linear {
            weights,
            inputs,
            outputs,
        })
    }

    /// Output width.
    pub(crate) fn outputs(&self) -> usize {
        self.outputs
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
        let (k, n) = (self.inputs, self.outputs);
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
        match &self.weights {
            Weights::Low(packed) => packed.apply(x, rows, out, act),
            Weights::F32 { weight, bias } => {
                let out = &mut out[..rows * n];
                for row in out.chunks_exact_mut(n) {
                    row.copy_from_slice(bias);
                }
                let threads = rayon::current_num_threads();
                let parallelism = if threads > 1 && rows * n * k >= 1 << 16 {
                    gemm::Parallelism::Rayon(threads)
                } else {
                    gemm::Parallelism::None
                };
                // out += x · Wᵀ: x(i, p) = x[i*k + p], Wᵀ(p, j) = W[j*k + p].
                gemm_strided(
                    out,
                    n,
                    (x, k, 1),
                    (weight, 1, k),
                    (rows, n, k),
                    true,
                    parallelism,
                );
            }
        }
        Ok(())
    }
}

/// `C[m x n] = A[m x k] · B[k x n]`, or `C += A · B` with `add`; `C` is row-major with row
/// stride `c_rs`, `A` and `B` are `(data, row stride, column stride)`. The one call into the
/// `gemm` crate (AVX-512 / AVX2 micro-kernels picked at run time), for the linear layers and
/// attention's two products. Bounds are checked before the call.
pub(crate) fn gemm_strided(
    c: &mut [f32],
    c_rs: usize,
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
    mnk: (usize, usize, usize),
    add: bool,
    parallelism: gemm::Parallelism,
) {
    let (m, n, k) = mnk;
    let (a, a_rs, a_cs) = a;
    let (bm, b_rs, b_cs) = b;
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    let in_bounds = k > 0
        && c_rs >= n
        && last(m, n, c_rs, 1) < c.len()
        && last(m, k, a_rs, a_cs) < a.len()
        && last(k, n, b_rs, b_cs) < bm.len();
    if !in_bounds {
        // Not reachable from this crate's callers; a slow but safe path rather than UB.
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0f32;
                for p in 0..k {
                    acc += a.get(i * a_rs + p * a_cs).copied().unwrap_or(0.0)
                        * bm.get(p * b_rs + j * b_cs).copied().unwrap_or(0.0);
                }
                if let Some(x) = c.get_mut(i * c_rs + j) {
                    *x = if add { *x + acc } else { acc };
                }
            }
        }
        return;
    }
    // SAFETY: every index gemm touches, (i, j) -> i*c_rs + j, (i, p) -> i*a_rs + p*a_cs and
    // (p, j) -> p*b_rs + j*b_cs for i < m, j < n, p < k, was checked to lie inside the slices;
    // `c` is borrowed mutably and cannot alias `a` or `b`. With `add`, read_dst = true and
    // dst = 1·dst + 1·(A·B); without, read_dst = false and `c` need not be initialised.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            c_rs as isize,
            add,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            bm.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            if add { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        );
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
