//! Reading records back: each resource (and the chart of accounts) as the API
//! shows it, with amounts, computed totals, assigned numbers, children and
//! provenance. The objects are built by Postgres (`jsonb_build_object`), so a
//! page of orders with their lines is one query.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use sqlx::types::Json;
use uuid::Uuid;

use crate::{Resource, Tenant};

/// What can be listed and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readable {
    Resource(Resource),
    GlAccounts,
}

impl Readable {
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

    /// Whether the rows carry provenance (and can be filtered by it).
    pub fn has_provenance(self) -> bool {
        !matches!(self, Readable::GlAccounts)
    }

    /// Rows that are not records of their own: a variant is shown in its
    /// parent product.
    fn scope(self) -> &'static str {
        match self {
            Readable::Resource(Resource::Products) => "and r.parent_product_id is null",
            _ => "",
        }
    }

    /// The JSON object of a row `r`.
    fn object(self) -> &'static str {
        match self {
            Readable::Resource(Resource::Accounts) => ACCOUNT,
            Readable::Resource(Resource::Products) => PRODUCT,
            Readable::Resource(Resource::Orders) => ORDER,
            Readable::Resource(Resource::JournalEntries) => JOURNAL_ENTRY,
            Readable::Resource(Resource::VendorBills) => VENDOR_BILL,
            Readable::Resource(Resource::ApPayments) => AP_PAYMENT,
            Readable::GlAccounts => GL_ACCOUNT,
        }
    }
}

