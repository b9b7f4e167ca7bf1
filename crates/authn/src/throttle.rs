//! Slowing down guessing: growing delays after failed attempts (OWASP ASVS 2.2.1), not a hard
//! lockout that would let anyone lock a victim out by failing on purpose.
//!
//! Three parts, so each can be replaced on its own:
//! - [`ThrottlePolicy`] is pure arithmetic: given how many recent failures a key has and when the
//!   last one was, may it try now, or how long must it wait ([`RetryAfter`])? The first few
//!   failures are free, then the delay doubles (1 s, 2 s, 4 s, ...) up to a cap; failures older
//!   than the policy's window (an hour by default, always at least twice the cap) are forgotten.
//! - [`FailureCounter`] stores failure counts per [`ThrottleKey`] (an account, a client IP, a
//!   session entering device codes, ...). [`StoreFailureCounter`] keeps them in the database
//!   ([`AttemptStore`]), so every replica sees the same counts: this is what the server uses.
//!   [`ThrottleTracker`] is an in-memory implementation (bounded, forgets stale entries, evicts
//!   the least recently failing keys when full) for tests and single-process embedding.
//! - [`LoginThrottle`] puts them together with a [`Clock`]: it checks both the account and the
//!   client IP before a credential is verified, records failures against both, and on success
//!   clears the account's count (not the IP's, so one valid account cannot launder an IP that is
//!   guessing at others). [`DeviceCodeThrottle`] does the same for device user codes typed on
//!   the `/device` page (RFC 8628 §5.1), per signed-in session and per client IP, with its own
//!   policies and its own counts.
//!
//! The login throttle applies to every credential a person types: passwords, TOTP codes and
//! recovery codes. A counter that cannot be read or written refuses the attempt
//! ([`ThrottleError::Counter`]): never "allow unlimited".

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use time::OffsetDateTime;
use trustgate_core::{Clock, TokenDigest};
use trustgate_store_api::AttemptStore;

/// How long to wait before the next attempt is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many failed attempts; retry in {} s", self.retry_after_secs())]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds, rounded up, for an HTTP `Retry-After` header (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0);
        secs.max(1)
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        "too_many_attempts"
    }
}

/// Growing-delay rules for one kind of key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    free_failures: u32,
    base_delay: Duration,
    max_delay: Duration,
    window: Duration,
}

impl ThrottlePolicy {
    /// Per account: 5 free failures, then 1 s doubling to at most 15 min; failures are forgotten
    /// an hour after the last one. A guesser at the cap gets four tries an hour.
    pub const ACCOUNT: ThrottlePolicy = ThrottlePolicy {
        free_failures: 5,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(15 * 60),
        window: Duration::from_secs(60 * 60),
    };

    /// Per client IP (many people can share one address): 20 free failures, then 1 s doubling to
    /// at most 15 min; forgotten an hour after the last one.
    pub const CLIENT_IP: ThrottlePolicy = ThrottlePolicy {
        free_failures: 20,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(15 * 60),
        window: Duration::from_secs(60 * 60),
    };

    /// Per signed-in session typing device user codes: the account policy (5 free failures for
    /// typos, then 1 s doubling to at most 15 min, forgotten an hour after the last one). A user
    /// code has 20^8 ≈ 2^34.6 values and lives 10 minutes, so a session at the cap gets about
    /// four guesses an hour.
    pub const DEVICE_SESSION: ThrottlePolicy = ThrottlePolicy::ACCOUNT;

    /// Per client IP typing device user codes, whatever the session (an attacker can open
    /// many): the sign-in policy per IP, counted under its own key.
    pub const DEVICE_CLIENT_IP: ThrottlePolicy = ThrottlePolicy::CLIENT_IP;

    /// A custom policy. `base_delay` is capped at `max_delay`, and `window` is raised to at
    /// least twice `max_delay`: a count forgotten when its wait runs out would hand a guesser at
    /// the cap a fresh free allowance after every wait.
    pub fn new(
        free_failures: u32,
        base_delay: Duration,
        max_delay: Duration,
        window: Duration,
    ) -> Self {
        Self {
            free_failures,
            base_delay: base_delay.min(max_delay),
            max_delay,
            window: window.max(max_delay.saturating_mul(2)),
        }
    }

