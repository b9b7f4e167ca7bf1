//! The audit trail's hash chains, anchors and truncation, on every backend.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::macros::datetime;
use trustgate_core::id::new_ulid;
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;
use trustgate_store_api::{
    AnchorKind, AuditAnchor, AuditChain, AuditEvent, AuditFilter, AuditRecord, Conflict,
    GENESIS_HASH, Store, StoreError, record_hash,
};

test_on_both_backends!(
    chains_link_every_event_in_order,
    appenders_on_two_handles_take_turns,
    truncation_deletes_a_prefix_and_anchors_it,
    anchors_are_numbered_without_gaps,
    the_trail_is_filtered_and_followed_by_position,
    bad_filters_are_refused,
);

const T0: OffsetDateTime = datetime!(2026-11-23 10:00 UTC);

fn at(seconds: i64) -> OffsetDateTime {
    T0 + time::Duration::seconds(seconds)
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => panic!("not an object"),
    }
}

fn event(i: i64, chain: AuditChain) -> AuditEvent {
    let kind = match chain {
        AuditChain::Recorded => "login",
        AuditChain::Streamed => "authorization_decision",
    };
    // Nanoseconds the store cannot keep, keys out of order and numbers JSONB rewrites: the
    // hash must still be the one of what is read back.
    let at = at(i) + time::Duration::nanoseconds(123_456_789);
    AuditEvent {
        id: new_ulid(at),
        at,
        chain,
        kind: kind.to_owned(),
        outcome: if i % 3 == 0 { "denied" } else { "success" }.to_owned(),
        actor: Some(format!("user:{}", i % 4)),
        user_id: Some(format!("{}", i % 4)),
        ip: Some("192.0.2.1".to_owned()),
        user_agent: Some("agent".to_owned()),
        request_id: Some(format!("req-{i}")),
        resource: Some(format!("document:{}", i % 5)),
        detail: object(json!({"z": i, "a": {"big": 1e16, "é": "ü\"", "half": 0.5}})),
    }
}

