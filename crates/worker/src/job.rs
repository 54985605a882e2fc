//! One job, start to finish, without the consume loop: claim it, load its
//! records chunk by chunk through the canonical handlers, checkpoint each chunk
//! with the job's counters, and give it its final status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::ConflictMode;
use domain::error::RecordError;
use domain::import::{self, ImportContext, ImportError, RecordFailure, Tally};
use domain::jobs::{self, ClaimResult, ClaimedJob, FencedError, JobStatus};
use sqlx::PgPool;
use uuid::Uuid;

use crate::metrics::WorkerMetrics;

/// Claims of one job after which it is given up: its remaining records fail
/// with `internal_error`, so even a job that keeps crashing its worker ends.
const MAX_ATTEMPTS: i32 = 5;

/// What processing needs besides the job id.
#[derive(Debug, Clone)]
pub struct JobRunner {
    pub pool: PgPool,
    /// Who claims the job, as shown in the job's lease.
    pub owner: String,
    pub chunk_size: usize,
    pub lease_seconds: u32,
    pub metrics: Arc<WorkerMetrics>,
}

/// How a delivery of a job ended, which decides what happens to the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// This worker brought the job to a final status.
    Finished(JobStatus),
    /// The job had already reached a final status: nothing to do.
    AlreadyFinished,
    /// Another worker holds a live claim on the job; try again later.
    Busy,
    /// No such job.
    NotFound,
    /// Another worker took the job over while this one ran; it finishes it.
    LeaseLost,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("job {0} holds {1} records but says it has {2}")]
    CorruptJob(Uuid, usize, i32),
}

impl JobRunner {
    /// Processes a job to its end, or until another worker owns it.
    pub async fn process(&self, job_id: Uuid) -> Result<Outcome, ProcessError> {
        let job = match jobs::claim(&self.pool, job_id, &self.owner, self.lease_seconds).await? {
            ClaimResult::Claimed(job) => job,
            ClaimResult::Finished => return Ok(Outcome::AlreadyFinished),
            ClaimResult::Busy => return Ok(Outcome::Busy),
            ClaimResult::NotFound => return Ok(Outcome::NotFound),
        };
        tracing::info!(
            attempt = job.attempts,
            resume_at = job.next_index,
            "claimed {job}"
        );
        let _heartbeat = self.keep_lease(&job);
        let started = Instant::now();
        self.metrics.jobs_in_flight.inc();
        let result = self.run(&job).await;
        self.metrics.jobs_in_flight.dec();
        match result {
            Ok(Outcome::Finished(status)) => {
                let resource = job.resource.as_str();
                self.metrics
                    .jobs_finished
                    .with_label_values(&[resource, status.as_str()])
                    .inc();
                self.metrics
                    .job_duration
                    .with_label_values(&[resource])
                    .observe(started.elapsed().as_secs_f64());
                Ok(Outcome::Finished(status))
            }
            Ok(outcome) => Ok(outcome),
            // Whatever this worker wrote in the fenced transaction was rolled
            // back; the worker that owns the job now finishes it.
            Err(RunError::Fenced(FencedError::LeaseLost)) => Ok(Outcome::LeaseLost),
            Err(RunError::Fenced(FencedError::Database(e))) => Err(e.into()),
            Err(RunError::Process(e)) => Err(e),
        }
    }

    async fn run(&self, job: &ClaimedJob) -> Result<Outcome, RunError> {
        if job.attempts > MAX_ATTEMPTS {
            return self.give_up(job).await;
        }
        let records = jobs::load_records(&self.pool, job.id).await?;
        if records.len() != job.total_records as usize {
            return Err(ProcessError::CorruptJob(job.id, records.len(), job.total_records).into());
        }
        let actor = job.actor();
        let ctx = ImportContext {
            tenant: job.tenant,
            resource: job.resource,
            external_source: &job.external_source,
            conflict_mode: job.conflict_mode,
            actor: &actor,
        };
        if job.conflict_mode == ConflictMode::Error {
            self.run_all_or_nothing(job, &ctx, &records).await
        } else {
            self.run_in_chunks(job, &ctx, &records).await
        }
    }

    /// `error` mode: the whole batch is one transaction, because a collision
    /// at the last record must leave nothing of the first ones written.
    async fn run_all_or_nothing(
        &self,
        job: &ClaimedJob,
        ctx: &ImportContext<'_>,
        records: &[serde_json::Value],
    ) -> Result<Outcome, RunError> {
        let mut tx = self.pool.begin().await?;
        let batch = import::import_batch(&mut tx, ctx, records).await?;
        if batch.aborted {
            tx.rollback().await?;
            tx = self.pool.begin().await?;
        }
        jobs::checkpoint(&mut tx, job, 0, job.total_records, &batch.tally).await?;
        let status = jobs::finish(&mut tx, job).await?;
        tx.commit().await?;
        self.count_records(job, &batch.tally);
        Ok(Outcome::Finished(status))
    }

