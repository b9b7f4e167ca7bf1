//! Go's spellings of durations and timestamps, as OpenFGA parses condition parameters.
//!
//! OpenFGA converts a `duration` parameter with Go's `time.ParseDuration` and a `timestamp`
//! parameter with `time.Parse(time.RFC3339, ..)`. The same strings must be accepted and refused
//! here, so a model and its tuples behave identically on both servers. cel's own `duration()`
//! parser stops at the first unknown unit and ignores the rest of the string (`"1hxyz"` is one
//! hour), which is why the calls `duration(..)` and `timestamp(..)` in expressions are also routed
//! through these functions (see [`super::functions`]).

use chrono::{DateTime, FixedOffset, TimeDelta, Utc};

/// 2^63: Go accumulates durations in a `uint64` and allows up to this magnitude (negated).
const LIMIT: u64 = 1 << 63;

/// The nanoseconds in one unit, as Go's `unitMap`.
fn unit_nanos(unit: &[u8]) -> Option<u64> {
    Some(match unit {
        b"ns" => 1,
        b"us" => 1_000,
        // U+00B5 MICRO SIGN and U+03BC GREEK SMALL LETTER MU, as Go accepts both.
        [0xC2, 0xB5, b's'] | [0xCE, 0xBC, b's'] => 1_000,
        b"ms" => 1_000_000,
        b"s" => 1_000_000_000,
        b"m" => 60 * 1_000_000_000,
        b"h" => 3_600 * 1_000_000_000,
        _ => return None,
    })
}

/// Parses a Go duration string (`"300ms"`, `"-1.5h"`, `"2h45m"`), reproducing
/// `time.ParseDuration` including its overflow rules and error wording.
pub(crate) fn parse_duration(original: &str) -> Result<TimeDelta, String> {
    let invalid = || format!("time: invalid duration \"{original}\"");
    let mut s = original.as_bytes();
    let mut negative = false;
    if let Some((&c, rest)) = s.split_first()
        && (c == b'-' || c == b'+')
    {
        negative = c == b'-';
        s = rest;
    }
    if s == b"0" {
        return Ok(TimeDelta::zero());
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        // The next character must be [0-9.].
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(invalid());
        }
        // Integer part.
        let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut whole: u64 = 0;
        for &c in &s[..digits] {
            if whole > LIMIT / 10 {
                return Err(invalid());
            }
            whole = whole * 10 + u64::from(c - b'0');
            if whole > LIMIT {
                return Err(invalid());
            }
        }
        let had_whole = digits > 0;
        s = &s[digits..];
        // Fraction: Go keeps accumulating digits until they would overflow, then ignores the rest.
        let mut fraction: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut had_fraction = false;
        if let Some((&b'.', rest)) = s.split_first() {
            s = rest;
            let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
            had_fraction = digits > 0;
            let mut overflow = false;
            for &c in &s[..digits] {
                if overflow {
                    continue;
                }
                if fraction > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let next = fraction * 10 + u64::from(c - b'0');
                if next > LIMIT {
                    overflow = true;
                    continue;
                }
                fraction = next;
                scale *= 10.0;
            }
            s = &s[digits..];
        }
        if !had_whole && !had_fraction {
            return Err(invalid());
        }
        // Unit: everything up to the next digit or dot.
        let unit_len = s
            .iter()
            .take_while(|&&c| !(c == b'.' || c.is_ascii_digit()))
            .count();
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration \"{original}\""));
        }
        let unit_bytes = &s[..unit_len];
        s = &s[unit_len..];
        let Some(unit) = unit_nanos(unit_bytes) else {
            let unit = String::from_utf8_lossy(unit_bytes);
            return Err(format!(
                "time: unknown unit \"{unit}\" in duration \"{original}\""
            ));
        };
        if whole > LIMIT / unit {
            return Err(invalid());
        }
        let mut value = whole * unit;
        if fraction > 0 {
            // Go computes this in float64 too: exact to the nanosecond for all units up to hours.
            #[allow(clippy::cast_precision_loss)]
            let extra = (fraction as f64) * (unit as f64 / scale);
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let extra = extra as u64;
            value = value.checked_add(extra).ok_or_else(invalid)?;
            if value > LIMIT {
                return Err(invalid());
            }
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > LIMIT {
            return Err(invalid());
        }
    }
    let nanos = if negative {
        // total <= 2^63, so the negation fits in i64 (2^63 itself is i64::MIN).
        0i64.checked_sub_unsigned(total).ok_or_else(invalid)?
    } else {
        i64::try_from(total).map_err(|_| invalid())?
    };
    Ok(TimeDelta::nanoseconds(nanos))
}

/// The earliest and latest timestamps CEL allows: years 1 to 9999, UTC.
fn in_cel_range(t: &DateTime<FixedOffset>) -> bool {
    let utc = t.with_timezone(&Utc);
    let year = chrono::Datelike::year(&utc);
    (1..=9999).contains(&year)
}

