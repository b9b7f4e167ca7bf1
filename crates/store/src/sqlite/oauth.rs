//! [`SigningKeyStore`], [`ClientStore`] and [`GrantStore`] on SQLite.
//!
//! Times are microseconds since the Unix epoch, as in [`accounts`](super::accounts). Consuming
//! operations that are one statement (redeeming a code, consuming a pushed request, recording an
//! assertion id) are atomic on their own. Those that read before they write (rotating a signing
//! key or a refresh token, polling a device code, creating a grant, revoking a user's grants)
//! run in `BEGIN IMMEDIATE` transactions: SQLite has one writer, so taking the write lock before
//! reading serializes them, and of concurrent calls exactly one sees the state it acts on.

use crate::error::db;
use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::sqlite::{SqliteRow, SqliteTransaction};
use sqlx::{AssertSqlSafe, Row};
use time::OffsetDateTime;
use trustgate_core::TokenDigest;

use super::SqliteStore;
use crate::accounts::{
    object_from_text, owner_write_error, require_active, status_from_db, unique_is,
};
use crate::oauth::{
    AuthorizationCode, ClientPage, ClientStore, CodeRedemption, Consent, DeviceAuthorization,
    DevicePoll, DevicePollRule, DevicePollStep, Grant, GrantStore, KeyRetirement, OAuthClient,
    PushedRequest, RefreshRotation, RefreshToken, RotationRule, RotationStep, SigningKey,
    SigningKeyStore, check_client, check_client_update, check_code, check_consent,
    check_device_authorization, check_device_decision, check_grant, check_pushed_request,
    check_rotation, check_signing_key, client_not_found, client_write_error, device_status_from_db,
    device_status_str, is_foreign_key_violation, missing_owner, refresh_expiry, scopes_from_text,
    signing_key_write_error,
};
use crate::relationships::{
    check_input, check_page_size, finish_page, from_unix_micros, normalize_time, unix_micros,
};
use trustgate_store_api::{Conflict, StoreError};

const SIGNING_KEY_COLUMNS: &str = "kid, algorithm, public_jwk, sealed_private_key, created_at, \
                                   activates_at, retires_at, expires_at";
const CLIENT_COLUMNS: &str = "id, name, secret_digest, metadata, created_at, updated_at";
const CODE_COLUMNS: &str = "client_id, user_id, session_id, redirect_uri, grant_id, created_at, \
                            expires_at, detail";
const GRANT_COLUMNS: &str = "g.id, g.client_id, g.user_id, g.session_id, g.scope, g.created_at, \
                             g.expires_at, g.revoked_at, g.detail";
/// A refresh token `t`, named apart from its grant's columns.
const TOKEN_COLUMNS: &str = "t.grant_id, t.created_at AS token_created_at, \
                             t.expires_at AS token_expires_at, t.rotated_at";
const CONSENT_COLUMNS: &str = "user_id, client_id, scopes, created_at, updated_at";
const DEVICE_COLUMNS: &str = "user_code, client_id, scope, created_at, expires_at, interval_secs, \
                              last_polled_at, status, user_id, session_id, detail";
const PUSHED_COLUMNS: &str = "client_id, parameters, created_at, expires_at";

/// How times are stored: microseconds since the Unix epoch.
fn micros(t: OffsetDateTime) -> i64 {
    unix_micros(normalize_time(t))
}

fn time_of(row: &SqliteRow, column: &str) -> Result<OffsetDateTime, StoreError> {
    from_unix_micros(row.try_get(column).map_err(db)?)
}

fn optional_time_of(row: &SqliteRow, column: &str) -> Result<Option<OffsetDateTime>, StoreError> {
    row.try_get::<Option<i64>, _>(column)
        .map_err(db)?
        .map(from_unix_micros)
        .transpose()
}

fn object_of(row: &SqliteRow, what: &str, column: &str) -> Result<Map<String, Value>, StoreError> {
    object_from_text(what, row.try_get(column).map_err(db)?)
}

