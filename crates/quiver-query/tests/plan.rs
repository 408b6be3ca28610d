//! Query plans: JSON round trip, validation errors that name the problem, and execution checked
//! against brute-force oracles (full vectors, Matryoshka prefixes, funnels, fusion, filters) over
//! sealed segments plus the mutable segment.

use quiver_eval::gen;
use quiver_query::plan::{execute, Dims, Fusion, Plan, Source};
use quiver_query::QueryError;
use quiver_storage::{Collection, Database, DocId, Document, Schema};
use std::collections::HashMap;
use std::sync::Arc;

const DIM: usize = 32;

fn collection(dir: &std::path::Path, base: &[Vec<f32>]) -> (Database, Arc<Collection>) {
    let db = Database::open(dir).expect("open");
    let schema = Schema::parse(&format!(
        "mutable_max_rows = 1500\n[fields.emb]\ntype = \"dense\"\ndim = {DIM}\nmetric = \"cosine\"\n[fields.bucket]\ntype = \"integer\"\n"
    ))
    .expect("schema");
    let c = db.create_collection("p", &schema).expect("create");
    fill(&c, base);
    let info = c.info();
    assert!(
        !info.segments.is_empty() && info.mutable_rows > 0,
        "the test must cover sealed and mutable segments: {info:?}"
    );
    (db, c)
}

/// Upserts `base` as documents 0.. (payload `bucket = i % 10`) in batches of 700, so that with
/// `mutable_max_rows = 1500` rows land in sealed segments and in the mutable segment.
fn fill(c: &Collection, base: &[Vec<f32>]) {
    for chunk in (0..base.len()).collect::<Vec<_>>().chunks(700) {
        let docs = chunk
            .iter()
            .map(|&i| {
                let mut d = Document {
                    id: Some(DocId::Int(i as u64)),
                    ..Default::default()
                };
                d.vectors.insert("emb".into(), base[i].clone());
                d.payload.insert("bucket".into(), ((i % 10) as i64).into());
                d
            })
            .collect();
        c.upsert(docs).expect("upsert");
        // Seals run in the background: settle after each batch, so the layout is the one these
        // tests were written for (a segment each time the mutable segment fills).
        c.wait_for_maintenance().expect("settle");
    }
}

/// Brute-force top k by cosine on the first `n` dimensions (renormalised), ids of allowed rows.
fn oracle(
    base: &[Vec<f32>],
    q: &[f32],
    n: usize,
    k: usize,
    ok: impl Fn(usize) -> bool,
) -> Vec<u64> {
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let qn = norm(&q[..n]);
    let mut s: Vec<(f32, u64)> = base
        .iter()
        .enumerate()
        .filter(|(i, _)| ok(*i))
        .map(|(i, v)| {
            let d: f32 = v[..n].iter().zip(&q[..n]).map(|(a, b)| a * b).sum();
            (d / (norm(&v[..n]) * qn), i as u64)
        })
        .collect();
    s.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    s.into_iter().take(k).map(|x| x.1).collect()
}

fn ids(r: &quiver_query::PlanResult) -> Vec<u64> {
    r.hits
        .iter()
        .map(|h| match h.id {
            DocId::Int(i) => i,
            ref other => panic!("unexpected id {other:?}"),
        })
        .collect()
}

fn overlap(a: &[u64], b: &[u64]) -> usize {
    a.iter().filter(|x| b.contains(x)).count()
}

fn plan(json: serde_json::Value) -> Plan {
    Plan::from_json(&json.to_string()).expect("valid plan")
}

