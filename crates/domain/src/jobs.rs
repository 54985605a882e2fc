//! The migration-job store: submitting a job (with its idempotency key and its
//! outbox message, in one transaction), reading and listing jobs, and the
//! worker's side of a job's life: claim, checkpoint, finish.
//!
//! A worker's writes are fenced on the lease token it got when it claimed the
//! job: once another worker has taken the job over, every write of the old
//! one matches no row, and the old worker stops.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::audit::Actor;
use crate::import::{RecordFailure, Tally};
use crate::{ConflictMode, Resource, Tenant, UnknownValue, new_id};

/// How long a submission's idempotency key is remembered.
const IDEMPOTENCY_WINDOW: &str = "24 hours";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Pending,
    Running,
    Completed,
    Partial,
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Partial => "partial",
            JobStatus::Failed => "failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Partial | JobStatus::Failed
        )
    }

    /// The final status of a job from its counts.
    fn of(succeeded: i32, failed: i32) -> Self {
        match (succeeded, failed) {
            (_, 0) => JobStatus::Completed,
            (0, _) => JobStatus::Failed,
            _ => JobStatus::Partial,
        }
    }
}

impl FromStr for JobStatus {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(JobStatus::Pending),
            "running" => Ok(JobStatus::Running),
            "completed" => Ok(JobStatus::Completed),
            "partial" => Ok(JobStatus::Partial),
            "failed" => Ok(JobStatus::Failed),
            _ => Err(UnknownValue::new(
                "status",
                s,
                &["pending", "running", "completed", "partial", "failed"],
            )),
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The job object of the API, field for field.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: Uuid,
    pub object: &'static str,
    pub entity_id: Uuid,
    pub resource: String,
    pub status: JobStatus,
    pub dry_run: bool,
    pub conflict_mode: ConflictMode,
    pub external_source: String,
    pub total_records: i32,
    pub processed_records: i32,
    pub succeeded_records: i32,
    pub failed_records: i32,
    pub errors: Vec<RecordFailure>,
    /// The job whose failed records this job retries.
    pub retry_of: Option<Uuid>,
    #[serde(serialize_with = "opt_timestamp")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "opt_timestamp")]
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "timestamp")]
    pub created_at: DateTime<Utc>,
}

/// RFC 3339 in UTC to the second, as the API documents (`2023-11-07T05:31:56Z`).
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub(crate) fn timestamp<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_timestamp(t))
}

pub(crate) fn opt_timestamp<S: Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => timestamp(t, s),
        None => s.serialize_none(),
    }
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: Uuid,
    entity_id: Uuid,
    resource: String,
    status: String,
    conflict_mode: String,
    external_source: String,
    total_records: i32,
    processed_records: i32,
    succeeded_records: i32,
    failed_records: i32,
    retry_of: Option<Uuid>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

/// The tenant's job `$1` (the tenant is `$2` and `$3`), sought in the primary
/// key alone and checked outside the fence: without statistics the planner
/// could otherwise read the entity's whole listing index for it (see
/// `import::plan_without_statistics`).
const TENANT_JOB: &str = "(select * from migration_jobs where id = $1 offset 0) as j \
     where j.entity_id = $2 and j.mode = $3";

const JOB_COLUMNS: &str = "id, entity_id, resource, status, conflict_mode, external_source, \
     total_records, processed_records, succeeded_records, failed_records, retry_of, started_at, \
     completed_at, created_at";

impl JobRow {
    fn into_job(self, errors: Vec<RecordFailure>) -> Job {
        Job {
            id: self.id,
            object: "migration_job",
            entity_id: self.entity_id,
            resource: self.resource,
            // The table's check constraints admit only these values.
            status: self.status.parse().expect("status is constrained"),
            dry_run: false,
            conflict_mode: self
                .conflict_mode
                .parse()
                .expect("conflict_mode is constrained"),
            external_source: self.external_source,
            total_records: self.total_records,
            processed_records: self.processed_records,
            succeeded_records: self.succeeded_records,
            failed_records: self.failed_records,
            errors,
            retry_of: self.retry_of,
            started_at: self.started_at,
            completed_at: self.completed_at,
            created_at: self.created_at,
        }
    }
}

