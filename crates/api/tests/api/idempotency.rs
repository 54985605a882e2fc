//! Idempotency-Key: a retry replays the first response; another body is a
//! conflict; concurrent submissions with one key create one job.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{TestApp, bulk, products, spawn_app};

async fn submit_with_key(app: &TestApp, key: &str, body: &Value) -> (u16, Value, bool) {
    let response = app
        .request(Method::POST, &app.bulk_path("products"))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    let replayed = response.headers().contains_key("idempotent-replayed");
    (status, response.json().await.expect("json"), replayed)
}

#[tokio::test]
async fn a_retry_with_the_same_key_and_body_returns_the_original_response() {
    let app = spawn_app().await;
    let body = bulk(products(3), "skip");
    let (status, first, replayed) = submit_with_key(&app, "import-1", &body).await;
    assert_eq!((status, replayed), (202, false));
    app.wait_for_job(first["id"].as_str().expect("id")).await;

    let (status, second, replayed) = submit_with_key(&app, "import-1", &body).await;
    assert_eq!((status, replayed), (202, true));
    assert_eq!(second, first, "the original response, byte for byte");
    assert_eq!(app.count("migration_jobs").await, 1);
    assert_eq!(app.count("products").await, 3);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_a_conflict() {
    let app = spawn_app().await;
    submit_with_key(&app, "import-1", &bulk(products(3), "skip")).await;
    let (status, error, _) = submit_with_key(&app, "import-1", &bulk(products(4), "skip")).await;
    assert_eq!(status, 409);
    assert_eq!(error["code"], "idempotency_key_mismatch");
    assert_eq!(error["type"], "conflict");
    assert_eq!(app.count("migration_jobs").await, 1);
}

#[tokio::test]
async fn concurrent_submissions_with_one_key_create_one_job() {
    let app = spawn_app().await;
    let body = bulk(products(200), "skip");
    let attempts = (0..4).map(|_| submit_with_key(&app, "same-key", &body));
    let results = futures::future::join_all(attempts).await;
    let ids: Vec<&Value> = results.iter().map(|(_, job, _)| &job["id"]).collect();
    assert!(
        results.iter().all(|(status, _, _)| *status == 202),
        "{results:?}"
    );
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one job for all: {ids:?}"
    );
    assert_eq!(
        results.iter().filter(|(_, _, replayed)| !replayed).count(),
        1
    );
    assert_eq!(app.count("migration_jobs").await, 1);
}

#[tokio::test]
async fn keys_are_scoped_to_the_entity() {
    let app = spawn_app().await;
    let (other_entity, other_key) = app.other_entity().await;
    let body = bulk(products(1), "skip");
    submit_with_key(&app, "shared", &body).await;
    let response = app
        .client
        .post(app.url(&format!(
            "/v1/entities/{other_entity}/migration/products/bulk"
        )))
        .bearer_auth(&other_key)
        .header("Idempotency-Key", "shared")
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 202);
    assert!(!response.headers().contains_key("idempotent-replayed"));
    assert_eq!(app.count("migration_jobs").await, 2);
}

#[tokio::test]
async fn a_key_is_forgotten_after_24_hours() {
    let app = spawn_app().await;
    let body = bulk(products(1), "skip");
    let (_, first, _) = submit_with_key(&app, "old", &body).await;
    sqlx::query("update idempotency_keys set created_at = now() - interval '25 hours'")
        .execute(&app.pool)
        .await
        .expect("age the key");
    let (status, second, replayed) = submit_with_key(&app, "old", &body).await;
    assert_eq!((status, replayed), (202, false));
    assert_ne!(first["id"], second["id"]);
}

#[tokio::test]
async fn an_over_long_key_is_refused() {
    let app = spawn_app().await;
    let (status, error, _) =
        submit_with_key(&app, &"k".repeat(256), &bulk(products(1), "skip")).await;
    assert_eq!(status, 400);
    assert_eq!(error["code"], "invalid_idempotency_key");
    assert_eq!(app.count("migration_jobs").await, 0);
    assert_eq!(app.count("idempotency_keys").await, 0);
}
