//! What a resource's canonical handler is, as the import drives it: the
//! [`Canonical`] trait, the items and outcomes of a batch, and the look-ups by
//! provenance every handler shares. The resources depend on this module; the
//! import driver (`import.rs`) depends on them and on it.

use std::collections::HashMap;
use std::future::Future;

use serde_json::Value;
use sqlx::{Acquire, PgConnection};
use uuid::Uuid;

use crate::audit::Actor;
use crate::error::{HandlerError, RecordError};
use crate::spec::Field;
use crate::{ConflictMode, Tenant};

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

/// One valid record of a batch, as its handler takes it.
#[derive(Debug)]
pub struct Item<'a, I> {
    /// Where the record came from; a single record may have none.
    pub provenance: Option<Provenance<'a>>,
    pub input: I,
}

/// What became of one record of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// Written (or, in skip mode, left alone): the record's id.
    Done(Outcome, Uuid),
    /// The record breaks a rule; nothing of it was written.
    Failed(RecordError),
    /// `error` mode met an existing record: the batch stops here and the
    /// caller rolls everything back.
    Collision(Uuid),
}

/// A resource as the import drives it. Every method runs on the caller's
/// connection, inside the caller's transaction.
pub trait Canonical {
    type Input: Send + Sync;
    /// The resource's table; it has the provenance columns `external_source`
    /// and `external_id` under a `<table>_provenance_key` unique constraint.
    const TABLE: &'static str;
    /// The fields a record may hold: what `parse` reads.
    const FIELDS: &'static [Field];

    fn parse(record: &Value) -> Result<Self::Input, RecordError>;

    /// Applies `items` in order under `conflict`, each with the outcome it
    /// would have had if they had been applied one at a time, one after the
    /// other: a record sees what the records before it wrote. Returns one
    /// outcome per item, or fewer when it stops at a collision.
    ///
    /// A database error leaves the batch to be rolled back: the caller splits
    /// it and tries again, down to the single record, whose error is then
    /// read with [`Canonical::constraint_error`].
    fn apply(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        conflict: ConflictMode,
        items: &[Item<'_, Self::Input>],
    ) -> impl Future<Output = Result<Vec<Applied>, sqlx::Error>> + Send;

    /// The record error a constraint failure of a batch of one record stands
    /// for, when it is the record's fault.
    fn constraint_error(err: &sqlx::Error) -> Option<RecordError>;
}

/// A resource whose handler still writes one record at a time: its batch
/// handler is [`record_by_record`].
pub(crate) trait RecordByRecord: Canonical {
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

/// The batch handler of a [`RecordByRecord`] resource: each record in its
/// own savepoint, so one that fails half-way leaves nothing behind.
pub(crate) async fn record_by_record<R: RecordByRecord>(
    conn: &mut PgConnection,
    ctx: &WriteContext<'_>,
    conflict: ConflictMode,
    items: &[Item<'_, R::Input>],
) -> Result<Vec<Applied>, sqlx::Error> {
    let mut applied = Vec::with_capacity(items.len());
    for item in items {
        let mut savepoint = conn.begin().await?;
        match apply_one::<R>(&mut savepoint, ctx, conflict, item).await {
            Ok(outcome) => {
                savepoint.commit().await?;
                let stop = matches!(outcome, Applied::Collision(_));
                applied.push(outcome);
                if stop {
                    break;
                }
            }
            Err(HandlerError::Record(e)) => {
                savepoint.rollback().await?;
                applied.push(Applied::Failed(e));
            }
            Err(HandlerError::Database(e)) => {
                savepoint.rollback().await?;
                return Err(e);
            }
        }
    }
    Ok(applied)
}

async fn apply_one<R: RecordByRecord>(
    conn: &mut PgConnection,
    ctx: &WriteContext<'_>,
    conflict: ConflictMode,
    item: &Item<'_, R::Input>,
) -> Result<Applied, HandlerError> {
    let existing = match item.provenance {
        Some(p) => find_by_provenance(conn, R::TABLE, ctx.tenant, p).await?,
        None => None,
    };
    Ok(match (existing, conflict) {
        (None, _) => {
            let id = R::create(conn, ctx, item.provenance, &item.input).await?;
            Applied::Done(Outcome::Created, id)
        }
        (Some(id), ConflictMode::Skip) => Applied::Done(Outcome::Skipped, id),
        (Some(id), ConflictMode::Update) => {
            R::update(conn, ctx, id, &item.input).await?;
            Applied::Done(Outcome::Updated, id)
        }
        (Some(id), ConflictMode::Replace) => {
            clear_provenance(conn, R::TABLE, id).await?;
            let id = R::create(conn, ctx, item.provenance, &item.input).await?;
            Applied::Done(Outcome::Replaced, id)
        }
        (Some(id), ConflictMode::Error) => Applied::Collision(id),
    })
}

/// The records of `table` holding the given provenances, keyed as the items
/// give them, and locked so that a concurrent job cannot change them under
/// our write: one query per source (a batch has one).
///
/// Each key is sought on its own in the provenance index (see
/// [`crate::import::plan_without_statistics`]), and the rows are locked in key order, the
/// same for every chunk, so two chunks naming the same records cannot
/// deadlock.
pub(crate) async fn existing_by_provenance<'a, I>(
    conn: &mut PgConnection,
    table: &str,
    tenant: Tenant,
    items: &'a [Item<'a, I>],
) -> Result<HashMap<(&'a str, &'a str), Uuid>, sqlx::Error> {
    let mut by_source: HashMap<&'a str, Vec<&'a str>> = HashMap::new();
    for p in items.iter().filter_map(|i| i.provenance) {
        by_source.entry(p.source).or_default().push(p.external_id);
    }
    let mut existing = HashMap::new();
    for (source, mut external_ids) in by_source {
        external_ids.sort_unstable();
        external_ids.dedup();
        let rows: Vec<(String, Uuid)> = sqlx::query_as(&format!(
            "select k.external_id, r.id
             from unnest($4::text[]) as k (external_id)
             cross join lateral (
                 select id from {table}
                 where entity_id = $1 and mode = $2 and external_source = $3
                   and external_id = k.external_id{scope}
                 offset 0
                 for update
             ) as r",
            scope = provenance_scope(table)
        ))
        .bind(tenant.entity_id)
        .bind(tenant.mode.as_str())
        .bind(source)
        .bind(&external_ids)
        .fetch_all(&mut *conn)
        .await?;
        let rows: HashMap<String, Uuid> = rows.into_iter().collect();
        existing.extend(
            external_ids
                .into_iter()
                .filter_map(|e| rows.get(e).map(|id| ((source, e), *id))),
        );
    }
    Ok(existing)
}

/// What a query by provenance on `table` adds to its conditions so that the
/// table's provenance index serves it: products hold provenance on top-level
/// products only (variants have none), and their provenance index covers
/// those alone, so that a look-up by sku cannot use it.
pub(crate) fn provenance_scope(table: &str) -> &'static str {
    if table == "products" {
        " and parent_product_id is null"
    } else {
        ""
    }
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
         where entity_id = $1 and mode = $2 and external_source = $3 and external_id = $4{scope}
         for update",
        scope = provenance_scope(table)
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

/// What happened to a record that succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Skipped,
    Replaced,
}
