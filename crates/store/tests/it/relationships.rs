//! Relationship storage (OpenFGA stores, models, tuples, changelog), on every backend.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::macros::datetime;
use trustgate_core::id::new_ulid;
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;
use trustgate_store_api::relationships::{MAX_FIELD_BYTES, MAX_PAGE_SIZE};
use trustgate_store_api::{
    MAX_IMPORT_BATCH, OnDuplicate, OnMissing, SYSTEM_STORE_ID, Store, StoreError, StoredModel,
    StoredTuple, TupleChangeRecord, TupleFilter, TupleKey, TupleOperation, TupleWriteError,
    WriteOptions,
};

test_on_both_backends!(
    stores_are_created_listed_and_soft_deleted,
    object_attributes_are_replaced_read_bounded_and_deleted_with_the_store,
    deleted_store_data_is_invisible,
    models_are_immutable_and_newest_first,
    a_bad_tuple_in_a_batch_writes_nothing,
    duplicates_fail_unless_ignored_and_identical,
    missing_deletes_fail_unless_ignored,
    the_same_tuple_twice_in_a_request_is_refused,
    conditions_are_stored_and_returned,
    read_filters_select_exactly,
    read_pages_walk_everything_once,
    read_refuses_bad_tokens_and_input,
    changes_page_filter_by_type_and_start_time,
    changes_token_resumes_from_the_end,
    load_and_changes_since_agree,
    snapshots_are_consistent_under_concurrent_writes,
    concurrent_writers_get_gapless_seqs,
    empty_and_absurd_input_is_refused,
    imports_skip_existing_tuples_and_log_each_new_one,
    imports_span_several_statements_and_fail_whole,
);

const T0: OffsetDateTime = datetime!(2026-11-23 10:00 UTC);

fn at(seconds: i64) -> OffsetDateTime {
    T0 + time::Duration::seconds(seconds)
}

fn tuple(object: &str, relation: &str, user: &str) -> TupleKey {
    TupleKey::new(object, relation, user)
}

fn context(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

const STRICT: WriteOptions = WriteOptions {
    on_duplicate: OnDuplicate::Error,
    on_missing: OnMissing::Error,
};

const LENIENT: WriteOptions = WriteOptions {
    on_duplicate: OnDuplicate::Ignore,
    on_missing: OnMissing::Ignore,
};

async fn new_store(db: &TestDatabase, name: &str) -> String {
    let id = new_ulid(T0);
    db.store
        .create_fga_store(&id, name, T0)
        .await
        .expect("create store");
    id
}

async fn write(db: &TestDatabase, store: &str, writes: &[TupleKey]) -> i64 {
    db.store
        .write_tuples(store, writes, &[], STRICT, T0)
        .await
        .expect("write tuples")
        .seq
}

/// Every tuple of the store, via unfiltered reads.
async fn all_tuples(db: &TestDatabase, store: &str) -> Vec<TupleKey> {
    read_all(db, store, &TupleFilter::default(), MAX_PAGE_SIZE)
        .await
        .into_iter()
        .map(|t| t.tuple)
        .collect()
}

/// Walks every page of a read, failing on a repeated token.
async fn read_all(
    db: &TestDatabase,
    store: &str,
    filter: &TupleFilter,
    page_size: u32,
) -> Vec<StoredTuple> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    let mut seen_tokens = BTreeSet::new();
    loop {
        let (page, next) = db
            .store
            .read_tuples(store, filter, page_size, token.as_deref())
            .await
            .expect("read tuples");
        assert!(page.len() <= page_size as usize, "page larger than asked");
        out.extend(page);
        match next {
            Some(next) => {
                assert!(seen_tokens.insert(next.clone()), "token repeated: {next}");
                token = Some(next);
            }
            None => return out,
        }
    }
}

fn keys(tuples: &[TupleKey]) -> Vec<(String, String, String)> {
    tuples
        .iter()
        .map(|t| (t.object.clone(), t.relation.clone(), t.user.clone()))
        .collect()
}

async fn changes(db: &TestDatabase, store: &str) -> Vec<TupleChangeRecord> {
    db.store
        .changes_since(store, 0, MAX_PAGE_SIZE)
        .await
        .expect("changes since 0")
}

// ---------------------------------------------------------------------------------------------

async fn stores_are_created_listed_and_soft_deleted(db: TestDatabase) {
    let a = new_ulid(at(1));
    let b = new_ulid(at(2));
    let c = new_ulid(at(3));
    // Created out of order; listing is by id.
    for (id, name) in [(&c, "gamma"), (&a, "alpha"), (&b, "beta")] {
        let created = db
            .store
            .create_fga_store(id, name, at(5))
            .await
            .expect("create");
        assert_eq!(created.name, name);
        assert_eq!(created.created_at, at(5));
        assert_eq!(created.deleted_at, None);
    }
    let err = db
        .store
        .create_fga_store(&a, "again", T0)
        .await
        .expect_err("id taken");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    let got = db
        .store
        .get_fga_store(&b)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!((got.id.as_str(), got.name.as_str()), (b.as_str(), "beta"));
    assert_eq!(got.updated_at, at(5));
    assert_eq!(
        db.store.get_fga_store(&new_ulid(T0)).await.expect("get"),
        None
    );

    // Every database has the system store (migration 0006); the store lists it like any other,
    // first (its id is the smallest ULID), and the PDP service hides it.
    let system = SYSTEM_STORE_ID.to_owned();
    let (first, token) = db.store.list_fga_stores(2, None, None).await.expect("list");
    assert_eq!(
        first.iter().map(|s| &s.id).collect::<Vec<_>>(),
        [&system, &a]
    );
    let token = token.expect("more stores");
    let (second, end) = db
        .store
        .list_fga_stores(2, Some(&token), None)
        .await
        .expect("page 2");
    assert_eq!(second.iter().map(|s| &s.id).collect::<Vec<_>>(), [&b, &c]);
    assert_eq!(end, None);

    assert!(db.store.delete_fga_store(&b, at(9)).await.expect("delete"));
    assert!(
        !db.store
            .delete_fga_store(&b, at(10))
            .await
            .expect("delete twice")
    );
    assert!(
        !db.store
            .delete_fga_store(&new_ulid(T0), at(10))
            .await
            .expect("delete unknown")
    );
    assert_eq!(db.store.get_fga_store(&b).await.expect("get"), None);
    let (listed, end) = db
        .store
        .list_fga_stores(10, None, None)
        .await
        .expect("list");
    assert_eq!(
        listed.iter().map(|s| &s.id).collect::<Vec<_>>(),
        [&system, &a, &c]
    );
    assert_eq!(end, None);
    // The name filter: exact names only, deleted stores never, paging as without it.
    let d = new_ulid(at(4));
    db.store
        .create_fga_store(&d, "gamma", at(5))
        .await
        .expect("create a second gamma");
    let named = |name, token| {
        let store = db.store.clone();
        async move {
            store
                .list_fga_stores(1, token, Some(name))
                .await
                .expect("list by name")
        }
    };
    let (gamma, token) = named("gamma", None).await;
    assert_eq!(gamma.iter().map(|s| &s.id).collect::<Vec<_>>(), [&c]);
    let token = token.expect("a second gamma");
    let (gamma, end) = named("gamma", Some(token.as_str())).await;
    assert_eq!(gamma.iter().map(|s| &s.id).collect::<Vec<_>>(), [&d]);
    assert_eq!(end, None);
    assert!(named("beta", None).await.0.is_empty(), "deleted");
    assert!(named("gam", None).await.0.is_empty(), "exact names only");
    assert!(named("GAMMA", None).await.0.is_empty(), "case-sensitive");
    assert!(db.store.delete_fga_store(&d, at(9)).await.expect("delete"));
    let live = db.store.live_store_seqs().await.expect("live");
    assert_eq!(
        live,
        vec![(system.clone(), 0), (a.clone(), 0), (c.clone(), 0)]
    );
    // A deleted store's id stays taken.
    let err = db
        .store
        .create_fga_store(&b, "reuse", T0)
        .await
        .expect_err("taken");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    for bad in ["", "not-base64!", "eyJ4IjoxfQ"] {
        let err = db
            .store
            .list_fga_stores(2, Some(bad), None)
            .await
            .expect_err("bad token");
        assert!(
            matches!(err, StoreError::InvalidContinuationToken),
            "{bad}: {err:?}"
        );
    }
}

