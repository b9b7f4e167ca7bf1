use std::path::PathBuf;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no supported backend.
    #[error("invalid database url: {0}")]
    InvalidUrl(String),
    /// Another process holds the SQLite database.
    #[error(
        "database {} is in use by another trustgate process (lock file {} is held); \
         stop it first, or run several replicas on PostgreSQL",
        database.display(), lock_file.display()
    )]
    Locked {
        /// The database file.
        database: PathBuf,
        /// The lock file next to it.
        lock_file: PathBuf,
    },
    /// The database directory or file cannot be created or opened.
    #[error("cannot open database at {}: {source}", path.display())]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The database cannot be reached right now; retrying later may succeed.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The input is empty, malformed or absurdly large; nothing was read or written.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A continuation token that this store did not issue for this operation.
    #[error("invalid continuation token")]
    InvalidContinuationToken,
    /// The named record (e.g. a relationship store) does not exist or was deleted.
    #[error("not found: {0}")]
    NotFound(String),
    /// A uniqueness or foreign-key rule was violated.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Migrations failed to apply.
    #[error("migration failed: {0}")]
    Migration(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err.to_string()),
            sqlx::Error::Database(db)
                if db.is_unique_violation() || db.is_foreign_key_violation() =>
            {
                StoreError::Conflict(db.message().to_owned())
            }
            _ => StoreError::Database(err.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        match err {
            sqlx::migrate::MigrateError::Execute(e) => match StoreError::from(e) {
                StoreError::Unavailable(m) => StoreError::Unavailable(m),
                other => StoreError::Migration(other.to_string()),
            },
            other => StoreError::Migration(other.to_string()),
        }
    }
}
