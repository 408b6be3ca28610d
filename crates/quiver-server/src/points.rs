//! `/collections/{name}/points`: upsert, get, delete, scroll, count. Documents have Quiver's
//! JSON shape (`{"id", "payload", "vectors", "multi"}`; model-backed fields are embedded here,
//! in the server); filters have Quiver's filter syntax.

use crate::envelope::{ApiError, Body, Envelope, ErrorBody};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use quiver::document::{document_from_json, document_to_json};
use quiver::{Collection, DocId, Filter, IdLookup};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Instant;
use utoipa::{IntoParams, ToSchema};

/// `PUT .../points`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpsertPoints {
    /// Documents: `{"id", "payload", "vectors": {field: [..]}, "multi": {field: [[..]]}}`.
    #[schema(value_type = Vec<Object>)]
    points: Vec<Value>,
}

/// `?wait=`: accepted for Qdrant clients. Quiver always answers once the batch is durable, so
/// `wait=false` behaves as `wait=true`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WaitParam {
    /// Accepted; every write is durable when answered.
    #[allow(dead_code)]
    wait: Option<bool>,
}

/// `POST .../points`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetPoints {
    /// Ids (integers or strings).
    #[schema(value_type = Vec<Object>)]
    ids: Vec<Value>,
    /// Include payloads (default true).
    #[serde(default = "yes")]
    with_payload: bool,
    /// Include vectors (default false).
    #[serde(default)]
    with_vector: bool,
}

/// `POST .../points/delete`: ids or a filter, not both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeletePoints {
    /// Ids to delete (missing ids are skipped).
    #[schema(value_type = Option<Vec<Object>>)]
    points: Option<Vec<Value>>,
    /// Delete every document matching this filter.
    #[schema(value_type = Option<Object>)]
    filter: Option<Value>,
}

/// `POST .../points/scroll`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScrollPoints {
    /// Page size (default 10).
    #[serde(default = "ten")]
    limit: usize,
    /// The cursor: `next_page_offset` of the previous page (the last id seen).
    #[schema(value_type = Option<Object>)]
    offset: Option<Value>,
    /// Only documents matching this filter.
    #[schema(value_type = Option<Object>)]
    filter: Option<Value>,
    /// Include payloads (default true).
    #[serde(default = "yes")]
    with_payload: bool,
    /// Include vectors (default false).
    #[serde(default)]
    with_vector: bool,
}

/// `POST .../points/count`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CountPoints {
    /// Count only documents matching this filter.
    #[schema(value_type = Option<Object>)]
    filter: Option<Value>,
    /// Accepted for Qdrant clients; counts are always exact.
    #[allow(dead_code)]
    exact: Option<bool>,
}

/// `GET .../points/{id}?with_vector=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct VectorParam {
    /// Include vectors (default false).
    with_vector: Option<bool>,
}

fn yes() -> bool {
    true
}
fn ten() -> usize {
    10
}

/// An id in a request body.
fn id_of(v: &Value, at: &str) -> Result<DocId, ApiError> {
    DocId::from_json(v).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{at}: an id is a non-negative integer or a non-empty string, got {v}"
        ))
    })
}

fn ids_of(vals: &[Value], at: &str, max: usize) -> Result<Vec<DocId>, ApiError> {
    if vals.len() > max {
        return Err(ApiError::bad_request(format!(
            "{at}: {} ids, more than max_batch ({max})",
            vals.len()
        )));
    }
    vals.iter()
        .enumerate()
        .map(|(i, v)| id_of(v, &format!("{at}[{i}]")))
        .collect()
}

pub(crate) fn filter_of(v: Option<&Value>) -> Result<Option<Filter>, ApiError> {
    v.map(|f| Filter::from_json(f).map_err(ApiError::from))
        .transpose()
}

/// A stored document as a point: `{"id", "payload"?, "vectors"?, "multi"?}`.
pub(crate) fn point(doc: &quiver::StoredDoc, with_payload: bool, with_vector: bool) -> Value {
    let mut v = document_to_json(doc, with_vector);
    if !with_payload {
        if let Some(o) = v.as_object_mut() {
            o.remove("payload");
        }
    }
    v
}

pub(crate) fn limited(n: usize, what: &str, max: usize) -> Result<usize, ApiError> {
    if n > max {
        return Err(ApiError::bad_request(format!(
            "{what} {n} is more than max_limit ({max})"
        )));
    }
    Ok(n)
}

/// Inserts or replaces documents; the answer comes once the batch is durable.
#[utoipa::path(put, path = "/collections/{name}/points", tag = "points",
    params(("name" = String, Path, description = "Collection name"), WaitParam),
    request_body = UpsertPoints,
    responses((status = 200, description = "`{\"operation_id\", \"status\": \"completed\", \"count\"}`", body = Envelope),
              (status = 400, description = "a document is invalid (nothing is written)", body = ErrorBody),
              (status = 404, description = "no such collection", body = ErrorBody),
              (status = 413, description = "body too large", body = ErrorBody)))]
