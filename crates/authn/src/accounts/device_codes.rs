//! Device user codes typed on the `/device` page (RFC 8628 §5.1): a user code has only
//! 20^8 ≈ 2^34.6 values, so guessing is slowed per signed-in session and per client IP by the
//! [`DeviceCodeThrottle`](crate::throttle::DeviceCodeThrottle), with counts shared by every
//! replica. The page asks [`Accounts::check_device_code_entry`] *before* it looks a code up (a
//! correct code during a wait is refused like a wrong one, so the wait is no oracle) and reports
//! a code that matched nothing with [`Accounts::record_device_code_failure`].

use trustgate_audit::{AuditKind, Event, Outcome};

use super::{AccountError, Accounts, CurrentSession, RequestContext};

impl Accounts {
    /// May the user of `current`, from `ctx`'s address, look up a typed user code now?
    /// [`AccountError::Throttled`] (audited as `device_code_failed`, reason `throttled`) while
    /// the session or the address must wait; unavailable (503) when the counts cannot be read.
    pub async fn check_device_code_entry(
        &self,
        current: &CurrentSession,
        ctx: &RequestContext,
    ) -> Result<(), AccountError> {
        let checked = self
            .inner
            .device_codes
            .check(&current.session.id, ctx.ip)
            .await;
        if let Err(e) = checked {
            let e = AccountError::from(e);
            if matches!(e, AccountError::Throttled(_)) {
                self.record_quietly(
                    ctx,
                    Event::new(AuditKind::DeviceCodeFailed, Outcome::Denied)
                        .by_user(&current.user.id)
                        .detail("reason", "throttled"),
                )
                .await;
            }
            return Err(e);
        }
        Ok(())
    }

    /// A user code typed by the user of `current` matched no pending authorization: counts it
    /// against the session and the address and audits it (`device_code_failed`, reason
    /// `unknown_code`; never the code).
    pub async fn record_device_code_failure(
        &self,
        current: &CurrentSession,
        ctx: &RequestContext,
    ) -> Result<(), AccountError> {
        self.inner
            .device_codes
            .record_failure(&current.session.id, ctx.ip)
            .await?;
        self.record_quietly(
            ctx,
            Event::new(AuditKind::DeviceCodeFailed, Outcome::Failure)
                .by_user(&current.user.id)
                .detail("reason", "unknown_code"),
        )
        .await;
        Ok(())
    }
}
