//! Integration tests for quiver-embed (one test binary, ripgrep style).
//!
//! Model tests need the models in the cache. CI runs `quiver models pull all-MiniLM-L6-v2` and
//! `quiver models pull potion-base-8M` first (or `cargo run -p quiver-embed --example pull -- NAME`);
//! a missing model FAILS the test with that instruction.

mod bad_input;
mod fetch;
mod parity;
mod precision;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use quiver_embed::{load_model, Embedder, LoadOptions};

/// `../shared/golden/NAME.jsonl` beside the repository.
pub fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/golden")
        .join(format!("{name}.jsonl"))
}

/// Golden records of one model.
pub fn golden(name: &str) -> Vec<serde_json::Value> {
    let p = golden_path(name);
    let text =
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("golden file {}: {e}", p.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Cached model directory, or a failing test that says how to get it.
pub fn model_dir(name: &str) -> PathBuf {
    match quiver_embed::fetch::cached_model(name) {
        Ok(d) => d,
        Err(e) => panic!(
            "model '{name}' is not available: {e}\n  -> run `quiver models pull {name}` first"
        ),
    }
}

/// Models are loaded once per test binary.
pub fn model(name: &str) -> Arc<dyn Embedder> {
    static MINILM: OnceLock<Arc<dyn Embedder>> = OnceLock::new();
    static POTION: OnceLock<Arc<dyn Embedder>> = OnceLock::new();
    let cell = match name {
        "all-MiniLM-L6-v2" => &MINILM,
        "potion-base-8M" => &POTION,
        other => panic!("no test cell for {other}"),
    };
    cell.get_or_init(|| {
        let dir = model_dir(name);
        let opts = LoadOptions {
            threads: Some(2),
            name: Some(name.into()),
            ..Default::default()
        };
        Arc::from(load_model(&dir, &opts).unwrap_or_else(|e| panic!("loading {name}: {e}")))
    })
    .clone()
}

pub fn f32s(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

pub fn u32s(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}
