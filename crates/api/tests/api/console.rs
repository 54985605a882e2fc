//! The migration console in a real browser: headless Chromium driven over
//! WebDriver (Debian's `chromium` and `chromium-driver`; `cargo xtask test`
//! installs them), against the real API and a worker. Each test starts its own
//! chromedriver on a free port, with its own profile and download folder.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use uuid::Uuid;

use crate::helpers::{AppOptions, TestApp, bulk, products, spawn_app_with};

const DEFAULT_CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long the page may take to show what a step expects.
const WAIT: Duration = Duration::from_secs(30);

/// A headless Chromium behind its own chromedriver. [`Browser::close`] ends
/// it; a failed test drops it instead, and the drop ends the session itself,
/// because Chromium outlives a killed chromedriver.
struct Browser {
    client: Client,
    driver: Child,
    /// chromedriver's port and the session's id, while the session is open.
    session: Option<(u16, String)>,
    /// Declared last: removed once the session has ended.
    dir: Scratch,
}

/// A folder of its own under the system's temporary folder, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("arcus-console-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("downloads")).expect("download folder is created");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    async fn start() -> Self {
        let chromedriver =
            std::env::var("ARCUS_CHROMEDRIVER").unwrap_or_else(|_| DEFAULT_CHROMEDRIVER.to_owned());
        assert!(
            Path::new(&chromedriver).exists(),
            "no chromedriver at {chromedriver}: the console tests drive a real \
             headless Chromium. Install Debian's chromium and chromium-driver \
             (`apt-get install chromium chromium-driver`; `cargo xtask test` does \
             it), or point ARCUS_CHROMEDRIVER at a chromedriver"
        );
        let port = free_port();
        let mut driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{chromedriver} starts: {e}"));
        let webdriver = format!("http://127.0.0.1:{port}");
        wait_for_driver(&mut driver, &webdriver).await;

        let dir = Scratch::new();
        let downloads = dir.0.join("downloads");
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-gpu".to_owned(),
            "--window-size=1400,1000".to_owned(),
            format!("--user-data-dir={}", dir.0.join("profile").display()),
        ];
        if let Ok(extra) = std::env::var("ARCUS_CHROMIUM_ARGS") {
            args.extend(extra.split_whitespace().map(str::to_owned));
        }
        let mut options = json!({
            "args": args,
            "prefs": {
                "download.default_directory": downloads.display().to_string(),
                "download.prompt_for_download": false,
                "download.directory_upgrade": true,
            },
        });
        if let Ok(binary) = std::env::var("ARCUS_CHROMIUM") {
            options["binary"] = json!(binary);
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".to_owned(), json!("chrome"));
        capabilities.insert("goog:chromeOptions".to_owned(), options);
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&webdriver)
            .await
            .unwrap_or_else(|e| panic!("chromedriver starts Chromium: {e}"));
        let session = client
            .session_id()
            .await
            .expect("the session has an id")
            .map(|id| (port, id));
        Self {
            client,
            driver,
            session,
            dir,
        }
    }

    /// Ends the browser session (Chromium exits), then the driver.
    async fn close(mut self) {
        if self.client.clone().close().await.is_ok() {
            self.session = None;
        }
        let _ = self.driver.kill().await;
    }

    fn downloads(&self) -> PathBuf {
        self.dir.0.join("downloads")
    }

    async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("{url} loads: {e}"));
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("the page has {css}: {e}"))
    }

    async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("{css} is clicked: {e}"));
    }

    async fn type_into(&self, css: &str, text: &str) {
        let input = self.find(css).await;
        input.clear().await.expect("the input clears");
        input
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("{css} is typed into: {e}"));
    }

    async fn select(&self, css: &str, value: &str) {
        self.find(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("{css} selects {value:?}: {e}"));
    }

    /// The visible text of the first match, if there is one.
    async fn text(&self, css: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.text().await.ok()
    }

    /// Waits until the first match of `css` shows a text `check` accepts, and
    /// returns it.
    async fn wait_text(&self, css: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.text(css).await;
            if let Some(text) = &text
                && check(text)
            {
                return text.clone();
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {css} shows {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn displayed(&self, css: &str) -> bool {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element.is_displayed().await.unwrap_or(false),
            Err(_) => false,
        }
    }

    async fn wait_displayed(&self, css: &str, what: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.displayed(css).await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn script(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("the script runs: {e}"))
    }

    /// Opens the console and signs in.
    async fn sign_in(&self, app: &TestApp, entity_id: &str, key: &str) {
        self.goto(&app.url("/console")).await;
        self.wait_displayed("#sign-in", "the sign-in form").await;
        self.type_into("#entity-id", entity_id).await;
        self.type_into("#api-key", key).await;
        self.click("#sign-in-submit").await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some((port, session)) = self.session.take() {
            end_session(port, &session);
        }
        // Then the driver is killed as its `Child` drops, and the folder goes.
    }
}

/// `DELETE /session/{id}`, synchronously (a drop cannot await): chromedriver
/// quits Chromium and answers once it has.
fn end_session(port: u16, session: &str) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        let _ = stream.read_to_end(&mut Vec::new());
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

async fn wait_for_driver(driver: &mut Child, url: &str) {
    let deadline = Instant::now() + WAIT;
    let client = reqwest::Client::new();
    loop {
        if let Ok(response) = client.get(format!("{url}/status")).send().await
            && response.status().is_success()
        {
            return;
        }
        if let Ok(Some(status)) = driver.try_wait() {
            panic!("chromedriver exited at start: {status}");
        }
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for a finished download (Chromium writes `*.crdownload`, then
/// renames it) and returns its name and contents.
async fn downloaded_csv(dir: &Path) -> (String, String) {
    let deadline = Instant::now() + WAIT;
    loop {
        let finished = std::fs::read_dir(dir)
            .expect("the download folder is readable")
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|path| path.extension().is_some_and(|e| e == "csv"));
        if let Some(path) = finished {
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).expect("the CSV is UTF-8");
            return (name, text);
        }
        assert!(Instant::now() < deadline, "no CSV was downloaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn an_app_without_workers() -> AppOptions {
    AppOptions {
        workers: 0,
        ..AppOptions::default()
    }
}

#[tokio::test]
async fn the_console_follows_a_job_to_its_errors_and_downloads_them() {
    let app = spawn_app_with(an_app_without_workers()).await;
    // Three good products, one without a title, one reusing the first's sku;
    // the first carries a field no product has.
    let mut records = products(3);
    records[0]["vendor"] = json!("Acme Supply");
    records.push(json!({
        "external_id": "P-untitled", "product_type": "physical", "sku": "SKU-U",
    }));
    records.push(json!({
        "external_id": "P-dup", "title": "Duplicate", "product_type": "physical", "sku": "SKU-0",
    }));
    let job = app.submit_ok(&bulk(records, "skip")).await;
    let job_id = job["id"].as_str().expect("job id").to_owned();
    let browser = Browser::start().await;

    browser
        .sign_in(&app, &app.entity_id.to_string(), &app.key)
        .await;
    let row = format!(r#"#jobs-body tr[data-job-id="{job_id}"]"#);
    browser
        .wait_text(&format!("{row} .badge"), "the job, pending", |t| {
            t == "pending"
        })
        .await;
    assert_eq!(
        browser.text(&format!("{row} .pct")).await.as_deref(),
        Some("0%")
    );

    // A worker starts: the page follows the job to its end without a reload.
    let _worker = app.spawn_worker().await;
    browser
        .wait_text(&format!("{row} .badge"), "the job to end partial", |t| {
            t == "partial"
        })
        .await;
    let text = |css: &'static str| {
        let css = format!("{row} {css}");
        let browser = &browser;
        async move { browser.text(&css).await.unwrap_or_default() }
    };
    assert_eq!(text(".pct").await, "100%");
    assert_eq!(text(".count").await, "5 / 5");
    assert_eq!(text(".succeeded").await, "3");
    assert_eq!(text(".failed").await, "2");
    assert!(text(".rate").await.ends_with("/s"), "a rate is shown");
    assert_eq!(
        text(".not-kept").await,
        "Not kept, no such field: vendor (1 records)."
    );
    assert_eq!(
        browser
            .find(&format!("{row} progress"))
            .await
            .attr("value")
            .await
            .expect("a progress value")
            .as_deref(),
        Some("5")
    );

    // The filters ask the API for what they name.
    browser.select("#filter-status", "completed").await;
    browser
        .wait_displayed("#jobs-empty", "no completed jobs")
        .await;
    browser.select("#filter-status", "partial").await;
    browser.wait_displayed(&row, "the partial job").await;
    browser.select("#filter-resource", "orders").await;
    browser.wait_displayed("#jobs-empty", "no order jobs").await;
    browser.select("#filter-resource", "products").await;
    browser.wait_displayed(&row, "the products job").await;

    // Its errors, in a table.
    browser.click(&format!("{row} a.errors-link")).await;
    browser
        .wait_text("#errors-body", "both errors", |t| {
            t.contains("missing_required_field") && t.contains("duplicate_sku")
        })
        .await;
    let summary = browser.text("#errors-summary").await.unwrap_or_default();
    assert!(
        summary.ends_with("Not kept, no such field: vendor (1 records)."),
        "{summary}"
    );
    let rows = browser
        .client
        .find_all(Locator::Css("#errors-body tr"))
        .await
        .expect("error rows");
    let mut seen = Vec::new();
    for row in rows {
        let cell = |css: &'static str| {
            let row = row.clone();
            async move {
                row.find(Locator::Css(css))
                    .await
                    .expect("a cell")
                    .text()
                    .await
                    .expect("its text")
            }
        };
        seen.push((
            cell("td.index").await,
            cell("td.external-id").await,
            cell("td.code").await,
            cell("td.param").await,
        ));
    }
    assert_eq!(
        seen,
        [
            (
                "3".to_owned(),
                "P-untitled".to_owned(),
                "missing_required_field".to_owned(),
                "title".to_owned()
            ),
            (
                "4".to_owned(),
                "P-dup".to_owned(),
                "duplicate_sku".to_owned(),
                "sku".to_owned()
            ),
        ]
    );

    // Downloaded as CSV, through the browser's own download.
    browser.click("#errors-download").await;
    let (name, csv) = downloaded_csv(&browser.downloads()).await;
    assert!(name.ends_with(".csv"), "{name}");
    let lines: Vec<&str> = csv.lines().collect();
    let header = lines.first().expect("a header");
    assert!(header.starts_with("index,"), "{header}");
    assert!(header.ends_with("error_code,error,param,hint"), "{header}");
    assert_eq!(lines.len(), 3, "a header and two errors: {csv}");
    assert!(lines[1].starts_with("3,") && lines[1].contains("missing_required_field"));
    assert!(lines[2].starts_with("4,") && lines[2].contains("duplicate_sku"));

    // The reconciliation shows what the job loaded; the trial balance of a
    // ledger with no postings is in balance.
    browser.click(r#"#nav a[data-view="reconciliation"]"#).await;
    browser
        .wait_text("#counts-body", "the products from shopify", |t| {
            t.contains("products") && t.contains("shopify") && t.contains('3')
        })
        .await;
    browser
        .wait_text("#tb-summary", "the trial balance", |t| {
            t.contains("in balance")
        })
        .await;

    // Signing out forgets the key.
    browser.click("#sign-out").await;
    browser.wait_displayed("#sign-in", "the sign-in form").await;
    assert_eq!(browser.script("return sessionStorage.length").await, 0);
    browser.close().await;
}

#[tokio::test]
async fn the_console_explains_a_wrong_key_and_a_missing_scope() {
    let app = spawn_app_with(an_app_without_workers()).await;
    let browser = Browser::start().await;
    let entity_id = app.entity_id.to_string();

    browser
        .sign_in(&app, &entity_id, "ark_test_ent_nope_not-a-real-key")
        .await;
    let error = browser
        .wait_text("#sign-in-error", "the 401", |t| !t.is_empty())
        .await;
    assert!(error.contains("401"), "{error}");
    assert!(error.contains("invalid_api_key"), "{error}");
    assert!(browser.displayed("#sign-in").await, "still signed out");
    assert_eq!(browser.script("return sessionStorage.length").await, 0);

    // A key of the entity with neither accounting:read nor migration:read
    // signs in, and the reconciliation views say which scope it lacks.
    let key = app.key_with(domain::Mode::Test, &["products:read"]).await;
    browser.sign_in(&app, &entity_id, &key).await;
    browser.wait_displayed("#nav", "the signed-in views").await;
    browser.click(r#"#nav a[data-view="reconciliation"]"#).await;
    for view in ["#tb-error", "#counts-error"] {
        let error = browser.wait_text(view, "the 403", |t| !t.is_empty()).await;
        assert!(error.contains("403"), "{view}: {error}");
        assert!(error.contains("insufficient_scope"), "{view}: {error}");
        assert!(error.contains("accounting:read"), "{view}: {error}");
    }
    browser.close().await;
}

#[tokio::test]
async fn the_console_is_served_with_its_own_assets_and_a_strict_policy() {
    let app = spawn_app_with(an_app_without_workers()).await;
    for (path, content_type) in [
        ("/console", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
    ] {
        // Public: no key is sent.
        let response = app.client.get(app.url(path)).send().await.expect("sent");
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        let header = |name: &str| {
            headers
                .get(name)
                .map(|v| v.to_str().expect("ascii").to_owned())
                .unwrap_or_default()
        };
        assert!(header("content-type").starts_with(content_type), "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        if path == "/console" {
            let policy = header("content-security-policy");
            assert!(policy.contains("default-src 'none'"), "{policy}");
            assert!(policy.contains("script-src 'self'"), "{policy}");
            assert!(policy.contains("connect-src 'self'"), "{policy}");
        }
        let body = response.text().await.expect("text");
        assert!(!body.contains("://"), "{path} loads nothing from elsewhere");
    }
    let unknown = app
        .client
        .get(app.url("/console/other.js"))
        .send()
        .await
        .expect("sent");
    assert_eq!(unknown.status(), 404);
}
