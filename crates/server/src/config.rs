//! Configuration: defaults < `--config FILE` (TOML) < `TRUSTGATE_*` environment < flags.
//!
//! [`Config::load`] merges the layers with figment, so an invalid value is reported with the
//! key it belongs to and the layer it came from ("invalid type ... for key `http.body_limit_bytes`
//! in `TRUSTGATE_HTTP__BODY_LIMIT_BYTES` environment variable"). The binary exits with code 2 on
//! any [`ConfigError`]. Nested keys are spelled with `__` in the environment
//! (`TRUSTGATE_HTTP__REQUEST_TIMEOUT_SECS`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use trustgate_core::Secret;
use trustgate_core::net::TrustedProxies;
pub use trustgate_listener::tls::TlsConfig;

/// How log lines are written (to standard error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, coloured only when standard error is a terminal and `NO_COLOR` is not
    /// set: a redirected log file gets no escape codes.
    #[default]
    Auto,
    /// Human-readable and always coloured (for a pager that shows colours, say).
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(LogFormat::Auto),
            "pretty" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "log format `{other}`: expected auto, pretty or json"
            )),
        }
    }
}

/// `[telemetry]`: OpenTelemetry traces of every request (off unless an endpoint is set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP collector's base URL (`http://127.0.0.1:4318`); traces are posted to
    /// `{otlp_endpoint}/v1/traces` as JSON. Unset: no traces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the traces.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "trustgate".into(),
        }
    }
}

impl TelemetryConfig {
    /// Refuses an endpoint that is not an http(s) URL without query or fragment, and an empty
    /// service name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(endpoint) = &self.otlp_endpoint {
            let ok = url::Url::parse(endpoint).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.query().is_none()
                    && u.fragment().is_none()
            });
            if !ok {
                return Err(ConfigError::Invalid(format!(
                    "telemetry.otlp_endpoint: `{endpoint}` is not an http(s) URL such as \
                     http://127.0.0.1:4318"
                )));
            }
        }
        if self.service_name.trim().is_empty() || self.service_name.len() > 128 {
            return Err(ConfigError::Invalid(
                "telemetry.service_name: 1 to 128 characters".into(),
            ));
        }
        Ok(())
    }
}

/// The effective configuration of a server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address of the HTTP listener.
    pub listen: SocketAddr,
    /// Directory for the SQLite database, the bootstrap token and other local state.
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://...`; defaults to `sqlite://<data_dir>/trustgate.db`.
    pub database_url: Option<String>,
    /// Log line format.
    pub log_format: LogFormat,
    /// Log filter in `tracing` env-filter syntax.
    pub log_level: String,
    /// The bootstrap administrator's token. When set it is registered (idempotently) instead of
    /// generating one; meant for automation and PostgreSQL deployments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap_token: Option<Secret>,
    /// The key that seals secrets at rest (TOTP secrets, webhook signing secrets) and
    /// pending-login tokens: base64 of 32 random bytes (`openssl rand -base64 32`). Unset on
    /// SQLite: read from or created in `<data_dir>/secrets.key`. Required on PostgreSQL, the same on every replica.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets_key: Option<Secret>,
    /// HTTP limits.
    pub http: HttpConfig,
    /// TLS on the listener.
    pub tls: TlsConfig,
    /// A second listener that requires client certificates (mutual TLS).
    pub mtls: trustgate_listener::mtls::MtlsConfig,
    /// Database pool.
    pub database: DatabaseConfig,
    /// Relationship PDP limits.
    pub authz: AuthzConfig,
    /// Server-rendered pages (login, account) and their cookies.
    pub pages: PagesConfig,
    /// The pages' product name, logo and colours.
    pub branding: crate::pages::brand::BrandingConfig,
    /// OpenTelemetry traces.
    pub telemetry: TelemetryConfig,
    /// OAuth 2.0 / OpenID Connect: signing keys and token lifetimes.
    pub oauth: OAuthConfig,
    /// The audit trail: the streamed writer's queue and the retention of streamed events.
    pub audit: AuditConfig,
    /// API keys and personal access tokens.
    pub api_keys: ApiKeysConfig,
    /// Webhook delivery (and the back-channel logout queue): URL policy, retries, dead letters.
    pub webhooks: trustgate_webhooks::WebhooksConfig,
    /// The AuthZEN API: per-store action names.
    pub authzen: AuthzenConfig,
}

/// The AuthZEN API (`[authzen]`).
///
/// An AuthZEN action is evaluated as the relation of the same name on the resource's type,
/// unless the store maps it to another relation:
///
/// ```toml
/// [authzen.stores.01JC0000000000000000000000.actions]
/// GET = "can_read"
/// POST = "can_create"
/// ```
///
/// Action names are case-sensitive; set maps in the file (environment variable names arrive
/// lowercased). An action search reports a relation by the action names mapped to it, or by its
/// own name when none is.
///
/// Directory attributes are off unless enabled: the directory is trustgate's, not a store's,
/// and whoever writes a store's model could otherwise write conditions that read any
/// trustgate user's email or custom attributes. Where they are on (`directory = true` for
/// every store, or per store), a subject or resource of the store's user type (`user_type`,
/// default `user`) whose id is a trustgate user's id gets that user's directory attributes.
/// Only a subject of that type can carry `X-Subject-Token` (see `trustgate_pdp::attributes`),
/// whatever `directory` says: a token only tells what its holder already has.
///
/// ```toml
/// [authzen.stores.01JC0000000000000000000000]
/// directory = true
/// user_type = "employee"
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthzenConfig {
    /// Whether trustgate users' directory attributes reach the conditions of every store
    /// (default false; a store's own `directory` wins).
    pub directory: bool,
    /// Per store (by id): its settings.
    pub stores: std::collections::BTreeMap<String, AuthzenStoreConfig>,
}

/// The AuthZEN settings of one store (`[authzen.stores.<store id>]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthzenStoreConfig {
    /// Action name → relation of the resource's type (at most 1000 entries).
    pub actions: std::collections::BTreeMap<String, String>,
    /// The type whose ids are trustgate users' ids ([`DEFAULT_USER_TYPE`] when unset).
    pub user_type: Option<String>,
    /// Whether trustgate users' directory attributes reach this store's conditions (unset:
    /// `authzen.directory`).
    pub directory: Option<bool>,
}

/// The type of a store's subjects and resources that are trustgate users, unless configured.
pub const DEFAULT_USER_TYPE: &str = "user";

/// Most entries of one store's action map.
const MAX_ACTIONS_PER_STORE: usize = 1000;

