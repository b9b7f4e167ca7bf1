//! Opaque bearer tokens and API keys: RFC 7662 introspection at trustgate, authenticated with
//! this resource server's client credentials, with a short positive cache.
//!
//! # The revocation bound
//! Only *active* answers are cached, under the SHA-256 of the token (never the token), until
//! `min(now + ttl, exp)`. A revocation (or an owner disabled, a key expired) therefore takes
//! effect here at most [`IntrospectionConfig::ttl`] after trustgate stops answering `active`
//! for it — the TTL is capped at [`MAX_TTL`] (default 5 s). Inactive answers are never cached:
//! a token becomes usable the moment it is issued and a flood of random tokens cannot fill the
//! cache (each costs one introspection, which trustgate answers from its own caches).
//!
//! With [`Introspector::follow_revocations`], the cache is also emptied whenever trustgate's
//! credential epoch moves — it moves with every revocation of a session, grant, access token or
//! API key and every disabled owner — and whenever the feed carrying it goes down: a revocation
//! then takes effect here within trustgate's epoch poll (`api_keys.revocation_poll_ms`, 250 ms)
//! plus one event, not the TTL. An answer that was in flight when the epoch moved is not cached.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Deserialize;
use time::OffsetDateTime;
use trustgate_core::{Clock, Secret, TokenDigest};
use trustgate_tokens::{Actor, Confirmation};

use crate::authenticate::AuthError;
use crate::decision_cache::RevisionFeed;
use crate::principal::{AuthMethod, Principal, PrincipalKind, split_scope};

/// The longest time an active answer is reused.
pub const MAX_TTL: Duration = Duration::from_secs(30);
/// Answers remembered at most; when full, expired entries are dropped, then everything.
const CACHE_CAPACITY: usize = 10_000;
/// The largest introspection answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The longest token sent for introspection.
const MAX_TOKEN_BYTES: usize = 4096;

/// Settings of the introspection client.
#[derive(Debug, Clone)]
pub struct IntrospectionConfig {
    /// The introspection endpoint (trustgate: `{issuer}/oauth2/introspect`).
    pub url: url::Url,
    /// This resource server's client id (a confidential client whose `resource_audiences`
    /// include this service's audience).
    pub client_id: String,
    /// Its secret (`client_secret_basic`).
    pub client_secret: Secret,
    /// How long an active answer is reused (at most [`MAX_TTL`]; longer values are lowered).
    pub ttl: Duration,
}

/// RFC 7662 §2.2, with trustgate's members.
#[derive(Debug, Deserialize)]
struct Answer {
    active: bool,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    auth_time: Option<i64>,
    #[serde(default)]
    acr: Option<String>,
    #[serde(default)]
    amr: Option<Vec<String>>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    act: Option<Actor>,
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    cnf: Option<Confirmation>,
}

/// The introspection client with its cache. Cheap to clone.
#[derive(Clone)]
pub struct Introspector {
    inner: Arc<Inner>,
}

struct Inner {
    config: IntrospectionConfig,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    cache: Mutex<HashMap<TokenDigest, (Principal, OffsetDateTime)>>,
    /// Moves whenever the cache is emptied for a revocation; an answer is cached only if it
    /// did not move while the answer was fetched.
    generation: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Introspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspector")
            .field("url", &self.inner.config.url.as_str())
            .field("client_id", &self.inner.config.client_id)
            .field("ttl", &self.inner.config.ttl)
            .finish_non_exhaustive()
    }
}

