//! One file per grant type of the token endpoint.

mod client_credentials;
mod code;
mod device;
mod refresh;
mod token_exchange;
