//! Growing delays after failures: grows, caps, decays, resets on success; the database-backed
//! counts shared by replicas; device user codes per session and address; a counter that cannot
//! count refuses. Time moves only by a ManualClock.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use time::macros::datetime;
use trustgate_authn::throttle::{
    DeviceCodeThrottle, FailureCounter, LoginThrottle, RetryAfter, StoreFailureCounter,
    ThrottleError, ThrottleKey, ThrottlePolicy, ThrottleTracker,
};
use trustgate_core::{Clock, ManualClock};
use trustgate_store::testing::TestDatabase;
use trustgate_store_api::StoreError;

const ALICE: &str = "alice";
const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

fn setup() -> (ManualClock, LoginThrottle, Arc<ThrottleTracker>) {
    let clock = ManualClock::new(datetime!(2026-03-01 12:00 UTC));
    let tracker = Arc::new(ThrottleTracker::new(1000));
    let throttle = LoginThrottle::new(
        ThrottlePolicy::ACCOUNT,
        ThrottlePolicy::CLIENT_IP,
        tracker.clone(),
        Arc::new(clock.clone()),
    );
    (clock, throttle, tracker)
}

fn secs(s: u64) -> time::Duration {
    time::Duration::seconds(i64::try_from(s).expect("small"))
}

fn wait_of(result: Result<(), ThrottleError>) -> Option<Duration> {
    match result {
        Ok(()) => None,
        Err(ThrottleError::RetryAfter(RetryAfter(d))) => Some(d),
        Err(other) => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn delay_grows_and_is_capped() {
    let (clock, throttle, _) = setup();
    // Five free failures.
    for _ in 0..5 {
        assert_eq!(wait_of(throttle.check(Some(ALICE), None).await), None);
        throttle
            .record_failure(Some(ALICE), None)
            .await
            .expect("record");
    }
    assert_eq!(wait_of(throttle.check(Some(ALICE), None).await), None);
    // Then 1 s, 2 s, 4 s, ... each enforced, up to 15 minutes.
    let mut expected = 1u64;
    let mut seen = Vec::new();
    for _ in 0..14 {
        throttle
            .record_failure(Some(ALICE), None)
            .await
            .expect("record");
        let wait = wait_of(throttle.check(Some(ALICE), None).await).expect("must wait");
        assert_eq!(wait, Duration::from_secs(expected.min(900)));
        seen.push(wait.as_secs());
        // Just before the wait is over: still refused, with the remainder.
        clock.advance(secs(wait.as_secs()) - time::Duration::milliseconds(500));
        let rest = wait_of(throttle.check(Some(ALICE), None).await).expect("still waiting");
        assert_eq!(rest, Duration::from_millis(500));
        assert_eq!(RetryAfter(rest).retry_after_secs(), 1);
        clock.advance(time::Duration::milliseconds(500));
        assert_eq!(wait_of(throttle.check(Some(ALICE), None).await), None);
        expected *= 2;
    }
    assert_eq!(
        seen,
        [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900, 900]
    );
    // At the cap the count is still remembered when the wait ends: no fresh free allowance.
    throttle
        .record_failure(Some(ALICE), None)
        .await
        .expect("record");
    assert_eq!(
        wait_of(throttle.check(Some(ALICE), None).await),
        Some(Duration::from_secs(900))
    );
}

#[tokio::test]
async fn failures_decay_after_the_window() {
    let (clock, throttle, tracker) = setup();
    for _ in 0..8 {
        throttle
            .record_failure(Some(ALICE), None)
            .await
            .expect("record");
    }
    assert_eq!(
        wait_of(throttle.check(Some(ALICE), None).await),
        Some(Duration::from_secs(4))
    );
    // 59 minutes later: the wait is long over but the count is still remembered.
    clock.advance(time::Duration::minutes(59));
    assert_eq!(wait_of(throttle.check(Some(ALICE), None).await), None);
    let key = ThrottleKey::Account(ALICE.into());
    let window = ThrottlePolicy::ACCOUNT.window();
    assert_eq!(
        tracker
            .load(&key, clock.now(), window)
            .await
            .expect("load")
            .failures,
        8
    );
    // An hour after the last failure: forgotten, the next failure is free again.
    clock.advance(time::Duration::minutes(1));
    assert_eq!(
        tracker
            .load(&key, clock.now(), window)
            .await
            .expect("load")
            .failures,
        0
    );
    throttle
        .record_failure(Some(ALICE), None)
        .await
        .expect("record");
    assert_eq!(
        tracker
            .load(&key, clock.now(), window)
            .await
            .expect("load")
            .failures,
        1
    );
    assert_eq!(wait_of(throttle.check(Some(ALICE), None).await), None);
}

#[tokio::test]
async fn success_resets_the_account_but_not_the_ip() {
    let (_clock, throttle, tracker) = setup();
    for _ in 0..25 {
        throttle
            .record_failure(Some(ALICE), Some(IP))
            .await
            .expect("record");
    }
    assert!(wait_of(throttle.check(Some(ALICE), None).await).is_some());
    assert!(wait_of(throttle.check(None, Some(IP)).await).is_some());

    throttle.record_success(ALICE).await.expect("reset");
    assert_eq!(wait_of(throttle.check(Some(ALICE), None).await), None);
    // The address that was guessing stays throttled, for every account.
    assert!(wait_of(throttle.check(Some(ALICE), Some(IP)).await).is_some());
    assert!(wait_of(throttle.check(Some("bob"), Some(IP)).await).is_some());
    assert_eq!(tracker.len(), 1);
}

#[tokio::test]
async fn ip_threshold_spans_accounts() {
    let (_clock, throttle, _) = setup();
    // Twenty failures on twenty different accounts from one address: each account is fine,
    // and the address has used its free allowance.
    for i in 0..20 {
        let account = format!("user{i}");
        assert_eq!(
            wait_of(throttle.check(Some(&account), Some(IP)).await),
            None
        );
        throttle
            .record_failure(Some(&account), Some(IP))
            .await
            .expect("record");
    }
    assert_eq!(
        wait_of(throttle.check(Some("user20"), Some(IP)).await),
        None
    );
    throttle
        .record_failure(Some("user20"), Some(IP))
        .await
        .expect("record");
    assert_eq!(
        wait_of(throttle.check(Some("user21"), Some(IP)).await),
        Some(Duration::from_secs(1))
    );
    // Another address is unaffected.
    let other = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
    assert_eq!(
        wait_of(throttle.check(Some("user21"), Some(other)).await),
        None
    );
}

#[tokio::test]
async fn longer_of_account_and_ip_waits_wins() {
    let (clock, throttle, _) = setup();
    for _ in 0..10 {
        throttle
            .record_failure(Some(ALICE), None)
            .await
            .expect("record");
    }
    for _ in 0..22 {
        throttle
            .record_failure(None, Some(IP))
            .await
            .expect("record");
    }
    // Account: 10 failures -> 16 s; IP: 22 failures -> 2 s.
    assert_eq!(
        wait_of(throttle.check(Some(ALICE), Some(IP)).await),
        Some(Duration::from_secs(16))
    );
    clock.advance(secs(2));
    assert_eq!(wait_of(throttle.check(None, Some(IP)).await), None);
    assert_eq!(
        wait_of(throttle.check(Some(ALICE), Some(IP)).await),
        Some(Duration::from_secs(14))
    );
}

#[tokio::test]
async fn clock_going_backwards_does_not_panic_or_unlock() {
    let (clock, throttle, _) = setup();
    for _ in 0..7 {
        throttle
            .record_failure(Some(ALICE), None)
            .await
            .expect("record");
    }
    clock.advance(time::Duration::hours(-3));
    assert_eq!(
        wait_of(throttle.check(Some(ALICE), None).await),
        Some(Duration::from_secs(2))
    );
}

#[tokio::test]
async fn ipv6_counts_per_slash_64() {
    let (_clock, throttle, _) = setup();
    // An attacker rotating through addresses of one /64 is one client.
    for i in 0..21u16 {
        let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().expect("ipv6");
        throttle
            .record_failure(None, Some(ip))
            .await
            .expect("record");
    }
    let sibling: IpAddr = "2001:db8:1:2:ffff::1".parse().expect("ipv6");
    assert_eq!(
        wait_of(throttle.check(None, Some(sibling)).await),
        Some(Duration::from_secs(1))
    );
    let neighbour: IpAddr = "2001:db8:1:3::1".parse().expect("ipv6");
    assert_eq!(wait_of(throttle.check(None, Some(neighbour)).await), None);
    // IPv4-mapped IPv6 is the IPv4 address.
    let mapped: IpAddr = "::ffff:198.51.100.7".parse().expect("mapped");
    assert_eq!(ThrottleKey::client_ip(mapped), ThrottleKey::client_ip(IP));
}

#[test]
fn policy_check_is_pure() {
    let p = ThrottlePolicy::ACCOUNT;
    let now = datetime!(2026-03-01 12:00 UTC);
    assert_eq!(p.check(now, 0, None), Ok(()));
    assert_eq!(p.check(now, 5, Some(now)), Ok(()));
    assert_eq!(
        p.check(now, 6, Some(now)),
        Err(RetryAfter(Duration::from_secs(1)))
    );
    assert_eq!(p.check(now + secs(1), 6, Some(now)), Ok(()));
    assert_eq!(
        p.check(now, 1000, Some(now)),
        Err(RetryAfter(Duration::from_secs(900)))
    );
    // Past the window the count no longer applies.
    assert_eq!(p.window(), Duration::from_secs(3600));
    assert_eq!(p.check(now + secs(900), 1000, Some(now)), Ok(()));
    assert_eq!(p.effective_failures(now + secs(3600), 1000, Some(now)), 0);
    assert_eq!(
        p.effective_failures(now + secs(3599), 1000, Some(now)),
        1000
    );
    assert_eq!(
        RetryAfter(Duration::from_secs(1)).code(),
        "too_many_attempts"
    );
}

#[test]
fn tracker_is_bounded_and_keeps_the_most_recent_keys() {
    let tracker = ThrottleTracker::new(10);
    let start = datetime!(2026-03-01 12:00 UTC);
    let window = Duration::from_secs(900);
    let victim = ThrottleKey::Account("victim".into());
    for i in 0..100u8 {
        let now = start + secs(u64::from(i));
        tracker.record_failure_now(
            &ThrottleKey::ClientIp(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i))),
            now,
            window,
        );
        // The victim is attacked throughout, so it stays among the most recent.
        tracker.record_failure_now(&victim, now, window);
        assert!(tracker.len() <= 10, "len {} after {i}", tracker.len());
    }
    let now = start + secs(100);
    assert_eq!(tracker.load_now(&victim, now, window).failures, 100);
    let newest = ThrottleKey::ClientIp(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 99)));
    assert_eq!(tracker.load_now(&newest, now, window).failures, 1);
    let oldest = ThrottleKey::ClientIp(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)));
    assert_eq!(tracker.load_now(&oldest, now, window).failures, 0);
}

