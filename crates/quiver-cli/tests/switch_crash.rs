//! Crash test of a model switch (issue 17): `quiver adapt --switch` re-embeds a potion-base-8M
//! field with all-MiniLM-L6-v2 in a backfill and then switches the field over. Child processes
//! are SIGKILLed at points their own events prove: inside the backfill (after its 2nd durable
//! batch), then, in the resumed `quiver collection backfill`, either right after the switch's
//! schema write (`switch-written`, before any old file is dropped) or after the first segment
//! was rewritten without the old files (`drop-rewritten`). After each kill the collection
//! opens with all its documents and searches answer; the switch is either not visible or whole
//! (the field's model, dimension and files change in one schema write); a last run finishes the
//! drops and removes the adapter, and every vector equals what a fresh MiniLM ingest of the
//! same documents computed. Kill points are events, not times, so there is no seed.
//!
//! Needs potion-base-8M and all-MiniLM-L6-v2 (`./x setup`) and ../shared/data/scifact.

mod common;

use common::kill::{spawn_then_kill, KillAt};
use common::{ok_json, require_model, run, write_scifact, BIN};
use quiver::{Database, DocId};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

const POTION: &str = "potion-base-8M";
const MINILM: &str = "all-MiniLM-L6-v2";
const N: usize = 80;

fn schema(model: &str, dim: usize) -> String {
    json!({"mutable_max_rows": 20, "fields": {"n": {"type": "integer"},
           "emb": {"type": "dense", "dim": dim, "metric": "cosine", "model": model,
                   "embed": ["title", "text"], "index": {"type": "hnsw", "m": 8, "ef_construction": 40}}}})
    .to_string()
}

fn must(db: &Path, args: &[&str]) {
    let (ok, _, err) = run(db, args);
    assert!(ok, "quiver {args:?} failed: {err}");
}

fn quiver(db: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--db").arg(db).args(args);
    cmd.args(["--batch", "8", "--duty", "1"]);
    cmd
}

/// Every document is there and a search answers.
fn healthy(db: &Path) -> Value {
    let info = ok_json(db, &["collection", "info", "c"]);
    assert_eq!(info["documents"], json!(N), "documents lost: {info}");
    let res = ok_json(db, &["search", "c", "cancer", "-k", "3"]);
    assert_eq!(res["hits"].as_array().map_or(0, Vec::len), 3, "{res}");
    info
}

/// Names of the files of the live segments.
fn segment_files(db: &Path, info: &Value) -> Vec<String> {
    let dir = db.join("collections").join("c").join("segments");
    let mut out = Vec::new();
    for s in info["segments"].as_array().expect("segments") {
        let name = s["name"].as_str().expect("segment name");
        for f in std::fs::read_dir(dir.join(name)).expect("segment dir") {
            out.push(f.expect("entry").file_name().to_string_lossy().into_owned());
        }
    }
    out
}

#[test]
fn sigkill_during_a_model_switch_leaves_it_undone_or_whole() {
    require_model(POTION);
    require_model(MINILM);
    let work = tempfile::tempdir().expect("tempdir");
    let docs = work.path().join("docs.jsonl");
    let ids = write_scifact(&docs, N);
    let docs_arg = docs.to_str().expect("path");

    let oracle = work.path().join("oracle");
    let spec = schema(MINILM, 384);
    must(
        &oracle,
        &["collection", "create", "c", "--schema-json", &spec],
    );
    must(&oracle, &["ingest", "c", docs_arg]);
    let d = Database::open(&oracle).expect("open oracle");
    let r = d.collection("c").expect("oracle collection");
    let want: Vec<Vec<f32>> = ids
        .iter()
        .map(|id| {
            r.get(&DocId::Str(id.clone()))
                .unwrap()
                .expect("doc")
                .vectors["emb"]
                .clone()
        })
        .collect();
    drop((r, d));

    for second in ["switch-written", "drop-rewritten"] {
        let db = work.path().join(second);
        let spec = schema(POTION, 256);
        must(&db, &["collection", "create", "c", "--schema-json", &spec]);
        must(&db, &["ingest", "c", docs_arg, "--batch-size", "10"]);
        let args = [
            "adapt",
            "c",
            "--field",
            "emb",
            "--from-model",
            MINILM,
            "--sample",
            "60",
            "--switch",
        ];
        let k = spawn_then_kill(quiver(&db, &args), KillAt::Event("backfill-batch", 2));
        assert!(
            !k.exited_first && k.count("backfill-batch") >= 2,
            "{:?}",
            k.events
        );
        let info = healthy(&db);
        println!("{second}: killed inside the backfill: {}", info["backfill"]);
        assert_eq!(info["switching"], json!({"emb": "emb~1"}), "{info}");
        assert_eq!(info["adapters"].as_array().map_or(0, Vec::len), 1);
        assert_eq!(info["schema"]["fields"]["emb"]["model"], json!(POTION));

        let k = spawn_then_kill(
            quiver(&db, &["collection", "backfill", "c"]),
            KillAt::Event(second, 1),
        );
        assert!(!k.exited_first && k.count(second) == 1, "{:?}", k.events);
        let info = healthy(&db);
        let emb = &info["schema"]["fields"]["emb"];
        println!(
            "{second}: killed after {second}: emb {emb}, dropping {}",
            info["schema"]["dropping"]
        );
        assert_eq!(
            (&emb["model"], &emb["dim"], &emb["stored_as"]),
            (&json!(MINILM), &json!(384), &json!("emb~1")),
            "the switch's schema write is durable: {info}"
        );
        assert_eq!(info["switching"], json!({}));

        let out = ok_json(&db, &["collection", "backfill", "c"]);
        assert_eq!(out["backfill"]["rows"], json!(0), "{out}");
        let info = healthy(&db);
        assert_eq!(info["adapters"], json!([]), "{info}");
        assert!(info["schema"].get("dropping").is_none(), "{info}");
        let files = segment_files(&db, &info);
        assert!(
            files.iter().any(|f| f == "vec.emb~1.f32")
                && !files
                    .iter()
                    .any(|f| f == "vec.emb.f32" || f == "hnsw.emb.bin"),
            "{files:?}"
        );
        let d = Database::open(&db).expect("open");
        let c = d.collection("c").expect("collection");
        let mut worst = 0f32;
        for (id, w) in ids.iter().zip(&want) {
            let got = c.get(&DocId::Str(id.clone())).unwrap().expect("doc lost");
            for (a, b) in got.vectors["emb"].iter().zip(w) {
                worst = worst.max((a - b).abs());
            }
        }
        println!("{second}: max |Δ| to the fresh MiniLM ingest {worst:e}");
        assert!(worst <= 1e-4, "{worst}");
        assert!(c.verify().is_empty(), "{:?}", c.verify());
    }
}
