//! The token exchange grant (RFC 8693): a confidential client trades an access token it received
//! — or, when its registration opts in, an API key its caller presented — for a short-lived
//! access token for one downstream target, acting for the token's subject. The rules are in
//! [`crate::token_exchange`]; this file verifies the presented tokens (an access token: signature
//! by our keys, issuer, `at+jwt`, expiry with no leeway, then revocation: the token's `jti`, its
//! grant, the user's token version and status; an API key: the transport's key service, the
//! one introspection uses) and signs the result.

use std::future::Future;

use trustgate_audit::{AuditKind, Event, Outcome};
use trustgate_tokens::{AccessTokenClaims, Actor, Audience};

use crate::provider::token::TokenRequest;
use crate::provider::{ApiKeyIntrospection, Provider, TokenResponse};
use crate::scope::Scope;
use crate::token_exchange::{
    ACCESS_TOKEN_TYPE, SubjectKind, actor_chain, expiry, narrowed_scope, parse_request, received_by,
};
use crate::{ErrorCode, OAuthError};

/// A verified subject token.
enum Subject {
    /// One of our live access tokens, received by the exchanging client.
    Token(Box<AccessTokenClaims>),
    /// A live API key.
    Key(ApiKeyIntrospection),
}

impl Subject {
    /// The party the issued token acts for.
    fn sub(&self) -> &str {
        match self {
            Subject::Token(claims) => &claims.sub,
            Subject::Key(key) => &key.sub,
        }
    }

    /// What the subject may do, which the issued token's scope stays within.
    fn scope(&self) -> Result<Scope, OAuthError> {
        match self {
            Subject::Token(claims) => Scope::parse(claims.scope.as_deref().unwrap_or("")),
            Subject::Key(key) => Ok(Scope::from_tokens(key.scopes.iter())),
        }
    }

    /// When the subject stops being valid (Unix seconds); a key may never expire.
    fn exp(&self) -> Option<i64> {
        match self {
            Subject::Token(claims) => Some(claims.exp),
            Subject::Key(key) => key.expires_at.map(time::OffsetDateTime::unix_timestamp),
        }
    }
}

impl Provider {
    /// `urn:ietf:params:oauth:grant-type:token-exchange`; `api_keys` is the transport's key
    /// service, asked only for a subject token typed as an API key presented by a client that
    /// opted in. Every refusal is audited (`oauth_token_exchange_refused`, with the error and
    /// its reason).
    pub(in crate::provider) async fn token_exchange<F, Fut>(
        &self,
        req: &TokenRequest<'_>,
        api_keys: F,
    ) -> Result<TokenResponse, OAuthError>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<Option<ApiKeyIntrospection>, OAuthError>>,
    {
        let mut subject = None;
        let result = self.exchange_token(req, api_keys, &mut subject).await;
        if let Err(err) = &result {
            self.audit_exchange_refused(req.ctx, &req.client.id, err, subject.as_deref())
                .await;
        }
        result
    }

