//! The faults, one at a time, spread over the run with seeded jitter: every
//! kind comes once in a first round (in a seeded order, with a second stall
//! and extra kills), so even a short run sees each; after that kinds are
//! drawn at random, with `kill -9` the most frequent. Each is counted; a
//! fault that could not be injected is reported, not hidden.
//!
//! The stall is aimed, because only an aimed one tests the lease fencing: a
//! worker that has just started a long job is stopped, stays stopped until
//! another worker has taken the job over (its lease ran out, and a second
//! message for the job, published by the stall, reached another worker), and
//! is continued at once. It then retries the
//! chunk it was in, while the new owner is still at work on the same records:
//! the stale write that fencing must refuse. Stalled at a random moment, a
//! worker mostly wakes after the new owner finished, or after its own
//! delivery deadline, and writes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use serde_json::json;
use sqlx::PgPool;
use tokio::time::Instant;
use uuid::Uuid;

use crate::broker::Broker;
use crate::cluster::Cluster;
use crate::records::Resource;
use crate::registry::Registry;
use crate::say;
use crate::services::Services;

/// Mean pause between two faults once the first round is done.
const MEAN_GAP: Duration = Duration::from_secs(6);
/// Records left in a job that make it worth stalling its worker.
const LONG_JOB: i32 = 500;
/// How much longer than a lease an idle worker stays stopped.
const STOP_PAST_LEASE: Duration = Duration::from_secs(3);
/// How much longer than a lease a worker stopped in a job may stay stopped
/// while no other worker takes the job over.
const STOP_PAST_LEASE_AT_MOST: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    KillWorker,
    StopWorker,
    RestartRabbitmq,
    RestartPostgres,
    DuplicateMessages,
    PoisonMessages,
}

impl Fault {
    pub const ALL: [Fault; 6] = [
        Fault::KillWorker,
        Fault::StopWorker,
        Fault::RestartRabbitmq,
        Fault::RestartPostgres,
        Fault::DuplicateMessages,
        Fault::PoisonMessages,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Fault::KillWorker => "kill -9 a worker",
            Fault::StopWorker => "SIGSTOP a worker until its job moves",
            Fault::RestartRabbitmq => "restart RabbitMQ",
            Fault::RestartPostgres => "restart Postgres",
            Fault::DuplicateMessages => "publish duplicate job messages",
            Fault::PoisonMessages => "publish poison messages",
        }
    }

    /// How often the kind is drawn after the first round.
    fn weight(self) -> u32 {
        match self {
            Fault::KillWorker => 30,
            Fault::StopWorker => 20,
            Fault::RestartRabbitmq | Fault::RestartPostgres | Fault::PoisonMessages => 10,
            Fault::DuplicateMessages => 20,
        }
    }
}

/// What the faults did.
#[derive(Debug, Default)]
pub struct FaultLog {
    pub injected: BTreeMap<Fault, u32>,
    /// Faults that could not be injected, with why.
    pub failed: Vec<String>,
    /// Stalled workers whose job another worker took over while they were
    /// stopped: the stalls that put the lease fencing to the test.
    pub takeovers: u32,
    /// Duplicate job messages the broker confirmed.
    pub duplicates: u32,
    /// Poison payloads the broker confirmed: these, and only these, must end
    /// in the dead-letter queue.
    pub poison: Vec<Vec<u8>>,
    /// Poison payloads whose publication failed half-way: they may or may not
    /// have reached a queue.
    pub poison_uncertain: Vec<Vec<u8>>,
}

pub struct Injector {
    pub cluster: Arc<Cluster>,
    pub services: Services,
    pub broker: Arc<Broker>,
    pub registry: Arc<Registry>,
    pub pool: PgPool,
    pub lease: Duration,
    pub rng: StdRng,
}

