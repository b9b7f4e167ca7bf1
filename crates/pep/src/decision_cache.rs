//! A decision cache that never outlives the state its decisions were computed on.
//!
//! [`DecisionCache`] wraps a [`DecisionPoint`] and follows the store's revision through a
//! [`RevisionFeed`] (over HTTP: trustgate's `GET /stores/{id}/watch`, see
//! [`HttpDecisionPoint::follow_revisions`](crate::HttpDecisionPoint::follow_revisions)):
//!
//! - An entry belongs to one revision (the store's changelog position and latest model). A miss
//!   asks the PDP *with that revision's consistency token and model id*, so the answer is at
//!   least that fresh and from that model. When the feed reports a new revision — a tuple
//!   written or deleted, a new model — every entry of the old one is dropped: a decision never
//!   survives a tuple change. The feed reports what the PDP replica it watches applied, so the
//!   cache is never staler than a check on that replica plus the feed's own delivery (one
//!   event on an open connection).
//! - While the feed is not connected (starting, the PDP restarting, a network fault, no
//!   heartbeat within [`FEED_DEAD_AFTER`]), the cache is off: every request asks the PDP, which
//!   answers 503 if it is down. Entries never outlive [`DecisionCacheConfig::ttl`] either.
//! - A request carrying a consistency token (`X-Consistency-Token`) is never answered from the
//!   cache: it is asked with its own token, and its answer is not stored. Nor is a query that
//!   names a model of its own.
//! - Errors are never cached. Revocation is not the cache's concern: a decision is looked up
//!   only for a principal that has just been authenticated (see the authenticator's bounds).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::pdp::{CheckQuery, DecisionPoint, Unavailable};

/// How long the feed may stay silent (no event, no heartbeat) before it counts as down.
/// trustgate sends a heartbeat every second.
pub const FEED_DEAD_AFTER: Duration = Duration::from_secs(3);

/// A store's revision as the PDP reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// The consistency token of the changelog position.
    pub consistency_token: String,
    /// The latest model's id (`None`: the store has no model).
    pub latest_model_id: Option<String>,
}

/// A revision as the cache keys it: a new generation for every revision received, so that a
/// reconnect never revives entries of an earlier connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveRevision {
    /// Increases with every revision received.
    pub generation: u64,
    /// The revision.
    pub revision: Revision,
}

/// The current revision of the watched store, `None` while the feed is down. Keeps its
/// follower task alive; the task ends when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct RevisionFeed {
    rx: watch::Receiver<Option<Arc<LiveRevision>>>,
    credentials: watch::Receiver<Option<i64>>,
    _task: Arc<AbortOnDrop>,
}

#[derive(Debug)]
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

impl RevisionFeed {
    /// A feed written by `task` through the senders of `rx` (the revision) and `credentials`
    /// (trustgate's credential epoch); the task is aborted with the last clone.
    pub fn new(
        rx: watch::Receiver<Option<Arc<LiveRevision>>>,
        credentials: watch::Receiver<Option<i64>>,
        task: Option<tokio::task::JoinHandle<()>>,
    ) -> Self {
        RevisionFeed {
            rx,
            credentials,
            _task: Arc::new(AbortOnDrop(task)),
        }
    }

    /// trustgate's credential epoch as the feed last reported it (`None` while the feed is
    /// down or before the first report): it moves with every revocation of any credential.
    pub fn credential_epochs(&self) -> watch::Receiver<Option<i64>> {
        self.credentials.clone()
    }

    /// The revision now, if the feed is up.
    pub fn current(&self) -> Option<Arc<LiveRevision>> {
        self.rx.borrow().clone()
    }

    /// Waits until the feed is up (for tests and start-up); `false` if it was closed.
    pub async fn wait_live(&mut self) -> bool {
        self.rx.wait_for(Option::is_some).await.is_ok()
    }
}

/// Bounds of a [`DecisionCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionCacheConfig {
    /// The longest an entry is used, even if the revision does not move.
    pub ttl: Duration,
    /// The most entries kept.
    pub max_entries: u64,
}

impl Default for DecisionCacheConfig {
    fn default() -> Self {
        DecisionCacheConfig {
            ttl: Duration::from_secs(10),
            max_entries: 100_000,
        }
    }
}

/// (generation, subject, relation, object).
type Key = (u64, Box<str>, Box<str>, Box<str>);

/// A [`DecisionPoint`] that remembers answers for the current revision of its store.
#[derive(Debug, Clone)]
pub struct DecisionCache {
    inner: Arc<dyn DecisionPoint>,
    feed: RevisionFeed,
    entries: moka::sync::Cache<Key, bool>,
    _sweeper: Arc<AbortOnDrop>,
}

