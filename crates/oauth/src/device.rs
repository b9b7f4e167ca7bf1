//! Device Authorization Grant (RFC 8628) user codes.
//!
//! A user code is 8 characters from a 20-letter alphabet without vowels (so no words form) and
//! without look-alikes, shown as `BCDF-GHJK`: 20^8 ≈ 2^34.6 codes (RFC 8628 §6.1 asks for enough
//! entropy that, with throttling and a 10-minute lifetime, guessing one is impractical). The
//! `/device` page throttles typed codes per signed-in session and per client IP before any lookup
//! (`trustgate_authn::throttle::DeviceCodeThrottle`, counts in the database so every replica
//! shares them). Typing is forgiving: case, spaces and dashes do not matter.

use time::{Duration, OffsetDateTime};
use trustgate_store_api::{DeviceAuthorization, DevicePollRefusal, DevicePollStep, DeviceStatus};

/// How much a `slow_down` grows the poll interval (RFC 8628 §3.5).
pub const SLOW_DOWN_SECS: i64 = 5;

/// What one poll of the token endpoint by `client_id` at `now` does with a stored device
/// authorization (RFC 8628 §3.4, §3.5): another client's code is unknown to it; an expired one is
/// `expired_token`; a poll sooner than the interval after the last one is `slow_down` and the
/// interval grows by [`SLOW_DOWN_SECS`]; an approval is redeemed exactly once.
pub fn poll_step(
    authorization: &DeviceAuthorization,
    client_id: &str,
    now: OffsetDateTime,
) -> DevicePollStep {
    if authorization.client_id != client_id {
        return DevicePollStep::Refuse(DevicePollRefusal::Unknown);
    }
    if authorization.expires_at <= now {
        return DevicePollStep::Refuse(DevicePollRefusal::Expired);
    }
    match authorization.status {
        DeviceStatus::Denied => DevicePollStep::Refuse(DevicePollRefusal::Denied),
        DeviceStatus::Redeemed => DevicePollStep::Refuse(DevicePollRefusal::AlreadyRedeemed),
        DeviceStatus::Approved => DevicePollStep::Redeem,
        DeviceStatus::Pending => match authorization.last_polled_at {
            Some(last) if now - last < Duration::seconds(authorization.interval_secs) => {
                DevicePollStep::SlowDown {
                    interval_secs: authorization.interval_secs.saturating_add(SLOW_DOWN_SECS),
                }
            }
            _ => DevicePollStep::Pending,
        },
    }
}

/// The alphabet of user codes (RFC 8628 §6.1's example set).
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Characters in a user code, without the dash.
pub const USER_CODE_LEN: usize = 8;

/// A fresh user code in its normalized form (8 letters, no dash).
pub fn new_user_code() -> String {
    let mut code = String::with_capacity(USER_CODE_LEN);
    while code.len() < USER_CODE_LEN {
        // Rejection sampling keeps every letter equally likely: 240 is the largest multiple of
        // 20 that fits a byte.
        let byte: u8 = rand::random();
        if byte < 240 {
            code.push(char::from(USER_CODE_ALPHABET[usize::from(byte % 20)]));
        }
    }
    code
}

/// The normalized form of what a user typed, or `None` if it cannot be a user code.
pub fn normalize_user_code(typed: &str) -> Option<String> {
    if typed.len() > 64 {
        return None;
    }
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '\t'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)))
        .then_some(code)
}

/// The display form: `BCDF-GHJK`.
pub fn display_user_code(normalized: &str) -> String {
    if normalized.len() == USER_CODE_LEN && normalized.is_ascii() {
        format!("{}-{}", &normalized[..4], &normalized[4..])
    } else {
        normalized.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;

    #[test]
    fn polls_are_decided() {
        const T0: OffsetDateTime = time::macros::datetime!(2026-11-23 10:00 UTC);
        let pending = DeviceAuthorization {
            user_code: "ABCD-EFGH".into(),
            client_id: "c".into(),
            scope: String::new(),
            created_at: T0,
            expires_at: T0 + Duration::minutes(10),
            interval_secs: 5,
            last_polled_at: Some(T0),
            status: DeviceStatus::Pending,
            user_id: None,
            session_id: None,
            detail: Map::new(),
        };
        let at = |s| T0 + Duration::seconds(s);
        let approved = DeviceAuthorization {
            status: DeviceStatus::Approved,
            ..pending.clone()
        };
        let denied = DeviceAuthorization {
            status: DeviceStatus::Denied,
            ..pending.clone()
        };
        let redeemed = DeviceAuthorization {
            status: DeviceStatus::Redeemed,
            ..pending.clone()
        };
        let cases = [
            (
                &pending,
                "x",
                at(6),
                DevicePollStep::Refuse(DevicePollRefusal::Unknown),
            ),
            (
                &pending,
                "c",
                at(4),
                DevicePollStep::SlowDown { interval_secs: 10 },
            ),
            (&pending, "c", at(5), DevicePollStep::Pending),
            (
                &pending,
                "c",
                at(600),
                DevicePollStep::Refuse(DevicePollRefusal::Expired),
            ),
            (&approved, "c", at(1), DevicePollStep::Redeem),
            (
                &approved,
                "x",
                at(1),
                DevicePollStep::Refuse(DevicePollRefusal::Unknown),
            ),
            (
                &denied,
                "c",
                at(9),
                DevicePollStep::Refuse(DevicePollRefusal::Denied),
            ),
            (
                &redeemed,
                "c",
                at(9),
                DevicePollStep::Refuse(DevicePollRefusal::AlreadyRedeemed),
            ),
        ];
        for (i, (authorization, client, now, expected)) in cases.into_iter().enumerate() {
            assert_eq!(poll_step(authorization, client, now), expected, "case {i}");
        }
    }

    #[test]
    fn fresh_codes_normalize_to_themselves() {
        for _ in 0..100 {
            let code = new_user_code();
            assert_eq!(normalize_user_code(&code).as_deref(), Some(code.as_str()));
            let shown = display_user_code(&code);
            assert_eq!(shown.len(), 9);
            assert_eq!(normalize_user_code(&shown).as_deref(), Some(code.as_str()));
            assert_eq!(
                normalize_user_code(&shown.to_lowercase()).as_deref(),
                Some(code.as_str())
            );
        }
    }

    #[test]
    fn refuses_what_cannot_be_a_code() {
        for bad in [
            "",
            "BCDF-GHJ",
            "BCDF-GHJKL",
            "ABCD-EFGH",
            "BCDF-GHJ1",
            "BCDF-GHJ\u{e9}",
        ] {
            assert_eq!(normalize_user_code(bad), None, "{bad}");
        }
        assert_eq!(normalize_user_code(&"B".repeat(100)), None);
    }
}
