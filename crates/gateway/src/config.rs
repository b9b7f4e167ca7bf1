//! `gateway.toml`: what the gateway listens on, whom it trusts, and the upstreams with their
//! routes. Loaded with figment (TOML, then `TRUSTGATE_GATEWAY_*` environment variables, `__`
//! for nesting), so an error names the key and the source of the bad value. Secrets are never
//! inline: each is read from a file or an environment variable named in the configuration.
//!
//! ```toml
//! listen = "127.0.0.1:8088"
//! issuer = "https://id.example.com"          # trustgate: JWKS, token endpoint
//! audience = "https://gateway.example.com"   # callers' access tokens must be for this
//!
//! [client]                                   # the gateway's own OAuth client
//! id = "tgc_..."
//! secret_file = "/run/secrets/gateway"       # or secret_env = "GATEWAY_CLIENT_SECRET"
//!
//! [pdp]
//! url = "https://id.example.com/"
//! store_id = "01J..."
//! api_key_env = "GATEWAY_PDP_KEY"            # or api_key_file
//! decision_cache_ttl_secs = 10               # 0: ask on every request
//!
//! [rate_limit]                               # optional: per principal (per key for API keys)
//! per_second = 50
//! burst = 100
//!
//! [api_keys]                                 # optional: accept trustgate's API keys
//! introspection_ttl_secs = 5                 # a revoked key is refused within this (or sooner)
//!
//! [tls]                                      # optional; else listen on loopback or declare
//! cert_file = "/etc/gateway/tls/cert.pem"    #   trusted_proxies (the proxy terminates TLS)
//! key_file = "/etc/gateway/tls/key.pem"      # reloaded on SIGHUP and when the files change
//!
//! [mtls]                                     # optional: a mutual-TLS listener, where tokens
//! listen = "0.0.0.0:8443"                    #   bound to a client certificate pass (RFC 8705)
//! ca_files = ["/etc/gateway/clients-ca.pem"] #   also crl_files, accept_self_signed
//!
//! [connections]                              # optional: the listener's limits
//! max_connections = 4096
//! header_read_timeout_secs = 10
//!
//! [[upstream]]
//! name = "learning"
//! url = "http://127.0.0.1:3000"               # or https://, with an optional [upstream.tls]:
//!                                             #   ca_files, cert_file + key_file (mutual TLS)
//! audience = "https://learning.internal"     # the internal token's `aud`
//! connect_timeout_ms = 1000
//! request_timeout_ms = 30000
//! health = { path = "/healthz", interval_ms = 5000 }
//!
//! [[upstream.route]]
//! method = "GET"
//! path = "/courses/{id}"
//! action = "viewer"
//! resource = "course:{id}"
//! scopes = ["courses:read"]
//! step_up = { max_age = 600, amr = ["otp"], acr_values = ["2"] }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use http::Method;
use serde::Deserialize;
use trustgate_core::Secret;
use trustgate_core::net::TrustedProxies;
use trustgate_pep::{Rule, StepUp};

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A value is missing, mistyped or invalid; the message names the key and its source.
    #[error("invalid gateway configuration: {0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where the gateway listens (applied at start; a reload keeps the listener).
    pub listen: SocketAddr,
    /// trustgate's issuer, exactly as in `iss` (its JWKS and token endpoint are below it).
    pub issuer: String,
    /// The audience callers' access tokens must carry to be accepted here.
    pub audience: String,
    /// The realm of the `WWW-Authenticate` challenges (default `trustgate-gateway`).
    #[serde(default = "default_realm")]
    pub realm: String,
    /// The gateway's own OAuth client, for token exchange.
    pub client: ClientConfig,
    /// The PDP.
    pub pdp: PdpConfig,
    /// Per-principal rate limit; none when absent.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// How long (seconds, at most 30) a caller's JWT is taken as still active after trustgate's
    /// introspection said so (the gateway's client introspects the tokens it receives): a
    /// signed-out session, a disabled user or a revoked grant is refused within this time
    /// rather than at the token's `exp` — within trustgate's revocation poll (250 ms) while
    /// the gateway's feed from `GET /stores/{id}/watch` is up, since every revocation empties
    /// the answers kept. `0` turns the check off (revoked tokens then pass until `exp`, and are
    /// refused only by the token exchange).
    #[serde(default = "default_liveness_secs")]
    pub liveness_ttl_secs: u64,
    /// Whether callers may authenticate with trustgate's API keys (or personal access tokens),
    /// as `X-API-Key: <key>` or `Authorization: Bearer <key>`; none when absent, and a key is
    /// then refused (401 `opaque_token_not_accepted`).
    #[serde(default)]
    pub api_keys: Option<ApiKeysConfig>,
    /// Whether callers may present DPoP-bound access tokens (`Authorization: DPoP` with a
    /// `DPoP` proof, RFC 9449 §7); none when absent, and the `DPoP` scheme (hence every
    /// DPoP-bound token) is then refused (401). A bound token presented as a bearer token is
    /// refused either way.
    #[serde(default)]
    pub dpop: Option<DpopConfig>,
    /// Incoming request headers removed before forwarding, so that a client cannot claim an
    /// identity the upstream trusts. A trailing `*` matches a prefix. The caller's credentials,
    /// `Authorization` and `X-API-Key`, are always removed (`Authorization` then carries the
    /// internal token), whatever this says.
    #[serde(default = "default_identity_headers")]
    pub strip_headers: Vec<String>,
    /// The upstream applications.
    #[serde(rename = "upstream")]
    pub upstreams: Vec<UpstreamConfig>,
    /// TLS on the listener (as `[tls]` of `trustgate serve`: certificate and key files,
    /// reloaded on SIGHUP and on change; HSTS). Without it the gateway must listen on a
    /// loopback address or declare the proxy in front (`trusted_proxies`).
    #[serde(default)]
    pub tls: trustgate_listener::tls::TlsConfig,
    /// A second, mutual-TLS listener (as `[mtls]` of `trustgate serve`: `listen`, `ca_files`,
    /// `crl_files`, `accept_self_signed`; it serves the `[tls]` certificate). Callers' access
    /// tokens bound to a client certificate (RFC 8705 §3) pass there, with that certificate
    /// only. Changes to it take effect on restart.
    #[serde(default)]
    pub mtls: trustgate_listener::mtls::MtlsConfig,
    /// Reverse proxies (addresses or prefixes) whose forwarding headers are believed for the
    /// client's address and scheme (as `http.trusted_proxies` of `trustgate serve`); none by
    /// default.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// How many trusted proxies stand in a row in front of the gateway (1 to 10).
    #[serde(default = "default_proxy_hops")]
    pub proxy_hops: usize,
    /// The listener's connection limits and timeouts.
    #[serde(default)]
    pub connections: ConnectionsConfig,
}

