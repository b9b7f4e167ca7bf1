//! `trustgate-gateway`: the enforcing reverse proxy behind `trustgate gateway --config
//! gateway.toml`. It is pep's [`Pep::decide`](trustgate_pep::Pep::decide) in front of a proxy
//! service — the same route rules, credentials, answers and decision sink as the in-process
//! layer, not a second policy engine:
//!
//! ```text
//! client ─► trustgate_listener::serve (HTTP/1.1 and, over TLS, HTTP/2; upgrades; connection
//!   caps and timeouts; ConnectInfo and the client address from trusted proxies)
//!   ─► State (ArcSwap; a request keeps the state it started with across a reload)
//!   ─► pep::Pep::decide: route (no rule ─► 403) ─► bearer JWT against trustgate's JWKS, API
//!        keys by introspection with `[api_keys]` (else 401; cookies are no credential)
//!        ─► rate limit per principal (limit::PrincipalLimiter as pep's Admission ─► 429 +
//!           Retry-After) ─► scopes ─► step-up ─► PDP over HTTP (down ─► 503), through
//!           pep's DecisionCache: answers reused while the store's revision (followed over
//!           `GET /stores/{id}/watch`) stays the same, nothing cached while that stream is down
//!        every outcome ─► DecisionSink
//!   ─► the rule's upstream: unhealthy by its health check ─► 503 at once
//!   ─► internal token: RFC 8693 exchange of the caller's token or API key for aud = the upstream
//!        (exchange::TokenExchanger, cached by (SHA-256 of the token, audience) until shortly
//!        before expiry; refused subject ─► 401, the gateway's client refused ─► 502)
//!   ─► headers: hop-by-hop dropped (and those `Connection` names), identity headers dropped
//!        (`strip_headers`), `Authorization: Bearer <internal token>`, X-Forwarded-For
//!        appended, X-Forwarded-Proto/Host set
//!   ─► hyper-util Client (http only, per-upstream connect timeout ─► 502), response head
//!        within request_timeout ─► else 504; bodies stream both ways, never buffered
//!   ─► 101 Switching Protocols: both sides upgraded, bytes copied both ways (WebSocket)
//! ```
//!
//! # Modules
//! - [`config`]: `gateway.toml` (figment; secrets only from files or environment variables).
//! - [`exchange`]: the token exchange client and its cache.
//! - [`headers`]: hop-by-hop, identity and forwarding headers.
//! - [`limit`]: the per-principal rate limiter.
//! - `proxy`: the state of one configuration and the request path.
//!
//! # What the gateway forwards, and what it does not
//! Callers authenticate with a bearer access token issued by trustgate for the gateway's
//! `audience`, or — with `[api_keys]` in the configuration — with one of trustgate's API keys
//! or personal access tokens (`X-API-Key: <key>` or `Authorization: Bearer <key>`). A key is
//! introspected by the gateway's client (a resource server at trustgate), answers reused at
//! most `api_keys.introspection_ttl_secs`, so a revoked key or a disabled owner is refused
//! within that time; it is then exchanged with the key as the subject token
//! (`urn:trustgate:params:oauth:token-type:api_key`; the gateway's client needs
//! `token_exchange.api_keys`), and the upstream receives a token whose `sub` is the key's owner
//! (`service:<id>`, or `user:<id>` for a personal access token), `key_id` the key, `scope`
//! within the key's, no `auth_time`, and `act` the gateway — never the key. With
//! `[rate_limit]`, each key has its own bucket (`api_key:<id>`), apart from its owner's other
//! keys. Without `[api_keys]` a key is refused (401 `opaque_token_not_accepted`). Session
//! cookies are not credentials here: the gateway is for bearer callers; browser applications
//! use the `pep` layer in process.
//!
//! # Reload and shutdown
//! [`Gateway::reload`] builds the whole new state (routes, upstreams, health checks,
//! limiter, secrets re-read) and swaps it in; a configuration that does not build is
//! returned as an error and the old state stays. [`run`] does this on SIGHUP and drains
//! in-flight requests on the shutdown signal (upgraded connections are detached and end
//! with the process). The listen address is taken at start only. Rate-limit counts start
//! afresh with each reload.

