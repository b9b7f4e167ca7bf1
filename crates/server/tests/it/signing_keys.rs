//! `trustgate-tokens`' signing keys over the real store (both backends), as the server wires
//! them, and the verification policy applied to tokens they signed. (They live here, not in the
//! tokens crate, so that the JOSE crate neither builds nor tests against a database driver.)

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use time::Duration;
use trustgate_core::{Clock, ManualClock, SealingKey};
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;
use trustgate_tokens::{
    Algorithm, Expectation, JwkSetResolver, KeyError, KeyManager, KeyPolicy, KeyResolver, KeyState,
    VerifyError, verify,
};

const ISSUER: &str = "https://auth.example";

fn policy() -> KeyPolicy {
    KeyPolicy {
        rotation_period: Duration::days(30),
        publish_ahead: Duration::minutes(10),
        max_token_lifetime: Duration::hours(1),
        jwks_max_age: Duration::minutes(5),
    }
}

async fn manager(db: &TestDatabase, clock: &ManualClock, sealing: &SealingKey) -> KeyManager {
    let manager = KeyManager::load(
        db.store.clone(),
        sealing.clone(),
        policy(),
        Arc::new(clock.clone()),
    )
    .await
    .expect("load");
    manager.ensure_keys().await.expect("ensure keys");
    manager
}

fn claims(now: i64) -> Value {
    json!({ "iss": ISSUER, "sub": "u1", "aud": "api", "exp": now + 600, "iat": now })
}

fn expect(now: time::OffsetDateTime) -> Expectation<'static> {
    Expectation {
        issuer: ISSUER,
        audiences: &["api"],
        typ: Some("at+jwt"),
        now,
        leeway: Duration::seconds(60),
        require_exp: true,
        check_expiry: true,
    }
}

fn kid_of(token: &str) -> String {
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().expect("header"))
            .expect("b64"),
    )
    .expect("json");
    header["kid"].as_str().expect("kid").to_owned()
}

async fn ensure_keys_creates_one_active_key_per_algorithm_once(db: TestDatabase) {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let sealing = SealingKey::generate();
    let a = manager(&db, &clock, &sealing).await;
    let b = manager(&db, &clock, &sealing).await;
    a.ensure_keys().await.expect("again");
    let keys = b.list();
    assert_eq!(keys.len(), 3, "{keys:?}");
    for alg in Algorithm::all() {
        let of_alg: Vec<_> = keys.iter().filter(|k| k.algorithm == alg).collect();
        assert_eq!(of_alg.len(), 1);
        assert_eq!(of_alg[0].state, KeyState::Active);
    }
    let jwks = a.jwks();
    let published = jwks["keys"].as_array().expect("keys");
    assert_eq!(published.len(), 3);
    for key in published {
        assert_eq!(key["use"], "sig");
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(key.get(private).is_none(), "{private} leaked");
        }
    }
    let debug = format!("{a:?} {:?}", a.resolver());
    assert!(!debug.contains("PRIVATE") && debug.len() < 2000, "{debug}");
    for key in published {
        for member in ["x", "y", "n"] {
            if let Some(value) = key[member].as_str() {
                assert!(!debug.contains(value), "Debug shows key material: {debug}");
            }
        }
    }
}

