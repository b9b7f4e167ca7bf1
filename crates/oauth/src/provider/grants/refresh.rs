//! The refresh token grant (RFC 6749 §6) with rotation (RFC 9700 §4.14.2).

use serde_json::json;
use trustgate_audit::{AuditKind, Outcome};
use trustgate_core::TokenDigest;
use trustgate_core::secret::generate_token;
use trustgate_store_api::RefreshRotation;

use crate::provider::detail::{GrantDetail, StoredDetail};
use crate::provider::token::TokenRequest;
use crate::provider::{Provider, TokenResponse, client_detail};
use crate::scope::Scope;
use crate::{ErrorCode, OAuthError};

impl Provider {
    /// `refresh_token`: the scope may narrow, never widen; a token bound to a DPoP key needs a
    /// proof by that key, one bound to a client certificate needs that certificate; the token rotates under [`crate::refresh::rotation_step`] (a reuse
    /// after the grace period revokes the grant).
    pub(in crate::provider) async fn refresh(
        &self,
        req: &TokenRequest<'_>,
    ) -> Result<TokenResponse, OAuthError> {
        let (client, params, ctx) = (&req.client, req.params, req.ctx);
        let presented = params
            .get("refresh_token")
            .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
        let store = &self.inner.store;
        let now = self.now();
        let digest = TokenDigest::of(presented);
        // Look first, so a narrowing scope that is refused leaves the token unrotated.
        let (_, grant) = store
            .find_refresh_token(&digest)
            .await?
            .ok_or_else(|| OAuthError::invalid_grant("the refresh token is invalid"))?;
        if grant.client_id != client.id {
            return Err(OAuthError::invalid_grant(
                "the refresh token was issued to another client",
            ));
        }
        // Before the rotation: whoever holds the token without its key neither refreshes nor
        // rotates it (which would make the owner's next refresh look like a reuse).
        let bound = GrantDetail::from_detail(&grant.detail)?;
        if let Some(jkt) = &bound.dpop_jkt {
            req.require_dpop_key(jkt, "refresh token")?;
        }
        if let Some(thumbprint) = &bound.x5t_s256 {
            req.require_certificate(thumbprint, "refresh token")?;
        }
        let granted = Scope::parse(&grant.scope)?;
        let scope = match params.get("scope") {
            Some(raw) => {
                let asked = Scope::parse(raw)?;
                if !asked.is_subset(&granted) {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidScope,
                        "a refresh cannot widen the granted scope",
                    ));
                }
                asked
            }
            None => granted,
        };
        let next = generate_token("tgr_");
        let rotation = store
            .rotate_refresh_token(
                &digest,
                &TokenDigest::of(next.expose()),
                now + client.refresh_token_ttl,
                now,
                &|token, grant, user_status| {
                    crate::refresh::rotation_step(
                        token,
                        grant,
                        user_status,
                        &client.id,
                        now,
                        client
                            .refresh_grace
                            .unwrap_or(self.inner.settings.refresh_grace),
                    )
                },
            )
            .await?;
        let grant = match rotation {
            RefreshRotation::Rotated(grant) => grant,
            RefreshRotation::WithinGrace(grant) => {
                // A second token chain now exists for this grant: on the record.
                let mut detail = client_detail(&client.id);
                detail.insert("grant_id".into(), json!(grant.id));
                self.audit(
                    ctx,
                    AuditKind::OAuthRefreshGraceUsed,
                    Outcome::Success,
                    grant.user_id.as_deref(),
                    detail,
                )
                .await?;
                grant
            }
            RefreshRotation::Reused { grant_id } => {
                let mut detail = client_detail(&client.id);
                detail.insert("grant_id".into(), json!(grant_id));
                // The refusal stands even if the trail cannot take it (the auditor logs that).
                let _ = self
                    .audit(
                        ctx,
                        AuditKind::OAuthRefreshReused,
                        Outcome::Denied,
                        grant.user_id.as_deref(),
                        detail,
                    )
                    .await;
                return Err(OAuthError::invalid_grant(
                    "the refresh token was used already; the grant is revoked",
                ));
            }
            RefreshRotation::Invalid => {
                return Err(OAuthError::invalid_grant("the refresh token is invalid"));
            }
        };
        self.sign_user_tokens(req, &grant, &scope, None, Some(next))
            .await
    }
}
