//! Project Wycheproof's signature vectors through the token verifier's signature check
//! ([`trustgate_tokens::verify_signature`], the one check [`trustgate_tokens::verify`] makes),
//! for the three JWS algorithms trustgate accepts: ES256 (`ecdsa_secp256r1_sha256_p1363`, the
//! raw `r‖s` encoding JWS uses), EdDSA (`ed25519`) and RS256 (`rsa_signature_2048_sha256`).
//!
//! Each group's public key becomes a verification key the way a client's registered key does:
//! as a JWK in a JWK Set read by [`JwkSetResolver`]. Every `valid` vector must verify, every
//! `invalid` one must be refused, and `acceptable` ones are refused too (the strict reading):
//! today that is one vector, RSA tcId 8, a PKCS#1 v1.5 `DigestInfo` without the `NULL`
//! parameter (`MissingNull`), which aws-lc-rs does not accept. A new release that adds
//! acceptable vectors the verifier accepts fails here and names them, so the choice is made
//! consciously.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use trustgate_tokens::{Algorithm, JwkSetResolver, KeyResolver, VerificationKey, verify_signature};
use wycheproof::TestResult;

/// Outcome counts for one vector file.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    valid_accepted: usize,
    invalid_refused: usize,
    acceptable_refused: usize,
    /// Failures, as `tcId: what went wrong`.
    wrong: Vec<String>,
}

impl Counts {
    fn record(&mut self, tc_id: usize, comment: &str, expected: TestResult, accepted: bool) {
        match (expected, accepted) {
            (TestResult::Valid, true) => self.valid_accepted += 1,
            (TestResult::Invalid, false) => self.invalid_refused += 1,
            (TestResult::Acceptable, false) => self.acceptable_refused += 1,
            (TestResult::Valid, false) => self
                .wrong
                .push(format!("{tc_id}: valid refused ({comment})")),
            (TestResult::Invalid, true) => self
                .wrong
                .push(format!("{tc_id}: invalid accepted ({comment})")),
            (TestResult::Acceptable, true) => self
                .wrong
                .push(format!("{tc_id}: acceptable accepted ({comment})")),
        }
    }

    fn assert_all_right(&self, file: &str, total: usize) {
        eprintln!(
            "{file}: {total} vectors: {} valid accepted, {} invalid refused, {} acceptable refused",
            self.valid_accepted, self.invalid_refused, self.acceptable_refused
        );
        assert!(self.wrong.is_empty(), "{file}:\n{}", self.wrong.join("\n"));
        assert_eq!(
            self.valid_accepted + self.invalid_refused + self.acceptable_refused,
            total,
            "{file}: every vector is checked"
        );
        assert!(
            self.valid_accepted > 0 && self.invalid_refused > 0,
            "{file}: both kinds present"
        );
    }
}

