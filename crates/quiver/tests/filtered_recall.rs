//! Filtered search keeps recall: recall@10 >= 0.95 against the brute-force oracle at filter
//! selectivities of 50%, 10%, 1% and 0.1% on 20k vectors, through the whole engine (sealed HNSW
//! segments + mutable segment), with the planner's own choice and with each path forced.

use quiver::{search, Database, DocId, Document, Filter, Schema, SearchRequest, Strategy};
use quiver_eval::{brute_force_topk, gen, mean_recall};
use quiver_linalg::Metric;
use rand::Rng;

#[test]
fn filtered_recall_at_selectivities() {
    let seed = 0xF117_u64;
    println!("seed = {seed}");
    let n = 20_000;
    let dim = 32;
    let base = gen::clustered(seed, n, dim, 512, 0.6, true);
    let mut rng = gen::rng(seed + 7);
    // bucket in 0..1000 uniformly: `bucket < t` has selectivity t/1000.
    let buckets: Vec<i64> = (0..n).map(|_| rng.random_range(0..1000)).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path()).expect("open");
    let schema = Schema::parse(&format!(
        "mutable_max_rows = 8000\n[fields.emb]\ntype = \"dense\"\ndim = {dim}\nmetric = \"cosine\"\n[fields.bucket]\ntype = \"integer\"\n[fields.tag]\ntype = \"keyword\"\n"
    ))
    .expect("schema");
    let c = db.create_collection("f", &schema).expect("create");
    for chunk in (0..n).collect::<Vec<_>>().chunks(2_000) {
        let docs = chunk
            .iter()
            .map(|&i| {
                let mut d = Document {
                    id: Some(DocId::Int(i as u64)),
                    ..Default::default()
                };
                d.vectors.insert("emb".into(), base[i].clone());
                d.payload.insert("bucket".into(), buckets[i].into());
                d.payload.insert(
                    "tag".into(),
                    (if buckets[i] % 2 == 0 { "even" } else { "odd" }).into(),
                );
                d
            })
            .collect();
        c.upsert(docs).expect("upsert");
    }
    let info = c.info();
    println!(
        "segments: {:?}, mutable rows: {}",
        info.segments, info.mutable_rows
    );
    assert!(
        info.segments.len() >= 2 && info.mutable_rows > 0,
        "test must cover sealed and mutable segments"
    );
    let queries = gen::clustered(seed + 1, 100, dim, 512, 0.6, true);
    let snap = c.snapshot();
    for (t, strategies) in [
        (500, vec![Strategy::Auto, Strategy::Graph]),
        (100, vec![Strategy::Auto, Strategy::Graph]),
        (10, vec![Strategy::Auto]),
        (1, vec![Strategy::Auto]),
    ] {
        let filter_json = serde_json::json!({"and": [{"field": "bucket", "lt": t}, {"field": "tag", "in": ["even", "odd"]}]});
        let filter = Filter::from_json(&filter_json).expect("filter");
        let truth = brute_force_topk(&base, &queries, Metric::Cosine, 10, |i| buckets[i] < t);
        for strategy in strategies {
            let found: Vec<Vec<u32>> = queries
                .iter()
                .map(|q| {
                    let mut req = SearchRequest::new(q.clone(), 10);
                    req.filter = Some(filter.clone());
                    req.strategy = strategy;
                    let res = search(&snap, &req).expect("search");
                    res.hits
                        .iter()
                        .map(|h| match h.id {
                            DocId::Int(i) => {
                                assert!(buckets[i as usize] < t, "filter violated");
                                i as u32
                            }
                            DocId::Str(_) => u32::MAX,
                        })
                        .collect()
                })
                .collect();
            let r = mean_recall(&found, &truth, 10);
            println!(
                "selectivity {:.1}% strategy {strategy:?}: recall@10 = {r:.4}",
                t as f64 / 10.0
            );
            assert!(r >= 0.95, "selectivity {t}/1000 {strategy:?}: recall {r}");
        }
    }
}

#[test]
fn deletes_are_honoured_by_graph_search() {
    let seed = 0xDE1E_u64;
    println!("seed = {seed}");
    let n = 6_000;
    let dim = 24;
    let base = gen::clustered(seed, n, dim, 128, 0.6, true);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path()).expect("open");
    let schema = Schema::parse(&format!(
        "mutable_max_rows = 2500\n[fields.emb]\ntype = \"dense\"\ndim = {dim}\n"
    ))
    .expect("schema");
    let c = db.create_collection("d", &schema).expect("create");
    let docs = (0..n)
        .map(|i| {
            let mut d = Document {
                id: Some(DocId::Int(i as u64)),
                ..Default::default()
            };
            d.vectors.insert("emb".into(), base[i].clone());
            d
        })
        .collect();
    c.upsert(docs).expect("upsert");
    c.flush().expect("flush");
    // Delete every third document (all in sealed segments, so the graph still links them).
    let victims: Vec<DocId> = (0..n)
        .filter(|i| i % 3 == 0)
        .map(|i| DocId::Int(i as u64))
        .collect();
    c.delete(&victims).expect("delete");
    let queries = gen::clustered(seed + 1, 100, dim, 128, 0.6, true);
    let truth = brute_force_topk(&base, &queries, Metric::Cosine, 10, |i| i % 3 != 0);
    let snap = c.snapshot();
    let found: Vec<Vec<u32>> = queries
        .iter()
        .map(|q| {
            let res = search(&snap, &SearchRequest::new(q.clone(), 10)).expect("search");
            res.hits
                .iter()
                .map(|h| match h.id {
                    DocId::Int(i) => {
                        assert!(i % 3 != 0, "deleted document {i} returned");
                        i as u32
                    }
                    DocId::Str(_) => u32::MAX,
                })
                .collect()
        })
        .collect();
    let r = mean_recall(&found, &truth, 10);
    println!("recall@10 after deleting 1/3: {r:.4}");
    assert!(r >= 0.95, "recall {r}");
}
