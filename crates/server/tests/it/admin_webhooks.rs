//! Webhooks through the server: the admin API (secret shown once, URL policy, rotation, dead
//! letters, every change audited) on both backends, and the server's own worker delivering an
//! audit event to a receiver that verifies it with `trustgate_pep::webhooks::Verifier`, after
//! the receiver comes back, and redelivering a dead letter through the API.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use trustgate_pep::webhooks::Verifier;
use trustgate_server::Config;
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;

use crate::common::Api;

test_on_both_backends!(admin_manages_webhooks_and_every_change_is_audited);

async fn admin_manages_webhooks_and_every_change_is_audited(db: TestDatabase) {
    let api = Api::new(db).await;
    let created = api
        .post(
            "/admin/v1/webhooks",
            json!({"url": "https://hooks.example.com/in", "kinds": ["role_granted", "login"],
                   "description": "security feed"}),
        )
        .await;
    let body = created.expect(StatusCode::CREATED).clone();
    let secret = body["secret"]
        .as_str()
        .expect("secret shown once")
        .to_owned();
    assert!(secret.starts_with("whsec_"));
    assert!(Verifier::from_texts([secret.as_str()]).is_ok());
    let id = body["webhook"]["id"].as_str().expect("id").to_owned();
    assert_eq!(body["webhook"]["kinds"], json!(["login", "role_granted"]));

    // Never shown again.
    let got = api.get(&format!("/admin/v1/webhooks/{id}")).await;
    let shown = got.expect(StatusCode::OK).to_string();
    assert!(!shown.contains(&secret[6..]), "{shown}");
    assert_eq!(got.body["secrets"].as_array().map(Vec::len), Some(1));
    let list = api.get("/admin/v1/webhooks").await;
    assert_eq!(
        list.expect(StatusCode::OK)["webhooks"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert!(!list.body.to_string().contains(&secret[6..]));

    // Rotation: a new secret, the old one still signing during the overlap.
    let rotated = api
        .post(
            &format!("/admin/v1/webhooks/{id}/rotate"),
            json!({"overlap_secs": 600}),
        )
        .await;
    let rotated = rotated.expect(StatusCode::CREATED).clone();
    assert_ne!(rotated["secret"].as_str(), Some(secret.as_str()));
    assert_eq!(
        rotated["webhook"]["secrets"].as_array().map(Vec::len),
        Some(2)
    );
    api.post(
        &format!("/admin/v1/webhooks/{id}/rotate"),
        json!({"overlap_secs": 31 * 24 * 3600}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_input");
    api.post("/admin/v1/webhooks/NOPE/rotate", json!({"overlap_secs": 1}))
        .await
        .expect_error(StatusCode::NOT_FOUND, "webhook_not_found");

    // The URL policy and the kinds.
    for (url, code) in [
        (
            "http://169.254.169.254/latest/meta-data/",
            "webhook_url_forbidden_address",
        ),
        (
            "https://metadata.google.internal/",
            "webhook_url_forbidden_address",
        ),
        ("http://hooks.example.com/in", "webhook_url_insecure"),
        ("https://u:p@hooks.example.com/", "webhook_url_credentials"),
        ("nope", "webhook_url_invalid"),
    ] {
        api.post("/admin/v1/webhooks", json!({"url": url}))
            .await
            .expect_error(StatusCode::BAD_REQUEST, code);
    }
    api.post(
        "/admin/v1/webhooks",
        json!({"url": "https://hooks.example.com/in", "kinds": ["nope"]}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "unknown_event_kind");
    api.post(
        "/admin/v1/webhooks",
        json!({"url": "https://x.example", "extra": 1}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_request");

    // Admins only.
    let anonymous = api
        .raw("GET", "/admin/v1/webhooks", Vec::new(), &[], false)
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    // Dead letters: none yet; an unknown one cannot be redelivered.
    let dead = api.get("/admin/v1/webhooks/dead-letters").await;
    assert_eq!(dead.expect(StatusCode::OK)["deliveries"], json!([]));
    api.post(
        "/admin/v1/webhooks/dead-letters/msg_nope/redeliver",
        Value::Null,
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "dead_letter_not_found");
    api.get("/admin/v1/webhooks/dead-letters?limit=0")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_input");

    let deleted = api
        .call("DELETE", &format!("/admin/v1/webhooks/{id}"), &Value::Null)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    api.get(&format!("/admin/v1/webhooks/{id}"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "webhook_not_found");

    for kind in [
        "webhook_created",
        "webhook_secret_rotated",
        "webhook_deleted",
    ] {
        let trail = api.get(&format!("/admin/v1/audit?kind={kind}")).await;
        let events = trail.expect(StatusCode::OK)["events"].clone();
        assert_eq!(events.as_array().map(Vec::len), Some(1), "{kind}: {events}");
        assert_eq!(events[0]["detail"]["webhook"], json!(id));
    }
}

#[derive(Clone, Default)]
struct Receiver {
    verifier: Arc<parking_lot::Mutex<Option<Verifier>>>,
    up: Arc<std::sync::atomic::AtomicBool>,
    attempts: Arc<std::sync::atomic::AtomicUsize>,
    verified: Arc<parking_lot::Mutex<Vec<Value>>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    if !r.up.load(std::sync::atomic::Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let verdict = r
        .verifier
        .lock()
        .as_ref()
        .map(|v| v.verify(&headers, &body));
    match verdict {
        Some(Ok(_)) => {
            r.verified
                .lock()
                .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
            StatusCode::NO_CONTENT
        }
        _ => StatusCode::UNAUTHORIZED,
    }
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_delivers_audit_events_and_redelivers_dead_letters() {
    let mut config = Config::default();
    config.webhooks.retry_delays_ms = vec![100];
    config.webhooks.poll_interval_ms = 20;
    config.webhooks.max_attempts = 3;
    let api = Api::with_config(TestDatabase::sqlite().await, config).await;
    let worker = tokio::spawn(trustgate_webhooks::worker::run(
        api.state.webhooks.clone(),
        api.state.auditor.clone(),
    ));

    let receiver = Receiver::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(receiver.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    // Subscribed to role grants; the receiver is down at first.
    let created = api
        .post(
            "/admin/v1/webhooks",
            json!({"url": format!("http://{addr}/hook"), "kinds": ["role_granted"]}),
        )
        .await;
    let secret = created.expect(StatusCode::CREATED)["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    *receiver.verifier.lock() = Some(Verifier::from_texts([secret.as_str()]).expect("secret"));
    let account = api
        .post("/admin/v1/service-accounts", json!({"name": "deployer"}))
        .await;
    let account_id = account.expect(StatusCode::CREATED)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    api.post(
        "/admin/v1/roles",
        json!({"subject": format!("service:{account_id}"), "role": "auditor"}),
    )
    .await
    .expect(StatusCode::OK);
    eventually("a refused attempt", || {
        receiver.attempts.load(std::sync::atomic::Ordering::SeqCst) >= 1
    })
    .await;
    receiver.up.store(true, std::sync::atomic::Ordering::SeqCst);
    eventually("the verified event", || receiver.verified.lock().len() == 1).await;
    let event = receiver.verified.lock()[0].clone();
    assert_eq!(event["type"], "role_granted");
    assert!(
        event["data"]["actor"]
            .as_str()
            .is_some_and(|a| a.starts_with("service:"))
    );

    // The receiver fails from now on: attempts run out into the dead-letter list.
    receiver
        .up
        .store(false, std::sync::atomic::Ordering::SeqCst);
    api.post(
        "/admin/v1/roles",
        json!({"subject": format!("service:{account_id}"), "role": "user_admin"}),
    )
    .await
    .expect(StatusCode::OK);
    let mut letters = Value::Null;
    for _ in 0..500 {
        letters = api.get("/admin/v1/webhooks/dead-letters").await.body["deliveries"].clone();
        if letters.as_array().is_some_and(|l| !l.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(letters.as_array().map(Vec::len), Some(1), "{letters}");
    assert_eq!(letters[0]["attempts"], 3);
    assert_eq!(letters[0]["state"], "dead");
    assert_eq!(letters[0]["last_status"], 503);
    assert_eq!(letters[0]["last_error"], "HTTP 503");
    assert!(letters[0].get("payload").is_none());
    let letter = letters[0]["id"].as_str().expect("id").to_owned();

    // It comes back; redelivery through the API reaches it.
    receiver.up.store(true, std::sync::atomic::Ordering::SeqCst);
    let redelivered = api
        .post(
            &format!("/admin/v1/webhooks/dead-letters/{letter}/redeliver"),
            Value::Null,
        )
        .await;
    assert_eq!(redelivered.expect(StatusCode::OK)["state"], "pending");
    eventually("the redelivered event", || {
        receiver.verified.lock().len() == 2
    })
    .await;
    assert_eq!(
        receiver.verified.lock()[1]["data"]["detail"]["role"],
        "user_admin"
    );
    let trail = api.get("/admin/v1/audit?kind=webhook_redelivered").await;
    assert_eq!(
        trail.expect(StatusCode::OK)["events"][0]["detail"]["delivery"],
        json!(letter)
    );
    worker.abort();
}
