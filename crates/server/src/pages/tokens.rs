//! Personal access tokens on `/account`: API keys owned by the signed-in user.
//!
//! Creating and revoking a token are sensitive: both need a recent authentication (step-up).
//! A token may only be limited to roles the user holds now ([`crate::admin_services::issue_key`]
//! checks), and like every key it is allowed a permission only while its owner still holds it,
//! and stops when the user is disabled. The new token travels to the page that shows it once in
//! the sealed flash cookie, never in a URL.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use trustgate_audit::{AuditKind, Event, Outcome};
use trustgate_authn::accounts::CurrentSession;
use trustgate_store_api::{ApiKey, KeyOwner};

use super::account::{step_up, token_ok, when};
use super::cookies::CookieKind;
use super::csrf;
use super::render::{self, TokenCreatedPage, TokenRow};
use super::session::{
    Flash, PageForm, SameOrigin, SignedIn, cookie_policy, forbidden, with_cookies,
};
use crate::AppState;
use crate::admin_services::issue_key;
use crate::client_context::ClientContext;

/// Days a token may be made for (the form's choices).
const LIFETIMES_DAYS: [u64; 4] = [7, 30, 90, 365];

/// The sentence for a `?error=` code of the token section.
pub(super) fn token_error_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "token_scope" => "Choose at least one of your roles for the token.",
        "token_input" => "The description or lifetime is not valid.",
        "token_not_found" => "That token does not exist (any more).",
        _ => return None,
    })
}

/// The rows and the roles the user may give a token.
pub(super) async fn section(
    state: &AppState,
    user_id: &str,
    now: time::OffsetDateTime,
) -> Result<(Vec<TokenRow>, Vec<String>), Response> {
    let owner = KeyOwner::User(user_id.to_owned());
    let keys = state.api_keys.list(Some(&owner)).await.map_err(|e| {
        tracing::error!(error = %e, "listing personal access tokens failed");
        render::busy()
    })?;
    let roles = state
        .access
        .roles_of(&format!("user:{user_id}"))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "reading the user's roles failed");
            render::busy()
        })?;
    let env = &state.config.api_keys.environment;
    let rows = keys.into_iter().map(|k| row(env, k, now)).collect();
    Ok((rows, roles.iter().map(ToString::to_string).collect()))
}

fn row(env: &str, key: ApiKey, now: time::OffsetDateTime) -> TokenRow {
    let status = if key.revoked_at.is_some() {
        "revoked"
    } else if key.expires_at.is_some_and(|at| at <= now) {
        "expired"
    } else {
        "active"
    };
    TokenRow {
        prefix: format!("tg_{env}_{}", key.id),
        description: key.description,
        scopes: key.scopes.join(" "),
        created: when(key.created_at),
        expires: key.expires_at.map_or_else(|| "never".to_owned(), when),
        last_used: key.last_used_at.map_or_else(|| "never".to_owned(), when),
        status,
        id: key.id,
    }
}

/// Both token forms need the session's CSRF token and a recent sign-in: the 403 page, or the
/// step-up prompt coming back to the token section.
fn refuse_unless_fresh(
    state: &AppState,
    current: &CurrentSession,
    form: &BTreeMap<String, String>,
) -> Option<Response> {
    if !token_ok(current, form.get("csrf").map_or("", String::as_str)) {
        return Some(forbidden());
    }
    if !state.accounts.is_recent(&current.session) {
        return Some(step_up("/account#tokens"));
    }
    None
}

