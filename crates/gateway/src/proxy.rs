//! The gateway's state (built from one configuration, swapped whole on reload) and the request
//! path: decide with pep, pick the upstream, exchange the caller's token, rewrite headers,
//! forward with streaming bodies, pass upgrades through.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, UPGRADE};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::task::JoinHandle;
use trustgate_core::SystemClock;
use trustgate_pep::{
    AuthMethod, Authenticator, DecisionCache, DecisionCacheConfig, DecisionPoint, DecisionSink,
    DpopConfig, DpopVerifier, HttpDecisionPoint, IntrospectionConfig, Introspector, JwtConfig,
    JwtVerifier, Pep, PresentedCertificate, RevisionFeed, RouteTable, answer,
};

use crate::GatewayError;
use crate::config::{GatewayConfig, UpstreamConfig, read_secret};
use crate::exchange::{ExchangeError, SubjectType, TokenExchanger, presented_credential};
use crate::headers;
use crate::limit::PrincipalLimiter;

/// The longest `X-Request-ID` echoed in an error body (pep's limit).
const MAX_REQUEST_ID: usize = 128;
/// Timeout of trustgate calls other than the PDP (JWKS, token exchange).
const ISSUER_TIMEOUT: Duration = Duration::from_secs(5);
/// How often idle rate-limit buckets are forgotten.
const LIMITER_SWEEP: Duration = Duration::from_secs(60);

/// A background task that ends with the state that owns it.
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One upstream at run time.
pub(crate) struct Upstream {
    name: String,
    base: url::Url,
    audience: Arc<str>,
    /// HTTP/1.1, over TLS for an `https` upstream.
    client: Client<HttpsConnector<HttpConnector>, Body>,
    request_timeout: Duration,
    healthy: Arc<AtomicBool>,
}

/// Everything one configuration determines. In-flight requests hold the `Arc` of the state
/// they started with, so a reload never changes a request half-way.
pub(crate) struct State {
    pub(crate) config: GatewayConfig,
    pep: Pep,
    /// (method, path template) → index into `upstreams`.
    route_upstream: HashMap<(Method, String), usize>,
    upstreams: Vec<Upstream>,
    exchanger: TokenExchanger,
    /// The revision and revocation stream (ends with the state).
    _feed: RevisionFeed,
    _tasks: Vec<Task>,
}

