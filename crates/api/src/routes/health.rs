//! Liveness and readiness probes.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use serde_json::json;

use crate::AppState;
use crate::authz::Policy;
use crate::openapi::{Operation, reference};
use crate::routes::{Doc, Route};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(
            Method::GET,
            "/healthz",
            Policy::Public,
            Doc::Operation(Operation::new("operations", "The process is up.").responds(
                "200",
                "The process is up.",
                json!({"type": "object"}),
            )),
            healthz,
        ),
        Route::new(
            Method::GET,
            "/readyz",
            Policy::Public,
            Doc::Operation(
                Operation::new(
                    "operations",
                    "Postgres and RabbitMQ reachable, migrations applied (503 otherwise).",
                )
                .responds("200", "Ready.", reference("Readiness"))
                .responds("503", "Not ready: see checks.", reference("Readiness")),
            ),
            readyz,
        ),
        Route::new(
            Method::GET,
            "/metrics",
            Policy::Public,
            Doc::Operation(
                Operation::new("operations", "Prometheus metrics in the text format.")
                    .responds_with(
                        "200",
                        json!({"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}),
                    ),
            ),
            metrics,
        ),
    ]
}

/// Prometheus metrics, in the text format.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let body = state.metrics.render(&state.pool, &state.publisher).await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

/// The process is up and serving.
async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Ready to take traffic: Postgres reachable with every migration applied, and
/// RabbitMQ reachable.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let (database, migrations) = match domain::db::migrations_applied(&state.pool).await {
        Ok(applied) => (true, applied),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: Postgres unreachable");
            (false, false)
        }
    };
    let amqp = match state.publisher.check().await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "readiness: RabbitMQ unreachable");
            false
        }
    };
    let ready = database && migrations && amqp;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "checks": {"database": database, "migrations": migrations, "amqp": amqp},
    });
    (status, Json(body))
}
