//! Vendor bills and the AP payments applied to them.
//!
//! A bill belongs to a vendor account; its items post to GL accounts, and its
//! total, amount paid and balance due are computed here. A payment's
//! applications must name bills of the same vendor with that much open
//! balance, and add up to at most the payment. Applying a payment updates the
//! bills in the same transaction, under row locks taken in id order, so two
//! workers paying one bill at once can never take its balance below zero
//! (the table's check constraint stands behind that).
//!
//! Bills have a set-based batch handler: they meet each other only through
//! their provenance. Payments are still applied record by record, each in its
//! own savepoint: a payment meets the balances the payments before it left.

use std::collections::HashMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::accounts::vendor_of;
use crate::canonical::{
    Applied, Canonical, Item, Provenance, RecordByRecord, WriteContext, record_by_record,
};
use crate::error::{HandlerError, RecordError};
use crate::fields::{Fields, INVALID, MISSING};
use crate::named::{Named, named_enum};
use crate::orders::cents;
use crate::plan::{Plan, Settled, column, decide_in_order};
use crate::refs::{self, GlIndex, GlRef, RefField, RefIndex, parse_gl_ref, parse_ref};
use crate::spec::{Field, Kind};
use crate::view::{Form, Items, Shown, View};
use crate::{ConflictMode, Tenant, ledger, new_id};

const ITEMS_MAX: usize = 1000;

const VENDOR: Field = Field::required("vendor", Kind::Reference, "The vendor account.");
const BILL_DATE: Field = Field::required("bill_date", Kind::Date, "Bill date.");
const DUE_DATE: Field = Field::optional("due_date", Kind::Date, "Not before bill_date.");
const VENDOR_INVOICE_NUMBER: Field =
    Field::optional("vendor_invoice_number", Kind::Text { max: 100 }, "");
const NOTES: Field = Field::optional("notes", Kind::Text { max: 5000 }, "");
const ITEM_DESCRIPTION: Field = Field::optional("description", Kind::Text { max: 1000 }, "");
const ITEM_QUANTITY: Field = Field::optional("quantity", Kind::Positive, "Default 1.");
const UNIT_COST: Field = Field::optional(
    "unit_cost",
    Kind::Money,
    "unit_cost or amount; both must agree.",
);
const ITEM_AMOUNT: Field = Field::optional(
    "amount",
    Kind::Money,
    "unit_cost or amount; both must agree.",
);
// The vendor's create-a-vendor-bill page sends it without saying its unit;
// a percentage is what accounting exports write (8.25 for 8.25%).
const TAX_RATE: Field = Field::optional(
    "tax_rate",
    Kind::Percent,
    "A percentage of amount (8.25 is 8.25%): the item's tax, rounded to the cent, is added to the bill's total and debited with the item.",
);
const ITEM_PRODUCT: Field = Field::optional("product", Kind::Reference, "The product, if any.");
const ITEM_GL_ACCOUNT: Field = Field::required(
    "gl_account",
    Kind::GlAccount,
    "The GL account it is expensed to.",
);
const ITEMS: Field = Field::required(
    "items",
    Kind::Items {
        min: 1,
        max: ITEMS_MAX,
        of: &[
            ITEM_DESCRIPTION,
            ITEM_QUANTITY,
            UNIT_COST,
            ITEM_AMOUNT,
            TAX_RATE,
            ITEM_PRODUCT,
            ITEM_GL_ACCOUNT,
        ],
    },
    "Replaced as one unit on update.",
);

/// The fields of a vendor bill record.
pub const BILL_FIELDS: &[Field] = &[
    VENDOR,
    BILL_DATE,
    DUE_DATE,
    VENDOR_INVOICE_NUMBER,
    NOTES,
    ITEMS,
];

