//! Multi-vector search against the brute-force MaxSim oracle, and the MUVERA invariants.
//! Seeds are printed.

use quiver_eval::gen;
use quiver_index::multi::maxsim;
use quiver_index::multi::muvera::{FdeEncoder, FdeParams};
use quiver_index::multi::prune::ball_carve;
use quiver_index::{AllRows, Bitset, Hnsw, HnswParams, MultiVectorsBuf, Vectors};
use quiver_linalg::Metric;
use rand::Rng;

/// Chamfer by the definition, in f64, without any kernel: the oracle.
fn chamfer(q: &[Vec<f32>], d: &[Vec<f32>]) -> f64 {
    q.iter()
        .map(|a| {
            d.iter()
                .map(|b| {
                    a.iter()
                        .zip(b)
                        .map(|(x, y)| *x as f64 * *y as f64)
                        .sum::<f64>()
                })
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .sum()
}

fn flat(v: &[Vec<f32>]) -> Vec<f32> {
    v.iter().flatten().copied().collect()
}

fn dotf(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// Documents as sets drawn from a few "topics" (cluster centres), queries likewise: a clustered
/// model of token vectors.
struct Sets {
    docs: Vec<Vec<Vec<f32>>>,
    queries: Vec<Vec<Vec<f32>>>,
}

fn sets(seed: u64, n_docs: usize, n_queries: usize, dim: usize) -> Sets {
    use rand_distr::StandardNormal;
    let mut rng = gen::rng(seed);
    // 256 topic centres; a vector is a noisy copy of its topic's centre (unit length).
    let centres = gen::clustered(seed + 1, 256, dim, 256, 1.0, true);
    let noisy = |rng: &mut rand::rngs::StdRng, t: usize| -> Vec<f32> {
        let mut v: Vec<f32> = centres[t]
            .iter()
            .map(|x| x + 0.12 * rng.sample::<f32, _>(StandardNormal))
            .collect();
        quiver_linalg::normalize(&mut v);
        v
    };
    let mut docs = Vec::with_capacity(n_docs);
    let mut doc_topics = Vec::with_capacity(n_docs);
    for _ in 0..n_docs {
        let topics: Vec<usize> = (0..4).map(|_| rng.random_range(0..centres.len())).collect();
        let n = rng.random_range(8..=40);
        docs.push(
            (0..n)
                .map(|_| {
                    let t = topics[rng.random_range(0..topics.len())];
                    noisy(&mut rng, t)
                })
                .collect(),
        );
        doc_topics.push(topics);
    }
    // A query shares two topics with some document and adds one unrelated topic.
    let queries = (0..n_queries)
        .map(|_| {
            let d = &doc_topics[rng.random_range(0..n_docs)];
            let topics = [d[0], d[1], rng.random_range(0..centres.len())];
            let n = rng.random_range(4..=12);
            (0..n)
                .map(|_| {
                    let t = topics[rng.random_range(0..3)];
                    noisy(&mut rng, t)
                })
                .collect()
        })
        .collect();
    Sets { docs, queries }
}

#[test]
fn maxsim_kernel_matches_definition() {
    let seed = 5_u64;
    println!("seed = {seed}");
    let mut rng = gen::rng(seed);
    for dim in [1usize, 3, 8, 17, 64, 384] {
        for (nq, nd) in [(1usize, 1usize), (3, 4), (5, 7), (9, 13), (2, 33)] {
            let q: Vec<Vec<f32>> = (0..nq)
                .map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect())
                .collect();
            let d: Vec<Vec<f32>> = (0..nd)
                .map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect())
                .collect();
            let (fq, fd) = (flat(&q), flat(&d));
            let want = chamfer(&q, &d);
            let got = maxsim::maxsim(Vectors::new(&fq, dim), Vectors::new(&fd, dim)) as f64;
            let naive = maxsim::maxsim_naive(Vectors::new(&fq, dim), Vectors::new(&fd, dim)) as f64;
            let tol = 1e-4 * (1.0 + want.abs()) * (dim as f64).sqrt();
            assert!(
                (got - want).abs() <= tol,
                "dim {dim} {nq}x{nd}: {got} vs {want}"
            );
            assert!(
                (naive - want).abs() <= tol,
                "naive dim {dim}: {naive} vs {want}"
            );
        }
    }
}

#[test]
fn brute_force_search_matches_oracle_with_filter() {
    let seed = 11_u64;
    println!("seed = {seed}");
    let s = sets(seed, 300, 10, 16);
    let mut buf = MultiVectorsBuf::new(16);
    for d in &s.docs {
        buf.push(d);
    }
    let mut allowed = Bitset::new(300);
    for i in (0..300).step_by(3) {
        allowed.insert(i);
    }
    for q in &s.queries {
        let fq = flat(q);
        let got = maxsim::search(buf.view(), Vectors::new(&fq, 16), 10, &allowed);
        let mut want: Vec<(u32, f64)> = (0..300u32)
            .filter(|i| i % 3 == 0)
            .map(|i| (i, chamfer(q, &s.docs[i as usize])))
            .collect();
        want.sort_by(|a, b| b.1.total_cmp(&a.1));
        assert_eq!(got.len(), 10);
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g.score as f64 - w.1).abs() < 1e-3,
                "score {} vs {}",
                g.score,
                w.1
            );
        }
        assert!(got.iter().all(|h| h.id % 3 == 0));
    }
}

