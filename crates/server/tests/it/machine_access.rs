//! Least privilege for machines: service accounts, roles decided by the system model, API keys
//! (shown once, indistinguishable refusals, rotation overlap, revocation on every replica,
//! query-string refusal, rate limits) and the 401/403 split with the denial audited.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::{Value, json};
use time::macros::datetime;
use trustgate_authn::api_keys::format;
use trustgate_core::ManualClock;
use trustgate_server::{Config, router};
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;

use crate::common::{Api, Resp};

const MODEL: &str =
    "model\n  schema 1.1\ntype user\ntype document\n  relations\n    define viewer: [user]\n";

/// Creates a service account and returns its id.
async fn service(api: &Api, name: &str) -> String {
    api.post("/admin/v1/service-accounts", json!({ "name": name }))
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

async fn grant(api: &Api, subject: &str, role: &str) {
    api.post(
        "/admin/v1/roles",
        json!({ "subject": subject, "role": role }),
    )
    .await
    .expect(StatusCode::OK);
}

/// Issues a key for service account `id` and returns (key, key id).
async fn key(api: &Api, id: &str, body: Value) -> (String, String) {
    let r = api
        .post(&format!("/admin/v1/service-accounts/{id}/api-keys"), body)
        .await;
    let b = r.expect(StatusCode::CREATED);
    (
        b["key"].as_str().expect("key").to_owned(),
        b["api_key"]["id"].as_str().expect("key id").to_owned(),
    )
}

fn check_body() -> Value {
    json!({ "tuple_key": { "object": "document:1", "relation": "viewer", "user": "user:anne" } })
}

fn write_body() -> Value {
    json!({ "writes": { "tuple_keys": [
        { "object": "document:1", "relation": "viewer", "user": "user:anne" }
    ] } })
}

/// The body of an error without its request id (which differs per request).
fn without_request_id(r: &Resp) -> Value {
    let mut body = r.body.clone();
    if let Some(map) = body.as_object_mut() {
        map.remove("request_id");
    }
    body
}

async fn store_scoped_keys_are_confined_to_their_store(db: TestDatabase) {
    let api = Api::new(db).await;
    let mine = api.create_store("mine").await;
    let other = api.create_store("other").await;
    api.write_dsl_model(&mine, MODEL).await;
    api.write_dsl_model(&other, MODEL).await;
    let app = service(&api, "tenant-app").await;
    grant(
        &api,
        &format!("service:{app}"),
        &format!("store:{mine}:writer"),
    )
    .await;
    let (writer, _) = key(
        &api,
        &app,
        json!({ "scopes": [format!("store:{mine}:writer")] }),
    )
    .await;
    grant(
        &api,
        &format!("service:{app}"),
        &format!("store:{mine}:reader"),
    )
    .await;
    let (reader, _) = key(
        &api,
        &app,
        json!({ "scopes": [format!("store:{mine}:reader")] }),
    )
    .await;

    // The writer writes and checks its own store.
    api.call_as(
        &writer,
        "POST",
        &format!("/stores/{mine}/write"),
        &write_body(),
    )
    .await
    .expect(StatusCode::OK);
    let r = api
        .call_as(
            &writer,
            "POST",
            &format!("/stores/{mine}/check"),
            &check_body(),
        )
        .await;
    assert_eq!(r.expect(StatusCode::OK)["allowed"], true);

    // A reader checks but does not write.
    api.call_as(
        &reader,
        "POST",
        &format!("/stores/{mine}/check"),
        &check_body(),
    )
    .await
    .expect(StatusCode::OK);
    let r = api
        .call_as(
            &reader,
            "POST",
            &format!("/stores/{mine}/write"),
            &write_body(),
        )
        .await;
    r.expect(StatusCode::FORBIDDEN);
    // Nor import; the writer imports.
    let import = json!({ "tuple_keys": write_body()["writes"]["tuple_keys"] });
    api.call_as(&reader, "POST", &format!("/stores/{mine}/import"), &import)
        .await
        .expect(StatusCode::FORBIDDEN);
    let imported = api
        .call_as(&writer, "POST", &format!("/stores/{mine}/import"), &import)
        .await;
    assert_eq!(imported.expect(StatusCode::OK)["existing"], 1);
    assert_eq!(r.code(), "permission_denied");
    assert!(
        r.message().contains(&format!("store:{mine}:writer")),
        "{}",
        r.message()
    );

    // Neither touches the other store, the admin API or models.
    for k in [&writer, &reader] {
        for (method, path, body) in [
            ("POST", format!("/stores/{other}/check"), check_body()),
            ("GET", format!("/stores/{other}"), Value::Null),
            ("POST", format!("/stores/{other}/write"), write_body()),
            ("GET", "/admin/v1/users".to_owned(), Value::Null),
            ("GET", "/admin/v1/audit".to_owned(), Value::Null),
            ("GET", "/admin/v1/service-accounts".to_owned(), Value::Null),
            ("POST", "/stores".to_owned(), json!({ "name": "mine-too" })),
            (
                "POST",
                format!("/stores/{mine}/authorization-models"),
                serde_json::to_value(trustgate_authz::dsl::parse(MODEL).expect("dsl"))
                    .expect("json"),
            ),
        ] {
            let r = api.call_as(k, method, &path, &body).await;
            assert_eq!(
                (r.status, r.code()),
                (StatusCode::FORBIDDEN, "permission_denied"),
                "{method} {path}: {}",
                String::from_utf8_lossy(&r.raw)
            );
        }
    }

    // Listing stores shows exactly the permitted one; the admin sees both (never the system store).
    let r = api.call_as(&reader, "GET", "/stores", &Value::Null).await;
    let ids: Vec<&str> = r.expect(StatusCode::OK)["stores"]
        .as_array()
        .expect("stores")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, [mine.as_str()]);
    // The name filter narrows what the principal may see; it never widens it.
    for (name, want) in [("mine", 1), ("other", 0)] {
        let r = api
            .call_as(
                &reader,
                "GET",
                &format!("/stores?name={name}"),
                &Value::Null,
            )
            .await;
        let listed = r.expect(StatusCode::OK)["stores"]
            .as_array()
            .expect("stores")
            .len();
        assert_eq!(listed, want, "{name}");
    }
    let r = api.get("/stores").await;
    let count = r.expect(StatusCode::OK)["stores"]
        .as_array()
        .expect("stores")
        .len();
    assert_eq!(count, 2);
    let r = api
        .get(&format!("/stores/{}", trustgate_store_api::SYSTEM_STORE_ID))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

async fn keys_cannot_exceed_their_owner(db: TestDatabase) {
    let api = Api::new(db).await;
    let store = api.create_store("docs").await;
    let app = service(&api, "reader-app").await;
    grant(
        &api,
        &format!("service:{app}"),
        &format!("store:{store}:reader"),
    )
    .await;
    for scope in [
        "admin".to_owned(),
        format!("store:{store}:writer"),
        "auditor".to_owned(),
    ] {
        let r = api
            .post(
                &format!("/admin/v1/service-accounts/{app}/api-keys"),
                json!({ "scopes": [scope] }),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "scope_exceeds_owner"),
            "{scope}"
        );
    }
    for scopes in [
        json!([]),
        json!(["two words"]),
        json!(["store:nope:reader"]),
        json!([format!("store:{store}:owner")]),
    ] {
        let r = api
            .post(
                &format!("/admin/v1/service-accounts/{app}/api-keys"),
                json!({ "scopes": scopes }),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_input")
        );
    }
    // Application scopes are labels for the services a key is shown to: any owner may put
    // them on a key, and they grant nothing on trustgate's own APIs.
    let r = api
        .post(
            &format!("/admin/v1/service-accounts/{app}/api-keys"),
            json!({ "scopes": ["root", "courses:read"] }),
        )
        .await;
    let body = r.expect(StatusCode::CREATED);
    assert_eq!(
        body["api_key"]["scopes"],
        json!(["courses:read", "root"]),
        "{body}"
    );
    let labelled = body["key"].as_str().expect("key").to_owned();
    let r = api
        .call_as(
            &labelled,
            "POST",
            &format!("/stores/{store}/check"),
            &check_body(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "a label is no role");
    // A key loses what its owner loses.
    let (k, _) = key(
        &api,
        &app,
        json!({ "scopes": [format!("store:{store}:reader")] }),
    )
    .await;
    api.write_dsl_model(&store, MODEL).await;
    api.call_as(&k, "POST", &format!("/stores/{store}/check"), &check_body())
        .await
        .expect(StatusCode::OK);
    api.post(
        "/admin/v1/roles/revoke",
        json!({ "subject": format!("service:{app}"), "role": format!("store:{store}:reader") }),
    )
    .await
    .expect(StatusCode::OK);
    let r = api
        .call_as(&k, "POST", &format!("/stores/{store}/check"), &check_body())
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

async fn a_key_is_shown_once_and_refusals_are_indistinguishable(db: TestDatabase) {
    let api = Api::new(db).await;
    let app = service(&api, "auditor-app").await;
    grant(&api, &format!("service:{app}"), "auditor").await;
    let (k, id) = key(
        &api,
        &app,
        json!({ "scopes": ["auditor"], "description": "ci" }),
    )
    .await;
    assert!(k.starts_with(&format!("tg_live_{id}_")), "{k}");
    assert!(matches!(format::shape(&k), format::Shape::Key { .. }));

    // Never again: not in the key, the list, the account or the audit trail.
    for path in [
        format!("/admin/v1/api-keys/{id}"),
        "/admin/v1/api-keys".to_owned(),
        format!("/admin/v1/service-accounts/{app}"),
        "/admin/v1/audit".to_owned(),
    ] {
        let r = api.get(&path).await;
        r.expect(StatusCode::OK);
        let secret = &k[k.len() - 49..];
        assert!(
            !String::from_utf8_lossy(&r.raw).contains(secret),
            "{path} shows the secret"
        );
    }
    api.call_as(&k, "GET", "/admin/v1/audit", &Value::Null)
        .await
        .expect(StatusCode::OK);
    // Its last use is noted in memory and written in a batch (periodically and at shutdown).
    api.state.api_keys.flush().await.expect("flush");
    let r = api.get(&format!("/admin/v1/api-keys/{id}")).await;
    assert!(
        r.expect(StatusCode::OK)["last_used_at"].is_string(),
        "{}",
        r.body
    );

    // The same key id with another secret (a valid checksum) is refused exactly like an unknown
    // key, a key with a bad checksum and a key-shaped string of another deployment.
    let forged = format::generate("live", &id);
    let unknown = format::generate(
        "live",
        &trustgate_core::id::new_ulid(time::OffsetDateTime::now_utc()),
    );
    let mut bad_checksum = k.clone();
    bad_checksum.pop();
    bad_checksum.push(if k.ends_with('0') { '1' } else { '0' });
    let refusals: Vec<Resp> = refusals_for(
        &api,
        &[
            forged.expose(),
            unknown.expose(),
            &bad_checksum,
            "not-a-key",
        ],
    )
    .await;
    let first = &refusals[0];
    assert_eq!(first.status, StatusCode::UNAUTHORIZED);
    for r in &refusals {
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(without_request_id(r), without_request_id(first));
        assert_eq!(
            r.headers.get("www-authenticate"),
            first.headers.get("www-authenticate")
        );
    }

    // Timing: a wrong secret for a known key id takes the same path as an unknown key (one
    // lookup by digest that finds nothing), so their latencies are alike.
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (mut wrong, mut missing) = (Vec::new(), Vec::new());
    for _ in 0..60 {
        for (key, times) in [
            (forged.expose(), &mut wrong),
            (unknown.expose(), &mut missing),
        ] {
            let started = Instant::now();
            api.call_as(key, "GET", "/admin/v1/audit", &Value::Null)
                .await;
            times.push(started.elapsed());
        }
    }
    let (wrong, missing) = (median(wrong), median(missing));
    let ratio = wrong.as_secs_f64() / missing.as_secs_f64();
    assert!(
        (0.5..2.0).contains(&ratio),
        "wrong secret {wrong:?} vs unknown key {missing:?}"
    );
}

async fn refusals_for(api: &Api, keys: &[&str]) -> Vec<Resp> {
    let mut out = Vec::new();
    for k in keys {
        out.push(api.call_as(k, "GET", "/admin/v1/audit", &Value::Null).await);
    }
    out
}

async fn missing_or_invalid_credentials_are_401_and_denials_403_audited(db: TestDatabase) {
    let api = Api::new(db).await;
    let r = api
        .raw("GET", "/admin/v1/users", Vec::new(), &[], false)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    assert!(r.headers.contains_key("www-authenticate"));
    let r = api
        .raw(
            "GET",
            "/admin/v1/users",
            Vec::new(),
            &[("authorization", "Basic Zm9vOmJhcg==")],
            false,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let app = service(&api, "client-bot").await;
    grant(&api, &format!("service:{app}"), "client_admin").await;
    let (k, id) = key(&api, &app, json!({ "scopes": ["client_admin"] })).await;
    // X-API-Key works as well as Authorization: Bearer.
    let r = api
        .raw(
            "GET",
            "/admin/v1/clients",
            Vec::new(),
            &[("x-api-key", &k)],
            false,
        )
        .await;
    r.expect(StatusCode::OK);
    let r = api
        .call_as(&k, "GET", "/admin/v1/users", &Value::Null)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "permission_denied")
    );

    api.state.auditor.flush(Duration::from_secs(5)).await;
    let r = api.get("/admin/v1/audit?kind=access_denied").await;
    let events = r.expect(StatusCode::OK)["events"]
        .as_array()
        .expect("events")
        .clone();
    let denial = events
        .iter()
        .find(|e| e["detail"]["key_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no access_denied event for the key: {events:?}"));
    assert_eq!(denial["detail"]["permission"], "user_admin");
    assert_eq!(denial["actor"], format!("service:{app}"));
    assert_eq!(denial["outcome"], "denied");
}

async fn a_key_in_the_query_string_is_refused(db: TestDatabase) {
    let api = Api::new(db).await;
    for query in [
        format!("api_key={}", api.token),
        format!("access_token={}", api.token),
        "X-API-KEY=anything".to_owned(),
        format!("q={}", "tg_live_01JF3Z9Q7W8X2Y4Z6A8B0C2D4E_x"),
    ] {
        // Refused even with a valid key in the header: the query string leaks into logs.
        let r = api.get(&format!("/admin/v1/whoami?{query}")).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "credential_in_query"),
            "{query}"
        );
    }
    api.get("/admin/v1/whoami").await.expect(StatusCode::OK);
}

