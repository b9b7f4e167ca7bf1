//! Where to go after login: `next` is honoured only when it is a path on this server.
//!
//! Accepted: an absolute path (`/account`, `/oauth2/authorize?client_id=x`) of printable ASCII,
//! at most 2048 bytes. Refused, falling back to [`DEFAULT`]: anything with a scheme or host
//! (`https://evil.com`, `//evil.com`), backslashes (`/\evil.com`, which browsers read as `//`),
//! control characters or whitespace (`/\t/evil.com`), and percent-encoded forms of any of those
//! (`/%2F%2Fevil.com`, `%2F%2Fevil.com`, `/%5Cevil.com`), decoded repeatedly so double encoding
//! does not slip through either.

use percent_encoding::percent_decode_str;

/// Where a refused or missing `next` goes.
pub const DEFAULT: &str = "/account";

/// Longest accepted `next`.
const MAX_LEN: usize = 2048;

/// `raw` if it is a safe same-origin path, else [`DEFAULT`].
pub fn safe_next(raw: Option<&str>) -> String {
    match raw {
        Some(path) if is_safe(path) => path.to_owned(),
        _ => DEFAULT.to_owned(),
    }
}

fn is_safe(path: &str) -> bool {
    if path.len() > MAX_LEN || !path.starts_with('/') {
        return false;
    }
    // Decode up to three times; every layer must look like a local path.
    let mut current = path.to_owned();
    for _ in 0..4 {
        if !layer_is_safe(&current) {
            return false;
        }
        let decoded = match percent_decode_str(&current).decode_utf8() {
            Ok(text) => text.into_owned(),
            Err(_) => return false,
        };
        if decoded == current {
            return http::uri::PathAndQuery::try_from(path).is_ok();
        }
        current = decoded;
    }
    false
}

fn layer_is_safe(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && path.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_pass() {
        for ok in [
            "/account",
            "/",
            "/oauth2/authorize?client_id=a&redirect_uri=https%3A%2F%2Fapp.example",
            "/account#sessions",
            "/a/b%2Dc",
        ] {
            assert_eq!(safe_next(Some(ok)), ok, "{ok}");
        }
    }

    #[test]
    fn everything_else_goes_to_the_account_page() {
        for bad in [
            "//evil.com",
            "https://evil.com",
            "http:/evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "%2F%2Fevil.com",
            "/%2Fevil.com",
            "/%2F%2Fevil.com",
            "/%5Cevil.com",
            "/%252F%252Fevil.com",
            "/%25252F%25252Fevil.com",
            "javascript:alert(1)",
            "/\t/evil.com",
            "/ /evil.com",
            "/%09/evil.com",
            "/%0d%0aSet-Cookie:x",
            "/%ff",
            "",
            "evil.com",
        ] {
            assert_eq!(safe_next(Some(bad)), DEFAULT, "{bad:?}");
        }
        assert_eq!(safe_next(None), DEFAULT);
        let long = format!("/{}", "a".repeat(3000));
        assert_eq!(safe_next(Some(&long)), DEFAULT);
    }
}
