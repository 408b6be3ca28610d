//! Multi-vector search on a collection: exact MaxSim against a by-definition oracle (with a filter,
//! across sealed and mutable segments), and MUVERA + rerank recall against exact MaxSim.

use quiver_query::{maxsim_search, muvera_search, MultiSearchRequest};
use quiver_storage::{Database, DocId, Document, Filter, Schema};
use rand::Rng;
use rand_distr::StandardNormal;
use serde_json::json;

const DIM: usize = 16;

fn unit(rng: &mut rand::rngs::StdRng, c: &[f32], noise: f32) -> Vec<f32> {
    let mut v: Vec<f32> = c
        .iter()
        .map(|x| x + noise * rng.sample::<f32, _>(StandardNormal))
        .collect();
    quiver_linalg::normalize(&mut v);
    v
}

#[test]
fn maxsim_and_muvera_on_a_collection() {
    let seed = 4242_u64;
    println!("seed = {seed}");
    let mut rng = quiver_eval::gen::rng(seed);
    let centres = quiver_eval::gen::clustered(seed, 128, DIM, 128, 1.0, true);
    let n = 1_500u64;
    let mut docs_sets = Vec::new();
    let mut topics_of = Vec::new();
    let docs: Vec<Document> = (0..n)
        .map(|i| {
            let topics: Vec<usize> = (0..3).map(|_| rng.random_range(0..128)).collect();
            let set: Vec<Vec<f32>> = (0..rng.random_range(4..20))
                .map(|_| {
                    let t = topics[rng.random_range(0..3)];
                    unit(&mut rng, &centres[t], 0.15)
                })
                .collect();
            docs_sets.push(set.clone());
            topics_of.push(topics);
            let mut d = Document {
                id: Some(DocId::Int(i)),
                ..Default::default()
            };
            d.multi.insert("tok".into(), set);
            d.payload.insert("even".into(), json!(i % 2 == 0));
            d
        })
        .collect();
    let schema = Schema::parse(
        r#"{"mutable_max_rows": 600, "fields": {"even": {"type": "bool"}, "tok": {"type": "multi", "dim": 16, "metric": "cosine",
            "muvera": {"k_sim": 4, "d_proj": 8, "r_reps": 8, "seed": 1}, "index": {"type": "hnsw", "m": 12, "ef_construction": 100}}}}"#,
    )
    .expect("schema");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path()).expect("open");
    let c = db.create_collection("c", &schema).expect("create");
    for chunk in docs.chunks(250) {
        c.upsert(chunk.to_vec()).expect("upsert");
        c.wait_for_maintenance().expect("settle");
    }
    let snap = c.snapshot();
    assert!(
        snap.sealed_segments().len() >= 2,
        "sealed and mutable rows both searched"
    );
    let (mut hit, mut total) = (0, 0);
    for qi in 0..40 {
        let t = &topics_of[rng.random_range(0..n as usize)];
        let q: Vec<Vec<f32>> = (0..6)
            .map(|j| unit(&mut rng, &centres[t[j % 2]], 0.15))
            .collect();
        // Oracle by definition over all documents (stored unit vectors).
        let filter = (qi % 2 == 1)
            .then(|| Filter::from_json(&json!({"field": "even", "eq": true})).expect("filter"));
        let mut want: Vec<(u64, f64)> = (0..n)
            .filter(|i| filter.is_none() || i % 2 == 0)
            .map(|i| {
                let s: f64 = q
                    .iter()
                    .map(|a| {
                        docs_sets[i as usize]
                            .iter()
                            .map(|b| {
                                let mut b = b.clone();
                                quiver_linalg::normalize(&mut b);
                                a.iter()
                                    .zip(&b)
                                    .map(|(x, y)| *x as f64 * *y as f64)
                                    .sum::<f64>()
                            })
                            .fold(f64::NEG_INFINITY, f64::max)
                    })
                    .sum();
                (i, s)
            })
            .collect();
        want.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut req = MultiSearchRequest::new("tok", q.clone(), 10);
        req.filter = filter;
        let exact = maxsim_search(&snap, &req).expect("maxsim");
        assert_eq!(exact.hits.len(), 10);
        for (h, w) in exact.hits.iter().zip(&want) {
            assert!(
                (h.score as f64 - w.1).abs() < 1e-3,
                "query {qi}: {} vs {}",
                h.score,
                w.1
            );
        }
        let mv = muvera_search(&snap, &req).expect("muvera");
        assert!(mv.explain.iter().any(|p| p.method == "muvera"));
        for e in &exact.hits {
            total += 1;
            hit += mv.hits.iter().any(|h| h.id == e.id) as usize;
        }
    }
    let recall = hit as f64 / total as f64;
    println!("MUVERA + rerank recall@10 vs exact MaxSim on the collection: {recall:.4}");
    assert!(recall >= 0.9, "recall {recall}");
    let e = muvera_search(
        &snap,
        &MultiSearchRequest::new("nope", vec![vec![1.0; DIM]], 3),
    )
    .expect_err("unknown field");
    assert!(e.to_string().contains("unknown multi field"));
    let e = maxsim_search(
        &snap,
        &MultiSearchRequest::new("tok", vec![vec![1.0; 3]], 3),
    )
    .expect_err("bad dim");
    assert!(e.to_string().contains("query vector 0"), "{e}");
}

