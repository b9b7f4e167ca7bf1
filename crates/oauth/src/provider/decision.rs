//! What `/oauth2/authorize` does next, decided from facts alone: no store, no keys, no clock
//! reads. [`Provider::authorize`](super::Provider::authorize) gathers the facts (the validated
//! request, the session, the remembered consent, whether the ID token hint verified, the time),
//! asks [`decide`] and carries out the [`AuthorizeStep`].
//!
//! The order of the questions is the protocol's:
//! 1. an `id_token_hint` that is not one of our ID tokens is an error for the client;
//! 2. without a session the user logs in (`prompt=none`: `login_required`);
//! 3. a session of another user than the hint names is never silently switched;
//! 4. `prompt=login`, an authentication older than `max_age`, or `acr_values=2` with a one-factor
//!    session and a second factor enrolled send the user to authenticate again, unless they just
//!    did: the resume URL carries [`LOGIN_AFTER_PARAM`] (the time of the demand), and a session
//!    that authenticated at or after it satisfies all three;
//! 5. the user's answer on the consent page, or, without one, whether the remembered consent
//!    covers the scope (`prompt=consent` asks again; first-party clients are never asked).

use time::OffsetDateTime;
use trustgate_store_api::Consent;

use super::{ConsentDecision, ConsentPrompt, EndUser};
use crate::request::{AuthorizationRequest, AuthorizeError, LOGIN_AFTER_PARAM, Params};
use crate::scope::Scope;
use crate::{ErrorCode, OAuthError};

/// The `acr` value of a two-factor authentication.
pub const TWO_FACTORS: &str = "2";

/// What the request's `id_token_hint` turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdTokenHint {
    /// No hint.
    Absent,
    /// Not an ID token this server issued to the client.
    Invalid,
    /// One of ours, naming this user.
    Names(String),
}

/// Everything the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct AuthorizeFacts<'a> {
    /// The validated request (client, scope, prompt, `max_age`, `acr_values`, resume marker).
    pub request: &'a AuthorizationRequest,
    /// The signed-in user, if any.
    pub session: Option<&'a EndUser>,
    /// The verified `id_token_hint`.
    pub id_token_hint: &'a IdTokenHint,
    /// The user's remembered consent to the client (not looked up for first-party clients).
    pub consent: Option<&'a Consent>,
    /// The user's answer on the consent page, if this is its POST.
    pub decision: ConsentDecision,
    /// Now.
    pub now: OffsetDateTime,
}

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthorizeStep<'a> {
    /// Nobody is signed in: log in, then come back with `resume`.
    Login {
        /// The parameters to come back with.
        resume: Params,
        /// Login name to prefill.
        login_hint: Option<String>,
    },
    /// The session is not good enough: authenticate again, then come back with `resume` (which
    /// carries [`LOGIN_AFTER_PARAM`]).
    Reauthenticate {
        /// The parameters to come back with.
        resume: Params,
        /// Login name to prefill.
        login_hint: Option<String>,
    },
    /// Ask the user.
    Consent(ConsentPrompt),
    /// Issue a code to the client for `user`, remembering the consent first if given.
    IssueCode {
        /// The user the code is for.
        user: &'a EndUser,
        /// The consent to store (the user just approved).
        remember: Option<Consent>,
    },
    /// The user refused on the consent page: record it and send `error` to the client.
    ConsentDenied {
        /// Who refused.
        user: &'a EndUser,
        /// `access_denied`, to the client.
        error: AuthorizeError,
    },
    /// Fail: to the client (with `state`) or on an error page.
    Fail(AuthorizeError),
}

