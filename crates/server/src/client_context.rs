//! Who is on the other end of a request, as the audit trail and sessions record it: client IP,
//! user agent, request id. One definition for the admin API and the pages.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use http::header::USER_AGENT;
use http::request::Parts;
use trustgate_authn::accounts::RequestContext;

use crate::request_id::RequestId;

/// User agents are recorded up to this many characters (they are client-controlled).
const MAX_USER_AGENT_CHARS: usize = 512;

/// The request's client context.
pub fn request_context(parts: &Parts) -> RequestContext {
    RequestContext {
        ip: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip()),
        user_agent: parts
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect()),
        request_id: parts
            .extensions
            .get::<RequestId>()
            .map(|id| id.as_str().to_owned()),
    }
}

/// [`request_context`] as an extractor.
#[derive(Debug, Clone)]
pub struct ClientContext(pub RequestContext);

impl<S: Send + Sync> FromRequestParts<S> for ClientContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientContext(request_context(parts)))
    }
}
