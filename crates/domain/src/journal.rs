//! Journal entries: at least two lines, each a debit or a credit to a postable
//! (active, non-header) GL account of the entity, debits equal to credits, and
//! a date outside the closed periods unless the caller may and does bypass the
//! check. Each entry gets a number per entity and mode (`JE-00042`).

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::canonical::{Applied, Canonical, Item, WriteContext};
use crate::error::RecordError;
use crate::fields::{Fields, INVALID};
use crate::plan::{Plan, Settled, column, decide_in_order};
use crate::refs::{GlIndex, GlRef, parse_gl_ref};
use crate::spec::{Field, Kind};
use crate::view::{Form, Items, Shown, View};
use crate::{ConflictMode, audit, ledger};

const LINES_MAX: usize = 1000;

const ENTRY_DATE: Field = Field::required(
    "entry_date",
    Kind::Date,
    "Refused in a closed period (period_closed) unless bypass_period_check.",
);
const DESCRIPTION: Field = Field::optional("description", Kind::Text { max: 1000 }, "");
const BYPASS_PERIOD_CHECK: Field = Field::optional(
    "bypass_period_check",
    Kind::Bool,
    "Post into a closed period; needs migration:write. Audited.",
);
const GL_ACCOUNT: Field = Field::required("gl_account", Kind::GlAccount, "The GL account.")
    .aliased(&[("account_id", "gl_account_id")]);
const ONE_SIDE: &str = "Exactly one of debit_amount and credit_amount is greater than 0.";
const DEBIT: Field = Field::optional("debit_amount", Kind::Money, ONE_SIDE);
const CREDIT: Field = Field::optional("credit_amount", Kind::Money, ONE_SIDE);
const LINES: Field = Field::required(
    "lines",
    Kind::Items {
        min: 2,
        max: LINES_MAX,
        of: &[GL_ACCOUNT, DEBIT, CREDIT, DESCRIPTION],
    },
    "Debits must equal credits (gl_imbalance).",
);

/// The fields of a journal entry record.
pub const FIELDS: &[Field] = &[ENTRY_DATE, DESCRIPTION, BYPASS_PERIOD_CHECK, LINES];

/// What a read of a journal entry shows.
pub const VIEW: View = View::record(
    "journal_entry",
    &[
        Shown::sql("entry_number", "r.entry_number", Form::Text).about("Assigned: JE-00001."),
        Shown::sql("entry_date", "r.entry_date", Form::Date),
        Shown::sql("description", "r.description", Form::Text).or_null(),
        Shown::sql(
            "bypassed_period_check",
            "r.bypassed_period_check",
            Form::Bool,
        ),
        Shown::sql(
            "total_debits",
            "(select sum(l.debit_amount) from journal_lines l where l.entry_id = r.id)",
            Form::Decimal,
        )
        .about("Computed."),
        Shown::sql(
            "total_credits",
            "(select sum(l.credit_amount) from journal_lines l where l.entry_id = r.id)",
            Form::Decimal,
        )
        .about("Computed."),
        Shown::items(
            "lines",
            Items {
                from: "journal_lines l join gl_accounts g on g.id = l.gl_account_id",
                filter: "l.entry_id = r.id",
                order_by: "l.position",
                of: &[
                    Shown::sql("gl_account_id", "l.gl_account_id", Form::Uuid),
                    Shown::sql("gl_account_number", "g.account_number", Form::Text),
                    Shown::sql("debit_amount", "l.debit_amount", Form::Decimal),
                    Shown::sql("credit_amount", "l.credit_amount", Form::Decimal),
                    Shown::sql("description", "l.description", Form::Text).or_null(),
                ],
            },
        )
        .about("In order."),
    ],
);

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
        let f = Fields::record(record, FIELDS)?;
        let entry_date = f.required_date(&ENTRY_DATE)?;
        let description = f.optional_string(&DESCRIPTION)?;
        let bypass_period_check = f.optional_bool(&BYPASS_PERIOD_CHECK)?.unwrap_or(false);
        let lines = f.parse_items(&LINES, |line| {
            let (account, account_field) = parse_gl_ref(line, &GL_ACCOUNT)?;
            let debit = line.optional_money(&DEBIT)?.unwrap_or_default();
            let credit = line.optional_money(&CREDIT)?.unwrap_or_default();
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
                description: line.optional_string(&DESCRIPTION)?,
            })
        })?;
        let debits: Decimal = lines.iter().map(|l| l.debit).sum();
        let credits: Decimal = lines.iter().map(|l| l.credit).sum();
        if debits != credits {
            // The vendor's wording (guides/journal-entries-and-period-close),
            // with the exact amounts to four places; MANUAL is the source
            // type every imported entry has.
            return Err(RecordError::at(
                "gl_imbalance",
                "lines",
                format!(
                    "GL posting imbalance [MANUAL]: debits={:.4} credits={:.4} diff={:.4}",
                    debits,
                    credits,
                    (debits - credits).abs()
                ),
            ));
        }
        Ok(Self {
            entry_date,
            description,
            bypass_period_check,
            lines,
        })
    }
}