#[test]
fn stale_entries_are_dropped_first() {
    let tracker = ThrottleTracker::new(3);
    let t0 = datetime!(2026-03-01 12:00 UTC);
    let window = Duration::from_secs(60);
    let key = |n: u8| ThrottleKey::Account(format!("a{n}"));
    for n in 0..3 {
        tracker.record_failure_now(&key(n), t0, window);
    }
    // Two minutes later the three are stale; a new key takes their place.
    tracker.record_failure_now(&key(3), t0 + secs(120), window);
    assert_eq!(tracker.len(), 1);
    assert!(!tracker.is_empty());
}

// The database-backed counter: what the server uses, shared by every replica.

trustgate_store::test_on_both_backends!(
    store_counter_grows_decays_and_clears_like_the_policy_says,
    two_replicas_share_one_count,
    device_codes_count_per_session_and_per_address,
    a_counter_that_cannot_count_refuses,
);

fn store_throttle(
    store: Arc<dyn trustgate_store_api::AttemptStore>,
    clock: &ManualClock,
) -> LoginThrottle {
    LoginThrottle::over_store(store, Arc::new(clock.clone()))
}

async fn store_counter_grows_decays_and_clears_like_the_policy_says(db: TestDatabase) {
    let clock = ManualClock::new(datetime!(2026-03-01 12:00 UTC));
    let throttle = store_throttle(db.store.clone(), &clock);
    for n in 0..7 {
        // Six failures are free of delay (the delay starts after the sixth).
        let expected = (n == 6).then_some(Duration::from_secs(1));
        assert_eq!(
            wait_of(throttle.check(Some(ALICE), Some(IP)).await),
            expected
        );
        throttle
            .record_failure(Some(ALICE), Some(IP))
            .await
            .expect("record");
    }
    // Seven failures on the account: 2 s (the address has 20 free).
    assert_eq!(
        wait_of(throttle.check(Some(ALICE), Some(IP)).await),
        Some(Duration::from_secs(2))
    );
    // Only digests are stored: the database holds neither the name nor the address.
    let counter = StoreFailureCounter::new(db.store.clone());
    let key = ThrottleKey::Account(ALICE.into());
    let window = ThrottlePolicy::ACCOUNT.window();
    assert_eq!(
        counter
            .load(&key, clock.now(), window)
            .await
            .expect("load")
            .failures,
        7
    );
    // Just under an hour later the count is still there; an hour after the last failure it is
    // gone, and the purge removes the rows.
    clock.advance(time::Duration::minutes(59));
    assert_eq!(
        counter
            .load(&key, clock.now(), window)
            .await
            .expect("load")
            .failures,
        7
    );
    clock.advance(time::Duration::minutes(1));
    assert_eq!(
        counter
            .load(&key, clock.now(), window)
            .await
            .expect("load")
            .failures,
        0
    );
    assert_eq!(
        db.store.purge_attempts(clock.now()).await.expect("purge"),
        2,
        "the account's and the address's rows"
    );
    // A success clears the account and keeps the address.
    for _ in 0..3 {
        throttle
            .record_failure(Some(ALICE), Some(IP))
            .await
            .expect("record");
    }
    throttle.record_success(ALICE).await.expect("success");
    assert_eq!(
        counter
            .load(&key, clock.now(), window)
            .await
            .expect("load")
            .failures,
        0
    );
    assert_eq!(
        counter
            .load(&ThrottleKey::client_ip(IP), clock.now(), window)
            .await
            .expect("load")
            .failures,
        3
    );
}

