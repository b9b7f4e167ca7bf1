//! Credentials → [`Principal`], in a fixed order; the first credential found decides, and a
//! present but invalid credential is refused (it never falls through to anonymous or to the
//! next kind):
//!
//! 1. `Authorization: Bearer <token>` or `Authorization: DPoP <token>`: a JWT (three dot-separated parts) is verified locally
//!    ([`JwtVerifier`]) and, when [`Authenticator::jwt_liveness`] is set, also introspected so
//!    that a revoked token, a signed-out session or a disabled user is refused within the
//!    introspection TTL instead of at `exp`; anything else (an opaque token, an API key) is
//!    introspected by [`Authenticator::introspection`] ([`Introspector`]). Another scheme in `Authorization` is an invalid
//!    credential. With `DPoP` (RFC 9449 §7.1) the request's `DPoP` proof is verified by
//!    [`Authenticator::dpop`] ([`DpopVerifier`]); without a verifier the scheme is refused.
//! 2. `X-API-Key: <key>`: introspected.
//! 3. The session cookie: a [`SessionResolver`].
//!
//! Every token's binding (`cnf`) is then checked against how it came
//! ([`trustgate_tokens::dpop::check_binding`]): a DPoP-bound token only with a proof by its
//! key, never as a bearer token or an API key header; an unbound token never with the `DPoP`
//! scheme; a certificate-bound token only when the request carries that certificate as a
//! [`PresentedCertificate`] (which whatever terminates mutual TLS in front of the layer
//! inserts), so never over a connection without it.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};
use http::request::Parts;
use trustgate_tokens::dpop::{Presentation, check_binding};

use crate::dpop::DpopVerifier;
use crate::introspection::Introspector;
use crate::jwks::JwtVerifier;
use crate::principal::Principal;

/// Why a credential did not yield a principal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The credential is invalid (401); a stable code says why.
    #[error("invalid credential: {0}")]
    Invalid(String),
    /// The DPoP proof is invalid or replayed (401 with a `DPoP` challenge); a stable code says
    /// why.
    #[error("invalid DPoP proof: {0}")]
    InvalidProof(String),
    /// Whoever must vouch for the credential could not answer (503).
    #[error("authentication unavailable: {0}")]
    Unavailable(String),
}

impl AuthError {
    /// An invalid credential, with a stable code.
    pub fn invalid(why: &str) -> Self {
        AuthError::Invalid(why.to_owned())
    }
}

/// Resolves a session cookie to its user. The in-process implementation (over
/// `authn::accounts::Accounts`) lives in `trustgate-server`.
#[async_trait]
pub trait SessionResolver: fmt::Debug + Send + Sync {
    /// The principal of the session `cookie` names: `Ok(None)` when it is unknown, expired,
    /// revoked or its user disabled; `Err` only when the store could not be asked.
    async fn resolve(&self, cookie: &str) -> Result<Option<Principal>, String>;
}

/// The client certificate of the request's connection, as its `x5t#S256` (RFC 8705 §3.1): a
/// request extension inserted by whatever terminated mutual TLS in front of the layer (the
/// gateway's mutual-TLS listener does). A certificate-bound token passes only with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedCertificate(pub String);

impl PresentedCertificate {
    /// The certificate whose DER is `der`.
    pub fn from_der(der: &[u8]) -> Self {
        PresentedCertificate(trustgate_tokens::Confirmation::certificate_thumbprint(der))
    }
}

/// The session cookie's name and its resolver.
#[derive(Debug, Clone)]
pub struct SessionCookie {
    /// The cookie name (trustgate's is `__Host-trustgate_session`).
    pub name: String,
    /// The resolver.
    pub resolver: Arc<dyn SessionResolver>,
}