#[test]
fn json_round_trip() {
    let text = r#"{
      "prefetch": [
        {"dense": {"field": "emb", "text": "who likes quokkas?", "dims": 64}, "limit": 1000},
        {"dense": {"field": "emb", "vector": [0.5, 0.25], "exact": true}, "limit": 200}
      ],
      "fusion": {"rrf": {"k": 60, "weights": [1.0, 0.5]}},
      "rescore": [{"dense": {"field": "emb", "dims": "full", "precision": "f32"}, "limit": 100}],
      "filter": {"and": [{"field": "year", "gte": 2020}, {"field": "lang", "in": ["en", "de"]}]},
      "limit": 10,
      "offset": 5
    }"#;
    let p = Plan::from_json(text).expect("parse");
    assert_eq!(p.prefetch.len(), 2);
    let Source::Dense(d) = &p.prefetch[0].source else {
        panic!("a dense source")
    };
    assert_eq!(d.dims, Dims::Prefix(64));
    assert_eq!(p.prefetch[0].limit, 1000);
    assert_eq!(
        p.fusion,
        Some(Fusion::Rrf {
            k: 60.0,
            weights: vec![1.0, 0.5]
        })
    );
    let again = serde_json::to_string(&p).expect("serialise");
    let q = Plan::from_json(&again).expect("reparse");
    assert_eq!(p, q, "round trip changed the plan: {again}");
}

