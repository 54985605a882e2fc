//! Typed configuration for every binary of the service.
//!
//! Settings are layered: built-in defaults, then an optional TOML file (named by
//! `ARCUS_CONFIG` or given by the caller), then environment variables of the form
//! `ARCUS__<SECTION>__<KEY>` (for example `ARCUS__DATABASE__URL`). Deployment
//! scripts rely on those names, so they are part of the public interface.

use std::path::Path;

pub use secrecy::SecretString;

use secrecy::ExposeSecret;
use serde::Deserialize;

/// Everything a binary of this service can be configured with.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub amqp: AmqpSettings,
    pub http: HttpSettings,
    pub worker: WorkerSettings,
    pub log: LogSettings,
    pub auth: AuthSettings,
    pub rate_limit: RateLimitSettings,
    pub webhooks: WebhookSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// The server-side secret API keys are hashed with (HMAC-SHA256). A dump of
    /// the database without it yields nothing that authenticates. Every API
    /// replica and `arcusctl` must share it.
    pub key_secret: SecretString,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// API replicas sharing the traffic: each enforces its share of a key's
    /// limit (limit / replicas), so the sum over replicas is the documented limit.
    pub replicas: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// A Postgres URL; wrapped because it may carry a password.
    pub url: SecretString,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AmqpSettings {
    /// An AMQP URL; its path names the vhost, and it may carry a password.
    pub url: SecretString,
    /// Prefix of every exchange and queue name, so that several deployments
    /// (or test runs) can share one broker without seeing each other's jobs.
    pub prefix: String,
    /// How often, in milliseconds, the outbox relay looks for jobs that no
    /// in-process notification announced (another replica's, or a crashed one's).
    pub relay_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    pub addr: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest request line and headers accepted, in bytes.
    pub max_header_bytes: usize,
    /// Seconds a client has to send its request line and headers.
    pub header_read_timeout_secs: u64,
    /// Seconds a whole request may take, body included.
    pub request_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WorkerSettings {
    /// Resources this worker consumes; empty means all of them.
    pub resources: Vec<String>,
    /// Jobs one worker process runs at the same time (also its AMQP prefetch).
    pub concurrency: u16,
    /// Records committed per transaction; each commit is a checkpoint.
    pub chunk_size: usize,
    /// How long a worker's claim on a job lasts without renewal.
    pub lease_seconds: u32,
    /// How long a worker may hold one message: a job still running after this
    /// is handed on through a fresh message, well inside RabbitMQ's consumer
    /// timeout (30 minutes by default).
    pub max_delivery_seconds: u64,
    /// How long an unfinished job may go without a message being queued for it
    /// (and without a live claim) before the sweeper queues another; doubles
    /// with each re-dispatch of the same job, up to 64 times this.
    pub redispatch_after_secs: u64,
    /// How often the sweeper looks for such jobs.
    pub sweep_interval_ms: u64,
    /// Where the worker serves `/metrics`, `/healthz` and `/readyz`.
    pub http_addr: String,
}

/// How workers deliver webhook events. Every worker runs a delivery loop;
/// these bound what one slow or failing endpoint can cost it.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookSettings {
    /// How often, in milliseconds, a worker looks for deliveries that are due.
    pub poll_interval_ms: u64,
    /// Deliveries one worker sends at the same time.
    pub concurrency: u16,
    /// Milliseconds an endpoint has to answer one attempt.
    pub request_timeout_ms: u64,
    /// The wait after the first failed attempt, in milliseconds; it doubles
    /// with each further failure, up to `backoff_max_ms`.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Attempts after which a delivery is given up (status `failed`).
    pub max_attempts: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    /// `text` (readable, the default) or `json`.
    pub format: String,
    /// A `RUST_LOG`-style filter; `RUST_LOG` itself wins when set.
    pub filter: String,
}

impl LogSettings {
    pub fn is_json(&self) -> bool {
        self.format.eq_ignore_ascii_case("json")
    }
}

