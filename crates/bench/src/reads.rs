//! Status reads: `GET .../migration/jobs/{id}` of the jobs of a running import
//! at a steady rate, as many clients polling their jobs would.
//!
//! The load is open-loop: a request leaves at every tick whether or not the
//! earlier ones have been answered, and its latency counts from the tick it
//! was scheduled for, so a slow server (or a bench that fell behind) shows in
//! the latencies instead of quietly lowering the rate.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::api::Api;
use crate::e2e::Accepted;

/// What the readers saw.
#[derive(Debug, Default)]
pub struct Reads {
    pub sent: usize,
    pub failed: usize,
    /// Of the answered requests.
    pub latencies: Vec<Duration>,
    /// Seconds the reads ran.
    pub secs: f64,
}

/// Reads jobs of `accepted` round-robin, `rate` per second, from when the
/// first job is accepted until `stop` turns true.
pub async fn run(
    api: Api,
    accepted: Accepted,
    rate: f64,
    mut stop: watch::Receiver<bool>,
) -> Reads {
    let api = Arc::new(api);
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    // Ticks missed while the bench was busy are made up at once, so the rate
    // asked for is the rate sent.
    interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut requests = JoinSet::new();
    let mut reads = Reads::default();
    let mut first = None;
    loop {
        let scheduled = tokio::select! {
            scheduled = interval.tick() => scheduled,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let id = {
            let ids = accepted.lock().unwrap_or_else(|p| p.into_inner());
            if ids.is_empty() {
                continue;
            }
            ids[reads.sent % ids.len()]
        };
        first.get_or_insert(scheduled);
        reads.sent += 1;
        let api = api.clone();
        requests.spawn(async move { api.read_job(id).await.then(|| scheduled.elapsed()) });
        // Collect what has finished so the set stays small.
        while let Some(done) = requests.try_join_next() {
            reads.record(done.ok().flatten());
        }
    }
    reads.secs = first.map_or(0.0, |first| first.elapsed().as_secs_f64());
    while let Some(done) = requests.join_next().await {
        reads.record(done.ok().flatten());
    }
    reads
}

impl Reads {
    fn record(&mut self, latency: Option<Duration>) {
        match latency {
            Some(latency) => self.latencies.push(latency),
            None => self.failed += 1,
        }
    }
}
