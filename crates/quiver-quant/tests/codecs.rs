//! Every codec against f32 brute force: scores against the reconstruction, recall of code scans
//! (with and without filters, before and after exact rerank), HNSW traversal over codes,
//! serialisation round trips and corrupt input. Seeds are printed.

use quiver_eval::{brute_force_topk, gen, mean_recall};
use quiver_index::{rerank, AllRows, Bitset, Hnsw, HnswParams, Neighbor, RowFilter, Vectors};
use quiver_linalg::{dot, Metric};
use quiver_quant::{Codec, CodecSpec, QuantError, ScoreMode};
use rand::Rng;

const DIM: usize = 64;
const N: usize = 5_000;
const NQ: usize = 60;

struct Data {
    base: Vec<Vec<f32>>,
    flat: Vec<f32>,
    queries: Vec<Vec<f32>>,
}

fn data(seed: u64, metric: Metric) -> Data {
    let norm = metric == Metric::Cosine;
    let base = gen::clustered(seed, N, DIM, 50, 0.7, norm);
    let queries = gen::clustered(seed + 1, NQ, DIM, 50, 0.7, norm);
    let flat = base.concat();
    Data {
        base,
        flat,
        queries,
    }
}

fn ids(v: &[Neighbor]) -> Vec<u32> {
    v.iter().map(|n| n.id).collect()
}

fn specs() -> [(CodecSpec, ScoreMode); 4] {
    [
        (CodecSpec::Int8, ScoreMode::Asymmetric),
        (CodecSpec::Binary, ScoreMode::Asymmetric),
        (CodecSpec::Binary, ScoreMode::Symmetric),
        (CodecSpec::Pq { m: 16 }, ScoreMode::Asymmetric),
    ]
}

/// Shortlist rescored exactly: 100 rows (2% of the corpus) for int8 and PQ, 500 (10%) for 64-bit
/// binary codes, which cannot order neighbours inside a Gaussian cluster finely.
fn shortlist(spec: CodecSpec) -> usize {
    if spec == CodecSpec::Binary {
        500
    } else {
        100
    }
}

/// Minimum recall@10 after rescoring the shortlist with exact f32 scores, per codec. Int8 keeps
/// ~8 bits per dimension: its 2% shortlist holds the true top 10 (measured 1.000 on every seed
/// here). PQ16 (4 dims per byte) measured >= 0.987; 64-bit binary codes on a 10% shortlist
/// measured >= 0.86 (asymmetric) and >= 0.67 (Hamming). Floors sit below the measured minima.
fn rerank_floor(spec: CodecSpec, mode: ScoreMode) -> f64 {
    match (spec, mode) {
        (CodecSpec::Int8, _) => 0.99,
        (CodecSpec::Pq { .. }, _) => 0.95,
        (CodecSpec::Binary, ScoreMode::Asymmetric) => 0.8,
        (CodecSpec::Binary, ScoreMode::Symmetric) => 0.6,
    }
}

/// Minimum recall@10 of the code scores alone (no rerank); measured minima: int8 0.98, PQ16
/// 0.567, binary 0.125 (asymmetric) and 0.067 (Hamming) — random ranking would give 0.002.
fn codes_floor(spec: CodecSpec, mode: ScoreMode) -> f64 {
    match (spec, mode) {
        (CodecSpec::Int8, _) => 0.95,
        (CodecSpec::Pq { .. }, _) => 0.45,
        (CodecSpec::Binary, ScoreMode::Asymmetric) => 0.09,
        (CodecSpec::Binary, ScoreMode::Symmetric) => 0.04,
    }
}

