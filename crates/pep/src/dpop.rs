//! DPoP at a resource server (RFC 9449 §7): `Authorization: DPoP <token>` with a `DPoP` proof
//! for this request and this token.
//!
//! The proof is checked by [`trustgate_tokens::dpop::verify_proof`]: signature by the key in its
//! header, `htm` the request's method, `htu` this service's public origin plus the request's
//! path, `iat` within [`DpopConfig::max_age`] (and [`DpopConfig::leeway`] ahead), `ath` the
//! token's hash. Its `jti` is then spent in a per-process ledger that remembers it as long as
//! the proof could still be accepted; replicas behind a load balancer each keep their own, so a
//! proof replayed to another replica within `max_age` is not caught here (trustgate's own
//! endpoints share theirs through the database). The ledger is bounded: when it is full of
//! live entries, proofs are refused (503) rather than remembered too briefly.
//!
//! Whether the token may be used with the proof's key at all is
//! [`trustgate_tokens::dpop::check_binding`]'s answer, applied by the
//! [`Authenticator`](crate::Authenticator) to every credential, DPoP or not.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Uri};
use parking_lot::Mutex;
use trustgate_core::{Clock, TokenDigest};
use trustgate_tokens::dpop::{ProofExpectation, verify_proof};

use crate::authenticate::AuthError;

/// Proof ids remembered at most by default.
pub const DEFAULT_REPLAY_CAPACITY: usize = 1 << 20;

/// Settings of the DPoP check.
#[derive(Debug, Clone)]
pub struct DpopConfig {
    /// The origin clients address this service by (`https://api.example.com`): a proof's `htu`
    /// must be it plus the request's path. Behind a proxy it is the proxy's public origin.
    pub origin: url::Url,
    /// How old a proof's `iat` may be (and how long its `jti` is remembered).
    pub max_age: Duration,
    /// How far ahead of this clock `iat` may be.
    pub leeway: Duration,
    /// Proof ids remembered at most ([`DEFAULT_REPLAY_CAPACITY`]).
    pub replay_capacity: usize,
}

impl DpopConfig {
    /// Proofs for `origin`, at most 60 s old, 5 s of skew.
    pub fn for_origin(origin: url::Url) -> Self {
        Self {
            origin,
            max_age: Duration::from_secs(60),
            leeway: Duration::from_secs(5),
            replay_capacity: DEFAULT_REPLAY_CAPACITY,
        }
    }
}

/// Verifies DPoP proofs and remembers their ids. Cheap to clone.
#[derive(Clone)]
pub struct DpopVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    config: DpopConfig,
    /// `scheme://host[:port]`, no trailing slash.
    origin: String,
    clock: Arc<dyn Clock>,
    /// SHA-256 of the proof's replay id → until when (Unix seconds) it stays spent.
    spent: Mutex<HashMap<TokenDigest, i64>>,
}

impl std::fmt::Debug for DpopVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopVerifier")
            .field("origin", &self.inner.origin)
            .field("max_age", &self.inner.config.max_age)
            .finish_non_exhaustive()
    }
}

impl DpopVerifier {
    /// A verifier for `config.origin` (only its scheme, host and port count).
    pub fn new(config: DpopConfig, clock: Arc<dyn Clock>) -> Self {
        let origin = config.origin.origin().ascii_serialization();
        DpopVerifier {
            inner: Arc::new(Inner {
                config,
                origin,
                clock,
                spent: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The thumbprint of the key of `proof`, a proof for this `method` and `uri` and for
    /// `access_token`, whose `jti` this call spends. A refused proof is
    /// [`AuthError::InvalidProof`] with the proof's stable reason (`dpop_proof_replayed` for a
    /// replay).
    pub fn verify(
        &self,
        proof: &str,
        method: &Method,
        uri: &Uri,
        access_token: &str,
    ) -> Result<String, AuthError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let htu = format!("{}{}", inner.origin, uri.path());
        let to_time = |d: Duration| time::Duration::try_from(d).unwrap_or(time::Duration::MAX);
        let verified = verify_proof(
            proof,
            &ProofExpectation {
                htm: method.as_str(),
                htu: &htu,
                now,
                max_age: to_time(inner.config.max_age),
                leeway: to_time(inner.config.leeway),
                nonce: None,
                access_token: Some(access_token),
            },
        )
        .map_err(|e| AuthError::InvalidProof(e.reason().to_owned()))?;
        let key = TokenDigest::of(&verified.replay_id());
        let until = verified
            .remember_until(now, to_time(inner.config.max_age))
            .unix_timestamp();
        let now = now.unix_timestamp();
        let mut spent = inner.spent.lock();
        if let Some(&standing) = spent.get(&key)
            && standing > now
        {
            return Err(AuthError::InvalidProof("dpop_proof_replayed".into()));
        }
        if spent.len() >= inner.config.replay_capacity {
            spent.retain(|_, standing| *standing > now);
            if spent.len() >= inner.config.replay_capacity {
                return Err(AuthError::Unavailable("dpop_replay_ledger_full".into()));
            }
        }
        spent.insert(key, until);
        Ok(verified.jkt)
    }
}
