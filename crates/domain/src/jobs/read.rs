//! Reading a tenant's jobs: one job, its errors and failed records, and
//! the listing.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::model::{JOB_COLUMNS, Job, JobRow, JobStatus, TENANT_JOB, stored_records};
use crate::import::RecordFailure;
use crate::{Keyset, PageFrom, Resource, Tenant};

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

/// The tenant's job's errors in index order, after or before a record
/// index, at most `limit`; `None` when the job is not the tenant's.
pub async fn errors_page(
    pool: &PgPool,
    tenant: Tenant,
    job_id: Uuid,
    from: Option<PageFrom<u32>>,
    limit: u32,
) -> Result<Option<ErrorPage>, sqlx::Error> {
    if !exists(pool, tenant, job_id).await? {
        return Ok(None);
    }
    let Keyset {
        cmp,
        order,
        reversed,
    } = Keyset::of(from, false);
    let rows: Vec<ErrorRow> = sqlx::query_as(&format!(
        "select job_id, index, external_id, message, code, param, hint from migration_job_errors
         where job_id = $1 and ($2::int8 is null or index {cmp} $2) order by index {order}
         limit $3"
    ))
    .bind(job_id)
    .bind(from.map(|f| i64::from(f.cursor())))
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await?;
    let has_more = rows.len() > limit as usize;
    let mut errors: Vec<RecordFailure> = rows
        .into_iter()
        .take(limit as usize)
        .map(ErrorRow::into_failure)
        .collect();
    if reversed {
        errors.reverse();
    }
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
    /// The page after or before a job, by its id.
    pub from: Option<PageFrom<Uuid>>,
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
    let cursor: Option<(DateTime<Utc>, Uuid)> = match filter.from.map(PageFrom::cursor) {
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
    let Keyset {
        cmp,
        order,
        reversed,
    } = Keyset::of(filter.from, true);
    let mut rows: Vec<JobRow> = sqlx::query_as(&format!(
        "select {JOB_COLUMNS} from migration_jobs
         where entity_id = $1 and mode = $2
           and ($3::text is null or resource = $3)
           and ($4::text is null or status = $4)
           and ($5::timestamptz is null or created_at > $5)
           and ($6::timestamptz is null or (created_at, id) {cmp} ($6, $7))
         order by created_at {order}, id {order}
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
    if reversed {
        rows.reverse();
    }
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
