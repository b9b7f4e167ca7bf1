//! The token endpoint (RFC 6749 §3.2): client authentication, the grant type's rules (one file
//! each in `grants/`), and the signing of the tokens of a user's grant.

use serde::Serialize;
use trustgate_core::id::new_ulid;
use trustgate_core::secret::generate_token;
use trustgate_core::{Secret, TokenDigest};
use trustgate_store_api::{Grant, RefreshToken, StoreError};
use trustgate_tokens::{AccessTokenClaims, Audience};

use super::detail::{AuthFacts, StoredDetail};
use super::{Provider, RequestContext};
use crate::claims::IdTokenClaims;
use crate::clients::{Client, GrantType, PresentedCredentials};
use crate::request::Params;
use crate::scope::Scope;
use crate::{ErrorCode, OAuthError};

/// A token endpoint success (RFC 6749 §5.1, OIDC Core §3.1.3.3).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenResponse {
    /// The access token (a JWT, RFC 9068).
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// A new refresh token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// For OpenID Connect requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// The granted scope.
    pub scope: String,
}

impl Provider {
    /// `/oauth2/token`.
    pub async fn token(
        &self,
        params: &Params,
        credentials: &PresentedCredentials,
        ctx: &RequestContext,
    ) -> Result<TokenResponse, OAuthError> {
        let grant_type = params
            .get("grant_type")
            .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
        let client = self
            .authenticate(credentials, &self.inner.endpoints.token)
            .await?;
        let grant: GrantType = grant_type.parse().map_err(|_| {
            OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "grant_type is not supported (the password and implicit grants never are)",
            )
        })?;
        if !client.allows_grant(grant) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "the client is not registered for this grant type",
            ));
        }
        match grant {
            GrantType::AuthorizationCode => self.exchange_code(&client, params, ctx).await,
            GrantType::RefreshToken => self.refresh(&client, params, ctx).await,
            GrantType::ClientCredentials => self.client_credentials(&client, params),
            GrantType::DeviceCode => self.device_token(&client, params, ctx).await,
        }
    }

    /// Creates the grant (with its first refresh token when the client may refresh) and signs
    /// the tokens.
    pub(super) async fn issue_for_grant(
        &self,
        client: &Client,
        grant: &Grant,
        scope: &Scope,
        nonce: Option<&str>,
        create: bool,
    ) -> Result<TokenResponse, OAuthError> {
        let now = self.now();
        let refresh = client
            .allows_grant(GrantType::RefreshToken)
            .then(|| generate_token("tgr_"));
        if create {
            let refresh_record = RefreshToken {
                grant_id: grant.id.clone(),
                created_at: now,
                expires_at: grant.expires_at,
                rotated_at: None,
            };
            let digest = refresh.as_ref().map(|r| TokenDigest::of(r.expose()));
            match self
                .inner
                .store
                .create_grant(grant, digest.as_ref().map(|d| (d, &refresh_record)))
                .await
            {
                Ok(()) => {}
                Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {
                    return Err(OAuthError::invalid_grant(
                        "the user is disabled or no longer exists",
                    ));
                }
                Err(err) => return Err(err.into()),
            }
        }
        self.sign_user_tokens(client, grant, scope, nonce, refresh)
            .await
    }

    pub(super) async fn sign_user_tokens(
        &self,
        client: &Client,
        grant: &Grant,
        scope: &Scope,
        nonce: Option<&str>,
        refresh: Option<Secret>,
    ) -> Result<TokenResponse, OAuthError> {
        let now = self.now();
        let user_id = grant.user_id.clone().unwrap_or_default();
        let version = self
            .inner
            .store
            .user_token_version(&user_id)
            .await?
            .ok_or_else(|| OAuthError::invalid_grant("the user no longer exists"))?;
        let facts = AuthFacts::from_detail(&grant.detail)?;
        let claims = AccessTokenClaims {
            iss: self.issuer().to_owned(),
            sub: user_id.clone(),
            aud: self.access_token_audience(client),
            exp: (now + client.access_token_ttl).unix_timestamp(),
            iat: now.unix_timestamp(),
            nbf: None,
            jti: new_ulid(now),
            client_id: client.id.clone(),
            scope: Some(scope.to_string()),
            auth_time: facts.auth_time,
            acr: facts.acr.clone(),
            amr: facts.amr.clone(),
            uv: Some(version),
            gid: Some(grant.id.clone()),
            sid: grant.session_id.clone(),
        };
        let access_token = self.sign(
            self.inner.settings.access_token_algorithm,
            "at+jwt",
            &claims,
        )?;
        let id_token = if scope.is_openid() {
            let alg = self.inner.settings.id_token_algorithm;
            let id_claims = IdTokenClaims {
                iss: self.issuer().to_owned(),
                sub: user_id,
                aud: client.id.clone(),
                exp: (now + self.inner.settings.id_token_ttl).unix_timestamp(),
                iat: now.unix_timestamp(),
                auth_time: facts.auth_time,
                nonce: nonce.map(str::to_owned),
                acr: facts.acr,
                amr: facts.amr,
                azp: client.id.clone(),
                at_hash: Some(trustgate_tokens::left_half_hash(alg, &access_token)),
                sid: grant.session_id.clone(),
            };
            Some(self.sign(alg, "JWT", &id_claims)?)
        } else {
            None
        };
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: client.access_token_ttl.whole_seconds(),
            refresh_token: refresh.map(|r| r.expose().to_owned()),
            id_token,
            scope: scope.to_string(),
        })
    }

    /// RFC 9068 §3: the resource servers the token is for, and the issuer itself (for userinfo).
    pub(super) fn access_token_audience(&self, client: &Client) -> Audience {
        if client.audience.is_empty() {
            return Audience::One(self.issuer().to_owned());
        }
        let mut audiences = client.audience.clone();
        if !audiences.iter().any(|a| a == self.issuer()) {
            audiences.push(self.issuer().to_owned());
        }
        Audience::Many(audiences)
    }

    pub(super) fn audit_issuance(
        &self,
        ctx: &RequestContext,
        client: &Client,
        grant: &Grant,
        how: &str,
    ) {
        tracing::info!(
            target: "trustgate::audit",
            kind = "oauth_token_issued",
            grant_type = how,
            client_id = %client.id,
            user_id = grant.user_id.as_deref().unwrap_or(""),
            grant_id = %grant.id,
            scope = %grant.scope,
            request_id = ctx.request_id.as_deref().unwrap_or(""),
            "tokens issued"
        );
    }
}
