//! Keys a replica has looked up recently, so that a request costs one query
//! less: a status read, the most frequent request, is then a single query.
//!
//! Revocation must still reach every replica at once. `revoke` notifies the
//! `arcus_api_key_revoked` channel with the key's lookup id in its own
//! transaction, and each replica's listener ([`follow_revocations`]) drops the
//! key as Postgres delivers the notification, at the commit. A cached key is
//! trusted only while that listener is connected: when it loses its
//! connection the cache is emptied and stays unused until the listener is
//! back, so a revocation it could have missed is read from the table. A
//! look-up that began before a revocation never caches what it read, and no
//! key is kept longer than [`MAX_AGE`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use uuid::Uuid;

/// The channel `revoke` notifies, with the revoked key's lookup id.
pub(crate) const REVOCATIONS: &str = "arcus_api_key_revoked";
/// The longest a key is served from the cache before it is read again.
pub const MAX_AGE: Duration = Duration::from_secs(10);
/// Keys held at most; past this the cache starts over.
const MAX_KEYS: usize = 10_000;

/// A key as stored, without its secret: what authenticating a request needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct StoredKey {
    pub id: Uuid,
    pub entity_id: Uuid,
    pub mode: String,
    pub key_hash: String,
    pub scopes: Vec<String>,
    pub tier: String,
    pub allowed_ips: Option<Vec<String>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked: bool,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
pub struct KeyCache {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The listener's current connection, while it has one.
    session: Option<u64>,
    /// Connections the listener has made so far.
    sessions: u64,
    /// Revocations heard so far.
    revocations: u64,
    keys: HashMap<String, Cached>,
}

#[derive(Debug)]
struct Cached {
    key: StoredKey,
    session: u64,
    fetched: Instant,
}

/// Taken before a key is read from the table: what it read may be cached
/// only if no revocation was heard and the listener did not reconnect
/// meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    session: u64,
    revocations: u64,
}

impl KeyCache {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves nothing half-done: every
        // change below is a single assignment or map operation.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key, if it may be served from the cache.
    pub(crate) fn get(&self, lookup_id: &str) -> Option<StoredKey> {
        let state = self.state();
        let session = state.session?;
        state
            .keys
            .get(lookup_id)
            .filter(|c| c.session == session && c.fetched.elapsed() < MAX_AGE)
            .map(|c| c.key.clone())
    }

    /// A ticket for a read of the table, or `None` while nothing may be cached.
    pub(crate) fn ticket(&self) -> Option<Ticket> {
        let state = self.state();
        Some(Ticket {
            session: state.session?,
            revocations: state.revocations,
        })
    }

    /// Caches what a read under `ticket` found, unless a revocation was heard
    /// or the listener reconnected since the ticket was taken.
    pub(crate) fn put(&self, lookup_id: &str, key: StoredKey, ticket: Ticket) {
        let mut state = self.state();
        let current = state.session.map(|session| Ticket {
            session,
            revocations: state.revocations,
        });
        if current != Some(ticket) {
            return;
        }
        if state.keys.len() >= MAX_KEYS {
            state.keys.clear();
        }
        state.keys.insert(
            lookup_id.to_owned(),
            Cached {
                key,
                session: ticket.session,
                fetched: Instant::now(),
            },
        );
    }

    /// Notes that the key was just marked used.
    pub(crate) fn used(&self, lookup_id: &str, at: DateTime<Utc>) {
        if let Some(cached) = self.state().keys.get_mut(lookup_id) {
            cached.key.last_used_at = Some(at);
        }
    }

    fn revoked(&self, lookup_id: &str) {
        let mut state = self.state();
        state.revocations += 1;
        state.keys.remove(lookup_id);
    }

    fn connected(&self) {
        let mut state = self.state();
        state.sessions += 1;
        state.session = Some(state.sessions);
        state.keys.clear();
    }

    fn disconnected(&self) {
        let mut state = self.state();
        state.session = None;
        state.keys.clear();
    }
}

/// Listens for revocations for as long as the process lives, reconnecting
/// with backoff; the cache is in use only while it listens.
pub async fn follow_revocations(pool: PgPool, cache: Arc<KeyCache>) {
    const FIRST_WAIT: Duration = Duration::from_millis(100);
    const LONGEST_WAIT: Duration = Duration::from_secs(5);
    let mut wait = FIRST_WAIT;
    loop {
        match listen(&pool).await {
            Ok(mut listener) => {
                cache.connected();
                wait = FIRST_WAIT;
                // `Ok(None)` is a lost connection: notifications may have
                // been missed, and a fresh listener starts over.
                while let Ok(Some(notification)) = listener.try_recv().await {
                    cache.revoked(notification.payload());
                }
                cache.disconnected();
                tracing::warn!("the key revocation listener lost its connection; reconnecting");
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for key revocations; keys are read on every request");
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(LONGEST_WAIT);
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(REVOCATIONS).await?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> StoredKey {
        StoredKey {
            id: Uuid::nil(),
            entity_id: Uuid::nil(),
            mode: "test".to_owned(),
            key_hash: String::new(),
            scopes: Vec::new(),
            tier: "test".to_owned(),
            allowed_ips: None,
            expires_at: None,
            revoked: false,
            last_used_at: None,
        }
    }

    #[test]
    fn nothing_is_cached_or_served_without_a_listener() {
        let cache = KeyCache::new();
        assert_eq!(cache.ticket(), None);
        cache.connected();
        let ticket = cache.ticket().expect("listening");
        cache.put("a", key(), ticket);
        assert!(cache.get("a").is_some());
        cache.disconnected();
        assert!(
            cache.get("a").is_none(),
            "a listener down empties the cache"
        );
        assert_eq!(cache.ticket(), None);
        cache.put("a", key(), ticket);
        assert!(cache.get("a").is_none());
    }

    #[test]
    fn a_revocation_drops_its_key_and_what_reads_begun_before_it_found() {
        let cache = KeyCache::new();
        cache.connected();
        cache.put("a", key(), cache.ticket().expect("listening"));
        cache.put("b", key(), cache.ticket().expect("listening"));
        let before = cache.ticket().expect("listening");
        cache.revoked("a");
        assert!(cache.get("a").is_none());
        assert!(cache.get("b").is_some(), "other keys stay");
        cache.put("a", key(), before);
        assert!(cache.get("a").is_none(), "read before the revocation");
        cache.put("a", key(), cache.ticket().expect("listening"));
        assert!(cache.get("a").is_some(), "read after it");
    }

    #[test]
    fn a_reconnected_listener_starts_over() {
        let cache = KeyCache::new();
        cache.connected();
        let old = cache.ticket().expect("listening");
        cache.put("a", key(), old);
        cache.disconnected();
        cache.connected();
        assert!(cache.get("a").is_none());
        cache.put("a", key(), old);
        assert!(cache.get("a").is_none(), "read in an older session");
    }

    #[test]
    fn use_is_noted_on_the_cached_key() {
        let cache = KeyCache::new();
        cache.connected();
        cache.put("a", key(), cache.ticket().expect("listening"));
        let at = Utc::now();
        cache.used("a", at);
        assert_eq!(cache.get("a").expect("cached").last_used_at, Some(at));
    }
}