    /// Failures allowed without delay.
    pub fn free_failures(&self) -> u32 {
        self.free_failures
    }

    /// Longest delay imposed.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// Time after the last failure at which the count is forgotten.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The wait imposed after `failures` recent failures: zero while within the free allowance,
    /// then `base_delay * 2^(failures - free - 1)`, capped at `max_delay`.
    pub fn delay(&self, failures: u32) -> Duration {
        let Some(over) = failures.checked_sub(self.free_failures) else {
            return Duration::ZERO;
        };
        let Some(exponent) = over.checked_sub(1) else {
            return Duration::ZERO;
        };
        let factor = 2u32.checked_pow(exponent).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// `failures` as they count at `now`: zero once the window after the last failure is over.
    pub fn effective_failures(
        &self,
        now: OffsetDateTime,
        failures: u32,
        last_failure: Option<OffsetDateTime>,
    ) -> u32 {
        match last_failure {
            Some(last) if elapsed(last, now) < self.window => failures,
            _ => 0,
        }
    }

    /// May a key with `failures` recent failures, the last at `last_failure`, try at `now`?
    pub fn check(
        &self,
        now: OffsetDateTime,
        failures: u32,
        last_failure: Option<OffsetDateTime>,
    ) -> Result<(), RetryAfter> {
        let failures = self.effective_failures(now, failures, last_failure);
        let delay = self.delay(failures);
        let Some(last) = last_failure else {
            return Ok(());
        };
        let waited = elapsed(last, now);
        if waited >= delay {
            Ok(())
        } else {
            Err(RetryAfter(delay - waited))
        }
    }
}

/// Time from `earlier` to `later`; zero if the clock went backwards.
fn elapsed(earlier: OffsetDateTime, later: OffsetDateTime) -> Duration {
    Duration::try_from(later - earlier).unwrap_or(Duration::ZERO)
}

/// What failures are counted against. Each variant is its own namespace: a client IP's login
/// failures and its device-code failures are separate counts under separate policies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ThrottleKey {
    /// An account, by a stable identifier (the normalised login name as typed, so unknown
    /// accounts are throttled exactly like known ones).
    Account(String),
    /// A client network signing in: build it with [`ThrottleKey::client_ip`].
    ClientIp(IpAddr),
    /// A signed-in session (its public id) typing device user codes.
    DeviceSession(String),
    /// A client network typing device user codes: build it with
    /// [`ThrottleKey::device_client_ip`].
    DeviceClientIp(IpAddr),
}

impl ThrottleKey {
    /// The key for a client address signing in (an IPv6 address counts as its /64: `trustgate_core::net::client_network`).
    pub fn client_ip(ip: IpAddr) -> Self {
        ThrottleKey::ClientIp(trustgate_core::net::client_network(ip))
    }

    /// The key for a client address typing device user codes.
    pub fn device_client_ip(ip: IpAddr) -> Self {
        ThrottleKey::DeviceClientIp(trustgate_core::net::client_network(ip))
    }

    /// The namespace of the key (`account`, `ip`, `device-session`, `device-ip`): the `kind`
    /// under which an [`AttemptStore`] counts it.
    pub fn kind(&self) -> &'static str {
        match self {
            ThrottleKey::Account(_) => "account",
            ThrottleKey::ClientIp(_) => "ip",
            ThrottleKey::DeviceSession(_) => "device-session",
            ThrottleKey::DeviceClientIp(_) => "device-ip",
        }
    }

    /// The SHA-256 of what is counted (the name, address or session id without the kind):
    /// what an [`AttemptStore`] keeps instead of the value.
    pub fn digest(&self) -> TokenDigest {
        match self {
            ThrottleKey::Account(name) | ThrottleKey::DeviceSession(name) => TokenDigest::of(name),
            ThrottleKey::ClientIp(ip) | ThrottleKey::DeviceClientIp(ip) => {
                TokenDigest::of(&ip.to_string())
            }
        }
    }
}

