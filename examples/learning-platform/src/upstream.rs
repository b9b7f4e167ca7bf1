//! The API as an upstream of `trustgate gateway` (the second route set, `gateway.toml`).
//!
//! The gateway authenticates the caller, enforces the same rules as [`crate::api::policy`] and
//! forwards an allowed request with an internal token it obtained by token exchange (RFC
//! 8693): `aud` is this upstream's audience and `act` names the gateway's client. Here that
//! token is all that is accepted — verified against trustgate's JWKS, for this audience,
//! delegated to the gateway — so a request that did not come through the gateway, or carries a
//! caller's own token, or a forged identity header, is refused with 401. No decision is taken
//! twice: the handlers see the caller's [`Principal`] (the token's `sub`), as behind the layer.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use trustgate_core::{Clock, SystemClock};
use trustgate_pep::{JwtConfig, JwtVerifier, Principal};

use crate::{Endpoints, SharedCatalogue, StartError, api};

/// Who may call the upstream.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// trustgate's base URL (its issuer).
    pub trustgate_url: url::Url,
    /// The internal tokens' audience (the gateway's `upstream.audience`).
    pub audience: String,
    /// The gateway's OAuth client id: the actor every internal token must name.
    pub gateway_client_id: String,
}

#[derive(Debug)]
struct Gatekeeper {
    verifier: JwtVerifier,
    gateway_client_id: String,
}

/// The API routes, accepting only the gateway's internal tokens.
pub async fn router(
    settings: UpstreamSettings,
    catalogue: SharedCatalogue,
    clock: Option<Arc<dyn Clock>>,
) -> Result<Router, StartError> {
    let http = reqwest::Client::builder()
        .timeout(crate::web::HTTP_TIMEOUT)
        .build()?;
    let endpoints = Endpoints::discover(&http, &settings.trustgate_url).await?;
    let mut jwt = JwtConfig::for_trustgate(&endpoints.issuer, &settings.audience)?;
    jwt.jwks_url = endpoints.jwks_uri;
    let clock = clock.unwrap_or_else(|| Arc::new(SystemClock));
    let keeper = Arc::new(Gatekeeper {
        verifier: JwtVerifier::new(jwt, http, clock),
        gateway_client_id: settings.gateway_client_id,
    });
    Ok(api::router(catalogue).layer(axum::middleware::from_fn_with_state(keeper, admit)))
}

fn refuse(code: &str) -> Response {
    let mut response = (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({
            "code": code,
            "message": "only requests forwarded by the gateway are served here",
        })),
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"learning-upstream\", error=\"invalid_token\""),
    );
    response
}

/// Whether the token is delegated to the gateway: the outermost actor is its client.
fn forwarded_by_gateway(principal: &Principal, gateway_client_id: &str) -> bool {
    principal.act.as_ref().is_some_and(|actor| {
        actor.sub == gateway_client_id || actor.client_id.as_deref() == Some(gateway_client_id)
    })
}

async fn admit(
    State(keeper): State<Arc<Gatekeeper>>,
    mut request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == "/api/healthz" {
        return next.run(request).await;
    }
    let mut values = request.headers().get_all(header::AUTHORIZATION).iter();
    let token = match (values.next(), values.next()) {
        (Some(value), None) => value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().to_owned()),
        _ => None,
    };
    let Some(token) = token else {
        return refuse("internal_token_missing");
    };
    let principal = match keeper.verifier.verify(&token).await {
        Ok(principal) => principal,
        Err(
            trustgate_pep::AuthError::Invalid(why) | trustgate_pep::AuthError::InvalidProof(why),
        ) => return refuse(&why),
        Err(trustgate_pep::AuthError::Unavailable(why)) => {
            tracing::warn!(%why, "cannot verify internal tokens");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "trustgate's keys are unavailable",
            )
                .into_response();
        }
    };
    if !forwarded_by_gateway(&principal, &keeper.gateway_client_id) {
        return refuse("not_forwarded_by_the_gateway");
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}