async fn deleted_store_data_is_invisible(db: TestDatabase) {
    let store = new_store(&db, "doomed").await;
    let other = new_store(&db, "kept").await;
    let model = StoredModel {
        id: new_ulid(at(1)),
        store_id: store.clone(),
        schema_version: "1.1".into(),
        model_json: json!({"schema_version": "1.1", "type_definitions": [{"type": "user"}]}),
        created_at: at(1),
    };
    db.store.write_model(&model).await.expect("model");
    write(&db, &store, &[tuple("doc:1", "viewer", "user:anne")]).await;
    write(&db, &other, &[tuple("doc:1", "viewer", "user:bob")]).await;

    assert!(
        db.store
            .delete_fga_store(&store, at(2))
            .await
            .expect("delete")
    );

    assert_eq!(
        db.store.get_model(&store, &model.id).await.expect("get"),
        None
    );
    assert_eq!(db.store.latest_model(&store).await.expect("latest"), None);
    let not_found = |r: Result<(), StoreError>| match r {
        Err(StoreError::NotFound(m)) => assert!(m.contains(&store), "{m}"),
        other => panic!("expected NotFound, got {other:?}"),
    };
    not_found(db.store.list_models(&store, 10, None).await.map(drop));
    not_found(
        db.store
            .read_tuples(&store, &TupleFilter::default(), 10, None)
            .await
            .map(drop),
    );
    not_found(
        db.store
            .read_changes(&store, None, None, 10, None)
            .await
            .map(drop),
    );
    not_found(db.store.load_tuples(&store).await.map(drop));
    not_found(db.store.changes_since(&store, 0, 10).await.map(drop));
    not_found(db.store.store_seq(&store).await.map(drop));
    let err = db
        .store
        .write_model(&StoredModel {
            id: new_ulid(at(3)),
            ..model.clone()
        })
        .await
        .expect_err("deleted store");
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let err = db
        .store
        .write_tuples(
            &store,
            &[tuple("doc:2", "viewer", "user:anne")],
            &[],
            STRICT,
            at(3),
        )
        .await
        .expect_err("deleted store");
    assert!(
        matches!(err, TupleWriteError::StoreNotFound(ref s) if s == &store),
        "{err:?}"
    );
    assert_eq!(
        db.store.live_store_seqs().await.expect("live"),
        vec![(SYSTEM_STORE_ID.to_owned(), 0), (other.clone(), 1)]
    );
    // The other store is untouched.
    assert_eq!(keys(&all_tuples(&db, &other).await).len(), 1);
}

async fn models_are_immutable_and_newest_first(db: TestDatabase) {
    let store = new_store(&db, "models").await;
    let other = new_store(&db, "other").await;
    let ids: Vec<String> = (0..5).map(|i| new_ulid(at(i * 60))).collect();
    // Written out of id order: "latest" is by id, not by insertion.
    for i in [2, 0, 4, 1, 3] {
        let model = StoredModel {
            id: ids[i].clone(),
            store_id: store.clone(),
            schema_version: "1.1".into(),
            model_json: json!({
                "schema_version": "1.1",
                "type_definitions": [{"type": "user"}, {"type": format!("t{i}")}],
                "conditions": {"c": {"name": "c", "expression": "x < 1.5"}},
            }),
            created_at: at(i as i64),
        };
        db.store.write_model(&model).await.expect("write model");
    }
    db.store
        .write_model(&StoredModel {
            id: new_ulid(at(10_000)),
            store_id: other.clone(),
            schema_version: "1.2".into(),
            model_json: json!({"schema_version": "1.2"}),
            created_at: T0,
        })
        .await
        .expect("other store's model");

    let latest = db
        .store
        .latest_model(&store)
        .await
        .expect("latest")
        .expect("some");
    assert_eq!(latest.id, ids[4]);
    assert_eq!(latest.created_at, at(4));
    assert_eq!(latest.model_json["type_definitions"][1]["type"], "t4");
    assert_eq!(
        latest.model_json["conditions"]["c"]["expression"],
        "x < 1.5"
    );

    let got = db
        .store
        .get_model(&store, &ids[1])
        .await
        .expect("get")
        .expect("some");
    assert_eq!(got.schema_version, "1.1");
    assert_eq!(got.model_json["type_definitions"][1]["type"], "t1");
    // Models are looked up within their store only.
    assert_eq!(
        db.store.get_model(&other, &ids[1]).await.expect("get"),
        None
    );

    let err = db
        .store
        .write_model(&StoredModel {
            model_json: json!({"changed": true}),
            ..got.clone()
        })
        .await
        .expect_err("immutable");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let unchanged = db
        .store
        .get_model(&store, &ids[1])
        .await
        .expect("get")
        .expect("some");
    assert_eq!(unchanged, got);

    let mut listed = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let (page, next) = db
            .store
            .list_models(&store, 2, token.as_deref())
            .await
            .expect("list");
        pages += 1;
        listed.extend(page.into_iter().map(|m| m.id));
        match next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first);
    assert_eq!(pages, 3);

    // A token is bound to its store and its operation.
    let (_, token) = db.store.list_models(&store, 1, None).await.expect("list");
    let token = token.expect("more");
    let err = db
        .store
        .list_models(&other, 1, Some(&token))
        .await
        .expect_err("other store");
    assert!(
        matches!(err, StoreError::InvalidContinuationToken),
        "{err:?}"
    );
    let err = db
        .store
        .list_fga_stores(1, Some(&token), None)
        .await
        .expect_err("other operation");
    assert!(
        matches!(err, StoreError::InvalidContinuationToken),
        "{err:?}"
    );

    let err = db
        .store
        .write_model(&StoredModel {
            id: new_ulid(T0),
            store_id: new_ulid(T0),
            schema_version: "1.1".into(),
            model_json: json!({}),
            created_at: T0,
        })
        .await
        .expect_err("unknown store");
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

