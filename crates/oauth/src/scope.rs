//! Scopes (RFC 6749 §3.3): a space-separated set of scope tokens, each
//! `1*( %x21 / %x23-5B / %x5D-7E )`.

use std::collections::BTreeSet;
use std::fmt;

use crate::OAuthError;

/// The OpenID Connect scope that makes a request an authentication request.
pub const OPENID: &str = "openid";
/// The scope that asks for a refresh token usable when the user is not present.
pub const OFFLINE_ACCESS: &str = "offline_access";
/// Longest accepted `scope` parameter.
pub const MAX_SCOPE_BYTES: usize = 2048;

/// A set of scope tokens, kept in a stable order so responses are deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope(BTreeSet<String>);

impl Scope {
    /// Parses a `scope` parameter; repeated tokens collapse. An empty or absent parameter is the
    /// empty scope.
    pub fn parse(raw: &str) -> Result<Self, OAuthError> {
        if raw.len() > MAX_SCOPE_BYTES {
            return Err(OAuthError::new(
                crate::ErrorCode::InvalidScope,
                "scope is too long",
            ));
        }
        let mut tokens = BTreeSet::new();
        for token in raw.split(' ').filter(|t| !t.is_empty()) {
            if !is_scope_token(token) {
                return Err(OAuthError::new(
                    crate::ErrorCode::InvalidScope,
                    "scope contains a character RFC 6749 does not allow",
                ));
            }
            tokens.insert(token.to_owned());
        }
        Ok(Self(tokens))
    }

    /// A scope made of these tokens (assumed valid, e.g. a client's registered scopes).
    pub fn from_tokens<I, S>(tokens: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self(tokens.into_iter().map(Into::into).collect())
    }

    /// Whether the scope holds `token`.
    pub fn contains(&self, token: &str) -> bool {
        self.0.contains(token)
    }

    /// Whether no token is present.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every token here is also in `other`.
    pub fn is_subset(&self, other: &Scope) -> bool {
        self.0.is_subset(&other.0)
    }

    /// The tokens of `self` that `allowed` does not contain.
    pub fn not_in(&self, allowed: &Scope) -> Vec<&str> {
        self.0
            .iter()
            .filter(|t| !allowed.0.contains(*t))
            .map(String::as_str)
            .collect()
    }

    /// The tokens, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// The union of two scopes.
    pub fn union(&self, other: &Scope) -> Scope {
        Scope(self.0.union(&other.0).cloned().collect())
    }

    /// Whether this is an OpenID Connect request.
    pub fn is_openid(&self) -> bool {
        self.contains(OPENID)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for token in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(token)?;
            first = false;
        }
        Ok(())
    }
}

/// RFC 6749 §3.3 `scope-token`.
pub fn is_scope_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dedups_and_orders() {
        let scope = Scope::parse("profile openid  profile email").expect("valid");
        assert_eq!(scope.to_string(), "email openid profile");
        assert!(scope.is_openid());
        assert_eq!(Scope::parse("").expect("empty").to_string(), "");
    }

    #[test]
    fn refuses_characters_outside_the_grammar() {
        for bad in ["a\"b", "a\\b", "caf\u{e9}", "a\tb", "a\u{7f}"] {
            let err = Scope::parse(bad).expect_err(bad);
            assert_eq!(err.code, crate::ErrorCode::InvalidScope);
        }
        assert!(Scope::parse(&"a".repeat(MAX_SCOPE_BYTES + 1)).is_err());
    }

    #[test]
    fn subset_and_difference() {
        let allowed = Scope::parse("openid profile email").expect("valid");
        let asked = Scope::parse("openid admin").expect("valid");
        assert!(!asked.is_subset(&allowed));
        assert_eq!(asked.not_in(&allowed), vec!["admin"]);
        assert!(Scope::parse("openid").expect("valid").is_subset(&allowed));
    }
}
