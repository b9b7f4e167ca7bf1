//! In-process PDP benchmark over the Drive-like dataset (`cargo bench -p trustgate-bench`).
//!
//! For every size (default 10k and 1M tuples; `TRUSTGATE_BENCH_SIZES=10000,100000` overrides)
//! and every backend (SQLite always; PostgreSQL when `TRUSTGATE_TEST_DATABASE_URL` is set, in a
//! throwaway schema) it:
//!
//! 1. writes the model and the tuples through `RelationshipStore::write_tuples` in batches,
//! 2. loads them back with `load_tuples` and builds the `TupleIndex` the server checks against
//!    (times of all three are reported),
//! 3. runs warm checks of every query class (`TRUSTGATE_BENCH_ITERS` timed calls per class,
//!    default 20000, after a warm-up that also verifies every expected answer) and, as the
//!    baseline measured in the same run, a `HashMap<String, ()>` lookup of a tuple key among
//!    all the dataset's tuple keys,
//! 4. runs list-objects (`document#viewer`) for a set of team members.
//!
//! Every call is timed on its own with `Instant`; the timer's own cost (measured at start) is
//! subtracted. Checks run in 5 rounds, each class in turn per round; a class's p99 is the
//! median of its per-round p99s (the p99 of all samples pooled is printed next to it). The summary gives p50/p99 per size and backend, the check p50 as a multiple of
//! the baseline, and p99(largest)/p99(smallest).
//!
//! `TRUSTGATE_BENCH_PG_MAX_TUPLES` (default unlimited) skips PostgreSQL above that size, since
//! the store writes row by row.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use trustgate_authz::engine::{CheckRequest, ListObjectsRequest, TypeSystem, check, list_objects};
use trustgate_authz::index::TupleIndex;
use trustgate_authz::model::AuthorizationModel;
use trustgate_bench::{Dataset, QueryClass, Stats, fmt_ns};
use trustgate_store::testing::TestDatabase;
use trustgate_store_api::{StoredModel, TupleKey, WriteOptions};

/// Tuples per `write_tuples` call.
const WRITE_BATCH: usize = 5_000;
/// Timed rounds; each class's p99 is the median of its rounds' p99s, so one burst of noise on
/// a shared machine does not decide it (the pooled p99 is printed too).
const ROUNDS: usize = 5;
/// List-objects calls per user.
const LIST_OBJECTS_REPS: usize = 5;
const STORE_ID: &str = "01JBENCH0000000000000000ST";
const MODEL_ID: &str = "01JBENCH0000000000000000MD";

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse().ok())
}

fn sizes() -> Vec<usize> {
    match std::env::var("TRUSTGATE_BENCH_SIZES") {
        Ok(v) if !v.trim().is_empty() => v
            .split(',')
            .map(|s| {
                s.trim()
                    .replace('_', "")
                    .parse()
                    .expect("TRUSTGATE_BENCH_SIZES is a comma-separated list of tuple counts")
            })
            .collect(),
        _ => vec![10_000, 1_000_000],
    }
}

/// The median cost of an empty timed region.
fn timer_overhead() -> u64 {
    let mut v: Vec<u64> = (0..20_000)
        .map(|_| {
            let t = Instant::now();
            black_box(());
            t.elapsed().as_nanos() as u64
        })
        .collect();
    v.sort_unstable();
    v[v.len() / 2]
}

