//! The page templates (askama: compiled into the binary, checked at build time, every
//! interpolation HTML-escaped) and the responses built from them.

use askama::Template;
use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use http::{HeaderValue, StatusCode};

/// `GET /login` and a failed `POST /login`.
#[derive(Debug, Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    /// Double-submit token.
    pub csrf: String,
    /// Validated `next`.
    pub next: String,
    /// What was typed, shown again after a failure.
    pub username: String,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// An informational line (signed out, session expired).
    pub notice: Option<String>,
    /// The passkey sign-in form, when passkeys can be used on this origin.
    pub passkey: Option<PasskeyForm>,
}

/// A WebAuthn ceremony embedded in a form: the options for the browser (JSON, in a `data-`
/// attribute, escaped like every interpolation) and the sealed state posted back.
#[derive(Debug, Clone)]
pub struct PasskeyForm {
    /// The options as JSON text.
    pub options: String,
    /// The sealed state.
    pub state: String,
}

/// One row of the passkey list.
#[derive(Debug, Clone)]
pub struct PasskeyRow {
    /// Credential id, base64url.
    pub id: String,
    /// The name the user chose.
    pub name: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// RFC 3339 last use, or "never".
    pub last_used: String,
}

/// `GET /login/mfa`.
#[derive(Debug, Template)]
#[template(path = "mfa.html")]
pub struct MfaPage {
    /// Double-submit token.
    pub csrf: String,
    /// Validated `next`.
    pub next: String,
    /// Whether recovery codes are accepted.
    pub recovery: bool,
    /// Why the last attempt failed.
    pub error: Option<String>,
}

/// `GET /account/reauth`.
#[derive(Debug, Template)]
#[template(path = "reauth.html")]
pub struct ReauthPage {
    /// Session-bound token.
    pub csrf: String,
    /// Where to go afterwards.
    pub next: String,
    /// Who is confirming.
    pub username: String,
    /// Whether a TOTP code is asked for too.
    pub totp: bool,
    /// Why the last attempt failed.
    pub error: Option<String>,
}

/// One row of the session list.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// Public session id.
    pub id: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// RFC 3339 last activity.
    pub last_seen: String,
    /// Client address at creation.
    pub ip: String,
    /// User agent at creation.
    pub user_agent: String,
    /// The session of this request.
    pub current: bool,
}

/// `GET /account`.
#[derive(Debug, Template)]
#[template(path = "account.html")]
pub struct AccountPage {
    /// Session-bound token.
    pub csrf: String,
    /// Login name.
    pub username: String,
    /// Email address.
    pub email: String,
    /// Display name.
    pub name: Option<String>,
    /// Whether TOTP is on.
    pub totp_enabled: bool,
    /// Active sessions.
    pub sessions: Vec<SessionRow>,
    /// Result of the last action.
    pub notice: Option<String>,
    /// Error of the password form.
    pub password_error: Option<String>,
    /// Error of the TOTP section.
    pub totp_error: Option<String>,
    /// Registered passkeys.
    pub passkeys: Vec<PasskeyRow>,
    /// The add-a-passkey ceremony, when the session is recent and the origin allows passkeys.
    pub passkey_register: Option<PasskeyForm>,
    /// Whether passkeys can be used on this origin at all.
    pub passkeys_available: bool,
    /// Error of the passkey section.
    pub passkey_error: Option<String>,
    /// Applications the user allowed (remembered OAuth consents).
    pub consents: Vec<ConsentRow>,
    /// Personal access tokens.
    pub tokens: Vec<TokenRow>,
    /// The roles the user holds, which a new token may be limited to.
    pub token_roles: Vec<String>,
    /// Error of the token section.
    pub token_error: Option<String>,
}

/// One personal access token on the account page (never its secret).
#[derive(Debug, Clone)]
pub struct TokenRow {
    /// Key id.
    pub id: String,
    /// Its greppable prefix, `tg_<env>_<id>`.
    pub prefix: String,
    /// What it is for.
    pub description: String,
    /// Its scopes, space separated.
    pub scopes: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// RFC 3339 expiry, or `never`.
    pub expires: String,
    /// RFC 3339 last use, or `never`.
    pub last_used: String,
    /// `active`, `expired` or `revoked`.
    pub status: &'static str,
}

/// `GET /account/tokens/new`: a freshly created personal access token, shown once.
#[derive(Debug, Template)]
#[template(path = "token_created.html")]
pub struct TokenCreatedPage {
    /// Session-bound token (for the sign-out form).
    pub csrf: String,
    /// The personal access token.
    pub token: String,
}

/// One remembered consent on the account page.
#[derive(Debug, Clone)]
pub struct ConsentRow {
    /// The client id.
    pub client_id: String,
    /// The client's name.
    pub client_name: String,
    /// Consented scopes, space separated.
    pub scopes: String,
    /// RFC 3339 time of the first consent.
    pub granted: String,
}