fn signing_key_from_row(row: &SqliteRow) -> Result<SigningKey, StoreError> {
    Ok(SigningKey {
        kid: row.try_get("kid").map_err(db)?,
        algorithm: row.try_get("algorithm").map_err(db)?,
        public_jwk: object_of(row, "public JWK", "public_jwk")?,
        sealed_private_key: row.try_get("sealed_private_key").map_err(db)?,
        created_at: time_of(row, "created_at")?,
        activates_at: time_of(row, "activates_at")?,
        retires_at: optional_time_of(row, "retires_at")?,
        expires_at: optional_time_of(row, "expires_at")?,
    })
}

fn client_from_row(row: &SqliteRow) -> Result<OAuthClient, StoreError> {
    let secret_digest = row
        .try_get::<Option<Vec<u8>>, _>("secret_digest")
        .map_err(db)?
        .map(|bytes| {
            TokenDigest::from_bytes(&bytes).ok_or_else(|| {
                StoreError::Corrupt("stored client secret digest is not 32 bytes".into())
            })
        })
        .transpose()?;
    Ok(OAuthClient {
        id: row.try_get("id").map_err(db)?,
        name: row.try_get("name").map_err(db)?,
        secret_digest,
        metadata: object_of(row, "client metadata", "metadata")?,
        created_at: time_of(row, "created_at")?,
        updated_at: time_of(row, "updated_at")?,
    })
}

fn code_from_row(row: &SqliteRow) -> Result<AuthorizationCode, StoreError> {
    Ok(AuthorizationCode {
        client_id: row.try_get("client_id").map_err(db)?,
        user_id: row.try_get("user_id").map_err(db)?,
        session_id: row.try_get("session_id").map_err(db)?,
        redirect_uri: row.try_get("redirect_uri").map_err(db)?,
        grant_id: row.try_get("grant_id").map_err(db)?,
        created_at: time_of(row, "created_at")?,
        expires_at: time_of(row, "expires_at")?,
        detail: object_of(row, "code detail", "detail")?,
    })
}

fn grant_from_row(row: &SqliteRow) -> Result<Grant, StoreError> {
    Ok(Grant {
        id: row.try_get("id").map_err(db)?,
        client_id: row.try_get("client_id").map_err(db)?,
        user_id: row.try_get("user_id").map_err(db)?,
        session_id: row.try_get("session_id").map_err(db)?,
        scope: row.try_get("scope").map_err(db)?,
        created_at: time_of(row, "created_at")?,
        expires_at: time_of(row, "expires_at")?,
        revoked_at: optional_time_of(row, "revoked_at")?,
        detail: object_of(row, "grant detail", "detail")?,
    })
}

fn token_from_row(row: &SqliteRow) -> Result<RefreshToken, StoreError> {
    Ok(RefreshToken {
        grant_id: row.try_get("grant_id").map_err(db)?,
        created_at: time_of(row, "token_created_at")?,
        expires_at: time_of(row, "token_expires_at")?,
        rotated_at: optional_time_of(row, "rotated_at")?,
    })
}

fn consent_from_row(row: &SqliteRow) -> Result<Consent, StoreError> {
    Ok(Consent {
        user_id: row.try_get("user_id").map_err(db)?,
        client_id: row.try_get("client_id").map_err(db)?,
        scopes: scopes_from_text(row.try_get("scopes").map_err(db)?)?,
        created_at: time_of(row, "created_at")?,
        updated_at: time_of(row, "updated_at")?,
    })
}

fn device_from_row(row: &SqliteRow) -> Result<DeviceAuthorization, StoreError> {
    Ok(DeviceAuthorization {
        user_code: row.try_get("user_code").map_err(db)?,
        client_id: row.try_get("client_id").map_err(db)?,
        scope: row.try_get("scope").map_err(db)?,
        created_at: time_of(row, "created_at")?,
        expires_at: time_of(row, "expires_at")?,
        interval_secs: row.try_get("interval_secs").map_err(db)?,
        last_polled_at: optional_time_of(row, "last_polled_at")?,
        status: device_status_from_db(row.try_get("status").map_err(db)?)?,
        user_id: row.try_get("user_id").map_err(db)?,
        session_id: row.try_get("session_id").map_err(db)?,
        detail: object_of(row, "device authorization detail", "detail")?,
    })
}

