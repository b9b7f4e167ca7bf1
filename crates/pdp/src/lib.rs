//! The relationship PDP service: what the OpenFGA-compatible API, AuthZEN and the gateway call
//! to manage relationship stores and to ask authorization questions.
//!
//! [`Pdp`] owns stores ([`Pdp::create_store`], ...), authorization models (written with
//! validation, [`Pdp::write_model`]), tuple writes (all or nothing, validated against the model
//! including conditions, [`Pdp::write`]) and reads ([`Pdp::read`], [`Pdp::changes`]), and the
//! queries ([`Pdp::check`], [`Pdp::batch_check`], [`Pdp::expand`], [`Pdp::list_objects`],
//! [`Pdp::list_users`]) evaluated by `trustgate-authz` over an in-memory tuple index per store,
//! and the searches a PEP asks ([`Pdp::search_objects`], [`Pdp::search_users`],
//! [`Pdp::list_relations`]: unknown types have no answers rather than errors).
//! [`attributes`] names the attributes of a request (AuthZEN's subject, action, resource and
//! context properties) for condition evaluation.
//!
//! # Invariants
//! - **Transport-free**: plain Rust in (store ids, [`TupleKey`]s, the engine's borrowed request
//!   types, a `serde_json::Map` context, [`Freshness`]), typed results and a typed [`PdpError`]
//!   out; no HTTP types and no wire structs. A transport maps [`PdpError`] variants 1:1 to its
//!   codes.
//! - **The only owner of PDP freshness, consistency and the model cache**: nothing else loads,
//!   refreshes or evicts tuple indexes ([`freshness`]), issues or honours
//!   [`ConsistencyToken`]s ([`consistency`]), or caches type systems ([`models`]). A write
//!   returns only after this service's index reflects it (read-your-writes on one replica); its
//!   token makes any replica over the same database catch up before answering.
//! - **Never allows on an error**: a check answers `Ok(true)` only when the engine proved the
//!   relationship on a snapshot at least as fresh as asked; a missing store or model, a bad
//!   token, a storage failure or an evaluation error is an `Err`. Each batch item carries its own
//!   `Result`.
//! - Every check decision (each batch item too) is recorded once, through the [`DecisionLog`]
//!   ([`audit`]).
//!
//! # Use
//! ```no_run
//! # async fn demo(
//! #     store: std::sync::Arc<dyn trustgate_store_api::RelationshipStore>,
//! #     audit: std::sync::Arc<dyn trustgate_store_api::AuditStore>,
//! # ) -> Result<(), trustgate_pdp::PdpError> {
//! use std::sync::Arc;
//! use trustgate_pdp::{Caller, CheckRequest, Freshness, Limits, Pdp, QueryScope, TupleKey, TupleWrite};
//!
//! let clock: Arc<dyn trustgate_core::Clock> = Arc::new(trustgate_core::SystemClock);
//! let auditor = trustgate_audit::Auditor::new(audit, clock.clone(), Default::default());
//! let pdp = Pdp::new(store, clock, Limits::default(), auditor);
//! let created = pdp.create_store("docs").await?;
//! let model = trustgate_authz::dsl::parse(
//!     "model\n  schema 1.1\ntype user\ntype document\n  relations\n    define viewer: [user]\n",
//! )
//! .map_err(|e| trustgate_pdp::PdpError::InvalidModel(e.to_string()))?;
//! pdp.write_model(&created.id, model).await?;
//! let written = pdp
//!     .write(&created.id, &TupleWrite {
//!         writes: &[TupleKey::new("document:1", "viewer", "user:anne")],
//!         ..TupleWrite::default()
//!     })
//!     .await?;
//! // Another replica passes the token to see the write; this one sees it at once.
//! let scope = QueryScope {
//!     freshness: Freshness::after(&written.token),
//!     ..QueryScope::latest(&created.id)
//! };
//! let check = CheckRequest {
//!     object: "document:1",
//!     relation: "viewer",
//!     user: "user:anne",
//!     contextual_tuples: &[],
//!     context: None,
//! };
//! let context = trustgate_audit::RequestContext::new(None, None, Some("r1"));
//! let caller = Caller { principal: "service:gateway", context: &context };
//! assert!(pdp.check(&scope, &check, caller).await?);
//! # Ok(()) }
//! ```
//! Construct one [`Pdp`] per process over the shared database and clone the handle; its
//! background refresher (started by the first query) stops when the last clone is dropped.