/// The gateway listener's limits (`[connections]`), as `[http]` of `trustgate serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    /// Most open client connections (1 to 1000000), clamped below the descriptor limit.
    pub max_connections: usize,
    /// Most open connections from one address (1 to `max_connections`); a gateway often has
    /// a load balancer as its only peer, hence the same default as `max_connections`.
    pub max_connections_per_ip: usize,
    /// A request header must be complete within this many seconds (1 to 300).
    pub header_read_timeout_secs: u64,
    /// A kept-alive connection without a request is closed after this many seconds (1 to 3600).
    pub idle_timeout_secs: u64,
    /// On shutdown, in-flight requests get this long to finish (seconds).
    pub shutdown_grace_secs: u64,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_ip: 4096,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 75,
            shutdown_grace_secs: 30,
        }
    }
}

impl ConnectionsConfig {
    /// The listener's settings, before clamping to the descriptor limit.
    pub fn listener_settings(&self) -> trustgate_listener::ListenerSettings {
        trustgate_listener::ListenerSettings {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
        }
    }
}

fn default_proxy_hops() -> usize {
    1
}

/// The gateway's OAuth client (confidential; registered with the token exchange grant, the
/// upstreams' audiences in its `token_exchange.audiences`, and the gateway's audience among its
/// `resource_audiences` so that callers' tokens count as received by it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The client id.
    pub id: String,
    /// A file holding the secret (trailing whitespace ignored).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// An environment variable holding the secret.
    #[serde(default)]
    pub secret_env: Option<String>,
}

/// The PDP: trustgate's `POST /stores/{id}/check`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PdpConfig {
    /// trustgate's base URL.
    pub url: url::Url,
    /// The store.
    pub store_id: String,
    /// Pin a model (default: the latest).
    #[serde(default)]
    pub model_id: Option<String>,
    /// A file holding the API key (a reader on the store).
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// An environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The timeout of one check (default 2000 ms); when it fires the request is answered 503.
    #[serde(default = "default_pdp_timeout")]
    pub timeout_ms: u64,
    /// How long (seconds, at most 300) a decision may be reused while the store does not change
    /// (default 10; `0` asks the PDP on every request). The gateway follows the store's
    /// revision (`GET /stores/{id}/watch`): a tuple change or a new model drops every cached
    /// decision, and while that stream is down nothing is cached. A request with an
    /// `X-Consistency-Token` is always asked.
    #[serde(default = "default_decision_cache_secs")]
    pub decision_cache_ttl_secs: u64,
    /// The most decisions cached (default 100000).
    #[serde(default = "default_decision_cache_entries")]
    pub decision_cache_max_entries: u64,
}

