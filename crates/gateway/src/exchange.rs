//! The internal token: the caller's credential — an access token, or an API key — exchanged
//! (RFC 8693) at trustgate's token endpoint for one whose `aud` is the upstream and whose `act`
//! names the gateway's client. An API key goes as its own subject token type,
//! [`API_KEY_TOKEN_TYPE`]; trustgate then issues a token whose `sub` is the key's owner and
//! whose `key_id` names the key.
//!
//! Exchanged tokens are cached under (SHA-256 of the subject token, audience) — never the
//! token itself as a key — until [`REFRESH_MARGIN`] before they expire, in a bounded cache
//! ([`CACHE_CAPACITY`] entries). The subject token's type needs no place in the key: a token
//! is either a JWT or a key, never both, and its type follows from how pep authenticated it.
//! Concurrent requests with the same token share one exchange. The cache cannot outlive a
//! revocation by more than the exchanged token's own lifetime, which trustgate bounds by the
//! subject token's remaining lifetime (a key's expiry) and `oauth.token_exchange_ttl_secs` (5
//! minutes by default) — the same bound a JWT verified locally has. A cached token is only used
//! after pep authenticated the caller's credential for this request, so a revoked key is
//! refused at the gateway within its introspection TTL, whatever the cache holds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use trustgate_core::{Secret, TokenDigest};

/// `grant_type` of RFC 8693.
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The subject token's type for trustgate's access tokens.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The subject token's type for trustgate's API keys (and personal access tokens).
pub const API_KEY_TOKEN_TYPE: &str = "urn:trustgate:params:oauth:token-type:api_key";
/// How long before its expiry an exchanged token stops being reused: an upstream receiving it
/// must still find it valid after the proxy hop and its own clock skew.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(10);
/// Exchanged tokens remembered at most.
pub const CACHE_CAPACITY: u64 = 50_000;
/// The largest token endpoint answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// What the caller's credential is, for the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectType {
    /// One of trustgate's access tokens (a JWT).
    AccessToken,
    /// One of trustgate's API keys or personal access tokens.
    ApiKey,
}

impl SubjectType {
    /// The RFC 8693 `subject_token_type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectType::AccessToken => ACCESS_TOKEN_TYPE,
            SubjectType::ApiKey => API_KEY_TOKEN_TYPE,
        }
    }
}

/// The credential pep authenticated, as it was presented: the token of `Authorization: Bearer`
/// or `Authorization: DPoP` (pep checked the proof and the binding), or else the `X-API-Key`
/// value — pep's order, in which the first credential found decides. pep already refused
/// several or malformed ones.
pub fn presented_credential(headers: &http::HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let (scheme, token) = value.to_str().ok()?.split_once(' ')?;
        return (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("dpop"))
            .then_some(token.trim());
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Why no internal token could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// trustgate refused the subject token (`invalid_request`: revoked, its user or owner
    /// disabled, expired meanwhile — or, for a key, the gateway's client not registered with
    /// `token_exchange.api_keys`, which trustgate's reason, logged, names): 401.
    #[error("the token exchange refused the caller's token: {0}")]
    Refused(String),
    /// trustgate could not be reached, or refused the gateway itself (its client is not
    /// allowed this audience, a wrong secret): 502 — a configuration or an outage, never the
    /// caller's fault.
    #[error("token exchange failed: {0}")]
    Failed(String),
}

/// A token and how long it is worth reusing.
#[derive(Clone)]
struct Exchanged {
    token: Arc<str>,
    reuse_for: Duration,
}

/// Expires each entry when its token stops being worth reusing.
struct UntilExpiry;

impl moka::Expiry<(TokenDigest, Arc<str>), Exchanged> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &(TokenDigest, Arc<str>),
        value: &Exchanged,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.reuse_for)
    }
}

/// RFC 8693 §2.2.1 (the members used).
#[derive(Deserialize)]
struct Answer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// The token exchange client with its cache. Cheap to clone.
#[derive(Clone)]
pub struct TokenExchanger {
    inner: Arc<Inner>,
}

struct Inner {
    token_url: url::Url,
    client_id: String,
    client_secret: Secret,
    http: reqwest::Client,
    cache: moka::future::Cache<(TokenDigest, Arc<str>), Exchanged>,
}

impl std::fmt::Debug for TokenExchanger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenExchanger")
            .field("token_url", &self.inner.token_url.as_str())
            .field("client_id", &self.inner.client_id)
            .finish_non_exhaustive()
    }
}

