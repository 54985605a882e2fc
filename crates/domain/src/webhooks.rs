//! Webhooks: the endpoints an entity registers (per mode, like everything
//! else) and the deliveries of the events that announce a migration job's
//! terminal state.
//!
//! An event is written by [`enqueue_for_job`] in the transaction that gives
//! the job its final status, so it exists if and only if that status does,
//! and the job never waits on an endpoint. Workers then claim due deliveries
//! under a lease ([`claim_due`]), send them, and record the outcome: a
//! failed attempt is retried with exponential backoff until the delivery is
//! given up ([`RetryPolicy`]). A delivery is sent at least once while it has
//! attempts left; its id, the same on every attempt, lets a receiver drop
//! duplicates.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::audit::{self, Actor};
use crate::jobs::model::{Job, JobStatus, format_timestamp, opt_timestamp, timestamp};
use crate::{Keyset, Mode, PageFrom, Tenant, UnknownValue, new_id};

/// Longest endpoint URL, in bytes.
pub const URL_MAX: usize = 2048;
/// Live endpoints one entity may have in one mode: each job's end writes one
/// delivery per endpoint, so the fan-out of a job stays bounded.
pub const MAX_ENDPOINTS: i64 = 16;
/// Random characters of a signing secret after its `whsec_` prefix (about 190
/// bits).
const SECRET_LEN: usize = 32;

/// The version of the vendor's API whose event envelope the events follow
/// (its `concepts/webhooks` page shows this one).
pub const API_VERSION: &str = "2026-05-01";

/// The events an endpoint can receive: one per terminal job status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    JobCompleted,
    JobPartial,
    JobFailed,
}

impl EventType {
    pub const ALL: [EventType; 3] = [
        EventType::JobCompleted,
        EventType::JobPartial,
        EventType::JobFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::JobCompleted => "migration_job.completed",
            EventType::JobPartial => "migration_job.partial",
            EventType::JobFailed => "migration_job.failed",
        }
    }

    /// The event a job's status announces; none for a job still under way.
    pub fn for_status(status: JobStatus) -> Option<Self> {
        match status {
            JobStatus::Completed => Some(EventType::JobCompleted),
            JobStatus::Partial => Some(EventType::JobPartial),
            JobStatus::Failed => Some(EventType::JobFailed),
            JobStatus::Pending | JobStatus::Running => None,
        }
    }

    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|e| e.as_str()).collect()
    }

    /// The events a subscription entry stands for, as the vendor's webhook
    /// pages define them: an event's name, `*` for all, or `<family>.*` for
    /// a family's (`migration_job.*`, this service's only family). `None`
    /// for an entry that names no event this service sends.
    pub fn matching(entry: &str) -> Option<Vec<Self>> {
        match entry {
            "*" | "migration_job.*" => Some(Self::ALL.to_vec()),
            name => name.parse().ok().map(|e| vec![e]),
        }
    }
}

impl FromStr for EventType {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| UnknownValue::new("the event type", s, &Self::names()))
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An endpoint URL the workers may post to: absolute, http or https, with a
/// host, without credentials, at most [`URL_MAX`] bytes. Held in the
/// normalized form it is stored and shown in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("url is at most {URL_MAX} characters")]
    TooLong,
    #[error("url is not an absolute URL: {0}")]
    Malformed(String),
    #[error("url must be http or https, got '{0}'")]
    Scheme(String),
    #[error("url must not carry a user name or password")]
    Credentials,
}