#[test]
fn bad_plans_name_the_problem() {
    let cases: &[(&str, &str)] = &[
        (r#"{"prefetch": []}"#, "at least one source"),
        (r#"{"prefetch": [{"limit": 5}]}"#, "needs a source"),
        (
            r#"{"prefetch": [{"dense": {"text": "x"}, "limit": 0}]}"#,
            "prefetch[0].limit",
        ),
        (
            r#"{"prefetch": [{"dense": {"text": "x", "vector": [1.0]}}]}"#,
            "exactly one of `text` and `vector`",
        ),
        (
            r#"{"prefetch": [{"dense": {"text": "x", "dims": "half"}}]}"#,
            "dims must be",
        ),
        (
            r#"{"prefetch": [{"dense": {"text": "x", "colour": 1}}]}"#,
            "colour",
        ),
        (
            r#"{"prefetch": [{"dense": {"text": "x"}}], "limt": 3}"#,
            "limt",
        ),
        (
            r#"{"prefetch": [{"dense": {"text": "x"}}], "fusion": {"rrf": {"weights": [1, 2]}}}"#,
            "2 weights for 1 prefetch",
        ),
        (
            r#"{"prefetch": [{"dense": {"text": "x"}}], "filter": {"field": "y", "between": 3}}"#,
            "filter",
        ),
        (
            r#"{"prefetch": [{"dense": {"text": "x"}}], "rescore": [{"dense": {"precision": "f16"}}]}"#,
            "f16",
        ),
    ];
    for (text, needle) in cases {
        match Plan::from_json(text) {
            Err(QueryError::BadPlan(m)) => {
                assert!(m.contains(needle), "{text}: error {m:?} lacks {needle:?}")
            }
            other => panic!("{text}: expected BadPlan, got {other:?}"),
        }
    }
}

#[test]
fn execution_matches_oracles() {
    let seed = 0x91A7_u64;
    println!("seed = {seed}");
    let n = 3_500;
    let base = gen::clustered(seed, n, DIM, 64, 0.5, true);
    let queries = gen::clustered(seed + 1, 20, DIM, 64, 0.5, true);
    let dir = tempfile::tempdir().expect("tempdir");
    let (_db, c) = collection(dir.path(), &base);
    let snap = c.snapshot();

    let mut funnel_overlap = 0;
    for q in &queries {
        // Full dimensions, exact: identical to brute force.
        let r = execute(
            &snap,
            &plan(serde_json::json!({"prefetch": [{"dense": {"vector": q, "exact": true}, "limit": 10}]})),
            None,
        )
        .expect("exact");
        assert_eq!(ids(&r), oracle(&base, q, DIM, 10, |_| true));

        // A Matryoshka prefix: identical to brute force on the renormalised prefix.
        let r = execute(
            &snap,
            &plan(
                serde_json::json!({"prefetch": [{"dense": {"vector": q, "dims": 8}, "limit": 10}]}),
            ),
            None,
        )
        .expect("prefix");
        assert_eq!(ids(&r), oracle(&base, q, 8, 10, |_| true));
        let exp = oracle(&base, q, 8, 1, |_| true)[0] as usize;
        let want = {
            let v = &base[exp][..8];
            let d: f32 = v.iter().zip(&q[..8]).map(|(a, b)| a * b).sum();
            let nv = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            let nq = q[..8].iter().map(|x| x * x).sum::<f32>().sqrt();
            d / (nv * nq)
        };
        assert!((r.hits[0].score - want).abs() < 1e-5, "prefix score");

        // Filtered prefix search.
        let r = execute(
            &snap,
            &plan(
                serde_json::json!({"prefetch": [{"dense": {"vector": q, "dims": 16}, "limit": 10}],
                                     "filter": {"field": "bucket", "in": [3, 7]}}),
            ),
            None,
        )
        .expect("filtered");
        assert_eq!(
            ids(&r),
            oracle(&base, q, 16, 10, |i| i % 10 == 3 || i % 10 == 7)
        );

        // Funnel: 8-d shortlist of 400, then full-dimension rescoring; offset applies last.
        let r = execute(
            &snap,
            &plan(serde_json::json!({
                "prefetch": [{"dense": {"vector": q, "dims": 8}, "limit": 400}],
                "rescore": [{"dense": {"dims": 16}, "limit": 50}, {"dense": {"dims": "full"}, "limit": 20}],
                "limit": 10
            })),
            None,
        )
        .expect("funnel");
        assert_eq!(r.explain.len(), 3);
        assert_eq!(r.explain[1].candidates_in, 400);
        assert_eq!(r.explain[2].candidates_out, 20);
        // Oracle of the same pipeline: shortlist by the 8-d prefix, re-rank by 16-d, then full.
        let s1 = oracle(&base, q, 8, 400, |_| true);
        let s2 = oracle(&base, q, 16, 50, |i| s1.contains(&(i as u64)));
        let s3 = oracle(&base, q, DIM, 10, |i| s2.contains(&(i as u64)));
        assert_eq!(ids(&r), s3, "funnel differs from its brute-force pipeline");
        let truth = oracle(&base, q, DIM, 10, |_| true);
        funnel_overlap += overlap(&ids(&r), &truth);
        let r2 = execute(
            &snap,
            &plan(serde_json::json!({
                "prefetch": [{"dense": {"vector": q, "dims": 8}, "limit": 400}],
                "rescore": [{"dense": {"dims": 16}, "limit": 50}, {"dense": {"dims": "full"}, "limit": 20}],
                "limit": 5, "offset": 5
            })),
            None,
        )
        .expect("offset");
        assert_eq!(ids(&r2), ids(&r)[5..10].to_vec());
    }
    // Isotropic test data gives prefixes no special meaning, so the funnel's recall against full
    // search is informative only; the assertion above checks the pipeline exactly.
    let recall = funnel_overlap as f64 / (10.0 * queries.len() as f64);
    println!("funnel 8 -> 16 -> full recall@10 vs full search = {recall:.3}");
}

#[test]
fn fusion_matches_hand_computed_rrf_and_minmax() {
    let seed = 0xF05E_u64;
    println!("seed = {seed}");
    let base = gen::clustered(seed, 3_000, DIM, 32, 0.5, true);
    let q = &gen::clustered(seed + 1, 1, DIM, 32, 0.5, true)[0];
    let dir = tempfile::tempdir().expect("tempdir");
    let (_db, c) = collection(dir.path(), &base);
    let snap = c.snapshot();
    let a = oracle(&base, q, 4, 30, |_| true);
    let b = oracle(&base, q, DIM, 30, |_| true);

    let r = execute(
        &snap,
        &plan(serde_json::json!({
            "prefetch": [{"dense": {"vector": q, "dims": 4}, "limit": 30},
                         {"dense": {"vector": q, "exact": true}, "limit": 30}],
            "fusion": {"rrf": {"k": 10, "weights": [2.0, 1.0]}},
            "limit": 15
        })),
        None,
    )
    .expect("rrf");
    let mut want: HashMap<u64, f32> = HashMap::new();
    for (w, list) in [(2.0f32, &a), (1.0, &b)] {
        for (rank, id) in list.iter().enumerate() {
            *want.entry(*id).or_default() += w / (10.0 + rank as f32 + 1.0);
        }
    }
    for h in &r.hits {
        let DocId::Int(i) = h.id else { panic!() };
        assert!((h.score - want[&i]).abs() < 1e-6, "rrf score of {i}");
    }
    let mut best: Vec<f32> = want.values().copied().collect();
    best.sort_by(|x, y| y.total_cmp(x));
    let got: Vec<f32> = r.hits.iter().map(|h| h.score).collect();
    for (g, w) in got.iter().zip(&best) {
        assert!((g - w).abs() < 1e-6, "rrf order");
    }

    // Min-max by hand, on a 24-d prefix and the full vectors (the 4-d prefix's top 30 shares no
    // document with the full top 30 here, and the rule for documents in both lists would go
    // untested). The source lists and their scores come from running each prefetch alone (their
    // ids are the brute-force lists); each list maps onto [0, 1] by (s - min) / (max - min), a
    // document missing from a list gets 0 there, and the fused score is the sum over both lists.
    let source = |p: serde_json::Value| -> Vec<(u64, f32)> {
        let r = execute(
            &snap,
            &plan(serde_json::json!({"prefetch": [p], "limit": 30})),
            None,
        )
        .expect("source");
        r.hits
            .iter()
            .map(|h| match h.id {
                DocId::Int(i) => (i, h.score),
                ref other => panic!("unexpected id {other:?}"),
            })
            .collect()
    };
    let a = oracle(&base, q, 24, 30, |_| true);
    let sa = source(serde_json::json!({"dense": {"vector": q, "dims": 24}, "limit": 30}));
    let sb = source(serde_json::json!({"dense": {"vector": q, "exact": true}, "limit": 30}));
    assert_eq!(sa.iter().map(|x| x.0).collect::<Vec<_>>(), a);
    assert_eq!(sb.iter().map(|x| x.0).collect::<Vec<_>>(), b);
    let mut want: HashMap<u64, f64> = HashMap::new();
    for list in [&sa, &sb] {
        let lo = list
            .iter()
            .map(|x| x.1 as f64)
            .fold(f64::INFINITY, f64::min);
        let hi = list
            .iter()
            .map(|x| x.1 as f64)
            .fold(f64::NEG_INFINITY, f64::max);
        assert!(hi > lo, "a list of equal scores would not test the scaling");
        for &(id, s) in list.iter() {
            *want.entry(id).or_default() += (s as f64 - lo) / (hi - lo);
        }
    }
    // Both cases of the "missing from a list" rule occur: some documents are in both lists, some
    // in one only (the seed is fixed, so this holds or fails every run).
    let both = a.iter().filter(|i| b.contains(i)).count();
    assert!(
        both > 0 && both < want.len(),
        "{both} of {} documents in both lists",
        want.len()
    );
    let r = execute(
        &snap,
        &plan(serde_json::json!({
            "prefetch": [{"dense": {"vector": q, "dims": 24}, "limit": 30},
                         {"dense": {"vector": q, "exact": true}, "limit": 30}],
            "fusion": {"score": {"norm": "minmax"}},
            "limit": 60
        })),
        None,
    )
    .expect("minmax");
    // Every fused document is returned (the union has at most 60), each with its hand score.
    assert_eq!(r.hits.len(), want.len(), "fused documents");
    for h in &r.hits {
        let DocId::Int(i) = h.id else {
            panic!("unexpected id {:?}", h.id)
        };
        let w = want
            .get(&i)
            .unwrap_or_else(|| panic!("{i} is in neither source list"));
        assert!(
            (h.score as f64 - w).abs() < 1e-6,
            "min-max score of {i}: {} vs {w} by hand",
            h.score
        );
    }
    for p in r.hits.windows(2) {
        assert!(p[0].score >= p[1].score, "min-max order");
    }
    // The best hand score is the first hit's: 2 exactly when one document tops both lists.
    let best = want.values().copied().fold(f64::NEG_INFINITY, f64::max);
    assert!((r.hits[0].score as f64 - best).abs() < 1e-6);
    println!(
        "min-max: {} fused documents ({both} in both lists), best {best:.6}",
        want.len()
    );
}

#[test]
fn plan_errors_against_the_collection() {
    let base = gen::clustered(5, 2_800, DIM, 16, 0.5, true);
    let dir = tempfile::tempdir().expect("tempdir");
    let (_db, c) = collection(dir.path(), &base);
    let snap = c.snapshot();
    let q = &base[0];
    for (p, needle) in [
        (
            serde_json::json!({"prefetch": [{"dense": {"vector": q, "dims": 64}}]}),
            "64 exceeds the 32 dimensions",
        ),
        (
            serde_json::json!({"prefetch": [{"dense": {"field": "nope", "vector": q}}]}),
            "nope",
        ),
        (
            serde_json::json!({"prefetch": [{"dense": {"text": "hello"}}]}),
            "needs a model",
        ),
        (
            serde_json::json!({"prefetch": [{"dense": {"vector": [1.0, 2.0]}}]}),
            "expected 32 dimensions",
        ),
    ] {
        let err = execute(&snap, &plan(p.clone()), None).expect_err("must fail");
        assert!(err.to_string().contains(needle), "{p}: {err}");
    }
}

/// Clustered unit vectors whose coordinate `j` is scaled by `0.9^j` before renormalising, so that
/// leading dimensions carry most of the variance, as with Matryoshka-trained models.
fn matryoshka_like(seed: u64, n: usize, clusters: usize) -> Vec<Vec<f32>> {
    gen::clustered(seed, n, DIM, clusters, 0.5, true)
        .into_iter()
        .map(|mut v| {
            for (j, x) in v.iter_mut().enumerate() {
                *x *= 0.9f32.powi(j as i32);
            }
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
            v
        })
        .collect()
}

/// A collection whose sealed segments carry binary codes of the 16-d prefix, int8 and PQ codes
/// of the full vector; rows are spread over two sealed segments and the mutable segment.
fn coded_collection(dir: &std::path::Path, base: &[Vec<f32>]) -> (Database, Arc<Collection>) {
    let db = Database::open(dir).expect("open");
    let schema = Schema::parse(&format!(
        r#"mutable_max_rows = 1500
[fields.emb]
type = "dense"
dim = {DIM}
metric = "cosine"
matryoshka = [8, 16]
codecs = [{{ type = "binary", dims = 16 }}, {{ type = "int8" }}, {{ type = "pq", m = 8 }}, {{ type = "binary" }}]
[fields.bucket]
type = "integer"
"#
    ))
    .expect("schema");
    let c = db.create_collection("codes", &schema).expect("create");
    fill(&c, base);
    (db, c)
}

#[test]
fn codec_sources_and_rescoring_against_brute_force() {
    let seed = 0xC0DE_u64;
    println!("seed = {seed}");
    let n = 5_000;
    let base = matryoshka_like(seed, n, 64);
    let queries = matryoshka_like(seed + 1, 30, 64);
    let dir = tempfile::tempdir().expect("tempdir");
    let (_db, c) = coded_collection(dir.path(), &base);
    let info = c.info();
    assert!(
        info.segments.len() >= 2 && info.mutable_rows > 0,
        "{info:?}"
    );
    // Tier figures: codes of 2 + 32 + 8 + 4 bytes per sealed row (plus codec tables) in RAM,
    // sealed f32 vectors on disk, the mutable segment's vectors in RAM.
    let sealed: usize = info.segments.iter().map(|s| s.1).sum();
    let t = &info.dense[0];
    println!("tiers: {t:?}");
    assert_eq!(t.rows, n);
    assert!(
        t.ram_codes >= sealed * 46 && t.ram_codes < sealed * 46 + 128 * 1024,
        "{t:?}"
    );
    assert_eq!(t.disk_vectors, sealed * DIM * 4);
    assert_eq!(t.ram_vectors, (n - sealed) * DIM * 4);
    assert_eq!(
        t.codecs,
        vec![
            ("binary/16".to_string(), 2),
            ("int8/32".into(), 32),
            ("pq8/32".into(), 8),
            ("binary/32".into(), 4)
        ]
    );
    // Delete every 13th document: deletes must be honoured by code scans and graph walks.
    let gone: Vec<DocId> = (0..n).step_by(13).map(|i| DocId::Int(i as u64)).collect();
    c.delete(&gone).expect("delete");
    let alive = |i: usize| !i.is_multiple_of(13);
    let snap = c.snapshot();

    // (plan, source, shortlist, recall@10 required). 16 bits per vector need a long shortlist.
    let cases: Vec<(&str, serde_json::Value, usize, f64)> = vec![
        (
            "binary/16 scan -> f32",
            serde_json::json!({"codec": "binary", "dims": 16}),
            800,
            0.9,
        ),
        (
            "int8 scan -> f32",
            serde_json::json!({"codec": "int8", "exact": true}),
            100,
            0.99,
        ),
        (
            "int8 graph -> f32",
            serde_json::json!({"codec": "int8"}),
            100,
            0.95,
        ),
        (
            "pq8 scan -> f32",
            serde_json::json!({"codec": "pq", "exact": true}),
            200,
            0.95,
        ),
        (
            "binary/32 scan -> f32",
            serde_json::json!({"codec": "binary", "exact": true}),
            800,
            0.9,
        ),
    ];
    for (name, mut src, shortlist, want) in cases {
        for filtered in [false, true] {
            let mut hits = 0;
            for q in &queries {
                src["vector"] = serde_json::json!(q);
                let mut p = serde_json::json!({
                    "prefetch": [{"dense": src.clone(), "limit": shortlist}],
                    "rescore": [{"dense": {"dims": "full"}, "limit": 10}],
                    "limit": 10
                });
                let ok = |i: usize| alive(i) && (!filtered || i % 10 < 3);
                if filtered {
                    p["filter"] = serde_json::json!({"field": "bucket", "lt": 3});
                }
                let r = execute(&snap, &plan(p), None).expect(name);
                let got = ids(&r);
                assert!(
                    got.iter().all(|&i| ok(i as usize)),
                    "{name}: filter or delete violated"
                );
                hits += overlap(&got, &oracle(&base, q, DIM, 10, ok));
                // The full-precision rescore reports exact cosine.
                let DocId::Int(top) = r.hits[0].id else {
                    panic!()
                };
                let exact: f32 = base[top as usize].iter().zip(q).map(|(a, b)| a * b).sum();
                assert!(
                    (r.hits[0].score - exact).abs() < 1e-4,
                    "{name}: rescored score"
                );
            }
            let recall = hits as f64 / (10.0 * queries.len() as f64);
            println!("{name} (filtered: {filtered}): recall@10 = {recall:.3}");
            assert!(
                recall >= want,
                "{name} filtered={filtered}: recall {recall} < {want}"
            );
        }
    }

    // An int8 rescore stage approximates f32 scores closely.
    let q = &queries[0];
    let r = execute(
        &snap,
        &plan(serde_json::json!({
            "prefetch": [{"dense": {"vector": q, "exact": true}, "limit": 50}],
            "rescore": [{"dense": {"precision": "int8"}, "limit": 50}],
            "limit": 50
        })),
        None,
    )
    .expect("int8 rescore");
    for h in &r.hits {
        let DocId::Int(i) = h.id else { panic!() };
        let exact: f32 = base[i as usize].iter().zip(q).map(|(a, b)| a * b).sum();
        assert!(
            (h.score - exact).abs() < 0.05,
            "int8 score {} vs {exact}",
            h.score
        );
    }
    assert!(r.explain[1].stage.contains("int8"), "{:?}", r.explain[1]);

    // Undeclared codecs are named in the error.
    let err = execute(
        &snap,
        &plan(
            serde_json::json!({"prefetch": [{"dense": {"vector": q, "codec": "int8", "dims": 8}}]}),
        ),
        None,
    )
    .expect_err("int8 on 8 dims is not declared");
    assert!(
        err.to_string().contains("no int8 codes on 8 dimensions")
            && err.to_string().contains("binary/16"),
        "{err}"
    );
}

#[test]
fn codes_survive_reopen_and_keep_results() {
    let seed = 0xC0DF_u64;
    println!("seed = {seed}");
    let base = gen::clustered(seed, 3_500, DIM, 32, 0.5, true);
    let q = gen::clustered(seed + 1, 1, DIM, 32, 0.5, true).remove(0);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = plan(serde_json::json!({
        "prefetch": [{"dense": {"vector": q, "codec": "binary", "dims": 16}, "limit": 100}],
        "rescore": [{"dense": {"precision": "pq"}, "limit": 30}, {"dense": {}, "limit": 10}]
    }));
    let before = {
        let (_db, c) = coded_collection(dir.path(), &base);
        let r = execute(&c.snapshot(), &p, None).expect("before");
        (ids(&r), r.hits.iter().map(|h| h.score).collect::<Vec<_>>())
    };
    let db = Database::open(dir.path()).expect("reopen");
    let c = db.collection("codes").expect("collection");
    let r = execute(&c.snapshot(), &p, None).expect("after");
    assert_eq!(ids(&r), before.0);
    assert_eq!(r.hits.iter().map(|h| h.score).collect::<Vec<_>>(), before.1);
}

#[test]
fn funnel_preset_shapes_and_recall() {
    use quiver_query::plan::DenseQuery;
    use quiver_query::presets::funnel;
    let seed = 0xF1F1_u64;
    println!("seed = {seed}");
    let base = matryoshka_like(seed, 5_000, 64);
    let queries = matryoshka_like(seed + 1, 20, 64);
    let dir = tempfile::tempdir().expect("tempdir");
    let (_db, c) = coded_collection(dir.path(), &base);
    let snap = c.snapshot();
    let field = snap.schema().dense("emb").expect("field");
    let mut hits = 0;
    for q in &queries {
        let query = DenseQuery {
            vector: Some(q.clone()),
            ..Default::default()
        };
        let p = funnel(&field, query, 10, None).expect("funnel");
        // The cheapest codec (binary/16, 2 bytes), the richest (int8, 32 bytes), then f32.
        let stages: Vec<String> = execute(&snap, &p, None)
            .expect("run")
            .explain
            .iter()
            .map(|s| s.stage.clone())
            .collect();
        assert_eq!(stages.len(), 3, "{stages:?}");
        assert!(stages[0].contains("binary dims=16"), "{stages:?}");
        assert!(stages[1].contains("int8"), "{stages:?}");
        assert!(stages[2].contains("f32 dims=full"), "{stages:?}");
        let r = execute(&snap, &p, None).expect("run");
        assert_eq!(r.hits.len(), 10);
        hits += overlap(&ids(&r), &oracle(&base, q, DIM, 10, |_| true));
        let again = Plan::from_json(&serde_json::to_string(&p).expect("json")).expect("parse");
        assert_eq!(again, p, "preset plans round-trip through JSON");
    }
    let recall = hits as f64 / (10.0 * queries.len() as f64);
    println!("funnel preset recall@10 = {recall:.3}");
    assert!(recall >= 0.95, "funnel recall {recall}");

    // A plain field has nothing to funnel through.
    let (_db2, plain) = collection(tempfile::tempdir().expect("tmp").path(), &base[..2_800]);
    let f = plain.schema().dense("emb").expect("field");
    let err = funnel(&f, DenseQuery::default(), 10, None).expect_err("no levels");
    assert!(err.to_string().contains("codecs or matryoshka"), "{err}");
}

#[test]
fn pca_rotation_gives_prefixes_meaning() {
    let seed = 0x9CA_u64;
    println!("seed = {seed}");
    // Variance grows towards the LAST coordinates: raw prefixes carry little of it.
    let reversed = |v: Vec<Vec<f32>>| -> Vec<Vec<f32>> {
        v.into_iter()
            .map(|mut v| {
                v.reverse();
                v
            })
            .collect()
    };
    let base = reversed(matryoshka_like(seed, 5_000, 64));
    let queries = reversed(matryoshka_like(seed + 1, 20, 64));
    let mut recall = Vec::new();
    for rotation in ["none", "pca"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::open(dir.path()).expect("open");
        let schema = Schema::parse(&format!(
            "mutable_max_rows = 1500\n[fields.emb]\ntype = \"dense\"\ndim = {DIM}\nmetric = \"cosine\"\nrotation = \"{rotation}\"\ncodecs = [{{ type = \"binary\", dims = 8 }}]\n"
        ))
        .expect("schema");
        let c = db.create_collection("r", &schema).expect("create");
        fill(&c, &base);
        // The funnel twice: with 500 rows still in the mutable segment, then all sealed.
        for placement in ["mixed", "sealed"] {
            if placement == "sealed" {
                c.flush().expect("flush");
            }
            let snap = c.snapshot();
            let mut hits = 0;
            for q in &queries {
                // Exact full-dimension results do not depend on the rotation.
                let r = execute(
                &snap,
                &plan(serde_json::json!({"prefetch": [{"dense": {"vector": q, "exact": true}}], "limit": 10})),
                None,
            )
            .expect("exact");
                assert_eq!(
                    ids(&r),
                    oracle(&base, q, DIM, 10, |_| true),
                    "rotation {rotation}"
                );
                for stage in ["binary", "f32"] {
                    let src = if stage == "binary" {
                        serde_json::json!({"vector": q, "codec": "binary", "dims": 8})
                    } else {
                        serde_json::json!({"vector": q, "dims": 8})
                    };
                    let r = execute(
                    &snap,
                    &plan(serde_json::json!({
                        "prefetch": [{"dense": src, "limit": 300}],
                        "rescore": [{"dense": {"dims": 16}, "limit": 50}, {"dense": {}, "limit": 10}]
                    })),
                    None,
                )
                .expect("funnel");
                    hits += overlap(&ids(&r), &oracle(&base, q, DIM, 10, |_| true));
                }
            }
            // Stored vectors come back as given (up to the cosine renormalisation at ingest).
            let got = c.get(&DocId::Int(7)).expect("doc 7");
            assert!(got.vectors["emb"]
                .iter()
                .zip(&base[7])
                .all(|(a, b)| (a - b).abs() < 1e-6));
            let r = hits as f64 / (20.0 * queries.len() as f64);
            println!("rotation {rotation}, {placement}: 8-d prefix funnels recall@10 = {r:.3}");
            recall.push(r);
        }
    }
    // recall = [none mixed, none sealed, pca mixed, pca sealed]. Mutable rows are scored with
    // codes and the rotation borrowed from a sealed segment, so where rows sit must not matter
    // beyond what per-segment training moves (at most 5 of the 400 hits). (A floor of 0.9 on the
    // mixed figure used to pass only because mutable rows were scored exactly in f32; all sealed,
    // this funnel measured 0.875.)
    assert!(
        (recall[2] - recall[3]).abs() <= 5.0 / 400.0 + 1e-9,
        "PCA funnel recall depends on placement: {recall:?}"
    );
    assert!(
        recall[2].min(recall[3]) > recall[0].max(recall[1]) + 0.2,
        "rotation must help: {recall:?}"
    );
}
