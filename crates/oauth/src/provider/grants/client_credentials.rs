//! The client credentials grant (RFC 6749 §4.4): a client acting for itself.

use trustgate_core::id::new_ulid;
use trustgate_tokens::AccessTokenClaims;

use crate::clients::Client;
use crate::provider::{Provider, TokenResponse};
use crate::request::Params;
use crate::scope::Scope;
use crate::{ErrorCode, OAuthError};

/// Scopes about the user, which a client acting for itself cannot ask for.
const USER_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

impl Provider {
    pub(in crate::provider) fn client_credentials(
        &self,
        client: &Client,
        params: &Params,
    ) -> Result<TokenResponse, OAuthError> {
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
        let now = self.now();
        let claims = AccessTokenClaims {
            iss: self.issuer().to_owned(),
            sub: client.id.clone(),
            aud: self.access_token_audience(client),
            exp: (now + client.access_token_ttl).unix_timestamp(),
            iat: now.unix_timestamp(),
            nbf: None,
            jti: new_ulid(now),
            client_id: client.id.clone(),
            scope: (!scope.is_empty()).then(|| scope.to_string()),
            auth_time: None,
            acr: None,
            amr: None,
            uv: None,
            gid: None,
            sid: None,
        };
        let access_token = self.sign(
            self.inner.settings.access_token_algorithm,
            "at+jwt",
            &claims,
        )?;
        tracing::info!(
            target: "trustgate::audit",
            kind = "oauth_token_issued",
            grant_type = "client_credentials",
            client_id = %client.id,
            jti = %claims.jti,
            scope = %scope,
            "tokens issued"
        );
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: client.access_token_ttl.whole_seconds(),
            refresh_token: None,
            id_token: None,
            scope: scope.to_string(),
        })
    }
}
