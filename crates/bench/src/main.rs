//! `arcus-bench`: how fast the real binaries load records, measured against
//! what Postgres itself can do with the same records.
//!
//! In one run, on the machine's Postgres and RabbitMQ, as a new customer's
//! first migration meets them (no statistics: the bench never analyzes, and
//! autovacuum may be off or behind):
//!
//! 1. end to end, on a fresh database and fresh queues: the records submitted
//!    through the API in jobs of 1,000, a few in flight, until every job is
//!    terminal, with each worker count asked for (each pass into an entity of
//!    its own, so that every pass creates, and each after the first into a
//!    database already holding the earlier passes' rows); every record must
//!    succeed. Each pass also rates its first and its last tenth of jobs;
//! 2. status reads: during one more pass (of orders, or of the last resource
//!    asked for), `GET` job requests at a steady rate, open-loop, and their
//!    latencies;
//! 3. a pass of products (or of the first resource asked for) with one
//!    worker into a new entity, once the database holds every earlier pass's
//!    rows;
//! 4. the ceiling, on a fresh database of its own: N products, and N orders
//!    of five lines, loaded straight into the service's tables by COPY and one
//!    `INSERT ... SELECT` per table;
//! 5. the rows of every pass compared with the ceiling's, loaded once more
//!    (untimed) into the end-to-end database;
//! 6. the peak resident memory of the API and of every worker.
//!
//! It prints a table with the targets, and with `--json` writes the same as
//! JSON. Exit status: 0 when every judged target was met (below 10,000
//! records none is judged), 1 when one was missed, 2 when the bench itself
//! failed or a record failed. Postgres and RabbitMQ are left running (the
//! bench never restarts them); the processes, the databases and the queues of
//! the run are removed whatever happens.
//!
//! `cargo xtask bench` builds the release binaries and runs this.

mod api;
mod ceiling;
mod e2e;
mod processes;
mod reads;
mod records;
mod report;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, anyhow, bail, ensure};
use clap::Parser;
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};
use sqlx::{Connection as _, PgConnection};
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use crate::api::Api;
use crate::e2e::Accepted;
use crate::processes::Process;
use crate::records::Resource;
use crate::report::{CpuSpent, PeakRss, Report, Run, ServiceSettings, StatusReads};

#[derive(Parser, Debug)]
#[command(
    name = "arcus-bench",
    about = "Import throughput of the real binaries against a COPY ceiling, status-read latency and memory"
)]
struct Args {
    /// Records per resource (default 100,000).
    #[arg(long, conflicts_with_all = ["tiny", "small", "full"])]
    size: Option<usize>,
    /// 2,000 records: proves the bench works; targets are reported, not judged.
    #[arg(long, conflicts_with_all = ["small", "full"])]
    tiny: bool,
    /// 10,000 records.
    #[arg(long, conflicts_with = "full")]
    small: bool,
    /// 1,000,000 records.
    #[arg(long)]
    full: bool,
    /// Worker counts to measure, one end-to-end pass per resource each.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    workers: Vec<usize>,
    /// The resources to load.
    #[arg(long, value_delimiter = ',', default_value = "products,orders")]
    resources: Vec<Resource>,
    /// Status reads per second during the status-read pass (0: no such pass).
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Jobs submitted and not yet terminal at any time.
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Where `arcus-api`, `arcus-worker` and `arcusctl` are.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Where the processes' logs go (`api.log`, `worker-1.log`, ...).
    #[arg(long, default_value = "target/bench")]
    log_dir: PathBuf,
    /// A Postgres URL whose user may create databases; the bench's database is
    /// created next to the one it names.
    #[arg(
        long,
        env = "ARCUS_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    #[arg(
        long,
        env = "ARCUS_BENCH_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,
}

impl Args {
    fn size(&self) -> usize {
        if self.tiny {
            2_000
        } else if self.small {
            10_000
        } else if self.full {
            1_000_000
        } else {
            self.size.unwrap_or(100_000)
        }
    }
}

/// The key secret the API and `arcusctl` share for the run.
const KEY_SECRET: &str = "arcus-bench-key-secret";
const ALL_SCOPES: &str = "accounts:read,accounts:write,products:read,products:write,\
orders:read,orders:write,purchasing:read,purchasing:write,payments:read,payments:write,\
accounting:read,accounting:write,migration:read,migration:write,migration:admin";
/// The resources whose queues the service declares (README, `crates/queue`).
const QUEUE_RESOURCES: [&str; 6] = [
    "accounts",
    "products",
    "orders",
    "journal-entries",
    "vendor-bills",
    "ap-payments",
];

