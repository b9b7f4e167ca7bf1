//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) and back-channel logout
//! notifications (OpenID Connect Back-Channel Logout 1.0).
//!
//! A logout request with a valid `id_token_hint` for the signed-in user ends the session at once;
//! any other request with a live session asks the user first (a CSRF-protected form), so a
//! third-party page cannot sign users out. `post_logout_redirect_uri` must be registered exactly
//! for the client named by the hint or `client_id`; without one the user sees a signed-out page.
//! Ending a session revokes the grants it produced (except `offline_access` ones) and posts a
//! signed logout token to every client with a `backchannel_logout_uri` that had one.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::header::LOCATION;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;
use trustgate_audit::RequestContext;
use trustgate_oauth::provider::{BackchannelNotice, LogoutRequest};
use trustgate_oauth::request::Params;

use super::authorize::{error_page, optional_session};
use super::parse_params;
use crate::AppState;
use crate::client_context::ClientContext;
use crate::pages::cookies::CookieKind;
use crate::pages::csrf;
use crate::pages::render::{self, ErrorPage};
use crate::pages::session::{
    PageForm, SameOrigin, SignedIn, account_error, cookie_policy, forbidden, with_cookies,
};

/// The "sign out?" confirmation.
#[derive(Debug, Template)]
#[template(path = "logout.html")]
pub struct LogoutPage {
    /// Session-bound CSRF token.
    pub csrf: String,
    /// The logout request to post back (a query string).
    pub request: String,
    /// Who is signed in.
    pub username: String,
}

/// `GET /oidc/logout`.
pub async fn logout_get(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    match parse_params(query.unwrap_or_default().as_bytes()) {
        Ok(params) => logout(&state, &ctx, &headers, params).await,
        Err(e) => error_page(&e),
    }
}

/// `POST /oidc/logout` (the spec allows both).
pub async fn logout_post(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    match parse_params(&body) {
        Ok(params) => logout(&state, &ctx, &headers, params).await,
        Err(e) => error_page(&e),
    }
}

async fn logout(
    state: &AppState,
    ctx: &RequestContext,
    headers: &HeaderMap,
    params: Params,
) -> Response {
    let request = match state.oauth.logout_request(&params).await {
        Ok(request) => request,
        Err(e) => return error_page(&e),
    };
    let current = match optional_session(state, headers, ctx).await {
        Ok(current) => current,
        Err(response) => return response,
    };
    let Some(current) = current else {
        return signed_out(&request, Vec::new());
    };
    if request.hint_subject.as_deref() == Some(current.user.id.as_str()) {
        return match end_browser_session(state, headers, ctx).await {
            Ok(cookies) => signed_out(&request, cookies),
            Err(response) => response,
        };
    }
    render::html(
        StatusCode::OK,
        &LogoutPage {
            csrf: csrf::session_token(current.token.expose()),
            request: params.to_query(),
            username: current.user.username.clone(),
        },
    )
}

/// `POST /oidc/logout/confirm`.
#[derive(Debug, Deserialize)]
pub struct ConfirmForm {
    csrf: String,
    request: String,
}

/// `POST /oidc/logout/confirm`: the user confirmed.
pub async fn logout_confirm(
    _: SameOrigin,
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    SignedIn(current): SignedIn,
    headers: HeaderMap,
    PageForm(form): PageForm<ConfirmForm>,
) -> Response {
    if !csrf::session_token_matches(current.token.expose(), &form.csrf) {
        return forbidden();
    }
    let request = match parse_params(form.request.as_bytes()) {
        Ok(params) => match state.oauth.logout_request(&params).await {
            Ok(request) => request,
            Err(e) => return error_page(&e),
        },
        Err(e) => return error_page(&e),
    };
    match end_browser_session(&state, &headers, &ctx).await {
        Ok(cookies) => signed_out(&request, cookies),
        Err(response) => response,
    }
}

fn signed_out(request: &LogoutRequest, cookies: Vec<HeaderValue>) -> Response {
    let response = match &request.redirect {
        Some(uri) => match HeaderValue::from_str(uri) {
            Ok(location) => (StatusCode::SEE_OTHER, [(LOCATION, location)]).into_response(),
            Err(_) => render::bad_request(),
        },
        None => render::html(
            StatusCode::OK,
            &ErrorPage {
                title: "You are signed out".into(),
                message: "You have been signed out. You can close this window.".into(),
                link_href: "/login".into(),
                link_text: "Sign in again".into(),
            },
        ),
    };
    with_cookies(response, cookies)
}

/// Ends the browser's login session: the session is revoked, the grants it produced are
/// revoked and back-channel logout tokens are queued for delivery. Returns the cookies
/// that clear the session. Shared by `/logout` and `/oidc/logout`.
pub(crate) async fn end_browser_session(
    state: &AppState,
    headers: &HeaderMap,
    ctx: &RequestContext,
) -> Result<Vec<HeaderValue>, Response> {
    let policy = cookie_policy(state);
    let cleared = vec![
        policy.clear(CookieKind::Session),
        policy.clear(CookieKind::Flash),
    ];
    let Some(token) = policy.get(headers, CookieKind::Session) else {
        return Ok(cleared);
    };
    let current = state
        .accounts
        .authenticate_session(token, ctx)
        .await
        .map_err(account_error)?;
    state
        .accounts
        .logout(token, ctx)
        .await
        .map_err(account_error)?;
    if let Some(current) = current {
        match state
            .oauth
            .end_session(&current.user.id, &current.session.id, ctx)
            .await
        {
            Ok(notices) => deliver_backchannel(state, notices).await,
            Err(e) => tracing::error!(error = %e, "ending the session's OAuth grants failed"),
        }
    }
    Ok(cleared)
}

/// Queues each logout token for its client (OIDC Back-Channel Logout §2.5) in the delivery
/// outbox: a slow or dead client never holds up the user's sign-out, and a client that is down
/// gets the token when it comes back (retries with backoff, then the dead-letter list; see
/// `trustgate-webhooks`). Every attempt is audited by the worker.
async fn deliver_backchannel(state: &AppState, notices: Vec<BackchannelNotice>) {
    let queued: Vec<(String, String, String)> = notices
        .into_iter()
        .map(|n| (n.client_id, n.uri, n.logout_token))
        .collect();
    if let Err(e) = state.webhooks.enqueue_backchannel(&queued).await {
        tracing::error!(
            error = %e,
            clients = queued.len(),
            "cannot queue back-channel logout tokens; those clients are not notified"
        );
    }
}
