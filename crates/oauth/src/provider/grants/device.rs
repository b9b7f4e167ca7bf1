//! The device code grant: polling the token endpoint (RFC 8628 §3.4, §3.5).

use trustgate_core::TokenDigest;
use trustgate_core::id::new_ulid;
use trustgate_store_api::DevicePoll;

use crate::device::SLOW_DOWN_SECS;
use crate::provider::detail::{AuthFacts, StoredDetail};
use crate::provider::token::{NewGrant, TokenRequest};
use crate::provider::{Provider, TokenResponse};
use crate::scope::Scope;
use crate::{ErrorCode, OAuthError};

impl Provider {
    /// `urn:ietf:params:oauth:grant-type:device_code`: one poll under
    /// [`crate::device::poll_step`]; an approval is redeemed once and becomes a grant.
    pub(in crate::provider) async fn device_token(
        &self,
        req: &TokenRequest<'_>,
    ) -> Result<TokenResponse, OAuthError> {
        let (client, params) = (&req.client, req.params);
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
            refused => return Err(refusal(&refused)),
        };
        let user_id = authorization
            .user_id
            .clone()
            .ok_or_else(|| OAuthError::invalid_grant("the device code is invalid"))?;
        let scope = Scope::parse(&authorization.scope)?;
        self.issue_new_grant(
            req,
            NewGrant {
                id: new_ulid(now),
                user_id,
                session_id: authorization.session_id.clone(),
                scope,
                auth: AuthFacts::from_detail(&authorization.detail)?,
                nonce: None,
            },
        )
        .await
    }
}

/// The answer to a poll that did not redeem an approval (RFC 8628 §3.5).
fn refusal(poll: &DevicePoll) -> OAuthError {
    match poll {
        DevicePoll::Pending => OAuthError::new(
            ErrorCode::AuthorizationPending,
            "the user has not finished yet",
        ),
        DevicePoll::SlowDown => OAuthError::new(
            ErrorCode::SlowDown,
            format!("polling too fast; the interval grew by {SLOW_DOWN_SECS} seconds"),
        ),
        DevicePoll::Denied => {
            OAuthError::new(ErrorCode::AccessDenied, "the user denied the request")
        }
        DevicePoll::Expired => OAuthError::new(ErrorCode::ExpiredToken, "the device code expired"),
        DevicePoll::Unknown | DevicePoll::AlreadyRedeemed | DevicePoll::Approved(_) => {
            OAuthError::invalid_grant("the device code is invalid")
        }
    }
}
