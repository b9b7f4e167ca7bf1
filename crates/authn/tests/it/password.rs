//! Password policy and hashing, negatives first.

use std::time::{Duration, Instant};

use trustgate_authn::password::{
    HashError, HashParams, HashedPassword, PasswordHasher, PasswordHasherConfig, PasswordPolicy,
    PasswordRejection, Verification, hash_password, verify_password,
};
use trustgate_core::Secret;

fn check(pw: &str, ids: &[&str]) -> Result<(), PasswordRejection> {
    PasswordPolicy::default().check(&Secret::new(pw), ids)
}

fn hasher() -> PasswordHasher {
    PasswordHasher::new(PasswordHasherConfig::default())
}

const WEAK: HashParams = HashParams {
    m_cost_kib: 8_192,
    t_cost: 1,
    p_cost: 1,
};

// ----- policy ---------------------------------------------------------------------------------

#[test]
fn too_short_is_refused_with_its_code() {
    for pw in ["", "a", "elevenchars"] {
        let err = check(pw, &[]).expect_err(pw);
        assert_eq!(err, PasswordRejection::TooShort { min: 12 });
        assert_eq!(err.code(), "password_too_short");
    }
    let strict = PasswordPolicy::new(16, 128).expect("valid policy");
    let err = strict
        .check(&Secret::new("fifteen-chars!!"), &[])
        .expect_err("15 < 16");
    assert_eq!(err, PasswordRejection::TooShort { min: 16 });
}

#[test]
fn too_long_is_refused_not_truncated() {
    let max = "x7".repeat(64); // 128 characters
    assert_eq!(
        check(&format!("{max}q"), &[]),
        Err(PasswordRejection::TooLong { max: 128 })
    );
    assert_eq!(
        check(&format!("{max}q"), &[]).map_err(|e| e.code()),
        Err("password_too_long")
    );
    // Multi-byte characters count once each: 128 Cyrillic letters are 256 bytes but fit.
    let accented: String = (0..128u32)
        .map(|i| char::from_u32(0x430 + (i * 7 % 32)).expect("Cyrillic letter"))
        .collect();
    assert_eq!(accented.chars().count(), 128);
    assert_eq!(accented.len(), 256);
    assert_eq!(check(&accented, &[]), Ok(()));

    let roomy = PasswordPolicy::new(12, 1024).expect("valid policy");
    let long: String = (0..1000)
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect();
    assert_eq!(roomy.check(&Secret::new(long.clone()), &[]), Ok(()));
    assert_eq!(
        roomy.check(&Secret::new(format!("{long}{}", "z".repeat(25))), &[]),
        Err(PasswordRejection::TooLong { max: 1024 })
    );
}

#[test]
fn common_passwords_are_refused_case_insensitively() {
    for pw in [
        "1qaz2wsx3edc",
        "QWERTY123456",
        "LeaveMeAlone",
        "Password2024!",
        "iloveyou12345",
        "aaaaaaaaaaaaaaaa",
        "abcdefghijklmnop",
    ] {
        let err = check(pw, &[]).expect_err(pw);
        assert_eq!(err, PasswordRejection::Common, "{pw}");
        assert_eq!(err.code(), "password_common");
    }
}

#[test]
fn user_identity_is_refused() {
    let ids = ["Margarethe", "margarethe.schulz@example.org"];
    for pw in [
        "margarethe.schulz@example.org",
        "MARGARETHE.SCHULZ@EXAMPLE.ORG",
        "margarethe.schulz",
        "i-am-margarethe-2024",
        "Margarethe.Schulz1",
    ] {
        let err = check(pw, &ids).expect_err(pw);
        assert_eq!(err, PasswordRejection::ContainsUserIdentity, "{pw}");
        assert_eq!(err.code(), "password_contains_user_identity");
    }
    // Equality with a short identifier also counts.
    assert_eq!(
        check("ab12ab12ab12x", &["ab12ab12ab12x"]),
        Err(PasswordRejection::ContainsUserIdentity)
    );
}

#[test]
fn good_passwords_pass() {
    for pw in [
        "correct horse battery staple",
        "Vor dem Tore steht ein Brunnen",
        "7sQ!m2#vL9$kR4",
        "пароль-который-трудно-угадать",
    ] {
        assert_eq!(check(pw, &["alice", "alice@example.org"]), Ok(()), "{pw}");
    }
}

// ----- hashing ----------------------------------------------------------------------------------