fn check_recall(metric: Metric, seed: u64, filter_fraction: Option<f64>) {
    println!(
        "seed {seed}, metric {}, filter {filter_fraction:?}",
        metric.name()
    );
    let d = data(seed, metric);
    let mut rng = gen::rng(seed + 7);
    let allowed = match filter_fraction {
        Some(f) => {
            let mut b = Bitset::new(N);
            for i in 0..N as u32 {
                if rng.random_bool(f) {
                    b.insert(i);
                }
            }
            b
        }
        None => Bitset::full(N),
    };
    let truth = brute_force_topk(&d.base, &d.queries, metric, 10, |i| {
        allowed.contains(i as u32)
    });
    let vectors = Vectors::new(&d.flat, DIM);
    let mut binary_codes_recall = Vec::new();
    for (spec, mode) in specs() {
        let codec = Codec::train(spec, &d.flat, DIM, metric, seed).unwrap();
        let codes = codec.encode_all(&d.flat).unwrap();
        let mut raw = Vec::new();
        let mut reranked = Vec::new();
        for q in &d.queries {
            let scorer = codec.query_with(q, mode).unwrap();
            let short = scorer.scan_topk(&codes, &allowed, shortlist(spec));
            assert!(
                short.iter().all(|n| allowed.contains(n.id)),
                "filter violated"
            );
            assert!(short.windows(2).all(|w| w[0].score >= w[1].score));
            raw.push(ids(&short[..short.len().min(10)]));
            reranked.push(ids(&rerank(vectors, metric, q, &short, 10)));
        }
        let r_raw = mean_recall(&raw, &truth, 10);
        let r_rr = mean_recall(&reranked, &truth, 10);
        println!(
            "  {:>7} {:?}: recall@10 codes {r_raw:.3}, codes top-{} + rerank {r_rr:.3}",
            spec.name(),
            mode,
            shortlist(spec)
        );
        if spec == CodecSpec::Binary {
            binary_codes_recall.push(r_raw);
        }
        if std::env::var("QUIVER_MEASURE").is_err() {
            assert!(
                r_raw >= codes_floor(spec, mode),
                "{spec:?} {mode:?} codes recall {r_raw}"
            );
            assert!(
                r_rr >= rerank_floor(spec, mode),
                "{spec:?} {mode:?} rerank recall {r_rr}"
            );
        }
    }
    // The asymmetric estimate ranks better than Hamming on the same bits.
    assert!(
        binary_codes_recall[0] >= binary_codes_recall[1],
        "{binary_codes_recall:?}"
    );
}

#[test]
fn recall_vs_brute_force_all_metrics_no_filter() {
    for (i, metric) in [Metric::Cosine, Metric::Dot, Metric::L2]
        .into_iter()
        .enumerate()
    {
        check_recall(metric, 100 + i as u64, None);
    }
}

#[test]
fn recall_vs_brute_force_with_filters() {
    check_recall(Metric::Cosine, 200, Some(0.3));
    check_recall(Metric::L2, 201, Some(0.05));
}

/// The asymmetric score of a code equals the metric's score against the code's reconstruction
/// (an exact identity for binary and PQ; int8 rounds the query weights to i16).
#[test]
fn scores_match_reconstruction() {
    let seed = 300;
    println!("seed {seed}");
    for metric in [Metric::Cosine, Metric::Dot, Metric::L2] {
        let d = data(seed, metric);
        for (spec, mode) in specs() {
            let codec = Codec::train(spec, &d.flat, DIM, metric, seed).unwrap();
            let codes = codec.encode_all(&d.flat).unwrap();
            let len = codec.code_len();
            for q in d.queries.iter().take(5) {
                let scorer = codec.query_with(q, mode).unwrap();
                for (row, code) in codes.chunks(len).enumerate().step_by(37) {
                    let mut xh = vec![0.0; DIM];
                    codec.decode(code, &mut xh).unwrap();
                    let got = scorer.score(code);
                    if mode == ScoreMode::Symmetric {
                        // −Hamming between the query's bits and the code's bits.
                        let mut qc = vec![0u8; len];
                        codec.encode(q, &mut qc).unwrap();
                        let ham: u32 = (0..DIM.div_ceil(8))
                            .map(|j| (qc[j] ^ code[j]).count_ones())
                            .sum();
                        assert_eq!(got, -(ham as f32), "row {row}");
                        continue;
                    }
                    let want = metric.score(q, &xh);
                    let scale = dot(q, q).sqrt() * dot(&xh, &xh).sqrt().max(1.0) + 1.0;
                    assert!(
                        (got - want).abs() <= 2e-3 * scale,
                        "{spec:?} {}: row {row}: code score {got} vs reconstruction {want}",
                        metric.name()
                    );
                }
            }
        }
    }
}

/// Int8 reconstruction error is at most half a step per dimension (inside the trained range).
#[test]
fn int8_error_bound() {
    let seed = 301;
    println!("seed {seed}");
    let d = data(seed, Metric::Dot);
    let codec = Codec::train(CodecSpec::Int8, &d.flat, DIM, Metric::Dot, seed).unwrap();
    let Codec::Int8(c) = &codec else {
        panic!("int8 spec trains an int8 codec")
    };
    let (_, scale) = c.ranges();
    let mut code = vec![0u8; codec.code_len()];
    let mut xh = vec![0.0; DIM];
    for v in d.base.iter().step_by(11) {
        codec.encode(v, &mut code).unwrap();
        codec.decode(&code, &mut xh).unwrap();
        for j in 0..DIM {
            assert!((v[j] - xh[j]).abs() <= scale[j] * 0.5 + 1e-5, "dim {j}");
        }
    }
}

