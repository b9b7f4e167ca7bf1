//! Relationship storage for the OpenFGA-compatible PDP: stores, authorization models, tuples and
//! the per-store tuple changelog.
//!
//! The policy engine (`trustgate-authz`) evaluates checks over an in-memory tuple index. This
//! module is what that index is loaded from and kept fresh with: [`RelationshipStore::load_tuples`]
//! returns every tuple of a store together with the changelog sequence number it reflects, and
//! [`RelationshipStore::changes_since`] returns what happened after that number, so every replica
//! sharing one database converges on the same tuples.
//!
//! # Sequence numbers
//!
//! Every applied write or delete appends one changelog row with a per-store `seq`: 1, 2, 3, ...
//! without gaps. Writers to one store are serialized (PostgreSQL: a row lock on the store row,
//! which holds `last_seq`; SQLite: `BEGIN IMMEDIATE`), so a reader never sees seq `n + 1` before
//! seq `n` has been committed. [`RelationshipStore::store_seq`] reads the newest committed `seq`.
//!
//! # Write rules (OpenFGA's)
//!
//! A tuple's identity is `(object, relation, user)`; its condition is not part of it.
//! [`RelationshipStore::write_tuples`] is all-or-nothing; it fails, writing nothing, with:
//!
//! - [`TupleWriteError::DuplicateInRequest`] when one identity appears twice in the request
//!   (twice in the writes, twice in the deletes, or once in each):
//!   `duplicate tuple in write: user: 'U', relation: 'R', object: 'O'`.
//! - [`TupleWriteError::AlreadyExists`] when a written tuple exists and
//!   [`OnDuplicate::Error`] is in effect: `cannot write a tuple which already exists: user: 'U',
//!   relation: 'R', object: 'O': tuple to be written already existed or the tuple to be deleted
//!   did not exist`.
//! - [`TupleWriteError::ConditionConflict`] when a written tuple exists with a different condition
//!   (name or context) under [`OnDuplicate::Ignore`]: `cannot write a tuple which already exists
//!   with a different condition: user: 'U', relation: 'R', object: 'O': tuple to be written
//!   already existed or the tuple to be deleted did not exist`. An identical tuple is skipped.
//! - [`TupleWriteError::DoesNotExist`] when a deleted tuple does not exist and
//!   [`OnMissing::Error`] is in effect: `cannot delete a tuple which does not exist: user: 'U',
//!   relation: 'R', object: 'O': tuple to be written already existed or the tuple to be deleted
//!   did not exist`. Under [`OnMissing::Ignore`] the delete is skipped.
//! - [`TupleWriteError::InvalidInput`] for empty or oversized fields (see [`MAX_FIELD_BYTES`]).
//! - [`TupleWriteError::StoreNotFound`] when the store does not exist or was deleted.
//!
//! Deletes are applied before writes (as OpenFGA does), each in request order. A delete's
//! changelog row carries the condition of the tuple it removed.
//!
//! # Bulk import
//!
//! [`RelationshipStore::import_tuples`] writes up to [`MAX_IMPORT_BATCH`] tuples in one
//! transaction with multi-row statements, under the same per-store writer lock as a write, and
//! appends one changelog row per tuple it inserted, so readers of the changelog and other
//! replicas see an imported tuple exactly as if it had been written by
//! [`RelationshipStore::write_tuples`]. Unlike a write it skips (and counts) a tuple that exists
//! identically, so an interrupted import can be run again; the other rules are a write's
//! (duplicates in the batch, a different condition, invalid fields, a missing store), and a
//! failed batch writes nothing.
//!
//! # Paging
//!
//! Listing operations take a page size (1..=[`MAX_PAGE_SIZE`]) and an optional continuation
//! token. Tokens are opaque (URL-safe base64) and bound to the operation, the store and, for
//! changes, the type filter; a token that does not decode or belongs elsewhere fails with
//! [`StoreError::InvalidContinuationToken`]. A `None` next token means there is nothing more.
//!
//! # Timestamps
//!
//! Times are supplied by the caller and stored with microsecond precision in UTC (PostgreSQL's
//! precision), so both backends return the same values.

use async_trait::async_trait;
use serde_json::Value;
use time::OffsetDateTime;

pub use trustgate_core::tuple::{RelationshipCondition, TupleKey};

use crate::StoreError;

