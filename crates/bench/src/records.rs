//! The records the bench loads, generated from their index alone, so that the
//! ceiling (as COPY rows) and the API (as JSON bodies) load the very same
//! records, and every pass loads the same ones again into a fresh entity.
//!
//! Orders name their customer and products by external id, as a migration
//! does; [`ORDER_CUSTOMERS`] customers and [`ORDER_PRODUCTS`] products (the
//! first products of the product generator) are loaded beforehand.

use std::fmt::Write as _;
use std::ops::RangeInclusive;

use serde_json::{Value, json};
use uuid::Uuid;

/// The `external_source` of every record.
pub const SOURCE: &str = "bench";
/// Records per job: the API's maximum.
pub const JOB_RECORDS: usize = 1_000;
/// Customers the orders are spread over.
pub const ORDER_CUSTOMERS: usize = 1_000;
/// Products the order lines are spread over.
pub const ORDER_PRODUCTS: usize = 1_000;
pub const LINES_PER_ORDER: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    Products,
    Orders,
}

impl Resource {
    /// The name in URLs and job objects.
    pub fn name(self) -> &'static str {
        match self {
            Resource::Products => "products",
            Resource::Orders => "orders",
        }
    }

    /// The body of one bulk job: records `range` (1-based, inclusive).
    pub fn job_body(self, range: RangeInclusive<usize>) -> Vec<u8> {
        let records: Vec<Value> = match self {
            Resource::Products => range.map(|i| product(i).json()).collect(),
            Resource::Orders => range.map(|i| order(i).json()).collect(),
        };
        let body = json!({
            "external_source": SOURCE,
            "conflict_mode": "skip",
            "records": records,
        });
        serde_json::to_vec(&body).expect("a JSON value serializes")
    }
}

/// An amount in cents as the decimal text both paths send (`12.50`).
pub fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

pub struct Product {
    pub external_id: String,
    pub title: String,
    pub product_type: &'static str,
    pub sku: String,
    pub list_price: u64,
    pub cost: u64,
}

/// Product `i` (from 1).
pub fn product(i: usize) -> Product {
    let list_price = 500 + (i as u64 * 37) % 20_000;
    Product {
        external_id: format!("P-{i:06}"),
        title: format!("Product {i}"),
        product_type: if i.is_multiple_of(4) {
            "service"
        } else {
            "physical"
        },
        sku: format!("SKU-{i:06}"),
        list_price,
        cost: list_price * 2 / 5,
    }
}

impl Product {
    pub fn json(&self) -> Value {
        json!({
            "external_id": self.external_id,
            "title": self.title,
            "product_type": self.product_type,
            "sku": self.sku,
            "list_price": money(self.list_price),
            "cost": money(self.cost),
        })
    }

    /// A COPY text row: id, external_id, title, product_type, sku,
    /// list_price, cost. (Generated text holds no tab, newline or
    /// backslash, so nothing needs escaping.)
    pub fn write_copy_row(&self, id: Uuid, out: &mut String) {
        writeln!(
            out,
            "{id}\t{}\t{}\t{}\t{}\t{}\t{}",
            self.external_id,
            self.title,
            self.product_type,
            self.sku,
            money(self.list_price),
            money(self.cost)
        )
        .expect("writing to a String cannot fail");
    }
}

pub struct Customer {
    pub external_id: String,
    pub name: String,
    /// The number the service gives the k-th customer of an entity.
    pub account_number: String,
}

/// Customer `k` (from 1).
pub fn customer(k: usize) -> Customer {
    Customer {
        external_id: format!("C-{k:05}"),
        name: format!("Customer {k}"),
        account_number: format!("CUST-{k:05}"),
    }
}

impl Customer {
    /// A COPY text row: id, external_id, name, account_number.
    pub fn write_copy_row(&self, id: Uuid, out: &mut String) {
        writeln!(
            out,
            "{id}\t{}\t{}\t{}",
            self.external_id, self.name, self.account_number
        )
        .expect("writing to a String cannot fail");
    }
}

