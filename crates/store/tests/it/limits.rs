//! Attempt counters and the ledger of spent one-time values, on every backend: counting,
//! expiry, clearing, purging, and the races between replicas (concurrent increments all count,
//! of concurrent spends exactly one wins).

use time::OffsetDateTime;
use time::macros::datetime;
use trustgate_core::TokenDigest;
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;
use trustgate_store_api::{AttemptCount, StoreError};

test_on_both_backends!(
    bad_kinds_and_purposes_are_refused,
    counts_grow_per_key_expire_and_clear,
    expired_counts_start_again_and_are_purged,
    concurrent_increments_each_count,
    a_value_is_spent_once_until_it_expires,
    expired_values_are_never_spendable_and_are_purged,
    concurrent_spends_of_one_value_let_exactly_one_win,
);

const T0: OffsetDateTime = datetime!(2026-11-23 10:00 UTC);

fn at(seconds: i64) -> OffsetDateTime {
    T0 + time::Duration::seconds(seconds)
}

fn digest(s: &str) -> TokenDigest {
    TokenDigest::of(s)
}

async fn bad_kinds_and_purposes_are_refused(db: TestDatabase) {
    let d = digest("x");
    for kind in ["", "Account", "ip addr", "a\0b", &"k".repeat(65)] {
        let err = db
            .store
            .add_attempt_failure(kind, &d, T0, at(60))
            .await
            .expect_err("bad kind");
        assert!(
            matches!(err, StoreError::InvalidInput(_)),
            "{kind:?}: {err:?}"
        );
        let err = db
            .store
            .attempt_count(kind, &d, T0)
            .await
            .expect_err("bad kind");
        assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
        let err = db
            .store
            .spend_nonce(kind, &d, at(60), T0)
            .await
            .expect_err("bad purpose");
        assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    }
    // Nothing was written.
    assert_eq!(
        db.store.purge_attempts(at(1_000_000)).await.expect("purge"),
        0
    );
    assert_eq!(
        db.store.purge_nonces(at(1_000_000)).await.expect("purge"),
        0
    );
}

async fn counts_grow_per_key_expire_and_clear(db: TestDatabase) {
    let alice = digest("alice");
    let bob = digest("bob");
    assert_eq!(
        db.store
            .attempt_count("account", &alice, T0)
            .await
            .expect("count"),
        AttemptCount::default()
    );
    for n in 1..=3u32 {
        let count = db
            .store
            .add_attempt_failure("account", &alice, at(i64::from(n)), at(3600))
            .await
            .expect("add");
        assert_eq!(
            count,
            AttemptCount {
                failures: n,
                last_failure_at: Some(at(i64::from(n)))
            }
        );
    }
    // Another key, and the same digest under another kind, are counted apart.
    assert_eq!(
        db.store
            .add_attempt_failure("account", &bob, at(5), at(3600))
            .await
            .expect("add")
            .failures,
        1
    );
    assert_eq!(
        db.store
            .add_attempt_failure("ip", &alice, at(5), at(3600))
            .await
            .expect("add")
            .failures,
        1
    );
    // A failure reported late (another replica's clock) does not move the last failure back,
    // nor shorten the expiry.
    let count = db
        .store
        .add_attempt_failure("account", &alice, at(2), at(100))
        .await
        .expect("add");
    assert_eq!(count.failures, 4);
    assert_eq!(count.last_failure_at, Some(at(3)));
    assert_eq!(
        db.store
            .attempt_count("account", &alice, at(3599))
            .await
            .expect("count")
            .failures,
        4
    );
    // Expired: reads as zero.
    assert_eq!(
        db.store
            .attempt_count("account", &alice, at(3600))
            .await
            .expect("count"),
        AttemptCount::default()
    );
    // Clearing forgets one key only.
    assert!(
        db.store
            .clear_attempts("account", &alice)
            .await
            .expect("clear")
    );
    assert!(
        !db.store
            .clear_attempts("account", &alice)
            .await
            .expect("clear")
    );
    assert_eq!(
        db.store
            .attempt_count("account", &alice, at(10))
            .await
            .expect("count")
            .failures,
        0
    );
    assert_eq!(
        db.store
            .attempt_count("ip", &alice, at(10))
            .await
            .expect("count")
            .failures,
        1
    );
    assert_eq!(
        db.store
            .attempt_count("account", &bob, at(10))
            .await
            .expect("count")
            .failures,
        1
    );
}

