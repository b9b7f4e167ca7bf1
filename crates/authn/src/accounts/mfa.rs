//! Self-service credentials: password change and TOTP enrollment/removal (each needing a recent
//! authentication), and TOTP verification with replay protection.

use trustgate_core::Secret;

use super::login::{Check, user_key};
use trustgate_audit::{AuditKind, Event, Outcome};

use super::{
    AccountError, Accounts, CurrentSession, PURPOSE_TOTP_SECRET, RequestContext, TotpEnrollment,
};
use crate::totp::{TotpSecret, generate_recovery_codes};

impl Accounts {
    pub(super) fn require_recent(&self, current: &CurrentSession) -> Result<(), AccountError> {
        if self.is_recent(&current.session) {
            Ok(())
        } else {
            Err(AccountError::StepUpRequired)
        }
    }

    /// The TOTP secret of `user_id` opened from its sealed form. A sealed secret that does not
    /// open means the secrets key changed: an internal error, loudly logged.
    fn open_totp_secret(&self, user_id: &str, sealed: &[u8]) -> Result<TotpSecret, AccountError> {
        let bytes = self
            .inner
            .key
            .open(PURPOSE_TOTP_SECRET, sealed)
            .ok_or_else(|| {
                tracing::error!(
                    user_id,
                    "stored TOTP secret cannot be opened: was the secrets key changed?"
                );
                AccountError::Internal("sealed TOTP secret cannot be opened".into())
            })?;
        TotpSecret::from_bytes(&bytes)
            .map_err(|e| AccountError::Internal(format!("stored TOTP secret: {e}")))
    }

    /// Checks a TOTP code of `user_id`'s confirmed credential and records its step as used, so
    /// the same code (or an older one) is refused next time.
    pub(super) async fn check_totp(
        &self,
        user_id: &str,
        code: &str,
    ) -> Result<Check, AccountError> {
        let Some(credential) = self
            .store()
            .get_totp(user_id)
            .await?
            .filter(|c| c.confirmed)
        else {
            return Ok(Err("totp_not_enrolled"));
        };
        let secret = self.open_totp_secret(user_id, &credential.sealed_secret)?;
        let last = credential.last_step.and_then(|s| u64::try_from(s).ok());
        let step = match secret.verify(code, self.now(), last) {
            Ok(step) => step,
            Err(e) => return Ok(Err(e.code())),
        };
        let step = i64::try_from(step).map_err(|_| AccountError::Internal("step".into()))?;
        if self.store().advance_totp_step(user_id, step).await? {
            Ok(Ok(()))
        } else {
            Ok(Err("totp_replayed"))
        }
    }

    /// Changes the user's own password: needs a recent authentication
    /// ([`AccountError::StepUpRequired`]), the current password, and a new one that passes the
    /// policy. Other sessions are revoked when asked (the current one stays).
    pub async fn change_password(
        &self,
        current: &CurrentSession,
        old: Secret,
        new: Secret,
        revoke_other_sessions: bool,
        ctx: &RequestContext,
    ) -> Result<(), AccountError> {
        self.require_recent(current)?;
        let user = &current.user;
        let key = user_key(&user.id);
        self.inner.throttle.check(Some(&key), ctx.ip).await?;
        let check = self.check_password(Some(user), &old).await?;
        drop(old);
        if let Err(reason) = check {
            self.inner
                .throttle
                .record_failure(Some(&key), ctx.ip)
                .await?;
            self.record_quietly(
                ctx,
                Event::new(AuditKind::PasswordChanged, Outcome::Failure)
                    .by_user(&user.id)
                    .detail("reason", reason),
            )
            .await;
            return Err(AccountError::InvalidCredentials);
        }
        self.inner.throttle.record_success(&key).await?;
        self.check_new_password(&new, &user.username, &user.email, user.name.as_deref())?;
        let hash = self.inner.hasher.hash(new).await?;
        let now = self.now();
        if !self
            .store()
            .set_password_hash(&user.id, hash.as_phc(), now)
            .await?
        {
            return Err(AccountError::NotFound);
        }
        let revoked = if revoke_other_sessions {
            self.store()
                .revoke_user_sessions(&user.id, Some(&current.session.id), now)
                .await?
        } else {
            0
        };
        self.record(
            ctx,
            Event::new(AuditKind::PasswordChanged, Outcome::Success)
                .by_user(&user.id)
                .detail("by", "self")
                .detail("sessions_revoked", revoked),
        )
        .await
    }

