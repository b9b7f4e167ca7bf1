//! Authentication: turning what a caller presents into a [`Principal`](trustgate_core::Principal).
//!
//! This crate answers "who is calling?" and nothing else. It never decides what a caller may do
//! (that is the policy engine's job, in `trustgate-authz`, which this crate does not depend on),
//! and it holds no policy in disguise: no roles, scopes or permissions ride along with a
//! credential check. A failed check here is a 401; a 403 is always someone else's decision.
//!
//! # What is here
//! The credential logic of human and machine authentication, as pure functions and small services with no
//! database, no HTTP and no global state beyond read-only data; and [`accounts`], the one service
//! that puts them together over the storage traits of `trustgate-store` (still no HTTP: the
//! pages and the admin API in `trustgate-server` call it).
//!
//! | module | credential | standard |
//! |---|---|---|
//! | [`password`] | choosing a password ([`PasswordPolicy`]), storing it (argon2id PHC strings), checking it on a bounded blocking pool ([`PasswordHasher`]) | OWASP ASVS V2.1, V2.4; NIST SP 800-63B 5.1.1 |
//! | [`totp`] | second factor: TOTP codes with replay protection ([`TotpSecret`]) and single-use recovery codes | RFC 6238, RFC 4226; ASVS V2.8 |
//! | [`throttle`] | growing delays after failures, per account and per client IP ([`LoginThrottle`]), per session and per client IP for device user codes ([`DeviceCodeThrottle`]); counts shared by every replica through the database ([`StoreFailureCounter`]) | ASVS 2.2.1, RFC 8628 §5.1 |
//! | [`api_keys`] | API keys and personal access tokens → the owner's principal and the key's scopes: checksummed format, digest-only lookup, a cache that every replica drops within a poll of the credential epoch, per-key rate limits, batched last use ([`ApiKeys`](api_keys::ApiKeys)) | RFC 6750 (the transport's) |
//! | [`certificates`] | a client certificate the listener verified (mutual TLS) → its SPIFFE ID, its subject DN (RFC 4514) and its `x5t#S256` thumbprint ([`identify`](certificates::identify)) | SPIFFE X.509-SVID, RFC 4514, RFC 8705 |
//! | [`session_token`] | a fresh opaque session id and the digest under which it is stored | ASVS V3.2 |
//! | [`accounts`] | the service over storage: users, login with a second factor, sessions, step-up, self-service changes, audit ([`Accounts`](accounts::Accounts)) | ASVS V2, V3, V7 |
//!
//! # How a login uses it
//! ```text
//! form (login, password) ──► LoginThrottle::check(account, ip) ──► RetryAfter? → 429/401 + Retry-After
//!        │
//!        ├─ account known:   PasswordHasher::verify(stored_hash, password)
//!        └─ account unknown: PasswordHasher::dummy_verify(password)      (same cost: no user enumeration)
//!        │        └─ HashError::Busy → 503 (a login flood cannot starve other requests)
//!        ▼
//!   ok? ── no ──► LoginThrottle::record_failure(account, ip) → 401
//!        │
//!        yes ──► needs_rehash? → PasswordHasher::hash(password), store the new PHC string
//!        ▼
//!   second factor enrolled? → TotpSecret::verify(code, now, last_used_step) → store the step
//!                             or verify_recovery_code(code, digests) → delete that digest
//!        ▼
//!   LoginThrottle::record_success(account); new_session_id() → cookie = token, store digest
//! ```
//!
//! # Rules kept throughout
//! - **Secrets stay wrapped.** Passwords, TOTP secrets, provisioning URIs, recovery codes and
//!   session ids travel as [`Secret`](trustgate_core::Secret) or types whose `Debug` redacts
//!   them; stored forms are argon2id PHC strings (low-entropy secrets) or SHA-256
//!   [`TokenDigest`](trustgate_core::TokenDigest)s (high-entropy ones).
//! - **Nothing is truncated.** Long passwords are refused or hashed whole.
//! - **Time comes from a [`Clock`](trustgate_core::Clock)** or an explicit `now` argument, so
//!   expiry, TOTP windows and throttling are tested by moving a
//!   [`ManualClock`](trustgate_core::ManualClock), not by sleeping.
//! - **No panics on input.** Every function that takes user input returns a typed error with a
//!   stable machine code (`password_too_short`, `totp_replayed`, `too_many_attempts`, ...).
//! - **Blocking work stays off the executor.** argon2id runs only through
//!   [`PasswordHasher`] (tokio's blocking pool, bounded) or from code that is already blocking.

pub mod accounts;
pub mod api_keys;
pub mod certificates;
pub mod password;
pub mod session_token;
pub mod throttle;
pub mod totp;
pub mod webauthn;

pub use password::{
    HashError, HashParams, HashedPassword, PasswordHasher, PasswordHasherConfig, PasswordPolicy,
    PasswordRejection, Verification,
};
pub use session_token::{NewSessionId, new_session_id, session_id_digest};
pub use throttle::{
    DeviceCodeThrottle, FailureCounter, LoginThrottle, RetryAfter, StoreFailureCounter,
    ThrottleError, ThrottleKey, ThrottlePolicy, ThrottleTracker,
};
pub use totp::{
    RecoveryCodes, TotpError, TotpSecret, TotpSetupError, generate_recovery_codes,
    verify_recovery_code,
};
