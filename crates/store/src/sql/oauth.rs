//! [`SigningKeyStore`], [`ClientStore`] and [`GrantStore`].
//!
//! Consuming operations that are one statement (redeeming a code, consuming a pushed request,
//! recording an assertion id) are atomic on their own: on PostgreSQL a concurrent updater of the
//! same row waits and re-checks the condition on the committed row, and SQLite has one writer.
//! Those that read before they write run in a write transaction, and PostgreSQL takes a lock
//! that makes them atomic across replicas:
//! - rotating a signing key serializes on [`Serial::SigningKeys`] (the compare-and-set is on
//!   "the newest key of an algorithm", which may not exist yet, so there is no row to lock);
//! - rotating a refresh token locks the token and its grant `FOR UPDATE`, so concurrent
//!   rotations of one token (or of one family) run one after the other and each sees what the
//!   previous one wrote;
//! - polling a device code locks its row `FOR UPDATE`;
//! - creating a grant locks the user row `FOR SHARE` (as creating a session does), and revoking
//!   a user's grants updates that row before revoking, so a grant cannot slip past it.

use async_trait::async_trait;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use trustgate_core::TokenDigest;

use super::api_keys::advance_epoch;
use super::{Arg, Database, Row, RowLock, Serial, SqlStore, Tx, TxMode, args};
use super::{is_reference, reference_is, unique_is};
use crate::accounts::{object_from_text, require_active, status_from_db, user_not_found};
use crate::oauth::{
    AuthorizationCode, ClientPage, ClientStore, CodeRedemption, Consent, DeviceAuthorization,
    DevicePoll, DevicePollRule, DevicePollStep, Grant, GrantStore, KeyRetirement, OAuthClient,
    PushedRequest, RefreshRotation, RefreshToken, RotationRule, RotationStep, SigningKey,
    SigningKeyStore, check_client, check_client_update, check_code, check_consent,
    check_device_authorization, check_device_decision, check_grant, check_pushed_request,
    check_rotation, check_signing_key, client_not_found, device_status_from_db, device_status_str,
    missing_owner, refresh_expiry, scopes_from_text,
};
use crate::relationships::{check_input, normalize_time};
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
                             t.expires_at AS token_expires_at, t.rotated_at, t.grace_used";
const CONSENT_COLUMNS: &str = "user_id, client_id, scopes, created_at, updated_at";
const DEVICE_COLUMNS: &str = "user_code, client_id, scope, created_at, expires_at, interval_secs, \
                              last_polled_at, status, user_id, session_id, detail";
const PUSHED_COLUMNS: &str = "client_id, parameters, created_at, expires_at";

fn object_of(row: &impl Row, what: &str, column: &str) -> Result<Map<String, Value>, StoreError> {
    object_from_text(what, row.json(column)?)
}

fn signing_key_from_row(row: &impl Row) -> Result<SigningKey, StoreError> {
    Ok(SigningKey {
        kid: row.text("kid")?,
        algorithm: row.text("algorithm")?,
        public_jwk: object_of(row, "public JWK", "public_jwk")?,
        sealed_private_key: row.bytes("sealed_private_key")?.to_vec(),
        created_at: row.time("created_at")?,
        activates_at: row.time("activates_at")?,
        retires_at: row.opt_time("retires_at")?,
        expires_at: row.opt_time("expires_at")?,
    })
}

