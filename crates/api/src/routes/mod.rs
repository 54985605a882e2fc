//! The routes, one module per area; each exposes its own `router()`.

pub mod console;
pub mod docs;
pub mod health;
pub mod migration;
pub mod reconciliation;
pub mod records;
pub mod webhooks;

use std::collections::HashMap;

use crate::ApiError;

/// The `limit` of a list: 1 to 100, 20 when absent.
pub(crate) fn limit(query: &HashMap<String, String>) -> Result<u32, ApiError> {
    match query.get("limit") {
        None => Ok(20),
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                migration::invalid(
                    "limit",
                    format!("limit must be an integer from 1 to 100, got '{raw}'"),
                )
            }),
    }
}

/// Any path no route knows.
pub async fn fallback() -> ApiError {
    ApiError::not_found(
        "not_found",
        "no such endpoint; see the API reference for the routes",
    )
}
