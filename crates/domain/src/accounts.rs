//! Accounts: customers (`business`, `individual`, `lead`) and vendors, with
//! their addresses. Each gets an account number per entity and mode
//! (`CUST-00042`, `VEND-00007`) when it is created.

use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use crate::canonical::{Applied, Canonical, Item, WriteContext};
use crate::error::RecordError;
use crate::fields::{Fields, MISSING};
use crate::named::{Named, named_enum};
use crate::plan::{Plan, Settled, column, decide_in_order};
use crate::refs::{RefField, RefIndex};
use crate::spec::{Field, Kind};
use crate::view::{Form, Items, Shown, View};
use crate::{ConflictMode, Tenant, ledger};

named_enum! {
    /// Customers are `business`, `individual` or `lead`; a `vendor` is paid.
    pub enum AccountType {
        Business = "business",
        Individual = "individual",
        Lead = "lead",
        Vendor = "vendor",
    }
}

named_enum! {
    pub enum AddressType {
        Billing = "billing",
        Shipping = "shipping",
    }
}
const ADDRESSES_MAX: usize = 50;
const CONTACTS_MAX: usize = 50;
const TAGS_MAX: usize = 50;

const NAME: Field = Field::required("name", Kind::Text { max: 200 }, "");
const DISPLAY_NAME: Field = Field::optional(
    "display_name",
    Kind::Text { max: 200 },
    "The name shown to people, when not name.",
);
const TAGS: Field = Field::optional(
    "tags",
    Kind::Texts {
        items: TAGS_MAX,
        max: 100,
    },
    "Labels; blank ones and repeats are left out.",
);
const ACCOUNT_TYPE: Field = Field::required(
    "account_type",
    Kind::Enum(AccountType::NAMES),
    "business, individual and lead are customers; vendor is a supplier.",
);
const EMAIL: Field = Field::optional("email", Kind::Email { max: 254 }, "An email address.");
const PHONE: Field = Field::optional("phone", Kind::Text { max: 50 }, "");
const CREDIT_LIMIT: Field = Field::optional("credit_limit", Kind::Money, "Credit limit.");
const ADDRESS_TYPE: Field =
    Field::required("type", Kind::Enum(AddressType::NAMES), "Address type.");
// The vendor's address pages name the lines street1 and street2, the state
// region and the zip postal_code.
const LINE1: Field =
    Field::optional("line1", Kind::Text { max: 200 }, "").aliased(&[("street1", "line1")]);
const LINE2: Field =
    Field::optional("line2", Kind::Text { max: 200 }, "").aliased(&[("street2", "line2")]);
const CITY: Field = Field::optional("city", Kind::Text { max: 100 }, "");
const STATE: Field =
    Field::optional("state", Kind::Text { max: 100 }, "").aliased(&[("region", "state")]);
const ZIP: Field =
    Field::optional("zip", Kind::Text { max: 20 }, "").aliased(&[("postal_code", "zip")]);
const COUNTRY: Field = Field::optional("country", Kind::Text { max: 100 }, "");
const LABEL: Field = Field::optional("label", Kind::Text { max: 100 }, "HQ, Main Warehouse, ...");
const DEFAULT_BILLING: Field = Field::optional(
    "is_default_billing",
    Kind::Bool,
    "At most one per account; none flagged: the first billing address.",
);
const DEFAULT_SHIPPING: Field = Field::optional(
    "is_default_shipping",
    Kind::Bool,
    "At most one per account; none flagged: the first shipping address.",
);
const ADDRESSES: Field = Field::optional(
    "addresses",
    Kind::Items {
        min: 0,
        max: ADDRESSES_MAX,
        of: &[
            ADDRESS_TYPE,
            LABEL,
            LINE1,
            LINE2,
            CITY,
            STATE,
            ZIP,
            COUNTRY,
            DEFAULT_BILLING,
            DEFAULT_SHIPPING,
        ],
    },
    "Addresses, replaced as one unit on update.",
);
const FIRST_NAME: Field = Field::optional("first_name", Kind::Text { max: 100 }, "");
const LAST_NAME: Field = Field::optional("last_name", Kind::Text { max: 100 }, "");
const CONTACT_EMAIL: Field = Field::optional("email", Kind::Email { max: 254 }, "");
const CONTACT_PHONE: Field = Field::optional("phone", Kind::Text { max: 50 }, "");
// The vendor's creating-accounts-with-addresses guide: `role` is stored as
// `title`, and both are accepted.
const TITLE: Field = Field::optional("title", Kind::Text { max: 100 }, "Also given as role.")
    .aliased(&[("role", "title")]);
