//! The authorization server and OpenID Provider: every endpoint's protocol logic over the store,
//! the signing keys and the client registry, with no transport. One file per endpoint, each one
//! `impl Provider` block:
//!
//! ```text
//! authorize.rs   authorize(params, session, decision) ─► Login | Consent | Redirect | ErrorPage
//!   decision.rs    the pure decision it asks: decide(facts) ─► AuthorizeStep
//! token.rs       token(params, credentials) ─► grants/{code, refresh, client_credentials,
//!                device, token_exchange}.rs ─► TokenResponse or OAuthError; the signing of a
//!                grant's tokens
//! par.rs         push(params, credentials) ─► PAR request_uri                      (RFC 9126)
//! device.rs      device_authorize / device_prompt / device_decide                   (RFC 8628)
//! introspect.rs  introspect                                                         (RFC 7662)
//! revoke.rs      revoke                                                             (RFC 7009)
//! userinfo.rs    userinfo                                                   (OIDC Core §5.3)
//! logout.rs      logout_request / end_session / revoke_user  (RP-Initiated, Back-Channel Logout)
//! consent.rs     consents / withdraw_consent                               (the account page)
//! verify.rs      our own access tokens and ID-token hints presented back to us
//! dpop.rs        DPoP proofs presented to us: verified, nonce checked, jti spent  (RFC 9449)
//! detail.rs      what codes and grants keep in the store's `detail` JSON
//! ```
//!
//! Security decisions made here:
//! - PKCE S256 for every client; codes single-use, 60 s, bound to client and redirect URI; a
//!   replayed code revokes the grant it produced (RFC 6749 §4.1.2, RFC 9700 §4.5);
//! - refresh tokens rotate on every use; a rotated token presented after the grace period
//!   revokes the whole family (RFC 9700 §4.14.2);
//! - access tokens carry `gid` (grant) and `uv` (the user's token version): introspection and
//!   userinfo refuse them once the grant is revoked or the user's version moved (disable, log out
//!   everywhere), while self-contained verifiers accept them until `exp` (at most the client's
//!   access token lifetime, 10 minutes by default);
//! - DPoP (RFC 9449): a proof binds the access token to its key (`cnf.jkt`); a public client's
//!   refresh tokens and a code requested with `dpop_jkt` (or pushed with a proof) are bound to
//!   the key and refused without a proof by it; a proof is spent once across replicas; userinfo
//!   honours a bound token only with a proof by its key;
//! - implicit and hybrid response types and the password grant are refused;
//! - token exchange (RFC 8693) only narrows: a confidential client registered for it exchanges
//!   a live access token it received (issued to it, or for an audience it serves) for one of its
//!   registered targets, with a scope within the subject token's, a lifetime within the subject
//!   token's and `oauth.token_exchange_ttl_secs`, and the `act` chain naming it; a resource
//!   server that opted in (`token_exchange.api_keys`) exchanges its callers' live API keys the
//!   same way (`token_with`: the key service introspection uses verifies them), for a token
//!   whose `sub` is the key's owner and whose `key_id` names the key.
//!
//! Tests: [`decision::decide`] row by row in `tests/it/authorize_decision.rs`; the endpoints over a
//! migrated in-memory SQLite store in `tests/it/provider.rs` (code + PKCE, a replayed code revoking
//! its grant, wrong and missing verifiers, codes bound to client, redirect URI and lifetime,
//! refresh rotation, grace and reuse, client credentials, device polling with `slow_down`,
//! denial and expiry, revocation and introspection of revoked tokens; token exchange in
//! `tests/it/token_exchange.rs`); the stored `detail`
//! formats in `detail.rs`. The HTTP surface (PAR, the consent page, `prompt`, `acr_values`,
//! `private_key_jwt`) is tested on both backends in the server crate (`tests/it/oauth_flows.rs`);
//! logout and back-channel logout only by a real relying party (`cli/tests/it/oidc.rs`).

mod authorize;
mod consent;
pub mod decision;
mod detail;
mod device;
mod dpop;
mod grants;
mod introspect;
mod logout;
mod par;
mod revoke;
mod token;
mod userinfo;
mod verify;

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value, json};
use time::{Duration, OffsetDateTime};
use trustgate_audit::{AuditKind, Auditor, Event, Outcome};
use trustgate_core::Clock;
use trustgate_store_api::OAuthStore;
use trustgate_tokens::{AccessTokenClaims, Algorithm, KeyManager};

use crate::clients::{Client, ClientError, ClientRegistry, GrantType, PresentedCredentials};
use crate::{Endpoints, ErrorCode, OAuthError};

pub use authorize::{AuthorizeOutcome, ConsentDecision, ConsentPrompt};
pub use consent::ConsentSummary;
pub use device::{DeviceAuthorizationResponse, DevicePrompt};
pub use dpop::{DpopProof, Possession};
pub use introspect::ApiKeyIntrospection;
pub use logout::{BackchannelNotice, LogoutRequest};
pub use par::PushedAuthorizationResponse;
pub use token::TokenResponse;
pub use userinfo::TokenPresentation;
pub use verify::OWN_TOKEN_LEEWAY;

