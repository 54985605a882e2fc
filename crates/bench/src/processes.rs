//! The system under test as processes: `arcus-api` and `arcus-worker` started
//! from their release binaries with their logs in files, their readiness, and
//! their peak memory.
//!
//! A child is killed when its `Process` is dropped, so an error, a panic or
//! Ctrl-C leaves nothing running.

use std::fs::File;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How long a process may take to answer `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Process {
    pub name: String,
    child: Child,
    pid: u32,
}

impl Process {
    /// Starts `program` with `env` on top of the bench's own environment (so
    /// that `ARCUS__...` variables set for the bench reach the service too);
    /// stdout and stderr go to `<log_dir>/<name>.log`.
    pub fn start(
        name: &str,
        program: &Path,
        env: &[(String, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let path = log_dir.join(format!("{name}.log"));
        let log = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let child = Command::new(program)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let pid = child.id().context("a process just started has a pid")?;
        Ok(Self {
            name: name.to_owned(),
            child,
            pid,
        })
    }

    /// Waits until `http://<addr>/readyz` answers 2xx; fails at once if the
    /// process exits meanwhile.
    pub async fn wait_ready(&mut self, addr: &str) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("http://{addr}/readyz");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited before it was ready: {status}", self.name);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} was not ready at {url} within {READY_TIMEOUT:?}",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The most memory the process has held resident so far (`VmHWM`, which
    /// the kernel keeps as a high-water mark: one read at the end sees the
    /// peak, however short it was), in MB.
    pub fn peak_rss_mb(&self) -> anyhow::Result<f64> {
        let path = format!("/proc/{}/status", self.pid);
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let kb = vm_hwm_kb(&status).with_context(|| format!("no VmHWM in {path}"))?;
        Ok(kb as f64 / 1024.0)
    }

    /// Reads the peak memory and kills the process. Every job is terminal by
    /// then, so there is nothing for a graceful shutdown to finish.
    pub async fn stop(mut self) -> anyhow::Result<f64> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited during the bench: {status}", self.name);
        }
        let peak = self.peak_rss_mb()?;
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(peak)
    }
}

/// The clock ticks of `/proc/<pid>/stat`: Linux reports CPU time in units of
/// USER_HZ, which is 100 on every architecture the service is built for.
const TICKS_PER_SEC: f64 = 100.0;

/// CPU seconds a process has used, and those of its children it has reaped,
/// from `/proc/<pid>/stat`; `None` once it is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_of_stat(&stat).map(|(_, ticks)| ticks as f64 / TICKS_PER_SEC)
}

/// CPU seconds used so far by every process named `postgres` (the server,
/// its backends, and, through the server's reaped children, the backends
/// that have exited): what the database has spent.
pub fn postgres_cpu_seconds() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let ticks: u64 = entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| cpu_of_stat(&stat))
        .filter(|(comm, _)| comm == "postgres")
        .map(|(_, ticks)| ticks)
        .sum();
    ticks as f64 / TICKS_PER_SEC
}

/// The command name and the CPU ticks (user and system, its own and its
/// reaped children's) of a `/proc/<pid>/stat` line. The name is between the
/// first `(` and the last `)`, and may hold spaces.
fn cpu_of_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    // After the name: state (field 3) ... utime (14), stime (15), cutime
    // (16), cstime (17).
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let ticks = fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse::<u64>().ok())
        .sum::<Option<u64>>()?;
    Some((comm, ticks))
}

/// The `VmHWM:  123456 kB` line of `/proc/<pid>/status`, in kB.
fn vm_hwm_kb(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_after_a_name_with_spaces() {
        let stat = "4242 (tokio rt) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 9 0";
        assert_eq!(cpu_of_stat(stat), Some(("tokio rt".to_owned(), 310)));
        assert_eq!(cpu_of_stat("4242 (x) S 1"), None);
    }

    #[test]
    fn the_high_water_mark_is_read_in_kb() {
        let status =
            "Name:\tarcus-worker\nVmPeak:\t  900000 kB\nVmHWM:\t   51234 kB\nVmRSS:\t   40000 kB\n";
        assert_eq!(vm_hwm_kb(status), Some(51_234));
        assert_eq!(vm_hwm_kb("Name:\tx\n"), None);
    }
}
