//! One end-to-end pass: records 1..=size submitted through the API in jobs
//! of 1,000, a fixed number of jobs in flight (submitted and not yet
//! terminal), each polled until it is terminal, as a migration client would.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use crate::api::Api;
use crate::records::{JOB_RECORDS, Resource};

/// How often a client looks at a job it waits for. Short, because the time
/// between a job's end and the client noticing is time the pass is charged.
const POLL_EVERY: Duration = Duration::from_millis(50);
/// A job of 1,000 records still unfinished after this means the service is
/// stuck, not slow.
const JOB_TIMEOUT: Duration = Duration::from_secs(300);
/// Errors of a failed job shown in the bench's failure.
const ERRORS_SHOWN: usize = 3;

/// The ids of the jobs a pass has submitted so far, for the status readers.
pub type Accepted = Arc<Mutex<Vec<Uuid>>>;

/// Runs the pass; the time from the first submission to the last job seen
/// terminal. Fails on the first job that does not complete with every record
/// succeeded, once the jobs already in flight are done.
pub async fn run(
    api: Arc<Api>,
    resource: Resource,
    size: usize,
    in_flight: usize,
    accepted: Accepted,
) -> anyhow::Result<Duration> {
    let jobs: Arc<Vec<(usize, usize)>> = Arc::new(
        (1..=size)
            .step_by(JOB_RECORDS)
            .map(|first| (first, (first + JOB_RECORDS - 1).min(size)))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut lanes = JoinSet::new();
    for _ in 0..in_flight.max(1) {
        let lane = Lane {
            api: api.clone(),
            resource,
            jobs: jobs.clone(),
            next: next.clone(),
            stop: stop.clone(),
            accepted: accepted.clone(),
        };
        lanes.spawn(async move {
            let result = lane.run().await;
            if result.is_err() {
                lane.stop.store(true, Ordering::SeqCst);
            }
            result
        });
    }
    let mut finished = started;
    let mut failure = None;
    while let Some(joined) = lanes.join_next().await {
        match joined.context("a submitting task panicked")? {
            Ok(last) => finished = finished.max(last),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(finished - started),
    }
}

/// One job slot: submits the next job, waits for it, and again.
struct Lane {
    api: Arc<Api>,
    resource: Resource,
    jobs: Arc<Vec<(usize, usize)>>,
    next: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    accepted: Accepted,
}

impl Lane {
    /// When this lane saw its last job terminal.
    async fn run(&self) -> anyhow::Result<Instant> {
        let mut last = Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            let Some(&(first, end)) = self.jobs.get(self.next.fetch_add(1, Ordering::SeqCst))
            else {
                break;
            };
            let id = self
                .api
                .submit(self.resource, self.resource.job_body(first..=end))
                .await?;
            self.accepted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(id);
            let deadline = Instant::now() + JOB_TIMEOUT;
            let job = loop {
                tokio::time::sleep(POLL_EVERY).await;
                let job = self.api.job(id).await?;
                if job.is_terminal() {
                    break job;
                }
                if Instant::now() > deadline {
                    bail!(
                        "job {id} (records {first}..={end}) is still {} after {JOB_TIMEOUT:?}",
                        job.status
                    );
                }
            };
            last = Instant::now();
            let records = (end - first + 1) as i64;
            if job.status != "completed" || job.succeeded != records || job.total != records {
                let errors: Vec<String> = job
                    .errors
                    .iter()
                    .take(ERRORS_SHOWN)
                    .map(|e| e.to_string())
                    .collect();
                bail!(
                    "{} job {id} (records {first}..={end}) ended {}: {} of {} records \
                     succeeded, {} failed; first errors:\n  {}",
                    self.resource.name(),
                    job.status,
                    job.succeeded,
                    job.total,
                    job.failed,
                    errors.join("\n  ")
                );
            }
        }
        Ok(last)
    }
}
