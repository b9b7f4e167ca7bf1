//! The admin clients API in-process (`tower::ServiceExt::oneshot`) on both backends: 401 without
//! an admin token, 400s for bodies that do not parse and for registrations that break a rule
//! (with the field's code, nothing written), 404s for unknown ids, the whole life of a client
//! (create, get, list, update, rotate, delete), and the secret never showing up again after it
//! was handed out: not in GET, not in the list, not in the audit trail.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt as _;
use trustgate_core::{SealingKey, Secret, SystemClock};
use trustgate_oauth::clients::{ClientRegistry, PresentedCredentials};
use trustgate_server::{Config, router};
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;

const TOKEN: &str = "tg_admin_clients_test_token_0123456789abcdef";

struct App {
    router: axum::Router,
    clients: ClientRegistry,
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
        clients: state.clients.clone(),
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

fn web_app(name: &str) -> Value {
    json!({
        "name": name,
        "redirect_uris": ["https://app.example.com/cb"],
        "post_logout_redirect_uris": ["https://app.example.com/bye"],
    })
}

async fn create(app: &App, body: Value) -> Value {
    let (status, created) = send(app, call("POST", "/admin/v1/clients", Some(body))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
}

async fn list_all(app: &App) -> Vec<Value> {
    let (status, list) = send(app, call("GET", "/admin/v1/clients?limit=1000", None)).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["clients"].as_array().cloned().unwrap_or_default()
}

async fn authenticates(app: &App, client_id: &str, secret: &str) -> bool {
    app.clients
        .authenticate(
            &PresentedCredentials::Basic {
                client_id: client_id.into(),
                secret: Secret::new(secret),
            },
            &["https://id.example.com"],
        )
        .await
        .is_ok()
}

test_on_both_backends!(
    routes_need_an_admin_token,
    bad_bodies_and_broken_rules_are_400_and_write_nothing,
    unknown_ids_are_404,
    a_client_from_creation_to_deletion,
    a_client_is_enabled_for_token_exchange,
    list_pages_by_id,
);

async fn routes_need_an_admin_token(db: TestDatabase) {
    let app = app(&db).await;
    for (method, path) in [
        ("POST", "/admin/v1/clients"),
        ("GET", "/admin/v1/clients"),
        ("GET", "/admin/v1/clients/tgc_x"),
        ("PUT", "/admin/v1/clients/tgc_x"),
        ("DELETE", "/admin/v1/clients/tgc_x"),
        ("POST", "/admin/v1/clients/tgc_x/secret"),
    ] {
        for auth in [
            None,
            Some("Bearer tg_admin_wrong"),
            Some("Basic dGdjX3g6eA=="),
        ] {
            let mut builder = Request::builder().method(method).uri(path);
            if let Some(auth) = auth {
                builder = builder.header("authorization", auth);
            }
            let (status, body) = send(&app, builder.body(Body::empty()).expect("request")).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} {auth:?}");
            assert_eq!(body["code"], "unauthenticated", "{method} {path}");
        }
    }
}

async fn bad_bodies_and_broken_rules_are_400_and_write_nothing(db: TestDatabase) {
    let app = app(&db).await;
    for body in [
        json!({}),
        json!([]),
        json!({"name": "A", "client_secret": "chosen"}),
        json!({"name": "A", "grant_types": ["implicit"]}),
        json!({"name": "A", "grant_types": ["password"]}),
        json!({"name": "A", "auth_method": "client_secret_jwt"}),
        json!({"name": "A", "application_type": "browser"}),
        json!({"name": 7}),
        json!({"name": "A", "access_token_ttl_secs": -5}),
        json!({"name": "A", "token_exchange": {"audiences": ["a"], "subjects": ["b"]}}),
        json!({"name": "A", "token_exchange": ["a"]}),
    ] {
        let (status, err) = send(&app, call("POST", "/admin/v1/clients", Some(body.clone()))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert_eq!(err["code"], "invalid_request", "{body}");
    }
    for (body, code) in [
        (json!({"name": ""}), "invalid_client_name"),
        (json!({"name": "No redirect"}), "invalid_grant_types"),
        (
            json!({"name": "A", "redirect_uris": ["http://app.example.com/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"name": "A", "redirect_uris": ["https://app.example.com/cb#x"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"name": "A", "redirect_uris": ["https://*.example.com/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"name": "A", "redirect_uris": ["com.example.app:/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"name": "A", "redirect_uris": ["https://a.example/cb"], "post_logout_redirect_uris": ["http://a.example/"]}),
            "invalid_post_logout_redirect_uri",
        ),
        (
            json!({"name": "A", "grant_types": ["refresh_token"], "redirect_uris": ["https://a.example/cb"]}),
            "invalid_grant_types",
        ),
        (
            json!({"name": "A", "grant_types": ["client_credentials"], "auth_method": "none"}),
            "invalid_grant_types",
        ),
        (
            json!({"name": "A", "grant_types": ["client_credentials"], "auth_method": "private_key_jwt"}),
            "invalid_jwks",
        ),
        (
            json!({"name": "A", "redirect_uris": ["https://a.example/cb"], "scopes": ["has space"]}),
            "invalid_scope",
        ),
        (
            json!({"name": "A", "redirect_uris": ["https://a.example/cb"], "access_token_ttl_secs": 30}),
            "invalid_access_token_ttl",
        ),
        (
            json!({"name": "A", "redirect_uris": ["https://a.example/cb"], "refresh_token_ttl_secs": 400 * 86400}),
            "invalid_refresh_token_ttl",
        ),
        (
            json!({"name": "A", "redirect_uris": ["https://a.example/cb"], "backchannel_logout_uri": "http://a.example/bc"}),
            "invalid_backchannel_logout_uri",
        ),
        (
            json!({"name": "A", "grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange"]}),
            "invalid_token_exchange",
        ),
        (
            json!({"name": "A", "grant_types": ["client_credentials"], "token_exchange": {"audiences": ["https://orders.example"]}}),
            "invalid_token_exchange",
        ),
        (
            json!({"name": "A", "grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange"], "auth_method": "none", "token_exchange": {"audiences": ["https://orders.example"]}}),
            "invalid_grant_types",
        ),
        (
            json!({"name": "A", "grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange"], "token_exchange": {"audiences": ["has space"]}}),
            "invalid_audience",
        ),
    ] {
        let (status, err) = send(&app, call("POST", "/admin/v1/clients", Some(body.clone()))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert_eq!(err["code"], code, "{body}: {err}");
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(err["request_id"].is_string());
    }
    let (status, _) = send(
        &app,
        Request::post("/admin/v1/clients")
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(Body::from("{not json"))
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    for query in ["limit=0", "limit=1001", "limit=x", "bogus=1"] {
        let (status, err) = send(
            &app,
            call("GET", &format!("/admin/v1/clients?{query}"), None),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {err}");
    }
    assert!(list_all(&app).await.is_empty(), "nothing was written");

    // An invalid update leaves the client as it was.
    let created = create(&app, web_app("Keep")).await;
    let id = created["client_id"].as_str().expect("id");
    let (status, err) = send(
        &app,
        call(
            "PUT",
            &format!("/admin/v1/clients/{id}"),
            Some(json!({"name": "Keep", "redirect_uris": ["http://evil.example/cb"]})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["code"], "invalid_redirect_uri");
    let (_, got) = send(&app, call("GET", &format!("/admin/v1/clients/{id}"), None)).await;
    assert_eq!(got["redirect_uris"], json!(["https://app.example.com/cb"]));
}

async fn unknown_ids_are_404(db: TestDatabase) {
    let app = app(&db).await;
    for (method, body) in [
        ("GET", None),
        ("PUT", Some(web_app("Ghost"))),
        ("DELETE", None),
    ] {
        let (status, err) = send(&app, call(method, "/admin/v1/clients/tgc_nope", body)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}: {err}");
        assert_eq!(err["code"], "not_found", "{method}");
    }
    let (status, err) = send(
        &app,
        call("POST", "/admin/v1/clients/tgc_nope/secret", None),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
    assert_eq!(err["code"], "not_found");
}

async fn a_client_from_creation_to_deletion(db: TestDatabase) {
    let app = app(&db).await;
    let created = create(&app, web_app("Photo App")).await;
    let id = created["client_id"].as_str().expect("client_id").to_owned();
    let secret = created["client_secret"]
        .as_str()
        .expect("client_secret once")
        .to_owned();
    assert!(id.starts_with("tgc_") && secret.starts_with("tgcs_"));
    assert_eq!(created["name"], "Photo App");
    assert_eq!(created["auth_method"], "client_secret_basic");
    assert_eq!(created["application_type"], "web");
    assert_eq!(
        created["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(
        created["scopes"],
        json!(["openid", "profile", "email", "offline_access"])
    );
    assert_eq!(created["access_token_ttl_secs"], 600);
    assert_eq!(created["refresh_token_ttl_secs"], 30 * 86400);
    assert_eq!(created["has_secret"], true);
    assert!(authenticates(&app, &id, &secret).await);

    let path = format!("/admin/v1/clients/{id}");
    let (status, got) = send(&app, call("GET", &path, None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(got.get("client_secret").is_none());
    let mut without_secret = created.clone();
    without_secret
        .as_object_mut()
        .expect("object")
        .remove("client_secret");
    assert_eq!(got, without_secret);

    // PUT takes what GET showed, minus the read-only fields, with changes.
    let mut registration = got.as_object().cloned().expect("object");
    for read_only in ["client_id", "created_at", "updated_at", "has_secret"] {
        registration.remove(read_only);
    }
    registration.insert("name".into(), json!("Photo App 2"));
    registration.insert("scopes".into(), json!(["openid", "photos:read"]));
    registration.insert("skip_consent".into(), json!(true));
    registration.insert("audience".into(), json!(["https://photos.example.com"]));
    let (status, updated) = send(
        &app,
        call("PUT", &path, Some(Value::Object(registration.clone()))),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["name"], "Photo App 2");
    assert_eq!(updated["scopes"], json!(["openid", "photos:read"]));
    assert_eq!(updated["skip_consent"], true);
    assert_eq!(updated["audience"], json!(["https://photos.example.com"]));
    assert!(
        updated.get("client_secret").is_none(),
        "same method, no new secret"
    );
    assert!(authenticates(&app, &id, &secret).await);

    // Rotation: a new secret once, the old one dead at once.
    let (status, rotated) = send(&app, call("POST", &format!("{path}/secret"), None)).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(rotated["client_id"], id.as_str());
    let new_secret = rotated["client_secret"]
        .as_str()
        .expect("new secret")
        .to_owned();
    assert_ne!(new_secret, secret);
    assert!(!authenticates(&app, &id, &secret).await);
    assert!(authenticates(&app, &id, &new_secret).await);

    // Switching to a public client drops the secret; rotating then is a conflict.
    registration.insert("auth_method".into(), json!("none"));
    let (status, public) = send(
        &app,
        call("PUT", &path, Some(Value::Object(registration.clone()))),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{public}");
    assert_eq!(public["has_secret"], false);
    assert!(!authenticates(&app, &id, &new_secret).await);
    let (status, err) = send(&app, call("POST", &format!("{path}/secret"), None)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["code"], "client_has_no_secret");
    // And back: a secret is issued with the update.
    registration.insert("auth_method".into(), json!("client_secret_basic"));
    let (status, confidential) =
        send(&app, call("PUT", &path, Some(Value::Object(registration)))).await;
    assert_eq!(status, StatusCode::OK, "{confidential}");
    let third_secret = confidential["client_secret"]
        .as_str()
        .expect("issued on switch")
        .to_owned();
    assert!(authenticates(&app, &id, &third_secret).await);

    // No secret in the list, nor in the audit trail.
    let listed = list_all(&app).await;
    assert_eq!(listed.len(), 1);
    assert!(listed[0].get("client_secret").is_none());
    let (status, audit) = send(&app, call("GET", "/admin/v1/audit?limit=100", None)).await;
    assert_eq!(status, StatusCode::OK);
    let kinds: Vec<&str> = audit["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for kind in ["client_created", "client_updated", "client_secret_rotated"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    for event in audit["events"].as_array().expect("events") {
        if event["kind"]
            .as_str()
            .is_some_and(|k| k.starts_with("client_"))
        {
            assert_eq!(event["detail"]["client_id"], id.as_str(), "{event}");
            assert_eq!(
                event["actor"],
                crate::common::admin_subject(&*db.store).await
            );
            assert_eq!(event["outcome"], "success");
        }
    }
    let everything = format!("{listed:?} {audit}");
    for s in [&secret, &new_secret, &third_secret] {
        assert!(!everything.contains(s.as_str()), "a secret leaked");
    }

    // Deletion.
    let (status, _) = send(&app, call("DELETE", &path, None)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = send(&app, call("GET", &path, None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = send(&app, call("DELETE", &path, None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!authenticates(&app, &id, &third_secret).await);
    let (_, audit) = send(
        &app,
        call("GET", "/admin/v1/audit?kind=client_deleted", None),
    )
    .await;
    assert_eq!(audit["events"][0]["detail"]["client_id"], id.as_str());
}

async fn list_pages_by_id(db: TestDatabase) {
    let app = app(&db).await;
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        let mut body = web_app(name);
        body["auth_method"] = json!("none");
        let created = create(&app, body).await;
        assert!(created.get("client_secret").is_none(), "public: no secret");
        ids.push(created["client_id"].as_str().expect("id").to_owned());
    }
    ids.sort();
    let (status, first) = send(&app, call("GET", "/admin/v1/clients?limit=2", None)).await;
    assert_eq!(status, StatusCode::OK);
    let page: Vec<&str> = first["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .filter_map(|c| c["client_id"].as_str())
        .collect();
    assert_eq!(page, ids[..2]);
    let next = first["next"].as_str().expect("next");
    let (_, second) = send(
        &app,
        call(
            "GET",
            &format!("/admin/v1/clients?limit=2&after={next}"),
            None,
        ),
    )
    .await;
    assert_eq!(second["clients"][0]["client_id"], ids[2].as_str());
    assert_eq!(second["clients"].as_array().map(Vec::len), Some(1));
    assert!(second["next"].is_null());
}

async fn a_client_is_enabled_for_token_exchange(db: TestDatabase) {
    let app = app(&db).await;
    let exchange = "urn:ietf:params:oauth:grant-type:token-exchange";
    let created = create(
        &app,
        json!({
            "name": "Gateway",
            "grant_types": [exchange],
            "resource_audiences": ["https://gateway.example"],
            "token_exchange": {"audiences": ["https://orders.example", "https://orders.example"]},
        }),
    )
    .await;
    assert_eq!(created["grant_types"], json!([exchange]));
    assert_eq!(
        created["token_exchange"],
        json!({"audiences": ["https://orders.example"]})
    );
    let id = created["client_id"].as_str().expect("client_id");
    let path = format!("/admin/v1/clients/{id}");
    let (status, got) = send(&app, call("GET", &path, None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["token_exchange"], created["token_exchange"]);
    let mut registration = got.as_object().cloned().expect("object");
    for read_only in ["client_id", "created_at", "updated_at", "has_secret"] {
        registration.remove(read_only);
    }

    // API keys as subject tokens: an explicit opt-in, for a resource server only.
    let with_keys = json!({"audiences": ["https://orders.example"], "api_keys": true});
    registration.insert("token_exchange".into(), with_keys.clone());
    let (status, updated) = send(
        &app,
        call("PUT", &path, Some(Value::Object(registration.clone()))),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["token_exchange"], with_keys);
    let (_, got) = send(&app, call("GET", &path, None)).await;
    assert_eq!(got["token_exchange"], with_keys);
    let mut not_a_resource_server = registration.clone();
    not_a_resource_server.insert("resource_audiences".into(), json!([]));
    let (status, err) = send(
        &app,
        call("PUT", &path, Some(Value::Object(not_a_resource_server))),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["code"], "invalid_token_exchange");
    registration.insert("token_exchange".into(), created["token_exchange"].clone());

    // Switching the grant off needs the policy gone too; then the client shows none.
    registration.insert("grant_types".into(), json!(["client_credentials"]));
    let (status, err) = send(
        &app,
        call("PUT", &path, Some(Value::Object(registration.clone()))),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["code"], "invalid_token_exchange");
    registration.insert("token_exchange".into(), Value::Null);
    let (status, updated) = send(&app, call("PUT", &path, Some(Value::Object(registration)))).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert!(updated["token_exchange"].is_null());
    assert_eq!(updated["grant_types"], json!(["client_credentials"]));
}
