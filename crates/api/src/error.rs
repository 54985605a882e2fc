//! The API's one error type and the vendor's error envelope
//! (docs.arcuserp.com/concepts/errors): `{"error", "code", "type", "hint",
//! "param", "required"?, "request_id"}`, where `error` is the machine-readable
//! key (equal to `code`), `hint` the sentence for people, and `param` the
//! offending parameter or null.
//!
//! Handlers return [`ApiError`]; it travels out as a response extension, and the
//! request-context middleware renders it with the request's id, which handlers
//! do not need to know. A 5xx logs its cause and shows the client nothing
//! internal.

use std::borrow::Cow;

use auth::AuthError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    ValidationError,
    PermissionError,
    NotFound,
    Conflict,
    RateLimit,
    Internal,
}

/// An error as the client sees it.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// What went wrong, for people.
    pub message: String,
    pub code: Cow<'static, str>,
    pub kind: ErrorType,
    pub param: Option<String>,
    /// How to fix it, where the message does not say.
    pub hint: Option<String>,
    pub required: Option<&'static str>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: ErrorType,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            message: message.into(),
            code: Cow::Borrowed(code),
            kind,
            param: None,
            hint: None,
            required: None,
        }
    }

    /// 400: the request itself is malformed.
    pub fn bad_request(code: &'static str, error: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorType::ValidationError,
            code,
            error,
        )
    }

    /// 400 `missing_parameter`: a required parameter is absent.
    pub fn missing(param: &'static str, error: impl Into<String>) -> Self {
        Self::bad_request("missing_parameter", error).param(param)
    }

    /// 400 `invalid_parameter`: a parameter has a value it cannot take.
    pub fn invalid(param: impl Into<String>, error: impl Into<String>) -> Self {
        Self::bad_request("invalid_parameter", error).param(param)
    }

    pub fn not_found(code: &'static str, error: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorType::NotFound, code, error)
    }

    pub fn conflict(code: &'static str, error: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorType::Conflict, code, error)
    }

    /// 500: logs the cause; the client learns only that it was our fault.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::Internal,
            "internal_error",
            "something went wrong on our side; the request was not applied, retry later",
        )
    }

    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The JSON body, with the request id the middleware knows. The
    /// envelope has one sentence for people, `hint`: the message, and how to
    /// fix it when the message does not say.
    pub fn body(&self, request_id: &str) -> serde_json::Value {
        let hint = match &self.hint {
            Some(fix) => format!("{}; {fix}", self.message),
            None => self.message.clone(),
        };
        let mut body = json!({
            "error": self.code,
            "code": self.code,
            "type": self.kind,
            "hint": hint,
            "param": self.param,
            "request_id": request_id,
        });
        if let Some(required) = self.required {
            body["required"] = json!(required);
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response.extensions_mut().insert(self);
        response
    }
}

impl From<sqlx::Error> for ApiError {
    /// A transient database error (a restart, a failover, a deadlock) is a 503
    /// the client can simply retry; anything else is our bug, a 500.
    fn from(e: sqlx::Error) -> Self {
        if !domain::error::is_transient(&e) {
            return ApiError::internal(&e);
        }
        tracing::warn!(error = %e, "request failed on a transient database error");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Internal,
            "service_unavailable",
            "the database is briefly unavailable; the request was not applied: retry it \
             (with the same Idempotency-Key, if it had one)",
        )
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let message = e.to_string();
        match e {
            AuthError::MissingKey => Self::new(
                StatusCode::UNAUTHORIZED,
                ErrorType::PermissionError,
                "missing_api_key",
                message,
            ),
            AuthError::InvalidKey => Self::new(
                StatusCode::UNAUTHORIZED,
                ErrorType::PermissionError,
                "invalid_api_key",
                message,
            ),
            AuthError::ExpiredKey => Self::new(
                StatusCode::UNAUTHORIZED,
                ErrorType::PermissionError,
                "api_key_expired",
                message,
            ),
            AuthError::IpNotAllowlisted => Self::new(
                StatusCode::FORBIDDEN,
                ErrorType::PermissionError,
                "ip_not_allowlisted",
                message,
            ),
            AuthError::InvalidEntityId => {
                Self::bad_request("invalid_parameter", message).param("entity_id")
            }
            AuthError::EntityMismatch => Self::new(
                StatusCode::FORBIDDEN,
                ErrorType::PermissionError,
                "entity_access_denied",
                message,
            ),
            AuthError::InsufficientScope(scope) => {
                let mut err = Self::new(
                    StatusCode::FORBIDDEN,
                    ErrorType::PermissionError,
                    "insufficient_scope",
                    message,
                );
                err.required = Some(scope);
                err
            }
            AuthError::Database(e) => e.into(),
        }
    }
}

/// Builds the envelope for an error response that no handler described (an
/// unknown method, say), so every error a client sees has the same shape.
pub fn generic(status: StatusCode) -> ApiError {
    let (kind, code) = match status {
        StatusCode::NOT_FOUND => (ErrorType::NotFound, "not_found"),
        StatusCode::METHOD_NOT_ALLOWED => (ErrorType::ValidationError, "method_not_allowed"),
        StatusCode::PAYLOAD_TOO_LARGE => (ErrorType::ValidationError, "payload_too_large"),
        StatusCode::REQUEST_TIMEOUT => (ErrorType::ValidationError, "request_timeout"),
        s if s.is_server_error() => (ErrorType::Internal, "internal_error"),
        _ => (ErrorType::ValidationError, "invalid_request"),
    };
    let reason = status.canonical_reason().unwrap_or("error").to_lowercase();
    ApiError::new(status, kind, code, reason)
}
