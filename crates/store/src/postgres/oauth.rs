//! [`SigningKeyStore`], [`ClientStore`] and [`GrantStore`] on PostgreSQL.
//!
//! Consuming operations that are one statement (redeeming a code, consuming a pushed request,
//! recording an assertion id) are atomic on their own: under READ COMMITTED a concurrent updater
//! of the same row waits and re-checks the condition on the committed row. Where a check and a
//! write span statements, a lock makes them atomic across replicas:
//! - rotating a signing key takes a transaction-scoped advisory lock (the compare-and-set is on
//!   "the newest key of an algorithm", which may not exist yet, so there is no row to lock);
//! - rotating a refresh token locks the token and its grant `FOR UPDATE`, so concurrent
//!   rotations of one token (or of one family) run one after the other and each sees what the
//!   previous one wrote;
//! - polling a device code locks its row `FOR UPDATE`;
//! - creating a grant locks the user row `FOR SHARE` (as creating a session does), and revoking
//!   a user's grants updates that row before revoking, so a grant cannot slip past it.

use crate::error::db;
use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::postgres::{PgRow, PgTransaction};
use sqlx::{AssertSqlSafe, Row};
use time::OffsetDateTime;
use trustgate_core::TokenDigest;

use super::PostgresStore;
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
use crate::relationships::{check_input, check_page_size, finish_page, normalize_time};
use trustgate_store_api::{Conflict, StoreError};

/// Serializes signing key rotations (an arbitrary fixed key).
const SIGNING_KEY_LOCK: i64 = 0x7472_7573_7467_6b79;

// JSONB comes back as text and is parsed like SQLite's, so both backends decode alike.
const SIGNING_KEY_COLUMNS: &str = "kid, algorithm, public_jwk::text AS public_jwk, \
                                   sealed_private_key, created_at, activates_at, retires_at, \
                                   expires_at";
const CLIENT_COLUMNS: &str =
    "id, name, secret_digest, metadata::text AS metadata, created_at, updated_at";
const CODE_COLUMNS: &str = "client_id, user_id, session_id, redirect_uri, grant_id, created_at, \
                            expires_at, detail::text AS detail";
const GRANT_COLUMNS: &str = "g.id, g.client_id, g.user_id, g.session_id, g.scope, g.created_at, \
                             g.expires_at, g.revoked_at, g.detail::text AS detail";
/// A refresh token `t`, named apart from its grant's columns.
const TOKEN_COLUMNS: &str = "t.grant_id, t.created_at AS token_created_at, \
                             t.expires_at AS token_expires_at, t.rotated_at";
const CONSENT_COLUMNS: &str = "user_id, client_id, scopes::text AS scopes, created_at, updated_at";
const DEVICE_COLUMNS: &str = "user_code, client_id, scope, created_at, expires_at, interval_secs, \
                              last_polled_at, status, user_id, session_id, \
                              detail::text AS detail";
const PUSHED_COLUMNS: &str = "client_id, parameters::text AS parameters, created_at, expires_at";

/// How times are stored: TIMESTAMPTZ in UTC, which keeps microseconds.
fn stored_time(t: OffsetDateTime) -> OffsetDateTime {
    normalize_time(t)
}

fn object_of(row: &PgRow, what: &str, column: &str) -> Result<Map<String, Value>, StoreError> {
    object_from_text(what, row.try_get(column).map_err(db)?)
}

fn signing_key_from_row(row: &PgRow) -> Result<SigningKey, StoreError> {
    Ok(SigningKey {
        kid: row.try_get("kid").map_err(db)?,
        algorithm: row.try_get("algorithm").map_err(db)?,
        public_jwk: object_of(row, "public JWK", "public_jwk")?,
        sealed_private_key: row.try_get("sealed_private_key").map_err(db)?,
        created_at: row.try_get("created_at").map_err(db)?,
        activates_at: row.try_get("activates_at").map_err(db)?,
        retires_at: row.try_get("retires_at").map_err(db)?,
        expires_at: row.try_get("expires_at").map_err(db)?,
    })
}

fn client_from_row(row: &PgRow) -> Result<OAuthClient, StoreError> {
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
        created_at: row.try_get("created_at").map_err(db)?,
        updated_at: row.try_get("updated_at").map_err(db)?,
    })
}

