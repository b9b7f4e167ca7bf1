//! Human accounts as a service: users, password login with an optional second factor, server-side
//! sessions, step-up, self-service credential changes and the audit trail of every credential
//! event. The pages (`/login`, `/account`), the admin API and the CLI all go through
//! [`Accounts`]; none of them touches the stores or the crypto directly.
//!
//! # What it keeps (OWASP ASVS V2 authentication, V3 sessions)
//! - **Passwords** are argon2id on the bounded [`PasswordHasher`] pool; a full pool is
//!   [`AccountError::Busy`] (503), never an unbounded queue. An unknown login runs
//!   [`PasswordHasher::dummy_verify`], and a disabled account is verified like an active one, so
//!   unknown user, wrong password and disabled user are the same [`AccountError::InvalidCredentials`]
//!   at the same cost. A hash with outdated parameters is replaced after a successful login.
//! - **Guessing** is slowed by [`LoginThrottle`] (checked *before* any hashing, per account and
//!   per client IP, growing delays rather than a lockout); a success clears the account's count.
//!   Second-factor codes and re-authentication are throttled the same way, per user. Device user
//!   codes typed by a signed-in user are throttled per session and per client IP
//!   ([`Accounts::check_device_code_entry`]). The counts live in the database
//!   ([`AttemptStore`](trustgate_store_api::AttemptStore)), so every replica enforces the same
//!   limit; a count that cannot be read refuses the attempt (503 `unavailable`), never allows it.
//! - **Sessions** get a fresh 256-bit id at every login and every step-up (the store's
//!   [`rotate_session`](trustgate_store_api::SessionStore::rotate_session): the old id stops working
//!   at once); only the id's SHA-256 is stored. Each has an idle expiry (moved on use) and an
//!   absolute one, plus `auth_time`, `amr` and `acr` for OIDC.
//! - **Second factor**: TOTP with the secret sealed at rest ([`SealingKey`], purpose
//!   `"totp-secret"`), enrollment confirmed by a code, ±1 step, each step usable once (the
//!   store's [`advance_totp_step`](trustgate_store_api::MfaStore::advance_totp_step)); ten
//!   single-use recovery codes stored as digests.
//!   A login that passed the password but owes a second factor is a *pending login*: a token
//!   sealed for `"pending-login"` holding the user id, the methods so far and an expiry, so any
//!   replica can finish it.
//! - **Step-up**: changing the password or the second factor needs an authentication within
//!   [`AccountsConfig::step_up_window`] ([`Accounts::is_recent`]), else
//!   [`AccountError::StepUpRequired`]; [`Accounts::reauthenticate`] refreshes it under a new
//!   session id.
//! - **Audit**: every credential event is appended with actor, user, ip, user agent, request id
//!   and outcome; never a password, code, token or secret.
//!
//! - **Passkeys** (WebAuthn, [`crate::webauthn`]): registered from the account page after a
//!   step-up, used for passwordless sign-in with discoverable credentials, removable; challenges
//!   are sealed (purpose `"passkey-challenge"`), short-lived and single use: spent in the
//!   database's ledger of one-time values ([`NonceStore`](trustgate_store_api::NonceStore)), so
//!   a challenge completed on one replica is refused on every other.
//!
//! Amr values (RFC 8176): `pwd` for the password, `otp` for a TOTP or recovery code, `hwk`/`swk`
//! plus `user` for a passkey with user verification, `mfa` when two factors were used (a
//! verified passkey counts as two); `acr` is `"1"` for one factor and `"2"` for two.

mod device_codes;
mod login;
mod mfa;
mod passkeys;
mod sessions;
mod users;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use time::OffsetDateTime;
use trustgate_audit::{Auditor, Event};
use trustgate_core::{Clock, SealingKey, Secret};
use trustgate_store_api::{AccountStore, Outage, StoreError};

pub use trustgate_store_api::{
    AuditEvent, AuditFilter, AuditRecord, Session, User, UserPage, UserStatus, UserUpdate,
};

use crate::password::{
    HashError, PasswordHasher, PasswordHasherConfig, PasswordPolicy, PasswordRejection,
};
use crate::throttle::{DeviceCodeThrottle, LoginThrottle, RetryAfter, ThrottleError};
use passkeys::ChallengeLedger;

