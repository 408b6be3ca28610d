//! Every codec against f32 brute force: scores against the reconstruction, recall of code scans
//! (with and without filters, before and after exact rerank), HNSW traversal over codes,
//! serialisation round trips and corrupt input. Seeds are printed.
//!
//! Recall floors are not the code's own last output. Each comes from one of:
//! - an **oracle** computed here by brute force: the codec's ideal ranking, every allowed row
//!   scored by the metric against its decoded reconstruction (asymmetric), or by −Hamming between
//!   bits this test derives from the codec's thresholds (symmetric). A code scan must reach what
//!   that ranking reaches ([`recall_band`]);
//! - a **published figure**: DESIGN §5, "compressed search with rescoring: recall@10 >= 0.95".

use quiver_eval::{brute_force_topk, gen, mean_recall};
use quiver_index::{
    rerank, AllRows, Bitset, Hnsw, HnswParams, Neighbor, NodeScorer, RowFilter, Vectors,
};
use quiver_linalg::{dot, Metric};
use quiver_quant::{Codec, CodecSpec, QuantError, ScoreMode};
use rand::Rng;

const DIM: usize = 64;
const N: usize = 5_000;
const NQ: usize = 60;

/// DESIGN §5 target for compressed search with exact rescoring: recall@10 >= 0.95.
const DESIGN_RERANK_RECALL: f64 = 0.95;

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

/// The published floor on recall@10 after rescoring the shortlist with exact f32 scores, where
/// one applies. Int8 and PQ16 are held to DESIGN §5's 0.95 (PQ16 codes are 1/16 of f32, inside
/// the target's "<= 1/8"; int8 is 1/4, so 0.95 is a lower bar than its 8 bits per dimension
/// should clear). 64-bit binary codes have no published figure at a 10% shortlist: they are held
/// to the oracle only (and asymmetric >= Hamming, below).
fn published_rerank_floor(spec: CodecSpec) -> Option<f64> {
    match spec {
        CodecSpec::Int8 | CodecSpec::Pq { .. } => Some(DESIGN_RERANK_RECALL),
        CodecSpec::Binary => None,
    }
}

/// What the codec's ideal ranking scores each row: the metric against the decoded
/// reconstruction (asymmetric), or −Hamming between bits derived here from the codec's
/// thresholds, for the query and for the original f32 row (symmetric; independent of `encode`).
struct Oracle {
    decoded: Vec<Vec<f32>>,
    base_bits: Vec<u64>,
    thresholds: Vec<f32>,
}

fn bits64(v: &[f32], t: &[f32]) -> u64 {
    assert_eq!(v.len(), 64, "the Hamming oracle packs one u64 per row");
    v.iter()
        .zip(t)
        .enumerate()
        .fold(0u64, |b, (d, (x, t))| if x >= t { b | 1 << d } else { b })
}

impl Oracle {
    fn new(codec: &Codec, codes: &[u8], base: &[Vec<f32>]) -> Oracle {
        let decoded = codes
            .chunks(codec.code_len())
            .map(|c| {
                let mut x = vec![0.0; DIM];
                codec.decode(c, &mut x).unwrap();
                x
            })
            .collect();
        let thresholds = match codec {
            Codec::Binary(b) => b.thresholds().to_vec(),
            _ => Vec::new(),
        };
        let base_bits = if thresholds.is_empty() {
            Vec::new()
        } else {
            base.iter().map(|v| bits64(v, &thresholds)).collect()
        };
        Oracle {
            decoded,
            base_bits,
            thresholds,
        }
    }

    fn score(&self, metric: Metric, mode: ScoreMode, q: &[f32], qbits: u64, row: usize) -> f32 {
        match mode {
            ScoreMode::Asymmetric => metric.score(q, &self.decoded[row]),
            ScoreMode::Symmetric => -((qbits ^ self.base_bits[row]).count_ones() as f32),
        }
    }
}