async fn a_bad_tuple_in_a_batch_writes_nothing(db: TestDatabase) {
    let store = new_store(&db, "atomic").await;
    let seq = write(&db, &store, &[tuple("doc:existing", "viewer", "user:anne")]).await;
    assert_eq!(seq, 1);
    let before = all_tuples(&db, &store).await;

    // 49 good writes and, last, one that exists: the whole batch fails.
    let mut batch: Vec<TupleKey> = (0..49)
        .map(|i| tuple(&format!("doc:{i}"), "viewer", "user:bob"))
        .collect();
    batch.push(tuple("doc:existing", "viewer", "user:anne"));
    let err = db
        .store
        .write_tuples(&store, &batch, &[], STRICT, at(1))
        .await
        .expect_err("one exists");
    assert!(
        matches!(err, TupleWriteError::AlreadyExists { .. }),
        "{err:?}"
    );

    // 49 good writes and one malformed one.
    batch.pop();
    batch.push(tuple("doc:50", "", "user:bob"));
    let err = db
        .store
        .write_tuples(&store, &batch, &[], STRICT, at(1))
        .await
        .expect_err("one malformed");
    assert!(matches!(err, TupleWriteError::InvalidInput(_)), "{err:?}");

    // Good deletes followed by a missing one, together with good writes.
    batch.pop();
    let err = db
        .store
        .write_tuples(
            &store,
            &batch,
            &[
                tuple("doc:existing", "viewer", "user:anne"),
                tuple("doc:missing", "viewer", "user:anne"),
            ],
            STRICT,
            at(1),
        )
        .await
        .expect_err("one missing");
    assert!(
        matches!(err, TupleWriteError::DoesNotExist { .. }),
        "{err:?}"
    );

    assert_eq!(all_tuples(&db, &store).await, before);
    assert_eq!(db.store.store_seq(&store).await.expect("seq"), 1);
    assert_eq!(changes(&db, &store).await.len(), 1);
    let (listed, _) = db
        .store
        .read_changes(&store, None, None, 100, None)
        .await
        .expect("changes");
    assert_eq!(listed.len(), 1);

    // The same batch without the bad tuple goes through as one unit.
    let outcome = db
        .store
        .write_tuples(&store, &batch, &[], STRICT, at(2))
        .await
        .expect("good batch");
    assert_eq!(outcome.seq, 50);
    assert_eq!(all_tuples(&db, &store).await.len(), 50);
}

async fn duplicates_fail_unless_ignored_and_identical(db: TestDatabase) {
    let store = new_store(&db, "dups").await;
    let ctx = context(json!({"ip": "10.0.0.1", "n": [1, 2]}));
    let plain = tuple("doc:1", "viewer", "user:anne");
    let conditioned = tuple("doc:2", "viewer", "user:anne").with_condition("in_net", Some(ctx));
    write(&db, &store, &[plain.clone(), conditioned.clone()]).await;

    let err = db
        .store
        .write_tuples(&store, std::slice::from_ref(&plain), &[], STRICT, at(1))
        .await
        .expect_err("exists");
    assert_eq!(
        err.to_string(),
        "cannot write a tuple which already exists: user: 'user:anne', relation: 'viewer', \
         object: 'doc:1': tuple to be written already existed or the tuple to be deleted did not \
         exist"
    );
    // The condition is not part of a tuple's identity.
    let err = db
        .store
        .write_tuples(
            &store,
            &[plain.clone().with_condition("other", None)],
            &[],
            STRICT,
            at(1),
        )
        .await
        .expect_err("exists with another condition");
    assert!(
        matches!(err, TupleWriteError::AlreadyExists { .. }),
        "{err:?}"
    );

    // Ignore skips identical tuples, and only those.
    let new = tuple("doc:3", "viewer", "user:anne");
    let outcome = db
        .store
        .write_tuples(
            &store,
            &[plain.clone(), conditioned.clone(), new.clone()],
            &[],
            LENIENT,
            at(2),
        )
        .await
        .expect("identical duplicates are skipped");
    assert_eq!(outcome.seq, 3, "only the new tuple is a change");
    let log = changes(&db, &store).await;
    assert_eq!(log.len(), 3);
    assert_eq!(log[2].tuple, new);

    let ignored_everything = db
        .store
        .write_tuples(&store, std::slice::from_ref(&plain), &[], LENIENT, at(3))
        .await
        .expect("all skipped");
    assert_eq!(ignored_everything.seq, 3);

    let differing = [
        plain.clone().with_condition("in_net", None),
        conditioned
            .clone()
            .with_condition("in_net", Some(context(json!({"ip": "10.0.0.2"})))),
        conditioned
            .clone()
            .with_condition("other", conditioned.condition_context().cloned()),
        TupleKey {
            condition: None,
            ..conditioned.clone()
        },
    ];
    for t in differing {
        let err = db
            .store
            .write_tuples(
                &store,
                &[tuple("doc:4", "viewer", "user:x"), t.clone()],
                &[],
                LENIENT,
                at(4),
            )
            .await
            .expect_err("differing condition");
        assert!(
            matches!(err, TupleWriteError::ConditionConflict { .. }),
            "{t:?}: {err:?}"
        );
        assert!(
            err.to_string().starts_with(
                "cannot write a tuple which already exists with a different condition: user: "
            ),
            "{err}"
        );
    }
    assert_eq!(db.store.store_seq(&store).await.expect("seq"), 3);
    let stored = all_tuples(&db, &store).await;
    assert_eq!(stored, vec![plain, conditioned, new]);
}

async fn missing_deletes_fail_unless_ignored(db: TestDatabase) {
    let store = new_store(&db, "missing").await;
    let kept = tuple("doc:1", "viewer", "user:anne");
    write(&db, &store, std::slice::from_ref(&kept)).await;
    let missing = tuple("doc:1", "viewer", "user:bob");

    for on_duplicate in [OnDuplicate::Error, OnDuplicate::Ignore] {
        let err = db
            .store
            .write_tuples(
                &store,
                &[],
                std::slice::from_ref(&missing),
                WriteOptions {
                    on_duplicate,
                    on_missing: OnMissing::Error,
                },
                at(1),
            )
            .await
            .expect_err("missing");
        assert_eq!(
            err.to_string(),
            "cannot delete a tuple which does not exist: user: 'user:bob', relation: 'viewer', \
             object: 'doc:1': tuple to be written already existed or the tuple to be deleted did \
             not exist"
        );
    }
    let outcome = db
        .store
        .write_tuples(
            &store,
            &[],
            std::slice::from_ref(&missing),
            WriteOptions {
                on_duplicate: OnDuplicate::Error,
                on_missing: OnMissing::Ignore,
            },
            at(1),
        )
        .await
        .expect("ignored");
    assert_eq!(outcome.seq, 1, "nothing changed");

    // A missing delete ignored next to a real one: only the real one is logged.
    let outcome = db
        .store
        .write_tuples(&store, &[], &[missing, kept.clone()], LENIENT, at(2))
        .await
        .expect("delete");
    assert_eq!(outcome.seq, 2);
    let log = changes(&db, &store).await;
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].operation, TupleOperation::Delete);
    assert_eq!(log[1].tuple, kept);
    assert_eq!(log[1].timestamp, at(2));
    assert!(all_tuples(&db, &store).await.is_empty());
}

