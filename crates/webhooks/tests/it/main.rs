//! Delivery end to end, over a real store and real sockets: audit events reach a receiver that
//! verifies them with `trustgate_pep::webhooks::Verifier`; a receiver that is down is retried
//! until it comes back; attempts run out into the dead-letter list and redelivery works;
//! back-channel logout tokens go through the same queue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::net::TcpListener;
use trustgate_audit::{AuditKind, Auditor, AuditorConfig, Event, Outcome, RequestContext};
use trustgate_core::{Clock, SealingKey, SystemClock};
use trustgate_pep::webhooks::{SIGNATURE_HEADER, Verifier, WebhookError as VerifyError};
use trustgate_store::testing::TestDatabase;
use trustgate_store_api::{AuditFilter, DeliveryKind, DeliveryState, Store};
use trustgate_webhooks::{SubscriptionSpec, TargetError, WebhookError, Webhooks, WebhooksConfig};

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    /// Status to answer after verifying (the receiver is "down" while it is not 2xx).
    answer: u16,
    /// Attempts that arrived, verified or not.
    attempts: usize,
    /// Verified deliveries: headers and body.
    accepted: Vec<(HeaderMap, Bytes)>,
    /// Error codes of deliveries that failed verification.
    refused: Vec<&'static str>,
}

#[derive(Clone)]
struct Receiver {
    seen: Arc<Mutex<Seen>>,
    verifier: Arc<Mutex<Option<Verifier>>>,
}

impl Receiver {
    fn new(answer: u16) -> Self {
        Self {
            seen: Arc::new(Mutex::new(Seen {
                answer,
                ..Seen::default()
            })),
            verifier: Arc::default(),
        }
    }

    fn answer(&self, status: u16) {
        self.seen.lock().answer = status;
    }

    fn attempts(&self) -> usize {
        self.seen.lock().attempts
    }

    fn accepted(&self) -> Vec<(HeaderMap, Bytes)> {
        self.seen.lock().accepted.clone()
    }