/// Every stored record of `chain` in chain order, page by page.
async fn chain_records(store: &dyn Store, chain: AuditChain) -> Vec<AuditRecord> {
    let mut out: Vec<AuditRecord> = Vec::new();
    loop {
        let after = out.last().and_then(|r| r.seq).unwrap_or(0);
        let page = store
            .audit_chain_page(chain, after, 7)
            .await
            .expect("chain page");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Asserts that `records` are positions `first..` of `chain`, each linked to its predecessor
/// (`prev` before the first) and hashed as `record_hash` says, and that the head is the last.
async fn assert_chain(
    store: &dyn Store,
    chain: AuditChain,
    records: &[AuditRecord],
    first: i64,
    mut prev: [u8; 32],
) {
    for (i, record) in records.iter().enumerate() {
        let seq = first + i64::try_from(i).expect("small");
        assert_eq!(record.seq, Some(seq), "positions are gap-free");
        assert_eq!(
            record.prev_hash,
            Some(prev),
            "seq {seq} links to its predecessor"
        );
        let hash = record_hash(chain, seq, &prev, &record.event);
        assert_eq!(
            record.hash,
            Some(hash),
            "seq {seq} is hashed over what is stored"
        );
        prev = hash;
    }
    let head = store.audit_head(chain).await.expect("head");
    assert_eq!(
        head.seq,
        first - 1 + i64::try_from(records.len()).expect("small")
    );
    assert_eq!(head.hash, prev);
}

fn anchor(
    chain: AuditChain,
    number: i64,
    seq: i64,
    hash: [u8; 32],
    kind: AnchorKind,
) -> AuditAnchor {
    AuditAnchor {
        chain,
        number,
        seq,
        hash,
        kind,
        at: at(1000),
        kid: "kid-1".to_owned(),
        jws: "header.payload.signature".to_owned(),
        sealed_key: vec![7; 40],
    }
}

async fn chains_link_every_event_in_order(db: TestDatabase) {
    let store = &*db.store;
    assert_eq!(
        store
            .audit_head(AuditChain::Recorded)
            .await
            .expect("head")
            .seq,
        0
    );
    // Singles and a batch mixing both chains (more rows than one INSERT carries).
    let mut expected_recorded = Vec::new();
    let mut expected_streamed = Vec::new();
    for i in 0..3 {
        let e = event(i, AuditChain::Recorded);
        store.append_audit(&e).await.expect("append");
        expected_recorded.push(e);
    }
    let batch: Vec<AuditEvent> = (3..150)
        .map(|i| {
            event(
                i,
                if i % 10 == 0 {
                    AuditChain::Recorded
                } else {
                    AuditChain::Streamed
                },
            )
        })
        .collect();
    store.append_audits(&batch).await.expect("batch");
    for e in &batch {
        match e.chain {
            AuditChain::Recorded => expected_recorded.push(e.clone()),
            AuditChain::Streamed => expected_streamed.push(e.clone()),
        }
    }
    let recorded = chain_records(store, AuditChain::Recorded).await;
    let streamed = chain_records(store, AuditChain::Streamed).await;
    assert_chain(store, AuditChain::Recorded, &recorded, 1, GENESIS_HASH).await;
    assert_chain(store, AuditChain::Streamed, &streamed, 1, GENESIS_HASH).await;
    let events = |records: &[AuditRecord]| -> Vec<String> {
        records.iter().map(|r| r.event.id.clone()).collect()
    };
    let ids =
        |events: &[AuditEvent]| -> Vec<String> { events.iter().map(|e| e.id.clone()).collect() };
    assert_eq!(
        events(&recorded),
        ids(&expected_recorded),
        "in append order"
    );
    assert_eq!(events(&streamed), ids(&expected_streamed), "in batch order");
    assert_eq!(
        store
            .audit_record_at(AuditChain::Streamed, 5)
            .await
            .expect("at"),
        Some(streamed[4].clone())
    );
    assert_eq!(
        store
            .audit_record_at(AuditChain::Streamed, 10_000)
            .await
            .expect("at"),
        None
    );

    // A refused event breaks nothing: no position is used up.
    let mut bad = event(500, AuditChain::Recorded);
    bad.outcome = "perhaps".to_owned();
    let err = store.append_audit(&bad).await.expect_err("bad outcome");
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    let mut duplicate = event(501, AuditChain::Recorded);
    duplicate.id = recorded[0].event.id.clone();
    let err = store
        .append_audit(&duplicate)
        .await
        .expect_err("duplicate id");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let next = event(502, AuditChain::Recorded);
    store
        .append_audit(&next)
        .await
        .expect("append after refusals");
    let recorded = chain_records(store, AuditChain::Recorded).await;
    assert_chain(store, AuditChain::Recorded, &recorded, 1, GENESIS_HASH).await;
    assert_eq!(recorded.last().map(|r| r.event.id.clone()), Some(next.id));
    // Events from before the chains: none here.
    assert!(
        store
            .unchained_audit(None, 10)
            .await
            .expect("unchained")
            .is_empty()
    );
}

async fn appenders_on_two_handles_take_turns(db: TestDatabase) {
    // On PostgreSQL a second connection pool, as another replica has; on SQLite the same store.
    let replicas: [Arc<dyn Store>; 2] = [db.store.clone(), db.replica_store().await];
    let mut tasks = Vec::new();
    for (r, store) in replicas.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let base = i64::try_from(r).expect("small") * 100_000;
            for round in 0..15 {
                let batch: Vec<AuditEvent> = (0..20)
                    .map(|i| event(base + round * 100 + i, AuditChain::Streamed))
                    .collect();
                store.append_audits(&batch).await.expect("batch");
                store
                    .append_audit(&event(base + round * 100 + 50, AuditChain::Streamed))
                    .await
                    .expect("single");
            }
        }));
    }
    for task in tasks {
        task.await.expect("appender");
    }
    let records = chain_records(&*db.store, AuditChain::Streamed).await;
    assert_eq!(records.len(), 2 * 15 * 21);
    assert_chain(&*db.store, AuditChain::Streamed, &records, 1, GENESIS_HASH).await;
}

