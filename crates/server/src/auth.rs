//! Who is calling the management APIs.
//!
//! [`AdminPrincipal`] is an extractor: a handler that takes one only runs for a caller that
//! presented `Authorization: Bearer <token>` of an enabled admin service account. Anything else
//! is 401 with `WWW-Authenticate: Bearer`. Only the token's SHA-256 digest is ever looked up.
//!
//! Valid tokens are remembered for [`SERVICE_TOKEN_CACHE_TTL`] so that the PDP's hot path (a
//! check per request) does not pay a database round trip for the caller's credential. Unknown
//! tokens are never cached (a flood of random tokens cannot evict good ones or fill memory
//! beyond the bound). Consequence: disabling a service account takes effect on every replica
//! within that TTL.

use std::time::Duration;

use axum::extract::FromRequestParts;
use http::request::Parts;
use trustgate_core::{Principal, TokenDigest};
use trustgate_store_api::{AccountRole, ServiceAccount};

use crate::AppState;
use crate::error::ApiError;

/// How long a verified service token is trusted without asking the database again.
pub const SERVICE_TOKEN_CACHE_TTL: Duration = Duration::from_secs(5);

/// Recently verified service tokens, by digest.
#[derive(Debug, Clone)]
pub struct ServiceTokenCache(moka::future::Cache<TokenDigest, ServiceAccount>);

impl Default for ServiceTokenCache {
    fn default() -> Self {
        Self(
            moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(SERVICE_TOKEN_CACHE_TTL)
                .build(),
        )
    }
}

impl ServiceTokenCache {
    /// The enabled account a token belongs to, from the cache or the store.
    async fn authenticate(
        &self,
        store: &dyn trustgate_store_api::Store,
        digest: TokenDigest,
    ) -> Result<Option<ServiceAccount>, trustgate_store_api::StoreError> {
        if let Some(account) = self.0.get(&digest).await {
            return Ok(Some(account));
        }
        let found = store.authenticate_service_token(&digest).await?;
        if let Some(account) = &found {
            self.0.insert(digest, account.clone()).await;
        }
        Ok(found)
    }
}

/// An authenticated administrator (the bootstrap admin or another admin service account).
#[derive(Debug, Clone)]
pub struct AdminPrincipal(pub Principal);

/// The token of an `Authorization: Bearer` header, if well-formed.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.len() <= 4096)
        .then_some(token)
}

impl FromRequestParts<AppState> for AdminPrincipal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(admin) = parts.extensions.get::<AdminPrincipal>() {
            return Ok(admin.clone());
        }
        let token = bearer_token(parts)
            .ok_or_else(|| ApiError::unauthenticated("a bearer token is required"))?;
        let account = state
            .service_tokens
            .authenticate(&*state.store, TokenDigest::of(token))
            .await?
            .ok_or_else(|| ApiError::unauthenticated("the bearer token is not valid"))?;
        match account.role {
            AccountRole::Admin => {}
        }
        let admin = AdminPrincipal(Principal::service(account.id, account.name));
        parts.extensions.insert(admin.clone());
        Ok(admin)
    }
}
