//! Signing in and out: `/login` (username and password), `/login/mfa` (second factor),
//! `/logout`.
//!
//! A failed attempt shows the same page, with the same status and text, whether the user does
//! not exist, the password is wrong or the account is disabled (the `Accounts` service makes
//! them indistinguishable, and the page adds nothing). A successful login always issues a new
//! session id, and a session cookie the browser brought along is ended first, so an id planted
//! before login (session fixation) is never promoted.

use axum::extract::{Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use trustgate_authn::accounts::{AccountError, FactorKind, IssuedSession, LoginStep, SecondFactor};
use trustgate_core::Secret;

use super::cookies::{CookieKind, CookiePolicy};
use super::csrf;
use super::next::safe_next;
use super::passkeys::passkey_login_form;
use super::render::{self, LoginPage, MfaPage};
use super::session::{
    PageForm, SameOrigin, account_error, cookie_policy, forbidden, form_token, login_url,
    with_cookies, with_next,
};
use crate::AppState;
use crate::client_context::ClientContext;

/// The message of every failed password attempt.
pub const INVALID_CREDENTIALS: &str = "Incorrect username or password.";
/// The message of every failed second-factor attempt.
pub const INVALID_CODE: &str =
    "That code is incorrect, expired or already used. Check your app and try again.";

/// `?next=` on the login pages.
#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
    /// OIDC `login_hint`, passed on by `/oauth2/authorize`: prefills the username.
    login_hint: Option<String>,
}

/// `POST /login`.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

/// `POST /login/mfa`.
#[derive(Debug, Deserialize)]
pub struct MfaForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
    next: Option<String>,
}

/// `POST /logout`.
#[derive(Debug, Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    csrf: String,
}

/// The pre-login CSRF token of this browser, and the cookie to set if it is new.
pub(super) fn form_csrf(
    policy: CookiePolicy,
    headers: &HeaderMap,
) -> (String, Option<http::HeaderValue>) {
    match form_token(policy, headers) {
        Some(token) => (token.to_owned(), None),
        None => {
            let token = csrf::new_form_token();
            let cookie = policy.set(CookieKind::Csrf, &token, None);
            (token, cookie)
        }
    }
}

/// `GET /login`: the form. A browser already signed in goes straight on to `next`.
pub async fn login_page(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    Query(query): Query<NextQuery>,
    headers: HeaderMap,
) -> Response {
    let policy = cookie_policy(&state);
    let next = safe_next(query.next.as_deref());
    if let Some(token) = policy.get(&headers, CookieKind::Session)
        && let Ok(Some(_)) = state.accounts.authenticate_session(token, &ctx).await
    {
        return render::see_other(&next);
    }
    let (csrf, cookie) = form_csrf(policy, &headers);
    let page = LoginPage {
        csrf,
        next,
        username: query
            .login_hint
            .as_deref()
            .map(|hint| hint.trim().chars().take(320).collect())
            .unwrap_or_default(),
        error: None,
        notice: None,
        passkey: passkey_login_form(&state, &headers),
    };
    with_cookies(render::html(StatusCode::OK, &page), cookie)
}

/// `POST /login`.
pub async fn login_submit(
    _: SameOrigin,
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    headers: HeaderMap,
    PageForm(form): PageForm<LoginForm>,
) -> Response {
    let policy = cookie_policy(&state);
    if !csrf::double_submit_matches(form_token(policy, &headers), &form.csrf) {
        return forbidden();
    }
    let next = safe_next(form.next.as_deref());
    let username: String = form.username.trim().chars().take(320).collect();
    let failed = |status| {
        render::html(
            status,
            &LoginPage {
                csrf: form.csrf.clone(),
                next: next.clone(),
                username: username.clone(),
                error: Some(INVALID_CREDENTIALS.into()),
                notice: None,
                passkey: passkey_login_form(&state, &headers),
            },
        )
    };
    if username.is_empty() || form.password.is_empty() {
        return failed(StatusCode::OK);
    }
    let step = state
        .accounts
        .login_password(&username, Secret::new(form.password), &ctx)
        .await;
    match step {
        Ok(LoginStep::Complete(issued)) => {
            end_presented_session(&state, policy, &headers, &ctx).await;
            signed_in(policy, &issued, &next)
        }
        Ok(LoginStep::SecondFactorRequired { pending, .. }) => {
            let ttl = state.accounts.config().pending_login_ttl.as_secs();
            let cookie = policy.set(CookieKind::Pending, pending.expose(), Some(ttl));
            with_cookies(render::see_other(&with_next("/login/mfa", &next)), cookie)
        }
        Err(AccountError::InvalidCredentials | AccountError::InvalidInput(_)) => {
            failed(StatusCode::OK)
        }
        Err(other) => account_error(other),
    }
}