/// `POST /account/tokens`: `csrf`, `description`, `expires_days`, and `scope_<n>` per chosen
/// role.
pub async fn create_token(
    _: SameOrigin,
    State(state): State<AppState>,
    SignedIn(current): SignedIn,
    ClientContext(ctx): ClientContext,
    PageForm(form): PageForm<BTreeMap<String, String>>,
) -> Response {
    if let Some(refused) = refuse_unless_fresh(&state, &current, &form) {
        return refused;
    }
    let scopes: Vec<String> = form
        .iter()
        .filter(|(name, _)| name.starts_with("scope_"))
        .map(|(_, role)| role.clone())
        .collect();
    if scopes.is_empty() {
        return render::see_other("/account?error=token_scope#tokens");
    }
    let description = form.get("description").map(|d| d.trim().to_owned());
    let days = form
        .get("expires_days")
        .and_then(|d| d.parse::<u64>().ok())
        .filter(|d| LIFETIMES_DAYS.contains(d));
    let (Some(description), Some(days)) = (description.filter(|d| !d.is_empty()), days) else {
        return render::see_other("/account?error=token_input#tokens");
    };
    let owner = KeyOwner::User(current.user.id.clone());
    let issued = match issue_key(
        &state,
        &owner,
        &scopes,
        Some(description),
        Some(days * 86_400),
        None,
    )
    .await
    {
        Ok(issued) => issued,
        Err(e) if e.status() == StatusCode::BAD_REQUEST => {
            // A role the user does not hold (a forged form) or a malformed one.
            return render::see_other("/account?error=token_scope#tokens");
        }
        Err(e) => {
            tracing::error!(error = %e, "creating a personal access token failed");
            return render::busy();
        }
    };
    let event = Event::new(AuditKind::ApiKeyCreated, Outcome::Success)
        .by_user(&current.user.id)
        .detail("api_key", issued.record.id.clone())
        .detail("scopes", issued.record.scopes.clone());
    if let Err(e) = state.auditor.record(&ctx, event).await {
        // The token must not exist without its audit record.
        let _ = state.api_keys.revoke(&issued.record.id).await;
        tracing::error!(error = %e, "auditing a personal access token failed");
        return render::busy();
    }
    let policy = cookie_policy(&state);
    let flash =
        Flash::AccessToken(issued.key.expose().to_owned()).cookie(policy, current.token.expose());
    with_cookies(render::see_other("/account/tokens/new"), flash)
}

/// `GET /account/tokens/new`: the token from the flash cookie, which is deleted.
pub async fn new_token_page(
    State(state): State<AppState>,
    SignedIn(current): SignedIn,
    headers: HeaderMap,
) -> Response {
    let policy = cookie_policy(&state);
    let Some(Flash::AccessToken(token)) = Flash::read(policy, &headers, current.token.expose())
    else {
        return render::see_other("/account#tokens");
    };
    let page = TokenCreatedPage {
        csrf: csrf::session_token(current.token.expose()),
        token,
    };
    with_cookies(
        render::html(StatusCode::OK, &page),
        [policy.clear(CookieKind::Flash)],
    )
}

/// `POST /account/tokens/{id}/revoke`: only the user's own tokens.
pub async fn revoke_token(
    _: SameOrigin,
    State(state): State<AppState>,
    SignedIn(current): SignedIn,
    ClientContext(ctx): ClientContext,
    Path(id): Path<String>,
    PageForm(form): PageForm<BTreeMap<String, String>>,
) -> Response {
    if let Some(refused) = refuse_unless_fresh(&state, &current, &form) {
        return refused;
    }
    let owned = match state.api_keys.get(&id).await {
        Ok(key) => key.is_some_and(|k| k.owner == KeyOwner::User(current.user.id.clone())),
        Err(e) => {
            tracing::error!(error = %e, "reading a personal access token failed");
            return render::busy();
        }
    };
    if !owned {
        return render::see_other("/account?error=token_not_found#tokens");
    }
    if let Err(e) = state.api_keys.revoke(&id).await {
        tracing::error!(error = %e, "revoking a personal access token failed");
        return render::busy();
    }
    let event = Event::new(AuditKind::ApiKeyRevoked, Outcome::Success)
        .by_user(&current.user.id)
        .detail("api_key", id);
    if let Err(e) = state.auditor.record(&ctx, event).await {
        tracing::error!(error = %e, "auditing a token revocation failed");
        return render::busy();
    }
    render::see_other("/account?done=token_revoked#tokens")
}