#[test]
fn hnsw_over_codes_with_rerank_and_filters() {
    let seed = 400;
    println!("seed {seed}");
    let metric = Metric::Cosine;
    let d = data(seed, metric);
    let vectors = Vectors::new(&d.flat, DIM);
    let params = HnswParams {
        m: 16,
        ef_construction: 100,
        ef_search: 64,
    };
    let g = Hnsw::build(vectors, metric, params, seed);
    let mut rng = gen::rng(seed);
    let mut half = Bitset::new(N);
    for i in 0..N as u32 {
        if rng.random_bool(0.5) {
            half.insert(i);
        }
    }
    for (filter, name) in [(&Bitset::full(N), "all"), (&half, "50%")] {
        let truth = brute_force_topk(&d.base, &d.queries, metric, 10, |i| {
            filter.contains(i as u32)
        });
        // The same graph walked with exact f32 scores and the same shortlist: the reference.
        let exact: Vec<Vec<u32>> = d
            .queries
            .iter()
            .map(|q| ids(&g.search(vectors, q, 10, 80, filter)))
            .collect();
        let r_f32 = mean_recall(&exact, &truth, 10);
        println!("  hnsw f32, filter {name}: recall@10 {r_f32:.3}");
        // Int8 scores are nearly exact: within 0.03 of the f32 walk. PQ16 steers the walk less
        // precisely: within 0.1.
        for (spec, slack) in [(CodecSpec::Int8, 0.03), (CodecSpec::Pq { m: 16 }, 0.1)] {
            let floor = r_f32 - slack;
            let codec = Codec::train(spec, &d.flat, DIM, metric, seed).unwrap();
            let codes = codec.encode_all(&d.flat).unwrap();
            let found: Vec<Vec<u32>> = d
                .queries
                .iter()
                .map(|q| {
                    let s = codec.query(q).unwrap();
                    let short = g.search_by(&s.over(&codes), 40, 80, filter);
                    assert!(short.iter().all(|n| filter.allows(n.id)));
                    ids(&rerank(vectors, metric, q, &short, 10))
                })
                .collect();
            let r = mean_recall(&found, &truth, 10);
            println!(
                "  hnsw over {} codes, filter {name}: recall@10 after rerank {r:.3}",
                spec.name()
            );
            assert!(r >= floor, "{spec:?} {name}: {r}");
        }
    }
    // The f32 path through search_by is the plain search.
    let q = &d.queries[0];
    let plain = g.search(vectors, q, 10, 64, &AllRows);
    assert_eq!(plain.len(), 10);
}

#[test]
fn serialisation_round_trip() {
    let seed = 500;
    println!("seed {seed}");
    for metric in [Metric::Cosine, Metric::L2] {
        let d = data(seed, metric);
        for (spec, _) in specs() {
            let codec = Codec::train(spec, &d.flat, DIM, metric, seed).unwrap();
            let bytes = codec.to_bytes();
            let back = Codec::from_bytes(&bytes).unwrap();
            assert_eq!(back, codec);
            assert_eq!(
                back.encode_all(&d.flat).unwrap(),
                codec.encode_all(&d.flat).unwrap()
            );
            assert_eq!(back.spec(), spec);
            assert_eq!(back.metric(), metric);
        }
    }
}

