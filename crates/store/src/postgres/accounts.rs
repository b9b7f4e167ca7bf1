//! [`UserStore`], [`SessionStore`], [`MfaStore`] and [`AuditStore`] on PostgreSQL.
//!
//! Compare-and-set updates (TOTP step, recovery codes, session revocation) are single `UPDATE`
//! statements: under READ COMMITTED a concurrent updater of the same row waits and re-checks the
//! condition on the committed row, so exactly one wins. Where a check and a write span
//! statements, a lock makes them atomic across replicas:
//! - creating a user or changing an email takes a transaction-scoped advisory lock, because the
//!   shared username/email namespace is not one unique index;
//! - creating or rotating a session locks the user row `FOR SHARE`, and disabling a user updates
//!   that row before revoking, so a session cannot slip past a concurrent disable;
//! - replacing recovery codes locks the user row, so two replacements do not merge.

use crate::error::db;
use async_trait::async_trait;
use sqlx::postgres::{PgRow, PgTransaction};
use sqlx::{AssertSqlSafe, Row};
use time::OffsetDateTime;
use trustgate_core::TokenDigest;

use super::PostgresStore;
use crate::accounts::{
    AuditEvent, AuditFilter, AuditStore, MfaStore, NewUser, Passkey, Session, SessionStore,
    TotpCredential, User, UserPage, UserStatus, UserStore, UserUpdate, amr_from_text, apply_update,
    attributes_text, check_audit_event, check_audit_filter, check_credential_id, check_new_user,
    check_passkey, check_recovery_codes, check_sealed_secret, check_session, check_sign_count,
    check_update, created_user, object_from_text, owner_write_error, passkey_write_error,
    require_active, status_from_db, user_not_found,
};
use crate::relationships::{check_input, check_page_size, finish_page, normalize_time};
use trustgate_store_api::{Conflict, StoreError};

/// Serializes the checks of the shared username/email namespace (an arbitrary fixed key).
const LOGIN_NAMESPACE_LOCK: i64 = 0x7472_7573_7467_6c6e;

// JSONB comes back as text and is parsed like SQLite's, so both backends decode alike.
const USER_COLUMNS: &str = "id, username, email, email_verified, name, locale, \
                            attributes::text AS attributes, status, created_at, updated_at";
const SESSION_COLUMNS: &str = "s.id, s.user_id, s.created_at, s.last_seen_at, s.idle_expires_at, \
                               s.absolute_expires_at, s.auth_time, s.amr::text AS amr, s.acr, s.ip, \
                               s.user_agent";
/// Whether a session `s` is live at the time given by the parameter `$now`.
fn live(now: &str) -> String {
    format!(
        "s.revoked_at IS NULL AND s.idle_expires_at > {now} AND s.absolute_expires_at > {now} \
         AND EXISTS (SELECT 1 FROM users u WHERE u.id = s.user_id AND u.status = 'active')"
    )
}
const PASSKEY_COLUMNS: &str = "credential_id, user_id, name, public_key, sign_count, metadata::text AS metadata, \
     created_at, last_used_at";
const AUDIT_COLUMNS: &str =
    "id, at, kind, outcome, actor, user_id, ip, user_agent, request_id, detail::text AS detail";

/// How times are stored: TIMESTAMPTZ in UTC, which keeps microseconds.
fn stored_time(t: OffsetDateTime) -> OffsetDateTime {
    normalize_time(t)
}

fn time_of(row: &PgRow, column: &str) -> Result<OffsetDateTime, StoreError> {
    row.try_get(column).map_err(db)
}

fn optional_time_of(row: &PgRow, column: &str) -> Result<Option<OffsetDateTime>, StoreError> {
    row.try_get(column).map_err(db)
}

