//! WebAuthn relying-party verification (passkeys), following W3C Web Authentication Level 3
//! §7.1 (registering a new credential) and §7.2 (verifying an authentication assertion).
//!
//! Pure functions over bytes: no storage, no HTTP. The caller keeps the challenge (random 32
//! bytes from [`Challenge::new`], single use (the account service spends it in the database's
//! ledger of one-time values, so it works once across all replicas), short-lived, bound to a
//! session or a sealed pending state) and the stored credential.
//!
//! What is checked, in order (the step numbers are those of the spec):
//! - `clientDataJSON`: `type` is `webauthn.create` / `webauthn.get`, `challenge` is the expected
//!   one (constant-time), `origin` is exactly the relying party's origin, not `crossOrigin`;
//! - `authenticatorData`: `rpIdHash` is SHA-256 of the RP ID, the UP flag is set, the UV flag
//!   when user verification is required (passwordless), attested credential data present at
//!   registration;
//! - registration: attestation format `none` only (no attestation statement is trusted), a COSE
//!   key of ES256 (P-256) or EdDSA (Ed25519);
//! - assertion: the signature over `authenticatorData || SHA-256(clientDataJSON)` with the stored
//!   key, then the signature counter: when both the stored and the new counter are non-zero the
//!   new one must be greater, else [`WebauthnError::CounterRegression`] (a cloned authenticator
//!   is likely; the caller audits and refuses).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coset::iana::{self, EnumI64};
use coset::{CborSerializable, CoseKey, KeyType, Label, RegisteredLabelWithPrivate};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Bytes of a challenge.
pub const CHALLENGE_BYTES: usize = 32;

const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_BE: u8 = 0x08;
const FLAG_BS: u8 = 0x10;
const FLAG_AT: u8 = 0x40;
const FLAG_ED: u8 = 0x80;

/// Longest `clientDataJSON` accepted.
const MAX_CLIENT_DATA: usize = 4096;
/// Longest authenticator data or attestation object accepted.
const MAX_AUTHENTICATOR_DATA: usize = 16 * 1024;

/// Why a ceremony was refused. [`code`](Self::code) is a stable reason for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebauthnError {
    /// Malformed client data, authenticator data, attestation object, key or signature.
    #[error("malformed WebAuthn data: {0}")]
    Malformed(&'static str),
    /// `clientDataJSON.type` is not the expected ceremony.
    #[error("wrong ceremony type")]
    WrongType,
    /// The challenge is not the one issued.
    #[error("wrong challenge")]
    WrongChallenge,
    /// The origin is not exactly the relying party's, or the request was cross-origin.
    #[error("wrong origin")]
    WrongOrigin,
    /// `rpIdHash` is not SHA-256 of the RP ID.
    #[error("wrong relying party id")]
    WrongRpId,
    /// The user-present flag is not set.
    #[error("user presence not confirmed")]
    UserNotPresent,
    /// User verification was required but not performed.
    #[error("user verification required")]
    UserNotVerified,
    /// An attestation format other than `none`.
    #[error("unsupported attestation format")]
    UnsupportedAttestation,
    /// A key type or algorithm other than ES256 and EdDSA.
    #[error("unsupported credential key")]
    UnsupportedKey,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The signature counter did not increase (both non-zero): possibly a cloned authenticator.
    #[error("signature counter regression (stored {stored}, presented {presented})")]
    CounterRegression {
        /// The counter stored.
        stored: u32,
        /// The counter presented.
        presented: u32,
    },
    /// The challenge was already used, expired or never issued.
    #[error("challenge already used or expired")]
    ChallengeUsed,
}

impl WebauthnError {
    /// Stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            WebauthnError::Malformed(_) => "webauthn_malformed",
            WebauthnError::WrongType => "webauthn_wrong_type",
            WebauthnError::WrongChallenge => "webauthn_wrong_challenge",
            WebauthnError::WrongOrigin => "webauthn_wrong_origin",
            WebauthnError::WrongRpId => "webauthn_wrong_rp_id",
            WebauthnError::UserNotPresent => "webauthn_user_not_present",
            WebauthnError::UserNotVerified => "webauthn_user_not_verified",
            WebauthnError::UnsupportedAttestation => "webauthn_unsupported_attestation",
            WebauthnError::UnsupportedKey => "webauthn_unsupported_key",
            WebauthnError::BadSignature => "webauthn_bad_signature",
            WebauthnError::CounterRegression { .. } => "webauthn_counter_regression",
            WebauthnError::ChallengeUsed => "webauthn_challenge_used",
        }
    }
}

