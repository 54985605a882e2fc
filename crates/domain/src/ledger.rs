//! The general ledger: the standard chart of accounts every entity starts
//! with, closed periods, document numbering, and the reconciliation reports
//! (record counts and the trial balance).

use std::collections::HashMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::view::{Form, Shown, View};
use crate::{Mode, Tenant, new_id};

/// One account of the standard chart: number, name, type, header, parent
/// number, system role.
type ChartLine = (
    &'static str,
    &'static str,
    &'static str,
    bool,
    Option<&'static str>,
    Option<&'static str>,
);

/// The chart every entity starts with, in each mode: a header per account type
/// and postable leaves under it.
const STANDARD_CHART: &[ChartLine] = &[
    ("1000", "Assets", "asset", true, None, None),
    ("1010", "Cash", "asset", false, Some("1000"), Some("cash")),
    (
        "1100",
        "Accounts Receivable",
        "asset",
        false,
        Some("1000"),
        Some("accounts_receivable"),
    ),
    ("1200", "Inventory", "asset", false, Some("1000"), None),
    ("1500", "Fixed Assets", "asset", false, Some("1000"), None),
    ("2000", "Liabilities", "liability", true, None, None),
    (
        "2010",
        "Accounts Payable",
        "liability",
        false,
        Some("2000"),
        Some("accounts_payable"),
    ),
    (
        "2100",
        "Accrued Liabilities",
        "liability",
        false,
        Some("2000"),
        None,
    ),
    (
        "2200",
        "Sales Tax Payable",
        "liability",
        false,
        Some("2000"),
        None,
    ),
    ("3000", "Equity", "equity", true, None, None),
    (
        "3010",
        "Owner's Equity",
        "equity",
        false,
        Some("3000"),
        None,
    ),
    (
        "3100",
        "Retained Earnings",
        "equity",
        false,
        Some("3000"),
        None,
    ),
    (
        "3200",
        "Opening Balance Equity",
        "equity",
        false,
        Some("3000"),
        None,
    ),
    ("4000", "Revenue", "revenue", true, None, None),
    ("4010", "Sales", "revenue", false, Some("4000"), None),
    (
        "4100",
        "Service Revenue",
        "revenue",
        false,
        Some("4000"),
        None,
    ),
    ("5000", "Cost of Goods Sold", "cogs", true, None, None),
    (
        "5010",
        "Cost of Goods Sold",
        "cogs",
        false,
        Some("5000"),
        None,
    ),
    ("6000", "Expenses", "expense", true, None, None),
    ("6010", "Rent", "expense", false, Some("6000"), None),
    ("6020", "Utilities", "expense", false, Some("6000"), None),
    (
        "6030",
        "Office Supplies",
        "expense",
        false,
        Some("6000"),
        None,
    ),
    (
        "6040",
        "Professional Fees",
        "expense",
        false,
        Some("6000"),
        None,
    ),
    ("6100", "Payroll", "expense", false, Some("6000"), None),
];

/// The types of GL account, a header of each in the standard chart.
const ACCOUNT_TYPES: &[&str] = &["asset", "liability", "equity", "revenue", "expense", "cogs"];

/// What a read of a GL account shows.
pub const GL_ACCOUNT_VIEW: View = View::without_provenance(
    "gl_account",
    &[
        Shown::sql("account_number", "r.account_number", Form::Text),
        Shown::sql("name", "r.name", Form::Text),
        Shown::sql("account_type", "r.account_type", Form::Enum(ACCOUNT_TYPES)),
        Shown::sql(
            "normal_balance",
            "r.normal_balance",
            Form::Enum(&["debit", "credit"]),
        ),
        Shown::sql("parent_id", "r.parent_id", Form::Uuid).or_null(),
        Shown::sql("is_header", "r.is_header", Form::Bool)
            .about("Header accounts cannot be posted to."),
        Shown::sql("is_active", "r.is_active", Form::Bool),
    ],
);

fn normal_balance(account_type: &str) -> &'static str {
    match account_type {
        "asset" | "expense" | "cogs" => "debit",
        _ => "credit",
    }
}

