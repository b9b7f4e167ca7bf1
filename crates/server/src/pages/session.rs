//! What every page handler needs from a request: who is signed in ([`SignedIn`]), where the
//! request came from ([`crate::client_context`]), the form ([`PageForm`]), and how an
//! [`AccountError`] becomes a page ([`account_error`]). Also the sealed flash cookie that carries
//! one-time secrets across a 303 ([`Flash`]).

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use http::header::SET_COOKIE;
use http::request::Parts;
use http::{HeaderMap, Method};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::de::DeserializeOwned;
use sha2::Sha256;
use trustgate_authn::accounts::{AccountError, CurrentSession};
use trustgate_core::SealingKey;

use super::cookies::{CookieKind, CookiePolicy};
use super::render;
use crate::AppState;
use crate::client_context::request_context;

/// The cookie policy in effect.
pub fn cookie_policy(state: &AppState) -> CookiePolicy {
    CookiePolicy::new(state.config.pages.insecure_dev_cookies)
}

/// A live session, found from the session cookie. Without one, a `GET` is redirected to
/// `/login?next=<this page>` and anything else to `/login`; a stale cookie is deleted.
#[derive(Debug, Clone)]
pub struct SignedIn(pub CurrentSession);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let policy = cookie_policy(state);
        let ctx = request_context(parts);
        let Some(token) = policy.get(&parts.headers, CookieKind::Session) else {
            return Err(to_login(parts, None));
        };
        match state.accounts.authenticate_session(token, &ctx).await {
            Ok(Some(current)) => Ok(SignedIn(current)),
            Ok(None) => Err(to_login(parts, Some(policy))),
            Err(e) => Err(account_error(e)),
        }
    }
}

/// 303 to the login page, remembering a `GET`'s page as `next`.
fn to_login(parts: &Parts, clear: Option<CookiePolicy>) -> Response {
    let location = if parts.method == Method::GET {
        let here = parts
            .uri
            .path_and_query()
            .map_or("/account", |pq| pq.as_str());
        let next = super::next::safe_next(Some(here));
        format!(
            "/login?next={}",
            utf8_percent_encode(&next, NON_ALPHANUMERIC)
        )
    } else {
        "/login".to_owned()
    };
    let mut response = render::see_other(&location);
    if let Some(policy) = clear {
        response
            .headers_mut()
            .append(SET_COOKIE, policy.clear(CookieKind::Session));
    }
    response
}

/// `/login?next=...` for a validated `next`.
pub fn login_url(next: &str) -> String {
    if next == super::next::DEFAULT {
        "/login".to_owned()
    } else {
        format!(
            "/login?next={}",
            utf8_percent_encode(next, NON_ALPHANUMERIC)
        )
    }
}

/// `url?next=<encoded next>`.
pub fn with_next(url: &str, next: &str) -> String {
    format!("{url}?next={}", utf8_percent_encode(next, NON_ALPHANUMERIC))
}

/// A urlencoded form; anything unreadable is the 400 page.
#[derive(Debug)]
pub struct PageForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for PageForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(value)) => Ok(PageForm(value)),
            Err(_) => Err(render::bad_request()),
        }
    }
}

/// The page for an account error that the handler does not present itself.
pub fn account_error(error: AccountError) -> Response {
    match error {
        AccountError::Throttled(wait) => render::too_many_attempts(wait.retry_after_secs()),
        AccountError::Busy => render::busy(),
        AccountError::Store(e) if e.outage().is_some() => render::busy(),
        AccountError::NotFound => render::not_found(),
        AccountError::InvalidInput(_) | AccountError::PasswordRejected(_) => render::bad_request(),
        AccountError::StepUpRequired => render::see_other("/account/reauth"),
        other => {
            tracing::error!(error = %other, code = other.code(), "account operation failed");
            render::internal()
        }
    }
}

