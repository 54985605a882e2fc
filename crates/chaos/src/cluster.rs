//! The system under test as processes: one `arcus-api` and the workers, run
//! from their binaries with their logs in files, and a supervisor that starts
//! again whatever exits, a second later, as Kubernetes restarts a pod. Faults
//! reach the processes through here.
//!
//! Every child is killed when the cluster is dropped, also when the harness
//! panics or is interrupted, and each worker is named by its `HOSTNAME`, which
//! the worker puts in the lease owner of the jobs it claims: that is how a
//! fault finds the worker holding a job.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::say;

/// How long the supervisor waits before starting an exited process again.
const RESTART_DELAY: Duration = Duration::from_secs(1);
/// How often the supervisor looks at its processes.
const SUPERVISE_EVERY: Duration = Duration::from_millis(200);

/// What to run as one process.
pub struct Spec {
    pub name: String,
    pub program: PathBuf,
    pub env: Vec<(String, String)>,
}

struct Slot {
    spec: Spec,
    log: PathBuf,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    child: Option<Child>,
    /// When the last process exited; the next starts `RESTART_DELAY` later.
    exited_at: Option<Instant>,
    /// Stopped with SIGSTOP by a fault, not yet continued.
    stopped: bool,
}

impl Slot {
    fn state(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spawn(&self, fresh_log: bool) -> anyhow::Result<Child> {
        let log = OpenOptions::new()
            .create(true)
            .write(true)
            .append(!fresh_log)
            .truncate(fresh_log)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let stderr: File = log.try_clone()?;
        Command::new(&self.spec.program)
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.spec.program.display()))
    }
}

/// Why processes exited, and how many times each slot was restarted.
#[derive(Debug, Default, Clone)]
pub struct Restarts {
    pub total: u32,
    pub by_cause: BTreeMap<String, u32>,
}

pub struct Cluster {
    slots: Vec<Arc<Slot>>,
    restarts: Arc<Mutex<Restarts>>,
    /// Set once shutting down: from then on nothing is started again.
    closed: Arc<AtomicBool>,
    supervisor: JoinHandle<()>,
}

impl Cluster {
    /// Starts every process and the supervisor. Logs go to
    /// `<log_dir>/<name>.log`, emptied first.
    pub fn start(specs: Vec<Spec>, log_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(log_dir)
            .with_context(|| format!("creating {}", log_dir.display()))?;
        let mut slots = Vec::new();
        for spec in specs {
            let slot = Slot {
                log: log_dir.join(format!("{}.log", spec.name)),
                spec,
                state: Mutex::new(SlotState::default()),
            };
            slot.state().child = Some(slot.spawn(true)?);
            slots.push(Arc::new(slot));
        }
        let restarts = Arc::new(Mutex::new(Restarts::default()));
        let closed = Arc::new(AtomicBool::new(false));
        let supervisor = tokio::spawn(supervise(slots.clone(), restarts.clone(), closed.clone()));
        Ok(Self {
            slots,
            restarts,
            closed,
            supervisor,
        })
    }

    fn slot(&self, name: &str) -> Option<&Arc<Slot>> {
        self.slots.iter().find(|s| s.spec.name == name)
    }

    /// The workers running now, with their pids.
    pub fn workers(&self) -> Vec<(String, u32)> {
        self.slots
            .iter()
            .filter(|s| s.spec.name.starts_with("worker"))
            .filter_map(|s| {
                let state = s.state();
                let pid = state.child.as_ref()?.id()?;
                Some((s.spec.name.clone(), pid))
            })
            .collect()
    }

    /// `kill -9`; the supervisor starts the process again.
    pub fn kill(&self, name: &str) -> anyhow::Result<()> {
        let slot = self.slot(name).context("no such process")?;
        let mut state = slot.state();
        let child = state.child.as_mut().context("not running")?;
        child.start_kill().context("sending SIGKILL")?;
        state.stopped = false;
        Ok(())
    }

