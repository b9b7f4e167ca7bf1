//! Sessions: issue, authenticate (moving the idle expiry), log out, step up, list and revoke.

use std::time::Duration;

use time::OffsetDateTime;
use trustgate_core::Secret;
use trustgate_core::id::new_ulid;

use super::login::user_key;
use trustgate_audit::{AuditKind, Event, Outcome};

use super::{
    AccountError, Accounts, CurrentSession, IssuedSession, RequestContext, Session, User,
    UserStatus, plus,
};
use crate::session_token::{new_session_id, session_id_digest};

/// A session's `last_seen_at` and idle expiry are written at most this often: every request
/// would otherwise be a database write. The idle timeout is therefore precise to this interval.
pub const TOUCH_INTERVAL: Duration = Duration::from_secs(15);

/// Clock skew tolerated for `auth_time` in the future.
const LEEWAY: time::Duration = time::Duration::seconds(60);

impl Accounts {
    /// A new session record for `user`, authenticated with `amr` at `auth_time`.
    fn new_session(
        &self,
        user: &User,
        amr: &[&str],
        auth_time: OffsetDateTime,
        ctx: &RequestContext,
    ) -> Session {
        let now = self.now();
        let config = &self.inner.config;
        let absolute = plus(now, config.session_absolute);
        let idle = plus(now, config.session_idle).min(absolute);
        let two_factors = amr.contains(&"mfa");
        Session {
            id: new_ulid(now),
            user_id: user.id.clone(),
            created_at: now,
            last_seen_at: now,
            idle_expires_at: idle,
            absolute_expires_at: absolute,
            auth_time,
            amr: amr.iter().map(|m| (*m).to_owned()).collect(),
            acr: if two_factors { "2" } else { "1" }.to_owned(),
            ip: ctx.ip.map(|ip| ip.to_string()),
            user_agent: ctx.user_agent.clone(),
        }
    }

    /// Stores a new session under a fresh id and returns the id to set as the cookie.
    pub(super) async fn issue_session(
        &self,
        user: User,
        amr: &[&str],
        auth_time: OffsetDateTime,
        ctx: &RequestContext,
    ) -> Result<IssuedSession, AccountError> {
        let session = self.new_session(&user, amr, auth_time, ctx);
        let id = new_session_id();
        self.store().create_session(&id.digest, &session).await?;
        Ok(IssuedSession {
            token: id.token,
            session,
            user,
        })
    }

    /// The live session a request presented, or `None` (malformed, unknown, revoked, expired,
    /// or its user disabled or deleted). Moves the idle expiry.
    pub async fn authenticate_session(
        &self,
        token: &str,
        _ctx: &RequestContext,
    ) -> Result<Option<CurrentSession>, AccountError> {
        let Some(digest) = session_id_digest(token) else {
            return Ok(None);
        };
        let now = self.now();
        let Some(mut session) = self.store().find_session(&digest, now).await? else {
            return Ok(None);
        };
        if now >= session.idle_expires_at || now >= session.absolute_expires_at {
            return Ok(None);
        }
        let Some(user) = self
            .store()
            .get_user(&session.user_id)
            .await?
            .filter(|u| u.status == UserStatus::Active)
        else {
            return Ok(None);
        };
        if now - session.last_seen_at >= TOUCH_INTERVAL {
            let idle = plus(now, self.inner.config.session_idle).min(session.absolute_expires_at);
            self.store().touch_session(&session.id, now, idle).await?;
            session.last_seen_at = now;
            session.idle_expires_at = idle;
        }
        Ok(Some(CurrentSession {
            token: Secret::new(token),
            session,
            user,
        }))
    }

    /// Ends the session `token` names, if it is live. Unknown tokens are ignored.
    pub async fn logout(&self, token: &str, ctx: &RequestContext) -> Result<(), AccountError> {
        let Some(digest) = session_id_digest(token) else {
            return Ok(());
        };
        let now = self.now();
        let Some(session) = self.store().find_session(&digest, now).await? else {
            return Ok(());
        };
        self.store()
            .revoke_session(&session.user_id, &session.id, now)
            .await?;
        self.record(
            ctx,
            Event::new(AuditKind::Logout, Outcome::Success)
                .by_user(&session.user_id)
                .detail("session_id", session.id),
        )
        .await
    }

    /// Whether the session's last active authentication is within the step-up window.
    pub fn is_recent(&self, session: &Session) -> bool {
        let now = self.now();
        let window = time::Duration::try_from(self.inner.config.step_up_window)
            .unwrap_or(time::Duration::ZERO);
        session.auth_time <= now + LEEWAY && now - session.auth_time <= window
    }

