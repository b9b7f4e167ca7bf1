//! The PostgreSQL backend, for several stateless replicas sharing one database.
//!
//! Migrations take PostgreSQL's advisory lock (sqlx does), so replicas starting together apply
//! them once. With [`ConnectOptions::postgres_schema`] every connection's `search_path` is set to
//! that schema, which lets several deployments (or test runs) share one database in isolation.
//! The pool reconnects on its own: when the server comes back, the next query succeeds without a
//! restart. Every connection runs with `synchronous_commit = on`, so a write is acknowledged only
//! once its commit is durable, whatever the server's configuration says.
//!
//! What this backend supplies to the shared SQL layer (see the crate documentation):
//! - codecs: times are TIMESTAMPTZ (microseconds, UTC), JSON is JSONB (sent and read as its
//!   text, so both backends parse alike), booleans are BOOLEAN;
//! - locking: transactions run at READ COMMITTED; a read that a write depends on takes the row
//!   lock the shared layer names (`FOR UPDATE`, `FOR NO KEY UPDATE`, `FOR SHARE`,
//!   `FOR KEY SHARE`), and what has no row to lock takes a transaction-scoped advisory lock
//!   (for the username/email namespace and key rotation). A snapshot is
//!   `REPEATABLE READ READ ONLY`, which reads one snapshot without blocking writers;
//! - dialect: `GREATEST(a, b)` for the larger of two values; at most 65,535 parameters a
//!   statement (multi-row statements, such as an import's, are chunked below it).

use std::str::FromStr;

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{
    PgArgumentBuffer, PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow, PgTypeInfo,
    PgValueFormat, PgValueRef,
};
use sqlx::{Arguments, AssertSqlSafe, Row as _, ValueRef};
use time::OffsetDateTime;
use trustgate_store_api::{Backend, Health, MigrationReport, StoreError};

use crate::ConnectOptions;
use crate::driver::{encode_error, migrations, plain_row_methods, sqlx_methods, store_error};
use crate::relationships::normalize_time;
use crate::sql::{Arg, Database, On, Row, RowLock, Serial, SqlStore, TxMode};

migrations!(
    PgPool,
    "./migrations/postgres",
    "SELECT to_regclass('_sqlx_migrations') IS NOT NULL"
);

/// A PostgreSQL database (optionally one schema of it).
pub type PostgresStore = SqlStore<Postgres>;

/// The PostgreSQL database behind a [`PostgresStore`]: its pool.
#[derive(Debug)]
pub struct Postgres {
    pool: PgPool,
}

impl SqlStore<Postgres> {
    /// Connects to `url`, creating the configured schema if it does not exist.
    pub async fn connect(url: &str, options: &ConnectOptions) -> Result<Self, StoreError> {
        let mut connect =
            PgConnectOptions::from_str(url).map_err(|e| StoreError::InvalidUrl(e.to_string()))?;
        if let Some(schema) = &options.postgres_schema {
            if !is_plain_identifier(schema) {
                return Err(StoreError::InvalidUrl(format!(
                    "schema name {schema:?} must be lowercase letters, digits and underscores"
                )));
            }
            // Created over a one-off connection so the pool's search_path can point at it.
            let admin = PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connect.clone())
                .await
                .map_err(store_error)?;
            // The name was checked by is_plain_identifier: no quoting or injection is possible.
            sqlx::query(AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}"
            )))
            .execute(&admin)
            .await
            .map_err(store_error)?;
            admin.close().await;
            connect = connect.options([("search_path", schema.as_str())]);
        }
        // An answer follows a commit that is on disk (and on synchronous standbys), whatever
        // the server's or the URL's default: with `off` an acknowledged write could be lost in a
        // crash. Later options win, so this one is set last.
        let connect = connect.options([("synchronous_commit", "on")]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(store_error)?;
        Ok(SqlStore::new(Postgres { pool }))
    }

    /// Drops `schema` and everything in it. Used to clean up isolated test schemas.
    pub async fn drop_schema(url: &str, schema: &str) -> Result<(), StoreError> {
        if !is_plain_identifier(schema) {
            return Err(StoreError::InvalidUrl(format!(
                "bad schema name {schema:?}"
            )));
        }
        let connect =
            PgConnectOptions::from_str(url).map_err(|e| StoreError::InvalidUrl(e.to_string()))?;
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(connect)
            .await
            .map_err(store_error)?;
        sqlx::query(AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE"
        )))
        .execute(&pool)
        .await
        .map_err(store_error)?;
        pool.close().await;
        Ok(())
    }
}

fn is_plain_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The key of the advisory lock of a [`Serial`] (arbitrary fixed values).
fn advisory_key(what: Serial) -> i64 {
    match what {
        Serial::Logins => 0x7472_7573_7467_6c6e,
        Serial::SigningKeys => 0x7472_7573_7467_6b79,
    }
}

