//! The worker: consumes job messages from the per-resource queues and loads the
//! jobs' records through the canonical handlers in `domain`.
//!
//! A message is acked only after its job's final status is committed. If the
//! worker dies first, RabbitMQ hands the message to another worker, which
//! takes the job over once the dead worker's lease has expired and resumes it
//! at the last committed chunk. A job is claimed by one worker at a time, so
//! duplicate messages and redeliveries cost a look-up, never a second load.
//!
//! Next to the consumer, every worker runs the webhook delivery loop
//! (`webhooks.rs`), which sends the events of jobs' terminal states.

mod job;
mod metrics;
mod probe;
mod webhooks;

pub use job::{JobRunner, Outcome, ProcessError};
pub use metrics::WorkerMetrics;

use job::Backoff;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use domain::Resource;
use domain::jobs::JobMessage;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::FieldTable;
use queue::{Publisher, Relay, Topology};
use settings::Settings;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};
use tracing::Instrument;

/// How often a message for a job another worker holds waits for that claim to
/// run out, and how long past its end.
const BUSY_WAITS: u32 = 2;
const BUSY_MARGIN: Duration = Duration::from_millis(250);
/// How long to wait before handing back a message whose processing failed on
/// an infrastructure error.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Runs a worker until `shutdown` resolves, then finishes the jobs in hand.
pub async fn run(
    settings: Settings,
    resources: Vec<Resource>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    Worker::build(settings, resources)
        .await?
        .run(shutdown)
        .await
}

/// A worker with its connections made and its probe listener bound, so
/// callers (tests) can ask for the port before it runs.
pub struct Worker {
    settings: Settings,
    resources: Vec<Resource>,
    pool: sqlx::PgPool,
    listener: TcpListener,
    metrics: Arc<WorkerMetrics>,
}

impl Worker {
    pub async fn build(settings: Settings, resources: Vec<Resource>) -> anyhow::Result<Self> {
        // A frozen worker's transaction is cut off once its lease has run out,
        // when another worker may take its job over.
        let pool = domain::db::connect_with_idle_timeout(
            settings.database.url(),
            settings.database.max_connections,
            Duration::from_secs(u64::from(settings.worker.lease_seconds)),
        )
        .await
        .context("connecting to Postgres")?;
        let listener = TcpListener::bind(&settings.worker.http_addr)
            .await
            .with_context(|| format!("binding {}", settings.worker.http_addr))?;
        Ok(Self {
            settings,
            resources,
            pool,
            listener,
            metrics: Arc::new(WorkerMetrics::new()),
        })
    }

    /// The port of `/metrics`, `/healthz` and `/readyz`.
    pub fn http_port(&self) -> u16 {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
            .port()
    }

    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let settings = &self.settings;
        let topology = Topology::new(&settings.amqp.prefix);
        let owner = worker_name();
        let relay_wake = Arc::new(Notify::new());
        let runner = JobRunner {
            pool: self.pool.clone(),
            owner: owner.clone(),
            chunk_size: settings.worker.chunk_size,
            lease_seconds: settings.worker.lease_seconds,
            metrics: self.metrics.clone(),
            relay: relay_wake.clone(),
        };

        // Workers relay the outbox too, so jobs committed by an API replica
        // that died before publishing them still reach the queues.
        let publisher = Arc::new(Publisher::new(
            settings.amqp.url(),
            &format!("{owner} relay"),
            topology.clone(),
        ));
        // A broker that is down at start (restarting, say) is waited for like
        // one that goes away later: the consumer and the relay reconnect, and
        // `/readyz` says not ready meanwhile.
        if let Err(e) = publisher.check().await {
            tracing::warn!(error = %e, "RabbitMQ is not reachable yet; will keep trying");
        }

        let concurrency = settings.worker.concurrency.max(1);
        let consuming = Arc::new(AtomicBool::new(false));
        let consumer = Consumer {
            url: settings.amqp.url().to_owned(),
            name: owner,
            topology,
            resources: self.resources.clone(),
            concurrency,
            runner: Arc::new(runner),
            in_flight: Arc::new(Semaphore::new(usize::from(concurrency))),
            max_hold: Duration::from_secs(settings.worker.max_delivery_seconds),
            consuming: consuming.clone(),
        };
        let probes = probe::router(probe::ProbeState {
            pool: self.pool.clone(),
            consuming,
            metrics: self.metrics.clone(),
        });
        tracing::info!(addr = %self.listener.local_addr()?, "probes and metrics");

