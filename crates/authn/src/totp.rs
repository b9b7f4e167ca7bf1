//! Second factor: time-based one-time passwords (RFC 6238) and one-time recovery codes.
//!
//! # TOTP
//! The parameters every authenticator app understands: HMAC-SHA-1, 6 digits, 30-second steps,
//! and a 160-bit random secret. A code is accepted for the current step and one step either side
//! (clock drift and typing time), and only for a step *later* than the last one accepted for the
//! account ([`TotpSecret::verify`] takes and returns the step), so an observed code cannot be
//! replayed (RFC 6238 §5.2). Codes are compared in constant time. Enrolment shows the
//! `otpauth://` URI as a QR code ([`TotpSecret::qr_png_base64`]) and the base32 secret for manual
//! entry; both embed the secret and are returned as [`Secret`].
//!
//! The caller stores the secret (encrypted at rest) and the last accepted step, and throttles
//! attempts like password attempts: a 6-digit code has only a million values.
//!
//! # Recovery codes
//! [`generate_recovery_codes`] makes ten codes like `7kq2-m9xd-4hva`: 12 characters of
//! Crockford's base32 (no `i`, `l`, `o`, `u`), 60 random bits each. They are shown once; only
//! their SHA-256 [`TokenDigest`]s are stored. Input is normalised before hashing (case, dashes,
//! spaces, and Crockford's `o`→`0`, `i`/`l`→`1`), and [`verify_recovery_code`] reports *which*
//! stored digest matched so the caller can delete exactly that one: each code works once.

use std::fmt;

use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use totp_rs::{Algorithm, Builder, Totp};
use trustgate_core::{Secret, TokenDigest};

/// Digits in a code.
pub const TOTP_DIGITS: usize = 6;
/// Seconds in a time step.
pub const TOTP_STEP_SECONDS: u64 = 30;
/// Steps accepted either side of the current one.
pub const TOTP_SKEW_STEPS: u64 = 1;
/// Bytes in a generated secret (160 bits, RFC 4226 §4).
pub const TOTP_SECRET_BYTES: usize = 20;
/// The shortest secret accepted from storage or import (128 bits).
pub const TOTP_MIN_SECRET_BYTES: usize = 16;

/// Why a presented TOTP code was not accepted. Each variant has a stable [`code`](Self::code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    /// Not exactly six ASCII digits.
    #[error("the code must be 6 digits")]
    Malformed,
    /// Well-formed, but not the code of any step in the accepted window.
    #[error("the code is incorrect or expired")]
    Invalid,
    /// The code of a step that was already used (or an earlier one).
    #[error("the code was already used; wait for the next one")]
    Replayed,
}

impl TotpError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            TotpError::Malformed => "totp_malformed",
            TotpError::Invalid => "totp_invalid",
            TotpError::Replayed => "totp_replayed",
        }
    }
}

/// Why a TOTP secret could not be loaded or rendered for enrolment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TotpSetupError {
    /// Secret shorter than [`TOTP_MIN_SECRET_BYTES`] or not valid base32.
    #[error("the TOTP secret is malformed or shorter than 128 bits")]
    InvalidSecret,
    /// Issuer or account name is empty or contains `:`.
    #[error("issuer and account name must be non-empty and must not contain ':'")]
    InvalidLabel,
    /// The provisioning URI is too long for a QR code.
    #[error("the provisioning URI is too long to render as a QR code")]
    QrTooLong,
}

/// A TOTP shared secret. Redacted in `Debug`; wiped from memory on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(totp_rs::Secret);

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret([redacted])")
    }
}

impl TotpSecret {
    /// A new random 160-bit secret.
    pub fn generate() -> Self {
        Self(totp_rs::Secret::generate())
    }

