//! `quiver eval --adapter NEW`: model migration figures (issue 17). The old and new rows are exact
//! scans, so they must equal `quiver eval --mode dense-exact` of each model (the engine's own
//! path, scored against pytrec_eval in `eval.rs`); the adapter rows are checked for shape and
//! range; bad input fails with a reason.
//!
//! Needs ../shared/data/adi and the models (`./x setup`).

mod common;

use common::{quiver, require_model};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_quiver");

fn adi() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/adi")
}

fn eval(db: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--db")
        .arg(db)
        .arg("eval")
        .arg(adi())
        .args(args)
        .arg("--json")
        .output()
        .expect("run quiver")
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    serde_json::from_str(s.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {s}"))
}

#[test]
fn old_and_new_rows_equal_the_exact_dense_eval_of_each_model() {
    require_model("all-MiniLM-L6-v2");
    require_model("potion-base-8M");
    let db = tempfile::tempdir().expect("tempdir");
    let (old, new) = ("potion-base-8M", "all-MiniLM-L6-v2");
    let v = json(&eval(
        db.path(),
        &["--model", old, "--adapter", new, "--samples", "20,82,500"],
    ));
    let rows = v["rows"].as_array().expect("rows");
    // (a), (b), then three adapters per sample size; 500 is cut to the 82 documents.
    assert_eq!(rows.len(), 2 + 3 * 3, "{v}");
    let exact = |model: &str| -> Value {
        json(&eval(
            db.path(),
            &["--model", model, "--mode", "dense-exact"],
        ))
    };
    let (eo, en) = (exact(old), exact(new));
    for (row, e) in [(&rows[0], &eo), (&rows[1], &en)] {
        for (mine, theirs) in [("ndcg_at_10", "ndcg@10"), ("recall_at_100", "recall@100")] {
            let (a, b) = (
                row[mine].as_f64().expect("f64"),
                e[theirs].as_f64().expect("f64"),
            );
            assert!(
                (a - b).abs() < 1e-9,
                "{}: {mine} {a} vs dense-exact {b}",
                row["what"]
            );
        }
    }
    let kinds: Vec<&str> = rows[2..]
        .iter()
        .map(|r| r["adapter"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds[..3], ["procrustes", "ridge", "relative"]);
    let sizes: Vec<u64> = rows[2..]
        .iter()
        .map(|r| r["sample"].as_u64().expect("n"))
        .collect();
    assert_eq!(sizes, [20, 20, 20, 82, 82, 82, 82, 82, 82]);
    let b = rows[1]["ndcg_at_10"].as_f64().expect("f64");
    let a = rows[0]["ndcg_at_10"].as_f64().expect("f64");
    for r in &rows[2..] {
        let n = r["ndcg_at_10"].as_f64().expect("f64");
        assert!((0.0..=1.0).contains(&n), "{r}");
        let frac = r["fraction_of_new_recovered"].as_f64().expect("f64");
        assert!((frac - n / b).abs() < 1e-12, "{r}");
        assert_eq!(r["compatible"].as_bool(), Some(n >= a), "{r}");
    }
    assert_eq!(v["documents"], 82);
    assert_eq!(v["old_dim"], 256);
    assert_eq!(v["new_dim"], 384);
}

#[test]
fn bad_input_fails_with_a_reason() {
    require_model("potion-base-8M");
    let db = tempfile::tempdir().expect("tempdir");
    let out = eval(
        db.path(),
        &[
            "--model",
            "potion-base-8M",
            "--adapter",
            "no-such-model-xyz",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-model-xyz"), "{err}");
    let out = eval(
        db.path(),
        &[
            "--model",
            "potion-base-8M",
            "--adapter",
            "potion-base-8M",
            "--samples",
            "0",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--samples"), "{err}");
    assert!(
        std::fs::read_dir(db.path()).expect("db").next().is_none(),
        "nothing is written to --db"
    );
}

/// `quiver adapt`: an ADI collection embedded by all-MiniLM-L6-v2 gets a potion-base-8M query
/// adapter (384 vs 256 dimensions: ridge by default; Procrustes refused with fewer documents than
/// dimensions); `collection info`
/// lists it, text searches go through it (their scores differ from the field's own model's),
/// `--remove` takes it away; bad methods fail and store nothing.
#[test]
fn adapt_command_stores_an_adapter_that_text_searches_use() {
    require_model("all-MiniLM-L6-v2");
    require_model("potion-base-8M");
    let work = tempfile::tempdir().expect("tempdir");
    let db = work.path().join("db");
    let schema = r#"{"fields": {"emb": {"type": "dense", "dim": 384, "metric": "cosine",
        "model": "all-MiniLM-L6-v2", "embed": ["title", "text"]}}}"#;
    json(&quiver(
        &db,
        &[
            "collection",
            "create",
            "c",
            "--schema-json",
            schema,
            "--json",
        ],
    ));
    let corpus = std::fs::read_to_string(adi().join("corpus.jsonl")).expect("corpus");
    let docs: String = corpus
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("line");
            let d = serde_json::json!({"id": v["_id"], "payload": {"title": v["title"], "text": v["text"]}});
            format!("{d}\n")
        })
        .collect();
    let path = work.path().join("docs.jsonl");
    std::fs::write(&path, docs).expect("write");
    json(&quiver(
        &db,
        &["ingest", "c", path.to_str().expect("path"), "--json"],
    ));
    let search = |db: &Path| {
        json(&quiver(
            db,
            &["search", "c", "computer indexing", "-k", "5", "--json"],
        ))
    };
    let own = search(&db);

    for (method, want) in [("relative", "relative"), ("bogus", "bogus")] {
        let out = quiver(
            &db,
            &[
                "adapt",
                "c",
                "--field",
                "emb",
                "--from-model",
                "potion-base-8M",
                "--method",
                method,
            ],
        );
        assert!(!out.status.success(), "--method {method} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{err}");
    }
    let info = json(&quiver(&db, &["collection", "info", "c", "--json"]));
    assert_eq!(info["adapters"], serde_json::json!([]), "{info}");

    let a = json(&quiver(
        &db,
        &[
            "adapt",
            "c",
            "--field",
            "emb",
            "--from-model",
            "potion-base-8M",
            "--json",
        ],
    ));
    println!("{a}");
    assert_eq!(a["kind"], "ridge");
    assert_eq!(
        (a["d_in"].as_u64(), a["d_out"].as_u64()),
        (Some(256), Some(384))
    );
    assert_eq!(a["sample"], 82);
    // 74 training documents are fewer than potion's 256 dimensions: no orthogonal map.
    let out = quiver(
        &db,
        &[
            "adapt",
            "c",
            "--field",
            "emb",
            "--from-model",
            "potion-base-8M",
            "--method",
            "procrustes",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 256 documents"), "{err}");
    let p = json(&quiver(
        &db,
        &[
            "adapt",
            "c",
            "--field",
            "emb",
            "--from-model",
            "potion-base-8M",
            "--sample",
            "60",
            "--json",
        ],
    ));
    println!("{p}");
    assert_eq!(p["sample"], 60);
    let info = json(&quiver(&db, &["collection", "info", "c", "--json"]));
    assert_eq!(
        info["adapters"][0]["sample"], 60,
        "the second fit replaces the first"
    );
    let mapped = search(&db);
    let ids = |v: &Value| -> Vec<Value> {
        v["hits"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| h["id"].clone())
            .collect()
    };
    println!(
        "own model: {:?}\nthrough the adapter: {:?}",
        ids(&own),
        ids(&mapped)
    );
    assert_eq!(mapped["hits"].as_array().map(Vec::len), Some(5));
    assert_ne!(
        mapped["hits"][0]["score"], own["hits"][0]["score"],
        "the query was not embedded by the adapter's model"
    );
    let r = json(&quiver(
        &db,
        &["adapt", "c", "--field", "emb", "--remove", "--json"],
    ));
    assert_eq!(r["removed"], true);
    assert_eq!(search(&db)["hits"], own["hits"]);
}
