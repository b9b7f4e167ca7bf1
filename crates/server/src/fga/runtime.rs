//! The PDP's in-memory state: one [`TupleIndex`] per store and one [`TypeSystem`] per model.
//!
//! # Freshness
//! - A store's index is loaded lazily, on the first query, from
//!   [`RelationshipStore::load_tuples`](trustgate_store_api::RelationshipStore::load_tuples) (all tuples plus the changelog `seq` they reflect).
//! - It is kept fresh by applying [`RelationshipStore::changes_since`](trustgate_store_api::RelationshipStore::changes_since) in changelog order:
//!   - right after a write through this replica (before the write is answered), so a replica
//!     always reads its own writes;
//!   - by a background refresher (a tokio task started with the first query) that polls
//!     [`RelationshipStore::live_store_seqs`](trustgate_store_api::RelationshipStore::live_store_seqs) every [`REFRESH_INTERVAL`] and catches up every
//!     loaded index that is behind, and drops the indexes of deleted stores: this is how writes
//!     made through other replicas arrive;
//!   - synchronously, before answering, when the request asks for `HIGHER_CONSISTENCY` (the
//!     index catches up with the store's committed `seq`) or carries a consistency token newer
//!     than the index (it catches up to at least the token's `seq`).
//! - Otherwise (`MINIMIZE_LATENCY`, the default) a query reads the index as it is: at most one
//!   refresh interval behind writes made on other replicas.
//!
//! # Consistency tokens
//! Every write answer carries an opaque token (`X-Consistency-Token` header and the
//! `consistency_token` field): URL-safe base64 of `tg1:<store id>:<seq>`. A query that sends it
//! back in `X-Consistency-Token` is answered from an index at least at that `seq`. A token of
//! another store, one that does not decode, or one ahead of the store is a 400
//! `validation_error`.
//!
//! # Models
//! Type systems are cached per `(store, model id)`; models are immutable so entries never go
//! stale (the cache is bounded and cleared when full). Which model is a store's latest is cached
//! for [`LATEST_MODEL_TTL`], updated at once by model writes through this replica, and read
//! from the database for `HIGHER_CONSISTENCY` requests.
//!
//! Nothing here holds a lock across an evaluation: queries take an immutable snapshot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use trustgate_authz::engine::TypeSystem;
use trustgate_authz::index::{IndexSnapshot, TupleChange, TupleIndex};
use trustgate_authz::model::AuthorizationModel;
use trustgate_authz::tuple::TupleKey;
use trustgate_store_api::{Store, TupleOperation};

use super::error::FgaError;
use super::wire::Consistency;

/// How often the background refresher polls the database for changes of other replicas.
pub const REFRESH_INTERVAL: Duration = Duration::from_millis(200);
/// How long the id of a store's latest model is trusted without asking the database.
pub const LATEST_MODEL_TTL: Duration = Duration::from_secs(1);
/// Changelog entries fetched per round trip while catching up.
const CATCH_UP_BATCH: u32 = 1000;
/// Type systems kept in memory before the cache is cleared.
const MAX_CACHED_MODELS: usize = 1024;

/// A store's tuple index and the lock that serializes catching it up.
#[derive(Debug)]
struct StoreIndex {
    index: TupleIndex,
    catch_up: tokio::sync::Mutex<()>,
}

/// The PDP's in-memory state, shared by all requests.
pub struct FgaRuntime {
    db: Arc<dyn Store>,
    indexes: RwLock<HashMap<String, Arc<StoreIndex>>>,
    models: RwLock<HashMap<(String, String), Arc<TypeSystem>>>,
    latest: RwLock<HashMap<String, (String, Instant)>>,
    refresher_started: AtomicBool,
    /// The last model id handed out, so ids of one process are strictly increasing even
    /// within one millisecond (the latest model is the one with the highest id).
    last_model_id: std::sync::Mutex<ulid::Ulid>,
}

impl std::fmt::Debug for FgaRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let indexes = self.indexes.read().map(|m| m.len()).unwrap_or_default();
        let models = self.models.read().map(|m| m.len()).unwrap_or_default();
        f.debug_struct("FgaRuntime")
            .field("loaded_stores", &indexes)
            .field("cached_models", &models)
            .finish_non_exhaustive()
    }
}

/// What a query reads: an immutable snapshot and the model to evaluate with.
#[derive(Debug, Clone)]
pub struct QueryView {
    /// The tuples.
    pub snapshot: Arc<IndexSnapshot>,
    /// The model.
    pub ts: Arc<TypeSystem>,
}

/// The consistency token of `seq` in `store_id`.
pub fn encode_token(store_id: &str, seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("tg1:{store_id}:{seq}"))
}

