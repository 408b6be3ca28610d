//! Operations routes: liveness, readiness, metrics and the OpenAPI document.

use crate::envelope::{ok, ApiError, Envelope, ErrorBody};
use crate::{AppState, Readiness};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::Json;
use quiver::Database;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Instant;

/// The models named by any field of any collection.
fn models(db: &Database) -> Result<BTreeSet<String>, String> {
    let mut names = BTreeSet::new();
    for c in db.list_collections().map_err(|e| e.to_string())? {
        let schema = db
            .collection(&c)
            .map_err(|e| e.to_string())?
            .schema()
            .clone();
        names.extend(
            schema
                .dense_fields()
                .into_iter()
                .filter_map(|f| f.embedding.model),
        );
        names.extend(
            schema
                .multi_fields()
                .into_iter()
                .filter_map(|f| f.embedding.model),
        );
    }
    Ok(names)
}

/// Loads every model a collection names (so the first request does not pay for it).
pub(crate) fn load_models(db: &Database) -> Result<(), String> {
    for m in models(db)? {
        db.pool().get(&m).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "alive", body = Envelope)))]
pub(crate) async fn healthz() -> Response {
    ok(json!({"alive": true}), Instant::now())
}

/// Readiness: the database is open and the models its collections name are loaded; 503 while
/// they load, when one failed, or while shutting down.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "ready", body = Envelope),
              (status = 503, description = "not ready", body = ErrorBody)))]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let t = Instant::now();
    let ready = state.0.ready.read().clone();
    match ready {
        Readiness::Ready => ok(json!({"ready": true}), t),
        Readiness::Loading => ApiError::unavailable("loading models").at(t),
        Readiness::Failed(e) => ApiError::unavailable(format!("not ready: {e}")).at(t),
    }
}

/// Prometheus text: requests by route and status, latency histograms, documents and segments
/// per collection, texts embedded, forward passes and embedding seconds per model.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let db = state.db().clone();
    let figures = tokio::task::spawn_blocking(move || {
        let mut docs = Vec::new();
        let mut segs = Vec::new();
        for name in db.list_collections().unwrap_or_default() {
            if let Ok(c) = db.collection(&name) {
                let info = c.info();
                let l = format!("{{collection=\"{}\"}}", name.replace('"', "\\\""));
                docs.push((l.clone(), info.documents as f64));
                segs.push((l, info.segments.len() as f64));
            }
        }
        let mut texts = Vec::new();
        let mut batches = Vec::new();
        let mut seconds = Vec::new();
        for (m, s) in db.pool().loaded() {
            let l = format!("{{model=\"{}\"}}", m.replace('"', "\\\""));
            texts.push((l.clone(), s.texts as f64));
            batches.push((l.clone(), s.batches as f64));
            seconds.push((l, s.seconds));
        }
        (docs, segs, texts, batches, seconds)
    })
    .await;
    let Ok((docs, segs, texts, batches, seconds)) = figures else {
        return ApiError::internal("collecting metrics failed").at(Instant::now());
    };
    let text = state.0.metrics.render(&[
        (
            "quiver_collection_documents",
            "Documents per collection.",
            docs,
        ),
        (
            "quiver_collection_segments",
            "Sealed segments per collection.",
            segs,
        ),
        (
            "quiver_embed_texts_total",
            "Texts embedded per model.",
            texts,
        ),
        (
            "quiver_embed_batches_total",
            "Encoder forward passes per model.",
            batches,
        ),
        (
            "quiver_embed_seconds_total",
            "Seconds spent embedding per model (summed over concurrent calls).",
            seconds,
        ),
    ]);
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "the OpenAPI document", content_type = "application/json")))]
pub(crate) async fn openapi(State(state): State<AppState>) -> Response {
    Json(state.0.openapi.read().clone()).into_response()
}
