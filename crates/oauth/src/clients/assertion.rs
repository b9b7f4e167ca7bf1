//! `private_key_jwt` client assertions (RFC 7523 §3, OIDC Core §9): a JWT the client signs with
//! a key of its registered JWK Set.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use time::{Duration, OffsetDateTime};
use trustgate_tokens::{Expectation, JwkSetResolver, VerifyError};

use super::Client;
use super::registry::{AUTH_FAILED, MAX_ASSERTION_LIFETIME};
use crate::error::OAuthError;

/// Clock skew tolerated on `exp`, `nbf` and `iat` of a client's assertion by default (the
/// client's clock is not ours); `oauth.assertion_leeway_secs` changes it.
pub const DEFAULT_ASSERTION_LEEWAY: Duration = Duration::seconds(30);

/// Longest accepted `jti`, in bytes.
const MAX_JTI_BYTES: usize = 256;

/// What a verified assertion contributes: its id, remembered until it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    /// `jti`.
    pub jti: String,
    /// Until when the `jti` must be remembered (`exp` plus the leeway).
    pub expires_at: OffsetDateTime,
}

/// Verifies a client assertion of `client` (whose method is `private_key_jwt`): the signature
/// with a key of its registered JWK Set, then the claims (`check_claims`). Public (as
/// `clients::verify_client_assertion`) so it can be fuzzed; the registry calls it after finding
/// the client, and remembers the `jti`.
pub fn verify(
    client: &Client,
    assertion: &str,
    audiences: &[&str],
    now: OffsetDateTime,
    leeway: Duration,
) -> Result<VerifiedAssertion, OAuthError> {
    // Until the signature is verified, every failure gets the one description an unknown client
    // id gets: nothing tells a caller without the client's key that the id exists.
    let unverified = |why: &dyn std::fmt::Display| {
        tracing::debug!(client_id = %client.id, reason = %why, "client assertion refused");
        OAuthError::invalid_client(AUTH_FAILED)
    };
    let jwks = client
        .jwks
        .as_ref()
        .ok_or_else(|| unverified(&"the client has no registered keys"))?;
    let resolver = JwkSetResolver::from_json(jwks).map_err(|e| {
        tracing::error!(client_id = %client.id, error = %e, "registered JWK Set is unusable");
        unverified(&"the client's registered keys are unusable")
    })?;
    // Signature, algorithm (EdDSA, ES256 or RS256, bound to the key), iss, aud and expiry by the
    // shared policy; the RFC 7523 rules on top by `check_claims`.
    let verified = trustgate_tokens::verify::<Value>(
        assertion,
        &resolver,
        &Expectation {
            issuer: &client.id,
            audiences,
            typ: None,
            now,
            leeway,
            require_exp: true,
            check_expiry: true,
        },
    )
    .map_err(|e| match e {
        // Found wrong before (or in) the signature check.
        VerifyError::TooLarge
        | VerifyError::Malformed
        | VerifyError::UnsupportedAlgorithm
        | VerifyError::UnknownKey
        | VerifyError::AlgorithmMismatch
        | VerifyError::BadSignature
        | VerifyError::WrongType => unverified(&e),
        // The client signed it: it may learn what is wrong with its claims.
        VerifyError::Expired
        | VerifyError::NotYetValid
        | VerifyError::WrongIssuer
        | VerifyError::WrongAudience => {
            OAuthError::invalid_client(format!("client assertion: {e}"))
        }
    })?;
    check_claims(&verified.claims, &client.id, audiences, now, leeway)
}

/// The claim rules of RFC 7523 §3 and OIDC Core §9, on claims whose signature was verified:
/// `iss` and `sub` both the client id; `aud` (a string or an array) containing one of
/// `audiences`; `exp` present, not past (with leeway) and at most
/// [`MAX_ASSERTION_LIFETIME`] ahead; `nbf`, if present, reached; `jti` present.
pub(super) fn check_claims(
    claims: &Value,
    client_id: &str,
    audiences: &[&str],
    now: OffsetDateTime,
    leeway: Duration,
) -> Result<VerifiedAssertion, OAuthError> {
    let invalid = |why: &str| OAuthError::invalid_client(format!("client assertion: {why}"));
    let string = |name: &str| claims.get(name).and_then(Value::as_str);
    if string("iss") != Some(client_id) {
        return Err(invalid("iss must be the client_id"));
    }
    if string("sub") != Some(client_id) {
        return Err(invalid("sub must be the client_id"));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(aud)) => audiences.contains(&aud.as_str()),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|aud| audiences.contains(&aud)),
        _ => false,
    };
    if !aud_ok {
        return Err(invalid("aud must name this endpoint or the issuer"));
    }
    let time = |name: &str| -> Result<Option<OffsetDateTime>, OAuthError> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
                .map(Some)
                .ok_or_else(|| invalid(&format!("{name} must be a NumericDate"))),
        }
    };
    let exp = time("exp")?.ok_or_else(|| invalid("exp is required"))?;
    if exp + leeway <= now {
        return Err(invalid("expired"));
    }
    if exp > now + MAX_ASSERTION_LIFETIME + leeway {
        return Err(invalid("exp is more than 10 minutes ahead"));
    }
    if let Some(nbf) = time("nbf")?
        && nbf > now + leeway
    {
        return Err(invalid("not valid yet (nbf)"));
    }
    if let Some(iat) = time("iat")?
        && iat > now + leeway
    {
        return Err(invalid("issued in the future (iat)"));
    }
    let jti = string("jti")
        .filter(|j| !j.is_empty())
        .ok_or_else(|| invalid("jti is required"))?;
    if jti.len() > MAX_JTI_BYTES {
        return Err(invalid("jti is too long"));
    }
    Ok(VerifiedAssertion {
        jti: jti.to_owned(),
        expires_at: exp + leeway,
    })
}

