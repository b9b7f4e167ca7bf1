//! Tuple writes, reads and the changelog.
//!
//! A write is validated completely before the database is touched: the tuple count against
//! [`crate::Limits::max_tuples_per_write`], every written tuple against the model (types,
//! relations, type restrictions, conditions and their context), every deleted tuple's form
//! (deletes need not fit the current model, as in OpenFGA: tuples written under an older model
//! stay deletable). The database then applies deletes and writes all or nothing with OpenFGA's
//! duplicate and missing rules, and this service's index catches up before the write returns.
//!
//! An import ([`Pdp::import`]) loads many tuples (up to [`crate::Limits::max_tuples_per_import`])
//! fast. It validates all of them first, on the blocking pool (CPU work, linear in the
//! tuples), so an invalid tuple anywhere writes nothing. It then writes them in batches of
//! [`IMPORT_BATCH`], one transaction each
//! ([`RelationshipStore::import_tuples`](trustgate_store_api::RelationshipStore::import_tuples)),
//! so other writers of the store wait for one batch at most, never for the whole load; and the
//! index catches up once at the end (a large import reloads it, see [`crate::freshness`]). An
//! import is therefore atomic per batch, not as a whole: a failure after the first batch (the
//! database gone, a tuple written meanwhile with another condition) leaves the earlier batches
//! written. Tuples that exist identically are skipped and counted, so the same import can
//! simply be run again.

use std::collections::HashSet;

use time::OffsetDateTime;
use trustgate_authz::engine::{
    TypeSystem, validate_object, validate_relation_name, validate_tuple_for_write, validate_user,
};
use trustgate_store_api::relationships::MAX_CONTEXT_BYTES;
use trustgate_store_api::{
    MAX_IMPORT_BATCH, OnDuplicate, OnMissing, StoredTuple, TupleChangeRecord, TupleFilter,
    TupleKey, WriteOptions,
};

use crate::consistency::{Consistency, ConsistencyToken};
use crate::{Page, Paged, Pdp, PdpError};

/// One all-or-nothing tuple write.
#[derive(Debug, Clone, Copy, Default)]
pub struct TupleWrite<'a> {
    /// The model written tuples are validated against; the store's latest when `None`.
    pub model_id: Option<&'a str>,
    /// Tuples to write (with their conditions).
    pub writes: &'a [TupleKey],
    /// Tuples to delete (their identity; a condition is ignored).
    pub deletes: &'a [TupleKey],
    /// What to do with a written tuple that exists already.
    pub on_duplicate: OnDuplicate,
    /// What to do with a deleted tuple that does not exist.
    pub on_missing: OnMissing,
}

/// A successful write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The store's changelog position after the write.
    pub seq: i64,
    /// The token that makes a query (on any replica) see this write.
    pub token: ConsistencyToken,
}

/// Tuples per transaction of an import: other writers of the store wait for one batch at most.
pub const IMPORT_BATCH: usize = MAX_IMPORT_BATCH;

/// A successful import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// Tuples written.
    pub written: u64,
    /// Tuples that existed identically and were skipped.
    pub existing: u64,
    /// The store's changelog position after the last batch.
    pub seq: i64,
    /// The token that makes a query (on any replica) see every imported tuple (and whatever
    /// other writers committed between the batches).
    pub token: ConsistencyToken,
}

/// The filter of [`Pdp::read`]: empty fields are unspecified. OpenFGA's rules: the object's
/// type is required, and without an object id the user is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadFilter<'a> {
    /// `type:id`, or `type:` / `type` for every object of a type.
    pub object: &'a str,
    /// The relation.
    pub relation: &'a str,
    /// The user, matched exactly.
    pub user: &'a str,
}

/// A page of changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// The changes, in changelog order.
    pub changes: Vec<TupleChangeRecord>,
    /// Always set: reading with it returns only later changes.
    pub continuation_token: String,
}

/// A deleted tuple must be well formed; it need not fit the current model.
fn check_delete(t: &TupleKey) -> Result<(), PdpError> {
    let invalid = |reason: String| {
        PdpError::InvalidTuple(format!(
            "Invalid tuple '{}#{}@{}'. Reason: {reason}",
            t.object, t.relation, t.user
        ))
    };
    validate_user(&t.user).map_err(|e| invalid(e.to_string()))?;
    validate_object(&t.object).map_err(|e| invalid(e.to_string()))?;
    if !validate_relation_name(&t.relation) {
        return Err(invalid("the 'relation' field is malformed".to_owned()));
    }
    Ok(())
}