        // One shutdown for the consumer, the probe server and the relay.
        let (stop, stopped) = watch::channel(false);
        let until_stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let relay = Relay {
            pool: self.pool.clone(),
            publisher,
            notify: relay_wake,
            interval: Duration::from_millis(settings.amqp.relay_interval_ms),
        };
        let sweeper = Sweeper {
            pool: self.pool.clone(),
            relay: relay.notify.clone(),
            metrics: self.metrics.clone(),
            interval: Duration::from_millis(settings.worker.sweep_interval_ms),
            redispatch_after: Duration::from_secs(settings.worker.redispatch_after_secs),
        };
        // Deliveries run on their own task and slots: a slow endpoint delays
        // other deliveries at most, never a job.
        let deliverer =
            webhooks::Deliverer::new(self.pool.clone(), &settings.webhooks, self.metrics.clone())?;
        let signal = async {
            shutdown.await;
            let _ = stop.send(true);
        };
        let (consumed, served, (), (), (), ()) = tokio::join!(
            consumer.consume(until_stopped(stopped.clone())),
            axum::serve(self.listener, probes)
                .with_graceful_shutdown(until_stopped(stopped.clone())),
            relay.run(until_stopped(stopped.clone())),
            sweeper.run(until_stopped(stopped.clone())),
            deliverer.run(until_stopped(stopped.clone())),
            signal,
        );
        self.pool.close().await;
        consumed?;
        served.context("serving probes")
    }
}

/// Finds unfinished jobs that no worker holds and no message announces any
/// more (their message was dead-lettered, or lost with a broker that lost its
/// disk) and queues a fresh message for each through the outbox. Every worker
/// runs one; `for update skip locked` keeps them from doing the same job twice.
struct Sweeper {
    pool: sqlx::PgPool,
    relay: Arc<Notify>,
    metrics: Arc<WorkerMetrics>,
    interval: Duration,
    redispatch_after: Duration,
}

impl Sweeper {
    async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(self.interval) => {}
            }
            match domain::jobs::sweep(&self.pool, self.redispatch_after, SWEEP_BATCH).await {
                Ok(ids) if ids.is_empty() => {}
                Ok(ids) => {
                    tracing::warn!(jobs = ?ids, "re-dispatched unfinished jobs with no message");
                    self.metrics.jobs_redispatched.inc_by(ids.len() as u64);
                    self.relay.notify_one();
                }
                Err(e) => tracing::warn!(error = %e, "job sweep failed; will retry"),
            }
        }
    }
}

/// Jobs re-dispatched per sweep.
const SWEEP_BATCH: i64 = 100;

/// Parses `--resources products,orders`; empty means every resource.
pub fn parse_resources(list: &[String]) -> anyhow::Result<Vec<Resource>> {
    let mut resources = Vec::new();
    for name in list.iter().flat_map(|s| s.split(',')) {
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        let resource: Resource = name.parse()?;
        if !resources.contains(&resource) {
            resources.push(resource);
        }
    }
    if resources.is_empty() {
        resources = Resource::ALL.to_vec();
    }
    Ok(resources)
}

fn worker_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_owned());
    format!(
        "{host}/{}/{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

struct Consumer {
    url: String,
    name: String,
    topology: Topology,
    resources: Vec<Resource>,
    concurrency: u16,
    runner: Arc<JobRunner>,
    in_flight: Arc<Semaphore>,
    /// How long one message may be held before its job is handed on.
    max_hold: Duration,
    /// Whether the consumers are registered: what `/readyz` reports.
    consuming: Arc<AtomicBool>,
}

impl Consumer {
    /// Consumes until shutdown, reconnecting when the broker goes away.
    async fn consume(&self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        loop {
            let result = self.consume_once(&mut shutdown).await;
            self.consuming.store(false, Ordering::Relaxed);
            match result {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "lost RabbitMQ; reconnecting");
                    tokio::select! {
                        () = &mut shutdown => {
                            self.drain().await;
                            return Ok(());
                        }
                        () = tokio::time::sleep(RETRY_DELAY) => {}
                    }
                }
            }
        }
    }

    /// Waits for the jobs in hand: each finishes and acks, or, if the broker
    /// is gone, its message is redelivered and the job resumed elsewhere.
    async fn drain(&self) {
        let _all = self
            .in_flight
            .acquire_many(u32::from(self.concurrency))
            .await
            .expect("the semaphore is never closed");
    }

    /// One connection's life: returns Ok on shutdown, Err when the broker
    /// connection fails.
    async fn consume_once(
        &self,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> anyhow::Result<()> {
        let conn = queue::connect(&self.url, &self.name).await?;
        let channel = conn.create_channel().await?;
        self.topology.declare(&channel).await?;
        // Prefetch bounds the messages a worker holds; they wait for a free
        // slot, so set it to what the worker can run at once.
        channel
            .basic_qos(self.concurrency, BasicQosOptions::default())
            .await?;
        let mut consumers = Vec::new();
        for resource in &self.resources {
            let consumer = channel
                .basic_consume(
                    self.topology.queue(*resource).as_str().into(),
                    format!("{} {}", self.name, resource).as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            consumers.push(consumer);
        }
        self.consuming.store(true, Ordering::Relaxed);
        tracing::info!(resources = ?self.resources.iter().map(|r| r.as_str()).collect::<Vec<_>>(), "consuming");
        let mut deliveries = futures::stream::select_all(consumers);
        loop {
            let permit = tokio::select! {
                () = &mut *shutdown => break,
                permit = self.in_flight.clone().acquire_owned() => {
                    permit.expect("the semaphore is never closed")
                }
            };
            let delivery = tokio::select! {
                () = &mut *shutdown => break,
                next = deliveries.next() => match next {
                    Some(Ok(delivery)) => delivery,
                    Some(Err(e)) => return Err(e.into()),
                    None => anyhow::bail!("the broker cancelled our consumers"),
                },
            };
            let runner = self.runner.clone();
            let max_hold = self.max_hold;
            tokio::spawn(async move {
                handle(&runner, delivery, max_hold).await;
                drop(permit);
            });
        }
        // Stop taking messages, let the jobs in hand finish and ack on this
        // channel, then close it: messages prefetched but not started go back
        // to the queue for the other workers.
        drop(deliveries);
        self.drain().await;
        let _ = conn.close(200, "worker shutting down".into()).await;
        Ok(())
    }
}

/// Processes one delivery and settles its message.
async fn handle(runner: &JobRunner, delivery: Delivery, max_hold: Duration) {
    let message: JobMessage = match serde_json::from_slice(&delivery.data) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "unreadable job message; dead-lettering it");
            settle(&delivery, Settle::DeadLetter).await;
            return;
        }
    };
    let span = tracing::info_span!(
        "job",
        job_id = %message.job_id,
        resource = %message.resource,
        request_id = message.request_id.as_deref().unwrap_or(""),
    );
    async {
        let settle_as = settlement(runner, message.job_id, Instant::now() + max_hold).await;
        if settle_as == Settle::Ack {
            // Fault injection (chaos builds only): die after the job's final
            // commit and before the ack, so the message is delivered again.
            fail::fail_point!("worker-after-finish-commit", |_| { std::process::abort() });
        }
        settle(&delivery, settle_as).await;
    }
    .instrument(span)
    .await;
}

