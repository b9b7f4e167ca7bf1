//! Token introspection (RFC 7662).

use serde_json::{Value, json};
use trustgate_core::TokenDigest;

use super::Provider;
use super::verify::looks_like_jwt;
use crate::OAuthError;
use crate::clients::PresentedCredentials;
use crate::request::Params;

impl Provider {
    /// `/oauth2/introspect` (RFC 7662). Confidential clients only. RFC 7662 §4: a caller learns
    /// about an access token only if it is a resource server the token is for (`aud` contains
    /// its client id or one of its registered `resource_audiences`), or the token was issued to
    /// it for this issuer (its `client_id`, and `aud` contains the issuer, as every token
    /// trustgate issues does); the issuer's audience alone entitles no other client. A delegated
    /// token (token exchange, RFC 8693) is described with its `act` chain. Refresh
    /// tokens only for the client they were issued to. Anything else is `{"active": false}`,
    /// exactly like an unknown token.
    pub async fn introspect(
        &self,
        params: &Params,
        credentials: &PresentedCredentials,
    ) -> Result<Value, OAuthError> {
        let caller = self
            .authenticate(credentials, &self.inner.endpoints.introspection)
            .await?;
        if caller.is_public() {
            return Err(OAuthError::invalid_client(
                "introspection requires client authentication",
            ));
        }
        let token = params
            .get("token")
            .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
        let inactive = json!({ "active": false });
        if looks_like_jwt(token) {
            let Some(claims) = self.live_access_token(token, &[]).await? else {
                return Ok(inactive);
            };
            let own = claims.client_id == caller.id && claims.aud.contains(self.issuer());
            if !own && !claims.aud.iter().any(|a| caller.serves_audience(a)) {
                return Ok(inactive);
            }
            let mut body = json!({
                "active": true,
                "token_type": "Bearer",
                "iss": claims.iss,
                "sub": claims.sub,
                "aud": claims.aud,
                "exp": claims.exp,
                "iat": claims.iat,
                "jti": claims.jti,
                "client_id": claims.client_id,
            });
            if let (Some(scope), Some(obj)) = (claims.scope, body.as_object_mut()) {
                obj.insert("scope".into(), json!(scope));
            }
            if let (Some(nbf), Some(obj)) = (claims.nbf, body.as_object_mut()) {
                obj.insert("nbf".into(), json!(nbf));
            }
            if let (Some(act), Some(obj)) = (claims.act, body.as_object_mut()) {
                obj.insert("act".into(), json!(act));
            }
            return Ok(body);
        }
        let now = self.now();
        let Some((refresh, grant)) = self
            .inner
            .store
            .find_refresh_token(&TokenDigest::of(token))
            .await?
        else {
            return Ok(inactive);
        };
        let live = refresh.rotated_at.is_none()
            && refresh.expires_at > now
            && grant.expires_at > now
            && grant.revoked_at.is_none()
            && grant.client_id == caller.id;
        if !live {
            return Ok(inactive);
        }
        Ok(json!({
            "active": true,
            "token_type": "refresh_token",
            "iss": self.issuer(),
            "sub": grant.user_id.clone().unwrap_or_else(|| grant.client_id.clone()),
            "client_id": grant.client_id,
            "scope": grant.scope,
            "exp": refresh.expires_at.min(grant.expires_at).unix_timestamp(),
            "iat": refresh.created_at.unix_timestamp(),
        }))
    }
}
