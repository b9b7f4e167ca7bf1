//! The cookies of the pages, built and read in one place so their attributes cannot drift.
//!
//! | cookie (strict name) | value | lifetime |
//! |---|---|---|
//! | `__Host-trustgate_session` | the session id (`tg_sess_...`) | browser session; the server enforces idle and absolute expiry |
//! | `__Host-trustgate_csrf` | random token for the forms shown before login (double submit) | browser session |
//! | `__Host-trustgate_pending` | the sealed pending login between password and second factor | 5 minutes |
//! | `__Host-trustgate_flash` | one-time secrets carried across a 303 (TOTP enrolment, recovery codes), sealed under a key derived from the session id | 10 minutes |
//!
//! Every one is `Path=/; Secure; HttpOnly; SameSite=Lax` without `Domain`, which the `__Host-`
//! prefix makes the browser enforce: no subdomain and no plain-HTTP page can set or shadow them.
//! With `pages.insecure_dev_cookies` (loopback only, see [`crate::config::PagesConfig`]) the
//! names lose the prefix and the cookies lose `Secure`; nothing else changes.

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};

/// Which kind of cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieKind {
    /// The session id.
    Session,
    /// The pre-login CSRF token.
    Csrf,
    /// The pending second-factor login.
    Pending,
    /// Sealed one-time secrets shown after a redirect.
    Flash,
}

/// How cookies are named and flagged: strict (`__Host-`, `Secure`) or loopback development.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookiePolicy {
    secure: bool,
}

impl CookiePolicy {
    /// Strict `__Host-` cookies.
    pub const STRICT: CookiePolicy = CookiePolicy { secure: true };
    /// Development cookies without `Secure` (loopback listeners only).
    pub const INSECURE_DEV: CookiePolicy = CookiePolicy { secure: false };

    /// The policy for `insecure_dev_cookies`.
    pub fn new(insecure_dev_cookies: bool) -> Self {
        if insecure_dev_cookies {
            Self::INSECURE_DEV
        } else {
            Self::STRICT
        }
    }

    /// Whether cookies carry `Secure` and the `__Host-` prefix.
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The cookie's name under this policy.
    pub fn name(&self, kind: CookieKind) -> &'static str {
        match (kind, self.secure) {
            (CookieKind::Session, true) => "__Host-trustgate_session",
            (CookieKind::Session, false) => "trustgate_session",
            (CookieKind::Csrf, true) => "__Host-trustgate_csrf",
            (CookieKind::Csrf, false) => "trustgate_csrf",
            (CookieKind::Pending, true) => "__Host-trustgate_pending",
            (CookieKind::Pending, false) => "trustgate_pending",
            (CookieKind::Flash, true) => "__Host-trustgate_flash",
            (CookieKind::Flash, false) => "trustgate_flash",
        }
    }

    /// A `Set-Cookie` value. `max_age` `None` makes a browser-session cookie. `None` if `value`
    /// contains a character that is not a cookie octet (our values never do).
    pub fn set(&self, kind: CookieKind, value: &str, max_age: Option<u64>) -> Option<HeaderValue> {
        if !value.bytes().all(is_cookie_octet) {
            return None;
        }
        let mut cookie = format!("{}={value}; Path=/", self.name(kind));
        if let Some(secs) = max_age {
            cookie.push_str(&format!("; Max-Age={secs}"));
        }
        if self.secure {
            cookie.push_str("; Secure");
        }
        cookie.push_str("; HttpOnly; SameSite=Lax");
        HeaderValue::from_str(&cookie).ok()
    }

    /// A `Set-Cookie` value that deletes the cookie.
    pub fn clear(&self, kind: CookieKind) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let cookie = format!(
            "{}=; Path=/; Max-Age=0{secure}; HttpOnly; SameSite=Lax",
            self.name(kind)
        );
        HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// The value of this kind of cookie in the request, if present exactly once and non-empty.
    /// A cookie sent twice (shadowing attempts on the dev names) counts as absent.
    pub fn get<'a>(&self, headers: &'a HeaderMap, kind: CookieKind) -> Option<&'a str> {
        let name = self.name(kind);
        let mut found = None;
        for header in headers.get_all(COOKIE) {
            let Ok(text) = header.to_str() else { continue };
            for pair in text.split(';') {
                let Some((k, v)) = pair.trim().split_once('=') else {
                    continue;
                };
                if k == name {
                    if found.is_some() {
                        return None;
                    }
                    found = Some(v);
                }
            }
        }
        found.filter(|v| !v.is_empty() && v.len() <= 4096)
    }
}

/// RFC 6265 cookie-octet.
fn is_cookie_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_session_cookie_has_exactly_the_required_attributes() {
        let set = CookiePolicy::STRICT
            .set(CookieKind::Session, "tg_sess_abc", None)
            .expect("valid");
        assert_eq!(
            set,
            "__Host-trustgate_session=tg_sess_abc; Path=/; Secure; HttpOnly; SameSite=Lax"
        );
        let clear = CookiePolicy::STRICT.clear(CookieKind::Session);
        assert_eq!(
            clear,
            "__Host-trustgate_session=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax"
        );
    }

    #[test]
    fn dev_cookies_drop_secure_and_the_prefix() {
        let set = CookiePolicy::INSECURE_DEV
            .set(CookieKind::Pending, "x", Some(300))
            .expect("valid");
        assert_eq!(
            set,
            "trustgate_pending=x; Path=/; Max-Age=300; HttpOnly; SameSite=Lax"
        );
    }

    #[test]
    fn values_that_would_inject_attributes_are_refused() {
        for bad in ["a;Domain=evil.com", "a b", "a\"", "a,b", "a\\b"] {
            assert!(
                CookiePolicy::STRICT
                    .set(CookieKind::Session, bad, None)
                    .is_none(),
                "{bad}"
            );
        }
    }

    #[test]
    fn reading_finds_exact_names_once() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static(
                "trustgate_session=dev; __Host-trustgate_session=strict; other=1",
            ),
        );
        assert_eq!(
            CookiePolicy::STRICT.get(&h, CookieKind::Session),
            Some("strict")
        );
        assert_eq!(
            CookiePolicy::INSECURE_DEV.get(&h, CookieKind::Session),
            Some("dev")
        );
        assert_eq!(CookiePolicy::STRICT.get(&h, CookieKind::Csrf), None);
        h.append(COOKIE, HeaderValue::from_static("trustgate_session=again"));
        assert_eq!(
            CookiePolicy::INSECURE_DEV.get(&h, CookieKind::Session),
            None
        );
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("__Host-trustgate_csrf="));
        assert_eq!(CookiePolicy::STRICT.get(&h, CookieKind::Csrf), None);
    }
}
