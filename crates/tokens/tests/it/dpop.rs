//! DPoP proofs (RFC 9449) with keys generated here: a valid proof and every refusal — `none`
//! and HMAC, another `typ`, a private or missing key, another key's signature, a tampered
//! claim, wrong `htm` / `htu`, stale or future `iat`, a missing or old nonce, a proof for
//! another access token.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use trustgate_tokens::dpop::{DpopError, ProofExpectation, jwk_thumbprint, verify_proof};

const HTU: &str = "https://id.example.com/oauth2/token";

enum Key {
    Es256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl Key {
    fn es256() -> Key {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("generate");
        Key::Es256(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
                .expect("parse"),
        )
    }

    fn ed25519() -> Key {
        Key::Ed25519(Ed25519KeyPair::generate().expect("generate"))
    }

    fn alg(&self) -> &'static str {
        match self {
            Key::Es256(_) => "ES256",
            Key::Ed25519(_) => "EdDSA",
        }
    }

    fn jwk(&self) -> Value {
        match self {
            Key::Es256(pair) => {
                let point = pair.public_key().as_ref();
                json!({
                    "kty": "EC", "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                    "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
                })
            }
            Key::Ed25519(pair) => json!({
                "kty": "OKP", "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            }),
        }
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Key::Es256(pair) => pair
                .sign(&SystemRandom::new(), message)
                .expect("sign")
                .as_ref()
                .to_vec(),
            Key::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
        }
    }
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("json"))
}

/// A proof with `header` and `claims`, signed by `signer`.
fn proof(header: &Value, claims: &Value, signer: &Key) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let signature = URL_SAFE_NO_PAD.encode(signer.sign(input.as_bytes()));
    format!("{input}.{signature}")
}

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time")
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"jti": "e1j3V_bKic8-LAEB", "htm": "POST", "htu": HTU, "iat": now().unix_timestamp()});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            if v.is_null() {
                c.remove(k);
            } else {
                c.insert(k.clone(), v.clone());
            }
        }
    }
    c
}

fn header(key: &Key) -> Value {
    json!({"typ": "dpop+jwt", "alg": key.alg(), "jwk": key.jwk()})
}

fn expect() -> ProofExpectation<'static> {
    ProofExpectation {
        htm: "POST",
        htu: HTU,
        now: now(),
        max_age: Duration::seconds(60),
        leeway: Duration::seconds(5),
        nonce: None,
        access_token: None,
    }
}

#[test]
fn a_valid_proof_names_its_key_by_thumbprint() {
    for key in [Key::es256(), Key::ed25519()] {
        let verified = verify_proof(&proof(&header(&key), &claims(json!({})), &key), &expect())
            .expect("valid");
        assert_eq!(Some(verified.jkt), jwk_thumbprint(&key.jwk()));
        assert_eq!(verified.jti, "e1j3V_bKic8-LAEB");
        assert_eq!(verified.iat, now());
    }
}

