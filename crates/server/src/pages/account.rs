//! The account page and its forms, and the step-up prompt.
//!
//! Every form posts to its own route, checks the origin and the session-bound CSRF token, calls
//! one `Accounts` operation and answers 303: back to `/account` with `?done=` or `?error=` (a
//! code from a fixed list, rendered as a fixed sentence, so nothing a user typed or an attacker
//! chose ever comes back through the URL), or to `/account/reauth?next=...` when the operation
//! needs a recent authentication (`StepUpRequired`). One-time secrets (the TOTP key being
//! enrolled, the recovery codes) travel in the sealed flash cookie, never in a URL.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use trustgate_authn::TotpSecret;
use trustgate_authn::accounts::{AccountError, CurrentSession, subject};
use trustgate_core::Secret;

use super::cookies::CookieKind;
use super::csrf;
use super::login::INVALID_CODE;
use super::next::safe_next;
use super::render::{
    self, AccountPage, ConsentRow, ReauthPage, RecoveryCodesPage, SessionRow, TotpSetupPage,
};
use super::session::{
    Flash, PageForm, SameOrigin, SignedIn, account_error, cookie_policy, forbidden, with_cookies,
    with_next,
};
use crate::AppState;
use crate::client_context::ClientContext;

/// `?done=` / `?error=` on `/account` and `/account/totp`.
#[derive(Debug, Deserialize)]
pub struct Outcome {
    done: Option<String>,
    error: Option<String>,
}

/// A form with only the CSRF token.
#[derive(Debug, Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /account/password`.
#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm_password: String,
    sign_out_others: Option<String>,
}

/// A form with a code.
#[derive(Debug, Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

/// `POST /account/reauth`.
#[derive(Debug, Deserialize)]
pub struct ReauthForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
    code: Option<String>,
    next: Option<String>,
}

/// `?next=`.
#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

fn notice_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "password_changed" => "Your password was changed.",
        "password_changed_others_signed_out" => {
            "Your password was changed and your other sessions were signed out."
        }
        "totp_removed" => "The authenticator app was removed.",
        "session_revoked" => "The session was signed out.",
        "sessions_revoked" => {
            "All other sessions were signed out and applications must ask you to sign in again."
        }
        "reauthenticated" => "Thanks, you can continue.",
        "passkey_added" => "The passkey was added.",
        "passkey_removed" => "The passkey was removed.",
        "consent_revoked" => "The application's access was withdrawn.",
        "token_revoked" => "The token was revoked.",
        _ => return None,
    })
}

fn password_error_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "password_mismatch" => "The new passwords do not match.",
        "current_password_wrong" => "The current password is incorrect.",
        "password_too_short" => "The new password is too short.",
        "password_too_long" => "The new password is too long.",
        "password_common" => "The new password is too common; choose one that is harder to guess.",
        "password_contains_user_identity" => {
            "The new password must not contain your username or email address."
        }
        "password_invalid" => "The new password cannot be used.",
        _ => return None,
    })
}

fn totp_error_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "totp_exists" => "An authenticator app is already set up; remove it first.",
        "totp_missing" => "No authenticator app is set up.",
        "setup_expired" => "The setup expired. Start again.",
        _ => return None,
    })
}

fn session_error_text(code: &str) -> Option<&'static str> {
    (code == "session_not_found").then_some("That session no longer exists.")
}