pub use passkeys::{
    MAX_PASSKEY_NAME_CHARS, PASSKEY_CHALLENGE_TTL, PURPOSE_PASSKEY_CHALLENGE, PasskeyAssertion,
    PasskeyCeremony, PasskeyRegistration,
};
pub use trustgate_store_api::Passkey;

/// Purpose of sealed TOTP secrets.
pub const PURPOSE_TOTP_SECRET: &str = "totp-secret";
/// Purpose of sealed pending-login tokens.
pub const PURPOSE_PENDING_LOGIN: &str = "pending-login";

/// Longest login name or email accepted as input (RFC 5321's path limit).
pub const MAX_LOGIN_CHARS: usize = 254;
/// Most users or audit events one listing returns.
pub const MAX_PAGE: u32 = 1000;

/// Settings of [`Accounts`].
#[derive(Debug, Clone)]
pub struct AccountsConfig {
    /// A session unused for this long expires (default 30 min).
    pub session_idle: Duration,
    /// A session expires this long after login whatever happens (default 12 h).
    pub session_absolute: Duration,
    /// Password and second-factor changes need an authentication this recent (default 10 min).
    pub step_up_window: Duration,
    /// Time to enter the second factor after the password (default 5 min).
    pub pending_login_ttl: Duration,
    /// The issuer shown in authenticator apps (default `"trustgate"`).
    pub totp_issuer: String,
    /// Rules for new passwords.
    pub password_policy: PasswordPolicy,
    /// argon2id parameters and pool limits.
    pub hasher: PasswordHasherConfig,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            session_idle: Duration::from_secs(30 * 60),
            session_absolute: Duration::from_secs(12 * 60 * 60),
            step_up_window: Duration::from_secs(10 * 60),
            pending_login_ttl: Duration::from_secs(5 * 60),
            totp_issuer: "trustgate".into(),
            password_policy: PasswordPolicy::default(),
            hasher: PasswordHasherConfig::default(),
        }
    }
}

pub use trustgate_audit::RequestContext;

/// A user to create.
#[derive(Debug, Clone, Default)]
pub struct CreateUser {
    /// Login name: 1 to 64 characters, letters, digits, `.`, `_`, `-`; no `@`.
    pub username: String,
    /// Email address.
    pub email: String,
    /// Display name.
    pub name: Option<String>,
    /// BCP 47 locale.
    pub locale: Option<String>,
    /// Custom attributes.
    pub attributes: Map<String, Value>,
    /// An initial password (checked against the policy), or none (the user cannot log in with a
    /// password until one is set).
    pub password: Option<Secret>,
}

/// What a correct password leads to.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // returned once per login; the agreed API has no Box
pub enum LoginStep {
    /// Logged in.
    Complete(IssuedSession),
    /// The password was right; a second factor is owed. Pass `pending` back with it to
    /// [`Accounts::login_second_factor`].
    SecondFactorRequired {
        /// The sealed pending-login token (base64url).
        pending: Secret,
        /// The factors the user can use.
        methods: Vec<FactorKind>,
    },
}

/// A kind of second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FactorKind {
    /// A code from an authenticator app.
    Totp,
    /// One of the single-use recovery codes.
    RecoveryCode,
}

impl FactorKind {
    /// Stable name (`totp`, `recovery_code`).
    pub fn as_str(self) -> &'static str {
        match self {
            FactorKind::Totp => "totp",
            FactorKind::RecoveryCode => "recovery_code",
        }
    }
}

/// A presented second factor.
#[derive(Clone, PartialEq, Eq)]
pub enum SecondFactor {
    /// A six-digit TOTP code.
    Totp(String),
    /// A recovery code.
    RecoveryCode(String),
}

impl fmt::Debug for SecondFactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecondFactor::Totp(_) => f.write_str("Totp([redacted])"),
            SecondFactor::RecoveryCode(_) => f.write_str("RecoveryCode([redacted])"),
        }
    }
}

/// A new session: set `token` as the cookie value.
#[derive(Debug, Clone)]
pub struct IssuedSession {
    /// The session id to give the browser (never stored).
    pub token: Secret,
    /// The stored session.
    pub session: Session,
    /// Its user.
    pub user: User,
}