/// Runs the job of a message and decides what becomes of the message. The
/// message is acked only once the job's state in Postgres makes it useless:
/// finished, owned by a live worker, or handed on through a fresh message.
async fn settlement(runner: &JobRunner, job_id: uuid::Uuid, deadline: Instant) -> Settle {
    let mut backoff = Backoff::until(deadline);
    let mut busy_waits = 0;
    loop {
        match runner.process(job_id, deadline).await {
            Ok(Outcome::Finished(status)) => {
                tracing::info!(%status, "job finished");
                return Settle::Ack;
            }
            Ok(Outcome::AlreadyFinished) => return Settle::Ack,
            Ok(Outcome::HandedOn) => {
                tracing::info!("job handed on through a fresh message");
                return Settle::Ack;
            }
            Ok(Outcome::Released) => {
                tracing::warn!("claim released after a lost commit answer; claiming it again");
            }
            Ok(Outcome::LeaseLost) => {
                tracing::warn!("another worker took the job over");
                return Settle::Ack;
            }
            Ok(Outcome::NotFound) => {
                // Jobs are committed before their message is queued, so this
                // message was not sent by the service.
                tracing::error!("message for an unknown job; dead-lettering it");
                return Settle::DeadLetter;
            }
            // Another claim is live: its worker may have died, so wait for the
            // claim to run out and try to take the job over. A claim that is
            // still renewed belongs to a live worker, which holds its own
            // message; if that worker dies later, its message comes back, and
            // the sweeper queues another if even that is lost.
            Ok(Outcome::Busy { lease_left }) if busy_waits < BUSY_WAITS => {
                busy_waits += 1;
                tokio::time::sleep(lease_left + BUSY_MARGIN).await;
            }
            Ok(Outcome::Busy { .. }) => return Settle::Ack,
            Err(e) if e.is_transient() && backoff.wait().await => {
                tracing::warn!(error = %e, "transient database error; retrying");
                runner.metrics.retries.with_label_values(&["claim"]).inc();
            }
            Err(e) => {
                // The delivery count grows with each requeue: a message that
                // keeps failing ends in the dead-letter queue, and its job is
                // given up after a bounded number of claims.
                tracing::error!(error = %e, "job failed; its message goes back to the queue");
                tokio::time::sleep(RETRY_DELAY).await;
                return Settle::Requeue;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    Ack,
    Requeue,
    DeadLetter,
}

async fn settle(delivery: &Delivery, how: Settle) {
    let result = match how {
        Settle::Ack => delivery.acker.ack(BasicAckOptions::default()).await,
        Settle::Requeue => {
            delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await
        }
        Settle::DeadLetter => {
            delivery
                .acker
                .reject(BasicRejectOptions { requeue: false })
                .await
        }
    };
    if let Err(e) = result {
        // The channel is gone; the broker redelivers the message, and the
        // job's state in Postgres makes the redelivery harmless.
        tracing::warn!(error = %e, "could not settle the message");
    }
}
