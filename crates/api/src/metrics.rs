//! The API's Prometheus metrics, served at `/metrics`: requests by route,
//! method and status with latency histograms, jobs accepted by resource, and,
//! read when scraped, the outbox backlog, the queues' depth and consumers, and
//! the database pool.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use queue::Publisher;
use sqlx::PgPool;

pub struct ApiMetrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub jobs_accepted: IntCounterVec,
    outbox_backlog: IntGauge,
    queue_messages: IntGaugeVec,
    queue_consumers: IntGaugeVec,
    db_pool: IntGaugeVec,
}

impl ApiMetrics {
    pub fn new() -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
                ],
            ),
            &["route", "method"],
        )
        .expect("valid metric");
        let jobs_accepted = IntCounterVec::new(
            Opts::new(
                "jobs_accepted_total",
                "Migration jobs accepted, by resource",
            ),
            &["resource"],
        )
        .expect("valid metric");
        let outbox_backlog =
            IntGauge::new("outbox_backlog", "Jobs committed but not yet published")
                .expect("valid metric");
        let queue_messages = IntGaugeVec::new(
            Opts::new("queue_messages", "Messages ready in each job queue"),
            &["queue"],
        )
        .expect("valid metric");
        let queue_consumers = IntGaugeVec::new(
            Opts::new("queue_consumers", "Consumers of each job queue"),
            &["queue"],
        )
        .expect("valid metric");
        let db_pool = telemetry::metrics::pool_gauge();
        let registry = telemetry::metrics::registry(vec![
            Box::new(requests.clone()),
            Box::new(latency.clone()),
            Box::new(jobs_accepted.clone()),
            Box::new(outbox_backlog.clone()),
            Box::new(queue_messages.clone()),
            Box::new(queue_consumers.clone()),
            Box::new(db_pool.clone()),
        ]);
        Self {
            registry,
            requests,
            latency,
            jobs_accepted,
            outbox_backlog,
            queue_messages,
            queue_consumers,
            db_pool,
        }
    }

    /// Reads the gauges that are cheaper to read when scraped than to keep,
    /// and renders everything in the Prometheus text format. A gauge whose
    /// source is unreachable keeps its last value; `/readyz` says why.
    pub async fn render(&self, pool: &PgPool, publisher: &Publisher) -> String {
        telemetry::metrics::set_pool(&self.db_pool, pool.size(), pool.num_idle());
        if let Ok(mut conn) = pool.acquire().await
            && let Ok(backlog) = domain::outbox::backlog(&mut conn).await
        {
            self.outbox_backlog.set(backlog);
        }
        if let Ok(stats) = publisher.queue_stats().await {
            for (queue, messages, consumers) in stats {
                self.queue_messages
                    .with_label_values(&[&queue])
                    .set(i64::from(messages));
                self.queue_consumers
                    .with_label_values(&[&queue])
                    .set(i64::from(consumers));
            }
        }
        telemetry::metrics::encode(&self.registry)
    }
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self::new()
    }
}
