//! The vocabulary every other trustgate crate shares.
//!
//! This crate is the bottom of the dependency graph. It holds only types and pure functions:
//! nothing here performs I/O, talks HTTP, writes SQL or knows about policy or credentials.
//!
//! - [`clock`]: where time comes from, so expiry logic is testable ([`Clock`], [`SystemClock`],
//!   [`ManualClock`]).
//! - [`principal`]: the answer to "who is calling?" ([`Principal`]), produced by authentication and
//!   consumed, as a plain string, by authorization.
//! - [`secret`]: secret values that redact themselves in `Debug`/`Display`, opaque bearer token
//!   generation and the SHA-256 digests under which high-entropy secrets are stored.
//! - [`net`]: the network a client address counts as for limits ([`net::client_network`]).
//! - [`id`]: sortable identifiers (ULIDs) for stores, models and other records.
//! - [`tuple`](mod@tuple): the relationship tuple ([`TupleKey`]), one type on the wire, in the engine and
//!   in storage.
//! - [`seal`]: purpose-bound AES-256-GCM sealing of secrets at rest and stateless tokens
//!   ([`SealingKey`]).

pub mod clock;
pub mod id;
pub mod net;
pub mod principal;
pub mod seal;
pub mod secret;
pub mod tuple;

pub use clock::{Clock, ManualClock, SystemClock};
pub use principal::{Principal, PrincipalKind};
pub use seal::SealingKey;
pub use secret::{Secret, TokenDigest};
pub use tuple::{RelationshipCondition, TupleKey};
