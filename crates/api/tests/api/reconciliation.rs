//! A whole migration through the bulk API, with no hand-mapped ids, and the
//! reconciliation reports that prove what was loaded.

use serde_json::{Value, json};

use crate::helpers::spawn_app;

fn body(records: Value, source: &str) -> Value {
    json!({"records": records, "external_source": source, "conflict_mode": "skip"})
}

#[tokio::test]
async fn a_full_migration_reconciles_counts_and_a_trial_balance() {
    let app = spawn_app().await;
    let qb = "quickbooks";

    let accounts = app
        .import_to(
            "accounts",
            &body(
                json!([
                    {"external_id": "C-1", "name": "Acme Retail", "account_type": "business"},
                    {"external_id": "C-2", "name": "Jane Doe", "account_type": "individual"},
                    {"external_id": "V-1", "name": "Paper Supply Co", "account_type": "vendor"},
                    {"external_id": "V-2", "name": "Office Rentals", "account_type": "vendor"}
                ]),
                qb,
            ),
        )
        .await;
    assert_eq!(accounts["status"], "completed");

    let products = app.import_to("products", &body(json!([
        {"external_id": "P-1", "title": "Mug", "product_type": "physical", "sku": "MUG", "list_price": 12.5},
        {"external_id": "P-2", "title": "Lid", "product_type": "physical", "sku": "LID", "list_price": 2.5},
        {"external_id": "K-1", "title": "Mug and lid", "product_type": "kit", "sku": "KIT", "list_price": 14,
         "components": [{"product_external_id": "P-1", "quantity": 1}, {"product_external_id": "P-2", "quantity": 1}]}
    ]), qb)).await;
    assert_eq!(products["status"], "completed", "{products}");

    let orders = app.import_to("orders", &body(json!([
        {"external_id": "O-1", "document_type": "invoice", "account_external_id": "C-1", "order_date": "2026-01-05",
         "line_items": [{"product_external_id": "K-1", "quantity": 10}]},
        {"external_id": "O-2", "account_external_id": "C-2", "order_date": "2026-01-06",
         "line_items": [{"product_external_id": "P-1", "quantity": 1}, {"product_external_id": "P-2", "quantity": 2}]}
    ]), qb)).await;
    assert_eq!(orders["status"], "completed", "{orders}");

    let entries = app.import_to("journal-entries", &body(json!([
        {"external_id": "JE-1", "entry_date": "2026-01-01", "description": "opening balance",
         "lines": [{"gl_account_number": "1010", "debit_amount": 10000},
                   {"gl_account_number": "3200", "credit_amount": 10000}]},
        {"external_id": "JE-2", "entry_date": "2026-01-31", "description": "rent",
         "lines": [{"gl_account_number": "6010", "debit_amount": 1500},
                   {"gl_account_number": "1010", "credit_amount": 1500}]},
        {"external_id": "JE-3", "entry_date": "2026-01-31", "description": "typo in the old system",
         "lines": [{"gl_account_number": "6020", "debit_amount": 200},
                   {"gl_account_number": "1010", "credit_amount": 150}]}
    ]), qb)).await;
    assert_eq!(entries["status"], "partial");
    assert_eq!(entries["errors"][0]["code"], "gl_imbalance");
    assert_eq!(entries["errors"][0]["external_id"], "JE-3");

    let bills = app.import_to("vendor-bills", &body(json!([
        {"external_id": "B-1", "vendor_external_id": "V-1", "bill_date": "2026-01-10",
         "items": [{"description": "Paper", "quantity": 10, "unit_cost": 25, "gl_account_number": "6030"}]},
        {"external_id": "B-2", "vendor_external_id": "V-2", "bill_date": "2026-01-12",
         "items": [{"description": "February rent", "amount": 1500, "gl_account_number": "6010"}]}
    ]), qb)).await;
    assert_eq!(bills["status"], "completed", "{bills}");

    let payments = app.import_to("ap-payments", &body(json!([
        {"external_id": "PAY-1", "vendor_external_id": "V-1", "payment_date": "2026-01-20", "amount": 100,
         "method": "check", "applications": [{"bill_external_id": "B-1", "amount": 100}]},
        {"external_id": "PAY-2", "vendor_external_id": "V-2", "payment_date": "2026-01-25", "amount": 500,
         "method": "ach", "applications": [{"bill_external_id": "B-2", "amount": 500}]}
    ]), qb)).await;
    assert_eq!(payments["status"], "completed", "{payments}");

    // Counts agree with what was sent (less the refused entry).
    let (status, counts) = app.get_entity("reconciliation/counts").await;
    assert_eq!(status, 200);
    assert_eq!(
        counts["totals"],
        json!({"accounts": 4, "products": 3, "orders": 2,
        "journal-entries": 2, "vendor-bills": 2, "ap-payments": 2})
    );
    assert!(
        counts["data"]
            .as_array()
            .expect("data")
            .iter()
            .all(|row| row["external_source"] == qb)
    );

    // The trial balance is in balance and shows what was posted.
    let (status, tb) = app
        .get_entity("reconciliation/trial-balance?as_of_date=2026-01-31&external_source=quickbooks")
        .await;
    assert_eq!(status, 200, "{tb}");
    assert_eq!(tb["in_balance"], true);
    assert_eq!(tb["total_debits"], tb["total_credits"]);
    assert_eq!(tb["total_debits"], 13850, "10000 + 1500 + 250 + 1500 + 600");
    let balance = |number: &str| {
        tb["accounts"]
            .as_array()
            .expect("accounts")
            .iter()
            .find(|a| a["account_number"] == number)
            .unwrap_or_else(|| panic!("account {number} in {tb}"))["balance"]
            .clone()
    };
    assert_eq!(balance("1010"), 7900, "cash: 10000 - 1500 rent - 600 paid");
    assert_eq!(balance("2010"), 1150, "payables: 1750 billed - 600 paid");
    assert_eq!(balance("3200"), 10000);
    assert_eq!(balance("6010"), 3000);
    assert_eq!(balance("6030"), 250);

    // As of an earlier date only the opening entry counts.
    let (_, early) = app
        .get_entity("reconciliation/trial-balance?as_of_date=2026-01-01")
        .await;
    assert_eq!(early["total_debits"], 10000);
    assert_eq!(early["in_balance"], true);
    // Another source has loaded nothing.
    let (_, none) = app
        .get_entity("reconciliation/trial-balance?as_of_date=2026-01-31&external_source=shopify")
        .await;
    assert_eq!(none["accounts"], json!([]));
    let (status, error) = app
        .get_entity("reconciliation/trial-balance?as_of_date=January")
        .await;
    assert_eq!(
        (status.as_u16(), error["param"].as_str()),
        (400, Some("as_of_date"))
    );
}
