//! What the targets share: the smoke-run bounds, picking from tables, and the test keys.

use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair as _, RSA_PKCS1_SHA256,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use trustgate_tokens::Algorithm;

/// Iterations of one target under `cargo test` (bolero's random engine). Chosen so all targets
/// together stay well under a minute in a debug build; the long, coverage-guided runs are
/// `scripts/fuzz.sh`'s.
pub const SMOKE_ITERATIONS: usize = 400;
/// Fewer for the targets whose every input spawns the CEL compiler thread or signs with RSA.
pub const SMOKE_ITERATIONS_SLOW: usize = 150;

/// Whether a generator byte picks the well-formed choice. Structured targets make every part
/// well-formed with this chance (about 4 in 5), so that whole inputs are often acceptable and the
/// accepting paths run, and the other bytes pick among the malformed choices.
pub fn good(i: u8) -> bool {
    i < 204
}

/// `table[i mod len]`.
pub fn pick<'a>(table: &[&'a str], i: u8) -> &'a str {
    table[usize::from(i) % table.len()]
}

/// Base64url without padding.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// One key pair per JWS algorithm (generated once per process), a second Ed25519 key that no
/// resolver knows, and the public keys as a JWK Set (`kid`s `ed`, `es`, `rs`).
pub struct TestKeys {
    pub ed: Ed25519KeyPair,
    pub es: EcdsaKeyPair,
    /// The same P-256 key, signing in ASN.1 DER (what WebAuthn authenticators send).
    pub es_der: EcdsaKeyPair,
    pub rs: aws_lc_rs::rsa::KeyPair,
    pub stranger: Ed25519KeyPair,
    pub jwks: Value,
}

pub fn keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let ed = Ed25519KeyPair::from_seed_unchecked(&[7; 32]).expect("ed25519 key");
        let stranger = Ed25519KeyPair::from_seed_unchecked(&[8; 32]).expect("ed25519 key");
        let es_pkcs8 = EcdsaKeyPair::generate_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &SystemRandom::new(),
        )
        .expect("p256 key");
        let es = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, es_pkcs8.as_ref())
            .expect("p256 key");
        let es_der = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, es_pkcs8.as_ref())
            .expect("p256 key");
        let rs = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).expect("rsa key");
        let point = es.public_key().as_ref();
        let rsa = PublicKeyComponents::<Vec<u8>>::from(rs.public_key());
        let jwks = json!({"keys": [
            {"kid": "ed", "kty": "OKP", "crv": "Ed25519", "x": b64(ed.public_key().as_ref())},
            {"kid": "es", "kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])},
            {"kid": "rs", "kty": "RSA", "n": b64(&rsa.n), "e": b64(&rsa.e)},
        ]});
        TestKeys {
            ed,
            es,
            es_der,
            rs,
            stranger,
            jwks,
        }
    })
}

impl TestKeys {
    /// A JWS signature over `message` with our key of `algorithm`.
    pub fn sign(&self, algorithm: Algorithm, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match algorithm {
            Algorithm::EdDSA => self.ed.sign(message).as_ref().to_vec(),
            Algorithm::ES256 => self
                .es
                .sign(&rng, message)
                .expect("ecdsa signature")
                .as_ref()
                .to_vec(),
            Algorithm::RS256 => {
                let mut out = vec![0; self.rs.public_modulus_len()];
                self.rs
                    .sign(&RSA_PKCS1_SHA256, &rng, message, &mut out)
                    .expect("rsa signature");
                out
            }
        }
    }

    /// The `kid` of our key of `algorithm`.
    pub fn kid(algorithm: Algorithm) -> &'static str {
        match algorithm {
            Algorithm::EdDSA => "ed",
            Algorithm::ES256 => "es",
            Algorithm::RS256 => "rs",
        }
    }
}
