//! The verification policy.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use serde::de::DeserializeOwned;
use serde_json::Value;
use time::{Duration, OffsetDateTime};

use crate::Algorithm;

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A key to verify with.
#[derive(Clone)]
pub struct VerificationKey {
    /// The only algorithm this key verifies.
    pub algorithm: Algorithm,
    /// The public key.
    pub key: Arc<DecodingKey>,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Where verification keys come from: our own keys ([`crate::PublishedKeys`]), a client's
/// registered JWK Set ([`crate::JwkSetResolver`]), later a remote JWKS in the gateway.
pub trait KeyResolver {
    /// The key with this `kid`.
    fn resolve(&self, kid: &str) -> Option<VerificationKey>;
}

/// What a token must satisfy.
#[derive(Debug, Clone)]
pub struct Expectation<'a> {
    /// `iss`, exactly.
    pub issuer: &'a str,
    /// `aud` must contain one of these; empty: not checked.
    pub audiences: &'a [&'a str],
    /// Header `typ` (case-insensitive, with or without `application/`); `None`: not checked.
    pub typ: Option<&'a str>,
    /// The verifier's time.
    pub now: OffsetDateTime,
    /// Tolerance for `exp` and `nbf`.
    pub leeway: Duration,
    /// Whether `exp` must be present.
    pub require_exp: bool,
    /// Whether `exp`/`nbf` are checked at all (`false` for ID token hints, which are often old).
    pub check_expiry: bool,
}

/// A verified token.
#[derive(Debug, Clone)]
pub struct Verified<T> {
    /// The key that signed it.
    pub kid: String,
    /// Its algorithm.
    pub algorithm: Algorithm,
    /// The claims.
    pub claims: T,
}

