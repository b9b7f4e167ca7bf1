//! API key verification in-process, warm, on one core: what every machine request pays before
//! its permission check. The key is verified once (filling the cache), then again and again;
//! the baseline in the same run is the SHA-256 digest of the same key string, which every
//! verification computes. Before measuring, the bench proves that the cache does not outlive a
//! revocation made through another `ApiKeys` (another replica): after that replica revokes a
//! key and this one reads the credential epoch (its background poll does so every 250 ms), the
//! revoked key is refused.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use trustgate_authn::api_keys::{ApiKeys, ApiKeysConfig, KeyRefusal, KeySpec};
use trustgate_core::{SystemClock, TokenDigest};
use trustgate_store::testing::TestDatabase;
use trustgate_store_api::{KeyOwner, NewServiceAccount};

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (here, key, _db) = runtime.block_on(async {
        let db = TestDatabase::sqlite().await;
        let now = time::OffsetDateTime::now_utc();
        db.store
            .create_service_account(
                &NewServiceAccount {
                    id: "01JF3Z9Q7W8X2Y4Z6A8B0C2D4E",
                    name: "bench",
                    owner: None,
                    description: "",
                },
                now,
            )
            .await
            .expect("account");
        let keys = |store| ApiKeys::new(store, Arc::new(SystemClock), ApiKeysConfig::default());
        let here = keys(db.store.clone());
        let there = keys(db.store.clone());
        let owner = KeyOwner::Service("01JF3Z9Q7W8X2Y4Z6A8B0C2D4E".to_owned());
        let spec = KeySpec {
            scopes: vec!["auditor".to_owned()],
            ..KeySpec::default()
        };
        let key = there.issue(&owner, &spec).await.expect("issue");
        let doomed = there.issue(&owner, &spec).await.expect("issue");
        here.sync().await.expect("epoch");
        here.verify(doomed.key.expose(), None).await.expect("valid");
        there.revoke(&doomed.record.id).await.expect("revoke");
        here.sync().await.expect("epoch");
        assert!(
            matches!(
                here.verify(doomed.key.expose(), None).await,
                Err(KeyRefusal::Invalid)
            ),
            "a revoked key must not be served from the cache"
        );
        here.verify(key.key.expose(), None).await.expect("warm");
        (here, key.key, db)
    });
    let token = key.expose().to_owned();
    c.bench_function("baseline: SHA-256 of the key", |b| {
        b.iter(|| TokenDigest::of(black_box(&token)))
    });
    c.bench_function("verify a warm API key", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let identity = here
                        .verify(black_box(&token), Some("192.0.2.1"))
                        .await
                        .expect("valid");
                    black_box(identity);
                }
                started.elapsed()
            })
        })
    });
    // Verifications per second on this one thread, for the README.
    let rate = runtime.block_on(async {
        let n = 1_000_000u32;
        let started = Instant::now();
        for _ in 0..n {
            black_box(here.verify(&token, None).await.expect("valid"));
        }
        f64::from(n) / started.elapsed().max(Duration::from_nanos(1)).as_secs_f64()
    });
    println!("warm API key verifications on one thread: {rate:.0}/s (target ≥ 1,000,000/s)");
}

criterion_group!(benches, bench);
criterion_main!(benches);
