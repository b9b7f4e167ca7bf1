//! Authorization models: writing (with validation), reading, listing, and the model cache.
//!
//! Type systems are cached per `(store, model id)`; models are immutable, so entries never go
//! stale (the cache is bounded and cleared when full). Which model is a store's latest is
//! cached for [`LATEST_MODEL_TTL`], updated at once by model writes through this service, and
//! read from the database for [`Consistency::HigherConsistency`] requests and for writes.
//! Lookups borrow the ids: a cached model costs no allocation.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use trustgate_authz::engine::TypeSystem;
use trustgate_authz::model::AuthorizationModel;
use trustgate_authz::validate::validate_json_model;
use trustgate_store_api::StoredModel;

use crate::consistency::Consistency;
use crate::{Inner, Page, Paged, Pdp, PdpError};

/// How long the id of a store's latest model is trusted without asking the database.
pub const LATEST_MODEL_TTL: Duration = Duration::from_secs(1);
/// The most type definitions one model may have (OpenFGA's default).
pub const MAX_TYPES_PER_MODEL: usize = 100;
/// The largest model accepted, in bytes of its JSON form: OpenFGA's default
/// (`OPENFGA_MAX_AUTHORIZATION_MODEL_SIZE_IN_BYTES`, measured there on the protobuf form). It is
/// the size budget of every analysis of a model (validation, type system, reachability), which
/// are all polynomial: at this size they take milliseconds.
pub const MAX_MODEL_SIZE_BYTES: usize = 256 * 1024;
/// Type systems kept in memory before the cache is cleared.
const MAX_CACHED_MODELS: usize = 1024;

/// Type systems by store and model id, and each store's latest model.
#[derive(Debug, Default)]
pub(crate) struct ModelCache {
    by_id: RwLock<ById>,
    latest: RwLock<HashMap<String, Latest>>,
    /// The last model id handed out, so ids of one process are strictly increasing even
    /// within one millisecond (the latest model is the one with the highest id).
    model_ids: trustgate_core::id::UlidSequence,
}

#[derive(Debug, Default)]
struct ById {
    stores: HashMap<String, HashMap<String, Arc<TypeSystem>>>,
    count: usize,
}

#[derive(Debug)]
struct Latest {
    ts: Arc<TypeSystem>,
    at: Instant,
}

impl ModelCache {
    fn get(&self, store_id: &str, model_id: &str) -> Option<Arc<TypeSystem>> {
        self.by_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .stores
            .get(store_id)
            .and_then(|m| m.get(model_id))
            .cloned()
    }

    fn insert(&self, store_id: &str, ts: Arc<TypeSystem>) {
        let mut cache = self.by_id.write().unwrap_or_else(|e| e.into_inner());
        if cache.count >= MAX_CACHED_MODELS {
            cache.stores.clear();
            cache.count = 0;
        }
        let models = cache.stores.entry(store_id.to_owned()).or_default();
        if models.insert(ts.model().id.clone(), ts.clone()).is_none() {
            cache.count += 1;
        }
    }

    /// The latest model of `store_id` if it was learnt less than [`LATEST_MODEL_TTL`] ago.
    fn fresh_latest(&self, store_id: &str) -> Option<Arc<TypeSystem>> {
        self.latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(store_id)
            .filter(|l| l.at.elapsed() < LATEST_MODEL_TTL)
            .map(|l| l.ts.clone())
    }

    fn set_latest(&self, store_id: &str, ts: Arc<TypeSystem>) {
        let latest = Latest {
            ts,
            at: Instant::now(),
        };
        let mut map = self.latest.write().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(store_id) {
            Some(entry) => *entry = latest,
            None => {
                map.insert(store_id.to_owned(), latest);
            }
        }
    }