    /// SIGSTOP: the process freezes with its connections, leases and locks,
    /// as under a long GC pause or a stalled VM.
    pub async fn stop(&self, name: &str) -> anyhow::Result<()> {
        let slot = self.slot(name).context("no such process")?;
        let pid = slot
            .state()
            .child
            .as_ref()
            .and_then(Child::id)
            .context("not running")?;
        signal(pid, "STOP").await?;
        slot.state().stopped = true;
        Ok(())
    }

    /// SIGCONT for a process a fault stopped (if it still runs).
    pub async fn resume(&self, name: &str) -> anyhow::Result<()> {
        let slot = self.slot(name).context("no such process")?;
        let pid = {
            let mut state = slot.state();
            if !std::mem::take(&mut state.stopped) {
                return Ok(());
            }
            state.child.as_ref().and_then(Child::id)
        };
        match pid {
            Some(pid) => signal(pid, "CONT").await,
            None => Ok(()),
        }
    }

    /// Continues every process a fault left stopped.
    pub async fn resume_all(&self) -> anyhow::Result<()> {
        for slot in &self.slots {
            self.resume(&slot.spec.name).await?;
        }
        Ok(())
    }

    pub fn restarts(&self) -> Restarts {
        self.restarts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops supervising and kills every process, waiting for each to exit.
    /// Whoever else still holds the cluster (a fault in progress) finds no
    /// process left, and the supervisor starts none again.
    pub async fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.supervisor.abort();
        for slot in &self.slots {
            let child = slot.state().child.take();
            if let Some(mut child) = child {
                drop(child.start_kill());
                drop(child.wait().await);
            }
        }
    }
}

impl Drop for Cluster {
    /// The path of a panic or an interruption: no process may outlive the
    /// harness. (After `shutdown` there is nothing left to kill.)
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
        self.supervisor.abort();
        for slot in &self.slots {
            if let Some(child) = slot.state().child.as_mut() {
                drop(child.start_kill());
            }
        }
    }
}

async fn supervise(slots: Vec<Arc<Slot>>, restarts: Arc<Mutex<Restarts>>, closed: Arc<AtomicBool>) {
    loop {
        for slot in &slots {
            let mut state = slot.state();
            if let Some(child) = state.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let kind = if slot.spec.name.starts_with("worker") {
                        "worker"
                    } else {
                        "api"
                    };
                    let why = cause(status);
                    say!(
                        "{} exited ({why}); restarting it in {RESTART_DELAY:?}",
                        slot.spec.name
                    );
                    state.child = None;
                    state.stopped = false;
                    state.exited_at = Some(Instant::now());
                    let mut restarts = restarts.lock().unwrap_or_else(|p| p.into_inner());
                    restarts.total += 1;
                    *restarts
                        .by_cause
                        .entry(format!("{kind} {why}"))
                        .or_default() += 1;
                }
            } else if state
                .exited_at
                .is_some_and(|at| at.elapsed() >= RESTART_DELAY)
                // Read under the slot's lock, which `shutdown` takes after
                // setting it: a process started before is killed there.
                && !closed.load(Ordering::SeqCst)
            {
                match slot.spawn(false) {
                    Ok(child) => {
                        state.child = Some(child);
                        state.exited_at = None;
                    }
                    Err(e) => say!("could not restart {}: {e:#}", slot.spec.name),
                }
            }
        }
        tokio::time::sleep(SUPERVISE_EVERY).await;
    }
}

fn cause(status: ExitStatus) -> String {
    match (status.signal(), status.code()) {
        (Some(9), _) => "killed: SIGKILL".to_owned(),
        (Some(6), _) => "aborted: SIGABRT, e.g. the failpoint".to_owned(),
        (Some(signal), _) => format!("signal {signal}"),
        (None, Some(code)) => format!("exit status {code}"),
        (None, None) => "unknown".to_owned(),
    }
}

async fn signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .await
        .context("running kill")?;
    anyhow::ensure!(status.success(), "kill -{signal} {pid} failed: {status}");
    Ok(())
}
