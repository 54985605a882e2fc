//! Recovery: a job whose message was lost is dispatched again, a long job is
//! handed on through fresh messages, a transient database error is retried, a
//! job that keeps failing ends with the reason, and messages that are not the
//! service's own go to the dead-letter queue.

use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, QueuePurgeOptions};
use serde_json::json;

use crate::helpers::{
    AppOptions, TestApp, bulk, eventually, products, sample, scrape, spawn_app_with,
};

async fn idle_app() -> TestApp {
    spawn_app_with(AppOptions {
        workers: 0,
        ..AppOptions::default()
    })
    .await
}

async fn dispatch_state(app: &TestApp) -> (i32, i32) {
    sqlx::query_as("select dispatches, attempts from migration_jobs")
        .fetch_one(&app.pool)
        .await
        .expect("job row")
}

#[tokio::test]
async fn a_job_whose_message_was_lost_is_dispatched_again_by_the_sweeper() {
    let mut app = idle_app().await;
    let queue = app.topology().queue(domain::Resource::Products);
    let job = app.submit_ok(&bulk(products(20), "skip")).await;
    eventually("the job to be queued", || async {
        app.queue_state(&queue).await.0 == 1
    })
    .await;
    // The message is lost, as to an operator's purge or a broker that lost
    // its disk.
    let (_conn, channel) = app.amqp_channel().await;
    let purged = channel
        .queue_purge(queue.as_str().into(), QueuePurgeOptions::default())
        .await
        .expect("purged");
    assert_eq!(purged, 1);

    app.settings.worker.redispatch_after_secs = 1;
    app.settings.worker.sweep_interval_ms = 200;
    let worker = app.spawn_worker().await;
    let port = worker.http_port;
    app.workers.push(worker);
    let done = app.wait_for_job(job["id"].as_str().expect("id")).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["succeeded_records"], 20);
    assert_eq!(app.count("products").await, 20);
    assert_eq!(dispatch_state(&app).await, (2, 1));
    let metrics = scrape(&app, &format!("http://127.0.0.1:{port}/metrics")).await;
    assert_eq!(
        sample(&metrics, "arcus_worker_jobs_redispatched_total", &[]),
        1.0
    );
}

#[tokio::test]
async fn a_job_is_handed_on_through_fresh_messages_when_it_outlives_one_delivery() {
    let mut app = spawn_app_with(AppOptions {
        workers: 0,
        chunk_size: 10,
        ..AppOptions::default()
    })
    .await;
    // Every delivery may hold its message for one chunk only.
    app.settings.worker.max_delivery_seconds = 0;
    let worker = app.spawn_worker().await;
    app.workers.push(worker);
    let job = app.submit_ok(&bulk(products(50), "skip")).await;
    let done = app.wait_for_job(job["id"].as_str().expect("id")).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["processed_records"], 50);
    assert_eq!(done["succeeded_records"], 50);
    assert_eq!(app.count("products").await, 50);
    // Five chunks: the first message and four handed on, each claimed once.
    assert_eq!(dispatch_state(&app).await, (5, 5));
    let queue = app.topology().queue(domain::Resource::Products);
    eventually("every message to be settled", || async {
        app.queue_state(&queue).await.0 == 0
    })
    .await;
    let outbox: i64 = sqlx::query_scalar("select count(*) from job_outbox")
        .fetch_one(&app.pool)
        .await
        .expect("outbox");
    assert_eq!(outbox, 0);
}

