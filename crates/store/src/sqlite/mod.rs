//! The embedded SQLite backend.
//!
//! One database file in WAL mode, foreign keys enforced, a busy timeout so that concurrent
//! writers from the pool wait instead of failing. SQLite allows only one trustgate process per
//! file: [`SqliteStore::connect`] takes an exclusive OS lock on `<database>.lock` and holds it for
//! the lifetime of the store, so a second `serve` fails with [`StoreError::Locked`] instead of
//! corrupting anything. The lock is released by the OS when the process dies, including on
//! `kill -9`.

mod accounts;
mod oauth;
mod relationships;

use crate::error::db;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use time::OffsetDateTime;
use trustgate_core::TokenDigest;

use crate::ConnectOptions;
use crate::relationships::{from_unix_micros, normalize_time, unix_micros};
use crate::service_accounts::role_from_db;
use trustgate_store_api::EnsuredToken;
use trustgate_store_api::{
    AccountRole, Backend, Conflict, Health, MigrationReport, ServiceAccount, ServiceAccountStore,
    Store, StoreError,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// A SQLite database file.
#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    // Held, never read: dropping the file releases the process-exclusive lock. `None` for an
    // in-memory database, which no other process can open.
    _lock: Option<File>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database named by `url` (`sqlite://PATH`).
    pub async fn connect(url: &str, options: &ConnectOptions) -> Result<Self, StoreError> {
        let path = database_path(url)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let lock = acquire_lock(&path)?;
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl(e.to_string()))?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(_) | sqlx::Error::Io(_) => StoreError::Io {
                    path: path.clone(),
                    source: std::io::Error::other(e.to_string()),
                },
                other => db(other),
            })?;
        Ok(Self {
            pool,
            _lock: Some(lock),
        })
    }

    /// A private in-memory database on one connection that lives as long as the store: the
    /// real backend, without a file, for tests of the crates above. Not migrated yet.
    pub async fn in_memory() -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|e| StoreError::InvalidUrl(e.to_string()))?
            .foreign_keys(true);
        // Every connection to `:memory:` is a database of its own: one connection that is never
        // closed or recycled keeps the one database alive.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(connect)
            .await
            .map_err(db)?;
        Ok(Self { pool, _lock: None })
    }
}

/// The file path inside a `sqlite://` or `sqlite:` URL (query string removed).
fn database_path(url: &str) -> Result<PathBuf, StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::InvalidUrl("expected sqlite://PATH".into()))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::InvalidUrl(
            "sqlite:// needs a file path (an in-memory database would lose all data)".into(),
        ));
    }
    Ok(PathBuf::from(path))
}

fn acquire_lock(database: &Path) -> Result<File, StoreError> {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    let lock_file = PathBuf::from(name);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_file)
        .map_err(|source| StoreError::Io {
            path: lock_file.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StoreError::Locked {
            database: database.to_path_buf(),
            lock_file,
        }),
        Err(TryLockError::Error(source)) => Err(StoreError::Io {
            path: lock_file,
            source,
        }),
    }
}

async fn applied_version(pool: &SqlitePool) -> Result<i64, StoreError> {
    let table_exists: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_one(pool)
    .await
    .map_err(db)?;
    if table_exists == 0 {
        return Ok(0);
    }
    let version: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await
            .map_err(db)?;
    Ok(version.unwrap_or(0))
}

