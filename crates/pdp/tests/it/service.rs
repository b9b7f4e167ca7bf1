//! The PDP service without HTTP, on SQLite and PostgreSQL: read-your-writes on one replica,
//! consistency tokens and HIGHER_CONSISTENCY across two replicas over one database, the
//! refresher, eviction of deleted stores, all-or-nothing writes, and that no error is an allow.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use trustgate_audit::{Auditor, AuditorConfig, RequestContext};
use trustgate_pdp::{
    BatchCheckItem, Caller, CheckRequest, Consistency, DecisionLog, DecisionRecord, Freshness,
    Limits, ListObjectsRequest, ListPaging, ListUsersRequest, OnDuplicate, OnMissing, Page, Pdp,
    PdpError, QueryScope, ReadFilter, TupleKey, TupleWrite, UserFilter, Verdict,
};
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;
use trustgate_store_api::{AuditFilter, RelationshipStore};

const MODEL: &str = "model
  schema 1.1
type user
type group
  relations
    define member: [user]
type document
  relations
    define owner: [user]
    define viewer: [user, user with in_hours, group#member] or owner
    define blocked: [user]
    define can_view: viewer but not blocked
condition in_hours(hour: int) {
  hour >= 9 && hour < 17
}
";

static CONTEXT: LazyLock<RequestContext> =
    LazyLock::new(|| RequestContext::new(Some([198, 51, 100, 4].into()), None, Some("req-1")));

fn caller() -> Caller<'static> {
    Caller {
        principal: "service:test",
        context: &CONTEXT,
    }
}

/// One recorded decision: (store, object, relation, user, verdict).
type Row = (String, String, String, String, Verdict);

/// Decisions recorded in memory.
#[derive(Debug, Default)]
struct Recorded(Mutex<Vec<Row>>);

impl DecisionLog for Recorded {
    fn record(&self, d: &DecisionRecord<'_>) {
        assert_eq!(d.caller, caller());
        assert!(trustgate_core::id::is_ulid(d.model_id), "{}", d.model_id);
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push((
            d.store_id.to_owned(),
            d.object.to_owned(),
            d.relation.to_owned(),
            d.user.to_owned(),
            d.verdict,
        ));
    }
}

impl Recorded {
    fn verdicts(&self) -> Vec<Verdict> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|r| r.4)
            .collect()
    }
}

fn relationships(db: &TestDatabase) -> Arc<dyn RelationshipStore> {
    db.store.clone()
}

fn replica(db: &TestDatabase) -> Pdp {
    let clock: Arc<dyn trustgate_core::Clock> = Arc::new(trustgate_core::SystemClock);
    let auditor = Auditor::new(db.store.clone(), clock.clone(), AuditorConfig::default());
    Pdp::new(relationships(db), clock, Limits::default(), auditor)
}

fn audited_replica(db: &TestDatabase, limits: Limits) -> (Pdp, Arc<Recorded>) {
    let log = Arc::new(Recorded::default());
    let pdp = Pdp::with_decision_log(
        relationships(db),
        Arc::new(trustgate_core::SystemClock),
        limits,
        log.clone(),
    );
    (pdp, log)
}

/// A store with [`MODEL`]; returns (store id, model id).
async fn setup(pdp: &Pdp) -> (String, String) {
    let store = pdp.create_store("service test").await.expect("store").id;
    let model = trustgate_authz::dsl::parse(MODEL).expect("model");
    let model_id = pdp.write_model(&store, model).await.expect("write model");
    (store, model_id)
}

fn tk(object: &str, relation: &str, user: &str) -> TupleKey {
    TupleKey::new(object, relation, user)
}

async fn write(pdp: &Pdp, store: &str, writes: &[TupleKey]) -> trustgate_pdp::Written {
    pdp.write(
        store,
        &TupleWrite {
            writes,
            ..TupleWrite::default()
        },
    )
    .await
    .expect("write")
}

fn req<'a>(object: &'a str, relation: &'a str, user: &'a str) -> CheckRequest<'a> {
    CheckRequest {
        object,
        relation,
        user,
        contextual_tuples: &[],
        context: None,
    }
}

async fn check_at(
    pdp: &Pdp,
    store: &str,
    freshness: Freshness<'_>,
    object: &str,
    relation: &str,
    user: &str,
) -> Result<bool, PdpError> {
    let scope = QueryScope {
        freshness,
        ..QueryScope::latest(store)
    };
    pdp.check(&scope, &req(object, relation, user), caller())
        .await
}

async fn check(pdp: &Pdp, store: &str, object: &str, relation: &str, user: &str) -> bool {
    check_at(
        pdp,
        store,
        Freshness::MINIMIZE_LATENCY,
        object,
        relation,
        user,
    )
    .await
    .expect("check")
}

async fn all_tuples(pdp: &Pdp, store: &str) -> Vec<TupleKey> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = pdp
            .read(
                store,
                None,
                Page {
                    size: 100,
                    continuation_token: token.as_deref(),
                },
            )
            .await
            .expect("read");
        out.extend(page.items.into_iter().map(|t| t.tuple));
        match page.continuation_token {
            Some(t) => token = Some(t),
            None => return out,
        }
    }
}

async fn writes_are_read_back_at_once_on_the_same_replica(db: TestDatabase) {
    let pdp = replica(&db);
    let (store, _) = setup(&pdp).await;
    // The index is loaded (and empty) before the write.
    assert!(!check(&pdp, &store, "document:1", "viewer", "user:anne").await);
    for i in 0..5 {
        let object = format!("document:{i}");
        write(&pdp, &store, &[tk(&object, "viewer", "user:anne")]).await;
        assert!(
            check(&pdp, &store, &object, "viewer", "user:anne").await,
            "write {i} not visible at once"
        );
    }
    // Deletes too.
    pdp.write(
        &store,
        &TupleWrite {
            deletes: &[tk("document:0", "viewer", "user:anne")],
            ..TupleWrite::default()
        },
    )
    .await
    .expect("delete");
    assert!(!check(&pdp, &store, "document:0", "viewer", "user:anne").await);
    // A write to a store whose index was never loaded is visible at once as well.
    let fresh = replica(&db);
    let (other, _) = setup(&fresh).await;
    write(&fresh, &other, &[tk("document:x", "owner", "user:bob")]).await;
    assert!(check(&fresh, &other, "document:x", "viewer", "user:bob").await);
}

