//! One job, start to finish, without the consume loop: claim it, load its
//! records chunk by chunk through the canonical handlers, checkpoint each chunk
//! with the job's counters, and give it its final status.
//!
//! A step that fails on a transient database error (deadlock, serialization
//! failure, lost connection) is retried with backoff while the worker still
//! holds the job; a record that breaks a rule is never retried, it fails.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::ConflictMode;
use domain::error::{RecordError, is_transient};
use domain::import::{self, ImportContext, ImportError, RecordFailure, Tally};
use domain::jobs::{self, ClaimResult, ClaimedJob, FencedError, JobStatus, StoredRecords};
use futures::FutureExt;
use sqlx::PgPool;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::metrics::WorkerMetrics;

/// Claims of one job after which it is given up: its remaining records fail
/// with `retries_exhausted`, so even a job that keeps crashing its worker ends.
const MAX_ATTEMPTS: i32 = 5;
/// The first and the longest wait between retries of a step.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LONGEST_RETRY: Duration = Duration::from_secs(5);

/// What processing needs besides the job id.
#[derive(Debug, Clone)]
pub struct JobRunner {
    pub pool: PgPool,
    /// Who claims the job, as shown in the job's lease.
    pub owner: String,
    pub chunk_size: usize,
    pub lease_seconds: u32,
    pub metrics: Arc<WorkerMetrics>,
    /// Wakes this process's outbox relay when a job is handed on.
    pub relay: Arc<Notify>,
}

/// Retries a step while it fails on transient errors and there is time left.
#[derive(Debug)]
pub struct Backoff {
    wait: Duration,
    deadline: Instant,
}

impl Backoff {
    pub fn until(deadline: Instant) -> Self {
        Self {
            wait: FIRST_RETRY,
            deadline,
        }
    }

    /// Waits before the next try; false when the deadline would pass first.
    pub async fn wait(&mut self) -> bool {
        if Instant::now() + self.wait >= self.deadline {
            return false;
        }
        tokio::time::sleep(self.wait).await;
        self.wait = (self.wait * 2).min(LONGEST_RETRY);
        true
    }
}

/// How a delivery of a job ended, which decides what happens to the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// This worker brought the job to a final status.
    Finished(JobStatus),
    /// The job had already reached a final status: nothing to do.
    AlreadyFinished,
    /// Another worker holds a live claim on the job, for at least this long.
    Busy { lease_left: Duration },
    /// No such job.
    NotFound,
    /// Another worker took the job over while this one ran; it finishes it.
    LeaseLost,
    /// A write was refused although the claim is still this worker's: a
    /// retried commit whose first try had in fact gone through. The claim was
    /// released, to be taken again from the committed checkpoint.
    Released,
    /// The job ran past the time one message may be held; it was handed on
    /// through a fresh message and resumes at its checkpoint.
    HandedOn,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("job {0} holds {1} records but says it has {2}")]
    CorruptJob(Uuid, usize, i32),
    #[error("job {0}: {1}")]
    UnreadableJob(Uuid, jobs::UnreadableRecords),
    #[error("the worker panicked: {0}")]
    Panicked(String),
}

impl ProcessError {
    /// Whether trying again as it is may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ProcessError::Database(e) => is_transient(e),
            ProcessError::CorruptJob(..)
            | ProcessError::UnreadableJob(..)
            | ProcessError::Panicked(_) => false,
        }
    }
}

