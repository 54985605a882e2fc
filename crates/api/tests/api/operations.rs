//! Operating the service: metrics that move by the right amounts, readiness
//! that follows the dependencies, and probes on the worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use settings::SecretString;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::helpers::{
    AppOptions, TestApp, bulk, eventually, products, sample, scrape, spawn_app, spawn_app_with,
};

#[tokio::test]
async fn metrics_count_requests_jobs_and_records() {
    let app = spawn_app().await;
    let worker_metrics = format!("http://127.0.0.1:{}/metrics", app.workers[0].http_port);
    let mut records = products(5);
    records[4]["product_type"] = json!("gadget");
    let job = app.import(&bulk(records, "skip")).await;
    assert_eq!(job["status"], "partial");

    let api = scrape(&app, &app.url("/metrics")).await;
    let bulk_route = "/v1/entities/{entity_id}/migration/{resource}/bulk";
    assert_eq!(
        sample(
            &api,
            "arcus_http_requests_total",
            &[("route", bulk_route), ("method", "POST"), ("status", "202")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &api,
            "arcus_http_request_duration_seconds_count",
            &[("route", bulk_route), ("method", "POST")]
        ),
        1.0
    );
    assert!(
        sample(
            &api,
            "arcus_http_requests_total",
            &[
                ("route", "/v1/entities/{entity_id}/migration/jobs/{job_id}"),
                ("status", "200")
            ]
        ) >= 1.0
    );
    assert_eq!(
        sample(
            &api,
            "arcus_jobs_accepted_total",
            &[("resource", "products")]
        ),
        1.0
    );
    assert_eq!(sample(&api, "arcus_outbox_backlog", &[]), 0.0);
    let queue = app.topology().queue(domain::Resource::Products);
    assert_eq!(
        sample(&api, "arcus_queue_consumers", &[("queue", &queue)]),
        1.0
    );
    assert_eq!(
        sample(&api, "arcus_queue_messages", &[("queue", &queue)]),
        0.0
    );
    assert!(sample(&api, "arcus_db_pool_connections", &[("state", "open")]) >= 1.0);

    let worker = scrape(&app, &worker_metrics).await;
    assert_eq!(
        sample(
            &worker,
            "arcus_worker_records_total",
            &[("resource", "products"), ("outcome", "succeeded")]
        ),
        4.0
    );
    assert_eq!(
        sample(
            &worker,
            "arcus_worker_records_total",
            &[("resource", "products"), ("outcome", "failed")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &worker,
            "arcus_worker_jobs_finished_total",
            &[("resource", "products"), ("status", "partial")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &worker,
            "arcus_worker_job_duration_seconds_count",
            &[("resource", "products")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &worker,
            "arcus_worker_chunk_duration_seconds_count",
            &[("resource", "products")]
        ),
        1.0
    );
    assert_eq!(sample(&worker, "arcus_worker_jobs_in_flight", &[]), 0.0);
}

#[tokio::test]
async fn the_worker_serves_its_own_probes() {
    let app = spawn_app().await;
    let base = format!("http://127.0.0.1:{}", app.workers[0].http_port);
    let health = app
        .client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(health.status(), 200);
    eventually("the worker to be ready", || async {
        app.client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let ready: Value = app
        .client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(
        ready["checks"],
        json!({"database": true, "migrations": true, "amqp": true})
    );
}

/// A TCP proxy to a real service that a test can cut and restore, standing in
/// for the service going away.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    connections: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
    _accept: JoinHandle<()>,
}

impl Proxy {
    async fn to(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (flag, conns) = (up.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    continue; // dropped: the service is "down"
                }
                let target = target.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns.lock().expect("lock").push(pipe);
            }
        });
        Self {
            port,
            up,
            connections,
            _accept: accept,
        }
    }

    /// Refuses new connections and breaks the open ones.
    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for pipe in self.connections.lock().expect("lock").drain(..) {
            pipe.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

async fn ready(app: &TestApp, base: &str) -> (bool, Value) {
    match app.client.get(format!("{base}/readyz")).send().await {
        Ok(response) => {
            let ok = response.status() == 200;
            (ok, response.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (false, Value::Null),
    }
}

#[tokio::test]
async fn readiness_follows_postgres_and_rabbitmq() {
    let app = spawn_app_with(AppOptions {
        workers: 0,
        ..AppOptions::default()
    })
    .await;
    let db_url = app.settings.database.url().to_owned();
    let amqp_url = app.settings.amqp.url().to_owned();
    let host_port = |url: &str| {
        let after_at = url.rsplit_once('@').map_or(url, |(_, rest)| rest);
        after_at.split('/').next().expect("authority").to_owned()
    };
    let pg = Proxy::to(host_port(&db_url)).await;
    let mq = Proxy::to(host_port(&amqp_url)).await;

    // A second API whose Postgres and RabbitMQ go through the proxies.
    let mut settings = app.settings.clone();
    settings.database.url =
        SecretString::from(db_url.replace(&host_port(&db_url), &format!("127.0.0.1:{}", pg.port)));
    settings.amqp.url = SecretString::from(
        amqp_url.replace(&host_port(&amqp_url), &format!("127.0.0.1:{}", mq.port)),
    );
    settings.database.max_connections = 2;
    let proxied = api::Application::build(&settings).await.expect("builds");
    let base = format!("http://127.0.0.1:{}", proxied.port());
    tokio::spawn(proxied.run_until(std::future::pending()));

    assert!(ready(&app, &base).await.0);
    pg.cut();
    eventually("readiness to drop with Postgres", || async {
        !ready(&app, &base).await.0
    })
    .await;
    let (_, body) = ready(&app, &base).await;
    assert_eq!(body["checks"]["database"], false);
    // A request meanwhile gets a 503 it can retry, not a 500.
    let refused = app
        .client
        .post(format!(
            "{base}/v1/entities/{}/migration/products/bulk",
            app.entity_id
        ))
        .bearer_auth(&app.key)
        .json(&bulk(products(1), "skip"))
        .send()
        .await
        .expect("answered");
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["code"], "service_unavailable");
    assert_eq!(body["type"], "internal");
    pg.restore();
    eventually("readiness to return with Postgres", || async {
        ready(&app, &base).await.0
    })
    .await;

    mq.cut();
    eventually("readiness to drop with RabbitMQ", || async {
        !ready(&app, &base).await.0
    })
    .await;
    let (_, body) = ready(&app, &base).await;
    assert_eq!(body["checks"]["amqp"], false);
    mq.restore();
    eventually("readiness to return with RabbitMQ", || async {
        ready(&app, &base).await.0
    })
    .await;
}

#[tokio::test]
async fn the_served_document_is_the_committed_openapi_json() {
    let app = spawn_app().await;
    let served = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("sent");
    assert_eq!(served.status(), 200);
    let served = served.text().await.expect("text");
    let committed = include_str!("../../../../openapi.json");
    assert!(
        served == committed,
        "openapi.json differs from what the API serves: run `cargo xtask openapi` and commit it"
    );
    let document: Value = serde_json::from_str(&served).expect("JSON");
    assert_eq!(document["openapi"], "3.1.0");
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn the_docs_page_is_served_with_its_own_assets() {
    let app = spawn_app().await;
    let page = app.client.get(app.url("/docs")).send().await.expect("sent");
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("html");
    assert!(page.contains(r#"<script src="/docs/redoc.standalone.js">"#));
    assert!(page.contains(r#"spec-url="/openapi.json""#));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no asset from elsewhere"
    );
    let script = app
        .client
        .get(app.url("/docs/redoc.standalone.js"))
        .send()
        .await
        .expect("sent");
    assert_eq!(script.status(), 200);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/javascript")
    );
    assert!(script.bytes().await.expect("bytes").len() > 100_000);
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = spawn_app().await;
    let document = crate::helpers::openapi();
    let paths = document["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (template, item) in paths {
        let path = template
            .replace("{entity_id}", &app.entity_id.to_string())
            .replace("{resource}", "products")
            .replace("{job_id}", &uuid::Uuid::now_v7().to_string())
            .replace("{endpoint_id}", &uuid::Uuid::now_v7().to_string())
            .replace("{id}", &uuid::Uuid::now_v7().to_string());
        for method in item.as_object().expect("operations").keys() {
            operations += 1;
            let method: reqwest::Method = method.to_uppercase().parse().expect("a method");
            let mut request = app.request(method.clone(), &path);
            if method == reqwest::Method::POST {
                request = request.json(&json!({}));
            }
            let response = request.send().await.expect("sent");
            let status = response.status();
            assert_ne!(
                status, 405,
                "{method} {template} is documented but not served"
            );
            if status == 404 {
                let error: Value = response.json().await.expect("json");
                assert_ne!(
                    error["hint"], "no such endpoint; see the API reference for the routes",
                    "{method} {template} is documented but not routed"
                );
            }
        }
    }
    // healthz, readyz, metrics; bulk, jobs, job, job errors, job retry; 6
    // resources x 3; 2 GL; 2 reconciliation; 4 webhook endpoints.
    // (/openapi.json and /docs serve the document itself.)
    assert_eq!(operations, 3 + 5 + 18 + 2 + 2 + 4);
}

#[tokio::test]
async fn worker_readiness_follows_rabbitmq_and_the_worker_reconnects() {
    let app = spawn_app_with(AppOptions {
        workers: 0,
        ..AppOptions::default()
    })
    .await;
    let amqp_url = app.settings.amqp.url().to_owned();
    let authority = amqp_url
        .rsplit_once('@')
        .map_or(amqp_url.as_str(), |(_, rest)| rest);
    let authority = authority.split('/').next().expect("authority").to_owned();
    let mq = Proxy::to(authority.clone()).await;
    let mut settings = app.settings.clone();
    settings.amqp.url =
        SecretString::from(amqp_url.replace(&authority, &format!("127.0.0.1:{}", mq.port)));
    let worker = worker::Worker::build(settings, domain::Resource::ALL.to_vec())
        .await
        .expect("builds");
    let base = format!("http://127.0.0.1:{}", worker.http_port());
    tokio::spawn(worker.run(std::future::pending()));

    eventually("the worker to be ready", || async {
        ready(&app, &base).await.0
    })
    .await;
    mq.cut();
    eventually("worker readiness to drop with RabbitMQ", || async {
        !ready(&app, &base).await.0
    })
    .await;
    let (_, body) = ready(&app, &base).await;
    assert_eq!(body["checks"]["amqp"], false);
    assert_eq!(body["checks"]["database"], true);
    mq.restore();
    eventually("the worker to reconnect", || async {
        ready(&app, &base).await.0
    })
    .await;

    // Reconnected, it loads jobs again.
    let job = app.import(&bulk(products(2), "skip")).await;
    assert_eq!(job["status"], "completed");
}
