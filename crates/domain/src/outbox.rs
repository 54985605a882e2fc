//! The job outbox, as the relay reads it: rows are taken under `for update skip
//! locked`, so several relays (every API replica and worker runs one) share the
//! backlog without publishing a row twice at the same time, and a row is only
//! deleted in the transaction that saw RabbitMQ confirm it.

use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgConnection, Postgres, Transaction};

#[derive(Debug, Clone)]
pub struct OutboxMessage {
    pub id: i64,
    pub routing_key: String,
    pub payload: Value,
}

/// Locks and returns up to `limit` of the oldest unpublished messages.
pub async fn take(
    tx: &mut Transaction<'_, Postgres>,
    limit: i64,
) -> Result<Vec<OutboxMessage>, sqlx::Error> {
    let rows: Vec<(i64, String, Json<Value>)> = sqlx::query_as(
        "select id, routing_key, payload from job_outbox
         order by id limit $1 for update skip locked",
    )
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, routing_key, Json(payload))| OutboxMessage {
            id,
            routing_key,
            payload,
        })
        .collect())
}

/// Removes messages RabbitMQ has confirmed.
pub async fn remove(conn: &mut PgConnection, ids: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query("delete from job_outbox where id = any($1)")
        .bind(ids)
        .execute(conn)
        .await
        .map(drop)
}

/// How many messages wait to be published.
pub async fn backlog(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("select count(*) from job_outbox")
        .fetch_one(conn)
        .await
}
