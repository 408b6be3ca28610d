//! The response envelope and errors, as Qdrant shapes them: `{"result": ..., "status": "ok",
//! "time": seconds}` on success, `{"status": {"error": "..."}, "time": seconds}` on failure, with
//! the status code that names what went wrong (bad input is 4xx, never 500).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use quiver::storage::StorageError;
use quiver::EngineError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use std::time::Instant;
use utoipa::ToSchema;

/// A successful answer (the shape every route answers with).
#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope {
    /// The route's result.
    #[schema(value_type = Object)]
    pub result: Value,
    /// Always `ok`.
    pub status: String,
    /// Seconds the server spent on the request.
    pub time: f64,
}

/// A failed request.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// `{"error": "what went wrong"}`.
    #[schema(value_type = Object)]
    pub status: Value,
    /// Seconds the server spent on the request.
    pub time: f64,
}

/// An error answer: a status code and a message that names the part of the request at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong.
    pub message: String,
}

impl ApiError {
    /// An error with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400: the request is malformed or names something invalid.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 500: the server failed (never for bad input).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 503: shutting down, overloaded or timed out.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// The JSON answer, timed from `started`.
    pub fn at(self, started: Instant) -> Response {
        let body =
            json!({"status": {"error": self.message}, "time": started.elapsed().as_secs_f64()});
        (self.status, Json(body)).into_response()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"status": {"error": self.message}, "time": 0.0});
        (self.status, Json(body)).into_response()
    }
}

/// The status code of a storage error: what the caller got wrong is 4xx.
fn storage_status(e: &StorageError) -> StatusCode {
    match e {
        StorageError::CollectionNotFound(_) => StatusCode::NOT_FOUND,
        StorageError::CollectionExists(_) => StatusCode::CONFLICT,
        StorageError::Schema(_)
        | StorageError::InvalidDocument { .. }
        | StorageError::DuplicateId { .. }
        | StorageError::InvalidFilter(_)
        | StorageError::InvalidName(_) => StatusCode::BAD_REQUEST,
        StorageError::InBatch { source, .. } => storage_status(source),
        StorageError::ReadOnly { .. } => StatusCode::FORBIDDEN,
        StorageError::Locked { .. } => StatusCode::CONFLICT,
        StorageError::Io { .. }
        | StorageError::Corrupt { .. }
        | StorageError::Redb(_)
        | StorageError::Maintenance(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        let status = match &e {
            EngineError::Storage(s) => storage_status(s),
            EngineError::Query(_) | EngineError::Document { .. } | EngineError::BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            EngineError::ReadOnly(_) => StatusCode::FORBIDDEN,
            // A model the registry does not know is the request's fault (as Python's NotFound);
            // one that fails to load or run is the server's.
            EngineError::Model { message, .. } if message.contains("unknown model") => {
                StatusCode::NOT_FOUND
            }
            EngineError::Model { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> ApiError {
        ApiError::new(storage_status(&e), e.to_string())
    }
}

/// A request body, read whole (within the body limit). A body that cannot be read is answered
/// in the envelope with its own status (413 past the limit).
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(|e| rejected(e).into_response())
    }
}

/// A body that could not be read, as an API error.
pub fn rejected(e: BytesRejection) -> ApiError {
    ApiError::new(e.status(), format!("request body: {}", e.body_text()))
}

/// The success envelope around `result`, timed from `started`.
pub fn ok(result: Value, started: Instant) -> Response {
    Json(json!({"result": result, "status": "ok", "time": started.elapsed().as_secs_f64()}))
        .into_response()
}

/// Parses a JSON body into `T`; a type error names the field by its path (`points[3].id`).
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let v = serde_path_to_error::deserialize(&mut de).map_err(path_error)?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("request body: {e}")))?;
    Ok(v)
}

/// Like [`parse`], from a JSON value already read.
pub fn from_value<T: DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(v).map_err(path_error)
}

fn path_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if path.is_empty() || path == "." {
        ApiError::bad_request(format!("request body: {inner}"))
    } else {
        ApiError::bad_request(format!("request body, field {path:?}: {inner}"))
    }
}
