//! The HTTP API: accepts bulk imports, answers dry runs, serves job status.
//!
//! The API never loads records itself (a dry run is the exception: it runs the
//! same import on a transaction that is rolled back). A submission stores the
//! job, its records and its outbox message in one transaction; the outbox relay
//! running in this process publishes it at once, and a relay in any other
//! process publishes it if this one dies first.

mod authz;
mod context;
pub mod error;
mod extract;
mod metrics;
pub mod openapi;
pub mod ratelimit;
mod request;
mod routes;
mod server;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use auth::{KeyCache, KeyHasher};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use metrics::ApiMetrics;
use queue::{Publisher, Relay, Topology};
use ratelimit::{Clock, RateLimiter, SystemClock};
use server::ConnectionLimits;
use settings::{HttpSettings, Settings};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub publisher: Arc<Publisher>,
    /// Wakes the outbox relay when a job was just committed.
    pub relay_notify: Arc<Notify>,
    pub key_hasher: KeyHasher,
    /// Keys looked up recently, kept only while revocations are heard.
    pub key_cache: Arc<KeyCache>,
    /// `None` when rate limiting is switched off.
    pub rate_limiter: Option<Arc<RateLimiter>>,
    pub metrics: Arc<ApiMetrics>,
}

impl auth::AuthState for AppState {
    type Rejection = ApiError;

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn key_hasher(&self) -> &KeyHasher {
        &self.key_hasher
    }

    fn key_cache(&self) -> &KeyCache {
        &self.key_cache
    }
}

/// A built application: its listener is bound, so callers (tests) can ask for
/// the port before it serves.
pub struct Application {
    listener: TcpListener,
    router: Router,
    relay: Relay,
    /// What the key revocation listener needs: the pool and the cache it
    /// keeps honest.
    revocations: (PgPool, Arc<KeyCache>),
    limits: ConnectionLimits,
}

impl Application {
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// Builds with the clock the rate limiter reads, which tests control.
    pub async fn build_with_clock(
        settings: &Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        if settings.auth.uses_development_secret() {
            tracing::warn!(
                "ARCUS__AUTH__KEY_SECRET is not set: API keys are hashed with the public \
                 development secret; set it in any deployment"
            );
        }
        let pool = domain::db::connect(settings.database.url(), settings.database.max_connections)
            .await
            .context("connecting to Postgres")?;
        let publisher = Arc::new(Publisher::new(
            settings.amqp.url(),
            "arcus-api",
            Topology::new(&settings.amqp.prefix),
        ));
        publisher.check().await.context("connecting to RabbitMQ")?;
        let rate_limiter = settings
            .rate_limit
            .enabled
            .then(|| Arc::new(RateLimiter::new(clock, settings.rate_limit.replicas)));
        let state = AppState {
            pool: pool.clone(),
            publisher: publisher.clone(),
            relay_notify: Arc::new(Notify::new()),
            key_hasher: KeyHasher::new(settings.auth.key_secret()),
            key_cache: Arc::new(KeyCache::new()),
            rate_limiter,
            metrics: Arc::new(ApiMetrics::new()),
        };
        let revocations = (pool.clone(), state.key_cache.clone());
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
            router: router(state, &settings.http),
            relay,
            revocations,
            limits: ConnectionLimits {
                header_read_timeout: Duration::from_secs(settings.http.header_read_timeout_secs),
                max_header_bytes: settings.http.max_header_bytes,
            },
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
        let (pool, cache) = self.revocations;
        let revocations = tokio::spawn(auth::follow_revocations(pool, cache));
        tracing::info!(addr = %self.listener.local_addr()?, "serving");
        let served = server::serve(self.listener, self.router, self.limits, shutdown).await;
        revocations.abort();
        let _ = stop_relay.send(());
        let _ = relay.await;
        served.context("serving HTTP")
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState, http: &HttpSettings) -> Router {
    routes::router(&state)
        .fallback(routes::fallback)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            context::record_metrics,
        ))
        .layer(DefaultBodyLimit::max(http.max_body_bytes))
        // A client that trickles its body is cut off with a 408.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(http.request_timeout_secs),
        ))
        .layer(TraceLayer::new_for_http().make_span_with(context::span))
        .layer(axum::middleware::from_fn(context::request_context))
        .with_state(state)
}