/// What was presented, before it is checked. `dpop`: the token came with the `DPoP` scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presented<'a> {
    Jwt { token: &'a str, dpop: bool },
    Opaque { token: &'a str, dpop: bool },
    Session(&'a str),
    Malformed(&'static str),
}

/// The credential kinds this service accepts. Kinds left unset are not accepted: a credential
/// of such a kind is invalid, never ignored.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    /// Local JWT verification.
    pub jwt: Option<JwtVerifier>,
    /// Introspection of opaque tokens and API keys.
    pub introspection: Option<Introspector>,
    /// Session cookies.
    pub session: Option<SessionCookie>,
    /// When set, a locally verified JWT must also still be active at this introspection
    /// client. The principal stays the one the JWT describes (introspection answers carry no
    /// `amr`/`auth_time`); introspection only says whether the token still stands. Apart from
    /// [`introspection`](Self::introspection) so that a service can check its JWTs' liveness
    /// without accepting opaque tokens. Unset: a revoked JWT is honoured until its `exp`.
    pub jwt_liveness: Option<Introspector>,
    /// DPoP proofs (`Authorization: DPoP`). Unset: the scheme is refused; DPoP-bound tokens
    /// are then refused too, since they cannot be presented any other way.
    pub dpop: Option<DpopVerifier>,
}

impl Authenticator {
    /// The principal behind the request's credential: `Ok(None)` when none was presented.
    pub async fn authenticate(&self, request: &Parts) -> Result<Option<Principal>, AuthError> {
        let Some(presented) = self.presented(&request.headers) else {
            return Ok(None);
        };
        let (token, dpop) = match presented {
            Presented::Jwt { token, dpop } | Presented::Opaque { token, dpop } => {
                (Some(token), dpop)
            }
            _ => (None, false),
        };
        // The proof first: a request whose proof does not hold is refused before anything is
        // asked of the issuer.
        let proven_key = match (token, dpop) {
            (Some(token), true) => {
                let verifier = self
                    .dpop
                    .as_ref()
                    .ok_or_else(|| AuthError::invalid("dpop_not_accepted"))?;
                let proof = single_dpop_header(&request.headers)?;
                Some(verifier.verify(proof, &request.method, &request.uri, token)?)
            }
            _ => None,
        };
        let principal = match presented {
            Presented::Malformed(why) => return Err(AuthError::invalid(why)),
            Presented::Jwt { token, .. } => match &self.jwt {
                Some(jwt) => {
                    let principal = jwt.verify(token).await?;
                    if let Some(liveness) = &self.jwt_liveness {
                        liveness.introspect(token).await.map_err(|e| match e {
                            AuthError::Invalid(_) => AuthError::invalid("token_revoked"),
                            unavailable => unavailable,
                        })?;
                    }
                    principal
                }
                None => return Err(AuthError::invalid("jwt_not_accepted")),
            },
            Presented::Opaque { token, .. } => match &self.introspection {
                Some(introspection) => introspection.introspect(token).await?,
                None => return Err(AuthError::invalid("opaque_token_not_accepted")),
            },
            Presented::Session(cookie) => match &self.session {
                Some(session) => session
                    .resolver
                    .resolve(cookie)
                    .await
                    .map_err(|why| AuthError::Unavailable(format!("session: {why}")))?
                    .ok_or_else(|| AuthError::invalid("session_invalid"))?,
                None => return Err(AuthError::invalid("session_not_accepted")),
            },
        };
        if token.is_some() {
            let presentation = match &proven_key {
                Some(jkt) => Presentation::Dpop { jkt },
                None => Presentation::Bearer,
            };
            let certificate = request
                .extensions
                .get::<PresentedCertificate>()
                .map(|c| c.0.as_str());
            check_binding(principal.cnf.as_ref(), presentation, certificate)
                .map_err(|e| AuthError::invalid(e.reason()))?;
        }
        Ok(Some(principal))
    }

    fn presented<'h>(&self, headers: &'h HeaderMap) -> Option<Presented<'h>> {
        let mut authorization = headers.get_all(AUTHORIZATION).iter();
        if let Some(value) = authorization.next() {
            if authorization.next().is_some() {
                return Some(Presented::Malformed("several_authorization_headers"));
            }
            let Ok(value) = value.to_str() else {
                return Some(Presented::Malformed("authorization_malformed"));
            };
            // RFC 6750 §2.1 and RFC 9449 §7.1: `Bearer` or `DPoP` (case-insensitive scheme),
            // one space, the token68.
            let (token, dpop) = match value.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                    (token.trim(), false)
                }
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("dpop") => {
                    (token.trim(), true)
                }
                _ => return Some(Presented::Malformed("authorization_scheme_not_bearer")),
            };
            if token.is_empty() || token.contains(' ') {
                return Some(Presented::Malformed("authorization_malformed"));
            }
            return Some(if looks_like_jwt(token) {
                Presented::Jwt { token, dpop }
            } else {
                Presented::Opaque { token, dpop }
            });
        }
        let mut keys = headers.get_all("x-api-key").iter();
        if let Some(value) = keys.next() {
            if keys.next().is_some() {
                return Some(Presented::Malformed("several_api_key_headers"));
            }
            return Some(match value.to_str() {
                Ok(key) if !key.trim().is_empty() => Presented::Opaque {
                    token: key.trim(),
                    dpop: false,
                },
                _ => Presented::Malformed("api_key_malformed"),
            });
        }
        let name = self.session.as_ref()?.name.as_str();
        let mut found = None;
        for header in headers.get_all(COOKIE) {
            let Ok(header) = header.to_str() else {
                continue;
            };
            for pair in header.split(';') {
                if let Some((n, v)) = pair.trim().split_once('=')
                    && n == name
                {
                    if found.is_some() {
                        return Some(Presented::Malformed("several_session_cookies"));
                    }
                    found = Some(v);
                }
            }
        }
        found.map(|v| {
            if v.is_empty() {
                Presented::Malformed("session_malformed")
            } else {
                Presented::Session(v)
            }
        })
    }
}

