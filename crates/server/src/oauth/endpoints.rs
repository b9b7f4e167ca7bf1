//! The machine endpoints: discovery, token, PAR, device authorization, introspection,
//! revocation and userinfo.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};
use trustgate_listener::mtls::PeerCertificates;
use trustgate_oauth::provider::{Possession, TokenPresentation};
use trustgate_oauth::{ErrorCode, OAuthError};

use super::{
    DpopHeader, OAuthForm, credentials, no_store_json, oauth_error, used_basic, with_dpop_nonce,
};
use crate::AppState;
use crate::client_context::ClientContext;

/// `GET /.well-known/openid-configuration` and `/.well-known/oauth-authorization-server`.
pub async fn discovery(State(state): State<AppState>) -> Response {
    (
        [(
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        )],
        axum::Json(state.oauth.discovery()),
    )
        .into_response()
}

/// `GET /.well-known/jwks.json`: the published signing keys, cacheable for less than the time a
/// new key is published before it signs.
pub async fn jwks(State(state): State<AppState>) -> Response {
    let max_age = state.oauth.keys().policy().jwks_max_age.whole_seconds();
    let cache = HeaderValue::from_str(&format!("public, max-age={max_age}"))
        .unwrap_or_else(|_| HeaderValue::from_static("no-cache"));
    (
        [
            (CACHE_CONTROL, cache),
            (
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwk-set+json"),
            ),
        ],
        state.oauth.keys().jwks().to_string(),
    )
        .into_response()
}

/// The `x5t#S256` of the client certificate, when the request came over mutual TLS.
fn certificate_thumbprint(peer: Option<&PeerCertificates>) -> Option<String> {
    peer.and_then(PeerCertificates::end_entity)
        .map(|der| trustgate_authn::certificates::thumbprint(der))
}

/// `POST /oauth2/token`, with a `DPoP` proof or without; over mutual TLS the access token is
/// bound to the client certificate (RFC 8705 §3).
pub async fn token(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    dpop: DpopHeader,
    peer: Option<axum::Extension<PeerCertificates>>,
    headers: HeaderMap,
    OAuthForm(params): OAuthForm,
) -> Response {
    let certificate = certificate_thumbprint(peer.as_deref());
    let (presented, basic) = match presented(&headers, &params, peer.as_deref()) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    // A token exchange may present an API key as its subject token: the provider asks the key
    // service through the same lookup introspection uses.
    let api_keys = state.api_keys.clone();
    let issued = state
        .oauth
        .token_with(
            &params,
            &presented,
            &ctx,
            Possession {
                dpop: dpop.proof(),
                certificate: certificate.as_deref(),
            },
            |token| async move { describe_api_key(&api_keys, &token).await },
        )
        .await;
    let response = match issued {
        Ok(response) => no_store_json(&response),
        Err(e) => oauth_error(&e, basic),
    };
    with_dpop_nonce(response, &state, &dpop)
}

/// `POST /oauth2/par` (RFC 9126 §2): 201 with the `request_uri`. A `DPoP` proof binds the
/// code to come (RFC 9449 §10.1).
pub async fn par(
    State(state): State<AppState>,
    dpop: DpopHeader,
    peer: Option<axum::Extension<PeerCertificates>>,
    headers: HeaderMap,
    OAuthForm(params): OAuthForm,
) -> Response {
    let certificate = certificate_thumbprint(peer.as_deref());
    let (presented, basic) = match presented(&headers, &params, peer.as_deref()) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let possession = Possession {
        dpop: dpop.proof(),
        certificate: certificate.as_deref(),
    };
    let response = match state.oauth.push(&params, &presented, possession).await {
        Ok(pushed) => {
            let mut response = no_store_json(&pushed);
            *response.status_mut() = StatusCode::CREATED;
            response
        }
        Err(e) => oauth_error(&e, basic),
    };
    with_dpop_nonce(response, &state, &dpop)
}

/// `POST /oauth2/device_authorization` (RFC 8628 §3.1).
pub async fn device_authorization(
    State(state): State<AppState>,
    peer: Option<axum::Extension<PeerCertificates>>,
    headers: HeaderMap,
    OAuthForm(params): OAuthForm,
) -> Response {
    let (presented, basic) = match presented(&headers, &params, peer.as_deref()) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    match state.oauth.device_authorize(&params, &presented).await {
        Ok(response) => no_store_json(&response),
        Err(e) => oauth_error(&e, basic),
    }
}

