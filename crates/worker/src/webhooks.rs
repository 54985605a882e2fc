//! The webhook delivery loop. Every worker runs one next to its consumer: it
//! polls Postgres for due deliveries, posts each signed event to its endpoint
//! and records the outcome; a failed attempt is tried again with backoff
//! until the delivery runs out of attempts.
//!
//! Jobs never wait on it: the events were committed with the jobs' final
//! status (`domain::jobs::finish`), and this loop only reads them afterwards,
//! on its own task, holding no database connection while it waits on an
//! endpoint. A slow endpoint costs at most one of the loop's slots for
//! `request_timeout_ms` per attempt.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use domain::webhooks::{self, DueDelivery, Retry, RetryPolicy};
use hmac::{Hmac, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use settings::WebhookSettings;
use sha2::Sha256;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::metrics::WorkerMetrics;

/// How much longer than an attempt may take its claim lasts: time to record
/// the outcome. A worker that dies mid-attempt delays its delivery by this much.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// The header carrying the signature: `t=<unix seconds>,v1=<hex HMAC-SHA256
/// of "<t>.<body>" under the endpoint's secret>`. The timestamp is signed
/// with the body so a receiver can refuse an old request replayed.
const SIGNATURE_HEADER: &str = "Arcus-Signature";

/// Sends due webhook deliveries until shut down.
#[derive(Clone)]
pub(crate) struct Deliverer {
    pool: PgPool,
    client: reqwest::Client,
    metrics: Arc<WorkerMetrics>,
    poll_interval: Duration,
    concurrency: usize,
    timeout: Duration,
    policy: RetryPolicy,
}

impl Deliverer {
    pub(crate) fn new(
        pool: PgPool,
        settings: &WebhookSettings,
        metrics: Arc<WorkerMetrics>,
    ) -> anyhow::Result<Self> {
        let timeout = Duration::from_millis(settings.request_timeout_ms);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            // A redirect is not an answer: the endpoint registered is the
            // one that must accept the event.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Arcus-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the webhook HTTP client")?;
        Ok(Self {
            pool,
            client,
            metrics,
            poll_interval: Duration::from_millis(settings.poll_interval_ms),
            concurrency: usize::from(settings.concurrency.max(1)),
            timeout,
            policy: RetryPolicy {
                base: Duration::from_millis(settings.backoff_base_ms),
                max: Duration::from_millis(settings.backoff_max_ms),
                max_attempts: settings.max_attempts.max(1),
            },
        })
    }

    /// Polls and delivers until `shutdown` resolves, then lets the attempts
    /// under way finish (each is bounded by the request timeout), so their
    /// outcome is recorded rather than left to the lease.
    pub(crate) async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut in_flight = JoinSet::new();
        loop {
            // A finished attempt frees a slot: look again at once, so a
            // backlog drains at the pace of the endpoints, not of the poll.
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(self.poll_interval) => {}
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            }
            while in_flight.try_join_next().is_some() {}
            let free = self.concurrency.saturating_sub(in_flight.len());
            if free == 0 {
                continue;
            }
            let lease = self.timeout + LEASE_MARGIN;
            match webhooks::claim_due(&self.pool, free as i64, lease).await {
                Ok(due) => {
                    for delivery in due {
                        let this = self.clone();
                        in_flight.spawn(async move { this.deliver(delivery).await });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not claim webhook deliveries; will retry")
                }
            }
        }
        while in_flight.join_next().await.is_some() {}
    }

    /// One attempt of one delivery, and its outcome recorded.
    async fn deliver(&self, delivery: DueDelivery) {
        let span = tracing::info_span!(
            "webhook",
            delivery_id = %delivery.id,
            endpoint_id = %delivery.endpoint_id,
            event_type = %delivery.event_type,
            attempt = delivery.attempts,
        );
        self.attempt(delivery).instrument(span).await;
    }

    async fn attempt(&self, delivery: DueDelivery) {
        let body = serde_json::to_vec(&delivery.payload).expect("a JSON value serializes");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is past 1970")
            .as_secs();
        let mut request = self
            .client
            .post(&delivery.url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(
                SIGNATURE_HEADER,
                signature_header(&delivery.secret, now, &body),
            )
            .header("Arcus-Event-Id", delivery.id.to_string());
        // Event types are the service's own ASCII names.
        if let Ok(event_type) = HeaderValue::from_str(&delivery.event_type) {
            request = request.header("Arcus-Event-Type", event_type);
        }
        let recorded = match request.body(body).send().await {
            Ok(response) if response.status().is_success() => {
                webhooks::mark_delivered(&self.pool, &delivery, response.status().as_u16())
                    .await
                    .map(|current| {
                        if current {
                            tracing::info!(status = %response.status(), "webhook delivered");
                            "delivered"
                        } else {
                            "superseded"
                        }
                    })
            }
            Ok(response) => {
                let status = response.status();
                let error = format!("the endpoint answered {status}");
                self.failed(&delivery, Some(status.as_u16()), &error).await
            }
            Err(e) => {
                let error = describe(e, self.timeout);
                self.failed(&delivery, None, &error).await
            }
        };
        match recorded {
            Ok(outcome) => self
                .metrics
                .webhook_deliveries
                .with_label_values(&[outcome])
                .inc(),
            // The claim runs out and the delivery is attempted again.
            Err(e) => tracing::warn!(error = %e, "could not record a webhook attempt"),
        }
    }

    async fn failed(
        &self,
        delivery: &DueDelivery,
        status: Option<u16>,
        error: &str,
    ) -> Result<&'static str, sqlx::Error> {
        Ok(
            match webhooks::mark_failed(&self.pool, delivery, status, error, &self.policy).await? {
                Retry::After(wait) => {
                    tracing::warn!(error, retry_in = ?wait, "webhook attempt failed; will retry");
                    "retried"
                }
                Retry::GaveUp => {
                    tracing::error!(error, "webhook attempt failed; out of attempts, given up");
                    "failed"
                }
                Retry::Superseded => "superseded",
            },
        )
    }
}

/// `t=<t>,v1=<hex HMAC-SHA256 of "<t>.<body>">` under `secret` (the whole
/// `whsec_...` string is the key).
fn signature_header(secret: &str, t: u64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Why an attempt got no answer, for the delivery's `last_error`.
fn describe(error: reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!(
            "the endpoint did not answer within {} ms",
            timeout.as_millis()
        );
    }
    // reqwest's own message is generic ("error sending request"); the cause
    // (refused, unresolvable, a TLS failure) is further down the chain.
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_an_hmac_of_the_timestamp_and_the_body() {
        // Computed independently: Python's hmac.new(b"whsec_test",
        // b'1700000000.{"id":"evt"}', hashlib.sha256).hexdigest().
        assert_eq!(
            signature_header("whsec_test", 1_700_000_000, br#"{"id":"evt"}"#),
            "t=1700000000,v1=a94cea056df1fbb92eadafcf2c5cd541dbe0c6ef736e4748202dd53f86694a3e"
        );
        let mac = |t| {
            let header = signature_header("whsec_test", t, br#"{"id":"evt"}"#);
            header.split_once(",v1=").expect("a v1 part").1.to_owned()
        };
        assert_ne!(
            mac(1_700_000_001),
            mac(1_700_000_000),
            "the timestamp is signed"
        );
    }
}
