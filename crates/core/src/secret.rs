//! Secrets that cannot leak through formatting, and how high-entropy secrets are stored.
//!
//! A [`Secret`] prints as `[redacted]` in `Debug` and `Display`, so it can sit inside any struct
//! that is logged. Opaque bearer tokens are 256 random bits; because they are high-entropy they are
//! stored as a plain SHA-256 [`TokenDigest`] (a slow password hash would add nothing but latency).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A secret string. Redacted in `Debug`, `Display` and serialization.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value. Call sites of this are the places a secret leaves its wrapper.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

/// SHA-256 of a high-entropy token, the only form in which such tokens are stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    /// The digest of `token`.
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// Rebuilds a digest from its stored bytes; `None` if the length is wrong.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    /// The raw digest bytes, as stored.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time comparison, for the rare place a digest is compared outside an index lookup.
    pub fn ct_eq(&self, other: &TokenDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenDigest({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

/// A new opaque bearer token: `prefix` followed by 256 random bits in base64url.
///
/// The prefix (e.g. `tg_admin_`) lets secret scanners recognise leaked tokens.
pub fn generate_token(prefix: &str) -> Secret {
    let bytes: [u8; 32] = rand::random();
    Secret(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats_its_value() {
        let s = Secret::new("hunter2-hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(
            serde_json::to_string(&s).expect("serialize"),
            "\"[redacted]\""
        );
        assert_eq!(s.expose(), "hunter2-hunter2");
    }

    #[test]
    fn tokens_are_prefixed_unique_and_256_bit() {
        let a = generate_token("tg_admin_");
        let b = generate_token("tg_admin_");
        assert!(a.expose().starts_with("tg_admin_"));
        assert_ne!(a, b);
        let encoded = &a.expose()["tg_admin_".len()..];
        assert_eq!(URL_SAFE_NO_PAD.decode(encoded).expect("base64").len(), 32);
    }

    #[test]
    fn digest_round_trips_and_distinguishes() {
        let d = TokenDigest::of("abc");
        assert_eq!(TokenDigest::from_bytes(d.as_bytes()), Some(d));
        assert!(d.ct_eq(&TokenDigest::of("abc")));
        assert!(!d.ct_eq(&TokenDigest::of("abd")));
        assert_eq!(TokenDigest::from_bytes(&[0u8; 31]), None);
    }
}