/// The relying party: its RP ID (a registrable domain) and the one origin its pages are served
/// from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelyingParty {
    id: String,
    origin: String,
}

impl RelyingParty {
    /// The relying party of `origin` (`scheme://host[:port]`), with the host as RP ID. `None`
    /// when the origin is malformed or its host is an IP address (WebAuthn needs a domain), or
    /// it is `http` on anything but `localhost`.
    pub fn from_origin(origin: &str) -> Option<Self> {
        let (scheme, authority) = origin.split_once("://")?;
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return None;
        }
        let host = match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => authority,
        };
        let host = host.to_ascii_lowercase();
        let is_domain = !host.is_empty()
            && !host.starts_with('[')
            && host.parse::<std::net::IpAddr>().is_err()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        let localhost = host == "localhost" || host.ends_with(".localhost");
        let scheme_ok = scheme == "https" || (scheme == "http" && localhost);
        (is_domain && scheme_ok).then(|| Self {
            id: host,
            origin: format!("{scheme}://{}", authority.to_ascii_lowercase()),
        })
    }

    /// The RP ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The expected origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    fn id_hash(&self) -> [u8; 32] {
        Sha256::digest(self.id.as_bytes()).into()
    }
}

/// A fresh random challenge.
#[derive(Clone, PartialEq, Eq)]
pub struct Challenge(pub [u8; CHALLENGE_BYTES]);

impl Challenge {
    /// 32 random bytes.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(rand::random())
    }

    /// In base64url without padding, as the browser echoes it.
    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }
}

impl fmt::Debug for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Challenge(..)")
    }
}

/// The ceremony a `clientDataJSON` belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ceremony {
    Create,
    Get,
}

impl Ceremony {
    fn type_name(self) -> &'static str {
        match self {
            Ceremony::Create => "webauthn.create",
            Ceremony::Get => "webauthn.get",
        }
    }
}

#[derive(Deserialize)]
struct ClientData {
    #[serde(rename = "type")]
    kind: String,
    challenge: String,
    origin: String,
    #[serde(rename = "crossOrigin", default)]
    cross_origin: Option<bool>,
}

/// Steps 5-12 of registration / 10-15 of authentication on `clientDataJSON`.
fn check_client_data(
    rp: &RelyingParty,
    ceremony: Ceremony,
    challenge: &[u8],
    client_data_json: &[u8],
) -> Result<(), WebauthnError> {
    if client_data_json.len() > MAX_CLIENT_DATA {
        return Err(WebauthnError::Malformed("clientDataJSON too long"));
    }
    let data: ClientData = serde_json::from_slice(client_data_json)
        .map_err(|_| WebauthnError::Malformed("clientDataJSON"))?;
    if data.kind != ceremony.type_name() {
        return Err(WebauthnError::WrongType);
    }
    let presented = URL_SAFE_NO_PAD
        .decode(data.challenge.trim_end_matches('='))
        .map_err(|_| WebauthnError::WrongChallenge)?;
    if presented.len() != challenge.len() || !bool::from(presented.ct_eq(challenge)) {
        return Err(WebauthnError::WrongChallenge);
    }
    if data.origin != rp.origin || data.cross_origin == Some(true) {
        return Err(WebauthnError::WrongOrigin);
    }
    Ok(())
}

/// Parsed authenticator data.
#[derive(Debug)]
struct AuthData<'a> {
    rp_id_hash: &'a [u8],
    flags: u8,
    sign_count: u32,
    /// (aaguid, credential id, COSE key bytes) when the AT flag is set.
    attested: Option<(&'a [u8], &'a [u8], &'a [u8])>,
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> Result<&'a [u8], WebauthnError> {
    if data.len() < n {
        return Err(WebauthnError::Malformed("authenticator data truncated"));
    }
    let (head, tail) = data.split_at(n);
    *data = tail;
    Ok(head)
}

/// Length of the one CBOR item at the start of `bytes`.
fn cbor_item_len(bytes: &[u8]) -> Result<usize, WebauthnError> {
    let mut rest = bytes;
    let _: ciborium::Value = ciborium::from_reader(&mut rest)
        .map_err(|_| WebauthnError::Malformed("CBOR in authenticator data"))?;
    Ok(bytes.len() - rest.len())
}

