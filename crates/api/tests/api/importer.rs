//! `arcusctl import` against the real API and workers: a file with good and
//! bad rows, interrupted and run again, its errors file read row by row, and
//! the consultant's loop of fixing the failed rows and importing them again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cli::import::{self, Options, Summary};
use serde_json::{Value, json};

use api::ratelimit::ManualClock;

use crate::helpers::{AppOptions, TestApp, bulk, eventually, scrape, spawn_app, spawn_app_with};

/// A folder of its own for one test's files, removed after it.
struct Folder(PathBuf);

impl Folder {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("arcus-import-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).expect("temp folder");
        Self(path)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("file is written");
        path
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn options(app: &TestApp, resource: &str, file: &Path) -> Options {
    Options {
        api_url: app.url(""),
        key: app.key.clone(),
        entity: app.entity_id,
        resource: resource.parse().expect("resource"),
        source: "shopify".to_owned(),
        file: file.to_owned(),
        format: None,
        mapping: None,
        conflict_mode: domain::ConflictMode::Skip,
        dry_run: false,
        strict: false,
        batch_size: 1000,
        parallel: 2,
        run_label: String::new(),
        progress: false,
    }
}

/// Runs an import, failing the test rather than hanging it if the importer
/// never sees its jobs end.
async fn run(options: &Options) -> anyhow::Result<Summary> {
    tokio::time::timeout(Duration::from_secs(120), import::run(options))
        .await
        .expect("the import ends within two minutes")
}

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_path(path).expect("csv");
    let header = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.expect("row").iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

/// 60 products: every seventh from the fourth has no title, and P-20's price
/// is not a number.
fn products_csv() -> (String, Vec<(usize, &'static str, &'static str)>) {
    let mut text = String::from("external_id,title,product_type,sku,list_price\n");
    let mut bad = Vec::new();
    for i in 0..60 {
        let title = if i % 7 == 3 {
            bad.push((i, "missing_required_field", "title"));
            String::new()
        } else {
            format!("\"Product {i}, blue\"")
        };
        let price = if i == 20 {
            bad.push((i, "invalid_field", "list_price"));
            "twelve"
        } else {
            "19.99"
        };
        text.push_str(&format!("P-{i},{title},physical,SKU-{i},{price}\n"));
    }
    bad.sort_unstable();
    (text, bad)
}

#[tokio::test]
async fn an_interrupted_import_resumes_without_duplicates_and_lists_every_failed_row() {
    let app = spawn_app().await;
    let folder = Folder::new();
    let (text, bad) = products_csv();
    let file = folder.write("products.csv", &text);
    let mut opts = options(&app, "products", &file);
    opts.batch_size = 10;
    opts.parallel = 1;

    // The first run is stopped once it has made some of its six jobs, as a
    // closed laptop or a Ctrl-C would.
    let first = tokio::spawn({
        let opts = opts.clone();
        async move { run(&opts).await }
    });
    eventually("the first run makes jobs", || async {
        app.count("migration_jobs").await >= 2
    })
    .await;
    first.abort();
    let _ = first.await;
    let made_before = app.count("migration_jobs").await;
    assert!(
        made_before < 6,
        "the run was stopped halfway: {made_before} jobs"
    );
    assert!(
        !folder.0.join("products.errors.csv").exists(),
        "an interrupted run leaves no errors file"
    );

    // Meanwhile someone else submits jobs of the same resource: the jobs of
    // the first run are no longer among the newest, where the importer's
    // listing looks, and are followed one by one.
    for i in 0..15 {
        app.import(&bulk(
            vec![json!({"external_id": format!("Q-{i}"), "title": "Q", "product_type": "service"})],
            "skip",
        ))
        .await;
    }

    let summary = run(&opts).await.expect("the second run");
    assert_eq!(
        (summary.records, summary.succeeded, summary.failed),
        (60, 50, 10)
    );
    assert_eq!(summary.jobs.len(), 6);
    assert!(
        summary.resumed >= usize::try_from(made_before).unwrap(),
        "the jobs of the first run were found again: {summary:?}"
    );
    assert_eq!(app.count("migration_jobs").await, 6 + 15, "no job twice");
    assert_eq!(app.count("products").await, 50 + 15, "no product twice");

    // The same command once more changes nothing and says the same.
    let again = run(&opts).await.expect("the third run");
    assert_eq!(again.resumed, 6);
    assert_eq!(
        Summary {
            resumed: 0,
            ..again.clone()
        },
        Summary {
            resumed: 0,
            ..summary.clone()
        }
    );
    assert_eq!(app.count("migration_jobs").await, 6 + 15);

    // The errors file holds the failed rows as they were, in file order,
    // with their errors.
    let errors = summary.errors_file.expect("an errors file");
    assert_eq!(errors, folder.0.join("products.errors.csv"));
    let (header, rows) = read_csv(&errors);
    assert_eq!(
        header,
        [
            "external_id",
            "title",
            "product_type",
            "sku",
            "list_price",
            "error_code",
            "error",
            "param"
        ]
    );
    let (_, input) = read_csv(&file);
    assert_eq!(rows.len(), bad.len());
    for (row, (i, code, param)) in rows.iter().zip(&bad) {
        assert_eq!(row[..5], input[*i][..], "row {i} is repeated as it was");
        assert_eq!(row[5], *code, "row {i}");
        assert_eq!(row[7], *param, "row {i}");
        assert!(!row[6].is_empty(), "row {i} says what is wrong");
    }
    assert!(rows[3][6].contains("twelve"), "{}", rows[3][6]);

    // Fixed in a spreadsheet, the errors file imports as it is.
    let fixed: String = std::fs::read_to_string(&errors)
        .expect("errors file")
        .lines()
        .enumerate()
        .map(|(n, line)| {
            if n == 0 {
                return format!("{line}\n");
            }
            let line = line.replace(",twelve,", ",12.00,");
            let line = line.replacen(",,", ",Fixed title,", 1);
            format!("{line}\n")
        })
        .collect();
    std::fs::write(&errors, fixed).expect("fixed");
    // An errors file an earlier run of the fixed file left no longer holds.
    let stale = folder.write("products.errors.errors.csv", "external_id\nP-3\n");
    let summary = run(&options(&app, "products", &errors))
        .await
        .expect("the fixed rows");
    assert_eq!((summary.succeeded, summary.failed), (10, 0), "{summary:?}");
    assert_eq!(summary.errors_file, None);
    assert!(!stale.exists(), "the stale errors file is removed");
    assert_eq!(app.count("products").await, 60 + 15);
}

#[tokio::test]
async fn customers_products_and_order_lines_load_from_three_files() {
    let app = spawn_app().await;
    let folder = Folder::new();
    let customers = folder.write(
        "customers.csv",
        "external_id,name,account_type,email,addresses[0].type,addresses[0].city,addresses[0].is_default_billing\n\
         C-1,Ada Ltd,business,ada@example.com,billing,Oslo,true\n\
         C-2,Bob,individual,,,,\n",
    );
    let products = folder.write(
        "products.csv",
        "external_id,title,product_type,list_price\nP-1,Mug,physical,5\nP-2,Desk,physical,120.50\n",
    );
    // Shopify-style orders: one row per line, the order's fields repeated.
    let orders = folder.write(
        "orders.csv",
        "external_id,document_type,account_external_id,order_date,line_items[].product_external_id,line_items[].quantity\n\
         O-1,invoice,C-1,2026-01-15,P-1,3\n\
         O-1,invoice,C-1,2026-01-15,P-2,1\n\
         O-2,invoice,C-3,2026-01-16,P-1,1\n\
         O-2,invoice,C-3,2026-01-16,P-2,2\n\
         O-3,sales_order,C-2,2026-01-17,P-2,1\n",
    );
    for (resource, file, succeeded) in [("accounts", &customers, 2), ("products", &products, 2)] {
        let summary = run(&options(&app, resource, file)).await.expect(resource);
        assert_eq!((summary.succeeded, summary.failed), (succeeded, 0));
    }
    let summary = run(&options(&app, "orders", &orders))
        .await
        .expect("orders");
    assert_eq!(
        (summary.records, summary.succeeded, summary.failed),
        (3, 2, 1)
    );
    let (_, rows) = read_csv(summary.errors_file.as_ref().expect("errors file"));
    assert_eq!(rows.len(), 2, "both rows of the failed order");
    for row in &rows {
        assert_eq!(row[0], "O-2");
        assert_eq!(row[6], "reference_not_found");
        assert_eq!(row[8], "account_external_id");
    }
    let (_, order) = app
        .get_entity("orders?external_source=shopify&external_id=O-1")
        .await;
    let order = &order["data"][0];
    assert_eq!(order["order_total"], 135.5, "{order}");
    assert_eq!(order["line_items"].as_array().map(Vec::len), Some(2));

    // The missing customer is loaded, and the failed order goes again.
    let late = folder.write(
        "late.csv",
        "external_id,name,account_type\nC-3,Cy,business\n",
    );
    run(&options(&app, "accounts", &late))
        .await
        .expect("late customer");
    let summary = run(&options(
        &app,
        "orders",
        summary.errors_file.as_ref().unwrap(),
    ))
    .await
    .expect("orders again");
    assert_eq!((summary.succeeded, summary.failed), (1, 0), "{summary:?}");
    assert_eq!(app.count("orders").await, 3);
}

#[tokio::test]
async fn json_files_dry_run_and_write_ndjson_errors() {
    let app = spawn_app().await;
    let folder = Folder::new();
    let records = json!([
        {"external_id": "P-1", "title": "Mug", "product_type": "physical"},
        {"external_id": "P-2", "product_type": "physical"},
        "not a record",
    ]);
    let file = folder.write("products.json", &records.to_string());
    let mut opts = options(&app, "products", &file);
    opts.dry_run = true;
    let summary = run(&opts).await.expect("dry run");
    assert_eq!(
        (summary.records, summary.succeeded, summary.failed),
        (3, 1, 2)
    );
    assert_eq!(summary.dry_run_outcomes, Some([1, 0, 0, 0]));
    assert!(summary.jobs.is_empty());
    assert_eq!(app.count("products").await, 0, "a dry run writes nothing");
    assert_eq!(app.count("migration_jobs").await, 0);
    let errors = std::fs::read_to_string(folder.0.join("products.errors.ndjson")).expect("errors");
    let lines: Vec<Value> = errors
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["external_id"], "P-2");
    assert_eq!(lines[0]["error_code"], "missing_required_field");
    assert_eq!(lines[0]["param"], "title");
    assert_eq!(lines[1]["error_code"], "invalid_row");

    // The same file for real, as NDJSON.
    let ndjson = folder.write(
        "more.ndjson",
        "{\"external_id\": \"P-1\", \"title\": \"Mug\", \"product_type\": \"physical\"}\n\
         {\"external_id\": \"P-3\", \"title\": \"Cup\", \"product_type\": \"physical\"}\n",
    );
    let summary = run(&options(&app, "products", &ndjson))
        .await
        .expect("ndjson");
    assert_eq!((summary.succeeded, summary.failed), (2, 0));
    assert_eq!(app.count("products").await, 2);
}

#[tokio::test]
async fn an_import_that_cannot_run_stops_before_sending_anything() {
    let app = spawn_app().await;
    let folder = Folder::new();
    let ragged = folder.write("ragged.csv", "external_id,title\nP-1,Mug\nP-2,Cup,extra\n");
    let err = run(&options(&app, "products", &ragged)).await.unwrap_err();
    assert!(format!("{err:#}").contains("ragged.csv"), "{err:#}");

    let bad_header = folder.write("bad.csv", "external_id,lines[x].sku\nP-1,a\n");
    let err = run(&options(&app, "products", &bad_header))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("lines[x].sku"), "{err:#}");

