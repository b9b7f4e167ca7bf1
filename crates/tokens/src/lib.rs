//! JOSE for trustgate: signing keys and their rotation, the JWKS, and the one verification
//! policy every verifier uses (the authorization server's introspection and userinfo, client
//! assertions, and later the gateway).
//!
//! Invariant: this crate is the only place that signs or verifies a JWT. Nobody else parses a
//! JOSE header, picks a key, or decides which algorithms are acceptable.
//!
//! # Keys
//! Three algorithms, one current key each: `EdDSA` (Ed25519), `ES256` (P-256) and `RS256`
//! (RSA 2048, the OIDC default for ID tokens). Private keys are generated with aws-lc-rs, stored
//! as PKCS#8 sealed with the server's secrets key (purpose `signing-key`, AES-256-GCM), and
//! opened once at load. A key's life ([`KeyState`]):
//!
//! ```text
//! created ──publish_ahead──► activates (signs) ──rotation──► retires ──max_token_lifetime + 60 s──► expires
//!   │  in JWKS from here                                      │ still in JWKS: tokens it signed verify   │ gone
//! ```
//! A new key is in the JWKS `publish_ahead` (default 10 minutes, longer than the JWKS
//! `max-age`) before it signs, so a verifier with a cached JWKS never sees an unknown `kid`; a
//! retired key stays until every token it signed has expired. Rotation is a compare-and-set in
//! the store, so replicas rotating at once create one key, not several ([`KeyManager`]).
//!
//! Signing uses the aws-lc-rs key pairs directly, parsed once (jsonwebtoken would re-parse the
//! private key on every signature, which costs more than the signature for P-256); verification
//! is jsonwebtoken's (its aws-lc-rs provider), behind [`verify`] and [`verify_signature`], the
//! one signature check (driven with Project Wycheproof's vectors in `tests/it/wycheproof.rs`).
//!
//! # Verification policy ([`verify`])
//! Size cap before anything is parsed; only our three algorithms (never `none`, never HMAC, so
//! an RSA public key can never be used as an HMAC secret); the key comes only from the `kid`
//! through a [`KeyResolver`] — `jwk`, `jku`, `x5u` and `x5c` header members are ignored; the
//! header `alg` must be the key's algorithm; `iss`, `aud` and `typ` are checked, and `exp`
//! (valid only before it, RFC 7519) and `nbf` against the caller's clock with the caller's
//! leeway: none for trustgate's own tokens, a small configured one for other parties'
//! assertions.
//!
//! # DPoP proofs ([`dpop`])
//! The one exception to "the key comes only from the `kid`": a DPoP proof (RFC 9449) is signed
//! by the key in its own `jwk` header, and that is all it proves — possession of the key whose
//! thumbprint a token is bound to (`cnf.jkt`). Same algorithms, same signature check; a private
//! or symmetric `jwk` is refused.

mod claims;
pub mod dpop;
mod jwk;
mod keys;
mod verify;

pub use claims::{AccessTokenClaims, Actor, Audience, Confirmation};
pub use jwk::JwkSetResolver;
pub use keys::{KeyError, KeyInfo, KeyManager, KeyPolicy, KeyState, PublishedKeys, SignedWithKey};
pub use verify::{
    Expectation, KeyResolver, MAX_TOKEN_BYTES, VerificationKey, Verified, VerifyError, verify,
    verify_signature,
};

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

/// The JWS algorithms trustgate signs and accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    /// Ed25519.
    EdDSA,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
}

impl Algorithm {
    /// The JWS name.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::EdDSA => "EdDSA",
            Algorithm::ES256 => "ES256",
            Algorithm::RS256 => "RS256",
        }
    }

    /// All three.
    pub fn all() -> [Algorithm; 3] {
        [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256]
    }

    fn jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
            Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An algorithm name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported algorithm `{0}`: use EdDSA, ES256 or RS256")]
pub struct UnsupportedAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnsupportedAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "EdDSA" => Ok(Algorithm::EdDSA),
            "ES256" => Ok(Algorithm::ES256),
            "RS256" => Ok(Algorithm::RS256),
            other => Err(UnsupportedAlgorithm(other.to_owned())),
        }
    }
}

/// OIDC `at_hash` / `c_hash` (Core §3.1.3.6, §3.3.2.11): base64url of the left half of the hash
/// of `value`, with the hash of the signing algorithm (SHA-256 for ES256 and RS256, SHA-512 for
/// EdDSA with Ed25519).
pub fn left_half_hash(alg: Algorithm, value: &str) -> String {
    match alg {
        Algorithm::EdDSA => {
            let digest = Sha512::digest(value.as_bytes());
            URL_SAFE_NO_PAD.encode(&digest[..32])
        }
        Algorithm::ES256 | Algorithm::RS256 => {
            let digest = Sha256::digest(value.as_bytes());
            URL_SAFE_NO_PAD.encode(&digest[..16])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_vector_from_oidc_core_appendix_a4() {
        // OIDC Core Appendix A.3/A.4: access_token "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"
        // has at_hash "77QmUPtjPfzWtF2AnpK9RQ" with RS256.
        assert_eq!(
            left_half_hash(
                Algorithm::RS256,
                "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"
            ),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
        // The same value for the other two, computed independently (python3 hashlib:
        // urlsafe_b64encode(sha256(v)[:16]) and urlsafe_b64encode(sha512(v)[:32]), unpadded).
        assert_eq!(
            left_half_hash(
                Algorithm::ES256,
                "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"
            ),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
        assert_eq!(
            left_half_hash(
                Algorithm::EdDSA,
                "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"
            ),
            "q7nS86GgvvFaZkzALLWqJYaJIKw2wCDAVfCAsm5CrBM"
        );
    }

    #[test]
    fn algorithm_names_round_trip_and_refuse_others() {
        for alg in Algorithm::all() {
            assert_eq!(alg.as_str().parse::<Algorithm>(), Ok(alg));
        }
        for bad in ["none", "HS256", "PS256", "es256", ""] {
            assert!(bad.parse::<Algorithm>().is_err(), "{bad}");
        }
    }
}