async fn expired_counts_start_again_and_are_purged(db: TestDatabase) {
    let key = digest("198.51.100.7");
    for _ in 0..5 {
        db.store
            .add_attempt_failure("ip", &key, T0, at(60))
            .await
            .expect("add");
    }
    let other = digest("203.0.113.9");
    db.store
        .add_attempt_failure("ip", &other, at(50), at(200))
        .await
        .expect("add");
    // After the expiry the next failure is the first again, with a fresh expiry.
    let count = db
        .store
        .add_attempt_failure("ip", &key, at(60), at(120))
        .await
        .expect("add");
    assert_eq!(
        count,
        AttemptCount {
            failures: 1,
            last_failure_at: Some(at(60))
        }
    );
    assert_eq!(
        db.store
            .attempt_count("ip", &key, at(119))
            .await
            .expect("count")
            .failures,
        1
    );
    // The purge deletes what expired and nothing else.
    assert_eq!(db.store.purge_attempts(at(119)).await.expect("purge"), 0);
    assert_eq!(db.store.purge_attempts(at(120)).await.expect("purge"), 1);
    assert_eq!(
        db.store
            .attempt_count("ip", &other, at(120))
            .await
            .expect("count")
            .failures,
        1
    );
    assert_eq!(db.store.purge_attempts(at(200)).await.expect("purge"), 1);
    assert_eq!(db.store.purge_attempts(at(10_000)).await.expect("purge"), 0);
}

async fn concurrent_increments_each_count(db: TestDatabase) {
    const N: u32 = 24;
    let key = digest("guessed-account");
    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let store = db.store.clone();
            tokio::spawn(async move {
                store
                    .add_attempt_failure("account", &key, T0, at(3600))
                    .await
            })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.expect("task").expect("add").failures);
    }
    seen.sort_unstable();
    // Every increment counted, and each read back its own count.
    assert_eq!(seen, (1..=N).collect::<Vec<_>>());
    assert_eq!(
        db.store
            .attempt_count("account", &key, T0)
            .await
            .expect("count")
            .failures,
        N
    );
}

async fn a_value_is_spent_once_until_it_expires(db: TestDatabase) {
    let challenge = digest("challenge-1");
    assert!(
        db.store
            .spend_nonce("passkey-challenge", &challenge, at(300), T0)
            .await
            .expect("spend")
    );
    assert!(
        !db.store
            .spend_nonce("passkey-challenge", &challenge, at(300), at(1))
            .await
            .expect("spend again")
    );
    // A later spend cannot extend or renew a live record.
    assert!(
        !db.store
            .spend_nonce("passkey-challenge", &challenge, at(900), at(299))
            .await
            .expect("spend again")
    );
    // The same digest for another purpose is another value.
    assert!(
        db.store
            .spend_nonce("dpop-jti", &challenge, at(300), at(1))
            .await
            .expect("other purpose")
    );
    // Once the record has expired the value may be recorded again (callers refuse expired
    // values before they get here; the store does not keep dead rows alive).
    assert!(
        db.store
            .spend_nonce("passkey-challenge", &challenge, at(900), at(300))
            .await
            .expect("after expiry")
    );
    assert!(
        !db.store
            .spend_nonce("passkey-challenge", &challenge, at(900), at(301))
            .await
            .expect("spent again")
    );
}

async fn expired_values_are_never_spendable_and_are_purged(db: TestDatabase) {
    let value = digest("late");
    assert!(
        !db.store
            .spend_nonce("passkey-challenge", &value, at(10), at(10))
            .await
            .expect("expired")
    );
    assert_eq!(db.store.purge_nonces(at(1_000)).await.expect("purge"), 0);
    for (n, expiry) in [(1, 60), (2, 120), (3, 180)] {
        assert!(
            db.store
                .spend_nonce(
                    "passkey-challenge",
                    &digest(&format!("v{n}")),
                    at(expiry),
                    T0
                )
                .await
                .expect("spend")
        );
    }
    assert_eq!(db.store.purge_nonces(at(59)).await.expect("purge"), 0);
    assert_eq!(db.store.purge_nonces(at(120)).await.expect("purge"), 2);
    // The live one is still spent.
    assert!(
        !db.store
            .spend_nonce("passkey-challenge", &digest("v3"), at(180), at(121))
            .await
            .expect("spent")
    );
}

async fn concurrent_spends_of_one_value_let_exactly_one_win(db: TestDatabase) {
    for round in 0..4 {
        let value = digest(&format!("raced-{round}"));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let store = db.store.clone();
                tokio::spawn(async move {
                    store
                        .spend_nonce("passkey-challenge", &value, at(300), T0)
                        .await
                })
            })
            .collect();
        let mut wins = 0;
        for task in tasks {
            if task.await.expect("task").expect("spend") {
                wins += 1;
            }
        }
        assert_eq!(wins, 1, "round {round}");
    }
}
