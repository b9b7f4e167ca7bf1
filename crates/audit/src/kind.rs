/// How an event reaches the trail; decided by its kind (see the crate documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Written before the request may succeed.
    Recorded,
    /// Queued for the batched writer; never waits, dropped (and counted) when the queue is full.
    Streamed,
}

macro_rules! audit_kinds {
    ($($(#[$doc:meta])* $variant:ident = $name:literal, $delivery:ident;)*) => {
        /// What happened. The stored spelling ([`AuditKind::as_str`]) is stable: it is what the
        /// admin API filters on and what operators grep for.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum AuditKind {
            $($(#[$doc])* $variant,)*
        }

        impl AuditKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [AuditKind] = &[$(AuditKind::$variant,)*];

            /// The stored spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(AuditKind::$variant => $name,)*
                }
            }

            /// Parses the stored spelling.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($name => Some(AuditKind::$variant),)*
                    _ => None,
                }
            }

            /// How events of this kind reach the trail.
            pub fn delivery(self) -> Delivery {
                match self {
                    $(AuditKind::$variant => Delivery::$delivery,)*
                }
            }
        }
    };
}

audit_kinds! {
    /// A password or passkey login completed (a session was issued).
    Login = "login", Recorded;
    /// A login attempt failed (wrong credential, unknown user, throttled, disabled).
    LoginFailed = "login_failed", Recorded;
    /// The password was right; the second factor is pending.
    LoginPending = "login_pending", Recorded;
    /// A session was ended by its user.
    Logout = "logout", Recorded;
    /// A second factor (TOTP) was enrolled or its enrolment failed.
    MfaEnrolled = "mfa_enrolled", Recorded;
    /// A second factor was removed.
    MfaRemoved = "mfa_removed", Recorded;
    /// A passkey was registered (or its registration failed).
    PasskeyAdded = "passkey_added", Recorded;
    /// A passkey's signature counter went backwards (a cloned authenticator).
    PasskeyCounterRegression = "passkey_counter_regression", Recorded;
    /// A passkey was removed.
    PasskeyRemoved = "passkey_removed", Recorded;
    /// A password was set or changed.
    PasswordChanged = "password_changed", Recorded;
    /// A recovery code was consumed.
    RecoveryCodeUsed = "recovery_code_used", Recorded;
    /// One or more sessions were revoked.
    SessionRevoked = "session_revoked", Recorded;
    /// A re-authentication for a sensitive action.
    StepUp = "step_up", Recorded;
    /// A user was created.
    UserCreated = "user_created", Recorded;
    /// A user was deleted.
    UserDeleted = "user_deleted", Recorded;
    /// A user's profile changed.
    UserUpdated = "user_updated", Recorded;
    /// A disabled user was enabled again.
    UserEnabled = "user_enabled", Recorded;
    /// A user was disabled (their sessions and grants end).
    UserDisabled = "user_disabled", Recorded;
    /// An OAuth client was registered.
    ClientCreated = "client_created", Recorded;
    /// An OAuth client's registration changed.
    ClientUpdated = "client_updated", Recorded;
    /// An OAuth client was deleted.
    ClientDeleted = "client_deleted", Recorded;
    /// An OAuth client's secret was replaced.
    ClientSecretRotated = "client_secret_rotated", Recorded;
    /// A signing key was rotated in.
    SigningKeyRotated = "signing_key_rotated", Recorded;
    /// A service account was created.
    ServiceAccountCreated = "service_account_created", Recorded;
    /// A service account was disabled (its keys stop at once).
    ServiceAccountDisabled = "service_account_disabled", Recorded;
    /// A disabled service account was enabled again.
    ServiceAccountEnabled = "service_account_enabled", Recorded;
    /// A service account was deleted with its keys and roles.
    ServiceAccountDeleted = "service_account_deleted", Recorded;
    /// A client-certificate name (SPIFFE ID or subject DN) was bound to a service account.
    CertificateBound = "certificate_bound", Recorded;
    /// A client-certificate name was unbound from a service account.
    CertificateUnbound = "certificate_unbound", Recorded;
    /// An API key or personal access token was issued.
    ApiKeyCreated = "api_key_created", Recorded;
    /// An API key was rotated (the old one lives until the overlap ends).
    ApiKeyRotated = "api_key_rotated", Recorded;
    /// An API key was revoked.
    ApiKeyRevoked = "api_key_revoked", Recorded;
    /// A role on trustgate or on a store was granted.
    RoleGranted = "role_granted", Recorded;
    /// A role was revoked.
    RoleRevoked = "role_revoked", Recorded;
    /// A webhook subscription was created.
    WebhookCreated = "webhook_created", Recorded;
    /// A webhook subscription was deleted with its queued deliveries.
    WebhookDeleted = "webhook_deleted", Recorded;
    /// A webhook's signing secret was rotated (the old one signs until the overlap ends).
    WebhookSecretRotated = "webhook_secret_rotated", Recorded;
    /// A dead-lettered delivery was queued again.
    WebhookRedelivered = "webhook_redelivered", Recorded;
    /// A known principal was refused for lack of a permission (which one is in the details).
    AccessDenied = "access_denied", Streamed;
    /// An authorization code was presented twice; its grant was revoked.
    OAuthCodeReplayed = "oauth_code_replayed", Recorded;
    /// A user consented to a client's scopes.
    OAuthConsentGranted = "oauth_consent_granted", Recorded;
    /// A user refused a client's request.
    OAuthConsentDenied = "oauth_consent_denied", Recorded;
    /// A user withdrew a consent (and its grants).
    OAuthConsentRevoked = "oauth_consent_revoked", Recorded;
    /// A user approved a device authorization.
    OAuthDeviceApproved = "oauth_device_approved", Recorded;
    /// A user denied a device authorization.
    OAuthDeviceDenied = "oauth_device_denied", Recorded;
    /// A device user code typed on `/device` matched nothing, or was refused unread because the
    /// session or address is throttled (reason in the details; never the code).
    DeviceCodeFailed = "device_code_failed", Recorded;
    /// A grant was revoked.
    OAuthGrantRevoked = "oauth_grant_revoked", Recorded;
    /// A rotated refresh token was presented again; its grant was revoked.
    OAuthRefreshReused = "oauth_refresh_reused", Recorded;
    /// A rotated refresh token was honoured once more within its client's grace period.
    OAuthRefreshGraceUsed = "oauth_refresh_grace_used", Recorded;
    /// A token was revoked at the revocation endpoint.
    OAuthTokenRevoked = "oauth_token_revoked", Recorded;
    /// An OpenID session ended (RP-initiated logout).
    OAuthSessionEnded = "oauth_session_ended", Recorded;
    /// A back-channel logout token was delivered to a client.
    OAuthBackchannelLogout = "oauth_backchannel_logout", Streamed;
    /// A token exchange (RFC 8693) was refused (the error and its reason in the details).
    OAuthTokenExchangeRefused = "oauth_token_exchange_refused", Recorded;
    /// Tokens were issued at the token endpoint.
    OAuthTokenIssued = "oauth_token_issued", Streamed;
    /// An authorization decision (check) was made.
    AuthorizationDecision = "authorization_decision", Streamed;
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It happened.
    Success,
    /// It failed (bad input, wrong credential, an error).
    Failure,
    /// Policy refused it.
    Denied,
}

