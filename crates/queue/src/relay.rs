//! The outbox relay: publishes the jobs committed in Postgres and deletes each
//! outbox row only once RabbitMQ has confirmed its message. A crash between the
//! confirm and the delete publishes the job again, which is harmless: a worker
//! claims a job once, and acks a message for a finished job without work.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Notify;

use crate::{Publisher, QueueError};

/// Rows published per transaction.
const BATCH: i64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Publishes one batch of the outbox; returns how many rows it published.
pub async fn relay_once(pool: &PgPool, publisher: &Publisher) -> Result<usize, RelayError> {
    let mut tx = pool.begin().await?;
    let rows = domain::outbox::take(&mut tx, BATCH).await?;
    if rows.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    let messages: Vec<(&str, Vec<u8>)> = rows
        .iter()
        .map(|row| {
            let payload = serde_json::to_vec(&row.payload).expect("a JSON value serializes");
            (row.routing_key.as_str(), payload)
        })
        .collect();
    let outcomes = publisher.publish_confirmed(&messages).await?;
    let mut confirmed = Vec::with_capacity(rows.len());
    for (row, outcome) in rows.iter().zip(outcomes) {
        match outcome {
            Ok(()) => confirmed.push(row.id),
            Err(e) => {
                tracing::warn!(outbox_id = row.id, error = %e, "job message not confirmed; will retry")
            }
        }
    }
    domain::outbox::remove(&mut tx, &confirmed).await?;
    tx.commit().await?;
    Ok(confirmed.len())
}

/// Runs the relay until `shutdown` resolves: at once when a job is submitted
/// in this process (`notify`), and every `interval` for rows another process
/// left behind.
pub struct Relay {
    pub pool: PgPool,
    pub publisher: Arc<Publisher>,
    pub notify: Arc<Notify>,
    pub interval: Duration,
}

impl Relay {
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = self.interval;
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                () = self.notify.notified() => {}
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = self.interval;
            loop {
                match relay_once(&self.pool, &self.publisher).await {
                    Ok(n) if n as i64 == BATCH => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox relay failed; retrying");
                        backoff = self.interval.min(Duration::from_secs(5));
                        break;
                    }
                }
            }
        }
    }
}
