//! Registered OAuth clients: what an administrator registers, the rules a registration must
//! keep, how a redirect URI is matched, and how a client authenticates at an endpoint.
//!
//! - [`ClientRegistration`] is the input (admin API body, CLI flags); [`ClientRegistry::create`]
//!   and [`ClientRegistry::update`] validate it completely before writing anything (see
//!   [`validate_registration`] for the rules) and answer [`ClientError::Invalid`] with a stable,
//!   field-specific code otherwise.
//! - [`Client`] is a registered client as every endpoint sees it. The store keeps the id, the
//!   name, the digest of the secret and an opaque metadata object; this module owns that object's
//!   format (the registration minus the name, see `registry`).
//! - Redirect URIs are compared as exact strings (RFC 9700 §2.1, no normalization, no
//!   wildcards), with the one exception RFC 8252 §7.3 requires: a native client's loopback IP
//!   redirect URI matches the same URI with any port ([`Client::redirect_uri_registered`]).
//! - Client authentication ([`ClientRegistry::authenticate`]) takes what the request presented
//!   ([`presented_credentials`]) and insists on the registered method: a secret compared by its
//!   SHA-256 digest in constant time (`client_secret_basic`, `client_secret_post`), a JWT signed
//!   by a key of the client's registered JWKS (`private_key_jwt`, RFC 7523 §3 and OIDC Core §9,
//!   each `jti` usable once), or nothing (`none`, public clients). Every failure is
//!   `invalid_client` and never tells whether the client id exists.
//!
//! Secrets (`tgcs_` + 256 random bits) are shown once, at creation and rotation; only their
//! digest is stored.

mod assertion;

pub use assertion::{
    DEFAULT_ASSERTION_LEEWAY, VerifiedAssertion, verify as verify_client_assertion,
};
mod credentials;
mod registration;
mod registry;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use trustgate_store_api::Outage;

pub use credentials::{
    ClientCertificate, JWT_BEARER_ASSERTION_TYPE, MAX_ASSERTION_BYTES, MAX_CREDENTIAL_BYTES,
    PresentedCredentials, TlsClientAuthNames, parse_basic_authorization, presented_credentials,
};
pub use registration::{
    MAX_AUDIENCES, MAX_JWKS_BYTES, MAX_NAME_CHARS, MAX_REDIRECT_URIS, MAX_SCOPES, MAX_URI_BYTES,
    validate_registration,
};
pub use registry::{
    CLIENT_ID_PREFIX, CLIENT_SECRET_PREFIX, ClientCacheConfig, ClientRegistry,
    MAX_ASSERTION_LIFETIME, MAX_PAGE,
};

/// Access-token lifetime when the registration names none.
pub const DEFAULT_ACCESS_TOKEN_TTL: Duration = Duration::minutes(10);
/// Shortest access-token lifetime a client may register.
pub const MIN_ACCESS_TOKEN_TTL: Duration = Duration::seconds(60);
/// Longest access-token lifetime a client may register.
pub const MAX_ACCESS_TOKEN_TTL: Duration = Duration::hours(24);
/// Absolute refresh-token (grant) lifetime when the registration names none.
pub const DEFAULT_REFRESH_TOKEN_TTL: Duration = Duration::days(30);
/// Shortest refresh-token lifetime a client may register.
pub const MIN_REFRESH_TOKEN_TTL: Duration = Duration::seconds(60);
/// Longest refresh-token lifetime a client may register.
pub const MAX_REFRESH_TOKEN_TTL: Duration = Duration::days(365);

/// Scopes a client may ask for when the registration names none.
pub const DEFAULT_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// How a client authenticates at the token endpoint (RFC 7591 `token_endpoint_auth_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// The secret in `Authorization: Basic` (RFC 6749 §2.3.1).
    #[default]
    ClientSecretBasic,
    /// The secret in the form body.
    ClientSecretPost,
    /// A JWT signed with a key of the client's registered JWKS (RFC 7523, OIDC Core §9).
    PrivateKeyJwt,
    /// No authentication: a public client (native and browser apps).
    None,
    /// A client certificate over mutual TLS, issued by a CA the listener trusts, with the
    /// registered subject DN or SAN (RFC 8705 §2.1).
    TlsClientAuth,
    /// A client certificate over mutual TLS that is one of the certificates (`x5c`) of the
    /// client's registered JWK Set, whoever issued it (RFC 8705 §2.2).
    SelfSignedTlsClientAuth,
}

