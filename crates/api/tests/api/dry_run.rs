//! Dry runs: every rule, synchronously, nothing written.

use serde_json::json;

use crate::helpers::{AppOptions, bulk, products, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_dry_run_reports_what_would_happen_and_writes_nothing() {
    let app = spawn_app().await;
    app.import(&bulk(products(2), "skip")).await;
    let before = app.snapshot().await;

    let mut records = products(4);
    records[3]["product_type"] = json!("gadget");
    records.push(
        json!({"external_id": "KIT", "title": "Kit", "product_type": "kit",
                        "components": [{"product_external_id": "P-2", "quantity": 1}]}),
    );
    let (status, result) = app.dry_run(&bulk(records, "update")).await;

    assert_eq!(status, 200);
    assert_eq!(result["object"], "migration_dry_run_result");
    assert_eq!(result["dry_run"], true);
    assert_eq!(result["resource"], "products");
    assert_eq!(result["external_source"], "shopify");
    assert_eq!(result["total_records"], 5);
    assert_eq!(result["succeeded_records"], 4);
    assert_eq!(result["failed_records"], 1);
    assert_eq!(result["updated_records"], 2);
    assert_eq!(
        result["created_records"], 2,
        "P-2 and the kit that references it"
    );
    assert_eq!(result["errors"][0]["index"], 3);
    assert_eq!(result["errors"][0]["code"], "invalid_field");
    assert_eq!(app.snapshot().await, before, "a dry run writes nothing");
}

#[tokio::test]
async fn a_dry_run_in_error_mode_reports_the_collision() {
    let app = spawn_app().await;
    app.import(&bulk(products(1), "skip")).await;
    let before = app.snapshot().await;
    let (status, result) = app.dry_run(&bulk(products(3), "error")).await;
    assert_eq!(status, 200);
    assert_eq!(result["succeeded_records"], 0);
    assert_eq!(result["failed_records"], 3);
    assert_eq!(result["errors"][0]["code"], "external_id_conflict");
    assert_eq!(result["errors"][1]["code"], "batch_aborted");
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn a_dry_run_needs_no_worker_and_creates_no_job() {
    let app = spawn_app_with(AppOptions {
        workers: 0,
        ..AppOptions::default()
    })
    .await;
    let (status, result) = app.dry_run(&bulk(products(10), "skip")).await;
    assert_eq!(status, 200);
    assert_eq!(result["succeeded_records"], 10);
    assert_eq!(app.count("migration_jobs").await, 0);
    assert_eq!(app.count("products").await, 0);
}

#[tokio::test]
async fn dry_run_must_be_true_or_false() {
    let app = spawn_app().await;
    let response = app
        .request(
            reqwest::Method::POST,
            &format!("{}?dry_run=yes", app.bulk_path("products")),
        )
        .json(&bulk(products(1), "skip"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["code"], "invalid_parameter");
    assert_eq!(body["param"], "dry_run");
}
