//! The vendor's contract, executable: requests shaped as the pages of
//! docs.arcuserp.com show them, one test per documented example or rule,
//! each naming the page it comes from. Where the pages and the service
//! differ on purpose, the README says why.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{bulk, products, spawn_app};

/// The keys of an error envelope, sorted.
fn keys(error: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = error
        .as_object()
        .expect("an error is an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

/// The id of the entity's GL account with this number.
async fn gl_account_id(app: &crate::helpers::TestApp, number: &str) -> String {
    let (status, page) = app.get_entity("gl-accounts?limit=100").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|account| account["account_number"] == number)
        .and_then(|account| account["id"].as_str())
        .unwrap_or_else(|| panic!("no GL account {number}"))
        .to_owned()
}

/// `POST /v1/entities/{entity}/{resource}` with `body`: the status and the
/// answer.
async fn post(app: &crate::helpers::TestApp, resource: &str, body: Value) -> (StatusCode, Value) {
    app.send(
        Method::POST,
        &format!("/v1/entities/{}/{resource}", app.entity_id),
        Some(&body),
    )
    .await
}

/// A single create refused as a rule of the record: 422 with `code` at
/// `param`.
async fn refused(
    app: &crate::helpers::TestApp,
    resource: &str,
    body: Value,
    code: &str,
    param: &str,
) {
    let (status, error) = post(app, resource, body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(
        (error["error"].as_str(), error["param"].as_str()),
        (Some(code), Some(param)),
        "{error}"
    );
}

/// Creates one record through `POST /v1/entities/{entity}/{resource}` and
/// returns what it answered, which must be 201.
async fn create(app: &crate::helpers::TestApp, resource: &str, body: Value) -> Value {
    let (status, created) = post(app, resource, body).await;
    assert_eq!(status, StatusCode::CREATED, "{resource}: {created}");
    created
}

/// A vendor account and two products with a list price and a cost.
async fn vendor_and_products(app: &crate::helpers::TestApp) -> (Value, Value, Value) {
    let vendor = create(
        app,
        "accounts",
        json!({"name": "Acme Supply", "account_type": "vendor"}),
    )
    .await;
    let dome = create(
        app,
        "products",
        json!({"title": "Dome Riser", "product_type": "physical", "list_price": 5, "cost": 3}),
    )
    .await;
    let flat = create(
        app,
        "products",
        json!({"title": "Flat Riser", "product_type": "physical", "list_price": 5, "cost": 3}),
    )
    .await;
    (vendor, dome, flat)
}

/// concepts/errors, "Error envelope": `error` is the machine-readable key,
/// `code` the same key, `hint` the sentence, `param` null when none.
#[tokio::test]
async fn errors_page_envelope_of_a_record_not_found() {
    let app = spawn_app().await;
    let (status, error) = app.get_entity(&format!("orders/{}", Uuid::now_v7())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        keys(&error),
        ["code", "error", "hint", "param", "request_id", "type"],
        "{error}"
    );
    assert_eq!(error["error"], "not_found");
    assert_eq!(error["code"], "not_found");
    assert_eq!(error["type"], "not_found");
    assert!(error["param"].is_null());
    assert!(
        error["hint"].as_str().is_some_and(|h| h.contains("order")),
        "{error}"
    );
    assert!(
        error["request_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("req_"))
    );
}

/// concepts/errors: a client branches on `error`, so every error path puts
/// the key there: a validation error names its `param`, a scope error its
/// `required` scope, a rate-limit error is `rate_limit_exceeded`.
#[tokio::test]
async fn errors_page_error_is_the_key_on_every_path() {
    let app = spawn_app().await;
    let (status, error) = app
        .send(
            Method::POST,
            &app.bulk_path("products"),
            Some(&json!({"records": products(1)})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"], "missing_parameter", "{error}");
    assert_eq!(error["error"], error["code"]);
    assert_eq!(error["param"], "external_source");
    assert_eq!(error["type"], "validation_error");

    let reader = app.key_with(domain::Mode::Test, &["products:read"]).await;
    let (status, error) = app
        .send_as(
            &reader,
            Method::POST,
            &app.bulk_path("products"),
            Some(&bulk(products(1), "skip")),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error["error"], "insufficient_scope", "{error}");
    assert_eq!(error["required"], "migration:write");
    assert_eq!(error["type"], "permission_error");
    assert!(error["param"].is_null());

    let (status, error) = app
        .send_as(
            "ark_test_ent_nothing",
            Method::GET,
            &app.job_path(&Uuid::now_v7().to_string()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error["error"], "invalid_api_key", "{error}");
    assert_eq!(error["code"], "invalid_api_key");
}

/// purchasing/create-an-ap-payment: an AP payment is written with
/// `purchasing:write`; a key that carries `payments:write` instead, as keys
/// issued before did, still serves.
#[tokio::test]
async fn create_an_ap_payment_page_needs_purchasing_write() {
    let app = spawn_app().await;
    let (status, _) = post(
        &app,
        "accounts",
        json!({"name": "Paper Supply Co", "account_type": "vendor",
                         "external_source": "quickbooks", "external_id": "V-1"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let payment = |n: u32| {
        json!({"external_source": "quickbooks", "external_id": format!("PAY-{n}"),
               "vendor_external_id": "V-1", "payment_date": "2026-01-15",
               "amount": 25, "method": "check"})
    };
    let path = format!("/v1/entities/{}/ap-payments", app.entity_id);
    for (n, scope) in [(1, "purchasing:write"), (2, "payments:write")] {
        let key = app.key_with(domain::Mode::Test, &[scope]).await;
        let (status, created) = app
            .send_as(&key, Method::POST, &path, Some(&payment(n)))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{scope}: {created}");
    }
    let key = app.key_with(domain::Mode::Test, &["orders:write"]).await;
    let (status, error) = app
        .send_as(&key, Method::POST, &path, Some(&payment(3)))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        error["required"], "purchasing:write",
        "the vendor's scope is named"
    );

    let key = app.key_with(domain::Mode::Test, &["purchasing:read"]).await;
    let (status, page) = app.send_as(&key, Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["data"].as_array().map(Vec::len), Some(2));
}

/// webhooks/create-a-webhook-endpoint-subscription: "Requires
/// webhooks:manage scope"; a migration key keeps managing its endpoints.
#[tokio::test]
async fn webhook_endpoint_pages_need_webhooks_manage() {
    let app = spawn_app().await;
    let path = format!("/v1/entities/{}/webhook-endpoints", app.entity_id);
    let body = json!({"url": "https://hooks.example.com/arcus"});
    for scopes in [
        &["webhooks:manage"][..],
        &["migration:write", "migration:read"],
    ] {
        let key = app.key_with(domain::Mode::Test, scopes).await;
        let (status, created) = app.send_as(&key, Method::POST, &path, Some(&body)).await;
        assert_eq!(status, StatusCode::CREATED, "{scopes:?}: {created}");
        let (status, _) = app.send_as(&key, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{scopes:?}");
    }
    let key = app.key_with(domain::Mode::Test, &["products:write"]).await;
    let (status, error) = app.send_as(&key, Method::POST, &path, Some(&body)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error["required"], "webhooks:manage");
}

/// guides/reconciliation-api: the reconciliation reads are open to an
/// accountant's key (`accounting:read`) and to a migration key
/// (`migration:read`).
#[tokio::test]
async fn reconciliation_guide_reads_with_accounting_or_migration_read() {
    let app = spawn_app().await;
    for scope in ["accounting:read", "migration:read"] {
        let key = app.key_with(domain::Mode::Test, &[scope]).await;
        for read in ["reconciliation/counts", "reconciliation/trial-balance"] {
            let (status, body) = app
                .send_as(
                    &key,
                    Method::GET,
                    &format!("/v1/entities/{}/{read}", app.entity_id),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{scope} {read}: {body}");
        }
    }
}

/// authentication, "Scopes": every scope of the vendor's catalogue can be
/// issued, so one key serves this service and the rest of the ERP's API.
#[tokio::test]
async fn authentication_page_scopes_can_be_issued() {
    let app = spawn_app().await;
    let catalogue = [
        "inventory:read",
        "inventory:write",
        "fulfillment:read",
        "fulfillment:write",
        "returns:read",
        "returns:write",
        "accounting:approve",
        "accounting:close_period",
        "webhooks:manage",
    ];
    let key = app.key_with(domain::Mode::Test, &catalogue).await;
    let (status, _) = app
        .send_as(
            &key,
            Method::GET,
            &format!("/v1/entities/{}/webhook-endpoints", app.entity_id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

/// accounting/create-a-manual-journal-entry and
/// accounting/get-a-journal-entry-line: a line names its GL account as
/// `account_id`, and an error about it names `lines[i].account_id`.
#[tokio::test]
async fn create_a_manual_journal_entry_page_lines_take_account_id() {
    let app = spawn_app().await;
    let rent = gl_account_id(&app, "6010").await;
    let cash = gl_account_id(&app, "1010").await;
    let path = format!("/v1/entities/{}/journal-entries", app.entity_id);
    let (status, entry) = app
        .send(
            Method::POST,
            &path,
            Some(&json!({
                "entry_date": "2026-01-31",
                "description": "January rent",
                "lines": [
                    {"account_id": rent, "debit_amount": 1500},
                    {"account_id": cash, "credit_amount": 1500},
                ],
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{entry}");
    assert_eq!(entry["lines"][0]["gl_account_id"], rent.as_str());
    assert_eq!(entry["lines"][1]["gl_account_number"], "1010");

    let (status, error) = app
        .send(
            Method::POST,
            &path,
            Some(&json!({
                "entry_date": "2026-01-31",
                "lines": [
                    {"account_id": Uuid::now_v7(), "debit_amount": 5},
                    {"account_id": cash, "credit_amount": 5},
                ],
            })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["param"], "lines[0].account_id", "{error}");

    let (status, error) = app
        .send(
            Method::POST,
            &path,
            Some(&json!({
                "entry_date": "2026-01-31",
                "lines": [
                    {"account_id": rent, "gl_account_id": cash, "debit_amount": 5},
                    {"account_id": cash, "credit_amount": 5},
                ],
            })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["error"], "invalid_field", "{error}");
    assert_eq!(error["param"], "lines[0].account_id", "{error}");
}

/// guides/creating-products-kits-variants: a kit's components name their
/// product as `component_product_id`.
#[tokio::test]
async fn creating_products_kits_variants_guide_components_take_component_product_id() {
    let app = spawn_app().await;
    let path = format!("/v1/entities/{}/products", app.entity_id);
    let (status, stone) = app
        .send(
            Method::POST,
            &path,
            Some(&json!({"title": "Stone", "product_type": "physical", "sku": "STONE"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{stone}");
    let (status, kit) = app
        .send(
            Method::POST,
            &path,
            Some(&json!({
                "title": "Riser Kit",
                "sku": "RISER-KIT",
                "product_type": "kit",
                "components": [{"component_product_id": stone["id"], "quantity": 2}],
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{kit}");
    assert_eq!(kit["components"][0]["product_id"], stone["id"]);
    assert_eq!(kit["components"][0]["quantity"], 2);
}

/// guides/creating-accounts-with-addresses: an address's lines may be
/// `street1` and `street2`, its state `region` and its zip `postal_code`;
/// none of them is dropped.
#[tokio::test]
async fn creating_accounts_with_addresses_guide_keeps_the_address_aliases() {
    let app = spawn_app().await;
    let (status, account) = post(
        &app,
        "accounts",
        json!({
            "name": "Acme Landscaping",
            "account_type": "business",
            "addresses": [{
                "type": "billing",
                "street1": "100 Main St",
                "street2": "Suite 4",
                "city": "Springfield",
                "region": "IL",
                "postal_code": "62701",
                "country": "US",
            }],
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{account}");
    let address = &account["addresses"][0];
    assert_eq!(address["line1"], "100 Main St", "{account}");
    assert_eq!(address["line2"], "Suite 4");
    assert_eq!(address["state"], "IL");
    assert_eq!(address["zip"], "62701");
}

/// Issue 16's rule for exports: an empty string in an optional field is the
/// field absent, as a spreadsheet's empty cell. A journal line with
/// `"description": ""` posts; a product with `"sku": ""` has no SKU.
#[tokio::test]
async fn an_empty_optional_field_is_absent() {
    let app = spawn_app().await;
    let cash = gl_account_id(&app, "1010").await;
    let rent = gl_account_id(&app, "6010").await;
    let (status, entry) = post(
        &app,
        "journal-entries",
        json!({
            "entry_date": "2026-01-31",
            "description": "",
            "lines": [
                {"account_id": rent, "debit_amount": 10, "description": ""},
                {"account_id": cash, "credit_amount": 10, "description": "Cash"},
            ],
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{entry}");
    assert!(entry["description"].is_null());
    assert!(entry["lines"][0]["description"].is_null());
    assert_eq!(entry["lines"][1]["description"], "Cash");

    let (status, product) = post(
        &app,
        "products",
        json!({"title": "Mug", "product_type": "physical", "sku": "", "list_price": ""}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{product}");
    assert!(product["sku"].is_null());
    assert!(product["list_price"].is_null());

    refused(
        &app,
        "products",
        json!({"title": " ", "product_type": "physical"}),
        "missing_required_field",
        "title",
    )
    .await;
}

/// orders/create-an-order-any-document_type: the example has no
/// `order_date`, and the schema gives it as a date-time.
#[tokio::test]
async fn create_an_order_page_order_date_is_optional_and_may_be_a_date_time() {
    let app = spawn_app().await;
    let base = format!("/v1/entities/{}", app.entity_id);
    let (status, account) = app
        .send(
            Method::POST,
            &format!("{base}/accounts"),
            Some(&json!({"name": "Acme Landscaping", "account_type": "business"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{account}");
    let (status, product) = app
        .send(
            Method::POST,
            &format!("{base}/products"),
            Some(&json!({"title": "Stone", "product_type": "physical", "list_price": 4})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{product}");
    let order = |order_date: Option<&str>| {
        let mut body = json!({
            "document_type": "quote",
            "account_id": account["id"],
            "notes": "Spring install",
            "line_items": [{"product_id": product["id"], "quantity": 5}],
        });
        if let Some(date) = order_date {
            body["order_date"] = json!(date);
        }
        body
    };
    let today = || chrono::Utc::now().date_naive().to_string();
    let before = today();
    let (status, quote) = app
        .send(Method::POST, &format!("{base}/orders"), Some(&order(None)))
        .await;
    let after = today();
    assert_eq!(status, StatusCode::CREATED, "{quote}");
    assert!(
        quote["order_date"] == before.as_str() || quote["order_date"] == after.as_str(),
        "the day it is loaded: {quote}"
    );
    assert_eq!(quote["order_total"], 20);

    let (status, quote) = app
        .send(
            Method::POST,
            &format!("{base}/orders"),
            Some(&order(Some("2023-11-07T23:31:56-05:00"))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{quote}");
    assert_eq!(quote["order_date"], "2023-11-07", "the date as written");
}

/// guides/purchase-to-pay-flow, stage 1: a purchase order's lines are priced
/// by `cost_rate` (24 x 18.00 + 12 x 15.00), not by the products' list price;
/// the example's `location_id`, `payment_terms` and line `notes` are fields
/// the service does not keep, and it says so.
#[tokio::test]
async fn purchase_to_pay_guide_prices_a_purchase_order_by_cost_rate() {
    let app = spawn_app().await;
    let (vendor, dome, flat) = vendor_and_products(&app).await;
    let po = create(
        &app,
        "orders",
        json!({
            "document_type": "purchase_order",
            "account_id": vendor["id"],
            "location_id": "loc_main_warehouse_uuid",
            "payment_terms": "Net30",
            "line_items": [
                {"product_id": dome["id"], "quantity": 24, "cost_rate": 18.00,
                 "notes": "Dome Riser Kit - Q2 restock"},
                {"product_id": flat["id"], "quantity": 12, "cost_rate": 15.00},
            ],
        }),
    )
    .await;
    assert_eq!(po["order_total"], 612, "{po}");
    assert_eq!(po["line_items"][0]["cost_rate"], 18);
    assert_eq!(po["line_items"][0]["line_total"], 432);
    assert_eq!(po["line_items"][1]["line_total"], 180);
    assert_eq!(
        po["ignored_fields"],
        json!([
            {"field": "line_items[].notes", "records": 1},
            {"field": "location_id", "records": 1},
            {"field": "payment_terms", "records": 1},
        ]),
        "{po}"
    );

    // Without a cost_rate a purchase order line costs what the product does;
    // a sales line is priced at the list price and keeps the product's cost.
    let po = create(
        &app,
        "orders",
        json!({
            "document_type": "purchase_order",
            "account_id": vendor["id"],
            "line_items": [{"product_id": dome["id"], "quantity": 2}],
        }),
    )
    .await;
    assert_eq!(po["order_total"], 6, "{po}");
    let customer = create(
        &app,
        "accounts",
        json!({"name": "Acme Landscaping", "account_type": "business"}),
    )
    .await;
    let order = create(
        &app,
        "orders",
        json!({
            "account_id": customer["id"],
            "line_items": [{"product_id": dome["id"], "quantity": 2}],
        }),
    )
    .await;
    assert_eq!(order["order_total"], 10, "{order}");
    assert_eq!(order["line_items"][0]["cost_rate"], 3, "{order}");
    assert_eq!(order["ignored_fields"], json!([]));
}

/// purchasing/create-a-vendor-bill: an item's `tax_rate` is kept and taxed
/// (a percentage: the page gives no unit, see the README): 100 at 8.25%
/// makes a bill of 108.25, and payables are credited with all of it.
#[tokio::test]
async fn create_a_vendor_bill_page_taxes_an_item_by_tax_rate() {
    let app = spawn_app().await;
    let (vendor, dome, _) = vendor_and_products(&app).await;
    let supplies = gl_account_id(&app, "6010").await;
    let bill = create(
        &app,
        "vendor-bills",
        json!({
            "vendor_id": vendor["id"],
            "bill_date": "2026-01-15",
            "items": [
                {"description": "Risers", "amount": 100, "product_id": dome["id"],
                 "quantity": 4, "unit_cost": 25, "tax_rate": 8.25,
                 "gl_account_id": supplies},
                {"description": "Freight", "amount": 20, "gl_account_id": supplies},
            ],
        }),
    )
    .await;
    assert_eq!(bill["subtotal"], 120, "{bill}");
    assert_eq!(bill["tax_total"], 8.25, "{bill}");
    assert_eq!(bill["bill_total"], 128.25, "{bill}");
    assert_eq!(bill["balance_due"], 128.25);
    assert_eq!(bill["items"][0]["tax_rate"], 8.25);
    assert_eq!(bill["items"][0]["tax_amount"], 8.25);
    assert_eq!(bill["items"][1]["tax_amount"], 0);
    assert!(bill["items"][1]["tax_rate"].is_null());

    let (status, balance) = app
        .get_entity("reconciliation/trial-balance?as_of_date=2026-01-31")
        .await;
    assert_eq!(status, StatusCode::OK, "{balance}");
    assert_eq!(balance["totals"]["balance"], 0, "{balance}");
    assert_eq!(balance["totals"]["debit_total"], 128.25, "{balance}");

    let (status, error) = post(
        &app,
        "vendor-bills",
        json!({
            "vendor_id": vendor["id"],
            "bill_date": "2026-01-15",
            "items": [{"amount": 100, "tax_rate": 101, "gl_account_id": supplies}],
        }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["param"], "items[0].tax_rate", "{error}");
}

/// guides/purchase-to-pay-flow, stage 4: a payment names the bill it pays as
/// `bill_id` on the payment itself, and the bill is paid by it.
#[tokio::test]
async fn purchase_to_pay_guide_applies_a_payment_to_its_bill_id() {
    let app = spawn_app().await;
    let (vendor, _, _) = vendor_and_products(&app).await;
    let supplies = gl_account_id(&app, "6010").await;
    let bill = create(
        &app,
        "vendor-bills",
        json!({
            "vendor_id": vendor["id"],
            "bill_date": "2026-01-15",
            "items": [{"amount": 612, "gl_account_id": supplies}],
        }),
    )
    .await;
    let payment = create(
        &app,
        "ap-payments",
        json!({
            "vendor_id": vendor["id"],
            "bill_id": bill["id"],
            "payment_date": "2026-02-14",
            "amount": 500,
            "method": "ach",
        }),
    )
    .await;
    assert_eq!(payment["amount_applied"], 500, "{payment}");
    assert_eq!(payment["applications"][0]["bill_id"], bill["id"]);
    assert_eq!(payment["ignored_fields"], json!([]));
    let (status, bill) = app
        .get_entity(&format!(
            "vendor-bills/{}",
            bill["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bill["balance_due"], 112, "{bill}");

    // More than the bill has open is the bill's error, named as given.
    refused(
        &app,
        "ap-payments",
        json!({
            "vendor_id": vendor["id"],
            "bill_id": bill["id"],
            "payment_date": "2026-02-15",
            "amount": 200,
            "method": "ach",
        }),
        "amount_exceeds_bill_balance_due",
        "amount",
    )
    .await;

    // A bill and applications at once is ambiguous.
    let (status, error) = post(
        &app,
        "ap-payments",
        json!({
            "vendor_id": vendor["id"],
            "bill_id": bill["id"],
            "payment_date": "2026-02-15",
            "amount": 10,
            "method": "ach",
            "applications": [{"bill_id": bill["id"], "amount": 10}],
        }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["param"], "bill_id", "{error}");
}

/// guides/creating-accounts-with-addresses: with no address flagged, the
/// first address of each type is its account's default.
#[tokio::test]
async fn creating_accounts_with_addresses_guide_defaults_the_first_of_each_type() {
    let app = spawn_app().await;
    let address = |kind: &str, city: &str| json!({"type": kind, "city": city});
    let account = create(
        &app,
        "accounts",
        json!({
            "name": "Acme Landscaping",
            "account_type": "business",
            "addresses": [
                address("shipping", "Peoria"),
                address("billing", "Springfield"),
                address("shipping", "Decatur"),
                address("billing", "Chicago"),
            ],
        }),
    )
    .await;
    let flags: Vec<(bool, bool)> = account["addresses"]
        .as_array()
        .expect("addresses")
        .iter()
        .map(|a| {
            (
                a["is_default_billing"] == true,
                a["is_default_shipping"] == true,
            )
        })
        .collect();
    assert_eq!(
        flags,
        [(false, true), (true, false), (false, false), (false, false)],
        "{account}"
    );

    // A flag given is kept, and no other address of its type takes it.
    let mut second = address("billing", "Chicago");
    second["is_default_billing"] = json!(true);
    let account = create(
        &app,
        "accounts",
        json!({
            "name": "Acme Irrigation",
            "account_type": "business",
            "addresses": [address("billing", "Springfield"), second],
        }),
    )
    .await;
    assert_eq!(account["addresses"][0]["is_default_billing"], false);
    assert_eq!(account["addresses"][1]["is_default_billing"], true);
}

/// guides/reconciliation-api, "Trial balance": `entity_id`, `rows` of
/// `account_id`, `account_number`, `account_name`, `debit_total`,
/// `credit_total`, `balance`, and `totals` whose balance is 0.00 when the
/// books tie.
#[tokio::test]
async fn reconciliation_guide_trial_balance_has_rows_and_totals() {
    let app = spawn_app().await;
    let rent = gl_account_id(&app, "6010").await;
    let cash = gl_account_id(&app, "1010").await;
    create(
        &app,
        "journal-entries",
        json!({
            "entry_date": "2026-01-31",
            "lines": [
                {"account_id": rent, "debit_amount": 1500},
                {"account_id": cash, "credit_amount": 1500},
            ],
        }),
    )
    .await;
    let (status, balance) = app
        .get_entity("reconciliation/trial-balance?as_of_date=2026-07-12")
        .await;
    assert_eq!(status, StatusCode::OK, "{balance}");
    assert_eq!(balance["object"], "trial_balance");
    assert_eq!(balance["entity_id"], app.entity_id.to_string());
    assert_eq!(balance["as_of_date"], "2026-07-12");
    assert!(balance["external_source"].is_null());
    let rows = balance["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{balance}");
    assert_eq!(rows[0]["account_id"], cash.as_str());
    assert_eq!(rows[0]["account_number"], "1010");
    assert!(rows[0]["account_name"].is_string());
    assert_eq!(rows[0]["debit_total"], 0);
    assert_eq!(rows[0]["credit_total"], 1500);
    assert_eq!(rows[0]["balance"], -1500);
    assert_eq!(rows[1]["balance"], 1500);
    assert_eq!(
        balance["totals"],
        json!({"debit_total": 1500, "credit_total": 1500, "balance": 0})
    );
}

/// Issue 16, "nothing silently lost": a job, a dry run and a single create
/// report the fields they did not keep, with how many records carried each.
#[tokio::test]
async fn a_field_the_service_does_not_read_is_reported_not_dropped() {
    let app = spawn_app().await;
    let mut records = products(3);
    // Shopify's Vendor column, mapped as it is: a name, not a vendor account.
    records[0]["vendor"] = json!("Acme Supply");
    records[1]["vendor"] = json!("Acme Supply");
    records[1]["tags"] = json!("");
    records[2]["price"] = json!(12.5);
    records[2]["product_type"] = json!("variant_parent");
    records[2]["variants"] = json!([
        {"title": "Small", "product_type": "physical", "sku": "P-2-S", "colour": "red"},
        {"title": "Medium", "product_type": "physical", "sku": "P-2-M", "colour": "blue"},
    ]);
    let expected = json!([
        {"field": "price", "records": 1},
        {"field": "variants[].colour", "records": 1},
        {"field": "vendor", "records": 2},
    ]);

    let (status, dry) = app.dry_run(&bulk(records.clone(), "skip")).await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!(dry["succeeded_records"], 3, "{dry}");
    assert_eq!(dry["ignored_fields"], expected, "{dry}");
    assert_eq!(dry["strict"], false);

    let submitted = app.submit_ok(&bulk(records.clone(), "skip")).await;
    assert_eq!(submitted["ignored_fields"], expected, "{submitted}");
    let job = app
        .wait_for_job(submitted["id"].as_str().expect("id"))
        .await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["ignored_fields"], expected, "{job}");

    let product = create(
        &app,
        "products",
        json!({"title": "Mug", "product_type": "physical", "price": 9, "external_source": ""}),
    )
    .await;
    assert_eq!(
        product["ignored_fields"],
        json!([{"field": "price", "records": 1}])
    );
    assert!(product["list_price"].is_null(), "{product}");
}

/// Issue 16: with `strict=true` a field the service does not read is the
/// record's error `unknown_field`, naming its path; the others load.
#[tokio::test]
async fn strict_refuses_a_field_the_service_does_not_read() {
    let app = spawn_app().await;
    let mut records = products(3);
    records[1]["product_type"] = json!("variant_parent");
    records[1]["variants"] = json!([
        {"title": "Small", "product_type": "physical", "sku": "P-1-S", "colour": "red"},
    ]);
    records[2]["price"] = json!(12.5);
    let body = bulk(records, "skip");
    let strict = |dry_run: bool| {
        format!(
            "{}?strict=true{}",
            app.bulk_path("products"),
            if dry_run { "&dry_run=true" } else { "" }
        )
    };

    let (status, dry) = app.send(Method::POST, &strict(true), Some(&body)).await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!(dry["strict"], true);
    assert_eq!(dry["ignored_fields"], json!([]));
    assert_eq!(dry["failed_records"], 2, "{dry}");

    let (status, submitted) = app.send(Method::POST, &strict(false), Some(&body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{submitted}");
    assert_eq!(submitted["strict"], true);
    let job = app
        .wait_for_job(submitted["id"].as_str().expect("id"))
        .await;
    assert_eq!(job["status"], "partial", "{job}");
    assert_eq!(job["succeeded_records"], 1);
    let errors = job["errors"].as_array().expect("errors");
    let found: Vec<(&Value, &Value, &Value)> = errors
        .iter()
        .map(|e| (&e["index"], &e["code"], &e["param"]))
        .collect();
    assert_eq!(
        found,
        [
            (
                &json!(1),
                &json!("unknown_field"),
                &json!("variants[0].colour")
            ),
            (&json!(2), &json!("unknown_field"), &json!("price")),
        ],
        "{job}"
    );

    let (status, error) = app
        .send(
            Method::POST,
            &format!("/v1/entities/{}/products?strict=true", app.entity_id),
            Some(&json!({"title": "Mug", "product_type": "physical", "price": 9})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["error"], "unknown_field");
    assert_eq!(error["param"], "price");
    assert_eq!(app.count("products").await, 1, "nothing half-written");
}

/// concepts/idempotency: a replayed submission answers as the first did,
/// `Location` included.
#[tokio::test]
async fn idempotency_page_a_replay_has_the_location_of_the_job() {
    let app = spawn_app().await;
    let body = bulk(products(1), "skip");
    let submit = || {
        app.request(Method::POST, &app.bulk_path("products"))
            .header("Idempotency-Key", "replay-location")
            .json(&body)
            .send()
    };
    let first = submit().await.expect("sent");
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let location = first.headers()["location"].clone();
    let replay = submit().await.expect("sent");
    assert_eq!(replay.status(), StatusCode::ACCEPTED);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.headers()["location"], location);
}

/// A job read carries an `ETag`; with it in `If-None-Match` a poll of a job
/// that has not changed is `304 Not Modified`, without a body.
#[tokio::test]
async fn a_job_poll_is_not_modified_while_the_job_is_not() {
    let app = spawn_app().await;
    let job = app.import(&bulk(products(2), "skip")).await;
    let path = app.job_path(job["id"].as_str().expect("id"));
    let first = app.request(Method::GET, &path).send().await.expect("sent");
    assert_eq!(first.status(), StatusCode::OK);
    let etag = first.headers()["etag"].clone();
    let again = app
        .request(Method::GET, &path)
        .header("If-None-Match", etag.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()["etag"], etag);
    assert!(again.bytes().await.expect("body").is_empty());
    let other = app
        .request(Method::GET, &path)
        .header("If-None-Match", "\"something-else\"")
        .send()
        .await
        .expect("sent");
    assert_eq!(other.status(), StatusCode::OK);
}

/// guides/creating-accounts-with-addresses, "Full B2B onboarding graph": an
/// address's `label`, the contacts (`role` stored as `title`) and the tags
/// are kept; the payment method, which a migration cannot carry (a card
/// token of the ERP's processor), is reported as not kept.
#[tokio::test]
async fn creating_accounts_with_addresses_guide_keeps_contacts_tags_and_labels() {
    let app = spawn_app().await;
    let account = create(
        &app,
        "accounts",
        json!({
            "account_type": "business",
            "name": "Acme Wholesale",
            "display_name": "Acme",
            "email": "ap@acme.example",
            "phone": "+1-555-0100",
            "credit_limit": 25000.00,
            "addresses": [
                {"type": "billing", "label": "HQ", "is_default_billing": true,
                 "street1": "1 Acme Way", "city": "Austin", "region": "TX",
                 "postal_code": "78701", "country": "US"},
                {"type": "shipping", "label": "Main Warehouse", "is_default_shipping": true,
                 "street1": "100 Industrial Dr", "city": "Austin", "region": "TX",
                 "postal_code": "78702", "country": "US"},
            ],
            "contacts": [
                {"first_name": "Jane", "last_name": "Doe", "email": "jane@acme.example",
                 "role": "AP Manager", "is_primary": true},
                {"first_name": "Raj", "last_name": "Patel", "phone": "+1-555-0101",
                 "title": "Buyer"},
            ],
            "tags": ["wholesale", "net30", "wholesale", " "],
            "payment_methods": [{"token": "pm_card_visa"}],
        }),
    )
    .await;
    assert_eq!(account["display_name"], "Acme", "{account}");
    assert_eq!(account["addresses"][0]["label"], "HQ");
    assert_eq!(account["addresses"][1]["label"], "Main Warehouse");
    assert_eq!(account["contacts"][0]["title"], "AP Manager", "{account}");
    assert_eq!(account["contacts"][0]["is_primary"], true);
    assert_eq!(account["contacts"][1]["title"], "Buyer");
    assert_eq!(account["contacts"][1]["is_primary"], false);
    assert_eq!(account["tags"], json!(["wholesale", "net30"]));
    assert_eq!(
        account["ignored_fields"],
        json!([{"field": "payment_methods", "records": 1}])
    );

    // Two primary contacts are refused at the second.
    refused(
        &app,
        "accounts",
        json!({
            "account_type": "business",
            "name": "Acme Retail",
            "contacts": [
                {"first_name": "Jane", "is_primary": true},
                {"email": "raj@acme.example", "is_primary": true},
            ],
        }),
        "multiple_primary_contacts",
        "contacts[1].is_primary",
    )
    .await;
}

/// guides/creating-orders, "Canonical scenario": a header-level discount
/// (`{"type": "percentage", "value": 5}`) comes off the total, and the
/// customer's `po_number` is kept.
#[tokio::test]
async fn creating_orders_guide_takes_the_header_discount_off_the_total() {
    let app = spawn_app().await;
    let customer = create(
        &app,
        "accounts",
        json!({"name": "Acme Landscaping", "account_type": "business"}),
    )
    .await;
    let stone = create(
        &app,
        "products",
        json!({"title": "Stone", "product_type": "physical", "list_price": 19.99}),
    )
    .await;
    let order = |discount: Value| {
        json!({
            "document_type": "sales_order",
            "account_id": customer["id"],
            "po_number": "PO-7781",
            "line_items": [{"product_id": stone["id"], "quantity": 5}],
            "discount": discount,
        })
    };
    let sold = create(
        &app,
        "orders",
        order(json!({"type": "percentage", "value": 5})),
    )
    .await;
    assert_eq!(sold["subtotal"], 99.95, "{sold}");
    assert_eq!(
        sold["discount_total"], 5,
        "5% of 99.95, to the cent: {sold}"
    );
    assert_eq!(sold["order_total"], 94.95);
    assert_eq!(sold["balance_due"], 94.95);
    assert_eq!(sold["discount_type"], "percentage");
    assert_eq!(sold["po_number"], "PO-7781");

    let flat = create(&app, "orders", order(json!({"type": "flat", "value": 10}))).await;
    assert_eq!(flat["order_total"], 89.95, "{flat}");

    for (discount, param) in [
        (json!({"type": "flat", "value": 100}), "discount.value"),
        (
            json!({"type": "percentage", "value": 101}),
            "discount.value",
        ),
        (json!({"type": "coupon", "value": 1}), "discount.type"),
        (json!({"value": 1}), "discount.type"),
        (json!(5), "discount"),
    ] {
        let (status, error) = app
            .send(
                Method::POST,
                &format!("/v1/entities/{}/orders", app.entity_id),
                Some(&order(discount.clone())),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{discount}: {error}"
        );
        assert_eq!(error["param"], param, "{discount}: {error}");
    }
}

/// guides/creating-products-kits-variants, "Full example": a variant parent
/// whose variants are kits with their own components, qty-break price tiers
/// and a vendor, in one POST; nothing of it is dropped.
#[tokio::test]
async fn creating_products_kits_variants_guide_keeps_variant_kits_tiers_and_vendors() {
    let app = spawn_app().await;
    let part = |title: &str| json!({"title": title, "product_type": "physical", "list_price": 2});
    let stone = create(&app, "products", part("Stone")).await;
    let dome_lid = create(&app, "products", part("Dome Lid")).await;
    let flat_lid = create(&app, "products", part("Flat Lid")).await;
    let acme = create(
        &app,
        "accounts",
        json!({"name": "Acme Supply", "account_type": "vendor"}),
    )
    .await;
    let tiers = |prices: [f64; 3]| {
        json!([
            {"pricing_level_id": "pl_default_uuid", "min_quantity": 1, "list_price": prices[0]},
            {"pricing_level_id": "pl_default_uuid", "min_quantity": 5, "list_price": prices[1]},
            {"pricing_level_id": "pl_default_uuid", "min_quantity": 10, "list_price": prices[2]},
        ])
    };
    let kit = create(
        &app,
        "products",
        json!({
            "title": "Riser Kit",
            "product_type": "variant_parent",
            "description": "Modular riser kit with dome or flat options",
            "variants": [
                {
                    "title": "Dome Riser Kit",
                    "sku": "RISER-DOME",
                    "product_type": "kit",
                    "components": [
                        {"component_product_id": stone["id"], "quantity": 2},
                        {"component_product_id": dome_lid["id"], "quantity": 1},
                    ],
                    "pricing": tiers([49.99, 44.99, 39.99]),
                    "vendors": [
                        {"vendor_id": acme["id"], "vendor_sku": "RD-001", "default_unit_cost": 18},
                    ],
                },
                {
                    "title": "Flat Riser Kit",
                    "sku": "RISER-FLAT",
                    "product_type": "kit",
                    "components": [
                        {"component_product_id": stone["id"], "quantity": 2},
                        {"component_product_id": flat_lid["id"], "quantity": 1},
                    ],
                    "pricing": tiers([44.99, 39.99, 34.99]),
                },
            ],
        }),
    )
    .await;
    assert_eq!(kit["ignored_fields"], json!([]), "{kit}");
    let dome = &kit["variants"][0];
    assert_eq!(dome["product_type"], "kit", "{kit}");
    assert_eq!(dome["components"][1]["product_id"], dome_lid["id"]);
    assert_eq!(dome["pricing"][2]["min_quantity"], 10);
    assert_eq!(dome["pricing"][2]["list_price"], 39.99);
    assert_eq!(dome["pricing"][0]["pricing_level_id"], "pl_default_uuid");
    assert_eq!(dome["vendors"][0]["vendor_id"], acme["id"]);
    assert_eq!(dome["vendors"][0]["vendor_sku"], "RD-001");
    assert_eq!(dome["vendors"][0]["default_unit_cost"], 18);
    assert_eq!(
        kit["variants"][1]["components"][1]["product_id"],
        flat_lid["id"]
    );
    assert_eq!(kit["variants"][1]["vendors"], json!([]));

    // A product's own tiers and vendors; a customer is not a vendor.
    let customer = create(
        &app,
        "accounts",
        json!({"name": "Acme Landscaping", "account_type": "business"}),
    )
    .await;
    let stone_tiers = create(
        &app,
        "products",
        json!({
            "title": "Stone, bulk",
            "product_type": "physical",
            "pricing": [
                {"pricing_level_id": "pl_default_uuid", "list_price": 3},
                {"account_id": customer["id"], "min_quantity": 1, "sell_price": 2.5},
            ],
            "vendors": [{"vendor_id": acme["id"], "default_unit_cost": 1.2}],
        }),
    )
    .await;
    assert_eq!(stone_tiers["pricing"][1]["account_id"], customer["id"]);
    assert_eq!(stone_tiers["pricing"][0]["min_quantity"], 1);
    assert_eq!(stone_tiers["vendors"][0]["default_unit_cost"], 1.2);
    refused(
        &app,
        "products",
        json!({
            "title": "Stone, other",
            "product_type": "physical",
            "vendors": [{"vendor_id": customer["id"]}],
        }),
        "account_not_vendor",
        "vendors[0].vendor_id",
    )
    .await;
}

/// concepts/pagination: every list has `url`; `ending_before` gives the page
/// before an item, in the list's order; both cursors at once are refused.
#[tokio::test]
async fn pagination_page_lists_have_url_and_page_backwards() {
    let app = spawn_app().await;
    app.import(&bulk(products(5), "skip")).await;
    let path = format!("/v1/entities/{}/products", app.entity_id);
    let (status, all) = app.send(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(all["url"], path.as_str());
    let ids: Vec<&str> = all["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|p| p["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), 5);

    let (status, before) = app
        .send(
            Method::GET,
            &format!("{path}?limit=2&ending_before={}", ids[4]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{before}");
    let page: Vec<&str> = before["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|p| p["id"].as_str().expect("id"))
        .collect();
    assert_eq!(page, [ids[2], ids[3]], "the two just before, newest first");
    assert_eq!(before["has_more"], true, "two more before them");
    assert_eq!(before["next_cursor"], ids[2]);
    let (_, first) = app
        .send(
            Method::GET,
            &format!("{path}?limit=2&ending_before={}", ids[2]),
            None,
        )
        .await;
    assert_eq!(first["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(first["has_more"], false, "{first}");

    let (status, error) = app
        .send(
            Method::GET,
            &format!("{path}?starting_after={}&ending_before={}", ids[1], ids[3]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["param"], "ending_before");
    let (status, error) = app
        .send(
            Method::GET,
            &format!("{path}?ending_before={}", Uuid::now_v7()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["param"], "ending_before");

    let jobs = format!("/v1/entities/{}/migration/jobs", app.entity_id);
    let (_, listed) = app.send(Method::GET, &jobs, None).await;
    assert_eq!(listed["url"], jobs.as_str());
}

/// webhooks/create-a-webhook-endpoint-subscription: the list is
/// `enabled_events`, with `*` and `<family>.*` wildcards; `events` is its
/// deprecated alias, ignored when `enabled_events` is given.
#[tokio::test]
async fn create_a_webhook_endpoint_page_takes_enabled_events_with_wildcards() {
    let app = spawn_app().await;
    let path = format!("/v1/entities/{}/webhook-endpoints", app.entity_id);
    let all = json!([
        "migration_job.completed",
        "migration_job.partial",
        "migration_job.failed"
    ]);
    for (body, expected) in [
        (
            json!({"url": "https://example.com/a", "enabled_events": ["*"]}),
            all.clone(),
        ),
        (
            json!({"url": "https://example.com/b", "enabled_events": ["migration_job.*"]}),
            all.clone(),
        ),
        (
            json!({"url": "https://example.com/c", "enabled_events": ["migration_job.failed"],
                   "events": ["migration_job.completed"]}),
            json!(["migration_job.failed"]),
        ),
    ] {
        let (status, created) = app.send(Method::POST, &path, Some(&body)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}: {created}");
        assert_eq!(created["enabled_events"], expected, "{body}");
    }
    let (status, error) = app
        .send(
            Method::POST,
            &path,
            Some(&json!({"url": "https://example.com/d", "enabled_events": ["order.*"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["param"], "enabled_events[0]");
}