    /// Starts TOTP enrollment: a new secret, stored sealed and unconfirmed, shown once as a QR
    /// code and in base32. A confirmed TOTP must be removed first ([`AccountError::Conflict`]).
    pub async fn begin_totp_enrollment(
        &self,
        current: &CurrentSession,
    ) -> Result<TotpEnrollment, AccountError> {
        self.require_recent(current)?;
        let user = &current.user;
        if self
            .store()
            .get_totp(&user.id)
            .await?
            .is_some_and(|t| t.confirmed)
        {
            return Err(AccountError::Conflict(
                "an authenticator app is already set up; remove it first".into(),
            ));
        }
        let secret = TotpSecret::generate();
        let issuer = &self.inner.config.totp_issuer;
        let label_err = |e: crate::totp::TotpSetupError| AccountError::Internal(e.to_string());
        let provisioning_uri = secret
            .provisioning_uri(issuer, &user.username)
            .map_err(label_err)?;
        let qr_png_base64 = secret
            .qr_png_base64(issuer, &user.username)
            .map_err(label_err)?;
        let sealed = self.inner.key.seal(PURPOSE_TOTP_SECRET, secret.as_bytes());
        self.store()
            .put_pending_totp(&user.id, &sealed, self.now())
            .await?;
        Ok(TotpEnrollment {
            secret_base32: secret.to_base32(),
            provisioning_uri,
            qr_png_base64,
        })
    }

    /// Confirms the pending TOTP with a code from the app and returns ten new recovery codes, to
    /// show once. A wrong code is [`AccountError::InvalidSecondFactor`].
    pub async fn confirm_totp_enrollment(
        &self,
        current: &CurrentSession,
        code: &str,
        ctx: &RequestContext,
    ) -> Result<Vec<Secret>, AccountError> {
        self.require_recent(current)?;
        let user = &current.user;
        let key = user_key(&user.id);
        self.inner.throttle.check(Some(&key), ctx.ip).await?;
        let pending = match self.store().get_totp(&user.id).await? {
            Some(t) if !t.confirmed => t,
            Some(_) => {
                return Err(AccountError::Conflict(
                    "an authenticator app is already set up".into(),
                ));
            }
            None => return Err(AccountError::NotFound),
        };
        let secret = self.open_totp_secret(&user.id, &pending.sealed_secret)?;
        let step = match secret.verify(code, self.now(), None) {
            Ok(step) => step,
            Err(e) => {
                self.inner
                    .throttle
                    .record_failure(Some(&key), ctx.ip)
                    .await?;
                self.record_quietly(
                    ctx,
                    Event::new(AuditKind::MfaEnrolled, Outcome::Failure)
                        .by_user(&user.id)
                        .detail("factor", "totp")
                        .detail("reason", e.code()),
                )
                .await;
                return Err(AccountError::InvalidSecondFactor);
            }
        };
        let step = i64::try_from(step).map_err(|_| AccountError::Internal("step".into()))?;
        if !self.store().confirm_totp(&user.id, step).await? {
            return Err(AccountError::NotFound);
        }
        self.inner.throttle.record_success(&key).await?;
        let codes = generate_recovery_codes();
        self.store()
            .replace_recovery_codes(&user.id, &codes.digests, self.now())
            .await?;
        self.record(
            ctx,
            Event::new(AuditKind::MfaEnrolled, Outcome::Success)
                .by_user(&user.id)
                .detail("factor", "totp")
                .detail("recovery_codes", codes.codes.len()),
        )
        .await?;
        Ok(codes.codes)
    }

    /// Removes the user's TOTP and recovery codes (needs a recent authentication).
    pub async fn remove_totp(
        &self,
        current: &CurrentSession,
        ctx: &RequestContext,
    ) -> Result<(), AccountError> {
        self.require_recent(current)?;
        let user = &current.user;
        if !self.store().delete_totp(&user.id).await? {
            return Err(AccountError::NotFound);
        }
        self.record(
            ctx,
            Event::new(AuditKind::MfaRemoved, Outcome::Success)
                .by_user(&user.id)
                .detail("factor", "totp"),
        )
        .await
    }

    /// Whether the user has a confirmed TOTP.
    pub async fn totp_enabled(&self, user_id: &str) -> Result<bool, AccountError> {
        Ok(self
            .store()
            .get_totp(user_id)
            .await?
            .is_some_and(|t| t.confirmed))
    }
}
