//! The load: a steady stream of bulk submissions through the HTTP API, as a
//! migrating customer would send them, for the whole run.
//!
//! Every submission carries an Idempotency-Key. One that fails with a 5xx or a
//! broken connection (Postgres may be down) is retried with the same key and
//! the same bytes until it is accepted, so a retry can never create a second
//! job. Some submissions are sent twice on purpose, after acceptance or
//! concurrently, and both answers must name the same job.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use crate::api::{Answer, Api};
use crate::invariants::{Invariant, Violations};
use crate::records::{Batch, ConflictMode, Generator, Resource};
use crate::registry::Registry;
use crate::say;

/// Pause before retrying a submission the API could not take.
const RETRY_PAUSE: Duration = Duration::from_millis(750);
/// Parents first, so that children have something to reference: customers
/// and vendors, products, then bills for the payments.
const SEED: [(Resource, usize); 3] = [
    (Resource::Accounts, 150),
    (Resource::Products, 100),
    (Resource::VendorBills, 80),
];
/// How long the load waits for the seed jobs before it goes on regardless.
const SEED_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct LoadStats {
    /// Bulk requests generated (each with its own Idempotency-Key).
    pub submissions: AtomicU64,
    /// Sends that needed at least one retry.
    pub retried: AtomicU64,
    /// Retry attempts in all.
    pub retries: AtomicU64,
    /// Deliberate second sends with the same key.
    pub replays: AtomicU64,
    /// Sends still unanswered when the run gave up on them.
    pub abandoned: AtomicU64,
}

/// How a submission is sent again on purpose, to prove idempotency.
#[derive(Debug, Clone, Copy)]
enum Replay {
    No,
    /// Once the first send was accepted.
    After,
    /// Both sends at the same time: one job between them.
    Concurrent,
}

pub struct Load {
    pub api: Arc<Api>,
    pub registry: Arc<Registry>,
    pub violations: Arc<Violations>,
    pub stats: Arc<LoadStats>,
    /// Turns true when the run ends: sends still failing are then abandoned.
    pub give_up: watch::Receiver<bool>,
}

impl Load {
    /// Submits the seed batches, waits for them to finish, then a batch about
    /// every `1 / rate` seconds until `until`, holding back while more than
    /// `max_outstanding` jobs are unfinished (as a client with a backlog
    /// would). Returns the sends still in flight.
    pub async fn run(
        self: Arc<Self>,
        mut generator: Generator,
        mut rng: StdRng,
        rate: f64,
        max_outstanding: usize,
        until: Instant,
    ) -> JoinSet<()> {
        for (resource, size) in SEED {
            let batch = Arc::new(generator.batch(resource, ConflictMode::Skip, size, 0.0));
            self.stats.submissions.fetch_add(1, Ordering::Relaxed);
            self.send(&batch, &new_key()).await;
        }
        let seeded = Instant::now() + SEED_WAIT;
        while !self.registry.unfinished().is_empty() && Instant::now() < seeded.min(until) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        say!("seed jobs done; steady load at {rate} jobs/s");

        let mut tasks = JoinSet::new();
        while Instant::now() < until {
            while tasks.try_join_next().is_some() {}
            if self.registry.unfinished().len() >= max_outstanding {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            let batch = Arc::new(generator.next_batch());
            let replay = match rng.random_range(0..100) {
                0..5 => Replay::Concurrent,
                5..15 => Replay::After,
                _ => Replay::No,
            };
            tasks.spawn(self.clone().submit(batch, replay));
            let pause = rng.random_range(0.5..1.5) / rate;
            tokio::time::sleep(Duration::from_secs_f64(pause)).await;
        }
        tasks
    }

    async fn submit(self: Arc<Self>, batch: Arc<Batch>, replay: Replay) {
        self.stats.submissions.fetch_add(1, Ordering::Relaxed);
        let key = new_key();
        let (first, second) = match replay {
            Replay::No => {
                self.send(&batch, &key).await;
                return;
            }
            Replay::After => {
                let Some(first) = self.send(&batch, &key).await else {
                    return;
                };
                self.stats.replays.fetch_add(1, Ordering::Relaxed);
                (Some(first), self.send(&batch, &key).await)
            }
            Replay::Concurrent => {
                self.stats.replays.fetch_add(1, Ordering::Relaxed);
                tokio::join!(self.send(&batch, &key), self.send(&batch, &key))
            }
        };
        if let (Some(first), Some(second)) = (first, second)
            && first != second
        {
            self.violations.push(
                Invariant::Idempotency,
                format!(
                    "two sends of one {} request with Idempotency-Key {key} were answered \
                     with two jobs: {first} and {second}",
                    batch.resource.name()
                ),
            );
        }
    }

    /// Sends until accepted; `None` when refused, or abandoned at the end.
    async fn send(&self, batch: &Arc<Batch>, key: &str) -> Option<Uuid> {
        let body = batch.body();
        let mut retried = false;
        loop {
            match self.api.submit(batch.resource, key, &body).await {
                Answer::Accepted { id } => {
                    self.registry.accept(id, batch.clone());
                    return Some(id);
                }
                Answer::Retry(why) => {
                    if *self.give_up.borrow() {
                        self.stats.abandoned.fetch_add(1, Ordering::Relaxed);
                        say!("abandoned a submission with key {key}: {why}");
                        return None;
                    }
                    if !retried {
                        retried = true;
                        self.stats.retried.fetch_add(1, Ordering::Relaxed);
                    }
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Answer::Refused(why) => {
                    self.violations.push(
                        Invariant::Submissions,
                        format!(
                            "a {} request with Idempotency-Key {key} was refused: {why}",
                            batch.resource.name()
                        ),
                    );
                    return None;
                }
            }
        }
    }
}

fn new_key() -> String {
    format!("chaos-{}", Uuid::new_v4())
}
