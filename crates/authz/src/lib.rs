//! The relationship policy decision point (PDP).
//!
//! Invariant: this crate is pure logic. It never performs I/O, never parses a credential and
//! never sees HTTP: it takes a principal as a plain subject string (`user:anne`) and reads tuples
//! through the [`engine::TupleReader`] trait, which `store` (or a test) implements.
//!
//! - [`model`]: the OpenFGA authorization model (schema 1.1) as Rust types whose serde form is
//!   OpenFGA's JSON model format.
//! - [`tuple`](mod@tuple): relationship tuples and their parts (`object`, `relation`, `user`).
//! - [`dsl`]: the OpenFGA DSL, parsed to a [`model::AuthorizationModel`] with line/column errors,
//!   and written back from one.
//! - [`validate`]: semantic validation of a model (undefined types and relations, invalid
//!   tuple-to-userset, type restrictions, conditions), with OpenFGA's error kinds.
//! - [`condition`]: CEL conditions with OpenFGA's typed parameters, compiled once per model.
//! - [`engine`]: check, batch check, list-objects, list-users and expand.

pub mod condition;
pub mod dsl;
pub mod engine;
pub mod index;
pub mod model;
pub mod tuple;
pub mod validate;