const PRIMARY: Field = Field::optional("is_primary", Kind::Bool, "At most one per account.");
const CONTACTS: Field = Field::optional(
    "contacts",
    Kind::Items {
        min: 0,
        max: CONTACTS_MAX,
        of: &[
            FIRST_NAME,
            LAST_NAME,
            CONTACT_EMAIL,
            CONTACT_PHONE,
            TITLE,
            PRIMARY,
        ],
    },
    "People at the account, each with a first_name, last_name or email; replaced as one unit on update.",
);

/// The fields of an account record.
pub const FIELDS: &[Field] = &[
    NAME,
    DISPLAY_NAME,
    ACCOUNT_TYPE,
    EMAIL,
    PHONE,
    CREDIT_LIMIT,
    TAGS,
    ADDRESSES,
    CONTACTS,
];

/// What a read of an account shows.
pub const VIEW: View = View::record(
    "account",
    &[
        Shown::sql("account_number", "r.account_number", Form::Text)
            .about("Assigned: CUST-00001 or VEND-00001."),
        Shown::sql("name", "r.name", Form::Text),
        Shown::sql("display_name", "r.display_name", Form::Text).or_null(),
        Shown::sql(
            "account_type",
            "r.account_type",
            Form::Enum(AccountType::NAMES),
        ),
        Shown::sql("email", "r.email", Form::Text).or_null(),
        Shown::sql("phone", "r.phone", Form::Text).or_null(),
        Shown::sql("credit_limit", "r.credit_limit", Form::Decimal).or_null(),
        Shown::sql("tags", "r.tags", Form::Texts),
        Shown::items(
            "addresses",
            Items {
                from: "account_addresses a",
                filter: "a.account_id = r.id",
                order_by: "a.position",
                of: &[
                    Shown::sql("type", "a.address_type", Form::Enum(AddressType::NAMES)),
                    Shown::sql("label", "a.label", Form::Text).or_null(),
                    Shown::sql("line1", "a.line1", Form::Text).or_null(),
                    Shown::sql("line2", "a.line2", Form::Text).or_null(),
                    Shown::sql("city", "a.city", Form::Text).or_null(),
                    Shown::sql("state", "a.state", Form::Text).or_null(),
                    Shown::sql("zip", "a.zip", Form::Text).or_null(),
                    Shown::sql("country", "a.country", Form::Text).or_null(),
                    Shown::sql("is_default_billing", "a.is_default_billing", Form::Bool),
                    Shown::sql("is_default_shipping", "a.is_default_shipping", Form::Bool),
                ],
            },
        )
        .about("As submitted, in order."),
        Shown::items(
            "contacts",
            Items {
                from: "account_contacts c",
                filter: "c.account_id = r.id",
                order_by: "c.position",
                of: &[
                    Shown::sql("first_name", "c.first_name", Form::Text).or_null(),
                    Shown::sql("last_name", "c.last_name", Form::Text).or_null(),
                    Shown::sql("email", "c.email", Form::Text).or_null(),
                    Shown::sql("phone", "c.phone", Form::Text).or_null(),
                    Shown::sql("title", "c.title", Form::Text).or_null(),
                    Shown::sql("is_primary", "c.is_primary", Form::Bool),
                ],
            },
        )
        .about("As submitted, in order."),
    ],
);