/// The journal-entry resource: a set-based batch handler.
pub struct JournalEntries;

impl Canonical for JournalEntries {
    type Input = EntryInput;
    const TABLE: &'static str = "journal_entries";
    const FIELDS: &'static [Field] = FIELDS;

    fn parse(record: &Value) -> Result<EntryInput, RecordError> {
        EntryInput::parse(record)
    }

    async fn apply(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        conflict: ConflictMode,
        items: &[Item<'_, EntryInput>],
    ) -> Result<Vec<Applied>, sqlx::Error> {
        let mut batch = Batch::load(conn, ctx, items).await?;
        let (outcomes, write) = decide_in_order(items, |item| batch.apply(ctx, conflict, item));
        if write {
            batch.write(conn, ctx).await?;
        }
        Ok(outcomes)
    }

    fn constraint_error(_: &sqlx::Error) -> Option<RecordError> {
        None
    }
}

/// An entry's checks passed: the accounts its lines post to, and whether it
/// was posted into a closed period on purpose.
struct Resolved {
    accounts: Vec<Uuid>,
    bypassed: bool,
}

/// A batch of journal entries: what it read, and what its records have done
/// so far. Entries meet each other only through their provenance: the chart
/// and the closed period do not change while they are written.
struct Batch<'a> {
    plan: Plan<'a, EntryInput, Resolved>,
    accounts: GlIndex,
    closed_through: Option<NaiveDate>,
    /// Every write into a closed period, in record order, with the entry it
    /// wrote and the date it gave: each is an audit event, as an entry written
    /// twice by the batch would have been audited twice one at a time.
    bypasses: Vec<(Uuid, NaiveDate)>,
}