/// What a read of a vendor bill shows.
pub const BILL_VIEW: View = View::record(
    "vendor_bill",
    &[
        Shown::sql("bill_number", "r.bill_number", Form::Text).about("Assigned: BILL-00001."),
        Shown::sql("vendor_id", "r.vendor_id", Form::Uuid),
        Shown::sql("bill_date", "r.bill_date", Form::Date),
        Shown::sql("due_date", "r.due_date", Form::Date).or_null(),
        Shown::sql(
            "vendor_invoice_number",
            "r.vendor_invoice_number",
            Form::Text,
        )
        .or_null(),
        Shown::sql("notes", "r.notes", Form::Text).or_null(),
        Shown::sql("subtotal", "r.subtotal", Form::Decimal).about("Computed: the items' amounts."),
        Shown::sql("tax_total", "r.tax_total", Form::Decimal).about("Computed: the items' tax."),
        Shown::sql("bill_total", "r.bill_total", Form::Decimal)
            .about("Computed: subtotal and tax_total."),
        Shown::sql("amount_paid", "r.amount_paid", Form::Decimal).about("Computed."),
        Shown::sql("balance_due", "r.balance_due", Form::Decimal).about("Computed."),
        Shown::items(
            "items",
            Items {
                from: "vendor_bill_items i join gl_accounts g on g.id = i.gl_account_id",
                filter: "i.bill_id = r.id",
                order_by: "i.position",
                of: &[
                    Shown::sql("description", "i.description", Form::Text).or_null(),
                    Shown::sql("quantity", "i.quantity", Form::Decimal),
                    Shown::sql("unit_cost", "i.unit_cost", Form::Decimal).or_null(),
                    Shown::sql("amount", "i.amount", Form::Decimal),
                    Shown::sql("tax_rate", "i.tax_rate", Form::Decimal).or_null(),
                    Shown::sql("tax_amount", "i.tax_amount", Form::Decimal).about("Computed."),
                    Shown::sql("product_id", "i.product_id", Form::Uuid).or_null(),
                    Shown::sql("gl_account_id", "i.gl_account_id", Form::Uuid),
                    Shown::sql("gl_account_number", "g.account_number", Form::Text),
                ],
            },
        )
        .about("In order."),
    ],
);

const PAYMENT_DATE: Field = Field::required("payment_date", Kind::Date, "Payment date.");
const AMOUNT: Field = Field::required("amount", Kind::Positive, "");
const METHOD: Field = Field::required(
    "method",
    Kind::Enum(PaymentMethod::NAMES),
    "Payment method.",
);
const REFERENCE: Field = Field::optional("reference", Kind::Text { max: 100 }, "");
const BILL: Field = Field::required(
    "bill",
    Kind::Reference,
    "A bill of the same vendor, with that much open.",
);
const APPLICATIONS: Field = Field::optional(
    "applications",
    Kind::Items {
        min: 0,
        max: ITEMS_MAX,
        of: &[BILL, AMOUNT],
    },
    "Adding up to at most amount; or, for one bill, bill_id.",
);
// The vendor's pages pay one bill by naming it on the payment.
const PAYMENT_BILL: Field = Field::optional(
    "bill",
    Kind::Reference,
    "The one bill the whole amount pays (instead of applications): of the same vendor, with that much open.",
);

/// The fields of an AP payment record.
pub const PAYMENT_FIELDS: &[Field] = &[
    VENDOR,
    PAYMENT_DATE,
    AMOUNT,
    METHOD,
    REFERENCE,
    PAYMENT_BILL,
    APPLICATIONS,
];

/// What a read of an AP payment shows.
pub const PAYMENT_VIEW: View = View::record(
    "ap_payment",
    &[
        Shown::sql("payment_number", "r.payment_number", Form::Text).about("Assigned: PAY-00001."),
        Shown::sql("vendor_id", "r.vendor_id", Form::Uuid),
        Shown::sql("payment_date", "r.payment_date", Form::Date),
        Shown::sql("amount", "r.amount", Form::Decimal),
        Shown::sql("method", "r.method", Form::Enum(PaymentMethod::NAMES)),
        Shown::sql("reference", "r.reference", Form::Text).or_null(),
        Shown::sql(
            "amount_applied",
            "coalesce((select sum(a.amount) from ap_payment_applications a \
             where a.payment_id = r.id), 0)",
            Form::Decimal,
        )
        .about("Computed."),
        Shown::items(
            "applications",
            Items {
                from: "ap_payment_applications a join vendor_bills b on b.id = a.bill_id",
                filter: "a.payment_id = r.id",
                order_by: "a.position",
                of: &[
                    Shown::sql("bill_id", "a.bill_id", Form::Uuid),
                    Shown::sql("bill_number", "b.bill_number", Form::Text),
                    Shown::sql("amount", "a.amount", Form::Decimal),
                ],
            },
        )
        .about("In order."),
    ],
);

