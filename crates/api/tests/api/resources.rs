//! The five resources beyond products: their rules, their references by
//! external id, and their conflict modes, through the bulk import.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{AppOptions, TestApp, bulk, error_at, spawn_app, spawn_app_with};

/// Customers C-1, C-2 and vendors V-1, V-2.
fn accounts() -> Vec<Value> {
    vec![
        json!({"external_id": "C-1", "name": "Acme Retail", "account_type": "business",
               "email": "ap@acme.test", "credit_limit": 5000,
               "addresses": [{"type": "billing", "line1": "1 Main St", "city": "Springfield",
                              "is_default_billing": true},
                             {"type": "shipping", "line1": "2 Dock Rd", "is_default_shipping": true}]}),
        json!({"external_id": "C-2", "name": "Jane Doe", "account_type": "individual"}),
        json!({"external_id": "V-1", "name": "Paper Supply Co", "account_type": "vendor"}),
        json!({"external_id": "V-2", "name": "Office Rentals", "account_type": "vendor"}),
    ]
}

/// Products P-1 (with a list price) and P-2 (without).
fn products() -> Vec<Value> {
    vec![
        json!({"external_id": "P-1", "title": "Mug", "product_type": "physical", "sku": "MUG", "list_price": 5}),
        json!({"external_id": "P-2", "title": "Setup", "product_type": "service"}),
    ]
}

async fn load_basics(app: &TestApp) {
    assert_eq!(
        app.import_to("accounts", &bulk(accounts(), "skip")).await["status"],
        "completed"
    );
    assert_eq!(
        app.import_to("products", &bulk(products(), "skip")).await["status"],
        "completed"
    );
}