impl AuthMethod {
    /// Every method, in declaration order.
    pub const ALL: [AuthMethod; 6] = [
        AuthMethod::ClientSecretBasic,
        AuthMethod::ClientSecretPost,
        AuthMethod::PrivateKeyJwt,
        AuthMethod::None,
        AuthMethod::TlsClientAuth,
        AuthMethod::SelfSignedTlsClientAuth,
    ];

    /// The registered spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::None => "none",
            AuthMethod::TlsClientAuth => "tls_client_auth",
            AuthMethod::SelfSignedTlsClientAuth => "self_signed_tls_client_auth",
        }
    }

    /// Whether this method authenticates with a client secret.
    pub fn uses_secret(self) -> bool {
        matches!(
            self,
            AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
        )
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuthMethod {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuthMethod::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownValue::new("token endpoint auth method", s))
    }
}

/// A grant type a client may use (RFC 7591 `grant_types`). Implicit and resource-owner
/// password grants do not exist here (RFC 9700 §2.1.2, §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrantType {
    /// `authorization_code` (RFC 6749 §4.1, with PKCE).
    AuthorizationCode,
    /// `refresh_token` (RFC 6749 §6).
    RefreshToken,
    /// `client_credentials` (RFC 6749 §4.4).
    ClientCredentials,
    /// `urn:ietf:params:oauth:grant-type:device_code` (RFC 8628).
    DeviceCode,
    /// `urn:ietf:params:oauth:grant-type:token-exchange` (RFC 8693): a confidential client
    /// exchanges an access token it received for a short-lived one for a downstream service.
    TokenExchange,
}

impl GrantType {
    /// Every grant type, in declaration order.
    pub const ALL: [GrantType; 5] = [
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
        GrantType::DeviceCode,
        GrantType::TokenExchange,
    ];

    /// The registered spelling (the `grant_type` parameter value).
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::DeviceCode => "urn:ietf:params:oauth:grant-type:device_code",
            GrantType::TokenExchange => "urn:ietf:params:oauth:grant-type:token-exchange",
        }
    }
}

impl fmt::Display for GrantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GrantType {
    type Err = UnknownValue;

    /// Only the registered spellings; anything else (including `implicit` and `password`) is an
    /// error.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GrantType::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| UnknownValue::new("grant type", s))
    }
}

impl Serialize for GrantType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for GrantType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a client registered for the token exchange grant may ask for (RFC 8693 §2.1, §5: the
/// authorization server decides, per client, which targets it may obtain tokens for).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenExchangePolicy {
    /// The targets (`audience` or `resource` values) the client may exchange tokens for: the
    /// same audience values as a client's `audience` and a resource server's client id or
    /// `resource_audiences`, compared exactly. The issued token's `aud` is the one requested.
    pub audiences: Vec<String>,
    /// Whether the client may present trustgate's API keys (and personal access tokens) as
    /// subject tokens (`urn:trustgate:params:oauth:token-type:api_key`): a resource server, such
    /// as the gateway, that receives keys from its callers and forwards their identity. Off by
    /// default: without it a key as the subject token is `invalid_request`. Registration
    /// requires the client to be a resource server (`resource_audiences`), like introspection
    /// does before it describes a key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub api_keys: bool,
}

/// OIDC Dynamic Client Registration `application_type`: which redirect URIs make sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationType {
    /// A web application: https redirect URIs (http only on loopback for development).
    #[default]
    Web,
    /// A native app (RFC 8252): private-use URI schemes and loopback redirects on any port.
    Native,
}

impl ApplicationType {
    /// The registered spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplicationType::Web => "web",
            ApplicationType::Native => "native",
        }
    }
}

impl FromStr for ApplicationType {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "web" => Ok(ApplicationType::Web),
            "native" => Ok(ApplicationType::Native),
            _ => Err(UnknownValue::new("application type", s)),
        }
    }
}

/// A string that names none of the values of an enumeration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what}: {value:?}")]
pub struct UnknownValue {
    what: &'static str,
    value: String,
}

impl UnknownValue {
    fn new(what: &'static str, value: &str) -> Self {
        Self {
            what,
            value: value.chars().take(100).collect(),
        }
    }
}

fn default_grant_types() -> Vec<GrantType> {
    vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
}

fn default_scopes() -> Vec<String> {
    DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect()
}