#[tokio::test]
async fn wrong_password_fails() {
    let h = hasher();
    let stored = h
        .hash(Secret::new("correct horse battery staple"))
        .await
        .expect("hash");
    let v = h
        .verify(stored.clone(), Secret::new("correct horse battery stapler"))
        .await
        .expect("verify");
    assert_eq!(
        v,
        Verification {
            ok: false,
            needs_rehash: false
        }
    );
    let v = h
        .verify(stored.clone(), Secret::new(""))
        .await
        .expect("verify");
    assert!(!v.ok);
    let v = h
        .verify(stored, Secret::new("correct horse battery staple"))
        .await
        .expect("verify");
    assert_eq!(
        v,
        Verification {
            ok: true,
            needs_rehash: false
        }
    );
}

#[tokio::test]
async fn two_hundred_characters_hash_whole() {
    let h = hasher();
    let password: String = (0..200)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let stored = h.hash(Secret::new(password.clone())).await.expect("hash");
    assert!(
        stored
            .as_phc()
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stored:?}"
    );

    assert!(
        h.verify(stored.clone(), Secret::new(password.clone()))
            .await
            .expect("verify")
            .ok
    );
    // Only the last character differs: a truncating hash would accept it.
    let mut last_changed = password.clone();
    last_changed.pop();
    last_changed.push('!');
    assert!(
        !h.verify(stored.clone(), Secret::new(last_changed))
            .await
            .expect("verify")
            .ok
    );
    // A prefix (what a 72-byte bcrypt-style truncation would see) fails too.
    assert!(
        !h.verify(stored, Secret::new(password[..72].to_owned()))
            .await
            .expect("verify")
            .ok
    );
}

#[tokio::test]
async fn salts_differ() {
    let h = hasher();
    let a = h
        .hash(Secret::new("same password here"))
        .await
        .expect("hash");
    let b = h
        .hash(Secret::new("same password here"))
        .await
        .expect("hash");
    assert_ne!(a, b);
}

#[test]
fn weaker_parameters_need_rehash_only_on_success() {
    let pw = Secret::new("a fine passphrase indeed");
    let weak = hash_password(&pw, WEAK).expect("hash");
    assert!(weak.as_phc().contains("m=8192,t=1,p=1"));
    let v = verify_password(&weak, &pw, HashParams::OWASP).expect("verify");
    assert_eq!(
        v,
        Verification {
            ok: true,
            needs_rehash: true
        }
    );
    // Wrong password: no rehash advice (the caller has nothing to rehash).
    let v = verify_password(&weak, &Secret::new("another one"), HashParams::OWASP).expect("verify");
    assert_eq!(
        v,
        Verification {
            ok: false,
            needs_rehash: false
        }
    );
    // Same parameters as current: no rehash.
    assert_eq!(
        verify_password(&weak, &pw, WEAK).expect("verify"),
        Verification {
            ok: true,
            needs_rehash: false
        }
    );
    // Stronger stored than current (current lowered): no rehash.
    let strong = hash_password(&pw, HashParams::OWASP).expect("hash");
    assert!(
        !verify_password(&strong, &pw, WEAK)
            .expect("verify")
            .needs_rehash
    );
}

#[test]
fn argon2i_hash_needs_rehash_to_argon2id() {
    let pw = Secret::new("a fine passphrase indeed");
    let id = hash_password(&pw, WEAK).expect("hash");
    // Rebuild the same kind of hash under argon2i through the PHC identifier.
    use argon2::password_hash::PasswordHasher as _;
    let argon2i = argon2::Argon2::new(
        argon2::Algorithm::Argon2i,
        argon2::Version::V0x13,
        argon2::Params::new(19_456, 2, 1, None).expect("params"),
    );
    let phc = argon2i
        .hash_password_with_salt(pw.expose().as_bytes(), b"0123456789abcdef")
        .expect("hash")
        .to_string();
    assert!(phc.starts_with("$argon2i$"));
    let v =
        verify_password(&HashedPassword::from_phc(phc), &pw, HashParams::OWASP).expect("verify");
    assert_eq!(
        v,
        Verification {
            ok: true,
            needs_rehash: true
        }
    );
    assert!(id.as_phc().starts_with("$argon2id$"));
}

#[test]
fn unusable_stored_hashes_are_errors() {
    let pw = Secret::new("whatever it is");
    let cases = [
        ("", HashError::InvalidHash),
        ("not a hash", HashError::InvalidHash),
        ("$argon2id$v=19$m=19456,t=2,p=1$", HashError::InvalidHash),
        (
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
            HashError::InvalidHash,
        ),
        (
            "$pbkdf2-sha256$i=27500$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
            HashError::UnsupportedAlgorithm,
        ),
    ];
    for (phc, expected) in cases {
        assert_eq!(
            verify_password(&HashedPassword::from_phc(phc), &pw, HashParams::OWASP),
            Err(expected),
            "{phc}"
        );
    }
    // A tampered row asking for 4 GiB is refused before any memory is allocated.
    let real = hash_password(&pw, WEAK).expect("hash");
    let greedy = real.as_phc().replace("m=8192", "m=4194304");
    assert_eq!(
        verify_password(&HashedPassword::from_phc(greedy), &pw, HashParams::OWASP),
        Err(HashError::ExcessiveParams)
    );
}

