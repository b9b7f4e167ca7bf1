//! The tuple index: changelog application, atomic batches under concurrent readers, readers
//! that never block writers, reads in both directions, and (ignored by default) memory per
//! tuple at 1M tuples; a store whose object ids churn keeps a bounded symbol table.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use serde_json::json;
use trustgate_authz::dsl;
use trustgate_authz::engine::{CheckRequest, TupleReader, TypeSystem, UserSelector, check};
use trustgate_authz::index::{COMPACT_SLACK, IndexError, TupleChange, TupleIndex};
use trustgate_authz::tuple::{ObjectRef, RelationshipCondition, TupleKey, UserRef};

fn t(object: &str, relation: &str, user: &str) -> TupleKey {
    TupleKey::new(object, relation, user)
}

fn users_of(reader: &dyn TupleReader, object: &str, relation: &str) -> Vec<String> {
    let mut out = Vec::new();
    let object = ObjectRef::parse(object).expect("object");
    reader
        .read_users(object, relation, UserSelector::All, &mut |v| {
            out.push(format!("{:?}", v.user));
            ControlFlow::Continue(())
        })
        .expect("read");
    out
}

#[test]
fn changelog_is_applied_in_order_and_atomically() {
    let index = TupleIndex::new();
    assert_eq!(index.applied_seq(), 0);
    assert_eq!(
        index.apply(
            1,
            &[TupleChange::Write(t("document:1", "viewer", "user:anne"))]
        ),
        Ok(true)
    );
    // A replay is ignored, a gap is refused.
    assert_eq!(
        index.apply(
            1,
            &[TupleChange::Write(t("document:9", "viewer", "user:x"))]
        ),
        Ok(false)
    );
    assert!(matches!(
        index.apply(3, &[]),
        Err(IndexError::Gap { applied: 1, got: 3 })
    ));
    // A batch with a malformed tuple changes nothing.
    let before = index.snapshot();
    assert!(
        index
            .apply(
                2,
                &[
                    TupleChange::Write(t("document:2", "viewer", "user:bob")),
                    TupleChange::Write(t("document 3", "viewer", "user:bob")),
                ],
            )
            .is_err()
    );
    assert_eq!(index.applied_seq(), 1);
    assert_eq!(index.len(), 1);
    assert_eq!(before.len(), 1);
    // Deletes, rewrites with a new condition, deletes of missing tuples.
    let cond = TupleKey {
        condition: Some(RelationshipCondition {
            name: "c".into(),
            context: json!({"a": 1}).as_object().cloned(),
        }),
        ..t("document:1", "viewer", "user:anne")
    };
    assert_eq!(
        index.apply(
            2,
            &[
                TupleChange::Write(cond.clone()),
                TupleChange::Write(t("document:1", "viewer", "group:eng#member")),
                TupleChange::Write(t("document:1", "viewer", "user:*")),
                TupleChange::Delete(t("document:7", "viewer", "user:nobody")),
            ],
        ),
        Ok(true)
    );
    let snap = index.snapshot();
    let exported: Vec<TupleKey> = snap.tuples().collect();
    assert_eq!(exported.len(), 3);
    assert!(exported.contains(&cond));
    assert!(exported.contains(&t("document:1", "viewer", "user:*")));
    assert_eq!(
        index.apply(
            3,
            &[TupleChange::Delete(t("document:1", "viewer", "user:anne"))]
        ),
        Ok(true)
    );
    assert_eq!(index.len(), 2);
    // The old snapshot is untouched.
    assert_eq!(snap.len(), 3);
}

