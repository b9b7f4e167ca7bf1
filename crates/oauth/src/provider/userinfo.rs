//! The UserInfo endpoint (OIDC Core §5.3).

use serde_json::{Map, Value, json};
use trustgate_tokens::dpop::{Presentation, check_binding};

use super::{DpopProof, Provider};
use crate::scope::Scope;
use crate::{ErrorCode, OAuthError};

/// How an access token was presented to a protected resource of this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPresentation<'a> {
    /// `Authorization: Bearer` (or the form field).
    Bearer,
    /// `Authorization: DPoP` with the request's proof (RFC 9449 §7.1).
    Dpop {
        /// The `DPoP` header.
        proof: DpopProof<'a>,
        /// The request's method.
        method: &'a str,
    },
}

impl Provider {
    /// `/oidc/userinfo` (OIDC Core §5.3): the claims the token's scope allows. A DPoP-bound
    /// token is honoured only with a proof by its key for this request (its `jti` spent, `ath`
    /// the token's hash); an unbound one only as a bearer token.
    pub async fn userinfo(
        &self,
        access_token: &str,
        presentation: TokenPresentation<'_>,
    ) -> Result<Value, OAuthError> {
        self.userinfo_over(access_token, presentation, None).await
    }

    /// [`userinfo`](Self::userinfo) for a request that came over mutual TLS with the client
    /// certificate whose `x5t#S256` is `certificate`: a token bound to a certificate
    /// (RFC 8705 §3) is honoured only over a connection with that certificate.
    pub async fn userinfo_over(
        &self,
        access_token: &str,
        presentation: TokenPresentation<'_>,
        certificate: Option<&str>,
    ) -> Result<Value, OAuthError> {
        let invalid = || OAuthError::new(ErrorCode::InvalidToken, "the access token is invalid");
        let claims = self
            .live_access_token(access_token, &[self.issuer()])
            .await?
            .ok_or_else(invalid)?;
        if claims.uv.is_none() {
            return Err(invalid());
        }
        let proof = match presentation {
            TokenPresentation::Bearer => None,
            TokenPresentation::Dpop { proof, method } => Some(
                self.verify_dpop(
                    proof,
                    method,
                    &self.endpoints_reached(certificate.is_some()).userinfo,
                    Some(access_token),
                    false,
                )
                .await?,
            ),
        };
        let presented = match &proof {
            Some(proof) => Presentation::Dpop { jkt: &proof.jkt },
            None => Presentation::Bearer,
        };
        check_binding(claims.cnf.as_ref(), presented, certificate)
            .map_err(|e| OAuthError::new(ErrorCode::InvalidToken, e.to_string()))?;
        let scope = Scope::parse(claims.scope.as_deref().unwrap_or(""))?;
        if !scope.is_openid() {
            return Err(OAuthError::new(
                ErrorCode::InsufficientScope,
                "the access token lacks the openid scope",
            ));
        }
        let user = self
            .inner
            .store
            .get_user(&claims.sub)
            .await?
            .ok_or_else(invalid)?;
        let mut body = Map::new();
        body.insert("sub".into(), json!(user.id));
        if scope.contains("profile") {
            body.insert("preferred_username".into(), json!(user.username));
            if let Some(name) = &user.name {
                body.insert("name".into(), json!(name));
            }
            if let Some(locale) = &user.locale {
                body.insert("locale".into(), json!(locale));
            }
            body.insert("updated_at".into(), json!(user.updated_at.unix_timestamp()));
        }
        if scope.contains("email") {
            body.insert("email".into(), json!(user.email));
            body.insert("email_verified".into(), json!(user.email_verified));
        }
        Ok(Value::Object(body))
    }
}
