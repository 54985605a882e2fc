//! The audit log: an append-only record of what needs answering for later
//! (keys issued and revoked, entries posted into a closed period), with who
//! did it and under which request.

use serde_json::Value;
use sqlx::PgConnection;
use sqlx::types::Json;
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
    record_each(conn, actor, action, entity_id, vec![details]).await
}

/// Appends one event of a kind per `details`, in their order, with one
/// statement, like [`record`].
pub async fn record_each(
    conn: &mut PgConnection,
    actor: &Actor,
    action: &str,
    entity_id: Option<Uuid>,
    details: Vec<Value>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into audit_log (actor, action, entity_id, details, request_id)
         select $1, $2, $3, d.details, $5
         from unnest($4::jsonb[]) with ordinality as d (details, n)
         order by d.n",
    )
    .bind(&actor.name)
    .bind(action)
    .bind(entity_id)
    .bind(details.into_iter().map(Json).collect::<Vec<_>>())
    .bind(&actor.request_id)
    .execute(conn)
    .await
    .map(drop)
}