#[test]
fn plans_with_a_multi_source_and_a_maxsim_stage() {
    use quiver_query::plan::{execute, Plan};
    let seed = 99_u64;
    println!("seed = {seed}");
    let mut rng = quiver_eval::gen::rng(seed);
    let centres = quiver_eval::gen::clustered(seed, 32, DIM, 32, 1.0, true);
    let docs: Vec<Document> = (0..400u64)
        .map(|i| {
            let set: Vec<Vec<f32>> = (0..rng.random_range(3..10))
                .map(|_| {
                    let t = rng.random_range(0..32);
                    unit(&mut rng, &centres[t], 0.2)
                })
                .collect();
            let mut d = Document {
                id: Some(DocId::Int(i)),
                ..Default::default()
            };
            d.multi.insert("tok".into(), set);
            d.vectors.insert(
                "emb".into(),
                unit(&mut rng, &centres[(i % 32) as usize], 0.3),
            );
            d.payload.insert("even".into(), json!(i % 2 == 0));
            d
        })
        .collect();
    let schema = Schema::parse(
        r#"{"mutable_max_rows": 150, "fields": {"even": {"type": "bool"}, "emb": {"type": "dense", "dim": 16},
            "tok": {"type": "multi", "dim": 16, "muvera": {"k_sim": 3, "d_proj": 8, "r_reps": 6}}}}"#,
    )
    .expect("schema");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path()).expect("open");
    let c = db.create_collection("c", &schema).expect("create");
    c.upsert(docs).expect("upsert");
    let snap = c.snapshot();
    let q: Vec<Vec<f32>> = (0..4)
        .map(|j| unit(&mut rng, &centres[j * 3], 0.2))
        .collect();
    let qjson = serde_json::to_value(&q).expect("json");
    // Exact multi source == maxsim_search, with the filter applied.
    let plan = Plan::from_json(
        &json!({"prefetch": [{"multi": {"field": "tok", "vectors": qjson, "exact": true}, "limit": 10}],
                "filter": {"field": "even", "eq": true}, "limit": 10})
        .to_string(),
    )
    .expect("plan");
    let got = execute(&snap, &plan, None).expect("execute");
    let mut req = MultiSearchRequest::new("tok", q.clone(), 10);
    req.filter = Some(Filter::from_json(&json!({"field": "even", "eq": true})).expect("filter"));
    let want = maxsim_search(&snap, &req).expect("maxsim");
    let ids = |h: &[quiver_query::Hit]| h.iter().map(|x| x.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&got.hits), ids(&want.hits));
    // Dense prefetch of 400 (everything) rescored by MaxSim == exact MaxSim top 10.
    let plan = Plan::from_json(
        &json!({"prefetch": [{"dense": {"field": "emb", "vector": q[0].clone()}, "limit": 400}],
                "rescore": [{"maxsim": {"field": "tok", "vectors": qjson}, "limit": 10}], "limit": 10})
        .to_string(),
    )
    .expect("plan");
    let got = execute(&snap, &plan, None).expect("execute");
    let all = maxsim_search(&snap, &MultiSearchRequest::new("tok", q.clone(), 10)).expect("maxsim");
    assert_eq!(ids(&got.hits), ids(&all.hits));
    for (g, w) in got.hits.iter().zip(&all.hits) {
        assert!((g.score - w.score).abs() < 1e-5);
    }
    assert!(got.explain.iter().any(|s| s.stage.contains("maxsim tok")));
    // MUVERA source + maxsim stage taking the source's query vectors.
    let plan = Plan::from_json(
        &json!({"prefetch": [{"multi": {"field": "tok", "vectors": qjson}, "limit": 50}],
                "rescore": [{"maxsim": {"field": "tok"}, "limit": 5}], "limit": 5})
        .to_string(),
    )
    .expect("plan");
    let got = execute(&snap, &plan, None).expect("execute");
    assert_eq!(got.hits.len(), 5);
    // Text without an encoder, and both sources at once, are errors that say so.
    let e = execute(
        &snap,
        &Plan::from_json(
            &json!({"prefetch": [{"multi": {"field": "tok", "text": "hi"}, "limit": 5}]})
                .to_string(),
        )
        .expect("plan"),
        None,
    )
    .expect_err("no encoder");
    assert!(e.to_string().contains("encoder"), "{e}");
    assert!(Plan::from_json(
        &json!({"prefetch": [{"multi": {"field": "tok"}, "limit": 5}]}).to_string()
    )
    .is_err());
}