pub mod config;
pub mod exchange;
pub mod headers;
pub mod limit;
mod proxy;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::Request;
use trustgate_pep::{DecisionSink, RouteError};

pub use config::{ConfigError, GatewayConfig};

/// Why a gateway cannot be built from a configuration.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The routes do not compile (pep's rules).
    #[error("invalid route: {0}")]
    Routes(#[from] RouteError),
    /// A URL cannot be built.
    #[error("invalid URL: {0}")]
    Url(String),
    /// An HTTP client cannot be built.
    #[error("HTTP client: {0}")]
    Http(String),
    /// The listener.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
}

/// The gateway: its current state and where decisions go. Share it in an `Arc`.
pub struct Gateway {
    state: ArcSwap<proxy::State>,
    sink: Arc<dyn DecisionSink>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("sink", &self.sink)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway for `config`, recording every decision in `sink`. Must run inside a tokio
    /// runtime (health checks are spawned).
    pub fn new(config: GatewayConfig, sink: Arc<dyn DecisionSink>) -> Result<Self, GatewayError> {
        let state = proxy::State::build(config, sink.clone())?;
        Ok(Gateway {
            state: ArcSwap::from_pointee(state),
            sink,
        })
    }

    /// Replaces the whole state with one built from `config`. On an error the current state
    /// stays. Requests in flight finish with the state they started with.
    pub fn reload(&self, config: GatewayConfig) -> Result<(), GatewayError> {
        let state = proxy::State::build(config, self.sink.clone())?;
        self.state.store(Arc::new(state));
        Ok(())
    }

    /// The configuration in effect.
    pub fn config(&self) -> GatewayConfig {
        self.state.load().config.clone()
    }

    /// Serves one request (with `ConnectInfo<SocketAddr>` in its extensions when available).
    pub async fn handle(&self, request: Request) -> axum::response::Response {
        let state = self.state.load_full();
        state.handle(request).await
    }

    /// The gateway as an axum router (every path and method goes to [`handle`](Self::handle)).
    pub fn router(self: &Arc<Self>) -> Router {
        let gateway = self.clone();
        Router::new().fallback(move |request: Request| {
            let gateway = gateway.clone();
            async move { gateway.handle(request).await }
        })
    }
}

/// The gateway's sockets: the main listener and, with `[mtls] listen`, the mutual-TLS one.
#[derive(Debug)]
pub struct Listeners {
    /// `listen`.
    pub main: tokio::net::TcpListener,
    /// `mtls.listen`.
    pub mutual: Option<tokio::net::TcpListener>,
}

impl Listeners {
    /// Binds the addresses `config` names.
    pub async fn bind(config: &GatewayConfig) -> std::io::Result<Self> {
        let main = tokio::net::TcpListener::bind(config.listen).await?;
        let mutual = match config.mtls.listen {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
            None => None,
        };
        Ok(Listeners { main, mutual })
    }
}

