//! The audit log: an append-only record of what needs answering for later
//! (keys issued and revoked, entries posted into a closed period), with who
//! did it and under which request.

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// Who acted, and under which request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    /// `key:<api key id>` or `arcusctl:<user>`.
    pub name: String,
    pub request_id: Option<String>,
}

impl Actor {
    pub fn key(key_id: Uuid, request_id: Option<&str>) -> Self {
        Self {
            name: format!("key:{key_id}"),
            request_id: request_id.map(str::to_owned),
        }
    }
}

/// Appends an event, in the caller's transaction: the event is recorded if
/// and only if what it describes is.
pub async fn record(
    conn: &mut PgConnection,
    actor: &Actor,
    action: &str,
    entity_id: Option<Uuid>,
    details: Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into audit_log (actor, action, entity_id, details, request_id)
         values ($1, $2, $3, $4, $5)",
    )
    .bind(&actor.name)
    .bind(action)
    .bind(entity_id)
    .bind(sqlx::types::Json(details))
    .bind(&actor.request_id)
    .execute(conn)
    .await
    .map(drop)
}
