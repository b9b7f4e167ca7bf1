//! Our own tokens presented back to us: access tokens (introspection, revocation, userinfo) and
//! ID tokens as hints (authorization, logout).

use serde::de::DeserializeOwned;
use time::Duration;
use trustgate_tokens::{AccessTokenClaims, Expectation};

use super::Provider;
use crate::OAuthError;
use crate::claims::IdTokenClaims;

/// The leeway for `exp`/`nbf` when verifying our own tokens: none. This server signed them
/// with its own clock and checks them with the same clock, so there is no skew to forgive; an
/// expired token is expired at its `exp` second, for introspection, userinfo and revocation
/// alike. (Skew leeway is for assertions from other parties, see
/// `ClientRegistry::with_assertion_leeway`.)
pub const OWN_TOKEN_LEEWAY: Duration = Duration::ZERO;

impl Provider {
    /// One of our access tokens (`at+jwt`, our issuer, unexpired, `aud` containing one of
    /// `audiences` unless empty), signature checked; revocation is the caller's to check.
    pub(super) fn verify_access_token(
        &self,
        token: &str,
        audiences: &[&str],
    ) -> Option<AccessTokenClaims> {
        self.verify_ours(token, audiences, Some("at+jwt"), true)
    }

    /// One of our ID tokens used as a hint: signature and issuer checked, expiry ignored (RPs
    /// send hints long after the ID token expired).
    pub(super) fn verify_id_token_hint(
        &self,
        token: &str,
        audiences: &[&str],
    ) -> Option<IdTokenClaims> {
        self.verify_ours(token, audiences, None, false)
    }

    /// A JWT this server signed: our keys, our issuer, `aud` containing one of `audiences`
    /// unless empty, header `typ` if given, and `exp` (required) unless `check_expiry` is off.
    fn verify_ours<T: DeserializeOwned>(
        &self,
        token: &str,
        audiences: &[&str],
        typ: Option<&str>,
        check_expiry: bool,
    ) -> Option<T> {
        trustgate_tokens::verify::<T>(
            token,
            &self.inner.keys.resolver(),
            &Expectation {
                issuer: self.issuer(),
                audiences,
                typ,
                now: self.now(),
                leeway: OWN_TOKEN_LEEWAY,
                require_exp: check_expiry,
                check_expiry,
            },
        )
        .ok()
        .map(|verified| verified.claims)
    }

    /// The subject of an ID token this server issued (expired or not: hints are often old),
    /// optionally required to be for `client_id`.
    pub(super) fn id_token_hint_subject(
        &self,
        hint: &str,
        client_id: Option<&str>,
    ) -> Option<String> {
        let audiences: Vec<&str> = client_id.into_iter().collect();
        self.verify_id_token_hint(hint, &audiences)
            .map(|claims| claims.sub)
    }

    /// Verifies one of our access tokens and checks it has not been revoked (its jti, its grant,
    /// or the user's token version). `audiences`: what `aud` must contain one of.
    pub(super) async fn live_access_token(
        &self,
        token: &str,
        audiences: &[&str],
    ) -> Result<Option<AccessTokenClaims>, OAuthError> {
        let Some(claims) = self.verify_access_token(token, audiences) else {
            return Ok(None);
        };
        let store = &self.inner.store;
        if store.access_token_revoked(&claims.jti).await? {
            return Ok(None);
        }
        if let Some(gid) = &claims.gid {
            match store.get_grant(gid).await? {
                Some(grant) if grant.revoked_at.is_none() => {}
                _ => return Ok(None),
            }
        }
        if let Some(uv) = claims.uv {
            let current = store.user_token_version(&claims.sub).await?;
            if current != Some(uv) {
                return Ok(None);
            }
            let active = store
                .get_user(&claims.sub)
                .await?
                .is_some_and(|u| u.status == trustgate_store_api::UserStatus::Active);
            if !active {
                return Ok(None);
            }
        }
        Ok(Some(claims))
    }
}

impl Provider {
    /// A user's access token that a resource server presents on the user's behalf (AuthZEN's
    /// `X-Subject-Token`): verified exactly as introspection verifies our access tokens (our
    /// keys, `at+jwt`, our issuer, unexpired with no leeway, any audience — it was issued for
    /// the resource server, not for us — and not revoked: its `jti`, its grant, the user's
    /// token version and status). Only a user's token (one with a token version, as userinfo
    /// requires) qualifies; a client's own token or a refresh token is `None`, like any
    /// invalid one. `Err` only when the database cannot answer.
    pub async fn verify_subject_token(
        &self,
        token: &str,
    ) -> Result<Option<AccessTokenClaims>, OAuthError> {
        if !looks_like_jwt(token) {
            return Ok(None);
        }
        Ok(self
            .live_access_token(token, &[])
            .await?
            .filter(|claims| claims.uv.is_some()))
    }
}

/// Our access tokens are JWS compact serializations; refresh tokens are opaque and dot-free.
pub(super) fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}