/// Serves `gateway` on `listeners` until `shutdown` completes, then drains in-flight
/// requests, through trustgate's listener (connection caps and timeouts, TLS when `[tls]` is
/// set, the client address from trusted proxies). The mutual-TLS listener requires a client
/// certificate of `[mtls]`'s CAs and hands it to pep ([`trustgate_pep::PresentedCertificate`]).
/// The certificate, CA bundles and CRLs are reloaded on SIGHUP and when their files change;
/// the listener settings are those at start.
pub async fn serve(
    listeners: Listeners,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let config = gateway.config();
    let tls_error = |e: trustgate_listener::tls::TlsError| GatewayError::Tls(e.to_string());
    let certificate = config.tls.load().map_err(tls_error)?;
    let proxies = config.trusted_proxies()?;
    let transport =
        trustgate_listener::Transport::new(certificate.clone(), &config.tls, proxies.clone())
            .map_err(tls_error)?;
    let every = std::time::Duration::from_secs(config.tls.reload_check_secs);
    let mut watches = Vec::new();
    let mutual = match (listeners.mutual, &certificate) {
        (Some(listener), Some(certificate)) => {
            let clients = trustgate_listener::mtls::ReloadingClientVerifier::load(&config.mtls)
                .map_err(tls_error)?;
            watches.push(trustgate_listener::tls::watch(clients.clone(), every));
            let transport = trustgate_listener::Transport::mutual(
                certificate.clone(),
                clients,
                &config.tls,
                proxies,
            )
            .map_err(tls_error)?;
            Some((listener, transport))
        }
        (Some(_), None) => {
            return Err(GatewayError::Tls(
                "the mutual-TLS listener serves the [tls] certificate".into(),
            ));
        }
        (None, _) => None,
    };
    watches
        .extend(certificate.map(|certificate| trustgate_listener::tls::watch(certificate, every)));
    let settings = config.connections.listener_settings().clamped(
        trustgate_listener::descriptor_limit(),
        trustgate_listener::RESERVED_DESCRIPTORS,
    );
    let grace = std::time::Duration::from_secs(config.connections.shutdown_grace_secs);
    // One shutdown for both listeners.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let main = trustgate_listener::serve(
        listeners.main,
        gateway.router(),
        settings,
        transport,
        until_stopped(stopped.clone()),
        grace,
    );
    match mutual {
        Some((listener, transport)) => {
            let mutual = trustgate_listener::serve(
                listener,
                gateway.router(),
                settings,
                transport,
                until_stopped(stopped),
                grace,
            );
            tokio::join!(main, mutual);
        }
        None => main.await,
    }
    for watch in watches {
        watch.abort();
    }
    Ok(())
}

/// Reloads from `path` (the SIGHUP handler): a file that does not load or build is logged and
/// the running configuration kept.
pub fn reload_from(gateway: &Gateway, path: &Path) -> Result<(), GatewayError> {
    let config = GatewayConfig::load(path)?;
    let running = gateway.config();
    if config.listen != running.listen {
        tracing::warn!(target: "trustgate_gateway", old = %running.listen, new = %config.listen, "the listen address changes only on restart");
    }
    if config.mtls != running.mtls {
        tracing::warn!(target: "trustgate_gateway", "[mtls] changes only on restart");
    }
    gateway.reload(config)
}

/// `trustgate gateway --config PATH`: loads, binds, serves; reloads on SIGHUP; stops on
/// `shutdown`, draining in-flight requests.
pub async fn run(
    path: PathBuf,
    sink: Arc<dyn DecisionSink>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let config = GatewayConfig::load(&path)?;
    let listeners = Listeners::bind(&config).await?;
    let gateway = Arc::new(Gateway::new(config, sink)?);
    let scheme = if gateway.config().tls.enabled() {
        "https"
    } else {
        "http"
    };
    tracing::info!(target: "trustgate_gateway", listen = %listeners.main.local_addr()?, scheme, "gateway listening");
    if let Some(mutual) = &listeners.mutual {
        tracing::info!(target: "trustgate_gateway", listen = %mutual.local_addr()?, "gateway listening for mutual TLS");
    }
    #[cfg(unix)]
    {
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let gateway = gateway.clone();
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                match reload_from(&gateway, &path) {
                    Ok(()) => {
                        tracing::info!(target: "trustgate_gateway", path = %path.display(), "configuration reloaded");
                    }
                    Err(e) => {
                        tracing::error!(target: "trustgate_gateway", path = %path.display(), error = %e, "reload failed; the running configuration is kept");
                    }
                }
            }
        });
    }
    serve(listeners, gateway, shutdown).await?;
    Ok(())
}
