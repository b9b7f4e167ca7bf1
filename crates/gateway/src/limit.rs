//! Per-principal rate limits: a GCRA token bucket (governor) per authenticated principal,
//! keyed by its PDP subject (`user:anne`, `service:tgc_…`), and per key for API keys
//! (`api_key:<key id>`, also for a token exchanged from a key): several keys of one service
//! account are limited each on its own, so one busy key does not starve the others. The key
//! comes from the verified
//! credential, never from a header a client can set (tower_governor's default keys by the
//! leftmost `X-Forwarded-For`, which any client can forge). Runs as pep's [`Admission`]:
//! after authentication, before the PDP is asked, so a principal over its rate costs no
//! decision; the refusal (429 with `Retry-After`) is recorded by the decision sink.
//!
//! Anonymous requests reach only public routes and are not limited here.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock as _, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use trustgate_pep::{Admission, Principal, Reason};

use crate::config::RateLimitConfig;

type Keyed = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

/// The limiter. Cheap to clone.
#[derive(Clone)]
pub struct PrincipalLimiter {
    limiter: Arc<Keyed>,
    config: RateLimitConfig,
}

impl std::fmt::Debug for PrincipalLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrincipalLimiter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl PrincipalLimiter {
    /// A limiter for `config` (validated: both values at least 1).
    pub fn new(config: RateLimitConfig) -> Self {
        let per_second = NonZeroU32::new(config.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.burst()).unwrap_or(per_second);
        PrincipalLimiter {
            limiter: Arc::new(RateLimiter::keyed(
                Quota::per_second(per_second).allow_burst(burst),
            )),
            config,
        }
    }

    /// The settings.
    pub fn config(&self) -> RateLimitConfig {
        self.config
    }

    /// Forgets principals whose buckets are full again, so that memory stays bounded by the
    /// principals active within one refill period (called periodically).
    pub fn retain_recent(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// How many principals are tracked.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    /// Whether no principal is tracked.
    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

/// The bucket a principal draws from: its API key's (the system model's spelling of a key,
/// which no principal subject shares), else its PDP subject.
fn bucket(principal: &Principal) -> String {
    match &principal.key_id {
        Some(id) => format!("api_key:{id}"),
        None => principal.subject(),
    }
}

impl Admission for PrincipalLimiter {
    fn admit(&self, principal: &Principal) -> Result<(), Reason> {
        let key = bucket(principal);
        match self.limiter.check_key(&key) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                // Retry-After is whole seconds; round up so that a retry at that time passes.
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Err(Reason::RateLimited {
                    retry_after_secs: secs.max(1),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use trustgate_pep::{AuthMethod, PrincipalKind};

    use super::*;

    fn principal(id: &str) -> Principal {
        Principal {
            id: id.into(),
            kind: PrincipalKind::User,
            tenant: None,
            scopes: vec![],
            amr: vec![],
            auth_time: None,
            acr: None,
            client_id: None,
            act: None,
            key_id: None,
            cnf: None,
            method: AuthMethod::Jwt,
        }
    }

    #[test]
    fn each_principal_has_its_own_bucket() {
        let l = PrincipalLimiter::new(RateLimitConfig {
            per_second: 1,
            burst: Some(2),
        });
        let anne = principal("anne");
        assert_eq!(l.admit(&anne), Ok(()));
        assert_eq!(l.admit(&anne), Ok(()));
        assert_eq!(
            l.admit(&anne),
            Err(Reason::RateLimited {
                retry_after_secs: 1
            })
        );
        assert_eq!(l.admit(&principal("bob")), Ok(()));
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn each_api_key_has_its_own_bucket() {
        let l = PrincipalLimiter::new(RateLimitConfig {
            per_second: 1,
            burst: Some(1),
        });
        let key = |id: &str| Principal {
            kind: PrincipalKind::ApiKey,
            key_id: Some(id.into()),
            method: AuthMethod::Introspection,
            ..principal("service:ci")
        };
        assert_eq!(bucket(&key("01A")), "api_key:01A");
        assert_eq!(l.admit(&key("01A")), Ok(()));
        assert!(l.admit(&key("01A")).is_err());
        assert_eq!(
            l.admit(&key("01B")),
            Ok(()),
            "another key of the same service account"
        );
        assert_eq!(
            l.admit(&Principal {
                kind: PrincipalKind::Service,
                ..principal("ci")
            }),
            Ok(()),
            "the account's own tokens are not its keys"
        );
        assert_eq!(l.len(), 3);
    }
}
