//! The tuple indexes and how they are kept fresh.
//!
//! - A store's [`TupleIndex`] is loaded lazily, on first use, from
//!   [`RelationshipStore::load_tuples`](trustgate_store_api::RelationshipStore::load_tuples) (all tuples plus the changelog `seq` they reflect).
//! - It is kept fresh by applying [`RelationshipStore::changes_since`](trustgate_store_api::RelationshipStore::changes_since) in changelog order:
//!   - right after a write through this service, before the write returns, so a replica always
//!     reads its own writes (`after_write`);
//!   - by a background refresher (a tokio task started with the first load) that polls
//!     [`RelationshipStore::live_store_seqs`](trustgate_store_api::RelationshipStore::live_store_seqs) every [`REFRESH_INTERVAL`], catches up every
//!     loaded index that is behind, and drops the indexes of deleted stores: this is how writes
//!     made through other replicas arrive;
//!   - synchronously, before answering, when a query asks for
//!     [`Consistency::HigherConsistency`] (catch up with the store's committed `seq`) or carries
//!     a consistency token newer than the index (catch up to at least the token's `seq`).
//! - Otherwise ([`Consistency::MinimizeLatency`]) a query reads the index as it is.
//!
//! - Catching up applies a page of the changelog (`CATCH_UP_BATCH`, 10,000 changes) with one
//!   copy of the snapshot. An index more than [`RELOAD_BEHIND`] changes behind (after a bulk import,
//!   here or through another replica), when the changes are more than half its size, is
//!   reloaded from `load_tuples` instead, the new snapshot built on the blocking pool: a copy
//!   per page would be quadratic in a million changes, and a reload per chunk of a long import
//!   would read the whole store each time.
//!
//! Queries read immutable snapshots: nothing holds a lock across an evaluation. Catching up is
//! serialized per store by an async mutex; readers never wait for it.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use trustgate_authz::index::{TupleChange, TupleIndex};
use trustgate_store_api::TupleOperation;

use crate::consistency::{self, Consistency, Freshness};
use crate::watch::RawRevision;
use crate::{Inner, PdpError, validate_store_id};

/// How often the background refresher polls the database for changes of other replicas.
pub const REFRESH_INTERVAL: Duration = Duration::from_millis(200);
/// Changelog entries fetched per round trip while catching up (and applied with one snapshot
/// copy).
const CATCH_UP_BATCH: u32 = 10_000;
/// How far behind an index may be for catching up through the changelog; further behind, and
/// by more than half its size, it is reloaded.
pub const RELOAD_BEHIND: u64 = 20_000;

/// A store's tuple index and the lock that serializes catching it up.
#[derive(Debug)]
pub(crate) struct StoreIndex {
    pub(crate) index: TupleIndex,
    catch_up: tokio::sync::Mutex<()>,
    /// A compaction of the index is running on the blocking pool.
    compacting: std::sync::atomic::AtomicBool,
    /// What the index reflects, for watchers ([`crate::watch`]).
    pub(crate) revision: tokio::sync::watch::Sender<RawRevision>,
}

/// The loaded indexes, by store id.
pub(crate) type Indexes = std::sync::RwLock<HashMap<String, Arc<StoreIndex>>>;

impl Inner {
    /// The index of `store_id` if it is loaded.
    pub(crate) fn loaded(&self, store_id: &str) -> Option<Arc<StoreIndex>> {
        self.indexes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(store_id)
            .cloned()
    }

    /// The index of `store_id`, loading it on first use ([`PdpError::StoreNotFound`] if the
    /// store does not exist).
    pub(crate) async fn store_index(
        self: &Arc<Self>,
        store_id: &str,
    ) -> Result<Arc<StoreIndex>, PdpError> {
        if let Some(found) = self.loaded(store_id) {
            return Ok(found);
        }
        validate_store_id(store_id)?;
        self.ensure_refresher();
        let snapshot = self.store.load_tuples(store_id).await?;
        let seq = u64::try_from(snapshot.seq).unwrap_or(0);
        let index =
            TupleIndex::with_tuples(seq, snapshot.tuples.iter()).map_err(PdpError::internal)?;
        let fresh = Arc::new(StoreIndex {
            index,
            catch_up: tokio::sync::Mutex::new(()),
            compacting: std::sync::atomic::AtomicBool::new(false),
            revision: tokio::sync::watch::Sender::new(RawRevision {
                seq,
                latest_model_id: None,
            }),
        });
        let mut map = self.indexes.write().unwrap_or_else(|e| e.into_inner());
        // A concurrent loader may have won; keep its index (it may be fresher).
        Ok(map
            .entry(store_id.to_owned())
            .or_insert_with(|| fresh)
            .clone())
    }

    /// The index a query of `store_id` reads, fresh as `freshness` demands.
    pub(crate) async fn fresh_index(
        self: &Arc<Self>,
        store_id: &str,
        freshness: Freshness<'_>,
    ) -> Result<Arc<StoreIndex>, PdpError> {
        let wanted = freshness
            .token
            .map(|t| consistency::decode(store_id, t))
            .transpose()?;
        let si = self.store_index(store_id).await?;
        let behind = wanted.is_some_and(|w| w > si.index.applied_seq());
        if freshness.consistency == Consistency::HigherConsistency || behind {
            let committed = match self.store.store_seq(store_id).await {
                Ok(seq) => u64::try_from(seq).unwrap_or(0),
                Err(e) => {
                    let e = PdpError::from(e);
                    if matches!(e, PdpError::StoreNotFound) {
                        self.forget_store(store_id);
                    }
                    return Err(e);
                }
            };
            if wanted.is_some_and(|w| w > committed) {
                return Err(PdpError::Validation(
                    "the consistency token is ahead of the store; it was not issued by this store"
                        .to_owned(),
                ));
            }
            self.catch_up(store_id, &si, committed).await?;
        }
        Ok(si)
    }

