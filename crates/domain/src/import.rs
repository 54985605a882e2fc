//! The bulk import: a thin driver over the resources' canonical batch handlers.
//!
//! It reads each record's `external_id` and validates its payload, then hands
//! the valid records of a chunk to their resource's handler at once. A handler
//! looks everything up with one query per kind of look-up, decides every
//! record's outcome (created, updated, skipped, replaced or failed) in Rust,
//! record after record as if they had been applied one at a time, and writes
//! the survivors with set-based statements. The single-record endpoints call
//! the same handler with a batch of one.
//!
//! The batch runs inside a savepoint. A database constraint the handler could
//! not foresee (a concurrent writer, a component the batch deletes) fails the
//! whole statement: the savepoint is rolled back and the batch is split in two
//! halves, applied one after the other, down to the record to blame. So a
//! record that fails leaves nothing behind and never takes the good records of
//! its chunk down with it.
//!
//! The caller owns the transaction: the worker commits a chunk together with the
//! job's counters, and a dry run rolls everything back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{Acquire, PgConnection};
use uuid::Uuid;

use crate::accounts::Accounts;
use crate::audit::Actor;
use crate::canonical::{Applied, Canonical, Item, Outcome, Provenance, WriteContext};
use crate::error::{HandlerError, RecordError, is_transient, violated_constraint};
use crate::fields::kind;
use crate::journal::JournalEntries;
use crate::orders::Orders;
use crate::payables::{ApPayments, VendorBills};
use crate::products::Products;
use crate::{ConflictMode, Resource, Tenant};

use crate::spec::{EXTERNAL_ID_MAX, EXTERNAL_SOURCE_MAX, Field, carries, field_of, unread_fields};

/// Evaluates `$body` with `$R` naming the canonical handler of `$resource`:
/// the one place a resource is tied to its handler.
macro_rules! with_handler {
    ($resource:expr, $R:ident => $body:expr) => {
        match $resource {
            Resource::Accounts => {
                type $R = Accounts;
                $body
            }
            Resource::Products => {
                type $R = Products;
                $body
            }
            Resource::Orders => {
                type $R = Orders;
                $body
            }
            Resource::JournalEntries => {
                type $R = JournalEntries;
                $body
            }
            Resource::VendorBills => {
                type $R = VendorBills;
                $body
            }
            Resource::ApPayments => {
                type $R = ApPayments;
                $body
            }
        }
    };
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
    /// Whether that key may post journal entries into a closed period with
    /// `bypass_period_check`: the authorization layer's decision.
    pub may_bypass_period_check: bool,
    /// Whether a field no handler reads fails its record (`unknown_field`)
    /// instead of being reported in the job's `ignored_fields`.
    pub strict: bool,
}

/// The keys of a bulk record read besides its resource's fields.
const BULK_KEYS: &[&str] = &["external_id"];
/// The keys of a single record read besides its resource's fields.
const SINGLE_KEYS: &[&str] = &["external_id", "external_source"];

/// A field some records carried that the service does not keep: nothing
/// reads it. Reported so that a migration never loses data silently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoredField {
    /// Its path, items' indexes left out: `line_items[].variant_id`.
    pub field: String,
    /// How many records carried it.
    pub records: u32,
}

/// The fields `records` of `resource` carry that the service does not keep,
/// by field name. With `strict` there are none: such a field fails its
/// record instead.
pub fn ignored_fields(resource: Resource, records: &[Value], strict: bool) -> Vec<IgnoredField> {
    if strict {
        return Vec::new();
    }
    ignored(records, fields(resource), BULK_KEYS)
}

/// The same for one record created on its own, which also reads its
/// `external_source`.
pub fn ignored_in_single(resource: Resource, record: &Value) -> Vec<IgnoredField> {
    ignored(std::slice::from_ref(record), fields(resource), SINGLE_KEYS)
}

