//! How the backends drive sqlx: the one place that classifies driver errors into
//! [`StoreError`]s, and the query methods that are the same on every backend (as macros, since
//! they differ only in the driver's types). Only the backends use this module; the shared SQL
//! layer ([`crate::sql`]) sees [`StoreError`]s only.

use std::sync::atomic::{AtomicBool, Ordering};

use trustgate_store_api::{Conflict, StoreError};

/// Classifies an error of the database driver. Unique and foreign-key violations become
/// [`Conflict::Duplicate`] and [`Conflict::Reference`], which the shared layer maps to the
/// conflict of the operation that hit them. A database that cannot serve right now (gone,
/// restarting, busy, out of space, read-only) becomes an outage (`Unavailable`, `StorageFull`,
/// `ReadOnly`) by the database's own error code, so no caller answers it as a defect.
pub(crate) fn store_error(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(Box::new(err)),
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(Conflict::Duplicate(db.message().to_owned()))
        }
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            StoreError::Conflict(Conflict::Reference(db.message().to_owned()))
        }
        sqlx::Error::Database(db) => match db.code().as_deref().map(condition) {
            Some(Condition::Full) => {
                storage_full_noticed(db.message());
                StoreError::StorageFull(Box::new(err))
            }
            Some(Condition::ReadOnly) => StoreError::ReadOnly(Box::new(err)),
            Some(Condition::Unavailable) => StoreError::Unavailable(Box::new(err)),
            Some(Condition::Corrupt) => StoreError::Corrupt(err.to_string()),
            Some(Condition::Other) | None => StoreError::Database(Box::new(err)),
        },
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Corrupt(err.to_string())
        }
        _ => StoreError::Database(Box::new(err)),
    }
}

/// What a database error code says about the database (as opposed to the statement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    Full,
    ReadOnly,
    Unavailable,
    Corrupt,
    Other,
}

/// Reads a database error code: a SQLite (extended) result code as a decimal number, or a
/// PostgreSQL SQLSTATE of five characters.
fn condition(code: &str) -> Condition {
    if let Ok(extended) = code.parse::<i64>() {
        // SQLite: the primary result code is the low byte of the extended one.
        return match extended & 0xff {
            13 => Condition::Full,           // SQLITE_FULL: the disk, or max_page_count
            8 => Condition::ReadOnly,        // SQLITE_READONLY (file, directory, mount)
            5 | 6 => Condition::Unavailable, // SQLITE_BUSY / LOCKED past the busy timeout
            10 | 14 | 15 => Condition::Unavailable, // IOERR, CANTOPEN, PROTOCOL
            11 | 26 => Condition::Corrupt,   // SQLITE_CORRUPT, SQLITE_NOTADB
            _ => Condition::Other,
        };
    }
    match code {
        // disk_full
        "53100" => Condition::Full,
        // read_only_sql_transaction: a hot standby, or default_transaction_read_only
        "25006" => Condition::ReadOnly,
        // insufficient resources (too many connections, out of memory); admin_shutdown,
        // crash_shutdown, cannot_connect_now (starting up or shutting down);
        // database_dropped; idle or transaction timeouts ending the session
        "53000" | "53200" | "53300" | "53400" | "57P01" | "57P02" | "57P03" | "57P04" | "57P05"
        | "25P03" => Condition::Unavailable,
        // data_corrupted, index_corrupted
        "XX001" | "XX002" => Condition::Corrupt,
        // connection_exception and its subclasses
        _ if code.starts_with("08") => Condition::Unavailable,
        _ => Condition::Other,
    }
}

/// Whether the last write found the storage full; cleared by the next committed write.
/// Process-wide, as a process serves one database (tests with several only share log lines).
static STORAGE_FULL: AtomicBool = AtomicBool::new(false);

/// Logs that the storage is full once per episode (a full disk fails every write, and one line
/// per failed request would only fill the disk further); [`storage_freed`] ends the episode.
fn storage_full_noticed(detail: &str) {
    if !STORAGE_FULL.swap(true, Ordering::Relaxed) {
        tracing::error!(
            error = detail,
            "database storage is full: writes fail with storage_full (nothing half-written) \
             until space is freed; reads keep working"
        );
    }
}

