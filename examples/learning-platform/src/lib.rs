//! The learning platform: trustgate's end-to-end example, its own small axum service.
//!
//! Students read only their own progress; instructors edit the courses they own (and read
//! their students' progress); admins change the platform's settings, but only with a second
//! factor performed in the last 10 minutes. The service keeps its data in memory and decides
//! nothing itself:
//!
//! ```text
//! browser ─► pages (web)  ── sign-in: OIDC code + PKCE at trustgate, ID token verified ──┐
//!              │ each page calls the API in-process with the user's access token          │
//!              ▼                                                                          │
//!          pep layer ─ JWT against trustgate's JWKS (aud = the API audience), still active │
//!              │       at trustgate's introspection (revoked, signed out, disabled → 401), │
//!              │       scope `learning`, step-up for settings (RFC 9470) ─ PDP over HTTP    │
//!              ▼       (`POST /stores/{id}/check` with a store-scoped API key)             │
//!          API handlers (api) ─ the Principal extractor; no authorization logic            │
//! ```
//!
//! The policy is two files: `model.fga` (the relationship model, loaded into trustgate's PDP)
//! and [`api::policy`] (route → relation on object). `trustgate demo` starts trustgate and this
//! service with demo users, tuples and the OAuth client, and prints what to try.
//!
//! # Modules
//! - [`api`]: the JSON API, its data and its route table.
//! - [`web`]: the pages and the OpenID Connect relying party.
//! - [`upstream`]: the API behind `trustgate gateway` instead of the layer (`gateway.toml`, the
//!   second route set): only the gateway's exchanged internal tokens are accepted.

pub mod api;
pub mod upstream;
pub mod web;

/// The gateway route set of the example (`gateway.toml`).
pub const GATEWAY_TOML: &str = include_str!("../gateway.toml");

use std::sync::Arc;

use axum::Router;
use parking_lot::RwLock;
use serde::Deserialize;
use trustgate_core::{Clock, Secret, SystemClock};
use trustgate_pep::{
    Authenticator, DecisionCache, DecisionCacheConfig, DecisionPoint, DecisionSink,
    HttpDecisionPoint, IntrospectionConfig, Introspector, JwtConfig, JwtVerifier, Pep, RouteError,
    TracingSink,
};

pub use api::{Catalogue, SharedCatalogue};

/// The relationship model of the platform (`model.fga`), in OpenFGA's DSL.
pub const MODEL: &str = include_str!("../model.fga");

/// The audience of the API's access tokens (the OAuth client's `audience`).
pub const API_AUDIENCE: &str = "learning-api";

