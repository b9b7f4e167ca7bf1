//! Server-rendered pages for people: sign in (password, then a second factor when enrolled),
//! sign out, and the account page (profile, password, authenticator app, passkeys, sessions),
//! with a step-up prompt before sensitive changes. They work without JavaScript except for
//! passkeys, where WebAuthn needs it: one static script (`/static/passkey.js`, no inline script,
//! the CSP allows scripts from this origin only) fills hidden form fields with the
//! authenticator's answer and submits the form. Otherwise they are plain accessible HTML: every input has a label, errors
//! are announced (`role="alert"`) and tied to their fields (`aria-describedby`,
//! `aria-invalid`).
//!
//! The pages hold no authentication logic: they translate forms into calls of
//! `trustgate_authn::accounts::Accounts` and its answers into pages, cookies and redirects.
//!
//! | route | what |
//! |---|---|
//! | `GET/POST /login` | username + password ([`login`]) |
//! | `GET/POST /login/mfa` | TOTP or recovery code after a correct password |
//! | `POST /logout` | ends the session |
//! | `GET /account` | profile, password, authenticator app, sessions ([`account`]) |
//! | `POST /account/password`, `/account/totp`, `/account/totp/confirm`, `/account/totp/remove`, `/account/sessions/{id}/revoke`, `/account/sessions/revoke-others` | the account page's forms |
//! | `GET /account/totp`, `GET /account/recovery-codes` | enrolment QR code; recovery codes shown once |
//! | `GET/POST /account/reauth` | step-up: password (and code) again, then back to `next` |
//! | `POST /login/passkey`, `POST /account/passkeys`, `POST /account/passkeys/remove` | passkey sign-in, registration, removal ([`passkeys`]) |
//! | `POST /account/tokens`, `GET /account/tokens/new`, `POST /account/tokens/{id}/revoke` | personal access tokens: create (step-up, shown once), revoke ([`tokens`]) |
//! | `GET /static/pages.css`, `GET /static/passkey.js` | the one stylesheet, the one script |
//! | `GET /static/brand.css`, `GET /static/logo` | the `[branding]` colours and logo ([`brand`]) |
//!
//! Rules every handler keeps:
//! - **CSRF** ([`csrf`]): every POST checks the origin and a token before anything else; a
//!   failure is the 403 page and changes nothing.
//! - **Cookies** ([`cookies`]): `__Host-` cookies with `Secure; HttpOnly; SameSite=Lax; Path=/`.
//! - **Redirects**: every successful POST answers 303; `next` only to local paths ([`next`]).
//! - **Headers** ([`headers`]): CSP, `X-Frame-Options: DENY`, `nosniff`,
//!   `Referrer-Policy: no-referrer`, `Cache-Control: no-store`, on every response here.
//! - **Errors**: 429 with `Retry-After` when throttled, 503 when the hashing pool is busy, the
//!   same page text for a wrong password and an unknown or disabled user.

pub mod account;
pub mod brand;
pub mod cookies;
pub mod csrf;
pub mod headers;
pub mod login;
pub mod next;
pub mod passkeys;
pub mod render;
pub mod session;
pub mod tokens;

use axum::Router;
use axum::routing::{get, post};
use http::HeaderValue;
use http::header::CONTENT_TYPE;

use crate::AppState;

/// The stylesheet, compiled in.
const STYLESHEET: &str = include_str!("../../static/pages.css");
/// The one script: WebAuthn calls for the passkey forms, compiled in.
const PASSKEY_JS: &str = include_str!("../../static/passkey.js");

/// The pages' routes with their security headers.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/static/pages.css", get(stylesheet))
        .route("/static/brand.css", get(brand::stylesheet))
        .route("/static/logo", get(brand::logo))
        .route("/static/passkey.js", get(passkey_script))
        .route("/login/passkey", post(passkeys::login_submit))
        .route("/account/passkeys", post(passkeys::register_submit))
        .route("/account/passkeys/remove", post(passkeys::remove_submit))
        .route("/login", get(login::login_page).post(login::login_submit))
        .route("/login/mfa", get(login::mfa_page).post(login::mfa_submit))
        .route("/logout", post(login::logout))
        .route("/account", get(account::account_page))
        .route("/account/password", post(account::change_password))
        .route(
            "/account/totp",
            get(account::totp_setup_page).post(account::totp_begin),
        )
        .route("/account/totp/confirm", post(account::totp_confirm))
        .route("/account/totp/remove", post(account::totp_remove))
        .route("/account/recovery-codes", get(account::recovery_codes_page))
        .route(
            "/account/sessions/{id}/revoke",
            post(account::revoke_session),
        )
        .route(
            "/account/sessions/revoke-others",
            post(account::revoke_other_sessions),
        )
        .route("/account/tokens", post(tokens::create_token))
        .route("/account/tokens/new", get(tokens::new_token_page))
        .route("/account/tokens/{id}/revoke", post(tokens::revoke_token))
        .route(
            "/account/reauth",
            get(account::reauth_page).post(account::reauth_submit),
        )
        .layer(axum::middleware::from_fn(headers::security_headers))
}

async fn stylesheet() -> ([(http::HeaderName, HeaderValue); 1], &'static str) {
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/css; charset=utf-8"),
        )],
        STYLESHEET,
    )
}

async fn passkey_script() -> ([(http::HeaderName, HeaderValue); 1], &'static str) {
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/javascript; charset=utf-8"),
        )],
        PASSKEY_JS,
    )
}
