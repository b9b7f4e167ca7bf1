//! [`ServiceAccountStore`]: machine principals (their keys are in [`super::api_keys`]).
//!
//! Names are unique: an insert is `ON CONFLICT (name) DO NOTHING`, so on PostgreSQL a racing
//! insert of the same name waits for the other transaction and then finds the name taken, and a
//! unique violation left over is a reused id. Disabling and deleting advance the credential epoch
//! in the same transaction.

use async_trait::async_trait;
use time::OffsetDateTime;
use trustgate_store_api::{Conflict, StoreError};

use super::api_keys::{advance_epoch, insert_key};
use super::{Database, Row, SqlStore, Tx, TxMode, args};
use crate::relationships::{check_input, normalize_time};
use crate::service_accounts::{
    EnsuredKey, KeyOwner, NewApiKey, NewServiceAccount, ServiceAccount, ServiceAccountPage,
    ServiceAccountStore, check_new_account, check_new_key,
};
use trustgate_store_api::{CertificateBinding, CertificateNameKind, MAX_CERTIFICATE_NAME_BYTES};

pub(super) const ACCOUNT_COLUMNS: &str = "id, name, owner, description, created_at, disabled_at";

fn account_from_row(row: &impl Row) -> Result<ServiceAccount, StoreError> {
    Ok(ServiceAccount {
        id: row.text("id")?,
        name: row.text("name")?,
        owner: row.opt_text("owner")?,
        description: row.text("description")?,
        created_at: row.time("created_at")?,
        disabled_at: row.opt_time("disabled_at")?,
    })
}

/// A certificate name to store: 1 to [`MAX_CERTIFICATE_NAME_BYTES`] bytes, no NUL.
fn check_certificate_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.len() > MAX_CERTIFICATE_NAME_BYTES || name.contains('\0') {
        return Err(StoreError::InvalidInput(format!(
            "a certificate name is 1 to {MAX_CERTIFICATE_NAME_BYTES} bytes without NUL"
        )));
    }
    Ok(())
}

fn binding_from_row(row: &impl Row) -> Result<CertificateBinding, StoreError> {
    let kind = row.text("kind")?;
    Ok(CertificateBinding {
        kind: kind
            .parse()
            .map_err(|()| StoreError::Corrupt(format!("unknown certificate name kind `{kind}`")))?,
        name: row.text("name")?,
        account_id: row.text("account_id")?,
        created_at: row.time("created_at")?,
    })
}

fn created_account(new: &NewServiceAccount<'_>, now: OffsetDateTime) -> ServiceAccount {
    ServiceAccount {
        id: new.id.to_owned(),
        name: new.name.to_owned(),
        owner: new.owner.map(str::to_owned),
        description: new.description.to_owned(),
        created_at: now,
        disabled_at: None,
    }
}

/// Inserts the account unless its name is taken; whether it was inserted. A reused id is
/// [`Conflict::Duplicate`].
async fn insert_account<D: Database>(
    tx: &mut Tx<'_, D>,
    new: &NewServiceAccount<'_>,
    now: OffsetDateTime,
) -> Result<bool, StoreError> {
    Ok(tx
        .execute(
            "INSERT INTO service_accounts (id, name, owner, description, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
            args![new.id, new.name, new.owner, new.description, now],
        )
        .await?
        == 1)
}

#[async_trait]
impl<D: Database> ServiceAccountStore for SqlStore<D> {
    async fn create_service_account(
        &self,
        new: &NewServiceAccount<'_>,
        now: OffsetDateTime,
    ) -> Result<ServiceAccount, StoreError> {
        check_new_account(new)?;
        let now = normalize_time(now);
        let mut tx = self.begin(TxMode::Write).await?;
        if !insert_account(&mut tx, new, now).await? {
            return Err(StoreError::Conflict(Conflict::ServiceNameTaken));
        }
        tx.commit().await?;
        Ok(created_account(new, now))
    }

