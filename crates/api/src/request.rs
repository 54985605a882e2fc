//! What every request body is checked for before a route reads it: a body
//! that could not be read, and records no resource could accept.

use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde_json::Value;

use crate::ApiError;
use crate::error::ErrorType;

/// Nesting a record may have; the deepest payload of any resource is 3.
const RECORD_DEPTH_MAX: usize = 8;
/// Characters one string (or object key) of a record may have.
const STRING_MAX: usize = 10_000;
/// Bytes one record may take, measured as the sum of its strings, keys and
/// numbers: bounds what one record costs the worker.
const RECORD_BYTES_MAX: usize = 256 * 1024;

/// Refuses a record no resource could accept and that would only cost us to
/// carry: too deep, too large, an over-long string, or a NUL character (which
/// Postgres text cannot store). `at` is the record's path (`records[3]`), or
/// empty for a record that is the whole body.
pub(crate) fn inspect_record(record: &Value, at: &str) -> Result<(), ApiError> {
    let mut bytes = 0;
    walk(record, 0, &mut bytes).map_err(|fault| fault.into_error(at))?;
    if bytes > RECORD_BYTES_MAX {
        let what = if at.is_empty() { "the record" } else { at };
        let error = ApiError::bad_request(
            "record_too_large",
            format!(
                "{what} holds about {bytes} bytes; a record may hold at most {RECORD_BYTES_MAX}"
            ),
        );
        return Err(if at.is_empty() {
            error
        } else {
            error.param(at.to_owned())
        });
    }
    Ok(())
}

/// What [`walk`] refused, and where: the path is gathered on the way back
/// up, so a valid record, the common case, costs no path at all.
struct Fault<'a> {
    kind: FaultKind,
    /// From the faulty value up to the record.
    path: Vec<Step<'a>>,
}

enum FaultKind {
    TooDeep,
    Nul,
    TooLong,
}

enum Step<'a> {
    Index(usize),
    Key(&'a str),
}

impl Fault<'_> {
    fn new(kind: FaultKind) -> Self {
        Self {
            kind,
            path: Vec::new(),
        }
    }

    fn into_error(self, at: &str) -> ApiError {
        let mut path = at.to_owned();
        for step in self.path.iter().rev() {
            match step {
                Step::Index(i) => path.push_str(&format!("[{i}]")),
                Step::Key(key) => {
                    let shown: String = key.replace('\0', "\\u0000").chars().take(64).collect();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(&shown);
                }
            }
        }
        let (code, message) = match self.kind {
            FaultKind::TooDeep => (
                "record_too_deep",
                format!("{path} is nested more than {RECORD_DEPTH_MAX} levels deep"),
            ),
            FaultKind::Nul => (
                "invalid_character",
                format!("{path} contains a NUL character, which cannot be stored"),
            ),
            FaultKind::TooLong => (
                "string_too_long",
                format!("{path} is longer than {STRING_MAX} characters"),
            ),
        };
        ApiError::bad_request(code, message).param(path)
    }
}

fn walk<'a>(value: &'a Value, depth: usize, bytes: &mut usize) -> Result<(), Fault<'a>> {
    if depth > RECORD_DEPTH_MAX {
        return Err(Fault::new(FaultKind::TooDeep));
    }
    let check_string = |s: &str| {
        if s.contains('\0') {
            return Err(Fault::new(FaultKind::Nul));
        }
        // Bytes bound characters: only a long string needs counting.
        if s.len() > STRING_MAX && s.chars().count() > STRING_MAX {
            return Err(Fault::new(FaultKind::TooLong));
        }
        Ok(())
    };
    match value {
        Value::String(s) => {
            check_string(s)?;
            *bytes += s.len();
        }
        Value::Number(n) => *bytes += n.as_str().len(),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, depth + 1, bytes).map_err(|mut fault| {
                    fault.path.push(Step::Index(i));
                    fault
                })?;
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                check_string(key)
                    .and_then(|()| walk(item, depth + 1, bytes))
                    .map_err(|mut fault| {
                        fault.path.push(Step::Key(key));
                        fault
                    })?;
                *bytes += key.len();
            }
        }
        Value::Null | Value::Bool(_) => *bytes += 4,
    }
    Ok(())
}

/// A body that could not be read: too large, or cut off.
pub(crate) fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorType::ValidationError,
            "payload_too_large",
            "the request body is larger than this service accepts",
        )
        .hint("send fewer or smaller records per request")
    } else {
        ApiError::bad_request("invalid_body", format!("could not read the body: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn hostile_records_are_located() {
        let code = |v: &Value| {
            inspect_record(v, "records[0]")
                .err()
                .map(|e| (e.code, e.param))
        };
        let nul = json!({"title": "ok", "variants": [{"sku": "a"}, {"sku": "b\u{0}"}]});
        assert_eq!(
            code(&nul),
            Some((
                "invalid_character".into(),
                Some("records[0].variants[1].sku".into())
            ))
        );
        let long = json!({"title": "x".repeat(STRING_MAX + 1)});
        assert_eq!(code(&long).map(|c| c.0), Some("string_too_long".into()));
        let mut deep = json!(1);
        for _ in 0..10 {
            deep = json!({"a": deep});
        }
        assert_eq!(code(&deep).map(|c| c.0), Some("record_too_deep".into()));
        let big = json!({"notes": vec!["x".repeat(9_000); 40]});
        assert_eq!(code(&big).map(|c| c.0), Some("record_too_large".into()));
        assert_eq!(
            code(&json!({"title": "fine", "components": [{"quantity": 1}]})),
            None
        );
    }
}
