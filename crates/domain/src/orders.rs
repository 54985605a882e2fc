//! Orders: quotes, sales orders, invoices, returns and purchase orders, with
//! their line items. Totals are computed here (line totals rounded to the
//! cent), and each order gets a number per entity, mode and document type
//! (`SO-00042`, `INV-00007`, `PO-00003`, ...).

use std::collections::HashMap;

use chrono::NaiveDate;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::RecordError;
use crate::fields::{Fields, INVALID, MISSING};
use crate::import::{
    Applied, Canonical, Item, Outcome, Provenance, WriteContext, existing_by_provenance,
};
use crate::refs::{RefField, RefIndex, parse_ref};
use crate::{ConflictMode, Tenant, ledger, new_id};

const DOCUMENT_TYPES: [&str; 5] = [
    "quote",
    "sales_order",
    "invoice",
    "return",
    "purchase_order",
];
const LINES_MAX: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct OrderInput {
    pub document_type: String,
    pub account: RefField,
    pub order_date: NaiveDate,
    pub notes: Option<String>,
    pub line_items: Vec<LineInput>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LineInput {
    pub product: RefField,
    pub quantity: i32,
    /// Absent: the product's list price.
    pub sell_rate: Option<Decimal>,
}

impl OrderInput {
    pub fn parse(record: &Value) -> Result<Self, RecordError> {
        let f = Fields::of(record, "record")?;
        let document_type = f
            .optional_string("document_type", 32)?
            .unwrap_or_else(|| "sales_order".to_owned());
        if !DOCUMENT_TYPES.contains(&document_type.as_str()) {
            return Err(RecordError::at(
                INVALID,
                "document_type",
                format!(
                    "document_type must be one of {}, got '{document_type}'",
                    DOCUMENT_TYPES.join(", ")
                ),
            ));
        }
        let account = parse_ref(&f, "account", true)?.expect("a required reference is present");
        let order_date = f.required_date("order_date")?;
        let notes = f.optional_string("notes", 5000)?;
        let line_items = f.parse_items("line_items", LINES_MAX, |line| {
            Ok(LineInput {
                product: parse_ref(line, "product", true)?
                    .expect("a required reference is present"),
                quantity: line.required_count("quantity")?,
                sell_rate: line.optional_money("sell_rate")?,
            })
        })?;
        if line_items.is_empty() {
            return Err(RecordError::at(
                MISSING,
                "line_items",
                "an order needs at least one line item",
            ));
        }
        Ok(Self {
            document_type,
            account,
            order_date,
            notes,
            line_items,
        })
    }

    fn number_prefix(&self) -> &'static str {
        match self.document_type.as_str() {
            "quote" => "QUO",
            "invoice" => "INV",
            "return" => "RMA",
            "purchase_order" => "PO",
            _ => "SO",
        }
    }
}

/// An order's lines and totals, once its references are resolved.
struct Resolved {
    account_id: Uuid,
    lines: Vec<(Uuid, i32, Decimal, Decimal)>,
    subtotal: Decimal,
    balance_due: Decimal,
}

/// A line's total, rounded to the cent.
pub(crate) fn cents(amount: Decimal) -> Decimal {
    amount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// The order resource: a set-based batch handler.
pub struct Orders;

impl Canonical for Orders {
    type Input = OrderInput;
    const TABLE: &'static str = "orders";

    fn parse(record: &Value) -> Result<OrderInput, RecordError> {
        OrderInput::parse(record)
    }

    async fn apply(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        conflict: ConflictMode,
        items: &[Item<'_, OrderInput>],
    ) -> Result<Vec<Applied>, sqlx::Error> {
        let mut batch = Batch::load(conn, ctx, items).await?;
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            let applied = batch.apply(ctx, conflict, item);
            if let Applied::Collision(_) = applied {
                // Nothing is written: the caller rolls the whole batch back.
                outcomes.push(applied);
                return Ok(outcomes);
            }
            outcomes.push(applied);
        }
        batch.write(conn, ctx.tenant).await?;
        Ok(outcomes)
    }

    fn constraint_error(_: &sqlx::Error) -> Option<RecordError> {
        None
    }
}

/// An order as the batch leaves it.
struct Row<'a> {
    id: Uuid,
    input: &'a OrderInput,
    resolved: Resolved,
    /// Set on new rows only: an update keeps the stored provenance and number.
    provenance: Option<Provenance<'a>>,
    new: bool,
    /// The kind of number a new row takes: its document type when created,
    /// whatever a later record of the batch changes it to.
    numbering: &'static str,
}