    async fn get_service_account(&self, id: &str) -> Result<Option<ServiceAccount>, StoreError> {
        check_input("service account id", id)?;
        let row = self
            .fetch_optional(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM service_accounts WHERE id = $1"),
                args![id],
            )
            .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn find_service_account(&self, name: &str) -> Result<Option<ServiceAccount>, StoreError> {
        check_input("service account name", name)?;
        let row = self
            .fetch_optional(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM service_accounts WHERE name = $1"),
                args![name],
            )
            .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn list_service_accounts(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<ServiceAccountPage, StoreError> {
        let (accounts, next) = self
            .page_by_id(
                ACCOUNT_COLUMNS,
                "service_accounts",
                after,
                limit,
                account_from_row,
                |a| &a.id,
            )
            .await?;
        Ok(ServiceAccountPage { accounts, next })
    }

    async fn set_service_account_disabled(
        &self,
        id: &str,
        disabled: bool,
        now: OffsetDateTime,
    ) -> Result<Option<ServiceAccount>, StoreError> {
        check_input("service account id", id)?;
        let disabled_at = disabled.then(|| normalize_time(now));
        let mut tx = self.begin(TxMode::Write).await?;
        // Disabling an account that is disabled already keeps the time it was disabled at.
        let row = tx
            .fetch_optional(
                &format!(
                    "UPDATE service_accounts \
                     SET disabled_at = CASE WHEN $1 IS NULL THEN NULL \
                                            ELSE COALESCE(disabled_at, $1) END \
                     WHERE id = $2 RETURNING {ACCOUNT_COLUMNS}"
                ),
                args![disabled_at, id],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let account = account_from_row(&row)?;
        advance_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(Some(account))
    }

    async fn delete_service_account(&self, id: &str) -> Result<bool, StoreError> {
        check_input("service account id", id)?;
        let mut tx = self.begin(TxMode::Write).await?;
        // The account's keys go with it (ON DELETE CASCADE).
        let deleted = tx
            .execute("DELETE FROM service_accounts WHERE id = $1", args![id])
            .await?
            == 1;
        if deleted {
            advance_epoch(&mut tx).await?;
            tx.commit().await?;
        }
        Ok(deleted)
    }

    async fn ensure_bootstrap_key(
        &self,
        account: &NewServiceAccount<'_>,
        key: &NewApiKey<'_>,
        now: OffsetDateTime,
    ) -> Result<EnsuredKey, StoreError> {
        check_new_account(account)?;
        let scopes = check_new_key(key)?;
        let now = normalize_time(now);
        let mut tx = self.begin(TxMode::Write).await?;
        let account_created = insert_account(&mut tx, account, now).await?;
        let row = tx
            .fetch_one(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM service_accounts WHERE name = $1"),
                args![account.name],
            )
            .await?;
        let stored = account_from_row(&row)?;
        let owner = KeyOwner::Service(stored.id.clone());
        let key_created = insert_key(&mut tx, &owner, key, &scopes, None, now, true).await?;
        if !key_created {
            let holder = tx
                .fetch_one(
                    "SELECT service_account_id FROM api_keys WHERE digest = $1",
                    args![key.digest],
                )
                .await?;
            if holder.opt_str("service_account_id")? != Some(stored.id.as_str()) {
                return Err(StoreError::Conflict(Conflict::TokenOwnedElsewhere));
            }
        }
        tx.commit().await?;
        Ok(EnsuredKey {
            account: stored,
            account_created,
            key_created,
        })
    }

    async fn bind_certificate(
        &self,
        account_id: &str,
        kind: CertificateNameKind,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        check_input("service account id", account_id)?;
        check_certificate_name(name)?;
        let now = normalize_time(now);
        let mut tx = self.begin(TxMode::Write).await?;
        let exists = tx
            .fetch_optional(
                "SELECT id FROM service_accounts WHERE id = $1",
                args![account_id],
            )
            .await?
            .is_some();
        if !exists {
            return Err(StoreError::NotFound(format!(
                "service account {account_id}"
            )));
        }
        let inserted = tx
            .execute(
                "INSERT INTO service_account_certificates (kind, name, account_id, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (kind, name) DO NOTHING",
                args![kind.as_str(), name, account_id, now],
            )
            .await?
            == 1;
        if !inserted {
            let holder = tx
                .fetch_one(
                    "SELECT account_id FROM service_account_certificates \
                     WHERE kind = $1 AND name = $2",
                    args![kind.as_str(), name],
                )
                .await?
                .text("account_id")?;
            if holder != account_id {
                return Err(StoreError::Conflict(Conflict::CertificateNameTaken));
            }
            return Ok(false);
        }
        advance_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn unbind_certificate(
        &self,
        account_id: &str,
        kind: CertificateNameKind,
        name: &str,
    ) -> Result<bool, StoreError> {
        check_input("service account id", account_id)?;
        check_certificate_name(name)?;
        let mut tx = self.begin(TxMode::Write).await?;
        let deleted = tx
            .execute(
                "DELETE FROM service_account_certificates \
                 WHERE kind = $1 AND name = $2 AND account_id = $3",
                args![kind.as_str(), name, account_id],
            )
            .await?
            == 1;
        if deleted {
            advance_epoch(&mut tx).await?;
            tx.commit().await?;
        }
        Ok(deleted)
    }

    async fn certificate_bindings(
        &self,
        account_id: &str,
    ) -> Result<Vec<CertificateBinding>, StoreError> {
        check_input("service account id", account_id)?;
        self.fetch_all(
            "SELECT kind, name, account_id, created_at FROM service_account_certificates \
             WHERE account_id = $1 ORDER BY kind, name",
            args![account_id],
        )
        .await?
        .iter()
        .map(binding_from_row)
        .collect()
    }

    async fn certificate_account(
        &self,
        kind: CertificateNameKind,
        name: &str,
    ) -> Result<Option<ServiceAccount>, StoreError> {
        check_certificate_name(name)?;
        let columns = ACCOUNT_COLUMNS
            .split(", ")
            .map(|c| format!("a.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let row = self
            .fetch_optional(
                &format!(
                    "SELECT {columns} FROM service_account_certificates c \
                     JOIN service_accounts a ON a.id = c.account_id \
                     WHERE c.kind = $1 AND c.name = $2"
                ),
                args![kind.as_str(), name],
            )
            .await?;
        row.as_ref().map(account_from_row).transpose()
    }
}
