//! What every binary sets up first: tracing (readable text by default, JSON
//! when configured, filtered by `RUST_LOG` or the configured filter) and the
//! shutdown signal; and the plumbing the metrics of both services share.

pub mod metrics;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global subscriber, filtered by `RUST_LOG` or else by `filter`,
/// writing JSON lines when `json`. Calling it twice is harmless (the second
/// call keeps the first subscriber), which lets tests start several services
/// in one process.
pub fn init(filter: &str, json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init()
    };
    // An error only means a subscriber is already installed.
    drop(result);
}

/// Resolves on Ctrl-C or SIGTERM: what every binary hands its server or
/// consumer as the shutdown future (tests hand them a channel instead).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed, only SIGTERM stops the process.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received");
}
