//! A job's errors, paged and as a CSV download, and retrying a job's failed
//! records as a new job.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{AppOptions, TestApp, bulk, products, spawn_app, spawn_app_with};

/// 25 products; every third one (0, 3, ..., 24) has no title.
fn every_third_untitled() -> Vec<Value> {
    let mut records = products(25);
    for record in records.iter_mut().step_by(3) {
        record.as_object_mut().expect("object").remove("title");
    }
    records
}

fn errors_path(app: &TestApp, job_id: &str) -> String {
    format!("{}/errors", app.job_path(job_id))
}

#[tokio::test]
async fn errors_are_paged_in_index_order() {
    let app = spawn_app().await;
    let job = app.import(&bulk(every_third_untitled(), "skip")).await;
    assert_eq!(job["failed_records"], 9, "{job}");
    let id = job["id"].as_str().expect("id");

    let mut seen = Vec::new();
    let mut cursor: Option<u64> = None;
    let mut pages = 0;
    loop {
        let path = match cursor {
            None => format!("{}?limit=4", errors_path(&app, id)),
            Some(after) => format!("{}?limit=4&starting_after={after}", errors_path(&app, id)),
        };
        let (status, page) = app.send(Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["object"], "list");
        pages += 1;
        let data = page["data"].as_array().expect("data");
        seen.extend(data.iter().cloned());
        if page["has_more"] == false {
            assert_eq!(page["next_cursor"], Value::Null);
            break;
        }
        assert_eq!(data.len(), 4);
        assert_eq!(page["next_cursor"], data[3]["index"]);
        cursor = page["next_cursor"].as_u64();
    }
    assert_eq!(pages, 3);
    let indexes: Vec<u64> = seen.iter().map(|e| e["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, vec![0, 3, 6, 9, 12, 15, 18, 21, 24]);
    assert_eq!(seen[1]["external_id"], "P-3");
    assert_eq!(seen[1]["code"], "missing_required_field");
    assert_eq!(seen[1]["param"], "title");
    // The pages hold exactly the job's errors.
    assert_eq!(Value::Array(seen), job["errors"]);

    let (status, page) = app.send(Method::GET, &errors_path(&app, id), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        page["data"].as_array().map(Vec::len),
        Some(9),
        "default limit is 20"
    );

    let clean = app.import(&bulk(products(2), "skip")).await;
    let (_, page) = app
        .send(
            Method::GET,
            &errors_path(&app, clean["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(page["data"], json!([]));
    assert_eq!(page["has_more"], false);
}

#[tokio::test]
async fn bad_error_requests_are_refused_in_the_envelope() {
    let app = spawn_app().await;
    let job = app.import(&bulk(every_third_untitled(), "skip")).await;
    let id = job["id"].as_str().expect("id");
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("starting_after=-1", "starting_after"),
        ("starting_after=P-3", "starting_after"),
        ("format=xlsx", "format"),
    ] {
        let (status, body) = app
            .send(
                Method::GET,
                &format!("{}?{query}", errors_path(&app, id)),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["code"], "invalid_parameter", "{query}");
        assert_eq!(body["param"], param, "{query}");
    }
    let (status, body) = app
        .send(Method::GET, &errors_path(&app, "not-a-uuid"), None)
        .await;
    assert_eq!(
        (status, body["param"].clone()),
        (StatusCode::BAD_REQUEST, json!("job_id"))
    );
    let unknown = uuid::Uuid::now_v7().to_string();
    for path in [
        errors_path(&app, &unknown),
        format!("{}?format=csv", errors_path(&app, &unknown)),
    ] {
        let (status, body) = app.send(Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["code"], "not_found");
    }
    // Another entity's key sees no such job, on its own path.
    let (other, other_key) = app.other_entity().await;
    let (status, body) = app
        .send_as(
            &other_key,
            Method::GET,
            &format!("/v1/entities/{other}/migration/jobs/{id}/errors?format=csv"),
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::NOT_FOUND, json!("not_found"))
    );
    // Reading errors needs migration:read.
    let key = app
        .key_with(domain::Mode::Test, &["products:read", "migration:write"])
        .await;
    let (status, body) = app
        .send_as(&key, Method::GET, &errors_path(&app, id), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["required"], "migration:read");
}

#[tokio::test]
async fn errors_download_as_a_csv_that_imports_again() {
    let app = spawn_app().await;
    let records = vec![
        json!({"external_id": "P-ok", "title": "Fine", "product_type": "physical"}),
        json!({"external_id": "P-untitled", "product_type": "physical", "sku": "S-1",
               "list_price": 12.5, "description": "a \"quoted\", comma"}),
        json!({"external_id": "KIT-1", "title": "Kit", "product_type": "kit",
               "components": [{"product_external_id": "P-ok", "quantity": 1},
                              {"product_external_id": "LATER", "quantity": 2}]}),
    ];
    let job = app.import(&bulk(records.clone(), "skip")).await;
    assert_eq!(job["failed_records"], 2, "{job}");
    let response = app
        .request(
            Method::GET,
            &format!(
                "{}?format=csv",
                errors_path(&app, job["id"].as_str().unwrap())
            ),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(
        disposition,
        format!(
            "attachment; filename=\"products-{}-errors.csv\"",
            job["id"].as_str().unwrap()
        )
    );
    let text = response.text().await.expect("body");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        header,
        [
            "index",
            "external_id",
            "description",
            "list_price",
            "product_type",
            "sku",
            "components[0].product_external_id",
            "components[0].quantity",
            "components[1].product_external_id",
            "components[1].quantity",
            "title",
            "error_code",
            "error",
            "param",
            "hint",
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), 2);
    let cell = |row: usize, column: &str| {
        let at = header.iter().position(|h| h == column).expect(column);
        rows[row][at].to_owned()
    };
    assert_eq!(cell(0, "index"), "1");
    assert_eq!(cell(0, "external_id"), "P-untitled");
    assert_eq!(cell(0, "description"), "a \"quoted\", comma");
    assert_eq!(cell(0, "list_price"), "12.5");
    assert_eq!(cell(0, "error_code"), "missing_required_field");
    assert_eq!(cell(0, "param"), "title");
    assert_eq!(cell(0, "components[1].quantity"), "");
    assert_eq!(cell(1, "index"), "2");
    assert_eq!(cell(1, "external_id"), "KIT-1");
    assert_eq!(cell(1, "error_code"), "reference_not_found");
    assert!(
        cell(1, "param").starts_with("components[1]"),
        "{}",
        cell(1, "param")
    );
    assert!(cell(1, "error").contains("LATER"), "{}", cell(1, "error"));

    // The file reads back, through the importer's convention, as the records
    // that failed: fixed in a spreadsheet, it imports again.
    let layout = tabular::Layout::new(header.iter().map(String::as_str), &Default::default())
        .expect("layout");
    let back: Vec<Value> = rows
        .iter()
        .map(|row| {
            let cells: Vec<&str> = row.iter().collect();
            let mut record = layout.start(&cells).expect("row");
            layout.finish(&mut record);
            record
        })
        .collect();
    let mut expected = records[1].clone();
    expected["list_price"] = json!("12.5");
    assert_eq!(back, vec![expected, records[2].clone()]);
}

#[tokio::test]
async fn retry_runs_only_the_failed_records_once_their_parents_exist() {
    let app = spawn_app().await;
    let kits: Vec<Value> = (0..3)
        .map(|i| {
            json!({"external_id": format!("KIT-{i}"), "title": "Kit", "product_type": "kit",
                   "components": [{"product_external_id": "LATER", "quantity": 1}]})
        })
        .collect();
    let mut records = products(2);
    records.insert(1, kits[0].clone());
    records.extend(kits[1..].iter().cloned());
    let first = app.import(&bulk(records, "skip")).await;
    assert_eq!(first["status"], "partial");
    assert_eq!(first["failed_records"], 3);
    let first_id = first["id"].as_str().expect("id");

    // The missing parent is loaded; the failed records go again, alone.
    app.import(&bulk(
        vec![json!({"external_id": "LATER", "title": "Later", "product_type": "physical"})],
        "skip",
    ))
    .await;
    let retry_path = format!("{}/retry", app.job_path(first_id));
    let response = app
        .request(Method::POST, &retry_path)
        .header("idempotency-key", "retry-once")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(response.headers().contains_key("location"));
    let retry: Value = response.json().await.expect("json");
    assert_eq!(retry["retry_of"], first_id);
    assert_eq!(retry["total_records"], 3);
    assert_eq!(retry["resource"], "products");
    assert_eq!(retry["external_source"], "shopify");
    assert_eq!(retry["conflict_mode"], "skip");

    // The same key replays the same job instead of making another.
    let again = app
        .request(Method::POST, &retry_path)
        .header("idempotency-key", "retry-once")
        .send()
        .await
        .expect("sent");
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["id"], retry["id"]);

    let done = app.wait_for_job(retry["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["succeeded_records"], 3);
    assert_eq!(done["retry_of"], first_id);
    let (_, kit) = app
        .get_entity("products?external_source=shopify&external_id=KIT-2")
        .await;
    assert_eq!(kit["data"].as_array().map(Vec::len), Some(1), "{kit}");
    assert_eq!(app.get_job(first_id).await["retry_of"], Value::Null);
    // Two products, three kits and LATER: nothing twice.
    assert_eq!(app.count("products").await, 6);

    // A job without failures has nothing to retry.
    let (status, body) = app
        .send(
            Method::POST,
            &format!("{}/retry", app.job_path(done["id"].as_str().unwrap())),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "nothing_to_retry");
}

#[tokio::test]
async fn retry_refuses_unfinished_unknown_and_unauthorized() {
    let app = spawn_app_with(AppOptions {
        workers: 0,
        ..AppOptions::default()
    })
    .await;
    let pending = app.submit_ok(&bulk(every_third_untitled(), "skip")).await;
    let pending_id = pending["id"].as_str().expect("id");
    let retry_path = format!("{}/retry", app.job_path(pending_id));
    let (status, body) = app.send(Method::POST, &retry_path, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "job_not_finished");
    assert_eq!(body["type"], "conflict");

    let unknown = format!("{}/retry", app.job_path(&uuid::Uuid::now_v7().to_string()));
    let (status, body) = app.send(Method::POST, &unknown, None).await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::NOT_FOUND, json!("not_found"))
    );

    // Retrying writes products: the key needs products:write as well.
    for (scopes, required) in [
        (vec!["migration:read", "migration:write"], "products:write"),
        (vec!["migration:read", "products:write"], "migration:write"),
    ] {
        let key = app.key_with(domain::Mode::Test, &scopes).await;
        let (status, body) = app.send_as(&key, Method::POST, &retry_path, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["code"], "insufficient_scope");
        assert_eq!(body["required"], required);
    }
    let jobs: i64 = app.count("migration_jobs").await;
    assert_eq!(jobs, 1, "no refused retry made a job");
}
