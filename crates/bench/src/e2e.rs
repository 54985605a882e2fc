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

/// One job of a pass, as its client saw it.
#[derive(Debug, Clone, Copy)]
struct JobSeen {
    /// Its place in the pass's order of submission.
    place: usize,
    records: usize,
    submitted: Instant,
    ended: Instant,
}

/// What a pass took: in all, and the rates of its first and last tenth of
/// jobs, so that a cost growing with the rows already loaded shows.
#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    pub took: Duration,
    pub first_tenth_per_sec: f64,
    pub last_tenth_per_sec: f64,
}

impl Loaded {
    fn new(took: Duration, mut jobs: Vec<JobSeen>) -> Self {
        jobs.sort_unstable_by_key(|j| j.place);
        let tenth = jobs.len().div_ceil(10).max(1);
        Self {
            took,
            first_tenth_per_sec: rate(&jobs[..tenth.min(jobs.len())]),
            last_tenth_per_sec: rate(&jobs[jobs.len().saturating_sub(tenth)..]),
        }
    }
}

/// Records per second over `jobs`: their records, from the first of them
/// submitted to the last seen terminal.
fn rate(jobs: &[JobSeen]) -> f64 {
    let (Some(first), Some(last)) = (
        jobs.iter().map(|j| j.submitted).min(),
        jobs.iter().map(|j| j.ended).max(),
    ) else {
        return 0.0;
    };
    let records: usize = jobs.iter().map(|j| j.records).sum();
    records as f64 / (last - first).as_secs_f64().max(f64::EPSILON)
}

/// Runs the pass; the time from the first submission to the last job seen
/// terminal. Fails on the first job that does not complete with every record
/// succeeded, once the jobs already in flight are done.
pub async fn run(
    api: Arc<Api>,
    resource: Resource,
    size: usize,
    in_flight: usize,
    accepted: Accepted,
) -> anyhow::Result<Loaded> {
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
    let mut seen = Vec::with_capacity(jobs.len());
    let mut failure = None;
    while let Some(joined) = lanes.join_next().await {
        match joined.context("a submitting task panicked")? {
            Ok(jobs) => seen.extend(jobs),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let finished = seen.iter().map(|j| j.ended).max().unwrap_or(started);
    Ok(Loaded::new(finished - started, seen))
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
    /// The jobs this lane ran.
    async fn run(&self) -> anyhow::Result<Vec<JobSeen>> {
        let mut seen = Vec::new();
        while !self.stop.load(Ordering::SeqCst) {
            let place = self.next.fetch_add(1, Ordering::SeqCst);
            let Some(&(first, end)) = self.jobs.get(place) else {
                break;
            };
            let submitted = Instant::now();
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
            let ended = Instant::now();
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
            seen.push(JobSeen {
                place,
                records: end - first + 1,
                submitted,
                ended,
            });
        }
        Ok(seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenths_are_rated_from_their_first_submission_to_their_last_end() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Twenty jobs of 100 records: the first two take 100 ms together,
        // the last two 400 ms.
        let jobs: Vec<JobSeen> = (0..20)
            .map(|place| JobSeen {
                place,
                records: 100,
                submitted: at(place as u64 * 100),
                ended: at(place as u64 * 100 + if place >= 18 { 300 } else { 50 }),
            })
            .rev()
            .collect();
        let loaded = Loaded::new(Duration::from_secs(2), jobs);
        assert!((loaded.first_tenth_per_sec - 200.0 / 0.15).abs() < 1e-6);
        assert!((loaded.last_tenth_per_sec - 200.0 / 0.4).abs() < 1e-6);
    }
}