async fn lock_login_namespace(tx: &mut PgTransaction<'_>) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOGIN_NAMESPACE_LOCK)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

fn user_from_row(row: &PgRow) -> Result<User, StoreError> {
    Ok(User {
        id: row.try_get("id").map_err(db)?,
        username: row.try_get("username").map_err(db)?,
        email: row.try_get("email").map_err(db)?,
        email_verified: row.try_get("email_verified").map_err(db)?,
        name: row.try_get("name").map_err(db)?,
        locale: row.try_get("locale").map_err(db)?,
        attributes: object_from_text("attributes", row.try_get("attributes").map_err(db)?)?,
        status: status_from_db(row.try_get("status").map_err(db)?)?,
        created_at: time_of(row, "created_at")?,
        updated_at: time_of(row, "updated_at")?,
    })
}

fn session_from_row(row: &PgRow) -> Result<Session, StoreError> {
    Ok(Session {
        id: row.try_get("id").map_err(db)?,
        user_id: row.try_get("user_id").map_err(db)?,
        created_at: time_of(row, "created_at")?,
        last_seen_at: time_of(row, "last_seen_at")?,
        idle_expires_at: time_of(row, "idle_expires_at")?,
        absolute_expires_at: time_of(row, "absolute_expires_at")?,
        auth_time: time_of(row, "auth_time")?,
        amr: amr_from_text(row.try_get("amr").map_err(db)?)?,
        acr: row.try_get("acr").map_err(db)?,
        ip: row.try_get("ip").map_err(db)?,
        user_agent: row.try_get("user_agent").map_err(db)?,
    })
}

fn passkey_from_row(row: &PgRow) -> Result<Passkey, StoreError> {
    Ok(Passkey {
        credential_id: row.try_get("credential_id").map_err(db)?,
        user_id: row.try_get("user_id").map_err(db)?,
        name: row.try_get("name").map_err(db)?,
        public_key: row.try_get("public_key").map_err(db)?,
        sign_count: row.try_get("sign_count").map_err(db)?,
        metadata: object_from_text("passkey metadata", row.try_get("metadata").map_err(db)?)?,
        created_at: time_of(row, "created_at")?,
        last_used_at: optional_time_of(row, "last_used_at")?,
    })
}

fn audit_from_row(row: &PgRow) -> Result<AuditEvent, StoreError> {
    Ok(AuditEvent {
        id: row.try_get("id").map_err(db)?,
        at: time_of(row, "at")?,
        kind: row.try_get("kind").map_err(db)?,
        outcome: row.try_get("outcome").map_err(db)?,
        actor: row.try_get("actor").map_err(db)?,
        user_id: row.try_get("user_id").map_err(db)?,
        ip: row.try_get("ip").map_err(db)?,
        user_agent: row.try_get("user_agent").map_err(db)?,
        request_id: row.try_get("request_id").map_err(db)?,
        detail: object_from_text("audit detail", row.try_get("detail").map_err(db)?)?,
    })
}

/// Whether `key` is the username or email of a user other than `except_id`.
async fn login_taken(
    tx: &mut PgTransaction<'_>,
    except_id: &str,
    key: &str,
) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM users WHERE id <> $1 AND (username_key = $2 OR email_key = $2)",
    )
    .bind(except_id)
    .bind(key)
    .fetch_one(&mut **tx)
    .await
    .map_err(db)?;
    Ok(n > 0)
}

/// The user's status, locking the row against a concurrent status change until commit.
async fn lock_user_status(
    tx: &mut PgTransaction<'_>,
    user_id: &str,
) -> Result<Option<String>, StoreError> {
    sqlx::query_scalar("SELECT status FROM users WHERE id = $1 FOR SHARE")
        .bind(user_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)
}