/// Ends the session whose cookie came with a login request, if any (fixation defence).
pub(super) async fn end_presented_session(
    state: &AppState,
    policy: CookiePolicy,
    headers: &HeaderMap,
    ctx: &trustgate_audit::RequestContext,
) {
    if let Some(old) = policy.get(headers, CookieKind::Session)
        && let Err(e) = state.accounts.logout(old, ctx).await
    {
        tracing::warn!(error = %e, "could not end the session presented at login");
    }
}

/// 303 to `next` with the new session cookie; the pending-login cookie is deleted.
pub(super) fn signed_in(policy: CookiePolicy, issued: &IssuedSession, next: &str) -> Response {
    let session = policy.set(CookieKind::Session, issued.token.expose(), None);
    with_cookies(
        render::see_other(next),
        session.into_iter().chain([
            policy.clear(CookieKind::Pending),
            policy.clear(CookieKind::Flash),
        ]),
    )
}

/// `GET /login/mfa`: the code form, while a pending login is alive.
pub async fn mfa_page(
    State(state): State<AppState>,
    Query(query): Query<NextQuery>,
    headers: HeaderMap,
) -> Response {
    let policy = cookie_policy(&state);
    let next = safe_next(query.next.as_deref());
    let Some(pending) = policy.get(&headers, CookieKind::Pending) else {
        return render::see_other(&login_url(&next));
    };
    let methods = match state.accounts.pending_login_methods(pending).await {
        Ok(methods) => methods,
        Err(AccountError::InvalidSecondFactor | AccountError::InvalidInput(_)) => {
            return with_cookies(
                render::see_other(&login_url(&next)),
                [policy.clear(CookieKind::Pending)],
            );
        }
        Err(other) => return account_error(other),
    };
    let (csrf, cookie) = form_csrf(policy, &headers);
    let page = MfaPage {
        csrf,
        next,
        recovery: methods.contains(&FactorKind::RecoveryCode),
        error: None,
    };
    with_cookies(render::html(StatusCode::OK, &page), cookie)
}

/// A typed code: six digits (spaces ignored) is a TOTP code, anything else a recovery code.
pub fn classify_code(code: &str) -> Option<SecondFactor> {
    let compact: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() || compact.len() > 64 {
        return None;
    }
    if compact.len() == 6 && compact.bytes().all(|b| b.is_ascii_digit()) {
        Some(SecondFactor::Totp(compact))
    } else {
        Some(SecondFactor::RecoveryCode(compact))
    }
}

/// `POST /login/mfa`.
pub async fn mfa_submit(
    _: SameOrigin,
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    headers: HeaderMap,
    PageForm(form): PageForm<MfaForm>,
) -> Response {
    let policy = cookie_policy(&state);
    if !csrf::double_submit_matches(form_token(policy, &headers), &form.csrf) {
        return forbidden();
    }
    let next = safe_next(form.next.as_deref());
    let Some(pending) = policy.get(&headers, CookieKind::Pending) else {
        return render::see_other(&login_url(&next));
    };
    let failed = || {
        render::html(
            StatusCode::OK,
            &MfaPage {
                csrf: form.csrf.clone(),
                next: next.clone(),
                recovery: true,
                error: Some(INVALID_CODE.into()),
            },
        )
    };
    let Some(factor) = classify_code(&form.code) else {
        return failed();
    };
    match state
        .accounts
        .login_second_factor(pending, factor, &ctx)
        .await
    {
        Ok(issued) => {
            end_presented_session(&state, policy, &headers, &ctx).await;
            signed_in(policy, &issued, &next)
        }
        Err(AccountError::InvalidSecondFactor | AccountError::InvalidInput(_)) => failed(),
        Err(other) => account_error(other),
    }
}

/// `POST /logout`: ends the session (if the token matches it) and deletes the cookies.
pub async fn logout(
    _: SameOrigin,
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    headers: HeaderMap,
    PageForm(form): PageForm<TokenForm>,
) -> Response {
    let policy = cookie_policy(&state);
    if let Some(token) = policy.get(&headers, CookieKind::Session)
        && !csrf::session_token_matches(token, &form.csrf)
    {
        return forbidden();
    }
    match crate::oauth::end_browser_session(&state, &headers, &ctx).await {
        Ok(cleared) => with_cookies(render::see_other("/login"), cleared),
        Err(response) => response,
    }
}
