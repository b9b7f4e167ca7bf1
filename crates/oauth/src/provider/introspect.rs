//! Token introspection (RFC 7662).

use std::future::Future;

use serde_json::{Value, json};
use time::OffsetDateTime;
use trustgate_core::TokenDigest;

use super::Provider;
use super::verify::looks_like_jwt;
use crate::OAuthError;
use crate::clients::PresentedCredentials;
use crate::request::Params;

/// A live API key, as the transport's key service describes it to introspection and to token
/// exchange (a key as the subject token): the one verification of keys both rely on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyIntrospection {
    /// The owner's subject (`service:<id>` or `user:<id>`).
    pub sub: String,
    /// The key's scopes.
    pub scopes: Vec<String>,
    /// The key id (not secret).
    pub key_id: String,
    /// When the key expires, if it does.
    pub expires_at: Option<OffsetDateTime>,
}

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
        self.introspect_with(params, credentials, |_| async { Ok(None) })
            .await
    }

    /// [`introspect`](Self::introspect), with API keys: a token that is neither one of our
    /// JWTs nor a refresh token is handed to `api_keys` (the transport's key service, which
    /// this crate does not know), and a live key is described as `token_type` `api_key`,
    /// `sub` the owner's subject (`service:<id>` or `user:<id>`), `scope` the key's scopes,
    /// `key_id`, and `exp` when the key expires. An access token obtained by exchanging a key
    /// is described with its `key_id` too.
    /// RFC 7662 §4: only a client registered as a resource server (with at least one
    /// `resource_audiences` entry) learns about API keys; to any other caller they are
    /// `{"active": false}` and `api_keys` is not called.
    pub async fn introspect_with<F, Fut>(
        &self,
        params: &Params,
        credentials: &PresentedCredentials,
        api_keys: F,
    ) -> Result<Value, OAuthError>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<Option<ApiKeyIntrospection>, OAuthError>>,
    {
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
            // RFC 9449 §6.2, RFC 8705 §3.2: the binding, for the resource server to check.
            let bound_to_dpop = claims.cnf.as_ref().is_some_and(|c| c.jkt.is_some());
            let mut body = json!({
                "active": true,
                "token_type": if bound_to_dpop { "DPoP" } else { "Bearer" },
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
            if let (Some(key_id), Some(obj)) = (claims.key_id, body.as_object_mut()) {
                obj.insert("key_id".into(), json!(key_id));
            }
            if let (Some(cnf), Some(obj)) = (claims.cnf, body.as_object_mut()) {
                obj.insert("cnf".into(), json!(cnf));
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
            if caller.resource_audiences.is_empty() {
                return Ok(inactive);
            }
            let Some(key) = api_keys(token.to_owned()).await? else {
                return Ok(inactive);
            };
            let mut body = json!({
                "active": true,
                "token_type": "api_key",
                "iss": self.issuer(),
                "sub": key.sub,
                "key_id": key.key_id,
            });
            if let (false, Some(obj)) = (key.scopes.is_empty(), body.as_object_mut()) {
                obj.insert("scope".into(), json!(key.scopes.join(" ")));
            }
            if let (Some(exp), Some(obj)) = (key.expires_at, body.as_object_mut()) {
                obj.insert("exp".into(), json!(exp.unix_timestamp()));
            }
            return Ok(body);
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