#[test]
fn corrupt_bytes_are_errors_never_panics() {
    let seed = 600;
    println!("seed {seed}");
    let d = data(seed, Metric::Dot);
    let mut rng = gen::rng(seed);
    for (spec, _) in specs() {
        let bytes = Codec::train(spec, &d.flat[..300 * DIM], DIM, Metric::Dot, seed)
            .unwrap()
            .to_bytes();
        let err = |b: &[u8]| match Codec::from_bytes(b) {
            Err(QuantError::Corrupt(m)) => m,
            other => panic!("expected a corrupt-codec error, got {other:?}"),
        };
        assert!(err(&bytes[..bytes.len() - 3]).contains("truncated"));
        let mut v = bytes.clone();
        v.push(0);
        assert!(err(&v).contains("trailing"));
        assert!(err(b"QCDX0000000000000000").contains("magic"));
        let mut v = bytes.clone();
        v[4] = 2;
        assert!(err(&v).contains("version"));
        let mut v = bytes.clone();
        v[8] = 9;
        assert!(err(&v).contains("kind"));
        let mut v = bytes.clone();
        v[9] = 7;
        assert!(err(&v).contains("metric"));
        let mut v = bytes.clone();
        v[12..16].copy_from_slice(&0u32.to_le_bytes());
        assert!(err(&v).contains("dimension"));
        let mut v = bytes.clone();
        let at = v.len() - 4;
        v[at..].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(err(&v).contains("non-finite"));
        // Every truncation and random byte flips: an error or a valid codec, never a panic.
        for cut in 0..bytes.len().min(200) {
            assert!(Codec::from_bytes(&bytes[..cut]).is_err());
        }
        for _ in 0..300 {
            let mut v = bytes.clone();
            let i = rng.random_range(0..v.len());
            v[i] ^= 1 << rng.random_range(0..8);
            let _ = Codec::from_bytes(&v);
        }
    }
    // pq m out of range.
    let pq = Codec::train(
        CodecSpec::Pq { m: 8 },
        &d.flat[..300 * DIM],
        DIM,
        Metric::Dot,
        1,
    )
    .unwrap()
    .to_bytes();
    let mut v = pq.clone();
    v[16..20].copy_from_slice(&(DIM as u32 + 1).to_le_bytes());
    assert!(Codec::from_bytes(&v)
        .unwrap_err()
        .to_string()
        .contains("m = 65"));
}

#[test]
fn bad_input_errors_name_the_problem() {
    let d = data(700, Metric::Dot);
    let e = Codec::train(CodecSpec::Pq { m: 65 }, &d.flat, DIM, Metric::Dot, 1).unwrap_err();
    assert!(e.to_string().contains("m = 65"), "{e}");
    let e = Codec::train(CodecSpec::Int8, &d.flat[..DIM + 3], DIM, Metric::Dot, 1).unwrap_err();
    assert!(e.to_string().contains("whole rows"), "{e}");
    let e = Codec::train(CodecSpec::Int8, &[], DIM, Metric::Dot, 1).unwrap_err();
    assert!(e.to_string().contains("at least one"), "{e}");
    let mut bad = d.flat[..4 * DIM].to_vec();
    bad[2 * DIM + 5] = f32::NAN;
    let e = Codec::train(CodecSpec::Binary, &bad, DIM, Metric::Dot, 1).unwrap_err();
    assert_eq!(e, QuantError::NonFinite { row: 2, col: 5 });
    let codec = Codec::train(CodecSpec::Binary, &d.flat, DIM, Metric::Dot, 1).unwrap();
    let mut out = vec![0u8; codec.code_len()];
    assert!(codec
        .encode(&d.flat[..DIM - 1], &mut out)
        .unwrap_err()
        .to_string()
        .contains("63 dimensions"));
    assert!(codec.encode(&d.flat[..DIM], &mut out[..2]).is_err());
    assert!(codec.query(&[0.0; 3]).is_err());
    // Fewer training rows than PQ centroids still trains (k := rows).
    let small = Codec::train(
        CodecSpec::Pq { m: 4 },
        &d.flat[..10 * DIM],
        DIM,
        Metric::L2,
        1,
    )
    .unwrap();
    let codes = small.encode_all(&d.flat[..10 * DIM]).unwrap();
    let hits = small
        .query(&d.flat[..DIM])
        .unwrap()
        .scan_topk(&codes, &AllRows, 1);
    assert_eq!(hits[0].id, 0);
}

#[test]
fn spec_names_in_json_and_toml() {
    assert_eq!(serde_json::to_string(&CodecSpec::Int8).unwrap(), "\"int8\"");
    assert_eq!(
        serde_json::to_string(&CodecSpec::Binary).unwrap(),
        "\"binary\""
    );
    assert_eq!(
        serde_json::to_string(&CodecSpec::Pq { m: 16 }).unwrap(),
        "{\"pq\":{\"m\":16}}"
    );
    #[derive(serde::Deserialize)]
    struct F {
        codec: CodecSpec,
    }
    let f: F = toml::from_str("codec = { pq = { m = 8 } }").unwrap();
    assert_eq!(f.codec, CodecSpec::Pq { m: 8 });
    let f: F = toml::from_str("codec = \"binary\"").unwrap();
    assert_eq!(f.codec, CodecSpec::Binary);
    assert!(toml::from_str::<F>("codec = \"int4\"").is_err());
    assert_eq!(CodecSpec::parse("pq32"), Some(CodecSpec::Pq { m: 32 }));
    assert_eq!(CodecSpec::parse("int8"), Some(CodecSpec::Int8));
    assert_eq!(CodecSpec::parse("nope"), None);
}
