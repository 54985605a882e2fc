//! The four conflict modes, exactly as the API documents them.

use serde_json::json;

use crate::helpers::{bulk, products, spawn_app};

async fn titles(app: &crate::helpers::TestApp) -> Vec<(String, Option<String>)> {
    sqlx::query_as("select title, external_id from products order by created_at, id")
        .fetch_all(&app.pool)
        .await
        .expect("titles")
}

fn renamed(n: usize) -> Vec<serde_json::Value> {
    products(n)
        .into_iter()
        .map(|mut p| {
            p["title"] = json!(format!("{} v2", p["title"].as_str().expect("title")));
            p
        })
        .collect()
}

#[tokio::test]
async fn skip_leaves_existing_records_unchanged_and_counts_them_as_successes() {
    let app = spawn_app().await;
    app.import(&bulk(products(3), "skip")).await;
    let job = app.import(&bulk(renamed(3), "skip")).await;
    assert_eq!(job["status"], "completed");
    assert_eq!(job["succeeded_records"], 3);
    assert_eq!(app.count("products").await, 3);
    assert!(titles(&app).await.iter().all(|(t, _)| !t.ends_with("v2")));
}

#[tokio::test]
async fn update_applies_the_incoming_payload_to_the_existing_record() {
    let app = spawn_app().await;
    app.import(&bulk(products(2), "skip")).await;
    let ids_before: Vec<uuid::Uuid> = sqlx::query_scalar("select id from products order by id")
        .fetch_all(&app.pool)
        .await
        .expect("ids");
    let job = app.import(&bulk(renamed(2), "update")).await;
    assert_eq!(job["status"], "completed", "{job}");
    let ids_after: Vec<uuid::Uuid> = sqlx::query_scalar("select id from products order by id")
        .fetch_all(&app.pool)
        .await
        .expect("ids");
    assert_eq!(ids_before, ids_after, "update keeps the records");
    assert!(titles(&app).await.iter().all(|(t, _)| t.ends_with("v2")));
}

#[tokio::test]
async fn update_replaces_a_kits_components_as_one_unit() {
    let app = spawn_app().await;
    let mut records = products(2);
    records.push(
        json!({"external_id": "KIT", "title": "Kit", "product_type": "kit",
                        "components": [{"product_external_id": "P-0", "quantity": 1}]}),
    );
    app.import(&bulk(records, "skip")).await;
    let job = app
        .import(&bulk(
            vec![
                json!({"external_id": "KIT", "title": "Kit", "product_type": "kit",
                        "components": [{"product_external_id": "P-1", "quantity": 3}]}),
            ],
            "update",
        ))
        .await;
    assert_eq!(job["status"], "completed", "{job}");
    let components: Vec<String> = sqlx::query_scalar(
        "select c.external_id from product_components pc
         join products c on c.id = pc.component_product_id",
    )
    .fetch_all(&app.pool)
    .await
    .expect("components");
    assert_eq!(components, vec!["P-1".to_owned()]);
}

#[tokio::test]
async fn replace_nulls_the_old_provenance_and_inserts_a_new_record() {
    let app = spawn_app().await;
    let mut first = products(1);
    first[0].as_object_mut().expect("object").remove("sku");
    app.import(&bulk(first, "skip")).await;
    let mut second = renamed(1);
    second[0].as_object_mut().expect("object").remove("sku");
    let job = app.import(&bulk(second, "replace")).await;
    assert_eq!(job["status"], "completed", "{job}");
    let rows: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "select title, external_source, external_id from products order by created_at, id",
    )
    .fetch_all(&app.pool)
    .await
    .expect("rows");
    assert_eq!(
        rows,
        vec![
            ("Product 0".to_owned(), None, None),
            (
                "Product 0 v2".to_owned(),
                Some("shopify".to_owned()),
                Some("P-0".to_owned())
            ),
        ]
    );
}

#[tokio::test]
async fn replace_of_a_record_whose_sku_the_old_one_keeps_fails_and_writes_nothing() {
    let app = spawn_app().await;
    app.import(&bulk(products(1), "skip")).await;
    let job = app.import(&bulk(renamed(1), "replace")).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["errors"][0]["code"], "duplicate_sku");
    // The old record kept its provenance: the failed record's savepoint undid it.
    let provenance: Option<String> = sqlx::query_scalar("select external_id from products")
        .fetch_one(&app.pool)
        .await
        .expect("row");
    assert_eq!(provenance.as_deref(), Some("P-0"));
}

#[tokio::test]
async fn error_mode_writes_nothing_on_first_collision() {
    let app = spawn_app().await;
    app.import(&bulk(vec![products(5).remove(3)], "skip")).await;
    let before = app.count("products").await;
    let mut records = products(5);
    records[1]["product_type"] = json!("gadget");
    let job = app.import(&bulk(records, "error")).await;

    assert_eq!(job["status"], "failed");
    assert_eq!(job["succeeded_records"], 0);
    assert_eq!(job["failed_records"], 5);
    assert_eq!(job["processed_records"], 5);
    let errors = job["errors"].as_array().expect("errors");
    let codes: Vec<&str> = errors
        .iter()
        .map(|e| e["code"].as_str().expect("code"))
        .collect();
    assert_eq!(
        codes,
        vec![
            "batch_aborted",
            "invalid_field",
            "batch_aborted",
            "external_id_conflict",
            "batch_aborted"
        ]
    );
    assert_eq!(errors[3]["external_id"], "P-3");
    assert!(
        errors[0]["error"]
            .as_str()
            .expect("message")
            .contains("record 3")
    );
    assert_eq!(
        app.count("products").await,
        before,
        "nothing of the batch was written"
    );
}

#[tokio::test]
async fn error_mode_without_collisions_loads_the_batch() {
    let app = spawn_app().await;
    let job = app.import(&bulk(products(4), "error")).await;
    assert_eq!(job["status"], "completed");
    assert_eq!(app.count("products").await, 4);
}

#[tokio::test]
async fn a_repeated_external_id_within_one_batch_is_a_collision_too() {
    let app = spawn_app().await;
    let mut records = products(2);
    records[1]["external_id"] = json!("P-0");
    records[1]["sku"] = json!("OTHER");
    let job = app.import(&bulk(records.clone(), "error")).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["errors"][1]["code"], "external_id_conflict");
    assert_eq!(app.count("products").await, 0);

    let job = app.import(&bulk(records, "skip")).await;
    assert_eq!(job["status"], "completed", "the second is skipped: {job}");
    assert_eq!(app.count("products").await, 1);
}
