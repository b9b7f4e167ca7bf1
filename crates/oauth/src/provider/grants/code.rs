//! The authorization code grant (RFC 6749 §4.1.3, RFC 7636 §4.6).

use serde_json::json;
use trustgate_core::TokenDigest;
use trustgate_store_api::{CodeRedemption, Grant};

use crate::clients::Client;
use crate::provider::detail::{CodeDetail, StoredDetail};
use crate::provider::{Provider, RequestContext, TokenResponse, client_detail};
use crate::request::Params;
use crate::scope::Scope;
use crate::{OAuthError, pkce};

impl Provider {
    pub(in crate::provider) async fn exchange_code(
        &self,
        client: &Client,
        params: &Params,
        ctx: &RequestContext,
    ) -> Result<TokenResponse, OAuthError> {
        let code = params
            .get("code")
            .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
        let store = &self.inner.store;
        let now = self.now();
        let record = match store
            .redeem_authorization_code(&TokenDigest::of(code), now)
            .await?
        {
            CodeRedemption::Redeemed(record) => record,
            CodeRedemption::AlreadyRedeemed(record) => {
                let revoked = store.revoke_grant(&record.grant_id, now).await?;
                let mut detail = client_detail(&record.client_id);
                detail.insert("grant_id".into(), json!(record.grant_id));
                detail.insert("grant_revoked".into(), json!(revoked));
                self.audit(
                    ctx,
                    "oauth_code_replayed",
                    "denied",
                    Some(&record.user_id),
                    detail,
                )
                .await;
                return Err(OAuthError::invalid_grant(
                    "the authorization code was used already; tokens issued for it are revoked",
                ));
            }
            CodeRedemption::Unknown => {
                return Err(OAuthError::invalid_grant(
                    "the authorization code is unknown",
                ));
            }
        };
        if record.client_id != client.id {
            return Err(OAuthError::invalid_grant(
                "the authorization code was issued to another client",
            ));
        }
        if record.expires_at <= now {
            return Err(OAuthError::invalid_grant("the authorization code expired"));
        }
        if params.get("redirect_uri") != Some(record.redirect_uri.as_str()) {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the authorization request",
            ));
        }
        let detail = CodeDetail::from_detail(&record.detail)?;
        let verifier = params
            .get("code_verifier")
            .ok_or_else(|| OAuthError::invalid_grant("code_verifier is required (PKCE)"))?;
        if !pkce::verify(verifier, &detail.code_challenge) {
            return Err(OAuthError::invalid_grant("code_verifier does not match"));
        }
        let scope = Scope::parse(&detail.scope)?;
        let grant = Grant {
            id: record.grant_id.clone(),
            client_id: client.id.clone(),
            user_id: Some(record.user_id.clone()),
            session_id: record.session_id.clone(),
            scope: scope.to_string(),
            created_at: now,
            expires_at: now + client.refresh_token_ttl,
            revoked_at: None,
            detail: detail.auth.to_detail()?,
        };
        let response = self
            .issue_for_grant(client, &grant, &scope, detail.nonce.as_deref(), true)
            .await?;
        self.audit_issuance(ctx, client, &grant, "authorization_code");
        Ok(response)
    }
}
