//! Signing keys: generation, sealing, rotation, JWKS, signing.

use std::sync::Arc;

use arc_swap::ArcSwap;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256,
    RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use serde::Serialize;
use serde_json::{Map, Value, json};
use time::{Duration, OffsetDateTime};
use trustgate_core::{Clock, SealingKey};
use trustgate_store_api::{KeyRetirement, SigningKey, SigningKeyStore, StoreError};
use zeroize::Zeroizing;

use crate::{Algorithm, KeyResolver, VerificationKey};

/// The sealing purpose of private keys.
const SEAL_PURPOSE: &str = "signing-key";
/// Compare-and-set attempts of one manual rotation before giving up.
const ROTATION_ATTEMPTS: u32 = 3;
/// Extra time a retired key stays published beyond the longest token lifetime.
const RETIREMENT_LEEWAY: Duration = Duration::seconds(60);

/// When keys rotate and how long they stay published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPolicy {
    /// A key older than this is replaced by [`KeyManager::maintain`].
    pub rotation_period: Duration,
    /// A new key is in the JWKS this long before it signs (longer than `jwks_max_age`).
    pub publish_ahead: Duration,
    /// A retired key stays in the JWKS this long (plus 60 s) after it stops signing: the
    /// longest lifetime of anything it signs.
    pub max_token_lifetime: Duration,
    /// `Cache-Control: max-age` of the JWKS.
    pub jwks_max_age: Duration,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        Self {
            rotation_period: Duration::days(30),
            publish_ahead: Duration::minutes(10),
            max_token_lifetime: Duration::hours(24),
            jwks_max_age: Duration::minutes(5),
        }
    }
}

/// Where a key is in its life at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// In the JWKS, not signing yet.
    Published,
    /// Signing.
    Active,
    /// In the JWKS, not signing any more.
    Retired,
    /// Out of the JWKS (purged at the next maintenance).
    Expired,
}

/// A key's public facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// `kid`.
    pub kid: String,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Created and published.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Signs from.
    #[serde(with = "time::serde::rfc3339")]
    pub activates_at: OffsetDateTime,
    /// Signs until.
    #[serde(with = "time::serde::rfc3339::option")]
    pub retires_at: Option<OffsetDateTime>,
    /// Published until.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// State at the time of listing.
    pub state: KeyState,
}

impl KeyInfo {
    fn state_at(&self, now: OffsetDateTime) -> KeyState {
        if self.expires_at.is_some_and(|t| now >= t) {
            KeyState::Expired
        } else if self.retires_at.is_some_and(|t| now >= t) {
            KeyState::Retired
        } else if now >= self.activates_at {
            KeyState::Active
        } else {
            KeyState::Published
        }
    }
}

/// Why key management failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The store failed.
    #[error("signing key storage: {0}")]
    Store(#[from] StoreError),
    /// A stored private key does not open with the configured secrets key.
    #[error(
        "signing key {kid} cannot be decrypted: the secrets key is not the one the keys were \
         sealed with (restore the previous secrets key, or delete the signing keys to start over)"
    )]
    Sealed {
        /// The key.
        kid: String,
    },
    /// A stored key is damaged.
    #[error("signing key {kid} is corrupt: {why}")]
    Corrupt {
        /// The key.
        kid: String,
        /// What is wrong.
        why: String,
    },
    /// Key generation or signing failed in the crypto library.
    #[error("cryptographic operation failed: {0}")]
    Crypto(String),
    /// A manual rotation lost the compare-and-set to other replicas' rotations every time.
    #[error(
        "rotating the {0} key lost to concurrent rotations {ROTATION_ATTEMPTS} times; try again"
    )]
    Contended(Algorithm),
    /// No key of this algorithm is active.
    #[error("no active {0} signing key")]
    NoActiveKey(Algorithm),
    /// Claims could not be serialized.
    #[error("claims cannot be serialized: {0}")]
    Claims(String),
    /// A registered JWK Set is unusable.
    #[error("invalid JWK Set: {0}")]
    InvalidJwks(String),
}