/// What an administrator registers (admin API body, CLI flags). Unknown fields are refused;
/// omitted ones take the documented defaults. Nothing here is trusted before
/// [`validate_registration`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRegistration {
    /// Display name (shown on the consent page), 1 to 200 characters.
    pub name: String,
    /// Where authorization responses may be sent.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send the browser afterwards.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Grant types the client may use; default `authorization_code` and `refresh_token`.
    #[serde(default = "default_grant_types")]
    pub grant_types: Vec<GrantType>,
    /// Scopes the client may ask for; default `openid profile email offline_access`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// How the client authenticates; default `client_secret_basic`.
    #[serde(default)]
    pub auth_method: AuthMethod,
    /// `web` (default) or `native`.
    #[serde(default)]
    pub application_type: ApplicationType,
    /// The client's public keys (a JWK Set), required for `private_key_jwt`.
    #[serde(default)]
    pub jwks: Option<Value>,
    /// Authorization requests must be pushed first (RFC 9126).
    #[serde(default)]
    pub require_par: bool,
    /// Every token request must carry a DPoP proof, so every access token is DPoP-bound
    /// (RFC 9449 §5.2).
    #[serde(default)]
    pub dpop_bound_access_tokens: bool,
    /// `tls_client_auth` (RFC 8705 §2.1.2): the subject DN (RFC 4514) the client
    /// certificate must have. A `tls_client_auth` client names exactly one of this and the
    /// four SAN kinds below.
    #[serde(default)]
    pub tls_client_auth_subject_dn: Option<String>,
    /// `tls_client_auth`: a DNS name SAN the client certificate must have.
    #[serde(default)]
    pub tls_client_auth_san_dns: Option<String>,
    /// `tls_client_auth`: a URI SAN (a SPIFFE ID, say) the client certificate must have.
    #[serde(default)]
    pub tls_client_auth_san_uri: Option<String>,
    /// `tls_client_auth`: an IP address SAN the client certificate must have.
    #[serde(default)]
    pub tls_client_auth_san_ip: Option<String>,
    /// `tls_client_auth`: an email SAN the client certificate must have.
    #[serde(default)]
    pub tls_client_auth_san_email: Option<String>,
    /// A first-party application: no consent page.
    #[serde(default)]
    pub skip_consent: bool,
    /// Access-token lifetime in seconds (60 to 86400; default 600).
    #[serde(default)]
    pub access_token_ttl_secs: Option<u32>,
    /// Absolute refresh-token lifetime in seconds (60 to 365 days; default 30 days).
    #[serde(default)]
    pub refresh_token_ttl_secs: Option<u32>,
    /// Seconds a rotated refresh token is honoured once more, for a client that refreshes
    /// concurrently (0 to 60; default `oauth.refresh_grace_secs`, 0). Outside it, or a second
    /// time, presenting a rotated token revokes the whole family.
    #[serde(default)]
    pub refresh_grace_secs: Option<u32>,
    /// Resource servers this client's access tokens are for (`aud`).
    #[serde(default)]
    pub audience: Vec<String>,
    /// The audiences this client serves as a resource server (RFC 7662 §4): besides tokens
    /// issued to it and tokens whose `aud` is its client id, it may introspect access tokens
    /// whose `aud` contains one of these.
    #[serde(default)]
    pub resource_audiences: Vec<String>,
    /// OIDC Back-Channel Logout endpoint of the client.
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
    /// The back-channel logout token must carry `sid`.
    #[serde(default)]
    pub backchannel_logout_session_required: bool,
    /// For the token exchange grant: the targets the client may request (required with that
    /// grant, refused without it).
    #[serde(default)]
    pub token_exchange: Option<TokenExchangePolicy>,
}

impl ClientRegistration {
    /// The `tls_client_auth_*` names it registers.
    pub fn tls_client_auth_names(&self) -> TlsClientAuthNames {
        TlsClientAuthNames {
            subject_dn: self.tls_client_auth_subject_dn.clone(),
            san_dns: self.tls_client_auth_san_dns.clone(),
            san_uri: self.tls_client_auth_san_uri.clone(),
            san_ip: self.tls_client_auth_san_ip.clone(),
            san_email: self.tls_client_auth_san_email.clone(),
        }
    }

    /// A registration with this name and every other field at its default.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            grant_types: default_grant_types(),
            scopes: default_scopes(),
            auth_method: AuthMethod::default(),
            application_type: ApplicationType::default(),
            jwks: None,
            require_par: false,
            dpop_bound_access_tokens: false,
            tls_client_auth_subject_dn: None,
            tls_client_auth_san_dns: None,
            tls_client_auth_san_uri: None,
            tls_client_auth_san_ip: None,
            tls_client_auth_san_email: None,
            skip_consent: false,
            access_token_ttl_secs: None,
            refresh_token_ttl_secs: None,
            refresh_grace_secs: None,
            audience: Vec::new(),
            resource_audiences: Vec::new(),
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            token_exchange: None,
        }
    }
}