async fn two_replicas_share_one_count(db: TestDatabase) {
    let clock = ManualClock::new(datetime!(2026-03-01 12:00 UTC));
    let a = store_throttle(db.store.clone(), &clock);
    let b = store_throttle(db.replica_store().await, &clock);
    // Failures alternate between the replicas; the sixth failure starts the delay on both,
    // exactly as on one replica.
    for n in 0..6 {
        let (this, other) = if n % 2 == 0 { (&a, &b) } else { (&b, &a) };
        assert_eq!(wait_of(this.check(Some(ALICE), None).await), None, "{n}");
        this.record_failure(Some(ALICE), None)
            .await
            .expect("record");
        if n < 5 {
            assert_eq!(wait_of(other.check(Some(ALICE), None).await), None, "{n}");
        }
    }
    assert_eq!(
        wait_of(a.check(Some(ALICE), None).await),
        Some(Duration::from_secs(1))
    );
    assert_eq!(
        wait_of(b.check(Some(ALICE), None).await),
        Some(Duration::from_secs(1))
    );
    // A success on one replica clears the account on both.
    clock.advance(time::Duration::seconds(1));
    b.record_success(ALICE).await.expect("success");
    a.record_failure(Some(ALICE), None).await.expect("record");
    assert_eq!(wait_of(b.check(Some(ALICE), None).await), None);
}