/// `POST /oauth2/introspect` (RFC 7662).
pub async fn introspect(
    State(state): State<AppState>,
    peer: Option<axum::Extension<PeerCertificates>>,
    headers: HeaderMap,
    OAuthForm(params): OAuthForm,
) -> Response {
    let (presented, basic) = match presented(&headers, &params, peer.as_deref()) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let api_keys = state.api_keys.clone();
    let described = state
        .oauth
        .introspect_with(&params, &presented, |token| async move {
            describe_api_key(&api_keys, &token).await
        })
        .await;
    match described {
        Ok(body) => no_store_json(&body),
        Err(e) => oauth_error(&e, basic),
    }
}

/// An API key for introspection and for token exchange (a key as the subject token): live
/// (not revoked, expired or of a disabled owner) or `None`. The key's rate limit counts these
/// as uses; an exhausted key is described as inactive (logged), never as active.
async fn describe_api_key(
    api_keys: &trustgate_authn::api_keys::ApiKeys,
    token: &str,
) -> Result<Option<trustgate_oauth::provider::ApiKeyIntrospection>, trustgate_oauth::OAuthError> {
    use trustgate_authn::api_keys::KeyRefusal;
    match api_keys.verify(token, None).await {
        Ok(identity) => Ok(Some(trustgate_oauth::provider::ApiKeyIntrospection {
            sub: identity.principal.subject(),
            scopes: identity.scopes.clone(),
            key_id: identity.key_id.clone(),
            expires_at: identity.expires_at,
        })),
        Err(KeyRefusal::Invalid) => Ok(None),
        Err(KeyRefusal::RateLimited { retry_after_secs }) => {
            tracing::info!(
                retry_after_secs,
                "introspected API key is rate limited; answered inactive"
            );
            Ok(None)
        }
        Err(KeyRefusal::Store(e)) => Err(trustgate_oauth::OAuthError::from(e)),
    }
}

/// `POST /oauth2/revoke` (RFC 7009): 200 with an empty body, also for unknown tokens.
pub async fn revoke(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    peer: Option<axum::Extension<PeerCertificates>>,
    headers: HeaderMap,
    OAuthForm(params): OAuthForm,
) -> Response {
    let (presented, basic) = match presented(&headers, &params, peer.as_deref()) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    match state.oauth.revoke(&params, &presented, &ctx).await {
        Ok(()) => (
            StatusCode::OK,
            [(CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        )
            .into_response(),
        Err(e) => oauth_error(&e, basic),
    }
}

/// The client credentials of a machine request and whether they came as HTTP Basic (so a 401
/// challenges it), or the error response. Over mutual TLS a bare `client_id` comes with the
/// client certificate (`tls_client_auth` and `self_signed_tls_client_auth`, RFC 8705 §2).
fn presented(
    headers: &HeaderMap,
    params: &trustgate_oauth::request::Params,
    peer: Option<&PeerCertificates>,
) -> Result<(trustgate_oauth::clients::PresentedCredentials, bool), Box<Response>> {
    let basic = used_basic(headers);
    let certificate = peer.and_then(|peer| {
        let identity = trustgate_authn::certificates::identify(peer.end_entity()?).ok()?;
        Some(trustgate_oauth::clients::ClientCertificate {
            subject_dn: identity.subject_dn,
            san_uris: identity.uris,
            san_dns: identity.dns_names,
            san_ips: identity.ip_addresses,
            san_emails: identity.emails,
            thumbprint: identity.thumbprint,
            chain_trusted: peer.trusted,
        })
    });
    credentials(headers, params)
        .map(|c| match certificate {
            Some(certificate) => (c.over_mutual_tls(certificate), basic),
            None => (c, basic),
        })
        .map_err(|e| Box::new(oauth_error(&e, basic)))
}

/// `GET /oidc/userinfo`: the access token from the `Authorization` header, `Bearer` or `DPoP`.
pub async fn userinfo_get(
    State(state): State<AppState>,
    dpop: DpopHeader,
    peer: Option<axum::Extension<PeerCertificates>>,
    headers: HeaderMap,
) -> Response {
    let certificate = certificate_thumbprint(peer.as_deref());
    let presented = Presented {
        dpop: &dpop,
        certificate: certificate.as_deref(),
        method: "GET",
    };
    match authorization(&headers) {
        Ok(Some((scheme, token))) => userinfo(&state, &token, scheme, presented).await,
        Ok(None) => challenge(Scheme::Bearer, None),
        Err((scheme, e)) => challenge(scheme, Some(&e)),
    }
}

/// `POST /oidc/userinfo`: the access token from the header or, per RFC 6750 §2.2, the form
/// field `access_token` as a bearer token (never both).
pub async fn userinfo_post(
    State(state): State<AppState>,
    dpop: DpopHeader,
    peer: Option<axum::Extension<PeerCertificates>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let certificate = certificate_thumbprint(peer.as_deref());
    let presented = Presented {
        dpop: &dpop,
        certificate: certificate.as_deref(),
        method: "POST",
    };
    let from_header = match authorization(&headers) {
        Ok(t) => t,
        Err((scheme, e)) => return challenge(scheme, Some(&e)),
    };
    let from_body = match super::parse_params(&body) {
        Ok(params) => params.get("access_token").map(str::to_owned),
        Err(e) => return challenge(Scheme::Bearer, Some(&e)),
    };
    match (from_header, from_body) {
        (Some((scheme, _)), Some(_)) => challenge(
            scheme,
            Some(&OAuthError::invalid_request(
                "present the access token once",
            )),
        ),
        (Some((scheme, token)), None) => userinfo(&state, &token, scheme, presented).await,
        (None, Some(token)) => userinfo(&state, &token, Scheme::Bearer, presented).await,
        (None, None) => challenge(Scheme::Bearer, None),
    }
}

/// What came with a userinfo request besides the token.
#[derive(Clone, Copy)]
struct Presented<'a> {
    dpop: &'a DpopHeader,
    certificate: Option<&'a str>,
    method: &'a str,
}

async fn userinfo(
    state: &AppState,
    token: &str,
    scheme: Scheme,
    presented: Presented<'_>,
) -> Response {
    let method = presented.method;
    let presentation = match (scheme, presented.dpop.proof()) {
        (Scheme::Dpop, Some(proof)) => TokenPresentation::Dpop { proof, method },
        (Scheme::Dpop, None) => {
            return challenge(
                scheme,
                Some(&OAuthError::invalid_dpop_proof(
                    "the DPoP scheme needs a DPoP proof",
                )),
            );
        }
        // RFC 9449 §7.2: a proof next to a bearer token does not make it a DPoP request.
        (Scheme::Bearer, _) => TokenPresentation::Bearer,
    };
    match state
        .oauth
        .userinfo_over(token, presentation, presented.certificate)
        .await
    {
        Ok(claims) => no_store_json(&claims),
        Err(e)
            if matches!(
                e.code,
                ErrorCode::InvalidToken
                    | ErrorCode::InsufficientScope
                    | ErrorCode::InvalidDpopProof
                    | ErrorCode::UseDpopNonce
            ) =>
        {
            challenge(scheme, Some(&e))
        }
        Err(e) => oauth_error(&e, false),
    }
}

/// The authorization scheme an access token came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    /// RFC 6750.
    Bearer,
    /// RFC 9449 §7.1.
    Dpop,
}

