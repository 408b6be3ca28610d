//! `POST /collections/{name}/points/query` (and `/batch`): a Quiver query — the simple form
//! (`{"query": "text" | [vector] | [[vectors]], "mode", "limit", "filter", ...}`, every field of
//! `quiver::Query`) or a full plan (`{"prefetch": [...], "fusion", "rescore", "filter", "limit",
//! "offset"}`) — answered as Qdrant answers: `{"points": [{"id", "score", "payload"}]}`.

use crate::envelope::{from_value, ApiError, Body, Envelope, ErrorBody};
use crate::points::limited as check_limit;
use crate::AppState;
use axum::extract::{Path, State};
use axum::response::Response;
use quiver::{Collection, Database, Plan, Query};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

/// Keys whose values size the work of a query; each is bounded by `max_limit`.
const SIZE_KEYS: [&str; 7] = [
    "limit",
    "offset",
    "k",
    "ef",
    "candidates",
    "shortlist",
    "top",
];

/// One query, for the OpenAPI document only (the body is read as JSON and turned into a
/// `quiver::Query` or `Plan`, see the module docs).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct QueryBody {
    /// Text, a vector or vector sets (or use `text` / `vector` / `vectors`).
    #[schema(value_type = Option<Object>)]
    pub query: Option<Value>,
    /// `dense`, `bm25`, `hybrid`, `multi`, `funnel` (default from the schema).
    pub mode: Option<String>,
    /// Results (default 10).
    pub limit: Option<usize>,
    /// Quiver filter.
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
    /// Candidate sources of a plan (instead of `query`).
    #[schema(value_type = Option<Vec<Object>>)]
    pub prefetch: Option<Vec<Value>>,
    /// Include vectors in the points (default false).
    pub with_vector: Option<bool>,
    /// Include what each plan stage did (default false).
    pub explain: Option<bool>,
}

/// `POST .../points/query/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchBody {
    /// Queries, each as `points/query` takes it.
    #[schema(value_type = Vec<QueryBody>)]
    searches: Vec<Value>,
}

/// Refuses a size key over `max` anywhere in the body.
fn check_sizes(v: &Value, at: &str, max: usize) -> Result<(), ApiError> {
    match v {
        Value::Object(o) => o.iter().try_for_each(|(k, x)| {
            let here = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            if SIZE_KEYS.contains(&k.as_str()) {
                if let Some(n) = x.as_u64() {
                    check_limit(usize::try_from(n).unwrap_or(usize::MAX), &here, max)?;
                }
            }
            check_sizes(x, &here, max)
        }),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .try_for_each(|(i, x)| check_sizes(x, &format!("{at}[{i}]"), max)),
        _ => Ok(()),
    }
}

/// What the answer should carry beside ids and scores.
struct Shape {
    with_vector: bool,
    explain: bool,
}

fn take_bool(o: &mut Map<String, Value>, key: &str) -> Result<bool, ApiError> {
    match o.remove(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(v) => Err(ApiError::bad_request(format!(
            "request body, field {key:?}: must be true or false, got {v}"
        ))),
    }
}

/// The engine query a body asks for.
fn to_query(v: Value, max: usize) -> Result<(Query, Shape), ApiError> {
    check_sizes(&v, "", max)?;
    let Value::Object(mut o) = v else {
        return Err(ApiError::bad_request(
            "request body: a query is a JSON object",
        ));
    };
    let shape = Shape {
        with_vector: take_bool(&mut o, "with_vector")?,
        explain: take_bool(&mut o, "explain")?,
    };
    if o.contains_key("prefetch") {
        if o.contains_key("query") {
            return Err(ApiError::bad_request(
                "give either \"query\" (the simple form) or \"prefetch\" (a plan), not both",
            ));
        }
        let plan: Plan = from_value(Value::Object(o))?;
        return Ok((Query::plan(plan), shape));
    }
    if let Some(q) = o.remove("query") {
        let key = match &q {
            Value::String(_) => "text",
            Value::Array(a) if a.first().is_some_and(Value::is_array) => "vectors",
            Value::Array(_) => "vector",
            other => {
                let m = format!("text, a vector or an array of vectors, got {other}");
                return Err(ApiError::bad_request(format!(
                    "request body, field \"query\": {m}"
                )));
            }
        };
        if o.contains_key(key) {
            return Err(ApiError::bad_request(format!(
                "give the query once: \"query\" or \"{key}\""
            )));
        }
        o.insert(key.into(), q);
    }
    Ok((from_value(Value::Object(o))?, shape))
}

