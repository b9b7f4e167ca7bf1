//! DPoP proofs (RFC 9449 §4): the one place a key carried in a token's own header is used, and
//! only to check that the proof was signed by that key. What the key may do is decided by the
//! binding of a token to its thumbprint (`cnf.jkt`, [`jwk_thumbprint`]), which callers compare.
//!
//! [`verify_proof`] checks everything RFC 9449 §4.3 asks that needs no state: one JWS with
//! `typ` `dpop+jwt`, an asymmetric algorithm this crate accepts (EdDSA, ES256, RS256; never
//! `none` or HMAC), a public JWK in the header that the signature verifies against, `jti`,
//! `htm` equal to the request's method, `htu` equal to its URI without query and fragment
//! (scheme and host compared case-insensitively, default ports ignored), `iat` neither older
//! than the allowed age nor later than the leeway, the server's `nonce` when one is required,
//! and `ath` (the SHA-256 of the access token) when the proof accompanies one. What needs state
//! is the caller's: a `jti` must be spent once per proof lifetime, across replicas.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::verify::{VerificationKey, verify_signature};
use crate::{Algorithm, jwk};

/// Proofs longer than this are refused before any parsing.
pub const MAX_PROOF_BYTES: usize = 8 * 1024;
/// The longest `jti` accepted (the caller stores it).
pub const MAX_JTI_BYTES: usize = 256;
/// The longest `nonce` handed to the server's check.
pub const MAX_NONCE_BYTES: usize = 256;

/// What a proof must match.
#[derive(Clone, Copy)]
pub struct ProofExpectation<'a> {
    /// The request's method (`POST`, `GET`, ...).
    pub htm: &'a str,
    /// The request's URI as the server is reached (`https://id.example.com/oauth2/token`).
    pub htu: &'a str,
    /// The verifier's time.
    pub now: OffsetDateTime,
    /// How old `iat` may be.
    pub max_age: Duration,
    /// How far ahead of `now` `iat` may be (clock skew).
    pub leeway: Duration,
    /// When the server requires a nonce: whether it accepts the proof's (the server's nonces
    /// rotate, so more than one value may stand at a time). A proof without one is refused.
    pub nonce: Option<&'a (dyn Fn(&str) -> bool + Sync)>,
    /// The access token presented with the proof (resource requests), for `ath`.
    pub access_token: Option<&'a str>,
}

impl std::fmt::Debug for ProofExpectation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofExpectation")
            .field("htm", &self.htm)
            .field("htu", &self.htu)
            .field("now", &self.now)
            .field("max_age", &self.max_age)
            .field("leeway", &self.leeway)
            .field("nonce_required", &self.nonce.is_some())
            .field("access_token", &self.access_token.map(|_| "[redacted]"))
            .finish()
    }
}

/// A verified proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The JWK SHA-256 thumbprint of its key (RFC 7638), base64url: what `cnf.jkt` binds to.
    pub jkt: String,
    /// Its `jti`, to be spent once.
    pub jti: String,
    /// Its `iat`.
    pub iat: OffsetDateTime,
    /// Its algorithm.
    pub algorithm: Algorithm,
}

/// Why a proof was refused. Each has a stable [`reason`](DpopError::reason); the OAuth error
/// code is [`code`](DpopError::code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    /// Longer than [`MAX_PROOF_BYTES`].
    #[error("the DPoP proof is too large")]
    TooLarge,
    /// Not a JWS compact serialization with JSON header and claims, or a claim of the wrong
    /// type.
    #[error("the DPoP proof is malformed")]
    Malformed,
    /// `typ` is not `dpop+jwt`.
    #[error("the DPoP proof's typ is not dpop+jwt")]
    WrongType,
    /// `none`, HMAC or anything but EdDSA/ES256/RS256.
    #[error("the DPoP proof's algorithm is not accepted")]
    UnsupportedAlgorithm,
    /// No `jwk`, a private or symmetric one, or one that does not fit `alg`.
    #[error("the DPoP proof's key is not an accepted public key")]
    InvalidKey,
    /// The signature does not verify with the header's key.
    #[error("the DPoP proof's signature is invalid")]
    BadSignature,
    /// `jti`, `htm`, `htu` or `iat` is missing (or `jti` too long).
    #[error("the DPoP proof lacks a required claim")]
    MissingClaim,
    /// `htm` is not the request's method.
    #[error("the DPoP proof is for another method")]
    WrongMethod,
    /// `htu` is not the request's URI.
    #[error("the DPoP proof is for another URI")]
    WrongUri,
    /// `iat` is older than allowed.
    #[error("the DPoP proof is too old")]
    Stale,
    /// `iat` is in the future beyond the leeway.
    #[error("the DPoP proof is issued in the future")]
    IssuedInFuture,
    /// The server requires a nonce and the proof has none, or another one.
    #[error("the DPoP proof must carry the server's current nonce")]
    NonceRequired,
    /// An access token was presented and `ath` is missing or not its hash.
    #[error("the DPoP proof is not for this access token")]
    WrongAccessToken,
}