#[tokio::test]
async fn a_chunk_cut_off_from_the_database_is_retried_and_loaded_once() {
    let app = spawn_app_with(AppOptions::default()).await;
    let port = app.workers[0].http_port;
    // Hold inserts into products back, so the worker's chunk is caught
    // mid-transaction, then cut its connection.
    let mut blocker = app.pool.begin().await.expect("tx");
    sqlx::query("lock table products in share mode")
        .execute(&mut *blocker)
        .await
        .expect("locked");
    let job = app.submit_ok(&bulk(products(10), "skip")).await;
    let database = app
        .settings
        .database
        .url()
        .rsplit('/')
        .next()
        .expect("db")
        .to_owned();
    let waiting = || async {
        sqlx::query_scalar::<_, i32>(
            "select pid from pg_stat_activity
             where datname = $1 and wait_event_type = 'Lock' and query ilike '%products%'",
        )
        .bind(&database)
        .fetch_optional(&app.pool)
        .await
        .expect("activity")
    };
    eventually("the worker to wait on the lock", || async {
        waiting().await.is_some()
    })
    .await;
    let pid = waiting().await.expect("a waiting backend");
    let terminated: bool = sqlx::query_scalar("select pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&app.pool)
        .await
        .expect("terminated");
    assert!(terminated);
    blocker.commit().await.expect("released");

    let done = app.wait_for_job(job["id"].as_str().expect("id")).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["succeeded_records"], 10);
    assert_eq!(app.count("products").await, 10);
    assert_eq!(dispatch_state(&app).await, (1, 1), "retried in place");
    let metrics = scrape(&app, &format!("http://127.0.0.1:{port}/metrics")).await;
    assert!(
        sample(
            &metrics,
            "arcus_worker_transient_retries_total",
            &[("step", "chunk")]
        ) >= 1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn a_job_that_fails_on_every_attempt_ends_failed_with_the_reason() {
    // Its stored records no longer match it: every attempt fails the same way.
    fails_on_every_attempt("[{}]", "holds 1 records but says it has 3").await;
}

#[tokio::test]
async fn a_job_whose_stored_records_are_not_json_ends_failed_with_the_reason() {
    fails_on_every_attempt(
        "[{\"external_id\": ",
        "the job's stored records are not a JSON array",
    )
    .await;
}

/// Submits a job, replaces its stored records with `stored`, and expects it
/// to end failed after its attempts, each record's error giving `reason`.
async fn fails_on_every_attempt(stored: &str, reason: &str) {
    let mut app = idle_app().await;
    let job = app.submit_ok(&bulk(products(3), "skip")).await;
    sqlx::query("update migration_job_records set records = $1")
        .bind(stored)
        .execute(&app.pool)
        .await
        .expect("corrupted");
    let worker = app.spawn_worker().await;
    app.workers.push(worker);
    let done = app.wait_for_job(job["id"].as_str().expect("id")).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["failed_records"], 3);
    for error in done["errors"].as_array().expect("errors") {
        assert_eq!(error["code"], "retries_exhausted");
        let message = error["error"].as_str().expect("message");
        assert!(message.contains(reason), "{message}");
    }
    assert_eq!(app.count("products").await, 0);
    let (_, attempts) = dispatch_state(&app).await;
    assert_eq!(
        attempts, 6,
        "five failed attempts, then the one that ends it"
    );
}

#[tokio::test]
async fn messages_the_service_did_not_send_are_dead_lettered() {
    let app = spawn_app_with(AppOptions::default()).await;
    let (_conn, channel) = app.amqp_channel().await;
    let unknown_job = json!({"job_id": uuid::Uuid::new_v4(), "resource": "products",
                             "request_id": null})
    .to_string();
    for payload in [unknown_job.as_str(), "not json"] {
        channel
            .basic_publish(
                app.topology().exchange().as_str().into(),
                "products".into(),
                BasicPublishOptions::default(),
                payload.as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("published");
    }
    let dead = app.topology().dead_letter_queue();
    eventually("both messages to be dead-lettered", || async {
        app.queue_state(&dead).await.0 == 2
    })
    .await;
    // The worker goes on with real jobs.
    let job = app.submit_ok(&bulk(products(5), "skip")).await;
    let done = app.wait_for_job(job["id"].as_str().expect("id")).await;
    assert_eq!(done["succeeded_records"], 5);
}