fn pushed_from_row(row: &SqliteRow) -> Result<PushedRequest, StoreError> {
    Ok(PushedRequest {
        client_id: row.try_get("client_id").map_err(db)?,
        parameters: object_of(row, "pushed request parameters", "parameters")?,
        created_at: time_of(row, "created_at")?,
        expires_at: time_of(row, "expires_at")?,
    })
}

async fn client_exists(tx: &mut SqliteTransaction<'_>, id: &str) -> Result<bool, StoreError> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM oauth_clients WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
    Ok(found.is_some())
}

async fn insert_refresh_token(
    tx: &mut SqliteTransaction<'_>,
    digest: &TokenDigest,
    token: &RefreshToken,
    expires_at: OffsetDateTime,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO refresh_tokens (digest, grant_id, created_at, expires_at, rotated_at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(digest.as_bytes().as_slice())
    .bind(&token.grant_id)
    .bind(micros(token.created_at))
    .bind(micros(expires_at))
    .bind(token.rotated_at.map(micros))
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// Revokes the live grants of `user_id` (to `client_id` only, if given); returns how many.
async fn revoke_live_grants(
    tx: &mut SqliteTransaction<'_>,
    user_id: &str,
    client_id: Option<&str>,
    now: i64,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE grants SET revoked_at = ? WHERE user_id = ? AND (? IS NULL OR client_id = ?) \
         AND revoked_at IS NULL AND expires_at > ?",
    )
    .bind(now)
    .bind(user_id)
    .bind(client_id)
    .bind(client_id)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db)?
    .rows_affected())
}

impl SqliteStore {
    /// Maps a failed insert: a foreign-key violation becomes [`StoreError::NotFound`] naming the
    /// missing client or user. Call it after the failed transaction (if any) was dropped.
    async fn owner_error(
        &self,
        client_id: &str,
        user_id: Option<&str>,
        err: sqlx::Error,
    ) -> StoreError {
        if !is_foreign_key_violation(&err) {
            return db(err);
        }
        let found: Result<Option<i64>, sqlx::Error> =
            sqlx::query_scalar("SELECT 1 FROM oauth_clients WHERE id = ?")
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await;
        match found {
            Ok(found) => missing_owner(client_id, found.is_some(), user_id),
            Err(e) => db(e),
        }
    }
}

#[async_trait]
impl SigningKeyStore for SqliteStore {
    async fn list_signing_keys(&self) -> Result<Vec<SigningKey>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SIGNING_KEY_COLUMNS} FROM signing_keys ORDER BY created_at, kid"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(signing_key_from_row).collect()
    }

    async fn rotate_signing_key(
        &self,
        key: &SigningKey,
        expected_newest: Option<&str>,
        retirement: Option<KeyRetirement>,
    ) -> Result<bool, StoreError> {
        let jwk = check_signing_key(key, expected_newest, retirement.as_ref())?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let newest: Option<String> = sqlx::query_scalar(
            "SELECT kid FROM signing_keys WHERE algorithm = ? \
             ORDER BY created_at DESC, kid DESC LIMIT 1",
        )
        .bind(&key.algorithm)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        if newest.as_deref() != expected_newest {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, public_jwk, sealed_private_key, \
             created_at, activates_at, retires_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&key.kid)
        .bind(&key.algorithm)
        .bind(&jwk)
        .bind(key.sealed_private_key.as_slice())
        .bind(micros(key.created_at))
        .bind(micros(key.activates_at))
        .bind(key.retires_at.map(micros))
        .bind(key.expires_at.map(micros))
        .execute(&mut *tx)
        .await
        .map_err(signing_key_write_error)?;
        if let (Some(previous), Some(retirement)) = (newest, retirement) {
            sqlx::query("UPDATE signing_keys SET retires_at = ?, expires_at = ? WHERE kid = ?")
                .bind(micros(retirement.retires_at))
                .bind(micros(retirement.expires_at))
                .bind(&previous)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn delete_expired_signing_keys(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM signing_keys WHERE expires_at <= ?")
                .bind(micros(now))
                .execute(&self.pool)
                .await
                .map_err(db)?
                .rows_affected(),
        )
    }
}