async fn one(app: &TestApp, resource: &str, external_id: &str) -> Value {
    let (status, page) = app
        .get_entity(&format!("{resource}?external_id={external_id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["data"].as_array().expect("data").len(), 1, "{page}");
    page["data"][0].clone()
}

fn bill(external_id: &str, vendor: &str, amount: f64) -> Value {
    json!({"external_id": external_id, "vendor_external_id": vendor, "bill_date": "2026-01-10",
           "due_date": "2026-02-10", "vendor_invoice_number": format!("INV-{external_id}"),
           "items": [{"description": "Paper", "quantity": 1, "unit_cost": amount, "gl_account_number": "6030"}]})
}

fn payment(external_id: &str, vendor: &str, amount: f64, applications: Value) -> Value {
    json!({"external_id": external_id, "vendor_external_id": vendor, "payment_date": "2026-01-20",
           "amount": amount, "method": "ach", "applications": applications})
}

#[tokio::test]
async fn accounts_get_numbers_per_kind_and_keep_their_addresses() {
    let app = spawn_app().await;
    load_basics(&app).await;
    let acme = one(&app, "accounts", "C-1").await;
    assert_eq!(acme["account_number"], "CUST-00001");
    assert_eq!(acme["object"], "account");
    assert_eq!(acme["credit_limit"], 5000);
    assert_eq!(acme["addresses"].as_array().expect("addresses").len(), 2);
    assert_eq!(acme["addresses"][0]["is_default_billing"], true);
    assert_eq!(acme["external_source"], "shopify");
    assert_eq!(
        one(&app, "accounts", "C-2").await["account_number"],
        "CUST-00002"
    );
    assert_eq!(
        one(&app, "accounts", "V-2").await["account_number"],
        "VEND-00002"
    );

    // Update replaces the addresses as one unit and keeps the number.
    let mut changed = accounts()[0].clone();
    changed["addresses"] =
        json!([{"type": "billing", "city": "Shelbyville", "is_default_billing": true}]);
    assert_eq!(
        app.import_to("accounts", &bulk(vec![changed], "update"))
            .await["status"],
        "completed"
    );
    let acme = one(&app, "accounts", "C-1").await;
    assert_eq!(acme["account_number"], "CUST-00001");
    assert_eq!(
        acme["addresses"],
        json!([{"type": "billing", "label": null, "line1": null, "line2": null, "city": "Shelbyville",
        "state": null, "zip": null, "country": null, "is_default_billing": true, "is_default_shipping": false}])
    );
}

#[tokio::test]
async fn account_rules_are_reported_per_record() {
    let app = spawn_app().await;
    let job = app
        .import_to(
            "accounts",
            &bulk(
                vec![
                    json!({"external_id": "A", "name": "A", "account_type": "business",
                           "addresses": [{"type": "billing", "is_default_billing": true},
                                         {"type": "billing", "is_default_billing": true}]}),
                    json!({"external_id": "B", "account_type": "business"}),
                    json!({"external_id": "C", "name": "C", "account_type": "partner"}),
                    json!({"external_id": "D", "name": "D", "account_type": "lead"}),
                ],
                "skip",
            ),
        )
        .await;
    assert_eq!(job["status"], "partial");
    assert_eq!(error_at(&job, 0)["code"], "multiple_default_addresses");
    assert_eq!(
        error_at(&job, 0)["param"],
        "addresses[1].is_default_billing"
    );
    assert_eq!(error_at(&job, 1)["code"], "missing_required_field");
    assert_eq!(error_at(&job, 1)["param"], "name");
    assert_eq!(error_at(&job, 2)["param"], "account_type");
    // Numbers are not burnt by failed records.
    assert_eq!(
        one(&app, "accounts", "D").await["account_number"],
        "CUST-00001"
    );
}

#[tokio::test]
async fn orders_resolve_customers_and_products_by_external_id_and_compute_totals() {
    let app = spawn_app().await;
    load_basics(&app).await;
    let job = app
        .import_to(
            "orders",
            &bulk(
                vec![json!({"external_id": "O-1", "document_type": "invoice", "account_external_id": "C-1",
                            "order_date": "2026-01-15", "notes": "first",
                            "line_items": [{"product_external_id": "P-1", "quantity": 3},
                                           {"product_external_id": "P-2", "quantity": 1, "sell_rate": 120.5}]})],
                "skip",
            ),
        )
        .await;
    assert_eq!(job["status"], "completed", "{job}");
    let order = one(&app, "orders", "O-1").await;
    assert_eq!(order["order_number"], "INV-00001");
    assert_eq!(order["subtotal"], 135.5);
    assert_eq!(order["order_total"], 135.5);
    assert_eq!(order["balance_due"], 135.5);
    assert_eq!(
        order["line_items"][0]["sell_rate"], 5,
        "the product's list price"
    );
    assert_eq!(order["line_items"][0]["line_total"], 15);
    assert_eq!(
        order["account_id"],
        one(&app, "accounts", "C-1").await["id"]
    );

    // Update replaces the lines as one unit.
    let job = app
        .import_to(
            "orders",
            &bulk(
                vec![json!({"external_id": "O-1", "document_type": "invoice", "account_external_id": "C-1",
                            "order_date": "2026-01-15",
                            "line_items": [{"product_external_id": "P-2", "quantity": 2, "sell_rate": 10}]})],
                "update",
            ),
        )
        .await;
    assert_eq!(job["status"], "completed", "{job}");
    let order = one(&app, "orders", "O-1").await;
    assert_eq!(order["line_items"].as_array().expect("lines").len(), 1);
    assert_eq!(order["order_total"], 20);
    assert_eq!(order["order_number"], "INV-00001");
}

#[tokio::test]
async fn order_references_and_account_kinds_are_checked() {
    let app = spawn_app().await;
    load_basics(&app).await;
    let line = json!([{"product_external_id": "P-1", "quantity": 1}]);
    let job = app
        .import_to(
            "orders",
            &bulk(
                vec![
                    json!({"external_id": "O-1", "account_external_id": "C-404", "order_date": "2026-01-15", "line_items": line}),
                    json!({"external_id": "O-2", "account_external_id": "C-1", "order_date": "2026-01-15",
                           "line_items": [{"product_external_id": "P-1", "quantity": 1}, {"product_external_id": "P-404", "quantity": 1}]}),
                    json!({"external_id": "O-3", "account_external_id": "V-1", "order_date": "2026-01-15", "line_items": line}),
                    json!({"external_id": "O-4", "document_type": "purchase_order", "account_external_id": "C-1", "order_date": "2026-01-15", "line_items": line}),
                    json!({"external_id": "O-5", "account_external_id": "C-1", "order_date": "2026-01-15",
                           "line_items": [{"product_external_id": "P-2", "quantity": 1}]}),
                    json!({"external_id": "O-6", "document_type": "purchase_order", "account_external_id": "V-1", "order_date": "2026-01-15", "line_items": line}),
                ],
                "skip",
            ),
        )
        .await;
    assert_eq!(job["succeeded_records"], 1, "{job}");
    assert_eq!(error_at(&job, 0)["code"], "reference_not_found");
    assert_eq!(error_at(&job, 0)["param"], "account_external_id");
    assert_eq!(error_at(&job, 1)["code"], "reference_not_found");
    assert_eq!(
        error_at(&job, 1)["param"],
        "line_items[1].product_external_id"
    );
    assert_eq!(error_at(&job, 2)["code"], "invalid_account_type");
    assert_eq!(error_at(&job, 3)["code"], "invalid_account_type");
    assert_eq!(error_at(&job, 4)["code"], "missing_required_field");
    assert_eq!(error_at(&job, 4)["param"], "line_items[0].sell_rate");
    assert_eq!(one(&app, "orders", "O-6").await["order_number"], "PO-00001");
}

fn entry(external_id: &str, date: &str, lines: Value) -> Value {
    json!({"external_id": external_id, "entry_date": date, "description": "opening", "lines": lines})
}

#[tokio::test]
async fn journal_entries_post_balanced_lines_to_leaf_accounts() {
    let app = spawn_app().await;
    let (_, page) = app.get_entity("gl-accounts?limit=100").await;
    let rent_id = page["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|a| a["account_number"] == "6010")
        .expect("rent")["id"]
        .clone();
    let job = app
        .import_to(
            "journal-entries",
            &bulk(
                vec![
                    entry(
                        "JE-1",
                        "2026-01-01",
                        json!([
                        {"gl_account_id": rent_id, "debit_amount": 500},
                        {"gl_account_number": "1010", "credit_amount": 500}]),
                    ),
                    entry(
                        "JE-2",
                        "2026-01-01",
                        json!([
                        {"gl_account_number": "6010", "debit_amount": 500},
                        {"gl_account_number": "1010", "credit_amount": 300}]),
                    ),
                    entry(
                        "JE-3",
                        "2026-01-01",
                        json!([
                        {"gl_account_number": "6010", "debit_amount": 10},
                        {"gl_account_number": "1000", "credit_amount": 10}]),
                    ),
                    entry(
                        "JE-4",
                        "2026-01-01",
                        json!([
                        {"gl_account_number": "6010", "debit_amount": 10},
                        {"gl_account_number": "9999", "credit_amount": 10}]),
                    ),
                ],
                "skip",
            ),
        )
        .await;
    assert_eq!(job["succeeded_records"], 1, "{job}");
    assert_eq!(error_at(&job, 1)["code"], "gl_imbalance");
    assert_eq!(
        error_at(&job, 1)["error"],
        "GL posting imbalance [MANUAL]: debits=500.0000 credits=300.0000 diff=200.0000"
    );
    assert_eq!(error_at(&job, 2)["code"], "account_is_header");
    assert_eq!(error_at(&job, 2)["param"], "lines[1].gl_account_number");
    assert_eq!(error_at(&job, 3)["code"], "reference_not_found");
    assert_eq!(error_at(&job, 3)["param"], "lines[1].gl_account_number");
    let je = one(&app, "journal-entries", "JE-1").await;
    assert_eq!(je["entry_number"], "JE-00001");
    assert_eq!(je["total_debits"], 500);
    assert_eq!(je["lines"][0]["gl_account_number"], "6010");
}

#[tokio::test]
async fn a_closed_period_refuses_entries_unless_bypassed_with_migration_write() {
    let app = spawn_app().await;
    app.close_period("2026-01-31").await;
    let lines = json!([{"gl_account_number": "6010", "debit_amount": 1}, {"gl_account_number": "1010", "credit_amount": 1}]);
    let mut bypassed = entry("JE-2", "2026-01-15", lines.clone());
    bypassed["bypass_period_check"] = json!(true);
    let job = app
        .import_to(
            "journal-entries",
            &bulk(
                vec![
                    entry("JE-1", "2026-01-15", lines.clone()),
                    bypassed,
                    entry("JE-3", "2026-02-01", lines.clone()),
                ],
                "skip",
            ),
        )
        .await;
    assert_eq!(job["succeeded_records"], 2, "{job}");
    assert_eq!(error_at(&job, 0)["code"], "period_closed");
    assert_eq!(error_at(&job, 0)["param"], "entry_date");
    assert_eq!(
        one(&app, "journal-entries", "JE-2").await["bypassed_period_check"],
        true
    );

    // One at a time, the bypass needs migration:write.
    let mut single = entry("JE-4", "2026-01-20", lines.clone());
    single["bypass_period_check"] = json!(true);
    single["external_source"] = json!("shopify");
    let accountant = app
        .key_with(domain::Mode::Test, &["accounting:write", "accounting:read"])
        .await;
    let path = format!("/v1/entities/{}/journal-entries", app.entity_id);
    let response = app
        .client
        .post(app.url(&path))
        .bearer_auth(&accountant)
        .json(&single)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 422);
    let error: Value = response.json().await.expect("json");
    assert_eq!(error["code"], "period_closed");
    assert!(
        error["hint"]
            .as_str()
            .expect("hint")
            .contains("migration:write")
    );
    let (status, created) = app.send(Method::POST, &path, Some(&single)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["bypassed_period_check"], true);
}

#[tokio::test]
async fn bills_belong_to_vendors_and_payments_reduce_their_balance() {
    let app = spawn_app().await;
    load_basics(&app).await;
    let job = app
        .import_to(
            "vendor-bills",
            &bulk(
                vec![
                    bill("B-1", "V-1", 100.0),
                    bill("B-2", "V-1", 40.0),
                    bill("B-3", "C-1", 10.0),
                ],
                "skip",
            ),
        )
        .await;
    assert_eq!(job["succeeded_records"], 2, "{job}");
    assert_eq!(error_at(&job, 2)["code"], "account_not_vendor");
    assert_eq!(error_at(&job, 2)["param"], "vendor_external_id");

    let job = app
        .import_to(
            "ap-payments",
            &bulk(
                vec![
                    payment("PAY-1", "V-1", 70.0, json!([{"bill_external_id": "B-1", "amount": 60}, {"bill_external_id": "B-2", "amount": 10}])),
                    payment("PAY-2", "V-1", 50.0, json!([{"bill_external_id": "B-1", "amount": 50}])),
                    payment("PAY-3", "V-2", 5.0, json!([{"bill_external_id": "B-2", "amount": 5}])),
                    payment("PAY-4", "V-1", 5.0, json!([{"bill_external_id": "B-2", "amount": 3}, {"bill_external_id": "B-2", "amount": 3}])),
                    payment("PAY-5", "V-1", 1.0, json!([{"bill_external_id": "B-404", "amount": 1}])),
                ],
                "skip",
            ),
        )
        .await;
    assert_eq!(job["succeeded_records"], 1, "{job}");
    assert_eq!(error_at(&job, 1)["code"], "amount_exceeds_bill_balance_due");
    assert_eq!(
        error_at(&job, 1)["error"],
        "bill BILL-00001 has 40 open; the payment applies 50 to it"
    );
    assert_eq!(error_at(&job, 1)["param"], "applications[0].amount");
    assert_eq!(error_at(&job, 2)["code"], "vendor_mismatch");
    assert_eq!(
        error_at(&job, 2)["param"],
        "applications[0].bill_external_id"
    );
    assert_eq!(error_at(&job, 3)["code"], "applications_exceed_amount");
    assert_eq!(error_at(&job, 4)["code"], "reference_not_found");

    let b1 = one(&app, "vendor-bills", "B-1").await;
    assert_eq!(
        (
            b1["bill_total"].clone(),
            b1["amount_paid"].clone(),
            b1["balance_due"].clone()
        ),
        (json!(100), json!(60), json!(40))
    );
    assert_eq!(b1["bill_number"], "BILL-00001");
    let b2 = one(&app, "vendor-bills", "B-2").await;
    assert_eq!(b2["balance_due"], 30);
    let pay = one(&app, "ap-payments", "PAY-1").await;
    assert_eq!(pay["amount_applied"], 70);
    assert_eq!(pay["applications"][0]["bill_number"], "BILL-00001");

    // Updating a payment takes its old applications off the bills first.
    let job = app
        .import_to(
            "ap-payments",
            &bulk(
                vec![payment(
                    "PAY-1",
                    "V-1",
                    70.0,
                    json!([{"bill_external_id": "B-1", "amount": 100}]),
                )],
                "update",
            ),
        )
        .await;
    assert_eq!(error_at(&job, 0)["code"], "applications_exceed_amount");
    let job = app
        .import_to(
            "ap-payments",
            &bulk(
                vec![payment(
                    "PAY-1",
                    "V-1",
                    100.0,
                    json!([{"bill_external_id": "B-1", "amount": 100}]),
                )],
                "update",
            ),
        )
        .await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(one(&app, "vendor-bills", "B-1").await["balance_due"], 0);
    assert_eq!(one(&app, "vendor-bills", "B-2").await["balance_due"], 40);

    // A bill cannot shrink below what was paid on it.
    let job = app
        .import_to(
            "vendor-bills",
            &bulk(vec![bill("B-1", "V-1", 90.0)], "update"),
        )
        .await;
    assert_eq!(error_at(&job, 0)["code"], "bill_total_below_amount_paid");
}

#[tokio::test]
async fn two_workers_paying_one_bill_at_once_never_take_it_below_zero() {
    let app = spawn_app_with(AppOptions {
        workers: 2,
        ..AppOptions::default()
    })
    .await;
    load_basics(&app).await;
    app.import_to(
        "vendor-bills",
        &bulk(vec![bill("B-1", "V-1", 100.0)], "skip"),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let body = bulk(
            vec![payment(
                &format!("PAY-{i}"),
                "V-1",
                30.0,
                json!([{"bill_external_id": "B-1", "amount": 30}]),
            )],
            "skip",
        );
        ids.push(
            app.submit_to("ap-payments", &body).await["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    let mut succeeded = 0;
    for id in &ids {
        let job = app.wait_for_job(id).await;
        succeeded += job["succeeded_records"].as_i64().expect("count");
        if job["failed_records"] == 1 {
            assert_eq!(job["errors"][0]["code"], "amount_exceeds_bill_balance_due");
        }
    }
    assert_eq!(succeeded, 3, "three payments of 30 fit in 100");
    let b1 = one(&app, "vendor-bills", "B-1").await;
    assert_eq!(
        (b1["amount_paid"].clone(), b1["balance_due"].clone()),
        (json!(90), json!(10))
    );
}

#[tokio::test]
async fn every_resource_supports_dry_runs_that_write_nothing() {
    let app = spawn_app().await;
    load_basics(&app).await;
    let before = app.snapshot().await;
    for (resource, record) in [
        (
            "accounts",
            json!({"external_id": "C-9", "name": "New", "account_type": "lead"}),
        ),
        (
            "orders",
            json!({"external_id": "O-9", "account_external_id": "C-1", "order_date": "2026-01-15",
                          "line_items": [{"product_external_id": "P-1", "quantity": 1}]}),
        ),
        (
            "journal-entries",
            entry(
                "JE-9",
                "2026-01-01",
                json!([{"gl_account_number": "6010", "debit_amount": 1},
                                                              {"gl_account_number": "1010", "credit_amount": 1}]),
            ),
        ),
        ("vendor-bills", bill("B-9", "V-1", 10.0)),
        ("ap-payments", payment("PAY-9", "V-1", 10.0, json!([]))),
    ] {
        let (status, result) = app.dry_run_to(resource, &bulk(vec![record], "skip")).await;
        assert_eq!(status, 200, "{resource}: {result}");
        assert_eq!(result["created_records"], 1, "{resource}: {result}");
        assert_eq!(result["resource"], resource);
    }
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn conflict_modes_apply_to_every_resource() {
    let app = spawn_app().await;
    load_basics(&app).await;
    // skip: unchanged; error: the whole batch is refused; replace: a new record.
    let renamed =
        json!({"external_id": "V-1", "name": "Paper Supply Ltd", "account_type": "vendor"});
    assert_eq!(
        app.import_to("accounts", &bulk(vec![renamed.clone()], "skip"))
            .await["status"],
        "completed"
    );
    assert_eq!(
        one(&app, "accounts", "V-1").await["name"],
        "Paper Supply Co"
    );
    let job = app
        .import_to(
            "accounts",
            &bulk(
                vec![
                    json!({"external_id": "V-3", "name": "X", "account_type": "vendor"}),
                    renamed.clone(),
                ],
                "error",
            ),
        )
        .await;
    assert_eq!(job["status"], "failed");
    assert_eq!(error_at(&job, 1)["code"], "external_id_conflict");
    assert_eq!(error_at(&job, 0)["code"], "batch_aborted");
    let job = app
        .import_to("accounts", &bulk(vec![renamed], "replace"))
        .await;
    assert_eq!(job["status"], "completed");
    let replaced = one(&app, "accounts", "V-1").await;
    assert_eq!(replaced["name"], "Paper Supply Ltd");
    assert_eq!(
        replaced["account_number"], "VEND-00003",
        "V-3 was rolled back, so its number was not used"
    );
    let (_, all) = app.get_entity("accounts?include_count=true").await;
    assert_eq!(all["total_count"], 5);
}

#[tokio::test]
async fn inactive_accounts_and_paid_bills_guard_their_rules() {
    let app = spawn_app().await;
    load_basics(&app).await;
    sqlx::query("update gl_accounts set is_active = false where account_number = '6020'")
        .execute(&app.pool)
        .await
        .expect("deactivate");
    let job = app
        .import_to(
            "journal-entries",
            &bulk(
                vec![entry(
                    "JE-1",
                    "2026-01-01",
                    json!([
                    {"gl_account_number": "6020", "debit_amount": 5},
                    {"gl_account_number": "1010", "credit_amount": 5}]),
                )],
                "skip",
            ),
        )
        .await;
    assert_eq!(error_at(&job, 0)["code"], "account_inactive");
    assert_eq!(error_at(&job, 0)["param"], "lines[0].gl_account_number");

    app.import_to(
        "vendor-bills",
        &bulk(vec![bill("B-1", "V-1", 100.0)], "skip"),
    )
    .await;
    app.import_to(
        "ap-payments",
        &bulk(
            vec![payment(
                "PAY-1",
                "V-1",
                10.0,
                json!([{"bill_external_id": "B-1", "amount": 10}]),
            )],
            "skip",
        ),
    )
    .await;
    let job = app
        .import_to(
            "vendor-bills",
            &bulk(vec![bill("B-1", "V-2", 100.0)], "update"),
        )
        .await;
    assert_eq!(error_at(&job, 0)["code"], "bill_has_payments");
    assert_eq!(error_at(&job, 0)["param"], "vendor_external_id");
    let job = app
        .import_to(
            "vendor-bills",
            &bulk(vec![json!({"external_id": "B-2", "vendor_external_id": "V-1", "bill_date": "2026-01-10",
                              "items": [{"quantity": 2, "unit_cost": 5, "amount": 11, "gl_account_number": "6030"}]})], "skip"),
        )
        .await;
    assert_eq!(error_at(&job, 0)["code"], "amount_mismatch");
    assert_eq!(error_at(&job, 0)["param"], "items[0].amount");
}
