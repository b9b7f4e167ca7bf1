//! The SQL layer shared by the backends: every statement, row mapping and transaction of the
//! store traits, written once against [`Database`].
//!
//! Invariants:
//! - No driver type appears here. Statements are bound with neutral [`Arg`]s and read through
//!   the neutral [`Row`] accessor; each backend encodes and decodes them with its own codecs
//!   (SQLite stores times as INTEGER microseconds and JSON as TEXT, PostgreSQL uses TIMESTAMPTZ
//!   and JSONB) and converts every driver error into a [`StoreError`] itself, so nothing here
//!   maps driver errors.
//! - SQL text is static or composed from static pieces and the dialect's [`Database::row_lock`]
//!   and [`Database::GREATEST`]; input only ever travels as bound parameters. Parameters are
//!   written `$1, $2, …` on both backends (SQLite reads `$NNN` as parameter NNN), and one
//!   parameter may be used several times.
//! - Locking is the backend's: a write transaction ([`TxMode::Write`]) is `BEGIN IMMEDIATE` on
//!   SQLite (one writer at a time, so a read-then-write is serialized), while PostgreSQL runs at
//!   READ COMMITTED and serializes what needs it with the row locks named by [`RowLock`] and the
//!   advisory locks named by [`Serial`] (no-ops on SQLite).
//! - Conflicts are classified by operation: the backend reports any unique violation as
//!   [`Conflict::Duplicate`] and any foreign-key violation as [`Conflict::Reference`]; a write
//!   into a table whose only unique key is its primary key maps the former to its own kind
//!   ([`unique_is`]), and writes that could break more than one unique rule check them inside
//!   their transaction first.

mod accounts;
mod api_keys;
mod audit;
mod limits;
mod oauth;
mod relationships;
mod service_accounts;
mod webhooks;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;
use trustgate_core::TokenDigest;
use trustgate_store_api::{Conflict, Health, MigrationReport, Store, StoreError};

use crate::relationships::{check_input, check_page_size, finish_page};

/// A value bound to a statement parameter. Every variant is typed, NULL included, because
/// PostgreSQL needs the type of a NULL parameter.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    /// Text.
    Text(Option<&'a str>),
    /// A 64-bit integer.
    I64(Option<i64>),
    /// A boolean (an INTEGER 0/1 on SQLite).
    Bool(bool),
    /// Bytes.
    Bytes(Option<&'a [u8]>),
    /// An instant, stored with microsecond precision in UTC.
    Time(Option<OffsetDateTime>),
    /// JSON text, stored as JSON (JSONB on PostgreSQL).
    Json(Option<&'a str>),
}

impl<'a> Arg<'a> {
    /// JSON text.
    pub fn json(text: &'a str) -> Self {
        Arg::Json(Some(text))
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(Some(v))
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(Some(v))
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::Text(v)
    }
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::I64(Some(v))
    }
}

impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}

impl<'a> From<&'a [u8]> for Arg<'a> {
    fn from(v: &'a [u8]) -> Self {
        Arg::Bytes(Some(v))
    }
}

impl<'a> From<&'a Vec<u8>> for Arg<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        Arg::Bytes(Some(v))
    }
}

impl<'a> From<&'a TokenDigest> for Arg<'a> {
    fn from(v: &'a TokenDigest) -> Self {
        Arg::Bytes(Some(v.as_bytes()))
    }
}

impl<'a> From<Option<&'a TokenDigest>> for Arg<'a> {
    fn from(v: Option<&'a TokenDigest>) -> Self {
        Arg::Bytes(v.map(|d| d.as_bytes().as_slice()))
    }
}

impl From<OffsetDateTime> for Arg<'_> {
    fn from(v: OffsetDateTime) -> Self {
        Arg::Time(Some(v))
    }
}

impl From<Option<OffsetDateTime>> for Arg<'_> {
    fn from(v: Option<OffsetDateTime>) -> Self {
        Arg::Time(v)
    }
}

