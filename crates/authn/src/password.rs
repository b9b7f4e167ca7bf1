//! Passwords: what may be chosen ([`PasswordPolicy`]) and how it is stored and checked
//! (argon2id, [`hash_password`], [`verify_password`], and the bounded [`PasswordHasher`] pool).
//!
//! # Choosing a password (OWASP ASVS V2.1, NIST SP 800-63B 5.1.1.2)
//! - At least 12 characters (configurable, never below 8), at most 128 by default (configurable
//!   from 128 up to 1024). Length counts Unicode scalar values, so `"пароль"` is 6 characters,
//!   not 12 bytes. Nothing is ever truncated: a password over the maximum is refused, and the
//!   whole password is hashed.
//! - No composition rules (no "one digit, one symbol"): they make passwords harder to remember
//!   without making them harder to guess.
//! - Refused when it is, case-insensitively, in the bundled list of common and breached passwords
//!   (`data/common-passwords.txt`, ~49k entries), when its core (without leading and trailing
//!   digits, punctuation and spaces) is in that list (`Summer2024!!`), or when it is a trivial
//!   pattern (one short unit repeated, a run like `abcdefghijkl`, a listed password repeated).
//! - Refused when it equals or contains the user's own identifiers (username, email, the local
//!   part of the email), compared case-insensitively; identifiers shorter than 4 characters are
//!   only compared for equality.
//!
//! Each refusal is a [`PasswordRejection`] with a stable machine code
//! ([`PasswordRejection::code`]) for the JSON error shape and the login pages.
//!
//! # Storing a password
//! argon2id with OWASP's parameters (19 MiB memory, 2 passes, 1 lane) and a 16-byte random
//! salt, stored as a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`): the parameters live
//! in the hash, so raising them later only needs [`Verification::needs_rehash`] on the next
//! successful login. Unknown users get [`PasswordHasher::dummy_verify`], which costs the same as
//! a real verification, so response time does not reveal whether an account exists.
//!
//! # Not starving the server
//! One argon2id evaluation takes tens of milliseconds of CPU and 19 MiB of memory. The async
//! [`PasswordHasher`] runs them on tokio's blocking pool behind a semaphore (default: one per
//! core) and admits only a bounded number of waiting requests; past that it answers
//! [`HashError::Busy`] at once (the server turns it into 503 with `Retry-After`), so a flood of
//! logins cannot queue without bound or take the executor threads of other requests.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};

use argon2::password_hash::phc::PasswordHash as PhcHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;
use trustgate_core::Secret;

// ---------------------------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------------------------

/// The bundled list of common and breached passwords, lower-case, one per line.
/// Provenance and license: `crates/authn/data/README.md`.
const COMMON_PASSWORDS_TXT: &str = include_str!("../data/common-passwords.txt");

static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    COMMON_PASSWORDS_TXT
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect()
});

/// Number of entries in the bundled common-password list.
pub fn common_password_count() -> usize {
    COMMON_PASSWORDS.len()
}

/// Whether `candidate` is, case-insensitively, in the bundled common-password list.
pub fn is_listed_common_password(candidate: &str) -> bool {
    COMMON_PASSWORDS.contains(candidate.to_lowercase().as_str())
}

/// Why a new password was refused. Each variant has a stable [`code`](Self::code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRejection {
    /// Fewer than `min` characters.
    #[error("the password must have at least {min} characters")]
    TooShort {
        /// The policy's minimum, in characters.
        min: usize,
    },
    /// More than `max` characters.
    #[error("the password must have at most {max} characters")]
    TooLong {
        /// The policy's maximum, in characters.
        max: usize,
    },
    /// A commonly used, breached or trivially guessable password.
    #[error("this password is too common; choose one that is harder to guess")]
    Common,
    /// Equal to, or containing, the account's username or email address.
    #[error("the password must not contain your username or email address")]
    ContainsUserIdentity,
}

impl PasswordRejection {
    /// Stable machine-readable code for API errors and page messages.
    pub fn code(&self) -> &'static str {
        match self {
            PasswordRejection::TooShort { .. } => "password_too_short",
            PasswordRejection::TooLong { .. } => "password_too_long",
            PasswordRejection::Common => "password_common",
            PasswordRejection::ContainsUserIdentity => "password_contains_user_identity",
        }
    }
}

