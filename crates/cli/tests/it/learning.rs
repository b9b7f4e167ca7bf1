//! The learning-platform example end to end: `trustgate demo` (the binary) seeds trustgate and
//! serves the example; the test signs users in through trustgate's real pages (authorization
//! code + PKCE, password, TOTP), then runs the whole enforcement matrix against the example's
//! API behind the `pep` layer — an in-process instance of the example built from the demo's
//! summary, so that each decision's record can be read — and checks the exact status, the
//! challenge and the recorded reason of every case.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower::ServiceExt;
use trustgate_core::{Clock, ManualClock, Secret};
use trustgate_learning_platform::{
    API_AUDIENCE, LearningPlatform, Parts, Settings, api::Catalogue, shared,
};
use trustgate_pep::{DecisionRecord, HttpDecisionPoint, Reason};

use trustgate_testkit::html::hidden;

use crate::support::{E2E, browser_available, chromium, run, trustgate};

/// Every decision record, in order.
type Records = trustgate_pep::MemorySink;

/// `trustgate demo` as a child process, and what it printed into its summary.
pub struct Demo {
    child: Child,
    pub summary: Value,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    /// Starts the demo on ephemeral ports and waits for its summary.
    pub fn start(dir: &Path) -> Demo {
        let summary_path = dir.join("summary.json");
        let mut child = trustgate()
            .args([
                "demo",
                "--listen",
                "127.0.0.1:0",
                "--app-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--summary")
            .arg(&summary_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn trustgate demo");
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(text) = std::fs::read_to_string(&summary_path)
                && let Ok(summary) = serde_json::from_str::<Value>(&text)
            {
                return Demo { child, summary };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("trustgate demo exited early: {status}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "trustgate demo did not write its summary"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn get(&self, key: &str) -> String {
        self.summary[key]
            .as_str()
            .unwrap_or_else(|| panic!("summary has no {key}"))
            .to_owned()
    }

    /// The demo users: name → user id.
    pub fn users(&self) -> BTreeMap<String, String> {
        serde_json::from_value(self.summary["users"].clone()).expect("users")
    }

    pub fn user(&self, name: &str) -> String {
        self.summary["users"][name]
            .as_str()
            .unwrap_or_else(|| panic!("no user {name}"))
            .to_owned()
    }
}

/// trustgate seen from the test: its pages and endpoints over HTTP.
pub struct Trustgate {
    pub base: String,
    admin_token: String,
    http: reqwest::Client,
    discovery: Value,
}

/// A cookie jar that keeps name=value pairs (enough for trustgate's own pages).
#[derive(Debug, Default, Clone)]
pub struct Jar(BTreeMap<String, String>);

impl Jar {
    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn take(&mut self, response: &reqwest::Response) {
        for cookie in response.headers().get_all("set-cookie") {
            let Ok(cookie) = cookie.to_str() else {
                continue;
            };
            let pair = cookie.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() || cookie.contains("Max-Age=0") {
                    self.0.remove(name);
                } else {
                    self.0.insert(name.to_owned(), value.to_owned());
                }
            }
        }
    }
}

/// The form of a page that posts to `action`, if it has one.
fn form<'b>(body: &'b str, action: &str) -> Option<&'b str> {
    let start = body.find(&format!("action=\"{action}\""))?;
    let rest = &body[start..];
    Some(&rest[..rest.find("</form>").unwrap_or(rest.len())])
}

/// How a user signs in.
pub struct Login<'a> {
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub redirect_uri: &'a str,
    pub username: &'a str,
    pub password: &'a str,
    /// The base32 TOTP secret, when the user has an authenticator app.
    pub totp: Option<&'a str>,
    /// Extra authorization request parameters (`acr_values`, `max_age`).
    pub extra: &'a [(&'a str, &'a str)],
}

/// A signed-in user: the access token and trustgate's cookies.
pub struct SignedIn {
    pub access_token: String,
    pub jar: Jar,
}

impl Trustgate {
    pub async fn new(base: &str, admin_token: &str) -> Trustgate {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        let discovery: Value = http
            .get(format!("{base}/.well-known/openid-configuration"))
            .send()
            .await
            .expect("discovery")
            .json()
            .await
            .expect("discovery json");
        Trustgate {
            base: base.to_owned(),
            admin_token: admin_token.to_owned(),
            http,
            discovery,
        }
    }