impl EndpointUrl {
    pub fn parse(raw: &str) -> Result<Self, UrlError> {
        let raw = raw.trim();
        if raw.len() > URL_MAX {
            return Err(UrlError::TooLong);
        }
        let url = url::Url::parse(raw).map_err(|e| UrlError::Malformed(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UrlError::Scheme(url.scheme().chars().take(32).collect()));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(UrlError::Malformed("it has no host".to_owned()));
        }
        // The URL is shown in every listing; a password in it would be too.
        // Receivers authenticate deliveries by their signature instead.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::Credentials);
        }
        // Normalizing may lengthen it (percent-encoding); the bound holds for
        // what is stored.
        if url.as_str().len() > URL_MAX {
            return Err(UrlError::TooLong);
        }
        Ok(Self(url.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A webhook endpoint as the API shows it: never with its secret, except
/// once, when it is created ([`CreatedEndpoint`]).
#[derive(Debug, Clone, Serialize)]
pub struct Endpoint {
    pub id: Uuid,
    pub object: &'static str,
    pub entity_id: Uuid,
    pub mode: Mode,
    pub url: String,
    /// The vendor's name for the subscription list.
    pub enabled_events: Vec<String>,
    /// The same list, by its first name here (the vendor's deprecated alias).
    pub events: Vec<String>,
    #[serde(serialize_with = "timestamp")]
    pub created_at: DateTime<Utc>,
}

/// A new endpoint with its signing secret, which is never shown again.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedEndpoint {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    pub secret: String,
}

#[derive(sqlx::FromRow)]
struct EndpointRow {
    id: Uuid,
    entity_id: Uuid,
    mode: String,
    url: String,
    events: Vec<String>,
    created_at: DateTime<Utc>,
}

impl EndpointRow {
    fn into_endpoint(self) -> Endpoint {
        Endpoint {
            id: self.id,
            object: "webhook_endpoint",
            entity_id: self.entity_id,
            mode: self.mode.parse().expect("mode is constrained"),
            url: self.url,
            enabled_events: self.events.clone(),
            events: self.events,
            created_at: self.created_at,
        }
    }
}

const ENDPOINT_COLUMNS: &str = "id, entity_id, mode, url, events, created_at";

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("this entity already has {MAX_ENDPOINTS} webhook endpoints in this mode")]
    TooMany,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Registers an endpoint for `events` (deduplicated, in the order of
/// [`EventType::ALL`]) with a fresh signing secret, and audits it.
pub async fn create(
    pool: &PgPool,
    tenant: Tenant,
    url: &EndpointUrl,
    events: &[EventType],
    actor: &Actor,
) -> Result<CreatedEndpoint, CreateError> {
    let events: Vec<&str> = EventType::ALL
        .into_iter()
        .filter(|e| events.contains(e))
        .map(EventType::as_str)
        .collect();
    let secret = new_secret();
    let mut tx = pool.begin().await?;
    // Creations for one entity take turns on its row, so two at once cannot
    // both pass the count below. `no key update` leaves the key-share locks
    // of foreign-key checks (every job insert takes one) unhindered.
    sqlx::query("select 1 from entities where id = $1 for no key update")
        .bind(tenant.entity_id)
        .execute(&mut *tx)
        .await?;
    let live: i64 = sqlx::query_scalar(
        "select count(*) from webhook_endpoints
         where entity_id = $1 and mode = $2 and deleted_at is null",
    )
    .bind(tenant.entity_id)
    .bind(tenant.mode.as_str())
    .fetch_one(&mut *tx)
    .await?;
    if live >= MAX_ENDPOINTS {
        return Err(CreateError::TooMany);
    }
    let row: EndpointRow = sqlx::query_as(&format!(
        "insert into webhook_endpoints (id, entity_id, mode, url, secret, events)
         values ($1, $2, $3, $4, $5, $6)
         returning {ENDPOINT_COLUMNS}"
    ))
    .bind(new_id())
    .bind(tenant.entity_id)
    .bind(tenant.mode.as_str())
    .bind(url.as_str())
    .bind(&secret)
    .bind(&events)
    .fetch_one(&mut *tx)
    .await?;
    let endpoint = row.into_endpoint();
    audit::record(
        &mut tx,
        actor,
        "webhook_endpoint.created",
        Some(tenant.entity_id),
        json!({"endpoint_id": endpoint.id, "mode": tenant.mode, "url": endpoint.url,
               "events": endpoint.events}),
    )
    .await?;
    tx.commit().await?;
    Ok(CreatedEndpoint { endpoint, secret })
}

fn new_secret() -> String {
    let random: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(SECRET_LEN)
        .map(char::from)
        .collect();
    format!("whsec_{random}")
}

/// The tenant's endpoints, oldest first. There are at most
/// [`MAX_ENDPOINTS`], so the list needs no paging.
pub async fn list(pool: &PgPool, tenant: Tenant) -> Result<Vec<Endpoint>, sqlx::Error> {
    let rows: Vec<EndpointRow> = sqlx::query_as(&format!(
        "select {ENDPOINT_COLUMNS} from webhook_endpoints
         where entity_id = $1 and mode = $2 and deleted_at is null
         order by id"
    ))
    .bind(tenant.entity_id)
    .bind(tenant.mode.as_str())
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(EndpointRow::into_endpoint).collect())
}

/// Deletes one of the tenant's endpoints: it receives nothing more, its
/// pending deliveries are given up, and its secret is forgotten. False when
/// the tenant has no such endpoint.
pub async fn delete(
    pool: &PgPool,
    tenant: Tenant,
    id: Uuid,
    actor: &Actor,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let deleted = sqlx::query(
        "update webhook_endpoints set deleted_at = now(), secret = null
         where id = $1 and entity_id = $2 and mode = $3 and deleted_at is null",
    )
    .bind(id)
    .bind(tenant.entity_id)
    .bind(tenant.mode.as_str())
    .execute(&mut *tx)
    .await?;
    if deleted.rows_affected() == 0 {
        return Ok(false);
    }
    // An attempt already under way may still land; nothing is sent after it.
    sqlx::query(
        "update webhook_deliveries set status = 'failed', last_error = 'the endpoint was deleted'
         where endpoint_id = $1 and status = 'pending'",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        actor,
        "webhook_endpoint.deleted",
        Some(tenant.entity_id),
        json!({"endpoint_id": id, "mode": tenant.mode}),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Writes one delivery of the event that announces the job's terminal status
/// to each of the tenant's endpoints that wants it, on the caller's
/// transaction: the one that gives the job that status. Returns how many.
///
/// The event carries the job object as `GET .../jobs/{id}` returns it, less
/// its `errors`: those can run to a thousand entries, and a receiver that
/// wants them fetches the job.
pub async fn enqueue_for_job(
    conn: &mut PgConnection,
    tenant: Tenant,
    job: &Job,
) -> Result<usize, sqlx::Error> {
    let Some(event_type) = EventType::for_status(job.status) else {
        return Ok(0);
    };
    let endpoints: Vec<Uuid> = sqlx::query_scalar(
        "select id from webhook_endpoints
         where entity_id = $1 and mode = $2 and deleted_at is null and $3 = any (events)
         order by id",
    )
    .bind(tenant.entity_id)
    .bind(tenant.mode.as_str())
    .bind(event_type.as_str())
    .fetch_all(&mut *conn)
    .await?;
    if endpoints.is_empty() {
        return Ok(0);
    }
    let mut object = serde_json::to_value(job).expect("a job serializes");
    object
        .as_object_mut()
        .expect("a job serializes as an object")
        .remove("errors");
    let created_at = format_timestamp(&Utc::now());
    let ids: Vec<Uuid> = endpoints.iter().map(|_| new_id()).collect();
    let payloads: Vec<Json<Value>> = ids
        .iter()
        .map(|id| {
            Json(json!({
                "id": id,
                "object": "event",
                "type": event_type.as_str(),
                "created_at": created_at,
                "api_version": API_VERSION,
                "entity_id": tenant.entity_id,
                "livemode": tenant.mode == Mode::Live,
                "mode": tenant.mode,
                "data": {"object": object},
            }))
        })
        .collect();
    sqlx::query(
        "insert into webhook_deliveries (id, endpoint_id, job_id, event_type, payload)
         select d.id, d.endpoint_id, $3, $4, d.payload
         from unnest($1::uuid[], $2::uuid[], $5::jsonb[]) as d (id, endpoint_id, payload)",
    )
    .bind(&ids)
    .bind(&endpoints)
    .bind(job.id)
    .bind(event_type.as_str())
    .bind(&payloads)
    .execute(conn)
    .await?;
    Ok(ids.len())
}

/// A delivery a worker has claimed, with what it needs to send it.
#[derive(Clone)]
pub struct DueDelivery {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub url: String,
    pub secret: String,
    pub event_type: String,
    pub payload: Value,
    /// Attempts so far, this one included: the fence of the outcome's write.
    pub attempts: i32,
}

impl fmt::Debug for DueDelivery {
    /// Everything but the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DueDelivery")
            .field("id", &self.id)
            .field("endpoint_id", &self.endpoint_id)
            .field("url", &self.url)
            .field("event_type", &self.event_type)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

#[derive(sqlx::FromRow)]
struct DueRow {
    id: Uuid,
    endpoint_id: Uuid,
    url: String,
    secret: String,
    event_type: String,
    payload: Json<Value>,
    attempts: i32,
}

/// Claims up to `limit` due deliveries, oldest due first, counting the
/// attempt each is about to get. Each comes due again after `lease`, so a
/// delivery whose worker died mid-attempt is retried by another; the lease
/// must outlast an attempt. `skip locked` lets every worker poll at once
/// without two claiming the same delivery.
pub async fn claim_due(
    pool: &PgPool,
    limit: i64,
    lease: Duration,
) -> Result<Vec<DueDelivery>, sqlx::Error> {
    let rows: Vec<DueRow> = sqlx::query_as(
        "with due as (
             select id from webhook_deliveries
             where status = 'pending' and next_attempt_at <= now()
             order by next_attempt_at
             limit $1
             for update skip locked
         )
         update webhook_deliveries d
         set attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
         from due, webhook_endpoints e
         where d.id = due.id and e.id = d.endpoint_id and e.deleted_at is null
         returning d.id, d.endpoint_id, e.url, e.secret, d.event_type, d.payload, d.attempts",
    )
    .bind(limit)
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| DueDelivery {
            id: row.id,
            endpoint_id: row.endpoint_id,
            url: row.url,
            secret: row.secret,
            event_type: row.event_type,
            payload: row.payload.0,
            attempts: row.attempts,
        })
        .collect())
}

/// Records that the endpoint accepted the delivery. False when the claim had
/// run out and another worker had claimed the delivery since: its outcome is
/// the one recorded.
pub async fn mark_delivered(
    pool: &PgPool,
    delivery: &DueDelivery,
    http_status: u16,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "update webhook_deliveries
         set status = 'delivered', delivered_at = now(), last_status = $3, last_error = null
         where id = $1 and attempts = $2 and status = 'pending'",
    )
    .bind(delivery.id)
    .bind(delivery.attempts)
    .bind(i32::from(http_status))
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// When failed attempts are tried again, and when they stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failed attempt; it doubles after each one.
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
    /// Attempts after which the delivery is given up.
    pub max_attempts: u32,
}

