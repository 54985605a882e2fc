//! The product rules, as a client sees them through a job's errors.

use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::helpers::{bulk, error_at, products, spawn_app};

#[tokio::test]
async fn valid_products_are_stored_exactly() {
    let app = spawn_app().await;
    // Sent as text: the amount must arrive digit for digit, not through a float.
    let body = r#"{"external_source": "shopify", "records": [{
        "external_id": "P-1", "title": " Mug ", "product_type": "physical",
        "sku": "MUG-1", "description": "Blue", "list_price": 12345678901234.5678, "cost": "0.1"
    }]}"#;
    let response = app
        .request(reqwest::Method::POST, &app.bulk_path("products"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 202);
    let job: Value = response.json().await.expect("json");
    let job = app.wait_for_job(job["id"].as_str().expect("id")).await;
    assert_eq!(job["status"], "completed", "{job}");
    let row: (String, String, Option<String>, Decimal, Decimal, String, String) = sqlx::query_as(
        "select title, product_type, sku, list_price, cost, external_source, external_id from products",
    )
    .fetch_one(&app.pool)
    .await
    .expect("one product");
    assert_eq!(row.0, "Mug");
    assert_eq!(row.1, "physical");
    assert_eq!(row.2.as_deref(), Some("MUG-1"));
    assert_eq!(
        row.3,
        Decimal::from_str_exact("12345678901234.5678").expect("decimal")
    );
    assert_eq!(row.4, Decimal::from_str_exact("0.1").expect("decimal"));
    assert_eq!((row.5.as_str(), row.6.as_str()), ("shopify", "P-1"));
}

