//! Webhook subscriptions and the delivery outbox, on every backend: claims under a lease,
//! retries scheduled by the caller, dead letters and redelivery.

use std::sync::Arc;

use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;
use trustgate_store_api::{
    AttemptResult, DeliveryKind, DeliveryState, NewDelivery, NewSubscription, Store, StoreError,
};

test_on_both_backends!(
    subscriptions_round_trip_and_rotate,
    claims_lease_and_complete,
    a_lease_that_ran_out_is_taken_over,
    concurrent_claims_never_share_a_delivery,
    retries_wait_and_dead_letters_redeliver,
    deleting_a_subscription_drops_its_deliveries,
    bad_input_is_refused,
);

const T0: OffsetDateTime = datetime!(2026-12-07 10:00 UTC);

fn subscription<'a>(id: &'a str, kinds: &'a [String]) -> NewSubscription<'a> {
    NewSubscription {
        id,
        url: "https://hooks.example.com/in",
        kinds,
        description: "audit feed",
        enabled: true,
        sealed_secret: b"sealed-secret-1",
    }
}

fn webhook<'a>(id: &'a str, sub: &'a str) -> NewDelivery<'a> {
    NewDelivery {
        id,
        kind: DeliveryKind::Webhook,
        subscription_id: Some(sub),
        target: sub,
        url: "https://hooks.example.com/in",
        payload: r#"{"type":"login"}"#,
    }
}

fn logout(id: &str) -> NewDelivery<'_> {
    NewDelivery {
        id,
        kind: DeliveryKind::BackchannelLogout,
        subscription_id: None,
        target: "client-1",
        url: "https://rp.example.com/logout",
        payload: "eyJ.logout.token",
    }
}

async fn subscriptions_round_trip_and_rotate(db: TestDatabase) {
    let kinds = vec!["login".to_owned(), "logout".to_owned()];
    let created = db
        .store
        .create_subscription(&subscription("W1", &kinds), T0)
        .await
        .expect("create");
    assert_eq!(created.kinds, kinds);
    assert!(created.wants("login") && !created.wants("role_granted"));
    let got = db.store.get_subscription("W1").await.expect("get");
    assert_eq!(got.as_ref(), Some(&created));
    let all: Vec<String> = Vec::new();
    db.store
        .create_subscription(&subscription("W2", &all), T0)
        .await
        .expect("create all-kinds");
    let listed = db.store.list_subscriptions().await.expect("list");
    assert_eq!(listed.len(), 2);
    assert!(listed[1].wants("anything"));
    assert_eq!(listed[0].secrets.len(), 1);

    // Rotation: the old secret signs until the overlap ends, the new one from now on.
    let t1 = T0 + Duration::minutes(1);
    let overlap_end = t1 + Duration::hours(1);
    let rotated = db
        .store
        .rotate_subscription_secret("W1", b"sealed-secret-2", overlap_end, t1)
        .await
        .expect("rotate")
        .expect("exists");
    assert_eq!(rotated.secrets.len(), 2);
    assert_eq!(rotated.secrets[0].sealed, b"sealed-secret-2");
    assert_eq!(rotated.secrets[0].expires_at, None);
    assert_eq!(rotated.secrets[1].expires_at, Some(overlap_end));
    assert_eq!(rotated.signing_secrets(t1).count(), 2);
    assert_eq!(rotated.signing_secrets(overlap_end).count(), 1);
    // A second rotation after the overlap drops the expired secret.
    let t2 = overlap_end + Duration::minutes(1);
    let again = db
        .store
        .rotate_subscription_secret("W1", b"sealed-secret-3", t2, t2)
        .await
        .expect("rotate")
        .expect("exists");
    let sealed: Vec<&[u8]> = again.secrets.iter().map(|s| s.sealed.as_slice()).collect();
    assert_eq!(sealed, [&b"sealed-secret-3"[..], &b"sealed-secret-2"[..]]);
    assert_eq!(again.signing_secrets(t2).count(), 1);
    assert_eq!(
        db.store
            .rotate_subscription_secret("nope", b"x", t2, t2)
            .await
            .expect("rotate"),
        None
    );
    assert!(db.store.delete_subscription("W1").await.expect("delete"));
    assert!(!db.store.delete_subscription("W1").await.expect("delete"));
    assert_eq!(db.store.get_subscription("W1").await.expect("get"), None);
}