async fn truncation_deletes_a_prefix_and_anchors_it(db: TestDatabase) {
    let store = &*db.store;
    let chain = AuditChain::Streamed;
    let batch: Vec<AuditEvent> = (0..10).map(|i| event(i, chain)).collect();
    store.append_audits(&batch).await.expect("batch");
    store
        .append_audit(&event(0, AuditChain::Recorded))
        .await
        .expect("recorded");
    let records = chain_records(store, chain).await;
    let hash_at = |seq: usize| records[seq - 1].hash.expect("hash");
    store
        .append_audit_anchor(&anchor(chain, 1, 2, hash_at(2), AnchorKind::Checkpoint))
        .await
        .expect("checkpoint at 2");
    store
        .append_audit_anchor(&anchor(chain, 2, 6, hash_at(6), AnchorKind::Checkpoint))
        .await
        .expect("checkpoint at 6");

    // The anchored hash must be the stored one, at a stored position: else nothing happens.
    for bad in [
        anchor(chain, 3, 4, hash_at(5), AnchorKind::Truncation),
        anchor(chain, 3, 40, hash_at(5), AnchorKind::Truncation),
        anchor(chain, 3, 4, hash_at(4), AnchorKind::Checkpoint),
        anchor(chain, 5, 4, hash_at(4), AnchorKind::Truncation),
    ] {
        let err = store.truncate_audit(&bad).await.expect_err("refused");
        assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    }
    let err = store
        .truncate_audit(&anchor(chain, 2, 4, hash_at(4), AnchorKind::Truncation))
        .await
        .expect_err("number taken");
    assert!(
        matches!(err, StoreError::Conflict(Conflict::Duplicate(_))),
        "{err:?}"
    );
    assert_eq!(chain_records(store, chain).await.len(), 10);

    let deleted = store
        .truncate_audit(&anchor(chain, 3, 4, hash_at(4), AnchorKind::Truncation))
        .await
        .expect("truncate");
    assert_eq!(deleted, 4);
    let left = chain_records(store, chain).await;
    assert_chain(store, chain, &left, 5, hash_at(4)).await;
    assert_eq!(
        chain_records(store, AuditChain::Recorded).await.len(),
        1,
        "the other chain is untouched"
    );
    // The checkpoint at 2 went with its records (a prefix of the numbers); the one at 6 stays.
    let anchors = store.audit_anchors(chain, 0, 10).await.expect("anchors");
    let numbers: Vec<i64> = anchors.iter().map(|a| a.number).collect();
    assert_eq!(numbers, [2, 3]);
    let (last, truncation) = store.last_audit_anchors(chain).await.expect("last");
    assert_eq!(last.as_ref().map(|a| a.number), Some(3));
    assert_eq!(truncation, last);
    assert_eq!(
        truncation.map(|a| (a.kind, a.seq, a.hash)),
        Some((AnchorKind::Truncation, 4, hash_at(4)))
    );

    // Appending continues the chain; truncating everything leaves the head to link to.
    store.append_audit(&event(20, chain)).await.expect("append");
    let left = chain_records(store, chain).await;
    assert_chain(store, chain, &left, 5, hash_at(4)).await;
    let head = store.audit_head(chain).await.expect("head");
    assert_eq!(head.seq, 11);
    assert_eq!(
        store
            .audit_first_seq_since(chain, at(20))
            .await
            .expect("first"),
        Some(11)
    );
    assert_eq!(
        store
            .audit_first_seq_since(chain, at(21))
            .await
            .expect("first"),
        None
    );
    let deleted = store
        .truncate_audit(&anchor(chain, 4, 11, head.hash, AnchorKind::Truncation))
        .await
        .expect("truncate all");
    assert_eq!(deleted, 7);
    assert!(chain_records(store, chain).await.is_empty());
    store.append_audit(&event(21, chain)).await.expect("append");
    let left = chain_records(store, chain).await;
    assert_chain(store, chain, &left, 12, head.hash).await;
    let numbers: Vec<i64> = store
        .audit_anchors(chain, 0, 10)
        .await
        .expect("anchors")
        .iter()
        .map(|a| a.number)
        .collect();
    assert_eq!(numbers, [4]);
}

