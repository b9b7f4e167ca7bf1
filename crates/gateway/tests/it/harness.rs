//! A real trustgate on a loopback socket (PDP store, model, tuples, users, the gateway's
//! OAuth client), a small axum upstream, and gateways in front of it.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use http::StatusCode;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use trustgate_authn::accounts::{CreateUser, RequestContext};
use trustgate_authn::api_keys::KeySpec;
use trustgate_core::{SealingKey, Secret, SystemClock};
use trustgate_gateway::{Gateway, GatewayConfig};
use trustgate_oauth::clients::{ClientRegistration, GrantType, TokenExchangePolicy};
use trustgate_pep::{DecisionRecord, JwtConfig, JwtVerifier, Principal};
use trustgate_server::{AppState, Config, router};
use trustgate_store::testing::TestDatabase;
use trustgate_store_api::KeyOwner;
use trustgate_tokens::{AccessTokenClaims, Algorithm, Audience};

/// The gateway's audience: callers' tokens are for it.
pub const GW_AUD: &str = "https://gateway.test";
/// The upstream's audience: the internal tokens are for it.
pub const APP_AUD: &str = "https://app.internal";
pub const MODEL: &str = "model
  schema 1.1
type user
type service
type course
  relations
    define editor: [user, service]
    define viewer: [user, service] or editor
";

/// Keeps every decision record.
pub type Records = trustgate_pep::MemorySink;

/// The newest record, which a test expects to exist.
pub fn last(records: &Records) -> DecisionRecord {
    records.last().expect("a record")
}

pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    addr
}

/// A port nothing listens on.
pub async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    listener.local_addr().expect("addr")
}

pub struct Trustgate {
    _db: TestDatabase,
    pub state: AppState,
    pub base: String,
    pub issuer: String,
    pub admin_token: String,
    pub store_id: String,
    pub gateway_client: (String, String),
    pub rp_client: String,
    pub alice: String,
    pub bob: String,
    pub dir: tempfile::TempDir,
}