async fn the_same_tuple_twice_in_a_request_is_refused(db: TestDatabase) {
    let store = new_store(&db, "twice").await;
    let existing = tuple("doc:1", "viewer", "user:anne");
    write(&db, &store, std::slice::from_ref(&existing)).await;
    let fresh = tuple("doc:2", "viewer", "user:anne");
    let cases: Vec<(Vec<TupleKey>, Vec<TupleKey>)> = vec![
        (vec![fresh.clone(), fresh.clone()], vec![]),
        // Identity ignores the condition.
        (
            vec![fresh.clone(), fresh.clone().with_condition("c", None)],
            vec![],
        ),
        (vec![], vec![existing.clone(), existing.clone()]),
        (vec![existing.clone()], vec![existing.clone()]),
    ];
    for (writes, deletes) in cases {
        for options in [STRICT, LENIENT] {
            let err = db
                .store
                .write_tuples(&store, &writes, &deletes, options, at(1))
                .await
                .expect_err("duplicate in request");
            assert!(
                matches!(err, TupleWriteError::DuplicateInRequest { .. }),
                "{writes:?} {deletes:?}: {err:?}"
            );
            assert!(
                err.to_string().starts_with(
                    "duplicate tuple in write: user: 'user:anne', relation: 'viewer', object: 'doc:"
                ),
                "{err}"
            );
        }
    }
    assert_eq!(all_tuples(&db, &store).await, vec![existing]);
    assert_eq!(db.store.store_seq(&store).await.expect("seq"), 1);
}

async fn conditions_are_stored_and_returned(db: TestDatabase) {
    let store = new_store(&db, "conditions").await;
    let ctx = context(json!({
        "allowed": ["10.0.0.0/8", "192.168.0.0/16"],
        "limit": 3.5,
        "nested": {"deep": {"yes": true, "none": null}},
        "unicode": "grüße ✓",
    }));
    let conditioned = tuple("doc:1", "viewer", "user:anne").with_condition("in_net", Some(ctx));
    let name_only = tuple("doc:1", "editor", "user:anne").with_condition("business_hours", None);
    write(&db, &store, &[conditioned.clone(), name_only.clone()]).await;

    let read = read_all(&db, &store, &TupleFilter::default(), 10).await;
    assert_eq!(read.len(), 2);
    assert_eq!(read[0].tuple, name_only, "editor sorts before viewer");
    assert_eq!(read[1].tuple, conditioned);
    assert_eq!(read[1].timestamp, T0);

    let snapshot = db.store.load_tuples(&store).await.expect("load");
    assert_eq!(
        snapshot.tuples,
        vec![name_only.clone(), conditioned.clone()]
    );

    db.store
        .write_tuples(
            &store,
            &[],
            &[tuple("doc:1", "viewer", "user:anne")],
            STRICT,
            at(1),
        )
        .await
        .expect("delete");
    let log = changes(&db, &store).await;
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].tuple, conditioned);
    assert_eq!(log[0].operation, TupleOperation::Write);
    // The delete entry carries the condition the removed tuple had.
    assert_eq!(log[2].tuple, conditioned);
    assert_eq!(log[2].operation, TupleOperation::Delete);
}

fn fixture() -> Vec<TupleKey> {
    let mut tuples = Vec::new();
    // Ids that sort differently under locale collations than bytewise: B < _ < a < é.
    for id in ["a", "B", "_x", "é", "a-1"] {
        for relation in ["viewer", "editor"] {
            tuples.push(tuple(&format!("doc:{id}"), relation, "user:anne"));
            tuples.push(tuple(&format!("doc:{id}"), relation, "group:eng#member"));
        }
        tuples.push(tuple(&format!("doc:{id}"), "viewer", "user:*"));
    }
    for id in ["root", "sub"] {
        tuples.push(tuple(&format!("folder:{id}"), "viewer", "user:anne"));
        tuples.push(tuple(&format!("folder:{id}"), "owner", "user:bob"));
    }
    // A type whose name is a prefix of another's.
    tuples.push(tuple("doc2:a", "viewer", "user:anne"));
    tuples.push(tuple("do:a", "viewer", "user:anne"));
    tuples
}

fn sorted_keys(mut tuples: Vec<TupleKey>) -> Vec<(String, String, String)> {
    tuples.sort_by(|a, b| {
        let split = |t: &TupleKey| {
            let (ty, id) = t.object.split_once(':').expect("type:id");
            (
                ty.to_owned(),
                id.to_owned(),
                t.relation.clone(),
                t.user.clone(),
            )
        };
        split(a).cmp(&split(b))
    });
    keys(&tuples)
}

async fn read_filters_select_exactly(db: TestDatabase) {
    let store = new_store(&db, "filters").await;
    let other = new_store(&db, "other").await;
    let all = fixture();
    write(&db, &store, &all).await;
    write(&db, &other, &all[..3]).await;

    let filter =
        |ty: Option<&str>, id: Option<&str>, rel: Option<&str>, user: Option<&str>| TupleFilter {
            object_type: ty.map(String::from),
            object_id: id.map(String::from),
            relation: rel.map(String::from),
            user: user.map(String::from),
        };
    let cases = [
        filter(None, None, None, None),
        filter(Some("doc"), None, None, None),
        filter(Some("folder"), None, None, None),
        filter(Some("doc"), Some("a"), None, None),
        filter(Some("doc"), Some("é"), Some("viewer"), None),
        filter(None, None, Some("owner"), None),
        filter(None, None, None, Some("user:anne")),
        filter(None, None, None, Some("user:*")),
        filter(None, None, None, Some("group:eng#member")),
        filter(None, None, None, Some("group:eng")),
        filter(Some("doc"), None, Some("editor"), Some("group:eng#member")),
        filter(Some("doc"), Some("a"), Some("viewer"), Some("user:anne")),
        filter(Some("do"), None, None, None),
        filter(Some("nothing"), None, None, None),
    ];
    for f in cases {
        let expected: Vec<TupleKey> = all
            .iter()
            .filter(|t| {
                let (ty, id) = t.object.split_once(':').expect("type:id");
                f.object_type.as_deref().is_none_or(|x| x == ty)
                    && f.object_id.as_deref().is_none_or(|x| x == id)
                    && f.relation.as_deref().is_none_or(|x| x == t.relation)
                    && f.user.as_deref().is_none_or(|x| x == t.user)
            })
            .cloned()
            .collect();
        let got: Vec<TupleKey> = read_all(&db, &store, &f, 1000)
            .await
            .into_iter()
            .map(|t| t.tuple)
            .collect();
        // Exact set and the documented bytewise order, on every backend.
        assert_eq!(keys(&got), sorted_keys(expected), "{f:?}");
    }
}

async fn read_pages_walk_everything_once(db: TestDatabase) {
    let store = new_store(&db, "pages").await;
    let all = fixture();
    write(&db, &store, &all).await;
    let filters = [
        TupleFilter::default(),
        TupleFilter {
            object_type: Some("doc".into()),
            ..TupleFilter::default()
        },
        TupleFilter {
            user: Some("user:anne".into()),
            ..TupleFilter::default()
        },
    ];
    for filter in filters {
        let whole = read_all(&db, &store, &filter, MAX_PAGE_SIZE).await;
        assert!(!whole.is_empty());
        for page_size in [1, 2, 3, 7, whole.len() as u32, whole.len() as u32 + 1] {
            let paged = read_all(&db, &store, &filter, page_size).await;
            assert_eq!(paged, whole, "page size {page_size}, {filter:?}");
        }
        // An exactly full last page is followed by no token.
        let (page, next) = db
            .store
            .read_tuples(&store, &filter, whole.len() as u32, None)
            .await
            .expect("read");
        assert_eq!(page.len(), whole.len());
        assert_eq!(next, None);
    }
    // Tuples written behind the cursor are not returned, those ahead of it are.
    let (first, token) = db
        .store
        .read_tuples(&store, &TupleFilter::default(), 2, None)
        .await
        .expect("read");
    write(
        &db,
        &store,
        &[tuple("a:0", "r", "user:x"), tuple("zz:0", "r", "user:x")],
    )
    .await;
    let rest = read_all_from(&db, &store, token.expect("more")).await;
    let seen: Vec<_> = first
        .iter()
        .chain(&rest)
        .map(|t| t.tuple.object.clone())
        .collect();
    assert!(!seen.contains(&"a:0".to_owned()));
    assert_eq!(seen.last().map(String::as_str), Some("zz:0"));
    assert_eq!(seen.len(), all.len() + 1);
}

