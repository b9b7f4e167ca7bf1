//! What trustgate stores, and the traits it is stored by.
//!
//! Invariant: no SQL and no database driver here. This crate is the contract between the
//! services (`authn`, `tokens`, `oauth`, the PDP, `server`) and the backends (`trustgate-store`):
//! records, one async trait per aggregate, and a typed [`StoreError`]. A service names the
//! narrow traits it uses (`KeyManager` holds an `Arc<dyn SigningKeyStore>`, `Accounts` an
//! `Arc<dyn AccountStore>`), so it compiles without the backends and cannot reach tables that
//! are not its own. Only the binary's wiring holds the whole [`Store`].
//!
//! - [`ServiceAccountStore`], [`ApiKeyStore`]: machine principals, and the API keys (digests
//!   only) that they and users authenticate with, with the credential epoch that tells every
//!   replica to forget cached keys (see [`service_accounts`]).
//! - [`RelationshipStore`]: the OpenFGA-compatible PDP's stores, authorization models,
//!   relationship tuples and the per-store tuple changelog that keeps every replica's in-memory
//!   tuple index fresh (see [`relationships`]).
//! - [`UserStore`], [`SessionStore`], [`MfaStore`], [`AuditStore`]: human accounts (users with
//!   case-insensitively unique usernames and emails, password hashes), server-side sessions
//!   looked up by the digest of their secret, second factors (TOTP with atomic replay defence,
//!   recovery codes, passkeys) and the audit trail, two hash chains with signed anchors (see
//!   [`accounts`] and [`audit`]).
//! - [`SigningKeyStore`], [`ClientStore`], [`GrantStore`]: the OAuth 2.0 / OpenID Connect
//!   provider's signing keys, registered clients, and the artifacts of grants (authorization
//!   codes, grants and their refresh tokens, consents, device authorizations, pushed requests,
//!   assertion ids, revoked access tokens, per-user token versions), with every consuming
//!   operation atomic (see [`oauth`]).
//! - [`AttemptStore`], [`NonceStore`]: what every replica must share to enforce one limit:
//!   counters of failed attempts (login and device-code throttles) and the ledger of spent
//!   one-time values (passkey challenges; later DPoP `jti`s), keyed by digests (see [`limits`]).
//! - [`WebhookStore`]: webhook subscriptions (sealed signing secrets) and the outbox of
//!   deliveries (webhooks and back-channel logout tokens), claimed by workers under a lease
//!   (see [`webhooks`]).
//!
//! # Who decides what
//! The store validates what it is given (sizes, shapes, references) and keeps its integrity
//! rules (unique names, a session only for an active user, seqs without gaps). Protocol rules are
//! not its business: where a consuming operation needs one inside its transaction (refresh-token
//! reuse and its grace period, RFC 8628's `slow_down`), the caller passes the rule
//! ([`RotationRule`], [`DevicePollRule`]) and the store applies the step it returns.
//!
//! # Errors
//! [`StoreError`] keeps the driver's error as its `source()`; conflicts carry a [`Conflict`]
//! kind that callers match on, never a message to search. An [`Outage`] (database down, storage
//! full, read-only) is answered with its stable code and "retry later", never as a defect.

pub mod accounts;
pub mod audit;
mod error;
pub mod limits;
pub mod oauth;
pub mod relationships;
pub mod service_accounts;
pub mod webhooks;

use std::fmt;

use async_trait::async_trait;

