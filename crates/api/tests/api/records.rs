//! Reading records back, and creating one record at a time through the same
//! canonical handlers as the import.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{bulk, products, spawn_app};

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