async fn jwks_members_are_exactly_the_public_ones(db: TestDatabase) {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let keys = manager(&db, &clock, &SealingKey::generate()).await;
    let jwks = keys.jwks();
    let published = jwks["keys"].as_array().expect("keys");
    let infos = keys.list();
    for key in published {
        let object = key.as_object().expect("object");
        let mut members: Vec<&str> = object.keys().map(String::as_str).collect();
        members.sort_unstable();
        let alg: Algorithm = key["alg"].as_str().expect("alg").parse().expect("ours");
        let expected: &[&str] = match alg {
            Algorithm::EdDSA => &["alg", "crv", "kid", "kty", "use", "x"],
            Algorithm::ES256 => &["alg", "crv", "kid", "kty", "use", "x", "y"],
            Algorithm::RS256 => &["alg", "e", "kid", "kty", "n", "use"],
        };
        assert_eq!(members, expected, "{key}");
        match alg {
            Algorithm::EdDSA => assert_eq!(
                (&key["kty"], &key["crv"]),
                (&json!("OKP"), &json!("Ed25519"))
            ),
            Algorithm::ES256 => {
                assert_eq!((&key["kty"], &key["crv"]), (&json!("EC"), &json!("P-256")))
            }
            Algorithm::RS256 => {
                assert_eq!(key["kty"], "RSA");
                let n = URL_SAFE_NO_PAD
                    .decode(key["n"].as_str().expect("n"))
                    .expect("b64");
                assert_eq!(n.len(), 256, "RSA 2048");
                assert_eq!(key["e"], "AQAB");
            }
        }
        let kid = key["kid"].as_str().expect("kid");
        assert_eq!(
            URL_SAFE_NO_PAD.decode(kid).expect("kid is base64url").len(),
            16
        );
        assert!(infos.iter().any(|k| k.kid == kid && k.algorithm == alg));
    }
    // Our own JWKS passes the rules for a client's registered JWK Set.
    let resolver = JwkSetResolver::from_json(&jwks).expect("our JWKS passes the client rules");
    for info in infos {
        assert_eq!(
            resolver.resolve(&info.kid).map(|k| k.algorithm),
            Some(info.algorithm)
        );
    }
}

async fn replicas_racing_ensure_keys_create_one_key_per_algorithm(db: TestDatabase) {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let sealing = SealingKey::generate();
    let load = || {
        KeyManager::load(
            db.store.clone(),
            sealing.clone(),
            policy(),
            Arc::new(clock.clone()),
        )
    };
    let (a, b) = tokio::join!(load(), load());
    let (a, b) = (a.expect("a"), b.expect("b"));
    assert!(a.list().is_empty(), "empty database");
    let (ra, rb) = tokio::join!(a.ensure_keys(), b.ensure_keys());
    ra.expect("a");
    rb.expect("b");
    a.reload().await.expect("reload");
    assert_eq!(a.list(), b.list(), "both replicas see the same keys");
    for alg in Algorithm::all() {
        let of_alg = a.list().into_iter().filter(|k| k.algorithm == alg).count();
        assert_eq!(of_alg, 1, "{alg}: {:?}", a.list());
    }
    // Whichever replica signs, the other verifies.
    let now = clock.now();
    for alg in Algorithm::all() {
        let token = a
            .sign(alg, "at+jwt", &claims(now.unix_timestamp()))
            .expect("sign");
        verify::<Value>(&token, &b.resolver(), &expect(now)).expect("verify on the other replica");
    }
}

async fn tokens_round_trip_for_every_algorithm(db: TestDatabase) {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let keys = manager(&db, &clock, &SealingKey::generate()).await;
    let now = clock.now();
    for alg in Algorithm::all() {
        let token = keys
            .sign(alg, "at+jwt", &claims(now.unix_timestamp()))
            .expect("sign");
        let verified = verify::<Value>(&token, &keys.resolver(), &expect(now)).expect("verify");
        assert_eq!(verified.algorithm, alg);
        assert_eq!(verified.claims["sub"], "u1");
    }
}

