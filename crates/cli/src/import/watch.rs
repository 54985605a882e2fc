//! Following the jobs of an import. Every look at a job is a request against
//! the key's rate limit (a test key has 60 a minute), so one listing of the
//! resource's recent jobs looks at every job in flight at once, and carries
//! the errors of those that ended: a job costs its submission and a share of
//! the looks, not a look of its own every second.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use super::client::{Client, JobErrors};

/// How often the jobs in flight are looked at while the key's rate limit
/// leaves room; less often when it does not (`Client::look_interval`).
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// A job as last seen.
#[derive(Debug, Clone, Default)]
pub struct Look {
    pub processed: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub finished: bool,
    /// Every error of a finished job, when the listing carried them all.
    pub errors: Option<JobErrors>,
    /// Why the jobs can no longer be followed (the API refused or vanished).
    pub failure: Option<String>,
}

struct Followed {
    created_at: DateTime<Utc>,
    looks: watch::Sender<Look>,
}

#[derive(Default)]
pub struct Watcher {
    state: Mutex<State>,
    wake: Notify,
}

#[derive(Default)]
struct State {
    followed: HashMap<Uuid, Followed>,
    /// Set once the jobs can no longer be followed: a job followed after
    /// that is told at once instead of waiting for looks that never come.
    failure: Option<String>,
}

impl Watcher {
    /// Starts following a job; its looks arrive on the receiver.
    pub fn follow(&self, id: Uuid, created_at: DateTime<Utc>) -> watch::Receiver<Look> {
        let (looks, receiver) = watch::channel(Look::default());
        let mut state = self.state();
        if let Some(failure) = &state.failure {
            looks.send_replace(Look {
                failure: Some(failure.clone()),
                ..Look::default()
            });
        }
        state.followed.insert(id, Followed { created_at, looks });
        self.wake.notify_one();
        receiver
    }

    pub fn forget(&self, id: Uuid) {
        self.state().followed.remove(&id);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("the watcher's lock is never poisoned")
    }

    /// Looks at the followed jobs until the import drops the task.
    pub async fn run(self: Arc<Self>, client: Arc<Client>) {
        loop {
            let snapshot: Vec<(Uuid, DateTime<Utc>)> = self
                .state()
                .followed
                .iter()
                .map(|(id, f)| (*id, f.created_at))
                .collect();
            let Some(oldest) = snapshot.iter().map(|(_, at)| *at).min() else {
                self.wake.notified().await;
                continue;
            };
            tokio::time::sleep(client.look_interval(LOOK_EVERY)).await;
            if let Err(e) = self.look(&client, &snapshot, oldest).await {
                let failure = format!("{e:#}");
                let mut state = self.state();
                for followed in state.followed.values() {
                    followed.looks.send_replace(Look {
                        failure: Some(failure.clone()),
                        ..Look::default()
                    });
                }
                state.failure = Some(failure);
                return;
            }
        }
    }

    async fn look(
        &self,
        client: &Client,
        snapshot: &[(Uuid, DateTime<Utc>)],
        oldest: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        // Timestamps are to the second and `created_after` is exclusive. The
        // listing is newest first, so a little room over the jobs followed
        // covers jobs someone else submits meanwhile; a job it still misses
        // (one of an earlier run, long ago) is looked at on its own.
        let since = oldest - chrono::Duration::seconds(1);
        let limit = (snapshot.len() + 10).min(100);
        let mut seen = HashSet::new();
        for job in client.jobs_since(since, limit).await? {
            if let Some(id) = job["id"].as_str().and_then(|id| Uuid::parse_str(id).ok())
                && snapshot.iter().any(|(followed, _)| *followed == id)
            {
                self.show(id, &job);
                seen.insert(id);
            }
        }
        for (id, _) in snapshot {
            if !seen.contains(id) {
                let job = client.job(*id).await?;
                self.show(*id, &job);
            }
        }
        Ok(())
    }

    fn show(&self, id: Uuid, job: &Value) {
        let count = |name: &str| job[name].as_u64().unwrap_or(0);
        let finished = matches!(
            job["status"].as_str(),
            Some("completed" | "partial" | "failed")
        );
        let failed = count("failed_records");
        // Only a finished job's errors are final; a running job's are not read.
        let errors = finished
            .then(|| serde_json::from_value::<JobErrors>(job["errors"].clone()).ok())
            .flatten()
            .filter(|errors| errors.len() as u64 == failed);
        if let Some(followed) = self.state().followed.get(&id) {
            followed.looks.send_replace(Look {
                processed: count("processed_records"),
                succeeded: count("succeeded_records"),
                failed,
                finished,
                errors,
                failure: None,
            });
        }
    }
}