named_enum! {
    pub enum PaymentMethod {
        Check = "check",
        Ach = "ach",
        Wire = "wire",
        CreditCard = "credit_card",
        Cash = "cash",
        Other = "other",
    }
}

/// Resolves a vendor reference and checks that the account is a vendor.
async fn resolve_vendor(
    conn: &mut PgConnection,
    ctx: &WriteContext<'_>,
    vendor: &RefField,
) -> Result<Uuid, HandlerError> {
    let vendors = RefIndex::load(conn, ctx, "accounts", "account_type", &[vendor]).await?;
    Ok(vendor_of(ctx, &vendors, "", vendor)?)
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
    /// A percentage of `amount`.
    pub tax_rate: Option<Decimal>,
    /// `amount` times `tax_rate`, rounded to the cent.
    pub tax_amount: Decimal,
    pub product: Option<RefField>,
    pub account: GlRef,
    pub account_field: &'static str,
}

impl BillInput {
    pub fn parse(record: &Value) -> Result<Self, RecordError> {
        let f = Fields::record(record, BILL_FIELDS)?;
        let vendor = parse_ref(&f, &VENDOR)?.expect("a required reference is present");
        let bill_date = f.required_date(&BILL_DATE)?;
        let due_date = f.optional_date(&DUE_DATE)?;
        if due_date.is_some_and(|due| due < bill_date) {
            return Err(RecordError::at(
                INVALID,
                "due_date",
                "due_date must not be before bill_date",
            ));
        }
        let vendor_invoice_number = f.optional_string(&VENDOR_INVOICE_NUMBER)?;
        let notes = f.optional_string(&NOTES)?;
        let items = f.parse_items(&ITEMS, parse_item)?;
        Ok(Self {
            vendor,
            bill_date,
            due_date,
            vendor_invoice_number,
            notes,
            items,
        })
    }

    fn subtotal(&self) -> Decimal {
        self.items.iter().map(|i| i.amount).sum()
    }

    fn tax_total(&self) -> Decimal {
        self.items.iter().map(|i| i.tax_amount).sum()
    }

    fn total(&self) -> Decimal {
        self.subtotal() + self.tax_total()
    }
}

fn parse_item(f: &Fields<'_>) -> Result<BillItemInput, RecordError> {
    let quantity = f.optional_positive(&ITEM_QUANTITY)?.unwrap_or(Decimal::ONE);
    let unit_cost = f.optional_money(&UNIT_COST)?;
    let given = f.optional_money(&ITEM_AMOUNT)?;
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
    let tax_rate = f.optional_percent(&TAX_RATE)?;
    let tax_amount = tax_rate.map_or(Decimal::ZERO, |rate| {
        cents(amount * rate / Decimal::ONE_HUNDRED)
    });
    let (account, account_field) = parse_gl_ref(f, &ITEM_GL_ACCOUNT)?;
    Ok(BillItemInput {
        description: f.optional_string(&ITEM_DESCRIPTION)?,
        quantity,
        unit_cost,
        amount,
        tax_rate,
        tax_amount,
        product: parse_ref(f, &ITEM_PRODUCT)?,
        account,
        account_field,
    })
}

/// The vendor-bill resource: a set-based batch handler.
pub struct VendorBills;

impl Canonical for VendorBills {
    type Input = BillInput;
    const TABLE: &'static str = "vendor_bills";
    const FIELDS: &'static [Field] = BILL_FIELDS;

    fn parse(record: &Value) -> Result<BillInput, RecordError> {
        BillInput::parse(record)
    }