async fn rotation_publishes_before_signing_and_retires_after_tokens_expire(db: TestDatabase) {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let sealing = SealingKey::generate();
    let keys = manager(&db, &clock, &sealing).await;
    let now = clock.now().unix_timestamp();
    let old_token = keys
        .sign(Algorithm::ES256, "at+jwt", &claims(now))
        .expect("sign");
    let old_kid = kid_of(&old_token);

    let created = keys.rotate(Some(Algorithm::ES256)).await.expect("rotate");
    assert_eq!(created.len(), 1);
    let new_kid = created[0].kid.clone();
    assert_eq!(created[0].state, KeyState::Published);
    let jwks = keys.jwks().to_string();
    assert!(
        jwks.contains(&new_kid) && jwks.contains(&old_kid),
        "both published"
    );
    let still = keys
        .sign(Algorithm::ES256, "at+jwt", &claims(now))
        .expect("sign");
    assert_eq!(kid_of(&still), old_kid, "the new key does not sign yet");

    // A second replica sees the rotation after a reload.
    let replica = KeyManager::load(
        db.store.clone(),
        sealing.clone(),
        policy(),
        Arc::new(clock.clone()),
    )
    .await
    .expect("replica");
    assert!(replica.jwks().to_string().contains(&new_kid));

    clock.advance(Duration::minutes(10));
    let now2 = clock.now();
    let fresh = keys
        .sign(Algorithm::ES256, "at+jwt", &claims(now2.unix_timestamp()))
        .expect("sign");
    assert_eq!(
        kid_of(&fresh),
        new_kid,
        "the new key signs after publish_ahead"
    );
    verify::<Value>(
        &old_token,
        &keys.resolver(),
        &Expectation {
            check_expiry: false,
            ..expect(now2)
        },
    )
    .expect("retired key still verifies");

    // One hour (the longest token) plus a minute later the old key is gone.
    clock.advance(Duration::hours(1) + Duration::seconds(61));
    keys.maintain().await.expect("maintain");
    assert!(!keys.jwks().to_string().contains(&old_kid));
    let err = verify::<Value>(
        &old_token,
        &keys.resolver(),
        &Expectation {
            check_expiry: false,
            ..expect(clock.now())
        },
    )
    .expect_err("expired key");
    assert_eq!(err, VerifyError::UnknownKey);
    assert!(keys.list().iter().all(|k| k.kid != old_kid), "purged");
}

async fn concurrent_rotations_create_one_key(db: TestDatabase) {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let sealing = SealingKey::generate();
    let a = manager(&db, &clock, &sealing).await;
    let b = manager(&db, &clock, &sealing).await;
    let (ra, rb) = tokio::join!(
        a.rotate(Some(Algorithm::RS256)),
        b.rotate(Some(Algorithm::RS256))
    );
    ra.expect("a");
    rb.expect("b");
    a.reload().await.expect("reload");
    let rsa: Vec<_> = a
        .list()
        .into_iter()
        .filter(|k| k.algorithm == Algorithm::RS256)
        .collect();
    // Each call retries after losing the compare-and-set, so two rotations may both land one
    // after the other; what must never happen is two keys created from the same predecessor.
    let current: Vec<_> = rsa.iter().filter(|k| k.retires_at.is_none()).collect();
    assert_eq!(current.len(), 1, "exactly one current RS256 key: {rsa:?}");
}

async fn maintain_rotates_old_keys(db: TestDatabase) {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let keys = KeyManager::load(
        db.store.clone(),
        SealingKey::generate(),
        policy(),
        Arc::new(clock.clone()),
    )
    .await
    .expect("load");
    // On an empty store maintain() creates what ensure_keys() would: keys that sign at once.
    keys.maintain().await.expect("maintain");
    assert_eq!(keys.list().len(), 3);
    assert!(keys.list().iter().all(|k| k.state == KeyState::Active));
    keys.maintain().await.expect("maintain");
    assert_eq!(keys.list().len(), 3, "nothing due yet");
    clock.advance(Duration::days(30));
    keys.maintain().await.expect("maintain");
    assert_eq!(keys.list().len(), 6, "one new key per algorithm");
}

async fn replicas_racing_maintain_rotate_each_algorithm_once(db: TestDatabase) {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let sealing = SealingKey::generate();
    let a = manager(&db, &clock, &sealing).await;
    let b = manager(&db, &clock, &sealing).await;
    clock.advance(Duration::days(30));
    let (ra, rb) = tokio::join!(a.maintain(), b.maintain());
    ra.expect("a");
    rb.expect("b");
    a.reload().await.expect("reload");
    for alg in Algorithm::all() {
        let of_alg: Vec<_> = a
            .list()
            .into_iter()
            .filter(|k| k.algorithm == alg)
            .collect();
        assert_eq!(
            of_alg.len(),
            2,
            "one scheduled rotation of {alg}, not one per replica: {of_alg:?}"
        );
    }
}

