//! Reduced-precision matrix multiplies for the linear layers: int8 and bf16.
//!
//! Both kinds share one layout and one driver. Weights are packed once, at load, into blocks of
//! 16 output columns; a block holds, for each step of the inner dimension, 16 lanes of one 32-bit
//! word: four int8 weights (`k..k+4`) or two bf16 weights (`k..k+2`) of that lane's column.
//! Activations are converted per call into rows of the same words. One AVX-512 instruction then
//! takes a broadcast activation word against a block's 16 words:
//!
//! ```text
//! int8  vpdpbusd   lane += Σ_{t<4} u8(x[k+t]) · s8(w[col][k+t])         (VNNI, exact in i32)
//! bf16  vdpbf16ps  lane += Σ_{t<2} bf16(x[k+t]) · bf16(w[col][k+t])     (AVX-512 BF16, f32)
//! ```
//!
//! A tile keeps 4 rows x 4 blocks (64 columns) of accumulators in registers while it walks the
//! inner dimension. int8 is dynamic quantisation, the way onnxruntime's quantised BERT works:
//! weights symmetric per output column (`w ≈ s_w[col] · q`, `q ∈ [-127, 127]`), activations
//! asymmetric per row, computed on each call (`x ≈ s_x[row] · (q - z[row])`, `q ∈ [0, 254]`), so
//! `x·w ≈ s_x s_w (Σ q_x q_w - z Σ q_w)`, the column sums precomputed. bf16 rounds both sides to
//! nearest-even bf16 and accumulates in f32.
//!
//! Without the CPU features (checked at run time) a portable loop computes the same integer sums
//! (int8: bit-identical results) or the same products in the same order (bf16).

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
mod x86;

/// Lanes of a block: 16 columns of 32-bit words.
const LANES: usize = 16;
/// Rows of a tile (activation rows are padded to a multiple of this).
const MR: usize = 4;
/// Blocks of a tile (columns are padded to a multiple of `NB * LANES`).
const NB: usize = 4;
/// Rows handed to one task when a multiply is split over threads.
const ROWS_PER_TASK: usize = 64;

/// Which reduced precision a packed matrix holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LowKind {
    /// int8 weights, u8 activations, i32 sums.
    Int8,
    /// bf16 weights and activations, f32 sums.
    Bf16,
}

impl LowKind {
    /// Inner-dimension values per 32-bit word.
    fn per_word(self) -> usize {
        match self {
            LowKind::Int8 => 4,
            LowKind::Bf16 => 2,
        }
    }

    /// Whether this CPU runs the AVX-512 kernel for this kind.
    fn simd_available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        return match self {
            LowKind::Int8 => {
                is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni")
            }
            LowKind::Bf16 => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512bf16")
            }
        };
        #[cfg(not(target_arch = "x86_64"))]
        false
    }
}

/// A weight matrix `[n, k]` packed for the kernels, with its bias (and int8's column scales and
/// sums), each padded to the packed column count.
pub(crate) struct Packed {
    kind: LowKind,
    /// Output columns.
    n: usize,
    /// Inner dimension.
    k: usize,
    /// Words per column (`ceil(k / per_word)`).
    words: usize,
    /// Packed columns (a multiple of `NB * LANES`).
    cols: usize,
    /// `cols / LANES` blocks of `words * LANES` words.
    data: Vec<u32>,
    bias: Vec<f32>,
    /// int8: `s_w` per column.
    col_scale: Vec<f32>,
    /// int8: `Σ_k q_w` per column.
    col_sum: Vec<i32>,
    /// Run the AVX-512 kernel (false: the portable loop).
    simd: bool,
}

/// One call's activations converted for the kernels (buffers reused across calls).
#[derive(Debug, Default)]
pub(crate) struct Activations {
    /// `padded rows * words` words.
    words: Vec<u32>,
    /// int8: `s_x` per row (unused at bf16).
    scale: Vec<f32>,
    /// int8: `z` per row (unused at bf16).
    zero: Vec<i32>,
}

impl Packed {
    /// Pack `weight` (`[n, k]` row-major, PyTorch's layout) and `bias` (`[n]`).
    pub(crate) fn new(kind: LowKind, weight: &[f32], bias: &[f32], k: usize) -> Packed {
        Packed::with_kernel(kind, weight, bias, k, kind.simd_available())
    }

