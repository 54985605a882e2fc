//! What the API's and the worker's Prometheus metrics share: the registry
//! (every name prefixed `arcus_`), the database-pool gauge, and the text
//! encoding `/metrics` serves.

use prometheus::core::Collector;
use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};

/// A registry holding `collectors`.
pub fn registry(collectors: Vec<Box<dyn Collector>>) -> Registry {
    let registry =
        Registry::new_custom(Some("arcus".to_owned()), None).expect("a valid registry prefix");
    for collector in collectors {
        registry
            .register(collector)
            .expect("each metric registers once");
    }
    registry
}

/// `db_pool_connections{state="open"|"idle"}`.
pub fn pool_gauge() -> IntGaugeVec {
    IntGaugeVec::new(
        Opts::new("db_pool_connections", "Database pool connections by state"),
        &["state"],
    )
    .expect("valid metric")
}

/// Sets the pool gauge from a pool's size and idle count.
pub fn set_pool(gauge: &IntGaugeVec, open: u32, idle: usize) {
    gauge.with_label_values(&["open"]).set(i64::from(open));
    gauge
        .with_label_values(&["idle"])
        .set(i64::try_from(idle).unwrap_or(i64::MAX));
}

/// The registry in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut buffer = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut buffer)
        .expect("metrics encode to text");
    String::from_utf8(buffer).expect("the text format is UTF-8")
}
