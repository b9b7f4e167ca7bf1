//! What the provider keeps in the store's opaque `detail` objects, as typed records written and
//! read only here: an authorization code's [`CodeDetail`], a grant's [`GrantDetail`], and the
//! [`AuthFacts`] a grant (and a device approval, which becomes a grant) carries into its tokens.
//!
//! The JSON field names are the stored format: codes and grants in existing databases must still
//! read, so a field is never renamed, and a new one must be optional.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use trustgate_store_api::StoreError;

use super::EndUser;
use crate::OAuthError;

/// How and when the user authenticated, carried from the login session into the grant and from
/// there into every token of the grant. Every field is optional (a grant without them issues
/// tokens without them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct AuthFacts {
    /// When the user last authenticated actively (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// How (RFC 8176).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    /// Authentication context class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
}

impl AuthFacts {
    /// The facts of the signed-in user.
    pub fn of_user(user: &EndUser) -> Self {
        Self {
            auth_time: Some(user.auth_time.unix_timestamp()),
            amr: Some(user.amr.clone()),
            acr: Some(user.acr.clone()),
        }
    }
}

/// What an authorization code remembers of its request until it is redeemed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CodeDetail {
    /// The requested scope, space separated.
    pub scope: String,
    /// The OIDC nonce, for the ID token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The PKCE S256 challenge.
    pub code_challenge: String,
    /// The user's authentication, for the grant.
    #[serde(flatten)]
    pub auth: AuthFacts,
    /// The DPoP key the code is bound to (RFC 9449 §10 `dpop_jkt`): redeemed only with a proof
    /// by that key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
}

/// What a user's grant keeps: the authentication its tokens carry and, for a public client, what
/// its refresh tokens are bound to: the DPoP key it used (RFC 9449 §5) and the client
/// certificate it came with over mutual TLS (RFC 8705 §4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct GrantDetail {
    /// The user's authentication.
    #[serde(flatten)]
    pub auth: AuthFacts,
    /// The thumbprint of the DPoP key every refresh must prove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
    /// The `x5t#S256` of the client certificate every refresh must come with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<String>,
}

/// A record stored as a `detail` JSON object.
pub(crate) trait StoredDetail: Serialize + DeserializeOwned {
    /// As the object to store.
    fn to_detail(&self) -> Result<Map<String, Value>, OAuthError> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(corrupt("a detail record is not a JSON object")),
            Err(err) => Err(corrupt(&format!("a detail record does not encode: {err}"))),
        }
    }

    /// From a stored object; one this version cannot read is a server error (and logged).
    fn from_detail(detail: &Map<String, Value>) -> Result<Self, OAuthError> {
        serde_json::from_value(Value::Object(detail.clone()))
            .map_err(|err| corrupt(&format!("a stored detail object does not decode: {err}")))
    }
}

impl StoredDetail for AuthFacts {}
impl StoredDetail for CodeDetail {}
impl StoredDetail for GrantDetail {}

fn corrupt(what: &str) -> OAuthError {
    StoreError::Corrupt(what.to_owned()).into()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ErrorCode;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    /// A code's detail exactly as the string-keyed provider wrote it.
    fn stored_code() -> Map<String, Value> {
        object(json!({
            "scope": "openid offline_access",
            "nonce": "n-0S6",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "auth_time": 1_700_000_000,
            "amr": ["pwd", "otp"],
            "acr": "2",
        }))
    }

    #[test]
    fn codes_written_before_the_typed_record_still_read() {
        let detail = CodeDetail::from_detail(&stored_code()).expect("reads");
        assert_eq!(detail.scope, "openid offline_access");
        assert_eq!(detail.nonce.as_deref(), Some("n-0S6"));
        assert_eq!(
            detail.code_challenge,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(detail.auth.auth_time, Some(1_700_000_000));
        assert_eq!(detail.auth.amr, Some(vec!["pwd".into(), "otp".into()]));
        assert_eq!(detail.auth.acr.as_deref(), Some("2"));
    }

    #[test]
    fn codes_are_written_in_the_same_format() {
        let detail = CodeDetail::from_detail(&stored_code()).expect("reads");
        assert_eq!(detail.to_detail().expect("writes"), stored_code());
        let bare = CodeDetail {
            scope: "profile".into(),
            nonce: None,
            code_challenge: "c".into(),
            auth: AuthFacts::default(),
            dpop_jkt: None,
        };
        assert_eq!(
            Value::Object(bare.to_detail().expect("writes")),
            json!({ "scope": "profile", "code_challenge": "c" })
        );
    }

    #[test]
    fn a_code_without_its_pkce_challenge_or_scope_does_not_read() {
        for missing in ["code_challenge", "scope"] {
            let mut detail = stored_code();
            detail.remove(missing);
            let err = CodeDetail::from_detail(&detail).expect_err(missing);
            assert_eq!(err.code, ErrorCode::ServerError, "{missing}");
        }
        let mut detail = stored_code();
        detail.insert("amr".into(), json!("pwd"));
        assert!(CodeDetail::from_detail(&detail).is_err());
    }

    #[test]
    fn grant_facts_are_optional_and_extra_fields_ignored() {
        assert_eq!(
            AuthFacts::from_detail(&Map::new()).expect("empty"),
            AuthFacts::default()
        );
        let facts = AuthFacts::from_detail(&object(json!({
            "auth_time": 5, "acr": "1", "something_newer": true
        })))
        .expect("reads");
        assert_eq!(facts.auth_time, Some(5));
        assert_eq!(facts.acr.as_deref(), Some("1"));
        assert_eq!(facts.amr, None);
        assert_eq!(
            Value::Object(facts.to_detail().expect("writes")),
            json!({ "auth_time": 5, "acr": "1" })
        );
    }
}