impl State {
    /// Builds the state of `config`: reads the secrets, compiles the routes, starts the health
    /// checks. Must run inside a tokio runtime.
    pub(crate) fn build(
        config: GatewayConfig,
        sink: Arc<dyn DecisionSink>,
    ) -> Result<Self, GatewayError> {
        let client_secret = read_secret(
            "client",
            config.client.secret_file.as_deref(),
            config.client.secret_env.as_deref(),
        )?;
        let pdp_key = read_secret(
            "pdp",
            config.pdp.api_key_file.as_deref(),
            config.pdp.api_key_env.as_deref(),
        )?;
        let issuer_http = reqwest::Client::builder()
            .timeout(ISSUER_TIMEOUT)
            .build()
            .map_err(|e| GatewayError::Http(e.to_string()))?;
        let pdp_http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.pdp.timeout_ms))
            .build()
            .map_err(|e| GatewayError::Http(e.to_string()))?;
        let pdp = HttpDecisionPoint::new(
            &config.pdp.url,
            &config.pdp.store_id,
            pdp_key,
            config.pdp.model_id.clone(),
            pdp_http,
        )
        .map_err(|e| GatewayError::Url(format!("pdp: {e}")))?;
        let jwt = JwtConfig::for_trustgate(&config.issuer, &config.audience)
            .map_err(|e| GatewayError::Url(format!("issuer: {e}")))?;
        let clock = Arc::new(SystemClock);
        // The gateway's client introspects at trustgate, each use with its own answer cache.
        let introspector = |ttl_secs: u64| -> Result<Introspector, GatewayError> {
            Ok(Introspector::new(
                IntrospectionConfig {
                    url: url::Url::parse(&format!(
                        "{}/oauth2/introspect",
                        config.issuer.trim_end_matches('/')
                    ))
                    .map_err(|e| GatewayError::Url(format!("issuer: {e}")))?,
                    client_id: config.client.id.clone(),
                    client_secret: client_secret.clone(),
                    ttl: Duration::from_secs(ttl_secs),
                },
                issuer_http.clone(),
                clock.clone(),
            ))
        };
        let jwt_liveness = (config.liveness_ttl_secs > 0)
            .then(|| introspector(config.liveness_ttl_secs))
            .transpose()?;
        // JWT access tokens always; API keys only with `[api_keys]`: introspected, then
        // exchanged with the key as the subject token. Without it pep refuses a key (or any
        // opaque token) as `opaque_token_not_accepted` (401), and without a session resolver a
        // cookie is no credential (the gateway is for bearer callers).
        let keys = config
            .api_keys
            .map(|keys| introspector(keys.introspection_ttl_secs))
            .transpose()?;
        // One stream from trustgate carries the store's revision (for the decision cache) and
        // its credential epoch: every introspection cache is emptied when anything is revoked.
        let feed = pdp
            .follow_revisions(Duration::from_millis(config.pdp.timeout_ms))
            .map_err(|e| GatewayError::Http(e.0))?;
        for introspector in jwt_liveness.iter().chain(keys.iter()) {
            introspector.follow_revocations(&feed);
        }
        let dpop = config.dpop.as_ref().map(|dpop| {
            DpopVerifier::new(
                DpopConfig {
                    max_age: Duration::from_secs(dpop.max_age_secs),
                    ..DpopConfig::for_origin(dpop.origin.clone())
                },
                clock.clone(),
            )
        });
        let authenticator = Authenticator {
            jwt: Some(JwtVerifier::new(jwt, issuer_http.clone(), clock.clone())),
            introspection: keys,
            jwt_liveness,
            dpop,
            ..Authenticator::default()
        };
        let rules = config.rules()?;
        let mut route_upstream = HashMap::new();
        for (rule, upstream) in &rules {
            route_upstream.insert((rule.method().clone(), rule.path().to_owned()), *upstream);
        }
        let routes = RouteTable::new(rules.into_iter().map(|(rule, _)| rule))?;
        let mut tasks = Vec::new();
        let pdp: Arc<dyn DecisionPoint> = if config.pdp.decision_cache_ttl_secs > 0 {
            Arc::new(DecisionCache::new(
                Arc::new(pdp),
                feed.clone(),
                DecisionCacheConfig {
                    ttl: Duration::from_secs(config.pdp.decision_cache_ttl_secs),
                    max_entries: config.pdp.decision_cache_max_entries,
                },
            ))
        } else {
            Arc::new(pdp)
        };
        let mut builder = Pep::builder(&config.realm, routes, authenticator, pdp)
            .sink(sink)
            .clock(clock);
        if let Some(limit) = config.rate_limit {
            let limiter = PrincipalLimiter::new(limit);
            builder = builder.admission(Arc::new(limiter.clone()));
            tasks.push(Task(tokio::spawn(async move {
                let mut every = tokio::time::interval(LIMITER_SWEEP);
                loop {
                    every.tick().await;
                    limiter.retain_recent();
                }
            })));
        }
        let pep = builder.build_pep();
        let token_url = url::Url::parse(&format!(
            "{}/oauth2/token",
            config.issuer.trim_end_matches('/')
        ))
        .map_err(|e| GatewayError::Url(format!("issuer: {e}")))?;
        let exchanger = TokenExchanger::new(
            token_url,
            config.client.id.clone(),
            client_secret,
            issuer_http,
        );
        let mut upstreams = Vec::new();
        for u in &config.upstreams {
            let (upstream, task) = Upstream::start(u)?;
            upstreams.push(upstream);
            tasks.extend(task);
        }
        Ok(State {
            config,
            pep,
            route_upstream,
            upstreams,
            exchanger,
            _feed: feed,
            _tasks: tasks,
        })
    }

    /// Serves one request.
    pub(crate) async fn handle(&self, request: Request<Body>) -> Response<Body> {
        let (mut parts, body) = request.into_parts();
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID)
            .map(str::to_owned);
        let request_id = request_id.as_deref();
        // Over mutual TLS, the client certificate a bound token must come with.
        if let Some(der) = parts
            .extensions
            .get::<trustgate_listener::mtls::PeerCertificates>()
            .and_then(trustgate_listener::mtls::PeerCertificates::end_entity)
        {
            let presented = PresentedCertificate::from_der(der);
            parts.extensions.insert(presented);
        }
        // The record is written once the gateway knows what the client gets: an allowed
        // request whose credential the token exchange then refuses is recorded as refused.
        let (decided, record) = self.pep.decide_pending(&parts).await;
        let principal = match decided {
            Ok(principal) => principal,
            Err(reason) => {
                drop(record);
                return answer::render(self.pep.realm(), &reason, request_id);
            }
        };
        // An allowed request matched a rule; the rule names its upstream.
        let Some(upstream) = self
            .pep
            .routes()
            .find(&parts.method, parts.uri.path())
            .and_then(|m| {
                self.route_upstream
                    .get(&(m.rule.method().clone(), m.rule.path().to_owned()))
            })
            .and_then(|i| self.upstreams.get(*i))
        else {
            return failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                "route_without_upstream",
                "the route has no upstream",
                request_id,
            );
        };
        if !upstream.healthy.load(Ordering::Relaxed) {
            return failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_unhealthy",
                "the upstream failed its health check",
                request_id,
            );
        }
        let internal = match &principal {
            None => None,
            Some(p) => {
                // A JWT is one of trustgate's access tokens; an introspected credential is
                // forwarded only when introspection said it is an API key. Anything else (an
                // opaque access token of another kind) is refused rather than forwarded without
                // an identity the upstream could verify.
                let subject_type = match (p.method, p.kind) {
                    (AuthMethod::Jwt, _) => Some(SubjectType::AccessToken),
                    (AuthMethod::Introspection, trustgate_pep::PrincipalKind::ApiKey) => {
                        Some(SubjectType::ApiKey)
                    }
                    _ => None,
                };
                let (Some(subject_type), Some(token)) =
                    (subject_type, presented_credential(&parts.headers))
                else {
                    record.overrule(trustgate_pep::Reason::InvalidToken {
                        why: "credential_not_forwardable".into(),
                    });
                    return failure(
                        StatusCode::UNAUTHORIZED,
                        "credential_not_forwardable",
                        "only bearer access tokens and API keys can be forwarded by the gateway",
                        request_id,
                    );
                };
                match self
                    .exchanger
                    .token_for(token, subject_type, &upstream.audience)
                    .await
                {
                    Ok(token) => Some(token),
                    Err(ExchangeError::Refused(why)) => {
                        tracing::info!(target: "trustgate_gateway", upstream = %upstream.name, %why, "token exchange refused the caller's token");
                        let reason = trustgate_pep::Reason::InvalidToken {
                            why: "token_exchange_refused".into(),
                        };
                        let answer = answer::render(self.pep.realm(), &reason, request_id);
                        record.overrule(reason);
                        return answer;
                    }
                    Err(ExchangeError::Failed(why)) => {
                        tracing::warn!(target: "trustgate_gateway", upstream = %upstream.name, %why, "token exchange failed");
                        return failure(
                            StatusCode::BAD_GATEWAY,
                            "token_exchange_failed",
                            "the gateway could not obtain a token for the upstream",
                            request_id,
                        );
                    }
                }
            }
        };
        drop(record);
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| a.ip());
        let upgrade = headers::upgrade_protocol(&parts.headers);
        let client_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
        headers::strip_hop_by_hop(&mut parts.headers);
        headers::strip_identity(&mut parts.headers, &self.config.strip_headers);
        let https = parts
            .extensions
            .get::<trustgate_listener::ClientAddress>()
            .is_some_and(|client| client.0.https);
        headers::set_forwarded(&mut parts.headers, peer, https);
        if let Some(token) = internal
            && let Ok(value) = HeaderValue::try_from(format!("Bearer {token}"))
        {
            parts.headers.insert(AUTHORIZATION, value);
        }
        if let Some(protocol) = &upgrade {
            parts
                .headers
                .insert(CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(UPGRADE, protocol.clone());
        }
        let Some(uri) = upstream.uri(&parts.uri) else {
            return failure(
                StatusCode::BAD_REQUEST,
                "bad_target",
                "the request target cannot be forwarded",
                request_id,
            );
        };
        parts.uri = uri;
        parts.extensions = http::Extensions::new();
        let outgoing = Request::from_parts(parts, body);
        let response = match tokio::time::timeout(
            upstream.request_timeout,
            upstream.client.request(outgoing),
        )
        .await
        {
            Err(_) => {
                tracing::warn!(target: "trustgate_gateway", upstream = %upstream.name, "upstream timed out");
                return failure(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    "the upstream did not answer in time",
                    request_id,
                );
            }
            Ok(Err(e)) => {
                tracing::warn!(target: "trustgate_gateway", upstream = %upstream.name, error = %e, connect = e.is_connect(), "upstream request failed");
                return failure(
                    StatusCode::BAD_GATEWAY,
                    "upstream_unreachable",
                    "the upstream could not be reached",
                    request_id,
                );
            }
            Ok(Ok(response)) => response,
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            return switch_protocols(response, client_upgrade, &upstream.name);
        }
        let (mut parts, body) = response.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        Response::from_parts(parts, Body::new(body))
    }
}