    pub(crate) fn forget_store(&self, store_id: &str) {
        self.latest
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(store_id);
        let mut cache = self.by_id.write().unwrap_or_else(|e| e.into_inner());
        if let Some(models) = cache.stores.remove(store_id) {
            cache.count = cache.count.saturating_sub(models.len());
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.read().unwrap_or_else(|e| e.into_inner()).count
    }

    /// A new model id, greater than every id this process handed out and than `floor`.
    fn next_model_id(&self, now: OffsetDateTime, floor: Option<&str>) -> String {
        self.model_ids.next(now, floor)
    }
}

/// Checks a model id argument (a ULID).
fn validate_model_id(model_id: &str) -> Result<(), PdpError> {
    if trustgate_core::id::is_ulid(model_id) {
        Ok(())
    } else {
        Err(PdpError::Validation(format!(
            "invalid authorization_model_id '{}': value does not match regex pattern \"^[ABCDEFGHJKMNPQRSTVWXYZ0-9]{{26}}$\"",
            crate::shorten(model_id)
        )))
    }
}

/// The type system of a stored model, built on the blocking pool: it is linear in the model
/// (bounded by [`MAX_MODEL_SIZE_BYTES`]) but still CPU work an async worker must not do.
async fn build(stored: StoredModel) -> Result<Arc<TypeSystem>, PdpError> {
    tokio::task::spawn_blocking(move || {
        let mut model: AuthorizationModel =
            serde_json::from_value(stored.model_json).map_err(PdpError::internal)?;
        model.id = stored.id;
        Ok(Arc::new(
            TypeSystem::new(model).map_err(PdpError::internal)?,
        ))
    })
    .await
    .map_err(PdpError::internal)?
}

impl Inner {
    /// Records `ts` as the latest model of `store_id` and tells the store's watchers.
    fn set_latest(&self, store_id: &str, ts: Arc<TypeSystem>) {
        if let Some(si) = self.loaded(store_id) {
            si.publish_model(&ts.model().id);
        }
        self.models.set_latest(store_id, ts);
    }

    /// The type system of `model_id` of `store_id`, or of the store's latest model when
    /// `model_id` is `None` or empty.
    pub(crate) async fn type_system(
        &self,
        store_id: &str,
        model_id: Option<&str>,
        consistency: Consistency,
    ) -> Result<Arc<TypeSystem>, PdpError> {
        let Some(model_id) = model_id.filter(|m| !m.is_empty()) else {
            return self.latest_type_system(store_id, consistency).await;
        };
        validate_model_id(model_id)?;
        if let Some(ts) = self.models.get(store_id, model_id) {
            return Ok(ts);
        }
        let stored = self
            .store
            .get_model(store_id, model_id)
            .await?
            .ok_or_else(|| PdpError::ModelNotFound(model_id.to_owned()))?;
        let ts = build(stored).await?;
        self.models.insert(store_id, ts.clone());
        Ok(ts)
    }

