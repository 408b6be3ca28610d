//! Embedding evolution over HTTP (issue 17): fields added to and dropped from a collection, the
//! backfill that computes an added field from the stored text (run in the background: a
//! request only starts it; `GET .../backfill` and `GET /collections/{name}` show how far it
//! is; a server that shuts down asks it to stop after its current batch — what it computed is
//! durable either way — and the next `POST .../backfill` resumes it), zero-shot labels written
//! into a payload field, and query adapters.

use crate::envelope::{ApiError, Body, Envelope, ErrorBody};
use crate::AppState;
use axum::extract::{Path, State};
use axum::response::Response;
use parking_lot::Mutex;
use quiver::{AdaptOptions, BackfillOptions, ClassifyOptions, FieldSpec, Label};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The backfill running (or last run) per collection; `closed` once the server shuts down.
#[derive(Default)]
pub(crate) struct Backfills {
    jobs: Mutex<HashMap<String, Job>>,
    closed: AtomicBool,
}

struct Job {
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<JobState>>,
}

enum JobState {
    Running,
    Done(quiver::BackfillReport),
    Failed(String),
}

impl Backfills {
    /// Asks every running backfill to stop after its current batch.
    pub(crate) fn stop_all(&self) {
        let all = self.jobs.lock();
        self.closed.store(true, Ordering::SeqCst);
        for j in all.values() {
            j.stop.store(true, Ordering::SeqCst);
        }
    }

    fn status(&self, name: &str) -> Value {
        match self.jobs.lock().get(name).map(|j| j.state.lock().to_json()) {
            Some(v) => v,
            None => json!({"running": false, "last": null, "error": null}),
        }
    }
}

impl JobState {
    fn to_json(&self) -> Value {
        match self {
            JobState::Running => json!({"running": true, "last": null, "error": null}),
            JobState::Done(r) => json!({"running": false, "last": r, "error": null}),
            JobState::Failed(e) => json!({"running": false, "last": null, "error": e}),
        }
    }
}

/// Adds a field; the body is its spec (as in a schema's `fields`). A dense, multi or text
/// field added to a collection that holds documents is pending until a backfill computes it.
#[utoipa::path(put, path = "/collections/{name}/fields/{field}", tag = "collections",
    params(("name" = String, Path, description = "Collection name"),
           ("field" = String, Path, description = "Field name")),
    request_body(content = Object, description = "A field spec", content_type = "application/json"),
    responses((status = 200, description = "`{\"alter\": {\"field\", \"pending_documents\", \"rewritten_segments\"}}`", body = Envelope),
              (status = 400, description = "bad spec, or the stored documents do not fit it", body = ErrorBody),
              (status = 404, description = "no such collection or model", body = ErrorBody)))]
pub(crate) async fn add_field(
    State(state): State<AppState>,
    Path((name, field)): Path<(String, String)>,
    Body(b): Body,
) -> Response {
    state
        .run_json(b, move |db, spec: FieldSpec| {
            let c = db.collection(&name)?;
            Ok(json!({"alter": c.add_field(&field, spec)?}))
        })
        .await
}

/// Drops a field (its files leave the sealed segments).
#[utoipa::path(delete, path = "/collections/{name}/fields/{field}", tag = "collections",
    params(("name" = String, Path, description = "Collection name"),
           ("field" = String, Path, description = "Field name")),
    responses((status = 200, description = "`{\"alter\": {...}}`", body = Envelope),
              (status = 400, description = "no such field, or the only one", body = ErrorBody),
              (status = 404, description = "no such collection", body = ErrorBody)))]
pub(crate) async fn drop_field(
    State(state): State<AppState>,
    Path((name, field)): Path<(String, String)>,
) -> Response {
    state
        .run(Instant::now(), move |db| {
            let c = db.collection(&name)?;
            Ok(json!({"alter": c.drop_field(&field)?}))
        })
        .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchBody {
    model: String,
}

/// Starts switching a dense field to a new model (`{"model"}`): its documents are re-embedded
/// by a backfill (start it with `POST .../backfill`), and when that completes the field holds
/// the new model's vectors and its adapter is removed (`GET .../backfill` reports `switched`).
/// Until then queries read the old vectors, through the field's adapter when it has one.
#[utoipa::path(post, path = "/collections/{name}/fields/{field}/switch", tag = "collections",
    params(("name" = String, Path, description = "Collection name"),
           ("field" = String, Path, description = "Dense field")),
    request_body(content = Object, description = "`{\"model\"}`", content_type = "application/json"),
    responses((status = 200, description = "`{\"alter\": {\"field\": successor, \"pending_documents\", ...}}`", body = Envelope),
              (status = 400, description = "not a dense field with a model, already switching, or the same model", body = ErrorBody),
              (status = 404, description = "no such collection or model", body = ErrorBody)))]