impl DpopError {
    /// A stable machine reason.
    pub fn reason(self) -> &'static str {
        match self {
            DpopError::TooLarge => "dpop_proof_too_large",
            DpopError::Malformed => "dpop_proof_malformed",
            DpopError::WrongType => "dpop_proof_type_wrong",
            DpopError::UnsupportedAlgorithm => "dpop_proof_algorithm_unsupported",
            DpopError::InvalidKey => "dpop_proof_key_invalid",
            DpopError::BadSignature => "dpop_proof_signature_invalid",
            DpopError::MissingClaim => "dpop_proof_claim_missing",
            DpopError::WrongMethod => "dpop_proof_htm_wrong",
            DpopError::WrongUri => "dpop_proof_htu_wrong",
            DpopError::Stale => "dpop_proof_stale",
            DpopError::IssuedInFuture => "dpop_proof_iat_future",
            DpopError::NonceRequired => "dpop_nonce_required",
            DpopError::WrongAccessToken => "dpop_proof_ath_wrong",
        }
    }

    /// The OAuth error code (RFC 9449 §5, §7.1, §8): `use_dpop_nonce` when the proof lacks the
    /// server's nonce, `invalid_dpop_proof` otherwise.
    pub fn code(self) -> &'static str {
        match self {
            DpopError::NonceRequired => "use_dpop_nonce",
            _ => "invalid_dpop_proof",
        }
    }
}

/// Verifies a DPoP proof against the request it came with (see the module documentation).
pub fn verify_proof(proof: &str, expect: &ProofExpectation<'_>) -> Result<Proof, DpopError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(DpopError::TooLarge);
    }
    let (signing_input, signature_b64) = proof.rsplit_once('.').ok_or(DpopError::Malformed)?;
    let (header_b64, payload_b64) = signing_input.split_once('.').ok_or(DpopError::Malformed)?;
    if payload_b64.contains('.') {
        return Err(DpopError::Malformed);
    }
    let decode = |part: &str| -> Result<Value, DpopError> {
        URL_SAFE_NO_PAD
            .decode(part)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .filter(Value::is_object)
            .ok_or(DpopError::Malformed)
    };
    let header = decode(header_b64)?;
    if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(DpopError::WrongType);
    }
    let algorithm: Algorithm = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(DpopError::Malformed)?
        .parse()
        .map_err(|_| DpopError::UnsupportedAlgorithm)?;
    let jwk = header.get("jwk").ok_or(DpopError::InvalidKey)?;
    let (key_algorithm, decoding) = jwk::public_key(jwk).map_err(|_| DpopError::InvalidKey)?;
    if key_algorithm != algorithm {
        return Err(DpopError::InvalidKey);
    }
    let jkt = jwk_thumbprint(jwk).ok_or(DpopError::InvalidKey)?;
    let key = VerificationKey {
        algorithm,
        key: std::sync::Arc::new(decoding),
    };
    verify_signature(&key, signing_input.as_bytes(), signature_b64).map_err(|e| match e {
        crate::VerifyError::BadSignature => DpopError::BadSignature,
        _ => DpopError::Malformed,
    })?;
    let claims = decode(payload_b64)?;
    let text = |name: &str| -> Result<&str, DpopError> {
        match claims.get(name) {
            Some(Value::String(value)) => Ok(value.as_str()),
            Some(_) => Err(DpopError::Malformed),
            None => Err(DpopError::MissingClaim),
        }
    };
    let jti = text("jti")?;
    if jti.is_empty() || jti.len() > MAX_JTI_BYTES {
        return Err(DpopError::MissingClaim);
    }
    if text("htm")? != expect.htm {
        return Err(DpopError::WrongMethod);
    }
    if !same_target(text("htu")?, expect.htu) {
        return Err(DpopError::WrongUri);
    }
    let iat = match claims.get("iat") {
        Some(Value::Number(n)) => n.as_i64().ok_or(DpopError::Malformed)?,
        Some(_) => return Err(DpopError::Malformed),
        None => return Err(DpopError::MissingClaim),
    };
    let iat = OffsetDateTime::from_unix_timestamp(iat).map_err(|_| DpopError::Malformed)?;
    if iat > expect.now + expect.leeway {
        return Err(DpopError::IssuedInFuture);
    }
    if iat < expect.now - expect.max_age {
        return Err(DpopError::Stale);
    }
    if let Some(accepts) = expect.nonce
        && !claims
            .get("nonce")
            .and_then(Value::as_str)
            .is_some_and(|nonce| nonce.len() <= MAX_NONCE_BYTES && accepts(nonce))
    {
        return Err(DpopError::NonceRequired);
    }
    if let Some(token) = expect.access_token {
        let ath = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
        if claims.get("ath").and_then(Value::as_str) != Some(ath.as_str()) {
            return Err(DpopError::WrongAccessToken);
        }
    }
    Ok(Proof {
        jkt,
        jti: jti.to_owned(),
        iat,
        algorithm,
    })
}