async fn a_different_secrets_key_fails_clearly(db: TestDatabase) {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    manager(&db, &clock, &SealingKey::generate()).await;
    let err = KeyManager::load(
        db.store.clone(),
        SealingKey::generate(),
        policy(),
        Arc::new(clock.clone()),
    )
    .await
    .expect_err("wrong key");
    assert!(matches!(err, KeyError::Sealed { .. }), "{err}");
    assert!(err.to_string().contains("secrets key"));
}

test_on_both_backends!(
    ensure_keys_creates_one_active_key_per_algorithm_once,
    jwks_members_are_exactly_the_public_ones,
    replicas_racing_ensure_keys_create_one_key_per_algorithm,
    tokens_round_trip_for_every_algorithm,
    rotation_publishes_before_signing_and_retires_after_tokens_expire,
    concurrent_rotations_create_one_key,
    maintain_rotates_old_keys,
    replicas_racing_maintain_rotate_each_algorithm_once,
    a_different_secrets_key_fails_clearly,
);

// ---- the verification policy, on a SQLite-backed key manager ----

async fn sqlite_keys() -> (KeyManager, ManualClock, TestDatabase) {
    let db = TestDatabase::sqlite().await;
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let keys = manager(&db, &clock, &SealingKey::generate()).await;
    (keys, clock, db)
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"))
}

