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