impl fmt::Display for ThrottleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThrottleKey::Account(name) => write!(f, "account:{name}"),
            ThrottleKey::ClientIp(ip) => write!(f, "ip:{ip}"),
            ThrottleKey::DeviceSession(id) => write!(f, "device-session:{id}"),
            ThrottleKey::DeviceClientIp(ip) => write!(f, "device-ip:{ip}"),
        }
    }
}

/// Recent failures of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailureRecord {
    /// Failures since the count was last forgotten or cleared.
    pub failures: u32,
    /// When the most recent of them happened.
    pub last_failure: Option<OffsetDateTime>,
}

/// The failure store could not be read or written. Callers fail closed: refuse the attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failure counter unavailable: {0}")]
pub struct CounterError(pub String);

/// Storage of failure counts. [`StoreFailureCounter`] lets several replicas share counts
/// through the database; the in-memory [`ThrottleTracker`] serves one process.
///
/// Every method receives `window`: a count whose last failure is at least `window` before `now`
/// is stale and must be treated as zero (and may be deleted).
#[async_trait]
pub trait FailureCounter: Send + Sync + fmt::Debug {
    /// The current record of `key` (zero if none or stale).
    async fn load(
        &self,
        key: &ThrottleKey,
        now: OffsetDateTime,
        window: Duration,
    ) -> Result<FailureRecord, CounterError>;

    /// Counts one failure of `key` at `now` and returns the updated record.
    async fn record_failure(
        &self,
        key: &ThrottleKey,
        now: OffsetDateTime,
        window: Duration,
    ) -> Result<FailureRecord, CounterError>;

    /// Forgets the failures of `key`.
    async fn clear(&self, key: &ThrottleKey) -> Result<(), CounterError>;
}

/// [`FailureCounter`] over the database ([`AttemptStore`]): every replica reads and counts the
/// same rows, so N replicas allow what one allows. Keys are stored as their kind and the
/// SHA-256 of their value ([`ThrottleKey::digest`]); a count is kept until `window` after its
/// last failure and then purged by the store's periodic maintenance.
#[derive(Clone)]
pub struct StoreFailureCounter {
    store: Arc<dyn AttemptStore>,
}

impl fmt::Debug for StoreFailureCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreFailureCounter")
            .finish_non_exhaustive()
    }
}

impl StoreFailureCounter {
    /// Counts kept in `store`.
    pub fn new(store: Arc<dyn AttemptStore>) -> Self {
        Self { store }
    }
}

/// `at + d`, saturating far in the future.
fn after(at: OffsetDateTime, d: Duration) -> OffsetDateTime {
    time::Duration::try_from(d)
        .ok()
        .and_then(|d| at.checked_add(d))
        .unwrap_or(OffsetDateTime::new_utc(
            time::Date::MAX,
            time::Time::MIDNIGHT,
        ))
}

fn counter_error(err: trustgate_store_api::StoreError) -> CounterError {
    CounterError(err.to_string())
}

#[async_trait]
impl FailureCounter for StoreFailureCounter {
    async fn load(
        &self,
        key: &ThrottleKey,
        now: OffsetDateTime,
        _window: Duration,
    ) -> Result<FailureRecord, CounterError> {
        // The store judges staleness by the expiry written with the last failure; the window
        // given now is applied again by the policy (`effective_failures`), so a shorter window
        // than the one recorded still forgets on time.
        let count = self
            .store
            .attempt_count(key.kind(), &key.digest(), now)
            .await
            .map_err(counter_error)?;
        Ok(FailureRecord {
            failures: count.failures,
            last_failure: count.last_failure_at,
        })
    }

    async fn record_failure(
        &self,
        key: &ThrottleKey,
        now: OffsetDateTime,
        window: Duration,
    ) -> Result<FailureRecord, CounterError> {
        let count = self
            .store
            .add_attempt_failure(key.kind(), &key.digest(), now, after(now, window))
            .await
            .map_err(counter_error)?;
        Ok(FailureRecord {
            failures: count.failures,
            last_failure: count.last_failure_at,
        })
    }

    async fn clear(&self, key: &ThrottleKey) -> Result<(), CounterError> {
        self.store
            .clear_attempts(key.kind(), &key.digest())
            .await
            .map_err(counter_error)?;
        Ok(())
    }
}

