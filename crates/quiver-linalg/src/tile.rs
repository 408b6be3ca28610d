//! Register-blocked inner products: sixteen (query, row) dot products per call, the inner loop of
//! exact scans ([`dot_1x16`]: one query against sixteen rows, [`dot_4x4`]: four queries against four
//! rows, for batches).
//!
//! On AVX-512 the sixteen accumulators stay in registers and are reduced together by one
//! transpose-and-add tree (45 shuffles and adds for all sixteen, against about eight per vector for
//! separate horizontal sums). 4x4 loads each 16-float chunk of each input once and uses it in four
//! FMAs (8 loads per 16 FMAs: batches are compute-bound). 1x16 walks four rows at a time, one
//! accumulator each, so rows stream one after another as hardware prefetchers expect (a single
//! query is bound by memory bandwidth, not FMAs). `_block` variants take consecutive rows as one
//! slice.
//!
//! **Position independence.** Each product is accumulated chunk by chunk in the same order and
//! reduced by the same tree in both shapes, so the score of a (query, row) pair does not depend on
//! which kernel computed it or where in the tile the row sat: a scan that pads its last tile, a
//! batch that mixes both shapes, and two segments holding the same row all give bit-identical
//! scores. (They can differ from [`crate::dot`] in the last bits: a different summation order.)

/// `out[b] = dot(q, rows[b])` for 16 rows. Every row must have `q`'s length; rows of another length
/// fall back to sixteen [`crate::dot`] calls.
#[inline]
pub fn dot_1x16(q: &[f32], rows: [&[f32]; 16]) -> [f32; 16] {
    dot_1x16_up_to(q, &rows)
}

/// [`dot_1x16`] of `q` with up to 16 rows: `out[b] = dot(q, rows[b])` for `b < rows.len()`, the
/// other lanes 0. Work is proportional to `rows.len()` rounded up to a multiple of four (a graph
/// walk scores a node's unvisited neighbours, often fewer than 16); the scores are the ones
/// [`dot_1x16`] gives the same rows.
#[inline]
pub fn dot_1x16_up_to(q: &[f32], rows: &[&[f32]]) -> [f32; 16] {
    let count = rows.len().min(16);
    if count == 0 {
        return [0.0; 16];
    }
    #[cfg(target_arch = "x86_64")]
    {
        if crate::detected_level() == crate::Level::Avx512
            && rows[..count].iter().all(|r| r.len() == q.len())
        {
            let p: [*const f32; 16] = std::array::from_fn(|b| rows[b.min(count - 1)].as_ptr());
            // SAFETY: AVX-512F was detected on this CPU (and not capped by QUIVER_SIMD); every
            // pointer is one of the first `count` rows, each of q's length (checked just above).
            return unsafe { avx512::rows16(q.as_ptr(), p, q.len(), count) };
        }
    }
    let mut out = [0.0; 16];
    for (o, r) in out.iter_mut().zip(&rows[..count]) {
        *o = crate::dot(q, r);
    }
    out
}

/// `out[4 * a + b] = dot(queries[a], rows[b])` for 4 queries and 4 rows. Every input must have the
/// same length; otherwise sixteen [`crate::dot`] calls.
#[inline]
pub fn dot_4x4(queries: [&[f32]; 4], rows: [&[f32]; 4]) -> [f32; 16] {
    #[cfg(target_arch = "x86_64")]
    {
        let n = queries[0].len();
        if crate::detected_level() == crate::Level::Avx512
            && queries.iter().chain(rows.iter()).all(|r| r.len() == n)
        {
            // SAFETY: AVX-512F was detected on this CPU (and not capped by QUIVER_SIMD); every query
            // and row has the same length, checked just above.
            return unsafe {
                avx512::tile::<4, 4>(queries.map(<[f32]>::as_ptr), rows.map(<[f32]>::as_ptr), n)
            };
        }
    }
    let mut out = [0.0; 16];
    for (a, q) in queries.iter().enumerate() {
        for (b, r) in rows.iter().enumerate() {
            out[4 * a + b] = crate::dot(q, r);
        }
    }
    out
}