/// The key secret of a development machine. Keys hashed with it are only as
/// safe as this public string: deployments set `ARCUS__AUTH__KEY_SECRET`.
pub const DEVELOPMENT_KEY_SECRET: &str = "arcus-development-key-secret-change-me";

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct SettingsError(#[from] config::ConfigError);

impl Settings {
    /// Loads the settings from defaults, the file named by `ARCUS_CONFIG` if any,
    /// and the environment.
    pub fn load() -> Result<Self, SettingsError> {
        let file = std::env::var_os("ARCUS_CONFIG");
        Self::load_from(file.as_deref().map(Path::new))
    }

    /// Loads the settings with an explicit optional file.
    pub fn load_from(file: Option<&Path>) -> Result<Self, SettingsError> {
        let mut builder = config::Config::builder()
            .set_default("database.url", "postgres://postgres@127.0.0.1:5432/arcus")?
            .set_default("database.max_connections", 10)?
            .set_default("amqp.url", "amqp://guest:guest@127.0.0.1:5672/%2f")?
            .set_default("amqp.prefix", "arcus")?
            .set_default("amqp.relay_interval_ms", 1000)?
            .set_default("http.addr", "127.0.0.1:8080")?
            .set_default("http.max_body_bytes", 10 * 1024 * 1024)?
            .set_default("http.max_header_bytes", 16 * 1024)?
            .set_default("http.header_read_timeout_secs", 10)?
            .set_default("http.request_timeout_secs", 60)?
            .set_default("worker.resources", Vec::<String>::new())?
            .set_default("worker.concurrency", 2)?
            .set_default("worker.chunk_size", 1000)?
            .set_default("worker.lease_seconds", 30)?
            .set_default("worker.max_delivery_seconds", 600)?
            .set_default("worker.redispatch_after_secs", 60)?
            .set_default("worker.sweep_interval_ms", 5000)?
            .set_default("worker.http_addr", "127.0.0.1:9090")?
            .set_default("log.format", "text")?
            .set_default("log.filter", "info")?
            .set_default("auth.key_secret", DEVELOPMENT_KEY_SECRET)?
            .set_default("rate_limit.enabled", true)?
            .set_default("rate_limit.replicas", 1)?
            .set_default("webhooks.poll_interval_ms", 1000)?
            .set_default("webhooks.concurrency", 8)?
            .set_default("webhooks.request_timeout_ms", 10_000)?
            // 30 s, 1 min, 2 min, ... capped at 6 h: twelve attempts span
            // about 15 hours, long enough to ride out a receiver's bad night.
            .set_default("webhooks.backoff_base_ms", 30_000)?
            .set_default("webhooks.backoff_max_ms", 6 * 60 * 60 * 1000)?
            .set_default("webhooks.max_attempts", 12)?;
        if let Some(file) = file {
            builder = builder.add_source(config::File::from(file).required(true));
        }
        let settings = builder
            .add_source(
                config::Environment::with_prefix("ARCUS")
                    .prefix_separator("__")
                    .separator("__")
                    // Numbers and lists arrive as strings from the environment.
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("worker.resources"),
            )
            .build()?
            .try_deserialize()?;
        Ok(settings)
    }
}

impl DatabaseSettings {
    pub fn url(&self) -> &str {
        self.url.expose_secret()
    }
}

impl AuthSettings {
    pub fn key_secret(&self) -> &str {
        self.key_secret.expose_secret()
    }

    /// Whether the development secret is in use, which a deployment must not do.
    pub fn uses_development_secret(&self) -> bool {
        self.key_secret() == DEVELOPMENT_KEY_SECRET
    }
}

impl AmqpSettings {
    pub fn url(&self) -> &str {
        self.url.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_point_at_the_local_services() {
        let settings = Settings::load_from(None).expect("defaults load");
        assert_eq!(
            settings.database.url(),
            "postgres://postgres@127.0.0.1:5432/arcus"
        );
        assert_eq!(settings.amqp.url(), "amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!(settings.http.addr, "127.0.0.1:8080");
        assert!(settings.worker.resources.is_empty());
        assert_eq!(settings.webhooks.max_attempts, 12);
    }

    #[test]
    fn secrets_do_not_print() {
        let settings = Settings::load_from(None).expect("defaults load");
        let printed = format!("{settings:?}");
        assert!(!printed.contains("guest:guest"), "{printed}");
    }

    #[test]
    fn a_file_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("arcus-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("arcus.toml");
        std::fs::write(
            &file,
            "[http]\naddr = \"0.0.0.0:9999\"\n[worker]\nchunk_size = 7\n",
        )
        .expect("write file");
        let settings = Settings::load_from(Some(&file)).expect("file loads");
        assert_eq!(settings.http.addr, "0.0.0.0:9999");
        assert_eq!(settings.worker.chunk_size, 7);
        std::fs::remove_dir_all(dir).expect("clean up");
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err = Settings::load_from(Some(Path::new("/nonexistent/arcus.toml")))
            .expect_err("missing file must fail");
        assert!(err.to_string().contains("invalid configuration"));
    }
}