/// Bounds on recall@|truth| of any top-`k` list ranked by scores within `tol` of `oracle`
/// (the allowed rows with their oracle scores). Rows the oracle puts more than 2·tol above its
/// k-th score are in every such list, rows more than 2·tol below are in none, and the rows in
/// between (ties included) fill the remaining slots in some order: the bounds take the worst and
/// the best order. With `tol` = 0 and no ties the two bounds are the oracle's own recall.
fn recall_band(oracle: &[(u32, f32)], tol: f32, truth: &[u32], k: usize) -> (f64, f64) {
    if truth.is_empty() || oracle.len() <= k {
        return (1.0, 1.0); // every allowed row is in the list
    }
    let mut s: Vec<f32> = oracle.iter().map(|o| o.1).collect();
    s.sort_by(|a, b| b.total_cmp(a));
    let sk = s[k - 1];
    // Widened by a few ulps so float rounding of sk ± 2·tol never narrows the band.
    let w = 2.0 * tol * (1.0 + 1e-3) + 4.0 * f32::EPSILON * sk.abs().max(1.0);
    let (mut sure, mut sure_t, mut band, mut band_t) = (0usize, 0usize, 0usize, 0usize);
    for &(id, o) in oracle {
        let t = truth.contains(&id) as usize;
        if o > sk + w {
            sure += 1;
            sure_t += t;
        } else if o >= sk - w {
            band += 1;
            band_t += t;
        }
    }
    let slots = k.saturating_sub(sure);
    let lo = sure_t + slots.saturating_sub(band - band_t);
    let hi = sure_t + slots.min(band_t);
    let n = truth.len() as f64;
    (lo as f64 / n, hi as f64 / n)
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
    let allowed_rows: Vec<u32> = (0..N as u32).filter(|&i| allowed.contains(i)).collect();
    let truth = brute_force_topk(&d.base, &d.queries, metric, 10, |i| {
        allowed.contains(i as u32)
    });
    let vectors = Vectors::new(&d.flat, DIM);
    let mut binary_codes_recall = Vec::new();
    for (spec, mode) in specs() {
        let codec = Codec::train(spec, &d.flat, DIM, metric, seed).unwrap();
        let codes = codec.encode_all(&d.flat).unwrap();
        let len = codec.code_len();
        let oracle = Oracle::new(&codec, &codes, &d.base);
        let k_short = shortlist(spec);
        let (mut raw, mut reranked) = (Vec::new(), Vec::new());
        let (mut band_raw, mut band_rr) = ((0.0, 0.0), (0.0, 0.0));
        let mut max_tol = 0.0f32;
        for (q, t) in d.queries.iter().zip(&truth) {
            let scorer = codec.query_with(q, mode).unwrap();
            let short = scorer.scan_topk(&codes, &allowed, k_short);
            // The scan is the brute-force top of the same scores: every allowed row scored one
            // by one, best first, ties by lower row (exact: the same arithmetic).
            let code_scores: Vec<f32> = allowed_rows
                .iter()
                .map(|&id| scorer.score(&codes[id as usize * len..(id as usize + 1) * len]))
                .collect();
            let mut all: Vec<Neighbor> = allowed_rows
                .iter()
                .zip(&code_scores)
                .map(|(&id, &score)| Neighbor { id, score })
                .collect();
            all.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
            all.truncate(k_short);
            assert_eq!(
                short, all,
                "{spec:?} {mode:?}: scan_topk is not the brute-force top"
            );
            // The codec's ideal ranking, and how far the code scores stray from it.
            let qbits = if mode == ScoreMode::Symmetric {
                bits64(q, &oracle.thresholds)
            } else {
                0
            };
            let mut tol = 0.0f32;
            let qn = dot(q, q).sqrt();
            let ideal: Vec<(u32, f32)> = allowed_rows
                .iter()
                .zip(&code_scores)
                .map(|(&id, &c)| {
                    let o = oracle.score(metric, mode, q, qbits, id as usize);
                    // The per-row bound `scores_match_reconstruction` asserts (exact for
                    // Hamming); without it a drifting score would only widen the band below.
                    let bound = match mode {
                        ScoreMode::Symmetric => 0.0,
                        ScoreMode::Asymmetric => {
                            let xh = &oracle.decoded[id as usize];
                            2e-3 * (qn * dot(xh, xh).sqrt().max(1.0) + 1.0)
                        }
                    };
                    assert!(
                        (c - o).abs() <= bound,
                        "{spec:?} {mode:?} row {id}: code score {c} vs oracle {o}"
                    );
                    tol = tol.max((c - o).abs());
                    (id, o)
                })
                .collect();
            max_tol = max_tol.max(tol);
            let b = recall_band(&ideal, tol, t, 10);
            band_raw = (band_raw.0 + b.0, band_raw.1 + b.1);
            let b = recall_band(&ideal, tol, t, k_short);
            band_rr = (band_rr.0 + b.0, band_rr.1 + b.1);
            raw.push(ids(&short[..short.len().min(10)]));
            reranked.push(ids(&rerank(vectors, metric, q, &short, 10)));
        }
        let nq = d.queries.len() as f64;
        let (band_raw, band_rr) = (
            (band_raw.0 / nq, band_raw.1 / nq),
            (band_rr.0 / nq, band_rr.1 / nq),
        );
        let r_raw = mean_recall(&raw, &truth, 10);
        let r_rr = mean_recall(&reranked, &truth, 10);
        println!(
            "  {:>7} {:?}: recall@10 codes {r_raw:.3} (oracle [{:.3}, {:.3}]), codes top-{k_short} + rerank {r_rr:.3} (oracle [{:.3}, {:.3}]); max |code - oracle score| {max_tol:.2e}",
            spec.name(),
            mode,
            band_raw.0,
            band_raw.1,
            band_rr.0,
            band_rr.1,
        );
        if spec == CodecSpec::Binary {
            binary_codes_recall.push(r_raw);
        }
        // Oracle floors (and ceilings): the code scan ranks as the codec's ideal ranking does.
        // Guards the scorers (LUTs, SIMD kernels, the L2 norm term) and the filter in the scan.
        let eps = 1e-9;
        assert!(
            band_raw.0 - eps <= r_raw && r_raw <= band_raw.1 + eps,
            "{spec:?} {mode:?}: codes recall {r_raw} outside the oracle's {band_raw:?}"
        );
        // Rerank of a shortlist that holds k true neighbours finds exactly those k.
        assert!(
            band_rr.0 - eps <= r_rr && r_rr <= band_rr.1 + eps,
            "{spec:?} {mode:?}: rerank recall {r_rr} outside the oracle's {band_rr:?}"
        );
        // Published floor: guards the codec's quality itself (training, encoding).
        if let Some(floor) = published_rerank_floor(spec) {
            assert!(
                r_rr >= floor,
                "{spec:?} {mode:?} rerank recall {r_rr} below DESIGN's {floor}"
            );
        }
    }
    // Asymmetric estimates rank better than symmetric ones on the same codes (Jégou, Douze and
    // Schmid, "Product quantization for nearest neighbor search", 2011: ADC beats SDC).
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
    // The f32 path through search_by is the plain search: the same walk with the same kernel on
    // the same rows (the exact scan's tile kernel, which plain cosine walks use), so equal ids and
    // bit-equal scores, with and without a filter.
    let score = metric.scorer();
    for (qi, q) in d.queries.iter().enumerate() {
        let f32_rows = F32Rows { vectors, query: q };
        for (filter, name) in [(&Bitset::full(N), "all"), (&half, "50%")] {
            for (k, ef) in [(10, 64), (40, 80)] {
                let plain = g.search(vectors, q, k, ef, filter);
                let by = g.search_by(&f32_rows, k, ef, filter);
                assert_eq!(plain.len(), k, "query {qi} filter {name}");
                assert_eq!(ids(&by), ids(&plain), "query {qi} filter {name} k {k}");
                for (a, b) in by.iter().zip(&plain) {
                    assert_eq!(
                        a.score.to_bits(),
                        b.score.to_bits(),
                        "query {qi} row {}",
                        a.id
                    );
                    assert_eq!(a.score, f32_rows.score(a.id), "query {qi} row {}", a.id);
                    // And the metric's own function agrees up to summation order.
                    let plain_dot = score(q, vectors.row(a.id));
                    assert!(
                        (a.score - plain_dot).abs() < 1e-6,
                        "query {qi} row {}",
                        a.id
                    );
                }
            }
        }
    }
}

