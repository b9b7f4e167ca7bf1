//! Cross-site request forgery defence for every cookie-authenticated state change.
//!
//! Two independent checks; a POST must pass both or it gets the 403 page and changes nothing:
//!
//! 1. **Origin.** The request must come from a page of this server ([`check_origin`]):
//!    - a `Sec-Fetch-Site` header, when present, must be `same-origin`;
//!    - an `Origin` header other than `null` must equal the server's origin (`pages.public_origin`,
//!      or `https://<Host>`; `http://<Host>` only for loopback hosts);
//!    - `Origin: null` or no `Origin` is accepted only with `Sec-Fetch-Site: same-origin` or a
//!      same-origin `Referer`. (The pages send `Referrer-Policy: no-referrer`, under which
//!      browsers send `Origin: null` on their own form posts; `Sec-Fetch-Site` still tells.)
//!    - nothing at all: refused.
//! 2. **Token.** A hidden `csrf` form field:
//!    - with a session ([`session_token`]): `base64url(HMAC-SHA256(key = session id,
//!      "trustgate/csrf/v1"))`. Only someone holding the HttpOnly session cookie can compute it,
//!      it needs no server-side state or key (any replica verifies it), and it changes whenever
//!      the session id does (login, step-up), so a token leaked from an old page dies with it.
//!    - before login (login and second-factor forms): double submit. `GET /login` sets a random
//!      `__Host-trustgate_csrf` cookie and puts the same value in the form; the POST must bring
//!      both, equal ([`double_submit_matches`]). The `__Host-` prefix means no subdomain or
//!      plain-HTTP page can plant a known value, which is what breaks naive double submit.
//!
//! Comparisons are constant-time.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use http::header::{HOST, ORIGIN, REFERER};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The form field carrying the token.
pub const FIELD: &str = "csrf";

/// The token forms carry while a session exists.
pub fn session_token(session_id: &str) -> String {
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(session_id.as_bytes()) {
        Ok(mac) => mac,
        // HMAC accepts keys of any length; unreachable, but never panic.
        Err(_) => return String::new(),
    };
    mac.update(b"trustgate/csrf/v1");
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Whether `presented` is the token of this session.
pub fn session_token_matches(session_id: &str, presented: &str) -> bool {
    let expected = session_token(session_id);
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

/// A fresh random token for the double-submit cookie (256 bits, base64url).
pub fn new_form_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether the form field equals the cookie (both present, well-formed, equal).
pub fn double_submit_matches(cookie: Option<&str>, presented: &str) -> bool {
    let Some(cookie) = cookie else { return false };
    cookie.len() == 43 && bool::from(cookie.as_bytes().ct_eq(presented.as_bytes()))
}

/// Whether the request was sent by a page of this server. See the module documentation.
pub fn check_origin(headers: &HeaderMap, public_origin: Option<&str>) -> bool {
    let header = |name| {
        headers
            .get(name)
            .map(|v: &http::HeaderValue| v.to_str().unwrap_or("\u{0}invalid"))
    };
    let host = header(HOST);
    let allowed = |origin: &str| match public_origin {
        Some(expected) => origin.eq_ignore_ascii_case(expected),
        None => host.is_some_and(|host| origin_matches_host(origin, host)),
    };
    let fetch_site = header(http::HeaderName::from_static("sec-fetch-site"));
    if let Some(site) = fetch_site
        && site != "same-origin"
    {
        return false;
    }
    match header(ORIGIN) {
        Some("null") | None => {}
        Some(origin) => return allowed(origin),
    }
    if fetch_site == Some("same-origin") {
        return true;
    }
    match header(REFERER) {
        Some(referer) => origin_of_url(referer).is_some_and(allowed),
        None => false,
    }
}

/// `scheme://authority` of an absolute http(s) URL.
fn origin_of_url(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&url[..scheme.len() + 3 + end])
}

/// `origin` is `https://<host>`, or `http://<host>` with a loopback host.
fn origin_matches_host(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    if !authority.eq_ignore_ascii_case(host) || authority.is_empty() {
        return false;
    }
    match scheme {
        "https" => true,
        "http" => is_loopback_host(host),
        _ => false,
    }
}

/// `localhost`, `127.x.x.x` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn session_tokens_are_bound_to_the_session() {
        let a = session_token("tg_sess_a");
        assert_eq!(a.len(), 43);
        assert!(session_token_matches("tg_sess_a", &a));
        assert!(!session_token_matches("tg_sess_b", &a));
        assert!(!session_token_matches("tg_sess_a", ""));
        assert!(!session_token_matches("tg_sess_a", &a[..42]));
    }

    #[test]
    fn double_submit_needs_both_equal() {
        let t = new_form_token();
        assert!(double_submit_matches(Some(&t), &t));
        assert!(!double_submit_matches(None, &t));
        assert!(!double_submit_matches(Some(&t), &new_form_token()));
        assert!(!double_submit_matches(Some(""), ""));
    }

    #[test]
    fn origin_must_be_this_server() {
        let host = ("host", "127.0.0.1:8080");
        assert!(check_origin(
            &headers(&[host, ("origin", "http://127.0.0.1:8080")]),
            None
        ));
        assert!(!check_origin(
            &headers(&[host, ("origin", "http://evil.com")]),
            None
        ));
        assert!(!check_origin(
            &headers(&[host, ("origin", "http://127.0.0.1:8081")]),
            None
        ));
        // Plain http only for loopback hosts.
        let public = ("host", "auth.example.com");
        assert!(check_origin(
            &headers(&[public, ("origin", "https://auth.example.com")]),
            None
        ));
        assert!(!check_origin(
            &headers(&[public, ("origin", "http://auth.example.com")]),
            None
        ));
        // Configured origin wins over Host.
        assert!(check_origin(
            &headers(&[
                ("host", "internal:8080"),
                ("origin", "https://auth.example.com")
            ]),
            Some("https://auth.example.com")
        ));
        assert!(!check_origin(
            &headers(&[
                ("host", "internal:8080"),
                ("origin", "https://internal:8080")
            ]),
            Some("https://auth.example.com")
        ));
    }

    #[test]
    fn null_or_missing_origin_needs_fetch_metadata_or_referer() {
        let host = ("host", "localhost:3000");
        assert!(!check_origin(&headers(&[host]), None), "nothing at all");
        assert!(!check_origin(&headers(&[host, ("origin", "null")]), None));
        assert!(check_origin(
            &headers(&[host, ("origin", "null"), ("sec-fetch-site", "same-origin")]),
            None
        ));
        assert!(!check_origin(
            &headers(&[host, ("origin", "null"), ("sec-fetch-site", "cross-site")]),
            None
        ));
        assert!(!check_origin(
            &headers(&[
                host,
                ("origin", "http://localhost:3000"),
                ("sec-fetch-site", "same-site")
            ]),
            None
        ));
        assert!(check_origin(
            &headers(&[host, ("referer", "http://localhost:3000/login?x=1")]),
            None
        ));
        assert!(!check_origin(
            &headers(&[host, ("referer", "http://localhost:3000.evil.com/login")]),
            None
        ));
        assert!(!check_origin(
            &headers(&[host, ("referer", "javascript://localhost:3000/")]),
            None
        ));
    }
}
