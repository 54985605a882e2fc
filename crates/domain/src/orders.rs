//! Orders: quotes, sales orders, invoices, returns and purchase orders, with
//! their line items. Totals are computed here (line totals rounded to the
//! cent), and each order gets a number per entity, mode and document type
//! (`SO-00042`, `INV-00007`, `PO-00003`, ...).

use chrono::{NaiveDate, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::accounts::AccountType;
use crate::canonical::{Applied, Canonical, Item, WriteContext};
use crate::error::RecordError;
use crate::fields::{Fields, INVALID, MISSING};
use crate::named::{Named, named_enum};
use crate::plan::{Plan, Settled, column, decide_in_order};
use crate::refs::{RefField, RefIndex, parse_ref};
use crate::spec::{Field, Kind};
use crate::view::{Form, Items, Shown, View};
use crate::{ConflictMode, Tenant, ledger};

named_enum! {
    pub enum DocumentType {
        Quote = "quote",
        SalesOrder = "sales_order",
        Invoice = "invoice",
        Return = "return",
        PurchaseOrder = "purchase_order",
    }
}
const LINES_MAX: usize = 1000;

const DOCUMENT_TYPE: Field = Field::optional(
    "document_type",
    Kind::Enum(DocumentType::NAMES),
    "Default sales_order.",
);
const ACCOUNT: Field = Field::required(
    "account",
    Kind::Reference,
    "The account: a customer, or a vendor for purchase orders.",
);
// The vendor's create-an-order page has no order_date in its example and a
// date-time in its schema.
const ORDER_DATE: Field = Field::optional(
    "order_date",
    Kind::DateOrTime,
    "A date or a date-time (its date as written is kept); absent: the day the record is loaded (UTC).",
);
const NOTES: Field = Field::optional("notes", Kind::Text { max: 5000 }, "");
const PO_NUMBER: Field = Field::optional(
    "po_number",
    Kind::Text { max: 100 },
    "The customer's purchase order number.",
);
// The vendor's creating-orders guide: a header-level discount, "percentage
// or flat", as {"type": "percentage", "value": 5}.
const DISCOUNT_TYPE: Field = Field::required(
    "type",
    Kind::Enum(DiscountType::NAMES),
    "percentage: value is a percentage of the subtotal; flat (or amount): value is an amount.",
);
const DISCOUNT_VALUE: Field = Field::required("value", Kind::Money, "");
const DISCOUNT: Field = Field::optional(
    "discount",
    Kind::Object {
        of: &[DISCOUNT_TYPE, DISCOUNT_VALUE],
    },
    "Taken off the subtotal, rounded to the cent: discount_total; at most the subtotal.",
);
const LINE_PRODUCT: Field = Field::required("product", Kind::Reference, "The product.");
const QUANTITY: Field = Field::required("quantity", Kind::Count, "");
const SELL_RATE: Field = Field::optional(
    "sell_rate",
    Kind::Money,
    "Unit price: what prices the line, except on a purchase order; defaults to the product's list_price.",
);
// The vendor's purchase-to-pay guide prices a purchase order's lines with it.
const COST_RATE: Field = Field::optional(
    "cost_rate",
    Kind::Money,
    "Unit cost: what prices a purchase order's line (then sell_rate, the product's cost, its list_price); on other documents kept as the line's cost, defaulting to the product's cost.",
);
const LINE_ITEMS: Field = Field::required(
    "line_items",
    Kind::Items {
        min: 1,
        max: LINES_MAX,
        of: &[LINE_PRODUCT, QUANTITY, SELL_RATE, COST_RATE],
    },
    "Replaced as one unit on update.",
);

/// The fields of an order record.
pub const FIELDS: &[Field] = &[
    DOCUMENT_TYPE,
    ACCOUNT,
    ORDER_DATE,
    PO_NUMBER,
    NOTES,
    DISCOUNT,
    LINE_ITEMS,
];

named_enum! {
    pub enum DiscountType {
        Percentage = "percentage",
        Flat = "flat",
        Amount = "amount",
    }
}

/// A header-level discount.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Discount {
    pub kind: DiscountType,
    pub value: Decimal,
}

