//! Webhooks: every terminal state of a job is announced to the entity's
//! endpoints by a signed event, a failing endpoint is retried until it
//! accepts or the attempts run out, a hanging one delays no job, endpoints
//! hear only their own entity and mode, and the endpoint API validates its
//! input. The receiver is a real HTTP server in the test, which checks each
//! signature with the endpoint's secret as a customer would.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;

use crate::helpers::{
    ALL_SCOPES, AppOptions, TestApp, bulk, eventually, products, sample, scrape, spawn_app_with,
};

/// What the test receiver answers.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// 500 to the first `n` requests, 200 after.
    FailFirst(usize),
    /// 500 to every request.
    AlwaysFail,
    /// Never answers.
    Hang,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

struct ReceiverState {
    behaviour: Behaviour,
    requests: Mutex<Vec<Received>>,
    seen: AtomicUsize,
}

/// An HTTP server on a free port that records every POST to `/hook`.
struct Receiver {
    port: u16,
    state: Arc<ReceiverState>,
}

impl Receiver {
    async fn start(behaviour: Behaviour) -> Self {
        let state = Arc::new(ReceiverState {
            behaviour,
            requests: Mutex::new(Vec::new()),
            seen: AtomicUsize::new(0),
        });
        let router = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the receiver binds");
        let port = listener.local_addr().expect("an address").port();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { port, state }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn received(&self) -> Vec<Received> {
        self.state.requests.lock().expect("not poisoned").clone()
    }

    /// Waits until at least `n` requests arrived.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        eventually(&format!("{n} webhook requests"), || async {
            self.received().len() >= n
        })
        .await;
        self.received()
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    state
        .requests
        .lock()
        .expect("not poisoned")
        .push(Received { headers, body });
    let n = state.seen.fetch_add(1, Ordering::SeqCst);
    match state.behaviour {
        Behaviour::FailFirst(failures) if n < failures => StatusCode::INTERNAL_SERVER_ERROR,
        Behaviour::FailFirst(_) => StatusCode::OK,
        Behaviour::AlwaysFail => StatusCode::INTERNAL_SERVER_ERROR,
        Behaviour::Hang => std::future::pending().await,
    }
}

/// An app whose worker retries webhooks quickly: 100 ms, then 200, 400.
async fn app_with_webhooks(max_attempts: u32, request_timeout_ms: u64) -> TestApp {
    let mut app = spawn_app_with(AppOptions {
        workers: 0,
        ..AppOptions::default()
    })
    .await;
    let hooks = &mut app.settings.webhooks;
    hooks.poll_interval_ms = 50;
    hooks.backoff_base_ms = 100;
    hooks.backoff_max_ms = 400;
    hooks.max_attempts = max_attempts;
    hooks.request_timeout_ms = request_timeout_ms;
    let worker = app.spawn_worker().await;
    app.workers.push(worker);
    app
}

fn endpoints_path(entity_id: Uuid) -> String {
    format!("/v1/entities/{entity_id}/webhook-endpoints")
}

