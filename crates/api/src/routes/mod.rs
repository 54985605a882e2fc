//! The routes, one module per area; each exposes its own `router()`.

pub mod console;
pub mod docs;
pub mod health;
pub mod migration;
pub mod reconciliation;
pub mod records;
pub mod webhooks;

use serde::Serialize;
use serde_json::{Value, json};

use crate::ApiError;

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