/// How the service reaches trustgate and who it is there.
#[derive(Debug, Clone)]
pub struct Settings {
    /// trustgate's base URL (its issuer), e.g. `http://127.0.0.1:8080/`.
    pub trustgate_url: url::Url,
    /// This service's own base URL; the redirect URI is `{public_url}callback`.
    pub public_url: url::Url,
    /// The OAuth client of this service (confidential, code flow, audience [`API_AUDIENCE`],
    /// resource audience [`API_AUDIENCE`] so that it may introspect the API's tokens).
    pub client_id: String,
    /// Its secret.
    pub client_secret: Secret,
    /// The audience the API's tokens must carry.
    pub api_audience: String,
    /// The PDP store holding `model.fga` and the tuples.
    pub store_id: String,
    /// An API key that may check in that store.
    pub pdp_key: Secret,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// trustgate's discovery document could not be fetched or read.
    #[error("trustgate's discovery document: {0}")]
    Discovery(String),
    /// A URL could not be built.
    #[error("a URL: {0}")]
    Url(#[from] url::ParseError),
    /// The route table is malformed.
    #[error("the route table: {0}")]
    Routes(#[from] RouteError),
    /// The HTTP client could not be built.
    #[error("the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// The PDP's revision feed cannot be set up.
    #[error("the PDP's revision feed: {0}")]
    Feed(#[from] trustgate_pep::Unavailable),
}

/// trustgate's endpoints, from its discovery document (OpenID Connect Discovery 1.0 §3).
#[derive(Debug, Clone, Deserialize)]
pub struct Endpoints {
    /// `issuer`.
    pub issuer: String,
    /// `authorization_endpoint`.
    #[serde(rename = "authorization_endpoint")]
    pub authorization: url::Url,
    /// `token_endpoint`.
    #[serde(rename = "token_endpoint")]
    pub token: url::Url,
    /// `end_session_endpoint`.
    #[serde(rename = "end_session_endpoint")]
    pub end_session: url::Url,
    /// `introspection_endpoint`.
    #[serde(rename = "introspection_endpoint")]
    pub introspection: url::Url,
    /// `jwks_uri`.
    pub jwks_uri: url::Url,
    /// `userinfo_endpoint`.
    #[serde(rename = "userinfo_endpoint")]
    pub userinfo: url::Url,
}

impl Endpoints {
    /// Fetches `{trustgate_url}/.well-known/openid-configuration`.
    pub async fn discover(
        http: &reqwest::Client,
        trustgate_url: &url::Url,
    ) -> Result<Self, StartError> {
        let url = trustgate_url.join(".well-known/openid-configuration")?;
        let response = http
            .get(url)
            .send()
            .await
            .map_err(|e| StartError::Discovery(e.to_string()))?;
        if !response.status().is_success() {
            return Err(StartError::Discovery(format!(
                "answered {}",
                response.status()
            )));
        }
        response
            .json()
            .await
            .map_err(|e| StartError::Discovery(e.to_string()))
    }
}

/// What a test or an embedding may replace: the PDP and where decisions are recorded.
#[derive(Debug, Default)]
pub struct Parts {
    /// The PDP; default: trustgate's `POST /stores/{id}/check` with [`Settings::pdp_key`],
    /// behind pep's `DecisionCache` (following `GET /stores/{id}/watch`).
    pub pdp: Option<Arc<dyn DecisionPoint>>,
    /// The decision sink; default: log lines ([`TracingSink`]).
    pub sink: Option<Arc<dyn DecisionSink>>,
    /// The clock; default: the system's.
    pub clock: Option<Arc<dyn Clock>>,
}

/// The service: the API behind the `pep` layer, and the pages.
#[derive(Debug)]
pub struct LearningPlatform {
    /// The API with its `pep` layer (what the pages call in-process).
    pub api: Router,
    /// The whole service: pages and API.
    pub app: Router,
}

impl LearningPlatform {
    /// Builds the service: discovers trustgate's endpoints, then wires the layer and the pages.
    pub async fn build(
        settings: Settings,
        catalogue: SharedCatalogue,
        parts: Parts,
    ) -> Result<Self, StartError> {
        let http = reqwest::Client::builder()
            .timeout(web::HTTP_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let endpoints = Endpoints::discover(&http, &settings.trustgate_url).await?;
        let clock = parts.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let mut jwt = JwtConfig::for_trustgate(&endpoints.issuer, &settings.api_audience)?;
        jwt.jwks_url = endpoints.jwks_uri.clone();
        let verifier = JwtVerifier::new(jwt, http.clone(), clock.clone());
        // Bearer JWTs only, each still active at trustgate's introspection (cached 5 s, and
        // emptied on every revocation the PDP feed reports): a signed-out session, a disabled
        // user or a revoked grant is refused within a poll of trustgate's credential epoch.
        let liveness = Introspector::new(
            IntrospectionConfig {
                url: endpoints.introspection.clone(),
                client_id: settings.client_id.clone(),
                client_secret: settings.client_secret.clone(),
                ttl: std::time::Duration::from_secs(5),
            },
            http.clone(),
            clock.clone(),
        );
        let pdp = match parts.pdp {
            Some(pdp) => pdp,
            None => {
                let pdp = HttpDecisionPoint::new(
                    &settings.trustgate_url,
                    &settings.store_id,
                    settings.pdp_key.clone(),
                    None,
                    http.clone(),
                )?;
                // Decisions are reused until the store changes (a tuple or the model), as the
                // store's revision feed reports; while the feed is down, every request asks.
                // The same feed reports revocations: the liveness cache is emptied on each.
                let feed = pdp.follow_revisions(web::HTTP_TIMEOUT)?;
                liveness.follow_revocations(&feed);
                Arc::new(DecisionCache::new(
                    Arc::new(pdp),
                    feed,
                    DecisionCacheConfig::default(),
                ))
            }
        };
        let authenticator = Authenticator {
            jwt: Some(verifier.clone()),
            jwt_liveness: Some(liveness),
            ..Authenticator::default()
        };
        let layer = Pep::builder("learning", api::policy()?, authenticator, pdp)
            .sink(parts.sink.unwrap_or_else(|| Arc::new(TracingSink)))
            .clock(clock)
            .build();
        let api = api::router(catalogue).layer(layer);
        let pages = Arc::new(web::Web::new(
            endpoints,
            settings.client_id,
            settings.client_secret,
            settings.public_url,
            verifier,
            http,
            api.clone(),
        ));
        let app = web::router(pages).merge(api.clone());
        Ok(LearningPlatform { api, app })
    }
}

/// A new shared catalogue.
pub fn shared(catalogue: Catalogue) -> SharedCatalogue {
    Arc::new(RwLock::new(catalogue))
}