impl RetryPolicy {
    /// The wait after `attempts` failed attempts: `base`, `2 base`, `4 base`,
    /// ... up to `max`.
    pub fn delay_after(&self, attempts: i32) -> Duration {
        let doublings = u32::try_from(attempts.saturating_sub(1))
            .unwrap_or(0)
            .min(31);
        self.base.saturating_mul(1 << doublings).min(self.max)
    }

    fn gives_up_after(&self, attempts: i32) -> bool {
        u32::try_from(attempts).unwrap_or(0) >= self.max_attempts
    }
}

/// What became of a delivery whose attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// It is tried again after this wait.
    After(Duration),
    /// It ran out of attempts and is `failed`.
    GaveUp,
    /// Another worker had claimed it since; its outcome is the one recorded.
    Superseded,
}

/// Records a failed attempt (`http_status` is `None` when the endpoint gave no
/// answer) and schedules the next, or gives the delivery up.
pub async fn mark_failed(
    pool: &PgPool,
    delivery: &DueDelivery,
    http_status: Option<u16>,
    error: &str,
    policy: &RetryPolicy,
) -> Result<Retry, sqlx::Error> {
    let gave_up = policy.gives_up_after(delivery.attempts);
    let wait = policy.delay_after(delivery.attempts);
    let error: String = error.chars().take(1000).collect();
    let done = sqlx::query(
        "update webhook_deliveries
         set status = case when $5 then 'failed' else 'pending' end,
             next_attempt_at = now() + make_interval(secs => $6),
             last_status = $3, last_error = $4
         where id = $1 and attempts = $2 and status = 'pending'",
    )
    .bind(delivery.id)
    .bind(delivery.attempts)
    .bind(http_status.map(i32::from))
    .bind(&error)
    .bind(gave_up)
    .bind(wait.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(match (done.rows_affected(), gave_up) {
        (0, _) => Retry::Superseded,
        (_, true) => Retry::GaveUp,
        (_, false) => Retry::After(wait),
    })
}

/// A delivery as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub id: Uuid,
    pub object: &'static str,
    pub endpoint_id: Uuid,
    pub job_id: Uuid,
    pub event_type: String,
    pub status: String,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    /// When the next attempt is due; null once delivered or given up.
    #[serde(serialize_with = "opt_timestamp")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "opt_timestamp")]
    pub delivered_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "timestamp")]
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: Uuid,
    endpoint_id: Uuid,
    job_id: Uuid,
    event_type: String,
    status: String,
    attempts: i32,
    last_status: Option<i32>,
    last_error: Option<String>,
    next_attempt_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