/// A batch of orders: what it read, and what its records have done so far.
struct Batch<'a> {
    /// The order each provenance of the batch names now.
    provenance: HashMap<(&'a str, &'a str), Uuid>,
    accounts: RefIndex<String>,
    products: RefIndex<Option<Decimal>>,
    rows: Vec<Row<'a>>,
    row_of: HashMap<Uuid, usize>,
    /// Stored orders whose provenance a replace clears.
    cleared: Vec<Uuid>,
}

impl<'a> Batch<'a> {
    /// Reads what the batch needs: its provenances, its accounts with their
    /// types and its products with their list prices, one query each.
    async fn load(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        items: &'a [Item<'a, OrderInput>],
    ) -> Result<Self, sqlx::Error> {
        let existing = existing_by_provenance(conn, "orders", ctx.tenant, items).await?;
        let provenance = items
            .iter()
            .filter_map(|i| i.provenance)
            .filter_map(|p| {
                let key = (p.source.to_owned(), p.external_id.to_owned());
                existing
                    .get(&key)
                    .map(|id| ((p.source, p.external_id), *id))
            })
            .collect();
        let accounts: Vec<&RefField> = items.iter().map(|i| &i.input.account).collect();
        let accounts = RefIndex::load(conn, ctx, "accounts", "account_type", &accounts).await?;
        let products: Vec<&RefField> = items
            .iter()
            .flat_map(|i| &i.input.line_items)
            .map(|l| &l.product)
            .collect();
        let products = RefIndex::load(conn, ctx, "products", "list_price", &products).await?;
        Ok(Self {
            provenance,
            accounts,
            products,
            rows: Vec::with_capacity(items.len()),
            row_of: HashMap::with_capacity(items.len()),
            cleared: Vec::new(),
        })
    }

    fn apply(
        &mut self,
        ctx: &WriteContext<'_>,
        conflict: ConflictMode,
        item: &'a Item<'a, OrderInput>,
    ) -> Applied {
        let key = item.provenance.map(|p| (p.source, p.external_id));
        let existing = key.and_then(|k| self.provenance.get(&k).copied());
        let resolved = match self.resolve(ctx, &item.input) {
            Ok(resolved) => resolved,
            // Skip and error mode never look at the payload of an existing
            // record; every other path writes it and must have it valid.
            Err(e) => {
                return match (existing, conflict) {
                    (Some(id), ConflictMode::Skip) => Applied::Done(Outcome::Skipped, id),
                    (Some(id), ConflictMode::Error) => Applied::Collision(id),
                    _ => Applied::Failed(e),
                };
            }
        };
        match (existing, conflict) {
            (None, _) => Applied::Done(Outcome::Created, self.create(item, resolved)),
            (Some(id), ConflictMode::Skip) => Applied::Done(Outcome::Skipped, id),
            (Some(id), ConflictMode::Update) => {
                match self.row_of.get(&id) {
                    Some(&row) => {
                        let row = &mut self.rows[row];
                        row.input = &item.input;
                        row.resolved = resolved;
                    }
                    None => {
                        self.row_of.insert(id, self.rows.len());
                        self.rows.push(Row {
                            id,
                            input: &item.input,
                            resolved,
                            provenance: None,
                            new: false,
                            numbering: item.input.number_prefix(),
                        });
                    }
                }
                Applied::Done(Outcome::Updated, id)
            }
            (Some(old), ConflictMode::Replace) => {
                match self.row_of.get(&old) {
                    Some(&row) if self.rows[row].new => self.rows[row].provenance = None,
                    _ => self.cleared.push(old),
                }
                Applied::Done(Outcome::Replaced, self.create(item, resolved))
            }
            (Some(id), ConflictMode::Error) => Applied::Collision(id),
        }
    }

    fn create(&mut self, item: &'a Item<'a, OrderInput>, resolved: Resolved) -> Uuid {
        let id = new_id();
        if let Some(p) = item.provenance {
            self.provenance.insert((p.source, p.external_id), id);
        }
        self.row_of.insert(id, self.rows.len());
        self.rows.push(Row {
            id,
            input: &item.input,
            resolved,
            provenance: item.provenance,
            new: true,
            numbering: item.input.number_prefix(),
        });
        id
    }

    /// Resolves the account and the products and computes the totals: the
    /// first reference that names nothing, in payload order, is the error.
    fn resolve(&self, ctx: &WriteContext<'_>, input: &OrderInput) -> Result<Resolved, RecordError> {
        let (account_id, account_type) =
            self.accounts
                .resolve(ctx, "account", "", &input.account, |_| None)?;
        let wants_vendor = input.document_type == "purchase_order";
        if wants_vendor != (account_type == "vendor") {
            return Err(RecordError::at(
                "invalid_account_type",
                input.account.field.clone(),
                if wants_vendor {
                    format!(
                        "a purchase order is placed with a vendor; this account is {account_type}"
                    )
                } else {
                    format!(
                        "a {} is for a customer; this account is a vendor",
                        input.document_type
                    )
                },
            ));
        }
        let products = input
            .line_items
            .iter()
            .enumerate()
            .map(|(i, line)| {
                self.products.resolve(
                    ctx,
                    "product",
                    &format!("line_items[{i}]"),
                    &line.product,
                    |_| None,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut lines = Vec::with_capacity(input.line_items.len());
        for (i, (line, (product_id, list_price))) in
            input.line_items.iter().zip(products).enumerate()
        {
            let Some(rate) = line.sell_rate.or(list_price) else {
                return Err(RecordError::at(
                    MISSING,
                    format!("line_items[{i}].sell_rate"),
                    "sell_rate is required: the product has no list_price to default to",
                ));
            };
            let total = cents(rate * Decimal::from(line.quantity));
            lines.push((product_id, line.quantity, rate, total));
        }
        let subtotal: Decimal = lines.iter().map(|l| l.3).sum();
        // Quotes and returns owe nothing; the other documents owe their total.
        let balance_due = match input.document_type.as_str() {
            "quote" | "return" => Decimal::ZERO,
            _ => subtotal,
        };
        Ok(Resolved {
            account_id,
            lines,
            subtotal,
            balance_due,
        })
    }

    /// Writes what the batch decided, each kind of change in one statement.
    async fn write(self, conn: &mut PgConnection, tenant: Tenant) -> Result<(), sqlx::Error> {
        if !self.cleared.is_empty() {
            sqlx::query(
                "update orders set external_source = null, external_id = null, updated_at = now()
                 where id = any($1)",
            )
            .bind(&self.cleared)
            .execute(&mut *conn)
            .await?;
        }
        let (new, updated): (Vec<&Row<'_>>, Vec<&Row<'_>>) =
            self.rows.iter().partition(|row| row.new);
        if !updated.is_empty() {
            let ids: Vec<Uuid> = updated.iter().map(|r| r.id).collect();
            sqlx::query(
                "update orders o
                 set document_type = u.document_type, account_id = u.account_id,
                     order_date = u.order_date, notes = u.notes, subtotal = u.subtotal,
                     order_total = u.subtotal, balance_due = u.balance_due, updated_at = now()
                 from unnest($1::uuid[], $2::text[], $3::uuid[], $4::date[], $5::text[],
                             $6::numeric[], $7::numeric[])
                     as u (id, document_type, account_id, order_date, notes, subtotal,
                           balance_due)
                 where o.id = u.id",
            )
            .bind(&ids)
            .bind(columns(&updated, |r| r.input.document_type.as_str()))
            .bind(columns(&updated, |r| r.resolved.account_id))
            .bind(columns(&updated, |r| r.input.order_date))
            .bind(columns(&updated, |r| r.input.notes.as_deref()))
            .bind(columns(&updated, |r| r.resolved.subtotal))
            .bind(columns(&updated, |r| r.resolved.balance_due))
            .execute(&mut *conn)
            .await?;
            // The lines are replaced as one unit.
            sqlx::query("delete from order_lines where order_id = any($1)")
                .bind(&ids)
                .execute(&mut *conn)
                .await?;
        }
        if !new.is_empty() {
            let prefixes: Vec<&str> = new.iter().map(|r| r.numbering).collect();
            let numbers = allocate_numbers(conn, tenant, &prefixes).await?;
            sqlx::query(
                "insert into orders
                    (id, entity_id, mode, order_number, document_type, account_id, order_date,
                     notes, subtotal, order_total, balance_due, external_source, external_id)
                 select u.id, $1, $2, u.order_number, u.document_type, u.account_id,
                        u.order_date, u.notes, u.subtotal, u.subtotal, u.balance_due,
                        u.source, u.external_id
                 from unnest($3::uuid[], $4::text[], $5::text[], $6::uuid[], $7::date[],
                             $8::text[], $9::numeric[], $10::numeric[], $11::text[], $12::text[])
                     as u (id, order_number, document_type, account_id, order_date, notes,
                           subtotal, balance_due, source, external_id)",
            )
            .bind(tenant.entity_id)
            .bind(tenant.mode.as_str())
            .bind(columns(&new, |r| r.id))
            .bind(&numbers)
            .bind(columns(&new, |r| r.input.document_type.as_str()))
            .bind(columns(&new, |r| r.resolved.account_id))
            .bind(columns(&new, |r| r.input.order_date))
            .bind(columns(&new, |r| r.input.notes.as_deref()))
            .bind(columns(&new, |r| r.resolved.subtotal))
            .bind(columns(&new, |r| r.resolved.balance_due))
            .bind(columns(&new, |r| r.provenance.map(|p| p.source)))
            .bind(columns(&new, |r| r.provenance.map(|p| p.external_id)))
            .execute(&mut *conn)
            .await?;
        }
        let lines: Vec<(Uuid, i32, &(Uuid, i32, Decimal, Decimal))> = self
            .rows
            .iter()
            .flat_map(|row| (0..).zip(&row.resolved.lines).map(|(p, l)| (row.id, p, l)))
            .collect();
        if lines.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "insert into order_lines
                (order_id, position, product_id, quantity, sell_rate, line_total)
             select * from unnest($1::uuid[], $2::int4[], $3::uuid[], $4::int4[],
                                  $5::numeric[], $6::numeric[])",
        )
        .bind(lines.iter().map(|l| l.0).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.1).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.2.0).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.2.1).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.2.2).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.2.3).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