/// The longest id, name, object, relation, user or condition name the store accepts, in bytes.
///
/// A defensive bound well above OpenFGA's own limits (user 512, object 256, relation 50), which
/// callers enforce; it only keeps absurd input away from the database.
pub const MAX_FIELD_BYTES: usize = 1024;
/// The largest condition context the store accepts, as serialized JSON.
pub const MAX_CONTEXT_BYTES: usize = 64 * 1024;
/// The largest authorization model the store accepts, as serialized JSON.
pub const MAX_MODEL_BYTES: usize = 8 * 1024 * 1024;
/// The largest page size (or `changes_since` limit) the store accepts.
pub const MAX_PAGE_SIZE: u32 = 10_000;

/// An OpenFGA store: a namespace of models and tuples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FgaStore {
    /// ULID, supplied by the caller.
    pub id: String,
    /// Human-readable name (not unique).
    pub name: String,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it was last changed (creation or deletion; tuple writes do not count).
    pub updated_at: OffsetDateTime,
    /// When it was deleted. Deleted stores and their data are invisible to every operation.
    pub deleted_at: Option<OffsetDateTime>,
}

/// An immutable authorization model of a store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredModel {
    /// ULID, supplied by the caller; the highest id of a store is its latest model.
    pub id: String,
    /// The store it belongs to.
    pub store_id: String,
    /// The model's schema version (`1.1`, `1.2`).
    pub schema_version: String,
    /// The OpenFGA JSON model (`type_definitions`, `conditions`, ...), as given.
    pub model_json: Value,
    /// When it was written.
    pub created_at: OffsetDateTime,
}

/// A stored tuple with the time it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTuple {
    /// The tuple.
    pub tuple: TupleKey,
    /// When it was written.
    pub timestamp: OffsetDateTime,
}

/// What a changelog entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TupleOperation {
    /// The tuple was written.
    Write,
    /// The tuple was deleted.
    Delete,
}

impl TupleOperation {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TupleOperation::Write => "write",
            TupleOperation::Delete => "delete",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "write" => Some(TupleOperation::Write),
            "delete" => Some(TupleOperation::Delete),
            _ => None,
        }
    }
}

/// One changelog entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TupleChangeRecord {
    /// The store's sequence number of this change (1, 2, ... without gaps).
    pub seq: i64,
    /// Write or delete.
    pub operation: TupleOperation,
    /// The tuple written, or the tuple deleted (with the condition it had).
    pub tuple: TupleKey,
    /// When the change was made.
    pub timestamp: OffsetDateTime,
}

/// What to do when a written tuple exists already.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnDuplicate {
    /// Fail the whole request.
    #[default]
    Error,
    /// Skip it if it is identical (same condition and context); fail if its condition differs.
    Ignore,
}

/// What to do when a deleted tuple does not exist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnMissing {
    /// Fail the whole request.
    #[default]
    Error,
    /// Skip it.
    Ignore,
}

/// Options of [`RelationshipStore::write_tuples`]; the default fails on duplicates and misses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Writes of existing tuples.
    pub on_duplicate: OnDuplicate,
    /// Deletes of missing tuples.
    pub on_missing: OnMissing,
}

/// The most tuples one [`RelationshipStore::import_tuples`] call takes: bounds the transaction
/// (and so how long other writers of the store wait for it) and the memory of one batch.
pub const MAX_IMPORT_BATCH: usize = 10_000;

/// The result of a successful [`RelationshipStore::import_tuples`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportOutcome {
    /// The store's changelog sequence number after the batch (unchanged if nothing was new).
    pub seq: i64,
    /// Tuples inserted (one changelog row each).
    pub written: u64,
    /// Tuples that existed identically and were skipped.
    pub existing: u64,
}

/// The result of a successful [`RelationshipStore::write_tuples`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The store's changelog sequence number after the write (unchanged if everything was
    /// skipped).
    pub seq: i64,
}

/// Which tuples [`RelationshipStore::read_tuples`] returns; `None` fields match everything.
///
/// OpenFGA's Read rules on which combinations a request may use are the caller's business; the
/// store answers any combination except an `object_id` without an `object_type`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TupleFilter {
    /// The object type (`document` of `document:1`).
    pub object_type: Option<String>,
    /// The object id (`1` of `document:1`); needs `object_type`.
    pub object_id: Option<String>,
    /// The relation.
    pub relation: Option<String>,
    /// The user, matched exactly (`user:*` matches only the wildcard tuple).
    pub user: Option<String>,
}

/// All tuples of a store as of one changelog sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TupleSnapshot {
    /// The tuples, ordered by object type, object id, relation and user.
    pub tuples: Vec<TupleKey>,
    /// The sequence number of the last change reflected in `tuples`.
    pub seq: i64,
}

