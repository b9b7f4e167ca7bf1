//! DPoP (RFC 9449) as the authorization server applies it: the settings, the server's nonces,
//! and the mapping of a refused proof to an OAuth error. The proof itself is checked by
//! [`trustgate_tokens::dpop::verify_proof`]; the `jti` ledger is the store's
//! [`NonceStore`](trustgate_store_api::NonceStore), so a proof spent on one replica is spent on
//! all ([`Provider`](crate::provider::Provider) ties the three together).
//!
//! # Nonces (RFC 9449 §8)
//! A nonce names a time window: the window's number sealed (AES-256-GCM, purpose
//! `dpop-nonce`) with the deployment's secrets key, base64url. Any replica opens any other
//! replica's nonce without shared state; nobody without the key can make one for a future
//! window. A nonce is accepted during its window and the next, so it stands between one and two
//! [`DpopSettings::nonce_lifetime`]s, and every response to a DPoP request carries a fresh one
//! (`DPoP-Nonce`): a client that keeps the latest never sees `use_dpop_nonce` twice.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::{Duration, OffsetDateTime};
use trustgate_core::SealingKey;
use trustgate_tokens::dpop::DpopError;

use crate::{ErrorCode, OAuthError};

/// The `purpose` of spent proof ids in the store's ledger.
pub const JTI_PURPOSE: &str = "dpop-jti";
/// The sealing purpose of nonces.
const NONCE_PURPOSE: &str = "dpop-nonce";
/// A sealed window number in base64url: 12 bytes of AES-GCM nonce, 8 of window, 16 of tag.
const NONCE_CHARS: usize = 48;

/// How the server checks DPoP proofs.
#[derive(Debug, Clone)]
pub struct DpopSettings {
    /// Proofs at the token and PAR endpoints must carry a nonce this server issued
    /// (`use_dpop_nonce` otherwise, with one in `DPoP-Nonce`). On by default: a proof then
    /// cannot be made ahead of its use by whoever briefly holds the client's key.
    pub require_nonce: bool,
    /// The length of a nonce window (a nonce stands one to two of these).
    pub nonce_lifetime: Duration,
    /// How old a proof's `iat` may be; its `jti` is remembered that long.
    pub proof_max_age: Duration,
    /// How far ahead of the server's clock `iat` may be.
    pub proof_leeway: Duration,
    /// The key nonces are sealed with: the deployment's secrets key, the same on every replica
    /// (a random one by default, which only one process can open).
    pub nonce_key: SealingKey,
}

impl Default for DpopSettings {
    fn default() -> Self {
        Self {
            require_nonce: true,
            nonce_lifetime: Duration::minutes(5),
            proof_max_age: Duration::seconds(60),
            proof_leeway: Duration::seconds(5),
            nonce_key: SealingKey::generate(),
        }
    }
}

impl DpopSettings {
    fn window(&self, at: OffsetDateTime) -> i64 {
        at.unix_timestamp()
            .div_euclid(self.nonce_lifetime.whole_seconds().max(1))
    }

    /// A nonce for the window of `now`.
    pub fn issue_nonce(&self, now: OffsetDateTime) -> String {
        let sealed = self
            .nonce_key
            .seal(NONCE_PURPOSE, &self.window(now).to_be_bytes());
        URL_SAFE_NO_PAD.encode(sealed)
    }

    /// Whether `nonce` is one this deployment issued for the window of `now` or the one before.
    pub fn accepts_nonce(&self, nonce: &str, now: OffsetDateTime) -> bool {
        if nonce.len() != NONCE_CHARS {
            return false;
        }
        let Some(window) = URL_SAFE_NO_PAD
            .decode(nonce)
            .ok()
            .and_then(|sealed| self.nonce_key.open(NONCE_PURPOSE, &sealed))
            .and_then(|plain| <[u8; 8]>::try_from(plain.as_slice()).ok())
            .map(i64::from_be_bytes)
        else {
            return false;
        };
        let current = self.window(now);
        window == current || window == current - 1
    }
}

/// A refused proof as the OAuth error the endpoint answers: `use_dpop_nonce` when only the
/// nonce was missing or old, `invalid_dpop_proof` otherwise (RFC 9449 §5, §8).
pub fn proof_error(err: DpopError) -> OAuthError {
    let code = match err {
        DpopError::NonceRequired => ErrorCode::UseDpopNonce,
        _ => ErrorCode::InvalidDpopProof,
    };
    OAuthError::new(code, err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).expect("time")
    }

    #[test]
    fn a_nonce_stands_for_its_window_and_the_next_on_every_replica() {
        let key = SealingKey::generate();
        let settings = |key: &SealingKey| DpopSettings {
            nonce_key: key.clone(),
            nonce_lifetime: Duration::seconds(300),
            ..DpopSettings::default()
        };
        let (here, there) = (settings(&key), settings(&key));
        // 1_800_000_000 is a multiple of 300: the window starts at at(0).
        let nonce = here.issue_nonce(at(10));
        assert_eq!(nonce.len(), NONCE_CHARS);
        assert_ne!(nonce, here.issue_nonce(at(10)), "nonces are not guessable");
        for now in [at(10), at(299), at(300), at(599)] {
            assert!(there.accepts_nonce(&nonce, now), "{now}");
        }
        for now in [at(600), at(-1)] {
            assert!(!there.accepts_nonce(&nonce, now), "{now}");
        }
        let other = settings(&SealingKey::generate());
        assert!(!other.accepts_nonce(&nonce, at(10)), "another deployment's");
        let mut tampered = nonce.into_bytes();
        tampered[20] = if tampered[20] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        assert!(!here.accepts_nonce(&tampered, at(10)));
        for junk in ["", "x", &"A".repeat(NONCE_CHARS), &"é".repeat(24)] {
            assert!(!here.accepts_nonce(junk, at(10)), "{junk}");
        }
    }

    #[test]
    fn only_a_missing_nonce_asks_for_one() {
        assert_eq!(
            proof_error(DpopError::NonceRequired).code,
            ErrorCode::UseDpopNonce
        );
        for err in [
            DpopError::BadSignature,
            DpopError::Stale,
            DpopError::WrongUri,
        ] {
            assert_eq!(proof_error(err).code, ErrorCode::InvalidDpopProof);
        }
    }
}
