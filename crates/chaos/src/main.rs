//! `arcus-chaos`: runs the real binaries (one `arcus-api`, several
//! `arcus-worker`s) against the machine's Postgres and RabbitMQ under a steady
//! load of bulk jobs, injects faults (worker kills and stalls, broker and
//! database restarts, duplicate and poison messages), heals, waits for the
//! system to go quiet and checks the service's invariants.
//!
//! `cargo xtask chaos` builds the binaries and runs this. Exit status: 0 when
//! every invariant held, 1 when one was violated, 2 when the harness itself
//! failed (setup, a service it could not restore, a panic).
//!
//! Whatever happens, Postgres and RabbitMQ are left running, every child
//! process is killed, and the run's exchanges, queues and database are
//! deleted (the database is kept with `--keep`).

mod api;
mod broker;
mod cluster;
mod faults;
mod invariants;
mod load;
mod observer;
mod records;
mod registry;
mod report;
mod services;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Parser;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;
use uuid::Uuid;

use crate::api::Api;
use crate::broker::Broker;
use crate::cluster::{Cluster, Spec};
use crate::faults::Injector;
use crate::invariants::{Checker, Violations};
use crate::load::{Load, LoadStats};
use crate::records::Generator;
use crate::registry::Registry;
use crate::report::Summary;
use crate::services::Services;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "arcus-chaos",
    about = "Fault injection against the real binaries, with an invariant checker"
)]
struct Args {
    /// Seconds of load and faults (setup and the heal come on top).
    #[arg(long, default_value_t = 600)]
    duration: u64,
    /// Seed of the load and the fault schedule (random when not given; the
    /// summary prints it).
    #[arg(long)]
    seed: Option<u64>,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Where `arcus-api`, `arcus-worker` and `arcusctl` are.
    #[arg(long, default_value = "target/debug")]
    bin_dir: PathBuf,
    /// Where the processes' logs go (`api.log`, `worker-1.log`, ...).
    #[arg(long, default_value = "target/chaos")]
    log_dir: PathBuf,
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// Jobs submitted per second.
    #[arg(long, default_value_t = 3.0)]
    rate: f64,
    /// Unfinished jobs beyond which the load holds back, as a client with a
    /// backlog would; keeps the heal within its timeout.
    #[arg(long, default_value_t = 30)]
    max_outstanding: usize,
    /// Seconds the system has, after the faults stop, to finish every job.
    #[arg(long, default_value_t = 180)]
    heal_timeout: u64,
    /// The Postgres server (a user that may create databases; no database).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres_url: String,
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    /// Keep the database after the run, to look at it.
    #[arg(long)]
    keep: bool,
}

/// The key secret the API and `arcusctl` share for the run.
const KEY_SECRET: &str = "arcus-chaos-key-secret";
/// The workers' lease, which a stalled worker is stopped past.
const LEASE_SECONDS: u64 = 4;
/// Worker settings for the run: a short lease so that a fault heals in
/// seconds, small chunks so that a job has several checkpoints to crash
/// between, and the failpoint (compiled in with the worker's `failpoints`
/// feature) that aborts a worker after it committed a job's final status and
/// before it acked the message. The sweeper is pushed out of the run: it would
/// re-dispatch a job whose message was lost, healing exactly the bugs (an ack
/// before the commit, a dropped message) the run is there to find; its own
/// tests cover it.
const WORKER_CHAOS_ENV: [(&str, &str); 6] = [
    ("ARCUS__WORKER__CHUNK_SIZE", "25"),
    ("ARCUS__WORKER__REDISPATCH_AFTER_SECS", "3600"),
    ("ARCUS__WORKER__SWEEP_INTERVAL_MS", "1000"),
    ("ARCUS__WORKER__MAX_DELIVERY_SECONDS", "20"),
    ("ARCUS__AMQP__RELAY_INTERVAL_MS", "500"),
    ("FAILPOINTS", "worker-after-finish-commit=3%return"),
];
/// When the first fault comes: once the seed jobs are under way.
const FIRST_FAULT_AFTER: Duration = Duration::from_secs(5);
/// How long submissions still being retried get to land once the services
/// are back, before they are abandoned.
const SEND_GRACE: Duration = Duration::from_secs(30);
/// How long the processes get to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const ALL_SCOPES: &str = "accounts:read,accounts:write,products:read,products:write,\
orders:read,orders:write,purchasing:read,purchasing:write,payments:read,payments:write,\
accounting:read,accounting:write,migration:read,migration:write,migration:admin";