/// Creates the standard chart of accounts of an entity in one mode.
pub async fn create_standard_chart(
    conn: &mut PgConnection,
    tenant: Tenant,
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = STANDARD_CHART.iter().map(|_| new_id()).collect();
    let id_of = |number: &str| {
        STANDARD_CHART
            .iter()
            .position(|line| line.0 == number)
            .map(|i| ids[i])
    };
    let numbers: Vec<&str> = STANDARD_CHART.iter().map(|l| l.0).collect();
    let names: Vec<&str> = STANDARD_CHART.iter().map(|l| l.1).collect();
    let types: Vec<&str> = STANDARD_CHART.iter().map(|l| l.2).collect();
    let balances: Vec<&str> = STANDARD_CHART.iter().map(|l| normal_balance(l.2)).collect();
    let headers: Vec<bool> = STANDARD_CHART.iter().map(|l| l.3).collect();
    let parents: Vec<Option<Uuid>> = STANDARD_CHART.iter().map(|l| l.4.and_then(id_of)).collect();
    let roles: Vec<Option<&str>> = STANDARD_CHART.iter().map(|l| l.5).collect();
    sqlx::query(
        "insert into gl_accounts
            (id, entity_id, mode, account_number, name, account_type, normal_balance,
             is_header, parent_id, system_role)
         select c.id, $1, $2, c.number, c.name, c.type, c.balance, c.header, c.parent, c.role
         from unnest($3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bool[],
                     $9::uuid[], $10::text[])
             as c (id, number, name, type, balance, header, parent, role)",
    )
    .bind(tenant.entity_id)
    .bind(tenant.mode.as_str())
    .bind(&ids)
    .bind(&numbers)
    .bind(&names)
    .bind(&types)
    .bind(&balances)
    .bind(&headers)
    .bind(&parents)
    .bind(&roles)
    .execute(conn)
    .await
    .map(drop)
}

/// The next number of a kind of document (`CUST-00042`), taken in the
/// caller's transaction: a rolled-back record gives its number back.
pub async fn next_number(
    conn: &mut PgConnection,
    tenant: Tenant,
    prefix: &str,
) -> Result<String, sqlx::Error> {
    let value: i32 = sqlx::query_scalar(
        "insert into document_sequences (entity_id, mode, kind, last_value)
         values ($1, $2, $3, 1)
         on conflict (entity_id, mode, kind)
             do update set last_value = document_sequences.last_value + 1
         returning last_value",
    )
    .bind(tenant.entity_id)
    .bind(tenant.mode.as_str())
    .bind(prefix)
    .fetch_one(conn)
    .await?;
    Ok(format_number(prefix, value))
}