impl Introspector {
    /// A client; `http` should carry a timeout.
    pub fn new(
        mut config: IntrospectionConfig,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> Self {
        config.ttl = config.ttl.min(MAX_TTL);
        Introspector {
            inner: Arc::new(Inner {
                config,
                http,
                clock,
                cache: Mutex::new(HashMap::new()),
                generation: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// Empties the cache whenever `feed`'s credential epoch moves or the feed goes down or
    /// comes back (see the module documentation). The task ends with the introspector or the
    /// feed. Must run inside a tokio runtime.
    pub fn follow_revocations(&self, feed: &RevisionFeed) {
        let mut epochs = feed.credential_epochs();
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            while epochs.changed().await.is_ok() {
                let Some(inner) = weak.upgrade() else {
                    break;
                };
                inner
                    .generation
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                inner.cache.lock().clear();
            }
        });
    }

    /// The caller behind `token` (an opaque access token or an API key).
    pub async fn introspect(&self, token: &str) -> Result<Principal, AuthError> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::invalid("token_malformed"));
        }
        let inner = &self.inner;
        let digest = TokenDigest::of(token);
        let now = inner.clock.now();
        if let Some((principal, until)) = inner.cache.lock().get(&digest)
            && now < *until
        {
            return Ok(principal.clone());
        }
        let generation = inner.generation.load(std::sync::atomic::Ordering::Acquire);
        let answer = self.ask(token).await?;
        let now = inner.clock.now();
        let (principal, exp) = describe(answer, now)?;
        let ttl = time::Duration::try_from(inner.config.ttl).unwrap_or(time::Duration::ZERO);
        let mut until = now + ttl;
        if let Some(exp) = exp.and_then(|e| OffsetDateTime::from_unix_timestamp(e).ok()) {
            until = until.min(exp);
        }
        if until > now {
            let mut cache = inner.cache.lock();
            // Checked under the lock the revocation task clears with: a revocation seen while
            // this answer was in flight keeps it out of the cache.
            if inner.generation.load(std::sync::atomic::Ordering::Acquire) != generation {
                return Ok(principal);
            }
            if cache.len() >= CACHE_CAPACITY {
                cache.retain(|_, (_, at)| *at > now);
                if cache.len() >= CACHE_CAPACITY {
                    cache.clear();
                }
            }
            cache.insert(digest, (principal.clone(), until));
        }
        Ok(principal)
    }

