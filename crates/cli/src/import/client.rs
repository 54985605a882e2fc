//! The API calls of an import. Transient failures (the network, a 5xx, a
//! 429) are retried with backoff, which is safe because every submission
//! carries its Idempotency-Key; any other refusal stops the import with the
//! API's own error.
//!
//! Calls are paced by the key's rate limit, read from the `X-RateLimit-*`
//! headers of each answer: while the window has room they go at once, and
//! near its end they are spread at the key's steady rate, so a test key (60
//! requests a minute) imports without running into 429s.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::Options;

/// Attempts of one call before the import gives up on an API that does not
/// answer or answers 5xx.
const ATTEMPTS: u32 = 8;

pub struct Client {
    http: reqwest::Client,
    /// `<api>/v1/entities/<entity>/migration`
    base: String,
    key: String,
    resource: &'static str,
    /// The key's requests per minute and what its window had left at the
    /// last answer; 0 until an answer says (or when the API sets no limit).
    limit: AtomicU32,
    remaining: AtomicU32,
    /// When the next paced call may go.
    next_slot: tokio::sync::Mutex<tokio::time::Instant>,
    /// Calls that may be in flight at once, kept in reserve in the window.
    parallel: u32,
    /// `?strict=true` on every submission.
    strict: bool,
}

/// The fields the API did not keep, each with how many records carried it
/// (a job's or dry run's `ignored_fields`).
pub type Ignored = Vec<(String, u64)>;

fn ignored_fields(answer: &Value) -> Ignored {
    answer["ignored_fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| Some((f["field"].as_str()?.to_owned(), f["records"].as_u64()?)))
        .collect()
}

/// What the API answered a submission.
pub struct Submitted {
    pub job: Uuid,
    pub created_at: DateTime<Utc>,
    /// An earlier run had made the job.
    pub resumed: bool,
    pub ignored: Ignored,
}

/// The error of one record, as the API reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct RecordError {
    pub index: usize,
    pub code: String,
    pub error: String,
    #[serde(default)]
    pub param: Option<String>,
    #[serde(default)]
    pub hint: Option<String>,
}

impl RecordError {
    /// Rows that never became a record, so were never sent.
    pub fn local(reason: &str) -> Self {
        Self {
            index: 0,
            code: "invalid_row".to_owned(),
            error: reason.to_owned(),
            param: None,
            hint: Some("fix the rows in the file and import it again".to_owned()),
        }
    }
}

pub type JobErrors = Vec<RecordError>;

/// What a dry run of one chunk said.
pub struct DryRun {
    pub succeeded: u64,
    /// created, updated, skipped, replaced
    pub outcomes: [u64; 4],
    pub ignored: Ignored,
    pub errors: JobErrors,
}

