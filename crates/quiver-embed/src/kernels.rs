//! Fused, multi-threaded element-wise kernels for the transformer forward pass.
//!
//! Between two matrix multiplies BERT does GELU, or residual + LayerNorm (the bias is already in
//! the matrix multiply's output, see [`crate::linear`]); each is one in-place pass here,
//! parallelised over rows on the current rayon pool (the model's pool), with vectorised exp and
//! erf. Attention's softmax lives here too.

use rayon::prelude::*;

/// Floats per rayon task of the element-wise kernels: enough work to amortise scheduling.
const CHUNK: usize = 16_384;

/// Rows per rayon task for row-wise kernels of width `width`.
fn rows_per_task(width: usize) -> usize {
    (CHUNK / width.max(1)).max(1)
}

/// `x = gelu(x)` element-wise (exact erf form, or the tanh approximation).
pub(crate) fn gelu(x: &mut [f32], tanh_approx: bool) {
    x.par_chunks_mut(CHUNK).for_each(|chunk| {
        if tanh_approx {
            chunk.iter_mut().for_each(|v| *v = gelu_tanh(*v));
        } else {
            gelu_erf_chunk(chunk);
        }
    });
}

/// Exact GELU, compiled for AVX-512 or AVX2+FMA when the CPU has them (the loop
/// auto-vectorises; the erf below is branch-free for that reason).
fn gelu_erf_chunk(chunk: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the required CPU feature was detected at run time just above.
            unsafe { gelu_erf_chunk_avx512(chunk) };
            return;
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the required CPU features were detected at run time just above.
            unsafe { gelu_erf_chunk_avx2(chunk) };
            return;
        }
    }
    gelu_erf_chunk_generic(chunk);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gelu_erf_chunk_avx512(chunk: &mut [f32]) {
    gelu_erf_chunk_generic(chunk);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_erf_chunk_avx2(chunk: &mut [f32]) {
    gelu_erf_chunk_generic(chunk);
}

#[inline(always)]
fn gelu_erf_chunk_generic(chunk: &mut [f32]) {
    chunk.iter_mut().for_each(|v| *v = gelu_erf(*v));
}

/// `x = relu(x)` element-wise.
pub(crate) fn relu(x: &mut [f32]) {
    x.par_chunks_mut(CHUNK)
        .for_each(|chunk| chunk.iter_mut().for_each(|v| *v = v.max(0.0)));
}

/// `x[r] = LayerNorm(x[r] + residual[r]) * gamma + beta` (biased variance, like PyTorch).
pub(crate) fn residual_layer_norm(
    x: &mut [f32],
    residual: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    let w = gamma.len();
    let per = rows_per_task(w);
    x.par_chunks_mut(w * per)
        .zip(residual.par_chunks(w * per))
        .for_each(|(chunk, res)| {
            for (row, r) in chunk.chunks_exact_mut(w).zip(res.chunks_exact(w)) {
                for (v, rv) in row.iter_mut().zip(r) {
                    *v += *rv;
                }
                layer_norm_row(row, gamma, beta, eps);
            }
        });
}

/// `x[r] = LayerNorm(x[r]) * gamma + beta` for every row of width `gamma.len()`.
pub(crate) fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let w = gamma.len();
    x.par_chunks_mut(w * rows_per_task(w)).for_each(|chunk| {
        for row in chunk.chunks_exact_mut(w) {
            layer_norm_row(row, gamma, beta, eps);
        }
    });
}

#[inline(always)]
fn layer_norm_row(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let w = row.len();
    let mean = sum_lanes(row) / w as f32;
    let mut sq = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (a, v) in sq.iter_mut().zip(c.iter_mut()) {
            *v -= mean;
            *a += *v * *v;
        }
    }
    let mut var = 0.0f32;
    for v in chunks.into_remainder() {
        *v -= mean;
        var += *v * *v;
    }
    var += sq.iter().sum::<f32>();
    let inv = 1.0 / (var / w as f32 + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = *v * inv * *g + *b;
    }
}

