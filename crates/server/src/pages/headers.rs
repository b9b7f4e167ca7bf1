//! Security headers on every response of the pages router, errors and redirects included.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};

/// Scripts only from this origin (the one static passkey script; no inline script), styles and
/// images from this origin (images also as `data:` for the TOTP QR code), never framed, no
/// `<base>`.
///
/// No `form-action`: browsers apply it to every redirect that follows a form submission, and
/// the sign-in, consent and logout forms end in a redirect to the client's registered
/// redirect URI (any origin, or a native app's private-use scheme). Injected forms are kept out
/// by the templates (every interpolation escaped) and `default-src 'self'` (no inline script).
pub const CSP: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; \
                       base-uri 'none'; object-src 'none'";

/// Adds the headers; `Cache-Control: no-store` on everything but the static stylesheet.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let is_static = request.uri().path().starts_with("/static/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if is_static {
        headers.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        );
    } else {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