impl AuthzenConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (store, settings) in &self.stores {
            if !trustgate_core::id::is_ulid(store) {
                return Err(ConfigError::Invalid(format!(
                    "authzen.stores: `{store}` is not a store id"
                )));
            }
            if settings.actions.len() > MAX_ACTIONS_PER_STORE {
                return Err(ConfigError::Invalid(format!(
                    "authzen.stores.{store}.actions: at most {MAX_ACTIONS_PER_STORE} entries"
                )));
            }
            if let Some(user_type) = &settings.user_type {
                let valid = (1..=254).contains(&user_type.len())
                    && !user_type
                        .chars()
                        .any(|c| matches!(c, ':' | '#' | '@') || c.is_whitespace());
                if !valid {
                    return Err(ConfigError::Invalid(format!(
                        "authzen.stores.{store}.user_type: `{user_type}` is not a type name (1 to \
                         254 bytes without `:`, `#`, `@` or whitespace)"
                    )));
                }
            }
            for (action, relation) in &settings.actions {
                let valid_relation = (1..=50).contains(&relation.len())
                    && !relation
                        .chars()
                        .any(|c| matches!(c, ':' | '#' | '@') || c.is_whitespace());
                if action.is_empty() || action.len() > 256 || !valid_relation {
                    return Err(ConfigError::Invalid(format!(
                        "authzen.stores.{store}.actions: `{action}` = `{relation}` is not an action \
                         name (1 to 256 bytes) mapped to a relation name (1 to 50 bytes without \
                         `:`, `#`, `@` or whitespace)"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The settings of `store_id`, if any are configured (store ids compare without case).
    fn store(&self, store_id: &str) -> Option<&AuthzenStoreConfig> {
        self.stores
            .iter()
            .find(|(id, _)| id.eq_ignore_ascii_case(store_id))
            .map(|(_, settings)| settings)
    }

    /// The action map of `store_id`, if one is configured.
    pub fn actions(&self, store_id: &str) -> Option<&std::collections::BTreeMap<String, String>> {
        self.store(store_id).map(|settings| &settings.actions)
    }

    /// Whether trustgate users' directory attributes reach the conditions of `store_id`.
    pub fn directory(&self, store_id: &str) -> bool {
        self.store(store_id)
            .and_then(|settings| settings.directory)
            .unwrap_or(self.directory)
    }

    /// The type whose ids are trustgate users' ids in `store_id`.
    pub fn user_type(&self, store_id: &str) -> &str {
        self.store(store_id)
            .and_then(|settings| settings.user_type.as_deref())
            .unwrap_or(DEFAULT_USER_TYPE)
    }

    /// The relation that evaluates `action` in `store_id`.
    pub fn relation<'a>(&'a self, store_id: &str, action: &'a str) -> &'a str {
        self.actions(store_id)
            .and_then(|map| map.get(action))
            .map_or(action, String::as_str)
    }

    /// The action names `relation` answers for in `store_id`: those mapped to it; else its own
    /// name, unless that name is an action mapped to another relation.
    pub fn action_names<'a>(&'a self, store_id: &str, relation: &'a str) -> Vec<&'a str> {
        let Some(map) = self.actions(store_id) else {
            return vec![relation];
        };
        let mapped: Vec<&str> = map
            .iter()
            .filter(|(_, r)| *r == relation)
            .map(|(a, _)| a.as_str())
            .collect();
        if !mapped.is_empty() {
            mapped
        } else if map.contains_key(relation) {
            Vec::new()
        } else {
            vec![relation]
        }
    }
}

/// API keys (`[api_keys]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeysConfig {
    /// The environment label in issued keys, `tg_<environment>_…` (1 to 10 of `a-z0-9`), so a
    /// leaked key says which deployment it opens.
    pub environment: String,
    /// How often each replica reads the credential epoch, in milliseconds (50 to 5000): a key
    /// revoked on one replica stops on the others within this.
    pub revocation_poll_ms: u64,
}

impl Default for ApiKeysConfig {
    fn default() -> Self {
        Self {
            environment: "live".to_owned(),
            revocation_poll_ms: 250,
        }
    }
}

impl ApiKeysConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !trustgate_authn::api_keys::format::valid_env(&self.environment) {
            return Err(ConfigError::Invalid(
                "api_keys.environment: must be 1 to 10 characters of a-z and 0-9".into(),
            ));
        }
        if !(50..=5000).contains(&self.revocation_poll_ms) {
            return Err(ConfigError::Invalid(
                "api_keys.revocation_poll_ms: must be between 50 and 5000".into(),
            ));
        }
        Ok(())
    }
}

/// The audit trail (`[audit]`): two hash chains with signed anchors (see ARCHITECTURE.md,
/// Audit).
///
/// Retention: the recorded chain (credential and administrative events) is kept for ever; the
/// streamed chain (authorization decisions, token issuances, back-channel deliveries, access
/// denials: one or more per request on hot paths) is deleted by prefix once older than
/// `streamed_retention_days`, under a signed truncation anchor, so verification still passes.
/// Anchors: a signed checkpoint of each chain's head every `anchor_every_events` events or
/// `anchor_every_secs` seconds, whichever comes first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Days streamed events are kept (1 to 3650).
    pub streamed_retention_days: u32,
    /// Streamed events waiting to be written (1000 to 1000000); beyond it they are dropped and
    /// counted in `audit_events_dropped_total`.
    pub queue_capacity: usize,
    /// A signed anchor after this many events of a chain (100 to 10000000).
    pub anchor_every_events: u32,
    /// A signed anchor after this many seconds if a chain has grown (1 to 86400).
    pub anchor_every_secs: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            streamed_retention_days: 30,
            queue_capacity: 10_000,
            anchor_every_events: 10_000,
            anchor_every_secs: 60,
        }
    }
}

impl AuditConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=3650).contains(&self.streamed_retention_days) {
            return Err(ConfigError::Invalid(
                "audit.streamed_retention_days: must be between 1 and 3650".into(),
            ));
        }
        if !(1000..=1_000_000).contains(&self.queue_capacity) {
            return Err(ConfigError::Invalid(
                "audit.queue_capacity: must be between 1000 and 1000000".into(),
            ));
        }
        if !(100..=10_000_000).contains(&self.anchor_every_events) {
            return Err(ConfigError::Invalid(
                "audit.anchor_every_events: must be between 100 and 10000000".into(),
            ));
        }
        if !(1..=86_400).contains(&self.anchor_every_secs) {
            return Err(ConfigError::Invalid(
                "audit.anchor_every_secs: must be between 1 and 86400".into(),
            ));
        }
        Ok(())
    }
}

