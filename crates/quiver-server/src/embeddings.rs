//! Embeddings as OpenAI (`POST /v1/embeddings`, `GET /v1/models`) and Hugging Face TEI (`POST
//! /embed`) serve them, from the models of the database's pool. These routes answer in their
//! own dialects, not in the Qdrant envelope: OpenAI's `{"object": "list", "data": [...]}` and
//! `{"error": {"message", "type", "param", "code"}}`, TEI's bare arrays and `{"error",
//! "error_type"}`, so the official clients parse them.

use crate::envelope::{parse, rejected, ApiError};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use quiver::EmbeddedTexts;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

/// `POST /v1/embeddings`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct OpenAiRequest {
    /// A registry model name (`GET /v1/models`), e.g. `all-MiniLM-L6-v2`.
    model: String,
    /// A string or an array of strings (token arrays are refused).
    #[schema(value_type = Object)]
    input: Value,
    /// Keep the first `dimensions` components (a Matryoshka prefix, renormalised).
    dimensions: Option<usize>,
    /// `float` (default) or `base64` (little-endian f32).
    encoding_format: Option<String>,
    /// Accepted and ignored.
    #[allow(dead_code)]
    user: Option<String>,
}

/// `POST /embed` (TEI).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TeiRequest {
    /// A string or an array of strings.
    #[schema(value_type = Object)]
    inputs: Value,
    /// Must stay true for models that normalise (their pipeline ends with it).
    #[serde(default = "yes")]
    normalize: bool,
    /// Cut inputs past the model's `max_seq_length` (default false: such inputs are refused
    /// with 413, as TEI does).
    #[serde(default)]
    truncate: bool,
    /// Accepted for TEI clients; only `right` is supported.
    truncation_direction: Option<String>,
    /// Keep the first `dimensions` components (renormalised).
    dimensions: Option<usize>,
    /// The model (default: the server's `embed_model`).
    model: Option<String>,
}

fn yes() -> bool {
    true
}

/// An error in OpenAI's shape.
fn openai_error(e: ApiError, param: Option<&str>) -> Response {
    let kind = if e.status.is_client_error() {
        "invalid_request_error"
    } else {
        "server_error"
    };
    let body =
        json!({"error": {"message": e.message, "type": kind, "param": param, "code": Value::Null}});
    (e.status, Json(body)).into_response()
}

/// An error in TEI's shape.
fn tei_error(e: ApiError) -> Response {
    let kind = match e.status {
        StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::UNPROCESSABLE_ENTITY
        | StatusCode::BAD_REQUEST => "Validation",
        StatusCode::SERVICE_UNAVAILABLE => "Overloaded",
        _ => "Backend",
    };
    (
        e.status,
        Json(json!({"error": e.message, "error_type": kind})),
    )
        .into_response()
}

/// The texts of `input`: a string or an array of strings.
fn texts(input: Value, key: &str) -> Result<Vec<String>, ApiError> {
    match input {
        Value::String(s) => Ok(vec![s]),
        Value::Array(a) if a.is_empty() => {
            Err(ApiError::bad_request(format!("{key}: empty array")))
        }
        Value::Array(a) => a
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s),
                Value::Number(_) | Value::Array(_) => Err(ApiError::bad_request(format!(
                    "{key}[{i}]: token arrays are not supported; send text"
                ))),
                other => Err(ApiError::bad_request(format!(
                    "{key}[{i}]: expected a string, got {other}"
                ))),
            })
            .collect(),
        other => Err(ApiError::bad_request(format!(
            "{key}: expected a string or an array of strings, got {other}"
        ))),
    }
}

/// Runs the model on the blocking pool.
async fn embed(
    state: &AppState,
    model: String,
    texts: Vec<String>,
    dims: Option<usize>,
) -> Result<EmbeddedTexts, ApiError> {
    let max = state.config().max_batch;
    if texts.len() > max {
        return Err(ApiError::bad_request(format!(
            "{} inputs, more than max_batch ({max})",
            texts.len()
        )));
    }
    let db = state.db().clone();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        db.pool()
            .embed_texts(&model, &refs, dims)
            .map_err(|e| match e {
                // A model that is not in the registry is the caller's mistake.
                quiver::EngineError::Model { .. } if !known_model(&model) => ApiError::not_found(
                    format!("model {model:?} is not in the registry (GET /v1/models)"),
                ),
                e => ApiError::from(e),
            })
    })
    .await
    .map_err(|e| ApiError::internal(format!("embedding failed inside the server: {e}")))?
}

