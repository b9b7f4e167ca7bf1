//! Persistence for trustgate.
//!
//! Invariant: this is the only crate that writes SQL. Everything above it talks to storage
//! through one async trait per aggregate, gathered in [`Store`]:
//!
//! - [`ServiceAccountStore`]: machine principals and their token digests.
//! - [`RelationshipStore`]: the OpenFGA-compatible PDP's stores, authorization models,
//!   relationship tuples and the per-store tuple changelog that keeps every replica's in-memory
//!   tuple index fresh (see [`relationships`]).
//! - [`UserStore`], [`SessionStore`], [`MfaStore`], [`AuditStore`]: human accounts (users with
//!   case-insensitively unique usernames and emails, password hashes), server-side sessions
//!   looked up by the digest of their secret, second factors (TOTP with atomic replay defence,
//!   recovery codes, passkeys) and the audit trail of credential events (see [`accounts`]).
//! - [`SigningKeyStore`], [`ClientStore`], [`GrantStore`]: the OAuth 2.0 / OpenID Connect
//!   provider's signing keys, registered clients, and the artifacts of grants (authorization
//!   codes, grants and their refresh tokens, consents, device authorizations, pushed requests,
//!   assertion ids, revoked access tokens, per-user token versions), with every consuming
//!   operation atomic (see [`oauth`]).
//!
//! Each backend implements every trait in its own module with its own migrations:
//!
//! - [`sqlite`]: the embedded default, one file in WAL mode with foreign keys on. An exclusive
//!   lock file next to the database keeps a second process from opening it.
//! - [`postgres`]: for several stateless replicas sharing one database.
//!
//! There is no runtime branching on the backend inside an implementation: adding a backend means
//! adding a module that implements the traits and a migrations directory, nothing else.
//!
//! Blocking database work never runs on the async executor: sqlx drives SQLite on dedicated
//! worker threads and PostgreSQL over async sockets.

pub mod accounts;
mod error;
pub mod oauth;
pub mod postgres;
pub mod relationships;
pub mod service_accounts;
pub mod sqlite;
#[cfg(feature = "test-support")]
pub mod testing;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use accounts::{
    AuditEvent, AuditFilter, AuditStore, MfaStore, NewUser, Passkey, Session, SessionStore,
    TotpCredential, User, UserPage, UserStatus, UserStore, UserUpdate,
};
pub use error::StoreError;
pub use oauth::{
    AuthorizationCode, ClientPage, ClientStore, CodeRedemption, Consent, DeviceAuthorization,
    DevicePoll, DeviceStatus, Grant, GrantStore, KeyRetirement, OAuthClient, PushedRequest,
    RefreshRotation, RefreshToken, SigningKey, SigningKeyStore,
};
pub use relationships::{
    FgaStore, OnDuplicate, OnMissing, RelationshipStore, StoredModel, StoredTuple,
    TupleChangeRecord, TupleFilter, TupleOperation, TupleRecord, TupleSnapshot, TupleWriteError,
    WriteOptions, WriteOutcome,
};
pub use service_accounts::{AccountRole, ServiceAccount, ServiceAccountStore};

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

/// All storage aggregates of one database.
#[async_trait]
pub trait Store:
    ServiceAccountStore
    + RelationshipStore
    + UserStore
    + SessionStore
    + MfaStore
    + AuditStore
    + SigningKeyStore
    + ClientStore
    + GrantStore
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

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Upper bound of pooled connections.
    pub max_connections: u32,
    /// How long to wait for a connection before reporting the database unavailable.
    pub acquire_timeout: Duration,
    /// PostgreSQL only: the schema to use (created if missing). `None` uses the server default.
    pub postgres_schema: Option<String>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(3),
            postgres_schema: None,
        }
    }
}

/// Opens the database named by `url` (`sqlite://PATH` or `postgres://...`).
///
/// Does not run migrations; call [`Store::migrate`].
pub async fn connect(url: &str, options: &ConnectOptions) -> Result<Arc<dyn Store>, StoreError> {
    match backend_of(url)? {
        Backend::Sqlite => Ok(Arc::new(sqlite::SqliteStore::connect(url, options).await?)),
        Backend::Postgres => Ok(Arc::new(
            postgres::PostgresStore::connect(url, options).await?,
        )),
    }
}

/// The backend a database URL names, or an error saying which schemes are understood.
pub fn backend_of(url: &str) -> Result<Backend, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else {
        Err(StoreError::InvalidUrl(
            "expected sqlite://PATH or postgres://USER@HOST:PORT/DATABASE".into(),
        ))
    }
}

/// Removes the password from a database URL so it can be logged or shown.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
    let shown = if userinfo.contains(':') {
        format!("{user}:[redacted]")
    } else {
        user.to_owned()
    };
    let tail = redact_query_password(tail);
    format!("{scheme}://{shown}@{host}{tail}")
}

fn redact_query_password(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=[redacted]"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_classified() {
        assert_eq!(backend_of("sqlite://./x.db").ok(), Some(Backend::Sqlite));
        assert_eq!(
            backend_of("postgres://u@h/db").ok(),
            Some(Backend::Postgres)
        );
        assert_eq!(
            backend_of("postgresql://u@h/db").ok(),
            Some(Backend::Postgres)
        );
        assert!(matches!(
            backend_of("mysql://u@h/db"),
            Err(StoreError::InvalidUrl(_))
        ));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/trust"),
            "postgres://app:[redacted]@db:5432/trust"
        );
        assert_eq!(
            redact_url("postgres://app@db/trust?password=x&sslmode=require"),
            "postgres://app@db/trust?password=[redacted]&sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://u:p@ss@h/db"),
            "postgres://u:[redacted]@h/db"
        );
        assert_eq!(redact_url("sqlite://./data/x.db"), "sqlite://./data/x.db");
    }
}
