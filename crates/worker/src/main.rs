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
    // Reads FAILPOINTS in builds with the `failpoints` feature (chaos runs).
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let settings = Settings::load()?;
    telemetry::init(&settings.log.filter, settings.log.is_json());
    let wanted = if args.resources.is_empty() {
        settings.worker.resources.clone()
    } else {
        args.resources
    };
    let resources = worker::parse_resources(&wanted)?;
    worker::run(settings, resources, telemetry::shutdown_signal()).await
}
