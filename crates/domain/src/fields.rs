//! Reading typed fields out of a record's JSON object, with errors that name the
//! field and say what was expected.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::RecordError;
use crate::named::Named;

pub(crate) const MISSING: &str = "missing_required_field";
pub(crate) const INVALID: &str = "invalid_field";
pub(crate) const TOO_LONG: &str = "field_too_long";

/// Largest money magnitude a `numeric(19, 4)` column holds.
const MAX_MONEY_DIGITS: u32 = 15;
const MONEY_SCALE: u32 = 4;

/// A JSON object read as a record or a nested part of one.
pub(crate) struct Fields<'a> {
    obj: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    /// `what` names the object in the error (`record`, `components[0]`).
    pub(crate) fn of(value: &'a Value, what: &str) -> Result<Self, RecordError> {
        match value {
            Value::Object(obj) => Ok(Self { obj }),
            other => Err(RecordError::new(
                INVALID,
                format!("{what} must be a JSON object, got {}", kind(other)),
            )),
        }
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.obj.get(name).filter(|v| !v.is_null())
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub(crate) fn required_string(&self, name: &str, max: usize) -> Result<String, RecordError> {
        self.optional_string(name, max)?
            .ok_or_else(|| RecordError::at(MISSING, name, format!("{name} is required")))
    }

    /// A string that, when present, is not blank and at most `max` characters.
    pub(crate) fn optional_string(
        &self,
        name: &str,
        max: usize,
    ) -> Result<Option<String>, RecordError> {
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
        let s = s.trim();
        if s.is_empty() {
            return Err(RecordError::at(
                INVALID,
                name,
                format!("{name} must not be blank"),
            ));
        }
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

    pub(crate) fn required_enum<T: Named>(&self, name: &str) -> Result<T, RecordError> {
        self.optional_enum(name)?
            .ok_or_else(|| RecordError::at(MISSING, name, format!("{name} is required")))
    }

    /// One of `T`'s names, when present.
    pub(crate) fn optional_enum<T: Named>(&self, name: &str) -> Result<Option<T>, RecordError> {
        let Some(s) = self.optional_string(name, 64)? else {
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

    /// An exact non-negative amount with at most four decimal places.
    pub(crate) fn optional_money(&self, name: &str) -> Result<Option<Decimal>, RecordError> {
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
    pub(crate) fn required_positive(&self, name: &str) -> Result<Decimal, RecordError> {
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
        let s = self.required_string(name, 64)?;
        Uuid::parse_str(&s).map_err(|_| {
            RecordError::at(INVALID, name, format!("{name} must be a UUID, got '{s}'"))
        })
    }

    pub(crate) fn optional_array(&self, name: &str) -> Result<Option<&'a [Value]>, RecordError> {
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
    pub(crate) fn required_date(&self, name: &str) -> Result<NaiveDate, RecordError> {
        self.optional_date(name)?
            .ok_or_else(|| RecordError::at(MISSING, name, format!("{name} is required")))
    }

    pub(crate) fn optional_date(&self, name: &str) -> Result<Option<NaiveDate>, RecordError> {
        let Some(s) = self.optional_string(name, 32)? else {
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

    pub(crate) fn optional_bool(&self, name: &str) -> Result<Option<bool>, RecordError> {
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
    pub(crate) fn required_count(&self, name: &str) -> Result<i32, RecordError> {
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

    /// Items of an array field, each read as an object; errors are nested
    /// under `name[i]`.
    pub(crate) fn parse_items<T>(
        &self,
        name: &str,
        max: usize,
        parse: impl Fn(&Fields<'_>) -> Result<T, RecordError>,
    ) -> Result<Vec<T>, RecordError> {
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
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let at = format!("{name}[{i}]");
                let f = Fields::of(item, &at).map_err(|e| RecordError {
                    param: Some(at.clone()),
                    ..e
                })?;
                parse(&f).map_err(|e| e.nested(&at))
            })
            .collect()
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
        let f = Fields::of(&v, "record").expect("object");
        assert_eq!(f.optional_money("a").expect("ok"), Some(Decimal::new(1, 1)));
        assert_eq!(
            f.optional_money("b").expect("ok"),
            Some(Decimal::new(4999, 2))
        );
        assert_eq!(
            f.optional_money("c").expect("ok"),
            Some(Decimal::from_str_exact("12345678901234.5678").expect("decimal"))
        );
        assert_eq!(f.optional_money("d").expect("ok"), Some(Decimal::from(100)));
    }

    #[test]
    fn money_rejects_what_a_column_cannot_hold() {
        let v = json!({"neg": -1, "scale": 1.23456, "big": 1e16, "word": "ten", "bool": true});
        let f = Fields::of(&v, "record").expect("object");
        for name in ["neg", "scale", "big", "word", "bool"] {
            let err = f.optional_money(name).expect_err(name);
            assert_eq!(err.code, INVALID);
            assert_eq!(err.param.as_deref(), Some(name));
        }
    }

    #[test]
    fn strings_are_trimmed_and_bounded() {
        let v = json!({"ok": "  Mug ", "blank": "   ", "long": "x".repeat(11), "num": 5});
        let f = Fields::of(&v, "record").expect("object");
        assert_eq!(f.required_string("ok", 10).expect("ok"), "Mug");
        assert_eq!(
            f.required_string("blank", 10).expect_err("blank").code,
            INVALID
        );
        assert_eq!(
            f.required_string("long", 10).expect_err("long").code,
            TOO_LONG
        );
        assert_eq!(f.required_string("num", 10).expect_err("num").code, INVALID);
        assert_eq!(
            f.required_string("absent", 10).expect_err("absent").code,
            MISSING
        );
    }
}