impl Discount {
    /// What it takes off `subtotal`, rounded to the cent.
    fn of(self, subtotal: Decimal) -> Decimal {
        match self.kind {
            DiscountType::Percentage => cents(subtotal * self.value / Decimal::ONE_HUNDRED),
            DiscountType::Flat | DiscountType::Amount => self.value,
        }
    }
}

/// What a read of an order shows.
pub const VIEW: View = View::record(
    "order",
    &[
        Shown::sql("order_number", "r.order_number", Form::Text)
            .about("Assigned per document type: QUO-, SO-, INV-, RMA-, PO-."),
        Shown::sql(
            "document_type",
            "r.document_type",
            Form::Enum(DocumentType::NAMES),
        ),
        Shown::sql("account_id", "r.account_id", Form::Uuid),
        Shown::sql("order_date", "r.order_date", Form::Date),
        Shown::sql("po_number", "r.po_number", Form::Text).or_null(),
        Shown::sql("notes", "r.notes", Form::Text).or_null(),
        Shown::sql(
            "discount_type",
            "r.discount_type",
            Form::Enum(DiscountType::NAMES),
        )
        .or_null(),
        Shown::sql("discount_value", "r.discount_value", Form::Decimal).or_null(),
        Shown::sql("subtotal", "r.subtotal", Form::Decimal)
            .about("Computed: the lines' totals."),
        Shown::sql("discount_total", "r.discount_total", Form::Decimal)
            .about("Computed: what the discount takes off the subtotal."),
        Shown::sql("order_total", "r.order_total", Form::Decimal)
            .about("Computed: subtotal less discount_total."),
        Shown::sql("balance_due", "r.balance_due", Form::Decimal)
            .about("Computed: the total, 0 for quotes and returns."),
        Shown::items(
            "line_items",
            Items {
                from: "order_lines l",
                filter: "l.order_id = r.id",
                order_by: "l.position",
                of: &[
                    Shown::sql("product_id", "l.product_id", Form::Uuid),
                    Shown::sql("quantity", "l.quantity", Form::Integer),
                    Shown::sql("sell_rate", "l.sell_rate", Form::Decimal)
                        .or_null()
                        .about("Null on a purchase order line with none given or listed."),
                    Shown::sql("cost_rate", "l.cost_rate", Form::Decimal)
                        .or_null()
                        .about("Null on a sales line with none given and no product cost."),
                    Shown::sql("line_total", "l.line_total", Form::Decimal)
                        .about("Computed: quantity times cost_rate on a purchase order, sell_rate otherwise."),
                ],
            },
        )
        .about("In order."),
    ],
);

#[derive(Debug, Clone, PartialEq)]
pub struct OrderInput {
    pub document_type: DocumentType,
    pub account: RefField,
    pub order_date: NaiveDate,
    pub po_number: Option<String>,
    pub notes: Option<String>,
    pub discount: Option<Discount>,
    pub line_items: Vec<LineInput>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LineInput {
    pub product: RefField,
    pub quantity: i32,
    /// Absent: the product's list price.
    pub sell_rate: Option<Decimal>,
    /// Absent: the product's cost.
    pub cost_rate: Option<Decimal>,
}

impl OrderInput {
    pub fn parse(record: &Value) -> Result<Self, RecordError> {
        let f = Fields::record(record, FIELDS)?;
        let document_type = f
            .optional_enum(&DOCUMENT_TYPE)?
            .unwrap_or(DocumentType::SalesOrder);
        let account = parse_ref(&f, &ACCOUNT)?.expect("a required reference is present");
        let order_date = f
            .optional_date_or_time(&ORDER_DATE)?
            .unwrap_or_else(|| Utc::now().date_naive());
        let po_number = f.optional_string(&PO_NUMBER)?;
        let notes = f.optional_string(&NOTES)?;
        let discount = f.parse_object(&DISCOUNT, |d| {
            let kind = d.required_enum(&DISCOUNT_TYPE)?;
            let value = d.required_money(&DISCOUNT_VALUE)?;
            if kind == DiscountType::Percentage && value > Decimal::ONE_HUNDRED {
                return Err(RecordError::at(
                    INVALID,
                    "value",
                    format!("a percentage discount is from 0 to 100, got {value}"),
                ));
            }
            Ok(Discount { kind, value })
        })?;
        let line_items = f.parse_items(&LINE_ITEMS, |line| {
            Ok(LineInput {
                product: parse_ref(line, &LINE_PRODUCT)?.expect("a required reference is present"),
                quantity: line.required_count(&QUANTITY)?,
                sell_rate: line.optional_money(&SELL_RATE)?,
                cost_rate: line.optional_money(&COST_RATE)?,
            })
        })?;
        Ok(Self {
            document_type,
            account,
            order_date,
            po_number,
            notes,
            discount,
            line_items,
        })
    }

