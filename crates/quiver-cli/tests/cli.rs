//! The `quiver` binary end to end: collections, ingest (JSONL and Parquet), search with filters,
//! get/delete/count, `--json` everywhere, and bad input rejected with the line and field named
//! while nothing stored changes.

use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;

mod common;
use common::{ok_json, run};

const SCHEMA: &str = r#"
[fields.emb]
type = "dense"
dim = 3
metric = "cosine"

[fields.year]
type = "integer"

[fields.lang]
type = "keyword"
"#;

fn write_jsonl(path: &Path, lines: &[Value]) {
    let mut f = std::fs::File::create(path).expect("create");
    for l in lines {
        writeln!(f, "{l}").expect("write");
    }
}

#[test]
fn collection_lifecycle_ingest_search_get_delete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    assert_eq!(ok_json(&db, &["init"])["created"], json!(true));
    let schema = dir.path().join("schema.toml");
    std::fs::write(&schema, SCHEMA).expect("schema");
    ok_json(
        &db,
        &[
            "collection",
            "create",
            "docs",
            "--schema",
            schema.to_str().expect("path"),
        ],
    );
    assert_eq!(
        ok_json(&db, &["collection", "list"])["collections"],
        json!(["docs"])
    );
    let docs: Vec<Value> = (0..200)
        .map(|i| json!({"id": i, "payload": {"year": 2000 + i % 20, "lang": if i % 3 == 0 { "en" } else { "de" }}, "vector": [1.0, (i as f64) / 10.0, 0.3]}))
        .collect();
    let input = dir.path().join("docs.jsonl");
    write_jsonl(&input, &docs);
    let r = ok_json(
        &db,
        &[
            "ingest",
            "docs",
            input.to_str().expect("path"),
            "--batch-size",
            "64",
        ],
    );
    assert_eq!(r["ingested"], json!(200));
    assert_eq!(ok_json(&db, &["count", "docs"])["count"], json!(200));
    let f = r#"{"and": [{"field": "lang", "eq": "en"}, {"field": "year", "gte": 2010}]}"#;
    assert_eq!(
        ok_json(&db, &["count", "docs", "--filter", f])["count"],
        json!(docs
            .iter()
            .filter(|d| d["payload"]["lang"] == "en" && d["payload"]["year"].as_i64() >= Some(2010))
            .count())
    );
    ok_json(&db, &["collection", "flush", "docs"]);
    let res = ok_json(
        &db,
        &[
            "search",
            "docs",
            "--vector",
            "[1.0, 5.0, 0.3]",
            "-k",
            "5",
            "--filter",
            f,
            "--explain",
        ],
    );
    let hits = res["hits"].as_array().expect("hits");
    assert_eq!(hits.len(), 5);
    for h in hits {
        assert_eq!(h["payload"]["lang"], json!("en"));
        assert!(h["payload"]["year"].as_i64() >= Some(2010));
    }
    // Exact search gives the same ids here.
    let exact = ok_json(
        &db,
        &[
            "search",
            "docs",
            "--vector",
            "[1.0, 5.0, 0.3]",
            "-k",
            "5",
            "--filter",
            f,
            "--exact",
        ],
    );
    assert_eq!(
        res["hits"]
            .as_array()
            .map(|h| h.iter().map(|x| x["id"].clone()).collect::<Vec<_>>()),
        exact["hits"]
            .as_array()
            .map(|h| h.iter().map(|x| x["id"].clone()).collect::<Vec<_>>())
    );
    let got = ok_json(&db, &["get", "docs", "7", "--vectors"]);
    assert_eq!(got["documents"][0]["payload"]["year"], json!(2007));
    assert_eq!(
        ok_json(&db, &["delete", "docs", "7", "8"])["deleted"],
        json!(2)
    );
    assert_eq!(
        ok_json(
            &db,
            &[
                "delete",
                "docs",
                "--filter",
                r#"{"field": "year", "lt": 2002}"#
            ]
        )["deleted"],
        json!(20)
    );
    assert_eq!(ok_json(&db, &["count", "docs"])["count"], json!(178));
    let info = ok_json(&db, &["collection", "info", "docs"]);
    assert_eq!(info["documents"], json!(178));
    ok_json(&db, &["collection", "compact", "docs"]);
    assert_eq!(ok_json(&db, &["count", "docs"])["count"], json!(178));
    ok_json(&db, &["collection", "drop", "docs"]);
    assert_eq!(
        ok_json(&db, &["collection", "list"])["collections"],
        json!([])
    );
}