/// A [`PasswordPolicy`] that cannot be built from the given limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PolicyConfigError {
    /// `min_chars` below [`PasswordPolicy::LOWEST_MIN`].
    #[error("minimum password length {0} is below the allowed floor of 8")]
    MinTooLow(usize),
    /// `max_chars` outside [`PasswordPolicy::DEFAULT_MAX`]`..=`[`PasswordPolicy::HIGHEST_MAX`].
    #[error("maximum password length {0} must be between 128 and 1024")]
    MaxOutOfRange(usize),
    /// `min_chars` greater than `max_chars`.
    #[error("minimum password length {min} exceeds the maximum {max}")]
    MinAboveMax {
        /// Requested minimum.
        min: usize,
        /// Requested maximum.
        max: usize,
    },
}

/// Rules for a newly chosen password (registration, reset, change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    min_chars: usize,
    max_chars: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_chars: Self::DEFAULT_MIN,
            max_chars: Self::DEFAULT_MAX,
        }
    }
}

impl PasswordPolicy {
    /// Default minimum length in characters (ASVS 2.1.1).
    pub const DEFAULT_MIN: usize = 12;
    /// The lowest minimum a configuration may set (NIST SP 800-63B).
    pub const LOWEST_MIN: usize = 8;
    /// Default maximum length in characters; also the lowest maximum allowed (ASVS 2.1.2 asks
    /// for at least 64).
    pub const DEFAULT_MAX: usize = 128;
    /// The highest maximum a configuration may set.
    pub const HIGHEST_MAX: usize = 1024;

    /// A policy with the given limits in characters.
    pub fn new(min_chars: usize, max_chars: usize) -> Result<Self, PolicyConfigError> {
        if min_chars < Self::LOWEST_MIN {
            return Err(PolicyConfigError::MinTooLow(min_chars));
        }
        if !(Self::DEFAULT_MAX..=Self::HIGHEST_MAX).contains(&max_chars) {
            return Err(PolicyConfigError::MaxOutOfRange(max_chars));
        }
        if min_chars > max_chars {
            return Err(PolicyConfigError::MinAboveMax {
                min: min_chars,
                max: max_chars,
            });
        }
        Ok(Self {
            min_chars,
            max_chars,
        })
    }

    /// Minimum length in characters.
    pub fn min_chars(&self) -> usize {
        self.min_chars
    }

    /// Maximum length in characters.
    pub fn max_chars(&self) -> usize {
        self.max_chars
    }

    /// Checks a newly chosen `password` for the account known by `identifiers` (username, email
    /// address, display name: whatever the user is known by). Returns the first rule broken, in
    /// the order length, identity, common.
    pub fn check(&self, password: &Secret, identifiers: &[&str]) -> Result<(), PasswordRejection> {
        let password = password.expose();
        let chars = password.chars().count();
        if chars < self.min_chars {
            return Err(PasswordRejection::TooShort {
                min: self.min_chars,
            });
        }
        if chars > self.max_chars {
            return Err(PasswordRejection::TooLong {
                max: self.max_chars,
            });
        }
        let lower = password.to_lowercase();
        if contains_identity(&lower, identifiers) {
            return Err(PasswordRejection::ContainsUserIdentity);
        }
        if is_common(&lower) {
            return Err(PasswordRejection::Common);
        }
        Ok(())
    }
}

/// Identifiers at least this long are refused as substrings, shorter ones only as the whole
/// password.
const IDENTITY_SUBSTRING_MIN_CHARS: usize = 4;

fn contains_identity(lower_password: &str, identifiers: &[&str]) -> bool {
    let matches = |ident: &str| {
        let ident = ident.trim().to_lowercase();
        if ident.is_empty() {
            return false;
        }
        if lower_password == ident {
            return true;
        }
        ident.chars().count() >= IDENTITY_SUBSTRING_MIN_CHARS && lower_password.contains(&ident)
    };
    identifiers.iter().any(|ident| {
        matches(ident)
            || ident
                .split_once('@')
                .is_some_and(|(local, _domain)| matches(local))
    })
}

