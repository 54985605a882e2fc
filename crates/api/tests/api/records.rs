//! Reading records back, and creating one record at a time through the same
//! canonical handlers as the import.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, bulk, products, spawn_app};

#[tokio::test]
async fn records_are_listed_newest_first_with_filters_paging_and_counts() {
    let app = spawn_app().await;
    app.import(&bulk(products(5), "skip")).await;
    let mut other = products(1);
    other[0]["external_id"] = json!("Q-1");
    other[0]["sku"] = json!("Q-1");
    app.import_to(
        "products",
        &json!({"records": other, "external_source": "quickbooks"}),
    )
    .await;

    let (status, page) = app.get_entity("products?limit=2&include_count=true").await;
    assert_eq!(status, 200);
    assert_eq!(page["object"], "list");
    assert_eq!(page["total_count"], 6);
    assert_eq!(page["has_more"], true);
    assert_eq!(page["data"][0]["external_id"], "Q-1", "newest first");
    let cursor = page["next_cursor"].as_str().expect("cursor").to_owned();
    let (_, next) = app
        .get_entity(&format!("products?limit=10&starting_after={cursor}"))
        .await;
    assert_eq!(next["data"].as_array().expect("data").len(), 4);
    assert_eq!(next["has_more"], false);
    assert!(next.get("total_count").is_none());

    let (_, shopify) = app
        .get_entity("products?external_source=shopify&include_count=true")
        .await;
    assert_eq!(shopify["total_count"], 5);
    let (_, one) = app
        .get_entity("products?external_source=shopify&external_id=P-3")
        .await;
    assert_eq!(one["data"].as_array().expect("data").len(), 1);
    let product = &one["data"][0];
    assert_eq!(product["object"], "product");
    assert_eq!(product["sku"], "SKU-3");
    assert_eq!(product["list_price"], 19.99);

    let (status, fetched) = app
        .get_entity(&format!("products/{}", product["id"].as_str().expect("id")))
        .await;
    assert_eq!(status, 200);
    assert_eq!(&fetched, product);
}

#[tokio::test]
async fn the_chart_of_accounts_is_readable() {
    let app = spawn_app().await;
    let (status, page) = app
        .get_entity("gl-accounts?limit=100&include_count=true")
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["total_count"], 24);
    let accounts = page["data"].as_array().expect("data");
    let headers: Vec<&str> = accounts
        .iter()
        .filter(|a| a["is_header"] == true)
        .map(|a| a["account_type"].as_str().expect("type"))
        .collect();
    for kind in ["asset", "liability", "equity", "revenue", "expense", "cogs"] {
        assert!(headers.contains(&kind), "a {kind} header");
    }
    let (status, error) = app.get_entity("gl-accounts?external_source=x").await;
    assert_eq!(status, 400);
    assert_eq!(error["param"], "external_source");
}

