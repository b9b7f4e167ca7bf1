//! How long `load_tuples` takes on 100,000 tuples (a tenth of them conditioned with a context),
//! on every backend. Ignored by default: it measures rather than checks, and writes a lot.
//!
//! ```text
//! TRUSTGATE_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo test -p trustgate-store --test load_tuples_timing -- --ignored --nocapture
//! ```

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use time::macros::datetime;
use trustgate_store::testing::TestDatabase;
use trustgate_store_api::{OnDuplicate, OnMissing, TupleKey, WriteOptions};

const TUPLES: usize = 100_000;
const BATCH: usize = 10_000;
const RUNS: usize = 5;

fn tuple(i: usize) -> TupleKey {
    let t = TupleKey::new(
        format!("document:doc-{:06}", i / 4),
        ["viewer", "editor", "owner", "commenter"][i % 4],
        format!("user:user-{:05}", i % 5_000),
    );
    if i.is_multiple_of(10) {
        let mut context = Map::new();
        context.insert("ip".into(), json!("10.0.0.0/8"));
        context.insert("n".into(), Value::from(i));
        t.with_condition("in_network", Some(context))
    } else {
        t
    }
}

async fn time_load(db: TestDatabase, backend: &str) {
    let t0 = datetime!(2026-11-23 10:00 UTC);
    db.store
        .create_fga_store("store", "timing", t0)
        .await
        .expect("create store");
    let options = WriteOptions {
        on_duplicate: OnDuplicate::Error,
        on_missing: OnMissing::Error,
    };
    let all: Vec<TupleKey> = (0..TUPLES).map(tuple).collect();
    for batch in all.chunks(BATCH) {
        db.store
            .write_tuples("store", batch, &[], options, t0)
            .await
            .expect("write batch");
    }
    // One untimed load warms the caches.
    let snapshot = db.store.load_tuples("store").await.expect("load");
    assert_eq!(snapshot.tuples.len(), TUPLES);
    let mut times: Vec<Duration> = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        let snapshot = db.store.load_tuples("store").await.expect("load");
        times.push(start.elapsed());
        assert_eq!(snapshot.tuples.len(), TUPLES);
    }
    times.sort();
    println!(
        "load_tuples {backend} {TUPLES} tuples: min {:?}, median {:?}, max {:?} ({RUNS} runs)",
        times[0],
        times[RUNS / 2],
        times[RUNS - 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn load_tuples_sqlite() {
    time_load(TestDatabase::sqlite().await, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn load_tuples_postgres() {
    if let Some(db) = TestDatabase::postgres("load_tuples_postgres").await {
        time_load(db, "postgres").await;
    }
}
