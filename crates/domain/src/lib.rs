//! The ERP's resources, their rules and the canonical handlers that write them,
//! plus the migration-job store.
//!
//! This crate is the only code that writes resource tables. It knows Postgres
//! and the rules, but neither HTTP nor AMQP: the API and the worker both call
//! into it, so a record imported in bulk and a record created one at a time go
//! through the same code.

pub mod accounts;
pub mod audit;
mod canonical;
pub mod db;
pub mod entities;
pub mod error;
mod fields;
pub mod import;
pub mod jobs;
pub mod journal;
pub mod ledger;
pub mod named;
pub mod orders;
pub mod outbox;
pub mod payables;
mod plan;
pub mod products;
pub mod read;
mod refs;
pub mod spec;
pub mod view;
pub mod webhooks;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Test and live data live side by side and never mix: every query is scoped
/// by both the entity and the mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Test,
    Live,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Live => "live",
        }
    }
}

impl FromStr for Mode {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "test" => Ok(Mode::Test),
            "live" => Ok(Mode::Live),
            _ => Err(UnknownValue::new("mode", s, &["test", "live"])),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a page of a list starts, as the vendor's `concepts/pagination`
/// page has it: after an item (`starting_after`, the page after) or before
/// one (`ending_before`, the page before).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageFrom<T> {
    After(T),
    Before(T),
}

impl<T: Copy> PageFrom<T> {
    pub fn cursor(self) -> T {
        match self {
            PageFrom::After(c) | PageFrom::Before(c) => c,
        }
    }
}

/// How a keyset query reads a page of a list shown in `descending` (or
/// ascending) order from a cursor: `cmp` the comparison with the cursor,
/// `order` the direction of the SQL `order by`, and whether the rows read
/// must be `reversed` into the list's order (a page before the cursor is
/// read towards it, from the cursor outwards).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyset {
    pub cmp: &'static str,
    pub order: &'static str,
    pub reversed: bool,
}

impl Keyset {
    pub fn of<T>(from: Option<PageFrom<T>>, descending: bool) -> Self {
        let backward = matches!(from, Some(PageFrom::Before(_)));
        let reads_descending = descending != backward;
        Keyset {
            cmp: if reads_descending { "<" } else { ">" },
            order: if reads_descending { "desc" } else { "asc" },
            reversed: backward,
        }
    }
}

/// The entity and mode a request or a job acts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tenant {
    pub entity_id: Uuid,
    pub mode: Mode,
}

/// A value outside the set a field accepts.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{field} must be one of {allowed}, got '{value}'")]
pub struct UnknownValue {
    pub field: &'static str,
    pub value: String,
    pub allowed: String,
}

impl UnknownValue {
    fn new(field: &'static str, value: &str, allowed: &[&str]) -> Self {
        Self {
            field,
            value: value.chars().take(64).collect(),
            allowed: allowed.join(", "),
        }
    }
}

/// The resource types a migration can load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Accounts,
    Products,
    Orders,
    JournalEntries,
    VendorBills,
    ApPayments,
}

impl Resource {
    pub const ALL: [Resource; 6] = [
        Resource::Accounts,
        Resource::Products,
        Resource::Orders,
        Resource::JournalEntries,
        Resource::VendorBills,
        Resource::ApPayments,
    ];

