//! JWK Sets registered by clients (for `private_key_jwt`).

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use serde_json::Value;

use crate::keys::KeyError;
use crate::{Algorithm, KeyResolver, VerificationKey};

/// Smallest accepted RSA modulus, in bits.
const MIN_RSA_MODULUS_BITS: usize = 2048;
/// Most keys accepted in one set.
const MAX_KEYS: usize = 32;

/// A resolver over a JWK Set document. Accepts only public keys with a `kid`: EC P-256 (ES256),
/// OKP Ed25519 (EdDSA) and RSA of at least 2048 bits (RS256). A key's algorithm is its `alg` if
/// given (which must then fit its type), else the one its type allows. Private keys (a `d`
/// member) and symmetric keys are refused: a client registering those has made a mistake that
/// must not go unnoticed.
#[derive(Clone, Default)]
pub struct JwkSetResolver {
    keys: HashMap<String, VerificationKey>,
}

impl std::fmt::Debug for JwkSetResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwkSetResolver")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl JwkSetResolver {
    /// Parses `{"keys": [...]}`.
    pub fn from_json(jwks: &Value) -> Result<Self, KeyError> {
        let invalid = |why: String| KeyError::InvalidJwks(why);
        let keys = jwks
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("expected an object with a \"keys\" array".into()))?;
        if keys.is_empty() || keys.len() > MAX_KEYS {
            return Err(invalid(format!("expected 1 to {MAX_KEYS} keys")));
        }
        let mut out = HashMap::new();
        for (index, key) in keys.iter().enumerate() {
            let at = |why: &str| invalid(format!("key {index}: {why}"));
            let field = |name: &str| key.get(name).and_then(Value::as_str);
            let kid = field("kid").ok_or_else(|| at("kid is required"))?;
            if let Some(usage) = field("use")
                && usage != "sig"
            {
                return Err(at("use must be sig"));
            }
            let (algorithm, decoding) = public_key(key).map_err(|why| at(&why))?;
            if out
                .insert(
                    kid.to_owned(),
                    VerificationKey {
                        algorithm,
                        key: Arc::new(decoding),
                    },
                )
                .is_some()
            {
                return Err(at("kid is repeated"));
            }
        }
        Ok(Self { keys: out })
    }
}

/// A public signature key from its JWK: EC P-256 (ES256), OKP Ed25519 (EdDSA) or RSA of at
/// least 2048 bits (RS256). Its algorithm is its `alg` if given (which must then fit its type),
/// else the one its type allows. A private key (a `d` member) and a symmetric key are refused.
/// The reason names what is wrong.
pub(crate) fn public_key(key: &Value) -> Result<(Algorithm, DecodingKey), String> {
    let field = |name: &str| key.get(name).and_then(Value::as_str);
    if !key.is_object() {
        return Err("is not an object".into());
    }
    if key.get("d").is_some() {
        return Err("is a private key; register only the public key".into());
    }
    let (algorithm, decoding) = match field("kty") {
        Some("EC") => {
            if field("crv") != Some("P-256") {
                return Err("only the P-256 curve is accepted for EC keys".into());
            }
            let (x, y) = field("x").zip(field("y")).ok_or("x and y are required")?;
            (
                Algorithm::ES256,
                DecodingKey::from_ec_components(x, y).map_err(|_| "bad EC key")?,
            )
        }
        Some("OKP") => {
            if field("crv") != Some("Ed25519") {
                return Err("only Ed25519 is accepted for OKP keys".into());
            }
            let x = field("x").ok_or("x is required")?;
            (
                Algorithm::EdDSA,
                DecodingKey::from_ed_components(x).map_err(|_| "bad Ed25519 key")?,
            )
        }
        Some("RSA") => {
            let (n, e) = field("n").zip(field("e")).ok_or("n and e are required")?;
            let modulus = URL_SAFE_NO_PAD
                .decode(n)
                .map_err(|_| "n is not base64url")?;
            if modulus_bits(&modulus) < MIN_RSA_MODULUS_BITS {
                return Err("RSA keys must have at least 2048 bits".into());
            }
            (
                Algorithm::RS256,
                DecodingKey::from_rsa_components(n, e).map_err(|_| "bad RSA key")?,
            )
        }
        _ => return Err("kty must be EC, OKP or RSA".into()),
    };
    if let Some(alg) = field("alg")
        && alg != algorithm.as_str()
    {
        return Err("alg does not fit the key type (EdDSA, ES256 or RS256)".into());
    }
    Ok((algorithm, decoding))
}

/// The bit length of a big-endian unsigned integer (leading zero bytes and bits not counted),
/// so a 2047-bit modulus padded to 256 bytes is still refused.
fn modulus_bits(big_endian: &[u8]) -> usize {
    let significant: &[u8] = match big_endian.iter().position(|b| *b != 0) {
        Some(first) => &big_endian[first..],
        None => return 0,
    };
    let top_bits = significant
        .first()
        .map_or(0, |b| 8 - b.leading_zeros() as usize);
    (significant.len() - 1) * 8 + top_bits
}

impl KeyResolver for JwkSetResolver {
    fn resolve(&self, kid: &str) -> Option<VerificationKey> {
        self.keys.get(kid).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::modulus_bits;

    #[test]
    fn modulus_bits_counts_significant_bits() {
        assert_eq!(modulus_bits(&[]), 0);
        assert_eq!(modulus_bits(&[0, 0]), 0);
        assert_eq!(modulus_bits(&[0, 1]), 1);
        assert_eq!(modulus_bits(&[0x80; 256]), 2048);
        let mut short = vec![0x7f; 256];
        assert_eq!(modulus_bits(&short), 2047);
        short.insert(0, 0);
        assert_eq!(
            modulus_bits(&short),
            2047,
            "a leading zero byte adds nothing"
        );
    }
}
