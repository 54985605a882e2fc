//! `arcus-worker`: consumes migration jobs and loads their records.

use clap::Parser;
use settings::Settings;

#[derive(Parser)]
#[command(name = "arcus-worker", about = "Loads migration jobs from RabbitMQ")]
struct Args {
    /// Resources to consume, comma-separated (default: all, or
    /// ARCUS__WORKER__RESOURCES).
    #[arg(long, value_delimiter = ',')]
    resources: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = Settings::load()?;
    telemetry::init(&settings.log);
    let wanted = if args.resources.is_empty() {
        settings.worker.resources.clone()
    } else {
        args.resources
    };
    let resources = worker::parse_resources(&wanted)?;
    worker::run(settings, resources, shutdown_signal()).await
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}
