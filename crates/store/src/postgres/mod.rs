//! The PostgreSQL backend, for several stateless replicas sharing one database.
//!
//! Migrations take PostgreSQL's advisory lock (sqlx does), so replicas starting together apply
//! them once. With [`ConnectOptions::postgres_schema`] every connection's `search_path` is set to
//! that schema, which lets several deployments (or test runs) share one database in isolation.
//! The pool reconnects on its own: when the server comes back, the next query succeeds without a
//! restart.

mod accounts;
mod oauth;
mod relationships;

use crate::error::db;
use std::str::FromStr;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use time::OffsetDateTime;
use trustgate_core::TokenDigest;

use crate::ConnectOptions;
use crate::service_accounts::role_from_db;
use trustgate_store_api::EnsuredToken;
use trustgate_store_api::{
    AccountRole, Backend, Conflict, Health, MigrationReport, ServiceAccount, ServiceAccountStore,
    Store, StoreError,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// A PostgreSQL database (optionally one schema of it).
#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
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
                .map_err(db)?;
            // The name was checked by is_plain_identifier: no quoting or injection is possible.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}"
            )))
            .execute(&admin)
            .await
            .map_err(db)?;
            admin.close().await;
            connect = connect.options([("search_path", schema.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(db)?;
        Ok(Self { pool })
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
            .map_err(db)?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE"
        )))
        .execute(&pool)
        .await
        .map_err(db)?;
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

async fn applied_version(pool: &PgPool) -> Result<i64, StoreError> {
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
        .fetch_one(pool)
        .await
        .map_err(db)?;
    if table.is_none() {
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
impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
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

fn account_from_row(row: &sqlx::postgres::PgRow) -> Result<ServiceAccount, StoreError> {
    Ok(ServiceAccount {
        id: row.try_get("id").map_err(db)?,
        name: row.try_get("name").map_err(db)?,
        role: role_from_db(row.try_get::<&str, _>("role").map_err(db)?)?,
        created_at: row.try_get("created_at").map_err(db)?,
        disabled_at: row.try_get("disabled_at").map_err(db)?,
    })
}

#[async_trait]
impl ServiceAccountStore for PostgresStore {
    async fn find_service_account(&self, name: &str) -> Result<Option<ServiceAccount>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, role, created_at, disabled_at FROM service_accounts WHERE name = $1",
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
        let mut tx = self.pool.begin().await.map_err(db)?;
        let created = sqlx::query(
            "INSERT INTO service_accounts (id, name, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(account_id)
        .bind(name)
        .bind(role.as_str())
        .bind(now)
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
             VALUES ($1, $2, $3, $4)",
        )
        .bind(digest.as_bytes().as_slice())
        .bind(account_id)
        .bind(token_label)
        .bind(now)
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
        let mut tx = self.pool.begin().await.map_err(db)?;
        let account_created = sqlx::query(
            "INSERT INTO service_accounts (id, name, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(account_id)
        .bind(name)
        .bind(role.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected()
            == 1;
        let row = sqlx::query(
            "SELECT id, name, role, created_at, disabled_at FROM service_accounts WHERE name = $1",
        )
        .bind(name)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        let account = account_from_row(&row)?;
        let token_created = sqlx::query(
            "INSERT INTO service_tokens (digest, account_id, label, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest.as_bytes().as_slice())
        .bind(&account.id)
        .bind(token_label)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected()
            == 1;
        if !token_created {
            let owner: String =
                sqlx::query_scalar("SELECT account_id FROM service_tokens WHERE digest = $1")
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
             WHERE t.digest = $1 AND a.disabled_at IS NULL",
        )
        .bind(digest.as_bytes().as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(account_from_row).transpose()
    }
}