#[test]
fn bad_input_names_line_and_field_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let (ok, _, err) = run(
        &db,
        &[
            "collection",
            "create",
            "d",
            "--schema-json",
            r#"{"fields": {"emb": {"type": "dense", "dim": 0}}}"#,
        ],
    );
    assert!(!ok && err.contains("dim"), "{err}");
    ok_json(
        &db,
        &[
            "collection",
            "create",
            "d",
            "--schema-json",
            r#"{"fields": {"emb": {"type": "dense", "dim": 3, "metric": "l2"}, "year": {"type": "integer"}}}"#,
        ],
    );
    let good = dir.path().join("good.jsonl");
    write_jsonl(
        &good,
        &[json!({"id": "a", "payload": {"year": 1}, "vector": [1, 2, 3]})],
    );
    ok_json(&db, &["ingest", "d", good.to_str().expect("p")]);
    let replace_a = json!({"id": "a", "payload": {"year": 999}, "vector": [9, 9, 9]});
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                replace_a.to_string(),
                json!({"id": "b", "vector": [1, 2]}).to_string(),
            ],
            "line 2|field \"emb\"|wrong dimension",
        ),
        (
            vec![
                replace_a.to_string(),
                json!({"id": "b", "vector": [1, 2, 3], "colour": 1}).to_string(),
            ],
            "line 2, field \"colour\"",
        ),
        (
            vec![
                replace_a.to_string(),
                json!({"id": "b", "vectors": {"other": [1, 2, 3]}}).to_string(),
            ],
            "line 2|field \"other\"|unknown vector field",
        ),
        (
            vec![
                replace_a.to_string(),
                json!({"id": "b", "payload": {"year": "x"}, "vector": [1, 2, 3]}).to_string(),
            ],
            "line 2|field \"year\"|expected integer",
        ),
        (
            vec![
                replace_a.to_string(),
                "{\"id\": \"b\", \"vector\": [1, 2,".to_string(),
            ],
            "line 2: malformed JSON",
        ),
        (
            vec![
                replace_a.to_string(),
                json!({"id": "b", "vector": [1, 2, 3]}).to_string(),
                json!({"id": "b", "vector": [1, 2, 3]}).to_string(),
            ],
            "line 3, field \"id\": duplicate id",
        ),
        (
            vec![
                replace_a.to_string(),
                "{\"id\": \"b\", \"vector\": [1, 1e400, 3]}".to_string(),
            ],
            "line 2",
        ),
        (
            vec![
                replace_a.to_string(),
                json!({"vector": [1, 2, 3]}).to_string(),
            ],
            "line 2, field \"id\"",
        ),
    ];
    for (i, (lines, needle)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("bad{i}.jsonl"));
        std::fs::write(&p, lines.join("\n") + "\n").expect("write");
        let (ok, _, err) = run(&db, &["ingest", "d", p.to_str().expect("p")]);
        assert!(!ok, "case {i} should fail");
        for n in needle.split('|') {
            assert!(err.contains(n), "case {i}: expected {n:?} in: {err}");
        }
        let got = ok_json(&db, &["get", "d", "a", "--vectors"]);
        assert_eq!(
            got["documents"][0]["payload"]["year"],
            json!(1),
            "case {i}: stored document changed"
        );
        assert_eq!(
            got["documents"][0]["vectors"]["emb"],
            json!([1.0, 2.0, 3.0])
        );
        assert_eq!(ok_json(&db, &["count", "d"])["count"], json!(1));
    }
    // Query errors.
    let (ok, _, err) = run(&db, &["search", "d", "--vector", "[1, 2]"]);
    assert!(!ok && err.contains("expected 3 dimensions"), "{err}");
    let (ok, _, err) = run(
        &db,
        &[
            "search",
            "d",
            "--vector",
            "[1, 2, 3]",
            "--filter",
            r#"{"field": "year", "between": 3}"#,
        ],
    );
    assert!(!ok && err.contains("unknown operator"), "{err}");
    let (ok, _, err) = run(&db, &["count", "nope"]);
    assert!(!ok && err.contains("no collection named \"nope\""), "{err}");
}

#[test]
fn a_second_writer_process_gets_a_clear_error_and_readers_get_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    ok_json(&db, &["init"]);
    let _held = quiver::Database::open(&db).expect("open");
    let (ok, _, err) = run(
        &db,
        &[
            "collection",
            "create",
            "c",
            "--schema-json",
            r#"{"fields": {}}"#,
        ],
    );
    assert!(
        !ok && err.contains("open for writing by another process"),
        "{err}"
    );
    // Reading needs no write lock.
    let list = ok_json(&db, &["collection", "list"]);
    assert!(list.to_string().contains('['), "{list}");
}

