//! OAuth 2.0 and OpenID Connect, as protocol state machines with no transport.
//!
//! Invariant: this crate knows the protocols (RFC 6749, 7636, 8628, 7662, 7009, 8414, 8693, 8707,
//! 9068, 9126, 9207, 9449, 9700; OpenID Connect Core, Discovery, RP-Initiated and Back-Channel Logout)
//! and nothing about HTTP frameworks: no axum types, no cookies, no HTML. The server crate turns
//! requests into the parameter types here and the outcomes here into responses, so every rule can
//! be tested without a socket, and the gateway can reuse the verification side.

pub mod claims;
pub mod clients;
pub mod device;
pub mod discovery;
pub mod dpop;
pub mod endpoints;
pub mod error;
pub mod pkce;
pub mod provider;
pub mod refresh;
pub mod request;
pub mod scope;
pub mod token_exchange;

pub use endpoints::Endpoints;
pub use error::{ErrorCode, OAuthError};
