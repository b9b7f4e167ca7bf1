//! The one error shape of trustgate's own JSON APIs:
//! `{"code": "stable_machine_code", "message": "human text", "request_id": "..."}`.
//!
//! Handlers return [`ApiError`]. Its response carries the code and message as an extension and
//! no body yet; [`render_errors`] (the outermost layer, which knows the request id) writes the
//! final JSON. The same layer gives framework-made responses (unknown route, wrong method, body
//! too large, timeout) the same shape, so no client ever sees an empty or plain-text error from
//! trustgate's own routes. OpenFGA-compatible routes render OpenFGA's error bodies themselves and
//! are left alone (they already carry a JSON body).

use std::borrow::Cow;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use serde::Serialize;

use crate::request_id::RequestId;

/// An error answer of a trustgate JSON API.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
    /// Seconds for `Retry-After` (429 answers).
    retry_after: Option<u64>,
}

/// What [`render_errors`] turns into the JSON body.
#[derive(Debug, Clone)]
struct ErrorBody {
    code: Cow<'static, str>,
    message: String,
}

#[derive(Serialize)]
struct Rendered<'a> {
    code: &'a str,
    message: &'a str,
    request_id: &'a str,
}

impl ApiError {
    /// An error with an explicit status and stable code.
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 with the given code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: no credential or an invalid one. Rendered with `WWW-Authenticate: Bearer`.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403: a known principal that may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 403 `permission_denied`: a known principal that lacks `needed`, named in the message.
    pub fn permission_denied(needed: &trustgate_pdp::system::Role) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "permission_denied",
            format!("the caller lacks the permission {needed}"),
        )
    }

    /// 429 `rate_limited` with `Retry-After: retry_after_secs`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "the API key's rate limit is exhausted; retry later",
        );
        error.retry_after = Some(retry_after_secs);
        error
    }

    /// 404 with the given code.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 503: a dependency (the database) is unavailable; retrying may succeed.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 500. The detail goes to the log, not to the client.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the request id identifies it in the server log",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable machine code.
    pub fn code(&self) -> &str {
        &self.code
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)
    }
}

impl From<trustgate_store_api::StoreError> for ApiError {
    fn from(err: trustgate_store_api::StoreError) -> Self {
        if let Some(outage) = err.outage() {
            // A full store logs once per episode itself; an unreachable one is worth a line
            // per request, as the cause may change.
            if outage == trustgate_store_api::Outage::Unavailable {
                tracing::warn!(error = %err, "database unavailable");
            }
            let status = StatusCode::from_u16(outage.http_status())
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return ApiError::new(status, outage.code(), outage.message());
        }
        match err {
            trustgate_store_api::StoreError::Conflict(m) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", m.to_string())
            }
            other => ApiError::internal(other),
        }
    }
}

/// trustgate's own permission checks and role changes: a database outage stays an outage (503 /
/// 507 with its code; never a 500, never a permission decided without the database); anything
/// else the PDP reports here is a defect.
impl From<trustgate_pdp::PdpError> for ApiError {
    fn from(err: trustgate_pdp::PdpError) -> Self {
        match err {
            trustgate_pdp::PdpError::Unavailable(cause) => ApiError::from(cause),
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"trustgate\""),
            );
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(ErrorBody {
            code: self.code,
            message: self.message,
        });
        response
    }
}

/// Renders [`ApiError`]s and body-less framework errors as the JSON error shape.
pub async fn render_errors(request: Request, next: Next) -> Response {
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.as_str().to_owned())
        .unwrap_or_default();
    let mut response = next.run(request).await;
    let body = match response.extensions_mut().remove::<ErrorBody>() {
        Some(body) => body,
        None if needs_shape(&response) => framework_error(response.status()),
        None => return response,
    };
    let json = serde_json::to_vec(&Rendered {
        code: &body.code,
        message: &body.message,
        request_id: &request_id,
    })
    .unwrap_or_default();
    let (mut parts, _) = response.into_parts();
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(json))
}

/// An error status without a JSON or HTML body was produced by the framework, not a handler.
fn needs_shape(response: &Response) -> bool {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return false;
    }
    match response.headers().get(CONTENT_TYPE) {
        None => true,
        Some(ct) => ct.as_bytes().starts_with(b"text/plain"),
    }
}

fn framework_error(status: StatusCode) -> ErrorBody {
    let (code, message): (&'static str, &str) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "method not allowed on this route")
        }
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "request body exceeds the configured limit",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ),
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => {
            ("invalid_request", "the request could not be parsed")
        }
        StatusCode::SERVICE_UNAVAILABLE => (
            "request_timeout",
            "the request took too long and was abandoned",
        ),
        _ => ("error", "request failed"),
    };
    ErrorBody {
        code: code.into(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustgate_store_api::StoreError;

    /// A database that cannot serve answers "retry later" with a stable code, never a 500; a
    /// defect stays a 500 without the driver's text.
    #[test]
    fn store_outages_have_stable_codes() {
        let cases = [
            (StoreError::Unavailable("down".into()), 503, "unavailable"),
            (StoreError::StorageFull("disk".into()), 507, "storage_full"),
            (StoreError::ReadOnly("ro".into()), 503, "read_only"),
            (StoreError::Database("driver text".into()), 500, "internal"),
        ];
        for (err, status, code) in cases {
            let api = ApiError::from(err);
            assert_eq!(api.status().as_u16(), status, "{api}");
            assert_eq!(api.code(), code, "{api}");
            assert!(!api.to_string().contains("driver text"), "{api}");
        }
    }

    /// A permission check that cannot reach the database is an outage, not a defect.
    #[test]
    fn pdp_outages_stay_outages() {
        let down = trustgate_pdp::PdpError::from(StoreError::Unavailable("down".into()));
        let api = ApiError::from(down);
        assert_eq!((api.status().as_u16(), api.code()), (503, "unavailable"));
        let full = trustgate_pdp::PdpError::from(StoreError::StorageFull("disk".into()));
        assert_eq!(ApiError::from(full).code(), "storage_full");
        let bug = ApiError::from(trustgate_pdp::PdpError::Internal("x".into()));
        assert_eq!(bug.status().as_u16(), 500);
    }
}
