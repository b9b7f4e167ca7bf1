//! `/oauth2/authorize` and the consent page.
//!
//! The authorization endpoint is where a browser arrives from a client. Until the client and the
//! redirect URI are verified, every problem is an error page here; afterwards, errors go back to
//! the client. Login and step-up reuse `/login` and `/account/reauth` with `next` pointing back
//! at this endpoint; consent is a page whose POST (CSRF token bound to the session, origin
//! checked) re-runs the whole validation with the user's decision, so nothing but the original
//! request parameters is trusted from the form.

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::header::LOCATION;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;
use trustgate_authn::accounts::{CurrentSession, RequestContext};
use trustgate_oauth::OAuthError;
use trustgate_oauth::provider::{AuthorizeOutcome, ConsentDecision, EndUser};
use trustgate_oauth::request::Params;

use super::parse_params;
use crate::AppState;
use crate::client_context::ClientContext;
use crate::pages::cookies::CookieKind;
use crate::pages::csrf;
use crate::pages::render::{self, ErrorPage};
use crate::pages::session::{PageForm, SameOrigin, SignedIn, cookie_policy, forbidden, with_next};

/// The consent page.
#[derive(Debug, Template)]
#[template(path = "consent.html")]
pub struct ConsentPage {
    /// Session-bound CSRF token.
    pub csrf: String,
    /// The client's name.
    pub client_name: String,
    /// The client's id.
    pub client_id: String,
    /// Requested scopes with their descriptions.
    pub scopes: Vec<(String, String)>,
    /// The authorization request to post back (a query string).
    pub request: String,
    /// Who is signed in.
    pub username: String,
}

/// `GET /oauth2/authorize`.
pub async fn authorize_get(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = match parse_params(query.unwrap_or_default().as_bytes()) {
        Ok(params) => params,
        Err(e) => return error_page(&e),
    };
    authorize(&state, &ctx, &headers, params, StatusCode::FOUND).await
}

/// `POST /oauth2/authorize` (OIDC Core §3.1.2.1 allows the form encoding). A cross-site post
/// carries no `SameSite=Lax` session cookie, so it leads to the login page like a fresh visit.
pub async fn authorize_post(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let params = match parse_params(&body) {
        Ok(params) => params,
        Err(e) => return error_page(&e),
    };
    authorize(&state, &ctx, &headers, params, StatusCode::SEE_OTHER).await
}

async fn authorize(
    state: &AppState,
    ctx: &RequestContext,
    headers: &HeaderMap,
    params: Params,
    redirect_status: StatusCode,
) -> Response {
    let current = match optional_session(state, headers, ctx).await {
        Ok(current) => current,
        Err(response) => return response,
    };
    let user = match &current {
        Some(current) => match end_user(state, current).await {
            Ok(user) => Some(user),
            Err(response) => return response,
        },
        None => None,
    };
    let outcome = state
        .oauth
        .authorize(&params, user.as_ref(), ConsentDecision::Ask, ctx)
        .await;
    respond(outcome, current.as_ref(), redirect_status)
}

/// The signed-in session, if any (a stale cookie is simply no session here).
pub(super) async fn optional_session(
    state: &AppState,
    headers: &HeaderMap,
    ctx: &RequestContext,
) -> Result<Option<CurrentSession>, Response> {
    let policy = cookie_policy(state);
    let Some(token) = policy.get(headers, CookieKind::Session) else {
        return Ok(None);
    };
    match state.accounts.authenticate_session(token, ctx).await {
        Ok(current) => Ok(current),
        Err(e) => Err(crate::pages::session::account_error(e)),
    }
}

/// The session as the provider sees it.
pub(super) async fn end_user(
    state: &AppState,
    current: &CurrentSession,
) -> Result<EndUser, Response> {
    let can_step_up = state
        .accounts
        .totp_enabled(&current.user.id)
        .await
        .map_err(crate::pages::session::account_error)?;
    Ok(EndUser {
        user_id: current.user.id.clone(),
        session_id: current.session.id.clone(),
        auth_time: current.session.auth_time,
        amr: current.session.amr.clone(),
        acr: current.session.acr.clone(),
        can_step_up,
    })
}