fn ignored(records: &[Value], spec: &[Field], besides: &[&str]) -> Vec<IgnoredField> {
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for record in records {
        let mut carried: Vec<String> = unread_fields(record, spec, besides)
            .iter()
            .map(|path| field_of(path))
            .collect();
        carried.sort_unstable();
        carried.dedup();
        for field in carried {
            *counts.entry(field).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .map(|(field, records)| IgnoredField { field, records })
        .collect()
}

/// With `strict`, a record's first field that no handler reads, as its
/// error.
fn unknown_field(resource: Resource, record: &Value, besides: &[&str]) -> Option<RecordError> {
    let unread = unread_fields(record, fields(resource), besides);
    let first = unread.first()?;
    let others = match unread.len() {
        1 => String::new(),
        n => format!(" (and {} more: {})", n - 1, unread[1..].join(", ")),
    };
    Some(
        RecordError::at(
            "unknown_field",
            first.clone(),
            format!("{first} is not a field of {resource} records{others}"),
        )
        .with_hint(
            "strict=true refuses fields the service does not read; without it they are \
             reported in ignored_fields",
        ),
    )
}

/// One failed record, as reported in a job's `errors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordFailure {
    pub index: u32,
    /// Left out when the record had none: the vendor's page gives it as a
    /// string, never null.
    #[serde(skip_serializing_if = "Option::is_none")]
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

/// Makes every statement the import runs on this transaction cost the same
/// whatever the planner knows of the tables.
///
/// A migration loads into tables the statistics have never seen (a fresh
/// database, where autovacuum may be off or minutes behind) or into an entity
/// they have not seen. Without statistics the planner takes `entity_id = $1
/// and mode = $2` for about one row, so any index holding those two columns
/// looks as good as the one that holds the key; and it keeps the plan it made
/// on the first chunk, on nearly empty tables, for as long as the connection
/// lives. Either way a look-up could read the whole entity for every key, and
/// the import grew quadratic. So the import's statements are written so that
/// only one plan is possible:
///
/// - keys are sought one by one, each in a fenced subquery over `unnest` of
///   the keys (`cross join lateral (... where key = k.key offset 0)`), so the
///   key is always in the index condition and never a filter;
/// - exactly one index can serve each look-up: the indexes no look-up needs
///   (document numbers, and for products the provenance index when seeking a
///   sku) are partial on a predicate no look-up states (migration
///   `one_index_per_lookup`), and a look-up by id names only the id, the
///   tenant checked outside the fence or known from the look-up that found it;
/// - sequential scans are off on this transaction, so that a plan made while
///   a table was empty cannot scan it once it is large;
/// - plans are generic, made without the tenant's values, once per statement
///   and connection.
///
/// `crates/api/tests/api/plans.rs` checks the plan of every statement a chunk
/// runs, with `auto_explain`, on never-analyzed tables of 20,000 rows, with
/// plans made on the empty tables and on the full ones.
pub(crate) async fn plan_without_statistics(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(
        "select set_config('plan_cache_mode', 'force_generic_plan', true),
                set_config('enable_seqscan', 'off', true)",
    )
    .execute(conn)
    .await
    .map(drop)
}

/// Imports `records`, whose first element is record `first_index` of the batch,
/// on the caller's transaction.
pub async fn import_records(
    conn: &mut PgConnection,
    ctx: &ImportContext<'_>,
    records: &[Value],
    first_index: u32,
) -> Result<Tally, ImportError> {
    plan_without_statistics(&mut *conn).await?;
    with_handler!(ctx.resource, R => run::<R>(conn, ctx, records, first_index).await)
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
    // Checked in Rust first: the records that fail here never reach the
    // handler, and keep their place in the tally.
    let mut indexes = Vec::with_capacity(records.len());
    let mut items = Vec::with_capacity(records.len());
    let mut failures = Vec::new();
    for (index, record) in (first_index..).zip(records) {
        let external_id = match external_id(record) {
            Ok(id) => id,
            Err(e) => {
                failures.push(RecordFailure::new(index, external_id_of(record), e));
                continue;
            }
        };
        if ctx.strict
            && let Some(e) = unknown_field(ctx.resource, record, BULK_KEYS)
        {
            failures.push(RecordFailure::new(index, Some(external_id), e));
            continue;
        }
        match R::parse(record) {
            Ok(input) => {
                indexes.push(index);
                items.push(Item {
                    provenance: Some(Provenance {
                        source: ctx.external_source,
                        external_id,
                    }),
                    input,
                });
            }
            Err(e) => failures.push(RecordFailure::new(index, Some(external_id), e)),
        }
    }
    let mut tally = Tally::default();
    let write = WriteContext {
        tenant: ctx.tenant,
        external_source: Some(ctx.external_source),
        may_bypass_period_check: ctx.may_bypass_period_check,
        actor: ctx.actor,
    };
    let applied = apply_batch::<R>(conn, &write, ctx.conflict_mode, &items).await?;

    // Merged back in record order: the tally reports errors by index.
    let mut failures = failures.into_iter().peekable();
    for ((index, item), applied) in indexes.iter().zip(&items).zip(applied) {
        while let Some(failure) = failures.next_if(|f| f.index < *index) {
            tally.failure(failure);
        }
        let external_id = item.provenance.map(|p| p.external_id);
        match applied {
            Applied::Done(outcome, _) => tally.success(outcome),
            Applied::Failed(e) => tally.failure(RecordFailure::new(*index, external_id, e)),
            Applied::Collision(existing) => {
                let external_id = external_id.unwrap_or_default();
                let collision = RecordFailure::new(
                    *index,
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
                    )
                    .conflicting(),
                );
                return Err(ImportError::Aborted(Box::new(Abort {
                    collision,
                    earlier_failures: tally.errors,
                })));
            }
        }
    }
    failures.for_each(|failure| tally.failure(failure));
    Ok(tally)
}

/// Applies a batch through its handler inside a savepoint. When a statement
/// fails on a constraint the handler could not foresee, the savepoint is
/// rolled back and the batch split in two halves, applied one after the
/// other, until the failure is down to one record: that record fails alone.
async fn apply_batch<R: Canonical>(
    conn: &mut PgConnection,
    ctx: &WriteContext<'_>,
    conflict: ConflictMode,
    items: &[Item<'_, R::Input>],
) -> Result<Vec<Applied>, sqlx::Error> {
    let mut applied = Vec::with_capacity(items.len());
    // The parts still to apply, the next one last.
    let mut parts = vec![items];
    while let Some(part) = parts.pop() {
        if part.is_empty() {
            continue;
        }
        let outcomes = match attempt::<R>(conn, ctx, conflict, part).await? {
            Ok(outcomes) => outcomes,
            Err(e) if part.len() > 1 => {
                tracing::debug!(error = %e, records = part.len(), "a set-based write failed; splitting the batch");
                let (first, second) = part.split_at(part.len() / 2);
                parts.push(second);
                parts.push(first);
                continue;
            }
            Err(e) => vec![single_failure::<R>(conn, ctx, conflict, part, e).await?],
        };
        let collided = matches!(outcomes.last(), Some(Applied::Collision(_)));
        applied.extend(outcomes);
        if collided {
            break;
        }
    }
    Ok(applied)
}

/// One try of a batch in a savepoint: the outcomes, or the database error
/// that rolled it back. A transient error is the caller's to retry.
async fn attempt<R: Canonical>(
    conn: &mut PgConnection,
    ctx: &WriteContext<'_>,
    conflict: ConflictMode,
    items: &[Item<'_, R::Input>],
) -> Result<Result<Vec<Applied>, sqlx::Error>, sqlx::Error> {
    let mut savepoint = conn.begin().await?;
    match R::apply(&mut savepoint, ctx, conflict, items).await {
        Ok(outcomes) => {
            savepoint.commit().await?;
            Ok(Ok(outcomes))
        }
        Err(e) => {
            savepoint.rollback().await?;
            if is_transient(&e) {
                return Err(e);
            }
            Ok(Err(e))
        }
    }
}

/// The outcome of a single record whose write failed on `error`.
async fn single_failure<R: Canonical>(
    conn: &mut PgConnection,
    ctx: &WriteContext<'_>,
    conflict: ConflictMode,
    item: &[Item<'_, R::Input>],
    error: sqlx::Error,
) -> Result<Applied, sqlx::Error> {
    // A concurrent job inserted the same provenance between our look-up and
    // our insert; a second try sees the now-committed record and applies the
    // conflict mode to it.
    let error = if violated_constraint(&error).is_some_and(|c| c.ends_with("_provenance_key")) {
        match attempt::<R>(conn, ctx, conflict, item).await? {
            Ok(mut outcomes) => return Ok(outcomes.remove(0)),
            Err(e) => e,
        }
    } else {
        error
    };
    if let Some(e) = R::constraint_error(&error) {
        return Ok(Applied::Failed(e));
    }
    // Anything else would fail again on every retry: it fails this record
    // alone, and the others go on.
    tracing::error!(error = %error, "unexpected database error on a record");
    Ok(Applied::Failed(RecordError::new(
        "internal_error",
        "the record could not be written because of an internal error; it was not saved",
    )))
}

/// The fields a record of `resource` may hold, besides its `external_id`.
pub fn fields(resource: Resource) -> &'static [Field] {
    with_handler!(resource, R => R::FIELDS)
}

/// Parses a record of `resource` as its canonical handler does, checking
/// every rule that needs no database; what the record's `Input` became is
/// returned in its `Debug` form, for the tests that hold the parser to the
/// fields it declares.
pub fn parse_record(resource: Resource, record: &Value) -> Result<String, RecordError> {
    fn parse<R: Canonical>(record: &Value) -> Result<String, RecordError>
    where
        R::Input: std::fmt::Debug,
    {
        R::parse(record).map(|input| format!("{input:?}"))
    }
    with_handler!(resource, R => parse::<R>(record))
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
    if ctx.strict
        && let Some(e) = unknown_field(resource, record, SINGLE_KEYS)
    {
        return Err(e.into());
    }
    with_handler!(resource, R => create::<R>(conn, record, ctx).await)
}

/// Who creates a single record, and what they may do.
#[derive(Debug, Clone, Copy)]
pub struct SingleContext<'a> {
    pub tenant: Tenant,
    pub may_bypass_period_check: bool,
    pub actor: &'a Actor,
    /// A field no handler reads is the record's error `unknown_field`.
    pub strict: bool,
}

async fn create<R: Canonical>(
    conn: &mut PgConnection,
    record: &Value,
    single: SingleContext<'_>,
) -> Result<Uuid, HandlerError> {
    let tenant = single.tenant;
    let input = R::parse(record)?;
    // Left empty, as an export's empty cell: no provenance.
    let source = match record.get("external_source") {
        None => None,
        Some(v) if !carries(v) => None,
        Some(Value::String(s)) if s.trim().chars().count() <= EXTERNAL_SOURCE_MAX => Some(s.trim()),
        Some(_) => {
            return Err(RecordError::at(
                "invalid_field",
                "external_source",
                format!(
                    "external_source must be a string of 1 to {EXTERNAL_SOURCE_MAX} characters"
                ),
            )
            .into());
        }
    };
    let external = match record.get("external_id") {
        None => None,
        Some(v) if !carries(v) => None,
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
    let item = Item { provenance, input };
    plan_without_statistics(&mut *conn).await?;
    let applied = apply_batch::<R>(conn, &ctx, ConflictMode::Error, std::slice::from_ref(&item))
        .await?
        .pop()
        .expect("a batch of one has one outcome");
    match applied {
        Applied::Done(_, id) => Ok(id),
        Applied::Failed(e) => Err(e.into()),
        Applied::Collision(existing) => {
            let p = provenance.expect("only a record with provenance collides");
            Err(conflict(R::TABLE, p, existing).into())
        }
    }
}

fn conflict(table: &str, p: Provenance<'_>, existing: Uuid) -> RecordError {
    RecordError::at(
        "external_id_conflict",
        "external_id",
        format!(
            "a record with external_id '{}' from source '{}' already exists ({existing})",
            p.external_id, p.source
        ),
    )
    .conflicting()
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