#[test]
fn oversized_input_is_not_hashed() {
    let huge = Secret::new("x".repeat(5000));
    assert_eq!(hash_password(&huge, WEAK), Err(HashError::PasswordTooLong));
    let stored = hash_password(&Secret::new("reasonable one"), WEAK).expect("hash");
    let v = verify_password(&stored, &huge, HashParams::OWASP).expect("verify");
    assert!(!v.ok);
}

#[test]
fn debug_of_a_hash_shows_no_salt_or_digest() {
    let stored = hash_password(&Secret::new("reasonable one"), WEAK).expect("hash");
    let parts: Vec<&str> = stored.as_phc().split('$').collect();
    let shown = format!("{stored:?}");
    assert!(shown.contains("argon2id"));
    assert!(!shown.contains(parts[4]), "salt leaked: {shown}");
    assert!(!shown.contains(parts[5]), "hash leaked: {shown}");
}

#[tokio::test]
async fn dummy_verify_fails_and_costs_like_a_real_verify() {
    let h = hasher();
    let stored = h
        .hash(Secret::new("correct horse battery staple"))
        .await
        .expect("hash");
    // First call makes the dummy hash; time the later ones.
    let v = h
        .dummy_verify(Secret::new("anything"))
        .await
        .expect("dummy");
    assert_eq!(
        v,
        Verification {
            ok: false,
            needs_rehash: false
        }
    );

    // Minimum of a few runs of each, so contention from parallel tests cannot skew one side.
    let mut real = Duration::MAX;
    let mut dummy = Duration::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        let _ = h
            .verify(stored.clone(), Secret::new("wrong guess"))
            .await
            .expect("verify");
        real = real.min(start.elapsed());
        let start = Instant::now();
        let v = h
            .dummy_verify(Secret::new("trustgate dummy password"))
            .await
            .expect("dummy");
        dummy = dummy.min(start.elapsed());
        assert!(
            !v.ok,
            "dummy_verify must never succeed, even with the dummy's own password"
        );
    }
    assert!(
        dummy * 4 >= real,
        "dummy verify ({dummy:?}) must cost about as much as a real one ({real:?})"
    );
}

// ----- the bounded pool ---------------------------------------------------------------------------

#[tokio::test]
async fn busy_when_the_queue_is_full() {
    // One running, one waiting; everything beyond is refused at once.
    let h = PasswordHasher::new(PasswordHasherConfig {
        params: WEAK,
        max_concurrent: 1,
        max_waiting: 1,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10 {
        let h = h.clone();
        tasks.spawn(async move { h.hash(Secret::new(format!("password number {i}"))).await });
    }
    let mut ok = 0;
    let mut busy = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task") {
            Ok(_) => ok += 1,
            Err(HashError::Busy) => busy += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((ok, busy), (2, 8));
    assert_eq!(HashError::Busy.code(), "password_hashing_busy");
    // Load gone: admitted again, and the counter went back to zero.
    assert_eq!(h.in_flight(), 0);
    assert!(h.hash(Secret::new("after the flood")).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_under_parallel_load_and_recovers() {
    let h = PasswordHasher::new(PasswordHasherConfig {
        params: HashParams::OWASP,
        max_concurrent: 1,
        max_waiting: 2,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let h = h.clone();
        tasks.spawn(async move { h.hash(Secret::new(format!("password number {i}"))).await });
    }
    let results: Vec<_> = tasks.join_all().await;
    let busy = results
        .iter()
        .filter(|r| matches!(r, Err(HashError::Busy)))
        .count();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok + busy, 40);
    assert!(
        busy >= 30,
        "a 1+2 pool must refuse most of 40 simultaneous hashes, refused {busy}"
    );
    assert!(ok >= 3);
    assert_eq!(h.in_flight(), 0);
}

#[tokio::test]
async fn cancelled_request_releases_its_slot() {
    let h = PasswordHasher::new(PasswordHasherConfig {
        params: WEAK,
        max_concurrent: 1,
        max_waiting: 0,
    });
    // Start one and drop it while it runs: the blocking work keeps the slot until done.
    let running = {
        let h = h.clone();
        tokio::spawn(async move { h.hash(Secret::new("first one here")).await })
    };
    tokio::task::yield_now().await;
    running.abort();
    let _ = running.await;
    // Eventually the slot is free again.
    let mut admitted = false;
    for _ in 0..200 {
        match h.hash(Secret::new("second one here")).await {
            Ok(_) => {
                admitted = true;
                break;
            }
            Err(HashError::Busy) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(admitted);
    assert_eq!(h.in_flight(), 0);
}