/// Why a token was refused. Each has a stable [`code`](VerifyError::code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("token is too large")]
    TooLarge,
    /// Not a JWS compact serialization with JSON header and claims.
    #[error("token is malformed")]
    Malformed,
    /// `none`, HMAC or anything but EdDSA/ES256/RS256.
    #[error("token algorithm is not accepted")]
    UnsupportedAlgorithm,
    /// No `kid`, or not one of the resolver's keys.
    #[error("token key is unknown")]
    UnknownKey,
    /// Header `alg` differs from the key's algorithm.
    #[error("token algorithm does not match its key")]
    AlgorithmMismatch,
    /// The signature does not verify.
    #[error("token signature is invalid")]
    BadSignature,
    /// At or past `exp` (plus leeway), or `exp` missing when required.
    #[error("token expired")]
    Expired,
    /// Before `nbf` (minus leeway).
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iss` differs.
    #[error("token issuer is wrong")]
    WrongIssuer,
    /// `aud` names none of the expected audiences.
    #[error("token audience is wrong")]
    WrongAudience,
    /// Header `typ` differs.
    #[error("token type is wrong")]
    WrongType,
}

impl VerifyError {
    /// A stable machine code.
    pub fn code(self) -> &'static str {
        match self {
            VerifyError::TooLarge => "token_too_large",
            VerifyError::Malformed => "token_malformed",
            VerifyError::UnsupportedAlgorithm => "token_algorithm_unsupported",
            VerifyError::UnknownKey => "token_key_unknown",
            VerifyError::AlgorithmMismatch => "token_algorithm_mismatch",
            VerifyError::BadSignature => "token_signature_invalid",
            VerifyError::Expired => "token_expired",
            VerifyError::NotYetValid => "token_not_yet_valid",
            VerifyError::WrongIssuer => "token_issuer_wrong",
            VerifyError::WrongAudience => "token_audience_wrong",
            VerifyError::WrongType => "token_type_wrong",
        }
    }
}

/// Verifies `token` against `resolver` and `expect`, then deserializes its claims.
pub fn verify<T: DeserializeOwned>(
    token: &str,
    resolver: &dyn KeyResolver,
    expect: &Expectation<'_>,
) -> Result<Verified<T>, VerifyError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(VerifyError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::Malformed);
    };
    let header: Value = URL_SAFE_NO_PAD
        .decode(header_b64)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .filter(Value::is_object)
        .ok_or(VerifyError::Malformed)?;
    let algorithm: Algorithm = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(VerifyError::Malformed)?
        .parse()
        .map_err(|_| VerifyError::UnsupportedAlgorithm)?;
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or(VerifyError::UnknownKey)?;
    let key = resolver.resolve(kid).ok_or(VerifyError::UnknownKey)?;
    if key.algorithm != algorithm {
        return Err(VerifyError::AlgorithmMismatch);
    }
    if let Some(expected) = expect.typ {
        let typ = header.get("typ").and_then(Value::as_str).unwrap_or("");
        if !same_media_type(typ, expected) {
            return Err(VerifyError::WrongType);
        }
    }

    // Three parts were checked above, so both splits succeed.
    let (signing_input, signature_b64) = token.rsplit_once('.').ok_or(VerifyError::Malformed)?;
    let payload_b64 = signing_input
        .split_once('.')
        .map(|(_, payload)| payload)
        .ok_or(VerifyError::Malformed)?;
    verify_signature(&key, signing_input.as_bytes(), signature_b64)?;
    let claims: Value = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(VerifyError::Malformed)?;
    let object = claims.as_object().ok_or(VerifyError::Malformed)?;
    if object.get("iss").and_then(Value::as_str) != Some(expect.issuer) {
        return Err(VerifyError::WrongIssuer);
    }
    if !expect.audiences.is_empty() {
        let matches = match object.get("aud") {
            Some(Value::String(one)) => expect.audiences.contains(&one.as_str()),
            Some(Value::Array(many)) => many
                .iter()
                .filter_map(Value::as_str)
                .any(|a| expect.audiences.contains(&a)),
            _ => false,
        };
        if !matches {
            return Err(VerifyError::WrongAudience);
        }
    }
    if expect.check_expiry {
        let now = expect.now.unix_timestamp();
        let leeway = expect.leeway.whole_seconds();
        match object.get("exp") {
            Some(exp) => {
                let exp = exp.as_i64().ok_or(VerifyError::Malformed)?;
                // RFC 7519 §4.1.4: valid only *before* `exp`.
                if now >= exp.saturating_add(leeway) {
                    return Err(VerifyError::Expired);
                }
            }
            None if expect.require_exp => return Err(VerifyError::Expired),
            None => {}
        }
        if let Some(nbf) = object.get("nbf") {
            let nbf = nbf.as_i64().ok_or(VerifyError::Malformed)?;
            if now < nbf.saturating_sub(leeway) {
                return Err(VerifyError::NotYetValid);
            }
        }
    }
    let claims = serde_json::from_value(claims).map_err(|_| VerifyError::Malformed)?;
    Ok(Verified {
        kid: kid.to_owned(),
        algorithm,
        claims,
    })
}

/// Checks a JWS signature: `signature_b64` (the compact serialization's third part, base64url
/// without padding) over `message` (its first two parts joined by `.`) with `key`, in the key's
/// one algorithm. [`verify`] checks every token's signature with this function and nothing else;
/// it is public so the signature check can be driven with test vectors (Wycheproof) and fuzzed
/// on its own.
///
/// Refuses a signature that is not base64url ([`VerifyError::Malformed`]) or does not verify
/// ([`VerifyError::BadSignature`]); a key that the crypto provider cannot use is `Malformed`.
pub fn verify_signature(
    key: &VerificationKey,
    message: &[u8],
    signature_b64: &str,
) -> Result<(), VerifyError> {
    match jsonwebtoken::crypto::verify(
        signature_b64,
        message,
        &key.key,
        key.algorithm.jsonwebtoken(),
    ) {
        Ok(true) => Ok(()),
        Ok(false) => Err(VerifyError::BadSignature),
        Err(err) => Err(match err.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => VerifyError::BadSignature,
            _ => VerifyError::Malformed,
        }),
    }
}

/// RFC 8725 §3.11 / RFC 9068 §4: `typ` values compare case-insensitively, and `at+jwt` equals
/// `application/at+jwt`.
fn same_media_type(presented: &str, expected: &str) -> bool {
    let strip = |s: &str| -> String {
        let lower = s.to_ascii_lowercase();
        lower
            .strip_prefix("application/")
            .map(str::to_owned)
            .unwrap_or(lower)
    };
    strip(presented) == strip(expected)
}