    fn endpoint(&self, name: &str) -> String {
        self.discovery[name]
            .as_str()
            .unwrap_or_else(|| panic!("discovery has no {name}"))
            .to_owned()
    }

    fn absolute(&self, location: &str) -> String {
        if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location.to_owned()
        }
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.admin_token)
            .json(&body)
            .send()
            .await
            .expect("admin call");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    async fn get(&self, jar: &mut Jar, url: &str) -> reqwest::Response {
        let response = self
            .http
            .get(url)
            .header("cookie", jar.header())
            .send()
            .await
            .expect("get");
        jar.take(&response);
        response
    }

    async fn post(&self, jar: &mut Jar, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", jar.header())
            .header("origin", &self.base)
            .form(form)
            .send()
            .await
            .expect("post");
        jar.take(&response);
        response
    }

    /// Signs in through the pages and returns the code flow's access token.
    pub async fn sign_in(&self, login: &Login<'_>, jar: Option<Jar>) -> SignedIn {
        let mut jar = jar.unwrap_or_default();
        let verifier = trustgate_core::secret::generate_token("")
            .expose()
            .to_owned();
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let mut url = url::Url::parse(&self.endpoint("authorization_endpoint")).expect("url");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", login.client_id)
            .append_pair("redirect_uri", login.redirect_uri)
            .append_pair("scope", "openid profile learning")
            .append_pair("state", "s")
            .append_pair("nonce", "n")
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .extend_pairs(login.extra.iter().copied());
        let mut response = self.get(&mut jar, url.as_str()).await;
        let mut code = None;
        for _ in 0..12 {
            if response.status().is_redirection() {
                let location = response.headers()["location"]
                    .to_str()
                    .expect("location")
                    .to_owned();
                if location.starts_with(login.redirect_uri) {
                    let url = url::Url::parse(&location).expect("callback url");
                    code = url
                        .query_pairs()
                        .find(|(k, _)| k == "code")
                        .map(|(_, v)| v.into_owned());
                    assert!(code.is_some(), "no code: {location}");
                    break;
                }
                response = self.get(&mut jar, &self.absolute(&location)).await;
                continue;
            }
            let status = response.status();
            let body = response.text().await.expect("page");
            assert_eq!(status, StatusCode::OK, "{body}");
            response = if let Some(mfa) = form(&body, "/login/mfa") {
                let secret = login.totp.expect("a second factor is asked for");
                let code = totp_code(secret);
                let (csrf, next) = (hidden(mfa, "csrf"), hidden(mfa, "next"));
                self.post(
                    &mut jar,
                    "/login/mfa",
                    &[("csrf", &csrf), ("next", &next), ("code", &code)],
                )
                .await
            } else if let Some(reauth) = form(&body, "/account/reauth") {
                // A step-up over an existing session: the password again, with the code.
                let secret = login.totp.expect("a step-up asks for the second factor");
                let code = totp_code(secret);
                let (csrf, next) = (hidden(reauth, "csrf"), hidden(reauth, "next"));
                self.post(
                    &mut jar,
                    "/account/reauth",
                    &[
                        ("csrf", &csrf),
                        ("next", &next),
                        ("password", login.password),
                        ("code", &code),
                    ],
                )
                .await
            } else if let Some(login_form) = form(&body, "/login") {
                let (csrf, next) = (hidden(login_form, "csrf"), hidden(login_form, "next"));
                self.post(
                    &mut jar,
                    "/login",
                    &[
                        ("csrf", &csrf),
                        ("next", &next),
                        ("username", login.username),
                        ("password", login.password),
                    ],
                )
                .await
            } else {
                panic!("unexpected page in the sign-in: {body}");
            };
        }
        let code = code.expect("the sign-in ended at the redirect URI");
        let token: Value = self
            .http
            .post(self.endpoint("token_endpoint"))
            .basic_auth(login.client_id, Some(login.client_secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", login.redirect_uri),
                ("code_verifier", verifier.as_str()),
            ])
            .send()
            .await
            .expect("token")
            .json()
            .await
            .expect("token json");
        SignedIn {
            access_token: token["access_token"]
                .as_str()
                .unwrap_or_else(|| panic!("no access token: {token}"))
                .to_owned(),
            jar,
        }
    }

    /// Turns on an authenticator app for the signed-in user; returns its base32 secret.
    pub async fn enrol_totp(&self, jar: &mut Jar) -> String {
        let account = self
            .get(jar, &format!("{}/account", self.base))
            .await
            .text()
            .await
            .expect("account page");
        let start = form(&account, "/account/totp").expect("the account page offers TOTP");
        let mut setup = self
            .post(jar, "/account/totp", &[("csrf", &hidden(start, "csrf"))])
            .await;
        if setup.status().is_redirection() {
            let location = setup.headers()["location"]
                .to_str()
                .expect("location")
                .to_owned();
            setup = self.get(jar, &self.absolute(&location)).await;
        }
        assert_eq!(setup.status(), StatusCode::OK);
        let setup = setup.text().await.expect("setup page");
        let secret = setup
            .split("id=\"totp-secret\">")
            .nth(1)
            .and_then(|rest| rest.split('<').next())
            .expect("the secret is shown")
            .trim()
            .to_owned();
        let confirm = form(&setup, "/account/totp/confirm").expect("confirm form");
        let code = trustgate_authn::totp::TotpSecret::from_base32(&secret)
            .expect("base32")
            .code_at(time::OffsetDateTime::now_utc());
        let done = self
            .post(
                jar,
                "/account/totp/confirm",
                &[("csrf", &hidden(confirm, "csrf")), ("code", &code)],
            )
            .await;
        assert!(done.status().is_redirection(), "{}", done.status());
        secret
    }
}