/// The session a request presented, found live.
#[derive(Debug, Clone)]
pub struct CurrentSession {
    /// The presented session id.
    pub token: Secret,
    /// The stored session (idle expiry already moved).
    pub session: Session,
    /// Its user (active).
    pub user: User,
}

/// A TOTP enrollment to show once: QR code and the secret for manual entry.
#[derive(Debug, Clone)]
pub struct TotpEnrollment {
    /// The secret in base32.
    pub secret_base32: Secret,
    /// The `otpauth://` URI.
    pub provisioning_uri: Secret,
    /// The URI as a base64 PNG QR code.
    pub qr_png_base64: Secret,
}

/// Why an account operation failed. [`code`](Self::code) is the stable machine code.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Unknown user, wrong password or disabled user: deliberately indistinguishable.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// Too many recent failures; retry after the given time.
    #[error(transparent)]
    Throttled(RetryAfter),
    /// The password hashing pool is full; retry shortly.
    #[error("too many sign-ins in progress; retry shortly")]
    Busy,
    /// A new password breaks the policy.
    #[error(transparent)]
    PasswordRejected(PasswordRejection),
    /// Wrong, malformed or replayed code, or an expired or tampered pending login.
    #[error("the code is invalid or expired")]
    InvalidSecondFactor,
    /// The session is not recent enough for this change; authenticate again.
    #[error("please confirm your password to continue")]
    StepUpRequired,
    /// No such user, session or credential.
    #[error("not found")]
    NotFound,
    /// A username or email already taken, or a credential already present.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Malformed input.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The database failed.
    #[error(transparent)]
    Store(StoreError),
    /// Something that should not happen (hashing failed, throttle state unreachable). Details
    /// are logged, not returned.
    #[error("internal error")]
    Internal(String),
}

impl AccountError {
    /// Stable machine-readable code for API errors and page messages.
    pub fn code(&self) -> &'static str {
        match self {
            AccountError::InvalidCredentials => "invalid_credentials",
            AccountError::Throttled(_) => "too_many_attempts",
            AccountError::Busy => "busy",
            AccountError::PasswordRejected(r) => r.code(),
            AccountError::InvalidSecondFactor => "invalid_second_factor",
            AccountError::StepUpRequired => "step_up_required",
            AccountError::NotFound => "not_found",
            AccountError::Conflict(_) => "conflict",
            AccountError::InvalidInput(_) => "invalid_input",
            AccountError::Store(e) => e.outage().map_or("internal", Outage::code),
            AccountError::Internal(_) => "internal",
        }
    }

    /// The HTTP status this error is answered with (a number, so this crate stays
    /// transport-free).
    pub fn http_status(&self) -> u16 {
        match self {
            AccountError::InvalidCredentials | AccountError::InvalidSecondFactor => 401,
            AccountError::Throttled(_) => 429,
            AccountError::Busy => 503,
            AccountError::Store(e) => e.outage().map_or(500, Outage::http_status),
            AccountError::PasswordRejected(_) | AccountError::InvalidInput(_) => 400,
            AccountError::StepUpRequired => 403,
            AccountError::NotFound => 404,
            AccountError::Conflict(_) => 409,
            AccountError::Internal(_) => 500,
        }
    }

    /// For [`Throttled`](Self::Throttled): the wait, for a `Retry-After` header.
    pub fn retry_after(&self) -> Option<RetryAfter> {
        match self {
            AccountError::Throttled(r) => Some(*r),
            _ => None,
        }
    }
}

impl From<StoreError> for AccountError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(kind) => AccountError::Conflict(kind.to_string()),
            StoreError::InvalidInput(m) => AccountError::InvalidInput(m),
            StoreError::NotFound(_) => AccountError::NotFound,
            other => AccountError::Store(other),
        }
    }
}

impl From<HashError> for AccountError {
    fn from(err: HashError) -> Self {
        match err {
            HashError::Busy => AccountError::Busy,
            HashError::PasswordTooLong => {
                AccountError::PasswordRejected(PasswordRejection::TooLong {
                    max: PasswordPolicy::HIGHEST_MAX,
                })
            }
            other => {
                tracing::error!(error = %other, code = other.code(), "password hashing failed");
                AccountError::Internal(other.to_string())
            }
        }
    }
}

