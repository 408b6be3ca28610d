//! The AVX-512 kernels of [`super`]: activation conversion and the tile loops, compiled for
//! x86-64 and called only after the CPU features they enable were detected at run time.

use std::arch::x86_64::*;

use super::{LANES, MR, NB};

/// The whole 16-value chunks of `row`, quantised as `super::quantize_row` does; returns how many
/// values it did.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn quantize(row: &[f32], dst: &mut [u32], inv: f32, zero: i32) -> usize {
    let (vinv, vzero) = (_mm512_set1_ps(inv), _mm512_set1_epi32(zero));
    let (lo, hi) = (_mm512_setzero_si512(), _mm512_set1_epi32(255));
    let chunks = row.len() / 16;
    for c in 0..chunks {
        // SAFETY: c * 16 + 16 <= row.len(); the 16 bytes stored are words 4c..4c+4 of `dst`,
        // which has ceil(row.len() / 4) >= 4c + 4 words. cvtps_epi32 rounds to nearest even
        // (Rust leaves MXCSR at its default), like `round_ties_even` in the portable loop.
        unsafe {
            let v = _mm512_loadu_ps(row.as_ptr().add(c * 16));
            let q = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v, vinv)), vzero);
            let q = _mm512_min_epi32(_mm512_max_epi32(q, lo), hi);
            let bytes = _mm512_cvtepi32_epi8(q);
            _mm_storeu_si128(dst.as_mut_ptr().add(c * 4) as *mut __m128i, bytes);
        }
    }
    chunks * 16
}

/// The whole 32-value chunks of `row` as bf16 pairs; returns how many values it did.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn bf16_row(row: &[f32], dst: &mut [u32]) -> usize {
    let chunks = row.len() / 32;
    for c in 0..chunks {
        // SAFETY: c * 32 + 32 <= row.len(); the 64 bytes stored are words 16c..16c+16 of
        // `dst`, which has ceil(row.len() / 2) >= 16c + 16 words. The result's element 2i is
        // row[32c + 2i] (the second operand fills the low half), so each word is (lo, hi).
        unsafe {
            let a = _mm512_loadu_ps(row.as_ptr().add(c * 32));
            let b = _mm512_loadu_ps(row.as_ptr().add(c * 32 + 16));
            let bh = _mm512_cvtne2ps_pbh(b, a);
            _mm512_storeu_si512(dst.as_mut_ptr().add(c * 16) as *mut _, as_bits(bh));
        }
    }
    chunks * 32
}

/// The 512 bits of a bf16 vector as an integer vector.
#[inline]
#[target_feature(enable = "avx512f,avx512bf16")]
fn as_bits(v: __m512bh) -> __m512i {
    // SAFETY: both are 64-byte plain-bits vector types; every bit pattern is valid in each.
    unsafe { std::mem::transmute::<__m512bh, __m512i>(v) }
}

/// The 512 bits of an integer vector as a bf16 vector.
#[inline]
#[target_feature(enable = "avx512f,avx512bf16")]
fn as_bf16(v: __m512i) -> __m512bh {
    // SAFETY: both are 64-byte plain-bits vector types; every bit pattern is valid in each.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
}

/// `acc += Σ u8(a) · s8(w)` per lane.
#[inline]
#[target_feature(enable = "avx512f,avx512vnni")]
fn dot_int8(acc: __m512i, a: __m512i, w: __m512i) -> __m512i {
    _mm512_dpbusd_epi32(acc, a, w)
}

/// `acc += Σ bf16(a) · bf16(w)` per lane (f32 bits in and out).
#[inline]
#[target_feature(enable = "avx512f,avx512bf16")]
fn dot_bf16(acc: __m512i, a: __m512i, w: __m512i) -> __m512i {
    let sum = _mm512_dpbf16_ps(_mm512_castsi512_ps(acc), as_bf16(a), as_bf16(w));
    _mm512_castps_si512(sum)
}

/// What a tile needs to turn its sums into outputs: the 64 columns' bias (and int8's column
/// sums and scales), each `NB * LANES` values from the tile's first column, and the rows'
/// int8 scales and zero points.
pub(super) struct Epilogue<'a> {
    pub bias: &'a [f32],
    pub col_sum: &'a [i32],
    pub col_scale: &'a [f32],
    pub row_scale: [f32; MR],
    pub row_zero: [i32; MR],
}