impl Injector {
    /// Injects faults from `first` until `until` (later if the first round is
    /// not done by then), each to its end: a restarted server is back up and a
    /// stopped worker continued when the next fault starts or this returns.
    pub async fn run(mut self, first: Instant, until: Instant) -> FaultLog {
        let mut log = FaultLog::default();
        let mut round: Vec<Fault> = Fault::ALL.to_vec();
        round.extend([Fault::KillWorker, Fault::KillWorker, Fault::StopWorker]);
        round.shuffle(&mut self.rng);
        let mut next = first;
        loop {
            tokio::time::sleep_until(next).await;
            if Instant::now() >= until && round.is_empty() {
                return log;
            }
            let fault = round.pop().unwrap_or_else(|| {
                *Fault::ALL
                    .choose_weighted(&mut self.rng, |f| f.weight())
                    .expect("weights are positive")
            });
            match self.inject(fault, &mut log).await {
                Ok(what) => {
                    say!("fault: {what}");
                    *log.injected.entry(fault).or_default() += 1;
                }
                Err(e) => {
                    say!("fault {} failed: {e:#}", fault.label());
                    log.failed.push(format!("{}: {e:#}", fault.label()));
                }
            }
            // Spread the rest of the first round over the time left.
            let left = until.saturating_duration_since(Instant::now());
            let gap = if round.is_empty() {
                MEAN_GAP
            } else {
                MEAN_GAP.min(left / (u32::try_from(round.len()).unwrap_or(u32::MAX) + 1))
            };
            next = Instant::now() + gap.mul_f64(self.rng.random_range(0.6..1.4));
        }
    }

    /// Injects one fault and says what it did.
    async fn inject(&mut self, fault: Fault, log: &mut FaultLog) -> anyhow::Result<String> {
        match fault {
            Fault::KillWorker => {
                let (name, pid) = self.pick_worker(Duration::ZERO, false).await?;
                self.cluster.kill(&name)?;
                Ok(format!("kill -9 {name} (pid {pid})"))
            }
            Fault::StopWorker => {
                // The job may end between the look and the signal, so the
                // lease is looked at again once the worker is stopped.
                let deadline = Instant::now() + Duration::from_secs(20);
                let (name, pid, job) = loop {
                    let (name, pid) = self.pick_worker(Duration::from_secs(15), true).await?;
                    self.cluster.stop(&name).await?;
                    let job = self.job_held_by(&name, pid).await;
                    if job.is_some() || Instant::now() >= deadline {
                        break (name, pid, job);
                    }
                    self.cluster.resume(&name).await?;
                };
                let stopped = Instant::now();
                let woken = match job {
                    Some(job) => {
                        // The frozen worker keeps its message; a second one
                        // for the job, as RabbitMQ hands out when the frozen
                        // worker's connection times out, lets another worker
                        // take the job over once the lease has run out.
                        self.publish_again(job).await?;
                        log.duplicates += 1;
                        let latest = stopped + self.lease + STOP_PAST_LEASE_AT_MOST;
                        let taken = self.wait_for_takeover(job, &name, pid, latest).await;
                        if taken {
                            log.takeovers += 1;
                            let jitter = self.rng.random_range(0..100);
                            tokio::time::sleep(Duration::from_millis(jitter)).await;
                        }
                        format!(
                            "holding job {job}, {}",
                            if taken {
                                "woken after another worker took it over"
                            } else {
                                "not taken over"
                            }
                        )
                    }
                    None => {
                        tokio::time::sleep(self.lease + STOP_PAST_LEASE).await;
                        "idle".to_owned()
                    }
                };
                self.cluster.resume(&name).await?;
                Ok(format!(
                    "SIGSTOP {name} (pid {pid}, {woken}) for {:.1} s, then SIGCONT",
                    stopped.elapsed().as_secs_f64()
                ))
            }
            Fault::RestartRabbitmq => {
                let started = Instant::now();
                self.services.restart_rabbitmq().await?;
                Ok(format!(
                    "RabbitMQ restarted, back after {:.1} s",
                    started.elapsed().as_secs_f64()
                ))
            }
            Fault::RestartPostgres => {
                let started = Instant::now();
                self.services.restart_postgres().await?;
                Ok(format!(
                    "Postgres restarted, back after {:.1} s",
                    started.elapsed().as_secs_f64()
                ))
            }
            Fault::DuplicateMessages => {
                let n = self.rng.random_range(3..=6);
                let jobs = self.registry.sample(&mut self.rng, n);
                anyhow::ensure!(!jobs.is_empty(), "no job accepted yet");
                let mut published = 0;
                for (id, resource) in &jobs {
                    let message =
                        json!({"job_id": id, "resource": resource.name(), "request_id": null});
                    let payload = serde_json::to_vec(&message)?;
                    self.broker.publish(resource.name(), &payload).await?;
                    published += 1;
                    log.duplicates += 1;
                }
                Ok(format!("published {published} duplicate job messages"))
            }
            Fault::PoisonMessages => {
                let n = self.rng.random_range(1..=3);
                for _ in 0..n {
                    let number = log.poison.len() + log.poison_uncertain.len() + 1;
                    let payload = format!("not json: chaos poison #{number}").into_bytes();
                    let resource = *Resource::ALL.choose(&mut self.rng).expect("not empty");
                    match self.broker.publish(resource.name(), &payload).await {
                        Ok(()) => log.poison.push(payload),
                        Err(e) => {
                            log.poison_uncertain.push(payload);
                            return Err(e);
                        }
                    }
                }
                Ok(format!("published {n} poison messages"))
            }
        }
    }

