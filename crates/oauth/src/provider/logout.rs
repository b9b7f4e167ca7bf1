//! Logout (OIDC RP-Initiated Logout, Back-Channel Logout) and the revocation of a user's access.

use serde_json::{Map, json};
use time::Duration;
use trustgate_audit::{AuditKind, Outcome};
use trustgate_core::id::new_ulid;

use super::{Provider, RequestContext};
use crate::OAuthError;
use crate::claims::{BACKCHANNEL_LOGOUT_EVENT, LogoutTokenClaims};
use crate::request::Params;
use crate::scope::OFFLINE_ACCESS;

/// A validated RP-initiated logout request.
#[derive(Debug, Clone, PartialEq)]
pub struct LogoutRequest {
    /// The client that asked, if known.
    pub client_id: Option<String>,
    /// The user the ID token hint names.
    pub hint_subject: Option<String>,
    /// Where to send the browser afterwards (with `state`), if asked and registered.
    pub redirect: Option<String>,
}

/// A back-channel logout notification to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct BackchannelNotice {
    /// The client.
    pub client_id: String,
    /// Its `backchannel_logout_uri`.
    pub uri: String,
    /// The signed logout token.
    pub logout_token: String,
}

impl Provider {
    /// Validates an RP-initiated logout request (OIDC RP-Initiated Logout §2, §3): the ID token
    /// hint must be ours (expired is fine), `post_logout_redirect_uri` must be registered exactly
    /// for the client the hint or `client_id` names.
    pub async fn logout_request(&self, params: &Params) -> Result<LogoutRequest, OAuthError> {
        let hint = match params.get("id_token_hint") {
            Some(token) => Some(
                self.verify_id_token_hint(token, &[])
                    .ok_or_else(|| OAuthError::invalid_request("id_token_hint is invalid"))?,
            ),
            None => None,
        };
        let client_id = match (params.get("client_id"), &hint) {
            (Some(id), Some(claims)) if claims.aud != id => {
                return Err(OAuthError::invalid_request(
                    "client_id does not match the id_token_hint",
                ));
            }
            (Some(id), _) => Some(id.to_owned()),
            (None, Some(claims)) => Some(claims.aud.clone()),
            (None, None) => None,
        };
        let redirect = match params.get("post_logout_redirect_uri") {
            None => None,
            Some(uri) => {
                let client = match &client_id {
                    Some(id) => self.registered_client(id).await?,
                    None => None,
                };
                let Some(client) = client else {
                    return Err(OAuthError::invalid_request(
                        "post_logout_redirect_uri needs id_token_hint or client_id",
                    ));
                };
                if !client.post_logout_redirect_uri_registered(uri) {
                    return Err(OAuthError::invalid_request(
                        "post_logout_redirect_uri is not registered for this client",
                    ));
                }
                let mut url = url::Url::parse(uri).map_err(|_| {
                    OAuthError::invalid_request("post_logout_redirect_uri is invalid")
                })?;
                if let Some(state) = params.get("state") {
                    url.query_pairs_mut().append_pair("state", state);
                }
                Some(String::from(url))
            }
        };
        Ok(LogoutRequest {
            client_id,
            hint_subject: hint.map(|c| c.sub),
            redirect,
        })
    }

    /// After the login session `session_id` of `user_id` ended: revokes its grants that were
    /// not for offline access and returns the back-channel logout tokens to deliver to every
    /// client with a registered `backchannel_logout_uri` that had a grant from the session.
    pub async fn end_session(
        &self,
        user_id: &str,
        session_id: &str,
        ctx: &RequestContext,
    ) -> Result<Vec<BackchannelNotice>, OAuthError> {
        let store = &self.inner.store;
        let now = self.now();
        let grants = store.session_grants(session_id, now).await?;
        let mut notified = Vec::new();
        let mut notices = Vec::new();
        for grant in grants {
            let offline = grant.scope.split(' ').any(|s| s == OFFLINE_ACCESS);
            if !offline {
                store.revoke_grant(&grant.id, now).await?;
            }
            if notified.contains(&grant.client_id) {
                continue;
            }
            notified.push(grant.client_id.clone());
            // Best effort: a client that cannot be read now is not notified.
            let Ok(Some(client)) = self.registered_client(&grant.client_id).await else {
                continue;
            };
            let Some(uri) = client.backchannel_logout_uri.clone() else {
                continue;
            };
            let mut events = Map::new();
            events.insert(BACKCHANNEL_LOGOUT_EVENT.into(), json!({}));
            let claims = LogoutTokenClaims {
                iss: self.issuer().to_owned(),
                aud: client.id.clone(),
                iat: now.unix_timestamp(),
                exp: (now + Duration::minutes(2)).unix_timestamp(),
                jti: new_ulid(now),
                sub: user_id.to_owned(),
                sid: Some(session_id.to_owned()),
                events,
            };
            let logout_token = self.sign(
                self.inner.settings.id_token_algorithm,
                "logout+jwt",
                &claims,
            )?;
            notices.push(BackchannelNotice {
                client_id: client.id,
                uri,
                logout_token,
            });
        }
        let mut detail = Map::new();
        detail.insert("session_id".into(), json!(session_id));
        detail.insert("notified_clients".into(), json!(notified));
        self.audit(
            ctx,
            AuditKind::OAuthSessionEnded,
            Outcome::Success,
            Some(user_id),
            detail,
        )
        .await?;
        Ok(notices)
    }

    /// Revokes every grant of the user and moves their token version, so refresh tokens die
    /// at once and access tokens stop introspecting as active. Called when a user is disabled
    /// or logs out everywhere.
    pub async fn revoke_user(&self, user_id: &str) -> Result<u64, OAuthError> {
        Ok(self
            .inner
            .store
            .revoke_user_grants(user_id, self.now())
            .await?)
    }
}