async fn a_second_replica_sees_writes_by_token_higher_consistency_and_refresher(db: TestDatabase) {
    let a = replica(&db);
    let b = replica(&db);
    let (store, _) = setup(&a).await;
    // B loads its index before the writes.
    assert!(!check(&b, &store, "document:1", "viewer", "user:anne").await);

    let written = write(&a, &store, &[tk("document:1", "viewer", "user:anne")]).await;
    assert!(check(&a, &store, "document:1", "viewer", "user:anne").await);
    // With the token, B catches up before answering.
    assert_eq!(
        check_at(
            &b,
            &store,
            Freshness::after(&written.token),
            "document:1",
            "viewer",
            "user:anne"
        )
        .await
        .ok(),
        Some(true)
    );

    // HIGHER_CONSISTENCY catches up too, for list-objects as well.
    write(&a, &store, &[tk("document:2", "viewer", "user:anne")]).await;
    let scope = QueryScope {
        freshness: Freshness::HIGHER_CONSISTENCY,
        ..QueryScope::latest(&store)
    };
    let listed = b
        .list_objects(
            &scope,
            &ListObjectsRequest {
                object_type: "document",
                relation: "viewer",
                user: "user:anne",
                contextual_tuples: &[],
                context: None,
            },
            ListPaging::default(),
        )
        .await
        .expect("list objects");
    assert_eq!(listed.items, ["document:1", "document:2"]);
    assert_eq!(listed.continuation_token, None);

    // Without either, the refresher delivers the write within a few intervals.
    write(&a, &store, &[tk("document:3", "viewer", "user:anne")]).await;
    let mut seen = false;
    for _ in 0..100 {
        if check(&b, &store, "document:3", "viewer", "user:anne").await {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "the refresher applies other replicas' writes");

    // A model written through A is B's latest at once with HIGHER_CONSISTENCY.
    let v2 = "model\n  schema 1.1\ntype user\ntype document\n  relations\n    define viewer: [user]\n    define editor: [user]\n";
    let v2_id = a
        .write_model(&store, trustgate_authz::dsl::parse(v2).expect("v2"))
        .await
        .expect("v2");
    let latest = b
        .model(&store, None, Consistency::HigherConsistency)
        .await
        .expect("latest");
    assert_eq!(latest.model().id, v2_id);
}

async fn bad_consistency_tokens_are_refused(db: TestDatabase) {
    let a = replica(&db);
    let b = replica(&db);
    let (store, _) = setup(&a).await;
    let (other, _) = setup(&a).await;
    let written = write(&a, &store, &[tk("document:1", "viewer", "user:anne")]).await;
    let other_written = write(&a, &other, &[tk("document:1", "viewer", "user:anne")]).await;

    for pdp in [&a, &b] {
        // A token of another store.
        let r = check_at(
            pdp,
            &store,
            Freshness::after(&other_written.token),
            "document:1",
            "viewer",
            "user:anne",
        )
        .await;
        assert!(
            matches!(&r, Err(PdpError::Validation(m)) if m.contains("another store")),
            "{r:?}"
        );
        // A token ahead of the store (well formed, never issued).
        let ahead = {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(format!("tg1:{store}:{}", written.seq + 1000))
        };
        let r = check_at(
            pdp,
            &store,
            Freshness {
                consistency: Consistency::MinimizeLatency,
                token: Some(&ahead),
            },
            "document:1",
            "viewer",
            "user:anne",
        )
        .await;
        assert!(
            matches!(&r, Err(PdpError::Validation(m)) if m.contains("ahead")),
            "{r:?}"
        );
        // Also with HIGHER_CONSISTENCY, which must not make a bad token acceptable.
        let r = check_at(
            pdp,
            &store,
            Freshness {
                consistency: Consistency::HigherConsistency,
                token: Some(&ahead),
            },
            "document:1",
            "viewer",
            "user:anne",
        )
        .await;
        assert!(matches!(r, Err(PdpError::Validation(_))), "{r:?}");
        // Garbage.
        for garbage in ["", "garbage", "dGcxOg", &"A".repeat(400)] {
            let r = check_at(
                pdp,
                &store,
                Freshness {
                    consistency: Consistency::MinimizeLatency,
                    token: Some(garbage),
                },
                "document:1",
                "viewer",
                "user:anne",
            )
            .await;
            assert!(
                matches!(r, Err(PdpError::Validation(_))),
                "{garbage}: {r:?}"
            );
        }
    }
    // The valid token still works on both.
    for pdp in [&a, &b] {
        assert_eq!(
            check_at(
                pdp,
                &store,
                Freshness::after(&written.token),
                "document:1",
                "viewer",
                "user:anne"
            )
            .await
            .ok(),
            Some(true)
        );
    }
}

async fn a_write_that_fails_validation_writes_nothing(db: TestDatabase) {
    let pdp = replica(&db);
    let other = replica(&db);
    let (store, model_id) = setup(&pdp).await;
    write(&pdp, &store, &[tk("document:0", "viewer", "user:zed")]).await;
    let before = all_tuples(&pdp, &store).await;
    let good = tk("document:1", "viewer", "user:anne");
    let expect_nothing =
        |label: &str, r: Result<trustgate_pdp::Written, PdpError>, ok: fn(&PdpError) -> bool| {
            match r {
                Err(e) if ok(&e) => {}
                other => panic!("{label}: unexpected {other:?}"),
            }
        };

    let unknown_type = [good.clone(), tk("folder:1", "viewer", "user:anne")];
    expect_nothing(
        "unknown type",
        pdp.write(
            &store,
            &TupleWrite {
                writes: &unknown_type,
                ..TupleWrite::default()
            },
        )
        .await,
        |e| matches!(e, PdpError::InvalidTuple(_) | PdpError::TypeNotFound(_)),
    );
    let unknown_relation = [good.clone(), tk("document:1", "editor", "user:anne")];
    expect_nothing(
        "unknown relation",
        pdp.write(
            &store,
            &TupleWrite {
                writes: &unknown_relation,
                ..TupleWrite::default()
            },
        )
        .await,
        |e| matches!(e, PdpError::InvalidTuple(_) | PdpError::RelationNotFound(_)),
    );
    let not_allowed_user_type = [
        good.clone(),
        tk("document:1", "blocked", "group:eng#member"),
    ];
    expect_nothing(
        "type restriction",
        pdp.write(
            &store,
            &TupleWrite {
                writes: &not_allowed_user_type,
                ..TupleWrite::default()
            },
        )
        .await,
        |e| matches!(e, PdpError::InvalidTuple(_)),
    );
    let unknown_condition = [
        good.clone(),
        tk("document:2", "viewer", "user:anne").with_condition("nope", None),
    ];
    expect_nothing(
        "unknown condition",
        pdp.write(
            &store,
            &TupleWrite {
                writes: &unknown_condition,
                ..TupleWrite::default()
            },
        )
        .await,
        |e| matches!(e, PdpError::InvalidTuple(_) | PdpError::Validation(_)),
    );
    let mut bad_context = serde_json::Map::new();
    bad_context.insert("minute".into(), serde_json::json!(5));
    let bad_condition_context = [
        good.clone(),
        tk("document:2", "viewer", "user:anne").with_condition("in_hours", Some(bad_context)),
    ];
    expect_nothing(
        "condition context with an undefined parameter",
        pdp.write(
            &store,
            &TupleWrite {
                writes: &bad_condition_context,
                ..TupleWrite::default()
            },
        )
        .await,
        |e| matches!(e, PdpError::InvalidTuple(_) | PdpError::Validation(_)),
    );
    let malformed_delete = [tk("document", "viewer", "user:zed")];
    expect_nothing(
        "malformed delete",
        pdp.write(
            &store,
            &TupleWrite {
                writes: std::slice::from_ref(&good),
                deletes: &malformed_delete,
                ..TupleWrite::default()
            },
        )
        .await,
        |e| matches!(e, PdpError::InvalidTuple(_)),
    );
    let twice = [good.clone(), good.clone()];
    expect_nothing(
        "duplicate in one request",
        pdp.write(
            &store,
            &TupleWrite {
                writes: &twice,
                ..TupleWrite::default()
            },
        )
        .await,
        |e| matches!(e, PdpError::DuplicateTuplesInRequest(_)),
    );
    let existing = [good.clone(), tk("document:0", "viewer", "user:zed")];
    expect_nothing(
        "existing tuple",
        pdp.write(
            &store,
            &TupleWrite {
                writes: &existing,
                ..TupleWrite::default()
            },
        )
        .await,
        |e| matches!(e, PdpError::WriteFailedDueToInvalidInput(_)),
    );
    let missing = [tk("document:9", "viewer", "user:zed")];
    expect_nothing(
        "missing delete",
        pdp.write(
            &store,
            &TupleWrite {
                writes: std::slice::from_ref(&good),
                deletes: &missing,
                ..TupleWrite::default()
            },
        )
        .await,
        |e| matches!(e, PdpError::WriteFailedDueToInvalidInput(_)),
    );
    let too_many: Vec<TupleKey> = (0..101)
        .map(|i| tk(&format!("document:m{i}"), "viewer", "user:anne"))
        .collect();
    expect_nothing(
        "too many",
        pdp.write(
            &store,
            &TupleWrite {
                writes: &too_many,
                ..TupleWrite::default()
            },
        )
        .await,
        |e| matches!(e, PdpError::ExceededEntityLimit(_)),
    );
    expect_nothing(
        "empty",
        pdp.write(&store, &TupleWrite::default()).await,
        |e| matches!(e, PdpError::InvalidWriteInput),
    );
    expect_nothing(
        "unknown model",
        pdp.write(
            &store,
            &TupleWrite {
                model_id: Some("01HZZZZZZZZZZZZZZZZZZZZZZZ"),
                writes: std::slice::from_ref(&good),
                ..TupleWrite::default()
            },
        )
        .await,
        |e| matches!(e, PdpError::ModelNotFound(_)),
    );
    expect_nothing(
        "malformed model id",
        pdp.write(
            &store,
            &TupleWrite {
                model_id: Some("not-a-ulid"),
                writes: std::slice::from_ref(&good),
                ..TupleWrite::default()
            },
        )
        .await,
        |e| matches!(e, PdpError::Validation(_)),
    );

    // Nothing was written: not in the database, not in this index, not in another replica's.
    assert_eq!(all_tuples(&pdp, &store).await, before);
    assert!(!check(&pdp, &store, "document:1", "viewer", "user:anne").await);
    assert_eq!(
        check_at(
            &other,
            &store,
            Freshness::HIGHER_CONSISTENCY,
            "document:1",
            "viewer",
            "user:anne"
        )
        .await
        .ok(),
        Some(false)
    );
    let changes = pdp
        .changes(&store, None, None, Page::default())
        .await
        .expect("changes");
    assert_eq!(
        changes.changes.len(),
        1,
        "only the setup write is in the changelog"
    );

    // The same tuple under the options that allow it goes through, and so does a valid one.
    pdp.write(
        &store,
        &TupleWrite {
            model_id: Some(&model_id),
            writes: &[tk("document:0", "viewer", "user:zed"), good.clone()],
            deletes: &[tk("document:9", "viewer", "user:zed")],
            on_duplicate: OnDuplicate::Ignore,
            on_missing: OnMissing::Ignore,
        },
    )
    .await
    .expect("ignored duplicates and misses");
    assert!(check(&pdp, &store, "document:1", "viewer", "user:anne").await);

    // Writing without a model, or to a store that does not exist.
    let empty = pdp.create_store("no model").await.expect("store").id;
    let r = pdp
        .write(
            &empty,
            &TupleWrite {
                writes: std::slice::from_ref(&good),
                ..TupleWrite::default()
            },
        )
        .await;
    assert!(matches!(r, Err(PdpError::LatestModelNotFound(_))), "{r:?}");
    let r = pdp
        .write(
            "01HZZZZZZZZZZZZZZZZZZZZZZZ",
            &TupleWrite {
                writes: std::slice::from_ref(&good),
                ..TupleWrite::default()
            },
        )
        .await;
    assert!(matches!(r, Err(PdpError::StoreNotFound)), "{r:?}");
    let r = pdp
        .write(
            "nope",
            &TupleWrite {
                writes: std::slice::from_ref(&good),
                ..TupleWrite::default()
            },
        )
        .await;
    assert!(matches!(r, Err(PdpError::Validation(_))), "{r:?}");
}

async fn deleting_a_store_evicts_its_index(db: TestDatabase) {
    let a = replica(&db);
    let b = replica(&db);
    let (store, _) = setup(&a).await;
    let (kept, _) = setup(&a).await;
    write(&a, &store, &[tk("document:1", "viewer", "user:anne")]).await;
    write(&a, &kept, &[tk("document:1", "viewer", "user:anne")]).await;
    for pdp in [&a, &b] {
        assert!(check(pdp, &store, "document:1", "viewer", "user:anne").await);
        assert!(check(pdp, &kept, "document:1", "viewer", "user:anne").await);
    }
    assert_eq!(a.stats().loaded_stores, 2);
    assert_eq!(b.stats().loaded_stores, 2);

    a.delete_store(&store).await.expect("delete");
    // The deleting replica forgets it at once and answers "not found", never a stale allow.
    assert_eq!(a.stats().loaded_stores, 1);
    let r = check_at(
        &a,
        &store,
        Freshness::MINIMIZE_LATENCY,
        "document:1",
        "viewer",
        "user:anne",
    )
    .await;
    assert!(matches!(r, Err(PdpError::StoreNotFound)), "{r:?}");
    assert!(matches!(
        a.delete_store(&store).await,
        Err(PdpError::StoreNotFound)
    ));
    assert!(matches!(
        a.get_store(&store).await,
        Err(PdpError::StoreNotFound)
    ));
    let r = a
        .write(
            &store,
            &TupleWrite {
                writes: &[tk("document:2", "viewer", "user:anne")],
                ..TupleWrite::default()
            },
        )
        .await;
    assert!(matches!(r, Err(PdpError::StoreNotFound)), "{r:?}");

    // The other replica refuses at once when asked for HIGHER_CONSISTENCY (and forgets it)...
    let r = check_at(
        &b,
        &store,
        Freshness::HIGHER_CONSISTENCY,
        "document:1",
        "viewer",
        "user:anne",
    )
    .await;
    assert!(matches!(r, Err(PdpError::StoreNotFound)), "{r:?}");
    assert_eq!(b.stats().loaded_stores, 1);

    // ...and a third, which only answers from its index, drops it by the refresher.
    let c = replica(&db);
    let (third, _) = setup(&c).await;
    assert!(!check(&c, &third, "document:1", "viewer", "user:anne").await);
    assert_eq!(c.stats().loaded_stores, 1);
    c.delete_store(&third).await.expect("delete");
    assert_eq!(c.stats().loaded_stores, 0);
    let kept_third = c.create_store("kept").await.expect("store").id;
    c.write_model(
        &kept_third,
        trustgate_authz::dsl::parse(MODEL).expect("model"),
    )
    .await
    .expect("model");
    let d = replica(&db);
    assert!(!check(&d, &kept_third, "document:1", "viewer", "user:anne").await);
    let (gone, _) = setup(&c).await;
    assert!(!check(&d, &gone, "document:1", "viewer", "user:anne").await);
    assert_eq!(d.stats().loaded_stores, 2);
    c.delete_store(&gone).await.expect("delete");
    let mut evicted = false;
    for _ in 0..100 {
        if d.stats().loaded_stores == 1 {
            evicted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        evicted,
        "the refresher drops the index of a store deleted elsewhere"
    );
    let r = check_at(
        &d,
        &gone,
        Freshness::MINIMIZE_LATENCY,
        "document:1",
        "viewer",
        "user:anne",
    )
    .await;
    assert!(matches!(r, Err(PdpError::StoreNotFound)), "{r:?}");
    // The kept store still answers.
    assert!(!check(&d, &kept_third, "document:1", "viewer", "user:anne").await);
}

async fn no_error_is_an_allow(db: TestDatabase) {
    let (pdp, log) = audited_replica(&db, Limits::default());
    let (store, _) = setup(&pdp).await;
    let conditional = tk("document:c", "viewer", "user:carl").with_condition("in_hours", None);
    write(
        &pdp,
        &store,
        &[conditional, tk("document:1", "viewer", "user:anne")],
    )
    .await;

    let scope = QueryScope::latest(&store);
    // Unknown type / relation, malformed user: errors, not "false", and never "true".
    for (object, relation, user) in [
        ("folder:1", "viewer", "user:anne"),
        ("document:1", "editor", "user:anne"),
        ("document:1", "viewer", "anne"),
        ("document:1", "viewer", ""),
    ] {
        let r = pdp
            .check(&scope, &req(object, relation, user), caller())
            .await;
        assert!(r.is_err(), "{object} {relation} {user}: {r:?}");
    }
    // A condition whose parameter is missing cannot be decided.
    let r = pdp
        .check(&scope, &req("document:c", "viewer", "user:carl"), caller())
        .await;
    assert!(matches!(r, Err(PdpError::Validation(_))), "{r:?}");
    let mut ctx = serde_json::Map::new();
    ctx.insert("hour".into(), serde_json::json!(10));
    let with_context = CheckRequest {
        context: Some(&ctx),
        ..req("document:c", "viewer", "user:carl")
    };
    assert_eq!(
        pdp.check(&scope, &with_context, caller()).await.ok(),
        Some(true)
    );
    // An invalid contextual tuple is an error even if it would allow.
    let contextual = [tk("document:2", "viewer", "folder:x")];
    let r = pdp
        .check(
            &scope,
            &CheckRequest {
                contextual_tuples: &contextual,
                ..req("document:2", "viewer", "user:anne")
            },
            caller(),
        )
        .await;
    assert!(
        matches!(
            r,
            Err(PdpError::InvalidTuple(_) | PdpError::TypeNotFound(_))
        ),
        "{r:?}"
    );
    // A valid contextual tuple allows for that request only.
    let contextual = [tk("document:2", "viewer", "user:anne")];
    let r = pdp
        .check(
            &scope,
            &CheckRequest {
                contextual_tuples: &contextual,
                ..req("document:2", "viewer", "user:anne")
            },
            caller(),
        )
        .await;
    assert_eq!(r.ok(), Some(true));
    assert!(!check(&pdp, &store, "document:2", "viewer", "user:anne").await);

    // Missing store, model or latest model.
    let unknown = QueryScope::latest("01HZZZZZZZZZZZZZZZZZZZZZZZ");
    let r = pdp
        .check(
            &unknown,
            &req("document:1", "viewer", "user:anne"),
            caller(),
        )
        .await;
    assert!(matches!(r, Err(PdpError::StoreNotFound)), "{r:?}");
    let malformed = QueryScope::latest("not a store");
    let r = pdp
        .check(
            &malformed,
            &req("document:1", "viewer", "user:anne"),
            caller(),
        )
        .await;
    assert!(matches!(r, Err(PdpError::Validation(_))), "{r:?}");
    let wrong_model = QueryScope {
        model_id: Some("01HZZZZZZZZZZZZZZZZZZZZZZZ"),
        ..QueryScope::latest(&store)
    };
    let r = pdp
        .check(
            &wrong_model,
            &req("document:1", "viewer", "user:anne"),
            caller(),
        )
        .await;
    assert!(matches!(r, Err(PdpError::ModelNotFound(_))), "{r:?}");
    let empty = pdp.create_store("no model").await.expect("store").id;
    let r = pdp
        .check(
            &QueryScope::latest(&empty),
            &req("document:1", "viewer", "user:anne"),
            caller(),
        )
        .await;
    assert!(matches!(r, Err(PdpError::LatestModelNotFound(_))), "{r:?}");

    // Batch: per-item errors stay errors; the others are decided; limits hold.
    let items = [
        BatchCheckItem {
            correlation_id: "a",
            request: req("document:1", "viewer", "user:anne"),
        },
        BatchCheckItem {
            correlation_id: "b",
            request: req("folder:1", "viewer", "user:anne"),
        },
        BatchCheckItem {
            correlation_id: "c",
            request: req("document:1", "viewer", "user:bob"),
        },
    ];
    let outcomes = pdp
        .batch_check(&scope, &items, caller())
        .await
        .expect("batch");
    let got: Vec<(&str, Option<bool>)> = outcomes
        .iter()
        .map(|o| (o.correlation_id.as_str(), o.result.as_ref().ok().copied()))
        .collect();
    assert_eq!(got, [("a", Some(true)), ("b", None), ("c", Some(false))]);
    let r = pdp.batch_check(&scope, &[], caller()).await;
    assert!(matches!(r, Err(PdpError::Validation(_))), "{r:?}");
    let many: Vec<BatchCheckItem<'_>> = (0..51)
        .map(|_| BatchCheckItem {
            correlation_id: "x",
            request: req("document:1", "viewer", "user:anne"),
        })
        .collect();
    let r = pdp.batch_check(&scope, &many, caller()).await;
    assert!(
        matches!(&r, Err(PdpError::Validation(m)) if m.contains("maximum")),
        "{r:?}"
    );
    let dup = [items[0], items[0]];
    let r = pdp.batch_check(&scope, &dup, caller()).await;
    assert!(matches!(r, Err(PdpError::Validation(_))), "{r:?}");

    // Every decided or failed evaluation was audited once, errors as errors; requests refused
    // before evaluation (unknown store, limits) were not decisions.
    let verdicts = log.verdicts();
    let allows = verdicts.iter().filter(|v| **v == Verdict::Allow).count();
    let errors = verdicts
        .iter()
        .filter(|v| matches!(v, Verdict::Error { .. }))
        .count();
    assert_eq!(allows, 3, "{verdicts:?}");
    assert_eq!(errors, 7, "{verdicts:?}");
    assert!(verdicts.contains(&Verdict::Error {
        reason: "validation_error"
    }));
}

async fn lists_never_truncate_and_page(db: TestDatabase) {
    let limits = Limits {
        list_objects_max_results: 5,
        list_users_max_results: 5,
        ..Limits::default()
    };
    let (pdp, _) = audited_replica(&db, limits);
    let (store, _) = setup(&pdp).await;
    let writes: Vec<TupleKey> = (0..8)
        .map(|i| tk(&format!("document:{i}"), "viewer", "user:anne"))
        .chain((0..8).map(|i| tk("document:shared", "viewer", &format!("user:u{i}"))))
        .collect();
    write(&pdp, &store, &writes).await;
    let scope = QueryScope::latest(&store);
    let objects = ListObjectsRequest {
        object_type: "document",
        relation: "viewer",
        user: "user:anne",
        contextual_tuples: &[],
        context: None,
    };
    let r = pdp
        .list_objects(&scope, &objects, ListPaging::default())
        .await;
    assert!(matches!(r, Err(PdpError::ExceededEntityLimit(_))), "{r:?}");
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = pdp
            .list_objects(
                &scope,
                &objects,
                ListPaging {
                    page_size: Some(3),
                    continuation_token: Some(&token),
                },
            )
            .await
            .expect("page");
        assert!(page.items.len() <= 3);
        all.extend(page.items);
        token = page
            .continuation_token
            .expect("paged answers carry a token");
        if token.is_empty() {
            break;
        }
    }
    let want: Vec<String> = (0..8).map(|i| format!("document:{i}")).collect();
    assert_eq!(all, want);
    for bad in [Some(0), Some(6)] {
        let r = pdp
            .list_objects(
                &scope,
                &objects,
                ListPaging {
                    page_size: bad,
                    continuation_token: None,
                },
            )
            .await;
        assert!(matches!(r, Err(PdpError::Validation(_))), "{bad:?}: {r:?}");
    }
    let r = pdp
        .list_objects(
            &scope,
            &objects,
            ListPaging {
                page_size: None,
                continuation_token: Some("bogus"),
            },
        )
        .await;
    assert!(
        matches!(r, Err(PdpError::InvalidContinuationToken)),
        "{r:?}"
    );

    let filters = [UserFilter {
        user_type: "user",
        relation: None,
    }];
    let users = ListUsersRequest {
        object: "document:shared",
        relation: "viewer",
        user_filters: &filters,
        contextual_tuples: &[],
        context: None,
    };
    let r = pdp.list_users(&scope, &users, ListPaging::default()).await;
    assert!(matches!(r, Err(PdpError::ExceededEntityLimit(_))), "{r:?}");
    let page = pdp
        .list_users(
            &scope,
            &users,
            ListPaging {
                page_size: Some(5),
                continuation_token: None,
            },
        )
        .await
        .expect("users");
    assert_eq!(page.items.len(), 5);
    assert!(page.continuation_token.is_some_and(|t| !t.is_empty()));
    let r = pdp
        .list_users(
            &scope,
            &ListUsersRequest {
                user_filters: &[],
                ..users
            },
            ListPaging::default(),
        )
        .await;
    assert!(matches!(r, Err(PdpError::Validation(_))), "{r:?}");
    // Reads filter with OpenFGA's rules.
    let r = pdp
        .read(
            &store,
            Some(ReadFilter {
                relation: "viewer",
                ..ReadFilter::default()
            }),
            Page::default(),
        )
        .await;
    assert!(matches!(r, Err(PdpError::Validation(_))), "{r:?}");
    let r = pdp
        .read(
            &store,
            None,
            Page {
                size: 0,
                continuation_token: None,
            },
        )
        .await;
    assert!(matches!(r, Err(PdpError::Validation(_))), "{r:?}");
    let r = pdp
        .read(
            &store,
            None,
            Page {
                size: 10,
                continuation_token: Some("bogus"),
            },
        )
        .await;
    assert!(
        matches!(r, Err(PdpError::InvalidContinuationToken)),
        "{r:?}"
    );
}

async fn models_and_stores_refuse_bad_input(db: TestDatabase) {
    let pdp = replica(&db);
    for name in ["", "ab", &"x".repeat(65), "bad\u{7}name"] {
        let r = pdp.create_store(name).await;
        assert!(matches!(r, Err(PdpError::Validation(_))), "{name:?}: {r:?}");
    }
    let store = pdp.create_store("models").await.expect("store").id;
    // An invalid model is refused and nothing is stored.
    let invalid = trustgate_authz::dsl::parse_syntax_only(
        "model\n  schema 1.1\ntype document\n  relations\n    define viewer: [user]\n",
    )
    .expect("syntax");
    let r = pdp.write_model(&store, invalid).await;
    assert!(matches!(r, Err(PdpError::InvalidModel(_))), "{r:?}");
    let mut huge = String::from("model\n  schema 1.1\n");
    for i in 0..101 {
        huge.push_str(&format!("type t{i}\n"));
    }
    let r = pdp
        .write_model(&store, trustgate_authz::dsl::parse(&huge).expect("huge"))
        .await;
    assert!(matches!(r, Err(PdpError::ExceededEntityLimit(_))), "{r:?}");
    // The size budget of every model analysis: one relation too many over 256 KiB of JSON is
    // refused before any analysis runs; the same model a little smaller is accepted.
    let relations = |n: usize| {
        let mut dsl = String::from("model\n  schema 1.1\ntype user\ntype doc\n  relations\n");
        for i in 0..n {
            dsl.push_str(&format!("    define r{i}: [user] or r{}\n", i + 1));
        }
        dsl.push_str(&format!("    define r{n}: [user]\n"));
        trustgate_authz::dsl::parse(&dsl).expect("chain")
    };
    let json_len = |n| serde_json::to_vec(&relations(n)).map_or(0, |v| v.len());
    let fits = (1..10_000)
        .map(|k| k * 100)
        .take_while(|&n| json_len(n) <= trustgate_pdp::MAX_MODEL_SIZE_BYTES)
        .last()
        .expect("some chain fits");
    let r = pdp.write_model(&store, relations(fits + 100)).await;
    assert!(
        matches!(&r, Err(PdpError::ExceededEntityLimit(m)) if m.contains("bytes")),
        "{r:?}"
    );
    let listed = pdp
        .list_models(&store, Page::default())
        .await
        .expect("list");
    assert!(listed.items.is_empty());
    let r = pdp.model(&store, None, Consistency::MinimizeLatency).await;
    assert!(matches!(r, Err(PdpError::LatestModelNotFound(_))), "{r:?}");
    let model = trustgate_authz::dsl::parse(MODEL).expect("model");
    let r = pdp
        .write_model("01HZZZZZZZZZZZZZZZZZZZZZZZ", model.clone())
        .await;
    assert!(matches!(r, Err(PdpError::StoreNotFound)), "{r:?}");
    let big = pdp
        .write_model(&store, relations(fits))
        .await
        .expect("a model within the budget");
    let scope = QueryScope {
        model_id: Some(&big),
        ..QueryScope::latest(&store)
    };
    let last = format!("r{fits}");
    let r = pdp
        .check(&scope, &req("doc:1", &last, "user:anne"), caller())
        .await;
    assert!(matches!(r, Ok(false)), "{r:?}");
    // A check down the whole chain stops at the resolution depth: bounded work, never a guess.
    let r = pdp
        .check(&scope, &req("doc:1", "r0", "user:anne"), caller())
        .await;
    assert!(matches!(r, Err(PdpError::ResolutionTooComplex(_))), "{r:?}");
    // Ids grow: the latest is the last written.
    let first = pdp.write_model(&store, model.clone()).await.expect("first");
    let second = pdp.write_model(&store, model).await.expect("second");
    assert!(second > first);
    let latest = pdp
        .model(&store, None, Consistency::MinimizeLatency)
        .await
        .expect("latest");
    assert_eq!(latest.model().id, second);
    assert_eq!(pdp.get_model(&store, &first).await.expect("get").id, first);
    let r = pdp.get_model(&store, "01HZZZZZZZZZZZZZZZZZZZZZZZ").await;
    assert!(matches!(r, Err(PdpError::ModelNotFound(_))), "{r:?}");
    let r = pdp.get_model("01HZZZZZZZZZZZZZZZZZZZZZZZ", &first).await;
    assert!(matches!(r, Err(PdpError::StoreNotFound)), "{r:?}");
    let page = pdp
        .list_models(
            &store,
            Page {
                size: 1,
                continuation_token: None,
            },
        )
        .await
        .expect("page");
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].id, second);
    assert!(page.continuation_token.is_some());
}

