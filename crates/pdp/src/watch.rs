//! Watching a store's revision: what a policy enforcement point needs to cache decisions that
//! never outlive the state they were computed on.
//!
//! A store's [`Revision`] is the pair (changelog position as a [`ConsistencyToken`], id of the
//! latest model). It changes when this replica's tuple index applies a change — a write through
//! this replica, or one of another replica arriving through the refresher — and when this
//! replica learns of a new latest model (a model write through it, or the latest model read
//! back from the database, at most [`crate::LATEST_MODEL_TTL`] after another replica wrote it:
//! the refresher re-reads it for watched stores). A watcher therefore sees a change no later
//! than a check on this replica would.
//!
//! A decision taken by asking this replica with the revision's token and model id is a
//! decision at that revision or later; as long as the revision has not moved, asking again
//! would give the same answer. [`RevisionWatch::changed`] ends with [`StoreGone`] when the
//! store is deleted (its index is forgotten): a watcher then caches nothing.

use std::sync::Arc;

use tokio::sync::watch;

use crate::consistency::{Consistency, ConsistencyToken};
use crate::freshness::StoreIndex;
use crate::{Inner, Pdp, PdpError};

/// What this replica's index of a store reflects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RawRevision {
    /// The changelog position applied.
    pub(crate) seq: u64,
    /// The latest model as last learnt (`None`: the store has none yet).
    pub(crate) latest_model_id: Option<String>,
}

/// A store's revision as a watcher sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// The changelog position: a query sent with this token is answered at least this fresh.
    pub token: ConsistencyToken,
    /// The latest model's id (`None`: the store has no model yet).
    pub latest_model_id: Option<String>,
}

/// The store was deleted while it was watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the watched store is gone")]
pub struct StoreGone;

/// A subscription to one store's revision. Dropping it unsubscribes.
#[derive(Debug)]
pub struct RevisionWatch {
    store_id: String,
    rx: watch::Receiver<RawRevision>,
}

impl RevisionWatch {
    /// The revision now.
    pub fn current(&mut self) -> Revision {
        let raw = self.rx.borrow_and_update().clone();
        self.revision(raw)
    }

    /// Waits for the next revision (changes in between are coalesced: only the newest is seen).
    pub async fn changed(&mut self) -> Result<Revision, StoreGone> {
        self.rx.changed().await.map_err(|_| StoreGone)?;
        Ok(self.current())
    }

    fn revision(&self, raw: RawRevision) -> Revision {
        Revision {
            token: ConsistencyToken::issue(
                &self.store_id,
                i64::try_from(raw.seq).unwrap_or(i64::MAX),
            ),
            latest_model_id: raw.latest_model_id,
        }
    }
}

impl StoreIndex {
    /// Publishes the index's applied position if it moved.
    pub(crate) fn publish_seq(&self) {
        let seq = self.index.applied_seq();
        self.revision.send_if_modified(|raw| {
            let moved = raw.seq < seq;
            if moved {
                raw.seq = seq;
            }
            moved
        });
    }

    /// Publishes the latest model id if it changed.
    pub(crate) fn publish_model(&self, model_id: &str) {
        self.revision.send_if_modified(|raw| {
            let changed = raw.latest_model_id.as_deref() != Some(model_id);
            if changed {
                raw.latest_model_id = Some(model_id.to_owned());
            }
            changed
        });
    }

    /// Whether anyone watches this store.
    pub(crate) fn is_watched(&self) -> bool {
        self.revision.receiver_count() > 0
    }
}

impl Inner {
    /// Re-reads the latest model of `store_id` (from the database at most once per
    /// [`crate::LATEST_MODEL_TTL`]) so that watchers learn of a model written through another
    /// replica. A store without a model is not an error here.
    pub(crate) async fn refresh_latest_model(
        &self,
        store_id: &str,
        si: &StoreIndex,
    ) -> Result<(), PdpError> {
        match self
            .latest_type_system(store_id, Consistency::MinimizeLatency)
            .await
        {
            Ok(ts) => {
                si.publish_model(&ts.model().id);
                Ok(())
            }
            Err(PdpError::LatestModelNotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Pdp {
    /// Subscribes to the revision of `store_id`, loading its index if it is not loaded
    /// ([`PdpError::StoreNotFound`] if the store does not exist).
    pub async fn watch(&self, store_id: &str) -> Result<RevisionWatch, PdpError> {
        self.open(store_id)?;
        let inner: &Arc<Inner> = &self.inner;
        let si = inner.store_index(store_id).await?;
        let rx = si.revision.subscribe();
        inner.refresh_latest_model(store_id, &si).await?;
        Ok(RevisionWatch {
            store_id: store_id.to_owned(),
            rx,
        })
    }
}
