//! The bulk import: a thin loop over the resources' canonical handlers.
//!
//! For each record it reads the `external_id`, validates the payload, looks the
//! record's provenance up and, by the job's conflict mode, creates, updates,
//! skips or replaces through the same handlers the single-record endpoints use.
//! Each record runs inside its own savepoint, so a record that fails leaves
//! nothing behind and never takes the good records of its chunk down with it.
//!
//! The caller owns the transaction: the worker commits a chunk together with the
//! job's counters, and a dry run rolls everything back.

use std::future::Future;

use serde::Serialize;
use serde_json::Value;
use sqlx::{Acquire, PgConnection};
use uuid::Uuid;

use crate::accounts::Accounts;
use crate::audit::Actor;
use crate::error::{HandlerError, RecordError, is_transient, violated_constraint};
use crate::fields::kind;
use crate::journal::JournalEntries;
use crate::orders::Orders;
use crate::payables::{ApPayments, VendorBills};
use crate::products::Products;
use crate::{ConflictMode, Resource, Tenant};

const EXTERNAL_ID_MAX: usize = 255;

/// Where a record came from: its source system and its id there.
#[derive(Debug, Clone, Copy)]
pub struct Provenance<'a> {
    pub source: &'a str,
    pub external_id: &'a str,
}

/// What a canonical handler acts for: the tenant and, for references given by
/// external id, the source those ids belong to.
#[derive(Debug, Clone, Copy)]
pub struct WriteContext<'a> {
    pub tenant: Tenant,
    pub external_source: Option<&'a str>,
    /// Whether the caller may post journal entries into a closed period with
    /// `bypass_period_check` (its key has `migration:write`).
    pub may_bypass_period_check: bool,
    /// Who writes, for the audit log.
    pub actor: &'a Actor,
}

/// A resource as the import loop drives it. Every method runs on the caller's
/// connection, inside the caller's transaction.
pub trait Canonical {
    type Input: Send + Sync;
    /// The resource's table; it has the provenance columns `external_source`
    /// and `external_id` under a `<table>_provenance_key` unique constraint.
    const TABLE: &'static str;

    fn parse(record: &Value) -> Result<Self::Input, RecordError>;

    fn create(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        provenance: Option<Provenance<'_>>,
        input: &Self::Input,
    ) -> impl Future<Output = Result<Uuid, HandlerError>> + Send;

    fn update(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        id: Uuid,
        input: &Self::Input,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// The record imported earlier from the same source with the same external
/// id, locked so that a concurrent job cannot change it under our write.
async fn find_by_provenance(
    conn: &mut PgConnection,
    table: &str,
    tenant: Tenant,
    provenance: Provenance<'_>,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "select id from {table}
         where entity_id = $1 and mode = $2 and external_source = $3 and external_id = $4
         for update"
    ))
    .bind(tenant.entity_id)
    .bind(tenant.mode.as_str())
    .bind(provenance.source)
    .bind(provenance.external_id)
    .fetch_optional(conn)
    .await
}

/// Replace mode: the old record stays, without its provenance.
async fn clear_provenance(
    conn: &mut PgConnection,
    table: &str,
    id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "update {table} set external_source = null, external_id = null, updated_at = now()
         where id = $1"
    ))
    .bind(id)
    .execute(conn)
    .await
    .map(drop)
}

/// The job-level settings every record of a batch is imported with.
#[derive(Debug, Clone, Copy)]
pub struct ImportContext<'a> {
    pub tenant: Tenant,
    pub resource: Resource,
    pub external_source: &'a str,
    pub conflict_mode: ConflictMode,
    /// The key that submitted the batch, for the audit log.
    pub actor: &'a Actor,
}

/// One failed record, as reported in a job's `errors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordFailure {
    pub index: u32,
    pub external_id: Option<String>,
    pub error: String,
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl RecordFailure {
    pub fn new(index: u32, external_id: Option<&str>, error: RecordError) -> Self {
        Self {
            index,
            external_id: external_id.map(str::to_owned),
            error: error.message,
            code: error.code.to_owned(),
            param: error.param,
            hint: error.hint,
        }
    }
}

/// What happened to a record that succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Skipped,
    Replaced,
}

/// Counts and failures of a run of records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub succeeded: u32,
    pub failed: u32,
    pub created: u32,
    pub updated: u32,
    pub skipped: u32,
    pub replaced: u32,
    pub errors: Vec<RecordFailure>,
}

impl Tally {
    fn success(&mut self, outcome: Outcome) {
        self.succeeded += 1;
        match outcome {
            Outcome::Created => self.created += 1,
            Outcome::Updated => self.updated += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::Replaced => self.replaced += 1,
        }
    }

