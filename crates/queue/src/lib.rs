//! RabbitMQ for migration jobs: the topology every service declares at start,
//! a publisher that waits for the broker's confirm, and the outbox relay that
//! moves committed jobs from Postgres to the queues.
//!
//! Topology (names carry the configured prefix, `arcus` by default):
//! - exchange `<prefix>.migration` (direct), routing key = resource name;
//! - one durable quorum queue per resource, `<prefix>.migration.<resource>`,
//!   so operators can run workers for a busy resource on their own;
//! - dead letters go through `<prefix>.migration.dlx` (fanout) to
//!   `<prefix>.migration.dead`, where a message that cannot be processed ends
//!   instead of looping.

mod relay;

pub use relay::{Relay, relay_once};

use domain::Resource;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use tokio::sync::Mutex;

/// Deliveries of one message before the broker dead-letters it. Redeliveries
/// are harmless (a job is claimed once), so this only stops poison messages.
const DELIVERY_LIMIT: i64 = 20;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("RabbitMQ refused the message (nack)")]
    Nacked,
    #[error("RabbitMQ could not route the message to a queue")]
    Unroutable,
}

/// The names of the exchanges and queues of one deployment.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
}

impl Topology {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub fn exchange(&self) -> String {
        format!("{}.migration", self.prefix)
    }

    pub fn queue(&self, resource: Resource) -> String {
        format!("{}.migration.{}", self.prefix, resource.as_str())
    }

    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.migration.dlx", self.prefix)
    }

    pub fn dead_letter_queue(&self) -> String {
        format!("{}.migration.dead", self.prefix)
    }

    /// Every queue this topology declares.
    pub fn queues(&self) -> Vec<String> {
        let mut queues: Vec<String> = Resource::ALL.iter().map(|r| self.queue(*r)).collect();
        queues.push(self.dead_letter_queue());
        queues
    }

    /// Declares the exchanges, queues and bindings. Declaring is idempotent, so
    /// every service does it at start-up, on whatever vhost its URL names.
    pub async fn declare(&self, channel: &Channel) -> Result<(), QueueError> {
        let durable_exchange = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        let durable_queue = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .exchange_declare(
                self.dead_letter_exchange().as_str().into(),
                ExchangeKind::Fanout,
                durable_exchange,
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(
                self.dead_letter_queue().as_str().into(),
                durable_queue,
                quorum_arguments(None),
            )
            .await?;
        channel
            .queue_bind(
                self.dead_letter_queue().as_str().into(),
                self.dead_letter_exchange().as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                self.exchange().as_str().into(),
                ExchangeKind::Direct,
                durable_exchange,
                FieldTable::default(),
            )
            .await?;
        for resource in Resource::ALL {
            channel
                .queue_declare(
                    self.queue(resource).as_str().into(),
                    durable_queue,
                    quorum_arguments(Some(&self.dead_letter_exchange())),
                )
                .await?;
            channel
                .queue_bind(
                    self.queue(resource).as_str().into(),
                    self.exchange().as_str().into(),
                    resource.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }
}

/// Quorum queues replicate on a cluster and count deliveries, which is what
/// lets the broker dead-letter a message that keeps failing.
fn quorum_arguments(dead_letter_exchange: Option<&str>) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    if let Some(dlx) = dead_letter_exchange {
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(dlx.into()),
        );
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
    }
    args
}

/// Opens a connection named after the service, so operators can tell
/// connections apart in the management UI.
pub async fn connect(url: &str, name: &str) -> Result<Connection, QueueError> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    Ok(Connection::connect(url, properties).await?)
}

/// Publishes job messages and waits for the broker to confirm each one. It
/// reconnects on the next publish after its connection broke.
pub struct Publisher {
    url: String,
    name: String,
    topology: Topology,
    channel: Mutex<Option<(Connection, Channel)>>,
}

