//! References from one record to another: by id, or by the other record's
//! external id from the same source, so a migration can load parents and
//! children without mapping ids by hand; and GL accounts by id or number.
//!
//! Each kind of reference of a batch resolves with one query, and a reference
//! that names nothing is the record's error (`reference_not_found`, naming the
//! field), never the service's.

use std::collections::{HashMap, HashSet};

use sqlx::{PgConnection, Postgres};
use uuid::Uuid;

use crate::Tenant;
use crate::canonical::{WriteContext, provenance_scope};
use crate::error::{HandlerError, RecordError};
use crate::fields::{Fields, INVALID, MISSING};
use crate::spec::{EXTERNAL_ID_MAX, Field, GL_NUMBER_MAX, Kind};

pub const REFERENCE_NOT_FOUND: &str = "reference_not_found";

/// Another record, by id or by its external id from the same source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    Id(Uuid),
    External(String),
}

/// A reference together with the field it was given in, for error paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefField {
    pub reference: Ref,
    pub field: String,
}

/// Reads the reference `field` declares, by `<name>_id` or
/// `<name>_external_id`: at most one of them, and one when it is required.
pub(crate) fn parse_ref(f: &Fields<'_>, field: &Field) -> Result<Option<RefField>, RecordError> {
    f.declared_reference(field, || matches!(field.kind, Kind::Reference));
    let name = field.name;
    let required = field.required;
    let id_field = format!("{name}_id");
    let external_field = format!("{name}_external_id");
    match (f.has_named(&id_field), f.has_named(&external_field)) {
        (true, false) => Ok(Some(RefField {
            reference: Ref::Id(f.required_uuid(&id_field)?),
            field: f.key(&id_field).to_owned(),
        })),
        (false, true) => Ok(Some(RefField {
            reference: Ref::External(f.required_string_named(&external_field, EXTERNAL_ID_MAX)?),
            field: f.key(&external_field).to_owned(),
        })),
        (true, true) => {
            let (id_key, external_key) = (f.key(&id_field), f.key(&external_field));
            Err(RecordError::at(
                INVALID,
                id_key,
                format!("give either {id_key} or {external_key}, not both"),
            ))
        }
        (false, false) if required => Err(RecordError::at(
            MISSING,
            id_field.clone(),
            format!("{id_field} or {external_field} is required"),
        )),
        (false, false) => Ok(None),
    }
}

/// Resolves references to rows of `table` (a table with provenance columns),
/// in order. `what` names the record kind in messages; `prefix` is the path of
/// the reference's parent object (`line_items[2]`), empty at the top.
pub(crate) async fn resolve(
    conn: &mut PgConnection,
    ctx: &WriteContext<'_>,
    table: &str,
    what: &str,
    refs: &[(String, &RefField)],
) -> Result<Vec<Uuid>, HandlerError> {
    let wanted: Vec<&RefField> = refs.iter().map(|(_, r)| *r).collect();
    let index: RefIndex<bool> = RefIndex::load(conn, ctx, table, "true", &wanted).await?;
    refs.iter()
        .map(|(prefix, r)| {
            index
                .resolve(ctx, what, prefix, r, |_| None)
                .map(|(id, _)| id)
        })
        .collect::<Result<_, _>>()
        .map_err(HandlerError::from)
}

/// The rows a set of references names, read with one query: by id, and by
/// external id from the writer's source, each with one column of the row
/// (`extra`, a SQL expression of type `T`) the handler needs besides the id.
#[derive(Debug)]
pub(crate) struct RefIndex<T> {
    by_id: HashMap<Uuid, T>,
    by_external: HashMap<String, (Uuid, T)>,
}

