//! The test harness: each test gets its own database (`testkit`) and its own
//! queue names on the real Postgres and RabbitMQ, the real router served over
//! HTTP on a free port, and as many real workers as it asks for, all in this
//! process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use api::ratelimit::ManualClock;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use settings::{SecretString, Settings};
use sqlx::PgPool;
use testkit::TestDatabase;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Every scope a key can have.
pub const ALL_SCOPES: &[&str] = &domain::SCOPES;

/// A running worker of a test app.
pub struct WorkerHandle {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
    /// Where it serves `/metrics`, `/healthz` and `/readyz`.
    pub http_port: u16,
}

impl WorkerHandle {
    /// Stops the worker gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task)
            .await
            .expect("worker task panicked")
            .expect("worker failed");
    }
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    pub settings: Settings,
    pub entity_id: Uuid,
    /// A test-mode key with every scope.
    pub key: String,
    /// Dropped after the services stop, and the database with it.
    _database: TestDatabase,
    api_stop: Option<oneshot::Sender<()>>,
    pub workers: Vec<WorkerHandle>,
}

/// Options of [`spawn_app_with`].
pub struct AppOptions {
    pub workers: usize,
    pub chunk_size: usize,
    pub max_body_bytes: usize,
    pub relay_interval_ms: u64,
    /// Rate limiting, on this clock; off when `None`.
    pub rate_limit_clock: Option<Arc<ManualClock>>,
    pub request_timeout_secs: u64,
    pub header_read_timeout_secs: u64,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            workers: 1,
            chunk_size: 100,
            max_body_bytes: 10 * 1024 * 1024,
            relay_interval_ms: 200,
            rate_limit_clock: None,
            request_timeout_secs: 60,
            header_read_timeout_secs: 10,
        }
    }
}

/// An API and one worker on a fresh database and fresh queues.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    let services = testkit::services().await;
    let database = TestDatabase::create(5).await;
    let database_url = database.url.clone();

    let mut settings = Settings::load_from(None).expect("default settings");
    settings.database.url = SecretString::from(database_url.clone());
    settings.database.max_connections = 5;
    settings.amqp.url = SecretString::from(services.amqp_url.clone());
    settings.amqp.prefix = format!("test_{}", Uuid::new_v4().simple());
    settings.amqp.relay_interval_ms = options.relay_interval_ms;
    settings.http.addr = "127.0.0.1:0".to_owned();
    settings.http.max_body_bytes = options.max_body_bytes;
    settings.worker.chunk_size = options.chunk_size;
    settings.worker.lease_seconds = 5;
    settings.worker.http_addr = "127.0.0.1:0".to_owned();
    settings.auth.key_secret = SecretString::from(format!("test-secret-{}", Uuid::new_v4()));
    // The tests make many requests in a burst with one key; the limits have
    // tests of their own, on a clock they move by hand.
    settings.rate_limit.enabled = options.rate_limit_clock.is_some();
    settings.http.request_timeout_secs = options.request_timeout_secs;
    settings.http.header_read_timeout_secs = options.header_read_timeout_secs;

    let clock: Arc<dyn api::ratelimit::Clock> = match options.rate_limit_clock {
        Some(clock) => clock,
        None => Arc::new(api::ratelimit::SystemClock),
    };
    let app = api::Application::build_with_clock(&settings, clock)
        .await
        .expect("the API builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let (api_stop, api_stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = api_stopped.await;
    }));

    let pool = database.pool.clone();
    let entity = domain::entities::create(&pool, "Test Co")
        .await
        .expect("entity is created");
    let scopes: Vec<String> = ALL_SCOPES.iter().map(|s| (*s).to_owned()).collect();
    let key = issue_key(
        &pool,
        &settings,
        auth::NewKey {
            entity_id: entity.id,
            mode: domain::Mode::Test,
            scopes,
            elevated: false,
            expires_at: None,
            allowed_ips: Vec::new(),
        },
    )
    .await
    .key;

    let mut test_app = TestApp {
        address,
        client: reqwest::Client::new(),
        pool,
        settings,
        entity_id: entity.id,
        key,
        _database: database,
        api_stop: Some(api_stop),
        workers: Vec::new(),
    };
    for _ in 0..options.workers {
        let worker = test_app.spawn_worker().await;
        test_app.workers.push(worker);
    }
    test_app
}

impl TestApp {
    /// Starts one more worker consuming every resource.
    pub async fn spawn_worker(&self) -> WorkerHandle {
        let (stop, stopped) = oneshot::channel::<()>();
        let worker = worker::Worker::build(self.settings.clone(), domain::Resource::ALL.to_vec())
            .await
            .expect("the worker builds");
        let http_port = worker.http_port();
        let task = tokio::spawn(worker.run(async {
            let _ = stopped.await;
        }));
        WorkerHandle {
            stop: Some(stop),
            task,
            http_port,
        }
    }