    /// Serves on `addr` (port 0 for any) and returns the bound address.
    async fn serve(&self, addr: SocketAddr) -> SocketAddr {
        let listener = TcpListener::bind(addr).await.expect("bind the receiver");
        let bound = listener.local_addr().expect("address");
        let app = Router::new()
            .route("/hook", post(webhook))
            .route("/logout", post(logout))
            .with_state(self.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        bound
    }
}

/// A receiver as a subscriber would write it: verify, then act.
async fn webhook(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let verdict = r
        .verifier
        .lock()
        .as_ref()
        .map(|v| v.verify(&headers, &body));
    let mut seen = r.seen.lock();
    seen.attempts += 1;
    if seen.answer != 200 {
        return StatusCode::from_u16(seen.answer).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    }
    match verdict {
        Some(Ok(_)) => {
            seen.accepted.push((headers, body));
            StatusCode::NO_CONTENT
        }
        Some(Err(e)) => {
            seen.refused.push(e.code());
            StatusCode::UNAUTHORIZED
        }
        None => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn logout(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut seen = r.seen.lock();
    seen.attempts += 1;
    if seen.answer != 200 {
        return StatusCode::from_u16(seen.answer).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    }
    seen.accepted.push((headers, body));
    StatusCode::OK
}

struct Harness {
    db: TestDatabase,
    auditor: Auditor,
    webhooks: Webhooks,
    worker: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.worker.abort();
    }
}

async fn harness(max_attempts: u32) -> Harness {
    let db = TestDatabase::sqlite().await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let auditor = Auditor::new(
        db.store.clone(),
        Arc::clone(&clock),
        AuditorConfig::default(),
    );
    let webhooks = Webhooks::new(
        db.store.clone(),
        clock,
        SealingKey::generate(),
        WebhooksConfig {
            max_attempts,
            retry_delays_ms: vec![100],
            poll_interval_ms: 20,
            timeout_ms: 2_000,
            ..WebhooksConfig::default()
        },
    );
    assert!(webhooks.tap(&auditor));
    let worker = tokio::spawn(trustgate_webhooks::worker::run(
        webhooks.clone(),
        auditor.clone(),
    ));
    Harness {
        db,
        auditor,
        webhooks,
        worker,
    }
}

/// Polls `done` every 20 ms for at most 10 s.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn event(kind: AuditKind) -> Event {
    Event::new(kind, Outcome::Success)
        .actor("user:admin")
        .detail("role", "auditor")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_event_reaches_a_verifying_receiver_after_it_comes_back() {
    let h = harness(8).await;
    let receiver = Receiver::new(503);
    let addr = receiver.serve("127.0.0.1:0".parse().expect("addr")).await;
    let issued = h
        .webhooks
        .create(&SubscriptionSpec {
            url: format!("http://{addr}/hook"),
            kinds: vec!["role_granted".into()],
            description: "security feed".into(),
        })
        .await
        .expect("subscribe");
    let old_secret = issued.secret.to_text();
    assert!(old_secret.starts_with("whsec_"));
    *receiver.verifier.lock() = Some(Verifier::from_texts([old_secret.as_str()]).expect("secret"));

    let ctx = RequestContext::default();
    // Not subscribed: never delivered.
    h.auditor
        .record(&ctx, event(AuditKind::Login))
        .await
        .expect("record");
    h.auditor
        .record(&ctx, event(AuditKind::RoleGranted))
        .await
        .expect("record");
    // The receiver is down: attempts are retried.
    eventually("two refused attempts", || receiver.attempts() >= 2).await;
    assert!(receiver.accepted().is_empty());
    receiver.answer(200);
    eventually("the delivery", || receiver.accepted().len() == 1).await;

    let (headers, body) = receiver.accepted().remove(0);
    let json: Value = serde_json::from_slice(&body).expect("JSON body");
    assert_eq!(json["type"], "role_granted");
    assert_eq!(json["data"]["actor"], "user:admin");
    assert_eq!(json["data"]["detail"]["role"], "auditor");
    let id = headers["webhook-id"].to_str().expect("id").to_owned();
    // The worker records the delivery after the receiver has answered: wait for the record.
    let mut stored = None;
    for _ in 0..250 {
        let delivery =
            h.db.store
                .get_delivery(&id)
                .await
                .expect("get")
                .expect("in the outbox");
        let done = delivery.state == DeliveryState::Delivered;
        stored = Some(delivery);
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stored = stored.expect("read");
    assert_eq!(stored.state, DeliveryState::Delivered);
    assert!(stored.attempts >= 3, "{stored:?}");
    assert_eq!(stored.last_status, Some(204));

    // The receiver's checks: a tampered body and a stale timestamp fail.
    let verifier = Verifier::from_texts([old_secret.as_str()]).expect("secret");
    let mut tampered = body.to_vec();
    tampered[10] ^= 1;
    assert_eq!(
        verifier.verify(&headers, &tampered),
        Err(VerifyError::BadSignature)
    );
    let sent: i64 = headers["webhook-timestamp"]
        .to_str()
        .expect("ts")
        .parse()
        .expect("number");
    assert_eq!(
        verifier.verify_at(&headers, &body, sent + 301),
        Err(VerifyError::StaleTimestamp)
    );
    assert!(verifier.verify_at(&headers, &body, sent + 299).is_ok());

    // Rotation: during the overlap each message carries both signatures, so a receiver
    // holding either secret accepts it.
    let rotated = h
        .webhooks
        .rotate(&issued.subscription.id, Duration::from_secs(3600))
        .await
        .expect("rotate")
        .expect("exists");
    let new_secret = rotated.secret.to_text();
    assert_ne!(new_secret, old_secret);
    h.auditor
        .record(&ctx, event(AuditKind::RoleGranted))
        .await
        .expect("record");
    eventually("the second delivery", || receiver.accepted().len() == 2).await;
    let (headers, body) = receiver.accepted().remove(1);
    assert_eq!(
        headers[SIGNATURE_HEADER]
            .to_str()
            .expect("signature")
            .split(' ')
            .count(),
        2
    );
    for secret in [&old_secret, &new_secret] {
        let v = Verifier::from_texts([secret.as_str()]).expect("secret");
        assert!(v.verify(&headers, &body).is_ok(), "{secret}");
    }
    assert!(receiver.seen.lock().refused.is_empty());
    // Only the subscribed kind was queued. The receiver answers before the worker records the
    // delivery, so the record is waited for (and a third one would still fail the count).
    let mut delivered = 0;
    for _ in 0..250 {
        delivered =
            h.db.store
                .list_deliveries(DeliveryState::Delivered, None, 100)
                .await
                .expect("list")
                .deliveries
                .len();
        if delivered >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(delivered, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_attempts_dead_letter_and_redelivery_succeeds() {
    let h = harness(3).await;
    // A port with nothing listening: every attempt is refused.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let issued = h
        .webhooks
        .create(&SubscriptionSpec {
            url: format!("http://{closed}/hook"),
            ..SubscriptionSpec::default()
        })
        .await
        .expect("subscribe");
    h.auditor
        .record(&RequestContext::default(), event(AuditKind::RoleRevoked))
        .await
        .expect("record");
    let store: Arc<dyn Store> = h.db.store.clone();
    let mut dead = Vec::new();
    for _ in 0..500 {
        dead = store
            .list_deliveries(DeliveryState::Dead, None, 10)
            .await
            .expect("list")
            .deliveries;
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(dead.len(), 1, "dead-lettered");
    let letter = &dead[0];
    assert_eq!(letter.attempts, 3);
    assert_eq!(letter.kind, DeliveryKind::Webhook);
    assert!(
        letter
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("cannot connect")),
        "{letter:?}"
    );

    // The receiver comes up on that port; redelivery reaches it.
    let receiver = Receiver::new(200);
    *receiver.verifier.lock() =
        Some(Verifier::from_texts([issued.secret.to_text().as_str()]).expect("secret"));
    assert_eq!(receiver.serve(closed).await, closed);
    let back = store
        .redeliver(&letter.id, SystemClock.now())
        .await
        .expect("redeliver")
        .expect("was dead");
    assert_eq!(back.state, DeliveryState::Pending);
    eventually("the redelivery", || receiver.accepted().len() == 1).await;
    let (headers, _) = receiver.accepted().remove(0);
    assert_eq!(
        headers["webhook-id"].to_str().ok(),
        Some(letter.id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backchannel_logout_goes_through_the_queue_and_is_retried() {
    let h = harness(8).await;
    let receiver = Receiver::new(503);
    let addr = receiver.serve("127.0.0.1:0".parse().expect("addr")).await;
    h.webhooks
        .enqueue_backchannel(&[(
            "client-1".to_owned(),
            format!("http://{addr}/logout"),
            "eyJhbGciOiJFUzI1NiJ9.e30.sig".to_owned(),
        )])
        .await
        .expect("enqueue");
    eventually("a refused attempt", || receiver.attempts() >= 1).await;
    receiver.answer(200);
    eventually("the logout token", || receiver.accepted().len() == 1).await;
    let (headers, body) = receiver.accepted().remove(0);
    assert_eq!(&body[..], b"logout_token=eyJhbGciOiJFUzI1NiJ9.e30.sig");
    assert_eq!(
        headers["content-type"].to_str().ok(),
        Some("application/x-www-form-urlencoded")
    );
    assert!(headers.get("webhook-signature").is_none());
    // Every attempt is audited: at least one failure, then the success. The worker records
    // the success after the receiver has answered, so the test waits for it.
    let mut events = Vec::new();
    for _ in 0..250 {
        assert!(h.auditor.flush(Duration::from_secs(5)).await);
        events =
            h.db.store
                .list_audit(
                    &AuditFilter {
                        kind: Some("oauth_backchannel_logout".into()),
                        ..AuditFilter::default()
                    },
                    100,
                )
                .await
                .expect("audit");
        if events.iter().any(|r| r.event.outcome == "success") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let outcomes: Vec<&str> = events.iter().map(|r| r.event.outcome.as_str()).collect();
    assert!(
        outcomes.contains(&"failure") && outcomes.contains(&"success"),
        "{outcomes:?}"
    );
    assert!(
        events
            .iter()
            .all(|r| r.event.detail["client_id"] == "client-1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_urls_and_unknown_kinds_are_refused() {
    let h = harness(3).await;
    for (url, expected) in [
        (
            "http://169.254.169.254/latest/meta-data/",
            TargetError::ForbiddenAddress,
        ),
        ("https://[fe80::1]/hook", TargetError::ForbiddenAddress),
        ("http://hooks.example.com/in", TargetError::Scheme),
        ("hooks.example.com", TargetError::Invalid),
    ] {
        let err = h
            .webhooks
            .create(&SubscriptionSpec {
                url: url.into(),
                ..SubscriptionSpec::default()
            })
            .await
            .expect_err(url);
        assert!(
            matches!(err, WebhookError::Target(ref e) if *e == expected),
            "{url}: {err:?}"
        );
    }
    let err = h
        .webhooks
        .create(&SubscriptionSpec {
            url: "https://hooks.example.com/in".into(),
            kinds: vec!["no_such_kind".into()],
            ..SubscriptionSpec::default()
        })
        .await
        .expect_err("unknown kind");
    assert!(matches!(err, WebhookError::UnknownKind(_)), "{err:?}");
    assert!(
        h.db.store
            .list_subscriptions()
            .await
            .expect("list")
            .is_empty()
    );
}
