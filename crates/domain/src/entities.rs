//! Entities: the companies whose books this service loads. Each starts with
//! the standard chart of accounts in both modes.

use rand::Rng;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{Mode, Tenant, ledger, new_id};

/// Characters of an entity's public code: lowercase letters and digits that
/// cannot be misread for one another.
const CODE_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
const CODE_LEN: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    pub id: Uuid,
    pub name: String,
    /// The public code embedded in the entity's API keys.
    pub code: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EntityError {
    #[error("an entity name must be 1 to 200 characters")]
    InvalidName,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub async fn create(pool: &PgPool, name: &str) -> Result<Entity, EntityError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(EntityError::InvalidName);
    }
    let entity = Entity {
        id: new_id(),
        name: name.to_owned(),
        code: random_code(),
    };
    // The entity and its charts of accounts, one per mode, come into being together.
    let mut tx = pool.begin().await?;
    sqlx::query("insert into entities (id, name, code) values ($1, $2, $3)")
        .bind(entity.id)
        .bind(&entity.name)
        .bind(&entity.code)
        .execute(&mut *tx)
        .await?;
    for mode in [Mode::Test, Mode::Live] {
        let tenant = Tenant {
            entity_id: entity.id,
            mode,
        };
        ledger::create_standard_chart(&mut tx, tenant).await?;
    }
    tx.commit().await?;
    Ok(entity)
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Entity>, sqlx::Error> {
    let row: Option<(Uuid, String, String)> =
        sqlx::query_as("select id, name, code from entities where id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(id, name, code)| Entity { id, name, code }))
}

fn random_code() -> String {
    let mut rng = rand::rng();
    (0..CODE_LEN)
        .map(|_| CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())] as char)
        .collect()
}
