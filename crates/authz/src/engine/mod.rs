//! The relationship evaluation engine: check, batch check, list-objects, list-users and expand,
//! with OpenFGA's (schema 1.1) semantics and error codes.
//!
//! # Shape
//! - [`TypeSystem`] is built once per model version: relations are resolved to dense ids, each
//!   relation's rewrite is compiled to a tree of ids (no string formatting or map lookups by
//!   `type#relation` strings at evaluation time), and reachability facts are precomputed (which
//!   user types a relation can ever contain, which relations it can dispatch to, which relations
//!   are tuplesets, the reverse edges list-objects walks).
//! - Tuples are read through the synchronous, visitor-based [`TupleReader`] trait. The in-memory
//!   [`crate::index::TupleIndex`] implements it over immutable snapshots; a request's contextual
//!   tuples overlay any reader for that one request ([`ContextualTuples`]).
//! - The evaluation functions ([`check`], [`batch_check`], [`list_objects`], [`list_users`],
//!   [`expand`], and [`explain`] / [`check_with_reason`]: the check walk observed through its
//!   trace hooks, so the code that decides is the code that explains) are pure: the same model, tuples and request give the same answer or the same
//!   error, whatever the tuple order or thread.
//!
//! # Example
//! ```
//! use trustgate_authz::engine::{CheckRequest, TypeSystem, check, validate_tuple_for_write};
//! use trustgate_authz::index::{TupleChange, TupleIndex};
//! use trustgate_authz::tuple::TupleKey;
//!
//! let model = trustgate_authz::dsl::parse(
//!     "model\n  schema 1.1\ntype user\ntype document\n  relations\n    define viewer: [user]\n",
//! )
//! .expect("model");
//! let ts = TypeSystem::new(model).expect("type system");
//! let tuple = TupleKey::new("document:1", "viewer", "user:anne");
//! validate_tuple_for_write(&ts, &tuple).expect("fits the model");
//! let index = TupleIndex::new();
//! index.apply(1, &[TupleChange::Write(tuple)]).expect("apply");
//! let snapshot = index.current();
//! let allowed = check(
//!     &ts,
//!     &*snapshot,
//!     &CheckRequest {
//!         object: "document:1",
//!         relation: "viewer",
//!         user: "user:anne",
//!         contextual_tuples: &[],
//!         context: None,
//!     },
//! );
//! assert_eq!(allowed, Ok(true));
//! ```
//!
//! # Invariants
//! - Fail closed: every error (malformed request, unknown type, condition that cannot be
//!   evaluated, resolution depth exceeded, storage error) is returned as an [`EngineError`]; it
//!   never turns into `allowed: true`.
//! - Tuples that do not fit the current model's type restrictions (written under an older model)
//!   are ignored when read, as OpenFGA does; they are never an error.
//! - A cycle in the data (a userset that contains itself, directly or indirectly) resolves to
//!   "not allowed", never to an error and never to an endless loop.
//! - Resolution depth is limited to [`MAX_RESOLUTION_DEPTH`] dispatches; going deeper is
//!   `authorization_model_resolution_too_complex` (2002).
//! - No input makes the engine panic: every string is validated before it is used, and nested
//!   evaluation is bounded by the depth limit.

mod check;
mod condition_eval;
mod error;
mod expand;
mod explain;
mod list_objects;
mod list_users;
mod reader;
mod trace;
mod typesystem;
mod validation;

pub use check::{
    BatchCheckItem, BatchCheckResult, CheckRequest, batch_check, check, validate_correlation_ids,
};
pub use error::{EngineError, ErrorCode};
pub use expand::{
    ExpandComputed, ExpandDifference, ExpandLeaf, ExpandNode, ExpandNodeValue, ExpandNodes,
    ExpandRequest, ExpandResponse, ExpandTupleToUserset, ExpandUsers, UsersetTree, expand,
};
pub use explain::{
    ConditionResult, ConditionStep, Explanation, MAX_EXPLAINED_VALUE_BYTES, MAX_EXPLANATION_STEPS,
    MAX_REASON_CAUSES, Reason, Step, StepKind, StepResult, check_with_reason, explain,
};
pub use list_objects::{
    ListObjectsPage, ListObjectsRequest, list_objects, list_objects_page, list_objects_visit,
};
pub use list_users::{ListUsersRequest, ListUsersResponse, UserFilter, list_users};
pub use reader::{
    ContextualTuples, Overlay, ReadError, TupleReader, TupleView, UserSelector, Visitor,
};
pub use typesystem::{TypeSystem, TypeSystemError};
pub use validation::{
    MAX_CONTEXTUAL_TUPLES, validate_contextual_tuples, validate_object, validate_relation_name,
    validate_tuple_for_write, validate_user,
};

/// The maximum number of nested dispatches (computed usersets, tuple-to-usersets, userset
/// tuples) one evaluation may follow, as OpenFGA's default `resolveNodeLimit`.
pub const MAX_RESOLUTION_DEPTH: u32 = 25;
