//! Security: key lifecycle and storage, entity and mode isolation, rate limits,
//! hostile input, timeouts and the audit log.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::ratelimit::ManualClock;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{AppOptions, TestApp, bulk, products, spawn_app, spawn_app_with};

fn new_key(app: &TestApp, scopes: &[&str]) -> auth::NewKey {
    auth::NewKey {
        entity_id: app.entity_id,
        mode: domain::Mode::Test,
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        elevated: false,
        expires_at: None,
        allowed_ips: Vec::new(),
    }
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let app = spawn_app().await;
    let mut new = new_key(&app, &["migration:read"]);
    new.expires_at = Some(chrono::Utc::now() + chrono::Duration::seconds(2));
    let key = app.issue(new).await;
    let jobs = format!("/v1/entities/{}/migration/jobs", app.entity_id);
    // Used while valid, so the replica holds it in its cache when it expires.
    assert_eq!(app.send_as(&key.key, Method::GET, &jobs, None).await.0, 200);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let (status, error) = app.send_as(&key.key, Method::GET, &jobs, None).await;
    assert_eq!(
        (status.as_u16(), error["code"].as_str()),
        (401, Some("api_key_expired"))
    );
}

/// The replica serves a key it used recently from its cache; a revocation
/// reaches it through Postgres's notification at the commit.
#[tokio::test]
async fn a_revoked_key_is_refused_by_a_replica_that_holds_it_in_its_cache() {
    let app = spawn_app().await;
    let jobs = format!("/v1/entities/{}/migration/jobs", app.entity_id);
    let operator = domain::audit::Actor {
        name: "arcusctl:ops".to_owned(),
        request_id: None,
    };
    wait_for_listener(&app).await;
    let key = app.issue(new_key(&app, &["migration:read"])).await;
    assert_eq!(app.send_as(&key.key, Method::GET, &jobs, None).await.0, 200);
    // Marked revoked behind the service's back, without the notification:
    // the cached key still passes, which is what the cache saves a query on.
    let bypassed = app.issue(new_key(&app, &["migration:read"])).await;
    assert_eq!(
        app.send_as(&bypassed.key, Method::GET, &jobs, None).await.0,
        200
    );
    revoke_silently(&app, bypassed.id).await;
    assert_eq!(
        app.send_as(&bypassed.key, Method::GET, &jobs, None).await.0,
        200
    );

    assert!(
        auth::revoke(&app.pool, key.id, &operator)
            .await
            .expect("revokes")
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, error) = app.send_as(&key.key, Method::GET, &jobs, None).await;
        if status == 401 {
            assert_eq!(error["code"], "invalid_api_key");
            break;
        }
        assert_eq!(status, 200);
        assert!(
            Instant::now() < deadline,
            "the revoked key was still accepted 5 s after the revocation"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// While the replica cannot hear revocations it serves no key from its cache:
/// it reads every key from the table until its listener is back.
#[tokio::test]
async fn a_replica_that_lost_its_revocation_listener_reads_keys_again() {
    let app = spawn_app().await;
    let jobs = format!("/v1/entities/{}/migration/jobs", app.entity_id);
    let listener = wait_for_listener(&app).await;
    let key = app.issue(new_key(&app, &["migration:read"])).await;
    assert_eq!(app.send_as(&key.key, Method::GET, &jobs, None).await.0, 200);
    let cut: bool = sqlx::query_scalar("select pg_terminate_backend($1)")
        .bind(listener)
        .fetch_one(&app.pool)
        .await
        .expect("terminates");
    assert!(cut);
    revoke_silently(&app, key.id).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while listener_backend(&app)
        .await
        .is_none_or(|pid| pid == listener)
    {
        assert!(Instant::now() < deadline, "the listener never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, error) = app.send_as(&key.key, Method::GET, &jobs, None).await;
    assert_eq!(
        (status.as_u16(), error["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
}

/// Marks a key revoked in the table without telling the replicas, as no
/// product path does.
async fn revoke_silently(app: &TestApp, key_id: uuid::Uuid) {
    sqlx::query("update api_keys set revoked_at = now() where id = $1")
        .bind(key_id)
        .execute(&app.pool)
        .await
        .expect("revoked");
}

/// Waits for the API's revocation listener; its backend.
async fn wait_for_listener(app: &TestApp) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = listener_backend(app).await {
            return pid;
        }
        assert!(Instant::now() < deadline, "the API never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The backend of the API's revocation listener, once it listens.
async fn listener_backend(app: &TestApp) -> Option<i32> {
    sqlx::query_scalar(
        "select pid from pg_stat_activity
         where datname = current_database() and query like 'LISTEN %'",
    )
    .fetch_optional(&app.pool)
    .await
    .expect("activity")
}

#[tokio::test]
async fn an_ip_allowlist_admits_only_its_addresses() {
    let app = spawn_app().await;
    let jobs = format!("/v1/entities/{}/migration/jobs", app.entity_id);
    let mut elsewhere = new_key(&app, &["migration:read"]);
    elsewhere.allowed_ips = vec!["10.0.0.0/8".to_owned(), "2001:db8::/32".to_owned()];
    let elsewhere = app.issue(elsewhere).await;
    let (status, error) = app.send_as(&elsewhere.key, Method::GET, &jobs, None).await;
    assert_eq!(
        (status.as_u16(), error["code"].as_str()),
        (403, Some("ip_not_allowlisted"))
    );
    assert_eq!(error["type"], "permission_error");

    let mut here = new_key(&app, &["migration:read"]);
    here.allowed_ips = vec!["127.0.0.1".to_owned()];
    let here = app.issue(here).await;
    assert_eq!(
        app.send_as(&here.key, Method::GET, &jobs, None).await.0,
        200
    );
}

#[tokio::test]
async fn the_other_modes_key_reads_nothing_of_this_mode() {
    let app = spawn_app().await;
    let job = app.import(&bulk(products(2), "skip")).await;
    let (_, page) = app.get_entity("products").await;
    let product = page["data"][0]["id"].as_str().expect("id").to_owned();
    let live = app
        .key_with(domain::Mode::Live, crate::helpers::ALL_SCOPES)
        .await;
    let entity = format!("/v1/entities/{}", app.entity_id);
    for path in [
        format!(
            "{entity}/migration/jobs/{}",
            job["id"].as_str().expect("id")
        ),
        format!("{entity}/products/{product}"),
    ] {
        let (status, error) = app.send_as(&live, Method::GET, &path, None).await;
        assert_eq!(
            (status.as_u16(), error["code"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }
    for path in [
        format!("{entity}/migration/jobs"),
        format!("{entity}/products"),
    ] {
        let (status, list) = app.send_as(&live, Method::GET, &path, None).await;
        assert_eq!(status, 200);
        assert_eq!(list["data"], json!([]), "{path}");
    }
    let (_, counts) = app
        .send_as(
            &live,
            Method::GET,
            &format!("{entity}/reconciliation/counts"),
            None,
        )
        .await;
    assert_eq!(counts["totals"]["products"], 0);
}

#[tokio::test]
async fn the_database_holds_no_key_in_a_form_that_authenticates() {
    let app = spawn_app().await;
    let issued = app.issue(new_key(&app, &["migration:read"])).await;
    let jobs = format!("/v1/entities/{}/migration/jobs", app.entity_id);
    assert_eq!(
        app.send_as(&issued.key, Method::GET, &jobs, None).await.0,
        200
    );

    let stored: Vec<String> = sqlx::query_scalar(
        "select unnest(array[id::text, lookup_id, prefix, key_hash, array_to_string(scopes, ','), tier])
         from api_keys where id = $1",
    )
    .bind(issued.id)
    .fetch_all(&app.pool)
    .await
    .expect("the row");
    assert!(
        stored
            .iter()
            .all(|value| !value.contains(&issued.key[issued.prefix.len()..])),
        "no secret stored"
    );
    let hash = stored[3].clone();
    let candidates = stored
        .iter()
        .cloned()
        .chain([format!("{}{}", issued.prefix, &hash[..32]), hash.clone()]);
    for candidate in candidates {
        let (status, error) = app.send_as(&candidate, Method::GET, &jobs, None).await;
        assert_eq!(
            (status.as_u16(), error["code"].as_str()),
            (401, Some("invalid_api_key")),
            "{candidate}"
        );
    }
    // The hash is keyed: without the server's secret it cannot be recomputed.
    assert_ne!(
        hash,
        auth::KeyHasher::new("another secret").hash(&issued.key)
    );
    assert_eq!(
        hash,
        auth::KeyHasher::new(app.settings.auth.key_secret()).hash(&issued.key)
    );
}

#[tokio::test]
async fn rate_limits_hold_with_headers_and_recover_on_the_clock() {
    let clock = Arc::new(ManualClock::new(Duration::from_secs(1_900_000_000)));
    let app = spawn_app_with(AppOptions {
        rate_limit_clock: Some(clock.clone()),
        ..AppOptions::default()
    })
    .await;
    let jobs = format!("/v1/entities/{}/migration/jobs", app.entity_id);
    for i in 0..10 {
        let response = app.request(Method::GET, &jobs).send().await.expect("sent");
        assert_eq!(response.status(), 200);
        let headers = response.headers();
        assert_eq!(headers["x-ratelimit-limit"], "60");
        assert_eq!(
            headers["x-ratelimit-remaining"],
            (59 - i).to_string().as_str()
        );
        assert_eq!(headers["x-ratelimit-reset"], "1900000060");
    }
    let response = app.request(Method::GET, &jobs).send().await.expect("sent");
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    // concepts/rate-limits: a 429 says X-RateLimit-Remaining: 0, whichever
    // window refused it (here the per-second burst, with 50 left in the minute).
    assert_eq!(response.headers()["x-ratelimit-remaining"], "0");
    let error: Value = response.json().await.expect("json");
    assert_eq!(
        (error["code"].as_str(), error["type"].as_str()),
        (Some("rate_limit_exceeded"), Some("rate_limit"))
    );

    // Another key of the same entity has its own budget.
    let other = app.key_with(domain::Mode::Test, &["migration:read"]).await;
    assert_eq!(app.send_as(&other, Method::GET, &jobs, None).await.0, 200);

    clock.advance(Duration::from_secs(1));
    let response = app.request(Method::GET, &jobs).send().await.expect("sent");
    assert_eq!(
        response.status(),
        200,
        "a second later the burst window has room again"
    );

    // A refused request is not counted, and limits apply to writes too.
    let response = app
        .request(Method::POST, &app.bulk_path("products"))
        .json(&bulk(products(1), "skip"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["x-ratelimit-remaining"], "48");
}

#[tokio::test]
async fn hostile_bodies_get_a_4xx_and_change_nothing() {
    let app = spawn_app().await;
    let before = app.snapshot().await;
    let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let mut nested = json!("x");
    for _ in 0..20 {
        nested = json!({"n": nested});
    }
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("deep nesting", format!(r#"{{"external_source": "x", "records": [{deep}]}}"#).into_bytes()),
        ("a deep record", json!({"external_source": "x", "records": [{"external_id": "a", "title": nested}]}).to_string().into_bytes()),
        ("a huge string", json!({"external_source": "x", "records": [{"external_id": "a", "title": "t".repeat(200_000)}]}).to_string().into_bytes()),
        ("a huge key", json!({"external_source": "x", "records": [{"k".repeat(20_000): 1}]}).to_string().into_bytes()),
        ("invalid UTF-8", b"{\"external_source\": \"x\", \"records\": [{\"title\": \"\xff\xfe\"}]}".to_vec()),
        ("a NUL in a key", json!({"external_source": "x", "records": [{"ti\u{0}tle": "x"}]}).to_string().into_bytes()),
        ("records of the wrong type", br#"{"external_source": "x", "records": "all of them"}"#.to_vec()),
        ("a source of the wrong type", br#"{"external_source": ["x"], "records": [{}]}"#.to_vec()),
        ("a mode of the wrong type", br#"{"external_source": "x", "conflict_mode": 5, "records": [{}]}"#.to_vec()),
        ("a number too large", br#"{"external_source": 1e999999, "records": [{}]}"#.to_vec()),
        ("truncated", br#"{"external_source": "x", "records": [{"title": "#.to_vec()),
        ("empty", Vec::new()),
        ("a lone surrogate", br#"{"external_source": "\ud800", "records": [{}]}"#.to_vec()),
    ];
    for (what, body) in hostile {
        for path in [
            app.bulk_path("products"),
            format!("/v1/entities/{}/products", app.entity_id),
        ] {
            let response = app
                .request(Method::POST, &path)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .expect("sent");
            let status = response.status();
            let error: Value = response
                .json()
                .await
                .unwrap_or_else(|e| panic!("{what}: no envelope: {e}"));
            assert!(
                status.is_client_error(),
                "{what} at {path}: {status} {error}"
            );
            assert!(error["code"].is_string(), "{what}: {error}");
        }
    }

    // Mutations of a valid body, run as dry runs: never a 5xx, never a write.
    let valid = bulk(products(3), "skip").to_string().into_bytes();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for round in 0..150 {
        let mut body = valid.clone();
        for _ in 0..=(round % 4) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = (seed as usize) % body.len();
            body[at] = (seed >> 32) as u8;
        }
        let response = app
            .request(
                Method::POST,
                &format!("{}?dry_run=true", app.bulk_path("products")),
            )
            .body(body.clone())
            .send()
            .await
            .expect("sent");
        let status = response.status();
        assert!(
            status.is_success() || status.is_client_error(),
            "{status} for {}",
            String::from_utf8_lossy(&body)
        );
    }
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let app = spawn_app().await;
    let response = app
        .request(
            Method::GET,
            &format!("/v1/entities/{}/migration/jobs", app.entity_id),
        )
        .header("x-padding", "p".repeat(64 * 1024))
        .send()
        .await;
    match response {
        Ok(response) => assert_eq!(response.status(), 431),
        // hyper may also close the connection outright.
        Err(e) => assert!(e.is_request() || e.is_connect() || e.is_body(), "{e}"),
    }
}

/// Sends `head` (and nothing more) on a raw connection and returns what the
/// server answers before it closes the connection.
fn stall(addr: &str, head: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(head.as_bytes()).expect("writes");
    let mut answer = Vec::new();
    // Ends when the server closes the connection (or the 10 s deadline passes).
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let app = spawn_app_with(AppOptions {
        request_timeout_secs: 1,
        header_read_timeout_secs: 1,
        ..AppOptions::default()
    })
    .await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let path = app.bulk_path("products");
    let key = app.key.clone();
    let started = std::time::Instant::now();
    let answer = tokio::task::spawn_blocking(move || {
        stall(&addr, &format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"records\": ["
        ))
    })
    .await
    .expect("joined");
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "a slow body gets a 408: {answer}"
    );
    assert!(answer.contains("request_timeout"));

    let addr = app.address.trim_start_matches("http://").to_owned();
    let answer = tokio::task::spawn_blocking(move || {
        stall(&addr, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    })
    .await
    .expect("joined");
    assert!(
        !answer.contains("200 OK"),
        "a slow head is not served: {answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "both were cut off by the timeouts"
    );
    assert_eq!(app.count("migration_jobs").await, 0);
}

#[tokio::test]
async fn key_changes_and_closed_period_posts_are_audited_and_the_log_is_append_only() {
    let app = spawn_app().await;
    let issued = app.issue(new_key(&app, &["migration:read"])).await;
    let operator = domain::audit::Actor {
        name: "arcusctl:ops".to_owned(),
        request_id: Some("cli_1".to_owned()),
    };
    auth::revoke(&app.pool, issued.id, &operator)
        .await
        .expect("revoked");

    app.close_period("2026-01-31").await;
    let entry = json!({"external_id": "JE-1", "entry_date": "2026-01-15", "bypass_period_check": true,
                       "lines": [{"gl_account_number": "6010", "debit_amount": 1}, {"gl_account_number": "1010", "credit_amount": 1}]});
    let response = app
        .request(Method::POST, &app.bulk_path("journal-entries"))
        .json(&bulk(vec![entry], "skip"))
        .send()
        .await
        .expect("sent");
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let job: Value = response.json().await.expect("json");
    assert_eq!(
        app.wait_for_job(job["id"].as_str().expect("id")).await["status"],
        "completed"
    );

    let log: Vec<(String, String, Option<String>)> =
        sqlx::query_as("select actor, action, request_id from audit_log order by id")
            .fetch_all(&app.pool)
            .await
            .expect("log");
    let actions: Vec<&str> = log.iter().map(|(_, a, _)| a.as_str()).collect();
    // The harness's own key, this test's key, its revocation, the bypass.
    assert_eq!(
        actions,
        vec![
            "api_key.created",
            "api_key.created",
            "api_key.revoked",
            "journal_entry.period_check_bypassed"
        ]
    );
    assert_eq!(log[2].0, "arcusctl:ops");
    assert_eq!(log[2].2.as_deref(), Some("cli_1"));
    let submitter: uuid::Uuid = sqlx::query_scalar("select submitted_by from migration_jobs")
        .fetch_one(&app.pool)
        .await
        .expect("job");
    assert_eq!(log[3].0, format!("key:{submitter}"));
    assert_eq!(log[3].2.as_deref(), Some(request_id.as_str()));

    for statement in [
        "update audit_log set actor = 'someone else'",
        "delete from audit_log",
        "truncate audit_log",
    ] {
        let refused = sqlx::query(statement)
            .execute(&app.pool)
            .await
            .expect_err(statement);
        assert!(refused.to_string().contains("append-only"), "{refused}");
    }
    assert_eq!(app.count("audit_log").await, 4);
}

#[tokio::test]
async fn the_worker_bypasses_a_closed_period_only_when_the_submission_was_allowed_to() {
    let app = spawn_app().await;
    app.close_period("2026-01-31").await;
    let entry = |id: &str| {
        json!({"external_id": id, "entry_date": "2026-01-15", "bypass_period_check": true,
               "lines": [{"gl_account_number": "6010", "debit_amount": 1},
                         {"gl_account_number": "1010", "credit_amount": 1}]})
    };

    // Through the API, a key with `migration:write` submits: the job records
    // that it may bypass, and the worker does.
    let response = app
        .request(Method::POST, &app.bulk_path("journal-entries"))
        .json(&bulk(vec![entry("JE-1")], "skip"))
        .send()
        .await
        .expect("sent");
    let job: Value = response.json().await.expect("json");
    let done = app.wait_for_job(job["id"].as_str().expect("id")).await;
    assert_eq!(done["succeeded_records"], 1, "{done}");

    // A job whose submission was not allowed to: the worker decides nothing
    // of its own and refuses the closed period.
    let records = Value::Array(vec![entry("JE-2")]);
    let job = app
        .store_job(domain::Resource::JournalEntries, &records, false)
        .await;
    let done = app.wait_for_job(&job.id.to_string()).await;
    assert_eq!(done["failed_records"], 1, "{done}");
    assert_eq!(done["errors"][0]["code"], "period_closed", "{done}");
}