/// In-place softmax of `scale * row` for each row of width `len` (vectorised exp, see
/// [`exp_neg`]); `scale` must be positive.
pub(crate) fn softmax_rows(scores: &mut [f32], len: usize, scale: f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the required CPU feature was detected at run time just above.
            unsafe { softmax_rows_avx512(scores, len, scale) };
            return;
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the required CPU features were detected at run time just above.
            unsafe { softmax_rows_avx2(scores, len, scale) };
            return;
        }
    }
    softmax_rows_generic(scores, len, scale);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_rows_avx512(scores: &mut [f32], len: usize, scale: f32) {
    softmax_rows_generic(scores, len, scale);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_rows_avx2(scores: &mut [f32], len: usize, scale: f32) {
    softmax_rows_generic(scores, len, scale);
}

#[inline(always)]
fn softmax_rows_generic(scores: &mut [f32], len: usize, scale: f32) {
    for row in scores.chunks_exact_mut(len.max(1)) {
        let max = max_lanes(row);
        for x in row.iter_mut() {
            *x = exp_neg((max - *x) * scale);
        }
        let inv = 1.0 / sum_lanes(row);
        row.iter_mut().for_each(|x| *x *= inv);
    }
}

/// Lanes used by the reductions below: independent accumulators let the compiler vectorise a
/// reduction that would otherwise be one serial chain of dependent adds.
const LANES: usize = 16;

/// Sum of `x` with [`LANES`] partial sums.
#[inline(always)]
fn sum_lanes(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += *v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Maximum of `x` (NEG_INFINITY when empty) with [`LANES`] partial maxima.
#[inline(always)]
fn max_lanes(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a = if *v > *a { *v } else { *a };
        }
    }
    acc.iter().copied().fold(tail, f32::max)
}

/// Exact GELU, `x * Φ(x)`, with erf from Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7).
#[inline(always)]
fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[inline]
fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // sqrt(2/pi)
    0.5 * x * (1.0 + (C * (x + 0.044_715 * x * x * x)).tanh())
}

/// erf(x), Abramowitz & Stegun 7.1.26. Branch-free so that loops over it vectorise.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp_neg(a * a);
    y.copysign(x)
}

