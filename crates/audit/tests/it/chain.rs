//! The chains end to end on the real backends: anchors, retention, and verification that finds
//! every kind of tampering (done with raw SQL past the store, as someone with write access to
//! the database would) and says where.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Map;
use trustgate_audit::chain::{Problem, VerifyPage};
use trustgate_audit::{
    AuditKind, Auditor, AuditorConfig, ChainConfig, Chains, Decision, Event, Outcome,
    RequestContext, Verdict,
};
use trustgate_core::{ManualClock, SealingKey};
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;
use trustgate_store_api::{AuditChain, Backend, Store, record_hash};
use trustgate_tokens::{KeyManager, KeyPolicy};

test_on_both_backends!(
    an_untouched_trail_verifies_page_by_page,
    anchors_are_signed_every_n_events_or_t_seconds,
    an_edited_record_is_found,
    a_deleted_record_is_found,
    an_inserted_record_is_found,
    a_reordered_record_is_found,
    a_rewritten_chain_is_found_by_its_anchor,
    cutting_the_tail_after_an_anchor_is_found,
    retention_deletes_a_prefix_and_verification_starts_after_it,
    anchors_outlive_their_signing_key_but_not_forgery,
);

struct Fixture {
    db: TestDatabase,
    clock: ManualClock,
    auditor: Auditor,
    chains: Chains,
    sealing: SealingKey,
}

async fn keys(store: Arc<dyn Store>, sealing: &SealingKey, clock: &ManualClock) -> KeyManager {
    let keys = KeyManager::load(
        store,
        sealing.clone(),
        KeyPolicy::default(),
        Arc::new(clock.clone()),
    )
    .await
    .expect("keys");
    keys.ensure_keys().await.expect("ensure keys");
    keys
}

/// 12 recorded events and 30 decisions, anchored.
async fn fixture(db: TestDatabase) -> Fixture {
    let clock = ManualClock::new(time::macros::datetime!(2026-12-06 10:00 UTC));
    let sealing = SealingKey::generate();
    let keys = keys(db.store.clone(), &sealing, &clock).await;
    let auditor = Auditor::new(
        db.store.clone(),
        Arc::new(clock.clone()),
        AuditorConfig::default(),
    );
    let chains = Chains::new(
        db.store.clone(),
        keys,
        sealing.clone(),
        Arc::new(clock.clone()),
        ChainConfig {
            anchor_every_events: 10,
            anchor_every: time::Duration::seconds(60),
        },
    );
    let fixture = Fixture {
        db,
        clock,
        auditor,
        chains,
        sealing,
    };
    fixture.add(12, 30).await;
    assert_eq!(fixture.chains.anchor_due().await.expect("anchor"), 2);
    fixture
}

impl Fixture {
    async fn add(&self, recorded: usize, decisions: usize) {
        let ctx = RequestContext::new(Some([192, 0, 2, 7].into()), Some("t"), Some("req"));
        for i in 0..recorded {
            self.auditor
                .record(
                    &ctx,
                    Event::new(AuditKind::Login, Outcome::Success)
                        .by_user(&format!("u{i}"))
                        .detail("factor", "pwd"),
                )
                .await
                .expect("recorded");
            self.clock.advance(time::Duration::milliseconds(3));
        }
        for i in 0..decisions {
            self.auditor.decision(
                &ctx,
                Decision {
                    principal: "service:pep".into(),
                    action: "check",
                    resource: format!("document:{i}"),
                    verdict: if i % 2 == 0 {
                        Verdict::Allow
                    } else {
                        Verdict::Deny
                    },
                    detail: Map::new(),
                },
            );
            self.clock.advance(time::Duration::milliseconds(1));
        }
        assert!(self.auditor.flush(Duration::from_secs(10)).await);
    }

    /// Verifies everything in small steps (exercising the cursor) and returns every problem.
    async fn verify(&self) -> (Vec<Problem>, Vec<VerifyPage>) {
        let mut pages = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1000 {
            let page = self
                .chains
                .verify(cursor.as_deref(), 7)
                .await
                .expect("verify");
            cursor = page.cursor.clone();
            let done = page.done;
            pages.push(page);
            if done {
                let problems = pages.iter().flat_map(|p| p.problems.clone()).collect();
                return (problems, pages);
            }
        }
        panic!("verification does not end");
    }

    async fn sql(&self, statements: &str) {
        self.db.execute_raw(statements).await;
    }

    /// A hash as an SQL literal of the backend.
    fn blob(&self, hash: &[u8; 32]) -> String {
        let hex = trustgate_store_api::audit::hex(hash);
        match self.db.store.backend() {
            Backend::Sqlite => format!("X'{hex}'"),
            Backend::Postgres => format!("'\\x{hex}'::bytea"),
        }
    }
}

