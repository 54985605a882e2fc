//! What a job is: its status, the job object of the API, its stored row,
//! and the message that announces it.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;
use sqlx::PgPool;
use sqlx::types::Json;
use uuid::Uuid;

use crate::import::{IgnoredField, RecordFailure};
use crate::{ConflictMode, UnknownValue};

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
    pub(super) fn of(succeeded: i32, failed: i32) -> Self {
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
    /// Whether a field no handler reads failed its record.
    pub strict: bool,
    /// The fields the records carried that the service did not keep.
    pub ignored_fields: Vec<IgnoredField>,
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
pub(super) struct JobRow {
    pub(super) id: Uuid,
    pub(super) entity_id: Uuid,
    pub(super) resource: String,
    pub(super) status: String,
    pub(super) conflict_mode: String,
    pub(super) external_source: String,
    pub(super) total_records: i32,
    pub(super) processed_records: i32,
    pub(super) succeeded_records: i32,
    pub(super) failed_records: i32,
    pub(super) strict: bool,
    pub(super) ignored_fields: Json<Vec<IgnoredField>>,
    pub(super) retry_of: Option<Uuid>,
    pub(super) started_at: Option<DateTime<Utc>>,
    pub(super) completed_at: Option<DateTime<Utc>>,
    pub(super) created_at: DateTime<Utc>,
}

/// The tenant's job `$1` (the tenant is `$2` and `$3`), sought in the primary
/// key alone and checked outside the fence: without statistics the planner
/// could otherwise read the entity's whole listing index for it (see
/// `import::plan_without_statistics`).
pub(super) const TENANT_JOB: &str = "(select * from migration_jobs where id = $1 offset 0) as j \
     where j.entity_id = $2 and j.mode = $3";

pub(super) const JOB_COLUMNS: &str = "id, entity_id, resource, status, conflict_mode, external_source, \
     total_records, processed_records, succeeded_records, failed_records, strict, ignored_fields, \
     retry_of, started_at, completed_at, created_at";

impl JobRow {
    pub(super) fn into_job(self, errors: Vec<RecordFailure>) -> Job {
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
            strict: self.strict,
            ignored_fields: self.ignored_fields.0,
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