/// e^(-z) for z >= 0 (relative error ~2e-7), branch-free: 2^n by exponent bits times a
/// degree-6 polynomial on the reduced argument; `z` is clamped at 87 (e^-87 ≈ 1.6e-38).
///
/// Only float adds and multiplies and integer bit operations, so loops over it vectorise: `n`
/// is rounded by adding 1.5·2²³ (the sum's low mantissa bits are then `n`, rounded to nearest
/// even), not by `round()` and `as i32`, which the compiler cannot vectorise.
#[inline(always)]
fn exp_neg(z: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0;
    let x = (-z).max(-87.0);
    let t = x * std::f32::consts::LOG2_E + SHIFT;
    let n = t - SHIFT;
    // Cody–Waite: ln 2 split in a high part exact in f32 and a low correction.
    let r = (x - n * 0.693_145_75) - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67
                    + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
    // t's bits are SHIFT's plus n (same binade), so this is n + 127 in the exponent field.
    let exponent = t.to_bits().wrapping_sub(SHIFT.to_bits()).wrapping_add(127) << 23;
    p * f32::from_bits(exponent)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SIMD level of the kernels below; each is the generic loop compiled with more target
    /// features.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Level {
        Generic,
        Avx2Fma,
        Avx512,
    }

    fn cpu_has(l: Level) -> bool {
        match l {
            Level::Generic => true,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2Fma => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    fn gelu_at(l: Level, x: &mut [f32]) {
        match l {
            Level::Generic => gelu_erf_chunk_generic(x),
            // SAFETY: only called when `cpu_has(l)`, i.e. the CPU has these features.
            #[cfg(target_arch = "x86_64")]
            Level::Avx2Fma => unsafe { gelu_erf_chunk_avx2(x) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unsafe { gelu_erf_chunk_avx512(x) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("no SIMD level off x86-64"),
        }
    }

    fn softmax_at(l: Level, x: &mut [f32], len: usize, scale: f32) {
        match l {
            Level::Generic => softmax_rows_generic(x, len, scale),
            // SAFETY: only called when `cpu_has(l)`, i.e. the CPU has these features.
            #[cfg(target_arch = "x86_64")]
            Level::Avx2Fma => unsafe { softmax_rows_avx2(x, len, scale) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unsafe { softmax_rows_avx512(x, len, scale) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("no SIMD level off x86-64"),
        }
    }

    /// Every level this CPU has, called explicitly, gives bit-for-bit the generic kernel's output
    /// (Rust never reassociates or contracts float arithmetic, so wider vectors change nothing);
    /// the generic kernel matches an f64 reference; a level the CPU lacks is printed as SKIPPED.
    /// The dispatching entry points (`gelu`, `softmax_rows`) agree too.
    #[test]
    fn simd_levels_match_generic() {
        let seed = 11u64;
        println!("seed {seed}");
        let mut rng = crate::testutil::Lcg::new(seed);
        let mut rnd = || rng.uniform() * 8.0;
        let levels = [Level::Generic, Level::Avx2Fma, Level::Avx512];
        for l in levels {
            if cpu_has(l) {
                println!("level {l:?}: tested against the generic kernels");
            } else {
                println!("level {l:?}: SKIPPED (this CPU lacks it)");
            }
        }
        let mut compared = 0;
        // Odd widths cover every vector tail.
        for width in [1usize, 3, 7, 15, 16, 17, 31, 33, 64, 100, 384, 385] {
            let rows = 3;
            let x: Vec<f32> = (0..rows * width).map(|_| rnd()).collect();
            let mut want = x.clone();
            gelu_at(Level::Generic, &mut want);
            for (&v, &g) in x.iter().zip(&want) {
                let z = f64::from(v);
                let exact = 0.5 * z * (1.0 + erf_f64(z / std::f64::consts::SQRT_2));
                assert!(
                    (f64::from(g) - exact).abs() < 1e-5 * (1.0 + z.abs()),
                    "gelu({z})"
                );
            }
            // A scale below 1 as attention uses (1/sqrt(head_dim)).
            let scale = 0.35f32;
            let mut want_sm = x.clone();
            softmax_at(Level::Generic, &mut want_sm, width, scale);
            for (r, row) in want_sm.chunks(width).enumerate() {
                let xr: Vec<f64> = x[r * width..(r + 1) * width]
                    .iter()
                    .map(|&v| f64::from(v) * f64::from(scale))
                    .collect();
                let m = xr.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = xr.iter().map(|&v| (v - m).exp()).sum();
                for (&p, &v) in row.iter().zip(&xr) {
                    let exact = (v - m).exp() / z;
                    // f32 rounding of the sums plus exp_neg's 2e-7 relative error.
                    assert!((f64::from(p) - exact).abs() < 2e-6, "softmax width {width}");
                }
            }
            for l in levels.into_iter().filter(|&l| cpu_has(l)) {
                let mut got = x.clone();
                gelu_at(l, &mut got);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{l:?} gelu width {width}");
                let mut got = x.clone();
                softmax_at(l, &mut got, width, scale);
                assert_eq!(bits(&got), bits(&want_sm), "{l:?} softmax width {width}");
                compared += 1;
            }
            let mut got = x.clone();
            gelu(&mut got, false);
            assert_eq!(got, want, "gelu dispatch, width {width}");
            let mut got = x.clone();
            softmax_rows(&mut got, width, scale);
            assert_eq!(got, want_sm, "softmax_rows dispatch, width {width}");
        }
        let have = levels.into_iter().filter(|&l| cpu_has(l)).count();
        assert_eq!(
            compared,
            12 * have,
            "every width at every level this CPU has"
        );
    }

    /// erf in f64 by its Maclaurin series, exact to ~1e-12 for the |x| <= 4 used here (A&S
    /// 7.1.26, the kernel's own formula, is only good to 1.5e-7).
    fn erf_f64(x: f64) -> f64 {
        assert!(x.abs() <= 4.0, "series used beyond its range: {x}");
        // erf x = 2/√π · Σ (-1)^n x^(2n+1) / (n! (2n+1)), summed until the terms vanish.
        let mut term = x;
        let mut sum = x;
        let mut n = 0.0;
        while term.abs() > 1e-17 * sum.abs().max(1e-300) {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
            if n > 400.0 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn erf_is_accurate() {
        // Reference values of erf.
        for (x, want) in [
            (0.0f32, 0.0f64),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (-2.0, -0.995_322_265_018_952_7),
            (3.5, 0.999_999_256_901_627_7),
        ] {
            assert!((f64::from(erf(x)) - want).abs() < 3e-7, "erf({x})");
        }
    }

    #[test]
    fn exp_neg_is_accurate() {
        let mut z = 0.0f32;
        while z < 80.0 {
            let (got, want) = (exp_neg(z), (-z).exp());
            assert!(
                ((got - want) / want).abs() < 1e-6,
                "exp(-{z}): {got} vs {want}"
            );
            z += 0.173;
        }
        assert!(exp_neg(200.0) < 1e-37);
    }

    #[test]
    fn lane_reductions() {
        let x: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let want_sum: f32 = x.iter().sum();
        assert!((sum_lanes(&x) - want_sum).abs() < 1e-5);
        assert_eq!(
            max_lanes(&x),
            x.iter().copied().fold(f32::NEG_INFINITY, f32::max)
        );
        assert_eq!(max_lanes(&[]), f32::NEG_INFINITY);
        let mut row = vec![1.0, 1.5, 3.5];
        let res = vec![0.0, 0.5, -0.5];
        residual_layer_norm(&mut row, &res, &[1.0; 3], &[0.0; 3], 0.0);
        let want = [-1.224_744_9, 0.0, 1.224_744_9];
        assert!(
            row.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5),
            "{row:?}"
        );
        let mut row = vec![1.0, 2.0, 3.0];
        layer_norm(&mut row, &[2.0; 3], &[1.0; 3], 0.0);
        let want = [-1.449_489_8, 1.0, 3.449_489_8];
        assert!(
            row.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5),
            "{row:?}"
        );
    }
}
