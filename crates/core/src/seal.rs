//! Sealing: authenticated encryption of small secrets at rest and of stateless tokens.
//!
//! A [`SealingKey`] is a 256-bit AES-GCM key (RustCrypto `aes-gcm`). Every sealed value is bound
//! to a *purpose* string, passed as the associated data: a value sealed for `"totp-secret"`
//! cannot be opened as a `"pending-login"` token, even though the same key sealed both.
//!
//! Format: `nonce (12 bytes, random) || ciphertext || tag (16 bytes)`. Random 96-bit nonces are
//! safe for far more than the number of values one deployment seals (NIST SP 800-38D's 2^32
//! limit per key). Opening returns `None` for anything that is not exactly what this key sealed
//! for this purpose: truncated, tampered, another purpose, another key.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

use crate::Secret;

/// Bytes in a key.
pub const KEY_BYTES: usize = 32;
/// Bytes of the random nonce in front of every sealed value.
pub const NONCE_BYTES: usize = 12;
/// Bytes of the authentication tag at the end of every sealed value.
pub const TAG_BYTES: usize = 16;

/// A 256-bit AES-GCM key for sealing values. `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct SealingKey([u8; KEY_BYTES]);

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealingKey([redacted])")
    }
}

impl SealingKey {
    /// A key from exactly 32 bytes; `None` for any other length.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        <[u8; KEY_BYTES]>::try_from(bytes).ok().map(Self)
    }

    /// A new random key.
    pub fn generate() -> Self {
        Self(rand::random())
    }

    /// The key in standard base64 (with padding), for configuration files and environment
    /// variables.
    pub fn to_base64(&self) -> Secret {
        Secret::new(STANDARD.encode(self.0))
    }

    /// A key from base64 of 32 bytes (standard or URL-safe alphabet, padded or not, surrounding
    /// whitespace ignored); `None` if it is not exactly that.
    pub fn from_base64(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.len() > 64 {
            return None;
        }
        [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(s).ok())
            .and_then(|bytes| Self::from_bytes(&bytes))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.0.into())
    }

    /// Encrypts `plaintext` for `purpose`: `nonce || ciphertext || tag`.
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> Vec<u8> {
        let nonce_bytes: [u8; NONCE_BYTES] = rand::random();
        let nonce = Nonce::from(nonce_bytes);
        let payload = Payload {
            msg: plaintext,
            aad: purpose.as_bytes(),
        };
        // AES-GCM only fails for inputs beyond 64 GiB, which nothing here seals; an empty
        // ciphertext would then simply never open.
        let ciphertext = self.cipher().encrypt(&nonce, payload).unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Decrypts what [`seal`](Self::seal) made with this key for this `purpose`; `None` for
    /// anything else.
    pub fn open(&self, purpose: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_BYTES + TAG_BYTES {
            return None;
        }
        let (nonce_bytes, ciphertext) = sealed.split_at(NONCE_BYTES);
        let nonce_bytes = <[u8; NONCE_BYTES]>::try_from(nonce_bytes).ok()?;
        let payload = Payload {
            msg: ciphertext,
            aad: purpose.as_bytes(),
        };
        self.cipher()
            .decrypt(&Nonce::from(nonce_bytes), payload)
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let key = SealingKey::generate();
        let sealed = key.seal("totp-secret", b"twenty secret bytes!");
        assert_eq!(sealed.len(), NONCE_BYTES + 20 + TAG_BYTES);
        assert_eq!(
            key.open("totp-secret", &sealed).as_deref(),
            Some(&b"twenty secret bytes!"[..])
        );
        let again = key.seal("totp-secret", b"twenty secret bytes!");
        assert_ne!(sealed, again, "a fresh nonce every time");
        assert_eq!(
            key.open("x", &key.seal("x", b"")).as_deref(),
            Some(&b""[..])
        );
    }

    #[test]
    fn any_tampered_byte_is_refused() {
        let key = SealingKey::generate();
        let sealed = key.seal("pending-login", b"{\"user_id\":\"u1\"}");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(key.open("pending-login", &bad), None, "byte {i}");
        }
        assert_eq!(key.open("pending-login", &sealed[..sealed.len() - 1]), None);
        assert_eq!(key.open("pending-login", &[]), None);
        assert_eq!(key.open("pending-login", &[0u8; 27]), None);
    }

    #[test]
    fn other_purpose_or_key_is_refused() {
        let key = SealingKey::generate();
        let sealed = key.seal("totp-secret", b"secret");
        assert_eq!(key.open("pending-login", &sealed), None);
        assert_eq!(key.open("", &sealed), None);
        assert_eq!(SealingKey::generate().open("totp-secret", &sealed), None);
    }

    #[test]
    fn base64_round_trip_and_validation() {
        let key = SealingKey::generate();
        let encoded = key.to_base64();
        assert_eq!(SealingKey::from_base64(encoded.expose()), Some(key.clone()));
        let url = URL_SAFE_NO_PAD.encode(key.0);
        assert_eq!(SealingKey::from_base64(&format!(" {url}\n")), Some(key));
        assert_eq!(SealingKey::from_base64(&STANDARD.encode([0u8; 31])), None);
        assert_eq!(SealingKey::from_base64(&STANDARD.encode([0u8; 33])), None);
        assert_eq!(SealingKey::from_base64("not base64 at all!"), None);
        assert_eq!(SealingKey::from_base64(""), None);
        assert_eq!(
            SealingKey::from_bytes(&[7u8; 32]).map(|k| k.0),
            Some([7u8; 32])
        );
        assert_eq!(
            format!("{:?}", SealingKey::generate()),
            "SealingKey([redacted])"
        );
    }
}