/// The request's one `DPoP` header (RFC 9449 §4.3 check 1: exactly one).
fn single_dpop_header(headers: &HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all("dpop").iter();
    match (values.next(), values.next()) {
        (Some(value), None) => value
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|proof| !proof.is_empty())
            .ok_or_else(|| AuthError::InvalidProof("dpop_proof_malformed".into())),
        (None, _) => Err(AuthError::InvalidProof("dpop_proof_missing".into())),
        (Some(_), Some(_)) => Err(AuthError::InvalidProof("several_dpop_headers".into())),
    }
}

/// Three base64url parts separated by dots: a JWS compact serialization.
fn looks_like_jwt(token: &str) -> bool {
    let mut parts = 0;
    for part in token.split('.') {
        parts += 1;
        if part.is_empty()
            || !part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return false;
        }
    }
    parts == 3
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[derive(Debug)]
    struct NoSessions;

    #[async_trait]
    impl SessionResolver for NoSessions {
        async fn resolve(&self, _: &str) -> Result<Option<Principal>, String> {
            Ok(None)
        }
    }

    fn with_session() -> Authenticator {
        Authenticator {
            session: Some(SessionCookie {
                name: "sid".into(),
                resolver: Arc::new(NoSessions),
            }),
            ..Authenticator::default()
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn request(pairs: &[(&'static str, &'static str)]) -> Parts {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.headers = headers(pairs);
        parts
    }

    #[test]
    fn the_first_credential_decides_and_malformed_ones_are_invalid() {
        let a = with_session();
        let check = |pairs: &[(&'static str, &'static str)], expected: Option<Presented<'_>>| {
            let h = headers(pairs);
            assert_eq!(a.presented(&h), expected, "{pairs:?}");
        };
        check(&[], None);
        check(&[("cookie", "other=1")], None);
        check(&[("cookie", "a=1; sid=s1")], Some(Presented::Session("s1")));
        check(
            &[("authorization", "Bearer a.b.c"), ("cookie", "sid=s1")],
            Some(Presented::Jwt {
                token: "a.b.c",
                dpop: false,
            }),
        );
        check(
            &[("authorization", "DPoP a.b.c")],
            Some(Presented::Jwt {
                token: "a.b.c",
                dpop: true,
            }),
        );
        check(
            &[("authorization", "bearer tg_live_x")],
            Some(Presented::Opaque {
                token: "tg_live_x",
                dpop: false,
            }),
        );
        check(
            &[("x-api-key", "tg_live_x"), ("cookie", "sid=s1")],
            Some(Presented::Opaque {
                token: "tg_live_x",
                dpop: false,
            }),
        );
        check(
            &[("authorization", "Basic dXNlcjpwdw==")],
            Some(Presented::Malformed("authorization_scheme_not_bearer")),
        );
        check(
            &[("authorization", "Bearer")],
            Some(Presented::Malformed("authorization_scheme_not_bearer")),
        );
        check(
            &[("authorization", "Bearer a b")],
            Some(Presented::Malformed("authorization_malformed")),
        );
        check(
            &[("authorization", "Bearer x"), ("authorization", "Bearer y")],
            Some(Presented::Malformed("several_authorization_headers")),
        );
        check(
            &[("cookie", "sid=a; sid=b")],
            Some(Presented::Malformed("several_session_cookies")),
        );
        check(
            &[("cookie", "sid=")],
            Some(Presented::Malformed("session_malformed")),
        );
    }

    #[tokio::test]
    async fn kinds_not_configured_are_refused_not_ignored() {
        let a = Authenticator::default();
        assert_eq!(
            a.authenticate(&request(&[("authorization", "Bearer a.b.c")]))
                .await,
            Err(AuthError::invalid("jwt_not_accepted"))
        );
        assert_eq!(
            a.authenticate(&request(&[
                ("authorization", "DPoP a.b.c"),
                ("dpop", "p.r.f")
            ]))
            .await,
            Err(AuthError::invalid("dpop_not_accepted"))
        );
        assert_eq!(
            a.authenticate(&request(&[("x-api-key", "k")])).await,
            Err(AuthError::invalid("opaque_token_not_accepted"))
        );
        // Without a session cookie configured, cookies are not credentials at all.
        assert_eq!(
            a.authenticate(&request(&[("cookie", "sid=s")])).await,
            Ok(None)
        );
        let a = with_session();
        assert_eq!(
            a.authenticate(&request(&[("cookie", "sid=s")])).await,
            Err(AuthError::invalid("session_invalid"))
        );
    }

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJ.eyJ.sig"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a..c"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt("tg_live_01H_abc"));
        assert!(!looks_like_jwt("a.b.c="));
    }
}