async fn insert_session(
    tx: &mut PgTransaction<'_>,
    digest: &TokenDigest,
    session: &Session,
    amr: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sessions (id, digest, user_id, created_at, last_seen_at, idle_expires_at, \
         absolute_expires_at, auth_time, amr, acr, ip, user_agent) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12)",
    )
    .bind(&session.id)
    .bind(digest.as_bytes().as_slice())
    .bind(&session.user_id)
    .bind(stored_time(session.created_at))
    .bind(stored_time(session.last_seen_at))
    .bind(stored_time(session.idle_expires_at))
    .bind(stored_time(session.absolute_expires_at))
    .bind(stored_time(session.auth_time))
    .bind(amr)
    .bind(&session.acr)
    .bind(session.ip.as_deref())
    .bind(session.user_agent.as_deref())
    .execute(&mut **tx)
    .await
    .map_err(|e| owner_write_error(&session.user_id, e))?;
    Ok(())
}

#[async_trait]
impl UserStore for PostgresStore {
    async fn create_user(&self, user: &NewUser, now: OffsetDateTime) -> Result<User, StoreError> {
        let checked = check_new_user(user)?;
        let now = normalize_time(now);
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_login_namespace(&mut tx).await.map_err(db)?;
        if login_taken(&mut tx, &user.id, &checked.username_key)
            .await
            .map_err(db)?
        {
            return Err(StoreError::Conflict(Conflict::UsernameTaken));
        }
        if login_taken(&mut tx, &user.id, &checked.email_key)
            .await
            .map_err(db)?
        {
            return Err(StoreError::Conflict(Conflict::EmailTaken));
        }
        sqlx::query(
            "INSERT INTO users (id, username, username_key, email, email_key, email_verified, \
             name, locale, attributes, status, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, false, $6, $7, $8::jsonb, 'active', $9, $10, $10)",
        )
        .bind(&user.id)
        .bind(&user.username)
        .bind(&checked.username_key)
        .bind(&user.email)
        .bind(&checked.email_key)
        .bind(user.name.as_deref())
        .bind(user.locale.as_deref())
        .bind(&checked.attributes)
        .bind(user.password_hash.as_deref())
        .bind(now)
        .execute(&mut *tx)
        .await
        // The namespace was checked above: a unique violation left is a reused user id.
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(created_user(user, now))
    }