pub(crate) async fn switch_model(
    State(state): State<AppState>,
    Path((name, field)): Path<(String, String)>,
    Body(b): Body,
) -> Response {
    state
        .run_json(b, move |db, body: SwitchBody| {
            let c = db.collection(&name)?;
            Ok(json!({"alter": c.begin_switch(&field, &body.model)?}))
        })
        .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackfillBody {
    #[serde(default = "default_duty")]
    duty: f64,
    #[serde(default = "default_batch")]
    batch: usize,
}

fn default_duty() -> f64 {
    0.5
}
fn default_batch() -> usize {
    64
}

/// Starts the collection's pending backfills in the background (`{"duty": 0.5, "batch": 64}`,
/// both optional). Answers at once: `started` is false when one is running already or nothing
/// is pending. A backfill that completes a field's successor switches the field over
/// (`POST .../fields/{field}/switch`; the finished job's `last.switched`).
#[utoipa::path(post, path = "/collections/{name}/backfill", tag = "collections",
    params(("name" = String, Path, description = "Collection name")),
    request_body(content = Object, description = "`{\"duty\", \"batch\"}`", content_type = "application/json"),
    responses((status = 200, description = "`{\"started\": bool, \"pending\": [...]}`", body = Envelope),
              (status = 400, description = "bad duty or batch", body = ErrorBody),
              (status = 404, description = "no such collection", body = ErrorBody)))]
pub(crate) async fn start_backfill(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(b): Body,
) -> Response {
    let jobs = state.backfills().clone();
    state
        .run_json(b, move |db, body: BackfillBody| {
            if !(body.duty > 0.0 && body.duty <= 1.0) || body.batch == 0 {
                return Err(ApiError::bad_request(format!(
                    "duty must be in (0, 1] and batch >= 1 (got {} and {})",
                    body.duty, body.batch
                )));
            }
            let c = db.collection(&name)?;
            let pending = c.backfill_info();
            let mut all = jobs.jobs.lock();
            if jobs.closed.load(Ordering::SeqCst) {
                return Err(ApiError::unavailable("the server is shutting down"));
            }
            let running = all
                .get(&name)
                .is_some_and(|j| matches!(*j.state.lock(), JobState::Running));
            // A switch whose backfill is done but which has not switched yet still has work.
            let idle = pending.is_empty() && c.schema().successors.is_empty();
            if running || idle {
                return Ok(json!({"started": false, "running": running, "pending": pending}));
            }
            let stop = Arc::new(AtomicBool::new(false));
            let job_state = Arc::new(Mutex::new(JobState::Running));
            let opts = BackfillOptions {
                batch: body.batch,
                duty: body.duty,
                stop: Some(stop.clone()),
            };
            let st = job_state.clone();
            std::thread::Builder::new()
                .name(format!("backfill-{name}"))
                .spawn(move || {
                    let r = c.backfill(&opts);
                    *st.lock() = match r {
                        Ok(r) => JobState::Done(r),
                        Err(e) => JobState::Failed(e.to_string()),
                    };
                })
                .map_err(|e| ApiError::internal(format!("starting the backfill: {e}")))?;
            all.insert(
                name.clone(),
                Job {
                    stop,
                    state: job_state,
                },
            );
            Ok(json!({"started": true, "running": true, "pending": pending}))
        })
        .await
}

/// How the collection's backfill is doing: `running`, the `last` run's report or its `error`,
/// and per field the documents still `pending`.
#[utoipa::path(get, path = "/collections/{name}/backfill", tag = "collections",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, description = "`{\"running\", \"last\", \"error\", \"pending\"}`", body = Envelope),
              (status = 404, description = "no such collection", body = ErrorBody)))]
