//! The JWT claim sets trustgate signs besides access tokens (those are
//! [`trustgate_tokens::AccessTokenClaims`], shared with verifiers): ID tokens (OIDC Core §2) and
//! logout tokens (OIDC Back-Channel Logout §2.4).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The `events` member of a logout token.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// An ID token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    /// Issuer.
    pub iss: String,
    /// The user.
    pub sub: String,
    /// The client.
    pub aud: String,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// When the user authenticated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// The authentication request's nonce.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Authentication context class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// Authentication methods (RFC 8176).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    /// Authorized party: the client.
    pub azp: String,
    /// Left half of the access token's hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    /// The login session (for logout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// A logout token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogoutTokenClaims {
    /// Issuer.
    pub iss: String,
    /// The client notified.
    pub aud: String,
    /// Issued at.
    pub iat: i64,
    /// Expiry: two minutes.
    pub exp: i64,
    /// Unique id, so the client can refuse replays.
    pub jti: String,
    /// The user.
    pub sub: String,
    /// The session that ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// `{ BACKCHANNEL_LOGOUT_EVENT: {} }`.
    pub events: Map<String, Value>,
}