impl JobRunner {
    /// Processes a job to its end, until another worker owns it, or until
    /// `deadline`, when it is handed on.
    pub async fn process(&self, job_id: Uuid, deadline: Instant) -> Result<Outcome, ProcessError> {
        let job = match jobs::claim(&self.pool, job_id, &self.owner, self.lease_seconds).await? {
            ClaimResult::Claimed(job) => job,
            ClaimResult::Finished => return Ok(Outcome::AlreadyFinished),
            ClaimResult::Busy { lease_left } => return Ok(Outcome::Busy { lease_left }),
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
        // A panic in a handler is a bug in one job: it must not take the
        // worker down with every other job it holds.
        let result = AssertUnwindSafe(self.run(&job, deadline))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| Err(ProcessError::Panicked(panic_message(&panic)).into()));
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
            // Or the claim is still ours, and a commit whose answer was lost
            // moved the checkpoint past where the retry expected it.
            Err(RunError::Fenced(FencedError::LeaseLost)) => {
                match jobs::release(&self.pool, &job, "a commit's answer was lost").await {
                    Ok(true) => Ok(Outcome::Released),
                    Ok(false) => Ok(Outcome::LeaseLost),
                    Err(e) => Err(e.into()),
                }
            }
            Err(RunError::Fenced(FencedError::Database(e))) => {
                Err(self.failed(&job, e.into()).await)
            }
            Err(RunError::Process(e)) => Err(self.failed(&job, e).await),
        }
    }

    /// Notes why the attempt failed and releases the claim, so the job's next
    /// delivery can claim it at once. If Postgres is unreachable the claim
    /// simply runs out.
    async fn failed(&self, job: &ClaimedJob, error: ProcessError) -> ProcessError {
        if let Err(e) = jobs::release(&self.pool, job, &error.to_string()).await {
            tracing::warn!(error = %e, "could not release the job's claim");
        }
        error
    }

    /// Runs `step` again while it fails on a transient database error and
    /// there is time left before `deadline`.
    async fn retrying<T, F>(
        &self,
        step_name: &str,
        deadline: Instant,
        mut step: impl FnMut() -> F,
    ) -> Result<T, RunError>
    where
        F: Future<Output = Result<T, RunError>>,
    {
        let mut backoff = Backoff::until(deadline);
        loop {
            match step().await {
                Err(e) if e.is_transient() && backoff.wait().await => {
                    tracing::warn!(step = step_name, error = %e, "transient database error; retrying");
                    self.metrics.retries.with_label_values(&[step_name]).inc();
                }
                other => return other,
            }
        }
    }

    async fn run(&self, job: &ClaimedJob, deadline: Instant) -> Result<Outcome, RunError> {
        if job.attempts > MAX_ATTEMPTS {
            return self
                .retrying("give_up", deadline, || self.give_up(job))
                .await;
        }
        let stored = self
            .retrying("load_records", deadline, || async move {
                Ok(jobs::stored_records(&self.pool, job.id).await?)
            })
            .await?
            .map_err(|e| ProcessError::UnreadableJob(job.id, e))?;
        if stored.len() != job.total_records as usize {
            return Err(ProcessError::CorruptJob(job.id, stored.len(), job.total_records).into());
        }
        let actor = job.actor();
        let ctx = ImportContext {
            tenant: job.tenant,
            resource: job.resource,
            external_source: &job.external_source,
            conflict_mode: job.conflict_mode,
            actor: &actor,
            may_bypass_period_check: job.may_bypass_period_check,
            strict: job.strict,
        };
        if job.conflict_mode == ConflictMode::Error {
            self.retrying("batch", deadline, || {
                self.run_all_or_nothing(job, &ctx, &stored)
            })
            .await
        } else {
            self.run_in_chunks(job, &ctx, &stored, deadline).await
        }
    }

    /// `error` mode: the whole batch is one transaction, because a collision
    /// at the last record must leave nothing of the first ones written.
    async fn run_all_or_nothing(
        &self,
        job: &ClaimedJob,
        ctx: &ImportContext<'_>,
        stored: &StoredRecords,
    ) -> Result<Outcome, RunError> {
        let records = stored
            .chunk(0, stored.len())
            .map_err(|e| ProcessError::UnreadableJob(job.id, e))?;
        let mut tx = self.pool.begin().await?;
        let batch = import::import_batch(&mut tx, ctx, &records).await?;
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
        stored: &StoredRecords,
        deadline: Instant,
    ) -> Result<Outcome, RunError> {
        let total = stored.len();
        let resumed_at = usize::try_from(job.next_index).expect("next_index is non-negative");
        let mut start = resumed_at;
        while start < total {
            // Every delivery commits at least one chunk, so handing on always
            // makes progress.
            if start > resumed_at && Instant::now() >= deadline {
                return self
                    .retrying("hand_on", deadline + LONGEST_RETRY, || async move {
                        let mut tx = self.pool.begin().await?;
                        jobs::hand_on(&mut tx, job).await?;
                        tx.commit().await?;
                        self.relay.notify_one();
                        Ok(Outcome::HandedOn)
                    })
                    .await;
            }
            let end = (start + self.chunk_size.max(1)).min(total);
            let chunk_started = Instant::now();
            let (tally, finished) = self
                .retrying("chunk", deadline, || {
                    self.commit_chunk(job, ctx, stored, start, end)
                })
                .await?;
            self.count_records(job, &tally);
            self.metrics
                .chunk_duration
                .with_label_values(&[job.resource.as_str()])
                .observe(chunk_started.elapsed().as_secs_f64());
            if let Some(status) = finished {
                return Ok(Outcome::Finished(status));
            }
            start = end;
        }
        // Only a job resumed after its last chunk committed gets here.
        self.retrying("finish", deadline + LONGEST_RETRY, || async move {
            let mut tx = self.pool.begin().await?;
            let status = jobs::finish(&mut tx, job).await?;
            tx.commit().await?;
            Ok(Outcome::Finished(status))
        })
        .await
    }

    /// Loads records `start..end` and commits them with the checkpoint; the
    /// last chunk commits the job's final status with them, one commit less
    /// per job.
    async fn commit_chunk(
        &self,
        job: &ClaimedJob,
        ctx: &ImportContext<'_>,
        stored: &StoredRecords,
        start: usize,
        end: usize,
    ) -> Result<(Tally, Option<JobStatus>), RunError> {
        let records = stored
            .chunk(start, end)
            .map_err(|e| ProcessError::UnreadableJob(job.id, e))?;
        let mut tx = self.pool.begin().await?;
        let tally = match import::import_records(&mut tx, ctx, &records, index(start)).await {
            Ok(tally) => tally,
            Err(ImportError::Database(e)) => return Err(ProcessError::from(e).into()),
            Err(ImportError::Aborted(_)) => unreachable!("only error mode aborts"),
        };
        jobs::checkpoint(&mut tx, job, index_i32(start), index_i32(end), &tally).await?;
        let status = if end == stored.len() {
            Some(jobs::finish(&mut tx, job).await?)
        } else {
            None
        };
        tx.commit().await?;
        Ok((tally, status))
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
                    "retries_exhausted",
                    format!(
                        "the record was not processed: the job was attempted {MAX_ATTEMPTS} \
                         times without finishing (last error: {}); the record itself may be \
                         fine: submit it again",
                        job.last_error.as_deref().unwrap_or("a worker stopped")
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

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Fenced(FencedError),
    #[error(transparent)]
    Process(ProcessError),
}

impl RunError {
    fn is_transient(&self) -> bool {
        match self {
            RunError::Fenced(FencedError::Database(e)) => is_transient(e),
            RunError::Fenced(FencedError::LeaseLost) => false,
            RunError::Process(e) => e.is_transient(),
        }
    }
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

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

fn index(i: usize) -> u32 {
    u32::try_from(i).expect("a job holds at most 1000 records")
}

fn index_i32(i: usize) -> i32 {
    i32::try_from(i).expect("a job holds at most 1000 records")
}
