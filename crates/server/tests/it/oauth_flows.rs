//! The authorization server in-process on both backends, modelled on the OpenID conformance
//! suite's Basic OP negative modules: code reuse revokes what the code issued; missing
//! `response_type`; unregistered redirect URI gives an error page, never a redirect;
//! `prompt=none` without a session; `max_age` forces re-authentication; nonce echoed; refresh
//! tokens bound to their client; PKCE missing, `plain` or wrong; implicit and password grants
//! refused; forged tokens (alg none, HS256 with the public key, foreign kid, wrong aud, expired,
//! an ID token presented as an access token) rejected by introspection and userinfo; disabling a
//! user kills refresh tokens and access tokens at once for introspection; PAR; device flow
//! polling rules; consent remembered and withdrawn; token exchange (RFC 8693).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use trustgate_authn::accounts::{CreateUser, RequestContext};
use trustgate_core::{Clock, ManualClock, SealingKey, Secret};
use trustgate_oauth::clients::{AuthMethod, ClientRegistration, GrantType};
use trustgate_server::{AppState, Config, router};
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;
use trustgate_tokens::{AccessTokenClaims, Algorithm, Audience};

use crate::common::browser::{App, Browser, ORIGIN, Reply, enc};

pub(crate) const PASSWORD: &str = "correct horse battery staple 42";
const REDIRECT: &str = "https://rp.example/cb";

pub(crate) struct Op {
    pub(crate) app: axum::Router,
    pub(crate) state: AppState,
    pub(crate) clock: ManualClock,
    pub(crate) admin_token: String,
    /// Shared by every replica of this deployment.
    secrets_key: SealingKey,
}

impl App for Op {
    fn app(&self) -> &axum::Router {
        &self.app
    }
}

pub(crate) struct Registered {
    pub(crate) id: String,
    pub(crate) secret: String,
    /// `client_secret_basic` (else the secret goes in the form).
    basic: bool,
}

fn op_config() -> Config {
    let mut config = Config::default();
    config.oauth.issuer = Some(ORIGIN.to_owned());
    config
}

pub(crate) async fn op(db: &TestDatabase) -> Op {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let secrets_key = SealingKey::generate();
    let state = AppState::start(
        db.store.clone(),
        Arc::new(clock.clone()),
        op_config(),
        secrets_key.clone(),
    )
    .await
    .expect("state");
    for name in ["alice", "bob"] {
        state
            .accounts
            .create_user(
                CreateUser {
                    username: name.into(),
                    email: format!("{name}@example.com"),
                    password: Some(Secret::new(PASSWORD)),
                    ..CreateUser::default()
                },
                "test",
                &RequestContext::default(),
            )
            .await
            .expect("create user");
    }
    let admin_token = format!("tg_test_{}", uuid::Uuid::new_v4().simple());
    trustgate_server::bootstrap::ensure_admin_token(&state, &admin_token)
        .await
        .expect("admin token");
    Op {
        app: router(state.clone()),
        state,
        clock,
        admin_token,
        secrets_key,
    }
}

/// Another replica of `op`'s deployment: its own services over `store` (the same database,
/// opened as that replica would), the same secrets key and clock.
pub(crate) async fn replica(op: &Op, store: Arc<dyn trustgate_store_api::Store>) -> Op {
    let state = AppState::start(
        store,
        Arc::new(op.clock.clone()),
        op_config(),
        op.secrets_key.clone(),
    )
    .await
    .expect("replica state");
    Op {
        app: router(state.clone()),
        state,
        clock: op.clock.clone(),
        admin_token: op.admin_token.clone(),
        secrets_key: op.secrets_key.clone(),
    }
}

/// A registered device client (client_secret_post) and a started device authorization: the
/// client, the device code and the user code as shown.
pub(crate) async fn device_started(op: &Op) -> (Registered, String, String) {
    let tv = register(op, "TV", |r| {
        r.redirect_uris.clear();
        r.grant_types = vec![GrantType::DeviceCode, GrantType::RefreshToken];
        r.auth_method = AuthMethod::ClientSecretPost;
    })
    .await;
    let started = post_form(
        op,
        "/oauth2/device_authorization",
        &tv,
        &[("scope", "openid profile")],
    )
    .await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.body);
    let started: Value = serde_json::from_str(&started.body).expect("json");
    let device_code = started["device_code"]
        .as_str()
        .expect("device_code")
        .to_owned();
    let user_code = started["user_code"].as_str().expect("user_code").to_owned();
    (tv, device_code, user_code)
}

/// A well-formed user code that is not `code`.
pub(crate) fn other_code(code: &str, n: usize) -> String {
    let letters = trustgate_oauth::device::USER_CODE_ALPHABET;
    let mut out: Vec<u8> = code.bytes().filter(|b| *b != b'-').collect();
    let first = letters.iter().position(|l| *l == out[0]).unwrap_or(0);
    out[0] = letters[(first + 1 + n % 19) % letters.len()];
    out[1] = letters[(n / 19) % letters.len()];
    String::from_utf8(out).expect("ascii")
}

/// `POST /device` with a typed code.
pub(crate) async fn type_code(op: &Op, b: &mut Browser, code: &str) -> Reply {
    let form = b.get(op, "/device").await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    let csrf = form.csrf();
    b.post(op, "/device", &[("csrf", &csrf), ("user_code", code)])
        .await
}

/// The `Retry-After` seconds of a 429.
pub(crate) fn retry_after(r: &Reply) -> i64 {
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    r.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds")
}

pub(crate) async fn register(
    op: &Op,
    name: &str,
    edit: impl FnOnce(&mut ClientRegistration),
) -> Registered {
    let mut reg = ClientRegistration::named(name);
    reg.redirect_uris = vec![REDIRECT.to_owned()];
    reg.post_logout_redirect_uris = vec!["https://rp.example/bye".to_owned()];
    edit(&mut reg);
    let basic = reg.auth_method == AuthMethod::ClientSecretBasic;
    let (client, secret) = op.state.clients.create(reg).await.expect("register");
    Registered {
        id: client.id,
        secret: secret.map(|s| s.expose().to_owned()).unwrap_or_default(),
        basic,
    }
}