fn codes(problems: &[Problem]) -> Vec<(&'static str, Option<i64>)> {
    problems.iter().map(|p| (p.code, p.seq)).collect()
}

async fn an_untouched_trail_verifies_page_by_page(db: TestDatabase) {
    let f = fixture(db).await;
    let (problems, pages) = f.verify().await;
    assert!(problems.is_empty(), "{problems:?}");
    assert!(pages.len() > 5, "small steps need several calls");
    let records: u64 = pages.iter().map(|p| p.records_checked).sum();
    assert_eq!(records, 42);
    let summaries: Vec<(AuditChain, i64)> = pages
        .iter()
        .flat_map(|p| p.chains.iter().map(|c| (c.chain, c.last_seq)))
        .collect();
    assert_eq!(
        summaries,
        [(AuditChain::Recorded, 12), (AuditChain::Streamed, 30)]
    );
    // A cursor that is not one is refused.
    assert!(f.chains.verify(Some("nonsense!"), 10).await.is_err());
}

async fn anchors_are_signed_every_n_events_or_t_seconds(db: TestDatabase) {
    let f = fixture(db).await;
    let store = &f.db.store;
    // Nothing new: nothing to anchor.
    assert_eq!(f.chains.anchor_due().await.expect("anchor"), 0);
    // A few events, not yet ten, within the minute: not yet.
    f.add(3, 0).await;
    assert_eq!(f.chains.anchor_due().await.expect("anchor"), 0);
    // Ten events: at once.
    f.add(0, 10).await;
    assert_eq!(f.chains.anchor_due().await.expect("anchor"), 1);
    // A minute later, the three recorded ones too.
    f.clock.advance(time::Duration::seconds(61));
    assert_eq!(f.chains.anchor_due().await.expect("anchor"), 1);
    let recorded = store
        .audit_anchors(AuditChain::Recorded, 0, 10)
        .await
        .expect("anchors");
    let heads: Vec<(i64, i64)> = recorded.iter().map(|a| (a.number, a.seq)).collect();
    assert_eq!(heads, [(1, 12), (2, 15)]);
    let streamed = store
        .audit_anchors(AuditChain::Streamed, 0, 10)
        .await
        .expect("anchors");
    let heads: Vec<(i64, i64)> = streamed.iter().map(|a| (a.number, a.seq)).collect();
    assert_eq!(heads, [(1, 30), (2, 40)]);
    let (problems, _) = f.verify().await;
    assert!(problems.is_empty(), "{problems:?}");
}

async fn an_edited_record_is_found(db: TestDatabase) {
    let f = fixture(db).await;
    f.sql("UPDATE audit_events SET outcome = 'failure' WHERE chain = 'recorded' AND seq = 3")
        .await;
    let (problems, _) = f.verify().await;
    assert_eq!(codes(&problems), [("record_hash_mismatch", Some(3))]);
    assert_eq!(problems[0].chain, AuditChain::Recorded);
    let id =
        f.db.store
            .audit_record_at(AuditChain::Recorded, 3)
            .await
            .expect("read")
            .expect("stored")
            .event
            .id;
    assert_eq!(problems[0].id.as_deref(), Some(id.as_str()));
    assert!(
        problems[0].message.contains("seq 3"),
        "{}",
        problems[0].message
    );
}

async fn a_deleted_record_is_found(db: TestDatabase) {
    let f = fixture(db).await;
    f.sql("DELETE FROM audit_events WHERE chain = 'streamed' AND seq = 4")
        .await;
    let (problems, _) = f.verify().await;
    assert_eq!(codes(&problems), [("records_missing", Some(4))]);
    assert_eq!(problems[0].chain, AuditChain::Streamed);
}

async fn an_inserted_record_is_found(db: TestDatabase) {
    let f = fixture(db).await;
    // Room made at seq 5 of the streamed chain, and a copy of seq 4 put there.
    f.sql(
        "UPDATE audit_events SET seq = seq + 100000 WHERE chain = 'streamed' AND seq >= 5; \
         UPDATE audit_events SET seq = seq - 99999 WHERE chain = 'streamed' AND seq >= 100000; \
         INSERT INTO audit_events (id, at, chain, kind, outcome, actor, user_id, ip, \
           user_agent, request_id, resource, detail, seq, prev_hash, hash) \
         SELECT 'ZZINSERTED', at, chain, kind, outcome, actor, user_id, ip, user_agent, \
           request_id, resource, detail, 5, hash, hash FROM audit_events \
           WHERE chain = 'streamed' AND seq = 4",
    )
    .await;
    let (problems, _) = f.verify().await;
    // The anchors are checked first: the anchored seq 30 is now another record.
    assert_eq!(codes(&problems[..1]), [("anchor_hash_mismatch", Some(30))]);
    // Then the records: the first one out of place is the inserted one.
    assert_eq!(codes(&problems[1..2]), [("record_hash_mismatch", Some(5))]);
    assert_eq!(problems[1].id.as_deref(), Some("ZZINSERTED"));
    assert!(
        codes(&problems).contains(&("head_mismatch", Some(30))),
        "{problems:?}"
    );

    // Outside the chain: an event with no position, newer than the chains' start.
    let f = fixture_again(f).await;
    f.sql(
        "INSERT INTO audit_events (id, at, chain, kind, outcome, detail) \
         SELECT '01ZZZZZZZZZZZZZZZZZZZZZZZZ', at, 'recorded', 'login', 'success', detail \
         FROM audit_events WHERE chain = 'recorded' AND seq = 1",
    )
    .await;
    let (problems, _) = f.verify().await;
    assert_eq!(codes(&problems), [("record_unchained", None)]);
    assert_eq!(
        problems[0].id.as_deref(),
        Some("01ZZZZZZZZZZZZZZZZZZZZZZZZ")
    );
}

