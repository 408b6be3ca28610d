//! Code kernels with runtime dispatch, each with a plain-Rust fallback that the tests compare
//! against: `u8 · i16` integer dot products (int8 codes), Hamming distance (binary codes) and the
//! bit-masked float sum (asymmetric binary scoring).

use std::sync::OnceLock;

/// What this CPU offers for the code kernels (detected once; `QUIVER_SIMD=scalar|avx2` caps it,
/// like the float kernels in `quiver-linalg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Scalar,
    Avx2,
    Avx512,
}

pub(crate) fn level() -> Level {
    static L: OnceLock<Level> = OnceLock::new();
    *L.get_or_init(|| {
        let best = detect();
        match std::env::var("QUIVER_SIMD").ok().as_deref() {
            Some("scalar") => Level::Scalar,
            Some("avx2") => best.min(Level::Avx2),
            _ => best,
        }
    })
}

fn detect() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("popcnt")
        {
            return Level::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("popcnt")
        {
            return Level::Avx2;
        }
    }
    Level::Scalar
}

/// `Σ c[i] · w[i]` in plain Rust (the reference for the SIMD versions).
pub(crate) fn dot_u8_i16_scalar(c: &[u8], w: &[i16]) -> i32 {
    c.iter()
        .zip(w)
        .map(|(&a, &b)| a as i32 * b as i32)
        .sum::<i32>()
}

/// `Σ c[i] · w[i]` at `level`. `w.len() >= c.len()`; the caller keeps `Σ 255·|w|` below 2³¹.
#[inline]
pub(crate) fn dot_u8_i16(level: Level, c: &[u8], w: &[i16]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    {
        if w.len() >= c.len() {
            match level {
                // SAFETY: Level::Avx512 is only returned when avx512f+avx512bw are detected.
                Level::Avx512 => return unsafe { x86::dot_u8_i16_avx512(c, w) },
                // SAFETY: Level::Avx2 is only returned when avx2 is detected.
                Level::Avx2 => return unsafe { x86::dot_u8_i16_avx2(c, w) },
                Level::Scalar => {}
            }
        }
    }
    let _ = level;
    dot_u8_i16_scalar(c, w)
}

/// Hamming distance of two equal-length bit strings, plain Rust.
pub(crate) fn hamming_scalar(a: &[u8], b: &[u8]) -> u32 {
    let mut d = 0;
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        d += (u64::from_le_bytes(word(x)) ^ u64::from_le_bytes(word(y))).count_ones();
    }
    // The tail (codes whose length is not a multiple of 8, e.g. 7 bytes for 50 dimensions) as
    // one zero-padded word: one popcount instead of one per byte.
    let (ra, rb) = (ca.remainder(), cb.remainder());
    if !ra.is_empty() {
        let (mut wa, mut wb) = ([0u8; 8], [0u8; 8]);
        wa[..ra.len()].copy_from_slice(ra);
        wb[..rb.len().min(ra.len())].copy_from_slice(&rb[..rb.len().min(ra.len())]);
        d += (u64::from_le_bytes(wa) ^ u64::from_le_bytes(wb)).count_ones();
    }
    d
}

#[inline(always)]
fn word(s: &[u8]) -> [u8; 8] {
    [s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]
}

/// Hamming distance at `level` (the hardware `popcnt` instruction above scalar).
#[inline]
pub(crate) fn hamming(level: Level, a: &[u8], b: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if level >= Level::Avx2 {
        // SAFETY: levels above Scalar are only returned when popcnt is detected.
        return unsafe { x86::hamming_popcnt(a, b) };
    }
    let _ = level;
    hamming_scalar(a, b)
}

/// `Σ_{bit i of bits set} w[i]` in plain Rust (bit i = byte i/8, bit i%8).
#[cfg(test)]
pub(crate) fn masked_sum_scalar(bits: &[u8], w: &[f32]) -> f32 {
    let mut s = 0.0;
    for (j, &b) in bits.iter().enumerate() {
        let mut b = b;
        while b != 0 {
            let t = b.trailing_zeros() as usize;
            s += w.get(j * 8 + t).copied().unwrap_or(0.0);
            b &= b - 1;
        }
    }
    s
}

