//! Integration tests of the JOSE crate (one test binary).

mod jwk_sets;
mod wycheproof;
