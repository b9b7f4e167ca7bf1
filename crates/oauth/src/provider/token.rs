//! The token endpoint (RFC 6749 §3.2): client authentication and the dispatch to the grant
//! type's rules (one file each in `grants/`), and what every grant ends with: the claims, the
//! signatures and the response.

use std::future::Future;

use serde::Serialize;
use trustgate_core::id::new_ulid;
use trustgate_core::secret::generate_token;
use trustgate_core::{Secret, TokenDigest};
use trustgate_store_api::{Grant, RefreshToken, StoreError};
use trustgate_tokens::dpop::Proof;
use trustgate_tokens::{AccessTokenClaims, Audience, Confirmation};

use super::detail::{AuthFacts, GrantDetail, StoredDetail};
use super::{ApiKeyIntrospection, Possession, Provider, RequestContext};
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
    /// `DPoP` when the access token is bound to the request's DPoP key (RFC 9449 §5),
    /// `Bearer` otherwise.
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
    /// What the access token is (RFC 8693 §2.2.1; only token exchange responses say it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
}

/// A token request by an authenticated client, for a grant type it is registered for.
pub(super) struct TokenRequest<'a> {
    /// The client.
    pub client: Client,
    /// The grant type.
    pub grant_type: GrantType,
    /// The form parameters.
    pub params: &'a Params,
    /// Who asked, for the audit trail.
    pub ctx: &'a RequestContext,
    /// The request's verified DPoP proof: the access token is bound to its key.
    pub dpop: Option<Proof>,
    /// The client certificate of the connection (`x5t#S256`): the access token is bound to it.
    pub certificate: Option<String>,
}

impl TokenRequest<'_> {
    /// Refuses the request unless it came over mutual TLS with the certificate whose
    /// `x5t#S256` is `thumbprint` (a certificate-bound refresh token, RFC 8705 §4).
    pub fn require_certificate(&self, thumbprint: &str, what: &str) -> Result<(), OAuthError> {
        match &self.certificate {
            Some(presented) if presented == thumbprint => Ok(()),
            Some(_) => Err(OAuthError::invalid_grant(format!(
                "the {what} is bound to another client certificate"
            ))),
            None => Err(OAuthError::invalid_grant(format!(
                "the {what} is bound to a client certificate: present it over mutual TLS"
            ))),
        }
    }

    /// Refuses the request unless it carries a proof by the key `jkt` (a DPoP-bound code or
    /// refresh token, RFC 9449 §5 and §10).
    pub fn require_dpop_key(&self, jkt: &str, what: &str) -> Result<(), OAuthError> {
        match &self.dpop {
            Some(proof) if proof.jkt == jkt => Ok(()),
            Some(_) => Err(OAuthError::invalid_dpop_proof(format!(
                "the {what} is bound to another DPoP key"
            ))),
            None => Err(OAuthError::invalid_dpop_proof(format!(
                "the {what} is bound to a DPoP key: present a DPoP proof signed by it"
            ))),
        }
    }
}

/// A user's grant that a redeemed code or device approval creates.
pub(super) struct NewGrant<'a> {
    /// Its id (for a code, chosen when the code was issued, so a replay can revoke it).
    pub id: String,
    /// The user.
    pub user_id: String,
    /// The login session it came from.
    pub session_id: Option<String>,
    /// The granted scope.
    pub scope: Scope,
    /// How the user authenticated.
    pub auth: AuthFacts,
    /// The authentication request's nonce, for the ID token.
    pub nonce: Option<&'a str>,
}

impl Provider {
    /// `/oauth2/token` without a DPoP proof. API keys are not accepted as token exchange subject
    /// tokens (see [`token_with`](Self::token_with)).
    pub async fn token(
        &self,
        params: &Params,
        credentials: &PresentedCredentials,
        ctx: &RequestContext,
    ) -> Result<TokenResponse, OAuthError> {
        self.token_with(params, credentials, ctx, Possession::default(), |_| async {
            Ok(None)
        })
        .await
    }

