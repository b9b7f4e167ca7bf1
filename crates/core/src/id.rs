//! Identifiers.
//!
//! Records that are listed in creation order (stores, authorization models, changelog entries)
//! use ULIDs: 128-bit, lexicographically sortable by creation time, and the format OpenFGA uses
//! for store and model ids, so its SDKs accept ours unchanged.

use std::sync::Mutex;

use time::OffsetDateTime;
use ulid::Ulid;

/// A new ULID whose time component is `now`.
pub fn new_ulid(now: OffsetDateTime) -> String {
    let millis = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let random: u128 = rand::random();
    Ulid::from_parts(millis, random).to_string()
}

/// The smallest ULID of the millisecond of `at`: every ULID made at or after `at` sorts at or
/// above it, so `id < ulid_floor(t)` selects records made before `t` by an index on the id.
pub fn ulid_floor(at: OffsetDateTime) -> String {
    let millis = u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    Ulid::from_parts(millis, 0).to_string()
}

/// ULIDs that strictly increase across one process, even within one millisecond (where
/// [`new_ulid`]'s random part sorts at random): for records whose order is their id's order,
/// such as the newest authorization model of a store, or audit events listed newest first.
#[derive(Debug, Default)]
pub struct UlidSequence {
    last: Mutex<Ulid>,
}

impl UlidSequence {
    /// A ULID at `now`, greater than every one this sequence handed out and than `floor`.
    pub fn next(&self, now: OffsetDateTime, floor: Option<&str>) -> String {
        let millis = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        let candidate = Ulid::from_parts(millis, rand::random());
        let floor = floor.and_then(|f| f.parse::<Ulid>().ok());
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let minimum = floor.map_or(*last, |f| f.max(*last));
        let id = if candidate > minimum {
            candidate
        } else {
            minimum.increment().unwrap_or(candidate)
        };
        *last = id;
        id.to_string()
    }
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

    #[test]
    fn the_floor_sorts_below_every_id_of_its_millisecond_and_above_older_ones() {
        let at = datetime!(2026-01-01 00:00:00.123 UTC);
        let floor = ulid_floor(at);
        for _ in 0..100 {
            assert!(new_ulid(at) >= floor);
            assert!(new_ulid(at - time::Duration::milliseconds(1)) < floor);
        }
    }

    #[test]
    fn a_sequence_increases_within_one_millisecond_and_past_the_floor() {
        let sequence = UlidSequence::default();
        let now = datetime!(2026-01-01 00:00 UTC);
        let ids: Vec<String> = (0..100).map(|_| sequence.next(now, None)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let floor = new_ulid(now + time::Duration::hours(1));
        let past = sequence.next(now, Some(&floor));
        assert!(past > floor, "{past} {floor}");
        assert!(sequence.next(now, None) > past);
        assert!(is_ulid(&past));
    }
}