    async fn get_user(&self, id: &str) -> Result<Option<User>, StoreError> {
        check_input("user id", id)?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn find_user_by_login(&self, login: &str) -> Result<Option<User>, StoreError> {
        check_input("login", login)?;
        let key = crate::accounts::login_key(login);
        // Usernames and emails share one namespace, so at most one user matches; the order is
        // only a guard.
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE username_key = $1 OR email_key = $1 \
             ORDER BY username_key = $1 DESC LIMIT 1"
        )))
        .bind(&key)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(&self, after: Option<&str>, limit: u32) -> Result<UserPage, StoreError> {
        let page = check_page_size(limit)?;
        if let Some(after) = after {
            check_input("after", after)?;
        }
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE ($1::text IS NULL OR id > $1) ORDER BY id \
             LIMIT $2"
        )))
        .bind(after)
        .bind(page + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let users = rows
            .iter()
            .map(user_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let (users, next) = finish_page(users, page, |u| u.id.clone());
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
        let mut tx = self.pool.begin().await.map_err(db)?;
        if update.email.is_some() {
            lock_login_namespace(&mut tx).await.map_err(db)?;
        }
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = $1 FOR NO KEY UPDATE"
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut user = user_from_row(&row)?;
        if let Some(key) = apply_update(&mut user, update, now)
            && login_taken(&mut tx, id, &key).await.map_err(db)?
        {
            return Err(StoreError::Conflict(Conflict::EmailTaken));
        }
        sqlx::query(
            "UPDATE users SET email = $1, email_key = $2, email_verified = $3, name = $4, \
             locale = $5, attributes = $6::jsonb, updated_at = $7 WHERE id = $8",
        )
        .bind(&user.email)
        .bind(crate::accounts::login_key(&user.email))
        .bind(user.email_verified)
        .bind(user.name.as_deref())
        .bind(user.locale.as_deref())
        .bind(attributes_text(&user)?)
        .bind(stored_time(now))
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Some(user))
    }

    async fn set_user_status(
        &self,
        id: &str,
        status: UserStatus,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        check_input("user id", id)?;
        let now = stored_time(now);
        let mut tx = self.pool.begin().await.map_err(db)?;
        let found = sqlx::query(
            "UPDATE users SET updated_at = CASE WHEN status = $1 THEN updated_at ELSE $2 END, \
             status = $1 WHERE id = $3",
        )
        .bind(status.as_str())
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected()
            == 1;
        if found && status == UserStatus::Disabled {
            sqlx::query(
                "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(found)
    }

    async fn delete_user(&self, id: &str) -> Result<bool, StoreError> {
        check_input("user id", id)?;
        Ok(sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db)?
            .rows_affected()
            == 1)
    }

    async fn password_hash(&self, user_id: &str) -> Result<Option<String>, StoreError> {
        check_input("user id", user_id)?;
        let hash: Option<Option<String>> =
            sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        Ok(hash.flatten())
    }

    async fn set_password_hash(
        &self,
        user_id: &str,
        hash: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        check_input("user id", user_id)?;
        check_input("password hash", hash)?;
        Ok(
            sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
                .bind(hash)
                .bind(stored_time(now))
                .bind(user_id)
                .execute(&self.pool)
                .await
                .map_err(db)?
                .rows_affected()
                == 1,
        )
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn create_session(
        &self,
        digest: &TokenDigest,
        session: &Session,
    ) -> Result<(), StoreError> {
        let amr = check_session(session)?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        let status = lock_user_status(&mut tx, &session.user_id)
            .await
            .map_err(db)?;
        require_active(&session.user_id, status.as_deref())?;
        insert_session(&mut tx, digest, session, &amr)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn find_session(
        &self,
        digest: &TokenDigest,
        now: OffsetDateTime,
    ) -> Result<Option<Session>, StoreError> {
        let now = stored_time(now);
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.digest = $1 AND {}",
            live("$2")
        )))
        .bind(digest.as_bytes().as_slice())
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn touch_session(
        &self,
        id: &str,
        now: OffsetDateTime,
        idle_expires_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        check_input("session id", id)?;
        let now = stored_time(now);
        sqlx::query(
            "UPDATE sessions SET last_seen_at = $1, idle_expires_at = $2 WHERE id = $3 \
             AND revoked_at IS NULL AND idle_expires_at > $1 AND absolute_expires_at > $1",
        )
        .bind(now)
        .bind(stored_time(idle_expires_at))
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db)?;
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
        let now = stored_time(now);
        let mut tx = self.pool.begin().await.map_err(db)?;
        let status = lock_user_status(&mut tx, &new.user_id).await.map_err(db)?;
        if status.is_none() {
            return Ok(false);
        }
        let revoked = sqlx::query(AssertSqlSafe(format!(
            "UPDATE sessions AS s SET revoked_at = $1 WHERE s.id = $2 AND s.user_id = $3 AND {}",
            live("$1")
        )))
        .bind(now)
        .bind(old_id)
        .bind(&new.user_id)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected()
            == 1;
        if !revoked {
            return Ok(false);
        }
        insert_session(&mut tx, digest, new, &amr)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn list_user_sessions(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<Session>, StoreError> {
        check_input("user id", user_id)?;
        let now = stored_time(now);
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.user_id = $1 AND {} \
             ORDER BY s.created_at DESC, s.id DESC",
            live("$2")
        )))
        .bind(user_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
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
        let now = stored_time(now);
        Ok(sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND user_id = $3 \
             AND revoked_at IS NULL AND idle_expires_at > $1 AND absolute_expires_at > $1",
        )
        .bind(now)
        .bind(session_id)
        .bind(user_id)
        .execute(&self.pool)
        .await
        .map_err(db)?
        .rows_affected()
            == 1)
    }

    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        keep: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        check_input("user id", user_id)?;
        let now = stored_time(now);
        Ok(sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL \
             AND idle_expires_at > $1 AND absolute_expires_at > $1 \
             AND ($3::text IS NULL OR id <> $3)",
        )
        .bind(now)
        .bind(user_id)
        .bind(keep)
        .execute(&self.pool)
        .await
        .map_err(db)?
        .rows_affected())
    }

    async fn purge_sessions(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let before = stored_time(before);
        Ok(sqlx::query(
            "DELETE FROM sessions WHERE revoked_at <= $1 OR idle_expires_at <= $1 \
             OR absolute_expires_at <= $1",
        )
        .bind(before)
        .execute(&self.pool)
        .await
        .map_err(db)?
        .rows_affected())
    }
}