/// In-memory [`FailureCounter`] for a single-process server: a bounded map; stale entries are
/// dropped, and when the map is full the entries with the oldest last failure are evicted first
/// (a key being attacked right now is the most recent, so it is the last to go).
#[derive(Debug)]
pub struct ThrottleTracker {
    entries: Mutex<HashMap<ThrottleKey, Entry>>,
    capacity: usize,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: OffsetDateTime,
    window: Duration,
}

impl Entry {
    fn is_stale(&self, now: OffsetDateTime, window: Duration) -> bool {
        elapsed(self.last_failure, now) >= window
    }
}

impl Default for ThrottleTracker {
    /// 100,000 keys (a few MiB).
    fn default() -> Self {
        Self::new(100_000)
    }
}

impl ThrottleTracker {
    /// A tracker holding at most `capacity` keys (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Keys currently held.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.entries.lock().is_empty()
    }

    /// Sync form of [`FailureCounter::load`].
    pub fn load_now(
        &self,
        key: &ThrottleKey,
        now: OffsetDateTime,
        window: Duration,
    ) -> FailureRecord {
        let mut entries = self.entries.lock();
        match entries.get(key) {
            Some(entry) if entry.is_stale(now, window) => {
                entries.remove(key);
                FailureRecord::default()
            }
            Some(entry) => FailureRecord {
                failures: entry.failures,
                last_failure: Some(entry.last_failure),
            },
            None => FailureRecord::default(),
        }
    }

    /// Sync form of [`FailureCounter::record_failure`].
    pub fn record_failure_now(
        &self,
        key: &ThrottleKey,
        now: OffsetDateTime,
        window: Duration,
    ) -> FailureRecord {
        let mut entries = self.entries.lock();
        if !entries.contains_key(key) && entries.len() >= self.capacity {
            Self::make_room(&mut entries, self.capacity, now);
        }
        let entry = entries.entry(key.clone()).or_insert(Entry {
            failures: 0,
            last_failure: now,
            window,
        });
        if entry.is_stale(now, window) {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = entry.last_failure.max(now);
        entry.window = window;
        FailureRecord {
            failures: entry.failures,
            last_failure: Some(entry.last_failure),
        }
    }

    /// Sync form of [`FailureCounter::clear`].
    pub fn clear_now(&self, key: &ThrottleKey) {
        self.entries.lock().remove(key);
    }

    /// Drops stale entries; if that is not enough, evicts the oldest tenth (amortised, so a flood
    /// of new keys does not scan the whole map on every insert).
    fn make_room(entries: &mut HashMap<ThrottleKey, Entry>, capacity: usize, now: OffsetDateTime) {
        entries.retain(|_, entry| !entry.is_stale(now, entry.window));
        if entries.len() < capacity {
            return;
        }
        let mut by_age: Vec<(OffsetDateTime, ThrottleKey)> = entries
            .iter()
            .map(|(key, entry)| (entry.last_failure, key.clone()))
            .collect();
        by_age.sort_unstable_by_key(|(last, _)| *last);
        let evict = (capacity / 10).max(1).max(entries.len() + 1 - capacity);
        for (_, key) in by_age.into_iter().take(evict) {
            entries.remove(&key);
        }
    }
}

#[async_trait]
impl FailureCounter for ThrottleTracker {
    async fn load(
        &self,
        key: &ThrottleKey,
        now: OffsetDateTime,
        window: Duration,
    ) -> Result<FailureRecord, CounterError> {
        Ok(self.load_now(key, now, window))
    }

    async fn record_failure(
        &self,
        key: &ThrottleKey,
        now: OffsetDateTime,
        window: Duration,
    ) -> Result<FailureRecord, CounterError> {
        Ok(self.record_failure_now(key, now, window))
    }

    async fn clear(&self, key: &ThrottleKey) -> Result<(), CounterError> {
        self.clear_now(key);
        Ok(())
    }
}

