//! `/collections`: create (the body is a Quiver schema), list, describe, drop.

use crate::envelope::{ApiError, Body, Envelope, ErrorBody};
use crate::AppState;
use axum::extract::{Path, State};
use axum::response::Response;
use quiver::Schema;
use serde_json::json;
use std::time::Instant;

/// Collection names.
#[utoipa::path(get, path = "/collections", tag = "collections",
    responses((status = 200, description = "`{\"collections\": [{\"name\"}]}`", body = Envelope)))]
pub(crate) async fn list(State(state): State<AppState>) -> Response {
    state
        .run(Instant::now(), |db| {
            let names = db.list_collections()?;
            Ok(json!({"collections": names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>()}))
        })
        .await
}

/// Creates a collection; the body is its schema (`{"fields": {...}}`, as `quiver collection
/// create --schema-json` takes).
#[utoipa::path(put, path = "/collections/{name}", tag = "collections",
    params(("name" = String, Path, description = "Collection name")),
    request_body(content = Object, description = "A Quiver schema", content_type = "application/json"),
    responses((status = 200, description = "created", body = Envelope),
              (status = 400, description = "invalid name or schema", body = ErrorBody),
              (status = 409, description = "exists", body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(b): Body,
) -> Response {
    state
        .run(Instant::now(), move |db| {
            let text = std::str::from_utf8(&b)
                .map_err(|_| ApiError::bad_request("request body: not UTF-8"))?;
            let schema = Schema::parse(text)?;
            db.create_collection(&name, &schema)?;
            Ok(json!(true))
        })
        .await
}

/// The collection's figures (those of `quiver collection info --json`).
#[utoipa::path(get, path = "/collections/{name}", tag = "collections",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, description = "documents, segments, disk, fields, schema", body = Envelope),
              (status = 404, description = "no such collection", body = ErrorBody)))]
pub(crate) async fn info(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    state
        .run(Instant::now(), move |db| {
            Ok(db.collection(&name)?.describe()?)
        })
        .await
}

/// Drops a collection and its files.
#[utoipa::path(delete, path = "/collections/{name}", tag = "collections",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, description = "dropped", body = Envelope),
              (status = 404, description = "no such collection", body = ErrorBody)))]
pub(crate) async fn drop(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    state
        .run(Instant::now(), move |db| {
            db.drop_collection(&name)?;
            Ok(json!(true))
        })
        .await
}