    /// Counts committed records by outcome.
    fn count_records(&self, job: &ClaimedJob, tally: &Tally) {
        let resource = job.resource.as_str();
        for (outcome, n) in [("succeeded", tally.succeeded), ("failed", tally.failed)] {
            self.metrics
                .records
                .with_label_values(&[resource, outcome])
                .inc_by(u64::from(n));
        }
    }

    /// Other modes: each chunk commits its records with the job's counters and
    /// checkpoint, so progress is visible while the job runs and a job resumed
    /// after a crash starts after the last committed chunk.
    async fn run_in_chunks(
        &self,
        job: &ClaimedJob,
        ctx: &ImportContext<'_>,
        records: &[serde_json::Value],
    ) -> Result<Outcome, RunError> {
        let total = records.len();
        let mut start = usize::try_from(job.next_index).expect("next_index is non-negative");
        while start < total {
            let end = (start + self.chunk_size.max(1)).min(total);
            let chunk_started = Instant::now();
            let mut tx = self.pool.begin().await?;
            let tally = match import::import_records(
                &mut tx,
                ctx,
                &records[start..end],
                index(start),
            )
            .await
            {
                Ok(tally) => tally,
                Err(ImportError::Database(e)) => return Err(ProcessError::from(e).into()),
                Err(ImportError::Aborted(_)) => unreachable!("only error mode aborts"),
            };
            jobs::checkpoint(&mut tx, job, index_i32(start), index_i32(end), &tally).await?;
            tx.commit().await?;
            self.count_records(job, &tally);
            self.metrics
                .chunk_duration
                .with_label_values(&[job.resource.as_str()])
                .observe(chunk_started.elapsed().as_secs_f64());
            start = end;
        }
        let mut tx = self.pool.begin().await?;
        let status = jobs::finish(&mut tx, job).await?;
        tx.commit().await?;
        Ok(Outcome::Finished(status))
    }

    /// Ends a job that failed too many times: the records not yet committed
    /// fail with `internal_error`, the committed ones keep their outcome.
    async fn give_up(&self, job: &ClaimedJob) -> Result<Outcome, RunError> {
        tracing::error!(attempts = job.attempts, "giving up on {job}");
        let mut tally = Tally::default();
        for i in job.next_index..job.total_records {
            tally.failed += 1;
            tally.errors.push(RecordFailure::new(
                u32::try_from(i).expect("indexes are non-negative"),
                None,
                RecordError::new(
                    "internal_error",
                    format!(
                        "the record was not processed: the job failed {MAX_ATTEMPTS} times; \
                         resubmit it to try again"
                    ),
                ),
            ));
        }
        let mut tx = self.pool.begin().await?;
        jobs::checkpoint(&mut tx, job, job.next_index, job.total_records, &tally).await?;
        let status = jobs::finish(&mut tx, job).await?;
        tx.commit().await?;
        self.count_records(job, &tally);
        Ok(Outcome::Finished(status))
    }

    /// Renews the claim in the background until the returned guard drops.
    fn keep_lease(&self, job: &ClaimedJob) -> AbortOnDrop {
        let pool = self.pool.clone();
        let (id, token, lease) = (job.id, job.lease_token, self.lease_seconds);
        let every = Duration::from_millis(u64::from(lease) * 1000 / 3);
        AbortOnDrop(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                match jobs::renew(&pool, id, token, lease).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(job_id = %id, "lease lost; the next checkpoint will stop");
                        return;
                    }
                    Err(e) => tracing::warn!(job_id = %id, error = %e, "could not renew lease"),
                }
            }
        }))
    }
}

enum RunError {
    Fenced(FencedError),
    Process(ProcessError),
}

impl From<FencedError> for RunError {
    fn from(e: FencedError) -> Self {
        RunError::Fenced(e)
    }
}

impl From<ProcessError> for RunError {
    fn from(e: ProcessError) -> Self {
        RunError::Process(e)
    }
}

impl From<sqlx::Error> for RunError {
    fn from(e: sqlx::Error) -> Self {
        RunError::Process(e.into())
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn index(i: usize) -> u32 {
    u32::try_from(i).expect("a job holds at most 1000 records")
}

fn index_i32(i: usize) -> i32 {
    i32::try_from(i).expect("a job holds at most 1000 records")
}
