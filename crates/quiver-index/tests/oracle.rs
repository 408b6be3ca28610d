//! HNSW and flat search against the brute-force oracle. Seeds are printed.

use quiver_eval::{brute_force_topk, gen, mean_recall};
use quiver_index::{flat, AllRows, Bitset, Hnsw, HnswParams, Vectors};
use quiver_linalg::Metric;
use rand::Rng;

fn flatten(v: &[Vec<f32>]) -> Vec<f32> {
    v.iter().flatten().copied().collect()
}

fn ids(v: &[quiver_index::Neighbor]) -> Vec<u32> {
    v.iter().map(|n| n.id).collect()
}

#[test]
fn hnsw_recall_20k_default_ef() {
    let seed = 20_000_u64;
    println!("seed = {seed}");
    let base = gen::clustered(seed, 20_000, 48, 512, 0.6, true);
    let queries = gen::clustered(seed + 1, 200, 48, 512, 0.6, true);
    let data = flatten(&base);
    let vectors = Vectors::new(&data, 48);
    let params = HnswParams::default();
    let g = Hnsw::build(vectors, Metric::Cosine, params, seed);
    assert_eq!(g.len(), 20_000);
    let truth = brute_force_topk(&base, &queries, Metric::Cosine, 10, |_| true);
    let found: Vec<Vec<u32>> = queries
        .iter()
        .map(|q| ids(&g.search(vectors, q, 10, params.ef_search, &AllRows)))
        .collect();
    let r = mean_recall(&found, &truth, 10);
    println!("recall@10 at default ef={} : {r:.4}", params.ef_search);
    assert!(r >= 0.95, "recall@10 {r}");
}

#[test]
fn hnsw_l2_and_dot_metrics_and_persistence() {
    let seed = 77_u64;
    println!("seed = {seed}");
    for metric in [Metric::L2, Metric::Dot] {
        let base = gen::clustered(seed, 3_000, 17, 20, 0.5, false);
        let queries = gen::clustered(seed + 9, 50, 17, 20, 0.5, false);
        let data = flatten(&base);
        let vectors = Vectors::new(&data, 17);
        let g = Hnsw::build(
            vectors,
            metric,
            HnswParams {
                m: 12,
                ef_construction: 100,
                ef_search: 64,
            },
            seed,
        );
        let truth = brute_force_topk(&base, &queries, metric, 10, |_| true);
        let found: Vec<Vec<u32>> = queries
            .iter()
            .map(|q| ids(&g.search(vectors, q, 10, 128, &AllRows)))
            .collect();
        let r = mean_recall(&found, &truth, 10);
        println!("{metric:?} recall@10 = {r:.4}");
        assert!(r >= 0.9, "{metric:?} recall {r}");
        // Round trip: identical results after serialization.
        let bytes = g.to_bytes();
        let g2 = Hnsw::from_bytes(&bytes).expect("round trip");
        for q in &queries {
            assert_eq!(
                g.search(vectors, q, 10, 64, &AllRows),
                g2.search(vectors, q, 10, 64, &AllRows)
            );
        }
        // Truncation and bit flips are reported, never served.
        assert!(Hnsw::from_bytes(&bytes[..bytes.len() - 3]).is_err());
        let mut bad = bytes.clone();
        bad[0] ^= 0xff;
        assert!(Hnsw::from_bytes(&bad).is_err());
    }
}

#[test]
fn incremental_inserts_between_searches() {
    let seed = 4242_u64;
    println!("seed = {seed}");
    let base = gen::clustered(seed, 6_000, 24, 30, 0.5, true);
    let data = flatten(&base);
    let mut g = Hnsw::with_capacity(Metric::Cosine, HnswParams::default(), seed, 1_000);
    let queries = gen::clustered(seed + 3, 50, 24, 30, 0.5, true);
    for batch in 0..6usize {
        let upto = (batch + 1) * 1_000;
        g.reserve(upto);
        let vectors = Vectors::new(&data[..upto * 24], 24);
        for id in (batch * 1_000) as u32..upto as u32 {
            g.insert(vectors, id);
        }
        let truth = brute_force_topk(&base[..upto], &queries, Metric::Cosine, 10, |_| true);
        let found: Vec<Vec<u32>> = queries
            .iter()
            .map(|q| ids(&g.search(vectors, q, 10, 100, &AllRows)))
            .collect();
        let r = mean_recall(&found, &truth, 10);
        println!("after {upto} rows: recall@10 = {r:.4}");
        assert!(r >= 0.95, "recall {r} after {upto}");
    }
}

