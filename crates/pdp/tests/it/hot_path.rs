//! The in-process check path: once a store's index and model are loaded, a
//! `MINIMIZE_LATENCY` check is answered from memory, with no database call, and costs little
//! more than the engine's own evaluation. HIGHER_CONSISTENCY and tokens go to the database,
//! as they must.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use time::OffsetDateTime;
use trustgate_authz::engine::TypeSystem;
use trustgate_pdp::{
    Caller, CheckRequest, Consistency, DecisionLog, DecisionRecord, Freshness, Limits, Pdp,
    QueryScope, TupleKey, TupleWrite,
};
use trustgate_store::testing::TestDatabase;
use trustgate_store_api::{
    FgaStore, ImportOutcome, RelationshipStore, StoreError, StoredModel, StoredTuple,
    TupleChangeRecord, TupleFilter, TupleSnapshot, TupleWriteError, WriteOptions, WriteOutcome,
};

/// A relationship store that counts the calls a query could make.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn RelationshipStore>,
    query_calls: AtomicUsize,
}

impl Counting {
    fn hit(&self) {
        self.query_calls.fetch_add(1, Ordering::SeqCst);
    }

    fn calls(&self) -> usize {
        self.query_calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl RelationshipStore for Counting {
    async fn create_fga_store(
        &self,
        id: &str,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<FgaStore, StoreError> {
        self.inner.create_fga_store(id, name, now).await
    }
    async fn get_fga_store(&self, id: &str) -> Result<Option<FgaStore>, StoreError> {
        self.hit();
        self.inner.get_fga_store(id).await
    }
    async fn list_fga_stores(
        &self,
        page_size: u32,
        continuation: Option<&str>,
        name: Option<&str>,
    ) -> Result<(Vec<FgaStore>, Option<String>), StoreError> {
        self.inner
            .list_fga_stores(page_size, continuation, name)
            .await
    }
    async fn delete_fga_store(&self, id: &str, now: OffsetDateTime) -> Result<bool, StoreError> {
        self.inner.delete_fga_store(id, now).await
    }
    async fn live_store_seqs(&self) -> Result<Vec<(String, i64)>, StoreError> {
        // The background refresher's poll: not part of any query.
        self.inner.live_store_seqs().await
    }
    async fn write_model(&self, model: &StoredModel) -> Result<(), StoreError> {
        self.inner.write_model(model).await
    }
    async fn get_model(
        &self,
        store_id: &str,
        model_id: &str,
    ) -> Result<Option<StoredModel>, StoreError> {
        self.hit();
        self.inner.get_model(store_id, model_id).await
    }
    async fn latest_model(&self, store_id: &str) -> Result<Option<StoredModel>, StoreError> {
        self.hit();
        self.inner.latest_model(store_id).await
    }
    async fn list_models(
        &self,
        store_id: &str,
        page_size: u32,
        continuation: Option<&str>,
    ) -> Result<(Vec<StoredModel>, Option<String>), StoreError> {
        self.inner
            .list_models(store_id, page_size, continuation)
            .await
    }
    async fn write_tuples(
        &self,
        store_id: &str,
        writes: &[TupleKey],
        deletes: &[TupleKey],
        options: WriteOptions,
        now: OffsetDateTime,
    ) -> Result<WriteOutcome, TupleWriteError> {
        self.inner
            .write_tuples(store_id, writes, deletes, options, now)
            .await
    }
    async fn import_tuples(
        &self,
        store_id: &str,
        tuples: &[TupleKey],
        now: OffsetDateTime,
    ) -> Result<ImportOutcome, TupleWriteError> {
        self.inner.import_tuples(store_id, tuples, now).await
    }
    async fn read_tuples(
        &self,
        store_id: &str,
        filter: &TupleFilter,
        page_size: u32,
        continuation: Option<&str>,
    ) -> Result<(Vec<StoredTuple>, Option<String>), StoreError> {
        self.inner
            .read_tuples(store_id, filter, page_size, continuation)
            .await
    }
    async fn read_changes(
        &self,
        store_id: &str,
        object_type: Option<&str>,
        start_time: Option<OffsetDateTime>,
        page_size: u32,
        continuation: Option<&str>,
    ) -> Result<(Vec<TupleChangeRecord>, String), StoreError> {
        self.inner
            .read_changes(store_id, object_type, start_time, page_size, continuation)
            .await
    }
    async fn load_tuples(&self, store_id: &str) -> Result<TupleSnapshot, StoreError> {
        self.hit();
        self.inner.load_tuples(store_id).await
    }
    async fn changes_since(
        &self,
        store_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<TupleChangeRecord>, StoreError> {
        self.hit();
        self.inner.changes_since(store_id, after_seq, limit).await
    }
    async fn store_seq(&self, store_id: &str) -> Result<i64, StoreError> {
        self.hit();
        self.inner.store_seq(store_id).await
    }
    async fn put_object_attributes(
        &self,
        store_id: &str,
        object: &str,
        attributes: &serde_json::Map<String, serde_json::Value>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.inner
            .put_object_attributes(store_id, object, attributes, now)
            .await
    }
    async fn get_object_attributes(
        &self,
        store_id: &str,
        objects: &[&str],
    ) -> Result<Vec<(String, serde_json::Map<String, serde_json::Value>)>, StoreError> {
        self.hit();
        self.inner.get_object_attributes(store_id, objects).await
    }
    async fn has_object_attributes(&self, store_id: &str) -> Result<bool, StoreError> {
        self.hit();
        self.inner.has_object_attributes(store_id).await
    }
    async fn delete_object_attributes(
        &self,
        store_id: &str,
        object: &str,
    ) -> Result<bool, StoreError> {
        self.inner.delete_object_attributes(store_id, object).await
    }
}

#[derive(Debug)]
struct Discard;

impl DecisionLog for Discard {
    fn record(&self, _: &DecisionRecord<'_>) {}
}

const MODEL: &str = "model
  schema 1.1
type user
type group
  relations
    define member: [user, group#member]
type document
  relations
    define owner: [user]
    define viewer: [user, group#member] or owner
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_check_is_answered_from_memory() {
    let db = TestDatabase::sqlite().await;
    let counting = Arc::new(Counting {
        inner: db.store.clone(),
        query_calls: AtomicUsize::new(0),
    });
    let pdp = Pdp::with_decision_log(
        counting.clone(),
        Arc::new(trustgate_core::SystemClock),
        Limits::default(),
        Arc::new(Discard),
    );
    let store = pdp.create_store("hot path").await.expect("store").id;
    let model_id = pdp
        .write_model(&store, trustgate_authz::dsl::parse(MODEL).expect("model"))
        .await
        .expect("model");
    let writes: Vec<TupleKey> = (0..50)
        .map(|i| {
            TupleKey::new(
                format!("document:{i}"),
                "viewer",
                format!("group:g{}#member", i % 5),
            )
        })
        .chain((0..5).map(|g| TupleKey::new(format!("group:g{g}"), "member", "user:anne")))
        .collect();
    let written = pdp
        .write(
            &store,
            &TupleWrite {
                writes: &writes,
                ..TupleWrite::default()
            },
        )
        .await
        .expect("write");
    let request = CheckRequest {
        object: "document:42",
        relation: "viewer",
        user: "user:anne",
        contextual_tuples: &[],
        context: None,
    };
    let context = trustgate_audit::RequestContext::default();
    let caller = Caller {
        principal: "service:gateway",
        context: &context,
    };
    let pinned = QueryScope {
        model_id: Some(&model_id),
        ..QueryScope::latest(&store)
    };
    assert_eq!(pdp.check(&pinned, &request, caller).await.ok(), Some(true));

    // Warm: no database call for any number of checks, pinned model or latest (within its TTL).
    let before = counting.calls();
    for _ in 0..200 {
        assert_eq!(pdp.check(&pinned, &request, caller).await.ok(), Some(true));
        assert_eq!(
            pdp.check(&QueryScope::latest(&store), &request, caller)
                .await
                .ok(),
            Some(true)
        );
    }
    assert_eq!(
        counting.calls(),
        before,
        "a warm check touched the database"
    );

    // A token the index has reached costs no call either; HIGHER_CONSISTENCY does.
    let at_token = QueryScope {
        freshness: Freshness::after(&written.token),
        ..pinned
    };
    assert_eq!(
        pdp.check(&at_token, &request, caller).await.ok(),
        Some(true)
    );
    assert_eq!(counting.calls(), before);
    let higher = QueryScope {
        freshness: Consistency::HigherConsistency.into(),
        ..pinned
    };
    assert_eq!(pdp.check(&higher, &request, caller).await.ok(), Some(true));
    assert!(counting.calls() > before);

    // What the service adds to the engine's evaluation (printed, not asserted: timing).
    let ts: Arc<TypeSystem> = pdp
        .model(&store, Some(&model_id), Consistency::MinimizeLatency)
        .await
        .expect("model");
    let index = trustgate_authz::index::TupleIndex::with_tuples(1, writes.iter()).expect("index");
    let rounds = 2000u32;
    let started = Instant::now();
    for _ in 0..rounds {
        let snapshot = index.current();
        assert_eq!(
            trustgate_authz::engine::check(&ts, &*snapshot, &request),
            Ok(true)
        );
    }
    let engine = started.elapsed() / rounds;
    let started = Instant::now();
    for _ in 0..rounds {
        assert_eq!(pdp.check(&pinned, &request, caller).await.ok(), Some(true));
    }
    let service = started.elapsed() / rounds;
    eprintln!(
        "check: engine {engine:?}, service {service:?} per call (this build's profile; {} tuples)",
        writes.len()
    );
}