    fn with_kernel(kind: LowKind, weight: &[f32], bias: &[f32], k: usize, simd: bool) -> Packed {
        let n = bias.len();
        let per = kind.per_word();
        let words = k.div_ceil(per);
        let cols = n.div_ceil(NB * LANES) * NB * LANES;
        let mut data = vec![0u32; cols * words];
        let mut col_scale = vec![0f32; cols];
        let mut col_sum = vec![0i32; cols];
        for (j, row) in weight.chunks_exact(k).enumerate().take(n) {
            let (block, lane) = (j / LANES, j % LANES);
            let at = |w: usize| block * words * LANES + w * LANES + lane;
            match kind {
                LowKind::Int8 => {
                    let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
                    let q: Vec<i8> = row
                        .iter()
                        .map(|v| (v / scale).round_ties_even().clamp(-127.0, 127.0) as i8)
                        .collect();
                    col_scale[j] = scale;
                    col_sum[j] = q.iter().map(|&v| i32::from(v)).sum();
                    for (w, quad) in q.chunks(4).enumerate() {
                        data[at(w)] = word4(quad.iter().map(|&v| v as u8));
                    }
                }
                LowKind::Bf16 => {
                    for (w, pair) in row.chunks(2).enumerate() {
                        data[at(w)] = bf16_word(pair);
                    }
                }
            }
        }
        let mut padded_bias = vec![0f32; cols];
        padded_bias[..n].copy_from_slice(bias);
        Packed {
            kind,
            n,
            k,
            words,
            cols,
            data,
            bias: padded_bias,
            col_scale,
            col_sum,
            simd,
        }
    }

    /// `out[rows, n] = x[rows, k] · Wᵀ + b`, converting `x` into `act` (reused across calls).
    /// The caller has checked the lengths: `x` holds `rows * k` values, `out` `rows * n`.
    pub(crate) fn apply(&self, x: &[f32], rows: usize, out: &mut [f32], act: &mut Activations) {
        let n = self.n;
        let parallel =
            rayon::current_num_threads() > 1 && rows > MR && rows * n * self.k >= 1 << 18;
        // One task (run on this thread) unless the multiply is worth splitting.
        let min_len = if parallel { 1 } else { usize::MAX };
        self.convert(x, rows, act, min_len);
        let act = &*act;
        out[..rows * n]
            .par_chunks_mut(ROWS_PER_TASK * n)
            .enumerate()
            .with_min_len(min_len)
            .for_each(|(t, chunk)| self.rows(act, t * ROWS_PER_TASK, chunk.len() / n, chunk));
    }

    /// Rows `first..first + count` of the product into `out` (`count * n` values).
    fn rows(&self, act: &Activations, first: usize, count: usize, out: &mut [f32]) {
        let (n, words) = (self.n, self.words);
        let mut raw = [[0u32; NB * LANES]; MR];
        for group in (0..self.cols).step_by(NB * LANES) {
            // `cols` is n rounded up to whole tiles, so every group has a real column.
            let cols = (n - group).min(NB * LANES);
            let w = &self.data[group * words..(group + NB * LANES) * words];
            for r0 in (0..count).step_by(MR) {
                let a = &act.words[(first + r0) * words..(first + r0 + MR) * words];
                let real = (count - r0).min(MR);
                let dst = &mut out[r0 * n..(r0 + real) * n];
                #[cfg(target_arch = "x86_64")]
                if self.simd {
                    self.tile_simd(act, first + r0, a, w, group, dst, real, cols);
                    continue;
                }
                tile_portable(self.kind, a, w, words, &mut raw);
                for (r, acc) in raw.iter().enumerate().take(real) {
                    let row = &mut dst[r * n + group..r * n + group + cols];
                    self.finish(act, first + r0 + r, group, acc, row);
                }
            }
        }
    }