fn code_from_row(row: &PgRow) -> Result<AuthorizationCode, StoreError> {
    Ok(AuthorizationCode {
        client_id: row.try_get("client_id").map_err(db)?,
        user_id: row.try_get("user_id").map_err(db)?,
        session_id: row.try_get("session_id").map_err(db)?,
        redirect_uri: row.try_get("redirect_uri").map_err(db)?,
        grant_id: row.try_get("grant_id").map_err(db)?,
        created_at: row.try_get("created_at").map_err(db)?,
        expires_at: row.try_get("expires_at").map_err(db)?,
        detail: object_of(row, "code detail", "detail")?,
    })
}

fn grant_from_row(row: &PgRow) -> Result<Grant, StoreError> {
    Ok(Grant {
        id: row.try_get("id").map_err(db)?,
        client_id: row.try_get("client_id").map_err(db)?,
        user_id: row.try_get("user_id").map_err(db)?,
        session_id: row.try_get("session_id").map_err(db)?,
        scope: row.try_get("scope").map_err(db)?,
        created_at: row.try_get("created_at").map_err(db)?,
        expires_at: row.try_get("expires_at").map_err(db)?,
        revoked_at: row.try_get("revoked_at").map_err(db)?,
        detail: object_of(row, "grant detail", "detail")?,
    })
}

fn token_from_row(row: &PgRow) -> Result<RefreshToken, StoreError> {
    Ok(RefreshToken {
        grant_id: row.try_get("grant_id").map_err(db)?,
        created_at: row.try_get("token_created_at").map_err(db)?,
        expires_at: row.try_get("token_expires_at").map_err(db)?,
        rotated_at: row.try_get("rotated_at").map_err(db)?,
    })
}

fn consent_from_row(row: &PgRow) -> Result<Consent, StoreError> {
    Ok(Consent {
        user_id: row.try_get("user_id").map_err(db)?,
        client_id: row.try_get("client_id").map_err(db)?,
        scopes: scopes_from_text(row.try_get("scopes").map_err(db)?)?,
        created_at: row.try_get("created_at").map_err(db)?,
        updated_at: row.try_get("updated_at").map_err(db)?,
    })
}

fn device_from_row(row: &PgRow) -> Result<DeviceAuthorization, StoreError> {
    Ok(DeviceAuthorization {
        user_code: row.try_get("user_code").map_err(db)?,
        client_id: row.try_get("client_id").map_err(db)?,
        scope: row.try_get("scope").map_err(db)?,
        created_at: row.try_get("created_at").map_err(db)?,
        expires_at: row.try_get("expires_at").map_err(db)?,
        interval_secs: row.try_get("interval_secs").map_err(db)?,
        last_polled_at: row.try_get("last_polled_at").map_err(db)?,
        status: device_status_from_db(row.try_get("status").map_err(db)?)?,
        user_id: row.try_get("user_id").map_err(db)?,
        session_id: row.try_get("session_id").map_err(db)?,
        detail: object_of(row, "device authorization detail", "detail")?,
    })
}

fn pushed_from_row(row: &PgRow) -> Result<PushedRequest, StoreError> {
    Ok(PushedRequest {
        client_id: row.try_get("client_id").map_err(db)?,
        parameters: object_of(row, "pushed request parameters", "parameters")?,
        created_at: row.try_get("created_at").map_err(db)?,
        expires_at: row.try_get("expires_at").map_err(db)?,
    })
}

async fn insert_refresh_token(
    tx: &mut PgTransaction<'_>,
    digest: &TokenDigest,
    token: &RefreshToken,
    expires_at: OffsetDateTime,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO refresh_tokens (digest, grant_id, created_at, expires_at, rotated_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(digest.as_bytes().as_slice())
    .bind(&token.grant_id)
    .bind(stored_time(token.created_at))
    .bind(stored_time(expires_at))
    .bind(token.rotated_at.map(stored_time))
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// Revokes the live grants of `user_id` (to `client_id` only, if given); returns how many.
async fn revoke_live_grants(
    tx: &mut PgTransaction<'_>,
    user_id: &str,
    client_id: Option<&str>,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE grants SET revoked_at = $1 WHERE user_id = $2 \
         AND ($3::text IS NULL OR client_id = $3) AND revoked_at IS NULL AND expires_at > $1",
    )
    .bind(now)
    .bind(user_id)
    .bind(client_id)
    .execute(&mut **tx)
    .await
    .map_err(db)?
    .rows_affected())
}