/// A registered client, as the endpoints see it. Serializes (for the admin API) with
/// `client_id` for the id and lifetimes in seconds; never with a secret or its digest.
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    /// `client_id`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// How it authenticates.
    pub auth_method: AuthMethod,
    /// Web or native.
    pub application_type: ApplicationType,
    /// Registered redirect URIs, verbatim.
    pub redirect_uris: Vec<String>,
    /// Registered post-logout redirect URIs, verbatim.
    pub post_logout_redirect_uris: Vec<String>,
    /// Grant types it may use.
    pub grant_types: Vec<GrantType>,
    /// Scopes it may ask for.
    pub scopes: Vec<String>,
    /// Its public keys (JWK Set), for `private_key_jwt`.
    pub jwks: Option<Value>,
    /// Authorization requests must be pushed (RFC 9126).
    pub require_par: bool,
    /// Token requests must carry a DPoP proof (RFC 9449 §5.2).
    pub dpop_bound_access_tokens: bool,
    /// `tls_client_auth`: the name its certificate must have.
    pub tls_client_auth: TlsClientAuthNames,
    /// First-party: no consent page.
    pub skip_consent: bool,
    /// Access-token lifetime.
    pub access_token_ttl: Duration,
    /// Absolute refresh-token (grant) lifetime.
    pub refresh_token_ttl: Duration,
    /// Its own refresh grace, if it opted into one.
    pub refresh_grace: Option<Duration>,
    /// Audiences of its access tokens.
    pub audience: Vec<String>,
    /// Audiences it serves as a resource server (what it may introspect tokens for).
    pub resource_audiences: Vec<String>,
    /// Back-channel logout endpoint.
    pub backchannel_logout_uri: Option<String>,
    /// Back-channel logout tokens carry `sid`.
    pub backchannel_logout_session_required: bool,
    /// What it may ask for with the token exchange grant.
    pub token_exchange: Option<TokenExchangePolicy>,
    /// Registered.
    pub created_at: OffsetDateTime,
    /// Last changed.
    pub updated_at: OffsetDateTime,
    /// Whether a secret is set (only for the `client_secret_*` methods).
    pub has_secret: bool,
}

impl Client {
    /// A public client: it cannot keep a secret and authenticates with nothing but its id.
    pub fn is_public(&self) -> bool {
        self.auth_method == AuthMethod::None
    }

    /// The web origins its browser application runs on: for a public client, the origins
    /// (`scheme://host[:port]`) of its `http` and `https` redirect URIs. A confidential client
    /// keeps its secret on a server and calls the token endpoint from there, not from a page;
    /// a native app's private-use scheme has no web origin.
    pub fn browser_origins(&self) -> Vec<String> {
        if !self.is_public() {
            return Vec::new();
        }
        self.redirect_uris
            .iter()
            .filter_map(|uri| url::Url::parse(uri).ok())
            .filter(|url| matches!(url.scheme(), "http" | "https"))
            .map(|url| url.origin().ascii_serialization())
            .collect()
    }

    /// Whether the client may use this grant type.
    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// Whether the client may ask for this scope.
    pub fn allows_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Whether a token whose `aud` contains `audience` is for this client as a resource
    /// server: the audience is its client id or one of its registered `resource_audiences`.
    /// What entitles it to introspect such a token (RFC 7662 §4) and to exchange it (RFC 8693).
    pub fn serves_audience(&self, audience: &str) -> bool {
        audience == self.id || self.resource_audiences.iter().any(|r| r == audience)
    }

    /// Whether the token exchange grant may issue this client a token for `target`.
    pub fn may_exchange_for(&self, target: &str) -> bool {
        self.token_exchange
            .as_ref()
            .is_some_and(|p| p.audiences.iter().any(|a| a == target))
    }

    /// Whether the client may present API keys as subject tokens (its registration opts in
    /// with `token_exchange.api_keys`).
    pub fn may_exchange_api_keys(&self) -> bool {
        self.token_exchange.as_ref().is_some_and(|p| p.api_keys)
    }

