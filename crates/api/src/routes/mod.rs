//! The routes, one module per area; each exposes its own `router()`.

pub mod health;
pub mod migration;

use crate::ApiError;

/// Any path no route knows.
pub async fn fallback() -> ApiError {
    ApiError::not_found(
        "not_found",
        "no such endpoint; see the API reference for the routes",
    )
}
