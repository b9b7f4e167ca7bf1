//! The admin users API in-process (`tower::ServiceExt::oneshot`) on both backends: creation and
//! conflicts, paging, profile changes, disable ending sessions, password resets, session
//! revocation, deletion, the audit listing, and 401 without an admin token.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt as _;
use trustgate_authn::accounts::{Accounts, LoginStep, RequestContext};
use trustgate_core::{SealingKey, Secret, SystemClock};
use trustgate_server::{Config, router};
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;

const TOKEN: &str = "tg_admin_users_test_token_0123456789abcdef";
const PASSWORD: &str = "correct horse battery staple";

struct App {
    router: axum::Router,
    accounts: Accounts,
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
        accounts: state.accounts.clone(),
        router: router(state),
    }
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

fn call(method: &str, path: &str, body: Option<Value>) -> Request<Body> {
    let builder = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {TOKEN}"));
    match body {
        Some(body) => builder
            .header("content-type", "application/json")
            .body(Body::from(body.to_string())),
        None => builder.body(Body::empty()),
    }
    .expect("request")
}

async fn create(app: &App, username: &str) -> Value {
    let (status, body) = send(
        app,
        call(
            "POST",
            "/admin/v1/users",
            Some(json!({
                "username": username,
                "email": format!("{username}@example.com"),
                "name": format!("{username} Example"),
                "password": PASSWORD,
            })),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

async fn session_for(app: &App, username: &str) -> Secret {
    match app
        .accounts
        .login_password(username, Secret::new(PASSWORD), &RequestContext::default())
        .await
        .expect("login")
    {
        LoginStep::Complete(issued) => issued.token,
        LoginStep::SecondFactorRequired { .. } => panic!("no second factor expected"),
    }
}

async fn is_live(app: &App, token: &Secret) -> bool {
    app.accounts
        .authenticate_session(token.expose(), &RequestContext::default())
        .await
        .expect("authenticate")
        .is_some()
}

test_on_both_backends!(
    routes_need_an_admin_token,
    create_validates_and_refuses_duplicates,
    list_pages_and_lookups,
    disable_ends_sessions_and_enable_restores_login,
    password_reset_and_session_revocation,
    profile_update_delete_and_audit,
);

async fn routes_need_an_admin_token(db: TestDatabase) {
    let app = app(&db).await;
    for (method, path) in [
        ("POST", "/admin/v1/users"),
        ("GET", "/admin/v1/users"),
        ("GET", "/admin/v1/users/alice"),
        ("PATCH", "/admin/v1/users/alice"),
        ("DELETE", "/admin/v1/users/alice"),
        ("POST", "/admin/v1/users/alice/disable"),
        ("POST", "/admin/v1/users/alice/enable"),
        ("POST", "/admin/v1/users/alice/password"),
        ("GET", "/admin/v1/users/alice/sessions"),
        ("POST", "/admin/v1/users/alice/sessions/revoke"),
        ("GET", "/admin/v1/audit"),
    ] {
        let (status, body) = send(
            &app,
            Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(body["code"], "unauthenticated", "{method} {path}");
        let (status, _) = send(
            &app,
            Request::builder()
                .method(method)
                .uri(path)
                .header("authorization", "Bearer tg_admin_wrong")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
}

async fn create_validates_and_refuses_duplicates(db: TestDatabase) {
    let app = app(&db).await;
    let alice = create(&app, "alice").await;
    assert_eq!(alice["username"], "alice");
    assert_eq!(alice["email"], "alice@example.com");
    assert_eq!(alice["status"], "active");
    assert_eq!(alice["email_verified"], false);
    assert!(alice["id"].as_str().is_some_and(|id| id.len() == 26));
    assert!(alice.get("password").is_none() && alice.get("password_hash").is_none());
    assert!(!alice.to_string().contains("argon2"));

    for body in [
        json!({"username": "ALICE", "email": "x@example.com"}),
        json!({"username": "other", "email": "Alice@Example.com"}),
    ] {
        let (status, err) = send(&app, call("POST", "/admin/v1/users", Some(body))).await;
        assert_eq!(status, StatusCode::CONFLICT, "{err}");
        assert_eq!(err["code"], "conflict");
        assert!(err["request_id"].is_string());
    }
    for (password, code) in [
        ("short", "password_too_short"),
        ("passwordpassword", "password_common"),
        (
            "bobby-and-his-long-password",
            "password_contains_user_identity",
        ),
    ] {
        let (status, err) = send(
            &app,
            call(
                "POST",
                "/admin/v1/users",
                Some(json!({"username": "bobby", "email": "bobby@example.com", "password": password})),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{password}: {err}");
        assert_eq!(err["code"], code, "{password}");
        if password.len() > 5 {
            assert!(!err.to_string().contains(password), "password echoed");
        }
    }
    for body in [
        json!({"username": "bobby"}),
        json!({"username": "bobby", "email": "b@example.com", "role": "admin"}),
        json!({"username": 7, "email": "b@example.com"}),
        json!([]),
    ] {
        let (status, err) = send(&app, call("POST", "/admin/v1/users", Some(body.clone()))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert_eq!(err["code"], "invalid_request", "{body}");
    }
    for body in [
        json!({"username": "has space", "email": "b@example.com"}),
        json!({"username": "bobby", "email": "not-an-email"}),
        json!({"username": "bobby", "email": "b@example.com", "locale": "<script>"}),
    ] {
        let (status, err) = send(&app, call("POST", "/admin/v1/users", Some(body.clone()))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert_eq!(err["code"], "invalid_input", "{body}");
    }
    let (status, _) = send(
        &app,
        Request::post("/admin/v1/users")
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(Body::from("{not json"))
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Nothing but alice was created.
    let (_, list) = send(&app, call("GET", "/admin/v1/users", None)).await;
    assert_eq!(list["users"].as_array().map(Vec::len), Some(1));
}

async fn list_pages_and_lookups(db: TestDatabase) {
    let app = app(&db).await;
    let mut ids = Vec::new();
    for name in ["alice", "bob", "carol"] {
        ids.push(
            create(&app, name).await["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    ids.sort();
    let (status, first) = send(&app, call("GET", "/admin/v1/users?limit=2", None)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["users"].as_array().map(Vec::len), Some(2));
    let next = first["next"].as_str().expect("next").to_owned();
    let (_, rest) = send(
        &app,
        call(
            "GET",
            &format!("/admin/v1/users?limit=2&after={next}"),
            None,
        ),
    )
    .await;
    assert_eq!(rest["users"].as_array().map(Vec::len), Some(1));
    assert!(rest["next"].is_null());
    let mut seen: Vec<String> = first["users"]
        .as_array()
        .into_iter()
        .chain(rest["users"].as_array())
        .flatten()
        .map(|u| u["id"].as_str().expect("id").to_owned())
        .collect();
    seen.sort();
    assert_eq!(seen, ids);

    for bad in ["limit=0", "limit=abc", "limit=-1", "colour=blue"] {
        let (status, err) = send(&app, call("GET", &format!("/admin/v1/users?{bad}"), None)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {err}");
    }

    let (status, by_id) = send(
        &app,
        call("GET", &format!("/admin/v1/users/{}", ids[0]), None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_id["id"], ids[0].as_str());
    let (status, by_name) = send(&app, call("GET", "/admin/v1/users/BOB", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_name["username"], "bob");
    let (status, err) = send(&app, call("GET", "/admin/v1/users/nobody", None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["code"], "not_found");
    let (status, _) = send(&app, call("GET", "/admin/v1/users/%00%FF", None)).await;
    assert!(status.is_client_error(), "{status}");
}

async fn disable_ends_sessions_and_enable_restores_login(db: TestDatabase) {
    let app = app(&db).await;
    create(&app, "alice").await;
    let one = session_for(&app, "alice").await;
    let two = session_for(&app, "alice").await;
    let (status, sessions) = send(&app, call("GET", "/admin/v1/users/alice/sessions", None)).await;
    assert_eq!(status, StatusCode::OK);
    let listed = sessions["sessions"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["amr"], json!(["pwd"]));
    assert!(
        !sessions.to_string().contains(one.expose()),
        "no session secret"
    );

    let (status, user) = send(&app, call("POST", "/admin/v1/users/alice/disable", None)).await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["status"], "disabled");
    assert!(!is_live(&app, &one).await);
    assert!(!is_live(&app, &two).await);
    let (_, sessions) = send(&app, call("GET", "/admin/v1/users/alice/sessions", None)).await;
    assert_eq!(sessions["sessions"], json!([]));
    let refused = app
        .accounts
        .login_password("alice", Secret::new(PASSWORD), &RequestContext::default())
        .await
        .expect_err("disabled");
    assert_eq!(refused.code(), "invalid_credentials");

    let (status, user) = send(&app, call("POST", "/admin/v1/users/alice/enable", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user["status"], "active");
    session_for(&app, "alice").await;
    let (status, _) = send(&app, call("POST", "/admin/v1/users/nobody/disable", None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn password_reset_and_session_revocation(db: TestDatabase) {
    let app = app(&db).await;
    create(&app, "alice").await;
    let old = session_for(&app, "alice").await;
    let (status, err) = send(
        &app,
        call(
            "POST",
            "/admin/v1/users/alice/password",
            Some(json!({"password": "123456789012"})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["code"], "password_common");
    assert!(is_live(&app, &old).await, "a refused reset changes nothing");
    let (status, _) = send(
        &app,
        call(
            "POST",
            "/admin/v1/users/alice/password",
            Some(json!({"password": "violet kettle umbrella sonnet"})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(!is_live(&app, &old).await, "reset ends sessions");

    // Revoke one session by id, then all.
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(
            match app
                .accounts
                .login_password(
                    "alice",
                    Secret::new("violet kettle umbrella sonnet"),
                    &RequestContext::default(),
                )
                .await
                .expect("login")
            {
                LoginStep::Complete(issued) => issued,
                LoginStep::SecondFactorRequired { .. } => panic!("no second factor"),
            },
        );
    }
    let (status, revoked) = send(
        &app,
        call(
            "POST",
            "/admin/v1/users/alice/sessions/revoke",
            Some(json!({"session_id": tokens[0].session.id})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["revoked"], 1);
    assert!(!is_live(&app, &tokens[0].token).await);
    assert!(is_live(&app, &tokens[1].token).await);
    let (status, _) = send(
        &app,
        call(
            "POST",
            "/admin/v1/users/alice/sessions/revoke",
            Some(json!({"session_id": tokens[0].session.id})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "already revoked");
    let (status, revoked) = send(
        &app,
        call("POST", "/admin/v1/users/alice/sessions/revoke", None),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["revoked"], 2);
    assert!(!is_live(&app, &tokens[2].token).await);
}

async fn profile_update_delete_and_audit(db: TestDatabase) {
    let app = app(&db).await;
    let alice = create(&app, "alice").await;
    create(&app, "bob").await;
    let id = alice["id"].as_str().expect("id").to_owned();

    let (status, user) = send(
        &app,
        call(
            "PATCH",
            &format!("/admin/v1/users/{id}"),
            Some(json!({"name": null, "locale": "pt-BR", "attributes": {"team": "blue"}})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert!(user["name"].is_null());
    assert_eq!(user["locale"], "pt-BR");
    assert_eq!(user["attributes"]["team"], "blue");
    assert_eq!(user["email"], "alice@example.com", "absent fields are kept");
    let (status, err) = send(
        &app,
        call(
            "PATCH",
            &format!("/admin/v1/users/{id}"),
            Some(json!({"email": "bob@example.com"})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    let (status, _) = send(
        &app,
        call(
            "PATCH",
            &format!("/admin/v1/users/{id}"),
            Some(json!({"status": "disabled"})),
        ),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "status is not a profile field"
    );

    let token = session_for(&app, "alice").await;
    let (status, _) = send(&app, call("DELETE", &format!("/admin/v1/users/{id}"), None)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(!is_live(&app, &token).await);
    let (status, _) = send(&app, call("GET", &format!("/admin/v1/users/{id}"), None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = send(&app, call("DELETE", &format!("/admin/v1/users/{id}"), None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The audit trail survives the user and names the admin.
    let (status, audit) = send(
        &app,
        call(
            "GET",
            &format!("/admin/v1/audit?user_id={id}&limit=100"),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let events = audit["events"].as_array().cloned().unwrap_or_default();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    for kind in ["user_created", "user_updated", "login", "user_deleted"] {
        assert!(kinds.contains(&kind), "{kind} missing: {kinds:?}");
    }
    let created = events
        .iter()
        .find(|e| e["kind"] == "user_created")
        .expect("created");
    assert_eq!(
        created["actor"],
        crate::common::admin_subject(&*db.store).await
    );
    assert_eq!(created["outcome"], "success");
    assert!(created["request_id"].is_string());
    assert!(!audit.to_string().contains(PASSWORD));
    let (_, by_kind) = send(&app, call("GET", "/admin/v1/audit?kind=user_created", None)).await;
    let by_kind = by_kind["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(by_kind.len(), 2);
    let (_, paged) = send(&app, call("GET", "/admin/v1/audit?limit=1", None)).await;
    assert_eq!(paged["events"].as_array().map(Vec::len), Some(1));
    let before = paged["next"].as_str().expect("next page").to_owned();
    let (_, older) = send(
        &app,
        call(
            "GET",
            &format!("/admin/v1/audit?limit=100&before={before}"),
            None,
        ),
    )
    .await;
    assert!(
        older["events"]
            .as_array()
            .is_some_and(|e| !e.is_empty() && e.iter().all(|e| e["id"].as_str() < Some(&before)))
    );
}
