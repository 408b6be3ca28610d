//! `quiver query` (JSON plans), `quiver search --funnel`, and the tier figures of
//! `collection info`, end to end through the binary.

use serde_json::{json, Value};
use std::io::Write;

mod common;
use common::{ok_json, run};

#[test]
fn plans_funnel_and_tiers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let schema = dir.path().join("schema.toml");
    std::fs::write(
        &schema,
        r#"mutable_max_rows = 300
[fields.emb]
type = "dense"
dim = 8
metric = "cosine"
codecs = [{ type = "binary" }, { type = "int8" }]
[fields.year]
type = "integer"
"#,
    )
    .expect("schema");
    ok_json(&db, &["init"]);
    ok_json(
        &db,
        &[
            "collection",
            "create",
            "c",
            "--schema",
            schema.to_str().expect("utf8"),
        ],
    );
    // Document i points mostly along axis i % 8, with a little of axis (i + 1) % 8.
    let docs = dir.path().join("docs.jsonl");
    let mut f = std::fs::File::create(&docs).expect("create");
    for i in 0..1000usize {
        let mut v = vec![0.05f32; 8];
        v[i % 8] = 1.0;
        v[(i + 1) % 8] = 0.1 + (i as f32) / 2000.0;
        writeln!(
            f,
            "{}",
            json!({"id": i, "vector": v, "payload": {"year": 2000 + i % 30}})
        )
        .expect("write");
    }
    drop(f);
    let (ok, _, err) = run(&db, &["ingest", "c", docs.to_str().expect("utf8")]);
    assert!(ok, "{err}");

    let info = ok_json(&db, &["collection", "info", "c"]);
    let tiers = &info["tiers"][0];
    assert_eq!(
        tiers["codecs"],
        json!([["binary/8", 1], ["int8/8", 8]]),
        "{info}"
    );
    assert!(
        tiers["ram_codes"].as_u64().expect("ram_codes") >= 900 * 9,
        "{info}"
    );

    // A plan from a file, with --explain.
    let plan = dir.path().join("plan.json");
    std::fs::write(
        &plan,
        json!({
            "prefetch": [{"dense": {"vector": [0, 0, 1, 0.3, 0, 0, 0, 0], "codec": "binary"}, "limit": 200}],
            "rescore": [{"dense": {"precision": "int8"}, "limit": 50}, {"dense": {}, "limit": 5}],
            "filter": {"field": "year", "lt": 2010},
            "limit": 5
        })
        .to_string(),
    )
    .expect("plan");
    let r = ok_json(
        &db,
        &["query", "c", plan.to_str().expect("utf8"), "--explain"],
    );
    let hits = r["hits"].as_array().expect("hits");
    assert_eq!(hits.len(), 5, "{r}");
    for h in hits {
        let id = h["id"].as_u64().expect("int id") as usize;
        assert_eq!(id % 8, 2, "nearest documents point along axis 2: {r}");
        assert!(h["payload"]["year"].as_i64().expect("year") < 2010, "{r}");
    }
    let stages: Vec<&str> = r["explain"]
        .as_array()
        .expect("explain")
        .iter()
        .map(|s| s["stage"].as_str().expect("stage"))
        .collect();
    assert_eq!(stages.len(), 3, "{stages:?}");
    assert!(
        stages[0].contains("binary") && stages[1].contains("int8"),
        "{stages:?}"
    );

    // The funnel preset gives the exact answer here, with the same stages.
    let vector = "[0, 0, 1, 0.3, 0, 0, 0, 0]";
    let exact = ok_json(
        &db,
        &["search", "c", "--vector", vector, "-k", "5", "--exact"],
    );
    let funnel = ok_json(
        &db,
        &[
            "search",
            "c",
            "--vector",
            vector,
            "-k",
            "5",
            "--funnel",
            "--explain",
        ],
    );
    let ids = |v: &Value| -> Vec<u64> {
        v["hits"]
            .as_array()
            .expect("hits")
            .iter()
            .map(|h| h["id"].as_u64().expect("id"))
            .collect()
    };
    assert_eq!(ids(&exact), ids(&funnel), "funnel vs exact");
    for (a, b) in exact["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .zip(funnel["hits"].as_array().expect("hits"))
    {
        let (a, b) = (
            a["score"].as_f64().expect("score"),
            b["score"].as_f64().expect("score"),
        );
        assert!((a - b).abs() < 1e-5, "scores {a} vs {b}");
    }
    assert_eq!(funnel["explain"].as_array().expect("explain").len(), 3);

    // Bad plans are refused with the part that is wrong.
    std::fs::write(
        &plan,
        r#"{"prefetch": [{"dense": {"vector": [1, 0, 0, 0, 0, 0, 0, 0], "codec": "pq"}}]}"#,
    )
    .expect("plan");
    let (ok, _, err) = run(&db, &["query", "c", plan.to_str().expect("utf8")]);
    assert!(!ok && err.contains("no pq codes"), "{err}");
    std::fs::write(&plan, r#"{"prefetch": [], "limit": 3}"#).expect("plan");
    let (ok, _, err) = run(&db, &["query", "c", plan.to_str().expect("utf8")]);
    assert!(!ok && err.contains("at least one source"), "{err}");
}
