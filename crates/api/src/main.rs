//! `arcus-api`: the HTTP API of the migration service.

use settings::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `arcus-api openapi` prints the OpenAPI document (what `openapi.json` holds).
    if std::env::args().nth(1).as_deref() == Some("openapi") {
        print!("{}", api::openapi::document_text());
        return Ok(());
    }
    let settings = Settings::load()?;
    telemetry::init(&settings.log.filter, settings.log.is_json());
    let app = api::Application::build(&settings).await?;
    app.run_until(telemetry::shutdown_signal()).await
}
