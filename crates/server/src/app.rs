//! The application: shared state and the router with its layers.
//!
//! Layer order, outermost first (a request passes them top to bottom):
//! 1. [`request_id::assign_request_id`]: every request gets an id and a tracing span.
//! 2. [`error::render_errors`]: error responses get the JSON error shape with that id.
//! 3. [`telemetry::record_metrics`]: counts and times by route template and status.
//! 4. timeout (503 `request_timeout`) and the request body limit (413 `payload_too_large`).
//! 5. the routes; handlers authenticate and authorize with extractors ([`crate::auth::Caller`],
//!    [`crate::auth::Authorized`]). The
//!    OpenFGA-compatible routes ([`fga`]) render OpenFGA's error bodies themselves; the AuthZEN
//!    routes ([`authzen`]) use the JSON error shape.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use http::StatusCode;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use trustgate_audit::{Auditor, AuditorConfig, ChainConfig, Chains};
use trustgate_authn::accounts::{Accounts, AccountsConfig};
use trustgate_authn::api_keys::{ApiKeys, ApiKeysConfig};
use trustgate_core::{Clock, SealingKey};
use trustgate_oauth::Endpoints;
use trustgate_oauth::clients::{ClientCacheConfig, ClientRegistry};
use trustgate_oauth::dpop::DpopSettings;
use trustgate_oauth::provider::{Provider, Settings};
use trustgate_store_api::Store;
use trustgate_tokens::{Algorithm, KeyError, KeyManager, KeyPolicy};

use crate::config::Config;
use crate::{
    admin, admin_audit, admin_clients, admin_keys, admin_services, admin_users, admin_webhooks,
    authzen, error, fga, oauth, ops, pages, request_id, telemetry,
};

/// What every handler can reach. Cloned for every request by axum's `State` extractor, so it is
/// one `Arc` (one reference count) rather than a struct of many.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Services>);

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services and settings behind [`AppState`].
#[derive(Debug)]
pub struct Services {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Where time comes from.
    pub clock: Arc<dyn Clock>,
    /// The effective configuration.
    pub config: Arc<Config>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The audit trail.
    pub auditor: Auditor,
    /// The audit trail's chains: anchors, retention, verification.
    pub chains: Chains,
    /// Human accounts: users, login, sessions, second factors, audit.
    pub accounts: Accounts,
    /// Registered OAuth clients: registration and client authentication.
    pub clients: ClientRegistry,
    /// The OAuth 2.0 authorization server / OpenID Provider (and its signing keys).
    pub oauth: Provider,
    /// The relationship PDP service (stores, models, tuples, queries; tuple indexes and model
    /// cache), over the relationship part of the store.
    pub pdp: trustgate_pdp::Pdp,
    /// API keys and personal access tokens (machine credentials).
    pub api_keys: ApiKeys,
    /// Client certificates (mutual TLS) → the service accounts their names are bound to.
    pub certificates: trustgate_authn::certificates::CertificateAccounts,
    /// trustgate's own permissions, decided by the PDP over the system store.
    pub access: trustgate_pdp::system::SystemAccess,
    /// Webhook subscriptions and the delivery outbox (webhooks, back-channel logout tokens);
    /// taps the auditor.
    pub webhooks: trustgate_webhooks::Webhooks,
    /// The pages' product name, logo and colours (`[branding]`).
    pub brand: Arc<crate::pages::brand::Brand>,
    /// Turns `true` when shutdown begins: long-lived responses (the store watch streams) end
    /// then instead of holding the drain up for the whole grace period.
    pub stopping: tokio::sync::watch::Sender<bool>,
}