/// The `seq` of a consistency token issued for `store_id`.
pub fn decode_token(store_id: &str, token: &str) -> Result<u64, FgaError> {
    let bad = || FgaError::validation("invalid consistency token");
    if token.len() > 256 {
        return Err(bad());
    }
    let bytes = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| bad())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
    let rest = text.strip_prefix("tg1:").ok_or_else(bad)?;
    let (store, seq) = rest.rsplit_once(':').ok_or_else(bad)?;
    if store != store_id {
        return Err(FgaError::validation(
            "the consistency token was issued for another store",
        ));
    }
    seq.parse::<u64>().map_err(|_| bad())
}

impl FgaRuntime {
    /// A runtime over `db`; nothing is loaded until the first query.
    pub fn new(db: Arc<dyn Store>) -> Self {
        Self {
            db,
            indexes: RwLock::new(HashMap::new()),
            models: RwLock::new(HashMap::new()),
            latest: RwLock::new(HashMap::new()),
            refresher_started: AtomicBool::new(false),
            last_model_id: std::sync::Mutex::new(ulid::Ulid::nil()),
        }
    }

    /// The database.
    pub fn db(&self) -> &Arc<dyn Store> {
        &self.db
    }

    /// The index of `store_id`, loading it on first use (404 if the store does not exist).
    async fn store_index(self: &Arc<Self>, store_id: &str) -> Result<Arc<StoreIndex>, FgaError> {
        self.ensure_refresher();
        if let Some(found) = self.loaded(store_id) {
            return Ok(found);
        }
        let snapshot = self.db.load_tuples(store_id).await?;
        let keys: Vec<TupleKey> = snapshot.tuples;
        let seq = u64::try_from(snapshot.seq).unwrap_or(0);
        let index = TupleIndex::with_tuples(seq, keys.iter()).map_err(FgaError::internal)?;
        let fresh = Arc::new(StoreIndex {
            index,
            catch_up: tokio::sync::Mutex::new(()),
        });
        let mut map = self.indexes.write().unwrap_or_else(|e| e.into_inner());
        // A concurrent loader may have won; keep its index (it may be fresher).
        Ok(map
            .entry(store_id.to_owned())
            .or_insert_with(|| fresh)
            .clone())
    }

    fn loaded(&self, store_id: &str) -> Option<Arc<StoreIndex>> {
        self.indexes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(store_id)
            .cloned()
    }

    /// The snapshot a query of `store_id` reads, fresh as `consistency` and `token` demand.
    pub async fn snapshot(
        self: &Arc<Self>,
        store_id: &str,
        consistency: Consistency,
        token: Option<&str>,
    ) -> Result<Arc<IndexSnapshot>, FgaError> {
        let wanted = token.map(|t| decode_token(store_id, t)).transpose()?;
        let si = self.store_index(store_id).await?;
        let applied = si.index.applied_seq();
        let behind = wanted.is_some_and(|w| w > applied);
        if consistency == Consistency::HigherConsistency || behind {
            let committed = u64::try_from(self.db.store_seq(store_id).await?).unwrap_or(0);
            if wanted.is_some_and(|w| w > committed) {
                return Err(FgaError::validation(
                    "the consistency token is ahead of the store; it was not issued by this store",
                ));
            }
            self.catch_up(store_id, &si, committed).await?;
        }
        Ok(si.index.snapshot())
    }

    /// Applies changelog entries until the index of `store_id` is at `target` or later.
    async fn catch_up(&self, store_id: &str, si: &StoreIndex, target: u64) -> Result<(), FgaError> {
        if si.index.applied_seq() >= target {
            return Ok(());
        }
        let _serial = si.catch_up.lock().await;
        while si.index.applied_seq() < target {
            let after = i64::try_from(si.index.applied_seq()).unwrap_or(i64::MAX);
            let changes = self
                .db
                .changes_since(store_id, after, CATCH_UP_BATCH)
                .await?;
            if changes.is_empty() {
                return Err(FgaError::internal(format!(
                    "changelog of store {store_id} ends at {after}, expected {target}"
                )));
            }
            for change in changes {
                let seq = u64::try_from(change.seq).unwrap_or(0);
                let tuple = change.tuple;
                let change = match change.operation {
                    TupleOperation::Write => TupleChange::Write(tuple),
                    TupleOperation::Delete => TupleChange::Delete(tuple),
                };
                si.index
                    .apply(seq, std::slice::from_ref(&change))
                    .map_err(FgaError::internal)?;
            }
        }
        Ok(())
    }

    /// Brings the index of `store_id` up to `seq` after a write through this replica, so the
    /// replica reads its own writes. The index is loaded if it was not: a load racing with the
    /// write might otherwise publish a snapshot from before it.
    pub async fn after_write(self: &Arc<Self>, store_id: &str, seq: i64) -> Result<(), FgaError> {
        let si = self.store_index(store_id).await?;
        let target = u64::try_from(seq).unwrap_or(0);
        self.catch_up(store_id, &si, target).await
    }

