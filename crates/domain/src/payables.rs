//! Vendor bills and the AP payments applied to them.
//!
//! A bill belongs to a vendor account; its items post to GL accounts, and its
//! total, amount paid and balance due are computed here. A payment's
//! applications must name bills of the same vendor with that much open
//! balance, and add up to at most the payment. Applying a payment updates the
//! bills in the same transaction, under row locks taken in id order, so two
//! workers paying one bill at once can never take its balance below zero
//! (the table's check constraint stands behind that).

use std::collections::HashMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::ConflictMode;
use crate::error::{HandlerError, RecordError};
use crate::fields::{Fields, INVALID, MISSING};
use crate::import::{
    Applied, Canonical, Item, Provenance, RecordByRecord, WriteContext, record_by_record,
};
use crate::orders::cents;
use crate::refs::{self, GlRef, RefField, parse_gl_ref, parse_ref};
use crate::{ledger, new_id};

const ITEMS_MAX: usize = 1000;
const METHODS: [&str; 6] = ["check", "ach", "wire", "credit_card", "cash", "other"];

/// Resolves a vendor reference and checks that the account is a vendor.
async fn resolve_vendor(
    conn: &mut PgConnection,
    ctx: &WriteContext<'_>,
    vendor: &RefField,
) -> Result<Uuid, HandlerError> {
    let id = refs::resolve(conn, ctx, "accounts", "vendor", &[(String::new(), vendor)]).await?[0];
    let account_type: String =
        sqlx::query_scalar("select account_type from accounts where id = $1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
    if account_type != "vendor" {
        return Err(RecordError::at(
            "account_not_vendor",
            vendor.field.clone(),
            format!("the account is a {account_type} customer, not a vendor"),
        )
        .into());
    }
    Ok(id)
}

#[derive(Debug, Clone, PartialEq)]
pub struct BillInput {
    pub vendor: RefField,
    pub bill_date: NaiveDate,
    pub due_date: Option<NaiveDate>,
    pub vendor_invoice_number: Option<String>,
    pub notes: Option<String>,
    pub items: Vec<BillItemInput>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BillItemInput {
    pub description: Option<String>,
    pub quantity: Decimal,
    pub unit_cost: Option<Decimal>,
    pub amount: Decimal,
    pub product: Option<RefField>,
    pub account: GlRef,
    pub account_field: &'static str,
}

impl BillInput {
    pub fn parse(record: &Value) -> Result<Self, RecordError> {
        let f = Fields::of(record, "record")?;
        let vendor = parse_ref(&f, "vendor", true)?.expect("a required reference is present");
        let bill_date = f.required_date("bill_date")?;
        let due_date = f.optional_date("due_date")?;
        if due_date.is_some_and(|due| due < bill_date) {
            return Err(RecordError::at(
                INVALID,
                "due_date",
                "due_date must not be before bill_date",
            ));
        }
        let vendor_invoice_number = f.optional_string("vendor_invoice_number", 100)?;
        let notes = f.optional_string("notes", 5000)?;
        let items = f.parse_items("items", ITEMS_MAX, parse_item)?;
        if items.is_empty() {
            return Err(RecordError::at(
                MISSING,
                "items",
                "a bill needs at least one item",
            ));
        }
        Ok(Self {
            vendor,
            bill_date,
            due_date,
            vendor_invoice_number,
            notes,
            items,
        })
    }

    fn total(&self) -> Decimal {
        self.items.iter().map(|i| i.amount).sum()
    }
}

fn parse_item(f: &Fields<'_>) -> Result<BillItemInput, RecordError> {
    let quantity = if f.has("quantity") {
        f.required_positive("quantity")?
    } else {
        Decimal::ONE
    };
    let unit_cost = f.optional_money("unit_cost")?;
    let given = f.optional_money("amount")?;
    let amount = match (unit_cost, given) {
        (None, None) => {
            return Err(RecordError::at(
                MISSING,
                "unit_cost",
                "an item needs unit_cost or amount",
            ));
        }
        (Some(cost), None) => cents(cost * quantity),
        (None, Some(amount)) => amount,
        (Some(cost), Some(amount)) if cents(cost * quantity) == amount => amount,
        (Some(cost), Some(amount)) => {
            return Err(RecordError::at(
                "amount_mismatch",
                "amount",
                format!(
                    "amount {amount} is not quantity {quantity} x unit_cost {cost} = {}",
                    cents(cost * quantity)
                ),
            ));
        }
    };
    let (account, account_field) = parse_gl_ref(f)?;
    Ok(BillItemInput {
        description: f.optional_string("description", 1000)?,
        quantity,
        unit_cost,
        amount,
        product: parse_ref(f, "product", false)?,
        account,
        account_field,
    })
}

/// A bill's resolved references: vendor, item GL accounts, item products.
struct ResolvedBill {
    vendor_id: Uuid,
    accounts: Vec<Uuid>,
    products: Vec<Option<Uuid>>,
}

async fn resolve_bill(
    conn: &mut PgConnection,
    ctx: &WriteContext<'_>,
    input: &BillInput,
) -> Result<ResolvedBill, HandlerError> {
    let vendor_id = resolve_vendor(conn, ctx, &input.vendor).await?;
    let gl_refs: Vec<(String, &GlRef, &'static str)> = input
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| (format!("items[{i}]"), &item.account, item.account_field))
        .collect();
    let accounts = refs::resolve_gl(conn, ctx.tenant, &gl_refs).await?;
    let product_refs: Vec<(String, &RefField)> = input
        .items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| item.product.as_ref().map(|p| (format!("items[{i}]"), p)))
        .collect();
    let mut resolved = refs::resolve(conn, ctx, "products", "product", &product_refs)
        .await?
        .into_iter();
    let products = input
        .items
        .iter()
        .map(|item| item.product.as_ref().and_then(|_| resolved.next()))
        .collect();
    Ok(ResolvedBill {
        vendor_id,
        accounts,
        products,
    })
}

/// The vendor-bill resource, as the import loop sees it.
pub struct VendorBills;

impl Canonical for VendorBills {
    type Input = BillInput;
    const TABLE: &'static str = "vendor_bills";

    fn parse(record: &Value) -> Result<BillInput, RecordError> {
        BillInput::parse(record)
    }

    async fn apply(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        conflict: ConflictMode,
        items: &[Item<'_, Self::Input>],
    ) -> Result<Vec<Applied>, sqlx::Error> {
        record_by_record::<Self>(conn, ctx, conflict, items).await
    }

    fn constraint_error(_: &sqlx::Error) -> Option<RecordError> {
        None
    }
}

impl RecordByRecord for VendorBills {
    async fn create(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        provenance: Option<Provenance<'_>>,
        input: &BillInput,
    ) -> Result<Uuid, HandlerError> {
        let resolved = resolve_bill(conn, ctx, input).await?;
        let id = new_id();
        let number = ledger::next_number(conn, ctx.tenant, "BILL").await?;
        sqlx::query(
            "insert into vendor_bills
                (id, entity_id, mode, bill_number, vendor_id, bill_date, due_date,
                 vendor_invoice_number, notes, bill_total, amount_paid, balance_due,
                 external_source, external_id)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $10, $11, $12)",
        )
        .bind(id)
        .bind(ctx.tenant.entity_id)
        .bind(ctx.tenant.mode.as_str())
        .bind(&number)
        .bind(resolved.vendor_id)
        .bind(input.bill_date)
        .bind(input.due_date)
        .bind(&input.vendor_invoice_number)
        .bind(&input.notes)
        .bind(input.total())
        .bind(provenance.map(|p| p.source))
        .bind(provenance.map(|p| p.external_id))
        .execute(&mut *conn)
        .await?;
        insert_items(conn, id, &resolved, &input.items).await?;
        Ok(id)
    }

    async fn update(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        id: Uuid,
        input: &BillInput,
    ) -> Result<(), HandlerError> {
        let resolved = resolve_bill(conn, ctx, input).await?;
        let (amount_paid, paid_vendor): (Decimal, Uuid) = sqlx::query_as(
            "select amount_paid, vendor_id from vendor_bills where id = $1 for update",
        )
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
        let total = input.total();
        if amount_paid > Decimal::ZERO && paid_vendor != resolved.vendor_id {
            return Err(RecordError::at(
                "bill_has_payments",
                input.vendor.field.clone(),
                "the bill has payments applied; its vendor cannot change",
            )
            .into());
        }
        if total < amount_paid {
            return Err(RecordError::at(
                "bill_total_below_amount_paid",
                "items",
                format!(
                    "the new total {} is less than the {} already paid",
                    total.normalize(),
                    amount_paid.normalize()
                ),
            )
            .into());
        }
        sqlx::query(
            "update vendor_bills
             set vendor_id = $4, bill_date = $5, due_date = $6, vendor_invoice_number = $7,
                 notes = $8, bill_total = $9, balance_due = $9 - amount_paid, updated_at = now()
             where id = $1 and entity_id = $2 and mode = $3",
        )
        .bind(id)
        .bind(ctx.tenant.entity_id)
        .bind(ctx.tenant.mode.as_str())
        .bind(resolved.vendor_id)
        .bind(input.bill_date)
        .bind(input.due_date)
        .bind(&input.vendor_invoice_number)
        .bind(&input.notes)
        .bind(total)
        .execute(&mut *conn)
        .await?;
        // The items are replaced as one unit.
        sqlx::query("delete from vendor_bill_items where bill_id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        insert_items(conn, id, &resolved, &input.items).await
    }
}

async fn insert_items(
    conn: &mut PgConnection,
    bill_id: Uuid,
    resolved: &ResolvedBill,
    items: &[BillItemInput],
) -> Result<(), HandlerError> {
    sqlx::query(
        "insert into vendor_bill_items
            (bill_id, position, description, quantity, unit_cost, amount, product_id, gl_account_id)
         select $1, * from unnest($2::int4[], $3::text[], $4::numeric[], $5::numeric[],
                                 $6::numeric[], $7::uuid[], $8::uuid[])",
    )
    .bind(bill_id)
    .bind((0..).take(items.len()).collect::<Vec<i32>>())
    .bind(
        items
            .iter()
            .map(|i| i.description.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(items.iter().map(|i| i.quantity).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.unit_cost).collect::<Vec<_>>())
    .bind(items.iter().map(|i| i.amount).collect::<Vec<_>>())
    .bind(&resolved.products)
    .bind(&resolved.accounts)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq)]
pub struct PaymentInput {
    pub vendor: RefField,
    pub payment_date: NaiveDate,
    pub amount: Decimal,
    pub method: String,
    pub reference: Option<String>,
    pub applications: Vec<ApplicationInput>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApplicationInput {
    pub bill: RefField,
    pub amount: Decimal,
}

impl PaymentInput {
    pub fn parse(record: &Value) -> Result<Self, RecordError> {
        let f = Fields::of(record, "record")?;
        let vendor = parse_ref(&f, "vendor", true)?.expect("a required reference is present");
        let payment_date = f.required_date("payment_date")?;
        let amount = f.required_positive("amount")?;
        let method = f.required_string("method", 32)?;
        if !METHODS.contains(&method.as_str()) {
            return Err(RecordError::at(
                INVALID,
                "method",
                format!(
                    "method must be one of {}, got '{method}'",
                    METHODS.join(", ")
                ),
            ));
        }
        let reference = f.optional_string("reference", 100)?;
        let applications = f.parse_items("applications", ITEMS_MAX, |a| {
            Ok(ApplicationInput {
                bill: parse_ref(a, "bill", true)?.expect("a required reference is present"),
                amount: a.required_positive("amount")?,
            })
        })?;
        let applied: Decimal = applications.iter().map(|a| a.amount).sum();
        if applied > amount {
            return Err(RecordError::at(
                "applications_exceed_amount",
                "applications",
                format!("the applications add up to {applied}, more than the payment's {amount}"),
            ));
        }
        Ok(Self {
            vendor,
            payment_date,
            amount,
            method,
            reference,
            applications,
        })
    }
}

/// Applies a payment's applications to its vendor's bills.
async fn apply(
    conn: &mut PgConnection,
    ctx: &WriteContext<'_>,
    payment_id: Uuid,
    vendor_id: Uuid,
    applications: &[ApplicationInput],
) -> Result<(), HandlerError> {
    if applications.is_empty() {
        return Ok(());
    }
    let refs: Vec<(String, &RefField)> = applications
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("applications[{i}]"), &a.bill))
        .collect();
    let bill_ids = refs::resolve(conn, ctx, "vendor_bills", "vendor bill", &refs).await?;
    // Locked in id order, so payments touching the same bills cannot deadlock
    // each other; a second payment waits and then sees the reduced balance.
    let bills: HashMap<Uuid, (Uuid, Decimal, String)> =
        sqlx::query_as::<_, (Uuid, Uuid, Decimal, String)>(
            "select id, vendor_id, balance_due, bill_number from vendor_bills
         where id = any($1) order by id for update",
        )
        .bind(&bill_ids)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|(id, vendor, balance, number)| (id, (vendor, balance, number)))
        .collect();

    let mut applied: HashMap<Uuid, Decimal> = HashMap::new();
    for (i, (application, bill_id)) in applications.iter().zip(&bill_ids).enumerate() {
        let (bill_vendor, balance, number) = &bills[bill_id];
        if *bill_vendor != vendor_id {
            return Err(RecordError::at(
                "vendor_mismatch",
                format!("applications[{i}].{}", application.bill.field),
                format!("bill {number} belongs to another vendor"),
            )
            .into());
        }
        let total = applied.entry(*bill_id).or_default();
        *total += application.amount;
        if *total > *balance {
            return Err(RecordError::at(
                "amount_exceeds_bill_balance_due",
                format!("applications[{i}].amount"),
                format!(
                    "bill {number} has {} open; the payment applies {} to it",
                    balance.normalize(),
                    total.normalize()
                ),
            )
            .into());
        }
    }
    sqlx::query(
        "insert into ap_payment_applications (payment_id, position, bill_id, amount)
         select $1, * from unnest($2::int4[], $3::uuid[], $4::numeric[])",
    )
    .bind(payment_id)
    .bind((0..).take(applications.len()).collect::<Vec<i32>>())
    .bind(&bill_ids)
    .bind(applications.iter().map(|a| a.amount).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    let (ids, amounts): (Vec<Uuid>, Vec<Decimal>) = applied.into_iter().unzip();
    sqlx::query(
        "update vendor_bills b
         set amount_paid = b.amount_paid + a.amount, balance_due = b.balance_due - a.amount,
             updated_at = now()
         from unnest($1::uuid[], $2::numeric[]) as a (id, amount)
         where b.id = a.id",
    )
    .bind(&ids)
    .bind(&amounts)
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes a payment's applications off its bills, before they are replaced.
async fn unapply(conn: &mut PgConnection, payment_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update vendor_bills b
         set amount_paid = b.amount_paid - a.amount, balance_due = b.balance_due + a.amount,
             updated_at = now()
         from (select bill_id, sum(amount) as amount from ap_payment_applications
               where payment_id = $1 group by bill_id) a
         where b.id = a.bill_id",
    )
    .bind(payment_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query("delete from ap_payment_applications where payment_id = $1")
        .bind(payment_id)
        .execute(conn)
        .await
        .map(drop)
}

/// The AP-payment resource, as the import loop sees it.
pub struct ApPayments;

impl Canonical for ApPayments {
    type Input = PaymentInput;
    const TABLE: &'static str = "ap_payments";

    fn parse(record: &Value) -> Result<PaymentInput, RecordError> {
        PaymentInput::parse(record)
    }

    async fn apply(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        conflict: ConflictMode,
        items: &[Item<'_, Self::Input>],
    ) -> Result<Vec<Applied>, sqlx::Error> {
        record_by_record::<Self>(conn, ctx, conflict, items).await
    }

    fn constraint_error(_: &sqlx::Error) -> Option<RecordError> {
        None
    }
}

impl RecordByRecord for ApPayments {
    async fn create(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        provenance: Option<Provenance<'_>>,
        input: &PaymentInput,
    ) -> Result<Uuid, HandlerError> {
        let vendor_id = resolve_vendor(conn, ctx, &input.vendor).await?;
        let id = new_id();
        let number = ledger::next_number(conn, ctx.tenant, "PAY").await?;
        sqlx::query(
            "insert into ap_payments
                (id, entity_id, mode, payment_number, vendor_id, payment_date, amount, method,
                 reference, external_source, external_id)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(id)
        .bind(ctx.tenant.entity_id)
        .bind(ctx.tenant.mode.as_str())
        .bind(&number)
        .bind(vendor_id)
        .bind(input.payment_date)
        .bind(input.amount)
        .bind(&input.method)
        .bind(&input.reference)
        .bind(provenance.map(|p| p.source))
        .bind(provenance.map(|p| p.external_id))
        .execute(&mut *conn)
        .await?;
        apply(conn, ctx, id, vendor_id, &input.applications).await?;
        Ok(id)
    }

    async fn update(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        id: Uuid,
        input: &PaymentInput,
    ) -> Result<(), HandlerError> {
        let vendor_id = resolve_vendor(conn, ctx, &input.vendor).await?;
        unapply(conn, id).await?;
        sqlx::query(
            "update ap_payments
             set vendor_id = $4, payment_date = $5, amount = $6, method = $7, reference = $8,
                 updated_at = now()
             where id = $1 and entity_id = $2 and mode = $3",
        )
        .bind(id)
        .bind(ctx.tenant.entity_id)
        .bind(ctx.tenant.mode.as_str())
        .bind(vendor_id)
        .bind(input.payment_date)
        .bind(input.amount)
        .bind(&input.method)
        .bind(&input.reference)
        .execute(&mut *conn)
        .await?;
        apply(conn, ctx, id, vendor_id, &input.applications).await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn applications_cannot_exceed_the_payment() {
        let err = PaymentInput::parse(&json!({
            "vendor_external_id": "V-1", "payment_date": "2026-02-01", "amount": 100,
            "method": "ach",
            "applications": [{"bill_external_id": "B-1", "amount": 60},
                             {"bill_external_id": "B-2", "amount": 50}]
        }))
        .expect_err("over-applied");
        assert_eq!(err.code, "applications_exceed_amount");
    }

    #[test]
    fn an_item_is_priced_by_unit_cost_or_amount_consistently() {
        let bill = |item: Value| {
            BillInput::parse(&json!({
                "vendor_external_id": "V-1", "bill_date": "2026-01-10",
                "items": [item]
            }))
        };
        let ok = bill(json!({"quantity": 3, "unit_cost": 0.3333, "gl_account_number": "6010"}))
            .expect("valid");
        assert_eq!(ok.total(), Decimal::new(100, 2));
        let err =
            bill(json!({"quantity": 2, "unit_cost": 5, "amount": 11, "gl_account_number": "6010"}))
                .expect_err("mismatch");
        assert_eq!(err.param.as_deref(), Some("items[0].amount"));
        let err = bill(json!({"quantity": 2, "gl_account_number": "6010"})).expect_err("no price");
        assert_eq!(err.param.as_deref(), Some("items[0].unit_cost"));
    }

    #[test]
    fn a_due_date_before_the_bill_is_refused() {
        let err = BillInput::parse(&json!({
            "vendor_external_id": "V-1", "bill_date": "2026-01-10", "due_date": "2026-01-09",
            "items": [{"amount": 5, "gl_account_number": "6010"}]
        }))
        .expect_err("due before billed");
        assert_eq!(err.param.as_deref(), Some("due_date"));
    }
}
