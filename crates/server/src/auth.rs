//! Who is calling the management APIs.
//!
//! [`AdminPrincipal`] is an extractor: a handler that takes one only runs for a caller that
//! presented `Authorization: Bearer <token>` of an enabled admin service account. Anything else
//! is 401 with `WWW-Authenticate: Bearer`. The credential is verified by
//! [`trustgate_authn::service_tokens::ServiceTokens`]; this module only extracts it.

use axum::extract::FromRequestParts;
use http::request::Parts;
use trustgate_authn::service_tokens::MAX_SERVICE_TOKEN_BYTES;
use trustgate_core::Principal;

use crate::AppState;
use crate::error::ApiError;

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
    (scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && token.len() <= MAX_SERVICE_TOKEN_BYTES)
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
        let principal = state
            .service_tokens
            .verify(token)
            .await?
            .ok_or_else(|| ApiError::unauthenticated("the bearer token is not valid"))?;
        let admin = AdminPrincipal(principal);
        parts.extensions.insert(admin.clone());
        Ok(admin)
    }
}