#[test]
fn replace_publishes_only_a_newer_load() {
    let index = TupleIndex::new();
    index
        .apply(
            1,
            &[TupleChange::Write(t("document:1", "viewer", "user:anne"))],
        )
        .expect("apply 1");
    let loaded = [
        t("document:1", "viewer", "user:anne"),
        t("document:2", "viewer", "user:bob"),
    ];
    // A load as of seq 5 replaces what seq 1 held.
    assert!(index.replace(5, loaded.iter()).expect("replace"));
    assert_eq!((index.applied_seq(), index.len()), (5, 2));
    let snap = index.snapshot();
    assert_eq!(users_of(&*snap, "document:2", "viewer").len(), 1);
    // A load that is not ahead is dropped; the changelog goes on from the replaced seq.
    assert!(!index.replace(5, [].iter()).expect("same seq"));
    assert!(!index.replace(3, [].iter()).expect("older"));
    assert_eq!(index.len(), 2);
    assert!(
        index
            .apply(
                6,
                &[TupleChange::Delete(t("document:1", "viewer", "user:anne"))]
            )
            .expect("apply 6")
    );
    assert_eq!((index.applied_seq(), index.len()), (6, 1));
}

#[test]
fn apply_each_publishes_many_batches_at_once_or_nothing() {
    let index = TupleIndex::new();
    let w = |o: &str| TupleChange::Write(t(o, "viewer", "user:anne"));
    assert_eq!(
        index.apply_each(&[(1, w("document:1")), (2, w("document:2"))]),
        Ok(2)
    );
    // Replayed batches are skipped, new ones applied.
    assert_eq!(
        index.apply_each(&[(2, w("document:2")), (3, w("document:3"))]),
        Ok(3)
    );
    assert_eq!((index.applied_seq(), index.len()), (3, 3));
    // A gap anywhere changes nothing.
    let err = index.apply_each(&[(4, w("document:4")), (6, w("document:6"))]);
    assert_eq!(err, Err(IndexError::Gap { applied: 4, got: 6 }));
    assert_eq!((index.applied_seq(), index.len()), (3, 3));
    assert_eq!(index.apply_each(&[]), Ok(3));
}

#[test]
fn reads_in_both_directions() {
    let index = TupleIndex::with_tuples(
        7,
        &[
            t("document:1", "viewer", "user:anne"),
            t("document:1", "viewer", "user:*"),
            t("document:1", "viewer", "group:eng#member"),
            t("document:1", "editor", "user:anne"),
            t("document:2", "viewer", "user:anne"),
            t("folder:1", "viewer", "user:anne"),
        ],
    )
    .expect("load");
    assert_eq!(index.applied_seq(), 7);
    let snap = index.snapshot();
    assert_eq!(users_of(&*snap, "document:1", "viewer").len(), 3);
    let mut usersets = Vec::new();
    snap.read_users(
        ObjectRef::parse("document:1").expect("object"),
        "viewer",
        UserSelector::Type {
            user_type: "group",
            relation: Some("member"),
        },
        &mut |v| {
            usersets.push(format!("{:?}", v.user));
            ControlFlow::Continue(())
        },
    )
    .expect("read");
    assert_eq!(usersets.len(), 1);
    let mut objects = Vec::new();
    snap.read_objects(
        "document",
        "viewer",
        UserRef::parse("user:anne").expect("user"),
        &mut |v| {
            objects.push(v.object.object_id.to_owned());
            ControlFlow::Continue(())
        },
    )
    .expect("read");
    assert_eq!(objects, vec!["1", "2"]);
    // Early stop.
    let mut n = 0;
    snap.read_users(
        ObjectRef::parse("document:1").expect("object"),
        "viewer",
        UserSelector::All,
        &mut |_| {
            n += 1;
            ControlFlow::Break(())
        },
    )
    .expect("read");
    assert_eq!(n, 1);
}