fn is_common(lower: &str) -> bool {
    if COMMON_PASSWORDS.contains(lower) {
        return true;
    }
    // The core without decoration at either end: "Summer2024!!" -> "summer".
    let core = lower.trim_matches(|c: char| {
        c.is_ascii_digit() || c.is_ascii_punctuation() || c.is_whitespace()
    });
    if core.chars().count() >= 4 && COMMON_PASSWORDS.contains(core) {
        return true;
    }
    let chars: Vec<char> = lower.chars().collect();
    is_repetition(&chars) || is_run(&chars)
}

/// One unit repeated: a short unit (`aaaa...`, `abcabc...`) or a listed password (`passwordpassword`).
fn is_repetition(chars: &[char]) -> bool {
    let n = chars.len();
    (1..=n / 2).any(|unit| {
        if !n.is_multiple_of(unit) || chars.chunks(unit).any(|chunk| chunk != &chars[..unit]) {
            return false;
        }
        let unit_str: String = chars[..unit].iter().collect();
        unit <= 4 || COMMON_PASSWORDS.contains(unit_str.as_str())
    })
}

/// Consecutive code points going up or down by one: `abcdefghijkl`, `987654321098`... (the
/// latter is not a run; `123456789` followed by `0` breaks it, which the list catches instead).
fn is_run(chars: &[char]) -> bool {
    if chars.len() < 3 {
        return false;
    }
    let step = |a: char, b: char| i64::from(u32::from(b)) - i64::from(u32::from(a));
    let first = step(chars[0], chars[1]);
    (first == 1 || first == -1) && chars.windows(2).all(|w| step(w[0], w[1]) == first)
}

// ---------------------------------------------------------------------------------------------
// Hashing
// ---------------------------------------------------------------------------------------------

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Number of passes.
    pub t_cost: u32,
    /// Degree of parallelism (lanes).
    pub p_cost: u32,
}

impl HashParams {
    /// OWASP Password Storage Cheat Sheet: argon2id, m=19456 KiB (19 MiB), t=2, p=1.
    pub const OWASP: HashParams = HashParams {
        m_cost_kib: 19_456,
        t_cost: 2,
        p_cost: 1,
    };

    /// Stored hashes asking for more memory than this are refused as corrupt rather than run
    /// (a tampered row must not be able to allocate gigabytes).
    pub const MAX_ACCEPTED_M_COST_KIB: u32 = 262_144;
    /// Stored hashes asking for more passes than this are refused as corrupt.
    pub const MAX_ACCEPTED_T_COST: u32 = 16;
    /// Stored hashes asking for more lanes than this are refused as corrupt.
    pub const MAX_ACCEPTED_P_COST: u32 = 16;

    /// Checks that these are valid argon2 parameters ([`HashError::InvalidParams`] otherwise),
    /// so a bad configuration is refused at start-up rather than at the first login.
    pub fn validate(&self) -> Result<(), HashError> {
        self.to_argon2().map(|_| ())
    }

    fn to_argon2(self) -> Result<Params, HashError> {
        Params::new(self.m_cost_kib, self.t_cost, self.p_cost, None)
            .map_err(|_| HashError::InvalidParams)
    }
}

impl Default for HashParams {
    fn default() -> Self {
        Self::OWASP
    }
}

/// Bytes beyond which a presented password is not hashed at all: 1024 characters of up to 4 bytes
/// each. Anything longer cannot have been set under any allowed policy.
pub const MAX_PASSWORD_BYTES: usize = PasswordPolicy::HIGHEST_MAX * 4;

/// A stored password hash: an argon2 PHC string. Prints only its algorithm and parameters.
#[derive(Clone, PartialEq, Eq)]
pub struct HashedPassword(String);

impl HashedPassword {
    /// Wraps a PHC string read from storage. It is parsed when verified.
    pub fn from_phc(phc: impl Into<String>) -> Self {
        Self(phc.into())
    }

