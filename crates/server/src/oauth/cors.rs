//! CORS for the OAuth endpoints a browser application calls from its own origin.
//!
//! - The discovery documents and the JWKS are public: any origin may read them
//!   (`Access-Control-Allow-Origin: *`), never with credentials.
//! - The token, revocation and userinfo endpoints answer an origin only if it is a registered
//!   browser origin: the origin of a public client's `http(s)` redirect URI
//!   ([`ClientRegistry::browser_origins`](trustgate_oauth::clients::ClientRegistry::browser_origins)).
//!   The origin is echoed (never `*`), with `Vary: Origin`; credentials (cookies) are never
//!   allowed, since these endpoints authenticate by what the request carries. A preflight from
//!   any other origin is refused (403, no CORS headers), and an actual request from one is
//!   served without CORS headers, so the page cannot read the answer.
//! - Pages and the admin API have no CORS at all: a cross-origin read of them is refused by
//!   the browser.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
    VARY,
};
use http::{HeaderValue, Method, StatusCode};

use crate::AppState;

/// How long a browser may reuse a preflight answer.
const MAX_AGE: HeaderValue = HeaderValue::from_static("600");
/// What a page may send: the client's credentials, the form, a DPoP proof.
const ALLOWED_HEADERS: HeaderValue = HeaderValue::from_static("authorization, content-type, dpop");
/// What a page may read besides the simple headers: the challenge and the DPoP nonce.
const EXPOSED_HEADERS: HeaderValue = HeaderValue::from_static("www-authenticate, dpop-nonce");
const METHODS: HeaderValue = HeaderValue::from_static("GET, POST");

/// A preflight: `OPTIONS` with `Access-Control-Request-Method`.
fn is_preflight(request: &Request) -> bool {
    request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// The request's `Origin`, if it is a plain web origin (`scheme://host[:port]`).
fn origin(request: &Request) -> Option<String> {
    let value = request.headers().get(ORIGIN)?.to_str().ok()?;
    let url = url::Url::parse(value).ok()?;
    let origin = url.origin().ascii_serialization();
    // `null`, paths and anything else that is not exactly an origin are no origin.
    (matches!(url.scheme(), "http" | "https") && origin == value).then_some(origin)
}

fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

/// The discovery documents and the JWKS: readable from any origin.
pub(crate) async fn public_documents(request: Request, next: Next) -> Response {
    if is_preflight(&request) {
        let mut response = empty(StatusCode::NO_CONTENT);
        let headers = response.headers_mut();
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        headers.insert(
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET"),
        );
        headers.insert(ACCESS_CONTROL_MAX_AGE, MAX_AGE);
        return response;
    }
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

/// The token, revocation and userinfo endpoints: registered browser origins only.
pub(crate) async fn browser_endpoints(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(origin) = origin(&request) else {
        if is_preflight(&request) {
            return empty(StatusCode::FORBIDDEN);
        }
        return next.run(request).await;
    };
    let allowed = match state.oauth.clients().browser_origins().await {
        Ok(origins) => origins.contains(&origin),
        Err(e) => {
            // Not knowing the registered origins is refusing them: the page cannot read the
            // answer, and a retry works once the registry answers.
            tracing::warn!(error = %e, "cannot read the registered browser origins");
            false
        }
    };
    let Ok(echoed) = HeaderValue::try_from(origin) else {
        return next.run(request).await;
    };
    if is_preflight(&request) {
        let method_allowed = request
            .headers()
            .get(ACCESS_CONTROL_REQUEST_METHOD)
            .is_some_and(|m| m == "GET" || m == "POST");
        if !(allowed && method_allowed) {
            let mut response = empty(StatusCode::FORBIDDEN);
            response
                .headers_mut()
                .insert(VARY, HeaderValue::from_static("origin"));
            return response;
        }
        let mut response = empty(StatusCode::NO_CONTENT);
        let headers = response.headers_mut();
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, echoed);
        headers.insert(ACCESS_CONTROL_ALLOW_METHODS, METHODS);
        headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS);
        headers.insert(ACCESS_CONTROL_MAX_AGE, MAX_AGE);
        headers.insert(VARY, HeaderValue::from_static("origin"));
        return response;
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.append(VARY, HeaderValue::from_static("origin"));
    if allowed {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, echoed);
        headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED_HEADERS);
    }
    response
}
