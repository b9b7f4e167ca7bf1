//! The embedded SQLite backend.
//!
//! One database file in WAL mode, foreign keys enforced, a busy timeout so that concurrent
//! writers from the pool wait instead of failing. Commits are synced to the disk before they
//! return (`synchronous=FULL`) unless [`Synchronous::Normal`] trades the last commits before an
//! OS crash for speed. A full disk (or `max_page_count`) fails the write with
//! [`StoreError::StorageFull`] and a read-only file with [`StoreError::ReadOnly`]; the
//! transaction is rolled back, so nothing is half-written. SQLite allows only one trustgate process per
//! file: [`SqliteStore::connect`] takes an exclusive OS lock on `<database>.lock` and holds it for
//! the lifetime of the store, so a second `serve` fails with [`StoreError::Locked`] instead of
//! corrupting anything. The lock is released by the OS when the process dies, including on
//! `kill -9`.
//!
//! What this backend supplies to the shared SQL layer (see the crate documentation):
//! - codecs: times are INTEGER microseconds since the Unix epoch (exact comparisons and order in
//!   SQL; migration 0005 converted the TEXT times of 0001–0002), JSON is TEXT, booleans are
//!   INTEGER 0/1;
//! - locking: a write transaction is `BEGIN IMMEDIATE`, which takes the one write lock before the
//!   first read, so transactions that read before they write run one after the other (up to the
//!   busy timeout) and never fail on a stale snapshot; row locks and advisory locks are therefore
//!   empty. A snapshot is a deferred transaction, which in WAL mode reads one snapshot;
//! - dialect: `max(a, b)` for the larger of two values; at most 32,766 parameters a statement,
//!   and multi-row statements (an import's) of about 700, since sqlx binds in time quadratic in
//!   a statement's parameters.

pub mod backup;

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Arguments, Row as _};
use time::OffsetDateTime;
use trustgate_store_api::{Backend, Health, MigrationReport, StoreError};

use crate::driver::{encode_error, migrations, plain_row_methods, sqlx_methods, store_error};
use crate::relationships::{from_unix_micros, normalize_time, unix_micros};
use crate::sql::{Arg, Database, On, Row, RowLock, Serial, SqlStore, TxMode};
use crate::{ConnectOptions, Synchronous};

migrations!(
    SqlitePool,
    "./migrations/sqlite",
    "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
);

/// A SQLite database file: the store of the embedded default deployment.
pub type SqliteStore = SqlStore<Sqlite>;

/// The SQLite database behind a [`SqliteStore`]: its pool and the process-exclusive lock.
#[derive(Debug)]
pub struct Sqlite {
    pool: SqlitePool,
    // Held, never read: dropping the file releases the process-exclusive lock. `None` for an
    // in-memory database, which no other process can open.
    _lock: Option<File>,
}

impl SqlStore<Sqlite> {
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
        create_private(&path)?;
        let mut connect = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl(e.to_string()))?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match options.sqlite_synchronous {
                Synchronous::Full => SqliteSynchronous::Full,
                Synchronous::Normal => SqliteSynchronous::Normal,
            })
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        if let Some(pages) = options.sqlite_max_pages {
            connect = connect.pragma("max_page_count", pages.to_string());
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            // A connection idle in the pool has had its pending rollback flushed. If it still
            // counts an open transaction, the rollback failed (SQLite had already rolled back
            // on a full disk and refuses a second ROLLBACK), and every `BEGIN IMMEDIATE` on it
            // would fail: it is closed instead of handed out.
            .before_acquire(|conn, _| {
                let usable = !sqlx::Connection::is_in_transaction(conn);
                Box::pin(async move { Ok(usable) })
            })
            .connect_with(connect)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(_) | sqlx::Error::Io(_) => StoreError::Io {
                    path: path.clone(),
                    source: std::io::Error::other(e.to_string()),
                },
                other => store_error(other),
            })?;
        Ok(SqlStore::new(Sqlite {
            pool,
            _lock: Some(lock),
        }))
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
            .map_err(store_error)?;
        Ok(SqlStore::new(Sqlite { pool, _lock: None }))
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

