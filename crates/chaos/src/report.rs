//! The run's summary: printed as a table, optionally written as JSON.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::invariants::{Invariant, RecordCounts, StatusCounts, Violation};

/// Violations listed in the table; the JSON has them all.
const LISTED: usize = 20;

#[derive(Debug, Serialize)]
pub struct Summary {
    pub seed: u64,
    pub duration_secs: u64,
    pub workers: usize,
    pub amqp_prefix: String,
    /// Fault label to times injected.
    pub faults: BTreeMap<&'static str, u32>,
    pub faults_not_injected: Vec<String>,
    pub stalls_taken_over: u32,
    pub duplicate_messages: u32,
    pub poison_messages: usize,
    /// Process exits (each followed by a restart), by process kind and cause.
    pub restarts: u32,
    pub restarts_by_cause: BTreeMap<String, u32>,
    pub submissions: u64,
    pub submissions_retried: u64,
    pub retry_attempts: u64,
    pub idempotent_replays: u64,
    pub submissions_abandoned: u64,
    pub jobs_accepted: usize,
    pub jobs_by_status: StatusCounts,
    pub records: RecordCounts,
    pub quiescent: bool,
    pub heal_secs: f64,
    pub invariants: Vec<Verdict>,
    pub violations: Vec<Violation>,
}

#[derive(Debug, Serialize)]
pub struct Verdict {
    pub invariant: Invariant,
    pub description: &'static str,
    pub violations: usize,
}

impl Summary {
    pub fn verdicts(violations: &[Violation]) -> Vec<Verdict> {
        Invariant::ALL
            .iter()
            .map(|&invariant| Verdict {
                invariant,
                description: invariant.describe(),
                violations: violations
                    .iter()
                    .filter(|v| v.invariant == invariant)
                    .count(),
            })
            .collect()
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }

    /// The table. Its last line is `chaos: N passed, M failed`, counting
    /// invariants, so a log reader sees the verdict where a test runner's is.
    pub fn print(&self) {
        let row = |label: &str, value: String| println!("  {label:<38} {value}");
        println!();
        println!(
            "arcus-chaos: seed {}, {} s of load and faults, {} workers, prefix {}",
            self.seed, self.duration_secs, self.workers, self.amqp_prefix
        );
        println!("faults injected");
        for (label, n) in &self.faults {
            row(label, n.to_string());
        }
        for failed in &self.faults_not_injected {
            row("(not injected)", failed.clone());
        }
        row(
            "stalled jobs taken over meanwhile",
            self.stalls_taken_over.to_string(),
        );
        row(
            "messages published on the side",
            format!(
                "{} duplicate, {} poison",
                self.duplicate_messages, self.poison_messages
            ),
        );
        println!("processes");
        row("restarts after an exit", self.restarts.to_string());
        for (cause, n) in &self.restarts_by_cause {
            row(&format!("  {cause}"), n.to_string());
        }
        println!("load");
        row(
            "submissions",
            format!(
                "{} ({} idempotent replays)",
                self.submissions, self.idempotent_replays
            ),
        );
        row(
            "submissions retried",
            format!(
                "{} ({} attempts; {} abandoned)",
                self.submissions_retried, self.retry_attempts, self.submissions_abandoned
            ),
        );
        let by_status: Vec<String> = self
            .jobs_by_status
            .iter()
            .map(|(status, n)| format!("{status} {n}"))
            .collect();
        row(
            "jobs accepted",
            format!("{} ({})", self.jobs_accepted, by_status.join(", ")),
        );
        row(
            "records",
            format!(
                "{} total, {} succeeded, {} failed",
                self.records.total, self.records.succeeded, self.records.failed
            ),
        );
        let codes: Vec<String> = self
            .records
            .failed_by_code
            .iter()
            .map(|(code, n)| format!("{code} {n}"))
            .collect();
        row("failed records by code", codes.join(", "));
        row(
            "quiescent after heal",
            format!(
                "{} ({:.1} s)",
                if self.quiescent { "yes" } else { "NO" },
                self.heal_secs
            ),
        );
        println!("invariants");
        for verdict in &self.invariants {
            let mark = if verdict.violations == 0 {
                "ok  ".to_owned()
            } else {
                format!("FAIL ({})", verdict.violations)
            };
            println!("  {mark:<10} {}", verdict.description);
        }
        if !self.violations.is_empty() {
            println!("violations ({}):", self.violations.len());
            for v in self.violations.iter().take(LISTED) {
                println!("  - [{:?}] {}", v.invariant, v.detail);
            }
            if self.violations.len() > LISTED {
                println!("  ... and {} more", self.violations.len() - LISTED);
            }
        }
        let failed = self.invariants.iter().filter(|v| v.violations > 0).count();
        println!(
            "chaos: {} passed, {failed} failed",
            self.invariants.len() - failed
        );
    }
}
