//! The SQL backends of trustgate's storage.
//!
//! Invariant: this is the only crate that writes SQL. It implements the traits of
//! [`trustgate_store_api`] for two databases, [`sqlite`] (the embedded default: one file in WAL
//! mode, `synchronous=FULL` unless [`Synchronous::Normal`] is chosen, foreign keys on, a lock file
//! that keeps a second process out) and [`postgres`] (several
//! stateless replicas sharing one database), and both run the same test suite.
//!
//! # Layout
//! - **The shared layer** (`sql`, private) holds everything that does not depend on the
//!   database: every statement (written once, parameters `$1, $2, …`), every row mapping, and
//!   every operation's orchestration — validate the input, open a transaction, read what the
//!   decision needs (locking it), decide, write, commit — in one generic [`SqlStore<D>`] that
//!   implements all the store traits. It names what it needs from the database and never asks
//!   which one it is (static dispatch, no `match` on the backend): a transaction mode (write, or
//!   a read-only snapshot), a row lock (`FOR UPDATE` and kin), a serialization where there is no
//!   row to lock (the username/email namespace, key rotation), and the few SQL pieces that
//!   differ (`max`/`GREATEST`). It binds neutral typed arguments (`args![..]`) and reads
//!   through a neutral row accessor (`row.text`, `row.time`, `row.json`, …), so it never sees
//!   a driver type or error. Conflicts are classified by operation, never by searching
//!   constraint names.
//! - **A backend** ([`sqlite::Sqlite`], [`postgres::Postgres`]) implements the layer's
//!   `Database` trait: connection setup, migrations and health, the value codecs (SQLite stores
//!   times as INTEGER microseconds since the epoch, JSON as TEXT and booleans as 0/1;
//!   PostgreSQL uses TIMESTAMPTZ, JSONB and BOOLEAN), transactions and locks (SQLite's
//!   `BEGIN IMMEDIATE` makes row locks unnecessary; PostgreSQL takes row locks, advisory locks,
//!   and `REPEATABLE READ READ ONLY` snapshots), and the SQL pieces that differ.
//!   [`sqlite::SqliteStore`] and [`postgres::PostgresStore`] are `SqlStore` of those.
//! - **The driver glue** (`driver`, private) is the one place that turns driver errors into
//!   [`StoreError`]s (unique and foreign-key violations become `Conflict::Duplicate` and
//!   `Conflict::Reference` for the shared layer to map), plus the sqlx calls that are the same
//!   on both backends.
//! - **Validation** (`accounts`, `limits`, `oauth`, `relationships`, `service_accounts`,
//!   `webhooks`, private):
//!   input checks, decoding of stored values and continuation tokens, shared by everything
//!   above.
//!
//! # Adding an aggregate
//! 1. Define its records and one async trait in `trustgate-store-api`, and add the trait to
//!    `Store` if the binary's wiring needs it.
//! 2. Add `migrations/sqlite/NNNN_*.sql` and `migrations/postgres/NNNN_*.sql` with the same
//!    number (both backends report the same schema version; a backend with nothing to change
//!    gets a migration that does nothing). SQLite tables are `STRICT` and store times as
//!    INTEGER microseconds.
//! 3. Write its checks in a validation module and its SQL, row mapping and transactions once in
//!    the shared layer, as `impl<D: Database> YourStore for SqlStore<D>`, using the layer's
//!    transaction modes, row locks and serializations; only if the SQL truly cannot be shared
//!    does the `Database` trait grow a dialect piece (implemented by both backends).
//! 4. Test it on both backends with `test_on_both_backends!` (feature `test-support`) in `tests/it/` (the PostgreSQL
//!    variant runs when `TRUSTGATE_TEST_DATABASE_URL` is set), including the races its trait
//!    documents.
//!
//! Blocking database work never runs on the async executor: sqlx drives SQLite on dedicated
//! worker threads and PostgreSQL over async sockets.

mod accounts;
mod driver;
mod limits;
mod oauth;
pub mod postgres;
mod relationships;
mod service_accounts;
mod sql;
pub mod sqlite;
#[cfg(feature = "test-support")]
pub mod testing;
mod webhooks;

pub use sql::SqlStore;

use std::sync::Arc;
use std::time::Duration;

use trustgate_store_api::{Backend, Store, StoreError};

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Upper bound of pooled connections.
    pub max_connections: u32,
    /// How long to wait for a connection before reporting the database unavailable.
    pub acquire_timeout: Duration,
    /// PostgreSQL only: the schema to use (created if missing). `None` uses the server default.
    pub postgres_schema: Option<String>,
    /// SQLite only: how a commit is made durable.
    pub sqlite_synchronous: Synchronous,
    /// SQLite only: the most pages the database file may have (`PRAGMA max_page_count`, on
    /// every connection); a write that needs more fails with `StoreError::StorageFull`, as on a
    /// full disk. `None` leaves SQLite's limit (the disk is the limit).
    pub sqlite_max_pages: Option<u32>,
}

/// SQLite only: when a commit reaches the disk (`PRAGMA synchronous`, in WAL mode).
///
/// Either way a commit survives `kill -9` of the process (the OS holds the written WAL); they
/// differ when the OS crashes or the power fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Every commit is synced to the disk before it is acknowledged: an acknowledged write
    /// survives an OS crash or a power failure. The default.
    #[default]
    Full,
    /// The WAL is synced only at checkpoints: faster commits, but the last acknowledged writes
    /// before an OS crash or a power failure may be lost (the database stays consistent).
    Normal,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(3),
            postgres_schema: None,
            sqlite_synchronous: Synchronous::Full,
            sqlite_max_pages: None,
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
