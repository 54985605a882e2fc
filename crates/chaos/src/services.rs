//! The machine's Postgres and RabbitMQ: whether they answer, restarting them
//! as a fault, and starting them again whatever happened, so a run leaves
//! them running as it found them.
//!
//! They are the local services of the development machine and CI: Postgres is
//! a Debian cluster driven by `pg_ctlcluster`, RabbitMQ a node driven by
//! `rabbitmqctl` and `rabbitmq-server`. The commands run through `setsid`, so
//! a server they start is not in our process group: a Ctrl-C in the terminal
//! must not take it down with the harness.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use lapin::{Connection, ConnectionProperties};
use sqlx::Connection as _;
use tokio::process::Command;
use tokio::time::{Instant, timeout};

use crate::say;

/// How long a server may take to answer after a (re)start.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long one connection attempt may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct Services {
    /// A Postgres server URL (any database the user may connect to).
    pub postgres_url: String,
    pub amqp_url: String,
    /// The Debian cluster serving `postgres_url`: version and name.
    cluster: (String, String),
}

impl Services {
    /// Finds the Postgres cluster listening on the URL's port.
    pub async fn discover(postgres_url: &str, amqp_url: &str) -> anyhow::Result<Self> {
        let port = postgres_url
            .rsplit_once(':')
            .and_then(|(_, rest)| rest.split(['/', '?']).next())
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or(5432);
        let listing = output(Command::new("pg_lsclusters").arg("--no-header")).await?;
        // Lines read "15 main 5432 online postgres /var/lib/... /var/log/...".
        let cluster = listing
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .find(|cols| cols.len() > 2 && cols[2] == port.to_string())
            .map(|cols| (cols[0].to_owned(), cols[1].to_owned()))
            .with_context(|| format!("no Postgres cluster on port {port}:\n{listing}"))?;
        Ok(Self {
            postgres_url: postgres_url.to_owned(),
            amqp_url: amqp_url.to_owned(),
            cluster,
        })
    }

    pub async fn postgres_up(&self) -> bool {
        let url = format!("{}/postgres", self.postgres_url);
        match timeout(PROBE_TIMEOUT, sqlx::PgConnection::connect(&url)).await {
            Ok(Ok(conn)) => {
                drop(conn.close().await);
                true
            }
            _ => false,
        }
    }

    pub async fn rabbitmq_up(&self) -> bool {
        let connect = Connection::connect(&self.amqp_url, ConnectionProperties::default());
        match timeout(PROBE_TIMEOUT, connect).await {
            Ok(Ok(conn)) => {
                drop(conn.close(200, "probe".into()).await);
                true
            }
            _ => false,
        }
    }

    fn pg_ctlcluster(&self, action: &str) -> Command {
        let (version, name) = &self.cluster;
        let mut cmd = Command::new("setsid");
        cmd.args([
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            version,
            name,
            action,
        ]);
        cmd
    }

    /// The fault: a fast shutdown (open transactions are rolled back and
    /// every connection is cut), then a start.
    pub async fn restart_postgres(&self) -> anyhow::Result<()> {
        quiet(self.pg_ctlcluster("restart").args(["-m", "fast"])).await?;
        self.wait_postgres().await
    }

    /// The fault: the whole node stops (not only the application), as when a
    /// broker pod is rescheduled; its durable quorum queues come back with it.
    pub async fn restart_rabbitmq(&self) -> anyhow::Result<()> {
        quiet(Command::new("rabbitmqctl").arg("shutdown")).await?;
        self.start_rabbitmq_node().await
    }

    async fn start_rabbitmq_node(&self) -> anyhow::Result<()> {
        // `-detached` returns at once; `await_startup` waits for the boot.
        // The node outlives the command, so it must not inherit our pipes:
        // reading them to their end would wait for the node to stop.
        let started = Command::new("setsid")
            .args(["rabbitmq-server", "-detached"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .context("running rabbitmq-server -detached")?;
        if !started.success() {
            bail!("rabbitmq-server -detached failed: {started}");
        }
        // `await_startup` fails at once while the new node has not yet
        // registered with epmd, so it is asked again until it waits.
        let deadline = Instant::now() + START_TIMEOUT;
        while let Err(e) =
            quiet(Command::new("rabbitmqctl").args(["await_startup", "--timeout", "90"])).await
        {
            if Instant::now() > deadline {
                return Err(e.context("RabbitMQ did not start"));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.wait_rabbitmq().await
    }

    /// Starts Postgres unless it answers. A restart by a fault may still be
    /// under way, so it first gives the server a moment to come back.
    pub async fn ensure_postgres(&self) -> anyhow::Result<()> {
        if self.settles(|| self.postgres_up()).await {
            return Ok(());
        }
        say!("Postgres is down: starting it");
        // "Already running" is an error here but not a problem: the wait decides.
        if let Err(e) = quiet(&mut self.pg_ctlcluster("start")).await {
            say!("pg_ctlcluster start: {e:#}");
        }
        self.wait_postgres().await
    }

    /// Starts RabbitMQ unless it answers: the application if the node runs
    /// without it, else the node.
    pub async fn ensure_rabbitmq(&self) -> anyhow::Result<()> {
        if self.settles(|| self.rabbitmq_up()).await {
            return Ok(());
        }
        let node_runs = quiet(Command::new("rabbitmq-diagnostics").args(["-q", "ping"]))
            .await
            .is_ok();
        if node_runs {
            say!("RabbitMQ's node runs without its application: starting it");
            quiet(Command::new("rabbitmqctl").arg("start_app")).await?;
            self.wait_rabbitmq().await
        } else {
            say!("RabbitMQ is down: starting it");
            self.start_rabbitmq_node().await
        }
    }

    /// Whether a probe succeeds within a few seconds.
    async fn settles<F: Future<Output = bool>>(&self, probe: impl Fn() -> F) -> bool {
        for _ in 0..5 {
            if probe().await {
                return true;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        false
    }

    async fn wait_postgres(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.postgres_up().await {
            if Instant::now() > deadline {
                bail!("Postgres did not answer within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(())
    }

    async fn wait_rabbitmq(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.rabbitmq_up().await {
            if Instant::now() > deadline {
                bail!("RabbitMQ did not accept connections within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(())
    }
}

/// Runs a command to its end with no input, failing with its output when it fails.
async fn quiet(cmd: &mut Command) -> anyhow::Result<()> {
    output(cmd).await.map(drop)
}

async fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
