//! API keys and scopes: issuing, listing and revoking keys, authenticating
//! requests, and the axum extractor every entity route takes.
//!
//! A key is `ark_<mode>_ent_<entity code>_<lookup id><secret>`: a 12-character
//! public lookup id and 32 random characters (190 bits). The database keeps the
//! lookup id and an HMAC-SHA256 of the whole key under the server's key secret,
//! so a dump of it yields no key, and without the secret not even a way to test
//! guesses. A request's key is found by its lookup id and its HMAC compared in
//! constant time.

pub mod cache;
mod extract;

pub use cache::{KeyCache, follow_revocations};
pub use extract::AuthState;

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use domain::audit::{self, Actor};
use domain::{Mode, SCOPES, Tenant};
use hmac::{Hmac, Mac};
use ipnet::IpNet;
use rand::Rng;
use serde::Serialize;
use serde_json::json;
use sha2::Sha256;
use sqlx::PgPool;
use uuid::Uuid;

use crate::cache::StoredKey;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const LOOKUP_LEN: usize = 12;
const SECRET_LEN: usize = 32;

/// A key's rate-limit tier. Test keys have their own; live keys are standard
/// unless issued elevated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Test,
    Standard,
    Elevated,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Test => "test",
            Tier::Standard => "standard",
            Tier::Elevated => "elevated",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "test" => Some(Tier::Test),
            "standard" => Some(Tier::Standard),
            "elevated" => Some(Tier::Elevated),
            _ => None,
        }
    }
}

/// Who a request acts as: a live key, its entity, mode, scopes and tier.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: Uuid,
    pub entity_id: Uuid,
    pub mode: Mode,
    pub scopes: Vec<String>,
    pub tier: Tier,
}

impl Principal {
    pub fn tenant(&self) -> Tenant {
        Tenant {
            entity_id: self.entity_id,
            mode: self.mode,
        }
    }