#[tokio::test]
async fn a_thousand_records_with_invalid_ones_end_partial_with_exact_counts() {
    let app = spawn_app().await;
    let mut records = products(1000);
    // Every 10th record is broken, in one of five ways.
    for i in (0..1000).step_by(10) {
        let r = &mut records[i];
        match (i / 10) % 5 {
            0 => {
                r.as_object_mut().expect("object").remove("title");
            }
            1 => r["product_type"] = json!("gadget"),
            2 => r["sku"] = json!("SKU-1"),
            3 => {
                r.as_object_mut().expect("object").remove("external_id");
            }
            _ => r["list_price"] = json!(-5),
        }
    }
    let job = app.import(&bulk(records, "skip")).await;

    assert_eq!(job["status"], "partial");
    assert_eq!(job["total_records"], 1000);
    assert_eq!(job["processed_records"], 1000);
    assert_eq!(job["succeeded_records"], 900);
    assert_eq!(job["failed_records"], 100);
    let errors = job["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 100);
    let indexes: Vec<u64> = errors
        .iter()
        .map(|e| e["index"].as_u64().expect("index"))
        .collect();
    assert_eq!(indexes, (0..1000).step_by(10).collect::<Vec<u64>>());
    for e in errors {
        let i = e["index"].as_u64().expect("index");
        let (code, param) = match (i / 10) % 5 {
            0 => ("missing_required_field", "title"),
            1 => ("invalid_field", "product_type"),
            2 => ("duplicate_sku", "sku"),
            3 => ("missing_external_id", "external_id"),
            _ => ("invalid_field", "list_price"),
        };
        assert_eq!(e["code"], code, "{e}");
        assert_eq!(e["param"], param, "{e}");
        assert!(!e["error"].as_str().expect("message").is_empty());
        if code == "missing_external_id" {
            assert!(
                e.get("external_id").is_none(),
                "no external_id, no key: {e}"
            );
        } else {
            assert_eq!(e["external_id"], format!("P-{i}"));
        }
    }
    assert_eq!(app.count("products").await, 900);
    assert_eq!(app.count("migration_job_errors").await, 100);
}

#[tokio::test]
async fn duplicate_sku_is_refused_within_a_batch_and_against_stored_products() {
    let app = spawn_app().await;
    app.import(&bulk(products(1), "skip")).await;
    let job = app
        .import(&bulk(
            vec![
                json!({"external_id": "A", "title": "A", "product_type": "physical", "sku": "SKU-0"}),
                json!({"external_id": "B", "title": "B", "product_type": "physical", "sku": "NEW"}),
                json!({"external_id": "C", "title": "C", "product_type": "physical", "sku": "NEW"}),
            ],
            "skip",
        ))
        .await;
    assert_eq!(job["succeeded_records"], 1, "{job}");
    assert_eq!(error_at(&job, 0)["code"], "duplicate_sku");
    assert_eq!(error_at(&job, 2)["code"], "duplicate_sku");
    assert_eq!(error_at(&job, 2)["param"], "sku");
}

#[tokio::test]
async fn kit_components_resolve_by_external_id_earlier_in_the_batch_and_by_id() {
    let app = spawn_app().await;
    app.import(&bulk(products(1), "skip")).await;
    let p0: uuid::Uuid = sqlx::query_scalar("select id from products where external_id = 'P-0'")
        .fetch_one(&app.pool)
        .await
        .expect("P-0");
    let job = app
        .import(&bulk(
            vec![
                json!({"external_id": "LID", "title": "Lid", "product_type": "physical"}),
                json!({"external_id": "KIT", "title": "Mug and lid", "product_type": "kit",
                       "components": [{"product_external_id": "LID", "quantity": 1},
                                      {"product_id": p0.to_string(), "quantity": 2.5}]}),
            ],
            "skip",
        ))
        .await;
    assert_eq!(job["status"], "completed", "{job}");
    let components: Vec<(String, Decimal)> = sqlx::query_as(
        "select c.external_id, pc.quantity from product_components pc
         join products k on k.id = pc.product_id
         join products c on c.id = pc.component_product_id
         where k.external_id = 'KIT' order by pc.position",
    )
    .fetch_all(&app.pool)
    .await
    .expect("components");
    assert_eq!(
        components,
        vec![
            ("LID".to_owned(), Decimal::ONE),
            (
                "P-0".to_owned(),
                Decimal::from_str_exact("2.5").expect("decimal")
            )
        ]
    );
}

#[tokio::test]
async fn a_missing_component_is_a_per_record_reference_error() {
    let app = spawn_app().await;
    let job = app
        .import(&bulk(
            vec![
                json!({"external_id": "KIT", "title": "Kit", "product_type": "box",
                       "components": [{"product_external_id": "NOPE", "quantity": 1}]}),
                json!({"external_id": "KIT2", "title": "Kit", "product_type": "kit",
                       "components": [{"product_id": "01900000-0000-7000-8000-000000000000", "quantity": 1}]}),
                json!({"external_id": "OK", "title": "Fine", "product_type": "service"}),
            ],
            "skip",
        ))
        .await;
    assert_eq!(job["status"], "partial");
    assert_eq!(error_at(&job, 0)["code"], "reference_not_found");
    assert_eq!(
        error_at(&job, 0)["param"],
        "components[0].product_external_id"
    );
    assert_eq!(error_at(&job, 1)["code"], "reference_not_found");
    assert_eq!(error_at(&job, 1)["param"], "components[0].product_id");
    // A failed record leaves nothing behind.
    assert_eq!(app.count("products").await, 1);
    assert_eq!(app.count("product_components").await, 0);
}

#[tokio::test]
async fn components_belong_to_kits_and_boxes_only() {
    let app = spawn_app().await;
    let job = app
        .import(&bulk(
            vec![
                json!({"external_id": "X", "title": "Mug", "product_type": "physical",
                        "components": [{"product_external_id": "Y", "quantity": 1}]}),
            ],
            "skip",
        ))
        .await;
    assert_eq!(job["status"], "failed");
    assert_eq!(error_at(&job, 0)["code"], "components_not_allowed");
    assert_eq!(error_at(&job, 0)["param"], "components");
}

#[tokio::test]
async fn variants_are_stored_as_products_of_their_parent() {
    let app = spawn_app().await;
    let job = app
        .import(&bulk(
            vec![
                json!({"external_id": "TEE", "title": "T-shirt", "product_type": "variant_parent",
                       "variants": [{"title": "T-shirt S", "sku": "TEE-S", "product_type": "physical"},
                                    {"title": "T-shirt M", "sku": "TEE-M", "product_type": "physical"}]}),
                json!({"external_id": "TEE2", "title": "T-shirt", "product_type": "variant_parent",
                       "variants": [{"title": "Dup", "sku": "TEE-S", "product_type": "physical"}]}),
            ],
            "skip",
        ))
        .await;
    assert_eq!(job["status"], "partial", "{job}");
    assert_eq!(error_at(&job, 1)["code"], "duplicate_sku");
    assert_eq!(error_at(&job, 1)["param"], "variants[0].sku");
    let variants: i64 = sqlx::query_scalar(
        "select count(*) from products v join products p on v.parent_product_id = p.id
         where p.external_id = 'TEE'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(variants, 2);
}

#[tokio::test]
async fn a_kit_cannot_contain_itself_and_a_used_variant_cannot_be_dropped() {
    let app = spawn_app().await;
    app.import(&bulk(
        vec![
            json!({"external_id": "KIT", "title": "Kit", "product_type": "kit"}),
            json!({"external_id": "TEE", "title": "T-shirt", "product_type": "variant_parent",
                   "variants": [{"title": "S", "sku": "TEE-S", "product_type": "physical"}]}),
        ],
        "skip",
    ))
    .await;
    let job = app
        .import(&bulk(
            vec![
                json!({"external_id": "KIT", "title": "Kit", "product_type": "kit",
                        "components": [{"product_external_id": "KIT", "quantity": 1}]}),
            ],
            "update",
        ))
        .await;
    assert_eq!(error_at(&job, 0)["code"], "invalid_component");
    assert_eq!(error_at(&job, 0)["param"], "components[0]");

    // A bundle uses the variant by id; dropping the variant from its parent
    // would break the bundle, so the update is refused and nothing changes.
    let variant: uuid::Uuid = sqlx::query_scalar("select id from products where sku = 'TEE-S'")
        .fetch_one(&app.pool)
        .await
        .expect("variant");
    let job = app
        .import(&bulk(
            vec![
                json!({"external_id": "BUNDLE", "title": "Bundle", "product_type": "box",
                        "components": [{"product_id": variant.to_string(), "quantity": 2}]}),
            ],
            "skip",
        ))
        .await;
    assert_eq!(job["status"], "completed", "{job}");
    let job = app
        .import(&bulk(
            vec![
                json!({"external_id": "TEE", "title": "T-shirt", "product_type": "variant_parent",
                        "variants": [{"title": "M", "sku": "TEE-M", "product_type": "physical"}]}),
            ],
            "update",
        ))
        .await;
    assert_eq!(error_at(&job, 0)["code"], "product_in_use", "{job}");
    let skus: Vec<String> = sqlx::query_scalar("select sku from products where sku like 'TEE-%'")
        .fetch_all(&app.pool)
        .await
        .expect("skus");
    assert_eq!(skus, vec!["TEE-S".to_owned()]);
}