    fn failure(&mut self, failure: RecordFailure) {
        self.failed += 1;
        self.errors.push(failure);
    }

    /// The tally of a batch aborted in `error` mode: nothing of it was written.
    /// The colliding record and the records that had already failed keep their
    /// own errors; every other record is reported as not written, so each index
    /// of the batch is accounted for exactly once.
    fn aborted(records: &[Value], abort: Abort) -> Self {
        let collided_at = abort.collision.index;
        let colliding_id = abort.collision.external_id.clone().unwrap_or_default();
        let mut known = abort.earlier_failures;
        known.push(abort.collision);
        let mut tally = Tally::default();
        let mut known = known.into_iter().peekable();
        for (index, record) in (0..).zip(records) {
            match known.next_if(|f| f.index == index) {
                Some(failure) => tally.failure(failure),
                None => tally.failure(RecordFailure {
                    index,
                    external_id: external_id_of(record).map(str::to_owned),
                    error: format!(
                        "not written: the batch was aborted because record {collided_at} \
                         (external_id '{colliding_id}') collides with an existing record \
                         and conflict_mode is error"
                    ),
                    code: "batch_aborted".to_owned(),
                    param: None,
                    hint: None,
                }),
            }
        }
        tally
    }
}

/// Why a batch in `error` mode stopped.
#[derive(Debug, Clone)]
pub struct Abort {
    pub collision: RecordFailure,
    pub earlier_failures: Vec<RecordFailure>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// `error` mode met an existing record: the caller must roll back.
    #[error("record {} collides with an existing record", .0.collision.index)]
    Aborted(Box<Abort>),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Imports `records`, whose first element is record `first_index` of the batch,
/// on the caller's transaction.
pub async fn import_records(
    conn: &mut PgConnection,
    ctx: &ImportContext<'_>,
    records: &[Value],
    first_index: u32,
) -> Result<Tally, ImportError> {
    // Records number their documents from per-kind sequence rows (customers
    // and vendors; sales orders, invoices...), locked in record order, so two
    // chunks of one entity could lock two kinds in opposite orders and
    // deadlock. Taking one lock per entity, mode and resource first orders
    // them; chunks of the same kind queued on the sequence rows anyway.
    if ctx.resource != Resource::Products {
        sqlx::query("select pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!(
                "numbering/{}/{}/{}",
                ctx.tenant.entity_id,
                ctx.tenant.mode.as_str(),
                ctx.resource.as_str()
            ))
            .execute(&mut *conn)
            .await?;
    }
    match ctx.resource {
        Resource::Accounts => run::<Accounts>(conn, ctx, records, first_index).await,
        Resource::Products => run::<Products>(conn, ctx, records, first_index).await,
        Resource::Orders => run::<Orders>(conn, ctx, records, first_index).await,
        Resource::JournalEntries => run::<JournalEntries>(conn, ctx, records, first_index).await,
        Resource::VendorBills => run::<VendorBills>(conn, ctx, records, first_index).await,
        Resource::ApPayments => run::<ApPayments>(conn, ctx, records, first_index).await,
    }
}

fn external_id_of(record: &Value) -> Option<&str> {
    record.get("external_id").and_then(Value::as_str)
}

/// Reads the record's external id: every imported record must carry one.
fn external_id(record: &Value) -> Result<&str, RecordError> {
    match record.get("external_id") {
        None | Some(Value::Null) => Err(RecordError::at(
            "missing_external_id",
            "external_id",
            "every imported record needs an external_id",
        )),
        Some(Value::String(s)) if s.trim().is_empty() => Err(RecordError::at(
            "missing_external_id",
            "external_id",
            "external_id must not be blank",
        )),
        Some(Value::String(s)) if s.chars().count() > EXTERNAL_ID_MAX => Err(RecordError::at(
            "field_too_long",
            "external_id",
            format!("external_id is longer than {EXTERNAL_ID_MAX} characters"),
        )),
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(other) => Err(RecordError::at(
            "invalid_field",
            "external_id",
            format!("external_id must be a string, got {}", kind(other)),
        )),
    }
}

