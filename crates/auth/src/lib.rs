//! API keys and scopes: issuing keys, authenticating requests, and the axum
//! extractor every entity route takes.
//!
//! A key is `ark_<mode>_ent_<entity code>_<secret>`. Only a SHA-256 hash of the
//! whole key is stored, so the key is shown once, when it is issued; with 190
//! bits of randomness in the secret, a hash of it cannot be reversed by search.

mod extract;

pub use extract::AuthState;

use chrono::{DateTime, Utc};
use domain::{Mode, SCOPES, Tenant};
use rand::Rng;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const SECRET_LEN: usize = 32;
/// Characters of the secret kept in the displayable prefix.
const PREFIX_SECRET_CHARS: usize = 4;

/// Who a request acts as: a live key, its entity, mode and scopes.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: Uuid,
    pub entity_id: Uuid,
    pub mode: Mode,
    pub scopes: Vec<String>,
}

impl Principal {
    pub fn tenant(&self) -> Tenant {
        Tenant {
            entity_id: self.entity_id,
            mode: self.mode,
        }
    }

    /// Fails with `insufficient_scope` unless the key carries `scope`.
    pub fn require(&self, scope: &'static str) -> Result<(), AuthError> {
        if self.scopes.iter().any(|s| s == scope) {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope(scope))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no API key was given: send Authorization: Bearer <key>")]
    MissingKey,
    #[error("the API key is not valid, or has been revoked")]
    InvalidKey,
    #[error("entity_id in the path must be a UUID")]
    InvalidEntityId,
    #[error("this API key belongs to another entity")]
    EntityMismatch,
    #[error("this API key lacks the scope {0}")]
    InsufficientScope(&'static str),
    #[error("could not check the API key: {0}")]
    Database(#[from] sqlx::Error),
}

/// A key as issued: `key` is shown once and never stored.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub id: Uuid,
    pub key: String,
    pub prefix: String,
    pub entity_id: Uuid,
    pub mode: Mode,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("unknown scope '{0}'; scopes are {scopes}", scopes = SCOPES.join(", "))]
    UnknownScope(String),
    #[error("a key needs at least one scope")]
    NoScopes,
    #[error("no entity with id {0}")]
    UnknownEntity(Uuid),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Issues a key for an entity.
pub async fn issue(
    pool: &PgPool,
    entity_id: Uuid,
    mode: Mode,
    scopes: &[String],
) -> Result<IssuedKey, IssueError> {
    let mut scopes: Vec<String> = scopes.iter().map(|s| s.trim().to_owned()).collect();
    scopes.retain(|s| !s.is_empty());
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        return Err(IssueError::NoScopes);
    }
    if let Some(bad) = scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
        return Err(IssueError::UnknownScope(bad.clone()));
    }
    let entity = domain::entities::get(pool, entity_id)
        .await?
        .ok_or(IssueError::UnknownEntity(entity_id))?;

    let secret: String = {
        let mut rng = rand::rng();
        (0..SECRET_LEN)
            .map(|_| SECRET_ALPHABET[rng.random_range(0..SECRET_ALPHABET.len())] as char)
            .collect()
    };
    let head = format!("ark_{}_ent_{}_", mode.as_str(), entity.code);
    let key = format!("{head}{secret}");
    let prefix = format!("{head}{}", &secret[..PREFIX_SECRET_CHARS]);
    let id = domain::new_id();
    let created_at: DateTime<Utc> = sqlx::query_scalar(
        "insert into api_keys (id, entity_id, mode, prefix, key_hash, scopes)
         values ($1, $2, $3, $4, $5, $6) returning created_at",
    )
    .bind(id)
    .bind(entity_id)
    .bind(mode.as_str())
    .bind(&prefix)
    .bind(hash_key(&key))
    .bind(&scopes)
    .fetch_one(pool)
    .await?;
    Ok(IssuedKey {
        id,
        key,
        prefix,
        entity_id,
        mode,
        scopes,
        created_at,
    })
}

/// The stored form of a key.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Finds the live key a request presents.
pub async fn authenticate(pool: &PgPool, key: &str) -> Result<Principal, AuthError> {
    if !(key.starts_with("ark_test_ent_") || key.starts_with("ark_live_ent_")) || key.len() > 200 {
        return Err(AuthError::InvalidKey);
    }
    let row: Option<(Uuid, Uuid, String, Vec<String>, bool)> = sqlx::query_as(
        "select id, entity_id, mode, scopes,
                last_used_at is null or last_used_at < now() - interval '1 minute'
         from api_keys where key_hash = $1 and revoked_at is null",
    )
    .bind(hash_key(key))
    .fetch_optional(pool)
    .await?;
    let (key_id, entity_id, mode, scopes, stale) = row.ok_or(AuthError::InvalidKey)?;
    if stale {
        // last_used_at is for people reading key listings: a minute's
        // precision spares a row write on every request.
        sqlx::query("update api_keys set last_used_at = now() where id = $1")
            .bind(key_id)
            .execute(pool)
            .await?;
    }
    Ok(Principal {
        key_id,
        entity_id,
        mode: mode.parse().map_err(|_| AuthError::InvalidKey)?,
        scopes,
    })
}

/// Revokes a key at once: the next request that presents it is refused.
pub async fn revoke(pool: &PgPool, key_id: Uuid) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("update api_keys set revoked_at = now() where id = $1 and revoked_at is null")
            .bind(key_id)
            .execute(pool)
            .await?;
    Ok(done.rows_affected() == 1)
}