/// The `iss` of an assertion, read *without* verifying it: only to find which client's keys
/// verify it. `None` if the assertion is not a compact JWS with a string `iss`.
pub(super) fn unverified_issuer(assertion: &str) -> Option<String> {
    let mut parts = assertion.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims
        .get("iss")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Why `jwks` cannot verify client assertions, if it cannot.
pub(super) fn verification_keys(jwks: &Value) -> Result<(), String> {
    JwkSetResolver::from_json(jwks)
        .map(drop)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;
    use crate::ErrorCode;

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
    const AUDS: &[&str] = &[
        "https://id.example.com/oauth2/token",
        "https://id.example.com",
    ];

    fn claims() -> Value {
        json!({
            "iss": "tgc_a",
            "sub": "tgc_a",
            "aud": "https://id.example.com/oauth2/token",
            "exp": NOW.unix_timestamp() + 300,
            "iat": NOW.unix_timestamp(),
            "jti": "j-1",
        })
    }

    #[test]
    fn valid_claims_pass() {
        let got =
            check_claims(&claims(), "tgc_a", AUDS, NOW, DEFAULT_ASSERTION_LEEWAY).expect("valid");
        assert_eq!(got.jti, "j-1");
        assert_eq!(got.expires_at, NOW + Duration::seconds(330));
        let mut c = claims();
        c["aud"] = json!(["https://other.example", "https://id.example.com"]);
        c["nbf"] = json!(NOW.unix_timestamp() - 10);
        c["exp"] = json!(NOW.unix_timestamp() + 600);
        check_claims(&c, "tgc_a", AUDS, NOW, DEFAULT_ASSERTION_LEEWAY)
            .expect("issuer audience in an array, 10 min");
        // The configured skew, and nothing more.
        let mut c = claims();
        c["exp"] = json!(NOW.unix_timestamp() - 29);
        check_claims(&c, "tgc_a", AUDS, NOW, DEFAULT_ASSERTION_LEEWAY)
            .expect("within 30 s of skew");
        c["exp"] = json!(NOW.unix_timestamp() - 30);
        check_claims(&c, "tgc_a", AUDS, NOW, DEFAULT_ASSERTION_LEEWAY).expect_err("30 s late");
        c["exp"] = json!(NOW.unix_timestamp());
        check_claims(&c, "tgc_a", AUDS, NOW, Duration::ZERO).expect_err("no leeway: at exp");
    }

    #[test]
    fn each_claim_rule_refuses() {
        let t = NOW.unix_timestamp();
        let cases: Vec<(&str, Value)> = vec![
            ("iss", json!("tgc_b")),
            ("iss", Value::Null),
            ("sub", json!("tgc_b")),
            ("aud", json!("https://evil.example")),
            ("aud", json!(["https://evil.example"])),
            ("aud", json!(7)),
            ("exp", json!(t - 61)),
            ("exp", json!(t + 601 + 60)),
            ("exp", json!("soon")),
            ("nbf", json!(t + 120)),
            ("iat", json!(t + 120)),
            ("jti", json!("")),
            ("jti", json!(42)),
            ("jti", json!("j".repeat(MAX_JTI_BYTES + 1))),
        ];
        for (name, value) in cases {
            let mut c = claims();
            c[name] = value.clone();
            let err =
                check_claims(&c, "tgc_a", AUDS, NOW, DEFAULT_ASSERTION_LEEWAY).expect_err(name);
            assert_eq!(err.code, ErrorCode::InvalidClient, "{name} {value}");
        }
        for missing in ["iss", "sub", "aud", "exp", "jti"] {
            let mut c = claims();
            c.as_object_mut().expect("object").remove(missing);
            let err =
                check_claims(&c, "tgc_a", AUDS, NOW, DEFAULT_ASSERTION_LEEWAY).expect_err(missing);
            assert!(err.description.contains(missing), "{missing}: {err}");
        }
        // iss and sub right for another client id.
        check_claims(&claims(), "tgc_b", AUDS, NOW, DEFAULT_ASSERTION_LEEWAY)
            .expect_err("other client");
    }

    fn jws(payload: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn issuer_is_read_from_the_payload() {
        assert_eq!(
            unverified_issuer(&jws(r#"{"iss":"tgc_a","sub":"tgc_a"}"#)).as_deref(),
            Some("tgc_a")
        );
        for bad in [
            String::new(),
            "a.b".into(),
            "a.b.c.d".into(),
            jws(r#"{"iss":""}"#),
            jws(r#"{"iss":7}"#),
            jws("not json"),
            "x.!!!.y".into(),
        ] {
            assert_eq!(unverified_issuer(&bad), None, "{bad}");
        }
    }
}