/// `Σ_{bit i set} w[i]` with AVX-512 masked adds; `w` is zero-padded to a multiple of 16 and at
/// least `8 · bits.len()` long. `None` below AVX-512 (callers use their byte tables then).
#[inline]
pub(crate) fn masked_sum(level: Level, bits: &[u8], w: &[f32]) -> Option<f32> {
    #[cfg(target_arch = "x86_64")]
    if level == Level::Avx512 && w.len().is_multiple_of(16) && w.len() >= bits.len() * 8 {
        // SAFETY: Level::Avx512 implies avx512f; the length conditions are checked above.
        return Some(unsafe { x86::masked_sum_avx512(bits, w) });
    }
    let _ = (level, bits, w);
    None
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// Requires AVX2; `w.len() >= c.len()`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dot_u8_i16_avx2(c: &[u8], w: &[i16]) -> i32 {
        let n = c.len();
        let mut acc = _mm256_setzero_si256();
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 <= n <= w.len(): both 16-element loads are in bounds.
            let (cv, wv) = unsafe {
                (
                    _mm256_cvtepu8_epi16(_mm_loadu_si128(c.as_ptr().add(i) as *const __m128i)),
                    _mm256_loadu_si256(w.as_ptr().add(i) as *const __m256i),
                )
            };
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(cv, wv));
            i += 16;
        }
        let lo = _mm256_castsi256_si128(acc);
        let hi = _mm256_extracti128_si256(acc, 1);
        let s = _mm_add_epi32(lo, hi);
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        let mut total = _mm_cvtsi128_si32(s);
        for j in i..n {
            total += c[j] as i32 * w[j] as i32;
        }
        total
    }

    /// # Safety
    /// Requires AVX-512F and AVX-512BW; `w.len() >= c.len()`.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn dot_u8_i16_avx512(c: &[u8], w: &[i16]) -> i32 {
        let n = c.len();
        let mut acc = _mm512_setzero_si512();
        let mut i = 0;
        while i + 32 <= n {
            // SAFETY: i + 32 <= n <= w.len(): both 32-element loads are in bounds.
            let (cv, wv) = unsafe {
                (
                    _mm512_cvtepu8_epi16(_mm256_loadu_si256(c.as_ptr().add(i) as *const __m256i)),
                    _mm512_loadu_si512(w.as_ptr().add(i) as *const __m512i),
                )
            };
            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(cv, wv));
            i += 32;
        }
        if i < n {
            // Masked tail: lanes past n load as zero.
            let rem = n - i;
            let m8: __mmask32 = if rem >= 32 {
                u32::MAX
            } else {
                (1u32 << rem) - 1
            };
            // SAFETY: masked loads touch only the first `rem` elements, all in bounds.
            let (cv, wv) = unsafe {
                (
                    _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(
                        m8,
                        c.as_ptr().add(i) as *const i8,
                    )),
                    _mm512_maskz_loadu_epi16(m8, w.as_ptr().add(i)),
                )
            };
            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(cv, wv));
        }
        _mm512_reduce_add_epi32(acc)
    }

    /// # Safety
    /// Requires popcnt; `a` and `b` of equal length.
    #[target_feature(enable = "popcnt")]
    pub(super) unsafe fn hamming_popcnt(a: &[u8], b: &[u8]) -> u32 {
        super::hamming_scalar(a, b)
    }

    /// # Safety
    /// Requires AVX-512F; `w.len()` a multiple of 16 and `>= 8 * bits.len()`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn masked_sum_avx512(bits: &[u8], w: &[f32]) -> f32 {
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let pairs = bits.len() / 2;
        let mut j = 0;
        while j + 2 <= pairs {
            let m0 = u16::from_le_bytes([bits[2 * j], bits[2 * j + 1]]);
            let m1 = u16::from_le_bytes([bits[2 * j + 2], bits[2 * j + 3]]);
            // SAFETY: 16·(j+2) <= 8·bits.len() <= w.len().
            let (w0, w1) = unsafe {
                (
                    _mm512_loadu_ps(w.as_ptr().add(16 * j)),
                    _mm512_loadu_ps(w.as_ptr().add(16 * j + 16)),
                )
            };
            acc0 = _mm512_mask_add_ps(acc0, m0, acc0, w0);
            acc1 = _mm512_mask_add_ps(acc1, m1, acc1, w1);
            j += 2;
        }
        while j < bits.len().div_ceil(2) {
            let lo = bits[2 * j];
            let hi = bits.get(2 * j + 1).copied().unwrap_or(0);
            let m = u16::from_le_bytes([lo, hi]);
            // SAFETY: w.len() is a multiple of 16 and >= 8·bits.len(), so 16·j + 16 <= w.len().
            let wv = unsafe { _mm512_loadu_ps(w.as_ptr().add(16 * j)) };
            acc0 = _mm512_mask_add_ps(acc0, m, acc0, wv);
            j += 1;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seed >> 33
    }

    /// What this CPU offers, asked of the CPU here rather than of [`detect`], so a level the CPU
    /// has but `detect` refuses fails the test instead of being skipped.
    fn cpu_has(l: Level) -> bool {
        match l {
            Level::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("popcnt")
            }
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("popcnt")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every level this CPU has agrees with the scalar kernels on odd lengths and unaligned
    /// slices; each level is called explicitly (not through `QUIVER_SIMD`), and a level the CPU
    /// lacks is printed as SKIPPED.
    #[test]
    fn levels_match_scalar_on_odd_lengths() {
        let mut s = 12345u64;
        println!("seed 12345, best level {:?}", level());
        let levels = [Level::Scalar, Level::Avx2, Level::Avx512];
        for l in levels {
            assert_eq!(detect() >= l, cpu_has(l), "detect() on level {l:?}");
            if cpu_has(l) {
                println!("level {l:?}: tested against the scalar kernels");
            } else {
                println!("level {l:?}: SKIPPED (this CPU lacks it)");
            }
        }
        let tested: Vec<Level> = levels.into_iter().filter(|&l| cpu_has(l)).collect();
        let mut masked_compared = 0;
        for len in [0usize, 1, 7, 15, 16, 17, 31, 33, 63, 64, 65, 100, 384, 385] {
            let c: Vec<u8> = (0..len + 1).map(|_| lcg(&mut s) as u8).collect();
            let w: Vec<i16> = (0..len + 1)
                .map(|_| (lcg(&mut s) % 4000) as i16 - 2000)
                .collect();
            let (c, w) = (&c[1..], &w[1..]);
            let want = dot_u8_i16_scalar(c, w);
            for &l in &tested {
                assert_eq!(dot_u8_i16(l, c, w), want, "dot len {len} level {l:?}");
            }
            let a: Vec<u8> = (0..len).map(|_| lcg(&mut s) as u8).collect();
            let want = a
                .iter()
                .zip(c)
                .map(|(x, y)| (x ^ y).count_ones())
                .sum::<u32>();
            for &l in &tested {
                assert_eq!(hamming(l, &a, c), want, "hamming len {len} level {l:?}");
            }
            let padded = (8 * len).div_ceil(16) * 16;
            let wf: Vec<f32> = (0..padded)
                .map(|i| {
                    if i < 8 * len {
                        (lcg(&mut s) % 1000) as f32 / 100.0
                    } else {
                        0.0
                    }
                })
                .collect();
            let want = masked_sum_scalar(&a, &wf);
            for &l in &tested {
                match masked_sum(l, &a, &wf) {
                    Some(got) => {
                        assert_eq!(l, Level::Avx512, "masked sum exists only at AVX-512");
                        assert!(
                            (got - want).abs() <= 1e-3 * want.abs().max(1.0),
                            "masked len {len}: {got} vs {want}"
                        );
                        masked_compared += 1;
                    }
                    // Below AVX-512 the callers use their byte tables.
                    None => assert_ne!(l, Level::Avx512, "masked sum refused at AVX-512"),
                }
            }
        }
        if cpu_has(Level::Avx512) {
            assert_eq!(masked_compared, 14, "every length compared at AVX-512");
        }
    }
}
