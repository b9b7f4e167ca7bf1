//! The authorization endpoint (RFC 6749 §4.1.1, OIDC Core §3.1.2): one pass through
//! `/oauth2/authorize`, or the consent form's POST. It resolves and validates the request (see
//! `request`), gathers the facts the decision needs, asks [`decision::decide`] and carries out
//! the step: the redirect to log in or to the consent page, an error, or a code.

use serde_json::json;
use trustgate_audit::{AuditKind, Outcome};
use trustgate_core::TokenDigest;
use trustgate_core::id::new_ulid;
use trustgate_core::secret::generate_token;
use trustgate_store_api::{AuthorizationCode, Consent};

use super::decision::{self, AuthorizeFacts, AuthorizeStep, IdTokenHint};
use super::detail::{AuthFacts, CodeDetail, StoredDetail};
use super::{EndUser, Provider, RequestContext, client_detail};
use crate::clients::Client;
use crate::request::{
    self, AuthorizationRequest, AuthorizeError, LOGIN_AFTER_PARAM, Params, pushed_request_id,
};
use crate::{ErrorCode, OAuthError};

/// The user's answer on the consent page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentDecision {
    /// No answer yet: ask if needed.
    Ask,
    /// Allowed.
    Approve,
    /// Refused.
    Deny,
}

/// What the consent page shows.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentPrompt {
    /// The client.
    pub client_id: String,
    /// Its display name.
    pub client_name: String,
    /// Every requested scope.
    pub scopes: Vec<String>,
    /// The parameters to post back.
    pub resume: Params,
}

/// What `/oauth2/authorize` does next.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthorizeOutcome {
    /// Redirect to the client (a code, or an error).
    Redirect(String),
    /// Show an error; never redirect.
    ErrorPage(OAuthError),
    /// Send the user to log in (or, with `force` and a session, to re-authenticate), then to
    /// `resume` (a local path).
    Login {
        /// Where to come back to.
        resume: String,
        /// Authenticate again even with a live session.
        force: bool,
        /// Login name to prefill.
        login_hint: Option<String>,
    },
    /// Ask the user.
    Consent(ConsentPrompt),
}

impl Provider {
    /// One pass through `/oauth2/authorize` (GET or POST), or the consent form's POST with the
    /// user's `decision`.
    pub async fn authorize(
        &self,
        params: &Params,
        session: Option<&EndUser>,
        decision: ConsentDecision,
        ctx: &RequestContext,
    ) -> AuthorizeOutcome {
        match self.authorize_inner(params, session, decision, ctx).await {
            Ok(outcome) => outcome,
            Err(AuthorizeError::Page(error)) => AuthorizeOutcome::ErrorPage(error),
            Err(AuthorizeError::Redirect {
                redirect_uri,
                state,
                error,
            }) => AuthorizeOutcome::Redirect(request::error_redirect(
                &redirect_uri,
                state.as_deref(),
                &error,
                self.issuer(),
            )),
        }
    }

    async fn load_client(&self, client_id: Option<&str>) -> Result<Client, AuthorizeError> {
        let Some(client_id) = client_id else {
            return Err(AuthorizeError::Page(OAuthError::invalid_request(
                "client_id is required",
            )));
        };
        self.registered_client(client_id)
            .await
            .map_err(AuthorizeError::Page)?
            .ok_or_else(|| AuthorizeError::Page(OAuthError::invalid_client("unknown client")))
    }

    /// Parses and validates an authorization request, resolving a PAR reference.
    async fn authorization_request(
        &self,
        params: &Params,
    ) -> Result<AuthorizationRequest, AuthorizeError> {
        let client = self.load_client(params.get("client_id")).await?;
        let (effective, pushed_id, mut resume) = match params.get("request_uri") {
            Some(reference) => {
                let bad = |d: &str| {
                    AuthorizeError::Page(OAuthError::new(ErrorCode::InvalidRequestUri, d))
                };
                let id = pushed_request_id(reference)
                    .ok_or_else(|| bad("request_uri is not one this server issued"))?;
                let pushed = self
                    .inner
                    .store
                    .get_pushed_request(id, self.now())
                    .await
                    .map_err(|e| AuthorizeError::Page(e.into()))?
                    .ok_or_else(|| bad("request_uri is unknown, used or expired"))?;
                if pushed.client_id != client.id {
                    return Err(bad("request_uri was pushed by another client"));
                }
                let mut resume = Params::default();
                resume.set("client_id", client.id.clone());
                resume.set("request_uri", reference);
                (
                    Params::from_json(&pushed.parameters),
                    Some(id.to_owned()),
                    resume,
                )
            }
            None => {
                let mut resume = params.clone();
                resume.remove(LOGIN_AFTER_PARAM);
                (params.clone(), None, resume)
            }
        };
        let mut effective = effective;
        if let Some(after) = params.get(LOGIN_AFTER_PARAM) {
            effective.set(LOGIN_AFTER_PARAM, after);
        }
        resume.remove(LOGIN_AFTER_PARAM);
        let redirect_uri = request::check_redirect_uri(&client, &effective)?;
        request::validate(&client, redirect_uri, &effective, pushed_id, resume)
    }

