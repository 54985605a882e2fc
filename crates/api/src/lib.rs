//! The HTTP API: accepts bulk imports, answers dry runs, serves job status.
//!
//! The API never loads records itself (a dry run is the exception: it runs the
//! same import on a transaction that is rolled back). A submission stores the
//! job, its records and its outbox message in one transaction; the outbox relay
//! running in this process publishes it at once, and a relay in any other
//! process publishes it if this one dies first.

mod context;
pub mod error;
mod routes;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use queue::{Publisher, Relay, Topology};
use settings::Settings;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower_http::trace::TraceLayer;

pub use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub publisher: Arc<Publisher>,
    /// Wakes the outbox relay when a job was just committed.
    pub relay_notify: Arc<Notify>,
}

impl auth::AuthState for AppState {
    type Rejection = ApiError;

    fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// A built application: its listener is bound, so callers (tests) can ask for
/// the port before it serves.
pub struct Application {
    listener: TcpListener,
    router: Router,
    relay: Relay,
}

impl Application {
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let pool = domain::db::connect(settings.database.url(), settings.database.max_connections)
            .await
            .context("connecting to Postgres")?;
        let publisher = Arc::new(Publisher::new(
            settings.amqp.url(),
            "arcus-api",
            Topology::new(&settings.amqp.prefix),
        ));
        publisher.check().await.context("connecting to RabbitMQ")?;
        let state = AppState {
            pool: pool.clone(),
            publisher: publisher.clone(),
            relay_notify: Arc::new(Notify::new()),
        };
        let relay = Relay {
            pool,
            publisher,
            notify: state.relay_notify.clone(),
            interval: Duration::from_millis(settings.amqp.relay_interval_ms),
        };
        let listener = TcpListener::bind(&settings.http.addr)
            .await
            .with_context(|| format!("binding {}", settings.http.addr))?;
        Ok(Self {
            listener,
            router: router(state, settings.http.max_body_bytes),
            relay,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
            .port()
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_relay, relay_stopped) = tokio::sync::oneshot::channel::<()>();
        let relay = tokio::spawn(self.relay.run(async {
            let _ = relay_stopped.await;
        }));
        tracing::info!(addr = %self.listener.local_addr()?, "serving");
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await;
        let _ = stop_relay.send(());
        let _ = relay.await;
        served.context("serving HTTP")
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .merge(routes::health::router())
        .merge(routes::migration::router())
        .merge(routes::records::router())
        .merge(routes::reconciliation::router())
        .fallback(routes::fallback)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(TraceLayer::new_for_http().make_span_with(context::span))
        .layer(axum::middleware::from_fn(context::request_context))
        .with_state(state)
}
