//! The public HTTP API as a client sees it: submit a bulk job, read a job.

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::records::Resource;

/// One entity's test key on one API address, with a connection pool of its
/// own.
pub struct Api {
    client: reqwest::Client,
    base: String,
    pub entity: Uuid,
    key: String,
}

/// A job as `GET .../migration/jobs/{id}` shows it.
#[derive(Debug)]
pub struct Job {
    pub status: String,
    pub total: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub errors: Vec<Value>,
}

impl Job {
    pub fn is_terminal(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "partial" | "failed")
    }
}

impl Api {
    pub fn new(addr: &str, entity: Uuid, key: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            client,
            base: format!("http://{addr}"),
            entity,
            key: key.to_owned(),
        })
    }

    /// A second client for the same key, on connections of its own.
    pub fn another(&self) -> anyhow::Result<Self> {
        let addr = self.base.trim_start_matches("http://");
        Self::new(addr, self.entity, &self.key)
    }

    /// Submits a bulk job; its id once the API accepted it (202).
    pub async fn submit(&self, resource: Resource, body: Vec<u8>) -> anyhow::Result<Uuid> {
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
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .context("submitting a job")?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status != StatusCode::ACCEPTED {
            bail!("submitting a job: {status}: {text}");
        }
        let job: Value = serde_json::from_str(&text).context("a job object")?;
        job["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .with_context(|| format!("202 without a job id: {text}"))
    }

    pub async fn job(&self, id: Uuid) -> anyhow::Result<Job> {
        let response = self.get_job(id).await?;
        let status = response.status();
        if !status.is_success() {
            bail!("reading job {id}: {status}");
        }
        let job: Value = response.json().await.context("reading a job object")?;
        let count = |field: &str| {
            job[field]
                .as_i64()
                .with_context(|| format!("job {id} without {field}"))
        };
        Ok(Job {
            status: job["status"]
                .as_str()
                .with_context(|| format!("job {id} without a status"))?
                .to_owned(),
            total: count("total_records")?,
            succeeded: count("succeeded_records")?,
            failed: count("failed_records")?,
            errors: job["errors"].as_array().cloned().unwrap_or_default(),
        })
    }

    /// Reads a job and its whole body, as a polling client does; whether it
    /// answered 200.
    pub async fn read_job(&self, id: Uuid) -> bool {
        match self.get_job(id).await {
            Ok(response) => response.status() == StatusCode::OK && response.bytes().await.is_ok(),
            Err(_) => false,
        }
    }

    async fn get_job(&self, id: Uuid) -> reqwest::Result<reqwest::Response> {
        self.client
            .get(format!(
                "{}/v1/entities/{}/migration/jobs/{id}",
                self.base, self.entity
            ))
            .bearer_auth(&self.key)
            .send()
            .await
    }
}
