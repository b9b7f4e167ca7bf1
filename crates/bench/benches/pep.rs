//! The pep layer's cost in process: the same axum router and handler called with `oneshot`,
//! bare (the baseline, in the same run) and behind the pep layer — route match, bearer JWT
//! (ES256, trustgate's key manager; verified once, then remembered by its hash with `exp`/`nbf`
//! checked on every request), scopes, and a check by the in-process PDP
//! (`trustgate_server::pep::InProcessDecisionPoint` over `trustgate_pdp::Pdp` on SQLite, whose
//! decisions go to the batched audit writer), with every outcome sent to the decision sink.
//! Before measuring, the bench proves the layer decides: the allowed caller gets 200, a caller
//! without the tuple 403, no token 401.
//!
//! Besides criterion's figures it prints, for the README, the added time per request and the
//! throughput ratio measured in interleaved loops of the same run on one worker thread.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, Request, StatusCode};
use serde_json::json;
use tower::ServiceExt;
use trustgate_audit::{Auditor, AuditorConfig};
use trustgate_core::{Clock, SealingKey, SystemClock};
use trustgate_pdp::{Limits, Pdp, TupleKey, TupleWrite};
use trustgate_pep::{Authenticator, JwtConfig, JwtVerifier, Pep, RouteTable, Rule};
use trustgate_server::pep::InProcessDecisionPoint;
use trustgate_store::testing::TestDatabase;
use trustgate_tokens::{Algorithm, KeyManager, KeyPolicy};

const ISSUER: &str = "https://id.bench.example";
const AUDIENCE: &str = "https://api.bench.example";
const MODEL: &str =
    "model\n  schema 1.1\ntype user\ntype course\n  relations\n    define viewer: [user]\n";

struct Setup {
    bare: Router,
    protected: Router,
    allowed: String,
    denied: String,
    _db: TestDatabase,
}

async fn setup() -> Setup {
    let db = TestDatabase::sqlite().await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let keys = KeyManager::load(
        db.store.clone(),
        SealingKey::generate(),
        KeyPolicy::default(),
        clock.clone(),
    )
    .await
    .expect("keys");
    keys.ensure_keys().await.expect("keys");
    // The JWKS on a loopback socket, as trustgate serves it (fetched once by the verifier).
    let jwks = keys.jwks();
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let app = Router::new().route(
            "/.well-known/jwks.json",
            get(move || {
                let jwks = jwks.clone();
                async move { axum::Json(jwks) }
            }),
        );
        let _ = axum::serve(listener, app).await;
    });

    let auditor = Auditor::new(db.store.clone(), clock.clone(), AuditorConfig::default());
    let pdp = Pdp::new(db.store.clone(), clock.clone(), Limits::default(), auditor);
    let store = pdp.create_store("bench").await.expect("store").id;
    let model = trustgate_authz::dsl::parse(MODEL).expect("model");
    pdp.write_model(&store, model).await.expect("model");
    pdp.write(
        &store,
        &TupleWrite {
            writes: &[TupleKey::new("course:1", "viewer", "user:anne")],
            ..TupleWrite::default()
        },
    )
    .await
    .expect("tuple");

    let mut jwt = JwtConfig::for_trustgate(ISSUER, AUDIENCE).expect("config");
    jwt.jwks_url = url::Url::parse(&format!("http://{addr}/.well-known/jwks.json")).expect("url");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let authenticator = Authenticator {
        jwt: Some(JwtVerifier::new(jwt, http, clock.clone())),
        ..Authenticator::default()
    };
    let routes =
        RouteTable::new([
            Rule::new(Method::GET, "/courses/{id}", "viewer", "course:{id}")
                .scopes(["courses:read"]),
        ])
        .expect("routes");
    let decisions = Arc::new(InProcessDecisionPoint::new(
        pdp,
        &store,
        None,
        "service:bench",
    ));
    let layer = Pep::builder("bench", routes, authenticator, decisions)
        .clock(clock.clone())
        .build();
    let bare = Router::new().route("/courses/{id}", get(|| async { "course" }));
    let protected = bare.clone().layer(layer);

    let now = clock.now().unix_timestamp();
    let token = |sub: &str| {
        keys.sign(
            Algorithm::ES256,
            "at+jwt",
            &json!({
                "iss": ISSUER, "sub": sub, "aud": AUDIENCE, "exp": now + 3600, "iat": now,
                "jti": format!("jti-{sub}"), "client_id": "tgc_bench", "scope": "courses:read",
                "auth_time": now - 60, "amr": ["pwd"],
            }),
        )
        .expect("sign")
    };
    Setup {
        bare,
        protected,
        allowed: format!("Bearer {}", token("anne")),
        denied: format!("Bearer {}", token("bob")),
        _db: db,
    }
}

async fn status(app: &Router, authorization: Option<&str>) -> StatusCode {
    let mut request = Request::builder().uri("/courses/1");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    app.clone()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("infallible")
        .status()
}

/// `n` requests one after another; the elapsed time.
async fn run(app: &Router, authorization: &str, n: u32) -> Duration {
    let started = Instant::now();
    for _ in 0..n {
        black_box(status(app, Some(black_box(authorization))).await);
    }
    started.elapsed()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let s = runtime.block_on(setup());
    runtime.block_on(async {
        assert_eq!(status(&s.protected, Some(&s.allowed)).await, StatusCode::OK);
        assert_eq!(
            status(&s.protected, Some(&s.denied)).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(status(&s.protected, None).await, StatusCode::UNAUTHORIZED);
        assert_eq!(status(&s.bare, Some(&s.allowed)).await, StatusCode::OK);
    });
    c.bench_function("baseline: the bare router", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(run(
                &s.bare,
                &s.allowed,
                u32::try_from(iters).unwrap_or(u32::MAX),
            ))
        })
    });
    c.bench_function("behind the pep layer (JWT, in-process PDP)", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(run(
                &s.protected,
                &s.allowed,
                u32::try_from(iters).unwrap_or(u32::MAX),
            ))
        })
    });
    // Interleaved loops of the same run, for the README.
    let (bare, protected) = runtime.block_on(async {
        let n = 50_000;
        let (mut bare, mut protected) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..4 {
            bare += run(&s.bare, &s.allowed, n).await;
            protected += run(&s.protected, &s.allowed, n).await;
        }
        let per = |d: Duration| d.as_secs_f64() / f64::from(4 * n);
        (per(bare), per(protected))
    });
    println!(
        "pep layer in process: bare router {:.2} us/request, behind the layer {:.2} us/request: \
         +{:.2} us per request, {:.0}% of the bare router's throughput",
        bare * 1e6,
        protected * 1e6,
        (protected - bare) * 1e6,
        100.0 * bare / protected
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