    fn number_prefix(&self) -> &'static str {
        match self.document_type {
            DocumentType::Quote => "QUO",
            DocumentType::SalesOrder => "SO",
            DocumentType::Invoice => "INV",
            DocumentType::Return => "RMA",
            DocumentType::PurchaseOrder => "PO",
        }
    }
}

/// A resolved line.
struct Line {
    product_id: Uuid,
    quantity: i32,
    sell_rate: Option<Decimal>,
    cost_rate: Option<Decimal>,
    total: Decimal,
}

/// What an order line reads of its product: its list price and cost.
type ProductPrices = Vec<Option<Decimal>>;

/// An order's lines and totals, once its references are resolved.
struct Resolved {
    account_id: Uuid,
    lines: Vec<Line>,
    subtotal: Decimal,
    discount_total: Decimal,
    balance_due: Decimal,
}

impl Resolved {
    fn total(&self) -> Decimal {
        self.subtotal - self.discount_total
    }
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
    const FIELDS: &'static [Field] = FIELDS;

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

/// A batch of orders: what it read, and what its records have done so far.
struct Batch<'a> {
    plan: Plan<'a, OrderInput, Resolved>,
    accounts: RefIndex<String>,
    products: RefIndex<ProductPrices>,
}

impl<'a> Batch<'a> {
    /// Reads what the batch needs: its provenances, its accounts with their
    /// types and its products with their list prices and costs, one query
    /// each.
    async fn load(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        items: &'a [Item<'a, OrderInput>],
    ) -> Result<Self, sqlx::Error> {
        let plan = Plan::load(conn, "orders", ctx.tenant, items).await?;
        let accounts: Vec<&RefField> = items.iter().map(|i| &i.input.account).collect();
        let accounts = RefIndex::load(conn, ctx, "accounts", "account_type", &accounts).await?;
        let products: Vec<&RefField> = items
            .iter()
            .flat_map(|i| &i.input.line_items)
            .map(|l| &l.product)
            .collect();
        let products =
            RefIndex::load(conn, ctx, "products", "array[list_price, cost]", &products).await?;
        Ok(Self {
            plan,
            accounts,
            products,
        })
    }

    fn apply(
        &mut self,
        ctx: &WriteContext<'_>,
        conflict: ConflictMode,
        item: &'a Item<'a, OrderInput>,
    ) -> Applied {
        let (accounts, products) = (&self.accounts, &self.products);
        self.plan.decide(conflict, item, |input| {
            resolve(ctx, accounts, products, input)
        })
    }

    /// Writes what the batch decided, each kind of change in one statement.
    async fn write(self, conn: &mut PgConnection, tenant: Tenant) -> Result<(), sqlx::Error> {
        let Settled { new, updated } = self.plan.settle(conn).await?;
        if !updated.is_empty() {
            let ids = column(&updated, |r| r.id);
            sqlx::query(
                "update orders o
                 set document_type = u.document_type, account_id = u.account_id,
                     order_date = u.order_date, notes = u.notes, subtotal = u.subtotal,
                     order_total = u.order_total, balance_due = u.balance_due,
                     po_number = u.po_number, discount_type = u.discount_type,
                     discount_value = u.discount_value, discount_total = u.discount_total,
                     updated_at = now()
                 from unnest($1::uuid[], $2::text[], $3::uuid[], $4::date[], $5::text[],
                             $6::numeric[], $7::numeric[], $8::text[], $9::text[],
                             $10::numeric[], $11::numeric[], $12::numeric[])
                     as u (id, document_type, account_id, order_date, notes, subtotal,
                           balance_due, po_number, discount_type, discount_value,
                           discount_total, order_total)
                 where o.id = u.id and o.id = any($1)",
            )
            .bind(&ids)
            .bind(column(&updated, |r| r.input.document_type.as_str()))
            .bind(column(&updated, |r| r.derived.account_id))
            .bind(column(&updated, |r| r.input.order_date))
            .bind(column(&updated, |r| r.input.notes.as_deref()))
            .bind(column(&updated, |r| r.derived.subtotal))
            .bind(column(&updated, |r| r.derived.balance_due))
            .bind(column(&updated, |r| r.input.po_number.as_deref()))
            .bind(column(&updated, |r| {
                r.input.discount.map(|d| d.kind.as_str())
            }))
            .bind(column(&updated, |r| r.input.discount.map(|d| d.value)))
            .bind(column(&updated, |r| r.derived.discount_total))
            .bind(column(&updated, |r| r.derived.total()))
            .execute(&mut *conn)
            .await?;
            // The lines are replaced as one unit.
            sqlx::query("delete from order_lines where order_id = any($1)")
                .bind(&ids)
                .execute(&mut *conn)
                .await?;
        }
        if !new.is_empty() {
            let prefixes = column(&new, |r| r.created_from.number_prefix());
            let numbers = ledger::allocate_numbers(conn, tenant, &prefixes).await?;
            sqlx::query(
                "insert into orders
                    (id, entity_id, mode, order_number, document_type, account_id, order_date,
                     notes, subtotal, order_total, balance_due, external_source, external_id,
                     po_number, discount_type, discount_value, discount_total)
                 select u.id, $1, $2, u.order_number, u.document_type, u.account_id,
                        u.order_date, u.notes, u.subtotal, u.order_total, u.balance_due,
                        u.source, u.external_id, u.po_number, u.discount_type,
                        u.discount_value, u.discount_total
                 from unnest($3::uuid[], $4::text[], $5::text[], $6::uuid[], $7::date[],
                             $8::text[], $9::numeric[], $10::numeric[], $11::text[], $12::text[],
                             $13::text[], $14::text[], $15::numeric[], $16::numeric[],
                             $17::numeric[])
                     as u (id, order_number, document_type, account_id, order_date, notes,
                           subtotal, balance_due, source, external_id, po_number,
                           discount_type, discount_value, discount_total, order_total)",
            )
            .bind(tenant.entity_id)
            .bind(tenant.mode.as_str())
            .bind(column(&new, |r| r.id))
            .bind(&numbers)
            .bind(column(&new, |r| r.input.document_type.as_str()))
            .bind(column(&new, |r| r.derived.account_id))
            .bind(column(&new, |r| r.input.order_date))
            .bind(column(&new, |r| r.input.notes.as_deref()))
            .bind(column(&new, |r| r.derived.subtotal))
            .bind(column(&new, |r| r.derived.balance_due))
            .bind(column(&new, |r| r.provenance.map(|p| p.source)))
            .bind(column(&new, |r| r.provenance.map(|p| p.external_id)))
            .bind(column(&new, |r| r.input.po_number.as_deref()))
            .bind(column(&new, |r| r.input.discount.map(|d| d.kind.as_str())))
            .bind(column(&new, |r| r.input.discount.map(|d| d.value)))
            .bind(column(&new, |r| r.derived.discount_total))
            .bind(column(&new, |r| r.derived.total()))
            .execute(&mut *conn)
            .await?;
        }
        let lines: Vec<(Uuid, i32, &Line)> = new
            .iter()
            .chain(&updated)
            .flat_map(|row| (0..).zip(&row.derived.lines).map(|(p, l)| (row.id, p, l)))
            .collect();
        if lines.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "insert into order_lines
                (order_id, position, product_id, quantity, sell_rate, cost_rate, line_total)
             select * from unnest($1::uuid[], $2::int4[], $3::uuid[], $4::int4[],
                                  $5::numeric[], $6::numeric[], $7::numeric[])",
        )
        .bind(column(&lines, |l| l.0))
        .bind(column(&lines, |l| l.1))
        .bind(column(&lines, |l| l.2.product_id))
        .bind(column(&lines, |l| l.2.quantity))
        .bind(column(&lines, |l| l.2.sell_rate))
        .bind(column(&lines, |l| l.2.cost_rate))
        .bind(column(&lines, |l| l.2.total))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