/// Why [`RelationshipStore::write_tuples`] failed. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum TupleWriteError {
    /// The store does not exist or was deleted.
    #[error("store {0} not found")]
    StoreNotFound(String),
    /// A field is empty, malformed or too long.
    #[error("invalid tuple: {0}")]
    InvalidInput(String),
    /// One tuple identity appears twice in the request.
    #[error("duplicate tuple in write: user: '{user}', relation: '{relation}', object: '{object}'")]
    DuplicateInRequest {
        /// The tuple's user.
        user: String,
        /// The tuple's relation.
        relation: String,
        /// The tuple's object.
        object: String,
    },
    /// A written tuple exists already.
    #[error(
        "cannot write a tuple which already exists: user: '{user}', relation: '{relation}', \
         object: '{object}': tuple to be written already existed or the tuple to be deleted did \
         not exist"
    )]
    AlreadyExists {
        /// The tuple's user.
        user: String,
        /// The tuple's relation.
        relation: String,
        /// The tuple's object.
        object: String,
    },
    /// A written tuple exists with another condition (under [`OnDuplicate::Ignore`]).
    #[error(
        "cannot write a tuple which already exists with a different condition: user: '{user}', \
         relation: '{relation}', object: '{object}': tuple to be written already existed or the \
         tuple to be deleted did not exist"
    )]
    ConditionConflict {
        /// The tuple's user.
        user: String,
        /// The tuple's relation.
        relation: String,
        /// The tuple's object.
        object: String,
    },
    /// A deleted tuple does not exist.
    #[error(
        "cannot delete a tuple which does not exist: user: '{user}', relation: '{relation}', \
         object: '{object}': tuple to be written already existed or the tuple to be deleted did \
         not exist"
    )]
    DoesNotExist {
        /// The tuple's user.
        user: String,
        /// The tuple's relation.
        relation: String,
        /// The tuple's object.
        object: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TupleWriteError {
    /// [`TupleWriteError::AlreadyExists`] for `t`.
    pub fn already_exists(t: &TupleKey) -> Self {
        TupleWriteError::AlreadyExists {
            user: t.user.clone(),
            relation: t.relation.clone(),
            object: t.object.clone(),
        }
    }

    /// [`TupleWriteError::ConditionConflict`] for `t`.
    pub fn condition_conflict(t: &TupleKey) -> Self {
        TupleWriteError::ConditionConflict {
            user: t.user.clone(),
            relation: t.relation.clone(),
            object: t.object.clone(),
        }
    }

    /// [`TupleWriteError::DoesNotExist`] for `t`.
    pub fn does_not_exist(t: &TupleKey) -> Self {
        TupleWriteError::DoesNotExist {
            user: t.user.clone(),
            relation: t.relation.clone(),
            object: t.object.clone(),
        }
    }
}

/// Storage of OpenFGA stores, authorization models, relationship tuples and their changelog.
///
/// Ids and times are supplied by the caller (ULIDs from `trustgate_core::id`, the caller's
/// clock). Operations on a store that does not exist or was deleted fail with
/// [`StoreError::NotFound`] (or return `None` where the signature has an `Option`).
#[async_trait]
pub trait RelationshipStore: std::fmt::Debug + Send + Sync {
    /// Creates a store. An existing id (even of a deleted store) is a [`StoreError::Conflict`].
    async fn create_fga_store(
        &self,
        id: &str,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<FgaStore, StoreError>;

    /// The store `id` unless it does not exist or was deleted.
    async fn get_fga_store(&self, id: &str) -> Result<Option<FgaStore>, StoreError>;

    /// Live stores ordered by id, a page at a time; with `name`, only the stores of exactly
    /// that name (OpenFGA's `ListStores` filter).
    async fn list_fga_stores(
        &self,
        page_size: u32,
        continuation: Option<&str>,
        name: Option<&str>,
    ) -> Result<(Vec<FgaStore>, Option<String>), StoreError>;

    /// Marks the store deleted. Returns false if it did not exist or was deleted already.
    async fn delete_fga_store(&self, id: &str, now: OffsetDateTime) -> Result<bool, StoreError>;

    /// Every live store with its changelog sequence number, ordered by id: what a replica polls
    /// to learn which tuple indexes to load, drop or refresh.
    async fn live_store_seqs(&self) -> Result<Vec<(String, i64)>, StoreError>;

    /// Stores an authorization model. Models are immutable: an existing id is a
    /// [`StoreError::Conflict`].
    async fn write_model(&self, model: &StoredModel) -> Result<(), StoreError>;

    /// The model `model_id` of the store.
    async fn get_model(
        &self,
        store_id: &str,
        model_id: &str,
    ) -> Result<Option<StoredModel>, StoreError>;

    /// The store's model with the highest id (the newest).
    async fn latest_model(&self, store_id: &str) -> Result<Option<StoredModel>, StoreError>;

    /// The store's models newest first, a page at a time.
    async fn list_models(
        &self,
        store_id: &str,
        page_size: u32,
        continuation: Option<&str>,
    ) -> Result<(Vec<StoredModel>, Option<String>), StoreError>;

    /// Deletes `deletes` and then writes `writes`, all or nothing, appending one changelog entry
    /// per applied change (see the module docs for the rules and messages).
    async fn write_tuples(
        &self,
        store_id: &str,
        writes: &[TupleKey],
        deletes: &[TupleKey],
        options: WriteOptions,
        now: OffsetDateTime,
    ) -> Result<WriteOutcome, TupleWriteError>;

    /// Inserts `tuples` (at most [`MAX_IMPORT_BATCH`]) in one transaction, skipping those that
    /// exist identically, and appends one changelog entry per inserted tuple in input order (see
    /// the module docs). Fails, writing nothing, on an oversized batch
    /// ([`TupleWriteError::InvalidInput`]) and on a write's errors except
    /// [`TupleWriteError::AlreadyExists`].
    async fn import_tuples(
        &self,
        store_id: &str,
        tuples: &[TupleKey],
        now: OffsetDateTime,
    ) -> Result<ImportOutcome, TupleWriteError>;

    /// The tuples `filter` selects, ordered by object type, object id, relation and user, a
    /// page at a time.
    async fn read_tuples(
        &self,
        store_id: &str,
        filter: &TupleFilter,
        page_size: u32,
        continuation: Option<&str>,
    ) -> Result<(Vec<StoredTuple>, Option<String>), StoreError>;

    /// Changelog entries in sequence order, optionally only those of `object_type`, a page at a
    /// time. Without a continuation token only changes made at or after `start_time` are
    /// returned; with one, `start_time` is ignored (as in OpenFGA). The returned token always
    /// lets the caller resume: once the end is reached it points there, so polling with it
    /// returns only later changes.
    async fn read_changes(
        &self,
        store_id: &str,
        object_type: Option<&str>,
        start_time: Option<OffsetDateTime>,
        page_size: u32,
        continuation: Option<&str>,
    ) -> Result<(Vec<TupleChangeRecord>, String), StoreError>;

    /// All tuples of the store and the sequence number they reflect, from one snapshot.
    async fn load_tuples(&self, store_id: &str) -> Result<TupleSnapshot, StoreError>;

    /// Up to `limit` changelog entries with `seq > after_seq`, in sequence order.
    async fn changes_since(
        &self,
        store_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<TupleChangeRecord>, StoreError>;

    /// The store's newest committed changelog sequence number (0 before the first change).
    async fn store_seq(&self, store_id: &str) -> Result<i64, StoreError>;

    /// Replaces the stored attributes of `object` (`type:id`) in a live store with
    /// `attributes` (a JSON object of at most [`MAX_OBJECT_ATTRIBUTES_BYTES`] serialized).
    /// [`StoreError::NotFound`] if the store does not exist or was deleted;
    /// [`StoreError::InvalidInput`] for an oversized value or an invalid object.
    async fn put_object_attributes(
        &self,
        store_id: &str,
        object: &str,
        attributes: &serde_json::Map<String, serde_json::Value>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// The stored attributes of each of `objects` (`type:id`) that has some, in a live store
    /// (an object without attributes is absent from the answer). [`StoreError::NotFound`] if
    /// the store does not exist or was deleted. At most [`MAX_ATTRIBUTE_OBJECTS_PER_READ`]
    /// objects.
    async fn get_object_attributes(
        &self,
        store_id: &str,
        objects: &[&str],
    ) -> Result<Vec<(String, serde_json::Map<String, serde_json::Value>)>, StoreError>;

    /// Whether the store keeps stored attributes of any object: a cheap probe, so that an
    /// evaluation in a store without any needs no read per object. `false` for a store that
    /// does not exist or was deleted (its attributes went with it).
    async fn has_object_attributes(&self, store_id: &str) -> Result<bool, StoreError>;

    /// Deletes the stored attributes of `object`; false if it had none.
    /// [`StoreError::NotFound`] if the store does not exist or was deleted.
    async fn delete_object_attributes(
        &self,
        store_id: &str,
        object: &str,
    ) -> Result<bool, StoreError>;
}

/// The largest stored attribute object of one object, serialized as JSON.
pub const MAX_OBJECT_ATTRIBUTES_BYTES: usize = 16 * 1024;

/// The most objects one [`RelationshipStore::get_object_attributes`] reads.
pub const MAX_ATTRIBUTE_OBJECTS_PER_READ: usize = 100;
