//! What every replica must agree on to enforce a limit: counters of failed attempts, and the
//! ledger of spent one-time values.
//!
//! Both live in the database so that N replicas enforce one limit, not N: a guesser who spreads
//! password attempts over the replicas meets the same count on each, and a single-use value
//! (a passkey challenge, a DPoP proof's `jti`) spent on one replica is spent on all.
//!
//! Keys are digests, never the raw value: an [`AttemptStore`] row is named by a `kind` (what is
//! counted: `account`, `ip`, `device-session`, ...) and the SHA-256 of the counted subject; a
//! [`NonceStore`] row by a `purpose` and the SHA-256 of the value. The policy (how many failures
//! are free, how long a wait is, how long a value stays spent) belongs to the caller; the store
//! only counts, remembers and forgets, each in one atomic statement.
//!
//! Expiry: every row carries `expires_at`. A row with `expires_at <= now` no longer counts (an
//! attempt count reads as zero and starts again at one; a spent value may be spent again, though
//! callers refuse expired values before they get here) and is deleted by the periodic purge.

use async_trait::async_trait;
use time::OffsetDateTime;
use trustgate_core::TokenDigest;

use crate::StoreError;

/// Longest `kind` or `purpose` accepted (they are short constants of the callers).
pub const MAX_LIMIT_KIND_BYTES: usize = 64;

/// The recent failures counted under one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AttemptCount {
    /// Failures since the count last expired or was cleared (saturating at `u32::MAX`).
    pub failures: u32,
    /// The latest of them; `None` when there are none.
    pub last_failure_at: Option<OffsetDateTime>,
}

/// Counters of failed attempts, shared by every replica.
///
/// A `kind` is 1 to [`MAX_LIMIT_KIND_BYTES`] bytes of lowercase ASCII letters, digits, `-`, `_`
/// or `:`; anything else is [`StoreError::InvalidInput`].
#[async_trait]
pub trait AttemptStore: Send + Sync {
    /// The count of `(kind, digest)` as it stands at `now`: zero when there is none or it has
    /// expired.
    async fn attempt_count(
        &self,
        kind: &str,
        digest: &TokenDigest,
        now: OffsetDateTime,
    ) -> Result<AttemptCount, StoreError>;

    /// Counts one failure at `now` and keeps the count at least until `expires_at`; returns the
    /// count including it. An expired count starts again at one. Increment and read are one
    /// statement, so concurrent calls from any number of replicas each count exactly once.
    async fn add_attempt_failure(
        &self,
        kind: &str,
        digest: &TokenDigest,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<AttemptCount, StoreError>;

    /// Forgets the count of `(kind, digest)`; `false` if there was none.
    async fn clear_attempts(&self, kind: &str, digest: &TokenDigest) -> Result<bool, StoreError>;

    /// Deletes every count that has expired at `now`; returns how many.
    async fn purge_attempts(&self, now: OffsetDateTime) -> Result<u64, StoreError>;
}

/// The ledger of spent one-time values (passkey challenges, DPoP proof `jti`s), shared by every
/// replica.
///
/// A `purpose` follows the rules of an [`AttemptStore`] kind.
#[async_trait]
pub trait NonceStore: Send + Sync {
    /// Spends the value whose digest is `digest`, for `purpose`, until `expires_at`. `true`:
    /// this call spent it. `false`: it was spent before and that has not expired at `now` (of
    /// concurrent spends on any replicas exactly one gets `true`), or the value itself has
    /// expired at `now` (an expired value is never spendable).
    async fn spend_nonce(
        &self,
        purpose: &str,
        digest: &TokenDigest,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Deletes every record that has expired at `now`; returns how many.
    async fn purge_nonces(&self, now: OffsetDateTime) -> Result<u64, StoreError>;
}