    /// Forgets everything about a deleted store.
    pub fn forget_store(&self, store_id: &str) {
        self.indexes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(store_id);
        self.latest
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(store_id);
        self.models
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(s, _), _| s != store_id);
    }

    /// A new model id, greater than every id this process handed out and than `floor`.
    pub fn next_model_id(&self, now: time::OffsetDateTime, floor: Option<&str>) -> String {
        let candidate = trustgate_core::id::new_ulid(now)
            .parse::<ulid::Ulid>()
            .unwrap_or_else(|_| ulid::Ulid::nil());
        let floor = floor.and_then(|f| f.parse::<ulid::Ulid>().ok());
        let mut last = self.last_model_id.lock().unwrap_or_else(|e| e.into_inner());
        let mut minimum = *last;
        if let Some(f) = floor
            && f > minimum
        {
            minimum = f;
        }
        let id = if candidate > minimum {
            candidate
        } else {
            minimum.increment().unwrap_or(candidate)
        };
        *last = id;
        id.to_string()
    }

    /// Records that `model_id` is now the latest model of `store_id`.
    pub fn model_written(&self, store_id: &str, model_id: &str) {
        self.latest
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(store_id.to_owned(), (model_id.to_owned(), Instant::now()));
    }

    /// Caches the type system of a model just written.
    pub fn cache_model(&self, store_id: &str, model_id: &str, ts: Arc<TypeSystem>) {
        let mut models = self.models.write().unwrap_or_else(|e| e.into_inner());
        if models.len() >= MAX_CACHED_MODELS {
            models.clear();
        }
        models.insert((store_id.to_owned(), model_id.to_owned()), ts);
    }

    /// The type system of `model_id` (the store's latest model when empty).
    pub async fn type_system(
        &self,
        store_id: &str,
        model_id: &str,
        consistency: Consistency,
    ) -> Result<Arc<TypeSystem>, FgaError> {
        let model_id = if model_id.is_empty() {
            self.latest_model_id(store_id, consistency).await?
        } else {
            if !trustgate_core::id::is_ulid(model_id) {
                return Err(FgaError::validation(format!(
                    "invalid authorization_model_id '{model_id}': value does not match regex pattern \"^[ABCDEFGHJKMNPQRSTVWXYZ0-9]{{26}}$\""
                )));
            }
            model_id.to_owned()
        };
        let key = (store_id.to_owned(), model_id);
        if let Some(ts) = self
            .models
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(ts.clone());
        }
        let stored = self
            .db
            .get_model(store_id, &key.1)
            .await?
            .ok_or_else(|| FgaError::model_not_found(&key.1))?;
        let mut model: AuthorizationModel =
            serde_json::from_value(stored.model_json).map_err(FgaError::internal)?;
        model.id = stored.id;
        let ts = Arc::new(TypeSystem::new(model).map_err(FgaError::internal)?);
        self.cache_model(&key.0, &key.1, ts.clone());
        Ok(ts)
    }

    async fn latest_model_id(
        &self,
        store_id: &str,
        consistency: Consistency,
    ) -> Result<String, FgaError> {
        if consistency != Consistency::HigherConsistency
            && let Some((id, at)) = self
                .latest
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(store_id)
            && at.elapsed() < LATEST_MODEL_TTL
        {
            return Ok(id.clone());
        }
        let latest = self
            .db
            .latest_model(store_id)
            .await?
            .ok_or_else(|| FgaError::latest_model_not_found(store_id))?;
        self.model_written(store_id, &latest.id);
        Ok(latest.id)
    }

    /// The snapshot and model a query reads.
    pub async fn view(
        self: &Arc<Self>,
        store_id: &str,
        model_id: &str,
        consistency: Consistency,
        token: Option<&str>,
    ) -> Result<QueryView, FgaError> {
        let snapshot = self.snapshot(store_id, consistency, token).await?;
        let ts = self.type_system(store_id, model_id, consistency).await?;
        Ok(QueryView { snapshot, ts })
    }

    fn ensure_refresher(self: &Arc<Self>) {
        if self.refresher_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<FgaRuntime> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(runtime) = weak.upgrade() else {
                    break;
                };
                if let Err(e) = runtime.refresh_all().await {
                    tracing::warn!(error = %e, "tuple index refresh failed; retrying");
                }
            }
        });
    }

    /// One round of the background refresher.
    async fn refresh_all(&self) -> Result<(), FgaError> {
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
        let live: HashMap<String, i64> = self.db.live_store_seqs().await?.into_iter().collect();
        for (store_id, si) in loaded {
            match live.get(&store_id) {
                None => self.forget_store(&store_id),
                Some(seq) => {
                    let target = u64::try_from(*seq).unwrap_or(0);
                    match self.catch_up(&store_id, &si, target).await {
                        Ok(()) => {}
                        Err(e) if e.code() == "store_id_not_found" => self.forget_store(&store_id),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_bound_to_the_store() {
        let t = encode_token("S1", 42);
        assert_eq!(decode_token("S1", &t).ok(), Some(42));
        assert!(decode_token("S2", &t).is_err());
        for bad in ["", "!!", "dGcxOlMxOng", &"A".repeat(300)] {
            assert!(decode_token("S1", bad).is_err(), "{bad}");
        }
    }
}