#[test]
fn filtered_search_never_returns_rejected_rows_and_flat_matches_oracle() {
    let seed = 99_u64;
    println!("seed = {seed}");
    let base = gen::clustered(seed, 5_000, 32, 40, 0.5, true);
    let data = flatten(&base);
    let vectors = Vectors::new(&data, 32);
    let g = Hnsw::build(vectors, Metric::Cosine, HnswParams::default(), seed);
    let mut rng = gen::rng(seed);
    let mut allowed = Bitset::new(5_000);
    for i in 0..5_000u32 {
        if rng.random_bool(0.3) {
            allowed.insert(i);
        }
    }
    let queries = gen::clustered(seed + 1, 50, 32, 40, 0.5, true);
    let truth = brute_force_topk(&base, &queries, Metric::Cosine, 10, |i| {
        allowed.contains(i as u32)
    });
    let mut found = Vec::new();
    for (q, t) in queries.iter().zip(&truth) {
        let hits = g.search(vectors, q, 10, 100, &allowed);
        assert!(hits.iter().all(|h| allowed.contains(h.id)));
        found.push(ids(&hits));
        let exact = flat::search(vectors, Metric::Cosine, q, 10, &allowed);
        assert_eq!(&ids(&exact), t, "flat scan equals oracle");
        let exact_rows = flat::search_rows(vectors, Metric::Cosine, q, 10, allowed.iter());
        assert_eq!(&ids(&exact_rows), t, "flat scan over rows equals oracle");
    }
    let r = mean_recall(&found, &truth, 10);
    println!("30% filter recall@10 = {r:.4}");
    assert!(r >= 0.95);
}

#[test]
fn bitset_ops() {
    let mut a = Bitset::new(130);
    a.insert(0);
    a.insert(64);
    a.insert(129);
    assert_eq!(a.iter().collect::<Vec<_>>(), vec![0, 64, 129]);
    let mut b = a.clone();
    b.negate();
    assert_eq!(b.count(), 127);
    b.and_with(&a);
    assert_eq!(b.count(), 0);
    assert_eq!(Bitset::full(130).count(), 130);
}

#[test]
fn bfs_reordering_preserves_results() {
    let seed = 31_u64;
    println!("seed = {seed}");
    let base = gen::clustered(seed, 3_000, 16, 30, 0.5, true);
    let data = flatten(&base);
    let vectors = Vectors::new(&data, 16);
    let g = Hnsw::build(vectors, Metric::Cosine, HnswParams::default(), seed);
    let order = g.bfs_order();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..3_000u32).collect::<Vec<_>>(),
        "bfs_order is a permutation"
    );
    let p = g.permuted(&order).expect("permutation");
    let pdata: Vec<f32> = order
        .iter()
        .flat_map(|&o| base[o as usize].clone())
        .collect();
    let pvectors = Vectors::new(&pdata, 16);
    let queries = gen::clustered(seed + 1, 30, 16, 30, 0.5, true);
    for q in &queries {
        let a: Vec<u32> = g
            .search(vectors, q, 10, 64, &AllRows)
            .iter()
            .map(|n| n.id)
            .collect();
        let b: Vec<u32> = p
            .search(pvectors, q, 10, 64, &AllRows)
            .iter()
            .map(|n| order[n.id as usize])
            .collect();
        assert_eq!(a, b);
    }
    assert!(g.permuted(&order[1..]).is_none());
}

