//! OpenFGA's error body: `{"code": "validation_error", "message": "..."}`.
//!
//! [`FgaError`] renders itself (status, `content-type: application/json`, body), so the
//! [`crate::error::render_errors`] layer leaves it alone. Codes and messages follow OpenFGA's
//! server (`pkg/server/errors`); the status is 400 for every input error (OpenFGA's `ErrorCode`
//! range), 404 only for `store_id_not_found`, 500 for `internal_error`.

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use serde::Serialize;
use trustgate_authz::engine::{EngineError, ErrorCode};
use trustgate_store_api::{StoreError, TupleWriteError};

/// An error answer of an OpenFGA-compatible route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FgaError {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
}

impl FgaError {
    /// An error with an explicit status and code.
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 400 `validation_error`.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::bad_request("validation_error", message)
    }

    /// 404 `store_id_not_found`.
    pub fn store_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "store_id_not_found",
            "Store ID not found",
        )
    }

    /// 400 `authorization_model_not_found` (OpenFGA answers 400, not 404, also on the
    /// read-model route).
    pub fn model_not_found(model_id: &str) -> Self {
        Self::bad_request(
            "authorization_model_not_found",
            format!("Authorization Model '{model_id}' not found"),
        )
    }

    /// 400 `latest_authorization_model_not_found`: the store has no model yet.
    pub fn latest_model_not_found(store_id: &str) -> Self {
        Self::bad_request(
            "latest_authorization_model_not_found",
            format!("No authorization models found for store '{store_id}'"),
        )
    }

    /// 400 `invalid_continuation_token`.
    pub fn invalid_continuation_token() -> Self {
        Self::bad_request("invalid_continuation_token", "Invalid continuation token")
    }

    /// 400 `exceeded_entity_limit`.
    pub fn exceeded_entity_limit(entity: &str, limit: usize) -> Self {
        Self::bad_request(
            "exceeded_entity_limit",
            format!("The number of {entity} exceeds the allowed limit of {limit}"),
        )
    }

    /// 413: the request body is larger than `http.body_limit_bytes`.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body exceeds the limit of {limit} bytes"),
        )
    }

    /// 500 `internal_error`. The detail goes to the log, not to the client.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error on an OpenFGA route");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal Server Error",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// OpenFGA's error code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for FgaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)
    }
}

impl IntoResponse for FgaError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&Body {
            code: &self.code,
            message: &self.message,
        })
        .unwrap_or_default();
        let mut response = (self.status, body).into_response();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

impl From<EngineError> for FgaError {
    fn from(err: EngineError) -> Self {
        match err.code() {
            ErrorCode::InternalError => FgaError::internal(err),
            code => FgaError::bad_request(code.name(), err.to_string()),
        }
    }
}

impl From<StoreError> for FgaError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(_) => FgaError::store_not_found(),
            StoreError::InvalidContinuationToken => FgaError::invalid_continuation_token(),
            StoreError::InvalidInput(m) => FgaError::validation(m),
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "database unavailable");
                FgaError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    "the database is unavailable; retry later",
                )
            }
            other => FgaError::internal(other),
        }
    }
}

impl From<TupleWriteError> for FgaError {
    fn from(err: TupleWriteError) -> Self {
        match err {
            TupleWriteError::StoreNotFound(_) => FgaError::store_not_found(),
            TupleWriteError::InvalidInput(_) => {
                FgaError::bad_request("invalid_tuple", err.to_string())
            }
            TupleWriteError::DuplicateInRequest { .. } => FgaError::bad_request(
                "cannot_allow_duplicate_tuples_in_one_request",
                err.to_string(),
            ),
            TupleWriteError::AlreadyExists { .. }
            | TupleWriteError::ConditionConflict { .. }
            | TupleWriteError::DoesNotExist { .. } => {
                FgaError::bad_request("write_failed_due_to_invalid_input", err.to_string())
            }
            TupleWriteError::Store(e) => e.into(),
        }
    }
}
