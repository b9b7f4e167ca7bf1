//! The token exchange grant (RFC 8693): a confidential client trades an access token it received
//! for a short-lived access token for one downstream target, acting for the token's subject. The
//! rules are in [`crate::token_exchange`]; this file verifies the presented tokens (signature by
//! our keys, issuer, `at+jwt`, expiry with no leeway, then revocation: the token's `jti`, its
//! grant, the user's token version and status) and signs the result.

use trustgate_audit::{AuditKind, Event, Outcome};
use trustgate_tokens::{AccessTokenClaims, Actor, Audience};

use crate::provider::token::TokenRequest;
use crate::provider::{Provider, TokenResponse};
use crate::scope::Scope;
use crate::token_exchange::{
    ACCESS_TOKEN_TYPE, actor_chain, expiry, narrowed_scope, parse_request, received_by,
};
use crate::{ErrorCode, OAuthError};

impl Provider {
    /// `urn:ietf:params:oauth:grant-type:token-exchange`. Every refusal is audited
    /// (`oauth_token_exchange_refused`, with the error and its reason).
    pub(in crate::provider) async fn token_exchange(
        &self,
        req: &TokenRequest<'_>,
    ) -> Result<TokenResponse, OAuthError> {
        let mut subject = None;
        let result = self.exchange_token(req, &mut subject).await;
        if let Err(err) = &result {
            self.audit_exchange_refused(req.ctx, &req.client.id, err, subject.as_deref())
                .await;
        }
        result
    }

    /// The exchange; `subject` learns the subject token's `sub` once it verified (for the
    /// audit trail of a refusal).
    async fn exchange_token(
        &self,
        req: &TokenRequest<'_>,
        subject: &mut Option<String>,
    ) -> Result<TokenResponse, OAuthError> {
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
        let subject_claims = self
            .live_access_token(request.subject_token, &[])
            .await?
            .ok_or_else(|| {
                OAuthError::invalid_request(
                    "subject_token is not a valid, unexpired and unrevoked access token of this \
                     server",
                )
            })?;
        *subject = Some(subject_claims.sub.clone());
        if !received_by(&subject_claims, client) {
            return Err(OAuthError::invalid_request(
                "subject_token is not for an audience the client serves, nor was it issued to \
                 the client",
            ));
        }
        let actor = match request.actor_token {
            None => Actor {
                sub: client.id.clone(),
                client_id: Some(client.id.clone()),
                act: None,
            },
            Some(token) => self.actor_of(token, &client.id).await?,
        };
        let act = actor_chain(actor, &subject_claims)?;
        let subject_scope = Scope::parse(subject_claims.scope.as_deref().unwrap_or(""))?;
        let scope = narrowed_scope(request.scope, &subject_scope, client)?;

        let base = self.access_claims(client, &subject_claims.sub, &scope);
        let exp = expiry(
            base.iat,
            subject_claims.exp,
            self.inner.settings.token_exchange_ttl,
            client.access_token_ttl,
        );
        let claims = AccessTokenClaims {
            aud: Audience::One(request.target.to_owned()),
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
            ..base
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