    /// A running worker holding a live lease, else any. With `fresh_long`,
    /// one that has just started a job of at least `LONG_JOB` records if one
    /// does within `wait` (else the one with the most records left): stalled
    /// there, its job is taken over with most of the work still to do, and
    /// it wakes within its delivery's deadline while the new owner works, so
    /// it retries its chunk: the stale write that the lease fencing stops.
    async fn pick_worker(
        &mut self,
        wait: Duration,
        fresh_long: bool,
    ) -> anyhow::Result<(String, u32)> {
        let deadline = Instant::now() + wait;
        loop {
            let mut leases = self.leases().await;
            leases.shuffle(&mut self.rng);
            let waited = Instant::now() >= deadline;
            let picked = if fresh_long {
                leases
                    .into_iter()
                    .max_by_key(|l| l.records_left)
                    .filter(|l| waited || (l.records_left >= LONG_JOB && l.records_done <= 100))
            } else {
                leases.into_iter().next()
            };
            if let Some(lease) = picked {
                return Ok((lease.worker, lease.pid));
            }
            if waited {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.cluster
            .workers()
            .choose(&mut self.rng)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no worker is running"))
    }

    /// Waits until a process other than `name`/`pid` holds or has ended
    /// `job`; false if `latest` came first.
    async fn wait_for_takeover(&self, job: Uuid, name: &str, pid: u32, latest: Instant) -> bool {
        let stopped_owner = format!("{name}/{pid}/");
        while Instant::now() < latest {
            let owner: Option<Option<String>> =
                sqlx::query_scalar("select lease_owner from migration_jobs where id = $1")
                    .bind(job)
                    .fetch_optional(&self.pool)
                    .await
                    .unwrap_or_default();
            if owner
                .flatten()
                .is_some_and(|o| !o.starts_with(&stopped_owner))
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Publishes a job's message once more.
    async fn publish_again(&self, job: Uuid) -> anyhow::Result<()> {
        let resource: String =
            sqlx::query_scalar("select resource from migration_jobs where id = $1")
                .bind(job)
                .fetch_one(&self.pool)
                .await?;
        let message = json!({"job_id": job, "resource": resource, "request_id": null});
        self.broker
            .publish(&resource, &serde_json::to_vec(&message)?)
            .await
    }

    /// The job a worker process holds a live lease on, if any.
    async fn job_held_by(&self, name: &str, pid: u32) -> Option<Uuid> {
        self.leases()
            .await
            .into_iter()
            .find(|l| l.worker == name && l.pid == pid)
            .map(|l| l.job)
    }

    /// The live leases of running workers. A lease owner reads
    /// `<HOSTNAME>/<pid>/<random>`; the pid tells the running process from an
    /// earlier one of the same name.
    async fn leases(&self) -> Vec<Lease> {
        let leases: Vec<(Uuid, String, i32, i32)> = sqlx::query_as(
            "select id, lease_owner, total_records - next_index, next_index from migration_jobs
             where status = 'running' and lease_expires_at > now() and lease_owner is not null",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap_or_default();
        let running = self.cluster.workers();
        leases
            .into_iter()
            .filter_map(|(job, owner, records_left, records_done)| {
                running
                    .iter()
                    .find(|(name, pid)| owner.starts_with(&format!("{name}/{pid}/")))
                    .map(|(name, pid)| Lease {
                        worker: name.clone(),
                        pid: *pid,
                        job,
                        records_left,
                        records_done,
                    })
            })
            .collect()
    }
}

/// A worker's live claim on a job.
struct Lease {
    worker: String,
    pid: u32,
    job: Uuid,
    records_left: i32,
    /// The job's checkpoint: records committed so far.
    records_done: i32,
}
