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
    let (status, _) = app
        .send(
            Method::POST,
            &format!("/v1/entities/{}/accounts", app.entity_id),
            Some(&json!({"name": "Paper Supply Co", "account_type": "vendor",
                         "external_source": "quickbooks", "external_id": "V-1"})),
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
    let (status, account) = app
        .send(
            Method::POST,
            &format!("/v1/entities/{}/accounts", app.entity_id),
            Some(&json!({
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
            })),
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
    let (status, entry) = app
        .send(
            Method::POST,
            &format!("/v1/entities/{}/journal-entries", app.entity_id),
            Some(&json!({
                "entry_date": "2026-01-31",
                "description": "",
                "lines": [
                    {"account_id": rent, "debit_amount": 10, "description": ""},
                    {"account_id": cash, "credit_amount": 10, "description": "Cash"},
                ],
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{entry}");
    assert!(entry["description"].is_null());
    assert!(entry["lines"][0]["description"].is_null());
    assert_eq!(entry["lines"][1]["description"], "Cash");

    let (status, product) = app
        .send(
            Method::POST,
            &format!("/v1/entities/{}/products", app.entity_id),
            Some(&json!({"title": "Mug", "product_type": "physical", "sku": "", "list_price": ""})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{product}");
    assert!(product["sku"].is_null());
    assert!(product["list_price"].is_null());

    let (status, error) = app
        .send(
            Method::POST,
            &format!("/v1/entities/{}/products", app.entity_id),
            Some(&json!({"title": " ", "product_type": "physical"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["error"], "missing_required_field");
    assert_eq!(error["param"], "title");
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
