//! Standard Webhooks: the signature scheme trustgate signs its webhooks with, and the
//! [`Verifier`] a receiver checks them with.
//!
//! A webhook carries three headers: `webhook-id` (the message id, the same on every retry),
//! `webhook-timestamp` (unix seconds of this attempt) and `webhook-signature`, a space-separated
//! list of `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, one per secret the sender
//! signs with (several while a secret is being rotated). Secrets are `whsec_` followed by the
//! base64 of the key bytes.
//!
//! The verifier accepts a message when the timestamp is within its tolerance of now (±5 minutes
//! by default: a captured request cannot be replayed later) and one of the `v1` signatures
//! matches one of its secrets, compared in constant time. Each way to fail has its own
//! [`WebhookError`] variant with a stable [`code`](WebhookError::code).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The header with the message id.
pub const ID_HEADER: &str = "webhook-id";
/// The header with the unix time of the attempt, in seconds.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// The header with the signatures.
pub const SIGNATURE_HEADER: &str = "webhook-signature";
/// The prefix of a secret's text form.
pub const SECRET_PREFIX: &str = "whsec_";
/// How far a timestamp may be from now, either way, by default.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);
/// The fewest key bytes a secret may have.
pub const MIN_SECRET_BYTES: usize = 24;
/// The most key bytes a secret may have.
pub const MAX_SECRET_BYTES: usize = 64;
/// The longest signature header read: a bound on the work an attacker can ask for.
const MAX_SIGNATURE_HEADER: usize = 4096;
/// The longest message id accepted.
const MAX_ID: usize = 256;

/// Why a webhook was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// A required header is absent.
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    /// A header is present but not what the scheme allows.
    #[error("the {0} header is malformed")]
    MalformedHeader(&'static str),
    /// The timestamp is older than the tolerance allows.
    #[error("the webhook timestamp is too old")]
    StaleTimestamp,
    /// The timestamp is further in the future than the tolerance allows.
    #[error("the webhook timestamp is in the future")]
    FutureTimestamp,
    /// No signature matches any secret.
    #[error("no webhook signature matches")]
    BadSignature,
    /// A secret is not `whsec_` and the base64 of 24 to 64 bytes.
    #[error("a webhook secret must be whsec_ and the base64 of 24 to 64 bytes")]
    InvalidSecret,
}

impl WebhookError {
    /// A stable code for logs and error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            WebhookError::MissingHeader(_) => "webhook_header_missing",
            WebhookError::MalformedHeader(_) => "webhook_header_malformed",
            WebhookError::StaleTimestamp => "webhook_timestamp_stale",
            WebhookError::FutureTimestamp => "webhook_timestamp_future",
            WebhookError::BadSignature => "webhook_signature_invalid",
            WebhookError::InvalidSecret => "webhook_secret_invalid",
        }
    }
}

/// A signing secret: the key bytes. `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

/// 32 key bytes, the size trustgate generates, are always a valid secret.
impl From<[u8; 32]> for WebhookSecret {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes.to_vec())
    }
}

impl WebhookSecret {
    /// A secret from its key bytes (24 to 64 of them).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WebhookError> {
        if (MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()) {
            Ok(Self(bytes.to_vec()))
        } else {
            Err(WebhookError::InvalidSecret)
        }
    }

    /// A secret from its text form, `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<Self, WebhookError> {
        let encoded = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(WebhookError::InvalidSecret)?;
        if encoded.len() > MAX_SECRET_BYTES * 2 {
            return Err(WebhookError::InvalidSecret);
        }
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| WebhookError::InvalidSecret)?;
        Self::from_bytes(&bytes)
    }

    /// The key bytes, for storage (seal them at rest).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The text form, `whsec_<base64>`: what an administrator hands to the receiver.
    pub fn to_text(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// One `v1,<base64>` signature of a message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.mac(id, timestamp, body)))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length, so this cannot fail; an empty MAC would match nothing.
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0) else {
            return Vec::new();
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }
}