pub(super) fn when(at: time::OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// `GET /account`.
pub async fn account_page(
    State(state): State<AppState>,
    SignedIn(current): SignedIn,
    Query(outcome): Query<Outcome>,
    headers: HeaderMap,
) -> Response {
    let user = &current.user;
    let rp = super::passkeys::relying_party(&state, &headers);
    let passkeys = match state.accounts.list_passkeys(&user.id).await {
        Ok(list) => list.into_iter().map(super::passkeys::row).collect(),
        Err(e) => return account_error(e),
    };
    let passkey_register = match &rp {
        Some(rp) if state.accounts.is_recent(&current.session) => {
            match state
                .accounts
                .begin_passkey_registration(&current, rp)
                .await
            {
                Ok(c) => Some(super::passkeys::form_of(c)),
                Err(e) => return account_error(e),
            }
        }
        _ => None,
    };
    let sessions = match state.accounts.list_sessions(&user.id).await {
        Ok(sessions) => sessions,
        Err(e) => return account_error(e),
    };
    let totp_enabled = match state.accounts.totp_enabled(&user.id).await {
        Ok(on) => on,
        Err(e) => return account_error(e),
    };
    let consents = match state.oauth.consents(&user.id).await {
        Ok(consents) => consents
            .into_iter()
            .map(|c| ConsentRow {
                client_id: c.client_id,
                client_name: c.client_name,
                scopes: c.scopes.join(" "),
                granted: when(c.granted_at),
            })
            .collect(),
        Err(e) => {
            tracing::error!(error = %e, "listing consents failed");
            return render::busy();
        }
    };
    let rows = sessions
        .into_iter()
        .map(|s| SessionRow {
            current: s.id == current.session.id,
            created: when(s.created_at),
            last_seen: when(s.last_seen_at),
            ip: s.ip.unwrap_or_else(|| "unknown".into()),
            user_agent: s.user_agent.unwrap_or_else(|| "Unknown browser".into()),
            id: s.id,
        })
        .collect();
    let (tokens, token_roles) =
        match super::tokens::section(&state, &user.id, state.clock.now()).await {
            Ok(section) => section,
            Err(page) => return page,
        };
    let error = outcome.error.as_deref().unwrap_or_default();
    let notice = outcome
        .done
        .as_deref()
        .and_then(notice_text)
        .or_else(|| session_error_text(error))
        .map(str::to_owned);
    let page = AccountPage {
        csrf: csrf::session_token(current.token.expose()),
        username: user.username.clone(),
        email: user.email.clone(),
        name: user.name.clone(),
        totp_enabled,
        sessions: rows,
        notice,
        password_error: password_error_text(error).map(str::to_owned),
        totp_error: totp_error_text(error).map(str::to_owned),
        passkeys,
        passkey_register,
        passkeys_available: rp.is_some(),
        passkey_error: super::passkeys::passkey_error_text(error).map(str::to_owned),
        consents,
        tokens,
        token_roles,
        token_error: super::tokens::token_error_text(error).map(str::to_owned),
    };
    render::html(StatusCode::OK, &page)
}

/// Whether the form's token belongs to this session.
pub(super) fn token_ok(current: &CurrentSession, presented: &str) -> bool {
    csrf::session_token_matches(current.token.expose(), presented)
}

/// 303 to the step-up prompt, coming back to `back` afterwards.
pub(super) fn step_up(back: &str) -> Response {
    render::see_other(&with_next("/account/reauth", back))
}

/// `POST /account/password`.
pub async fn change_password(
    _: SameOrigin,
    State(state): State<AppState>,
    SignedIn(current): SignedIn,
    ClientContext(ctx): ClientContext,
    PageForm(form): PageForm<PasswordForm>,
) -> Response {
    if !token_ok(&current, &form.csrf) {
        return forbidden();
    }
    // Recency first, so a stale session is sent to step up before anything is compared.
    if !state.accounts.is_recent(&current.session) {
        return step_up("/account#password");
    }
    if form.new_password != form.confirm_password {
        return render::see_other("/account?error=password_mismatch#password");
    }
    let others = form.sign_out_others.is_some();
    let result = state
        .accounts
        .change_password(
            &current,
            Secret::new(form.current_password),
            Secret::new(form.new_password),
            others,
            &ctx,
        )
        .await;
    match result {
        Ok(()) if others => render::see_other("/account?done=password_changed_others_signed_out"),
        Ok(()) => render::see_other("/account?done=password_changed"),
        Err(AccountError::StepUpRequired) => step_up("/account#password"),
        Err(AccountError::InvalidCredentials) => {
            render::see_other("/account?error=current_password_wrong#password")
        }
        Err(AccountError::PasswordRejected(r)) => {
            render::see_other(&format!("/account?error={}#password", r.code()))
        }
        Err(AccountError::InvalidInput(_)) => {
            render::see_other("/account?error=password_invalid#password")
        }
        Err(other) => account_error(other),
    }
}

/// `POST /account/totp`: starts enrolment and shows the QR code (via the flash cookie).
pub async fn totp_begin(
    _: SameOrigin,
    State(state): State<AppState>,
    SignedIn(current): SignedIn,
    PageForm(form): PageForm<TokenForm>,
) -> Response {
    if !token_ok(&current, &form.csrf) {
        return forbidden();
    }
    match state.accounts.begin_totp_enrollment(&current).await {
        Ok(enrollment) => {
            let policy = cookie_policy(&state);
            let flash = Flash::TotpSetup(enrollment.secret_base32.expose().to_owned())
                .cookie(policy, current.token.expose());
            with_cookies(render::see_other("/account/totp"), flash)
        }
        Err(AccountError::StepUpRequired) => step_up("/account#totp"),
        Err(AccountError::Conflict(_)) => render::see_other("/account?error=totp_exists#totp"),
        Err(other) => account_error(other),
    }
}

/// `GET /account/totp`: the QR code and the confirmation form.
pub async fn totp_setup_page(
    State(state): State<AppState>,
    SignedIn(current): SignedIn,
    Query(outcome): Query<Outcome>,
    headers: HeaderMap,
) -> Response {
    let policy = cookie_policy(&state);
    let Some(Flash::TotpSetup(secret)) = Flash::read(policy, &headers, current.token.expose())
    else {
        return render::see_other("/account#totp");
    };
    let issuer = &state.accounts.config().totp_issuer;
    let qr = TotpSecret::from_base32(&secret)
        .ok()
        .and_then(|s| s.qr_png_base64(issuer, &current.user.username).ok());
    let Some(qr) = qr else {
        return render::see_other("/account?error=setup_expired#totp");
    };
    let page = TotpSetupPage {
        csrf: csrf::session_token(current.token.expose()),
        qr_png_base64: qr.expose().to_owned(),
        secret,
        error: (outcome.error.as_deref() == Some("invalid_code")).then(|| INVALID_CODE.into()),
    };
    render::html(StatusCode::OK, &page)
}

/// `POST /account/totp/confirm`: turns TOTP on and shows the recovery codes once.
pub async fn totp_confirm(
    _: SameOrigin,
    State(state): State<AppState>,
    SignedIn(current): SignedIn,
    ClientContext(ctx): ClientContext,
    PageForm(form): PageForm<CodeForm>,
) -> Response {
    if !token_ok(&current, &form.csrf) {
        return forbidden();
    }
    let code: String = form.code.chars().filter(|c| !c.is_whitespace()).collect();
    match state
        .accounts
        .confirm_totp_enrollment(&current, &code, &ctx)
        .await
    {
        Ok(codes) => {
            let policy = cookie_policy(&state);
            let codes = codes.iter().map(|c| c.expose().to_owned()).collect();
            let flash = Flash::RecoveryCodes(codes).cookie(policy, current.token.expose());
            with_cookies(render::see_other("/account/recovery-codes"), flash)
        }
        Err(AccountError::InvalidSecondFactor | AccountError::InvalidInput(_)) => {
            render::see_other("/account/totp?error=invalid_code")
        }
        Err(AccountError::StepUpRequired) => step_up("/account#totp"),
        Err(AccountError::NotFound | AccountError::Conflict(_)) => {
            render::see_other("/account?error=setup_expired#totp")
        }
        Err(other) => account_error(other),
    }
}

/// `GET /account/recovery-codes`: the codes from the flash cookie, which is deleted.
pub async fn recovery_codes_page(
    State(state): State<AppState>,
    SignedIn(current): SignedIn,
    headers: HeaderMap,
) -> Response {
    let policy = cookie_policy(&state);
    let Some(Flash::RecoveryCodes(codes)) = Flash::read(policy, &headers, current.token.expose())
    else {
        return render::see_other("/account#totp");
    };
    let page = RecoveryCodesPage {
        csrf: csrf::session_token(current.token.expose()),
        codes,
    };
    with_cookies(
        render::html(StatusCode::OK, &page),
        [policy.clear(CookieKind::Flash)],
    )
}

/// `POST /account/totp/remove`.
pub async fn totp_remove(
    _: SameOrigin,
    State(state): State<AppState>,
    SignedIn(current): SignedIn,
    ClientContext(ctx): ClientContext,
    PageForm(form): PageForm<TokenForm>,
) -> Response {
    if !token_ok(&current, &form.csrf) {
        return forbidden();
    }
    match state.accounts.remove_totp(&current, &ctx).await {
        Ok(()) => render::see_other("/account?done=totp_removed#totp"),
        Err(AccountError::StepUpRequired) => step_up("/account#totp"),
        Err(AccountError::NotFound) => render::see_other("/account?error=totp_missing#totp"),
        Err(other) => account_error(other),
    }
}

/// `POST /account/sessions/{id}/revoke`. Revoking the current session signs out.
pub async fn revoke_session(
    _: SameOrigin,
    State(state): State<AppState>,
    SignedIn(current): SignedIn,
    ClientContext(ctx): ClientContext,
    Path(session_id): Path<String>,
    PageForm(form): PageForm<TokenForm>,
) -> Response {
    if !token_ok(&current, &form.csrf) {
        return forbidden();
    }
    let user_id = &current.user.id;
    if session_id == current.session.id {
        let policy = cookie_policy(&state);
        return match state.accounts.logout(current.token.expose(), &ctx).await {
            Ok(()) => with_cookies(
                render::see_other("/login"),
                [policy.clear(CookieKind::Session)],
            ),
            Err(e) => account_error(e),
        };
    }
    match state
        .accounts
        .revoke_session(user_id, &session_id, &subject(user_id), &ctx)
        .await
    {
        Ok(()) => render::see_other("/account?done=session_revoked#sessions"),
        Err(AccountError::NotFound | AccountError::InvalidInput(_)) => {
            render::see_other("/account?error=session_not_found#sessions")
        }
        Err(other) => account_error(other),
    }
}

/// `POST /account/sessions/revoke-others`.
pub async fn revoke_other_sessions(
    _: SameOrigin,
    State(state): State<AppState>,
    SignedIn(current): SignedIn,
    ClientContext(ctx): ClientContext,
    PageForm(form): PageForm<TokenForm>,
) -> Response {
    if !token_ok(&current, &form.csrf) {
        return forbidden();
    }
    let user_id = &current.user.id;
    match state
        .accounts
        .revoke_all_sessions(user_id, Some(&current.session.id), &subject(user_id), &ctx)
        .await
    {
        // "Sign out everywhere else" also ends what applications hold for this user: refresh
        // tokens die at once, access tokens stop introspecting (see `Provider::revoke_user`).
        Ok(_) => match state.oauth.revoke_user(user_id).await {
            Ok(_) => render::see_other("/account?done=sessions_revoked#sessions"),
            Err(e) => {
                tracing::error!(error = %e, "revoking the user's OAuth grants failed");
                render::busy()
            }
        },
        Err(other) => account_error(other),
    }
}

/// `GET /account/reauth`: the step-up prompt.
pub async fn reauth_page(
    State(state): State<AppState>,
    SignedIn(current): SignedIn,
    Query(query): Query<NextQuery>,
) -> Response {
    let totp = match state.accounts.totp_enabled(&current.user.id).await {
        Ok(on) => on,
        Err(e) => return account_error(e),
    };
    let page = ReauthPage {
        csrf: csrf::session_token(current.token.expose()),
        next: safe_next(query.next.as_deref()),
        username: current.user.username.clone(),
        totp,
        error: None,
    };
    render::html(StatusCode::OK, &page)
}

/// `POST /account/reauth`: a new session id with a fresh `auth_time`, then back to `next`.
pub async fn reauth_submit(
    _: SameOrigin,
    State(state): State<AppState>,
    SignedIn(current): SignedIn,
    ClientContext(ctx): ClientContext,
    PageForm(form): PageForm<ReauthForm>,
) -> Response {
    if !token_ok(&current, &form.csrf) {
        return forbidden();
    }
    let next = safe_next(form.next.as_deref());
    let code: Option<String> = form
        .code
        .as_deref()
        .map(|c| c.chars().filter(|c| !c.is_whitespace()).collect())
        .filter(|c: &String| !c.is_empty());
    let result = state
        .accounts
        .reauthenticate(&current, Secret::new(form.password), code.as_deref(), &ctx)
        .await;
    match result {
        Ok(issued) => {
            let policy = cookie_policy(&state);
            let cookie = policy.set(CookieKind::Session, issued.token.expose(), None);
            with_cookies(render::see_other(&next), cookie)
        }
        Err(
            AccountError::InvalidCredentials
            | AccountError::InvalidSecondFactor
            | AccountError::InvalidInput(_),
        ) => {
            let totp = state
                .accounts
                .totp_enabled(&current.user.id)
                .await
                .unwrap_or(true);
            let page = ReauthPage {
                csrf: form.csrf,
                next,
                username: current.user.username.clone(),
                totp,
                error: Some(if totp {
                    "The password or the code is incorrect.".into()
                } else {
                    "The password is incorrect.".into()
                }),
            };
            render::html(StatusCode::OK, &page)
        }
        Err(other) => account_error(other),
    }
}
