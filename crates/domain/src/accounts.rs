//! Accounts: customers (`business`, `individual`, `lead`) and vendors, with
//! their addresses. Each gets an account number per entity and mode
//! (`CUST-00042`, `VEND-00007`) when it is created.

use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::ConflictMode;
use crate::error::{HandlerError, RecordError};
use crate::fields::{Fields, INVALID};
use crate::import::{
    Applied, Canonical, Item, Provenance, RecordByRecord, WriteContext, record_by_record,
};
use crate::{ledger, new_id};

const ACCOUNT_TYPES: [&str; 4] = ["business", "individual", "lead", "vendor"];
const ADDRESS_TYPES: [&str; 2] = ["billing", "shipping"];
const ADDRESSES_MAX: usize = 50;

#[derive(Debug, Clone, PartialEq)]
pub struct AccountInput {
    pub name: String,
    pub account_type: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub credit_limit: Option<Decimal>,
    pub addresses: Vec<AddressInput>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AddressInput {
    pub address_type: String,
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    pub country: Option<String>,
    pub is_default_billing: bool,
    pub is_default_shipping: bool,
}

impl AccountInput {
    pub fn parse(record: &Value) -> Result<Self, RecordError> {
        let f = Fields::of(record, "record")?;
        let name = f.required_string("name", 200)?;
        let account_type = f.required_string("account_type", 32)?;
        if !ACCOUNT_TYPES.contains(&account_type.as_str()) {
            return Err(RecordError::at(
                INVALID,
                "account_type",
                format!(
                    "account_type must be one of {}, got '{account_type}'",
                    ACCOUNT_TYPES.join(", ")
                ),
            ));
        }
        let email = f.optional_string("email", 254)?;
        if let Some(email) = &email
            && (!email.contains('@') || email.contains(char::is_whitespace))
        {
            return Err(RecordError::at(
                INVALID,
                "email",
                format!("email '{email}' is not an email address"),
            ));
        }
        let phone = f.optional_string("phone", 50)?;
        let credit_limit = f.optional_money("credit_limit")?;
        let addresses = f.parse_items("addresses", ADDRESSES_MAX, parse_address)?;
        for (flag, pick) in [
            (
                "is_default_billing",
                (|a: &AddressInput| a.is_default_billing) as fn(&AddressInput) -> bool,
            ),
            ("is_default_shipping", |a: &AddressInput| {
                a.is_default_shipping
            }),
        ] {
            if let Some(second) = addresses.iter().enumerate().filter(|(_, a)| pick(a)).nth(1) {
                return Err(RecordError::at(
                    "multiple_default_addresses",
                    format!("addresses[{}].{flag}", second.0),
                    format!("only one address can be {flag}"),
                ));
            }
        }
        Ok(Self {
            name,
            account_type,
            email,
            phone,
            credit_limit,
            addresses,
        })
    }

    fn is_vendor(&self) -> bool {
        self.account_type == "vendor"
    }
}

fn parse_address(f: &Fields<'_>) -> Result<AddressInput, RecordError> {
    let address_type = f.required_string("type", 16)?;
    if !ADDRESS_TYPES.contains(&address_type.as_str()) {
        return Err(RecordError::at(
            INVALID,
            "type",
            format!("type must be billing or shipping, got '{address_type}'"),
        ));
    }
    Ok(AddressInput {
        address_type,
        line1: f.optional_string("line1", 200)?,
        line2: f.optional_string("line2", 200)?,
        city: f.optional_string("city", 100)?,
        state: f.optional_string("state", 100)?,
        zip: f.optional_string("zip", 20)?,
        country: f.optional_string("country", 100)?,
        is_default_billing: f.optional_bool("is_default_billing")?.unwrap_or(false),
        is_default_shipping: f.optional_bool("is_default_shipping")?.unwrap_or(false),
    })
}

/// The account resource, as the import loop sees it.
pub struct Accounts;

impl Canonical for Accounts {
    type Input = AccountInput;
    const TABLE: &'static str = "accounts";

