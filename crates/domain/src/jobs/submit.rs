//! Submitting a job: its row, its records, its idempotency key and its
//! outbox message, in one transaction.

use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::model::{JOB_COLUMNS, Job, JobMessage, JobRow};
use crate::import::IgnoredField;
use crate::{ConflictMode, Resource, Tenant, new_id};

/// How long a submission's idempotency key is remembered.
const IDEMPOTENCY_WINDOW: &str = "24 hours";

/// A job to submit.
pub struct NewJob<'a> {
    pub tenant: Tenant,
    pub resource: Resource,
    pub external_source: &'a str,
    pub conflict_mode: ConflictMode,
    /// The records array, as submitted.
    pub records: &'a Value,
    pub record_count: i32,
    pub request_id: Option<&'a str>,
    /// The API key that submitted the job.
    pub submitted_by: Option<Uuid>,
    /// The job whose failed records this one retries.
    pub retry_of: Option<Uuid>,
    /// Whether the submitting key may post journal entries into a closed
    /// period with `bypass_period_check`.
    pub may_bypass_period_check: bool,
    /// Whether a field no handler reads fails its record.
    pub strict: bool,
    /// What the records carry that the service will not keep
    /// (`import::ignored_fields`).
    pub ignored_fields: &'a [IgnoredField],
}

/// A submission's idempotency key and the fingerprint of its request.
pub struct Idempotency<'a> {
    pub key: &'a str,
    pub request_hash: &'a str,
}

#[derive(Debug)]
pub enum Submission {
    Created(Box<Job>),
    /// The key was used before with the same request: its first response.
    Replayed {
        status: u16,
        body: Value,
    },
    /// The key was used before with a different request.
    KeyReused,
}

/// Stores a job, its records and its outbox message in one transaction, so a
/// job is either fully accepted and certain to be published, or not at all.
///
/// With an idempotency key, the key's row is written first in the same
/// transaction: a concurrent submission with the same key waits on that row
/// and, once this one commits, replays its response instead of creating a
/// second job.
pub async fn submit(
    pool: &PgPool,
    job: NewJob<'_>,
    idempotency: Option<Idempotency<'_>>,
) -> Result<Submission, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if let Some(idem) = &idempotency {
        let fresh: Option<i32> = sqlx::query_scalar(&format!(
            "insert into idempotency_keys (entity_id, mode, key, request_hash)
             values ($1, $2, $3, $4)
             on conflict (entity_id, mode, key) do update
                 set request_hash = excluded.request_hash, response_status = null,
                     response_body = null, created_at = now()
                 where idempotency_keys.created_at < now() - interval '{IDEMPOTENCY_WINDOW}'
             returning 1"
        ))
        .bind(job.tenant.entity_id)
        .bind(job.tenant.mode.as_str())
        .bind(idem.key)
        .bind(idem.request_hash)
        .fetch_optional(&mut *tx)
        .await?;
        if fresh.is_none() {
            let (hash, status, body): (String, Option<i32>, Option<Json<Value>>) = sqlx::query_as(
                "select request_hash, response_status, response_body from idempotency_keys
                     where entity_id = $1 and mode = $2 and key = $3",
            )
            .bind(job.tenant.entity_id)
            .bind(job.tenant.mode.as_str())
            .bind(idem.key)
            .fetch_one(&mut *tx)
            .await?;
            tx.rollback().await?;
            if hash != idem.request_hash {
                return Ok(Submission::KeyReused);
            }
            // The row and its response are written by one transaction, so a
            // committed row always carries its response.
            let status = status.expect("a committed idempotency key has a response");
            let body = body.expect("a committed idempotency key has a response").0;
            return Ok(Submission::Replayed {
                status: u16::try_from(status).expect("an HTTP status fits u16"),
                body,
            });
        }
    }

    let id = new_id();
    let row: JobRow = sqlx::query_as(&format!(
        "insert into migration_jobs
            (id, entity_id, mode, resource, conflict_mode, external_source, total_records,
             request_id, submitted_by, retry_of, may_bypass_period_check, strict,
             ignored_fields)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         returning {JOB_COLUMNS}"
    ))
    .bind(id)
    .bind(job.tenant.entity_id)
    .bind(job.tenant.mode.as_str())
    .bind(job.resource.as_str())
    .bind(job.conflict_mode.as_str())
    .bind(job.external_source)
    .bind(job.record_count)
    .bind(job.request_id)
    .bind(job.submitted_by)
    .bind(job.retry_of)
    .bind(job.may_bypass_period_check)
    .bind(job.strict)
    .bind(Json(job.ignored_fields))
    .fetch_one(&mut *tx)
    .await?;
    // As text: Postgres stores it without parsing it, and the worker parses
    // the chunk it loads (`stored_records`).
    sqlx::query("insert into migration_job_records (job_id, records) values ($1, $2)")
        .bind(id)
        .bind(job.records.to_string())
        .execute(&mut *tx)
        .await?;
    enqueue(&mut tx, id, job.resource, job.request_id).await?;
    let created = row.into_job(Vec::new());
    if let Some(idem) = &idempotency {
        sqlx::query(
            "update idempotency_keys set response_status = 202, response_body = $4
             where entity_id = $1 and mode = $2 and key = $3",
        )
        .bind(job.tenant.entity_id)
        .bind(job.tenant.mode.as_str())
        .bind(idem.key)
        .bind(Json(&created))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Submission::Created(Box::new(created)))
}

/// Writes the outbox row that will announce the job to the workers.
pub(super) async fn enqueue(
    conn: &mut PgConnection,
    id: Uuid,
    resource: Resource,
    request_id: Option<&str>,
) -> Result<(), sqlx::Error> {
    let message = JobMessage {
        job_id: id,
        resource: resource.as_str().to_owned(),
        request_id: request_id.map(str::to_owned),
    };
    sqlx::query("insert into job_outbox (job_id, routing_key, payload) values ($1, $2, $3)")
        .bind(id)
        .bind(resource.as_str())
        .bind(Json(&message))
        .execute(conn)
        .await?;
    Ok(())
}