fn parse_auth_data(bytes: &[u8]) -> Result<AuthData<'_>, WebauthnError> {
    if bytes.len() > MAX_AUTHENTICATOR_DATA {
        return Err(WebauthnError::Malformed("authenticator data too long"));
    }
    let mut data = bytes;
    let rp_id_hash = take(&mut data, 32)?;
    let flags = take(&mut data, 1)?[0];
    let count = take(&mut data, 4)?;
    let sign_count = u32::from_be_bytes([count[0], count[1], count[2], count[3]]);
    let attested = if flags & FLAG_AT != 0 {
        let aaguid = take(&mut data, 16)?;
        let len = take(&mut data, 2)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if len == 0 || len > 1023 {
            return Err(WebauthnError::Malformed("credential id length"));
        }
        let credential_id = take(&mut data, len)?;
        let key_len = cbor_item_len(data)?;
        let key = take(&mut data, key_len)?;
        Some((aaguid, credential_id, key))
    } else {
        None
    };
    if flags & FLAG_ED != 0 {
        let ext_len = cbor_item_len(data)?;
        take(&mut data, ext_len)?;
    }
    if !data.is_empty() {
        return Err(WebauthnError::Malformed(
            "trailing bytes in authenticator data",
        ));
    }
    Ok(AuthData {
        rp_id_hash,
        flags,
        sign_count,
        attested,
    })
}

fn check_flags(
    rp: &RelyingParty,
    auth: &AuthData<'_>,
    require_uv: bool,
) -> Result<(), WebauthnError> {
    if !bool::from(auth.rp_id_hash.ct_eq(&rp.id_hash())) {
        return Err(WebauthnError::WrongRpId);
    }
    if auth.flags & FLAG_UP == 0 {
        return Err(WebauthnError::UserNotPresent);
    }
    if require_uv && auth.flags & FLAG_UV == 0 {
        return Err(WebauthnError::UserNotVerified);
    }
    // Backup state without backup eligibility is invalid (§6.1.3).
    if auth.flags & FLAG_BS != 0 && auth.flags & FLAG_BE == 0 {
        return Err(WebauthnError::Malformed("backup state without eligibility"));
    }
    Ok(())
}

/// A credential's public key, parsed from its COSE_Key.
#[derive(Debug)]
enum PublicKey {
    Es256(p256::ecdsa::VerifyingKey),
    EdDsa(ed25519_dalek::VerifyingKey),
}

/// The COSE algorithm of a supported key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoseAlgorithm {
    /// ECDSA with P-256 and SHA-256 (-7).
    Es256,
    /// Ed25519 (-8).
    EdDsa,
}

impl CoseAlgorithm {
    /// The COSE identifier.
    pub fn id(self) -> i64 {
        match self {
            CoseAlgorithm::Es256 => -7,
            CoseAlgorithm::EdDsa => -8,
        }
    }
}

fn key_param(key: &CoseKey, label: i64) -> Option<&ciborium::Value> {
    key.params
        .iter()
        .find(|(l, _)| *l == Label::Int(label))
        .map(|(_, v)| v)
}

fn param_bytes(key: &CoseKey, label: i64) -> Result<&[u8], WebauthnError> {
    key_param(key, label)
        .and_then(|v| v.as_bytes())
        .map(Vec::as_slice)
        .ok_or(WebauthnError::UnsupportedKey)
}

fn param_int(key: &CoseKey, label: i64) -> Option<i64> {
    key_param(key, label)
        .and_then(|v| v.as_integer())
        .and_then(|i| i64::try_from(i).ok())
}

