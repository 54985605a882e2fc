//! `arcus-api`: the HTTP API of the migration service.

use settings::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    telemetry::init(&settings.log);
    let app = api::Application::build(&settings).await?;
    app.run_until(telemetry::shutdown_signal()).await
}