/// A write committed: if the storage was full, it has room again.
pub(crate) fn storage_freed() {
    if STORAGE_FULL.load(Ordering::Relaxed) && STORAGE_FULL.swap(false, Ordering::Relaxed) {
        tracing::info!("database storage has room again: writes succeed");
    }
}

/// Classifies an error of running migrations: an unreachable database stays
/// [`StoreError::Unavailable`], anything else is [`StoreError::Migration`].
pub(crate) fn migrate_error(err: sqlx::migrate::MigrateError) -> StoreError {
    match err {
        sqlx::migrate::MigrateError::Execute(e) => match store_error(e) {
            unavailable @ StoreError::Unavailable(_) => unavailable,
            other => StoreError::Migration(Box::new(other)),
        },
        other => StoreError::Migration(Box::new(other)),
    }
}

/// An argument the driver could not encode.
pub(crate) fn encode_error(err: sqlx::error::BoxDynError) -> StoreError {
    StoreError::Database(err)
}

/// A backend's migrations: `static MIGRATOR` (the files under `migrations/<dir>`, embedded at
/// compile time) and `async fn applied_version(&Pool)`, the newest migration applied (0 before
/// the first), given the backend's query telling whether sqlx's bookkeeping table exists.
macro_rules! migrations {
    ($pool:ty, $dir:tt, $table_exists:tt) => {
        static MIGRATOR: ::sqlx::migrate::Migrator = ::sqlx::migrate!($dir);

        async fn applied_version(pool: &$pool) -> Result<i64, StoreError> {
            let exists: bool = ::sqlx::query_scalar($table_exists)
                .fetch_one(pool)
                .await
                .map_err($crate::driver::store_error)?;
            if !exists {
                return Ok(0);
            }
            let version: Option<i64> =
                ::sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
                    .fetch_one(pool)
                    .await
                    .map_err($crate::driver::store_error)?;
            Ok(version.unwrap_or(0))
        }
    };
}
pub(crate) use migrations;

/// The `store.query` span of one statement (debug level: exported inside a request when traces
/// are on, a disabled callsite otherwise), naming only the statement's first keyword.
pub(crate) fn query_span(sql: &str) -> tracing::Span {
    tracing::debug_span!("store.query", db.operation = operation(sql))
}

/// The statement's first keyword (`SELECT`, `INSERT`, ...): never the statement's values.
fn operation(sql: &str) -> &str {
    let sql = sql.trim_start();
    let end = sql
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(sql.len());
    &sql[..end]
}

