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

/// One job of a pass, as its client saw it end.
#[derive(Debug, Clone, Copy)]
struct JobSeen {
    records: usize,
    ended: Instant,
}

/// What a pass took: in all, and the throughput while its first and its last
/// tenth of jobs completed, so that a cost growing with the rows already
/// loaded shows.
#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    pub took: Duration,
    pub first_tenth_per_sec: f64,
    pub last_tenth_per_sec: f64,
}

impl Loaded {
    /// The tenths are windows between completions: from the first job's end
    /// to the end of the job a tenth of the jobs later, and from the end of
    /// the job a tenth before the last to the last one's, each counting the
    /// records of the jobs that ended inside it. Neither counts the time a
    /// pipeline takes to fill or to drain.
    fn new(took: Duration, mut jobs: Vec<JobSeen>) -> Self {
        jobs.sort_unstable_by_key(|j| j.ended);
        let tenth = (jobs.len() / 10).max(1);
        let last = jobs.len().saturating_sub(tenth + 1);
        Self {
            took,
            first_tenth_per_sec: rate(jobs.get(..=tenth).unwrap_or_default()),
            last_tenth_per_sec: rate(jobs.get(last..).unwrap_or_default()),
        }
    }
}

/// Records per second between the first and the last end of `jobs`, sorted
/// by end: the records of every job but the first.
fn rate(jobs: &[JobSeen]) -> f64 {
    let (Some(first), Some(last)) = (jobs.first(), jobs.last()) else {
        return 0.0;
    };
    let records: usize = jobs[1..].iter().map(|j| j.records).sum();
    let secs = (last.ended - first.ended).as_secs_f64();
    if secs > 0.0 {
        records as f64 / secs
    } else {
        0.0
    }
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
    // Every body is made before the clock starts: the bench shares the
    // machine with the service, and a client sends files it already has.
    let jobs: Arc<Vec<Job>> = Arc::new(
        (1..=size)
            .step_by(JOB_RECORDS)
            .map(|first| {
                let end = (first + JOB_RECORDS - 1).min(size);
                Job {
                    first,
                    end,
                    body: resource.job_body(first..=end),
                }
            })
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

/// One job of a pass: records `first..=end` and the body that submits them.
struct Job {
    first: usize,
    end: usize,
    body: Vec<u8>,
}

/// One job slot: submits the next job, waits for it, and again.
struct Lane {
    api: Arc<Api>,
    resource: Resource,
    jobs: Arc<Vec<Job>>,
    next: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    accepted: Accepted,
}

impl Lane {
    /// The jobs this lane ran.
    async fn run(&self) -> anyhow::Result<Vec<JobSeen>> {
        let mut seen = Vec::new();
        while !self.stop.load(Ordering::SeqCst) {
            let Some(job) = self.jobs.get(self.next.fetch_add(1, Ordering::SeqCst)) else {
                break;
            };
            let (first, end) = (job.first, job.end);
            let id = self.api.submit(self.resource, job.body.clone()).await?;
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
                records: end - first + 1,
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
    fn tenths_are_rated_between_completions() {
        let t0 = Instant::now();
        // Twenty jobs of 100 records: the first three end 100 ms apart, the
        // last three 400 ms apart, the rest 200 ms apart.
        let mut at = 0;
        let mut jobs: Vec<JobSeen> = (0..20)
            .map(|i| {
                at += match i {
                    0..=2 => 100,
                    17..=19 => 400,
                    _ => 200,
                };
                JobSeen {
                    records: 100,
                    ended: t0 + Duration::from_millis(at),
                }
            })
            .collect();
        // As the lanes report them: in no particular order.
        jobs.reverse();
        let loaded = Loaded::new(Duration::from_secs(5), jobs);
        assert!((loaded.first_tenth_per_sec - 200.0 / 0.2).abs() < 1e-6);
        assert!((loaded.last_tenth_per_sec - 200.0 / 0.8).abs() < 1e-6);
    }
}