    async fn apply(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        conflict: ConflictMode,
        items: &[Item<'_, BillInput>],
    ) -> Result<Vec<Applied>, sqlx::Error> {
        let mut batch = Bills::load(conn, ctx, conflict, items).await?;
        let (outcomes, write) = decide_in_order(items, |item| batch.apply(ctx, conflict, item));
        if write {
            batch.write(conn, ctx.tenant).await?;
        }
        Ok(outcomes)
    }

    fn constraint_error(_: &sqlx::Error) -> Option<RecordError> {
        None
    }
}

/// A bill's resolved references: vendor, item GL accounts, item products.
struct ResolvedBill {
    vendor_id: Uuid,
    accounts: Vec<Uuid>,
    products: Vec<Option<Uuid>>,
}

/// A batch of vendor bills: what it read, and what its records have done so
/// far. Bills meet each other only through their provenance: the vendors,
/// products and chart they name, and what was paid on them, do not change
/// while they are written.
struct Bills<'a> {
    plan: Plan<'a, BillInput, ResolvedBill>,
    vendors: RefIndex<String>,
    accounts: GlIndex,
    products: RefIndex<bool>,
    /// What was paid on the stored bills an update may change, and to which
    /// vendor. A bill created by the batch has no payments.
    paid: HashMap<Uuid, (Decimal, Uuid)>,
}