async fn claims_lease_and_complete(db: TestDatabase) {
    db.store
        .create_subscription(&subscription("W1", &[]), T0)
        .await
        .expect("create");
    db.store
        .enqueue_deliveries(&[webhook("msg_1", "W1"), logout("msg_2")], T0)
        .await
        .expect("enqueue");
    let lease_end = T0 + Duration::seconds(60);
    let claimed = db
        .store
        .claim_deliveries(10, lease_end, T0)
        .await
        .expect("claim");
    let ids: Vec<&str> = claimed.iter().map(|c| c.delivery.id.as_str()).collect();
    assert_eq!(ids, ["msg_1", "msg_2"]);
    assert_eq!(claimed[1].delivery.kind, DeliveryKind::BackchannelLogout);
    assert_eq!(claimed[1].delivery.payload, "eyJ.logout.token");
    // Leased: nothing more to claim until the lease ends.
    assert!(
        db.store
            .claim_deliveries(
                10,
                lease_end + Duration::seconds(1),
                T0 + Duration::seconds(1)
            )
            .await
            .expect("claim")
            .is_empty()
    );
    let done = db
        .store
        .complete_delivery(
            "msg_1",
            &claimed[0].lease,
            &AttemptResult::Delivered { status: 204 },
            T0 + Duration::seconds(2),
        )
        .await
        .expect("complete");
    assert!(done);
    let stored = db
        .store
        .get_delivery("msg_1")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(stored.state, DeliveryState::Delivered);
    assert_eq!((stored.attempts, stored.last_status), (1, Some(204)));
    // A completed attempt cannot be completed twice.
    assert!(
        !db.store
            .complete_delivery(
                "msg_1",
                &claimed[0].lease,
                &AttemptResult::Delivered { status: 200 },
                T0 + Duration::seconds(3),
            )
            .await
            .expect("complete")
    );
    // Delivered rows are purged once old.
    assert_eq!(
        db.store
            .purge_delivered(T0 + Duration::seconds(2))
            .await
            .expect("purge"),
        0
    );
    assert_eq!(
        db.store
            .purge_delivered(T0 + Duration::seconds(3))
            .await
            .expect("purge"),
        1
    );
}

async fn a_lease_that_ran_out_is_taken_over(db: TestDatabase) {
    db.store
        .enqueue_deliveries(&[logout("msg_1")], T0)
        .await
        .expect("enqueue");
    let first = db
        .store
        .claim_deliveries(10, T0 + Duration::seconds(30), T0)
        .await
        .expect("claim");
    assert_eq!(first.len(), 1);
    // The first worker died; after its lease another takes the delivery over.
    let later = T0 + Duration::seconds(31);
    let second = db
        .store
        .claim_deliveries(10, later + Duration::seconds(30), later)
        .await
        .expect("claim");
    assert_eq!(second.len(), 1);
    assert_ne!(first[0].lease, second[0].lease);
    // The late first worker's result is dropped; the holder's counts.
    let late = AttemptResult::Dead {
        status: None,
        error: "late".into(),
    };
    assert!(
        !db.store
            .complete_delivery("msg_1", &first[0].lease, &late, later)
            .await
            .expect("complete")
    );
    assert!(
        db.store
            .complete_delivery(
                "msg_1",
                &second[0].lease,
                &AttemptResult::Delivered { status: 200 },
                later
            )
            .await
            .expect("complete")
    );
    let stored = db
        .store
        .get_delivery("msg_1")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        (stored.state, stored.attempts),
        (DeliveryState::Delivered, 1)
    );
}

async fn concurrent_claims_never_share_a_delivery(db: TestDatabase) {
    let ids: Vec<String> = (0..40).map(|i| format!("msg_{i:03}")).collect();
    let deliveries: Vec<NewDelivery<'_>> = ids.iter().map(|id| logout(id)).collect();
    db.store
        .enqueue_deliveries(&deliveries, T0)
        .await
        .expect("enqueue");
    let store: Arc<dyn Store> = db.store.clone();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let claimed = store
                        .claim_deliveries(3, T0 + Duration::minutes(5), T0)
                        .await
                        .expect("claim");
                    if claimed.is_empty() {
                        return mine;
                    }
                    mine.extend(claimed.into_iter().map(|c| c.delivery.id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.expect("worker"));
    }
    all.sort();
    assert_eq!(all, ids, "every delivery claimed exactly once");
}

