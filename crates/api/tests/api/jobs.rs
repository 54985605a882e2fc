//! Reading jobs: the job object field for field, its life cycle, and listing.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{AppOptions, TestApp, bulk, eventually, products, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_job_has_exactly_the_documented_fields() {
    let app = spawn_app().await;
    let job = app.import(&bulk(products(2), "skip")).await;
    let fields: BTreeSet<&str> = job
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let documented: BTreeSet<&str> = [
        "id",
        "object",
        "entity_id",
        "resource",
        "status",
        "dry_run",
        "conflict_mode",
        "external_source",
        "total_records",
        "processed_records",
        "succeeded_records",
        "failed_records",
        "strict",
        "ignored_fields",
        "errors",
        "retry_of",
        "started_at",
        "completed_at",
        "created_at",
    ]
    .into_iter()
    .collect();
    assert_eq!(fields, documented);
    assert_eq!(job["object"], "migration_job");
    assert_eq!(job["entity_id"], app.entity_id.to_string());
    assert_eq!(job["resource"], "products");
    assert_eq!(job["dry_run"], false);
    assert_eq!(job["conflict_mode"], "skip");
    for field in ["created_at", "started_at", "completed_at"] {
        let t = job[field].as_str().expect("a timestamp");
        assert!(
            chrono::DateTime::parse_from_rfc3339(t).is_ok() && t.ends_with('Z'),
            "{t}"
        );
    }
}

#[tokio::test]
async fn a_job_goes_from_pending_to_running_to_completed() {
    let app = spawn_app_with(AppOptions {
        workers: 0,
        ..AppOptions::default()
    })
    .await;
    let job = app.submit_ok(&bulk(products(5), "skip")).await;
    let id = job["id"].as_str().expect("id").to_owned();
    assert_eq!(job["status"], "pending");
    assert!(job["started_at"].is_null() && job["completed_at"].is_null());
    // Without a worker the job waits.
    assert_eq!(app.get_job(&id).await["status"], "pending");

    // Hold the products table so the worker stops inside the job.
    let mut blocker = app.pool.begin().await.expect("tx");
    sqlx::query("lock table products in exclusive mode")
        .execute(&mut *blocker)
        .await
        .expect("lock");
    let worker = app.spawn_worker().await;
    eventually("the job to run", || async {
        app.get_job(&id).await["status"] == "running"
    })
    .await;
    let running = app.get_job(&id).await;
    assert!(running["started_at"].is_string());
    assert!(running["completed_at"].is_null());
    blocker.rollback().await.expect("release");

    let done = app.wait_for_job(&id).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["succeeded_records"], 5);
    assert!(done["completed_at"].is_string());
    worker.stop().await;
}

#[tokio::test]
async fn another_entitys_job_is_not_found() {
    let app = spawn_app().await;
    let job = app.submit_ok(&bulk(products(1), "skip")).await;
    let (other, other_key) = app.other_entity().await;
    let response = app
        .client
        .get(app.url(&format!(
            "/v1/entities/{other}/migration/jobs/{}",
            job["id"].as_str().expect("id")
        )))
        .bearer_auth(other_key)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "not_found");
}

#[tokio::test]
async fn an_unknown_job_is_not_found_and_a_malformed_id_is_a_bad_request() {
    let app = spawn_app().await;
    let response = app
        .request(
            Method::GET,
            &app.job_path(&uuid::Uuid::now_v7().to_string()),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 404);
    let response = app
        .request(Method::GET, &app.job_path("not-a-uuid"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "invalid_parameter");
    assert_eq!(body["param"], "job_id");
}

async fn list(app: &TestApp, query: &str) -> Value {
    let response = app
        .request(
            Method::GET,
            &format!("/v1/entities/{}/migration/jobs{query}", app.entity_id),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

#[tokio::test]
async fn jobs_are_listed_newest_first_with_cursor_paging() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut records = products(1);
        records[0]["external_id"] = serde_json::json!(format!("L-{i}"));
        records[0]["sku"] = serde_json::json!(format!("L-{i}"));
        ids.push(app.submit_ok(&bulk(records, "skip")).await["id"].clone());
    }
    ids.reverse();

    let page = list(&app, "?limit=2").await;
    assert_eq!(page["object"], "list");
    assert_eq!(page["has_more"], true);
    assert_eq!(
        page["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|j| j["id"].clone())
            .collect::<Vec<_>>(),
        ids[0..2]
    );
    assert_eq!(page["next_cursor"], ids[1]);

    let cursor = page["next_cursor"].as_str().expect("cursor");
    let page = list(&app, &format!("?limit=2&starting_after={cursor}")).await;
    assert_eq!(
        page["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|j| j["id"].clone())
            .collect::<Vec<_>>(),
        ids[2..4]
    );

    let cursor = page["next_cursor"].as_str().expect("cursor");
    let page = list(&app, &format!("?limit=2&starting_after={cursor}")).await;
    assert_eq!(page["data"].as_array().expect("data").len(), 1);
    assert_eq!(page["has_more"], false);
    assert!(page["next_cursor"].is_null());

    let page = list(&app, "").await;
    assert_eq!(
        page["data"].as_array().expect("data").len(),
        5,
        "the default limit is 20"
    );
}

#[tokio::test]
async fn jobs_are_filtered_by_resource_status_and_creation_time() {
    let app = spawn_app().await;
    let first = app.import(&bulk(products(1), "skip")).await;
    let mut bad = products(1);
    bad[0]["product_type"] = serde_json::json!("gadget");
    bad[0]["external_id"] = serde_json::json!("BAD");
    let second = app.import(&bulk(bad, "skip")).await;

    let failed = list(&app, "?status=failed").await;
    assert_eq!(failed["data"].as_array().expect("data").len(), 1);
    assert_eq!(failed["data"][0]["id"], second["id"]);
    assert_eq!(
        list(&app, "?resource=products").await["data"]
            .as_array()
            .expect("data")
            .len(),
        2
    );
    assert_eq!(
        list(&app, "?resource=orders").await["data"]
            .as_array()
            .expect("data")
            .len(),
        0
    );

    let created: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("select created_at from migration_jobs where id = $1")
            .bind(uuid::Uuid::parse_str(first["id"].as_str().expect("id")).expect("uuid"))
            .fetch_one(&app.pool)
            .await
            .expect("created_at");
    let after = created.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let later = list(
        &app,
        &format!("?created_after={}", after.replace('+', "%2B")),
    )
    .await;
    assert_eq!(later["data"].as_array().expect("data").len(), 1);
    assert_eq!(later["data"][0]["id"], second["id"]);
}

#[tokio::test]
async fn bad_listing_parameters_are_refused() {
    let app = spawn_app().await;
    for (query, param) in [
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?limit=ten", "limit"),
        ("?status=done", "status"),
        ("?resource=invoices", "resource"),
        ("?created_after=yesterday", "created_after"),
        ("?starting_after=nope", "starting_after"),
        (
            "?starting_after=01900000-0000-7000-8000-000000000000",
            "starting_after",
        ),
    ] {
        let response = app
            .request(
                Method::GET,
                &format!("/v1/entities/{}/migration/jobs{query}", app.entity_id),
            )
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["code"], "invalid_parameter", "{query}");
        assert_eq!(body["param"], param, "{query}");
    }
}