fn registry() -> Vec<(String, bool)> {
    quiver::embed::registry::Registry::load()
        .map(|r| {
            r.models
                .iter()
                .map(|m| {
                    (
                        m.name.clone(),
                        quiver::embed::fetch::cached_model(&m.name).is_ok(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn known_model(name: &str) -> bool {
    registry().iter().any(|(n, _)| n == name)
        || std::path::Path::new(name).join("config.json").exists()
}

/// Embeddings, as OpenAI's API answers them (the official `openai` client works against it).
#[utoipa::path(post, path = "/v1/embeddings", tag = "embeddings",
    request_body = OpenAiRequest,
    responses((status = 200, description = "`{\"object\": \"list\", \"data\": [{\"object\": \"embedding\", \"embedding\", \"index\"}], \"model\", \"usage\"}`"),
              (status = 400, description = "`{\"error\": {\"message\", \"type\", \"param\"}}`"),
              (status = 404, description = "unknown model")))]
pub(crate) async fn openai(
    State(state): State<AppState>,
    b: Result<Bytes, BytesRejection>,
) -> Response {
    let b = match b {
        Ok(b) => b,
        Err(e) => return openai_error(rejected(e), None),
    };
    let req: OpenAiRequest = match parse(&b) {
        Ok(r) => r,
        Err(e) => return openai_error(e, None),
    };
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return openai_error(
                ApiError::bad_request(format!(
                    "encoding_format {other:?}: use \"float\" or \"base64\""
                )),
                Some("encoding_format"),
            )
        }
    };
    let texts = match texts(req.input, "input") {
        Ok(t) => t,
        Err(e) => return openai_error(e, Some("input")),
    };
    let out = match embed(&state, req.model.clone(), texts, req.dimensions).await {
        Ok(o) => o,
        Err(e) => return openai_error(e, None),
    };
    let data: Vec<Value> = out
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "embedding": embedding, "index": i})
        })
        .collect();
    let tokens: usize = out.tokens.iter().sum();
    Json(json!({"object": "list", "data": data, "model": req.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))
    .into_response()
}

/// The registry's models, as OpenAI lists models (`cached`: pulled into this machine's cache).
#[utoipa::path(get, path = "/v1/models", tag = "embeddings",
    responses((status = 200, description = "`{\"object\": \"list\", \"data\": [{\"id\", \"object\": \"model\", \"owned_by\", \"cached\"}]}`")))]
pub(crate) async fn models() -> Response {
    let list = tokio::task::spawn_blocking(registry)
        .await
        .unwrap_or_default();
    let data: Vec<Value> = list
        .into_iter()
        .map(|(id, cached)| json!({"id": id, "object": "model", "created": 0, "owned_by": "quiver", "cached": cached}))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

/// Embeddings, as Hugging Face's text-embeddings-inference answers them: one array per input.
#[utoipa::path(post, path = "/embed", tag = "embeddings",
    request_body = TeiRequest,
    responses((status = 200, description = "`[[f32]]`, one per input"),
              (status = 413, description = "an input is longer than the model reads and truncate is false"),
              (status = 422, description = "`{\"error\", \"error_type\"}`")))]
pub(crate) async fn tei(
    State(state): State<AppState>,
    b: Result<Bytes, BytesRejection>,
) -> Response {
    let b = match b {
        Ok(b) => b,
        Err(e) => return tei_error(rejected(e)),
    };
    let req: TeiRequest = match parse(&b) {
        Ok(r) => r,
        Err(e) => return tei_error(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.message)),
    };
    if req
        .truncation_direction
        .as_deref()
        .is_some_and(|d| !d.eq_ignore_ascii_case("right"))
    {
        return tei_error(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "truncation_direction: only \"right\" is supported",
        ));
    }
    let texts = match texts(req.inputs, "inputs") {
        Ok(t) => t,
        Err(e) => return tei_error(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.message)),
    };
    let model = req
        .model
        .unwrap_or_else(|| state.config().embed_model.clone());
    let out = match embed(&state, model.clone(), texts, req.dimensions).await {
        Ok(o) => o,
        Err(e) => return tei_error(e),
    };
    if out.normalized && !req.normalize {
        return tei_error(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "normalize=false: model {model} normalises its vectors as part of its pipeline"
            ),
        ));
    }
    if !req.truncate {
        if let Some(i) = out.tokens.iter().position(|&n| n >= out.max_tokens) {
            return tei_error(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "input {i} reaches the model's {} tokens; pass truncate=true to cut it",
                    out.max_tokens
                ),
            ));
        }
    }
    Json(json!(out.vectors)).into_response()
}
