//! Developer tasks, run as `cargo xtask <task>`:
//!
//! - `up`: migrates the local database, creates a demo entity and test key,
//!   prints a ready-to-paste curl, and runs the API and two workers until Ctrl-C.
//! - `test`: checks formatting, runs `deploy-check`, installs Debian's
//!   `chromium` and `chromium-driver` with apt-get when chromedriver is missing
//!   (the console's tests drive a headless Chromium), then runs the whole test
//!   suite against the local Postgres and RabbitMQ (or, when they are not
//!   running, containers), and with the local services the bench at its tiny
//!   size and a 60 s chaos run.
//! - `deploy-check`: renders the Kubernetes overlays and validates them
//!   offline against the Kubernetes schemas, checks the compose file, and
//!   validates `openapi.json` against the OpenAPI 3.1 schema.
//! - `openapi`: writes `openapi.json` from the code (after an API change; a
//!   test fails while the committed file differs from what the API serves).
//! - `chaos`: builds the binaries with the worker's failpoints and runs
//!   `arcus-chaos` (crates/chaos): one API and three workers against the local
//!   Postgres and RabbitMQ, under load, with faults injected, then checks the
//!   invariants. `--mutant NAME` runs it on binaries built from HEAD with
//!   `xtask/chaos-mutants/NAME.patch` applied (for 180 s unless `--duration`
//!   says otherwise), and passes only if the checker finds violations.
//! - `bench`: builds the release binaries and runs `arcus-bench`
//!   (crates/bench): import throughput end to end against a COPY ceiling,
//!   status-read latency and peak memory, on a fresh database and queues of
//!   the local Postgres and RabbitMQ (which it leaves running).
//!
//! The mutants are patches against HEAD. When the code a mutant breaks
//! changes, regenerate its patch without touching the work tree:
//!
//! ```sh
//! git worktree add --detach /tmp/mutant HEAD
//! # break /tmp/mutant as the mutant does, e.g. for ack-before-commit: in
//! # crates/worker/src/lib.rs, `handle` acks the delivery before `settlement`
//! git -C /tmp/mutant diff > xtask/chaos-mutants/ack-before-commit.patch
//! git worktree remove --force /tmp/mutant
//! ```

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const LOCAL_DATABASE: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const LOCAL_AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const ALL_SCOPES: &str = "accounts:read,accounts:write,products:read,products:write,\
orders:read,orders:write,purchasing:read,purchasing:write,payments:read,payments:write,\
accounting:read,accounting:write,migration:read,migration:write,migration:admin";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match task.as_str() {
        "up" => up(),
        "test" => test(&rest),
        "deploy-check" => deploy_check(),
        "openapi" => openapi(),
        "chaos" => chaos(&rest),
        "bench" => bench(&rest),
        _ => {
            eprintln!("usage: cargo xtask <up|test|deploy-check|openapi|chaos|bench> [args]");
            eprintln!(
                "  up     run the service locally: migrations, demo key, API and two workers"
            );
            eprintln!(
                "  test   check formatting, deploy-check, run every test, the bench at its tiny size, then a 60 s chaos run"
            );
            eprintln!(
                "  deploy-check   validate the Kubernetes manifests, compose file and openapi.json"
            );
            eprintln!("  openapi   write openapi.json from the code");
            eprintln!(
                "  chaos [--duration SECS] [--seed N] [--json FILE] [--mutant NAME] [--release]"
            );
            eprintln!(
                "         fault injection against the real binaries, then an invariant check"
            );
            eprintln!(
                "  bench [--tiny|--small|--full|--size N] [--workers 1,2] [--rate 500] [--json FILE]"
            );
            eprintln!(
                "         import throughput against a COPY ceiling, status-read latency, memory"
            );
            bail!("unknown task '{task}'")
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    cmd.current_dir(root());
    cmd
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn reachable(addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().expect("a literal socket address");
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// `cargo xtask test`
fn test(extra: &[String]) -> anyhow::Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    let mut nextest = cargo();
    nextest.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    nextest.args(extra);
    // The tests take service URLs from the environment; point them at the
    // local services when those run, and let them start containers otherwise.
    for (var, url, addr) in [
        ("ARCUS_TEST_DATABASE_URL", LOCAL_DATABASE, "127.0.0.1:5432"),
        ("ARCUS_TEST_AMQP_URL", LOCAL_AMQP, "127.0.0.1:5672"),
    ] {
        if std::env::var_os(var).is_none() && reachable(addr) {
            nextest.env(var, url);
        }
    }
    if !cargo()
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        run(cargo().args(["install", "cargo-nextest", "--locked"]))?;
    }
    deploy_check()?;
    ensure_chromedriver()?;
    let suite = run(&mut nextest);
    // A short chaos run after the tests, whatever their outcome: it restarts
    // Postgres and RabbitMQ, which no test may see, and its verdict is worth
    // having even when a test failed.
    // It drives the local services themselves (it restarts them); without
    // them (the testcontainers path) there is nothing to run it against.
    let local = reachable("127.0.0.1:5432") && reachable("127.0.0.1:5672");
    if !local {
        println!("bench and chaos skipped: they need the local Postgres and RabbitMQ");
        return suite;
    }
    // The bench at its tiny size, on the debug build the tests already made:
    // it proves the bench works, it measures nothing.
    let bench = run_bench("dev", &["--tiny".to_owned()]);
    let chaos = chaos(&["--duration".to_owned(), "60".to_owned()]);
    let verdict = |r: &anyhow::Result<()>| match r {
        Ok(()) => "passed".to_owned(),
        Err(e) => format!("FAILED ({e:#})"),
    };
    println!("nextest: {}", verdict(&suite));
    println!("bench:   {}", verdict(&bench));
    println!("chaos:   {}", verdict(&chaos));
    suite.and(bench).and(chaos)
}

/// Where the console's browser tests look for chromedriver unless
/// `ARCUS_CHROMEDRIVER` names another (Debian's `chromium-driver` puts it here).
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The console's tests (crates/api/tests/api/console.rs) drive a real headless
/// Chromium over WebDriver. Where chromedriver is missing and apt-get exists
/// (CI, a fresh Debian machine), Debian's `chromium` and `chromium-driver` are
/// installed; elsewhere the tests fail saying what to install.
fn ensure_chromedriver() -> anyhow::Result<()> {
    if std::env::var_os("ARCUS_CHROMEDRIVER").is_some() || Path::new(CHROMEDRIVER).exists() {
        return Ok(());
    }
    if !Path::new("/usr/bin/apt-get").exists() {
        println!(
            "no {CHROMEDRIVER} and no apt-get: the console tests will fail; install Chromium \
             and its chromedriver, and set ARCUS_CHROMEDRIVER if it is elsewhere"
        );
        return Ok(());
    }
    // As root (CI) apt-get runs as it is; a developer is asked through sudo.
    let root = output(Command::new("id").arg("-u")).is_ok_and(|uid| uid == "0");
    let apt = |args: &[&str]| {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    println!(
        "{CHROMEDRIVER} is missing: installing Debian's chromium and chromium-driver with \
         apt-get for the console's browser tests"
    );
    run(&mut apt(&["update"]))?;
    run(&mut apt(&["install", "-y", "chromium", "chromium-driver"]))
        .context("installing chromium and chromium-driver")
}

/// The Kubernetes version the manifests are validated against.
const KUBERNETES_VERSION: &str = "1.30.0";

/// `cargo xtask deploy-check`: no cluster is needed. The overlays are rendered
/// with `kubectl kustomize` and validated with `kubernetes-validate` (installed
/// from `deploy/requirements.txt` into `target/deploy-venv`), which knows every
/// built-in kind; KEDA's ScaledObject is a custom resource it has no schema
/// for, so its "no schema" warning is the one warning allowed.
fn deploy_check() -> anyhow::Result<()> {
    let root = root();
    let venv = root.join("target/deploy-venv");
    let validator = venv.join("bin/kubernetes-validate");
    if !validator.exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        run(Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "-r"])
            .arg(root.join("deploy/requirements.txt")))?;
    }
    for overlay in ["dev", "prod"] {
        let rendered = output(
            Command::new("kubectl")
                .args(["kustomize"])
                .arg(root.join("deploy/k8s/overlays").join(overlay)),
        )?;
        let file = root.join(format!("target/k8s-{overlay}.yaml"));
        std::fs::write(&file, rendered)?;
        let out = Command::new(&validator)
            .args(["--strict", "-k", KUBERNETES_VERSION])
            .arg(&file)
            .output()
            .context("running kubernetes-validate")?;
        let report = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        let unexpected: Vec<&str> = report
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("WARN"))
            .filter(|l| !l.contains("kind ScaledObject with api version keda.sh/v1alpha1"))
            .collect();
        if !out.status.success() || !unexpected.is_empty() {
            bail!("{overlay} overlay is not valid Kubernetes {KUBERNETES_VERSION}:\n{report}");
        }
        let passed = report.lines().filter(|l| l.contains("passed")).count();
        println!(
            "deploy-check: {overlay} overlay: {passed} resources valid for Kubernetes {KUBERNETES_VERSION}"
        );
    }
    run(Command::new(venv.join("bin/openapi-spec-validator")).arg(root.join("openapi.json")))?;
    // The compose file: valid YAML whose depends_on name real services.
    let script = r#"
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
services = doc["services"]
for name, svc in services.items():
    deps = svc.get("depends_on", {})
    for dep in (deps if isinstance(deps, list) else deps.keys()):
        assert dep in services, f"{name} depends on unknown service {dep}"
        cond = deps[dep].get("condition") if isinstance(deps, dict) else None
        if cond == "service_healthy":
            assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy, which has no healthcheck"
