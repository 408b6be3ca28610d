//! Matryoshka prefixes of one stored vector, with and without a PCA rotation, against f32 brute
//! force. Seeds are printed.

use quiver_eval::{brute_force_topk_flat, mean_recall};
use quiver_index::{flat, rerank, AllRows, Vectors};
use quiver_linalg::{dot, normalize, Metric, Pca};
use quiver_quant::prefix::{prefix_all, prefix_into};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

const DIM: usize = 64;

/// Unit vectors whose variance decays along a random orthonormal basis (like a model's embedding
/// space: a few strong directions, a long tail), so raw prefixes are poor and PCA prefixes good.
fn spectral_data(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let g = Normal::new(0.0f32, 1.0).unwrap();
    let mut basis: Vec<Vec<f32>> = Vec::new();
    while basis.len() < DIM {
        let mut v: Vec<f32> = (0..DIM).map(|_| g.sample(&mut rng)).collect();
        for u in &basis {
            let p = dot(&v, u);
            v.iter_mut().zip(u).for_each(|(x, y)| *x -= p * y);
        }
        if normalize(&mut v) {
            basis.push(v);
        }
    }
    let mut out = vec![0.0f32; n * DIM];
    for row in out.chunks_mut(DIM) {
        for (i, b) in basis.iter().enumerate() {
            let c = g.sample(&mut rng) * (0.85f32).powi(i as i32);
            row.iter_mut().zip(b).for_each(|(x, y)| *x += c * y);
        }
        normalize(row);
    }
    out
}

fn ids(v: &[quiver_index::Neighbor]) -> Vec<u32> {
    v.iter().map(|n| n.id).collect()
}

/// Recall@10 of: exact search on the `p`-prefix (renormalised), shortlist `short`, full rerank.
fn funnel_recall(base: &[f32], queries: &[f32], p: usize, short: usize) -> f64 {
    let metric = Metric::Cosine;
    let truth = brute_force_topk_flat(base, DIM, queries, metric, 10);
    let pre = prefix_all(base, DIM, p, metric).unwrap();
    let (pv, fv) = (Vectors::new(&pre, p), Vectors::new(base, DIM));
    let mut qp = vec![0.0; p];
    let found: Vec<Vec<u32>> = queries
        .chunks(DIM)
        .map(|q| {
            prefix_into(q, metric, &mut qp);
            let s = flat::search(pv, metric, &qp, short, &AllRows);
            ids(&rerank(fv, metric, q, &s, 10))
        })
        .collect();
    mean_recall(&found, &truth, 10)
}

#[test]
fn prefixes_are_renormalised_and_validated() {
    let v = [3.0f32, 4.0, 12.0];
    let mut out = [0.0f32; 2];
    prefix_into(&v, Metric::Cosine, &mut out);
    assert!((out[0] - 0.6).abs() < 1e-6 && (out[1] - 0.8).abs() < 1e-6);
    prefix_into(&v, Metric::Dot, &mut out);
    assert_eq!(out, [3.0, 4.0]);
    let all = prefix_all(&[3.0, 4.0, 12.0, 0.0, 0.0, 1.0], 3, 2, Metric::Cosine).unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(&all[2..], &[0.0, 0.0], "a zero prefix stays zero");
    assert!(prefix_all(&v, 3, 4, Metric::Cosine).is_err());
    assert!(prefix_all(&v, 3, 0, Metric::Cosine).is_err());
    assert!(prefix_all(&v[..2], 3, 2, Metric::Cosine).is_err());
}

#[test]
fn pca_rotation_makes_prefix_funnels_match_full_search() {
    let seed = 900;
    println!("seed {seed}");
    let base = spectral_data(seed, 4000);
    let queries = spectral_data(seed + 1, 100);
    let pca = Pca::fit(&base, DIM, 0, seed).unwrap();
    let rb = pca.apply_all(&base);
    let rq = pca.apply_all(&queries);
    // Full dimension: the rotation changes no score, so exact results are identical.
    let t0 = brute_force_topk_flat(&base, DIM, &queries, Metric::Cosine, 10);
    let t1 = brute_force_topk_flat(&rb, DIM, &rq, Metric::Cosine, 10);
    let same = mean_recall(&t1, &t0, 10);
    println!("full-dimension exact top-10 overlap after rotation: {same:.4}");
    assert!(same >= 0.999);
    for v in rb.chunks(DIM).take(50) {
        assert!((dot(v, v) - 1.0).abs() < 1e-4, "rotation keeps unit length");
    }
    // 16-dimension prefix shortlist of 100, then full rerank.
    let raw = funnel_recall(&base, &queries, 16, 100);
    let rotated = funnel_recall(&rb, &rq, 16, 100);
    println!("prefix 16 -> 100 -> full rerank: raw prefix {raw:.3}, PCA prefix {rotated:.3}");
    assert!(rotated >= 0.95, "PCA funnel recall {rotated}");
    assert!(
        rotated > raw + 0.05,
        "PCA should beat raw prefixes on a rotated spectrum"
    );
    // A longer prefix with a shorter list still holds.
    let r32 = funnel_recall(&rb, &rq, 32, 50);
    println!("prefix 32 -> 50 -> full: {r32:.3}");
    assert!(r32 >= 0.95);
}