enum Signer {
    Ed25519(Ed25519KeyPair),
    P256(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

struct LoadedKey {
    info: KeyInfo,
    public_jwk: Map<String, Value>,
    signer: Signer,
    verification: VerificationKey,
}

/// The loaded keys, oldest first.
#[derive(Default)]
struct KeySet {
    keys: Vec<LoadedKey>,
}

/// Keys loaded from the store and their private parts, shared by every request.
#[derive(Clone)]
pub struct KeyManager {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn SigningKeyStore>,
    sealing: SealingKey,
    policy: KeyPolicy,
    clock: Arc<dyn Clock>,
    set: ArcSwap<KeySet>,
    rng: SystemRandom,
}

impl std::fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<String> = self.list().into_iter().map(|k| k.kid).collect();
        f.debug_struct("KeyManager")
            .field("kids", &kids)
            .field("policy", &self.inner.policy)
            .finish()
    }
}

/// A JWS and the key that signed it ([`KeyManager::sign_with_key`]).
#[derive(Debug, Clone)]
pub struct SignedWithKey {
    /// The JWS compact serialization.
    pub token: String,
    /// The signing key's `kid`.
    pub kid: String,
    /// The signing key's public JWK (as in the JWKS).
    pub public_jwk: Map<String, Value>,
}

/// The keys published at one instant, as a [`KeyResolver`].
pub struct PublishedKeys {
    set: Arc<KeySet>,
    now: OffsetDateTime,
}

impl std::fmt::Debug for PublishedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishedKeys").finish_non_exhaustive()
    }
}

impl KeyResolver for PublishedKeys {
    fn resolve(&self, kid: &str) -> Option<VerificationKey> {
        self.set
            .keys
            .iter()
            .find(|k| k.info.kid == kid && k.info.state_at(self.now) != KeyState::Expired)
            .map(|k| k.verification.clone())
    }
}