/// Parses an RFC 3339 timestamp as Go's `time.Parse(time.RFC3339, ..)` does: an upper-case `T`
/// between date and time, `Z` or a `±hh:mm` offset, optional fractional seconds.
pub(crate) fn parse_timestamp(s: &str) -> Result<DateTime<FixedOffset>, String> {
    let err = || format!("expected RFC 3339 formatted timestamp string, but found '{s}'");
    // chrono also takes a lower-case `t`/`z` or a space; Go's layout does not.
    let well_formed = s.len() >= 20
        && s.as_bytes().get(10) == Some(&b'T')
        && s.bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'-' | b':' | b'.' | b'+' | b'T' | b'Z'));
    if !well_formed {
        return Err(err());
    }
    let parsed = DateTime::parse_from_rfc3339(s).map_err(|_| err())?;
    if !in_cel_range(&parsed) {
        return Err(format!("timestamp '{s}' is outside the range CEL supports"));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nanos(s: &str) -> Result<i64, String> {
        parse_duration(s).map(|d| d.num_nanoseconds().unwrap_or(i64::MAX))
    }

    #[test]
    fn go_duration_table() {
        // Cases from Go's time package tests.
        let ok: &[(&str, i64)] = &[
            ("0", 0),
            ("5s", 5_000_000_000),
            ("30s", 30_000_000_000),
            ("1478s", 1_478_000_000_000),
            ("-5s", -5_000_000_000),
            ("+5s", 5_000_000_000),
            ("-0", 0),
            ("+0", 0),
            ("5.0s", 5_000_000_000),
            ("5.6s", 5_600_000_000),
            ("5.s", 5_000_000_000),
            (".5s", 500_000_000),
            ("1.0s", 1_000_000_000),
            ("1.00s", 1_000_000_000),
            ("1.004s", 1_004_000_000),
            ("1.0040s", 1_004_000_000),
            ("100.00100s", 100_001_000_000),
            ("10ns", 10),
            ("11us", 11_000),
            ("12µs", 12_000),
            ("12μs", 12_000),
            ("13ms", 13_000_000),
            ("14s", 14_000_000_000),
            ("15m", 900_000_000_000),
            ("16h", 57_600_000_000_000),
            ("3h30m", 12_600_000_000_000),
            ("10.5s4m", 250_500_000_000),
            ("-2m3.4s", -123_400_000_000),
            ("1h2m3s4ms5us6ns", 3_723_004_005_006),
            ("39h9m14.425s", 140_954_425_000_000),
            ("52763797000ns", 52_763_797_000),
            ("0.3333333333333333333h", 1_200_000_000_000),
            ("9007199254740993ns", 9_007_199_254_740_993),
            ("9223372036854775807ns", i64::MAX),
            ("9223372036854775.807us", i64::MAX),
            ("9223372036s854ms775us807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("-9223372036854775.808us", i64::MIN),
            ("0.100000000000000000000h", 360_000_000_000),
            ("0.830103483285477580700h", 2_988_372_539_827),
        ];
        for &(input, want) in ok {
            assert_eq!(nanos(input), Ok(want), "{input}");
        }
        let bad = [
            "",
            "3",
            "-",
            "s",
            ".",
            "-.",
            ".s",
            "+.s",
            "1d",
            "\u{FFFD}",
            "1.0.s",
            "9223372036854775808ns",
            "9223372036854775.808us",
            "9223372036854ms775us808ns",
            "-9223372036854775809ns",
            "1h ",
            " 1h",
            "1hxyz",
            "1H",
            "1e3s",
        ];
        for input in bad {
            assert!(parse_duration(input).is_err(), "{input:?} must be rejected");
        }
        assert_eq!(
            parse_duration("1d").expect_err("unknown unit"),
            "time: unknown unit \"d\" in duration \"1d\""
        );
        assert_eq!(
            parse_duration("3").expect_err("missing unit"),
            "time: missing unit in duration \"3\""
        );
    }

    #[test]
    fn rfc3339_like_go() {
        for good in [
            "2023-01-01T00:00:00Z",
            "2023-01-01T00:00:00.123456789Z",
            "2023-06-30T23:59:59+02:00",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
        ] {
            assert!(parse_timestamp(good).is_ok(), "{good}");
        }
        for bad in [
            "2023-01-01",
            "2023-01-01 00:00:00Z",
            "2023-01-01t00:00:00Z",
            "2023-01-01T00:00:00z",
            "2023-01-01T00:00:00",
            "2023-13-01T00:00:00Z",
            "2023-02-30T00:00:00Z",
            "2023-01-01T25:00:00Z",
            "1700000000",
            "",
            "0001-01-01T00:00:00+01:00",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad:?} must be rejected");
        }
    }
}
