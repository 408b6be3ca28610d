//! The one guard every routed request passes: request id and log line, shutdown, API key,
//! concurrency limit, read timeout, metrics.

use crate::{ApiError, AppState};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Routes that answer without a key (liveness and readiness probes, as in Qdrant).
const OPEN_ROUTES: [&str; 2] = ["/healthz", "/readyz"];

/// Whether a request changes data: PUT and DELETE, and POST to a `.../delete` route (every
/// other POST carries a read: get many, scroll, count, query).
pub(crate) fn is_write(method: &Method, route: &str) -> bool {
    method == Method::PUT
        || method == Method::DELETE
        || method == Method::PATCH
        || (method == Method::POST && route.ends_with("/delete"))
}

/// What a key grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    ReadWrite,
    ReadOnly,
}

/// Compares in time that depends on the lengths only, not on where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The key presented: `api-key: K` or `Authorization: Bearer K`.
fn presented(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(k) = headers.get("api-key") {
        return Some(k.as_bytes());
    }
    let auth = headers.get(axum::http::header::AUTHORIZATION)?.as_bytes();
    let scheme = b"bearer ";
    (auth.len() > scheme.len() && auth[..scheme.len()].eq_ignore_ascii_case(scheme))
        .then(|| auth[scheme.len()..].trim_ascii())
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<Access, ApiError> {
    let c = state.config();
    if !c.has_keys() {
        return Ok(Access::ReadWrite);
    }
    let Some(key) = presented(headers) else {
        return Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "missing API key: send `api-key: KEY` or `Authorization: Bearer KEY`",
        ));
    };
    // Both comparisons always run, so timing does not tell which key was close.
    let rw = c
        .api_key
        .as_deref()
        .is_some_and(|k| same(k.as_bytes(), key));
    let ro = c
        .read_only_api_key
        .as_deref()
        .is_some_and(|k| same(k.as_bytes(), key));
    match (rw, ro) {
        (true, _) => Ok(Access::ReadWrite),
        (false, true) => Ok(Access::ReadOnly),
        _ => Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "invalid API key",
        )),
    }
}

/// The request id: the client's `x-request-id` when it is short printable ASCII, else a
/// counter.
fn request_id(state: &AppState, headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("q{}", state.0.next_request.fetch_add(1, Ordering::Relaxed)))
}

/// The guard (a route layer: it runs after routing, so the route template is known).
pub(crate) async fn guard(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = matched.map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().clone();
    let id = request_id(&state, req.headers());
    let mut resp = admit(&state, &method, &route, req, next, started).await;
    let status = resp.status();
    let seconds = started.elapsed().as_secs_f64();
    state
        .0
        .metrics
        .observe(method.as_str(), &route, status.as_u16(), seconds);
    tracing::info!(
        request_id = %id,
        method = %method,
        route = %route,
        status = status.as_u16(),
        ms = seconds * 1e3,
        "request"
    );
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

async fn admit(
    state: &AppState,
    method: &Method,
    route: &str,
    req: Request,
    next: Next,
    started: Instant,
) -> Response {
    if state.0.shutting_down.load(Ordering::SeqCst) && route != "/healthz" {
        return ApiError::unavailable("the server is shutting down").at(started);
    }
    let write = is_write(method, route);
    if !OPEN_ROUTES.contains(&route) {
        match authorize(state, req.headers()) {
            Ok(Access::ReadOnly) if write => {
                return ApiError::new(
                    axum::http::StatusCode::FORBIDDEN,
                    "this API key is read-only; writes need the read-write key",
                )
                .at(started)
            }
            Ok(_) => {}
            Err(e) => return e.at(started),
        }
    }
    let Ok(_permit) = state.0.permits.clone().try_acquire_owned() else {
        return ApiError::unavailable(format!(
            "overloaded: {} requests in flight (max_concurrency); retry later",
            state.config().max_concurrency
        ))
        .at(started);
    };
    if write {
        // A write runs to the end: its answer says whether it is durable.
        return next.run(req).await;
    }
    let limit = state.config().timeout();
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::unavailable(format!(
            "timed out after {:.1} s (timeout_seconds)",
            limit.as_secs_f64()
        ))
        .at(started),
    }
}

/// 404 for a path no route serves.
pub(crate) async fn no_route(req: Request) -> Response {
    ApiError::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
    .at(Instant::now())
}

/// 405 for a served path asked with another method.
pub(crate) async fn wrong_method(req: Request) -> Response {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not served for {}", req.method(), req.uri().path()),
    )
    .at(Instant::now())
}

/// CORS for the configured origins; `None` (off) when there are none.
pub(crate) fn cors(config: &crate::ServerConfig) -> Option<CorsLayer> {
    if config.cors_origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = config
        .cors_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                axum::http::header::CONTENT_TYPE,
                axum::http::header::AUTHORIZATION,
                axum::http::HeaderName::from_static("api-key"),
            ]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_keys() {
        assert!(is_write(&Method::PUT, "/collections/{name}/points"));
        assert!(is_write(&Method::POST, "/collections/{name}/points/delete"));
        assert!(!is_write(&Method::POST, "/collections/{name}/points/query"));
        assert!(!is_write(&Method::GET, "/collections"));
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer  sekrit "));
        assert_eq!(presented(&h), Some(&b"sekrit"[..]));
        h.insert("api-key", HeaderValue::from_static("other"));
        assert_eq!(presented(&h), Some(&b"other"[..]));
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"abc", b"ab"));
    }
}