#[derive(Debug, Clone, PartialEq)]
pub struct AccountInput {
    pub name: String,
    pub display_name: Option<String>,
    pub account_type: AccountType,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub credit_limit: Option<Decimal>,
    pub tags: Vec<String>,
    pub addresses: Vec<AddressInput>,
    pub contacts: Vec<ContactInput>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContactInput {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub title: Option<String>,
    pub is_primary: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AddressInput {
    pub address_type: AddressType,
    pub label: Option<String>,
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
        let f = Fields::record(record, FIELDS)?;
        let name = f.required_string(&NAME)?;
        let display_name = f.optional_string(&DISPLAY_NAME)?;
        let account_type = f.required_enum(&ACCOUNT_TYPE)?;
        let email = f.optional_email(&EMAIL)?;
        let phone = f.optional_string(&PHONE)?;
        let credit_limit = f.optional_money(&CREDIT_LIMIT)?;
        let tags = f.texts(&TAGS)?;
        let mut addresses = f.parse_items(&ADDRESSES, parse_address)?;
        let contacts = f.parse_items(&CONTACTS, parse_contact)?;
        if let Some((i, _)) = contacts
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_primary)
            .nth(1)
        {
            return Err(RecordError::at(
                "multiple_primary_contacts",
                format!("contacts[{i}].is_primary"),
                "only one contact can be is_primary",
            ));
        }
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
        default_first_of_each_type(&mut addresses);
        Ok(Self {
            name,
            display_name,
            account_type,
            email,
            phone,
            credit_limit,
            tags,
            addresses,
            contacts,
        })
    }

    fn is_vendor(&self) -> bool {
        self.account_type == AccountType::Vendor
    }
}

/// The vendor account a reference names, from accounts loaded with their
/// `account_type`; `at` is where the reference is in the record (empty: the
/// record itself).
pub(crate) fn vendor_of(
    ctx: &WriteContext<'_>,
    vendors: &RefIndex<String>,
    at: &str,
    vendor: &RefField,
) -> Result<Uuid, RecordError> {
    let (id, account_type) = vendors.resolve(ctx, "vendor", at, vendor, |_| None)?;
    if account_type != AccountType::Vendor.as_str() {
        let param = if at.is_empty() {
            vendor.field.clone()
        } else {
            format!("{at}.{}", vendor.field)
        };
        return Err(RecordError::at(
            "account_not_vendor",
            param,
            format!("the account is a {account_type} customer, not a vendor"),
        ));
    }
    Ok(id)
}

/// As the vendor's creating-accounts-with-addresses guide has it: with no
/// address flagged the default of its kind, the first address of that type
/// is.
fn default_first_of_each_type(addresses: &mut [AddressInput]) {
    if !addresses.iter().any(|a| a.is_default_billing)
        && let Some(first) = addresses
            .iter_mut()
            .find(|a| a.address_type == AddressType::Billing)
    {
        first.is_default_billing = true;
    }
    if !addresses.iter().any(|a| a.is_default_shipping)
        && let Some(first) = addresses
            .iter_mut()
            .find(|a| a.address_type == AddressType::Shipping)
    {
        first.is_default_shipping = true;
    }
}

fn parse_contact(f: &Fields<'_>) -> Result<ContactInput, RecordError> {
    let contact = ContactInput {
        first_name: f.optional_string(&FIRST_NAME)?,
        last_name: f.optional_string(&LAST_NAME)?,
        email: f.optional_email(&CONTACT_EMAIL)?,
        phone: f.optional_string(&CONTACT_PHONE)?,
        title: f.optional_string(&TITLE)?,
        is_primary: f.optional_bool(&PRIMARY)?.unwrap_or(false),
    };
    if contact.first_name.is_none() && contact.last_name.is_none() && contact.email.is_none() {
        return Err(RecordError::at(
            MISSING,
            "first_name",
            "a contact needs a first_name, a last_name or an email",
        ));
    }
    Ok(contact)
}

