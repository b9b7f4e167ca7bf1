//! Proof Key for Code Exchange (RFC 7636), S256 only: `plain` is refused (RFC 9700 §2.1.1
//! recommends S256, and trustgate requires PKCE of every client, so nothing needs `plain`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::OAuthError;

/// The one supported `code_challenge_method`.
pub const S256: &str = "S256";

/// Checks the authorization request's PKCE parameters: a challenge is required, the method must
/// be `S256` (an absent method means `plain` per RFC 7636 §4.3, so it is refused too) and the
/// challenge must be a base64url SHA-256 value (43 characters).
pub fn check_challenge(
    challenge: Option<&str>,
    method: Option<&str>,
) -> Result<String, OAuthError> {
    let challenge = challenge.filter(|c| !c.is_empty()).ok_or_else(|| {
        OAuthError::invalid_request("code_challenge is required (PKCE with S256)")
    })?;
    match method {
        Some(S256) => {}
        Some("plain") | None => {
            return Err(OAuthError::invalid_request(
                "code_challenge_method must be S256; plain is not allowed",
            ));
        }
        Some(_) => {
            return Err(OAuthError::invalid_request(
                "code_challenge_method is not supported; use S256",
            ));
        }
    }
    let well_formed = challenge.len() == 43
        && URL_SAFE_NO_PAD
            .decode(challenge)
            .is_ok_and(|bytes| bytes.len() == 32);
    if !well_formed {
        return Err(OAuthError::invalid_request(
            "code_challenge must be the base64url-encoded SHA-256 of the verifier",
        ));
    }
    Ok(challenge.to_owned())
}

/// Whether `verifier` (43–128 unreserved characters, RFC 7636 §4.1) hashes to `challenge`.
pub fn verify(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !well_formed {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc_7636_appendix_b_vector() {
        assert!(verify(VERIFIER, CHALLENGE));
        assert_eq!(
            check_challenge(Some(CHALLENGE), Some("S256")),
            Ok(CHALLENGE.to_owned())
        );
    }

    #[test]
    fn wrong_or_malformed_verifier_fails() {
        assert!(!verify(&VERIFIER.replace('d', "e"), CHALLENGE));
        assert!(!verify("short", CHALLENGE));
        assert!(!verify(&format!("{VERIFIER} "), CHALLENGE));
        assert!(!verify(CHALLENGE, CHALLENGE));
    }

    #[test]
    fn plain_missing_and_malformed_challenges_are_refused() {
        assert!(check_challenge(None, Some("S256")).is_err());
        assert!(check_challenge(Some(CHALLENGE), None).is_err());
        assert!(check_challenge(Some(CHALLENGE), Some("plain")).is_err());
        assert!(check_challenge(Some(CHALLENGE), Some("s256")).is_err());
        assert!(check_challenge(Some("abc"), Some("S256")).is_err());
        assert!(check_challenge(Some(&"!".repeat(43)), Some("S256")).is_err());
    }
}
