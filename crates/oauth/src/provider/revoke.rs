//! Token revocation (RFC 7009).

use serde_json::json;
use time::OffsetDateTime;
use trustgate_audit::{AuditKind, Outcome};
use trustgate_core::TokenDigest;

use super::verify::looks_like_jwt;
use super::{Provider, RequestContext, client_detail};
use crate::clients::PresentedCredentials;
use crate::request::Params;
use crate::{ErrorCode, OAuthError};

impl Provider {
    /// `/oauth2/revoke` (RFC 7009). An unknown or invalid token is not an error (§2.2); a token
    /// of another client is refused. Revoking a refresh token revokes its grant, and with it the
    /// access tokens that name the grant.
    pub async fn revoke(
        &self,
        params: &Params,
        credentials: &PresentedCredentials,
        ctx: &RequestContext,
    ) -> Result<(), OAuthError> {
        let client = self
            .authenticate(credentials, &self.inner.endpoints.revocation)
            .await?;
        let token = params
            .get("token")
            .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
        let store = &self.inner.store;
        let now = self.now();
        let refused = || {
            OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "the token was not issued to this client",
            )
        };
        if looks_like_jwt(token) {
            let Some(claims) = self.verify_access_token(token, &[]) else {
                return Ok(());
            };
            if claims.client_id != client.id {
                return Err(refused());
            }
            let expires_at = OffsetDateTime::from_unix_timestamp(claims.exp)
                .map_err(|_| OAuthError::invalid_request("token expiry is out of range"))?;
            store.revoke_access_token(&claims.jti, expires_at).await?;
            let mut detail = client_detail(&client.id);
            detail.insert("jti".into(), json!(claims.jti));
            self.audit(
                ctx,
                AuditKind::OAuthTokenRevoked,
                Outcome::Success,
                None,
                detail,
            )
            .await?;
            return Ok(());
        }
        let Some((_, grant)) = store.find_refresh_token(&TokenDigest::of(token)).await? else {
            return Ok(());
        };
        if grant.client_id != client.id {
            return Err(refused());
        }
        store.revoke_grant(&grant.id, now).await?;
        let mut detail = client_detail(&client.id);
        detail.insert("grant_id".into(), json!(grant.id));
        self.audit(
            ctx,
            AuditKind::OAuthGrantRevoked,
            Outcome::Success,
            grant.user_id.as_deref(),
            detail,
        )
        .await?;
        Ok(())
    }
}
