//! What the login-flood scenario of `trustgate-load` reads from the `/login` pages: the
//! double-submit CSRF cookie and hidden field of `GET /login`, and whether a `POST /login`
//! answer is a successful sign-in (303 with a session cookie), a busy hashing pool (503), a
//! throttled client (429) or something else.
//!
//! Cookies are read from `Set-Cookie` by hand and sent back in a `Cookie` header: the strict
//! cookies are `Secure` (`__Host-` prefix), which a cookie jar would not send back over the
//! plain-HTTP loopback listener the benchmark uses. Both the strict and the development names
//! (`pages.insecure_dev_cookies`) are recognised.

/// Name suffix of the pre-login CSRF cookie (`__Host-trustgate_csrf` or `trustgate_csrf`).
pub const CSRF_COOKIE: &str = "trustgate_csrf";
/// Name suffix of the session cookie (`__Host-trustgate_session` or `trustgate_session`).
pub const SESSION_COOKIE: &str = "trustgate_session";

/// `name=value` of the first `Set-Cookie` whose name is `suffix` or `__Host-` + `suffix`, with a
/// non-empty value.
pub fn find_cookie<'a>(
    set_cookies: impl IntoIterator<Item = &'a str>,
    suffix: &str,
) -> Option<(&'a str, &'a str)> {
    set_cookies.into_iter().find_map(|header| {
        let pair = header.split(';').next()?.trim();
        let (name, value) = pair.split_once('=')?;
        let matches = name == suffix || name.strip_prefix("__Host-") == Some(suffix);
        (matches && !value.is_empty()).then_some((name, value))
    })
}

/// The value of the hidden `csrf` field of a page (`<input type="hidden" name="csrf"
/// value="...">`).
pub fn hidden_csrf(html: &str) -> Option<&str> {
    let at = html.find("name=\"csrf\"")?;
    let rest = &html[at..];
    let end_of_tag = rest.find('>')?;
    let tag = &rest[..end_of_tag];
    let start = tag.find("value=\"")? + "value=\"".len();
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

/// How one `POST /login` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    /// 303 with a session cookie.
    SignedIn,
    /// 503: the password-hashing pool and its queue were full.
    Busy,
    /// 429: too many failed attempts (per account or per client IP).
    Throttled,
    /// 200: the form again, "Incorrect username or password".
    Rejected,
    /// Anything else (403 CSRF or origin refusal, 5xx, a 303 without a session cookie, ...).
    Other,
}

impl LoginOutcome {
    /// Classifies an answer from its status and whether it set a session cookie.
    pub fn of(status: u16, session_cookie: bool) -> Self {
        match status {
            303 if session_cookie => LoginOutcome::SignedIn,
            503 => LoginOutcome::Busy,
            429 => LoginOutcome::Throttled,
            200 => LoginOutcome::Rejected,
            _ => LoginOutcome::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_strict_and_dev_cookies() {
        let headers = [
            "other=1; Path=/",
            "__Host-trustgate_csrf=abc_-1; Path=/; Secure; HttpOnly; SameSite=Lax",
        ];
        assert_eq!(
            find_cookie(headers, CSRF_COOKIE),
            Some(("__Host-trustgate_csrf", "abc_-1"))
        );
        assert_eq!(
            find_cookie(["trustgate_csrf=x; Path=/; HttpOnly"], CSRF_COOKIE),
            Some(("trustgate_csrf", "x"))
        );
        assert_eq!(find_cookie(headers, SESSION_COOKIE), None);
        // A deletion (empty value) or a look-alike name is not the cookie.
        assert_eq!(
            find_cookie(
                [
                    "__Host-trustgate_session=; Path=/; Max-Age=0",
                    "x_trustgate_session=1"
                ],
                SESSION_COOKIE
            ),
            None
        );
    }

    #[test]
    fn reads_the_hidden_field() {
        let html = "<form method=\"post\">\n<input type=\"hidden\" name=\"next\" value=\"/\">\n\
                    <input type=\"hidden\" name=\"csrf\" value=\"tok-EN_1\">\n<input name=\"u\">";
        assert_eq!(hidden_csrf(html), Some("tok-EN_1"));
        assert_eq!(hidden_csrf("<input name=\"csrf\">"), None);
        assert_eq!(hidden_csrf("no form"), None);
    }

    #[test]
    fn classifies_answers() {
        assert_eq!(LoginOutcome::of(303, true), LoginOutcome::SignedIn);
        assert_eq!(LoginOutcome::of(303, false), LoginOutcome::Other);
        assert_eq!(LoginOutcome::of(503, false), LoginOutcome::Busy);
        assert_eq!(LoginOutcome::of(429, false), LoginOutcome::Throttled);
        assert_eq!(LoginOutcome::of(200, false), LoginOutcome::Rejected);
        assert_eq!(LoginOutcome::of(403, false), LoginOutcome::Other);
    }
}
