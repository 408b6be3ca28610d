//! The engine API end to end, with no code from the CLI: a collection with a dense MiniLM field,
//! a multi (token-vector) field on the same model and a BM25 text field; plain documents (the
//! first 120 of SciFact) upserted without vectors; dense, bm25, hybrid and multi queries with a
//! filter, each checked against an oracle computed here from the stored vectors.
//!
//! Needs all-MiniLM-L6-v2 in the model cache (`./x setup`); a missing model fails the test.

mod common;

use quiver::embedding::PoolEncoder;
use quiver::{Database, DocId, Document, EngineError, IdLookup, Mode, ModelPool, Query, Schema};
use serde_json::json;
use std::sync::Arc;

const MODEL: &str = "all-MiniLM-L6-v2";
const N: usize = 120;

fn pool() -> Arc<ModelPool> {
    common::pool(&[MODEL])
}

fn scifact_docs() -> Vec<Document> {
    let docs = common::scifact_docs(N);
    assert_eq!(docs.len(), N, "SciFact corpus has fewer than {N} documents");
    docs
}

const SCHEMA: &str = r#"{"fields": {
  "emb": {"type": "dense", "dim": 384, "metric": "cosine", "model": "all-MiniLM-L6-v2", "embed": ["title", "text"]},
  "tok": {"type": "multi", "dim": 384, "metric": "cosine", "model": "all-MiniLM-L6-v2", "embed": ["title", "text"]},
  "body": {"type": "text", "source": ["title", "text"]},
  "year": {"type": "integer"}
}}"#;

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn year_ok(d: &quiver::StoredDoc) -> bool {
    d.payload["year"].as_i64().unwrap() <= 2019
}

fn ids(hits: &[quiver::Hit]) -> Vec<DocId> {
    hits.iter().map(|h| h.id.clone()).collect()
}

/// Asserts two rankings agree: equal scores (to `tol`) position by position, and equal ids
/// wherever the score is not tied with a neighbour.
fn same_ranking(got: &[(DocId, f32)], want: &[(DocId, f32)], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for i in 0..got.len() {
        assert!(
            (got[i].1 - want[i].1).abs() <= tol,
            "{what}: rank {i}: score {} vs oracle {}",
            got[i].1,
            want[i].1
        );
        let tied = (i > 0 && (want[i - 1].1 - want[i].1).abs() <= tol)
            || (i + 1 < want.len() && (want[i + 1].1 - want[i].1).abs() <= tol);
        if !tied {
            assert_eq!(got[i].0, want[i].0, "{what}: rank {i}");
        }
    }
}