/// The access token of the `Authorization` header (`Bearer` or `DPoP`), if it is present; a
/// malformed one is `invalid_request`, challenged in the scheme it named.
fn authorization(headers: &HeaderMap) -> Result<Option<(Scheme, String)>, (Scheme, OAuthError)> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = |scheme| {
        (
            scheme,
            OAuthError::invalid_request("the Authorization header must be a Bearer or DPoP token"),
        )
    };
    let value = value.to_str().map_err(|_| malformed(Scheme::Bearer))?;
    let (scheme, token) = value.split_once(' ').ok_or(malformed(Scheme::Bearer))?;
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Err(malformed(Scheme::Bearer));
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(malformed(scheme));
    }
    Ok(Some((scheme, token.to_owned())))
}

/// The `algs` of a DPoP challenge (RFC 9449 §7.1).
const DPOP_CHALLENGE: &str = "DPoP realm=\"trustgate\", algs=\"EdDSA ES256 RS256\"";

/// RFC 6750 §3 and RFC 9449 §7.1: 401 with `WWW-Authenticate` in the scheme the token came
/// with (and the error when there is one; 403 for `insufficient_scope`, 400 for
/// `invalid_request`). Without any token, both schemes are offered.
fn challenge(scheme: Scheme, error: Option<&OAuthError>) -> Response {
    let prefix = match scheme {
        Scheme::Bearer => "Bearer realm=\"trustgate\"",
        Scheme::Dpop => DPOP_CHALLENGE,
    };
    let (status, challenge) = match error {
        None => (StatusCode::UNAUTHORIZED, prefix.to_owned()),
        Some(e) => {
            let status = match e.code {
                ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
                ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
                _ => StatusCode::UNAUTHORIZED,
            };
            let description: String = e
                .description
                .chars()
                .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
                .collect();
            (
                status,
                format!(
                    "{prefix}, error=\"{}\", error_description=\"{description}\"",
                    e.code.as_str()
                ),
            )
        }
    };
    let mut response = match error {
        Some(e) => oauth_error(e, false),
        None => (
            StatusCode::UNAUTHORIZED,
            [(CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        )
            .into_response(),
    };
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    if error.is_none() && scheme == Scheme::Bearer {
        response
            .headers_mut()
            .append(WWW_AUTHENTICATE, HeaderValue::from_static(DPOP_CHALLENGE));
    }
    response
}