/// Writers apply batches that keep an invariant (the pair `a{k}` / `b{k}` is present together
/// or not at all); readers on other threads must never see half a batch, and a reader holding a
/// snapshot for a long time must not hold up the writer.
#[test]
fn readers_see_whole_batches_and_never_block_writers() {
    let model = dsl::parse(
        "model
  schema 1.1
type user
type document
  relations
    define viewer: [user]
",
    )
    .expect("model");
    let ts = Arc::new(TypeSystem::new(model).expect("type system"));
    let index = Arc::new(TupleIndex::new());
    const PAIRS: usize = 8;
    const BATCHES: u64 = 2_000;
    let done = Arc::new(AtomicBool::new(false));

    let mut readers = Vec::new();
    for _ in 0..3 {
        let (index, ts, done) = (index.clone(), ts.clone(), done.clone());
        readers.push(std::thread::spawn(move || {
            let mut snapshots = 0u64;
            while !done.load(Ordering::Acquire) {
                let snap = index.current();
                assert_eq!(
                    snap.len() % 2,
                    0,
                    "half a batch visible at seq {}",
                    snap.seq()
                );
                for k in 0..PAIRS {
                    let a = format!("document:a{k}");
                    let b = format!("document:b{k}");
                    let q = |object: &str| {
                        check(
                            &ts,
                            &*snap,
                            &CheckRequest {
                                object,
                                relation: "viewer",
                                user: "user:anne",
                                contextual_tuples: &[],
                                context: None,
                            },
                        )
                    };
                    assert_eq!(q(&a), q(&b), "pair {k} split at seq {}", snap.seq());
                }
                snapshots += 1;
            }
            snapshots
        }));
    }

    // A long-running reader: holds one snapshot while the writer keeps going.
    let (held_tx, held_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let long_reader = {
        let index = index.clone();
        std::thread::spawn(move || {
            let snap = index.snapshot();
            let len = snap.len();
            let seq = snap.seq();
            held_tx.send(()).expect("signal");
            release_rx.recv().expect("release");
            // Nothing changed under it.
            assert_eq!(snap.len(), len);
            assert_eq!(snap.seq(), seq);
        })
    };
    held_rx.recv().expect("long reader holds its snapshot");

    let start = Instant::now();
    for seq in 1..=BATCHES {
        let k = (seq as usize) % PAIRS;
        let pair = [
            t(&format!("document:a{k}"), "viewer", "user:anne"),
            t(&format!("document:b{k}"), "viewer", "user:anne"),
        ];
        let present = index
            .snapshot()
            .tuples()
            .any(|x| x.object == format!("document:a{k}"));
        let changes: Vec<TupleChange> = pair
            .into_iter()
            .map(|x| {
                if present {
                    TupleChange::Delete(x)
                } else {
                    TupleChange::Write(x)
                }
            })
            .collect();
        assert_eq!(index.apply(seq, &changes), Ok(true));
    }
    let elapsed = start.elapsed();
    // The writer finished while the long reader still holds its snapshot.
    release_tx.send(()).expect("release");
    long_reader.join().expect("long reader");
    done.store(true, Ordering::Release);
    let mut total = 0;
    for r in readers {
        total += r.join().expect("reader");
    }
    assert_eq!(index.applied_seq(), BATCHES);
    assert!(total > 0);
    assert!(elapsed < Duration::from_secs(60), "writer took {elapsed:?}");
}

/// Documents created and deleted (a new object id each time, as `trustgate-load soak` does):
/// the strings of deleted tuples must not stay interned forever, and compacting the table must
/// not change what the index answers.
#[test]
fn churning_object_ids_keep_the_symbol_table_bounded() {
    let ts = TypeSystem::new(
        dsl::parse(
            "model\n  schema 1.1\ntype user\ntype document\n  relations\n    define viewer: [user, user with fresh]\ncondition fresh(n: int) {\n  n < 10\n}\n",
        )
        .expect("model parses"),
    )
    .expect("model builds");
    let conditioned = {
        let mut tk = t("document:kept-conditioned", "viewer", "user:carol");
        tk.condition = Some(RelationshipCondition {
            name: "fresh".into(),
            context: None,
        });
        tk
    };
    let index = TupleIndex::with_tuples(
        1,
        &[
            t("document:kept", "viewer", "user:anne"),
            conditioned.clone(),
        ],
    )
    .expect("load");
    let mut seq = 1;
    let mut max_symbols = 0;
    let churn = 20 * COMPACT_SLACK as u64;
    for i in 0..churn {
        let tk = t(
            &format!("document:churn{i}"),
            "viewer",
            &format!("user:u{i}"),
        );
        seq += 1;
        assert_eq!(
            index.apply(seq, &[TupleChange::Write(tk.clone())]),
            Ok(true)
        );
        seq += 1;
        assert_eq!(index.apply(seq, &[TupleChange::Delete(tk)]), Ok(true));
        // What the PDP does after a catch-up (on the blocking pool).
        if index.needs_compaction() {
            assert!(index.compact());
        }
        max_symbols = max_symbols.max(index.snapshot().symbol_count());
    }
    // Two new strings per round: without compaction the table would hold 2 × churn of them.
    // With it, at most twice the last build (8 strings of the kept tuples and the empty one,
    // plus the 2 of the churning tuple alive in that batch) plus the slack.
    assert!(
        max_symbols <= 2 * (8 + 2) + COMPACT_SLACK,
        "{max_symbols} symbols after {churn} write + delete rounds"
    );
    let snap = index.snapshot();
    assert_eq!(snap.len(), 2);
    assert_eq!(snap.seq(), seq);
    let mut left: Vec<TupleKey> = snap.tuples().collect();
    left.sort_by(|a, b| a.object.cmp(&b.object));
    assert_eq!(
        left,
        vec![t("document:kept", "viewer", "user:anne"), conditioned]
    );
    // Reads in both directions and checks still work after compactions.
    assert_eq!(
        users_of(&*snap, "document:kept", "viewer"),
        vec![format!("{:?}", UserRef::parse("user:anne").expect("user"))]
    );
    let ctx = json!({"n": 3});
    for (object, user, context, expected) in [
        ("document:kept", "user:anne", None, true),
        (
            "document:kept-conditioned",
            "user:carol",
            ctx.as_object(),
            true,
        ),
        ("document:churn5", "user:u5", None, false),
        ("document:kept", "user:u5", None, false),
    ] {
        let got = check(
            &ts,
            &*snap,
            &CheckRequest {
                object,
                relation: "viewer",
                user,
                contextual_tuples: &[],
                context,
            },
        );
        assert_eq!(got, Ok(expected), "{object} {user}");
    }
    // A write after compaction interns into the new table and is found.
    seq += 1;
    let late = t("document:late", "viewer", "user:u7");
    assert_eq!(index.apply(seq, &[TupleChange::Write(late)]), Ok(true));
    assert_eq!(
        users_of(&*index.snapshot(), "document:late", "viewer").len(),
        1
    );
}

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resident memory per tuple at 1M tuples (run with `--ignored --nocapture`, ideally with
/// `--release`). The shape is realistic: 200k documents with several relations each, 20k
/// users, groups; about 1 distinct object id per 5 tuples.
#[test]
#[ignore = "slow; measures memory"]
fn memory_per_tuple_at_one_million() {
    let mut tuples = Vec::with_capacity(1_000_000);
    let mut x: u64 = 1;
    let mut next = |n: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % n
    };
    for d in 0..200_000u64 {
        let doc = format!("document:d{d}");
        tuples.push(t(&doc, "parent", &format!("folder:f{}", next(2_000))));
        tuples.push(t(&doc, "owner", &format!("user:u{}", next(20_000))));
        tuples.push(t(&doc, "viewer", &format!("user:u{}", next(20_000))));
        tuples.push(t(&doc, "editor", &format!("user:u{}", next(20_000))));
        tuples.push(t(&doc, "viewer", &format!("group:g{}#member", next(2_000))));
    }
    let before = rss_bytes().unwrap_or(0);
    let index = TupleIndex::with_tuples(1, &tuples).expect("load");
    let after = rss_bytes().unwrap_or(0);
    let per_tuple = after.saturating_sub(before) / index.len() as u64;
    eprintln!(
        "{} tuples, {} symbols: {} bytes resident per tuple",
        index.len(),
        index.snapshot().symbol_count(),
        per_tuple
    );
    assert!(per_tuple < 300, "{per_tuple} bytes per tuple");
}