/// [`dot_1x16`] of `q` with the 16 consecutive rows of `block` (`16 * q.len()` floats, row-major):
/// the same scores, without a slice per row.
#[inline]
pub fn dot_1x16_block(q: &[f32], block: &[f32]) -> [f32; 16] {
    let n = q.len();
    #[cfg(target_arch = "x86_64")]
    {
        if crate::detected_level() == crate::Level::Avx512 && block.len() == 16 * n {
            let p = block.as_ptr();
            // SAFETY: AVX-512F was detected on this CPU (and not capped by QUIVER_SIMD); row b
            // starts at b * n < block.len() and has n floats inside `block` (checked length).
            return unsafe {
                avx512::rows16(q.as_ptr(), std::array::from_fn(|b| p.add(b * n)), n, 16)
            };
        }
    }
    std::array::from_fn(|b| crate::dot(q, block.get(b * n..(b + 1) * n).unwrap_or(&[])))
}

/// [`dot_4x4`] of four queries with the 4 consecutive rows of `block` (`4 * len` floats,
/// row-major, `len` the queries' common length).
#[inline]
pub fn dot_4x4_block(queries: [&[f32]; 4], block: &[f32]) -> [f32; 16] {
    let n = queries[0].len();
    #[cfg(target_arch = "x86_64")]
    {
        if crate::detected_level() == crate::Level::Avx512
            && block.len() == 4 * n
            && queries.iter().all(|q| q.len() == n)
        {
            let p = block.as_ptr();
            // SAFETY: AVX-512F was detected on this CPU (and not capped by QUIVER_SIMD); every
            // query has n floats (checked), and row b starts at b * n with n floats inside `block`.
            return unsafe {
                avx512::tile::<4, 4>(
                    queries.map(<[f32]>::as_ptr),
                    std::array::from_fn(|b| p.add(b * n)),
                    n,
                )
            };
        }
    }
    let rows: [&[f32]; 4] = std::array::from_fn(|b| block.get(b * n..(b + 1) * n).unwrap_or(&[]));
    dot_4x4(queries, rows)
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// Lane `i` of the result is the sum of the 16 lanes of `v[i]`.
    ///
    /// Level 1 adds elements 2 apart within each 128-bit lane (pairs of vectors interleaved),
    /// level 2 the remaining pairs (four vectors per 128-bit lane), levels 3 and 4 the four 128-bit
    /// lanes. Every vector goes through the same tree.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn reduce16(v: [__m512; 16]) -> __m512 {
        let mut l1 = [_mm512_setzero_ps(); 8];
        for (i, out) in l1.iter_mut().enumerate() {
            let (a, b) = (v[2 * i], v[2 * i + 1]);
            *out = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
        }
        let mut l2 = [_mm512_setzero_ps(); 4];
        for (i, out) in l2.iter_mut().enumerate() {
            let a = _mm512_castps_pd(l1[2 * i]);
            let b = _mm512_castps_pd(l1[2 * i + 1]);
            // 64-bit unpacks move float pairs; the add is on the float view.
            let lo = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
            let hi = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
            *out = _mm512_add_ps(lo, hi);
        }
        // Lanes (0, 2) and (1, 3) of each pair of inputs: 0x88 = [a0 a2 b0 b2], 0xDD = [a1 a3 b1 b3].
        let p0 = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(l2[0], l2[1]),
            _mm512_shuffle_f32x4::<0xDD>(l2[0], l2[1]),
        );
        let p1 = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(l2[2], l2[3]),
            _mm512_shuffle_f32x4::<0xDD>(l2[2], l2[3]),
        );
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(p0, p1),
            _mm512_shuffle_f32x4::<0xDD>(p0, p1),
        )
    }

    /// The 1x16 shape row after row: each row's accumulator runs over its chunks in order (the
    /// same FMAs, in the same order, as [`tile`]), so memory is read one row at a time, the
    /// pattern hardware prefetchers follow best when rows stream from L3 or DRAM.
    ///
    /// # Safety
    /// The CPU must support AVX-512F; every pointer must be valid for reads of `n` floats.
    ///
    /// Only the first `count` rows (rounded up to a multiple of four, at most 16) are scored; the
    /// other lanes of the result are 0.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn rows16(q: *const f32, pr: [*const f32; 16], n: usize, count: usize) -> [f32; 16] {
        let mut acc = [_mm512_setzero_ps(); 16];
        let full = n / 16 * 16;
        let m = tail_mask(n - full);
        // SAFETY: full loads read 16 floats at i..i+16 <= n from pointers valid for n floats (the
        // caller's contract); the tail loads are masked to the n - full < 16 remaining lanes.
        unsafe {
            // Four rows at a time: four independent FMA chains in flight.
            for b in (0..count.min(16)).step_by(4) {
                let p = [pr[b], pr[b + 1], pr[b + 2], pr[b + 3]];
                let mut a = [_mm512_setzero_ps(); 4];
                let mut i = 0;
                while i < full {
                    let x = _mm512_loadu_ps(q.add(i));
                    for r in 0..4 {
                        a[r] = _mm512_fmadd_ps(x, _mm512_loadu_ps(p[r].add(i)), a[r]);
                    }
                    i += 16;
                }
                if full < n {
                    let x = _mm512_maskz_loadu_ps(m, q.add(full));
                    for r in 0..4 {
                        a[r] = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(m, p[r].add(full)), a[r]);
                    }
                }
                acc[b..b + 4].copy_from_slice(&a);
            }
        }
        let mut out = [0.0f32; 16];
        // SAFETY: `out` holds exactly 16 floats, one unaligned 512-bit store.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), reduce16(acc)) };
        out
    }

    #[inline]
    fn tail_mask(rem: usize) -> __mmask16 {
        ((1u32 << rem) - 1) as __mmask16
    }

    /// Dot products of `Q` queries with `R` rows (`Q * R == 16`): accumulator `a * R + b` holds
    /// query `a` against row `b`.
    ///
    /// # Safety
    /// The CPU must support AVX-512F; every pointer must be valid for reads of `n` floats.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile<const Q: usize, const R: usize>(
        pq: [*const f32; Q],
        pr: [*const f32; R],
        n: usize,
    ) -> [f32; 16] {
        debug_assert_eq!(Q * R, 16);
        let mut acc = [_mm512_setzero_ps(); 16];
        let mut i = 0;
        // SAFETY: full loads read 16 floats at i..i+16 <= n from pointers valid for n floats (the
        // caller's contract for every input); the tail loads are masked to the n - i < 16 remaining lanes,
        // and masked-off lanes are not accessed.
        unsafe {
            while i + 16 <= n {
                let qv = pq.map(|p| _mm512_loadu_ps(p.add(i)));
                for b in 0..R {
                    let y = _mm512_loadu_ps(pr[b].add(i));
                    for a in 0..Q {
                        acc[a * R + b] = _mm512_fmadd_ps(qv[a], y, acc[a * R + b]);
                    }
                }
                i += 16;
            }
            if i < n {
                let m = tail_mask(n - i);
                let qv = pq.map(|p| _mm512_maskz_loadu_ps(m, p.add(i)));
                for b in 0..R {
                    let y = _mm512_maskz_loadu_ps(m, pr[b].add(i));
                    for a in 0..Q {
                        acc[a * R + b] = _mm512_fmadd_ps(qv[a], y, acc[a * R + b]);
                    }
                }
            }
        }
        let mut out = [0.0f32; 16];
        // SAFETY: `out` holds exactly 16 floats, one unaligned 512-bit store.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), reduce16(acc)) };
        out
    }
}