/// The blocked scans (one query, a batch, an explicit row list) agree with each other exactly and
/// with an f64 brute force up to rounding, on sizes that leave partial tiles, partial blocks and a
/// partial group of queries.
#[test]
fn blocked_flat_scans_agree_with_each_other_and_with_f64_brute_force() {
    let seed = 0xb10c_u64;
    println!("seed = {seed}");
    let mut rng = gen::rng(seed);
    for (dim, n, nq) in [(384, 1_037, 23), (50, 600, 9), (7, 300, 4), (384, 5, 3)] {
        let base = gen::clustered(seed + dim as u64, n, dim, 20, 0.5, true);
        let queries = gen::clustered(seed + 7 + dim as u64, nq, dim, 20, 0.5, true);
        let (data, qdata) = (flatten(&base), flatten(&queries));
        let (vectors, qv) = (Vectors::new(&data, dim), Vectors::new(&qdata, dim));
        let mut allowed = Bitset::new(n);
        for i in 0..n as u32 {
            if rng.random_bool(0.1) {
                allowed.insert(i);
            }
        }
        for metric in [Metric::Cosine, Metric::Dot, Metric::L2] {
            for filtered in [false, true] {
                let batch = if filtered {
                    flat::search_batch(vectors, metric, qv, 10, &allowed)
                } else {
                    flat::search_batch(vectors, metric, qv, 10, &AllRows)
                };
                assert_eq!(batch.len(), nq);
                for (qi, q) in queries.iter().enumerate() {
                    let one = if filtered {
                        flat::search(vectors, metric, q, 10, &allowed)
                    } else {
                        flat::search(vectors, metric, q, 10, &AllRows)
                    };
                    let rows: Vec<u32> = if filtered {
                        allowed.iter().collect()
                    } else {
                        (0..n as u32).collect()
                    };
                    let listed = flat::search_rows(vectors, metric, q, 10, rows.iter().copied());
                    let ctx = format!(
                        "dim {dim} n {n} {} filtered={filtered} q{qi}",
                        metric.name()
                    );
                    assert_eq!(batch[qi], one, "{ctx}: batch vs one query");
                    assert_eq!(listed, one, "{ctx}: row list vs scan");
                    // f64 oracle: the k best exact scores, matched within rounding.
                    let mut exact: Vec<f64> = rows
                        .iter()
                        .map(|&r| exact_score(metric, q, &base[r as usize]))
                        .collect();
                    exact.sort_by(|a, b| b.total_cmp(a));
                    assert_eq!(one.len(), rows.len().min(10), "{ctx}");
                    for (h, want) in one.iter().zip(&exact) {
                        assert!(
                            (h.score as f64 - want).abs() < 1e-5,
                            "{ctx}: {} vs {want}",
                            h.score
                        );
                        let own = exact_score(metric, q, &base[h.id as usize]);
                        assert!(
                            (h.score as f64 - own).abs() < 1e-5,
                            "{ctx}: row {} score",
                            h.id
                        );
                    }
                    if filtered {
                        assert!(one.iter().all(|h| allowed.contains(h.id)), "{ctx}");
                    }
                }
            }
        }
    }
}

/// Score of `row` against `q` under `metric`, in f64 (higher is closer).
fn exact_score(metric: Metric, q: &[f32], row: &[f32]) -> f64 {
    let pairs = q.iter().zip(row).map(|(a, b)| (*a as f64, *b as f64));
    match metric {
        Metric::L2 => -pairs.map(|(a, b)| (a - b).powi(2)).sum::<f64>(),
        _ => pairs.map(|(a, b)| a * b).sum(),
    }
}

/// A graph walk scores rows with the exact scan's kernel: every row HNSW returns carries the very
/// score `flat::search` gives it (bit for bit), for cosine and dot.
#[test]
fn hnsw_scores_equal_the_exact_scans_bit_for_bit() {
    let seed = 0x5c0e_u64;
    println!("seed = {seed}");
    for (dim, metric) in [
        (384, Metric::Cosine),
        (50, Metric::Dot),
        (33, Metric::Cosine),
    ] {
        let base = gen::clustered(seed + dim as u64, 2_000, dim, 30, 0.5, true);
        let queries = gen::clustered(seed + 1 + dim as u64, 20, dim, 30, 0.5, true);
        let data = flatten(&base);
        let vectors = Vectors::new(&data, dim);
        let g = Hnsw::build(vectors, metric, HnswParams::default(), seed);
        let mut compared = 0;
        for q in &queries {
            let exact = flat::search(vectors, metric, q, 2_000, &AllRows);
            let by_id: std::collections::HashMap<u32, f32> =
                exact.iter().map(|n| (n.id, n.score)).collect();
            for h in g.search(vectors, q, 10, 64, &AllRows) {
                assert_eq!(
                    h.score.to_bits(),
                    by_id[&h.id].to_bits(),
                    "dim {dim} row {}",
                    h.id
                );
                compared += 1;
            }
        }
        println!("dim {dim} {}: {compared} scores equal", metric.name());
    }
}