async fn retries_wait_and_dead_letters_redeliver(db: TestDatabase) {
    db.store
        .enqueue_deliveries(&[logout("msg_1")], T0)
        .await
        .expect("enqueue");
    let claimed = db
        .store
        .claim_deliveries(10, T0 + Duration::seconds(30), T0)
        .await
        .expect("claim");
    let retry_at = T0 + Duration::seconds(5);
    assert!(
        db.store
            .complete_delivery(
                "msg_1",
                &claimed[0].lease,
                &AttemptResult::Retry {
                    status: Some(503),
                    error: "HTTP 503".into(),
                    next_attempt_at: retry_at,
                },
                T0 + Duration::seconds(1),
            )
            .await
            .expect("complete")
    );
    let pending = db
        .store
        .get_delivery("msg_1")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(pending.state, DeliveryState::Pending);
    assert_eq!(pending.next_attempt_at, retry_at);
    assert_eq!(pending.last_error.as_deref(), Some("HTTP 503"));
    // Not due before the backoff ends.
    assert!(
        db.store
            .claim_deliveries(10, T0 + Duration::minutes(1), T0 + Duration::seconds(4))
            .await
            .expect("claim")
            .is_empty()
    );
    let again = db
        .store
        .claim_deliveries(10, T0 + Duration::minutes(1), retry_at)
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].delivery.attempts, 1);
    assert!(
        db.store
            .complete_delivery(
                "msg_1",
                &again[0].lease,
                &AttemptResult::Dead {
                    status: None,
                    error: "connection refused".into(),
                },
                retry_at,
            )
            .await
            .expect("complete")
    );
    let page = db
        .store
        .list_deliveries(DeliveryState::Dead, None, 10)
        .await
        .expect("list");
    assert_eq!(page.deliveries.len(), 1);
    assert_eq!(page.deliveries[0].attempts, 2);
    assert_eq!(page.next, None);
    // A dead letter is never claimed, until redelivered.
    assert!(
        db.store
            .claim_deliveries(10, T0 + Duration::hours(2), T0 + Duration::hours(1))
            .await
            .expect("claim")
            .is_empty()
    );
    let now = T0 + Duration::hours(1);
    let back = db
        .store
        .redeliver("msg_1", now)
        .await
        .expect("redeliver")
        .expect("was dead");
    assert_eq!((back.state, back.attempts), (DeliveryState::Pending, 0));
    assert_eq!(db.store.redeliver("msg_1", now).await.expect("again"), None);
    assert_eq!(
        db.store
            .claim_deliveries(10, now + Duration::minutes(1), now)
            .await
            .expect("claim")
            .len(),
        1
    );
}

async fn deleting_a_subscription_drops_its_deliveries(db: TestDatabase) {
    db.store
        .create_subscription(&subscription("W1", &[]), T0)
        .await
        .expect("create");
    db.store
        .enqueue_deliveries(&[webhook("msg_1", "W1")], T0)
        .await
        .expect("enqueue");
    assert!(db.store.delete_subscription("W1").await.expect("delete"));
    assert_eq!(db.store.get_delivery("msg_1").await.expect("get"), None);
    // Events matched before the deletion are skipped, not an error.
    db.store
        .enqueue_deliveries(&[webhook("msg_2", "W1"), logout("msg_3")], T0)
        .await
        .expect("enqueue");
    assert_eq!(db.store.get_delivery("msg_2").await.expect("get"), None);
    assert!(db.store.get_delivery("msg_3").await.expect("get").is_some());
}

async fn bad_input_is_refused(db: TestDatabase) {
    let long_url = format!("https://x.example/{}", "a".repeat(3000));
    let empty = "";
    for bad in [
        NewSubscription {
            id: empty,
            ..subscription("W1", &[])
        },
        NewSubscription {
            url: &long_url,
            ..subscription("W1", &[])
        },
        NewSubscription {
            sealed_secret: b"",
            ..subscription("W1", &[])
        },
    ] {
        let err = db
            .store
            .create_subscription(&bad, T0)
            .await
            .expect_err("invalid");
        assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    }
    let wrong = NewDelivery {
        subscription_id: None,
        ..webhook("msg_1", "W1")
    };
    assert!(matches!(
        db.store.enqueue_deliveries(&[wrong], T0).await,
        Err(StoreError::InvalidInput(_))
    ));
    assert!(matches!(
        db.store
            .claim_deliveries(0, T0 + Duration::seconds(1), T0)
            .await,
        Err(StoreError::InvalidInput(_))
    ));
    assert!(matches!(
        db.store.claim_deliveries(10, T0, T0).await,
        Err(StoreError::InvalidInput(_))
    ));
    assert!(
        db.store
            .create_subscription(&subscription("W1", &[]), T0)
            .await
            .is_ok()
    );
    assert!(matches!(
        db.store
            .create_subscription(&subscription("W1", &[]), T0)
            .await,
        Err(StoreError::Conflict(_))
    ));
}
