//! The audit API in-process on both backends: filters and both kinds of paging, the
//! verification endpoint on an untouched and on a tampered trail (raw SQL past the store), bad
//! parameters, and 401 without a token.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt as _;
use trustgate_core::{SealingKey, SystemClock};
use trustgate_server::{AppState, Config, router};
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;

test_on_both_backends!(
    the_trail_is_filtered_and_paged_both_ways,
    verification_passes_then_names_the_tampered_event,
    bad_parameters_and_missing_credentials_are_refused,
);

const TOKEN: &str = "tg_admin_audit_test_token_0123456789abcdef";

struct App {
    router: axum::Router,
    state: AppState,
}

async fn app(db: &TestDatabase) -> App {
    let state = crate::common::start_with_admin(
        db.store.clone(),
        Arc::new(SystemClock),
        Config::default(),
        SealingKey::generate(),
        TOKEN,
    )
    .await;
    App {
        router: router(state.clone()),
        state,
    }
}

async fn get(app: &App, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::builder().method("GET").uri(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    send(app, request.body(Body::empty()).expect("request")).await
}

async fn send(app: &App, request: Request<Body>) -> (StatusCode, Value) {
    let response = app
        .router
        .clone()
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    let bytes = to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Creates `n` users through the API (each a recorded `user_created` event).
async fn users(app: &App, n: usize) {
    for i in 0..n {
        let request = Request::builder()
            .method("POST")
            .uri("/admin/v1/users")
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(Body::from(
                json!({"username": format!("u{i}"), "email": format!("u{i}@example.com")})
                    .to_string(),
            ))
            .expect("request");
        let (status, body) = send(app, request).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
}

fn events(body: &Value) -> Vec<Value> {
    body["events"].as_array().cloned().unwrap_or_default()
}

/// Runs the verification to the end in calls of `budget` rows.
async fn verify(app: &App, budget: u32) -> (Vec<Value>, u64) {
    let mut problems = Vec::new();
    let mut records = 0;
    let mut cursor = String::new();
    for _ in 0..100 {
        let (status, page) = get(
            app,
            &format!("/admin/v1/audit/verify?budget={budget}&cursor={cursor}"),
            Some(TOKEN),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        problems.extend(page["problems"].as_array().cloned().unwrap_or_default());
        records += page["records_checked"].as_u64().unwrap_or(0);
        if page["done"] == true {
            return (problems, records);
        }
        cursor = page["cursor"].as_str().expect("cursor").to_owned();
    }
    panic!("verification does not end");
}

async fn the_trail_is_filtered_and_paged_both_ways(db: TestDatabase) {
    let app = app(&db).await;
    users(&app, 5).await;
    let admin = crate::common::admin_subject(&*db.store).await;
    let (status, all) = get(&app, "/admin/v1/audit?limit=100", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let all = events(&all);
    let created: Vec<&Value> = all.iter().filter(|e| e["kind"] == "user_created").collect();
    assert_eq!(created.len(), 5);
    for e in &created {
        assert_eq!(e["chain"], "recorded");
        assert!(e["seq"].as_i64().is_some_and(|s| s > 0), "{e}");
        assert_eq!(e["hash"].as_str().map(str::len), Some(64));
        assert_eq!(e["prev_hash"].as_str().map(str::len), Some(64));
    }

    let (_, by_principal) = get(
        &app,
        &format!("/admin/v1/audit?principal={}&kind=user_created", admin),
        Some(TOKEN),
    )
    .await;
    assert_eq!(events(&by_principal).len(), 5);
    let (_, nobody) = get(&app, "/admin/v1/audit?principal=user:nobody", Some(TOKEN)).await;
    assert!(events(&nobody).is_empty());
    let (_, denied) = get(&app, "/admin/v1/audit?outcome=denied", Some(TOKEN)).await;
    assert!(events(&denied).is_empty());
    let (_, future) = get(
        &app,
        "/admin/v1/audit?since=2999-01-01T00:00:00Z",
        Some(TOKEN),
    )
    .await;
    assert!(events(&future).is_empty());
    let (_, past) = get(
        &app,
        "/admin/v1/audit?until=2999-01-01T00:00:00Z&kind=user_created",
        Some(TOKEN),
    )
    .await;
    assert_eq!(events(&past).len(), 5);

    // Newest first with `before`, then the chain in order with `after_seq`.
    let (_, first) = get(
        &app,
        "/admin/v1/audit?kind=user_created&limit=2",
        Some(TOKEN),
    )
    .await;
    let before = first["next"].as_str().expect("next").to_owned();
    let (_, older) = get(
        &app,
        &format!("/admin/v1/audit?kind=user_created&limit=100&before={before}"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(events(&older).len(), 3);
    let (_, follow) = get(
        &app,
        "/admin/v1/audit?chain=recorded&after_seq=0&kind=user_created&limit=3",
        Some(TOKEN),
    )
    .await;
    let seqs: Vec<i64> = events(&follow)
        .iter()
        .filter_map(|e| e["seq"].as_i64())
        .collect();
    assert_eq!(seqs.len(), 3);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(follow["next"].as_i64(), seqs.last().copied());
    let (_, rest) = get(
        &app,
        &format!(
            "/admin/v1/audit?chain=recorded&after_seq={}&kind=user_created&limit=100",
            seqs[2]
        ),
        Some(TOKEN),
    )
    .await;
    assert_eq!(events(&rest).len(), 2);
    // At the end of the chain the cursor stays where it is.
    let end = rest["next"].as_i64().expect("next");
    let (_, nothing) = get(
        &app,
        &format!("/admin/v1/audit?chain=recorded&after_seq={end}"),
        Some(TOKEN),
    )
    .await;
    assert!(events(&nothing).is_empty());
    assert_eq!(nothing["next"].as_i64(), Some(end));
}

async fn verification_passes_then_names_the_tampered_event(db: TestDatabase) {
    let app = app(&db).await;
    users(&app, 4).await;
    app.state.chains.anchor_due().await.expect("anchor");
    let (problems, records) = verify(&app, 2).await;
    assert!(problems.is_empty(), "{problems:?}");
    assert!(records >= 4);

    db.execute_raw(
        "UPDATE audit_events SET outcome = 'failure' WHERE chain = 'recorded' AND seq = 2",
    )
    .await;
    let (problems, _) = verify(&app, 50).await;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0]["code"], "record_hash_mismatch");
    assert_eq!(problems[0]["chain"], "recorded");
    assert_eq!(problems[0]["seq"], 2);
    assert!(problems[0]["id"].is_string());
}

async fn bad_parameters_and_missing_credentials_are_refused(db: TestDatabase) {
    let app = app(&db).await;
    for path in [
        "/admin/v1/audit?limit=0",
        "/admin/v1/audit?limit=1001",
        "/admin/v1/audit?chain=other",
        "/admin/v1/audit?after_seq=1",
        "/admin/v1/audit?chain=recorded&after_seq=-1",
        "/admin/v1/audit?outcome=maybe",
        "/admin/v1/audit?since=yesterday",
        "/admin/v1/audit?unknown=1",
        "/admin/v1/audit/verify?cursor=not-a-cursor",
        "/admin/v1/audit/verify?budget=0",
        "/admin/v1/audit/verify?budget=200001",
    ] {
        let (status, body) = get(&app, path, Some(TOKEN)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(body["code"].is_string(), "{path}: {body}");
    }
    for path in ["/admin/v1/audit", "/admin/v1/audit/verify"] {
        let (status, body) = get(&app, path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(body["code"], "unauthenticated");
    }
}