#[test]
fn parquet_ingest_including_nan_rejection() {
    use arrow_array::builder::{Float32Builder, ListBuilder};
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    ok_json(
        &db,
        &[
            "collection",
            "create",
            "p",
            "--schema-json",
            r#"{"fields": {"emb": {"type": "dense", "dim": 2, "metric": "dot"}, "lang": {"type": "keyword"}}}"#,
        ],
    );
    let write = |name: &str, poison: bool| {
        let mut lb = ListBuilder::new(Float32Builder::new());
        for i in 0..50 {
            lb.values().append_value(i as f32);
            lb.values()
                .append_value(if poison && i == 17 { f32::NAN } else { 1.0 });
            lb.append(true);
        }
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..50));
        let langs: ArrayRef = Arc::new(StringArray::from_iter_values((0..50).map(|i| {
            if i % 2 == 0 {
                "en"
            } else {
                "fr"
            }
        })));
        let emb: ArrayRef = Arc::new(lb.finish());
        let batch = RecordBatch::try_from_iter([("id", ids), ("emb", emb), ("lang", langs)])
            .expect("batch");
        let path = dir.path().join(name);
        let f = std::fs::File::create(&path).expect("create");
        let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).expect("writer");
        w.write(&batch).expect("write");
        w.close().expect("close");
        path
    };
    let good = write("good.parquet", false);
    assert_eq!(
        ok_json(&db, &["ingest", "p", good.to_str().expect("p")])["ingested"],
        json!(50)
    );
    assert_eq!(
        ok_json(
            &db,
            &["count", "p", "--filter", r#"{"field": "lang", "eq": "en"}"#]
        )["count"],
        json!(25)
    );
    let bad = write("bad.parquet", true);
    let (ok, _, err) = run(&db, &["ingest", "p", bad.to_str().expect("p")]);
    assert!(
        !ok && err.contains("row 18") && err.contains("NaN"),
        "{err}"
    );
}