    pub(crate) async fn latest_type_system(
        &self,
        store_id: &str,
        consistency: Consistency,
    ) -> Result<Arc<TypeSystem>, PdpError> {
        if consistency != Consistency::HigherConsistency
            && let Some(ts) = self.models.fresh_latest(store_id)
        {
            return Ok(ts);
        }
        let stored = self
            .store
            .latest_model(store_id)
            .await?
            .ok_or_else(|| PdpError::LatestModelNotFound(store_id.to_owned()))?;
        let ts = match self.models.get(store_id, &stored.id) {
            Some(ts) => ts,
            None => {
                let ts = build(stored).await?;
                self.models.insert(store_id, ts.clone());
                ts
            }
        };
        self.set_latest(store_id, ts.clone());
        Ok(ts)
    }
}

impl Pdp {
    /// Validates `model` and stores it as the store's new latest model; returns its id.
    ///
    /// Fails with [`PdpError::StoreNotFound`], [`PdpError::ExceededEntityLimit`] (more than
    /// [`MAX_TYPES_PER_MODEL`] types or [`MAX_MODEL_SIZE_BYTES`] bytes) or [`PdpError::InvalidModel`] (the first problem
    /// OpenFGA's validation reports), storing nothing. A model's `id` field is ignored.
    pub async fn write_model(
        &self,
        store_id: &str,
        mut model: AuthorizationModel,
    ) -> Result<String, PdpError> {
        self.open(store_id)?;
        let inner = &self.inner;
        model.id = String::new();
        if inner.store.get_fga_store(store_id).await?.is_none() {
            return Err(PdpError::StoreNotFound);
        }
        if model.type_definitions.len() > MAX_TYPES_PER_MODEL {
            return Err(PdpError::exceeded(
                "type definitions in an authorization model",
                MAX_TYPES_PER_MODEL,
            ));
        }
        let size = serde_json::to_vec(&model)
            .map_err(PdpError::internal)?
            .len();
        if size > MAX_MODEL_SIZE_BYTES {
            return Err(PdpError::exceeded(
                "bytes in an authorization model",
                MAX_MODEL_SIZE_BYTES,
            ));
        }
        // Validation is polynomial but proportional to the model: it runs on the blocking pool,
        // never on an async worker that serves other requests.
        let mut model = tokio::task::spawn_blocking(move || match validate_json_model(&model) {
            Ok(()) => Ok(model),
            Err(errors) => Err(errors
                .errors
                .first()
                .map(|e| e.message.clone())
                .unwrap_or_else(|| errors.to_string())),
        })
        .await
        .map_err(PdpError::internal)?
        .map_err(PdpError::InvalidModel)?;
        let model_json = serde_json::to_value(&model).map_err(PdpError::internal)?;
        let now = inner.clock.now();
        let floor = inner.store.latest_model(store_id).await?.map(|m| m.id);
        let id = inner.models.next_model_id(now, floor.as_deref());
        model.id = id.clone();
        let schema_version = model.schema_version.clone();
        let ts = tokio::task::spawn_blocking(move || TypeSystem::new(model))
            .await
            .map_err(PdpError::internal)?
            .map_err(|e| PdpError::InvalidModel(e.to_string()))?;
        inner
            .store
            .write_model(&StoredModel {
                id: id.clone(),
                store_id: store_id.to_owned(),
                schema_version,
                model_json,
                created_at: now,
            })
            .await?;
        let ts = Arc::new(ts);
        inner.models.insert(store_id, ts.clone());
        inner.set_latest(store_id, ts);
        Ok(id)
    }

    /// The stored model `model_id` of `store_id` ([`PdpError::ModelNotFound`], or
    /// [`PdpError::StoreNotFound`] when the store is the missing part).
    pub async fn get_model(&self, store_id: &str, model_id: &str) -> Result<StoredModel, PdpError> {
        self.open(store_id)?;
        validate_model_id(model_id)?;
        let store = &self.inner.store;
        match store.get_model(store_id, model_id).await? {
            Some(stored) => Ok(stored),
            None if store.get_fga_store(store_id).await?.is_none() => Err(PdpError::StoreNotFound),
            None => Err(PdpError::ModelNotFound(model_id.to_owned())),
        }
    }

    /// The store's models, newest first, a page at a time.
    pub async fn list_models(
        &self,
        store_id: &str,
        page: Page<'_>,
    ) -> Result<Paged<StoredModel>, PdpError> {
        self.open(store_id)?;
        let size = page.size()?;
        let (items, next) = self
            .inner
            .store
            .list_models(store_id, size, page.continuation())
            .await?;
        Ok(Paged {
            items,
            continuation_token: next,
        })
    }

    /// The type system queries of `store_id` evaluate with: `model_id`'s, or the latest
    /// model's when `None` (as fresh as `consistency` demands).
    pub async fn model(
        &self,
        store_id: &str,
        model_id: Option<&str>,
        consistency: Consistency,
    ) -> Result<Arc<TypeSystem>, PdpError> {
        self.open(store_id)?;
        self.inner
            .type_system(store_id, model_id, consistency)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_increase_within_one_millisecond_and_past_the_floor() {
        let cache = ModelCache::default();
        let now = OffsetDateTime::now_utc();
        let a = cache.next_model_id(now, None);
        let b = cache.next_model_id(now, None);
        assert!(b > a, "{a} {b}");
        let floor = trustgate_core::id::new_ulid(now + time::Duration::hours(1));
        let c = cache.next_model_id(now, Some(&floor));
        assert!(c > floor, "{c} {floor}");
    }
}