impl From<ThrottleError> for AccountError {
    /// A counter that cannot be read or written refuses the attempt as unavailable (503): a
    /// throttle that fails open would give a guesser unlimited tries while the database is down.
    fn from(err: ThrottleError) -> Self {
        match err {
            ThrottleError::RetryAfter(r) => AccountError::Throttled(r),
            ThrottleError::Counter(e) => {
                tracing::error!(error = %e, "throttle counts unavailable; refusing");
                AccountError::Store(StoreError::Unavailable(Box::new(e)))
            }
        }
    }
}

impl From<crate::throttle::CounterError> for AccountError {
    fn from(err: crate::throttle::CounterError) -> Self {
        AccountError::from(ThrottleError::Counter(err))
    }
}

/// The human-authentication service. Cheap to clone (shared state behind an `Arc`).
#[derive(Clone)]
pub struct Accounts {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn AccountStore>,
    auditor: Auditor,
    clock: Arc<dyn Clock>,
    key: SealingKey,
    config: AccountsConfig,
    hasher: PasswordHasher,
    throttle: LoginThrottle,
    device_codes: DeviceCodeThrottle,
    challenges: ChallengeLedger,
}

impl fmt::Debug for Accounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accounts")
            .field("config", &self.inner.config)
            .field("hasher", &self.inner.hasher)
            .finish_non_exhaustive()
    }
}

impl Accounts {
    /// The service over `store`, auditing through `auditor`, sealing with `key`, with a
    /// [`LoginThrottle`] at the default policies whose counts are kept in `store` (shared by
    /// every replica on the same database).
    pub fn new(
        store: Arc<dyn AccountStore>,
        auditor: Auditor,
        clock: Arc<dyn Clock>,
        key: SealingKey,
        config: AccountsConfig,
    ) -> Self {
        let throttle = LoginThrottle::over_store(store.clone(), Arc::clone(&clock));
        Self::with_throttle(store, auditor, clock, key, config, throttle)
    }

    /// As [`new`](Self::new), with an explicit throttle (custom policies, or a counter shared by
    /// several replicas).
    pub fn with_throttle(
        store: Arc<dyn AccountStore>,
        auditor: Auditor,
        clock: Arc<dyn Clock>,
        key: SealingKey,
        config: AccountsConfig,
        throttle: LoginThrottle,
    ) -> Self {
        let hasher = PasswordHasher::new(config.hasher);
        let device_codes = DeviceCodeThrottle::over_store(store.clone(), Arc::clone(&clock));
        let challenges = ChallengeLedger::new(store.clone());
        Self {
            inner: Arc::new(Inner {
                store,
                auditor,
                clock,
                key,
                config,
                hasher,
                throttle,
                device_codes,
                challenges,
            }),
        }
    }

    /// The settings in effect.
    pub fn config(&self) -> &AccountsConfig {
        &self.inner.config
    }

    /// Password operations running or waiting (for metrics).
    pub fn hashing_in_flight(&self) -> usize {
        self.inner.hasher.in_flight()
    }

    fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    fn store(&self) -> &dyn AccountStore {
        &*self.inner.store
    }

    /// Audit events newest first (or in chain order after a position), at most `limit`
    /// (capped at [`MAX_PAGE`]), with their chain positions and hashes.
    pub async fn audit(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, AccountError> {
        Ok(self
            .store()
            .list_audit(filter, limit.clamp(1, MAX_PAGE))
            .await?)
    }

    /// Deletes sessions that expired or were revoked, attempt counts past their window and
    /// spent passkey challenges past their lifetime; returns how many rows went. The future owns
    /// what it needs, so it can be spawned.
    pub fn purge_expired(
        &self,
    ) -> impl Future<Output = Result<u64, AccountError>> + Send + 'static {
        let this = self.clone();
        async move {
            let now = this.now();
            let store = this.store();
            let sessions = store.purge_sessions(now).await?;
            let attempts = store.purge_attempts(now).await?;
            let nonces = store.purge_nonces(now).await?;
            Ok(sessions + attempts + nonces)
        }
    }