    /// A secret from its raw bytes, as stored.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TotpSetupError> {
        if bytes.len() < TOTP_MIN_SECRET_BYTES {
            return Err(TotpSetupError::InvalidSecret);
        }
        Ok(Self(totp_rs::Secret::from(bytes)))
    }

    /// A secret from RFC 4648 base32 (as shown for manual entry; spaces and case ignored).
    pub fn from_base32(encoded: &str) -> Result<Self, TotpSetupError> {
        let cleaned: String = encoded
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-' && *c != '=')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let secret = totp_rs::Secret::try_from_base32(&cleaned)
            .map_err(|_| TotpSetupError::InvalidSecret)?;
        Self::from_bytes(secret.as_bytes())
    }

    /// The raw bytes, for storage (encrypt them at rest).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The secret in base32, for users who type it into their app instead of scanning.
    pub fn to_base32(&self) -> Secret {
        Secret::new(self.0.to_base32())
    }

    fn totp(&self, issuer: Option<&str>, account: &str) -> Totp {
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(6)
            .with_skew(0)
            .with_step_duration(TOTP_STEP_SECONDS)
            .with_secret(self.0.as_bytes())
            .with_account_name(account)
            .with_issuer(issuer)
            .build_noncompliant()
    }

    fn labelled(&self, issuer: &str, account: &str) -> Result<Totp, TotpSetupError> {
        let valid = |s: &str| !s.trim().is_empty() && !s.contains(':');
        if !valid(issuer) || !valid(account) {
            return Err(TotpSetupError::InvalidLabel);
        }
        Ok(self.totp(Some(issuer), account))
    }

    /// The `otpauth://totp/Issuer:account?secret=...&issuer=Issuer` key URI (Google
    /// Authenticator's format). Contains the secret.
    pub fn provisioning_uri(&self, issuer: &str, account: &str) -> Result<Secret, TotpSetupError> {
        let uri = self
            .labelled(issuer, account)?
            .to_url()
            .map_err(|_| TotpSetupError::InvalidLabel)?;
        Ok(Secret::new(uri))
    }

    /// The provisioning URI as a QR code: a base64-encoded PNG, for
    /// `<img src="data:image/png;base64,...">`. Contains the secret.
    pub fn qr_png_base64(&self, issuer: &str, account: &str) -> Result<Secret, TotpSetupError> {
        let png = self
            .labelled(issuer, account)?
            .to_qr_base64()
            .map_err(|_| TotpSetupError::QrTooLong)?;
        Ok(Secret::new(png))
    }

    /// The code for the step containing `at` (for tests, tooling and the enrolment check).
    pub fn code_at(&self, at: OffsetDateTime) -> String {
        let secs = u64::try_from(at.unix_timestamp()).unwrap_or(0);
        self.totp(None, "").generate(secs).to_string()
    }

    /// The time step containing `at`, or `None` before 1970.
    pub fn step_at(at: OffsetDateTime) -> Option<u64> {
        u64::try_from(at.unix_timestamp())
            .ok()
            .map(|secs| secs / TOTP_STEP_SECONDS)
    }

    /// Checks `code` at time `now`. Accepts the current step and one either side, but only a
    /// step later than `last_used_step`. Returns the matched step: store it as the new
    /// `last_used_step` before reporting success.
    pub fn verify(
        &self,
        code: &str,
        now: OffsetDateTime,
        last_used_step: Option<u64>,
    ) -> Result<u64, TotpError> {
        let code = normalize_totp_code(code).ok_or(TotpError::Malformed)?;
        let current = Self::step_at(now).ok_or(TotpError::Invalid)?;
        let totp = self.totp(None, "");
        let mut accepted: Option<u64> = None;
        let mut replayed = false;
        // Every step of the window is computed and compared, matched or not.
        let first = current.saturating_sub(TOTP_SKEW_STEPS);
        let last = current.saturating_add(TOTP_SKEW_STEPS);
        for step in first..=last {
            let expected = totp
                .generate(step.saturating_mul(TOTP_STEP_SECONDS))
                .to_string();
            let matches: bool = expected.as_bytes().ct_eq(code.as_bytes()).into();
            let fresh = last_used_step.is_none_or(|used| step > used);
            if matches && fresh && accepted.is_none() {
                accepted = Some(step);
            } else if matches && !fresh {
                replayed = true;
            }
        }
        match accepted {
            Some(step) => Ok(step),
            None if replayed => Err(TotpError::Replayed),
            None => Err(TotpError::Invalid),
        }
    }
}