    /// The name used in URLs, queue names and job objects.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Accounts => "accounts",
            Resource::Products => "products",
            Resource::Orders => "orders",
            Resource::JournalEntries => "journal-entries",
            Resource::VendorBills => "vendor-bills",
            Resource::ApPayments => "ap-payments",
        }
    }

    /// The scopes that each allow writing this resource (besides
    /// `migration:write` for an import), the vendor's first. AP payments
    /// are purchasing by the vendor's pages (`purchasing:write`);
    /// `payments:write`, which keys issued before carry, still serves.
    pub fn write_scopes(self) -> &'static [&'static str] {
        match self {
            Resource::Accounts => &["accounts:write"],
            Resource::Products => &["products:write"],
            Resource::Orders => &["orders:write"],
            Resource::JournalEntries => &["accounting:write"],
            Resource::VendorBills => &["purchasing:write"],
            Resource::ApPayments => &["purchasing:write", "payments:write"],
        }
    }

    /// The scopes that each allow reading this resource, the vendor's first.
    pub fn read_scopes(self) -> &'static [&'static str] {
        match self {
            Resource::Accounts => &["accounts:read"],
            Resource::Products => &["products:read"],
            Resource::Orders => &["orders:read"],
            Resource::JournalEntries => &["accounting:read"],
            Resource::VendorBills => &["purchasing:read"],
            Resource::ApPayments => &["purchasing:read", "payments:read"],
        }
    }

    fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|r| r.as_str()).collect()
    }
}

impl FromStr for Resource {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownValue::new("resource", s, &Self::names()))
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to a record whose `(external_source, external_id)` already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConflictMode {
    #[default]
    Skip,
    Update,
    Replace,
    Error,
}

impl ConflictMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictMode::Skip => "skip",
            ConflictMode::Update => "update",
            ConflictMode::Replace => "replace",
            ConflictMode::Error => "error",
        }
    }
}

impl FromStr for ConflictMode {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "skip" => Ok(ConflictMode::Skip),
            "update" => Ok(ConflictMode::Update),
            "replace" => Ok(ConflictMode::Replace),
            "error" => Ok(ConflictMode::Error),
            _ => Err(UnknownValue::new(
                "conflict_mode",
                s,
                &["skip", "update", "replace", "error"],
            )),
        }
    }
}

/// The scopes a key can carry: the vendor's catalogue (its `authentication`
/// page, and the accounting pages for `accounting:approve` and
/// `accounting:close_period`), and the migration's own. A key may carry a
/// scope no endpoint of this service asks for (`inventory:write`, say): the
/// same key then serves the rest of the ERP's API.
pub const SCOPES: [&str; 24] = [
    "accounts:read",
    "accounts:write",
    "products:read",
    "products:write",
    "orders:read",
    "orders:write",
    "inventory:read",
    "inventory:write",
    "fulfillment:read",
    "fulfillment:write",
    "returns:read",
    "returns:write",
    "purchasing:read",
    "purchasing:write",
    "payments:read",
    "payments:write",
    "accounting:read",
    "accounting:write",
    "accounting:approve",
    "accounting:close_period",
    "webhooks:manage",
    "migration:read",
    "migration:write",
    "migration:admin",
];

/// A new row id: UUIDv7 is time-ordered, so index inserts stay cheap.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_before_the_cursor_is_read_towards_it_and_turned_round() {
        let next = Keyset::of(Some(PageFrom::After(7)), true);
        assert_eq!((next.cmp, next.order, next.reversed), ("<", "desc", false));
        let before = Keyset::of(Some(PageFrom::Before(7)), true);
        assert_eq!(
            (before.cmp, before.order, before.reversed),
            (">", "asc", true)
        );
        let ascending = Keyset::of(Some(PageFrom::Before(7)), false);
        assert_eq!(
            (ascending.cmp, ascending.order, ascending.reversed),
            ("<", "desc", true)
        );
        let first = Keyset::of::<u32>(None, false);
        assert_eq!(
            (first.cmp, first.order, first.reversed),
            (">", "asc", false)
        );
    }

    #[test]
    fn resources_round_trip_through_their_names() {
        for r in Resource::ALL {
            assert_eq!(r.as_str().parse::<Resource>().expect("known"), r);
        }
        let err = "invoices".parse::<Resource>().expect_err("unknown");
        assert!(err.to_string().contains("journal-entries"), "{err}");
    }

    #[test]
    fn conflict_mode_defaults_to_skip() {
        assert_eq!(ConflictMode::default(), ConflictMode::Skip);
        assert!("overwrite".parse::<ConflictMode>().is_err());
    }
}