/// int8 outputs of one block's sums for tile row `r`: `(raw - z · Σq_w) · (s_x · s_w) + b`,
/// the operations of the portable `finish` in its order (so results are bit-identical).
#[inline]
#[target_feature(enable = "avx512f")]
fn out_int8(acc: __m512i, r: usize, start: usize, ep: &Epilogue<'_>) -> __m512 {
    // SAFETY: start + LANES <= NB * LANES, the length of the three column slices.
    unsafe {
        let cs = _mm512_loadu_si512(ep.col_sum.as_ptr().add(start) as *const _);
        let prod = _mm512_mullo_epi32(_mm512_set1_epi32(ep.row_zero[r]), cs);
        let sum = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc, prod));
        let sw = _mm512_loadu_ps(ep.col_scale.as_ptr().add(start));
        let scale = _mm512_mul_ps(_mm512_set1_ps(ep.row_scale[r]), sw);
        _mm512_fmadd_ps(sum, scale, _mm512_loadu_ps(ep.bias.as_ptr().add(start)))
    }
}

/// bf16 outputs of one block's sums: `raw + b`.
#[inline]
#[target_feature(enable = "avx512f")]
fn out_bf16(acc: __m512i, _r: usize, start: usize, ep: &Epilogue<'_>) -> __m512 {
    // SAFETY: start + LANES <= NB * LANES, the length of `bias`.
    let bias = unsafe { _mm512_loadu_ps(ep.bias.as_ptr().add(start)) };
    _mm512_add_ps(_mm512_castsi512_ps(acc), bias)
}

/// One AVX-512 tile kernel: `MR` activation rows (`words` words each, back to back in `a`)
/// against `NB` blocks (`words * LANES` words each, back to back in `w`), `$dot` per step, then
/// `$out` turns the sums into outputs, stored for the first `rows` rows and `cols` columns:
/// row r's at `out[r * stride..][..cols]`.
///
/// The caller guarantees `a.len() >= MR * words`, `w.len() >= NB * words * LANES`,
/// `rows <= MR`, `cols <= NB * LANES` and `out.len() >= (rows - 1) * stride + cols`.
macro_rules! tile_kernel {
    ($name:ident, $features:literal, $dot:ident, $out:ident) => {
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        pub(super) unsafe fn $name(
            a: &[u32],
            w: &[u32],
            words: usize,
            ep: &Epilogue<'_>,
            out: &mut [f32],
            stride: usize,
            rows: usize,
            cols: usize,
        ) {
            let mut acc = [[_mm512_setzero_si512(); NB]; MR];
            let (pa, pw) = (a.as_ptr(), w.as_ptr());
            for s in 0..words {
                let mut wv = [_mm512_setzero_si512(); NB];
                for (b, v) in wv.iter_mut().enumerate() {
                    // SAFETY: block b's word s is at (b * words + s) * LANES; its 16 lanes end
                    // at most at NB * words * LANES <= w.len().
                    *v = unsafe { _mm512_loadu_si512(pw.add((b * words + s) * LANES) as *const _) };
                }
                for (r, row) in acc.iter_mut().enumerate() {
                    // SAFETY: row r's word s is at r * words + s < MR * words <= a.len().
                    let av = _mm512_set1_epi32(unsafe { *pa.add(r * words + s) } as i32);
                    for (v, wb) in row.iter_mut().zip(&wv) {
                        *v = $dot(*v, av, *wb);
                    }
                }
            }
            let po = out.as_mut_ptr();
            for (r, row) in acc.iter().enumerate().take(rows) {
                for (b, v) in row.iter().enumerate() {
                    let start = b * LANES;
                    if start >= cols {
                        break;
                    }
                    let y = $out(*v, r, start, ep);
                    // SAFETY: the lanes of the mask are columns start.. of row r below `cols`,
                    // inside `out` by the caller's guarantee; the others are not touched.
                    unsafe {
                        _mm512_mask_storeu_ps(po.add(r * stride + start), lanes(cols - start), y)
                    };
                }
            }
        }
    };
}

tile_kernel!(tile_int8, "avx512f,avx512vnni", dot_int8, out_int8);
tile_kernel!(tile_bf16, "avx512f,avx512bf16", dot_bf16, out_bf16);

/// The smallest and largest of `row`'s values and 0 (`super::range`).
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn range(row: &[f32]) -> (f32, f32) {
    let (mut lo, mut hi) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let chunks = row.len() / 16;
    let p = row.as_ptr();
    for c in 0..chunks {
        // SAFETY: c * 16 + 16 <= row.len().
        let v = unsafe { _mm512_loadu_ps(p.add(c * 16)) };
        lo = _mm512_min_ps(lo, v);
        hi = _mm512_max_ps(hi, v);
    }
    let rest = row.len() - chunks * 16;
    if rest > 0 {
        // SAFETY: only the `rest` lanes left in `row` are read; the others are 0, which is
        // inside the range anyway.
        let v = unsafe { _mm512_maskz_loadu_ps(lanes(rest), p.add(chunks * 16)) };
        lo = _mm512_min_ps(lo, v);
        hi = _mm512_max_ps(hi, v);
    }
    (_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi))
}

/// The mask of the first `n` (1..=16) lanes.
fn lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        u16::MAX
    } else {
        (1u16 << n) - 1
    }
}
