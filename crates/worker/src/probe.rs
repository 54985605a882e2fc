//! The worker's own small HTTP server: `/healthz` (alive), `/readyz`
//! (Postgres reachable with every migration applied, and consuming from
//! RabbitMQ) and `/metrics`, on `worker.http_addr`, so orchestrators can probe
//! each worker and Prometheus can scrape it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sqlx::PgPool;

use crate::metrics::WorkerMetrics;

#[derive(Clone)]
pub(crate) struct ProbeState {
    pub pool: PgPool,
    /// Set while the worker's consumers are registered with the broker.
    pub consuming: Arc<AtomicBool>,
    pub metrics: Arc<WorkerMetrics>,
}

pub(crate) fn router(state: ProbeState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<ProbeState>) -> impl IntoResponse {
    let (database, migrations) = match domain::db::migrations_applied(&state.pool).await {
        Ok(applied) => (true, applied),
        Err(_) => (false, false),
    };
    let amqp = state.consuming.load(Ordering::Relaxed);
    let ready = database && migrations && amqp;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if ready { "ready" } else { "unavailable" },
            "checks": {"database": database, "migrations": migrations, "amqp": amqp},
        })),
    )
}

async fn metrics(State(state): State<ProbeState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&state.pool),
    )
}
