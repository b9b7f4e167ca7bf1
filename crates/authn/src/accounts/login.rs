//! Login: password, then (if enrolled) a second factor through a stateless pending-login token.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use trustgate_core::Secret;

use trustgate_audit::{AuditKind, Event, Outcome};

use super::{
    AccountError, Accounts, FactorKind, IssuedSession, LoginStep, MAX_LOGIN_CHARS,
    PURPOSE_PENDING_LOGIN, RequestContext, SecondFactor, User, UserStatus, clip, plus, subject,
};
use crate::password::{HashError, HashedPassword, Verification};
use crate::totp::recovery_code_digest;

/// Longest pending-login token accepted (a sealed token is about 200 characters).
const MAX_PENDING_CHARS: usize = 2048;

/// What a pending-login token holds (sealed, so neither readable nor forgeable by the client).
#[derive(Debug, Serialize, Deserialize)]
struct PendingLogin {
    /// The user.
    #[serde(rename = "u")]
    user_id: String,
    /// Methods passed so far.
    amr: Vec<String>,
    /// Expiry, unix seconds.
    exp: i64,
}

/// Why a pending-login token was refused (for the audit trail).
enum PendingRefusal {
    Malformed,
    Expired { user_id: String },
}

/// The outcome of checking one typed credential: `Ok` or a reason for the audit trail.
pub(super) type Check = Result<(), &'static str>;

/// Throttle key for codes typed for `user_id` (second factor, step-up, password change).
pub(super) fn user_key(user_id: &str) -> String {
    format!("user:{user_id}")
}

impl Accounts {
    /// Verifies `password` against the stored hash of `user` (or a dummy hash when there is no
    /// user or no password, at the same cost). Rehashes with current parameters after a success.
    pub(super) async fn check_password(
        &self,
        user: Option<&User>,
        password: &Secret,
    ) -> Result<Check, AccountError> {
        let stored = match user {
            Some(user) => self.store().password_hash(&user.id).await?,
            None => None,
        };
        let has_hash = stored.is_some();
        let result = match stored {
            Some(phc) => {
                self.inner
                    .hasher
                    .verify(HashedPassword::from_phc(phc), password.clone())
                    .await
            }
            None => self.inner.hasher.dummy_verify(password.clone()).await,
        };
        let verification = match result {
            Ok(v) => v,
            Err(HashError::Busy) => return Err(AccountError::Busy),
            Err(e) => {
                tracing::error!(error = %e, code = e.code(), "stored password hash unusable");
                Verification {
                    ok: false,
                    needs_rehash: false,
                }
            }
        };
        match (user, verification.ok) {
            (None, _) => Ok(Err("unknown_user")),
            (Some(_), false) if !has_hash => Ok(Err("no_password")),
            (Some(_), false) => Ok(Err("wrong_password")),
            (Some(user), true) => {
                if verification.needs_rehash {
                    self.rehash(user, password.clone()).await;
                }
                Ok(Ok(()))
            }
        }
    }

