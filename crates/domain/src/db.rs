//! Connecting to Postgres and applying the schema migrations.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

/// The migrations in the repository's `migrations/` folder, embedded at build
/// time so every binary carries the schema it was built against.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// Opens a connection pool.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    pool_options(max_connections).connect(url).await
}

/// Opens a connection pool whose transactions Postgres aborts once they sit
/// idle for `idle_in_transaction`. A worker frozen mid-transaction (stopped,
/// partitioned) would otherwise hold its row locks, and the worker that took
/// its job over would wait on them for as long as the freeze lasts.
pub async fn connect_with_idle_timeout(
    url: &str,
    max_connections: u32,
    idle_in_transaction: Duration,
) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?.options([(
        "idle_in_transaction_session_timeout",
        format!("{}ms", idle_in_transaction.as_millis()),
    )]);
    pool_options(max_connections).connect_with(options).await
}

fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
}

/// Creates the database if it does not exist, then applies every pending
/// migration. Safe to run again, and from several processes at once (sqlx takes
/// an advisory lock).
pub async fn create_and_migrate(url: &str) -> Result<(), sqlx::Error> {
    if !sqlx::Postgres::database_exists(url).await? {
        // A concurrent creator may win the race; that is the outcome we want.
        if let Err(err) = sqlx::Postgres::create_database(url).await
            && !sqlx::Postgres::database_exists(url).await?
        {
            return Err(err);
        }
    }
    let pool = connect(url, 2).await?;
    MIGRATOR.run(&pool).await?;
    pool.close().await;
    Ok(())
}

/// Whether every migration this binary knows has been applied: a binary newer
/// than the schema must not serve traffic.
pub async fn migrations_applied(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let applied: Vec<i64> = match sqlx::query_scalar(
        "select version from _sqlx_migrations where success order by version",
    )
    .fetch_all(pool)
    .await
    {
        Ok(versions) => versions,
        // No migration table yet: nothing is applied.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(MIGRATOR
        .iter()
        .all(|m| applied.binary_search(&m.version).is_ok()))
}
