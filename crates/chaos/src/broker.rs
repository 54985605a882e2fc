//! RabbitMQ as an outsider reaches it: publishing straight to the job exchange
//! (duplicates and poison), reading queue depths and the dead letters, and
//! deleting a run's exchanges and queues.
//!
//! The names are the documented topology (README, `crates/queue`): exchange
//! `<prefix>.migration` routes by resource to `<prefix>.migration.<resource>`;
//! dead letters go through `<prefix>.migration.dlx` to `<prefix>.migration.dead`.

use std::time::Duration;

use anyhow::{Context, bail};
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use tokio::process::Command;
use tokio::time::timeout;

use crate::records::Resource;

/// How long one broker operation may take before it counts as failed.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Broker {
    url: String,
    prefix: String,
}

/// What a queue holds, as `rabbitmqctl list_queues` counts it.
#[derive(Debug, Clone)]
pub struct Depth {
    pub queue: String,
    pub ready: u64,
    pub unacked: u64,
}

impl Broker {
    pub fn new(url: &str, prefix: &str) -> Self {
        Self {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
        }
    }

    pub fn exchange(&self) -> String {
        format!("{}.migration", self.prefix)
    }

    pub fn work_queues(&self) -> Vec<String> {
        Resource::ALL
            .iter()
            .map(|r| format!("{}.migration.{}", self.prefix, r.name()))
            .collect()
    }

    pub fn dead_letter_queue(&self) -> String {
        format!("{}.migration.dead", self.prefix)
    }

    fn dead_letter_exchange(&self) -> String {
        format!("{}.migration.dlx", self.prefix)
    }

    /// A fresh connection per operation: faults are rare, and a connection
    /// kept across a broker restart would only have to be repaired.
    async fn channel(&self) -> anyhow::Result<(Connection, Channel)> {
        let conn = timeout(
            OPERATION_TIMEOUT,
            Connection::connect(&self.url, ConnectionProperties::default()),
        )
        .await
        .context("timed out connecting to RabbitMQ")??;
        let channel = conn.create_channel().await?;
        Ok((conn, channel))
    }

    /// Publishes one persistent message to the job exchange and waits for the
    /// broker to confirm it was routed to a queue.
    pub async fn publish(&self, routing_key: &str, payload: &[u8]) -> anyhow::Result<()> {
        let (conn, channel) = self.channel().await?;
        let result = timeout(OPERATION_TIMEOUT, async {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            let confirm = channel
                .basic_publish(
                    self.exchange().as_str().into(),
                    routing_key.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    payload,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await?;
            match confirm.await? {
                Confirmation::Ack(None) => Ok(()),
                other => bail!("the broker did not take the message: {other:?}"),
            }
        })
        .await
        .context("timed out publishing");
        drop(conn.close(200, "done".into()).await);
        result?
    }

    /// Messages ready in the six work queues (a passive declare counts only
    /// those; `depths` also counts unacknowledged ones).
    pub async fn ready_in_work_queues(&self) -> anyhow::Result<u64> {
        let (conn, channel) = self.channel().await?;
        let mut ready = 0;
        for queue in self.work_queues() {
            let declared = channel
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            ready += u64::from(declared.message_count());
        }
        drop(conn.close(200, "done".into()).await);
        Ok(ready)
    }

    /// Every message of the dead-letter queue, taken off it.
    pub async fn take_dead_letters(&self) -> anyhow::Result<Vec<Vec<u8>>> {
        let (conn, channel) = self.channel().await?;
        let mut letters = Vec::new();
        while let Some(message) = channel
            .basic_get(
                self.dead_letter_queue().as_str().into(),
                BasicGetOptions { no_ack: true },
            )
            .await?
        {
            letters.push(message.delivery.data);
        }
        drop(conn.close(200, "done".into()).await);
        Ok(letters)
    }

    /// Ready and unacknowledged messages of this run's queues.
    pub async fn depths(&self) -> anyhow::Result<Vec<Depth>> {
        let listing = rabbitmqctl(&[
            "list_queues",
            "name",
            "messages_ready",
            "messages_unacknowledged",
        ])
        .await?;
        let ours = format!("{}.migration.", self.prefix);
        Ok(listing
            .iter()
            .filter_map(|cols| {
                let [queue, ready, unacked] = cols.as_slice() else {
                    return None;
                };
                queue.starts_with(&ours).then(|| Depth {
                    queue: queue.clone(),
                    ready: ready.parse().unwrap_or(0),
                    unacked: unacked.parse().unwrap_or(0),
                })
            })
            .collect())
    }

    /// The consumers of `queue` whose channel holds unacknowledged messages,
    /// as "<consumer tag>: <n> unacked on its channel" (a worker's consumer
    /// tag names the worker; its channel serves all six queues).
    pub async fn holders(&self, queue: &str) -> anyhow::Result<Vec<String>> {
        let channels: Vec<(String, u64)> =
            rabbitmqctl(&["list_channels", "pid", "messages_unacknowledged"])
                .await?
                .into_iter()
                .filter_map(|cols| match cols.as_slice() {
                    [pid, unacked] => Some((pid.clone(), unacked.parse().ok()?)),
                    _ => None,
                })
                .collect();
        Ok(rabbitmq_consumers(queue)
            .await?
            .into_iter()
            .filter_map(|(channel, tag)| {
                let unacked = channels.iter().find(|(pid, _)| *pid == channel)?.1;
                (unacked > 0).then(|| format!("{tag}: {unacked} unacked on its channel"))
            })
            .collect())
    }

    /// Deletes the run's queues and exchanges. Each on its own channel: a
    /// failed delete closes the channel it ran on.
    pub async fn delete_topology(&self) -> anyhow::Result<()> {
        let mut queues = self.work_queues();
        queues.push(self.dead_letter_queue());
        for queue in queues {
            let (conn, channel) = self.channel().await?;
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .with_context(|| format!("deleting queue {queue}"))?;
            drop(conn.close(200, "done".into()).await);
        }
        for exchange in [self.exchange(), self.dead_letter_exchange()] {
            let (conn, channel) = self.channel().await?;
            channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await
                .with_context(|| format!("deleting exchange {exchange}"))?;
            drop(conn.close(200, "done".into()).await);
        }
        Ok(())
    }
}

/// The consumers of a queue: (channel pid, consumer tag).
async fn rabbitmq_consumers(queue: &str) -> anyhow::Result<Vec<(String, String)>> {
    Ok(rabbitmqctl(&[
        "list_consumers",
        "queue_name",
        "channel_pid",
        "consumer_tag",
    ])
    .await?
    .into_iter()
    .filter_map(|cols| match cols.as_slice() {
        [q, channel, tag] if q == queue => Some((channel.clone(), tag.clone())),
        _ => None,
    })
    .collect())
}

/// Runs a `rabbitmqctl` listing and splits its rows into columns (it
/// separates them with tabs; a consumer tag may hold spaces).
async fn rabbitmqctl(args: &[&str]) -> anyhow::Result<Vec<Vec<String>>> {
    let out = Command::new("rabbitmqctl")
        .args(["--quiet", "--no-table-headers"])
        .args(args)
        .output()
        .await
        .context("running rabbitmqctl")?;
    if !out.status.success() {
        bail!(
            "rabbitmqctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| line.split('\t').map(str::to_owned).collect())
        .collect())
}
