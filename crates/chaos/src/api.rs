//! The public HTTP API as a client sees it: submit a bulk job, read a job.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::records::Resource;

/// A test key and the entity it belongs to, on one API address.
pub struct Api {
    client: reqwest::Client,
    base: String,
    entity: Uuid,
    key: String,
}

/// How the API answered a submission.
#[derive(Debug)]
pub enum Answer {
    /// 202, or the replay of an earlier 202 for the same Idempotency-Key.
    Accepted { id: Uuid },
    /// A failure a client should retry with the same key: a 5xx, a timeout,
    /// a refused or broken connection.
    Retry(String),
    /// Anything else: the request itself was refused.
    Refused(String),
}

/// A job's progress, as `GET .../migration/jobs/{id}` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobView {
    pub status: Status,
    pub total: i64,
    pub processed: i64,
    pub succeeded: i64,
    pub failed: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Pending,
    Running,
    Completed,
    Partial,
    Failed,
}

impl Status {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Status::Pending,
            "running" => Status::Running,
            "completed" => Status::Completed,
            "partial" => Status::Partial,
            "failed" => Status::Failed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Partial => "partial",
            Status::Failed => "failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Completed | Status::Partial | Status::Failed)
    }
}

impl Api {
    pub fn new(addr: &str, entity: Uuid, key: String) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()?;
        Ok(Self {
            client,
            base: format!("http://{addr}"),
            entity,
            key,
        })
    }

    pub async fn submit(&self, resource: Resource, idempotency_key: &str, body: &[u8]) -> Answer {
        let url = format!(
            "{}/v1/entities/{}/migration/{}/bulk",
            self.base,
            self.entity,
            resource.name()
        );
        let response = self
            .client
            .post(url)
            .bearer_auth(&self.key)
            .header("Idempotency-Key", idempotency_key)
            .header("Content-Type", "application/json")
            .body(body.to_vec())
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => return Answer::Retry(format!("no answer: {e}")),
        };
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status == StatusCode::ACCEPTED {
            return match serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|job| job["id"].as_str().and_then(|id| id.parse().ok()))
            {
                Some(id) => Answer::Accepted { id },
                None => Answer::Refused(format!("202 without a job id: {text}")),
            };
        }
        if status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            return Answer::Retry(format!("{status}"));
        }
        Answer::Refused(format!("{status}: {text}"))
    }

    /// A job's counters, or `None` when the API could not answer (Postgres
    /// may be down).
    pub async fn job(&self, id: Uuid) -> Option<JobView> {
        let url = format!(
            "{}/v1/entities/{}/migration/jobs/{id}",
            self.base, self.entity
        );
        let response = self
            .client
            .get(url)
            .bearer_auth(&self.key)
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let job: Value = response.json().await.ok()?;
        Some(JobView {
            status: Status::parse(job["status"].as_str()?)?,
            total: job["total_records"].as_i64()?,
            processed: job["processed_records"].as_i64()?,
            succeeded: job["succeeded_records"].as_i64()?,
            failed: job["failed_records"].as_i64()?,
        })
    }

    /// Whether `/readyz` answers 2xx.
    pub async fn ready(&self) -> bool {
        self.client
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }
}