/// The next numbers of the given kinds, one per entry and in its order, with
/// one statement: each kind's sequence moves on by how many it hands out.
///
/// The sequence rows stay locked until the caller commits. They are locked in
/// the order of their kinds, so two chunks numbering several kinds (sales
/// orders and invoices) queue on each other instead of deadlocking.
pub(crate) async fn allocate_numbers(
    conn: &mut PgConnection,
    tenant: Tenant,
    prefixes: &[&str],
) -> Result<Vec<String>, sqlx::Error> {
    let mut counts: Vec<(&str, i32)> = Vec::new();
    for prefix in prefixes {
        match counts.iter_mut().find(|(p, _)| p == prefix) {
            Some((_, n)) => *n += 1,
            None => counts.push((prefix, 1)),
        }
    }
    counts.sort_unstable();
    let last: HashMap<String, i32> = sqlx::query_as(
        "insert into document_sequences (entity_id, mode, kind, last_value)
         select $1, $2, u.kind, u.n from unnest($3::text[], $4::int4[]) as u (kind, n)
         on conflict (entity_id, mode, kind)
             do update set last_value = document_sequences.last_value + excluded.last_value
         returning kind, last_value",
    )
    .bind(tenant.entity_id)
    .bind(tenant.mode.as_str())
    .bind(counts.iter().map(|c| c.0).collect::<Vec<_>>())
    .bind(counts.iter().map(|c| c.1).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    let mut next: HashMap<&str, i32> = counts
        .iter()
        .map(|(prefix, n)| (*prefix, last[*prefix] - n + 1))
        .collect();
    Ok(prefixes
        .iter()
        .map(|prefix| {
            let value = next.get_mut(prefix).expect("every prefix was counted");
            let number = format_number(prefix, *value);
            *value += 1;
            number
        })
        .collect())
}

/// A document number as shown: `SO-00042`.
pub(crate) fn format_number(prefix: &str, value: i32) -> String {
    format!("{prefix}-{value:05}")
}

/// Closes the books of an entity through a date, in the given modes: entries
/// dated on or before it are refused unless posted with `bypass_period_check`.
/// Closing never moves backwards.
pub async fn close_period(
    pool: &PgPool,
    entity_id: Uuid,
    modes: &[Mode],
    through: NaiveDate,
) -> Result<NaiveDate, sqlx::Error> {
    let mut closed = through;
    for mode in modes {
        closed = sqlx::query_scalar(
            "insert into period_closes (entity_id, mode, closed_through) values ($1, $2, $3)
             on conflict (entity_id, mode) do update
                 set closed_through = greatest(period_closes.closed_through, excluded.closed_through),
                     closed_at = now()
             returning closed_through",
        )
        .bind(entity_id)
        .bind(mode.as_str())
        .bind(through)
        .fetch_one(pool)
        .await?;
    }
    Ok(closed)
}

/// The date through which the tenant's books are closed, if any.
pub async fn closed_through(
    conn: &mut PgConnection,
    tenant: Tenant,
) -> Result<Option<NaiveDate>, sqlx::Error> {
    sqlx::query_scalar(
        "select closed_through from period_closes where entity_id = $1 and mode = $2",
    )
    .bind(tenant.entity_id)
    .bind(tenant.mode.as_str())
    .fetch_optional(conn)
    .await
}

/// Records per resource and source.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SourceCount {
    pub resource: String,
    pub external_source: Option<String>,
    pub count: i64,
}

/// How many records of each resource the tenant holds, per source (records
/// created without provenance, or whose provenance was replaced, count under a
/// null source).
pub async fn counts(pool: &PgPool, tenant: Tenant) -> Result<Vec<SourceCount>, sqlx::Error> {
    sqlx::query_as(
        "select resource, external_source, count(*) as count from (
             select 'accounts' as resource, external_source from accounts
                 where entity_id = $1 and mode = $2
             union all select 'products', external_source from products
                 where entity_id = $1 and mode = $2 and parent_product_id is null
             union all select 'orders', external_source from orders
                 where entity_id = $1 and mode = $2
             union all select 'journal-entries', external_source from journal_entries
                 where entity_id = $1 and mode = $2
             union all select 'vendor-bills', external_source from vendor_bills
                 where entity_id = $1 and mode = $2
             union all select 'ap-payments', external_source from ap_payments
                 where entity_id = $1 and mode = $2
         ) records
         group by resource, external_source
         order by resource, external_source nulls last",
    )
    .bind(tenant.entity_id)
    .bind(tenant.mode.as_str())
    .fetch_all(pool)
    .await
}

/// One line of the trial balance.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TrialBalanceLine {
    pub gl_account_id: Uuid,
    pub account_number: String,
    pub name: String,
    pub account_type: String,
    pub normal_balance: String,
    pub debits: Decimal,
    pub credits: Decimal,
    /// Debits less credits for debit-normal accounts, the reverse otherwise.
    pub balance: Decimal,
}

/// An account's line as the vendor's reconciliation guide shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TrialBalanceRow {
    pub account_id: Uuid,
    pub account_number: String,
    pub account_name: String,
    pub account_type: String,
    pub debit_total: Decimal,
    pub credit_total: Decimal,
    /// Debits less credits, whatever the account's normal side: the rows'
    /// balances add up to the totals' balance, 0 when the books balance.
    pub balance: Decimal,
}