/// JSON text bound as JSONB (its binary form is a version byte and the text).
struct Jsonb<'a>(&'a str);

impl sqlx::Type<sqlx::Postgres> for Jsonb<'_> {
    fn type_info() -> PgTypeInfo {
        <sqlx::types::Json<()> as sqlx::Type<sqlx::Postgres>>::type_info()
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for Jsonb<'_> {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        buf.push(1);
        buf.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
}

/// The text of a JSON or JSONB value, borrowed from the row.
struct JsonText<'r>(&'r str);

impl sqlx::Type<sqlx::Postgres> for JsonText<'_> {
    fn type_info() -> PgTypeInfo {
        <sqlx::types::Json<()> as sqlx::Type<sqlx::Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <sqlx::types::Json<()> as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for JsonText<'r> {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let binary_jsonb = value.format() == PgValueFormat::Binary
            && *value.type_info() == <JsonText<'_> as sqlx::Type<sqlx::Postgres>>::type_info();
        let bytes = value.as_bytes()?;
        let text = match bytes.split_first() {
            Some((1, text)) if binary_jsonb => text,
            _ if binary_jsonb => return Err("unsupported JSONB format version".into()),
            _ => bytes,
        };
        Ok(JsonText(std::str::from_utf8(text)?))
    }
}

fn arguments(args: &[Arg<'_>]) -> Result<PgArguments, StoreError> {
    let mut out = PgArguments::default();
    for arg in args {
        match *arg {
            Arg::Text(v) => out.add(v),
            Arg::I64(v) => out.add(v),
            Arg::Bool(v) => out.add(v),
            Arg::Bytes(v) => out.add(v),
            Arg::Time(v) => out.add(v.map(normalize_time)),
            Arg::Json(v) => out.add(v.map(Jsonb)),
        }
        .map_err(encode_error)?;
    }
    Ok(out)
}

impl Row for PgRow {
    plain_row_methods!();

    fn time(&self, column: &str) -> Result<OffsetDateTime, StoreError> {
        self.try_get(column).map_err(store_error)
    }

    fn opt_time(&self, column: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        self.try_get(column).map_err(store_error)
    }

    fn json(&self, column: &str) -> Result<&str, StoreError> {
        self.try_get::<JsonText<'_>, _>(column)
            .map(|j| j.0)
            .map_err(store_error)
    }

    fn opt_json(&self, column: &str) -> Result<Option<&str>, StoreError> {
        Ok(self
            .try_get::<Option<JsonText<'_>>, _>(column)
            .map_err(store_error)?
            .map(|j| j.0))
    }
}

impl Database for Postgres {
    const KIND: Backend = Backend::Postgres;
    const GREATEST: &'static str = "GREATEST";
    /// The wire protocol counts a statement's parameters in 16 bits.
    const MAX_BIND_PARAMS: usize = 65_535;
    /// Each statement is a round trip: as large as allowed.
    const MULTI_ROW_PARAMS: usize = 65_535;

    type Row = PgRow;
    type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

    fn row_lock(lock: RowLock) -> String {
        match lock {
            RowLock::Update => " FOR UPDATE".to_owned(),
            RowLock::UpdateOf(tables) => format!(" FOR UPDATE OF {tables}"),
            RowLock::NoKeyUpdate => " FOR NO KEY UPDATE".to_owned(),
            RowLock::Share => " FOR SHARE".to_owned(),
            RowLock::KeyShare => " FOR KEY SHARE".to_owned(),
            RowLock::UpdateSkipLocked => " FOR UPDATE SKIP LOCKED".to_owned(),
        }
    }

    async fn begin(&self, mode: TxMode) -> Result<Self::Tx, StoreError> {
        match mode {
            TxMode::Write => self.pool.begin().await,
            TxMode::Snapshot => {
                self.pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await
            }
        }
        .map_err(store_error)
    }

    async fn serialize(tx: &mut Self::Tx, what: Serial) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(advisory_key(what))
            .execute(&mut **tx)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    sqlx_methods!(PgRow);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Durability does not depend on the server's or the URL's `synchronous_commit`.
    #[tokio::test]
    async fn commits_are_synchronous_even_when_the_url_says_otherwise() {
        let Some(url) = crate::testing::postgres_url("commits_are_synchronous") else {
            return;
        };
        let separator = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{separator}options=-c%20synchronous_commit%3Doff");
        let store = PostgresStore::connect(&url, &ConnectOptions::default())
            .await
            .expect("connect");
        let (setting,): (String,) = sqlx::query_as("SHOW synchronous_commit")
            .fetch_one(&store.database().pool)
            .await
            .expect("show");
        assert_eq!(setting, "on");
    }
}