impl Outcome {
    /// The stored spelling (one of `trustgate_store_api::accounts::AUDIT_OUTCOMES`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use trustgate_store_api::accounts::AUDIT_OUTCOMES;

    use super::*;

    #[test]
    fn spellings_are_unique_and_round_trip() {
        let mut seen = HashSet::new();
        for kind in AuditKind::ALL {
            assert!(seen.insert(kind.as_str()), "{kind:?} spelled twice");
            assert_eq!(AuditKind::parse(kind.as_str()), Some(*kind));
        }
        assert_eq!(AuditKind::parse("nope"), None);
    }

    #[test]
    fn only_hot_path_kinds_are_streamed() {
        let streamed: Vec<_> = AuditKind::ALL
            .iter()
            .filter(|k| k.delivery() == Delivery::Streamed)
            .collect();
        assert_eq!(
            streamed,
            [
                &AuditKind::AccessDenied,
                &AuditKind::OAuthBackchannelLogout,
                &AuditKind::OAuthTokenIssued,
                &AuditKind::AuthorizationDecision
            ]
        );
    }

    #[test]
    fn outcomes_are_what_the_store_accepts() {
        for outcome in [Outcome::Success, Outcome::Failure, Outcome::Denied] {
            assert!(AUDIT_OUTCOMES.contains(&outcome.as_str()));
        }
    }
}
