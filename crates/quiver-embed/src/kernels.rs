//! Fused, multi-threaded element-wise kernels for the transformer forward pass.
//!
//! candle runs element-wise ops on one thread and allocates a tensor per op; between two matrix
//! multiplies BERT does bias + GELU, or bias + residual + LayerNorm, so these are fused here and
//! parallelised over rows on the current rayon pool (the model's pool).

use rayon::prelude::*;

/// Rows per rayon task: enough work to amortise scheduling.
fn rows_per_task(width: usize) -> usize {
    (16_384 / width.max(1)).max(1)
}

/// `x[r] = gelu(x[r] + bias)` for every row of width `bias.len()`.
pub(crate) fn bias_gelu(x: &mut [f32], bias: &[f32], tanh_approx: bool) {
    let w = bias.len();
    x.par_chunks_mut(w * rows_per_task(w)).for_each(|chunk| {
        if tanh_approx {
            for row in chunk.chunks_exact_mut(w) {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v = gelu_tanh(*v + *b);
                }
            }
        } else {
            bias_gelu_erf_rows(chunk, bias);
        }
    });
}

/// Exact-GELU rows, compiled for AVX-512 or AVX2+FMA when the CPU has them (the loop
/// auto-vectorises; the erf below is branch-free for that reason).
fn bias_gelu_erf_rows(chunk: &mut [f32], bias: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the required CPU feature was detected at run time just above.
            unsafe { bias_gelu_erf_rows_avx512(chunk, bias) };
            return;
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the required CPU features were detected at run time just above.
            unsafe { bias_gelu_erf_rows_avx2(chunk, bias) };
            return;
        }
    }
    bias_gelu_erf_rows_generic(chunk, bias);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn bias_gelu_erf_rows_avx512(chunk: &mut [f32], bias: &[f32]) {
    bias_gelu_erf_rows_generic(chunk, bias);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn bias_gelu_erf_rows_avx2(chunk: &mut [f32], bias: &[f32]) {
    bias_gelu_erf_rows_generic(chunk, bias);
}

#[inline(always)]
fn bias_gelu_erf_rows_generic(chunk: &mut [f32], bias: &[f32]) {
    for row in chunk.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v = gelu_erf(*v + *b);
        }
    }
}

/// `x[r] = relu(x[r] + bias)`.
pub(crate) fn bias_relu(x: &mut [f32], bias: &[f32]) {
    let w = bias.len();
    x.par_chunks_mut(w * rows_per_task(w)).for_each(|chunk| {
        for row in chunk.chunks_exact_mut(w) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v = (*v + *b).max(0.0);
            }
        }
    });
}

/// `x[r] = LayerNorm(x[r] + bias + residual[r]) * gamma + beta` (biased variance, like PyTorch).
pub(crate) fn bias_residual_layer_norm(
    x: &mut [f32],
    residual: &[f32],
    bias: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    let w = bias.len();
    let per = rows_per_task(w);
    x.par_chunks_mut(w * per)
        .zip(residual.par_chunks(w * per))
        .for_each(|(chunk, res)| {
            for (row, r) in chunk.chunks_exact_mut(w).zip(res.chunks_exact(w)) {
                for ((v, b), rv) in row.iter_mut().zip(bias).zip(r) {
                    *v += *b + *rv;
                }
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
        });
}

/// Split a fused `[b*s, 3h]` QKV projection (plus bias) into `q`, `k`, `v`, each `[b, heads, s, hd]`;
/// `q` is multiplied by `scale`.
pub(crate) fn split_heads(
    qkv: &[f32],
    bias: &[f32],
    dims: (usize, usize, usize, usize),
    scale: f32,
) -> [Vec<f32>; 3] {
    let (b, s, nh, hd) = dims;
    let h = nh * hd;
    let mut out = [
        vec![0f32; b * s * h],
        vec![0f32; b * s * h],
        vec![0f32; b * s * h],
    ];
    for (which, dst) in out.iter_mut().enumerate() {
        let sc = if which == 0 { scale } else { 1.0 };
        // One task per (batch, head) block of `s * hd` floats.
        dst.par_chunks_mut(s * hd)
            .enumerate()
            .for_each(|(bh, block)| {
                let (bi, head) = (bh / nh, bh % nh);
                let col = which * h + head * hd;
                for t in 0..s {
                    let src = &qkv[(bi * s + t) * 3 * h + col..][..hd];
                    let bb = &bias[col..col + hd];
                    for ((d, x), y) in block[t * hd..(t + 1) * hd].iter_mut().zip(src).zip(bb) {
                        *d = (*x + *y) * sc;
                    }
                }
            });
    }
    out
}

/// `[b, heads, s, hd]` back to `[b*s, heads*hd]`.
pub(crate) fn merge_heads(ctx: &[f32], dims: (usize, usize, usize, usize)) -> Vec<f32> {
    let (_b, s, nh, hd) = dims;
    let h = nh * hd;
    let mut out = vec![0f32; ctx.len()];
    out.par_chunks_mut(s * h)
        .enumerate()
        .for_each(|(bi, rows)| {
            for head in 0..nh {
                let block = &ctx[(bi * nh + head) * s * hd..][..s * hd];
                for t in 0..s {
                    rows[t * h + head * hd..][..hd].copy_from_slice(&block[t * hd..(t + 1) * hd]);
                }
            }
        });
    out
}

/// Scaled dot-product attention per (sequence, head), in parallel over the pairs.
///
/// `q` (already scaled by 1/sqrt(hd)), `k`, `v` are `[b, heads, s, hd]`. Only the `len` real
/// tokens of each sequence take part: padded keys get no weight and padded query rows are left
/// at zero (they are cut off before pooling). Returns the context, `[b, heads, s, hd]`.
pub(crate) fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    lengths: &[usize],
    dims: (usize, usize, usize, usize),
) -> Vec<f32> {
    let (b, s, nh, hd) = dims;
    let mut ctx = vec![0f32; b * nh * s * hd];
    ctx.par_chunks_mut(s * hd)
        .enumerate()
        .for_each(|(bh, out)| {
            let len = lengths.get(bh / nh).copied().unwrap_or(s).clamp(1, s);
            let off = bh * s * hd;
            let (qb, kb, vb) = (
                &q[off..off + s * hd],
                &k[off..off + s * hd],
                &v[off..off + s * hd],
            );
            let mut scores = vec![0f32; len * len];
            // scores[len x len] = Q[len x hd] · Kᵀ  (Kᵀ element (p, j) is k[j * hd + p]).
            gemm_strided(&mut scores, len, (qb, hd, 1), (kb, 1, hd), (len, len, hd));
            softmax_rows(&mut scores, len);
            // out[len x hd] = P[len x len] · V[len x hd]
            gemm_strided(
                &mut out[..len * hd],
                hd,
                (&scores, len, 1),
                (vb, hd, 1),
                (len, hd, len),
            );
        });
    ctx
}