pub mod attributes;
pub mod audit;
pub mod consistency;
pub mod error;
pub mod freshness;
pub mod models;
mod query;
mod search;
mod stores;
pub mod system;
mod tuples;
pub mod watch;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use trustgate_audit::Auditor;
use trustgate_core::Clock;
use trustgate_store_api::{RelationshipStore, SYSTEM_STORE_ID, UserStore};

pub use audit::{Caller, DecisionLog, DecisionRecord, Verdict};
pub use consistency::{Consistency, ConsistencyToken, Freshness};
pub use error::PdpError;
pub use freshness::REFRESH_INTERVAL;
pub use models::{LATEST_MODEL_TTL, MAX_MODEL_SIZE_BYTES, MAX_TYPES_PER_MODEL};
pub use query::{BatchCheckOutcome, BatchStop, ListPaging, Listed, QueryScope};
pub use search::{RelationsRequest, page_sorted};
pub use trustgate_authz::engine::{
    BatchCheckItem, CheckRequest, ExpandRequest, ExpandResponse, Explanation, ListObjectsRequest,
    ListUsersRequest, Reason, Step, StepKind, StepResult, UserFilter,
};
pub use trustgate_authz::model::AuthorizationModel;
pub use trustgate_store_api::{
    FgaStore, OnDuplicate, OnMissing, StoredModel, StoredTuple, TupleChangeRecord, TupleKey,
    TupleOperation,
};
pub use tuples::{Changes, IMPORT_BATCH, Imported, ReadFilter, TupleWrite, Written};
pub use watch::{Revision, RevisionWatch, StoreGone};

/// The default page size of store, model, tuple and change listings (OpenFGA's).
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// The largest page size of store, model, tuple and change listings (OpenFGA's).
pub const MAX_PAGE_SIZE: u32 = 100;

/// The service's limits (OpenFGA's defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most tuples (writes plus deletes) in one write.
    pub max_tuples_per_write: usize,
    /// Most tuples in one import ([`Pdp::import`]).
    pub max_tuples_per_import: usize,
    /// Most checks in one batch check.
    pub max_checks_per_batch: usize,
    /// Most results one unpaged list-objects returns; more are an error, never truncated.
    pub list_objects_max_results: usize,
    /// Most results one unpaged list-users returns; more are an error, never truncated.
    pub list_users_max_results: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tuples_per_write: 100,
            max_tuples_per_import: 100_000,
            max_checks_per_batch: 50,
            list_objects_max_results: 1000,
            list_users_max_results: 1000,
        }
    }
}

/// A page request of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page<'a> {
    /// 1..=[`MAX_PAGE_SIZE`].
    pub size: u32,
    /// The token of the previous page (an empty one is none).
    pub continuation_token: Option<&'a str>,
}

impl Default for Page<'_> {
    fn default() -> Self {
        Page {
            size: DEFAULT_PAGE_SIZE,
            continuation_token: None,
        }
    }
}

impl<'a> Page<'a> {
    fn size(&self) -> Result<u32, PdpError> {
        if (1..=MAX_PAGE_SIZE).contains(&self.size) {
            Ok(self.size)
        } else {
            Err(PdpError::Validation(format!(
                "invalid page size {}: value must be inside range [1, {MAX_PAGE_SIZE}]",
                self.size
            )))
        }
    }

