//! What a record of each resource may hold, declared once: every field's
//! name, kind, limits and whether it is required. The record parser reads
//! fields only through these declarations (`fields.rs` checks, in debug
//! builds, that a parser reads no field its resource does not declare), and
//! the OpenAPI document's record schemas are built from them, so the
//! document cannot promise a field, a limit or a value the parser does not
//! enforce, nor the parser accept one the document does not show.

/// One field of a record or of an item of one.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    /// What the OpenAPI document says of it, besides its limits.
    pub about: &'static str,
    /// Other keys a record may give one of its names by, as `(alias, name)`:
    /// the vendor's names where they differ from this service's
    /// (`account_id` for `gl_account_id`). A record gives one or the other.
    pub aliases: &'static [(&'static str, &'static str)],
}

/// What a field holds, with its limits.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A string, trimmed, of at most `max` characters; blank is absent.
    Text {
        max: usize,
    },
    /// The same, holding an `@` and no white space.
    Email {
        max: usize,
    },
    /// An exact decimal, not negative, with at most four decimal places and
    /// fifteen digits before the point.
    Money,
    /// The same, greater than zero.
    Positive,
    /// A whole number from 1 to `i32::MAX`.
    Count,
    /// A `YYYY-MM-DD` date.
    Date,
    /// The same, or an RFC 3339 date-time, of which the date as written (in
    /// its own offset) is kept.
    DateOrTime,
    Bool,
    /// One of these names (`Named::NAMES` of the enum it is read as).
    Enum(&'static [&'static str]),
    /// Another record, by `<name>_id` (a UUID) or by `<name>_external_id`
    /// (its external id from the same source): at most one of the two, and
    /// one when required.
    Reference,
    /// A GL account of the entity's chart, by `gl_account_id` or by
    /// `gl_account_number`: exactly one of the two.
    GlAccount,
    /// An array of objects, each with `of`'s fields.
    Items {
        min: usize,
        max: usize,
        of: &'static [Field],
    },
}

/// Longest external id, of a record or of a reference.
pub const EXTERNAL_ID_MAX: usize = 255;
/// Longest `external_source`.
pub const EXTERNAL_SOURCE_MAX: usize = 60;
/// Longest GL account number.
pub const GL_NUMBER_MAX: usize = 32;

impl Field {
    /// An optional field.
    pub const fn optional(name: &'static str, kind: Kind, about: &'static str) -> Self {
        Self {
            name,
            kind,
            required: false,
            about,
            aliases: &[],
        }
    }

    /// A required field.
    pub const fn required(name: &'static str, kind: Kind, about: &'static str) -> Self {
        Self {
            name,
            kind,
            required: true,
            about,
            aliases: &[],
        }
    }

    /// The same field, also given by these `(alias, name)` keys.
    pub const fn aliased(self, aliases: &'static [(&'static str, &'static str)]) -> Self {
        Self { aliases, ..self }
    }

    /// The names this field is given by in a record: its own, or the two of a
    /// reference.
    pub fn names(&self) -> Vec<String> {
        match self.kind {
            Kind::Reference => vec![
                format!("{}_id", self.name),
                format!("{}_external_id", self.name),
            ],
            Kind::GlAccount => vec!["gl_account_id".to_owned(), "gl_account_number".to_owned()],
            _ => vec![self.name.to_owned()],
        }
    }
}