fn parse_public_key(cose: &[u8]) -> Result<(PublicKey, CoseAlgorithm), WebauthnError> {
    let key = CoseKey::from_slice(cose).map_err(|_| WebauthnError::Malformed("COSE key"))?;
    let alg = match &key.alg {
        Some(RegisteredLabelWithPrivate::Assigned(a)) => Some(a.to_i64()),
        _ => None,
    };
    let crv = param_int(&key, iana::Ec2KeyParameter::Crv.to_i64());
    if key.kty == KeyType::Assigned(iana::KeyType::EC2)
        && alg == Some(iana::Algorithm::ES256.to_i64())
        && crv == Some(iana::EllipticCurve::P_256.to_i64())
    {
        let x = param_bytes(&key, iana::Ec2KeyParameter::X.to_i64())?;
        let y = param_bytes(&key, iana::Ec2KeyParameter::Y.to_i64())?;
        if x.len() != 32 || y.len() != 32 {
            return Err(WebauthnError::UnsupportedKey);
        }
        let mut sec1 = Vec::with_capacity(65);
        sec1.push(0x04);
        sec1.extend_from_slice(x);
        sec1.extend_from_slice(y);
        let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
            .map_err(|_| WebauthnError::UnsupportedKey)?;
        return Ok((PublicKey::Es256(vk), CoseAlgorithm::Es256));
    }
    let okp_crv = param_int(&key, iana::OkpKeyParameter::Crv.to_i64());
    if key.kty == KeyType::Assigned(iana::KeyType::OKP)
        && alg == Some(iana::Algorithm::EdDSA.to_i64())
        && okp_crv == Some(iana::EllipticCurve::Ed25519.to_i64())
    {
        let x = param_bytes(&key, iana::OkpKeyParameter::X.to_i64())?;
        let x: &[u8; 32] = x.try_into().map_err(|_| WebauthnError::UnsupportedKey)?;
        let vk = ed25519_dalek::VerifyingKey::from_bytes(x)
            .map_err(|_| WebauthnError::UnsupportedKey)?;
        return Ok((PublicKey::EdDsa(vk), CoseAlgorithm::EdDsa));
    }
    Err(WebauthnError::UnsupportedKey)
}

fn verify_signature(
    key: &PublicKey,
    message: &[u8],
    signature: &[u8],
) -> Result<(), WebauthnError> {
    match key {
        PublicKey::Es256(vk) => {
            use p256::ecdsa::signature::Verifier as _;
            let sig = p256::ecdsa::Signature::from_der(signature)
                .map_err(|_| WebauthnError::BadSignature)?;
            vk.verify(message, &sig)
                .map_err(|_| WebauthnError::BadSignature)
        }
        PublicKey::EdDsa(vk) => {
            let sig: &[u8; 64] = signature
                .try_into()
                .map_err(|_| WebauthnError::BadSignature)?;
            let sig = ed25519_dalek::Signature::from_bytes(sig);
            vk.verify_strict(message, &sig)
                .map_err(|_| WebauthnError::BadSignature)
        }
    }
}

/// A credential that passed registration, to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCredential {
    /// The credential id.
    pub credential_id: Vec<u8>,
    /// The COSE_Key, as the authenticator sent it.
    pub public_key: Vec<u8>,
    /// Its algorithm.
    pub algorithm: CoseAlgorithm,
    /// The initial signature counter.
    pub sign_count: u32,
    /// The AAGUID of the authenticator model (all zero with `none` attestation, usually).
    pub aaguid: [u8; 16],
    /// UV flag.
    pub user_verified: bool,
    /// BE flag: the credential may be synced (a "multi-device" passkey).
    pub backup_eligible: bool,
    /// BS flag.
    pub backed_up: bool,
}

