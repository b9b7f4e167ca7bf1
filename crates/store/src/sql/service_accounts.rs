//! [`ServiceAccountStore`]: machine principals and the digests of their tokens.

use async_trait::async_trait;
use time::OffsetDateTime;
use trustgate_core::TokenDigest;
use trustgate_store_api::{
    AccountRole, Conflict, EnsuredToken, ServiceAccount, ServiceAccountStore, StoreError,
};

use super::{Database, Row, SqlStore, TxMode, args};
use crate::relationships::normalize_time;
use crate::service_accounts::role_from_db;

const ACCOUNT_COLUMNS: &str = "id, name, role, created_at, disabled_at";
const INSERT_ACCOUNT: &str = "INSERT INTO service_accounts (id, name, role, created_at) \
                              VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING";

fn account_from_row(row: &impl Row) -> Result<ServiceAccount, StoreError> {
    Ok(ServiceAccount {
        id: row.text("id")?,
        name: row.text("name")?,
        role: role_from_db(row.str("role")?)?,
        created_at: row.time("created_at")?,
        disabled_at: row.opt_time("disabled_at")?,
    })
}

#[async_trait]
impl<D: Database> ServiceAccountStore for SqlStore<D> {
    async fn find_service_account(&self, name: &str) -> Result<Option<ServiceAccount>, StoreError> {
        let row = self
            .fetch_optional(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM service_accounts WHERE name = $1"),
                args![name],
            )
            .await?;
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
        let mut tx = self.begin(TxMode::Write).await?;
        let created = tx
            .execute(INSERT_ACCOUNT, args![account_id, name, role.as_str(), now])
            .await?
            == 1;
        if !created {
            return Ok(None);
        }
        tx.execute(
            "INSERT INTO service_tokens (digest, account_id, label, created_at) \
             VALUES ($1, $2, $3, $4)",
            args![digest, account_id, token_label, now],
        )
        .await?;
        tx.commit().await?;
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
        let mut tx = self.begin(TxMode::Write).await?;
        let account_created = tx
            .execute(INSERT_ACCOUNT, args![account_id, name, role.as_str(), now])
            .await?
            == 1;
        let row = tx
            .fetch_one(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM service_accounts WHERE name = $1"),
                args![name],
            )
            .await?;
        let account = account_from_row(&row)?;
        let token_created = tx
            .execute(
                "INSERT INTO service_tokens (digest, account_id, label, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (digest) DO NOTHING",
                args![digest, &account.id, token_label, now],
            )
            .await?
            == 1;
        if !token_created {
            let owner = tx
                .fetch_one(
                    "SELECT account_id FROM service_tokens WHERE digest = $1",
                    args![digest],
                )
                .await?;
            if owner.str("account_id")? != account.id {
                return Err(StoreError::Conflict(Conflict::TokenOwnedElsewhere));
            }
        }
        tx.commit().await?;
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
        let row = self
            .fetch_optional(
                "SELECT a.id, a.name, a.role, a.created_at, a.disabled_at \
                 FROM service_tokens t JOIN service_accounts a ON a.id = t.account_id \
                 WHERE t.digest = $1 AND a.disabled_at IS NULL",
                args![digest],
            )
            .await?;
        row.as_ref().map(account_from_row).transpose()
    }
}