    /// The PHC string, as stored.
    pub fn as_phc(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for HashedPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`: show everything before the salt.
        let visible: Vec<&str> = self.0.splitn(5, '$').take(4).collect();
        write!(f, "HashedPassword({}$..)", visible.join("$"))
    }
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Verification {
    /// The password matches.
    pub ok: bool,
    /// The stored hash uses a weaker algorithm or parameters than the current ones: after a
    /// successful login, hash the password again and store the new hash. Always false when
    /// `ok` is false.
    pub needs_rehash: bool,
}

/// Why hashing or verifying could not be carried out (as opposed to a wrong password, which is
/// `Verification { ok: false, .. }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// Too many password operations are running and waiting; answer 503 and retry later.
    #[error("too many password operations in progress")]
    Busy,
    /// The stored hash is not a PHC string this crate can verify.
    #[error("the stored password hash is malformed")]
    InvalidHash,
    /// The stored hash names an algorithm other than argon2.
    #[error("the stored password hash uses an unsupported algorithm")]
    UnsupportedAlgorithm,
    /// The stored hash asks for more resources than [`HashParams`] accepts.
    #[error("the stored password hash asks for excessive resources")]
    ExcessiveParams,
    /// The configured parameters are not valid argon2 parameters.
    #[error("invalid argon2 parameters")]
    InvalidParams,
    /// The password to hash exceeds [`MAX_PASSWORD_BYTES`].
    #[error("password too long to hash")]
    PasswordTooLong,
    /// The operating system's random number generator failed.
    #[error("random number generator failure")]
    Rng,
    /// The hashing task failed (panicked or was cancelled by runtime shutdown).
    #[error("password hashing failed")]
    Internal,
}

impl HashError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            HashError::Busy => "password_hashing_busy",
            HashError::InvalidHash => "password_hash_invalid",
            HashError::UnsupportedAlgorithm => "password_hash_unsupported",
            HashError::ExcessiveParams => "password_hash_excessive_params",
            HashError::InvalidParams => "password_hash_params_invalid",
            HashError::PasswordTooLong => "password_too_long",
            HashError::Rng => "rng_failure",
            HashError::Internal => "password_hashing_failed",
        }
    }
}

/// Hashes `password` with argon2id under `params` and a fresh 16-byte salt. Blocking and
/// CPU-heavy: call it from [`PasswordHasher`] (or another blocking context), not from async code.
pub fn hash_password(password: &Secret, params: HashParams) -> Result<HashedPassword, HashError> {
    let bytes = password.expose().as_bytes();
    if bytes.len() > MAX_PASSWORD_BYTES {
        return Err(HashError::PasswordTooLong);
    }
    let salt = argon2::password_hash::try_generate_salt().map_err(|_| HashError::Rng)?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.to_argon2()?);
    let hash = argon
        .hash_password_with_salt(bytes, &salt)
        .map_err(|_| HashError::Internal)?;
    Ok(HashedPassword(hash.to_string()))
}

/// Checks `password` against `stored`, using the parameters recorded in `stored`, and reports
/// whether it should be rehashed under `current`. Blocking and CPU-heavy, like [`hash_password`].
///
/// A wrong password is `Ok(Verification { ok: false, .. })`; `Err` means the stored hash itself
/// is unusable (the caller must treat that as a failed login, and log it).
pub fn verify_password(
    stored: &HashedPassword,
    password: &Secret,
    current: HashParams,
) -> Result<Verification, HashError> {
    let parsed = PhcHash::new(stored.as_phc()).map_err(|_| HashError::InvalidHash)?;
    let algorithm = Algorithm::try_from(parsed.algorithm.as_str())
        .map_err(|_| HashError::UnsupportedAlgorithm)?;
    let stored_params = Params::try_from(&parsed).map_err(|_| HashError::InvalidHash)?;
    if stored_params.m_cost() > HashParams::MAX_ACCEPTED_M_COST_KIB
        || stored_params.t_cost() > HashParams::MAX_ACCEPTED_T_COST
        || stored_params.p_cost() > HashParams::MAX_ACCEPTED_P_COST
    {
        return Err(HashError::ExcessiveParams);
    }
    let bytes = password.expose().as_bytes();
    if bytes.len() > MAX_PASSWORD_BYTES {
        // Spend the same time as a real check, then fail.
        let _ = Argon2::default().verify_password(b"", &parsed);
        return Ok(Verification {
            ok: false,
            needs_rehash: false,
        });
    }
    let ok = Argon2::default().verify_password(bytes, &parsed).is_ok();
    let weaker = algorithm != Algorithm::Argon2id
        || parsed.version != Some(u32::from(Version::V0x13))
        || stored_params.m_cost() < current.m_cost_kib
        || stored_params.t_cost() < current.t_cost
        || stored_params.p_cost() < current.p_cost
        || parsed
            .hash
            .as_ref()
            .is_none_or(|h| h.len() < Params::DEFAULT_OUTPUT_LEN)
        || parsed.salt.as_ref().is_none_or(|s| s.len() < 16);
    Ok(Verification {
        ok,
        needs_rehash: ok && weaker,
    })
}

