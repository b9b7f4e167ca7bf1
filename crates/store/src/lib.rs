//! The SQL backends of trustgate's storage.
//!
//! Invariant: this is the only crate that writes SQL. It implements the traits of
//! [`trustgate_store_api`] for two databases:
//!
//! - [`sqlite`]: the embedded default, one file in WAL mode with foreign keys on. An exclusive
//!   lock file next to the database keeps a second process from opening it.
//! - [`postgres`]: for several stateless replicas sharing one database.
//!
//! There is no runtime branching on the backend inside an implementation.
//!
//! Blocking database work never runs on the async executor: sqlx drives SQLite on dedicated
//! worker threads and PostgreSQL over async sockets.

mod accounts;
mod driver;
mod oauth;
pub mod postgres;
mod relationships;
mod service_accounts;
mod sql;
pub mod sqlite;
#[cfg(feature = "test-support")]
pub mod testing;

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