    async fn authorize_inner(
        &self,
        params: &Params,
        session: Option<&EndUser>,
        decision: ConsentDecision,
        ctx: &RequestContext,
    ) -> Result<AuthorizeOutcome, AuthorizeError> {
        let req = self.authorization_request(params).await?;
        let id_token_hint = match &req.id_token_hint {
            None => IdTokenHint::Absent,
            Some(hint) => match self.id_token_hint_subject(hint, Some(&req.client.id)) {
                Some(subject) => IdTokenHint::Names(subject),
                None => IdTokenHint::Invalid,
            },
        };
        let consent = match session {
            Some(user) if !req.client.skip_consent => self
                .inner
                .store
                .get_consent(&user.user_id, &req.client.id)
                .await
                .map_err(|e| req.redirect_error(e.into()))?,
            _ => None,
        };
        let step = decision::decide(&AuthorizeFacts {
            request: &req,
            session,
            id_token_hint: &id_token_hint,
            consent: consent.as_ref(),
            decision,
            now: self.now(),
        });
        let login =
            |resume: Params, force: bool, login_hint: Option<String>| AuthorizeOutcome::Login {
                resume: format!("/oauth2/authorize?{}", resume.to_query()),
                force,
                login_hint,
            };
        match step {
            AuthorizeStep::Login { resume, login_hint } => Ok(login(resume, false, login_hint)),
            AuthorizeStep::Reauthenticate { resume, login_hint } => {
                Ok(login(resume, true, login_hint))
            }
            AuthorizeStep::Consent(prompt) => Ok(AuthorizeOutcome::Consent(prompt)),
            AuthorizeStep::Fail(error) => Err(error),
            AuthorizeStep::ConsentDenied { user, error } => {
                self.audit(
                    ctx,
                    AuditKind::OAuthConsentDenied,
                    Outcome::Denied,
                    Some(&user.user_id),
                    client_detail(&req.client.id),
                )
                .await
                .map_err(|error| req.redirect_error(error))?;
                Err(error)
            }
            AuthorizeStep::IssueCode { user, remember } => self
                .issue_code(&req, user, remember, ctx)
                .await
                .map(AuthorizeOutcome::Redirect)
                .map_err(|error| req.redirect_error(error)),
        }
    }

    /// Remembers the consent the user just gave, if any, and issues the code: the redirect to
    /// the client.
    async fn issue_code(
        &self,
        req: &AuthorizationRequest,
        user: &EndUser,
        remember: Option<Consent>,
        ctx: &RequestContext,
    ) -> Result<String, OAuthError> {
        let store = &self.inner.store;
        if let Some(consent) = remember {
            store.put_consent(&consent).await?;
            let mut detail = client_detail(&req.client.id);
            detail.insert("scope".into(), json!(req.scope.to_string()));
            self.audit(
                ctx,
                AuditKind::OAuthConsentGranted,
                Outcome::Success,
                Some(&user.user_id),
                detail,
            )
            .await?;
        }
        let now = self.now();
        let code = generate_token("");
        let record = AuthorizationCode {
            client_id: req.client.id.clone(),
            user_id: user.user_id.clone(),
            session_id: Some(user.session_id.clone()),
            redirect_uri: req.redirect_uri.clone(),
            grant_id: new_ulid(now),
            created_at: now,
            expires_at: now + self.inner.settings.code_ttl,
            detail: CodeDetail {
                scope: req.scope.to_string(),
                nonce: req.nonce.clone(),
                code_challenge: req.code_challenge.clone(),
                auth: AuthFacts::of_user(user),
                dpop_jkt: req.dpop_jkt.clone(),
            }
            .to_detail()?,
        };
        if let Some(id) = &req.pushed_id
            && !store.consume_pushed_request(id).await?
        {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequestUri,
                "request_uri was used already",
            ));
        }
        store
            .put_authorization_code(&TokenDigest::of(code.expose()), &record)
            .await?;
        Ok(request::redirect_to_client(
            &req.redirect_uri,
            &[("code", code.expose())],
            req.state.as_deref(),
            self.issuer(),
        ))
    }
}
