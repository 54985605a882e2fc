//! `arcusctl import`: loads a CSV, NDJSON or JSON file through the API in
//! jobs of at most 1,000 records, shows their progress, and writes every
//! failed record to an errors file beside the input, ready to fix and import
//! again.
//!
//! Each job is submitted with an `Idempotency-Key` computed from the entity,
//! the resource, the job's place in the file and its exact body, so running
//! the same command again after an interruption finds the jobs it already
//! made (the API replays them) instead of making new ones.

mod client;
mod report;
pub mod source;
mod watch;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tabular::Mapping;
use uuid::Uuid;

use client::{Client, JobErrors};
pub use source::Format;
use source::Unit;
use watch::Watcher;

/// Records one job may carry.
pub const MAX_BATCH: usize = 1000;

#[derive(Debug, Clone)]
pub struct Options {
    pub api_url: String,
    pub key: String,
    pub entity: Uuid,
    pub resource: domain::Resource,
    pub source: String,
    pub file: PathBuf,
    pub format: Option<Format>,
    pub mapping: Option<PathBuf>,
    pub conflict_mode: domain::ConflictMode,
    pub dry_run: bool,
    /// A field the service does not read fails its record.
    pub strict: bool,
    /// Records per job, 1 to 1,000.
    pub batch_size: usize,
    /// Jobs in flight at once.
    pub parallel: usize,
    /// Mixed into every Idempotency-Key: a new label imports the same file
    /// again as new jobs instead of finding the earlier ones.
    pub run_label: String,
    /// Draw a progress bar on the terminal.
    pub progress: bool,
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// The jobs, in file order (none for a dry run).
    pub jobs: Vec<Uuid>,
    /// Jobs an earlier run of the same command had already made.
    pub resumed: usize,
    /// For a dry run: the records that would be created, updated, skipped
    /// or replaced.
    pub dry_run_outcomes: Option<[u64; 4]>,
    /// The fields the service did not keep, with how many records carried
    /// each, by field.
    pub ignored: BTreeMap<String, u64>,
    pub errors_file: Option<PathBuf>,
}

/// One job's worth of the file and what became of it.
struct Chunk {
    units: Vec<Unit>,
    job: Option<Uuid>,
    resumed: bool,
    succeeded: u64,
    /// The failed units' places in `units`, with their errors.
    failures: Vec<(usize, client::RecordError)>,
    outcomes: [u64; 4],
    ignored: client::Ignored,
}