    /// Audits `event` (see `trustgate_audit` for the policy): a credential event that cannot be
    /// recorded fails the operation.
    async fn record(&self, ctx: &RequestContext, event: Event) -> Result<(), AccountError> {
        Ok(self.inner.auditor.record(ctx, event).await?)
    }

    /// As [`record`](Self::record), on a path that already fails: the original outcome is kept
    /// (an audit error is logged by the auditor).
    async fn record_quietly(&self, ctx: &RequestContext, event: Event) {
        let _ = self.record(ctx, event).await;
    }
}

/// The subject string of a user (`user:ID`).
pub fn subject(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// At most `max` characters of `s`.
fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// `at + d`, saturating far in the future.
fn plus(at: OffsetDateTime, d: Duration) -> OffsetDateTime {
    time::Duration::try_from(d)
        .ok()
        .and_then(|d| at.checked_add(d))
        .unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_and_statuses() {
        let cases: Vec<(AccountError, &str, u16)> = vec![
            (AccountError::InvalidCredentials, "invalid_credentials", 401),
            (
                AccountError::Throttled(RetryAfter(Duration::from_secs(3))),
                "too_many_attempts",
                429,
            ),
            (AccountError::Busy, "busy", 503),
            (
                AccountError::PasswordRejected(PasswordRejection::Common),
                "password_common",
                400,
            ),
            (
                AccountError::InvalidSecondFactor,
                "invalid_second_factor",
                401,
            ),
            (AccountError::StepUpRequired, "step_up_required", 403),
            (AccountError::NotFound, "not_found", 404),
            (AccountError::Conflict("username".into()), "conflict", 409),
            (AccountError::InvalidInput("x".into()), "invalid_input", 400),
            (
                AccountError::Store(StoreError::Unavailable("down".into())),
                "unavailable",
                503,
            ),
            (
                AccountError::Store(StoreError::StorageFull("disk".into())),
                "storage_full",
                507,
            ),
            (
                AccountError::Store(StoreError::ReadOnly("ro".into())),
                "read_only",
                503,
            ),
            (
                AccountError::Store(StoreError::Database("boom".into())),
                "internal",
                500,
            ),
        ];
        for (err, code, status) in cases {
            assert_eq!(err.code(), code, "{err:?}");
            assert_eq!(err.http_status(), status, "{err:?}");
        }
        assert_eq!(
            AccountError::Throttled(RetryAfter(Duration::from_millis(1500)))
                .retry_after()
                .map(|r| r.retry_after_secs()),
            Some(2)
        );
    }

    #[test]
    fn store_and_hash_errors_map() {
        assert!(matches!(
            AccountError::from(StoreError::Conflict(trustgate_store_api::Conflict::UsernameTaken)),
            AccountError::Conflict(m) if m == "username is already taken"
        ));
        assert!(matches!(
            AccountError::from(StoreError::NotFound("u".into())),
            AccountError::NotFound
        ));
        assert!(matches!(
            AccountError::from(HashError::Busy),
            AccountError::Busy
        ));
        // A throttle that cannot count refuses as unavailable, never as a pass.
        let down = AccountError::from(ThrottleError::Counter(crate::throttle::CounterError(
            "connection refused".into(),
        )));
        assert_eq!((down.code(), down.http_status()), ("unavailable", 503));
        assert!(matches!(
            AccountError::from(HashError::InvalidHash),
            AccountError::Internal(_)
        ));
    }

    #[test]
    fn second_factor_debug_is_redacted() {
        let shown = format!("{:?}", SecondFactor::Totp("123456".into()));
        assert!(!shown.contains("123456"), "{shown}");
        let shown = format!("{:?}", SecondFactor::RecoveryCode("abcd-efgh-jkmn".into()));
        assert!(!shown.contains("abcd"), "{shown}");
    }

    #[test]
    fn defaults_follow_the_agreed_api() {
        let c = AccountsConfig::default();
        assert_eq!(c.session_idle, Duration::from_secs(1800));
        assert_eq!(c.session_absolute, Duration::from_secs(43_200));
        assert_eq!(c.step_up_window, Duration::from_secs(600));
        assert_eq!(c.pending_login_ttl, Duration::from_secs(300));
        assert_eq!(c.totp_issuer, "trustgate");
    }
}
