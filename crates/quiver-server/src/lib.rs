//! # quiver-server: `quiver serve`
//!
//! An HTTP face over the [`quiver`] engine API, on axum + tokio, serving one [`Database`].
//! Paths and envelope follow Qdrant's REST API where Quiver's model fits it, so users' habits
//! carry over:
//!
//! ```text
//!   GET    /collections                          names
//!   PUT    /collections/{name}                   create (body: a Quiver schema)      409 exists
//!   GET    /collections/{name}                   `quiver collection info`'s figures
//!   DELETE /collections/{name}                   drop
//!   PUT    /collections/{name}/points            upsert {"points": [documents]}, durable on 200
//!   POST   /collections/{name}/points            get many {"ids": [...]}
//!   GET    /collections/{name}/points/{id}       get one
//!   POST   /collections/{name}/points/delete     {"points": [ids]} or {"filter": ...}
//!   POST   /collections/{name}/points/scroll     {"limit", "offset" (cursor), "filter"}
//!   POST   /collections/{name}/points/count      {"filter"}
//!   POST   /collections/{name}/points/query      a Quiver query or plan
//!   POST   /collections/{name}/points/query/batch {"searches": [...]}
//!   POST   /v1/embeddings   GET /v1/models        OpenAI's embeddings API (its own shapes)
//!   POST   /embed                                Hugging Face TEI's embed route
//!   GET    /healthz  /readyz  /metrics  /openapi.json
//! ```
//!
//! Every answer is `{"result": ..., "status": "ok", "time": s}` or `{"status": {"error": m},
//! "time": s}` with a status code that names the fault (400 bad input, 401/403 keys, 404, 409,
//! 413 body too large (the connection closes after it), 503 overloaded, timed out or shutting
//! down). Engine work runs on tokio's blocking pool (`spawn_blocking`), never on the async workers, so a slow request does
//! not stall the others. Requests pass one guard ([`guard`]): request id and log line, API key,
//! concurrency limit (503 past it, never an unbounded queue), read timeout, metrics.
//!
//! ```no_run
//! # async fn run() -> Result<(), quiver_server::ServeError> {
//! let db = quiver::Database::open("./quiver-data")?;
//! let config = quiver_server::ServerConfig::default(); // 127.0.0.1:6333, no keys
//! quiver_server::serve(db, config, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod collections;
mod config;
mod embeddings;
pub mod envelope;
mod evolve;
mod guard;
mod metrics;
mod ops;
mod points;
mod query;

pub use config::{ConfigError, ServerConfig};
pub use envelope::ApiError;

use axum::extract::DefaultBodyLimit;
use axum::response::Response;
use axum::Router;
use parking_lot::RwLock;
use quiver::Database;
use serde_json::Value;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database could not be opened.
    #[error(transparent)]
    Engine(#[from] quiver::EngineError),
    /// Binding or serving failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Readiness: models of every collection loaded (or the error that stopped it).
#[derive(Debug, Clone)]
enum Readiness {
    Loading,
    Ready,
    Failed(String),
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    db: Arc<Database>,
    config: ServerConfig,
    permits: Arc<Semaphore>,
    metrics: metrics::Metrics,
    next_request: AtomicU64,
    shutting_down: AtomicBool,
    ready: RwLock<Readiness>,
    openapi: RwLock<Value>,
    backfills: Arc<evolve::Backfills>,
}

impl AppState {
    /// State over `db` with `config`.
    pub fn new(db: Database, config: ServerConfig) -> AppState {
        AppState(Arc::new(Inner {
            db: Arc::new(db),
            permits: Arc::new(Semaphore::new(config.max_concurrency)),
            config,
            metrics: metrics::Metrics::default(),
            next_request: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
            ready: RwLock::new(Readiness::Loading),
            openapi: RwLock::new(Value::Null),
            backfills: Arc::default(),
        }))
    }

    /// The database served.
    pub fn db(&self) -> &Arc<Database> {
        &self.0.db
    }

    pub(crate) fn config(&self) -> &ServerConfig {
        &self.0.config
    }

    /// The background backfills, per collection.
    pub(crate) fn backfills(&self) -> &Arc<evolve::Backfills> {
        &self.0.backfills
    }

    /// Runs `f` on the blocking pool and wraps its answer in the envelope, timed from
    /// `started`. A panic in `f` is answered with 500 (the engine stays usable).
    pub(crate) async fn run<F>(&self, started: Instant, f: F) -> Response
    where
        F: FnOnce(&Database) -> Result<Value, ApiError> + Send + 'static,
    {
        let db = self.0.db.clone();
        match tokio::task::spawn_blocking(move || f(&db)).await {
            Ok(Ok(v)) => envelope::ok(v, started),
            Ok(Err(e)) => e.at(started),
            Err(e) => {
                ApiError::internal(format!("the request failed inside the server: {e}")).at(started)
            }
        }
    }

    /// [`AppState::run`] for a JSON body: parses it into `T` (an empty body as `{}`) on the
    /// blocking pool, then runs `f`.
    pub(crate) async fn run_json<T, F>(&self, body: axum::body::Bytes, f: F) -> Response
    where
        T: serde::de::DeserializeOwned,
        F: FnOnce(&Database, T) -> Result<Value, ApiError> + Send + 'static,
    {
        self.run(Instant::now(), move |db| {
            let req = if body.is_empty() {
                envelope::parse(b"{}")
            } else {
                envelope::parse(&body)
            }?;
            f(db, req)
        })
        .await
    }

    /// Loads the models of every collection's fields, then marks the server ready.
    async fn warm_up(&self) {
        let db = self.0.db.clone();
        let loaded = tokio::task::spawn_blocking(move || ops::load_models(&db)).await;
        *self.0.ready.write() = match loaded {
            Ok(Ok(())) => Readiness::Ready,
            Ok(Err(e)) => Readiness::Failed(e),
            Err(e) => Readiness::Failed(format!("loading models: {e}")),
        };
    }

    fn begin_shutdown(&self) {
        self.0.shutting_down.store(true, Ordering::SeqCst);
        self.0.backfills.stop_all();
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Quiver",
        description = "Quiver's REST API: collections, points and queries in Qdrant's shape over \
                       the Quiver engine."
    ),
    components(schemas(envelope::Envelope, envelope::ErrorBody))
)]
struct ApiDoc;

