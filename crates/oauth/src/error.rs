//! OAuth 2.0 error responses (RFC 6749 §4.1.2.1, §5.2; RFC 8628 §3.5; RFC 7009; OIDC Core
//! §3.1.2.6).

use std::fmt;

use trustgate_store_api::StoreError;

/// The `error` codes trustgate returns, each a registered OAuth or OpenID Connect value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// RFC 6749: malformed or missing parameter.
    InvalidRequest,
    /// RFC 6749: client authentication failed (401 at the token endpoint).
    InvalidClient,
    /// RFC 6749: the grant (code, refresh token, device code) or PKCE verifier is wrong.
    InvalidGrant,
    /// RFC 6749: the client may not use this grant or response type.
    UnauthorizedClient,
    /// RFC 6749: grant type not supported (implicit, ROPC, unknown).
    UnsupportedGrantType,
    /// RFC 6749: response type not supported.
    UnsupportedResponseType,
    /// RFC 6749: requested scope is invalid or not allowed.
    InvalidScope,
    /// RFC 6749: the user or the server denied the request.
    AccessDenied,
    /// RFC 6749: unexpected condition (503-like).
    ServerError,
    /// RFC 6749: temporarily unavailable.
    TemporarilyUnavailable,
    /// OIDC: `prompt=none` but the user must log in.
    LoginRequired,
    /// OIDC: `prompt=none` but consent is needed.
    ConsentRequired,
    /// OIDC: `prompt=none` but interaction is needed.
    InteractionRequired,
    /// OIDC: the `request` parameter is not supported.
    RequestNotSupported,
    /// OIDC: the `request_uri` parameter (other than a PAR one) is not supported.
    RequestUriNotSupported,
    /// RFC 9126: the `request_uri` is unknown, used or expired.
    InvalidRequestUri,
    /// RFC 8628: the user has not finished yet.
    AuthorizationPending,
    /// RFC 8628: poll less often.
    SlowDown,
    /// RFC 8628: the device code expired.
    ExpiredToken,
    /// RFC 7009: the server cannot revoke this token type.
    UnsupportedTokenType,
    /// RFC 6750: the access token is missing a required scope (userinfo).
    InsufficientScope,
    /// RFC 6750: the access token is invalid (userinfo).
    InvalidToken,
    /// RFC 8707 §2, RFC 8693 §2.2.2: the requested target (`resource`, `audience`) is
    /// missing, malformed, unknown or not one the client may obtain a token for.
    InvalidTarget,
    /// RFC 9449 §5, §7.1: the DPoP proof is missing where required, invalid, replayed, or by
    /// another key than the one the grant or code is bound to.
    InvalidDpopProof,
    /// RFC 9449 §8, §9: the proof must carry the server's current nonce (sent in `DPoP-Nonce`).
    UseDpopNonce,
}

impl ErrorCode {
    /// The registered spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::ConsentRequired => "consent_required",
            ErrorCode::InteractionRequired => "interaction_required",
            ErrorCode::RequestNotSupported => "request_not_supported",
            ErrorCode::RequestUriNotSupported => "request_uri_not_supported",
            ErrorCode::InvalidRequestUri => "invalid_request_uri",
            ErrorCode::AuthorizationPending => "authorization_pending",
            ErrorCode::SlowDown => "slow_down",
            ErrorCode::ExpiredToken => "expired_token",
            ErrorCode::UnsupportedTokenType => "unsupported_token_type",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            ErrorCode::UseDpopNonce => "use_dpop_nonce",
        }
    }

    /// The HTTP status the token-style endpoints answer with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidClient | ErrorCode::InvalidToken => 401,
            ErrorCode::InsufficientScope => 403,
            ErrorCode::ServerError => 500,
            ErrorCode::TemporarilyUnavailable => 503,
            _ => 400,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OAuth error: a registered code and a human description (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    /// The `error` value.
    pub code: ErrorCode,
    /// The `error_description` value (ASCII, no secrets).
    pub description: String,
}

impl OAuthError {
    /// An error with this code and description.
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }

    /// `invalid_request`.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    /// `invalid_client`.
    pub fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidClient, description)
    }

    /// `invalid_grant`.
    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidGrant, description)
    }

    /// `invalid_dpop_proof`.
    pub fn invalid_dpop_proof(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidDpopProof, description)
    }
}

/// A storage failure: `temporarily_unavailable` when the database cannot serve right now (down,
/// storage full, read-only: [`StoreError::outage`]), `server_error` otherwise. The detail goes
/// to the log, not to the client.
impl From<StoreError> for OAuthError {
    fn from(err: StoreError) -> Self {
        tracing::error!(error = %err, "storage error in an OAuth flow");
        match err {
            _ if err.outage().is_some() => Self::new(
                ErrorCode::TemporarilyUnavailable,
                "the authorization server is temporarily unavailable",
            ),
            _ => Self::new(ErrorCode::ServerError, "internal error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6749 has one code for "try later": every database outage gets it, a defect does not.
    #[test]
    fn store_outages_are_temporarily_unavailable() {
        for err in [
            StoreError::Unavailable("down".into()),
            StoreError::StorageFull("disk".into()),
            StoreError::ReadOnly("ro".into()),
        ] {
            assert_eq!(
                OAuthError::from(err).code,
                ErrorCode::TemporarilyUnavailable
            );
        }
        let defect = OAuthError::from(StoreError::Database("boom".into()));
        assert_eq!(defect.code, ErrorCode::ServerError);
    }
}