static STARTED: OnceLock<Instant> = OnceLock::new();

/// Seconds since the harness started, for progress lines.
fn elapsed() -> f64 {
    STARTED.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// A progress line on stderr, stamped with the time since the start.
macro_rules! say {
    ($($arg:tt)*) => {
        eprintln!("[{:7.1}s] {}", $crate::elapsed(), format_args!($($arg)*))
    };
}
pub(crate) use say;

/// The cluster, once started, where the cleanup can find it whatever became
/// of the task that started it.
type Children = Arc<Mutex<Option<Arc<Cluster>>>>;

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("arcus-chaos: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(chaos(args))
}

async fn chaos(args: Args) -> ExitCode {
    STARTED.get_or_init(Instant::now);
    let seed = args.seed.unwrap_or_else(rand::random);
    // Named after the process, like the AMQP prefix, so that a second run on
    // the machine does not drop this one's database (it would still restart
    // the services under it: runs are meant to take turns).
    let prefix = format!("chaos{}", std::process::id());
    let database = format!("arcus_chaos_{}", std::process::id());
    let services = match Services::discover(&args.postgres_url, &args.amqp_url).await {
        Ok(services) => services,
        Err(e) => {
            eprintln!("arcus-chaos: {e:#}");
            return ExitCode::from(2);
        }
    };
    // A run restarts the services and starts them again if they are down at
    // the end; it must not be what starts services someone had stopped.
    if !services.postgres_up().await || !services.rabbitmq_up().await {
        eprintln!("arcus-chaos: Postgres and RabbitMQ must both be running before a run");
        return ExitCode::from(2);
    }
    say!("seed {seed}, AMQP prefix {prefix}, database {database}");
    let broker = Arc::new(Broker::new(&args.amqp_url, &prefix));
    let children: Children = Arc::default();

    let mut run = tokio::spawn(run(
        args.clone(),
        seed,
        prefix,
        database.clone(),
        services.clone(),
        broker.clone(),
        children.clone(),
    ));
    let outcome = tokio::select! {
        joined = &mut run => joined.unwrap_or_else(|e| Err(anyhow!("the harness failed: {e}"))),
        _ = tokio::signal::ctrl_c() => {
            run.abort();
            drop(run.await);
            Err(anyhow!("interrupted"))
        }
    };

    let restored = cleanup(&args, &services, &broker, &database, &children).await;
    match outcome {
        Ok(summary) => {
            if let Some(path) = &args.json
                && let Err(e) = summary.write_json(path)
            {
                eprintln!("arcus-chaos: {e:#}");
            }
            summary.print();
            if !restored {
                ExitCode::from(2)
            } else if summary.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("arcus-chaos: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Kills the processes, brings Postgres and RabbitMQ back if they are down,
/// and deletes what the run created. False if a service could not be
/// restored: that must not go unnoticed.
async fn cleanup(
    args: &Args,
    services: &Services,
    broker: &Broker,
    database: &str,
    children: &Children,
) -> bool {
    let cluster = children.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(cluster) = cluster {
        cluster.shutdown().await;
    }
    let mut restored = true;
    if let Err(e) = services.ensure_postgres().await {
        eprintln!("arcus-chaos: could NOT restore Postgres: {e:#}");
        restored = false;
    }
    if let Err(e) = services.ensure_rabbitmq().await {
        eprintln!("arcus-chaos: could NOT restore RabbitMQ: {e:#}");
        restored = false;
    }
    if let Err(e) = broker.delete_topology().await {
        say!("could not delete the run's queues and exchanges: {e:#}");
    }
    if !args.keep
        && let Err(e) = drop_database(services, database).await
    {
        say!("could not drop database {database}: {e:#}");
    }
    restored
}

async fn drop_database(services: &Services, database: &str) -> anyhow::Result<()> {
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{}/postgres", services.postgres_url))
        .await?;
    sqlx::query(&format!("drop database if exists {database} with (force)"))
        .execute(&admin)
        .await?;
    admin.close().await;
    Ok(())
}

/// Aborts the tasks it spawned when dropped: on an early return or a panic,
/// nothing keeps loading, observing or injecting faults.
#[derive(Default)]
struct Tasks(Vec<AbortHandle>);

impl Tasks {
    fn spawn<T: Send + 'static>(
        &mut self,
        task: impl Future<Output = T> + Send + 'static,
    ) -> JoinHandle<T> {
        let handle = tokio::spawn(task);
        self.0.push(handle.abort_handle());
        handle
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

async fn run(
    args: Args,
    seed: u64,
    prefix: String,
    database: String,
    services: Services,
    broker: Arc<Broker>,
    children: Children,
) -> anyhow::Result<Summary> {
    // Setup: a fresh database, an entity and a key, then the processes.
    drop_database(&services, &database).await?;
    let database_url = format!("{}/{database}", args.postgres_url);
    let common = vec![
        ("ARCUS__DATABASE__URL".to_owned(), database_url.clone()),
        ("ARCUS__AMQP__URL".to_owned(), args.amqp_url.clone()),
        ("ARCUS__AMQP__PREFIX".to_owned(), prefix.clone()),
        ("ARCUS__AUTH__KEY_SECRET".to_owned(), KEY_SECRET.to_owned()),
        ("NO_COLOR".to_owned(), "1".to_owned()),
    ];
    let arcusctl = args.bin_dir.join("arcusctl");
    arcusctl_json(&arcusctl, &common, &["db", "migrate"], false).await?;
    let entity = arcusctl_json(
        &arcusctl,
        &common,
        &["entity", "create", "--name", "Chaos Co", "--json"],
        true,
    )
    .await?;
    let entity: Uuid = entity["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .context("arcusctl entity create printed no id")?;
    let key = arcusctl_json(
        &arcusctl,
        &common,
        &[
            "key",
            "create",
            "--entity",
            &entity.to_string(),
            "--mode",
            "test",
            "--scopes",
            ALL_SCOPES,
            "--json",
        ],
        true,
    )
    .await?;
    let key = key["key"]
        .as_str()
        .context("arcusctl key create printed no key")?
        .to_owned();

    let api_addr = format!("127.0.0.1:{}", free_port()?);
    let mut specs = vec![Spec {
        name: "api".to_owned(),
        program: args.bin_dir.join("arcus-api"),
        env: with(
            &common,
            &[
                ("ARCUS__HTTP__ADDR", api_addr.as_str()),
                // Test keys are limited to 60 requests a minute: far below a
                // load test's pace.
                ("ARCUS__RATE_LIMIT__ENABLED", "false"),
                ("ARCUS__AMQP__RELAY_INTERVAL_MS", "500"),
            ],
        ),
    }];
    let mut probes = Vec::new();
    let lease = LEASE_SECONDS.to_string();
    for i in 1..=args.workers {
        let name = format!("worker-{i}");
        let probe = format!("127.0.0.1:{}", free_port()?);
        let mut env = with(
            &common,
            &[
                ("ARCUS__WORKER__HTTP_ADDR", probe.as_str()),
                ("ARCUS__WORKER__LEASE_SECONDS", lease.as_str()),
                // The worker names its leases after its host.
                ("HOSTNAME", name.as_str()),
            ],
        );
        env.extend(
            WORKER_CHAOS_ENV
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        specs.push(Spec {
            name,
            program: args.bin_dir.join("arcus-worker"),
            env,
        });
        probes.push(probe);
    }
    let cluster = Arc::new(Cluster::start(specs, &args.log_dir)?);
    *children.lock().unwrap_or_else(|p| p.into_inner()) = Some(cluster.clone());
    let api = Arc::new(Api::new(&api_addr, entity, key)?);
    wait_ready(&api, &probes, &args.log_dir).await?;
    say!(
        "API on {api_addr} and {} workers ready; logs in {}",
        args.workers,
        args.log_dir.display()
    );
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&database_url)
        .await
        .context("connecting to the run's database")?;

    // Load, observer and faults, side by side for the duration.
    let mut tasks = Tasks::default();
    let registry = Arc::new(Registry::default());
    let violations = Arc::new(Violations::default());
    let stats = Arc::new(LoadStats::default());
    let (give_up, give_up_rx) = watch::channel(false);
    let (stop_observer, stop_observer_rx) = watch::channel(false);
    let started = Instant::now();
    let until = started + Duration::from_secs(args.duration);
    let load = Arc::new(Load {
        api: api.clone(),
        registry: registry.clone(),
        violations: violations.clone(),
        stats: stats.clone(),
        give_up: give_up_rx,
    });
    let load_task = tasks.spawn(load.run(
        Generator::new(StdRng::seed_from_u64(seed)),
        StdRng::seed_from_u64(seed.wrapping_add(1)),
        args.rate,
        args.max_outstanding,
        until,
    ));
    let observer_task = tasks.spawn(observer::run(
        api.clone(),
        registry.clone(),
        violations.clone(),
        stop_observer_rx,
    ));
    let injector = Injector {
        cluster: cluster.clone(),
        services: services.clone(),
        broker: broker.clone(),
        registry: registry.clone(),
        pool: pool.clone(),
        lease: Duration::from_secs(LEASE_SECONDS),
        rng: StdRng::seed_from_u64(seed.wrapping_add(2)),
    };
    let faults_task = tasks.spawn(injector.run(started + FIRST_FAULT_AFTER, until));

    // Heal: no new load, every fault over, stalled workers continued, the
    // services up; submissions still retrying may land.
    let mut in_flight = load_task.await?;
    let faults = faults_task.await?;
    let heal_started = Instant::now();
    say!(
        "healing: {} jobs accepted; waiting for the system to go quiet",
        registry.len()
    );
    cluster.resume_all().await?;
    services.ensure_postgres().await?;
    services.ensure_rabbitmq().await?;
    let landed = tokio::time::timeout(SEND_GRACE, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    if landed.is_err() {
        give_up.send_replace(true);
        while in_flight.join_next().await.is_some() {}
    }
    let heal_limit = Duration::from_secs(args.heal_timeout).saturating_sub(heal_started.elapsed());
    let quiescent = invariants::wait_quiescent(&pool, &broker, heal_limit).await;
    let heal_secs = heal_started.elapsed().as_secs_f64();
    if quiescent {
        say!("quiescent after {heal_secs:.1} s; checking invariants");
    } else {
        say!("NOT quiescent after {heal_secs:.1} s; checking invariants anyway");
    }
    stop_observer.send_replace(true);
    observer_task.await?;

    let checker = Checker {
        pool: &pool,
        broker: &broker,
        registry: &registry,
        entity,
        faults: &faults,
        abandoned: stats.abandoned.load(Ordering::Relaxed),
    };
    let (jobs_by_status, records) = checker.check(&violations).await?;
    pool.close().await;
    let restarts = cluster.restarts();

    let violations = violations.all();
    Ok(Summary {
        seed,
        duration_secs: args.duration,
        workers: args.workers,
        amqp_prefix: prefix,
        faults: faults
            .injected
            .iter()
            .map(|(fault, n)| (fault.label(), *n))
            .collect(),
        faults_not_injected: faults.failed.clone(),
        stalls_taken_over: faults.takeovers,
        duplicate_messages: faults.duplicates,
        poison_messages: faults.poison.len(),
        restarts: restarts.total,
        restarts_by_cause: restarts.by_cause,
        submissions: stats.submissions.load(Ordering::Relaxed),
        submissions_retried: stats.retried.load(Ordering::Relaxed),
        retry_attempts: stats.retries.load(Ordering::Relaxed),
        idempotent_replays: stats.replays.load(Ordering::Relaxed),
        submissions_abandoned: stats.abandoned.load(Ordering::Relaxed),
        jobs_accepted: registry.len(),
        jobs_by_status,
        records,
        quiescent,
        heal_secs,
        invariants: Summary::verdicts(&violations),
        violations,
    })
}

/// `common` plus `extra`.
fn with(common: &[(String, String)], extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = common.to_vec();
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env
}

/// Runs `arcusctl` and parses what it printed as JSON when `json` is set.
async fn arcusctl_json(
    arcusctl: &Path,
    env: &[(String, String)],
    args: &[&str],
    json: bool,
) -> anyhow::Result<Value> {
    let out = tokio::process::Command::new(arcusctl)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .output()
        .await
        .with_context(|| format!("running {}", arcusctl.display()))?;
    if !out.status.success() {
        bail!(
            "arcusctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if !json {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("arcusctl {} printed no JSON", args.join(" ")))
}

/// A port free now. Another process could take it before ours binds it; on
/// a development machine that is rare enough.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits for the API's and every worker's `/readyz`.
async fn wait_ready(api: &Api, probes: &[String], log_dir: &Path) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let mut ready = api.ready().await;
        for probe in probes {
            ready &= client
                .get(format!("http://{probe}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
        }
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the API and workers were not ready within {READY_TIMEOUT:?}; see the logs in {}",
                log_dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