/// The router and its OpenAPI document: every route is registered through `routes!`, so the
/// document lists exactly what is served.
pub fn router(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let (routes, api) = OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
        .routes(routes!(collections::list))
        .routes(routes!(
            collections::create,
            collections::info,
            collections::drop
        ))
        .routes(routes!(evolve::add_field, evolve::drop_field))
        .routes(routes!(evolve::switch_model))
        .routes(routes!(evolve::start_backfill, evolve::backfill_status))
        .routes(routes!(evolve::classify))
        .routes(routes!(evolve::adapt, evolve::remove_adapter))
        .routes(routes!(points::upsert, points::get_many))
        .routes(routes!(points::get_one))
        .routes(routes!(points::delete))
        .routes(routes!(points::scroll))
        .routes(routes!(points::count))
        .routes(routes!(query::query))
        .routes(routes!(query::batch))
        .routes(routes!(embeddings::openai))
        .routes(routes!(embeddings::models))
        .routes(routes!(embeddings::tei))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi))
        .split_for_parts();
    *state.0.openapi.write() = serde_json::to_value(&api).unwrap_or(Value::Null);
    let mut app = routes
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .fallback(guard::no_route)
        .method_not_allowed_fallback(guard::wrong_method)
        .layer(DefaultBodyLimit::max(state.config().body_limit_bytes))
        .layer(axum::middleware::map_response(close_after_413));
    if let Some(cors) = guard::cors(state.config()) {
        app = app.layer(cors);
    }
    (app.with_state(state), api)
}

/// A 413 leaves the rest of an oversized body unread, so the server closes the connection after
/// it; `Connection: close` says so, and a client does not send its next request down a socket
/// that is about to close (it would get a broken connection instead of an answer).
async fn close_after_413(mut response: axum::response::Response) -> axum::response::Response {
    if response.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Binds `config.addr` and serves `db` until `shutdown` completes (see [`serve_on`]).
pub async fn serve(
    db: Database,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    // serve_on validates too; refuse a bad configuration before binding.
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    serve_on(listener, db, config, shutdown).await
}

/// Serves `db` on `listener` until `shutdown` completes: then stops accepting, lets in-flight
/// requests finish (an acknowledged write is durable before its answer is sent), and returns;
/// the database closes when the last handle is dropped.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    db: Database,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    config.validate()?;
    let state = AppState::new(db, config);
    let (app, _) = router(state.clone());
    let warm = state.clone();
    tokio::spawn(async move { warm.warm_up().await });
    let closing = state.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            closing.begin_shutdown();
            tracing::info!("shutting down: finishing in-flight requests");
        })
        .await?;
    Ok(())
}