pub async fn run(options: &Options) -> anyhow::Result<Summary> {
    anyhow::ensure!(
        (1..=MAX_BATCH).contains(&options.batch_size),
        "--batch-size must be from 1 to {MAX_BATCH}"
    );
    anyhow::ensure!(options.parallel >= 1, "--parallel must be at least 1");
    let format = match options.format {
        Some(format) => format,
        None => Format::of(&options.file)?,
    };
    let mapping = match &options.mapping {
        None => Mapping::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the mapping {}", path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("the mapping {} is not valid", path.display()))?
        }
    };

    // A first pass counts the records, for the progress bar and its ETA, and
    // refuses a malformed file before anything is sent.
    let total = {
        let (file, mapping) = (options.file.clone(), mapping.clone());
        tokio::task::spawn_blocking(move || {
            let mut n = 0_u64;
            source::read(&file, format, &mapping, |_| {
                n += 1;
                ControlFlow::Continue(())
            })
            .map(|()| n)
        })
        .await??
    };
    anyhow::ensure!(total > 0, "{} holds no records", options.file.display());

    let client = Arc::new(Client::new(options)?);
    let watcher = Arc::new(Watcher::default());
    // Stopped when the import ends, however it ends.
    let _watching = AbortOnDrop(tokio::spawn(watcher.clone().run(client.clone())));
    let progress = Progress::new(total, options.progress);
    let mut report = report::ErrorsFile::create(&options.file, format)?;

    // The file is read on a blocking thread, one job's worth at a time; the
    // channel's bound keeps at most a few chunks in memory.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Unit>>(options.parallel);
    let reader = {
        let (file, batch) = (options.file.clone(), options.batch_size);
        tokio::task::spawn_blocking(move || {
            let mut chunk = Vec::with_capacity(batch);
            source::read(&file, format, &mapping, |unit| {
                chunk.push(unit);
                if chunk.len() == batch {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(batch));
                    if tx.blocking_send(full).is_err() {
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            })?;
            if !chunk.is_empty() {
                let _ = tx.blocking_send(chunk);
            }
            anyhow::Ok(())
        })
    };

    let chunks = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    // `buffered` runs `parallel` jobs at once and yields them in file order,
    // so the errors file follows the input.
    let mut results = chunks
        .enumerate()
        .map(|(number, units)| process(&client, &watcher, options, number, units, &progress))
        .buffered(options.parallel);
    let mut summary = Summary {
        dry_run_outcomes: options.dry_run.then_some([0; 4]),
        ..Summary::default()
    };
    while let Some(chunk) = results.next().await {
        let chunk = chunk?;
        summary.records += chunk.units.len() as u64;
        summary.succeeded += chunk.succeeded;
        summary.failed += chunk.failures.len() as u64;
        summary.jobs.extend(chunk.job);
        summary.resumed += usize::from(chunk.resumed);
        for (field, records) in &chunk.ignored {
            *summary.ignored.entry(field.clone()).or_default() += records;
        }
        if let Some(outcomes) = summary.dry_run_outcomes.as_mut() {
            for (total, n) in outcomes.iter_mut().zip(chunk.outcomes) {
                *total += n;
            }
        }
        report.write(&chunk.units, &chunk.failures)?;
    }
    drop(results);
    reader.await??;
    progress.bar.finish_and_clear();
    summary.errors_file = report.finish()?;
    Ok(summary)
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The Idempotency-Key of one job: the same command on the same file gives
/// the same key, and any change to the job's records gives another.
fn idempotency_key(options: &Options, number: usize, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    for part in [
        options.entity.to_string().as_bytes(),
        options.resource.as_str().as_bytes(),
        options.run_label.as_bytes(),
        number.to_string().as_bytes(),
    ] {
        hasher.update(part);
        hasher.update(b"\n");
    }
    // A strict job is another job; the keys of the others stay as they were.
    if options.strict {
        hasher.update(b"strict\n");
    }
    hasher.update(body);
    format!("arcusctl-{}", &hex::encode(hasher.finalize())[..48])
}

/// Submits one chunk and follows its job to the end.
async fn process(
    client: &Client,
    watcher: &Watcher,
    options: &Options,
    number: usize,
    units: Vec<Unit>,
    progress: &Progress,
) -> anyhow::Result<Chunk> {
    // Rows that make no record fail here; the others go, in order.
    let mut sent = Vec::new();
    let mut failures = Vec::new();
    for (i, unit) in units.iter().enumerate() {
        match &unit.record {
            Ok(_) => sent.push(i),
            Err(reason) => failures.push((i, client::RecordError::local(reason))),
        }
    }
    let mut chunk = Chunk {
        job: None,
        resumed: false,
        succeeded: 0,
        failures,
        outcomes: [0; 4],
        ignored: Vec::new(),
        units,
    };
    progress.failed(chunk.failures.len() as u64);
    progress.processed(chunk.failures.len() as u64);
    if sent.is_empty() {
        return Ok(chunk);
    }
    let records: Vec<&Value> = sent
        .iter()
        .map(|&i| {
            chunk.units[i]
                .record
                .as_ref()
                .expect("only records are sent")
        })
        .collect();
    let body = serde_json::to_vec(&json!({
        "records": records,
        "external_source": options.source,
        "conflict_mode": options.conflict_mode,
    }))?;

    let errors = if options.dry_run {
        let result = client.dry_run(&body).await?;
        progress.processed(sent.len() as u64);
        chunk.succeeded = result.succeeded;
        chunk.outcomes = result.outcomes;
        chunk.ignored = result.ignored;
        result.errors
    } else {
        let key = idempotency_key(options, number, &body);
        let submitted = client.submit(&body, &key).await?;
        let job = submitted.job;
        chunk.job = Some(job);
        chunk.resumed = submitted.resumed;
        chunk.ignored = submitted.ignored;
        let mut looks = watcher.follow(job, submitted.created_at);
        let (mut shown, mut shown_failed) = (0, 0);
        let done = loop {
            if looks.changed().await.is_err() {
                bail!("stopped following job {job}");
            }
            let look = looks.borrow_and_update().clone();
            if let Some(failure) = look.failure {
                bail!("following job {job}: {failure}");
            }
            progress.processed(look.processed.saturating_sub(shown));
            progress.failed(look.failed.saturating_sub(shown_failed));
            (shown, shown_failed) = (look.processed.max(shown), look.failed.max(shown_failed));
            if look.finished {
                break look;
            }
        };
        watcher.forget(job);
        chunk.succeeded = done.succeeded;
        match done.errors {
            Some(errors) => errors,
            None if done.failed > 0 => client.errors(job).await?,
            None => JobErrors::default(),
        }
    };
    if options.dry_run {
        progress.failed(errors.len() as u64);
    }
    for error in errors {
        let at = sent.get(error.index).copied().with_context(|| {
            format!(
                "the API reported an error for record {} of a job of {}",
                error.index,
                sent.len()
            )
        })?;
        chunk.failures.push((at, error));
    }
    chunk.failures.sort_by_key(|(at, _)| *at);
    Ok(chunk)
}

/// The progress bar and the failures it shows.
struct Progress {
    bar: ProgressBar,
    failed: AtomicU64,
}

impl Progress {
    fn new(total: u64, visible: bool) -> Self {
        let bar = ProgressBar::with_draw_target(
            Some(total),
            if visible {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{wide_bar}] {pos}/{len} records  {rate}  ETA {eta}  {msg}",
            )
            .expect("the template is valid")
            .with_key(
                "rate",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0} records/s", state.per_sec());
                },
            )
            .progress_chars("=> "),
        );
        bar.set_message("0 failed");
        bar.enable_steady_tick(Duration::from_millis(250));
        Self {
            bar,
            failed: AtomicU64::new(0),
        }
    }

    fn processed(&self, more: u64) {
        self.bar.inc(more);
    }

    fn failed(&self, more: u64) {
        if more > 0 {
            let failed = self.failed.fetch_add(more, Ordering::Relaxed) + more;
            self.bar.set_message(format!("{failed} failed"));
        }
    }
}

/// Where the errors of `input` are written: beside it, `products.csv` giving
/// `products.errors.csv`, and JSON inputs `.errors.ndjson`.
pub fn errors_path(input: &Path, format: Format) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let extension = match format {
        Format::Csv => "csv",
        Format::Ndjson | Format::Json => "ndjson",
    };
    input.with_file_name(format!("{stem}.errors.{extension}"))
}
