//! How driver errors become [`StoreError`]s: the one place that classifies them.

use trustgate_store_api::{Conflict, StoreError};

/// Converts an error of the database driver (or passes a [`StoreError`] through).
pub(crate) trait IntoStoreError {
    fn into_store_error(self) -> StoreError;
}

impl IntoStoreError for StoreError {
    fn into_store_error(self) -> StoreError {
        self
    }
}

impl IntoStoreError for sqlx::Error {
    fn into_store_error(self) -> StoreError {
        match &self {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(Box::new(self)),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(Conflict::Duplicate(db.message().to_owned()))
            }
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                StoreError::Conflict(Conflict::Reference(db.message().to_owned()))
            }
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                StoreError::Corrupt(self.to_string())
            }
            _ => StoreError::Database(Box::new(self)),
        }
    }
}

impl IntoStoreError for sqlx::migrate::MigrateError {
    fn into_store_error(self) -> StoreError {
        match self {
            sqlx::migrate::MigrateError::Execute(e) => match e.into_store_error() {
                unavailable @ StoreError::Unavailable(_) => unavailable,
                other => StoreError::Migration(Box::new(other)),
            },
            other => StoreError::Migration(Box::new(other)),
        }
    }
}

/// For `map_err`: any driver error as a [`StoreError`].
pub(crate) fn db<E: IntoStoreError>(err: E) -> StoreError {
    err.into_store_error()
}