    /// Applies changelog entries until the index of `store_id` is at `target` or later.
    async fn catch_up(
        &self,
        store_id: &str,
        si: &Arc<StoreIndex>,
        target: u64,
    ) -> Result<(), PdpError> {
        if si.index.applied_seq() >= target {
            return Ok(());
        }
        let _serial = si.catch_up.lock().await;
        let behind = target.saturating_sub(si.index.applied_seq());
        // Reloading reads the whole store: worth it only when the changes are a large part of
        // it (an import into an empty or small store), not for each chunk of a long import.
        let size = u64::try_from(si.index.len()).unwrap_or(u64::MAX);
        if behind > RELOAD_BEHIND && behind.saturating_mul(2) > size {
            // Committed up to `target`, so the load reflects at least that.
            let snapshot = self.store.load_tuples(store_id).await?;
            let seq = u64::try_from(snapshot.seq).unwrap_or(0);
            let loaded = Arc::clone(si);
            tokio::task::spawn_blocking(move || loaded.index.replace(seq, snapshot.tuples.iter()))
                .await
                .map_err(PdpError::internal)?
                .map_err(PdpError::internal)?;
            si.publish_seq();
        }
        while si.index.applied_seq() < target {
            let after = i64::try_from(si.index.applied_seq()).unwrap_or(i64::MAX);
            let changes = self
                .store
                .changes_since(store_id, after, CATCH_UP_BATCH)
                .await?;
            if changes.is_empty() {
                return Err(PdpError::internal(format!(
                    "changelog of store {store_id} ends at {after}, expected {target}"
                )));
            }
            let changes: Vec<(u64, TupleChange)> = changes
                .into_iter()
                .map(|change| {
                    let seq = u64::try_from(change.seq).unwrap_or(0);
                    let tuple = change.tuple;
                    let change = match change.operation {
                        TupleOperation::Write => TupleChange::Write(tuple),
                        TupleOperation::Delete => TupleChange::Delete(tuple),
                    };
                    (seq, change)
                })
                .collect();
            // One snapshot copy per page of the changelog, not per change.
            si.index.apply_each(&changes).map_err(PdpError::internal)?;
            si.publish_seq();
        }
        compact_in_background(si);
        Ok(())
    }

    /// Brings the index of `store_id` up to `seq` after a write through this service, so it
    /// reads its own writes. The index is loaded if it was not: a load racing with the write
    /// might otherwise publish a snapshot from before it.
    pub(crate) async fn after_write(
        self: &Arc<Self>,
        store_id: &str,
        seq: i64,
    ) -> Result<(), PdpError> {
        let si = self.store_index(store_id).await?;
        let target = u64::try_from(seq).unwrap_or(0);
        self.catch_up(store_id, &si, target).await
    }

    /// Forgets everything about a deleted store: its index and its models.
    pub(crate) fn forget_store(&self, store_id: &str) {
        self.indexes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(store_id);
        self.models.forget_store(store_id);
        // Store deletions are rare: the whole attribute cache goes rather than a scan.
        self.attributes.invalidate_all();
    }

    /// Starts the background refresher unless it runs already.
    fn ensure_refresher(self: &Arc<Self>) {
        if self.refresher_started.load(Ordering::Acquire)
            || self.refresher_started.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else {
                    break;
                };
                if let Err(e) = inner.refresh_all().await {
                    let cause = std::error::Error::source(&e).map(ToString::to_string);
                    tracing::warn!(error = %e, cause, "tuple index refresh failed; retrying");
                }
            }
        });
    }

    /// One round of the background refresher.
    async fn refresh_all(&self) -> Result<(), PdpError> {
        let loaded: Vec<(String, Arc<StoreIndex>)> = self
            .indexes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if loaded.is_empty() {
            return Ok(());
        }
        let live: HashMap<String, i64> = self.store.live_store_seqs().await?.into_iter().collect();
        for (store_id, si) in loaded {
            match live.get(&store_id) {
                None => self.forget_store(&store_id),
                Some(seq) => {
                    let target = u64::try_from(*seq).unwrap_or(0);
                    match self.catch_up(&store_id, &si, target).await {
                        Ok(()) => {}
                        Err(PdpError::StoreNotFound) => self.forget_store(&store_id),
                        Err(e) => return Err(e),
                    }
                    if si.is_watched() {
                        self.refresh_latest_model(&store_id, &si).await?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Compacts the index's symbol table on the blocking pool when deletes have left it mostly dead
/// (one pass over the store's tuples: never on an async worker, never twice at once, and
/// nobody waits for it: readers keep the current snapshot until the compacted one is published).
fn compact_in_background(si: &Arc<StoreIndex>) {
    use std::sync::atomic::Ordering;
    if !si.index.needs_compaction() || si.compacting.swap(true, Ordering::AcqRel) {
        return;
    }
    let si = Arc::clone(si);
    tokio::task::spawn_blocking(move || {
        si.index.compact();
        si.compacting.store(false, Ordering::Release);
    });
}
