//! Who is calling: the [`Principal`] the layer puts into the request's extensions, and its
//! extractor for handlers.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;
use serde::Serialize;
use trustgate_tokens::{Actor, Confirmation};

/// The kind of party behind a principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A human: an access token issued for a user, or a browser session.
    User,
    /// A machine acting for itself: a `client_credentials` access token (its `sub` is the
    /// client).
    Service,
    /// An API key or personal access token; [`Principal::id`] is its owner's subject
    /// (`service:<id>` or `user:<id>`), as introspection answers it. Also an access token
    /// obtained by exchanging a key (RFC 8693; it names the key in `key_id`): the machine
    /// credential behind it is the key, and its `sub` is the owner's subject.
    ApiKey,
}

impl PrincipalKind {
    /// The kind an access token describes: a token naming the API key it was exchanged from
    /// (`key_id`) is the key's (its `sub` is the key owner's subject, `service:<id>` or
    /// `user:<id>`); a token whose `sub` is its own client and that carries no `auth_time` is
    /// a `client_credentials` token, a service acting for itself; any other is a user's.
    pub fn of_access_token(
        sub: &str,
        client_id: Option<&str>,
        auth_time: Option<i64>,
        key_id: Option<&str>,
    ) -> Self {
        if key_id.is_some() {
            PrincipalKind::ApiKey
        } else if auth_time.is_none() && client_id == Some(sub) {
            PrincipalKind::Service
        } else {
            PrincipalKind::User
        }
    }

    /// The stable spelling (`user`, `service`, `api_key`).
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::Service => "service",
            PrincipalKind::ApiKey => "api_key",
        }
    }
}

/// How the principal was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// `Authorization: Bearer <JWT>`, verified locally against the issuer's JWKS.
    Jwt,
    /// A bearer token or API key that is not a JWT, answered by RFC 7662 introspection.
    Introspection,
    /// A session cookie, resolved by a [`SessionResolver`](crate::SessionResolver).
    Session,
}

impl AuthMethod {
    /// The stable spelling (`jwt`, `introspection`, `session`).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Jwt => "jwt",
            AuthMethod::Introspection => "introspection",
            AuthMethod::Session => "session",
        }
    }
}

/// An authenticated caller, as the layer hands it to the handler (in the request's extensions;
/// take it with the extractor: `async fn handler(principal: Principal)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// The subject (`sub`): a user id, a client id, or an API key owner's `type:id`.
    pub id: String,
    /// What kind of party this is.
    pub kind: PrincipalKind,
    /// The tenant, when the credential names one (trustgate's tokens carry none today).
    pub tenant: Option<String>,
    /// The granted scopes (empty for a session, which is the user in person, not a delegation).
    pub scopes: Vec<String>,
    /// Authentication methods (RFC 8176).
    pub amr: Vec<String>,
    /// When the user last authenticated actively (Unix seconds).
    pub auth_time: Option<i64>,
    /// Authentication context class.
    pub acr: Option<String>,
    /// The OAuth client the credential was issued to.
    pub client_id: Option<String>,
    /// The delegation chain of a token-exchange token (RFC 8693 `act`); only the outermost
    /// actor is current, the nested ones are informational.
    pub act: Option<Actor>,
    /// The API key behind the credential (not secret): the key itself, or the key an access
    /// token was exchanged from. Several keys of one owner share the subject, never the id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The key the credential is bound to (`cnf`: a DPoP key or a client certificate). The
    /// layer has checked the request proved it; handlers may rely on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// How it was authenticated.
    pub method: AuthMethod,
}

impl Principal {
    /// The subject the PDP is asked about: `user:<id>`, `service:<id>`, or an API key owner's
    /// subject as it stands.
    pub fn subject(&self) -> String {
        match self.kind {
            PrincipalKind::User | PrincipalKind::Service => {
                format!("{}:{}", self.kind.as_str(), self.id)
            }
            PrincipalKind::ApiKey => self.id.clone(),
        }
    }

    /// Whether every scope of `required` was granted.
    pub fn has_scopes(&self, required: &[String]) -> bool {
        required.iter().all(|s| self.scopes.contains(s))
    }
}

/// The scopes of a space-separated `scope` value (RFC 6749 §3.3); none when absent.
pub(crate) fn split_scope(scope: Option<&str>) -> Vec<String> {
    scope
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The extractor's refusal: the handler asked for a principal on a route the layer does not
/// authenticate (a public route, or a router without the layer). A wiring mistake, answered
/// 500 so that it cannot pass for an anonymous success.
#[derive(Debug, Clone, Copy)]
pub struct MissingPrincipal;

impl IntoResponse for MissingPrincipal {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "code": "principal_missing",
            "message": "the handler needs an authenticated principal but the route is not protected by the pep layer",
        });
        (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = MissingPrincipal;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or(MissingPrincipal)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Principal>().cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(kind: PrincipalKind, id: &str) -> Principal {
        Principal {
            id: id.into(),
            kind,
            tenant: None,
            scopes: vec!["read".into(), "write".into()],
            amr: vec![],
            auth_time: None,
            acr: None,
            client_id: None,
            act: None,
            key_id: None,
            cnf: None,
            method: AuthMethod::Jwt,
        }
    }

    #[test]
    fn an_access_token_is_classified_by_who_holds_it() {
        let kind = PrincipalKind::of_access_token;
        assert_eq!(
            kind("tgc_a", Some("tgc_a"), None, None),
            PrincipalKind::Service
        );
        assert_eq!(
            kind("anne", Some("tgc_a"), Some(1), None),
            PrincipalKind::User
        );
        assert_eq!(
            kind("tgc_a", Some("tgc_a"), Some(1), None),
            PrincipalKind::User
        );
        // Exchanged from an API key: the key's, whoever the acting client is.
        assert_eq!(
            kind("service:ci", Some("tgc_gw"), None, Some("01KEY")),
            PrincipalKind::ApiKey
        );
        assert_eq!(
            kind("user:anne", Some("tgc_gw"), None, Some("01PAT")),
            PrincipalKind::ApiKey
        );
    }

    #[test]
    fn the_pdp_subject_is_typed_by_kind() {
        assert_eq!(
            principal(PrincipalKind::User, "anne").subject(),
            "user:anne"
        );
        assert_eq!(
            principal(PrincipalKind::Service, "tgc_1").subject(),
            "service:tgc_1"
        );
        assert_eq!(
            principal(PrincipalKind::ApiKey, "service:ci").subject(),
            "service:ci"
        );
    }

    #[test]
    fn scopes_must_all_be_granted() {
        let p = principal(PrincipalKind::User, "anne");
        assert!(p.has_scopes(&[]));
        assert!(p.has_scopes(&["read".into()]));
        assert!(!p.has_scopes(&["read".into(), "admin".into()]));
    }
}