    /// Whether `uri` is one of the registered redirect URIs.
    ///
    /// Exact string comparison (RFC 9700 §2.1): no case folding, no normalization, no prefix
    /// or wildcard matching. The one exception (RFC 8252 §7.3): for a native client, a
    /// registered `http://127.0.0.1` or `http://[::1]` URI matches the same URI with any port
    /// (the app listens on an ephemeral one); scheme, host, path and query must still match
    /// exactly. `localhost` gets no exception (RFC 8252 §8.3: it may resolve elsewhere).
    pub fn redirect_uri_registered(&self, uri: &str) -> bool {
        if self.redirect_uris.iter().any(|r| r == uri) {
            return true;
        }
        if self.application_type != ApplicationType::Native {
            return false;
        }
        let Some(presented) = loopback_parts(uri) else {
            return false;
        };
        self.redirect_uris
            .iter()
            .filter_map(|r| loopback_parts(r))
            .any(|registered| registered == presented)
    }

    /// Whether `uri` is one of the registered post-logout redirect URIs (exact comparison).
    pub fn post_logout_redirect_uri_registered(&self, uri: &str) -> bool {
        self.post_logout_redirect_uris.iter().any(|r| r == uri)
    }

    /// The registration this client was created or last updated with (lifetimes resolved to
    /// seconds): what `PUT` takes back with some fields changed.
    pub fn registration(&self) -> ClientRegistration {
        ClientRegistration {
            name: self.name.clone(),
            redirect_uris: self.redirect_uris.clone(),
            post_logout_redirect_uris: self.post_logout_redirect_uris.clone(),
            grant_types: self.grant_types.clone(),
            scopes: self.scopes.clone(),
            auth_method: self.auth_method,
            application_type: self.application_type,
            jwks: self.jwks.clone(),
            require_par: self.require_par,
            dpop_bound_access_tokens: self.dpop_bound_access_tokens,
            tls_client_auth_subject_dn: self.tls_client_auth.subject_dn.clone(),
            tls_client_auth_san_dns: self.tls_client_auth.san_dns.clone(),
            tls_client_auth_san_uri: self.tls_client_auth.san_uri.clone(),
            tls_client_auth_san_ip: self.tls_client_auth.san_ip.clone(),
            tls_client_auth_san_email: self.tls_client_auth.san_email.clone(),
            skip_consent: self.skip_consent,
            access_token_ttl_secs: u32::try_from(self.access_token_ttl.whole_seconds()).ok(),
            refresh_token_ttl_secs: u32::try_from(self.refresh_token_ttl.whole_seconds()).ok(),
            refresh_grace_secs: self
                .refresh_grace
                .and_then(|g| u32::try_from(g.whole_seconds()).ok()),
            audience: self.audience.clone(),
            resource_audiences: self.resource_audiences.clone(),
            backchannel_logout_uri: self.backchannel_logout_uri.clone(),
            backchannel_logout_session_required: self.backchannel_logout_session_required,
            token_exchange: self.token_exchange.clone(),
        }
    }
}

/// For `http://127.0.0.1[:port]REST` or `http://[::1][:port]REST`: the host and REST (path and
/// query, which must start with `/` or `?` or be empty). `None` for anything else, including a
/// port that is not 1 to 65535.
fn loopback_parts(uri: &str) -> Option<(&str, &str)> {
    let after_scheme = uri.strip_prefix("http://")?;
    let host = ["127.0.0.1", "[::1]"]
        .into_iter()
        .find(|h| after_scheme.starts_with(h))?;
    let mut rest = &after_scheme[host.len()..];
    if let Some(port_and_rest) = rest.strip_prefix(':') {
        let digits = port_and_rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(port_and_rest.len());
        let port: u16 = port_and_rest[..digits].parse().ok()?;
        if port == 0 || digits > 5 {
            return None;
        }
        rest = &port_and_rest[digits..];
    }
    (rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')).then_some((host, rest))
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

impl Serialize for Client {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            client_id: &'a str,
            name: &'a str,
            auth_method: AuthMethod,
            application_type: ApplicationType,
            redirect_uris: &'a [String],
            post_logout_redirect_uris: &'a [String],
            grant_types: &'a [GrantType],
            scopes: &'a [String],
            jwks: &'a Option<Value>,
            require_par: bool,
            dpop_bound_access_tokens: bool,
            #[serde(flatten)]
            tls_client_auth: &'a TlsClientAuthNames,
            skip_consent: bool,
            access_token_ttl_secs: i64,
            refresh_token_ttl_secs: i64,
            refresh_grace_secs: Option<i64>,
            audience: &'a [String],
            resource_audiences: &'a [String],
            backchannel_logout_uri: &'a Option<String>,
            backchannel_logout_session_required: bool,
            token_exchange: &'a Option<TokenExchangePolicy>,
            created_at: String,
            updated_at: String,
            has_secret: bool,
        }
        View {
            client_id: &self.id,
            name: &self.name,
            auth_method: self.auth_method,
            application_type: self.application_type,
            redirect_uris: &self.redirect_uris,
            post_logout_redirect_uris: &self.post_logout_redirect_uris,
            grant_types: &self.grant_types,
            scopes: &self.scopes,
            jwks: &self.jwks,
            require_par: self.require_par,
            dpop_bound_access_tokens: self.dpop_bound_access_tokens,
            tls_client_auth: &self.tls_client_auth,
            skip_consent: self.skip_consent,
            access_token_ttl_secs: self.access_token_ttl.whole_seconds(),
            refresh_token_ttl_secs: self.refresh_token_ttl.whole_seconds(),
            refresh_grace_secs: self.refresh_grace.map(|g| g.whole_seconds()),
            audience: &self.audience,
            resource_audiences: &self.resource_audiences,
            backchannel_logout_uri: &self.backchannel_logout_uri,
            backchannel_logout_session_required: self.backchannel_logout_session_required,
            token_exchange: &self.token_exchange,
            created_at: rfc3339(self.created_at),
            updated_at: rfc3339(self.updated_at),
            has_secret: self.has_secret,
        }
        .serialize(serializer)
    }
}

