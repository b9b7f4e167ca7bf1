//! The authorization server and OpenID Provider: every endpoint's protocol logic over the store,
//! the signing keys and the client registry, with no transport.
//!
//! ```text
//! authorize(params, session, decision)  ─► Login | Consent | Redirect(code or error) | ErrorPage
//! token(params, credentials)            ─► authorization_code | refresh_token | client_credentials
//!                                          | device_code  ─► TokenResponse or OAuthError
//! push(params, credentials)             ─► PAR request_uri
//! device_authorize / device_prompt / device_decide      (RFC 8628)
//! introspect / revoke / userinfo                        (RFC 7662, RFC 7009, OIDC Core §5.3)
//! logout_request / end_session                          (RP-Initiated, Back-Channel Logout)
//! ```
//!
//! Security decisions made here, each with a test in `tests/provider.rs`:
//! - PKCE S256 for every client; codes single-use, 60 s, bound to client and redirect URI; a
//!   replayed code revokes the grant it produced (RFC 6749 §4.1.2, RFC 9700 §4.5);
//! - refresh tokens rotate on every use; a rotated token presented after the grace period
//!   revokes the whole family (RFC 9700 §4.14.2);
//! - access tokens carry `gid` (grant) and `uv` (the user's token version): introspection and
//!   userinfo refuse them once the grant is revoked or the user's version moved (disable, log out
//!   everywhere), while self-contained verifiers accept them until `exp` (at most the client's
//!   access token lifetime, 10 minutes by default);
//! - implicit and hybrid response types and the password grant are refused.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value, json};
use time::{Duration, OffsetDateTime};
use trustgate_core::id::new_ulid;
use trustgate_core::secret::generate_token;
use trustgate_core::{Clock, Secret, TokenDigest};
use trustgate_store_api::{
    AuditEvent, AuthorizationCode, CodeRedemption, Consent, DeviceAuthorization, DevicePoll,
    DeviceStatus, Grant, OAuthStore, PushedRequest, RefreshRotation, RefreshToken, StoreError,
};
use trustgate_tokens::{AccessTokenClaims, Algorithm, Audience, Expectation, KeyManager};

use crate::claims::{BACKCHANNEL_LOGOUT_EVENT, IdTokenClaims, LogoutTokenClaims};
use crate::clients::{Client, ClientRegistry, GrantType, PresentedCredentials};
use crate::device::{display_user_code, new_user_code, normalize_user_code};
use crate::request::{
    self, AuthorizationRequest, AuthorizeError, LOGIN_AFTER_PARAM, Params, pushed_request_id,
};
use crate::scope::{OFFLINE_ACCESS, Scope};
use crate::{Endpoints, ErrorCode, OAuthError, pkce};

/// The `grant_type` of the device flow.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// The leeway for `exp`/`nbf` when verifying our own tokens.
pub const LEEWAY: Duration = Duration::seconds(60);
/// Scopes about the user, which a client acting for itself cannot ask for.
const USER_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

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
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            code_ttl: Duration::seconds(60),
            id_token_ttl: Duration::hours(1),
            refresh_grace: Duration::seconds(10),
            device_code_ttl: Duration::minutes(10),
            device_interval_secs: 5,
            par_ttl: Duration::seconds(90),
            access_token_algorithm: Algorithm::ES256,
            id_token_algorithm: Algorithm::RS256,
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

/// Who asked, for the audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// Client IP.
    pub ip: Option<String>,
    /// User agent.
    pub user_agent: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
}

/// The user's answer on the consent page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentDecision {
    /// No answer yet: ask if needed.
    Ask,
    /// Allowed.
    Approve,
    /// Refused.
    Deny,
}

/// What the consent page shows.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentPrompt {
    /// The client.
    pub client_id: String,
    /// Its display name.
    pub client_name: String,
    /// Every requested scope.
    pub scopes: Vec<String>,
    /// The parameters to post back.
    pub resume: Params,
}

/// What `/oauth2/authorize` does next.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthorizeOutcome {
    /// Redirect to the client (a code, or an error).
    Redirect(String),
    /// Show an error; never redirect.
    ErrorPage(OAuthError),
    /// Send the user to log in (or, with `force` and a session, to re-authenticate), then to
    /// `resume` (a local path).
    Login {
        /// Where to come back to.
        resume: String,
        /// Authenticate again even with a live session.
        force: bool,
        /// Login name to prefill.
        login_hint: Option<String>,
    },
    /// Ask the user.
    Consent(ConsentPrompt),
}

/// A token endpoint success (RFC 6749 §5.1, OIDC Core §3.1.3.3).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenResponse {
    /// The access token (a JWT, RFC 9068).
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// A new refresh token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// For OpenID Connect requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// The granted scope.
    pub scope: String,
}

/// A device authorization response (RFC 8628 §3.2).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceAuthorizationResponse {
    /// The secret the device polls with.
    pub device_code: String,
    /// What the user types (display form).
    pub user_code: String,
    /// Where the user goes.
    pub verification_uri: String,
    /// The same with the code filled in.
    pub verification_uri_complete: String,
    /// Seconds until the codes expire.
    pub expires_in: i64,
    /// Minimum seconds between polls.
    pub interval: i64,
}

/// What the `/device` page shows before the user decides.
#[derive(Debug, Clone, PartialEq)]
pub struct DevicePrompt {
    /// Normalized user code.
    pub user_code: String,
    /// The client's display name.
    pub client_name: String,
    /// Requested scopes.
    pub scopes: Vec<String>,
}

/// A pushed authorization request's response (RFC 9126 §2.2).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PushedAuthorizationResponse {
    /// The reference to pass to `/oauth2/authorize`.
    pub request_uri: String,
    /// Seconds until it expires.
    pub expires_in: i64,
}

/// A validated RP-initiated logout request.
#[derive(Debug, Clone, PartialEq)]
pub struct LogoutRequest {
    /// The client that asked, if known.
    pub client_id: Option<String>,
    /// The user the ID token hint names.
    pub hint_subject: Option<String>,
    /// Where to send the browser afterwards (with `state`), if asked and registered.
    pub redirect: Option<String>,
}

/// A back-channel logout notification to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct BackchannelNotice {
    /// The client.
    pub client_id: String,
    /// Its `backchannel_logout_uri`.
    pub uri: String,
    /// The signed logout token.
    pub logout_token: String,
}

/// One of the user's remembered consents, for `/account`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentSummary {
    /// The client.
    pub client_id: String,
    /// Its display name.
    pub client_name: String,
    /// The consented scopes.
    pub scopes: Vec<String>,
    /// When first granted.
    pub granted_at: OffsetDateTime,
}