#[async_trait]
impl ClientStore for SqliteStore {
    async fn create_client(&self, client: &OAuthClient) -> Result<(), StoreError> {
        let metadata = check_client(client)?;
        sqlx::query(
            "INSERT INTO oauth_clients (id, name, secret_digest, metadata, created_at, \
             updated_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&client.id)
        .bind(&client.name)
        .bind(
            client
                .secret_digest
                .as_ref()
                .map(|d| d.as_bytes().as_slice()),
        )
        .bind(&metadata)
        .bind(micros(client.created_at))
        .bind(micros(client.updated_at))
        .execute(&self.pool)
        .await
        .map_err(client_write_error)?;
        Ok(())
    }

    async fn get_client(&self, id: &str) -> Result<Option<OAuthClient>, StoreError> {
        check_input("client id", id)?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE id = ?"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(client_from_row).transpose()
    }

    async fn list_clients(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<ClientPage, StoreError> {
        let page = check_page_size(limit)?;
        if let Some(after) = after {
            check_input("after", after)?;
        }
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE (? IS NULL OR id > ?) \
             ORDER BY id LIMIT ?"
        )))
        .bind(after)
        .bind(after)
        .bind(page + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let clients = rows
            .iter()
            .map(client_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let (clients, next) = finish_page(clients, page, |c| c.id.clone());
        Ok(ClientPage { clients, next })
    }

    async fn update_client(
        &self,
        id: &str,
        name: &str,
        metadata: &Map<String, Value>,
        now: OffsetDateTime,
    ) -> Result<Option<OAuthClient>, StoreError> {
        let metadata = check_client_update(id, name, metadata)?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE oauth_clients SET name = ?, metadata = ?, updated_at = ? WHERE id = ? \
             RETURNING {CLIENT_COLUMNS}"
        )))
        .bind(name)
        .bind(&metadata)
        .bind(micros(now))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(client_from_row).transpose()
    }

    async fn set_client_secret(
        &self,
        id: &str,
        digest: Option<&TokenDigest>,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        check_input("client id", id)?;
        Ok(
            sqlx::query("UPDATE oauth_clients SET secret_digest = ?, updated_at = ? WHERE id = ?")
                .bind(digest.map(|d| d.as_bytes().as_slice()))
                .bind(micros(now))
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(db)?
                .rows_affected()
                == 1,
        )
    }

    async fn delete_client(&self, id: &str) -> Result<bool, StoreError> {
        check_input("client id", id)?;
        Ok(sqlx::query("DELETE FROM oauth_clients WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db)?
            .rows_affected()
            == 1)
    }

    async fn record_client_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        check_input("client id", client_id)?;
        check_input("jti", jti)?;
        let inserted = sqlx::query(
            "INSERT INTO client_assertion_jtis (client_id, jti, expires_at) VALUES (?, ?, ?) \
             ON CONFLICT (client_id, jti) DO NOTHING",
        )
        .bind(client_id)
        .bind(jti)
        .bind(micros(expires_at))
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(done) => Ok(done.rows_affected() == 1),
            Err(e) => Err(self.owner_error(client_id, None, e).await),
        }
    }
}

#[async_trait]
impl GrantStore for SqliteStore {
    async fn put_authorization_code(
        &self,
        digest: &TokenDigest,
        code: &AuthorizationCode,
    ) -> Result<(), StoreError> {
        let detail = check_code(code)?;
        let inserted = sqlx::query(
            "INSERT INTO authorization_codes (digest, client_id, user_id, session_id, \
             redirect_uri, grant_id, created_at, expires_at, detail) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(digest.as_bytes().as_slice())
        .bind(&code.client_id)
        .bind(&code.user_id)
        .bind(code.session_id.as_deref())
        .bind(&code.redirect_uri)
        .bind(&code.grant_id)
        .bind(micros(code.created_at))
        .bind(micros(code.expires_at))
        .bind(&detail)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(e) => Err(self
                .owner_error(&code.client_id, Some(&code.user_id), e)
                .await),
        }
    }