/// Regression: ids of digits stored as strings (every BEIR corpus: `"275294"`) are found by a
/// bare argument and by a JSON string; digits naming both an integer and a string id are
/// reported as ambiguous, and `--id-type` picks one.
#[test]
fn digit_string_ids_are_found_and_ambiguity_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    create_d(
        &db,
        r#"{"fields": {"emb": {"type": "dense", "dim": 2, "metric": "dot"}}}"#,
    );
    let input = dir.path().join("d.jsonl");
    write_jsonl(
        &input,
        &[
            json!({"id": "275294", "payload": {"n": 1}, "vector": [1, 0]}),
            json!({"id": 42, "payload": {"n": 2}, "vector": [0, 1]}),
            json!({"id": "42", "payload": {"n": 3}, "vector": [1, 1]}),
            json!({"id": 7, "payload": {"n": 4}, "vector": [1, 1]}),
        ],
    );
    ok_json(&db, &["ingest", "d", input.to_str().expect("p")]);
    let got = ok_json(&db, &["get", "d", "275294"]);
    assert_eq!(got["documents"][0]["id"], json!("275294"), "{got}");
    let got = ok_json(&db, &["get", "d", r#""275294""#]);
    assert_eq!(got["documents"][0]["payload"]["n"], json!(1), "{got}");
    let got = ok_json(&db, &["get", "d", "7"]);
    assert_eq!(got["documents"][0]["id"], json!(7), "{got}");
    let (ok, _, err) = run(&db, &["get", "d", "42"]);
    assert!(
        !ok && err.contains("ambiguous") && err.contains("--id-type"),
        "{err}"
    );
    let got = ok_json(&db, &["get", "d", "42", "--id-type", "int"]);
    assert_eq!(got["documents"][0]["payload"]["n"], json!(2), "{got}");
    let got = ok_json(&db, &["get", "d", r#""42""#]);
    assert_eq!(got["documents"][0]["payload"]["n"], json!(3), "{got}");
    assert_eq!(
        ok_json(&db, &["delete", "d", "275294"])["deleted"],
        json!(1)
    );
    assert_eq!(
        ok_json(&db, &["delete", "d", "42", "--id-type", "str"])["deleted"],
        json!(1)
    );
    assert_eq!(ok_json(&db, &["count", "d"])["count"], json!(2));
    let got = ok_json(&db, &["get", "d", "42"]);
    assert_eq!(
        got["documents"][0]["id"],
        json!(42),
        "no longer ambiguous: {got}"
    );
}

/// Regression: `quiver search ... | head -1` ends quietly when the reader goes away (killed by
/// SIGPIPE as Unix tools are), instead of panicking on a broken pipe. The output is several
/// times the pipe buffer, so the write after the reader closes must hit the broken pipe.
#[cfg(unix)]
#[test]
fn search_into_a_closed_pipe_exits_quietly() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    create_d(
        &db,
        r#"{"fields": {"emb": {"type": "dense", "dim": 2, "metric": "dot"}}}"#,
    );
    let docs: Vec<Value> = (0..3000)
        .map(|i| json!({"id": i, "payload": {"note": "x".repeat(80)}, "vector": [1.0, i as f64]}))
        .collect();
    let input = dir.path().join("d.jsonl");
    write_jsonl(&input, &docs);
    ok_json(&db, &["ingest", "d", input.to_str().expect("p")]);
    let mut child = std::process::Command::new(common::BIN)
        .arg("--db")
        .arg(&db)
        .args(["search", "d", "--vector", "[0, 1]", "-k", "3000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read");
    assert!(first.contains("2999"), "best hit first: {first}");
    // The reader is dropped here: the pipe is closed with ~300 KB still to write.
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        out.status.signal(),
        Some(libc_sigpipe()),
        "status {:?}: {err}",
        out.status
    );
}

#[cfg(unix)]
fn libc_sigpipe() -> i32 {
    13 // SIGPIPE on Linux and the BSDs
}

/// Search flags that cannot combine are rejected, never silently dropped.
#[test]
fn search_flags_that_cannot_combine_are_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    create_d(
        &db,
        r#"{"fields": {"emb": {"type": "dense", "dim": 2, "metric": "dot"}, "body": {"type": "text"}}}"#,
    );
    let cases: &[(&[&str], &str)] = &[
        (
            &["--multi", "tok", "--mode", "bm25"],
            "cannot be combined with --mode bm25",
        ),
        (
            &["--funnel", "--mode", "hybrid"],
            "cannot be combined with --mode hybrid",
        ),
        (
            &["--mode", "bm25", "--rrf-k", "10"],
            "`fusion` does not apply",
        ),
        (&["--mode", "bm25", "--ef", "10"], "`ef` does not apply"),
        (
            &["--mode", "dense", "--vector", "[1, 0]", "--candidates", "5"],
            "`candidates` does not apply",
        ),
        (&["--mode", "bm25", "--exact"], "`exact` does not apply"),
    ];
    for (flags, needle) in cases {
        let mut args = vec!["search", "d", "quokka"];
        if flags.contains(&"--vector") {
            args.pop();
        }
        args.extend_from_slice(flags);
        let (ok, _, err) = run(&db, &args);
        assert!(
            !ok && err.contains(needle),
            "{args:?}: expected {needle:?} in: {err}"
        );
    }
}

/// Creates collection `d` with the schema `json`.
fn create_d(db: &Path, json: &str) {
    ok_json(db, &["collection", "create", "d", "--schema-json", json]);
}

#[test]
fn collection_verify_names_a_damaged_vector_file_that_open_does_not_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    create_d(
        &db,
        r#"{"fields": {"emb": {"type": "dense", "dim": 3, "metric": "l2", "index": {"type": "hnsw"}}}}"#,
    );
    let input = dir.path().join("d.jsonl");
    let lines: Vec<Value> = (0..40)
        .map(|i| json!({"id": i, "vector": [i as f32, 1.0, 2.0]}))
        .collect();
    write_jsonl(&input, &lines);
    ok_json(&db, &["ingest", "d", input.to_str().expect("path")]);
    ok_json(&db, &["collection", "flush", "d"]);
    let v = ok_json(&db, &["collection", "verify", "d"]);
    assert_eq!(v["ok"], true, "{v}");
    let seg = ok_json(&db, &["collection", "info", "d"])["segments"][0]["name"]
        .as_str()
        .expect("segment")
        .to_string();
    let vec_file = db
        .join("collections/d/segments")
        .join(&seg)
        .join("vec.emb.f32");
    let mut bytes = std::fs::read(&vec_file).expect("read");
    bytes[20] ^= 0x10;
    std::fs::write(&vec_file, bytes).expect("write");
    // Opening and counting read no vector bytes: they still work...
    assert_eq!(ok_json(&db, &["count", "d"])["count"], 40);
    // ...and verify reads everything and names the file.
    let (ok, out, err) = run(&db, &["collection", "verify", "d", "--json"]);
    assert!(!ok, "verify passed a damaged file: {out}");
    assert!(
        out.contains("vec.emb.f32") && err.contains("damaged"),
        "{out} {err}"
    );
}