    fn continuation(&self) -> Option<&'a str> {
        self.continuation_token.filter(|t| !t.is_empty())
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Paged<T> {
    /// The items.
    pub items: Vec<T>,
    /// The next page's token; `None` when there are no more.
    pub continuation_token: Option<String>,
}

/// What the service holds in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PdpStats {
    /// Stores whose tuple index is loaded.
    pub loaded_stores: usize,
    /// Type systems in the model cache.
    pub cached_models: usize,
}

/// The relationship PDP service. Cheap to clone: clones share one state.
#[derive(Debug, Clone)]
pub struct Pdp {
    inner: Arc<Inner>,
    /// Whether this handle reaches the system store (only [`system::SystemAccess`]'s does).
    system: bool,
}

/// The shared state.
struct Inner {
    store: Arc<dyn RelationshipStore>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    decisions: Arc<dyn DecisionLog>,
    indexes: freshness::Indexes,
    models: models::ModelCache,
    attributes: attributes::AttributeCache,
    stores_with_attributes: attributes::StoresWithAttributes,
    /// trustgate's users, for their directory attributes ([`Pdp::with_directory`]).
    directory: OnceLock<Arc<dyn UserStore>>,
    refresher_started: AtomicBool,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let loaded = self.indexes.read().map(|m| m.len()).unwrap_or_default();
        f.debug_struct("Pdp")
            .field("loaded_stores", &loaded)
            .field("cached_models", &self.models.len())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Pdp {
    /// A service over `store`, auditing decisions through `auditor`. Nothing is loaded until
    /// the first query.
    pub fn new(
        store: Arc<dyn RelationshipStore>,
        clock: Arc<dyn Clock>,
        limits: Limits,
        auditor: Auditor,
    ) -> Self {
        Self::with_decision_log(store, clock, limits, Arc::new(auditor))
    }

    /// A service over `store` that records decisions in `decisions`.
    pub fn with_decision_log(
        store: Arc<dyn RelationshipStore>,
        clock: Arc<dyn Clock>,
        limits: Limits,
        decisions: Arc<dyn DecisionLog>,
    ) -> Self {
        Pdp {
            inner: Arc::new(Inner {
                store,
                clock,
                limits,
                decisions,
                indexes: freshness::Indexes::default(),
                models: models::ModelCache::default(),
                attributes: attributes::attribute_cache(),
                stores_with_attributes: attributes::stores_with_attributes(),
                directory: OnceLock::new(),
                refresher_started: AtomicBool::new(false),
            }),
            system: false,
        }
    }

    /// Validates `store_id` and refuses the system store ([`PdpError::StoreNotFound`]) unless
    /// this is the system handle: trustgate's own roles are not reachable through the API that
    /// serves user stores.
    fn open(&self, store_id: &str) -> Result<(), PdpError> {
        validate_store_id(store_id)?;
        if store_id == SYSTEM_STORE_ID && !self.system {
            return Err(PdpError::StoreNotFound);
        }
        Ok(())
    }

    /// The limits in effect.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// What is held in memory.
    pub fn stats(&self) -> PdpStats {
        PdpStats {
            loaded_stores: self
                .inner
                .indexes
                .read()
                .map(|m| m.len())
                .unwrap_or_else(|e| e.into_inner().len()),
            cached_models: self.inner.models.len(),
        }
    }
}

/// Checks a store id (a ULID, as OpenFGA does).
pub fn validate_store_id(store_id: &str) -> Result<(), PdpError> {
    if trustgate_core::id::is_ulid(store_id) {
        Ok(())
    } else {
        Err(PdpError::Validation(format!(
            "invalid store_id '{}': value does not match regex pattern \"^[ABCDEFGHJKMNPQRSTVWXYZ0-9]{{26}}$\"",
            shorten(store_id)
        )))
    }
}

/// At most 64 characters of user input for messages.
fn shorten(s: &str) -> String {
    if s.chars().count() <= 64 {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(64).collect();
        out.push('…');
        out
    }
}