/// HTTP limits and timeouts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// A request still running after this many seconds is answered 503 `request_timeout`.
    pub request_timeout_secs: u64,
    /// On SIGTERM/SIGINT, in-flight requests get this long to finish.
    pub shutdown_grace_secs: u64,
    /// A request header must be complete this many seconds after the connection was accepted,
    /// or after the first byte of a later request on a kept-alive connection (1 to 300); else
    /// the connection is closed. Bounds slow-header ("slowloris") clients.
    pub header_read_timeout_secs: u64,
    /// A kept-alive connection with no request in flight is closed after this many seconds
    /// without a new request (1 to 3600).
    pub idle_timeout_secs: u64,
    /// Most open client connections (1 to 1000000). Clamped at start-up below the process's
    /// file-descriptor limit, leaving room for the database pool and files. A connection beyond
    /// it is answered 503 and closed at once.
    pub max_connections: usize,
    /// Most open connections from one client address, an IPv6 /64 counting as one address
    /// (1 to `max_connections`). Behind a reverse proxy every connection comes from the proxy:
    /// raise it to `max_connections` there.
    pub max_connections_per_ip: usize,
    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` / `X-Forwarded-Proto` headers are
    /// believed for the client's address (audit, throttling) and scheme: addresses or prefixes
    /// (`["10.0.0.0/8", "192.0.2.7"]`). Empty (default): the headers are ignored and the client
    /// is the connection's peer. Declaring one also allows a plain-HTTP listener on a
    /// non-loopback address (the proxy terminates TLS).
    pub trusted_proxies: Vec<String>,
    /// How many trusted proxies stand in a row in front of the server (1 to 10): the client
    /// is found at most this many hops from the right of the forwarding headers.
    pub proxy_hops: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            shutdown_grace_secs: 30,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 75,
            max_connections: 4096,
            max_connections_per_ip: 128,
            trusted_proxies: Vec::new(),
            proxy_hops: 1,
        }
    }
}

impl HttpConfig {
    /// Refuses connection limits and timeouts outside the documented bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.body_limit_bytes == 0 {
            return Err(ConfigError::Invalid(
                "http.body_limit_bytes: must be greater than 0".into(),
            ));
        }
        if self.request_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "http.request_timeout_secs: must be greater than 0".into(),
            ));
        }
        if !(1..=300).contains(&self.header_read_timeout_secs) {
            return Err(ConfigError::Invalid(
                "http.header_read_timeout_secs: must be between 1 and 300".into(),
            ));
        }
        if !(1..=3600).contains(&self.idle_timeout_secs) {
            return Err(ConfigError::Invalid(
                "http.idle_timeout_secs: must be between 1 and 3600".into(),
            ));
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err(ConfigError::Invalid(
                "http.max_connections: must be between 1 and 1000000".into(),
            ));
        }
        if !(1..=self.max_connections).contains(&self.max_connections_per_ip) {
            return Err(ConfigError::Invalid(format!(
                "http.max_connections_per_ip: must be between 1 and http.max_connections ({})",
                self.max_connections
            )));
        }
        self.trusted_proxies()?;
        if !(1..=10).contains(&self.proxy_hops) {
            return Err(ConfigError::Invalid(
                "http.proxy_hops: must be between 1 and 10".into(),
            ));
        }
        Ok(())
    }

    /// The listener's settings, before clamping to the descriptor limit.
    pub fn listener_settings(&self) -> trustgate_listener::ListenerSettings {
        trustgate_listener::ListenerSettings {
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_secs),
            idle_timeout: std::time::Duration::from_secs(self.idle_timeout_secs),
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
        }
    }

    /// The trusted proxies, parsed.
    pub fn trusted_proxies(&self) -> Result<TrustedProxies, ConfigError> {
        TrustedProxies::parse(&self.trusted_proxies, self.proxy_hops)
            .map_err(|e| ConfigError::Invalid(format!("http.trusted_proxies: {e}")))
    }
}

/// Database connection pool and durability.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Upper bound of pooled connections.
    pub max_connections: u32,
    /// How long a request waits for a connection before the database counts as unavailable.
    pub acquire_timeout_secs: u64,
    /// SQLite only: `full` (default) syncs every commit to the disk before the answer, so an
    /// acknowledged write survives an OS crash or power loss; `normal` syncs at checkpoints
    /// only (faster writes; the last acknowledged writes before an OS crash may be lost, a
    /// process crash loses nothing). Logged at start-up when not `full`.
    pub sqlite_synchronous: SqliteSynchronous,
}

/// `database.sqlite_synchronous`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    /// Every commit synced before it is acknowledged.
    #[default]
    Full,
    /// Synced at checkpoints; an OS crash may lose the last acknowledged writes.
    Normal,
}

impl From<SqliteSynchronous> for trustgate_store::Synchronous {
    fn from(value: SqliteSynchronous) -> Self {
        match value {
            SqliteSynchronous::Full => trustgate_store::Synchronous::Full,
            SqliteSynchronous::Normal => trustgate_store::Synchronous::Normal,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout_secs: 3,
            sqlite_synchronous: SqliteSynchronous::Full,
        }
    }
}

/// Relationship PDP limits (OpenFGA's defaults).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthzConfig {
    /// Most tuples (writes plus deletes) in one Write request.
    pub max_tuples_per_write: usize,
    /// Most tuples in one `POST /stores/{id}/import` (written in transactions of 10,000, so
    /// other writers never wait for the whole import).
    pub max_tuples_per_import: usize,
    /// The largest import request body, in bytes: imports are bigger than
    /// `http.body_limit_bytes` allows every other request.
    pub import_body_limit_bytes: usize,
    /// Most results one ListObjects call returns; more are reported, never silently dropped.
    pub list_objects_max_results: usize,
    /// Most results one ListUsers call returns.
    pub list_users_max_results: usize,
    /// Most checks in one BatchCheck request.
    pub max_checks_per_batch: usize,
}

impl Default for AuthzConfig {
    fn default() -> Self {
        Self {
            max_tuples_per_write: 100,
            max_tuples_per_import: 100_000,
            import_body_limit_bytes: 64 * 1024 * 1024,
            list_objects_max_results: 1000,
            list_users_max_results: 1000,
            max_checks_per_batch: 50,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./trustgate-data"),
            database_url: None,
            log_format: LogFormat::Auto,
            log_level: "info".into(),
            bootstrap_token: None,
            secrets_key: None,
            http: HttpConfig::default(),
            tls: TlsConfig::default(),
            mtls: trustgate_listener::mtls::MtlsConfig::default(),
            database: DatabaseConfig::default(),
            authz: AuthzConfig::default(),
            pages: PagesConfig::default(),
            branding: crate::pages::brand::BrandingConfig::default(),
            telemetry: TelemetryConfig::default(),
            oauth: OAuthConfig::default(),
            audit: AuditConfig::default(),
            api_keys: ApiKeysConfig::default(),
            webhooks: trustgate_webhooks::WebhooksConfig::default(),
            authzen: AuthzenConfig::default(),
        }
    }
}

/// OAuth 2.0 / OpenID Connect settings (`[oauth]`).
///
/// Signing keys (one per algorithm: EdDSA, ES256, RS256) rotate every `key_rotation_days`. A new
/// key is published in `/.well-known/jwks.json` `key_publish_ahead_secs` before it signs, so
/// verifiers that cache the JWKS (for at most that long) know it before they meet it; a retired
/// key stays published until every token it signed has expired (`max_token_lifetime_secs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthConfig {
    /// Days between automatic signing-key rotations (1 to 3650).
    pub key_rotation_days: u32,
    /// Seconds a new key is published before it signs (1 to 86400; keep it at least as long as
    /// verifiers cache the JWKS). The JWKS `Cache-Control` max-age is this, at most 300.
    pub key_publish_ahead_secs: u64,
    /// Longest lifetime of any token trustgate signs, in seconds: how long a retired key stays
    /// published (300 to 31536000).
    pub max_token_lifetime_secs: u64,
    /// The issuer identifier (`iss`, and the base of every endpoint URL in discovery): an
    /// `https` URL (`http` only for loopback), no query or fragment. Unset: `pages.public_origin`,
    /// else `http://` plus the bound listen address (`localhost` for a wildcard address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// How long a rotated refresh token is honoured once more, for clients that refresh
    /// concurrently (0 to 60 seconds; default 0: none). A client may set its own
    /// (`refresh_grace_secs` in its registration). A reuse outside it, or a second one within
    /// it, revokes the whole token family.
    pub refresh_grace_secs: u64,
    /// Initial polling interval of the device flow (1 to 60 seconds).
    pub device_poll_interval_secs: u64,
    /// ID token lifetime (60 to 86400 seconds).
    pub id_token_ttl_secs: u64,
    /// Longest lifetime of a token issued by token exchange (RFC 8693), 30 to 3600 seconds and
    /// at most `max_token_lifetime_secs` (default 300). An exchanged token also never outlives
    /// the token it was exchanged for, nor the client's access-token lifetime.
    pub token_exchange_ttl_secs: u64,
    /// Algorithm of access tokens: `ES256` (default), `EdDSA` or `RS256`.
    pub access_token_algorithm: String,
    /// Algorithm of ID tokens and logout tokens: `RS256` (default, as OIDC expects), `ES256` or
    /// `EdDSA`.
    pub id_token_algorithm: String,
    /// Clock skew forgiven on the `exp`, `nbf` and `iat` of clients' `private_key_jwt`
    /// assertions (0 to 300 seconds). trustgate's own tokens get none: it checks them with the
    /// clock that issued them.
    pub assertion_leeway_secs: u64,
    /// DPoP proofs (RFC 9449) at the token, PAR and userinfo endpoints.
    pub dpop: DpopConfig,
}