impl<'a> Batch<'a> {
    /// Reads what the batch needs: its provenances, the GL accounts of its
    /// lines, and the close date, one query each.
    async fn load(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        items: &'a [Item<'a, EntryInput>],
    ) -> Result<Self, sqlx::Error> {
        let plan = Plan::load(conn, "journal_entries", ctx.tenant, items).await?;
        let lines = items.iter().flat_map(|i| &i.input.lines);
        let accounts = GlIndex::load(conn, ctx.tenant, lines.map(|l| &l.account)).await?;
        let closed_through = ledger::closed_through(conn, ctx.tenant).await?;
        Ok(Self {
            plan,
            accounts,
            closed_through,
            bypasses: Vec::new(),
        })
    }

    fn apply(
        &mut self,
        ctx: &WriteContext<'_>,
        conflict: ConflictMode,
        item: &'a Item<'a, EntryInput>,
    ) -> Applied {
        let (accounts, closed_through) = (&self.accounts, self.closed_through);
        let mut bypassed = false;
        let applied = self.plan.decide(conflict, item, |input| {
            let resolved = resolve(ctx, accounts, closed_through, input)?;
            bypassed = resolved.bypassed;
            Ok(resolved)
        });
        // An entry that passed its checks is written.
        if let Applied::Done(_, id) = applied
            && bypassed
        {
            self.bypasses.push((id, item.input.entry_date));
        }
        applied
    }

    /// Writes what the batch decided, each kind of change in one statement.
    async fn write(
        self,
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
    ) -> Result<(), sqlx::Error> {
        let tenant = ctx.tenant;
        let Settled { new, updated } = self.plan.settle(conn).await?;
        if !updated.is_empty() {
            let ids = column(&updated, |r| r.id);
            sqlx::query(
                "update journal_entries e
                 set entry_date = u.entry_date, description = u.description,
                     bypassed_period_check = u.bypassed, updated_at = now()
                 from unnest($1::uuid[], $2::date[], $3::text[], $4::bool[])
                     as u (id, entry_date, description, bypassed)
                 where e.id = u.id and e.id = any($1)",
            )
            .bind(&ids)
            .bind(column(&updated, |r| r.input.entry_date))
            .bind(column(&updated, |r| r.input.description.as_deref()))
            .bind(column(&updated, |r| r.derived.bypassed))
            .execute(&mut *conn)
            .await?;
            // The lines are replaced as one unit.
            sqlx::query("delete from journal_lines where entry_id = any($1)")
                .bind(&ids)
                .execute(&mut *conn)
                .await?;
        }
        if !new.is_empty() {
            let numbers = ledger::allocate_numbers(conn, tenant, &vec!["JE"; new.len()]).await?;
            sqlx::query(
                "insert into journal_entries
                    (id, entity_id, mode, entry_number, entry_date, description,
                     bypassed_period_check, external_source, external_id)
                 select u.id, $1, $2, u.entry_number, u.entry_date, u.description, u.bypassed,
                        u.source, u.external_id
                 from unnest($3::uuid[], $4::text[], $5::date[], $6::text[], $7::bool[],
                             $8::text[], $9::text[])
                     as u (id, entry_number, entry_date, description, bypassed, source,
                           external_id)",
            )
            .bind(tenant.entity_id)
            .bind(tenant.mode.as_str())
            .bind(column(&new, |r| r.id))
            .bind(&numbers)
            .bind(column(&new, |r| r.input.entry_date))
            .bind(column(&new, |r| r.input.description.as_deref()))
            .bind(column(&new, |r| r.derived.bypassed))
            .bind(column(&new, |r| r.provenance.map(|p| p.source)))
            .bind(column(&new, |r| r.provenance.map(|p| p.external_id)))
            .execute(&mut *conn)
            .await?;
        }
        let lines: Vec<(Uuid, i32, Uuid, &JournalLineInput)> = new
            .iter()
            .chain(&updated)
            .flat_map(|row| {
                let lines = row.derived.accounts.iter().zip(&row.input.lines);
                (0..).zip(lines).map(|(p, (a, l))| (row.id, p, *a, l))
            })
            .collect();
        if !lines.is_empty() {
            sqlx::query(
                "insert into journal_lines
                    (entry_id, position, gl_account_id, debit_amount, credit_amount, description)
                 select * from unnest($1::uuid[], $2::int4[], $3::uuid[], $4::numeric[],
                                      $5::numeric[], $6::text[])",
            )
            .bind(column(&lines, |l| l.0))
            .bind(column(&lines, |l| l.1))
            .bind(column(&lines, |l| l.2))
            .bind(column(&lines, |l| l.3.debit))
            .bind(column(&lines, |l| l.3.credit))
            .bind(column(&lines, |l| l.3.description.as_deref()))
            .execute(&mut *conn)
            .await?;
        }
        if !self.bypasses.is_empty() {
            // Deliberate posts into a closed period are answered for later.
            let details = self
                .bypasses
                .iter()
                .map(|(id, entry_date)| {
                    json!({
                        "journal_entry_id": id,
                        "entry_date": entry_date,
                        "mode": tenant.mode,
                    })
                })
                .collect();
            audit::record_each(
                conn,
                ctx.actor,
                "journal_entry.period_check_bypassed",
                Some(tenant.entity_id),
                details,
            )
            .await?;
        }
        Ok(())
    }
}

/// Checks what the database holds: the accounts, then the closed period.
fn resolve(
    ctx: &WriteContext<'_>,
    accounts: &GlIndex,
    closed_through: Option<NaiveDate>,
    input: &EntryInput,
) -> Result<Resolved, RecordError> {
    let lines = input.lines.iter().map(|l| (&l.account, l.account_field));
    let accounts = accounts.postable("lines", lines)?;
    let mut bypassed = false;
    if let Some(closed) = closed_through
        && input.entry_date <= closed
    {
        if !(input.bypass_period_check && ctx.may_bypass_period_check) {
            let error = RecordError::at(
                "period_closed",
                "entry_date",
                format!(
                    "entry_date {} falls in a closed period (the books are closed through {closed})",
                    input.entry_date
                ),
            );
            return Err(error.with_hint(if input.bypass_period_check {
                "bypass_period_check needs a key with the migration:write scope"
            } else {
                "date the entry after the close, or set bypass_period_check with a migration:write key"
            }));
        }
        bypassed = true;
    }
    Ok(Resolved { accounts, bypassed })
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
            err.message,
            "GL posting imbalance [MANUAL]: debits=500.0000 credits=300.0000 diff=200.0000"
        );
        assert_eq!(err.hint, None);
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
