//! TOTP and recovery codes, negatives first.

use base64::Engine as _;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use trustgate_authn::totp::{
    RECOVERY_CODE_CHARS, RECOVERY_CODE_COUNT, TotpError, TotpSecret, TotpSetupError,
    generate_recovery_codes, normalize_recovery_code, recovery_code_digest, verify_recovery_code,
};
use trustgate_core::{Clock, ManualClock};

const STEP: Duration = Duration::seconds(30);

fn clock() -> ManualClock {
    // 10 s into a step, so ±1 step stays inside the neighbouring steps.
    ManualClock::new(datetime!(2026-03-01 12:00:10 UTC))
}

fn step_of(at: OffsetDateTime) -> u64 {
    TotpSecret::step_at(at).expect("after 1970")
}

/// A six-digit code that is not the code of any step in the window around `now`.
fn wrong_code(secret: &TotpSecret, now: OffsetDateTime) -> String {
    let window: Vec<String> = (-1..=1).map(|k| secret.code_at(now + STEP * k)).collect();
    (0..1_000_000u32)
        .map(|n| format!("{n:06}"))
        .find(|c| !window.contains(c))
        .expect("some code is wrong")
}

#[test]
fn garbage_input_is_malformed() {
    let secret = TotpSecret::generate();
    let now = clock().now();
    for input in [
        "",
        " ",
        "12345",
        "1234567",
        "12345a",
        "abcdef",
        "12-345",
        "+12345",
        "-12345",
        "１２３４５６",
        "123456\0",
        "12 34 5",
        "0x1234",
    ] {
        assert_eq!(
            secret.verify(input, now, None),
            Err(TotpError::Malformed),
            "{input:?}"
        );
    }
    let long = "1".repeat(10_000);
    assert_eq!(secret.verify(&long, now, None), Err(TotpError::Malformed));
    assert_eq!(TotpError::Malformed.code(), "totp_malformed");
}

#[test]
fn wrong_code_is_invalid() {
    let secret = TotpSecret::generate();
    let now = clock().now();
    let err = secret
        .verify(&wrong_code(&secret, now), now, None)
        .expect_err("wrong");
    assert_eq!(err, TotpError::Invalid);
    assert_eq!(err.code(), "totp_invalid");
    // Another account's code does not work here.
    let other = TotpSecret::generate();
    let theirs = other.code_at(now);
    if ![-1, 0, 1]
        .iter()
        .any(|k| secret.code_at(now + STEP * *k) == theirs)
    {
        assert_eq!(secret.verify(&theirs, now, None), Err(TotpError::Invalid));
    }
}

#[test]
fn two_steps_away_is_rejected() {
    let secret = TotpSecret::generate();
    let clock = clock();
    let now = clock.now();
    for k in [-3, -2, 2, 3] {
        let code = secret.code_at(now + STEP * k);
        let in_window = [-1, 0, 1]
            .iter()
            .any(|j| secret.code_at(now + STEP * *j) == code);
        if !in_window {
            assert_eq!(
                secret.verify(&code, now, None),
                Err(TotpError::Invalid),
                "k={k}"
            );
        }
    }
    // The same code presented a minute and a half later is expired.
    let code = secret.code_at(now);
    clock.advance(STEP * 3);
    let later = clock.now();
    if ![-1, 0, 1]
        .iter()
        .any(|j| secret.code_at(later + STEP * *j) == code)
    {
        assert_eq!(secret.verify(&code, later, None), Err(TotpError::Invalid));
    }
}

#[test]
fn current_and_adjacent_steps_are_accepted() {
    let secret = TotpSecret::generate();
    let now = clock().now();
    for k in [-1i32, 0, 1] {
        let code = secret.code_at(now + STEP * k);
        let step = secret.verify(&code, now, None).expect("in window");
        // The matched step is the one the code belongs to (unless codes collide).
        if secret.code_at(now + STEP * k) != secret.code_at(now) || k == 0 {
            assert_eq!(step as i64, step_of(now) as i64 + i64::from(k), "k={k}");
        }
    }
    // Formatting as apps show it.
    let code = secret.code_at(now);
    let spaced = format!(" {} {} ", &code[..3], &code[3..]);
    assert_eq!(secret.verify(&spaced, now, None), Ok(step_of(now)));
}