    /// One tile on the AVX-512 kernel, its outputs stored into `dst` (the tile's `real` rows,
    /// `n` values each) at columns `group..group + cols`.
    #[cfg(target_arch = "x86_64")]
    #[allow(clippy::too_many_arguments)]
    fn tile_simd(
        &self,
        act: &Activations,
        row0: usize,
        a: &[u32],
        w: &[u32],
        group: usize,
        dst: &mut [f32],
        real: usize,
        cols: usize,
    ) {
        let tile = group..group + NB * LANES;
        let mut ep = x86::Epilogue {
            bias: &self.bias[tile.clone()],
            col_sum: &self.col_sum[tile.clone()],
            col_scale: &self.col_scale[tile],
            row_scale: [0.0; MR],
            row_zero: [0; MR],
        };
        if self.kind == LowKind::Int8 {
            for r in 0..real {
                ep.row_scale[r] = act.scale[row0 + r];
                ep.row_zero[r] = act.zero[row0 + r];
            }
        }
        let out = &mut dst[group..];
        // SAFETY: `simd` is only set when the features these kernels enable were detected at
        // run time (`LowKind::simd_available`). `a` holds MR rows of `words` words (activation
        // rows are padded to a multiple of MR), `w` NB blocks of `words * LANES` words, the
        // epilogue slices NB * LANES values; `real <= MR`, `cols <= NB * LANES`, and `out`
        // (rows of `n` values from column `group`) holds `(real - 1) * n + cols` values since
        // `group + cols <= n`.
        unsafe {
            match self.kind {
                LowKind::Int8 => x86::tile_int8(a, w, self.words, &ep, out, self.n, real, cols),
                LowKind::Bf16 => x86::tile_bf16(a, w, self.words, &ep, out, self.n, real, cols),
            }
        }
    }

    /// Turn one row's raw sums for the columns at `group` into outputs (bias added, int8
    /// dequantised) in `dst` (those columns of the row that exist).
    fn finish(&self, act: &Activations, row: usize, group: usize, acc: &[u32], dst: &mut [f32]) {
        let cols = group..group + NB * LANES;
        let (bias, col_sum, col_scale) = (
            &self.bias[cols.clone()],
            &self.col_sum[cols.clone()],
            &self.col_scale[cols],
        );
        match self.kind {
            LowKind::Int8 => {
                let (sx, z) = (act.scale[row], act.zero[row]);
                for (c, (d, &raw)) in dst.iter_mut().zip(acc).enumerate() {
                    let sum = (raw as i32).wrapping_sub(z.wrapping_mul(col_sum[c]));
                    *d = (sum as f32).mul_add(sx * col_scale[c], bias[c]);
                }
            }
            LowKind::Bf16 => {
                for (c, (d, &raw)) in dst.iter_mut().zip(acc).enumerate() {
                    *d = f32::from_bits(raw) + bias[c];
                }
            }
        }
    }

    /// Convert `rows` rows of `x` into kernel words (rows padded with zeros to a multiple of
    /// `MR`), with int8's per-row scales and zero points; in tasks of at least `min_len` rows.
    fn convert(&self, x: &[f32], rows: usize, act: &mut Activations, min_len: usize) {
        let (k, words, kind, simd) = (self.k, self.words, self.kind, self.simd);
        act.words.clear();
        act.words.resize(rows.div_ceil(MR) * MR * words, 0);
        act.scale.resize(rows, 1.0);
        act.zero.resize(rows, 0);
        x[..rows * k]
            .par_chunks_exact(k)
            .zip(act.words.par_chunks_mut(words))
            .zip(act.scale.par_iter_mut().zip(act.zero.par_iter_mut()))
            .with_min_len(min_len)
            .for_each(|((row, dst), (scale, zero))| match kind {
                LowKind::Int8 => (*scale, *zero) = quantize_row(row, dst, simd),
                LowKind::Bf16 => bf16_row(row, dst, simd),
            });
    }
}

/// Up to four bytes as one kernel word, the first in the low bits (inner-dimension order).
fn word4(bytes: impl IntoIterator<Item = u8>) -> u32 {
    let mut b = [0u8; 4];
    for (dst, v) in b.iter_mut().zip(bytes) {
        *dst = v;
    }
    u32::from_le_bytes(b)
}

/// One or two values as one bf16 word: the first in the low half, the second (0 if absent) in
/// the high half.
fn bf16_word(pair: &[f32]) -> u32 {
    let lo = pair.first().map_or(0, |&v| u32::from(bf16_bits(v)));
    let hi = pair.get(1).map_or(0, |&v| u32::from(bf16_bits(v)));
    lo | (hi << 16)
}