impl PostgresStore {
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
        let found: Result<Option<i32>, sqlx::Error> =
            sqlx::query_scalar("SELECT 1 FROM oauth_clients WHERE id = $1")
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
impl SigningKeyStore for PostgresStore {
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
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SIGNING_KEY_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let newest: Option<String> = sqlx::query_scalar(
            "SELECT kid FROM signing_keys WHERE algorithm = $1 \
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
             created_at, activates_at, retires_at, expires_at) \
             VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8)",
        )
        .bind(&key.kid)
        .bind(&key.algorithm)
        .bind(&jwk)
        .bind(key.sealed_private_key.as_slice())
        .bind(stored_time(key.created_at))
        .bind(stored_time(key.activates_at))
        .bind(key.retires_at.map(stored_time))
        .bind(key.expires_at.map(stored_time))
        .execute(&mut *tx)
        .await
        .map_err(signing_key_write_error)?;
        if let (Some(previous), Some(retirement)) = (newest, retirement) {
            sqlx::query("UPDATE signing_keys SET retires_at = $1, expires_at = $2 WHERE kid = $3")
                .bind(stored_time(retirement.retires_at))
                .bind(stored_time(retirement.expires_at))
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
            sqlx::query("DELETE FROM signing_keys WHERE expires_at <= $1")
                .bind(stored_time(now))
                .execute(&self.pool)
                .await
                .map_err(db)?
                .rows_affected(),
        )
    }
}

#[async_trait]
impl ClientStore for PostgresStore {
    async fn create_client(&self, client: &OAuthClient) -> Result<(), StoreError> {
        let metadata = check_client(client)?;
        sqlx::query(
            "INSERT INTO oauth_clients (id, name, secret_digest, metadata, created_at, \
             updated_at) VALUES ($1, $2, $3, $4::jsonb, $5, $6)",
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
        .bind(stored_time(client.created_at))
        .bind(stored_time(client.updated_at))
        .execute(&self.pool)
        .await
        .map_err(client_write_error)?;
        Ok(())
    }

    async fn get_client(&self, id: &str) -> Result<Option<OAuthClient>, StoreError> {
        check_input("client id", id)?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE id = $1"
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
            "SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE ($1::text IS NULL OR id > $1) \
             ORDER BY id LIMIT $2"
        )))
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
            "UPDATE oauth_clients SET name = $1, metadata = $2::jsonb, updated_at = $3 \
             WHERE id = $4 RETURNING {CLIENT_COLUMNS}"
        )))
        .bind(name)
        .bind(&metadata)
        .bind(stored_time(now))
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
        Ok(sqlx::query(
            "UPDATE oauth_clients SET secret_digest = $1, updated_at = $2 WHERE id = $3",
        )
        .bind(digest.map(|d| d.as_bytes().as_slice()))
        .bind(stored_time(now))
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db)?
        .rows_affected()
            == 1)
    }

    async fn delete_client(&self, id: &str) -> Result<bool, StoreError> {
        check_input("client id", id)?;
        Ok(sqlx::query("DELETE FROM oauth_clients WHERE id = $1")
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
            "INSERT INTO client_assertion_jtis (client_id, jti, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (client_id, jti) DO NOTHING",
        )
        .bind(client_id)
        .bind(jti)
        .bind(stored_time(expires_at))
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(done) => Ok(done.rows_affected() == 1),
            Err(e) => Err(self.owner_error(client_id, None, e).await),
        }
    }
}