async fn read_all_from(db: &TestDatabase, store: &str, token: String) -> Vec<StoredTuple> {
    let mut out = Vec::new();
    let mut token = Some(token);
    while let Some(t) = token {
        let (page, next) = db
            .store
            .read_tuples(store, &TupleFilter::default(), 3, Some(&t))
            .await
            .expect("read");
        out.extend(page);
        token = next;
    }
    out
}

async fn read_refuses_bad_tokens_and_input(db: TestDatabase) {
    let store = new_store(&db, "tokens").await;
    let other = new_store(&db, "other").await;
    write(&db, &store, &fixture()).await;
    let all = TupleFilter::default();
    let (_, token) = db
        .store
        .read_tuples(&store, &all, 1, None)
        .await
        .expect("read");
    let token = token.expect("more");
    let (_, stores_token) = db
        .store
        .list_fga_stores(1, None, None)
        .await
        .expect("stores");
    let stores_token = stores_token.expect("two stores");
    let (_, changes_token) = db
        .store
        .read_changes(&store, None, None, 1, None)
        .await
        .expect("changes");

    let mut truncated = token.clone();
    truncated.truncate(token.len() / 2);
    let bad = [
        String::new(),
        "%%%".into(),
        "AAAA".into(),
        truncated,
        format!("{token}x"),
        stores_token,
        changes_token,
        "A".repeat(100_000),
    ];
    for t in &bad {
        let err = db
            .store
            .read_tuples(&store, &all, 5, Some(t))
            .await
            .expect_err("bad token");
        assert!(
            matches!(err, StoreError::InvalidContinuationToken),
            "{t:.40}: {err:?}"
        );
    }
    let err = db
        .store
        .read_tuples(&other, &all, 5, Some(&token))
        .await
        .expect_err("token of another store");
    assert!(
        matches!(err, StoreError::InvalidContinuationToken),
        "{err:?}"
    );

    for page_size in [0, MAX_PAGE_SIZE + 1] {
        let err = db
            .store
            .read_tuples(&store, &all, page_size, None)
            .await
            .expect_err("page size");
        assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    }
    let id_without_type = TupleFilter {
        object_id: Some("a".into()),
        ..TupleFilter::default()
    };
    let empty_relation = TupleFilter {
        relation: Some(String::new()),
        ..TupleFilter::default()
    };
    for f in [id_without_type, empty_relation] {
        let err = db
            .store
            .read_tuples(&store, &f, 5, None)
            .await
            .expect_err("bad filter");
        assert!(matches!(err, StoreError::InvalidInput(_)), "{f:?}: {err:?}");
    }
    let err = db
        .store
        .read_tuples(&new_ulid(T0), &all, 5, None)
        .await
        .expect_err("unknown store");
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

async fn changes_page_filter_by_type_and_start_time(db: TestDatabase) {
    let store = new_store(&db, "changes").await;
    // seq 1..=3 at t=10 (docs), 4..=5 at t=20 (folders), 6 at t=30 (a doc delete), 7 at t=40.
    db.store
        .write_tuples(
            &store,
            &[
                tuple("doc:1", "viewer", "user:a"),
                tuple("doc:2", "viewer", "user:a"),
                tuple("doc:3", "viewer", "user:a"),
            ],
            &[],
            STRICT,
            at(10),
        )
        .await
        .expect("docs");
    db.store
        .write_tuples(
            &store,
            &[
                tuple("folder:1", "viewer", "user:a"),
                tuple("folder:2", "viewer", "user:a"),
            ],
            &[],
            STRICT,
            at(20),
        )
        .await
        .expect("folders");
    db.store
        .write_tuples(
            &store,
            &[],
            &[tuple("doc:2", "viewer", "user:a")],
            STRICT,
            at(30),
        )
        .await
        .expect("delete");
    db.store
        .write_tuples(
            &store,
            &[tuple("doc:4", "viewer", "user:a")],
            &[],
            STRICT,
            at(40),
        )
        .await
        .expect("doc 4");

    async fn walk(
        db: &TestDatabase,
        store: &str,
        object_type: Option<&str>,
        start: Option<OffsetDateTime>,
        page_size: u32,
    ) -> Vec<TupleChangeRecord> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (page, next) = db
                .store
                .read_changes(store, object_type, start, page_size, token.as_deref())
                .await
                .expect("read changes");
            assert!(page.len() <= page_size as usize);
            if page.is_empty() {
                // The end position is stable: resuming from it changes nothing.
                let (again, same) = db
                    .store
                    .read_changes(store, object_type, start, page_size, Some(&next))
                    .await
                    .expect("read changes at end");
                assert!(again.is_empty());
                assert_eq!(same, next);
                return out;
            }
            out.extend(page);
            token = Some(next);
        }
    }
    let seqs = |c: &[TupleChangeRecord]| c.iter().map(|c| c.seq).collect::<Vec<_>>();

    for page_size in [1, 2, 3, 100] {
        let all = walk(&db, &store, None, None, page_size).await;
        assert_eq!(
            seqs(&all),
            (1..=7).collect::<Vec<_>>(),
            "page size {page_size}"
        );
        assert_eq!(all[5].operation, TupleOperation::Delete);
        assert_eq!(all[5].tuple.object, "doc:2");
        assert_eq!(all[5].timestamp, at(30));
        assert_eq!(all[0].timestamp, at(10));

        let docs = walk(&db, &store, Some("doc"), None, page_size).await;
        assert_eq!(seqs(&docs), vec![1, 2, 3, 6, 7]);
        let folders = walk(&db, &store, Some("folder"), None, page_size).await;
        assert_eq!(seqs(&folders), vec![4, 5]);
        assert!(
            walk(&db, &store, Some("nothing"), None, page_size)
                .await
                .is_empty()
        );

        let since_20 = walk(&db, &store, None, Some(at(20)), page_size).await;
        assert_eq!(seqs(&since_20), vec![4, 5, 6, 7], "start time is inclusive");
        let docs_since_25 = walk(&db, &store, Some("doc"), Some(at(25)), page_size).await;
        assert_eq!(seqs(&docs_since_25), vec![6, 7]);
        assert!(
            walk(&db, &store, None, Some(at(41)), page_size)
                .await
                .is_empty()
        );
    }

    // With a token, start_time is ignored.
    let (first, token) = db
        .store
        .read_changes(&store, None, None, 2, None)
        .await
        .expect("first page");
    assert_eq!(seqs(&first), vec![1, 2]);
    let (next, _) = db
        .store
        .read_changes(&store, None, Some(at(35)), 2, Some(&token))
        .await
        .expect("next page");
    assert_eq!(seqs(&next), vec![3, 4]);

    // A token is bound to its type filter.
    let (_, doc_token) = db
        .store
        .read_changes(&store, Some("doc"), None, 1, None)
        .await
        .expect("docs");
    for object_type in [None, Some("folder")] {
        let err = db
            .store
            .read_changes(&store, object_type, None, 1, Some(&doc_token))
            .await
            .expect_err("mismatched type");
        assert!(
            matches!(err, StoreError::InvalidContinuationToken),
            "{err:?}"
        );
    }
    let err = db
        .store
        .read_changes(&store, None, None, 1, Some("garbage"))
        .await
        .expect_err("garbage");
    assert!(
        matches!(err, StoreError::InvalidContinuationToken),
        "{err:?}"
    );
}

