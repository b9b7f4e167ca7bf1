//! How fresh an answer must be: [`Consistency`] preferences and [`ConsistencyToken`]s.
//!
//! A token is issued by every tuple write ([`crate::Written::token`]) and names the store's
//! changelog position after that write. Its text is URL-safe base64 (no padding) of
//! `tg1:<store id>:<seq>`, the format trustgate has always issued, so tokens held by existing
//! clients stay valid. Callers treat it as opaque.
//!
//! A query given a token ([`Freshness::token`]) is answered from an index at least at that
//! position. A token that does not decode, that was issued for another store, or that is ahead
//! of the store's committed changelog is a [`PdpError::Validation`]: it was not issued by this
//! store, and answering from an older index would silently break read-your-writes.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::PdpError;

/// The longest token text accepted.
const MAX_TOKEN_LEN: usize = 256;

/// A query's consistency preference (OpenFGA's `consistency`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Consistency {
    /// Read the in-memory index as it is: at most one refresh interval
    /// ([`crate::REFRESH_INTERVAL`]) behind writes made through other replicas, and the latest
    /// model as cached for [`crate::LATEST_MODEL_TTL`]. Writes through this replica are always
    /// visible.
    #[default]
    MinimizeLatency,
    /// Catch up with the store's committed changelog (and read which model is the latest from
    /// the database) before answering.
    HigherConsistency,
}

/// How fresh the tuples a query reads must be: a preference and, optionally, a token of a
/// write the answer must reflect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Freshness<'a> {
    /// The preference.
    pub consistency: Consistency,
    /// The text of a [`ConsistencyToken`] issued for the queried store.
    pub token: Option<&'a str>,
}

impl<'a> Freshness<'a> {
    /// [`Consistency::MinimizeLatency`] without a token: the cheapest read.
    pub const MINIMIZE_LATENCY: Freshness<'static> = Freshness {
        consistency: Consistency::MinimizeLatency,
        token: None,
    };

    /// [`Consistency::HigherConsistency`] without a token.
    pub const HIGHER_CONSISTENCY: Freshness<'static> = Freshness {
        consistency: Consistency::HigherConsistency,
        token: None,
    };

    /// At least as fresh as the write that issued `token`.
    pub fn after(token: &'a ConsistencyToken) -> Self {
        Freshness {
            consistency: Consistency::MinimizeLatency,
            token: Some(token.as_str()),
        }
    }
}

impl From<Consistency> for Freshness<'_> {
    fn from(consistency: Consistency) -> Self {
        Freshness {
            consistency,
            token: None,
        }
    }
}

/// An opaque token of a store's changelog position, issued by a write.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConsistencyToken(String);

impl ConsistencyToken {
    /// The token of position `seq` of `store_id`.
    pub(crate) fn issue(store_id: &str, seq: i64) -> Self {
        ConsistencyToken(URL_SAFE_NO_PAD.encode(format!("tg1:{store_id}:{seq}")))
    }

    /// The token's text, as it travels (e.g. in `X-Consistency-Token`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The token's text.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for ConsistencyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ConsistencyToken {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The changelog position of `token`, which must have been issued for `store_id`.
pub(crate) fn decode(store_id: &str, token: &str) -> Result<u64, PdpError> {
    let bad = || PdpError::Validation("invalid consistency token".to_owned());
    if token.len() > MAX_TOKEN_LEN {
        return Err(bad());
    }
    let bytes = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| bad())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
    let rest = text.strip_prefix("tg1:").ok_or_else(bad)?;
    let (store, seq) = rest.rsplit_once(':').ok_or_else(bad)?;
    if store != store_id {
        return Err(PdpError::Validation(
            "the consistency token was issued for another store".to_owned(),
        ));
    }
    seq.parse::<u64>().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_bound_to_the_store() {
        let t = ConsistencyToken::issue("S1", 42);
        assert_eq!(decode("S1", t.as_str()).ok(), Some(42));
        assert!(
            matches!(decode("S2", t.as_str()), Err(PdpError::Validation(m)) if m.contains("another store"))
        );
        for bad in ["", "!!", "dGcxOlMxOng", &"A".repeat(300)] {
            assert!(decode("S1", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_token_format_is_the_one_clients_hold() {
        // `tg1:01ARZ3NDEKTSV4RRFFQ69G5FAV:7`, as issued before the service existed.
        let t = ConsistencyToken::issue("01ARZ3NDEKTSV4RRFFQ69G5FAV", 7);
        assert_eq!(t.as_str(), "dGcxOjAxQVJaM05ERUtUU1Y0UlJGRlE2OUc1RkFWOjc");
    }
}
