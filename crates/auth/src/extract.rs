//! The axum extractor: authenticates the request's key and checks it against
//! the `entity_id` of the path before any handler code runs, so no entity route
//! can forget to.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{AuthError, Principal, authenticate};

/// What the application state must offer for [`Principal`] to be extracted:
/// the pool that holds the keys, and how an [`AuthError`] becomes a response.
pub trait AuthState: Send + Sync {
    type Rejection: From<AuthError> + IntoResponse;

    fn pool(&self) -> &PgPool;
}

impl<S: AuthState> FromRequestParts<S> for Principal {
    type Rejection = S::Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or(AuthError::MissingKey)?;
        let key = header
            .to_str()
            .ok()
            .and_then(|h| {
                let (scheme, key) = h.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
            })
            .filter(|k| !k.is_empty())
            .ok_or(AuthError::InvalidKey)?;
        let principal = authenticate(state.pool(), key).await?;

        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| AuthError::InvalidEntityId)?;
        if let Some((_, raw)) = params.iter().find(|(name, _)| *name == "entity_id") {
            let entity_id = Uuid::parse_str(raw).map_err(|_| AuthError::InvalidEntityId)?;
            if entity_id != principal.entity_id {
                return Err(AuthError::EntityMismatch.into());
            }
        }
        Ok(principal)
    }
}
