//! Signing keys through the server, in-process on both backends: the JWKS document (media type,
//! cache lifetime from the configuration, public members only), the admin keys API (401 without
//! a token, 400s, rotation audited), a rotated key published at once and signing only after the
//! publish-ahead period, and a retired key leaving the JWKS once its tokens have expired.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, Request, StatusCode};
use serde_json::{Value, json};
use time::macros::datetime;
use tower::ServiceExt as _;
use trustgate_core::{ManualClock, SealingKey};
use trustgate_server::{AppState, Config, router};
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;
use trustgate_tokens::Algorithm;

const TOKEN: &str = "tg_admin_keys_test_token_0123456789abcdef";

struct App {
    router: axum::Router,
    state: AppState,
    clock: ManualClock,
}

async fn app_with(db: &TestDatabase, config: Config, secrets_key: SealingKey) -> App {
    let clock = ManualClock::new(datetime!(2026-03-01 12:00 UTC));
    let state = crate::common::start_with_admin(
        db.store.clone(),
        Arc::new(clock.clone()),
        config,
        secrets_key,
        TOKEN,
    )
    .await;
    App {
        router: router(state.clone()),
        state,
        clock,
    }
}

async fn app(db: &TestDatabase) -> App {
    app_with(db, Config::default(), SealingKey::generate()).await
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
    text: String,
}

async fn send(app: &App, request: Request<Body>) -> Answer {
    let response = app
        .router
        .clone()
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Answer {
        status,
        headers,
        json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        text,
    }
}

