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

use std::collections::HashSet;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use time::OffsetDateTime;

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
/// The longest continuation token the store tries to decode.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

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

/// A relationship tuple: `user` has `relation` to `object`, optionally under a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TupleRecord {
    /// `type:id`.
    pub object: String,
    /// The relation name.
    pub relation: String,
    /// `type:id`, `type:*` or `type:id#relation`.
    pub user: String,
    /// The name of the condition the tuple holds under.
    pub condition_name: Option<String>,
    /// Parameter values stored with the condition.
    pub condition_context: Option<Map<String, Value>>,
}

impl TupleRecord {
    /// An unconditioned tuple.
    pub fn new(
        object: impl Into<String>,
        relation: impl Into<String>,
        user: impl Into<String>,
    ) -> Self {
        Self {
            object: object.into(),
            relation: relation.into(),
            user: user.into(),
            condition_name: None,
            condition_context: None,
        }
    }

    /// The same tuple under condition `name` with `context`.
    pub fn with_condition(
        mut self,
        name: impl Into<String>,
        context: Option<Map<String, Value>>,
    ) -> Self {
        self.condition_name = Some(name.into());
        self.condition_context = context;
        self
    }

    /// Whether `self` and `other` carry the same condition (an empty context equals none).
    pub fn same_condition(&self, other: &TupleRecord) -> bool {
        fn context(t: &TupleRecord) -> Option<&Map<String, Value>> {
            t.condition_context.as_ref().filter(|c| !c.is_empty())
        }
        self.condition_name == other.condition_name && context(self) == context(other)
    }
}

