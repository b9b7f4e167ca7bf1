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
    /// The acting party of a delegated token (RFC 8693 §4.1): who holds and uses it on behalf
    /// of `sub`, with the earlier actors of the chain nested inside. Only the outermost actor
    /// is the current one; nested actors are informational (§4.1), never an access decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// Who may become the actor of a delegated token for `sub` (RFC 8693 §4.4); checked by the
    /// token exchange against the party that presents the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub may_act: Option<Actor>,
    /// The API key the token was obtained with (by token exchange, the key as the subject
    /// token): `sub` is then the key owner's subject (`service:<id>` or `user:<id>`), as
    /// introspection names it, and the token carries no `auth_time`. The key id is not a
    /// secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The key the token is bound to (RFC 7800 `cnf`): a DPoP key (RFC 9449 `jkt`) or a client
    /// certificate (RFC 8705 `x5t#S256`). A bound token is refused when presented as a plain
    /// bearer token or with another key ([`crate::dpop::check_binding`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// A token's confirmation claim (RFC 7800 §3.1): what the presenter must prove to hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// The JWK SHA-256 thumbprint of the DPoP key (RFC 9449 §6.1), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
    /// The SHA-256 thumbprint of the client certificate's DER (RFC 8705 §3.1), base64url.
    #[serde(rename = "x5t#S256", default, skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<String>,
}

impl Confirmation {
    /// A binding to a DPoP key.
    pub fn dpop(jkt: impl Into<String>) -> Self {
        Self {
            jkt: Some(jkt.into()),
            x5t_s256: None,
        }
    }

    /// The `x5t#S256` of a certificate (RFC 8705 §3.1): base64url of the SHA-256 of its DER.
    pub fn certificate_thumbprint(der: &[u8]) -> String {
        use base64::Engine as _;
        use sha2::Digest as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(der))
    }
}

/// An actor (RFC 8693 §4.1 `act`, §4.4 `may_act`): a party identified by `sub` (and the client
/// it acts through), with the actor before it, if any, in `act`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The acting party.
    pub sub: String,
    /// The client it acts through (RFC 8693 §4.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The previous actor in the delegation chain (never for `may_act`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    /// How many actors the chain holds, this one included.
    pub fn depth(&self) -> usize {
        let mut depth = 1;
        let mut next = self.act.as_deref();
        while let Some(actor) = next {
            depth += 1;
            next = actor.act.as_deref();
        }
        depth
    }

    /// Whether `self` (a `may_act` statement) names `actor`: the same `sub`, and the same
    /// `client_id` when the statement names one (RFC 8693 §4.4).
    pub fn admits(&self, actor: &Actor) -> bool {
        self.sub == actor.sub
            && self
                .client_id
                .as_ref()
                .is_none_or(|c| actor.client_id.as_ref() == Some(c))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn act_is_the_nested_chain_of_rfc_8693() {
        // RFC 8693 §4.1's example, with our client_id member.
        let chain: Actor = serde_json::from_value(json!({
            "sub": "https://service16.example.com",
            "act": { "sub": "https://service77.example.com", "client_id": "tgc_77" }
        }))
        .expect("reads");
        assert_eq!(chain.depth(), 2);
        assert_eq!(chain.client_id, None);
        let inner = chain.act.as_deref().expect("nested");
        assert_eq!(inner.sub, "https://service77.example.com");
        assert_eq!(inner.client_id.as_deref(), Some("tgc_77"));
        assert_eq!(
            serde_json::to_value(&chain).expect("writes"),
            json!({
                "sub": "https://service16.example.com",
                "act": { "sub": "https://service77.example.com", "client_id": "tgc_77" }
            })
        );
        assert!(serde_json::from_value::<Actor>(json!({ "client_id": "x" })).is_err());
        assert!(serde_json::from_value::<Actor>(json!({ "sub": 7 })).is_err());
    }

    #[test]
    fn may_act_admits_only_the_party_it_names() {
        let actor = |sub: &str, client: Option<&str>| Actor {
            sub: sub.into(),
            client_id: client.map(str::to_owned),
            act: None,
        };
        let by_sub = actor("svc", None);
        assert!(by_sub.admits(&actor("svc", Some("tgc_a"))));
        assert!(!by_sub.admits(&actor("other", Some("tgc_a"))));
        let by_client = actor("svc", Some("tgc_a"));
        assert!(by_client.admits(&actor("svc", Some("tgc_a"))));
        assert!(!by_client.admits(&actor("svc", Some("tgc_b"))));
        assert!(!by_client.admits(&actor("svc", None)));
    }

    #[test]
    fn tokens_without_act_read_and_write_as_before() {
        let plain = json!({
            "iss": "https://id.example", "sub": "u", "aud": "https://id.example",
            "exp": 2, "iat": 1, "jti": "j", "client_id": "c"
        });
        let claims: AccessTokenClaims = serde_json::from_value(plain.clone()).expect("reads");
        assert_eq!(claims.act, None);
        assert_eq!(claims.may_act, None);
        assert_eq!(serde_json::to_value(&claims).expect("writes"), plain);
    }
}
