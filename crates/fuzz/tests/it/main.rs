//! The fuzz targets (see the crate documentation for the list and their invariants). Every
//! `#[test]` here is one bolero target; `scripts/fuzz.sh` names them by their path
//! (`dsl::bytes`, ...).

mod authzen;
mod condition;
mod dpop;
mod dsl;
mod jwt;
mod model_json;
mod oauth;
mod support;
mod tuples;
mod webauthn;