async fn changes_token_resumes_from_the_end(db: TestDatabase) {
    let store = new_store(&db, "resume").await;
    // No changes at all: the token still lets the caller poll.
    let (none, token) = db
        .store
        .read_changes(&store, None, None, 10, None)
        .await
        .expect("empty");
    assert!(none.is_empty());
    write(&db, &store, &[tuple("doc:1", "viewer", "user:a")]).await;
    let (page, token) = db
        .store
        .read_changes(&store, None, None, 10, Some(&token))
        .await
        .expect("after first write");
    assert_eq!(page.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![1]);

    // At the end, the same position comes back, and only later changes follow.
    let (empty, same) = db
        .store
        .read_changes(&store, None, None, 10, Some(&token))
        .await
        .expect("at end");
    assert!(empty.is_empty());
    assert_eq!(same, token);
    write(&db, &store, &[tuple("doc:2", "viewer", "user:a")]).await;
    let (page, _) = db
        .store
        .read_changes(&store, None, None, 10, Some(&same))
        .await
        .expect("new change");
    assert_eq!(page.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![2]);

    // A type-filtered poll that matched nothing still moves past the changes it skipped, and a
    // start time that matched nothing does not send the caller back to the beginning.
    let (none, folder_token) = db
        .store
        .read_changes(&store, Some("folder"), None, 10, None)
        .await
        .expect("folders");
    assert!(none.is_empty());
    write(&db, &store, &[tuple("folder:1", "viewer", "user:a")]).await;
    let (page, _) = db
        .store
        .read_changes(&store, Some("folder"), None, 10, Some(&folder_token))
        .await
        .expect("folder change");
    assert_eq!(page.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![3]);

    let (none, late_token) = db
        .store
        .read_changes(&store, None, Some(at(3600)), 10, None)
        .await
        .expect("nothing that late");
    assert!(none.is_empty());
    let (none, _) = db
        .store
        .read_changes(&store, None, None, 10, Some(&late_token))
        .await
        .expect("resume");
    assert!(none.is_empty(), "old changes must not come back: {none:?}");
}

async fn load_and_changes_since_agree(db: TestDatabase) {
    let store = new_store(&db, "index").await;
    let empty = db.store.load_tuples(&store).await.expect("load empty");
    assert_eq!((empty.tuples.len(), empty.seq), (0, 0));
    assert!(changes(&db, &store).await.is_empty());

    write(&db, &store, &fixture()).await;
    db.store
        .write_tuples(
            &store,
            &[tuple("doc:new", "viewer", "user:c").with_condition("c", None)],
            &[
                tuple("doc:a", "viewer", "user:*"),
                tuple("folder:root", "owner", "user:bob"),
            ],
            STRICT,
            at(1),
        )
        .await
        .expect("mixed");
    let snapshot = db.store.load_tuples(&store).await.expect("load");
    assert_eq!(snapshot.seq, db.store.store_seq(&store).await.expect("seq"));
    assert_eq!(snapshot.tuples, all_tuples(&db, &store).await);

    // Replaying the whole changelog rebuilds the snapshot.
    let log = changes(&db, &store).await;
    assert_eq!(log.len() as i64, snapshot.seq);
    assert_eq!(
        log.iter().map(|c| c.seq).collect::<Vec<_>>(),
        (1..=snapshot.seq).collect::<Vec<_>>()
    );
    let replayed = replay(Vec::new(), &log);
    assert_eq!(sorted_keys(replayed), sorted_keys(snapshot.tuples.clone()));

    // Limits page the changelog; nothing after the newest seq.
    let first = db.store.changes_since(&store, 0, 5).await.expect("limit");
    assert_eq!(
        first.iter().map(|c| c.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    let next = db.store.changes_since(&store, 5, 2).await.expect("after 5");
    assert_eq!(next.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![6, 7]);
    assert!(
        db.store
            .changes_since(&store, snapshot.seq, 10)
            .await
            .expect("end")
            .is_empty()
    );

    // Catching up from the snapshot gives what a fresh load gives.
    write(&db, &store, &[tuple("doc:later", "viewer", "user:d")]).await;
    db.store
        .write_tuples(
            &store,
            &[],
            &[tuple("doc:new", "viewer", "user:c")],
            STRICT,
            at(2),
        )
        .await
        .expect("delete");
    let delta = db
        .store
        .changes_since(&store, snapshot.seq, 100)
        .await
        .expect("delta");
    assert_eq!(delta.len(), 2);
    let caught_up = replay(snapshot.tuples, &delta);
    let fresh = db.store.load_tuples(&store).await.expect("reload");
    assert_eq!(fresh.seq, snapshot.seq + 2);
    assert_eq!(sorted_keys(caught_up), sorted_keys(fresh.tuples));

    let err = db
        .store
        .changes_since(&store, -1, 10)
        .await
        .expect_err("negative");
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    let err = db
        .store
        .changes_since(&store, 0, 0)
        .await
        .expect_err("zero limit");
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
}

fn replay(mut tuples: Vec<TupleKey>, log: &[TupleChangeRecord]) -> Vec<TupleKey> {
    for change in log {
        let same = |t: &TupleKey| {
            (t.object.as_str(), t.relation.as_str(), t.user.as_str())
                == (
                    change.tuple.object.as_str(),
                    change.tuple.relation.as_str(),
                    change.tuple.user.as_str(),
                )
        };
        match change.operation {
            TupleOperation::Write => {
                assert!(!tuples.iter().any(same), "write of a present tuple");
                tuples.push(change.tuple.clone());
            }
            TupleOperation::Delete => {
                let before = tuples.len();
                tuples.retain(|t| !same(t));
                assert_eq!(tuples.len(), before - 1, "delete of an absent tuple");
            }
        }
    }
    tuples
}

async fn snapshots_are_consistent_under_concurrent_writes(db: TestDatabase) {
    let store = new_store(&db, "snapshots").await;
    // Each write adds exactly one tuple, so a consistent snapshot has as many tuples as its seq.
    // Three writers commit often enough that a load reading its seq and its tuples at different
    // moments is caught in practice (the check is probabilistic, never flaky when correct).
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let handle: Arc<dyn Store> = Arc::clone(&db.store);
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    let t = tuple(&format!("doc:{w}-{i}"), "viewer", "user:a");
                    handle
                        .write_tuples(&store, &[t], &[], STRICT, T0)
                        .await
                        .expect("write");
                }
            })
        })
        .collect();
    let mut loads = 0;
    while writers.iter().any(|w| !w.is_finished()) || loads == 0 {
        let snapshot = db.store.load_tuples(&store).await.expect("load");
        assert_eq!(snapshot.tuples.len() as i64, snapshot.seq, "torn snapshot");
        loads += 1;
    }
    for w in writers {
        w.await.expect("writer");
    }
    let last = db.store.load_tuples(&store).await.expect("load");
    assert_eq!((last.tuples.len(), last.seq), (150, 150));
}

