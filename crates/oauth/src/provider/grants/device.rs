//! The device code grant: polling the token endpoint (RFC 8628 §3.4, §3.5).

use trustgate_core::TokenDigest;
use trustgate_core::id::new_ulid;
use trustgate_store_api::{DevicePoll, Grant};

use crate::clients::Client;
use crate::provider::detail::{AuthFacts, StoredDetail};
use crate::provider::{DEVICE_CODE_GRANT, Provider, RequestContext, TokenResponse};
use crate::request::Params;
use crate::scope::Scope;
use crate::{ErrorCode, OAuthError};

impl Provider {
    pub(in crate::provider) async fn device_token(
        &self,
        client: &Client,
        params: &Params,
        ctx: &RequestContext,
    ) -> Result<TokenResponse, OAuthError> {
        let device_code = params
            .get("device_code")
            .ok_or_else(|| OAuthError::invalid_request("device_code is required"))?;
        let now = self.now();
        let poll = self
            .inner
            .store
            .poll_device_authorization(&TokenDigest::of(device_code), now, &|authorization| {
                crate::device::poll_step(authorization, &client.id, now)
            })
            .await?;
        let authorization = match poll {
            DevicePoll::Approved(authorization) => authorization,
            DevicePoll::Pending => {
                return Err(OAuthError::new(
                    ErrorCode::AuthorizationPending,
                    "the user has not finished yet",
                ));
            }
            DevicePoll::SlowDown => {
                return Err(OAuthError::new(
                    ErrorCode::SlowDown,
                    "polling too fast; the interval grew by 5 seconds",
                ));
            }
            DevicePoll::Denied => {
                return Err(OAuthError::new(
                    ErrorCode::AccessDenied,
                    "the user denied the request",
                ));
            }
            DevicePoll::Expired => {
                return Err(OAuthError::new(
                    ErrorCode::ExpiredToken,
                    "the device code expired",
                ));
            }
            DevicePoll::Unknown | DevicePoll::AlreadyRedeemed => {
                return Err(OAuthError::invalid_grant("the device code is invalid"));
            }
        };
        let user_id = authorization
            .user_id
            .clone()
            .ok_or_else(|| OAuthError::invalid_grant("the device code is invalid"))?;
        let scope = Scope::parse(&authorization.scope)?;
        let grant = Grant {
            id: new_ulid(now),
            client_id: client.id.clone(),
            user_id: Some(user_id),
            session_id: authorization.session_id.clone(),
            scope: scope.to_string(),
            created_at: now,
            expires_at: now + client.refresh_token_ttl,
            revoked_at: None,
            detail: AuthFacts::from_detail(&authorization.detail)?.to_detail()?,
        };
        let response = self
            .issue_for_grant(client, &grant, &scope, None, true)
            .await?;
        self.audit_issuance(ctx, client, &grant, DEVICE_CODE_GRANT);
        Ok(response)
    }
}
