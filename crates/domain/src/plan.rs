//! The bookkeeping of a set-based batch handler whose records meet each other
//! only through their provenance (orders, accounts, journal entries, vendor
//! bills): which record of the batch creates, updates, skips or replaces
//! which row, decided one record after the other, and the rows the batch
//! leaves, to be written at once.

use std::collections::HashMap;

use sqlx::PgConnection;
use uuid::Uuid;

use crate::canonical::{Applied, Item, Outcome, Provenance, existing_by_provenance};
use crate::error::RecordError;
use crate::{ConflictMode, Tenant, new_id};

/// A row as the batch leaves it, with `D`, what the handler derived from the
/// record that last wrote it (resolved references, totals).
pub(crate) struct Planned<'a, I, D> {
    pub id: Uuid,
    pub input: &'a I,
    pub derived: D,
    /// Set on new rows only: an update keeps the stored provenance.
    pub provenance: Option<Provenance<'a>>,
    /// Not in the database before the batch.
    pub new: bool,
    /// The record that created a new row, whatever later records changed:
    /// what its number is drawn for.
    pub created_from: &'a I,
}

pub(crate) struct Plan<'a, I, D> {
    table: &'static str,
    /// The row each provenance of the batch names now.
    provenance: HashMap<(&'a str, &'a str), Uuid>,
    rows: Vec<Planned<'a, I, D>>,
    row_of: HashMap<Uuid, usize>,
    /// Stored rows whose provenance a replace clears.
    cleared: Vec<Uuid>,
}

impl<'a, I, D> Plan<'a, I, D> {
    /// Reads, and locks, the stored rows the batch's provenances name.
    pub async fn load(
        conn: &mut PgConnection,
        table: &'static str,
        tenant: Tenant,
        items: &'a [Item<'a, I>],
    ) -> Result<Self, sqlx::Error> {
        let provenance = existing_by_provenance(conn, table, tenant, items).await?;
        Ok(Self {
            table,
            provenance,
            rows: Vec::with_capacity(items.len()),
            row_of: HashMap::with_capacity(items.len()),
            cleared: Vec::new(),
        })
    }

    /// The stored rows the batch's provenances name, as [`Plan::load`] found
    /// them: to be read before any record is decided, as deciding adds the
    /// rows the batch creates.
    pub fn stored(&self) -> Vec<Uuid> {
        self.provenance.values().copied().collect()
    }

    /// Decides one record by its conflict mode. `derive` checks the record
    /// against what it refers to; it runs only when the record is written
    /// (skip and error mode never look at an existing record's payload).
    pub fn decide(
        &mut self,
        conflict: ConflictMode,
        item: &'a Item<'a, I>,
        derive: impl FnOnce(&'a I) -> Result<D, RecordError>,
    ) -> Applied {
        self.decide_on_row(conflict, item, |input, _| derive(input))
    }

    /// [`Plan::decide`] for rules that depend on the row a record updates:
    /// `derive` is also given the row an update writes to, stored or created
    /// earlier in the batch (none when the record creates a row).
    pub fn decide_on_row(
        &mut self,
        conflict: ConflictMode,
        item: &'a Item<'a, I>,
        derive: impl FnOnce(&'a I, Option<Uuid>) -> Result<D, RecordError>,
    ) -> Applied {
        let key = item.provenance.map(|p| (p.source, p.external_id));
        let existing = key.and_then(|k| self.provenance.get(&k).copied());
        let outcome = match (existing, conflict) {
            (Some(id), ConflictMode::Skip) => return Applied::Done(Outcome::Skipped, id),
            (Some(id), ConflictMode::Error) => return Applied::Collision(id),
            (None, _) => Outcome::Created,
            (Some(_), ConflictMode::Update) => Outcome::Updated,
            (Some(_), ConflictMode::Replace) => Outcome::Replaced,
        };
        let updated = existing.filter(|_| outcome == Outcome::Updated);
        let derived = match derive(&item.input, updated) {
            Ok(derived) => derived,
            Err(e) => return Applied::Failed(e),
        };
        let id = match (existing, outcome) {
            (Some(id), Outcome::Updated) => {
                self.update(id, &item.input, derived);
                id
            }
            (Some(old), _) => {
                match self.row_of.get(&old) {
                    Some(&row) if self.rows[row].new => self.rows[row].provenance = None,
                    _ => self.cleared.push(old),
                }
                self.create(item, derived)
            }
            (None, _) => self.create(item, derived),
        };
        Applied::Done(outcome, id)
    }

    fn create(&mut self, item: &'a Item<'a, I>, derived: D) -> Uuid {
        let id = new_id();
        if let Some(p) = item.provenance {
            self.provenance.insert((p.source, p.external_id), id);
        }
        self.row_of.insert(id, self.rows.len());
        self.rows.push(Planned {
            id,
            input: &item.input,
            derived,
            provenance: item.provenance,
            new: true,
            created_from: &item.input,
        });
        id
    }

    fn update(&mut self, id: Uuid, input: &'a I, derived: D) {
        match self.row_of.get(&id) {
            Some(&row) => {
                let row = &mut self.rows[row];
                row.input = input;
                row.derived = derived;
            }
            None => {
                self.row_of.insert(id, self.rows.len());
                self.rows.push(Planned {
                    id,
                    input,
                    derived,
                    provenance: None,
                    new: false,
                    created_from: input,
                });
            }
        }
    }

    /// Clears the provenance the batch's replaces took from stored rows, and
    /// hands the rows over to be written.
    pub async fn settle(self, conn: &mut PgConnection) -> Result<Settled<'a, I, D>, sqlx::Error> {
        if !self.cleared.is_empty() {
            sqlx::query(&format!(
                "update {} set external_source = null, external_id = null, updated_at = now()
                 where id = any($1)",
                self.table
            ))
            .bind(&self.cleared)
            .execute(&mut *conn)
            .await?;
        }
        let (new, updated) = self.rows.into_iter().partition(|row| row.new);
        Ok(Settled { new, updated })
    }
}

/// The rows a batch leaves, each kind in record order.
pub(crate) struct Settled<'a, I, D> {
    pub new: Vec<Planned<'a, I, D>>,
    pub updated: Vec<Planned<'a, I, D>>,
}

/// Decides the items one after the other with `decide`, until a collision
/// stops the batch. Returns the outcomes, and whether the batch is to be
/// written: after a collision nothing is, and the caller rolls it all back.
pub(crate) fn decide_in_order<'a, I>(
    items: &'a [Item<'a, I>],
    mut decide: impl FnMut(&'a Item<'a, I>) -> Applied,
) -> (Vec<Applied>, bool) {
    let mut outcomes = Vec::with_capacity(items.len());
    for item in items {
        let applied = decide(item);
        let collided = matches!(applied, Applied::Collision(_));
        outcomes.push(applied);
        if collided {
            return (outcomes, false);
        }
    }
    (outcomes, true)
}

/// One column of `rows`, to bind as an array.
pub(crate) fn column<'r, T, R: 'r>(rows: &'r [R], pick: impl Fn(&'r R) -> T) -> Vec<T> {
    rows.iter().map(pick).collect()
}
