//! The device flow's verification page (RFC 8628 §3.3): the user, signed in, types the code
//! the device shows (or arrives with it filled in from `verification_uri_complete`), sees which
//! application asks for what, and approves or denies. The code is always shown for confirmation,
//! even when it came in the link, so a link sent by an attacker cannot connect their device
//! unnoticed (§5.4).
//!
//! Guessing is throttled (§5.1): every lookup of a typed code, on the form and at the decision,
//! first asks `Accounts::check_device_code_entry` (per session and per client IP, counts shared
//! by every replica) and is answered 429 with `Retry-After` while a wait runs, whether or not the
//! code is right; a code that matches nothing is counted. Counts that cannot be read refuse with
//! 503.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use http::StatusCode;
use serde::Deserialize;
use trustgate_audit::RequestContext;
use trustgate_authn::accounts::CurrentSession;
use trustgate_oauth::device::display_user_code;
use trustgate_oauth::provider::DevicePrompt;

use super::authorize::end_user;
use crate::AppState;
use crate::client_context::ClientContext;
use crate::pages::csrf;
use crate::pages::render;
use crate::pages::session::{PageForm, SameOrigin, SignedIn, account_error, forbidden};

/// `/device` in its two states: code entry, and confirmation.
#[derive(Debug, Template)]
#[template(path = "device.html")]
pub struct DevicePage {
    /// Session-bound CSRF token.
    pub csrf: String,
    /// The code as typed or filled in.
    pub user_code: String,
    /// Why the code was refused.
    pub error: Option<String>,
    /// The request to confirm, once the code was found.
    pub confirm: Option<DeviceConfirm>,
    /// The outcome after a decision.
    pub done: Option<String>,
}

/// What the confirmation shows.
#[derive(Debug, Clone)]
pub struct DeviceConfirm {
    /// The client's name.
    pub client_name: String,
    /// Requested scopes.
    pub scopes: Vec<String>,
}

const UNKNOWN_CODE: &str =
    "That code is not valid or has expired. Check the code on your device and try again.";

/// `GET /device?user_code=`.
#[derive(Debug, Deserialize)]
pub struct DeviceQuery {
    user_code: Option<String>,
}

/// `GET /device`.
pub async fn device_page(
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    SignedIn(current): SignedIn,
    Query(query): Query<DeviceQuery>,
) -> Response {
    let csrf = csrf::session_token(current.token.expose());
    match query.user_code {
        Some(typed) => confirm_or_retry(&state, &current, &ctx, csrf, &typed).await,
        None => page(csrf, String::new(), None, None, None),
    }
}

/// The code-entry form.
#[derive(Debug, Deserialize)]
pub struct LookupForm {
    csrf: String,
    user_code: String,
}

/// `POST /device`: look the code up.
pub async fn device_lookup(
    _: SameOrigin,
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    SignedIn(current): SignedIn,
    PageForm(form): PageForm<LookupForm>,
) -> Response {
    if !csrf::session_token_matches(current.token.expose(), &form.csrf) {
        return forbidden();
    }
    confirm_or_retry(&state, &current, &ctx, form.csrf, &form.user_code).await
}

/// The throttle check before any lookup of a typed code: `Err` is the response (429 or 503).
async fn may_look_up(
    state: &AppState,
    current: &CurrentSession,
    ctx: &RequestContext,
) -> Result<(), Response> {
    state
        .accounts
        .check_device_code_entry(current, ctx)
        .await
        .map_err(account_error)
}

/// Counts a typed code that matched nothing; `Err` is the response (503).
async fn count_miss(
    state: &AppState,
    current: &CurrentSession,
    ctx: &RequestContext,
) -> Result<(), Response> {
    state
        .accounts
        .record_device_code_failure(current, ctx)
        .await
        .map_err(account_error)
}

async fn confirm_or_retry(
    state: &AppState,
    current: &CurrentSession,
    ctx: &RequestContext,
    csrf: String,
    typed: &str,
) -> Response {
    if let Err(refused) = may_look_up(state, current, ctx).await {
        return refused;
    }
    let typed: String = typed.chars().take(64).collect();
    match state.oauth.device_prompt(&typed).await {
        Ok(Some(DevicePrompt {
            user_code,
            client_name,
            scopes,
        })) => page(
            csrf,
            display_user_code(&user_code),
            None,
            Some(DeviceConfirm {
                client_name,
                scopes,
            }),
            None,
        ),
        Ok(None) => match count_miss(state, current, ctx).await {
            Ok(()) => page(csrf, typed, Some(UNKNOWN_CODE.into()), None, None),
            Err(refused) => refused,
        },
        Err(e) => {
            tracing::error!(error = %e, "device code lookup failed");
            render::busy()
        }
    }
}

/// The decision form.
#[derive(Debug, Deserialize)]
pub struct DecisionForm {
    csrf: String,
    user_code: String,
    decision: String,
}

/// `POST /device/decide`.
pub async fn device_decide(
    _: SameOrigin,
    State(state): State<AppState>,
    ClientContext(ctx): ClientContext,
    SignedIn(current): SignedIn,
    PageForm(form): PageForm<DecisionForm>,
) -> Response {
    if !csrf::session_token_matches(current.token.expose(), &form.csrf) {
        return forbidden();
    }
    let approve = match form.decision.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return render::bad_request(),
    };
    if let Err(refused) = may_look_up(&state, &current, &ctx).await {
        return refused;
    }
    let user = match end_user(&state, &current).await {
        Ok(user) => user,
        Err(response) => return response,
    };
    match state
        .oauth
        .device_decide(&form.user_code, approve, &user, &ctx)
        .await
    {
        Ok(true) if approve => page(
            form.csrf,
            String::new(),
            None,
            None,
            Some("Your device is connected. You can return to it now.".into()),
        ),
        Ok(true) => page(
            form.csrf,
            String::new(),
            None,
            None,
            Some("The request was denied. Nothing was connected.".into()),
        ),
        Ok(false) => match count_miss(&state, &current, &ctx).await {
            Ok(()) => page(
                form.csrf,
                form.user_code,
                Some(UNKNOWN_CODE.into()),
                None,
                None,
            ),
            Err(refused) => refused,
        },
        Err(e) => {
            tracing::error!(error = %e, "device decision failed");
            render::busy()
        }
    }
}

fn page(
    csrf: String,
    user_code: String,
    error: Option<String>,
    confirm: Option<DeviceConfirm>,
    done: Option<String>,
) -> Response {
    render::html(
        StatusCode::OK,
        &DevicePage {
            csrf,
            user_code,
            error,
            confirm,
            done,
        },
    )
}
