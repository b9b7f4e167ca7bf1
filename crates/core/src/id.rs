//! Identifiers.
//!
//! Records that are listed in creation order (stores, authorization models, changelog entries)
//! use ULIDs: 128-bit, lexicographically sortable by creation time, and the format OpenFGA uses
//! for store and model ids, so its SDKs accept ours unchanged.

use time::OffsetDateTime;
use ulid::Ulid;

/// A new ULID whose time component is `now`.
pub fn new_ulid(now: OffsetDateTime) -> String {
    let millis = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let random: u128 = rand::random();
    Ulid::from_parts(millis, random).to_string()
}

/// Whether `s` is a well-formed ULID (26 Crockford base32 characters).
pub fn is_ulid(s: &str) -> bool {
    s.len() == 26 && Ulid::from_string(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn ulids_sort_by_time_and_validate() {
        let a = new_ulid(datetime!(2026-01-01 00:00 UTC));
        let b = new_ulid(datetime!(2026-01-01 00:00:01 UTC));
        assert!(a < b);
        assert!(is_ulid(&a));
        assert!(!is_ulid("not-a-ulid"));
        assert!(!is_ulid(""));
    }
}