impl KeyManager {
    /// Loads every stored key, opening the private parts with `sealing`.
    pub async fn load(
        store: Arc<dyn SigningKeyStore>,
        sealing: SealingKey,
        policy: KeyPolicy,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, KeyError> {
        let manager = Self {
            inner: Arc::new(Inner {
                store,
                sealing,
                policy,
                clock,
                set: ArcSwap::from_pointee(KeySet::default()),
                rng: SystemRandom::new(),
            }),
        };
        manager.reload().await?;
        Ok(manager)
    }

    /// The policy.
    pub fn policy(&self) -> &KeyPolicy {
        &self.inner.policy
    }

    /// Reloads from the store (rotations by other replicas).
    pub async fn reload(&self) -> Result<(), KeyError> {
        let stored = self.inner.store.list_signing_keys().await?;
        let mut keys = Vec::with_capacity(stored.len());
        for key in stored {
            keys.push(self.open(key)?);
        }
        self.inner.set.store(Arc::new(KeySet { keys }));
        Ok(())
    }

    /// For every algorithm without a key, one that is active at once (nothing can have cached
    /// a JWKS without it). Idempotent; concurrent replicas create one key per algorithm.
    pub async fn ensure_keys(&self) -> Result<(), KeyError> {
        self.reload().await?;
        for algorithm in Algorithm::all() {
            if self.newest_key(algorithm).is_none() {
                self.create_first(algorithm).await?;
            }
        }
        self.reload().await
    }

    /// Rotates `algorithm` (all three if `None`): a new key published now and signing after
    /// `publish_ahead`; the previous newest stops signing at that moment and leaves the JWKS
    /// `max_token_lifetime` + 60 s later. Returns the new keys.
    ///
    /// Each call is one rotation per algorithm: if another replica rotated in between, the new
    /// key succeeds that replica's key instead (retried up to three times, then
    /// [`KeyError::Contended`]).
    pub async fn rotate(&self, algorithm: Option<Algorithm>) -> Result<Vec<KeyInfo>, KeyError> {
        self.reload().await?;
        let algorithms = match algorithm {
            Some(one) => vec![one],
            None => Algorithm::all().to_vec(),
        };
        let mut created = Vec::new();
        for algorithm in algorithms {
            let mut attempts = 0;
            let kid = loop {
                if let Some(kid) = self
                    .rotate_from(algorithm, self.newest_key(algorithm))
                    .await?
                {
                    break kid;
                }
                attempts += 1;
                if attempts == ROTATION_ATTEMPTS {
                    return Err(KeyError::Contended(algorithm));
                }
            };
            if let Some(info) = self.list().into_iter().find(|k| k.kid == kid) {
                created.push(info);
            }
        }
        Ok(created)
    }

    /// Periodic work: reload, rotate keys older than the rotation period, delete expired keys.
    ///
    /// A scheduled rotation is a single compare-and-set against the key found due: when several
    /// replicas find the same key due at once, one rotates it and the others only reload (a
    /// retry would rotate the fresh key again). An algorithm with no key at all (rows deleted by
    /// hand) gets one active at once, as in [`ensure_keys`](Self::ensure_keys).
    pub async fn maintain(&self) -> Result<(), KeyError> {
        self.reload().await?;
        let now = self.inner.clock.now();
        let mut changed = false;
        for algorithm in Algorithm::all() {
            match self.newest_key(algorithm) {
                None => {
                    self.create_first(algorithm).await?;
                    changed = true;
                }
                Some(newest) if now - newest.1 >= self.inner.policy.rotation_period => {
                    // rotate_from reloads: later algorithms see this replica's result.
                    self.rotate_from(algorithm, Some(newest)).await?;
                }
                Some(_) => {}
            }
        }
        let purged = self.inner.store.delete_expired_signing_keys(now).await?;
        if changed || purged > 0 {
            self.reload().await?;
        }
        Ok(())
    }

    /// The first key of `algorithm`, active at once, unless another replica created one first.
    /// Does not reload.
    async fn create_first(&self, algorithm: Algorithm) -> Result<(), KeyError> {
        let mut key = self.generate(
            algorithm,
            OffsetDateTime::UNIX_EPOCH,
            OffsetDateTime::UNIX_EPOCH,
        )?;
        let now = self.inner.clock.now();
        key.created_at = now;
        key.activates_at = now;
        self.inner
            .store
            .rotate_signing_key(&key, None, None)
            .await?;
        Ok(())
    }

    /// One compare-and-set: a new key of `algorithm` succeeding `previous` (kid and creation
    /// time of the newest key as this replica saw it). Reloads either way; returns the new kid,
    /// or `None` when another replica rotated `previous` first.
    async fn rotate_from(
        &self,
        algorithm: Algorithm,
        previous: Option<(String, OffsetDateTime)>,
    ) -> Result<Option<String>, KeyError> {
        // Generate first: an RSA key can take a second, and the publish-ahead window must start
        // when the key exists, not before.
        let mut key = self.generate(
            algorithm,
            OffsetDateTime::UNIX_EPOCH,
            OffsetDateTime::UNIX_EPOCH,
        )?;
        let now = self.inner.clock.now();
        let activates_at = now + self.inner.policy.publish_ahead;
        // Strictly newer than its predecessor, so "newest" (the store's compare-and-set
        // condition) is never decided by a tie between two replicas' random kids.
        key.created_at = previous
            .as_ref()
            .map_or(now, |(_, at)| now.max(*at + Duration::microseconds(1)));
        key.activates_at = activates_at;
        let retirement = previous.as_ref().map(|_| KeyRetirement {
            retires_at: activates_at,
            expires_at: activates_at + self.inner.policy.max_token_lifetime + RETIREMENT_LEEWAY,
        });
        let done = self
            .inner
            .store
            .rotate_signing_key(
                &key,
                previous.as_ref().map(|(kid, _)| kid.as_str()),
                retirement,
            )
            .await?;
        self.reload().await?;
        Ok(done.then_some(key.kid))
    }

    /// Every loaded key with its state now.
    pub fn list(&self) -> Vec<KeyInfo> {
        let now = self.inner.clock.now();
        self.inner
            .set
            .load()
            .keys
            .iter()
            .map(|k| KeyInfo {
                state: k.info.state_at(now),
                ..k.info.clone()
            })
            .collect()
    }

    /// The JWKS document: keys published and not expired now.
    pub fn jwks(&self) -> Value {
        let now = self.inner.clock.now();
        let set = self.inner.set.load();
        let keys: Vec<&Map<String, Value>> = set
            .keys
            .iter()
            .filter(|k| k.info.state_at(now) != KeyState::Expired)
            .map(|k| &k.public_jwk)
            .collect();
        json!({ "keys": keys })
    }

    /// The keys a verifier may use now.
    pub fn resolver(&self) -> PublishedKeys {
        PublishedKeys {
            set: self.inner.set.load_full(),
            now: self.inner.clock.now(),
        }
    }

    /// Signs `claims` with the active key of `algorithm`: header `{alg, kid, typ}`.
    pub fn sign<T: Serialize>(
        &self,
        algorithm: Algorithm,
        typ: &str,
        claims: &T,
    ) -> Result<String, KeyError> {
        self.sign_with(algorithm, typ, claims, |_| ())
            .map(|(token, ())| token)
    }

    /// Signs like [`sign`](Self::sign) and also returns the signing key's `kid` and public JWK,
    /// for a statement that must stay verifiable after the key has left the JWKS (the audit
    /// trail's anchors keep the key with the signature).
    pub fn sign_with_key<T: Serialize>(
        &self,
        algorithm: Algorithm,
        typ: &str,
        claims: &T,
    ) -> Result<SignedWithKey, KeyError> {
        self.sign_with(algorithm, typ, claims, |key| {
            (key.info.kid.clone(), key.public_jwk.clone())
        })
        .map(|(token, (kid, public_jwk))| SignedWithKey {
            token,
            kid,
            public_jwk,
        })
    }

    fn sign_with<T: Serialize, R>(
        &self,
        algorithm: Algorithm,
        typ: &str,
        claims: &T,
        facts: impl FnOnce(&LoadedKey) -> R,
    ) -> Result<(String, R), KeyError> {
        let now = self.inner.clock.now();
        let set = self.inner.set.load();
        let key = set
            .keys
            .iter()
            .filter(|k| k.info.algorithm == algorithm && k.info.state_at(now) == KeyState::Active)
            .max_by_key(|k| k.info.activates_at)
            .ok_or(KeyError::NoActiveKey(algorithm))?;
        let header = json!({ "alg": algorithm.as_str(), "kid": key.info.kid, "typ": typ });
        let header = serde_json::to_vec(&header).map_err(|e| KeyError::Claims(e.to_string()))?;
        let payload = serde_json::to_vec(claims).map_err(|e| KeyError::Claims(e.to_string()))?;
        let mut token = String::with_capacity(header.len() * 2 + payload.len() * 2 + 400);
        URL_SAFE_NO_PAD.encode_string(&header, &mut token);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature = match &key.signer {
            Signer::Ed25519(pair) => pair.sign(token.as_bytes()).as_ref().to_vec(),
            Signer::P256(pair) => pair
                .sign(&self.inner.rng, token.as_bytes())
                .map_err(|e| KeyError::Crypto(e.to_string()))?
                .as_ref()
                .to_vec(),
            Signer::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &RSA_PKCS1_SHA256,
                    &self.inner.rng,
                    token.as_bytes(),
                    &mut signature,
                )
                .map_err(|e| KeyError::Crypto(e.to_string()))?;
                signature
            }
        };
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok((token, facts(key)))
    }

    /// The kid and creation time of the newest key of `algorithm` (the store's order).
    fn newest_key(&self, algorithm: Algorithm) -> Option<(String, OffsetDateTime)> {
        self.inner
            .set
            .load()
            .keys
            .iter()
            .filter(|k| k.info.algorithm == algorithm)
            .max_by_key(|k| (k.info.created_at, k.info.kid.clone()))
            .map(|k| (k.info.kid.clone(), k.info.created_at))
    }

    fn generate(
        &self,
        algorithm: Algorithm,
        created_at: OffsetDateTime,
        activates_at: OffsetDateTime,
    ) -> Result<SigningKey, KeyError> {
        let crypto = |e: aws_lc_rs::error::Unspecified| KeyError::Crypto(e.to_string());
        // aws-lc-rs zeroizes its own DER buffers on drop; our copy is zeroized too.
        let pkcs8: Zeroizing<Vec<u8>> = Zeroizing::new(match algorithm {
            Algorithm::EdDSA => Ed25519KeyPair::generate()
                .map_err(crypto)?
                .to_pkcs8v1()
                .map_err(crypto)?
                .as_ref()
                .to_vec(),
            Algorithm::ES256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .map_err(crypto)?
                .to_pkcs8v1()
                .map_err(crypto)?
                .as_ref()
                .to_vec(),
            Algorithm::RS256 => RsaKeyPair::generate(KeySize::Rsa2048)
                .map_err(crypto)?
                .as_der()
                .map_err(crypto)?
                .as_ref()
                .to_vec(),
        });
        let kid = {
            let bytes: [u8; 16] = random_bytes(&self.inner.rng)?;
            URL_SAFE_NO_PAD.encode(bytes)
        };
        let (_, public_jwk) = parse_private(algorithm, &pkcs8, &kid)?;
        Ok(SigningKey {
            kid,
            algorithm: algorithm.as_str().to_owned(),
            public_jwk,
            sealed_private_key: self.inner.sealing.seal(SEAL_PURPOSE, &pkcs8),
            created_at,
            activates_at,
            retires_at: None,
            expires_at: None,
        })
    }

    fn open(&self, stored: SigningKey) -> Result<LoadedKey, KeyError> {
        let corrupt = |why: &str| KeyError::Corrupt {
            kid: stored.kid.clone(),
            why: why.to_owned(),
        };
        let algorithm: Algorithm = stored
            .algorithm
            .parse()
            .map_err(|_| corrupt("unknown algorithm"))?;
        let pkcs8 = self
            .inner
            .sealing
            .open(SEAL_PURPOSE, &stored.sealed_private_key)
            .map(Zeroizing::new)
            .ok_or_else(|| KeyError::Sealed {
                kid: stored.kid.clone(),
            })?;
        let (signer, public_jwk) = parse_private(algorithm, &pkcs8, &stored.kid)?;
        let decoding = decoding_key(&public_jwk).ok_or_else(|| corrupt("bad public key"))?;
        Ok(LoadedKey {
            info: KeyInfo {
                kid: stored.kid,
                algorithm,
                created_at: stored.created_at,
                activates_at: stored.activates_at,
                retires_at: stored.retires_at,
                expires_at: stored.expires_at,
                state: KeyState::Published,
            },
            public_jwk,
            signer,
            verification: VerificationKey {
                algorithm,
                key: Arc::new(decoding),
            },
        })
    }
}

