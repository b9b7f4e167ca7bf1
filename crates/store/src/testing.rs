//! Throwaway databases for tests (feature `test-support`).
//!
//! [`TestDatabase::sqlite`] makes a fresh SQLite file in a temporary directory.
//! [`TestDatabase::postgres`] makes a fresh schema in the PostgreSQL database named by
//! `TRUSTGATE_TEST_DATABASE_URL`, or returns `None` after printing how to enable the test when
//! the variable is unset. Both are migrated and removed again when the value is dropped, even if
//! the test panicked.

use std::sync::Arc;

use trustgate_store_api::Store;

use crate::{ConnectOptions, postgres::PostgresStore};

/// The environment variable naming the PostgreSQL database tests may use.
pub const POSTGRES_URL_VAR: &str = "TRUSTGATE_TEST_DATABASE_URL";

/// A migrated, isolated database that is deleted on drop.
#[derive(Debug)]
pub struct TestDatabase {
    /// The store under test.
    pub store: Arc<dyn Store>,
    /// The URL it was opened with (for tests that start a server on the same database).
    pub url: String,
    /// For PostgreSQL, the isolated schema.
    pub schema: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// A fresh SQLite database.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("trustgate.db").display());
        let store = crate::connect(&url, &ConnectOptions::default())
            .await
            .expect("open sqlite");
        store.migrate().await.expect("migrate sqlite");
        Self {
            store,
            url,
            schema: None,
            _dir: Some(dir),
        }
    }

    /// A fresh in-memory SQLite database (one connection: no concurrency between its callers).
    pub async fn sqlite_in_memory() -> Self {
        let store = crate::sqlite::SqliteStore::in_memory()
            .await
            .expect("open in-memory sqlite");
        store.migrate().await.expect("migrate sqlite");
        Self {
            store: Arc::new(store),
            url: "sqlite::memory:".to_owned(),
            schema: None,
            _dir: None,
        }
    }

    /// A fresh schema in the test PostgreSQL database, or `None` (with a message) when
    /// `TRUSTGATE_TEST_DATABASE_URL` is unset.
    pub async fn postgres(test_name: &str) -> Option<Self> {
        let url = postgres_url(test_name)?;
        let schema = format!("tg_test_{}", uuid::Uuid::new_v4().simple());
        let options = ConnectOptions {
            postgres_schema: Some(schema.clone()),
            max_connections: 5,
            ..ConnectOptions::default()
        };
        let store = crate::connect(&url, &options)
            .await
            .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR} is set but unusable: {e}"));
        store.migrate().await.expect("migrate postgres");
        Some(Self {
            store,
            url,
            schema: Some(schema),
            _dir: None,
        })
    }
}

impl TestDatabase {
    /// The same database as another replica would open it: its own connection pool on
    /// PostgreSQL (same schema); on SQLite, where one process owns the file, the same store.
    pub async fn replica_store(&self) -> Arc<dyn Store> {
        let Some(schema) = &self.schema else {
            return self.store.clone();
        };
        let options = ConnectOptions {
            postgres_schema: Some(schema.clone()),
            max_connections: 5,
            ..ConnectOptions::default()
        };
        crate::connect(&self.url, &options)
            .await
            .unwrap_or_else(|e| panic!("second connection to the test schema: {e}"))
    }
}

impl TestDatabase {
    /// Runs `statements` (`;`-separated SQL, no parameters) on the test database past the store,
    /// as someone with write access to the database would: for tests that tamper with stored
    /// rows and check that trustgate notices. Returns how many rows they changed. SQLite
    /// databases in memory are not reachable from outside and panic.
    pub async fn execute_raw(&self, statements: &str) -> u64 {
        execute_raw_at(&self.url, self.schema.as_deref(), statements).await
    }
}

/// [`TestDatabase::execute_raw`] on the database at `url` (`sqlite://PATH`, or a PostgreSQL URL
/// with its `schema`), e.g. the database of a server a test started.
pub async fn execute_raw_at(url: &str, schema: Option<&str>, statements: &str) -> u64 {
    let sql = || sqlx::raw_sql(sqlx::AssertSqlSafe(statements.to_owned()));
    if let Some(schema) = schema {
        let options: sqlx::postgres::PgConnectOptions = url.parse().expect("postgres url");
        let pool = sqlx::PgPool::connect_with(options.options([("search_path", schema)]))
            .await
            .expect("raw postgres connection");
        let done = sql().execute(&pool).await.expect("raw postgres statement");
        pool.close().await;
        return done.rows_affected();
    }
    let path = url
        .strip_prefix("sqlite://")
        .expect("an SQLite database in a file");
    let pool =
        sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(path))
            .await
            .expect("raw sqlite connection");
    let done = sql().execute(&pool).await.expect("raw sqlite statement");
    pool.close().await;
    done.rows_affected()
}

/// The PostgreSQL URL for tests, or `None` after printing why `test_name` is skipped.
pub fn postgres_url(test_name: &str) -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "skipping {test_name}: set {POSTGRES_URL_VAR}=postgres://postgres@127.0.0.1:5432/test \
                 to run the PostgreSQL variant"
            );
            None
        }
    }
}

/// Deletes the signing keys of the SQLite database file at `path` (a fixture written by another
/// installation), whose sealing key the test does not have: a server refuses to start with keys
/// it cannot open, so a test that starts one on the fixture lets it generate new keys instead.
pub async fn forget_fixture_signing_keys(path: &std::path::Path) -> Result<(), sqlx::Error> {
    use sqlx::Connection as _;
    let mut connection = sqlx::sqlite::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(path),
    )
    .await?;
    sqlx::query("DELETE FROM signing_keys")
        .execute(&mut connection)
        .await?;
    connection.close().await
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(schema) = self.schema.take() else {
            return;
        };
        let url = self.url.clone();
        // Drop runs inside the test's runtime, which cannot block on async work; a helper
        // thread with its own runtime removes the schema before the test finishes.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(PostgresStore::drop_schema(&url, &schema))
        });
        if let Ok(Err(e)) = cleanup.join() {
            eprintln!("could not drop test schema: {e}");
        }
    }
}

/// Generates, for each named `async fn(TestDatabase)`, a module with a `sqlite` and a `postgres`
/// test running it on that backend (the latter skipping with a message when PostgreSQL is not
/// configured).
#[macro_export]
macro_rules! test_on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::testing::TestDatabase::sqlite().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = $crate::testing::TestDatabase::postgres(module_path!()).await {
                    super::$name(db).await;
                }
            }
        }
    )*};
}