fn admin(method: &str, path: &str, body: Option<Value>) -> Request<Body> {
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

async fn jwks(app: &App) -> Answer {
    send(
        app,
        Request::get("/.well-known/jwks.json")
            .body(Body::empty())
            .expect("request"),
    )
    .await
}

fn kids(set: &Value) -> Vec<String> {
    set["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str().map(str::to_owned))
        .collect()
}

/// The `kid` in a compact JWS header.
fn header_kid(jws: &str) -> String {
    let header = jws.split('.').next().expect("header");
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64")).expect("json");
    header["kid"].as_str().expect("kid").to_owned()
}

test_on_both_backends!(
    key_routes_need_an_admin_token_and_jwks_does_not,
    jwks_is_a_cacheable_set_of_public_keys,
    rotation_through_the_api_publishes_at_once_and_is_audited,
    rotated_keys_sign_after_publish_ahead_and_retire_out_of_the_jwks,
);

async fn key_routes_need_an_admin_token_and_jwks_does_not(db: TestDatabase) {
    let app = app(&db).await;
    for (method, path) in [("GET", "/admin/v1/keys"), ("POST", "/admin/v1/keys/rotate")] {
        for auth in [None, Some("Bearer tg_admin_wrong")] {
            let mut builder = Request::builder().method(method).uri(path);
            if let Some(auth) = auth {
                builder = builder.header("authorization", auth);
            }
            let answer = send(&app, builder.body(Body::empty()).expect("request")).await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert_eq!(answer.json["code"], "unauthenticated");
        }
    }
    assert_eq!(jwks(&app).await.status, StatusCode::OK);
    // Nothing was rotated by the refused calls.
    assert_eq!(app.state.oauth.keys().list().len(), 3);
}

async fn jwks_is_a_cacheable_set_of_public_keys(db: TestDatabase) {
    let secrets_key = SealingKey::generate();
    let app = app_with(&db, Config::default(), secrets_key.clone()).await;
    let answer = jwks(&app).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/jwk-set+json"[..])
    );
    // Cached for less than a new key is published ahead (600 s), at most 5 minutes.
    assert_eq!(
        answer.headers.get("cache-control").map(|v| v.as_bytes()),
        Some(&b"public, max-age=300"[..])
    );
    let keys = answer.json["keys"].as_array().expect("keys");
    let mut algorithms: Vec<&str> = keys.iter().filter_map(|k| k["alg"].as_str()).collect();
    algorithms.sort_unstable();
    assert_eq!(algorithms, ["ES256", "EdDSA", "RS256"]);
    for key in keys {
        for member in ["kid", "alg", "use", "kty"] {
            assert!(key[member].is_string(), "{member} in {key}");
        }
        assert_eq!(key["use"], "sig");
        for private in ["d", "p", "q", "dp", "dq", "qi", "k", "oth"] {
            assert!(
                key.get(private).is_none(),
                "private member {private} in {key}"
            );
        }
    }
    let mut published = kids(&answer.json);
    published.sort();
    published.dedup();
    assert_eq!(published.len(), 3, "distinct kids");
    let listed = send(&app, admin("GET", "/admin/v1/keys", None)).await;
    assert_eq!(listed.status, StatusCode::OK);
    let mut listed_kids = kids(&listed.json);
    listed_kids.sort();
    assert_eq!(listed_kids, published);
    for key in listed.json["keys"].as_array().expect("keys") {
        assert_eq!(key["state"], "active", "{key}");
        for field in ["algorithm", "created_at", "activates_at"] {
            assert!(key[field].is_string(), "{field} in {key}");
        }
    }
    assert!(!listed.text.contains("\"d\""), "no private key material");

    // A shorter publish-ahead period shortens the cache lifetime with it (a second replica on
    // the same database and secrets key: it opens the sealed keys and publishes the same set).
    let mut config = Config::default();
    config.oauth.key_publish_ahead_secs = 120;
    let short = app_with(&db, config, secrets_key).await;
    assert_eq!(kids(&jwks(&short).await.json).len(), 3);
    assert_eq!(
        jwks(&short)
            .await
            .headers
            .get("cache-control")
            .map(|v| v.as_bytes()),
        Some(&b"public, max-age=120"[..])
    );
}

async fn rotation_through_the_api_publishes_at_once_and_is_audited(db: TestDatabase) {
    let app = app(&db).await;
    let before = kids(&jwks(&app).await.json);

    for (body, status, code) in [
        (json!({"algorithm": "HS256"}), 400, "invalid_algorithm"),
        (json!({"algorithm": "none"}), 400, "invalid_algorithm"),
        (json!({"algorithm": 7}), 400, "invalid_request"),
        (json!({"alg": "ES256"}), 400, "invalid_request"),
    ] {
        let answer = send(
            &app,
            admin("POST", "/admin/v1/keys/rotate", Some(body.clone())),
        )
        .await;
        assert_eq!(answer.status.as_u16(), status, "{body}: {}", answer.text);
        assert_eq!(answer.json["code"], code, "{body}");
    }
    assert_eq!(
        kids(&jwks(&app).await.json),
        before,
        "refusals rotate nothing"
    );

    let rotated = send(
        &app,
        admin(
            "POST",
            "/admin/v1/keys/rotate",
            Some(json!({"algorithm": "ES256"})),
        ),
    )
    .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    let new = rotated.json["keys"].as_array().expect("keys");
    assert_eq!(new.len(), 1);
    assert_eq!(new[0]["algorithm"], "ES256");
    assert_eq!(
        new[0]["state"], "published",
        "signs only after publish-ahead"
    );
    let new_kid = new[0]["kid"].as_str().expect("kid").to_owned();
    assert!(!before.contains(&new_kid));
    let after = kids(&jwks(&app).await.json);
    assert!(after.contains(&new_kid), "published at once");
    assert!(before.iter().all(|k| after.contains(k)), "old keys stay");

    // No body: all three algorithms.
    let all = send(&app, admin("POST", "/admin/v1/keys/rotate", None)).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    let mut algorithms: Vec<&str> = all.json["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["algorithm"].as_str())
        .collect();
    algorithms.sort_unstable();
    assert_eq!(algorithms, ["ES256", "EdDSA", "RS256"]);
    assert_eq!(kids(&jwks(&app).await.json).len(), 7);

    let audit = send(
        &app,
        admin("GET", "/admin/v1/audit?kind=signing_key_rotated", None),
    )
    .await;
    let events = audit.json["events"].as_array().expect("events");
    assert_eq!(events.len(), 2, "{}", audit.text);
    // Both rotations happen at the same (manual) instant: their order in the trail is not fixed.
    let mut rotated_kids: Vec<usize> = events
        .iter()
        .filter_map(|e| e["detail"]["kids"].as_array().map(Vec::len))
        .collect();
    rotated_kids.sort_unstable();
    assert_eq!(rotated_kids, [1, 3]);
    assert!(
        events
            .iter()
            .any(|e| e["detail"]["kids"] == json!([new_kid]))
    );
    for event in events {
        assert_eq!(
            event["actor"],
            crate::common::admin_subject(&*db.store).await
        );
        assert_eq!(event["outcome"], "success");
    }
}

async fn rotated_keys_sign_after_publish_ahead_and_retire_out_of_the_jwks(db: TestDatabase) {
    let app = app(&db).await;
    let keys = app.state.oauth.keys();
    let claims = json!({"iss": "https://id.example", "sub": "x"});
    let old_kid = header_kid(&keys.sign(Algorithm::ES256, "JWT", &claims).expect("sign"));
    let rotated = send(
        &app,
        admin(
            "POST",
            "/admin/v1/keys/rotate",
            Some(json!({"algorithm": "ES256"})),
        ),
    )
    .await;
    let new_kid = rotated.json["keys"][0]["kid"]
        .as_str()
        .expect("kid")
        .to_owned();
    // Still the old key until the new one has been published for 10 minutes.
    let signed = keys.sign(Algorithm::ES256, "JWT", &claims).expect("sign");
    assert_eq!(header_kid(&signed), old_kid);

    app.clock.advance(time::Duration::minutes(10));
    keys.maintain().await.expect("maintain");
    let signed = keys.sign(Algorithm::ES256, "JWT", &claims).expect("sign");
    assert_eq!(header_kid(&signed), new_kid);
    let listed = send(&app, admin("GET", "/admin/v1/keys", None)).await;
    let state_of = |kid: &str| {
        listed.json["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .find(|k| k["kid"] == kid)
            .map(|k| k["state"].clone())
    };
    assert_eq!(state_of(&new_kid), Some(json!("active")));
    assert_eq!(state_of(&old_kid), Some(json!("retired")));
    assert!(
        kids(&jwks(&app).await.json).contains(&old_kid),
        "a retired key verifies the tokens it signed until they expire"
    );

    // After the longest token lifetime (24 h, plus a minute's leeway) it leaves the JWKS.
    app.clock
        .advance(time::Duration::hours(24) + time::Duration::minutes(2));
    keys.maintain().await.expect("maintain");
    let published = kids(&jwks(&app).await.json);
    assert!(!published.contains(&old_kid), "expired key still published");
    assert!(published.contains(&new_kid));
    assert_eq!(published.len(), 3);
}