/// The next step of an authorization request.
pub fn decide<'a>(facts: &AuthorizeFacts<'a>) -> AuthorizeStep<'a> {
    let req = facts.request;
    let fail = |code: ErrorCode, description: &str| {
        AuthorizeStep::Fail(req.redirect_error(OAuthError::new(code, description)))
    };
    let hint_subject = match facts.id_token_hint {
        IdTokenHint::Absent => None,
        IdTokenHint::Invalid => {
            return fail(ErrorCode::InvalidRequest, "id_token_hint is invalid");
        }
        IdTokenHint::Names(subject) => Some(subject),
    };
    let Some(user) = facts.session else {
        if req.prompt.none {
            return fail(ErrorCode::LoginRequired, "the user is not signed in");
        }
        return AuthorizeStep::Login {
            resume: req.resume.clone(),
            login_hint: req.login_hint.clone(),
        };
    };
    if hint_subject.is_some_and(|subject| *subject != user.user_id) {
        if req.prompt.none {
            return fail(
                ErrorCode::LoginRequired,
                "the signed-in user is not the one the id_token_hint names",
            );
        }
        return AuthorizeStep::Fail(AuthorizeError::Page(OAuthError::new(
            ErrorCode::LoginRequired,
            "you are signed in as a different user than the application expects; sign out and \
             try again",
        )));
    }
    if must_authenticate_again(req, user, facts.now) {
        if req.prompt.none {
            return fail(ErrorCode::LoginRequired, "the user must authenticate again");
        }
        let mut resume = req.resume.clone();
        resume.set(LOGIN_AFTER_PARAM, facts.now.unix_timestamp().to_string());
        return AuthorizeStep::Reauthenticate {
            resume,
            login_hint: req.login_hint.clone(),
        };
    }
    let first_party = req.client.skip_consent;
    let remembered = facts
        .consent
        .map(|c| Scope::from_tokens(c.scopes.iter().cloned()))
        .unwrap_or_default();
    match facts.decision {
        ConsentDecision::Deny => AuthorizeStep::ConsentDenied {
            user,
            error: req.redirect_error(OAuthError::new(
                ErrorCode::AccessDenied,
                "the user denied the request",
            )),
        },
        ConsentDecision::Approve => AuthorizeStep::IssueCode {
            user,
            remember: (!first_party).then(|| Consent {
                user_id: user.user_id.clone(),
                client_id: req.client.id.clone(),
                scopes: remembered
                    .union(&req.scope)
                    .iter()
                    .map(str::to_owned)
                    .collect(),
                created_at: facts.consent.map_or(facts.now, |c| c.created_at),
                updated_at: facts.now,
            }),
        },
        ConsentDecision::Ask => {
            let covered =
                first_party || (facts.consent.is_some() && req.scope.is_subset(&remembered));
            let asked_again = req.prompt.consent && !first_party;
            if covered && !asked_again {
                return AuthorizeStep::IssueCode {
                    user,
                    remember: None,
                };
            }
            if req.prompt.none {
                return fail(
                    ErrorCode::ConsentRequired,
                    "the user has not consented to this client and scope",
                );
            }
            let mut resume = req.resume.clone();
            if let Some(after) = req.login_after {
                resume.set(LOGIN_AFTER_PARAM, after.to_string());
            }
            AuthorizeStep::Consent(ConsentPrompt {
                client_id: req.client.id.clone(),
                client_name: req.client.name.clone(),
                scopes: req.scope.iter().map(str::to_owned).collect(),
                resume,
            })
        }
    }
}

/// `prompt=login`, `max_age` exceeded, or a step up to two factors that the user can make —
/// unless the session authenticated since the demand ([`LOGIN_AFTER_PARAM`]).
fn must_authenticate_again(
    req: &AuthorizationRequest,
    user: &EndUser,
    now: OffsetDateTime,
) -> bool {
    let reauthenticated = req
        .login_after
        .is_some_and(|after| user.auth_time.unix_timestamp() >= after);
    let too_old = req
        .max_age
        .is_some_and(|max| (now - user.auth_time).whole_seconds() > max);
    let wants_two_factors = req.acr_values.iter().any(|v| v == TWO_FACTORS);
    let needs_step_up = wants_two_factors && user.acr != TWO_FACTORS && user.can_step_up;
    !reauthenticated && (req.prompt.login || too_old || needs_step_up)
}