fn expected_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        let before = applied_version(&self.pool).await.map_err(db)?;
        MIGRATOR.run(&self.pool).await.map_err(db)?;
        let after = applied_version(&self.pool).await.map_err(db)?;
        Ok(MigrationReport { before, after })
    }

    async fn health(&self) -> Result<Health, StoreError> {
        Ok(Health {
            expected_version: expected_version(),
            applied_version: applied_version(&self.pool).await.map_err(db)?,
        })
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

fn account_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<ServiceAccount, StoreError> {
    Ok(ServiceAccount {
        id: row.try_get("id").map_err(db)?,
        name: row.try_get("name").map_err(db)?,
        role: role_from_db(row.try_get::<&str, _>("role").map_err(db)?)?,
        created_at: from_unix_micros(row.try_get("created_at").map_err(db)?)?,
        disabled_at: row
            .try_get::<Option<i64>, _>("disabled_at")
            .map_err(db)?
            .map(from_unix_micros)
            .transpose()?,
    })
}

#[async_trait]
impl ServiceAccountStore for SqliteStore {
    async fn find_service_account(&self, name: &str) -> Result<Option<ServiceAccount>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, role, created_at, disabled_at FROM service_accounts WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn create_service_account(
        &self,
        account_id: &str,
        name: &str,
        role: AccountRole,
        digest: &TokenDigest,
        token_label: &str,
        now: OffsetDateTime,
    ) -> Result<Option<ServiceAccount>, StoreError> {
        let now = normalize_time(now);
        let mut tx = self.pool.begin().await.map_err(db)?;
        let created = sqlx::query(
            "INSERT INTO service_accounts (id, name, role, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(account_id)
        .bind(name)
        .bind(role.as_str())
        .bind(unix_micros(now))
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected()
            == 1;
        if !created {
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO service_tokens (digest, account_id, label, created_at) \
             VALUES (?, ?, ?, ?)",
        )
        .bind(digest.as_bytes().as_slice())
        .bind(account_id)
        .bind(token_label)
        .bind(unix_micros(now))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Some(ServiceAccount {
            id: account_id.to_owned(),
            name: name.to_owned(),
            role,
            created_at: now,
            disabled_at: None,
        }))
    }

    async fn ensure_account_token(
        &self,
        account_id: &str,
        name: &str,
        role: AccountRole,
        digest: &TokenDigest,
        token_label: &str,
        now: OffsetDateTime,
    ) -> Result<EnsuredToken, StoreError> {
        let now = normalize_time(now);
        let mut tx = self.pool.begin().await.map_err(db)?;
        let account_created = sqlx::query(
            "INSERT INTO service_accounts (id, name, role, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(account_id)
        .bind(name)
        .bind(role.as_str())
        .bind(unix_micros(now))
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected()
            == 1;
        let row = sqlx::query(
            "SELECT id, name, role, created_at, disabled_at FROM service_accounts WHERE name = ?",
        )
        .bind(name)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        let account = account_from_row(&row)?;
        let token_created = sqlx::query(
            "INSERT INTO service_tokens (digest, account_id, label, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest.as_bytes().as_slice())
        .bind(&account.id)
        .bind(token_label)
        .bind(unix_micros(now))
        .execute(&mut *tx)
        .await.map_err(db)?
        .rows_affected()
            == 1;
        if !token_created {
            let owner: String =
                sqlx::query_scalar("SELECT account_id FROM service_tokens WHERE digest = ?")
                    .bind(digest.as_bytes().as_slice())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?;
            if owner != account.id {
                return Err(StoreError::Conflict(Conflict::TokenOwnedElsewhere));
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(EnsuredToken {
            account,
            account_created,
            token_created,
        })
    }

    async fn authenticate_service_token(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<ServiceAccount>, StoreError> {
        let row = sqlx::query(
            "SELECT a.id, a.name, a.role, a.created_at, a.disabled_at \
             FROM service_tokens t JOIN service_accounts a ON a.id = t.account_id \
             WHERE t.digest = ? AND a.disabled_at IS NULL",
        )
        .bind(digest.as_bytes().as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(account_from_row).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_paths_are_extracted() {
        assert_eq!(
            database_path("sqlite://./data/tg.db").ok(),
            Some(PathBuf::from("./data/tg.db"))
        );
        assert_eq!(
            database_path("sqlite:///abs/tg.db?mode=rwc").ok(),
            Some(PathBuf::from("/abs/tg.db"))
        );
        assert!(database_path("sqlite::memory:").is_err());
        assert!(database_path("sqlite://").is_err());
    }
}
