//! Passkeys on the pages: sign-in from `/login`, registration and removal from `/account`.
//!
//! The ceremony options and their sealed state are rendered into the form (the options in a
//! `data-options` attribute); `/static/passkey.js` calls `navigator.credentials.create/get`,
//! puts the answer (base64url) into hidden fields and submits the form, which then goes through
//! the same origin and CSRF checks as every other form.
//!
//! The relying party is the configured `pages.public_origin`, else the request's `Host` (with
//! `http` only for loopback hosts, as the CSRF origin check does). Its host is the RP ID; an IP
//! address cannot be one, so on `http://127.0.0.1` the passkey forms are not shown (use
//! `http://localhost`).

use axum::extract::State;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::HOST;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use trustgate_authn::accounts::{
    AccountError, Passkey, PasskeyAssertion, PasskeyCeremony, PasskeyRegistration,
};
use trustgate_authn::webauthn::RelyingParty;

use super::account::{step_up, token_ok, when};
use super::csrf;
use super::login::{end_presented_session, signed_in};
use super::next::safe_next;
use super::render::{self, LoginPage, PasskeyForm, PasskeyRow};
use super::session::{
    PageForm, SameOrigin, SignedIn, account_error, cookie_policy, forbidden, form_token,
};
use crate::AppState;
use crate::client_context::ClientContext;

/// The message of every failed passkey sign-in.
pub const PASSKEY_FAILED: &str =
    "That passkey could not be used to sign in. Try again, or use your password.";

/// The relying party of this request, or `None` when passkeys cannot be used on its origin:
/// derived from configuration only, and only for a request whose `Host` is that origin's.
pub fn relying_party(state: &AppState, headers: &HeaderMap) -> Option<RelyingParty> {
    let origin = configured_origin(state)?;
    let rp = RelyingParty::from_origin(&origin)?;
    // The RP id and origin come from configuration only; a request that arrived under another
    // Host (a misrouted proxy, or someone steering the RP id) gets no passkey ceremony at all.
    let host = headers.get(HOST)?.to_str().ok()?;
    let authority = rp.origin().split_once("://").map_or("", |(_, a)| a);
    same_authority(host, authority, rp.origin().starts_with("https://")).then_some(rp)
}

/// `pages.public_origin`; without it, in development (a loopback listener) the origin
/// `http://localhost:<port>` (WebAuthn needs a domain, and `localhost` is one); otherwise none.
fn configured_origin(state: &AppState) -> Option<String> {
    let config = &state.config;
    if let Some(origin) = config.pages.public_origin.as_deref() {
        return Some(origin.to_owned());
    }
    if !config.listen.ip().is_loopback() {
        return None;
    }
    // With port 0 the bound port is in the issuer the server derived at start.
    let port = config
        .oauth
        .issuer
        .as_deref()
        .and_then(|issuer| issuer.rsplit_once(':'))
        .and_then(|(_, port)| port.trim_end_matches('/').parse::<u16>().ok())
        .unwrap_or(config.listen.port());
    let scheme = if config.tls.enabled() {
        "https"
    } else {
        "http"
    };
    Some(format!("{scheme}://localhost:{port}"))
}

/// Whether a `Host` header names `authority`, ignoring case and the scheme's default port.
fn same_authority(host: &str, authority: &str, https: bool) -> bool {
    let default = if https { ":443" } else { ":80" };
    let trim = |s: &str| {
        let s = s.to_ascii_lowercase();
        s.strip_suffix(default).map(str::to_owned).unwrap_or(s)
    };
    trim(host) == trim(authority)
}

/// A ceremony as form data.
pub fn form_of(ceremony: PasskeyCeremony) -> PasskeyForm {
    PasskeyForm {
        options: ceremony.options.to_string(),
        state: ceremony.state.expose().to_owned(),
    }
}

/// The sign-in form of `/login`, when passkeys can be used here.
pub fn passkey_login_form(state: &AppState, headers: &HeaderMap) -> Option<PasskeyForm> {
    let rp = relying_party(state, headers)?;
    match state.accounts.begin_passkey_login(&rp) {
        Ok(c) => Some(form_of(c)),
        Err(e) => {
            tracing::error!(error = %e, "cannot start a passkey sign-in");
            None
        }
    }
}

/// A row of the account page's list.
pub fn row(passkey: Passkey) -> PasskeyRow {
    PasskeyRow {
        id: URL_SAFE_NO_PAD.encode(&passkey.credential_id),
        name: passkey.name,
        created: when(passkey.created_at),
        last_used: passkey.last_used_at.map_or_else(|| "never".into(), when),
    }
}

/// The sentence for an `?error=` code of the passkey section.
pub fn passkey_error_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "passkey_failed" => "The passkey could not be added. Try again.",
        "passkey_exists" => "That passkey is already registered, or you have too many.",
        "passkey_name" => "Give the passkey a name of at most 64 characters.",
        "passkey_not_found" => "That passkey no longer exists.",
        _ => return None,
    })
}