/// Round-to-nearest-even bf16 of `v` (the conversion `vcvtne2ps2bf16` does for normal numbers).
pub(crate) fn bf16_bits(v: f32) -> u16 {
    let b = v.to_bits();
    if v.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    let round = 0x7fff + ((b >> 16) & 1);
    (b.wrapping_add(round) >> 16) as u16
}

fn bf16_value(bits: u32) -> f32 {
    f32::from_bits(bits << 16)
}

/// The grid of a row whose values lie in `[lo, hi]` (`lo <= 0 <= hi`): `x ≈ scale · (q - zero)`
/// with `q ∈ [0, 254]`. The range always holds 0 (so zeros stay exact), and 254 steps instead
/// of 255 keep `round(x / scale) + zero` inside `[0, 255]` without clamping, so each value is
/// off by at most `scale / 2`. Returns `(scale, 1 / scale, zero)`.
fn grid(lo: f32, hi: f32) -> (f32, f32, i32) {
    // Divided before subtracting, so values near f32::MAX do not overflow the range; at least
    // the smallest normal float, so 1 / scale stays finite for rows of tiny values.
    let scale = if hi > lo {
        (hi / 254.0 - lo / 254.0).max(f32::MIN_POSITIVE)
    } else {
        1.0
    };
    let inv = 1.0 / scale;
    let zero = (-lo * inv).round_ties_even().clamp(0.0, 254.0) as i32;
    (scale, inv, zero)
}

/// The smallest and largest of `row`'s values and 0.
fn range(row: &[f32], simd: bool) -> (f32, f32) {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: `simd` is set only when avx512f was detected; the kernel reads `row` only.
        return unsafe { x86::range(row) };
    }
    let _ = simd;
    row.iter()
        .fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// Quantise one row into u8 words; returns its scale and zero point.
fn quantize_row(row: &[f32], dst: &mut [u32], simd: bool) -> (f32, i32) {
    let (lo, hi) = range(row, simd);
    let (scale, inv, zero) = grid(lo, hi);
    let q = |v: f32| ((v * inv).round_ties_even() as i32 + zero).clamp(0, 255) as u8;
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: `simd` is set only when avx512f was detected; the kernel writes
        // `row.len() / 16 * 4` whole words, inside `dst` (`ceil(row.len() / 4)` words).
        done = unsafe { x86::quantize(row, dst, inv, zero) };
    }
    for (w, quad) in row.chunks(4).enumerate().skip(done / 4) {
        dst[w] = word4(quad.iter().map(|&v| q(v)));
    }
    (scale, zero)
}

/// One row into bf16 pairs.
fn bf16_row(row: &[f32], dst: &mut [u32], simd: bool) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: `simd` is set only when avx512f, avx512bw and avx512bf16 were detected; the
        // kernel writes `row.len() / 32 * 16` whole words, inside `dst` (`ceil(row.len() / 2)`).
        done = unsafe { x86::bf16_row(row, dst) };
    }
    for (w, pair) in row.chunks(2).enumerate().skip(done / 2) {
        dst[w] = bf16_word(pair);
    }
}