impl Publisher {
    pub fn new(url: &str, name: &str, topology: Topology) -> Self {
        Self {
            url: url.to_owned(),
            name: name.to_owned(),
            topology,
            channel: Mutex::new(None),
        }
    }

    /// Connects (again, if the connection broke) and declares the topology.
    /// Services call it at start-up, to fail fast on a wrong URL, and readiness
    /// probes call it, so readiness recovers by itself once the broker is back.
    pub async fn check(&self) -> Result<(), QueueError> {
        let mut guard = self.channel.lock().await;
        self.ensure_channel(&mut guard).await.map(drop)
    }

    /// Messages ready and consumers of every queue of the topology.
    pub async fn queue_stats(&self) -> Result<Vec<(String, u32, u32)>, QueueError> {
        let mut guard = self.channel.lock().await;
        let result = async {
            let channel = self.ensure_channel(&mut guard).await?;
            let mut stats = Vec::new();
            for name in self.topology.queues() {
                // Passive: only asks; the queues were declared at start-up.
                let queue = channel
                    .queue_declare(
                        name.as_str().into(),
                        QueueDeclareOptions {
                            passive: true,
                            ..QueueDeclareOptions::default()
                        },
                        FieldTable::default(),
                    )
                    .await?;
                stats.push((name, queue.message_count(), queue.consumer_count()));
            }
            Ok(stats)
        }
        .await;
        if result.is_err() {
            *guard = None;
        }
        result
    }

    async fn ensure_channel<'a>(
        &self,
        slot: &'a mut Option<(Connection, Channel)>,
    ) -> Result<&'a Channel, QueueError> {
        let healthy = slot
            .as_ref()
            .is_some_and(|(conn, ch)| conn.status().connected() && ch.status().connected());
        if !healthy {
            *slot = None;
            *slot = Some(self.open().await?);
        }
        let (_, channel) = slot.as_ref().expect("the slot was filled above");
        Ok(channel)
    }

    async fn open(&self) -> Result<(Connection, Channel), QueueError> {
        let conn = connect(&self.url, &self.name).await?;
        let channel = conn.create_channel().await?;
        self.topology.declare(&channel).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok((conn, channel))
    }

    /// Publishes messages to the job exchange and returns, in order, whether
    /// the broker confirmed each one. Only a confirmed message is safe to
    /// forget on our side.
    pub async fn publish_confirmed(
        &self,
        messages: &[(&str, Vec<u8>)],
    ) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        let mut guard = self.channel.lock().await;
        let result = self.publish_on(&mut guard, messages).await;
        if result.is_err() {
            // Start afresh next time: the channel may be closed by the broker.
            *guard = None;
        }
        result
    }

    async fn publish_on(
        &self,
        slot: &mut Option<(Connection, Channel)>,
        messages: &[(&str, Vec<u8>)],
    ) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        let channel = self.ensure_channel(slot).await?;
        let exchange = self.topology.exchange();
        // All messages go out before the first confirm is awaited, so a batch
        // costs one round trip rather than one per message.
        let mut pending = Vec::with_capacity(messages.len());
        for (routing_key, payload) in messages {
            let confirm = channel
                .basic_publish(
                    exchange.as_str().into(),
                    (*routing_key).into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    payload,
                    BasicProperties::default()
                        .with_delivery_mode(2)
                        .with_content_type("application/json".into()),
                )
                .await?;
            pending.push(confirm);
        }
        let mut outcomes = Vec::with_capacity(pending.len());
        for confirm in pending {
            outcomes.push(match confirm.await? {
                Confirmation::Ack(None) => Ok(()),
                Confirmation::Ack(Some(_)) => Err(QueueError::Unroutable),
                // The channel is in confirm mode, so "not requested" would be a
                // broken invariant: never count such a message as delivered.
                Confirmation::Nack(_) | Confirmation::NotRequested => Err(QueueError::Nacked),
            });
        }
        Ok(outcomes)
    }
}