/// The methods of [`crate::sql::Database`] that drive sqlx alike on every backend, written once
/// for the two `impl Database` blocks. Expanded inside such a block, it expects there: a
/// `fn arguments(&[Arg]) -> Result<<DB as sqlx::Database>::Arguments, StoreError>` (the
/// backend's encoding of neutral arguments), a `pool` field, and what [`migrations!`] defines.
macro_rules! sqlx_methods {
    ($row:ty) => {
        async fn commit(tx: Self::Tx) -> Result<(), StoreError> {
            tx.commit().await.map_err($crate::driver::store_error)?;
            $crate::driver::storage_freed();
            Ok(())
        }

        async fn execute(
            &self,
            on: On<'_, Self::Tx>,
            sql: &str,
            args: &[Arg<'_>],
        ) -> Result<u64, StoreError> {
            let query = ::sqlx::query_with(::sqlx::AssertSqlSafe(sql), arguments(args)?);
            let done = ::tracing::Instrument::instrument(
                async {
                    match on {
                        On::Pool => query.execute(&self.pool).await,
                        On::Tx(tx) => query.execute(&mut **tx).await,
                    }
                },
                $crate::driver::query_span(sql),
            )
            .await;
            Ok(done.map_err($crate::driver::store_error)?.rows_affected())
        }

        async fn fetch_optional(
            &self,
            on: On<'_, Self::Tx>,
            sql: &str,
            args: &[Arg<'_>],
        ) -> Result<Option<$row>, StoreError> {
            let query = ::sqlx::query_with(::sqlx::AssertSqlSafe(sql), arguments(args)?);
            ::tracing::Instrument::instrument(
                async {
                    match on {
                        On::Pool => query.fetch_optional(&self.pool).await,
                        On::Tx(tx) => query.fetch_optional(&mut **tx).await,
                    }
                },
                $crate::driver::query_span(sql),
            )
            .await
            .map_err($crate::driver::store_error)
        }

        async fn fetch_all(
            &self,
            on: On<'_, Self::Tx>,
            sql: &str,
            args: &[Arg<'_>],
        ) -> Result<Vec<$row>, StoreError> {
            let query = ::sqlx::query_with(::sqlx::AssertSqlSafe(sql), arguments(args)?);
            ::tracing::Instrument::instrument(
                async {
                    match on {
                        On::Pool => query.fetch_all(&self.pool).await,
                        On::Tx(tx) => query.fetch_all(&mut **tx).await,
                    }
                },
                $crate::driver::query_span(sql),
            )
            .await
            .map_err($crate::driver::store_error)
        }

        async fn for_each<F>(
            &self,
            on: On<'_, Self::Tx>,
            sql: &str,
            args: &[Arg<'_>],
            mut each: F,
        ) -> Result<(), StoreError>
        where
            F: FnMut(&$row) -> Result<(), StoreError> + Send,
        {
            let query = ::sqlx::query_with(::sqlx::AssertSqlSafe(sql), arguments(args)?);
            let mut rows = match on {
                On::Pool => query.fetch(&self.pool),
                On::Tx(tx) => query.fetch(&mut **tx),
            };
            let span = $crate::driver::query_span(sql);
            ::tracing::Instrument::instrument(
                async {
                    while let Some(row) = ::futures::TryStreamExt::try_next(&mut rows)
                        .await
                        .map_err($crate::driver::store_error)?
                    {
                        each(&row)?;
                    }
                    Ok(())
                },
                span,
            )
            .await
        }

        async fn migrate(&self) -> Result<MigrationReport, StoreError> {
            let before = applied_version(&self.pool).await?;
            MIGRATOR
                .run(&self.pool)
                .await
                .map_err($crate::driver::migrate_error)?;
            let after = applied_version(&self.pool).await?;
            Ok(MigrationReport { before, after })
        }

        async fn health(&self) -> Result<Health, StoreError> {
            Ok(Health {
                expected_version: MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0),
                applied_version: applied_version(&self.pool).await?,
            })
        }

        async fn close(&self) {
            self.pool.close().await;
        }
    };
}
pub(crate) use sqlx_methods;

/// The methods of [`crate::sql::Row`] that every driver decodes natively, for a backend's
/// `impl Row` block, which adds `time`, `opt_time`, `json` and `opt_json` (its own codecs).
macro_rules! plain_row_methods {
    () => {
        fn str(&self, column: &str) -> Result<&str, StoreError> {
            ::sqlx::Row::try_get(self, column).map_err($crate::driver::store_error)
        }

        fn opt_str(&self, column: &str) -> Result<Option<&str>, StoreError> {
            ::sqlx::Row::try_get(self, column).map_err($crate::driver::store_error)
        }

        fn i64(&self, column: &str) -> Result<i64, StoreError> {
            ::sqlx::Row::try_get(self, column).map_err($crate::driver::store_error)
        }

        fn opt_i64(&self, column: &str) -> Result<Option<i64>, StoreError> {
            ::sqlx::Row::try_get(self, column).map_err($crate::driver::store_error)
        }

        fn bool(&self, column: &str) -> Result<bool, StoreError> {
            ::sqlx::Row::try_get(self, column).map_err($crate::driver::store_error)
        }

        fn bytes(&self, column: &str) -> Result<&[u8], StoreError> {
            ::sqlx::Row::try_get(self, column).map_err($crate::driver::store_error)
        }

        fn opt_bytes(&self, column: &str) -> Result<Option<&[u8]>, StoreError> {
            ::sqlx::Row::try_get(self, column).map_err($crate::driver::store_error)
        }
    };
}
pub(crate) use plain_row_methods;