#[test]
fn replay_of_the_same_step_is_refused() {
    let secret = TotpSecret::generate();
    let clock = clock();
    let now = clock.now();
    let code = secret.code_at(now);
    let used = secret.verify(&code, now, None).expect("first use");
    let err = secret.verify(&code, now, Some(used)).expect_err("replay");
    assert_eq!(err, TotpError::Replayed);
    assert_eq!(err.code(), "totp_replayed");
    // Still refused ten seconds later within the same step.
    clock.advance(Duration::seconds(10));
    assert_eq!(
        secret.verify(&code, clock.now(), Some(used)),
        Err(TotpError::Replayed)
    );
    // An older step's code after a newer one was used: refused too.
    let previous = secret.code_at(now - STEP);
    if previous != code {
        assert_eq!(
            secret.verify(&previous, now, Some(used)),
            Err(TotpError::Replayed)
        );
    }
    // The next step's code is fresh.
    clock.advance(STEP);
    let next = secret.code_at(clock.now());
    assert_eq!(secret.verify(&next, clock.now(), Some(used)), Ok(used + 1));
}

#[test]
fn rfc6238_vector_verifies() {
    let secret = TotpSecret::from_bytes(b"12345678901234567890").expect("secret");
    let at = OffsetDateTime::from_unix_timestamp(1_234_567_890).expect("time");
    // RFC 6238 Appendix B: T = 1234567890 -> 89005924 (8 digits, SHA-1).
    assert_eq!(secret.code_at(at), "005924");
    assert_eq!(secret.verify("005924", at, None), Ok(1_234_567_890 / 30));
}

#[test]
fn secrets_round_trip_and_short_ones_are_refused() {
    assert_eq!(
        TotpSecret::from_bytes(&[7u8; 15]).err(),
        Some(TotpSetupError::InvalidSecret)
    );
    assert_eq!(
        TotpSecret::from_base32("not base32!").err(),
        Some(TotpSetupError::InvalidSecret)
    );
    assert_eq!(
        TotpSecret::from_base32("").err(),
        Some(TotpSetupError::InvalidSecret)
    );
    let secret = TotpSecret::generate();
    assert_eq!(secret.as_bytes().len(), 20);
    assert_ne!(secret, TotpSecret::generate());
    let b32 = secret.to_base32();
    assert_eq!(format!("{b32:?}"), "[redacted]");
    assert_eq!(
        TotpSecret::from_base32(b32.expose()).expect("base32"),
        secret
    );
    let spaced_lower: String = b32
        .expose()
        .to_lowercase()
        .chars()
        .enumerate()
        .flat_map(|(i, c)| {
            if i % 4 == 0 && i > 0 {
                vec![' ', c]
            } else {
                vec![c]
            }
        })
        .collect();
    assert_eq!(
        TotpSecret::from_base32(&spaced_lower).expect("base32"),
        secret
    );
    assert_eq!(
        TotpSecret::from_bytes(secret.as_bytes()).expect("bytes"),
        secret
    );
}

#[test]
fn provisioning_uri_and_qr() {
    let secret = TotpSecret::generate();
    assert_eq!(
        secret.provisioning_uri("Acme:Corp", "alice").err(),
        Some(TotpSetupError::InvalidLabel)
    );
    assert_eq!(
        secret.provisioning_uri("Acme", "").err(),
        Some(TotpSetupError::InvalidLabel)
    );
    assert_eq!(
        secret.qr_png_base64("", "alice").err(),
        Some(TotpSetupError::InvalidLabel)
    );

    let uri = secret
        .provisioning_uri("Acme Learning", "alice@example.org")
        .expect("uri");
    assert_eq!(format!("{uri:?}"), "[redacted]");
    let uri = uri.expose();
    assert!(
        uri.starts_with("otpauth://totp/Acme%20Learning:alice%40example.org?"),
        "{uri}"
    );
    assert!(
        uri.contains(&format!("secret={}", secret.to_base32().expose())),
        "{uri}"
    );
    assert!(uri.contains("issuer=Acme%20Learning"), "{uri}");
    assert!(
        !uri.contains("algorithm="),
        "SHA-1 is the default and stays implicit: {uri}"
    );

    let png_b64 = secret
        .qr_png_base64("Acme Learning", "alice@example.org")
        .expect("qr");
    let png = base64::engine::general_purpose::STANDARD
        .decode(png_b64.expose())
        .expect("base64");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
}