// ---------------------------------------------------------------------------------------------
// Bounded pool
// ---------------------------------------------------------------------------------------------

/// Settings of a [`PasswordHasher`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordHasherConfig {
    /// argon2id parameters for new hashes and the rehash threshold.
    pub params: HashParams,
    /// Hashes computed at the same time (each holds a blocking thread and `m_cost` of memory).
    pub max_concurrent: usize,
    /// Requests allowed to wait for a free slot; one more is refused with [`HashError::Busy`].
    pub max_waiting: usize,
}

impl Default for PasswordHasherConfig {
    /// OWASP parameters, one hash per core, eight waiting requests per core.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Self {
            params: HashParams::OWASP,
            max_concurrent: cores,
            max_waiting: cores * 8,
        }
    }
}

/// Password hashing and verification on a bounded slice of tokio's blocking pool. Cheap to
/// clone; clones share the same limits.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    inner: Arc<HasherInner>,
}

#[derive(Debug)]
struct HasherInner {
    params: HashParams,
    permits: Arc<Semaphore>,
    /// Requests admitted and not finished: running plus waiting.
    admitted: AtomicUsize,
    capacity: usize,
    dummy: OnceLock<HashedPassword>,
}

/// Counts an admitted request until dropped, wherever it is dropped (also inside the blocking
/// task, so a cancelled request whose hash is still running stays counted).
struct Admission {
    inner: Arc<HasherInner>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.inner.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PasswordHasher {
    /// A hasher with the given limits. `max_concurrent` is raised to at least 1. Parameters are
    /// checked on first use ([`HashError::InvalidParams`]); use [`HashParams::OWASP`] unless
    /// there is a measured reason.
    pub fn new(config: PasswordHasherConfig) -> Self {
        let max_concurrent = config.max_concurrent.max(1);
        Self {
            inner: Arc::new(HasherInner {
                params: config.params,
                permits: Arc::new(Semaphore::new(max_concurrent)),
                admitted: AtomicUsize::new(0),
                capacity: max_concurrent.saturating_add(config.max_waiting),
                dummy: OnceLock::new(),
            }),
        }
    }

    /// The parameters new hashes are made with.
    pub fn params(&self) -> HashParams {
        self.inner.params
    }

    /// Requests currently running or waiting (for metrics).
    pub fn in_flight(&self) -> usize {
        self.inner.admitted.load(Ordering::Acquire)
    }

    /// Hashes a new password. [`HashError::Busy`] when the pool and its queue are full.
    pub async fn hash(&self, password: Secret) -> Result<HashedPassword, HashError> {
        let params = self.inner.params;
        self.run(move || hash_password(&password, params)).await
    }

    /// Verifies a login attempt against the stored hash of a known account.
    pub async fn verify(
        &self,
        stored: HashedPassword,
        password: Secret,
    ) -> Result<Verification, HashError> {
        let params = self.inner.params;
        self.run(move || verify_password(&stored, &password, params))
            .await
    }

    /// For a login attempt on an unknown account: verifies `password` against a dummy hash made
    /// once with the current parameters, so the attempt costs the same time as a real one.
    /// Always returns `ok: false`.
    pub async fn dummy_verify(&self, password: Secret) -> Result<Verification, HashError> {
        let inner = Arc::clone(&self.inner);
        self.run(move || {
            let dummy = match inner.dummy.get() {
                Some(dummy) => dummy,
                None => {
                    let made =
                        hash_password(&Secret::new("trustgate dummy password"), inner.params)?;
                    inner.dummy.get_or_init(|| made)
                }
            };
            let _ = verify_password(dummy, &password, inner.params)?;
            Ok(Verification {
                ok: false,
                needs_rehash: false,
            })
        })
        .await
    }

    async fn run<T, F>(&self, work: F) -> Result<T, HashError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, HashError> + Send + 'static,
    {
        let previous = self.inner.admitted.fetch_add(1, Ordering::AcqRel);
        let admission = Admission {
            inner: Arc::clone(&self.inner),
        };
        if previous >= self.inner.capacity {
            tracing::warn!(
                in_flight = previous,
                "password hashing pool saturated; refusing"
            );
            return Err(HashError::Busy);
        }
        let permit = Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .map_err(|_| HashError::Internal)?;
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _admission = admission;
            work()
        });
        task.await.map_err(|_| HashError::Internal)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_check(pw: &str, ids: &[&str]) -> Result<(), PasswordRejection> {
        PasswordPolicy::default().check(&Secret::new(pw), ids)
    }

