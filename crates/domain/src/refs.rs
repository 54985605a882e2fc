//! References from one record to another: by id, or by the other record's
//! external id from the same source, so a migration can load parents and
//! children without mapping ids by hand; and GL accounts by id or number.
//!
//! Each kind of reference of a record resolves with at most two queries, and a
//! reference that names nothing is the record's error (`reference_not_found`,
//! naming the field), never the service's.

use std::collections::{HashMap, HashSet};

use sqlx::PgConnection;
use uuid::Uuid;

use crate::Tenant;
use crate::error::{HandlerError, RecordError};
use crate::fields::{Fields, INVALID, MISSING};
use crate::import::WriteContext;

pub const REFERENCE_NOT_FOUND: &str = "reference_not_found";

const EXTERNAL_ID_MAX: usize = 255;

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

/// Reads `<name>_id` or `<name>_external_id`: at most one of them, and one
/// when `required`.
pub(crate) fn parse_ref(
    f: &Fields<'_>,
    name: &str,
    required: bool,
) -> Result<Option<RefField>, RecordError> {
    let id_field = format!("{name}_id");
    let external_field = format!("{name}_external_id");
    match (f.has(&id_field), f.has(&external_field)) {
        (true, false) => Ok(Some(RefField {
            reference: Ref::Id(f.required_uuid(&id_field)?),
            field: id_field,
        })),
        (false, true) => Ok(Some(RefField {
            reference: Ref::External(f.required_string(&external_field, EXTERNAL_ID_MAX)?),
            field: external_field,
        })),
        (true, true) => Err(RecordError::at(
            INVALID,
            id_field.clone(),
            format!("give either {id_field} or {external_field}, not both"),
        )),
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
    let ids: Vec<Uuid> = refs
        .iter()
        .filter_map(|(_, r)| match &r.reference {
            Ref::Id(id) => Some(*id),
            Ref::External(_) => None,
        })
        .collect();
    let externals: Vec<&str> = refs
        .iter()
        .filter_map(|(_, r)| match &r.reference {
            Ref::External(e) => Some(e.as_str()),
            Ref::Id(_) => None,
        })
        .collect();
    let known: HashSet<Uuid> = if ids.is_empty() {
        HashSet::new()
    } else {
        sqlx::query_scalar(&format!(
            "select id from {table} where entity_id = $1 and mode = $2 and id = any($3)"
        ))
        .bind(ctx.tenant.entity_id)
        .bind(ctx.tenant.mode.as_str())
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect()
    };
    let by_external: HashMap<String, Uuid> = match ctx.external_source {
        Some(source) if !externals.is_empty() => sqlx::query_as::<_, (String, Uuid)>(&format!(
            "select external_id, id from {table}
             where entity_id = $1 and mode = $2 and external_source = $3
               and external_id = any($4)"
        ))
        .bind(ctx.tenant.entity_id)
        .bind(ctx.tenant.mode.as_str())
        .bind(source)
        .bind(&externals)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect(),
        _ => HashMap::new(),
    };
    refs.iter()
        .map(|(prefix, r)| {
            let param = if prefix.is_empty() {
                r.field.clone()
            } else {
                format!("{prefix}.{}", r.field)
            };
            match &r.reference {
                Ref::Id(id) if known.contains(id) => Ok(*id),
                Ref::Id(id) => Err(RecordError::at(
                    REFERENCE_NOT_FOUND,
                    param,
                    format!("no {what} with id {id}"),
                )),
                Ref::External(e) => by_external.get(e).copied().ok_or_else(|| {
                    let message = match ctx.external_source {
                        Some(source) => {
                            format!("no {what} with external_id '{e}' from source '{source}'")
                        }
                        None => format!("{} needs an external_source", r.field),
                    };
                    RecordError::at(REFERENCE_NOT_FOUND, param, message)
                        .with_hint("load the referenced record first, or earlier in the same batch")
                }),
            }
        })
        .collect::<Result<_, _>>()
        .map_err(HandlerError::from)
}

/// A GL account, by id or by its account number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlRef {
    Id(Uuid),
    Number(String),
}

/// Reads `gl_account_id` or `gl_account_number`: exactly one.
pub(crate) fn parse_gl_ref(f: &Fields<'_>) -> Result<(GlRef, &'static str), RecordError> {
    match (f.has("gl_account_id"), f.has("gl_account_number")) {
        (true, false) => Ok((
            GlRef::Id(f.required_uuid("gl_account_id")?),
            "gl_account_id",
        )),
        (false, true) => Ok((
            GlRef::Number(f.required_string("gl_account_number", 32)?),
            "gl_account_number",
        )),
        (true, true) => Err(RecordError::at(
            INVALID,
            "gl_account_id",
            "give either gl_account_id or gl_account_number, not both",
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

/// Resolves GL references to postable accounts: active leaves of the chart.
pub(crate) async fn resolve_gl(
    conn: &mut PgConnection,
    tenant: Tenant,
    refs: &[(String, &GlRef, &'static str)],
) -> Result<Vec<Uuid>, HandlerError> {
    if refs.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = refs
        .iter()
        .filter_map(|(_, r, _)| match r {
            GlRef::Id(id) => Some(*id),
            GlRef::Number(_) => None,
        })
        .collect();
    let numbers: Vec<&str> = refs
        .iter()
        .filter_map(|(_, r, _)| match r {
            GlRef::Number(n) => Some(n.as_str()),
            GlRef::Id(_) => None,
        })
        .collect();
    let rows: Vec<GlRow> = sqlx::query_as(
        "select id, account_number, is_header, is_active from gl_accounts
         where entity_id = $1 and mode = $2 and (id = any($3) or account_number = any($4))",
    )
    .bind(tenant.entity_id)
    .bind(tenant.mode.as_str())
    .bind(&ids)
    .bind(&numbers)
    .fetch_all(&mut *conn)
    .await?;
    refs.iter()
        .map(|(prefix, r, field)| {
            let param = format!("{prefix}.{field}");
            let row = rows.iter().find(|row| match r {
                GlRef::Id(id) => row.id == *id,
                GlRef::Number(n) => &row.account_number == n,
            });
            let shown = match r {
                GlRef::Id(id) => id.to_string(),
                GlRef::Number(n) => n.clone(),
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
        .collect::<Result<_, _>>()
        .map_err(HandlerError::from)
}