#[test]
fn every_stateless_check_refuses_what_it_must() {
    let key = Key::es256();
    let other = Key::es256();
    let good = claims(json!({}));
    let refused = |p: String, e: ProofExpectation<'_>| verify_proof(&p, &e).expect_err("refused");

    // Algorithms and types.
    let none = format!(
        "{}.{}.",
        b64(&json!({"typ": "dpop+jwt", "alg": "none", "jwk": key.jwk()})),
        b64(&good)
    );
    assert_eq!(refused(none, expect()), DpopError::UnsupportedAlgorithm);
    let hmac = json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": "c2VjcmV0"}});
    assert_eq!(
        refused(proof(&hmac, &good, &key), expect()),
        DpopError::UnsupportedAlgorithm
    );
    let jwt = json!({"typ": "JWT", "alg": "ES256", "jwk": key.jwk()});
    assert_eq!(
        refused(proof(&jwt, &good, &key), expect()),
        DpopError::WrongType
    );
    // Keys.
    let no_key = json!({"typ": "dpop+jwt", "alg": "ES256"});
    assert_eq!(
        refused(proof(&no_key, &good, &key), expect()),
        DpopError::InvalidKey
    );
    let mut private = key.jwk();
    private["d"] = json!("AAAA");
    let private = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": private});
    assert_eq!(
        refused(proof(&private, &good, &key), expect()),
        DpopError::InvalidKey
    );
    let mismatched = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": key.jwk()});
    assert_eq!(
        refused(proof(&mismatched, &good, &key), expect()),
        DpopError::InvalidKey
    );
    // Another key's signature, and a claim changed after signing.
    assert_eq!(
        refused(proof(&header(&key), &good, &other), expect()),
        DpopError::BadSignature
    );
    let signed = proof(&header(&key), &good, &key);
    let mut parts: Vec<&str> = signed.split('.').collect();
    let tampered_claims = b64(&claims(json!({"htu": "https://evil.example/oauth2/token"})));
    parts[1] = &tampered_claims;
    assert_eq!(refused(parts.join("."), expect()), DpopError::BadSignature);
    // Claims.
    for missing in ["jti", "htm", "htu", "iat"] {
        let c = claims(json!({ missing: null }));
        assert_eq!(
            refused(proof(&header(&key), &c, &key), expect()),
            DpopError::MissingClaim,
            "{missing}"
        );
    }
    let get = claims(json!({"htm": "GET"}));
    assert_eq!(
        refused(proof(&header(&key), &get, &key), expect()),
        DpopError::WrongMethod
    );
    let elsewhere = claims(json!({"htu": "https://id.example.com/oauth2/introspect"}));
    assert_eq!(
        refused(proof(&header(&key), &elsewhere, &key), expect()),
        DpopError::WrongUri
    );
    let old = claims(json!({"iat": now().unix_timestamp() - 61}));
    assert_eq!(
        refused(proof(&header(&key), &old, &key), expect()),
        DpopError::Stale
    );
    let ahead = claims(json!({"iat": now().unix_timestamp() + 6}));
    assert_eq!(
        refused(proof(&header(&key), &ahead, &key), expect()),
        DpopError::IssuedInFuture
    );
    // Nonce.
    let with_nonce = ProofExpectation {
        nonce: Some(&|nonce: &str| nonce == "n-0S6_WzA2Mj"),
        ..expect()
    };
    let err = refused(proof(&header(&key), &good, &key), with_nonce);
    assert_eq!(
        (err, err.code()),
        (DpopError::NonceRequired, "use_dpop_nonce")
    );
    let stale_nonce = claims(json!({"nonce": "an-old-one"}));
    assert_eq!(
        refused(proof(&header(&key), &stale_nonce, &key), with_nonce),
        DpopError::NonceRequired
    );
    let fresh_nonce = claims(json!({"nonce": "n-0S6_WzA2Mj"}));
    verify_proof(&proof(&header(&key), &fresh_nonce, &key), &with_nonce).expect("the nonce");
    // ath.
    let token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
    let for_token = ProofExpectation {
        access_token: Some(token),
        ..expect()
    };
    assert_eq!(
        refused(proof(&header(&key), &good, &key), for_token),
        DpopError::WrongAccessToken
    );
    let ath = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
    let other_ath = URL_SAFE_NO_PAD.encode(Sha256::digest(b"another token"));
    let wrong = claims(json!({"ath": other_ath}));
    assert_eq!(
        refused(proof(&header(&key), &wrong, &key), for_token),
        DpopError::WrongAccessToken
    );
    let right = claims(json!({"ath": ath}));
    verify_proof(&proof(&header(&key), &right, &key), &for_token).expect("ath");
    // Size and shape.
    assert_eq!(refused("a".repeat(9000), expect()), DpopError::TooLarge);
    assert_eq!(refused("a.b".into(), expect()), DpopError::Malformed);
    assert_eq!(refused("a.b.c.d".into(), expect()), DpopError::Malformed);
    assert_eq!(err.code(), "use_dpop_nonce");
    assert_eq!(DpopError::BadSignature.code(), "invalid_dpop_proof");
}