impl<'a> Bills<'a> {
    /// Reads what the batch needs: its provenances, its vendors with their
    /// account types, the GL accounts and products of its items, and in
    /// update mode what was paid on its stored bills, one query each.
    async fn load(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        conflict: ConflictMode,
        items: &'a [Item<'a, BillInput>],
    ) -> Result<Self, sqlx::Error> {
        let plan = Plan::load(conn, "vendor_bills", ctx.tenant, items).await?;
        let vendors: Vec<&RefField> = items.iter().map(|i| &i.input.vendor).collect();
        let vendors = RefIndex::load(conn, ctx, "accounts", "account_type", &vendors).await?;
        let bill_items = || items.iter().flat_map(|i| &i.input.items);
        let accounts = GlIndex::load(conn, ctx.tenant, bill_items().map(|i| &i.account)).await?;
        let products: Vec<&RefField> = bill_items().filter_map(|i| i.product.as_ref()).collect();
        let products = RefIndex::load(conn, ctx, "products", "true", &products).await?;
        let stored = plan.stored();
        let paid = if conflict == ConflictMode::Update && !stored.is_empty() {
            // Already locked by the provenance look-up.
            sqlx::query_as::<_, (Uuid, Decimal, Uuid)>(
                "select id, amount_paid, vendor_id from vendor_bills where id = any($1)",
            )
            .bind(&stored)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|(id, amount_paid, vendor_id)| (id, (amount_paid, vendor_id)))
            .collect()
        } else {
            HashMap::new()
        };
        Ok(Self {
            plan,
            vendors,
            accounts,
            products,
            paid,
        })
    }

    fn apply(
        &mut self,
        ctx: &WriteContext<'_>,
        conflict: ConflictMode,
        item: &'a Item<'a, BillInput>,
    ) -> Applied {
        let Self {
            plan,
            vendors,
            accounts,
            products,
            paid,
        } = self;
        plan.decide_on_row(conflict, item, |input, updated| {
            let resolved = resolve_bill(ctx, vendors, accounts, products, input)?;
            if let Some(&(amount_paid, paid_vendor)) = updated.and_then(|id| paid.get(&id)) {
                check_payments(input, &resolved, amount_paid, paid_vendor)?;
            }
            Ok(resolved)
        })
    }

    /// Writes what the batch decided, each kind of change in one statement.
    async fn write(self, conn: &mut PgConnection, tenant: Tenant) -> Result<(), sqlx::Error> {
        let Settled { new, updated } = self.plan.settle(conn).await?;
        if !updated.is_empty() {
            let ids = column(&updated, |r| r.id);
            sqlx::query(
                "update vendor_bills b
                 set vendor_id = u.vendor_id, bill_date = u.bill_date, due_date = u.due_date,
                     vendor_invoice_number = u.vendor_invoice_number, notes = u.notes,
                     subtotal = u.subtotal, tax_total = u.tax_total,
                     bill_total = u.subtotal + u.tax_total,
                     balance_due = u.subtotal + u.tax_total - b.amount_paid,
                     updated_at = now()
                 from unnest($1::uuid[], $2::uuid[], $3::date[], $4::date[], $5::text[],
                             $6::text[], $7::numeric[], $8::numeric[])
                     as u (id, vendor_id, bill_date, due_date, vendor_invoice_number, notes,
                           subtotal, tax_total)
                 where b.id = u.id and b.id = any($1)",
            )
            .bind(&ids)
            .bind(column(&updated, |r| r.derived.vendor_id))
            .bind(column(&updated, |r| r.input.bill_date))
            .bind(column(&updated, |r| r.input.due_date))
            .bind(column(&updated, |r| {
                r.input.vendor_invoice_number.as_deref()
            }))
            .bind(column(&updated, |r| r.input.notes.as_deref()))
            .bind(column(&updated, |r| r.input.subtotal()))
            .bind(column(&updated, |r| r.input.tax_total()))
            .execute(&mut *conn)
            .await?;
            // The items are replaced as one unit.
            sqlx::query("delete from vendor_bill_items where bill_id = any($1)")
                .bind(&ids)
                .execute(&mut *conn)
                .await?;
        }
        if !new.is_empty() {
            let numbers = ledger::allocate_numbers(conn, tenant, &vec!["BILL"; new.len()]).await?;
            sqlx::query(
                "insert into vendor_bills
                    (id, entity_id, mode, bill_number, vendor_id, bill_date, due_date,
                     vendor_invoice_number, notes, subtotal, tax_total, bill_total, amount_paid,
                     balance_due, external_source, external_id)
                 select u.id, $1, $2, u.bill_number, u.vendor_id, u.bill_date, u.due_date,
                        u.vendor_invoice_number, u.notes, u.subtotal, u.tax_total,
                        u.subtotal + u.tax_total, 0, u.subtotal + u.tax_total,
                        u.source, u.external_id
                 from unnest($3::uuid[], $4::text[], $5::uuid[], $6::date[], $7::date[],
                             $8::text[], $9::text[], $10::numeric[], $11::numeric[], $12::text[],
                             $13::text[])
                     as u (id, bill_number, vendor_id, bill_date, due_date,
                           vendor_invoice_number, notes, subtotal, tax_total, source,
                           external_id)",
            )
            .bind(tenant.entity_id)
            .bind(tenant.mode.as_str())
            .bind(column(&new, |r| r.id))
            .bind(&numbers)
            .bind(column(&new, |r| r.derived.vendor_id))
            .bind(column(&new, |r| r.input.bill_date))
            .bind(column(&new, |r| r.input.due_date))
            .bind(column(&new, |r| r.input.vendor_invoice_number.as_deref()))
            .bind(column(&new, |r| r.input.notes.as_deref()))
            .bind(column(&new, |r| r.input.subtotal()))
            .bind(column(&new, |r| r.input.tax_total()))
            .bind(column(&new, |r| r.provenance.map(|p| p.source)))
            .bind(column(&new, |r| r.provenance.map(|p| p.external_id)))
            .execute(&mut *conn)
            .await?;
        }
        let items: Vec<(Uuid, i32, &BillItemInput, Uuid, Option<Uuid>)> = new
            .iter()
            .chain(&updated)
            .flat_map(|row| {
                let resolved = &row.derived;
                let items = row.input.items.iter().zip(&resolved.accounts);
                (0..)
                    .zip(items.zip(&resolved.products))
                    .map(|(p, ((item, account), product))| (row.id, p, item, *account, *product))
            })
            .collect();
        if items.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "insert into vendor_bill_items
                (bill_id, position, description, quantity, unit_cost, amount, tax_rate,
                 tax_amount, product_id, gl_account_id)
             select * from unnest($1::uuid[], $2::int4[], $3::text[], $4::numeric[],
                                  $5::numeric[], $6::numeric[], $7::numeric[], $8::numeric[],
                                  $9::uuid[], $10::uuid[])",
        )
        .bind(column(&items, |i| i.0))
        .bind(column(&items, |i| i.1))
        .bind(column(&items, |i| i.2.description.as_deref()))
        .bind(column(&items, |i| i.2.quantity))
        .bind(column(&items, |i| i.2.unit_cost))
        .bind(column(&items, |i| i.2.amount))
        .bind(column(&items, |i| i.2.tax_rate))
        .bind(column(&items, |i| i.2.tax_amount))
        .bind(column(&items, |i| i.4))
        .bind(column(&items, |i| i.3))
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// Resolves a bill's references: the vendor, then the items' GL accounts,
/// then their products; the first that fails is the error.
fn resolve_bill(
    ctx: &WriteContext<'_>,
    vendors: &RefIndex<String>,
    accounts: &GlIndex,
    products: &RefIndex<bool>,
    input: &BillInput,
) -> Result<ResolvedBill, RecordError> {
    let vendor_id = vendor_of(ctx, vendors, "", &input.vendor)?;
    let lines = input.items.iter().map(|i| (&i.account, i.account_field));
    let accounts = accounts.postable("items", lines)?;
    let products = input
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.product
                .as_ref()
                .map(|p| {
                    let prefix = format!("items[{i}]");
                    products.resolve(ctx, "product", &prefix, p, |_| None)
                })
                .transpose()
                .map(|found| found.map(|(id, _)| id))
        })
        .collect::<Result<_, _>>()?;
    Ok(ResolvedBill {
        vendor_id,
        accounts,
        products,
    })
}

