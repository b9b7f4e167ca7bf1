//! `tokens::verify`: the size cap, the compact serialization, the header, the key by `kid`, the
//! signature and the claims.

use bolero::{TypeGenerator, check};
use serde_json::{Map, Value, json};
use time::{Duration, OffsetDateTime};
use trustgate_tokens::{
    Algorithm, Expectation, JwkSetResolver, MAX_TOKEN_BYTES, Verified, VerifyError, verify,
};

use crate::support::{SMOKE_ITERATIONS, SMOKE_ITERATIONS_SLOW, TestKeys, b64, good, keys, pick};

const ISSUER: &str = "https://id.example";
const AUDIENCE: &str = "api";
const NOW: i64 = 1_800_000_000;

fn expectation() -> Expectation<'static> {
    Expectation {
        issuer: ISSUER,
        audiences: &[AUDIENCE],
        typ: Some("at+jwt"),
        now: OffsetDateTime::from_unix_timestamp(NOW).expect("time"),
        leeway: Duration::ZERO,
        require_exp: true,
        check_expiry: true,
    }
}

fn resolver() -> JwkSetResolver {
    JwkSetResolver::from_json(&keys().jwks).expect("test keys")
}

#[test]
fn bytes() {
    // Random text never carries a signature of the test keys, so nothing may verify; and past
    // the size cap the answer is `TooLarge` before any parsing.
    let resolver = resolver();
    check!()
        .with_iterations(SMOKE_ITERATIONS)
        .with_max_len(MAX_TOKEN_BYTES + 1024)
        .for_each(|input: &[u8]| {
            let token = String::from_utf8_lossy(input);
            let result = verify::<Value>(&token, &resolver, &expectation());
            assert!(result.is_err(), "random text verified: {token:?}");
            if token.len() > MAX_TOKEN_BYTES {
                assert_eq!(result.err(), Some(VerifyError::TooLarge));
            }
        });
}

/// A JWS assembled from parts: each part well-formed (see [`good`]) or one of the telling
/// malformed choices or raw bytes; then possibly one byte changed.
#[derive(Debug, TypeGenerator)]
struct Case {
    key: u8,
    alg: u8,
    kid: u8,
    typ: u8,
    /// Adds `jwk` / `jku` header members, which must be ignored.
    header_extras: u8,
    raw_header: (u8, Vec<u8>),
    iss: u8,
    aud: u8,
    exp: u8,
    nbf: u8,
    extra_claims: Vec<(u8, i64)>,
    raw_payload: (u8, Vec<u8>),
    signer: u8,
    raw_signature: Vec<u8>,
    /// (use it?, position, xor) applied to the assembled token.
    tamper: (u8, u16, u8),
    /// Appended verbatim (extra `.` parts, padding, whitespace).
    suffix: u8,
}

const ALGS: &[&str] = &[
    "EdDSA", "ES256", "RS256", "none", "HS256", "ES384", "PS256", "eddsa", "",
];
const KIDS: &[&str] = &["ed", "es", "rs", "unknown", "", "ED"];
const TYPS: &[&str] = &["application/at+jwt", "AT+JWT", "JWT", "", "at+jwt; x"];
const ISSUERS: &[&str] = &["https://id.example/", "https://evil.example", ""];
const SUFFIXES: &[&str] = &[".", ".x", "=", " ", "\n", "."];

fn exp_value(choice: u8) -> Option<Value> {
    if good(choice) {
        return Some(json!(NOW + 300));
    }
    match choice % 7 {
        0 => None,
        1 => Some(json!(NOW)),
        2 => Some(json!(NOW - 1)),
        3 => Some(json!(i64::MAX)),
        4 => Some(json!(i64::MIN)),
        5 => Some(json!("tomorrow")),
        _ => Some(json!(1.8e9 + 300.5)),
    }
}

fn nbf_value(choice: u8) -> Option<Value> {
    if good(choice) {
        return None;
    }
    match choice % 4 {
        0 => Some(json!(NOW)),
        1 => Some(json!(NOW + 1)),
        2 => Some(json!(i64::MIN)),
        _ => Some(json!(null)),
    }
}

struct Built {
    token: String,
    /// Verifying must succeed: every part is the well-formed choice.
    pristine: bool,
    /// The signature is our key's, over exactly this token's first two parts, and the key is
    /// the one the `kid` names, in the header's algorithm.
    signed_by_named_key: bool,
    claims: Map<String, Value>,
}