    /// A new key for this app's entity.
    pub async fn key_with(&self, mode: domain::Mode, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        self.issue(auth::NewKey {
            entity_id: self.entity_id,
            mode,
            scopes,
            elevated: false,
            expires_at: None,
            allowed_ips: Vec::new(),
        })
        .await
        .key
    }

    /// Issues a key as an operator would.
    pub async fn issue(&self, new: auth::NewKey) -> auth::IssuedKey {
        issue_key(&self.pool, &self.settings, new).await
    }

    /// Another entity with a full-scope test key.
    pub async fn other_entity(&self) -> (Uuid, String) {
        let entity = domain::entities::create(&self.pool, "Other Co")
            .await
            .expect("entity is created");
        let scopes: Vec<String> = ALL_SCOPES.iter().map(|s| (*s).to_owned()).collect();
        let key = self
            .issue(auth::NewKey {
                entity_id: entity.id,
                mode: domain::Mode::Test,
                scopes,
                elevated: false,
                expires_at: None,
                allowed_ips: Vec::new(),
            })
            .await
            .key;
        (entity.id, key)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// A request with this app's key.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(&self.key)
    }

    pub fn bulk_path(&self, resource: &str) -> String {
        format!("/v1/entities/{}/migration/{resource}/bulk", self.entity_id)
    }

    pub fn job_path(&self, job_id: &str) -> String {
        format!("/v1/entities/{}/migration/jobs/{job_id}", self.entity_id)
    }

    /// Submits products, expects 202 and returns the job.
    pub async fn submit_ok(&self, body: &Value) -> Value {
        self.submit_to("products", body).await
    }

    /// Submits records of a resource, expects 202 and returns the job.
    pub async fn submit_to(&self, resource: &str, body: &Value) -> Value {
        let (status, job) = self
            .send(Method::POST, &self.bulk_path(resource), Some(body))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{job}");
        job
    }

    /// Submits products and waits for the job to end.
    pub async fn import(&self, body: &Value) -> Value {
        self.import_to("products", body).await
    }

    /// Submits records of a resource and waits for the job to end.
    pub async fn import_to(&self, resource: &str, body: &Value) -> Value {
        let job = self.submit_to(resource, body).await;
        self.wait_for_job(job["id"].as_str().expect("job id")).await
    }

    pub async fn dry_run(&self, body: &Value) -> (StatusCode, Value) {
        self.dry_run_to("products", body).await
    }

    pub async fn dry_run_to(&self, resource: &str, body: &Value) -> (StatusCode, Value) {
        self.send(
            Method::POST,
            &format!("{}?dry_run=true", self.bulk_path(resource)),
            Some(body),
        )
        .await
    }

