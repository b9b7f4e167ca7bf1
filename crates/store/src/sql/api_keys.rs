//! [`ApiKeyStore`]: API keys of service accounts and users (digests only), and the credential
//! epoch.
//!
//! Creating a key reads its owner `FOR SHARE` (PostgreSQL) inside the write transaction, so an
//! owner disabled or deleted concurrently waits for the key to commit and then advances the
//! epoch after it. Rotation locks the old key's row, so two rotations of one key do not both
//! succeed. Every change that ends a credential's life advances the one-row credential epoch
//! last in its transaction (always after the rows it changes, so transactions lock in one order).

use async_trait::async_trait;
use time::OffsetDateTime;
use trustgate_store_api::{Conflict, StoreError};

use super::accounts::user_status;
use super::{Arg, Database, Query, Row, RowLock, SqlStore, Tx, TxMode, args};
use crate::relationships::{check_input, normalize_time, shorten};
use crate::service_accounts::{
    ApiKey, ApiKeyStore, KeyOwner, KeyUse, NewApiKey, VerifiedKey, check_key_uses, check_new_key,
    check_owner, owner_from_db, rate_limit_from_db, scopes_from_text,
};

const KEY_COLUMNS: &str = "id, service_account_id, user_id, description, scopes, \
                           rate_limit_per_minute, created_at, expires_at, revoked_at, \
                           rotated_from, last_used_at, last_used_ip";

fn key_from_row(row: &impl Row) -> Result<ApiKey, StoreError> {
    Ok(ApiKey {
        id: row.text("id")?,
        owner: owner_from_db(
            row.opt_text("service_account_id")?,
            row.opt_text("user_id")?,
        )?,
        description: row.text("description")?,
        scopes: scopes_from_text(row.json("scopes")?)?,
        rate_limit_per_minute: rate_limit_from_db(row.opt_i64("rate_limit_per_minute")?)?,
        created_at: row.time("created_at")?,
        expires_at: row.opt_time("expires_at")?,
        revoked_at: row.opt_time("revoked_at")?,
        rotated_from: row.opt_text("rotated_from")?,
        last_used_at: row.opt_time("last_used_at")?,
        last_used_ip: row.opt_text("last_used_ip")?,
    })
}

/// The owner columns of a key: `(service_account_id, user_id)`.
fn owner_columns(owner: &KeyOwner) -> (Option<&str>, Option<&str>) {
    match owner {
        KeyOwner::Service(id) => (Some(id.as_str()), None),
        KeyOwner::User(id) => (None, Some(id.as_str())),
    }
}

fn missing_owner(owner: &KeyOwner) -> StoreError {
    StoreError::Conflict(Conflict::Reference(format!(
        "{} {} does not exist",
        match owner {
            KeyOwner::Service(_) => "service account",
            KeyOwner::User(_) => "user",
        },
        shorten(owner.id())
    )))
}

/// Advances the credential epoch; the last statement of a transaction that ends a credential's
/// life.
pub(super) async fn advance_epoch<D: Database>(tx: &mut Tx<'_, D>) -> Result<(), StoreError> {
    let n = tx
        .execute(
            "UPDATE credential_epoch SET epoch = epoch + 1 WHERE id = 1",
            args![],
        )
        .await?;
    if n != 1 {
        return Err(StoreError::Corrupt(
            "the credential epoch row is missing".into(),
        ));
    }
    Ok(())
}