pub struct Line {
    pub product_external_id: String,
    pub quantity: u64,
    /// In cents.
    pub sell_rate: u64,
}

impl Line {
    /// Whole cents times a whole quantity: already rounded to the cent, as
    /// the service rounds line totals.
    pub fn total(&self) -> u64 {
        self.sell_rate * self.quantity
    }
}

pub struct Order {
    pub external_id: String,
    pub account_external_id: String,
    pub order_date: String,
    pub lines: Vec<Line>,
}

/// Order `i` (from 1): a sales order of [`LINES_PER_ORDER`] lines.
pub fn order(i: usize) -> Order {
    let lines = (0..LINES_PER_ORDER)
        .map(|j| Line {
            product_external_id: product(((i - 1) * LINES_PER_ORDER + j) % ORDER_PRODUCTS + 1)
                .external_id,
            quantity: 1 + ((i + j) % 4) as u64,
            sell_rate: 99 + ((i * 13 + j * 101) % 5_000) as u64,
        })
        .collect();
    Order {
        external_id: format!("O-{i:06}"),
        account_external_id: customer((i - 1) % ORDER_CUSTOMERS + 1).external_id,
        order_date: format!("2026-{:02}-{:02}", 1 + i % 12, 1 + i % 28),
        lines,
    }
}

impl Order {
    /// Subtotal, order total and balance due of a sales order, in cents.
    pub fn total(&self) -> u64 {
        self.lines.iter().map(Line::total).sum()
    }

    pub fn json(&self) -> Value {
        let lines: Vec<Value> = self
            .lines
            .iter()
            .map(|l| {
                json!({
                    "product_external_id": l.product_external_id,
                    "quantity": l.quantity,
                    "sell_rate": money(l.sell_rate),
                })
            })
            .collect();
        json!({
            "external_id": self.external_id,
            "account_external_id": self.account_external_id,
            "order_date": self.order_date,
            "document_type": "sales_order",
            "line_items": lines,
        })
    }

    /// A COPY text row: id, order_number, external_id, account_external_id,
    /// order_date, total.
    pub fn write_copy_row(&self, id: Uuid, number: usize, out: &mut String) {
        writeln!(
            out,
            "{id}\t{}\t{}\t{}\t{}\t{}",
            order_number(number),
            self.external_id,
            self.account_external_id,
            self.order_date,
            money(self.total())
        )
        .expect("writing to a String cannot fail");
    }

    /// COPY text rows of the lines: order_id, position, product_external_id,
    /// quantity, sell_rate, line_total.
    pub fn write_line_rows(&self, id: Uuid, out: &mut String) {
        for (position, l) in self.lines.iter().enumerate() {
            writeln!(
                out,
                "{id}\t{position}\t{}\t{}\t{}\t{}",
                l.product_external_id,
                l.quantity,
                money(l.sell_rate),
                money(l.total())
            )
            .expect("writing to a String cannot fail");
        }
    }
}

/// The number the service gives an entity's n-th sales order.
pub fn order_number(n: usize) -> String {
    format!("SO-{n:05}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_written_with_two_decimals() {
        assert_eq!(money(1250), "12.50");
        assert_eq!(money(7), "0.07");
    }

    #[test]
    fn orders_reference_only_the_loaded_parents() {
        for i in [1, 999, 1_000, 1_001, 123_457] {
            let o = order(i);
            let customer: usize = o.account_external_id[2..].parse().expect("C-<n>");
            assert!((1..=ORDER_CUSTOMERS).contains(&customer));
            for l in &o.lines {
                let p: usize = l.product_external_id[2..].parse().expect("P-<n>");
                assert!((1..=ORDER_PRODUCTS).contains(&p));
            }
        }
    }

    #[test]
    fn a_body_carries_its_range_of_records() {
        let body: Value = serde_json::from_slice(&Resource::Orders.job_body(3..=4)).expect("JSON");
        let records = body["records"].as_array().expect("records");
        assert_eq!(records.len(), 2);
        assert_eq!(records[0]["external_id"], "O-000003");
        assert_eq!(records[1]["line_items"].as_array().map(Vec::len), Some(5));
    }
}