fn decode(field: &str) -> Option<Vec<u8>> {
    if field.len() > 32 * 1024 {
        return None;
    }
    URL_SAFE_NO_PAD
        .decode(field.trim().trim_end_matches('='))
        .ok()
}

/// `POST /login/passkey`.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    next: Option<String>,
    #[serde(default)]
    state: String,
    #[serde(default)]
    credential_id: String,
    #[serde(default)]
    client_data_json: String,
    #[serde(default)]
    authenticator_data: String,
    #[serde(default)]
    signature: String,
    #[serde(default)]
    user_handle: String,
}

/// `POST /login/passkey`: signs in with the authenticator's assertion.
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
    let failed = || {
        render::html(
            StatusCode::OK,
            &LoginPage {
                csrf: form.csrf.clone(),
                next: next.clone(),
                username: String::new(),
                error: Some(PASSKEY_FAILED.into()),
                notice: None,
                passkey: passkey_login_form(&state, &headers),
            },
        )
    };
    let Some(rp) = relying_party(&state, &headers) else {
        return failed();
    };
    let fields = (
        decode(&form.credential_id),
        decode(&form.client_data_json),
        decode(&form.authenticator_data),
        decode(&form.signature),
    );
    let (Some(credential_id), Some(client_data_json), Some(authenticator_data), Some(signature)) =
        fields
    else {
        return failed();
    };
    let user_handle = if form.user_handle.is_empty() {
        None
    } else {
        match decode(&form.user_handle) {
            Some(h) => Some(h),
            None => return failed(),
        }
    };
    let assertion = PasskeyAssertion {
        credential_id,
        client_data_json,
        authenticator_data,
        signature,
        user_handle,
    };
    match state
        .accounts
        .login_passkey(&rp, &form.state, &assertion, &ctx)
        .await
    {
        Ok(issued) => {
            end_presented_session(&state, policy, &headers, &ctx).await;
            signed_in(policy, &issued, &next)
        }
        Err(AccountError::InvalidCredentials | AccountError::InvalidInput(_)) => failed(),
        Err(other) => account_error(other),
    }
}

/// `POST /account/passkeys`.
#[derive(Debug, Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    client_data_json: String,
    #[serde(default)]
    attestation_object: String,
    #[serde(default)]
    transports: String,
}

/// `POST /account/passkeys`: stores the new passkey.
pub async fn register_submit(
    _: SameOrigin,
    State(state): State<AppState>,
    SignedIn(current): SignedIn,
    ClientContext(ctx): ClientContext,
    headers: HeaderMap,
    PageForm(form): PageForm<RegisterForm>,
) -> Response {
    if !token_ok(&current, &form.csrf) {
        return forbidden();
    }
    if !state.accounts.is_recent(&current.session) {
        return step_up("/account#passkeys");
    }
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return render::see_other("/account?error=passkey_name#passkeys");
    }
    let (Some(rp), Some(client_data_json), Some(attestation_object)) = (
        relying_party(&state, &headers),
        decode(&form.client_data_json),
        decode(&form.attestation_object),
    ) else {
        return render::see_other("/account?error=passkey_failed#passkeys");
    };
    let response = PasskeyRegistration {
        client_data_json,
        attestation_object,
        transports: form
            .transports
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
    };
    match state
        .accounts
        .finish_passkey_registration(&current, &rp, &form.state, name, &response, &ctx)
        .await
    {
        Ok(_) => render::see_other("/account?done=passkey_added#passkeys"),
        Err(AccountError::StepUpRequired) => step_up("/account#passkeys"),
        Err(AccountError::InvalidInput(_)) => {
            render::see_other("/account?error=passkey_failed#passkeys")
        }
        Err(AccountError::Conflict(_)) => {
            render::see_other("/account?error=passkey_exists#passkeys")
        }
        Err(other) => account_error(other),
    }
}

/// `POST /account/passkeys/remove`.
#[derive(Debug, Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    credential_id: String,
}

/// `POST /account/passkeys/remove`: removes one passkey (needs a recent authentication).
pub async fn remove_submit(
    _: SameOrigin,
    State(state): State<AppState>,
    SignedIn(current): SignedIn,
    ClientContext(ctx): ClientContext,
    PageForm(form): PageForm<RemoveForm>,
) -> Response {
    if !token_ok(&current, &form.csrf) {
        return forbidden();
    }
    if !state.accounts.is_recent(&current.session) {
        return step_up("/account#passkeys");
    }
    let Some(id) = decode(&form.credential_id).filter(|id| !id.is_empty()) else {
        return render::see_other("/account?error=passkey_not_found#passkeys");
    };
    match state.accounts.remove_passkey(&current, &id, &ctx).await {
        Ok(()) => render::see_other("/account?done=passkey_removed#passkeys"),
        Err(AccountError::StepUpRequired) => step_up("/account#passkeys"),
        Err(AccountError::NotFound) => {
            render::see_other("/account?error=passkey_not_found#passkeys")
        }
        Err(other) => account_error(other),
    }
}
