//! The kernels themselves: one scalar version written for auto-vectorisation, and AVX2+FMA and
//! AVX-512 versions selected at run time. All versions agree with the scalar one up to float
//! reassociation (tested on odd lengths in `tests/equivalence.rs`).

/// A SIMD level. Ordered: a higher level implies the lower ones are available too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Plain Rust, eight independent accumulators so the compiler can vectorise.
    Scalar,
    /// x86-64 AVX2 + FMA, 8 lanes.
    Avx2,
    /// x86-64 AVX-512F, 16 lanes with a masked tail.
    Avx512,
}

impl Level {
    /// The best level this CPU supports.
    pub fn detect() -> Level {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Level::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Level::Avx2;
            }
        }
        Level::Scalar
    }

    /// [`Level::detect`], cached after the first call.
    pub fn best() -> Level {
        static BEST: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
        *BEST.get_or_init(Level::detect)
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }
}

/// Inner product at a forced level; `None` if this CPU lacks it.
pub fn dot_at(level: Level, a: &[f32], b: &[f32]) -> Option<f32> {
    if level > Level::best() {
        return None;
    }
    Some(match level {
        Level::Scalar => score_dot_scalar(a, b),
        Level::Avx2 => score_dot_avx2(a, b),
        Level::Avx512 => score_dot_avx512(a, b),
    })
}

/// Squared L2 distance at a forced level; `None` if this CPU lacks it.
pub fn l2sq_at(level: Level, a: &[f32], b: &[f32]) -> Option<f32> {
    if level > Level::best() {
        return None;
    }
    Some(match level {
        Level::Scalar => l2sq_scalar_entry(a, b),
        Level::Avx2 => l2sq_avx2_entry(a, b),
        Level::Avx512 => l2sq_avx512_entry(a, b),
    })
}

// ---------------------------------------------------------------- scalar

pub(crate) fn score_dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let chunks = n / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] += a[c * 8 + l] * b[c * 8 + l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..n {
        s += a[i] * b[i];
    }
    s
}

pub(crate) fn l2sq_scalar_entry(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let chunks = n / 8;
    for c in 0..chunks {
        for l in 0..8 {
            let d = a[c * 8 + l] - b[c * 8 + l];
            acc[l] += d * d;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..n {
        let d = a[i] - b[i];
        s += d * d;
    }
    s
}

pub(crate) fn score_l2_scalar(a: &[f32], b: &[f32]) -> f32 {
    -l2sq_scalar_entry(a, b)
}

// ---------------------------------------------------------------- AVX2

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum256(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
        _mm_cvtss_f32(s)
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA; `a` and `b` must have the same length.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY: every load reads 8 floats at offsets i..i+16 <= n from slices of length n.
        unsafe {
            while i + 16 <= n {
                acc0 =
                    _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
                acc1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i + 8)),
                    _mm256_loadu_ps(pb.add(i + 8)),
                    acc1,
                );
                i += 16;
            }
            if i + 8 <= n {
                acc0 =
                    _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
                i += 8;
            }
        }
        let mut s = hsum256(_mm256_add_ps(acc0, acc1));
        while i < n {
            s += a[i] * b[i];
            i += 1;
        }
        s
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA; `a` and `b` must have the same length.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn l2sq(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY: every load reads 8 floats at offsets i..i+16 <= n from slices of length n.
        unsafe {
            while i + 16 <= n {
                let d0 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                let d1 = _mm256_sub_ps(
                    _mm256_loadu_ps(pa.add(i + 8)),
                    _mm256_loadu_ps(pb.add(i + 8)),
                );
                acc0 = _mm256_fmadd_ps(d0, d0, acc0);
                acc1 = _mm256_fmadd_ps(d1, d1, acc1);
                i += 16;
            }
            if i + 8 <= n {
                let d0 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                acc0 = _mm256_fmadd_ps(d0, d0, acc0);
                i += 8;
            }
        }
        let mut s = hsum256(_mm256_add_ps(acc0, acc1));
        while i < n {
            let d = a[i] - b[i];
            s += d * d;
            i += 1;
        }
        s
    }
}

