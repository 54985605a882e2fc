//! The observer: a client that keeps reading every unfinished job, as a user
//! watching a migration would, and holds the service to what the API promises
//! at every look: `processed = succeeded + failed`, and counters that never go
//! down, whatever crashes and redeliveries happen behind them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::api::{Api, JobView, Status};
use crate::invariants::{Invariant, Violations};
use crate::registry::Registry;

/// Pause between two sweeps over the unfinished jobs.
const POLL_PAUSE: Duration = Duration::from_millis(300);

/// Polls until `stop` turns true.
pub async fn run(
    api: Arc<Api>,
    registry: Arc<Registry>,
    violations: Arc<Violations>,
    mut stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        for id in registry.unfinished() {
            // While Postgres is down the API cannot answer: skip the look.
            let Some(now) = api.job(id).await else {
                continue;
            };
            let before = registry.observe(id, now);
            for problem in compare(before, now) {
                violations.push(Invariant::Progress, format!("job {id}: {problem}"));
            }
        }
        tokio::select! {
            _ = stop.changed() => {}
            () = tokio::time::sleep(POLL_PAUSE) => {}
        }
    }
}

/// What is wrong with a look at a job, given the look before it.
pub fn compare(before: Option<JobView>, now: JobView) -> Vec<String> {
    let mut problems = Vec::new();
    if now.processed != now.succeeded + now.failed {
        problems.push(format!(
            "processed {} != succeeded {} + failed {} at a look",
            now.processed, now.succeeded, now.failed
        ));
    }
    if now.processed > now.total {
        problems.push(format!(
            "processed {} of only {} records",
            now.processed, now.total
        ));
    }
    let Some(before) = before else {
        return problems;
    };
    for (counter, was, is) in [
        ("processed", before.processed, now.processed),
        ("succeeded", before.succeeded, now.succeeded),
        ("failed", before.failed, now.failed),
    ] {
        if is < was {
            problems.push(format!("{counter} went down from {was} to {is}"));
        }
    }
    if stage(now.status) < stage(before.status) {
        problems.push(format!(
            "status went back from {} to {}",
            before.status.as_str(),
            now.status.as_str()
        ));
    }
    if before.status.is_terminal() && before != now {
        problems.push(format!(
            "changed after its final status: {before:?} then {now:?}"
        ));
    }
    problems
}

/// Statuses only move forward: pending, running, then a final one.
fn stage(status: Status) -> u8 {
    match status {
        Status::Pending => 0,
        Status::Running => 1,
        Status::Completed | Status::Partial | Status::Failed => 2,
    }
}