/// The arguments of a statement, `$1` first: `args![a, b]` is `&[Arg::from(a), Arg::from(b)]`.
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        &[$($crate::sql::Arg::from($value)),*]
    };
}
pub(crate) use args;

/// A result row, read by column name with the backend's codecs. A value that does not decode
/// is [`StoreError::Corrupt`].
pub trait Row: Send + Sync {
    /// Text, borrowed from the row.
    fn str(&self, column: &str) -> Result<&str, StoreError>;
    /// Nullable text.
    fn opt_str(&self, column: &str) -> Result<Option<&str>, StoreError>;
    /// A 64-bit integer.
    fn i64(&self, column: &str) -> Result<i64, StoreError>;
    /// A nullable 64-bit integer.
    fn opt_i64(&self, column: &str) -> Result<Option<i64>, StoreError>;
    /// A boolean.
    fn bool(&self, column: &str) -> Result<bool, StoreError>;
    /// Bytes.
    fn bytes(&self, column: &str) -> Result<&[u8], StoreError>;
    /// Nullable bytes.
    fn opt_bytes(&self, column: &str) -> Result<Option<&[u8]>, StoreError>;
    /// An instant (in UTC).
    fn time(&self, column: &str) -> Result<OffsetDateTime, StoreError>;
    /// A nullable instant.
    fn opt_time(&self, column: &str) -> Result<Option<OffsetDateTime>, StoreError>;
    /// The text of a JSON value.
    fn json(&self, column: &str) -> Result<&str, StoreError>;
    /// The text of a nullable JSON value.
    fn opt_json(&self, column: &str) -> Result<Option<&str>, StoreError>;

    /// Owned text.
    fn text(&self, column: &str) -> Result<String, StoreError> {
        self.str(column).map(str::to_owned)
    }

    /// Owned nullable text.
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        Ok(self.opt_str(column)?.map(str::to_owned))
    }
}

/// How a transaction begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxMode {
    /// Reads and then writes: on SQLite takes the write lock at once (`BEGIN IMMEDIATE`), so
    /// transactions that read before they write run one after the other; on PostgreSQL a READ
    /// COMMITTED transaction whose statements take the locks they need.
    Write,
    /// Only reads, all from one snapshot (`REPEATABLE READ READ ONLY` on PostgreSQL, a deferred
    /// transaction in WAL mode on SQLite) without blocking writers.
    Snapshot,
}

/// A row lock that a `SELECT` in a write transaction takes on PostgreSQL (SQLite's write
/// transaction holds the database lock already, so there it is empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowLock {
    /// `FOR UPDATE`: the row will be changed or its absence acted on.
    Update,
    /// `FOR UPDATE OF` the named tables of a join.
    UpdateOf(&'static str),
    /// `FOR NO KEY UPDATE`: the row will be changed, but not its key.
    NoKeyUpdate,
    /// `FOR SHARE`: the row must not change until commit.
    Share,
    /// `FOR KEY SHARE`: the row must not be deleted until commit.
    KeyShare,
    /// `FOR UPDATE SKIP LOCKED`: claim rows no other transaction is claiming (a work queue).
    UpdateSkipLocked,
}

/// What a transaction serializes against all other transactions doing the same, where there is
/// no row to lock (an advisory lock on PostgreSQL; SQLite's write transaction already does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serial {
    /// The username/email namespace, which is two unique indexes and not one.
    Logins,
    /// Signing key rotation: "the newest key of an algorithm" may not exist yet.
    SigningKeys,
}

/// Where a statement runs: on a pooled connection, or in a transaction.
#[derive(Debug)]
pub enum On<'t, T> {
    /// Any connection of the pool, in a transaction of its own.
    Pool,
    /// The given transaction.
    Tx(&'t mut T),
}