/// DPoP (`[oauth.dpop]`): sender-constrained tokens (RFC 9449). A token request with a `DPoP`
/// proof gets an access token bound to the proof's key (`token_type` `DPoP`, `cnf.jkt`); a
/// public client's refresh tokens are bound to it too. Each proof is spent once across every
/// replica (the database remembers its `jti` for `proof_max_age_secs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpopConfig {
    /// Proofs at the token and PAR endpoints must carry a nonce trustgate issued (RFC 9449 §8;
    /// the first request is answered `use_dpop_nonce` with one in `DPoP-Nonce`). Default on:
    /// a proof then cannot be prepared in advance by whoever briefly holds the client's key.
    pub require_nonce: bool,
    /// Seconds a nonce window lasts (60 to 3600); a nonce stands one to two windows. Nonces
    /// are sealed with `secrets_key`, so every replica accepts every other's.
    pub nonce_lifetime_secs: u64,
    /// How old a proof may be, in seconds (5 to 300).
    pub proof_max_age_secs: u64,
    /// How far in the future a proof's `iat` may be (clock skew), in seconds (0 to 60).
    pub proof_leeway_secs: u64,
}

impl Default for DpopConfig {
    fn default() -> Self {
        Self {
            require_nonce: true,
            nonce_lifetime_secs: 300,
            proof_max_age_secs: 60,
            proof_leeway_secs: 5,
        }
    }
}

impl DpopConfig {
    /// Refuses values outside the documented bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, value, bounds) in [
            ("nonce_lifetime_secs", self.nonce_lifetime_secs, 60..=3600),
            ("proof_max_age_secs", self.proof_max_age_secs, 5..=300),
            ("proof_leeway_secs", self.proof_leeway_secs, 0..=60),
        ] {
            if !bounds.contains(&value) {
                return Err(ConfigError::Invalid(format!(
                    "oauth.dpop.{name}: must be between {} and {}",
                    bounds.start(),
                    bounds.end()
                )));
            }
        }
        Ok(())
    }
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            key_rotation_days: 30,
            key_publish_ahead_secs: 600,
            max_token_lifetime_secs: 86_400,
            issuer: None,
            refresh_grace_secs: 0,
            device_poll_interval_secs: 5,
            id_token_ttl_secs: 3600,
            token_exchange_ttl_secs: 300,
            access_token_algorithm: "ES256".into(),
            id_token_algorithm: "RS256".into(),
            assertion_leeway_secs: 30,
            dpop: DpopConfig::default(),
        }
    }
}

impl OAuthConfig {
    /// Refuses values outside the documented bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=3650).contains(&self.key_rotation_days) {
            return Err(ConfigError::Invalid(
                "oauth.key_rotation_days: must be between 1 and 3650".into(),
            ));
        }
        if self.assertion_leeway_secs > 300 {
            return Err(ConfigError::Invalid(
                "oauth.assertion_leeway_secs: must be between 0 and 300".into(),
            ));
        }
        if !(1..=86_400).contains(&self.key_publish_ahead_secs) {
            return Err(ConfigError::Invalid(
                "oauth.key_publish_ahead_secs: must be between 1 and 86400".into(),
            ));
        }
        if u64::from(self.key_rotation_days) * 86_400 <= self.key_publish_ahead_secs {
            return Err(ConfigError::Invalid(
                "oauth.key_publish_ahead_secs: must be shorter than oauth.key_rotation_days".into(),
            ));
        }
        if !(300..=31_536_000).contains(&self.max_token_lifetime_secs) {
            return Err(ConfigError::Invalid(
                "oauth.max_token_lifetime_secs: must be between 300 and 31536000".into(),
            ));
        }
        if let Some(issuer) = &self.issuer
            && !is_issuer(issuer)
        {
            return Err(ConfigError::Invalid(format!(
                "oauth.issuer: `{issuer}` is not an issuer identifier; expected an https URL \
                 (http only for localhost or 127.0.0.1) without query or fragment"
            )));
        }
        if self.refresh_grace_secs > 60 {
            return Err(ConfigError::Invalid(
                "oauth.refresh_grace_secs: must be between 0 and 60".into(),
            ));
        }
        if !(1..=60).contains(&self.device_poll_interval_secs) {
            return Err(ConfigError::Invalid(
                "oauth.device_poll_interval_secs: must be between 1 and 60".into(),
            ));
        }
        if !(60..=86_400).contains(&self.id_token_ttl_secs)
            || self.id_token_ttl_secs > self.max_token_lifetime_secs
        {
            return Err(ConfigError::Invalid(
                "oauth.id_token_ttl_secs: must be between 60 and 86400 and at most \
                 oauth.max_token_lifetime_secs"
                    .into(),
            ));
        }
        if !(30..=3600).contains(&self.token_exchange_ttl_secs)
            || self.token_exchange_ttl_secs > self.max_token_lifetime_secs
        {
            return Err(ConfigError::Invalid(
                "oauth.token_exchange_ttl_secs: must be between 30 and 3600 and at most \
                 oauth.max_token_lifetime_secs"
                    .into(),
            ));
        }
        for (name, value) in [
            ("access_token_algorithm", &self.access_token_algorithm),
            ("id_token_algorithm", &self.id_token_algorithm),
        ] {
            if value.parse::<trustgate_tokens::Algorithm>().is_err() {
                return Err(ConfigError::Invalid(format!(
                    "oauth.{name}: `{value}` is not supported; use ES256, EdDSA or RS256"
                )));
            }
        }
        self.dpop.validate()
    }
}

/// Values given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    /// `--listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// `--data-dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--database-url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// `--log-format`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
    /// `--tls-cert` and `--tls-key`.
    #[serde(skip_serializing_if = "TlsOverrides::is_empty")]
    pub tls: TlsOverrides,
    /// `--mtls-listen`.
    #[serde(skip_serializing_if = "MtlsOverrides::is_empty")]
    pub mtls: MtlsOverrides,
}

/// `--mtls-listen` (merged into `[mtls]`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct MtlsOverrides {
    /// `--mtls-listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

impl MtlsOverrides {
    fn is_empty(&self) -> bool {
        self.listen.is_none()
    }
}

/// `--tls-cert` and `--tls-key` (merged into `[tls]`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TlsOverrides {
    /// `--tls-cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// `--tls-key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

impl TlsOverrides {
    fn is_empty(&self) -> bool {
        self.cert_file.is_none() && self.key_file.is_none()
    }
}

/// A configuration that cannot be used. The message names the key and where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value has the wrong type or an unknown key was given.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The `--config` file cannot be read.
    #[error("cannot read config file {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Top-level keys read from the environment (every field of [`Config`]; a test keeps the two
/// in step); other `TRUSTGATE_*` variables (the CLI's `TRUSTGATE_TOKEN`, test settings) belong
/// to other programs and are ignored here.
const ENV_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "database_url",
    "log_format",
    "log_level",
    "bootstrap_token",
    "secrets_key",
    "http",
    "tls",
    "mtls",
    "database",
    "authz",
    "pages",
    "branding",
    "telemetry",
    "oauth",
    "audit",
    "api_keys",
    "webhooks",
    "authzen",
];