/// A stored tuple with the time it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTuple {
    /// The tuple.
    pub tuple: TupleRecord,
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

    pub(crate) fn from_db(s: &str) -> Result<Self, StoreError> {
        match s {
            "write" => Ok(TupleOperation::Write),
            "delete" => Ok(TupleOperation::Delete),
            other => Err(StoreError::Database(format!(
                "unknown tuple operation {other:?}"
            ))),
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
    pub tuple: TupleRecord,
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
    pub tuples: Vec<TupleRecord>,
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

impl From<sqlx::Error> for TupleWriteError {
    fn from(err: sqlx::Error) -> Self {
        TupleWriteError::Store(err.into())
    }
}

impl TupleWriteError {
    pub(crate) fn already_exists(t: &TupleRecord) -> Self {
        TupleWriteError::AlreadyExists {
            user: t.user.clone(),
            relation: t.relation.clone(),
            object: t.object.clone(),
        }
    }

    pub(crate) fn condition_conflict(t: &TupleRecord) -> Self {
        TupleWriteError::ConditionConflict {
            user: t.user.clone(),
            relation: t.relation.clone(),
            object: t.object.clone(),
        }
    }

    pub(crate) fn does_not_exist(t: &TupleRecord) -> Self {
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
pub trait RelationshipStore {
    /// Creates a store. An existing id (even of a deleted store) is a [`StoreError::Conflict`].
    async fn create_fga_store(
        &self,
        id: &str,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<FgaStore, StoreError>;

    /// The store `id` unless it does not exist or was deleted.
    async fn get_fga_store(&self, id: &str) -> Result<Option<FgaStore>, StoreError>;

    /// Live stores ordered by id, a page at a time.
    async fn list_fga_stores(
        &self,
        page_size: u32,
        continuation: Option<&str>,
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
        writes: &[TupleRecord],
        deletes: &[TupleRecord],
        options: WriteOptions,
        now: OffsetDateTime,
    ) -> Result<WriteOutcome, TupleWriteError>;

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
}

// ---------------------------------------------------------------------------------------------
// Validation shared by the backends.

pub(crate) fn store_not_found(id: &str) -> StoreError {
    StoreError::NotFound(format!("store {}", shorten(id)))
}

/// At most 80 characters of `s`, for error messages that echo input.
pub(crate) fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Checks a field that is stored: non-empty, bounded, no NUL (PostgreSQL cannot store it).
pub(crate) fn check_field(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if value.len() > MAX_FIELD_BYTES {
        return Err(format!(
            "{what} is {} bytes long, at most {MAX_FIELD_BYTES} are accepted",
            value.len()
        ));
    }
    if value.contains('\0') {
        return Err(format!("{what} must not contain NUL characters"));
    }
    Ok(())
}

pub(crate) fn check_input(what: &str, value: &str) -> Result<(), StoreError> {
    check_field(what, value).map_err(StoreError::InvalidInput)
}

/// Serialized JSON, refused if larger than `max` or containing NUL (PostgreSQL's JSONB cannot).
pub(crate) fn json_text(
    what: &str,
    value: &impl serde::Serialize,
    max: usize,
) -> Result<String, String> {
    let text = serde_json::to_string(value).map_err(|e| format!("{what} is not JSON: {e}"))?;
    if text.len() > max {
        return Err(format!(
            "{what} is {} bytes of JSON, at most {max} are accepted",
            text.len()
        ));
    }
    if text.contains("\\u0000") {
        return Err(format!("{what} must not contain NUL characters"));
    }
    Ok(text)
}

pub(crate) fn check_page_size(page_size: u32) -> Result<i64, StoreError> {
    if page_size == 0 || page_size > MAX_PAGE_SIZE {
        return Err(StoreError::InvalidInput(format!(
            "page size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}"
        )));
    }
    Ok(i64::from(page_size))
}

/// A tuple checked for storage, with its object split into type and id.
#[derive(Debug)]
pub(crate) struct CheckedTuple<'a> {
    pub tuple: &'a TupleRecord,
    pub object_type: &'a str,
    pub object_id: &'a str,
    /// The context as JSON text (`None` without a context).
    pub context_json: Option<String>,
}

pub(crate) fn check_tuple(t: &TupleRecord) -> Result<CheckedTuple<'_>, TupleWriteError> {
    let describe = |reason: String| {
        TupleWriteError::InvalidInput(format!(
            "{reason} (user: '{}', relation: '{}', object: '{}')",
            shorten(&t.user),
            shorten(&t.relation),
            shorten(&t.object)
        ))
    };
    check_field("object", &t.object).map_err(describe)?;
    check_field("relation", &t.relation).map_err(describe)?;
    check_field("user", &t.user).map_err(describe)?;
    let (object_type, object_id) = match t.object.split_once(':') {
        Some((ty, id)) if !ty.is_empty() && !id.is_empty() => (ty, id),
        _ => return Err(describe("object must have the form type:id".into())),
    };
    match &t.condition_name {
        Some(name) => check_field("condition name", name).map_err(describe)?,
        None if t.condition_context.is_some() => {
            return Err(describe(
                "a condition context needs a condition name".into(),
            ));
        }
        None => {}
    }
    let context_json = t
        .condition_context
        .as_ref()
        .map(|c| json_text("condition context", c, MAX_CONTEXT_BYTES))
        .transpose()
        .map_err(describe)?;
    Ok(CheckedTuple {
        tuple: t,
        object_type,
        object_id,
        context_json,
    })
}

/// Checks every tuple of a write request and that no identity appears twice.
pub(crate) fn check_write_request<'a>(
    writes: &'a [TupleRecord],
    deletes: &'a [TupleRecord],
) -> Result<(Vec<CheckedTuple<'a>>, Vec<CheckedTuple<'a>>), TupleWriteError> {
    let mut seen: HashSet<(&str, &str, &str)> =
        HashSet::with_capacity(writes.len() + deletes.len());
    let mut check_all =
        |tuples: &'a [TupleRecord]| -> Result<Vec<CheckedTuple<'a>>, TupleWriteError> {
            tuples
                .iter()
                .map(|t| {
                    let checked = check_tuple(t)?;
                    if !seen.insert((&t.object, &t.relation, &t.user)) {
                        return Err(TupleWriteError::DuplicateInRequest {
                            user: t.user.clone(),
                            relation: t.relation.clone(),
                            object: t.object.clone(),
                        });
                    }
                    Ok(checked)
                })
                .collect()
        };
    let deletes = check_all(deletes)?;
    let writes = check_all(writes)?;
    Ok((writes, deletes))
}

pub(crate) fn check_filter(filter: &TupleFilter) -> Result<(), StoreError> {
    let fields = [
        ("object type", &filter.object_type),
        ("object id", &filter.object_id),
        ("relation", &filter.relation),
        ("user", &filter.user),
    ];
    for (what, value) in fields {
        if let Some(v) = value {
            check_input(what, v)?;
        }
    }
    if filter.object_id.is_some() && filter.object_type.is_none() {
        return Err(StoreError::InvalidInput(
            "an object id filter needs an object type".into(),
        ));
    }
    Ok(())
}

pub(crate) fn check_model(model: &StoredModel) -> Result<String, StoreError> {
    check_input("model id", &model.id)?;
    check_input("store id", &model.store_id)?;
    check_input("schema version", &model.schema_version)?;
    json_text("authorization model", &model.model_json, MAX_MODEL_BYTES)
        .map_err(StoreError::InvalidInput)
}

/// `t` in UTC, truncated to microseconds.
pub(crate) fn normalize_time(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    let micros = t.microsecond();
    t.replace_microsecond(micros).unwrap_or(t)
}

/// Microseconds since the Unix epoch (how SQLite stores changelog times, so they sort).
pub(crate) fn unix_micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

pub(crate) fn from_unix_micros(micros: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .map_err(|e| StoreError::Database(format!("stored time out of range: {e}")))
}

pub(crate) fn tuple_from_parts(
    object_type: String,
    object_id: &str,
    relation: String,
    user: String,
    condition_name: Option<String>,
    condition_context: Option<Map<String, Value>>,
) -> TupleRecord {
    let mut object = object_type;
    object.push(':');
    object.push_str(object_id);
    TupleRecord {
        object,
        relation,
        user,
        condition_name,
        condition_context,
    }
}

pub(crate) fn context_from_text(
    text: Option<&str>,
) -> Result<Option<Map<String, Value>>, StoreError> {
    text.map(|t| {
        serde_json::from_str(t).map_err(|e| {
            StoreError::Database(format!(
                "stored condition context is not a JSON object: {e}"
            ))
        })
    })
    .transpose()
}

// ---------------------------------------------------------------------------------------------
// Continuation tokens: URL-safe base64 of a JSON array of strings whose first element names the
// operation. They are opaque to callers and checked strictly when they come back.

pub(crate) const TOKEN_STORES: &str = "s";
pub(crate) const TOKEN_MODELS: &str = "m";
pub(crate) const TOKEN_TUPLES: &str = "t";
pub(crate) const TOKEN_CHANGES: &str = "c";

pub(crate) fn encode_token(kind: &str, parts: &[&str]) -> String {
    let mut all = Vec::with_capacity(parts.len() + 1);
    all.push(kind);
    all.extend_from_slice(parts);
    // Serializing strings cannot fail.
    let json = serde_json::to_vec(&all).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// The `n` parts of a token of `kind`, or [`StoreError::InvalidContinuationToken`].
pub(crate) fn decode_token(kind: &str, token: &str, n: usize) -> Result<Vec<String>, StoreError> {
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(StoreError::InvalidContinuationToken);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| StoreError::InvalidContinuationToken)?;
    let mut parts: Vec<String> =
        serde_json::from_slice(&bytes).map_err(|_| StoreError::InvalidContinuationToken)?;
    if parts.len() != n + 1 || parts[0] != kind {
        return Err(StoreError::InvalidContinuationToken);
    }
    parts.remove(0);
    Ok(parts)
}

/// The continuation of a changes read: the seq to continue after, bound to store and type.
pub(crate) fn encode_changes_token(store_id: &str, object_type: Option<&str>, seq: i64) -> String {
    encode_token(
        TOKEN_CHANGES,
        &[store_id, object_type.unwrap_or(""), &seq.to_string()],
    )
}

pub(crate) fn decode_changes_token(
    token: &str,
    store_id: &str,
    object_type: Option<&str>,
) -> Result<i64, StoreError> {
    let parts = decode_token(TOKEN_CHANGES, token, 3)?;
    if parts[0] != store_id || parts[1] != object_type.unwrap_or("") {
        return Err(StoreError::InvalidContinuationToken);
    }
    parts[2]
        .parse::<i64>()
        .ok()
        .filter(|s| *s >= 0)
        .ok_or(StoreError::InvalidContinuationToken)
}

/// The continuation of a tuple read: the last key returned, bound to the store.
pub(crate) fn encode_tuples_token(store_id: &str, t: &TupleRecord) -> String {
    let (object_type, object_id) = t.object.split_once(':').unwrap_or((&t.object, ""));
    encode_token(
        TOKEN_TUPLES,
        &[store_id, object_type, object_id, &t.relation, &t.user],
    )
}

/// `[object_type, object_id, relation, user]` of a tuple read token.
pub(crate) fn decode_tuples_token(token: &str, store_id: &str) -> Result<[String; 4], StoreError> {
    let parts = decode_token(TOKEN_TUPLES, token, 5)?;
    let mut it = parts.into_iter();
    let mut next = || it.next().ok_or(StoreError::InvalidContinuationToken);
    if next()? != store_id {
        return Err(StoreError::InvalidContinuationToken);
    }
    Ok([next()?, next()?, next()?, next()?])
}

/// The continuation of a model listing: the last model id returned, bound to the store.
pub(crate) fn decode_models_token(token: &str, store_id: &str) -> Result<String, StoreError> {
    let mut parts = decode_token(TOKEN_MODELS, token, 2)?;
    let last = parts.pop().ok_or(StoreError::InvalidContinuationToken)?;
    if parts.pop().as_deref() != Some(store_id) {
        return Err(StoreError::InvalidContinuationToken);
    }
    Ok(last)
}

/// The continuation of a store listing: the last store id returned.
pub(crate) fn decode_stores_token(token: &str) -> Result<String, StoreError> {
    decode_token(TOKEN_STORES, token, 1)?
        .pop()
        .ok_or(StoreError::InvalidContinuationToken)
}

/// Trims a page fetched with one extra row and computes the next token from its last item.
pub(crate) fn finish_page<T>(
    mut items: Vec<T>,
    page_size: i64,
    token_of: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let page = usize::try_from(page_size).unwrap_or(usize::MAX);
    if items.len() > page {
        items.truncate(page);
        let next = items.last().map(token_of);
        (items, next)
    } else {
        (items, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_garbage() {
        let t = TupleRecord::new("doc:1", "viewer", "user:anne");
        let token = encode_tuples_token("S", &t);
        let parts = decode_tuples_token(&token, "S").expect("decodes");
        assert_eq!(parts, ["doc", "1", "viewer", "user:anne"].map(String::from));
        assert!(matches!(
            decode_tuples_token(&token, "OTHER"),
            Err(StoreError::InvalidContinuationToken)
        ));
        for bad in [
            "",
            "!!!",
            "bm90IGpzb24",
            &encode_token(TOKEN_STORES, &["x"]),
        ] {
            assert!(matches!(
                decode_tuples_token(bad, "S"),
                Err(StoreError::InvalidContinuationToken)
            ));
        }
        let c = encode_changes_token("S", Some("doc"), 7);
        assert_eq!(decode_changes_token(&c, "S", Some("doc")).ok(), Some(7));
        assert!(decode_changes_token(&c, "S", None).is_err());
        let negative = encode_token(TOKEN_CHANGES, &["S", "", "-1"]);
        assert!(decode_changes_token(&negative, "S", None).is_err());
    }

    #[test]
    fn tuples_are_checked() {
        let ok = TupleRecord::new("doc:1", "viewer", "user:anne");
        assert!(check_tuple(&ok).is_ok());
        for bad in [
            TupleRecord::new("doc", "viewer", "user:anne"),
            TupleRecord::new("doc:", "viewer", "user:anne"),
            TupleRecord::new(":1", "viewer", "user:anne"),
            TupleRecord::new("doc:1", "", "user:anne"),
            TupleRecord::new("doc:1", "viewer", ""),
            TupleRecord::new("doc:1", "viewer", "user:a\0"),
            TupleRecord::new("doc:1", "viewer", "u".repeat(MAX_FIELD_BYTES + 1)),
            TupleRecord {
                condition_context: Some(Map::new()),
                ..ok.clone()
            },
            ok.clone().with_condition("", None),
        ] {
            assert!(
                matches!(check_tuple(&bad), Err(TupleWriteError::InvalidInput(_))),
                "{bad:?}"
            );
        }
        let mut nul = Map::new();
        nul.insert("k".into(), Value::String("a\0b".into()));
        assert!(check_tuple(&ok.clone().with_condition("c", Some(nul))).is_err());
    }

    #[test]
    fn times_are_truncated_to_micros_in_utc() {
        let t = time::macros::datetime!(2026-01-01 12:00:00.123456789 +02:00);
        let n = normalize_time(t);
        assert_eq!(n.offset(), time::UtcOffset::UTC);
        assert_eq!(n.nanosecond(), 123_456_000);
        assert_eq!(from_unix_micros(unix_micros(n)).ok(), Some(n));
    }
}