    async fn ask(&self, token: &str) -> Result<Answer, AuthError> {
        let config = &self.inner.config;
        let unavailable = |why: String| AuthError::Unavailable(format!("introspection: {why}"));
        // RFC 6749 §2.3.1: the id and secret are form-encoded before Basic.
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let response = self
            .inner
            .http
            .post(config.url.clone())
            .basic_auth(
                enc(&config.client_id),
                Some(enc(config.client_secret.expose())),
            )
            .header(http::header::ACCEPT, "application/json")
            .form(&[("token", token)])
            .send()
            .await
            .map_err(|e| unavailable(format!("request failed: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            // A 401 here means this resource server's own credentials are wrong: an outage of
            // this service's configuration, never the caller's fault.
            return Err(unavailable(format!("answered {status}")));
        }
        let body = crate::http_util::read_bounded(response, MAX_ANSWER_BYTES)
            .await
            .map_err(unavailable)?;
        serde_json::from_slice(&body).map_err(|_| unavailable("not an RFC 7662 answer".into()))
    }
}

/// The principal an answer describes, and its `exp`.
fn describe(answer: Answer, now: OffsetDateTime) -> Result<(Principal, Option<i64>), AuthError> {
    if !answer.active {
        return Err(AuthError::invalid("inactive"));
    }
    if answer.exp.is_some_and(|exp| now.unix_timestamp() >= exp) {
        return Err(AuthError::invalid("token_expired"));
    }
    let sub = answer
        .sub
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AuthError::invalid("no_subject"))?;
    let kind = match answer.token_type.as_deref() {
        Some("api_key") => PrincipalKind::ApiKey,
        // A DPoP-bound access token is described as `DPoP` (RFC 9449 §6.2), with its `cnf`.
        Some(t)
            if t.eq_ignore_ascii_case("bearer")
                || t.eq_ignore_ascii_case("dpop")
                || t == "access_token" =>
        {
            PrincipalKind::of_access_token(
                &sub,
                answer.client_id.as_deref(),
                answer.auth_time,
                answer.key_id.as_deref(),
            )
        }
        // A refresh token (or anything else) is not an access credential (RFC 6749 §1.5).
        _ => return Err(AuthError::invalid("not_an_access_token")),
    };
    Ok((
        Principal {
            id: sub,
            kind,
            tenant: answer.tenant,
            scopes: split_scope(answer.scope.as_deref()),
            amr: answer.amr.unwrap_or_default(),
            auth_time: answer.auth_time,
            acr: answer.acr,
            client_id: answer.client_id,
            act: answer.act,
            key_id: answer.key_id,
            cnf: answer.cnf,
            method: AuthMethod::Introspection,
        },
        answer.exp,
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn answer(v: serde_json::Value) -> Answer {
        serde_json::from_value(v).expect("answer")
    }

    #[test]
    fn inactive_refresh_expired_and_subjectless_answers_are_refused() {
        let now = OffsetDateTime::from_unix_timestamp(1000).expect("time");
        let why = |v| match describe(answer(v), now) {
            Err(AuthError::Invalid(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert_eq!(why(json!({"active": false})), "inactive");
        assert_eq!(
            why(json!({"active": true, "token_type": "refresh_token", "sub": "u"})),
            "not_an_access_token"
        );
        assert_eq!(
            why(json!({"active": true, "sub": "u"})),
            "not_an_access_token"
        );
        assert_eq!(
            why(json!({"active": true, "token_type": "Bearer", "sub": "u", "exp": 1000})),
            "token_expired"
        );
        assert_eq!(
            why(json!({"active": true, "token_type": "api_key"})),
            "no_subject"
        );
    }

    #[test]
    fn api_keys_and_access_tokens_become_principals() {
        let now = OffsetDateTime::from_unix_timestamp(1000).expect("time");
        let (p, exp) = describe(
            answer(
                json!({"active": true, "token_type": "api_key", "sub": "service:ci",
                          "scope": "store:read store:write", "key_id": "01KEY"}),
            ),
            now,
        )
        .expect("active");
        assert_eq!(
            (p.kind, p.subject().as_str()),
            (PrincipalKind::ApiKey, "service:ci")
        );
        assert_eq!(p.scopes, ["store:read", "store:write"]);
        assert_eq!(p.key_id.as_deref(), Some("01KEY"));
        assert_eq!(exp, None);
        // An expiring key's answer carries its exp, which bounds the cache.
        let (_, exp) = describe(
            answer(
                json!({"active": true, "token_type": "api_key", "sub": "user:anne",
                          "exp": 1500}),
            ),
            now,
        )
        .expect("active");
        assert_eq!(exp, Some(1500));
        // A token exchanged from a key is the key owner's, as a key.
        let (p, _) = describe(
            answer(
                json!({"active": true, "token_type": "Bearer", "sub": "service:ci",
                          "client_id": "tgc_gw", "key_id": "01KEY", "exp": 2000,
                          "act": {"sub": "tgc_gw"}}),
            ),
            now,
        )
        .expect("active");
        assert_eq!(
            (p.kind, p.subject().as_str(), p.key_id.as_deref()),
            (PrincipalKind::ApiKey, "service:ci", Some("01KEY"))
        );
        let (p, _) = describe(
            answer(
                json!({"active": true, "token_type": "Bearer", "sub": "tgc_a",
                          "client_id": "tgc_a", "exp": 2000}),
            ),
            now,
        )
        .expect("active");
        assert_eq!(p.kind, PrincipalKind::Service);
        // A DPoP-bound token: an access token, with its binding for the layer to check.
        let (p, _) = describe(
            answer(json!({"active": true, "token_type": "DPoP", "sub": "tgc_a",
                          "client_id": "tgc_a", "exp": 2000, "cnf": {"jkt": "k1"}})),
            now,
        )
        .expect("active");
        assert_eq!(p.cnf, Some(trustgate_tokens::Confirmation::dpop("k1")));
        let (p, _) = describe(
            answer(
                json!({"active": true, "token_type": "Bearer", "sub": "anne",
                          "client_id": "tgc_a", "auth_time": 900,
                          "act": {"sub": "svc"}}),
            ),
            now,
        )
        .expect("active");
        assert_eq!(p.kind, PrincipalKind::User);
        assert_eq!(p.act.map(|a| a.sub).as_deref(), Some("svc"));
    }
}
