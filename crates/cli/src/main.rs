//! `arcusctl`: the operator's command line: database migrations, entities, API
//! keys, and a health probe for images that carry no HTTP client.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use domain::Mode;
use domain::audit::Actor;
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
        /// Rate-limit tier of a live key.
        #[arg(long, value_parser = ["standard", "elevated"], default_value = "standard")]
        tier: String,
        /// When the key stops working: an RFC 3339 time, or a duration from
        /// now such as 90d, 12h or 30m.
        #[arg(long)]
        expires: Option<String>,
        /// Addresses the key may be used from (CIDRs or single addresses,
        /// repeatable or comma-separated); anywhere when not given.
        #[arg(long = "allow-ip", value_delimiter = ',')]
        allow_ip: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Lists an entity's keys: prefix, mode, scopes, tier, created, last used,
    /// expiry, revocation. The secrets are not stored, so never shown.
    List {
        #[arg(long)]
        entity: Uuid,
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
                    tier,
                    expires,
                    allow_ip,
                    json,
                },
        } => {
            let pool = connect(&settings).await?;
            let mode: Mode = mode.parse()?;
            let expires_at = expires.as_deref().map(parse_expiry).transpose()?;
            let new = auth::NewKey {
                entity_id: entity,
                mode,
                scopes,
                elevated: tier == "elevated",
                expires_at,
                allowed_ips: allow_ip,
            };
            let hasher = auth::KeyHasher::new(settings.auth.key_secret());
            let key = auth::issue(&pool, &hasher, new, &operator()).await?;
            if json {
                println!("{}", serde_json::to_string(&key)?);
            } else {
                println!("{}", key.key);
            }
        }
        Command::Key {
            command: KeyCommand::List { entity, json },
        } => {
            let pool = connect(&settings).await?;
            let keys = auth::list(&pool, entity).await?;
            if json {
                println!("{}", serde_json::to_string(&keys)?);
            } else {
                let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
                    t.map_or("-".to_owned(), |t| domain::jobs::format_timestamp(&t))
                };
                println!("ID\tPREFIX\tMODE\tTIER\tSCOPES\tCREATED\tLAST USED\tEXPIRES\tREVOKED");
                for k in keys {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        k.id,
                        k.prefix,
                        k.mode,
                        k.tier,
                        k.scopes.join(","),
                        domain::jobs::format_timestamp(&k.created_at),
                        when(k.last_used_at),
                        when(k.expires_at),
                        when(k.revoked_at),
                    );
                }
            }
        }
        Command::Key {
            command: KeyCommand::Revoke { id },
        } => {
            let pool = connect(&settings).await?;
            if !auth::revoke(&pool, id, &operator()).await? {
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

/// The operator running the command, as the audit log names them.
fn operator() -> Actor {
    let user = std::env::var("USER").unwrap_or_else(|_| "operator".to_owned());
    Actor {
        name: format!("arcusctl:{user}"),
        request_id: Some(format!("cli_{}", Uuid::now_v7().simple())),
    }
}

/// An expiry: an RFC 3339 time, or a duration from now (`90d`, `12h`, `30m`).
fn parse_expiry(text: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&chrono::Utc));
    }
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = number.parse().with_context(|| {
        format!("--expires must be an RFC 3339 time or a duration like 90d, got '{text}'")
    })?;
    let span = match unit {
        "d" => chrono::Duration::days(n),
        "h" => chrono::Duration::hours(n),
        "m" => chrono::Duration::minutes(n),
        _ => bail!("--expires must end in d, h or m, got '{text}'"),
    };
    Ok(chrono::Utc::now() + span)
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