    #[test]
    fn list_is_loaded_and_lowercase() {
        assert!(common_password_count() > 10_000);
        assert!(is_listed_common_password("PASSWORD"));
        assert!(is_listed_common_password("qwertyuiop"));
        assert!(!is_listed_common_password("w7#Lq-unlikely-Zebra"));
    }

    #[test]
    fn length_is_counted_in_characters() {
        // 11 Cyrillic characters are 22 bytes: still too short.
        let eleven = "парольсложн";
        assert_eq!(eleven.chars().count(), 11);
        assert_eq!(
            policy_check(eleven, &[]),
            Err(PasswordRejection::TooShort { min: 12 })
        );
        let twelve = "парольсложны";
        assert_eq!(policy_check(twelve, &[]), Ok(()));
    }

    #[test]
    fn patterns_are_common() {
        for pw in [
            "aaaaaaaaaaaaaa",
            "abcabcabcabcabc",
            "abcdefghijklmn",
            "zyxwvutsrqponm",
            "passwordpassword",
            "Summer2024!!!",
            "123dragon123456",
            "!!!Password!!!",
        ] {
            assert_eq!(
                policy_check(pw, &[]),
                Err(PasswordRejection::Common),
                "{pw}"
            );
        }
        for pw in ["correct horse battery staple", "Tr0ub4dor&3-blue-kettle"] {
            assert_eq!(policy_check(pw, &[]), Ok(()), "{pw}");
        }
    }

    #[test]
    fn short_identifiers_only_match_whole() {
        assert_eq!(policy_check("bob-likes-long-walks", &["bob"]), Ok(()));
        assert_eq!(
            policy_check("alice-likes-long-walks", &["Alice"]),
            Err(PasswordRejection::ContainsUserIdentity)
        );
    }

    #[test]
    fn policy_limits_are_validated() {
        assert_eq!(
            PasswordPolicy::new(6, 128),
            Err(PolicyConfigError::MinTooLow(6))
        );
        assert_eq!(
            PasswordPolicy::new(12, 64),
            Err(PolicyConfigError::MaxOutOfRange(64))
        );
        assert_eq!(
            PasswordPolicy::new(12, 2048),
            Err(PolicyConfigError::MaxOutOfRange(2048))
        );
        assert!(PasswordPolicy::new(15, 1024).is_ok());
    }

    #[test]
    fn params_are_validated() {
        assert_eq!(HashParams::OWASP.validate(), Ok(()));
        let zero_passes = HashParams {
            t_cost: 0,
            ..HashParams::OWASP
        };
        assert_eq!(zero_passes.validate(), Err(HashError::InvalidParams));
        assert_eq!(
            hash_password(&Secret::new("whatever it is"), zero_passes),
            Err(HashError::InvalidParams)
        );
    }

    #[test]
    fn debug_hides_salt_and_hash() {
        let h = HashedPassword::from_phc("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g");
        let shown = format!("{h:?}");
        assert!(shown.contains("m=19456,t=2,p=1"), "{shown}");
        assert!(!shown.contains("c2FsdHNhbHQ"), "{shown}");
    }
}