fn respond(
    outcome: AuthorizeOutcome,
    current: Option<&CurrentSession>,
    redirect_status: StatusCode,
) -> Response {
    match outcome {
        AuthorizeOutcome::Redirect(url) => redirect(redirect_status, &url),
        AuthorizeOutcome::ErrorPage(error) => error_page(&error),
        AuthorizeOutcome::Login {
            resume,
            force,
            login_hint,
        } => {
            let next = crate::pages::next::safe_next(Some(&resume));
            if next != resume {
                return error_page(&OAuthError::invalid_request(
                    "the authorization request is too long to resume after sign-in; use PAR",
                ));
            }
            let mut location = if force && current.is_some() {
                with_next("/account/reauth", &next)
            } else {
                with_next("/login", &next)
            };
            if let Some(hint) = login_hint.filter(|_| current.is_none()) {
                location.push_str("&login_hint=");
                location.extend(url::form_urlencoded::byte_serialize(hint.as_bytes()));
            }
            redirect(redirect_status, &location)
        }
        AuthorizeOutcome::Consent(prompt) => {
            let Some(current) = current else {
                return render::internal();
            };
            let page = ConsentPage {
                csrf: csrf::session_token(current.token.expose()),
                client_name: prompt.client_name,
                client_id: prompt.client_id,
                scopes: prompt
                    .scopes
                    .iter()
                    .map(|s| (s.clone(), scope_description(s)))
                    .collect(),
                request: prompt.resume.to_query(),
                username: current.user.username.clone(),
            };
            render::html(StatusCode::OK, &page)
        }
    }
}

fn redirect(status: StatusCode, location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => (status, [(LOCATION, value)]).into_response(),
        Err(_) => error_page(&OAuthError::invalid_request(
            "the redirect URI is malformed",
        )),
    }
}

/// What a scope means, in words for the consent page.
fn scope_description(scope: &str) -> String {
    match scope {
        "openid" => "Confirm who you are (your user id)".into(),
        "profile" => "Your name, username and language".into(),
        "email" => "Your email address and whether it is verified".into(),
        "offline_access" => "Stay connected while you are away (a long-lived refresh token)".into(),
        other => format!("Access \u{201c}{other}\u{201d}"),
    }
}

/// The authorization error page: 400, the description, no redirect.
pub(super) fn error_page(error: &OAuthError) -> Response {
    render::html(
        StatusCode::BAD_REQUEST,
        &ErrorPage {
            title: "This sign-in request cannot be completed".into(),
            message: format!(
                "The application sent an invalid request ({}): {}. Go back to the application and \
                 try again, or contact its developer.",
                error.code, error.description
            ),
            link_href: "/account".into(),
            link_text: "Go to your account".into(),
        },
    )
}

/// `POST /consent`.
#[derive(Debug, Deserialize)]
pub struct ConsentForm {
    csrf: String,
    request: String,
    decision: String,
}

/// `POST /consent`: the user's answer; 303 to the client.
pub async fn consent_submit(
    _: SameOrigin,
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    SignedIn(current): SignedIn,
    PageForm(form): PageForm<ConsentForm>,
) -> Response {
    if !csrf::session_token_matches(current.token.expose(), &form.csrf) {
        return forbidden();
    }
    let decision = match form.decision.as_str() {
        "approve" => ConsentDecision::Approve,
        "deny" => ConsentDecision::Deny,
        _ => return render::bad_request(),
    };
    let params = match parse_params(form.request.as_bytes()) {
        Ok(params) => params,
        Err(e) => return error_page(&e),
    };
    let user = match end_user(&state, &current).await {
        Ok(user) => user,
        Err(response) => return response,
    };
    let outcome = state
        .oauth
        .authorize(&params, Some(&user), decision, &ctx)
        .await;
    respond(outcome, Some(&current), StatusCode::SEE_OTHER)
}

/// `POST /account/consents/{client_id}/revoke`.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// `POST /account/consents/{client_id}/revoke`: withdraws a remembered consent (and revokes the
/// client's grants for this user).
pub async fn withdraw_consent(
    _: SameOrigin,
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    SignedIn(current): SignedIn,
    Path(client_id): Path<String>,
    PageForm(form): PageForm<CsrfForm>,
) -> Response {
    if !csrf::session_token_matches(current.token.expose(), &form.csrf) {
        return forbidden();
    }
    match state
        .oauth
        .withdraw_consent(&current.user.id, &client_id, &ctx)
        .await
    {
        Ok(_) => render::see_other("/account?done=consent_revoked"),
        Err(e) => {
            tracing::error!(error = %e, "withdrawing a consent failed");
            render::busy()
        }
    }
}