/// Timestamps as the API shows them: RFC 3339, UTC, to the second.
macro_rules! ts {
    ($col:literal) => {
        concat!(
            "to_char(",
            $col,
            " at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        )
    };
}

/// Provenance and timestamps, common to every record.
macro_rules! record_tail {
    () => {
        concat!(
            "'external_source', r.external_source, 'external_id', r.external_id, ",
            "'created_at', ",
            ts!("r.created_at"),
            ", 'updated_at', ",
            ts!("r.updated_at")
        )
    };
}

const ACCOUNT: &str = concat!(
    "jsonb_build_object('id', r.id, 'object', 'account', 'account_number', r.account_number, ",
    "'name', r.name, 'account_type', r.account_type, 'email', r.email, 'phone', r.phone, ",
    "'credit_limit', trim_scale(r.credit_limit), ",
    "'addresses', coalesce((select jsonb_agg(jsonb_build_object('type', a.address_type, ",
    "'line1', a.line1, 'line2', a.line2, 'city', a.city, 'state', a.state, 'zip', a.zip, ",
    "'country', a.country, 'is_default_billing', a.is_default_billing, ",
    "'is_default_shipping', a.is_default_shipping) order by a.position) ",
    "from account_addresses a where a.account_id = r.id), '[]'::jsonb), ",
    record_tail!(),
    ")"
);

const PRODUCT: &str = concat!(
    "jsonb_build_object('id', r.id, 'object', 'product', 'title', r.title, ",
    "'product_type', r.product_type, 'sku', r.sku, 'description', r.description, ",
    "'list_price', trim_scale(r.list_price), 'cost', trim_scale(r.cost), ",
    "'components', coalesce((select jsonb_agg(jsonb_build_object('product_id', ",
    "c.component_product_id, 'quantity', trim_scale(c.quantity)) order by c.position) ",
    "from product_components c where c.product_id = r.id), '[]'::jsonb), ",
    "'variants', coalesce((select jsonb_agg(jsonb_build_object('id', v.id, 'title', v.title, ",
    "'sku', v.sku, 'product_type', v.product_type) order by v.created_at, v.id) ",
    "from products v where v.parent_product_id = r.id), '[]'::jsonb), ",
    record_tail!(),
    ")"
);

const ORDER: &str = concat!(
    "jsonb_build_object('id', r.id, 'object', 'order', 'order_number', r.order_number, ",
    "'document_type', r.document_type, 'account_id', r.account_id, 'order_date', r.order_date, ",
    "'notes', r.notes, 'subtotal', trim_scale(r.subtotal), ",
    "'order_total', trim_scale(r.order_total), 'balance_due', trim_scale(r.balance_due), ",
    "'line_items', coalesce((select jsonb_agg(jsonb_build_object('product_id', l.product_id, ",
    "'quantity', l.quantity, 'sell_rate', trim_scale(l.sell_rate), ",
    "'line_total', trim_scale(l.line_total)) order by l.position) ",
    "from order_lines l where l.order_id = r.id), '[]'::jsonb), ",
    record_tail!(),
    ")"
);

const JOURNAL_ENTRY: &str = concat!(
    "jsonb_build_object('id', r.id, 'object', 'journal_entry', 'entry_number', r.entry_number, ",
    "'entry_date', r.entry_date, 'description', r.description, ",
    "'bypassed_period_check', r.bypassed_period_check, ",
    "'total_debits', (select trim_scale(sum(l.debit_amount)) from journal_lines l where l.entry_id = r.id), ",
    "'total_credits', (select trim_scale(sum(l.credit_amount)) from journal_lines l where l.entry_id = r.id), ",
    "'lines', coalesce((select jsonb_agg(jsonb_build_object('gl_account_id', l.gl_account_id, ",
    "'gl_account_number', g.account_number, 'debit_amount', trim_scale(l.debit_amount), ",
    "'credit_amount', trim_scale(l.credit_amount), 'description', l.description) ",
    "order by l.position) from journal_lines l join gl_accounts g on g.id = l.gl_account_id ",
    "where l.entry_id = r.id), '[]'::jsonb), ",
    record_tail!(),
    ")"
);

const VENDOR_BILL: &str = concat!(
    "jsonb_build_object('id', r.id, 'object', 'vendor_bill', 'bill_number', r.bill_number, ",
    "'vendor_id', r.vendor_id, 'bill_date', r.bill_date, 'due_date', r.due_date, ",
    "'vendor_invoice_number', r.vendor_invoice_number, 'notes', r.notes, ",
    "'bill_total', trim_scale(r.bill_total), 'amount_paid', trim_scale(r.amount_paid), ",
    "'balance_due', trim_scale(r.balance_due), ",
    "'items', coalesce((select jsonb_agg(jsonb_build_object('description', i.description, ",
    "'quantity', trim_scale(i.quantity), 'unit_cost', trim_scale(i.unit_cost), ",
    "'amount', trim_scale(i.amount), 'product_id', i.product_id, ",
    "'gl_account_id', i.gl_account_id, 'gl_account_number', g.account_number) ",
    "order by i.position) from vendor_bill_items i join gl_accounts g on g.id = i.gl_account_id ",
    "where i.bill_id = r.id), '[]'::jsonb), ",
    record_tail!(),
    ")"
);

const AP_PAYMENT: &str = concat!(
    "jsonb_build_object('id', r.id, 'object', 'ap_payment', 'payment_number', r.payment_number, ",
    "'vendor_id', r.vendor_id, 'payment_date', r.payment_date, 'amount', trim_scale(r.amount), ",
    "'method', r.method, 'reference', r.reference, ",
    "'amount_applied', coalesce((select trim_scale(sum(a.amount)) from ap_payment_applications a ",
    "where a.payment_id = r.id), 0), ",
    "'applications', coalesce((select jsonb_agg(jsonb_build_object('bill_id', a.bill_id, ",
    "'bill_number', b.bill_number, 'amount', trim_scale(a.amount)) order by a.position) ",
    "from ap_payment_applications a join vendor_bills b on b.id = a.bill_id ",
    "where a.payment_id = r.id), '[]'::jsonb), ",
    record_tail!(),
    ")"
);

const GL_ACCOUNT: &str = concat!(
    "jsonb_build_object('id', r.id, 'object', 'gl_account', 'account_number', r.account_number, ",
    "'name', r.name, 'account_type', r.account_type, 'normal_balance', r.normal_balance, ",
    "'parent_id', r.parent_id, 'is_header', r.is_header, 'is_active', r.is_active, ",
    "'created_at', ",
    ts!("r.created_at"),
    ")"
);

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
    pub starting_after: Option<Uuid>,
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
    let cursor: Option<(DateTime<Utc>, Uuid)> = match filter.starting_after {
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
    let rows: Vec<Json<Value>> = sqlx::query_scalar(&format!(
        "select {} from {table} r
         where {filters} and ($5::timestamptz is null or (r.created_at, r.id) < ($5, $6))
         order by r.created_at desc, r.id desc
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
