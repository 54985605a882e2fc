//! Bad input gets a clear error in the envelope, and nothing is written.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{AppOptions, TestApp, bulk, products, spawn_app, spawn_app_with};

async fn post_raw(app: &TestApp, path: &str, body: Vec<u8>) -> (u16, Value) {
    let response = app
        .request(Method::POST, path)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.expect("an error envelope"))
}

#[tokio::test]
async fn each_malformed_request_is_refused_with_its_code_and_writes_nothing() {
    let app = spawn_app().await;
    let long_source = "s".repeat(61);
    let mut deep = json!(1);
    for _ in 0..9 {
        deep = json!({"a": deep});
    }
    let deep_path = format!("records[0]{}", ".a".repeat(9));
    let cases: Vec<(&str, Vec<u8>, &str, Option<&str>)> = vec![
        (
            "malformed JSON",
            b"{\"records\": [".to_vec(),
            "invalid_json",
            None,
        ),
        ("not an object", b"[1, 2]".to_vec(), "invalid_body", None),
        (
            "no records",
            json!({"external_source": "x"}).to_string().into_bytes(),
            "missing_parameter",
            Some("records"),
        ),
        (
            "records not an array",
            json!({"records": {}, "external_source": "x"})
                .to_string()
                .into_bytes(),
            "invalid_parameter",
            Some("records"),
        ),
        (
            "zero records",
            json!({"records": [], "external_source": "x"})
                .to_string()
                .into_bytes(),
            "no_records",
            Some("records"),
        ),
        (
            "1001 records",
            bulk(products(1001), "skip").to_string().into_bytes(),
            "too_many_records",
            Some("records"),
        ),
        (
            "a non-object record",
            json!({"records": [{"external_id": "a"}, "b"], "external_source": "x"})
                .to_string()
                .into_bytes(),
            "invalid_record",
            Some("records[1]"),
        ),
        (
            "a NUL character",
            json!({"records": [{"external_id": "a", "title": "x\u{0}y"}], "external_source": "x"})
                .to_string()
                .into_bytes(),
            "invalid_character",
            Some("records[0].title"),
        ),
        (
            "a NUL character in a line",
            json!({"records": [{"external_id": "a", "line_items": [{"sku": "ok"}, {"sku": "x\u{0}"}]}],
                   "external_source": "x"})
                .to_string()
                .into_bytes(),
            "invalid_character",
            Some("records[0].line_items[1].sku"),
        ),
        (
            "a NUL character in a field name",
            json!({"records": [{"external_id": "a"}, {"ti\u{0}tle": "x"}], "external_source": "x"})
                .to_string()
                .into_bytes(),
            "invalid_character",
            Some("records[1].ti\\u0000tle"),
        ),
        (
            // 10,001 characters of two bytes each.
            "an over-long string",
            json!({"records": [{"external_id": "a", "title": "é".repeat(10_001)}],
                   "external_source": "x"})
                .to_string()
                .into_bytes(),
            "string_too_long",
            Some("records[0].title"),
        ),
        (
            "a record nested too deep",
            json!({"records": [deep], "external_source": "x"})
                .to_string()
                .into_bytes(),
            "record_too_deep",
            Some(&deep_path),
        ),
        (
            "no external_source",
            json!({"records": [{}]}).to_string().into_bytes(),
            "missing_parameter",
            Some("external_source"),
        ),
        (
            "blank external_source",
            json!({"records": [{}], "external_source": " "})
                .to_string()
                .into_bytes(),
            "invalid_parameter",
            Some("external_source"),
        ),
        (
            "numeric external_source",
            json!({"records": [{}], "external_source": 7})
                .to_string()
                .into_bytes(),
            "invalid_parameter",
            Some("external_source"),
        ),
        (
            "over-long external_source",
            json!({"records": [{}], "external_source": long_source})
                .to_string()
                .into_bytes(),
            "parameter_too_long",
            Some("external_source"),
        ),
        (
            "unknown conflict_mode",
            json!({"records": [{}], "external_source": "x", "conflict_mode": "merge"})
                .to_string()
                .into_bytes(),
            "invalid_parameter",
            Some("conflict_mode"),
        ),
    ];
    for (what, body, code, param) in cases {
        for path in [
            app.bulk_path("products"),
            format!("{}?dry_run=true", app.bulk_path("products")),
        ] {
            let (status, error) = post_raw(&app, &path, body.clone()).await;
            assert_eq!(status, 400, "{what}: {error}");
            assert_eq!(error["code"], code, "{what}");
            assert_eq!(error["type"], "validation_error", "{what}");
            assert_eq!(error["param"].as_str(), param, "{what}");
            assert_eq!(error["error"], code, "{what}");
            assert!(
                error["hint"].as_str().is_some_and(|m| !m.is_empty()),
                "{what}"
            );
            assert!(
                error["request_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("req_")),
                "{what}"
            );
        }
    }
    assert_eq!(app.count("migration_jobs").await, 0);
    assert_eq!(app.count("idempotency_keys").await, 0);
}

#[tokio::test]
async fn a_body_over_the_size_limit_is_refused() {
    let app = spawn_app_with(AppOptions {
        max_body_bytes: 64 * 1024,
        ..AppOptions::default()
    })
    .await;
    let (status, error) = post_raw(
        &app,
        &app.bulk_path("products"),
        bulk(products(1000), "skip").to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(error["code"], "payload_too_large");
    assert_eq!(app.count("migration_jobs").await, 0);
}

#[tokio::test]
async fn an_unknown_resource_is_not_found() {
    let app = spawn_app().await;
    let (status, error) = post_raw(
        &app,
        &app.bulk_path("invoices"),
        bulk(products(1), "skip").to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(error["code"], "unknown_resource");
    assert!(
        error["hint"]
            .as_str()
            .expect("message")
            .contains("journal-entries")
    );
}

#[tokio::test]
async fn a_non_uuid_entity_in_the_bulk_path_is_a_bad_request() {
    let app = spawn_app().await;
    let (status, error) = post_raw(
        &app,
        "/v1/entities/123/migration/products/bulk",
        bulk(products(1), "skip").to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error["param"], "entity_id");
}