// ---------------------------------------------------------------- AVX-512

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    #[inline]
    fn tail_mask(rem: usize) -> __mmask16 {
        ((1u32 << rem) - 1) as __mmask16
    }

    /// # Safety
    /// The CPU must support AVX-512F; `a` and `b` must have the same length.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        // SAFETY: full loads read 16 floats below n; the tail load is masked to the rem < 16
        // remaining lanes, and masked-off lanes are not accessed.
        unsafe {
            while i + 32 <= n {
                acc0 =
                    _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
                acc1 = _mm512_fmadd_ps(
                    _mm512_loadu_ps(pa.add(i + 16)),
                    _mm512_loadu_ps(pb.add(i + 16)),
                    acc1,
                );
                i += 32;
            }
            if i + 16 <= n {
                acc0 =
                    _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
                i += 16;
            }
            if i < n {
                let m = tail_mask(n - i);
                let x = _mm512_maskz_loadu_ps(m, pa.add(i));
                let y = _mm512_maskz_loadu_ps(m, pb.add(i));
                acc1 = _mm512_fmadd_ps(x, y, acc1);
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    }

    /// Inner products of `q` with four rows at once: each 16-float chunk of `q` is loaded once
    /// and multiplied into four accumulators (one per row), so a step is 5 loads for 4 FMAs
    /// instead of 2 loads per FMA.
    ///
    /// # Safety
    /// The CPU must support AVX-512F; every row must have `q`'s length.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot4(q: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
        let n = q.len();
        let pq = q.as_ptr();
        let [p0, p1, p2, p3] = rows.map(|r| r.as_ptr());
        let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let (mut a2, mut a3) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let mut i = 0;
        // SAFETY: full loads read 16 floats below n from slices of length n (the caller's
        // contract for every row); the tail loads are masked to the rem < 16 remaining lanes.
        unsafe {
            while i + 16 <= n {
                let x = _mm512_loadu_ps(pq.add(i));
                a0 = _mm512_fmadd_ps(x, _mm512_loadu_ps(p0.add(i)), a0);
                a1 = _mm512_fmadd_ps(x, _mm512_loadu_ps(p1.add(i)), a1);
                a2 = _mm512_fmadd_ps(x, _mm512_loadu_ps(p2.add(i)), a2);
                a3 = _mm512_fmadd_ps(x, _mm512_loadu_ps(p3.add(i)), a3);
                i += 16;
            }
            if i < n {
                let m = tail_mask(n - i);
                let x = _mm512_maskz_loadu_ps(m, pq.add(i));
                a0 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(m, p0.add(i)), a0);
                a1 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(m, p1.add(i)), a1);
                a2 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(m, p2.add(i)), a2);
                a3 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(m, p3.add(i)), a3);
            }
        }
        [
            _mm512_reduce_add_ps(a0),
            _mm512_reduce_add_ps(a1),
            _mm512_reduce_add_ps(a2),
            _mm512_reduce_add_ps(a3),
        ]
    }

    /// # Safety
    /// The CPU must support AVX-512F; `a` and `b` must have the same length.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn l2sq(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        // SAFETY: as in `dot`: full loads stay below n, the tail load is masked.
        unsafe {
            while i + 32 <= n {
                let d0 = _mm512_sub_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
                let d1 = _mm512_sub_ps(
                    _mm512_loadu_ps(pa.add(i + 16)),
                    _mm512_loadu_ps(pb.add(i + 16)),
                );
                acc0 = _mm512_fmadd_ps(d0, d0, acc0);
                acc1 = _mm512_fmadd_ps(d1, d1, acc1);
                i += 32;
            }
            if i + 16 <= n {
                let d0 = _mm512_sub_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
                acc0 = _mm512_fmadd_ps(d0, d0, acc0);
                i += 16;
            }
            if i < n {
                let m = tail_mask(n - i);
                let d = _mm512_sub_ps(
                    _mm512_maskz_loadu_ps(m, pa.add(i)),
                    _mm512_maskz_loadu_ps(m, pb.add(i)),
                );
                acc1 = _mm512_fmadd_ps(d, d, acc1);
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    }
}

// ---------------------------------------------------------------- safe entry points
//
// These are only ever handed out (through `Metric::scorer` and the kernel table) after
// `Level::detect()` confirmed the CPU feature; on other architectures they fall back to scalar.

macro_rules! entry {
    ($name:ident, $module:ident, $func:ident, $scalar:ident, $neg:expr) => {
        pub(crate) fn $name(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len().min(b.len());
            #[cfg(target_arch = "x86_64")]
            {
                // SAFETY: this entry is selected only when `Level::detect()` reported the feature
                // (see `kernels_for_cpu`, `Metric::scorer`, `dot_at`, `l2sq_at`); both slices are
                // cut to the same length n.
                let v = unsafe { $module::$func(&a[..n], &b[..n]) };
                if $neg {
                    -v
                } else {
                    v
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                let v = $scalar(&a[..n], &b[..n]);
                if $neg {
                    -v
                } else {
                    v
                }
            }
        }
    };
}

entry!(score_dot_avx2, avx2, dot, score_dot_scalar, false);
entry!(score_dot_avx512, avx512, dot, score_dot_scalar, false);
entry!(l2sq_avx2_entry, avx2, l2sq, l2sq_scalar_entry, false);
entry!(l2sq_avx512_entry, avx512, l2sq, l2sq_scalar_entry, false);
entry!(score_l2_avx2, avx2, l2sq, l2sq_scalar_entry, true);
entry!(score_l2_avx512, avx512, l2sq, l2sq_scalar_entry, true);

/// Inner products of `q` with four rows (the best kernel for this CPU: AVX-512 shares each load
/// of `q` between the four rows; other levels run four [`crate::dot`] calls). Rows shorter or
/// longer than `q` fall back to four separate products (each over the shorter length).
pub(crate) fn dot4(q: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::detected_level() == Level::Avx512 && rows.iter().all(|r| r.len() == q.len()) {
            // SAFETY: the AVX-512 level was detected on this CPU (and not capped by
            // QUIVER_SIMD); every row has q's length, checked just above.
            return unsafe { avx512::dot4(q, rows) };
        }
    }
    rows.map(|r| crate::dot(q, r))
}
