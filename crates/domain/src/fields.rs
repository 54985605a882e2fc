//! Reading typed fields out of a record's JSON object, with errors that name the
//! field and say what was expected.

use chrono::{DateTime, NaiveDate};
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::RecordError;
use crate::named::Named;
use crate::spec::{Field, Kind, carries};

pub(crate) const MISSING: &str = "missing_required_field";
pub(crate) const INVALID: &str = "invalid_field";
pub(crate) const TOO_LONG: &str = "field_too_long";

/// Largest money magnitude a `numeric(19, 4)` column holds.
const MAX_MONEY_DIGITS: u32 = 15;
const MONEY_SCALE: u32 = 4;

/// A JSON object read as a record or a nested part of one.
pub(crate) struct Fields<'a> {
    obj: &'a Map<String, Value>,
    /// The fields the object may hold.
    spec: &'static [Field],
}

impl<'a> Fields<'a> {
    /// A whole record of the resource whose fields are `spec`.
    pub(crate) fn record(value: &'a Value, spec: &'static [Field]) -> Result<Self, RecordError> {
        Self::of(value, "record", spec)
    }

    /// `what` names the object in the error (`record`, `components[0]`).
    fn of(value: &'a Value, what: &str, spec: &'static [Field]) -> Result<Self, RecordError> {
        let Value::Object(obj) = value else {
            return Err(RecordError::new(
                INVALID,
                format!("{what} must be a JSON object, got {}", kind(value)),
            ));
        };
        let fields = Self { obj, spec };
        if let Some((alias, name)) = fields
            .aliases()
            .find(|(alias, name)| fields.given(alias) && fields.given(name))
        {
            return Err(RecordError::at(
                INVALID,
                alias,
                format!("{alias} and {name} are the same field; give one of them"),
            ));
        }
        Ok(fields)
    }

    /// The `(alias, name)` keys the object's fields may also be given by.
    fn aliases(&self) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
        self.spec.iter().flat_map(|f| f.aliases.iter().copied())
    }

    /// Whether the object gives `key` a value: null, an empty string and
    /// one of spaces alone mean the field is absent, as exports write an
    /// empty cell.
    fn given(&self, key: &str) -> bool {
        self.obj.get(key).is_some_and(carries)
    }

    /// The key the object gives `name` by: `name`, or its alias when only the
    /// alias is there. Errors name this key, the one the client wrote.
    pub(crate) fn key<'n>(&self, name: &'n str) -> &'n str {
        if self.given(name) {
            return name;
        }
        self.aliases()
            .find(|(alias, target)| *target == name && self.given(alias))
            .map_or(name, |(alias, _)| alias)
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        let key = self.key(name);
        self.obj.get(key).filter(|_| self.given(key))
    }

    fn required_string_at(&self, name: &str, max: usize) -> Result<String, RecordError> {
        let name = self.key(name);
        self.optional_string_at(name, max)?
            .ok_or_else(|| RecordError::at(MISSING, name, format!("{name} is required")))
    }

    /// A string of at most `max` characters, trimmed; blank is absent.
    fn optional_string_at(&self, name: &str, max: usize) -> Result<Option<String>, RecordError> {
        let name = self.key(name);
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let Value::String(s) = value else {
            return Err(RecordError::at(
                INVALID,
                name,
                format!("{name} must be a string, got {}", kind(value)),
            ));
        };
        // Not blank: `get` takes a blank string for an absent field.
        let s = s.trim();
        let len = s.chars().count();
        if len > max {
            return Err(RecordError::at(
                TOO_LONG,
                name,
                format!("{name} is {len} characters long; at most {max} are allowed"),
            ));
        }
        Ok(Some(s.to_owned()))
    }

    /// An exact non-negative amount with at most four decimal places.
    fn optional_money_at(&self, name: &str) -> Result<Option<Decimal>, RecordError> {
        let name = self.key(name);
        let Some(amount) = self.optional_decimal(name)? else {
            return Ok(None);
        };
        if amount.is_sign_negative() && !amount.is_zero() {
            return Err(RecordError::at(
                INVALID,
                name,
                format!("{name} must not be negative, got {amount}"),
            ));
        }
        Ok(Some(amount))
    }

    /// An exact amount greater than zero.
    fn required_positive_at(&self, name: &str) -> Result<Decimal, RecordError> {
        let name = self.key(name);
        let amount = self
            .optional_decimal(name)?
            .ok_or_else(|| RecordError::at(MISSING, name, format!("{name} is required")))?;
        if amount <= Decimal::ZERO {
            return Err(RecordError::at(
                INVALID,
                name,
                format!("{name} must be greater than 0, got {amount}"),
            ));
        }
        Ok(amount)
    }

    /// A JSON number (or a string holding one) read digit for digit, never
    /// through a float.
    fn optional_decimal(&self, name: &str) -> Result<Option<Decimal>, RecordError> {
        let name = self.key(name);
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let text = match value {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.trim().to_owned(),
            other => {
                return Err(RecordError::at(
                    INVALID,
                    name,
                    format!("{name} must be a number, got {}", kind(other)),
                ));
            }
        };
        let not_a_number = || {
            RecordError::at(
                INVALID,
                name,
                format!("{name} must be a decimal number, got '{}'", truncate(&text)),
            )
        };
        let parsed = if text.contains(['e', 'E']) {
            Decimal::from_scientific(&text).map_err(|_| not_a_number())?
        } else {
            Decimal::from_str_exact(&text).map_err(|_| not_a_number())?
        }
        .normalize();
        if parsed.scale() > MONEY_SCALE {
            return Err(RecordError::at(
                INVALID,
                name,
                format!("{name} has more than {MONEY_SCALE} decimal places: {parsed}"),
            ));
        }
        if parsed.abs() >= Decimal::from(10_i64.pow(MAX_MONEY_DIGITS)) {
            return Err(RecordError::at(
                INVALID,
                name,
                format!("{name} is too large: {parsed}"),
            ));
        }
        Ok(Some(parsed))
    }

    pub(crate) fn required_uuid(&self, name: &str) -> Result<Uuid, RecordError> {
        let name = self.key(name);
        let s = self.required_string_at(name, 64)?;
        Uuid::parse_str(&s).map_err(|_| {
            RecordError::at(INVALID, name, format!("{name} must be a UUID, got '{s}'"))
        })
    }

    pub(crate) fn optional_array(&self, name: &str) -> Result<Option<&'a [Value]>, RecordError> {
        let name = self.key(name);
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => Err(RecordError::at(
                INVALID,
                name,
                format!("{name} must be an array, got {}", kind(other)),
            )),
        }
    }
}