#[async_trait]
impl MfaStore for PostgresStore {
    async fn put_pending_totp(
        &self,
        user_id: &str,
        sealed_secret: &[u8],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        check_input("user id", user_id)?;
        check_sealed_secret(sealed_secret)?;
        let written = sqlx::query(
            "INSERT INTO totp_credentials (user_id, sealed_secret, confirmed, last_step, \
             created_at) VALUES ($1, $2, false, NULL, $3) \
             ON CONFLICT (user_id) DO UPDATE SET sealed_secret = excluded.sealed_secret, \
             last_step = NULL, created_at = excluded.created_at \
             WHERE NOT totp_credentials.confirmed",
        )
        .bind(user_id)
        .bind(sealed_secret)
        .bind(stored_time(now))
        .execute(&self.pool)
        .await
        .map_err(|e| owner_write_error(user_id, e))?
        .rows_affected();
        if written == 0 {
            return Err(StoreError::Conflict(Conflict::TotpConfirmed));
        }
        Ok(())
    }

    async fn get_totp(&self, user_id: &str) -> Result<Option<TotpCredential>, StoreError> {
        check_input("user id", user_id)?;
        let row = sqlx::query(
            "SELECT sealed_secret, confirmed, last_step, created_at FROM totp_credentials \
             WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|row| {
            Ok(TotpCredential {
                sealed_secret: row.try_get("sealed_secret").map_err(db)?,
                confirmed: row.try_get("confirmed").map_err(db)?,
                last_step: row.try_get("last_step").map_err(db)?,
                created_at: time_of(&row, "created_at")?,
            })
        })
        .transpose()
    }

    async fn confirm_totp(&self, user_id: &str, step: i64) -> Result<bool, StoreError> {
        check_input("user id", user_id)?;
        Ok(sqlx::query(
            "UPDATE totp_credentials SET confirmed = true, last_step = $1 WHERE user_id = $2 \
             AND NOT confirmed AND (last_step IS NULL OR last_step < $1)",
        )
        .bind(step)
        .bind(user_id)
        .execute(&self.pool)
        .await
        .map_err(db)?
        .rows_affected()
            == 1)
    }

    async fn advance_totp_step(&self, user_id: &str, step: i64) -> Result<bool, StoreError> {
        check_input("user id", user_id)?;
        Ok(sqlx::query(
            "UPDATE totp_credentials SET last_step = $1 WHERE user_id = $2 AND confirmed \
             AND (last_step IS NULL OR last_step < $1)",
        )
        .bind(step)
        .bind(user_id)
        .execute(&self.pool)
        .await
        .map_err(db)?
        .rows_affected()
            == 1)
    }

    async fn delete_totp(&self, user_id: &str) -> Result<bool, StoreError> {
        check_input("user id", user_id)?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let deleted = sqlx::query("DELETE FROM totp_credentials WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected()
            == 1;
        tx.commit().await.map_err(db)?;
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
        let now = stored_time(now);
        let mut tx = self.pool.begin().await.map_err(db)?;
        let locked: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        if locked.is_none() {
            return Err(user_not_found(user_id));
        }
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        for digest in digests {
            sqlx::query(
                "INSERT INTO recovery_codes (user_id, digest, created_at) VALUES ($1, $2, $3)",
            )
            .bind(user_id)
            .bind(digest.as_bytes().as_slice())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn consume_recovery_code(
        &self,
        user_id: &str,
        digest: &TokenDigest,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        check_input("user id", user_id)?;
        Ok(sqlx::query(
            "UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND digest = $3 \
             AND used_at IS NULL",
        )
        .bind(stored_time(now))
        .bind(user_id)
        .bind(digest.as_bytes().as_slice())
        .execute(&self.pool)
        .await
        .map_err(db)?
        .rows_affected()
            == 1)
    }

    async fn recovery_codes_left(&self, user_id: &str) -> Result<u64, StoreError> {
        check_input("user id", user_id)?;
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn add_passkey(&self, passkey: &Passkey) -> Result<(), StoreError> {
        let metadata = check_passkey(passkey)?;
        sqlx::query(
            "INSERT INTO passkeys (credential_id, user_id, name, public_key, sign_count, \
             metadata, created_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)",
        )
        .bind(passkey.credential_id.as_slice())
        .bind(&passkey.user_id)
        .bind(&passkey.name)
        .bind(passkey.public_key.as_slice())
        .bind(passkey.sign_count)
        .bind(&metadata)
        .bind(stored_time(passkey.created_at))
        .bind(passkey.last_used_at.map(stored_time))
        .execute(&self.pool)
        .await
        .map_err(|e| passkey_write_error(&passkey.user_id, e))?;
        Ok(())
    }

    async fn list_passkeys(&self, user_id: &str) -> Result<Vec<Passkey>, StoreError> {
        check_input("user id", user_id)?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE user_id = $1 \
             ORDER BY created_at, credential_id"
        )))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(passkey_from_row).collect()
    }

    async fn find_passkey(&self, credential_id: &[u8]) -> Result<Option<Passkey>, StoreError> {
        check_credential_id(credential_id)?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE credential_id = $1"
        )))
        .bind(credential_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
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
        sqlx::query(
            "UPDATE passkeys SET sign_count = GREATEST(sign_count, $1), last_used_at = $2 \
             WHERE credential_id = $3",
        )
        .bind(sign_count)
        .bind(stored_time(now))
        .bind(credential_id)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn delete_passkey(
        &self,
        user_id: &str,
        credential_id: &[u8],
    ) -> Result<bool, StoreError> {
        check_input("user id", user_id)?;
        check_credential_id(credential_id)?;
        Ok(
            sqlx::query("DELETE FROM passkeys WHERE user_id = $1 AND credential_id = $2")
                .bind(user_id)
                .bind(credential_id)
                .execute(&self.pool)
                .await
                .map_err(db)?
                .rows_affected()
                == 1,
        )
    }
}