/// Why a client could not be registered, changed or found.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The registration breaks a rule; nothing was written. `code` is stable and names the
    /// field (`invalid_redirect_uri`, `invalid_grant_types`, ...), the message says what is
    /// wrong with which entry.
    #[error("{message}")]
    Invalid {
        /// Stable machine code.
        code: &'static str,
        /// Human text naming the field.
        message: String,
    },
    /// No client with this id.
    #[error("no such client")]
    NotFound,
    /// A secret was asked for a client whose method uses none.
    #[error("the client authenticates with {0}, which uses no client secret")]
    NoSecret(AuthMethod),
    /// The stored metadata cannot be read (written by an incompatible version?).
    #[error("stored client {id} is unreadable: {detail}")]
    Corrupt {
        /// The client id.
        id: String,
        /// What is wrong.
        detail: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] trustgate_store_api::StoreError),
}

impl ClientError {
    pub(crate) fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ClientError::Invalid {
            code,
            message: message.into(),
        }
    }

    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            ClientError::Invalid { code, .. } => code,
            ClientError::NotFound => "not_found",
            ClientError::NoSecret(_) => "client_has_no_secret",
            ClientError::Corrupt { .. } => "internal",
            ClientError::Store(e) => e.outage().map_or("storage", Outage::code),
        }
    }

    /// The HTTP status an API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            ClientError::Invalid { .. } => 400,
            ClientError::NotFound => 404,
            ClientError::NoSecret(_) => 409,
            ClientError::Corrupt { .. } => 500,
            ClientError::Store(e) => e.outage().map_or(500, Outage::http_status),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    fn client(app: ApplicationType, uris: &[&str]) -> Client {
        Client {
            id: "tgc_x".into(),
            name: "x".into(),
            auth_method: AuthMethod::None,
            application_type: app,
            redirect_uris: uris.iter().map(|u| (*u).to_owned()).collect(),
            post_logout_redirect_uris: vec!["https://app.example.com/bye".into()],
            grant_types: default_grant_types(),
            scopes: default_scopes(),
            jwks: None,
            require_par: false,
            dpop_bound_access_tokens: false,
            tls_client_auth: TlsClientAuthNames::default(),
            skip_consent: false,
            access_token_ttl: DEFAULT_ACCESS_TOKEN_TTL,
            refresh_token_ttl: DEFAULT_REFRESH_TOKEN_TTL,
            refresh_grace: None,
            audience: Vec::new(),
            resource_audiences: Vec::new(),
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            token_exchange: None,
            created_at: datetime!(2026-01-01 00:00 UTC),
            updated_at: datetime!(2026-01-01 00:00 UTC),
            has_secret: false,
        }
    }

    #[test]
    fn enumerations_spell_as_registered() {
        for g in GrantType::ALL {
            assert_eq!(g.as_str().parse::<GrantType>(), Ok(g));
            assert_eq!(
                serde_json::to_value(g).expect("ser"),
                Value::from(g.as_str())
            );
        }
        assert_eq!(
            GrantType::DeviceCode.as_str(),
            "urn:ietf:params:oauth:grant-type:device_code"
        );
        assert_eq!(
            GrantType::TokenExchange.as_str(),
            "urn:ietf:params:oauth:grant-type:token-exchange"
        );
        for bad in [
            "implicit",
            "password",
            "device_code",
            "token-exchange",
            "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "AUTHORIZATION_CODE",
            "",
        ] {
            assert!(bad.parse::<GrantType>().is_err(), "{bad}");
        }
        for m in AuthMethod::ALL {
            assert_eq!(m.as_str().parse::<AuthMethod>(), Ok(m));
            assert_eq!(
                serde_json::to_value(m).expect("ser"),
                Value::from(m.as_str())
            );
        }
        assert!("client_secret_jwt".parse::<AuthMethod>().is_err());
        assert_eq!(
            serde_json::from_value::<ApplicationType>(json!("native")).expect("de"),
            ApplicationType::Native
        );
    }

    #[test]
    fn registration_defaults_and_unknown_fields() {
        let reg: ClientRegistration =
            serde_json::from_value(json!({"name": "App"})).expect("minimal");
        assert_eq!(reg, ClientRegistration::named("App"));
        assert_eq!(
            reg.grant_types,
            [GrantType::AuthorizationCode, GrantType::RefreshToken]
        );
        assert_eq!(reg.scopes, ["openid", "profile", "email", "offline_access"]);
        assert_eq!(reg.auth_method, AuthMethod::ClientSecretBasic);
        assert_eq!(reg.application_type, ApplicationType::Web);
        for bad in [
            json!({}),
            json!({"name": "A", "client_secret": "x"}),
            json!({"name": "A", "grant_types": ["implicit"]}),
            json!({"name": "A", "auth_method": "client_secret_jwt"}),
            json!({"name": "A", "access_token_ttl_secs": -1}),
        ] {
            assert!(
                serde_json::from_value::<ClientRegistration>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn redirect_uris_match_exactly() {
        let c = client(
            ApplicationType::Web,
            &[
                "https://app.example.com/cb",
                "https://app.example.com/cb?x=1",
            ],
        );
        assert!(c.redirect_uri_registered("https://app.example.com/cb"));
        assert!(c.redirect_uri_registered("https://app.example.com/cb?x=1"));
        for other in [
            "https://app.example.com/cb/",
            "https://app.example.com/CB",
            "https://APP.example.com/cb",
            "https://app.example.com:443/cb",
            "https://app.example.com/cb?x=2",
            "https://app.example.com/cb?x=1&y=2",
            "https://app.example.com/cb#f",
            "https://app.example.com/c",
            "https://app.example.com/cbx",
            "https://app.example.com/cb/../cb",
            "http://app.example.com/cb",
            "",
        ] {
            assert!(!c.redirect_uri_registered(other), "{other}");
        }
        assert!(c.post_logout_redirect_uri_registered("https://app.example.com/bye"));
        assert!(!c.post_logout_redirect_uri_registered("https://app.example.com/bye/"));
    }

    #[test]
    fn native_loopback_ip_matches_any_port_and_nothing_else() {
        let native = client(
            ApplicationType::Native,
            &[
                "http://127.0.0.1/callback",
                "http://[::1]:8400/cb?x=1",
                "http://localhost/cb",
                "com.example.app:/oauth2",
            ],
        );
        for ok in [
            "http://127.0.0.1/callback",
            "http://127.0.0.1:51234/callback",
            "http://127.0.0.1:1/callback",
            "http://127.0.0.1:65535/callback",
            "http://[::1]/cb?x=1",
            "http://[::1]:8400/cb?x=1",
            "http://[::1]:9/cb?x=1",
            "http://localhost/cb",
            "com.example.app:/oauth2",
        ] {
            assert!(native.redirect_uri_registered(ok), "{ok}");
        }
        for refused in [
            // path and query still exact
            "http://127.0.0.1:51234/callback/",
            "http://127.0.0.1:51234/Callback",
            "http://127.0.0.1:51234/callback?x=1",
            "http://[::1]:9/cb",
            "http://[::1]:9/cb?x=2",
            // no port games
            "http://127.0.0.1:0/callback",
            "http://127.0.0.1:65536/callback",
            "http://127.0.0.1:/callback",
            "http://127.0.0.1:080a/callback",
            "http://127.0.0.1:123456/callback",
            // not the same host or scheme
            "http://127.0.0.2:5000/callback",
            "https://127.0.0.1:5000/callback",
            "http://[::1]:9/callback",
            "http://127.0.0.1:5000/cb?x=1",
            // localhost gets no port exception
            "http://localhost:5000/cb",
            // userinfo is not a host
            "http://127.0.0.1:80@evil.example/callback",
            "http://127.0.0.1.evil.example/callback",
            "com.example.app:/oauth2/x",
        ] {
            assert!(!native.redirect_uri_registered(refused), "{refused}");
        }
        // The exception is for native clients only.
        let web = client(ApplicationType::Web, &["http://127.0.0.1/callback"]);
        assert!(web.redirect_uri_registered("http://127.0.0.1/callback"));
        assert!(!web.redirect_uri_registered("http://127.0.0.1:5000/callback"));
    }

    #[test]
    fn client_serializes_without_secrets() {
        let mut c = client(ApplicationType::Web, &["https://a.example/cb"]);
        c.has_secret = true;
        let json = serde_json::to_value(&c).expect("ser");
        assert_eq!(json["client_id"], "tgc_x");
        assert_eq!(json["access_token_ttl_secs"], 600);
        assert_eq!(json["refresh_token_ttl_secs"], 30 * 86400);
        assert_eq!(json["created_at"], "2026-01-01T00:00:00Z");
        assert_eq!(json["has_secret"], true);
        assert!(json.get("secret").is_none() && json.get("secret_digest").is_none());
        // What GET shows can be sent back (minus the read-only fields) as a registration.
        let mut back = json.as_object().cloned().expect("object");
        for read_only in ["client_id", "created_at", "updated_at", "has_secret"] {
            back.remove(read_only);
        }
        let reg: ClientRegistration = serde_json::from_value(Value::Object(back)).expect("de");
        assert_eq!(reg, c.registration());
    }

    #[test]
    fn client_predicates() {
        let mut c = client(ApplicationType::Web, &[]);
        assert!(c.is_public());
        c.auth_method = AuthMethod::PrivateKeyJwt;
        assert!(!c.is_public());
        assert!(c.allows_grant(GrantType::AuthorizationCode));
        assert!(!c.allows_grant(GrantType::ClientCredentials));
        assert!(c.allows_scope("openid"));
        assert!(!c.allows_scope("admin"));
        assert!(!c.allows_scope("OPENID"));
        c.resource_audiences = vec!["https://orders.example".into()];
        assert!(c.serves_audience("tgc_x"));
        assert!(c.serves_audience("https://orders.example"));
        assert!(!c.serves_audience("https://orders.example/"));
        assert!(!c.serves_audience("tgc_y"));
        assert!(!c.may_exchange_for("https://orders.example"));
        assert!(!c.may_exchange_api_keys());
        c.token_exchange = Some(TokenExchangePolicy {
            audiences: vec!["https://billing.example".into()],
            api_keys: false,
        });
        assert!(c.may_exchange_for("https://billing.example"));
        assert!(!c.may_exchange_for("https://BILLING.example"));
        assert!(!c.may_exchange_for("https://orders.example"));
        assert!(!c.may_exchange_api_keys(), "API keys only by opting in");
        c.token_exchange = Some(TokenExchangePolicy {
            audiences: vec!["https://billing.example".into()],
            api_keys: true,
        });
        assert!(c.may_exchange_api_keys());
    }

    #[test]
    fn the_api_key_opt_in_defaults_to_off_and_is_stored_only_when_on() {
        let policy: TokenExchangePolicy =
            serde_json::from_value(serde_json::json!({ "audiences": ["a"] })).expect("policy");
        assert!(
            !policy.api_keys,
            "metadata stored before the opt-in existed"
        );
        assert_eq!(
            serde_json::to_value(&policy).expect("json"),
            serde_json::json!({ "audiences": ["a"] })
        );
        let on: TokenExchangePolicy =
            serde_json::from_value(serde_json::json!({ "audiences": ["a"], "api_keys": true }))
                .expect("policy");
        assert!(on.api_keys);
        assert_eq!(
            serde_json::to_value(&on).expect("json"),
            serde_json::json!({ "audiences": ["a"], "api_keys": true })
        );
        assert!(
            serde_json::from_value::<TokenExchangePolicy>(
                serde_json::json!({ "audiences": ["a"], "api_key": true })
            )
            .is_err(),
            "a misspelt opt-in is an error, not ignored"
        );
    }
}