impl Fields<'_> {
    /// A `YYYY-MM-DD` date.
    fn required_date_at(&self, name: &str) -> Result<NaiveDate, RecordError> {
        let name = self.key(name);
        self.optional_date_at(name)?
            .ok_or_else(|| RecordError::at(MISSING, name, format!("{name} is required")))
    }

    fn optional_date_at(&self, name: &str) -> Result<Option<NaiveDate>, RecordError> {
        let name = self.key(name);
        let Some(s) = self.optional_string_at(name, 32)? else {
            return Ok(None);
        };
        NaiveDate::parse_from_str(&s, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| {
                RecordError::at(
                    INVALID,
                    name,
                    format!("{name} must be a date YYYY-MM-DD, got '{s}'"),
                )
            })
    }

    fn optional_bool_at(&self, name: &str) -> Result<Option<bool>, RecordError> {
        let name = self.key(name);
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(RecordError::at(
                INVALID,
                name,
                format!("{name} must be true or false, got {}", kind(other)),
            )),
        }
    }

    /// A whole number of at least 1.
    fn required_count_at(&self, name: &str) -> Result<i32, RecordError> {
        let name = self.key(name);
        let value = self
            .get(name)
            .ok_or_else(|| RecordError::at(MISSING, name, format!("{name} is required")))?;
        value
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                RecordError::at(
                    INVALID,
                    name,
                    format!("{name} must be a whole number of at least 1, got {value}"),
                )
            })
    }

    /// Items of an array field, each read as an object with `of`'s fields;
    /// errors are nested under `name[i]`.
    fn items_at<T>(
        &self,
        name: &str,
        (min, max): (usize, usize),
        of: &'static [Field],
        parse: impl Fn(&Fields<'_>) -> Result<T, RecordError>,
    ) -> Result<Vec<T>, RecordError> {
        let name = self.key(name);
        let items = self.optional_array(name)?.unwrap_or_default();
        if items.len() > max {
            return Err(RecordError::at(
                INVALID,
                name,
                format!(
                    "{name} lists {} items; at most {max} are allowed",
                    items.len()
                ),
            ));
        }
        if items.len() < min {
            return Err(RecordError::at(
                MISSING,
                name,
                format!(
                    "{name} needs at least {min} {}, got {}",
                    if min == 1 { "item" } else { "items" },
                    items.len()
                ),
            ));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let at = format!("{name}[{i}]");
                let f = Fields::of(item, &at, of).map_err(|e| e.nested(&at))?;
                parse(&f).map_err(|e| e.nested(&at))
            })
            .collect()
    }
}

