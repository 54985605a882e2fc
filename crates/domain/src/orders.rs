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

use crate::error::{HandlerError, RecordError};
use crate::fields::{Fields, INVALID, MISSING};
use crate::import::{Canonical, Provenance, WriteContext};
use crate::refs::{self, RefField, parse_ref};
use crate::{ledger, new_id};

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

async fn resolve(
    conn: &mut PgConnection,
    ctx: &WriteContext<'_>,
    input: &OrderInput,
) -> Result<Resolved, HandlerError> {
    let account_id = refs::resolve(
        conn,
        ctx,
        "accounts",
        "account",
        &[(String::new(), &input.account)],
    )
    .await?[0];
    let account_type: String =
        sqlx::query_scalar("select account_type from accounts where id = $1")
            .bind(account_id)
            .fetch_one(&mut *conn)
            .await?;
    let wants_vendor = input.document_type == "purchase_order";
    if wants_vendor != (account_type == "vendor") {
        return Err(RecordError::at(
            "invalid_account_type",
            input.account.field.clone(),
            if wants_vendor {
                format!("a purchase order is placed with a vendor; this account is {account_type}")
            } else {
                format!(
                    "a {} is for a customer; this account is a vendor",
                    input.document_type
                )
            },
        )
        .into());
    }

    let product_refs: Vec<(String, &RefField)> = input
        .line_items
        .iter()
        .enumerate()
        .map(|(i, l)| (format!("line_items[{i}]"), &l.product))
        .collect();
    let product_ids = refs::resolve(conn, ctx, "products", "product", &product_refs).await?;
    let prices: HashMap<Uuid, Option<Decimal>> =
        sqlx::query_as("select id, list_price from products where id = any($1)")
            .bind(&product_ids)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();

    let mut lines = Vec::with_capacity(input.line_items.len());
    for (i, (line, product_id)) in input.line_items.iter().zip(product_ids).enumerate() {
        let rate = match line
            .sell_rate
            .or(prices.get(&product_id).copied().flatten())
        {
            Some(rate) => rate,
            None => {
                return Err(RecordError::at(
                    MISSING,
                    format!("line_items[{i}].sell_rate"),
                    "sell_rate is required: the product has no list_price to default to",
                )
                .into());
            }
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

/// The order resource, as the import loop sees it.
pub struct Orders;

impl Canonical for Orders {
    type Input = OrderInput;
    const TABLE: &'static str = "orders";

    fn parse(record: &Value) -> Result<OrderInput, RecordError> {
        OrderInput::parse(record)
    }

    async fn create(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        provenance: Option<Provenance<'_>>,
        input: &OrderInput,
    ) -> Result<Uuid, HandlerError> {
        let resolved = resolve(conn, ctx, input).await?;
        let id = new_id();
        let number = ledger::next_number(conn, ctx.tenant, input.number_prefix()).await?;
        sqlx::query(
            "insert into orders
                (id, entity_id, mode, order_number, document_type, account_id, order_date, notes,
                 subtotal, order_total, balance_due, external_source, external_id)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11, $12)",
        )
        .bind(id)
        .bind(ctx.tenant.entity_id)
        .bind(ctx.tenant.mode.as_str())
        .bind(&number)
        .bind(&input.document_type)
        .bind(resolved.account_id)
        .bind(input.order_date)
        .bind(&input.notes)
        .bind(resolved.subtotal)
        .bind(resolved.balance_due)
        .bind(provenance.map(|p| p.source))
        .bind(provenance.map(|p| p.external_id))
        .execute(&mut *conn)
        .await?;
        insert_lines(conn, id, &resolved.lines).await?;
        Ok(id)
    }

    async fn update(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        id: Uuid,
        input: &OrderInput,
    ) -> Result<(), HandlerError> {
        let resolved = resolve(conn, ctx, input).await?;
        sqlx::query(
            "update orders
             set document_type = $4, account_id = $5, order_date = $6, notes = $7,
                 subtotal = $8, order_total = $8, balance_due = $9, updated_at = now()
             where id = $1 and entity_id = $2 and mode = $3",
        )
        .bind(id)
        .bind(ctx.tenant.entity_id)
        .bind(ctx.tenant.mode.as_str())
        .bind(&input.document_type)
        .bind(resolved.account_id)
        .bind(input.order_date)
        .bind(&input.notes)
        .bind(resolved.subtotal)
        .bind(resolved.balance_due)
        .execute(&mut *conn)
        .await?;
        // The lines are replaced as one unit.
        sqlx::query("delete from order_lines where order_id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        insert_lines(conn, id, &resolved.lines).await
    }
}

async fn insert_lines(
    conn: &mut PgConnection,
    order_id: Uuid,
    lines: &[(Uuid, i32, Decimal, Decimal)],
) -> Result<(), HandlerError> {
    sqlx::query(
        "insert into order_lines (order_id, position, product_id, quantity, sell_rate, line_total)
         select $1, * from unnest($2::int4[], $3::uuid[], $4::int4[], $5::numeric[], $6::numeric[])",
    )
    .bind(order_id)
    .bind((0..).take(lines.len()).collect::<Vec<i32>>())
    .bind(lines.iter().map(|l| l.0).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.1).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.2).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.3).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
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
