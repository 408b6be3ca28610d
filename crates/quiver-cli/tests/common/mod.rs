//! Helpers shared by the binary's integration tests: run `quiver --db DB ...` and read its JSON.

#![allow(dead_code)]

use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// The `quiver` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_quiver");

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
