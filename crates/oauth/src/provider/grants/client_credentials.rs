//! The client credentials grant (RFC 6749 §4.4): a client acting for itself.

use crate::provider::token::TokenRequest;
use crate::provider::{Provider, TokenResponse};
use crate::scope::Scope;
use crate::{ErrorCode, OAuthError};

/// Scopes about the user, which a client acting for itself cannot ask for.
const USER_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

impl Provider {
    /// `client_credentials`: a confidential client's token for itself, with none of the user
    /// scopes; nothing is stored.
    pub(in crate::provider) async fn client_credentials(
        &self,
        req: &TokenRequest<'_>,
    ) -> Result<TokenResponse, OAuthError> {
        let (client, params) = (&req.client, req.params);
        if client.is_public() {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "public clients cannot use the client credentials grant",
            ));
        }
        let scope = match params.get("scope") {
            Some(raw) => {
                let asked = Scope::parse(raw)?;
                if let Some(token) = asked
                    .iter()
                    .find(|t| USER_SCOPES.contains(t) || !client.allows_scope(t))
                {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidScope,
                        format!("scope {token} is not available to this client on its own behalf"),
                    ));
                }
                asked
            }
            None => Scope::from_tokens(
                client
                    .scopes
                    .iter()
                    .filter(|s| !USER_SCOPES.contains(&s.as_str()))
                    .cloned(),
            ),
        };
        let claims = self.access_claims(client, &client.id, &scope);
        self.sign_access_token(req, &claims, &scope).await
    }
}