    let good = folder.write(
        "good.csv",
        "external_id,title,product_type\nP-1,Mug,physical\n",
    );
    let mut opts = options(&app, "products", &good);
    opts.key = "ark_test_ent_nope_nope".to_owned();
    let err = run(&opts).await.unwrap_err();
    assert!(format!("{err:#}").contains("invalid_api_key"), "{err:#}");

    assert_eq!(app.count("migration_jobs").await, 0);
    assert_eq!(app.count("products").await, 0);
    assert!(!folder.0.join("good.errors.csv").exists());
    assert!(
        !folder.0.join("good.errors.csv.partial").exists(),
        "an import stopped by an error leaves no partial errors file"
    );
}

#[tokio::test]
async fn an_import_keeps_to_a_test_keys_rate_limit() {
    let clock = Arc::new(ManualClock::new(Duration::from_secs(1_800_000_000)));
    let app = spawn_app_with(AppOptions {
        rate_limit_clock: Some(clock.clone()),
        ..AppOptions::default()
    })
    .await;
    // The limiter's clock follows real time: the key's real limits, 60 a
    // minute and 10 a second.
    let ticking = tokio::spawn(async move {
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = tokio::time::Instant::now();
            clock.advance(now - last);
            last = now;
        }
    });
    let folder = Folder::new();
    let mut text = String::from("external_id,title,product_type\n");
    for i in 0..24 {
        text.push_str(&format!("P-{i},Product {i},service\n"));
    }
    let file = folder.write("products.csv", &text);
    // One record a job and twelve jobs at once: a burst over 10 a second.
    let mut opts = options(&app, "products", &file);
    opts.batch_size = 1;
    opts.parallel = 12;
    let summary = run(&opts).await.expect("the import");
    ticking.abort();
    assert_eq!((summary.succeeded, summary.failed), (24, 0), "{summary:?}");
    assert_eq!(summary.jobs.len(), 24);
    assert_eq!(app.count("products").await, 24);
    let metrics = scrape(&app, &app.url("/metrics")).await;
    let refused: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("arcus_http_requests_total{") && l.contains("status=\"429\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        refused > 0.0,
        "the burst was refused in part, and the refused calls were made again"
    );
}