/// Inserts a checked key (`scopes`: its JSON) for `owner`. With `digest_may_exist`, a digest that
/// is registered already leaves everything as it is and returns `false`; otherwise a reused id or
/// digest is [`Conflict::Duplicate`].
pub(super) async fn insert_key<D: Database>(
    tx: &mut Tx<'_, D>,
    owner: &KeyOwner,
    key: &NewApiKey<'_>,
    scopes: &str,
    rotated_from: Option<&str>,
    now: OffsetDateTime,
    digest_may_exist: bool,
) -> Result<bool, StoreError> {
    let (service_account_id, user_id) = owner_columns(owner);
    let sql = format!(
        "INSERT INTO api_keys (id, digest, service_account_id, user_id, description, scopes, \
         rate_limit_per_minute, created_at, expires_at, rotated_from) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10){}",
        if digest_may_exist {
            " ON CONFLICT (digest) DO NOTHING"
        } else {
            ""
        }
    );
    let inserted = tx
        .execute(
            &sql,
            &[
                key.id.into(),
                key.digest.into(),
                service_account_id.into(),
                user_id.into(),
                key.description.into(),
                Arg::json(scopes),
                Arg::I64(key.rate_limit_per_minute.map(i64::from)),
                now.into(),
                key.expires_at.map(normalize_time).into(),
                rotated_from.into(),
            ],
        )
        .await
        .map_err(|err| match err {
            StoreError::Conflict(Conflict::Reference(_)) => missing_owner(owner),
            other => other,
        })?;
    Ok(inserted == 1)
}

/// The key as stored, read inside `tx`.
async fn key_in<D: Database>(
    tx: &mut Tx<'_, D>,
    id: &str,
    lock: Option<RowLock>,
) -> Result<Option<ApiKey>, StoreError> {
    let row = tx
        .fetch_optional(
            &format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1{}",
                lock.map(D::row_lock).unwrap_or_default()
            ),
            args![id],
        )
        .await?;
    row.as_ref().map(key_from_row).transpose()
}

/// Refuses a key for an owner that does not exist or is disabled, holding the owner's row
/// `FOR SHARE` until commit.
async fn require_enabled_owner<D: Database>(
    tx: &mut Tx<'_, D>,
    owner: &KeyOwner,
) -> Result<(), StoreError> {
    let enabled = match owner {
        KeyOwner::Service(id) => tx
            .fetch_optional(
                &format!(
                    "SELECT disabled_at FROM service_accounts WHERE id = $1{}",
                    D::row_lock(RowLock::Share)
                ),
                args![id.as_str()],
            )
            .await?
            .map(|row| row.opt_time("disabled_at").map(|d| d.is_none()))
            .transpose()?,
        KeyOwner::User(id) => user_status(tx, id, RowLock::Share)
            .await?
            .map(|status| status == "active"),
    };
    match enabled {
        None => Err(missing_owner(owner)),
        Some(false) => Err(StoreError::Conflict(Conflict::OwnerDisabled)),
        Some(true) => Ok(()),
    }
}

