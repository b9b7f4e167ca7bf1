//! The router in-process (`tower::ServiceExt::oneshot`): request ids, the JSON error shape for
//! handler and framework errors, admin authentication, metrics labels, readiness.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt as _;
use trustgate_core::SystemClock;
use trustgate_server::{Config, router};
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;

const TOKEN: &str = "tg_admin_http_test_token_0123456789abcdef";

async fn app(db: &TestDatabase, config: Config) -> axum::Router {
    router(
        crate::common::start_with_admin(
            db.store.clone(),
            Arc::new(SystemClock),
            config,
            trustgate_core::SealingKey::generate(),
            TOKEN,
        )
        .await,
    )
}

async fn send(app: &axum::Router, request: Request<Body>) -> (StatusCode, http::HeaderMap, Value) {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, json)
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("request")
}

test_on_both_backends!(
    request_ids_are_echoed_generated_or_replaced,
    errors_have_one_json_shape,
    admin_api_requires_a_valid_bearer_token,
    metrics_count_by_route_template,
    readiness_reports_the_backend,
);

async fn request_ids_are_echoed_generated_or_replaced(db: TestDatabase) {
    let app = app(&db, Config::default()).await;
    let (_, headers, _) = send(
        &app,
        Request::get("/healthz")
            .header("x-request-id", "abc-123")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(headers["x-request-id"], "abc-123");

    let (_, headers, _) = send(&app, get("/healthz")).await;
    let generated = headers["x-request-id"].to_str().expect("ascii");
    assert_eq!(generated.len(), 36, "a UUID is generated: {generated}");

    let oversized = "x".repeat(200);
    let (_, headers, _) = send(
        &app,
        Request::get("/healthz")
            .header("x-request-id", oversized.as_str())
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_ne!(
        headers["x-request-id"],
        oversized.as_str(),
        "unsafe ids are replaced"
    );
}

async fn errors_have_one_json_shape(db: TestDatabase) {
    let mut config = Config::default();
    config.http.body_limit_bytes = 64;
    let app = app(&db, config).await;

    let (status, headers, body) = send(&app, get("/no/such/route")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "not_found");
    assert_eq!(
        body["request_id"],
        headers["x-request-id"].to_str().expect("id")
    );
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));

    let (status, _, body) = send(
        &app,
        Request::post("/healthz").body(Body::empty()).expect("req"),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["code"], "method_not_allowed");

    let (status, _, body) = send(
        &app,
        Request::post("/admin/v1/whoami")
            .header("content-length", "1000")
            .body(Body::from(vec![b'x'; 1000]))
            .expect("req"),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["code"], "payload_too_large");
}

async fn admin_api_requires_a_valid_bearer_token(db: TestDatabase) {
    let app = app(&db, Config::default()).await;
    for auth in [
        None,
        Some("Bearer tg_admin_wrong"),
        Some("Basic YWRtaW46YWRtaW4="),
        Some("Bearer "),
    ] {
        let mut request = Request::get("/admin/v1/whoami");
        if let Some(value) = auth {
            request = request.header("authorization", value);
        }
        let (status, headers, body) = send(&app, request.body(Body::empty()).expect("req")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert!(
            headers["www-authenticate"]
                .to_str()
                .expect("ascii")
                .starts_with("Bearer")
        );
        assert_eq!(body["code"], "unauthenticated");
    }
    let (status, _, body) = send(
        &app,
        Request::get("/admin/v1/whoami")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["subject"],
        crate::common::admin_subject(&*db.store).await
    );
}

async fn metrics_count_by_route_template(db: TestDatabase) {
    let app = app(&db, Config::default()).await;
    send(&app, get("/healthz")).await;
    send(&app, get("/definitely/unknown/42")).await;
    let response = app.clone().oneshot(get("/metrics")).await.expect("metrics");
    assert_eq!(response.status(), StatusCode::OK);
    let text = String::from_utf8(
        to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body")
            .to_vec(),
    )
    .expect("utf8");
    assert!(text.contains("http_requests_total"), "{text}");
    assert!(text.contains("route=\"/healthz\""), "{text}");
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "histogram: {text}"
    );
    assert!(
        !text.contains("/definitely/unknown/42"),
        "raw paths never become labels"
    );
    assert!(text.contains("route=\"unmatched\""), "{text}");
}

async fn readiness_reports_the_backend(db: TestDatabase) {
    let app = app(&db, Config::default()).await;
    let (status, _, body) = send(&app, get("/readyz")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["database"], db.store.backend().to_string());
    db.store.close().await;
    let (status, _, body) = send(&app, get("/readyz")).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a closed pool is not ready"
    );
    assert_eq!(body["reason"], "database_unavailable");
}
