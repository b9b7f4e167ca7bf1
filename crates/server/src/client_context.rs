//! Who is on the other end of a request, as the audit trail and sessions record it: client IP,
//! user agent, request id. One definition for the admin API and the pages.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use http::header::USER_AGENT;
use http::request::Parts;
use trustgate_audit::RequestContext;

use crate::listener::ClientAddress;
use crate::request_id::RequestId;

/// The request's client address: as the trusted proxies tell it when the listener resolved it
/// ([`ClientAddress`]), else the connection's peer.
pub fn client_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ClientAddress>()
        .map(|ClientAddress(client)| client.ip)
        .or_else(|| {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip())
        })
}

/// The request's client context.
pub fn request_context(parts: &Parts) -> RequestContext {
    RequestContext::new(
        client_ip(parts),
        parts.headers.get(USER_AGENT).and_then(|v| v.to_str().ok()),
        parts.extensions.get::<RequestId>().map(RequestId::as_str),
    )
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