print(f"deploy-check: docker-compose.yml: {len(services)} services, dependencies consistent")
"#;
    run(Command::new(venv.join("bin/python"))
        .args(["-c", script])
        .arg(root.join("docker-compose.yml")))
}

/// `cargo xtask openapi`
fn openapi() -> anyhow::Result<()> {
    let document = output(cargo().args([
        "run",
        "--quiet",
        "-p",
        "api",
        "--bin",
        "arcus-api",
        "--",
        "openapi",
    ]))?;
    std::fs::write(root().join("openapi.json"), document + "\n")?;
    println!("wrote openapi.json");
    Ok(())
}

/// `cargo xtask up`
fn up() -> anyhow::Result<()> {
    run(cargo().args(["build", "-p", "api", "-p", "worker", "-p", "cli"]))?;
    let bin = root().join("target/debug");
    let arcusctl = bin.join("arcusctl");

    run(Command::new(&arcusctl).args(["db", "migrate"]))?;
    let entity =
        output(Command::new(&arcusctl).args(["entity", "create", "--name", "Demo Company"]))?;
    let key = output(Command::new(&arcusctl).args([
        "key", "create", "--entity", &entity, "--mode", "test", "--scopes", ALL_SCOPES,
    ]))?;

    let mut children = vec![spawn(Command::new(bin.join("arcus-api")), "api")?];
    for i in 1..=2 {
        // Each worker serves its probes and metrics on a port of its own.
        let mut worker = Command::new(bin.join("arcus-worker"));
        worker.env(
            "ARCUS__WORKER__HTTP_ADDR",
            format!("127.0.0.1:{}", 9090 + i),
        );
        children.push(spawn(worker, &format!("worker {i}"))?);
    }
    let addr = std::env::var("ARCUS__HTTP__ADDR").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    wait_ready(&arcusctl, &addr, &mut children)?;

    println!(
        r#"
Arcus migration service is up: API on http://{addr}, two workers
(probes and metrics on 127.0.0.1:9091 and 127.0.0.1:9092).

  entity:  {entity}
  key:     {key}   (test mode, every scope; shown once)
  console: http://{addr}/console   (sign in with the entity and the key)

Load a file (see "Loading files" in README.md):

  ARCUS_API_KEY={key} {cli} import \
    --entity {entity} --resource products --source shopify --file products.csv

Submit a job:

  curl -s -X POST http://{addr}/v1/entities/{entity}/migration/products/bulk \
    -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \
    -d '{{"external_source": "shopify", "records": [
          {{"external_id": "P-1", "title": "Mug", "product_type": "physical", "sku": "MUG-1", "list_price": 12.5}},
          {{"external_id": "P-2", "title": "Gift set", "product_type": "kit",
           "components": [{{"product_external_id": "P-1", "quantity": 2}}]}}]}}'

