//! The authorization code grant (RFC 6749 §4.1.3, RFC 7636 §4.6).

use serde_json::json;
use trustgate_audit::{AuditKind, Outcome};
use trustgate_core::TokenDigest;
use trustgate_store_api::CodeRedemption;

use crate::provider::detail::{CodeDetail, StoredDetail};
use crate::provider::token::{NewGrant, TokenRequest};
use crate::provider::{Provider, TokenResponse, client_detail};
use crate::scope::Scope;
use crate::{OAuthError, pkce};

impl Provider {
    /// `authorization_code`: redeems the code exactly once (a replay revokes the grant the first
    /// redemption created), checks client, expiry, redirect URI, the PKCE verifier and the
    /// DPoP key the code is bound to (`dpop_jkt`), and creates the grant.
    pub(in crate::provider) async fn exchange_code(
        &self,
        req: &TokenRequest<'_>,
    ) -> Result<TokenResponse, OAuthError> {
        let (client, params, ctx) = (&req.client, req.params, req.ctx);
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
                // The refusal stands even if the trail cannot take it (the auditor logs that).
                let _ = self
                    .audit(
                        ctx,
                        AuditKind::OAuthCodeReplayed,
                        Outcome::Denied,
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
        if let Some(jkt) = &detail.dpop_jkt {
            req.require_dpop_key(jkt, "authorization code")?;
        }
        let scope = Scope::parse(&detail.scope)?;
        self.issue_new_grant(
            req,
            NewGrant {
                id: record.grant_id,
                user_id: record.user_id,
                session_id: record.session_id,
                scope,
                auth: detail.auth,
                nonce: detail.nonce.as_deref(),
            },
        )
        .await
    }
}