/// Times `iters` calls of `f(i)`, each on its own.
fn measure<R>(iters: usize, overhead: u64, mut f: impl FnMut(usize) -> R) -> Vec<u64> {
    let mut samples = Vec::with_capacity(iters);
    for i in 0..iters {
        let t = Instant::now();
        black_box(f(i));
        let ns = t.elapsed().as_nanos() as u64;
        samples.push(ns.saturating_sub(overhead));
    }
    samples
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// What one size on one backend measured.
struct Run {
    size: usize,
    backend: &'static str,
    baseline: Stats,
    checks: Stats,
    per_class: Vec<(QueryClass, Stats)>,
    list_objects: Stats,
    list_objects_results: f64,
}

fn main() {
    let sizes = sizes();
    let iters = env_usize("TRUSTGATE_BENCH_ITERS")
        .unwrap_or(20_000)
        .max(100);
    let pg_max = env_usize("TRUSTGATE_BENCH_PG_MAX_TUPLES").unwrap_or(usize::MAX);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let overhead = timer_overhead();
    println!(
        "trustgate PDP bench: sizes {sizes:?}, {iters} timed checks per class, {} CPUs, \
         timer overhead {overhead} ns (subtracted)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let mut runs = Vec::new();
    for &size in &sizes {
        let t = Instant::now();
        let ds = Dataset::generate(size);
        let s = ds.shape;
        println!(
            "\n== dataset {size}: {} tuples ({} users, {} guests, {} groups, {} folders, {} documents, \
             {} public), generated in {}",
            ds.tuples.len(),
            s.users,
            s.guests,
            s.groups,
            s.folders,
            s.documents,
            s.public_documents,
            secs(t.elapsed())
        );
        let records: Vec<TupleKey> = ds.tuples.clone();

        let sqlite = rt.block_on(TestDatabase::sqlite());
        runs.push(run_backend(
            &rt, &sqlite, "sqlite", &ds, &records, iters, overhead,
        ));
        drop(sqlite);

        if size > pg_max {
            println!("\n-- postgres: skipped above TRUSTGATE_BENCH_PG_MAX_TUPLES={pg_max}");
        } else if let Some(pg) = rt.block_on(TestDatabase::postgres("pdp bench (postgres)")) {
            runs.push(run_backend(
                &rt, &pg, "postgres", &ds, &records, iters, overhead,
            ));
        }
    }
    summary(&runs);
}

fn run_backend(
    rt: &tokio::runtime::Runtime,
    db: &TestDatabase,
    backend: &'static str,
    ds: &Dataset,
    records: &[TupleKey],
    iters: usize,
    overhead: u64,
) -> Run {
    let store = &db.store;
    let now = OffsetDateTime::now_utc();
    let model = Dataset::model().expect("bench model parses");

    // 1. Write through the store.
    let t = Instant::now();
    rt.block_on(async {
        store
            .create_fga_store(STORE_ID, "bench", now)
            .await
            .expect("create store");
        store
            .write_model(&StoredModel {
                id: MODEL_ID.into(),
                store_id: STORE_ID.into(),
                schema_version: model.schema_version.clone(),
                model_json: serde_json::to_value(&model).expect("model serializes"),
                created_at: now,
            })
            .await
            .expect("write model");
        for chunk in records.chunks(WRITE_BATCH) {
            store
                .write_tuples(STORE_ID, chunk, &[], WriteOptions::default(), now)
                .await
                .expect("write tuples");
        }
    });
    let write = t.elapsed();

    // 2. Load back: tuples, model, index.
    let t = Instant::now();
    let (snapshot, stored_model) = rt.block_on(async {
        let snapshot = store.load_tuples(STORE_ID).await.expect("load tuples");
        let stored = store
            .latest_model(STORE_ID)
            .await
            .expect("read model")
            .expect("model exists");
        (snapshot, stored)
    });
    let load = t.elapsed();
    let t = Instant::now();
    let model: AuthorizationModel =
        serde_json::from_value::<AuthorizationModel>(stored_model.model_json)
            .expect("stored model parses");
    let ts = TypeSystem::new(model).expect("model builds");
    let seq = u64::try_from(snapshot.seq).expect("seq is positive");
    let keys = snapshot.tuples;
    let index = TupleIndex::with_tuples(seq, &keys).expect("index builds");
    let build = t.elapsed();
    assert_eq!(index.len(), ds.tuples.len(), "every tuple was loaded");
    println!(
        "\n-- {backend}, {} tuples: write_tuples {} ({:.0} tuples/s, batches of {WRITE_BATCH}), \
         load_tuples {}, model + index build {}",
        keys.len(),
        secs(write),
        keys.len() as f64 / write.as_secs_f64(),
        secs(load),
        secs(build),
    );
    drop(keys);

    // 3. Baseline: one HashMap probe of a tuple key, among all of this dataset's tuple keys.
    let table: HashMap<String, ()> = ds
        .tuples
        .iter()
        .map(|t| (format!("{}#{}@{}", t.object, t.relation, t.user), ()))
        .collect();
    let probes: Vec<String> = ds
        .queries_of(QueryClass::Direct)
        .map(|q| format!("{}#{}@{}", q.object, q.relation, q.user))
        .collect();
    let _ = measure(iters, 0, |i| table.get(probes[i % probes.len()].as_str()));
    let baseline = Stats::of(&mut measure(iters, overhead, |i| {
        table.get(black_box(probes[i % probes.len()].as_str()))
    }));
    drop(table);

    // 4. Warm checks per class, in ROUNDS interleaved rounds.
    println!(
        "   {:<20} {:>10} {:>10} {:>11} {:>10} {:>12}",
        "check", "p50", "p99", "p99 pooled", "mean", "p50/baseline"
    );
    let row = |label: &str, s: &Stats, pooled_p99: f64| {
        println!(
            "   {:<20} {:>10} {:>10} {:>11} {:>10} {:>11.1}×",
            label,
            fmt_ns(s.p50_ns),
            fmt_ns(s.p99_ns),
            fmt_ns(pooled_p99),
            fmt_ns(s.mean_ns),
            s.p50_ns / baseline.p50_ns.max(1.0)
        );
    };
    row("baseline (HashMap)", &baseline, baseline.p99_ns);
    let classes: Vec<(QueryClass, Vec<CheckRequest<'_>>)> = QueryClass::ALL
        .iter()
        .map(|&class| {
            let requests = ds
                .queries_of(class)
                .map(|q| {
                    let req = CheckRequest {
                        object: &q.object,
                        relation: &q.relation,
                        user: &q.user,
                        contextual_tuples: &[],
                        context: q.context.as_ref(),
                    };
                    assert_eq!(check(&ts, &*index.current(), &req), Ok(q.expected), "{q:?}");
                    req
                })
                .collect::<Vec<_>>();
            (class, requests)
        })
        .collect();
    for (_, requests) in &classes {
        let warm = (iters / 10).max(requests.len());
        let _ = measure(warm, 0, |i| {
            check(&ts, &*index.current(), &requests[i % requests.len()])
        });
    }
    let per_round = (iters / ROUNDS).max(1);
    let mut samples: Vec<Vec<u64>> = vec![Vec::with_capacity(iters); classes.len()];
    let mut round_p99: Vec<Vec<f64>> = vec![Vec::new(); classes.len() + 1];
    for _ in 0..ROUNDS {
        let mut round_all = Vec::with_capacity(per_round * classes.len());
        for (c, (_, requests)) in classes.iter().enumerate() {
            let mut s = measure(per_round, overhead, |i| {
                check(
                    &ts,
                    &*index.current(),
                    black_box(&requests[i % requests.len()]),
                )
            });
            round_all.extend_from_slice(&s);
            samples[c].extend_from_slice(&s);
            round_p99[c].push(Stats::of(&mut s).p99_ns);
        }
        round_p99[classes.len()].push(Stats::of(&mut round_all).p99_ns);
    }
    let mut per_class = Vec::new();
    let mut all = Vec::with_capacity(iters * classes.len());
    for (c, (class, _)) in classes.iter().enumerate() {
        all.extend_from_slice(&samples[c]);
        let mut stats = Stats::of(&mut samples[c]);
        let pooled = stats.p99_ns;
        stats.p99_ns = median(&mut round_p99[c]);
        row(class.label(), &stats, pooled);
        per_class.push((*class, stats));
    }
    let mut checks = Stats::of(&mut all);
    let pooled = checks.p99_ns;
    checks.p99_ns = median(&mut round_p99[classes.len()]);
    row("all classes", &checks, pooled);

    // 5. List-objects for team members.
    let snap = index.snapshot();
    let mut results = 0usize;
    let mut samples = Vec::new();
    for user in &ds.list_users {
        let req = ListObjectsRequest {
            object_type: "document",
            relation: "viewer",
            user,
            contextual_tuples: &[],
            context: None,
        };
        let found = list_objects(&ts, &*snap, &req).expect("list objects");
        results += found.len();
        samples.extend(measure(LIST_OBJECTS_REPS, overhead, |_| {
            list_objects(&ts, &*snap, black_box(&req))
        }));
    }
    let list_objects_results = results as f64 / ds.list_users.len().max(1) as f64;
    let list = Stats::of(&mut samples);
    println!(
        "   list-objects document#viewer ({} users × {LIST_OBJECTS_REPS}, {:.0} objects on average): \
         p50 {}, p99 {}, mean {}",
        ds.list_users.len(),
        list_objects_results,
        fmt_ns(list.p50_ns),
        fmt_ns(list.p99_ns),
        fmt_ns(list.mean_ns)
    );
    Run {
        size: ds.tuples.len(),
        backend,
        baseline,
        checks,
        per_class,
        list_objects: list,
        list_objects_results,
    }
}

fn summary(runs: &[Run]) {
    println!("\n== summary (checks: all classes mixed; baseline: HashMap lookup, same run)");
    println!(
        "{:<9} {:>9} {:>10} {:>10} {:>10} {:>8} {:>12} {:>12} {:>9}",
        "backend",
        "tuples",
        "check p50",
        "check p99",
        "baseline",
        "p50/base",
        "list-obj p50",
        "list-obj p99",
        "objects"
    );
    for r in runs {
        println!(
            "{:<9} {:>9} {:>10} {:>10} {:>10} {:>7.1}× {:>12} {:>12} {:>9.0}",
            r.backend,
            r.size,
            fmt_ns(r.checks.p50_ns),
            fmt_ns(r.checks.p99_ns),
            fmt_ns(r.baseline.p50_ns),
            r.checks.p50_ns / r.baseline.p50_ns.max(1.0),
            fmt_ns(r.list_objects.p50_ns),
            fmt_ns(r.list_objects.p99_ns),
            r.list_objects_results
        );
    }
    for backend in ["sqlite", "postgres"] {
        let of: Vec<&Run> = runs.iter().filter(|r| r.backend == backend).collect();
        let (Some(small), Some(large)) = (
            of.iter().min_by_key(|r| r.size),
            of.iter().max_by_key(|r| r.size),
        ) else {
            continue;
        };
        if small.size == large.size {
            continue;
        }
        let ratio = |a: f64, b: f64| a / b.max(1.0);
        let classes: Vec<String> = large
            .per_class
            .iter()
            .zip(&small.per_class)
            .map(|((c, l), (_, s))| format!("{} {:.2}", c.label(), ratio(l.p99_ns, s.p99_ns)))
            .collect();
        println!(
            "{backend}: check p99({}) / p99({}) = {:.2} (target ≤ 2; per class: {}); \
             baseline p99 ratio {:.2}",
            large.size,
            small.size,
            ratio(large.checks.p99_ns, small.checks.p99_ns),
            classes.join(", "),
            ratio(large.baseline.p99_ns, small.baseline.p99_ns),
        );
    }
}
