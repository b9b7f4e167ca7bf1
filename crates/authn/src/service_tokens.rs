//! Machine credentials: a service account's opaque bearer token → its [`Principal`].
//!
//! Tokens are 256-bit random secrets; only their SHA-256 [`TokenDigest`] is looked up, never
//! the token itself. Verified tokens are remembered for [`SERVICE_TOKEN_CACHE_TTL`] so that the
//! PDP's hot path (a check per request of every service behind trustgate) does not pay a
//! database round trip for the caller's credential. Unknown tokens are never cached: a flood of
//! random tokens can neither evict good ones nor grow memory past the bound. Consequence:
//! disabling a service account takes effect on every replica within that TTL.

use std::sync::Arc;
use std::time::Duration;

use trustgate_core::{Principal, TokenDigest};
use trustgate_store_api::{ServiceAccountStore, StoreError};

/// How long a verified service token is trusted without asking the database again.
pub const SERVICE_TOKEN_CACHE_TTL: Duration = Duration::from_secs(5);
/// The longest bearer token looked up; anything longer is not one of ours.
pub const MAX_SERVICE_TOKEN_BYTES: usize = 4096;
/// Verified tokens remembered at most.
const CACHE_CAPACITY: u64 = 10_000;

/// Verifies service-account bearer tokens. Cheap to clone.
#[derive(Clone)]
pub struct ServiceTokens {
    store: Arc<dyn ServiceAccountStore>,
    verified: moka::future::Cache<TokenDigest, Principal>,
}

impl std::fmt::Debug for ServiceTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceTokens")
            .field("cached", &self.verified.entry_count())
            .finish_non_exhaustive()
    }
}

impl ServiceTokens {
    /// A verifier over `store` with the default cache lifetime.
    pub fn new(store: Arc<dyn ServiceAccountStore>) -> Self {
        Self::with_ttl(store, SERVICE_TOKEN_CACHE_TTL)
    }

    /// A verifier whose verified tokens are trusted for `ttl`.
    pub fn with_ttl(store: Arc<dyn ServiceAccountStore>, ttl: Duration) -> Self {
        Self {
            store,
            verified: moka::future::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// The principal of the enabled service account `token` belongs to; `None` for an empty,
    /// oversized, unknown or revoked token, or a disabled account.
    pub async fn verify(&self, token: &str) -> Result<Option<Principal>, StoreError> {
        if token.is_empty() || token.len() > MAX_SERVICE_TOKEN_BYTES {
            return Ok(None);
        }
        let digest = TokenDigest::of(token);
        if let Some(principal) = self.verified.get(&digest).await {
            return Ok(Some(principal));
        }
        let Some(account) = self.store.authenticate_service_token(&digest).await? else {
            return Ok(None);
        };
        let principal = Principal::service(account.id, account.name);
        self.verified.insert(digest, principal.clone()).await;
        Ok(Some(principal))
    }
}