/// Full-precision rows as a [`NodeScorer`], written here: what `search_by` gets from a caller,
/// scoring one row at a time with the exact scan's kernel.
struct F32Rows<'a> {
    vectors: Vectors<'a>,
    query: &'a [f32],
}

impl NodeScorer for F32Rows<'_> {
    fn score(&self, row: u32) -> f32 {
        quiver_linalg::dot_1x16_up_to(self.query, &[self.vectors.row(row)])[0]
    }
}

/// The binary codec is the one its module documents, recomputed here from the training data:
/// thresholds are the per-dimension means, and a code decodes to the mean of the training values
/// on its side of the threshold. The recall oracle above scores these reconstructions, so this is
/// what makes that oracle independent of the codec's training.
#[test]
fn binary_codec_matches_reference() {
    let seed = 302;
    println!("seed {seed}");
    for metric in [Metric::Dot, Metric::L2] {
        let d = data(seed, metric);
        let codec = Codec::train(CodecSpec::Binary, &d.flat, DIM, metric, seed).unwrap();
        let Codec::Binary(b) = &codec else {
            panic!("binary spec trains a binary codec")
        };
        let n = d.base.len() as f64;
        let mean: Vec<f64> = (0..DIM)
            .map(|j| d.base.iter().map(|v| v[j] as f64).sum::<f64>() / n)
            .collect();
        let side_mean = |j: usize, above: bool| {
            let t = b.thresholds()[j];
            let vals: Vec<f64> = d
                .base
                .iter()
                .filter(|v| (v[j] >= t) == above)
                .map(|v| v[j] as f64)
                .collect();
            vals.iter().sum::<f64>() / vals.len() as f64
        };
        let lo: Vec<f64> = (0..DIM).map(|j| side_mean(j, false)).collect();
        let hi: Vec<f64> = (0..DIM).map(|j| side_mean(j, true)).collect();
        assert_eq!(b.thresholds().len(), DIM);
        for (j, (&t, &m)) in b.thresholds().iter().zip(&mean).enumerate() {
            assert!(
                (t as f64 - m).abs() <= 1e-5 * (1.0 + m.abs()),
                "dim {j}: threshold {t} vs mean {m}"
            );
        }
        let mut code = vec![0u8; codec.code_len()];
        let mut xh = vec![0.0; DIM];
        for v in d.base.iter().step_by(13) {
            codec.encode(v, &mut code).unwrap();
            codec.decode(&code, &mut xh).unwrap();
            for j in 0..DIM {
                let above = v[j] >= b.thresholds()[j];
                assert_eq!(code[j / 8] >> (j % 8) & 1 == 1, above, "dim {j} bit");
                let want = if above { hi[j] } else { lo[j] };
                assert!(
                    (xh[j] as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "{} dim {j}: decoded {} vs side mean {want}",
                    metric.name(),
                    xh[j]
                );
            }
        }
    }
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
