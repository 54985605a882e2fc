//! The checker: what must hold once the faults have healed and the system is
//! quiet, read straight from Postgres and RabbitMQ and compared with what the
//! load submitted and what clients saw along the way.
//!
//! The checks compare the service's own bookkeeping (the job counters and
//! errors) with what it actually stored (the resource rows, by provenance)
//! and with what was submitted (every record, by index), so a job counted
//! twice, a record loaded twice or an index lost shows up as a difference,
//! whatever the code path that caused it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;
use tokio::time::Instant;
use uuid::Uuid;

use crate::api::Status;
use crate::broker::Broker;
use crate::faults::FaultLog;
use crate::observer;
use crate::records::{ConflictMode, Resource, SOURCE};
use crate::registry::Registry;
use crate::say;

/// Consecutive quiet looks, a second apart, that make the system quiescent:
/// a message handed back by a busy worker is out of the queue for two seconds.
const QUIET_LOOKS: u32 = 4;
/// Looks, two seconds apart, the queues get to be empty at the end.
const DRAIN_LOOKS: u32 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Invariant {
    Finished,
    Accounting,
    Stored,
    UniqueProvenance,
    ErrorMode,
    Progress,
    Drained,
    DeadLetters,
    Idempotency,
    Submissions,
}

impl Invariant {
    pub const ALL: [Invariant; 10] = [
        Invariant::Finished,
        Invariant::Accounting,
        Invariant::Stored,
        Invariant::UniqueProvenance,
        Invariant::ErrorMode,
        Invariant::Progress,
        Invariant::Drained,
        Invariant::DeadLetters,
        Invariant::Idempotency,
        Invariant::Submissions,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Invariant::Finished => "every accepted job reached a final status",
            Invariant::Accounting => {
                "processed = succeeded + failed = total; one error per failed record, each index once"
            }
            Invariant::Stored => {
                "every succeeded record is stored, and every stored record succeeded in some job"
            }
            Invariant::UniqueProvenance => "no two rows of a resource share a provenance",
            Invariant::ErrorMode => {
                "error mode: a collision aborts the batch and writes none of it"
            }
            Invariant::Progress => {
                "clients saw processed = succeeded + failed and no counter go down"
            }
            Invariant::Drained => "job queues and outbox are empty",
            Invariant::DeadLetters => "the dead-letter queue holds exactly the poison messages",
            Invariant::Idempotency => {
                "sends with one Idempotency-Key made one job; no job unaccounted"
            }
            Invariant::Submissions => "every submission was accepted, or refused only with a 5xx",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    pub invariant: Invariant,
    pub detail: String,
}

/// Violations found so far, by any part of the harness.
#[derive(Debug, Default)]
pub struct Violations(Mutex<Vec<Violation>>);

impl Violations {
    pub fn push(&self, invariant: Invariant, detail: String) {
        say!("VIOLATION ({invariant:?}): {detail}");
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Violation { invariant, detail });
    }