    /// [`token`](Self::token), with API keys: a token exchange whose subject token is typed
    /// `urn:trustgate:params:oauth:token-type:api_key`, by a client registered with
    /// `token_exchange.api_keys`, hands the key to `api_keys` — the transport's key service,
    /// the same one [`introspect_with`](Self::introspect_with) is given, which answers a live
    /// key (valid, unexpired, unrevoked, its owner enabled) or `None`. No other grant, and no
    /// other client, calls it.
    ///
    /// `possession.dpop`: the request's `DPoP` header (RFC 9449 §5). Verified for `POST` to the
    /// token endpoint (with the server's nonce when required) and spent; the access token is
    /// then bound to its key (`cnf.jkt`, `token_type` `DPoP`), and a public client's new grant
    /// binds its refresh tokens to it. A client registered with `dpop_bound_access_tokens` must
    /// send one. `possession.certificate`: the request came over mutual TLS with this client
    /// certificate; the access token is bound to it (`cnf.x5t#S256`, RFC 8705 §3).
    #[tracing::instrument(
        name = "oauth.token",
        skip_all,
        fields(grant_type = params.get("grant_type").unwrap_or_default())
    )]
    pub async fn token_with<F, Fut>(
        &self,
        params: &Params,
        credentials: &PresentedCredentials,
        ctx: &RequestContext,
        possession: impl Into<Possession<'_>>,
        api_keys: F,
    ) -> Result<TokenResponse, OAuthError>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<Option<ApiKeyIntrospection>, OAuthError>>,
    {
        let grant_type = params
            .get("grant_type")
            .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
        let possession = possession.into();
        let token_url = &self
            .endpoints_reached(possession.certificate.is_some())
            .token;
        let client = self.authenticate(credentials, token_url).await?;
        let grant_type: GrantType = grant_type.parse().map_err(|_| {
            OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "grant_type is not supported (the password and implicit grants never are)",
            )
        })?;
        if !client.allows_grant(grant_type) {
            let err = OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "the client is not registered for this grant type",
            );
            if grant_type == GrantType::TokenExchange {
                self.audit_exchange_refused(ctx, &client.id, &err, None)
                    .await;
            }
            return Err(err);
        }
        let dpop = match possession.dpop {
            Some(proof) => Some(
                self.verify_dpop(proof, "POST", token_url, None, true)
                    .await?,
            ),
            None if client.dpop_bound_access_tokens => {
                return Err(OAuthError::invalid_dpop_proof(
                    "this client must send a DPoP proof with every token request",
                ));
            }
            None => None,
        };
        let req = TokenRequest {
            client,
            grant_type,
            params,
            ctx,
            dpop,
            certificate: possession.certificate.map(str::to_owned),
        };
        match grant_type {
            GrantType::AuthorizationCode => self.exchange_code(&req).await,
            GrantType::RefreshToken => self.refresh(&req).await,
            GrantType::ClientCredentials => self.client_credentials(&req).await,
            GrantType::DeviceCode => self.device_token(&req).await,
            GrantType::TokenExchange => self.token_exchange(&req, api_keys).await,
        }
    }

    /// Creates the grant (with its first refresh token when the client may refresh) and signs
    /// its tokens.
    pub(super) async fn issue_new_grant(
        &self,
        req: &TokenRequest<'_>,
        new: NewGrant<'_>,
    ) -> Result<TokenResponse, OAuthError> {
        let now = self.now();
        let client = &req.client;
        let grant = Grant {
            id: new.id,
            client_id: client.id.clone(),
            user_id: Some(new.user_id),
            session_id: new.session_id,
            scope: new.scope.to_string(),
            created_at: now,
            expires_at: now + client.refresh_token_ttl,
            revoked_at: None,
            // RFC 9449 §5 and RFC 8705 §4: a public client's refresh tokens are bound to its
            // DPoP key and its client certificate (a confidential client's are bound to its
            // authentication already).
            detail: GrantDetail {
                auth: new.auth,
                dpop_jkt: req
                    .dpop
                    .as_ref()
                    .filter(|_| client.is_public())
                    .map(|proof| proof.jkt.clone()),
                x5t_s256: req.certificate.clone().filter(|_| client.is_public()),
            }
            .to_detail()?,
        };
        let refresh = client
            .allows_grant(GrantType::RefreshToken)
            .then(|| generate_token("tgr_"));
        let refresh_record = RefreshToken {
            grant_id: grant.id.clone(),
            created_at: now,
            expires_at: grant.expires_at,
            rotated_at: None,
            grace_used: false,
        };
        let digest = refresh.as_ref().map(|r| TokenDigest::of(r.expose()));
        match self
            .inner
            .store
            .create_grant(&grant, digest.as_ref().map(|d| (d, &refresh_record)))
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
        self.sign_user_tokens(req, &grant, &new.scope, new.nonce, refresh)
            .await
    }

    /// The tokens of a user's grant: an access token naming the grant and the user's token
    /// version, and for `openid` an ID token.
    pub(super) async fn sign_user_tokens(
        &self,
        req: &TokenRequest<'_>,
        grant: &Grant,
        scope: &Scope,
        nonce: Option<&str>,
        refresh: Option<Secret>,
    ) -> Result<TokenResponse, OAuthError> {
        let client = &req.client;
        let user_id = grant.user_id.clone().unwrap_or_default();
        let version = self
            .inner
            .store
            .user_token_version(&user_id)
            .await?
            .ok_or_else(|| OAuthError::invalid_grant("the user no longer exists"))?;
        let facts = AuthFacts::from_detail(&grant.detail)?;
        let claims = AccessTokenClaims {
            auth_time: facts.auth_time,
            acr: facts.acr.clone(),
            amr: facts.amr.clone(),
            uv: Some(version),
            gid: Some(grant.id.clone()),
            sid: grant.session_id.clone(),
            scope: Some(scope.to_string()),
            ..self.access_claims(client, &user_id, scope)
        };
        let mut response = self.sign_access_token(req, &claims, scope).await?;
        if scope.is_openid() {
            let alg = self.inner.settings.id_token_algorithm;
            let id_claims = IdTokenClaims {
                iss: self.issuer().to_owned(),
                sub: user_id,
                aud: client.id.clone(),
                exp: claims.iat + self.inner.settings.id_token_ttl.whole_seconds(),
                iat: claims.iat,
                auth_time: facts.auth_time,
                nonce: nonce.map(str::to_owned),
                acr: facts.acr,
                amr: facts.amr,
                azp: client.id.clone(),
                at_hash: Some(trustgate_tokens::left_half_hash(
                    alg,
                    &response.access_token,
                )),
                sid: grant.session_id.clone(),
            };
            response.id_token = Some(self.sign(alg, "JWT", &id_claims)?);
        }
        response.refresh_token = refresh.map(|r| r.expose().to_owned());
        Ok(response)
    }

    /// The claims every access token has: this issuer, `sub`, the client's audiences, a fresh
    /// `jti`, the client's lifetime, and the scope (absent when empty). Nothing about a user.
    pub(super) fn access_claims(
        &self,
        client: &Client,
        sub: &str,
        scope: &Scope,
    ) -> AccessTokenClaims {
        let now = self.now();
        AccessTokenClaims {
            iss: self.issuer().to_owned(),
            sub: sub.to_owned(),
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
            act: None,
            may_act: None,
            key_id: None,
            cnf: None,
        }
    }

    /// Signs the access token (bound to the request's DPoP key and client certificate, when it
    /// proved them), records its issuance, and answers with it alone (`expires_in` from its
    /// `iat` to its `exp`).
    pub(super) async fn sign_access_token(
        &self,
        req: &TokenRequest<'_>,
        claims: &AccessTokenClaims,
        scope: &Scope,
    ) -> Result<TokenResponse, OAuthError> {
        let bound;
        let claims = if req.dpop.is_some() || req.certificate.is_some() {
            bound = AccessTokenClaims {
                cnf: Some(Confirmation {
                    jkt: req.dpop.as_ref().map(|proof| proof.jkt.clone()),
                    x5t_s256: req.certificate.clone(),
                }),
                ..claims.clone()
            };
            &bound
        } else {
            claims
        };
        let access_token =
            self.sign(self.inner.settings.access_token_algorithm, "at+jwt", claims)?;
        self.audit_issuance(req.ctx, req.grant_type, claims).await?;
        Ok(TokenResponse {
            access_token,
            token_type: if req.dpop.is_some() { "DPoP" } else { "Bearer" },
            expires_in: claims.exp - claims.iat,
            refresh_token: None,
            id_token: None,
            scope: scope.to_string(),
            issued_token_type: None,
        })
    }

    /// RFC 9068 §3: the resource servers the token is for, and the issuer itself (for userinfo).
    fn access_token_audience(&self, client: &Client) -> Audience {
        if client.audience.is_empty() {
            return Audience::One(self.issuer().to_owned());
        }
        let mut audiences = client.audience.clone();
        if !audiences.iter().any(|a| a == self.issuer()) {
            audiences.push(self.issuer().to_owned());
        }
        Audience::Many(audiences)
    }
}