test_on_both_backends!(
    imports_validate_everything_first_and_are_seen_at_once,
    decisions_reach_the_audit_trail,
    writes_are_read_back_at_once_on_the_same_replica,
    a_second_replica_sees_writes_by_token_higher_consistency_and_refresher,
    bad_consistency_tokens_are_refused,
    a_write_that_fails_validation_writes_nothing,
    deleting_a_store_evicts_its_index,
    no_error_is_an_allow,
    lists_never_truncate_and_page,
    models_and_stores_refuse_bad_input,
    watchers_see_every_change_of_their_replica,
    stored_attributes_are_cached_per_replica_within_their_ttl,
);

async fn stored_attributes_are_cached_per_replica_within_their_ttl(db: TestDatabase) {
    let a = replica(&db);
    let b = replica(&db);
    let (store, _) = setup(&a).await;
    let read = |pdp: &Pdp, freshness: Freshness<'static>| {
        let (pdp, store) = (pdp.clone(), store.clone());
        async move {
            pdp.stored_attributes(&store, &["user:anne"], freshness)
                .await
                .expect("read")
                .get("user:anne")
                .cloned()
        }
    };
    assert_eq!(
        read(&a, Freshness::MINIMIZE_LATENCY).await,
        None,
        "absent, and cached so"
    );
    let email = serde_json::json!({ "email": "anne@example.com" });
    let email = email.as_object().expect("object").clone();
    b.put_attributes(&store, "user:anne", &email)
        .await
        .expect("put");
    // The writing replica reads its own write; the other is bounded by the TTL, unless asked
    // for higher consistency.
    assert_eq!(
        read(&b, Freshness::MINIMIZE_LATENCY).await,
        Some(email.clone())
    );
    assert_eq!(
        read(&a, Freshness::HIGHER_CONSISTENCY).await,
        Some(email.clone())
    );
    tokio::time::sleep(trustgate_pdp::attributes::ATTRIBUTES_TTL + Duration::from_millis(100))
        .await;
    assert_eq!(
        read(&a, Freshness::MINIMIZE_LATENCY).await,
        Some(email.clone())
    );
    b.delete_attributes(&store, "user:anne")
        .await
        .expect("delete");
    assert_eq!(
        read(&b, Freshness::MINIMIZE_LATENCY).await,
        None,
        "the delete is seen at once"
    );
}