impl TokenExchanger {
    /// A client of `token_url` authenticating as `client_id` (`client_secret_basic`); `http`
    /// must carry a timeout.
    pub fn new(
        token_url: url::Url,
        client_id: String,
        client_secret: Secret,
        http: reqwest::Client,
    ) -> Self {
        TokenExchanger {
            inner: Arc::new(Inner {
                token_url,
                client_id,
                client_secret,
                http,
                cache: moka::future::Cache::builder()
                    .max_capacity(CACHE_CAPACITY)
                    .expire_after(UntilExpiry)
                    .build(),
            }),
        }
    }

    /// The internal token for `subject_token` (of type `subject_type`) at `audience`, from the
    /// cache or exchanged.
    pub async fn token_for(
        &self,
        subject_token: &str,
        subject_type: SubjectType,
        audience: &Arc<str>,
    ) -> Result<Arc<str>, ExchangeError> {
        let key = (TokenDigest::of(subject_token), audience.clone());
        let exchanged = self
            .inner
            .cache
            .try_get_with(key, self.exchange(subject_token, subject_type, audience))
            .await
            .map_err(|e: Arc<ExchangeError>| (*e).clone())?;
        Ok(exchanged.token)
    }

    async fn exchange(
        &self,
        subject_token: &str,
        subject_type: SubjectType,
        audience: &str,
    ) -> Result<Exchanged, ExchangeError> {
        let inner = &self.inner;
        let failed = ExchangeError::Failed;
        // RFC 6749 §2.3.1: the id and secret are form-encoded before Basic.
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let response = inner
            .http
            .post(inner.token_url.clone())
            .basic_auth(
                enc(&inner.client_id),
                Some(enc(inner.client_secret.expose())),
            )
            .header(http::header::ACCEPT, "application/json")
            .form(&[
                ("grant_type", GRANT_TYPE),
                ("subject_token", subject_token),
                ("subject_token_type", subject_type.as_str()),
                ("audience", audience),
            ])
            .send()
            .await
            .map_err(|e| failed(format!("request failed: {e}")))?;
        let status = response.status();
        let body = trustgate_pep::http_util::read_bounded(response, MAX_ANSWER_BYTES)
            .await
            .map_err(failed)?;
        if !status.is_success() {
            let answer = serde_json::from_slice::<serde_json::Value>(&body).ok();
            let member = |name: &str| {
                answer
                    .as_ref()
                    .and_then(|v| v.get(name).and_then(|e| e.as_str()).map(str::to_owned))
                    .unwrap_or_default()
            };
            let error = member("error");
            let description = member("error_description");
            // RFC 8693 §2.2.2: an invalid subject token is `invalid_request`; everything else
            // (invalid_client, unauthorized_client, invalid_target, invalid_scope) is about
            // the gateway's registration.
            return Err(if error == "invalid_request" && status.is_client_error() {
                ExchangeError::Refused(format!("{error}: {description}"))
            } else {
                failed(format!("answered {status} {error}: {description}"))
            });
        }
        let answer: Answer =
            serde_json::from_slice(&body).map_err(|e| failed(format!("unreadable answer: {e}")))?;
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(0));
        Ok(Exchanged {
            token: answer.access_token.into(),
            reuse_for: lifetime.saturating_sub(REFRESH_MARGIN),
        })
    }

    /// How many exchanged tokens are cached (approximate; for tests and metrics).
    pub async fn cached(&self) -> u64 {
        self.inner.cache.run_pending_tasks().await;
        self.inner.cache.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_credential_forwarded_is_the_one_pep_authenticated() {
        assert_eq!(
            presented_credential(&headers(&[("authorization", "Bearer a.b.c")])),
            Some("a.b.c")
        );
        assert_eq!(
            presented_credential(&headers(&[("authorization", "bearer tg_live_k")])),
            Some("tg_live_k")
        );
        assert_eq!(
            presented_credential(&headers(&[("authorization", "DPoP a.b.c")])),
            Some("a.b.c")
        );
        assert_eq!(
            presented_credential(&headers(&[("x-api-key", " tg_live_k ")])),
            Some("tg_live_k")
        );
        // Authorization comes first, as in pep.
        assert_eq!(
            presented_credential(&headers(&[
                ("x-api-key", "tg_live_other"),
                ("authorization", "Bearer tg_live_k"),
            ])),
            Some("tg_live_k")
        );
        assert_eq!(
            presented_credential(&headers(&[
                ("authorization", "Basic eDp5"),
                ("x-api-key", "tg_live_k"),
            ])),
            None,
            "never another credential than the one pep looked at"
        );
        assert_eq!(presented_credential(&headers(&[("x-api-key", "")])), None);
        assert_eq!(presented_credential(&headers(&[])), None);
        assert_eq!(SubjectType::ApiKey.as_str(), API_KEY_TOKEN_TYPE);
        assert_eq!(SubjectType::AccessToken.as_str(), ACCESS_TOKEN_TYPE);
    }
}
