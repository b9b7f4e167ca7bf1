//! Bulk import benchmark over the Drive-like dataset (`cargo bench -p trustgate-bench --bench
//! import`).
//!
//! For one size (default 1M tuples; `TRUSTGATE_BENCH_IMPORT_TUPLES=200000` overrides) and every
//! backend (SQLite always; PostgreSQL when `TRUSTGATE_TEST_DATABASE_URL` is set, each run in a
//! fresh throwaway schema) it measures, each in a fresh database:
//!
//! 1. the baseline, in the same run: the tuples written the way `trustgate store import` wrote
//!    them before the import path, 100 per `RelationshipStore::write_tuples` (one transaction,
//!    one INSERT and one changelog INSERT per tuple; HTTP not included). On a busy machine it
//!    can be limited to the first `TRUSTGATE_BENCH_IMPORT_BASELINE_TUPLES` tuples and compared
//!    by rate;
//! 2. `Pdp::import` of all tuples in one call: validation against the model on the blocking
//!    pool, batches of `IMPORT_BATCH` tuples per transaction, the index loaded at the end;
//! 3. the same in calls of 100,000 tuples (the server's default `authz.max_tuples_per_import`,
//!    what `POST /stores/{id}/import` sees; HTTP and JSON not included), with the index of the
//!    store loaded from the start, so every call also brings it up to date.
//!
//! Every figure is wall time of the whole operation; rates are tuples per second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use trustgate_audit::{Auditor, AuditorConfig, RequestContext};
use trustgate_bench::Dataset;
use trustgate_pdp::{Caller, CheckRequest, Limits, Pdp, QueryScope};
use trustgate_store::testing::TestDatabase;
use trustgate_store_api::{RelationshipStore, TupleKey, WriteOptions};

/// Tuples per write of the baseline (OpenFGA's limit per Write, the old CLI's chunk).
const BASELINE_BATCH: usize = 100;
/// Tuples per call of the chunked import (the server's default limit per request).
const REQUEST_TUPLES: usize = 100_000;

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse().ok())
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn pdp(db: &TestDatabase, max_tuples_per_import: usize) -> Pdp {
    let clock: Arc<dyn trustgate_core::Clock> = Arc::new(trustgate_core::SystemClock);
    let auditor = Auditor::new(db.store.clone(), clock.clone(), AuditorConfig::default());
    let relationships: Arc<dyn RelationshipStore> = db.store.clone();
    Pdp::new(
        relationships,
        clock,
        Limits {
            max_tuples_per_import,
            ..Limits::default()
        },
        auditor,
    )
}

/// A store with the bench model; returns its id.
async fn setup(pdp: &Pdp) -> String {
    let store = pdp.create_store("import bench").await.expect("store").id;
    let model = Dataset::model().expect("bench model parses");
    pdp.write_model(&store, model).await.expect("model");
    store
}

/// A fresh database of `backend`, or `None` for PostgreSQL without a URL.
async fn fresh(backend: &str) -> Option<TestDatabase> {
    if backend == "sqlite" {
        Some(TestDatabase::sqlite().await)
    } else {
        TestDatabase::postgres("import bench (postgres)").await
    }
}

/// Whether `t` (without a condition) is allowed: loads the store's index on first use.
async fn allowed(pdp: &Pdp, store: &str, t: &TupleKey) -> bool {
    static CONTEXT: std::sync::LazyLock<RequestContext> =
        std::sync::LazyLock::new(|| RequestContext::new(None, None, Some("bench")));
    let request = CheckRequest {
        object: &t.object,
        relation: &t.relation,
        user: &t.user,
        contextual_tuples: &[],
        context: None,
    };
    let caller = Caller {
        principal: "service:bench",
        context: &CONTEXT,
    };
    pdp.check(&QueryScope::latest(store), &request, caller)
        .await
        .expect("check")
}

/// The last tuple without a condition: visible once an import returns.
fn probe(tuples: &[TupleKey]) -> &TupleKey {
    tuples
        .iter()
        .rev()
        .find(|t| t.condition_name().is_none())
        .expect("an unconditional tuple")
}