/// Validates every tuple of an import as a write would, plus what the database would refuse
/// only later (a context too large, the same tuple twice), so that no batch fails on its input.
fn check_import(ts: &TypeSystem, tuples: &[TupleKey]) -> Result<(), PdpError> {
    let mut seen = HashSet::with_capacity(tuples.len());
    for t in tuples {
        validate_tuple_for_write(ts, t)?;
        if let Some(context) = t.condition_context() {
            let size = serde_json::to_string(context)
                .map_err(PdpError::internal)?
                .len();
            if size > MAX_CONTEXT_BYTES {
                return Err(PdpError::InvalidTuple(format!(
                    "Invalid tuple '{}#{}@{}'. Reason: the condition context is {size} bytes, \
                     at most {MAX_CONTEXT_BYTES} are accepted",
                    t.object, t.relation, t.user
                )));
            }
        }
        if !seen.insert((t.object.as_str(), t.relation.as_str(), t.user.as_str())) {
            return Err(PdpError::DuplicateTuplesInRequest(format!(
                "duplicate tuple in import: user: '{}', relation: '{}', object: '{}'",
                t.user, t.relation, t.object
            )));
        }
    }
    Ok(())
}

/// The store filter of a read, with OpenFGA's rules.
fn read_filter(filter: Option<ReadFilter<'_>>) -> Result<TupleFilter, PdpError> {
    let Some(key) =
        filter.filter(|k| !(k.object.is_empty() && k.relation.is_empty() && k.user.is_empty()))
    else {
        return Ok(TupleFilter::default());
    };
    let (object_type, object_id) = key.object.split_once(':').unwrap_or((key.object, ""));
    if object_type.is_empty() || (object_id.is_empty() && key.user.is_empty()) {
        return Err(PdpError::Validation(
            "the 'tuple_key' field was provided but the object type field is required and both the object id and user fields must be provided".to_owned(),
        ));
    }
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Ok(TupleFilter {
        object_type: some(object_type),
        object_id: some(object_id),
        relation: some(key.relation),
        user: some(key.user),
    })
}

impl Pdp {
    /// Deletes and writes tuples, all or nothing. Nothing is written when any tuple fails
    /// validation ([`PdpError::InvalidTuple`], [`PdpError::TypeNotFound`], ...), a tuple appears
    /// twice ([`PdpError::DuplicateTuplesInRequest`]), a written tuple exists or a deleted one
    /// does not under the `Error` options ([`PdpError::WriteFailedDueToInvalidInput`]), or there
    /// are too many ([`PdpError::ExceededEntityLimit`]) or none ([`PdpError::InvalidWriteInput`]).
    /// When it returns, queries through this service see the write.
    pub async fn write(&self, store_id: &str, write: &TupleWrite<'_>) -> Result<Written, PdpError> {
        self.open(store_id)?;
        let inner = &self.inner;
        let total = write.writes.len() + write.deletes.len();
        let limit = inner.limits.max_tuples_per_write;
        if total > limit {
            return Err(PdpError::exceeded("write operations", limit));
        }
        if total == 0 {
            return Err(PdpError::InvalidWriteInput);
        }
        if inner.store.get_fga_store(store_id).await?.is_none() {
            return Err(PdpError::StoreNotFound);
        }
        if !write.writes.is_empty() {
            let ts = inner
                .type_system(store_id, write.model_id, Consistency::HigherConsistency)
                .await?;
            for t in write.writes {
                validate_tuple_for_write(&ts, t)?;
            }
        }
        for t in write.deletes {
            check_delete(t)?;
        }
        let options = WriteOptions {
            on_duplicate: write.on_duplicate,
            on_missing: write.on_missing,
        };
        let outcome = inner
            .store
            .write_tuples(
                store_id,
                write.writes,
                write.deletes,
                options,
                inner.clock.now(),
            )
            .await?;
        inner.after_write(store_id, outcome.seq).await?;
        Ok(Written {
            seq: outcome.seq,
            token: ConsistencyToken::issue(store_id, outcome.seq),
        })
    }