/// The next revision within `limit` (the refresher polls every 200 ms, the latest model is
/// re-read at most once a second).
async fn next_revision(
    watch: &mut trustgate_pdp::RevisionWatch,
    limit: Duration,
) -> Result<trustgate_pdp::Revision, trustgate_pdp::StoreGone> {
    tokio::time::timeout(limit, watch.changed())
        .await
        .expect("a revision within the limit")
}

async fn watchers_see_every_change_of_their_replica(db: TestDatabase) {
    let a = replica(&db);
    let b = replica(&db);
    let (store, model) = setup(&a).await;
    let mut on_a = a.watch(&store).await.expect("watch a");
    let mut on_b = b.watch(&store).await.expect("watch b");
    let start = on_b.current();
    assert_eq!(start.latest_model_id.as_deref(), Some(model.as_str()));
    assert_eq!(
        on_a.current(),
        start,
        "both replicas start at the same revision"
    );

    // A write through A: A's watcher sees its token before the write returns to anyone else;
    // B's sees it through the refresher.
    let written = write(&a, &store, &[tk("document:1", "viewer", "user:anne")]).await;
    let seen_a = next_revision(&mut on_a, Duration::from_secs(1))
        .await
        .expect("a");
    assert_eq!(seen_a.token, written.token);
    let seen_b = next_revision(&mut on_b, Duration::from_secs(5))
        .await
        .expect("b");
    assert_eq!(seen_b.token, written.token);
    // The answer at that revision reflects the write on B too.
    assert!(
        check_at(
            &b,
            &store,
            Freshness::after(&seen_b.token),
            "document:1",
            "viewer",
            "user:anne"
        )
        .await
        .expect("check")
    );

    // A new model written through A reaches B's watcher without any query on B.
    let newer = trustgate_authz::dsl::parse(MODEL).expect("model");
    let newer = a.write_model(&store, newer).await.expect("model");
    let seen_a = next_revision(&mut on_a, Duration::from_secs(1))
        .await
        .expect("a");
    assert_eq!(seen_a.latest_model_id.as_deref(), Some(newer.as_str()));
    let seen_b = next_revision(&mut on_b, Duration::from_secs(5))
        .await
        .expect("b");
    assert_eq!(seen_b.latest_model_id.as_deref(), Some(newer.as_str()));
    assert_eq!(seen_b.token, written.token, "no tuple changed");

    // A deleted store ends the watch: nothing may be cached for it any more.
    a.delete_store(&store).await.expect("delete");
    assert!(
        next_revision(&mut on_a, Duration::from_secs(1))
            .await
            .is_err()
    );
    assert!(
        next_revision(&mut on_b, Duration::from_secs(5))
            .await
            .is_err()
    );
    assert!(matches!(
        a.watch(&store).await,
        Err(PdpError::StoreNotFound)
    ));
}

