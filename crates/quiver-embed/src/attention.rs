//! Scaled dot-product attention over packed sequences.
//!
//! A batch is packed: the real tokens of every sequence are concatenated, `T = Σ lengths` rows,
//! with no padding anywhere, so no work is spent on padded positions and sequences of any mix of
//! lengths share one batch. Attention runs per (head, sequence) pair, in parallel over the
//! pairs, reading Q, K and V in place from the fused `[T, 3h]` projection (strided views, no
//! split copy); each pair writes its context into a head-major buffer, merged back to `[T, h]`
//! in one pass.

use std::cell::RefCell;

use rayon::prelude::*;

use crate::kernels::softmax_rows;
use crate::linear::gemm_strided;

thread_local! {
    /// Per-thread score matrix, reused across pairs and batches (`len x len` floats).
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Shape of one attention call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads {
    /// Number of heads.
    pub heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Multiplier of the scores before softmax (1/√head_dim).
    pub scale: f32,
}

/// Multi-head attention of packed sequences.
///
/// `qkv` is `[T, 3h]` (bias included): query, key and value of token `t` at columns `0..h`,
/// `h..2h`, `2h..3h`, head `j` at `j * head_dim` within each. `lengths` are the sequences' token
/// counts in row order (`Σ lengths = T`). Writes the context `[T, h]` to `ctx`, using
/// `by_head` (`T * h` floats) as scratch.
pub(crate) fn attention(
    qkv: &[f32],
    lengths: &[usize],
    shape: Heads,
    by_head: &mut [f32],
    ctx: &mut [f32],
) {
    let (nh, hd) = (shape.heads, shape.head_dim);
    let h = nh * hd;
    let total: usize = lengths.iter().sum();
    let (by_head, ctx) = (&mut by_head[..total * h], &mut ctx[..total * h]);
    // (head, first row, length, output block): head-major, sequences in order inside a head,
    // so block (j, i) sits at j*T*hd + offset_i*hd, i.e. row t of head j at (j*T + t)*hd.
    let mut pairs = Vec::with_capacity(nh * lengths.len());
    let mut rest: &mut [f32] = by_head;
    for head in 0..nh {
        let mut start = 0;
        for &len in lengths {
            let (block, tail) = rest.split_at_mut(len * hd);
            pairs.push((head, start, len, block));
            rest = tail;
            start += len;
        }
    }
    pairs.into_par_iter().for_each(|(head, start, len, out)| {
        if len == 0 {
            return;
        }
        let row = start * 3 * h + head * hd;
        let (q, k, v) = (&qkv[row..], &qkv[row + h..], &qkv[row + 2 * h..]);
        SCORES.with(|cell| {
            let mut scores = cell.borrow_mut();
            scores.clear();
            scores.resize(len * len, 0.0);
            // scores[len x len] = Q · Kᵀ; Q(i, p) = q[i*3h + p], Kᵀ(p, j) = k[j*3h + p].
            let one = gemm::Parallelism::None;
            gemm_strided(
                &mut scores,
                len,
                (q, 3 * h, 1),
                (k, 1, 3 * h),
                (len, len, hd),
                false,
                one,
            );
            softmax_rows(&mut scores, len, shape.scale);
            // out[len x hd] = P · V; V(j, d) = v[j*3h + d].
            gemm_strided(
                out,
                hd,
                (&scores, len, 1),
                (v, 3 * h, 1),
                (len, hd, len),
                false,
                one,
            );
        });
    });
    let by_head = &*by_head;
    ctx.par_chunks_mut(h * 64)
        .enumerate()
        .for_each(|(chunk, rows)| {
            for (r, dst) in rows.chunks_exact_mut(h).enumerate() {
                let t = chunk * 64 + r;
                for head in 0..nh {
                    let src = &by_head[(head * total + t) * hd..][..hd];
                    dst[head * hd..(head + 1) * hd].copy_from_slice(src);
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packed attention against a naive per-sequence, per-head loop in f64, on sequences of
    /// mixed lengths (one of length 1), on 1 and 3 threads.
    #[test]
    fn packed_attention_matches_naive() {
        let seed = 7u64;
        println!("seed {seed}");
        let mut rng = crate::testutil::Lcg::new(seed);
        let mut rnd = || rng.uniform();
        let (nh, hd) = (3, 4);
        let h = nh * hd;
        let lengths = [5, 1, 3, 9];
        let total: usize = lengths.iter().sum();
        let qkv: Vec<f32> = (0..total * 3 * h).map(|_| rnd() * 3.0).collect();
        let scale = 0.5f32;
        let shape = Heads {
            heads: nh,
            head_dim: hd,
            scale,
        };
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut ctx = vec![f32::NAN; total * h];
            let mut scratch = vec![f32::NAN; total * h];
            pool.install(|| attention(&qkv, &lengths, shape, &mut scratch, &mut ctx));
            let mut start = 0;
            for &len in &lengths {
                for head in 0..nh {
                    let at = |t: usize, part: usize, p: usize| {
                        f64::from(qkv[(start + t) * 3 * h + part * h + head * hd + p])
                    };
                    for i in 0..len {
                        let sc: Vec<f64> = (0..len)
                            .map(|j| {
                                (0..hd).map(|p| at(i, 0, p) * at(j, 1, p)).sum::<f64>()
                                    * f64::from(scale)
                            })
                            .collect();
                        let m = sc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        let e: Vec<f64> = sc.iter().map(|x| (x - m).exp()).collect();
                        let z: f64 = e.iter().sum();
                        for d in 0..hd {
                            let want: f64 = (0..len).map(|j| e[j] / z * at(j, 2, d)).sum();
                            let got = f64::from(ctx[(start + i) * h + head * hd + d]);
                            assert!(
                                (got - want).abs() < 1e-5,
                                "threads {threads} seq@{start} head {head} i {i} d {d}"
                            );
                        }
                    }
                }
                start += len;
            }
        }
    }
}