/// `GET /account/totp`: the QR code and confirmation form.
#[derive(Debug, Template)]
#[template(path = "totp_setup.html")]
pub struct TotpSetupPage {
    /// Session-bound token.
    pub csrf: String,
    /// The `otpauth://` URI as a PNG, base64.
    pub qr_png_base64: String,
    /// The base32 secret for manual entry.
    pub secret: String,
    /// Why the last confirmation failed.
    pub error: Option<String>,
}

/// `GET /account/recovery-codes`: shown once after enrolment.
#[derive(Debug, Template)]
#[template(path = "recovery_codes.html")]
pub struct RecoveryCodesPage {
    /// Session-bound token (for the sign-out form).
    pub csrf: String,
    /// The codes.
    pub codes: Vec<String>,
}

/// Any error page.
#[derive(Debug, Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    /// Heading and title.
    pub title: String,
    /// What happened and what to do.
    pub message: String,
    /// Where the link goes.
    pub link_href: String,
    /// The link's text.
    pub link_text: String,
}

/// Renders `template` as an HTML response with `status`.
pub fn html(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(body) => (
            status,
            [(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "page template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                )],
                "<!doctype html><html lang=\"en\"><title>Error</title><h1>Something went wrong</h1></html>",
            )
                .into_response()
        }
    }
}

/// 303 See Other to a local path.
pub fn see_other(location: &str) -> Response {
    let value =
        HeaderValue::from_str(location).unwrap_or_else(|_| HeaderValue::from_static("/account"));
    (StatusCode::SEE_OTHER, [(LOCATION, value)]).into_response()
}

fn error_page(status: StatusCode, title: &str, message: &str, href: &str, text: &str) -> Response {
    html(
        status,
        &ErrorPage {
            title: title.into(),
            message: message.into(),
            link_href: href.into(),
            link_text: text.into(),
        },
    )
}

/// 403: the CSRF token or origin check failed. Nothing was changed.
pub fn forbidden_csrf() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Request refused",
        "This form was not sent from a page of this site, or it has expired. Nothing was changed. \
         Go back, reload the page and try again.",
        "/account",
        "Back to your account",
    )
}

/// 429 with `Retry-After`.
pub fn too_many_attempts(retry_after_secs: u64) -> Response {
    let mut response = error_page(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many attempts",
        &format!(
            "There were too many failed attempts. Wait {} and try again.",
            human_seconds(retry_after_secs)
        ),
        "/login",
        "Back to sign in",
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

/// 503: the password hashing pool is full (or the database is unavailable).
pub fn busy() -> Response {
    let mut response = error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Service busy",
        "The service is busy right now. Nothing was changed. Please try again in a moment.",
        "/login",
        "Back to sign in",
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// 400: the form could not be read.
pub fn bad_request() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "Invalid request",
        "The form could not be read. Nothing was changed. Go back, reload the page and try again.",
        "/account",
        "Back to your account",
    )
}

/// 404 for an unknown session or similar.
pub fn not_found() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is nothing here, or it no longer exists.",
        "/account",
        "Back to your account",
    )
}

/// 500: details are in the log under the request id.
pub fn internal() -> Response {
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The request failed on our side. Nothing was changed. Please try again later.",
        "/account",
        "Back to your account",
    )
}

/// "5 seconds", "1 minute", "15 minutes".
fn human_seconds(secs: u64) -> String {
    match secs {
        1 => "1 second".into(),
        s if s < 120 => format!("{s} seconds"),
        s => format!("{} minutes", s.div_ceil(60)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolations_are_escaped() {
        let page = LoginPage {
            csrf: "t".into(),
            next: "/a\"><script>".into(),
            username: "<img src=x onerror=alert(1)>".into(),
            error: Some("<b>x</b>".into()),
            notice: None,
            passkey: Some(PasskeyForm {
                options: "{\"challenge\":\"</form><script>\"}".into(),
                state: "s".into(),
            }),
        };
        let body = page.render().expect("render");
        assert!(!body.contains("<script>"), "{body}");
        assert!(!body.contains("<img src=x"), "{body}");
        assert!(!body.contains("<b>x</b>"), "{body}");
        assert!(body.contains("lang=\"en\""));
        assert!(body.contains("<label for=\"username\">"));
        assert!(body.contains("aria-describedby=\"login-error\""));
    }

    #[test]
    fn retry_after_is_set_and_human() {
        let r = too_many_attempts(90);
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[RETRY_AFTER], "90");
        assert_eq!(human_seconds(1), "1 second");
        assert_eq!(human_seconds(900), "15 minutes");
    }
}