    pub fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Whether the key may post journal entries into a closed period with
    /// `bypass_period_check`: only keys with `migration:write`, the keys that
    /// load history, may (the vendor's `create-a-manual-journal-entry`).
    pub fn may_bypass_period_check(&self) -> bool {
        self.has("migration:write")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no API key was given: send Authorization: Bearer <key>")]
    MissingKey,
    #[error("the API key is not valid, or has been revoked")]
    InvalidKey,
    #[error("the API key has expired")]
    ExpiredKey,
    #[error("this API key may not be used from this address")]
    IpNotAllowlisted,
    #[error("entity_id in the path must be a UUID")]
    InvalidEntityId,
    #[error("this API key belongs to another entity")]
    EntityMismatch,
    #[error("this API key lacks the scope {0}")]
    InsufficientScope(&'static str),
    #[error("could not check the API key: {0}")]
    Database(#[from] sqlx::Error),
}

/// Hashes keys with the server's secret.
#[derive(Clone)]
pub struct KeyHasher {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher(..)")
    }
}

impl KeyHasher {
    pub fn new(secret: &str) -> Self {
        Self {
            mac: Hmac::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length"),
        }
    }

    /// The stored form of a key.
    pub fn hash(&self, key: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(key.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `key` hashes to `stored`, compared in constant time.
    fn verify(&self, key: &str, stored: &str) -> bool {
        let Ok(expected) = hex::decode(stored) else {
            return false;
        };
        let mut mac = self.mac.clone();
        mac.update(key.as_bytes());
        mac.verify_slice(&expected).is_ok()
    }
}

/// The public parts of a well-formed key: its mode and lookup id.
fn parse_key(key: &str) -> Option<(Mode, &str)> {
    let mode = if key.starts_with("ark_test_ent_") {
        Mode::Test
    } else if key.starts_with("ark_live_ent_") {
        Mode::Live
    } else {
        return None;
    };
    let (_, random) = key.rsplit_once('_')?;
    let valid =
        random.len() == LOOKUP_LEN + SECRET_LEN && random.bytes().all(|b| ALPHABET.contains(&b));
    valid.then(|| (mode, &random[..LOOKUP_LEN]))
}

fn random_string(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// What a new key may do.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub entity_id: Uuid,
    pub mode: Mode,
    pub scopes: Vec<String>,
    /// Live keys only: standard (the default) or elevated.
    pub elevated: bool,
    pub expires_at: Option<DateTime<Utc>>,
    /// CIDRs (or single addresses) the key may be used from; empty: anywhere.
    pub allowed_ips: Vec<String>,
}

/// A key as issued: `key` is shown once and never stored.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedKey {
    pub id: Uuid,
    pub key: String,
    pub prefix: String,
    pub entity_id: Uuid,
    pub mode: Mode,
    pub scopes: Vec<String>,
    pub tier: Tier,
    pub allowed_ips: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
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
    #[error("only live keys have a tier; test keys are limited as test keys")]
    TierOnTestKey,
    #[error("'{0}' is not an IP address or CIDR block")]
    InvalidAllowedIp(String),
    #[error("the expiry must be in the future")]
    ExpiryInThePast,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Parses an allowlist entry: a CIDR block or a single address.
fn parse_net(entry: &str) -> Option<IpNet> {
    entry
        .parse::<IpNet>()
        .ok()
        .or_else(|| entry.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Issues a key for an entity, and records that it was issued.
pub async fn issue(
    pool: &PgPool,
    hasher: &KeyHasher,
    new: NewKey,
    actor: &Actor,
) -> Result<IssuedKey, IssueError> {
    let mut scopes: Vec<String> = new.scopes.iter().map(|s| s.trim().to_owned()).collect();
    scopes.retain(|s| !s.is_empty());
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        return Err(IssueError::NoScopes);
    }
    if let Some(bad) = scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
        return Err(IssueError::UnknownScope(bad.clone()));
    }
    let tier = match (new.mode, new.elevated) {
        (Mode::Test, true) => return Err(IssueError::TierOnTestKey),
        (Mode::Test, false) => Tier::Test,
        (Mode::Live, false) => Tier::Standard,
        (Mode::Live, true) => Tier::Elevated,
    };
    let mut allowed_ips = Vec::with_capacity(new.allowed_ips.len());
    for entry in &new.allowed_ips {
        let net =
            parse_net(entry.trim()).ok_or_else(|| IssueError::InvalidAllowedIp(entry.clone()))?;
        allowed_ips.push(net.to_string());
    }
    if new.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(IssueError::ExpiryInThePast);
    }
    let entity = domain::entities::get(pool, new.entity_id)
        .await?
        .ok_or(IssueError::UnknownEntity(new.entity_id))?;

    let lookup_id = random_string(LOOKUP_LEN);
    let prefix = format!("ark_{}_ent_{}_{lookup_id}", new.mode.as_str(), entity.code);
    let key = format!("{prefix}{}", random_string(SECRET_LEN));
    let id = domain::new_id();
    let mut tx = pool.begin().await?;
    let created_at: DateTime<Utc> = sqlx::query_scalar(
        "insert into api_keys
            (id, entity_id, mode, lookup_id, prefix, key_hash, scopes, tier, allowed_ips, expires_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) returning created_at",
    )
    .bind(id)
    .bind(new.entity_id)
    .bind(new.mode.as_str())
    .bind(&lookup_id)
    .bind(&prefix)
    .bind(hasher.hash(&key))
    .bind(&scopes)
    .bind(tier.as_str())
    .bind((!allowed_ips.is_empty()).then_some(&allowed_ips))
    .bind(new.expires_at)
    .fetch_one(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        actor,
        "api_key.created",
        Some(new.entity_id),
        json!({"key_id": id, "prefix": prefix, "mode": new.mode, "scopes": scopes,
               "tier": tier, "allowed_ips": allowed_ips, "expires_at": new.expires_at}),
    )
    .await?;
    tx.commit().await?;
    Ok(IssuedKey {
        id,
        key,
        prefix,
        entity_id: new.entity_id,
        mode: new.mode,
        scopes,
        tier,
        allowed_ips,
        expires_at: new.expires_at,
        created_at,
    })
}

/// Finds the live key a request presents, from the address it came from: in
/// the replica's cache, or in the table (see [`cache`]).
pub async fn authenticate(
    pool: &PgPool,
    hasher: &KeyHasher,
    cache: &KeyCache,
    key: &str,
    client_ip: Option<IpAddr>,
) -> Result<Principal, AuthError> {
    let (mode, lookup_id) = parse_key(key).ok_or(AuthError::InvalidKey)?;
    let stored = match cache.get(lookup_id) {
        Some(stored) => Some(stored),
        None => {
            let ticket = cache.ticket();
            let stored: Option<StoredKey> = sqlx::query_as(
                "select id, entity_id, mode, key_hash, scopes, tier, allowed_ips, expires_at,
                        revoked_at is not null as revoked, last_used_at
                 from api_keys where lookup_id = $1",
            )
            .bind(lookup_id)
            .fetch_optional(pool)
            .await?;
            if let (Some(stored), Some(ticket)) = (&stored, ticket) {
                cache.put(lookup_id, stored.clone(), ticket);
            }
            stored
        }
    };
    // Only a key whose whole secret matches learns anything more than "invalid".
    let stored = stored
        .filter(|k| hasher.verify(key, &k.key_hash) && k.mode == mode.as_str())
        .ok_or(AuthError::InvalidKey)?;
    if stored.revoked {
        return Err(AuthError::InvalidKey);
    }
    let now = Utc::now();
    if stored.expires_at.is_some_and(|at| at <= now) {
        return Err(AuthError::ExpiredKey);
    }
    if let Some(allowed) = &stored.allowed_ips {
        let from_allowed = client_ip.is_some_and(|ip| {
            allowed
                .iter()
                .filter_map(|entry| parse_net(entry))
                .any(|net| net.contains(&ip))
        });
        if !from_allowed {
            return Err(AuthError::IpNotAllowlisted);
        }
    }
    // last_used_at is for people reading key listings: a minute's precision
    // spares a row write on every request.
    if stored
        .last_used_at
        .is_none_or(|at| at < now - chrono::Duration::minutes(1))
    {
        sqlx::query("update api_keys set last_used_at = now() where id = $1")
            .bind(stored.id)
            .execute(pool)
            .await?;
        cache.used(lookup_id, now);
    }
    Ok(Principal {
        key_id: stored.id,
        entity_id: stored.entity_id,
        mode,
        scopes: stored.scopes,
        tier: Tier::parse(&stored.tier).ok_or(AuthError::InvalidKey)?,
    })
}

/// A key as listed: everything but the secret, which is not stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct KeySummary {
    pub id: Uuid,
    pub prefix: String,
    pub mode: String,
    pub scopes: Vec<String>,
    pub tier: String,
    pub allowed_ips: Option<Vec<String>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The keys of an entity, newest first.
pub async fn list(pool: &PgPool, entity_id: Uuid) -> Result<Vec<KeySummary>, sqlx::Error> {
    sqlx::query_as(
        "select id, prefix, mode, scopes, tier, allowed_ips, expires_at, created_at,
                last_used_at, revoked_at
         from api_keys where entity_id = $1 order by created_at desc, id desc",
    )
    .bind(entity_id)
    .fetch_all(pool)
    .await
}

/// Revokes a key at once: the commit notifies every replica, which drops the
/// key from its cache, so the next request that presents it is refused.
/// Records the revocation.
pub async fn revoke(pool: &PgPool, key_id: Uuid, actor: &Actor) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let revoked: Option<(Uuid, String)> = sqlx::query_as(
        "update api_keys set revoked_at = now() where id = $1 and revoked_at is null
         returning entity_id, lookup_id",
    )
    .bind(key_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((entity, lookup_id)) = revoked else {
        return Ok(false);
    };
    sqlx::query("select pg_notify($1, $2)")
        .bind(cache::REVOCATIONS)
        .bind(&lookup_id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        actor,
        "api_key.revoked",
        Some(entity),
        json!({"key_id": key_id}),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_depend_on_the_secret_and_verify_in_constant_time() {
        let a = KeyHasher::new("one secret");
        let b = KeyHasher::new("another secret");
        let key = "ark_test_ent_abc_AAAAAAAAAAAABBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
        assert_ne!(a.hash(key), b.hash(key));
        assert!(a.verify(key, &a.hash(key)));
        assert!(!b.verify(key, &a.hash(key)));
        assert!(!a.verify(key, "not hex"));
    }

    #[test]
    fn only_well_formed_keys_are_looked_up() {
        let good = format!("ark_live_ent_code_{}", "A".repeat(44));
        assert_eq!(parse_key(&good), Some((Mode::Live, "AAAAAAAAAAAA")));
        for bad in [
            "ark_live_ent_code_short".to_owned(),
            format!("ark_prod_ent_code_{}", "A".repeat(44)),
            format!("ark_test_ent_code_{}!", "A".repeat(43)),
        ] {
            assert_eq!(parse_key(&bad), None, "{bad}");
        }
    }

    #[test]
    fn allowlist_entries_are_blocks_or_addresses() {
        let block = parse_net("10.0.0.0/8").expect("cidr");
        assert!(block.contains(&"10.1.2.3".parse::<IpAddr>().expect("ip")));
        let single = parse_net("192.0.2.7").expect("address");
        assert!(single.contains(&"192.0.2.7".parse::<IpAddr>().expect("ip")));
        assert!(!single.contains(&"192.0.2.8".parse::<IpAddr>().expect("ip")));
        assert!(parse_net("::1").is_some());
        assert!(parse_net("localhost").is_none());
    }
}
