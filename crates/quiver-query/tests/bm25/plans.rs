//! BM25 sources inside query plans, and text rows in sealed segments' row order.

use super::common::*;

// ---------------------------------------------------------------------------------------------
// BM25 inside query plans.

#[test]
fn plans_run_bm25_sources_and_fuse_them_like_the_hit_functions() {
    use quiver_query::plan::{execute, Fusion, Norm, Plan};
    use quiver_query::{fuse_hits, search, SearchRequest, Strategy};
    let data = load("adi");
    let seed = 0xB325_u64;
    println!("seed = {seed}");
    // Deterministic pseudo-random 8-d vectors per document (xorshift), so the dense list is
    // unrelated to the text and fusion has something to do.
    let mut x = seed;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 2000) as f32 / 1000.0 - 1.0
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let schema = schema(
        40,
        "[fields.emb]\ntype = \"dense\"\ndim = 8\nmetric = \"cosine\"\nindex = { type = \"flat\" }\n",
    );
    let (_db, c) = open_collection(dir.path(), "c", &schema);
    let docs: Vec<Document> = data
        .docs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut doc = doc(i, d);
            doc.vectors
                .insert("emb".into(), (0..8).map(|_| next()).collect());
            doc
        })
        .collect();
    for chunk in docs.chunks(30) {
        c.upsert(chunk.to_vec()).expect("upsert");
        c.wait_for_maintenance().expect("settle");
    }
    let snap = c.snapshot();
    assert!(!c.info().segments.is_empty() && c.info().mutable_rows > 0);
    let q: Vec<f32> = (0..8).map(|_| next()).collect();
    let even = json!({"field": "parity", "eq": "even"});
    for (qi, (_, text)) in data.queries.iter().take(10).enumerate() {
        let filter = if qi % 2 == 0 {
            Some(even.clone())
        } else {
            None
        };
        // A plan with one bm25 source gives bm25_search's hits.
        let mut p = json!({"prefetch": [{"bm25": {"field": "body", "text": text}, "limit": 10}], "limit": 10});
        if let Some(f) = &filter {
            p["filter"] = f.clone();
        }
        let plan = Plan::from_json(&p.to_string()).expect("plan");
        let got = execute(&snap, &plan, None).expect("execute");
        let mut req = Bm25Request::new(text.clone(), 10);
        req.filter = filter
            .as_ref()
            .map(|f| Filter::from_json(f).expect("filter"));
        let want = bm25_search(&snap, &req).expect("bm25");
        let pair = |h: &Hit| (id_str(h), h.score);
        let mut a: Vec<_> = got.hits.iter().map(pair).collect();
        let mut b: Vec<_> = want.hits.iter().map(pair).collect();
        // Ties at the cut may pick different documents; compare where scores differ from the last.
        let last = b.last().map_or(0.0, |x| x.1);
        a.retain(|x| x.1 != last);
        b.retain(|x| x.1 != last);
        assert_eq!(a, b, "{text}");
        assert!(got.explain[0].stage.contains("bm25 body"));

        // Hybrid: dense + bm25 fused inside the plan == fuse_hits on the two lists.
        for (fusion, fjson) in [
            (
                Fusion::Rrf {
                    k: 60.0,
                    weights: vec![1.0, 0.7],
                },
                json!({"rrf": {"k": 60, "weights": [1.0, 0.7]}}),
            ),
            (
                Fusion::Score {
                    norm: Norm::Zscore,
                    weights: vec![],
                },
                json!({"score": {"norm": "zscore"}}),
            ),
        ] {
            let mut p = json!({"prefetch": [
                {"dense": {"field": "emb", "vector": q, "exact": true}, "limit": 20},
                {"bm25": {"text": text}, "limit": 100}],
                "fusion": fjson, "limit": 100});
            if let Some(f) = &filter {
                p["filter"] = f.clone();
            }
            let plan = Plan::from_json(&p.to_string()).expect("plan");
            let got = execute(&snap, &plan, None).expect("execute");
            let mut dreq = SearchRequest::new(q.clone(), 20);
            dreq.strategy = Strategy::Exact;
            dreq.filter = req.filter.clone();
            let dense = search(&snap, &dreq).expect("dense");
            let mut breq = req.clone();
            // Every match (ADI has 82 documents), so no tie is cut differently.
            breq.k = 100;
            let bm25 = bm25_search(&snap, &breq).expect("bm25");
            // Documents tied in score within a list may swap ranks (the plan breaks ties by row
            // location, search by id); RRF scores are compared for the others.
            let mut tied = HashSet::new();
            for list in [&dense.hits, &bm25.hits] {
                for w in list.windows(2) {
                    if w[0].score == w[1].score {
                        tied.insert(id_str(&w[0]));
                        tied.insert(id_str(&w[1]));
                    }
                }
            }
            let want = fuse_hits(&[dense.hits, bm25.hits], &fusion, 100).expect("fuse");
            let as_map = |hits: &[Hit]| -> BTreeMap<String, f32> {
                hits.iter().map(|h| (id_str(h), h.score)).collect()
            };
            let (g, w) = (as_map(&got.hits), as_map(&want));
            assert_eq!(
                g.keys().collect::<Vec<_>>(),
                w.keys().collect::<Vec<_>>(),
                "{text}"
            );
            let rank_based = matches!(fusion, Fusion::Rrf { .. });
            let mut compared = 0;
            for (id, s) in &g {
                if rank_based && tied.contains(id) {
                    continue;
                }
                assert!(
                    (s - w[id]).abs() < 1e-5,
                    "{text}: {id}: {s} vs {} ({fusion:?})",
                    w[id]
                );
                compared += 1;
            }
            assert!(
                compared > 10,
                "{text}: only {compared} fused scores compared"
            );
        }
    }
}

#[test]
fn text_rows_follow_the_hnsw_row_order_of_sealed_segments() {
    // Sealed segments store rows in the breadth-first order of the first HNSW graph; the text
    // index must be written in that order too, or hits would carry other documents' ids.
    let data = load("adi");
    let dir = tempfile::tempdir().expect("tempdir");
    let schema = schema(
        100_000,
        "[fields.emb]\ntype = \"dense\"\ndim = 4\nmetric = \"l2\"\nindex = { type = \"hnsw\", m = 4, ef_construction = 20 }\n",
    );
    let (_db, c) = open_collection(dir.path(), "c", &schema);
    let docs: Vec<Document> = data
        .docs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut doc = doc(i, d);
            let x = (i * 37 % 82) as f32;
            doc.vectors
                .insert("emb".into(), vec![x, (i % 5) as f32, -x, 1.0]);
            doc
        })
        .collect();
    c.upsert(docs).expect("upsert");
    c.flush().expect("flush");
    let snap = c.snapshot();
    let seg = snap.segment(0);
    let moved = (0..seg.rows() as u32)
        .filter(|&r| seg.id(r) != DocId::Str(data.docs[r as usize].0.clone()))
        .count();
    println!("{moved} of {} rows moved by the HNSW order", seg.rows());
    assert!(moved > 0, "the HNSW order kept every row in place");
    let oracle = Oracle::new(&data.docs, AnalyzerSpec::default(), Bm25Params::default());
    for (_, q) in &data.queries {
        let got = bm25_search(&snap, &Bm25Request::new(q.clone(), 10)).expect("search");
        let want = oracle.scores(q, &|_| true, &|_| true);
        assert_matches(&got.hits, &want, 10, &format!("hnsw-ordered {q:?}"));
    }
}
