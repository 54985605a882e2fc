//! `arcus-worker` as deployed: the real binary, stopped with SIGTERM in the
//! middle of a job, finishes the job it holds and exits cleanly.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

#[tokio::test]
async fn sigterm_during_a_job_finishes_it_and_leaves_nothing_running() {
    let database = testkit::TestDatabase::create(2).await;
    let amqp_url = &testkit::services().await.amqp_url;
    let (url, pool) = (&database.url, &database.pool);
    let prefix = format!("test_{}", Uuid::new_v4().simple());
    let entity = domain::entities::create(pool, "Acme")
        .await
        .expect("entity");
    let records = Value::Array(
        (0..1000)
            .map(|i| json!({"external_id": format!("P-{i}"), "title": format!("P {i}"), "product_type": "service"}))
            .collect(),
    );
    let domain::jobs::Submission::Created(job) = domain::jobs::submit(
        pool,
        domain::jobs::NewJob {
            tenant: domain::Tenant {
                entity_id: entity.id,
                mode: domain::Mode::Test,
            },
            resource: domain::Resource::Products,
            external_source: "shopify",
            conflict_mode: domain::ConflictMode::Skip,
            records: &records,
            record_count: 1000,
            request_id: None,
            submitted_by: None,
            retry_of: None,
            may_bypass_period_check: true,
            strict: false,
            ignored_fields: &[],
        },
        None,
    )
    .await
    .expect("submitted") else {
        panic!("a new job")
    };

    let mut worker = Command::new(env!("CARGO_BIN_EXE_arcus-worker"))
        .env("ARCUS__DATABASE__URL", url)
        .env("ARCUS__AMQP__URL", amqp_url)
        .env("ARCUS__AMQP__PREFIX", &prefix)
        .env("ARCUS__AMQP__RELAY_INTERVAL_MS", "100")
        .env("ARCUS__WORKER__CHUNK_SIZE", "5")
        .env("ARCUS__WORKER__HTTP_ADDR", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the worker starts");

    let progress = || async {
        sqlx::query_as::<_, (String, i32)>(
            "select status, processed_records from migration_jobs where id = $1",
        )
        .bind(job.id)
        .fetch_one(pool)
        .await
        .expect("job")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, processed) = progress().await;
        if status == "running" && processed > 0 {
            assert!(processed < 1000, "the job is stopped in its middle");
            break;
        }
        assert!(Instant::now() < deadline, "the job never started: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let term = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(term.success());
    let exit = loop {
        if let Some(status) = worker.try_wait().expect("waits") {
            break status;
        }
        assert!(Instant::now() < deadline, "the worker did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "a clean exit: {exit}");
    let (status, processed) = progress().await;
    assert_eq!(
        (status.as_str(), processed),
        ("completed", 1000),
        "no job left running"
    );

    // Leave nothing behind: the queues here, the database when it drops.
    if let Ok(conn) = queue::connect(amqp_url, "test cleanup").await
        && let Ok(channel) = conn.create_channel().await
    {
        let topology = queue::Topology::new(&prefix);
        for q in topology.queues() {
            let _ = channel
                .queue_delete(q.as_str().into(), Default::default())
                .await;
        }
        for e in [topology.exchange(), topology.dead_letter_exchange()] {
            let _ = channel
                .exchange_delete(e.as_str().into(), Default::default())
                .await;
        }
    }
}