/// What was paid on a bill binds its update: the vendor stays, and the total
/// covers the payments. A bill's payments are not changed by a batch of bills,
/// and a paid bill's vendor never changes, so what was stored before the batch
/// is what every update of the batch meets.
fn check_payments(
    input: &BillInput,
    resolved: &ResolvedBill,
    amount_paid: Decimal,
    paid_vendor: Uuid,
) -> Result<(), RecordError> {
    if amount_paid > Decimal::ZERO && paid_vendor != resolved.vendor_id {
        return Err(RecordError::at(
            "bill_has_payments",
            input.vendor.field.clone(),
            "the bill has payments applied; its vendor cannot change",
        )
        .conflicting());
    }
    let total = input.total();
    if total < amount_paid {
        return Err(RecordError::at(
            "bill_total_below_amount_paid",
            "items",
            format!(
                "the new total {} is less than the {} already paid",
                total.normalize(),
                amount_paid.normalize()
            ),
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq)]
pub struct PaymentInput {
    pub vendor: RefField,
    pub payment_date: NaiveDate,
    pub amount: Decimal,
    pub method: PaymentMethod,
    pub reference: Option<String>,
    pub applications: Vec<ApplicationInput>,
    /// The applications are the one the payment's own `bill` field makes:
    /// their errors name that field, not `applications[0]`.
    pub pays_one_bill: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApplicationInput {
    pub bill: RefField,
    pub amount: Decimal,
}

impl PaymentInput {
    pub fn parse(record: &Value) -> Result<Self, RecordError> {
        let f = Fields::record(record, PAYMENT_FIELDS)?;
        let vendor = parse_ref(&f, &VENDOR)?.expect("a required reference is present");
        let payment_date = f.required_date(&PAYMENT_DATE)?;
        let amount = f.required_positive(&AMOUNT)?;
        let method = f.required_enum(&METHOD)?;
        let reference = f.optional_string(&REFERENCE)?;
        let bill = parse_ref(&f, &PAYMENT_BILL)?;
        let applications = f.parse_items(&APPLICATIONS, |a| {
            Ok(ApplicationInput {
                bill: parse_ref(a, &BILL)?.expect("a required reference is present"),
                amount: a.required_positive(&AMOUNT)?,
            })
        })?;
        let pays_one_bill = bill.is_some();
        let applications = match bill {
            None => applications,
            Some(bill) if applications.is_empty() => vec![ApplicationInput { bill, amount }],
            Some(bill) => {
                return Err(RecordError::at(
                    INVALID,
                    bill.field.clone(),
                    format!(
                        "give {} for one bill or applications for several, not both",
                        bill.field
                    ),
                ));
            }
        };
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
            pays_one_bill,
        })
    }

    /// Where application `i` is in the record: `applications[i]`, or the
    /// payment itself (the empty path) when it pays one bill.
    fn application_at(&self, i: usize) -> String {
        if self.pays_one_bill {
            String::new()
        } else {
            format!("applications[{i}]")
        }
    }

    /// Where a field of application `i` is in the record.
    fn application_path(&self, i: usize, field: &str) -> String {
        match self.application_at(i) {
            at if at.is_empty() => field.to_owned(),
            at => format!("{at}.{field}"),
        }
    }
}

/// Applies a payment's applications to its vendor's bills.
async fn apply(
    conn: &mut PgConnection,
    ctx: &WriteContext<'_>,
    payment_id: Uuid,
    vendor_id: Uuid,
    payment: &PaymentInput,
) -> Result<(), HandlerError> {
    let applications = &payment.applications;
    if applications.is_empty() {
        return Ok(());
    }
    let refs: Vec<(String, &RefField)> = applications
        .iter()
        .enumerate()
        .map(|(i, a)| (payment.application_at(i), &a.bill))
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
                payment.application_path(i, &application.bill.field),
                format!("bill {number} belongs to another vendor"),
            )
            .into());
        }
        let total = applied.entry(*bill_id).or_default();
        *total += application.amount;
        if *total > *balance {
            return Err(RecordError::at(
                "amount_exceeds_bill_balance_due",
                payment.application_path(i, "amount"),
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
    pay_bills(conn, &ids, &amounts).await?;
    Ok(())
}

/// Takes a payment's applications off its bills, before they are replaced.
async fn unapply(conn: &mut PgConnection, payment_id: Uuid) -> Result<(), sqlx::Error> {
    let applied: Vec<(Uuid, Decimal)> = sqlx::query_as(
        "select bill_id, sum(amount) from ap_payment_applications
         where payment_id = $1 group by bill_id order by bill_id",
    )
    .bind(payment_id)
    .fetch_all(&mut *conn)
    .await?;
    let (ids, amounts): (Vec<Uuid>, Vec<Decimal>) = applied
        .into_iter()
        .map(|(id, amount)| (id, -amount))
        .unzip();
    pay_bills(conn, &ids, &amounts).await?;
    sqlx::query("delete from ap_payment_applications where payment_id = $1")
        .bind(payment_id)
        .execute(conn)
        .await
        .map(drop)
}

/// Moves `amounts` (negative to take a payment back) from the balance due to
/// the amount paid of the bills `ids`.
async fn pay_bills(
    conn: &mut PgConnection,
    ids: &[Uuid],
    amounts: &[Decimal],
) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "update vendor_bills b
         set amount_paid = b.amount_paid + a.amount, balance_due = b.balance_due - a.amount,
             updated_at = now()
         from unnest($1::uuid[], $2::numeric[]) as a (id, amount)
         where b.id = a.id and b.id = any($1)",
    )
    .bind(ids)
    .bind(amounts)
    .execute(conn)
    .await
    .map(drop)
}

/// The AP-payment resource, as the import loop sees it.
pub struct ApPayments;

impl Canonical for ApPayments {
    type Input = PaymentInput;
    const TABLE: &'static str = "ap_payments";
    const FIELDS: &'static [Field] = PAYMENT_FIELDS;

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
        .bind(input.method.as_str())
        .bind(&input.reference)
        .bind(provenance.map(|p| p.source))
        .bind(provenance.map(|p| p.external_id))
        .execute(&mut *conn)
        .await?;
        apply(conn, ctx, id, vendor_id, input).await?;
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
        // `id` is the tenant's: the provenance look-up found it. By the
        // primary key alone, the update can use no other index.
        sqlx::query(
            "update ap_payments
             set vendor_id = $2, payment_date = $3, amount = $4, method = $5, reference = $6,
                 updated_at = now()
             where id = $1",
        )
        .bind(id)
        .bind(vendor_id)
        .bind(input.payment_date)
        .bind(input.amount)
        .bind(input.method.as_str())
        .bind(&input.reference)
        .execute(&mut *conn)
        .await?;
        apply(conn, ctx, id, vendor_id, input).await
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