// ----- recovery codes ---------------------------------------------------------------------------

#[test]
fn malformed_or_wrong_recovery_codes_match_nothing() {
    let set = generate_recovery_codes();
    for input in [
        "",
        "----",
        "abcd-efgh-jkm",
        "abcd-efgh-jkmnp",
        "abcd-efgh-jkm!",
        "ü",
    ] {
        assert_eq!(verify_recovery_code(input, &set.digests), None, "{input:?}");
    }
    // Well-formed but not issued.
    let other = generate_recovery_codes();
    for code in &other.codes {
        assert_eq!(verify_recovery_code(code.expose(), &set.digests), None);
    }
    assert_eq!(
        verify_recovery_code(&"a".repeat(100_000), &set.digests),
        None
    );
}

#[test]
fn recovery_codes_have_the_promised_shape_and_entropy() {
    let set = generate_recovery_codes();
    assert_eq!(set.codes.len(), RECOVERY_CODE_COUNT);
    assert_eq!(set.digests.len(), RECOVERY_CODE_COUNT);
    // 12 characters drawn from all of a 32-symbol alphabet: 60 bits.
    let mut symbols = std::collections::BTreeSet::new();
    for _ in 0..50 {
        for code in generate_recovery_codes().codes {
            let chars = code.expose().replace('-', "");
            assert_eq!(chars.len(), RECOVERY_CODE_CHARS);
            symbols.extend(chars.chars());
        }
    }
    assert_eq!(symbols.len(), 32, "{symbols:?}");
    for (code, digest) in set.codes.iter().zip(&set.digests) {
        let c = code.expose();
        assert_eq!(c.len(), 14, "{c}");
        assert_eq!(&c[4..5], "-");
        assert_eq!(&c[9..10], "-");
        assert!(!c.contains(['i', 'l', 'o', 'u']), "{c}");
        assert_eq!(recovery_code_digest(c), Some(*digest));
    }
    let mut unique = set.digests.clone();
    unique.sort_by_key(|d| *d.as_bytes());
    unique.dedup();
    assert_eq!(unique.len(), RECOVERY_CODE_COUNT);
    assert_ne!(set.codes, generate_recovery_codes().codes);
}

#[test]
fn recovery_code_is_single_use_via_the_matched_index() {
    let set = generate_recovery_codes();
    let mut stored = set.digests.clone();
    let code = set.codes[3].expose().to_owned();

    // Typed sloppily: upper case, no dashes, spaces.
    let sloppy = format!(" {} ", code.replace('-', " ").to_uppercase());
    assert_eq!(
        normalize_recovery_code(&sloppy),
        Some(code.replace('-', ""))
    );
    let index = verify_recovery_code(&sloppy, &stored).expect("issued code");
    assert_eq!(index, 3);

    // The caller consumes it; the same code no longer matches, the others still do.
    stored.remove(index);
    assert_eq!(verify_recovery_code(&code, &stored), None);
    assert_eq!(
        verify_recovery_code(set.codes[4].expose(), &stored),
        Some(3)
    );
    assert_eq!(
        verify_recovery_code(set.codes[0].expose(), &stored),
        Some(0)
    );
}

#[test]
fn look_alike_characters_are_folded() {
    let set = generate_recovery_codes();
    let code = set.codes[0].expose().replace('0', "O").replace('1', "l");
    assert_eq!(verify_recovery_code(&code, &set.digests), Some(0));
}
