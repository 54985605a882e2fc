//! Journal entries: at least two lines, each a debit or a credit to a postable
//! (active, non-header) GL account of the entity, debits equal to credits, and
//! a date outside the closed periods unless the caller may and does bypass the
//! check. Each entry gets a number per entity and mode (`JE-00042`).

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::ConflictMode;
use crate::error::{HandlerError, RecordError};
use crate::fields::{Fields, INVALID, MISSING};
use crate::import::{
    Applied, Canonical, Item, Provenance, RecordByRecord, WriteContext, record_by_record,
};
use crate::refs::{self, GlRef, parse_gl_ref};
use crate::{audit, ledger, new_id};

const LINES_MAX: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct EntryInput {
    pub entry_date: NaiveDate,
    pub description: Option<String>,
    pub bypass_period_check: bool,
    pub lines: Vec<JournalLineInput>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JournalLineInput {
    pub account: GlRef,
    pub account_field: &'static str,
    pub debit: Decimal,
    pub credit: Decimal,
    pub description: Option<String>,
}

impl EntryInput {
    pub fn parse(record: &Value) -> Result<Self, RecordError> {
        let f = Fields::of(record, "record")?;
        let entry_date = f.required_date("entry_date")?;
        let description = f.optional_string("description", 1000)?;
        let bypass_period_check = f.optional_bool("bypass_period_check")?.unwrap_or(false);
        let lines = f.parse_items("lines", LINES_MAX, |line| {
            let (account, account_field) = parse_gl_ref(line)?;
            let debit = line.optional_money("debit_amount")?.unwrap_or_default();
            let credit = line.optional_money("credit_amount")?.unwrap_or_default();
            if debit.is_zero() == credit.is_zero() {
                return Err(RecordError::at(
                    INVALID,
                    "debit_amount",
                    "a line is either a debit or a credit: exactly one of debit_amount and \
                     credit_amount must be greater than 0",
                ));
            }
            Ok(JournalLineInput {
                account,
                account_field,
                debit,
                credit,
                description: line.optional_string("description", 1000)?,
            })
        })?;
        if lines.len() < 2 {
            return Err(RecordError::at(
                MISSING,
                "lines",
                format!(
                    "a journal entry needs at least 2 lines, got {}",
                    lines.len()
                ),
            ));
        }
        let debits: Decimal = lines.iter().map(|l| l.debit).sum();
        let credits: Decimal = lines.iter().map(|l| l.credit).sum();
        if debits != credits {
            return Err(RecordError::at(
                "gl_imbalance",
                "lines",
                "the entry does not balance: debits must equal credits",
            )
            .with_hint(format!(
                "debits={:.2} credits={:.2} diff={:.2}",
                debits,
                credits,
                (debits - credits).abs()
            )));
        }
        Ok(Self {
            entry_date,
            description,
            bypass_period_check,
            lines,
        })
    }
}

/// Checks what needs the database: the accounts, and the closed period.
/// Returns the lines' account ids and whether the period check was bypassed.
async fn resolve(
    conn: &mut PgConnection,
    ctx: &WriteContext<'_>,
    input: &EntryInput,
) -> Result<(Vec<Uuid>, bool), HandlerError> {
    let refs: Vec<(String, &GlRef, &'static str)> = input
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| (format!("lines[{i}]"), &l.account, l.account_field))
        .collect();
    let accounts = refs::resolve_gl(conn, ctx.tenant, &refs).await?;
    let mut bypassed = false;
    if let Some(closed) = ledger::closed_through(conn, ctx.tenant).await?
        && input.entry_date <= closed
    {
        if !(input.bypass_period_check && ctx.may_bypass_period_check) {
            let mut error = RecordError::at(
                "period_closed",
                "entry_date",
                format!(
                    "entry_date {} falls in a closed period (the books are closed through {closed})",
                    input.entry_date
                ),
            );
            error = error.with_hint(if input.bypass_period_check {
                "bypass_period_check needs a key with the migration:write scope"
            } else {
                "date the entry after the close, or set bypass_period_check with a migration:write key"
            });
            return Err(error.into());
        }
        bypassed = true;
    }
    Ok((accounts, bypassed))
}

/// Records a deliberate post into a closed period in the audit log.
async fn audit_bypass(
    conn: &mut PgConnection,
    ctx: &WriteContext<'_>,
    entry_id: Uuid,
    input: &EntryInput,
) -> Result<(), sqlx::Error> {
    audit::record(
        conn,
        ctx.actor,
        "journal_entry.period_check_bypassed",
        Some(ctx.tenant.entity_id),
        json!({
            "journal_entry_id": entry_id,
            "entry_date": input.entry_date,
            "mode": ctx.tenant.mode,
        }),
    )
    .await
}

/// The journal-entry resource, as the import loop sees it.
pub struct JournalEntries;

impl Canonical for JournalEntries {
    type Input = EntryInput;
    const TABLE: &'static str = "journal_entries";

    fn parse(record: &Value) -> Result<EntryInput, RecordError> {
        EntryInput::parse(record)
    }

    async fn apply(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        conflict: ConflictMode,
        items: &[Item<'_, Self::Input>],
    ) -> Result<Vec<Applied>, sqlx::Error> {
        record_by_record::<Self>(conn, ctx, conflict, items).await
    }

    fn constraint_error(_: &sqlx::Error) -> Option<RecordError> {
        None
    }
}

impl RecordByRecord for JournalEntries {
    async fn create(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        provenance: Option<Provenance<'_>>,
        input: &EntryInput,
    ) -> Result<Uuid, HandlerError> {
        let (accounts, bypassed) = resolve(conn, ctx, input).await?;
        let id = new_id();
        let number = ledger::next_number(conn, ctx.tenant, "JE").await?;
        sqlx::query(
            "insert into journal_entries
                (id, entity_id, mode, entry_number, entry_date, description,
                 bypassed_period_check, external_source, external_id)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id)
        .bind(ctx.tenant.entity_id)
        .bind(ctx.tenant.mode.as_str())
        .bind(&number)
        .bind(input.entry_date)
        .bind(&input.description)
        .bind(bypassed)
        .bind(provenance.map(|p| p.source))
        .bind(provenance.map(|p| p.external_id))
        .execute(&mut *conn)
        .await?;
        insert_lines(conn, id, &accounts, &input.lines).await?;
        if bypassed {
            audit_bypass(conn, ctx, id, input).await?;
        }
        Ok(id)
    }

    async fn update(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        id: Uuid,
        input: &EntryInput,
    ) -> Result<(), HandlerError> {
        let (accounts, bypassed) = resolve(conn, ctx, input).await?;
        sqlx::query(
            "update journal_entries
             set entry_date = $4, description = $5, bypassed_period_check = $6, updated_at = now()
             where id = $1 and entity_id = $2 and mode = $3",
        )
        .bind(id)
        .bind(ctx.tenant.entity_id)
        .bind(ctx.tenant.mode.as_str())
        .bind(input.entry_date)
        .bind(&input.description)
        .bind(bypassed)
        .execute(&mut *conn)
        .await?;
        // The lines are replaced as one unit.
        sqlx::query("delete from journal_lines where entry_id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        insert_lines(conn, id, &accounts, &input.lines).await?;
        if bypassed {
            audit_bypass(conn, ctx, id, input).await?;
        }
        Ok(())
    }
}

async fn insert_lines(
    conn: &mut PgConnection,
    entry_id: Uuid,
    accounts: &[Uuid],
    lines: &[JournalLineInput],
) -> Result<(), HandlerError> {
    sqlx::query(
        "insert into journal_lines
            (entry_id, position, gl_account_id, debit_amount, credit_amount, description)
         select $1, * from unnest($2::int4[], $3::uuid[], $4::numeric[], $5::numeric[], $6::text[])",
    )
    .bind(entry_id)
    .bind((0..).take(lines.len()).collect::<Vec<i32>>())
    .bind(accounts)
    .bind(lines.iter().map(|l| l.debit).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.credit).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.description.as_deref()).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_unbalanced_entry_says_by_how_much() {
        let err = EntryInput::parse(&json!({
            "entry_date": "2026-01-31",
            "lines": [{"gl_account_number": "6010", "debit_amount": 500},
                      {"gl_account_number": "1010", "credit_amount": 300}]
        }))
        .expect_err("unbalanced");
        assert_eq!(err.code, "gl_imbalance");
        assert_eq!(
            err.hint.as_deref(),
            Some("debits=500.00 credits=300.00 diff=200.00")
        );
    }

    #[test]
    fn a_line_is_a_debit_or_a_credit() {
        for line in [
            json!({"gl_account_number": "6010", "debit_amount": 5, "credit_amount": 5}),
            json!({"gl_account_number": "6010"}),
        ] {
            let err = EntryInput::parse(&json!({
                "entry_date": "2026-01-31",
                "lines": [{"gl_account_number": "1010", "credit_amount": 5}, line]
            }))
            .expect_err("both or neither");
            assert_eq!(err.param.as_deref(), Some("lines[1].debit_amount"));
        }
    }

    #[test]
    fn an_entry_needs_two_lines_and_an_account_on_each() {
        let err = EntryInput::parse(&json!({
            "entry_date": "2026-01-31", "lines": [{"gl_account_number": "1010", "debit_amount": 1}]
        }))
        .expect_err("one line");
        assert_eq!(err.param.as_deref(), Some("lines"));
        let err = EntryInput::parse(&json!({
            "entry_date": "2026-01-31",
            "lines": [{"debit_amount": 1}, {"gl_account_number": "1010", "credit_amount": 1}]
        }))
        .expect_err("no account");
        assert_eq!(err.param.as_deref(), Some("lines[0].gl_account_id"));
    }
}
