//! Who is calling the management APIs.
//!
//! [`AdminPrincipal`] is an extractor: a handler that takes one only runs for a caller that
//! presented `Authorization: Bearer <token>` of an enabled admin service account. Anything else
//! is 401 with `WWW-Authenticate: Bearer`. Only the token's SHA-256 digest is ever looked up.

use axum::extract::FromRequestParts;
use http::request::Parts;
use trustgate_core::{Principal, TokenDigest};
use trustgate_store::AccountRole;

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
            .store
            .authenticate_service_token(&TokenDigest::of(token))
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