/// A column no field reads (an export's `price` for `list_price`) is not
/// lost without a word: the dry run and the import both say how many records
/// carried it; with `--strict` each such record fails on it instead.
#[tokio::test]
async fn a_column_no_field_reads_is_reported_and_strict_refuses_it() {
    let app = spawn_app().await;
    let folder = Folder::new();
    let file = folder.write(
        "products.csv",
        "external_id,title,product_type,price,Vendor\n\
         P-1,Mug,physical,5,Acme\n\
         P-2,Cup,physical,4,\n\
         P-3,Bowl,physical,,\n",
    );
    let expected = BTreeMap::from([("Vendor".to_owned(), 1), ("price".to_owned(), 2)]);
    let mut opts = options(&app, "products", &file);
    opts.dry_run = true;
    let summary = run(&opts).await.expect("dry run");
    assert_eq!((summary.succeeded, summary.failed), (3, 0));
    assert_eq!(summary.ignored, expected);

    opts.dry_run = false;
    let summary = run(&opts).await.expect("import");
    assert_eq!((summary.succeeded, summary.failed), (3, 0));
    assert_eq!(summary.ignored, expected);

    opts.strict = true;
    opts.run_label = "strict".to_owned();
    opts.conflict_mode = domain::ConflictMode::Update;
    let summary = run(&opts).await.expect("strict import");
    assert_eq!(
        (summary.succeeded, summary.failed),
        (1, 2),
        "P-3 carries nothing unread"
    );
    assert!(summary.ignored.is_empty());
    let errors = std::fs::read_to_string(folder.0.join("products.errors.csv")).expect("errors");
    assert!(errors.contains("unknown_field"), "{errors}");
}
