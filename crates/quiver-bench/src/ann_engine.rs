//! `quiver bench ann --collection`: the same sweep through the engine API.
//!
//! ```text
//!   base rows ─► Document{id: row, vectors.emb} ─► Collection::upsert (batches) ─► flush (seal:
//!   HNSW M / ef_construction as the index run) ─► Query::vector(q).ef(ef) ─► Collection::query
//! ```

use crate::ann::{sweep, AnnOptions, CollectionReport};
use crate::error::{Context, Result};
use crate::progress::{bar, Bars};
use quiver::{Database, DocId, Query, Schema};
use quiver_eval::npy::Array2;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

const FIELD: &str = "emb";
const BATCH: usize = 10_000;

/// Upserts `base` into a temporary collection, seals it and sweeps `efs` with `Collection::query`.
pub(crate) fn measure(
    a: &AnnOptions,
    base: &Array2<f32>,
    queries: &Array2<f32>,
    gt: &Array2<i32>,
    efs: &[usize],
) -> Result<CollectionReport> {
    let tmp = tempfile::Builder::new()
        .prefix("quiver-bench-ann-")
        .tempdir()
        .context("creating a temporary database")?;
    let db = Database::open(tmp.path())?;
    let schema = Schema::parse(
        &json!({"fields": {FIELD: {"type": "dense", "dim": base.cols, "metric": "cosine",
                 "index": {"type": "hnsw", "m": a.m, "ef_construction": a.ef_construction}}}})
        .to_string(),
    )?;
    let c = db.create_collection("ann", &schema)?;
    let t = Instant::now();
    let pb = bar("collection upsert", base.rows as u64);
    for start in (0..base.rows).step_by(BATCH) {
        let end = (start + BATCH).min(base.rows);
        let docs = crate::data::vector_docs(base, start..end, FIELD);
        c.upsert(docs).context("upserting the base")?;
        pb.inc((end - start) as u64);
    }
    pb.finish_and_clear();
    let ingest_s = t.elapsed().as_secs_f64();
    c.set_progress(Arc::new(Bars::new()));
    let t = Instant::now();
    c.flush().context("sealing the collection")?;
    let seal_s = t.elapsed().as_secs_f64();
    let segments = c.info().segments.len();
    let mut failed = None;
    let rows = sweep(efs, a.reps, queries, gt, |q, ef| {
        let mut query = Query::vector(q.to_vec()).with_limit(10);
        query.ef = Some(ef);
        query.with_payload = false;
        match c.query(&query) {
            Ok(r) => r
                .hits
                .iter()
                .filter_map(|h| match h.id {
                    DocId::Int(i) => Some(i as u32),
                    DocId::Str(_) => None,
                })
                .collect(),
            Err(e) => {
                failed.get_or_insert(e);
                Vec::new()
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e).context("querying the collection");
    }
    Ok(CollectionReport {
        ingest_s,
        seal_s,
        segments,
        rows,
    })
}