#[derive(Debug)]
pub struct DeliveryPage {
    pub deliveries: Vec<Delivery>,
    pub has_more: bool,
}

/// The deliveries of one of the tenant's endpoints, newest first, after or
/// before a delivery if given; `None` when the tenant has no such endpoint.
pub async fn deliveries(
    pool: &PgPool,
    tenant: Tenant,
    endpoint_id: Uuid,
    limit: u32,
    from: Option<PageFrom<Uuid>>,
) -> Result<Option<DeliveryPage>, sqlx::Error> {
    let exists: bool = sqlx::query_scalar(
        "select exists (select 1 from webhook_endpoints
                        where id = $1 and entity_id = $2 and mode = $3 and deleted_at is null)",
    )
    .bind(endpoint_id)
    .bind(tenant.entity_id)
    .bind(tenant.mode.as_str())
    .fetch_one(pool)
    .await?;
    if !exists {
        return Ok(None);
    }
    // Ids are UUIDv7, so their order is their creation order.
    let Keyset {
        cmp,
        order,
        reversed,
    } = Keyset::of(from, true);
    let mut rows: Vec<DeliveryRow> = sqlx::query_as(&format!(
        "select id, endpoint_id, job_id, event_type, status, attempts, last_status, last_error,
                next_attempt_at, delivered_at, created_at
         from webhook_deliveries
         where endpoint_id = $1 and ($2::uuid is null or id {cmp} $2)
         order by id {order}
         limit $3"
    ))
    .bind(endpoint_id)
    .bind(from.map(PageFrom::cursor))
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    if reversed {
        rows.reverse();
    }
    let deliveries = rows
        .into_iter()
        .map(|row| Delivery {
            id: row.id,
            object: "webhook_delivery",
            endpoint_id: row.endpoint_id,
            job_id: row.job_id,
            next_attempt_at: (row.status == "pending").then_some(row.next_attempt_at),
            event_type: row.event_type,
            status: row.status,
            attempts: row.attempts,
            last_status: row.last_status,
            last_error: row.last_error,
            delivered_at: row.delivered_at,
            created_at: row.created_at,
        })
        .collect();
    Ok(Some(DeliveryPage {
        deliveries,
        has_more,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_are_absolute_http_without_credentials() {
        let ok = EndpointUrl::parse(" https://hooks.example.com/arcus?x=1 ").expect("valid");
        assert_eq!(ok.as_str(), "https://hooks.example.com/arcus?x=1");
        assert_eq!(
            EndpointUrl::parse("http://127.0.0.1:8080")
                .expect("valid")
                .as_str(),
            "http://127.0.0.1:8080/"
        );
        assert!(matches!(
            EndpointUrl::parse("ftp://example.com/"),
            Err(UrlError::Scheme(s)) if s == "ftp"
        ));
        assert!(matches!(
            EndpointUrl::parse("example.com/hook"),
            Err(UrlError::Malformed(_))
        ));
        assert_eq!(
            EndpointUrl::parse("https://user:pass@example.com/"),
            Err(UrlError::Credentials)
        );
        let long = format!("https://example.com/{}", "a".repeat(URL_MAX));
        assert_eq!(EndpointUrl::parse(&long), Err(UrlError::TooLong));
    }

    #[test]
    fn event_types_follow_terminal_statuses() {
        assert_eq!(
            EventType::for_status(JobStatus::Partial),
            Some(EventType::JobPartial)
        );
        assert_eq!(EventType::for_status(JobStatus::Running), None);
        for e in EventType::ALL {
            assert_eq!(e.as_str().parse::<EventType>().expect("known"), e);
        }
        let err = "migration_job.started"
            .parse::<EventType>()
            .expect_err("unknown");
        assert!(err.to_string().contains("migration_job.partial"), "{err}");
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_gives_up_after_the_last_attempt() {
        let policy = RetryPolicy {
            base: Duration::from_secs(30),
            max: Duration::from_secs(6 * 3600),
            max_attempts: 12,
        };
        let waits: Vec<u64> = (1..=12).map(|n| policy.delay_after(n).as_secs()).collect();
        assert_eq!(
            waits,
            [
                30, 60, 120, 240, 480, 960, 1920, 3840, 7680, 15360, 21600, 21600
            ]
        );
        assert_eq!(policy.delay_after(i32::MAX), policy.max);
        assert!(!policy.gives_up_after(11));
        assert!(policy.gives_up_after(12));
    }

    #[test]
    fn secrets_are_prefixed_and_random() {
        let (a, b) = (new_secret(), new_secret());
        assert!(a.starts_with("whsec_") && a.len() == 6 + SECRET_LEN, "{a}");
        assert_ne!(a, b);
    }
}