#[test]
fn engine_api_embeds_once_and_answers_every_mode() {
    let pool = pool();
    let dir = tempfile::tempdir().unwrap();
    let db = common::open(dir.path(), &pool);
    let c = db
        .create_collection("scifact", &Schema::parse(SCHEMA).unwrap())
        .unwrap();
    let docs = scifact_docs();

    // Upsert in two batches with a seal between them: sealed and mutable segments both answer.
    let before = pool.loaded();
    assert!(before.is_empty(), "no model loaded before the first upsert");
    c.upsert(docs[..N / 2].to_vec()).unwrap();
    c.flush().unwrap();
    c.upsert(docs[N / 2..].to_vec()).unwrap();
    assert_eq!(c.count(None).unwrap(), N);
    let stats = pool.loaded();
    assert_eq!(stats.len(), 1, "one model: {stats:?}");
    // One forward pass per text feeds both the dense and the multi field.
    assert_eq!(
        stats[0].1.texts, N as u64,
        "texts encoded for {N} documents with a dense and a multi field on one model"
    );
    eprintln!("model work for {N} documents: {:?}", stats[0].1);

    // The single pass gives what separate passes give: dense = pooled vector, multi = tokens.
    let model = pool.get(MODEL).unwrap();
    let probe = c
        .get(&DocId::Str("4983".into()))
        .unwrap()
        .expect("SciFact doc 4983");
    let text = format!(
        "{}\n\n{}",
        probe.payload["title"].as_str().unwrap(),
        probe.payload["text"].as_str().unwrap()
    );
    let opts = quiver::embed::EmbedOptions::default();
    let pooled = model.embed(&[text.as_str()], &opts).unwrap();
    assert!(dot(&probe.vectors["emb"], pooled.row(0)) >= 0.9999);
    let tokens = model.embed_tokens(&[text.as_str()], &opts).unwrap();
    let n_real = tokens[0].special.iter().filter(|s| !**s).count();
    assert_eq!(probe.multi["tok"].len(), n_real, "special tokens dropped");

    let filter = json!({"field": "year", "lte": 2019});
    let all: Vec<quiver::StoredDoc> = docs
        .iter()
        .map(|d| c.get(d.id.as_ref().unwrap()).unwrap().unwrap())
        .collect();
    let query_text = "white matter development in newborn brains measured with MRI";

    // Dense, exact: the oracle is brute-force cosine over the stored vectors.
    let qv = c.embed_query("emb", query_text).unwrap();
    let mut want: Vec<(DocId, f32)> = all
        .iter()
        .filter(|d| year_ok(d))
        .map(|d| (d.id.clone(), dot(&qv, &d.vectors["emb"])))
        .collect();
    want.sort_by(|a, b| b.1.total_cmp(&a.1));
    want.truncate(10);
    let q = Query {
        exact: true,
        ..Query::text(query_text).with_filter(filter.clone())
    };
    let res = c.query(&q).unwrap();
    assert_eq!(res.mode, Mode::Dense);
    let got: Vec<(DocId, f32)> = res.hits.iter().map(|h| (h.id.clone(), h.score)).collect();
    same_ranking(&got, &want, 1e-5, "dense exact");
    assert_eq!(
        res.hits[0].id,
        DocId::Str("4983".into()),
        "the doc the query paraphrases"
    );
    // The planner's own choice (graph or scan per segment) finds the same top hits here.
    let res = c
        .query(&Query::text(query_text).with_filter(filter.clone()))
        .unwrap();
    assert_eq!(
        ids(&res.hits[..5]),
        want[..5].iter().map(|w| w.0.clone()).collect::<Vec<_>>()
    );

    // BM25 with the filter: every hit passes it, and the paraphrased doc is first.
    let bm25 = c
        .query(
            &Query::text(query_text)
                .with_mode(Mode::Bm25)
                .with_filter(filter.clone()),
        )
        .unwrap();
    assert_eq!(bm25.mode, Mode::Bm25);
    assert!(!bm25.hits.is_empty());
    for h in &bm25.hits {
        assert!(
            year_ok(&c.get(&h.id).unwrap().unwrap()),
            "bm25 hit {} fails the filter",
            h.id
        );
    }
    assert_eq!(bm25.hits[0].id, DocId::Str("4983".into()));

    // Hybrid = RRF (k = 60) of the dense and bm25 lists, recomputed here from those lists.
    let depth = 100;
    let dense_list = c
        .query(&Query {
            exact: true,
            ..Query::text(query_text)
                .with_filter(filter.clone())
                .with_limit(depth)
        })
        .unwrap();
    let bm25_list = c
        .query(
            &Query::text(query_text)
                .with_mode(Mode::Bm25)
                .with_filter(filter.clone())
                .with_limit(depth),
        )
        .unwrap();
    let mut rrf: std::collections::HashMap<DocId, f32> = Default::default();
    for list in [&dense_list.hits, &bm25_list.hits] {
        for (r, h) in list.iter().enumerate() {
            *rrf.entry(h.id.clone()).or_default() += 1.0 / (60.0 + (r + 1) as f32);
        }
    }
    let mut want: Vec<(DocId, f32)> = rrf.into_iter().collect();
    want.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    want.truncate(10);
    let hybrid = c
        .query(&Query {
            exact: true,
            candidates: Some(depth),
            ..Query::text(query_text)
                .with_mode(Mode::Hybrid)
                .with_filter(filter.clone())
        })
        .unwrap();
    let got: Vec<(DocId, f32)> = hybrid
        .hits
        .iter()
        .map(|h| (h.id.clone(), h.score))
        .collect();
    same_ranking(&got, &want, 1e-6, "hybrid rrf");

    // Multi, exact MaxSim: the oracle sums, over the query's token vectors, the best inner
    // product with each stored token vector.
    let tok = c.schema().multi("tok").unwrap();
    // Cosine multi fields score unit vectors: the stored ones are normalised at upsert, the
    // query's at search time.
    let qt: Vec<Vec<f32>> = PoolEncoder::new(pool.clone())
        .multi(&tok, query_text)
        .unwrap()
        .into_iter()
        .map(|v| {
            let n = dot(&v, &v).sqrt();
            v.iter().map(|x| x / n).collect()
        })
        .collect();
    let mut want: Vec<(DocId, f32)> = all
        .iter()
        .filter(|d| year_ok(d))
        .map(|d| {
            let s: f32 = qt
                .iter()
                .map(|q| {
                    d.multi["tok"]
                        .iter()
                        .map(|v| dot(q, v))
                        .fold(f32::NEG_INFINITY, f32::max)
                })
                .sum();
            (d.id.clone(), s)
        })
        .collect();
    want.sort_by(|a, b| b.1.total_cmp(&a.1));
    want.truncate(10);
    let multi = c
        .query(&Query {
            exact: true,
            multi_field: Some("tok".into()),
            ..Query::text(query_text).with_filter(filter.clone())
        })
        .unwrap();
    assert_eq!(multi.mode, Mode::Multi);
    let got: Vec<(DocId, f32)> = multi.hits.iter().map(|h| (h.id.clone(), h.score)).collect();
    same_ranking(&got, &want, 1e-3, "multi exact maxsim");
    // MUVERA candidates + exact rerank agree with brute force at the top here.
    let muvera = c
        .query(&Query {
            multi_field: Some("tok".into()),
            ..Query::text(query_text).with_filter(filter.clone())
        })
        .unwrap();
    assert_eq!(muvera.hits[0].id, want[0].0);

    // Queries are plain JSON too.
    let q = Query::from_json(&format!(
        r#"{{"text": {query_text:?}, "mode": "bm25", "limit": 3, "filter": {filter}}}"#
    ))
    .unwrap();
    assert_eq!(ids(&c.query(&q).unwrap().hits), ids(&bm25.hits[..3]));

    // Ids of digits stored as strings are found from a bare argument or a JSON string.
    assert_eq!(
        c.lookup_id("4983"),
        IdLookup::Found(DocId::Str("4983".into()))
    );
    assert_eq!(
        c.lookup_id("\"4983\""),
        IdLookup::Found(DocId::Str("4983".into()))
    );
    assert_eq!(
        c.lookup_id("99999999"),
        IdLookup::Missing(DocId::Int(99999999))
    );

    // Bad input is rejected with the part that is wrong, and nothing is written.
    let mut bad = docs[0].clone();
    bad.id = Some(DocId::Int(1));
    bad.payload.remove("title");
    bad.payload.remove("text");
    let e = c.upsert(vec![docs[1].clone(), bad]).unwrap_err();
    match &e {
        EngineError::Document { index, field, .. } => {
            assert_eq!((*index, field.as_deref()), (1, Some("emb")), "{e}");
        }
        other => panic!("expected a document error, got {other}"),
    }
    assert_eq!(c.count(None).unwrap(), N);
    let e = c
        .query(&Query {
            shortlist: Some(10),
            ..Query::text("x").with_mode(Mode::Bm25)
        })
        .unwrap_err();
    assert!(e.to_string().contains("`shortlist` does not apply"), "{e}");
}