#[async_trait]
impl AuditStore for PostgresStore {
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let detail = check_audit_event(event)?;
        sqlx::query(
            "INSERT INTO audit_events (id, at, kind, outcome, actor, user_id, ip, user_agent, \
             request_id, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)",
        )
        .bind(&event.id)
        .bind(stored_time(event.at))
        .bind(&event.kind)
        .bind(&event.outcome)
        .bind(event.actor.as_deref())
        .bind(event.user_id.as_deref())
        .bind(event.ip.as_deref())
        .bind(event.user_agent.as_deref())
        .bind(event.request_id.as_deref())
        .bind(&detail)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn list_audit(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        check_audit_filter(filter)?;
        let limit = check_page_size(limit)?;
        let conditions = [
            (&filter.user_id, "user_id"),
            (&filter.kind, "kind"),
            (&filter.before, "id"),
        ];
        let mut sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_events WHERE true");
        let mut n = 0;
        for (value, column) in &conditions {
            if value.is_some() {
                n += 1;
                let op = if *column == "id" { "<" } else { "=" };
                sql.push_str(&format!(" AND {column} {op} ${n}"));
            }
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", n + 1));
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (value, _) in conditions {
            if let Some(v) = value {
                query = query.bind(v.as_str());
            }
        }
        let rows = query.bind(limit).fetch_all(&self.pool).await.map_err(db)?;
        rows.iter().map(audit_from_row).collect()
    }
}
