//! `arcusctl`: the operator's command line: database migrations, entities, API
//! keys, and a health probe for images that carry no HTTP client.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use domain::Mode;
use serde_json::json;
use settings::Settings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

#[derive(Parser)]
#[command(name = "arcusctl", about = "Operate the Arcus migration service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The database schema.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Entities (the companies whose books are loaded).
    Entity {
        #[command(subcommand)]
        command: EntityCommand,
    },
    /// API keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Accounting periods.
    Period {
        #[command(subcommand)]
        command: PeriodCommand,
    },
    /// Exits 0 when a URL answers 2xx: a probe for containers without curl.
    Health {
        #[arg(long, default_value = "http://127.0.0.1:8080/readyz")]
        url: String,
    },
}

#[derive(Subcommand)]
enum DbCommand {
    /// Creates the database if it is missing and applies pending migrations.
    Migrate,
}

#[derive(Subcommand)]
enum EntityCommand {
    /// Creates an entity and prints its id.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PeriodCommand {
    /// Closes the books through a date: journal entries dated on or before it
    /// are refused unless posted with bypass_period_check by a migration:write
    /// key. A close never moves backwards.
    Close {
        #[arg(long)]
        entity: Uuid,
        /// The last closed day, YYYY-MM-DD.
        #[arg(long)]
        through: chrono::NaiveDate,
        /// test or live; both when not given.
        #[arg(long, value_parser = ["test", "live"])]
        mode: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Issues a key and prints it. It is shown this once and cannot be recovered.
    Create {
        #[arg(long)]
        entity: Uuid,
        #[arg(long, value_parser = ["test", "live"])]
        mode: String,
        /// Comma-separated scopes, e.g. migration:read,migration:write,products:write.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revokes a key by its id; requests presenting it fail at once.
    Revoke {
        #[arg(long)]
        id: Uuid,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load()?;
    match cli.command {
        Command::Db {
            command: DbCommand::Migrate,
        } => {
            domain::db::create_and_migrate(settings.database.url())
                .await
                .context("migrating the database")?;
            println!("database is up to date");
        }
        Command::Entity {
            command: EntityCommand::Create { name, json },
        } => {
            let pool = connect(&settings).await?;
            let entity = domain::entities::create(&pool, &name).await?;
            if json {
                println!(
                    "{}",
                    json!({"id": entity.id, "name": entity.name, "code": entity.code})
                );
            } else {
                println!("{}", entity.id);
            }
        }
        Command::Key {
            command:
                KeyCommand::Create {
                    entity,
                    mode,
                    scopes,
                    json,
                },
        } => {
            let pool = connect(&settings).await?;
            let mode: Mode = mode.parse()?;
            let key = auth::issue(&pool, entity, mode, &scopes).await?;
            if json {
                println!(
                    "{}",
                    json!({
                        "id": key.id,
                        "key": key.key,
                        "prefix": key.prefix,
                        "entity_id": key.entity_id,
                        "mode": key.mode,
                        "scopes": key.scopes,
                        "created_at": domain::jobs::format_timestamp(&key.created_at),
                    })
                );
            } else {
                println!("{}", key.key);
            }
        }
        Command::Key {
            command: KeyCommand::Revoke { id },
        } => {
            let pool = connect(&settings).await?;
            if !auth::revoke(&pool, id).await? {
                bail!("no active key with id {id}");
            }
            println!("revoked {id}");
        }
        Command::Period {
            command:
                PeriodCommand::Close {
                    entity,
                    through,
                    mode,
                },
        } => {
            let pool = connect(&settings).await?;
            if domain::entities::get(&pool, entity).await?.is_none() {
                bail!("no entity with id {entity}");
            }
            let modes = match mode {
                Some(mode) => vec![mode.parse::<Mode>()?],
                None => vec![Mode::Test, Mode::Live],
            };
            let closed = domain::ledger::close_period(&pool, entity, &modes, through).await?;
            println!("books closed through {closed}");
        }
        Command::Health { url } => probe(&url).await?,
    }
    Ok(())
}

async fn connect(settings: &Settings) -> anyhow::Result<sqlx::PgPool> {
    domain::db::connect(settings.database.url(), 2)
        .await
        .context("connecting to Postgres")
}

/// A plain HTTP/1.1 GET: enough for a health probe, without an HTTP client.
async fn probe(url: &str) -> anyhow::Result<()> {
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs can be probed")?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::net::TcpStream::connect(authority),
    )
    .await
    .context("timed out connecting")??;
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut response),
    )
    .await
    .context("timed out reading")??;
    let head = String::from_utf8_lossy(&response);
    let status = head
        .split_whitespace()
        .nth(1)
        .context("not an HTTP response")?;
    if !status.starts_with('2') {
        bail!("{url} answered {status}");
    }
    Ok(())
}
