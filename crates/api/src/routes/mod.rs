//! The routes, one module per area; each exposes its own `router()`.

pub mod console;
pub mod docs;
pub mod health;
pub mod migration;
pub mod reconciliation;
pub mod records;
pub mod webhooks;

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Value, json};

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

/// A page of a list in the API's shape; with more to come, `next_cursor` is
/// the last item's cursor, the `starting_after` of the next page.
pub(crate) fn list_page<T: Serialize, C: Serialize>(
    data: &[T],
    has_more: bool,
    cursor: impl Fn(&T) -> C,
) -> Value {
    let next_cursor = if has_more {
        data.last().map(cursor)
    } else {
        None
    };
    json!({
        "object": "list",
        "data": data,
        "has_more": has_more,
        "next_cursor": next_cursor,
    })
}

/// Any path no route knows.
pub async fn fallback() -> ApiError {
    ApiError::not_found(
        "not_found",
        "no such endpoint; see the API reference for the routes",
    )
}
