//! The issuer's JWKS over HTTP and local JWT verification with `tokens::verify` (the one
//! verification policy).
//!
//! The key set is fetched on first use and kept for [`JwtConfig::jwks_max_age`]. A token whose
//! `kid` is not in the cached set triggers one refetch, but at most one per
//! [`JwtConfig::refetch_interval`]: a flood of tokens with invented `kid`s costs the issuer one
//! request per interval, not one per token. trustgate publishes a new key
//! `oauth.key_publish_ahead_secs` before it signs with it, so in normal operation a refetch on an
//! unknown `kid` is never needed; it is the recovery path after an unplanned rotation.
//!
//! An access token verified once is remembered by its SHA-256 (`VerifiedToken`): a caller
//! presenting the same token again costs a hash and a lookup, not a signature verification;
//! its `exp`/`nbf` are still checked on every request.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use trustgate_core::Clock;
use trustgate_tokens::{AccessTokenClaims, Expectation, JwkSetResolver, VerifyError};

use crate::authenticate::AuthError;
use crate::principal::{AuthMethod, Principal, PrincipalKind, split_scope};

/// The largest JWKS document read.
const MAX_JWKS_BYTES: usize = 64 * 1024;

/// The `typ` trustgate gives its access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Settings of local JWT verification.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// The issuer, exactly as in `iss` (trustgate's `issuer`).
    pub issuer: String,
    /// The JWKS URL (trustgate: `{issuer}/.well-known/jwks.json`).
    pub jwks_url: url::Url,
    /// This resource server's audience: `aud` must contain it.
    pub audience: String,
    /// Tolerance for `exp`/`nbf`. Default zero: trustgate's tokens are checked with no leeway;
    /// set a small skew only when this service's clock is not trustgate's.
    pub leeway: Duration,
    /// How long a fetched key set is used before it is fetched again.
    pub jwks_max_age: Duration,
    /// The least time between two fetches caused by an unknown `kid`.
    pub refetch_interval: Duration,
}

impl JwtConfig {
    /// Defaults for trustgate at `issuer`: its JWKS URL, no leeway, a 5-minute key-set age
    /// (shorter than trustgate's publish-ahead) and one unknown-`kid` refetch per 30 seconds.
    pub fn for_trustgate(issuer: &str, audience: &str) -> Result<Self, url::ParseError> {
        let base = issuer.trim_end_matches('/');
        Ok(JwtConfig {
            issuer: issuer.to_owned(),
            jwks_url: url::Url::parse(&format!("{base}/.well-known/jwks.json"))?,
            audience: audience.to_owned(),
            leeway: Duration::ZERO,
            jwks_max_age: Duration::from_secs(300),
            refetch_interval: Duration::from_secs(30),
        })
    }
}

/// After a failed fetch, the least time before the next attempt.
const FAILURE_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Cached {
    keys: Option<Arc<JwkSetResolver>>,
    /// The last successful fetch.
    fetched_at: Option<OffsetDateTime>,
    /// The last attempt, successful or not.
    attempted_at: Option<OffsetDateTime>,
    /// Whether the last attempt failed.
    failed: bool,
}

/// A JWT verifier over a remote JWKS. Cheap to clone.
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
}

/// An access token whose signature, issuer, audience and type were verified: the same bytes
/// verify the same way again, so only its validity period is checked on a later use. Entries
/// are dropped when a key set is fetched (a key withdrawn from the JWKS is not trusted beyond
/// that fetch) and after the key set's max age, and are bounded in number
/// ([`MAX_VERIFIED_TOKENS`]). Keyed by the token's SHA-256, so no token is kept.
#[derive(Debug)]
struct VerifiedToken {
    exp: i64,
    nbf: Option<i64>,
    principal: Principal,
}

impl VerifiedToken {
    /// `exp` and `nbf` as `tokens::verify` checks them (RFC 7519 §4.1.4, §4.1.5).
    fn is_current(&self, now: i64, leeway: i64) -> bool {
        now < self.exp.saturating_add(leeway)
            && self.nbf.is_none_or(|nbf| now >= nbf.saturating_sub(leeway))
    }
}

/// The most verified tokens remembered.
const MAX_VERIFIED_TOKENS: u64 = 50_000;

