//! DPoP proofs (RFC 9449) made the way a client makes them, independently of the code that
//! checks them: an ES256 key made at run time, its public JWK and RFC 7638 thumbprint, and
//! proofs with any header and claims (so tests can make every wrong one too).

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A client's DPoP key.
pub struct DpopKey {
    pair: EcdsaKeyPair,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey")
            .field("jkt", &self.thumbprint())
            .finish()
    }
}

impl DpopKey {
    /// A new P-256 key.
    pub fn generate() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate a P-256 key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("parse the key");
        DpopKey { pair }
    }

    /// The public key as a JWK (`kty`, `crv`, `x`, `y`).
    pub fn public_jwk(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        })
    }

    /// The JWK SHA-256 thumbprint (RFC 7638 §3): the required members in lexicographic order.
    pub fn thumbprint(&self) -> String {
        let jwk = self.public_jwk();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap_or_default(),
            jwk["y"].as_str().unwrap_or_default()
        );
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// The usual header: `typ` `dpop+jwt`, `alg` `ES256`, this key's JWK.
    pub fn header(&self) -> Value {
        json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": self.public_jwk() })
    }

    /// A proof for `htm` `htu` issued at `iat` (Unix seconds) with a fresh `jti`, plus the
    /// members of `extra` (`nonce`, `ath`, or anything to override).
    pub fn proof(&self, htm: &str, htu: &str, iat: i64, extra: Value) -> String {
        let mut claims = json!({ "jti": random_id(), "htm": htm, "htu": htu, "iat": iat });
        if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
            claims.extend(extra);
        }
        self.sign(&self.header(), &claims)
    }

    /// A JWS of `header` and `claims` signed with this key, whatever the header says.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64_json(header), b64_json(claims));
        let signature = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("sign");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

/// `ath`: the base64url SHA-256 of an access token (RFC 9449 §4.2).
pub fn ath(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// An unsigned (`alg: none`) proof with this key's header otherwise, and an HMAC one: what a
/// verifier must never accept.
pub fn unsigned_proof(key: &DpopKey, claims: &Value) -> String {
    let header = json!({ "typ": "dpop+jwt", "alg": "none", "jwk": key.public_jwk() });
    format!("{}.{}.", b64_json(&header), b64_json(claims))
}

/// A proof "signed" with HS256 under a symmetric JWK it carries.
pub fn hmac_proof(claims: &Value) -> String {
    let header = json!({
        "typ": "dpop+jwt", "alg": "HS256",
        "jwk": { "kty": "oct", "k": URL_SAFE_NO_PAD.encode(b"shared secret") },
    });
    let input = format!("{}.{}", b64_json(&header), b64_json(claims));
    let tag = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"shared secret"),
        input.as_bytes(),
    );
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// Standard claims for `htm` `htu` at `iat`, with a fresh `jti`.
pub fn claims(htm: &str, htu: &str, iat: i64) -> Value {
    json!({ "jti": random_id(), "htm": htm, "htu": htu, "iat": iat })
}

fn random_id() -> String {
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes).expect("random");
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("json"))
}