/// The guide's totals: `balance` is 0 when the books balance.
#[derive(Debug, Clone, Serialize)]
pub struct TrialBalanceTotals {
    pub debit_total: Decimal,
    pub credit_total: Decimal,
    pub balance: Decimal,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrialBalance {
    pub rows: Vec<TrialBalanceRow>,
    pub totals: TrialBalanceTotals,
    /// The same accounts in this service's first shape, balance in each
    /// account's normal direction, kept for the clients written against it.
    pub accounts: Vec<TrialBalanceLine>,
    pub total_debits: Decimal,
    pub total_credits: Decimal,
    pub in_balance: bool,
}

/// Debits, credits and balance of every account with postings dated on or
/// before `as_of`, optionally only from records of one source.
pub async fn trial_balance(
    pool: &PgPool,
    tenant: Tenant,
    as_of: NaiveDate,
    external_source: Option<&str>,
) -> Result<TrialBalance, sqlx::Error> {
    let accounts: Vec<TrialBalanceLine> = sqlx::query_as(
        "select g.id as gl_account_id, g.account_number, g.name, g.account_type, g.normal_balance,
                sum(p.debit) as debits, sum(p.credit) as credits,
                case g.normal_balance when 'debit' then sum(p.debit) - sum(p.credit)
                                      else sum(p.credit) - sum(p.debit) end as balance
         from gl_postings p join gl_accounts g on g.id = p.gl_account_id
         where p.entity_id = $1 and p.mode = $2 and p.posting_date <= $3
           and ($4::text is null or p.external_source = $4)
         group by g.id
         order by g.account_number",
    )
    .bind(tenant.entity_id)
    .bind(tenant.mode.as_str())
    .bind(as_of)
    .bind(external_source)
    .fetch_all(pool)
    .await?;
    let accounts: Vec<TrialBalanceLine> = accounts
        .into_iter()
        .map(|line| TrialBalanceLine {
            debits: line.debits.normalize(),
            credits: line.credits.normalize(),
            balance: line.balance.normalize(),
            ..line
        })
        .collect();
    let total_debits: Decimal = accounts.iter().map(|a| a.debits).sum();
    let total_credits: Decimal = accounts.iter().map(|a| a.credits).sum();
    let rows = accounts
        .iter()
        .map(|a| TrialBalanceRow {
            account_id: a.gl_account_id,
            account_number: a.account_number.clone(),
            account_name: a.name.clone(),
            account_type: a.account_type.clone(),
            debit_total: a.debits,
            credit_total: a.credits,
            balance: (a.debits - a.credits).normalize(),
        })
        .collect();
    Ok(TrialBalance {
        rows,
        totals: TrialBalanceTotals {
            debit_total: total_debits.normalize(),
            credit_total: total_credits.normalize(),
            balance: (total_debits - total_credits).normalize(),
        },
        in_balance: total_debits == total_credits,
        accounts,
        total_debits: total_debits.normalize(),
        total_credits: total_credits.normalize(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_serialize_as_exact_json_numbers() {
        let amount = Decimal::from_str_exact("12345678901234.5678").expect("decimal");
        assert_eq!(
            serde_json::to_string(&amount).expect("serializes"),
            "12345678901234.5678"
        );
        let sum = Decimal::new(1, 1) + Decimal::new(2, 1);
        assert_eq!(serde_json::to_string(&sum).expect("serializes"), "0.3");
    }

    #[test]
    fn the_standard_chart_has_a_header_per_type_and_known_parents() {
        for kind in ACCOUNT_TYPES {
            assert!(
                STANDARD_CHART.iter().any(|l| l.2 == *kind && l.3),
                "{kind} header"
            );
        }
        for line in STANDARD_CHART {
            assert!(
                ACCOUNT_TYPES.contains(&line.2),
                "{} is a known type",
                line.0
            );
        }
        for line in STANDARD_CHART.iter().filter(|l| !l.3) {
            let parent = line.4.expect("every leaf has a parent");
            assert!(
                STANDARD_CHART
                    .iter()
                    .any(|l| l.0 == parent && l.3 && l.2 == line.2)
            );
        }
    }
}