    /// Imports `tuples` (see the module docs): all are validated against the model (the store's
    /// latest when `model_id` is `None`) before anything is written, with a write's errors plus
    /// [`PdpError::ExceededEntityLimit`] over [`crate::Limits::max_tuples_per_import`]; then they
    /// are written [`IMPORT_BATCH`] at a time, skipping identical existing tuples. When it
    /// returns, queries through this service see the import; the token makes any replica see it.
    pub async fn import(
        &self,
        store_id: &str,
        model_id: Option<&str>,
        tuples: Vec<TupleKey>,
    ) -> Result<Imported, PdpError> {
        self.open(store_id)?;
        let inner = &self.inner;
        let limit = inner.limits.max_tuples_per_import;
        if tuples.len() > limit {
            return Err(PdpError::exceeded("imported tuples", limit));
        }
        if tuples.is_empty() {
            return Err(PdpError::InvalidWriteInput);
        }
        if inner.store.get_fga_store(store_id).await?.is_none() {
            return Err(PdpError::StoreNotFound);
        }
        let ts = inner
            .type_system(store_id, model_id, Consistency::HigherConsistency)
            .await?;
        let (tuples, checked) = tokio::task::spawn_blocking(move || {
            let checked = check_import(&ts, &tuples);
            (tuples, checked)
        })
        .await
        .map_err(PdpError::internal)?;
        checked?;
        let (mut written, mut existing, mut seq) = (0, 0, 0);
        for batch in tuples.chunks(IMPORT_BATCH) {
            match inner
                .store
                .import_tuples(store_id, batch, inner.clock.now())
                .await
            {
                Ok(outcome) => {
                    written += outcome.written;
                    existing += outcome.existing;
                    seq = outcome.seq;
                }
                Err(e) => {
                    // The batches before stay written: this replica shows them at once too
                    // (best effort; the error that stopped the import is the one to report).
                    if written > 0 {
                        let _ = inner.after_write(store_id, seq).await;
                    }
                    return Err(e.into());
                }
            }
        }
        inner.after_write(store_id, seq).await?;
        Ok(Imported {
            written,
            existing,
            seq,
            token: ConsistencyToken::issue(store_id, seq),
        })
    }

    /// The stored tuples `filter` selects (every tuple when `None`), ordered by object type,
    /// object id, relation and user, a page at a time. Reads the database, so always current.
    pub async fn read(
        &self,
        store_id: &str,
        filter: Option<ReadFilter<'_>>,
        page: Page<'_>,
    ) -> Result<Paged<StoredTuple>, PdpError> {
        self.open(store_id)?;
        let filter = read_filter(filter)?;
        let size = page.size()?;
        let (items, next) = self
            .inner
            .store
            .read_tuples(store_id, &filter, size, page.continuation())
            .await?;
        Ok(Paged {
            items,
            continuation_token: next,
        })
    }

    /// The store's changelog, optionally of one object type, from `start_time` (ignored with a
    /// continuation token), a page at a time.
    pub async fn changes(
        &self,
        store_id: &str,
        object_type: Option<&str>,
        start_time: Option<OffsetDateTime>,
        page: Page<'_>,
    ) -> Result<Changes, PdpError> {
        self.open(store_id)?;
        let size = page.size()?;
        let object_type = object_type.filter(|t| !t.is_empty());
        let (changes, continuation_token) = self
            .inner
            .store
            .read_changes(store_id, object_type, start_time, size, page.continuation())
            .await?;
        Ok(Changes {
            changes,
            continuation_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_filters_follow_openfga() {
        assert_eq!(read_filter(None).ok(), Some(TupleFilter::default()));
        let all = ReadFilter::default();
        assert_eq!(read_filter(Some(all)).ok(), Some(TupleFilter::default()));
        let by_type_and_user = ReadFilter {
            object: "document:",
            user: "user:anne",
            ..ReadFilter::default()
        };
        let f = read_filter(Some(by_type_and_user)).ok();
        assert_eq!(
            f.map(|f| (f.object_type, f.object_id, f.user)),
            Some((Some("document".into()), None, Some("user:anne".into())))
        );
        for bad in [
            ReadFilter {
                relation: "viewer",
                ..ReadFilter::default()
            },
            ReadFilter {
                object: "document:",
                ..ReadFilter::default()
            },
        ] {
            assert!(matches!(
                read_filter(Some(bad)),
                Err(PdpError::Validation(_))
            ));
        }
    }

    #[test]
    fn deletes_must_be_well_formed() {
        assert!(check_delete(&TupleKey::new("document:1", "viewer", "user:anne")).is_ok());
        for bad in [
            TupleKey::new("document", "viewer", "user:anne"),
            TupleKey::new("document:1", "", "user:anne"),
            TupleKey::new("document:1", "viewer", "anne"),
        ] {
            assert!(
                matches!(check_delete(&bad), Err(PdpError::InvalidTuple(_))),
                "{bad:?}"
            );
        }
    }
}