/// The code of the next time step (the enrolment spent the current one; one step of skew is
/// accepted and is not a replay).
fn totp_code(secret: &str) -> String {
    trustgate_authn::totp::TotpSecret::from_base32(secret)
        .expect("base32")
        .code_at(time::OffsetDateTime::now_utc() + time::Duration::seconds(30))
}

/// What the API answered.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub challenge: Option<String>,
    pub body: Value,
}

/// A way into the example's API: the in-process `pep` layer, or the gateway over HTTP.
#[async_trait::async_trait]
pub trait Door: Send + Sync {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer;
    /// The record of the last decision.
    fn last(&self) -> DecisionRecord;
}

/// The example's API behind its `pep` layer, called with `oneshot`.
pub struct Layer {
    api: axum::Router,
    records: Arc<Records>,
}

#[async_trait::async_trait]
impl Door for Layer {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(json) => {
                request = request.header("content-type", "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        let response = self
            .api
            .clone()
            .oneshot(request.body(body).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().expect("ascii").to_owned());
        let bytes = to_bytes(response.into_body(), 1 << 20).await.expect("body");
        Answer {
            status,
            challenge,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    fn last(&self) -> DecisionRecord {
        self.records.last().expect("a decision was recorded")
    }
}

/// `trustgate gateway` in front of the example's API in upstream mode, over real sockets.
pub struct GatewayDoor {
    base: String,
    http: reqwest::Client,
    records: Arc<Records>,
}

#[async_trait::async_trait]
impl Door for GatewayDoor {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        self.call_with(method, path, token, body, &[]).await
    }

    fn last(&self) -> DecisionRecord {
        self.records.last().expect("a decision was recorded")
    }
}

impl GatewayDoor {
    async fn call_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(json) = body {
            request = request.json(&json);
        }
        let response = request.send().await.expect("the gateway answers");
        let status = response.status();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().expect("ascii").to_owned());
        let body = response.json().await.unwrap_or(Value::Null);
        Answer {
            status,
            challenge,
            body,
        }
    }
}

/// Serves `app` on an ephemeral loopback port.
async fn serve(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await;
    });
    addr
}

