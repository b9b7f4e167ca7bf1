//! The `pep` layer in front of a small axum app, against trustgate itself: trustgate's router
//! is served on a real loopback socket (the layer fetches the JWKS, introspects and asks the
//! PDP over HTTP), the protected app is called with `oneshot`. Every case asserts the status,
//! the challenge and the `DecisionSink` record's reason.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;
use trustgate_authn::api_keys::KeySpec;
use trustgate_core::{Clock, Secret};
use trustgate_oauth::clients::GrantType;
use trustgate_pep::{
    Authenticator, DecisionCache, DecisionCacheConfig, DecisionPoint, DecisionRecord, DecisionSink,
    DpopConfig, DpopVerifier, HttpDecisionPoint, IntrospectionConfig, Introspector, JwtConfig,
    JwtVerifier, MemorySink, Pep, Principal, Reason, RevisionFeed, RouteTable, Rule, SessionCookie,
    StepUp,
};
use trustgate_server::pep::{AccountsSessionResolver, AuditSink, InProcessDecisionPoint};
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;
use trustgate_store_api::KeyOwner;
use trustgate_testkit::dpop::{DpopKey, ath as dpop_ath};
use trustgate_tokens::{AccessTokenClaims, Algorithm, Audience, Confirmation};

use crate::common::browser::Browser;
use crate::oauth_flows::{Op, PASSWORD, Registered, op, register};

/// This resource server's audience.
const AUD: &str = "https://learning.example";
const MODEL: &str = "model
  schema 1.1
type user
type service
type course
  relations
    define viewer: [user, service]
type platform
  relations
    define admin: [user]
";

/// Every record, in order (a test's view of the audit).
type Records = MemorySink;

/// trustgate on a socket, a PDP store with the model and tuples, a resource-server client.
struct Trustgate {
    op: Op,
    base: url::Url,
    issuer: String,
    store_id: String,
    jwks_hits: Arc<AtomicUsize>,
    /// Checks asked over HTTP.
    check_hits: Arc<AtomicUsize>,
    rs: Registered,
}