async fn run<R: Canonical>(
    conn: &mut PgConnection,
    ctx: &ImportContext<'_>,
    records: &[Value],
    first_index: u32,
) -> Result<Tally, ImportError> {
    let mut tally = Tally::default();
    for (index, record) in (first_index..).zip(records) {
        let external_id = match external_id(record) {
            Ok(id) => id,
            Err(e) => {
                tally.failure(RecordFailure::new(index, external_id_of(record), e));
                continue;
            }
        };
        let input = match R::parse(record) {
            Ok(input) => input,
            Err(e) => {
                tally.failure(RecordFailure::new(index, Some(external_id), e));
                continue;
            }
        };
        let provenance = Provenance {
            source: ctx.external_source,
            external_id,
        };
        match apply_in_savepoint::<R>(conn, ctx, provenance, &input).await? {
            Applied::Done(outcome) => tally.success(outcome),
            Applied::Failed(e) => tally.failure(RecordFailure::new(index, Some(external_id), e)),
            Applied::Collision(existing) => {
                let collision = RecordFailure::new(
                    index,
                    Some(external_id),
                    RecordError::at(
                        "external_id_conflict",
                        "external_id",
                        format!(
                            "a {} record with external_id '{external_id}' from source '{}' \
                             already exists ({existing}) and conflict_mode is error: \
                             the whole batch was aborted and nothing was written",
                            ctx.resource, ctx.external_source
                        ),
                    ),
                );
                return Err(ImportError::Aborted(Box::new(Abort {
                    collision,
                    earlier_failures: tally.errors,
                })));
            }
        }
    }
    Ok(tally)
}

enum Applied {
    Done(Outcome),
    Failed(RecordError),
    Collision(Uuid),
}

/// Applies one record inside a savepoint: released when the record succeeds,
/// rolled back when it fails, so a failed record leaves nothing behind.
async fn apply_in_savepoint<R: Canonical>(
    conn: &mut PgConnection,
    ctx: &ImportContext<'_>,
    provenance: Provenance<'_>,
    input: &R::Input,
) -> Result<Applied, sqlx::Error> {
    // A concurrent job may insert the same provenance between our look-up and
    // our insert; the unique constraint stops it, and a second pass sees the
    // now-committed record and applies the conflict mode to it.
    for attempt in 0..2 {
        let mut savepoint = conn.begin().await?;
        match apply::<R>(&mut savepoint, ctx, provenance, input).await {
            Ok(Applied::Failed(e)) => {
                savepoint.rollback().await?;
                return Ok(Applied::Failed(e));
            }
            Ok(applied) => {
                savepoint.commit().await?;
                return Ok(applied);
            }
            Err(HandlerError::Record(e)) => {
                savepoint.rollback().await?;
                return Ok(Applied::Failed(e));
            }
            Err(HandlerError::Database(e)) => {
                savepoint.rollback().await?;
                let provenance_race =
                    violated_constraint(&e).is_some_and(|name| name.ends_with("_provenance_key"));
                if provenance_race && attempt == 0 {
                    continue;
                }
                // A deadlock or an outage: the caller retries the whole chunk.
                if is_transient(&e) {
                    return Err(e);
                }
                // Anything else would fail again on every retry: it fails this
                // record alone, and the others go on.
                tracing::error!(error = %e, "unexpected database error on a record");
                return Ok(Applied::Failed(RecordError::new(
                    "internal_error",
                    "the record could not be written because of an internal error; \
                     it was not saved",
                )));
            }
        }
    }
    unreachable!("the loop returns on its second pass")
}

async fn apply<R: Canonical>(
    conn: &mut PgConnection,
    ctx: &ImportContext<'_>,
    provenance: Provenance<'_>,
    input: &R::Input,
) -> Result<Applied, HandlerError> {
    // Bulk imports are submitted with `migration:write`, which is what allows
    // `bypass_period_check`.
    let write = WriteContext {
        tenant: ctx.tenant,
        external_source: Some(ctx.external_source),
        may_bypass_period_check: true,
        actor: ctx.actor,
    };
    let existing = find_by_provenance(conn, R::TABLE, ctx.tenant, provenance).await?;
    let outcome = match (existing, ctx.conflict_mode) {
        (None, _) => {
            R::create(conn, &write, Some(provenance), input).await?;
            Outcome::Created
        }
        (Some(_), ConflictMode::Skip) => Outcome::Skipped,
        (Some(id), ConflictMode::Update) => {
            R::update(conn, &write, id, input).await?;
            Outcome::Updated
        }
        (Some(id), ConflictMode::Replace) => {
            clear_provenance(conn, R::TABLE, id).await?;
            R::create(conn, &write, Some(provenance), input).await?;
            Outcome::Replaced
        }
        (Some(id), ConflictMode::Error) => return Ok(Applied::Collision(id)),
    };
    Ok(Applied::Done(outcome))
}