struct Inner {
    config: JwtConfig,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    verified: moka::sync::Cache<[u8; 32], Arc<VerifiedToken>>,
    cached: Mutex<Cached>,
    /// Serializes fetches: concurrent misses wait for one request instead of sending many.
    fetch: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// A verifier; `http` should carry a timeout.
    pub fn new(config: JwtConfig, http: reqwest::Client, clock: Arc<dyn Clock>) -> Self {
        let verified = moka::sync::Cache::builder()
            .max_capacity(MAX_VERIFIED_TOKENS)
            .time_to_live(config.jwks_max_age)
            .build();
        JwtVerifier {
            inner: Arc::new(Inner {
                config,
                http,
                clock,
                verified,
                cached: Mutex::new(Cached::default()),
                fetch: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Verifies `token` and describes its caller. A token verified before is not verified
    /// again (it is remembered by its hash); its `exp` and `nbf` are checked on every use.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let inner = &self.inner;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = inner.clock.now().unix_timestamp();
        let leeway = i64::try_from(inner.config.leeway.as_secs()).unwrap_or(i64::MAX);
        if let Some(known) = inner.verified.get(&digest) {
            if known.is_current(now, leeway) {
                return Ok(known.principal.clone());
            }
            // Expired (or not yet valid): the full verification says which, precisely.
            inner.verified.invalidate(&digest);
        }
        let audience = inner.config.audience.clone();
        let claims = self
            .verify_as::<AccessTokenClaims>(token, &audience, Some(ACCESS_TOKEN_TYP))
            .await?;
        let known = VerifiedToken {
            exp: claims.exp,
            nbf: claims.nbf,
            principal: principal_from_claims(claims),
        };
        let principal = known.principal.clone();
        inner.verified.insert(digest, Arc::new(known));
        Ok(principal)
    }

    /// Verifies an OpenID Connect ID token (Core §3.1.3.7) a relying party received from the
    /// same issuer: signature against the JWKS, `iss` exactly, `aud` containing `client_id`,
    /// `exp` (with this verifier's leeway) and, when the request sent one, `nonce` exactly.
    pub async fn verify_id_token(
        &self,
        token: &str,
        client_id: &str,
        nonce: Option<&str>,
    ) -> Result<IdTokenClaims, AuthError> {
        let claims = self
            .verify_as::<IdTokenClaims>(token, client_id, None)
            .await?;
        if claims.nonce.as_deref() != nonce {
            return Err(AuthError::invalid("id_token_nonce_wrong"));
        }
        Ok(claims)
    }

    /// Verifies `token` for `audience` (and header `typ`, when given) and returns its claims.
    async fn verify_as<T: DeserializeOwned>(
        &self,
        token: &str,
        audience: &str,
        typ: Option<&str>,
    ) -> Result<T, AuthError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let fresh = {
            let cached = inner.cached.lock();
            match (&cached.keys, cached.fetched_at) {
                (Some(keys), Some(at)) if now - at < inner.config.jwks_max_age => {
                    Some(keys.clone())
                }
                _ => None,
            }
        };
        let keys = match fresh {
            Some(keys) => keys,
            None => self.refresh().await?,
        };
        match self.check(token, &keys, audience, typ) {
            Err(VerifyError::UnknownKey) => {
                let Some(keys) = self.refetch_for_unknown_kid(&keys).await? else {
                    return Err(AuthError::invalid(VerifyError::UnknownKey.code()));
                };
                self.check(token, &keys, audience, typ)
                    .map_err(|e| AuthError::invalid(e.code()))
            }
            other => other.map_err(|e| AuthError::invalid(e.code())),
        }
    }

    fn check<T: DeserializeOwned>(
        &self,
        token: &str,
        keys: &JwkSetResolver,
        audience: &str,
        typ: Option<&str>,
    ) -> Result<T, VerifyError> {
        let config = &self.inner.config;
        let audiences = [audience];
        let expect = Expectation {
            issuer: &config.issuer,
            audiences: &audiences,
            typ,
            now: self.inner.clock.now(),
            leeway: time::Duration::try_from(config.leeway).unwrap_or(time::Duration::ZERO),
            require_exp: true,
            check_expiry: true,
        };
        trustgate_tokens::verify::<T>(token, keys, &expect).map(|verified| verified.claims)
    }

    /// After an unknown `kid`: a new key set, unless one was fetched within the refetch
    /// interval (then `None`: the `kid` stays unknown).
    async fn refetch_for_unknown_kid(
        &self,
        seen: &Arc<JwkSetResolver>,
    ) -> Result<Option<Arc<JwkSetResolver>>, AuthError> {
        let _one = self.inner.fetch.lock().await;
        let now = self.inner.clock.now();
        {
            let cached = self.inner.cached.lock();
            if let Some(keys) = &cached.keys
                && !Arc::ptr_eq(keys, seen)
            {
                // Another request refetched while this one waited.
                return Ok(Some(keys.clone()));
            }
            if cached
                .attempted_at
                .is_some_and(|at| now - at < self.inner.config.refetch_interval)
            {
                return Ok(None);
            }
        }
        self.fetch_locked().await.map(Some)
    }

    async fn refresh(&self) -> Result<Arc<JwkSetResolver>, AuthError> {
        let _one = self.inner.fetch.lock().await;
        let now = self.inner.clock.now();
        {
            let cached = self.inner.cached.lock();
            if let (Some(keys), Some(at)) = (&cached.keys, cached.fetched_at)
                && now - at < self.inner.config.jwks_max_age
            {
                return Ok(keys.clone());
            }
            if cached.failed
                && cached
                    .attempted_at
                    .is_some_and(|at| now - at < FAILURE_BACKOFF)
            {
                return usable(&cached, now, &self.inner.config).ok_or_else(|| {
                    AuthError::Unavailable("jwks: the issuer could not be reached".into())
                });
            }
        }
        self.fetch_locked().await
    }

    /// Fetches the key set (the caller holds the fetch lock). A failed fetch still counts for
    /// the refetch interval, and the next attempt waits at least a second, so an unreachable
    /// issuer is not hammered either; the previous set stays in use until it is older than
    /// twice its max age.
    async fn fetch_locked(&self) -> Result<Arc<JwkSetResolver>, AuthError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let result = self.download().await;
        let mut cached = inner.cached.lock();
        cached.attempted_at = Some(now);
        cached.failed = result.is_err();
        match result {
            Ok(keys) => {
                let keys = Arc::new(keys);
                // Verified tokens were verified against the previous set.
                inner.verified.invalidate_all();
                cached.keys = Some(keys.clone());
                cached.fetched_at = Some(now);
                Ok(keys)
            }
            Err(why) => {
                tracing::warn!(target: "trustgate_pep", url = %inner.config.jwks_url, %why, "JWKS fetch failed");
                usable(&cached, now, &inner.config)
                    .ok_or_else(|| AuthError::Unavailable(format!("jwks: {why}")))
            }
        }
    }

    async fn download(&self) -> Result<JwkSetResolver, String> {
        let response = self
            .inner
            .http
            .get(self.inner.config.jwks_url.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let body = crate::http_util::read_bounded(response, MAX_JWKS_BYTES).await?;
        let json: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| "not JSON".to_owned())?;
        JwkSetResolver::from_json(&json).map_err(|e| e.to_string())
    }
}

/// The cached set while it is younger than twice its max age (the grace after failed fetches).
fn usable(cached: &Cached, now: OffsetDateTime, config: &JwtConfig) -> Option<Arc<JwkSetResolver>> {
    cached.keys.clone().filter(|_| {
        cached
            .fetched_at
            .is_some_and(|at| now - at < config.jwks_max_age * 2)
    })
}

/// The claims of a verified ID token that a relying party uses (OpenID Connect Core §2, §5.1).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct IdTokenClaims {
    /// The user's subject identifier at the issuer.
    pub sub: String,
    /// The nonce of the authentication request.
    #[serde(default)]
    pub nonce: Option<String>,
    /// When the user authenticated.
    #[serde(default)]
    pub auth_time: Option<i64>,
    /// The authentication context class.
    #[serde(default)]
    pub acr: Option<String>,
    /// The authentication methods.
    #[serde(default)]
    pub amr: Vec<String>,
    /// The session at the issuer (back-channel logout).
    #[serde(default)]
    pub sid: Option<String>,
    /// The display name, when the `profile` scope was granted.
    #[serde(default)]
    pub preferred_username: Option<String>,
    /// The e-mail address, when the `email` scope was granted.
    #[serde(default)]
    pub email: Option<String>,
}

/// The principal a verified access token describes. A token whose `sub` is its own client and
/// that carries no `auth_time` is a `client_credentials` token: a service acting for itself; a
/// token exchanged from an API key (`key_id`) is the key owner's, as an API key.
pub fn principal_from_claims(claims: AccessTokenClaims) -> Principal {
    let kind = PrincipalKind::of_access_token(
        &claims.sub,
        Some(&claims.client_id),
        claims.auth_time,
        claims.key_id.as_deref(),
    );
    Principal {
        id: claims.sub,
        kind,
        tenant: None,
        scopes: split_scope(claims.scope.as_deref()),
        amr: claims.amr.unwrap_or_default(),
        auth_time: claims.auth_time,
        acr: claims.acr,
        client_id: Some(claims.client_id),
        act: claims.act,
        key_id: claims.key_id,
        cnf: claims.cnf,
        method: AuthMethod::Jwt,
    }
}
