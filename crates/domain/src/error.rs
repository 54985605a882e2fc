//! Errors of the canonical handlers.
//!
//! A [`RecordError`] is a property of one record (a missing field, a duplicate
//! sku): it is reported to the client with a stable code and never retried. A
//! [`HandlerError::Database`] is a failure of the infrastructure: the caller
//! retries or gives up, but never blames the record for it.

use serde::Serialize;

/// Why a record was refused: it is wrong in itself, or it collides with what
/// is stored (a client answers the two differently: fix the record, or choose
/// what wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordErrorKind {
    #[default]
    Invalid,
    Conflict,
}

/// One record's failure, with a stable machine code and, where one field is to
/// blame, its path inside the record (`components[1].quantity`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordError {
    #[serde(skip)]
    pub kind: RecordErrorKind,
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// How to fix it, where the message alone does not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl RecordError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind: RecordErrorKind::Invalid,
            code,
            message: message.into(),
            param: None,
            hint: None,
        }
    }

    pub fn at(code: &'static str, param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: RecordErrorKind::Invalid,
            code,
            message: message.into(),
            param: Some(param.into()),
            hint: None,
        }
    }

    /// The same error as a collision with a stored record.
    pub fn conflicting(mut self) -> Self {
        self.kind = RecordErrorKind::Conflict;
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The same error with its param nested under `prefix` (`variants[2]`).
    pub fn nested(mut self, prefix: &str) -> Self {
        self.param = Some(match self.param {
            Some(p) => format!("{prefix}.{p}"),
            None => prefix.to_owned(),
        });
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("{}", .0.message)]
    Record(RecordError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<RecordError> for HandlerError {
    fn from(e: RecordError) -> Self {
        HandlerError::Record(e)
    }
}

/// The name of the unique or foreign-key constraint a database error broke, if any.
pub(crate) fn violated_constraint(err: &sqlx::Error) -> Option<&str> {
    match err {
        sqlx::Error::Database(db) if db.is_unique_violation() || db.is_foreign_key_violation() => {
            db.constraint()
        }
        _ => None,
    }
}

/// Whether a database error is worth retrying as it is: the same statements
/// may well succeed once the deadlock, serialization conflict or outage has
/// passed. Anything else (a broken rule, a bug) fails the same way again.
pub fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            matches!(
                code.as_ref(),
                // serialization_failure, deadlock_detected, lock_not_available
                "40001" | "40P01" | "55P03"
                // admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections
                | "57P01" | "57P02" | "57P03" | "53300"
                // idle_in_transaction_session_timeout: our transaction was cut off
                | "25P03"
            ) || code.starts_with("08")
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_and_conflicts_are_transient_rule_breaks_are_not() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(is_transient(&io));
        assert!(is_transient(&sqlx::Error::PoolTimedOut));
        assert!(!is_transient(&sqlx::Error::RowNotFound));
        assert!(!is_transient(&sqlx::Error::PoolClosed));
        assert!(!is_transient(&sqlx::Error::ColumnNotFound("x".into())));
    }
}