#[async_trait]
impl GrantStore for PostgresStore {
    async fn put_authorization_code(
        &self,
        digest: &TokenDigest,
        code: &AuthorizationCode,
    ) -> Result<(), StoreError> {
        let detail = check_code(code)?;
        let inserted = sqlx::query(
            "INSERT INTO authorization_codes (digest, client_id, user_id, session_id, \
             redirect_uri, grant_id, created_at, expires_at, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)",
        )
        .bind(digest.as_bytes().as_slice())
        .bind(&code.client_id)
        .bind(&code.user_id)
        .bind(code.session_id.as_deref())
        .bind(&code.redirect_uri)
        .bind(&code.grant_id)
        .bind(stored_time(code.created_at))
        .bind(stored_time(code.expires_at))
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
            "UPDATE authorization_codes SET consumed_at = $1 WHERE digest = $2 \
             AND consumed_at IS NULL RETURNING {CODE_COLUMNS}"
        )))
        .bind(stored_time(now))
        .bind(digest.as_bytes().as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        if let Some(row) = redeemed {
            return Ok(CodeRedemption::Redeemed(code_from_row(&row)?));
        }
        let earlier = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CODE_COLUMNS} FROM authorization_codes WHERE digest = $1"
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
        let mut tx = self.pool.begin().await.map_err(db)?;
        let client: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM oauth_clients WHERE id = $1 FOR KEY SHARE")
                .bind(&grant.client_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        if client.is_none() {
            return Err(client_not_found(&grant.client_id));
        }
        if let Some(user_id) = &grant.user_id {
            let status: Option<String> =
                sqlx::query_scalar("SELECT status FROM users WHERE id = $1 FOR SHARE")
                    .bind(user_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
            require_active(user_id, status.as_deref())?;
        }
        sqlx::query(
            "INSERT INTO grants (id, client_id, user_id, session_id, scope, created_at, \
             expires_at, revoked_at, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)",
        )
        .bind(&grant.id)
        .bind(&grant.client_id)
        .bind(grant.user_id.as_deref())
        .bind(grant.session_id.as_deref())
        .bind(&grant.scope)
        .bind(stored_time(grant.created_at))
        .bind(stored_time(grant.expires_at))
        .bind(grant.revoked_at.map(stored_time))
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
            "SELECT {GRANT_COLUMNS} FROM grants g WHERE g.id = $1"
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
            sqlx::query("UPDATE grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(stored_time(now))
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
            "SELECT {GRANT_COLUMNS} FROM grants g WHERE g.session_id = $1 \
             AND g.expires_at > $2 ORDER BY g.created_at, g.id"
        )))
        .bind(session_id)
        .bind(stored_time(now))
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
        let mut tx = self.pool.begin().await.map_err(db)?;
        // The user row first: it waits for a grant being created (which holds it FOR SHARE), and
        // the revocation below then sees that grant.
        sqlx::query("UPDATE users SET token_version = token_version + 1 WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let revoked = revoke_live_grants(&mut tx, user_id, None, stored_time(now))
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(revoked)
    }

    async fn user_token_version(&self, user_id: &str) -> Result<Option<i64>, StoreError> {
        check_input("user id", user_id)?;
        Ok(
            sqlx::query_scalar("SELECT token_version FROM users WHERE id = $1")
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
             JOIN grants g ON g.id = t.grant_id WHERE t.digest = $1"
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
        let now = stored_time(now);
        let mut tx = self.pool.begin().await.map_err(db)?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS}, {GRANT_COLUMNS}, u.status AS user_status \
             FROM refresh_tokens t JOIN grants g ON g.id = t.grant_id \
             LEFT JOIN users u ON u.id = g.user_id WHERE t.digest = $1 FOR UPDATE OF t, g"
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
                    "UPDATE refresh_tokens SET rotated_at = $1 WHERE digest = $2 \
                     AND rotated_at IS NULL",
                )
                .bind(now)
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
                sqlx::query(
                    "UPDATE grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                )
                .bind(now)
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
            "SELECT {CONSENT_COLUMNS} FROM consents WHERE user_id = $1 AND client_id = $2"
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
             VALUES ($1, $2, $3::jsonb, $4, $5) ON CONFLICT (user_id, client_id) DO UPDATE SET \
             scopes = excluded.scopes, updated_at = excluded.updated_at",
        )
        .bind(&consent.user_id)
        .bind(&consent.client_id)
        .bind(&scopes)
        .bind(stored_time(consent.created_at))
        .bind(stored_time(consent.updated_at))
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
            "SELECT {CONSENT_COLUMNS} FROM consents WHERE user_id = $1 ORDER BY client_id"
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
        let mut tx = self.pool.begin().await.map_err(db)?;
        let deleted = sqlx::query("DELETE FROM consents WHERE user_id = $1 AND client_id = $2")
            .bind(user_id)
            .bind(client_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected()
            == 1;
        revoke_live_grants(&mut tx, user_id, Some(client_id), stored_time(now))
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
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("DELETE FROM device_authorizations WHERE user_code = $1 AND expires_at <= $2")
            .bind(&authorization.user_code)
            .bind(stored_time(authorization.created_at))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let inserted = sqlx::query(
            "INSERT INTO device_authorizations (device_digest, user_code, client_id, scope, \
             created_at, expires_at, interval_secs, last_polled_at, status, user_id, \
             session_id, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb) \
             ON CONFLICT (user_code) DO NOTHING",
        )
        .bind(device_digest.as_bytes().as_slice())
        .bind(&authorization.user_code)
        .bind(&authorization.client_id)
        .bind(&authorization.scope)
        .bind(stored_time(authorization.created_at))
        .bind(stored_time(authorization.expires_at))
        .bind(authorization.interval_secs)
        .bind(authorization.last_polled_at.map(stored_time))
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
            "SELECT {DEVICE_COLUMNS} FROM device_authorizations WHERE user_code = $1 \
             AND status = 'pending' AND expires_at > $2"
        )))
        .bind(user_code)
        .bind(stored_time(now))
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
            "UPDATE device_authorizations SET status = $1, user_id = $2, session_id = $3, \
             detail = $4::jsonb WHERE user_code = $5 AND status = 'pending' AND expires_at > $6",
        )
        .bind(status)
        .bind(user_id)
        .bind(session_id)
        .bind(&detail)
        .bind(user_code)
        .bind(stored_time(now))
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
        let now = stored_time(now);
        let digest = device_digest.as_bytes().as_slice();
        let mut tx = self.pool.begin().await.map_err(db)?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {DEVICE_COLUMNS} FROM device_authorizations WHERE device_digest = $1 \
             FOR UPDATE"
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
                    "UPDATE device_authorizations SET status = 'redeemed', last_polled_at = $1 \
                     WHERE device_digest = $2 AND status = 'approved' \
                     RETURNING {DEVICE_COLUMNS}"
                )))
                .bind(now)
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
                    "UPDATE device_authorizations SET interval_secs = $1, \
                     last_polled_at = $2 WHERE device_digest = $3",
                )
                .bind(interval_secs)
                .bind(now)
                .bind(digest)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                DevicePoll::SlowDown
            }
            DevicePollStep::Pending => {
                sqlx::query(
                    "UPDATE device_authorizations SET last_polled_at = $1 \
                     WHERE device_digest = $2",
                )
                .bind(now)
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
             VALUES ($1, $2, $3::jsonb, $4, $5)",
        )
        .bind(id)
        .bind(&request.client_id)
        .bind(&parameters)
        .bind(stored_time(request.created_at))
        .bind(stored_time(request.expires_at))
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
            "SELECT {PUSHED_COLUMNS} FROM pushed_requests WHERE id = $1 AND NOT consumed \
             AND expires_at > $2"
        )))
        .bind(id)
        .bind(stored_time(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(pushed_from_row).transpose()
    }

    async fn consume_pushed_request(&self, id: &str) -> Result<bool, StoreError> {
        check_input("request id", id)?;
        Ok(
            sqlx::query(
                "UPDATE pushed_requests SET consumed = true WHERE id = $1 AND NOT consumed",
            )
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
            "INSERT INTO revoked_access_tokens (jti, expires_at) VALUES ($1, $2) \
             ON CONFLICT (jti) DO UPDATE SET \
             expires_at = GREATEST(revoked_access_tokens.expires_at, excluded.expires_at)",
        )
        .bind(jti)
        .bind(stored_time(expires_at))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn access_token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        check_input("jti", jti)?;
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM revoked_access_tokens WHERE jti = $1")
                .bind(jti)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        Ok(found.is_some())
    }

    async fn purge_grants(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let now = stored_time(now);
        let mut tx = self.pool.begin().await.map_err(db)?;
        let mut purged = 0;
        for statement in [
            "DELETE FROM authorization_codes WHERE expires_at <= $1",
            // Counted here rather than left to the cascade, so the total includes them.
            "DELETE FROM refresh_tokens WHERE expires_at <= $1 OR grant_id IN \
             (SELECT id FROM grants WHERE expires_at <= $1 OR revoked_at <= $1)",
            "DELETE FROM grants WHERE expires_at <= $1 OR revoked_at <= $1",
            "DELETE FROM device_authorizations WHERE expires_at <= $1",
            "DELETE FROM pushed_requests WHERE expires_at <= $1 OR consumed",
            "DELETE FROM client_assertion_jtis WHERE expires_at <= $1",
            "DELETE FROM revoked_access_tokens WHERE expires_at <= $1",
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