async fn concurrent_writers_get_gapless_seqs(db: TestDatabase) {
    let store = new_store(&db, "concurrent").await;
    let bystander = new_store(&db, "bystander").await;
    let mut tasks = Vec::new();
    for task in 0..4 {
        let handle: Arc<dyn Store> = Arc::clone(&db.store);
        let store = store.clone();
        let bystander = bystander.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for i in 0..25 {
                let t = tuple(&format!("doc:{task}-{i}"), "viewer", "user:a");
                let outcome = handle
                    .write_tuples(&store, std::slice::from_ref(&t), &[], STRICT, T0)
                    .await
                    .expect("write");
                outcomes.push((outcome.seq, t));
                if i % 5 == 0 {
                    let b = tuple(&format!("doc:{task}-{i}"), "viewer", "user:b");
                    handle
                        .write_tuples(&bystander, &[b], &[], STRICT, T0)
                        .await
                        .expect("bystander write");
                }
            }
            outcomes
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        let mine = task.await.expect("task");
        // Each writer sees its own seqs strictly increase.
        assert!(mine.windows(2).all(|w| w[0].0 < w[1].0), "{mine:?}");
        outcomes.extend(mine);
    }
    outcomes.sort_by_key(|(seq, _)| *seq);
    assert_eq!(
        outcomes.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=100).collect::<Vec<_>>()
    );
    let log = changes(&db, &store).await;
    assert_eq!(
        log.iter().map(|c| c.seq).collect::<Vec<_>>(),
        (1..=100).collect::<Vec<_>>()
    );
    // The seq a writer was told is the seq its change was logged under.
    for ((seq, t), change) in outcomes.iter().zip(&log) {
        assert_eq!((*seq, t), (change.seq, &change.tuple));
    }
    assert_eq!(db.store.store_seq(&store).await.expect("seq"), 100);
    assert_eq!(db.store.store_seq(&bystander).await.expect("seq"), 20);
    assert_eq!(
        changes(&db, &bystander)
            .await
            .iter()
            .map(|c| c.seq)
            .collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
}

async fn empty_and_absurd_input_is_refused(db: TestDatabase) {
    let store = new_store(&db, "input").await;
    let long = "x".repeat(MAX_FIELD_BYTES + 1);
    for (id, name) in [
        ("", "n"),
        ("id", ""),
        (long.as_str(), "n"),
        ("id", long.as_str()),
        ("id", "a\0b"),
    ] {
        let err = db
            .store
            .create_fga_store(id, name, T0)
            .await
            .expect_err("bad store");
        assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    }
    for id in ["", long.as_str()] {
        let err = db.store.get_fga_store(id).await.expect_err("bad id");
        assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
        let err = db.store.store_seq(id).await.expect_err("bad id");
        assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    }
    let long_object = format!("doc:{long}");
    let bad_tuples = [
        tuple("", "viewer", "user:a"),
        tuple("doc", "viewer", "user:a"),
        tuple("doc:", "viewer", "user:a"),
        tuple(":1", "viewer", "user:a"),
        tuple("doc:1", "", "user:a"),
        tuple("doc:1", "viewer", ""),
        tuple(&long_object, "viewer", "user:a"),
        tuple("doc:1", "viewer", "user:\0"),
        tuple("doc:1", "viewer", "user:a").with_condition("", None),
        tuple("doc:1", "viewer", "user:a")
            .with_condition("c", Some(context(json!({"big": "y".repeat(70 * 1024)})))),
        tuple("doc:1", "viewer", "user:a")
            .with_condition("c", Some(context(json!({"nul": "a\u{0}b"})))),
    ];
    for t in &bad_tuples {
        for (writes, deletes) in [
            (std::slice::from_ref(t), &[][..]),
            (&[][..], std::slice::from_ref(t)),
        ] {
            let err = db
                .store
                .write_tuples(&store, writes, deletes, LENIENT, T0)
                .await
                .expect_err("bad tuple");
            assert!(
                matches!(err, TupleWriteError::InvalidInput(_)),
                "{t:.60?}: {err:?}"
            );
            assert!(
                err.to_string().len() < 600,
                "message echoes too much: {err}"
            );
        }
    }
    let model = StoredModel {
        id: new_ulid(T0),
        store_id: store.clone(),
        schema_version: "1.1".into(),
        model_json: json!({"nul": "\u{0}"}),
        created_at: T0,
    };
    let err = db
        .store
        .write_model(&model)
        .await
        .expect_err("NUL in model");
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    let err = db
        .store
        .write_model(&StoredModel {
            schema_version: String::new(),
            model_json: json!({}),
            ..model
        })
        .await
        .expect_err("empty schema version");
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    assert_eq!(db.store.store_seq(&store).await.expect("seq"), 0);
    assert!(all_tuples(&db, &store).await.is_empty());
}