fn client_from_row(row: &impl Row) -> Result<OAuthClient, StoreError> {
    let secret_digest = row
        .opt_bytes("secret_digest")?
        .map(|bytes| {
            TokenDigest::from_bytes(bytes).ok_or_else(|| {
                StoreError::Corrupt("stored client secret digest is not 32 bytes".into())
            })
        })
        .transpose()?;
    Ok(OAuthClient {
        id: row.text("id")?,
        name: row.text("name")?,
        secret_digest,
        metadata: object_of(row, "client metadata", "metadata")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

fn code_from_row(row: &impl Row) -> Result<AuthorizationCode, StoreError> {
    Ok(AuthorizationCode {
        client_id: row.text("client_id")?,
        user_id: row.text("user_id")?,
        session_id: row.opt_text("session_id")?,
        redirect_uri: row.text("redirect_uri")?,
        grant_id: row.text("grant_id")?,
        created_at: row.time("created_at")?,
        expires_at: row.time("expires_at")?,
        detail: object_of(row, "code detail", "detail")?,
    })
}

fn grant_from_row(row: &impl Row) -> Result<Grant, StoreError> {
    Ok(Grant {
        id: row.text("id")?,
        client_id: row.text("client_id")?,
        user_id: row.opt_text("user_id")?,
        session_id: row.opt_text("session_id")?,
        scope: row.text("scope")?,
        created_at: row.time("created_at")?,
        expires_at: row.time("expires_at")?,
        revoked_at: row.opt_time("revoked_at")?,
        detail: object_of(row, "grant detail", "detail")?,
    })
}

fn token_from_row(row: &impl Row) -> Result<RefreshToken, StoreError> {
    Ok(RefreshToken {
        grant_id: row.text("grant_id")?,
        created_at: row.time("token_created_at")?,
        expires_at: row.time("token_expires_at")?,
        rotated_at: row.opt_time("rotated_at")?,
        grace_used: row.bool("grace_used")?,
    })
}

fn consent_from_row(row: &impl Row) -> Result<Consent, StoreError> {
    Ok(Consent {
        user_id: row.text("user_id")?,
        client_id: row.text("client_id")?,
        scopes: scopes_from_text(row.json("scopes")?)?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

fn device_from_row(row: &impl Row) -> Result<DeviceAuthorization, StoreError> {
    Ok(DeviceAuthorization {
        user_code: row.text("user_code")?,
        client_id: row.text("client_id")?,
        scope: row.text("scope")?,
        created_at: row.time("created_at")?,
        expires_at: row.time("expires_at")?,
        interval_secs: row.i64("interval_secs")?,
        last_polled_at: row.opt_time("last_polled_at")?,
        status: device_status_from_db(row.str("status")?)?,
        user_id: row.opt_text("user_id")?,
        session_id: row.opt_text("session_id")?,
        detail: object_of(row, "device authorization detail", "detail")?,
    })
}

fn pushed_from_row(row: &impl Row) -> Result<PushedRequest, StoreError> {
    Ok(PushedRequest {
        client_id: row.text("client_id")?,
        parameters: object_of(row, "pushed request parameters", "parameters")?,
        created_at: row.time("created_at")?,
        expires_at: row.time("expires_at")?,
    })
}

async fn insert_refresh_token<D: Database>(
    tx: &mut Tx<'_, D>,
    digest: &TokenDigest,
    token: &RefreshToken,
    expires_at: OffsetDateTime,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO refresh_tokens (digest, grant_id, created_at, expires_at, rotated_at) \
         VALUES ($1, $2, $3, $4, $5)",
        args![
            digest,
            &token.grant_id,
            token.created_at,
            expires_at,
            token.rotated_at
        ],
    )
    .await?;
    Ok(())
}

/// Revokes the live grants of `user_id` (to `client_id` only, if given); returns how many.
/// The credential epoch moves when any was revoked (the caller's last statement may move it
/// again; it only has to move).
async fn revoke_live_grants<D: Database>(
    tx: &mut Tx<'_, D>,
    user_id: &str,
    client_id: Option<&str>,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    let revoked = tx
        .execute(
            "UPDATE grants SET revoked_at = $1 WHERE user_id = $2 \
             AND ($3 IS NULL OR client_id = $3) AND revoked_at IS NULL AND expires_at > $1",
            args![now, user_id, client_id],
        )
        .await?;
    if revoked > 0 {
        advance_epoch(tx).await?;
    }
    Ok(revoked)
}

impl<D: Database> SqlStore<D> {
    /// Maps a failed insert: a foreign-key violation becomes [`StoreError::NotFound`] naming the
    /// missing client or user. Call it after the failed transaction (if any) was dropped.
    async fn owner_error(
        &self,
        client_id: &str,
        user_id: Option<&str>,
        err: StoreError,
    ) -> StoreError {
        if !is_reference(&err) {
            return err;
        }
        match self
            .fetch_optional(
                "SELECT id FROM oauth_clients WHERE id = $1",
                args![client_id],
            )
            .await
        {
            Ok(found) => missing_owner(client_id, found.is_some(), user_id),
            Err(e) => e,
        }
    }
}

#[async_trait]
impl<D: Database> SigningKeyStore for SqlStore<D> {
    async fn list_signing_keys(&self) -> Result<Vec<SigningKey>, StoreError> {
        let rows = self
            .fetch_all(
                &format!("SELECT {SIGNING_KEY_COLUMNS} FROM signing_keys ORDER BY created_at, kid"),
                args![],
            )
            .await?;
        rows.iter().map(signing_key_from_row).collect()
    }

    async fn rotate_signing_key(
        &self,
        key: &SigningKey,
        expected_newest: Option<&str>,
        retirement: Option<KeyRetirement>,
    ) -> Result<bool, StoreError> {
        let jwk = check_signing_key(key, expected_newest, retirement.as_ref())?;
        let mut tx = self.begin(TxMode::Write).await?;
        tx.serialize(Serial::SigningKeys).await?;
        let newest = tx
            .fetch_optional(
                "SELECT kid FROM signing_keys WHERE algorithm = $1 \
                 ORDER BY created_at DESC, kid DESC LIMIT 1",
                args![&key.algorithm],
            )
            .await?
            .map(|row| row.text("kid"))
            .transpose()?;
        if newest.as_deref() != expected_newest {
            return Ok(false);
        }
        // The kid is the only unique key.
        tx.execute(
            "INSERT INTO signing_keys (kid, algorithm, public_jwk, sealed_private_key, \
             created_at, activates_at, retires_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                (&key.kid).into(),
                (&key.algorithm).into(),
                Arg::json(&jwk),
                (&key.sealed_private_key).into(),
                key.created_at.into(),
                key.activates_at.into(),
                key.retires_at.into(),
                key.expires_at.into(),
            ],
        )
        .await
        .map_err(unique_is(Conflict::KidTaken))?;
        if let (Some(previous), Some(retirement)) = (newest, retirement) {
            tx.execute(
                "UPDATE signing_keys SET retires_at = $1, expires_at = $2 WHERE kid = $3",
                args![retirement.retires_at, retirement.expires_at, &previous],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_expired_signing_keys(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.execute(
            "DELETE FROM signing_keys WHERE expires_at <= $1",
            args![now],
        )
        .await
    }
}

#[async_trait]
impl<D: Database> ClientStore for SqlStore<D> {
    async fn create_client(&self, client: &OAuthClient) -> Result<(), StoreError> {
        let metadata = check_client(client)?;
        // The id is the only unique key.
        self.execute(
            "INSERT INTO oauth_clients (id, name, secret_digest, metadata, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                (&client.id).into(),
                (&client.name).into(),
                client.secret_digest.as_ref().into(),
                Arg::json(&metadata),
                client.created_at.into(),
                client.updated_at.into(),
            ],
        )
        .await
        .map_err(unique_is(Conflict::ClientExists))?;
        Ok(())
    }

    async fn get_client(&self, id: &str) -> Result<Option<OAuthClient>, StoreError> {
        check_input("client id", id)?;
        let row = self
            .fetch_optional(
                &format!("SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE id = $1"),
                args![id],
            )
            .await?;
        row.as_ref().map(client_from_row).transpose()
    }

    async fn list_clients(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<ClientPage, StoreError> {
        let (clients, next) = self
            .page_by_id(
                CLIENT_COLUMNS,
                "oauth_clients",
                after,
                limit,
                client_from_row,
                |c| &c.id,
            )
            .await?;
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
        let mut tx = self.begin(TxMode::Write).await?;
        let row = tx
            .fetch_optional(
                &format!(
                    "UPDATE oauth_clients SET name = $1, metadata = $2, updated_at = $3 \
                     WHERE id = $4 RETURNING {CLIENT_COLUMNS}"
                ),
                &[name.into(), Arg::json(&metadata), now.into(), id.into()],
            )
            .await?;
        let client = row.as_ref().map(client_from_row).transpose()?;
        if client.is_some() {
            // Replicas caching authenticated clients drop them (grant types, methods, keys).
            advance_epoch(&mut tx).await?;
            tx.commit().await?;
        }
        Ok(client)
    }

    async fn set_client_secret(
        &self,
        id: &str,
        digest: Option<&TokenDigest>,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        check_input("client id", id)?;
        let mut tx = self.begin(TxMode::Write).await?;
        let found = tx
            .execute(
                "UPDATE oauth_clients SET secret_digest = $1, updated_at = $2 WHERE id = $3",
                args![digest, now, id],
            )
            .await?
            == 1;
        if found {
            // The old secret stops on every replica that caches authenticated clients.
            advance_epoch(&mut tx).await?;
            tx.commit().await?;
        }
        Ok(found)
    }

    async fn delete_client(&self, id: &str) -> Result<bool, StoreError> {
        check_input("client id", id)?;
        let mut tx = self.begin(TxMode::Write).await?;
        let deleted = tx
            .execute("DELETE FROM oauth_clients WHERE id = $1", args![id])
            .await?
            == 1;
        if deleted {
            advance_epoch(&mut tx).await?;
            tx.commit().await?;
        }
        Ok(deleted)
    }

    async fn record_client_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        check_input("client id", client_id)?;
        check_input("jti", jti)?;
        let inserted = self
            .execute(
                "INSERT INTO client_assertion_jtis (client_id, jti, expires_at) \
                 VALUES ($1, $2, $3) ON CONFLICT (client_id, jti) DO NOTHING",
                args![client_id, jti, expires_at],
            )
            .await;
        match inserted {
            Ok(n) => Ok(n == 1),
            Err(e) => Err(self.owner_error(client_id, None, e).await),
        }
    }
}

#[async_trait]
impl<D: Database> GrantStore for SqlStore<D> {
    async fn put_authorization_code(
        &self,
        digest: &TokenDigest,
        code: &AuthorizationCode,
    ) -> Result<(), StoreError> {
        let detail = check_code(code)?;
        let inserted = self
            .execute(
                "INSERT INTO authorization_codes (digest, client_id, user_id, session_id, \
                 redirect_uri, grant_id, created_at, expires_at, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    digest.into(),
                    (&code.client_id).into(),
                    (&code.user_id).into(),
                    code.session_id.as_deref().into(),
                    (&code.redirect_uri).into(),
                    (&code.grant_id).into(),
                    code.created_at.into(),
                    code.expires_at.into(),
                    Arg::json(&detail),
                ],
            )
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
        let redeemed = self
            .fetch_optional(
                &format!(
                    "UPDATE authorization_codes SET consumed_at = $1 WHERE digest = $2 \
                     AND consumed_at IS NULL RETURNING {CODE_COLUMNS}"
                ),
                args![now, digest],
            )
            .await?;
        if let Some(row) = redeemed {
            return Ok(CodeRedemption::Redeemed(code_from_row(&row)?));
        }
        let earlier = self
            .fetch_optional(
                &format!("SELECT {CODE_COLUMNS} FROM authorization_codes WHERE digest = $1"),
                args![digest],
            )
            .await?;
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
        let mut tx = self.begin(TxMode::Write).await?;
        let client = tx
            .fetch_optional(
                &format!(
                    "SELECT id FROM oauth_clients WHERE id = $1{}",
                    D::row_lock(RowLock::KeyShare)
                ),
                args![&grant.client_id],
            )
            .await?;
        if client.is_none() {
            return Err(client_not_found(&grant.client_id));
        }
        if let Some(user_id) = &grant.user_id {
            let status = tx
                .fetch_optional(
                    &format!(
                        "SELECT status FROM users WHERE id = $1{}",
                        D::row_lock(RowLock::Share)
                    ),
                    args![user_id],
                )
                .await?
                .map(|row| row.text("status"))
                .transpose()?;
            require_active(user_id, status.as_deref())?;
        }
        tx.execute(
            "INSERT INTO grants (id, client_id, user_id, session_id, scope, created_at, \
             expires_at, revoked_at, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                (&grant.id).into(),
                (&grant.client_id).into(),
                grant.user_id.as_deref().into(),
                grant.session_id.as_deref().into(),
                (&grant.scope).into(),
                grant.created_at.into(),
                grant.expires_at.into(),
                grant.revoked_at.into(),
                Arg::json(&detail),
            ],
        )
        .await?;
        if let Some((digest, token)) = refresh {
            let expires_at = refresh_expiry(token.expires_at, grant.expires_at);
            insert_refresh_token(&mut tx, digest, token, expires_at).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get_grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        check_input("grant id", id)?;
        let row = self
            .fetch_optional(
                &format!("SELECT {GRANT_COLUMNS} FROM grants g WHERE g.id = $1"),
                args![id],
            )
            .await?;
        row.as_ref().map(grant_from_row).transpose()
    }

    async fn revoke_grant(&self, id: &str, now: OffsetDateTime) -> Result<bool, StoreError> {
        check_input("grant id", id)?;
        let mut tx = self.begin(TxMode::Write).await?;
        let revoked = tx
            .execute(
                "UPDATE grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                args![now, id],
            )
            .await?
            == 1;
        if revoked {
            advance_epoch(&mut tx).await?;
            tx.commit().await?;
        }
        Ok(revoked)
    }

    async fn session_grants(
        &self,
        session_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<Grant>, StoreError> {
        check_input("session id", session_id)?;
        let rows = self
            .fetch_all(
                &format!(
                    "SELECT {GRANT_COLUMNS} FROM grants g WHERE g.session_id = $1 \
                     AND g.expires_at > $2 ORDER BY g.created_at, g.id"
                ),
                args![session_id, now],
            )
            .await?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn revoke_user_grants(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        check_input("user id", user_id)?;
        let mut tx = self.begin(TxMode::Write).await?;
        // The user row first: it waits for a grant being created (which holds it FOR SHARE), and
        // the revocation below then sees that grant.
        tx.execute(
            "UPDATE users SET token_version = token_version + 1 WHERE id = $1",
            args![user_id],
        )
        .await?;
        let revoked = revoke_live_grants(&mut tx, user_id, None, now).await?;
        // Every token of the user is dead (the token version moved), grants or not.
        advance_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    async fn user_token_version(&self, user_id: &str) -> Result<Option<i64>, StoreError> {
        check_input("user id", user_id)?;
        self.fetch_optional(
            "SELECT token_version FROM users WHERE id = $1",
            args![user_id],
        )
        .await?
        .map(|row| row.i64("token_version"))
        .transpose()
    }

    async fn find_refresh_token(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<(RefreshToken, Grant)>, StoreError> {
        let row = self
            .fetch_optional(
                &format!(
                    "SELECT {TOKEN_COLUMNS}, {GRANT_COLUMNS} FROM refresh_tokens t \
                     JOIN grants g ON g.id = t.grant_id WHERE t.digest = $1"
                ),
                args![digest],
            )
            .await?;
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
        let mut tx = self.begin(TxMode::Write).await?;
        let row = tx
            .fetch_optional(
                &format!(
                    "SELECT {TOKEN_COLUMNS}, {GRANT_COLUMNS}, u.status AS user_status \
                     FROM refresh_tokens t JOIN grants g ON g.id = t.grant_id \
                     LEFT JOIN users u ON u.id = g.user_id WHERE t.digest = $1{}",
                    D::row_lock(RowLock::UpdateOf("t, g"))
                ),
                args![old],
            )
            .await?;
        let Some(row) = row else {
            return Ok(RefreshRotation::Invalid);
        };
        let token = token_from_row(&row)?;
        let grant = grant_from_row(&row)?;
        let user_status = row
            .opt_str("user_status")?
            .map(status_from_db)
            .transpose()?;
        let step = decide(&token, &grant, user_status);
        let successor = RefreshToken {
            grant_id: grant.id.clone(),
            created_at: now,
            expires_at: refresh_expiry(new_expires_at, grant.expires_at),
            rotated_at: None,
            grace_used: false,
        };
        let outcome = match step {
            RotationStep::Invalid => return Ok(RefreshRotation::Invalid),
            RotationStep::Rotate => {
                tx.execute(
                    "UPDATE refresh_tokens SET rotated_at = $1 WHERE digest = $2 \
                     AND rotated_at IS NULL",
                    args![now, old],
                )
                .await?;
                insert_refresh_token(&mut tx, new, &successor, successor.expires_at).await?;
                RefreshRotation::Rotated(grant)
            }
            RotationStep::Grace => {
                tx.execute(
                    "UPDATE refresh_tokens SET grace_used = $1 WHERE digest = $2",
                    args![true, old],
                )
                .await?;
                insert_refresh_token(&mut tx, new, &successor, successor.expires_at).await?;
                RefreshRotation::WithinGrace(grant)
            }
            RotationStep::Reuse => {
                let revoked = tx
                    .execute(
                        "UPDATE grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                        args![now, &grant.id],
                    )
                    .await?;
                if revoked > 0 {
                    advance_epoch(&mut tx).await?;
                }
                RefreshRotation::Reused { grant_id: grant.id }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn get_consent(
        &self,
        user_id: &str,
        client_id: &str,
    ) -> Result<Option<Consent>, StoreError> {
        check_input("user id", user_id)?;
        check_input("client id", client_id)?;
        let row = self
            .fetch_optional(
                &format!(
                    "SELECT {CONSENT_COLUMNS} FROM consents WHERE user_id = $1 AND client_id = $2"
                ),
                args![user_id, client_id],
            )
            .await?;
        row.as_ref().map(consent_from_row).transpose()
    }

    async fn put_consent(&self, consent: &Consent) -> Result<(), StoreError> {
        let scopes = check_consent(consent)?;
        let written = self
            .execute(
                "INSERT INTO consents (user_id, client_id, scopes, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, client_id) DO UPDATE SET \
                 scopes = excluded.scopes, updated_at = excluded.updated_at",
                &[
                    (&consent.user_id).into(),
                    (&consent.client_id).into(),
                    Arg::json(&scopes),
                    consent.created_at.into(),
                    consent.updated_at.into(),
                ],
            )
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
        let rows = self
            .fetch_all(
                &format!(
                    "SELECT {CONSENT_COLUMNS} FROM consents WHERE user_id = $1 ORDER BY client_id"
                ),
                args![user_id],
            )
            .await?;
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
        let mut tx = self.begin(TxMode::Write).await?;
        let deleted = tx
            .execute(
                "DELETE FROM consents WHERE user_id = $1 AND client_id = $2",
                args![user_id, client_id],
            )
            .await?
            == 1;
        revoke_live_grants(&mut tx, user_id, Some(client_id), now).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn put_device_authorization(
        &self,
        device_digest: &TokenDigest,
        authorization: &DeviceAuthorization,
    ) -> Result<(), StoreError> {
        let detail = check_device_authorization(authorization)?;
        let mut tx = self.begin(TxMode::Write).await?;
        // An expired authorization holding the user code makes way.
        tx.execute(
            "DELETE FROM device_authorizations WHERE user_code = $1 AND expires_at <= $2",
            args![&authorization.user_code, authorization.created_at],
        )
        .await?;
        // A user code still held is skipped, not an error (a concurrent insert of the same code
        // is waited for on PostgreSQL); the device code is then the only unique key left.
        let inserted = tx
            .execute(
                "INSERT INTO device_authorizations (device_digest, user_code, client_id, scope, \
                 created_at, expires_at, interval_secs, last_polled_at, status, user_id, \
                 session_id, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 ON CONFLICT (user_code) DO NOTHING",
                &[
                    device_digest.into(),
                    (&authorization.user_code).into(),
                    (&authorization.client_id).into(),
                    (&authorization.scope).into(),
                    authorization.created_at.into(),
                    authorization.expires_at.into(),
                    authorization.interval_secs.into(),
                    authorization.last_polled_at.into(),
                    device_status_str(authorization.status).into(),
                    authorization.user_id.as_deref().into(),
                    authorization.session_id.as_deref().into(),
                    Arg::json(&detail),
                ],
            )
            .await
            .map_err(unique_is(Conflict::DeviceCodeTaken));
        match inserted {
            Ok(1) => {}
            Ok(_) => return Err(StoreError::Conflict(Conflict::UserCodeTaken)),
            Err(e) => {
                drop(tx);
                return Err(self
                    .owner_error(
                        &authorization.client_id,
                        authorization.user_id.as_deref(),
                        e,
                    )
                    .await);
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn find_pending_device_authorization(
        &self,
        user_code: &str,
        now: OffsetDateTime,
    ) -> Result<Option<DeviceAuthorization>, StoreError> {
        check_input("user code", user_code)?;
        let row = self
            .fetch_optional(
                &format!(
                    "SELECT {DEVICE_COLUMNS} FROM device_authorizations WHERE user_code = $1 \
                     AND status = 'pending' AND expires_at > $2"
                ),
                args![user_code, now],
            )
            .await?;
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
        let decided = self
            .execute(
                "UPDATE device_authorizations SET status = $1, user_id = $2, session_id = $3, \
                 detail = $4 WHERE user_code = $5 AND status = 'pending' AND expires_at > $6",
                &[
                    status.into(),
                    user_id.into(),
                    session_id.into(),
                    Arg::json(&detail),
                    user_code.into(),
                    now.into(),
                ],
            )
            .await
            .map_err(reference_is(|| user_not_found(user_id)))?;
        Ok(decided == 1)
    }

    async fn poll_device_authorization(
        &self,
        device_digest: &TokenDigest,
        now: OffsetDateTime,
        decide: &DevicePollRule<'_>,
    ) -> Result<DevicePoll, StoreError> {
        let now = normalize_time(now);
        let mut tx = self.begin(TxMode::Write).await?;
        let row = tx
            .fetch_optional(
                &format!(
                    "SELECT {DEVICE_COLUMNS} FROM device_authorizations WHERE device_digest = $1{}",
                    D::row_lock(RowLock::Update)
                ),
                args![device_digest],
            )
            .await?;
        let Some(row) = row else {
            return Ok(DevicePoll::Unknown);
        };
        let authorization = device_from_row(&row)?;
        let poll = match decide(&authorization) {
            DevicePollStep::Refuse(refusal) => return Ok(refusal.into()),
            DevicePollStep::Redeem => {
                let row = tx
                    .fetch_optional(
                        &format!(
                            "UPDATE device_authorizations SET status = 'redeemed', \
                             last_polled_at = $1 WHERE device_digest = $2 \
                             AND status = 'approved' RETURNING {DEVICE_COLUMNS}"
                        ),
                        args![now, device_digest],
                    )
                    .await?;
                // The row is locked, so this is always there; the condition is a second guard.
                match row {
                    Some(row) => DevicePoll::Approved(Box::new(device_from_row(&row)?)),
                    None => return Ok(DevicePoll::AlreadyRedeemed),
                }
            }
            DevicePollStep::SlowDown { interval_secs } => {
                tx.execute(
                    "UPDATE device_authorizations SET interval_secs = $1, last_polled_at = $2 \
                     WHERE device_digest = $3",
                    args![interval_secs, now, device_digest],
                )
                .await?;
                DevicePoll::SlowDown
            }
            DevicePollStep::Pending => {
                tx.execute(
                    "UPDATE device_authorizations SET last_polled_at = $1 \
                     WHERE device_digest = $2",
                    args![now, device_digest],
                )
                .await?;
                DevicePoll::Pending
            }
        };
        tx.commit().await?;
        Ok(poll)
    }

    async fn put_pushed_request(
        &self,
        id: &str,
        request: &PushedRequest,
    ) -> Result<(), StoreError> {
        let parameters = check_pushed_request(id, request)?;
        let inserted = self
            .execute(
                "INSERT INTO pushed_requests (id, client_id, parameters, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    id.into(),
                    (&request.client_id).into(),
                    Arg::json(&parameters),
                    request.created_at.into(),
                    request.expires_at.into(),
                ],
            )
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
        let row = self
            .fetch_optional(
                &format!(
                    "SELECT {PUSHED_COLUMNS} FROM pushed_requests WHERE id = $1 \
                     AND NOT consumed AND expires_at > $2"
                ),
                args![id, now],
            )
            .await?;
        row.as_ref().map(pushed_from_row).transpose()
    }

    async fn consume_pushed_request(&self, id: &str) -> Result<bool, StoreError> {
        check_input("request id", id)?;
        Ok(self
            .execute(
                "UPDATE pushed_requests SET consumed = TRUE WHERE id = $1 AND NOT consumed",
                args![id],
            )
            .await?
            == 1)
    }

    async fn revoke_access_token(
        &self,
        jti: &str,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        check_input("jti", jti)?;
        let mut tx = self.begin(TxMode::Write).await?;
        tx.execute(
            &format!(
                "INSERT INTO revoked_access_tokens (jti, expires_at) VALUES ($1, $2) \
                 ON CONFLICT (jti) DO UPDATE SET expires_at = \
                 {}(revoked_access_tokens.expires_at, excluded.expires_at)",
                D::GREATEST
            ),
            args![jti, expires_at],
        )
        .await?;
        advance_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn access_token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        check_input("jti", jti)?;
        Ok(self
            .fetch_optional(
                "SELECT jti FROM revoked_access_tokens WHERE jti = $1",
                args![jti],
            )
            .await?
            .is_some())
    }

    async fn purge_grants(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let mut tx = self.begin(TxMode::Write).await?;
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
            purged += tx.execute(statement, args![now]).await?;
        }
        tx.commit().await?;
        Ok(purged)
    }
}