/// Registration (§7.1): checks `clientDataJSON` and the attestation object (format `none`)
/// against `challenge`, and returns the new credential.
pub fn verify_registration(
    rp: &RelyingParty,
    challenge: &[u8],
    client_data_json: &[u8],
    attestation_object: &[u8],
    require_uv: bool,
) -> Result<NewCredential, WebauthnError> {
    check_client_data(rp, Ceremony::Create, challenge, client_data_json)?;
    if attestation_object.len() > MAX_AUTHENTICATOR_DATA {
        return Err(WebauthnError::Malformed("attestation object too long"));
    }
    let value: ciborium::Value = ciborium::from_reader(attestation_object)
        .map_err(|_| WebauthnError::Malformed("attestation object"))?;
    let map = value
        .as_map()
        .ok_or(WebauthnError::Malformed("attestation object"))?;
    let field = |name: &str| {
        map.iter()
            .find(|(k, _)| k.as_text() == Some(name))
            .map(|(_, v)| v)
    };
    let fmt = field("fmt")
        .and_then(|v| v.as_text())
        .ok_or(WebauthnError::Malformed("attestation fmt"))?;
    let auth_bytes = field("authData")
        .and_then(|v| v.as_bytes())
        .ok_or(WebauthnError::Malformed("attestation authData"))?;
    if fmt != "none" {
        return Err(WebauthnError::UnsupportedAttestation);
    }
    if !field("attStmt")
        .and_then(|v| v.as_map())
        .is_some_and(|m| m.is_empty())
    {
        return Err(WebauthnError::Malformed("attStmt of none"));
    }
    let auth = parse_auth_data(auth_bytes)?;
    check_flags(rp, &auth, require_uv)?;
    let (aaguid, credential_id, key) = auth
        .attested
        .ok_or(WebauthnError::Malformed("no attested credential data"))?;
    let (_, algorithm) = parse_public_key(key)?;
    let mut guid = [0u8; 16];
    guid.copy_from_slice(aaguid);
    Ok(NewCredential {
        credential_id: credential_id.to_vec(),
        public_key: key.to_vec(),
        algorithm,
        sign_count: auth.sign_count,
        aaguid: guid,
        user_verified: auth.flags & FLAG_UV != 0,
        backup_eligible: auth.flags & FLAG_BE != 0,
        backed_up: auth.flags & FLAG_BS != 0,
    })
}

/// An assertion that passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedAssertion {
    /// The new signature counter (store it).
    pub sign_count: u32,
    /// UV flag.
    pub user_verified: bool,
    /// BE flag.
    pub backup_eligible: bool,
    /// BS flag.
    pub backed_up: bool,
}

/// Authentication (§7.2): checks `clientDataJSON`, the authenticator data and the signature with
/// the stored COSE key, then the counter against `stored_sign_count`.
#[allow(clippy::too_many_arguments)]
pub fn verify_assertion(
    rp: &RelyingParty,
    challenge: &[u8],
    client_data_json: &[u8],
    authenticator_data: &[u8],
    signature: &[u8],
    public_key: &[u8],
    stored_sign_count: u32,
    require_uv: bool,
) -> Result<VerifiedAssertion, WebauthnError> {
    check_client_data(rp, Ceremony::Get, challenge, client_data_json)?;
    let auth = parse_auth_data(authenticator_data)?;
    check_flags(rp, &auth, require_uv)?;
    let (key, _) = parse_public_key(public_key)?;
    let mut message = Vec::with_capacity(authenticator_data.len() + 32);
    message.extend_from_slice(authenticator_data);
    message.extend_from_slice(&Sha256::digest(client_data_json));
    verify_signature(&key, &message, signature)?;
    if (stored_sign_count != 0 || auth.sign_count != 0) && auth.sign_count <= stored_sign_count {
        return Err(WebauthnError::CounterRegression {
            stored: stored_sign_count,
            presented: auth.sign_count,
        });
    }
    Ok(VerifiedAssertion {
        sign_count: auth.sign_count,
        user_verified: auth.flags & FLAG_UV != 0,
        backup_eligible: auth.flags & FLAG_BE != 0,
        backed_up: auth.flags & FLAG_BS != 0,
    })
}

#[cfg(any(test, feature = "test-support"))]
pub mod testing {
    //! A software authenticator (feature `test-support`): builds the bytes a browser and an
    //! authenticator would send, for tests here and in the crates above.

    use super::*;
    use ciborium::Value;
    use p256::ecdsa::signature::Signer as _;

    pub const ORIGIN: &str = "https://auth.example.com";

    pub fn rp() -> RelyingParty {
        RelyingParty::from_origin(ORIGIN).expect("rp")
    }

    /// Which key the authenticator holds.
    #[derive(Debug)]
    pub enum Key {
        P256(p256::ecdsa::SigningKey),
        Ed(ed25519_dalek::SigningKey),
    }

    #[derive(Debug)]
    pub struct Authenticator {
        pub key: Key,
        pub credential_id: Vec<u8>,
        pub rp_id: String,
        pub origin: String,
        pub flags: u8,
        pub counter: u32,
    }

    impl Authenticator {
        pub fn p256(seed: u8) -> Self {
            let key = p256::ecdsa::SigningKey::from_slice(&[seed.max(1); 32]).expect("key");
            Self::with(Key::P256(key), seed)
        }

        pub fn ed25519(seed: u8) -> Self {
            Self::with(
                Key::Ed(ed25519_dalek::SigningKey::from_bytes(&[seed; 32])),
                seed,
            )
        }