async fn object_attributes_are_replaced_read_bounded_and_deleted_with_the_store(db: TestDatabase) {
    let store = new_store(&db, "attributes").await;
    let attrs = |v: Value| match v {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let s = &*db.store;
    assert!(
        !s.has_object_attributes(&store).await.expect("probe"),
        "a new store keeps none"
    );
    s.put_object_attributes(&store, "record:101", &attrs(json!({ "dept": "eng" })), T0)
        .await
        .expect("put");
    s.put_object_attributes(&store, "record:101", &attrs(json!({ "dept": "ops" })), T0)
        .await
        .expect("replace");
    s.put_object_attributes(&store, "user:alice", &attrs(json!({ "email": "a@x" })), T0)
        .await
        .expect("put");
    let read = s
        .get_object_attributes(&store, &["record:101", "user:alice", "user:bob"])
        .await
        .expect("read");
    assert_eq!(
        read,
        vec![
            ("record:101".to_owned(), attrs(json!({ "dept": "ops" }))),
            ("user:alice".to_owned(), attrs(json!({ "email": "a@x" }))),
        ]
    );
    // Bounded: the size of one object's attributes, the objects of one read, the object.
    let big = attrs(json!({ "blob": "x".repeat(16 * 1024) }));
    assert!(matches!(
        s.put_object_attributes(&store, "record:1", &big, T0).await,
        Err(StoreError::InvalidInput(_))
    ));
    let many: Vec<String> = (0..101).map(|i| format!("record:{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert!(matches!(
        s.get_object_attributes(&store, &many).await,
        Err(StoreError::InvalidInput(_))
    ));
    assert!(matches!(
        s.put_object_attributes(&store, "nocolon", &attrs(json!({})), T0)
            .await,
        Err(StoreError::InvalidInput(_))
    ));
    // Deleted one by one, and with the store.
    assert!(
        s.delete_object_attributes(&store, "user:alice")
            .await
            .expect("delete")
    );
    assert!(
        !s.delete_object_attributes(&store, "user:alice")
            .await
            .expect("again")
    );
    assert!(s.has_object_attributes(&store).await.expect("probe"));
    assert!(
        s.delete_object_attributes(&store, "record:101")
            .await
            .expect("delete the last")
    );
    assert!(
        !s.has_object_attributes(&store).await.expect("probe"),
        "none left"
    );
    s.put_object_attributes(&store, "record:101", &attrs(json!({ "dept": "eng" })), T0)
        .await
        .expect("put again");
    assert!(s.delete_fga_store(&store, T0).await.expect("delete store"));
    assert!(
        !s.has_object_attributes(&store).await.expect("probe"),
        "deleted with the store"
    );
    assert!(matches!(
        s.get_object_attributes(&store, &["record:101"]).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.put_object_attributes(&store, "record:101", &attrs(json!({})), T0)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

async fn imports_skip_existing_tuples_and_log_each_new_one(db: TestDatabase) {
    let store = new_store(&db, "import").await;
    write(&db, &store, &[tuple("doc:0", "viewer", "user:old")]).await;
    let batch = vec![
        tuple("doc:1", "viewer", "user:anne"),
        tuple("doc:0", "viewer", "user:old"),
        tuple("doc:2", "viewer", "user:bob").with_condition("c", Some(context(json!({"x": 1})))),
        tuple("doc:3", "editor", "user:*"),
    ];
    let first = db
        .store
        .import_tuples(&store, &batch, at(5))
        .await
        .expect("import");
    assert_eq!((first.seq, first.written, first.existing), (4, 3, 1));

    // One changelog row per new tuple, in input order, as a write would have left.
    let log = changes(&db, &store).await;
    assert_eq!(log.len(), 4);
    let imported: Vec<_> = log[1..].iter().map(|c| (c.seq, c.tuple.clone())).collect();
    assert_eq!(
        imported,
        vec![
            (2, batch[0].clone()),
            (3, batch[2].clone()),
            (4, batch[3].clone())
        ]
    );
    assert!(
        log[1..]
            .iter()
            .all(|c| c.operation == TupleOperation::Write && c.timestamp == at(5))
    );
    assert_eq!(db.store.store_seq(&store).await.expect("seq"), 4);
    let mut expected = batch.clone();
    expected
        .sort_by(|a, b| (&a.object, &a.relation, &a.user).cmp(&(&b.object, &b.relation, &b.user)));
    assert_eq!(all_tuples(&db, &store).await, expected);

    // A re-run writes nothing and leaves the changelog alone.
    let again = db
        .store
        .import_tuples(&store, &batch, at(6))
        .await
        .expect("re-run");
    assert_eq!((again.seq, again.written, again.existing), (4, 0, 4));
    assert_eq!(changes(&db, &store).await.len(), 4);

    // The same identity with another condition fails the whole batch.
    let conflicting = [
        tuple("doc:4", "viewer", "user:new"),
        tuple("doc:2", "viewer", "user:bob").with_condition("c", Some(context(json!({"x": 2})))),
    ];
    let err = db
        .store
        .import_tuples(&store, &conflicting, at(7))
        .await
        .expect_err("condition conflict");
    assert!(
        matches!(err, TupleWriteError::ConditionConflict { .. }),
        "{err:?}"
    );
    let err = db
        .store
        .import_tuples(
            &store,
            &[
                tuple("doc:4", "viewer", "user:new"),
                tuple("doc:4", "viewer", "user:new"),
            ],
            at(7),
        )
        .await
        .expect_err("twice in the batch");
    assert!(
        matches!(err, TupleWriteError::DuplicateInRequest { .. }),
        "{err:?}"
    );
    let err = db
        .store
        .import_tuples(
            &store,
            &[
                tuple("doc:4", "viewer", "user:new"),
                tuple("doc", "viewer", "user:x"),
            ],
            at(7),
        )
        .await
        .expect_err("invalid object");
    assert!(matches!(err, TupleWriteError::InvalidInput(_)), "{err:?}");
    assert_eq!(db.store.store_seq(&store).await.expect("seq"), 4);
    assert_eq!(all_tuples(&db, &store).await.len(), 4);

    // Too many tuples in one call: refused before the database is touched.
    let oversized: Vec<_> = (0..=MAX_IMPORT_BATCH)
        .map(|i| tuple(&format!("doc:{i}"), "viewer", "user:x"))
        .collect();
    let err = db
        .store
        .import_tuples(&store, &oversized, at(8))
        .await
        .expect_err("oversized");
    match err {
        TupleWriteError::InvalidInput(message) => {
            assert!(
                message.contains(&format!("at most {MAX_IMPORT_BATCH} tuples")),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }

    // A deleted store takes no import.
    assert!(
        db.store
            .delete_fga_store(&store, at(9))
            .await
            .expect("delete")
    );
    let err = db
        .store
        .import_tuples(&store, &batch, at(10))
        .await
        .expect_err("deleted store");
    assert!(matches!(err, TupleWriteError::StoreNotFound(_)), "{err:?}");
    let err = db
        .store
        .import_tuples("01NOSUCHSTORE", &batch, at(10))
        .await
        .expect_err("unknown store");
    assert!(matches!(err, TupleWriteError::StoreNotFound(_)), "{err:?}");
}

async fn imports_span_several_statements_and_fail_whole(db: TestDatabase) {
    // A full batch needs several multi-row statements on both backends (their parameter limits).
    let store = new_store(&db, "big import").await;
    let batch: Vec<_> = (0..MAX_IMPORT_BATCH)
        .map(|i| tuple(&format!("doc:{i}"), "viewer", &format!("user:{}", i % 97)))
        .collect();
    let half = &batch[..MAX_IMPORT_BATCH / 2];
    let done = db
        .store
        .import_tuples(&store, half, at(1))
        .await
        .expect("half");
    assert_eq!((done.written, done.existing), (half.len() as u64, 0));
    let done = db
        .store
        .import_tuples(&store, &batch, at(2))
        .await
        .expect("all");
    assert_eq!(
        (done.seq, done.written, done.existing),
        (
            MAX_IMPORT_BATCH as i64,
            (MAX_IMPORT_BATCH - half.len()) as u64,
            half.len() as u64
        )
    );
    let snapshot = db.store.load_tuples(&store).await.expect("load");
    assert_eq!(snapshot.tuples.len(), MAX_IMPORT_BATCH);
    let mut seqs = Vec::new();
    let mut after = 0;
    loop {
        let page = db
            .store
            .changes_since(&store, after, MAX_PAGE_SIZE)
            .await
            .expect("changes");
        let Some(last) = page.last() else { break };
        after = last.seq;
        seqs.extend(page.iter().map(|c| c.seq));
    }
    assert_eq!(seqs, (1..=MAX_IMPORT_BATCH as i64).collect::<Vec<_>>());
    assert_eq!(
        sorted_keys(replay(Vec::new(), &changes(&db, &store).await)).len(),
        MAX_PAGE_SIZE as usize
    );

    // A conflict in the last statement of a batch undoes the statements before it.
    let other = new_store(&db, "undone").await;
    let mut failing: Vec<_> = (0..MAX_IMPORT_BATCH - 1)
        .map(|i| tuple(&format!("doc:{i}"), "viewer", "user:x"))
        .collect();
    failing.push(tuple("doc:0", "viewer", "user:x"));
    let err = db
        .store
        .import_tuples(&other, &failing, at(3))
        .await
        .expect_err("duplicate at the end");
    assert!(
        matches!(err, TupleWriteError::DuplicateInRequest { .. }),
        "{err:?}"
    );
    write(
        &db,
        &other,
        &[tuple("doc:9998", "viewer", "user:x").with_condition("c", None)],
    )
    .await;
    failing.pop();
    let err = db
        .store
        .import_tuples(&other, &failing, at(4))
        .await
        .expect_err("conflict at the end");
    assert!(
        matches!(err, TupleWriteError::ConditionConflict { .. }),
        "{err:?}"
    );
    assert_eq!(
        db.store
            .load_tuples(&other)
            .await
            .expect("load")
            .tuples
            .len(),
        1
    );
    assert_eq!(db.store.store_seq(&other).await.expect("seq"), 1);
}