    fn parse(record: &Value) -> Result<AccountInput, RecordError> {
        AccountInput::parse(record)
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

impl RecordByRecord for Accounts {
    async fn create(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        provenance: Option<Provenance<'_>>,
        input: &AccountInput,
    ) -> Result<Uuid, HandlerError> {
        let id = new_id();
        let prefix = if input.is_vendor() { "VEND" } else { "CUST" };
        let number = ledger::next_number(conn, ctx.tenant, prefix).await?;
        sqlx::query(
            "insert into accounts
                (id, entity_id, mode, account_number, name, account_type, email, phone,
                 credit_limit, external_source, external_id)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(id)
        .bind(ctx.tenant.entity_id)
        .bind(ctx.tenant.mode.as_str())
        .bind(&number)
        .bind(&input.name)
        .bind(&input.account_type)
        .bind(&input.email)
        .bind(&input.phone)
        .bind(input.credit_limit)
        .bind(provenance.map(|p| p.source))
        .bind(provenance.map(|p| p.external_id))
        .execute(&mut *conn)
        .await?;
        insert_addresses(conn, id, &input.addresses).await?;
        Ok(id)
    }

    async fn update(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        id: Uuid,
        input: &AccountInput,
    ) -> Result<(), HandlerError> {
        sqlx::query(
            "update accounts
             set name = $4, account_type = $5, email = $6, phone = $7, credit_limit = $8,
                 updated_at = now()
             where id = $1 and entity_id = $2 and mode = $3",
        )
        .bind(id)
        .bind(ctx.tenant.entity_id)
        .bind(ctx.tenant.mode.as_str())
        .bind(&input.name)
        .bind(&input.account_type)
        .bind(&input.email)
        .bind(&input.phone)
        .bind(input.credit_limit)
        .execute(&mut *conn)
        .await?;
        sqlx::query("delete from account_addresses where account_id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        insert_addresses(conn, id, &input.addresses).await
    }
}

async fn insert_addresses(
    conn: &mut PgConnection,
    account_id: Uuid,
    addresses: &[AddressInput],
) -> Result<(), HandlerError> {
    if addresses.is_empty() {
        return Ok(());
    }
    let column = |pick: fn(&AddressInput) -> Option<&str>| -> Vec<Option<&str>> {
        addresses.iter().map(pick).collect()
    };
    sqlx::query(
        "insert into account_addresses
            (account_id, position, address_type, line1, line2, city, state, zip, country,
             is_default_billing, is_default_shipping)
         select $1, * from unnest($2::int4[], $3::text[], $4::text[], $5::text[], $6::text[],
                                 $7::text[], $8::text[], $9::text[], $10::bool[], $11::bool[])",
    )
    .bind(account_id)
    .bind((0..).take(addresses.len()).collect::<Vec<i32>>())
    .bind(column(|a| Some(a.address_type.as_str())))
    .bind(column(|a| a.line1.as_deref()))
    .bind(column(|a| a.line2.as_deref()))
    .bind(column(|a| a.city.as_deref()))
    .bind(column(|a| a.state.as_deref()))
    .bind(column(|a| a.zip.as_deref()))
    .bind(column(|a| a.country.as_deref()))
    .bind(
        addresses
            .iter()
            .map(|a| a.is_default_billing)
            .collect::<Vec<_>>(),
    )
    .bind(
        addresses
            .iter()
            .map(|a| a.is_default_shipping)
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn two_default_billing_addresses_are_refused() {
        let err = AccountInput::parse(&json!({
            "name": "Acme", "account_type": "business",
            "addresses": [{"type": "billing", "is_default_billing": true},
                          {"type": "shipping", "is_default_shipping": true},
                          {"type": "billing", "is_default_billing": true}]
        }))
        .expect_err("two defaults");
        assert_eq!(err.code, "multiple_default_addresses");
        assert_eq!(
            err.param.as_deref(),
            Some("addresses[2].is_default_billing")
        );
    }

    #[test]
    fn address_errors_name_the_address() {
        let err = AccountInput::parse(&json!({
            "name": "Acme", "account_type": "vendor", "addresses": [{"type": "home"}]
        }))
        .expect_err("bad type");
        assert_eq!(err.param.as_deref(), Some("addresses[0].type"));
        let err = AccountInput::parse(&json!({
            "name": "Acme", "account_type": "vendor", "addresses": ["Main St"]
        }))
        .expect_err("not an object");
        assert_eq!(err.param.as_deref(), Some("addresses[0]"));
    }

    #[test]
    fn account_type_and_email_are_checked() {
        let err = AccountInput::parse(&json!({"name": "A", "account_type": "partner"}))
            .expect_err("type");
        assert_eq!(err.param.as_deref(), Some("account_type"));
        let err =
            AccountInput::parse(&json!({"name": "A", "account_type": "lead", "email": "nope"}))
                .expect_err("email");
        assert_eq!(err.param.as_deref(), Some("email"));
    }
}