/// The example's gateway route set (`gateway.toml`) pointed at this demo: the gateway's own
/// client (registered here with the token exchange grant), the upstream in upstream mode.
async fn gateway(demo: &Demo, tg: &Trustgate, dir: &Path, pdp_url: Option<&str>) -> GatewayDoor {
    let client = tg
        .admin(
            reqwest::Method::POST,
            "/admin/v1/clients",
            json!({
                "name": "gateway",
                "auth_method": "client_secret_basic",
                "grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange"],
                "scopes": ["openid", "profile", "learning"],
                "resource_audiences": [API_AUDIENCE],
                "token_exchange": { "audiences": ["learning-internal"] },
            }),
        )
        .await;
    let client_id = client["client_id"].as_str().expect("id").to_owned();
    let secret = dir.join(format!("gateway-secret-{client_id}"));
    std::fs::write(&secret, client["client_secret"].as_str().expect("secret")).expect("write");
    let key = dir.join("pdp-key");
    std::fs::write(&key, demo.get("pdp_key")).expect("write");
    let upstream = trustgate_learning_platform::upstream::router(
        trustgate_learning_platform::upstream::UpstreamSettings {
            trustgate_url: url::Url::parse(&format!("{}/", demo.get("trustgate"))).expect("url"),
            audience: "learning-internal".into(),
            gateway_client_id: client_id.clone(),
        },
        shared(Catalogue::demo(&demo.users())),
        None,
    )
    .await
    .expect("upstream");
    let upstream = serve(upstream).await;
    let mut config =
        trustgate_gateway::GatewayConfig::from_toml(trustgate_learning_platform::GATEWAY_TOML)
            .expect("gateway.toml");
    config.issuer = demo.get("trustgate");
    config.client.id = client_id;
    config.client.secret_env = None;
    config.client.secret_file = Some(secret);
    config.pdp.url =
        url::Url::parse(pdp_url.unwrap_or(&format!("{}/", demo.get("trustgate")))).expect("url");
    config.pdp.store_id = demo.get("store_id");
    config.pdp.api_key_env = None;
    config.pdp.api_key_file = Some(key);
    config.upstreams[0].url = url::Url::parse(&format!("http://{upstream}")).expect("url");
    let records = Arc::new(Records::default());
    let gateway = Arc::new(
        trustgate_gateway::Gateway::new(config, records.clone()).expect("the gateway builds"),
    );
    let addr = serve(gateway.router()).await;
    GatewayDoor {
        base: format!("http://{addr}"),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client"),
        records,
    }
}

/// The example's settings from the demo's summary.
fn settings(demo: &Demo) -> Settings {
    Settings {
        trustgate_url: url::Url::parse(&format!("{}/", demo.get("trustgate"))).expect("url"),
        public_url: url::Url::parse(&demo.get("app")).expect("url"),
        client_id: demo.get("client_id"),
        client_secret: Secret::new(demo.get("client_secret")),
        api_audience: API_AUDIENCE.to_owned(),
        store_id: demo.get("store_id"),
        pdp_key: Secret::new(demo.get("pdp_key")),
    }
}

/// The in-process example, with a PDP that is trustgate's or one that is down.
async fn layer(demo: &Demo, pdp_down: bool, clock: Option<Arc<dyn Clock>>) -> Layer {
    let records = Arc::new(Records::default());
    let mut parts = Parts {
        sink: Some(records.clone()),
        clock,
        ..Parts::default()
    };
    if pdp_down {
        // A port nothing listens on: bound, then released.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port");
        parts.pdp = Some(Arc::new(
            HttpDecisionPoint::new(
                &url::Url::parse(&format!("http://{closed}/")).expect("url"),
                &demo.get("store_id"),
                Secret::new(demo.get("pdp_key")),
                None,
                reqwest::Client::builder()
                    .timeout(Duration::from_secs(2))
                    .build()
                    .expect("client"),
            )
            .expect("pdp"),
        ));
    }
    let catalogue: Catalogue = Catalogue::demo(&demo.users());
    let platform = LearningPlatform::build(settings(demo), shared(catalogue), parts)
        .await
        .expect("the example builds");
    Layer {
        api: platform.api,
        records,
    }
}

/// The tokens of the matrix, obtained through trustgate's real sign-in.
pub struct Tokens {
    pub alice: String,
    pub carol: String,
    pub dave: String,
    pub erin_password_only: String,
    pub erin_with_mfa: String,
    pub other_audience: String,
    /// Bob's token after an administrator signed him out everywhere.
    pub revoked: String,
    /// A token of a user the administrator then disabled.
    pub disabled: String,
}

