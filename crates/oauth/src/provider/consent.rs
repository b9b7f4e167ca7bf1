//! The user's remembered consents, as the account page lists and withdraws them.

use time::OffsetDateTime;
use trustgate_audit::{AuditKind, Outcome};

use super::{Provider, RequestContext, client_detail};
use crate::OAuthError;

/// One of the user's remembered consents, for `/account`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentSummary {
    /// The client.
    pub client_id: String,
    /// Its display name.
    pub client_name: String,
    /// The consented scopes.
    pub scopes: Vec<String>,
    /// When first granted.
    pub granted_at: OffsetDateTime,
}

impl Provider {
    /// The user's remembered consents, for `/account`.
    pub async fn consents(&self, user_id: &str) -> Result<Vec<ConsentSummary>, OAuthError> {
        let consents = self.inner.store.list_consents(user_id).await?;
        let mut out = Vec::with_capacity(consents.len());
        for consent in consents {
            let client_name = match self.registered_client(&consent.client_id).await {
                Ok(Some(client)) => client.name,
                _ => consent.client_id.clone(),
            };
            out.push(ConsentSummary {
                client_id: consent.client_id,
                client_name,
                scopes: consent.scopes,
                granted_at: consent.created_at,
            });
        }
        Ok(out)
    }

    /// Withdraws a consent from `/account` (the client's grants for the user are revoked too).
    pub async fn withdraw_consent(
        &self,
        user_id: &str,
        client_id: &str,
        ctx: &RequestContext,
    ) -> Result<bool, OAuthError> {
        let withdrawn = self
            .inner
            .store
            .delete_consent(user_id, client_id, self.now())
            .await?;
        if withdrawn {
            self.audit(
                ctx,
                AuditKind::OAuthConsentRevoked,
                Outcome::Success,
                Some(user_id),
                client_detail(client_id),
            )
            .await?;
        }
        Ok(withdrawn)
    }
}
