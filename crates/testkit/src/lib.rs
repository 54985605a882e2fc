//! The database-per-test harness every crate's tests share: each test gets a
//! database of its own on the real Postgres, migrated, and dropped after it.
//!
//! Service URLs come from `ARCUS_TEST_DATABASE_URL` (a server URL whose user
//! may create databases) and `ARCUS_TEST_AMQP_URL`; without them, Postgres and
//! RabbitMQ are started with testcontainers, which needs a Docker engine.

use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::OnceCell;
use uuid::Uuid;

/// Where the tests' Postgres and RabbitMQ are.
pub struct Services {
    /// A server URL; test databases are created next to its database.
    pub database_url: String,
    pub amqp_url: String,
}

static SERVICES: OnceCell<Services> = OnceCell::const_new();

/// The services of this test process, started in containers on first use
/// when the environment names none.
pub async fn services() -> &'static Services {
    SERVICES
        .get_or_init(|| async {
            match (
                std::env::var("ARCUS_TEST_DATABASE_URL"),
                std::env::var("ARCUS_TEST_AMQP_URL"),
            ) {
                (Ok(database_url), Ok(amqp_url)) => Services {
                    database_url,
                    amqp_url,
                },
                _ => start_containers().await,
            }
        })
        .await
}

/// Starts Postgres and RabbitMQ in containers for this test process. They are
/// kept for the life of the process, and testcontainers removes them after it.
async fn start_containers() -> Services {
    use testcontainers_modules::postgres::Postgres;
    use testcontainers_modules::rabbitmq::RabbitMq;
    use testcontainers_modules::testcontainers::runners::AsyncRunner;

    let postgres = Postgres::default()
        .start()
        .await
        .expect("without ARCUS_TEST_DATABASE_URL the tests start Postgres in Docker");
    let rabbitmq = RabbitMq::default()
        .start()
        .await
        .expect("without ARCUS_TEST_AMQP_URL the tests start RabbitMQ in Docker");
    let pg_host = postgres.get_host().await.expect("container host");
    let pg_port = postgres
        .get_host_port_ipv4(5432)
        .await
        .expect("postgres port");
    let mq_host = rabbitmq.get_host().await.expect("container host");
    let mq_port = rabbitmq
        .get_host_port_ipv4(5672)
        .await
        .expect("rabbitmq port");
    let services = Services {
        database_url: format!("postgres://postgres:postgres@{pg_host}:{pg_port}/postgres"),
        amqp_url: format!("amqp://guest:guest@{mq_host}:{mq_port}/%2f"),
    };
    // The containers must outlive every test of this process.
    Box::leak(Box::new((postgres, rabbitmq)));
    services
}

/// The Postgres server URL of tests that run binaries without an async
/// runtime of their own: the environment's, else the local server.
pub fn local_server_url() -> String {
    std::env::var("ARCUS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh database name with `prefix`, safe to use unquoted in SQL.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", Uuid::new_v4().simple())
}

/// Swaps the database name of a Postgres URL.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let server = base.rsplit_once('/').map_or(base, |(s, _)| s);
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}

/// Drops database `name` of the server at `server_url`, ending its sessions.
/// It runs on a thread of its own, so that `Drop` implementations may call it
/// from inside or outside an async runtime; failures are ignored, as there is
/// nothing a finished test could do about them.
pub fn drop_database(server_url: &str, name: &str) {
    let server_url = server_url.to_owned();
    let name = name.to_owned();
    let dropped = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime to drop the database");
        runtime.block_on(async {
            if let Ok(pool) = domain::db::connect(&server_url, 1).await {
                let _ = sqlx::query(&format!("drop database if exists {name} with (force)"))
                    .execute(&pool)
                    .await;
                pool.close().await;
            }
        });
    });
    let _ = dropped.join();
}

/// Waits for a condition, for at most 30 seconds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A migrated database that exists for one test only.
pub struct TestDatabase {
    pub url: String,
    pub pool: PgPool,
    name: String,
    server_url: String,
}

impl TestDatabase {
    /// Creates and migrates a fresh database, with a pool of `connections`.
    pub async fn create(connections: u32) -> Self {
        let services = services().await;
        let name = unique_name("arcus_test");
        let url = with_database(&services.database_url, &name);
        domain::db::create_and_migrate(&url)
            .await
            .expect("the test database is created and migrated");
        let pool = domain::db::connect(&url, connections)
            .await
            .expect("the test pool connects");
        Self {
            url,
            pool,
            name,
            server_url: services.database_url.clone(),
        }
    }
}

impl TestDatabase {
    /// A new entity of the database, in test mode.
    pub async fn tenant(&self) -> domain::Tenant {
        let entity = domain::entities::create(&self.pool, "Test Co")
            .await
            .expect("the entity is created");
        domain::Tenant {
            entity_id: entity.id,
            mode: domain::Mode::Test,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        drop_database(&self.server_url, &self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_keeps_its_server_and_parameters() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres?sslmode=disable", "t1"),
            "postgres://u@h:5432/t1?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h/db", "t2"), "postgres://h/t2");
    }
}
