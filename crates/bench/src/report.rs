//! The results: measured runs, status-read latencies and peak memory, the
//! targets judged against them, printed as tables and written as JSON.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::e2e::Loaded;
use crate::reads::Reads;
use crate::records::Resource;

/// Below this many records per resource a run is too short for its rates to
/// mean much: the targets are reported but not judged (`--tiny` proves the
/// bench works, nothing more).
pub const JUDGE_FROM: usize = 10_000;
/// The size the load-time target is stated for.
const TARGET_SIZE: usize = 100_000;
/// The size from which the growth of a pass's cost is judged: below it a
/// tenth of the jobs is too few to rate.
const GROWTH_SIZE: usize = 1_000_000;
/// The status-read rate the latency target is stated for.
const TARGET_READ_RATE: f64 = 200.0;

#[derive(Debug, Serialize)]
pub struct Report {
    pub size: usize,
    pub workers: Vec<usize>,
    pub jobs_in_flight: usize,
    /// The service's settings in effect for the run.
    pub settings: ServiceSettings,
    pub runs: Vec<Run>,
    pub status_reads: Option<StatusReads>,
    pub peak_rss_mb: PeakRss,
    pub targets: Vec<Target>,
}

#[derive(Debug, Serialize)]
pub struct ServiceSettings {
    pub worker_concurrency: u16,
    pub worker_chunk_size: usize,
    pub database_max_connections: u32,
}

/// One measured load of `records` records.
#[derive(Debug, Serialize)]
pub struct Run {
    pub resource: Resource,
    /// `None` for the ceiling.
    pub workers: Option<usize>,
    /// Loaded while the status readers ran.
    pub under_reads: bool,
    /// Rows of the resource (of other entities) in the database before the
    /// run began.
    pub rows_before: u64,
    pub records: usize,
    pub secs: f64,
    pub records_per_sec: f64,
    pub us_per_record: f64,
    /// The rates of the first and of the last tenth of an end-to-end run's
    /// jobs.
    pub first_tenth_per_sec: Option<f64>,
    pub last_tenth_per_sec: Option<f64>,
    /// This run's rate over the ceiling's, for end-to-end runs.
    pub of_ceiling: Option<f64>,
    /// CPU time per record: of the API and the workers (end-to-end runs
    /// only), and of Postgres. Less at the mercy of a shared machine than
    /// the rates.
    pub service_cpu_us_per_record: Option<f64>,
    pub postgres_cpu_us_per_record: Option<f64>,
    /// The ceiling's CPU per record over this run's (service and Postgres).
    pub of_ceiling_cpu: Option<f64>,
}

/// CPU seconds spent during a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSpent {
    /// The API and the workers; none for the ceiling.
    pub service: Option<f64>,
    pub postgres: f64,
}

impl CpuSpent {
    /// What was spent since `before`.
    pub fn since(self, before: CpuSpent) -> CpuSpent {
        CpuSpent {
            service: self.service.zip(before.service).map(|(a, b)| a - b),
            postgres: self.postgres - before.postgres,
        }
    }
}

impl Run {
    pub fn ceiling(resource: Resource, records: usize, elapsed: Duration, cpu: CpuSpent) -> Self {
        Self::new(resource, None, false, 0, records, elapsed, cpu)
    }

    pub fn end_to_end(
        resource: Resource,
        workers: usize,
        under_reads: bool,
        rows_before: u64,
        records: usize,
        loaded: Loaded,
        cpu: CpuSpent,
    ) -> Self {
        Self {
            first_tenth_per_sec: Some(loaded.first_tenth_per_sec),
            last_tenth_per_sec: Some(loaded.last_tenth_per_sec),
            ..Self::new(
                resource,
                Some(workers),
                under_reads,
                rows_before,
                records,
                loaded.took,
                cpu,
            )
        }
    }

    fn new(
        resource: Resource,
        workers: Option<usize>,
        under_reads: bool,
        rows_before: u64,
        records: usize,
        elapsed: Duration,
        cpu: CpuSpent,
    ) -> Self {
        let secs = elapsed.as_secs_f64();
        let per_record = |s: f64| s * 1e6 / records as f64;
        Self {
            resource,
            workers,
            under_reads,
            rows_before,
            records,
            secs,
            records_per_sec: records as f64 / secs,
            us_per_record: per_record(secs),
            first_tenth_per_sec: None,
            last_tenth_per_sec: None,
            of_ceiling: None,
            service_cpu_us_per_record: cpu.service.map(per_record),
            postgres_cpu_us_per_record: Some(per_record(cpu.postgres)),
            of_ceiling_cpu: None,
        }
    }