#[tokio::test]
async fn reads_check_scope_entity_and_ids() {
    let app = spawn_app().await;
    app.import(&bulk(products(1), "skip")).await;
    let (_, page) = app.get_entity("products").await;
    let id = page["data"][0]["id"].as_str().expect("id").to_owned();

    let no_read = app
        .key_with(domain::Mode::Test, &["products:write", "migration:read"])
        .await;
    for path in ["products".to_owned(), format!("products/{id}")] {
        let response = app
            .client
            .get(app.url(&format!("/v1/entities/{}/{path}", app.entity_id)))
            .bearer_auth(&no_read)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 403);
        let error: Value = response.json().await.expect("json");
        assert_eq!(error["required"], "products:read");
    }
    for (resource, scope) in [
        ("accounts", "accounts:read"),
        ("orders", "orders:read"),
        ("journal-entries", "accounting:read"),
        ("gl-accounts", "accounting:read"),
        ("vendor-bills", "purchasing:read"),
        ("ap-payments", "purchasing:read"),
    ] {
        let response = app
            .client
            .get(app.url(&format!("/v1/entities/{}/{resource}", app.entity_id)))
            .bearer_auth(&no_read)
            .send()
            .await
            .expect("sent");
        let error: Value = response.json().await.expect("json");
        assert_eq!(error["required"], scope, "{resource}");
    }

    let (other, other_key) = app.other_entity().await;
    let response = app
        .client
        .get(app.url(&format!("/v1/entities/{other}/products/{id}")))
        .bearer_auth(&other_key)
        .send()
        .await
        .expect("sent");
    assert_eq!(
        response.status(),
        404,
        "another entity's record is not found"
    );
    let (status, error) = app.get_entity("products/not-a-uuid").await;
    assert_eq!(
        (status.as_u16(), error["param"].as_str()),
        (400, Some("id"))
    );
    let (status, _) = app
        .get_entity(&format!("products/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn one_record_is_created_through_the_canonical_handler() {
    let app = spawn_app().await;
    let path = format!("/v1/entities/{}/accounts", app.entity_id);
    let record = json!({"name": "Acme", "account_type": "business", "external_source": "crm", "external_id": "A-1"});
    let (status, created) = app.send(Method::POST, &path, Some(&record)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["account_number"], "CUST-00001");
    assert_eq!(created["external_id"], "A-1");

    let (status, error) = app.send(Method::POST, &path, Some(&record)).await;
    assert_eq!(status, 409);
    assert_eq!(error["code"], "external_id_conflict");
    assert_eq!(error["type"], "conflict");

    let (status, error) = app
        .send(
            Method::POST,
            &path,
            Some(&json!({"account_type": "business"})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        (error["code"].as_str(), error["param"].as_str()),
        (Some("missing_required_field"), Some("name"))
    );

    // Without provenance a record is created all the same.
    let (status, created) = app
        .send(
            Method::POST,
            &path,
            Some(&json!({"name": "Walk-in", "account_type": "individual"})),
        )
        .await;
    assert_eq!(status, 201);
    assert!(created["external_id"].is_null());

    // Same rules as the import: a duplicate sku is a conflict, a kit resolves
    // its components by external id from the record's own source.
    let products_path = format!("/v1/entities/{}/products", app.entity_id);
    let (status, _) = app.send(Method::POST, &products_path, Some(&json!({"title": "Mug", "product_type": "physical", "sku": "M", "external_source": "crm", "external_id": "P-1"}))).await;
    assert_eq!(status, 201);
    let (status, error) = app
        .send(
            Method::POST,
            &products_path,
            Some(&json!({"title": "Mug 2", "product_type": "physical", "sku": "M"})),
        )
        .await;
    assert_eq!(
        (status.as_u16(), error["code"].as_str()),
        (409, Some("duplicate_sku"))
    );
    let (status, kit) = app.send(Method::POST, &products_path, Some(&json!({"title": "Kit", "product_type": "kit", "external_source": "crm", "external_id": "K-1",
        "components": [{"product_external_id": "P-1", "quantity": 2}]}))).await;
    assert_eq!(status, 201, "{kit}");
    assert_eq!(kit["components"][0]["quantity"], 2);

    let (status, error) = app
        .send(
            Method::POST,
            &products_path,
            Some(&json!(["not", "an", "object"])),
        )
        .await;
    assert_eq!(
        (status.as_u16(), error["code"].as_str()),
        (400, Some("invalid_body"))
    );
    let no_write = app.key_with(domain::Mode::Test, &["accounts:read"]).await;
    let response = app
        .client
        .post(app.url(&path))
        .bearer_auth(&no_write)
        .json(&record)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 403);
}

/// Records of every resource, each with the children it can have: an account
/// with an address, a kit with a component, a product with a variant, an
/// order with a line, a journal entry with lines, a bill with an item and a
/// payment applied to it.
async fn one_of_each(app: &TestApp) {
    let records = [
        (
            "accounts",
            vec![
                json!({"external_id": "C-1", "name": "Acme", "account_type": "business",
                       "email": "ap@acme.test", "credit_limit": 5000.5,
                       "addresses": [{"type": "billing", "line1": "1 Main St", "is_default_billing": true}],
                       "contacts": [{"first_name": "Ann", "email": "ann@acme.test"}],
                       "tags": ["wholesale"]}),
                json!({"external_id": "V-1", "name": "Paper Supply Co", "account_type": "vendor"}),
            ],
        ),
        (
            "products",
            vec![
                json!({"external_id": "P-1", "title": "Mug", "product_type": "physical",
                       "sku": "MUG", "list_price": 5, "cost": 2.25,
                       "pricing": [{"pricing_level_id": "retail", "list_price": 5},
                                   {"account_external_id": "C-1", "sell_price": 4.5}],
                       "vendors": [{"vendor_external_id": "V-1", "vendor_sku": "M-1"}]}),
                json!({"external_id": "K-1", "title": "Gift box", "product_type": "kit",
                       "components": [{"product_external_id": "P-1", "quantity": 2.5}]}),
                json!({"external_id": "T-1", "title": "Shirt", "product_type": "variant_parent",
                       "variants": [{"title": "Shirt S", "sku": "SHIRT-S", "product_type": "kit",
                                     "components": [{"product_external_id": "P-1", "quantity": 1}],
                                     "pricing": [{"pricing_level_id": "retail", "list_price": 9}],
                                     "vendors": [{"vendor_external_id": "V-1"}]}]}),
            ],
        ),
        (
            "orders",
            vec![
                json!({"external_id": "O-1", "account_external_id": "C-1", "order_date": "2026-01-15",
                       "line_items": [{"product_external_id": "P-1", "quantity": 3}]}),
            ],
        ),
        (
            "journal-entries",
            vec![json!({"external_id": "JE-1", "entry_date": "2026-01-15",
                       "lines": [{"gl_account_number": "6010", "debit_amount": 10},
                                 {"gl_account_number": "1010", "credit_amount": 10, "description": "Rent"}]})],
        ),
        (
            "vendor-bills",
            vec![
                json!({"external_id": "B-1", "vendor_external_id": "V-1", "bill_date": "2026-01-10",
                       "items": [{"description": "Paper", "quantity": 2, "unit_cost": 10.25,
                                  "product_external_id": "P-1", "gl_account_number": "6030"}]}),
            ],
        ),
        (
            "ap-payments",
            vec![
                json!({"external_id": "PAY-1", "vendor_external_id": "V-1", "payment_date": "2026-01-20",
                       "amount": 20.5, "method": "ach",
                       "applications": [{"bill_external_id": "B-1", "amount": 20.5}]}),
            ],
        ),
    ];
    for (resource, records) in records {
        let job = app.import_to(resource, &bulk(records, "skip")).await;
        assert_eq!(job["status"], "completed", "{resource}: {job}");
    }
}

/// Holds `value` to `schema`: its JSON type is one the schema allows (in its
/// `enum` and `format` if it has them), an object's keys are exactly the
/// schema's properties with every required one among them, and so on down
/// into the items of arrays. Notes in `filled` the arrays it found items in.
fn conforms(value: &Value, schema: &Value, at: &str, filled: &mut BTreeSet<String>) {
    let allowed: Vec<&str> = match &schema["type"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        other => panic!("{at}: the schema has no type ({other})"),
    };
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    // An integer is a number too.
    assert!(
        allowed.contains(&kind) || (kind == "integer" && allowed.contains(&"number")),
        "{at}: {value} is not of the types {allowed:?}"
    );
    if let Some(names) = schema.get("enum") {
        let names = names.as_array().expect("an enum is an array");
        assert!(
            names.contains(value),
            "{at}: {value} is not one of {names:?}"
        );
    }
    if let (Value::String(text), Some(format)) = (value, schema["format"].as_str()) {
        let valid = match format {
            "uuid" => Uuid::parse_str(text).is_ok(),
            "date" => NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok(),
            "date-time" => DateTime::parse_from_rfc3339(text).is_ok(),
            other => panic!("{at}: the format {other} is not checked here"),
        };
        assert!(valid, "{at}: {text} is not a {format}");
    }
    match value {
        Value::Object(fields) => {
            let properties = schema["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("{at}: the schema has no properties"));
            let read: BTreeSet<&String> = fields.keys().collect();
            let documented: BTreeSet<&String> = properties.keys().collect();
            assert_eq!(
                read, documented,
                "{at}: the keys read are the documented ones"
            );
            for name in schema["required"].as_array().expect("required") {
                let name = name.as_str().expect("a required name");
                assert!(fields.contains_key(name), "{at}.{name} is required");
            }
            for (name, field) in fields {
                conforms(field, &properties[name], &format!("{at}.{name}"), filled);
            }
        }
        Value::Array(items) => {
            if !items.is_empty() {
                filled.insert(at.to_owned());
            }
            for item in items {
                conforms(item, &schema["items"], &format!("{at}[]"), filled);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn what_the_reads_return_is_what_the_document_says() {
    let app = spawn_app().await;
    one_of_each(&app).await;
    let document: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("the document");
    let schemas = &document["components"]["schemas"];

    let mut filled = BTreeSet::new();
    for (path, name) in [
        ("accounts", "Account"),
        ("products", "Product"),
        ("orders", "Order"),
        ("journal-entries", "JournalEntry"),
        ("vendor-bills", "VendorBill"),
        ("ap-payments", "ApPayment"),
        ("gl-accounts", "GlAccount"),
    ] {
        let (status, page) = app.get_entity(&format!("{path}?limit=100")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let read = page["data"].as_array().expect("data");
        assert!(!read.is_empty(), "{path}: nothing to check");
        for object in read {
            conforms(object, &schemas[name], name, &mut filled);
        }
        // Every array was checked down into an item.
        let properties = schemas[name]["properties"].as_object().expect("properties");
        for (property, schema) in properties {
            if schema["type"] == "array" {
                let at = format!("{name}.{property}");
                assert!(filled.contains(&at), "{at}: no item was read");
            }
        }
    }
}