async fn anchors_are_numbered_without_gaps(db: TestDatabase) {
    let store = &*db.store;
    let chain = AuditChain::Recorded;
    store.append_audit(&event(1, chain)).await.expect("append");
    let head = store.audit_head(chain).await.expect("head");
    let first = anchor(chain, 1, head.seq, head.hash, AnchorKind::Checkpoint);
    store.append_audit_anchor(&first).await.expect("first");
    let err = store
        .append_audit_anchor(&first)
        .await
        .expect_err("written by another replica");
    assert!(
        matches!(err, StoreError::Conflict(Conflict::Duplicate(_))),
        "{err:?}"
    );
    for bad in [
        anchor(chain, 3, head.seq, head.hash, AnchorKind::Checkpoint),
        anchor(chain, 2, head.seq, head.hash, AnchorKind::Truncation),
        AuditAnchor {
            jws: String::new(),
            ..anchor(chain, 2, head.seq, head.hash, AnchorKind::Checkpoint)
        },
        AuditAnchor {
            sealed_key: vec![0; 20_000],
            ..anchor(chain, 2, head.seq, head.hash, AnchorKind::Checkpoint)
        },
    ] {
        let err = store.append_audit_anchor(&bad).await.expect_err("refused");
        assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    }
    let stored = store.audit_anchors(chain, 0, 10).await.expect("anchors");
    let mut expected = first.clone();
    expected.at = stored[0].at;
    assert_eq!(stored, [expected]);
    assert!(
        store
            .audit_anchors(AuditChain::Streamed, 0, 10)
            .await
            .expect("anchors")
            .is_empty()
    );
}

async fn the_trail_is_filtered_and_followed_by_position(db: TestDatabase) {
    let store = &*db.store;
    let events: Vec<AuditEvent> = (0..40).map(|i| event(i, AuditChain::Streamed)).collect();
    store.append_audits(&events).await.expect("batch");
    let ids = |filter: AuditFilter, limit: u32| async move {
        store
            .list_audit(&filter, limit)
            .await
            .expect("list")
            .into_iter()
            .map(|r| r.event.id)
            .collect::<Vec<_>>()
    };
    let expect = |keep: &dyn Fn(&AuditEvent) -> bool| -> Vec<String> {
        events
            .iter()
            .rev()
            .filter(|e| keep(e))
            .map(|e| e.id.clone())
            .collect()
    };
    assert_eq!(
        ids(
            AuditFilter {
                actor: Some("user:1".into()),
                ..AuditFilter::default()
            },
            100
        )
        .await,
        expect(&|e| e.actor.as_deref() == Some("user:1"))
    );
    assert_eq!(
        ids(
            AuditFilter {
                resource: Some("document:2".into()),
                outcome: Some("denied".into()),
                ..AuditFilter::default()
            },
            100
        )
        .await,
        expect(&|e| e.resource.as_deref() == Some("document:2") && e.outcome == "denied")
    );
    assert_eq!(
        ids(
            AuditFilter {
                since: Some(at(10)),
                until: Some(at(20)),
                ..AuditFilter::default()
            },
            100
        )
        .await,
        expect(&|e| e.at >= at(10) && e.at < at(20))
    );
    assert!(
        ids(
            AuditFilter {
                chain: Some(AuditChain::Recorded),
                ..AuditFilter::default()
            },
            100
        )
        .await
        .is_empty()
    );
    // Following by position: oldest first from the cursor, also with a filter.
    let follow = ids(
        AuditFilter {
            chain: Some(AuditChain::Streamed),
            after_seq: Some(35),
            ..AuditFilter::default()
        },
        100,
    )
    .await;
    let tail: Vec<String> = events[35..].iter().map(|e| e.id.clone()).collect();
    assert_eq!(follow, tail);
    let follow = ids(
        AuditFilter {
            chain: Some(AuditChain::Streamed),
            after_seq: Some(0),
            actor: Some("user:2".into()),
            ..AuditFilter::default()
        },
        3,
    )
    .await;
    let expected: Vec<String> = events
        .iter()
        .filter(|e| e.actor.as_deref() == Some("user:2"))
        .take(3)
        .map(|e| e.id.clone())
        .collect();
    assert_eq!(follow, expected);
}

async fn bad_filters_are_refused(db: TestDatabase) {
    for filter in [
        AuditFilter {
            after_seq: Some(1),
            ..AuditFilter::default()
        },
        AuditFilter {
            chain: Some(AuditChain::Recorded),
            after_seq: Some(-1),
            ..AuditFilter::default()
        },
        AuditFilter {
            chain: Some(AuditChain::Recorded),
            after_seq: Some(1),
            before: Some("01J".into()),
            ..AuditFilter::default()
        },
        AuditFilter {
            outcome: Some("maybe".into()),
            ..AuditFilter::default()
        },
        AuditFilter {
            resource: Some(String::new()),
            ..AuditFilter::default()
        },
    ] {
        let err = db.store.list_audit(&filter, 10).await.expect_err("refused");
        assert!(
            matches!(err, StoreError::InvalidInput(_)),
            "{filter:?}: {err:?}"
        );
    }
}