/// The message that announces a job to the workers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobMessage {
    pub job_id: Uuid,
    pub resource: String,
    /// The id of the HTTP request that submitted the job, for tracing.
    pub request_id: Option<String>,
}

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
             request_id, submitted_by, retry_of)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
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
async fn enqueue(
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

/// A job of the tenant, with its errors; `None` for another tenant's job.
pub async fn get(pool: &PgPool, tenant: Tenant, id: Uuid) -> Result<Option<Job>, sqlx::Error> {
    let row: Option<JobRow> = sqlx::query_as(&format!("select {JOB_COLUMNS} from {TENANT_JOB}"))
        .bind(id)
        .bind(tenant.entity_id)
        .bind(tenant.mode.as_str())
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    // Most reads are of jobs without failures, polled while they run: they
    // cost one query. Errors committed after the row was read belong to
    // counts the row does not show yet, and are left for the next read.
    let own = if row.failed_records > 0 {
        errors_of(pool, &[row.id])
            .await?
            .remove(&row.id)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    Ok(Some(row.into_job(own)))
}

/// The errors of each of the jobs, in index order.
async fn errors_of(
    pool: &PgPool,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<RecordFailure>>, sqlx::Error> {
    let rows: Vec<ErrorRow> = sqlx::query_as(
        "select job_id, index, external_id, message, code, param, hint from migration_job_errors
         where job_id = any($1) order by job_id, index",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    let mut grouped: HashMap<Uuid, Vec<RecordFailure>> = HashMap::new();
    for row in rows {
        grouped
            .entry(row.job_id)
            .or_default()
            .push(row.into_failure());
    }
    Ok(grouped)
}

#[derive(sqlx::FromRow)]
struct ErrorRow {
    job_id: Uuid,
    index: i32,
    external_id: Option<String>,
    message: String,
    code: String,
    param: Option<String>,
    hint: Option<String>,
}

impl ErrorRow {
    fn into_failure(self) -> RecordFailure {
        RecordFailure {
            index: u32::try_from(self.index).expect("indexes are non-negative"),
            external_id: self.external_id,
            error: self.message,
            code: self.code,
            param: self.param,
            hint: self.hint,
        }
    }
}

/// One page of a job's errors, in index order.
#[derive(Debug)]
pub struct ErrorPage {
    pub errors: Vec<RecordFailure>,
    pub has_more: bool,
}

/// The tenant's job's errors after index `starting_after`, at most `limit`;
/// `None` when the job is not the tenant's.
pub async fn errors_page(
    pool: &PgPool,
    tenant: Tenant,
    job_id: Uuid,
    starting_after: Option<u32>,
    limit: u32,
) -> Result<Option<ErrorPage>, sqlx::Error> {
    if !exists(pool, tenant, job_id).await? {
        return Ok(None);
    }
    let after = starting_after.map_or(-1, i64::from);
    let rows: Vec<ErrorRow> = sqlx::query_as(
        "select job_id, index, external_id, message, code, param, hint from migration_job_errors
         where job_id = $1 and index > $2 order by index limit $3",
    )
    .bind(job_id)
    .bind(after)
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await?;
    let has_more = rows.len() > limit as usize;
    let errors = rows
        .into_iter()
        .take(limit as usize)
        .map(ErrorRow::into_failure)
        .collect();
    Ok(Some(ErrorPage { errors, has_more }))
}

async fn exists(pool: &PgPool, tenant: Tenant, job_id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(&format!("select exists (select 1 from {TENANT_JOB})"))
        .bind(job_id)
        .bind(tenant.entity_id)
        .bind(tenant.mode.as_str())
        .fetch_one(pool)
        .await
}

/// A failed record: its error and the record as it was submitted.
#[derive(Debug)]
pub struct FailedRecord {
    pub failure: RecordFailure,
    pub record: Value,
}

/// Every error of the tenant's job with the record it is about, in index
/// order; `None` when the job is not the tenant's.
pub async fn failed_records(
    pool: &PgPool,
    tenant: Tenant,
    job_id: Uuid,
) -> Result<Option<(Job, Vec<FailedRecord>)>, sqlx::Error> {
    let row: Option<JobRow> = sqlx::query_as(&format!("select {JOB_COLUMNS} from {TENANT_JOB}"))
        .bind(job_id)
        .bind(tenant.entity_id)
        .bind(tenant.mode.as_str())
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let errors = errors_of(pool, &[row.id])
        .await?
        .remove(&row.id)
        .unwrap_or_default();
    let stored = if errors.is_empty() {
        None
    } else {
        stored_records(pool, row.id).await?.ok()
    };
    // A record the stored array lacks (or an array that cannot be read) is
    // shown as null, beside its error.
    let failed = errors
        .into_iter()
        .map(|failure| {
            let index = failure.index as usize;
            let record = stored
                .as_ref()
                .and_then(|s| s.chunk(index, index + 1).ok())
                .and_then(|mut one| one.pop())
                .unwrap_or(Value::Null);
            FailedRecord { failure, record }
        })
        .collect();
    Ok(Some((row.into_job(Vec::new()), failed)))
}

/// Filters and paging of a job listing.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub resource: Option<Resource>,
    pub status: Option<JobStatus>,
    pub created_after: Option<DateTime<Utc>>,
    pub limit: u32,
    pub starting_after: Option<Uuid>,
}

#[derive(Debug)]
pub struct Page {
    pub jobs: Vec<Job>,
    pub has_more: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("starting_after names no job of this entity")]
    UnknownCursor,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The tenant's jobs, newest first.
pub async fn list(pool: &PgPool, tenant: Tenant, filter: &ListFilter) -> Result<Page, ListError> {
    // The cursor is a job id; its position is (created_at, id), the listing order.
    let cursor: Option<(DateTime<Utc>, Uuid)> = match filter.starting_after {
        None => None,
        Some(id) => Some(
            sqlx::query_as(&format!("select created_at, id from {TENANT_JOB}"))
                .bind(id)
                .bind(tenant.entity_id)
                .bind(tenant.mode.as_str())
                .fetch_optional(pool)
                .await?
                .ok_or(ListError::UnknownCursor)?,
        ),
    };
    let mut rows: Vec<JobRow> = sqlx::query_as(&format!(
        "select {JOB_COLUMNS} from migration_jobs
         where entity_id = $1 and mode = $2
           and ($3::text is null or resource = $3)
           and ($4::text is null or status = $4)
           and ($5::timestamptz is null or created_at > $5)
           and ($6::timestamptz is null or (created_at, id) < ($6, $7))
         order by created_at desc, id desc
         limit $8"
    ))
    .bind(tenant.entity_id)
    .bind(tenant.mode.as_str())
    .bind(filter.resource.map(Resource::as_str))
    .bind(filter.status.map(JobStatus::as_str))
    .bind(filter.created_after)
    .bind(cursor.map(|c| c.0))
    .bind(cursor.map(|c| c.1))
    .bind(i64::from(filter.limit) + 1)
    .fetch_all(pool)
    .await?;
    let has_more = rows.len() > filter.limit as usize;
    rows.truncate(filter.limit as usize);
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut errors = errors_of(pool, &ids).await?;
    let jobs = rows
        .into_iter()
        .map(|row| {
            let own = errors.remove(&row.id).unwrap_or_default();
            row.into_job(own)
        })
        .collect();
    Ok(Page { jobs, has_more })
}

/// A job claimed by a worker.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: Uuid,
    pub tenant: Tenant,
    pub resource: Resource,
    pub external_source: String,
    pub conflict_mode: ConflictMode,
    pub total_records: i32,
    /// The first record not yet committed: where this run starts.
    pub next_index: i32,
    pub attempts: i32,
    pub request_id: Option<String>,
    pub submitted_by: Option<Uuid>,
    /// What stopped the previous attempt, if one failed.
    pub last_error: Option<String>,
    /// The fence: every write of this claim names it.
    pub lease_token: Uuid,
}

impl ClaimedJob {
    /// Who the job's writes are attributed to: the key that submitted it.
    pub fn actor(&self) -> Actor {
        match self.submitted_by {
            Some(key) => Actor::key(key, self.request_id.as_deref()),
            None => Actor {
                name: "unknown".to_owned(),
                request_id: self.request_id.clone(),
            },
        }
    }
}

#[derive(Debug)]
pub enum ClaimResult {
    Claimed(Box<ClaimedJob>),
    /// The job already reached a final status.
    Finished,
    /// Another worker holds a live claim on the job, for at least this long.
    Busy {
        lease_left: Duration,
    },
    /// No such job.
    NotFound,
}

/// Claims a pending job, or a running one whose claim expired (its worker died
/// or stalled), for `lease_seconds`.
pub async fn claim(
    pool: &PgPool,
    id: Uuid,
    owner: &str,
    lease_seconds: u32,
) -> Result<ClaimResult, sqlx::Error> {
    let token = Uuid::new_v4();
    let row: Option<ClaimRow> = sqlx::query_as(
        "update migration_jobs
         set status = 'running', started_at = coalesce(started_at, now()),
             lease_token = $2, lease_owner = $3,
             lease_expires_at = now() + make_interval(secs => $4),
             attempts = attempts + 1
         where id = $1
           and (status = 'pending' or (status = 'running' and lease_expires_at < now()))
         returning id, entity_id, mode, resource, external_source, conflict_mode,
                   total_records, next_index, attempts, request_id, submitted_by, last_error",
    )
    .bind(id)
    .bind(token)
    .bind(owner)
    .bind(f64::from(lease_seconds))
    .fetch_optional(pool)
    .await?;
    if let Some(row) = row {
        return Ok(ClaimResult::Claimed(Box::new(row.into_claimed(token))));
    }
    let state: Option<(String, f64)> = sqlx::query_as(
        "select status,
                coalesce(extract(epoch from lease_expires_at - now()), 0)::float8
         from migration_jobs where id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(match state {
        None => ClaimResult::NotFound,
        Some((status, _)) if JobStatus::from_str(&status).is_ok_and(JobStatus::is_terminal) => {
            ClaimResult::Finished
        }
        Some((_, seconds)) => ClaimResult::Busy {
            lease_left: Duration::from_secs_f64(seconds.max(0.0)),
        },
    })
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: Uuid,
    entity_id: Uuid,
    mode: String,
    resource: String,
    external_source: String,
    conflict_mode: String,
    total_records: i32,
    next_index: i32,
    attempts: i32,
    request_id: Option<String>,
    submitted_by: Option<Uuid>,
    last_error: Option<String>,
}

impl ClaimRow {
    fn into_claimed(self, lease_token: Uuid) -> ClaimedJob {
        ClaimedJob {
            id: self.id,
            tenant: Tenant {
                entity_id: self.entity_id,
                mode: self.mode.parse().expect("mode is constrained"),
            },
            // Jobs are only ever created for known resources.
            resource: self.resource.parse().expect("resource is known"),
            external_source: self.external_source,
            conflict_mode: self
                .conflict_mode
                .parse()
                .expect("conflict_mode is constrained"),
            total_records: self.total_records,
            next_index: self.next_index,
            attempts: self.attempts,
            request_id: self.request_id,
            submitted_by: self.submitted_by,
            last_error: self.last_error,
            lease_token,
        }
    }
}

/// Extends a claim; false when the claim was lost.
pub async fn renew(
    pool: &PgPool,
    id: Uuid,
    token: Uuid,
    lease_seconds: u32,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "update migration_jobs set lease_expires_at = now() + make_interval(secs => $3)
         where id = $1 and lease_token = $2 and status = 'running'",
    )
    .bind(id)
    .bind(token)
    .bind(f64::from(lease_seconds))
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives up a claim after a failed attempt, noting why, so that the next
/// delivery of the job's message can claim it at once instead of waiting for
/// the lease to run out. False when the claim was no longer held.
pub async fn release(pool: &PgPool, job: &ClaimedJob, error: &str) -> Result<bool, sqlx::Error> {
    let released = sqlx::query(
        "update migration_jobs
         set lease_token = null, lease_expires_at = now(), last_error = $3
         where id = $1 and lease_token = $2",
    )
    .bind(job.id)
    .bind(job.lease_token)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(released.rows_affected() == 1)
}

/// Hands an unfinished job on: releases the claim and queues a fresh message
/// for it, in the caller's transaction, so the worker can ack the message it
/// holds without the job depending on it.
pub async fn hand_on(conn: &mut PgConnection, job: &ClaimedJob) -> Result<(), FencedError> {
    let moved = sqlx::query(
        "update migration_jobs
         set lease_token = null, lease_expires_at = now(),
             dispatched_at = now(), dispatches = dispatches + 1
         where id = $1 and lease_token = $2",
    )
    .bind(job.id)
    .bind(job.lease_token)
    .execute(&mut *conn)
    .await?;
    if moved.rows_affected() != 1 {
        return Err(FencedError::LeaseLost);
    }
    enqueue(conn, job.id, job.resource, job.request_id.as_deref()).await?;
    Ok(())
}

/// Queues a fresh message for unfinished jobs that nobody holds and that have
/// had no message queued for a while: their message went to the dead-letter
/// queue or was lost with a worker. The wait doubles with each re-dispatch of
/// the same job, so a long backlog of pending jobs is not flooded with
/// duplicates. Returns the jobs re-dispatched.
pub async fn sweep(
    pool: &PgPool,
    redispatch_after: Duration,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "with stalled as (
             select id from migration_jobs j
             where status in ('pending', 'running')
               and (lease_expires_at is null or lease_expires_at < now())
               and dispatched_at
                   < now() - make_interval(secs => $1 * power(2, least(dispatches - 1, 6)))
               and not exists (select 1 from job_outbox o where o.job_id = j.id)
             order by dispatched_at
             limit $2
             for update skip locked
         ), marked as (
             update migration_jobs j
             set dispatched_at = now(), dispatches = dispatches + 1
             from stalled where j.id = stalled.id
             returning j.id, j.resource, j.request_id
         )
         insert into job_outbox (job_id, routing_key, payload)
         select id, resource,
                jsonb_build_object('job_id', id, 'resource', resource, 'request_id', request_id)
         from marked
         returning job_id",
    )
    .bind(redispatch_after.as_secs_f64())
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// A job's records as stored: the JSON text of the array the API accepted,
/// split into its records, each parsed only when its chunk is loaded. A
/// worker holds the text of the job it runs (at most a request body), never
/// its records parsed all at once.
#[derive(Debug)]
pub struct StoredRecords(Vec<Box<RawValue>>);

/// The stored records are not a JSON array: they were written by something
/// other than the API.
#[derive(Debug, thiserror::Error)]
#[error("the job's stored records are not a JSON array: {0}")]
pub struct UnreadableRecords(#[from] serde_json::Error);

impl StoredRecords {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Records `start..end`, parsed.
    pub fn chunk(&self, start: usize, end: usize) -> Result<Vec<Value>, UnreadableRecords> {
        let end = end.min(self.0.len());
        self.0
            .get(start.min(end)..end)
            .unwrap_or_default()
            .iter()
            .map(|raw| serde_json::from_str(raw.get()).map_err(UnreadableRecords))
            .collect()
    }
}

/// The records of a job, read once per run of it: they never change.
pub async fn stored_records(
    pool: &PgPool,
    id: Uuid,
) -> Result<Result<StoredRecords, UnreadableRecords>, sqlx::Error> {
    let text: String =
        sqlx::query_scalar("select records from migration_job_records where job_id = $1")
            .bind(id)
            .fetch_one(pool)
            .await?;
    Ok(serde_json::from_str(&text)
        .map(StoredRecords)
        .map_err(UnreadableRecords))
}

/// The claim was lost: another worker owns the job now, and this worker's
/// transaction must be rolled back.
#[derive(Debug, thiserror::Error)]
pub enum FencedError {
    #[error("the job's lease was lost to another worker")]
    LeaseLost,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Records a committed run of records on the caller's transaction: the errors,
/// the counters and the checkpoint move together, so a client always sees
/// `processed = succeeded + failed` and a resumed job never counts a record twice.
pub async fn checkpoint(
    conn: &mut PgConnection,
    job: &ClaimedJob,
    start: i32,
    next_index: i32,
    tally: &Tally,
) -> Result<(), FencedError> {
    let moved = sqlx::query(
        "update migration_jobs
         set processed_records = processed_records + $4 + $5,
             succeeded_records = succeeded_records + $4,
             failed_records = failed_records + $5,
             next_index = $6
         where id = $1 and lease_token = $2 and next_index = $3",
    )
    .bind(job.id)
    .bind(job.lease_token)
    .bind(start)
    .bind(i32::try_from(tally.succeeded).expect("at most 1000 records"))
    .bind(i32::try_from(tally.failed).expect("at most 1000 records"))
    .bind(next_index)
    .execute(&mut *conn)
    .await?;
    if moved.rows_affected() != 1 {
        return Err(FencedError::LeaseLost);
    }
    insert_errors(conn, job.id, &tally.errors).await?;
    Ok(())
}

async fn insert_errors(
    conn: &mut PgConnection,
    job_id: Uuid,
    errors: &[RecordFailure],
) -> Result<(), sqlx::Error> {
    if errors.is_empty() {
        return Ok(());
    }
    let indexes: Vec<i32> = errors
        .iter()
        .map(|e| i32::try_from(e.index).expect("at most 1000 records"))
        .collect();
    let external_ids: Vec<Option<&str>> = errors.iter().map(|e| e.external_id.as_deref()).collect();
    let codes: Vec<&str> = errors.iter().map(|e| e.code.as_str()).collect();
    let messages: Vec<&str> = errors.iter().map(|e| e.error.as_str()).collect();
    let params: Vec<Option<&str>> = errors.iter().map(|e| e.param.as_deref()).collect();
    let hints: Vec<Option<&str>> = errors.iter().map(|e| e.hint.as_deref()).collect();
    sqlx::query(
        "insert into migration_job_errors (job_id, index, external_id, code, message, param, hint)
         select $1, * from unnest($2::int4[], $3::text[], $4::text[], $5::text[], $6::text[],
                                 $7::text[])",
    )
    .bind(job_id)
    .bind(&indexes)
    .bind(&external_ids)
    .bind(&codes)
    .bind(&messages)
    .bind(&params)
    .bind(&hints)
    .execute(conn)
    .await?;
    Ok(())
}

/// Gives the job its final status from its counters and releases the claim.
///
/// This is where every terminal status is written, so the webhook events that
/// announce it are queued here too, on the same transaction: an event exists
/// if and only if the status it announces does, and delivering it is left to
/// the workers' delivery loop, which the job never waits on.
pub async fn finish(conn: &mut PgConnection, job: &ClaimedJob) -> Result<JobStatus, FencedError> {
    let counts: Option<(i32, i32, i32)> = sqlx::query_as(
        "select succeeded_records, failed_records, total_records from migration_jobs
         where id = $1 and lease_token = $2 for update",
    )
    .bind(job.id)
    .bind(job.lease_token)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((succeeded, failed, total)) = counts else {
        return Err(FencedError::LeaseLost);
    };
    debug_assert_eq!(
        succeeded + failed,
        total,
        "a finished job accounts for every record"
    );
    let status = JobStatus::of(succeeded, failed);
    let finished: JobRow = sqlx::query_as(&format!(
        "update migration_jobs
         set status = $3, completed_at = now(), lease_token = null, lease_expires_at = null
         where id = $1 and lease_token = $2
         returning {JOB_COLUMNS}"
    ))
    .bind(job.id)
    .bind(job.lease_token)
    .bind(status.as_str())
    .fetch_one(&mut *conn)
    .await?;
    crate::webhooks::enqueue_for_job(conn, job.tenant, &finished.into_job(Vec::new())).await?;
    Ok(status)
}

/// The mode and entity of a job, for logging and tracing.
impl fmt::Display for ClaimedJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} job {} ({} mode)",
            self.resource, self.id, self.tenant.mode
        )
    }
}