/// A 101 from the upstream: answer the client 101 with the upstream's upgrade headers, then
/// copy bytes both ways between the two upgraded connections.
fn switch_protocols(
    mut response: Response<hyper::body::Incoming>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    upstream: &str,
) -> Response<Body> {
    let Some(client_upgrade) = client_upgrade else {
        // The upstream switched protocols on a request that did not ask to: refuse it.
        return failure(
            StatusCode::BAD_GATEWAY,
            "unexpected_upgrade",
            "the upstream switched protocols unasked",
            None,
        );
    };
    let upstream_upgrade = hyper::upgrade::on(&mut response);
    let name = upstream.to_owned();
    tokio::spawn(async move {
        match tokio::try_join!(client_upgrade, upstream_upgrade) {
            Ok((client, upstream)) => {
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    tracing::debug!(target: "trustgate_gateway", upstream = %name, error = %e, "upgraded connection ended");
                }
            }
            Err(e) => {
                tracing::warn!(target: "trustgate_gateway", upstream = %name, error = %e, "upgrade failed");
            }
        }
    });
    let (mut parts, _) = response.into_parts();
    let upgrade = parts.headers.get(UPGRADE).cloned();
    headers::strip_hop_by_hop(&mut parts.headers);
    parts
        .headers
        .insert(CONNECTION, HeaderValue::from_static("upgrade"));
    if let Some(upgrade) = upgrade {
        parts.headers.insert(UPGRADE, upgrade);
    }
    Response::from_parts(parts, Body::empty())
}