impl Proof {
    /// What a verifier remembers the proof as spent under: its key's thumbprint and its `jti`.
    /// A `jti` is unique per key (RFC 9449 §11.1), so nobody can spend another key's `jti` ahead
    /// of it.
    pub fn replay_id(&self) -> String {
        format!("{}.{}", self.jkt, self.jti)
    }

    /// Until when a verifier that accepts proofs at most `max_age` old must remember this one
    /// (from `iat`, or from `now` for a proof issued ahead of the verifier's clock).
    pub fn remember_until(&self, now: OffsetDateTime, max_age: Duration) -> OffsetDateTime {
        self.iat.max(now) + max_age + Duration::seconds(1)
    }
}

/// How an access token reached a resource server (RFC 9449 §7.1, RFC 6750 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presentation<'a> {
    /// `Authorization: Bearer`, no proof.
    Bearer,
    /// `Authorization: DPoP` with a proof verified for this request and this token; the
    /// thumbprint of the proof's key.
    Dpop {
        /// [`Proof::jkt`].
        jkt: &'a str,
    },
}

/// Why a token's binding does not hold for how it was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// A DPoP-bound token presented as a bearer token (RFC 9449 §7.2).
    #[error("the access token is bound to a DPoP key and must be presented with a proof")]
    DpopRequired,
    /// The proof was signed by another key than the one the token is bound to.
    #[error("the DPoP proof was signed by another key than the token is bound to")]
    WrongKey,
    /// The `DPoP` scheme with a token that is not bound to a DPoP key.
    #[error("the access token is not DPoP-bound")]
    NotDpopBound,
    /// A certificate-bound token presented without that certificate (RFC 8705 §3).
    #[error("the access token is bound to a client certificate that was not presented")]
    CertificateRequired,
}

impl BindingError {
    /// A stable machine reason.
    pub fn reason(self) -> &'static str {
        match self {
            BindingError::DpopRequired => "dpop_bound_token_as_bearer",
            BindingError::WrongKey => "dpop_key_mismatch",
            BindingError::NotDpopBound => "token_not_dpop_bound",
            BindingError::CertificateRequired => "certificate_binding_mismatch",
        }
    }
}

/// The one check of a token's confirmation (`cnf`) against how it was presented: a token bound
/// to a DPoP key only with a proof by that key, an unbound token only as a bearer token, and a
/// token bound to a certificate only over a connection that presented that certificate
/// (`certificate`: the SHA-256 thumbprint of the client certificate's DER, base64url).
pub fn check_binding(
    cnf: Option<&crate::Confirmation>,
    presentation: Presentation<'_>,
    certificate: Option<&str>,
) -> Result<(), BindingError> {
    let bound_jkt = cnf.and_then(|c| c.jkt.as_deref());
    match (bound_jkt, presentation) {
        (Some(_), Presentation::Bearer) => return Err(BindingError::DpopRequired),
        (Some(bound), Presentation::Dpop { jkt }) if bound != jkt => {
            return Err(BindingError::WrongKey);
        }
        (None, Presentation::Dpop { .. }) => return Err(BindingError::NotDpopBound),
        _ => {}
    }
    if let Some(bound) = cnf.and_then(|c| c.x5t_s256.as_deref())
        && certificate != Some(bound)
    {
        return Err(BindingError::CertificateRequired);
    }
    Ok(())
}