/// Reading a declared field: each method takes the field's declaration and
/// reads it with its kind's rules and limits.
impl Fields<'_> {
    /// In debug builds, fails a read the parser's declarations do not allow:
    /// a field its resource does not declare, or read as other than declared.
    /// `kind_matches` is only called in debug builds: the parse of every
    /// record goes through here.
    fn declared(&self, field: &Field, required: bool, kind_matches: impl FnOnce() -> bool) {
        debug_assert!(
            self.spec.iter().any(|f| f.name == field.name),
            "a parser reads {}, which its resource does not declare",
            field.name
        );
        debug_assert!(
            field.required == required && kind_matches(),
            "{} is read otherwise than declared: {field:?}",
            field.name
        );
    }

    pub(crate) fn required_string(&self, field: &Field) -> Result<String, RecordError> {
        let Kind::Text { max } = field.kind else {
            panic!("{} is not text", field.name)
        };
        self.declared(field, true, || true);
        self.required_string_at(field.name, max)
    }

    pub(crate) fn optional_string(&self, field: &Field) -> Result<Option<String>, RecordError> {
        let Kind::Text { max } = field.kind else {
            panic!("{} is not text", field.name)
        };
        self.declared(field, false, || true);
        self.optional_string_at(field.name, max)
    }

    pub(crate) fn optional_email(&self, field: &Field) -> Result<Option<String>, RecordError> {
        let Kind::Email { max } = field.kind else {
            panic!("{} is not an email address", field.name)
        };
        self.declared(field, false, || true);
        let email = self.optional_string_at(field.name, max)?;
        if let Some(email) = &email
            && (!email.contains('@') || email.contains(char::is_whitespace))
        {
            return Err(RecordError::at(
                INVALID,
                field.name,
                format!("{} '{email}' is not an email address", field.name),
            ));
        }
        Ok(email)
    }

    pub(crate) fn required_enum<T: Named>(&self, field: &Field) -> Result<T, RecordError> {
        self.declared(
            field,
            true,
            || matches!(field.kind, Kind::Enum(n) if n == T::NAMES),
        );
        self.enum_at(field.name)?.ok_or_else(|| {
            RecordError::at(MISSING, field.name, format!("{} is required", field.name))
        })
    }

    pub(crate) fn optional_enum<T: Named>(&self, field: &Field) -> Result<Option<T>, RecordError> {
        self.declared(
            field,
            false,
            || matches!(field.kind, Kind::Enum(n) if n == T::NAMES),
        );
        self.enum_at(field.name)
    }

    fn enum_at<T: Named>(&self, name: &str) -> Result<Option<T>, RecordError> {
        let Some(s) = self.optional_string_at(name, 64)? else {
            return Ok(None);
        };
        T::from_name(&s).map(Some).ok_or_else(|| {
            RecordError::at(
                INVALID,
                name,
                format!("{name} must be one of {}, got '{s}'", T::NAMES.join(", ")),
            )
        })
    }

    /// The strings of an array field, trimmed, blank ones and repeats left
    /// out, in their order.
    pub(crate) fn texts(&self, field: &Field) -> Result<Vec<String>, RecordError> {
        let Kind::Texts { items, max } = field.kind else {
            panic!("{} is not a list of strings", field.name)
        };
        self.declared(field, false, || true);
        let name = self.key(field.name);
        let values = self.optional_array(name)?.unwrap_or_default();
        if values.len() > items {
            return Err(RecordError::at(
                INVALID,
                name,
                format!(
                    "{name} lists {} items; at most {items} are allowed",
                    values.len()
                ),
            ));
        }
        let mut texts: Vec<String> = Vec::with_capacity(values.len());
        for (i, value) in values.iter().enumerate() {
            let at = format!("{name}[{i}]");
            let Value::String(s) = value else {
                return Err(RecordError::at(
                    INVALID,
                    at.clone(),
                    format!("{at} must be a string, got {}", kind(value)),
                ));
            };
            let s = s.trim();
            let len = s.chars().count();
            if len > max {
                return Err(RecordError::at(
                    TOO_LONG,
                    at.clone(),
                    format!("{at} is {len} characters long; at most {max} are allowed"),
                ));
            }
            if !s.is_empty() && !texts.iter().any(|t| t == s) {
                texts.push(s.to_owned());
            }
        }
        Ok(texts)
    }

    pub(crate) fn optional_money(&self, field: &Field) -> Result<Option<Decimal>, RecordError> {
        self.declared(field, false, || matches!(field.kind, Kind::Money));
        self.optional_money_at(field.name)
    }

    pub(crate) fn optional_percent(&self, field: &Field) -> Result<Option<Decimal>, RecordError> {
        self.declared(field, false, || matches!(field.kind, Kind::Percent));
        let name = self.key(field.name);
        let Some(rate) = self.optional_money_at(name)? else {
            return Ok(None);
        };
        if rate > Decimal::ONE_HUNDRED {
            return Err(RecordError::at(
                INVALID,
                name,
                format!("{name} is a percentage from 0 to 100, got {rate}"),
            ));
        }
        Ok(Some(rate))
    }

    pub(crate) fn required_money(&self, field: &Field) -> Result<Decimal, RecordError> {
        self.declared(field, true, || matches!(field.kind, Kind::Money));
        let name = self.key(field.name);
        self.optional_money_at(name)?
            .ok_or_else(|| RecordError::at(MISSING, name, format!("{name} is required")))
    }

    pub(crate) fn required_positive(&self, field: &Field) -> Result<Decimal, RecordError> {
        self.declared(field, true, || matches!(field.kind, Kind::Positive));
        self.required_positive_at(field.name)
    }

    pub(crate) fn optional_positive(&self, field: &Field) -> Result<Option<Decimal>, RecordError> {
        self.declared(field, false, || matches!(field.kind, Kind::Positive));
        if self.get(field.name).is_none() {
            return Ok(None);
        }
        self.required_positive_at(field.name).map(Some)
    }

    pub(crate) fn required_date(&self, field: &Field) -> Result<NaiveDate, RecordError> {
        self.declared(field, true, || matches!(field.kind, Kind::Date));
        self.required_date_at(field.name)
    }

    pub(crate) fn optional_date(&self, field: &Field) -> Result<Option<NaiveDate>, RecordError> {
        self.declared(field, false, || matches!(field.kind, Kind::Date));
        self.optional_date_at(field.name)
    }

    pub(crate) fn optional_date_or_time(
        &self,
        field: &Field,
    ) -> Result<Option<NaiveDate>, RecordError> {
        self.declared(field, false, || matches!(field.kind, Kind::DateOrTime));
        let name = self.key(field.name);
        let Some(s) = self.optional_string_at(name, 64)? else {
            return Ok(None);
        };
        if let Ok(date) = NaiveDate::parse_from_str(&s, "%Y-%m-%d") {
            return Ok(Some(date));
        }
        // The date the source wrote, not the UTC one: a business date.
        DateTime::parse_from_rfc3339(&s)
            .map(|at| Some(at.date_naive()))
            .map_err(|_| {
                RecordError::at(
                    INVALID,
                    name,
                    format!(
                        "{name} must be a date YYYY-MM-DD or a date-time such as \
                         2026-01-15T10:30:00Z, got '{s}'"
                    ),
                )
            })
    }

    pub(crate) fn optional_bool(&self, field: &Field) -> Result<Option<bool>, RecordError> {
        self.declared(field, false, || matches!(field.kind, Kind::Bool));
        self.optional_bool_at(field.name)
    }

    pub(crate) fn optional_count(&self, field: &Field) -> Result<Option<i32>, RecordError> {
        self.declared(field, false, || matches!(field.kind, Kind::Count));
        if self.get(field.name).is_none() {
            return Ok(None);
        }
        self.required_count_at(field.name).map(Some)
    }

    pub(crate) fn required_count(&self, field: &Field) -> Result<i32, RecordError> {
        self.declared(field, true, || matches!(field.kind, Kind::Count));
        self.required_count_at(field.name)
    }

    /// An object field parsed by `parse`; its errors are nested under its
    /// name.
    pub(crate) fn parse_object<T>(
        &self,
        field: &Field,
        parse: impl Fn(&Fields<'_>) -> Result<T, RecordError>,
    ) -> Result<Option<T>, RecordError> {
        let Kind::Object { of } = field.kind else {
            panic!("{} is not an object", field.name)
        };
        self.declared(field, false, || true);
        let name = self.key(field.name);
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let f = Fields::of(value, name, of).map_err(|e| e.nested(name))?;
        parse(&f).map(Some).map_err(|e| e.nested(name))
    }

    /// The items of an array field, each parsed by `parse`.
    pub(crate) fn parse_items<T>(
        &self,
        field: &Field,
        parse: impl Fn(&Fields<'_>) -> Result<T, RecordError>,
    ) -> Result<Vec<T>, RecordError> {
        let Kind::Items { min, max, of } = field.kind else {
            panic!("{} is not a list of items", field.name)
        };
        self.declared(field, min > 0, || true);
        self.items_at(field.name, (min, max), of, parse)
    }

    /// Checks a reference's declaration, for the reference parsers of
    /// `refs.rs`, which read its two names with the methods below.
    pub(crate) fn declared_reference(&self, field: &Field, kind_matches: impl FnOnce() -> bool) {
        self.declared(field, field.required, kind_matches);
    }

    pub(crate) fn has_named(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub(crate) fn required_string_named(
        &self,
        name: &str,
        max: usize,
    ) -> Result<String, RecordError> {
        self.required_string_at(name, max)
    }
}

/// How a JSON value is described in an error message.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn money_is_read_digit_for_digit() {
        // Parsed from text: a `json!` float literal would already be an f64.
        let v: Value =
            serde_json::from_str(r#"{"a": 0.1, "b": "49.99", "c": 12345678901234.5678, "d": 1e2}"#)
                .expect("valid JSON");
        let f = Fields::of(&v, "record", &[]).expect("object");
        assert_eq!(
            f.optional_money_at("a").expect("ok"),
            Some(Decimal::new(1, 1))
        );
        assert_eq!(
            f.optional_money_at("b").expect("ok"),
            Some(Decimal::new(4999, 2))
        );
        assert_eq!(
            f.optional_money_at("c").expect("ok"),
            Some(Decimal::from_str_exact("12345678901234.5678").expect("decimal"))
        );
        assert_eq!(
            f.optional_money_at("d").expect("ok"),
            Some(Decimal::from(100))
        );
    }

    #[test]
    fn money_rejects_what_a_column_cannot_hold() {
        let v = json!({"neg": -1, "scale": 1.23456, "big": 1e16, "word": "ten", "bool": true});
        let f = Fields::of(&v, "record", &[]).expect("object");
        for name in ["neg", "scale", "big", "word", "bool"] {
            let err = f.optional_money_at(name).expect_err(name);
            assert_eq!(err.code, INVALID);
            assert_eq!(err.param.as_deref(), Some(name));
        }
    }

    #[test]
    fn strings_are_trimmed_and_bounded() {
        let v = json!({"ok": "  Mug ", "blank": "   ", "long": "x".repeat(11), "num": 5});
        let f = Fields::of(&v, "record", &[]).expect("object");
        assert_eq!(f.required_string_at("ok", 10).expect("ok"), "Mug");
        assert_eq!(
            f.required_string_at("blank", 10).expect_err("blank").code,
            MISSING
        );
        assert_eq!(f.optional_string_at("blank", 10).expect("blank"), None);
        assert_eq!(
            f.required_string_at("long", 10).expect_err("long").code,
            TOO_LONG
        );
        assert_eq!(
            f.required_string_at("num", 10).expect_err("num").code,
            INVALID
        );
        assert_eq!(
            f.required_string_at("absent", 10).expect_err("absent").code,
            MISSING
        );
    }

    #[test]
    #[should_panic(expected = "which its resource does not declare")]
    fn a_read_of_an_undeclared_field_is_a_bug_caught_in_debug_builds() {
        let v = json!({"colour": "red"});
        let f = Fields::record(&v, &[]).expect("object");
        let colour = Field::optional("colour", Kind::Text { max: 10 }, "");
        let _ = f.optional_string(&colour);
    }

    #[test]
    #[should_panic(expected = "is read otherwise than declared")]
    fn a_required_field_read_as_optional_is_a_bug_caught_in_debug_builds() {
        const TITLE: Field = Field::required("title", Kind::Text { max: 10 }, "");
        let v = json!({"title": "Mug"});
        let f = Fields::record(&v, &[TITLE]).expect("object");
        let _ = f.optional_string(&TITLE);
    }
}