/// Runs one query and shapes its answer.
fn answer(c: &Collection, q: &Query, shape: &Shape) -> Result<Value, ApiError> {
    let res = c.query(q)?;
    let snap = shape.with_vector.then(|| c.snapshot());
    let points: Vec<Value> = res
        .hits
        .iter()
        .map(|h| {
            let mut p = json!({"id": h.id, "score": h.score});
            if let Some(payload) = &h.payload {
                p["payload"] = Value::Object(payload.clone());
            }
            if let Some(doc) = snap.as_ref().and_then(|s| s.get(&h.id)) {
                // The stored point's vectors (the hit already carries its payload).
                if let Value::Object(o) = crate::points::point(&doc, false, true) {
                    for (k, x) in o.into_iter().filter(|(k, _)| k != "id") {
                        p[k] = x;
                    }
                }
            }
            p
        })
        .collect();
    let mut out = json!({"points": points, "mode": res.mode.name()});
    if !res.pending.is_empty() {
        out["pending"] = json!(res.pending);
    }
    if shape.explain {
        out["explain"] = serde_json::to_value(&res.explain)
            .map_err(|e| ApiError::internal(format!("explain: {e}")))?;
    }
    Ok(out)
}

fn run_one(db: &Database, name: &str, v: Value, max: usize) -> Result<Value, ApiError> {
    let (q, shape) = to_query(v, max)?;
    let c = db.collection(name)?;
    answer(&c, &q, &shape)
}

/// Searches a collection.
#[utoipa::path(post, path = "/collections/{name}/points/query", tag = "query",
    params(("name" = String, Path, description = "Collection name")),
    request_body = QueryBody,
    responses((status = 200, description = "`{\"points\": [{\"id\", \"score\", \"payload\"}], \"mode\"}`", body = Envelope),
              (status = 400, description = "bad query, plan, filter or size", body = ErrorBody),
              (status = 404, description = "no such collection", body = ErrorBody)))]
pub(crate) async fn query(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(b): Body,
) -> Response {
    let max = state.config().max_limit;
    state
        .run_json(b, move |db, v: Value| run_one(db, &name, v, max))
        .await
}

/// Several searches in one request, answered in order.
#[utoipa::path(post, path = "/collections/{name}/points/query/batch", tag = "query",
    params(("name" = String, Path, description = "Collection name")),
    request_body = BatchBody,
    responses((status = 200, description = "`[{\"points\": [...]}]`, one per search", body = Envelope),
              (status = 400, description = "a search is bad (named by position)", body = ErrorBody),
              (status = 404, description = "no such collection", body = ErrorBody)))]
pub(crate) async fn batch(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(b): Body,
) -> Response {
    let (max, max_queries) = (state.config().max_limit, state.config().max_batch_queries);
    state
        .run_json(b, move |db, req: BatchBody| {
            if req.searches.len() > max_queries {
                return Err(ApiError::bad_request(format!(
                    "searches: {} queries, more than max_batch_queries ({max_queries})",
                    req.searches.len()
                )));
            }
            let out = req
                .searches
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    run_one(db, &name, v, max).map_err(|e| ApiError {
                        status: e.status,
                        message: format!("searches[{i}]: {}", e.message),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Value::Array(out))
        })
        .await
}
