//! `arcusctl`: the command line of the people running a migration (`import`
//! loads a file through the API) and of its operators: database migrations,
//! entities, API keys, periods, and a health probe for images that carry no
//! HTTP client.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use cli::import;
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
    /// Imports a CSV, NDJSON or JSON file through the API in jobs of at most
    /// 1,000 records, showing their progress, and writes the failed records
    /// to an errors file beside it (products.csv gives products.errors.csv).
    /// Running the same command again after an interruption resumes it: it
    /// makes no job twice. Exit status: 0 every record succeeded, 1 some
    /// records failed, 2 the import could not run. The key is read from
    /// ARCUS_API_KEY.
    Import(Box<ImportArgs>),
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

#[derive(clap::Args)]
struct ImportArgs {
    #[arg(long)]
    entity: Uuid,
    /// accounts, products, orders, journal-entries, vendor-bills or
    /// ap-payments.
    #[arg(long)]
    resource: String,
    /// The system the records come from (shopify, quickbooks, ...).
    #[arg(long)]
    source: String,
    #[arg(long)]
    file: PathBuf,
    /// The file's format when its extension does not say.
    #[arg(long, value_enum)]
    format: Option<import::Format>,
    /// A JSON file renaming or ignoring columns and setting fields:
    /// {"columns": {"Handle": "external_id", "Notes": null}, "values": {"product_type": "physical"}}.
    #[arg(long)]
    mapping: Option<PathBuf>,
    #[arg(long, default_value = "skip", value_parser = ["skip", "update", "replace", "error"])]
    conflict_mode: String,
    /// Runs every rule and writes nothing; the errors file says what would fail.
    #[arg(long)]
    dry_run: bool,
    /// A field the service does not read fails its record (unknown_field)
    /// instead of being reported as not kept.
    #[arg(long)]
    strict: bool,
    #[arg(long, env = "ARCUS_API_URL", default_value = "http://127.0.0.1:8080")]
    api_url: String,
    /// Records per job, at most 1000.
    #[arg(long, default_value_t = import::MAX_BATCH)]
    batch_size: usize,
    /// Jobs in flight at once.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// A label that makes this a new import of the same file (new jobs)
    /// rather than a resumption of the last one.
    #[arg(long, default_value = "")]
    run: String,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
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
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Import(args) => import_file(*args).await,
        command => operate(command).await.map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(2)
    })
}

async fn import_file(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let key = std::env::var("ARCUS_API_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
        .context("set ARCUS_API_KEY to the entity's API key")?;
    let options = import::Options {
        api_url: args.api_url,
        key,
        entity: args.entity,
        resource: args.resource.parse()?,
        source: args.source,
        file: args.file,
        format: args.format,
        mapping: args.mapping,
        conflict_mode: args.conflict_mode.parse()?,
        dry_run: args.dry_run,
        strict: args.strict,
        batch_size: args.batch_size,
        parallel: args.parallel,
        run_label: args.run,
        progress: !args.quiet,
    };
    let started = std::time::Instant::now();
    let summary = import::run(&options).await?;
    let seconds = started.elapsed().as_secs_f64();
    let verb = if options.dry_run {
        "checked (dry run)"
    } else {
        "imported"
    };
    println!(
        "{verb} {} records of {} in {:.1} s: {} succeeded, {} failed",
        summary.records,
        options.file.display(),
        seconds,
        summary.succeeded,
        summary.failed
    );
    if let Some([created, updated, skipped, replaced]) = summary.dry_run_outcomes {
        println!(
            "would create {created}, update {updated}, skip {skipped}, replace {replaced}; nothing was written"
        );
    } else {
        println!(
            "{} jobs ({} found from an earlier run of this command)",
            summary.jobs.len(),
            summary.resumed
        );
    }
    if !summary.ignored.is_empty() {
        let fields: Vec<String> = summary
            .ignored
            .iter()
            .map(|(field, records)| format!("{field} ({records} records)"))
            .collect();
        println!(
            "not kept, no such field: {} (map them to fields, or --strict to fail such records)",
            fields.join(", ")
        );
    }
    match &summary.errors_file {
        Some(path) => {
            println!(
                "failed records: {} (fix them and import that file again)",
                path.display()
            );
            Ok(ExitCode::from(1))
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

async fn operate(command: Command) -> anyhow::Result<()> {
    let settings = Settings::load()?;
    match command {
        Command::Import(_) => unreachable!("main runs imports"),
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