/// Registers an endpoint with this app's key; the endpoint, with its secret.
async fn register(app: &TestApp, url: &str, events: Option<&[&str]>) -> Value {
    let mut body = json!({"url": url});
    if let Some(events) = events {
        body["events"] = json!(events);
    }
    let (status, endpoint) = app
        .send(Method::POST, &endpoints_path(app.entity_id), Some(&body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{endpoint}");
    endpoint
}

/// Checks a request's signature with the endpoint's secret, as a receiver
/// must, and returns the event.
fn verify(request: &Received, secret: &str) -> Value {
    let header = |name: &str| {
        request.headers[name]
            .to_str()
            .unwrap_or_else(|_| panic!("{name} is ASCII"))
            .to_owned()
    };
    assert_eq!(header("content-type"), "application/json");
    let signature = header("arcus-signature");
    let (t, v1) = signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .unwrap_or_else(|| panic!("t=<unix>,v1=<hex>: {signature}"));
    let t: u64 = t.parse().expect("t is unix seconds");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    assert!(now.abs_diff(t) <= 300, "t is recent: {t} vs {now}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(&request.body);
    mac.verify_slice(&hex::decode(v1).expect("v1 is hex"))
        .expect("the signature is the HMAC of t.body under the secret");
    let event: Value = serde_json::from_slice(&request.body).expect("the body is JSON");
    assert_eq!(header("arcus-event-id"), event["id"].as_str().expect("id"));
    assert_eq!(
        header("arcus-event-type"),
        event["type"].as_str().expect("type")
    );
    event
}

/// Every delivery row of a job: (status, attempts, last_status).
async fn deliveries_of(app: &TestApp, job_id: &str) -> Vec<(String, i32, Option<i32>)> {
    sqlx::query_as(
        "select status, attempts, last_status from webhook_deliveries
         where job_id = $1::uuid order by id",
    )
    .bind(job_id)
    .fetch_all(&app.pool)
    .await
    .expect("deliveries")
}

/// Submits with another key (another entity's, or the other mode's) and
/// waits for the job to end, reading its status from the database.
async fn import_with_key(app: &TestApp, key: &str, entity_id: Uuid, body: &Value) -> String {
    let (status, job) = app
        .send_as(
            key,
            Method::POST,
            &format!("/v1/entities/{entity_id}/migration/products/bulk"),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().expect("id").to_owned();
    eventually("the job to end", || async {
        let status: String =
            sqlx::query_scalar("select status from migration_jobs where id = $1::uuid")
                .bind(&id)
                .fetch_one(&app.pool)
                .await
                .expect("job row");
        matches!(status.as_str(), "completed" | "partial" | "failed")
    })
    .await;
    id
}

/// A product record that fails: it has no title.
fn untitled(external_id: &str) -> Value {
    json!({"external_id": external_id, "product_type": "physical"})
}

#[tokio::test]
async fn each_terminal_state_is_announced_by_a_signed_event() {
    let app = app_with_webhooks(3, 5_000).await;
    let receiver = Receiver::start(Behaviour::FailFirst(0)).await;
    let endpoint = register(&app, &receiver.url(), None).await;
    let secret = endpoint["secret"].as_str().expect("secret");

    let completed = app.import(&bulk(products(3), "skip")).await;
    let mut records = products(5)[3..].to_vec();
    records.push(untitled("BAD-1"));
    let partial = app.import(&bulk(records, "skip")).await;
    let failed = app
        .import(&bulk(vec![untitled("BAD-2"), untitled("BAD-3")], "skip"))
        .await;
    assert_eq!(completed["status"], "completed");
    assert_eq!(partial["status"], "partial");
    assert_eq!(failed["status"], "failed");

    let requests = receiver.wait_for(3).await;
    assert_eq!(requests.len(), 3, "one event per job and endpoint");
    for job in [&completed, &partial, &failed] {
        let event = requests
            .iter()
            .map(|r| verify(r, secret))
            .find(|e| e["data"]["object"]["id"] == job["id"])
            .unwrap_or_else(|| panic!("no event for {job}"));
        let status = job["status"].as_str().expect("status");
        assert_eq!(event["type"], format!("migration_job.{status}"));
        assert_eq!(event["object"], "event");
        assert_eq!(event["mode"], "test");
        // The envelope of the vendor's concepts/webhooks page.
        assert_eq!(event["livemode"], false);
        assert_eq!(event["entity_id"], app.entity_id.to_string());
        assert_eq!(event["api_version"], domain::webhooks::API_VERSION);
        let object = &event["data"]["object"];
        assert_eq!(object["object"], "migration_job");
        assert_eq!(object["status"], status);
        assert_eq!(object["entity_id"], app.entity_id.to_string());
        for count in [
            "total_records",
            "processed_records",
            "succeeded_records",
            "failed_records",
        ] {
            assert_eq!(object[count], job[count], "{count} of {event}");
        }
        assert_eq!(object["completed_at"], job["completed_at"]);
        assert!(
            object.get("errors").is_none(),
            "errors are left to GET: {event}"
        );
        let id = job["id"].as_str().expect("id");
        assert_eq!(
            deliveries_of(&app, id).await,
            [("delivered".to_owned(), 1, Some(200))]
        );
    }
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_until_it_accepts() {
    let app = app_with_webhooks(5, 5_000).await;
    let receiver = Receiver::start(Behaviour::FailFirst(2)).await;
    let endpoint = register(&app, &receiver.url(), None).await;
    let secret = endpoint["secret"].as_str().expect("secret");

    let job = app.import(&bulk(products(2), "skip")).await;
    let requests = receiver.wait_for(3).await;
    let events: Vec<Value> = requests.iter().map(|r| verify(r, secret)).collect();
    assert!(
        requests.iter().all(|r| r.body == requests[0].body),
        "every attempt sends the same event"
    );
    assert_eq!(events[0]["data"]["object"]["id"], job["id"]);

    let path = format!(
        "{}/{}/deliveries",
        endpoints_path(app.entity_id),
        endpoint["id"].as_str().expect("id")
    );
    eventually("the delivery to be recorded as delivered", || async {
        app.send(Method::GET, &path, None).await.1["data"][0]["status"] == "delivered"
    })
    .await;
    let (status, page) = app.send(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["object"], "list");
    assert_eq!(page["data"].as_array().expect("data").len(), 1);
    let delivery = &page["data"][0];
    assert_eq!(delivery["object"], "webhook_delivery");
    assert_eq!(delivery["id"], events[0]["id"]);
    assert_eq!(delivery["job_id"], job["id"]);
    assert_eq!(delivery["event_type"], "migration_job.completed");
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(delivery["last_status"], 200);
    assert_eq!(delivery["last_error"], Value::Null);
    assert_eq!(delivery["next_attempt_at"], Value::Null);
    assert!(delivery["delivered_at"].is_string());
    assert_eq!(receiver.received().len(), 3, "nothing after the 2xx");

    let port = app.workers[0].http_port;
    let metrics = scrape(&app, &format!("http://127.0.0.1:{port}/metrics")).await;
    let attempts = |outcome| {
        sample(
            &metrics,
            "arcus_worker_webhook_deliveries_total",
            &[("outcome", outcome)],
        )
    };
    assert_eq!(attempts("retried"), 2.0);
    assert_eq!(attempts("delivered"), 1.0);
}

#[tokio::test]
async fn a_hanging_endpoint_delays_no_job() {
    // An attempt may hang for a minute: longer than the whole test.
    let app = app_with_webhooks(3, 60_000).await;
    let receiver = Receiver::start(Behaviour::Hang).await;
    register(&app, &receiver.url(), None).await;

    let first = app.import(&bulk(products(2), "skip")).await;
    assert_eq!(first["status"], "completed");
    receiver.wait_for(1).await;
    // The worker's attempt is now held open by the endpoint; jobs go on.
    let second = app.import(&bulk(products(4), "skip")).await;
    assert_eq!(second["status"], "completed");
    let third = app.import(&bulk(vec![untitled("BAD-1")], "skip")).await;
    assert_eq!(third["status"], "failed");
    assert_eq!(
        deliveries_of(&app, first["id"].as_str().expect("id")).await,
        [("pending".to_owned(), 1, None)],
        "the first attempt is still waiting on the endpoint"
    );
}

#[tokio::test]
async fn an_endpoint_that_never_accepts_is_given_up_after_max_attempts() {
    let app = app_with_webhooks(3, 300).await;
    let failing = Receiver::start(Behaviour::AlwaysFail).await;
    let hanging = Receiver::start(Behaviour::Hang).await;
    register(&app, &failing.url(), None).await;
    register(&app, &hanging.url(), None).await;

    let job = app.import(&bulk(products(2), "skip")).await;
    assert_eq!(job["status"], "completed");
    let id = job["id"].as_str().expect("id");
    eventually("both deliveries to be given up", || async {
        deliveries_of(&app, id)
            .await
            .iter()
            .all(|(status, _, _)| status == "failed")
    })
    .await;
    let errors: Vec<(Option<i32>, i32, Option<String>)> = sqlx::query_as(
        "select d.last_status, d.attempts, d.last_error
         from webhook_deliveries d join webhook_endpoints e on e.id = d.endpoint_id
         where d.job_id = $1::uuid order by e.url = $2",
    )
    .bind(id)
    .bind(failing.url())
    .fetch_all(&app.pool)
    .await
    .expect("deliveries");
    assert_eq!(
        errors,
        [
            (
                None,
                3,
                Some("the endpoint did not answer within 300 ms".to_owned())
            ),
            (
                Some(500),
                3,
                Some("the endpoint answered 500 Internal Server Error".to_owned())
            ),
        ]
    );
    // A given-up delivery is never attempted again.
    assert_eq!(failing.received().len(), 3);
    assert_eq!(hanging.received().len(), 3);
}

#[tokio::test]
async fn endpoints_hear_only_their_entity_mode_and_event_types() {
    let app = app_with_webhooks(3, 5_000).await;
    let receiver = Receiver::start(Behaviour::FailFirst(0)).await;
    let endpoint = register(&app, &receiver.url(), None).await;
    let only_failures = Receiver::start(Behaviour::FailFirst(0)).await;
    register(&app, &only_failures.url(), Some(&["migration_job.failed"])).await;

    // Another entity's job, and a job of this entity's live mode: their end
    // is committed with any event it has, so none means none will come.
    let (other_entity, other_key) = app.other_entity().await;
    let foreign = import_with_key(&app, &other_key, other_entity, &bulk(products(1), "skip")).await;
    let live_key = app.key_with(domain::Mode::Live, ALL_SCOPES).await;
    let live = import_with_key(&app, &live_key, app.entity_id, &bulk(products(1), "skip")).await;
    assert!(deliveries_of(&app, &foreign).await.is_empty());
    assert!(deliveries_of(&app, &live).await.is_empty());

    let own = app.import(&bulk(products(1), "skip")).await;
    let requests = receiver.wait_for(1).await;
    let secret = endpoint["secret"].as_str().expect("secret");
    assert_eq!(
        verify(&requests[0], secret)["data"]["object"]["id"],
        own["id"]
    );
    assert_eq!(
        deliveries_of(&app, own["id"].as_str().expect("id"))
            .await
            .len(),
        1,
        "a completed job is not sent to an endpoint of failures only"
    );
    assert!(only_failures.received().is_empty());
    assert_eq!(receiver.received().len(), 1);

    // The other entity and the live mode see no endpoint either.
    let (_, listed) = app
        .send(Method::GET, &endpoints_path(app.entity_id), None)
        .await;
    assert_eq!(listed["data"].as_array().expect("data").len(), 2);
    for (key, entity) in [(&other_key, other_entity), (&live_key, app.entity_id)] {
        let (_, listed) = app
            .send_as(key, Method::GET, &endpoints_path(entity), None)
            .await;
        assert_eq!(listed["data"], json!([]), "{listed}");
    }
}

#[tokio::test]
async fn the_endpoint_api_validates_input_and_shows_the_secret_once() {
    let app = spawn_app_with(AppOptions::default()).await;
    let path = endpoints_path(app.entity_id);
    let refused = |body: Value| {
        let app = &app;
        let path = path.clone();
        async move {
            let (status, error) = app.send(Method::POST, &path, Some(&body)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
            assert_eq!(error["type"], "validation_error");
            assert!(error["request_id"].is_string(), "{error}");
            (
                error["code"].as_str().expect("code").to_owned(),
                error["param"].as_str().unwrap_or_default().to_owned(),
            )
        }
    };
    let pair = |code: &str, param: &str| (code.to_owned(), param.to_owned());
    assert_eq!(
        refused(json!({"events": ["migration_job.failed"]})).await,
        pair("missing_parameter", "url")
    );
    assert_eq!(
        refused(json!({"url": "ftp://example.com/hook"})).await,
        pair("invalid_parameter", "url")
    );
    assert_eq!(
        refused(json!({"url": "/relative/hook"})).await,
        pair("invalid_parameter", "url")
    );
    assert_eq!(
        refused(json!({"url": "https://user:secret@example.com/hook"})).await,
        pair("invalid_parameter", "url")
    );
    assert_eq!(
        refused(json!({"url": format!("https://example.com/{}", "a".repeat(2048))})).await,
        pair("parameter_too_long", "url")
    );
    assert_eq!(
        refused(
            json!({"url": "https://example.com", "events": ["migration_job.completed", "job.done"]})
        )
        .await,
        pair("invalid_parameter", "events[1]")
    );
    assert_eq!(
        refused(json!({"url": "https://example.com", "events": "migration_job.failed"})).await,
        pair("invalid_parameter", "events")
    );
    assert_eq!(app.count("webhook_endpoints").await, 0);

    let (status, created) = app
        .send(
            Method::POST,
            &path,
            Some(&json!({"url": "https://example.com/hooks/arcus"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["object"], "webhook_endpoint");
    assert_eq!(created["mode"], "test");
    assert_eq!(created["url"], "https://example.com/hooks/arcus");
    assert_eq!(
        created["events"],
        json!([
            "migration_job.completed",
            "migration_job.partial",
            "migration_job.failed"
        ])
    );
    assert_eq!(created["enabled_events"], created["events"]);
    let secret = created["secret"].as_str().expect("secret");
    assert!(
        secret.starts_with("whsec_") && secret.len() > 30,
        "{secret}"
    );
    let (status, listed) = app.send(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["object"], "list");
    let mut shown = created.clone();
    shown.as_object_mut().expect("object").remove("secret");
    assert_eq!(listed["data"], json!([shown]), "no secret after creation");

    // Scopes: listing reads, registering and deleting write.
    let reader = app.key_with(domain::Mode::Test, &["migration:read"]).await;
    let (status, error) = app
        .send_as(
            &reader,
            Method::POST,
            &path,
            Some(&json!({"url": "https://example.com/other"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error["code"], "insufficient_scope");
    assert_eq!(error["required"], "webhooks:manage");
    let (status, _) = app.send_as(&reader, Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK);

    // Another entity's key finds nothing by this endpoint's id on its own
    // path, nor does this entity's live key.
    let id = created["id"].as_str().expect("id");
    let (other_entity, other_key) = app.other_entity().await;
    let live_key = app.key_with(domain::Mode::Live, ALL_SCOPES).await;
    for (key, entity) in [(&other_key, other_entity), (&live_key, app.entity_id)] {
        for (method, suffix) in [(Method::DELETE, ""), (Method::GET, "/deliveries")] {
            let (status, error) = app
                .send_as(
                    key,
                    method,
                    &format!("{}/{id}{suffix}", endpoints_path(entity)),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert_eq!(error["code"], "not_found");
        }
    }
    let (status, error) = app
        .send(Method::DELETE, &format!("{path}/{}", Uuid::now_v7()), None)
        .await;
    assert_eq!(
        (status, &error["code"]),
        (StatusCode::NOT_FOUND, &json!("not_found"))
    );
    let (status, error) = app
        .send(Method::DELETE, &format!("{path}/not-a-uuid"), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["param"], "endpoint_id");

    let (status, deleted) = app
        .send(Method::DELETE, &format!("{path}/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        deleted,
        json!({"id": id, "object": "webhook_endpoint", "deleted": true})
    );
    let (_, listed) = app.send(Method::GET, &path, None).await;
    assert_eq!(listed["data"], json!([]));
    let (status, _) = app
        .send(Method::DELETE, &format!("{path}/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "deleted once");
    // A deleted endpoint hears of no more jobs, and its secret is forgotten.
    let job = app.import(&bulk(products(1), "skip")).await;
    assert!(
        deliveries_of(&app, job["id"].as_str().expect("id"))
            .await
            .is_empty()
    );
    let kept: Option<String> =
        sqlx::query_scalar("select secret from webhook_endpoints where id = $1::uuid")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert_eq!(kept, None);
    let audited: Vec<String> = sqlx::query_scalar(
        "select action from audit_log where action like 'webhook_endpoint.%' order by id",
    )
    .fetch_all(&app.pool)
    .await
    .expect("audit rows");
    assert_eq!(
        audited,
        ["webhook_endpoint.created", "webhook_endpoint.deleted"]
    );
}