/// What a database supplies to the shared layer: its connections and transactions, its value
/// codecs (inside [`Arg`] binding and [`Row`]), the SQL that really differs, and its locks.
pub trait Database: fmt::Debug + Send + Sync + 'static {
    /// Which backend this is.
    const KIND: trustgate_store_api::Backend;
    /// The function returning the larger of two values (`max` / `GREATEST`).
    const GREATEST: &'static str;
    /// The most parameters one statement may bind.
    const MAX_BIND_PARAMS: usize;
    /// The parameters a multi-row statement (an import's) is sized to, at most
    /// [`Self::MAX_BIND_PARAMS`]: the fastest size, found by measuring.
    const MULTI_ROW_PARAMS: usize;

    /// A result row.
    type Row: Row;
    /// An open transaction. Dropping it rolls back.
    type Tx: Send;

    /// The clause appended to a `SELECT` to take `lock` (empty where the transaction already
    /// serializes, as on SQLite).
    fn row_lock(lock: RowLock) -> String;

    /// Begins a transaction.
    fn begin(&self, mode: TxMode) -> impl Future<Output = Result<Self::Tx, StoreError>> + Send;

    /// Commits a transaction.
    fn commit(tx: Self::Tx) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Serializes the rest of the transaction against others doing `what` until commit.
    fn serialize(
        tx: &mut Self::Tx,
        what: Serial,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Runs a statement and returns how many rows it changed.
    fn execute(
        &self,
        on: On<'_, Self::Tx>,
        sql: &str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Runs a query and returns its first row, if any.
    fn fetch_optional(
        &self,
        on: On<'_, Self::Tx>,
        sql: &str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Option<Self::Row>, StoreError>> + Send;

    /// Runs a query and returns all its rows.
    fn fetch_all(
        &self,
        on: On<'_, Self::Tx>,
        sql: &str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Vec<Self::Row>, StoreError>> + Send;

    /// Runs a query and hands each row to `each` as it arrives, without holding all rows.
    fn for_each<F>(
        &self,
        on: On<'_, Self::Tx>,
        sql: &str,
        args: &[Arg<'_>],
        each: F,
    ) -> impl Future<Output = Result<(), StoreError>> + Send
    where
        F: FnMut(&Self::Row) -> Result<(), StoreError> + Send;

    /// Applies pending migrations.
    fn migrate(&self) -> impl Future<Output = Result<MigrationReport, StoreError>> + Send;

    /// Checks that the database answers and reports the migration state.
    fn health(&self) -> impl Future<Output = Result<Health, StoreError>> + Send;

    /// Closes the connections.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// The store on one database: every trait of [`trustgate_store_api`], implemented once.
pub struct SqlStore<D> {
    db: Arc<D>,
    /// The group-commit queue of nonce spends, started by the first spend.
    spends: std::sync::OnceLock<tokio::sync::mpsc::Sender<limits::PendingSpend>>,
}

impl<D: fmt::Debug> fmt::Debug for SqlStore<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

impl<D: Database> SqlStore<D> {
    pub(crate) fn new(db: D) -> Self {
        Self {
            db: Arc::new(db),
            spends: std::sync::OnceLock::new(),
        }
    }

    /// The database, for tests of a backend.
    #[cfg(test)]
    pub(crate) fn database(&self) -> &D {
        &self.db
    }

    async fn execute(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        self.db.execute(On::Pool, sql, args).await
    }

    async fn fetch_optional(
        &self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Option<D::Row>, StoreError> {
        self.db.fetch_optional(On::Pool, sql, args).await
    }

    async fn fetch_all(&self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<D::Row>, StoreError> {
        self.db.fetch_all(On::Pool, sql, args).await
    }

    /// A page of `table` in id order: at most `limit` rows with ids after `after`, mapped by
    /// `map`, and the id to continue after when there are more.
    async fn page_by_id<T>(
        &self,
        columns: &str,
        table: &str,
        after: Option<&str>,
        limit: u32,
        map: impl Fn(&D::Row) -> Result<T, StoreError> + Send,
        id_of: impl Fn(&T) -> &str + Send,
    ) -> Result<(Vec<T>, Option<String>), StoreError> {
        let page = check_page_size(limit)?;
        if let Some(after) = after {
            check_input("after", after)?;
        }
        let rows = self
            .fetch_all(
                &format!(
                    "SELECT {columns} FROM {table} WHERE ($1 IS NULL OR id > $1) \
                     ORDER BY id LIMIT $2"
                ),
                args![after, page + 1],
            )
            .await?;
        let items = rows.iter().map(map).collect::<Result<Vec<_>, _>>()?;
        Ok(finish_page(items, page, |item| id_of(item).to_owned()))
    }

    async fn begin(&self, mode: TxMode) -> Result<Tx<'_, D>, StoreError> {
        Ok(Tx {
            db: &*self.db,
            tx: self.db.begin(mode).await?,
        })
    }
}

/// An open transaction of a [`SqlStore`]. Dropping it without [`Tx::commit`] rolls back.
pub(crate) struct Tx<'a, D: Database> {
    db: &'a D,
    tx: D::Tx,
}

impl<D: Database> Tx<'_, D> {
    async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        self.db.execute(On::Tx(&mut self.tx), sql, args).await
    }

    async fn fetch_optional(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Option<D::Row>, StoreError> {
        self.db
            .fetch_optional(On::Tx(&mut self.tx), sql, args)
            .await
    }

    async fn fetch_one(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<D::Row, StoreError> {
        self.fetch_optional(sql, args)
            .await?
            .ok_or_else(|| StoreError::Database("a query expected to return a row did not".into()))
    }

    async fn for_each<F>(&mut self, sql: &str, args: &[Arg<'_>], each: F) -> Result<(), StoreError>
    where
        F: FnMut(&D::Row) -> Result<(), StoreError> + Send,
    {
        self.db
            .for_each(On::Tx(&mut self.tx), sql, args, each)
            .await
    }

    async fn serialize(&mut self, what: Serial) -> Result<(), StoreError> {
        D::serialize(&mut self.tx, what).await
    }

    async fn commit(self) -> Result<(), StoreError> {
        D::commit(self.tx).await
    }
}

/// For `map_err` after a write whose only unique key is its primary key: the duplicate is
/// `kind`.
fn unique_is(kind: Conflict) -> impl FnOnce(StoreError) -> StoreError {
    move |err| match err {
        StoreError::Conflict(Conflict::Duplicate(_)) => StoreError::Conflict(kind),
        other => other,
    }
}

/// For `map_err` after a write that references an owner: a dangling reference is `missing()`.
fn reference_is(missing: impl FnOnce() -> StoreError) -> impl FnOnce(StoreError) -> StoreError {
    move |err| match err {
        StoreError::Conflict(Conflict::Reference(_)) => missing(),
        other => other,
    }
}

/// Whether `err` is a foreign-key violation (a referenced record is missing).
fn is_reference(err: &StoreError) -> bool {
    matches!(err, StoreError::Conflict(Conflict::Reference(_)))
}

/// A statement with parameters numbered as they are added, for queries whose conditions depend
/// on the input.
struct Query<'a> {
    sql: String,
    args: Vec<Arg<'a>>,
}

impl<'a> Query<'a> {
    fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            args: Vec::new(),
        }
    }

    /// Appends SQL text.
    fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends the placeholder of a new parameter bound to `value`.
    fn bind(&mut self, value: impl Into<Arg<'a>>) -> &mut Self {
        self.args.push(value.into());
        self.sql.push('$');
        self.sql.push_str(&self.args.len().to_string());
        self
    }
}

#[async_trait]
impl<D: Database> Store for SqlStore<D> {
    fn backend(&self) -> trustgate_store_api::Backend {
        D::KIND
    }

    async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        self.db.migrate().await
    }

    async fn health(&self) -> Result<Health, StoreError> {
        self.db.health().await
    }

    async fn close(&self) {
        self.db.close().await;
    }
}