        fn with(key: Key, seed: u8) -> Self {
            Self {
                key,
                credential_id: vec![seed; 16],
                rp_id: "auth.example.com".into(),
                origin: ORIGIN.into(),
                flags: FLAG_UP | FLAG_UV,
                counter: 0,
            }
        }

        pub fn cose_key(&self) -> Vec<u8> {
            let pairs: Vec<(Value, Value)> = match &self.key {
                Key::P256(k) => {
                    let point = k.verifying_key().to_sec1_point(false);
                    let bytes = point.as_bytes();
                    vec![
                        (Value::from(1), Value::from(2)),
                        (Value::from(3), Value::from(-7)),
                        (Value::from(-1), Value::from(1)),
                        (Value::from(-2), Value::Bytes(bytes[1..33].to_vec())),
                        (Value::from(-3), Value::Bytes(bytes[33..65].to_vec())),
                    ]
                }
                Key::Ed(k) => vec![
                    (Value::from(1), Value::from(1)),
                    (Value::from(3), Value::from(-8)),
                    (Value::from(-1), Value::from(6)),
                    (
                        Value::from(-2),
                        Value::Bytes(k.verifying_key().to_bytes().to_vec()),
                    ),
                ],
            };
            let mut out = Vec::new();
            ciborium::into_writer(&Value::Map(pairs), &mut out).expect("cbor");
            out
        }

        pub fn client_data(&self, kind: &str, challenge: &[u8]) -> Vec<u8> {
            serde_json::to_vec(&serde_json::json!({
                "type": kind,
                "challenge": URL_SAFE_NO_PAD.encode(challenge),
                "origin": self.origin,
                "crossOrigin": false,
            }))
            .expect("json")
        }

        fn auth_data(&self, attested: bool) -> Vec<u8> {
            let mut out = Sha256::digest(self.rp_id.as_bytes()).to_vec();
            out.push(self.flags | if attested { FLAG_AT } else { 0 });
            out.extend_from_slice(&self.counter.to_be_bytes());
            if attested {
                out.extend_from_slice(&[0u8; 16]);
                let len = u16::try_from(self.credential_id.len()).expect("len");
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&self.credential_id);
                out.extend_from_slice(&self.cose_key());
            }
            out
        }

        /// (clientDataJSON, attestationObject) of `navigator.credentials.create`.
        pub fn create(&self, challenge: &[u8]) -> (Vec<u8>, Vec<u8>) {
            let object = Value::Map(vec![
                (Value::from("fmt"), Value::from("none")),
                (Value::from("attStmt"), Value::Map(vec![])),
                (Value::from("authData"), Value::Bytes(self.auth_data(true))),
            ]);
            let mut out = Vec::new();
            ciborium::into_writer(&object, &mut out).expect("cbor");
            (self.client_data("webauthn.create", challenge), out)
        }

        /// (clientDataJSON, authenticatorData, signature) of `navigator.credentials.get`; moves
        /// the counter on.
        pub fn get(&mut self, challenge: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
            self.counter += 1;
            let client = self.client_data("webauthn.get", challenge);
            let auth = self.auth_data(false);
            let sig = self.sign(&auth, &client);
            (client, auth, sig)
        }