/// The `webhook-signature` header value for a message signed with every one of `secrets`.
pub fn signature_header<'a>(
    secrets: impl IntoIterator<Item = &'a WebhookSecret>,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .into_iter()
        .map(|secret| secret.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks webhooks signed per Standard Webhooks against one or more secrets (several while the
/// sender rotates).
#[derive(Debug, Clone)]
pub struct Verifier {
    secrets: Vec<WebhookSecret>,
    tolerance: Duration,
}

impl Verifier {
    /// A verifier for `secrets` with the default tolerance of ±5 minutes.
    pub fn new(secrets: impl IntoIterator<Item = WebhookSecret>) -> Self {
        Self {
            secrets: secrets.into_iter().collect(),
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// A verifier for secrets in their text form (`whsec_…`).
    pub fn from_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<Self, WebhookError> {
        let secrets = texts
            .into_iter()
            .map(WebhookSecret::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(secrets))
    }

    /// How far the timestamp may be from now, either way.
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Verifies a received webhook now; the message id on success (deduplicate on it: a retry
    /// carries the same id).
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<String, WebhookError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.verify_at(headers, body, now)
    }

    /// As [`verify`](Self::verify), with `now` in unix seconds.
    pub fn verify_at(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<String, WebhookError> {
        let id = header(headers, ID_HEADER)?;
        if id.is_empty() || id.len() > MAX_ID {
            return Err(WebhookError::MalformedHeader(ID_HEADER));
        }
        let timestamp = header(headers, TIMESTAMP_HEADER)?;
        if timestamp.is_empty()
            || timestamp.len() > 19
            || !timestamp.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(WebhookError::MalformedHeader(TIMESTAMP_HEADER));
        }
        let timestamp: i64 = timestamp
            .parse()
            .map_err(|_| WebhookError::MalformedHeader(TIMESTAMP_HEADER))?;
        let tolerance = i64::try_from(self.tolerance.as_secs()).unwrap_or(i64::MAX);
        if timestamp < now.saturating_sub(tolerance) {
            return Err(WebhookError::StaleTimestamp);
        }
        if timestamp > now.saturating_add(tolerance) {
            return Err(WebhookError::FutureTimestamp);
        }
        let signatures = header(headers, SIGNATURE_HEADER)?;
        if signatures.len() > MAX_SIGNATURE_HEADER {
            return Err(WebhookError::MalformedHeader(SIGNATURE_HEADER));
        }
        let mut offered = Vec::new();
        for part in signatures.split(' ').filter(|p| !p.is_empty()) {
            let (version, signature) = part
                .split_once(',')
                .ok_or(WebhookError::MalformedHeader(SIGNATURE_HEADER))?;
            // Other versions (v1a, future schemes) are skipped, as the scheme asks.
            if version == "v1"
                && let Ok(bytes) = STANDARD.decode(signature)
            {
                offered.push(bytes);
            }
        }
        if offered.is_empty() {
            return Err(WebhookError::MalformedHeader(SIGNATURE_HEADER));
        }
        for secret in &self.secrets {
            let expected = secret.mac(id, timestamp, body);
            for candidate in &offered {
                if bool::from(expected.ct_eq(candidate)) {
                    return Ok(id.to_owned());
                }
            }
        }
        Err(WebhookError::BadSignature)
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, WebhookError> {
    headers
        .get(name)
        .ok_or(WebhookError::MissingHeader(name))?
        .to_str()
        .map(str::trim)
        .map_err(|_| WebhookError::MalformedHeader(name))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    // The example of the Standard Webhooks specification.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn headers(id: &str, ts: &str, signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in [
            (ID_HEADER, id),
            (TIMESTAMP_HEADER, ts),
            (SIGNATURE_HEADER, signature),
        ] {
            h.insert(name, HeaderValue::from_str(value).expect("header"));
        }
        h
    }

    fn secret() -> WebhookSecret {
        WebhookSecret::parse(SECRET).expect("the published secret parses")
    }

    #[test]
    fn the_published_example_signs_and_verifies() {
        assert_eq!(secret().sign(ID, TS, BODY), EXPECTED);
        let verifier = Verifier::new([secret()]);
        let id = verifier.verify_at(&headers(ID, &TS.to_string(), EXPECTED), BODY, TS);
        assert_eq!(id.as_deref(), Ok(ID));
        assert_eq!(secret().to_text(), SECRET);
    }

    #[test]
    fn a_tampered_body_id_or_timestamp_fails() {
        let verifier = Verifier::new([secret()]);
        let ts = TS.to_string();
        assert_eq!(
            verifier.verify_at(&headers(ID, &ts, EXPECTED), br#"{"test": 2432232315}"#, TS),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verifier.verify_at(&headers("msg_other", &ts, EXPECTED), BODY, TS),
            Err(WebhookError::BadSignature)
        );
        let later = (TS + 1).to_string();
        assert_eq!(
            verifier.verify_at(&headers(ID, &later, EXPECTED), BODY, TS),
            Err(WebhookError::BadSignature)
        );
        let other = WebhookSecret::from_bytes(&[7u8; 32]).expect("secret");
        assert_eq!(
            Verifier::new([other]).verify_at(&headers(ID, &ts, EXPECTED), BODY, TS),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn stale_and_future_timestamps_fail() {
        let verifier = Verifier::new([secret()]);
        let h = headers(ID, &TS.to_string(), EXPECTED);
        assert!(verifier.verify_at(&h, BODY, TS + 300).is_ok());
        assert!(verifier.verify_at(&h, BODY, TS - 300).is_ok());
        assert_eq!(
            verifier.verify_at(&h, BODY, TS + 301),
            Err(WebhookError::StaleTimestamp)
        );
        assert_eq!(
            verifier.verify_at(&h, BODY, TS - 301),
            Err(WebhookError::FutureTimestamp)
        );
        let strict = verifier.with_tolerance(Duration::from_secs(10));
        assert_eq!(
            strict.verify_at(&h, BODY, TS + 11),
            Err(WebhookError::StaleTimestamp)
        );
    }

    #[test]
    fn during_rotation_old_and_new_secrets_verify() {
        let old = secret();
        let new = WebhookSecret::from_bytes(&[42u8; 32]).expect("secret");
        let header = signature_header([&old, &new], ID, TS, BODY);
        assert_eq!(header.split(' ').count(), 2);
        let ts = TS.to_string();
        for receiver in [Verifier::new([old.clone()]), Verifier::new([new.clone()])] {
            assert!(
                receiver
                    .verify_at(&headers(ID, &ts, &header), BODY, TS)
                    .is_ok()
            );
        }
        // After the overlap the sender signs with the new secret only: the old one fails.
        let only_new = signature_header([&new], ID, TS, BODY);
        assert_eq!(
            Verifier::new([old]).verify_at(&headers(ID, &ts, &only_new), BODY, TS),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn missing_and_malformed_headers_have_distinct_errors() {
        let verifier = Verifier::new([secret()]);
        let ts = TS.to_string();
        for name in [ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER] {
            let mut h = headers(ID, &ts, EXPECTED);
            h.remove(name);
            assert_eq!(
                verifier.verify_at(&h, BODY, TS),
                Err(WebhookError::MissingHeader(name))
            );
        }
        for (ts, sig, bad) in [
            ("-5", EXPECTED, TIMESTAMP_HEADER),
            ("12a", EXPECTED, TIMESTAMP_HEADER),
            ("99999999999999999999999", EXPECTED, TIMESTAMP_HEADER),
            (ts.as_str(), "g0hM9SsE", SIGNATURE_HEADER),
            (ts.as_str(), "v2,abc", SIGNATURE_HEADER),
            (ts.as_str(), "v1,***", SIGNATURE_HEADER),
        ] {
            assert_eq!(
                verifier.verify_at(&headers(ID, ts, sig), BODY, TS),
                Err(WebhookError::MalformedHeader(bad)),
                "{ts} {sig}"
            );
        }
        let long = format!("v1,{}", "A".repeat(MAX_SIGNATURE_HEADER));
        assert_eq!(
            verifier.verify_at(&headers(ID, &ts, &long), BODY, TS),
            Err(WebhookError::MalformedHeader(SIGNATURE_HEADER))
        );
        // An unknown version next to a good v1 signature is skipped.
        let mixed = format!("v1a,xyz {EXPECTED}");
        assert!(
            verifier
                .verify_at(&headers(ID, &ts, &mixed), BODY, TS)
                .is_ok()
        );
    }

    #[test]
    fn secrets_are_checked() {
        for bad in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_",
            "whsec_not base64!",
            "whsec_AAAA",
        ] {
            assert_eq!(
                WebhookSecret::parse(bad),
                Err(WebhookError::InvalidSecret),
                "{bad}"
            );
        }
        assert!(WebhookSecret::from_bytes(&[0; 23]).is_err());
        assert!(WebhookSecret::from_bytes(&[0; 65]).is_err());
        assert_eq!(format!("{:?}", secret()), "WebhookSecret([redacted])");
    }
}