impl Trustgate {
    pub async fn start() -> Trustgate {
        let db = TestDatabase::sqlite().await;
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let issuer = format!("http://{addr}");
        let mut config = Config::default();
        config.oauth.issuer = Some(issuer.clone());
        let state = AppState::start(
            db.store.clone(),
            Arc::new(SystemClock),
            config,
            SealingKey::generate(),
        )
        .await
        .expect("state");
        let mut ids = Vec::new();
        for name in ["alice", "bob"] {
            let user = state
                .accounts
                .create_user(
                    CreateUser {
                        username: name.into(),
                        email: format!("{name}@example.com"),
                        password: Some(Secret::new("correct horse battery staple 42")),
                        ..CreateUser::default()
                    },
                    "test",
                    &RequestContext::default(),
                )
                .await
                .expect("user");
            ids.push(user.id);
        }
        let admin_token = format!("tg_test_{}", uuid::Uuid::new_v4().simple());
        trustgate_server::bootstrap::ensure_admin_token(&state, &admin_token)
            .await
            .expect("admin token");
        let app = router(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        });
        let base = format!("http://{addr}/");
        let http = reqwest::Client::new();
        let admin = |method: reqwest::Method, path: String, body: Value| {
            let request = http
                .request(method, format!("{base}{path}"))
                .bearer_auth(&admin_token)
                .json(&body);
            async move {
                let r = request.send().await.expect("admin call");
                let status = r.status();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                assert!(status.is_success(), "{path}: {status} {body}");
                body
            }
        };
        let store = admin(
            reqwest::Method::POST,
            "stores".into(),
            json!({ "name": "app" }),
        )
        .await;
        let store_id = store["id"].as_str().expect("store id").to_owned();
        let model = trustgate_authz::dsl::parse(MODEL).expect("model");
        admin(
            reqwest::Method::POST,
            format!("stores/{store_id}/authorization-models"),
            serde_json::to_value(&model).expect("json"),
        )
        .await;
        let tuples = [
            (format!("user:{}", ids[0]), "viewer", "course:1"),
            (format!("user:{}", ids[0]), "editor", "course:2"),
        ];
        let keys: Vec<Value> = tuples
            .iter()
            .map(|(u, r, o)| json!({ "user": u, "relation": r, "object": o }))
            .collect();
        admin(
            reqwest::Method::POST,
            format!("stores/{store_id}/write"),
            json!({ "writes": { "tuple_keys": keys } }),
        )
        .await;
        let mut gw = ClientRegistration::named("Gateway");
        gw.grant_types = vec![GrantType::TokenExchange];
        gw.resource_audiences = vec![GW_AUD.into()];
        gw.scopes = vec!["courses:read".into(), "courses:write".into()];
        gw.token_exchange = Some(TokenExchangePolicy {
            audiences: vec![APP_AUD.into()],
            // Callers' API keys are exchanged too (a gateway with `[api_keys]` needs it).
            api_keys: true,
        });
        let (client, secret) = state.clients.create(gw).await.expect("gateway client");
        let secret = secret.expect("confidential").expose().to_owned();
        let mut rp = ClientRegistration::named("RP");
        rp.redirect_uris = vec!["https://rp.example/cb".into()];
        rp.audience = vec![GW_AUD.into()];
        rp.scopes
            .extend(["courses:read", "courses:write"].map(String::from));
        let (rp, _) = state.clients.create(rp).await.expect("rp client");
        Trustgate {
            _db: db,
            state,
            base,
            issuer,
            admin_token,
            store_id,
            gateway_client: (client.id, secret),
            rp_client: rp.id,
            alice: ids[0].clone(),
            bob: ids[1].clone(),
            dir: tempfile::tempdir().expect("dir"),
        }
    }

    /// `/admin/v1/...` (and the OpenFGA API) as the bootstrap administrator; the answer's
    /// body, after asserting success.
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.admin_token);
        if !body.is_null() {
            request = request.json(&body);
        }
        let r = request.send().await.expect("admin call");
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    /// A new service account: its id.
    pub async fn service_account(&self, name: &str) -> String {
        let created = self
            .admin(
                reqwest::Method::POST,
                "admin/v1/service-accounts",
                json!({ "name": name }),
            )
            .await;
        created["id"].as_str().expect("id").to_owned()
    }

    /// Writes `(user, relation, object)` tuples to the store.
    pub async fn write(&self, tuples: &[(&str, &str, &str)]) {
        let keys: Vec<Value> = tuples
            .iter()
            .map(|(u, r, o)| json!({ "user": u, "relation": r, "object": o }))
            .collect();
        self.admin(
            reqwest::Method::POST,
            &format!("stores/{}/write", self.store_id),
            json!({ "writes": { "tuple_keys": keys } }),
        )
        .await;
    }

    /// A key of service account `id` limited to `scopes` (application scopes, which the admin
    /// API's system roles do not spell, so through trustgate's key service): (key, key id).
    pub async fn api_key(&self, id: &str, scopes: &[&str]) -> (String, String) {
        let issued = self
            .state
            .api_keys
            .issue(
                &KeyOwner::Service(id.to_owned()),
                &KeySpec {
                    description: "gateway test".into(),
                    scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                    ..KeySpec::default()
                },
            )
            .await
            .expect("issue");
        (issued.key.expose().to_owned(), issued.record.id)
    }

    /// Revokes a key through the admin API.
    pub async fn revoke_key(&self, key_id: &str) {
        self.admin(
            reqwest::Method::DELETE,
            &format!("admin/v1/api-keys/{key_id}"),
            Value::Null,
        )
        .await;
    }

    /// An access token for `sub` as trustgate issues them to the RP, for the gateway.
    pub fn token(&self, sub: &str, edit: impl FnOnce(&mut AccessTokenClaims)) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut claims = AccessTokenClaims {
            iss: self.issuer.clone(),
            sub: sub.into(),
            aud: Audience::One(GW_AUD.into()),
            exp: now + 300,
            iat: now,
            nbf: None,
            jti: uuid::Uuid::new_v4().to_string(),
            client_id: self.rp_client.clone(),
            scope: Some("courses:read courses:write".into()),
            auth_time: Some(now - 60),
            acr: Some("1".into()),
            amr: Some(vec!["pwd".into()]),
            uv: None,
            gid: None,
            sid: None,
            act: None,
            may_act: None,
            key_id: None,
            cnf: None,
        };
        edit(&mut claims);
        self.state
            .oauth
            .keys()
            .sign(Algorithm::ES256, "at+jwt", &claims)
            .expect("sign")
    }

    /// Verifies an internal token as the upstream would: trustgate's JWKS, aud = the app.
    pub async fn verify_internal(&self, token: &str) -> Principal {
        let config = JwtConfig::for_trustgate(&self.issuer, APP_AUD).expect("config");
        JwtVerifier::new(config, reqwest::Client::new(), Arc::new(SystemClock))
            .verify(token)
            .await
            .expect("a valid internal token")
    }

    /// A gateway configuration: `upstreams` is the TOML of the `[[upstream]]` tables.
    pub fn config(&self, pdp_base: &str, extra: &str, upstreams: &str) -> GatewayConfig {
        let secret = self.dir.path().join("client-secret");
        std::fs::write(&secret, &self.gateway_client.1).expect("secret");
        let key = self.dir.path().join("pdp-key");
        std::fs::write(&key, &self.admin_token).expect("key");
        let text = format!(
            r#"
listen = "127.0.0.1:0"
issuer = "{issuer}"
audience = "{GW_AUD}"
{extra}
[client]
id = "{client}"
secret_file = "{secret}"
[pdp]
url = "{pdp_base}"
store_id = "{store}"
api_key_file = "{key}"
timeout_ms = 1000
{upstreams}
"#,
            issuer = self.issuer,
            client = self.gateway_client.0,
            secret = secret.display(),
            store = self.store_id,
            key = key.display(),
        );
        GatewayConfig::from_toml(&text).expect("gateway config")
    }

    pub async fn gateway(&self, config: GatewayConfig) -> (Arc<Gateway>, Arc<Records>, SocketAddr) {
        let (gateway, records, addr, _) = self.gateway_with_mtls(config).await;
        (gateway, records, addr)
    }

    /// [`gateway`](Self::gateway), with the mutual-TLS listener's address when `[mtls]` sets
    /// one (bound on loopback, any port).
    pub async fn gateway_with_mtls(
        &self,
        config: GatewayConfig,
    ) -> (Arc<Gateway>, Arc<Records>, SocketAddr, Option<SocketAddr>) {
        let records = Arc::new(Records::default());
        let mtls = config.mtls.listen.is_some();
        let gateway = Arc::new(Gateway::new(config, records.clone()).expect("gateway"));
        // Served as `trustgate gateway` serves it: through trustgate's listener.
        let bind = || tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0));
        let main = bind().await.expect("bind");
        let mutual = match mtls {
            true => Some(bind().await.expect("bind")),
            false => None,
        };
        let addr = main.local_addr().expect("addr");
        let mutual_addr = mutual.as_ref().map(|m| m.local_addr().expect("addr"));
        tokio::spawn(trustgate_gateway::serve(
            trustgate_gateway::Listeners { main, mutual },
            gateway.clone(),
            std::future::pending(),
        ));
        (gateway, records, addr, mutual_addr)
    }
}