async fn decisions_reach_the_audit_trail(db: TestDatabase) {
    let clock: Arc<dyn trustgate_core::Clock> = Arc::new(trustgate_core::SystemClock);
    let auditor = Auditor::new(db.store.clone(), clock.clone(), AuditorConfig::default());
    let pdp = Pdp::new(
        relationships(&db),
        clock,
        Limits::default(),
        auditor.clone(),
    );
    let (store, model) = setup(&pdp).await;
    write(&pdp, &store, &[tk("document:1", "viewer", "user:anne")]).await;
    let scope = QueryScope::latest(&store);
    assert_eq!(
        pdp.check(&scope, &req("document:1", "viewer", "user:anne"), caller())
            .await
            .ok(),
        Some(true)
    );
    assert_eq!(
        pdp.check(&scope, &req("document:1", "viewer", "user:bob"), caller())
            .await
            .ok(),
        Some(false)
    );
    assert!(
        pdp.check(&scope, &req("document:1", "no_such", "user:bob"), caller())
            .await
            .is_err()
    );
    assert!(auditor.flush(Duration::from_secs(10)).await);
    let mut events = db
        .store
        .list_audit(
            &AuditFilter {
                kind: Some("authorization_decision".into()),
                ..AuditFilter::default()
            },
            100,
        )
        .await
        .expect("audit trail")
        .into_iter()
        .map(|r| r.event)
        .collect::<Vec<_>>();
    events.reverse();
    let seen: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e.outcome.as_str(),
                e.detail["user"].as_str().unwrap_or_default(),
                e.detail["decision"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("success", "user:anne", "allow"),
            ("denied", "user:bob", "deny"),
            ("failure", "user:bob", "error"),
        ]
    );
    for event in &events {
        assert_eq!(event.actor.as_deref(), Some("service:test"));
        assert_eq!(event.request_id.as_deref(), Some("req-1"));
        assert_eq!(event.ip.as_deref(), Some("198.51.100.4"));
        assert_eq!(event.detail["action"], "check");
        assert_eq!(event.resource.as_deref(), Some("document:1"));
        assert_eq!(event.detail["store"], store.as_str());
        assert_eq!(event.detail["model"], model.as_str());
    }
    assert_eq!(events[2].detail["reason"], "validation_error");
    // The reason is the explanation's short form: the tuple that granted, the deny's cause.
    assert_eq!(
        events[0].detail["reason"],
        "allowed: document:1#viewer@user:anne"
    );
    assert_eq!(
        events[1].detail["reason"],
        "denied: no tuple relates the user"
    );
}

