//! Helpers shared by the binary's integration tests: run `quiver --db DB ...` and read its JSON.

#![allow(dead_code)]

pub mod kill;

use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `quiver` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_quiver");

/// Runs `quiver --db db args...` and returns its output.
pub fn quiver(db: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("run quiver")
}

/// Runs `quiver --db db args...`: (success, stdout, stderr).
pub fn run(db: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("run quiver");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Runs `quiver --db db args... --json`, asserts success and parses the last stdout line.
pub fn ok_json(db: &Path, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let (ok, out, err) = run(db, &a);
    assert!(ok, "quiver {args:?} failed: {err}");
    serde_json::from_str(out.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// The cached directory of registry model `name`; panics, naming `./x setup`, when the model has
/// not been pulled. Tests that need a model call this first, so that a missing model fails with
/// the set-up command rather than with a download error or a slow pull inside the test.
pub fn require_model(name: &str) -> PathBuf {
    quiver_embed::fetch::cached_model(name).unwrap_or_else(|e| {
        panic!(
            "model {name} is missing ({e}); run `./x setup`, which pulls and verifies the \
             test models"
        )
    })
}

/// Writes the first `n` SciFact documents as ingest JSONL (payload `n`, `title`, `text`);
/// returns their ids. Needs ../shared/data beside the repository.
pub fn write_scifact(path: &Path, n: usize) -> Vec<String> {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/scifact/corpus.jsonl"
    );
    let text = std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{p}: {e} (../shared/data must lie beside the repository)"));
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut ids = Vec::new();
    for (i, l) in text.lines().take(n).enumerate() {
        let v: Value = serde_json::from_str(l).expect("corpus line");
        let id = v["_id"].as_str().expect("_id").to_string();
        let line = json!({"id": id, "payload": {"n": i, "title": v["title"], "text": v["text"]}});
        writeln!(f, "{line}").expect("write");
        ids.push(id);
    }
    ids
}