fn build(case: &Case) -> Built {
    let keys = keys();
    let key = Algorithm::all()[usize::from(case.key % 3)];
    let alg = if good(case.alg) {
        key.as_str()
    } else {
        pick(ALGS, case.alg)
    };
    let kid = if good(case.kid) {
        Some(TestKeys::kid(key))
    } else {
        KIDS.get(usize::from(case.kid % 7)).copied()
    };
    let typ = if good(case.typ) {
        Some("at+jwt")
    } else {
        TYPS.get(usize::from(case.typ % 6)).copied()
    };
    let mut header = Map::new();
    header.insert("alg".into(), json!(alg));
    if let Some(kid) = kid {
        header.insert("kid".into(), json!(kid));
    }
    if let Some(typ) = typ {
        header.insert("typ".into(), json!(typ));
    }
    if case.header_extras & 1 != 0 {
        header.insert("jwk".into(), json!({"kty": "oct", "k": "c2VjcmV0"}));
    }
    if case.header_extras & 2 != 0 {
        header.insert("jku".into(), json!("https://evil.example/jwks"));
    }
    let header_bytes = if good(case.raw_header.0) {
        serde_json::to_vec(&Value::Object(header)).expect("json")
    } else {
        case.raw_header.1.clone()
    };

    let mut claims = Map::new();
    if good(case.iss) {
        claims.insert("iss".into(), json!(ISSUER));
    } else if let Some(iss) = ISSUERS.get(usize::from(case.iss % 4)) {
        claims.insert("iss".into(), json!(iss));
    }
    let aud = if good(case.aud) {
        case.aud % 2
    } else {
        2 + case.aud % 3
    };
    match aud {
        0 => drop(claims.insert("aud".into(), json!(AUDIENCE))),
        1 => drop(claims.insert("aud".into(), json!(["other", AUDIENCE]))),
        2 => {}
        3 => drop(claims.insert("aud".into(), json!(["other"]))),
        _ => drop(claims.insert("aud".into(), json!(7))),
    }
    if let Some(exp) = exp_value(case.exp) {
        claims.insert("exp".into(), exp);
    }
    if let Some(nbf) = nbf_value(case.nbf) {
        claims.insert("nbf".into(), nbf);
    }
    for (name, value) in case.extra_claims.iter().take(8) {
        claims.insert(format!("c{}", name % 4), json!(value));
    }
    let payload_bytes = if good(case.raw_payload.0) {
        serde_json::to_vec(&Value::Object(claims.clone())).expect("json")
    } else {
        case.raw_payload.1.clone()
    };

    let signing_input = format!("{}.{}", b64(&header_bytes), b64(&payload_bytes));
    let header_alg: Option<Algorithm> = alg.parse().ok();
    let (signature, signer) = match (good(case.signer), case.signer % 3, header_alg) {
        // Signed with our key of the header's algorithm.
        (true, _, Some(a)) => (keys.sign(a, signing_input.as_bytes()), Some(a)),
        (false, 0, _) => (
            keys.sign(Algorithm::ES256, signing_input.as_bytes()),
            Some(Algorithm::ES256),
        ),
        (false, 1, _) => (
            keys.stranger
                .sign(signing_input.as_bytes())
                .as_ref()
                .to_vec(),
            None,
        ),
        _ => (case.raw_signature.clone(), None),
    };
    let mut token = format!("{signing_input}.{}", b64(&signature));
    let untampered = token.clone();
    if !good(case.tamper.0) {
        let mut bytes = token.into_bytes();
        if !bytes.is_empty() {
            let at = usize::from(case.tamper.1) % bytes.len();
            bytes[at] ^= case.tamper.2;
        }
        token = String::from_utf8_lossy(&bytes).into_owned();
    }
    if !good(case.suffix) {
        token.push_str(pick(SUFFIXES, case.suffix));
    }
    let named = kid.and_then(|k| {
        Algorithm::all()
            .into_iter()
            .find(|a| TestKeys::kid(*a) == k)
    });
    let signed_by_named_key =
        signer.is_some() && signer == named && signer == header_alg && token == untampered;
    let pristine = [
        case.alg,
        case.kid,
        case.typ,
        case.raw_header.0,
        case.iss,
        case.aud,
        case.exp,
        case.nbf,
        case.raw_payload.0,
        case.signer,
        case.tamper.0,
        case.suffix,
    ]
    .into_iter()
    .all(good);
    Built {
        token,
        pristine,
        signed_by_named_key,
        claims,
    }
}

#[test]
fn the_well_formed_case_verifies() {
    // The generator's all-good case is a valid token for each key: the accepting path is
    // reachable, so the property below is not vacuous.
    let resolver = resolver();
    for key in 0..3 {
        let case = Case {
            key,
            alg: 0,
            kid: 0,
            typ: 0,
            header_extras: 3,
            raw_header: (0, Vec::new()),
            iss: 0,
            aud: 0,
            exp: 0,
            nbf: 0,
            extra_claims: Vec::new(),
            raw_payload: (0, Vec::new()),
            signer: 0,
            raw_signature: Vec::new(),
            tamper: (0, 0, 0),
            suffix: 0,
        };
        let built = build(&case);
        assert!(built.pristine && built.signed_by_named_key);
        verify::<Map<String, Value>>(&built.token, &resolver, &expectation()).expect("verifies");
        let mut tampered = built.token.clone();
        tampered.push('A');
        assert!(verify::<Map<String, Value>>(&tampered, &resolver, &expectation()).is_err());
    }
}

#[test]
fn structured() {
    let resolver = resolver();
    check!()
        .with_type::<Case>()
        .with_iterations(SMOKE_ITERATIONS_SLOW)
        .with_max_len(MAX_TOKEN_BYTES + 1024)
        .for_each(|case| {
            let built = build(case);
            let result = verify::<Map<String, Value>>(&built.token, &resolver, &expectation());
            match &result {
                Ok(Verified { claims, kid, .. }) => {
                    assert!(
                        built.signed_by_named_key,
                        "verified without our key's signature: {case:?}"
                    );
                    assert_eq!(claims, &built.claims, "claims are what was signed");
                    assert_eq!(claims.get("iss"), Some(&json!(ISSUER)));
                    assert!(["ed", "es", "rs"].contains(&kid.as_str()));
                }
                Err(_) => assert!(
                    !built.pristine,
                    "a well-formed token was refused: {result:?} {case:?}"
                ),
            }
        });
}