/// The same database emptied and filled again (the first tampering gone).
async fn fixture_again(f: Fixture) -> Fixture {
    let zero = f.blob(&[0; 32]);
    f.sql(&format!(
        "DELETE FROM audit_events; DELETE FROM audit_anchors; \
         UPDATE audit_chain_heads SET seq = 0, hash = {zero}"
    ))
    .await;
    f.add(12, 30).await;
    f.chains.anchor_due().await.expect("anchor");
    let (problems, _) = f.verify().await;
    assert!(problems.is_empty(), "{problems:?}");
    f
}

async fn a_reordered_record_is_found(db: TestDatabase) {
    let f = fixture(db).await;
    f.sql(
        "UPDATE audit_events SET seq = 1000000 WHERE chain = 'streamed' AND seq = 6; \
         UPDATE audit_events SET seq = 6 WHERE chain = 'streamed' AND seq = 7; \
         UPDATE audit_events SET seq = 7 WHERE chain = 'streamed' AND seq = 1000000",
    )
    .await;
    let (problems, _) = f.verify().await;
    assert_eq!(
        codes(&problems),
        [
            ("record_hash_mismatch", Some(6)),
            ("record_hash_mismatch", Some(7)),
            // Its successor links to what used to be at 7.
            ("record_link_broken", Some(8))
        ]
    );
}

async fn a_rewritten_chain_is_found_by_its_anchor(db: TestDatabase) {
    let f = fixture(db).await;
    // Edit seq 2 and recompute every hash after it, head included: the chain is consistent
    // again, only the signed anchor knows better.
    let store = &f.db.store;
    let mut records = store
        .audit_chain_page(AuditChain::Recorded, 0, 100)
        .await
        .expect("records");
    records[1].event.outcome = "failure".into();
    let mut prev = records[0].hash.expect("hash");
    let mut sql = String::from(
        "UPDATE audit_events SET outcome = 'failure' WHERE chain = 'recorded' AND seq = 2;",
    );
    for record in &records[1..] {
        let seq = record.seq.expect("seq");
        let hash = record_hash(AuditChain::Recorded, seq, &prev, &record.event);
        sql.push_str(&format!(
            "UPDATE audit_events SET prev_hash = {}, hash = {} WHERE chain = 'recorded' AND seq = {seq};",
            f.blob(&prev),
            f.blob(&hash)
        ));
        prev = hash;
    }
    sql.push_str(&format!(
        "UPDATE audit_chain_heads SET hash = {} WHERE chain = 'recorded'",
        f.blob(&prev)
    ));
    f.sql(&sql).await;
    let (problems, _) = f.verify().await;
    assert_eq!(codes(&problems), [("anchor_hash_mismatch", Some(12))]);
    assert_eq!(problems[0].anchor, Some(1));
}

async fn cutting_the_tail_after_an_anchor_is_found(db: TestDatabase) {
    let f = fixture(db).await;
    // The last three decisions go, and the head is set back to what is left.
    let store = &f.db.store;
    let kept = store
        .audit_record_at(AuditChain::Streamed, 27)
        .await
        .expect("read")
        .expect("stored");
    f.sql(&format!(
        "DELETE FROM audit_events WHERE chain = 'streamed' AND seq > 27; \
         UPDATE audit_chain_heads SET seq = 27, hash = {} WHERE chain = 'streamed'",
        f.blob(&kept.hash.expect("hash"))
    ))
    .await;
    let (problems, _) = f.verify().await;
    assert_eq!(codes(&problems), [("anchored_record_missing", Some(30))]);
    assert_eq!(problems[0].anchor, Some(1));
    // Without the head set back, the end of the chain says it too.
    f.sql("UPDATE audit_chain_heads SET seq = 30 WHERE chain = 'streamed'")
        .await;
    let (problems, _) = f.verify().await;
    assert_eq!(
        codes(&problems),
        [
            ("anchored_record_missing", Some(30)),
            ("head_mismatch", Some(30))
        ]
    );
}