/// Why the services could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    /// The signing keys cannot be loaded or created.
    #[error("{0}")]
    Keys(#[from] KeyError),
    /// The system model cannot be installed.
    #[error("cannot install the system model: {0}")]
    System(#[from] trustgate_pdp::PdpError),
    /// The `[branding]` logo cannot be read.
    #[error("{0}")]
    Branding(String),
}

impl AppState {
    /// State over an opened, migrated store: loads (creating on first start) the signing keys
    /// and installs the system model (trustgate's own permissions).
    /// `secrets_key` seals TOTP secrets, pending logins, signing keys and webhook secrets (see
    /// [`crate::serve::resolve_secrets_key`]).
    pub async fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: Config,
        secrets_key: SealingKey,
    ) -> Result<Self, ServicesError> {
        let brand = Arc::new(
            crate::pages::brand::Brand::load(&config.branding).map_err(ServicesError::Branding)?,
        );
        let auditor = Auditor::new(
            store.clone(),
            Arc::clone(&clock),
            AuditorConfig {
                queue_capacity: config.audit.queue_capacity,
                ..AuditorConfig::default()
            },
        );
        let accounts = Accounts::new(
            store.clone(),
            auditor.clone(),
            Arc::clone(&clock),
            secrets_key.clone(),
            AccountsConfig::default(),
        );
        // Authenticated clients are cached like verified API keys, with the same revocation
        // poll: a client changed on another replica stops working here within it.
        let clients = ClientRegistry::new(store.clone(), Arc::clone(&clock))
            .with_assertion_leeway(seconds(config.oauth.assertion_leeway_secs))
            .with_cache(
                store.clone(),
                ClientCacheConfig {
                    epoch_poll: Duration::from_millis(config.api_keys.revocation_poll_ms),
                    ..ClientCacheConfig::default()
                },
            );
        let oauth_config = &config.oauth;
        let policy = KeyPolicy {
            rotation_period: time::Duration::days(i64::from(oauth_config.key_rotation_days)),
            publish_ahead: seconds(oauth_config.key_publish_ahead_secs),
            max_token_lifetime: seconds(oauth_config.max_token_lifetime_secs),
            jwks_max_age: seconds(oauth_config.key_publish_ahead_secs.min(300)),
        };
        let keys = KeyManager::load(
            store.clone(),
            secrets_key.clone(),
            policy,
            Arc::clone(&clock),
        )
        .await?;
        keys.ensure_keys().await?;
        let webhooks = trustgate_webhooks::Webhooks::new(
            store.clone(),
            Arc::clone(&clock),
            secrets_key.clone(),
            config.webhooks.clone(),
        );
        webhooks.tap(&auditor);
        let chains = Chains::new(
            store.clone(),
            keys.clone(),
            secrets_key.clone(),
            Arc::clone(&clock),
            ChainConfig {
                anchor_every_events: i64::from(config.audit.anchor_every_events),
                anchor_every: seconds(u64::from(config.audit.anchor_every_secs)),
            },
        );
        let issuer = oauth_config
            .issuer
            .clone()
            .or_else(|| config.pages.public_origin.clone())
            .unwrap_or_else(|| default_issuer(config.listen, config.tls.enabled()));
        let settings = Settings {
            id_token_ttl: seconds(oauth_config.id_token_ttl_secs),
            token_exchange_ttl: seconds(oauth_config.token_exchange_ttl_secs),
            refresh_grace: seconds(oauth_config.refresh_grace_secs),
            device_interval_secs: i64::try_from(oauth_config.device_poll_interval_secs)
                .unwrap_or(5),
            access_token_algorithm: oauth_config
                .access_token_algorithm
                .parse()
                .unwrap_or(Algorithm::ES256),
            id_token_algorithm: oauth_config
                .id_token_algorithm
                .parse()
                .unwrap_or(Algorithm::RS256),
            dpop: DpopSettings {
                require_nonce: oauth_config.dpop.require_nonce,
                nonce_lifetime: seconds(oauth_config.dpop.nonce_lifetime_secs),
                proof_max_age: seconds(oauth_config.dpop.proof_max_age_secs),
                proof_leeway: seconds(oauth_config.dpop.proof_leeway_secs),
                nonce_key: secrets_key.clone(),
            },
            mtls_endpoints: config
                .mtls
                .listen
                .and(config.mtls.public_origin.as_deref())
                .map(Endpoints::new),
            mtls_self_signed: config.mtls.listen.is_some() && config.mtls.accept_self_signed,
            ..Settings::default()
        };
        let oauth = Provider::new(
            store.clone(),
            auditor.clone(),
            keys,
            clients.clone(),
            Arc::clone(&clock),
            Endpoints::new(&issuer),
            settings,
        );
        let api_keys = ApiKeys::new(
            store.clone(),
            Arc::clone(&clock),
            ApiKeysConfig {
                environment: config.api_keys.environment.clone(),
                epoch_poll: Duration::from_millis(config.api_keys.revocation_poll_ms),
                ..ApiKeysConfig::default()
            },
        );
        let authz = &config.authz;
        let pdp = trustgate_pdp::Pdp::new(
            store.clone(),
            Arc::clone(&clock),
            trustgate_pdp::Limits {
                max_tuples_per_write: authz.max_tuples_per_write,
                max_tuples_per_import: authz.max_tuples_per_import,
                max_checks_per_batch: authz.max_checks_per_batch,
                list_objects_max_results: authz.list_objects_max_results,
                list_users_max_results: authz.list_users_max_results,
            },
            auditor.clone(),
        )
        .with_directory(store.clone());
        let access = pdp.system_access();
        access.install().await?;
        let certificates = trustgate_authn::certificates::CertificateAccounts::new(store.clone());
        Ok(Self(Arc::new(Services {
            access,
            pdp,
            clients,
            oauth,
            store,
            clock,
            config: Arc::new(config),
            metrics: telemetry::metrics_handle(),
            api_keys,
            certificates,
            auditor,
            chains,
            accounts,
            webhooks,
            brand,
            stopping: tokio::sync::watch::Sender::new(false),
        })))
    }
}

fn seconds(secs: u64) -> time::Duration {
    time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX))
}

/// `http://` (`https://` with TLS) and the listen address; a wildcard address becomes
/// `localhost`.
pub fn default_issuer(listen: std::net::SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    if listen.ip().is_unspecified() {
        format!("{scheme}://localhost:{}", listen.port())
    } else {
        format!("{scheme}://{listen}")
    }
}

/// The origin of the mutual-TLS listener by default: the issuer's scheme and host with the
/// listener's port.
pub fn mtls_origin(issuer: &str, port: u16) -> String {
    let Ok(mut url) = url::Url::parse(issuer) else {
        return format!("https://localhost:{port}");
    };
    match url.set_port(Some(port)) {
        Ok(()) => url.origin().ascii_serialization(),
        Err(()) => format!("https://localhost:{port}"),
    }
}

/// The complete router with all layers.
pub fn router(state: AppState) -> Router {
    let http = &state.config.http;
    let body_limit = http.body_limit_bytes;
    let timeout = Duration::from_secs(http.request_timeout_secs);
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .merge(admin::router())
        .merge(admin_users::router())
        .merge(admin_audit::router())
        .merge(admin_clients::router())
        .merge(admin_keys::router())
        .merge(admin_services::router())
        .merge(admin_webhooks::router())
        .merge(fga::router())
        .merge(authzen::router())
        .merge(pages::router())
        .merge(oauth::router(&state))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(RequestBodyLimitLayer::new(body_limit))
        .merge(fga::import_router(
            state.config.authz.import_body_limit_bytes,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .layer(axum::middleware::from_fn(telemetry::record_metrics))
        .layer(axum::middleware::from_fn(error::render_errors))
        .layer(axum::middleware::from_fn(request_id::assign_request_id))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            pages::brand::scope,
        ))
        .with_state(state)
}
