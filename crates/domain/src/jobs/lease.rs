//! The worker's side of a job's life: claim, renew, checkpoint, finish,
//! hand on, and the sweeper that re-dispatches jobs whose message was lost.
//!
//! A worker's writes are fenced on the lease token it got when it claimed the
//! job: once another worker has taken the job over, every write of the old
//! one matches no row, and the old worker stops.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::model::{JOB_COLUMNS, JobRow, JobStatus};
use super::submit::enqueue;
use crate::audit::Actor;
use crate::import::{RecordFailure, Tally};
use crate::{ConflictMode, Resource, Tenant};

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
    /// Decided at submission (`NewJob::may_bypass_period_check`).
    pub may_bypass_period_check: bool,
    /// Whether a field no handler reads fails its record.
    pub strict: bool,
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
                   total_records, next_index, attempts, request_id, submitted_by,
                   may_bypass_period_check, strict, last_error",
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
    may_bypass_period_check: bool,
    strict: bool,
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
            may_bypass_period_check: self.may_bypass_period_check,
            strict: self.strict,
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