impl Client {
    pub fn new(options: &Options) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("arcusctl/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base: format!(
                "{}/v1/entities/{}/migration",
                options.api_url.trim_end_matches('/'),
                options.entity
            ),
            key: options.key.clone(),
            resource: options.resource.as_str(),
            limit: AtomicU32::new(0),
            remaining: AtomicU32::new(0),
            next_slot: tokio::sync::Mutex::new(tokio::time::Instant::now()),
            parallel: u32::try_from(options.parallel).unwrap_or(u32::MAX),
            strict: options.strict,
        })
    }

    /// Submits a job.
    pub async fn submit(&self, body: &[u8], key: &str) -> anyhow::Result<Submitted> {
        let url = format!("{}/{}/bulk{}", self.base, self.resource, self.query(&[]));
        let (headers, job) = self
            .call(Method::POST, &url, Some((body, Some(key))))
            .await?;
        let id = job["id"]
            .as_str()
            .and_then(|id| Uuid::parse_str(id).ok())
            .with_context(|| format!("the API answered a submission without a job id: {job}"))?;
        let created_at = job["created_at"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .with_context(|| format!("the API answered a submission without created_at: {job}"))?;
        Ok(Submitted {
            job: id,
            created_at: created_at.with_timezone(&Utc),
            resumed: headers.contains_key("idempotent-replayed"),
            ignored: ignored_fields(&job),
        })
    }

    /// The query string of a submission: `extra`, and strict when asked for.
    fn query(&self, extra: &[&str]) -> String {
        let mut params = extra.to_vec();
        if self.strict {
            params.push("strict=true");
        }
        if params.is_empty() {
            String::new()
        } else {
            format!("?{}", params.join("&"))
        }
    }

    pub async fn job(&self, id: Uuid) -> anyhow::Result<Value> {
        let (_, job) = self
            .call(Method::GET, &format!("{}/jobs/{id}", self.base), None)
            .await?;
        Ok(job)
    }

    /// This resource's jobs created after `since`, newest first, at most
    /// `limit`.
    pub async fn jobs_since(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> anyhow::Result<Vec<Value>> {
        let url = format!(
            "{}/jobs?resource={}&limit={limit}&created_after={}",
            self.base,
            self.resource,
            since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let (_, page) = self.call(Method::GET, &url, None).await?;
        match page["data"].clone() {
            Value::Array(jobs) => Ok(jobs),
            _ => anyhow::bail!("the API answered an unexpected job list: {page}"),
        }
    }

    /// Every error of a job, page by page.
    pub async fn errors(&self, id: Uuid) -> anyhow::Result<JobErrors> {
        let mut errors = Vec::new();
        let mut after: Option<u64> = None;
        loop {
            let mut url = format!("{}/jobs/{id}/errors?limit=100", self.base);
            if let Some(after) = after {
                url.push_str(&format!("&starting_after={after}"));
            }
            let (_, page) = self.call(Method::GET, &url, None).await?;
            let data: JobErrors = serde_json::from_value(page["data"].clone())
                .with_context(|| format!("the API answered an unexpected errors page: {page}"))?;
            errors.extend(data);
            after = page["next_cursor"].as_u64();
            if page["has_more"] != true || after.is_none() {
                return Ok(errors);
            }
        }
    }

    pub async fn dry_run(&self, body: &[u8]) -> anyhow::Result<DryRun> {
        let url = format!(
            "{}/{}/bulk{}",
            self.base,
            self.resource,
            self.query(&["dry_run=true"])
        );
        let (_, result) = self.call(Method::POST, &url, Some((body, None))).await?;
        let count = |name: &str| result[name].as_u64().unwrap_or(0);
        Ok(DryRun {
            succeeded: count("succeeded_records"),
            outcomes: [
                count("created_records"),
                count("updated_records"),
                count("skipped_records"),
                count("replaced_records"),
            ],
            ignored: ignored_fields(&result),
            errors: serde_json::from_value(result["errors"].clone())
                .with_context(|| format!("the API answered an unexpected dry run: {result}"))?,
        })
    }

    /// The key's steady rate, while its window is nearly used: then every
    /// call waits its turn.
    fn pacing(&self) -> Option<Duration> {
        let limit = self.limit.load(Ordering::Relaxed);
        (limit > 0 && self.remaining.load(Ordering::Relaxed) <= 2 * self.parallel)
            .then(|| Duration::from_secs(60) / limit)
    }

    /// How long to wait between looks at the jobs in flight. While calls are
    /// paced, a look takes a turn a submission could have had: look about
    /// once per round of submissions.
    pub fn look_interval(&self, at_least: Duration) -> Duration {
        self.pacing().map_or(at_least, |interval| {
            (interval * self.parallel).max(at_least)
        })
    }

    /// Waits, when the key's window is nearly used, for the call's turn at
    /// the key's steady rate.
    async fn pace(&self) {
        let Some(interval) = self.pacing() else {
            return;
        };
        let slot = {
            let mut next = self.next_slot.lock().await;
            let slot = (*next).max(tokio::time::Instant::now());
            *next = slot + interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    fn note_limits(&self, headers: &reqwest::header::HeaderMap) {
        let read = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u32>().ok())
        };
        if let (Some(limit), Some(remaining)) =
            (read("x-ratelimit-limit"), read("x-ratelimit-remaining"))
        {
            self.limit.store(limit, Ordering::Relaxed);
            self.remaining.store(remaining, Ordering::Relaxed);
        }
    }

    /// One call, retried while the failure is transient.
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<(&[u8], Option<&str>)>,
    ) -> anyhow::Result<(reqwest::header::HeaderMap, Value)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.pace().await;
            let mut request = self
                .http
                .request(method.clone(), url)
                .bearer_auth(&self.key);
            if let Some((body, key)) = body {
                request = request
                    .header("content-type", "application/json")
                    .body(body.to_vec());
                if let Some(key) = key {
                    request = request.header("idempotency-key", key);
                }
            }
            let wait = match request.send().await {
                Err(_) if attempt < ATTEMPTS => backoff(attempt),
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("{method} {url}: the API did not answer"));
                }
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    self.note_limits(&headers);
                    let text = response.text().await.unwrap_or_default();
                    let transient =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    if status.is_success() {
                        let value = serde_json::from_str(&text).with_context(|| {
                            format!("{method} {url}: the API answered {status} with a body that is not JSON")
                        })?;
                        return Ok((headers, value));
                    }
                    if !transient || attempt >= ATTEMPTS {
                        bail!("{method} {url}: {}", refusal(status, &text));
                    }
                    // A 429 is the API alive and saying when: it does not
                    // use up the attempts, which are for an API in trouble.
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        attempt -= 1;
                    }
                    headers
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map_or_else(|| backoff(attempt), Duration::from_secs)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250 * 2_u64.pow(attempt.min(6))).min(Duration::from_secs(10))
}

/// The API's error envelope, said in one line.
fn refusal(status: StatusCode, body: &str) -> String {
    let Ok(error) = serde_json::from_str::<Value>(body) else {
        return format!("the API answered {status}");
    };
    let mut line = format!(
        "{status} {}: {}",
        error["code"].as_str().unwrap_or("error"),
        error["hint"].as_str().unwrap_or(body)
    );
    for (name, label) in [("param", "param"), ("required", "required scope")] {
        if let Some(value) = error[name].as_str() {
            line.push_str(&format!(" ({label}: {value})"));
        }
    }
    line
}
