//! OpenFGA's error body: `{"code": "validation_error", "message": "..."}`.
//!
//! Service errors ([`PdpError`]) map 1:1 to OpenFGA's codes ([`status_and_code`]); the transport
//! adds only its own (`validation_error` for unreadable bodies and headers, 413
//! `payload_too_large`). [`FgaError`] renders itself (status, `content-type: application/json`, body), so the
//! [`crate::error::render_errors`] layer leaves it alone. Codes and messages follow OpenFGA's
//! server (`pkg/server/errors`); the status is 400 for every input error (OpenFGA's `ErrorCode`
//! range), 404 only for `store_id_not_found`, 500 for `internal_error`.

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use serde::Serialize;
use trustgate_pdp::PdpError;
use trustgate_store_api::Outage;

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

    /// 400 `validation_error`: an unreadable body, header or query, or a required field of the
    /// wire form missing.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "validation_error", message)
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

/// OpenFGA's status and code of a PDP error: 400 for every input error, 404 for a missing
/// store, 503 when the database is unavailable or read-only (507 when its storage is full),
/// 500 otherwise.
pub fn status_and_code(err: &PdpError) -> (StatusCode, &'static str) {
    let bad = |code| (StatusCode::BAD_REQUEST, code);
    match err {
        PdpError::Validation(_) => bad("validation_error"),
        PdpError::TypeNotFound(_) => bad("type_not_found"),
        PdpError::RelationNotFound(_) => bad("relation_not_found"),
        PdpError::InvalidTuple(_) => bad("invalid_tuple"),
        PdpError::ResolutionTooComplex(_) => bad("authorization_model_resolution_too_complex"),
        PdpError::ModelNotFound(_) => bad("authorization_model_not_found"),
        PdpError::LatestModelNotFound(_) => bad("latest_authorization_model_not_found"),
        PdpError::InvalidContinuationToken => bad("invalid_continuation_token"),
        PdpError::DuplicateTuplesInRequest(_) => {
            bad("cannot_allow_duplicate_tuples_in_one_request")
        }
        PdpError::WriteFailedDueToInvalidInput(_) => bad("write_failed_due_to_invalid_input"),
        PdpError::InvalidWriteInput => bad("invalid_write_input"),
        PdpError::ExceededEntityLimit(_) => bad("exceeded_entity_limit"),
        PdpError::InvalidModel(_) => bad("invalid_authorization_model"),
        PdpError::StoreNotFound => (StatusCode::NOT_FOUND, "store_id_not_found"),
        PdpError::Unavailable(cause) => match cause.outage() {
            Some(Outage::StorageFull) => (StatusCode::INSUFFICIENT_STORAGE, "storage_full"),
            Some(Outage::ReadOnly) => (StatusCode::SERVICE_UNAVAILABLE, "read_only"),
            Some(Outage::Unavailable) | None => {
                (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable")
            }
        },
        PdpError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
    }
}

impl From<PdpError> for FgaError {
    fn from(err: PdpError) -> Self {
        let (status, code) = status_and_code(&err);
        match &err {
            PdpError::Internal(_) => FgaError::internal(&err),
            PdpError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                FgaError::new(status, code, err.to_string())
            }
            _ => FgaError::new(status, code, err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustgate_store_api::StoreError;

    #[test]
    fn database_outages_are_5xx_with_their_code() {
        let cases = [
            (
                StoreError::Unavailable("down".into()),
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
            ),
            (
                StoreError::StorageFull("disk".into()),
                StatusCode::INSUFFICIENT_STORAGE,
                "storage_full",
            ),
            (
                StoreError::ReadOnly("ro".into()),
                StatusCode::SERVICE_UNAVAILABLE,
                "read_only",
            ),
        ];
        for (err, status, code) in cases {
            assert_eq!(status_and_code(&PdpError::from(err)), (status, code));
        }
    }
}