    /// Stores a new hash of a just-verified password under the current parameters. Failure
    /// only costs the upgrade, so it is logged and ignored.
    async fn rehash(&self, user: &User, password: Secret) {
        match self.inner.hasher.hash(password).await {
            Ok(hash) => {
                match self
                    .store()
                    .set_password_hash(&user.id, hash.as_phc(), self.now())
                    .await
                {
                    Ok(_) => {
                        tracing::info!(user_id = %user.id, "password rehashed with current parameters")
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot store the upgraded password hash"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot rehash the password now; next login will"),
        }
    }

    /// First step of a login: the password. Unknown user, wrong password and disabled user are
    /// the same [`AccountError::InvalidCredentials`], at the same cost; too many recent failures
    /// for this login name or client address are [`AccountError::Throttled`] before any hashing.
    pub async fn login_password(
        &self,
        login: &str,
        password: Secret,
        ctx: &RequestContext,
    ) -> Result<LoginStep, AccountError> {
        let login = login.trim();
        let account_key = clip(&login.to_lowercase(), MAX_LOGIN_CHARS);
        if let Err(e) = self.inner.throttle.check(Some(&account_key), ctx.ip).await {
            let e = AccountError::from(e);
            if matches!(e, AccountError::Throttled(_)) {
                self.record_quietly(
                    ctx,
                    Event::new(AuditKind::LoginFailed, Outcome::Denied)
                        .detail("reason", "throttled")
                        .detail("factor", "pwd"),
                )
                .await;
            }
            return Err(e);
        }
        let user = if login.is_empty() || login.chars().count() > MAX_LOGIN_CHARS {
            None
        } else {
            self.store().find_user_by_login(login).await?
        };
        let mut check = self.check_password(user.as_ref(), &password).await?;
        drop(password);
        if check.is_ok()
            && user
                .as_ref()
                .is_some_and(|u| u.status != UserStatus::Active)
        {
            check = Err("disabled");
        }
        let user = match (check, user) {
            (Ok(()), Some(user)) => user,
            (result, user) => {
                self.inner
                    .throttle
                    .record_failure(Some(&account_key), ctx.ip)
                    .await?;
                let reason = result.err().unwrap_or("unknown_user");
                let mut event = Event::new(AuditKind::LoginFailed, Outcome::Failure)
                    .detail("reason", reason)
                    .detail("factor", "pwd");
                if let Some(user) = &user {
                    event = event.user(&user.id);
                }
                self.record_quietly(ctx, event).await;
                return Err(AccountError::InvalidCredentials);
            }
        };
        self.inner.throttle.record_success(&account_key).await?;

        let methods = self.second_factor_methods(&user.id).await?;
        if methods.is_empty() {
            let now = self.now();
            let issued = self.issue_session(user, &["pwd"], now, ctx).await?;
            self.record(
                ctx,
                Event::new(AuditKind::Login, Outcome::Success)
                    .by_user(&issued.user.id)
                    .detail("session_id", issued.session.id.clone())
                    .detail("amr", issued.session.amr.clone()),
            )
            .await?;
            return Ok(LoginStep::Complete(issued));
        }
        let pending = self.seal_pending(&PendingLogin {
            user_id: user.id.clone(),
            amr: vec!["pwd".into()],
            exp: plus(self.now(), self.inner.config.pending_login_ttl).unix_timestamp(),
        })?;
        self.record(
            ctx,
            Event::new(AuditKind::LoginPending, Outcome::Success)
                .by_user(&user.id)
                .detail("amr", vec!["pwd"])
                .detail(
                    "second_factor",
                    methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
                ),
        )
        .await?;
        Ok(LoginStep::SecondFactorRequired { pending, methods })
    }

    /// The second factors `user_id` can use: none unless TOTP is confirmed; then TOTP, and
    /// recovery codes while some are left.
    pub(super) async fn second_factor_methods(
        &self,
        user_id: &str,
    ) -> Result<Vec<FactorKind>, AccountError> {
        let confirmed = self
            .store()
            .get_totp(user_id)
            .await?
            .is_some_and(|t| t.confirmed);
        if !confirmed {
            return Ok(Vec::new());
        }
        let mut methods = vec![FactorKind::Totp];
        if self.store().recovery_codes_left(user_id).await? > 0 {
            methods.push(FactorKind::RecoveryCode);
        }
        Ok(methods)
    }

    fn seal_pending(&self, pending: &PendingLogin) -> Result<Secret, AccountError> {
        let json =
            serde_json::to_vec(pending).map_err(|e| AccountError::Internal(e.to_string()))?;
        let sealed = self.inner.key.seal(PURPOSE_PENDING_LOGIN, &json);
        Ok(Secret::new(URL_SAFE_NO_PAD.encode(sealed)))
    }

    fn open_pending(&self, token: &str) -> Result<PendingLogin, PendingRefusal> {
        let token = token.trim();
        if token.is_empty() || token.len() > MAX_PENDING_CHARS {
            return Err(PendingRefusal::Malformed);
        }
        let sealed = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| PendingRefusal::Malformed)?;
        let json = self
            .inner
            .key
            .open(PURPOSE_PENDING_LOGIN, &sealed)
            .ok_or(PendingRefusal::Malformed)?;
        let pending: PendingLogin =
            serde_json::from_slice(&json).map_err(|_| PendingRefusal::Malformed)?;
        let expires = OffsetDateTime::from_unix_timestamp(pending.exp)
            .map_err(|_| PendingRefusal::Malformed)?;
        if self.now() >= expires {
            return Err(PendingRefusal::Expired {
                user_id: pending.user_id,
            });
        }
        Ok(pending)
    }

    /// Opens a pending-login token, auditing a refusal.
    async fn pending_or_refuse(
        &self,
        token: &str,
        ctx: &RequestContext,
    ) -> Result<PendingLogin, AccountError> {
        match self.open_pending(token) {
            Ok(pending) => Ok(pending),
            Err(refusal) => {
                let (reason, user_id) = match refusal {
                    PendingRefusal::Malformed => ("pending_login_invalid", None),
                    PendingRefusal::Expired { user_id } => ("pending_login_expired", Some(user_id)),
                };
                let mut event =
                    Event::new(AuditKind::LoginFailed, Outcome::Failure).detail("reason", reason);
                if let Some(user_id) = &user_id {
                    event = event.user(user_id);
                }
                self.record_quietly(ctx, event).await;
                Err(AccountError::InvalidSecondFactor)
            }
        }
    }

    /// The second factors a pending login can be finished with (for rendering the form).
    pub async fn pending_login_methods(
        &self,
        pending: &str,
    ) -> Result<Vec<FactorKind>, AccountError> {
        let pending = self
            .open_pending(pending)
            .map_err(|_| AccountError::InvalidSecondFactor)?;
        match self.store().get_user(&pending.user_id).await? {
            Some(user) if user.status == UserStatus::Active => {
                self.second_factor_methods(&user.id).await
            }
            _ => Err(AccountError::InvalidSecondFactor),
        }
    }

    /// Second step of a login: a TOTP or recovery code for the pending login. Wrong, malformed
    /// or replayed codes, and expired or tampered pending tokens, are
    /// [`AccountError::InvalidSecondFactor`]; attempts are throttled per user and client address.
    pub async fn login_second_factor(
        &self,
        pending: &str,
        factor: SecondFactor,
        ctx: &RequestContext,
    ) -> Result<IssuedSession, AccountError> {
        let pending = self.pending_or_refuse(pending, ctx).await?;
        let key = user_key(&pending.user_id);
        let factor_name = match &factor {
            SecondFactor::Totp(_) => FactorKind::Totp.as_str(),
            SecondFactor::RecoveryCode(_) => FactorKind::RecoveryCode.as_str(),
        };
        if let Err(e) = self.inner.throttle.check(Some(&key), ctx.ip).await {
            let e = AccountError::from(e);
            if matches!(e, AccountError::Throttled(_)) {
                self.record_quietly(
                    ctx,
                    Event::new(AuditKind::LoginFailed, Outcome::Denied)
                        .user(&pending.user_id)
                        .detail("reason", "throttled")
                        .detail("factor", factor_name),
                )
                .await;
            }
            return Err(e);
        }
        let user = self
            .store()
            .get_user(&pending.user_id)
            .await?
            .filter(|u| u.status == UserStatus::Active);
        let check = match (&user, &factor) {
            (None, _) => Err("user_unavailable"),
            (Some(user), SecondFactor::Totp(code)) => self.check_totp(&user.id, code).await?,
            (Some(user), SecondFactor::RecoveryCode(code)) => {
                self.check_recovery_code(&user.id, code).await?
            }
        };
        let user = match (check, user) {
            (Ok(()), Some(user)) => user,
            (result, _) => {
                self.inner
                    .throttle
                    .record_failure(Some(&key), ctx.ip)
                    .await?;
                self.record_quietly(
                    ctx,
                    Event::new(AuditKind::LoginFailed, Outcome::Failure)
                        .user(&pending.user_id)
                        .detail("reason", result.err().unwrap_or("invalid"))
                        .detail("factor", factor_name),
                )
                .await;
                return Err(AccountError::InvalidSecondFactor);
            }
        };
        self.inner.throttle.record_success(&key).await?;
        if matches!(factor, SecondFactor::RecoveryCode(_)) {
            let left = self.store().recovery_codes_left(&user.id).await?;
            self.record(
                ctx,
                Event::new(AuditKind::RecoveryCodeUsed, Outcome::Success)
                    .by_user(&user.id)
                    .detail("codes_left", left),
            )
            .await?;
        }
        let mut amr: Vec<&str> = pending.amr.iter().map(String::as_str).collect();
        for method in ["otp", "mfa"] {
            if !amr.contains(&method) {
                amr.push(method);
            }
        }
        let now = self.now();
        let issued = self.issue_session(user, &amr, now, ctx).await?;
        self.record(
            ctx,
            Event::new(AuditKind::Login, Outcome::Success)
                .by_user(&issued.user.id)
                .actor(subject(&issued.user.id))
                .detail("session_id", issued.session.id.clone())
                .detail("amr", issued.session.amr.clone())
                .detail("factor", factor_name),
        )
        .await?;
        Ok(issued)
    }

    /// Consumes the recovery code `code` of `user_id` if it is one of theirs and unused.
    async fn check_recovery_code(&self, user_id: &str, code: &str) -> Result<Check, AccountError> {
        let Some(digest) = recovery_code_digest(code) else {
            return Ok(Err("recovery_code_malformed"));
        };
        if self
            .store()
            .consume_recovery_code(user_id, &digest, self.now())
            .await?
        {
            Ok(Ok(()))
        } else {
            Ok(Err("recovery_code_invalid"))
        }
    }
}