fn random_bytes<const N: usize>(rng: &SystemRandom) -> Result<[u8; N], KeyError> {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut bytes = [0u8; N];
    rng.fill(&mut bytes)
        .map_err(|e| KeyError::Crypto(e.to_string()))?;
    Ok(bytes)
}

/// The key pair and its public JWK.
fn parse_private(
    algorithm: Algorithm,
    pkcs8: &[u8],
    kid: &str,
) -> Result<(Signer, Map<String, Value>), KeyError> {
    let corrupt = |why: String| KeyError::Corrupt {
        kid: kid.to_owned(),
        why,
    };
    let b64 = |bytes: &[u8]| Value::String(URL_SAFE_NO_PAD.encode(bytes));
    let mut jwk = Map::new();
    let signer = match algorithm {
        Algorithm::EdDSA => {
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| corrupt(e.to_string()))?;
            jwk.insert("kty".into(), json!("OKP"));
            jwk.insert("crv".into(), json!("Ed25519"));
            jwk.insert("x".into(), b64(pair.public_key().as_ref()));
            Signer::Ed25519(pair)
        }
        Algorithm::ES256 => {
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                .map_err(|e| corrupt(e.to_string()))?;
            let point = pair.public_key().as_ref();
            if point.len() != 65 || point[0] != 4 {
                return Err(corrupt("unexpected P-256 public key encoding".into()));
            }
            jwk.insert("kty".into(), json!("EC"));
            jwk.insert("crv".into(), json!("P-256"));
            jwk.insert("x".into(), b64(&point[1..33]));
            jwk.insert("y".into(), b64(&point[33..65]));
            Signer::P256(pair)
        }
        Algorithm::RS256 => {
            let pair = RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| corrupt(e.to_string()))?;
            let public = pair.public_key();
            jwk.insert("kty".into(), json!("RSA"));
            jwk.insert(
                "n".into(),
                b64(public.modulus().big_endian_without_leading_zero()),
            );
            jwk.insert(
                "e".into(),
                b64(public.exponent().big_endian_without_leading_zero()),
            );
            Signer::Rsa(pair)
        }
    };
    jwk.insert("kid".into(), json!(kid));
    jwk.insert("alg".into(), json!(algorithm.as_str()));
    jwk.insert("use".into(), json!("sig"));
    Ok((signer, jwk))
}

fn decoding_key(jwk: &Map<String, Value>) -> Option<DecodingKey> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    match field("kty")? {
        "OKP" => DecodingKey::from_ed_components(field("x")?).ok(),
        "EC" => DecodingKey::from_ec_components(field("x")?, field("y")?).ok(),
        "RSA" => DecodingKey::from_rsa_components(field("n")?, field("e")?).ok(),
        _ => None,
    }
}