#[test]
fn read_only_handles_refuse_writes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(dir.path()).unwrap();
        db.create_collection(
            "v",
            &Schema::parse(r#"{"fields": {"emb": {"type": "dense", "dim": 2, "metric": "dot"}}}"#)
                .unwrap(),
        )
        .unwrap();
    }
    let db = Database::open_read_only(dir.path()).unwrap();
    let c = db.collection("v").unwrap();
    let mut d = Document {
        id: Some(DocId::Int(1)),
        ..Default::default()
    };
    d.vectors.insert("emb".into(), vec![1.0, 0.0]);
    assert!(matches!(c.upsert(vec![d]), Err(EngineError::ReadOnly(_))));
    assert!(matches!(
        c.delete(&[DocId::Int(1)]),
        Err(EngineError::ReadOnly(_))
    ));
    assert!(matches!(
        db.drop_collection("v"),
        Err(EngineError::ReadOnly(_))
    ));
    assert_eq!(c.count(None).unwrap(), 0);
    assert!(Database::open_read_only(dir.path().join("nope")).is_err());
}

/// One tie-break rule (score, then document id) for every mode: the same documents give the same
/// ranked (id, score) lists whether they sit in the mutable segment, in one sealed segment or
/// spread over several. The texts come from a six-word vocabulary, so BM25 and RRF produce many
/// exact ties — the case where a tie-break by storage location would differ between layouts.
/// Full rankings (limit 300 = every document) must be identical; at a cut (limit 40) the score
/// sequence must be identical, while which of several documents tied exactly at the cut is kept
/// still follows each segment's own cut (per-segment top-k breaks ties by row; one reader per
/// segment is the readers issue's work).
#[test]
fn results_do_not_depend_on_segmentation() {
    use rand::{Rng, SeedableRng};
    let seed = 0x5e9_u64;
    eprintln!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let words = ["quokka", "kea", "axolotl", "smile", "island", "parrot"];
    let docs: Vec<Document> = (0..300u64)
        .map(|i| {
            let mut d = Document {
                id: Some(if i % 2 == 0 {
                    DocId::Int(i)
                } else {
                    DocId::Str(format!("s{i}"))
                }),
                ..Default::default()
            };
            let n = rng.random_range(1..4);
            let text: Vec<&str> = (0..n)
                .map(|_| words[rng.random_range(0..words.len())])
                .collect();
            d.payload.insert("text".into(), json!(text.join(" ")));
            d.payload.insert("g".into(), json!(i % 3));
            // Coarse vectors: many exact dense ties too.
            let v: Vec<f32> = (0..4).map(|_| rng.random_range(0..3) as f32).collect();
            d.vectors.insert("emb".into(), v);
            d
        })
        .collect();
    let schema = Schema::parse(
        r#"{"fields": {"emb": {"type": "dense", "dim": 4, "metric": "dot"},
                       "body": {"type": "text", "source": ["text"]}, "g": {"type": "integer"}}}"#,
    )
    .unwrap();
    let layouts: [&[usize]; 3] = [&[300], &[300, 0], &[70, 130, 100]];
    let mut answers: Vec<Vec<Vec<(DocId, f32)>>> = Vec::new();
    for (li, layout) in layouts.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path()).unwrap();
        let c = db.create_collection("c", &schema).unwrap();
        let mut start = 0;
        for &n in layout.iter() {
            if n == 0 {
                continue;
            }
            c.upsert(docs[start..start + n].to_vec()).unwrap();
            start += n;
            if li > 0 {
                c.flush().unwrap();
            }
        }
        let segments = c.info().segments.len();
        eprintln!(
            "layout {layout:?}: {segments} sealed segments, {} mutable rows",
            c.info().mutable_rows
        );
        let filter = json!({"field": "g", "lte": 1});
        let mut queries = Vec::new();
        for limit in [300, 40] {
            queries.extend([
                Query::text("quokka smile")
                    .with_mode(Mode::Bm25)
                    .with_limit(limit),
                Query {
                    vector: Some(vec![1.0, 2.0, 0.0, 1.0]),
                    exact: true,
                    candidates: Some(300),
                    ..Query::text("parrot island")
                        .with_mode(Mode::Hybrid)
                        .with_limit(limit)
                },
                Query {
                    exact: true,
                    ..Query::vector(vec![0.0, 1.0, 2.0, 1.0]).with_limit(limit)
                },
                Query::text("kea")
                    .with_mode(Mode::Bm25)
                    .with_filter(filter.clone())
                    .with_limit(limit),
            ]);
        }
        answers.push(
            queries
                .iter()
                .map(|q| {
                    c.query(q)
                        .unwrap()
                        .hits
                        .into_iter()
                        .map(|h| (h.id, h.score))
                        .collect()
                })
                .collect(),
        );
    }
    for q in 0..answers[0].len() {
        // BM25 and the coarse dense vectors tie a lot; hybrid's inputs do (its RRF ranks come
        // from them), its fused scores need not.
        let ties = answers[0][q]
            .windows(2)
            .filter(|w| w[0].1 == w[1].1)
            .count();
        assert!(
            q % 4 == 1 || ties > 0,
            "query {q}: the test needs ties to mean anything"
        );
        for l in 1..answers.len() {
            if q < 4 {
                assert_eq!(
                    answers[l][q], answers[0][q],
                    "query {q}: layout {l} differs from layout 0"
                );
            } else {
                let scores = |a: &Vec<(DocId, f32)>| a.iter().map(|x| x.1).collect::<Vec<_>>();
                assert_eq!(
                    scores(&answers[l][q]),
                    scores(&answers[0][q]),
                    "query {q}: layout {l}"
                );
            }
        }
    }
}