#[async_trait]
impl<D: Database> ApiKeyStore for SqlStore<D> {
    async fn create_api_key(
        &self,
        owner: &KeyOwner,
        key: &NewApiKey<'_>,
        now: OffsetDateTime,
    ) -> Result<ApiKey, StoreError> {
        check_owner(owner)?;
        let scopes = check_new_key(key)?;
        let now = normalize_time(now);
        let mut tx = self.begin(TxMode::Write).await?;
        require_enabled_owner(&mut tx, owner).await?;
        insert_key(&mut tx, owner, key, &scopes, None, now, false).await?;
        let stored = key_in(&mut tx, key.id, None)
            .await?
            .ok_or_else(|| StoreError::Database("the key just stored is missing".into()))?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn get_api_key(&self, id: &str) -> Result<Option<ApiKey>, StoreError> {
        check_input("API key id", id)?;
        let row = self
            .fetch_optional(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"),
                args![id],
            )
            .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn list_api_keys(&self, owner: Option<&KeyOwner>) -> Result<Vec<ApiKey>, StoreError> {
        let mut query = Query::new(format!("SELECT {KEY_COLUMNS} FROM api_keys"));
        if let Some(owner) = owner {
            check_owner(owner)?;
            query.push(match owner {
                KeyOwner::Service(_) => " WHERE service_account_id = ",
                KeyOwner::User(_) => " WHERE user_id = ",
            });
            query.bind(owner.id());
        }
        query.push(" ORDER BY id");
        let rows = self.fetch_all(&query.sql, &query.args).await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_api_key(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<ApiKey>, StoreError> {
        check_input("API key id", id)?;
        let mut tx = self.begin(TxMode::Write).await?;
        let revoked = tx
            .execute(
                "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                args![normalize_time(now), id],
            )
            .await?
            == 1;
        let key = key_in(&mut tx, id, None).await?;
        // A key revoked already ended its life then; only a new revocation moves the epoch.
        if revoked {
            advance_epoch(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(key)
    }

    async fn rotate_api_key(
        &self,
        old_id: &str,
        new: &NewApiKey<'_>,
        old_valid_until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Option<(ApiKey, ApiKey)>, StoreError> {
        check_input("API key id", old_id)?;
        check_new_key(new)?;
        let now = normalize_time(now);
        let mut tx = self.begin(TxMode::Write).await?;
        let Some(mut old) = key_in(&mut tx, old_id, Some(RowLock::NoKeyUpdate)).await? else {
            return Ok(None);
        };
        if old.revoked_at.is_some() {
            return Ok(None);
        }
        let until = normalize_time(old_valid_until);
        let old_expiry = old.expires_at.map_or(until, |e| e.min(until));
        tx.execute(
            "UPDATE api_keys SET expires_at = $1 WHERE id = $2",
            args![old_expiry, old_id],
        )
        .await?;
        old.expires_at = Some(old_expiry);
        // The new key takes the old key's description, scopes and rate limit.
        let scopes = crate::service_accounts::scopes_text(&old.scopes)?;
        let inherited = NewApiKey {
            description: &old.description,
            scopes: &old.scopes,
            rate_limit_per_minute: old.rate_limit_per_minute,
            ..*new
        };
        insert_key(
            &mut tx,
            &old.owner,
            &inherited,
            &scopes,
            Some(old_id),
            now,
            false,
        )
        .await?;
        let created = key_in(&mut tx, new.id, None)
            .await?
            .ok_or_else(|| StoreError::Database("the key just stored is missing".into()))?;
        advance_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(Some((old, created)))
    }

    async fn authenticate_api_key(
        &self,
        digest: &trustgate_core::TokenDigest,
    ) -> Result<Option<VerifiedKey>, StoreError> {
        // The owner's name only if the owner exists and is enabled; NULL otherwise.
        let row = self
            .fetch_optional(
                &format!(
                    "SELECT {KEY_COLUMNS}, COALESCE(\
                       (SELECT a.name FROM service_accounts a \
                        WHERE a.id = api_keys.service_account_id AND a.disabled_at IS NULL), \
                       (SELECT u.username FROM users u \
                        WHERE u.id = api_keys.user_id AND u.status = 'active')) AS owner_name \
                     FROM api_keys WHERE digest = $1 AND revoked_at IS NULL"
                ),
                args![digest],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let Some(owner_name) = row.opt_text("owner_name")? else {
            return Ok(None);
        };
        Ok(Some(VerifiedKey {
            key: key_from_row(&row)?,
            owner_name,
        }))
    }

    async fn record_api_key_uses(&self, uses: &[KeyUse]) -> Result<(), StoreError> {
        check_key_uses(uses)?;
        if uses.is_empty() {
            return Ok(());
        }
        // Rows are updated in key order, so concurrent batches lock them in the same order.
        let mut ordered: Vec<&KeyUse> = uses.iter().collect();
        ordered.sort_by(|a, b| a.key_id.cmp(&b.key_id).then(a.at.cmp(&b.at)));
        let mut tx = self.begin(TxMode::Write).await?;
        for used in ordered {
            tx.execute(
                "UPDATE api_keys SET last_used_at = $1, last_used_ip = $2 \
                 WHERE id = $3 AND (last_used_at IS NULL OR last_used_at < $1)",
                args![normalize_time(used.at), used.ip.as_deref(), &used.key_id],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn credential_epoch(&self) -> Result<i64, StoreError> {
        let row = self
            .fetch_optional("SELECT epoch FROM credential_epoch WHERE id = 1", args![])
            .await?
            .ok_or_else(|| StoreError::Corrupt("the credential epoch row is missing".into()))?;
        row.i64("epoch")
    }
}