/// In-place softmax of each row of width `len` (vectorised exp, see [`exp_neg`]).
fn softmax_rows(scores: &mut [f32], len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the required CPU feature was detected at run time just above.
            unsafe { softmax_rows_avx512(scores, len) };
            return;
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the required CPU features were detected at run time just above.
            unsafe { softmax_rows_avx2(scores, len) };
            return;
        }
    }
    softmax_rows_generic(scores, len);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_rows_avx512(scores: &mut [f32], len: usize) {
    softmax_rows_generic(scores, len);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_rows_avx2(scores: &mut [f32], len: usize) {
    softmax_rows_generic(scores, len);
}

#[inline(always)]
fn softmax_rows_generic(scores: &mut [f32], len: usize) {
    for row in scores.chunks_exact_mut(len.max(1)) {
        let max = max_lanes(row);
        for x in row.iter_mut() {
            *x = exp_neg(max - *x);
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

/// `C[m x n] = A[m x k] · B[k x n]` on one thread; `C` is row-major with row stride `c_rs`,
/// `A` and `B` are `(data, row stride, column stride)`. Bounds are checked before the call.
fn gemm_strided(
    c: &mut [f32],
    c_rs: usize,
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
    mnk: (usize, usize, usize),
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
                    *x = acc;
                }
            }
        }
        return;
    }
    // SAFETY: every index gemm touches, (i, j) -> i*c_rs + j, (i, p) -> i*a_rs + p*a_cs and
    // (p, j) -> p*b_rs + j*b_cs for i < m, j < n, p < k, was checked to lie inside the slices;
    // `c` is borrowed mutably and cannot alias `a` or `b`; read_dst = false so `c` need not be
    // initialised for gemm (it is anyway).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            c_rs as isize,
            false,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            bm.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
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
#[inline(always)]
fn exp_neg(z: f32) -> f32 {
    let x = (-z).max(-87.0);
    let n = (x * std::f32::consts::LOG2_E).round();
    // Cody–Waite: ln 2 split in a high part exact in f32 and a low correction.
    let r = (x - n * 0.693_145_75) - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67
                    + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
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

    fn gelu_at(l: Level, x: &mut [f32], bias: &[f32]) {
        match l {
            Level::Generic => bias_gelu_erf_rows_generic(x, bias),
            // SAFETY: only called when `cpu_has(l)`, i.e. the CPU has these features.
            #[cfg(target_arch = "x86_64")]
            Level::Avx2Fma => unsafe { bias_gelu_erf_rows_avx2(x, bias) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unsafe { bias_gelu_erf_rows_avx512(x, bias) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("no SIMD level off x86-64"),
        }
    }

    fn softmax_at(l: Level, x: &mut [f32], len: usize) {
        match l {
            Level::Generic => softmax_rows_generic(x, len),
            // SAFETY: only called when `cpu_has(l)`, i.e. the CPU has these features.
            #[cfg(target_arch = "x86_64")]
            Level::Avx2Fma => unsafe { softmax_rows_avx2(x, len) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unsafe { softmax_rows_avx512(x, len) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("no SIMD level off x86-64"),
        }
    }

    /// Every level this CPU has, called explicitly, gives bit-for-bit the generic kernel's output
    /// (Rust never reassociates or contracts float arithmetic, so wider vectors change nothing);
    /// the generic kernel matches an f64 reference; a level the CPU lacks is printed as SKIPPED.
    /// The dispatching entry points (`bias_gelu`, `softmax_rows`) agree too.
    #[test]
    fn simd_levels_match_generic() {
        let seed = 11u64;
        println!("seed {seed}");
        let mut state = seed;
        let mut rnd = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 8.0
        };
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
            let bias: Vec<f32> = (0..width).map(|_| rnd() / 16.0).collect();
            let mut want = x.clone();
            gelu_at(Level::Generic, &mut want, &bias);
            for (i, (&v, &g)) in x.iter().zip(&want).enumerate() {
                let z = f64::from(v + bias[i % width]);
                let exact = 0.5 * z * (1.0 + erf_f64(z / std::f64::consts::SQRT_2));
                assert!(
                    (f64::from(g) - exact).abs() < 1e-5 * (1.0 + z.abs()),
                    "gelu({z})"
                );
            }
            let mut want_sm = x.clone();
            softmax_at(Level::Generic, &mut want_sm, width);
            for (r, row) in want_sm.chunks(width).enumerate() {
                let xr = &x[r * width..(r + 1) * width];
                let m = xr
                    .iter()
                    .fold(f64::NEG_INFINITY, |a, &b| a.max(f64::from(b)));
                let z: f64 = xr.iter().map(|&v| (f64::from(v) - m).exp()).sum();
                for (&p, &v) in row.iter().zip(xr) {
                    let exact = (f64::from(v) - m).exp() / z;
                    // f32 rounding of the sums plus exp_neg's 2e-7 relative error.
                    assert!((f64::from(p) - exact).abs() < 2e-6, "softmax width {width}");
                }
            }
            for l in levels.into_iter().filter(|&l| cpu_has(l)) {
                let mut got = x.clone();
                gelu_at(l, &mut got, &bias);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{l:?} gelu width {width}");
                let mut got = x.clone();
                softmax_at(l, &mut got, width);
                assert_eq!(bits(&got), bits(&want_sm), "{l:?} softmax width {width}");
                compared += 1;
            }
            let mut got = x.clone();
            bias_gelu(&mut got, &bias, false);
            assert_eq!(got, want, "bias_gelu dispatch, width {width}");
            let mut got = x.clone();
            softmax_rows(&mut got, width);
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
    fn attention_matches_naive() {
        let seed = 7u64;
        println!("seed {seed}");
        let mut state = seed;
        let mut rnd = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let (b, s, nh, hd) = (2, 5, 2, 3);
        let n = b * nh * s * hd;
        let (q, k, v): (Vec<f32>, Vec<f32>, Vec<f32>) = (
            (0..n).map(|_| rnd()).collect(),
            (0..n).map(|_| rnd()).collect(),
            (0..n).map(|_| rnd()).collect(),
        );
        let lengths = [5, 3];
        let got = attention(&q, &k, &v, &lengths, (b, s, nh, hd));
        for bh in 0..b * nh {
            let len = lengths[bh / nh];
            let o = bh * s * hd;
            for i in 0..s {
                for d in 0..hd {
                    let want = if i >= len {
                        0.0
                    } else {
                        let sc: Vec<f32> = (0..len)
                            .map(|j| (0..hd).map(|p| q[o + i * hd + p] * k[o + j * hd + p]).sum())
                            .collect();
                        let m = sc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        let e: Vec<f32> = sc.iter().map(|x| (x - m).exp()).collect();
                        let z: f32 = e.iter().sum();
                        (0..len).map(|j| e[j] / z * v[o + j * hd + d]).sum()
                    };
                    assert!(
                        (got[o + i * hd + d] - want).abs() < 1e-5,
                        "bh {bh} i {i} d {d}"
                    );
                }
            }
        }
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
        let mut row = vec![1.0, 2.0, 3.0];
        let res = vec![0.0; 3];
        bias_residual_layer_norm(&mut row, &res, &[0.0; 3], &[1.0; 3], &[0.0; 3], 0.0);
        let want = [-1.224_744_9, 0.0, 1.224_744_9];
        assert!(
            row.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5),
            "{row:?}"
        );
    }

    #[test]
    fn heads_round_trip() {
        let (b, s, nh, hd) = (2, 3, 2, 2);
        let h = nh * hd;
        let qkv: Vec<f32> = (0..b * s * 3 * h).map(|i| i as f32).collect();
        let bias = vec![0.0; 3 * h];
        let [q, _, _] = split_heads(&qkv, &bias, (b, s, nh, hd), 1.0);
        let back = merge_heads(&q, (b, s, nh, hd));
        for r in 0..b * s {
            assert_eq!(&back[r * h..(r + 1) * h], &qkv[r * 3 * h..r * 3 * h + h]);
        }
    }
}