async fn admin(op: &Op, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {}", op.admin_token))
        .header("content-type", "application/json")
        .body(if body.is_null() {
            Body::empty()
        } else {
            Body::from(body.to_string())
        })
        .expect("request");
    let response = op.app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn trustgate(db: &TestDatabase) -> Trustgate {
    let op = op(db).await;
    let hits = Arc::new(AtomicUsize::new(0));
    let check_hits = Arc::new(AtomicUsize::new(0));
    let counted = (hits.clone(), check_hits.clone());
    let app = op.app.clone().layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let (jwks, checks) = counted.clone();
            async move {
                if req.uri().path() == "/.well-known/jwks.json" {
                    jwks.fetch_add(1, Ordering::SeqCst);
                }
                if req.uri().path().ends_with("/check") {
                    checks.fetch_add(1, Ordering::SeqCst);
                }
                next.run(req).await
            }
        },
    ));
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
    let (status, store) = admin(&op, "POST", "/stores", json!({ "name": "learning" })).await;
    assert_eq!(status, StatusCode::CREATED, "{store}");
    let store_id = store["id"].as_str().expect("store id").to_owned();
    let model = trustgate_authz::dsl::parse(MODEL).expect("model");
    let (status, body) = admin(
        &op,
        "POST",
        &format!("/stores/{store_id}/authorization-models"),
        serde_json::to_value(&model).expect("json"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let rs = register(&op, "Learning", |r| {
        r.redirect_uris.clear();
        r.grant_types = vec![GrantType::ClientCredentials];
        r.resource_audiences = vec![AUD.into()];
    })
    .await;
    let issuer = op
        .state
        .config
        .oauth
        .issuer
        .clone()
        .expect("the test OP has an issuer");
    Trustgate {
        op,
        base: url::Url::parse(&format!("http://{addr}/")).expect("url"),
        issuer,
        store_id,
        jwks_hits: hits,
        check_hits,
        rs,
    }
}

impl Trustgate {
    async fn write(&self, tuples: &[(&str, &str, &str)]) {
        self.change("writes", tuples).await;
    }

    async fn delete(&self, tuples: &[(&str, &str, &str)]) {
        self.change("deletes", tuples).await;
    }

    /// Writes (`writes`) or deletes (`deletes`) `(user, relation, object)` tuples.
    async fn change(&self, how: &str, tuples: &[(&str, &str, &str)]) {
        let keys: Vec<Value> = tuples
            .iter()
            .map(|(user, relation, object)| {
                json!({ "user": user, "relation": relation, "object": object })
            })
            .collect();
        let (status, body) = admin(
            &self.op,
            "POST",
            &format!("/stores/{}/write", self.store_id),
            json!({ how: { "tuple_keys": keys } }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    fn now(&self) -> i64 {
        self.op.clock.now().unix_timestamp()
    }

    /// An access token as trustgate issues them, edited by `edit`.
    fn token(&self, sub: &str, edit: impl FnOnce(&mut AccessTokenClaims)) -> String {
        let now = self.now();
        let mut claims = AccessTokenClaims {
            iss: self.issuer.clone(),
            sub: sub.into(),
            aud: Audience::One(AUD.into()),
            exp: now + 300,
            iat: now,
            nbf: None,
            jti: uuid::Uuid::new_v4().to_string(),
            client_id: "tgc_app".into(),
            scope: Some("progress:read".into()),
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
        self.op
            .state
            .oauth
            .keys()
            .sign(Algorithm::ES256, "at+jwt", &claims)
            .expect("sign")
    }

    fn http() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client")
    }

    fn http_pdp(&self) -> Arc<dyn DecisionPoint> {
        Arc::new(self.http_decision_point())
    }

    fn http_decision_point(&self) -> HttpDecisionPoint {
        HttpDecisionPoint::new(
            &self.base,
            &self.store_id,
            Secret::new(self.op.admin_token.clone()),
            None,
            Self::http(),
        )
        .expect("pdp")
    }

    fn authenticator(&self, ttl: Duration) -> Authenticator {
        let clock: Arc<dyn Clock> = Arc::new(self.op.clock.clone());
        let mut jwt = JwtConfig::for_trustgate(&self.issuer, AUD).expect("config");
        jwt.jwks_url = self.base.join(".well-known/jwks.json").expect("url");
        Authenticator {
            jwt: Some(JwtVerifier::new(jwt, Self::http(), clock.clone())),
            introspection: Some(Introspector::new(
                IntrospectionConfig {
                    url: self.base.join("oauth2/introspect").expect("url"),
                    client_id: self.rs.id.clone(),
                    client_secret: Secret::new(self.rs.secret.clone()),
                    ttl,
                },
                Self::http(),
                clock,
            )),
            session: Some(SessionCookie {
                name: "__Host-trustgate_session".into(),
                resolver: Arc::new(AccountsSessionResolver::new(self.op.state.accounts.clone())),
            }),
            jwt_liveness: None,
            dpop: Some(DpopVerifier::new(
                DpopConfig::for_origin(self.base.clone()),
                Arc::new(self.op.clock.clone()),
            )),
        }
    }

    /// The protected app: the handler answers with the principal it sees.
    fn app(&self, pdp: Arc<dyn DecisionPoint>, sink: Arc<dyn DecisionSink>) -> Router {
        let routes = RouteTable::new([
            Rule::new(
                Method::GET,
                "/courses/{id}/progress",
                "viewer",
                "course:{id}",
            )
            .scopes(["progress:read"]),
            Rule::new(Method::GET, "/courses/{id}", "viewer", "course:{id}"),
            Rule::new(Method::GET, "/settings", "admin", "platform:main").step_up(StepUp {
                max_age: Some(600),
                amr: vec!["otp".into()],
                acr_values: vec!["2".into()],
            }),
            Rule::public(Method::GET, "/healthz"),
        ])
        .expect("routes");
        let layer = Pep::builder(
            "learning",
            routes,
            self.authenticator(Duration::from_secs(5)),
            pdp,
        )
        .sink(sink)
        .clock(Arc::new(self.op.clock.clone()))
        .build();
        let seen = |p: Principal| async move { axum::Json(p) };
        Router::new()
            .route("/courses/{id}/progress", get(seen))
            .route("/courses/{id}", get(seen))
            .route("/settings", get(seen))
            .route("/unruled", get(seen))
            .route("/healthz", get(|| async { "ok" }))
            .layer(layer)
    }
}

struct Answer {
    status: StatusCode,
    challenge: Option<String>,
    body: Value,
}

async fn call(app: &Router, path: &str, headers: &[(&str, &str)]) -> Answer {
    call_over(app, path, headers, None).await
}

/// [`call`] as over a mutual-TLS connection with the certificate whose `x5t#S256` is
/// `certificate` (what the gateway's mutual-TLS listener tells the layer).
async fn call_over(
    app: &Router,
    path: &str,
    headers: &[(&str, &str)],
    certificate: Option<&str>,
) -> Answer {
    let mut request = Request::builder().uri(path).header("x-request-id", "req-1");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(certificate) = certificate {
        request = request.extension(trustgate_pep::PresentedCertificate(certificate.to_owned()));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().expect("ascii").to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    Answer {
        status,
        challenge,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The last record, which must be the only new one since `before`.
fn last(records: &Records, before: &mut usize) -> DecisionRecord {
    let all = records.records();
    assert_eq!(all.len(), *before + 1, "one record per request");
    *before = all.len();
    all.last().cloned().expect("a record")
}

async fn the_layer_authenticates_authorizes_and_answers(db: TestDatabase) {
    let tg = trustgate(&db).await;
    tg.write(&[
        ("user:alice", "viewer", "course:1"),
        ("user:alice", "admin", "platform:main"),
    ])
    .await;
    let records = Arc::new(Records::default());
    let app = tg.app(tg.http_pdp(), records.clone());
    let mut n = 0;

    // Anonymous: 401 with a challenge and no error code (RFC 6750 §3.1).
    let a = call(&app, "/courses/1/progress", &[]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.challenge.as_deref(), Some("Bearer realm=\"learning\""));
    assert_eq!(a.body["code"], "unauthenticated");
    assert_eq!(a.body["request_id"], "req-1");
    let r = last(&records, &mut n);
    assert_eq!(r.reason, Reason::MissingCredential);
    assert_eq!(
        (r.action.as_str(), r.resource.as_str()),
        ("viewer", "course:1")
    );
    assert_eq!(r.request_id.as_deref(), Some("req-1"));

    // Invalid tokens: expired, tampered, another audience, another issuer, garbage, wrong scheme.
    let valid = tg.token("alice", |_| {});
    // The payload edited under the original signature.
    let tampered = {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let parts: Vec<&str> = valid.split('.').collect();
        let mut claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
        claims["sub"] = json!("mallory");
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            parts[2]
        )
    };
    let now = tg.now();
    let cases = [
        (
            tg.token("alice", |c| {
                c.iat = now - 600;
                c.exp = now;
            }),
            "token_expired",
        ),
        (tampered, "token_signature_invalid"),
        (
            tg.token("alice", |c| {
                c.aud = Audience::One("https://other.example".into())
            }),
            "token_audience_wrong",
        ),
        (
            tg.token("alice", |c| c.iss = "https://evil.example".into()),
            "token_issuer_wrong",
        ),
    ];
    for (token, why) in cases {
        let a = call(
            &app,
            "/courses/1/progress",
            &[("authorization", &bearer(&token))],
        )
        .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{why}");
        let challenge = a.challenge.expect("challenge");
        assert!(
            challenge.starts_with("Bearer realm=\"learning\", error=\"invalid_token\""),
            "{why}: {challenge}"
        );
        assert!(challenge.contains(why), "{why}: {challenge}");
        assert_eq!(a.body["code"], "invalid_token");
        let r = last(&records, &mut n);
        assert_eq!(r.reason, Reason::InvalidToken { why: why.into() });
        assert!(r.principal.is_none());
    }
    let a = call(
        &app,
        "/courses/1/progress",
        &[("authorization", "Basic YWxpY2U6cHc=")],
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(
        matches!(last(&records, &mut n).reason, Reason::InvalidToken { .. }),
        "another scheme never falls through to anonymous"
    );

    // A valid token and an allowed tuple: the handler sees the principal.
    let a = call(
        &app,
        "/courses/1/progress",
        &[("authorization", &bearer(&valid))],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["id"], "alice");
    assert_eq!(a.body["kind"], "user");
    assert_eq!(a.body["method"], "jwt");
    assert_eq!(a.body["scopes"], json!(["progress:read"]));
    assert_eq!(a.body["client_id"], "tgc_app");
    let r = last(&records, &mut n);
    assert_eq!(r.reason, Reason::Allowed);
    assert_eq!(
        r.principal.as_ref().map(Principal::subject).as_deref(),
        Some("user:alice")
    );

    // The PDP says no: 403, no challenge.
    let bob = tg.token("bob", |_| {});
    let a = call(
        &app,
        "/courses/1/progress",
        &[("authorization", &bearer(&bob))],
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.challenge, None);
    assert_eq!(a.body["code"], "permission_denied");
    assert_eq!(last(&records, &mut n).reason, Reason::PdpDeny);
    let a = call(
        &app,
        "/courses/2/progress",
        &[("authorization", &bearer(&valid))],
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(last(&records, &mut n).reason, Reason::PdpDeny);

    // A route with no rule: 403 even for a valid token, and an odd parameter matches nothing.
    for path in ["/unruled", "/courses/a:b/progress", "/courses/1%23x"] {
        let a = call(&app, path, &[("authorization", &bearer(&valid))]).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(last(&records, &mut n).reason, Reason::NoRule, "{path}");
    }

    // A missing scope: 403 insufficient_scope with the scope.
    let unscoped = tg.token("alice", |c| c.scope = Some("profile".into()));
    let a = call(
        &app,
        "/courses/1/progress",
        &[("authorization", &bearer(&unscoped))],
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let challenge = a.challenge.expect("challenge");
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(
        challenge.ends_with("scope=\"progress:read\""),
        "{challenge}"
    );
    assert_eq!(a.body["code"], "insufficient_scope");
    assert_eq!(
        last(&records, &mut n).reason,
        Reason::MissingScope {
            required: vec!["progress:read".into()]
        }
    );
    // The same token where no scope is required.
    let a = call(&app, "/courses/1", &[("authorization", &bearer(&unscoped))]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(last(&records, &mut n).reason, Reason::Allowed);

    // Step-up (RFC 9470): an authentication too old, then one without the second factor.
    let old = tg.token("alice", |c| {
        c.auth_time = Some(now - 601);
        c.amr = Some(vec!["pwd".into(), "otp".into()]);
    });
    let a = call(&app, "/settings", &[("authorization", &bearer(&old))]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let challenge = a.challenge.expect("challenge");
    assert!(
        challenge.contains("error=\"insufficient_user_authentication\""),
        "{challenge}"
    );
    assert!(challenge.contains("max_age=\"600\""), "{challenge}");
    assert!(!challenge.contains("acr_values"), "{challenge}");
    assert_eq!(a.body["code"], "insufficient_user_authentication");
    assert_eq!(
        last(&records, &mut n).reason,
        Reason::StepUp {
            max_age: Some(600),
            acr_values: vec![]
        }
    );
    let one_factor = tg.token("alice", |_| {});
    let a = call(
        &app,
        "/settings",
        &[("authorization", &bearer(&one_factor))],
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let challenge = a.challenge.expect("challenge");
    assert!(challenge.contains("acr_values=\"2\""), "{challenge}");
    assert!(!challenge.contains("max_age"), "{challenge}");
    assert_eq!(
        last(&records, &mut n).reason,
        Reason::StepUp {
            max_age: None,
            acr_values: vec!["2".into()]
        }
    );
    let stepped_up = tg.token("alice", |c| c.amr = Some(vec!["pwd".into(), "otp".into()]));
    let a = call(
        &app,
        "/settings",
        &[("authorization", &bearer(&stepped_up))],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(last(&records, &mut n).reason, Reason::Allowed);

    // A public route: no credential needed, no decision asked.
    let a = call(&app, "/healthz", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(last(&records, &mut n).reason, Reason::PublicRoute);
}

async fn an_unknown_kid_refetches_the_jwks_at_most_once_per_interval(db: TestDatabase) {
    let tg = trustgate(&db).await;
    tg.write(&[("user:alice", "viewer", "course:1")]).await;
    let records = Arc::new(Records::default());
    let app = tg.app(tg.http_pdp(), records.clone());
    let mut n = 0;
    let valid = tg.token("alice", |_| {});
    let a = call(&app, "/courses/1", &[("authorization", &bearer(&valid))]).await;
    assert_eq!(a.status, StatusCode::OK);
    last(&records, &mut n);
    assert_eq!(tg.jwks_hits.load(Ordering::SeqCst), 1, "fetched once");

    // A token whose kid trustgate never published.
    let bogus = |kid: &str| {
        let mut parts = valid.split('.');
        let header: Value = serde_json::from_slice(
            &base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                parts.next().expect("header"),
            )
            .expect("b64"),
        )
        .expect("json");
        let mut header = header;
        header["kid"] = json!(kid);
        let header = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            header.to_string(),
        );
        format!(
            "{header}.{}.{}",
            parts.next().expect("payload"),
            parts.next().expect("signature")
        )
    };
    // Within the interval of the first fetch: no refetch.
    let a = call(
        &app,
        "/courses/1",
        &[("authorization", &bearer(&bogus("k1")))],
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        last(&records, &mut n).reason,
        Reason::InvalidToken {
            why: "token_key_unknown".into()
        }
    );
    assert_eq!(tg.jwks_hits.load(Ordering::SeqCst), 1);
    // After the interval: one refetch, then none for the next bogus kid.
    tg.op.clock.advance(time::Duration::seconds(31));
    let a = call(
        &app,
        "/courses/1",
        &[("authorization", &bearer(&bogus("k2")))],
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    last(&records, &mut n);
    assert_eq!(tg.jwks_hits.load(Ordering::SeqCst), 2, "one refetch");
    for kid in ["k3", "k4", "k5"] {
        let a = call(
            &app,
            "/courses/1",
            &[("authorization", &bearer(&bogus(kid)))],
        )
        .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        last(&records, &mut n);
    }
    assert_eq!(
        tg.jwks_hits.load(Ordering::SeqCst),
        2,
        "a flood of bogus kids does not hammer the issuer"
    );
    // The real key still verifies from the cache.
    let valid = tg.token("alice", |_| {});
    let a = call(&app, "/courses/1", &[("authorization", &bearer(&valid))]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(tg.jwks_hits.load(Ordering::SeqCst), 2);
}

async fn a_pdp_that_cannot_answer_is_503_never_200(db: TestDatabase) {
    let tg = trustgate(&db).await;
    tg.write(&[("user:alice", "viewer", "course:1")]).await;
    // A closed port: bound, then released.
    let closed = {
        let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        l.local_addr().expect("addr")
    };
    let down: Arc<dyn DecisionPoint> = Arc::new(
        HttpDecisionPoint::new(
            &url::Url::parse(&format!("http://{closed}/")).expect("url"),
            &tg.store_id,
            Secret::new(tg.op.admin_token.clone()),
            None,
            Trustgate::http(),
        )
        .expect("pdp"),
    );
    let records = Arc::new(Records::default());
    let app = tg.app(down, records.clone());
    let mut n = 0;
    let valid = tg.token("alice", |_| {});
    let a = call(&app, "/courses/1", &[("authorization", &bearer(&valid))]).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.body["code"], "pdp_unavailable");
    assert!(matches!(
        last(&records, &mut n).reason,
        Reason::PdpUnavailable { .. }
    ));

    // A PDP that answers with an error (a store that does not exist) is no allow either.
    let wrong_store: Arc<dyn DecisionPoint> = Arc::new(
        HttpDecisionPoint::new(
            &tg.base,
            "01ARZ3NDEKTSV4RRFFQ69G5FAV",
            Secret::new(tg.op.admin_token.clone()),
            None,
            Trustgate::http(),
        )
        .expect("pdp"),
    );
    let app = tg.app(wrong_store, records.clone());
    let a = call(&app, "/courses/1", &[("authorization", &bearer(&valid))]).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(matches!(
        last(&records, &mut n).reason,
        Reason::PdpUnavailable { .. }
    ));

    // The JWKS endpoint unreachable: 503 too, never an anonymous pass.
    let mut authenticator = tg.authenticator(Duration::from_secs(5));
    let mut jwt = JwtConfig::for_trustgate(&tg.issuer, AUD).expect("config");
    jwt.jwks_url = url::Url::parse(&format!("http://{closed}/.well-known/jwks.json")).expect("url");
    authenticator.jwt = Some(JwtVerifier::new(
        jwt,
        Trustgate::http(),
        Arc::new(tg.op.clock.clone()),
    ));
    let routes = RouteTable::new([Rule::new(
        Method::GET,
        "/courses/{id}",
        "viewer",
        "course:{id}",
    )])
    .expect("routes");
    let layer = Pep::builder("learning", routes, authenticator, tg.http_pdp())
        .sink(records.clone())
        .clock(Arc::new(tg.op.clock.clone()))
        .build();
    let app = Router::new()
        .route("/courses/{id}", get(|p: Principal| async move { p.id }))
        .layer(layer);
    let a = call(&app, "/courses/1", &[("authorization", &bearer(&valid))]).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.body["code"], "authentication_unavailable");
    assert!(matches!(
        last(&records, &mut n).reason,
        Reason::AuthenticationUnavailable { .. }
    ));
}

async fn api_keys_are_introspected_and_revocation_holds_within_the_ttl(db: TestDatabase) {
    let tg = trustgate(&db).await;
    let records = Arc::new(Records::default());
    let app = tg.app(tg.http_pdp(), records.clone());
    let mut n = 0;
    let account = |name: &'static str| {
        let op = &tg.op;
        async move {
            let (status, body) = admin(
                op,
                "POST",
                "/admin/v1/service-accounts",
                json!({ "name": name }),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            let id = body["id"].as_str().expect("id").to_owned();
            let key = op
                .state
                .api_keys
                .issue(
                    &KeyOwner::Service(id.clone()),
                    &KeySpec {
                        description: "pep test".into(),
                        scopes: vec!["progress:read".into()],
                        ..KeySpec::default()
                    },
                )
                .await
                .expect("issue");
            (id, key.key.expose().to_owned(), key.record.id)
        }
    };
    let (ci, ci_key, ci_key_id) = account("ci").await;
    let (nightly, nightly_key, _) = account("nightly").await;
    tg.write(&[
        (&format!("service:{ci}"), "viewer", "course:1"),
        (&format!("service:{nightly}"), "viewer", "course:1"),
    ])
    .await;

    // Only a registered resource server learns about API keys at introspection.
    let plain = register(&tg.op, "Plain", |r| {
        r.redirect_uris.clear();
        r.grant_types = vec![GrantType::ClientCredentials];
    })
    .await;
    for (caller, active) in [(&plain, false), (&tg.rs, true)] {
        let answer: Value = reqwest::Client::new()
            .post(tg.base.join("oauth2/introspect").expect("url"))
            .basic_auth(&caller.id, Some(&caller.secret))
            .form(&[("token", ci_key.as_str())])
            .send()
            .await
            .expect("introspect")
            .json()
            .await
            .expect("json");
        assert_eq!(answer["active"], active, "{answer}");
        if active {
            assert_eq!(answer["token_type"], "api_key");
            assert_eq!(answer["sub"], format!("service:{ci}"));
            assert_eq!(answer["scope"], "progress:read");
            assert_eq!(answer["key_id"], ci_key_id.as_str());
        }
    }

    // As a bearer token and as X-API-Key.
    for header in ["authorization", "x-api-key"] {
        let value = if header == "authorization" {
            bearer(&ci_key)
        } else {
            ci_key.clone()
        };
        let a = call(&app, "/courses/1/progress", &[(header, &value)]).await;
        assert_eq!(a.status, StatusCode::OK, "{header}: {}", a.body);
        assert_eq!(a.body["kind"], "api_key");
        assert_eq!(a.body["method"], "introspection");
        let r = last(&records, &mut n);
        assert_eq!(r.reason, Reason::Allowed);
        assert_eq!(
            r.principal.as_ref().map(Principal::subject),
            Some(format!("service:{ci}"))
        );
    }
    // A look-alike key is refused.
    let forged = trustgate_testkit::forge::last_char_changed(&ci_key);
    let a = call(&app, "/courses/1", &[("x-api-key", &forged)]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        last(&records, &mut n).reason,
        Reason::InvalidToken {
            why: "inactive".into()
        }
    );

    // Revoked: honoured from the cache at most the TTL (5 s), then refused.
    let (status, body) = admin(
        &tg.op,
        "DELETE",
        &format!("/admin/v1/api-keys/{ci_key_id}"),
        Value::Null,
    )
    .await;
    assert!(status.is_success(), "{status} {body}");
    let a = call(&app, "/courses/1", &[("x-api-key", &ci_key)]).await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "within the TTL the cached answer holds"
    );
    last(&records, &mut n);
    tg.op.clock.advance(time::Duration::seconds(5));
    let a = call(&app, "/courses/1", &[("x-api-key", &ci_key)]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert!(a.challenge.expect("challenge").contains("invalid_token"));
    assert_eq!(
        last(&records, &mut n).reason,
        Reason::InvalidToken {
            why: "inactive".into()
        }
    );

    // The key of a disabled owner.
    let (status, body) = admin(
        &tg.op,
        "POST",
        &format!("/admin/v1/service-accounts/{nightly}/disable"),
        json!({}),
    )
    .await;
    assert!(status.is_success(), "{status} {body}");
    let a = call(
        &app,
        "/courses/1",
        &[("authorization", &bearer(&nightly_key))],
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        last(&records, &mut n).reason,
        Reason::InvalidToken {
            why: "inactive".into()
        }
    );
}

async fn the_in_process_adapters_decide_resolve_sessions_and_audit(db: TestDatabase) {
    let tg = trustgate(&db).await;
    let alice = tg
        .op
        .state
        .store
        .find_user_by_login("alice")
        .await
        .expect("find")
        .expect("alice");
    tg.write(&[(&format!("user:{}", alice.id), "viewer", "course:1")])
        .await;
    let pdp: Arc<dyn DecisionPoint> = Arc::new(InProcessDecisionPoint::new(
        tg.op.state.pdp.clone(),
        &tg.store_id,
        None,
        "service:learning",
    ));
    let sink: Arc<dyn DecisionSink> = Arc::new(AuditSink::new(tg.op.state.auditor.clone()));
    let app = tg.app(pdp, sink);

    // A session cookie from a real login.
    let mut browser = Browser::new();
    let login = browser.login(&tg.op, "alice", PASSWORD).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.body);
    let session = browser.session().expect("session cookie");
    let cookie = format!("__Host-trustgate_session={session}");
    let a = call(&app, "/courses/1", &[("cookie", &cookie)]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["method"], "session");
    assert_eq!(a.body["id"], alice.id.as_str());
    let a = call(&app, "/courses/2", &[("cookie", &cookie)]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // An unknown session is invalid, not anonymous.
    let a = call(
        &app,
        "/courses/1",
        &[("cookie", "__Host-trustgate_session=tg_sess_unknown")],
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.challenge.expect("challenge").contains("invalid_token"));

    // Each outcome is in the audit trail with its reason.
    assert!(tg.op.state.auditor.flush(Duration::from_secs(5)).await);
    let (status, trail) = admin(
        &tg.op,
        "GET",
        "/admin/v1/audit?kind=authorization_decision",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{trail}");
    let reasons: Vec<String> = trail["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["detail"]["source"] == "pep")
        .map(|e| e["detail"]["reason"].as_str().unwrap_or("").to_owned())
        .collect();
    for reason in ["allowed", "pdp_deny", "invalid_token"] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{reason} in {reasons:?}"
        );
    }
}

/// Calls `path` as `token` until the status is `want` (the revision feed delivers a change
/// within milliseconds; the deadline only stops a broken build from hanging).
async fn until_status(app: &Router, path: &str, token: &str, want: StatusCode) -> Answer {
    until_status_with(app, path, &[("authorization", &bearer(token))], want).await
}

async fn decisions_are_cached_until_the_store_changes(db: TestDatabase) {
    let tg = trustgate(&db).await;
    tg.write(&[("user:bob", "viewer", "course:9")]).await;
    let point = tg.http_decision_point();
    let mut feed = point
        .follow_revisions(Duration::from_secs(1))
        .expect("feed");
    assert!(feed.wait_live().await, "the feed connects");
    let first = feed.current().expect("live");
    assert!(first.revision.latest_model_id.is_some(), "{first:?}");
    let cache = Arc::new(DecisionCache::new(
        Arc::new(point),
        feed.clone(),
        DecisionCacheConfig {
            // Only a change of the store may end an entry in this test.
            ttl: Duration::from_secs(3600),
            max_entries: 1000,
        },
    ));
    let records = Arc::new(Records::default());
    let app = tg.app(cache.clone(), records.clone());
    let alice = tg.token("alice", |_| {});
    let asked = || tg.check_hits.load(Ordering::SeqCst);

    // A denial is cached like an allow: the second request costs no check.
    let a = call(&app, "/courses/1", &[("authorization", &bearer(&alice))]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let after_first = asked();
    let a = call(&app, "/courses/1", &[("authorization", &bearer(&alice))]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(asked(), after_first, "answered from the cache");
    assert_eq!(cache.len(), 1);

    // A tuple written: the cached denial dies with the revision.
    tg.write(&[("user:alice", "viewer", "course:1")]).await;
    let a = until_status(&app, "/courses/1", &alice, StatusCode::OK).await;
    assert_eq!(a.status, StatusCode::OK, "the write reached the cache");
    assert_ne!(feed.current(), Some(first.clone()), "a new revision");
    let allowed_at = asked();
    let a = call(&app, "/courses/1", &[("authorization", &bearer(&alice))]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(asked(), allowed_at, "the allow is cached");

    // Deleted again: the cached allow dies too.
    tg.delete(&[("user:alice", "viewer", "course:1")]).await;
    let a = until_status(&app, "/courses/1", &alice, StatusCode::FORBIDDEN).await;
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "the delete reached the cache"
    );

    // A request carrying a consistency token is asked with it, never served from the cache.
    let (status, written) = admin(
        &tg.op,
        "POST",
        &format!("/stores/{}/write", tg.store_id),
        json!({ "writes": { "tuple_keys": [
            { "user": "user:alice", "relation": "viewer", "object": "course:2" }
        ] } }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{written}");
    let token = written["consistency_token"].as_str().expect("token");
    let before = asked();
    let a = call(
        &app,
        "/courses/2",
        &[
            ("authorization", &bearer(&alice)),
            ("x-consistency-token", token),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(asked(), before + 1, "asked");
    let a = call(
        &app,
        "/courses/2",
        &[
            ("authorization", &bearer(&alice)),
            ("x-consistency-token", token),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(asked(), before + 2, "asked again: never from the cache");

    // A new model is a new revision: decisions under the old model are dropped.
    let a = until_status(&app, "/courses/9", &tg.token("bob", |_| {}), StatusCode::OK).await;
    assert_eq!(a.status, StatusCode::OK);
    let narrower = trustgate_authz::dsl::parse(
        "model\n  schema 1.1\ntype user\ntype service\ntype course\n  relations\n    define owner: [user]\n    define viewer: owner\ntype platform\n  relations\n    define admin: [user]\n",
    )
    .expect("model");
    let (status, body) = admin(
        &tg.op,
        "POST",
        &format!("/stores/{}/authorization-models", tg.store_id),
        serde_json::to_value(&narrower).expect("json"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let a = until_status(
        &app,
        "/courses/9",
        &tg.token("bob", |_| {}),
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "the new model reached the cache"
    );
    assert_eq!(
        feed.current()
            .and_then(|l| l.revision.latest_model_id.clone()),
        body["authorization_model_id"].as_str().map(str::to_owned)
    );
}

async fn the_watch_stream_needs_a_reader_and_a_store(db: TestDatabase) {
    let tg = trustgate(&db).await;
    let http = Trustgate::http();
    let url = tg
        .base
        .join(&format!("stores/{}/watch", tg.store_id))
        .expect("url");
    let anonymous = http.get(url.clone()).send().await.expect("send");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let unknown = http
        .get(
            tg.base
                .join("stores/01J00000000000000000000000/watch")
                .expect("url"),
        )
        .bearer_auth(&tg.op.admin_token)
        .send()
        .await
        .expect("send");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    // The stream opens with the current revision as one `revision` event.
    let mut open = http
        .get(url)
        .bearer_auth(&tg.op.admin_token)
        .send()
        .await
        .expect("send");
    assert_eq!(open.status(), StatusCode::OK);
    assert_eq!(
        open.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = open.chunk().await.expect("chunk").expect("more");
        text.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
    }
    assert!(text.starts_with("event: revision\ndata: {"), "{text}");
    assert!(text.contains("\"consistency_token\":\""), "{text}");
}

async fn a_verified_token_is_remembered_but_expires_on_time(db: TestDatabase) {
    let tg = trustgate(&db).await;
    tg.write(&[("user:alice", "viewer", "course:1")]).await;
    let records = Arc::new(Records::default());
    let app = tg.app(tg.http_pdp(), records.clone());
    let mut n = 0;
    let token = tg.token("alice", |c| c.exp = tg.now() + 60);
    for _ in 0..3 {
        let a = call(&app, "/courses/1", &[("authorization", &bearer(&token))]).await;
        assert_eq!(a.status, StatusCode::OK);
        last(&records, &mut n);
    }
    // A byte changed in the signature is another token: verified, and refused.
    let mut tampered = token.clone().into_bytes();
    let at = tampered.len() - 3;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    let a = call(&app, "/courses/1", &[("authorization", &bearer(&tampered))]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    last(&records, &mut n);
    // The remembered token expires at its `exp`, not when the memory fades.
    tg.op.clock.advance(time::Duration::seconds(61));
    let a = call(&app, "/courses/1", &[("authorization", &bearer(&token))]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        last(&records, &mut n).reason,
        Reason::InvalidToken {
            why: "token_expired".into()
        }
    );
}

/// An app whose API keys and JWTs are introspected with a 30 s cache that follows `feed`.
fn app_following(tg: &Trustgate, feed: &RevisionFeed, records: Arc<Records>) -> Router {
    let introspector = |ttl: Duration| {
        let introspector = Introspector::new(
            IntrospectionConfig {
                url: tg.base.join("oauth2/introspect").expect("url"),
                client_id: tg.rs.id.clone(),
                client_secret: Secret::new(tg.rs.secret.clone()),
                ttl,
            },
            Trustgate::http(),
            Arc::new(tg.op.clock.clone()),
        );
        introspector.follow_revocations(feed);
        introspector
    };
    let mut authenticator = tg.authenticator(Duration::from_secs(30));
    authenticator.introspection = Some(introspector(Duration::from_secs(30)));
    authenticator.jwt_liveness = Some(introspector(Duration::from_secs(30)));
    let routes = RouteTable::new([Rule::new(
        Method::GET,
        "/courses/{id}",
        "viewer",
        "course:{id}",
    )])
    .expect("routes");
    let layer = Pep::builder("learning", routes, authenticator, tg.http_pdp())
        .sink(records)
        .clock(Arc::new(tg.op.clock.clone()))
        .build();
    Router::new()
        .route("/courses/{id}", get(|p: Principal| async move { p.id }))
        .layer(layer)
}

/// Calls `path` with `headers` until the status is `want` or 10 s have passed.
async fn until_status_with(
    app: &Router,
    path: &str,
    headers: &[(&str, &str)],
    want: StatusCode,
) -> Answer {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let a = call(app, path, headers).await;
        if a.status == want || tokio::time::Instant::now() > deadline {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn revocations_empty_introspection_caches_through_the_feed(db: TestDatabase) {
    let tg = trustgate(&db).await;
    let (status, body) = admin(
        &tg.op,
        "POST",
        "/admin/v1/service-accounts",
        json!({ "name": "ci" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let ci = body["id"].as_str().expect("id").to_owned();
    let key = tg
        .op
        .state
        .api_keys
        .issue(&KeyOwner::Service(ci.clone()), &KeySpec::default())
        .await
        .expect("issue");
    tg.write(&[
        (&format!("service:{ci}"), "viewer", "course:1"),
        ("user:alice", "viewer", "course:1"),
    ])
    .await;
    let mut feed = tg
        .http_decision_point()
        .follow_revisions(Duration::from_secs(1))
        .expect("feed");
    assert!(feed.wait_live().await);
    let mut epochs = feed.credential_epochs();
    epochs
        .wait_for(Option::is_some)
        .await
        .expect("the feed reports the credential epoch");
    let records = Arc::new(Records::default());
    let app = app_following(&tg, &feed, records.clone());

    // The key is introspected once and cached for 30 s (the test clock does not move).
    let key_text = key.key.expose().to_owned();
    let with_key = [("x-api-key", key_text.as_str())];
    assert_eq!(
        call(&app, "/courses/1", &with_key).await.status,
        StatusCode::OK
    );
    let (status, body) = admin(
        &tg.op,
        "DELETE",
        &format!("/admin/v1/api-keys/{}", key.record.id),
        Value::Null,
    )
    .await;
    assert!(status.is_success(), "{status} {body}");
    let a = until_status_with(&app, "/courses/1", &with_key, StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        a.status,
        StatusCode::UNAUTHORIZED,
        "the revocation emptied the cache long before its 30 s"
    );

    // A JWT checked for liveness: its revocation reaches the cache the same way.
    let jti = uuid::Uuid::new_v4().to_string();
    let exp = tg.now() + 300;
    let token = tg.token("alice", |c| {
        c.jti = jti.clone();
        c.exp = exp;
    });
    let auth = bearer(&token);
    let with_token = [("authorization", auth.as_str())];
    assert_eq!(
        call(&app, "/courses/1", &with_token).await.status,
        StatusCode::OK
    );
    tg.op
        .state
        .store
        .revoke_access_token(
            &jti,
            time::OffsetDateTime::from_unix_timestamp(exp).expect("exp"),
        )
        .await
        .expect("revoke");
    let a = until_status_with(&app, "/courses/1", &with_token, StatusCode::UNAUTHORIZED).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert_eq!(
        records.last().map(|r| r.reason.clone()),
        Some(Reason::InvalidToken {
            why: "token_revoked".into()
        })
    );
}

/// RFC 9449 §7 at the layer: a DPoP-bound token only with a proof by its key, for this request
/// and this token, once; never as a bearer token. An unbound token never with the DPoP scheme.
async fn dpop_bound_tokens_need_a_fresh_proof_by_their_key(db: TestDatabase) {
    let tg = trustgate(&db).await;
    tg.write(&[("user:alice", "viewer", "course:1")]).await;
    let records = Arc::new(Records::default());
    let app = tg.app(tg.http_pdp(), records.clone());
    let mut n = 0;
    let key = DpopKey::generate();
    let bound = tg.token("alice", |c| {
        c.cnf = Some(Confirmation::dpop(key.thumbprint()))
    });
    let url = tg.base.join("courses/1").expect("url");
    let proof = |by: &DpopKey, htu: &str, token: &str| {
        by.proof("GET", htu, tg.now(), json!({ "ath": dpop_ath(token) }))
    };
    let dpop = |token: &str| format!("DPoP {token}");
    let refused = |a: &Answer, records: &Records, n: &mut usize, reason: Reason| {
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{:?}", a.body);
        assert_eq!(last(records, n).reason, reason);
    };

    let a = call(&app, "/courses/1", &[("authorization", &bearer(&bound))]).await;
    refused(
        &a,
        &records,
        &mut n,
        Reason::InvalidToken {
            why: "dpop_bound_token_as_bearer".into(),
        },
    );

    let good = proof(&key, url.as_str(), &bound);
    let scheme = dpop(&bound);
    let refs = [("authorization", scheme.as_str()), ("dpop", good.as_str())];
    let a = call(&app, "/courses/1", &refs).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.body["cnf"]["jkt"], key.thumbprint().as_str());
    last(&records, &mut n);

    // The same proof again: replayed.
    let a = call(&app, "/courses/1", &refs).await;
    refused(
        &a,
        &records,
        &mut n,
        Reason::InvalidDpopProof {
            why: "dpop_proof_replayed".into(),
        },
    );
    let challenge = a.challenge.expect("challenge");
    assert!(
        challenge.starts_with("DPoP realm=\"learning\", algs=")
            && challenge.contains("error=\"invalid_dpop_proof\""),
        "{challenge}"
    );

    let other = DpopKey::generate();
    let cases = [
        (
            proof(&other, url.as_str(), &bound),
            Reason::InvalidToken {
                why: "dpop_key_mismatch".into(),
            },
        ),
        (
            proof(
                &key,
                tg.base.join("courses/2").expect("url").as_str(),
                &bound,
            ),
            Reason::InvalidDpopProof {
                why: "dpop_proof_htu_wrong".into(),
            },
        ),
        (
            proof(&key, url.as_str(), "another token"),
            Reason::InvalidDpopProof {
                why: "dpop_proof_ath_wrong".into(),
            },
        ),
        (
            key.proof(
                "GET",
                url.as_str(),
                tg.now() - 120,
                json!({ "ath": dpop_ath(&bound) }),
            ),
            Reason::InvalidDpopProof {
                why: "dpop_proof_stale".into(),
            },
        ),
    ];
    for (bad, reason) in cases {
        let a = call(
            &app,
            "/courses/1",
            &[("authorization", &dpop(&bound)), ("dpop", &bad)],
        )
        .await;
        refused(&a, &records, &mut n, reason);
    }
    let a = call(&app, "/courses/1", &[("authorization", &dpop(&bound))]).await;
    refused(
        &a,
        &records,
        &mut n,
        Reason::InvalidDpopProof {
            why: "dpop_proof_missing".into(),
        },
    );

    // An unbound token with the DPoP scheme, even with a good proof: refused.
    let plain = tg.token("alice", |_| {});
    let fresh = proof(&key, url.as_str(), &plain);
    let a = call(
        &app,
        "/courses/1",
        &[("authorization", &dpop(&plain)), ("dpop", &fresh)],
    )
    .await;
    refused(
        &a,
        &records,
        &mut n,
        Reason::InvalidToken {
            why: "token_not_dpop_bound".into(),
        },
    );
}

/// RFC 8705 §3 at the layer: a certificate-bound token only over a connection with that
/// certificate, never without one or with another.
async fn certificate_bound_tokens_need_their_certificate(db: TestDatabase) {
    let tg = trustgate(&db).await;
    tg.write(&[("user:alice", "viewer", "course:1")]).await;
    let records = Arc::new(Records::default());
    let app = tg.app(tg.http_pdp(), records.clone());
    let mut n = 0;
    let thumbprint = Confirmation::certificate_thumbprint(b"the client certificate");
    let bound = tg.token("alice", |c| {
        c.cnf = Some(Confirmation {
            jkt: None,
            x5t_s256: Some(thumbprint.clone()),
        })
    });
    let auth = bearer(&bound);
    let headers = [("authorization", auth.as_str())];
    let a = call_over(&app, "/courses/1", &headers, Some(&thumbprint)).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    last(&records, &mut n);
    let other = Confirmation::certificate_thumbprint(b"another certificate");
    for certificate in [None, Some(other.as_str())] {
        let a = call_over(&app, "/courses/1", &headers, certificate).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{:?}", a.body);
        assert_eq!(
            last(&records, &mut n).reason,
            Reason::InvalidToken {
                why: "certificate_binding_mismatch".into(),
            }
        );
    }
    // An unbound token does not mind the certificate.
    let plain = bearer(&tg.token("alice", |_| {}));
    let a = call_over(
        &app,
        "/courses/1",
        &[("authorization", &plain)],
        Some(&other),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
}

test_on_both_backends!(
    certificate_bound_tokens_need_their_certificate,
    dpop_bound_tokens_need_a_fresh_proof_by_their_key,
    the_layer_authenticates_authorizes_and_answers,
    decisions_are_cached_until_the_store_changes,
    the_watch_stream_needs_a_reader_and_a_store,
    a_verified_token_is_remembered_but_expires_on_time,
    revocations_empty_introspection_caches_through_the_feed,
    an_unknown_kid_refetches_the_jwks_at_most_once_per_interval,
    a_pdp_that_cannot_answer_is_503_never_200,
    api_keys_are_introspected_and_revocation_holds_within_the_ttl,
    the_in_process_adapters_decide_resolve_sessions_and_audit,
);