pub(crate) async fn backfill_status(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Response {
    let jobs = state.backfills().clone();
    state
        .run(Instant::now(), move |db| {
            let c = db.collection(&name)?;
            let mut v = jobs.status(&name);
            v["pending"] = json!(c.backfill_info());
            Ok(v)
        })
        .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifyBody {
    labels: Vec<Label>,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    into: Option<String>,
    #[serde(default)]
    iterations: Option<usize>,
    #[serde(default)]
    threshold: Option<f32>,
    #[serde(default)]
    top_docs: Option<usize>,
}

/// Labels every document by similarity to `labels` on a dense field and writes them into a
/// payload keyword field (`into`, default `label`), as `quiver classify` does.
#[utoipa::path(post, path = "/collections/{name}/classify", tag = "collections",
    params(("name" = String, Path, description = "Collection name")),
    request_body(content = Object, description = "`{\"labels\": [{\"label\", \"description\", \"keywords\"}], \"field\", \"into\", \"iterations\", \"threshold\", \"top_docs\"}`", content_type = "application/json"),
    responses((status = 200, description = "`{\"counts\", \"written\", \"changed\", ...}`", body = Envelope),
              (status = 400, description = "bad labels, field or threshold", body = ErrorBody),
              (status = 404, description = "no such collection", body = ErrorBody)))]
pub(crate) async fn classify(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(b): Body,
) -> Response {
    state
        .run_json(b, move |db, body: ClassifyBody| {
            let c = db.collection(&name)?;
            let d = ClassifyOptions::default();
            let r = c.classify(&ClassifyOptions {
                field: body.field,
                into: body.into.unwrap_or(d.into),
                labels: body.labels,
                iterations: body.iterations.unwrap_or(d.iterations),
                top_docs: body.top_docs,
                threshold: body.threshold,
                batch: d.batch,
            })?;
            Ok(json!(r))
        })
        .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdaptBody {
    model: String,
    #[serde(default)]
    sample: Option<usize>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    seed: Option<u64>,
}

/// Fits and stores a query adapter for a dense field (`{"model", "sample", "method", "seed"}`):
/// text queries on the field are then embedded by `model` and mapped onto its stored vectors.
#[utoipa::path(put, path = "/collections/{name}/adapters/{field}", tag = "collections",
    params(("name" = String, Path, description = "Collection name"),
           ("field" = String, Path, description = "Dense field")),
    request_body(content = Object, description = "`{\"model\", \"sample\", \"method\", \"seed\"}`", content_type = "application/json"),
    responses((status = 200, description = "the adapter's figures (`holdout_cosine`, ...)", body = Envelope),
              (status = 400, description = "bad field or method", body = ErrorBody),
              (status = 404, description = "no such collection or model", body = ErrorBody)))]
pub(crate) async fn adapt(
    State(state): State<AppState>,
    Path((name, field)): Path<(String, String)>,
    Body(b): Body,
) -> Response {
    state
        .run_json(b, move |db, body: AdaptBody| {
            let kind = match body.method.as_deref() {
                None => None,
                Some(m) => Some(quiver::linalg::AdapterKind::parse(m).ok_or_else(|| {
                    ApiError::bad_request(format!("method: {m:?} is not procrustes or ridge"))
                })?),
            };
            let d = AdaptOptions::default();
            let c = db.collection(&name)?;
            let info = c.adapt(
                &field,
                &body.model,
                &AdaptOptions {
                    sample: body.sample.unwrap_or(d.sample),
                    kind,
                    seed: body.seed.unwrap_or(d.seed),
                },
            )?;
            Ok(json!(info))
        })
        .await
}

/// Removes a field's query adapter (`removed` is false when it had none).
#[utoipa::path(delete, path = "/collections/{name}/adapters/{field}", tag = "collections",
    params(("name" = String, Path, description = "Collection name"),
           ("field" = String, Path, description = "Dense field")),
    responses((status = 200, description = "`{\"removed\": bool}`", body = Envelope),
              (status = 404, description = "no such collection", body = ErrorBody)))]
pub(crate) async fn remove_adapter(
    State(state): State<AppState>,
    Path((name, field)): Path<(String, String)>,
) -> Response {
    state
        .run(Instant::now(), move |db| {
            let c = db.collection(&name)?;
            Ok(json!({"removed": c.remove_adapter(&field)?}))
        })
        .await
}