async fn rate_limited_keys_get_429_with_retry_after(db: TestDatabase) {
    let api = Api::new(db).await;
    let app = service(&api, "limited").await;
    grant(&api, &format!("service:{app}"), "auditor").await;
    let (k, _) = key(
        &api,
        &app,
        json!({ "scopes": ["auditor"], "rate_limit_per_minute": 2 }),
    )
    .await;
    for _ in 0..2 {
        api.call_as(&k, "GET", "/admin/v1/audit", &Value::Null)
            .await
            .expect(StatusCode::OK);
    }
    let r = api
        .call_as(&k, "GET", "/admin/v1/audit", &Value::Null)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    let retry: u64 = r.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=30).contains(&retry), "{retry}");
    // Another key of the same owner has its own bucket (and the admin is unlimited).
    let (other, _) = key(&api, &app, json!({ "scopes": ["auditor"] })).await;
    api.call_as(&other, "GET", "/admin/v1/audit", &Value::Null)
        .await
        .expect(StatusCode::OK);
}

async fn revocation_reaches_a_second_replica_within_a_second(db: TestDatabase) {
    let api = Api::new(db).await;
    let app = service(&api, "replicated").await;
    grant(&api, &format!("service:{app}"), "auditor").await;
    let (k, id) = key(&api, &app, json!({ "scopes": ["auditor"] })).await;
    // A second replica over the same database, with the key verified (and cached) there.
    let replica = trustgate_server::AppState::start(
        api.db.store.clone(),
        Arc::new(trustgate_core::SystemClock),
        Config::default(),
        api.secrets_key.clone(),
    )
    .await
    .expect("replica");
    let second = router(replica);
    for _ in 0..3 {
        assert_eq!(status_as(&second, &k).await, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let revoked_at = Instant::now();
    let r = api
        .call("DELETE", &format!("/admin/v1/api-keys/{id}"), &Value::Null)
        .await;
    assert!(r.expect(StatusCode::OK)["revoked_at"].is_string());
    // At once on the replica that revoked it.
    let r = api
        .call_as(&k, "GET", "/admin/v1/audit", &Value::Null)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Within a second on the other.
    loop {
        if status_as(&second, &k).await == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "the second replica still accepts a key revoked {:?} ago",
            revoked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(revoked_at.elapsed() < Duration::from_secs(1));
}

/// The status of `GET /admin/v1/audit` with `key` on `app`.
async fn status_as(app: &axum::Router, key: &str) -> StatusCode {
    use tower::ServiceExt as _;
    let request = http::Request::get("/admin/v1/audit")
        .header("authorization", format!("Bearer {key}"))
        .body(axum::body::Body::empty())
        .expect("request");
    app.clone()
        .oneshot(request)
        .await
        .expect("infallible")
        .status()
}

async fn disabling_a_service_account_stops_its_keys_at_once(db: TestDatabase) {
    let api = Api::new(db).await;
    let app = service(&api, "to-disable").await;
    grant(&api, &format!("service:{app}"), "auditor").await;
    let (k, _) = key(&api, &app, json!({ "scopes": ["auditor"] })).await;
    api.call_as(&k, "GET", "/admin/v1/audit", &Value::Null)
        .await
        .expect(StatusCode::OK);
    api.post(
        &format!("/admin/v1/service-accounts/{app}/disable"),
        Value::Null,
    )
    .await
    .expect(StatusCode::OK);
    let r = api
        .call_as(&k, "GET", "/admin/v1/audit", &Value::Null)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    api.post(
        &format!("/admin/v1/service-accounts/{app}/enable"),
        Value::Null,
    )
    .await
    .expect(StatusCode::OK);
    api.call_as(&k, "GET", "/admin/v1/audit", &Value::Null)
        .await
        .expect(StatusCode::OK);
    // An account cannot lock itself out.
    let me = api.get("/admin/v1/whoami").await.expect(StatusCode::OK)["subject"]
        .as_str()
        .expect("subject")
        .trim_start_matches("service:")
        .to_owned();
    for (method, path) in [
        ("POST", format!("/admin/v1/service-accounts/{me}/disable")),
        ("DELETE", format!("/admin/v1/service-accounts/{me}")),
    ] {
        let r = api.call(method, &path, &Value::Null).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{method} {path}");
    }
    // Deleting takes the keys and the roles with it.
    let r = api
        .call(
            "DELETE",
            &format!("/admin/v1/service-accounts/{app}"),
            &Value::Null,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = api
        .call_as(&k, "GET", "/admin/v1/audit", &Value::Null)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = api.get(&format!("/admin/v1/service-accounts/{app}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let again = service(&api, "to-disable").await;
    let r = api
        .get(&format!("/admin/v1/roles?subject=service:{again}"))
        .await;
    assert_eq!(r.expect(StatusCode::OK)["roles"], json!([]));
}

test_on_both_backends!(
    store_scoped_keys_are_confined_to_their_store,
    keys_cannot_exceed_their_owner,
    a_key_is_shown_once_and_refusals_are_indistinguishable,
    missing_or_invalid_credentials_are_401_and_denials_403_audited,
    a_key_in_the_query_string_is_refused,
    rate_limited_keys_get_429_with_retry_after,
    revocation_reaches_a_second_replica_within_a_second,
    disabling_a_service_account_stops_its_keys_at_once,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_the_old_key_exactly_for_the_overlap() {
    let clock = ManualClock::new(datetime!(2026-06-01 12:00 UTC));
    let api = Api::with_clock(
        TestDatabase::sqlite().await,
        Config::default(),
        Arc::new(clock.clone()),
    )
    .await;
    let app = service(&api, "rotating").await;
    grant(&api, &format!("service:{app}"), "auditor").await;
    let (old, old_id) = key(
        &api,
        &app,
        json!({ "scopes": ["auditor"], "expires_in_secs": 90 * 86400 }),
    )
    .await;
    let r = api
        .post(
            &format!("/admin/v1/api-keys/{old_id}/rotate"),
            json!({ "overlap_secs": 3600 }),
        )
        .await;
    let b = r.expect(StatusCode::CREATED).clone();
    let new = b["key"].as_str().expect("new key").to_owned();
    assert_eq!(b["api_key"]["rotated_from"], old_id.as_str());
    assert_eq!(b["api_key"]["scopes"], json!(["auditor"]));
    assert_eq!(b["previous"]["expires_at"], "2026-06-01T13:00:00Z");
    assert_eq!(b["api_key"]["expires_at"], "2026-08-30T12:00:00Z");

    clock.advance(time::Duration::seconds(3599));
    for k in [&old, &new] {
        api.call_as(k, "GET", "/admin/v1/audit", &Value::Null)
            .await
            .expect(StatusCode::OK);
    }
    clock.advance(time::Duration::seconds(1));
    let r = api
        .call_as(&old, "GET", "/admin/v1/audit", &Value::Null)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "the overlap ended");
    api.call_as(&new, "GET", "/admin/v1/audit", &Value::Null)
        .await
        .expect(StatusCode::OK);
    // A revoked key cannot be rotated back to life.
    api.call(
        "DELETE",
        &format!("/admin/v1/api-keys/{old_id}"),
        &Value::Null,
    )
    .await
    .expect(StatusCode::OK);
    let r = api
        .post(
            &format!("/admin/v1/api-keys/{old_id}/rotate"),
            json!({ "overlap_secs": 60 }),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "api_key_revoked")
    );
}

/// An installation of release e19de9d (the store's upgrade fixture) keeps working: its admin
/// token is an `admin`-scoped key of the same account after the upgrade, holds every
/// permission, and its stores are there and readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_of_an_earlier_release_still_administers_after_the_upgrade() {
    const FIXTURE: &[u8] = include_bytes!("../../../store/tests/fixtures/release-e19de9d.db");
    const RECORDED: &str = include_str!("../../../store/tests/fixtures/release-e19de9d.json");
    let recorded: Value = serde_json::from_str(RECORDED).expect("json");
    let token = recorded["admin_token"].as_str().expect("token");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("trustgate.db");
    std::fs::write(&path, FIXTURE).expect("copy");
    // Its signing keys are sealed with a secrets key that was not kept with the fixture.
    trustgate_store::testing::forget_fixture_signing_keys(&path)
        .await
        .expect("forget the fixture's signing keys");
    let store = trustgate_store::connect(
        &format!("sqlite://{}", path.display()),
        &trustgate_store::ConnectOptions::default(),
    )
    .await
    .expect("open");
    store.migrate().await.expect("migrate");
    let state = trustgate_server::AppState::start(
        store,
        Arc::new(trustgate_core::SystemClock),
        Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        },
        trustgate_core::SealingKey::generate(),
    )
    .await
    .expect("state");
    assert!(matches!(
        trustgate_server::bootstrap::ensure_admin(&state).await,
        Ok(trustgate_server::bootstrap::Bootstrap::Existing)
    ));
    let app = router(state);
    let call = |path: String| {
        let app = app.clone();
        async move {
            use tower::ServiceExt as _;
            let request = http::Request::get(&path)
                .header("authorization", format!("Bearer {token}"))
                .body(axum::body::Body::empty())
                .expect("request");
            let response = app.oneshot(request).await.expect("infallible");
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body");
            (
                status,
                serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            )
        }
    };
    let (status, whoami) = call("/admin/v1/whoami".to_owned()).await;
    assert_eq!(status, StatusCode::OK, "{whoami}");
    assert_eq!(whoami["scopes"], json!(["admin"]));
    let roles = format!(
        "/admin/v1/roles?subject={}",
        whoami["subject"].as_str().expect("subject")
    );
    let (status, roles) = call(roles).await;
    assert_eq!(status, StatusCode::OK, "{roles}");
    assert_eq!(roles["roles"], json!(["admin"]));
    for path in [
        "/admin/v1/users",
        "/admin/v1/audit",
        "/admin/v1/service-accounts",
    ] {
        assert_eq!(call(path.to_owned()).await.0, StatusCode::OK, "{path}");
    }
    let (status, stores) = call("/stores".to_owned()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stores["stores"], recorded["stores"]["stores"]);
}