    /// Step-up: checks the password again (and a TOTP code when TOTP is enrolled), then replaces
    /// the session with a new one under a new id with `auth_time` now. The old id stops working.
    pub async fn reauthenticate(
        &self,
        current: &CurrentSession,
        password: Secret,
        totp: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<IssuedSession, AccountError> {
        let user = &current.user;
        let key = user_key(&user.id);
        if let Err(e) = self.inner.throttle.check(Some(&key), ctx.ip).await {
            let e = AccountError::from(e);
            if matches!(e, AccountError::Throttled(_)) {
                self.record_quietly(
                    ctx,
                    Event::new(AuditKind::StepUp, Outcome::Denied)
                        .by_user(&user.id)
                        .detail("reason", "throttled"),
                )
                .await;
            }
            return Err(e);
        }
        let mut check = self.check_password(Some(user), &password).await?;
        drop(password);
        let totp_enrolled = self
            .store()
            .get_totp(&user.id)
            .await?
            .is_some_and(|t| t.confirmed);
        let mut failure_is_factor = false;
        if check.is_ok() && totp_enrolled {
            failure_is_factor = true;
            check = match totp {
                Some(code) => self.check_totp(&user.id, code).await?,
                None => Err("second_factor_missing"),
            };
        }
        if let Err(reason) = check {
            self.inner
                .throttle
                .record_failure(Some(&key), ctx.ip)
                .await?;
            self.record_quietly(
                ctx,
                Event::new(AuditKind::StepUp, Outcome::Failure)
                    .by_user(&user.id)
                    .detail("reason", reason),
            )
            .await;
            return Err(if failure_is_factor {
                AccountError::InvalidSecondFactor
            } else {
                AccountError::InvalidCredentials
            });
        }
        self.inner.throttle.record_success(&key).await?;
        let amr: &[&str] = if totp_enrolled {
            &["pwd", "otp", "mfa"]
        } else {
            &["pwd"]
        };
        let now = self.now();
        let session = self.new_session(user, amr, now, ctx);
        let id = new_session_id();
        if !self
            .store()
            .rotate_session(&current.session.id, &id.digest, &session, now)
            .await?
        {
            return Err(AccountError::InvalidCredentials);
        }
        self.record(
            ctx,
            Event::new(AuditKind::StepUp, Outcome::Success)
                .by_user(&user.id)
                .detail("old_session_id", current.session.id.clone())
                .detail("session_id", session.id.clone())
                .detail("amr", session.amr.clone()),
        )
        .await?;
        Ok(IssuedSession {
            token: id.token,
            session,
            user: user.clone(),
        })
    }

    /// The live sessions of a user, newest first. [`AccountError::NotFound`] for no such user.
    pub async fn list_sessions(&self, user_id: &str) -> Result<Vec<Session>, AccountError> {
        let user = self.get_user(user_id).await?;
        Ok(self
            .store()
            .list_user_sessions(&user.id, self.now())
            .await?)
    }

    /// Revokes one session of a user.
    pub async fn revoke_session(
        &self,
        user_id: &str,
        session_id: &str,
        actor: &str,
        ctx: &RequestContext,
    ) -> Result<(), AccountError> {
        let user = self.get_user(user_id).await?;
        if session_id.is_empty() || session_id.len() > 64 {
            return Err(AccountError::NotFound);
        }
        if !self
            .store()
            .revoke_session(&user.id, session_id, self.now())
            .await?
        {
            return Err(AccountError::NotFound);
        }
        self.record(
            ctx,
            Event::new(AuditKind::SessionRevoked, Outcome::Success)
                .user(&user.id)
                .actor(actor)
                .detail("session_id", session_id),
        )
        .await
    }

    /// Revokes every session of a user except `keep`; returns how many.
    pub async fn revoke_all_sessions(
        &self,
        user_id: &str,
        keep: Option<&str>,
        actor: &str,
        ctx: &RequestContext,
    ) -> Result<u64, AccountError> {
        let user = self.get_user(user_id).await?;
        let count = self
            .store()
            .revoke_user_sessions(&user.id, keep, self.now())
            .await?;
        self.record(
            ctx,
            Event::new(AuditKind::SessionRevoked, Outcome::Success)
                .user(&user.id)
                .actor(actor)
                .detail("all", true)
                .detail("count", count)
                .detail("kept", keep.is_some()),
        )
        .await?;
        Ok(count)
    }
}
