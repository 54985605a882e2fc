//! The worker's Prometheus metrics, served at `/metrics` on the worker's own
//! address: jobs by resource and final status, records by resource and
//! outcome, job and chunk durations, jobs in hand, webhook attempts by
//! outcome, and the database pool.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use sqlx::PgPool;

pub struct WorkerMetrics {
    registry: Registry,
    pub jobs_finished: IntCounterVec,
    pub records: IntCounterVec,
    pub job_duration: HistogramVec,
    pub chunk_duration: HistogramVec,
    pub jobs_in_flight: IntGauge,
    /// Steps retried after a transient database error, by step.
    pub retries: IntCounterVec,
    /// Unfinished jobs the sweeper queued a fresh message for.
    pub jobs_redispatched: prometheus::IntCounter,
    /// Webhook attempts, by outcome.
    pub webhook_deliveries: IntCounterVec,
    db_pool: IntGaugeVec,
}

impl WorkerMetrics {
    pub fn new() -> Self {
        let seconds = vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
        let jobs_finished = IntCounterVec::new(
            Opts::new(
                "worker_jobs_finished_total",
                "Jobs this worker ended, by resource and final status",
            ),
            &["resource", "status"],
        )
        .expect("valid metric");
        let records = IntCounterVec::new(
            Opts::new(
                "worker_records_total",
                "Records committed, by resource and outcome",
            ),
            &["resource", "outcome"],
        )
        .expect("valid metric");
        let job_duration = HistogramVec::new(
            HistogramOpts::new(
                "worker_job_duration_seconds",
                "Time from claim to final status",
            )
            .buckets(seconds.clone()),
            &["resource"],
        )
        .expect("valid metric");
        let chunk_duration = HistogramVec::new(
            HistogramOpts::new(
                "worker_chunk_duration_seconds",
                "Time to load and commit one chunk",
            )
            .buckets(seconds),
            &["resource"],
        )
        .expect("valid metric");
        let jobs_in_flight = IntGauge::new("worker_jobs_in_flight", "Jobs this worker is running")
            .expect("valid metric");
        let retries = IntCounterVec::new(
            Opts::new(
                "worker_transient_retries_total",
                "Steps retried after a transient database error (deadlock, serialization \
                 failure, lost connection), by step",
            ),
            &["step"],
        )
        .expect("valid metric");
        let jobs_redispatched = prometheus::IntCounter::new(
            "worker_jobs_redispatched_total",
            "Unfinished jobs whose message was lost, queued again by the sweeper",
        )
        .expect("valid metric");
        let webhook_deliveries = IntCounterVec::new(
            Opts::new(
                "worker_webhook_deliveries_total",
                "Webhook attempts, by outcome: delivered (2xx), retried (failed, tried again \
                 later), failed (failed, out of attempts) or superseded (answered after \
                 another worker had taken the delivery over)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let db_pool = telemetry::metrics::pool_gauge();
        let registry = telemetry::metrics::registry(vec![
            Box::new(jobs_finished.clone()),
            Box::new(records.clone()),
            Box::new(job_duration.clone()),
            Box::new(chunk_duration.clone()),
            Box::new(jobs_in_flight.clone()),
            Box::new(retries.clone()),
            Box::new(jobs_redispatched.clone()),
            Box::new(webhook_deliveries.clone()),
            Box::new(db_pool.clone()),
        ]);
        Self {
            registry,
            jobs_finished,
            records,
            job_duration,
            chunk_duration,
            jobs_in_flight,
            retries,
            jobs_redispatched,
            webhook_deliveries,
            db_pool,
        }
    }

    pub fn render(&self, pool: &PgPool) -> String {
        telemetry::metrics::set_pool(&self.db_pool, pool.size(), pool.num_idle());
        telemetry::metrics::encode(&self.registry)
    }
}

impl std::fmt::Debug for WorkerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkerMetrics(..)")
    }
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