/// The JWK SHA-256 thumbprint (RFC 7638) of a public EC, OKP or RSA key, base64url: SHA-256 of
/// the JSON object of the key type's required members, in lexicographic order, without
/// whitespace. `None` for another key type or a missing member.
pub fn jwk_thumbprint(jwk: &Value) -> Option<String> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    let members: &[&str] = match field("kty")? {
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        "RSA" => &["e", "kty", "n"],
        _ => return None,
    };
    let mut canonical = String::from("{");
    for (i, name) in members.iter().enumerate() {
        if i > 0 {
            canonical.push(',');
        }
        let value = serde_json::to_string(field(name)?).ok()?;
        canonical.push_str(&format!("\"{name}\":{value}"));
    }
    canonical.push('}');
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
}

/// Whether two HTTP URIs name the same target, ignoring query and fragment (RFC 9449 §4.3
/// check 9), with scheme and host compared case-insensitively and a default port equal to no
/// port (RFC 3986 §6.2.2, §6.2.3).
fn same_target(presented: &str, expected: &str) -> bool {
    fn normalize(uri: &str) -> Option<String> {
        let without_fragment = uri.split('#').next()?;
        let without_query = without_fragment.split('?').next()?;
        let (scheme, rest) = without_query.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "https" && scheme != "http" {
            return None;
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return None;
        }
        let authority = authority.to_ascii_lowercase();
        let default = if scheme == "https" { ":443" } else { ":80" };
        let authority = authority.strip_suffix(default).unwrap_or(&authority);
        Some(format!("{scheme}://{authority}{path}"))
    }
    match (normalize(presented), normalize(expected)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        // RFC 7638 §3.1.
        let jwk = serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            jwk_thumbprint(&jwk).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
        assert_eq!(
            jwk_thumbprint(&serde_json::json!({"kty": "oct", "k": "x"})),
            None
        );
    }

    #[test]
    fn a_binding_holds_only_for_the_presentation_it_names() {
        use crate::Confirmation;
        let dpop = Confirmation::dpop("key-a");
        let cert = Confirmation {
            jkt: None,
            x5t_s256: Some("cert-a".into()),
        };
        let by = |jkt| Presentation::Dpop { jkt };
        type Case<'a> = (
            Option<&'a Confirmation>,
            Presentation<'a>,
            Option<&'a str>,
            Result<(), BindingError>,
        );
        let cases: [Case<'_>; 9] = [
            (None, Presentation::Bearer, None, Ok(())),
            (None, Presentation::Bearer, Some("cert-a"), Ok(())),
            (None, by("key-a"), None, Err(BindingError::NotDpopBound)),
            (Some(&dpop), by("key-a"), None, Ok(())),
            (
                Some(&dpop),
                Presentation::Bearer,
                None,
                Err(BindingError::DpopRequired),
            ),
            (Some(&dpop), by("key-b"), None, Err(BindingError::WrongKey)),
            (Some(&cert), Presentation::Bearer, Some("cert-a"), Ok(())),
            (
                Some(&cert),
                Presentation::Bearer,
                Some("cert-b"),
                Err(BindingError::CertificateRequired),
            ),
            (
                Some(&cert),
                Presentation::Bearer,
                None,
                Err(BindingError::CertificateRequired),
            ),
        ];
        for (i, (cnf, presentation, certificate, expected)) in cases.into_iter().enumerate() {
            assert_eq!(
                check_binding(cnf, presentation, certificate),
                expected,
                "case {i}"
            );
        }
        assert_eq!(
            check_binding(Some(&Confirmation::default()), Presentation::Bearer, None),
            Ok(())
        );
    }

    #[test]
    fn targets_compare_without_query_fragment_case_or_default_port() {
        let t = "https://id.example.com/oauth2/token";
        for same in [
            "https://id.example.com/oauth2/token",
            "HTTPS://ID.Example.com/oauth2/token",
            "https://id.example.com:443/oauth2/token",
            "https://id.example.com/oauth2/token?x=1#f",
        ] {
            assert!(same_target(same, t), "{same}");
        }
        for other in [
            "https://id.example.com/oauth2/Token",
            "http://id.example.com/oauth2/token",
            "https://id.example.com:8443/oauth2/token",
            "https://evil.example/oauth2/token",
            "https://id.example.com@evil.example/oauth2/token",
            "id.example.com/oauth2/token",
            "",
        ] {
            assert!(!same_target(other, t), "{other}");
        }
    }
}