fn main() {
    let size = env_usize("TRUSTGATE_BENCH_IMPORT_TUPLES").unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let t = Instant::now();
    let ds = Dataset::generate(size);
    let tuples = ds.tuples;
    let baseline_n = env_usize("TRUSTGATE_BENCH_IMPORT_BASELINE_TUPLES")
        .unwrap_or(tuples.len())
        .min(tuples.len());
    println!(
        "trustgate import bench: {} tuples (generated in {}), baseline {} tuples, {} CPUs",
        tuples.len(),
        secs(t.elapsed()),
        baseline_n,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut rows = Vec::new();
    for backend in ["sqlite", "postgres"] {
        let Some(db) = rt.block_on(fresh(backend)) else {
            println!("-- postgres: skipped (TRUSTGATE_TEST_DATABASE_URL is not set)");
            continue;
        };
        // 1. Baseline: 100 tuples per write.
        let baseline = rt.block_on(async {
            let pdp = pdp(&db, tuples.len());
            let store = setup(&pdp).await;
            let now = OffsetDateTime::now_utc();
            let t = Instant::now();
            for chunk in tuples[..baseline_n].chunks(BASELINE_BATCH) {
                db.store
                    .write_tuples(&store, chunk, &[], WriteOptions::default(), now)
                    .await
                    .expect("write tuples");
            }
            t.elapsed()
        });
        drop(db);
        println!(
            "-- {backend}: baseline write_tuples x{BASELINE_BATCH}: {baseline_n} tuples in {} ({:.0} tuples/s)",
            secs(baseline),
            rate(baseline_n, baseline)
        );

        // 2. One import call.
        let Some(db) = rt.block_on(fresh(backend)) else {
            continue;
        };
        let (one_call, imported) = rt.block_on(async {
            let pdp = pdp(&db, tuples.len());
            let store = setup(&pdp).await;
            let t = Instant::now();
            let imported = pdp
                .import(&store, None, tuples.clone())
                .await
                .expect("import");
            let elapsed = t.elapsed();
            assert!(allowed(&pdp, &store, probe(&tuples)).await);
            (elapsed, imported)
        });
        assert_eq!(imported.written, tuples.len() as u64);
        drop(db);
        println!(
            "-- {backend}: Pdp::import, one call: {} tuples in {} ({:.0} tuples/s)",
            tuples.len(),
            secs(one_call),
            rate(tuples.len(), one_call)
        );

        // 3. Calls of 100,000 with the index loaded.
        let Some(db) = rt.block_on(fresh(backend)) else {
            continue;
        };
        let chunked = rt.block_on(async {
            let pdp = pdp(&db, REQUEST_TUPLES);
            let store = setup(&pdp).await;
            // The index is loaded (empty) before the first call.
            assert!(!allowed(&pdp, &store, probe(&tuples)).await);
            let t = Instant::now();
            for chunk in tuples.chunks(REQUEST_TUPLES) {
                pdp.import(&store, None, chunk.to_vec())
                    .await
                    .expect("import");
            }
            let elapsed = t.elapsed();
            assert!(allowed(&pdp, &store, probe(&tuples)).await);
            elapsed
        });
        drop(db);
        println!(
            "-- {backend}: Pdp::import, calls of {REQUEST_TUPLES}: {} tuples in {} ({:.0} tuples/s)",
            tuples.len(),
            secs(chunked),
            rate(tuples.len(), chunked)
        );
        rows.push((backend, baseline_n, baseline, one_call, chunked));
    }

    println!(
        "\n| backend | tuples | baseline (x{BASELINE_BATCH} writes) | import, one call | import, calls of {REQUEST_TUPLES} | speed-up (rate, one call / baseline) |"
    );
    println!("|---|---|---|---|---|---|");
    for (backend, baseline_n, baseline, one_call, chunked) in rows {
        println!(
            "| {backend} | {} | {} for {baseline_n} ({:.0}/s) | {} ({:.0}/s) | {} ({:.0}/s) | {:.1}x |",
            tuples.len(),
            secs(baseline),
            rate(baseline_n, baseline),
            secs(one_call),
            rate(tuples.len(), one_call),
            secs(chunked),
            rate(tuples.len(), chunked),
            rate(tuples.len(), one_call) / rate(baseline_n, baseline).max(1e-9)
        );
    }
}