pub use accounts::{
    AuditEvent, AuditFilter, AuditStore, MfaStore, NewUser, Passkey, Session, SessionStore,
    TotpCredential, User, UserPage, UserStatus, UserStore, UserUpdate,
};
pub use audit::{
    AnchorKind, AuditAnchor, AuditChain, AuditRecord, ChainHead, GENESIS_HASH, record_hash,
};
pub use error::{BoxError, Conflict, Outage, StoreError};
pub use limits::{AttemptCount, AttemptStore, NonceStore};
pub use oauth::{
    AuthorizationCode, ClientPage, ClientStore, CodeRedemption, Consent, DeviceAuthorization,
    DevicePoll, DevicePollRefusal, DevicePollRule, DevicePollStep, DeviceStatus, Grant, GrantStore,
    KeyRetirement, OAuthClient, PushedRequest, RefreshRotation, RefreshToken, RotationRule,
    RotationStep, SigningKey, SigningKeyStore,
};
pub use relationships::{
    FgaStore, ImportOutcome, MAX_ATTRIBUTE_OBJECTS_PER_READ, MAX_IMPORT_BATCH,
    MAX_OBJECT_ATTRIBUTES_BYTES, OnDuplicate, OnMissing, RelationshipCondition, RelationshipStore,
    StoredModel, StoredTuple, TupleChangeRecord, TupleFilter, TupleKey, TupleOperation,
    TupleSnapshot, TupleWriteError, WriteOptions, WriteOutcome,
};
pub use service_accounts::{
    ApiKey, ApiKeyStore, CertificateBinding, CertificateNameKind, EnsuredKey, KeyOwner, KeyUse,
    MAX_CERTIFICATE_NAME_BYTES, NewApiKey, NewServiceAccount, SYSTEM_STORE_ID, ServiceAccount,
    ServiceAccountPage, ServiceAccountStore, VerifiedKey,
};
pub use webhooks::{
    AttemptResult, ClaimedDelivery, Delivery, DeliveryKind, DeliveryPage, DeliveryState,
    NewDelivery, NewSubscription, StoredSecret, Subscription, WebhookStore,
};

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

/// What readiness checks report about the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The newest migration this binary knows.
    pub expected_version: i64,
    /// The newest migration applied to the database (0 when none).
    pub applied_version: i64,
}

impl Health {
    /// Whether every migration this binary knows has been applied.
    pub fn migrations_current(&self) -> bool {
        self.applied_version >= self.expected_version
    }
}

/// The result of running migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// The newest version applied before the run.
    pub before: i64,
    /// The newest version applied after the run.
    pub after: i64,
}

/// What human authentication stores: users, sessions, second factors and the audit trail, plus
/// the attempt counters of its throttle and the ledger of spent passkey challenges (shared by
/// every replica).
pub trait AccountStore:
    UserStore + SessionStore + MfaStore + AuditStore + AttemptStore + NonceStore + Send + Sync
{
}

impl<
    T: UserStore
        + SessionStore
        + MfaStore
        + AuditStore
        + AttemptStore
        + NonceStore
        + Send
        + Sync
        + ?Sized,
> AccountStore for T
{
}

/// What the OAuth provider stores besides signing keys: clients and the artifacts of grants,
/// plus the users and audit trail it reads and appends to, and the ledger of spent DPoP proof
/// ids (shared by every replica).
pub trait OAuthStore:
    ClientStore + GrantStore + UserStore + AuditStore + NonceStore + Send + Sync
{
}

impl<T: ClientStore + GrantStore + UserStore + AuditStore + NonceStore + Send + Sync + ?Sized>
    OAuthStore for T
{
}

/// All storage aggregates of one database, and its administration. Only the binary's wiring
/// (`trustgate-server`) holds one; services take the narrow traits above.
///
/// The groupings are supertraits so that an `Arc<dyn Store>` upcasts to any of them.
#[async_trait]
pub trait Store:
    ServiceAccountStore
    + ApiKeyStore
    + RelationshipStore
    + AccountStore
    + OAuthStore
    + SigningKeyStore
    + WebhookStore
    + fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// The backend behind this store.
    fn backend(&self) -> Backend;

    /// Applies pending migrations. Safe to run concurrently from several replicas.
    async fn migrate(&self) -> Result<MigrationReport, StoreError>;

    /// Checks that the database answers and reports the migration state.
    async fn health(&self) -> Result<Health, StoreError>;

    /// Closes the connections, waiting for checked-out ones to be returned.
    async fn close(&self);
}