async fn device_codes_count_per_session_and_per_address(db: TestDatabase) {
    let clock = ManualClock::new(datetime!(2026-03-01 12:00 UTC));
    let throttle = DeviceCodeThrottle::over_store(db.store.clone(), Arc::new(clock.clone()));
    let login = store_throttle(db.store.clone(), &clock);
    // Five free failures per session, then 1 s.
    for _ in 0..5 {
        assert_eq!(wait_of(throttle.check("session-1", Some(IP)).await), None);
        throttle
            .record_failure("session-1", Some(IP))
            .await
            .expect("record");
    }
    assert_eq!(wait_of(throttle.check("session-1", None).await), None);
    throttle
        .record_failure("session-1", None)
        .await
        .expect("record");
    assert_eq!(
        wait_of(throttle.check("session-1", None).await),
        Some(Duration::from_secs(1))
    );
    // Another session from elsewhere is not affected, and the address's device count is not
    // its login count.
    assert_eq!(wait_of(throttle.check("session-2", None).await), None);
    assert_eq!(wait_of(login.check(None, Some(IP)).await), None);
    // New sessions from one address share the address's 20 free failures (five used above).
    for i in 0..16 {
        let session = format!("fresh-{i}");
        assert_eq!(
            wait_of(throttle.check(&session, Some(IP)).await),
            None,
            "{i}"
        );
        throttle
            .record_failure(&session, Some(IP))
            .await
            .expect("record");
    }
    assert_eq!(
        wait_of(throttle.check("fresh-new", Some(IP)).await),
        Some(Duration::from_secs(1))
    );
    assert_eq!(wait_of(login.check(None, Some(IP)).await), None);
}

