//! `quiver search --mode bm25|hybrid` end to end, and text fields in `collection info`.

use serde_json::{json, Value};
use std::io::Write;

mod common;
use common::{ok_json, run};

fn ids(v: &Value) -> Vec<Value> {
    v["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| h["id"].clone())
        .collect()
}

const SCHEMA: &str = r#"
[fields.emb]
type = "dense"
dim = 2
metric = "cosine"
index = { type = "flat" }

[fields.body]
type = "text"
source = ["title", "text"]

[fields.lang]
type = "keyword"
"#;

#[test]
fn bm25_and_hybrid_search_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let schema = dir.path().join("schema.toml");
    std::fs::write(&schema, SCHEMA).expect("schema");
    ok_json(
        &db,
        &[
            "collection",
            "create",
            "d",
            "--schema",
            schema.to_str().expect("utf8"),
        ],
    );
    let docs = [
        json!({"id": 1, "payload": {"title": "Quokkas", "text": "Quokkas smile on Rottnest island.", "lang": "en"}, "vector": [1.0, 0.0]}),
        json!({"id": 2, "payload": {"title": "Cats", "text": "Cats sleep all day.", "lang": "en"}, "vector": [0.0, 1.0]}),
        json!({"id": 3, "payload": {"title": "Quokka", "text": "Ein Quokka lächelt.", "lang": "de"}, "vector": [0.7, 0.7]}),
        json!({"id": 4, "payload": {"title": "Dogs", "text": "Dogs bark at cats.", "lang": "en"}, "vector": [0.1, 0.9]}),
    ];
    let path = dir.path().join("docs.jsonl");
    let mut f = std::fs::File::create(&path).expect("create");
    for d in &docs {
        writeln!(f, "{d}").expect("write");
    }
    drop(f);
    ok_json(&db, &["ingest", "d", path.to_str().expect("utf8")]);

    let r = ok_json(&db, &["search", "d", "smiling quokka", "--mode", "bm25"]);
    assert_eq!(ids(&r), vec![json!(1), json!(3)], "{r}");
    let r = ok_json(
        &db,
        &[
            "search",
            "d",
            "quokka",
            "--mode",
            "bm25",
            "--filter",
            r#"{"field": "lang", "eq": "de"}"#,
            "--explain",
        ],
    );
    assert_eq!(ids(&r), vec![json!(3)], "{r}");
    assert_eq!(r["mode"], json!("bm25"));
    assert!(
        r["explain"][0]["stage"]
            .as_str()
            .expect("stage")
            .starts_with("prefetch[0] bm25"),
        "{r}"
    );
    // No model on the dense field: a text query defaults to BM25.
    let r = ok_json(&db, &["search", "d", "cats"]);
    assert_eq!(r["mode"], json!("bm25"));
    assert_eq!(ids(&r).len(), 2);

    // Hybrid: the dense list (vector near doc 2) and the BM25 list ("quokka": 1, 3) fused by RRF.
    let r = ok_json(
        &db,
        &[
            "search",
            "d",
            "quokka",
            "--mode",
            "hybrid",
            "--vector",
            "[0.0, 1.0]",
            "-k",
            "4",
            "--explain",
        ],
    );
    let got = ids(&r);
    assert_eq!(got.len(), 4, "{r}");
    // Dense order 2, 4, 3, 1; BM25 order 3, 1 (same tf, doc 3 shorter). RRF (k 60): doc 3
    // 1/63 + 1/61 beats doc 1 (1/64 + 1/62) and doc 2 (1/61, dense only).
    assert_eq!(got[0], json!(3), "{r}");
    // Two sources and their fusion.
    let stages: Vec<&str> = r["explain"]
        .as_array()
        .expect("explain")
        .iter()
        .map(|s| s["stage"].as_str().expect("stage"))
        .collect();
    assert_eq!(stages.len(), 3, "{stages:?}");
    assert!(stages[0].starts_with("prefetch[0] dense"), "{stages:?}");
    assert!(stages[1].starts_with("prefetch[1] bm25"), "{stages:?}");
    assert!(stages[2].starts_with("fusion rrf"), "{stages:?}");
    // Weights: BM25 only.
    let r = ok_json(
        &db,
        &[
            "search",
            "d",
            "quokka",
            "--mode",
            "hybrid",
            "--vector",
            "[0.0, 1.0]",
            "-k",
            "2",
            "--fusion",
            "minmax",
            "--dense-weight",
            "0",
        ],
    );
    let mut top = ids(&r);
    top.sort_by_key(|v| v.as_u64());
    assert_eq!(top, vec![json!(1), json!(3)], "{r}");

    // The same hybrid as a query plan: `quiver query` runs bm25 sources and fuses them.
    let plan = dir.path().join("plan.json");
    std::fs::write(
        &plan,
        json!({"prefetch": [{"dense": {"vector": [0.0, 1.0]}, "limit": 4},
                            {"bm25": {"field": "body", "text": "quokka"}, "limit": 4}],
               "fusion": {"rrf": {"k": 60}}, "limit": 4})
        .to_string(),
    )
    .expect("plan");
    let r = ok_json(&db, &["query", "d", plan.to_str().expect("utf8")]);
    assert_eq!(ids(&r)[0], json!(3), "{r}");

    let info = ok_json(&db, &["collection", "info", "d"]);
    let tf = &info["text_fields"][0];
    assert_eq!(tf["field"], json!("body"));
    assert_eq!(tf["docs"], json!(4));
    assert!(tf["avg_len"].as_f64().expect("avg") > 2.0, "{info}");

    // Errors name the problem.
    let (ok, _, err) = run(
        &db,
        &["search", "d", "x", "--mode", "bm25", "--text-field", "nope"],
    );
    assert!(!ok && err.contains("nope"), "{err}");
    let (ok, _, err) = run(
        &db,
        &["search", "d", "--vector", "[1, 0]", "--mode", "bm25"],
    );
    assert!(!ok && err.contains("`vector` does not apply"), "{err}");
    let (ok, _, err) = run(&db, &["search", "d", "--mode", "bm25"]);
    assert!(!ok && err.contains("query text"), "{err}");
}
