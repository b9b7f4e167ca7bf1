//! [`UserStore`], [`SessionStore`] and [`MfaStore`].
//!
//! Compare-and-set updates (TOTP step, recovery codes, session revocation) are single `UPDATE`
//! statements: on PostgreSQL (READ COMMITTED) a concurrent updater of the same row waits and
//! re-checks the condition on the committed row, and SQLite has one writer, so exactly one wins.
//! Where a check and a write span statements, they run in a write transaction and PostgreSQL
//! takes a lock that makes them atomic across replicas:
//! - creating a user or changing an email serializes on [`Serial::Logins`], because the shared
//!   username/email namespace is two unique indexes and not one: the namespace check inside the
//!   transaction decides between [`Conflict::UsernameTaken`] and [`Conflict::EmailTaken`];
//! - creating or rotating a session locks the user row `FOR SHARE`, and disabling a user updates
//!   that row before revoking, so a session cannot slip past a concurrent disable;
//! - replacing recovery codes locks the user row, so two replacements do not merge.

use async_trait::async_trait;
use time::OffsetDateTime;
use trustgate_core::TokenDigest;

use super::api_keys::advance_epoch;
use super::{Arg, Database, Row, RowLock, Serial, SqlStore, Tx, TxMode, args};
use super::{reference_is, unique_is};
use crate::accounts::{
    MfaStore, NewUser, Passkey, Session, SessionStore, TotpCredential, User, UserPage, UserStatus,
    UserStore, UserUpdate, amr_from_text, apply_update, attributes_text, check_credential_id,
    check_new_user, check_passkey, check_recovery_codes, check_sealed_secret, check_session,
    check_sign_count, check_update, created_user, login_key, object_from_text, require_active,
    status_from_db, user_not_found,
};
use crate::relationships::{check_input, normalize_time};
use trustgate_store_api::{Conflict, StoreError};

const USER_COLUMNS: &str =
    "id, username, email, email_verified, name, locale, attributes, status, created_at, updated_at";
const SESSION_COLUMNS: &str = "s.id, s.user_id, s.created_at, s.last_seen_at, s.idle_expires_at, \
                               s.absolute_expires_at, s.auth_time, s.amr, s.acr, s.ip, \
                               s.user_agent";
const PASSKEY_COLUMNS: &str =
    "credential_id, user_id, name, public_key, sign_count, metadata, created_at, last_used_at";
/// Whether a session `s` is live at the time given by the parameter `now` (e.g. `$1`).
fn live(now: &str) -> String {
    format!(
        "s.revoked_at IS NULL AND s.idle_expires_at > {now} AND s.absolute_expires_at > {now} \
         AND EXISTS (SELECT 1 FROM users u WHERE u.id = s.user_id AND u.status = 'active')"
    )
}