    async fn redeem_authorization_code(
        &self,
        digest: &TokenDigest,
        now: OffsetDateTime,
    ) -> Result<CodeRedemption, StoreError> {
        let redeemed = sqlx::query(AssertSqlSafe(format!(
            "UPDATE authorization_codes SET consumed_at = ? WHERE digest = ? \
             AND consumed_at IS NULL RETURNING {CODE_COLUMNS}"
        )))
        .bind(micros(now))
        .bind(digest.as_bytes().as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        if let Some(row) = redeemed {
            return Ok(CodeRedemption::Redeemed(code_from_row(&row)?));
        }
        let earlier = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CODE_COLUMNS} FROM authorization_codes WHERE digest = ?"
        )))
        .bind(digest.as_bytes().as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(match earlier {
            Some(row) => CodeRedemption::AlreadyRedeemed(code_from_row(&row)?),
            None => CodeRedemption::Unknown,
        })
    }

    async fn create_grant(
        &self,
        grant: &Grant,
        refresh: Option<(&TokenDigest, &RefreshToken)>,
    ) -> Result<(), StoreError> {
        let detail = check_grant(grant, refresh)?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        if !client_exists(&mut tx, &grant.client_id).await.map_err(db)? {
            return Err(client_not_found(&grant.client_id));
        }
        if let Some(user_id) = &grant.user_id {
            let status: Option<String> =
                sqlx::query_scalar("SELECT status FROM users WHERE id = ?")
                    .bind(user_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
            require_active(user_id, status.as_deref())?;
        }
        sqlx::query(
            "INSERT INTO grants (id, client_id, user_id, session_id, scope, created_at, \
             expires_at, revoked_at, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&grant.id)
        .bind(&grant.client_id)
        .bind(grant.user_id.as_deref())
        .bind(grant.session_id.as_deref())
        .bind(&grant.scope)
        .bind(micros(grant.created_at))
        .bind(micros(grant.expires_at))
        .bind(grant.revoked_at.map(micros))
        .bind(&detail)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if let Some((digest, token)) = refresh {
            let expires_at = refresh_expiry(token.expires_at, grant.expires_at);
            insert_refresh_token(&mut tx, digest, token, expires_at)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn get_grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        check_input("grant id", id)?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {GRANT_COLUMNS} FROM grants g WHERE g.id = ?"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(grant_from_row).transpose()
    }

    async fn revoke_grant(&self, id: &str, now: OffsetDateTime) -> Result<bool, StoreError> {
        check_input("grant id", id)?;
        Ok(
            sqlx::query("UPDATE grants SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(micros(now))
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(db)?
                .rows_affected()
                == 1,
        )
    }

    async fn session_grants(
        &self,
        session_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<Grant>, StoreError> {
        check_input("session id", session_id)?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {GRANT_COLUMNS} FROM grants g WHERE g.session_id = ? \
             AND g.expires_at > ? ORDER BY g.created_at, g.id"
        )))
        .bind(session_id)
        .bind(micros(now))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn revoke_user_grants(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        check_input("user id", user_id)?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        sqlx::query("UPDATE users SET token_version = token_version + 1 WHERE id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let revoked = revoke_live_grants(&mut tx, user_id, None, micros(now))
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(revoked)
    }

    async fn user_token_version(&self, user_id: &str) -> Result<Option<i64>, StoreError> {
        check_input("user id", user_id)?;
        Ok(
            sqlx::query_scalar("SELECT token_version FROM users WHERE id = ?")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?,
        )
    }

    async fn find_refresh_token(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<(RefreshToken, Grant)>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS}, {GRANT_COLUMNS} FROM refresh_tokens t \
             JOIN grants g ON g.id = t.grant_id WHERE t.digest = ?"
        )))
        .bind(digest.as_bytes().as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|row| Ok((token_from_row(&row)?, grant_from_row(&row)?)))
            .transpose()
    }

    async fn rotate_refresh_token(
        &self,
        old: &TokenDigest,
        new: &TokenDigest,
        new_expires_at: OffsetDateTime,
        now: OffsetDateTime,
        decide: &RotationRule<'_>,
    ) -> Result<RefreshRotation, StoreError> {
        check_rotation(old, new)?;
        let now = normalize_time(now);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS}, {GRANT_COLUMNS}, u.status AS user_status \
             FROM refresh_tokens t JOIN grants g ON g.id = t.grant_id \
             LEFT JOIN users u ON u.id = g.user_id WHERE t.digest = ?"
        )))
        .bind(old.as_bytes().as_slice())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(row) = row else {
            return Ok(RefreshRotation::Invalid);
        };
        let token = token_from_row(&row)?;
        let grant = grant_from_row(&row)?;
        let user_status: Option<String> = row.try_get("user_status").map_err(db)?;
        let user_status = user_status.as_deref().map(status_from_db).transpose()?;
        let step = decide(&token, &grant, user_status);
        let successor = RefreshToken {
            grant_id: grant.id.clone(),
            created_at: now,
            expires_at: refresh_expiry(new_expires_at, grant.expires_at),
            rotated_at: None,
        };
        let outcome = match step {
            RotationStep::Invalid => return Ok(RefreshRotation::Invalid),
            RotationStep::Rotate => {
                sqlx::query(
                    "UPDATE refresh_tokens SET rotated_at = ? WHERE digest = ? \
                     AND rotated_at IS NULL",
                )
                .bind(micros(now))
                .bind(old.as_bytes().as_slice())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                insert_refresh_token(&mut tx, new, &successor, successor.expires_at)
                    .await
                    .map_err(db)?;
                RefreshRotation::Rotated(grant)
            }
            RotationStep::Grace => {
                insert_refresh_token(&mut tx, new, &successor, successor.expires_at)
                    .await
                    .map_err(db)?;
                RefreshRotation::WithinGrace(grant)
            }
            RotationStep::Reuse => {
                sqlx::query("UPDATE grants SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                    .bind(micros(now))
                    .bind(&grant.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                RefreshRotation::Reused { grant_id: grant.id }
            }
        };
        tx.commit().await.map_err(db)?;
        Ok(outcome)
    }

    async fn get_consent(
        &self,
        user_id: &str,
        client_id: &str,
    ) -> Result<Option<Consent>, StoreError> {
        check_input("user id", user_id)?;
        check_input("client id", client_id)?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CONSENT_COLUMNS} FROM consents WHERE user_id = ? AND client_id = ?"
        )))
        .bind(user_id)
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(consent_from_row).transpose()
    }

    async fn put_consent(&self, consent: &Consent) -> Result<(), StoreError> {
        let scopes = check_consent(consent)?;
        let written = sqlx::query(
            "INSERT INTO consents (user_id, client_id, scopes, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, client_id) DO UPDATE SET \
             scopes = excluded.scopes, updated_at = excluded.updated_at",
        )
        .bind(&consent.user_id)
        .bind(&consent.client_id)
        .bind(&scopes)
        .bind(micros(consent.created_at))
        .bind(micros(consent.updated_at))
        .execute(&self.pool)
        .await;
        match written {
            Ok(_) => Ok(()),
            Err(e) => Err(self
                .owner_error(&consent.client_id, Some(&consent.user_id), e)
                .await),
        }
    }

    async fn list_consents(&self, user_id: &str) -> Result<Vec<Consent>, StoreError> {
        check_input("user id", user_id)?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CONSENT_COLUMNS} FROM consents WHERE user_id = ? ORDER BY client_id"
        )))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(consent_from_row).collect()
    }

    async fn delete_consent(
        &self,
        user_id: &str,
        client_id: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        check_input("user id", user_id)?;
        check_input("client id", client_id)?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let deleted = sqlx::query("DELETE FROM consents WHERE user_id = ? AND client_id = ?")
            .bind(user_id)
            .bind(client_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected()
            == 1;
        revoke_live_grants(&mut tx, user_id, Some(client_id), micros(now))
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(deleted)
    }

    async fn put_device_authorization(
        &self,
        device_digest: &TokenDigest,
        authorization: &DeviceAuthorization,
    ) -> Result<(), StoreError> {
        let detail = check_device_authorization(authorization)?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        sqlx::query("DELETE FROM device_authorizations WHERE user_code = ? AND expires_at <= ?")
            .bind(&authorization.user_code)
            .bind(micros(authorization.created_at))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let inserted = sqlx::query(
            "INSERT INTO device_authorizations (device_digest, user_code, client_id, scope, \
             created_at, expires_at, interval_secs, last_polled_at, status, user_id, \
             session_id, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (user_code) DO NOTHING",
        )
        .bind(device_digest.as_bytes().as_slice())
        .bind(&authorization.user_code)
        .bind(&authorization.client_id)
        .bind(&authorization.scope)
        .bind(micros(authorization.created_at))
        .bind(micros(authorization.expires_at))
        .bind(authorization.interval_secs)
        .bind(authorization.last_polled_at.map(micros))
        .bind(device_status_str(authorization.status))
        .bind(authorization.user_id.as_deref())
        .bind(authorization.session_id.as_deref())
        .bind(&detail)
        .execute(&mut *tx)
        .await;
        // The user code still held by another authorization is skipped, not an error (on
        // PostgreSQL after waiting for a concurrent insert of it): the device code is then the
        // only unique key left to violate.
        match inserted {
            Ok(done) if done.rows_affected() == 1 => {}
            Ok(_) => return Err(StoreError::Conflict(Conflict::UserCodeTaken)),
            Err(e) => {
                drop(tx);
                return Err(if is_foreign_key_violation(&e) {
                    self.owner_error(
                        &authorization.client_id,
                        authorization.user_id.as_deref(),
                        e,
                    )
                    .await
                } else {
                    unique_is(Conflict::DeviceCodeTaken, e, db)
                });
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn find_pending_device_authorization(
        &self,
        user_code: &str,
        now: OffsetDateTime,
    ) -> Result<Option<DeviceAuthorization>, StoreError> {
        check_input("user code", user_code)?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {DEVICE_COLUMNS} FROM device_authorizations WHERE user_code = ? \
             AND status = 'pending' AND expires_at > ?"
        )))
        .bind(user_code)
        .bind(micros(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn decide_device_authorization(
        &self,
        user_code: &str,
        approve: bool,
        user_id: &str,
        session_id: Option<&str>,
        detail: &Map<String, Value>,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let detail = check_device_decision(user_code, user_id, session_id, detail)?;
        let status = if approve { "approved" } else { "denied" };
        let decided = sqlx::query(
            "UPDATE device_authorizations SET status = ?, user_id = ?, session_id = ?, \
             detail = ? WHERE user_code = ? AND status = 'pending' AND expires_at > ?",
        )
        .bind(status)
        .bind(user_id)
        .bind(session_id)
        .bind(&detail)
        .bind(user_code)
        .bind(micros(now))
        .execute(&self.pool)
        .await
        .map_err(|e| owner_write_error(user_id, e))?;
        Ok(decided.rows_affected() == 1)
    }

    async fn poll_device_authorization(
        &self,
        device_digest: &TokenDigest,
        now: OffsetDateTime,
        decide: &DevicePollRule<'_>,
    ) -> Result<DevicePoll, StoreError> {
        let now = normalize_time(now);
        let digest = device_digest.as_bytes().as_slice();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {DEVICE_COLUMNS} FROM device_authorizations WHERE device_digest = ?"
        )))
        .bind(digest)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(row) = row else {
            return Ok(DevicePoll::Unknown);
        };
        let authorization = device_from_row(&row)?;
        let poll = match decide(&authorization) {
            DevicePollStep::Refuse(refusal) => return Ok(refusal.into()),
            DevicePollStep::Redeem => {
                let row = sqlx::query(AssertSqlSafe(format!(
                    "UPDATE device_authorizations SET status = 'redeemed', last_polled_at = ? \
                     WHERE device_digest = ? AND status = 'approved' \
                     RETURNING {DEVICE_COLUMNS}"
                )))
                .bind(micros(now))
                .bind(digest)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
                // The row is locked, so this is always there; the condition is a second guard.
                match row {
                    Some(row) => DevicePoll::Approved(Box::new(device_from_row(&row)?)),
                    None => return Ok(DevicePoll::AlreadyRedeemed),
                }
            }
            DevicePollStep::SlowDown { interval_secs } => {
                sqlx::query(
                    "UPDATE device_authorizations SET interval_secs = ?, \
                     last_polled_at = ? WHERE device_digest = ?",
                )
                .bind(interval_secs)
                .bind(micros(now))
                .bind(digest)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                DevicePoll::SlowDown
            }
            DevicePollStep::Pending => {
                sqlx::query(
                    "UPDATE device_authorizations SET last_polled_at = ? WHERE device_digest = ?",
                )
                .bind(micros(now))
                .bind(digest)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                DevicePoll::Pending
            }
        };
        tx.commit().await.map_err(db)?;
        Ok(poll)
    }

    async fn put_pushed_request(
        &self,
        id: &str,
        request: &PushedRequest,
    ) -> Result<(), StoreError> {
        let parameters = check_pushed_request(id, request)?;
        let inserted = sqlx::query(
            "INSERT INTO pushed_requests (id, client_id, parameters, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(&request.client_id)
        .bind(&parameters)
        .bind(micros(request.created_at))
        .bind(micros(request.expires_at))
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(e) => Err(self.owner_error(&request.client_id, None, e).await),
        }
    }

    async fn get_pushed_request(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<PushedRequest>, StoreError> {
        check_input("request id", id)?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PUSHED_COLUMNS} FROM pushed_requests WHERE id = ? AND consumed = 0 \
             AND expires_at > ?"
        )))
        .bind(id)
        .bind(micros(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(pushed_from_row).transpose()
    }

    async fn consume_pushed_request(&self, id: &str) -> Result<bool, StoreError> {
        check_input("request id", id)?;
        Ok(
            sqlx::query("UPDATE pushed_requests SET consumed = 1 WHERE id = ? AND consumed = 0")
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(db)?
                .rows_affected()
                == 1,
        )
    }

    async fn revoke_access_token(
        &self,
        jti: &str,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        check_input("jti", jti)?;
        sqlx::query(
            "INSERT INTO revoked_access_tokens (jti, expires_at) VALUES (?, ?) \
             ON CONFLICT (jti) DO UPDATE SET \
             expires_at = max(revoked_access_tokens.expires_at, excluded.expires_at)",
        )
        .bind(jti)
        .bind(micros(expires_at))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn access_token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        check_input("jti", jti)?;
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM revoked_access_tokens WHERE jti = ?")
                .bind(jti)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        Ok(found.is_some())
    }

    async fn purge_grants(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let now = micros(now);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let mut purged = 0;
        for statement in [
            "DELETE FROM authorization_codes WHERE expires_at <= ?1",
            // Counted here rather than left to the cascade, so the total includes them.
            "DELETE FROM refresh_tokens WHERE expires_at <= ?1 OR grant_id IN \
             (SELECT id FROM grants WHERE expires_at <= ?1 OR revoked_at <= ?1)",
            "DELETE FROM grants WHERE expires_at <= ?1 OR revoked_at <= ?1",
            "DELETE FROM device_authorizations WHERE expires_at <= ?1",
            "DELETE FROM pushed_requests WHERE expires_at <= ?1 OR consumed = 1",
            "DELETE FROM client_assertion_jtis WHERE expires_at <= ?1",
            "DELETE FROM revoked_access_tokens WHERE expires_at <= ?1",
        ] {
            purged += sqlx::query(statement)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected();
        }
        tx.commit().await.map_err(db)?;
        Ok(purged)
    }
}