/// Lifetimes and algorithms.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Authorization code lifetime (≤ 60 s).
    pub code_ttl: Duration,
    /// ID token lifetime.
    pub id_token_ttl: Duration,
    /// How long a rotated refresh token still works (concurrent refreshes).
    pub refresh_grace: Duration,
    /// Device code lifetime.
    pub device_code_ttl: Duration,
    /// Initial device polling interval.
    pub device_interval_secs: i64,
    /// Pushed request lifetime.
    pub par_ttl: Duration,
    /// Access token signing algorithm.
    pub access_token_algorithm: Algorithm,
    /// ID token signing algorithm (RS256 by default, as OIDC Core §3.1.3.7 expects).
    pub id_token_algorithm: Algorithm,
    /// Longest lifetime of a token issued by the token exchange grant (RFC 8693); it is also
    /// never longer than the subject token's remaining lifetime or the client's access-token
    /// lifetime.
    pub token_exchange_ttl: Duration,
    /// DPoP proofs (RFC 9449).
    pub dpop: crate::dpop::DpopSettings,
    /// The endpoints as a mutual-TLS listener serves them, when one does: token requests made
    /// over it get tokens bound to the client certificate, and discovery publishes them as
    /// `mtls_endpoint_aliases` (RFC 8705 §3.3, §5).
    pub mtls_endpoints: Option<Endpoints>,
    /// The mutual-TLS listener also accepts certificates no trusted CA issued, so clients may
    /// authenticate with `self_signed_tls_client_auth` (RFC 8705 §2.2).
    pub mtls_self_signed: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            code_ttl: Duration::seconds(60),
            id_token_ttl: Duration::hours(1),
            refresh_grace: Duration::ZERO,
            device_code_ttl: Duration::minutes(10),
            device_interval_secs: 5,
            par_ttl: Duration::seconds(90),
            access_token_algorithm: Algorithm::ES256,
            id_token_algorithm: Algorithm::RS256,
            token_exchange_ttl: Duration::minutes(5),
            dpop: crate::dpop::DpopSettings::default(),
            mtls_endpoints: None,
            mtls_self_signed: false,
        }
    }
}

/// The signed-in user, as the login session knows them.
#[derive(Debug, Clone, PartialEq)]
pub struct EndUser {
    /// The user id (`sub`).
    pub user_id: String,
    /// The login session's public id (`sid`).
    pub session_id: String,
    /// When they last authenticated actively.
    pub auth_time: OffsetDateTime,
    /// How (RFC 8176).
    pub amr: Vec<String>,
    /// Authentication context class (`"1"` or `"2"` factors).
    pub acr: String,
    /// Whether re-authentication could reach a higher `acr` (a second factor is enrolled).
    pub can_step_up: bool,
}

pub use trustgate_audit::RequestContext;

