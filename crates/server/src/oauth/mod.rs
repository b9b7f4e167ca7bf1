//! The OAuth 2.0 authorization server and OpenID Provider over HTTP: the transport half of
//! `trustgate_oauth::provider::Provider`.
//!
//! | route | what | standard |
//! |---|---|---|
//! | `GET /.well-known/openid-configuration`, `/.well-known/oauth-authorization-server` | metadata | OIDC Discovery, RFC 8414 |
//! | `GET/POST /oauth2/authorize`, `POST /consent` | authorization code flow, consent page | RFC 6749 §4.1, RFC 7636, RFC 9207, OIDC Core §3.1 |
//! | `POST /oauth2/token` | code, refresh, client credentials, device code grants | RFC 6749 §5, RFC 8628 §3.4 |
//! | `POST /oauth2/par` | pushed authorization requests | RFC 9126 |
//! | `POST /oauth2/device_authorization`, `GET/POST /device`, `POST /device/decide` | device flow and its verification page | RFC 8628 |
//! | `POST /oauth2/introspect`, `POST /oauth2/revoke` | introspection, revocation | RFC 7662, RFC 7009 |
//! | `GET/POST /oidc/userinfo` | claims about the user | OIDC Core §5.3, RFC 6750 |
//! | `GET/POST /oidc/logout` | RP-initiated logout, back-channel notifications | OIDC RP-Initiated / Back-Channel Logout |
//!
//! Machine endpoints answer RFC 6749 error JSON (`{"error","error_description"}`) with
//! `Cache-Control: no-store`; browser endpoints answer pages with the same security headers,
//! CSRF rules and cookies as `/login`, and never redirect an error to an unverified URI.

mod authorize;
mod cors;
mod device;
mod endpoints;
mod logout;

pub(crate) use logout::end_browser_session;

use axum::Router;
use axum::body::Bytes;
use axum::extract::FromRequest;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, PRAGMA, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};
use trustgate_oauth::OAuthError;
use trustgate_oauth::clients::{PresentedCredentials, presented_credentials};
use trustgate_oauth::request::Params;

use crate::AppState;
use crate::pages::headers::security_headers;

/// The routes.
pub fn router(state: &AppState) -> Router<AppState> {
    let public_documents = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(endpoints::discovery),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(endpoints::discovery),
        )
        .route("/.well-known/jwks.json", get(endpoints::jwks))
        .layer(axum::middleware::from_fn(cors::public_documents));
    let browser_endpoints = Router::new()
        .route("/oauth2/token", post(endpoints::token))
        .route("/oauth2/revoke", post(endpoints::revoke))
        .route(
            "/oidc/userinfo",
            get(endpoints::userinfo_get).post(endpoints::userinfo_post),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            cors::browser_endpoints,
        ));
    let machine = Router::new()
        .route("/oauth2/par", post(endpoints::par))
        .route("/oauth2/introspect", post(endpoints::introspect))
        .route(
            "/oauth2/device_authorization",
            post(endpoints::device_authorization),
        )
        .merge(public_documents)
        .merge(browser_endpoints);
    let pages = Router::new()
        .route(
            "/oauth2/authorize",
            get(authorize::authorize_get).post(authorize::authorize_post),
        )
        .route("/consent", post(authorize::consent_submit))
        .route(
            "/account/consents/{client_id}/revoke",
            post(authorize::withdraw_consent),
        )
        .route(
            "/device",
            get(device::device_page).post(device::device_lookup),
        )
        .route("/device/decide", post(device::device_decide))
        .route(
            "/oidc/logout",
            get(logout::logout_get).post(logout::logout_post),
        )
        .route("/oidc/logout/confirm", post(logout::logout_confirm))
        .layer(axum::middleware::from_fn(security_headers));
    machine.merge(pages)
}

/// Parameters from a query string or a urlencoded body.
pub(crate) fn parse_params(raw: &[u8]) -> Result<Params, OAuthError> {
    Params::from_form(raw)
}

/// An `application/x-www-form-urlencoded` body as [`Params`]; anything else is
/// `invalid_request` (RFC 6749 §3.2 requires the form encoding at the token endpoint).
#[derive(Debug)]
pub(crate) struct OAuthForm(pub Params);

impl<S: Send + Sync> FromRequest<S> for OAuthForm {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        let is_form = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !is_form {
            return Err(oauth_error(
                &OAuthError::invalid_request("the body must be application/x-www-form-urlencoded"),
                false,
            ));
        }
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        parse_params(&body)
            .map(OAuthForm)
            .map_err(|e| oauth_error(&e, false))
    }
}

/// The request's `DPoP` header (RFC 9449 §4.1), if it sent one. Two of them, or one that is
/// not visible ASCII, is `invalid_dpop_proof` (§4.3 check 1).
#[derive(Debug)]
pub(crate) struct DpopHeader(pub Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for DpopHeader {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut http::request::Parts, _: &S) -> Result<Self, Response> {
        let mut values = parts.headers.get_all("dpop").iter();
        let Some(value) = values.next() else {
            return Ok(DpopHeader(None));
        };
        if values.next().is_some() {
            return Err(oauth_error(
                &OAuthError::invalid_dpop_proof("send one DPoP header"),
                false,
            ));
        }
        match value.to_str() {
            Ok(proof) if !proof.trim().is_empty() => Ok(DpopHeader(Some(proof.trim().to_owned()))),
            _ => Err(oauth_error(
                &OAuthError::invalid_dpop_proof("the DPoP header is not a JWT"),
                false,
            )),
        }
    }
}

impl DpopHeader {
    /// The proof, for the provider.
    pub(crate) fn proof(&self) -> Option<trustgate_oauth::provider::DpopProof<'_>> {
        self.0.as_deref().map(trustgate_oauth::provider::DpopProof)
    }
}

/// Adds a fresh `DPoP-Nonce` (RFC 9449 §8) to the answer to a request that carried a proof,
/// when the server requires nonces: on success so the client keeps a current one, and on
/// `use_dpop_nonce` because that is how the client learns it.
pub(crate) fn with_dpop_nonce(
    mut response: Response,
    state: &AppState,
    dpop: &DpopHeader,
) -> Response {
    if dpop.0.is_some()
        && let Some(nonce) = state.oauth.dpop_nonce()
        && let Ok(value) = HeaderValue::from_str(&nonce)
    {
        response.headers_mut().insert("dpop-nonce", value);
    }
    response
}

/// The client credentials a request presents.
pub(crate) fn credentials(
    headers: &HeaderMap,
    params: &Params,
) -> Result<PresentedCredentials, OAuthError> {
    let authorization = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    presented_credentials(authorization, &|name| params.get(name).map(str::to_owned))
}

/// Whether the request tried HTTP Basic client authentication (so a 401 challenges it).
pub(crate) fn used_basic(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() >= 6 && v[..6].eq_ignore_ascii_case("basic "))
}

/// An RFC 6749 §5.2 error response.
pub(crate) fn oauth_error(error: &OAuthError, basic_challenge: bool) -> Response {
    let status = StatusCode::from_u16(error.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let body = serde_json::json!({
        "error": error.code.as_str(),
        "error_description": error.description,
    });
    let mut response = (status, no_store(), axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED && basic_challenge {
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"trustgate\", charset=\"UTF-8\""),
        );
    }
    response
}

/// A JSON success that must not be cached (tokens, introspection).
pub(crate) fn no_store_json<T: serde::Serialize>(body: &T) -> Response {
    (StatusCode::OK, no_store(), axum::Json(body)).into_response()
}

fn no_store() -> [(http::HeaderName, HeaderValue); 2] {
    [
        (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}