fn parse_address(f: &Fields<'_>) -> Result<AddressInput, RecordError> {
    Ok(AddressInput {
        address_type: f.required_enum(&ADDRESS_TYPE)?,
        label: f.optional_string(&LABEL)?,
        line1: f.optional_string(&LINE1)?,
        line2: f.optional_string(&LINE2)?,
        city: f.optional_string(&CITY)?,
        state: f.optional_string(&STATE)?,
        zip: f.optional_string(&ZIP)?,
        country: f.optional_string(&COUNTRY)?,
        is_default_billing: f.optional_bool(&DEFAULT_BILLING)?.unwrap_or(false),
        is_default_shipping: f.optional_bool(&DEFAULT_SHIPPING)?.unwrap_or(false),
    })
}

/// The account resource: a set-based batch handler.
pub struct Accounts;

impl Canonical for Accounts {
    type Input = AccountInput;
    const TABLE: &'static str = "accounts";
    const FIELDS: &'static [Field] = FIELDS;

    fn parse(record: &Value) -> Result<AccountInput, RecordError> {
        AccountInput::parse(record)
    }

    async fn apply(
        conn: &mut PgConnection,
        ctx: &WriteContext<'_>,
        conflict: ConflictMode,
        items: &[Item<'_, AccountInput>],
    ) -> Result<Vec<Applied>, sqlx::Error> {
        // Every rule of an account is checked when it is parsed: it refers to
        // nothing, so only its provenance meets the other records.
        let mut plan: Plan<'_, AccountInput, ()> =
            Plan::load(conn, "accounts", ctx.tenant, items).await?;
        let (outcomes, write) =
            decide_in_order(items, |item| plan.decide(conflict, item, |_| Ok(())));
        if write {
            let settled = plan.settle(conn).await?;
            write_accounts(conn, ctx.tenant, settled).await?;
        }
        Ok(outcomes)
    }

    fn constraint_error(_: &sqlx::Error) -> Option<RecordError> {
        None
    }
}

/// Writes what a batch decided, each kind of change in one statement. An
/// update replaces the addresses as one unit.
async fn write_accounts(
    conn: &mut PgConnection,
    tenant: Tenant,
    Settled { new, updated }: Settled<'_, AccountInput, ()>,
) -> Result<(), sqlx::Error> {
    if !updated.is_empty() {
        let ids = column(&updated, |r| r.id);
        sqlx::query(
            "update accounts a
             set name = u.name, account_type = u.account_type, email = u.email,
                 phone = u.phone, credit_limit = u.credit_limit,
                 display_name = u.display_name, tags = array(select jsonb_array_elements_text(u.tags)), updated_at = now()
             from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::numeric[], $7::text[], $8::jsonb[])
                 as u (id, name, account_type, email, phone, credit_limit, display_name,
                       tags)
             where a.id = u.id and a.id = any($1)",
        )
        .bind(&ids)
        .bind(column(&updated, |r| r.input.name.as_str()))
        .bind(column(&updated, |r| r.input.account_type.as_str()))
        .bind(column(&updated, |r| r.input.email.as_deref()))
        .bind(column(&updated, |r| r.input.phone.as_deref()))
        .bind(column(&updated, |r| r.input.credit_limit))
        .bind(column(&updated, |r| r.input.display_name.as_deref()))
        .bind(column(&updated, |r| Json(&r.input.tags)))
        .execute(&mut *conn)
        .await?;
        for children in ["account_addresses", "account_contacts"] {
            sqlx::query(&format!(
                "delete from {children} where account_id = any($1)"
            ))
            .bind(&ids)
            .execute(&mut *conn)
            .await?;
        }
    }
    if !new.is_empty() {
        let prefixes = column(&new, |r| {
            if r.created_from.is_vendor() {
                "VEND"
            } else {
                "CUST"
            }
        });
        let numbers = ledger::allocate_numbers(conn, tenant, &prefixes).await?;
        sqlx::query(
            "insert into accounts
                (id, entity_id, mode, account_number, name, account_type, email, phone,
                 credit_limit, display_name, tags, external_source, external_id)
             select u.id, $1, $2, u.account_number, u.name, u.account_type, u.email, u.phone,
                    u.credit_limit, u.display_name, array(select jsonb_array_elements_text(u.tags)), u.source, u.external_id
             from unnest($3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::text[], $9::numeric[], $10::text[], $11::jsonb[], $12::text[],
                         $13::text[])
                 as u (id, account_number, name, account_type, email, phone, credit_limit,
                       display_name, tags, source, external_id)",
        )
        .bind(tenant.entity_id)
        .bind(tenant.mode.as_str())
        .bind(column(&new, |r| r.id))
        .bind(&numbers)
        .bind(column(&new, |r| r.input.name.as_str()))
        .bind(column(&new, |r| r.input.account_type.as_str()))
        .bind(column(&new, |r| r.input.email.as_deref()))
        .bind(column(&new, |r| r.input.phone.as_deref()))
        .bind(column(&new, |r| r.input.credit_limit))
        .bind(column(&new, |r| r.input.display_name.as_deref()))
        .bind(column(&new, |r| Json(&r.input.tags)))
        .bind(column(&new, |r| r.provenance.map(|p| p.source)))
        .bind(column(&new, |r| r.provenance.map(|p| p.external_id)))
        .execute(&mut *conn)
        .await?;
    }
    let rows = || new.iter().chain(&updated);
    let contacts: Vec<(Uuid, i32, &ContactInput)> = rows()
        .flat_map(|row| (0..).zip(&row.input.contacts).map(|(p, c)| (row.id, p, c)))
        .collect();
    if !contacts.is_empty() {
        let text = |pick: fn(&ContactInput) -> Option<&str>| -> Vec<Option<&str>> {
            contacts.iter().map(|(_, _, c)| pick(c)).collect()
        };
        sqlx::query(
            "insert into account_contacts
                (account_id, position, first_name, last_name, email, phone, title, is_primary)
             select * from unnest($1::uuid[], $2::int4[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::text[], $8::bool[])",
        )
        .bind(column(&contacts, |c| c.0))
        .bind(column(&contacts, |c| c.1))
        .bind(text(|c| c.first_name.as_deref()))
        .bind(text(|c| c.last_name.as_deref()))
        .bind(text(|c| c.email.as_deref()))
        .bind(text(|c| c.phone.as_deref()))
        .bind(text(|c| c.title.as_deref()))
        .bind(column(&contacts, |c| c.2.is_primary))
        .execute(&mut *conn)
        .await?;
    }
    let addresses: Vec<(Uuid, i32, &AddressInput)> = rows()
        .flat_map(|row| (0..).zip(&row.input.addresses).map(|(p, a)| (row.id, p, a)))
        .collect();
    if addresses.is_empty() {
        return Ok(());
    }
    let text = |pick: fn(&AddressInput) -> Option<&str>| -> Vec<Option<&str>> {
        addresses.iter().map(|(_, _, a)| pick(a)).collect()
    };
    sqlx::query(
        "insert into account_addresses
            (account_id, position, address_type, line1, line2, city, state, zip, country,
             is_default_billing, is_default_shipping, label)
         select * from unnest($1::uuid[], $2::int4[], $3::text[], $4::text[], $5::text[],
                              $6::text[], $7::text[], $8::text[], $9::text[], $10::bool[],
                              $11::bool[], $12::text[])",
    )
    .bind(column(&addresses, |a| a.0))
    .bind(column(&addresses, |a| a.1))
    .bind(text(|a| Some(a.address_type.as_str())))
    .bind(text(|a| a.line1.as_deref()))
    .bind(text(|a| a.line2.as_deref()))
    .bind(text(|a| a.city.as_deref()))
    .bind(text(|a| a.state.as_deref()))
    .bind(text(|a| a.zip.as_deref()))
    .bind(text(|a| a.country.as_deref()))
    .bind(column(&addresses, |a| a.2.is_default_billing))
    .bind(column(&addresses, |a| a.2.is_default_shipping))
    .bind(text(|a| a.label.as_deref()))
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