static STARTED: OnceLock<Instant> = OnceLock::new();

/// Seconds since the bench started, for progress lines.
fn elapsed() -> f64 {
    STARTED.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// A progress line on stderr, stamped with the time since the start.
macro_rules! say {
    ($($arg:tt)*) => {
        eprintln!("[{:7.1}s] {}", $crate::elapsed(), format_args!($($arg)*))
    };
}

#[tokio::main]
async fn main() -> ExitCode {
    STARTED.get_or_init(Instant::now);
    let mut args = Args::parse();
    args.workers.sort_unstable();
    args.workers.dedup();
    let mut named = Vec::new();
    args.resources.retain(|r| {
        let first = !named.contains(r);
        named.push(*r);
        first
    });
    if args.workers.is_empty()
        || args.workers[0] == 0
        || args.resources.is_empty()
        || args.size() == 0
        || args.rate < 0.0
    {
        eprintln!(
            "arcus-bench: --workers needs counts of 1 or more, --resources one or more, \
             --size 1 or more, --rate 0 or more"
        );
        return ExitCode::from(2);
    }
    // Named after the process, so that runs side by side do not meet.
    let databases = Databases {
        end_to_end: format!("arcus_bench_{}", std::process::id()),
        ceiling: format!("arcus_bench_{}_ceiling", std::process::id()),
    };
    let prefix = format!("bench{}", std::process::id());
    say!(
        "databases {} and {}, AMQP prefix {prefix}",
        databases.end_to_end,
        databases.ceiling
    );
    let outcome = tokio::select! {
        outcome = bench(&args, &databases, &prefix) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    // The processes are gone by now: dropping them killed them.
    if let Err(e) = delete_topology(&args.amqp_url, &prefix).await {
        say!("could not delete the run's queues and exchanges: {e:#}");
    }
    for database in [&databases.end_to_end, &databases.ceiling] {
        if let Err(e) = drop_database(&args.database_url, database).await {
            say!("could not drop database {database}: {e:#}");
        }
    }
    match outcome {
        Ok(report) => {
            report.print();
            if let Some(path) = &args.json
                && let Err(e) = report.write_json(path)
            {
                eprintln!("arcus-bench: {e:#}");
                return ExitCode::from(2);
            }
            if report.missed() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("arcus-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The run's two databases: the service's, and the ceiling's.
struct Databases {
    end_to_end: String,
    ceiling: String,
}

/// The run: everything it starts lives in this future, and goes with it.
async fn bench(args: &Args, databases: &Databases, prefix: &str) -> anyhow::Result<Report> {
    let size = args.size();
    // What the children will read: the bench passes its environment on, and
    // sets only addresses, names and the rate limit below.
    let service = settings::Settings::load().context("reading the service's settings")?;
    let database_url = with_database(&args.database_url, &databases.end_to_end);
    let common = vec![
        ("ARCUS__DATABASE__URL".to_owned(), database_url.clone()),
        ("ARCUS__AMQP__URL".to_owned(), args.amqp_url.clone()),
        ("ARCUS__AMQP__PREFIX".to_owned(), prefix.to_owned()),
        ("ARCUS__AUTH__KEY_SECRET".to_owned(), KEY_SECRET.to_owned()),
        ("NO_COLOR".to_owned(), "1".to_owned()),
    ];
    let ctl = Ctl {
        program: args.bin_dir.join("arcusctl"),
        env: common.clone(),
    };
    ctl.run(&["db", "migrate"]).await?;
    std::fs::create_dir_all(&args.log_dir)
        .with_context(|| format!("creating {}", args.log_dir.display()))?;

    let api_addr = format!("127.0.0.1:{}", free_port()?);
    let mut api = Process::start(
        "api",
        &args.bin_dir.join("arcus-api"),
        &with(
            &common,
            &[
                ("ARCUS__HTTP__ADDR", &api_addr),
                // The limiter has no setting for its limits, and a test key's
                // (60 a minute) is far below a bench's pace.
                ("ARCUS__RATE_LIMIT__ENABLED", "false"),
            ],
        ),
        &args.log_dir,
    )?;
    api.wait_ready(&api_addr).await?;
    say!(
        "API on {api_addr}; {size} records per resource; logs in {}",
        args.log_dir.display()
    );
    let mut conn = PgConnection::connect(&database_url)
        .await
        .context("connecting to the bench's database")?;

    let mut runs = Vec::new();
    let mut pass = Pass {
        args,
        ctl: &ctl,
        api_addr: &api_addr,
        api_pid: api.pid(),
        conn: &mut conn,
        loaded: Vec::new(),
    };
    let mut peak_rss = PeakRss::default();
    let mut status_reads = None;
    let most = *args.workers.last().expect("checked non-empty in main");
    // The new entity's pass loads the first resource asked for (products,
    // unless told otherwise); the status reads run during a pass of the last
    // one (orders), the longest, so that their tail rests on thousands of
    // reads.
    let first = *args.resources.first().expect("checked non-empty in main");
    let last = *args.resources.last().expect("checked non-empty in main");
    for &count in &args.workers {
        let workers = start_workers(args, &common, &format!("of-{count}"), count).await?;
        for &resource in &args.resources {
            let (run, _) = pass.run(resource, &workers, None).await?;
            runs.push(announce(run));
        }
        if count == most && args.rate > 0.0 {
            let (run, reads) = pass.run(last, &workers, Some(args.rate)).await?;
            runs.push(announce(run));
            status_reads = reads.map(|reads| StatusReads::new(args.rate, reads));
        }
        for worker in workers {
            let name = worker.name.clone();
            peak_rss.workers.insert(name, worker.stop().await?);
        }
    }
    // A new entity's first load, into a database that already holds every
    // earlier pass's rows: it must go as fast as the first pass went into the
    // empty one.
    let workers = start_workers(args, &common, "new-entity", 1).await?;
    let (run, _) = pass.run(first, &workers, None).await?;
    runs.push(announce(run));
    for worker in workers {
        let name = worker.name.clone();
        peak_rss.workers.insert(name, worker.stop().await?);
    }
    peak_rss.api = api.stop().await?;
    let loaded = std::mem::take(&mut pass.loaded);

    // The ceiling on a database of its own, as fresh as the service's was.
    let ceiling_url = with_database(&args.database_url, &databases.ceiling);
    let ceiling_ctl = Ctl {
        program: ctl.program.clone(),
        env: with(&common, &[("ARCUS__DATABASE__URL", &ceiling_url)]),
    };
    ceiling_ctl.run(&["db", "migrate"]).await?;
    let mut ceiling_conn = PgConnection::connect(&ceiling_url)
        .await
        .context("connecting to the ceiling's database")?;
    measure_ceilings(
        &ceiling_ctl,
        &mut ceiling_conn,
        &args.resources,
        size,
        &mut runs,
    )
    .await?;
    drop(ceiling_conn.close().await);

    // The same rows once more beside the service's, untimed, so that every
    // pass can be compared with them.
    let mut reference = Vec::new();
    for &resource in &args.resources {
        let entity = ctl
            .entity(&format!("Bench reference {}", resource.name()))
            .await?;
        load_ceiling(&mut conn, resource, entity, size).await?;
        reference.push((resource, entity));
    }
    for (resource, entity) in loaded {
        let (_, ceiling) = reference
            .iter()
            .find(|(r, _)| *r == resource)
            .context("every resource loaded has its reference")?;
        let differing = ceiling::differences(&mut conn, resource, *ceiling, entity).await?;
        ensure!(
            differing == 0,
            "{differing} {} rows (or lines, numbers, sequences) loaded by the service differ \
             from the ceiling's: the comparison would not be fair",
            resource.name()
        );
    }
    say!("every pass's rows equal the ceiling's");
    drop(conn.close().await);

    let mut report = Report {
        size,
        workers: args.workers.clone(),
        jobs_in_flight: args.in_flight,
        settings: ServiceSettings {
            worker_concurrency: service.worker.concurrency,
            worker_chunk_size: service.worker.chunk_size,
            database_max_connections: service.database.max_connections,
        },
        runs,
        status_reads,
        peak_rss_mb: peak_rss,
        targets: Vec::new(),
    };
    report.judge();
    Ok(report)
}

/// Loads the ceiling's records of `resource` into `entity` (orders with the
/// customers and products they name); the time of the records' own load.
async fn load_ceiling(
    conn: &mut PgConnection,
    resource: Resource,
    entity: Uuid,
    size: usize,
) -> anyhow::Result<Duration> {
    match resource {
        Resource::Products => ceiling::load_products(conn, entity, size).await,
        Resource::Orders => {
            ceiling::load_order_parents(conn, entity).await?;
            ceiling::load_orders(conn, entity, size).await
        }
    }
}

/// How many times a ceiling is loaded up to 100,000 records: a load of a
/// second or less swings by half with whatever else the machine runs, and
/// the fastest is the least disturbed.
const CEILING_TRIES: usize = 3;

/// Loads the ceiling's products and orders, each into entities of their own,
/// and keeps the fastest load of each. Nothing is analyzed: the tables are as
/// new to the planner as the service's were.
async fn measure_ceilings(
    ctl: &Ctl,
    conn: &mut PgConnection,
    resources: &[Resource],
    size: usize,
    runs: &mut Vec<Run>,
) -> anyhow::Result<()> {
    let tries = if size <= 100_000 { CEILING_TRIES } else { 1 };
    for &resource in resources {
        let mut fastest: Option<(Duration, CpuSpent)> = None;
        for _ in 0..tries {
            let entity = ctl
                .entity(&format!("Bench ceiling {}", resource.name()))
                .await?;
            let before = cpu_now(&[]);
            let took = load_ceiling(conn, resource, entity, size).await?;
            let cpu = cpu_now(&[]).since(before);
            if fastest.is_none_or(|(best, _)| took < best) {
                fastest = Some((took, cpu));
            }
        }
        let (took, cpu) = fastest.expect("at least one try");
        runs.push(announce(Run::ceiling(resource, size, took, cpu)));
    }
    Ok(())
}

/// Starts `count` workers, each with its probe on a port of its own, and
/// waits until every one consumes.
async fn start_workers(
    args: &Args,
    common: &[(String, String)],
    group: &str,
    count: usize,
) -> anyhow::Result<Vec<Process>> {
    let mut workers = Vec::new();
    for i in 1..=count {
        let probe = format!("127.0.0.1:{}", free_port()?);
        let name = format!("worker-{i}-{group}");
        let mut worker = Process::start(
            &name,
            &args.bin_dir.join("arcus-worker"),
            &with(
                common,
                &[
                    ("ARCUS__WORKER__HTTP_ADDR", &probe),
                    // The worker names its leases after its host.
                    ("HOSTNAME", &name),
                ],
            ),
            &args.log_dir,
        )?;
        worker.wait_ready(&probe).await?;
        workers.push(worker);
    }
    Ok(workers)
}

fn announce(run: Run) -> Run {
    let tenths = match (run.first_tenth_per_sec, run.last_tenth_per_sec) {
        (Some(first), Some(last)) => {
            format!(" (first tenth {first:.0}/s, last tenth {last:.0}/s)")
        }
        _ => String::new(),
    };
    say!(
        "{} {}, {} rows before: {} records in {:.2} s, {:.0} records/s{tenths}",
        run.resource.name(),
        run.label(),
        run.rows_before,
        run.records,
        run.secs,
        run.records_per_sec
    );
    run
}

/// What every end-to-end pass shares.
struct Pass<'a> {
    args: &'a Args,
    ctl: &'a Ctl,
    api_addr: &'a str,
    api_pid: u32,
    conn: &'a mut PgConnection,
    /// The entity each pass loaded, to be compared with the ceiling's rows.
    loaded: Vec<(Resource, Uuid)>,
}

impl Pass<'_> {
    /// Loads the records of `resource` into a fresh entity through the API,
    /// with status reads at `read_rate` meanwhile if given.
    async fn run(
        &mut self,
        resource: Resource,
        workers: &[Process],
        read_rate: Option<f64>,
    ) -> anyhow::Result<(Run, Option<reads::Reads>)> {
        let entity = self
            .ctl
            .entity(&format!(
                "Bench {} {} workers",
                resource.name(),
                workers.len()
            ))
            .await?;
        let service: Vec<u32> = std::iter::once(self.api_pid)
            .chain(workers.iter().map(Process::pid))
            .collect();
        let key = self.ctl.key(entity).await?;
        if resource == Resource::Orders {
            ceiling::load_order_parents(self.conn, entity).await?;
        }
        let rows_before = ceiling::rows(self.conn, resource).await?;
        let api = Arc::new(Api::new(self.api_addr, entity, &key)?);
        let accepted = Accepted::default();
        let readers = match read_rate {
            Some(rate) => {
                let (stop, stopped) = watch::channel(false);
                let task =
                    tokio::spawn(reads::run(api.another()?, accepted.clone(), rate, stopped));
                Some((stop, task))
            }
            None => None,
        };
        let before = cpu_now(&service);
        let loaded = e2e::run(
            api,
            resource,
            self.args.size(),
            self.args.in_flight,
            accepted,
        )
        .await;
        let cpu = cpu_now(&service).since(before);
        // The readers stop with the import, whatever became of it.
        let reads = match readers {
            Some((stop, task)) => {
                stop.send_replace(true);
                Some(task.await.context("the status readers panicked")?)
            }
            None => None,
        };
        self.loaded.push((resource, entity));
        let run = Run::end_to_end(
            resource,
            workers.len(),
            read_rate.is_some(),
            rows_before,
            self.args.size(),
            loaded?,
            cpu,
        );
        Ok((run, reads))
    }
}

/// The CPU seconds used so far by the `service` processes and by Postgres.
fn cpu_now(service: &[u32]) -> CpuSpent {
    CpuSpent {
        service: (!service.is_empty()).then(|| {
            service
                .iter()
                .filter_map(|&pid| processes::cpu_seconds(pid))
                .sum()
        }),
        postgres: processes::postgres_cpu_seconds(),
    }
}

/// `arcusctl` on the bench's database.
struct Ctl {
    program: PathBuf,
    env: Vec<(String, String)>,
}

impl Ctl {
    async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = tokio::process::Command::new(&self.program)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(args)
            .output()
            .await
            .with_context(|| format!("running {}", self.program.display()))?;
        if !out.status.success() {
            bail!(
                "arcusctl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    async fn entity(&self, name: &str) -> anyhow::Result<Uuid> {
        let id = self.run(&["entity", "create", "--name", name]).await?;
        id.parse()
            .with_context(|| format!("arcusctl entity create printed {id:?}"))
    }

    /// A test key of `entity` with every scope.
    async fn key(&self, entity: Uuid) -> anyhow::Result<String> {
        self.run(&[
            "key",
            "create",
            "--entity",
            &entity.to_string(),
            "--mode",
            "test",
            "--scopes",
            ALL_SCOPES,
        ])
        .await
    }
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

/// A Postgres URL with its database swapped for `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority..].find('/') {
        Some(slash) => &base[..authority + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

async fn drop_database(url: &str, database: &str) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(url).await?;
    sqlx::query(&format!("drop database if exists {database} with (force)"))
        .execute(&mut admin)
        .await?;
    drop(admin.close().await);
    Ok(())
}

/// Deletes the run's queues and exchanges (the names of the README's
/// topology), each on a channel of its own: a failed delete closes its
/// channel.
async fn delete_topology(url: &str, prefix: &str) -> anyhow::Result<()> {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .context("connecting to RabbitMQ")?;
    let queues = QUEUE_RESOURCES
        .iter()
        .map(|r| format!("{prefix}.migration.{r}"))
        .chain([format!("{prefix}.migration.dead")]);
    for queue in queues {
        conn.create_channel()
            .await?
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .with_context(|| format!("deleting queue {queue}"))?;
    }
    for exchange in [
        format!("{prefix}.migration"),
        format!("{prefix}.migration.dlx"),
    ] {
        conn.create_channel()
            .await?
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await
            .with_context(|| format!("deleting exchange {exchange}"))?;
    }
    drop(conn.close(200, "done".into()).await);
    Ok(())
}

/// A port free now. Another process could take it before ours binds it; on
/// a development machine that is rare enough.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_url_is_swapped() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "b"),
            "postgres://postgres@127.0.0.1:5432/b"
        );
        assert_eq!(
            with_database("postgres://u:p@h:5432/db?sslmode=disable", "b"),
            "postgres://u:p@h:5432/b?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "b"),
            "postgres://h:5432/b"
        );
    }

    #[test]
    fn presets_set_the_size() {
        let size = |args: &[&str]| {
            Args::try_parse_from(std::iter::once("arcus-bench").chain(args.iter().copied()))
                .expect("valid arguments")
                .size()
        };
        assert_eq!(size(&[]), 100_000);
        assert_eq!(size(&["--tiny"]), 2_000);
        assert_eq!(size(&["--small"]), 10_000);
        assert_eq!(size(&["--full"]), 1_000_000);
        assert_eq!(size(&["--size", "5000"]), 5_000);
        assert!(Args::try_parse_from(["arcus-bench", "--tiny", "--size", "5"]).is_err());
    }
}