pub async fn tokens(demo: &Demo, tg: &Trustgate) -> Tokens {
    let password = demo.get("password");
    let app = demo.get("app");
    let redirect_uri = format!("{app}callback");
    let (client_id, client_secret) = (demo.get("client_id"), demo.get("client_secret"));
    let login = |username: &'static str| Login {
        client_id: &client_id,
        client_secret: &client_secret,
        redirect_uri: &redirect_uri,
        username,
        password: &password,
        totp: None,
        extra: &[],
    };
    let alice = tg.sign_in(&login("alice"), None).await.access_token;
    let carol = tg.sign_in(&login("carol"), None).await.access_token;
    let dave = tg.sign_in(&login("dave"), None).await.access_token;

    // Erin signs in with her password only, then sets up an authenticator app and signs in
    // again asking for two factors (what the example does on a step-up challenge).
    let erin = tg.sign_in(&login("erin"), None).await;
    let mut jar = erin.jar.clone();
    let secret = tg.enrol_totp(&mut jar).await;
    let erin_with_mfa = tg
        .sign_in(
            &Login {
                totp: Some(&secret),
                extra: &[("acr_values", "2"), ("max_age", "600")],
                ..login("erin")
            },
            Some(jar),
        )
        .await
        .access_token;

    // A client for another API: its tokens are not for the learning platform.
    let other = tg
        .admin(
            reqwest::Method::POST,
            "/admin/v1/clients",
            json!({
                "name": "other api",
                "auth_method": "client_secret_basic",
                "redirect_uris": [redirect_uri.clone()],
                "grant_types": ["authorization_code"],
                "scopes": ["openid", "profile", "learning"],
                "skip_consent": true,
                "audience": ["https://other.example"],
            }),
        )
        .await;
    let (other_id, other_secret) = (
        other["client_id"].as_str().expect("id").to_owned(),
        other["client_secret"].as_str().expect("secret").to_owned(),
    );
    let other_audience = tg
        .sign_in(
            &Login {
                client_id: &other_id,
                client_secret: &other_secret,
                ..login("alice")
            },
            None,
        )
        .await
        .access_token;

    // Bob signs in, then an administrator signs him out everywhere; a fresh user signs in and
    // is disabled. Their tokens are not used before, so no cache has seen them active.
    let revoked = tg.sign_in(&login("bob"), None).await.access_token;
    tg.admin(
        reqwest::Method::POST,
        &format!("/admin/v1/users/{}/sessions/revoke", demo.user("bob")),
        json!({}),
    )
    .await;
    let frank = tg
        .admin(
            reqwest::Method::POST,
            "/admin/v1/users",
            json!({ "username": "frank", "email": "frank@learning.example", "password": password }),
        )
        .await;
    let disabled = tg.sign_in(&login("frank"), None).await.access_token;
    tg.admin(
        reqwest::Method::POST,
        &format!(
            "/admin/v1/users/{}/disable",
            frank["id"].as_str().expect("id")
        ),
        json!({}),
    )
    .await;
    Tokens {
        alice,
        carol,
        dave,
        erin_password_only: erin.access_token,
        erin_with_mfa,
        other_audience,
        revoked,
        disabled,
    }
}

/// One case of the matrix: the request, then exactly the status and the recorded reason.
struct Case<'a> {
    name: &'a str,
    method: &'a str,
    path: String,
    token: Option<&'a str>,
    body: Option<Value>,
    status: StatusCode,
    reason: Reason,
}

