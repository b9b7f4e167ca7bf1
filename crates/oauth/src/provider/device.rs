//! The device authorization endpoint and the user's decision on the `/device` page (RFC 8628
//! §3.1 to §3.3); the polling is the token endpoint's (`grants/device.rs`).

use serde::Serialize;
use serde_json::Map;
use trustgate_audit::{AuditKind, Outcome};
use trustgate_core::TokenDigest;
use trustgate_core::secret::generate_token;
use trustgate_store_api::{DeviceAuthorization, DeviceStatus, StoreError};

use super::detail::{AuthFacts, StoredDetail};
use super::{EndUser, Provider, RequestContext};
use crate::clients::{GrantType, PresentedCredentials};
use crate::device::{display_user_code, new_user_code, normalize_user_code};
use crate::request::Params;
use crate::scope::Scope;
use crate::{ErrorCode, OAuthError};

/// A device authorization response (RFC 8628 §3.2).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceAuthorizationResponse {
    /// The secret the device polls with.
    pub device_code: String,
    /// What the user types (display form).
    pub user_code: String,
    /// Where the user goes.
    pub verification_uri: String,
    /// The same with the code filled in.
    pub verification_uri_complete: String,
    /// Seconds until the codes expire.
    pub expires_in: i64,
    /// Minimum seconds between polls.
    pub interval: i64,
}

/// What the `/device` page shows before the user decides.
#[derive(Debug, Clone, PartialEq)]
pub struct DevicePrompt {
    /// Normalized user code.
    pub user_code: String,
    /// The client's display name.
    pub client_name: String,
    /// Requested scopes.
    pub scopes: Vec<String>,
}

impl Provider {
    /// `/oauth2/device_authorization` (RFC 8628 §3.1).
    pub async fn device_authorize(
        &self,
        params: &Params,
        credentials: &PresentedCredentials,
    ) -> Result<DeviceAuthorizationResponse, OAuthError> {
        let client = self
            .authenticate(credentials, &self.inner.endpoints.device_authorization)
            .await?;
        if !client.allows_grant(GrantType::DeviceCode) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "the client is not registered for the device authorization grant",
            ));
        }
        let scope = Scope::parse(params.get("scope").unwrap_or(""))?;
        if let Some(token) = scope.iter().find(|t| !client.allows_scope(t)) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                format!("scope {token} is not allowed for this client"),
            ));
        }
        let now = self.now();
        let settings = &self.inner.settings;
        let device_code = generate_token("");
        for _ in 0..5 {
            let user_code = new_user_code();
            let authorization = DeviceAuthorization {
                user_code: user_code.clone(),
                client_id: client.id.clone(),
                scope: scope.to_string(),
                created_at: now,
                expires_at: now + settings.device_code_ttl,
                interval_secs: settings.device_interval_secs,
                last_polled_at: None,
                status: DeviceStatus::Pending,
                user_id: None,
                session_id: None,
                detail: Map::new(),
            };
            match self
                .inner
                .store
                .put_device_authorization(&TokenDigest::of(device_code.expose()), &authorization)
                .await
            {
                Ok(()) => {
                    let shown = display_user_code(&user_code);
                    let verification_uri = self.inner.endpoints.device_verification.clone();
                    return Ok(DeviceAuthorizationResponse {
                        device_code: device_code.expose().to_owned(),
                        verification_uri_complete: format!("{verification_uri}?user_code={shown}"),
                        user_code: shown,
                        verification_uri,
                        expires_in: settings.device_code_ttl.whole_seconds(),
                        interval: settings.device_interval_secs,
                    });
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "could not allocate a user code; try again",
        ))
    }

    /// What the `/device` page shows for a typed code; `None` if no pending authorization has it.
    pub async fn device_prompt(&self, typed: &str) -> Result<Option<DevicePrompt>, OAuthError> {
        let Some(user_code) = normalize_user_code(typed) else {
            return Ok(None);
        };
        let Some(authorization) = self
            .inner
            .store
            .find_pending_device_authorization(&user_code, self.now())
            .await?
        else {
            return Ok(None);
        };
        let Some(client) = self.registered_client(&authorization.client_id).await? else {
            return Ok(None);
        };
        Ok(Some(DevicePrompt {
            user_code,
            client_name: client.name,
            scopes: authorization
                .scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        }))
    }

    /// The user's decision on the `/device` page; `false` if the code is no longer pending.
    pub async fn device_decide(
        &self,
        typed: &str,
        approve: bool,
        user: &EndUser,
        ctx: &RequestContext,
    ) -> Result<bool, OAuthError> {
        let Some(user_code) = normalize_user_code(typed) else {
            return Ok(false);
        };
        let detail = AuthFacts::of_user(user).to_detail()?;
        let decided = self
            .inner
            .store
            .decide_device_authorization(
                &user_code,
                approve,
                &user.user_id,
                Some(&user.session_id),
                &detail,
                self.now(),
            )
            .await?;
        if decided {
            self.audit(
                ctx,
                if approve {
                    AuditKind::OAuthDeviceApproved
                } else {
                    AuditKind::OAuthDeviceDenied
                },
                if approve {
                    Outcome::Success
                } else {
                    Outcome::Denied
                },
                Some(&user.user_id),
                Map::new(),
            )
            .await?;
        }
        Ok(decided)
    }
}
