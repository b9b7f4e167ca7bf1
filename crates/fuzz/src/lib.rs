//! Fuzz targets for every parser of untrusted input, written with
//! [bolero](https://github.com/camshaft/bolero). The targets live in `tests/it/` (one test
//! binary); this library is empty on purpose: nothing here is part of the product.
//!
//! Each target runs two ways:
//! - under `cargo test` (CI, the README's test command) bolero's random engine runs it as a
//!   bounded property test: a fixed number of iterations with inputs up to a little above the
//!   parser's own size budget, well under a minute for all targets in a debug build;
//! - under `scripts/fuzz.sh TARGET SECONDS` libFuzzer (through `cargo bolero`, stable toolchain,
//!   no sanitizer) runs it coverage-guided for a bounded time, and fails on a crash, an
//!   out-of-memory, or an input slower than the threshold (a super-linear input).
//!
//! | target (`tests/it/…`) | parser | invariant beyond "no panic" |
//! |---|---|---|
//! | `dsl::bytes`, `dsl::token_soup` | `authz::dsl::parse`, `parse_mod_file` | a model that parses is written back and parses to the same model |
//! | `model_json::bytes`, `model_json::structured` | JSON model + `validate_json_model` | a valid model builds a type system and round-trips through the DSL |
//! | `condition::expression` | CEL condition compile and evaluate | evaluation is deterministic; compile errors are errors |
//! | `jwt::bytes`, `jwt::structured` | `tokens::verify` | a token verifies only if the test key signed exactly it; a well-formed one verifies |
//! | `dpop::bytes` | `tokens::dpop::verify_proof` | random text never verifies; over the cap it is `TooLarge` before parsing |
//! | `oauth::form`, `oauth::authorize` | `Params::from_form`, `request::check_redirect_uri` / `validate`, `presented_credentials`, `token_exchange::parse_request` | form round trip; an error is redirected only to a registered URI; a token exchange names exactly one target |
//! | `oauth::client_assertion` | `clients::verify_client_assertion` (`private_key_jwt`) | accepted only if signed by the client's key with RFC 7523 claims |
//! | `webauthn::registration`, `webauthn::assertion` | `authn::webauthn` (CBOR, COSE keys, authenticator and client data) | accepted only with our challenge, origin, RP ID and a signature by the credential's key |
//! | `authzen::bytes`, `authzen::structured` | `server::authzen::wire` (evaluation members, page, options) | a subject maps to one plain `type:id` user, never a userset or the wildcard |
//! | `tuples::strings`, `tuples::write` | object / user / relation parsing, `validate_tuple_for_write` | a parsed user or object prints back to its input |

// cargo-bolero builds this library's (empty) unit-test binary too, with coverage instrumentation:
// linking bolero brings in the libFuzzer runtime that the instrumentation calls.
#[cfg(test)]
use bolero as _;