/// One column of `rows`, to bind as an array.
fn columns<'r, T>(rows: &[&'r Row<'_>], column: impl Fn(&'r Row<'_>) -> T) -> Vec<T> {
    rows.iter().map(|r| column(r)).collect()
}

/// The next numbers of the given kinds, one per entry and in its order, with
/// one statement: each kind's sequence moves on by how many it hands out.
async fn allocate_numbers(
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
            let number = ledger::format_number(prefix, *value);
            *value += 1;
            number
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_order_needs_lines_with_whole_quantities() {
        let err = OrderInput::parse(&json!({
            "account_external_id": "C-1", "order_date": "2026-01-31", "line_items": []
        }))
        .expect_err("no lines");
        assert_eq!(err.param.as_deref(), Some("line_items"));
        let err = OrderInput::parse(&json!({
            "account_external_id": "C-1", "order_date": "2026-01-31",
            "line_items": [{"product_external_id": "P-1", "quantity": 1.5, "sell_rate": 2}]
        }))
        .expect_err("fractional quantity");
        assert_eq!(err.param.as_deref(), Some("line_items[0].quantity"));
    }

    #[test]
    fn dates_and_references_are_checked() {
        let err = OrderInput::parse(&json!({
            "account_external_id": "C-1", "order_date": "31/01/2026",
            "line_items": [{"product_external_id": "P-1", "quantity": 1}]
        }))
        .expect_err("bad date");
        assert_eq!(err.param.as_deref(), Some("order_date"));
        let err = OrderInput::parse(&json!({
            "order_date": "2026-01-31", "line_items": [{"product_external_id": "P-1", "quantity": 1}]
        }))
        .expect_err("no account");
        assert_eq!(err.code, MISSING);
        assert_eq!(err.param.as_deref(), Some("account_id"));
    }

    #[test]
    fn line_totals_round_to_the_cent() {
        assert_eq!(
            cents(Decimal::new(9999, 4) * Decimal::from(3)),
            Decimal::new(300, 2)
        );
        assert_eq!(cents(Decimal::new(5, 3)), Decimal::new(1, 2));
    }
}