#[test]
fn fde_single_vectors_give_r_reps_times_inner_product() {
    let seed = 3_u64;
    println!("seed = {seed}");
    let mut rng = gen::rng(seed);
    let dim = 24;
    for (k_sim, r_reps) in [(0u32, 1usize), (3, 5), (5, 7)] {
        let params = FdeParams {
            k_sim,
            d_proj: None,
            r_reps,
            d_final: None,
            seed: rng.random(),
            fill_empty: true,
        };
        let enc = FdeEncoder::new(dim, params).expect("params");
        assert_eq!(enc.out_dim(), r_reps * (1 << k_sim) * dim);
        for _ in 0..20 {
            let q: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
            let d: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
            let fq = enc.encode_query(Vectors::new(&q, dim));
            let fd = enc.encode_document(Vectors::new(&d, dim));
            let got = dotf(&fq, &fd);
            let want = r_reps as f64 * dotf(&q, &d);
            assert!(
                (got - want).abs() < 1e-4 * r_reps as f64,
                "k_sim {k_sim} R {r_reps}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn fde_per_repetition_never_exceeds_chamfer_without_filling() {
    let seed = 9_u64;
    println!("seed = {seed}");
    let mut rng = gen::rng(seed);
    let dim = 12;
    // Non-negative coordinates make every inner product non-negative, where the bound holds.
    let mut set = |n: usize| -> Vec<Vec<f32>> {
        (0..n)
            .map(|_| (0..dim).map(|_| rng.random_range(0.0..1.0)).collect())
            .collect()
    };
    let pairs: Vec<_> = (0..50)
        .map(|i| (set(1 + i % 7), set(1 + (i * 5) % 13)))
        .collect();
    for k_sim in [1u32, 2, 4] {
        let params = FdeParams {
            k_sim,
            d_proj: None,
            r_reps: 1,
            d_final: None,
            seed: 1234 + k_sim as u64,
            fill_empty: false,
        };
        let enc = FdeEncoder::new(dim, params).expect("params");
        for (q, d) in &pairs {
            let (fq, fd) = (flat(q), flat(d));
            let ip = dotf(
                &enc.encode_query(Vectors::new(&fq, dim)),
                &enc.encode_document(Vectors::new(&fd, dim)),
            );
            let ch = chamfer(q, d);
            assert!(ip <= ch + 1e-4, "k_sim {k_sim}: FDE {ip} > Chamfer {ch}");
        }
    }
}

#[test]
fn fde_is_deterministic_and_seed_dependent() {
    let dim = 16;
    let pts: Vec<f32> = (0..dim * 5)
        .map(|i| ((i * 37) % 23) as f32 / 11.0 - 1.0)
        .collect();
    let p = FdeParams {
        d_final: Some(300),
        ..FdeParams::default()
    };
    let a = FdeEncoder::new(dim, p).expect("params");
    let b = FdeEncoder::new(dim, p).expect("params");
    let v = Vectors::new(&pts, dim);
    assert_eq!(a.encode_document(v), b.encode_document(v));
    assert_eq!(a.encode_query(v), b.encode_query(v));
    assert_eq!(a.out_dim(), 300);
    let c = FdeEncoder::new(dim, FdeParams { seed: 43, ..p }).expect("params");
    assert_ne!(a.encode_document(v), c.encode_document(v));
    assert!(FdeEncoder::new(dim, FdeParams { k_sim: 17, ..p }).is_err());
    assert!(FdeEncoder::new(dim, FdeParams { r_reps: 0, ..p }).is_err());
}

/// MUVERA candidates from an HNSW over document FDEs, reranked by exact MaxSim, against the exact
/// MaxSim top 10.
#[test]
fn muvera_rerank_recall_against_exact_maxsim() {
    let seed = 2024_u64;
    println!("seed = {seed}");
    let dim = 32;
    let s = sets(seed, 2_000, 50, dim);
    let mut buf = MultiVectorsBuf::new(dim);
    for d in &s.docs {
        buf.push(d);
    }
    let docs = buf.view();
    let enc = FdeEncoder::new(
        dim,
        FdeParams {
            k_sim: 4,
            d_proj: Some(16),
            r_reps: 10,
            d_final: None,
            seed,
            fill_empty: true,
        },
    )
    .expect("params");
    let fdes = enc.encode_documents(docs);
    let od = enc.out_dim();
    let fv = Vectors::new(&fdes, od);
    let g = Hnsw::build(fv, Metric::Dot, HnswParams::default(), seed);
    let (mut hit, mut total) = (0usize, 0usize);
    let mut hit_carved = 0usize;
    for q in &s.queries {
        let fq = flat(q);
        let qv = Vectors::new(&fq, dim);
        let exact = maxsim::search(docs, qv, 10, &AllRows);
        let cands: Vec<u32> = g
            .search(fv, &enc.encode_query(qv), 100, 200, &AllRows)
            .iter()
            .map(|n| n.id)
            .collect();
        let got = maxsim::search_rows(docs, qv, 10, cands.iter().copied());
        let carved = ball_carve(qv, 0.9);
        assert!(carved.len() <= fq.len());
        let got_c =
            maxsim::search_rows(docs, Vectors::new(&carved, dim), 10, cands.iter().copied());
        for e in &exact {
            total += 1;
            hit += got.iter().any(|h| h.id == e.id) as usize;
            hit_carved += got_c.iter().any(|h| h.id == e.id) as usize;
        }
    }
    let recall = hit as f64 / total as f64;
    let recall_c = hit_carved as f64 / total as f64;
    println!("MUVERA (R=10, k_sim=4, d_proj=16) + rerank of 100: recall@10 {recall:.4}; with ball carving (tau 0.9) {recall_c:.4}");
    assert!(recall >= 0.9, "recall@10 {recall}");
    assert!(recall_c >= 0.8, "ball-carved recall@10 {recall_c}");
}

#[test]
fn kmeans_pruning_keeps_maxsim_close_with_fewer_vectors() {
    let seed = 77_u64;
    println!("seed = {seed}");
    let dim = 32;
    let s = sets(seed, 200, 20, dim);
    let mut full = MultiVectorsBuf::new(dim);
    let mut pruned = MultiVectorsBuf::new(dim);
    let (mut before, mut after) = (0usize, 0usize);
    for d in &s.docs {
        full.push(d);
        let f = flat(d);
        let k = d.len().div_ceil(3);
        let mut c = quiver_index::multi::prune::kmeans_prune(Vectors::new(&f, dim), k, 10, seed)
            .expect("prune");
        assert_eq!(c.len(), k * dim, "k centroids");
        for row in c.chunks_exact_mut(dim) {
            quiver_linalg::normalize(row);
        }
        before += d.len();
        after += k;
        pruned.push_flat(&c);
    }
    println!("vectors: {before} -> {after}");
    // Documents are mixtures of 4 topics: a third of the vectors still covers them, so the exact
    // top 10 changes little.
    let (mut hit, mut total) = (0, 0);
    for q in &s.queries {
        let fq = flat(q);
        let qv = Vectors::new(&fq, dim);
        let a = maxsim::search(full.view(), qv, 10, &AllRows);
        let b = maxsim::search(pruned.view(), qv, 10, &AllRows);
        total += 10;
        hit += a.iter().filter(|x| b.iter().any(|y| y.id == x.id)).count();
    }
    let overlap = hit as f64 / total as f64;
    println!("top-10 overlap after pruning to 1/3: {overlap:.3}");
    assert!(overlap >= 0.8, "overlap {overlap}");
}
