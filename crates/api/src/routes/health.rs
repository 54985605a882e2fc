//! Liveness and readiness probes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
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