    pub fn all(&self) -> Vec<Violation> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Waits until every job is final, the outbox is empty and no job message is
/// ready, for `QUIET_LOOKS` looks in a row; false if `limit` passed first.
pub async fn wait_quiescent(pool: &PgPool, broker: &Broker, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut quiet = 0;
    let mut last_said = Instant::now();
    loop {
        let unfinished: Result<i64, _> = sqlx::query_scalar(
            "select count(*) from migration_jobs where status in ('pending', 'running')",
        )
        .fetch_one(pool)
        .await;
        let outbox: Result<i64, _> = sqlx::query_scalar("select count(*) from job_outbox")
            .fetch_one(pool)
            .await;
        let ready = broker.ready_in_work_queues().await;
        match (&unfinished, &outbox, &ready) {
            (Ok(0), Ok(0), Ok(0)) => quiet += 1,
            _ => quiet = 0,
        }
        if quiet >= QUIET_LOOKS {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        if last_said.elapsed() >= Duration::from_secs(10) {
            last_said = Instant::now();
            say!(
                "waiting for quiescence: unfinished jobs {}, outbox {}, ready messages {}",
                shown(&unfinished),
                shown(&outbox),
                shown(&ready)
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn shown<T: std::fmt::Display, E>(value: &Result<T, E>) -> String {
    value
        .as_ref()
        .map_or_else(|_| "?".to_owned(), ToString::to_string)
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: Uuid,
    resource: String,
    status: String,
    conflict_mode: String,
    total_records: i32,
    processed_records: i32,
    succeeded_records: i32,
    failed_records: i32,
    next_index: i32,
}

#[derive(sqlx::FromRow)]
struct ErrorRow {
    job_id: Uuid,
    index: i32,
    external_id: Option<String>,
    code: String,
}

/// Statuses of the accepted jobs in the database, for the summary.
pub type StatusCounts = BTreeMap<String, u64>;

/// Record counts over the accepted jobs, from their counters and errors.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RecordCounts {
    pub total: i64,
    pub succeeded: i64,
    pub failed: i64,
    /// Failed records by error code: what the failures were made of.
    pub failed_by_code: BTreeMap<String, u64>,
}

pub struct Checker<'a> {
    pub pool: &'a PgPool,
    pub broker: &'a Broker,
    pub registry: &'a Registry,
    pub entity: Uuid,
    pub faults: &'a FaultLog,
    /// Submissions given up unanswered: each may have created a job no
    /// client heard of.
    pub abandoned: u64,
}

impl Checker<'_> {
    /// Runs every end-of-run check, adding what it finds to `violations`.
    pub async fn check(
        &self,
        violations: &Violations,
    ) -> anyhow::Result<(StatusCounts, RecordCounts)> {
        let mut db_jobs: HashMap<Uuid, JobRow> = sqlx::query_as(
            "select id, resource, status, conflict_mode, total_records, processed_records,
                    succeeded_records, failed_records, next_index
             from migration_jobs where entity_id = $1",
        )
        .bind(self.entity)
        .fetch_all(self.pool)
        .await?
        .into_iter()
        .map(|j: JobRow| (j.id, j))
        .collect();
        let mut errors: HashMap<Uuid, Vec<ErrorRow>> = HashMap::new();
        let rows: Vec<ErrorRow> = sqlx::query_as(
            "select e.job_id, e.index, e.external_id, e.code
             from migration_job_errors e join migration_jobs j on j.id = e.job_id
             where j.entity_id = $1 order by e.job_id, e.index",
        )
        .bind(self.entity)
        .fetch_all(self.pool)
        .await?;
        for row in rows {
            errors.entry(row.job_id).or_default().push(row);
        }
        let stored = self.stored_provenance(violations).await?;

        let mut statuses = StatusCounts::new();
        let mut records = RecordCounts::default();
        let mut succeeded_ids: HashMap<Resource, HashSet<String>> = HashMap::new();
        for (id, batch, seen) in self.registry.snapshot() {
            let Some(job) = db_jobs.remove(&id) else {
                violations.push(
                    Invariant::Finished,
                    format!("job {id} was accepted but is not in migration_jobs"),
                );
                continue;
            };
            *statuses.entry(job.status.clone()).or_default() += 1;
            records.total += i64::from(job.total_records);
            records.succeeded += i64::from(job.succeeded_records);
            records.failed += i64::from(job.failed_records);
            let what = format!(
                "job {id} ({} {}, {} records)",
                batch.resource.name(),
                batch.conflict_mode.as_str(),
                batch.records.len()
            );
            let mut push = |invariant, detail: String| {
                violations.push(invariant, format!("{what}: {detail}"));
            };

            if job.resource != batch.resource.name()
                || job.conflict_mode != batch.conflict_mode.as_str()
                || job.total_records as usize != batch.records.len()
            {
                push(
                    Invariant::Accounting,
                    format!(
                        "stored as {} {} with {} records",
                        job.resource, job.conflict_mode, job.total_records
                    ),
                );
                continue;
            }
            let status = Status::parse(&job.status);
            if !status.is_some_and(Status::is_terminal) {
                push(
                    Invariant::Finished,
                    format!(
                        "still {} after the heal: processed {} of {}",
                        job.status, job.processed_records, job.total_records
                    ),
                );
                // Its committed chunks are stored: the records before the
                // checkpoint without an error, which the check of stored rows
                // must not take for strays.
                let failed_at: HashSet<i32> = errors
                    .get(&id)
                    .map(|e| e.iter().map(|e| e.index).collect())
                    .unwrap_or_default();
                for index in (0..job.next_index).filter(|i| !failed_at.contains(i)) {
                    if let Some(external_id) = batch.external_id(index as usize) {
                        succeeded_ids
                            .entry(batch.resource)
                            .or_default()
                            .insert(external_id.to_owned());
                    }
                }
                continue;
            }
            if let Some(seen) = seen {
                let db_view = crate::api::JobView {
                    status: status.expect("checked above"),
                    total: i64::from(job.total_records),
                    processed: i64::from(job.processed_records),
                    succeeded: i64::from(job.succeeded_records),
                    failed: i64::from(job.failed_records),
                };
                for problem in observer::compare(Some(seen), db_view) {
                    push(Invariant::Progress, format!("at the end: {problem}"));
                }
            }

            let (total, processed, succeeded, failed) = (
                job.total_records,
                job.processed_records,
                job.succeeded_records,
                job.failed_records,
            );
            if processed != succeeded + failed || processed != total {
                push(
                    Invariant::Accounting,
                    format!(
                        "processed {processed}, succeeded {succeeded}, failed {failed}, total {total}"
                    ),
                );
            }
            let expected_status = match (succeeded, failed) {
                (_, 0) => "completed",
                (0, _) => "failed",
                _ => "partial",
            };
            if job.status != expected_status {
                push(
                    Invariant::Accounting,
                    format!(
                        "status {} with {succeeded} succeeded and {failed} failed",
                        job.status
                    ),
                );
            }

            let job_errors = errors.remove(&id).unwrap_or_default();
            for error in &job_errors {
                *records
                    .failed_by_code
                    .entry(error.code.clone())
                    .or_default() += 1;
            }
            if job_errors.len() != failed as usize {
                push(
                    Invariant::Accounting,
                    format!(
                        "{} errors stored for {failed} failed records",
                        job_errors.len()
                    ),
                );
            }
            let mut failed_at = BTreeSet::new();
            for error in &job_errors {
                if error.index < 0 || error.index >= total {
                    push(
                        Invariant::Accounting,
                        format!("an error at index {} of {total}", error.index),
                    );
                } else if !failed_at.insert(error.index as u32) {
                    push(
                        Invariant::Accounting,
                        format!("two errors at index {}", error.index),
                    );
                }
                let submitted = batch.external_id(error.index as usize);
                // A record given up after too many attempts is reported
                // without its external id; any id given must be the record's.
                if error.external_id.is_some() && error.external_id.as_deref() != submitted {
                    push(
                        Invariant::Accounting,
                        format!(
                            "the error at index {} names external_id {:?}, the record there has {:?}",
                            error.index, error.external_id, submitted
                        ),
                    );
                }
            }
            for index in batch.must_fail.difference(&failed_at) {
                push(
                    Invariant::Accounting,
                    format!(
                        "record {index} cannot pass validation but has no error: {}",
                        batch.records[*index as usize]
                    ),
                );
            }
            let ok_indexes: Vec<u32> = (0..total as u32)
                .filter(|i| !failed_at.contains(i))
                .collect();
            if ok_indexes.len() != succeeded as usize {
                push(
                    Invariant::Accounting,
                    format!(
                        "{} indexes have no error but {succeeded} records succeeded",
                        ok_indexes.len()
                    ),
                );
            }

            let stored_here = stored.get(&batch.resource);
            let mut missing = Vec::new();
            for index in &ok_indexes {
                let Some(external_id) = batch.external_id(*index as usize) else {
                    continue; // a must-fail record: reported above
                };
                succeeded_ids
                    .entry(batch.resource)
                    .or_default()
                    .insert(external_id.to_owned());
                if !stored_here.is_some_and(|s| s.contains(external_id)) {
                    missing.push(format!("{index} ({external_id})"));
                }
            }
            if !missing.is_empty() {
                push(
                    Invariant::Stored,
                    format!(
                        "{} succeeded records have no {} row with their provenance: {}",
                        missing.len(),
                        batch.resource.table(),
                        abbreviate(&missing)
                    ),
                );
            }

            check_error_mode(batch.conflict_mode, succeeded, &job_errors, &mut push);
        }

        // Every stored provenance must come from a record some job counted
        // as succeeded: anything else was written by a failed, aborted or
        // rolled-back record, or twice.
        for (resource, ids) in &stored {
            let succeeded = succeeded_ids.get(resource);
            let orphans: Vec<String> = ids
                .iter()
                .filter(|id| !succeeded.is_some_and(|s| s.contains(*id)))
                .cloned()
                .collect();
            if !orphans.is_empty() {
                violations.push(
                    Invariant::Stored,
                    format!(
                        "{} {} rows carry a provenance no job reported as succeeded: {}",
                        orphans.len(),
                        resource.table(),
                        abbreviate(&orphans)
                    ),
                );
            }
        }

        let unknown: Vec<String> = db_jobs.keys().map(Uuid::to_string).collect();
        if unknown.len() as u64 > self.abandoned {
            violations.push(
                Invariant::Idempotency,
                format!(
                    "{} jobs exist that no submission was answered with ({} submissions were \
                     abandoned): {}",
                    unknown.len(),
                    self.abandoned,
                    abbreviate(&unknown)
                ),
            );
        }

        self.check_drained(violations).await?;
        self.check_dead_letters(violations).await?;
        Ok((statuses, records))
    }

    /// The external ids stored per resource (in the run's source), after
    /// reporting any provenance held by two rows.
    async fn stored_provenance(
        &self,
        violations: &Violations,
    ) -> anyhow::Result<HashMap<Resource, HashSet<String>>> {
        let mut stored = HashMap::new();
        for resource in Resource::ALL {
            let table = resource.table();
            let rows: Vec<(String, Option<String>, i64)> = sqlx::query_as(&format!(
                "select external_id, external_source, count(*) from {table}
                 where entity_id = $1 and external_id is not null
                 group by mode, external_source, external_id"
            ))
            .bind(self.entity)
            .fetch_all(self.pool)
            .await?;
            let mut ids = HashSet::new();
            for (external_id, source, count) in rows {
                if count > 1 {
                    violations.push(
                        Invariant::UniqueProvenance,
                        format!("{count} {table} rows have provenance ({source:?}, {external_id})"),
                    );
                }
                if source.as_deref() == Some(SOURCE) {
                    ids.insert(external_id);
                }
            }
            stored.insert(resource, ids);
        }
        Ok(stored)
    }

    async fn check_drained(&self, violations: &Violations) -> anyhow::Result<()> {
        let outbox: i64 = sqlx::query_scalar("select count(*) from job_outbox")
            .fetch_one(self.pool)
            .await?;
        if outbox != 0 {
            violations.push(
                Invariant::Drained,
                format!("{outbox} rows left in job_outbox"),
            );
        }
        // A message may be out of its queue for a moment (a duplicate being
        // looked at, a busy job's message held two seconds): only what stays
        // is a violation.
        let work_queues = self.broker.work_queues();
        let mut left = Vec::new();
        for _ in 0..DRAIN_LOOKS {
            let depths = self.broker.depths().await?;
            left = work_queues
                .iter()
                .map(|queue| (queue, depths.iter().find(|d| &d.queue == queue)))
                .filter(|(_, depth)| depth.is_none_or(|d| d.ready + d.unacked > 0))
                .map(|(queue, depth)| (queue.clone(), depth.cloned()))
                .collect();
            if left.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        for (queue, depth) in left {
            let Some(depth) = depth else {
                violations.push(Invariant::Drained, format!("{queue} does not exist"));
                continue;
            };
            let holders = self.broker.holders(&queue).await?;
            violations.push(
                Invariant::Drained,
                format!(
                    "{queue} still holds {} ready and {} unacknowledged messages after {} s \
                     (held by: {})",
                    depth.ready,
                    depth.unacked,
                    2 * DRAIN_LOOKS,
                    if holders.is_empty() {
                        "no consumer with unacked messages".to_owned()
                    } else {
                        holders.join("; ")
                    }
                ),
            );
        }
        Ok(())
    }

    async fn check_dead_letters(&self, violations: &Violations) -> anyhow::Result<()> {
        let mut expected: Vec<&[u8]> = self.faults.poison.iter().map(Vec::as_slice).collect();
        let mut maybe: Vec<&[u8]> = self
            .faults
            .poison_uncertain
            .iter()
            .map(Vec::as_slice)
            .collect();
        let mut unexpected = Vec::new();
        for letter in self.broker.take_dead_letters().await? {
            if let Some(i) = expected.iter().position(|p| *p == letter.as_slice()) {
                expected.swap_remove(i);
            } else if let Some(i) = maybe.iter().position(|p| *p == letter.as_slice()) {
                maybe.swap_remove(i);
            } else {
                unexpected.push(String::from_utf8_lossy(&letter).chars().take(200).collect());
            }
        }
        if !unexpected.is_empty() {
            violations.push(
                Invariant::DeadLetters,
                format!(
                    "{} messages were dead-lettered that are not poison: {}",
                    unexpected.len(),
                    abbreviate(&unexpected)
                ),
            );
        }
        if !expected.is_empty() {
            let missing: Vec<String> = expected
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            violations.push(
                Invariant::DeadLetters,
                format!(
                    "{} poison messages never reached the dead-letter queue: {}",
                    missing.len(),
                    abbreviate(&missing)
                ),
            );
        }
        Ok(())
    }
}

/// `error` mode: a batch that met a collision reports exactly one
/// `external_id_conflict`, succeeds in nothing, and reports every record after
/// the collision as `batch_aborted`; a batch that met none was not aborted.
/// (A batch without a collision may still fail records on their own rules.)
/// Other modes never abort.
fn check_error_mode(
    mode: ConflictMode,
    succeeded: i32,
    errors: &[ErrorRow],
    push: &mut impl FnMut(Invariant, String),
) {
    let aborted_records = errors.iter().filter(|e| e.code == "batch_aborted").count();
    if mode != ConflictMode::Error {
        if aborted_records > 0 {
            push(
                Invariant::ErrorMode,
                format!("{aborted_records} records reported batch_aborted outside error mode"),
            );
        }
        return;
    }
    let collisions: Vec<&ErrorRow> = errors
        .iter()
        .filter(|e| e.code == "external_id_conflict")
        .collect();
    match collisions.as_slice() {
        [] if aborted_records > 0 => push(
            Invariant::ErrorMode,
            format!("{aborted_records} records reported batch_aborted without a collision"),
        ),
        [] => {}
        [collision] => {
            if succeeded != 0 {
                push(
                    Invariant::ErrorMode,
                    format!(
                        "aborted at record {} yet {succeeded} records succeeded",
                        collision.index
                    ),
                );
            }
            let not_aborted = errors
                .iter()
                .filter(|e| e.index > collision.index && e.code != "batch_aborted")
                .count();
            if not_aborted > 0 {
                push(
                    Invariant::ErrorMode,
                    format!(
                        "aborted at record {} but {not_aborted} later records report another error",
                        collision.index
                    ),
                );
            }
        }
        more => push(
            Invariant::ErrorMode,
            format!("{} collisions reported in one aborted batch", more.len()),
        ),
    }
}

/// The first few items of a long list, and how many more there are.
fn abbreviate(items: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut text = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        text.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    text
}
