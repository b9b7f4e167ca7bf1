//! The application: shared state and the router with its layers.
//!
//! Layer order, outermost first (a request passes them top to bottom):
//! 1. [`request_id::assign_request_id`]: every request gets an id and a tracing span.
//! 2. [`error::render_errors`]: error responses get the JSON error shape with that id.
//! 3. [`telemetry::record_metrics`]: counts and times by route template and status.
//! 4. timeout (503 `request_timeout`) and the request body limit (413 `payload_too_large`).
//! 5. the routes; handlers authenticate with extractors ([`auth::AdminPrincipal`]). The
//!    OpenFGA-compatible routes ([`fga`]) render OpenFGA's error bodies themselves.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use http::StatusCode;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use trustgate_authn::accounts::{Accounts, AccountsConfig};
use trustgate_core::{Clock, SealingKey};
use trustgate_oauth::clients::ClientRegistry;
use trustgate_store::Store;

use crate::config::Config;
use crate::{
    admin, admin_clients, admin_users, auth, error, fga, ops, pages, request_id, telemetry,
};

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Where time comes from.
    pub clock: Arc<dyn Clock>,
    /// The effective configuration.
    pub config: Arc<Config>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Human accounts: users, login, sessions, second factors, audit.
    pub accounts: Accounts,
    /// Registered OAuth clients: registration and client authentication.
    pub clients: ClientRegistry,
    /// The relationship PDP's in-memory state (tuple indexes, model cache).
    pub fga: Arc<fga::FgaRuntime>,
    /// Recently verified service tokens.
    pub service_tokens: auth::ServiceTokenCache,
}

impl AppState {
    /// State over an opened, migrated store. `secrets_key` seals TOTP secrets and pending
    /// logins (see [`crate::serve::resolve_secrets_key`]).
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: Config,
        secrets_key: SealingKey,
    ) -> Self {
        let accounts = Accounts::new(
            Arc::clone(&store),
            Arc::clone(&clock),
            secrets_key,
            AccountsConfig::default(),
        );
        let clients = ClientRegistry::new(Arc::clone(&store), Arc::clone(&clock));
        Self {
            fga: Arc::new(fga::FgaRuntime::new(store.clone())),
            clients,
            store,
            clock,
            config: Arc::new(config),
            metrics: telemetry::metrics_handle(),
            service_tokens: auth::ServiceTokenCache::default(),
            accounts,
        }
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
        .merge(admin_clients::router())
        .merge(fga::router())
        .merge(pages::router())
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .layer(axum::middleware::from_fn(telemetry::record_metrics))
        .layer(axum::middleware::from_fn(error::render_errors))
        .layer(axum::middleware::from_fn(request_id::assign_request_id))
        .with_state(state)
}
