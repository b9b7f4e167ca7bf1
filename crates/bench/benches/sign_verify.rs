//! Signing and verifying one access token per algorithm, with the key manager and verification
//! policy the server uses. Baseline in the same run: serializing and base64-encoding the same
//! claims without a signature.

use std::hint::black_box;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use time::Duration;
use trustgate_core::{Clock, SealingKey, SystemClock};
use trustgate_store::testing::TestDatabase;
use trustgate_tokens::{Algorithm, Expectation, KeyManager, KeyPolicy, verify};

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (keys, _db) = runtime.block_on(async {
        let db = TestDatabase::sqlite().await;
        let keys = KeyManager::load(
            db.store.clone(),
            SealingKey::generate(),
            KeyPolicy::default(),
            Arc::new(SystemClock),
        )
        .await
        .expect("load");
        keys.ensure_keys().await.expect("keys");
        (keys, db)
    });
    let now = SystemClock.now();
    let claims = json!({
        "iss": "https://auth.example", "sub": "01J0000000000000000000000", "aud": "https://api.example",
        "exp": now.unix_timestamp() + 600, "iat": now.unix_timestamp(), "jti": "01J0000000000000000000001",
        "client_id": "tgc_0123456789abcdefghijkl", "scope": "invoices:read"
    });
    c.bench_function("baseline: serialize + base64 claims", |b| {
        b.iter(|| URL_SAFE_NO_PAD.encode(serde_json::to_vec(black_box(&claims)).expect("json")))
    });
    for alg in Algorithm::all() {
        c.bench_function(&format!("sign {alg}"), |b| {
            b.iter(|| keys.sign(alg, "at+jwt", black_box(&claims)).expect("sign"))
        });
        let token = keys.sign(alg, "at+jwt", &claims).expect("sign");
        let expect = Expectation {
            issuer: "https://auth.example",
            audiences: &["https://api.example"],
            typ: Some("at+jwt"),
            now,
            leeway: Duration::seconds(60),
            require_exp: true,
            check_expiry: true,
        };
        c.bench_function(&format!("verify {alg}"), |b| {
            b.iter(|| {
                verify::<Value>(black_box(&token), &keys.resolver(), &expect).expect("verify")
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