pub(crate) async fn signed_in(op: &Op, username: &str) -> Browser {
    let mut b = Browser::new();
    let r = b.login(op, username, PASSWORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    b
}

fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(rand_bytes());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn rand_bytes() -> [u8; 32] {
    let mut out = [0u8; 32];
    let seed = uuid::Uuid::new_v4();
    out[..16].copy_from_slice(seed.as_bytes());
    out[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    out
}

fn authorize_path(client_id: &str, challenge: &str, extra: &[(&str, &str)]) -> String {
    let mut pairs = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("scope", "openid profile email"),
        ("state", "st-1"),
        ("nonce", "n-0S6_WzA2Mj"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    for (k, v) in extra {
        pairs.retain(|(name, _)| name != k);
        if !v.is_empty() {
            pairs.push((k, v));
        }
    }
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&");
    format!("/oauth2/authorize?{query}")
}

fn query_param(location: &str, name: &str) -> Option<String> {
    let url = url::Url::parse(location).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Signed-in browser through authorize and consent; returns the code and verifier.
async fn code_for(
    op: &Op,
    b: &mut Browser,
    client: &Registered,
    extra: &[(&str, &str)],
) -> (String, String) {
    let (verifier, challenge) = pkce();
    let mut r = b
        .get(op, &authorize_path(&client.id, &challenge, extra))
        .await;
    if r.status == StatusCode::OK && r.body.contains("consent-approve") {
        let csrf = r.csrf();
        let request = crate::common::browser::hidden(&r.body, "request");
        r = b
            .post(
                op,
                "/consent",
                &[
                    ("csrf", &csrf),
                    ("request", &request),
                    ("decision", "approve"),
                ],
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::SEE_OTHER,
            "303 after the consent POST: {}",
            r.body
        );
    }
    assert!(
        r.location().starts_with(REDIRECT),
        "{} {} {}",
        r.status,
        r.location(),
        r.body
    );
    assert_eq!(
        query_param(r.location(), "iss").as_deref(),
        Some(ORIGIN),
        "RFC 9207 iss"
    );
    assert_eq!(query_param(r.location(), "state").as_deref(), Some("st-1"));
    let code =
        query_param(r.location(), "code").unwrap_or_else(|| panic!("no code: {}", r.location()));
    (code, verifier)
}

async fn token(op: &Op, client: &Registered, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let r = post_form(op, "/oauth2/token", client, form).await;
    (
        r.status,
        serde_json::from_str(&r.body).unwrap_or(Value::Null),
    )
}

async fn exchange(op: &Op, client: &Registered, code: &str, verifier: &str) -> (StatusCode, Value) {
    token(
        op,
        client,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ],
    )
    .await
}

/// A form post to a machine endpoint, authenticated the way the client registered.
pub(crate) async fn post_form(
    op: &Op,
    path: &str,
    client: &Registered,
    form: &[(&str, &str)],
) -> Reply {
    let mut all: Vec<(&str, &str)> = Vec::new();
    let mut request =
        http::Request::post(path).header("content-type", "application/x-www-form-urlencoded");
    if client.basic {
        let basic = STANDARD.encode(format!("{}:{}", enc(&client.id), enc(&client.secret)));
        request = request.header("authorization", format!("Basic {basic}"));
    } else {
        all.push(("client_id", &client.id));
        all.push(("client_secret", &client.secret));
    }
    all.extend_from_slice(form);
    let body = all
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&");
    Browser::default()
        .send(op, request, axum::body::Body::from(body))
        .await
}

async fn introspect(op: &Op, caller: &Registered, token: &str) -> Value {
    let r = post_form(op, "/oauth2/introspect", caller, &[("token", token)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    serde_json::from_str(&r.body).expect("json")
}

async fn userinfo(op: &Op, token: &str) -> Reply {
    Browser::default()
        .send(
            op,
            http::Request::get("/oidc/userinfo").header("authorization", format!("Bearer {token}")),
            axum::body::Body::empty(),
        )
        .await
}

fn secret_post(reg: &mut ClientRegistration) {
    reg.auth_method = AuthMethod::ClientSecretPost;
}

fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64")).expect("json")
}

async fn code_reuse_is_invalid_grant_and_revokes_the_tokens(db: TestDatabase) {
    let op = op(&db).await;
    let rp = register(&op, "RP", secret_post).await;
    let mut b = signed_in(&op, "alice").await;
    let (code, verifier) = code_for(&op, &mut b, &rp, &[]).await;
    let (status, first) = exchange(&op, &rp, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let access = first["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    let refresh = first["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();
    assert_eq!(introspect(&op, &rp, &access).await["active"], true);

    let (status, replay) = exchange(&op, &rp, &code, &verifier).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(replay["error"], "invalid_grant");
    assert_eq!(
        introspect(&op, &rp, &access).await["active"],
        false,
        "access token revoked"
    );
    let (status, body) = token(
        &op,
        &rp,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    assert_eq!(
        userinfo(&op, &access).await.status,
        StatusCode::UNAUTHORIZED
    );
}

async fn authorization_request_errors_go_where_they_may(db: TestDatabase) {
    let op = op(&db).await;
    let rp = register(&op, "RP", secret_post).await;
    let mut b = signed_in(&op, "alice").await;
    let (_, challenge) = pkce();

    // Unregistered redirect URI and unknown client: an error page, never a redirect.
    for path in [
        authorize_path(
            &rp.id,
            &challenge,
            &[("redirect_uri", "https://evil.example/cb")],
        ),
        authorize_path(
            &rp.id,
            &challenge,
            &[("redirect_uri", "https://rp.example/cb/")],
        ),
        authorize_path("no-such-client", &challenge, &[]),
        authorize_path(&rp.id, &challenge, &[("redirect_uri", "")]),
    ] {
        let r = b.get(&op, &path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(r.headers.get("location").is_none(), "{path}");
        assert!(r.body.contains("cannot be completed"), "{}", r.body);
    }

    // After the redirect URI is verified: errors go back with state and iss.
    for (extra, error) in [
        (vec![("response_type", "")], "invalid_request"),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (
            vec![("response_type", "code id_token")],
            "unsupported_response_type",
        ),
        (vec![("code_challenge", "")], "invalid_request"),
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge_method", "")], "invalid_request"),
        (vec![("scope", "openid admin")], "invalid_scope"),
        (vec![("prompt", "none login")], "invalid_request"),
        (
            vec![("request", "eyJhbGciOiJub25lIn0.e30.")],
            "request_not_supported",
        ),
    ] {
        let r = b
            .get(&op, &authorize_path(&rp.id, &challenge, &extra))
            .await;
        assert_eq!(r.status, StatusCode::FOUND, "{extra:?}: {}", r.body);
        assert!(r.location().starts_with(REDIRECT));
        assert_eq!(
            query_param(r.location(), "error").as_deref(),
            Some(error),
            "{extra:?}"
        );
        assert_eq!(query_param(r.location(), "state").as_deref(), Some("st-1"));
        assert_eq!(query_param(r.location(), "iss").as_deref(), Some(ORIGIN));
    }

    // Implicit and password grants are refused at the token endpoint too.
    let (status, body) = token(
        &op,
        &rp,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );
    let (status, body) = token(&op, &rp, &[("grant_type", "implicit")]).await;
    assert_eq!(body["error"], "unsupported_grant_type", "{status}");
}

async fn prompt_none_and_max_age(db: TestDatabase) {
    let op = op(&db).await;
    let rp = register(&op, "RP", secret_post).await;
    let (max_age_verifier, challenge) = pkce();

    let mut anonymous = Browser::new();
    let r = anonymous
        .get(
            &op,
            &authorize_path(&rp.id, &challenge, &[("prompt", "none")]),
        )
        .await;
    assert_eq!(
        query_param(r.location(), "error").as_deref(),
        Some("login_required")
    );
    let r = anonymous
        .get(&op, &authorize_path(&rp.id, &challenge, &[]))
        .await;
    assert!(
        r.location()
            .starts_with("/login?next=%2Foauth2%2Fauthorize"),
        "{}",
        r.location()
    );

    let mut b = signed_in(&op, "alice").await;
    // Consent not given yet: prompt=none cannot ask.
    let r = b
        .get(
            &op,
            &authorize_path(&rp.id, &challenge, &[("prompt", "none")]),
        )
        .await;
    assert_eq!(
        query_param(r.location(), "error").as_deref(),
        Some("consent_required")
    );
    let (code, verifier) = code_for(&op, &mut b, &rp, &[]).await;
    let (_, first) = exchange(&op, &rp, &code, &verifier).await;
    let first_auth_time =
        payload(first["id_token"].as_str().expect("id token"))["auth_time"].as_i64();
    assert_eq!(
        payload(first["id_token"].as_str().expect("id token"))["nonce"],
        "n-0S6_WzA2Mj"
    );

    // Consent remembered: prompt=none now gets a code.
    let (silent_verifier, silent_challenge) = pkce();
    let r = b
        .get(
            &op,
            &authorize_path(&rp.id, &silent_challenge, &[("prompt", "none")]),
        )
        .await;
    let silent_code = query_param(r.location(), "code").expect("silent code");
    let (status, _) = exchange(&op, &rp, &silent_code, &silent_verifier).await;
    assert_eq!(status, StatusCode::OK);

    // max_age=1 two seconds later: re-authenticate, then auth_time moves.
    op.clock.advance(time::Duration::seconds(2));
    let r = b
        .get(
            &op,
            &authorize_path(&rp.id, &challenge, &[("max_age", "1"), ("prompt", "none")]),
        )
        .await;
    assert_eq!(
        query_param(r.location(), "error").as_deref(),
        Some("login_required")
    );
    let r = b
        .get(
            &op,
            &authorize_path(&rp.id, &challenge, &[("max_age", "1")]),
        )
        .await;
    assert!(
        r.location().starts_with("/account/reauth?next="),
        "{}",
        r.location()
    );
    let next = percent_encoding::percent_decode_str(
        r.location().trim_start_matches("/account/reauth?next="),
    )
    .decode_utf8()
    .expect("utf8")
    .into_owned();
    let page = b
        .get(&op, &format!("/account/reauth?next={}", enc(&next)))
        .await;
    let csrf = page.csrf();
    let done = b
        .post(
            &op,
            "/account/reauth",
            &[("csrf", &csrf), ("next", &next), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let back = b.get(&op, done.location()).await;
    let code =
        query_param(back.location(), "code").unwrap_or_else(|| panic!("{}", back.location()));
    let (status, later) = exchange(&op, &rp, &code, &max_age_verifier).await;
    assert_eq!(status, StatusCode::OK, "{later}");
    let later_auth_time =
        payload(later["id_token"].as_str().expect("id token"))["auth_time"].as_i64();
    assert!(
        later_auth_time > first_auth_time,
        "{later_auth_time:?} > {first_auth_time:?}"
    );
}

async fn pkce_is_required_and_checked(db: TestDatabase) {
    let op = op(&db).await;
    let rp = register(&op, "RP", secret_post).await;
    let mut b = signed_in(&op, "alice").await;
    let (code, verifier) = code_for(&op, &mut b, &rp, &[]).await;
    let (status, body) = token(
        &op,
        &rp,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "missing verifier"
    );
    // The code was spent by that attempt; a new one with the wrong verifier.
    let (code, _) = code_for(&op, &mut b, &rp, &[]).await;
    let (wrong, _) = pkce();
    let (status, body) = exchange(&op, &rp, &code, &wrong).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "wrong verifier"
    );
    let (code, good) = code_for(&op, &mut b, &rp, &[]).await;
    let (status, body) = token(
        &op,
        &rp,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://rp.example/other"),
            ("code_verifier", &good),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "other redirect_uri"
    );
    let _ = verifier;

    // Codes live 60 s.
    let (code, verifier) = code_for(&op, &mut b, &rp, &[]).await;
    op.clock.advance(time::Duration::seconds(61));
    let (status, body) = exchange(&op, &rp, &code, &verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "expired code"
    );
}

async fn refresh_tokens_rotate_and_are_bound_to_their_client(db: TestDatabase) {
    let op = op(&db).await;
    // An RP that opted into a 10 s refresh grace for concurrent refreshes (the default is none).
    let rp = register(&op, "RP", |r| {
        secret_post(r);
        r.refresh_grace_secs = Some(10);
    })
    .await;
    let other = register(&op, "Other", secret_post).await;
    let mut b = signed_in(&op, "alice").await;
    let (code, verifier) = code_for(&op, &mut b, &rp, &[]).await;
    let (_, first) = exchange(&op, &rp, &code, &verifier).await;
    let r1 = first["refresh_token"].as_str().expect("refresh").to_owned();

    let (status, body) = token(
        &op,
        &other,
        &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "other client"
    );
    assert_eq!(
        introspect(&op, &other, &r1).await["active"],
        false,
        "other client cannot introspect it"
    );
    assert_eq!(introspect(&op, &rp, &r1).await["active"], true);

    let (status, widened) = token(
        &op,
        &rp,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r1),
            ("scope", "openid admin"),
        ],
    )
    .await;
    assert_eq!(
        (status, widened["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );
    let (status, second) = token(
        &op,
        &rp,
        &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the refused widening did not spend the token: {second}"
    );
    let r2 = second["refresh_token"]
        .as_str()
        .expect("rotated")
        .to_owned();
    assert_ne!(r1, r2);

    // Within the client's grace period a concurrent refresh still works (once); after it,
    // reuse kills the family.
    let (status, _) = token(
        &op,
        &rp,
        &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "within grace");
    op.clock.advance(time::Duration::seconds(30));
    let (status, reuse) = token(
        &op,
        &rp,
        &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
    )
    .await;
    assert_eq!(
        (status, reuse["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (status, _) = token(
        &op,
        &rp,
        &[("grant_type", "refresh_token"), ("refresh_token", &r2)],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the family is revoked");
}

async fn forged_and_misused_tokens_are_rejected(db: TestDatabase) {
    let op = op(&db).await;
    let rp = register(&op, "RP", secret_post).await;
    let mut b = signed_in(&op, "alice").await;
    let (code, verifier) = code_for(&op, &mut b, &rp, &[]).await;
    let (_, issued) = exchange(&op, &rp, &code, &verifier).await;
    let access = issued["access_token"].as_str().expect("at").to_owned();
    let id_token = issued["id_token"].as_str().expect("id").to_owned();
    assert_eq!(userinfo(&op, &access).await.status, StatusCode::OK);

    let claims: AccessTokenClaims = serde_json::from_value(payload(&access)).expect("claims");
    let now = op.clock.now().unix_timestamp();
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"));
    let header = serde_json::from_slice::<Value>(
        &URL_SAFE_NO_PAD
            .decode(access.split('.').next().expect("h"))
            .expect("b64"),
    )
    .expect("json");
    let kid = header["kid"].as_str().expect("kid").to_owned();

    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "at+jwt"})),
        b64(&payload(&access))
    );
    let hs256 = {
        use hmac::{KeyInit, Mac};
        let jwks = op.state.oauth.keys().jwks().to_string();
        let signing_input = format!(
            "{}.{}",
            b64(&json!({"alg": "HS256", "typ": "at+jwt", "kid": kid})),
            b64(&payload(&access))
        );
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(jwks.as_bytes()).expect("hmac");
        mac.update(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    };
    let foreign_kid = {
        let parts: Vec<&str> = access.split('.').collect();
        let mut h = header.clone();
        h["kid"] = json!("not-our-key");
        format!("{}.{}.{}", b64(&h), parts[1], parts[2])
    };
    let keys = op.state.oauth.keys();
    let sign = |c: &AccessTokenClaims| keys.sign(Algorithm::ES256, "at+jwt", c).expect("sign");
    let wrong_aud = sign(&AccessTokenClaims {
        aud: Audience::One("https://elsewhere.example".into()),
        ..claims.clone()
    });
    let expired = sign(&AccessTokenClaims {
        exp: now - 3600,
        iat: now - 4000,
        ..claims.clone()
    });
    let wrong_issuer = sign(&AccessTokenClaims {
        iss: "https://evil.example".into(),
        ..claims.clone()
    });
    let tampered = {
        let parts: Vec<&str> = access.split('.').collect();
        let mut p = payload(&access);
        p["sub"] = json!("someone-else");
        format!("{}.{}.{}", parts[0], b64(&p), parts[2])
    };
    let untyped = keys.sign(Algorithm::ES256, "JWT", &claims).expect("sign");

    for (name, forged) in [
        ("alg none", none.as_str()),
        ("HS256 with the public key", hs256.as_str()),
        ("foreign kid", foreign_kid.as_str()),
        ("wrong aud", wrong_aud.as_str()),
        ("expired", expired.as_str()),
        ("wrong issuer", wrong_issuer.as_str()),
        ("tampered payload", tampered.as_str()),
        ("typ JWT, not at+jwt", untyped.as_str()),
        ("ID token as access token", id_token.as_str()),
        ("garbage", "not.a.jwt"),
    ] {
        assert_eq!(
            introspect(&op, &rp, forged).await,
            json!({"active": false}),
            "{name}"
        );
        let r = userinfo(&op, forged).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name}: {}", r.body);
        let challenge = r
            .headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{name}: {challenge}"
        );
    }
    let huge = "a".repeat(64 * 1024);
    let r = post_form(&op, "/oauth2/introspect", &rp, &[("token", &huge)]).await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "oversized input is refused"
    );
    assert!(r.body.contains("invalid_request"));
    assert_eq!(
        userinfo(&op, "").await.status,
        StatusCode::BAD_REQUEST,
        "a malformed Authorization header is invalid_request (RFC 6750 §3.1)"
    );
    let bare = Browser::default()
        .send(
            &op,
            http::Request::get("/oidc/userinfo"),
            axum::body::Body::empty(),
        )
        .await;
    assert_eq!(bare.status, StatusCode::UNAUTHORIZED);
    assert!(
        bare.headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer")),
        "a request without a token is challenged"
    );
}

async fn disabling_a_user_revokes_their_tokens(db: TestDatabase) {
    let op = op(&db).await;
    let rp = register(&op, "RP", secret_post).await;
    let mut b = signed_in(&op, "alice").await;
    let (code, verifier) = code_for(&op, &mut b, &rp, &[]).await;
    let (_, issued) = exchange(&op, &rp, &code, &verifier).await;
    let access = issued["access_token"].as_str().expect("at").to_owned();
    let refresh = issued["refresh_token"].as_str().expect("rt").to_owned();
    let user_id = payload(&access)["sub"].as_str().expect("sub").to_owned();
    assert_eq!(introspect(&op, &rp, &access).await["active"], true);

    let disabled = Browser::default()
        .send(
            &op,
            http::Request::post(format!("/admin/v1/users/{user_id}/disable"))
                .header("authorization", format!("Bearer {}", op.admin_token)),
            axum::body::Body::empty(),
        )
        .await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.body);
    assert_eq!(
        introspect(&op, &rp, &access).await["active"],
        false,
        "uv moved"
    );
    assert_eq!(
        userinfo(&op, &access).await.status,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = token(
        &op,
        &rp,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn client_authentication_and_client_credentials(db: TestDatabase) {
    let op = op(&db).await;
    let service = register(&op, "Service", |r| {
        r.redirect_uris.clear();
        r.grant_types = vec![GrantType::ClientCredentials];
        r.scopes = vec!["reports:read".into()];
    })
    .await;
    let (status, body) = token(&op, &service, &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "reports:read");
    assert!(body.get("refresh_token").is_none());
    let at = payload(body["access_token"].as_str().expect("at"));
    assert_eq!(at["sub"].as_str(), Some(service.id.as_str()));
    assert_eq!(at["client_id"].as_str(), Some(service.id.as_str()));
    assert!(at.get("uv").is_none() && at.get("auth_time").is_none());

    let wrong = Registered {
        id: service.id.clone(),
        secret: "tgcs_wrong".into(),
        basic: true,
    };
    let mut b = Browser::default();
    let basic = STANDARD.encode(format!("{}:{}", wrong.id, wrong.secret));
    let r = b
        .send(
            &op,
            http::Request::post("/oauth2/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("authorization", format!("Basic {basic}")),
            axum::body::Body::from("grant_type=client_credentials"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("invalid_client"));
    assert!(
        r.headers
            .get("www-authenticate")
            .is_some_and(|v| v.to_str().unwrap_or("").starts_with("Basic"))
    );
    assert_eq!(
        r.headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );

    let (status, body) = token(
        &op,
        &service,
        &[("grant_type", "client_credentials"), ("scope", "openid")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );
    let (status, body) = token(
        &op,
        &service,
        &[("grant_type", "authorization_code"), ("code", "x")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unauthorized_client"))
    );

    // Not form-encoded: invalid_request.
    let r = Browser::default()
        .send(
            &op,
            http::Request::post("/oauth2/token").header("content-type", "application/json"),
            axum::body::Body::from("{}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("invalid_request"));
}

async fn pushed_authorization_requests(db: TestDatabase) {
    let op = op(&db).await;
    let rp = register(&op, "RP", |r| {
        secret_post(r);
        r.require_par = true;
    })
    .await;
    let mut b = signed_in(&op, "alice").await;
    let (verifier, challenge) = pkce();
    let r = b.get(&op, &authorize_path(&rp.id, &challenge, &[])).await;
    assert_eq!(
        query_param(r.location(), "error").as_deref(),
        Some("invalid_request"),
        "PAR required"
    );

    let pushed = post_form(
        &op,
        "/oauth2/par",
        &rp,
        &[
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid"),
            ("state", "st-1"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    assert_eq!(pushed.status, StatusCode::CREATED, "{}", pushed.body);
    let pushed: Value = serde_json::from_str(&pushed.body).expect("json");
    let request_uri = pushed["request_uri"]
        .as_str()
        .expect("request_uri")
        .to_owned();
    assert!(request_uri.starts_with("urn:ietf:params:oauth:request_uri:"));

    let path = format!(
        "/oauth2/authorize?client_id={}&request_uri={}",
        enc(&rp.id),
        enc(&request_uri)
    );
    let page = b.get(&op, &path).await;
    assert_eq!(page.status, StatusCode::OK, "consent page: {}", page.body);
    let (csrf, request) = (
        page.csrf(),
        crate::common::browser::hidden(&page.body, "request"),
    );
    let r = b
        .post(
            &op,
            "/consent",
            &[
                ("csrf", &csrf),
                ("request", &request),
                ("decision", "approve"),
            ],
        )
        .await;
    let code = query_param(r.location(), "code").expect("code");
    let (status, _) = exchange(&op, &rp, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK);
    // One use only.
    let again = b.get(&op, &path).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "used request_uri");
    // Bad pushes.
    let bad = post_form(
        &op,
        "/oauth2/par",
        &rp,
        &[
            ("response_type", "code"),
            ("redirect_uri", "https://evil.example/"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("invalid_request"));
}

async fn device_flow_polling(db: TestDatabase) {
    let op = op(&db).await;
    let tv = register(&op, "TV", |r| {
        r.redirect_uris.clear();
        r.grant_types = vec![GrantType::DeviceCode, GrantType::RefreshToken];
        r.auth_method = AuthMethod::ClientSecretPost;
    })
    .await;
    let started = post_form(
        &op,
        "/oauth2/device_authorization",
        &tv,
        &[("scope", "openid profile")],
    )
    .await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.body);
    let started: Value = serde_json::from_str(&started.body).expect("json");
    let device_code = started["device_code"]
        .as_str()
        .expect("device_code")
        .to_owned();
    let user_code = started["user_code"].as_str().expect("user_code").to_owned();

    let first = poll_device(&op, &tv, &device_code).await;
    assert!(
        first.body.contains("authorization_pending"),
        "{}",
        first.body
    );
    let too_fast = poll_device(&op, &tv, &device_code).await;
    assert!(too_fast.body.contains("slow_down"), "{}", too_fast.body);

    let mut b = signed_in(&op, "alice").await;
    let page = b
        .get(
            &op,
            &format!("/device?user_code={}", enc(&user_code.to_lowercase())),
        )
        .await;
    assert!(page.body.contains(&user_code), "{}", page.body);
    let csrf = page.csrf();
    let wrong_csrf = b
        .post(
            &op,
            "/device/decide",
            &[
                ("csrf", "nope"),
                ("user_code", &user_code),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(wrong_csrf.status, StatusCode::FORBIDDEN);
    let done = b
        .post(
            &op,
            "/device/decide",
            &[
                ("csrf", &csrf),
                ("user_code", &user_code),
                ("decision", "approve"),
            ],
        )
        .await;
    assert!(done.body.contains("device-done"), "{}", done.body);

    op.clock.advance(time::Duration::seconds(11));
    let tokens = poll_device(&op, &tv, &device_code).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.body);
    assert!(tokens.body.contains("id_token"));
    op.clock.advance(time::Duration::seconds(11));
    let again = poll_device(&op, &tv, &device_code).await;
    assert!(again.body.contains("invalid_grant"), "{}", again.body);
}

pub(crate) async fn poll_device(op: &Op, tv: &Registered, device_code: &str) -> Reply {
    post_form(
        op,
        "/oauth2/token",
        tv,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
        ],
    )
    .await
}

async fn device_code_guesses_are_throttled_without_an_oracle(db: TestDatabase) {
    let op = op(&db).await;
    let (tv, device_code, user_code) = device_started(&op).await;
    let mut b = signed_in(&op, "alice").await;
    // Five free failures, and the sixth wrong code is still looked up (and counted).
    for n in 0..6 {
        let r = type_code(&op, &mut b, &other_code(&user_code, n)).await;
        assert_eq!(r.status, StatusCode::OK, "{n}: {}", r.body);
        assert!(r.body.contains("not valid or has expired"), "{}", r.body);
    }
    // Then a wait: 429 with Retry-After, and the right code is refused too (no oracle), on the
    // form, in the link and at the decision.
    let r = type_code(&op, &mut b, &other_code(&user_code, 6)).await;
    let wait = retry_after(&r);
    assert!(wait >= 1, "{wait}");
    assert!(r.body.contains("Too many attempts"), "{}", r.body);
    let right = type_code(&op, &mut b, &user_code).await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(!right.body.contains("TV"), "{}", right.body);
    let link = b
        .get(&op, &format!("/device?user_code={}", enc(&user_code)))
        .await;
    assert_eq!(link.status, StatusCode::TOO_MANY_REQUESTS);
    let csrf = b.get(&op, "/device").await.csrf();
    let decided = b
        .post(
            &op,
            "/device/decide",
            &[
                ("csrf", &csrf),
                ("user_code", &user_code),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(decided.status, StatusCode::TOO_MANY_REQUESTS);
    let pending = poll_device(&op, &tv, &device_code).await;
    assert!(
        pending.body.contains("authorization_pending"),
        "nothing was approved: {}",
        pending.body
    );
    // Another session of another user is not held up by alice's session.
    let mut other = signed_in(&op, "bob").await;
    let r = type_code(&op, &mut other, &other_code(&user_code, 7)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // After the wait the right code works.
    op.clock.advance(time::Duration::seconds(wait));
    let right = type_code(&op, &mut b, &user_code).await;
    assert_eq!(right.status, StatusCode::OK, "{}", right.body);
    assert!(right.body.contains("TV"), "{}", right.body);
    // Every miss and every refusal is in the audit trail, never the code.
    let events = op
        .state
        .accounts
        .audit(&trustgate_store_api::AuditFilter::default(), 100)
        .await
        .expect("audit")
        .into_iter()
        .map(|r| r.event)
        .collect::<Vec<_>>();
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "device_code_failed")
        .collect();
    assert!(
        failed.iter().filter(|e| e.outcome == "failure").count() >= 7,
        "{failed:?}"
    );
    assert!(failed.iter().any(|e| e.outcome == "denied"), "{failed:?}");
    let shown = format!("{failed:?}");
    assert!(!shown.contains(&user_code.replace('-', "")), "{shown}");
}

async fn consent_is_remembered_and_can_be_withdrawn(db: TestDatabase) {
    let op = op(&db).await;
    let rp = register(&op, "RP", secret_post).await;
    let mut b = signed_in(&op, "alice").await;
    let (_, challenge) = pkce();
    let page = b.get(&op, &authorize_path(&rp.id, &challenge, &[])).await;
    let (csrf, request) = (
        page.csrf(),
        crate::common::browser::hidden(&page.body, "request"),
    );
    let denied = b
        .post(
            &op,
            "/consent",
            &[("csrf", &csrf), ("request", &request), ("decision", "deny")],
        )
        .await;
    assert_eq!(
        query_param(denied.location(), "error").as_deref(),
        Some("access_denied")
    );
    let forged = b
        .post(
            &op,
            "/consent",
            &[
                ("csrf", "forged"),
                ("request", &request),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    let (code, verifier) = code_for(&op, &mut b, &rp, &[]).await;
    let (_, issued) = exchange(&op, &rp, &code, &verifier).await;
    let refresh = issued["refresh_token"].as_str().expect("rt").to_owned();
    let account = b.get(&op, "/account").await;
    assert!(
        account.body.contains(&format!("data-client=\"{}\"", rp.id)),
        "listed on /account"
    );
    let r = b.get(&op, &authorize_path(&rp.id, &challenge, &[])).await;
    assert!(
        query_param(r.location(), "code").is_some(),
        "remembered: no consent page"
    );

    let csrf = account.csrf();
    let r = b
        .post(
            &op,
            &format!("/account/consents/{}/revoke", rp.id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let (status, _) = token(
        &op,
        &rp,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "withdrawing consent revokes the grant"
    );
    let r = b.get(&op, &authorize_path(&rp.id, &challenge, &[])).await;
    assert!(r.body.contains("consent-approve"), "asked again");
}

async fn acr_values_2_steps_up_to_a_second_factor(db: TestDatabase) {
    let op = op(&db).await;
    let rp = register(&op, "RP", secret_post).await;
    let mut b = signed_in(&op, "alice").await;
    // Enrol TOTP for alice's session.
    let ctx = RequestContext::default();
    let token = b.session().expect("session cookie");
    let current = op
        .state
        .accounts
        .authenticate_session(&token, &ctx)
        .await
        .expect("lookup")
        .expect("live session");
    let enrollment = op
        .state
        .accounts
        .begin_totp_enrollment(&current)
        .await
        .expect("begin");
    let secret = trustgate_authn::totp::TotpSecret::from_base32(enrollment.secret_base32.expose())
        .expect("secret");
    op.state
        .accounts
        .confirm_totp_enrollment(&current, &secret.code_at(op.clock.now()), &ctx)
        .await
        .expect("confirm");
    op.clock.advance(time::Duration::seconds(31));

    // One factor so far: acr_values=2 sends the user to re-authenticate with the code.
    let (verifier, challenge) = pkce();
    let r = b
        .get(
            &op,
            &authorize_path(&rp.id, &challenge, &[("acr_values", "2")]),
        )
        .await;
    assert!(
        r.location().starts_with("/account/reauth?next="),
        "{}",
        r.location()
    );
    let none = b
        .get(
            &op,
            &authorize_path(
                &rp.id,
                &challenge,
                &[("acr_values", "2"), ("prompt", "none")],
            ),
        )
        .await;
    assert_eq!(
        query_param(none.location(), "error").as_deref(),
        Some("login_required")
    );
    let next = percent_encoding::percent_decode_str(
        r.location().trim_start_matches("/account/reauth?next="),
    )
    .decode_utf8()
    .expect("utf8")
    .into_owned();
    let page = b
        .get(&op, &format!("/account/reauth?next={}", enc(&next)))
        .await;
    let csrf = page.csrf();
    let code = secret.code_at(op.clock.now());
    let done = b
        .post(
            &op,
            "/account/reauth",
            &[
                ("csrf", &csrf),
                ("next", &next),
                ("password", PASSWORD),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let mut back = b.get(&op, done.location()).await;
    if back.body.contains("consent-approve") {
        let (csrf, request) = (
            back.csrf(),
            crate::common::browser::hidden(&back.body, "request"),
        );
        back = b
            .post(
                &op,
                "/consent",
                &[
                    ("csrf", &csrf),
                    ("request", &request),
                    ("decision", "approve"),
                ],
            )
            .await;
    }
    let code =
        query_param(back.location(), "code").unwrap_or_else(|| panic!("{}", back.location()));
    let (status, issued) = exchange(&op, &rp, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    let id = payload(issued["id_token"].as_str().expect("id token"));
    assert_eq!(id["acr"], "2", "{id}");
    assert!(
        id["amr"]
            .as_array()
            .expect("amr")
            .iter()
            .any(|m| m == "otp"),
        "{id}"
    );
}

async fn private_key_jwt_clients(db: TestDatabase) {
    let op = op(&db).await;
    // The client's own keys: a key manager on a database of its own.
    let client_db = TestDatabase::sqlite().await;
    let client_keys = trustgate_tokens::KeyManager::load(
        client_db.store.clone(),
        SealingKey::generate(),
        trustgate_tokens::KeyPolicy::default(),
        Arc::new(op.clock.clone()),
    )
    .await
    .expect("client keys");
    client_keys.ensure_keys().await.expect("keys");
    let attacker_db = TestDatabase::sqlite().await;
    let attacker_keys = trustgate_tokens::KeyManager::load(
        attacker_db.store.clone(),
        SealingKey::generate(),
        trustgate_tokens::KeyPolicy::default(),
        Arc::new(op.clock.clone()),
    )
    .await
    .expect("attacker keys");
    attacker_keys.ensure_keys().await.expect("keys");

    let (client, _) = op
        .state
        .clients
        .create(ClientRegistration {
            redirect_uris: vec![],
            grant_types: vec![GrantType::ClientCredentials],
            scopes: vec!["reports:read".into()],
            auth_method: AuthMethod::PrivateKeyJwt,
            jwks: Some(client_keys.jwks()),
            ..ClientRegistration::named("Signed service")
        })
        .await
        .expect("register");
    let now = op.clock.now().unix_timestamp();
    let claims = |aud: &str, exp: i64, jti: &str| json!({"iss": client.id, "sub": client.id, "aud": aud, "exp": exp, "iat": now, "jti": jti});
    let token_endpoint = format!("{ORIGIN}/oauth2/token");
    let assert_with = |keys: &trustgate_tokens::KeyManager, c: &Value| {
        keys.sign(Algorithm::ES256, "JWT", c).expect("sign")
    };
    let present = |assertion: String| {
        let client_id = client.id.clone();
        let op = &op;
        async move {
            let body = format!(
                "grant_type=client_credentials&client_id={}&client_assertion_type={}&client_assertion={}",
                enc(&client_id),
                enc("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                enc(&assertion)
            );
            Browser::default()
                .send(
                    op,
                    http::Request::post("/oauth2/token")
                        .header("content-type", "application/x-www-form-urlencoded"),
                    axum::body::Body::from(body),
                )
                .await
        }
    };

    let good = assert_with(&client_keys, &claims(&token_endpoint, now + 300, "jti-1"));
    let ok = present(good.clone()).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let replay = present(good).await;
    assert_eq!(
        replay.status,
        StatusCode::UNAUTHORIZED,
        "jti replay: {}",
        replay.body
    );
    assert!(replay.body.contains("invalid_client"));

    let issuer_aud = assert_with(&client_keys, &claims(ORIGIN, now + 300, "jti-2"));
    assert_eq!(
        present(issuer_aud).await.status,
        StatusCode::OK,
        "issuer as aud"
    );
    for (name, assertion) in [
        (
            "wrong aud",
            assert_with(
                &client_keys,
                &claims("https://elsewhere.example/token", now + 300, "jti-3"),
            ),
        ),
        (
            "expired",
            assert_with(&client_keys, &claims(&token_endpoint, now - 3600, "jti-4")),
        ),
        (
            "too far ahead",
            assert_with(
                &client_keys,
                &claims(&token_endpoint, now + 86_400, "jti-5"),
            ),
        ),
        (
            "not the client's key",
            assert_with(&attacker_keys, &claims(&token_endpoint, now + 300, "jti-6")),
        ),
        ("no jti", {
            let mut c = claims(&token_endpoint, now + 300, "x");
            c.as_object_mut().expect("object").remove("jti");
            assert_with(&client_keys, &c)
        }),
        ("alg none", {
            let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"));
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none"})),
                b64(&claims(&token_endpoint, now + 300, "jti-7"))
            )
        }),
    ] {
        let r = present(assertion).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name}: {}", r.body);
        assert!(r.body.contains("invalid_client"), "{name}");
    }
}

/// RFC 8693 over HTTP: a gateway exchanges the access token a user's app sent it for a token for
/// the orders service; refusals are RFC 6749 error JSON with RFC 8693's codes.
async fn token_exchange_at_the_token_endpoint(db: TestDatabase) {
    const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
    const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
    const GATEWAY: &str = "https://gateway.example";
    const ORDERS: &str = "https://orders.example";
    let op = op(&db).await;
    let rp = register(&op, "RP", |r| {
        secret_post(r);
        r.audience = vec![GATEWAY.into()];
        r.scopes.push("orders:read".into());
    })
    .await;
    let gateway = register(&op, "Gateway", |r| {
        r.redirect_uris.clear();
        r.grant_types = vec![GrantType::TokenExchange];
        r.resource_audiences = vec![GATEWAY.into()];
        r.scopes = vec!["orders:read".into()];
        r.token_exchange = Some(trustgate_oauth::clients::TokenExchangePolicy {
            audiences: vec![ORDERS.into()],
            api_keys: false,
        });
    })
    .await;
    let orders = register(&op, "Orders", |r| {
        r.redirect_uris.clear();
        r.grant_types = vec![GrantType::ClientCredentials];
        r.resource_audiences = vec![ORDERS.into()];
    })
    .await;
    let mut b = signed_in(&op, "alice").await;
    let (code, verifier) = code_for(&op, &mut b, &rp, &[("scope", "openid orders:read")]).await;
    let (status, issued) = exchange(&op, &rp, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    let subject = issued["access_token"].as_str().expect("at").to_owned();
    let form = |extra: &[(&'static str, &'static str)]| {
        let mut form = vec![
            ("grant_type", EXCHANGE),
            ("subject_token", subject.as_str()),
            ("subject_token_type", ACCESS_TOKEN),
        ];
        form.extend_from_slice(extra);
        form
    };
    let refused =
        |status: StatusCode, body: &Value| (status, body["error"].as_str().map(str::to_owned));

    // Not registered for the grant.
    let (status, body) = token(&op, &rp, &form(&[("audience", ORDERS)])).await;
    assert_eq!(
        refused(status, &body),
        (StatusCode::BAD_REQUEST, Some("unauthorized_client".into()))
    );
    // Targets: none, two (the form may repeat `resource`, RFC 8707), or one not allowed.
    for extra in [
        &[][..],
        &[("resource", ORDERS), ("resource", "https://ledger.example")][..],
        &[("audience", "https://ledger.example")][..],
    ] {
        let (status, body) = token(&op, &gateway, &form(extra)).await;
        assert_eq!(
            refused(status, &body),
            (StatusCode::BAD_REQUEST, Some("invalid_target".into())),
            "{extra:?}: {body}"
        );
    }
    // A tampered subject token.
    let mut tampered = subject.clone();
    let last = tampered.pop().expect("char");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let (status, body) = token(
        &op,
        &gateway,
        &[
            ("grant_type", EXCHANGE),
            ("subject_token", &tampered),
            ("subject_token_type", ACCESS_TOKEN),
            ("audience", ORDERS),
        ],
    )
    .await;
    assert_eq!(
        refused(status, &body),
        (StatusCode::BAD_REQUEST, Some("invalid_request".into()))
    );

    let r = post_form(
        &op,
        "/oauth2/token",
        &gateway,
        &form(&[("resource", ORDERS), ("audience", ORDERS)]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let body: Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(body["issued_token_type"], ACCESS_TOKEN);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "orders:read");
    assert_eq!(body["expires_in"], 300);
    assert!(body.get("refresh_token").is_none() && body.get("id_token").is_none());
    let downstream = body["access_token"].as_str().expect("at");
    let claims = payload(downstream);
    assert_eq!(claims["aud"], ORDERS);
    assert_eq!(claims["sub"], payload(&subject)["sub"]);
    assert_eq!(claims["client_id"], gateway.id.as_str());
    assert_eq!(
        claims["act"],
        json!({"sub": gateway.id, "client_id": gateway.id})
    );
    assert_eq!(claims["amr"], payload(&subject)["amr"]);

    let seen = introspect(&op, &orders, downstream).await;
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["act"], claims["act"]);
    assert_eq!(seen["scope"], "orders:read");
    assert_eq!(
        introspect(&op, &rp, downstream).await,
        json!({"active": false}),
        "not for the app"
    );
    assert_eq!(
        userinfo(&op, downstream).await.status,
        StatusCode::UNAUTHORIZED,
        "not for userinfo"
    );
}

/// `/admin/v1/...` as the bootstrap administrator.
async fn admin(op: &Op, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let r = Browser::default()
        .send(
            op,
            http::Request::builder()
                .method(method)
                .uri(path)
                .header("authorization", format!("Bearer {}", op.admin_token))
                .header("content-type", "application/json"),
            if body.is_null() {
                axum::body::Body::empty()
            } else {
                axum::body::Body::from(body.to_string())
            },
        )
        .await;
    (
        r.status,
        serde_json::from_str(&r.body).unwrap_or(Value::Null),
    )
}

/// RFC 8693 over HTTP with API keys as subject tokens: a gateway registered with
/// `token_exchange.api_keys` exchanges a service account's key (and a user's personal access
/// token) for a token for the orders service; every way a key can be dead, and every rule that
/// only narrows, is refused with RFC 8693's codes and recorded.
async fn api_keys_as_subject_tokens_at_the_token_endpoint(db: TestDatabase) {
    const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
    const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
    const API_KEY: &str = "urn:trustgate:params:oauth:token-type:api_key";
    const GATEWAY: &str = "https://gateway.example";
    const ORDERS: &str = "https://orders.example";
    const LEDGER: &str = "https://ledger.example";
    use trustgate_authn::api_keys::KeySpec;
    use trustgate_store_api::KeyOwner;

    let op = op(&db).await;
    let gateway_registration = |api_keys: bool| {
        move |r: &mut ClientRegistration| {
            r.redirect_uris.clear();
            r.grant_types = vec![GrantType::TokenExchange];
            r.resource_audiences = vec![GATEWAY.into()];
            r.scopes = vec!["orders:read".into(), "orders:write".into()];
            r.token_exchange = Some(trustgate_oauth::clients::TokenExchangePolicy {
                audiences: vec![ORDERS.into()],
                api_keys,
            });
        }
    };
    let gateway = register(&op, "Gateway", gateway_registration(true)).await;
    let no_keys = register(&op, "Gateway without keys", gateway_registration(false)).await;
    let orders = register(&op, "Orders", |r| {
        r.redirect_uris.clear();
        r.grant_types = vec![GrantType::ClientCredentials];
        r.resource_audiences = vec![ORDERS.into()];
    })
    .await;
    let (status, account) = admin(
        &op,
        "POST",
        "/admin/v1/service-accounts",
        json!({ "name": "ci" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{account}");
    let ci = account["id"].as_str().expect("id").to_owned();
    let issue = |owner: KeyOwner, scopes: &[&str], expires_at: Option<time::OffsetDateTime>| {
        let spec = KeySpec {
            description: "exchange test".into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            expires_at,
            rate_limit_per_minute: None,
        };
        let keys = op.state.api_keys.clone();
        async move {
            let issued = keys.issue(&owner, &spec).await.expect("issue");
            (issued.key.expose().to_owned(), issued.record.id)
        }
    };
    let (ci_key, ci_key_id) = issue(KeyOwner::Service(ci.clone()), &["orders:read"], None).await;
    let form = |key: &str, target: &str, extra: &[(&str, &str)]| {
        let mut form: Vec<(String, String)> = [
            ("grant_type", EXCHANGE),
            ("subject_token", key),
            ("subject_token_type", API_KEY),
            ("audience", target),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        form.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        form
    };
    let send = |client: &Registered, form: Vec<(String, String)>| {
        let op = &op;
        let client = Registered {
            id: client.id.clone(),
            secret: client.secret.clone(),
            basic: client.basic,
        };
        async move {
            let pairs: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            token(op, &client, &pairs).await
        }
    };
    let refused_with = |(status, body): (StatusCode, Value), code: &str, why: &str| {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {body}");
        assert_eq!(body["error"], code, "{why}: {body}");
    };

    // The exchange: the service account, acting through the gateway, for the orders service.
    let (status, body) = send(&gateway, form(&ci_key, ORDERS, &[])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["issued_token_type"], ACCESS_TOKEN);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "orders:read");
    assert_eq!(body["expires_in"], 300);
    assert!(body.get("refresh_token").is_none());
    let internal = body["access_token"].as_str().expect("at").to_owned();
    let claims = payload(&internal);
    assert_eq!(claims["sub"], format!("service:{ci}"));
    assert_eq!(claims["key_id"], ci_key_id.as_str());
    assert_eq!(claims["aud"], ORDERS);
    assert_eq!(claims["client_id"], gateway.id.as_str());
    assert_eq!(
        claims["act"],
        json!({"sub": gateway.id, "client_id": gateway.id})
    );
    for absent in ["auth_time", "amr", "acr", "uv", "gid", "sid"] {
        assert!(claims.get(absent).is_none(), "{absent}: {claims}");
    }
    // The key and the token it became name the same owner and key at introspection.
    let seen = introspect(&op, &orders, &internal).await;
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["sub"], format!("service:{ci}"));
    assert_eq!(seen["key_id"], ci_key_id.as_str());
    let key_seen = introspect(&op, &gateway, &ci_key).await;
    assert_eq!(key_seen["token_type"], "api_key");
    assert_eq!(key_seen["sub"], seen["sub"]);
    assert_eq!(key_seen["key_id"], seen["key_id"]);

    // A personal access token: the user, as `user:<id>`.
    let alice = op
        .state
        .store
        .find_user_by_login("alice")
        .await
        .expect("store")
        .expect("alice")
        .id;
    let (pat, _) = issue(KeyOwner::User(alice.clone()), &["orders:read"], None).await;
    let (status, body) = send(&gateway, form(&pat, ORDERS, &[])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = payload(body["access_token"].as_str().expect("at"));
    assert_eq!(claims["sub"], format!("user:{alice}"));
    assert!(claims.get("auth_time").is_none());

    // Refusals: the client did not opt in; a scope wider than the key's; a target the client
    // may not use; a key as the actor; a key typed as an access token.
    refused_with(
        send(&no_keys, form(&ci_key, ORDERS, &[])).await,
        "invalid_request",
        "no token_exchange.api_keys",
    );
    refused_with(
        send(
            &gateway,
            form(&ci_key, ORDERS, &[("scope", "orders:read orders:write")]),
        )
        .await,
        "invalid_scope",
        "wider than the key",
    );
    refused_with(
        send(&gateway, form(&ci_key, LEDGER, &[])).await,
        "invalid_target",
        "not a target of the client",
    );
    refused_with(
        send(
            &gateway,
            form(
                &ci_key,
                ORDERS,
                &[("actor_token", &pat), ("actor_token_type", API_KEY)],
            ),
        )
        .await,
        "invalid_request",
        "a key as the actor",
    );
    let mut as_access_token = form(&ci_key, ORDERS, &[]);
    as_access_token[2].1 = ACCESS_TOKEN.to_owned();
    refused_with(
        send(&gateway, as_access_token).await,
        "invalid_request",
        "a key typed as an access token",
    );

    // Dead keys: expired, revoked, of a disabled owner.
    let now = op.clock.now();
    let (brief, _) = issue(
        KeyOwner::Service(ci.clone()),
        &["orders:read"],
        Some(now + time::Duration::seconds(100)),
    )
    .await;
    let (status, body) = send(&gateway, form(&brief, ORDERS, &[])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expires_in"], 100, "never past the key's expiry");
    op.clock.advance(time::Duration::seconds(100));
    refused_with(
        send(&gateway, form(&brief, ORDERS, &[])).await,
        "invalid_request",
        "an expired key",
    );
    let (revoked, revoked_id) = issue(KeyOwner::Service(ci.clone()), &["orders:read"], None).await;
    assert_eq!(
        send(&gateway, form(&revoked, ORDERS, &[])).await.0,
        StatusCode::OK
    );
    let (status, _) = admin(
        &op,
        "DELETE",
        &format!("/admin/v1/api-keys/{revoked_id}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    refused_with(
        send(&gateway, form(&revoked, ORDERS, &[])).await,
        "invalid_request",
        "a revoked key",
    );
    let (status, _) = admin(
        &op,
        "POST",
        &format!("/admin/v1/service-accounts/{ci}/disable"),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    refused_with(
        send(&gateway, form(&ci_key, ORDERS, &[])).await,
        "invalid_request",
        "the owner is disabled",
    );
    let (status, _) = admin(
        &op,
        "POST",
        &format!("/admin/v1/service-accounts/{ci}/enable"),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        send(&gateway, form(&ci_key, ORDERS, &[])).await.0,
        StatusCode::OK,
        "the same key again once its owner is enabled"
    );

    // Every refusal is on the record, with trustgate's reason (never the key).
    let refusals = op
        .state
        .store
        .list_audit(
            &trustgate_store_api::AuditFilter {
                kind: Some("oauth_token_exchange_refused".into()),
                ..trustgate_store_api::AuditFilter::default()
            },
            50,
        )
        .await
        .expect("audit");
    assert_eq!(refusals.len(), 8, "{refusals:?}");
    for r in &refusals {
        let text = serde_json::to_string(&r.event.detail).expect("json");
        for key in [&ci_key, &pat, &brief, &revoked] {
            assert!(!text.contains(key.as_str()), "a key in the trail: {text}");
        }
    }
    assert!(refusals.iter().any(|r| {
        r.event.detail["reason"]
            .as_str()
            .is_some_and(|why| why.contains("token_exchange.api_keys"))
    }));
}

async fn discovery_and_jwks(db: TestDatabase) {
    let op = op(&db).await;
    let mut b = Browser::default();
    let r = b.get(&op, "/.well-known/openid-configuration").await;
    assert_eq!(r.status, StatusCode::OK);
    let meta: Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(meta["issuer"], ORIGIN);
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(meta["response_types_supported"], json!(["code"]));
    assert!(
        !meta["grant_types_supported"]
            .as_array()
            .expect("grants")
            .iter()
            .any(|g| g == "password" || g == "implicit")
    );
    assert!(
        meta["grant_types_supported"]
            .as_array()
            .expect("grants")
            .iter()
            .any(|g| g == "urn:ietf:params:oauth:grant-type:token-exchange"),
        "token exchange (RFC 8693) is advertised"
    );
    let same = b.get(&op, "/.well-known/oauth-authorization-server").await;
    assert_eq!(same.body, r.body);
    let jwks = b.get(&op, "/.well-known/jwks.json").await;
    let keys: Value = serde_json::from_str(&jwks.body).expect("json");
    for key in keys["keys"].as_array().expect("keys") {
        assert!(key["kid"].is_string() && key["alg"].is_string());
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(key.get(private).is_none(), "private member {private}");
        }
    }
}

/// DPoP over HTTP (RFC 9449 §5, §7.1, §8): the nonce comes in `DPoP-Nonce` with
/// `use_dpop_nonce` and with every answer to a proof; one `DPoP` header only; userinfo offers
/// both schemes and answers a bound token used as bearer with `invalid_token`.
async fn dpop_nonces_and_challenges_over_http(db: TestDatabase) {
    let op = op(&db).await;
    let service = register(&op, "Service", |r| {
        r.redirect_uris.clear();
        r.grant_types = vec![GrantType::ClientCredentials];
        r.scopes = vec!["reports:read".into()];
    })
    .await;
    let key = trustgate_testkit::dpop::DpopKey::generate();
    let htu = format!("{ORIGIN}/oauth2/token");
    let now = || op.clock.now().unix_timestamp();
    let basic = STANDARD.encode(format!("{}:{}", enc(&service.id), enc(&service.secret)));
    let send = |proofs: Vec<String>| {
        let mut request = http::Request::post("/oauth2/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", format!("Basic {basic}"));
        for proof in proofs {
            request = request.header("dpop", proof);
        }
        let op = &op;
        async move {
            Browser::default()
                .send(
                    op,
                    request,
                    axum::body::Body::from("grant_type=client_credentials"),
                )
                .await
        }
    };
    let first = send(vec![key.proof("POST", &htu, now(), json!({}))]).await;
    assert_eq!(first.status, StatusCode::BAD_REQUEST, "{}", first.body);
    assert!(first.body.contains("use_dpop_nonce"), "{}", first.body);
    let nonce = first.headers["dpop-nonce"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let second = send(vec![key.proof(
        "POST",
        &htu,
        now(),
        json!({ "nonce": nonce }),
    )])
    .await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert!(
        second.headers.contains_key("dpop-nonce"),
        "a fresh nonce with the answer"
    );
    let body: Value = serde_json::from_str(&second.body).expect("json");
    assert_eq!(body["token_type"], "DPoP");
    let twice = send(vec![
        key.proof("POST", &htu, now(), json!({ "nonce": nonce })),
        key.proof("POST", &htu, now(), json!({ "nonce": nonce })),
    ])
    .await;
    assert_eq!(twice.status, StatusCode::BAD_REQUEST);
    assert!(twice.body.contains("invalid_dpop_proof"), "{}", twice.body);

    // Userinfo without a token: both schemes offered.
    let anonymous = Browser::default()
        .send(
            &op,
            http::Request::get("/oidc/userinfo"),
            axum::body::Body::empty(),
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let offered: Vec<&str> = anonymous
        .headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().expect("ascii"))
        .collect();
    assert!(
        offered.iter().any(|c| c.starts_with("Bearer ")),
        "{offered:?}"
    );
    assert!(
        offered
            .iter()
            .any(|c| c.starts_with("DPoP ") && c.contains("algs=")),
        "{offered:?}"
    );
    // The DPoP scheme without a proof is a DPoP error.
    let no_proof = Browser::default()
        .send(
            &op,
            http::Request::get("/oidc/userinfo").header("authorization", "DPoP a.b.c"),
            axum::body::Body::empty(),
        )
        .await;
    assert_eq!(no_proof.status, StatusCode::UNAUTHORIZED);
    let challenge = no_proof.headers["www-authenticate"]
        .to_str()
        .expect("ascii");
    assert!(
        challenge.starts_with("DPoP ") && challenge.contains("invalid_dpop_proof"),
        "{challenge}"
    );
}

test_on_both_backends!(
    dpop_nonces_and_challenges_over_http,
    code_reuse_is_invalid_grant_and_revokes_the_tokens,
    authorization_request_errors_go_where_they_may,
    prompt_none_and_max_age,
    pkce_is_required_and_checked,
    refresh_tokens_rotate_and_are_bound_to_their_client,
    forged_and_misused_tokens_are_rejected,
    disabling_a_user_revokes_their_tokens,
    client_authentication_and_client_credentials,
    pushed_authorization_requests,
    device_flow_polling,
    device_code_guesses_are_throttled_without_an_oracle,
    consent_is_remembered_and_can_be_withdrawn,
    private_key_jwt_clients,
    acr_values_2_steps_up_to_a_second_factor,
    token_exchange_at_the_token_endpoint,
    api_keys_as_subject_tokens_at_the_token_endpoint,
    discovery_and_jwks,
);
