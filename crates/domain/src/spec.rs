//! What a record of each resource may hold, declared once: every field's
//! name, kind, limits and whether it is required. The record parser reads
//! fields only through these declarations (`fields.rs` checks, in debug
//! builds, that a parser reads no field its resource does not declare), and
//! the OpenAPI document's record schemas are built from them, so the
//! document cannot promise a field, a limit or a value the parser does not
//! enforce, nor the parser accept one the document does not show.

use serde_json::Value;

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
    /// A percentage: an exact decimal from 0 to 100 with at most four
    /// decimal places.
    Percent,
    /// A whole number from 1 to `i32::MAX`.
    Count,
    /// A `YYYY-MM-DD` date.
    Date,
    /// The same, or an RFC 3339 date-time, of which the date as written (in
    /// its own offset) is kept.
    DateOrTime,
    Bool,
    /// An array of at most `items` strings, each trimmed and of at most
    /// `max` characters; blank ones are left out, and so are repeats.
    Texts {
        items: usize,
        max: usize,
    },
    /// One of these names (`Named::NAMES` of the enum it is read as).
    Enum(&'static [&'static str]),
    /// Another record, by `<name>_id` (a UUID) or by `<name>_external_id`
    /// (its external id from the same source): at most one of the two, and
    /// one when required.
    Reference,
    /// A GL account of the entity's chart, by `gl_account_id` or by
    /// `gl_account_number`: exactly one of the two.
    GlAccount,
    /// An object with `of`'s fields.
    Object {
        of: &'static [Field],
    },
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

    /// Whether a record gives this field by `key`: one of its names or an
    /// alias of one.
    pub fn reads(&self, key: &str) -> bool {
        let own = match self.kind {
            Kind::Reference => key
                .strip_prefix(self.name)
                .is_some_and(|rest| rest == "_id" || rest == "_external_id"),
            Kind::GlAccount => key == "gl_account_id" || key == "gl_account_number",
            _ => key == self.name,
        };
        own || self.aliases.iter().any(|(alias, _)| *alias == key)
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

/// Whether a JSON value carries something: null, an empty string and one of
/// spaces alone are a field left out, as exports write an empty cell.
pub fn carries(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.trim().is_empty(),
        _ => true,
    }
}

/// The keys of `record` that no field of `spec` reads, besides the keys
/// `besides` at its top (`external_id`): each as its path in the record
/// (`line_items[2].variant_id`). A key left out as [`carries`] says is not
/// one: it carries nothing to lose.
pub fn unread_fields(record: &Value, spec: &[Field], besides: &[&str]) -> Vec<String> {
    let mut unread = Vec::new();
    collect_unread(record, spec, besides, "", &mut unread);
    unread
}

fn collect_unread(
    value: &Value,
    spec: &[Field],
    besides: &[&str],
    at: &str,
    unread: &mut Vec<String>,
) {
    let Value::Object(object) = value else {
        return;
    };
    for (key, value) in object {
        if !carries(value) || besides.contains(&key.as_str()) {
            continue;
        }
        match spec.iter().find(|f| f.reads(key)).map(|f| f.kind) {
            None => unread.push(format!("{at}{key}")),
            Some(Kind::Items { of, .. }) => {
                for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                    collect_unread(item, of, &[], &format!("{at}{key}[{i}]."), unread);
                }
            }
            Some(Kind::Object { of }) => {
                collect_unread(value, of, &[], &format!("{at}{key}."), unread);
            }
            Some(_) => {}
        }
    }
}

/// A path with its item indexes left out (`line_items[].variant_id`): the
/// field, whichever item carried it.
pub fn field_of(path: &str) -> String {
    let mut field = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                field.push('[');
            }
            ']' => {
                in_index = false;
                field.push(']');
            }
            _ if in_index => {}
            c => field.push(c),
        }
    }
    field
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const LINE: &[Field] = &[
        Field::required("product", Kind::Reference, ""),
        Field::optional("quantity", Kind::Count, "").aliased(&[("qty", "quantity")]),
    ];
    const RECORD: &[Field] = &[
        Field::required("title", Kind::Text { max: 10 }, ""),
        Field::required("gl_account", Kind::GlAccount, ""),
        Field::optional(
            "discount",
            Kind::Object {
                of: &[Field::required("value", Kind::Money, "")],
            },
            "",
        ),
        Field::optional(
            "lines",
            Kind::Items {
                min: 0,
                max: 10,
                of: LINE,
            },
            "",
        ),
    ];

    #[test]
    fn the_unread_fields_are_every_key_no_field_reads_at_any_depth() {
        let record = json!({
            "external_id": "X-1",
            "title": "Mug",
            "gl_account_number": "6100",
            "colour": "red",
            "tags": "",
            "notes": null,
            "discount": {"value": 5, "type": "percentage"},
            "lines": [
                {"product_external_id": "P-1", "qty": 2, "variant_id": "V-1"},
                {"product_id": "8d7c", "location": {"bin": 4}},
                "not an object",
            ],
        });
        let mut unread = unread_fields(&record, RECORD, &["external_id"]);
        unread.sort();
        assert_eq!(
            unread,
            [
                "colour",
                "discount.type",
                "lines[0].variant_id",
                "lines[1].location"
            ],
            "empty and null keys carry nothing; external_id is read elsewhere"
        );
        assert_eq!(
            unread_fields(&record, RECORD, &[])
                .first()
                .map(String::as_str),
            Some("colour")
        );
        assert!(unread_fields(&json!([1]), RECORD, &[]).is_empty());
    }

    #[test]
    fn a_field_is_its_path_without_indexes() {
        assert_eq!(field_of("lines[12].variant_id"), "lines[].variant_id");
        assert_eq!(field_of("a[0].b[3].c"), "a[].b[].c");
        assert_eq!(field_of("colour"), "colour");
    }
}