impl<T> RefIndex<T>
where
    T: for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres> + Send + Unpin + Clone,
{
    pub(crate) async fn load(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        table: &str,
        extra: &str,
        refs: &[&RefField],
    ) -> Result<Self, sqlx::Error> {
        let mut ids: HashSet<Uuid> = HashSet::new();
        let mut externals: HashSet<&str> = HashSet::new();
        for r in refs {
            match &r.reference {
                Ref::Id(id) => {
                    ids.insert(*id);
                }
                Ref::External(e) => {
                    externals.insert(e.as_str());
                }
            }
        }
        // References by external id name nothing without a source.
        if ctx.external_source.is_none() {
            externals.clear();
        }
        let mut index = Self {
            by_id: HashMap::new(),
            by_external: HashMap::new(),
        };
        if ids.is_empty() && externals.is_empty() {
            return Ok(index);
        }
        let ids: Vec<Uuid> = ids.into_iter().collect();
        let mut externals: Vec<&str> = externals.into_iter().collect();
        externals.sort_unstable();
        // By id in the primary key alone, the tenant checked outside the
        // fence; by external id one key at a time in the provenance index
        // (`import::plan_without_statistics`).
        let rows: Vec<(Uuid, Option<String>, Option<String>, T)> = sqlx::query_as(&format!(
            "select r.id, r.external_source, r.external_id, r.extra
             from (select id, entity_id, mode, external_source, external_id, {extra} as extra
                   from {table} where id = any($3) offset 0) as r
             where r.entity_id = $1 and r.mode = $2
             union all
             select r.id, $4::text, k.external_id, r.extra
             from unnest($5::text[]) as k (external_id)
             cross join lateral (
                 select id, {extra} as extra from {table}
                 where entity_id = $1 and mode = $2 and external_source = $4
                   and external_id = k.external_id{scope}
                 offset 0
             ) as r",
            scope = provenance_scope(table)
        ))
        .bind(ctx.tenant.entity_id)
        .bind(ctx.tenant.mode.as_str())
        .bind(&ids)
        .bind(ctx.external_source)
        .bind(&externals)
        .fetch_all(&mut *conn)
        .await?;
        let wanted: HashSet<Uuid> = ids.into_iter().collect();
        for (id, source, external_id, extra) in rows {
            if wanted.contains(&id) {
                index.by_id.insert(id, extra.clone());
            }
            if let Some(external_id) = external_id
                && source.as_deref() == ctx.external_source
            {
                index.by_external.insert(external_id, (id, extra));
            }
        }
        Ok(index)
    }

    /// The row `r` names. `written` gives what this batch wrote before the
    /// record: for an external id the batch has written, the row holding it
    /// now, or `Some(None)` if none does any more; so a record can name one
    /// loaded earlier in its batch.
    pub(crate) fn resolve(
        &self,
        ctx: &WriteContext<'_>,
        what: &str,
        prefix: &str,
        r: &RefField,
        written: impl Fn(&str) -> Option<Option<(Uuid, T)>>,
    ) -> Result<(Uuid, T), RecordError> {
        let param = if prefix.is_empty() {
            r.field.clone()
        } else {
            format!("{prefix}.{}", r.field)
        };
        match &r.reference {
            Ref::Id(id) => match self.by_id.get(id) {
                Some(extra) => Ok((*id, extra.clone())),
                None => Err(RecordError::at(
                    REFERENCE_NOT_FOUND,
                    param,
                    format!("no {what} with id {id}"),
                )),
            },
            Ref::External(e) => {
                let found = match ctx.external_source {
                    Some(_) => written(e).unwrap_or_else(|| self.by_external.get(e).cloned()),
                    None => None,
                };
                found.ok_or_else(|| {
                    let message = match ctx.external_source {
                        Some(source) => {
                            format!("no {what} with external_id '{e}' from source '{source}'")
                        }
                        None => format!("{} needs an external_source", r.field),
                    };
                    RecordError::at(REFERENCE_NOT_FOUND, param, message)
                        .with_hint("load the referenced record first, or earlier in the same batch")
                })
            }
        }
    }
}

/// A GL account, by id or by its account number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlRef {
    Id(Uuid),
    Number(String),
}

/// Reads `gl_account_id` or `gl_account_number`: exactly one.
pub(crate) fn parse_gl_ref(
    f: &Fields<'_>,
    field: &Field,
) -> Result<(GlRef, &'static str), RecordError> {
    f.declared_reference(field, || {
        matches!(field.kind, Kind::GlAccount) && field.required
    });
    match (
        f.has_named("gl_account_id"),
        f.has_named("gl_account_number"),
    ) {
        (true, false) => Ok((
            GlRef::Id(f.required_uuid("gl_account_id")?),
            f.key("gl_account_id"),
        )),
        (false, true) => Ok((
            GlRef::Number(f.required_string_named("gl_account_number", GL_NUMBER_MAX)?),
            f.key("gl_account_number"),
        )),
        (true, true) => Err(RecordError::at(
            INVALID,
            f.key("gl_account_id"),
            format!(
                "give either {} or gl_account_number, not both",
                f.key("gl_account_id")
            ),
        )),
        (false, false) => Err(RecordError::at(
            MISSING,
            "gl_account_id",
            "gl_account_id or gl_account_number is required",
        )),
    }
}

