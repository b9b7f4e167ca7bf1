//! The write policy over the real backends: recorded kinds are in the trail when `record`
//! returns and its failure is the caller's error; streamed kinds arrive in batches, never make
//! the caller wait, and are dropped (not queued without bound) when the writer falls behind.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, json};
use trustgate_audit::{
    AuditKind, Auditor, AuditorConfig, Decision, Event, Outcome, RequestContext, Verdict,
};
use trustgate_core::{Clock, ManualClock};
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;
use trustgate_store_api::{AuditFilter, AuditStore, StoreError};

test_on_both_backends!(recorded_events_are_written_before_record_returns);

fn clock() -> Arc<dyn Clock> {
    Arc::new(ManualClock::new(
        time::macros::datetime!(2026-12-06 10:00 UTC),
    ))
}

fn ctx() -> RequestContext {
    RequestContext::new(
        Some([192, 0, 2, 7].into()),
        Some("tests/1.0"),
        Some("req-1"),
    )
}

async fn trail(store: &dyn AuditStore) -> Vec<trustgate_store_api::AuditEvent> {
    store
        .list_audit(&AuditFilter::default(), 1000)
        .await
        .expect("list audit")
        .into_iter()
        .map(|r| r.event)
        .collect()
}

async fn recorded_events_are_written_before_record_returns(db: TestDatabase) {
    let auditor = Auditor::new(db.store.clone(), clock(), AuditorConfig::default());
    auditor
        .record(
            &ctx(),
            Event::new(AuditKind::Login, Outcome::Success)
                .user("u1")
                .actor("user:u1")
                .detail("factor", "pwd"),
        )
        .await
        .expect("recorded");
    let events = trail(&*db.store).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event.kind, "login");
    assert_eq!(event.chain, trustgate_store_api::AuditChain::Recorded);
    assert_eq!(event.outcome, "success");
    assert_eq!(event.user_id.as_deref(), Some("u1"));
    assert_eq!(event.actor.as_deref(), Some("user:u1"));
    assert_eq!(event.ip.as_deref(), Some("192.0.2.7"));
    assert_eq!(event.user_agent.as_deref(), Some("tests/1.0"));
    assert_eq!(event.request_id.as_deref(), Some("req-1"));
    assert_eq!(event.detail.get("factor"), Some(&json!("pwd")));
}

#[tokio::test]
async fn a_recorded_event_that_cannot_be_written_fails_the_call() {
    let db = TestDatabase::sqlite().await;
    let auditor = Auditor::new(db.store.clone(), clock(), AuditorConfig::default());
    db.store.close().await;
    let err = auditor
        .record(&ctx(), Event::new(AuditKind::UserCreated, Outcome::Success))
        .await
        .expect_err("the database is closed");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn decisions_are_streamed_in_batches() {
    let db = TestDatabase::sqlite().await;
    let auditor = Auditor::new(
        db.store.clone(),
        clock(),
        AuditorConfig {
            queue_capacity: 1000,
            max_batch: 7,
        },
    );
    for i in 0..50 {
        let mut detail = Map::new();
        detail.insert("store".into(), json!("S"));
        auditor.decision(
            &ctx(),
            Decision {
                principal: "service:pep".into(),
                action: "check",
                resource: format!("document:{i}"),
                verdict: if i % 2 == 0 {
                    Verdict::Allow
                } else {
                    Verdict::Deny
                },
                detail,
            },
        );
    }
    auditor.decision(
        &ctx(),
        Decision {
            principal: "service:pep".into(),
            action: "check",
            resource: "document:x".into(),
            verdict: Verdict::Error("resolution_too_complex".into()),
            detail: Map::new(),
        },
    );
    // A streamed kind through `record` is queued too.
    auditor
        .record(
            &ctx(),
            Event::new(AuditKind::OAuthTokenIssued, Outcome::Success).detail("client_id", "app"),
        )
        .await
        .expect("queued");
    assert!(auditor.flush(Duration::from_secs(10)).await);
    let events = trail(&*db.store).await;
    assert_eq!(events.len(), 52);
    let decisions: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "authorization_decision")
        .collect();
    assert_eq!(decisions.len(), 51);
    assert_eq!(
        decisions.iter().filter(|e| e.outcome == "success").count(),
        25
    );
    assert_eq!(
        decisions.iter().filter(|e| e.outcome == "denied").count(),
        25
    );
    let error = decisions
        .iter()
        .find(|e| e.outcome == "failure")
        .expect("the error decision");
    assert_eq!(error.detail["decision"], json!("error"));
    assert_eq!(error.resource.as_deref(), Some("document:x"));
    assert_eq!(error.chain, trustgate_store_api::AuditChain::Streamed);
    assert_eq!(error.detail["reason"], json!("resolution_too_complex"));
    assert_eq!(error.actor.as_deref(), Some("service:pep"));
    assert_eq!(error.request_id.as_deref(), Some("req-1"));
    let allowed = decisions
        .iter()
        .find(|e| e.outcome == "success")
        .expect("an allowed decision");
    assert_eq!(allowed.detail["action"], json!("check"));
    assert_eq!(allowed.detail["decision"], json!("allow"));
    assert_eq!(allowed.detail["store"], json!("S"));
}