    /// The exchange; `subject` learns the subject token's `sub` once it verified (for the
    /// audit trail of a refusal).
    async fn exchange_token<F, Fut>(
        &self,
        req: &TokenRequest<'_>,
        api_keys: F,
        subject: &mut Option<String>,
    ) -> Result<TokenResponse, OAuthError>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<Option<ApiKeyIntrospection>, OAuthError>>,
    {
        let client = &req.client;
        if client.is_public() {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "public clients cannot exchange tokens",
            ));
        }
        let request = parse_request(req.params)?;
        if !client.may_exchange_for(request.target) {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                "the client may not obtain tokens for this target",
            ));
        }
        let verified = match request.subject_kind {
            SubjectKind::AccessToken => {
                let claims = self
                    .live_access_token(request.subject_token, &[])
                    .await?
                    .ok_or_else(|| {
                        OAuthError::invalid_request(
                            "subject_token is not a valid, unexpired and unrevoked access token \
                             of this server",
                        )
                    })?;
                *subject = Some(claims.sub.clone());
                if !received_by(&claims, client) {
                    return Err(OAuthError::invalid_request(
                        "subject_token is not for an audience the client serves, nor was it \
                         issued to the client",
                    ));
                }
                Subject::Token(Box::new(claims))
            }
            SubjectKind::ApiKey => {
                // RFC 8693 §2.2.2: a subject token the server will not accept is
                // invalid_request; the key service is not even asked.
                if !client.may_exchange_api_keys() {
                    return Err(OAuthError::invalid_request(
                        "the client is not registered to exchange API keys \
                         (token_exchange.api_keys)",
                    ));
                }
                let key = api_keys(request.subject_token.to_owned())
                    .await?
                    .ok_or_else(|| {
                        OAuthError::invalid_request(
                            "subject_token is not a valid, unexpired and unrevoked API key of \
                             this server",
                        )
                    })?;
                *subject = Some(key.sub.clone());
                if key.expires_at.is_some_and(|at| at <= self.now()) {
                    return Err(OAuthError::invalid_request(
                        "subject_token is an expired API key",
                    ));
                }
                Subject::Key(key)
            }
        };
        let actor = match request.actor_token {
            None => Actor {
                sub: client.id.clone(),
                client_id: Some(client.id.clone()),
                act: None,
            },
            Some(token) => self.actor_of(token, &client.id).await?,
        };
        let act = match &verified {
            Subject::Token(claims) => actor_chain(actor, claims)?,
            // A key has no delegation of its own to nest, nor a may_act.
            Subject::Key(_) => actor,
        };
        let scope = narrowed_scope(request.scope, &verified.scope()?, client)?;

        let base = self.access_claims(client, verified.sub(), &scope);
        let exp = expiry(
            base.iat,
            verified.exp(),
            self.inner.settings.token_exchange_ttl,
            client.access_token_ttl,
        );
        let aud = Audience::One(request.target.to_owned());
        let claims = match verified {
            Subject::Token(subject_claims) => {
                let subject_claims = *subject_claims;
                AccessTokenClaims {
                    aud,
                    exp,
                    // Step-up decisions downstream depend on how the subject authenticated.
                    auth_time: subject_claims.auth_time,
                    acr: subject_claims.acr,
                    amr: subject_claims.amr,
                    // Revoking the subject's grant, or the user's tokens, revokes this one too.
                    uv: subject_claims.uv,
                    gid: subject_claims.gid,
                    sid: subject_claims.sid,
                    act: Some(act),
                    may_act: None,
                    // A token exchanged from a key-derived token still came from that key.
                    key_id: subject_claims.key_id,
                    ..base
                }
            }
            // A key is no sign-in: no auth_time, amr or acr, so no step-up rule is met by it;
            // its id tells a downstream (and its rate limits) which key this came from.
            Subject::Key(key) => AccessTokenClaims {
                aud,
                exp,
                act: Some(act),
                key_id: Some(key.key_id),
                ..base
            },
        };
        let mut response = self.sign_access_token(req, &claims, &scope).await?;
        response.issued_token_type = Some(ACCESS_TOKEN_TYPE);
        Ok(response)
    }

    /// The actor an actor token names: a live access token of ours, issued to the exchanging
    /// client (it proves nothing about anyone else), and not itself delegated.
    async fn actor_of(&self, token: &str, client_id: &str) -> Result<Actor, OAuthError> {
        let claims = self.live_access_token(token, &[]).await?.ok_or_else(|| {
            OAuthError::invalid_request(
                "actor_token is not a valid, unexpired and unrevoked access token of this server",
            )
        })?;
        if claims.client_id != client_id {
            return Err(OAuthError::invalid_request(
                "actor_token was not issued to this client",
            ));
        }
        if claims.act.is_some() {
            return Err(OAuthError::invalid_request(
                "actor_token is itself a delegated token",
            ));
        }
        Ok(Actor {
            sub: claims.sub,
            client_id: Some(claims.client_id),
            act: None,
        })
    }

    /// Records a refused exchange. The refusal stands even if the trail cannot take it (the
    /// auditor logs that).
    pub(in crate::provider) async fn audit_exchange_refused(
        &self,
        ctx: &crate::provider::RequestContext,
        client_id: &str,
        err: &OAuthError,
        subject: Option<&str>,
    ) {
        let mut event = Event::new(AuditKind::OAuthTokenExchangeRefused, Outcome::Failure)
            .actor(format!("client:{client_id}"))
            .detail("client_id", client_id)
            .detail("error", err.code.as_str())
            .detail("reason", err.description.as_str());
        if let Some(subject) = subject {
            event = event.detail("subject", subject);
        }
        let _ = self.inner.auditor.record(ctx, event).await;
    }
}
