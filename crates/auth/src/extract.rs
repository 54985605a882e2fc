//! The axum extractor: authenticates the request's key (from the address the
//! request came from) and checks it against the `entity_id` of the path before
//! any handler code runs, so no entity route can forget to.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, RawPathParams};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{AuthError, KeyCache, KeyHasher, Principal, authenticate};

/// What the application state must offer for [`Principal`] to be extracted:
/// the pool that holds the keys, the hasher, the replica's key cache, and how
/// an [`AuthError`] becomes a response.
pub trait AuthState: Send + Sync {
    type Rejection: From<AuthError> + IntoResponse;

    fn pool(&self) -> &PgPool;

    fn key_hasher(&self) -> &KeyHasher;

    fn key_cache(&self) -> &KeyCache;
}

impl<S: AuthState> FromRequestParts<S> for Principal {
    type Rejection = S::Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // A principal already found for this request (by the rate limiter,
        // say) is not looked up twice.
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(principal.clone());
        }
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
        let client_ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        let principal = authenticate(
            state.pool(),
            state.key_hasher(),
            state.key_cache(),
            key,
            client_ip,
        )
        .await?;

        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| AuthError::InvalidEntityId)?;
        if let Some((_, raw)) = params.iter().find(|(name, _)| *name == "entity_id") {
            let entity_id = Uuid::parse_str(raw).map_err(|_| AuthError::InvalidEntityId)?;
            if entity_id != principal.entity_id {
                return Err(AuthError::EntityMismatch.into());
            }
        }
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}
