//! Collections whose dense field names a model: folder and JSONL ingest compute vectors with
//! all-MiniLM-L6-v2, text queries are embedded with the same model, and `quiver demo` runs.
//! Needs the model in the cache (`./x setup` pulls it); without it each test fails naming
//! `./x setup`.

mod common;

use common::require_model;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_quiver");

fn ok_json(db: &Path, args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .arg("--db")
        .arg(db)
        .args(args)
        .arg("--json")
        .output()
        .expect("run quiver");
    assert!(
        out.status.success(),
        "quiver {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

const SCHEMA: &str = r#"{"fields": {"emb": {"type": "dense", "dim": 384, "metric": "cosine", "model": "all-MiniLM-L6-v2", "embed": ["title", "text"]}, "path": {"type": "keyword"}}}"#;

#[test]
fn folder_and_jsonl_text_ingest_and_text_search() {
    require_model("all-MiniLM-L6-v2");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let notes = dir.path().join("notes");
    std::fs::create_dir_all(notes.join("sub")).expect("mkdir");
    std::fs::write(notes.join("animals.md"), "# Animals\n\nThe quokka is a small marsupial that lives on Rottnest Island.\n\n## Birds\n\nPenguins cannot fly but swim very well.\n").expect("write");
    std::fs::write(
        notes.join("sub/cooking.txt"),
        "To bake bread you need flour, water, salt and yeast. Knead the dough and let it rise.",
    )
    .expect("write");
    std::fs::write(notes.join("ignored.bin"), [0u8, 159, 146, 150]).expect("write");
    ok_json(
        &db,
        &["collection", "create", "notes", "--schema-json", SCHEMA],
    );
    let r = ok_json(&db, &["ingest", "notes", notes.to_str().expect("p")]);
    assert_eq!(r["ingested"], json!(3));
    let hits = ok_json(
        &db,
        &[
            "search",
            "notes",
            "Which animal lives on an island near Perth?",
            "-k",
            "3",
        ],
    );
    assert_eq!(hits["hits"][0]["id"], json!("animals.md#0"), "{hits}");
    let hits = ok_json(
        &db,
        &["search", "notes", "how do I make a loaf?", "-k", "1"],
    );
    assert_eq!(
        hits["hits"][0]["payload"]["path"],
        json!("sub/cooking.txt"),
        "{hits}"
    );

    // JSONL with text in the payload; a document without any text is rejected by line and field.
    let jsonl = dir.path().join("more.jsonl");
    std::fs::write(&jsonl, format!("{}\n{}\n", json!({"id": 1, "payload": {"title": "Rust", "text": "A systems programming language with ownership."}}), json!({"id": 2, "payload": {"title": "", "text": "   "}}))).expect("write");
    let out = Command::new(BIN)
        .arg("--db")
        .arg(&db)
        .args(["ingest", "notes"])
        .arg(&jsonl)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("line 2") && err.contains("no text to embed"),
        "{err}"
    );
    std::fs::write(&jsonl, format!("{}\n", json!({"id": 1, "payload": {"title": "Rust", "text": "A systems programming language with ownership."}}))).expect("write");
    ok_json(&db, &["ingest", "notes", jsonl.to_str().expect("p")]);
    let hits = ok_json(
        &db,
        &[
            "search",
            "notes",
            "borrow checker programming language",
            "-k",
            "1",
        ],
    );
    assert_eq!(hits["hits"][0]["id"], json!(1), "{hits}");
    assert_eq!(ok_json(&db, &["count", "notes"])["count"], json!(4));
}

#[test]
fn demo_answers_from_quivers_own_docs() {
    require_model("all-MiniLM-L6-v2");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let r = ok_json(
        &db,
        &[
            "demo",
            "What happens if the process is killed during ingest?",
        ],
    );
    assert!(r["documents"].as_u64() > Some(10), "{r}");
    // The storage section of ARCHITECTURE.md (crash-safety table) is among the first hits.
    let hits = r["hits"].as_array().expect("hits");
    assert!(
        hits.iter()
            .take(3)
            .any(|h| h["payload"]["path"] == json!("ARCHITECTURE.md")
                && h["payload"]["title"]
                    .as_str()
                    .is_some_and(|t| t.contains("quiver-storage"))),
        "{r}"
    );
    // Running it again replaces the collection rather than duplicating it.
    let again = ok_json(&db, &["demo"]);
    assert_eq!(again["documents"], r["documents"]);
}