#[tokio::test]
async fn policy_refuses_what_it_must() {
    let (keys, clock, _db) = sqlite_keys().await;
    let now = clock.now();
    let good = keys
        .sign(Algorithm::ES256, "at+jwt", &claims(now.unix_timestamp()))
        .expect("sign");
    let resolver = keys.resolver();
    let parts: Vec<&str> = good.split('.').collect();
    let kid = kid_of(&good);
    let check = |token: &str, e: Expectation<'_>| verify::<Value>(token, &resolver, &e);

    assert!(check(&good, expect(now)).is_ok());
    assert_eq!(
        check(&"a".repeat(20_000), expect(now)).expect_err("refused"),
        VerifyError::TooLarge
    );
    assert_eq!(
        check("abc", expect(now)).expect_err("refused"),
        VerifyError::Malformed
    );
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg":"none","kid":kid,"typ":"at+jwt"})),
        parts[1]
    );
    assert_eq!(
        check(&none, expect(now)).expect_err("refused"),
        VerifyError::UnsupportedAlgorithm
    );

    // HS256 keyed with the RSA public key: the classic confusion attack.
    let rsa_token = keys
        .sign(Algorithm::RS256, "at+jwt", &claims(now.unix_timestamp()))
        .expect("sign");
    let rsa_kid = kid_of(&rsa_token);
    let jwks = keys.jwks();
    let rsa_jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == rsa_kid.as_str())
        .expect("rsa")
        .to_string();
    let forged = {
        use hmac::{KeyInit, Mac};
        let input = format!(
            "{}.{}",
            b64(&json!({"alg":"HS256","kid":rsa_kid,"typ":"at+jwt"})),
            parts[1]
        );
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(rsa_jwk.as_bytes()).expect("hmac");
        mac.update(input.as_bytes());
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    };
    assert_eq!(
        check(&forged, expect(now)).expect_err("refused"),
        VerifyError::UnsupportedAlgorithm
    );

    // Header alg must be the key's: an RS256 header on the ES256 key.
    let mismatch = format!(
        "{}.{}.{}",
        b64(&json!({"alg":"RS256","kid":kid,"typ":"at+jwt"})),
        parts[1],
        parts[2]
    );
    assert_eq!(
        check(&mismatch, expect(now)).expect_err("refused"),
        VerifyError::AlgorithmMismatch
    );

    // A token carrying its own key (jwk header) signed by that key: the header is ignored.
    let other_db = TestDatabase::sqlite().await;
    let attacker = manager(&other_db, &clock, &SealingKey::generate()).await;
    let attacker_token = attacker
        .sign(Algorithm::ES256, "at+jwt", &claims(now.unix_timestamp()))
        .expect("sign");
    let attacker_jwk = attacker.jwks()["keys"][1].clone();
    let ap: Vec<&str> = attacker_token.split('.').collect();
    let mut h: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(ap[0]).expect("b64")).expect("json");
    h["jwk"] = attacker_jwk;
    h["jku"] = json!("https://evil.example/jwks");
    let embedded = format!("{}.{}.{}", b64(&h), ap[1], ap[2]);
    assert_eq!(
        check(&embedded, expect(now)).expect_err("refused"),
        VerifyError::UnknownKey
    );
    // Same kid as ours but signed by the attacker: bad signature.
    h["kid"] = json!(kid);
    let same_kid = format!("{}.{}.{}", b64(&h), ap[1], ap[2]);
    assert_eq!(
        check(&same_kid, expect(now)).expect_err("refused"),
        VerifyError::BadSignature
    );
    let no_kid = format!(
        "{}.{}.{}",
        b64(&json!({"alg":"ES256","typ":"at+jwt"})),
        parts[1],
        parts[2]
    );
    assert_eq!(
        check(&no_kid, expect(now)).expect_err("refused"),
        VerifyError::UnknownKey
    );

    let mut tampered_claims = claims(now.unix_timestamp());
    tampered_claims["sub"] = json!("admin");
    let tampered = format!("{}.{}.{}", parts[0], b64(&tampered_claims), parts[2]);
    assert_eq!(
        check(&tampered, expect(now)).expect_err("refused"),
        VerifyError::BadSignature
    );

    assert_eq!(
        check(
            &good,
            Expectation {
                issuer: "https://other",
                ..expect(now)
            }
        )
        .expect_err("refused"),
        VerifyError::WrongIssuer
    );
    assert_eq!(
        check(
            &good,
            Expectation {
                audiences: &["other"],
                ..expect(now)
            }
        )
        .expect_err("refused"),
        VerifyError::WrongAudience
    );
    assert_eq!(
        check(
            &good,
            Expectation {
                typ: Some("logout+jwt"),
                ..expect(now)
            }
        )
        .expect_err("refused"),
        VerifyError::WrongType
    );
    assert!(
        check(
            &good,
            Expectation {
                typ: Some("application/AT+JWT"),
                ..expect(now)
            }
        )
        .is_ok()
    );
    assert!(
        check(&good, expect(now + Duration::seconds(659))).is_ok(),
        "within leeway"
    );
    assert_eq!(
        check(&good, expect(now + Duration::seconds(660))).expect_err("refused"),
        VerifyError::Expired,
        "at exp + leeway (RFC 7519: valid only before exp)"
    );
    let no_leeway = |at| Expectation {
        leeway: Duration::ZERO,
        ..expect(at)
    };
    assert!(check(&good, no_leeway(now + Duration::seconds(599))).is_ok());
    assert_eq!(
        check(&good, no_leeway(now + Duration::seconds(600))).expect_err("refused"),
        VerifyError::Expired,
        "no leeway: expired at exp"
    );
    let mut future = claims(now.unix_timestamp());
    future["nbf"] = json!(now.unix_timestamp() + 120);
    let future = keys
        .sign(Algorithm::ES256, "at+jwt", &future)
        .expect("sign");
    assert_eq!(
        check(&future, expect(now)).expect_err("refused"),
        VerifyError::NotYetValid
    );
    let mut no_exp = claims(now.unix_timestamp());
    no_exp.as_object_mut().expect("obj").remove("exp");
    let no_exp = keys
        .sign(Algorithm::ES256, "at+jwt", &no_exp)
        .expect("sign");
    assert_eq!(
        check(&no_exp, expect(now)).expect_err("refused"),
        VerifyError::Expired
    );
}