/// Resolves the account and the products and computes the totals: the first
/// reference that names nothing, in payload order, is the error.
fn resolve(
    ctx: &WriteContext<'_>,
    accounts: &RefIndex<String>,
    products: &RefIndex<ProductPrices>,
    input: &OrderInput,
) -> Result<Resolved, RecordError> {
    let (account_id, account_type) =
        accounts.resolve(ctx, "account", "", &input.account, |_| None)?;
    let wants_vendor = input.document_type == DocumentType::PurchaseOrder;
    if wants_vendor != (account_type == AccountType::Vendor.as_str()) {
        return Err(RecordError::at(
            "invalid_account_type",
            input.account.field.clone(),
            if wants_vendor {
                format!("a purchase order is placed with a vendor; this account is {account_type}")
            } else {
                format!(
                    "a {} is for a customer; this account is a vendor",
                    input.document_type.as_str()
                )
            },
        ));
    }
    let products = input
        .line_items
        .iter()
        .enumerate()
        .map(|(i, line)| {
            products.resolve(
                ctx,
                "product",
                &format!("line_items[{i}]"),
                &line.product,
                |_| None,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut lines = Vec::with_capacity(input.line_items.len());
    for (i, (line, (product_id, prices))) in input.line_items.iter().zip(products).enumerate() {
        let (list_price, cost) = (prices[0], prices[1]);
        let sell_rate = line.sell_rate.or(list_price);
        let cost_rate = line.cost_rate.or(cost);
        // A purchase order is priced at what it costs; a rate given as
        // sell_rate prices it when no cost_rate is, as before cost_rate was
        // read.
        let rate = if wants_vendor {
            line.cost_rate.or(line.sell_rate).or(cost).or(list_price)
        } else {
            sell_rate
        };
        let Some(rate) = rate else {
            let (field, why) = if wants_vendor {
                (
                    "cost_rate",
                    "the product has no cost or list_price to default to",
                )
            } else {
                ("sell_rate", "the product has no list_price to default to")
            };
            return Err(RecordError::at(
                MISSING,
                format!("line_items[{i}].{field}"),
                format!("{field} is required: {why}"),
            ));
        };
        lines.push(Line {
            product_id,
            quantity: line.quantity,
            sell_rate,
            cost_rate: if wants_vendor { Some(rate) } else { cost_rate },
            total: cents(rate * Decimal::from(line.quantity)),
        });
    }
    let subtotal: Decimal = lines.iter().map(|l| l.total).sum();
    let discount_total = input.discount.map_or(Decimal::ZERO, |d| d.of(subtotal));
    if discount_total > subtotal {
        return Err(RecordError::at(
            "discount_exceeds_subtotal",
            "discount.value",
            format!("the discount of {discount_total} is more than the subtotal of {subtotal}"),
        ));
    }
    // Quotes and returns owe nothing; the other documents owe their total.
    let balance_due = match input.document_type {
        DocumentType::Quote | DocumentType::Return => Decimal::ZERO,
        DocumentType::SalesOrder | DocumentType::Invoice | DocumentType::PurchaseOrder => {
            subtotal - discount_total
        }
    };
    Ok(Resolved {
        account_id,
        lines,
        subtotal,
        discount_total,
        balance_due,
    })
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
