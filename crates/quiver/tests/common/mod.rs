//! Helpers shared by the engine's integration tests that embed SciFact documents.

#![allow(dead_code)]

use quiver::{Database, DocId, Document, ModelPool, PoolOptions};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

/// Opens (creating) the database in `dir`, writable, with `pool`.
pub fn open(dir: &Path, pool: &Arc<ModelPool>) -> Database {
    Database::open_with(
        dir,
        quiver::OpenOptions {
            pool: Some(pool.clone()),
            ..Default::default()
        },
    )
    .unwrap()
}

/// A model pool (2 threads, no pulls) after checking that every model of `models` is in the
/// cache; panics naming `./x setup` when one is not.
pub fn pool(models: &[&str]) -> Arc<ModelPool> {
    for m in models {
        if let Err(e) = quiver::embed::fetch::cached_model(m) {
            panic!("model {m} is not in the cache ({e}): run `./x setup` first");
        }
    }
    Arc::new(ModelPool::new(PoolOptions {
        auto_pull: false,
        threads: Some(2),
        ..Default::default()
    }))
}

/// The first `n` SciFact documents: payload `title`, `text` and `year` (2015 + i % 10).
pub fn scifact_docs(n: usize) -> Vec<Document> {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/scifact/corpus.jsonl"
    );
    let text = std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{p}: {e} (../shared/data must lie beside the repository)"));
    text.lines()
        .take(n)
        .enumerate()
        .map(|(i, l)| {
            let v: Value = serde_json::from_str(l).unwrap();
            let mut d = Document {
                id: Some(DocId::Str(v["_id"].as_str().unwrap().to_string())),
                ..Default::default()
            };
            d.payload.insert("title".into(), v["title"].clone());
            d.payload.insert("text".into(), v["text"].clone());
            d.payload
                .insert("year".into(), json!(2015 + (i % 10) as i64));
            d
        })
        .collect()
}