/// Creates one record through its resource's canonical create handler: what
/// the single-record endpoints call. The record's own `external_source` and
/// `external_id`, when both are given, become its provenance (and the source
/// its references by external id resolve in); an existing record with that
/// provenance is a conflict.
pub async fn create_one(
    conn: &mut PgConnection,
    resource: Resource,
    record: &Value,
    ctx: SingleContext<'_>,
) -> Result<Uuid, HandlerError> {
    match resource {
        Resource::Accounts => create::<Accounts>(conn, record, ctx).await,
        Resource::Products => create::<Products>(conn, record, ctx).await,
        Resource::Orders => create::<Orders>(conn, record, ctx).await,
        Resource::JournalEntries => create::<JournalEntries>(conn, record, ctx).await,
        Resource::VendorBills => create::<VendorBills>(conn, record, ctx).await,
        Resource::ApPayments => create::<ApPayments>(conn, record, ctx).await,
    }
}

/// Who creates a single record, and what they may do.
#[derive(Debug, Clone, Copy)]
pub struct SingleContext<'a> {
    pub tenant: Tenant,
    pub may_bypass_period_check: bool,
    pub actor: &'a Actor,
}

async fn create<R: Canonical>(
    conn: &mut PgConnection,
    record: &Value,
    single: SingleContext<'_>,
) -> Result<Uuid, HandlerError> {
    let tenant = single.tenant;
    let input = R::parse(record)?;
    let source = match record.get("external_source") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= 60 => Some(s.trim()),
        Some(_) => {
            return Err(RecordError::at(
                "invalid_field",
                "external_source",
                "external_source must be a string of 1 to 60 characters",
            )
            .into());
        }
    };
    let external = match record.get("external_id") {
        None | Some(Value::Null) => None,
        Some(_) => Some(external_id(record)?),
    };
    let provenance = match (source, external) {
        (Some(source), Some(external_id)) => Some(Provenance {
            source,
            external_id,
        }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(RecordError::at(
                "missing_external_id",
                "external_id",
                "external_source and external_id are given together",
            )
            .into());
        }
        (None, Some(_)) => {
            return Err(RecordError::at(
                "missing_required_field",
                "external_source",
                "external_source and external_id are given together",
            )
            .into());
        }
    };
    let ctx = WriteContext {
        tenant,
        external_source: source,
        may_bypass_period_check: single.may_bypass_period_check,
        actor: single.actor,
    };
    if let Some(p) = provenance
        && let Some(existing) = find_by_provenance(conn, R::TABLE, tenant, p).await?
    {
        return Err(conflict(R::TABLE, p, Some(existing)).into());
    }
    let mut savepoint = conn.begin().await?;
    match R::create(&mut savepoint, &ctx, provenance, &input).await {
        Ok(id) => {
            savepoint.commit().await?;
            Ok(id)
        }
        Err(HandlerError::Database(e))
            if violated_constraint(&e).is_some_and(|c| c.ends_with("_provenance_key")) =>
        {
            savepoint.rollback().await?;
            let p = provenance.expect("only a record with provenance breaks its key");
            let existing = find_by_provenance(conn, R::TABLE, tenant, p).await?;
            Err(conflict(R::TABLE, p, existing).into())
        }
        Err(e) => {
            savepoint.rollback().await?;
            Err(e)
        }
    }
}

fn conflict(table: &str, p: Provenance<'_>, existing: Option<Uuid>) -> RecordError {
    let which = existing.map(|id| format!(" ({id})")).unwrap_or_default();
    RecordError::at(
        "external_id_conflict",
        "external_id",
        format!(
            "a record with external_id '{}' from source '{}' already exists{which}",
            p.external_id, p.source
        ),
    )
    .with_hint(format!(
        "use the bulk import with conflict_mode update or replace to change {table} records"
    ))
}

/// Imports a whole batch on one transaction and reports its tally, turning an
/// `error`-mode abort into the aborted tally. The caller decides whether the
/// transaction commits: it must roll back when `aborted` is true.
pub async fn import_batch(
    conn: &mut PgConnection,
    ctx: &ImportContext<'_>,
    records: &[Value],
) -> Result<BatchResult, sqlx::Error> {
    match import_records(conn, ctx, records, 0).await {
        Ok(tally) => Ok(BatchResult {
            tally,
            aborted: false,
        }),
        Err(ImportError::Aborted(abort)) => Ok(BatchResult {
            tally: Tally::aborted(records, *abort),
            aborted: true,
        }),
        Err(ImportError::Database(e)) => Err(e),
    }
}

/// The outcome of a whole batch.
#[derive(Debug, Clone)]
pub struct BatchResult {
    pub tally: Tally,
    /// `error` mode met a collision: nothing may be committed.
    pub aborted: bool,
}