// A current-thread runtime: the writer cannot run while the test enqueues without yielding, so
// everything beyond the queue's capacity must be dropped rather than wait or grow the queue.
#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_drops_decisions_instead_of_waiting() {
    let db = TestDatabase::sqlite().await;
    let auditor = Auditor::new(
        db.store.clone(),
        clock(),
        AuditorConfig {
            queue_capacity: 3,
            max_batch: 100,
        },
    );
    for i in 0..10 {
        auditor.decision(
            &ctx(),
            Decision {
                principal: "service:pep".into(),
                action: "check",
                resource: format!("document:{i}"),
                verdict: Verdict::Allow,
                detail: Map::new(),
            },
        );
    }
    assert!(auditor.flush(Duration::from_secs(10)).await);
    let events = trail(&*db.store).await;
    assert_eq!(events.len(), 3, "only what fitted the queue: {events:?}");
}

#[tokio::test]
async fn a_batch_the_store_refuses_is_dropped_and_the_writer_lives_on() {
    let db = TestDatabase::sqlite().await;
    let auditor = Auditor::new(db.store.clone(), clock(), AuditorConfig::default());
    auditor.decision(
        &ctx(),
        Decision {
            principal: "service:pep".into(),
            action: "check",
            resource: "document:1".into(),
            verdict: Verdict::Allow,
            detail: Map::new(),
        },
    );
    db.store.close().await;
    // The writer survives the failure and still answers flushes.
    assert!(auditor.flush(Duration::from_secs(10)).await);
    assert!(auditor.flush(Duration::from_secs(10)).await);
}

/// Collects what the tap is offered.
#[derive(Debug, Default)]
struct Collect(parking_lot::Mutex<Vec<String>>);

impl trustgate_audit::AuditTap for Collect {
    fn offer(&self, event: &trustgate_store_api::AuditEvent) {
        self.0.lock().push(event.kind.clone());
    }
}

#[tokio::test]
async fn the_tap_is_offered_exactly_what_the_trail_holds() {
    let db = TestDatabase::sqlite().await;
    let auditor = Auditor::new(db.store.clone(), clock(), AuditorConfig::default());
    let tap = Arc::new(Collect::default());
    assert!(auditor.set_tap(tap.clone()));
    assert!(
        !auditor.set_tap(Arc::new(Collect::default())),
        "only the first tap"
    );
    auditor
        .record(&ctx(), Event::new(AuditKind::Login, Outcome::Success))
        .await
        .expect("recorded");
    // A recorded event is offered as soon as it is appended.
    assert_eq!(*tap.0.lock(), ["login"]);
    auditor.decision(
        &ctx(),
        Decision {
            principal: "user:u1".into(),
            action: "check",
            resource: "document:1".into(),
            verdict: Verdict::Allow,
            detail: Map::new(),
        },
    );
    // A streamed one once its batch is written.
    assert!(auditor.flush(Duration::from_secs(5)).await);
    assert_eq!(*tap.0.lock(), ["login", "authorization_decision"]);
    // An event the trail refuses is not offered.
    db.store.close().await;
    assert!(
        auditor
            .record(&ctx(), Event::new(AuditKind::Logout, Outcome::Success))
            .await
            .is_err()
    );
    assert_eq!(tap.0.lock().len(), 2);
}
