//! Reading records back: each resource (and the chart of accounts) as the API
//! shows it, with amounts, computed totals, assigned numbers, children and
//! provenance. The objects are built by Postgres (`jsonb_build_object`), so a
//! page of orders with their lines is one query; the SQL that builds them is
//! written from each one's view (`domain::view`), which the OpenAPI document
//! is built from too.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use sqlx::types::Json;
use uuid::Uuid;

use crate::view::{Form, Shown, Shows, View};
use crate::{
    Keyset, PageFrom, Resource, Tenant, accounts, journal, ledger, orders, payables, products,
};

/// What can be listed and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readable {
    Resource(Resource),
    GlAccounts,
}

impl Readable {
    fn all() -> impl Iterator<Item = Readable> {
        Resource::ALL
            .into_iter()
            .map(Readable::Resource)
            .chain([Readable::GlAccounts])
    }

    fn table(self) -> &'static str {
        match self {
            Readable::Resource(Resource::Accounts) => "accounts",
            Readable::Resource(Resource::Products) => "products",
            Readable::Resource(Resource::Orders) => "orders",
            Readable::Resource(Resource::JournalEntries) => "journal_entries",
            Readable::Resource(Resource::VendorBills) => "vendor_bills",
            Readable::Resource(Resource::ApPayments) => "ap_payments",
            Readable::GlAccounts => "gl_accounts",
        }
    }

    /// What a read of it shows.
    pub fn view(self) -> &'static View {
        match self {
            Readable::Resource(Resource::Accounts) => &accounts::VIEW,
            Readable::Resource(Resource::Products) => &products::VIEW,
            Readable::Resource(Resource::Orders) => &orders::VIEW,
            Readable::Resource(Resource::JournalEntries) => &journal::VIEW,
            Readable::Resource(Resource::VendorBills) => &payables::BILL_VIEW,
            Readable::Resource(Resource::ApPayments) => &payables::PAYMENT_VIEW,
            Readable::GlAccounts => &ledger::GL_ACCOUNT_VIEW,
        }
    }

    /// Whether the rows carry provenance (and can be filtered by it).
    pub fn has_provenance(self) -> bool {
        self.view().record
    }

    /// Rows that are not records of their own: a variant is shown in its
    /// parent product.
    fn scope(self) -> &'static str {
        match self {
            Readable::Resource(Resource::Products) => "and r.parent_product_id is null",
            _ => "",
        }
    }

    /// The JSON object of a row `r`, built from its view once per process.
    fn object(self) -> &'static str {
        static OBJECTS: LazyLock<Vec<(Readable, String)>> = LazyLock::new(|| {
            Readable::all()
                .map(|what| (what, object_sql(&what.view().properties())))
                .collect()
        });
        OBJECTS
            .iter()
            .find(|(what, _)| *what == self)
            .map(|(_, object)| object.as_str())
            .expect("every readable's object is built")
    }
}

/// A property's SQL, rendered as the API shows it.
fn value_sql(shown: &Shown) -> String {
    match shown.shows {
        Shows::Sql(sql, Form::Decimal) => format!("trim_scale({sql})"),
        // RFC 3339, UTC, to the second.
        Shows::Sql(sql, Form::Timestamp) => {
            format!("to_char({sql} at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")
        }
        Shows::Sql(sql, _) => sql.to_owned(),
        Shows::Const(value) => format!("'{value}'"),
        Shows::Items(items) => format!(
            "coalesce((select jsonb_agg({} order by {}) from {} where {}), '[]'::jsonb)",
            object_sql(items.of),
            items.order_by,
            items.from,
            items.filter
        ),
    }
}

/// The `jsonb_build_object` of `properties` (at most 50: Postgres passes a
/// function at most 100 arguments).
fn object_sql(properties: &[Shown]) -> String {
    let pairs: Vec<String> = properties
        .iter()
        .map(|shown| format!("'{}', {}", shown.name, value_sql(shown)))
        .collect();
    format!("jsonb_build_object({})", pairs.join(", "))
}

/// One record of the tenant, or `None`.
pub async fn get(
    pool: &PgPool,
    tenant: Tenant,
    what: Readable,
    id: Uuid,
) -> Result<Option<Value>, sqlx::Error> {
    // By the primary key alone, the tenant checked outside the fence: without
    // statistics the planner could otherwise read the entity's rows for it
    // (see `import::plan_without_statistics`).
    let row: Option<Json<Value>> = sqlx::query_scalar(&format!(
        "select {} from (select * from {} where id = $1 offset 0) r
         where r.entity_id = $2 and r.mode = $3",
        what.object(),
        what.table()
    ))
    .bind(id)
    .bind(tenant.entity_id)
    .bind(tenant.mode.as_str())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|Json(v)| v))
}