/// Six ASCII digits, allowing surrounding whitespace and inner spaces (`123 456`) as apps show
/// them. `None` for anything else.
fn normalize_totp_code(input: &str) -> Option<String> {
    if input.len() > 32 {
        return None;
    }
    let digits: String = input.chars().filter(|c| *c != ' ').collect();
    let digits = digits.trim();
    (digits.len() == TOTP_DIGITS && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Recovery codes
// ---------------------------------------------------------------------------------------------

/// Codes issued at a time.
pub const RECOVERY_CODE_COUNT: usize = 10;
/// Characters in a code, without dashes. 12 × 5 bits = 60 bits.
pub const RECOVERY_CODE_CHARS: usize = 12;
/// Crockford's base32 alphabet, lower-case: no `i`, `l`, `o`, `u`.
const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Freshly generated recovery codes: show `codes` to the user once, store `digests`.
#[derive(Debug, Clone)]
pub struct RecoveryCodes {
    /// The codes in display form, `xxxx-xxxx-xxxx`.
    pub codes: Vec<Secret>,
    /// SHA-256 of each normalised code, in the same order.
    pub digests: Vec<TokenDigest>,
}

/// [`RECOVERY_CODE_COUNT`] new recovery codes.
pub fn generate_recovery_codes() -> RecoveryCodes {
    let mut codes = Vec::with_capacity(RECOVERY_CODE_COUNT);
    let mut digests = Vec::with_capacity(RECOVERY_CODE_COUNT);
    while codes.len() < RECOVERY_CODE_COUNT {
        let bits: u64 = rand::random();
        let chars: String = (0..RECOVERY_CODE_CHARS)
            .map(|i| {
                let index = (bits >> (5 * i)) & 0x1f;
                char::from(RECOVERY_ALPHABET[usize::try_from(index).unwrap_or(0)])
            })
            .collect();
        let digest = TokenDigest::of(&chars);
        if digests.contains(&digest) {
            continue; // 2^-60 per pair; keep the set distinct anyway.
        }
        let display = format!("{}-{}-{}", &chars[0..4], &chars[4..8], &chars[8..12]);
        codes.push(Secret::new(display));
        digests.push(digest);
    }
    RecoveryCodes { codes, digests }
}

/// The canonical form of a typed recovery code: 12 alphabet characters, lower-case, without
/// separators, with Crockford's look-alikes folded. `None` if it cannot be a recovery code.
pub fn normalize_recovery_code(input: &str) -> Option<String> {
    if input.len() > 64 {
        return None;
    }
    let mut out = String::with_capacity(RECOVERY_CODE_CHARS);
    for c in input.chars() {
        if c == '-' || c.is_whitespace() {
            continue;
        }
        let c = match c.to_ascii_lowercase() {
            'o' => '0',
            'i' | 'l' => '1',
            other => other,
        };
        if !c.is_ascii() || !RECOVERY_ALPHABET.contains(&(c as u8)) {
            return None;
        }
        out.push(c);
    }
    (out.len() == RECOVERY_CODE_CHARS).then_some(out)
}

/// The digest under which a typed recovery code is stored, or `None` if it is malformed.
pub fn recovery_code_digest(input: &str) -> Option<TokenDigest> {
    normalize_recovery_code(input).map(|code| TokenDigest::of(&code))
}

/// The index in `stored` of the digest `input` matches, or `None`. Every stored digest is
/// compared in constant time. The caller removes the matched digest: a code works once.
pub fn verify_recovery_code(input: &str, stored: &[TokenDigest]) -> Option<usize> {
    let presented = recovery_code_digest(input)?;
    let mut found = None;
    for (index, digest) in stored.iter().enumerate() {
        if digest.ct_eq(&presented) && found.is_none() {
            found = Some(index);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vector() {
        // RFC 6238 Appendix B, SHA-1 seed "12345678901234567890", T = 59 -> 94287082 (8 digits);
        // the 6-digit code is its last six digits.
        let secret = TotpSecret::from_bytes(b"12345678901234567890").expect("20 bytes");
        let at = OffsetDateTime::from_unix_timestamp(59).expect("time");
        assert_eq!(secret.code_at(at), "287082");
        let at = OffsetDateTime::from_unix_timestamp(1_111_111_109).expect("time");
        assert_eq!(secret.code_at(at), "081804");
    }

    #[test]
    fn code_normalisation() {
        assert_eq!(normalize_totp_code(" 123 456 "), Some("123456".into()));
        assert_eq!(normalize_totp_code("12345"), None);
        assert_eq!(normalize_totp_code("1234567"), None);
        assert_eq!(normalize_totp_code("+12345"), None);
        assert_eq!(normalize_totp_code("１２３４５６"), None);
    }

    #[test]
    fn recovery_normalisation_folds_lookalikes() {
        assert_eq!(
            normalize_recovery_code(" ABCD-EFGH-JKMN "),
            Some("abcdefghjkmn".into())
        );
        assert_eq!(
            normalize_recovery_code("oil0-0000-0000"),
            Some("011000000000".into())
        );
        assert_eq!(normalize_recovery_code("abcd-efgh-jkm"), None);
        assert_eq!(normalize_recovery_code("abcd-efgh-jkmu"), None);
        assert_eq!(normalize_recovery_code("abcd-efgh-jkmé"), None);
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = TotpSecret::generate();
        assert_eq!(format!("{s:?}"), "TotpSecret([redacted])");
        assert_eq!(s.as_bytes().len(), TOTP_SECRET_BYTES);
    }
}