Then read it (use the id the first call returned):

  curl -s http://{addr}/v1/entities/{entity}/migration/jobs/<job id> -H 'Authorization: Bearer {key}'

Press Ctrl-C to stop.
"#,
        cli = arcusctl.display()
    );
    supervise(&mut children)
}

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

fn spawn(mut command: Command, name: &str) -> anyhow::Result<(String, Child)> {
    let child = command
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    Ok((name.to_owned(), child))
}

fn wait_ready(arcusctl: &Path, addr: &str, children: &mut [(String, Child)]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("http://{addr}/readyz");
    loop {
        let ready = Command::new(arcusctl)
            .args(["health", "--url", &url])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return Ok(());
        }
        if let Some((name, status)) = exited(children)? {
            stop(children);
            bail!("{name} exited before the service was ready: {status}");
        }
        if Instant::now() > deadline {
            stop(children);
            bail!("the API did not become ready at {url} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn exited(children: &mut [(String, Child)]) -> anyhow::Result<Option<(String, ExitStatus)>> {
    for (name, child) in children.iter_mut() {
        if let Some(status) = child.try_wait()? {
            return Ok(Some((name.clone(), status)));
        }
    }
    Ok(None)
}

/// Runs until a child exits (Ctrl-C reaches every child of the terminal, and
/// each shuts down gracefully), then stops the others.
fn supervise(children: &mut [(String, Child)]) -> anyhow::Result<()> {
    loop {
        if let Some((name, status)) = exited(children)? {
            stop(children);
            if status.success() {
                return Ok(());
            }
            bail!("{name} exited: {status}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Asks every child still running to terminate (SIGTERM), then waits for it.
fn stop(children: &mut [(String, Child)]) {
    for (_, child) in children.iter_mut() {
        if child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
    }
    for (_, child) in children.iter_mut() {
        let _ = child.wait();
    }
}

/// What `arcus-chaos` exits with when the run found violations (0: none; 2:
/// the harness itself failed).
const CHAOS_VIOLATIONS: i32 = 1;
/// Seconds of a mutant's run unless `--duration` says otherwise.
const MUTANT_DURATION: &str = "180";

/// `cargo xtask chaos [--duration SECS] [--seed N] [--json FILE] [--mutant NAME] [--release]`
///
/// Other arguments go to `arcus-chaos` as they are (`--help` lists them).
fn chaos(args: &[String]) -> anyhow::Result<()> {
    let mut passed = Vec::new();
    let mut mutant = None;
    let mut release = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--mutant" => mutant = Some(args.next().context("--mutant needs a name")?.clone()),
            "--release" => release = true,
            _ => passed.push(arg.clone()),
        }
    }
    // A mutant is caught when a stalled worker wakes while another has taken
    // its long job over, which takes a few stalls: give it time by default.
    if mutant.is_some() && !passed.iter().any(|a| a == "--duration") {
        passed.extend(["--duration".to_owned(), MUTANT_DURATION.to_owned()]);
    }
    let root = root();
    let profile = if release { "release" } else { "debug" };
    // The harness always comes from this tree: it is what a mutant tests.
    build(&root, &root.join("target"), true, release)?;
    let bin_dir = match &mutant {
        None => root.join("target").join(profile),
        Some(name) => {
            let tree = mutant_tree(&root, name)?;
            let target = root.join("target/chaos-mutant-target");
            build(&tree, &target, false, release)?;
            target.join(profile)
        }
    };
    let status = Command::new(root.join("target").join(profile).join("arcus-chaos"))
        .current_dir(&root)
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--log-dir")
        .arg(root.join("target/chaos"))
        .args(&passed)
        .status()
        .context("running arcus-chaos")?;
    match (mutant, status.code()) {
        (None, Some(0)) => Ok(()),
        (None, Some(CHAOS_VIOLATIONS)) => bail!("the chaos run found violations"),
        (None, _) => bail!("the chaos harness failed: {status}"),
        (Some(name), Some(CHAOS_VIOLATIONS)) => {
            println!("mutant {name} was caught: the checker found its violations");
            Ok(())
        }
        (Some(name), Some(0)) => bail!(
            "mutant {name} survived: the run found no violation (a longer --duration gives \
             the faults more chances; a survivor every time means a blind spot)"
        ),
        (Some(name), _) => bail!("the chaos harness failed on mutant {name}: {status}"),
    }
}

/// Builds the service's binaries (and the harness, with `harness`) from
/// `tree` into `target_dir`, with the worker's failpoints compiled in.
fn build(tree: &Path, target_dir: &Path, harness: bool, release: bool) -> anyhow::Result<()> {
    let mut cmd = cargo();
    cmd.current_dir(tree)
        .env("CARGO_TARGET_DIR", target_dir)
        .args(["build", "-p", "api", "-p", "worker", "-p", "cli"]);
    if harness {
        cmd.args(["-p", "chaos"]);
    }
    if release {
        cmd.arg("--release");
    }
    // A tree from before the worker had its failpoints (a mutant of an older
    // HEAD) still builds: its runs just lack the crash between commit and ack.
    if declares_feature(&tree.join("crates/worker/Cargo.toml"), "failpoints")? {
        cmd.args(["--features", "worker/failpoints"]);
    } else {
        eprintln!(
            "warning: {} has no worker `failpoints` feature; building without it",
            tree.display()
        );
    }
    run(&mut cmd)
}

/// Whether a manifest's `[features]` table has `feature`.
fn declares_feature(manifest: &Path, feature: &str) -> anyhow::Result<bool> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let mut in_features = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_features = line == "[features]";
        } else if in_features
            && line
                .split_once('=')
                .is_some_and(|(key, _)| key.trim() == feature)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// HEAD exported to `target/chaos-mutant` with the mutant's patch applied.
/// An export rather than a checkout: the repository's state is not touched.
fn mutant_tree(root: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let patch = root
        .join("xtask/chaos-mutants")
        .join(format!("{name}.patch"));
    if !patch.exists() {
        bail!("no mutant {name}: {} does not exist", patch.display());
    }
    let tree = root.join("target/chaos-mutant");
    if tree.exists() {
        std::fs::remove_dir_all(&tree).with_context(|| format!("removing {}", tree.display()))?;
    }
    std::fs::create_dir_all(&tree)?;
    let mut archive = Command::new("git")
        .current_dir(root)
        .args(["archive", "--format=tar", "HEAD"])
        .stdout(Stdio::piped())
        .spawn()
        .context("running git archive")?;
    let tar = archive.stdout.take().context("git archive's output")?;
    run(Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(&tree)
        .stdin(tar))?;
    let archived = archive.wait()?;
    if !archived.success() {
        bail!("git archive HEAD failed: {archived}");
    }
    // From the repository root, `--directory` points the patch's paths into
    // the export; without it they would name the work tree's own files.
    run(Command::new("git")
        .current_dir(root)
        .arg("apply")
        .arg("--directory=target/chaos-mutant")
        .arg(&patch))
    .with_context(|| format!("applying {} to HEAD", patch.display()))?;
    Ok(tree)
}

/// What `arcus-bench` exits with when it missed a target (2: the bench itself
/// failed, or a record did).
const BENCH_TARGET_MISSED: i32 = 1;

/// `cargo xtask bench [--tiny|--small|--full|--size N] [--workers 1,2] [--rate 500] [--json FILE]`
///
/// The arguments go to `arcus-bench` as they are (`--help` lists them).
/// Release binaries: a debug build would measure the compiler's settings.
fn bench(args: &[String]) -> anyhow::Result<()> {
    run_bench("release", args)
}

/// Builds the binaries of `profile` and runs `arcus-bench` on them.
fn run_bench(profile: &str, args: &[String]) -> anyhow::Result<()> {
    run(cargo().args([
        "build",
        "--profile",
        profile,
        "-p",
        "api",
        "-p",
        "worker",
        "-p",
        "cli",
        "-p",
        "bench",
    ]))?;
    let root = root();
    // Cargo builds the `dev` profile into `target/debug`.
    let bin_dir = root
        .join("target")
        .join(if profile == "dev" { "debug" } else { profile });
    let status = Command::new(bin_dir.join("arcus-bench"))
        .current_dir(&root)
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--log-dir")
        .arg(root.join("target/bench"))
        .args(args)
        .status()
        .context("running arcus-bench")?;
    match status.code() {
        Some(0) => Ok(()),
        Some(BENCH_TARGET_MISSED) => bail!("the bench missed a target"),
        _ => bail!("the bench failed: {status}"),
    }
}