/// Creates the database file, readable by its owner only, if it does not exist. It holds password
/// hashes, token digests, sealed keys and the audit trail; SQLite gives its `-wal` and `-shm`
/// files the database file's permissions, so they are private too.
fn create_private(database: &Path) -> Result<(), StoreError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(database) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StoreError::Io {
            path: database.to_path_buf(),
            source,
        }),
    }
}

fn acquire_lock(database: &Path) -> Result<File, StoreError> {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    let lock_file = PathBuf::from(name);
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let file = options.open(&lock_file).map_err(|source| StoreError::Io {
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

/// How times are stored: microseconds since the Unix epoch, in UTC.
fn micros(t: OffsetDateTime) -> i64 {
    unix_micros(normalize_time(t))
}

fn arguments(args: &[Arg<'_>]) -> Result<SqliteArguments, StoreError> {
    let mut out = SqliteArguments::default();
    for arg in args {
        match *arg {
            Arg::Text(v) | Arg::Json(v) => out.add(v),
            Arg::I64(v) => out.add(v),
            Arg::Bool(v) => out.add(v),
            Arg::Bytes(v) => out.add(v),
            Arg::Time(v) => out.add(v.map(micros)),
        }
        .map_err(encode_error)?;
    }
    Ok(out)
}

impl Row for SqliteRow {
    plain_row_methods!();

    fn time(&self, column: &str) -> Result<OffsetDateTime, StoreError> {
        from_unix_micros(self.try_get(column).map_err(store_error)?)
    }

    fn opt_time(&self, column: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        self.try_get::<Option<i64>, _>(column)
            .map_err(store_error)?
            .map(from_unix_micros)
            .transpose()
    }

    fn json(&self, column: &str) -> Result<&str, StoreError> {
        self.try_get(column).map_err(store_error)
    }

    fn opt_json(&self, column: &str) -> Result<Option<&str>, StoreError> {
        self.try_get(column).map_err(store_error)
    }
}

impl Database for Sqlite {
    const KIND: Backend = Backend::Sqlite;
    const GREATEST: &'static str = "max";
    /// `SQLITE_MAX_VARIABLE_NUMBER` of the bundled SQLite (3.32 and later).
    const MAX_BIND_PARAMS: usize = 32_766;
    /// sqlx looks each parameter up by index among the statement's parameter names, a linear
    /// scan, so binding a statement is quadratic in its parameters: at 32,766 binding took
    /// 95% of an import. A few hundred keep it negligible; the statements are in-process.
    const MULTI_ROW_PARAMS: usize = 702;

    type Row = SqliteRow;
    type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

    fn row_lock(_: RowLock) -> String {
        // The write transaction holds the database's one write lock already.
        String::new()
    }

    async fn begin(&self, mode: TxMode) -> Result<Self::Tx, StoreError> {
        let begin = match mode {
            TxMode::Write => "BEGIN IMMEDIATE",
            TxMode::Snapshot => "BEGIN",
        };
        self.pool.begin_with(begin).await.map_err(store_error)
    }

    async fn serialize(_: &mut Self::Tx, _: Serial) -> Result<(), StoreError> {
        // As with row locks: write transactions already run one at a time.
        Ok(())
    }

    sqlx_methods!(SqliteRow);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::args;

    /// The shared SQL numbers its parameters `$1, $2, …` for both backends: SQLite must bind
    /// `$NNN` to argument NNN whatever the order of first use, however often it is used, and
    /// with more than one digit.
    #[tokio::test]
    async fn dollar_parameters_bind_by_number() {
        let store = SqliteStore::in_memory().await.expect("in-memory database");
        let row = store
            .database()
            .fetch_optional(
                On::Pool,
                "SELECT $2 AS b, $1 AS a, $2 AS b_again, $11 AS k, $10 AS j, \
                 $3 IS NULL AS c_is_null",
                args!["a", "b", None::<&str>, 4, 5, 6, 7, 8, 9, "j", "k"],
            )
            .await
            .expect("query")
            .expect("a row");
        assert_eq!(row.str("a").ok(), Some("a"));
        assert_eq!(row.str("b").ok(), Some("b"));
        assert_eq!(row.str("b_again").ok(), Some("b"));
        assert_eq!(row.str("j").ok(), Some("j"));
        assert_eq!(row.str("k").ok(), Some("k"));
        assert_eq!(row.bool("c_is_null").ok(), Some(true));
    }

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