impl DecisionCache {
    /// Caches the answers of `inner` for the revision `feed` reports. Must run inside a tokio
    /// runtime (a task drops the entries of a revision when it is replaced).
    pub fn new(
        inner: Arc<dyn DecisionPoint>,
        feed: RevisionFeed,
        config: DecisionCacheConfig,
    ) -> Self {
        let entries: moka::sync::Cache<Key, bool> = moka::sync::Cache::builder()
            .max_capacity(config.max_entries)
            .time_to_live(config.ttl)
            .build();
        let mut rx = feed.rx.clone();
        let sweep = entries.clone();
        // Entries of an old revision are unreachable at once (the generation is in the key);
        // this frees their memory.
        let sweeper = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                sweep.invalidate_all();
            }
        });
        DecisionCache {
            inner,
            feed,
            entries,
            _sweeper: Arc::new(AbortOnDrop(Some(sweeper))),
        }
    }

    /// Entries held (approximate: moka counts lazily).
    pub fn len(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the feed is up (the cache is in use).
    pub fn is_live(&self) -> bool {
        self.feed.current().is_some()
    }
}

#[async_trait]
impl DecisionPoint for DecisionCache {
    async fn check(&self, q: &CheckQuery<'_>) -> Result<bool, Unavailable> {
        // A query pinned to a write or to a model of its own is asked as it is: entries are
        // answers at the revision's position under its latest model.
        if q.consistency_token.is_some() || q.model_id.is_some() {
            return self.inner.check(q).await;
        }
        let Some(live) = self.feed.current() else {
            return self.inner.check(q).await;
        };
        let key: Key = (
            live.generation,
            q.subject.into(),
            q.relation.into(),
            q.object.into(),
        );
        if let Some(allowed) = self.entries.get(&key) {
            return Ok(allowed);
        }
        let revision = &live.revision;
        let at_revision = CheckQuery {
            consistency_token: Some(&revision.consistency_token),
            model_id: revision.latest_model_id.as_deref(),
            ..*q
        };
        let allowed = self.inner.check(&at_revision).await?;
        // Stored under the generation it was asked at: if the revision moved meanwhile, the
        // entry is already unreachable.
        self.entries.insert(key, allowed);
        Ok(allowed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use parking_lot::Mutex;

    use super::*;

    /// Answers from a set of allowed (subject, relation, object) and records what it was asked.
    #[derive(Debug, Default)]
    struct Recording {
        allowed: Mutex<Vec<(String, String, String)>>,
        asked: Mutex<Vec<(Option<String>, Option<String>)>>,
        calls: AtomicUsize,
        down: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl DecisionPoint for Recording {
        async fn check(&self, q: &CheckQuery<'_>) -> Result<bool, Unavailable> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.asked.lock().push((
                q.consistency_token.map(str::to_owned),
                q.model_id.map(str::to_owned),
            ));
            if self.down.load(Ordering::SeqCst) {
                return Err(Unavailable("down".into()));
            }
            Ok(self
                .allowed
                .lock()
                .iter()
                .any(|(s, r, o)| s == q.subject && r == q.relation && o == q.object))
        }
    }

    fn query<'a>(subject: &'a str) -> CheckQuery<'a> {
        CheckQuery {
            subject,
            relation: "viewer",
            object: "course:1",
            request_id: None,
            ip: None,
            consistency_token: None,
            model_id: None,
        }
    }

    fn live(generation: u64, token: &str) -> Option<Arc<LiveRevision>> {
        Some(Arc::new(LiveRevision {
            generation,
            revision: Revision {
                consistency_token: token.into(),
                latest_model_id: Some(format!("model-{token}")),
            },
        }))
    }

    fn setup() -> (
        Arc<Recording>,
        watch::Sender<Option<Arc<LiveRevision>>>,
        DecisionCache,
    ) {
        let pdp = Arc::new(Recording::default());
        let (tx, rx) = watch::channel(None);
        let cache = DecisionCache::new(
            pdp.clone(),
            RevisionFeed::new(rx, watch::channel(None).1, None),
            DecisionCacheConfig {
                ttl: Duration::from_secs(3600),
                max_entries: 1000,
            },
        );
        (pdp, tx, cache)
    }

    fn allow(pdp: &Recording, subject: &str) {
        pdp.allowed
            .lock()
            .push((subject.into(), "viewer".into(), "course:1".into()));
    }

    #[tokio::test]
    async fn a_hit_costs_no_question_and_the_miss_is_asked_at_the_revision() {
        let (pdp, tx, cache) = setup();
        allow(&pdp, "user:anne");
        tx.send_replace(live(1, "t1"));
        assert_eq!(cache.check(&query("user:anne")).await, Ok(true));
        assert_eq!(cache.check(&query("user:anne")).await, Ok(true));
        assert_eq!(cache.check(&query("user:bob")).await, Ok(false));
        assert_eq!(cache.check(&query("user:bob")).await, Ok(false));
        assert_eq!(pdp.calls.load(Ordering::SeqCst), 2, "one question per key");
        assert_eq!(
            pdp.asked.lock()[0],
            (Some("t1".into()), Some("model-t1".into())),
            "a miss is asked with the revision's token and model"
        );
    }

    #[tokio::test]
    async fn a_new_revision_drops_every_decision() {
        let (pdp, tx, cache) = setup();
        tx.send_replace(live(1, "t1"));
        assert_eq!(cache.check(&query("user:anne")).await, Ok(false));
        // The tuple is written; the PDP's revision moves.
        allow(&pdp, "user:anne");
        assert_eq!(
            cache.check(&query("user:anne")).await,
            Ok(false),
            "same revision: the cached answer (the feed has not told yet)"
        );
        tx.send_replace(live(2, "t2"));
        assert_eq!(cache.check(&query("user:anne")).await, Ok(true));
        // And back: deleting it moves the revision again.
        pdp.allowed.lock().clear();
        tx.send_replace(live(3, "t3"));
        assert_eq!(cache.check(&query("user:anne")).await, Ok(false));
    }

    #[tokio::test]
    async fn without_a_live_feed_every_request_asks() {
        let (pdp, tx, cache) = setup();
        allow(&pdp, "user:anne");
        for _ in 0..3 {
            assert_eq!(cache.check(&query("user:anne")).await, Ok(true));
        }
        assert_eq!(pdp.calls.load(Ordering::SeqCst), 3);
        assert_eq!(
            pdp.asked.lock()[0],
            (None, None),
            "asked as the caller asked"
        );
        // Up, cached, then down again: the cached answer is not used.
        tx.send_replace(live(1, "t1"));
        assert_eq!(cache.check(&query("user:anne")).await, Ok(true));
        tx.send_replace(None);
        pdp.down.store(true, Ordering::SeqCst);
        assert!(
            cache.check(&query("user:anne")).await.is_err(),
            "the feed is down: the PDP's answer (here: none) decides, not the cache"
        );
    }

    #[tokio::test]
    async fn a_consistency_token_bypasses_the_cache_and_errors_are_not_cached() {
        let (pdp, tx, cache) = setup();
        tx.send_replace(live(1, "t1"));
        assert_eq!(cache.check(&query("user:anne")).await, Ok(false));
        allow(&pdp, "user:anne");
        let fresh = CheckQuery {
            consistency_token: Some("t-write"),
            ..query("user:anne")
        };
        assert_eq!(cache.check(&fresh).await, Ok(true), "asked, not cached");
        assert_eq!(
            pdp.asked.lock().last().cloned(),
            Some((Some("t-write".into()), None)),
            "with the caller's own token"
        );
        // An error is not remembered: once the PDP answers again, it is asked.
        tx.send_replace(live(2, "t2"));
        pdp.down.store(true, Ordering::SeqCst);
        assert!(cache.check(&query("user:carl")).await.is_err());
        pdp.down.store(false, Ordering::SeqCst);
        allow(&pdp, "user:carl");
        assert_eq!(cache.check(&query("user:carl")).await, Ok(true));
    }

    #[tokio::test]
    async fn a_query_naming_its_own_model_is_asked_as_it_is() {
        let (pdp, tx, cache) = setup();
        tx.send_replace(live(1, "t1"));
        let pinned = CheckQuery {
            model_id: Some("m-own"),
            ..query("user:anne")
        };
        for _ in 0..2 {
            assert_eq!(cache.check(&pinned).await, Ok(false));
        }
        assert_eq!(pdp.calls.load(Ordering::SeqCst), 2, "never from the cache");
        assert_eq!(
            pdp.asked.lock().last().cloned(),
            Some((None, Some("m-own".into()))),
            "with its own model, not the revision's"
        );
    }

    #[tokio::test]
    async fn entries_expire_after_the_ttl() {
        let pdp = Arc::new(Recording::default());
        let (tx, rx) = watch::channel(live(1, "t1"));
        let cache = DecisionCache::new(
            pdp.clone(),
            RevisionFeed::new(rx, watch::channel(None).1, None),
            DecisionCacheConfig {
                ttl: Duration::from_millis(50),
                max_entries: 1000,
            },
        );
        assert_eq!(cache.check(&query("user:anne")).await, Ok(false));
        allow(&pdp, "user:anne");
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(cache.check(&query("user:anne")).await, Ok(true));
        drop(tx);
    }
}
