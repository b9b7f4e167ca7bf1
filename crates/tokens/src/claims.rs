//! RFC 9068 access token claims, shared by the issuer, introspection and verifiers.

use serde::{Deserialize, Serialize};

/// `aud`: one string or an array (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `audience` is among them.
    pub fn contains(&self, audience: &str) -> bool {
        self.iter().any(|a| a == audience)
    }

    /// Each audience.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let slice: &[String] = match self {
            Audience::One(one) => std::slice::from_ref(one),
            Audience::Many(many) => many,
        };
        slice.iter().map(String::as_str)
    }
}

/// A JWT access token (RFC 9068 §2.2), with trustgate's revocation claims.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// Issuer.
    pub iss: String,
    /// The user, or the client for a client acting on its own behalf.
    pub sub: String,
    /// The resource servers (and the issuer, for userinfo).
    pub aud: Audience,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Unique id (revocation list key).
    pub jti: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// Granted scope, space separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// When the user authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// Authentication context class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// Authentication methods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    /// The user's token version at issuance: a verifier that checks it against the current one
    /// refuses tokens issued before the user was disabled or logged out everywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uv: Option<i64>,
    /// The grant the token came from (revoking the grant revokes the token at introspection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    /// The login session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}