/// A precision suffix on a field's model (`all-MiniLM-L6-v2:int8`) loads that model at that
/// precision beside the f32 one, each field embedded by its own; the int8 vectors stay close
/// to the f32 ones (cosine >= 0.99, the tolerance quiver-embed's precision tests hold int8 to)
/// and a text query on the int8 field finds what its own vectors rank first.
#[test]
fn precision_suffix_gives_a_model_of_its_own() {
    let pool = pool();
    let dir = tempfile::tempdir().unwrap();
    let db = common::open(dir.path(), &pool);
    let schema = Schema::parse(
        r#"{"fields": {
      "exact": {"type": "dense", "dim": 384, "model": "all-MiniLM-L6-v2", "embed": ["title", "text"]},
      "quant": {"type": "dense", "dim": 384, "model": "all-MiniLM-L6-v2:int8", "embed": ["title", "text"]}
    }}"#,
    )
    .unwrap();
    let c = db.create_collection("p", &schema).unwrap();
    let docs = common::scifact_docs(30);
    c.upsert(docs).unwrap();
    let loaded: Vec<String> = pool.loaded().into_iter().map(|(n, _)| n).collect();
    assert_eq!(loaded, ["all-MiniLM-L6-v2", "all-MiniLM-L6-v2:int8"]);
    let int8 = pool.get("all-MiniLM-L6-v2:int8").unwrap();
    assert_eq!(int8.info().precision, quiver::embed::Precision::Int8);
    // `m:f32` is `m`: one copy of the weights, not a second model.
    let f32_named = pool.get("all-MiniLM-L6-v2:f32").unwrap();
    assert!(Arc::ptr_eq(&f32_named, &pool.get(MODEL).unwrap()));
    assert_eq!(pool.loaded().len(), 2);
    let probe = c
        .get(&DocId::Str("4983".into()))
        .unwrap()
        .expect("doc 4983");
    let cos = dot(&probe.vectors["exact"], &probe.vectors["quant"]);
    assert!(cos >= 0.99, "int8 vs f32 cosine {cos}");
    let mut q = Query::text(probe.payload["title"].as_str().unwrap()).with_mode(Mode::Dense);
    q.field = Some("quant".into());
    let hits = c.query(&q).unwrap().hits;
    assert_eq!(hits[0].id, DocId::Str("4983".into()), "{hits:?}");
}