/// A token bucket per principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests allowed in a burst (default: `per_second`).
    #[serde(default)]
    pub burst: Option<u32>,
}

/// One upstream application.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// A name for logs.
    pub name: String,
    /// Its base URL (`http://host:port` or `https://host:port`, optionally with a path prefix).
    pub url: url::Url,
    /// For an `https` URL: whom its certificate must chain to (default: the Mozilla root
    /// program's CAs) and the gateway's client certificate when the upstream asks for one
    /// (mutual TLS). Read again on reload.
    #[serde(default)]
    pub tls: Option<trustgate_listener::tls::ClientTlsConfig>,
    /// The `aud` of the internal tokens it receives.
    pub audience: String,
    /// The TCP connect timeout (default 1000 ms): a refused or timed-out connect is 502.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// Until the response head arrives (default 30000 ms): a later one is 504.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    /// An active health check; without one the upstream counts as healthy.
    #[serde(default)]
    pub health: Option<HealthConfig>,
    /// The routes served by this upstream.
    #[serde(rename = "route", default)]
    pub routes: Vec<RouteConfig>,
}

/// `GET {url}{path}` every `interval_ms`; a non-2xx answer, an error or no answer within the
/// interval marks the upstream unhealthy (503 at once) until a check succeeds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// The path, e.g. `/healthz`.
    pub path: String,
    /// The period (default 5000 ms).
    #[serde(default = "default_health_interval")]
    pub interval_ms: u64,
}

/// API keys from callers. A key is introspected at trustgate by the gateway's client (which
/// must be a resource server there, `resource_audiences`, to learn about keys), and forwarded
/// as an internal token exchanged (RFC 8693) with the key as the subject token
/// (`urn:trustgate:params:oauth:token-type:api_key`): the client's registration needs
/// `token_exchange.api_keys = true`, else every key is refused (401, logged with trustgate's
/// reason). The internal token's `sub` is the key's owner (`service:<id>` or `user:<id>`) and
/// its `key_id` the key; with `[rate_limit]`, each key has its own bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeysConfig {
    /// How long (seconds, at most 30) trustgate's answer that a key is active is reused
    /// (default 5): a revoked key, or one whose owner is disabled, is refused within this time
    /// (within trustgate's revocation poll while the watch feed is up: every revocation empties
    /// the answers kept). `0` introspects the key on every request.
    #[serde(default = "default_key_introspection_secs")]
    pub introspection_ttl_secs: u64,
}

/// DPoP at the gateway (`[dpop]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpopConfig {
    /// The origin clients call the gateway by (`https://api.example.com`): a proof's `htu` is
    /// it plus the request's path.
    pub origin: url::Url,
    /// How old a proof may be, in seconds (5 to 300, default 60). Proof ids are remembered
    /// that long, per gateway process.
    #[serde(default = "default_dpop_max_age_secs")]
    pub max_age_secs: u64,
}

fn default_dpop_max_age_secs() -> u64 {
    60
}

/// One route: pep's [`Rule`] in TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The method (`GET`, ...).
    pub method: String,
    /// The path template (`/courses/{id}`).
    pub path: String,
    /// No authentication and no decision.
    #[serde(default)]
    pub public: bool,
    /// The relation asked of the PDP.
    #[serde(default)]
    pub action: String,
    /// The object template (`course:{id}`).
    #[serde(default)]
    pub resource: String,
    /// Required scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Step-up (RFC 9470).
    #[serde(default)]
    pub step_up: Option<StepUpConfig>,
}

/// pep's [`StepUp`] in TOML.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepUpConfig {
    /// Most seconds since the authentication.
    #[serde(default)]
    pub max_age: Option<u64>,
    /// Every one of these `amr` values ...
    #[serde(default)]
    pub amr: Vec<String>,
    /// ... or one of these `acr` values.
    #[serde(default)]
    pub acr_values: Vec<String>,
}

