//! Per-request context: every request gets an id (`X-Request-Id` on the
//! response, `request_id` in error bodies and logs), and every error response
//! is rendered in the documented envelope here, in one place.

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Span;

use crate::AppState;
use crate::error::{ApiError, generic};

pub const REQUEST_ID: &str = "x-request-id";

/// Assigns the request id and renders error envelopes.
pub async fn request_context(mut request: Request, next: Next) -> Response {
    // Our own id, never the client's: it is written to logs and job rows.
    let id = format!("req_{}", uuid::Uuid::now_v7().simple());
    let value = HeaderValue::from_str(&id).expect("a request id is ASCII");
    request.headers_mut().insert(REQUEST_ID, value.clone());

    let mut response = next.run(request).await;
    let error = response.extensions_mut().remove::<ApiError>();
    let status = response.status();
    let unrendered = status.is_client_error() || status.is_server_error();
    let has_body_type = response.headers().contains_key(header::CONTENT_TYPE);
    let error = match error {
        Some(e) => Some(e),
        // An error axum or a layer produced on its own (405, say).
        None if unrendered && !has_body_type => Some(generic(status)),
        None => None,
    };
    if let Some(error) = error {
        let body = serde_json::to_vec(&error.body(&id)).expect("an error body serializes");
        *response.body_mut() = Body::from(body);
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response.headers_mut().remove(header::CONTENT_LENGTH);
    }
    response.headers_mut().insert(REQUEST_ID, value);
    response
}

/// Counts the request and times it, by route template (not by path, which
/// would make a series per id).
pub async fn record_metrics(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_owned();
    let method = request.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let metrics = &state.metrics;
    metrics
        .latency
        .with_label_values(&[&route, &method])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .with_label_values(&[&route, &method, response.status().as_str()])
        .inc();
    response
}

/// The tracing span of a request, carrying its id.
pub fn span(request: &Request) -> Span {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = id,
    )
}

/// The id of the request, as the middleware set it.
pub fn request_id(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers.get(REQUEST_ID).and_then(|v| v.to_str().ok())
}