/// An attempt store whose database is down.
struct Down;

#[async_trait::async_trait]
impl trustgate_store_api::AttemptStore for Down {
    async fn attempt_count(
        &self,
        _: &str,
        _: &trustgate_core::TokenDigest,
        _: time::OffsetDateTime,
    ) -> Result<trustgate_store_api::AttemptCount, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }

    async fn add_attempt_failure(
        &self,
        _: &str,
        _: &trustgate_core::TokenDigest,
        _: time::OffsetDateTime,
        _: time::OffsetDateTime,
    ) -> Result<trustgate_store_api::AttemptCount, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }

    async fn clear_attempts(
        &self,
        _: &str,
        _: &trustgate_core::TokenDigest,
    ) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }

    async fn purge_attempts(&self, _: time::OffsetDateTime) -> Result<u64, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
}

async fn a_counter_that_cannot_count_refuses(db: TestDatabase) {
    let clock = ManualClock::new(datetime!(2026-03-01 12:00 UTC));
    let down = store_throttle(Arc::new(Down), &clock);
    assert!(matches!(
        down.check(Some(ALICE), Some(IP)).await,
        Err(ThrottleError::Counter(_))
    ));
    assert!(down.record_failure(Some(ALICE), Some(IP)).await.is_err());
    let device = DeviceCodeThrottle::over_store(Arc::new(Down), Arc::new(clock.clone()));
    assert!(matches!(
        device.check("session-1", Some(IP)).await,
        Err(ThrottleError::Counter(_))
    ));
    // A login through the accounts service is refused as unavailable (503) before the password
    // is looked at, even the right one.
    let accounts = trustgate_authn::accounts::Accounts::with_throttle(
        db.store.clone(),
        trustgate_audit::Auditor::new(
            db.store.clone(),
            Arc::new(clock.clone()),
            trustgate_audit::AuditorConfig::default(),
        ),
        Arc::new(clock.clone()),
        trustgate_core::SealingKey::generate(),
        trustgate_authn::accounts::AccountsConfig::default(),
        down,
    );
    accounts
        .create_user(
            trustgate_authn::accounts::CreateUser {
                username: "alice".into(),
                email: "alice@example.com".into(),
                password: Some(trustgate_core::Secret::new("correct horse battery staple")),
                ..Default::default()
            },
            "service:test",
            &trustgate_authn::accounts::RequestContext::default(),
        )
        .await
        .expect("user");
    let err = accounts
        .login_password(
            "alice",
            trustgate_core::Secret::new("correct horse battery staple"),
            &trustgate_authn::accounts::RequestContext::default(),
        )
        .await
        .expect_err("refused");
    assert_eq!((err.code(), err.http_status()), ("unavailable", 503));
}