fn default_realm() -> String {
    "trustgate-gateway".to_owned()
}
fn default_pdp_timeout() -> u64 {
    2000
}
fn default_decision_cache_secs() -> u64 {
    10
}
fn default_decision_cache_entries() -> u64 {
    100_000
}
fn default_connect_timeout() -> u64 {
    1000
}
fn default_request_timeout() -> u64 {
    30_000
}
fn default_health_interval() -> u64 {
    5000
}

/// The identity headers removed by default: what trustgate, oauth2-proxy and common
/// authenticating proxies set, plus trustgate's own credential headers.
fn default_liveness_secs() -> u64 {
    5
}
fn default_key_introspection_secs() -> u64 {
    5
}

/// The identity headers stripped by default.
pub fn default_identity_headers() -> Vec<String> {
    [
        "x-trustgate-*",
        "x-forwarded-user",
        "x-forwarded-email",
        "x-forwarded-preferred-username",
        "x-forwarded-access-token",
        "x-auth-request-*",
        "x-remote-user",
        "remote-user",
        "x-api-key",
    ]
    .map(str::to_owned)
    .to_vec()
}

impl GatewayConfig {
    /// Reads `path`, then `TRUSTGATE_GATEWAY_*` variables over it, and validates the result.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        // Read it ourselves: figment treats a missing file as empty, which would hide a typo.
        std::fs::File::open(path).map_err(|source| ConfigError::File {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_figment(
            Figment::new()
                .merge(Toml::file_exact(path))
                .merge(Env::prefixed("TRUSTGATE_GATEWAY_").split("__")),
        )
    }

    /// Parses a TOML text (no environment), for tests and embedding.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_figment(Figment::new().merge(Toml::string(text)))
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let config: GatewayConfig = figment.extract().map_err(|e| {
            invalid(
                e.into_iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The trusted proxies, parsed.
    pub fn trusted_proxies(&self) -> Result<TrustedProxies, ConfigError> {
        TrustedProxies::parse(&self.trusted_proxies, self.proxy_hops)
            .map_err(|e| invalid(format!("trusted_proxies: {e}")))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.tls.validate().map_err(ConfigError::Invalid)?;
        self.mtls
            .validate(self.tls.enabled())
            .map_err(ConfigError::Invalid)?;
        if self.mtls.public_origin.is_some() {
            return Err(invalid(
                "mtls.public_origin: the gateway publishes no endpoints; leave it out",
            ));
        }
        self.trusted_proxies()?;
        if !(1..=10).contains(&self.proxy_hops) {
            return Err(invalid("proxy_hops: must be between 1 and 10"));
        }
        trustgate_listener::refuse_plain_http(
            self.listen,
            self.tls.enabled(),
            !self.trusted_proxies.is_empty(),
        )
        .map_err(ConfigError::Invalid)?;
        let c = &self.connections;
        if !(1..=1_000_000).contains(&c.max_connections)
            || !(1..=c.max_connections).contains(&c.max_connections_per_ip)
            || !(1..=300).contains(&c.header_read_timeout_secs)
            || !(1..=3600).contains(&c.idle_timeout_secs)
        {
            return Err(invalid(
                "connections: max_connections 1 to 1000000, max_connections_per_ip 1 to \
                 max_connections, header_read_timeout_secs 1 to 300, idle_timeout_secs 1 to 3600",
            ));
        }
        if let Some(dpop) = &self.dpop {
            if !matches!(dpop.origin.scheme(), "http" | "https")
                || dpop.origin.host().is_none()
                || dpop.origin.path() != "/"
                || dpop.origin.query().is_some()
            {
                return Err(invalid(format!(
                    "dpop.origin `{}` is not an http(s) origin (scheme, host and port only)",
                    dpop.origin
                )));
            }
            if !(5..=300).contains(&dpop.max_age_secs) {
                return Err(invalid("dpop.max_age_secs: must be between 5 and 300"));
            }
        }
        match url::Url::parse(&self.issuer) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => {
                return Err(invalid(format!(
                    "issuer `{}` is not an http(s) URL",
                    self.issuer
                )));
            }
        }
        if self.upstreams.is_empty() {
            return Err(invalid("at least one [[upstream]] is required"));
        }
        if self.pdp.decision_cache_ttl_secs > 300 {
            return Err(invalid(
                "pdp.decision_cache_ttl_secs: at most 300 (a cached decision is dropped at once \
                 when the store changes; this bounds it otherwise)",
            ));
        }
        if self.pdp.decision_cache_ttl_secs > 0 && self.pdp.decision_cache_max_entries == 0 {
            return Err(invalid(
                "pdp.decision_cache_max_entries: at least 1 (or turn the cache off with \
                 decision_cache_ttl_secs = 0)",
            ));
        }
        if let Some(limit) = self.rate_limit
            && (limit.per_second == 0 || limit.burst == Some(0))
        {
            return Err(invalid(
                "rate_limit: per_second and burst must be at least 1",
            ));
        }
        if let Some(keys) = self.api_keys
            && keys.introspection_ttl_secs > trustgate_pep::introspection::MAX_TTL.as_secs()
        {
            return Err(invalid(format!(
                "api_keys.introspection_ttl_secs: at most {} (a revoked key must be refused \
                 soon)",
                trustgate_pep::introspection::MAX_TTL.as_secs()
            )));
        }
        for header in &self.strip_headers {
            let name = header.strip_suffix('*').unwrap_or(header);
            if name.is_empty() || http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(invalid(format!(
                    "strip_headers: `{header}` is not a header name (or a prefix ending in `*`)"
                )));
            }
        }
        for (i, u) in self.upstreams.iter().enumerate() {
            let at = format!("upstream[{i}] `{}`", u.name);
            match (u.url.scheme(), &u.tls) {
                ("https", Some(tls)) => tls.validate(&format!("{at}: tls")).map_err(invalid)?,
                ("https", None) => {}
                ("http", None) => {}
                ("http", Some(_)) => {
                    return Err(invalid(format!(
                        "{at}: tls: only with an https:// url (`{}`)",
                        u.url
                    )));
                }
                _ => {
                    return Err(invalid(format!(
                        "{at}: url `{}`: an http:// or https:// URL",
                        u.url
                    )));
                }
            }
            if u.url.host().is_none() || u.url.query().is_some() || u.url.fragment().is_some() {
                return Err(invalid(format!(
                    "{at}: url `{}` needs a host and no query or fragment",
                    u.url
                )));
            }
            if u.audience.is_empty() {
                return Err(invalid(format!("{at}: audience is empty")));
            }
            if u.connect_timeout_ms == 0 || u.request_timeout_ms == 0 {
                return Err(invalid(format!("{at}: timeouts must be at least 1 ms")));
            }
            if let Some(h) = &u.health
                && (!h.path.starts_with('/') || h.interval_ms == 0)
            {
                return Err(invalid(format!(
                    "{at}: health: path must start with `/` and interval_ms be at least 1 (got `{}`, {})",
                    h.path, h.interval_ms
                )));
            }
            for r in &u.routes {
                Method::from_bytes(r.method.as_bytes()).map_err(|_| {
                    invalid(format!(
                        "{at}: route {}: method `{}` is not a method",
                        r.path, r.method
                    ))
                })?;
            }
        }
        Ok(())
    }

    /// The pep rules of every upstream, each with the index of its upstream.
    pub fn rules(&self) -> Result<Vec<(Rule, usize)>, ConfigError> {
        let mut out = Vec::new();
        for (i, u) in self.upstreams.iter().enumerate() {
            for r in &u.routes {
                let method = Method::from_bytes(r.method.as_bytes()).map_err(|_| {
                    invalid(format!(
                        "route {}: method `{}` is not a method",
                        r.path, r.method
                    ))
                })?;
                let rule = if r.public {
                    Rule::public(method, &r.path)
                } else {
                    let mut rule =
                        Rule::new(method, &r.path, &r.action, &r.resource).scopes(r.scopes.clone());
                    if let Some(s) = &r.step_up {
                        rule = rule.step_up(StepUp {
                            max_age: s.max_age,
                            amr: s.amr.clone(),
                            acr_values: s.acr_values.clone(),
                        });
                    }
                    rule
                };
                out.push((rule, i));
            }
        }
        Ok(out)
    }
}

impl RateLimitConfig {
    /// The burst in effect.
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.per_second)
    }
}

