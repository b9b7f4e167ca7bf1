//! Session identifiers: 256 random bits behind a recognisable prefix, stored only as a SHA-256
//! [`TokenDigest`]. Nothing else about sessions (lifetime, binding, rotation) lives here.
//!
//! A stolen database therefore yields no usable session: the cookie value is needed, and it is
//! never stored. Because the id is high-entropy, a plain SHA-256 suffices (a slow hash would
//! only add latency to every request).

use trustgate_core::secret::generate_token;
use trustgate_core::{Secret, TokenDigest};

/// Prefix of every session id, so secret scanners can recognise a leaked cookie value.
pub const SESSION_ID_PREFIX: &str = "tg_sess_";

/// Length of 32 bytes in base64url without padding.
const ENCODED_LEN: usize = 43;

/// A new session id: give `token` to the browser (cookie), store `digest`.
#[derive(Debug, Clone)]
pub struct NewSessionId {
    /// The id the browser presents. Redacted in `Debug`.
    pub token: Secret,
    /// What the server stores and looks up.
    pub digest: TokenDigest,
}

/// Generates a new 256-bit session id.
pub fn new_session_id() -> NewSessionId {
    let token = generate_token(SESSION_ID_PREFIX);
    let digest = TokenDigest::of(token.expose());
    NewSessionId { token, digest }
}

/// The digest to look up for a presented session id, or `None` if it is not shaped like one
/// (wrong prefix, wrong length, characters outside base64url): such input never reaches storage.
pub fn session_id_digest(presented: &str) -> Option<TokenDigest> {
    let body = presented.strip_prefix(SESSION_ID_PREFIX)?;
    let well_formed = body.len() == ENCODED_LEN
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then(|| TokenDigest::of(presented))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_unique_and_their_digest_is_found_again() {
        let a = new_session_id();
        let b = new_session_id();
        assert_ne!(a.token, b.token);
        assert_ne!(a.digest, b.digest);
        assert_eq!(session_id_digest(a.token.expose()), Some(a.digest));
        assert!(format!("{a:?}").contains("[redacted]"));
    }

    #[test]
    fn malformed_ids_are_refused() {
        let good = new_session_id();
        let body = &good.token.expose()[SESSION_ID_PREFIX.len()..];
        assert_eq!(session_id_digest(body), None);
        assert_eq!(session_id_digest(&format!("tg_admin_{body}")), None);
        assert_eq!(
            session_id_digest(&format!("{}x", good.token.expose())),
            None
        );
        assert_eq!(
            session_id_digest(&format!("{SESSION_ID_PREFIX}{}", "+".repeat(43))),
            None
        );
        assert_eq!(session_id_digest(""), None);
    }
}