/// The whole matrix through `door`.
pub async fn run_matrix(door: &dyn Door, demo: &Demo, t: &Tokens) {
    let (alice, bob) = (demo.user("alice"), demo.user("bob"));
    let settings_body = json!({ "enrolment_open": false, "banner": "maintenance tonight" });
    let course_body = json!({ "title": "Rust, second edition" });
    let invalid = |why: &str| Reason::InvalidToken { why: why.into() };
    let cases = [
        Case {
            name: "anonymous",
            method: "GET",
            path: format!("/api/progress/{alice}"),
            token: None,
            body: None,
            status: StatusCode::UNAUTHORIZED,
            reason: Reason::MissingCredential,
        },
        Case {
            name: "student reads own progress",
            method: "GET",
            path: format!("/api/progress/{alice}"),
            token: Some(&t.alice),
            body: None,
            status: StatusCode::OK,
            reason: Reason::Allowed,
        },
        Case {
            name: "student reads another student's progress",
            method: "GET",
            path: format!("/api/progress/{bob}"),
            token: Some(&t.alice),
            body: None,
            status: StatusCode::FORBIDDEN,
            reason: Reason::PdpDeny,
        },
        Case {
            name: "instructor edits the course she owns",
            method: "PUT",
            path: "/api/courses/rust".into(),
            token: Some(&t.carol),
            body: Some(course_body.clone()),
            status: StatusCode::OK,
            reason: Reason::Allowed,
        },
        Case {
            name: "instructor edits a course he does not own",
            method: "PUT",
            path: "/api/courses/rust".into(),
            token: Some(&t.dave),
            body: Some(course_body.clone()),
            status: StatusCode::FORBIDDEN,
            reason: Reason::PdpDeny,
        },
        Case {
            name: "admin without a second factor",
            method: "PUT",
            path: "/api/settings".into(),
            token: Some(&t.erin_password_only),
            body: Some(settings_body.clone()),
            status: StatusCode::UNAUTHORIZED,
            reason: Reason::StepUp {
                max_age: None,
                acr_values: vec!["2".into()],
            },
        },
        Case {
            name: "admin with a recent second factor",
            method: "PUT",
            path: "/api/settings".into(),
            token: Some(&t.erin_with_mfa),
            body: Some(settings_body.clone()),
            status: StatusCode::OK,
            reason: Reason::Allowed,
        },
        Case {
            name: "token for another audience",
            method: "GET",
            path: format!("/api/progress/{alice}"),
            token: Some(&t.other_audience),
            body: None,
            status: StatusCode::UNAUTHORIZED,
            reason: invalid("token_audience_wrong"),
        },
        Case {
            name: "revoked session",
            method: "GET",
            path: format!("/api/progress/{bob}"),
            token: Some(&t.revoked),
            body: None,
            status: StatusCode::UNAUTHORIZED,
            reason: invalid("token_revoked"),
        },
        Case {
            name: "disabled user",
            method: "GET",
            path: "/api/courses/rust".into(),
            token: Some(&t.disabled),
            body: None,
            status: StatusCode::UNAUTHORIZED,
            reason: invalid("token_revoked"),
        },
        Case {
            name: "a route without a rule",
            method: "DELETE",
            path: "/api/courses/rust".into(),
            token: Some(&t.carol),
            body: None,
            status: StatusCode::FORBIDDEN,
            reason: Reason::NoRule,
        },
    ];
    for case in cases {
        let answer = door
            .call(case.method, &case.path, case.token, case.body.clone())
            .await;
        assert_eq!(answer.status, case.status, "{}: {answer:?}", case.name);
        let record = door.last();
        assert_eq!(record.reason, case.reason, "{}: {record:?}", case.name);
        if case.status != StatusCode::OK {
            // Every refusal carries a stable code in its JSON body.
            assert!(
                answer.body["code"].is_string(),
                "{}: {:?}",
                case.name,
                answer.body
            );
        }
        assert_eq!(record.path, case.path, "{}", case.name);
        match case.status {
            StatusCode::UNAUTHORIZED => {
                let challenge = answer.challenge.unwrap_or_default();
                assert!(
                    challenge.starts_with("Bearer realm="),
                    "{}: {challenge}",
                    case.name
                );
                match &case.reason {
                    Reason::InvalidToken { why } => {
                        assert!(
                            challenge.contains("error=\"invalid_token\""),
                            "{}",
                            case.name
                        );
                        assert!(
                            challenge.contains(why.as_str()),
                            "{}: {challenge}",
                            case.name
                        );
                    }
                    Reason::StepUp { .. } => {
                        assert!(
                            challenge.contains("error=\"insufficient_user_authentication\"")
                                && challenge.contains("acr_values=\"2\""),
                            "{}: {challenge}",
                            case.name
                        );
                    }
                    _ => assert!(!challenge.contains("error="), "{}: {challenge}", case.name),
                }
            }
            StatusCode::OK => {
                let principal = record
                    .principal
                    .expect("an allowed request has a principal");
                assert!(
                    principal.scopes.contains(&"learning".to_owned()),
                    "{}",
                    case.name
                );
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_learning_platform_enforces_the_whole_matrix_through_the_layer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = Demo::start(dir.path());
    let tg = Trustgate::new(&demo.get("trustgate"), &demo.get("admin_token")).await;
    let tokens = tokens(&demo, &tg).await;
    let door = layer(&demo, false, None).await;
    run_matrix(&door, &demo, &tokens).await;

    // An expired token: alice's, presented an hour later (trustgate's access tokens live
    // minutes, at least one; the service's clock is moved instead of the test waiting).
    let later: Arc<dyn Clock> = Arc::new(ManualClock::new(
        time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    ));
    let door = layer(&demo, false, Some(later)).await;
    let progress = format!("/api/progress/{}", demo.user("alice"));
    let answer = door.call("GET", &progress, Some(&tokens.alice), None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    assert!(
        answer
            .challenge
            .as_deref()
            .is_some_and(|c| c.contains("error=\"invalid_token\"")),
        "{answer:?}"
    );
    assert_eq!(
        door.last().reason,
        Reason::InvalidToken {
            why: "token_expired".into()
        }
    );

    // The PDP down: 503, never an allow.
    let down = layer(&demo, true, None).await;
    let answer = down
        .call(
            "GET",
            &format!("/api/progress/{}", demo.user("alice")),
            Some(&tokens.alice),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert!(
        matches!(down.last().reason, Reason::PdpUnavailable { .. }),
        "{:?}",
        down.last()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_learning_platform_enforces_the_whole_matrix_through_the_gateway() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = Demo::start(dir.path());
    let tg = Trustgate::new(&demo.get("trustgate"), &demo.get("admin_token")).await;
    // First, a token that lives a minute (the shortest lifetime trustgate issues): it is
    // presented again once it has expired, at the end.
    let short = tg
        .admin(
            reqwest::Method::POST,
            "/admin/v1/clients",
            json!({
                "name": "short-lived",
                "auth_method": "client_secret_basic",
                "redirect_uris": [format!("{}callback", demo.get("app"))],
                "grant_types": ["authorization_code"],
                "scopes": ["openid", "profile", "learning"],
                "skip_consent": true,
                "audience": [API_AUDIENCE],
                "access_token_ttl_secs": 60,
            }),
        )
        .await;
    let issued = std::time::Instant::now();
    let password = demo.get("password");
    let redirect_uri = format!("{}callback", demo.get("app"));
    let short_lived = tg
        .sign_in(
            &Login {
                client_id: short["client_id"].as_str().expect("id"),
                client_secret: short["client_secret"].as_str().expect("secret"),
                redirect_uri: &redirect_uri,
                username: "alice",
                password: &password,
                totp: None,
                extra: &[],
            },
            None,
        )
        .await
        .access_token;
    let tokens = tokens(&demo, &tg).await;
    let door = gateway(&demo, &tg, dir.path(), None).await;
    run_matrix(&door, &demo, &tokens).await;
    let (alice, bob) = (demo.user("alice"), demo.user("bob"));

    // Allowed requests reach the upstream, which accepted the gateway's internal token.
    let answer = door
        .call(
            "GET",
            &format!("/api/progress/{alice}"),
            Some(&tokens.alice),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["student"], alice.as_str());

    // Forged identity headers confer nothing: without a token they are anonymous, with
    // alice's token she is still alice.
    let forged = [
        ("x-forwarded-user", bob.as_str()),
        ("x-trustgate-subject", "user:erin"),
        ("x-remote-user", "erin"),
    ];
    let answer = door
        .call_with("GET", &format!("/api/progress/{bob}"), None, None, &forged)
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    assert_eq!(door.last().reason, Reason::MissingCredential);
    let answer = door
        .call_with(
            "GET",
            &format!("/api/progress/{bob}"),
            Some(&tokens.alice),
            None,
            &forged,
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{answer:?}");
    assert_eq!(door.last().reason, Reason::PdpDeny);
    assert_eq!(
        door.last().principal.map(|p| p.id),
        Some(alice.clone()),
        "the decision is about the token's subject"
    );

    // The PDP down: 503, never an allow.
    let down = gateway(&demo, &tg, dir.path(), Some("http://127.0.0.1:9/")).await;
    let answer = down
        .call(
            "GET",
            &format!("/api/progress/{alice}"),
            Some(&tokens.alice),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert!(
        matches!(down.last().reason, Reason::PdpUnavailable { .. }),
        "{:?}",
        down.last()
    );

    // The expired token.
    let left = Duration::from_secs(61).saturating_sub(issued.elapsed());
    tokio::time::sleep(left).await;
    let answer = door
        .call(
            "GET",
            &format!("/api/progress/{alice}"),
            Some(&short_lived),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    assert_eq!(
        door.last().reason,
        Reason::InvalidToken {
            why: "token_expired".into()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_refuses_what_did_not_come_through_the_gateway() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = Demo::start(dir.path());
    let tg = Trustgate::new(&demo.get("trustgate"), &demo.get("admin_token")).await;
    let alice = tg
        .sign_in(
            &Login {
                client_id: &demo.get("client_id"),
                client_secret: &demo.get("client_secret"),
                redirect_uri: &format!("{}callback", demo.get("app")),
                username: "alice",
                password: &demo.get("password"),
                totp: None,
                extra: &[],
            },
            None,
        )
        .await
        .access_token;
    let upstream = trustgate_learning_platform::upstream::router(
        trustgate_learning_platform::upstream::UpstreamSettings {
            trustgate_url: url::Url::parse(&format!("{}/", demo.get("trustgate"))).expect("url"),
            audience: "learning-internal".into(),
            gateway_client_id: "tgc_the_gateway".into(),
        },
        shared(Catalogue::demo(&demo.users())),
        None,
    )
    .await
    .expect("upstream");
    let path = format!("/api/progress/{}", demo.user("alice"));
    for (headers, why) in [
        (vec![], "internal_token_missing"),
        (
            vec![("authorization", format!("Bearer {alice}"))],
            "token_audience_wrong",
        ),
        (
            vec![("x-forwarded-user", demo.user("alice"))],
            "internal_token_missing",
        ),
    ] {
        let mut request = Request::builder().uri(&path);
        for (name, value) in &headers {
            request = request.header(*name, value);
        }
        let response = upstream
            .clone()
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{why}");
        let body = to_bytes(response.into_body(), 1 << 16).await.expect("body");
        let body: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["code"], why);
    }
}

/// The gateway route set and the layer's policy are the same rules.
#[test]
fn the_gateway_route_set_is_the_layers_policy() {
    let config =
        trustgate_gateway::GatewayConfig::from_toml(trustgate_learning_platform::GATEWAY_TOML)
            .expect("gateway.toml");
    let from_toml = trustgate_pep::RouteTable::new(
        config
            .rules()
            .expect("rules")
            .into_iter()
            .map(|(rule, _)| rule),
    )
    .expect("gateway.toml's rules compile");
    let policy = trustgate_learning_platform::api::policy().expect("policy");
    let from_code: Vec<&trustgate_pep::Rule> = policy.rules().collect();
    assert_eq!(from_toml.rules().count(), from_code.len());
    for rule in from_toml.rules() {
        assert!(
            from_code.contains(&rule),
            "{} {} in gateway.toml is not in api::policy",
            rule.method(),
            rule.path()
        );
    }
}

#[test]
fn the_learning_platform_in_headless_chromium() {
    if !browser_available("the learning-platform browser test", &["playwright-core"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = Demo::start(dir.path());
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/e2e-artifacts");
    let mut cmd = std::process::Command::new("node");
    cmd.arg(Path::new(E2E).join("learning.mjs"))
        .arg(demo.get("trustgate"))
        .arg(demo.get("app"))
        .arg(demo.get("password"))
        .arg(&artifacts)
        .arg(demo.user("bob"))
        .env("TRUSTGATE_CHROMIUM", chromium());
    let out = run(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "learning.mjs failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("OK: learning platform"),
        "{stdout}\n{stderr}"
    );
    for shot in [
        "learning-allowed",
        "learning-denied",
        "learning-step-up",
        "learning-settings-changed",
    ] {
        assert!(
            artifacts.join(format!("{shot}.png")).exists(),
            "screenshot {shot}"
        );
    }
}