/// Why [`LoginThrottle::check`] refused an attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThrottleError {
    /// Too many recent failures; the longer of the account's and the IP's waits.
    #[error(transparent)]
    RetryAfter(#[from] RetryAfter),
    /// The failure store is unavailable; refuse (fail closed).
    #[error(transparent)]
    Counter(#[from] CounterError),
}

/// What both throttles are: a key of their own (an account, a session) and the client's
/// network, each with its own policy, over one [`FailureCounter`] and clock.
#[derive(Debug, Clone)]
struct PairedThrottle {
    own: ThrottlePolicy,
    client_ip: ThrottlePolicy,
    counter: Arc<dyn FailureCounter>,
    clock: Arc<dyn Clock>,
}

impl PairedThrottle {
    fn keys(
        &self,
        own: Option<ThrottleKey>,
        client_ip: Option<ThrottleKey>,
    ) -> impl Iterator<Item = (ThrottleKey, &ThrottlePolicy)> {
        let own = own.map(|k| (k, &self.own));
        let ip = client_ip.map(|k| (k, &self.client_ip));
        own.into_iter().chain(ip)
    }

    /// Whether every key may try now: the longest wait among those that must wait.
    async fn check(
        &self,
        own: Option<ThrottleKey>,
        client_ip: Option<ThrottleKey>,
    ) -> Result<(), ThrottleError> {
        let now = self.clock.now();
        let mut wait: Option<RetryAfter> = None;
        for (key, policy) in self.keys(own, client_ip) {
            let record = self.counter.load(&key, now, policy.window).await?;
            if let Err(retry) = policy.check(now, record.failures, record.last_failure) {
                wait = Some(wait.map_or(retry, |w| RetryAfter(w.0.max(retry.0))));
            }
        }
        match wait {
            Some(retry) => Err(ThrottleError::RetryAfter(retry)),
            None => Ok(()),
        }
    }

    /// Counts one failure now against every key.
    async fn record_failure(
        &self,
        own: Option<ThrottleKey>,
        client_ip: Option<ThrottleKey>,
    ) -> Result<(), CounterError> {
        let now = self.clock.now();
        for (key, policy) in self.keys(own, client_ip) {
            self.counter
                .record_failure(&key, now, policy.window)
                .await?;
        }
        Ok(())
    }
}

/// The throttle in front of every typed credential: account and client IP, each with its own
/// policy, over any [`FailureCounter`].
#[derive(Debug, Clone)]
pub struct LoginThrottle(PairedThrottle);

impl LoginThrottle {
    /// A throttle with the given policies and store.
    pub fn new(
        account: ThrottlePolicy,
        client_ip: ThrottlePolicy,
        counter: Arc<dyn FailureCounter>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self(PairedThrottle {
            own: account,
            client_ip,
            counter,
            clock,
        })
    }

    /// [`ThrottlePolicy::ACCOUNT`] and [`ThrottlePolicy::CLIENT_IP`] over the database, shared
    /// by every replica.
    pub fn over_store(store: Arc<dyn AttemptStore>, clock: Arc<dyn Clock>) -> Self {
        Self::new(
            ThrottlePolicy::ACCOUNT,
            ThrottlePolicy::CLIENT_IP,
            Arc::new(StoreFailureCounter::new(store)),
            clock,
        )
    }

    /// Before verifying a credential: may this account, from this address, try now?
    pub async fn check(
        &self,
        account: Option<&str>,
        client_ip: Option<IpAddr>,
    ) -> Result<(), ThrottleError> {
        self.0
            .check(
                account.map(|a| ThrottleKey::Account(a.to_owned())),
                client_ip.map(ThrottleKey::client_ip),
            )
            .await
    }

    /// After a failed attempt: counts it against the account and the address.
    pub async fn record_failure(
        &self,
        account: Option<&str>,
        client_ip: Option<IpAddr>,
    ) -> Result<(), CounterError> {
        self.0
            .record_failure(
                account.map(|a| ThrottleKey::Account(a.to_owned())),
                client_ip.map(ThrottleKey::client_ip),
            )
            .await
    }

    /// After a successful login: forgets the account's failures. The address keeps its count.
    pub async fn record_success(&self, account: &str) -> Result<(), CounterError> {
        self.0
            .counter
            .clear(&ThrottleKey::Account(account.to_owned()))
            .await
    }
}

/// The throttle in front of device user codes typed on the `/device` page (RFC 8628 §5.1): per
/// signed-in session and per client IP, each with its own policy, over any [`FailureCounter`].
/// Checked before a code is looked up, so a correct code during a wait is refused like a wrong
/// one (no oracle). A correct code clears nothing: a guesser holding one valid code of their own
/// must not reset their count with it.
#[derive(Debug, Clone)]
pub struct DeviceCodeThrottle(PairedThrottle);

impl DeviceCodeThrottle {
    /// A throttle with the given policies and store.
    pub fn new(
        session: ThrottlePolicy,
        client_ip: ThrottlePolicy,
        counter: Arc<dyn FailureCounter>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self(PairedThrottle {
            own: session,
            client_ip,
            counter,
            clock,
        })
    }

    /// [`ThrottlePolicy::DEVICE_SESSION`] and [`ThrottlePolicy::DEVICE_CLIENT_IP`] over the
    /// database, shared by every replica.
    pub fn over_store(store: Arc<dyn AttemptStore>, clock: Arc<dyn Clock>) -> Self {
        Self::new(
            ThrottlePolicy::DEVICE_SESSION,
            ThrottlePolicy::DEVICE_CLIENT_IP,
            Arc::new(StoreFailureCounter::new(store)),
            clock,
        )
    }

    /// Before a typed user code is looked up: may this session, from this address, try now?
    pub async fn check(
        &self,
        session_id: &str,
        client_ip: Option<IpAddr>,
    ) -> Result<(), ThrottleError> {
        self.0
            .check(
                Some(ThrottleKey::DeviceSession(session_id.to_owned())),
                client_ip.map(ThrottleKey::device_client_ip),
            )
            .await
    }

    /// After a typed user code matched nothing: counts it against the session and the address.
    pub async fn record_failure(
        &self,
        session_id: &str,
        client_ip: Option<IpAddr>,
    ) -> Result<(), CounterError> {
        self.0
            .record_failure(
                Some(ThrottleKey::DeviceSession(session_id.to_owned())),
                client_ip.map(ThrottleKey::device_client_ip),
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced_and_digested() {
        let ip: IpAddr = "2001:db8:1:2::7".parse().expect("ip");
        let login = ThrottleKey::client_ip(ip);
        let device = ThrottleKey::device_client_ip(ip);
        assert_eq!(login.kind(), "ip");
        assert_eq!(device.kind(), "device-ip");
        // The same network under two kinds: same digest, counted apart by kind.
        assert_eq!(login.digest(), device.digest());
        assert_eq!(login.digest(), TokenDigest::of("2001:db8:1:2::"));
        assert_eq!(
            ThrottleKey::DeviceSession("s1".into()).digest(),
            TokenDigest::of("s1")
        );
        assert_eq!(ThrottleKey::Account("a".into()).kind(), "account");
        assert_eq!(
            ThrottleKey::DeviceSession("s".into()).kind(),
            "device-session"
        );
    }

    #[test]
    fn delay_sequence() {
        let p = ThrottlePolicy::ACCOUNT;
        let secs: Vec<u64> = (0..=16).map(|n| p.delay(n).as_secs()).collect();
        assert_eq!(
            secs,
            [0, 0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900]
        );
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(900));
        assert_eq!(ThrottlePolicy::CLIENT_IP.delay(20), Duration::ZERO);
        assert_eq!(ThrottlePolicy::CLIENT_IP.delay(21), Duration::from_secs(1));
    }

    #[test]
    fn window_never_shorter_than_cap() {
        let p = ThrottlePolicy::new(
            1,
            Duration::from_secs(10),
            Duration::from_secs(60),
            Duration::from_secs(5),
        );
        assert_eq!(p.window(), Duration::from_secs(120));
        let p = ThrottlePolicy::new(
            1,
            Duration::from_secs(10),
            Duration::from_secs(60),
            Duration::from_secs(500),
        );
        assert_eq!(p.window(), Duration::from_secs(500));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(
            RetryAfter(Duration::from_millis(1500)).retry_after_secs(),
            2
        );
        assert_eq!(RetryAfter(Duration::from_millis(1)).retry_after_secs(), 1);
        assert_eq!(RetryAfter(Duration::from_secs(3)).retry_after_secs(), 3);
    }
}
