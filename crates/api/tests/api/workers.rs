//! Workers: several drain one queue without processing a job twice, duplicate
//! messages are harmless, and a committed job is published even if the API
//! that accepted it never did.

use std::collections::HashSet;

use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use serde_json::json;

use crate::helpers::{AppOptions, bulk, eventually, products, spawn_app_with};

fn job_records(job: usize) -> Vec<serde_json::Value> {
    products(20)
        .into_iter()
        .map(|mut p| {
            let id = format!("J{job}-{}", p["external_id"].as_str().expect("id"));
            p["external_id"] = json!(id);
            p["sku"] = json!(id);
            p
        })
        .collect()
}

#[tokio::test]
async fn two_workers_drain_one_queue_without_processing_any_job_twice() {
    let mut app = spawn_app_with(AppOptions {
        workers: 0,
        ..AppOptions::default()
    })
    .await;
    let queue = app.topology().queue(domain::Resource::Products);
    let mut ids = Vec::new();
    for j in 0..20 {
        ids.push(
            app.submit_ok(&bulk(job_records(j), "skip")).await["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    eventually("every job to be queued", || async {
        app.queue_state(&queue).await.0 == 20
    })
    .await;

    let first = app.spawn_worker().await;
    let second = app.spawn_worker().await;
    app.workers.extend([first, second]);
    for id in &ids {
        assert_eq!(app.wait_for_job(id).await["status"], "completed");
    }

    let claims: Vec<(i32, Option<String>)> =
        sqlx::query_as("select attempts, lease_owner from migration_jobs")
            .fetch_all(&app.pool)
            .await
            .expect("claims");
    assert!(
        claims.iter().all(|(attempts, _)| *attempts == 1),
        "each job claimed once: {claims:?}"
    );
    let owners: HashSet<_> = claims.iter().map(|(_, owner)| owner.clone()).collect();
    assert_eq!(owners.len(), 2, "both workers took jobs: {owners:?}");
    assert_eq!(app.count("products").await, 400);
    let (ready, consumers) = app.queue_state(&queue).await;
    assert_eq!((ready, consumers), (0, 2));
}

#[tokio::test]
async fn a_duplicate_message_does_not_load_a_job_twice() {
    let mut app = spawn_app_with(AppOptions {
        workers: 0,
        ..AppOptions::default()
    })
    .await;
    let queue = app.topology().queue(domain::Resource::Products);
    let job = app.submit_ok(&bulk(products(50), "skip")).await;
    let id = job["id"].as_str().expect("id").to_owned();
    eventually("the job to be queued", || async {
        app.queue_state(&queue).await.0 == 1
    })
    .await;

    // Publish the same job again, as a relay that crashed between the broker's
    // confirm and its outbox delete would.
    let (_conn, channel) = app.amqp_channel().await;
    let message = json!({"job_id": id, "resource": "products", "request_id": null});
    channel
        .basic_publish(
            app.topology().exchange().as_str().into(),
            "products".into(),
            BasicPublishOptions::default(),
            message.to_string().as_bytes(),
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("published");
    eventually("both copies to be queued", || async {
        app.queue_state(&queue).await.0 == 2
    })
    .await;

    let first = app.spawn_worker().await;
    let second = app.spawn_worker().await;
    app.workers.extend([first, second]);
    let done = app.wait_for_job(&id).await;
    assert_eq!(done["succeeded_records"], 50);
    eventually("both copies to be settled", || async {
        app.queue_state(&queue).await.0 == 0
    })
    .await;
    let attempts: i32 = sqlx::query_scalar("select attempts from migration_jobs")
        .fetch_one(&app.pool)
        .await
        .expect("attempts");
    assert_eq!(attempts, 1);
    assert_eq!(app.count("products").await, 50);
}

#[tokio::test]
async fn a_committed_job_the_api_never_published_is_relayed_by_a_worker() {
    // The API's relay only runs on its own notifications here: a job written
    // straight to the store stands for one whose API died after the commit.
    let mut app = spawn_app_with(AppOptions {
        workers: 0,
        relay_interval_ms: 3_600_000,
        ..AppOptions::default()
    })
    .await;
    let records = serde_json::Value::Array(products(3));
    let job = app
        .store_job(domain::Resource::Products, &records, true)
        .await;
    assert_eq!(app.count("job_outbox").await, 1);

    app.settings.amqp.relay_interval_ms = 100;
    let worker = app.spawn_worker().await;
    app.workers.push(worker);
    let done = app.wait_for_job(&job.id.to_string()).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(app.count("job_outbox").await, 0);
}

#[tokio::test]
async fn a_worker_consumes_only_the_resources_it_is_given() {
    let app = spawn_app_with(AppOptions {
        workers: 0,
        ..AppOptions::default()
    })
    .await;
    let products_queue = app.topology().queue(domain::Resource::Products);
    let orders_queue = app.topology().queue(domain::Resource::Orders);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let orders_only = tokio::spawn(worker::run(
        app.settings.clone(),
        worker::parse_resources(&["orders".to_owned()]).expect("known resource"),
        async {
            let _ = stopped.await;
        },
    ));
    eventually("the orders consumer", || async {
        app.queue_state(&orders_queue).await.1 == 1
    })
    .await;
    assert_eq!(app.queue_state(&products_queue).await.1, 0);

    let job = app.submit_ok(&bulk(products(1), "skip")).await;
    eventually("the job to be queued", || async {
        app.queue_state(&products_queue).await.0 == 1
    })
    .await;
    assert_eq!(
        app.get_job(job["id"].as_str().expect("id")).await["status"],
        "pending"
    );
    let _ = stop.send(());
    orders_only
        .await
        .expect("joined")
        .expect("worker stops cleanly");
}

#[test]
fn resource_lists_are_parsed_and_checked() {
    assert_eq!(worker::parse_resources(&[]).expect("empty").len(), 6);
    assert_eq!(
        worker::parse_resources(&["products, orders".to_owned(), "products".to_owned()])
            .expect("valid"),
        vec![domain::Resource::Products, domain::Resource::Orders]
    );
    assert!(worker::parse_resources(&["invoices".to_owned()]).is_err());
}

#[tokio::test]
async fn a_job_whose_worker_died_is_resumed_at_its_checkpoint_and_the_dead_worker_is_fenced() {
    let mut app = spawn_app_with(AppOptions {
        workers: 0,
        chunk_size: 100,
        ..AppOptions::default()
    })
    .await;
    let job = app.submit_ok(&bulk(products(250), "skip")).await;
    let id = uuid::Uuid::parse_str(job["id"].as_str().expect("id")).expect("uuid");

    // A worker claims the job, commits one chunk, and dies.
    let domain::jobs::ClaimResult::Claimed(dead) =
        domain::jobs::claim(&app.pool, id, "dead worker", 1)
            .await
            .expect("claims")
    else {
        panic!("the pending job is claimed")
    };
    let records = domain::jobs::stored_records(&app.pool, id)
        .await
        .expect("records")
        .expect("readable records")
        .chunk(0, 100)
        .expect("a chunk");
    let mut tx = app.pool.begin().await.expect("tx");
    let actor = dead.actor();
    let ctx = domain::import::ImportContext {
        actor: &actor,
        tenant: dead.tenant,
        resource: dead.resource,
        external_source: &dead.external_source,
        conflict_mode: dead.conflict_mode,
        may_bypass_period_check: dead.may_bypass_period_check,
        strict: dead.strict,
    };
    let tally = domain::import::import_records(&mut tx, &ctx, &records, 0)
        .await
        .expect("chunk");
    domain::jobs::checkpoint(&mut tx, &dead, 0, 100, &tally)
        .await
        .expect("checkpoint");
    tx.commit().await.expect("commit");
    assert_eq!(app.get_job(&id.to_string()).await["processed_records"], 100);

    // Another worker takes the job over once the lease has expired.
    let worker = app.spawn_worker().await;
    app.workers.push(worker);
    let done = app.wait_for_job(&id.to_string()).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["succeeded_records"], 250);
    assert_eq!(app.count("products").await, 250, "no record loaded twice");
    let attempts: i32 = sqlx::query_scalar("select attempts from migration_jobs")
        .fetch_one(&app.pool)
        .await
        .expect("attempts");
    assert_eq!(attempts, 2);

    // The dead worker wakes up: its fenced write matches nothing.
    let mut tx = app.pool.begin().await.expect("tx");
    let late = domain::jobs::checkpoint(&mut tx, &dead, 100, 200, &tally).await;
    assert!(
        matches!(late, Err(domain::jobs::FencedError::LeaseLost)),
        "{late:?}"
    );
    tx.rollback().await.expect("rollback");
    assert_eq!(app.get_job(&id.to_string()).await["processed_records"], 250);
}

#[tokio::test]
async fn a_job_that_keeps_failing_is_ended_with_its_records_accounted_for() {
    let mut app = spawn_app_with(AppOptions {
        workers: 0,
        ..AppOptions::default()
    })
    .await;
    let job = app.submit_ok(&bulk(products(3), "skip")).await;
    // Five claims already ended in crashes.
    sqlx::query("update migration_jobs set attempts = 5")
        .execute(&app.pool)
        .await
        .expect("attempts");
    let worker = app.spawn_worker().await;
    app.workers.push(worker);
    let done = app.wait_for_job(job["id"].as_str().expect("id")).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["failed_records"], 3);
    let codes: Vec<&str> = done["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["code"].as_str().expect("code"))
        .collect();
    assert_eq!(codes, vec!["retries_exhausted"; 3]);
    assert_eq!(app.count("products").await, 0);
}