pub(crate) async fn upsert(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(_wait): Query<WaitParam>,
    Body(b): Body,
) -> Response {
    let max = state.config().max_batch;
    state
        .run_json(b, move |db, req: UpsertPoints| {
            if req.points.len() > max {
                return Err(ApiError::bad_request(format!(
                    "points: {} documents, more than max_batch ({max})",
                    req.points.len()
                )));
            }
            let c = db.collection(&name)?;
            let docs = req
                .points
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    document_from_json(v, &c.schema())
                        .map_err(|e| ApiError::bad_request(format!("points[{i}]: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let r = c.upsert(docs)?;
            Ok(json!({"operation_id": r.seq, "status": "completed", "count": r.count}))
        })
        .await
}

/// Documents by id, in the order asked (missing ids are left out).
#[utoipa::path(post, path = "/collections/{name}/points", tag = "points",
    params(("name" = String, Path, description = "Collection name")),
    request_body = GetPoints,
    responses((status = 200, description = "`[point]`", body = Envelope),
              (status = 400, description = "bad ids", body = ErrorBody),
              (status = 404, description = "no such collection", body = ErrorBody)))]
pub(crate) async fn get_many(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(b): Body,
) -> Response {
    let max = state.config().max_batch;
    state
        .run_json(b, move |db, req: GetPoints| {
            let ids = ids_of(&req.ids, "ids", max)?;
            let c = db.collection(&name)?;
            let snap = c.snapshot();
            let points: Vec<Value> = ids
                .iter()
                .filter_map(|id| snap.get(id))
                .map(|d| point(&d, req.with_payload, req.with_vector))
                .collect();
            snap.check()?;
            Ok(Value::Array(points))
        })
        .await
}

/// Finds the id a URL names (see `Collection::lookup_id`).
fn url_id(c: &Collection, arg: &str) -> Result<DocId, ApiError> {
    match c.lookup_id(arg) {
        IdLookup::Found(id) => Ok(id),
        IdLookup::Missing(id) => Err(ApiError::not_found(format!("no point with id {id}"))),
        IdLookup::Ambiguous(n) => Err(ApiError::bad_request(format!(
            "{n} names both the integer id and the string id \"{n}\": quote it as JSON \
             (%22{n}%22) for the string"
        ))),
    }
}

/// One document.
#[utoipa::path(get, path = "/collections/{name}/points/{id}", tag = "points",
    params(("name" = String, Path, description = "Collection name"),
           ("id" = String, Path, description = "Integer or string id; a JSON string (`\"42\"`) for a string of digits"),
           VectorParam),
    responses((status = 200, description = "the point", body = Envelope),
              (status = 404, description = "no such collection or point", body = ErrorBody)))]
pub(crate) async fn get_one(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    Query(p): Query<VectorParam>,
) -> Response {
    state
        .run(Instant::now(), move |db| {
            let c = db.collection(&name)?;
            let id = url_id(&c, &id)?;
            let doc = c
                .get(&id)?
                .ok_or_else(|| ApiError::not_found(format!("no point with id {id}")))?;
            Ok(point(&doc, true, p.with_vector.unwrap_or(false)))
        })
        .await
}

/// Deletes documents by id or by filter; durable when answered.
#[utoipa::path(post, path = "/collections/{name}/points/delete", tag = "points",
    params(("name" = String, Path, description = "Collection name"), WaitParam),
    request_body = DeletePoints,
    responses((status = 200, description = "`{\"operation_id\", \"status\": \"completed\", \"count\"}`", body = Envelope),
              (status = 400, description = "neither or both of points and filter, bad ids or filter", body = ErrorBody),
              (status = 404, description = "no such collection", body = ErrorBody)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(_wait): Query<WaitParam>,
    Body(b): Body,
) -> Response {
    let max = state.config().max_batch;
    state
        .run_json(b, move |db, req: DeletePoints| {
            let c = db.collection(&name)?;
            let r = match (&req.points, filter_of(req.filter.as_ref())?) {
                (Some(ids), None) => c.delete(&ids_of(ids, "points", max)?)?,
                (None, Some(f)) => c.delete_by_filter(&f)?,
                _ => {
                    return Err(ApiError::bad_request(
                        "give either \"points\" (ids) or \"filter\", not both or neither",
                    ))
                }
            };
            Ok(json!({"operation_id": r.seq, "status": "completed", "count": r.count}))
        })
        .await
}

/// A page of documents in id order; `next_page_offset` is the cursor of the next page (`null`
/// at the end).
#[utoipa::path(post, path = "/collections/{name}/points/scroll", tag = "points",
    params(("name" = String, Path, description = "Collection name")),
    request_body = ScrollPoints,
    responses((status = 200, description = "`{\"points\", \"next_page_offset\"}`", body = Envelope),
              (status = 400, description = "bad cursor, filter or limit", body = ErrorBody),
              (status = 404, description = "no such collection", body = ErrorBody)))]
pub(crate) async fn scroll(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(b): Body,
) -> Response {
    let max = state.config().max_limit;
    state
        .run_json(b, move |db, req: ScrollPoints| {
            let limit = limited(req.limit, "limit", max)?;
            let after = req
                .offset
                .as_ref()
                .map(|v| id_of(v, "offset"))
                .transpose()?;
            let filter = filter_of(req.filter.as_ref())?;
            let c = db.collection(&name)?;
            let (docs, next) = c.scroll(after.as_ref(), limit, filter.as_ref())?;
            let points: Vec<Value> = docs
                .iter()
                .map(|d| point(d, req.with_payload, req.with_vector))
                .collect();
            Ok(json!({"points": points, "next_page_offset": next}))
        })
        .await
}

/// Documents (matching a filter).
#[utoipa::path(post, path = "/collections/{name}/points/count", tag = "points",
    params(("name" = String, Path, description = "Collection name")),
    request_body = CountPoints,
    responses((status = 200, description = "`{\"count\"}`", body = Envelope),
              (status = 400, description = "bad filter", body = ErrorBody),
              (status = 404, description = "no such collection", body = ErrorBody)))]
pub(crate) async fn count(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(b): Body,
) -> Response {
    state
        .run_json(b, move |db, req: CountPoints| {
            let filter = filter_of(req.filter.as_ref())?;
            let n = db.collection(&name)?.count(filter.as_ref())?;
            Ok(json!({"count": n}))
        })
        .await
}