#[derive(sqlx::FromRow)]
struct GlRow {
    id: Uuid,
    account_number: String,
    is_header: bool,
    is_active: bool,
}

/// The GL accounts a batch's lines name, by id or by number, read with one
/// query, with what decides whether they take postings.
pub(crate) struct GlIndex {
    by_id: HashMap<Uuid, GlRow>,
    /// Account numbers are unique in a tenant's chart.
    by_number: HashMap<String, Uuid>,
}

impl GlIndex {
    pub(crate) async fn load<'r>(
        conn: &mut PgConnection,
        tenant: Tenant,
        refs: impl IntoIterator<Item = &'r GlRef>,
    ) -> Result<Self, sqlx::Error> {
        let mut ids: HashSet<Uuid> = HashSet::new();
        let mut numbers: HashSet<&str> = HashSet::new();
        for r in refs {
            match r {
                GlRef::Id(id) => {
                    ids.insert(*id);
                }
                GlRef::Number(n) => {
                    numbers.insert(n.as_str());
                }
            }
        }
        let mut index = Self {
            by_id: HashMap::new(),
            by_number: HashMap::new(),
        };
        if ids.is_empty() && numbers.is_empty() {
            return Ok(index);
        }
        let mut numbers: Vec<&str> = numbers.into_iter().collect();
        numbers.sort_unstable();
        // By id in the primary key alone, by number one at a time in the
        // chart's number key (`import::plan_without_statistics`).
        let rows: Vec<GlRow> = sqlx::query_as(
            "select g.id, g.account_number, g.is_header, g.is_active
             from (select id, entity_id, mode, account_number, is_header, is_active
                   from gl_accounts where id = any($3) offset 0) as g
             where g.entity_id = $1 and g.mode = $2
             union all
             select g.id, g.account_number, g.is_header, g.is_active
             from unnest($4::text[]) as k (account_number)
             cross join lateral (
                 select id, account_number, is_header, is_active from gl_accounts
                 where entity_id = $1 and mode = $2 and account_number = k.account_number
                 offset 0
             ) as g",
        )
        .bind(tenant.entity_id)
        .bind(tenant.mode.as_str())
        .bind(ids.into_iter().collect::<Vec<_>>())
        .bind(&numbers)
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            index.by_number.insert(row.account_number.clone(), row.id);
            index.by_id.insert(row.id, row);
        }
        Ok(index)
    }

    /// The accounts the lines of a record post to, each given as `(reference,
    /// field)` in `<list>[i]`: postable ones, active leaves of the chart. The
    /// first line that names none is the error.
    pub(crate) fn postable<'r>(
        &self,
        list: &str,
        lines: impl IntoIterator<Item = (&'r GlRef, &'static str)>,
    ) -> Result<Vec<Uuid>, RecordError> {
        lines
            .into_iter()
            .enumerate()
            .map(|(i, (r, field))| {
                let param = format!("{list}[{i}].{field}");
                let (row, shown) = match r {
                    GlRef::Id(id) => (self.by_id.get(id), id.to_string()),
                    GlRef::Number(n) => (
                        self.by_number.get(n).and_then(|id| self.by_id.get(id)),
                        n.clone(),
                    ),
                };
                match row {
                    None => Err(RecordError::at(
                        REFERENCE_NOT_FOUND,
                        param,
                        format!("no GL account {shown} in this entity's chart of accounts"),
                    )),
                    Some(row) if row.is_header => Err(RecordError::at(
                        "account_is_header",
                        param,
                        format!(
                            "GL account {} is a header account; post to one of its leaf accounts",
                            row.account_number
                        ),
                    )),
                    Some(row) if !row.is_active => Err(RecordError::at(
                        "account_inactive",
                        param,
                        format!("GL account {} is inactive", row.account_number),
                    )),
                    Some(row) => Ok(row.id),
                }
            })
            .collect()
    }
}
