//! Integration tests of the JOSE crate (one test binary).

mod dpop;
mod jwk_sets;
mod wycheproof;