async fn imports_validate_everything_first_and_are_seen_at_once(db: TestDatabase) {
    let a = replica(&db);
    let b = replica(&db);
    let (store, model_id) = setup(&a).await;
    write(&a, &store, &[tk("document:0", "viewer", "user:0")]).await;
    // Both indexes are loaded before the import, so both must catch up (by reloading: the
    // import is more than RELOAD_BEHIND changes).
    assert!(check(&a, &store, "document:0", "viewer", "user:0").await);
    assert!(check(&b, &store, "document:0", "viewer", "user:0").await);
    let n = 2 * trustgate_pdp::IMPORT_BATCH + 2_000;
    assert!(n as u64 > trustgate_pdp::freshness::RELOAD_BEHIND);
    let mut tuples: Vec<TupleKey> = (0..n)
        .map(|i| {
            tk(
                &format!("document:{i}"),
                "viewer",
                &format!("user:{}", i % 101),
            )
        })
        .collect();
    tuples.push(tk("document:c", "viewer", "user:anne").with_condition("in_hours", None));

    // Anything invalid, anywhere, writes nothing.
    let seq_before = relationships(&db).store_seq(&store).await.expect("seq");
    let mut bad = tuples.clone();
    bad.push(tk("document:x", "no_such_relation", "user:anne"));
    let err = a
        .import(&store, None, bad)
        .await
        .expect_err("invalid relation");
    assert!(
        matches!(
            err,
            PdpError::InvalidTuple(_) | PdpError::RelationNotFound(..)
        ),
        "{err:?}"
    );
    let mut twice = tuples.clone();
    twice.push(tk("document:5", "viewer", "user:5"));
    let err = a.import(&store, None, twice).await.expect_err("twice");
    assert!(
        matches!(err, PdpError::DuplicateTuplesInRequest(_)),
        "{err:?}"
    );
    let err = a.import(&store, None, Vec::new()).await.expect_err("empty");
    assert!(matches!(err, PdpError::InvalidWriteInput), "{err:?}");
    let err = a
        .import("01ARZ3NDEKTSV4RRFFQ69G5FAV", None, tuples.clone())
        .await
        .expect_err("unknown store");
    assert!(matches!(err, PdpError::StoreNotFound), "{err:?}");
    let (small, _) = audited_replica(
        &db,
        Limits {
            max_tuples_per_import: 10,
            ..Limits::default()
        },
    );
    let err = small
        .import(&store, None, tuples.clone())
        .await
        .expect_err("limit");
    assert!(matches!(err, PdpError::ExceededEntityLimit(_)), "{err:?}");
    assert_eq!(
        relationships(&db).store_seq(&store).await.expect("seq"),
        seq_before
    );

    let imported = a
        .import(&store, Some(&model_id), tuples.clone())
        .await
        .expect("import");
    // document:0 viewer user:0 was written before: skipped and counted.
    assert_eq!((imported.written, imported.existing), (n as u64, 1));
    assert_eq!(imported.seq, seq_before + n as i64);
    // The importing replica sees it at once, the other with the token.
    assert!(
        check(
            &a,
            &store,
            "document:21999",
            "viewer",
            &format!("user:{}", 21_999 % 101)
        )
        .await
    );
    assert_eq!(
        check_at(
            &b,
            &store,
            Freshness::after(&imported.token),
            "document:21999",
            "viewer",
            &format!("user:{}", 21_999 % 101),
        )
        .await
        .ok(),
        Some(true)
    );
    assert_eq!(all_tuples(&a, &store).await.len(), n + 1);

    // A re-run (an interrupted import retried) writes nothing and changes no seq.
    let again = a.import(&store, None, tuples).await.expect("re-run");
    assert_eq!(
        (again.written, again.existing, again.seq),
        (0, n as u64 + 1, imported.seq)
    );
}