impl Config {
    /// Merges defaults, the optional TOML file, the process environment and `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load_with_env(file, overrides, Env::prefixed("TRUSTGATE_"))
    }

    fn load_with_env(
        file: Option<&Path>,
        overrides: &Overrides,
        env: Env,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            // Read it ourselves: figment treats a missing file as empty, which would hide a typo.
            std::fs::File::open(path).map_err(|source| ConfigError::File {
                path: path.to_path_buf(),
                source,
            })?;
            figment = figment.merge(Toml::file_exact(path));
        }
        let env = env.split("__").filter(|key| {
            let key = key.as_str().to_ascii_lowercase();
            let top = key.split('.').next().unwrap_or_default();
            ENV_KEYS.contains(&top)
        });
        figment = figment.merge(env).merge(Serialized::defaults(overrides));
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// The database URL in effect (the SQLite file in the data directory by default).
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("trustgate.db").display()),
        }
    }

    /// [`effective_database_url`](Self::effective_database_url) without its password, for logs
    /// and output.
    pub fn shown_database_url(&self) -> String {
        trustgate_store::redact_url(&self.effective_database_url())
    }

    /// Refuses values outside the documented bounds ([`load`](Self::load) calls it; so does
    /// [`Server::start`](crate::Server::start) for configurations built in code).
    pub fn validate(&self) -> Result<(), ConfigError> {
        trustgate_store::backend_of(&self.effective_database_url())
            .map_err(|e| ConfigError::Invalid(format!("database_url: {e}")))?;
        self.http.validate()?;
        self.tls.validate().map_err(ConfigError::Invalid)?;
        self.mtls
            .validate(self.tls.enabled())
            .map_err(ConfigError::Invalid)?;
        trustgate_listener::refuse_plain_http(
            self.listen,
            self.tls.enabled(),
            !self.http.trusted_proxies.is_empty(),
        )
        .map_err(ConfigError::Invalid)?;
        if self.authz.max_tuples_per_write == 0 {
            return Err(ConfigError::Invalid(
                "authz.max_tuples_per_write: must be greater than 0".into(),
            ));
        }
        if self.authz.max_tuples_per_import == 0 || self.authz.max_tuples_per_import > 10_000_000 {
            return Err(ConfigError::Invalid(
                "authz.max_tuples_per_import: must be between 1 and 10000000".into(),
            ));
        }
        if self.authz.import_body_limit_bytes < 1024
            || self.authz.import_body_limit_bytes > 1024 * 1024 * 1024
        {
            return Err(ConfigError::Invalid(
                "authz.import_body_limit_bytes: must be between 1024 and 1073741824".into(),
            ));
        }
        self.pages.validate(self.listen)?;
        self.branding.validate().map_err(ConfigError::Invalid)?;
        self.telemetry.validate()?;
        self.oauth.validate()?;
        self.audit.validate()?;
        self.api_keys.validate()?;
        self.webhooks.validate().map_err(ConfigError::Invalid)?;
        self.authzen.validate()?;
        if let Some(token) = &self.bootstrap_token
            && token.expose().len() < 32
        {
            return Err(ConfigError::Invalid(
                "bootstrap_token: must be at least 32 characters (use a random value)".into(),
            ));
        }
        if let Some(key) = &self.secrets_key
            && trustgate_core::SealingKey::from_base64(key.expose()).is_none()
        {
            return Err(ConfigError::Invalid(
                "secrets_key: must be base64 of exactly 32 random bytes (e.g. `openssl rand -base64 32`)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The configuration as TOML, secrets and database passwords redacted.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database_url = Some(self.shown_database_url());
        // `Secret` serializes as "[redacted]" on its own.
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// Server-rendered pages and their cookies (`[pages]`).
///
/// By default the session cookie is `__Host-trustgate_session` with `Secure; HttpOnly;
/// SameSite=Lax; Path=/`. Browsers treat `http://127.0.0.1` and `http://localhost` as secure
/// contexts, so the strict cookie works for local development too. Only for clients that do not
/// (older browsers, some HTTP tools) `insecure_dev_cookies = true` switches to cookies without
/// `Secure` and without the `__Host-` prefix (`trustgate_session`); it is refused unless the
/// listener is bound to a loopback address, so it can never reach a network.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PagesConfig {
    /// Non-`Secure` cookies without the `__Host-` prefix. Development on loopback only.
    pub insecure_dev_cookies: bool,
    /// The origin browsers use to reach trustgate (`https://auth.example.com`), used by the
    /// CSRF origin check. When unset, a request's `Origin` must name the request's `Host` with
    /// `https` (or `http` for loopback hosts). Set it when a proxy rewrites `Host`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_origin: Option<String>,
}

impl PagesConfig {
    /// Refuses dev cookies on a non-loopback listener and malformed origins.
    pub fn validate(&self, listen: SocketAddr) -> Result<(), ConfigError> {
        if self.insecure_dev_cookies && !listen.ip().is_loopback() {
            return Err(ConfigError::Invalid(format!(
                "pages.insecure_dev_cookies: only allowed when listening on a loopback address \
                 (127.0.0.1 or [::1]), but listen is {listen}; remove the setting (browsers accept \
                 the Secure cookie on http://127.0.0.1) or serve over HTTPS"
            )));
        }
        if let Some(origin) = &self.public_origin
            && !is_plain_origin(origin)
        {
            return Err(ConfigError::Invalid(format!(
                "pages.public_origin: `{origin}` is not an origin; expected scheme://host[:port] \
                 with http or https and no path, e.g. https://auth.example.com"
            )));
        }
        Ok(())
    }
}

/// An OAuth issuer identifier (RFC 8414 §2): https, or http on a loopback host; no query, no
/// fragment.
fn is_issuer(issuer: &str) -> bool {
    let Ok(url) = url::Url::parse(issuer) else {
        return false;
    };
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    (url.scheme() == "https" || (url.scheme() == "http" && loopback))
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
}

/// `http(s)://host[:port]`, nothing more.
fn is_plain_origin(origin: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    (scheme == "https" || scheme == "http")
        && !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}

/// One line per error: figment's message already names the key and its source.
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::result_large_err)] // the closure's type is figment's
    fn load(
        toml: Option<&str>,
        env: &[(&str, &str)],
        overrides: Overrides,
    ) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = toml.map(|text| {
            let path = dir.path().join("trustgate.toml");
            std::fs::write(&path, text).expect("write config");
            path
        });
        let mut result = None;
        // Jail serialises tests that touch the process environment and restores it afterwards.
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            for (k, v) in env {
                jail.set_env(k, v);
            }
            result = Some(Config::load_with_env(
                file.as_deref(),
                &overrides,
                Env::prefixed("TRUSTGATE_"),
            ));
            Ok(())
        });
        result.expect("jail ran")
    }

    #[test]
    fn defaults_are_the_embedded_demo_setup() {
        let c = load(None, &[], Overrides::default()).expect("defaults");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./trustgate-data"));
        assert_eq!(
            c.effective_database_url(),
            "sqlite://./trustgate-data/trustgate.db"
        );
        assert_eq!(c.database.sqlite_synchronous, SqliteSynchronous::Full);
        let c = load(
            Some("[database]\nsqlite_synchronous = \"normal\"\n"),
            &[],
            Overrides::default(),
        )
        .expect("normal is allowed");
        assert_eq!(c.database.sqlite_synchronous, SqliteSynchronous::Normal);
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let file = "listen = \"127.0.0.1:1001\"\nlog_level = \"debug\"\n[http]\nrequest_timeout_secs = 7\n";
        let c = load(Some(file), &[], Overrides::default()).expect("file");
        assert_eq!(c.listen.port(), 1001);
        assert_eq!(c.http.request_timeout_secs, 7);

        let env = [
            ("TRUSTGATE_LISTEN", "127.0.0.1:1002"),
            ("TRUSTGATE_HTTP__REQUEST_TIMEOUT_SECS", "9"),
        ];
        let c = load(Some(file), &env, Overrides::default()).expect("env");
        assert_eq!(c.listen.port(), 1002);
        assert_eq!(c.http.request_timeout_secs, 9);
        assert_eq!(c.log_level, "debug", "untouched keys keep the file's value");

        let flags = Overrides {
            listen: Some("127.0.0.1:1003".into()),
            ..Overrides::default()
        };
        let c = load(Some(file), &env, flags).expect("flags");
        assert_eq!(c.listen.port(), 1003);
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = load(
            None,
            &[("TRUSTGATE_HTTP__BODY_LIMIT_BYTES", "lots")],
            Overrides::default(),
        )
        .expect_err("not a number");
        assert!(
            err.to_string()
                .to_lowercase()
                .contains("http.body_limit_bytes"),
            "{err}"
        );

        let err = load(
            None,
            &[("TRUSTGATE_DATABASE__SQLITE_SYNCHRONOUS", "off")],
            Overrides::default(),
        )
        .expect_err("only full or normal");
        assert!(
            err.to_string()
                .to_lowercase()
                .contains("database.sqlite_synchronous"),
            "{err}"
        );

        let err = load(Some("listen = \"nowhere\"\n"), &[], Overrides::default())
            .expect_err("not an address");
        assert!(err.to_string().contains("listen"), "{err}");

        let err = load(Some("lisen = \"127.0.0.1:1\"\n"), &[], Overrides::default())
            .expect_err("unknown key");
        assert!(err.to_string().contains("lisen"), "{err}");

        let flags = Overrides {
            database_url: Some("mysql://x".into()),
            ..Overrides::default()
        };
        let err = load(None, &[], flags).expect_err("unknown scheme");
        assert!(err.to_string().contains("database_url"), "{err}");
    }

    #[test]
    fn authzen_action_maps_are_read_checked_and_looked_up() {
        let store = "01JC0000000000000000000000";
        let c = load(
            Some(&format!(
                "[authzen.stores.{store}.actions]\nGET = \"can_read\"\nread = \"can_read\"\nPOST = \"GET\"\n"
            )),
            &[],
            Overrides::default(),
        )
        .expect("valid");
        let z = &c.authzen;
        assert_eq!(z.relation(store, "GET"), "can_read");
        assert_eq!(z.relation(&store.to_ascii_lowercase(), "read"), "can_read");
        assert_eq!(z.relation(store, "PUT"), "PUT");
        assert_eq!(z.relation("01JC0000000000000000000001", "GET"), "GET");
        assert_eq!(z.action_names(store, "can_read"), ["GET", "read"]);
        assert_eq!(z.action_names(store, "owner"), ["owner"]);
        // `GET` is an action of another relation, so the relation `GET` is reported as POST.
        assert_eq!(z.action_names(store, "GET"), ["POST"]);
        let c = load(
            Some(&format!(
                "[authzen.stores.{store}.actions]\nDELETE = \"can_delete\"\n"
            )),
            &[],
            Overrides::default(),
        )
        .expect("valid");
        assert!(c.authzen.action_names(store, "DELETE").is_empty());
        assert_eq!(c.authzen.user_type(store), DEFAULT_USER_TYPE);
        let c = load(
            Some(&format!(
                "[authzen.stores.{store}]\nuser_type = \"employee\"\n"
            )),
            &[],
            Overrides::default(),
        )
        .expect("valid");
        assert_eq!(c.authzen.user_type(store), "employee");
        assert_eq!(
            c.authzen.user_type("01JC0000000000000000000001"),
            DEFAULT_USER_TYPE
        );

        for (toml, key) in [
            (
                "[authzen.stores.nope.actions]\nGET = \"r\"\n",
                "authzen.stores",
            ),
            (
                &format!("[authzen.stores.{store}.actions]\nGET = \"a b\"\n") as &str,
                "authzen.stores.",
            ),
            (
                &format!("[authzen.stores.{store}.actions]\nGET = \"\"\n"),
                "authzen.stores.",
            ),
            (&format!("[authzen.stores.{store}]\nact = {{}}\n"), "act"),
            (
                &format!("[authzen.stores.{store}]\nuser_type = \"a:b\"\n"),
                "user_type",
            ),
        ] {
            let err = load(Some(toml), &[], Overrides::default()).expect_err(toml);
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn every_section_is_settable_from_the_environment() {
        let serialized = serde_json::to_value(Config::default()).expect("serializes");
        for key in serialized.as_object().expect("an object").keys() {
            assert!(ENV_KEYS.contains(&key.as_str()), "{key} is not in ENV_KEYS");
        }
    }

    #[test]
    fn plain_http_is_refused_off_loopback_unless_tls_or_a_proxy_is_declared() {
        let public = Overrides {
            listen: Some("0.0.0.0:8080".into()),
            ..Overrides::default()
        };
        let err = load(None, &[], public.clone()).expect_err("plain on 0.0.0.0");
        assert!(
            err.to_string().contains("plain HTTP on 0.0.0.0:8080"),
            "{err}"
        );
        let err = load(
            None,
            &[],
            Overrides {
                listen: Some("[::]:8080".into()),
                ..Overrides::default()
            },
        )
        .expect_err("plain on ::");
        assert!(err.to_string().contains("plain HTTP"), "{err}");
        // Loopback (the default) is allowed, IPv6 loopback too.
        load(None, &[], Overrides::default()).expect("127.0.0.1");
        load(
            None,
            &[],
            Overrides {
                listen: Some("[::1]:8080".into()),
                ..Overrides::default()
            },
        )
        .expect("::1");
        // A declared proxy terminates TLS in front.
        let c = load(
            None,
            &[(
                "TRUSTGATE_HTTP__TRUSTED_PROXIES",
                r#"["10.0.0.0/8","192.0.2.7"]"#,
            )],
            public.clone(),
        )
        .expect("behind a proxy");
        assert!(
            c.http
                .trusted_proxies()
                .expect("parses")
                .trusts("192.0.2.7".parse().expect("ip"))
        );
        // A certificate, from the flags.
        let tls = Overrides {
            tls: TlsOverrides {
                cert_file: Some("cert.pem".into()),
                key_file: Some("key.pem".into()),
            },
            ..public.clone()
        };
        let c = load(None, &[], tls).expect("with TLS");
        assert_eq!(c.tls.cert_file.as_deref(), Some(Path::new("cert.pem")));
        assert_eq!(c.tls.hsts().as_deref(), Some("max-age=31536000"));
    }

    #[test]
    fn tls_and_proxy_settings_are_checked() {
        for (toml, key) in [
            ("[tls]\ncert_file = \"c.pem\"\n", "cert_file and key_file"),
            ("[tls]\nkey_file = \"k.pem\"\n", "cert_file and key_file"),
            ("[tls]\nreload_check_secs = 0\n", "tls.reload_check_secs"),
            (
                "[tls]\nhsts_max_age_secs = 63072001\n",
                "tls.hsts_max_age_secs",
            ),
            (
                "[http]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
                "http.trusted_proxies",
            ),
            (
                "[http]\ntrusted_proxies = [\"proxy.internal\"]\n",
                "http.trusted_proxies",
            ),
            ("[http]\nproxy_hops = 0\n", "http.proxy_hops"),
            (
                "[mtls]\nlisten = \"127.0.0.1:8443\"\nca_files = [\"ca.pem\"]\n",
                "mtls.listen",
            ),
            (
                "[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n\
                 [mtls]\nlisten = \"127.0.0.1:8443\"\n",
                "mtls.ca_files",
            ),
            (
                "[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n\
                 [mtls]\nlisten = \"127.0.0.1:8443\"\nca_files = [\"ca.pem\"]\n\
                 public_origin = \"http://mtls.example\"\n",
                "mtls.public_origin",
            ),
            ("[mtls]\nca_files = [\"ca.pem\"]\n", "need mtls.listen"),
            ("[mtls]\naccept_self_signed = true\n", "need mtls.listen"),
            (
                "[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n\
                 [mtls]\nlisten = \"127.0.0.1:8443\"\naccept_self_signed = true\n\
                 crl_files = [\"crl.pem\"]\n",
                "mtls.crl_files",
            ),
            ("[http]\nproxy_hops = 11\n", "http.proxy_hops"),
        ] {
            let err = load(Some(toml), &[], Overrides::default()).expect_err(toml);
            assert!(err.to_string().contains(key), "{toml}: {err}");
        }
        let c = load(
            Some("[tls]\nhsts_max_age_secs = 0\n"),
            &[("TRUSTGATE_TLS__HSTS_INCLUDE_SUBDOMAINS", "true")],
            Overrides::default(),
        )
        .expect("valid");
        assert_eq!(c.tls.hsts(), None, "0 turns the header off");
        let c = load(
            None,
            &[("TRUSTGATE_TLS__HSTS_INCLUDE_SUBDOMAINS", "true")],
            Overrides::default(),
        )
        .expect("valid");
        assert_eq!(
            c.tls.hsts().as_deref(),
            Some("max-age=31536000; includeSubDomains")
        );
    }

    #[test]
    fn dpop_requires_nonces_by_default_and_its_bounds_are_checked() {
        let c = load(None, &[], Overrides::default()).expect("defaults");
        assert!(c.oauth.dpop.require_nonce, "nonces are required by default");
        assert_eq!(c.oauth.dpop.proof_max_age_secs, 60);
        let c = load(
            None,
            &[
                ("TRUSTGATE_OAUTH__DPOP__REQUIRE_NONCE", "false"),
                ("TRUSTGATE_OAUTH__DPOP__PROOF_MAX_AGE_SECS", "30"),
            ],
            Overrides::default(),
        )
        .expect("from the environment");
        assert!(!c.oauth.dpop.require_nonce);
        assert_eq!(c.oauth.dpop.proof_max_age_secs, 30);
        for (toml, key) in [
            (
                "[oauth.dpop]\nnonce_lifetime_secs = 59\n",
                "oauth.dpop.nonce_lifetime_secs",
            ),
            (
                "[oauth.dpop]\nnonce_lifetime_secs = 3601\n",
                "oauth.dpop.nonce_lifetime_secs",
            ),
            (
                "[oauth.dpop]\nproof_max_age_secs = 4\n",
                "oauth.dpop.proof_max_age_secs",
            ),
            (
                "[oauth.dpop]\nproof_leeway_secs = 61\n",
                "oauth.dpop.proof_leeway_secs",
            ),
            ("[oauth.dpop]\nnonces = true\n", "nonces"),
        ] {
            let err = load(Some(toml), &[], Overrides::default()).expect_err(toml);
            assert!(err.to_string().contains(key), "{toml}: {err}");
        }
    }

    #[test]
    fn import_limits_have_defaults_bounds_and_env() {
        let c = load(None, &[], Overrides::default()).expect("defaults");
        assert_eq!(c.authz.max_tuples_per_import, 100_000);
        assert_eq!(c.authz.import_body_limit_bytes, 64 * 1024 * 1024);
        let c = load(
            None,
            &[
                ("TRUSTGATE_AUTHZ__MAX_TUPLES_PER_IMPORT", "500"),
                ("TRUSTGATE_AUTHZ__IMPORT_BODY_LIMIT_BYTES", "65536"),
            ],
            Overrides::default(),
        )
        .expect("env");
        assert_eq!(
            (
                c.authz.max_tuples_per_import,
                c.authz.import_body_limit_bytes
            ),
            (500, 65536)
        );
        for (key, value) in [
            ("TRUSTGATE_AUTHZ__MAX_TUPLES_PER_IMPORT", "0"),
            ("TRUSTGATE_AUTHZ__MAX_TUPLES_PER_IMPORT", "10000001"),
            ("TRUSTGATE_AUTHZ__IMPORT_BODY_LIMIT_BYTES", "1023"),
        ] {
            let err = load(None, &[(key, value)], Overrides::default()).expect_err(value);
            assert!(
                err.to_string().contains("authz.import")
                    || err.to_string().contains("authz.max_tuples_per_import"),
                "{err}"
            );
        }
    }

    #[test]
    fn audit_bounds_are_checked() {
        let c = load(None, &[], Overrides::default()).expect("defaults");
        assert_eq!(c.audit.streamed_retention_days, 30);
        assert_eq!(c.audit.queue_capacity, 10_000);
        assert_eq!(c.audit.anchor_every_events, 10_000);
        assert_eq!(c.audit.anchor_every_secs, 60);
        for (key, value) in [
            ("TRUSTGATE_AUDIT__ANCHOR_EVERY_EVENTS", "99"),
            ("TRUSTGATE_AUDIT__ANCHOR_EVERY_SECS", "0"),
            ("TRUSTGATE_AUDIT__ANCHOR_EVERY_SECS", "86401"),
            ("TRUSTGATE_AUDIT__STREAMED_RETENTION_DAYS", "0"),
            ("TRUSTGATE_AUDIT__STREAMED_RETENTION_DAYS", "3651"),
            ("TRUSTGATE_AUDIT__QUEUE_CAPACITY", "999"),
            ("TRUSTGATE_AUDIT__QUEUE_CAPACITY", "1000001"),
        ] {
            let err = load(None, &[(key, value)], Overrides::default()).expect_err(value);
            assert!(err.to_string().contains("audit."), "{err}");
        }
        let c = load(
            Some("[audit]\nstreamed_retention_days = 7\n"),
            &[],
            Overrides::default(),
        )
        .expect("file");
        assert_eq!(c.audit.streamed_retention_days, 7);
    }

    #[test]
    fn connection_limits_have_defaults_and_bounds() {
        let c = load(None, &[], Overrides::default()).expect("defaults");
        assert_eq!(
            (
                c.http.header_read_timeout_secs,
                c.http.idle_timeout_secs,
                c.http.max_connections,
                c.http.max_connections_per_ip
            ),
            (10, 75, 4096, 128)
        );
        for (key, value) in [
            ("TRUSTGATE_HTTP__HEADER_READ_TIMEOUT_SECS", "0"),
            ("TRUSTGATE_HTTP__HEADER_READ_TIMEOUT_SECS", "301"),
            ("TRUSTGATE_HTTP__IDLE_TIMEOUT_SECS", "0"),
            ("TRUSTGATE_HTTP__IDLE_TIMEOUT_SECS", "3601"),
            ("TRUSTGATE_HTTP__MAX_CONNECTIONS", "0"),
            ("TRUSTGATE_HTTP__MAX_CONNECTIONS", "1000001"),
            ("TRUSTGATE_HTTP__MAX_CONNECTIONS_PER_IP", "0"),
            ("TRUSTGATE_HTTP__MAX_CONNECTIONS_PER_IP", "4097"),
        ] {
            let err = load(None, &[(key, value)], Overrides::default()).expect_err(value);
            let name = key["TRUSTGATE_HTTP__".len()..].to_lowercase();
            assert!(err.to_string().contains(&format!("http.{name}:")), "{err}");
        }
        let env = [
            ("TRUSTGATE_HTTP__MAX_CONNECTIONS", "64"),
            ("TRUSTGATE_HTTP__MAX_CONNECTIONS_PER_IP", "64"),
            ("TRUSTGATE_HTTP__HEADER_READ_TIMEOUT_SECS", "1"),
        ];
        let c = load(None, &env, Overrides::default()).expect("per-IP cap may equal the global");
        assert_eq!(c.http.max_connections_per_ip, 64);
        let err = load(
            None,
            &[("TRUSTGATE_HTTP__MAX_CONNECTIONS", "-1")],
            Overrides::default(),
        )
        .expect_err("negative");
        assert!(
            err.to_string()
                .to_lowercase()
                .contains("http.max_connections"),
            "{err}"
        );
    }

    #[test]
    fn foreign_trustgate_variables_are_ignored() {
        let env = [
            ("TRUSTGATE_TOKEN", "tg_admin_x"),
            ("TRUSTGATE_TEST_DATABASE_URL", "postgres://x"),
        ];
        load(None, &env, Overrides::default()).expect("ignored");
    }

    #[test]
    fn dev_cookies_only_on_loopback() {
        let env = [("TRUSTGATE_PAGES__INSECURE_DEV_COOKIES", "true")];
        let c = load(None, &env, Overrides::default()).expect("loopback is fine");
        assert!(c.pages.insecure_dev_cookies);
        // Behind a proxy, so that plain HTTP itself is allowed there.
        let proxied = [
            env[0],
            ("TRUSTGATE_HTTP__TRUSTED_PROXIES", r#"["10.0.0.1"]"#),
        ];
        for listen in ["0.0.0.0:8080", "192.0.2.10:8080", "[::]:8080"] {
            let flags = Overrides {
                listen: Some(listen.into()),
                ..Overrides::default()
            };
            let err = load(None, &proxied, flags).expect_err("not loopback");
            let text = err.to_string();
            assert!(text.contains("pages.insecure_dev_cookies"), "{text}");
            assert!(text.contains("loopback"), "{text}");
        }
        let flags = Overrides {
            listen: Some("[::1]:8080".into()),
            ..Overrides::default()
        };
        load(None, &env, flags).expect("IPv6 loopback is fine");
        let flags = Overrides {
            listen: Some("0.0.0.0:8080".into()),
            ..Overrides::default()
        };
        load(None, &proxied[1..], flags).expect("strict cookies anywhere");
    }

    #[test]
    fn public_origin_must_be_an_origin() {
        for good in ["https://auth.example.com", "http://127.0.0.1:8080"] {
            let file = format!("[pages]\npublic_origin = \"{good}\"\n");
            load(Some(&file), &[], Overrides::default()).expect(good);
        }
        for bad in [
            "auth.example.com",
            "https://a/b",
            "javascript://x",
            "https://",
        ] {
            let file = format!("[pages]\npublic_origin = \"{bad}\"\n");
            let err = load(Some(&file), &[], Overrides::default()).expect_err(bad);
            assert!(err.to_string().contains("pages.public_origin"), "{err}");
        }
    }

    #[test]
    fn oauth_keys_have_defaults_and_bounds() {
        let c = load(None, &[], Overrides::default()).expect("defaults");
        assert_eq!(c.oauth.key_rotation_days, 30);
        assert_eq!(c.oauth.key_publish_ahead_secs, 600);
        assert_eq!(c.oauth.max_token_lifetime_secs, 86_400);
        assert_eq!(c.oauth.token_exchange_ttl_secs, 300);
        let env = [("TRUSTGATE_OAUTH__KEY_ROTATION_DAYS", "7")];
        let c = load(None, &env, Overrides::default()).expect("env");
        assert_eq!(c.oauth.key_rotation_days, 7);
        for (key, value) in [
            ("TRUSTGATE_OAUTH__KEY_ROTATION_DAYS", "0"),
            ("TRUSTGATE_OAUTH__KEY_PUBLISH_AHEAD_SECS", "0"),
            ("TRUSTGATE_OAUTH__ISSUER", "http://auth.example.com"),
            ("TRUSTGATE_OAUTH__REFRESH_GRACE_SECS", "301"),
            ("TRUSTGATE_OAUTH__ACCESS_TOKEN_ALGORITHM", "HS256"),
            ("TRUSTGATE_OAUTH__MAX_TOKEN_LIFETIME_SECS", "10"),
            ("TRUSTGATE_OAUTH__TOKEN_EXCHANGE_TTL_SECS", "29"),
            ("TRUSTGATE_OAUTH__TOKEN_EXCHANGE_TTL_SECS", "3601"),
        ] {
            let err = load(None, &[(key, value)], Overrides::default()).expect_err(key);
            let name = key["TRUSTGATE_OAUTH__".len()..].to_lowercase();
            assert!(err.to_string().contains(&format!("oauth.{name}")), "{err}");
        }
        let env = [
            ("TRUSTGATE_OAUTH__KEY_ROTATION_DAYS", "1"),
            ("TRUSTGATE_OAUTH__KEY_PUBLISH_AHEAD_SECS", "86400"),
        ];
        load(None, &env, Overrides::default()).expect_err("publish ahead >= rotation");
        let env = [("TRUSTGATE_OAUTH__TOKEN_EXCHANGE_TTL_SECS", "60")];
        let c = load(None, &env, Overrides::default()).expect("env");
        assert_eq!(c.oauth.token_exchange_ttl_secs, 60);
    }

    #[test]
    fn secrets_key_must_be_32_bytes_of_base64() {
        let err = load(
            None,
            &[("TRUSTGATE_SECRETS_KEY", "c2hvcnQ=")],
            Overrides::default(),
        )
        .expect_err("too short");
        assert!(err.to_string().contains("secrets_key"), "{err}");
        assert!(!err.to_string().contains("c2hvcnQ"), "{err}");
        let key = trustgate_core::SealingKey::generate().to_base64();
        let c = load(
            None,
            &[("TRUSTGATE_SECRETS_KEY", key.expose())],
            Overrides::default(),
        )
        .expect("valid key");
        assert_eq!(c.secrets_key.as_ref(), Some(&key));
        assert!(!c.to_redacted_toml().contains(key.expose()));
    }

    #[test]
    fn shown_configuration_redacts_secrets() {
        let env = [
            (
                "TRUSTGATE_BOOTSTRAP_TOKEN",
                "tg_admin_0123456789abcdef0123456789abcdef",
            ),
            ("TRUSTGATE_DATABASE_URL", "postgres://app:hunter2@db/trust"),
        ];
        let c = load(None, &env, Overrides::default()).expect("config");
        let shown = c.to_redacted_toml();
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
    }
}