/// The OAuth 2.0 authorization server / OpenID Provider.
#[derive(Clone)]
pub struct Provider {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn OAuthStore>,
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

/// What an authorization code's `detail` holds.
mod detail {
    pub const SCOPE: &str = "scope";
    pub const NONCE: &str = "nonce";
    pub const CODE_CHALLENGE: &str = "code_challenge";
    pub const AUTH_TIME: &str = "auth_time";
    pub const AMR: &str = "amr";
    pub const ACR: &str = "acr";
}

/// The authentication facts a grant carries into its tokens.
#[derive(Debug, Clone, Default)]
struct AuthFacts {
    auth_time: Option<i64>,
    amr: Option<Vec<String>>,
    acr: Option<String>,
}

impl AuthFacts {
    fn of_user(user: &EndUser) -> Self {
        Self {
            auth_time: Some(user.auth_time.unix_timestamp()),
            amr: Some(user.amr.clone()),
            acr: Some(user.acr.clone()),
        }
    }

    fn from_detail(detail: &Map<String, Value>) -> Self {
        Self {
            auth_time: detail.get(detail::AUTH_TIME).and_then(Value::as_i64),
            amr: detail.get(detail::AMR).and_then(|v| {
                v.as_array().map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
            }),
            acr: detail
                .get(detail::ACR)
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
    }

    fn write(&self, detail: &mut Map<String, Value>) {
        if let Some(t) = self.auth_time {
            detail.insert(detail::AUTH_TIME.into(), json!(t));
        }
        if let Some(amr) = &self.amr {
            detail.insert(detail::AMR.into(), json!(amr));
        }
        if let Some(acr) = &self.acr {
            detail.insert(detail::ACR.into(), json!(acr));
        }
    }
}

impl Provider {
    /// A provider for `endpoints.issuer`.
    pub fn new(
        store: Arc<dyn OAuthStore>,
        keys: KeyManager,
        clients: ClientRegistry,
        clock: Arc<dyn Clock>,
        endpoints: Endpoints,
        settings: Settings,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                keys,
                clients,
                clock,
                endpoints,
                settings,
            }),
        }
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
        crate::discovery::metadata(&self.inner.endpoints, &algorithms)
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
        self.inner
            .clients
            .authenticate(credentials, &self.assertion_audiences(endpoint))
            .await
    }

    /// The values a `private_key_jwt` assertion's `aud` may have at `endpoint`.
    fn assertion_audiences<'a>(&'a self, endpoint: &'a str) -> [&'a str; 3] {
        [endpoint, self.issuer(), &self.inner.endpoints.token]
    }

    async fn audit(
        &self,
        ctx: &RequestContext,
        kind: &str,
        outcome: &str,
        user_id: Option<&str>,
        detail: Map<String, Value>,
    ) {
        let event = AuditEvent {
            id: new_ulid(self.now()),
            at: self.now(),
            kind: kind.to_owned(),
            outcome: outcome.to_owned(),
            actor: user_id.map(|u| format!("user:{u}")),
            user_id: user_id.map(str::to_owned),
            ip: ctx.ip.clone(),
            user_agent: ctx.user_agent.clone(),
            request_id: ctx.request_id.clone(),
            detail,
        };
        if let Err(err) = self.inner.store.append_audit(&event).await {
            tracing::error!(error = %err, kind, "could not write an audit event");
        }
    }

    // -----------------------------------------------------------------------------------------
    // Authorization endpoint

    /// One pass through `/oauth2/authorize` (GET or POST), or the consent form's POST with the
    /// user's `decision`.
    pub async fn authorize(
        &self,
        params: &Params,
        session: Option<&EndUser>,
        decision: ConsentDecision,
        ctx: &RequestContext,
    ) -> AuthorizeOutcome {
        match self.authorize_inner(params, session, decision, ctx).await {
            Ok(outcome) => outcome,
            Err(AuthorizeError::Page(error)) => AuthorizeOutcome::ErrorPage(error),
            Err(AuthorizeError::Redirect {
                redirect_uri,
                state,
                error,
            }) => AuthorizeOutcome::Redirect(request::error_redirect(
                &redirect_uri,
                state.as_deref(),
                &error,
                self.issuer(),
            )),
        }
    }

    async fn load_client(&self, client_id: Option<&str>) -> Result<Client, AuthorizeError> {
        let Some(client_id) = client_id else {
            return Err(AuthorizeError::Page(OAuthError::invalid_request(
                "client_id is required",
            )));
        };
        match self.inner.clients.get(client_id).await {
            Ok(Some(client)) => Ok(client),
            Ok(None) => Err(AuthorizeError::Page(OAuthError::invalid_client(
                "unknown client",
            ))),
            Err(err) => {
                tracing::error!(error = %err, "client lookup failed");
                Err(AuthorizeError::Page(OAuthError::new(
                    ErrorCode::ServerError,
                    "the client registry is unavailable",
                )))
            }
        }
    }

    /// Parses and validates an authorization request, resolving a PAR reference.
    async fn authorization_request(
        &self,
        params: &Params,
    ) -> Result<AuthorizationRequest, AuthorizeError> {
        let client = self.load_client(params.get("client_id")).await?;
        let (effective, pushed_id, mut resume) = match params.get("request_uri") {
            Some(reference) => {
                let bad = |d: &str| {
                    AuthorizeError::Page(OAuthError::new(ErrorCode::InvalidRequestUri, d))
                };
                let id = pushed_request_id(reference)
                    .ok_or_else(|| bad("request_uri is not one this server issued"))?;
                let pushed = self
                    .inner
                    .store
                    .get_pushed_request(id, self.now())
                    .await
                    .map_err(|e| AuthorizeError::Page(e.into()))?
                    .ok_or_else(|| bad("request_uri is unknown, used or expired"))?;
                if pushed.client_id != client.id {
                    return Err(bad("request_uri was pushed by another client"));
                }
                let mut resume = Params::default();
                resume.set("client_id", client.id.clone());
                resume.set("request_uri", reference);
                (
                    Params::from_json(&pushed.parameters),
                    Some(id.to_owned()),
                    resume,
                )
            }
            None => {
                let mut resume = params.clone();
                resume.remove(LOGIN_AFTER_PARAM);
                (params.clone(), None, resume)
            }
        };
        let mut effective = effective;
        if let Some(after) = params.get(LOGIN_AFTER_PARAM) {
            effective.set(LOGIN_AFTER_PARAM, after);
        }
        resume.remove(LOGIN_AFTER_PARAM);
        let redirect_uri = request::check_redirect_uri(&client, &effective)?;
        request::validate(&client, redirect_uri, &effective, pushed_id, resume)
    }

    async fn authorize_inner(
        &self,
        params: &Params,
        session: Option<&EndUser>,
        decision: ConsentDecision,
        ctx: &RequestContext,
    ) -> Result<AuthorizeOutcome, AuthorizeError> {
        let req = self.authorization_request(params).await?;
        let fail = |error: OAuthError| AuthorizeError::Redirect {
            redirect_uri: req.redirect_uri.clone(),
            state: req.state.clone(),
            error,
        };
        let now = self.now();
        let hint_subject = match &req.id_token_hint {
            Some(hint) => Some(
                self.id_token_hint_subject(hint, Some(&req.client.id))
                    .ok_or_else(|| fail(OAuthError::invalid_request("id_token_hint is invalid")))?,
            ),
            None => None,
        };
        let login = |force: bool, req: &AuthorizationRequest| {
            let mut resume = req.resume.clone();
            if force {
                resume.set(LOGIN_AFTER_PARAM, now.unix_timestamp().to_string());
            }
            AuthorizeOutcome::Login {
                resume: format!("/oauth2/authorize?{}", resume.to_query()),
                force,
                login_hint: req.login_hint.clone(),
            }
        };
        let Some(user) = session else {
            if req.prompt.none {
                return Err(fail(OAuthError::new(
                    ErrorCode::LoginRequired,
                    "the user is not signed in",
                )));
            }
            return Ok(login(false, &req));
        };
        if hint_subject
            .as_deref()
            .is_some_and(|sub| sub != user.user_id)
        {
            if req.prompt.none {
                return Err(fail(OAuthError::new(
                    ErrorCode::LoginRequired,
                    "the signed-in user is not the one the id_token_hint names",
                )));
            }
            return Err(AuthorizeError::Page(OAuthError::new(
                ErrorCode::LoginRequired,
                "you are signed in as a different user than the application expects; sign out \
                 and try again",
            )));
        }
        let reauthenticated = req
            .login_after
            .is_some_and(|after| user.auth_time.unix_timestamp() >= after);
        let too_old = req
            .max_age
            .is_some_and(|max| (now - user.auth_time).whole_seconds() > max);
        let wants_two_factors = req.acr_values.iter().any(|v| v == "2");
        let needs_step_up = wants_two_factors && user.acr != "2" && user.can_step_up;
        if !reauthenticated && (req.prompt.login || too_old || needs_step_up) {
            if req.prompt.none {
                return Err(fail(OAuthError::new(
                    ErrorCode::LoginRequired,
                    "the user must authenticate again",
                )));
            }
            return Ok(login(true, &req));
        }

        let store = &self.inner.store;
        let consent = if req.client.skip_consent {
            None
        } else {
            store
                .get_consent(&user.user_id, &req.client.id)
                .await
                .map_err(|e| fail(e.into()))?
        };
        let consented = req.client.skip_consent
            || consent
                .as_ref()
                .is_some_and(|c| req.scope.is_subset(&Scope::from_tokens(c.scopes.clone())));
        match decision {
            ConsentDecision::Deny => {
                self.audit(
                    ctx,
                    "oauth_consent_denied",
                    "denied",
                    Some(&user.user_id),
                    client_detail(&req.client.id),
                )
                .await;
                return Err(fail(OAuthError::new(
                    ErrorCode::AccessDenied,
                    "the user denied the request",
                )));
            }
            ConsentDecision::Approve => {
                if !req.client.skip_consent {
                    let previous = consent
                        .as_ref()
                        .map(|c| Scope::from_tokens(c.scopes.clone()))
                        .unwrap_or_default();
                    let merged = previous.union(&req.scope);
                    let record = Consent {
                        user_id: user.user_id.clone(),
                        client_id: req.client.id.clone(),
                        scopes: merged.iter().map(str::to_owned).collect(),
                        created_at: consent.as_ref().map_or(now, |c| c.created_at),
                        updated_at: now,
                    };
                    store
                        .put_consent(&record)
                        .await
                        .map_err(|e| fail(e.into()))?;
                    let mut detail = client_detail(&req.client.id);
                    detail.insert("scope".into(), json!(req.scope.to_string()));
                    self.audit(
                        ctx,
                        "oauth_consent_granted",
                        "success",
                        Some(&user.user_id),
                        detail,
                    )
                    .await;
                }
            }
            ConsentDecision::Ask => {
                if !consented || (req.prompt.consent && !req.client.skip_consent) {
                    if req.prompt.none {
                        return Err(fail(OAuthError::new(
                            ErrorCode::ConsentRequired,
                            "the user has not consented to this client and scope",
                        )));
                    }
                    let mut resume = req.resume.clone();
                    if let Some(after) = req.login_after {
                        resume.set(LOGIN_AFTER_PARAM, after.to_string());
                    }
                    return Ok(AuthorizeOutcome::Consent(ConsentPrompt {
                        client_id: req.client.id.clone(),
                        client_name: req.client.name.clone(),
                        scopes: req.scope.iter().map(str::to_owned).collect(),
                        resume,
                    }));
                }
            }
        }

        let code = generate_token("");
        let mut detail = Map::new();
        detail.insert(detail::SCOPE.into(), json!(req.scope.to_string()));
        if let Some(nonce) = &req.nonce {
            detail.insert(detail::NONCE.into(), json!(nonce));
        }
        detail.insert(detail::CODE_CHALLENGE.into(), json!(req.code_challenge));
        AuthFacts::of_user(user).write(&mut detail);
        let record = AuthorizationCode {
            client_id: req.client.id.clone(),
            user_id: user.user_id.clone(),
            session_id: Some(user.session_id.clone()),
            redirect_uri: req.redirect_uri.clone(),
            grant_id: new_ulid(now),
            created_at: now,
            expires_at: now + self.inner.settings.code_ttl,
            detail,
        };
        if let Some(id) = &req.pushed_id {
            let fresh = store
                .consume_pushed_request(id)
                .await
                .map_err(|e| fail(e.into()))?;
            if !fresh {
                return Err(fail(OAuthError::new(
                    ErrorCode::InvalidRequestUri,
                    "request_uri was used already",
                )));
            }
        }
        store
            .put_authorization_code(&TokenDigest::of(code.expose()), &record)
            .await
            .map_err(|e| fail(e.into()))?;
        Ok(AuthorizeOutcome::Redirect(request::redirect_to_client(
            &req.redirect_uri,
            &[("code", code.expose())],
            req.state.as_deref(),
            self.issuer(),
        )))
    }

    /// One of our access tokens (`at+jwt`, our issuer, unexpired, `aud` containing one of
    /// `audiences` unless empty), signature checked; revocation is the caller's to check.
    fn verify_access_token(&self, token: &str, audiences: &[&str]) -> Option<AccessTokenClaims> {
        trustgate_tokens::verify::<AccessTokenClaims>(
            token,
            &self.inner.keys.resolver(),
            &Expectation {
                issuer: self.issuer(),
                audiences,
                typ: Some("at+jwt"),
                now: self.now(),
                leeway: LEEWAY,
                require_exp: true,
                check_expiry: true,
            },
        )
        .ok()
        .map(|verified| verified.claims)
    }

    /// One of our ID tokens used as a hint: signature and issuer checked, expiry ignored (RPs
    /// send hints long after the ID token expired).
    fn verify_id_token_hint(&self, token: &str, audiences: &[&str]) -> Option<IdTokenClaims> {
        trustgate_tokens::verify::<IdTokenClaims>(
            token,
            &self.inner.keys.resolver(),
            &Expectation {
                issuer: self.issuer(),
                audiences,
                typ: None,
                now: self.now(),
                leeway: LEEWAY,
                require_exp: false,
                check_expiry: false,
            },
        )
        .ok()
        .map(|verified| verified.claims)
    }

    /// The subject of an ID token this server issued (expired or not: hints are often old),
    /// optionally required to be for `client_id`.
    fn id_token_hint_subject(&self, hint: &str, client_id: Option<&str>) -> Option<String> {
        let audiences: Vec<&str> = client_id.into_iter().collect();
        self.verify_id_token_hint(hint, &audiences)
            .map(|claims| claims.sub)
    }

    // -----------------------------------------------------------------------------------------
    // Pushed authorization requests

    /// `/oauth2/par` (RFC 9126).
    pub async fn push(
        &self,
        params: &Params,
        credentials: &PresentedCredentials,
    ) -> Result<PushedAuthorizationResponse, OAuthError> {
        let client = self
            .authenticate(credentials, &self.inner.endpoints.par)
            .await?;
        if params.get("request_uri").is_some() {
            return Err(OAuthError::invalid_request(
                "request_uri is not allowed in a pushed request",
            ));
        }
        if params.get("client_id").is_some_and(|id| id != client.id) {
            return Err(OAuthError::invalid_request(
                "client_id does not match the authenticated client",
            ));
        }
        let mut stored = params.clone();
        for auth_param in ["client_secret", "client_assertion", "client_assertion_type"] {
            stored.remove(auth_param);
        }
        stored.remove(LOGIN_AFTER_PARAM);
        stored.set("client_id", client.id.clone());
        let to_oauth_error = |e: AuthorizeError| match e {
            AuthorizeError::Page(error) | AuthorizeError::Redirect { error, .. } => error,
        };
        let redirect_uri = request::check_redirect_uri(&client, &stored).map_err(to_oauth_error)?;
        request::validate(
            &client,
            redirect_uri,
            &stored,
            Some(String::new()),
            Params::default(),
        )
        .map_err(to_oauth_error)?;
        let now = self.now();
        let id = generate_token("").expose().to_owned();
        let pushed = PushedRequest {
            client_id: client.id.clone(),
            parameters: stored.to_json(),
            created_at: now,
            expires_at: now + self.inner.settings.par_ttl,
        };
        self.inner.store.put_pushed_request(&id, &pushed).await?;
        Ok(PushedAuthorizationResponse {
            request_uri: format!("{}{id}", request::PAR_URN_PREFIX),
            expires_in: self.inner.settings.par_ttl.whole_seconds(),
        })
    }

    // -----------------------------------------------------------------------------------------
    // Token endpoint

    /// `/oauth2/token`.
    pub async fn token(
        &self,
        params: &Params,
        credentials: &PresentedCredentials,
        ctx: &RequestContext,
    ) -> Result<TokenResponse, OAuthError> {
        let grant_type = params
            .get("grant_type")
            .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
        let client = self
            .authenticate(credentials, &self.inner.endpoints.token)
            .await?;
        let grant: GrantType = grant_type.parse().map_err(|_| {
            OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "grant_type is not supported (the password and implicit grants never are)",
            )
        })?;
        if !client.allows_grant(grant) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "the client is not registered for this grant type",
            ));
        }
        match grant {
            GrantType::AuthorizationCode => self.exchange_code(&client, params, ctx).await,
            GrantType::RefreshToken => self.refresh(&client, params, ctx).await,
            GrantType::ClientCredentials => self.client_credentials(&client, params),
            GrantType::DeviceCode => self.device_token(&client, params, ctx).await,
        }
    }

    async fn exchange_code(
        &self,
        client: &Client,
        params: &Params,
        ctx: &RequestContext,
    ) -> Result<TokenResponse, OAuthError> {
        let code = params
            .get("code")
            .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
        let store = &self.inner.store;
        let now = self.now();
        let record = match store
            .redeem_authorization_code(&TokenDigest::of(code), now)
            .await?
        {
            CodeRedemption::Redeemed(record) => record,
            CodeRedemption::AlreadyRedeemed(record) => {
                let revoked = store.revoke_grant(&record.grant_id, now).await?;
                let mut detail = client_detail(&record.client_id);
                detail.insert("grant_id".into(), json!(record.grant_id));
                detail.insert("grant_revoked".into(), json!(revoked));
                self.audit(
                    ctx,
                    "oauth_code_replayed",
                    "denied",
                    Some(&record.user_id),
                    detail,
                )
                .await;
                return Err(OAuthError::invalid_grant(
                    "the authorization code was used already; tokens issued for it are revoked",
                ));
            }
            CodeRedemption::Unknown => {
                return Err(OAuthError::invalid_grant(
                    "the authorization code is unknown",
                ));
            }
        };
        if record.client_id != client.id {
            return Err(OAuthError::invalid_grant(
                "the authorization code was issued to another client",
            ));
        }
        if record.expires_at <= now {
            return Err(OAuthError::invalid_grant("the authorization code expired"));
        }
        if params.get("redirect_uri") != Some(record.redirect_uri.as_str()) {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the authorization request",
            ));
        }
        let challenge = record
            .detail
            .get(detail::CODE_CHALLENGE)
            .and_then(Value::as_str)
            .unwrap_or_default();
        let verifier = params
            .get("code_verifier")
            .ok_or_else(|| OAuthError::invalid_grant("code_verifier is required (PKCE)"))?;
        if !pkce::verify(verifier, challenge) {
            return Err(OAuthError::invalid_grant("code_verifier does not match"));
        }
        let scope = Scope::parse(
            record
                .detail
                .get(detail::SCOPE)
                .and_then(Value::as_str)
                .unwrap_or_default(),
        )?;
        let nonce = record
            .detail
            .get(detail::NONCE)
            .and_then(Value::as_str)
            .map(str::to_owned);
        let facts = AuthFacts::from_detail(&record.detail);
        let mut grant_detail = Map::new();
        facts.write(&mut grant_detail);
        let grant = Grant {
            id: record.grant_id.clone(),
            client_id: client.id.clone(),
            user_id: Some(record.user_id.clone()),
            session_id: record.session_id.clone(),
            scope: scope.to_string(),
            created_at: now,
            expires_at: now + client.refresh_token_ttl,
            revoked_at: None,
            detail: grant_detail,
        };
        let response = self
            .issue_for_grant(client, &grant, &scope, nonce.as_deref(), true)
            .await?;
        self.audit_issuance(ctx, client, &grant, "authorization_code");
        Ok(response)
    }

    /// Creates the grant (with its first refresh token when the client may refresh) and signs
    /// the tokens.
    async fn issue_for_grant(
        &self,
        client: &Client,
        grant: &Grant,
        scope: &Scope,
        nonce: Option<&str>,
        create: bool,
    ) -> Result<TokenResponse, OAuthError> {
        let now = self.now();
        let refresh = client
            .allows_grant(GrantType::RefreshToken)
            .then(|| generate_token("tgr_"));
        if create {
            let refresh_record = RefreshToken {
                grant_id: grant.id.clone(),
                created_at: now,
                expires_at: grant.expires_at,
                rotated_at: None,
            };
            let digest = refresh.as_ref().map(|r| TokenDigest::of(r.expose()));
            match self
                .inner
                .store
                .create_grant(grant, digest.as_ref().map(|d| (d, &refresh_record)))
                .await
            {
                Ok(()) => {}
                Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {
                    return Err(OAuthError::invalid_grant(
                        "the user is disabled or no longer exists",
                    ));
                }
                Err(err) => return Err(err.into()),
            }
        }
        self.sign_user_tokens(client, grant, scope, nonce, refresh)
            .await
    }

    async fn sign_user_tokens(
        &self,
        client: &Client,
        grant: &Grant,
        scope: &Scope,
        nonce: Option<&str>,
        refresh: Option<Secret>,
    ) -> Result<TokenResponse, OAuthError> {
        let now = self.now();
        let user_id = grant.user_id.clone().unwrap_or_default();
        let version = self
            .inner
            .store
            .user_token_version(&user_id)
            .await?
            .ok_or_else(|| OAuthError::invalid_grant("the user no longer exists"))?;
        let facts = AuthFacts::from_detail(&grant.detail);
        let claims = AccessTokenClaims {
            iss: self.issuer().to_owned(),
            sub: user_id.clone(),
            aud: self.access_token_audience(client),
            exp: (now + client.access_token_ttl).unix_timestamp(),
            iat: now.unix_timestamp(),
            nbf: None,
            jti: new_ulid(now),
            client_id: client.id.clone(),
            scope: Some(scope.to_string()),
            auth_time: facts.auth_time,
            acr: facts.acr.clone(),
            amr: facts.amr.clone(),
            uv: Some(version),
            gid: Some(grant.id.clone()),
            sid: grant.session_id.clone(),
        };
        let access_token = self.sign(
            self.inner.settings.access_token_algorithm,
            "at+jwt",
            &claims,
        )?;
        let id_token = if scope.is_openid() {
            let alg = self.inner.settings.id_token_algorithm;
            let id_claims = IdTokenClaims {
                iss: self.issuer().to_owned(),
                sub: user_id,
                aud: client.id.clone(),
                exp: (now + self.inner.settings.id_token_ttl).unix_timestamp(),
                iat: now.unix_timestamp(),
                auth_time: facts.auth_time,
                nonce: nonce.map(str::to_owned),
                acr: facts.acr,
                amr: facts.amr,
                azp: client.id.clone(),
                at_hash: Some(trustgate_tokens::left_half_hash(alg, &access_token)),
                sid: grant.session_id.clone(),
            };
            Some(self.sign(alg, "JWT", &id_claims)?)
        } else {
            None
        };
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: client.access_token_ttl.whole_seconds(),
            refresh_token: refresh.map(|r| r.expose().to_owned()),
            id_token,
            scope: scope.to_string(),
        })
    }

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

    /// RFC 9068 §3: the resource servers the token is for, and the issuer itself (for userinfo).
    fn access_token_audience(&self, client: &Client) -> Audience {
        if client.audience.is_empty() {
            return Audience::One(self.issuer().to_owned());
        }
        let mut audiences = client.audience.clone();
        if !audiences.iter().any(|a| a == self.issuer()) {
            audiences.push(self.issuer().to_owned());
        }
        Audience::Many(audiences)
    }

    fn audit_issuance(&self, ctx: &RequestContext, client: &Client, grant: &Grant, how: &str) {
        tracing::info!(
            target: "trustgate::audit",
            kind = "oauth_token_issued",
            grant_type = how,
            client_id = %client.id,
            user_id = grant.user_id.as_deref().unwrap_or(""),
            grant_id = %grant.id,
            scope = %grant.scope,
            request_id = ctx.request_id.as_deref().unwrap_or(""),
            "tokens issued"
        );
    }

    async fn refresh(
        &self,
        client: &Client,
        params: &Params,
        ctx: &RequestContext,
    ) -> Result<TokenResponse, OAuthError> {
        let presented = params
            .get("refresh_token")
            .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
        let store = &self.inner.store;
        let now = self.now();
        let digest = TokenDigest::of(presented);
        // Look first, so a narrowing scope that is refused leaves the token unrotated.
        let (_, grant) = store
            .find_refresh_token(&digest)
            .await?
            .ok_or_else(|| OAuthError::invalid_grant("the refresh token is invalid"))?;
        if grant.client_id != client.id {
            return Err(OAuthError::invalid_grant(
                "the refresh token was issued to another client",
            ));
        }
        let granted = Scope::parse(&grant.scope)?;
        let scope = match params.get("scope") {
            Some(raw) => {
                let asked = Scope::parse(raw)?;
                if !asked.is_subset(&granted) {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidScope,
                        "a refresh cannot widen the granted scope",
                    ));
                }
                asked
            }
            None => granted,
        };
        let next = generate_token("tgr_");
        let rotation = store
            .rotate_refresh_token(
                &digest,
                &TokenDigest::of(next.expose()),
                now + client.refresh_token_ttl,
                now,
                &|token, grant, user_status| {
                    crate::refresh::rotation_step(
                        token,
                        grant,
                        user_status,
                        &client.id,
                        now,
                        self.inner.settings.refresh_grace,
                    )
                },
            )
            .await?;
        let grant = match rotation {
            RefreshRotation::Rotated(grant) | RefreshRotation::WithinGrace(grant) => grant,
            RefreshRotation::Reused { grant_id } => {
                let mut detail = client_detail(&client.id);
                detail.insert("grant_id".into(), json!(grant_id));
                self.audit(
                    ctx,
                    "oauth_refresh_reused",
                    "denied",
                    grant.user_id.as_deref(),
                    detail,
                )
                .await;
                return Err(OAuthError::invalid_grant(
                    "the refresh token was used already; the grant is revoked",
                ));
            }
            RefreshRotation::Invalid => {
                return Err(OAuthError::invalid_grant("the refresh token is invalid"));
            }
        };
        let response = self
            .sign_user_tokens(client, &grant, &scope, None, Some(next))
            .await?;
        self.audit_issuance(ctx, client, &grant, "refresh_token");
        Ok(response)
    }

    fn client_credentials(
        &self,
        client: &Client,
        params: &Params,
    ) -> Result<TokenResponse, OAuthError> {
        if client.is_public() {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "public clients cannot use the client credentials grant",
            ));
        }
        let scope = match params.get("scope") {
            Some(raw) => {
                let asked = Scope::parse(raw)?;
                if let Some(token) = asked
                    .iter()
                    .find(|t| USER_SCOPES.contains(t) || !client.allows_scope(t))
                {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidScope,
                        format!("scope {token} is not available to this client on its own behalf"),
                    ));
                }
                asked
            }
            None => Scope::from_tokens(
                client
                    .scopes
                    .iter()
                    .filter(|s| !USER_SCOPES.contains(&s.as_str()))
                    .cloned(),
            ),
        };
        let now = self.now();
        let claims = AccessTokenClaims {
            iss: self.issuer().to_owned(),
            sub: client.id.clone(),
            aud: self.access_token_audience(client),
            exp: (now + client.access_token_ttl).unix_timestamp(),
            iat: now.unix_timestamp(),
            nbf: None,
            jti: new_ulid(now),
            client_id: client.id.clone(),
            scope: (!scope.is_empty()).then(|| scope.to_string()),
            auth_time: None,
            acr: None,
            amr: None,
            uv: None,
            gid: None,
            sid: None,
        };
        let access_token = self.sign(
            self.inner.settings.access_token_algorithm,
            "at+jwt",
            &claims,
        )?;
        tracing::info!(
            target: "trustgate::audit",
            kind = "oauth_token_issued",
            grant_type = "client_credentials",
            client_id = %client.id,
            jti = %claims.jti,
            scope = %scope,
            "tokens issued"
        );
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: client.access_token_ttl.whole_seconds(),
            refresh_token: None,
            id_token: None,
            scope: scope.to_string(),
        })
    }

    // -----------------------------------------------------------------------------------------
    // Device authorization grant

    /// `/oauth2/device_authorization` (RFC 8628 §3.1).
    pub async fn device_authorize(
        &self,
        params: &Params,
        credentials: &PresentedCredentials,
    ) -> Result<DeviceAuthorizationResponse, OAuthError> {
        let client = self
            .authenticate(credentials, &self.inner.endpoints.device_authorization)
            .await?;
        if !client.allows_grant(GrantType::DeviceCode) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "the client is not registered for the device authorization grant",
            ));
        }
        let scope = Scope::parse(params.get("scope").unwrap_or(""))?;
        if let Some(token) = scope.iter().find(|t| !client.allows_scope(t)) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                format!("scope {token} is not allowed for this client"),
            ));
        }
        let now = self.now();
        let settings = &self.inner.settings;
        let device_code = generate_token("");
        for _ in 0..5 {
            let user_code = new_user_code();
            let authorization = DeviceAuthorization {
                user_code: user_code.clone(),
                client_id: client.id.clone(),
                scope: scope.to_string(),
                created_at: now,
                expires_at: now + settings.device_code_ttl,
                interval_secs: settings.device_interval_secs,
                last_polled_at: None,
                status: DeviceStatus::Pending,
                user_id: None,
                session_id: None,
                detail: Map::new(),
            };
            match self
                .inner
                .store
                .put_device_authorization(&TokenDigest::of(device_code.expose()), &authorization)
                .await
            {
                Ok(()) => {
                    let shown = display_user_code(&user_code);
                    let verification_uri = self.inner.endpoints.device_verification.clone();
                    return Ok(DeviceAuthorizationResponse {
                        device_code: device_code.expose().to_owned(),
                        verification_uri_complete: format!("{verification_uri}?user_code={shown}"),
                        user_code: shown,
                        verification_uri,
                        expires_in: settings.device_code_ttl.whole_seconds(),
                        interval: settings.device_interval_secs,
                    });
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "could not allocate a user code; try again",
        ))
    }

    /// What the `/device` page shows for a typed code; `None` if no pending authorization has it.
    pub async fn device_prompt(&self, typed: &str) -> Result<Option<DevicePrompt>, OAuthError> {
        let Some(user_code) = normalize_user_code(typed) else {
            return Ok(None);
        };
        let Some(authorization) = self
            .inner
            .store
            .find_pending_device_authorization(&user_code, self.now())
            .await?
        else {
            return Ok(None);
        };
        let client_name = match self.inner.clients.get(&authorization.client_id).await {
            Ok(Some(client)) => client.name,
            Ok(None) => return Ok(None),
            Err(err) => {
                tracing::error!(error = %err, "client lookup failed");
                return Err(OAuthError::new(ErrorCode::ServerError, "internal error"));
            }
        };
        Ok(Some(DevicePrompt {
            user_code,
            client_name,
            scopes: authorization
                .scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        }))
    }

    /// The user's decision on the `/device` page; `false` if the code is no longer pending.
    pub async fn device_decide(
        &self,
        typed: &str,
        approve: bool,
        user: &EndUser,
        ctx: &RequestContext,
    ) -> Result<bool, OAuthError> {
        let Some(user_code) = normalize_user_code(typed) else {
            return Ok(false);
        };
        let mut detail = Map::new();
        AuthFacts::of_user(user).write(&mut detail);
        let decided = self
            .inner
            .store
            .decide_device_authorization(
                &user_code,
                approve,
                &user.user_id,
                Some(&user.session_id),
                &detail,
                self.now(),
            )
            .await?;
        if decided {
            self.audit(
                ctx,
                if approve {
                    "oauth_device_approved"
                } else {
                    "oauth_device_denied"
                },
                if approve { "success" } else { "denied" },
                Some(&user.user_id),
                Map::new(),
            )
            .await;
        }
        Ok(decided)
    }

    async fn device_token(
        &self,
        client: &Client,
        params: &Params,
        ctx: &RequestContext,
    ) -> Result<TokenResponse, OAuthError> {
        let device_code = params
            .get("device_code")
            .ok_or_else(|| OAuthError::invalid_request("device_code is required"))?;
        let now = self.now();
        let poll = self
            .inner
            .store
            .poll_device_authorization(&TokenDigest::of(device_code), now, &|authorization| {
                crate::device::poll_step(authorization, &client.id, now)
            })
            .await?;
        let authorization = match poll {
            DevicePoll::Approved(authorization) => authorization,
            DevicePoll::Pending => {
                return Err(OAuthError::new(
                    ErrorCode::AuthorizationPending,
                    "the user has not finished yet",
                ));
            }
            DevicePoll::SlowDown => {
                return Err(OAuthError::new(
                    ErrorCode::SlowDown,
                    "polling too fast; the interval grew by 5 seconds",
                ));
            }
            DevicePoll::Denied => {
                return Err(OAuthError::new(
                    ErrorCode::AccessDenied,
                    "the user denied the request",
                ));
            }
            DevicePoll::Expired => {
                return Err(OAuthError::new(
                    ErrorCode::ExpiredToken,
                    "the device code expired",
                ));
            }
            DevicePoll::Unknown | DevicePoll::AlreadyRedeemed => {
                return Err(OAuthError::invalid_grant("the device code is invalid"));
            }
        };
        let user_id = authorization
            .user_id
            .clone()
            .ok_or_else(|| OAuthError::invalid_grant("the device code is invalid"))?;
        let scope = Scope::parse(&authorization.scope)?;
        let grant = Grant {
            id: new_ulid(now),
            client_id: client.id.clone(),
            user_id: Some(user_id),
            session_id: authorization.session_id.clone(),
            scope: scope.to_string(),
            created_at: now,
            expires_at: now + client.refresh_token_ttl,
            revoked_at: None,
            detail: authorization.detail.clone(),
        };
        let response = self
            .issue_for_grant(client, &grant, &scope, None, true)
            .await?;
        self.audit_issuance(ctx, client, &grant, DEVICE_CODE_GRANT);
        Ok(response)
    }

    // -----------------------------------------------------------------------------------------
    // Introspection, revocation, userinfo

    /// Verifies one of our access tokens and checks it has not been revoked (its jti, its grant,
    /// or the user's token version). `audiences`: what `aud` must contain one of.
    async fn live_access_token(
        &self,
        token: &str,
        audiences: &[&str],
    ) -> Result<Option<AccessTokenClaims>, OAuthError> {
        let Some(claims) = self.verify_access_token(token, audiences) else {
            return Ok(None);
        };
        let store = &self.inner.store;
        if store.access_token_revoked(&claims.jti).await? {
            return Ok(None);
        }
        if let Some(gid) = &claims.gid {
            match store.get_grant(gid).await? {
                Some(grant) if grant.revoked_at.is_none() => {}
                _ => return Ok(None),
            }
        }
        if let Some(uv) = claims.uv {
            let current = store.user_token_version(&claims.sub).await?;
            if current != Some(uv) {
                return Ok(None);
            }
            let active = store
                .get_user(&claims.sub)
                .await?
                .is_some_and(|u| u.status == trustgate_store_api::UserStatus::Active);
            if !active {
                return Ok(None);
            }
        }
        Ok(Some(claims))
    }

    /// `/oauth2/introspect` (RFC 7662). Confidential clients only. Access tokens are active for
    /// any caller whose id or registered audience is in `aud` (or when `aud` names this issuer);
    /// refresh tokens only for the client they were issued to.
    pub async fn introspect(
        &self,
        params: &Params,
        credentials: &PresentedCredentials,
    ) -> Result<Value, OAuthError> {
        let caller = self
            .authenticate(credentials, &self.inner.endpoints.introspection)
            .await?;
        if caller.is_public() {
            return Err(OAuthError::invalid_client(
                "introspection requires client authentication",
            ));
        }
        let token = params
            .get("token")
            .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
        let inactive = json!({ "active": false });
        if looks_like_jwt(token) {
            let mut audiences: Vec<&str> = vec![self.issuer(), &caller.id];
            audiences.extend(caller.audience.iter().map(String::as_str));
            let Some(claims) = self.live_access_token(token, &audiences).await? else {
                return Ok(inactive);
            };
            let mut body = json!({
                "active": true,
                "token_type": "Bearer",
                "iss": claims.iss,
                "sub": claims.sub,
                "aud": claims.aud,
                "exp": claims.exp,
                "iat": claims.iat,
                "jti": claims.jti,
                "client_id": claims.client_id,
            });
            if let (Some(scope), Some(obj)) = (claims.scope, body.as_object_mut()) {
                obj.insert("scope".into(), json!(scope));
            }
            if let (Some(nbf), Some(obj)) = (claims.nbf, body.as_object_mut()) {
                obj.insert("nbf".into(), json!(nbf));
            }
            return Ok(body);
        }
        let now = self.now();
        let Some((refresh, grant)) = self
            .inner
            .store
            .find_refresh_token(&TokenDigest::of(token))
            .await?
        else {
            return Ok(inactive);
        };
        let live = refresh.rotated_at.is_none()
            && refresh.expires_at > now
            && grant.expires_at > now
            && grant.revoked_at.is_none()
            && grant.client_id == caller.id;
        if !live {
            return Ok(inactive);
        }
        Ok(json!({
            "active": true,
            "token_type": "refresh_token",
            "iss": self.issuer(),
            "sub": grant.user_id.clone().unwrap_or_else(|| grant.client_id.clone()),
            "client_id": grant.client_id,
            "scope": grant.scope,
            "exp": refresh.expires_at.min(grant.expires_at).unix_timestamp(),
            "iat": refresh.created_at.unix_timestamp(),
        }))
    }

    /// `/oauth2/revoke` (RFC 7009). An unknown or invalid token is not an error (§2.2); a token
    /// of another client is refused. Revoking a refresh token revokes its grant, and with it the
    /// access tokens that name the grant.
    pub async fn revoke(
        &self,
        params: &Params,
        credentials: &PresentedCredentials,
        ctx: &RequestContext,
    ) -> Result<(), OAuthError> {
        let client = self
            .authenticate(credentials, &self.inner.endpoints.revocation)
            .await?;
        let token = params
            .get("token")
            .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
        let store = &self.inner.store;
        let now = self.now();
        let refused = || {
            OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "the token was not issued to this client",
            )
        };
        if looks_like_jwt(token) {
            let Some(claims) = self.verify_access_token(token, &[]) else {
                return Ok(());
            };
            if claims.client_id != client.id {
                return Err(refused());
            }
            let expires_at = OffsetDateTime::from_unix_timestamp(claims.exp)
                .map_err(|_| OAuthError::invalid_request("token expiry is out of range"))?;
            store
                .revoke_access_token(&claims.jti, expires_at + LEEWAY)
                .await?;
            let mut detail = client_detail(&client.id);
            detail.insert("jti".into(), json!(claims.jti));
            self.audit(ctx, "oauth_token_revoked", "success", None, detail)
                .await;
            return Ok(());
        }
        let Some((_, grant)) = store.find_refresh_token(&TokenDigest::of(token)).await? else {
            return Ok(());
        };
        if grant.client_id != client.id {
            return Err(refused());
        }
        store.revoke_grant(&grant.id, now).await?;
        let mut detail = client_detail(&client.id);
        detail.insert("grant_id".into(), json!(grant.id));
        self.audit(
            ctx,
            "oauth_grant_revoked",
            "success",
            grant.user_id.as_deref(),
            detail,
        )
        .await;
        Ok(())
    }

    /// `/oidc/userinfo` (OIDC Core §5.3): the claims the token's scope allows.
    pub async fn userinfo(&self, access_token: &str) -> Result<Value, OAuthError> {
        let invalid = || OAuthError::new(ErrorCode::InvalidToken, "the access token is invalid");
        let claims = self
            .live_access_token(access_token, &[self.issuer()])
            .await?
            .ok_or_else(invalid)?;
        if claims.uv.is_none() {
            return Err(invalid());
        }
        let scope = Scope::parse(claims.scope.as_deref().unwrap_or(""))?;
        if !scope.is_openid() {
            return Err(OAuthError::new(
                ErrorCode::InsufficientScope,
                "the access token lacks the openid scope",
            ));
        }
        let user = self
            .inner
            .store
            .get_user(&claims.sub)
            .await?
            .ok_or_else(invalid)?;
        let mut body = Map::new();
        body.insert("sub".into(), json!(user.id));
        if scope.contains("profile") {
            body.insert("preferred_username".into(), json!(user.username));
            if let Some(name) = &user.name {
                body.insert("name".into(), json!(name));
            }
            if let Some(locale) = &user.locale {
                body.insert("locale".into(), json!(locale));
            }
            body.insert("updated_at".into(), json!(user.updated_at.unix_timestamp()));
        }
        if scope.contains("email") {
            body.insert("email".into(), json!(user.email));
            body.insert("email_verified".into(), json!(user.email_verified));
        }
        Ok(Value::Object(body))
    }

    // -----------------------------------------------------------------------------------------
    // Logout and revocation of a user's access

    /// Validates an RP-initiated logout request (OIDC RP-Initiated Logout §2, §3): the ID token
    /// hint must be ours (expired is fine), `post_logout_redirect_uri` must be registered exactly
    /// for the client the hint or `client_id` names.
    pub async fn logout_request(&self, params: &Params) -> Result<LogoutRequest, OAuthError> {
        let hint = match params.get("id_token_hint") {
            Some(token) => Some(
                self.verify_id_token_hint(token, &[])
                    .ok_or_else(|| OAuthError::invalid_request("id_token_hint is invalid"))?,
            ),
            None => None,
        };
        let client_id = match (params.get("client_id"), &hint) {
            (Some(id), Some(claims)) if claims.aud != id => {
                return Err(OAuthError::invalid_request(
                    "client_id does not match the id_token_hint",
                ));
            }
            (Some(id), _) => Some(id.to_owned()),
            (None, Some(claims)) => Some(claims.aud.clone()),
            (None, None) => None,
        };
        let redirect = match params.get("post_logout_redirect_uri") {
            None => None,
            Some(uri) => {
                let client = match &client_id {
                    Some(id) => self.inner.clients.get(id).await.map_err(|err| {
                        tracing::error!(error = %err, "client lookup failed");
                        OAuthError::new(ErrorCode::ServerError, "internal error")
                    })?,
                    None => None,
                };
                let Some(client) = client else {
                    return Err(OAuthError::invalid_request(
                        "post_logout_redirect_uri needs id_token_hint or client_id",
                    ));
                };
                if !client.post_logout_redirect_uri_registered(uri) {
                    return Err(OAuthError::invalid_request(
                        "post_logout_redirect_uri is not registered for this client",
                    ));
                }
                let mut url = url::Url::parse(uri).map_err(|_| {
                    OAuthError::invalid_request("post_logout_redirect_uri is invalid")
                })?;
                if let Some(state) = params.get("state") {
                    url.query_pairs_mut().append_pair("state", state);
                }
                Some(String::from(url))
            }
        };
        Ok(LogoutRequest {
            client_id,
            hint_subject: hint.map(|c| c.sub),
            redirect,
        })
    }

    /// After the login session `session_id` of `user_id` ended: revokes its grants that were
    /// not for offline access and returns the back-channel logout tokens to deliver to every
    /// client with a registered `backchannel_logout_uri` that had a grant from the session.
    pub async fn end_session(
        &self,
        user_id: &str,
        session_id: &str,
        ctx: &RequestContext,
    ) -> Result<Vec<BackchannelNotice>, OAuthError> {
        let store = &self.inner.store;
        let now = self.now();
        let grants = store.session_grants(session_id, now).await?;
        let mut notified = Vec::new();
        let mut notices = Vec::new();
        for grant in grants {
            let offline = grant.scope.split(' ').any(|s| s == OFFLINE_ACCESS);
            if !offline {
                store.revoke_grant(&grant.id, now).await?;
            }
            if notified.contains(&grant.client_id) {
                continue;
            }
            notified.push(grant.client_id.clone());
            let Ok(Some(client)) = self.inner.clients.get(&grant.client_id).await else {
                continue;
            };
            let Some(uri) = client.backchannel_logout_uri.clone() else {
                continue;
            };
            let mut events = Map::new();
            events.insert(BACKCHANNEL_LOGOUT_EVENT.into(), json!({}));
            let claims = LogoutTokenClaims {
                iss: self.issuer().to_owned(),
                aud: client.id.clone(),
                iat: now.unix_timestamp(),
                exp: (now + Duration::minutes(2)).unix_timestamp(),
                jti: new_ulid(now),
                sub: user_id.to_owned(),
                sid: Some(session_id.to_owned()),
                events,
            };
            let logout_token = self.sign(
                self.inner.settings.id_token_algorithm,
                "logout+jwt",
                &claims,
            )?;
            notices.push(BackchannelNotice {
                client_id: client.id,
                uri,
                logout_token,
            });
        }
        let mut detail = Map::new();
        detail.insert("session_id".into(), json!(session_id));
        detail.insert("notified_clients".into(), json!(notified));
        self.audit(ctx, "oauth_session_ended", "success", Some(user_id), detail)
            .await;
        Ok(notices)
    }

    /// Revokes every grant of the user and moves their token version, so refresh tokens die
    /// at once and access tokens stop introspecting as active. Called when a user is disabled
    /// or logs out everywhere.
    pub async fn revoke_user(&self, user_id: &str) -> Result<u64, OAuthError> {
        Ok(self
            .inner
            .store
            .revoke_user_grants(user_id, self.now())
            .await?)
    }

    /// The user's remembered consents, for `/account`.
    pub async fn consents(&self, user_id: &str) -> Result<Vec<ConsentSummary>, OAuthError> {
        let consents = self.inner.store.list_consents(user_id).await?;
        let mut out = Vec::with_capacity(consents.len());
        for consent in consents {
            let client_name = match self.inner.clients.get(&consent.client_id).await {
                Ok(Some(client)) => client.name,
                _ => consent.client_id.clone(),
            };
            out.push(ConsentSummary {
                client_id: consent.client_id,
                client_name,
                scopes: consent.scopes,
                granted_at: consent.created_at,
            });
        }
        Ok(out)
    }

    /// Withdraws a consent from `/account` (the client's grants for the user are revoked too).
    pub async fn withdraw_consent(
        &self,
        user_id: &str,
        client_id: &str,
        ctx: &RequestContext,
    ) -> Result<bool, OAuthError> {
        let withdrawn = self
            .inner
            .store
            .delete_consent(user_id, client_id, self.now())
            .await?;
        if withdrawn {
            self.audit(
                ctx,
                "oauth_consent_revoked",
                "success",
                Some(user_id),
                client_detail(client_id),
            )
            .await;
        }
        Ok(withdrawn)
    }
}

fn client_detail(client_id: &str) -> Map<String, Value> {
    let mut detail = Map::new();
    detail.insert("client_id".into(), json!(client_id));
    detail
}

/// Our access tokens are JWS compact serializations; refresh tokens are opaque and dot-free.
fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}