    /// CPU per record, all processes of the run together.
    fn cpu_us_per_record(&self) -> Option<f64> {
        Some(self.service_cpu_us_per_record.unwrap_or(0.0) + self.postgres_cpu_us_per_record?)
    }

    /// The last tenth's rate over the first tenth's.
    pub fn growth(&self) -> Option<f64> {
        Some(self.last_tenth_per_sec? / self.first_tenth_per_sec?)
    }

    pub fn label(&self) -> String {
        match self.workers {
            None => "ceiling (COPY + INSERT ... SELECT), fresh database".to_owned(),
            Some(w) => format!(
                "end to end, {w} worker{}{}",
                if w == 1 { "" } else { "s" },
                if self.under_reads {
                    ", under status reads"
                } else {
                    ""
                }
            ),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct StatusReads {
    pub requested_rate: f64,
    pub sent: usize,
    pub failed: usize,
    pub achieved_rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl StatusReads {
    pub fn new(requested_rate: f64, mut reads: Reads) -> Self {
        reads.latencies.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        Self {
            requested_rate,
            sent: reads.sent,
            failed: reads.failed,
            achieved_rate: if reads.secs > 0.0 {
                reads.sent as f64 / reads.secs
            } else {
                0.0
            },
            p50_ms: ms(percentile(&reads.latencies, 50.0)),
            p99_ms: ms(percentile(&reads.latencies, 99.0)),
            max_ms: ms(reads.latencies.last().copied().unwrap_or_default()),
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct PeakRss {
    pub api: f64,
    /// Each worker process, by name.
    pub workers: BTreeMap<String, f64>,
}

impl PeakRss {
    fn worker_max(&self) -> Option<f64> {
        self.workers.values().copied().reduce(f64::max)
    }
}

#[derive(Debug, Serialize)]
pub struct Target {
    pub name: &'static str,
    pub measured: Option<f64>,
    pub unit: &'static str,
    pub goal: &'static str,
    /// `None` when not judged (see `note`).
    pub met: Option<bool>,
    pub note: Option<String>,
}

/// The value at percentile `p` (0-100) of sorted samples, by nearest rank;
/// zero without samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Report {
    /// Sets each end-to-end run's share of its ceiling and judges the
    /// targets.
    pub fn judge(&mut self) {
        for resource in [Resource::Products, Resource::Orders] {
            let ceiling = self.ceiling(resource);
            let ceiling_cpu = ceiling.and_then(Run::cpu_us_per_record);
            let ceiling_rate = ceiling.map(|c| c.records_per_sec);
            for run in self.runs.iter_mut() {
                if run.resource == resource && run.workers.is_some() {
                    run.of_ceiling = ceiling_rate.map(|c| run.records_per_sec / c);
                    run.of_ceiling_cpu =
                        ceiling_cpu.zip(run.cpu_us_per_record()).map(|(c, r)| c / r);
                }
            }
        }
        let judged = self.size >= JUDGE_FROM;
        let small = || {
            Some(format!(
                "not judged below {} records",
                thousands(JUDGE_FROM)
            ))
        };
        let share = |resource| {
            self.best(resource)
                .and_then(|r| r.of_ceiling)
                .map(|s| s * 100.0)
        };
        let ratio_target = |name, resource, goal, minimum| {
            let measured = share(resource);
            Target {
                name,
                measured,
                unit: "%",
                goal,
                met: measured.filter(|_| judged).map(|m| m >= minimum),
                note: if judged {
                    Some("the best end-to-end run".to_owned())
                } else {
                    small()
                },
            }
        };
        let mut targets = vec![
            ratio_target(
                "end-to-end products / ceiling",
                Resource::Products,
                ">= 50",
                50.0,
            ),
            ratio_target(
                "end-to-end orders / ceiling",
                Resource::Orders,
                ">= 30",
                30.0,
            ),
        ];

        let load_time = self
            .best(Resource::Products)
            .map(|r| TARGET_SIZE as f64 / r.records_per_sec);
        targets.push(Target {
            name: "100k products end to end",
            measured: load_time,
            unit: "s",
            goal: "< 10",
            met: load_time
                .filter(|_| self.size >= TARGET_SIZE)
                .map(|s| s < 10.0),
            note: Some(if self.size < TARGET_SIZE {
                format!("not judged below {} records", thousands(TARGET_SIZE))
            } else if self.size == TARGET_SIZE {
                "the best end-to-end run".to_owned()
            } else {
                "at the best end-to-end run's rate".to_owned()
            }),
        });

        // The pass a new customer meets: the first into a fresh database.
        let growth = self.fresh(Resource::Products).and_then(Run::growth);
        targets.push(Target {
            name: "products: last tenth's records/s / first tenth's",
            measured: growth.map(|g| g * 100.0),
            unit: "%",
            goal: ">= 80",
            met: growth
                .filter(|_| self.size >= GROWTH_SIZE)
                .map(|g| g >= 0.8),
            note: Some(if self.size < GROWTH_SIZE {
                format!("not judged below {} records", thousands(GROWTH_SIZE))
            } else {
                "the first run, on the fresh database".to_owned()
            }),
        });

        let p99 = self.status_reads.as_ref().map(|r| r.p99_ms);
        let at_rate = self
            .status_reads
            .as_ref()
            .is_some_and(|r| r.requested_rate >= TARGET_READ_RATE);
        targets.push(Target {
            name: "GET job p99 at 200 requests/s",
            measured: p99,
            unit: "ms",
            goal: "< 10",
            met: p99.filter(|_| judged && at_rate).map(|p| p < 10.0),
            note: if !judged {
                small()
            } else if !at_rate {
                Some("not judged: status reads below 200/s".to_owned())
            } else {
                None
            },
        });

        let worker_rss = self.peak_rss_mb.worker_max();
        targets.push(Target {
            name: "worker peak RSS",
            measured: worker_rss,
            unit: "MB",
            goal: "< 200",
            met: worker_rss.filter(|_| judged).map(|mb| mb < 200.0),
            note: if judged {
                Some("the largest of every worker process".to_owned())
            } else {
                small()
            },
        });
        self.targets = targets;
    }

    fn ceiling(&self, resource: Resource) -> Option<&Run> {
        self.runs
            .iter()
            .find(|r| r.resource == resource && r.workers.is_none())
    }

    /// The first end-to-end run of a resource, into a database holding none
    /// of its rows.
    fn fresh(&self, resource: Resource) -> Option<&Run> {
        self.runs
            .iter()
            .find(|r| r.resource == resource && r.workers.is_some() && r.rows_before == 0)
    }

    /// The fastest end-to-end run of a resource without the status readers.
    fn best(&self, resource: Resource) -> Option<&Run> {
        self.runs
            .iter()
            .filter(|r| r.resource == resource && r.workers.is_some() && !r.under_reads)
            .max_by(|a, b| a.records_per_sec.total_cmp(&b.records_per_sec))
    }

    /// Whether a judged target was missed.
    pub fn missed(&self) -> bool {
        self.targets.iter().any(|t| t.met == Some(false))
    }

    pub fn print(&self) {
        println!();
        println!(
            "arcus-bench: {} records per resource; workers {:?}; {} jobs in flight; \
             worker concurrency {}, chunk {}, {} database connections per process",
            thousands(self.size),
            self.workers,
            self.jobs_in_flight,
            self.settings.worker_concurrency,
            self.settings.worker_chunk_size,
            self.settings.database_max_connections,
        );
        println!();
        let rows: Vec<Vec<String>> = self
            .runs
            .iter()
            .map(|r| {
                let rate =
                    |r: Option<f64>| r.map_or("-".to_owned(), |r| thousands(r.round() as usize));
                vec![
                    r.resource.name().to_owned(),
                    r.label(),
                    thousands(r.rows_before as usize),
                    thousands(r.records),
                    format!("{:.2}", r.secs),
                    thousands(r.records_per_sec.round() as usize),
                    rate(r.first_tenth_per_sec),
                    rate(r.last_tenth_per_sec),
                    format!("{:.1}", r.us_per_record),
                    r.of_ceiling
                        .map_or("-".to_owned(), |s| format!("{:.1} %", s * 100.0)),
                    r.service_cpu_us_per_record
                        .map_or("-".to_owned(), |c| format!("{c:.1}")),
                    r.postgres_cpu_us_per_record
                        .map_or("-".to_owned(), |c| format!("{c:.1}")),
                    r.of_ceiling_cpu
                        .map_or("-".to_owned(), |s| format!("{:.1} %", s * 100.0)),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &[
                    "resource",
                    "run",
                    "rows before",
                    "records",
                    "seconds",
                    "records/s",
                    "first tenth/s",
                    "last tenth/s",
                    "µs/record",
                    "of ceiling",
                    "CPU µs/record: service",
                    "postgres",
                    "of ceiling's CPU"
                ],
                &[Align::Left, Align::Left],
                &rows
            )
        );
        println!();
        match &self.status_reads {
            Some(r) => println!(
                "status reads (GET job, during the last import): {} requested/s, {} sent \
                 ({:.0}/s), {} failed; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                r.requested_rate,
                thousands(r.sent),
                r.achieved_rate,
                r.failed,
                r.p50_ms,
                r.p99_ms,
                r.max_ms
            ),
            None => println!("status reads: not run (--rate 0)"),
        }
        let workers: Vec<String> = self
            .peak_rss_mb
            .workers
            .iter()
            .map(|(name, mb)| format!("{name} {mb:.1}"))
            .collect();
        println!(
            "peak RSS (MB): api {:.1}; {}",
            self.peak_rss_mb.api,
            workers.join(", ")
        );
        println!();
        let rows: Vec<Vec<String>> = self
            .targets
            .iter()
            .map(|t| {
                vec![
                    t.name.to_owned(),
                    t.measured
                        .map_or("-".to_owned(), |m| format!("{m:.1} {}", t.unit)),
                    format!("{} {}", t.goal, t.unit),
                    match t.met {
                        Some(true) => "met".to_owned(),
                        Some(false) => "MISSED".to_owned(),
                        None => "-".to_owned(),
                    },
                    t.note.clone().unwrap_or_default(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &["target", "measured", "goal", "verdict", ""],
                &[
                    Align::Left,
                    Align::Right,
                    Align::Right,
                    Align::Right,
                    Align::Left
                ],
                &rows
            )
        );
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// A plain-text table, each column aligned as `align` says (right past its
/// end), two spaces between columns, no trailing blanks.
fn table(header: &[&str], align: &[Align], rows: &[Vec<String>]) -> String {
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let all: Vec<&Vec<String>> = std::iter::once(&header).chain(rows).collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            all.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in all {
        let cells: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(c, &w)| {
                let cell = row.get(c).map_or("", String::as_str);
                if align.get(c) == Some(&Align::Left) {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `1234567` as `1,234,567`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&samples, 50.0), ms(50));
        assert_eq!(percentile(&samples, 99.0), ms(99));
        assert_eq!(percentile(&samples, 100.0), ms(100));
        assert_eq!(percentile(&[ms(7)], 99.0), ms(7));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn tables_align_text_left_and_numbers_right() {
        let rows = vec![
            vec!["products".to_owned(), "1,000".to_owned()],
            vec!["orders".to_owned(), "20".to_owned()],
        ];
        assert_eq!(
            table(&["resource", "records/s"], &[Align::Left], &rows),
            "resource  records/s\nproducts      1,000\norders           20\n"
        );
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn targets_are_not_judged_on_a_tiny_run() {
        let mut report = Report {
            size: 2_000,
            workers: vec![1],
            jobs_in_flight: 4,
            settings: ServiceSettings {
                worker_concurrency: 2,
                worker_chunk_size: 100,
                database_max_connections: 10,
            },
            runs: vec![
                Run::ceiling(
                    Resource::Products,
                    2_000,
                    ms(10),
                    CpuSpent {
                        service: None,
                        postgres: 0.02,
                    },
                ),
                Run::end_to_end(
                    Resource::Products,
                    1,
                    false,
                    0,
                    2_000,
                    Loaded {
                        took: ms(1_000),
                        first_tenth_per_sec: 2_500.0,
                        last_tenth_per_sec: 1_500.0,
                    },
                    CpuSpent {
                        service: Some(0.06),
                        postgres: 0.14,
                    },
                ),
            ],
            status_reads: None,
            peak_rss_mb: PeakRss::default(),
            targets: Vec::new(),
        };
        report.judge();
        let share = report.runs[1]
            .of_ceiling
            .expect("an end-to-end run has a share");
        assert!((share - 0.01).abs() < 1e-9, "{share}");
        let cpu = report.runs[1]
            .of_ceiling_cpu
            .expect("and a share of the ceiling's CPU");
        assert!((cpu - 0.1).abs() < 1e-9, "{cpu}");
        assert!(report.targets.iter().all(|t| t.met.is_none()));
        assert!(!report.missed());

        report.size = JUDGE_FROM;
        report.judge();
        assert_eq!(report.targets[0].met, Some(false));
        assert!(report.missed());

        let growth = |report: &Report| {
            report
                .targets
                .iter()
                .find(|t| t.name.contains("tenth"))
                .expect("the growth target")
                .met
        };
        assert_eq!(growth(&report), None, "judged from a million records");
        report.size = GROWTH_SIZE;
        report.judge();
        assert_eq!(growth(&report), Some(false), "1,500 is 60 % of 2,500");
    }
}