        pub fn sign(&self, auth: &[u8], client: &[u8]) -> Vec<u8> {
            let mut message = auth.to_vec();
            message.extend_from_slice(&Sha256::digest(client));
            match &self.key {
                Key::P256(k) => {
                    let sig: p256::ecdsa::Signature = k.sign(&message);
                    sig.to_der().as_bytes().to_vec()
                }
                Key::Ed(k) => {
                    use ed25519_dalek::Signer as _;
                    k.sign(&message).to_bytes().to_vec()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    const CHALLENGE: [u8; 32] = [7; 32];

    fn register(a: &Authenticator) -> Result<NewCredential, WebauthnError> {
        let (client, object) = a.create(&CHALLENGE);
        verify_registration(&rp(), &CHALLENGE, &client, &object, true)
    }

    fn assert_with(
        a: &mut Authenticator,
        key: &[u8],
        stored: u32,
    ) -> Result<VerifiedAssertion, WebauthnError> {
        let (client, auth, sig) = a.get(&CHALLENGE);
        verify_assertion(&rp(), &CHALLENGE, &client, &auth, &sig, key, stored, true)
    }

    #[test]
    fn registration_refuses_wrong_origin() {
        let mut a = Authenticator::p256(1);
        a.origin = "https://auth.example.com.evil.test".into();
        assert_eq!(register(&a), Err(WebauthnError::WrongOrigin));
        a.origin = "http://auth.example.com".into();
        assert_eq!(register(&a), Err(WebauthnError::WrongOrigin));
    }

    #[test]
    fn registration_refuses_wrong_challenge() {
        let a = Authenticator::p256(1);
        let (client, object) = a.create(&[8; 32]);
        assert_eq!(
            verify_registration(&rp(), &CHALLENGE, &client, &object, true),
            Err(WebauthnError::WrongChallenge)
        );
    }

    #[test]
    fn registration_refuses_wrong_rp_id() {
        let mut a = Authenticator::p256(1);
        a.rp_id = "example.com".into();
        assert_eq!(register(&a), Err(WebauthnError::WrongRpId));
    }

    #[test]
    fn registration_refuses_missing_user_presence_and_verification() {
        let mut a = Authenticator::p256(1);
        a.flags = FLAG_UV;
        assert_eq!(register(&a), Err(WebauthnError::UserNotPresent));
        a.flags = FLAG_UP;
        assert_eq!(register(&a), Err(WebauthnError::UserNotVerified));
        let (client, object) = a.create(&CHALLENGE);
        assert!(verify_registration(&rp(), &CHALLENGE, &client, &object, false).is_ok());
    }

    #[test]
    fn registration_refuses_wrong_type_and_attestation_formats() {
        let a = Authenticator::p256(1);
        let (_, object) = a.create(&CHALLENGE);
        let client = a.client_data("webauthn.get", &CHALLENGE);
        assert_eq!(
            verify_registration(&rp(), &CHALLENGE, &client, &object, true),
            Err(WebauthnError::WrongType)
        );
        let client = a.client_data("webauthn.create", &CHALLENGE);
        let mut value: ciborium::Value = ciborium::from_reader(&object[..]).expect("cbor");
        if let ciborium::Value::Map(m) = &mut value {
            m[0].1 = ciborium::Value::from("packed");
        }
        let mut packed = Vec::new();
        ciborium::into_writer(&value, &mut packed).expect("cbor");
        assert_eq!(
            verify_registration(&rp(), &CHALLENGE, &client, &packed, true),
            Err(WebauthnError::UnsupportedAttestation)
        );
        assert!(matches!(
            verify_registration(&rp(), &CHALLENGE, &client, b"\xff\x00", true),
            Err(WebauthnError::Malformed(_))
        ));
        assert!(matches!(
            verify_registration(&rp(), &CHALLENGE, b"{not json", &object, true),
            Err(WebauthnError::Malformed(_))
        ));
    }

    #[test]
    fn assertion_refuses_bad_signature() {
        let mut a = Authenticator::p256(1);
        let key = register(&a).expect("register").public_key;
        let (client, auth, mut sig) = a.get(&CHALLENGE);
        let last = sig.len() - 1;
        sig[last] ^= 1;
        assert_eq!(
            verify_assertion(&rp(), &CHALLENGE, &client, &auth, &sig, &key, 0, true),
            Err(WebauthnError::BadSignature)
        );
        // Signed by another key.
        let mut other = Authenticator::p256(2);
        assert_eq!(
            assert_with(&mut other, &key, 0),
            Err(WebauthnError::BadSignature)
        );
        // Signature over different client data.
        let (_, auth, sig) = a.get(&CHALLENGE);
        let client = a.client_data("webauthn.get", &CHALLENGE);
        let mut tampered = client.clone();
        tampered.push(b' ');
        assert_eq!(
            verify_assertion(&rp(), &CHALLENGE, &tampered, &auth, &sig, &key, 0, true),
            Err(WebauthnError::BadSignature)
        );
    }

    #[test]
    fn assertion_refuses_wrong_origin_challenge_rp_and_presence() {
        let mut a = Authenticator::p256(1);
        let key = register(&a).expect("register").public_key;
        a.origin = "https://evil.example".into();
        assert_eq!(
            assert_with(&mut a, &key, 0),
            Err(WebauthnError::WrongOrigin)
        );
        a.origin = ORIGIN.into();
        let (client, auth, sig) = a.get(&[9; 32]);
        assert_eq!(
            verify_assertion(&rp(), &CHALLENGE, &client, &auth, &sig, &key, 0, true),
            Err(WebauthnError::WrongChallenge)
        );
        a.rp_id = "evil.example".into();
        assert_eq!(assert_with(&mut a, &key, 0), Err(WebauthnError::WrongRpId));
        a.rp_id = "auth.example.com".into();
        a.flags = FLAG_UV;
        assert_eq!(
            assert_with(&mut a, &key, 0),
            Err(WebauthnError::UserNotPresent)
        );
        a.flags = FLAG_UP;
        assert_eq!(
            assert_with(&mut a, &key, 0),
            Err(WebauthnError::UserNotVerified)
        );
        let client = a.client_data("webauthn.create", &CHALLENGE);
        let (_, auth, _) = a.get(&CHALLENGE);
        let sig = a.sign(&auth, &client);
        assert_eq!(
            verify_assertion(&rp(), &CHALLENGE, &client, &auth, &sig, &key, 0, false),
            Err(WebauthnError::WrongType)
        );
    }

    #[test]
    fn assertion_refuses_counter_regression() {
        let mut a = Authenticator::p256(1);
        let key = register(&a).expect("register").public_key;
        a.counter = 9; // next assertion carries 10
        assert_eq!(
            assert_with(&mut a, &key, 10),
            Err(WebauthnError::CounterRegression {
                stored: 10,
                presented: 10
            })
        );
        a.counter = 4;
        assert_eq!(
            assert_with(&mut a, &key, 10),
            Err(WebauthnError::CounterRegression {
                stored: 10,
                presented: 5
            })
        );
        // Authenticators without a counter always send 0: accepted.
        let (client, mut auth, _) = a.get(&CHALLENGE);
        auth[33..37].copy_from_slice(&[0; 4]);
        let sig = a.sign(&auth, &client);
        assert!(verify_assertion(&rp(), &CHALLENGE, &client, &auth, &sig, &key, 0, true).is_ok());
        // A counter going from 0 to non-zero is fine, and so is a greater one.
        a.counter = 10;
        assert_eq!(assert_with(&mut a, &key, 10).map(|v| v.sign_count), Ok(11));
        assert_eq!(assert_with(&mut a, &key, 0).map(|v| v.sign_count), Ok(12));
    }

    #[test]
    fn es256_registration_and_assertion_round_trip() {
        let mut a = Authenticator::p256(3);
        let cred = register(&a).expect("register");
        assert_eq!(cred.credential_id, vec![3; 16]);
        assert_eq!(cred.algorithm, CoseAlgorithm::Es256);
        assert!(cred.user_verified && !cred.backup_eligible);
        let v = assert_with(&mut a, &cred.public_key, cred.sign_count).expect("assert");
        assert_eq!(v.sign_count, 1);
        assert!(v.user_verified);
    }

    #[test]
    fn eddsa_registration_and_assertion_round_trip() {
        let mut a = Authenticator::ed25519(4);
        let cred = register(&a).expect("register");
        assert_eq!(cred.algorithm, CoseAlgorithm::EdDsa);
        assert!(assert_with(&mut a, &cred.public_key, 0).is_ok());
        let (client, auth, mut sig) = a.get(&CHALLENGE);
        sig[0] ^= 0x80;
        assert_eq!(
            verify_assertion(
                &rp(),
                &CHALLENGE,
                &client,
                &auth,
                &sig,
                &cred.public_key,
                0,
                true
            ),
            Err(WebauthnError::BadSignature)
        );
    }

    #[test]
    fn relying_party_from_origin() {
        let rp = RelyingParty::from_origin("https://Auth.Example.com:8443").expect("rp");
        assert_eq!(rp.id(), "auth.example.com");
        assert_eq!(rp.origin(), "https://auth.example.com:8443");
        let local = RelyingParty::from_origin("http://localhost:3000").expect("localhost");
        assert_eq!(local.id(), "localhost");
        for bad in [
            "http://auth.example.com",
            "https://127.0.0.1:8443",
            "http://127.0.0.1:3000",
            "https://[::1]",
            "https://",
            "auth.example.com",
            "https://a.example/path",
        ] {
            assert!(RelyingParty::from_origin(bad).is_none(), "{bad}");
        }
    }
}