impl UpstreamConfig {
    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// The response-head timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// Reads a secret named by a file or an environment variable (exactly one of them).
pub(crate) fn read_secret(
    what: &str,
    file: Option<&Path>,
    env: Option<&str>,
) -> Result<Secret, ConfigError> {
    let value = match (file, env) {
        (Some(path), None) => std::fs::read_to_string(path)
            .map_err(|e| invalid(format!("{what}: cannot read `{}`: {e}", path.display())))?,
        (None, Some(var)) => std::env::var(var)
            .map_err(|_| invalid(format!("{what}: environment variable `{var}` is not set")))?,
        _ => {
            return Err(invalid(format!(
                "{what}: give exactly one of a file (`*_file`) or an environment variable (`*_env`); \
                 secrets are never written inline"
            )));
        }
    };
    let value = value.trim_end();
    if value.is_empty() {
        return Err(invalid(format!("{what}: the secret is empty")));
    }
    Ok(Secret::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
listen = "127.0.0.1:0"
issuer = "http://127.0.0.1:1"
audience = "https://gw"
[client]
id = "tgc_gw"
secret_env = "GW_SECRET"
[pdp]
url = "http://127.0.0.1:1/"
store_id = "s"
api_key_env = "GW_PDP"
[[upstream]]
name = "app"
url = "http://127.0.0.1:2"
audience = "https://app"
[[upstream.route]]
method = "GET"
path = "/things/{id}"
action = "viewer"
resource = "thing:{id}"
"#;

    #[test]
    fn a_minimal_file_gets_the_documented_defaults() {
        let c = GatewayConfig::from_toml(MINIMAL).expect("valid");
        assert_eq!(c.realm, "trustgate-gateway");
        assert_eq!(c.upstreams[0].connect_timeout(), Duration::from_secs(1));
        assert_eq!(c.upstreams[0].request_timeout(), Duration::from_secs(30));
        assert!(c.strip_headers.iter().any(|h| h == "x-trustgate-*"));
        assert_eq!(c.rules().expect("rules").len(), 1);
        assert_eq!(c.api_keys, None, "API keys only when configured");
        let with_keys = MINIMAL.replace("[client]", "[api_keys]\n[client]");
        let c = GatewayConfig::from_toml(&with_keys).expect("valid");
        assert_eq!(
            c.api_keys,
            Some(ApiKeysConfig {
                introspection_ttl_secs: 5
            })
        );
    }

    #[test]
    fn bad_values_are_named() {
        let bad = |from: &str, to: &str, expect: &str| {
            let text = MINIMAL.replace(from, to);
            let e = GatewayConfig::from_toml(&text).expect_err(to).to_string();
            assert!(e.contains(expect), "{to}: {e}");
        };
        bad("127.0.0.1:0", "nowhere", "listen");
        bad(
            "http://127.0.0.1:2",
            "ftp://127.0.0.1:2",
            "an http:// or https:// URL",
        );
        bad(
            "audience = \"https://app\"",
            "audience = \"https://app\"\ntls = { ca_files = [\"ca.pem\"] }",
            "only with an https:// url",
        );
        bad(
            "http://127.0.0.1:2\"",
            "https://127.0.0.1:2\"\ntls = { cert_file = \"c.pem\" }",
            "cert_file and key_file go together",
        );
        // A mutual-TLS listener serves the [tls] certificate.
        bad(
            "resource = \"thing:{id}\"",
            "resource = \"thing:{id}\"\n[mtls]\nlisten = \"127.0.0.1:0\"\nca_files = [\"ca.pem\"]",
            "mtls.listen",
        );
        bad("method = \"GET\"", "method = \"G T\"", "method `G T`");
        bad(
            "store_id = \"s\"",
            "store_id = \"s\"\nsecret = \"inline\"",
            "secret",
        );
        bad(
            "listen = ",
            "strip_headers = [\"bad header\"]\nlisten = ",
            "bad header",
        );
        bad(
            "[[upstream]]",
            "[rate_limit]\nper_second = 0\n[[upstream]]",
            "rate_limit",
        );
        bad(
            "[client]",
            "[api_keys]\nintrospection_ttl_secs = 31\n[client]",
            "api_keys.introspection_ttl_secs",
        );
        bad("[client]", "[api_keys]\nttl = 5\n[client]", "ttl");
    }

    #[test]
    fn secrets_come_from_exactly_one_place() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("s");
        std::fs::write(&path, "s3cret\n").expect("write");
        assert_eq!(
            read_secret("client", Some(&path), None)
                .expect("file")
                .expose(),
            "s3cret"
        );
        let e = read_secret("client", None, None).expect_err("none");
        assert!(e.to_string().contains("never written inline"), "{e}");
        let e = read_secret("client", Some(&path), Some("X")).expect_err("both");
        assert!(e.to_string().contains("exactly one"), "{e}");
        let e = read_secret("client", None, Some("TRUSTGATE_GATEWAY_TEST_UNSET_VAR"))
            .expect_err("unset");
        assert!(e.to_string().contains("is not set"), "{e}");
    }
}
