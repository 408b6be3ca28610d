//! Helpers shared by the binary's integration tests: run `quiver --db DB ...` and read its JSON.

#![allow(dead_code)]

pub mod kill;

use serde_json::Value;
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