#[derive(Debug, Clone, Default)]
pub struct ReadFilter {
    pub external_source: Option<String>,
    pub external_id: Option<String>,
    pub limit: u32,
    /// The page after or before a record, by its id.
    pub from: Option<PageFrom<Uuid>>,
    pub include_count: bool,
}

#[derive(Debug)]
pub struct ReadPage {
    pub data: Vec<Value>,
    pub has_more: bool,
    /// With `include_count`: every record matching the filters, on all pages.
    pub total_count: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("starting_after names no record of this list")]
    UnknownCursor,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The tenant's records, newest first.
pub async fn list(
    pool: &PgPool,
    tenant: Tenant,
    what: Readable,
    filter: &ReadFilter,
) -> Result<ReadPage, ReadError> {
    let table = what.table();
    let provenance = if what.has_provenance() {
        "and ($3::text is null or r.external_source = $3)
         and ($4::text is null or r.external_id = $4)"
    } else {
        // Nothing to filter on: the caller refuses these filters up front.
        "and $3::text is null and $4::text is null"
    };
    let cursor: Option<(DateTime<Utc>, Uuid)> = match filter.from.map(PageFrom::cursor) {
        None => None,
        Some(id) => Some(
            sqlx::query_as(&format!(
                "select created_at, id from (select * from {table} where id = $1 offset 0) r
                 where r.entity_id = $2 and r.mode = $3 {}",
                what.scope()
            ))
            .bind(id)
            .bind(tenant.entity_id)
            .bind(tenant.mode.as_str())
            .fetch_optional(pool)
            .await?
            .ok_or(ReadError::UnknownCursor)?,
        ),
    };
    let filters = format!(
        "r.entity_id = $1 and r.mode = $2 {} {provenance}",
        what.scope()
    );
    let Keyset {
        cmp,
        order,
        reversed,
    } = Keyset::of(filter.from, true);
    let rows: Vec<Json<Value>> = sqlx::query_scalar(&format!(
        "select {} from {table} r
         where {filters} and ($5::timestamptz is null or (r.created_at, r.id) {cmp} ($5, $6))
         order by r.created_at {order}, r.id {order}
         limit $7",
        what.object()
    ))
    .bind(tenant.entity_id)
    .bind(tenant.mode.as_str())
    .bind(&filter.external_source)
    .bind(&filter.external_id)
    .bind(cursor.map(|c| c.0))
    .bind(cursor.map(|c| c.1))
    .bind(i64::from(filter.limit) + 1)
    .fetch_all(pool)
    .await?;
    let mut data: Vec<Value> = rows.into_iter().map(|Json(v)| v).collect();
    let has_more = data.len() > filter.limit as usize;
    data.truncate(filter.limit as usize);
    if reversed {
        data.reverse();
    }
    let total_count = if filter.include_count {
        Some(
            sqlx::query_scalar(&format!("select count(*) from {table} r where {filters}"))
                .bind(tenant.entity_id)
                .bind(tenant.mode.as_str())
                .bind(&filter.external_source)
                .bind(&filter.external_id)
                .fetch_one(pool)
                .await?,
        )
    } else {
        None
    };
    Ok(ReadPage {
        data,
        has_more,
        total_count,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Every object a view describes, its items' included.
    fn objects(properties: &[Shown], found: &mut Vec<Vec<Shown>>) {
        for shown in properties {
            if let Shows::Items(items) = shown.shows {
                objects(items.of, found);
            }
        }
        found.push(properties.to_vec());
    }

    #[test]
    fn every_view_is_an_object_postgres_can_build() {
        for what in Readable::all() {
            let view = what.view();
            assert!(
                view.object
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_'),
                "{what:?}: the object is an SQL literal"
            );
            let mut found = Vec::new();
            objects(&view.properties(), &mut found);
            for properties in found {
                let names: HashSet<&str> = properties.iter().map(|p| p.name).collect();
                assert_eq!(names.len(), properties.len(), "{what:?}: a name twice");
                assert!(properties.len() <= 50, "{what:?}: too many properties");
            }
        }
    }
}