/// What the upstream saw and can be told.
#[derive(Clone)]
pub struct UpstreamProbe {
    /// Each first body frame of an upload, as it arrives.
    pub first_frame: mpsc::UnboundedSender<usize>,
    /// Released by the test when an upload may finish.
    pub healthy: Arc<std::sync::atomic::AtomicBool>,
}

/// The upstream: echoes what it received; `/slow` sleeps; `/upload` counts a streamed body
/// and reports its first frame at once; `/ws` upgrades to an echo protocol; `/health`
/// answers per the probe's flag.
pub async fn upstream() -> (SocketAddr, mpsc::UnboundedReceiver<usize>, UpstreamProbe) {
    let (app, rx, probe) = upstream_app();
    (serve(app).await, rx, probe)
}

/// The upstream's routes, to serve some other way.
pub fn upstream_app() -> (Router, mpsc::UnboundedReceiver<usize>, UpstreamProbe) {
    let (tx, rx) = mpsc::unbounded_channel();
    let probe = UpstreamProbe {
        first_frame: tx,
        healthy: Arc::new(std::sync::atomic::AtomicBool::new(true)),
    };
    let app = Router::new()
        .route("/courses/{id}", any(echo))
        .route("/public/info", get(echo))
        .route("/slow/{id}", get(slow))
        .route("/upload/{id}", post(upload))
        .route("/ws/{id}", get(ws))
        .route("/health", get(health))
        .with_state(probe.clone());
    (app, rx, probe)
}

async fn echo(request: Request) -> Response {
    let headers: serde_json::Map<String, Value> = request
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                Value::from(v.to_str().unwrap_or("<binary>")),
            )
        })
        .collect();
    axum::Json(json!({
        "method": request.method().as_str(),
        "uri": request.uri().to_string(),
        "headers": headers,
    }))
    .into_response()
}

async fn slow(Path(id): Path<u64>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(id)).await;
    "slow answer"
}

async fn health(State(probe): State<UpstreamProbe>) -> StatusCode {
    if probe.healthy.load(std::sync::atomic::Ordering::SeqCst) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn upload(State(probe): State<UpstreamProbe>, request: Request) -> String {
    let mut body = request.into_body();
    let mut total = 0usize;
    let mut frames = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return "broken".into();
        };
        if let Some(data) = frame.data_ref() {
            if frames == 0 {
                let _ = probe.first_frame.send(data.len());
            }
            frames += 1;
            total += data.len();
        }
    }
    format!("{total} bytes in {frames} frames")
}

async fn ws(request: Request) -> Response {
    let mut request = request;
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let mut io = hyper_util::rt::TokioIo::new(upgraded);
            let mut buf = [0u8; 1024];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "echo")
        .body(Body::empty())
        .expect("response")
}

/// One raw HTTP/1.1 exchange head: writes `head`, reads until the end of the response head.
pub async fn raw_head(stream: &mut tokio::net::TcpStream, head: &str) -> String {
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while !out.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
            .await
            .expect("head in time")
            .expect("read");
        assert!(
            n > 0,
            "closed before the head: {}",
            String::from_utf8_lossy(&out)
        );
        out.push(byte[0]);
    }
    String::from_utf8_lossy(&out).into_owned()
}
