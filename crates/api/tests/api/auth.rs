//! Authentication and authorization on every route: keys, entities, modes and
//! scopes, with the documented codes, and nothing read or written on refusal.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{TestApp, bulk, products, spawn_app};

/// Every route of an entity, with a body where it takes one.
fn routes(app: &TestApp, job_id: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (
            Method::POST,
            app.bulk_path("products"),
            Some(bulk(products(1), "skip")),
        ),
        (
            Method::POST,
            format!("{}?dry_run=true", app.bulk_path("products")),
            Some(bulk(products(1), "skip")),
        ),
        (Method::GET, app.job_path(job_id), None),
        (
            Method::GET,
            format!("/v1/entities/{}/migration/jobs", app.entity_id),
            None,
        ),
    ]
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    body: &Option<Value>,
    key: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = app.client.request(method, app.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("sent");
    let status = response.status();
    (status, response.json().await.expect("json"))
}

#[tokio::test]
async fn every_route_refuses_missing_unknown_revoked_and_foreign_keys() {
    let app = spawn_app().await;
    let job = app.import(&bulk(products(1), "skip")).await;
    let job_id = job["id"].as_str().expect("id").to_owned();
    let before = app.snapshot().await;

    let revoked = app
        .issue(auth::NewKey {
            entity_id: app.entity_id,
            mode: domain::Mode::Test,
            scopes: vec!["migration:read".to_owned()],
            elevated: false,
            expires_at: None,
            allowed_ips: Vec::new(),
        })
        .await;
    let operator = domain::audit::Actor::default();
    assert!(
        auth::revoke(&app.pool, revoked.id, &operator)
            .await
            .expect("revoked")
    );
    let expired = app
        .issue(auth::NewKey {
            entity_id: app.entity_id,
            mode: domain::Mode::Test,
            scopes: crate::helpers::ALL_SCOPES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            elevated: false,
            expires_at: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
            allowed_ips: Vec::new(),
        })
        .await;
    sqlx::query("update api_keys set expires_at = now() - interval '1 second' where id = $1")
        .bind(expired.id)
        .execute(&app.pool)
        .await
        .expect("expire the key");
    let (_, foreign_key) = app.other_entity().await;

    for (method, path, body) in routes(&app, &job_id) {
        let (status, error) = send(&app, method.clone(), &path, &body, None).await;
        assert_eq!(
            (status.as_u16(), error["code"].as_str()),
            (401, Some("missing_api_key")),
            "{method} {path}"
        );
        assert_eq!(error["type"], "permission_error");

        for bad in ["ark_test_ent_nope_0000", "not-a-key", &revoked.key] {
            let (status, error) = send(&app, method.clone(), &path, &body, Some(bad)).await;
            assert_eq!(
                (status.as_u16(), error["code"].as_str()),
                (401, Some("invalid_api_key")),
                "{method} {path} {bad}"
            );
        }

        let (status, error) = send(&app, method.clone(), &path, &body, Some(&expired.key)).await;
        assert_eq!(
            (status.as_u16(), error["code"].as_str()),
            (401, Some("api_key_expired")),
            "{method} {path}"
        );

        let (status, error) = send(&app, method.clone(), &path, &body, Some(&foreign_key)).await;
        assert_eq!(
            (status.as_u16(), error["code"].as_str()),
            (403, Some("entity_access_denied")),
            "{method} {path}"
        );
    }
    assert_eq!(
        app.snapshot().await,
        before,
        "refused requests write nothing"
    );
}

#[tokio::test]
async fn a_malformed_authorization_header_is_an_invalid_key() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url(&format!("/v1/entities/{}/migration/jobs", app.entity_id)))
        .header("Authorization", format!("Basic {}", app.key))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "invalid_api_key");
}

#[tokio::test]
async fn each_route_needs_its_scopes() {
    let app = spawn_app().await;
    let job = app.import(&bulk(products(1), "skip")).await;
    let job_id = job["id"].as_str().expect("id").to_owned();
    let before = app.snapshot().await;

    let no_migration_write = app
        .key_with(domain::Mode::Test, &["products:write", "migration:read"])
        .await;
    let no_products_write = app
        .key_with(domain::Mode::Test, &["migration:write", "migration:read"])
        .await;
    let no_read = app
        .key_with(domain::Mode::Test, &["migration:write", "products:write"])
        .await;

    for (method, path, body) in routes(&app, &job_id) {
        let cases: Vec<(&str, &str)> = if method == Method::POST {
            vec![
                (&no_migration_write, "migration:write"),
                (&no_products_write, "products:write"),
            ]
        } else {
            vec![(&no_read, "migration:read")]
        };
        for (key, required) in cases {
            let (status, error) = send(&app, method.clone(), &path, &body, Some(key)).await;
            assert_eq!(status, 403, "{method} {path}");
            assert_eq!(error["code"], "insufficient_scope");
            assert_eq!(error["required"], required, "{method} {path}");
        }
    }
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn test_and_live_data_never_mix() {
    let app = spawn_app().await;
    let test_job = app.import(&bulk(products(1), "skip")).await;
    let live = app
        .key_with(
            domain::Mode::Live,
            &["migration:read", "migration:write", "products:write"],
        )
        .await;

    // The live key cannot see the test job.
    let (status, _) = send(
        &app,
        Method::GET,
        &app.job_path(test_job["id"].as_str().expect("id")),
        &None,
        Some(&live),
    )
    .await;
    assert_eq!(status, 404);
    let (_, listing) = send(
        &app,
        Method::GET,
        &format!("/v1/entities/{}/migration/jobs", app.entity_id),
        &None,
        Some(&live),
    )
    .await;
    assert_eq!(listing["data"].as_array().expect("data").len(), 0);

    // The same external ids load again in live mode: provenance is per mode.
    let (status, live_job) = send(
        &app,
        Method::POST,
        &app.bulk_path("products"),
        &Some(bulk(products(1), "error")),
        Some(&live),
    )
    .await;
    assert_eq!(status, 202);
    let id = live_job["id"].as_str().expect("id");
    crate::helpers::eventually("the live job to finish", || async {
        let (_, job) = send(&app, Method::GET, &app.job_path(id), &None, Some(&live)).await;
        job["status"] == "completed"
    })
    .await;
    let modes: Vec<String> = sqlx::query_scalar("select mode from products order by mode")
        .fetch_all(&app.pool)
        .await
        .expect("modes");
    assert_eq!(modes, vec!["live".to_owned(), "test".to_owned()]);
}

#[tokio::test]
async fn a_non_uuid_entity_id_is_a_bad_request() {
    let app = spawn_app().await;
    let (status, error) = send(
        &app,
        Method::GET,
        "/v1/entities/acme/migration/jobs",
        &None,
        Some(&app.key),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error["code"], "invalid_parameter");
    assert_eq!(error["param"], "entity_id");
}