async fn retention_deletes_a_prefix_and_verification_starts_after_it(db: TestDatabase) {
    let f = fixture(db).await;
    let store = &f.db.store;
    f.clock.advance(time::Duration::days(31));
    f.add(2, 5).await;
    let deleted = f
        .chains
        .apply_retention(AuditChain::Streamed, time::Duration::days(30))
        .await
        .expect("retention");
    assert_eq!(deleted, 30);
    let left = store
        .audit_chain_page(AuditChain::Streamed, 0, 100)
        .await
        .expect("records");
    let seqs: Vec<i64> = left.iter().filter_map(|r| r.seq).collect();
    assert_eq!(seqs, [31, 32, 33, 34, 35]);
    // Recorded events are not touched by the streamed retention.
    assert_eq!(
        store
            .audit_chain_page(AuditChain::Recorded, 0, 100)
            .await
            .expect("records")
            .len(),
        14
    );
    // Nothing more is old enough: a second run deletes nothing.
    assert_eq!(
        f.chains
            .apply_retention(AuditChain::Streamed, time::Duration::days(30))
            .await
            .expect("retention"),
        0
    );
    let (problems, pages) = f.verify().await;
    assert!(problems.is_empty(), "{problems:?}");
    let start = pages
        .iter()
        .flat_map(|p| p.starts.clone())
        .find(|s| s.chain == AuditChain::Streamed)
        .expect("streamed start");
    assert_eq!(start.seq, 30);
    assert!(start.truncated_at.is_some());

    // The chain keeps growing after the truncation and still verifies.
    f.add(0, 3).await;
    f.chains.anchor_due().await.expect("anchor");
    let (problems, _) = f.verify().await;
    assert!(problems.is_empty(), "{problems:?}");

    // Deleting the truncation anchor to hide a deletion does not work: the start is gone.
    f.sql("DELETE FROM audit_anchors WHERE kind = 'truncation'")
        .await;
    let (problems, _) = f.verify().await;
    assert_eq!(problems[0].code, "records_missing");
    assert_eq!(problems[0].seq, Some(1));
}

async fn anchors_outlive_their_signing_key_but_not_forgery(db: TestDatabase) {
    let f = fixture(db).await;
    // The signing keys are purged and new ones made: the anchors verify with the sealed key.
    f.sql("DELETE FROM signing_keys").await;
    let fresh = keys(f.db.store.clone(), &f.sealing, &f.clock).await;
    let chains = Chains::new(
        f.db.store.clone(),
        fresh.clone(),
        f.sealing.clone(),
        Arc::new(f.clock.clone()),
        ChainConfig::default(),
    );
    let page = chains.verify(None, 100_000).await.expect("verify");
    assert!(page.done);
    assert!(page.problems.is_empty(), "{:?}", page.problems);

    // A key sealed with another secrets key is not ours: the anchor no longer verifies.
    let stranger = Chains::new(
        f.db.store.clone(),
        fresh,
        SealingKey::generate(),
        Arc::new(f.clock.clone()),
        ChainConfig::default(),
    );
    let page = stranger.verify(None, 100_000).await.expect("verify");
    let found: Vec<_> = page.problems.iter().map(|p| (p.code, p.anchor)).collect();
    assert_eq!(
        found,
        [
            ("anchor_signature_invalid", Some(1)),
            ("anchor_signature_invalid", Some(1))
        ]
    );

    // A stored statement that differs from the signed one, and a signature that is not one.
    let other = f.blob(&[9; 32]);
    f.sql(&format!(
        "UPDATE audit_anchors SET hash = {other} WHERE chain = 'recorded'; \
         UPDATE audit_anchors SET jws = jws || 'x' WHERE chain = 'streamed'"
    ))
    .await;
    let (problems, _) = f.verify().await;
    let found: Vec<_> = problems
        .iter()
        .map(|p| (p.chain, p.code, p.anchor))
        .collect();
    assert_eq!(
        found,
        [
            (AuditChain::Recorded, "anchor_statement_mismatch", Some(1)),
            (AuditChain::Streamed, "anchor_signature_invalid", Some(1))
        ]
    );
    // An anchor removed from the middle leaves a gap in the numbers.
    f.add(0, 10).await;
    f.chains.anchor_due().await.expect("anchor");
    f.add(0, 10).await;
    f.chains.anchor_due().await.expect("anchor");
    f.sql("DELETE FROM audit_anchors WHERE chain = 'streamed' AND number = 2")
        .await;
    let (problems, _) = f.verify().await;
    assert!(
        problems
            .iter()
            .any(|p| p.code == "anchors_missing" && p.anchor == Some(2)),
        "{problems:?}"
    );
}