/// A big-endian integer from Wycheproof (which may carry a leading zero byte for the sign) as
/// the unsigned, minimal big-endian bytes a JWK holds.
fn unsigned(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// An EC coordinate as a JWK holds it: exactly the field size (RFC 7518 §6.2.1.2).
fn coordinate(bytes: &[u8]) -> Option<String> {
    let bytes = unsigned(bytes);
    if bytes.len() > 32 {
        return None;
    }
    let mut out = vec![0u8; 32 - bytes.len()];
    out.extend_from_slice(bytes);
    Some(URL_SAFE_NO_PAD.encode(out))
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The verification key of a one-key JWK Set, as a registered client's key is read.
fn key_from_jwk(jwk: Value, algorithm: Algorithm) -> VerificationKey {
    let mut jwk = jwk;
    jwk["kid"] = json!("wycheproof");
    let resolver = JwkSetResolver::from_json(&json!({ "keys": [jwk] }))
        .unwrap_or_else(|e| panic!("the vector's key is a usable JWK: {e}"));
    let key = resolver
        .resolve("wycheproof")
        .expect("the key is in the set");
    assert_eq!(key.algorithm, algorithm);
    key
}

fn accepts(key: &VerificationKey, message: &[u8], signature: &[u8]) -> bool {
    verify_signature(key, message, &b64(signature)).is_ok()
}

#[test]
fn ecdsa_p256_sha256_p1363_vectors_through_es256() {
    use wycheproof::ecdsa::{TestName, TestSet};
    let set = TestSet::load(TestName::EcdsaSecp256r1Sha256P1363).expect("vectors load");
    let mut counts = Counts::default();
    for group in &set.test_groups {
        let (Some(x), Some(y)) = (
            coordinate(&group.key.affine_x),
            coordinate(&group.key.affine_y),
        ) else {
            panic!("a P-256 key with coordinates wider than the field");
        };
        let key = key_from_jwk(
            json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
            Algorithm::ES256,
        );
        for test in &group.tests {
            counts.record(
                test.tc_id,
                &test.comment,
                test.result,
                accepts(&key, &test.msg, &test.sig),
            );
        }
    }
    counts.assert_all_right("ecdsa_secp256r1_sha256_p1363", set.number_of_tests);
}

#[test]
fn ed25519_vectors_through_eddsa() {
    use wycheproof::eddsa::{TestName, TestSet};
    let set = TestSet::load(TestName::Ed25519).expect("vectors load");
    let mut counts = Counts::default();
    for group in &set.test_groups {
        let key = key_from_jwk(
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&group.key.pk)}),
            Algorithm::EdDSA,
        );
        for test in &group.tests {
            counts.record(
                test.tc_id,
                &test.comment,
                test.result,
                accepts(&key, &test.msg, &test.sig),
            );
        }
    }
    counts.assert_all_right("ed25519", set.number_of_tests);
}

#[test]
fn rsa_pkcs1_2048_sha256_vectors_through_rs256() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    let set = TestSet::load(TestName::Rsa2048Sha256).expect("vectors load");
    let mut counts = Counts::default();
    for group in &set.test_groups {
        // Every group of this file is a 2048-bit key: nothing is filtered, and the resolver's
        // 2048-bit minimum accepts each.
        assert_eq!(group.key_size, 2048);
        let key = key_from_jwk(
            json!({"kty": "RSA", "n": b64(unsigned(&group.key.n)), "e": b64(unsigned(&group.key.e))}),
            Algorithm::RS256,
        );
        for test in &group.tests {
            counts.record(
                test.tc_id,
                &test.comment,
                test.result,
                accepts(&key, &test.msg, &test.sig),
            );
        }
    }
    counts.assert_all_right("rsa_signature_2048_sha256", set.number_of_tests);
    assert_eq!(counts.acceptable_refused, 1, "the MissingNull vector");
}

#[test]
fn a_signature_is_bound_to_its_message_and_its_key() {
    // The negative control of the harness itself: a valid vector with its message changed, or
    // checked with another group's key, must be refused.
    use wycheproof::eddsa::{TestName, TestSet};
    let set = TestSet::load(TestName::Ed25519).expect("vectors load");
    let first = &set.test_groups[0];
    let second = set
        .test_groups
        .iter()
        .find(|g| g.key.pk != first.key.pk)
        .expect("a group with another key");
    let valid = first
        .tests
        .iter()
        .find(|t| t.result == TestResult::Valid)
        .expect("a valid vector");
    let key = key_from_jwk(
        json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&first.key.pk)}),
        Algorithm::EdDSA,
    );
    let other = key_from_jwk(
        json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&second.key.pk)}),
        Algorithm::EdDSA,
    );
    assert!(accepts(&key, &valid.msg, &valid.sig));
    let mut changed = valid.msg.to_vec();
    changed.push(0);
    assert!(!accepts(&key, &changed, &valid.sig));
    assert!(!accepts(&other, &valid.msg, &valid.sig));
    assert_eq!(
        verify_signature(&key, &valid.msg, "not base64url!"),
        Err(trustgate_tokens::VerifyError::Malformed)
    );
}