fn user_from_row(row: &impl Row) -> Result<User, StoreError> {
    Ok(User {
        id: row.text("id")?,
        username: row.text("username")?,
        email: row.text("email")?,
        email_verified: row.bool("email_verified")?,
        name: row.opt_text("name")?,
        locale: row.opt_text("locale")?,
        attributes: object_from_text("attributes", row.json("attributes")?)?,
        status: status_from_db(row.str("status")?)?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

fn session_from_row(row: &impl Row) -> Result<Session, StoreError> {
    Ok(Session {
        id: row.text("id")?,
        user_id: row.text("user_id")?,
        created_at: row.time("created_at")?,
        last_seen_at: row.time("last_seen_at")?,
        idle_expires_at: row.time("idle_expires_at")?,
        absolute_expires_at: row.time("absolute_expires_at")?,
        auth_time: row.time("auth_time")?,
        amr: amr_from_text(row.json("amr")?)?,
        acr: row.text("acr")?,
        ip: row.opt_text("ip")?,
        user_agent: row.opt_text("user_agent")?,
    })
}

fn passkey_from_row(row: &impl Row) -> Result<Passkey, StoreError> {
    Ok(Passkey {
        credential_id: row.bytes("credential_id")?.to_vec(),
        user_id: row.text("user_id")?,
        name: row.text("name")?,
        public_key: row.bytes("public_key")?.to_vec(),
        sign_count: row.i64("sign_count")?,
        metadata: object_from_text("passkey metadata", row.json("metadata")?)?,
        created_at: row.time("created_at")?,
        last_used_at: row.opt_time("last_used_at")?,
    })
}

/// Whether `key` is the username or email of a user other than `except_id`.
async fn login_taken<D: Database>(
    tx: &mut Tx<'_, D>,
    except_id: &str,
    key: &str,
) -> Result<bool, StoreError> {
    let row = tx
        .fetch_one(
            "SELECT count(*) AS n FROM users \
             WHERE id <> $1 AND (username_key = $2 OR email_key = $2)",
            args![except_id, key],
        )
        .await?;
    Ok(row.i64("n")? > 0)
}

/// The user's status (`None`: no such user), with the row locked by `lock` until commit.
pub(super) async fn user_status<D: Database>(
    tx: &mut Tx<'_, D>,
    user_id: &str,
    lock: RowLock,
) -> Result<Option<String>, StoreError> {
    let row = tx
        .fetch_optional(
            &format!(
                "SELECT status FROM users WHERE id = $1{}",
                D::row_lock(lock)
            ),
            args![user_id],
        )
        .await?;
    row.map(|r| r.text("status")).transpose()
}

async fn insert_session<D: Database>(
    tx: &mut Tx<'_, D>,
    digest: &TokenDigest,
    session: &Session,
    amr: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO sessions (id, digest, user_id, created_at, last_seen_at, idle_expires_at, \
         absolute_expires_at, auth_time, amr, acr, ip, user_agent) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &[
            (&session.id).into(),
            digest.into(),
            (&session.user_id).into(),
            session.created_at.into(),
            session.last_seen_at.into(),
            session.idle_expires_at.into(),
            session.absolute_expires_at.into(),
            session.auth_time.into(),
            Arg::json(amr),
            (&session.acr).into(),
            session.ip.as_deref().into(),
            session.user_agent.as_deref().into(),
        ],
    )
    .await
    .map_err(reference_is(|| user_not_found(&session.user_id)))?;
    Ok(())
}

#[async_trait]
impl<D: Database> UserStore for SqlStore<D> {
    async fn create_user(&self, user: &NewUser, now: OffsetDateTime) -> Result<User, StoreError> {
        let checked = check_new_user(user)?;
        let now = normalize_time(now);
        let mut tx = self.begin(TxMode::Write).await?;
        tx.serialize(Serial::Logins).await?;
        if login_taken(&mut tx, &user.id, &checked.username_key).await? {
            return Err(StoreError::Conflict(Conflict::UsernameTaken));
        }
        if login_taken(&mut tx, &user.id, &checked.email_key).await? {
            return Err(StoreError::Conflict(Conflict::EmailTaken));
        }
        // The namespace is checked: a unique violation left is a reused user id.
        tx.execute(
            "INSERT INTO users (id, username, username_key, email, email_key, email_verified, \
             name, locale, attributes, status, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, FALSE, $6, $7, $8, 'active', $9, $10, $10)",
            &[
                (&user.id).into(),
                (&user.username).into(),
                (&checked.username_key).into(),
                (&user.email).into(),
                (&checked.email_key).into(),
                user.name.as_deref().into(),
                user.locale.as_deref().into(),
                Arg::json(&checked.attributes),
                user.password_hash.as_deref().into(),
                now.into(),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(created_user(user, now))
    }

    async fn get_user(&self, id: &str) -> Result<Option<User>, StoreError> {
        check_input("user id", id)?;
        let row = self
            .fetch_optional(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"),
                args![id],
            )
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn find_user_by_login(&self, login: &str) -> Result<Option<User>, StoreError> {
        check_input("login", login)?;
        let key = login_key(login);
        // Usernames and emails share one namespace, so at most one user matches; the order is
        // only a guard.
        let row = self
            .fetch_optional(
                &format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE username_key = $1 OR email_key = $1 \
                     ORDER BY username_key = $1 DESC LIMIT 1"
                ),
                args![&key],
            )
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(&self, after: Option<&str>, limit: u32) -> Result<UserPage, StoreError> {
        let (users, next) = self
            .page_by_id(USER_COLUMNS, "users", after, limit, user_from_row, |u| {
                &u.id
            })
            .await?;
        Ok(UserPage { users, next })
    }

    async fn update_user(
        &self,
        id: &str,
        update: &UserUpdate,
        now: OffsetDateTime,
    ) -> Result<Option<User>, StoreError> {
        check_input("user id", id)?;
        check_update(update)?;
        let now = normalize_time(now);
        let mut tx = self.begin(TxMode::Write).await?;
        if update.email.is_some() {
            tx.serialize(Serial::Logins).await?;
        }
        let row = tx
            .fetch_optional(
                &format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE id = $1{}",
                    D::row_lock(RowLock::NoKeyUpdate)
                ),
                args![id],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut user = user_from_row(&row)?;
        if let Some(key) = apply_update(&mut user, update, now)
            && login_taken(&mut tx, id, &key).await?
        {
            return Err(StoreError::Conflict(Conflict::EmailTaken));
        }
        let attributes = attributes_text(&user)?;
        tx.execute(
            "UPDATE users SET email = $1, email_key = $2, email_verified = $3, name = $4, \
             locale = $5, attributes = $6, updated_at = $7 WHERE id = $8",
            &[
                (&user.email).into(),
                (&login_key(&user.email)).into(),
                user.email_verified.into(),
                user.name.as_deref().into(),
                user.locale.as_deref().into(),
                Arg::json(&attributes),
                now.into(),
                id.into(),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(Some(user))
    }

    async fn set_user_status(
        &self,
        id: &str,
        status: UserStatus,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        check_input("user id", id)?;
        let mut tx = self.begin(TxMode::Write).await?;
        // The user row first: a session being created holds it `FOR SHARE`, and the revocation
        // below then sees that session.
        let found = tx
            .execute(
                "UPDATE users SET updated_at = CASE WHEN status = $1 THEN updated_at ELSE $2 END, \
                 status = $1 WHERE id = $3",
                args![status.as_str(), now, id],
            )
            .await?
            == 1;
        if found && status == UserStatus::Disabled {
            tx.execute(
                "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
                args![now, id],
            )
            .await?;
            // Their personal access tokens stop on every replica at once.
            advance_epoch(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(found)
    }

    async fn delete_user(&self, id: &str) -> Result<bool, StoreError> {
        check_input("user id", id)?;
        let mut tx = self.begin(TxMode::Write).await?;
        // Sessions, factors and personal access tokens go with the user (ON DELETE CASCADE).
        let deleted = tx
            .execute("DELETE FROM users WHERE id = $1", args![id])
            .await?
            == 1;
        if deleted {
            advance_epoch(&mut tx).await?;
            tx.commit().await?;
        }
        Ok(deleted)
    }

    async fn password_hash(&self, user_id: &str) -> Result<Option<String>, StoreError> {
        check_input("user id", user_id)?;
        let row = self
            .fetch_optional(
                "SELECT password_hash FROM users WHERE id = $1",
                args![user_id],
            )
            .await?;
        Ok(row
            .map(|r| r.opt_text("password_hash"))
            .transpose()?
            .flatten())
    }

    async fn set_password_hash(
        &self,
        user_id: &str,
        hash: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        check_input("user id", user_id)?;
        check_input("password hash", hash)?;
        Ok(self
            .execute(
                "UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3",
                args![hash, now, user_id],
            )
            .await?
            == 1)
    }
}

#[async_trait]
impl<D: Database> SessionStore for SqlStore<D> {
    async fn create_session(
        &self,
        digest: &TokenDigest,
        session: &Session,
    ) -> Result<(), StoreError> {
        let amr = check_session(session)?;
        let mut tx = self.begin(TxMode::Write).await?;
        let status = user_status(&mut tx, &session.user_id, RowLock::Share).await?;
        require_active(&session.user_id, status.as_deref())?;
        insert_session(&mut tx, digest, session, &amr).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn find_session(
        &self,
        digest: &TokenDigest,
        now: OffsetDateTime,
    ) -> Result<Option<Session>, StoreError> {
        let row = self
            .fetch_optional(
                &format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.digest = $1 AND {}",
                    live("$2")
                ),
                args![digest, now],
            )
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn touch_session(
        &self,
        id: &str,
        now: OffsetDateTime,
        idle_expires_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        check_input("session id", id)?;
        self.execute(
            "UPDATE sessions SET last_seen_at = $1, idle_expires_at = $2 WHERE id = $3 \
             AND revoked_at IS NULL AND idle_expires_at > $1 AND absolute_expires_at > $1",
            args![now, idle_expires_at, id],
        )
        .await?;
        Ok(())
    }

    async fn rotate_session(
        &self,
        old_id: &str,
        digest: &TokenDigest,
        new: &Session,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        check_input("session id", old_id)?;
        let amr = check_session(new)?;
        let mut tx = self.begin(TxMode::Write).await?;
        if user_status(&mut tx, &new.user_id, RowLock::Share)
            .await?
            .is_none()
        {
            return Ok(false);
        }
        let revoked = tx
            .execute(
                &format!(
                    "UPDATE sessions AS s SET revoked_at = $1 \
                     WHERE s.id = $2 AND s.user_id = $3 AND {}",
                    live("$1")
                ),
                args![now, old_id, &new.user_id],
            )
            .await?
            == 1;
        if !revoked {
            return Ok(false);
        }
        insert_session(&mut tx, digest, new, &amr).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn list_user_sessions(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<Session>, StoreError> {
        check_input("user id", user_id)?;
        let rows = self
            .fetch_all(
                &format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.user_id = $1 AND {} \
                     ORDER BY s.created_at DESC, s.id DESC",
                    live("$2")
                ),
                args![user_id, now],
            )
            .await?;
        rows.iter().map(session_from_row).collect()
    }

    async fn revoke_session(
        &self,
        user_id: &str,
        session_id: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        check_input("user id", user_id)?;
        check_input("session id", session_id)?;
        let mut tx = self.begin(TxMode::Write).await?;
        let revoked = tx
            .execute(
                "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND user_id = $3 \
                 AND revoked_at IS NULL AND idle_expires_at > $1 AND absolute_expires_at > $1",
                args![now, session_id, user_id],
            )
            .await?
            == 1;
        if revoked {
            // Tokens bound to the session die with it; caches of them follow the epoch.
            advance_epoch(&mut tx).await?;
            tx.commit().await?;
        }
        Ok(revoked)
    }

    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        keep: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        check_input("user id", user_id)?;
        let mut tx = self.begin(TxMode::Write).await?;
        let revoked = tx
            .execute(
                "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL \
                 AND idle_expires_at > $1 AND absolute_expires_at > $1 \
                 AND ($3 IS NULL OR id <> $3)",
                args![now, user_id, keep],
            )
            .await?;
        if revoked > 0 {
            advance_epoch(&mut tx).await?;
            tx.commit().await?;
        }
        Ok(revoked)
    }

    async fn purge_sessions(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        self.execute(
            "DELETE FROM sessions WHERE revoked_at <= $1 OR idle_expires_at <= $1 \
             OR absolute_expires_at <= $1",
            args![before],
        )
        .await
    }
}

#[async_trait]
impl<D: Database> MfaStore for SqlStore<D> {
    async fn put_pending_totp(
        &self,
        user_id: &str,
        sealed_secret: &[u8],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        check_input("user id", user_id)?;
        check_sealed_secret(sealed_secret)?;
        let written = self
            .execute(
                "INSERT INTO totp_credentials (user_id, sealed_secret, confirmed, last_step, \
                 created_at) VALUES ($1, $2, FALSE, NULL, $3) \
                 ON CONFLICT (user_id) DO UPDATE SET sealed_secret = excluded.sealed_secret, \
                 last_step = NULL, created_at = excluded.created_at \
                 WHERE NOT totp_credentials.confirmed",
                args![user_id, sealed_secret, now],
            )
            .await
            .map_err(reference_is(|| user_not_found(user_id)))?;
        if written == 0 {
            return Err(StoreError::Conflict(Conflict::TotpConfirmed));
        }
        Ok(())
    }

    async fn get_totp(&self, user_id: &str) -> Result<Option<TotpCredential>, StoreError> {
        check_input("user id", user_id)?;
        let row = self
            .fetch_optional(
                "SELECT sealed_secret, confirmed, last_step, created_at FROM totp_credentials \
                 WHERE user_id = $1",
                args![user_id],
            )
            .await?;
        row.map(|row| {
            Ok(TotpCredential {
                sealed_secret: row.bytes("sealed_secret")?.to_vec(),
                confirmed: row.bool("confirmed")?,
                last_step: row.opt_i64("last_step")?,
                created_at: row.time("created_at")?,
            })
        })
        .transpose()
    }

    async fn confirm_totp(&self, user_id: &str, step: i64) -> Result<bool, StoreError> {
        check_input("user id", user_id)?;
        Ok(self
            .execute(
                "UPDATE totp_credentials SET confirmed = TRUE, last_step = $1 WHERE user_id = $2 \
                 AND NOT confirmed AND (last_step IS NULL OR last_step < $1)",
                args![step, user_id],
            )
            .await?
            == 1)
    }

    async fn advance_totp_step(&self, user_id: &str, step: i64) -> Result<bool, StoreError> {
        check_input("user id", user_id)?;
        Ok(self
            .execute(
                "UPDATE totp_credentials SET last_step = $1 WHERE user_id = $2 AND confirmed \
                 AND (last_step IS NULL OR last_step < $1)",
                args![step, user_id],
            )
            .await?
            == 1)
    }

    async fn delete_totp(&self, user_id: &str) -> Result<bool, StoreError> {
        check_input("user id", user_id)?;
        let mut tx = self.begin(TxMode::Write).await?;
        tx.execute(
            "DELETE FROM recovery_codes WHERE user_id = $1",
            args![user_id],
        )
        .await?;
        let deleted = tx
            .execute(
                "DELETE FROM totp_credentials WHERE user_id = $1",
                args![user_id],
            )
            .await?
            == 1;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        digests: &[TokenDigest],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        check_input("user id", user_id)?;
        check_recovery_codes(digests)?;
        let mut tx = self.begin(TxMode::Write).await?;
        if user_status(&mut tx, user_id, RowLock::NoKeyUpdate)
            .await?
            .is_none()
        {
            return Err(user_not_found(user_id));
        }
        tx.execute(
            "DELETE FROM recovery_codes WHERE user_id = $1",
            args![user_id],
        )
        .await?;
        for digest in digests {
            tx.execute(
                "INSERT INTO recovery_codes (user_id, digest, created_at) VALUES ($1, $2, $3)",
                args![user_id, digest, now],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn consume_recovery_code(
        &self,
        user_id: &str,
        digest: &TokenDigest,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        check_input("user id", user_id)?;
        Ok(self
            .execute(
                "UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND digest = $3 \
                 AND used_at IS NULL",
                args![now, user_id, digest],
            )
            .await?
            == 1)
    }

    async fn recovery_codes_left(&self, user_id: &str) -> Result<u64, StoreError> {
        check_input("user id", user_id)?;
        let row = self
            .fetch_optional(
                "SELECT count(*) AS n FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
                args![user_id],
            )
            .await?;
        let n = row.map(|r| r.i64("n")).transpose()?.unwrap_or(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn add_passkey(&self, passkey: &Passkey) -> Result<(), StoreError> {
        let metadata = check_passkey(passkey)?;
        // The credential id is the only unique key.
        self.execute(
            "INSERT INTO passkeys (credential_id, user_id, name, public_key, sign_count, \
             metadata, created_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                (&passkey.credential_id).into(),
                (&passkey.user_id).into(),
                (&passkey.name).into(),
                (&passkey.public_key).into(),
                passkey.sign_count.into(),
                Arg::json(&metadata),
                passkey.created_at.into(),
                passkey.last_used_at.into(),
            ],
        )
        .await
        .map_err(unique_is(Conflict::PasskeyTaken))
        .map_err(reference_is(|| user_not_found(&passkey.user_id)))?;
        Ok(())
    }

    async fn list_passkeys(&self, user_id: &str) -> Result<Vec<Passkey>, StoreError> {
        check_input("user id", user_id)?;
        let rows = self
            .fetch_all(
                &format!(
                    "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE user_id = $1 \
                     ORDER BY created_at, credential_id"
                ),
                args![user_id],
            )
            .await?;
        rows.iter().map(passkey_from_row).collect()
    }

    async fn find_passkey(&self, credential_id: &[u8]) -> Result<Option<Passkey>, StoreError> {
        check_credential_id(credential_id)?;
        let row = self
            .fetch_optional(
                &format!("SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE credential_id = $1"),
                args![credential_id],
            )
            .await?;
        row.as_ref().map(passkey_from_row).transpose()
    }

    async fn record_passkey_use(
        &self,
        credential_id: &[u8],
        sign_count: i64,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        check_credential_id(credential_id)?;
        check_sign_count(sign_count)?;
        self.execute(
            &format!(
                "UPDATE passkeys SET sign_count = {}(sign_count, $1), last_used_at = $2 \
                 WHERE credential_id = $3",
                D::GREATEST
            ),
            args![sign_count, now, credential_id],
        )
        .await?;
        Ok(())
    }

    async fn delete_passkey(
        &self,
        user_id: &str,
        credential_id: &[u8],
    ) -> Result<bool, StoreError> {
        check_input("user id", user_id)?;
        check_credential_id(credential_id)?;
        Ok(self
            .execute(
                "DELETE FROM passkeys WHERE user_id = $1 AND credential_id = $2",
                args![user_id, credential_id],
            )
            .await?
            == 1)
    }
}