/// Adds `Set-Cookie` values to a response.
pub fn with_cookies(
    mut response: Response,
    cookies: impl IntoIterator<Item = http::HeaderValue>,
) -> Response {
    for cookie in cookies {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}

/// The pre-login CSRF cookie's value, if the browser sent one of the right shape.
pub fn form_token(policy: CookiePolicy, headers: &HeaderMap) -> Option<&str> {
    policy
        .get(headers, CookieKind::Csrf)
        .filter(|t| t.len() == 43)
}

/// One-time secrets carried from a POST to the page its 303 leads to, in the `flash` cookie,
/// sealed (AES-256-GCM) under a key derived from the session id: only the browser holding that
/// session can have them opened, no server-side state is needed, and any replica can open them.
#[derive(Debug)]
pub enum Flash {
    /// A TOTP secret being enrolled (base32), shown as a QR code until confirmed.
    TotpSetup(String),
    /// Fresh recovery codes, shown once.
    RecoveryCodes(Vec<String>),
    /// A freshly created personal access token, shown once.
    AccessToken(String),
}

const FLASH_TOTP: &str = "trustgate/pages/flash/totp-setup";
const FLASH_CODES: &str = "trustgate/pages/flash/recovery-codes";
const FLASH_TOKEN: &str = "trustgate/pages/flash/access-token";

impl Flash {
    fn key(session_token: &str) -> Option<SealingKey> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(session_token.as_bytes()).ok()?;
        mac.update(b"trustgate/pages/flash/v1");
        SealingKey::from_bytes(&mac.finalize().into_bytes())
    }

    /// The `Set-Cookie` value carrying this flash (10 minutes).
    pub fn cookie(&self, policy: CookiePolicy, session_token: &str) -> Option<http::HeaderValue> {
        let key = Self::key(session_token)?;
        let (tag, purpose, plain) = match self {
            Flash::TotpSetup(secret) => ("t", FLASH_TOTP, secret.clone()),
            Flash::RecoveryCodes(codes) => ("r", FLASH_CODES, codes.join("\n")),
            Flash::AccessToken(token) => ("k", FLASH_TOKEN, token.clone()),
        };
        let sealed = key.seal(purpose, plain.as_bytes());
        let value = format!("{tag}.{}", URL_SAFE_NO_PAD.encode(sealed));
        policy.set(CookieKind::Flash, &value, Some(600))
    }

    /// The flash in the request, if there is one sealed for this session.
    pub fn read(policy: CookiePolicy, headers: &HeaderMap, session_token: &str) -> Option<Flash> {
        let value = policy.get(headers, CookieKind::Flash)?;
        let (tag, sealed) = value.split_once('.')?;
        let sealed = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        let key = Self::key(session_token)?;
        let purpose = match tag {
            "t" => FLASH_TOTP,
            "r" => FLASH_CODES,
            "k" => FLASH_TOKEN,
            _ => return None,
        };
        let plain = String::from_utf8(key.open(purpose, &sealed)?).ok()?;
        Some(match tag {
            "t" => Flash::TotpSetup(plain),
            "k" => Flash::AccessToken(plain),
            _ => Flash::RecoveryCodes(plain.lines().map(str::to_owned).collect()),
        })
    }
}

/// An extractor-free helper: the 403 page as a response.
pub fn forbidden() -> Response {
    render::forbidden_csrf().into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustgate_store_api::StoreError;

    #[test]
    fn account_errors_become_pages_with_the_right_status() {
        use http::StatusCode;
        use trustgate_authn::RetryAfter;
        let busy = account_error(AccountError::Busy);
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers()["retry-after"], "1");
        let down = account_error(AccountError::Store(StoreError::Unavailable("x".into())));
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
        for outage in [
            StoreError::StorageFull("x".into()),
            StoreError::ReadOnly("x".into()),
        ] {
            let page = account_error(AccountError::Store(outage));
            assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
        let defect = account_error(AccountError::Store(StoreError::Database("x".into())));
        assert_eq!(defect.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let throttled = account_error(AccountError::Throttled(RetryAfter(
            std::time::Duration::from_millis(2500),
        )));
        assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(throttled.headers()["retry-after"], "3");
        let internal = account_error(AccountError::Internal("secret detail".into()));
        assert_eq!(internal.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn flash_opens_only_for_its_session() {
        let policy = CookiePolicy::STRICT;
        let cookie = Flash::RecoveryCodes(vec!["aaaa-bbbb-cccc".into(), "dddd".into()])
            .cookie(policy, "tg_sess_one")
            .expect("cookie");
        let value = cookie
            .to_str()
            .expect("ascii")
            .split(';')
            .next()
            .expect("pair")
            .to_owned();
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            http::HeaderValue::from_str(&value).expect("header"),
        );
        match Flash::read(policy, &headers, "tg_sess_one") {
            Some(Flash::RecoveryCodes(codes)) => assert_eq!(codes, ["aaaa-bbbb-cccc", "dddd"]),
            other => panic!("{other:?}"),
        }
        assert!(Flash::read(policy, &headers, "tg_sess_two").is_none());
    }
}

/// The request passed the origin check of [`super::csrf::check_origin`]; put it first among a
/// POST handler's extractors so nothing else runs for a cross-site request.
#[derive(Debug, Clone, Copy)]
pub struct SameOrigin;

impl FromRequestParts<AppState> for SameOrigin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let public_origin = state.config.pages.public_origin.as_deref();
        if super::csrf::check_origin(&parts.headers, public_origin) {
            Ok(SameOrigin)
        } else {
            tracing::info!(
                path = parts.uri.path(),
                "refused a form post from another origin"
            );
            Err(forbidden())
        }
    }
}