    /// A request with this app's key and an optional JSON body; the status and
    /// the JSON answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        self.send_as(&self.key, method, path, body).await
    }

    /// [`TestApp::send`] with another key: another entity's, the other
    /// mode's, or one with fewer scopes.
    pub async fn send_as(
        &self,
        key: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, self.url(path)).bearer_auth(key);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request is sent");
        let status = response.status();
        (status, response.json().await.expect("a JSON body"))
    }

    /// `GET /v1/entities/{entity}/{path}` with this app's key.
    pub async fn get_entity(&self, path: &str) -> (StatusCode, Value) {
        self.send(
            Method::GET,
            &format!("/v1/entities/{}/{path}", self.entity_id),
            None,
        )
        .await
    }

    pub async fn get_job(&self, job_id: &str) -> Value {
        let response = self
            .request(Method::GET, &self.job_path(job_id))
            .send()
            .await
            .expect("request is sent");
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("a JSON body")
    }

    /// Polls a job until it ends, checking at every look that its counters add
    /// up and never go down.
    pub async fn wait_for_job(&self, job_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last_processed = 0;
        loop {
            let job = self.get_job(job_id).await;
            let processed = job["processed_records"].as_i64().expect("processed");
            let succeeded = job["succeeded_records"].as_i64().expect("succeeded");
            let failed = job["failed_records"].as_i64().expect("failed");
            assert_eq!(processed, succeeded + failed, "counters add up: {job}");
            assert!(processed >= last_processed, "counters never go down: {job}");
            last_processed = processed;
            if matches!(
                job["status"].as_str(),
                Some("completed" | "partial" | "failed")
            ) {
                return job;
            }
            assert!(Instant::now() < deadline, "job did not finish: {job}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Closes the test mode's books through `through` (`YYYY-MM-DD`).
    pub async fn close_period(&self, through: &str) {
        domain::ledger::close_period(
            &self.pool,
            self.entity_id,
            &[domain::Mode::Test],
            through.parse().expect("a date"),
        )
        .await
        .expect("the period is closed");
    }

    /// Stores a job straight in the store, as the API would after deciding
    /// what its key may do, without a key or a request behind it.
    pub async fn store_job(
        &self,
        resource: domain::Resource,
        records: &Value,
        may_bypass_period_check: bool,
    ) -> domain::jobs::Job {
        let submission = domain::jobs::submit(
            &self.pool,
            domain::jobs::NewJob {
                tenant: domain::Tenant {
                    entity_id: self.entity_id,
                    mode: domain::Mode::Test,
                },
                resource,
                external_source: "shopify",
                conflict_mode: domain::ConflictMode::Skip,
                records,
                record_count: i32::try_from(records.as_array().expect("an array").len())
                    .expect("at most 1000 records"),
                request_id: None,
                submitted_by: None,
                retry_of: None,
                may_bypass_period_check,
                strict: false,
                ignored_fields: &[],
            },
            None,
        )
        .await
        .expect("job stored");
        let domain::jobs::Submission::Created(job) = submission else {
            panic!("a new job")
        };
        *job
    }

    /// Rows of a table in this app's database.
    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("select count(*) from {table}"))
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    /// Every row count the API could have changed: to show that nothing was written.
    pub async fn snapshot(&self) -> Vec<i64> {
        let mut counts = Vec::new();
        for table in [
            "migration_jobs",
            "migration_job_records",
            "migration_job_errors",
            "job_outbox",
            "idempotency_keys",
            "products",
            "product_components",
            "accounts",
            "orders",
            "journal_entries",
            "vendor_bills",
            "ap_payments",
            "document_sequences",
        ] {
            counts.push(self.count(table).await);
        }
        counts
    }

    /// Opens a channel on this app's broker.
    pub async fn amqp_channel(&self) -> (lapin::Connection, lapin::Channel) {
        let conn = queue::connect(self.settings.amqp.url(), "test")
            .await
            .expect("broker connects");
        let channel = conn.create_channel().await.expect("channel opens");
        (conn, channel)
    }

    /// Messages ready in a queue, and its consumers.
    pub async fn queue_state(&self, queue: &str) -> (u32, u32) {
        let (_conn, channel) = self.amqp_channel().await;
        let q = channel
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .expect("queue exists");
        (q.message_count(), q.consumer_count())
    }

    pub fn topology(&self) -> queue::Topology {
        queue::Topology::new(&self.settings.amqp.prefix)
    }
}

async fn issue_key(pool: &PgPool, settings: &Settings, new: auth::NewKey) -> auth::IssuedKey {
    let hasher = auth::KeyHasher::new(settings.auth.key_secret());
    let operator = domain::audit::Actor {
        name: "arcusctl:test".to_owned(),
        request_id: None,
    };
    auth::issue(pool, &hasher, new, &operator)
        .await
        .expect("key is issued")
}

/// The error a job reports for the record at `index`.
pub fn error_at(job: &Value, index: u64) -> &Value {
    job["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .find(|e| e["index"] == index)
        .unwrap_or_else(|| panic!("no error at index {index}: {job}"))
}

/// The value of a sample of `name` whose labels include `labels`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .find(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

pub async fn scrape(app: &TestApp, url: &str) -> String {
    let response = app.client.get(url).send().await.expect("scraped");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    response.text().await.expect("text")
}

/// The API's OpenAPI document.
pub fn openapi() -> Value {
    api::openapi::document()
}

pub use testkit::eventually;

impl Drop for TestApp {
    /// Leaves nothing behind: the queues go here, the database with
    /// `_database` after it.
    fn drop(&mut self) {
        if let Some(stop) = self.api_stop.take() {
            let _ = stop.send(());
        }
        for worker in &mut self.workers {
            if let Some(stop) = worker.stop.take() {
                let _ = stop.send(());
            }
        }
        let amqp_url = self.settings.amqp.url().to_owned();
        let queues = self.topology().queues();
        let exchanges = [
            self.topology().exchange(),
            self.topology().dead_letter_exchange(),
        ];
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(async move {
                if let Ok(conn) = queue::connect(&amqp_url, "test cleanup").await {
                    if let Ok(channel) = conn.create_channel().await {
                        for q in queues {
                            let _ = channel
                                .queue_delete(q.as_str().into(), Default::default())
                                .await;
                        }
                        for e in exchanges {
                            let _ = channel
                                .exchange_delete(e.as_str().into(), Default::default())
                                .await;
                        }
                    }
                    let _ = conn.close(200, "done".into()).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// `n` valid product records with distinct external ids and skus.
pub fn products(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "external_id": format!("P-{i}"),
                "title": format!("Product {i}"),
                "product_type": "physical",
                "sku": format!("SKU-{i}"),
                "list_price": 19.99,
            })
        })
        .collect()
}

/// A bulk body for `records` from Shopify.
pub fn bulk(records: Vec<Value>, conflict_mode: &str) -> Value {
    json!({"records": records, "external_source": "shopify", "conflict_mode": conflict_mode})
}