/// The portable tile: the same sums as the AVX-512 kernels (int8 exactly; bf16 with the two
/// products of a word added to the lane in the order `vdpbf16ps` documents: odd, then even).
fn tile_portable(
    kind: LowKind,
    a: &[u32],
    w: &[u32],
    words: usize,
    raw: &mut [[u32; NB * LANES]; MR],
) {
    for (r, out) in raw.iter_mut().enumerate() {
        let arow = &a[r * words..(r + 1) * words];
        for (c, o) in out.iter_mut().enumerate() {
            let (b, lane) = (c / LANES, c % LANES);
            let col = (0..words).map(|s| w[(b * words + s) * LANES + lane]);
            *o = match kind {
                LowKind::Int8 => {
                    let mut sum = 0i32;
                    for (&x, wv) in arow.iter().zip(col) {
                        let (xb, wb) = (x.to_le_bytes(), wv.to_le_bytes());
                        for t in 0..4 {
                            sum += i32::from(xb[t]) * i32::from(wb[t] as i8);
                        }
                    }
                    sum as u32
                }
                LowKind::Bf16 => {
                    let mut sum = 0f32;
                    for (&x, wv) in arow.iter().zip(col) {
                        sum += bf16_value(x >> 16) * bf16_value(wv >> 16);
                        sum += bf16_value(x & 0xffff) * bf16_value(wv & 0xffff);
                    }
                    sum.to_bits()
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(seed: u64, n: usize, spread: f32) -> Vec<f32> {
        let mut rng = crate::testutil::Lcg::new(seed);
        (0..n).map(|_| rng.uniform() * spread).collect()
    }

    fn product(p: &Packed, x: &[f32], rows: usize, threads: usize) -> Vec<f32> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut out = vec![f32::NAN; rows * p.n];
        let mut act = Activations::default();
        pool.install(|| p.apply(x, rows, &mut out, &mut act));
        out
    }

    /// `(b + Σ x·w, Σ |x·w|)` in f64: the exact output and its magnitude.
    fn exact(x: &[f32], w: &[f32], b: f32) -> (f64, f64) {
        let terms = x.iter().zip(w).map(|(a, c)| f64::from(*a) * f64::from(*c));
        let sum: f64 = terms.clone().sum();
        (f64::from(b) + sum, terms.map(f64::abs).sum())
    }

    /// Shapes with ragged rows, columns and inner dimensions, and BERT's own.
    const SHAPES: [(usize, usize, usize); 5] = [
        (1, 3, 2),
        (7, 33, 17),
        (130, 384, 96),
        (5, 1536, 384),
        (67, 384, 1152),
    ];

    /// int8 against the exact product (f64), within the bound the quantisation grid gives:
    /// each activation is off by at most `s_x / 2` and each weight by `s_w / 2`, so an output
    /// is off by at most `s_x/2 · Σ|w| + s_w/2 · Σ|x̃|`, plus f32 rounding of the result.
    /// The AVX-512 kernel and the portable loop agree bit for bit.
    #[test]
    fn int8_within_quantisation_bound_and_kernels_agree() {
        let seed = 11u64;
        println!(
            "seed {seed}, avx512 vnni: {}",
            LowKind::Int8.simd_available()
        );
        for (i, &(rows, k, n)) in SHAPES.iter().enumerate() {
            let w = random(seed + i as u64, n * k, 0.2);
            let b = random(seed + 100 + i as u64, n, 1.0);
            // Skewed activations (mostly positive, like GELU outputs) exercise the zero point.
            let x: Vec<f32> = random(seed + 200 + i as u64, rows * k, 4.0)
                .into_iter()
                .map(|v| v.max(-0.3))
                .collect();
            let portable = Packed::with_kernel(LowKind::Int8, &w, &b, k, false);
            let got = product(&portable, &x, rows, 1);
            for r in 0..rows {
                let xr = &x[r * k..(r + 1) * k];
                let (lo, hi) = range(xr, false);
                let (sx, _, _) = grid(lo, hi);
                for j in 0..n {
                    let wr = &w[j * k..(j + 1) * k];
                    let sw = portable.col_scale[j];
                    let (exact, mag) = exact(xr, wr, b[j]);
                    let sum_w: f64 = wr.iter().map(|v| f64::from(v.abs())).sum();
                    let sum_x: f64 = xr.iter().map(|v| f64::from(v.abs()) + f64::from(sx)).sum();
                    let bound = f64::from(sx) / 2.0 * sum_w
                        + f64::from(sw) / 2.0 * sum_x
                        + 1e-5 * (mag + f64::from(b[j].abs()));
                    let err = (f64::from(got[r * n + j]) - exact).abs();
                    assert!(err <= bound, "{rows}x{k}x{n} ({r},{j}): {err} > {bound}");
                }
            }
            if LowKind::Int8.simd_available() {
                let simd = Packed::with_kernel(LowKind::Int8, &w, &b, k, true);
                for threads in [1, 2] {
                    let fast = product(&simd, &x, rows, threads);
                    assert!(
                        fast.iter()
                            .zip(&got)
                            .all(|(a, c)| a.to_bits() == c.to_bits()),
                        "{rows}x{k}x{n}, {threads} threads: AVX-512 differs from portable"
                    );
                }
            }
        }
    }

    /// bf16 against the exact product (f64): rounding x and w to bf16 costs at most 2⁻⁸ of
    /// `Σ|x·w|` (each side 2⁻⁹), the f32 sum at most `(k + 2)·2⁻²⁴` of it. The AVX-512 kernel
    /// stays within the same bound, and within f32 summation error of the portable loop.
    #[test]
    fn bf16_within_rounding_bound_and_kernels_agree() {
        let seed = 13u64;
        println!(
            "seed {seed}, avx512 bf16: {}",
            LowKind::Bf16.simd_available()
        );
        for (i, &(rows, k, n)) in SHAPES.iter().enumerate() {
            let w = random(seed + i as u64, n * k, 0.2);
            let b = random(seed + 100 + i as u64, n, 1.0);
            let x = random(seed + 200 + i as u64, rows * k, 4.0);
            let mut kernels = vec![Packed::with_kernel(LowKind::Bf16, &w, &b, k, false)];
            if LowKind::Bf16.simd_available() {
                kernels.push(Packed::with_kernel(LowKind::Bf16, &w, &b, k, true));
            }
            let outs: Vec<Vec<f32>> = kernels.iter().map(|p| product(p, &x, rows, 2)).collect();
            for r in 0..rows {
                let xr = &x[r * k..(r + 1) * k];
                for j in 0..n {
                    let wr = &w[j * k..(j + 1) * k];
                    let (exact, mag) = exact(xr, wr, b[j]);
                    let unit = (mag + f64::from(b[j].abs())) * ((k + 2) as f64) * 2f64.powi(-24);
                    let bound = mag * (2f64.powi(-8) + 2f64.powi(-17)) + unit;
                    for out in &outs {
                        let err = (f64::from(out[r * n + j]) - exact).abs();
                        assert!(err <= bound, "{rows}x{k}x{n} ({r},{j}): {err} > {bound}");
                    }
                    if let [portable, fast] = &outs[..] {
                        let d = f64::from(portable[r * n + j] - fast[r * n + j]).abs();
                        assert!(
                            d <= 2.0 * unit,
                            "{rows}x{k}x{n} ({r},{j}): kernels {d} apart"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn bf16_bits_round_to_nearest_even() {
        assert_eq!(bf16_bits(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
        assert_eq!(bf16_bits(1.0 + 2f32.powi(-8)), 0x3f80);
        assert_eq!(bf16_bits(1.0 + 3.0 * 2f32.powi(-8)), 0x3f82);
        assert_eq!(bf16_bits(-2.5), 0xc020);
        assert!(bf16_value(u32::from(bf16_bits(f32::NAN))).is_nan());
    }

    /// Rows of subnormal values and of values near f32::MAX get a finite grid, and both
    /// kernels still agree.
    #[test]
    fn extreme_rows_quantise_to_finite_outputs() {
        let (k, n) = (48, 16);
        let w = random(9, n * k, 0.2);
        let b = vec![0.0; n];
        let tiny: Vec<f32> = (0..k).map(|i| (i as f32 - 20.0) * 1e-40).collect();
        let huge: Vec<f32> = (0..k)
            .map(|i| if i % 2 == 0 { 3e38 } else { -3e38 })
            .collect();
        let x = [tiny, huge].concat();
        let portable = product(
            &Packed::with_kernel(LowKind::Int8, &w, &b, k, false),
            &x,
            2,
            1,
        );
        assert!(portable.iter().all(|v| v.is_finite()), "{portable:?}");
        if LowKind::Int8.simd_available() {
            let fast = product(
                &Packed::with_kernel(LowKind::Int8, &w, &b, k, true),
                &x,
                2,
                1,
            );
            assert!(fast
                .iter()
                .zip(&portable)
                .all(|(a, c)| a.to_bits() == c.to_bits()));
        }
    }

    #[test]
    fn zero_rows_and_zero_weights_stay_exact() {
        let (k, n) = (40, 20);
        let w = vec![0.0; n * k];
        let b = random(3, n, 1.0);
        for kind in [LowKind::Int8, LowKind::Bf16] {
            let p = Packed::new(kind, &w, &b, k);
            let out = product(&p, &vec![0.0; 3 * k], 3, 1);
            for r in 0..3 {
                assert_eq!(&out[r * n..(r + 1) * n], &b[..], "{kind:?}");
            }
        }
    }
}