impl Upstream {
    fn start(config: &UpstreamConfig) -> Result<(Self, Option<Task>), GatewayError> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout()));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
            config
                .tls
                .clone()
                .unwrap_or_default()
                .client_config()
                .map_err(|e| GatewayError::Tls(format!("upstream `{}`: {e}", config.name)))?
                .as_ref()
                .clone(),
        );
        // An http:// upstream is reached in clear, an https:// one only over TLS.
        let connector = match config.url.scheme() {
            "https" => builder.https_only(),
            _ => builder.https_or_http(),
        }
        .enable_http1()
        .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let healthy = Arc::new(AtomicBool::new(true));
        let task = config.health.as_ref().map(|health| {
            let check = HealthCheck {
                url: health_url(&config.url, &health.path),
                interval: Duration::from_millis(health.interval_ms),
                timeout: Duration::from_millis(health.interval_ms).min(config.request_timeout()),
                client: client.clone(),
                healthy: healthy.clone(),
                name: config.name.clone(),
            };
            Task(tokio::spawn(check.run()))
        });
        Ok((
            Upstream {
                name: config.name.clone(),
                base: config.url.clone(),
                audience: config.audience.as_str().into(),
                client,
                request_timeout: config.request_timeout(),
                healthy,
            },
            task,
        ))
    }

    /// The upstream URI of a request target: the base's path prefix, then the request's path
    /// and query as they came (never re-encoded).
    fn uri(&self, target: &Uri) -> Option<Uri> {
        let prefix = self.base.path().trim_end_matches('/');
        let path_and_query = target.path_and_query().map_or("/", |p| p.as_str());
        // `host_str` keeps the brackets of an IPv6 address.
        let host = self.base.host_str()?;
        let port = self
            .base
            .port_or_known_default()
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        let scheme = self.base.scheme();
        format!("{scheme}://{host}{port}{prefix}{path_and_query}")
            .parse()
            .ok()
    }
}

/// `GET {url}` every `interval` through the upstream's own client (so over the same TLS): a
/// non-2xx answer, an error or no answer within `timeout` marks it unhealthy.
struct HealthCheck {
    url: url::Url,
    interval: Duration,
    timeout: Duration,
    client: Client<HttpsConnector<HttpConnector>, Body>,
    healthy: Arc<AtomicBool>,
    name: String,
}

impl HealthCheck {
    async fn run(self) {
        let mut every = tokio::time::interval(self.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let ok = self.probe().await;
            if self.healthy.swap(ok, Ordering::Relaxed) != ok {
                if ok {
                    tracing::info!(target: "trustgate_gateway", upstream = %self.name, "upstream healthy");
                } else {
                    tracing::warn!(target: "trustgate_gateway", upstream = %self.name, "upstream unhealthy");
                }
            }
        }
    }

    async fn probe(&self) -> bool {
        let Ok(request) = Request::get(self.url.as_str()).body(Body::empty()) else {
            return false;
        };
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Ok(Ok(response)) => response.status().is_success(),
            _ => false,
        }
    }
}

/// The health URL: the base's path prefix, then the health path.
fn health_url(base: &url::Url, path: &str) -> url::Url {
    let mut url = base.clone();
    let prefix = base.path().trim_end_matches('/');
    url.set_path(&format!("{prefix}{path}"));
    url
}

/// A gateway failure in trustgate's error shape (`{"code","message","request_id"}`).
pub(crate) fn failure(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: Option<&str>,
) -> Response<Body> {
    let mut body = serde_json::json!({ "code": code, "message": message });
    if let (Some(id), Some(obj)) = (request_id, body.as_object_mut()) {
        obj.insert("request_id".into(), serde_json::json!(id));
    }
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