/// The OAuth 2.0 authorization server / OpenID Provider.
#[derive(Clone)]
pub struct Provider {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn OAuthStore>,
    auditor: Auditor,
    keys: KeyManager,
    clients: ClientRegistry,
    clock: Arc<dyn Clock>,
    endpoints: Endpoints,
    settings: Settings,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.inner.endpoints.issuer)
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// A provider for `endpoints.issuer`.
    pub fn new(
        store: Arc<dyn OAuthStore>,
        auditor: Auditor,
        keys: KeyManager,
        clients: ClientRegistry,
        clock: Arc<dyn Clock>,
        endpoints: Endpoints,
        settings: Settings,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                auditor,
                keys,
                clients,
                clock,
                endpoints,
                settings,
            }),
        }
    }

    /// Deletes dead codes, grants, refresh tokens, device authorizations, pushed requests,
    /// assertion ids and revocation records (the serve loop calls it every ten minutes);
    /// returns how many rows went.
    pub async fn purge_expired(&self) -> Result<u64, OAuthError> {
        Ok(self.inner.store.purge_grants(self.now()).await?)
    }

    /// The endpoint URLs.
    pub fn endpoints(&self) -> &Endpoints {
        &self.inner.endpoints
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The signing keys.
    pub fn keys(&self) -> &KeyManager {
        &self.inner.keys
    }

    /// The client registry.
    pub fn clients(&self) -> &ClientRegistry {
        &self.inner.clients
    }

    /// The discovery document.
    pub fn discovery(&self) -> Value {
        let id_alg = self.inner.settings.id_token_algorithm;
        let mut algorithms = vec![id_alg.as_str()];
        algorithms.extend(
            Algorithm::all()
                .into_iter()
                .filter(|a| *a != id_alg)
                .map(Algorithm::as_str),
        );
        let mut metadata = crate::discovery::metadata(&self.inner.endpoints, &algorithms);
        if let (Some(mtls), Some(fields)) = (
            &self.inner.settings.mtls_endpoints,
            metadata.as_object_mut(),
        ) {
            fields.insert(
                "tls_client_certificate_bound_access_tokens".into(),
                Value::Bool(true),
            );
            for methods in [
                "token_endpoint_auth_methods_supported",
                "introspection_endpoint_auth_methods_supported",
                "revocation_endpoint_auth_methods_supported",
            ] {
                if let Some(Value::Array(list)) = fields.get_mut(methods) {
                    list.push(json!("tls_client_auth"));
                    if self.inner.settings.mtls_self_signed {
                        list.push(json!("self_signed_tls_client_auth"));
                    }
                }
            }
            fields.insert(
                "mtls_endpoint_aliases".into(),
                json!({
                    "token_endpoint": mtls.token,
                    "revocation_endpoint": mtls.revocation,
                    "introspection_endpoint": mtls.introspection,
                    "device_authorization_endpoint": mtls.device_authorization,
                    "pushed_authorization_request_endpoint": mtls.par,
                    "userinfo_endpoint": mtls.userinfo,
                }),
            );
        }
        metadata
    }

    /// The endpoints a request reached: the mutual-TLS aliases when it came with a client
    /// certificate, else the issuer's (a DPoP proof's `htu` names the URL the client used).
    fn endpoints_reached(&self, over_mtls: bool) -> &Endpoints {
        match (&self.inner.settings.mtls_endpoints, over_mtls) {
            (Some(mtls), true) => mtls,
            _ => &self.inner.endpoints,
        }
    }

    fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    fn issuer(&self) -> &str {
        &self.inner.endpoints.issuer
    }

    /// Client authentication at `endpoint` (its URL, the issuer and the token endpoint are the
    /// audiences a `private_key_jwt` assertion may name).
    async fn authenticate(
        &self,
        credentials: &PresentedCredentials,
        endpoint: &str,
    ) -> Result<Client, OAuthError> {
        let audiences = [endpoint, self.issuer(), &self.inner.endpoints.token];
        self.inner
            .clients
            .authenticate(credentials, &audiences)
            .await
    }

    /// A registered client by id. A failing registry is logged and answered as a storage failure
    /// (`temporarily_unavailable` or `server_error`), never as an unknown client.
    async fn registered_client(&self, client_id: &str) -> Result<Option<Client>, OAuthError> {
        self.inner
            .clients
            .get(client_id)
            .await
            .map_err(|err| match err {
                ClientError::Store(err) => OAuthError::from(err),
                other => {
                    tracing::error!(error = %other, "client lookup failed");
                    OAuthError::new(ErrorCode::ServerError, "internal error")
                }
            })
    }

    /// Signs `claims` as a JWS of type `typ`.
    fn sign<T: Serialize>(
        &self,
        alg: Algorithm,
        typ: &str,
        claims: &T,
    ) -> Result<String, OAuthError> {
        self.inner.keys.sign(alg, typ, claims).map_err(|err| {
            tracing::error!(error = %err, "signing failed");
            OAuthError::new(ErrorCode::ServerError, "no signing key is available")
        })
    }

    /// Audits an event concerning `user_id` (the actor too, when given). A recorded kind that
    /// cannot be written fails the request (`trustgate_audit`'s policy).
    async fn audit(
        &self,
        ctx: &RequestContext,
        kind: AuditKind,
        outcome: Outcome,
        user_id: Option<&str>,
        detail: Map<String, Value>,
    ) -> Result<(), OAuthError> {
        let mut event = Event::new(kind, outcome).details(detail);
        if let Some(user_id) = user_id {
            event = event.by_user(user_id);
        }
        Ok(self.inner.auditor.record(ctx, event).await?)
    }

    /// Records an issued access token. Issuance is a hot path: the event is streamed to the
    /// batched writer and never makes the token endpoint wait.
    async fn audit_issuance(
        &self,
        ctx: &RequestContext,
        grant: GrantType,
        claims: &AccessTokenClaims,
    ) -> Result<(), OAuthError> {
        let mut event = Event::new(AuditKind::OAuthTokenIssued, Outcome::Success)
            .detail("grant_type", grant.as_str())
            .detail("client_id", claims.client_id.as_str())
            .detail("jti", claims.jti.as_str());
        // A user's tokens carry the user's token version; a client's own tokens have no user.
        if claims.uv.is_some() {
            event = event.by_user(&claims.sub);
        } else {
            event = event.actor(format!("client:{}", claims.client_id));
        }
        if let Some(gid) = &claims.gid {
            event = event.detail("grant_id", gid.as_str());
        }
        if let Some(scope) = &claims.scope {
            event = event.detail("scope", scope.as_str());
        }
        if let Some(act) = &claims.act {
            event = event
                .detail("aud", json!(claims.aud))
                .detail("act", json!(act));
        }
        // A token obtained with an API key: for whom (the key's owner), and by which key.
        if let Some(key_id) = &claims.key_id {
            event = event
                .detail("subject", claims.sub.as_str())
                .detail("key_id", key_id.as_str());
        }
        Ok(self.inner.auditor.record(ctx, event).await?)
    }
}

/// Audit detail naming a client.
fn client_detail(client_id: &str) -> Map<String, Value> {
    let mut detail = Map::new();
    detail.insert("client_id".into(), json!(client_id));
    detail
}
